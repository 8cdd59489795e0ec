"""Tiled attention: the FlashAttention idea in plain PyTorch (chapter 8).

The softmax over a row of scores needs the row's maximum and the sum of its exponentials.
Both can be computed **online**, one block of keys at a time, by rescaling what has been
accumulated so far whenever a larger maximum turns up (Milakov and Gimelshein, 2018).
Attention can therefore visit the keys block by block and never hold the whole
``L × S`` matrix of scores: its memory grows linearly with the sequence length.
"""

from __future__ import annotations

import math

import torch

from .._validation import HALF_DTYPES, broadcast_batch, check_positive_int, check_qkv

__all__ = ["tiled_attention"]


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
    softmax). The memory of the forward pass is :math:`O(L \cdot \text{block\_size} + L E_v)`
    instead of :math:`O(L S)`. Under autograd, every block is kept for the backward pass,
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

    Shape legend: ``L`` queries, ``S`` keys, ``E`` query/key size, ``Ev`` value size,
    ``...`` any batch dimensions (they broadcast).
    """
    check_qkv(query, key, value)
    check_positive_int(block_size, "block_size")
    n_queries, n_keys = query.shape[-2], key.shape[-2]
    batch = broadcast_batch(query=query, key=key, value=value)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    acc_dtype = torch.float32 if query.dtype in HALF_DTYPES else query.dtype  # softmax statistics

    # per query: running max m, running sum l of exp(score - m), running sum of exp(...)·v
    row_max = query.new_full((*batch, n_queries, 1), -math.inf, dtype=acc_dtype)  # (..., L, 1)
    row_sum = query.new_zeros((*batch, n_queries, 1), dtype=acc_dtype)  # (..., L, 1)
    acc = query.new_zeros((*batch, n_queries, value.shape[-1]), dtype=acc_dtype)  # (..., L, Ev)
    query_pos = torch.arange(n_queries, device=query.device)[:, None]  # (L, 1)
    last = min(n_keys, n_queries) if causal else n_keys  # causal: keys j ≥ L are never seen
    for start in range(0, last, block_size):
        stop = min(start + block_size, n_keys)
        k_block = key[..., start:stop, :]  # (..., b, E)
        v_block = value[..., start:stop, :]  # (..., b, Ev)
        scores = (query @ k_block.transpose(-2, -1)).to(acc_dtype) * scale  # (..., L, b)
        if causal:  # query i may attend to key j if j ≤ i
            allowed = query_pos >= torch.arange(start, stop, device=query.device)  # (L, b)
            scores = scores.masked_fill(~allowed, -math.inf)
        # the new running max; the shift is 0 for a row that has seen no key yet (max -inf)
        new_max = torch.maximum(row_max, scores.detach().amax(dim=-1, keepdim=True))
        shift = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))
        correction = torch.exp(row_max - shift)  # rescales the old sums: e^(m_old - m_new)
        weights = torch.exp(scores - shift)  # (..., L, b), unnormalised
        row_sum = row_sum * correction + weights.sum(dim=-1, keepdim=True)
        acc = acc * correction + (weights.to(value.dtype) @ v_block).to(acc_dtype)
        row_max = new_max
    # normalise once at the end; a row with no key has row_sum 0 and gets 0 / tiny = 0
    output = acc / row_sum.clamp_min(torch.finfo(acc_dtype).tiny)
    return output.to(query.dtype)  # (..., L, Ev)
