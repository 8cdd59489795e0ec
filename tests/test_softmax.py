"""masked_softmax: equal to torch.softmax, masking, stability, half precision, gradients, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import mini_attn as ma


def test_equals_torch_softmax_without_mask():
    scores = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    for dim in range(-4, 4):
        torch.testing.assert_close(
            ma.masked_softmax(scores, dim=dim), torch.softmax(scores, dim=dim)
        )


def test_equals_torch_softmax_over_the_unmasked_keys():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(4, 6, generator=g)
    mask = torch.rand(4, 6, generator=g) > 0.4
    mask[:, 0] = True
    expected = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    torch.testing.assert_close(ma.masked_softmax(scores, mask), expected)


def test_fully_masked_row_gives_zeros_and_zero_gradient():
    scores = torch.randn(3, 4, requires_grad=True)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False
    weights = ma.masked_softmax(scores, mask)
    assert torch.equal(weights[1], torch.zeros(4))
    assert torch.isfinite(weights).all()
    (weights * torch.randn(3, 4)).sum().backward()
    assert torch.isfinite(scores.grad).all()
    assert torch.equal(scores.grad[1], torch.zeros(4))


def test_large_scores_are_stable():
    scores = torch.tensor([[1000.0, 1001.0, 1002.0], [-1e4, -1e4 + 1, -1e4 + 2], [3e38, 3e38, 0.0]])
    weights = ma.masked_softmax(scores)
    reference = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), dim=-1)
    torch.testing.assert_close(weights[0], reference)
    torch.testing.assert_close(weights[1], reference)
    torch.testing.assert_close(weights[2], torch.tensor([0.5, 0.5, 0.0]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_returns_its_dtype_and_matches_float32(dtype):
    g = torch.Generator().manual_seed(2)
    scores = (torch.randn(8, 16, generator=g) * 30).to(dtype)  # float16 exp overflows above ~11
    mask = torch.rand(8, 16, generator=g) > 0.3
    mask[3] = False
    weights = ma.masked_softmax(scores, mask)
    assert weights.dtype == dtype
    assert torch.isfinite(weights).all()
    expected = ma.masked_softmax(scores.float(), mask)
    torch.testing.assert_close(weights.float(), expected, atol=1e-2, rtol=1e-2)
    assert torch.equal(weights[3].float(), torch.zeros(16))


def test_float64_gradients_pass_gradcheck():
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    mask = torch.rand(3, 5, generator=g) > 0.3
    mask[:, 2] = True
    assert torch.autograd.gradcheck(lambda s: ma.masked_softmax(s, mask), (scores,))
    assert torch.autograd.gradgradcheck(lambda s: ma.masked_softmax(s, mask), (scores,))


def test_gradient_equals_torch_softmax_gradient():
    scores = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(4, 7, dtype=torch.float64)
    (ours,) = torch.autograd.grad((ma.masked_softmax(scores) * upstream).sum(), scores)
    (theirs,) = torch.autograd.grad((torch.softmax(scores, -1) * upstream).sum(), scores)
    torch.testing.assert_close(ours, theirs)


shapes = st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 6))


@given(shape=shapes, seed=st.integers(0, 10_000), scale=st.sampled_from([0.1, 1.0, 100.0, 1e4]))
def test_properties_nonnegative_rows_sum_to_one_masked_zero(shape, seed, scale):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(shape, generator=g) * scale
    mask = torch.rand(shape, generator=g) > 0.5
    weights = ma.masked_softmax(scores, mask)
    assert (weights >= 0).all()
    assert torch.equal(weights[~mask], torch.zeros_like(weights[~mask]))
    sums = weights.sum(-1)
    has_key = mask.any(-1)
    torch.testing.assert_close(sums[has_key], torch.ones_like(sums[has_key]))
    assert torch.equal(sums[~has_key], torch.zeros_like(sums[~has_key]))


@given(seed=st.integers(0, 10_000), shift=st.floats(-1e3, 1e3))
def test_property_invariant_to_adding_a_constant(seed, shift):
    scores = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(ma.masked_softmax(scores + shift), ma.masked_softmax(scores))


def test_mask_broadcasts_over_batch_dimensions():
    scores = torch.randn(2, 3, 4, 5)
    mask = torch.rand(4, 5) > 0.5
    expected = torch.stack([torch.stack([ma.masked_softmax(s, mask) for s in b]) for b in scores])
    torch.testing.assert_close(ma.masked_softmax(scores, mask), expected)


def test_float_mask_is_refused_with_a_clear_error():
    with pytest.raises(TypeError, match=r"mask must be a boolean tensor.*float32"):
        ma.masked_softmax(torch.randn(2, 3), torch.zeros(2, 3))


def test_mask_of_the_wrong_shape_names_both_shapes():
    with pytest.raises(ValueError, match=r"mask of shape \(2, 4\).*scores of shape \(2, 3\)"):
        ma.masked_softmax(torch.randn(2, 3), torch.ones(2, 4, dtype=torch.bool))


def test_mask_that_would_enlarge_scores_is_refused():
    with pytest.raises(ValueError, match="does not broadcast"):
        ma.masked_softmax(torch.randn(3), torch.ones(2, 3, dtype=torch.bool))


@pytest.mark.parametrize(
    ("scores", "kwargs", "error", "pattern"),
    [
        (torch.ones(2, 3, dtype=torch.long), {}, TypeError, "floating-point"),
        ([1.0, 2.0], {}, TypeError, "torch.Tensor"),
        (torch.randn(2, 3), {"dim": 2}, ValueError, "dim=2 is out of range"),
        (torch.randn(2, 3), {"mask": [[True] * 3] * 2}, TypeError, "boolean torch.Tensor"),
    ],
)
def test_bad_input(scores, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        ma.masked_softmax(scores, **kwargs)
