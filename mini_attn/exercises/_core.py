"""What every checker shares: call the learner's function, compare, explain in plain words.

A checker runs the learner's function on fixed cases (edge cases included) and either
prints one success line or raises :class:`CheckFailed` whose message names the case that
failed and how (expected vs got), with a hint for the common mistake it recognises.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable, Iterator

import torch
from torch.overrides import TorchFunctionMode

from .._validation import fmt_shape

__all__ = [
    "CheckFailed",
    "call",
    "call_pure",
    "count_torch_calls",
    "expect_close",
    "forbidden",
    "passed",
    "safe_hint",
]


class CheckFailed(AssertionError):
    """Raised by a checker when the learner's answer is wrong; the message says why."""


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", "your function")


def call(fn: Callable, case: str, *args, **kwargs):
    """Call the learner's ``fn``; turn a crash into a :class:`CheckFailed` naming the case."""
    try:
        return fn(*args, **kwargs)
    except CheckFailed:
        raise  # raised by the checker's own guards (forbidden), already explained
    except NotImplementedError:
        raise CheckFailed(
            f"{_name(fn)} is not implemented yet (it raised NotImplementedError). "
            "Replace the `raise NotImplementedError` line with your code, then run the check again."
        ) from None
    except Exception as error:
        raise CheckFailed(
            f"case '{case}': your function {_name(fn)} raised {type(error).__name__}: {error}"
            f"{_where(error)}; the error is in your code, not the checker's"
        ) from error


def _where(error: BaseException) -> str:
    """`` (at line N of FILE: CODE)`` for the deepest frame outside mini_attn, if any."""
    frames = [
        f
        for f in traceback.extract_tb(error.__traceback__)
        if "mini_attn" not in f.filename.replace("\\", "/").split("/site-packages/")[-1]
    ]
    if not frames:
        return ""
    f = frames[-1]
    return f" (at line {f.lineno}: {f.line})" if f.line else f" (at line {f.lineno})"


class _Watch(TorchFunctionMode):
    """Counts the torch functions called, and refuses the forbidden ones."""

    def __init__(self, banned: dict, message: str) -> None:
        super().__init__()
        self.banned, self.message, self.count = banned, message, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += 1
        if func in self.banned:
            raise CheckFailed(self.message.format(name=self.banned[func]))
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def forbidden(functions: dict[Callable, str], message: str) -> Iterator[None]:
    """Inside the block, calling one of ``functions`` raises :class:`CheckFailed`.

    ``functions`` maps each forbidden torch function (``torch.softmax``,
    ``torch.Tensor.softmax`` ...) to the name shown to the learner; ``message`` may use
    ``{name}``. Rules an exercise states ("do not call torch.softmax") are checked this
    way instead of being trusted. Wrap the :func:`call` of the learner's function.
    """
    with _Watch(functions, message):
        yield


@contextlib.contextmanager
def count_torch_calls() -> Iterator[_Watch]:
    """``with count_torch_calls() as calls: ...``; then ``calls.count`` is the number of
    torch functions and tensor methods called inside (a Python loop over pairs makes it
    grow with the number of pairs)."""
    watch = _Watch({}, "")
    with watch:
        yield watch


def call_pure(fn: Callable, case: str, *args, **kwargs):
    """:func:`call` on copies of the tensor arguments, refusing in-place changes.

    The learner's tensors are cloned before the call (their own data never changes);
    if ``fn`` modifies an argument in place, the result is a :class:`CheckFailed` that
    says which. The global RNG and the thread count are restored whatever ``fn`` does
    (a function that builds a module draws random numbers: that is allowed, but the
    learner's RNG stream is left where it was).
    """
    copies = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    before = [a.clone() if isinstance(a, torch.Tensor) else None for a in copies]
    threads = torch.get_num_threads()
    state = torch.get_rng_state()
    try:
        got = call(fn, case, *copies, **kwargs)
    finally:
        torch.set_rng_state(state)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    for i, (a, b) in enumerate(zip(copies, before, strict=True)):
        if b is not None and not (a.shape == b.shape and torch.equal(a, b)):
            raise CheckFailed(
                f"case '{case}': {_name(fn)} changed its argument {i + 1} in place "
                "(an in-place operation such as `x -= ...`, `x[...] = ...` or `.add_()`): "
                "compute a new tensor and leave the inputs as they were."
            )
    return got


def safe_hint(hint: Callable | None, *args) -> str | None:
    """``hint(*args)``, or None when there is no hint or the hint itself fails.

    A hint guesses at a mistake; if its guess does not apply to this answer (a shape it
    cannot handle, a dtype), the learner gets the plain message rather than a traceback.
    """
    if hint is None:
        return None
    try:
        text = hint(*args)
    except Exception:
        return None
    return text if isinstance(text, str) and text else None


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
    shape_hint: Callable[[torch.Tensor], str | None] | str | None = "hint",
) -> None:
    """Raise :class:`CheckFailed` unless ``got`` is a tensor equal to ``expected``.

    ``hint(got)`` may return a sentence that explains a recognised mistake. It runs only
    when its preconditions hold: ``got`` is a tensor of ``expected``'s shape (so a hint may
    index and compare freely). ``shape_hint(got)`` runs instead when ``got`` is a tensor
    of another shape (a transposed result, a missing dimension); pass ``shape_hint=None``
    for none. By default (``"hint"``, kept for the checkers written before the split)
    ``hint`` itself is asked about a wrong shape too, so it must check the shape it needs.
    A hint that raises is ignored: the learner sees the plain message, never the
    checker's traceback.
    """
    if shape_hint == "hint":
        shape_hint = hint

    def fail(message: str, which=None) -> None:
        extra = safe_hint(which, got)
        raise CheckFailed(f"case '{case}': {message}" + (f"\nHint: {extra}" if extra else ""))

    if isinstance(got, tuple | list) and any(isinstance(x, torch.Tensor) for x in got):
        shapes = ", ".join(
            fmt_shape(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__ for x in got
        )
        fail(
            f"{what} should be a torch.Tensor, got {type(got).__name__} of {len(got)} items "
            f"({shapes}); return one tensor of shape {fmt_shape(expected.shape)}"
        )
    if not isinstance(got, torch.Tensor):
        kind = type(got).__name__
        extra = (
            " (a NumPy array: build the result with torch operations, or convert it with "
            "torch.from_numpy)"
            if type(got).__module__ == "numpy"
            else ""
        )
        fail(f"{what} should be a torch.Tensor, got {kind}{extra}")
    if tuple(got.shape) != tuple(expected.shape):
        fail(
            f"{what} should have shape {fmt_shape(expected.shape)}, got {fmt_shape(got.shape)}",
            shape_hint,
        )
    got = got.detach().to("cpu", expected.dtype)
    expected = expected.detach().cpu()
    bad = ~torch.isfinite(got) & torch.isfinite(expected)
    if bad.any():
        where = tuple(int(i) for i in bad.nonzero()[0])
        fail(
            f"{what} has {got[where].item()} at index {where}, "
            f"where {expected[where].item():.4g} was expected",
            hint,
        )
    if not torch.allclose(got, expected, atol=atol, rtol=rtol, equal_nan=True):
        err = (got - expected).abs().nan_to_num(0.0)
        where = tuple(int(i) for i in (err == err.max()).nonzero()[0])
        label, shown_expected = _show(expected, where)
        _, shown_got = _show(got, where)
        fail(
            f"wrong value in {what}: at index {where} expected {expected[where].item():.6g}, "
            f"got {got[where].item():.6g} (largest error {err.max().item():.3g}).\n"
            f"  expected{label}: {shown_expected}\n  got{label}:      {shown_got}",
            hint,
        )


def passed(exercise: str, n_cases: int) -> None:
    """Print the one-line success message."""
    print(f"✓ {exercise}: all {n_cases} cases passed.")
