"""Splitting the model dimension into heads, and grouped-query attention (chapter 6).

:func:`split_heads` and :func:`merge_heads` turn ``(B, N, E)`` into ``(B, H, N, E/H)`` and
back; :func:`grouped_attention` runs ``H`` query heads over ``Hkv`` key/value heads by
folding each group of queries into one head (:func:`fold_query_groups`), so that no key or
value is copied. :class:`~mini_attn.MultiHeadAttention` is built from these.
"""

from __future__ import annotations

import torch

from .._validation import check_positive_int, check_tensor, fmt_shape
from ..core.sdpa import scaled_dot_product_attention

__all__ = [
    "fold_query_groups",
    "grouped_attention",
    "merge_heads",
    "split_heads",
    "unfold_query_groups",
]


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    r"""Split the last dimension into heads and move the heads before the sequence.

    Args:
        x (Tensor): shape :math:`(..., N, H \cdot D)`.
        num_heads (int): the number of heads ``H``; must divide the last dimension.

    Returns:
        Tensor: shape :math:`(..., H, N, D)`; head ``h`` holds the features
        ``h·D … (h+1)·D - 1`` of every position.

    Shape legend:

    - ``N``: sequence length
    - ``H``: heads
    - ``D``: head size
    - ``...``: batch dimensions (usually ``B``)
    """
    check_tensor(x, "x", min_ndim=2)
    check_positive_int(num_heads, "num_heads")
    if x.shape[-1] % num_heads != 0:
        raise ValueError(
            f"the last dimension of x {fmt_shape(x.shape)} must be "
            f"divisible by num_heads={num_heads}"
        )
    # (..., N, H·D) -> (..., N, H, D)
    x = x.unflatten(-1, (num_heads, x.shape[-1] // num_heads))
    return x.transpose(-3, -2)  # (..., H, N, D)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    r"""Undo :func:`split_heads`: concatenate the heads along the feature dimension.

    Args:
        x (Tensor): shape :math:`(..., H, N, D)`.

    Returns:
        Tensor: shape :math:`(..., N, H \cdot D)`, head ``h`` in features ``h·D … (h+1)·D - 1``.

    Shape legend:

    - ``N``: sequence length
    - ``H``: heads
    - ``D``: head size
    - ``...``: batch dimensions (usually ``B``)
    """
    check_tensor(x, "x", min_ndim=3)
    x = x.transpose(-3, -2)  # (..., N, H, D)
    return x.flatten(-2)  # (..., N, H·D)


def fold_query_groups(x: torch.Tensor, num_kv_heads: int) -> torch.Tensor:
    r"""Stack the query heads that share a key/value head as one longer block of rows.

    With ``G = H / Hkv`` query heads per key/value head, query head ``h = g·G + j`` uses
    key/value head ``g``. Folding puts heads ``g·G … g·G + G − 1`` one after the other:

    ``(B, H, L, X) -> (B, Hkv, G·L, X)``, row ``j·L + i`` of block ``g`` being row ``i`` of
    head ``g·G + j``. One attention call per key/value head then serves its ``G`` query
    heads, and the keys and values are used as they are, never repeated.
    :func:`unfold_query_groups` undoes it.

    Args:
        x (Tensor): shape :math:`(B, H, L, X)` (queries, or any per-query tensor).
        num_kv_heads (int): ``Hkv``; it divides ``H``.

    Returns:
        Tensor: shape :math:`(B, H_{kv}, G \cdot L, X)`.
    """
    batch, num_heads, n_rows, last = x.shape
    return x.reshape(
        batch, num_kv_heads, num_heads // num_kv_heads * n_rows, last
    )


def unfold_query_groups(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Undo :func:`fold_query_groups`: ``(B, Hkv, G·L, X) -> (B, H, L, X)``."""
    batch, num_kv_heads, n_rows, last = x.shape
    return x.reshape(
        batch, num_heads, n_rows * num_kv_heads // num_heads, last
    )


def grouped_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Scaled dot-product attention with ``H`` query heads over ``Hkv`` key/value heads.

    Args:
        q (Tensor): shape :math:`(B, H, L, D)`.
        k (Tensor): shape :math:`(B, H_{kv}, S, D)`, ``Hkv`` dividing ``H``.
        v (Tensor): shape :math:`(B, H_{kv}, S, D_v)`.
        mask (Tensor, optional): boolean, broadcastable to :math:`(B, H, L, S)`.
        dropout_p (float): dropout on the weights. Default: 0.

    Returns:
        (Tensor, Tensor): the context :math:`(B, H, L, D_v)` and the weights
        :math:`(B, H, L, S)`.
    """
    num_heads, num_kv_heads = q.shape[1], k.shape[1]
    n_queries = q.shape[2]
    per_head = mask is not None and mask.shape[1] != 1
    per_query = mask is not None and mask.shape[2] != 1
    if per_head or (per_query and num_heads != num_kv_heads):
        # a mask that differs between heads or queries is folded as the
        # queries are: (B|1, H, L, S|1) -> (B|1, Hkv, G·L, S|1)
        batch, n_keys = mask.shape[0], mask.shape[-1]
        mask = mask.expand(batch, num_heads, n_queries, n_keys)
        mask = fold_query_groups(mask, num_kv_heads)
    # (B, Hkv, G·L, Dv) and (B, Hkv, G·L, S)
    context, weights = scaled_dot_product_attention(
        fold_query_groups(q, num_kv_heads),
        k,
        v,
        mask=mask,
        dropout_p=dropout_p,
    )
    context = unfold_query_groups(context, num_heads)
    return context, unfold_query_groups(weights, num_heads)
