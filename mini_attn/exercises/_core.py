"""What every checker shares: call the learner's function, compare, explain in plain words.

A checker runs the learner's function on fixed cases (edge cases included) and either
prints one success line or raises :class:`CheckFailed` whose message names the case that
failed and how (expected vs got), with a hint for the common mistake it recognises.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._validation import fmt_shape

__all__ = ["CheckFailed", "call", "expect_close", "passed"]


class CheckFailed(AssertionError):
    """Raised by a checker when the learner's answer is wrong; the message says why."""


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", "your function")


def call(fn: Callable, case: str, *args, **kwargs):
    """Call the learner's ``fn``; turn a crash into a :class:`CheckFailed` naming the case."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailed(
            f"{_name(fn)} is not implemented yet (it raised NotImplementedError). "
            "Replace the `raise NotImplementedError` line with your code, then run the check again."
        ) from None
    except Exception as error:
        raise CheckFailed(
            f"case '{case}': {_name(fn)} raised {type(error).__name__}: {error}"
        ) from error


def _show(x: torch.Tensor, where: tuple[int, ...]) -> tuple[str, str]:
    """The whole tensor if it is small, else the row (last dim) that holds ``where``."""
    if x.numel() <= 12:
        return "", str([round(v, 4) for v in x.flatten().tolist()])
    return f" (row {where[:-1]})", str([round(v, 4) for v in x[where[:-1]].tolist()])


def expect_close(
    case: str,
    got,
    expected: torch.Tensor,
    *,
    what: str = "the output",
    atol: float = 1e-5,
    rtol: float = 1e-4,
    hint: Callable[[torch.Tensor], str | None] | None = None,
) -> None:
    """Raise :class:`CheckFailed` unless ``got`` is a tensor equal to ``expected``.

    ``hint(got)`` may return a sentence that explains a recognised mistake.
    """

    def fail(message: str) -> None:
        extra = hint(got) if hint is not None and isinstance(got, torch.Tensor) else None
        raise CheckFailed(f"case '{case}': {message}" + (f"\nHint: {extra}" if extra else ""))

    if not isinstance(got, torch.Tensor):
        fail(f"{what} should be a torch.Tensor, got {type(got).__name__}")
    if tuple(got.shape) != tuple(expected.shape):
        fail(f"{what} should have shape {fmt_shape(expected.shape)}, got {fmt_shape(got.shape)}")
    got = got.detach().to("cpu", expected.dtype)
    expected = expected.detach().cpu()
    bad = ~torch.isfinite(got) & torch.isfinite(expected)
    if bad.any():
        where = tuple(int(i) for i in bad.nonzero()[0])
        fail(
            f"{what} has {got[where].item()} at index {where}, "
            f"where {expected[where].item():.4g} was expected"
        )
    if not torch.allclose(got, expected, atol=atol, rtol=rtol, equal_nan=True):
        err = (got - expected).abs().nan_to_num(0.0)
        where = tuple(int(i) for i in (err == err.max()).nonzero()[0])
        label, shown_expected = _show(expected, where)
        _, shown_got = _show(got, where)
        fail(
            f"wrong value in {what}: at index {where} expected {expected[where].item():.6g}, "
            f"got {got[where].item():.6g} (largest error {err.max().item():.3g}).\n"
            f"  expected{label}: {shown_expected}\n  got{label}:      {shown_got}"
        )


def passed(exercise: str, n_cases: int) -> None:
    """Print the one-line success message."""
    print(f"✓ {exercise}: all {n_cases} cases passed.")
