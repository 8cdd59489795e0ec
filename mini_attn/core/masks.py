"""Boolean attention masks: ``True`` where a query may attend to a key."""

from __future__ import annotations

import torch

from .._validation import fmt_shape

__all__ = ["causal_mask", "padding_mask", "sliding_window_mask"]


def causal_mask(
    n_queries: int,
    n_keys: int | None = None,
    *,
    offset: int = 0,
    device=None,
) -> torch.Tensor:
    """The causal (look-ahead) mask: query ``i`` may attend to keys ``j ≤ i + offset``.

    With ``offset=0`` it is top-left aligned, as ``is_causal=True`` in
    :func:`torch.nn.functional.scaled_dot_product_attention`: with ``L ≠ S`` the diagonal
    starts at ``(0, 0)``. With ``offset = S − L`` it is bottom-right aligned, as PyTorch's
    ``torch.nn.attention.bias.causal_lower_right``: the ``L`` queries are the last ``L`` of
    the ``S`` positions, which is the case when decoding with a key/value cache.

    Args:
        n_queries (int): the number of queries ``L``.
        n_keys (int, optional): the number of keys ``S``. Default: ``n_queries``.
        offset (int): the position of query 0 among the keys. Default: 0.
        device (torch.device, optional): where to put the mask.

    Returns:
        Tensor: boolean, shape :math:`(L, S)`, ``True`` where ``j ≤ i + offset``.

    Raises:
        ValueError: a size is negative.
        TypeError: ``offset`` is not an integer.

    Shape legend:

    - ``L``: queries
    - ``S``: keys
    """
    n_keys = _check_sizes(n_queries, n_keys, offset)
    return torch.ones(
        n_queries, n_keys, dtype=torch.bool, device=device
    ).tril(offset)


def sliding_window_mask(
    n_queries: int,
    n_keys: int | None = None,
    *,
    window: int,
    offset: int = 0,
    device=None,
) -> torch.Tensor:
    """The sliding-window causal mask: a query sees itself and the ``window − 1`` keys before.

    Query ``i`` may attend to key ``j`` where ``i + offset − window < j ≤ i + offset``, as
    Mistral's sliding window; ``offset`` aligns the queries as in :func:`causal_mask`.

    Args:
        n_queries (int): the number of queries ``L``.
        n_keys (int, optional): the number of keys ``S``. Default: ``n_queries``.
        window (int): the number of keys each query sees, itself included; at least 1.
        offset (int): the position of query 0 among the keys. Default: 0.
        device (torch.device, optional): where to put the mask.

    Returns:
        Tensor: boolean, shape :math:`(L, S)`.

    Raises:
        ValueError: a size is negative, or ``window < 1``.
        TypeError: ``window`` or ``offset`` is not an integer.

    Shape legend:

    - ``L``: queries
    - ``S``: keys
    """
    n_keys = _check_sizes(n_queries, n_keys, offset)
    if isinstance(window, bool) or not isinstance(window, int):
        raise TypeError(
            f"window must be an int, got {type(window).__name__}"
        )
    if window < 1:
        raise ValueError(
            f"window must be at least 1 (the query sees itself), got {window}"
        )
    causal = causal_mask(n_queries, n_keys, offset=offset, device=device)
    return causal & ~causal_mask(
        n_queries, n_keys, offset=offset - window, device=device
    )


def _check_sizes(n_queries, n_keys, offset) -> int:
    n_keys = n_queries if n_keys is None else n_keys
    if n_queries < 0 or n_keys < 0:
        raise ValueError(
            f"sizes must be non-negative, got n_queries={n_queries}, n_keys={n_keys}"
        )
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise TypeError(
            f"offset must be an int, got {type(offset).__name__}"
        )
    return n_keys


def padding_mask(
    lengths: torch.Tensor, max_length: int | None = None
) -> torch.Tensor:
    """Key-padding mask from sequence lengths: ``True`` for real positions, ``False`` for padding.

    Args:
        lengths (Tensor): integer, shape :math:`(B,)`, the length of each sequence.
        max_length (int, optional): the padded length ``S``. Default: ``lengths.max()``.

    Returns:
        Tensor: boolean, shape :math:`(B, 1, S)`, which broadcasts against scores of shape
        :math:`(B, L, S)`. (The opposite of ``torch.nn.MultiheadAttention``'s
        ``key_padding_mask``, which is ``True`` for the keys to ignore.)

    Raises:
        TypeError: ``lengths`` is not an integer tensor.
        ValueError: ``lengths`` is not 1-D, has a negative entry, or is longer than
            ``max_length``.
    """
    if not isinstance(lengths, torch.Tensor):
        raise TypeError(
            f"lengths must be a torch.Tensor, got {type(lengths).__name__}"
        )
    if (
        lengths.is_floating_point()
        or lengths.is_complex()
        or lengths.dtype == torch.bool
    ):
        raise TypeError(
            f"lengths must be an integer tensor, got dtype {lengths.dtype}"
        )
    if lengths.dim() != 1:
        raise ValueError(
            f"lengths must be 1-D, shape (B,), got shape {fmt_shape(lengths.shape)}"
        )
    if len(lengths) and int(lengths.min()) < 0:
        raise ValueError(
            f"lengths must be non-negative, got {lengths.tolist()}"
        )
    longest = int(lengths.max()) if len(lengths) else 0
    max_length = longest if max_length is None else max_length
    if max_length < longest:
        raise ValueError(
            f"max_length={max_length} is shorter than the longest sequence (length {longest})"
        )
    positions = torch.arange(max_length, device=lengths.device)  # (S,)
    # (B, 1, S)
    return (positions[None, :] < lengths[:, None])[:, None, :]
