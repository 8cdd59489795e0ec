"""SelfAttention: equal to nn.MultiheadAttention with one head, equivariant, causal, checked."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import mini_attn as ma


def make(embed_dim=8, head_dim=None, *, bias=False, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return ma.SelfAttention(embed_dim, head_dim, bias=bias).to(dtype)


def test_shapes_and_attributes():
    attention = make(8, 4)
    output, weights = attention(torch.randn(2, 3, 5, 8))
    assert output.shape == (2, 3, 5, 4) and weights.shape == (2, 3, 5, 5)
    assert attention.q_proj.weight.shape == (4, 8) and attention.q_proj.bias is None
    assert make(8).head_dim == 8
    assert make(8, bias=True).v_proj.bias.shape == (8,)
    assert "embed_dim=8, head_dim=4" in repr(attention)


@pytest.mark.parametrize("bias", [False, True])
def test_equals_the_formula_on_its_projections(bias):
    attention = make(6, 4, bias=bias)
    x = torch.randn(3, 7, 6)
    output, weights = attention(x)
    q, k, v = attention.q_proj(x), attention.k_proj(x), attention.v_proj(x)
    expected_weights = torch.softmax(q @ k.transpose(-2, -1) / 2.0, dim=-1)  # √4 = 2
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(output, expected_weights @ v)


@pytest.mark.parametrize("causal", [False, True])
def test_equals_torch_multihead_attention_with_one_head(causal):
    """minGPT-style parity: load our weights into PyTorch's module, compare outputs."""
    embed_dim = 8
    ours = make(embed_dim, bias=True, seed=1)
    theirs = torch.nn.MultiheadAttention(embed_dim, num_heads=1, bias=True, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(
            torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight])
        )
        theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        theirs.out_proj.weight.copy_(torch.eye(embed_dim))  # SelfAttention has no W_o
        theirs.out_proj.bias.zero_()
    x = torch.randn(2, 6, embed_dim)
    # PyTorch's attn_mask is True where attention is NOT allowed: the opposite of ours
    forbidden = ~ma.causal_mask(6) if causal else None
    expected, expected_weights = theirs(x, x, x, attn_mask=forbidden)
    output, weights = ours(x, causal=causal)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(weights, expected_weights)


@given(n=st.integers(1, 8), seed=st.integers(0, 1000), data=st.data())
def test_permutation_equivariance(n, seed, data):
    """Shuffle the positions of x, and the outputs are shuffled the same way."""
    perm = torch.tensor(data.draw(st.permutations(range(n))))
    attention = make(5, 3, bias=True, seed=seed, dtype=torch.float64)
    x = torch.randn(2, n, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    output, weights = attention(x)
    output_p, weights_p = attention(x[:, perm])
    torch.testing.assert_close(output_p, output[:, perm])
    torch.testing.assert_close(weights_p, weights[:, perm][:, :, perm])


def test_positional_encodings_break_the_equivariance():
    attention = make(8, seed=2, dtype=torch.float64)
    x = torch.randn(1, 6, 8, dtype=torch.float64)
    pe = ma.sinusoidal_positional_encoding(6, 8, dtype=torch.float64)
    perm = torch.tensor([5, 4, 3, 2, 1, 0])
    output = attention(x + pe)[0]
    output_p = attention(x[:, perm] + pe)[0]
    assert (output_p - output[:, perm]).abs().max() > 1e-3


def test_causal_output_does_not_depend_on_later_positions():
    attention = make(4, seed=3)
    x = torch.randn(2, 6, 4)
    changed = x.clone()
    changed[:, 4:] = torch.randn(2, 2, 4)  # change positions 4 and 5
    output, weights = attention(x, causal=True)
    output2, _ = attention(changed, causal=True)
    torch.testing.assert_close(output2[:, :4], output[:, :4])
    assert (output2[:, 4:] - output[:, 4:]).abs().max() > 1e-3
    assert (weights.triu(1) == 0).all()


def test_mask_and_causal_reach_the_attention():
    attention = make(4, seed=4)
    x = torch.randn(2, 5, 4)
    mask = ma.padding_mask(torch.tensor([5, 3]))
    _, weights = attention(x, mask=mask, causal=True)
    assert (weights[1, :, 3:] == 0).all() and (weights.triu(1) == 0).all()


def test_gradcheck_in_float64():
    attention = make(4, 3, bias=True, dtype=torch.float64)
    x = torch.randn(2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: attention(x, causal=True), (x,))


def test_bad_input():
    attention = make(8)
    with pytest.raises(ValueError, match=r"x of shape \(2, 5, 6\) must have embed_dim=8"):
        attention(torch.randn(2, 5, 6))
    with pytest.raises(TypeError, match="floating-point"):
        attention(torch.ones(2, 5, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2"):
        attention(torch.randn(8))
    with pytest.raises(ValueError, match="positive"):
        ma.SelfAttention(0)
