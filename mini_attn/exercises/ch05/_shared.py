"""What the three checkers of chapter 5 share: comparing, guarding hints, refusing changes."""

from __future__ import annotations

import numpy as np
import torch

from .._core import CheckFailed, call


def close(a, b) -> bool:
    return (
        isinstance(a, torch.Tensor)
        and a.shape == b.shape
        and bool(torch.allclose(a.to(b.dtype), b, atol=1e-5, rtol=1e-4, equal_nan=False))
    )


def when_shape(hint, shape):
    """``hint``, run only when the answer has the expected shape (its precondition)."""

    def guarded(got):
        if tuple(got.shape) != tuple(shape):
            return None
        try:
            return hint(got)
        except Exception:  # a hint must never turn a wrong answer into a crash
            return None

    return guarded


def call_with_hint(fn, case, crash_hint, *args, **kwargs):
    """:func:`call`, with a hint for the learner's exception when ``crash_hint`` knows it."""
    try:
        return call(fn, case, *args, **kwargs)
    except CheckFailed as failure:
        error = failure.__cause__
        extra = crash_hint(error) if error is not None else None
        if not extra:
            raise
        raise CheckFailed(f"{failure}\nHint: {extra}") from error


def expect_unchanged(case, originals, given) -> None:
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
