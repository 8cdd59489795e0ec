"""Checkers for the exercises of chapter 5, "The K/Q/V computation"."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..core.masks import causal_mask, padding_mask
from ..core.numpy_reference import scaled_dot_product_attention_numpy
from ..core.sdpa import scaled_dot_product_attention
from ._core import CheckFailed, call, expect_close, passed

__all__ = [
    "check_attention_numpy",
    "check_decoder_attention",
    "check_self_attention_from_weights",
]


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


class _WeightsOnly(nn.Linear):
    """An ``nn.Linear`` that refuses to be called: the exercise uses its matrices."""

    def forward(self, x):
        raise RuntimeError(
            "do not call the projection module; compute x @ weight.T + bias from its "
            "`.weight` and `.bias` tensors"
        )


def _projections(embed_dim, head_dim, value_dim, bias, seed):
    with torch.random.fork_rng(devices=[]):  # seeded weights, the learner's RNG untouched
        torch.manual_seed(seed)
        return tuple(
            _WeightsOnly(embed_dim, size, bias=bias) for size in (head_dim, head_dim, value_dim)
        )


def _attend(x, projections, *, transpose=True, use_bias=True, scale=None, dim=-1):
    """softmax(Q Kᵀ · scale) V from the projections' matrices, with the usual mistakes."""
    q, k, v = (
        x @ (p.weight.T if transpose else p.weight)
        + (p.bias if use_bias and p.bias is not None else 0.0)
        for p in projections
    )
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    return torch.softmax(q @ k.transpose(-2, -1) * scale, dim=dim) @ v


def check_self_attention_from_weights(fn) -> None:
    """Exercise 5.3: ``fn(x (..., N, E), q_proj, k_proj, v_proj) -> (..., N, Dv)``.

    Self-attention from the matrices of three ``nn.Linear`` layers (``weight`` of shape
    ``(D, E)``, ``bias`` of shape ``(D,)`` or None): ``Q = x Wᵀ + b`` (likewise K and V),
    then ``softmax(Q Kᵀ / √D) V``. Calling the layers is refused.
    """
    g = torch.Generator().manual_seed(8)
    cases = [
        ("E=8, D=4, with bias", torch.randn(2, 5, 8, generator=g), (8, 4, 4, True, 0)),
        ("square E=D=6, with bias", torch.randn(2, 4, 6, generator=g), (6, 6, 6, True, 1)),
        ("E=8, D=2, Dv=3, bias=None", torch.randn(1, 6, 8, generator=g), (8, 2, 3, False, 2)),
        (
            "batch dims (3, 2), N=4, E=8, D=4",
            torch.randn(3, 2, 4, 8, generator=g),
            (8, 4, 4, True, 3),
        ),
    ]
    for case, x, sizes in cases:
        projections = _projections(*sizes)
        with torch.no_grad():
            expected = _attend(x, projections)
            square = x.shape[-1] == projections[0].weight.shape[0]
            wrong = [
                (
                    "the scale is 1/√D, with D the size of the queries and keys (weight.shape[0]), "
                    "not of the input E.",
                    _attend(x, projections, scale=1 / math.sqrt(x.shape[-1])),
                ),
                (
                    "the scores are not scaled: divide Q Kᵀ by √D.",
                    _attend(x, projections, scale=1.0),
                ),
                (
                    "nn.Linear computes x @ weight.T + bias: its weight has shape (D, E), so "
                    "transpose it.",
                    _attend(x, projections, transpose=False) if square else None,
                ),
                (
                    "the biases are missing: Q = x @ weight.T + bias.",
                    _attend(x, projections, use_bias=False),
                ),
                (
                    "the softmax runs over the keys (the last dim), not over the queries.",
                    _attend(x, projections, dim=-2),
                ),
            ]

        def hint(got, wrong=wrong):
            got = got.detach()
            for message, candidate in wrong:
                if candidate is not None and _close(got, candidate):
                    return message
            return None

        got = call(fn, case, x.clone(), *projections)
        if isinstance(got, tuple):
            raise CheckFailed(f"case '{case}': return only the output, got a tuple of {len(got)}")
        expect_close(case, got, expected, what="the output", hint=hint)
    passed("self_attention_from_weights", len(cases))
