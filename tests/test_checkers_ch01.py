"""Chapter 1's checkers refuse plausible wrong answers with a message that points at the
mistake, never crash, and pass the chapter's solution and a different correct one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mini_attn as ma
from mini_attn.exercises import (
    CheckFailed,
    check_gaussian_weights,
    check_masked_softmax,
    check_soft_lookup,
)


def _sq(q, k):
    return (q[:, None] - k[None, :]) ** 2


# ---------------------------------------------------------------- exercise 1.1


def gaussian_solution(q, k, h):  # the chapter's solution
    return torch.softmax(-_sq(q, k) / (2 * h**2), dim=-1)


def gaussian_by_hand(q, k, h):  # a different correct answer: max subtraction by hand
    s = -_sq(q, k) / (2 * h**2)
    e = torch.exp(s - s.max(dim=1, keepdim=True).values)
    return e / e.sum(dim=1, keepdim=True)


def gaussian_naive(q, k, h):
    e = torch.exp(-_sq(q, k) / (2 * h**2))
    return e / e.sum(-1, keepdim=True)


def gaussian_in_place(q, k, h):
    weights = gaussian_solution(q, k, h)
    q -= q.mean()  # right weights, but the caller's queries are changed
    return weights


GAUSSIAN_MISTAKES = [
    (gaussian_naive, r"far-away query.*\n?.*Subtract each row's largest score"),
    (lambda q, k, h: torch.softmax(-_sq(q, k) / (2 * h**2), dim=0), r"over the queries \(dim 0\)"),
    (lambda q, k, h: torch.softmax(_sq(q, k) / (2 * h**2), dim=-1), "MINUS the squared distance"),
    (lambda q, k, h: torch.softmax(-_sq(q, k) / h**2, dim=-1), "left out the factor 2"),
    (lambda q, k, h: torch.softmax(-_sq(q, k) / (2 * h), dim=-1), "not by the bandwidth itself"),
    (
        lambda q, k, h: torch.softmax(-_sq(q, k).sqrt() / (2 * h**2), dim=-1),
        r"squared distance \(q - k\)², not the distance",
    ),
    (lambda q, k, h: gaussian_solution(q, k, h).T, r"return \(L, S\), not \(S, L\)"),
    (lambda q, k, h: gaussian_solution(q, k, h) @ k, "one number per query"),  # was a crash
    (lambda q, k, h: gaussian_solution(q, k, h).numpy(), "a NumPy array"),
    (lambda q, k, h: (gaussian_solution(q, k, h), None), "got tuple of 2 items"),
    (gaussian_in_place, "changed its argument 1 in place"),
]


@pytest.mark.parametrize("fn, message", GAUSSIAN_MISTAKES)
def test_gaussian_weights_mistakes(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_gaussian_weights(fn)


@pytest.mark.parametrize("fn", [gaussian_solution, gaussian_by_hand])
def test_gaussian_weights_correct_answers(fn, capsys):
    check_gaussian_weights(fn)
    assert "✓ gaussian_weights" in capsys.readouterr().out


# ---------------------------------------------------------------- exercise 1.2


def softmax_solution(scores, mask=None):  # the chapter's solution
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    row_max = scores.amax(dim=-1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    exp = torch.exp(scores - row_max)
    return exp / exp.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)


def softmax_other(scores, mask=None):  # different and correct: multiply by the mask
    keep = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask.expand_as(scores)
    big = torch.where(keep, scores, torch.full_like(scores, -1e30)).amax(-1, keepdim=True)
    e = torch.where(keep, torch.exp(scores - big), torch.zeros_like(scores))
    total = e.sum(-1, keepdim=True)
    return torch.where(total > 0, e / torch.where(total > 0, total, 1.0), 0.0)


def fill_large_negative(s, m):
    s = s if m is None else s.masked_fill(~m, -1e9)
    e = torch.exp(s - s.amax(-1, keepdim=True))
    return e / e.sum(-1, keepdim=True)


def no_guard(s, m):
    s = s if m is None else s.masked_fill(~m, float("-inf"))
    e = torch.exp(s - s.amax(-1, keepdim=True))
    return e / e.sum(-1, keepdim=True)


def max_over_masked_too(s, m):
    e = torch.exp(s - s.amax(-1, keepdim=True))
    if m is not None:
        e = e * m
    return e / e.sum(-1, keepdim=True).clamp_min(1e-30)


def no_max_subtraction(s, m):
    e = torch.exp(s)
    if m is not None:
        e = e * m
    return e / e.sum(-1, keepdim=True).clamp_min(1e-30)


def inverted_mask(s, m):
    return softmax_solution(s, None if m is None else ~m)


def over_dim_minus_2(s, m):
    s = s if m is None else s.masked_fill(~m, float("-inf"))
    e = torch.exp(s - s.amax(-2, keepdim=True).nan_to_num(0.0, neginf=0.0))
    return (e / e.sum(-2, keepdim=True).clamp_min(1e-30)).nan_to_num(0.0)


MASKED_MISTAKES = [
    (fill_large_negative, "every key masked must get all-zero weights"),
    (no_guard, "Subtract the row maximum"),
    (max_over_masked_too, "maximum over the\nunmasked|unmasked scores only"),
    (no_max_subtraction, "Subtract the row maximum"),
    (inverted_mask, "mask is inverted"),
    (over_dim_minus_2, "over dim -2"),
    (lambda s, m: torch.softmax(s, -1).nan_to_num(), "called torch.softmax"),
    (lambda s, m: ma.masked_softmax(s, m), r"called torch.softmax \(ma.masked_softmax"),
    (lambda s, m: s.softmax(-1), "called Tensor.softmax"),
]


@pytest.mark.parametrize("fn, message", MASKED_MISTAKES)
def test_masked_softmax_mistakes(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_masked_softmax(fn)


def test_the_max_over_masked_scores_gets_its_own_hint():
    with pytest.raises(CheckFailed) as info:
        check_masked_softmax(max_over_masked_too)
    assert "large scores" in str(info.value) and "over every score" in str(info.value)


@pytest.mark.parametrize("fn", [softmax_solution, softmax_other])
def test_masked_softmax_correct_answers(fn, capsys):
    check_masked_softmax(fn)
    assert "✓ masked_softmax" in capsys.readouterr().out


# ---------------------------------------------------------------- exercise 1.3


def lookup_solution(q, k, v, t):  # the chapter's solution
    return ma.masked_softmax(q @ k.T / t) @ v


def lookup_other(q, k, v, t):  # different and correct: einsum and torch.softmax
    return torch.einsum("ls,se->le", torch.softmax(torch.einsum("le,se->ls", q, k) / t, -1), v)


def lookup_naive(q, k, v, t):
    e = torch.exp(q @ k.T / t)
    return e / e.sum(-1, keepdim=True) @ v


LOOKUP_MISTAKES = [
    (lambda q, k, v, t: torch.softmax(q @ k.T * t, dim=-1) @ v, "divide the scores by the temp"),
    (lambda q, k, v, t: torch.softmax(q @ k.T / t, dim=0) @ v, "over the keys"),
    (lookup_naive, "exp overflowed"),
    (lambda q, k, v, t: lookup_solution(q, k, v, t * q.shape[-1] ** 0.5), "1/√E"),
    (lambda q, k, v, t: torch.softmax(q @ k.T / t, -1), r"returned the \(L, S\) weights"),  # crash
    (lambda q, k, v, t: (q @ k.T / t) @ v, "must go through a softmax"),
    (
        lambda q, k, v, t: torch.softmax(-(torch.cdist(q, k) ** 2) / t, -1) @ v,
        "not minus the squared",
    ),
    (lambda q, k, v, t: 1 / 0, r"case 'one query, temperature 1': .* raised ZeroDivisionError"),
    (lambda q, k, v, t: [1.0], r"should be a torch\.Tensor, got list"),
    (lambda q, k, v, t: lookup_solution(q, k, v, t)[0], r"should have shape \(1, 3\), got \(3,\)"),
]


@pytest.mark.parametrize("fn, message", LOOKUP_MISTAKES)
def test_soft_lookup_mistakes(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_soft_lookup(fn)


@pytest.mark.parametrize("fn", [lookup_solution, lookup_other])
def test_soft_lookup_correct_answers(fn, capsys):
    check_soft_lookup(fn)
    assert "✓ soft_lookup" in capsys.readouterr().out


# ---------------------------------------------------------------- all of them


def test_a_learners_error_is_reported_as_theirs_with_their_line():
    def broken(q, k, h):
        return q @ k  # (L,) @ (S,): a shape error in the learner's code

    with pytest.raises(CheckFailed) as info:
        check_gaussian_weights(broken)
    text = str(info.value)
    assert "case 'two queries, three keys'" in text and "raised RuntimeError" in text
    assert "return q @ k" in text and "your code, not the checker's" in text


def test_the_checkers_leave_rng_and_threads_as_they_were():
    torch.manual_seed(123)
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    check_gaussian_weights(gaussian_solution)
    check_masked_softmax(softmax_solution)
    check_soft_lookup(lookup_solution)
    with pytest.raises(CheckFailed):
        check_gaussian_weights(lambda q, k, h: gaussian_solution(q, k, h) + torch.rand(1))
    check_gaussian_weights(lambda q, k, h: gaussian_solution(q, k, h) + 0 * torch.rand(1))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads


def test_a_numpy_answer_is_named():
    with pytest.raises(CheckFailed, match="NumPy array"):
        check_soft_lookup(lambda q, k, v, t: np.asarray(lookup_solution(q, k, v, t)))
