"""Exercise 5.1: scaled dot-product attention in NumPy, with a mask."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ...core.numpy_reference import scaled_dot_product_attention_numpy
from .._core import CheckFailed, expect_close, passed
from ._shared import call_with_hint, close, expect_unchanged, when_shape

__all__ = ["check_attention_numpy"]


def _numpy_variant(q, k, v, m, *, scale, axis=-1, inverted=False, fill=-np.inf, max_all=False):
    """softmax(Q Kᵀ · scale) V with one of the usual mistakes planted, in float64."""
    scores = q @ np.swapaxes(k, -1, -2) * scale
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if max_all and m is not None:  # the maximum over every key, masked ones included
            exp = np.exp(scores - scores.max(axis=axis, keepdims=True)) * m
            weights = exp / exp.sum(axis=axis, keepdims=True)
            return weights @ v
        if m is not None:
            scores = np.where(~m if inverted else m, scores, fill)
        shifted = scores - scores.max(axis=axis, keepdims=True)
        weights = np.exp(shifted) / np.exp(shifted).sum(axis=axis, keepdims=True)
    return np.nan_to_num(weights) @ v


def _numpy_crash_hint(q):
    def hint(error):
        if isinstance(error, ValueError) and "matmul" in str(error) and q.ndim > 2:
            return (
                "on a batched array `key.T` reverses every axis, not only the last two: use "
                "np.swapaxes(key, -1, -2) (or key.swapaxes(-1, -2))."
            )
        return None

    return hint


def _numpy_cases() -> list:
    """The six cases: (name, query, key, value, mask or None), NumPy float64."""
    rng = np.random.default_rng(5)
    mask = rng.random((4, 6)) < 0.6
    mask[:, 0] = True
    empty_row = mask.copy()
    empty_row[2] = False
    large_q, large_k = 100 * rng.standard_normal((4, 8)), 100 * rng.standard_normal((6, 8))
    # large scores whose row maximum falls on a masked key: exp of every allowed key underflows
    large_mask = np.ones((4, 6), dtype=bool)
    scores = large_q @ large_k.T
    large_mask[np.arange(4), scores.argmax(axis=-1)] = False
    return [
        (
            "L=3, S=5, D=4, Dv=2",
            rng.standard_normal((3, 4)),
            rng.standard_normal((5, 4)),
            rng.standard_normal((5, 2)),
            None,
        ),
        (
            "batch (2, 3), L=4, S=6, D=8",
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
            large_q,
            large_k,
            rng.standard_normal((6, 3)),
            mask,
        ),
        (
            "large scores, each row's largest score masked",
            large_q,
            large_k,
            rng.standard_normal((6, 3)),
            large_mask,
        ),
        (
            "query 2 may attend to no key",
            rng.standard_normal((4, 8)),
            rng.standard_normal((6, 8)),
            rng.standard_normal((6, 3)),
            empty_row,
        ),
    ]


def _numpy_hint(got, variant, q, m):
    """The planted mistake that ``got`` reproduces, or None."""
    empty = m is not None and bool((~m).all(axis=-1).any())
    if torch.isnan(got).any():
        if m is not None and not empty:
            max_all = variant(max_all=True)
            if torch.equal(torch.isnan(got), torch.isnan(max_all)):
                return (
                    "you subtracted the maximum over all keys, masked ones included: "
                    "where a masked key holds the largest score, the exp of every "
                    "allowed key underflows to 0 and the row is 0/0. Set the masked "
                    "scores to -inf first, then take the maximum."
                )
        if empty:
            return (
                "a query with every key masked gives 0/0 = NaN: divide by the row sum "
                "clamped to a tiny positive number (np.maximum(sum, tiny)), or set "
                "those rows to zero."
            )
        return "exp overflowed: subtract each row's maximum score before np.exp."
    if empty and close(got, variant(fill=-1e9)):
        return (
            "a query whose keys are all masked must get a zero row; with -1e9 (or any "
            "finite number) instead of -inf its masked scores tie and it averages every "
            "value. Use -inf, and clamp the row sum (or zero such rows)."
        )
    if close(got, variant(scale=1.0)):
        return "the scores are not scaled: divide Q Kᵀ by √D (D = query.shape[-1])."
    if close(got, variant(scale=1 / q.shape[-1])):
        return "divide by √D, not by D."
    if got.shape[-2] > 1 and close(got, variant(axis=-2)):
        return "the softmax runs over the keys (the last axis), not over the queries."
    if m is not None and close(got, variant(inverted=True)):
        return "your mask is inverted: True means 'may attend'."
    return None


def _refuse_non_array(case: str, got) -> None:
    """A tuple, a torch tensor, anything but a NumPy array of numbers is refused."""
    if isinstance(got, tuple):
        raise CheckFailed(f"case '{case}': return only the output array, got a tuple of {len(got)}")
    if isinstance(got, torch.Tensor):
        raise CheckFailed(
            f"case '{case}': work in NumPy and return a numpy.ndarray, got a torch.Tensor"
        )
    if not isinstance(got, np.ndarray):
        raise CheckFailed(f"case '{case}': return a numpy.ndarray, got {type(got).__name__}")
    if not (np.issubdtype(got.dtype, np.floating) or np.issubdtype(got.dtype, np.integer)):
        raise CheckFailed(f"case '{case}': return an array of floats, got dtype {got.dtype}")


def check_attention_numpy(fn) -> None:
    """Exercise 5.1: ``fn(query (..., L, D), key (..., S, D), value (..., S, Dv), mask=None)``.

    NumPy arrays in, the output ``softmax(Q Kᵀ / √D) V`` of shape ``(..., L, Dv)`` out.
    ``mask`` is a boolean array broadcastable to ``(..., L, S)``, ``True`` where a query may
    attend; a query with every key masked gets a zero output row.
    """
    cases = _numpy_cases()
    for case, q, k, v, m in cases:
        expected, _ = scaled_dot_product_attention_numpy(q, k, v, mask=m)
        scale = 1 / math.sqrt(q.shape[-1])

        def variant(q=q, k=k, v=v, m=m, scale=scale, **mistake):
            return torch.from_numpy(_numpy_variant(q, k, v, m, scale=scale, **mistake))

        hint = functools.partial(_numpy_hint, variant=variant, q=q, m=m)

        given = {"query": q.copy(), "key": k.copy(), "value": v.copy()}
        if m is not None:
            given["mask"] = m.copy()
        originals = {name: x.copy() for name, x in given.items()}
        args = [*given.values()] + ([] if m is not None else [None])
        got = call_with_hint(fn, case, _numpy_crash_hint(q), *args)
        expect_unchanged(case, originals, given)
        _refuse_non_array(case, got)
        expect_close(
            case,
            torch.from_numpy(np.asarray(got, dtype=np.float64)),
            torch.from_numpy(expected),
            what="the output",
            hint=when_shape(hint, expected.shape),
        )
    passed("attention_numpy", len(cases))
