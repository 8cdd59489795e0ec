"""How much arithmetic and how much memory traffic attention needs (chapter 8).

Two numbers place a computation on the roofline: its floating-point operations (FLOPs)
and the bytes it moves between memory and the processor. Their ratio, FLOPs per byte, is
the **arithmetic intensity**.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["attention_bytes", "attention_flops", "count_flops"]


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    r"""The floating-point operations PyTorch counts while ``fn(*args, **kwargs)`` runs.

    A thin wrapper of :class:`torch.utils.flop_counter.FlopCounterMode`. It counts
    **matrix products only** (``mm``, ``bmm``, ``addmm``, ``baddbmm``, convolutions and
    PyTorch's fused attention kernels), 2 FLOPs per multiply-add; element-wise work
    (softmax, additions, activations) counts as zero. That is the convention of
    :func:`attention_flops` and of the FlashAttention papers. A backward pass run inside
    ``fn`` is counted too. The result of ``fn`` is discarded.

    Args:
        fn (Callable): the computation to count, called once.
        *args: positional arguments passed to ``fn``.
        **kwargs: keyword arguments passed to ``fn``.

    Returns:
        int: the FLOPs of the matrix products ``fn`` ran.

    Raises:
        TypeError: if ``fn`` is not callable.

    Example::

        >>> q = k = v = torch.randn(2, 3, 5, 11)
        >>> count_flops(ma.scaled_dot_product_attention, q, k, v)
        6600
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    # imported on the first call
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(
                f"{name} must be an int, got {type(value).__name__}"
            )
        if value < 0:
            raise ValueError(f"{name} must be non-negative, got {value}")


def attention_flops(
    batch: int,
    heads: int,
    n_queries: int,
    n_keys: int,
    head_dim: int,
    *,
    causal: bool = False,
) -> int:
    r"""Forward FLOPs of :math:`\mathrm{softmax}(Q K^\top) V`: :math:`4 \cdot B H L S D`.

    Two matrix products dominate: :math:`Q K^\top` multiplies an :math:`(L, D)` by a
    :math:`(D, S)` matrix, :math:`L S D` multiply-adds, and :math:`P V` another
    :math:`L S D`; a multiply-add counts as 2 FLOPs, so :math:`4 L S D` per head. The
    softmax (:math:`O(L S)`) is left out, as in the FlashAttention papers, whose convention
    this follows: with ``causal=True`` the count is halved (half the scores are masked).
    The backward pass costs about 2.5 times the forward (five products instead of two).

    Args:
        batch (int): ``B``, the batch size.
        heads (int): ``H``, the number of (query) heads.
        n_queries (int): ``L``, queries per sequence.
        n_keys (int): ``S``, keys per sequence.
        head_dim (int): ``D``, the size of a query, key and value of one head.
        causal (bool): halve the count for a causal mask. Default: False.

    Returns:
        int: the number of floating-point operations.

    Raises:
        TypeError: if a size is not an int.
        ValueError: if a size is negative.

    Shape legend:

    - ``B``: batch
    - ``H``: heads
    - ``L``: queries
    - ``S``: keys
    - ``D``: head size
    """
    _check_sizes(
        batch=batch,
        heads=heads,
        n_queries=n_queries,
        n_keys=n_keys,
        head_dim=head_dim,
    )
    # two products, 2 FLOPs per MAC
    flops = 4 * batch * heads * n_queries * n_keys * head_dim
    return flops // 2 if causal else flops


def attention_bytes(
    batch: int,
    heads: int,
    n_queries: int,
    n_keys: int,
    head_dim: int,
    *,
    element_size: int = 4,
    materialized: bool = True,
    kv_heads: int | None = None,
) -> int:
    r"""The least memory traffic of one attention forward, in bytes.

    Every implementation reads :math:`Q` (:math:`B H L D` elements), :math:`K` and
    :math:`V` (:math:`B H_{kv} S D` each) and writes the output (:math:`B H L D`). An
    implementation that **materializes** the scores, as ``softmax(Q Kᵀ) V`` written in
    three lines does, also writes the :math:`L \times S` scores, reads them back for the
    softmax, writes the weights and reads them again for :math:`P V`: four more passes
    over :math:`B H L S` elements. A fused kernel (FlashAttention) keeps the scores on
    chip and moves only the first four tensors. Real kernels move at least this much.

    Args:
        batch (int): ``B``, the batch size.
        heads (int): ``H``, the number of query heads.
        n_queries (int): ``L``, queries per sequence.
        n_keys (int): ``S``, keys per sequence.
        head_dim (int): ``D``, the head size.
        element_size (int): bytes per element: 4 for float32, 2 for bfloat16/float16.
            Default: 4.
        materialized (bool): count the four passes over the :math:`L \times S` scores
            and weights (naive attention). Default: True.
        kv_heads (int, optional): ``H_kv``, the number of key/value heads (grouped-query
            attention). Default: ``heads``.

    Returns:
        int: bytes read and written.

    Raises:
        TypeError: if a size is not an int.
        ValueError: if a size is negative.

    Shape legend:

    - ``B``: batch
    - ``H``: query heads
    - ``H_kv``: key/value heads
    - ``L``: queries
    - ``S``: keys
    - ``D``: head size
    """
    kv_heads = heads if kv_heads is None else kv_heads
    _check_sizes(
        batch=batch,
        heads=heads,
        n_queries=n_queries,
        n_keys=n_keys,
        head_dim=head_dim,
        element_size=element_size,
        kv_heads=kv_heads,
    )
    # read Q, write O
    queries_and_output = 2 * batch * heads * n_queries * head_dim
    # read K and V
    keys_and_values = 2 * batch * kv_heads * n_keys * head_dim
    elements = queries_and_output + keys_and_values
    if materialized:
        # scores and weights, 2 passes each
        elements += 4 * batch * heads * n_queries * n_keys
    return elements * element_size
