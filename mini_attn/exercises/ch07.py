"""Checkers for the exercises of chapter 7, "Attention in today's language models"."""

from __future__ import annotations

import torch

from ..attention.cache import KVCache
from ..attention.multihead import MultiHeadAttention
from ..core.masks import sliding_window_mask
from ._core import CheckFailed, call, expect_close, passed

__all__ = ["check_cache_bytes_per_token", "check_kv_update", "check_sliding_window_mask_mod"]


def check_kv_update(fn) -> None:
    """Exercise 7.1: ``fn(cache, key, value) -> (keys, values)``, the body of ``KVCache.update``.

    ``cache.keys`` / ``cache.values`` are None before the first call; ``key`` and ``value``
    have shape ``(B, Hkv, L, D)``; the function appends them along dim −2, stores the
    result in the cache and returns it. The checker decodes with it and compares with one
    causal call over the whole sequence.
    """

    _check_two_updates(fn)

    class LearnerCache(KVCache):
        def update(self, key, value):
            return call(fn, self.case, self, key, value)

    cases = [
        ("batch 1, 4 heads, prompt of 1, then 5 steps", 1, 4, 4, 1, 6),
        ("batch 2, GQA 4 heads / 2 kv heads, prompt of 3, then 4 steps", 2, 4, 2, 3, 7),
        ("batch 3, multi-query (1 kv head), prompt of 5, then 3 steps", 3, 4, 1, 5, 8),
    ]
    for case, batch, heads, kv_heads, prompt, length in cases:
        with torch.random.fork_rng():
            torch.manual_seed(7)
            module = MultiHeadAttention(16, heads, num_kv_heads=kv_heads).eval()
            x = torch.randn(batch, length, 16)
        with torch.no_grad():
            expected, _ = module(x, causal=True)
            cache = LearnerCache()
            cache.case = case
            outputs = [_cached_call(module, x[:, :prompt], cache, case)]
            for t in range(prompt, length):
                outputs.append(_cached_call(module, x[:, t : t + 1], cache, case))
        expect_close(case, torch.cat(outputs, dim=1), expected, what="the decoded outputs")
    passed("kv_update", len(cases))


def _check_two_updates(fn) -> None:
    """Two updates on small known tensors: each classic slip gets its own message."""
    case = "two updates of 3 positions each"
    g = torch.Generator().manual_seed(0)
    k1, v1, k2, v2 = (torch.randn(2, 2, n, 4, generator=g) for n in (3, 3, 3, 3))
    cache = KVCache()
    for key, value in ((k1, v1), (k2, v2)):
        got = call(fn, case, cache, key.clone(), value.clone())
        if not (isinstance(got, tuple | list) and len(got) == 2):
            raise CheckFailed(
                f"case '{case}': return the pair (keys, values), got {type(got).__name__}"
            )
    keys, values = got
    expected_k, expected_v = torch.cat((k1, k2), -2), torch.cat((v1, v2), -2)
    mistakes = [
        ((expected_v, expected_k), "you return (values, keys): the keys come first."),
        ((k2, v2), "return every cached position, not only this step's keys and values."),
        (
            (k1, v1),
            "the second update was not appended: store the concatenation in "
            "cache.keys / cache.values.",
        ),
        (
            (torch.cat((k2, k1), -2), torch.cat((v2, v1), -2)),
            "append the new positions after the cached ones, not before.",
        ),
    ]
    for (mk, mv), message in mistakes:
        if _same(keys, mk) and _same(values, mv):
            raise CheckFailed(f"case '{case}': {message}")
    for axis, name in ((1, "the heads (dim 1)"), (-1, "the features (dim -1)")):
        if _same(keys, torch.cat((k1, k2), axis)):
            raise CheckFailed(
                f"case '{case}': you concatenated along {name}; the positions are dim -2, "
                "shape (B, Hkv, S, D)."
            )
    for what, got_x, want in (("keys", keys, expected_k), ("values", values, expected_v)):
        expect_close(case, got_x, want, what=f"the returned {what}", atol=0, rtol=0)
    if not (_same(cache.keys, expected_k) and _same(cache.values, expected_v)):
        raise CheckFailed(
            f"case '{case}': cache.keys and cache.values must hold all 6 positions after the "
            "two updates (the next step reads them): assign the concatenation to them."
        )


def _same(a, b) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)


def _cached_call(module, x, cache, case):
    try:
        return module(x, causal=True, cache=cache)[0]
    except CheckFailed:
        raise
    except Exception as error:
        raise CheckFailed(
            f"case '{case}': decoding with your update failed with {type(error).__name__}: "
            f"{error}. The cached keys must have shape (B, Hkv, S, D): append along dim -2 "
            "(the positions), not along the heads (dim 1) or the features (dim -1)."
        ) from None


def check_sliding_window_mask_mod(fn) -> None:
    """Exercise 7.2: ``fn(window)`` returns ``mask_mod(b, h, q_idx, kv_idx) -> bool tensor``.

    The mask it describes must be :func:`~mini_attn.sliding_window_mask`: ``True`` where
    ``q_idx − window < kv_idx ≤ q_idx``. The checker calls ``mask_mod`` with index tensors
    of shape ``(L, 1)`` and ``(1, S)``, as FlexAttention's vmap does element by element.
    """
    cases = [
        ("window 1 (itself only)", 1, 6),
        ("window 3", 3, 9),
        ("window 8, 20 positions", 8, 20),
    ]
    cases.append(("window larger than the sequence", 50, 7))
    for case, window, n in cases:
        mask_mod = call(fn, case, window)
        if not callable(mask_mod):
            raise CheckFailed(
                f"case '{case}': fn(window) should return a function mask_mod(b, h, q_idx, "
                f"kv_idx), got {type(mask_mod).__name__}"
            )
        q_idx, kv_idx = torch.arange(n)[:, None], torch.arange(n)[None, :]
        got = call(mask_mod, case, torch.tensor(0), torch.tensor(0), q_idx, kv_idx)
        expected = sliding_window_mask(n, window=window)
        if isinstance(got, torch.Tensor) and got.dtype != torch.bool:
            raise CheckFailed(f"case '{case}': mask_mod should return booleans, got {got.dtype}")
        expect_close(
            case,
            got if not isinstance(got, torch.Tensor) else got.float(),
            expected.float(),
            what="the mask (1 = may attend)",
            atol=0,
            rtol=0,
            hint=_window_hint(window, q_idx, kv_idx),
        )
    passed("sliding_window_mask_mod", len(cases))


def _window_hint(window, q, k):
    wrong = {
        "a query must not see the future: add kv_idx <= q_idx.": (q - k).abs() < window,
        "off by one: the query sees itself and window - 1 keys before it (q_idx - kv_idx < "
        "window), you allow one more.": (k <= q) & (q - k <= window),
        "off by one: the window counts the query itself, so q_idx - kv_idx < window, "
        "you allow one fewer.": (k <= q) & (q - k < window - 1),
        "the mask is True where a query may attend: yours is the opposite.": ~(
            (k <= q) & (q - k < window)
        ),
        "kv_idx and q_idx are swapped: the keys must be at or before the query.": (q <= k)
        & (k - q < window),
        "the window is missing: this is the plain causal mask.": k <= q,
    }

    def hint(got):
        for message, candidate in wrong.items():
            if torch.equal(got.bool(), candidate):
                return message
        return None

    return hint


def check_cache_bytes_per_token(fn) -> None:
    """Exercise 7.3: ``fn(num_layers, num_heads, num_kv_heads, head_dim, bytes_per_value)``.

    Returns the bytes a key/value cache keeps per token: a key and a value of ``head_dim``
    numbers for each key/value head of each layer.
    """
    cases = [
        ("multi-query (24 layers, 16 heads, 1 kv head, head 64, 32-bit)", 24, 16, 1, 64, 4),
        ("Llama-2-7B (32 layers, 32 heads, MHA, head 128, 16-bit)", 32, 32, 32, 128, 2),
        ("a GQA model (32 layers, 32 heads, 8 kv heads, head 128, 16-bit)", 32, 32, 8, 128, 2),
        ("one layer, 8 heads, 2 kv heads, head 32, 8-bit", 1, 8, 2, 32, 1),
    ]
    for case, layers, heads, kv_heads, head_dim, size in cases:
        expected = 2 * layers * kv_heads * head_dim * size
        got = call(fn, case, layers, heads, kv_heads, head_dim, size)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, int | float):
            raise CheckFailed(f"case '{case}': return a number of bytes, got {type(got).__name__}")
        if got != expected:
            raise CheckFailed(
                f"case '{case}': expected {expected} bytes per token, got {got}."
                + _bytes_hint(got, layers, heads, kv_heads, head_dim, size)
            )
    passed("cache_bytes_per_token", len(cases))


def _bytes_hint(got, layers, heads, kv_heads, head_dim, size) -> str:
    guesses = {
        layers * kv_heads * head_dim * size: "the cache keeps a key AND a value: a factor 2.",
        2 * layers * heads * head_dim * size: "only the key/value heads are cached: use "
        "num_kv_heads, not num_heads (the query heads are never cached).",
        2 * kv_heads * head_dim * size: "every layer has its own cache: multiply by num_layers.",
        2 * layers * kv_heads * head_dim * size * 8: "bytes, not bits: bytes_per_value is "
        "already in bytes.",
        2 * layers * kv_heads * head_dim: "multiply by bytes_per_value: you counted numbers.",
    }
    hint = guesses.get(got)
    return f"\nHint: {hint}" if hint and got != 2 * layers * kv_heads * head_dim * size else ""
