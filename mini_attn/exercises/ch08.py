"""Checkers for the exercises of chapter 8, "Profiling attention on the GPU"."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..tools.roofline import attainable_flops
from ..tools.timing import SimulatedDevice
from ._core import CheckFailed, call, expect_close, passed

__all__ = ["check_attainable", "check_online_logsumexp", "check_timer"]


def _timer_hint(device: SimulatedDevice, times: list, i: int, t: float, expected: float):
    """What the learner's timer got wrong, from the times it returned."""
    if t < device.work_s / 2:
        return (
            "you read the clock before the device had finished: work() only queues "
            "the work. Call synchronize() after work() and before reading clock()."
        )
    if math.isclose(t, 1e3 * expected, rel_tol=1e-3):
        return "return seconds, as clock() gives them (not milliseconds)."
    if t > device.first_s and not device.calls_at_first_clock:
        return (
            "this run includes the slow first call: call work() `warmup` times "
            "before the timed runs, and do not time those."
        )
    if i == 0 and t > 1.5 * expected:
        return (
            "the first timed run includes work still queued from the warm-up: "
            "call synchronize() before you start the clock."
        )
    if len(times) > 1 and max(times) - min(times) < 1e-12 and t < expected:
        return (
            "every run took exactly the same time, less than one launch plus one call: "
            "you timed all the runs together and divided by `repeats`, so the launch "
            "cost was counted once instead of once per call. (The bench does time very "
            "short calls back to back, on purpose; this exercise asks for one call of "
            "work() per timed run, clock() before it and after synchronize().)"
        )
    return "time exactly one call of work() per run: clock() before, after sync."


def check_timer(fn) -> None:
    """Exercise 8.1: ``fn(work, *, clock, synchronize, warmup, repeats) -> list of seconds``.

    The checker hands the timer a simulated device: ``work()`` queues 5 ms of work (the
    first call 100 ms more) and, on the asynchronous device, returns at once; ``clock()``
    reads the time and ``synchronize()`` waits for the device. Every timed run must come
    out at 5.01 ms (10 µs of launch plus 5 ms of work).
    """
    cases = [
        ("an asynchronous device (a GPU), warmup=2, repeats=5", True, 2, 5),
        ("an asynchronous device, warmup=1, repeats=3", True, 1, 3),
        ("a synchronous device (a CPU), warmup=1, repeats=4", False, 1, 4),
    ]
    for case, asynchronous, warmup, repeats in cases:
        device = SimulatedDevice(asynchronous=asynchronous)
        expected = device.launch_s + device.work_s
        got = call(
            fn,
            case,
            device.launch,
            clock=device.clock,
            synchronize=device.synchronize,
            warmup=warmup,
            repeats=repeats,
        )
        try:
            times = [float(t) for t in got]
        except (TypeError, ValueError):
            raise CheckFailed(
                f"case '{case}': return a list of {repeats} times in seconds, "
                f"got {type(got).__name__}"
            ) from None
        if device.calls != warmup + repeats:
            raise CheckFailed(
                f"case '{case}': work() was called {device.calls} times; expected "
                f"warmup + repeats = {warmup + repeats} (the warm-up calls are not timed)"
            )
        if len(times) != repeats:
            raise CheckFailed(f"case '{case}': expected {repeats} times, got {len(times)}")
        for i, t in enumerate(times):
            if math.isclose(t, expected, rel_tol=1e-6, abs_tol=1e-12):
                continue
            message = (
                f"case '{case}': timed run {i} took {t * 1e6:.1f} µs, expected "
                f"{expected * 1e6:.1f} µs (10.0 µs of launch + 5000.0 µs of work): "
                f"{abs(t - expected) * 1e6:.1f} µs {'short' if t < expected else 'too long'}"
            )
            raise CheckFailed(f"{message}\nHint: {_timer_hint(device, times, i, t, expected)}")
    passed("timer", len(cases))


def check_attainable(fn) -> None:
    """Exercise 8.2: ``fn(intensity, peak_flops, bandwidth) -> attainable FLOP/s``.

    The roofline: ``min(peak_flops, intensity × bandwidth)``, for a number or a NumPy array
    of intensities.
    """
    peak, bandwidth = 1e12, 1e11  # 1 TFLOP/s and 100 GB/s: the ridge is at 10 FLOP/byte
    cases = [
        ("memory-bound: intensity 2 FLOP/byte", 2.0),
        ("compute-bound: intensity 50 FLOP/byte", 50.0),
        ("exactly at the ridge point, 10 FLOP/byte", 10.0),
        ("an array of intensities", np.array([0.25, 1.0, 8.0, 10.0, 64.0, 1000.0])),
    ]
    for case, intensity in cases:
        expected = torch.as_tensor(
            attainable_flops(intensity, peak, bandwidth), dtype=torch.float64
        )
        try:
            got = call(fn, case, intensity, peak, bandwidth)
        except CheckFailed as failure:
            if isinstance(failure.__cause__, ValueError) and "truth value" in str(failure):
                raise CheckFailed(
                    f"{failure}\nHint: Python's min() compares whole arrays, which NumPy "
                    "refuses; np.minimum(peak_flops, intensity * bandwidth) works element "
                    "by element, on arrays and on numbers."
                ) from None
            raise

        def hint(got, intensity=intensity):
            x = np.asarray(intensity, dtype=float)
            got = got.numpy()
            if np.allclose(got, x * bandwidth):
                return "beyond the ridge point the compute ceiling (peak_flops) caps the rate."
            if np.allclose(got, np.maximum(peak, x * bandwidth)):
                return "a computation reaches the *lower* of the two ceilings: min, not max."
            if np.allclose(got, np.minimum(peak, x / bandwidth)) or np.allclose(
                got, np.minimum(peak, bandwidth / np.where(x == 0, 1, x))
            ):
                return "FLOP/s = (FLOP/byte) × (byte/s): multiply intensity by bandwidth."
            return None

        if not isinstance(got, torch.Tensor):
            try:
                got = torch.as_tensor(np.asarray(got, dtype=float))
            except (TypeError, ValueError):
                raise CheckFailed(
                    f"case '{case}': return a number or a NumPy array, got {type(got).__name__}"
                ) from None
        expect_close(
            case, got, expected, what="the attainable FLOP/s", atol=0, rtol=1e-6, hint=hint
        )
    passed("attainable", len(cases))


def _without_rescaling(scores: torch.Tensor, block_size: int) -> torch.Tensor:
    """The common mistake: a running max, but the old sum is never rescaled."""
    row_max = torch.full(scores.shape[:-1], -math.inf, dtype=scores.dtype)
    row_sum = torch.zeros(scores.shape[:-1], dtype=scores.dtype)
    for start in range(0, scores.shape[-1], block_size):
        row_max = torch.maximum(row_max, scores[..., start : start + block_size].amax(dim=-1))
        row_sum = row_sum + torch.exp(
            scores[..., start : start + block_size] - row_max[..., None]
        ).sum(-1)
    return row_max + torch.log(row_sum)


def _rescaled_upside_down(scores: torch.Tensor, block_size: int) -> torch.Tensor:
    """The mistake of the inverted factor: the old sum times exp(m_new - m_old)."""
    row_max = torch.full(scores.shape[:-1], -math.inf, dtype=scores.dtype)
    row_sum = torch.zeros(scores.shape[:-1], dtype=scores.dtype)
    for start in range(0, scores.shape[-1], block_size):
        block = scores[..., start : start + block_size]
        new_max = torch.maximum(row_max, block.amax(dim=-1))
        factor = torch.exp(torch.nan_to_num(new_max - row_max, nan=0.0, posinf=0.0))
        row_sum = row_sum * factor + torch.exp(block - new_max[..., None]).sum(-1)
        row_max = new_max
    return row_max + torch.log(row_sum)


def check_online_logsumexp(fn) -> None:
    r"""Exercise 8.3: ``fn(scores (..., S), block_size) -> (...)``, the log-sum-exp of each row.

    :math:`\log \sum_j e^{s_j}`, computed by visiting the scores ``block_size`` at a time
    with a running maximum and a running sum, as :func:`~mini_attn.tiled_attention` does.
    A row whose scores are all ``-inf`` (every key masked) gives ``-inf``, never NaN.
    """
    g = torch.Generator().manual_seed(7)
    rising = torch.linspace(-3, 6, 12)[None, :]  # the maximum grows in every block
    masked = torch.randn(3, 10, generator=g)
    masked[1] = -math.inf  # a fully masked row
    masked[2, :6] = -math.inf  # the first blocks of this row are masked
    cases = [
        ("one row of 10 scores, blocks of 4", torch.randn(1, 10, generator=g), 4),
        ("scores that rise from block to block, blocks of 5", rising, 5),
        ("scores around 1000 (exp overflows)", torch.randn(2, 9, generator=g) + 1000, 3),
        ("rows with every or some scores -inf (masked), blocks of 3", masked, 3),
        ("batch dims (2, 3, 50), blocks of 16", torch.randn(2, 3, 50, generator=g), 16),
        (
            "one block holds everything (block_size 64 > S = 20)",
            torch.randn(4, 20, generator=g),
            64,
        ),
    ]
    for case, scores, block_size in cases:
        expected = torch.logsumexp(scores, dim=-1)

        def hint(got, scores=scores, block_size=block_size, expected=expected):
            if torch.isnan(got).any():
                return (
                    "NaN comes from exp(-inf - (-inf)) in a row (or block) where every score is "
                    "-inf: shift by 0 instead of the maximum while the maximum is still -inf."
                )
            if (torch.isinf(got) & torch.isfinite(expected)).any():
                return "exp overflowed: subtract the running maximum before exp."
            if torch.allclose(got, _without_rescaling(scores, block_size), atol=1e-5):
                return (
                    "when the running maximum grows from m_old to m_new, the sum collected so "
                    "far was computed with m_old: multiply it by exp(m_old - m_new)."
                )
            finite = torch.isfinite(expected)
            row_max = scores.amax(dim=-1)
            if torch.allclose(got[finite], (expected - row_max)[finite], atol=1e-4):
                return (
                    "you returned log(sum) only: the sum is relative to the running maximum, "
                    "so the log-sum-exp is log(sum) + m, the final maximum added back."
                )
            if torch.allclose(got, _rescaled_upside_down(scores, block_size), atol=1e-4):
                return (
                    "the factor is upside down: the old sum was computed relative to m_old "
                    "and must become relative to m_new, so multiply by exp(m_old - m_new) "
                    "(at most 1), not exp(m_new - m_old)."
                )
            return None

        got = call(fn, case, scores.clone(), block_size)
        expect_close(case, got, expected, what="the log-sum-exp", hint=hint)
    passed("online_logsumexp", len(cases))
