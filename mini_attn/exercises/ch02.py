"""Checkers for the exercises of chapter 2, "Soft attention"."""

from __future__ import annotations

import math

import torch

from ..attention.soft import soft_attention
from ..core.masks import padding_mask
from ..core.softmax import masked_softmax
from ._core import CheckFailed, call_pure, count_torch_calls, expect_close, passed

__all__ = ["check_additive_scores", "check_attention_entropy", "check_padded_soft_attention"]


def _same(got: torch.Tensor, candidate: torch.Tensor) -> bool:
    return got.shape == candidate.shape and bool(
        torch.allclose(got, candidate, atol=1e-4, rtol=1e-4, equal_nan=True)
    )


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
    calls, pairs = [], []  # torch calls made by the learner's function, per case
    for name, (q, k, w_q, w_k, w) in cases:
        expected = _additive_reference(q, k, w_q, w_k, w)

        def hint(got, q=q, k=k, w_q=w_q, w_k=w_k, w=w):
            pq, pk = q @ w_q.T, k @ w_k.T  # (L, A), (S, A)
            if _same(got, (pq[:, None, :] + pk[None, :, :]) @ w):
                return "apply tanh to W_q q + W_k k before the dot product with w."
            if _same(got, (torch.tanh(pq) @ w)[:, None] + (torch.tanh(pk) @ w)[None]):
                return (
                    "tanh must act on the sum W_q q + W_k k, not on each part separately: "
                    "that is what lets the score depend on the pair."
                )
            if _same(got, torch.tanh(pq[:, None, :] + pk[None, :, :]).sum(-1)):
                return "the last step is the dot product with w (hidden @ w), not a plain sum."
            square = w_q.shape[0] == w_q.shape[1] and w_k.shape[0] == w_k.shape[1]
            if square and _same(got, torch.tanh((q @ w_q)[:, None, :] + (k @ w_k)[None]) @ w):
                return (
                    "W_q has shape (A, Eq): the projection of every query is "
                    "query @ w_q.T (W_q q for one query), not query @ w_q."
                )
            return None

        def shape_hint(got, expected=expected):
            if got.shape == expected.T.shape:
                return "rows are queries and columns keys: the result is (L, S), not (S, L)."
            if got.dim() == 3 and got.shape[:2] == expected.shape:
                return (
                    "you returned the (L, S, A) hidden tensor: finish with its dot product "
                    "with w over the last dimension."
                )
            return None

        def counted(*args, calls=calls):
            with count_torch_calls() as watch:
                out = fn(*args)
            calls.append(watch.count)
            return out

        counted.__name__ = getattr(fn, "__name__", "your function")
        got = call_pure(counted, name, q, k, w_q, w_k, w)
        pairs.append(q.shape[0] * k.shape[0])
        # a loop over the pairs makes the number of torch calls grow with the pairs
        if len(calls) == 2 and calls[1] - calls[0] >= pairs[1] - pairs[0]:
            raise CheckFailed(
                f"case '{name}': your function made {calls[1]} torch calls for "
                f"{pairs[1]} query-key pairs and {calls[0]} for {pairs[0]}: a Python loop "
                "over the pairs. The exercise asks for broadcasting: add an (L, 1, A) "
                "tensor to a (1, S, A) one."
            )
        expect_close(name, got, expected, what="the scores", hint=hint, shape_hint=shape_hint)
    passed("additive_scores", len(cases))


def _padding_hint(got, s, mask, lengths):
    """The likely mistake behind the weights ``got`` of exercise 2.2, or None."""
    longer = padding_mask((lengths + 1).clamp(max=s.shape[-1]), s.shape[-1])
    if (lengths < s.shape[-1]).any() and _same(got, masked_softmax(s, longer)):
        return (
            "one padding key per sequence got weight: the real keys are the positions "
            "0 to length - 1, so keep positions < length (use <, not <=)."
        )
    dropped = torch.softmax(s, dim=-1) * mask
    if _same(got, dropped):
        return (
            "you set the padding's weights to 0 after the softmax, so the real keys' "
            "weights no longer sum to 1: mask the scores before the softmax (or "
            "divide by the new sum)."
        )
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


def _context_and_weights(got, name, expected_context, expected_weights):
    """``got`` as ``(context, weights)``; refuse one tensor or the swapped order."""
    if not (isinstance(got, tuple | list) and len(got) == 2):
        what = type(got).__name__
        if isinstance(got, torch.Tensor):
            what = f"one tensor of shape {tuple(got.shape)}"
        raise CheckFailed(f"case '{name}': return a tuple (context, weights), got {what}")
    context, weights = got
    if (
        isinstance(context, torch.Tensor)
        and isinstance(weights, torch.Tensor)
        and context.shape == expected_weights.shape
        and weights.shape == expected_context.shape
        and expected_weights.shape != expected_context.shape
    ):
        raise CheckFailed(
            f"case '{name}': you returned (weights, context); the order is "
            f"(context {tuple(expected_context.shape)}, weights "
            f"{tuple(expected_weights.shape)})."
        )
    return got


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
        got = call_pure(fn, name, s, v, lengths)
        context, weights = _context_and_weights(got, name, expected_context, expected_weights)

        def hint(got, s=s, mask=mask, lengths=lengths):
            return _padding_hint(got, s, mask, lengths)

        expect_close(
            name, weights, expected_weights, what="the weights", hint=hint, shape_hint=None
        )
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

    def hint_for(weights, expected):
        def hint(got):
            if torch.isnan(got).any():
                return "0 · ln 0 gives NaN in floating point: treat the terms with α = 0 as 0."
            if _same(got, expected / math.log(2)):
                return "use the natural logarithm (nats), not log2 (bits)."
            if _same(got, expected / math.log(10)):
                return "use the natural logarithm (nats), not log10."
            if _same(got, -expected):
                return "entropy is -Σ α ln α: don't forget the minus sign."
            if _same(got, expected / weights.shape[-1]):
                return "sum over the keys, do not average: H = -Σ_j α_j ln α_j."
            if (got < -1e-6).any():
                return "entropy is -Σ α ln α: don't forget the minus sign."
            return None

        return hint

    def shape_hint(got, weights):
        if got.shape == weights.shape[:-2] + weights.shape[-1:]:
            return "sum over the last dimension (the keys of each row), not over dim -2."
        if got.shape == weights.shape:
            return "sum the terms -α ln α over the keys: one entropy per row, shape (..., L)."
        if got.dim() == 0:
            return "return one entropy per row (shape (..., L)), not one number for all."
        return None

    for name, weights in cases:
        expected = _entropy_reference(weights)
        got = call_pure(fn, name, weights)
        expect_close(
            name,
            got,
            expected,
            what="the entropies",
            hint=hint_for(weights, expected),
            shape_hint=lambda got, w=weights: shape_hint(got, w),
        )
    passed("attention_entropy", len(cases))
