"""Scoring functions: each against its formula, shapes and broadcasting, gradients, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import mini_attn as ma


def _randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_dot_product_score_is_the_dot_product_of_every_pair():
    query, key = _randn(2, 3, 5, seed=0), _randn(2, 4, 5, seed=1)
    scores = ma.dot_product_score(query, key)
    assert scores.shape == (2, 3, 4)
    for b in range(2):
        for i in range(3):
            for j in range(4):
                torch.testing.assert_close(scores[b, i, j], torch.dot(query[b, i], key[b, j]))


def test_scaled_dot_product_score_divides_by_sqrt_e():
    query, key = _randn(3, 16, seed=2), _randn(5, 16, seed=3)
    torch.testing.assert_close(
        ma.scaled_dot_product_score(query, key), query @ key.T / math.sqrt(16)
    )


def test_scaled_scores_give_the_weights_of_pytorch_attention():
    """softmax(scaled scores) @ V is PyTorch's scaled_dot_product_attention."""
    query, key, value = _randn(2, 3, 8, seed=4), _randn(2, 6, 8, seed=5), _randn(2, 6, 4, seed=6)
    context, _ = ma.soft_attention(ma.scaled_dot_product_score(query, key), value)
    expected = torch.nn.functional.scaled_dot_product_attention(query, key, value)
    torch.testing.assert_close(context, expected)


def test_additive_score_is_w_tanh_wq_q_plus_wk_k():
    torch.manual_seed(0)
    module = ma.AdditiveScore(query_dim=6, key_dim=4, hidden_dim=5)
    query, key = _randn(2, 3, 6, seed=7), _randn(2, 7, 4, seed=8)
    scores = module(query, key)
    assert scores.shape == (2, 3, 7)
    w_q, w_k, w = module.query_proj.weight, module.key_proj.weight, module.out.weight[0]
    for b in range(2):
        for i in range(3):
            for j in range(7):
                expected = w @ torch.tanh(w_q @ query[b, i] + w_k @ key[b, j])
                torch.testing.assert_close(scores[b, i, j], expected)


def test_additive_score_has_no_biases():
    module = ma.AdditiveScore(3, 5, 8)
    assert all(lin.bias is None for lin in (module.query_proj, module.key_proj, module.out))
    assert sum(p.numel() for p in module.parameters()) == 3 * 8 + 5 * 8 + 8


def test_bilinear_score_is_q_w_k_and_equals_torch_bilinear():
    torch.manual_seed(2)
    module = ma.BilinearScore(query_dim=4, key_dim=3)
    query, key = _randn(2, 5, 4, seed=11), _randn(2, 6, 3, seed=12)
    scores = module(query, key)
    assert scores.shape == (2, 5, 6)
    expected = torch.einsum("bld,de,bse->bls", query, module.weight, key)
    torch.testing.assert_close(scores, expected)
    # torch.nn.functional.bilinear computes x1ᵀ A x2 for one pair at a time
    pairs = torch.nn.functional.bilinear(
        query[0, :, None, :].expand(5, 6, 4).reshape(30, 4),
        key[0, None, :, :].expand(5, 6, 3).reshape(30, 3),
        module.weight[None],
    )  # (30, 1)
    torch.testing.assert_close(scores[0], pairs.reshape(5, 6))


def test_bilinear_with_identity_weight_is_the_dot_product():
    module = ma.BilinearScore(5, 5)
    with torch.no_grad():
        module.weight.copy_(torch.eye(5))
    query, key = _randn(3, 5, seed=13), _randn(4, 5, seed=14)
    torch.testing.assert_close(module(query, key), ma.dot_product_score(query, key))


@given(
    batch=st.lists(st.integers(1, 3), max_size=2),
    n_queries=st.integers(1, 4),
    n_keys=st.integers(1, 5),
)
def test_every_score_has_shape_batch_l_s_and_broadcasts(batch, n_queries, n_keys):
    torch.manual_seed(3)
    query = torch.randn(*batch, n_queries, 4)
    key = torch.randn(n_keys, 4)  # no batch dims: broadcasts against the query's
    for score in (
        ma.dot_product_score,
        ma.scaled_dot_product_score,
        ma.AdditiveScore(4, 4, 3),
        ma.BilinearScore(4, 4),
    ):
        assert score(query, key).shape == (*batch, n_queries, n_keys)


@pytest.mark.parametrize("name", ["dot", "scaled", "additive", "bilinear"])
def test_gradcheck_in_float64(name):
    torch.manual_seed(4)
    query = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    key = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    score = {
        "dot": ma.dot_product_score,
        "scaled": ma.scaled_dot_product_score,
        "additive": ma.AdditiveScore(4, 4, 6).double(),
        "bilinear": ma.BilinearScore(4, 4).double(),
    }[name]
    assert torch.autograd.gradcheck(score, (query, key))
    if isinstance(score, torch.nn.Module):  # the gradients of the learned weights too
        names = [n for n, _ in score.named_parameters()]

        def as_function_of_weights(*weights):
            inputs = (query.detach(), key.detach())
            return torch.func.functional_call(score, dict(zip(names, weights, strict=True)), inputs)

        weights = tuple(p.detach().clone().requires_grad_() for p in score.parameters())
        assert torch.autograd.gradcheck(as_function_of_weights, weights)


def test_errors_name_the_argument_and_shapes():
    with pytest.raises(ValueError, match=r"query \(3, 4\) and key \(5, 6\)"):
        ma.dot_product_score(torch.randn(3, 4), torch.randn(5, 6))
    with pytest.raises(ValueError, match=r"query must have at least 2 dimension"):
        ma.scaled_dot_product_score(torch.randn(4), torch.randn(5, 4))
    with pytest.raises(TypeError, match="key must be a floating-point tensor"):
        ma.dot_product_score(torch.randn(3, 4), torch.ones(5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"key must have last dimension 5, got shape \(2, 4\)"):
        ma.AdditiveScore(3, 5, 8)(torch.randn(1, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"query must have last dimension 4"):
        ma.BilinearScore(4, 3)(torch.randn(2, 3), torch.randn(2, 3))
