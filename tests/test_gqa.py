"""Grouped-query attention (chapter 6) against PyTorch's own: F.scaled_dot_product_attention
with enable_gqa=True, which shares key/value head h // (H / Hkv) with query head h as ours does.

MultiHeadAttention(num_kv_heads=...) stacks the G query heads of a group as G·L rows instead of
repeating the keys and values; these tests check that it still computes what PyTorch computes,
with padding masks, causal masks, both, and L ≠ S (cross-attention).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mini_attn as ma


def _pytorch_gqa(module, query, key, *, mask=None, causal=False):
    """The same projections, attention by PyTorch's fused function with enable_gqa=True."""
    q = ma.split_heads(module.q_proj(query), module.num_heads)  # (B, H, L, D)
    k = ma.split_heads(module.k_proj(key), module.num_kv_heads)  # (B, Hkv, S, D)
    v = ma.split_heads(module.v_proj(key), module.num_kv_heads)
    n_queries, n_keys = query.shape[1], key.shape[1]
    attn_mask = None if mask is None else mask[:, None]  # (B, 1, L|1, S): every head
    if causal:
        future = ma.causal_mask(n_queries, n_keys)
        attn_mask = future if attn_mask is None else attn_mask & future
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, enable_gqa=True)
    return module.out_proj(ma.merge_heads(context))


@pytest.mark.parametrize(("num_heads", "num_kv_heads"), [(8, 2), (8, 1), (6, 3), (8, 8)])
@pytest.mark.parametrize("masking", ["none", "padding", "causal", "padding+causal"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equals_pytorch_enable_gqa(num_heads, num_kv_heads, masking, dtype):
    g = torch.Generator().manual_seed(num_heads * 10 + num_kv_heads)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = ma.MultiHeadAttention(4 * num_heads, num_heads, num_kv_heads=num_kv_heads)
    module = module.to(dtype).eval()
    query = torch.randn(3, 5, 4 * num_heads, generator=g, dtype=dtype)
    key = (
        query if "causal" in masking else torch.randn(3, 7, 4 * num_heads, generator=g, dtype=dtype)
    )
    mask = None
    if "padding" in masking:
        mask = ma.padding_mask(torch.tensor([key.shape[1], 3, 1]), key.shape[1])  # (B, 1, S)
    causal = "causal" in masking
    with torch.no_grad():
        ours, _ = module(query, key, mask=mask, causal=causal)
        theirs = _pytorch_gqa(module, query, key, mask=mask, causal=causal)
    tolerance = 1e-6 if dtype == torch.float32 else 1e-12  # round-off of the dtype
    torch.testing.assert_close(ours, theirs, atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize(("num_heads", "num_kv_heads"), [(8, 2), (4, 1), (6, 3)])
def test_weights_are_those_of_the_repeated_keys(num_heads, num_kv_heads):
    """Per-head weights (B, H, L, S): head h reads key/value head h // G, and a per-query
    mask (B, L, S) is laid out correctly over the stacked G·L rows."""
    g = torch.Generator().manual_seed(7)
    module = ma.MultiHeadAttention(2 * num_heads, num_heads, num_kv_heads=num_kv_heads).eval()
    x = torch.randn(2, 6, 2 * num_heads, generator=g)
    mask = torch.rand(2, 6, 6, generator=g) < 0.6
    mask[..., 0] = True
    group = num_heads // num_kv_heads
    with torch.no_grad():
        _, weights = module(x, mask=mask, causal=True, need_weights=True)
        q = ma.split_heads(module.q_proj(x), num_heads)
        k = ma.split_heads(module.k_proj(x), num_kv_heads).repeat_interleave(group, dim=1)
        v = ma.split_heads(module.v_proj(x), num_kv_heads).repeat_interleave(group, dim=1)
        _, expected = ma.scaled_dot_product_attention(
            q, k, v, mask=mask[:, None] & ma.causal_mask(6)
        )
    assert weights.shape == (2, num_heads, 6, 6)
    torch.testing.assert_close(weights, expected)
    # the masked keys get exactly zero weight in every head
    assert weights.masked_select(~(mask[:, None] & ma.causal_mask(6))).abs().max() == 0


def test_gradients_match_pytorch_enable_gqa_in_float64():
    module = ma.MultiHeadAttention(16, 4, num_kv_heads=2).double()
    x = torch.randn(2, 5, 16, dtype=torch.float64, requires_grad=True)
    ours = module(x, causal=True)[0]
    (grad_ours,) = torch.autograd.grad(ours.square().sum(), x)
    theirs = _pytorch_gqa(module, x, x, causal=True)
    (grad_theirs,) = torch.autograd.grad(theirs.square().sum(), x)
    torch.testing.assert_close(grad_ours, grad_theirs, atol=1e-12, rtol=1e-12)
