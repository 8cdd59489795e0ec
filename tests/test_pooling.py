"""attention_pooling (Nadaraya–Watson): hand formulas, kernels, shapes, gradients, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import mini_attn as ma


def _loop_gaussian(queries, keys, values, h):
    """The textbook formula, one query at a time: exp and a sum, no softmax, no broadcasting."""
    out, rows = [], []
    for q in queries.tolist():
        k = [math.exp(-((q - x) ** 2) / (2 * h * h)) for x in keys.tolist()]
        total = sum(k)
        w = [v / total for v in k]
        rows.append(w)
        out.append(sum(wi * yi for wi, yi in zip(w, values.tolist(), strict=True)))
    return torch.tensor(out, dtype=torch.float64), torch.tensor(rows, dtype=torch.float64)


def test_gaussian_1d_equals_the_textbook_formula():
    g = torch.Generator().manual_seed(0)
    queries = torch.rand(7, dtype=torch.float64, generator=g) * 4
    keys = torch.rand(9, dtype=torch.float64, generator=g) * 4
    values = torch.randn(9, dtype=torch.float64, generator=g)
    output, weights = ma.attention_pooling(queries, keys, values, bandwidth=0.7)
    expected_output, expected_weights = _loop_gaussian(queries, keys, values, 0.7)
    assert output.shape == (7,) and weights.shape == (7, 9)
    torch.testing.assert_close(output, expected_output)
    torch.testing.assert_close(weights, expected_weights)


def test_2d_uses_squared_euclidean_distance():
    g = torch.Generator().manual_seed(1)
    queries, keys = torch.randn(4, 3, generator=g), torch.randn(6, 3, generator=g)
    values = torch.randn(6, 2, generator=g)
    output, weights = ma.attention_pooling(queries, keys, values, bandwidth=1.5)
    sq = torch.cdist(queries, keys) ** 2
    expected = torch.softmax(-sq / (2 * 1.5**2), dim=-1)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(output, expected @ values)
    assert output.shape == (4, 2)


def test_batch_dimensions_broadcast():
    g = torch.Generator().manual_seed(2)
    queries = torch.randn(2, 5, 3, generator=g)
    keys, values = torch.randn(7, 3, generator=g), torch.randn(7, 4, generator=g)
    output, weights = ma.attention_pooling(queries, keys, values)
    assert output.shape == (2, 5, 4) and weights.shape == (2, 5, 7)
    torch.testing.assert_close(output[1], ma.attention_pooling(queries[1], keys, values)[0])


def test_boxcar_averages_the_keys_inside_the_window():
    keys = torch.tensor([0.0, 0.5, 1.0, 3.0])
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    output, weights = ma.attention_pooling(
        torch.tensor([0.4, 10.0]), keys, values, kernel="boxcar", bandwidth=0.6
    )
    torch.testing.assert_close(weights[0], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0]))
    torch.testing.assert_close(output[0], torch.tensor(2.0))
    # no key within 0.6 of 10: zero weights and output 0, never NaN
    assert torch.equal(weights[1], torch.zeros(4)) and output[1].item() == 0.0


def test_epanechnikov_weights_are_proportional_to_one_minus_d2():
    keys = torch.tensor([0.0, 0.5, 0.9, 2.0], dtype=torch.float64)
    values = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    _, weights = ma.attention_pooling(
        torch.tensor([0.0], dtype=torch.float64), keys, values, kernel="epanechnikov"
    )
    raw = (1 - keys**2).clamp_min(0)
    torch.testing.assert_close(weights[0], raw / raw.sum())


@given(
    n_queries=st.integers(1, 6),
    n_keys=st.integers(1, 8),
    kernel=st.sampled_from(ma.POOLING_KERNELS),
    bandwidth=st.floats(0.05, 5.0),
    seed=st.integers(0, 1000),
)
def test_properties_of_the_weights(n_queries, n_keys, kernel, bandwidth, seed):
    g = torch.Generator().manual_seed(seed)
    queries, keys = torch.randn(n_queries, generator=g), torch.randn(n_keys, generator=g)
    values = torch.randn(n_keys, generator=g)
    output, weights = ma.attention_pooling(
        queries, keys, values, kernel=kernel, bandwidth=bandwidth
    )
    assert (weights >= 0).all() and torch.isfinite(output).all()
    sums = weights.sum(-1)
    assert torch.all((sums - 1).abs() < 1e-5) or kernel != "gaussian"
    assert torch.all(((sums - 1).abs() < 1e-5) | (sums == 0))
    # the output is a convex combination of the values (or 0 when no key is in the window)
    inside = sums > 0
    assert torch.all(output[inside] <= values.max() + 1e-5) and torch.all(
        output[inside] >= values.min() - 1e-5
    )


def test_small_bandwidth_is_a_nearest_neighbour_lookup_and_large_is_the_mean():
    keys = torch.tensor([0.0, 1.0, 2.0, 3.0])
    values = torch.tensor([5.0, 6.0, 7.0, 8.0])
    queries = torch.tensor([0.9, 2.2])
    near, _ = ma.attention_pooling(queries, keys, values, bandwidth=0.01)
    torch.testing.assert_close(near, torch.tensor([6.0, 7.0]))
    wide, _ = ma.attention_pooling(queries, keys, values, bandwidth=1e4)
    torch.testing.assert_close(wide, values.mean().expand(2))


def test_gradcheck_with_respect_to_queries_values_and_bandwidth():
    g = torch.Generator().manual_seed(3)
    queries = torch.randn(3, 2, dtype=torch.float64, generator=g, requires_grad=True)
    keys = torch.randn(5, 2, dtype=torch.float64, generator=g, requires_grad=True)
    values = torch.randn(5, 2, dtype=torch.float64, generator=g, requires_grad=True)
    h = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    for kernel in ("gaussian", "epanechnikov"):
        assert torch.autograd.gradcheck(
            lambda q, k, v, h, kernel=kernel: ma.attention_pooling(
                q, k, v, kernel=kernel, bandwidth=h
            )[0],
            (queries, keys, values, h),
        )


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "pattern"),
    [
        (
            (torch.zeros(3), torch.zeros(4), torch.zeros(5)),
            {},
            ValueError,
            r"keys \(4,\) and values \(5,\)",
        ),
        ((torch.zeros(3), torch.zeros(4, 2), torch.zeros(4)), {}, ValueError, "must be 1-D too"),
        (
            (torch.zeros(3, 2), torch.zeros(4, 3), torch.zeros(4, 1)),
            {},
            ValueError,
            r"queries \(3, 2\) and keys \(4, 3\)",
        ),
        (
            (torch.zeros(3, 2), torch.zeros(4, 2), torch.zeros(5, 1)),
            {},
            ValueError,
            r"keys \(4, 2\) and values \(5, 1\)",
        ),
        (
            (torch.zeros(3), torch.zeros(3), torch.zeros(3)),
            {"kernel": "cosine"},
            ValueError,
            "kernel must be one of",
        ),
        (
            (torch.zeros(3), torch.zeros(3), torch.zeros(3)),
            {"bandwidth": 0.0},
            ValueError,
            "bandwidth must be positive",
        ),
        (
            (torch.zeros(3, dtype=torch.long), torch.zeros(3), torch.zeros(3)),
            {},
            TypeError,
            "queries must be a floating",
        ),
    ],
)
def test_bad_input_gets_a_clear_error(args, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        ma.attention_pooling(*args, **kwargs)


def test_regression_data_is_deterministic_and_sorted():
    a, b = ma.tasks.make_regression_1d(seed=3), ma.tasks.make_regression_1d(seed=3)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a.y_train, ma.tasks.make_regression_1d(seed=4).y_train)
    assert torch.all(a.x_train[1:] >= a.x_train[:-1])
    torch.testing.assert_close(a.y_test, ma.tasks.regression_target(a.x_test))
    with pytest.raises(ValueError, match="high must be greater"):
        ma.tasks.make_regression_1d(low=1.0, high=1.0)
