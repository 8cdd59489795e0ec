"""Chapter 7's checkers: the solutions pass, plausible mistakes get a pointed message."""

from __future__ import annotations

import pytest
import torch

from mini_attn.exercises import (
    CheckFailed,
    check_cache_bytes_per_token,
    check_kv_update,
    check_sliding_window_mask_mod,
)

# --- 7.1: KVCache.update -------------------------------------------------------------------


def update_solution(cache, key, value):
    if cache.keys is None:
        cache.keys, cache.values = key, value
    else:
        cache.keys = torch.cat((cache.keys, key), dim=-2)
        cache.values = torch.cat((cache.values, value), dim=-2)
    return cache.keys, cache.values


def update_other_correct(cache, key, value):
    """Another correct answer: a list of chunks concatenated on demand."""
    parts = getattr(cache, "parts", [])
    parts.append((key, value))
    cache.parts = parts
    cache.keys = torch.cat([k for k, _ in parts], dim=2)
    cache.values = torch.cat([v for _, v in parts], dim=2)
    return cache.keys, cache.values


def _update_along(axis):
    def update(cache, key, value):
        if cache.keys is None:
            cache.keys, cache.values = key, value
        else:
            cache.keys = torch.cat((cache.keys, key), dim=axis)
            cache.values = torch.cat((cache.values, value), dim=axis)
        return cache.keys, cache.values

    return update


def update_swapped(cache, key, value):
    keys, values = update_solution(cache, key, value)
    return values, keys


def update_new_only(cache, key, value):
    update_solution(cache, key, value)
    return key, value


def update_not_stored(cache, key, value):
    if cache.keys is None:
        cache.keys, cache.values = key, value
        return key, value
    return torch.cat((cache.keys, key), -2), torch.cat((cache.values, value), -2)


def update_prepends(cache, key, value):
    if cache.keys is None:
        cache.keys, cache.values = key, value
    else:
        cache.keys = torch.cat((key, cache.keys), dim=-2)
        cache.values = torch.cat((value, cache.values), dim=-2)
    return cache.keys, cache.values


def update_stub(cache, key, value):
    raise NotImplementedError


@pytest.mark.parametrize("fn", [update_solution, update_other_correct])
def test_kv_update_accepts_correct_answers(fn, capsys):
    check_kv_update(fn)
    assert "✓ kv_update" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, message",
    [
        (_update_along(1), "along the heads"),
        (_update_along(-1), "along the features"),
        (update_swapped, r"you return \(values, keys\)"),
        (update_new_only, "not only this step's"),
        (update_not_stored, "must hold all 6 positions"),
        (update_prepends, "after the cached ones, not before"),
        (update_stub, "not implemented yet"),
        (lambda cache, key, value: key, "return the pair"),
    ],
)
def test_kv_update_refuses_mistakes(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_kv_update(fn)


def test_kv_update_leaves_the_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_kv_update(update_solution)
    assert torch.equal(torch.rand(3), expected)


# --- 7.2: the sliding-window mask_mod ------------------------------------------------------


def window_solution(window):
    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx - kv_idx < window)

    return mask_mod


def window_other_correct(window):
    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx > q_idx - window) & ~(kv_idx > q_idx)

    return mask_mod


def _window(fn):
    return lambda window: lambda b, h, q, k: fn(q, k, window)


@pytest.mark.parametrize("fn", [window_solution, window_other_correct])
def test_sliding_window_mask_mod_accepts_correct_answers(fn, capsys):
    check_sliding_window_mask_mod(fn)
    assert "✓ sliding_window_mask_mod" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, message",
    [
        (_window(lambda q, k, w: (q - k).abs() < w), "must not see the future"),
        (_window(lambda q, k, w: (k <= q) & (q - k <= w)), "you allow one more"),
        (_window(lambda q, k, w: (k <= q) & (q - k < w - 1)), "you allow one fewer"),
        (_window(lambda q, k, w: ~((k <= q) & (q - k < w))), "yours is the opposite"),
        (_window(lambda q, k, w: (q <= k) & (k - q < w)), "swapped"),
        (_window(lambda q, k, w: k <= q), "plain causal mask"),
        (_window(lambda q, k, w: ((k <= q) & (q - k < w)).long()), "should return booleans"),
        (lambda window: None, "should return a function"),
    ],
)
def test_sliding_window_mask_mod_refuses_mistakes(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_sliding_window_mask_mod(fn)


# --- 7.3: cache bytes per token ------------------------------------------------------------


def bytes_solution(num_layers, num_heads, num_kv_heads, head_dim, bytes_per_value):
    return 2 * num_layers * num_kv_heads * head_dim * bytes_per_value


def bytes_other_correct(num_layers, num_heads, num_kv_heads, head_dim, bytes_per_value):
    per_layer = torch.zeros(2, num_kv_heads, head_dim).numel() * bytes_per_value
    return torch.tensor(per_layer * num_layers)


@pytest.mark.parametrize("fn", [bytes_solution, bytes_other_correct])
def test_cache_bytes_accepts_correct_answers(fn, capsys):
    check_cache_bytes_per_token(fn)
    assert "✓ cache_bytes_per_token" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda n, h, kv, d, b: n * kv * d * b, "a key AND a value"),
        (lambda n, h, kv, d, b: 2 * n * h * d * b, "use num_kv_heads, not num_heads"),
        (lambda n, h, kv, d, b: 2 * kv * d * b, "multiply by num_layers"),
        (lambda n, h, kv, d, b: 2 * n * kv * d * b * 8, "bytes, not bits"),
        (lambda n, h, kv, d, b: 2 * n * kv * d, "multiply by bytes_per_value"),
        (lambda n, h, kv, d, b: str(2 * n * kv * d * b), "return a number of bytes"),
    ],
)
def test_cache_bytes_refuses_mistakes(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_cache_bytes_per_token(fn)
