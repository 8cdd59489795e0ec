"""The NumPy K/Q/V computation equals the PyTorch one (ma.scaled_dot_product_attention)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import mini_attn as ma


def arrays(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for shape in shapes]


def torch_attention(q, k, v, **kwargs):
    mask = kwargs.pop("mask", None)
    output, weights = ma.scaled_dot_product_attention(
        torch.from_numpy(q),
        torch.from_numpy(k),
        torch.from_numpy(v),
        mask=None if mask is None else torch.from_numpy(mask),
        **kwargs,
    )
    return output.numpy(), weights.numpy()


@given(
    batch=st.lists(st.integers(1, 3), max_size=2),
    n_queries=st.integers(1, 6),
    n_keys=st.integers(1, 6),
    dim=st.integers(1, 6),
    causal=st.booleans(),
    masked=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_equals_pytorch(batch, n_queries, n_keys, dim, causal, masked, seed):
    q, k, v = arrays((*batch, n_queries, dim), (*batch, n_keys, dim), (n_keys, 3), seed=seed)
    mask = np.random.default_rng(seed + 1).random((n_queries, n_keys)) < 0.6 if masked else None
    output, weights = ma.scaled_dot_product_attention_numpy(q, k, v, mask=mask, causal=causal)
    expected, expected_weights = torch_attention(q, k, v, mask=mask, causal=causal)
    np.testing.assert_allclose(output, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(weights, expected_weights, rtol=1e-12, atol=1e-12)


def test_custom_scale_and_float32():
    q, k, v = (a.astype(np.float32) for a in arrays((4, 8), (5, 8), (5, 2), seed=3))
    output, weights = ma.scaled_dot_product_attention_numpy(q, k, v, scale=0.9)
    expected, expected_weights = torch_attention(q, k, v, scale=0.9)
    assert output.dtype == np.float32
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights, expected_weights, rtol=1e-5, atol=1e-6)


def test_fully_masked_row_is_zero_and_large_scores_are_stable():
    q, k, v = arrays((3, 4), (5, 4), (5, 2), seed=4)
    mask = np.ones((3, 5), dtype=bool)
    mask[1] = False
    output, weights = ma.scaled_dot_product_attention_numpy(1e4 * q, k, v, mask=mask)
    assert np.isfinite(output).all()
    assert (output[1] == 0).all() and (weights[1] == 0).all()
    np.testing.assert_allclose(weights.sum(-1), [1.0, 0.0, 1.0])


@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_numpy_equals_the_module(causal):
    torch.manual_seed(0)
    module = ma.SelfAttention(6, 4).double()
    (x,) = arrays((2, 5, 6), seed=5)
    w_q, w_k, w_v = (
        p.weight.detach().numpy().T for p in (module.q_proj, module.k_proj, module.v_proj)
    )
    output, weights = ma.self_attention_numpy(x, w_q, w_k, w_v, causal=causal)
    expected, expected_weights = module(torch.from_numpy(x), causal=causal)
    np.testing.assert_allclose(output, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(weights, expected_weights.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_bad_shapes_name_both_shapes():
    q, k, v = arrays((2, 3, 4), (2, 5, 6), (2, 5, 6))
    with pytest.raises(ValueError, match=r"query \(2, 3, 4\) and key \(2, 5, 6\)"):
        ma.scaled_dot_product_attention_numpy(q, k, v)
    q, k, v = arrays((3, 4), (5, 4), (6, 4))
    with pytest.raises(ValueError, match=r"key \(5, 4\) and value \(6, 4\)"):
        ma.scaled_dot_product_attention_numpy(q, k, v)
    x, w = arrays((5, 6), (4, 3))
    with pytest.raises(ValueError, match=r"w_q of shape \(4, 3\).*E = 6.*\(5, 6\)"):
        ma.self_attention_numpy(x, w, w, w)


def test_bad_types():
    q, k, v = arrays((3, 4), (5, 4), (5, 2))
    with pytest.raises(TypeError, match="boolean"):
        ma.scaled_dot_product_attention_numpy(q, k, v, mask=np.zeros((3, 5)))
    with pytest.raises(TypeError, match=r"query must be a numpy\.ndarray, got Tensor"):
        ma.scaled_dot_product_attention_numpy(torch.from_numpy(q), k, v)
    with pytest.raises(TypeError, match="floating-point"):
        ma.scaled_dot_product_attention_numpy(q.astype(int), k, v)
    with pytest.raises(ValueError, match="at least 2"):
        ma.scaled_dot_product_attention_numpy(q[0], k, v)
