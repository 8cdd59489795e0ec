"""Chapter 8's checkers reject plausible wrong answers with a message that helps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mini_attn.exercises import (
    CheckFailed,
    check_attainable,
    check_online_logsumexp,
    check_timer,
)

# --- exercise 8.1: a correct timer -----------------------------------------------------------


def good_timer(work, *, clock, synchronize, warmup, repeats):
    for _ in range(warmup):
        work()
    times = []
    for _ in range(repeats):
        synchronize()
        start = clock()
        work()
        synchronize()
        times.append(clock() - start)
    return times


def test_a_correct_timer_passes(capsys):
    check_timer(good_timer)
    assert "✓ timer" in capsys.readouterr().out


def test_a_timer_that_syncs_once_after_the_warmup_also_passes(capsys):
    def timer(work, *, clock, synchronize, warmup, repeats):
        for _ in range(warmup):
            work()
        synchronize()  # the device is idle from here on, since every run ends synchronised
        times = []
        for _ in range(repeats):
            start = clock()
            work()
            synchronize()
            times.append(clock() - start)
        return times

    check_timer(timer)
    assert "✓" in capsys.readouterr().out


def test_timing_without_synchronisation():
    def timer(work, *, clock, synchronize, warmup, repeats):
        for _ in range(warmup):
            work()
        times = []
        for _ in range(repeats):
            start = clock()
            work()
            times.append(clock() - start)
        return times

    with pytest.raises(CheckFailed, match=r"(?s)asynchronous.*Call synchronize\(\) after work\(\)"):
        check_timer(timer)


def test_timing_without_warmup():
    def timer(work, *, clock, synchronize, warmup, repeats):
        return good_timer(work, clock=clock, synchronize=synchronize, warmup=0, repeats=repeats)

    with pytest.raises(CheckFailed, match="called 5 times; expected warmup"):
        check_timer(timer)


def test_timing_the_first_call():
    def timer(work, *, clock, synchronize, warmup, repeats):
        times = good_timer(work, clock=clock, synchronize=synchronize, warmup=0, repeats=repeats)
        for _ in range(warmup):  # the right number of calls, but the slow one is timed
            work()
        return times

    with pytest.raises(CheckFailed, match="includes the slow first call"):
        check_timer(timer)


def test_not_synchronising_before_the_clock_starts():
    def timer(work, *, clock, synchronize, warmup, repeats):
        for _ in range(warmup):
            work()
        times = []
        for _ in range(repeats):
            start = clock()  # the warm-up's work is still queued
            work()
            synchronize()
            times.append(clock() - start)
        return times

    with pytest.raises(CheckFailed, match="work still queued from the warm-up"):
        check_timer(timer)


def test_returning_milliseconds():
    def timer(**kwargs):
        return [t * 1e3 for t in good_timer(**kwargs)]

    def wrapped(work, **kwargs):
        return timer(work=work, **kwargs)

    with pytest.raises(CheckFailed, match=r"(?s)expected 5010\.0 µs.*not milliseconds"):
        check_timer(wrapped)


def test_one_clock_around_all_the_runs_is_not_called_rounding():
    """Batch timing: total / repeats. The message must say what, not read like rounding."""

    def batched(work, *, clock, synchronize, warmup, repeats):
        for _ in range(warmup):
            work()
        synchronize()
        start = clock()
        for _ in range(repeats):
            work()
        synchronize()
        return [(clock() - start) / repeats] * repeats

    with pytest.raises(CheckFailed) as failure:
        check_timer(batched)
    message = str(failure.value)
    assert "5002.0 µs, expected 5010.0 µs" in message and "8.0 µs short" in message
    assert "timed all the runs together and divided by `repeats`" in message


def test_returning_one_number():
    def timer(work, **kwargs):
        return sum(good_timer(work, **kwargs))

    with pytest.raises(CheckFailed, match="return a list of 5 times in seconds, got float"):
        check_timer(timer)


# --- exercise 8.2: the roofline ---------------------------------------------------------------


def test_the_roofline_passes(capsys):
    check_attainable(lambda i, p, b: np.minimum(p, np.asarray(i) * b))
    assert "✓ attainable" in capsys.readouterr().out


def test_max_instead_of_min():
    with pytest.raises(CheckFailed, match=r"lower.* of the two ceilings: min, not max"):
        check_attainable(lambda i, p, b: np.maximum(p, np.asarray(i) * b))


def test_forgetting_the_compute_ceiling():
    with pytest.raises(CheckFailed, match=r"compute-bound.*\n(.*\n)*Hint: beyond the ridge point"):
        check_attainable(lambda i, p, b: np.asarray(i) * b)


def test_dividing_by_the_bandwidth():
    with pytest.raises(CheckFailed, match="multiply intensity by bandwidth"):
        check_attainable(lambda i, p, b: np.minimum(p, np.asarray(i) / b))


def test_a_python_min_fails_on_arrays_with_a_clear_message():
    with pytest.raises(
        CheckFailed, match=r"(?s)an array of intensities.*raised ValueError.*np\.minimum"
    ):
        check_attainable(lambda i, p, b: min(p, i * b))


def test_a_different_correct_roofline_passes(capsys):
    check_attainable(lambda i, p, b: np.where(np.asarray(i) * b < p, np.asarray(i) * b, p))
    assert "✓" in capsys.readouterr().out


def test_a_roofline_returning_a_string_is_refused():
    with pytest.raises(CheckFailed, match="return a number or a NumPy array, got str"):
        check_attainable(lambda i, p, b: "fast")


# --- exercise 8.3: the online log-sum-exp -----------------------------------------------------


def good_online_logsumexp(scores, block_size):
    row_max = torch.full(scores.shape[:-1], -math.inf, dtype=scores.dtype)
    row_sum = torch.zeros(scores.shape[:-1], dtype=scores.dtype)
    for start in range(0, scores.shape[-1], block_size):
        block = scores[..., start : start + block_size]
        new_max = torch.maximum(row_max, block.amax(dim=-1))
        shift = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))
        row_sum = row_sum * torch.exp(row_max - shift) + torch.exp(block - shift[..., None]).sum(-1)
        row_max = new_max
    return torch.log(row_sum) + torch.where(torch.isfinite(row_max), row_max, 0.0)


def test_the_online_logsumexp_passes(capsys):
    check_online_logsumexp(good_online_logsumexp)
    assert "✓ online_logsumexp: all 6 cases" in capsys.readouterr().out


def test_forgetting_to_rescale_the_running_sum():
    def no_rescale(scores, block_size):
        row_max = torch.full(scores.shape[:-1], -math.inf)
        row_sum = torch.zeros(scores.shape[:-1])
        for start in range(0, scores.shape[-1], block_size):
            block = scores[..., start : start + block_size]
            row_max = torch.maximum(row_max, block.amax(dim=-1))
            row_sum = row_sum + torch.exp(block - row_max[..., None]).sum(-1)
        return row_max + torch.log(row_sum)

    with pytest.raises(CheckFailed, match=r"multiply it by exp\(m_old - m_new\)"):
        check_online_logsumexp(no_rescale)


def test_without_subtracting_the_maximum():
    def no_max(scores, block_size):
        total = sum(
            torch.exp(scores[..., s : s + block_size]).sum(-1)
            for s in range(0, scores.shape[-1], block_size)
        )
        return torch.log(total)

    with pytest.raises(CheckFailed, match=r"scores around 1000.*\n?.*exp overflowed"):
        check_online_logsumexp(no_max)


def test_nan_for_a_fully_masked_row():
    def nan_when_masked(scores, block_size):
        row_max = torch.full(scores.shape[:-1], -math.inf)
        row_sum = torch.zeros(scores.shape[:-1])
        for start in range(0, scores.shape[-1], block_size):
            block = scores[..., start : start + block_size]
            new_max = torch.maximum(row_max, block.amax(dim=-1))
            row_sum = row_sum * torch.exp(row_max - new_max) + torch.exp(
                block - new_max[..., None]
            ).sum(-1)
            row_max = new_max
        return row_max + torch.log(row_sum)

    with pytest.raises(CheckFailed, match=r"-inf.*\n?.*NaN comes from exp"):
        check_online_logsumexp(nan_when_masked)


def test_the_stub_fails_clearly():
    def stub(scores, block_size):
        raise NotImplementedError("Exercise 8.3")

    with pytest.raises(CheckFailed, match="not implemented yet"):
        check_online_logsumexp(stub)


def test_forgetting_the_final_maximum():
    def without_m(scores, block_size):
        return good_online_logsumexp(scores, block_size) - scores.amax(dim=-1)

    with pytest.raises(CheckFailed, match=r"log\(sum\) \+ m, the final maximum added back"):
        check_online_logsumexp(without_m)


def test_the_rescaling_factor_upside_down():
    def upside_down(scores, block_size):
        row_max = torch.full(scores.shape[:-1], -math.inf)
        row_sum = torch.zeros(scores.shape[:-1])
        for start in range(0, scores.shape[-1], block_size):
            block = scores[..., start : start + block_size]
            new_max = torch.maximum(row_max, block.amax(dim=-1))
            factor = torch.exp(torch.nan_to_num(new_max - row_max, nan=0.0, posinf=0.0))
            row_sum = row_sum * factor + torch.exp(block - new_max[..., None]).sum(-1)
            row_max = new_max
        return row_max + torch.log(row_sum)

    with pytest.raises(CheckFailed, match=r"factor is upside down"):
        check_online_logsumexp(upside_down)


def test_a_different_correct_logsumexp_passes(capsys):
    """Block by block with torch.logaddexp: a different, correct online recurrence."""

    def with_logaddexp(scores, block_size):
        total = torch.full(scores.shape[:-1], -math.inf)
        for start in range(0, scores.shape[-1], block_size):
            total = torch.logaddexp(
                total, torch.logsumexp(scores[..., start : start + block_size], -1)
            )
        return total

    check_online_logsumexp(with_logaddexp)
    assert "✓" in capsys.readouterr().out
