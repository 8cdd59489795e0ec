"""Checkers for the exercises of chapter 1, "What attention is"."""

from __future__ import annotations

import torch

from ..attention.pooling import attention_pooling
from ..core.softmax import masked_softmax
from ._core import call, expect_close, passed

__all__ = ["check_gaussian_weights", "check_masked_softmax", "check_soft_lookup"]


def _sums_to_one_over_queries(got: torch.Tensor) -> bool:
    cols = got.sum(dim=-2)
    return bool(torch.allclose(cols, torch.ones_like(cols), atol=1e-4))


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

    def hint(got):
        if torch.isnan(got).any():
            return (
                "exp(-d²/2h²) underflows to 0 for distant keys, and 0/0 is NaN. Subtract each "
                "row's largest score before exp, or use torch.softmax / ma.masked_softmax."
            )
        if got.shape[-2] > 1 and _sums_to_one_over_queries(got):
            return (
                "your weights sum to 1 over the queries (dim 0); they should sum to 1 "
                "over the keys (dim -1)."
            )
        return None

    for case, queries, keys, h in cases:
        _, expected = attention_pooling(queries, keys, keys, bandwidth=h)
        got = call(fn, case, queries, keys, h)
        expect_close(case, got, expected, what="the weights", hint=hint)
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

    def hint_for(mask):
        def hint(got):
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

    for case, s, mask in cases:
        expected = masked_softmax(s, mask)
        got = call(fn, case, s.clone(), None if mask is None else mask.clone())
        expect_close(case, got, expected, what="the weights", hint=hint_for(mask))
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
            if torch.allclose(got, masked_softmax(scores * t) @ v, atol=1e-5):
                return "divide the scores by the temperature, do not multiply."
            if torch.allclose(got, torch.softmax(scores / t, dim=0) @ v, atol=1e-5):
                return "the softmax runs over the keys (dim -1), not over the queries (dim 0)."
            return None

        got = call(fn, case, q.clone(), k.clone(), v.clone(), t)
        expect_close(case, got, expected, what="the output", hint=hint)
    passed("soft_lookup", len(cases))
