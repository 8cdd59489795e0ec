"""Exercise 5.3: self-attention from the matrices of three ``nn.Linear`` layers."""

from __future__ import annotations

import math

import torch
from torch import nn

from .._core import CheckFailed, expect_close, passed
from ._shared import call_with_hint, close, expect_unchanged, when_shape

__all__ = ["check_self_attention_from_weights"]


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
                if candidate is not None and close(got, candidate):
                    return message
            return None

        weights = {
            f"{name}.{part}": getattr(p, part).detach().clone()
            for name, p in zip(("q_proj", "k_proj", "v_proj"), projections, strict=True)
            for part in ("weight", "bias")
            if getattr(p, part) is not None
        }
        given = {"x": x.clone()}
        got = call_with_hint(
            fn, case, _projection_crash_hint(x, projections), given["x"], *projections
        )
        expect_unchanged(case, {"x": x}, given)
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
        expect_close(case, got, expected, what="the output", hint=when_shape(hint, expected.shape))
    passed("self_attention_from_weights", len(cases))
