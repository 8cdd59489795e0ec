"""Checkers for the exercises of chapter 1, "What attention is"."""

from __future__ import annotations

import torch

from ..attention.pooling import attention_pooling
from ..core.softmax import masked_softmax
from ._core import call_pure, expect_close, forbidden, passed

__all__ = ["check_gaussian_weights", "check_masked_softmax", "check_soft_lookup"]


def _sums_to_one_over_queries(got: torch.Tensor) -> bool:
    cols = got.sum(dim=-2)
    return bool(torch.allclose(cols, torch.ones_like(cols), atol=1e-4))


def _same(got: torch.Tensor, candidate: torch.Tensor) -> bool:
    """``got`` equals a candidate wrong answer (NaN where the candidate has NaN too)."""
    return got.shape == candidate.shape and bool(
        torch.allclose(got, candidate, atol=1e-5, rtol=1e-4, equal_nan=True)
    )


def _wrong_rows_with_keys(got, expected, mask) -> bool:
    """Some row that has an unmasked key is wrong (zero or NaN where weights were due)."""
    has_keys = mask.expand(got.shape).any(dim=-1)
    wrong = ~torch.isclose(got, expected, atol=1e-5).all(dim=-1)
    return bool((has_keys & wrong).any())


_SOFTMAXES = {
    torch.softmax: "torch.softmax",
    torch.nn.functional.softmax: "torch.nn.functional.softmax",
    torch.Tensor.softmax: "Tensor.softmax",
    torch.special.softmax: "torch.special.softmax",
    torch.log_softmax: "torch.log_softmax",
    torch.nn.functional.log_softmax: "torch.nn.functional.log_softmax",
    torch.Tensor.log_softmax: "Tensor.log_softmax",
}


def check_gaussian_weights(fn) -> None:
    """Exercise 1.1: ``fn(queries (L,), keys (S,), bandwidth) -> weights (L, S)``.

    The Gaussian attention weights ``softmax(-(q - k)² / (2 h²))`` over the keys.
    """
    cases = [
        ("two queries, three keys", torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.5, 2.0]), 1.0),
        ("narrow bandwidth h=0.3", torch.tensor([0.2, 1.3, 2.2]), torch.linspace(0, 3, 5), 0.3),
        # every key is about 100 bandwidths away: exp(-d²/2h²) underflows to 0 in float32
        ("far-away query", torch.tensor([100.0]), torch.tensor([0.0, 1.0, 2.0]), 1.0),
        ("four queries, seven keys", torch.linspace(-1, 4, 4), torch.linspace(0, 3, 7), 0.8),
    ]

    def hint_for(queries, keys, h):
        sq = (queries[:, None] - keys[None, :]) ** 2  # (L, S)

        def hint(got):
            if torch.isnan(got).any():
                return (
                    "exp(-d²/2h²) underflows to 0 for distant keys, and 0/0 is NaN. Subtract "
                    "each row's largest score before exp, or use torch.softmax / "
                    "ma.masked_softmax."
                )
            if _same(got, torch.softmax(-sq / (2 * h**2), dim=0)):
                return (
                    "your weights sum to 1 over the queries (dim 0); they should sum to 1 "
                    "over the keys (dim -1)."
                )
            if _same(got, torch.softmax(sq / (2 * h**2), dim=-1)):
                return "the score is MINUS the squared distance: near keys must score highest."
            if _same(got, torch.softmax(-sq / h**2, dim=-1)):
                return "the denominator is 2h², not h²: you left out the factor 2."
            if _same(got, torch.softmax(-sq / (2 * h), dim=-1)) or _same(
                got, torch.softmax(-sq / h, dim=-1)
            ):
                return "divide by 2h² (the bandwidth squared), not by the bandwidth itself."
            if _same(got, torch.softmax(-sq.sqrt() / (2 * h**2), dim=-1)):
                return "use the squared distance (q - k)², not the distance |q - k|."
            if got.shape[-2] > 1 and _sums_to_one_over_queries(got):
                return (
                    "your weights sum to 1 over the queries (dim 0); they should sum to 1 "
                    "over the keys (dim -1)."
                )
            return None

        return hint

    def shape_hint(got, queries, keys):
        n_q, n_k = len(queries), len(keys)
        if got.shape == (n_k, n_q) and n_k != n_q:
            return "rows are queries and columns keys: return (L, S), not (S, L)."
        if got.dim() == 1 and len(got) == n_q:
            return (
                "you returned one number per query (the pooled output?); the exercise asks "
                "for the (L, S) matrix of weights, before any average with the values."
            )
        return None

    for case, queries, keys, h in cases:
        _, expected = attention_pooling(queries, keys, keys, bandwidth=h)
        got = call_pure(fn, case, queries, keys, h)
        expect_close(
            case,
            got,
            expected,
            what="the weights",
            hint=hint_for(queries, keys, h),
            shape_hint=lambda got, q=queries, k=keys: shape_hint(got, q, k),
        )
    passed("gaussian_weights", len(cases))


def check_masked_softmax(fn) -> None:
    """Exercise 1.2: ``fn(scores, mask) -> weights``, a masked softmax over the last dim.

    ``mask`` is boolean, ``True`` where a key may be attended to, or None.
    """
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 5, generator=g)
    partial = torch.tensor([[1, 1, 0, 1, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    full_row = partial.clone()
    full_row[1] = False
    batch_scores = torch.randn(2, 3, 4, 5, generator=g)
    batch_mask = torch.rand(4, 5, generator=g) > 0.3
    batch_mask[:, 0] = True
    cases = [
        ("no mask (mask=None)", scores, None),
        ("some keys masked", scores, partial),
        ("large scores (1000 and more)", scores * 1000 + 500, partial),
        ("a row with every key masked", scores, full_row),
        ("batch dims (2, 3, 4, 5) with a (4, 5) mask", batch_scores, batch_mask),
    ]

    def hint_for(scores, mask):
        def hint(got):
            if mask is not None:
                e = torch.exp(scores - scores.amax(dim=-1, keepdim=True)) * mask
                total = e.sum(dim=-1, keepdim=True)
                if any(
                    _same(got, e / d)
                    for d in (total, total.clamp_min(torch.finfo(e.dtype).tiny), total + 1e-9)
                ) and _wrong_rows_with_keys(got, masked_softmax(scores, mask), mask):
                    return (
                        "a row with unmasked keys came back zero or NaN: the maximum you "
                        "subtracted was taken over every score, masked ones included, so "
                        "exp underflowed on the unmasked ones. Take the maximum over the "
                        "unmasked scores only (fill masked scores with -inf first)."
                    )
            if torch.isnan(got).any() or torch.isinf(got).any():
                return (
                    "NaN or inf appears when exp overflows (large scores) or when a whole row "
                    "is masked (0/0). Subtract the row maximum before exp, and give a fully "
                    "masked row zeros: divide by the sum clamped to a tiny positive number."
                )
            if mask is not None and (got.masked_fill(mask, 0).abs() > 1e-6).any():
                empty_rows = ~mask.expand(got.shape).any(dim=-1)
                if empty_rows.any() and (got[empty_rows].abs() > 1e-6).any():
                    return (
                        "a row with every key masked must get all-zero weights (filling masked "
                        "scores with a large negative number gives uniform weights instead)."
                    )
                if (got.masked_fill(~mask, 0).abs() < 1e-6).all():
                    return "your mask is inverted: True means 'may attend', False means 'masked'."
                return "masked positions (mask False) must get weight exactly 0."
            if got.dim() >= 2 and got.shape[-2] > 1 and _sums_to_one_over_queries(got):
                return "your weights sum to 1 over dim -2; the softmax runs over the last dim."
            return None

        return hint

    message = (
        "exercise 1.2 asks you to write the softmax yourself, with torch.exp: your function "
        "called {name} (ma.masked_softmax calls it too)."
    )
    for case, s, mask in cases:
        expected = masked_softmax(s, mask)
        with forbidden(_SOFTMAXES, message):
            got = call_pure(fn, case, s, mask)
        expect_close(case, got, expected, what="the weights", hint=hint_for(s, mask))
    passed("masked_softmax", len(cases))


def check_soft_lookup(fn) -> None:
    """Exercise 1.3: ``fn(queries (L, E), keys (S, E), values (S, Ev), temperature) -> (L, Ev)``.

    A soft dictionary look-up with dot-product scores:
    ``softmax(queries @ keysᵀ / temperature) @ values``, the softmax over the keys.
    """
    g = torch.Generator().manual_seed(1)
    keys = torch.randn(6, 4, generator=g)
    values = torch.randn(6, 3, generator=g)
    cases = [
        ("one query, temperature 1", torch.randn(1, 4, generator=g), keys, values, 1.0),
        ("five queries, temperature 2", torch.randn(5, 4, generator=g), keys, values, 2.0),
        # a tiny temperature makes the scores huge: the look-up becomes a hard one
        ("temperature 0.001 (almost hard)", torch.randn(3, 4, generator=g), keys, values, 1e-3),
        ("queries equal to the keys", keys.clone(), keys, torch.eye(6), 0.5),
    ]
    for case, q, k, v, t in cases:
        expected = masked_softmax(q @ k.T / t) @ v

        def hint(got, q=q, k=k, v=v, t=t):
            if torch.isnan(got).any():
                return "exp overflowed: subtract each row's maximum score (torch.softmax does)."
            scores = q @ k.T
            if _same(got, masked_softmax(scores * t) @ v):
                return "divide the scores by the temperature, do not multiply."
            if _same(got, torch.softmax(scores / t, dim=0) @ v):
                return "the softmax runs over the keys (dim -1), not over the queries (dim 0)."
            if _same(got, masked_softmax(scores / t / q.shape[-1] ** 0.5) @ v):
                return (
                    "this exercise divides by the temperature only: the 1/√E of scaled "
                    "dot-product attention is not part of it."
                )
            if _same(got, (scores / t) @ v):
                return "the scores must go through a softmax over the keys before the average."
            if _same(got, masked_softmax(-(torch.cdist(q, k) ** 2) / t) @ v):
                return "the score is the dot product q·k, not minus the squared distance."
            return None

        def shape_hint(got, q=q, k=k, v=v):
            if got.shape == (q.shape[0], k.shape[0]) != (q.shape[0], v.shape[1]):
                return (
                    "you returned the (L, S) weights: the output is their average of the "
                    "values, weights @ values, of shape (L, Ev)."
                )
            return None

        got = call_pure(fn, case, q, k, v, t)
        expect_close(case, got, expected, what="the output", hint=hint, shape_hint=shape_hint)
    passed("soft_lookup", len(cases))
