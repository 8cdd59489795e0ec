"""soft_attention: weights sum to one, context is the weighted average, masking, gradients."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import mini_attn as ma


def _randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_equals_softmax_then_weighted_sum():
    scores, values = _randn(2, 3, 5, seed=0), _randn(2, 5, 4, seed=1)
    context, weights = ma.soft_attention(scores, values)
    torch.testing.assert_close(weights, torch.softmax(scores, dim=-1))
    torch.testing.assert_close(context, torch.softmax(scores, dim=-1) @ values)


def test_equals_pytorch_attention_with_dot_product_scores_and_a_mask():
    query, key, value = _randn(2, 4, 8, seed=2), _randn(2, 6, 8, seed=3), _randn(2, 6, 3, seed=4)
    mask = _randn(2, 4, 6, seed=5) > -0.5
    mask[..., 0] = True  # PyTorch gives NaN for fully masked rows; keep one key per row
    context, _ = ma.soft_attention(ma.scaled_dot_product_score(query, key), value, mask=mask)
    expected = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    torch.testing.assert_close(context, expected)


@given(
    batch=st.lists(st.integers(1, 3), max_size=2),
    n_queries=st.integers(1, 4),
    n_keys=st.integers(1, 6),
    seed=st.integers(0, 1000),
)
def test_weights_are_a_distribution_and_context_is_in_the_hull(batch, n_queries, n_keys, seed):
    scores = _randn(*batch, n_queries, n_keys, seed=seed) * 5
    values = _randn(n_keys, 1, seed=seed + 1)  # broadcasts over the batch
    context, weights = ma.soft_attention(scores, values)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(*batch, n_queries))
    # a weighted average lies between the smallest and the largest value
    assert (context >= values.min() - 1e-5).all() and (context <= values.max() + 1e-5).all()


def test_masked_keys_get_zero_weight_and_do_not_change_the_context():
    scores, values = _randn(3, 5, seed=6), _randn(5, 2, seed=7)
    mask = torch.tensor([True, True, False, True, False])
    context, weights = ma.soft_attention(scores, values, mask=mask)
    assert torch.equal(weights[:, ~mask], torch.zeros(3, 2))
    changed = values.clone()
    changed[~mask] = 1e6  # anything at the masked keys
    torch.testing.assert_close(ma.soft_attention(scores, changed, mask=mask)[0], context)
    kept, _ = ma.soft_attention(scores[:, mask], values[mask])
    torch.testing.assert_close(context, kept)


def test_padding_mask_ignores_the_padding_of_shorter_sequences():
    lengths = torch.tensor([2, 4])
    scores, values = _randn(2, 3, 4, seed=8), _randn(2, 4, 2, seed=9)
    context, weights = ma.soft_attention(scores, values, mask=ma.padding_mask(lengths))
    assert torch.equal(weights[0, :, 2:], torch.zeros(3, 2))
    torch.testing.assert_close(context[0], ma.soft_attention(scores[0, :, :2], values[0, :2])[0])


def test_fully_masked_row_gives_zero_context_and_finite_gradients():
    scores = _randn(2, 4, seed=10).requires_grad_()
    values = _randn(4, 3, seed=11).requires_grad_()
    mask = torch.tensor([[True, False, True, True], [False, False, False, False]])
    context, weights = ma.soft_attention(scores, values, mask=mask)
    assert torch.equal(weights[1], torch.zeros(4)) and torch.equal(context[1], torch.zeros(3))
    context.sum().backward()
    assert torch.isfinite(scores.grad).all() and torch.isfinite(values.grad).all()


def test_gradcheck_in_float64():
    scores = _randn(2, 3, 5, seed=12, dtype=torch.float64).requires_grad_()
    values = _randn(2, 5, 4, seed=13, dtype=torch.float64).requires_grad_()
    mask = _randn(3, 5, seed=14) > -0.3
    assert torch.autograd.gradcheck(
        lambda s, v: ma.soft_attention(s, v, mask=mask), (scores, values)
    )


def test_errors_name_the_argument_and_shapes():
    with pytest.raises(ValueError, match=r"scores \(2, 3\) and values \(4, 2\)"):
        ma.soft_attention(torch.randn(2, 3), torch.randn(4, 2))
    with pytest.raises(TypeError, match="mask must be a boolean tensor"):
        ma.soft_attention(torch.randn(2, 3), torch.randn(3, 2), mask=torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"mask of shape \(4,\) does not broadcast"):
        ma.soft_attention(
            torch.randn(2, 3), torch.randn(3, 2), mask=torch.ones(4, dtype=torch.bool)
        )
    with pytest.raises(TypeError, match="values must be a floating-point tensor"):
        ma.soft_attention(torch.randn(2, 3), torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="scores must have at least 2 dimension"):
        ma.soft_attention(torch.randn(3), torch.randn(3, 2))
