"""Checkers for the exercises of chapter 2, "Soft attention"."""

from __future__ import annotations

import torch

from ..attention.soft import soft_attention
from ..core.masks import padding_mask
from ._core import CheckFailed, call, expect_close, passed

__all__ = ["check_additive_scores", "check_attention_entropy", "check_padded_soft_attention"]


def _additive_reference(query, key, w_q, w_k, w):
    hidden = torch.tanh((query @ w_q.T)[:, None, :] + (key @ w_k.T)[None, :, :])  # (L, S, A)
    return hidden @ w  # (L, S)


def check_additive_scores(fn) -> None:
    """Exercise 2.1: ``fn(query (L, Eq), key (S, Ek), w_q (A, Eq), w_k (A, Ek), w (A,))``.

    Returns the ``(L, S)`` additive scores ``wᵀ tanh(W_q q_i + W_k k_j)``.
    """
    g = torch.Generator().manual_seed(2)

    def case(n_queries, n_keys, eq, ek, a, scale=1.0):
        return (
            torch.randn(n_queries, eq, generator=g) * scale,
            torch.randn(n_keys, ek, generator=g) * scale,
            torch.randn(a, eq, generator=g),
            torch.randn(a, ek, generator=g),
            torch.randn(a, generator=g),
        )

    cases = [
        ("one query, three keys, all sizes 2", case(1, 3, 2, 2, 2)),
        ("4 queries of size 3, 6 keys of size 5, A = 7", case(4, 6, 3, 5, 7)),
        ("more queries than keys (5 × 2)", case(5, 2, 4, 4, 3)),
        ("large inputs (tanh saturates)", case(3, 4, 2, 3, 5, scale=50.0)),
    ]
    for name, (q, k, w_q, w_k, w) in cases:
        expected = _additive_reference(q, k, w_q, w_k, w)

        def hint(got, q=q, k=k, w_q=w_q, w_k=w_k, w=w, expected=expected):
            if got.shape == expected.T.shape and got.shape != expected.shape:
                return "rows are queries and columns keys: the result is (L, S), not (S, L)."
            no_tanh = ((q @ w_q.T)[:, None, :] + (k @ w_k.T)[None, :, :]) @ w
            if got.shape == no_tanh.shape and torch.allclose(got, no_tanh, atol=1e-4):
                return "apply tanh to W_q q + W_k k before the dot product with w."
            separate = (torch.tanh(q @ w_q.T) @ w)[:, None] + (torch.tanh(k @ w_k.T) @ w)[None]
            if got.shape == separate.shape and torch.allclose(got, separate, atol=1e-4):
                return (
                    "tanh must act on the sum W_q q + W_k k, not on each part separately: "
                    "that is what lets the score depend on the pair."
                )
            return None

        got = call(fn, name, q.clone(), k.clone(), w_q.clone(), w_k.clone(), w.clone())
        expect_close(name, got, expected, what="the scores", hint=hint)
    passed("additive_scores", len(cases))


def check_padded_soft_attention(fn) -> None:
    """Exercise 2.2: ``fn(scores (B, L, S), values (B, S, Ev), lengths (B,))``.

    Returns ``(context (B, L, Ev), weights (B, L, S))``: soft attention in which the keys at
    positions ``>= lengths[b]`` of sequence ``b`` (the padding) get weight 0, and a sequence
    of length 0 gets all-zero weights and a zero context.
    """
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(3, 2, 5, generator=g)
    values = torch.randn(3, 5, 4, generator=g)
    cases = [
        ("no padding (every length 5)", scores, values, torch.tensor([5, 5, 5])),
        ("lengths 5, 2 and 3", scores, values, torch.tensor([5, 2, 3])),
        (
            "large scores on the padding",
            scores.index_fill(-1, torch.tensor([3, 4]), 1e4),
            values,
            torch.tensor([3, 1, 3]),
        ),
        ("an empty sequence (length 0)", scores, values, torch.tensor([4, 0, 2])),
    ]
    for name, s, v, lengths in cases:
        mask = padding_mask(lengths, s.shape[-1])  # (B, 1, S)
        expected_context, expected_weights = soft_attention(s, v, mask=mask)

        def hint(got, mask=mask, lengths=lengths):
            if torch.isnan(got).any():
                return (
                    "NaN appears for the empty sequence: a softmax over nothing is 0/0. "
                    "ma.masked_softmax (or ma.soft_attention with a mask) returns zeros there."
                )
            keep = mask.expand(got.shape)
            real_zero = got[keep].abs() < 1e-6  # weights of real keys that came back as 0
            if real_zero.numel() and real_zero.all():
                return (
                    "every real key got weight 0: is your mask inverted? Keep the positions "
                    "< length, drop the rest."
                )
            if real_zero.any():
                return (
                    "some real keys got weight 0: the real keys are the positions 0 to "
                    "length - 1, so keep positions < length (use <, not <=, and no - 1)."
                )
            if (lengths == 0).any() and (got[lengths == 0].abs() > 1e-6).any():
                return (
                    "a sequence of length 0 must get zero weights. Filling masked scores with a "
                    "large negative number gives uniform weights there instead of zeros."
                )
            if (got[~keep].abs() > 1e-6).any():
                return "the padding (positions >= length) must get weight exactly 0."
            return None

        got = call(fn, name, s.clone(), v.clone(), lengths.clone())
        if not (isinstance(got, tuple) and len(got) == 2):
            raise CheckFailed(
                f"case '{name}': return a tuple (context, weights), got {type(got).__name__}"
            )
        context, weights = got
        expect_close(name, weights, expected_weights, what="the weights", hint=hint)
        expect_close(name, context, expected_context, what="the context")
    passed("padded_soft_attention", len(cases))


def _entropy_reference(weights: torch.Tensor) -> torch.Tensor:
    logs = torch.where(weights > 0, weights.log(), torch.zeros_like(weights))
    return -(weights * logs).sum(dim=-1)


def check_attention_entropy(fn) -> None:
    """Exercise 2.3: ``fn(weights (..., L, S)) -> (..., L)``, the entropy of each row in nats.

    ``H = -Σ_j α_j ln α_j``, with ``0 · ln 0 = 0`` (masked keys, and all-zero rows of fully
    masked queries, contribute nothing).
    """
    g = torch.Generator().manual_seed(4)
    uniform = torch.full((1, 8), 1 / 8)
    one_hot = torch.eye(4)
    masked = torch.softmax(torch.randn(3, 6, generator=g), dim=-1)
    masked[:, 4:] = 0
    masked = masked / masked.sum(-1, keepdim=True)
    empty_row = torch.softmax(torch.randn(3, 5, generator=g), dim=-1)
    empty_row[1] = 0
    batch = torch.softmax(torch.randn(2, 3, 4, 7, generator=g), dim=-1)
    cases = [
        ("uniform over 8 keys (ln 8)", uniform),
        ("one-hot rows (entropy 0)", one_hot),
        ("zero weights on masked keys", masked),
        ("an all-zero row (fully masked query)", empty_row),
        ("batch dims (2, 3, 4, 7)", batch),
    ]

    def hint(got):
        if torch.isnan(got).any():
            return "0 · ln 0 gives NaN in floating point: treat the terms with α = 0 as 0."
        if torch.allclose(got.flatten()[:1], torch.tensor([3.0]), atol=1e-4):
            return "use the natural logarithm (nats), not log2 (bits)."
        if (got < -1e-6).any():
            return "entropy is -Σ α ln α: don't forget the minus sign."
        return None

    for name, weights in cases:
        expected = _entropy_reference(weights)
        got = call(fn, name, weights.clone())
        expect_close(name, got, expected, what="the entropies", hint=hint)
    passed("attention_entropy", len(cases))
