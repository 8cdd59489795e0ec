"""Chapter 1's checkers reject plausible wrong answers with a message that helps."""

from __future__ import annotations

import pytest
import torch

import mini_attn as ma
from mini_attn.exercises import (
    CheckFailed,
    check_gaussian_weights,
    check_masked_softmax,
    check_soft_lookup,
)


def _scores(q, k, h):
    return -((q[:, None] - k[None, :]) ** 2) / (2 * h**2)


def test_gaussian_weights_over_the_wrong_axis():
    with pytest.raises(CheckFailed, match=r"sum to 1 over the queries \(dim 0\)"):
        check_gaussian_weights(lambda q, k, h: torch.softmax(_scores(q, k, h), dim=0))


def test_gaussian_weights_without_max_subtraction_gives_nan():
    def naive(q, k, h):
        e = torch.exp(_scores(q, k, h))
        return e / e.sum(-1, keepdim=True)

    with pytest.raises(
        CheckFailed, match=r"far-away query.*\n?.*Subtract each row's largest score"
    ):
        check_gaussian_weights(naive)


def test_gaussian_weights_forgetting_the_factor_two():
    with pytest.raises(
        CheckFailed, match=r"wrong value in the weights: at index .* expected .* got"
    ):
        check_gaussian_weights(lambda q, k, h: torch.softmax(_scores(q, k, h) * 2, dim=-1))


def test_masked_softmax_with_inverted_mask():
    with pytest.raises(CheckFailed, match="mask is inverted"):
        check_masked_softmax(lambda s, m: ma.masked_softmax(s, None if m is None else ~m))


def test_masked_softmax_filling_with_a_large_negative_number():
    def fill(s, m):
        return torch.softmax(s if m is None else s.masked_fill(~m, -1e9), dim=-1)

    with pytest.raises(CheckFailed, match="every key masked must get all-zero weights"):
        check_masked_softmax(fill)


def test_masked_softmax_without_max_subtraction():
    def naive(s, m):
        e = torch.exp(s)
        if m is not None:
            e = e * m
        return e / e.sum(-1, keepdim=True)

    with pytest.raises(CheckFailed, match="Subtract the row maximum"):
        check_masked_softmax(naive)


def test_masked_softmax_over_the_wrong_dim():
    with pytest.raises(CheckFailed, match="over dim -2"):
        check_masked_softmax(lambda s, m: ma.masked_softmax(s, m, dim=-2))


def test_soft_lookup_multiplying_by_the_temperature():
    with pytest.raises(CheckFailed, match="divide the scores by the temperature"):
        check_soft_lookup(lambda q, k, v, t: torch.softmax(q @ k.T * t, dim=-1) @ v)


def test_soft_lookup_softmax_over_queries():
    with pytest.raises(CheckFailed, match="over the keys"):
        check_soft_lookup(lambda q, k, v, t: torch.softmax(q @ k.T / t, dim=0) @ v)


def test_a_crash_is_reported_with_the_case_name():
    with pytest.raises(
        CheckFailed, match=r"case 'one query, temperature 1': .* raised ZeroDivisionError"
    ):
        check_soft_lookup(lambda q, k, v, t: 1 / 0)


def test_a_wrong_type_is_reported():
    with pytest.raises(CheckFailed, match=r"should be a torch\.Tensor, got list"):
        check_soft_lookup(lambda q, k, v, t: [1.0])


def test_a_wrong_shape_is_reported_with_both_shapes():
    with pytest.raises(CheckFailed, match=r"should have shape \(1, 3\), got \(3,\)"):
        check_soft_lookup(lambda q, k, v, t: (torch.softmax(q @ k.T / t, -1) @ v)[0])
