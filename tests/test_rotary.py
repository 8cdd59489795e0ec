"""apply_rotary: equal to transformers' Llama rotary embedding; the relative-offset property."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mini_attn as ma

transformers = pytest.importorskip("transformers")
from transformers.models.llama.modeling_llama import (  # noqa: E402
    LlamaConfig,
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
)


def llama_rotary(head_dim: int, base: float) -> LlamaRotaryEmbedding:
    config = LlamaConfig(
        hidden_size=4 * head_dim,
        num_attention_heads=4,
        head_dim=head_dim,
        rope_parameters={"rope_type": "default", "rope_theta": base},
    )
    return LlamaRotaryEmbedding(config)


@pytest.mark.parametrize("head_dim, n, base", [(8, 5, 10000.0), (64, 33, 500000.0), (2, 1, 10.0)])
@pytest.mark.parametrize("start", [0, 17, 4000])
def test_apply_rotary_is_llamas_apply_rotary_pos_emb(head_dim, n, base, start):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, n, head_dim, generator=g)  # (B, H, N, D)
    k = torch.randn(2, 1, n, head_dim, generator=g)
    positions = torch.arange(start, start + n)
    cos, sin = llama_rotary(head_dim, base)(q, positions[None].expand(2, -1))
    q_ref, k_ref = apply_rotary_pos_emb(q, k, cos, sin)
    # float32: the same float32 angles as Llama; only the cos/sin rounding may differ
    torch.testing.assert_close(ma.apply_rotary(q, positions, base=base), q_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(ma.apply_rotary(k, positions, base=base), k_ref, atol=1e-6, rtol=0)


def test_apply_rotary_in_float64_is_the_formula_exactly():
    """float64 angles: equal to the 2-D rotation of each pair written out in float64."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 7, 6, dtype=torch.float64, generator=g)
    positions = torch.tensor([0, 1, 2, 5, 100, 2047, 99999])
    out = ma.apply_rotary(x, positions)
    half = 3
    expected = torch.empty_like(x)
    for i in range(half):
        theta = positions.double() * 10000.0 ** (-2 * i / 6)
        a, b = x[..., i], x[..., i + half]
        expected[..., i] = a * theta.cos() - b * theta.sin()
        expected[..., i + half] = a * theta.sin() + b * theta.cos()
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)  # angles up to 1e5 rad
    # and Llama's float32 angles agree with it up to float32's rounding of p·θ
    cos, sin = llama_rotary(6, 10000.0)(x, positions[None])
    ref, _ = apply_rotary_pos_emb(x[None], x[None], cos, sin)
    torch.testing.assert_close(out, ref[0], atol=5e-3, rtol=0)  # |p·θ| up to 1e5: float32 ulp


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_apply_rotary_keeps_shape_and_dtype(dtype):
    x = torch.randn(2, 4, 5, 8).to(dtype)
    out = ma.apply_rotary(x, torch.arange(5))
    assert out.shape == x.shape and out.dtype == dtype


def test_apply_rotary_at_position_zero_is_the_identity_and_keeps_norms():
    x = torch.randn(4, 3, 16, dtype=torch.float64)
    torch.testing.assert_close(ma.apply_rotary(x, torch.zeros(3, dtype=torch.long)), x)
    rotated = ma.apply_rotary(x, torch.tensor([3, 50, 7]))
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))


@settings(deadline=None, max_examples=40)
@given(
    m=st.integers(0, 5000),
    n=st.integers(0, 5000),
    shift=st.integers(0, 5000),
    half=st.integers(1, 16),
    seed=st.integers(0, 2**16),
)
def test_rotated_scores_depend_on_the_offset_only(m, n, shift, half, seed):
    """q(m)·k(n) == q(m + s)·k(n + s): rotary scores see m − n only."""
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 1, 2 * half, dtype=torch.float64, generator=g)
    m2, n2 = m + shift, n + shift

    def score(a, b):
        qa = ma.apply_rotary(q, torch.tensor([a]))
        kb = ma.apply_rotary(k, torch.tensor([b]))
        return (qa * kb).sum()

    torch.testing.assert_close(score(m, n), score(m2, n2), atol=1e-9, rtol=1e-9)


def test_apply_rotary_gradcheck():
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: ma.apply_rotary(t, torch.tensor([0, 4, 9])), (x,))


def test_apply_rotary_refuses_an_odd_head_size():
    with pytest.raises(ValueError, match=r"x of shape \(2, 3, 5\) must have an even last"):
        ma.apply_rotary(torch.randn(2, 3, 5), torch.arange(3))


@pytest.mark.parametrize("bad", [torch.arange(3.0), torch.tensor([True, False, True])])
def test_apply_rotary_refuses_positions_that_are_not_integers(bad):
    with pytest.raises(TypeError, match="positions must be an integer tensor"):
        ma.apply_rotary(torch.randn(3, 4), bad)


def test_apply_rotary_refuses_positions_of_the_wrong_length_or_rank():
    with pytest.raises(ValueError, match=r"positions of shape \(4,\).*N=3"):
        ma.apply_rotary(torch.randn(2, 3, 4), torch.arange(4))
    with pytest.raises(ValueError, match="positions must have 1 dimension"):
        ma.apply_rotary(torch.randn(2, 3, 4), torch.arange(6).view(2, 3))
    with pytest.raises(TypeError, match="x must be a floating-point"):
        ma.apply_rotary(torch.ones(3, 4, dtype=torch.long), torch.arange(3))
