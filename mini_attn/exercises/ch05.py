"""Checkers for the exercises of chapter 5, "The K/Q/V computation"."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..kqv_numpy import scaled_dot_product_attention_numpy
from ..masks import causal_mask, padding_mask
from ..sdpa import scaled_dot_product_attention
from ._core import CheckFailed, call, expect_close, passed

__all__ = ["check_attention_entropy", "check_attention_numpy", "check_decoder_attention"]


def _close(a, b) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=1e-5, rtol=1e-4, equal_nan=False))


def check_attention_numpy(fn) -> None:
    """Exercise 5.1: ``fn(query (..., L, E), key (..., S, E), value (..., S, Ev), mask=None)``.

    NumPy arrays in, the output ``softmax(Q Kᵀ / √E) V`` of shape ``(..., L, Ev)`` out.
    ``mask`` is a boolean array broadcastable to ``(..., L, S)``, ``True`` where a query may
    attend; a query with every key masked gets a zero output row.
    """
    rng = np.random.default_rng(5)
    mask = rng.random((4, 6)) < 0.6
    mask[:, 0] = True
    empty_row = mask.copy()
    empty_row[2] = False
    cases = [
        (
            "L=3, S=5, E=4, Ev=2",
            rng.standard_normal((3, 4)),
            rng.standard_normal((5, 4)),
            rng.standard_normal((5, 2)),
            None,
        ),
        (
            "batch (2, 3), L=4, S=6, E=8",
            rng.standard_normal((2, 3, 4, 8)),
            rng.standard_normal((2, 3, 6, 8)),
            rng.standard_normal((2, 3, 6, 3)),
            None,
        ),
        (
            "a (4, 6) mask",
            rng.standard_normal((2, 4, 8)),
            rng.standard_normal((2, 6, 8)),
            rng.standard_normal((2, 6, 3)),
            mask,
        ),
        (
            "large scores (inputs × 100)",
            100 * rng.standard_normal((4, 8)),
            100 * rng.standard_normal((6, 8)),
            rng.standard_normal((6, 3)),
            mask,
        ),
        (
            "query 2 may attend to no key",
            rng.standard_normal((4, 8)),
            rng.standard_normal((6, 8)),
            rng.standard_normal((6, 3)),
            empty_row,
        ),
    ]
    for case, q, k, v, m in cases:
        expected, _ = scaled_dot_product_attention_numpy(q, k, v, mask=m)
        scale = 1 / math.sqrt(q.shape[-1])

        def variant(scores_scale=scale, axis=-1, inverted=False, q=q, k=k, v=v, m=m):
            scores = q @ np.swapaxes(k, -1, -2) * scores_scale
            if m is not None:
                scores = np.where(~m if inverted else m, scores, -np.inf)
            with np.errstate(invalid="ignore"):  # a fully masked row gives NaN, zeroed below
                shifted = scores - scores.max(axis=axis, keepdims=True)
                weights = np.exp(shifted) / np.exp(shifted).sum(axis=axis, keepdims=True)
            return torch.from_numpy(np.nan_to_num(weights) @ v)

        def hint(got, variant=variant, m=m, q=q):
            if torch.isnan(got).any():
                if m is not None and (~m).all(axis=-1).any():
                    return (
                        "a query with every key masked gives 0/0 = NaN: divide by the row sum "
                        "clamped to a tiny positive number (np.maximum(sum, tiny)), or set "
                        "those rows to zero."
                    )
                return "exp overflowed: subtract each row's maximum score before np.exp."
            if _close(got, variant(scores_scale=1.0)):
                return "the scores are not scaled: divide Q Kᵀ by √E (E = query.shape[-1])."
            if _close(got, variant(scores_scale=1 / q.shape[-1])):
                return "divide by √E, not by E."
            if got.shape[-2] > 1 and _close(got, variant(axis=-2)):
                return "the softmax runs over the keys (the last axis), not over the queries."
            if m is not None and _close(got, variant(inverted=True)):
                return "your mask is inverted: True means 'may attend'."
            return None

        got = call(fn, case, q.copy(), k.copy(), v.copy(), None if m is None else m.copy())
        if isinstance(got, tuple):
            raise CheckFailed(
                f"case '{case}': return only the output array, got a tuple of {len(got)}"
            )
        if isinstance(got, torch.Tensor):
            raise CheckFailed(
                f"case '{case}': work in NumPy and return a numpy.ndarray, got a torch.Tensor"
            )
        if not isinstance(got, np.ndarray):
            raise CheckFailed(f"case '{case}': return a numpy.ndarray, got {type(got).__name__}")
        expect_close(
            case,
            torch.from_numpy(np.asarray(got, dtype=np.float64)),
            torch.from_numpy(expected),
            what="the output",
            hint=hint,
        )
    passed("attention_numpy", len(cases))


def check_decoder_attention(fn) -> None:
    """Exercise 5.2: ``fn(query (B, L, E), key (B, S, E), value (B, S, Ev), key_lengths (B,))``.

    Causal attention (query ``i`` attends to keys ``j ≤ i``, top-left aligned) that also
    ignores the padding keys ``j ≥ key_lengths[b]``; returns the output ``(B, L, Ev)``, with
    zero rows for queries that may attend to no key.
    """
    g = torch.Generator().manual_seed(6)

    def qkv(b, n_queries, n_keys, dim=8, value_dim=3):
        return (
            torch.randn(b, n_queries, dim, generator=g),
            torch.randn(b, n_keys, dim, generator=g),
            torch.randn(b, n_keys, value_dim, generator=g),
        )

    cases = [
        ("B=2, L=S=5, lengths [5, 3]", *qkv(2, 5, 5), torch.tensor([5, 3])),
        ("no padding, L=S=4", *qkv(1, 4, 4), torch.tensor([4])),
        ("L=3, S=6, lengths [6, 2]", *qkv(2, 3, 6), torch.tensor([6, 2])),
        ("a sequence of length 0", *qkv(2, 4, 4), torch.tensor([4, 0])),
    ]
    for case, q, k, v, lengths in cases:
        n_queries, n_keys = q.shape[1], k.shape[1]
        padding = padding_mask(lengths, n_keys)  # (B, 1, S)
        future = causal_mask(n_queries, n_keys)
        expected = scaled_dot_product_attention(q, k, v, mask=padding & future)[0]

        def attend(mask, q=q, k=k, v=v):
            return scaled_dot_product_attention(q, k, v, mask=mask)[0]

        def hint(
            got, padding=padding, future=future, attend=attend, n_queries=n_queries, n_keys=n_keys
        ):
            got = got.detach()
            if torch.isnan(got).any():
                return (
                    "a query with no allowed key gives NaN; its output row must be zero "
                    "(ma.scaled_dot_product_attention and a masked softmax do that)."
                )
            candidates = [
                (padding, "the causal mask is missing: query i may not see keys j > i."),
                (future, "the padding is not masked: keys j ≥ key_lengths[b] must get no weight."),
                (padding & ~future, "your causal mask is inverted: True (may attend) for j ≤ i."),
                (
                    ~padding & future,
                    "your padding mask is inverted: True for the real keys j < length.",
                ),
                (
                    padding
                    & torch.ones(n_queries, n_keys, dtype=torch.bool).tril(n_keys - n_queries),
                    "the causal diagonal is aligned at the bottom right; align it at the top "
                    "left (query i sees keys 0 … i), as ma.causal_mask and is_causal do.",
                ),
            ]
            for mask, message in candidates:
                if _close(got, attend(mask)):
                    return message
            return None

        got = call(fn, case, q.clone(), k.clone(), v.clone(), lengths.clone())
        if isinstance(got, tuple):
            raise CheckFailed(f"case '{case}': return only the output, got a tuple of {len(got)}")
        expect_close(case, got, expected, what="the output", hint=hint)
    passed("decoder_attention", len(cases))


def check_attention_entropy(fn) -> None:
    """Exercise 5.3: ``fn(weights (..., L, S)) -> (..., L)``, the entropy of each row in nats.

    ``H = -Σ_j w_j ln w_j``, with ``0 · ln 0 = 0`` (masked keys, and all-zero rows, add
    nothing).
    """
    g = torch.Generator().manual_seed(7)
    masked = torch.softmax(torch.randn(3, 5, generator=g), -1) * torch.tensor([1.0, 1, 0, 1, 0])
    masked = masked / masked.sum(-1, keepdim=True)
    with_empty_row = masked.clone()
    with_empty_row[1] = 0.0
    cases = [
        ("uniform rows over 4 keys", torch.full((2, 4), 0.25)),
        ("one-hot rows", torch.eye(3)),
        (
            "random weights, batch (2, 3, 4, 6)",
            torch.softmax(torch.randn(2, 3, 4, 6, generator=g), -1),
        ),
        ("some weights exactly 0 (masked keys)", masked),
        ("a fully masked row (all zeros)", with_empty_row),
    ]
    for case, w in cases:
        expected = torch.special.entr(w).sum(-1)

        def hint(got, expected=expected, w=w):
            got = got.detach()
            if torch.isnan(got).any():
                return "0 · log 0 is NaN in floating point: treat the terms with w = 0 as 0."
            if _close(got, -expected):
                return "the entropy is -Σ w ln w, which is never negative: check the sign."
            if _close(got, expected / math.log(2)):
                return "that is the entropy in bits (log2); use the natural log (nats)."
            if got.shape == w.shape[:-2] + w.shape[-1:] or _close(
                got, torch.special.entr(w).sum(-2)
            ):
                return "sum over the keys (the last dim), one entropy per query row."
            return None

        got = call(fn, case, w.clone())
        expect_close(case, got, expected, what="the entropy", hint=hint)
    passed("attention_entropy", len(cases))
