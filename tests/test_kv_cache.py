"""KVCache, SlidingWindowCache and MultiHeadAttention(cache=): decoding equals one causal call."""

from __future__ import annotations

import pytest
import torch

import mini_attn as ma


def _decode(module, x, prompt, cache, **kwargs):
    """The prompt in one call, then one position per call: the outputs concatenated."""
    outputs = [module(x[:, :prompt], causal=True, cache=cache, **kwargs)[0]]
    for t in range(prompt, x.shape[1]):
        outputs.append(module(x[:, t : t + 1], causal=True, cache=cache, **kwargs)[0])
    return torch.cat(outputs, dim=1)


@pytest.mark.parametrize("num_heads, num_kv_heads", [(4, 4), (4, 2), (4, 1)])
@pytest.mark.parametrize("prompt", [1, 5])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_decoding_with_a_cache_equals_one_causal_call(num_heads, num_kv_heads, prompt, dtype, tol):
    torch.manual_seed(0)
    module = ma.MultiHeadAttention(16, num_heads, num_kv_heads=num_kv_heads).to(dtype).eval()
    x = torch.randn(3, 9, 16, dtype=dtype)
    full, _ = module(x, causal=True)
    cache = ma.KVCache()
    decoded = _decode(module, x, prompt, cache)
    torch.testing.assert_close(decoded, full, atol=tol, rtol=tol)
    assert len(cache) == 9 and cache.keys.shape == (3, num_kv_heads, 9, 4)


def test_the_cached_call_is_bottom_right_causal_and_weights_cover_the_cache():
    torch.manual_seed(1)
    module = ma.MultiHeadAttention(8, 2).eval()
    x = torch.randn(1, 6, 8)
    cache = ma.KVCache()
    module(x[:, :4], causal=True, cache=cache)
    _, weights = module(x[:, 4:], causal=True, cache=cache, need_weights=True)
    assert weights.shape == (1, 2, 2, 6)
    # query 4 sees keys 0..4, query 5 sees 0..5: bottom-right, not top-left
    assert torch.equal(weights[0, 0] > 0, ma.causal_mask(2, 6, offset=4))


def test_a_padding_mask_over_the_cached_length_is_used():
    torch.manual_seed(2)
    module = ma.MultiHeadAttention(8, 2).eval()
    x = torch.randn(2, 5, 8)
    keep = ma.padding_mask(torch.tensor([5, 3]), 5)  # (B, 1, S): the 2nd sequence has 3
    full, _ = module(x, causal=True, mask=keep)
    cache = ma.KVCache()
    outs = [module(x[:, :2], causal=True, cache=cache, mask=keep[..., :2])[0]]
    for t in range(2, 5):
        outs.append(module(x[:, t : t + 1], causal=True, cache=cache, mask=keep[..., : t + 1])[0])
    torch.testing.assert_close(torch.cat(outs, 1), full)


def test_a_mask_whose_key_length_is_not_the_cached_length_is_refused():
    module = ma.MultiHeadAttention(8, 2)
    cache = ma.KVCache()
    module(torch.randn(1, 3, 8), cache=cache)
    with pytest.raises(ValueError, match=r"mask of shape \(1, 1, 1\) has 1 keys|S=4 cached"):
        module(torch.randn(1, 1, 8), cache=cache, mask=torch.ones(1, 1, 3, dtype=torch.bool))


def test_kv_cache_update_appends_and_returns_everything():
    cache = ma.KVCache()
    assert len(cache) == 0
    k1, v1 = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 7)
    keys, values = cache.update(k1, v1)
    assert torch.equal(keys, k1) and torch.equal(values, v1) and len(cache) == 4
    k2, v2 = torch.randn(2, 3, 1, 5), torch.randn(2, 3, 1, 7)
    keys, values = cache.update(k2, v2)
    assert torch.equal(keys, torch.cat([k1, k2], -2)) and torch.equal(
        values, torch.cat([v1, v2], -2)
    )
    assert len(cache) == 5 and cache.n_seen == 5
    assert "len=5" in repr(cache)


@pytest.mark.parametrize(
    "shape, what",
    [
        ((3, 3, 1, 5), "batch size B=3"),
        ((2, 1, 1, 5), "head count Hkv=1"),
        ((2, 3, 1, 6), "head size D=6"),
    ],
)
def test_kv_cache_refuses_keys_of_another_batch_heads_or_head_size(shape, what):
    cache = ma.KVCache()
    cache.update(torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5))
    value = torch.randn(*shape[:-1], 5)
    with pytest.raises(ValueError, match=rf"key of shape .* has {what}, but the cache holds"):
        cache.update(torch.randn(shape), value)


def test_kv_cache_refuses_bad_tensors():
    cache = ma.KVCache()
    with pytest.raises(ValueError, match="key must have 4 dimension"):
        cache.update(torch.randn(3, 4, 5), torch.randn(3, 4, 5))
    with pytest.raises(TypeError, match="value must be a floating-point"):
        cache.update(torch.randn(1, 1, 2, 3), torch.ones(1, 1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="same batch size, head count and length"):
        cache.update(torch.randn(1, 1, 2, 3), torch.randn(1, 1, 3, 3))
    cache.update(torch.randn(1, 1, 2, 3), torch.randn(1, 1, 2, 4))
    with pytest.raises(ValueError, match=r"value of shape \(1, 1, 1, 5\) has head size D=5"):
        cache.update(torch.randn(1, 1, 1, 3), torch.randn(1, 1, 1, 5))


def test_sliding_window_cache_keeps_the_window_and_returns_what_the_queries_see():
    cache = ma.SlidingWindowCache(window=3)
    keys, _ = cache.update(torch.arange(5.0).view(1, 1, 5, 1), torch.zeros(1, 1, 5, 1))
    assert keys.flatten().tolist() == [0, 1, 2, 3, 4] and len(cache) == 3 and cache.n_seen == 5
    keys, _ = cache.update(torch.full((1, 1, 1, 1), 5.0), torch.zeros(1, 1, 1, 1))
    assert keys.flatten().tolist() == [2, 3, 4, 5] and len(cache) == 3 and cache.n_seen == 6
    with pytest.raises(ValueError, match="window must be a positive"):
        ma.SlidingWindowCache(window=0)
