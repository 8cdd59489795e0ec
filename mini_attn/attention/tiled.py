"""Tiled attention: the FlashAttention idea in plain PyTorch (chapter 8).

The softmax over a row of scores needs the row's maximum and the sum of its exponentials.
Both can be computed **online**, one block of keys at a time, by rescaling what has been
accumulated so far whenever a larger maximum turns up (Milakov and Gimelshein, 2018).
Attention can therefore visit the keys block by block and never hold the whole
``L × S`` matrix of scores: its memory grows linearly with the sequence length.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .._validation import (
    HALF_DTYPES,
    broadcast_batch,
    check_positive_int,
    check_qkv,
)

__all__ = [
    "OnlineSoftmax",
    "finish_online_softmax",
    "online_softmax_update",
    "start_online_softmax",
    "tiled_attention",
]


class OnlineSoftmax(NamedTuple):
    r"""The running state of an online softmax over blocks of keys, one row per query.

    After the blocks seen so far, ``acc / row_sum`` is their attention output: the
    softmax-weighted average of their values. :func:`online_softmax_update` folds in one
    more block, :func:`finish_online_softmax` divides.

    Attributes:
        row_max (Tensor): :math:`m`, the largest score seen so far, :math:`(..., L, 1)`
            (:math:`-\infty` before any key).
        row_sum (Tensor): :math:`\ell = \sum_j e^{s_j - m}`, :math:`(..., L, 1)`.
        acc (Tensor): :math:`\sum_j e^{s_j - m} v_j`, :math:`(..., L, Ev)`.
    """

    row_max: torch.Tensor
    row_sum: torch.Tensor
    acc: torch.Tensor


def start_online_softmax(
    batch: tuple[int, ...],
    n_queries: int,
    value_dim: int,
    *,
    like: torch.Tensor,
    dtype,
) -> OnlineSoftmax:
    """The state before any key: ``m = -inf``, ``l = 0``, ``acc = 0``.

    Args:
        batch (tuple): the batch dimensions ``...``.
        n_queries (int): ``L``.
        value_dim (int): ``Ev``.
        like (Tensor): a tensor on the device the state should live on.
        dtype (torch.dtype): the dtype of the statistics (float32 for half inputs).

    Returns:
        OnlineSoftmax: ``row_max``, ``row_sum`` ``(..., L, 1)`` and ``acc`` ``(..., L, Ev)``.
    """
    # (..., L, 1)
    row_max = like.new_full(
        (*batch, n_queries, 1), -math.inf, dtype=dtype
    )
    # (..., L, 1)
    row_sum = like.new_zeros((*batch, n_queries, 1), dtype=dtype)
    # (..., L, Ev)
    acc = like.new_zeros((*batch, n_queries, value_dim), dtype=dtype)
    return OnlineSoftmax(row_max, row_sum, acc)


def online_softmax_update(
    state: OnlineSoftmax, scores: torch.Tensor, values: torch.Tensor
) -> OnlineSoftmax:
    r"""Fold one block of keys into the running softmax: the step of the online softmax.

    The old sums were taken relative to the old maximum :math:`m_\text{old}`; when the
    block raises it to :math:`m_\text{new}` they are rescaled by
    :math:`e^{m_\text{old} - m_\text{new}}` before the block's own terms are added. Used
    by :func:`tiled_attention` (one block of keys after the other) and by
    :func:`~mini_attn.ring_attention` (the block each rank receives).

    Args:
        state (OnlineSoftmax): the state after the earlier blocks.
        scores (Tensor): this block's scores, :math:`(..., L, b)`, in the state's dtype;
            :math:`-\infty` where a key is masked.
        values (Tensor): this block's values, :math:`(..., b, Ev)`.

    Returns:
        OnlineSoftmax: the state after this block.

    Shape legend:

    - ``L``: queries
    - ``b``: keys in the block
    - ``Ev``: value size
    """
    row_max, row_sum, acc = state
    # the new running max; the shift is 0 for a row that has seen no key
    # yet (max -inf)
    new_max = torch.maximum(
        row_max, scores.detach().amax(dim=-1, keepdim=True)
    )
    shift = torch.where(
        torch.isfinite(new_max), new_max, torch.zeros_like(new_max)
    )
    # rescales the old sums: e^(m_old - m_new)
    correction = torch.exp(row_max - shift)
    weights = torch.exp(scores - shift)  # (..., L, b), unnormalised
    row_sum = row_sum * correction + weights.sum(dim=-1, keepdim=True)
    acc = acc * correction + (weights.to(values.dtype) @ values).to(
        acc.dtype
    )
    return OnlineSoftmax(new_max, row_sum, acc)


def finish_online_softmax(state: OnlineSoftmax) -> torch.Tensor:
    """The output ``acc / row_sum``; a row that saw no key (``row_sum = 0``) gets zeros.

    Returns:
        Tensor: :math:`(..., L, Ev)`, in the state's dtype.
    """
    # normalise once at the end; a row with no key has row_sum 0 and gets 0 / tiny = 0
    return state.acc / state.row_sum.clamp_min(
        torch.finfo(state.acc.dtype).tiny
    )


def tiled_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    causal: bool = False,
    scale: float | None = None,
    block_size: int = 128,
) -> torch.Tensor:
    r"""The output of scaled dot-product attention, computed block by block over the keys.

    Equals ``scaled_dot_product_attention(query, key, value, causal=causal, scale=scale)[0]``
    (up to rounding) but holds only an :math:`L \times` ``block_size`` block of scores at a
    time: for each block of keys it updates, per query, the running maximum ``m`` of the
    scores, the running sum ``l`` of their exponentials and the running weighted sum of the
    values, rescaling the old sums by :math:`e^{m_\text{old} - m_\text{new}}` (the online
    softmax, :func:`online_softmax_update`). The memory of the forward pass is
    :math:`O(L \cdot \text{block\_size} + L E_v)` instead of :math:`O(L S)`. Under
    autograd, every block is kept for the backward pass,
    so training memory is still :math:`O(L S)`: a fused kernel recomputes the blocks
    instead.

    Half-precision inputs (float16, bfloat16) keep their dtype for the matrix products and
    accumulate the softmax statistics and the output in float32. A query with no key to
    attend to (``causal=True`` with ``S = 0``) gets a zero output row.

    Args:
        query (Tensor): shape :math:`(..., L, E)`.
        key (Tensor): shape :math:`(..., S, E)`.
        value (Tensor): shape :math:`(..., S, Ev)`.
        causal (bool): let query ``i`` attend to keys ``j ≤ i`` only (top-left aligned, as
            PyTorch's ``is_causal``). Default: False.
        scale (float, optional): the factor applied to the scores. Default: :math:`1/\sqrt{E}`.
        block_size (int): the number of keys per block; the last block may be smaller.
            Default: 128.

    Returns:
        Tensor: the output, shape :math:`(..., L, Ev)`, dtype of ``query``.

    Shape legend:

    - ``L``: queries
    - ``S``: keys
    - ``E``: query/key size
    - ``Ev``: value size
    - ``...``: any batch dimensions (they broadcast)
    """
    check_qkv(query, key, value)
    check_positive_int(block_size, "block_size")
    n_queries, n_keys = query.shape[-2], key.shape[-2]
    batch = broadcast_batch(query=query, key=key, value=value)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    # softmax statistics
    acc_dtype = (
        torch.float32 if query.dtype in HALF_DTYPES else query.dtype
    )

    # per query: running max m, running sum l of exp(score - m),
    # running sum of exp(...)·v
    state = start_online_softmax(
        batch, n_queries, value.shape[-1], like=query, dtype=acc_dtype
    )
    # (L, 1)
    query_pos = torch.arange(n_queries, device=query.device)[:, None]
    # causal: keys j ≥ L are never seen
    last = min(n_keys, n_queries) if causal else n_keys
    for start in range(0, last, block_size):
        stop = min(start + block_size, n_keys)
        k_block = key[..., start:stop, :]  # (..., b, E)
        v_block = value[..., start:stop, :]  # (..., b, Ev)
        scores = (query @ k_block.transpose(-2, -1)).to(
            acc_dtype
        ) * scale  # (..., L, b)
        if causal:  # query i may attend to key j if j ≤ i
            # (L, b)
            allowed = query_pos >= torch.arange(
                start, stop, device=query.device
            )
            scores = scores.masked_fill(~allowed, -math.inf)
        # rescale, add the block
        state = online_softmax_update(state, scores, v_block)
    return finish_online_softmax(state).to(query.dtype)  # (..., L, Ev)
