"""Checkers for the exercises of chapter 5, "The K/Q/V computation".

Notation as in the chapter: ``E`` model (input) size, ``D`` query/key size, ``Dv`` value size.
"""

from __future__ import annotations

import contextlib
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core import sdpa as _sdpa_module
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
    return (
        isinstance(a, torch.Tensor)
        and a.shape == b.shape
        and bool(torch.allclose(a.to(b.dtype), b, atol=1e-5, rtol=1e-4, equal_nan=False))
    )


def _same_shape(hint, shape):
    """``hint``, run only when the answer has the expected shape (its precondition)."""

    def guarded(got):
        if tuple(got.shape) != tuple(shape):
            return None
        try:
            return hint(got)
        except Exception:  # a hint must never turn a wrong answer into a crash
            return None

    return guarded


def _call(fn, case, crash_hint, *args, **kwargs):
    """:func:`call`, with a hint for the learner's exception when ``crash_hint`` knows it."""
    try:
        return call(fn, case, *args, **kwargs)
    except CheckFailed as failure:
        error = failure.__cause__
        extra = crash_hint(error) if error is not None else None
        if not extra:
            raise
        raise CheckFailed(f"{failure}\nHint: {extra}") from error


def _unchanged(case, originals, given) -> None:
    """Refuse an answer that modified its inputs in place."""
    for name, original in originals.items():
        now = given[name]
        same = (
            np.array_equal(original, now, equal_nan=True)
            if isinstance(original, np.ndarray)
            else torch.equal(original.nan_to_num(), now.nan_to_num())
        )
        if not same:
            raise CheckFailed(
                f"case '{case}': your function changed its argument `{name}` in place; "
                "compute new arrays instead (e.g. `x = x - m`, not `x -= m`)"
            )


def _copy(x):
    return x.copy() if isinstance(x, np.ndarray) else x.clone()


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


def check_attention_numpy(fn) -> None:
    """Exercise 5.1: ``fn(query (..., L, D), key (..., S, D), value (..., S, Dv), mask=None)``.

    NumPy arrays in, the output ``softmax(Q Kᵀ / √D) V`` of shape ``(..., L, Dv)`` out.
    ``mask`` is a boolean array broadcastable to ``(..., L, S)``, ``True`` where a query may
    attend; a query with every key masked gets a zero output row.
    """
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
    cases = [
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
    for case, q, k, v, m in cases:
        expected, _ = scaled_dot_product_attention_numpy(q, k, v, mask=m)
        scale = 1 / math.sqrt(q.shape[-1])

        def variant(q=q, k=k, v=v, m=m, scale=scale, **mistake):
            return torch.from_numpy(_numpy_variant(q, k, v, m, scale=scale, **mistake))

        def hint(got, variant=variant, m=m, q=q, expected=expected):
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
            if empty and _close(got, variant(fill=-1e9)):
                return (
                    "a query whose keys are all masked must get a zero row; with -1e9 (or any "
                    "finite number) instead of -inf its masked scores tie and it averages every "
                    "value. Use -inf, and clamp the row sum (or zero such rows)."
                )
            if _close(got, variant(scale=1.0)):
                return "the scores are not scaled: divide Q Kᵀ by √D (D = query.shape[-1])."
            if _close(got, variant(scale=1 / q.shape[-1])):
                return "divide by √D, not by D."
            if got.shape[-2] > 1 and _close(got, variant(axis=-2)):
                return "the softmax runs over the keys (the last axis), not over the queries."
            if m is not None and _close(got, variant(inverted=True)):
                return "your mask is inverted: True means 'may attend'."
            return None

        given = {"query": q.copy(), "key": k.copy(), "value": v.copy()}
        if m is not None:
            given["mask"] = m.copy()
        originals = {name: x.copy() for name, x in given.items()}
        args = [*given.values()] + ([] if m is not None else [None])
        got = _call(fn, case, _numpy_crash_hint(q), *args)
        _unchanged(case, originals, given)
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
        if not (np.issubdtype(got.dtype, np.floating) or np.issubdtype(got.dtype, np.integer)):
            raise CheckFailed(f"case '{case}': return an array of floats, got dtype {got.dtype}")
        expect_close(
            case,
            torch.from_numpy(np.asarray(got, dtype=np.float64)),
            torch.from_numpy(expected),
            what="the output",
            hint=_same_shape(hint, expected.shape),
        )
    passed("attention_numpy", len(cases))


@contextlib.contextmanager
def _refuse_causal_argument():
    """While the learner's function runs, record calls with ``causal=True`` / ``is_causal``.

    Exercise 5.2 asks for the mask to be built, not for the ``causal`` argument. The
    functions are wrapped only for the duration of the call and always restored.
    """
    used = []

    def ours(*args, causal=False, **kwargs):
        if causal:
            used.append("ma.scaled_dot_product_attention(..., causal=True)")
        return scaled_dot_product_attention(*args, causal=causal, **kwargs)

    torch_sdpa = F.scaled_dot_product_attention

    def theirs(*args, is_causal=False, **kwargs):
        if is_causal:
            used.append("F.scaled_dot_product_attention(..., is_causal=True)")
        return torch_sdpa(*args, is_causal=is_causal, **kwargs)

    package = sys.modules.get("mini_attn")
    targets = [
        (_sdpa_module, "scaled_dot_product_attention", ours),
        (F, "scaled_dot_product_attention", theirs),
    ]
    if package is not None:
        targets.append((package, "scaled_dot_product_attention", ours))
    saved = [(module, name, getattr(module, name)) for module, name, _ in targets]
    for module, name, wrapper in targets:
        setattr(module, name, wrapper)
    try:
        yield used
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def _mask_crash_hint(batch, n_queries, n_keys):
    def hint(error):
        text = str(error)
        if "mask" in text or "size of tensor" in text or "broadcast" in text:
            return (
                f"build the masks so that they broadcast: the padding as (B, 1, S) = "
                f"({batch}, 1, {n_keys}) (a query axis of size 1), the causal part as "
                f"(L, S) = ({n_queries}, {n_keys}) (ma.causal_mask(L, S), not causal_mask(L)); "
                f"`padding & causal` is then (B, L, S) = ({batch}, {n_queries}, {n_keys})."
            )
        return None

    return hint


def check_decoder_attention(fn) -> None:
    """Exercise 5.2: ``fn(query (B, L, D), key (B, S, D), value (B, S, Dv), key_lengths (B,))``.

    Causal attention (query ``i`` attends to keys ``j ≤ i``, top-left aligned) that also
    ignores the padding keys ``j ≥ key_lengths[b]``; returns the output ``(B, L, Dv)``, with
    zero rows for queries that may attend to no key. The mask must be built: a call with
    ``causal=True`` (or PyTorch's ``is_causal=True``) is refused, as the exercise says.
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
        ("B=L=3, S=4, lengths [4, 2, 1]", *qkv(3, 3, 4), torch.tensor([4, 2, 1])),
        ("a sequence of length 0", *qkv(2, 4, 4), torch.tensor([4, 0])),
    ]
    for case, q, k, v, lengths in cases:
        batch, n_queries, n_keys = q.shape[0], q.shape[1], k.shape[1]
        padding = padding_mask(lengths, n_keys)  # (B, 1, S)
        future = causal_mask(n_queries, n_keys)
        expected = scaled_dot_product_attention(q, k, v, mask=padding & future)[0]

        def attend(mask, q=q, k=k, v=v):
            return scaled_dot_product_attention(q, k, v, mask=mask)[0]

        def hint(
            got, padding=padding, future=future, attend=attend, lengths=lengths, n_keys=n_keys
        ):
            got = got.detach()
            if torch.isnan(got).any():
                return (
                    "a query with no allowed key gives NaN; its output row must be zero "
                    "(ma.scaled_dot_product_attention and a masked softmax do that)."
                )
            n_queries = future.shape[0]
            positions = torch.arange(n_keys)
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
                    "the causal diagonal is aligned at the bottom right (query i sees keys up "
                    "to i + S - L, the convention for decoding with a key/value cache). This "
                    "exercise asks for the top-left alignment of ma.causal_mask and PyTorch's "
                    "is_causal: query i sees keys 0 … i.",
                ),
                (
                    (positions[None, None, :] <= lengths[:, None, None]) & future,
                    "off by one in the padding: key_lengths[b] real keys are positions "
                    "0 … length - 1, so keep j < length, not j ≤ length.",
                ),
                (
                    padding | future,
                    "the masks are combined with | (or): a key must be real AND not in the "
                    "future, so combine them with &.",
                ),
            ]
            if padding.shape[0] == n_queries:  # (B, S) & (L, S) broadcasts silently if B = L
                candidates.append(
                    (
                        padding[:, 0, :] & future,
                        "the padding mask (B, S) lines its batch axis up with the queries when "
                        "B = L: query i gets the padding of sequence i. Give it a query axis: "
                        "(B, 1, S).",
                    )
                )
            for mask, message in candidates:
                if _close(got, attend(mask)):
                    return message
            return None

        given = {
            "query": q.clone(),
            "key": k.clone(),
            "value": v.clone(),
            "key_lengths": lengths.clone(),
        }
        originals = {name: x.clone() for name, x in given.items()}
        with _refuse_causal_argument() as used:
            got = _call(fn, case, _mask_crash_hint(batch, n_queries, n_keys), *given.values())
        if used:
            raise CheckFailed(
                f"case '{case}': your function called {used[0]}; the exercise asks you to build "
                "the causal mask yourself (j ≤ i) and combine it with the padding by &."
            )
        _unchanged(case, originals, given)
        if isinstance(got, tuple):
            raise CheckFailed(f"case '{case}': return only the output, got a tuple of {len(got)}")
        expect_close(case, got, expected, what="the output", hint=_same_shape(hint, expected.shape))
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


def _projection_crash_hint(x, projections):
    def hint(error):
        text = str(error)
        if isinstance(error, TypeError) and "NoneType" in text:
            return "this case's layers have bias=None: add `layer.bias` only when it is not None."
        if "shapes cannot be multiplied" in text or "size mismatch" in text:
            d, e = projections[0].weight.shape
            return (
                f"nn.Linear stores its weight as (out, in) = (D, E) = ({d}, {e}) and computes "
                "x @ weight.T + bias: transpose the weight. For the scores, transpose only the "
                "last two axes of K: k.transpose(-2, -1) (k.T reverses every axis of a "
                "batched tensor)."
            )
        if "size of tensor" in text or "must match the size" in text:
            return (
                "k.T reverses every axis of a batched tensor; transpose the last two only: "
                "k.transpose(-2, -1) or k.mT."
            )
        return None

    return hint


def check_self_attention_from_weights(fn) -> None:
    """Exercise 5.3: ``fn(x (..., N, E), q_proj, k_proj, v_proj) -> (..., N, Dv)``.

    Self-attention from the matrices of three ``nn.Linear`` layers (``weight`` of shape
    ``(D, E)``, ``bias`` of shape ``(D,)`` or None): ``Q = x Wᵀ + b`` (likewise K and V),
    then ``softmax(Q Kᵀ / √D) V``. Calling the layers is refused.
    """
    g = torch.Generator().manual_seed(8)
    cases = [  # the square case first: there a forgotten transpose runs and the hint can tell
        ("square E=D=6, with bias", torch.randn(2, 4, 6, generator=g), (6, 6, 6, True, 1)),
        ("E=8, D=4, with bias", torch.randn(2, 5, 8, generator=g), (8, 4, 4, True, 0)),
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

        weights = {
            f"{name}.{part}": getattr(p, part).detach().clone()
            for name, p in zip(("q_proj", "k_proj", "v_proj"), projections, strict=True)
            for part in ("weight", "bias")
            if getattr(p, part) is not None
        }
        given = {"x": x.clone()}
        got = _call(fn, case, _projection_crash_hint(x, projections), given["x"], *projections)
        _unchanged(case, {"x": x}, given)
        for name, before in weights.items():
            layer, part = name.split(".")
            now = getattr(projections[("q_proj", "k_proj", "v_proj").index(layer)], part)
            if not torch.equal(now.detach(), before):
                raise CheckFailed(
                    f"case '{case}': your function changed {name} in place; read the layers' "
                    "matrices, do not modify them"
                )
        if isinstance(got, tuple):
            raise CheckFailed(f"case '{case}': return only the output, got a tuple of {len(got)}")
        expect_close(case, got, expected, what="the output", hint=_same_shape(hint, expected.shape))
    passed("self_attention_from_weights", len(cases))
