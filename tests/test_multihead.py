"""MultiHeadAttention, split_heads, merge_heads: equal to torch.nn.MultiheadAttention, grouped-query
attention against a repeat_interleave reference, masks, gradients, invariants and errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import mini_attn as ma


def _torch_pair(embed_dim=16, num_heads=4, *, bias=True, seed=0, dtype=torch.float32):
    """A seeded nn.MultiheadAttention (random biases too) and our copy of it."""
    torch.manual_seed(seed)
    theirs = nn.MultiheadAttention(embed_dim, num_heads, bias=bias, batch_first=True).to(dtype)
    if bias:  # PyTorch initialises the biases to 0, which would hide a bias copied wrongly
        with torch.no_grad():
            theirs.in_proj_bias.normal_()
            theirs.out_proj.bias.normal_()
    return theirs.eval(), ma.MultiHeadAttention.from_torch(theirs)


# --- split_heads / merge_heads ---------------------------------------------------------------


def test_split_heads_puts_consecutive_features_in_one_head():
    x = torch.arange(2 * 3 * 6.0).reshape(2, 3, 6)  # (B, N, H·D) with H = 3, D = 2
    heads = ma.split_heads(x, 3)
    assert heads.shape == (2, 3, 3, 2)  # (B, H, N, D)
    for h in range(3):
        torch.testing.assert_close(heads[:, h], x[..., 2 * h : 2 * h + 2])


@given(
    batch=st.lists(st.integers(1, 3), max_size=2),
    n=st.integers(1, 5),
    heads=st.integers(1, 4),
    head_dim=st.integers(1, 4),
)
def test_merge_heads_inverts_split_heads(batch, n, heads, head_dim):
    x = torch.randn(*batch, n, heads * head_dim)
    split = ma.split_heads(x, heads)
    assert split.shape == (*batch, heads, n, head_dim)
    assert torch.equal(ma.merge_heads(split), x)


def test_split_heads_refuses_an_indivisible_size():
    with pytest.raises(ValueError, match=r"\(2, 5, 6\).*num_heads=4"):
        ma.split_heads(torch.randn(2, 5, 6), 4)
    with pytest.raises(ValueError, match="num_heads must be a positive integer"):
        ma.split_heads(torch.randn(2, 5, 6), 0)
    with pytest.raises(ValueError, match="at least 3"):
        ma.merge_heads(torch.randn(5, 6))


# --- equality with torch.nn.MultiheadAttention ------------------------------------------------


def test_self_attention_equals_torch():
    theirs, ours = _torch_pair()
    x = torch.randn(3, 7, 16)
    expected, expected_weights = theirs(x, x, x)
    output, weights = ours(x, need_weights=True)
    torch.testing.assert_close(output, expected)
    assert weights.shape == (3, 4, 7, 7)
    # PyTorch averages the weights over the heads by default
    torch.testing.assert_close(weights.mean(dim=1), expected_weights)


def test_cross_attention_with_key_padding_equals_torch():
    theirs, ours = _torch_pair(24, 6, seed=1)
    query, key, value = torch.randn(2, 5, 24), torch.randn(2, 9, 24), torch.randn(2, 9, 24)
    lengths = torch.tensor([9, 4])
    key_padding_mask = torch.arange(9)[None, :] >= lengths[:, None]  # PyTorch: True = ignore
    expected, expected_weights = theirs(
        query, key, value, key_padding_mask=key_padding_mask, average_attn_weights=False
    )
    # ours: True = may attend, so the mask is the opposite, with a query axis
    output, weights = ours(query, key, value, mask=~key_padding_mask[:, None, :], need_weights=True)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(weights, expected_weights)  # per head, (B, H, L, S)
    assert torch.equal(weights[1, :, :, 4:], torch.zeros(6, 5, 5))
    # ma.padding_mask gives the same mask
    output2, _ = ours(query, key, value, mask=ma.padding_mask(lengths))
    torch.testing.assert_close(output2, expected)


def test_causal_and_per_head_masks_equal_torch_attn_mask():
    theirs, ours = _torch_pair(seed=2)
    x = torch.randn(2, 6, 16)
    allowed = ma.causal_mask(6)
    expected, _ = theirs(x, x, x, attn_mask=~allowed)  # PyTorch's attn_mask: True = masked
    torch.testing.assert_close(ours(x, causal=True)[0], expected)
    torch.testing.assert_close(ours(x, mask=allowed)[0], expected)
    # a 3-D attn_mask in PyTorch is (B·H, L, S); ours takes it as (B, H, L, S)
    per_head = torch.rand(2, 4, 6, 6, generator=torch.Generator().manual_seed(0)) > 0.4
    per_head[..., 0] = True
    expected, _ = theirs(x, x, x, attn_mask=~per_head.flatten(0, 1))
    torch.testing.assert_close(ours(x, mask=per_head)[0], expected)


def test_without_bias_and_sequence_first_module():
    torch.manual_seed(3)
    theirs = nn.MultiheadAttention(12, 3, bias=False).eval()  # batch_first=False
    ours = ma.MultiHeadAttention.from_torch(theirs)
    assert ours.q_proj.bias is None and ours.out_proj.bias is None
    x = torch.randn(4, 2, 12)  # (N, B, E) for PyTorch's default layout
    expected, _ = theirs(x, x, x)
    torch.testing.assert_close(ours(x.transpose(0, 1))[0], expected.transpose(0, 1))


def test_from_torch_copies_dtype_dropout_and_mode():
    theirs = nn.MultiheadAttention(8, 2, dropout=0.25, batch_first=True).double()
    ours = ma.MultiHeadAttention.from_torch(theirs)
    assert ours.q_proj.weight.dtype == torch.float64
    assert ours.dropout == 0.25 and ours.training
    assert not ma.MultiHeadAttention.from_torch(theirs.eval()).training


def test_from_torch_refuses_what_it_cannot_copy():
    with pytest.raises(TypeError, match=r"torch\.nn\.MultiheadAttention"):
        ma.MultiHeadAttention.from_torch(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="kdim=3"):
        ma.MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, kdim=3, vdim=3))
    with pytest.raises(ValueError, match="add_bias_kv"):
        ma.MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, add_bias_kv=True))


# --- grouped-query attention -------------------------------------------------------------------


def _gqa_reference(module, query, key, value, mask=None):
    """Grouped-query attention the plain way: copy each key/value head to its query heads."""
    group = module.num_heads // module.num_kv_heads
    q = ma.split_heads(module.q_proj(query), module.num_heads)  # (B, H, L, D)
    k = ma.split_heads(module.k_proj(key), module.num_kv_heads)  # (B, Hkv, S, D)
    v = ma.split_heads(module.v_proj(value), module.num_kv_heads)
    k = k.repeat_interleave(group, dim=1)  # (B, H, S, D): head h gets k/v head h // group
    v = v.repeat_interleave(group, dim=1)
    context = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return module.out_proj(ma.merge_heads(context))


@pytest.mark.parametrize("num_kv_heads", [1, 2, 4, 8])
def test_grouped_query_attention_equals_repeat_interleave_reference(num_kv_heads):
    torch.manual_seed(4)
    module = ma.MultiHeadAttention(32, 8, num_kv_heads=num_kv_heads).eval()
    assert module.k_proj.out_features == module.v_proj.out_features == num_kv_heads * 4
    query, key = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    mask = torch.rand(2, 1, 5, 7, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[..., 0] = True
    torch.testing.assert_close(
        module(query, key, mask=mask)[0], _gqa_reference(module, query, key, key, mask)
    )
    # a different mask for every head reaches the right head
    per_head = torch.rand(2, 8, 5, 7, generator=torch.Generator().manual_seed(2)) > 0.3
    per_head[..., 0] = True
    output, weights = module(query, key, mask=per_head, need_weights=True)
    torch.testing.assert_close(output, _gqa_reference(module, query, key, key, per_head))
    assert torch.equal(weights == 0, ~per_head)


_MASK_SHAPES = [(7,), (2, 1, 7), (5, 7), (2, 5, 7), (2, 1, 5, 7), (1, 8, 1, 7), (2, 8, 5, 7)]


@pytest.mark.parametrize("num_kv_heads", [1, 2, 8])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask_shape", [None, *_MASK_SHAPES])
def test_grouped_query_attention_with_every_mask_layout_and_causal(
    num_kv_heads, causal, mask_shape
):
    """The queries of a group are stacked as G·L rows: masks and the causal mask must follow."""
    torch.manual_seed(8)
    module = ma.MultiHeadAttention(32, 8, num_kv_heads=num_kv_heads).eval()
    query, key = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    mask = None
    if mask_shape is not None:
        mask = torch.rand(mask_shape, generator=torch.Generator().manual_seed(3)) > 0.3
        mask[..., 0] = True  # every query keeps a key: the reference would give NaN otherwise
    allowed = torch.ones(1, 1, 5, 7, dtype=torch.bool)  # (B, H, L, S) for the reference
    if mask is not None and mask.dim() == 4:
        allowed = allowed & mask  # one mask per head
    elif mask is not None:  # the same for every head: (B|1, L|1, S) -> (B|1, 1, L|1, S)
        allowed = allowed & mask.reshape((1,) * (3 - mask.dim()) + mask_shape).unsqueeze(1)
    if causal:
        allowed = allowed & ma.causal_mask(5, 7)
    output, weights = module(query, key, mask=mask, causal=causal, need_weights=True)
    torch.testing.assert_close(output, _gqa_reference(module, query, key, key, allowed))
    assert weights.shape == (2, 8, 5, 7)
    assert torch.equal(weights == 0, ~allowed.expand(2, 8, 5, 7))


def test_grouped_query_attention_never_repeats_keys_or_values():
    """No operation sees a key or value tensor repeated for the query heads of a group, and
    for one sequence K and V are not copied at all (with several sequences the matrix product
    gathers the head-split view of K into one block of K's size, as for ordinary multi-head
    attention)."""
    from torch.profiler import profile

    torch.manual_seed(9)
    module = ma.MultiHeadAttention(64, 8, num_kv_heads=2).eval()  # D = 8, groups of G = 4
    n_queries, n_keys = 5, 11  # L ≠ S ≠ D: a tensor of keys or values shows by its last sizes
    for batch in (1, 3):
        query, key = torch.randn(batch, n_queries, 64), torch.randn(batch, n_keys, 64)
        with profile(record_shapes=True) as prof, torch.no_grad():
            module(query, key, causal=True)
        kv_size = batch * module.num_kv_heads * n_keys * 8
        seen = [  # (operation, shape) of every input that holds keys or values
            (event.name, tuple(shape))
            for event in prof.events()
            for shape in event.input_shapes
            if len(shape) >= 4 and sorted(shape[-2:]) == [8, n_keys]
        ]
        assert seen, "the profile should show the keys and values"
        assert all(math.prod(shape) <= kv_size for _, shape in seen), seen  # never repeated
        copies = [shape for name, shape in seen if name == "aten::copy_"]
        assert len(copies) == (0 if batch == 1 else 4), seen  # copy_(dst, src): 2 per copy


def test_heads_of_one_group_share_keys():
    """With one key/value head and identical query heads, every head gives the same weights."""
    module = ma.MultiHeadAttention(8, 4, num_kv_heads=1)
    with torch.no_grad():
        module.q_proj.weight.copy_(module.q_proj.weight[:2].repeat(4, 1))
        module.q_proj.bias.copy_(module.q_proj.bias[:2].repeat(4))
    _, weights = module(torch.randn(1, 5, 8), need_weights=True)
    for h in range(1, 4):
        torch.testing.assert_close(weights[:, h], weights[:, 0])


def test_num_kv_heads_equal_num_heads_is_ordinary_attention():
    theirs, _ = _torch_pair(seed=5)
    ours = ma.MultiHeadAttention(16, 4, num_kv_heads=4)
    ours.load_state_dict(ma.MultiHeadAttention.from_torch(theirs).state_dict())
    x = torch.randn(2, 6, 16)
    torch.testing.assert_close(ours.eval()(x)[0], theirs(x, x, x)[0])


def test_parameter_count_shrinks_with_fewer_kv_heads():
    def count(m):
        return sum(p.numel() for p in m.parameters())

    full, grouped = ma.MultiHeadAttention(64, 8), ma.MultiHeadAttention(64, 8, num_kv_heads=2)
    # k_proj and v_proj go from 64 -> 64 to 64 -> 16 features (weights and biases)
    assert count(full) - count(grouped) == 2 * (64 * 48 + 48)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((10, 3), {}, "num_heads=3 must divide embed_dim=10"),
        ((16, 4), {"num_kv_heads": 3}, "num_kv_heads=3 must divide num_heads=4"),
        ((16, 0), {}, "num_heads must be a positive integer"),
        ((16, -4), {}, "num_heads must be a positive integer"),
        ((16, 4), {"num_kv_heads": 0}, "num_kv_heads must be a positive integer"),
        ((16, 4.0), {}, "num_heads must be a positive integer"),
        ((16, 4), {"num_kv_heads": 8}, "num_kv_heads=8 must divide num_heads=4"),
        ((0, 1), {}, "embed_dim must be a positive integer"),
        ((16, 4), {"dropout": 1.0}, "dropout must be in"),
    ],
)
def test_invalid_head_counts_raise(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ma.MultiHeadAttention(*args, **kwargs)


# --- behaviour ------------------------------------------------------------------------------


def test_gradients_in_float64():
    torch.manual_seed(6)
    module = ma.MultiHeadAttention(8, 4, num_kv_heads=2).double()
    query = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    key = torch.randn(2, 4, 8, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([True, True, True, False])
    assert torch.autograd.gradcheck(lambda q, k: module(q, k, mask=mask)[0], (query, key))


@given(st.permutations(range(6)))
def test_self_attention_is_permutation_equivariant(order):
    torch.manual_seed(7)
    module = ma.MultiHeadAttention(8, 2, num_kv_heads=1)
    x = torch.randn(2, 6, 8)
    order = torch.tensor(order)
    output, weights = module(x, need_weights=True)
    permuted, permuted_weights = module(x[:, order], need_weights=True)
    torch.testing.assert_close(permuted, output[:, order])
    torch.testing.assert_close(permuted_weights, weights[:, :, order][:, :, :, order])


def test_fully_masked_query_gives_the_output_bias_not_nan():
    module = ma.MultiHeadAttention(8, 2)
    mask = torch.ones(1, 3, 4, dtype=torch.bool)
    mask[0, 1] = False  # query 1 may attend to nothing
    output, weights = module(
        torch.randn(1, 3, 8), torch.randn(1, 4, 8), mask=mask, need_weights=True
    )
    assert torch.isfinite(output).all()
    assert torch.equal(weights[0, :, 1], torch.zeros(2, 4))
    torch.testing.assert_close(output[0, 1], module.out_proj.bias)


def test_weights_only_when_asked_and_dropout_only_in_training():
    module = ma.MultiHeadAttention(8, 2, dropout=0.5)
    x = torch.randn(2, 5, 8)
    assert module.eval()(x)[1] is None
    torch.testing.assert_close(module(x)[0], module(x)[0])
    module.train()
    torch.manual_seed(0)
    _, weights = module(x, need_weights=True)
    assert (weights == 0).any()  # some weights dropped, the others scaled by 2
    assert not torch.allclose(weights.sum(-1), torch.ones(2, 2, 5))


def test_key_defaults_to_query_and_value_to_key():
    module = ma.MultiHeadAttention(8, 2)
    x, y = torch.randn(1, 3, 8), torch.randn(1, 4, 8)
    torch.testing.assert_close(module(x)[0], module(x, x, x)[0])
    torch.testing.assert_close(module(x, y)[0], module(x, y, y)[0])


def test_bad_inputs_raise_clear_errors():
    module = ma.MultiHeadAttention(8, 2)
    x = torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match=r"query of shape \(2, 3, 6\) must have embed_dim=8"):
        module(torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match="query must have 3 dimension"):
        module(torch.randn(3, 8))
    with pytest.raises(ValueError, match="same batch size"):
        module(x, torch.randn(3, 4, 8))
    with pytest.raises(ValueError, match="same length S"):
        module(x, torch.randn(2, 4, 8), torch.randn(2, 5, 8))
    with pytest.raises(TypeError, match="boolean"):
        module(x, mask=torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"mask of shape \(2, 3, 4\) does not broadcast"):
        module(x, mask=torch.ones(2, 3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"does not broadcast to weights of shape \(2, 2, 3, 3\)"):
        module(x, mask=torch.ones(2, 3, 3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="floating-point"):
        module(torch.ones(2, 3, 8, dtype=torch.long))
