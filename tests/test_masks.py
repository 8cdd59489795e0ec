"""causal_mask and padding_mask: their values, PyTorch's conventions, clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import mini_attn as ma


@given(n_queries=st.integers(0, 9), n_keys=st.integers(0, 9))
def test_causal_mask_is_true_exactly_where_j_is_at_most_i(n_queries, n_keys):
    mask = ma.causal_mask(n_queries, n_keys)
    assert mask.dtype == torch.bool and mask.shape == (n_queries, n_keys)
    i = torch.arange(n_queries)[:, None]
    j = torch.arange(n_keys)[None, :]
    assert torch.equal(mask, j <= i)


def test_causal_mask_is_square_by_default():
    assert torch.equal(ma.causal_mask(4), ma.causal_mask(4, 4))
    assert ma.causal_mask(4).sum() == 4 * 5 // 2


@pytest.mark.parametrize("n_queries, n_keys", [(3, 3), (2, 5), (5, 2)])
def test_causal_mask_is_pytorchs_is_causal(n_queries, n_keys):
    """Top-left aligned, as PyTorch: the same output as is_causal=True, also for L ≠ S."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, n_queries, 4, generator=g)
    k = torch.randn(2, n_keys, 4, generator=g)
    v = torch.randn(2, n_keys, 3, generator=g)
    with_mask = F.scaled_dot_product_attention(q, k, v, attn_mask=ma.causal_mask(n_queries, n_keys))
    torch.testing.assert_close(with_mask, F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_causal_mask_device_argument():
    assert ma.causal_mask(2, device="cpu").device == torch.device("cpu")
    assert ma.causal_mask(2, device=torch.device("meta")).device.type == "meta"


def test_causal_mask_refuses_negative_sizes():
    with pytest.raises(ValueError, match="n_queries=-1, n_keys=3"):
        ma.causal_mask(-1, 3)


def test_padding_mask_values_and_shape():
    mask = ma.padding_mask(torch.tensor([3, 1, 0]))
    assert mask.dtype == torch.bool and mask.shape == (3, 1, 3)
    expected = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    assert torch.equal(mask[:, 0], expected)


def test_padding_mask_with_a_longer_max_length():
    mask = ma.padding_mask(torch.tensor([2, 4]), max_length=6)
    assert mask.shape == (2, 1, 6)
    assert mask[0, 0].tolist() == [True, True, False, False, False, False]


def test_padding_mask_is_the_opposite_of_key_padding_mask():
    """PyTorch's key_padding_mask is True for the keys to ignore: ours is its negation."""
    lengths = torch.tensor([5, 2, 3])
    key_padding_mask = torch.arange(5)[None, :] >= lengths[:, None]  # (B, S)
    assert torch.equal(ma.padding_mask(lengths), ~key_padding_mask[:, None, :])
    # and it gives the same attention as nn.MultiheadAttention with key_padding_mask
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(4, 1, batch_first=True, bias=False)
    x = torch.randn(3, 5, 4)
    expected, expected_weights = mha(x, x, x, key_padding_mask=key_padding_mask)
    q, k, v = F.linear(x, mha.in_proj_weight).chunk(3, dim=-1)
    output, weights = ma.scaled_dot_product_attention(q, k, v, mask=ma.padding_mask(lengths))
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(mha.out_proj(output), expected)


def test_padding_mask_broadcasts_against_batched_scores():
    lengths = torch.tensor([4, 2])
    scores = torch.randn(2, 3, 4)  # (B, L, S)
    weights = ma.masked_softmax(scores, ma.padding_mask(lengths))
    assert (weights[1, :, 2:] == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))


def test_padding_mask_bad_input():
    with pytest.raises(TypeError, match=r"integer tensor, got dtype torch\.float32"):
        ma.padding_mask(torch.tensor([2.0, 3.0]))
    with pytest.raises(TypeError, match=r"must be a torch\.Tensor, got list"):
        ma.padding_mask([2, 3])
    with pytest.raises(ValueError, match=r"1-D, shape \(B,\), got shape \(2, 1\)"):
        ma.padding_mask(torch.tensor([[2], [3]]))
    with pytest.raises(ValueError, match="non-negative"):
        ma.padding_mask(torch.tensor([2, -1]))
    with pytest.raises(
        ValueError, match=r"max_length=2 is shorter than the longest sequence \(length 3\)"
    ):
        ma.padding_mask(torch.tensor([1, 3]), max_length=2)


# --- offset (bottom-right alignment) and the sliding window (chapter 7) -----------------


@given(n_queries=st.integers(0, 9), n_keys=st.integers(0, 9), offset=st.integers(-10, 10))
def test_causal_mask_with_offset_is_true_exactly_where_j_is_at_most_i_plus_offset(
    n_queries, n_keys, offset
):
    mask = ma.causal_mask(n_queries, n_keys, offset=offset)
    i = torch.arange(n_queries)[:, None]
    j = torch.arange(n_keys)[None, :]
    assert mask.shape == (n_queries, n_keys) and torch.equal(mask, j <= i + offset)


@pytest.mark.parametrize("n_queries, n_keys", [(1, 1), (1, 7), (3, 7), (4, 4), (6, 9)])
def test_causal_mask_offset_s_minus_l_is_pytorchs_causal_lower_right(n_queries, n_keys):
    from torch.nn.attention.bias import causal_lower_right

    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 3, n_queries, 8, generator=g)
    k = torch.randn(2, 3, n_keys, 8, generator=g)
    v = torch.randn(2, 3, n_keys, 5, generator=g)
    ours = ma.causal_mask(n_queries, n_keys, offset=n_keys - n_queries)
    theirs = causal_lower_right(n_queries, n_keys)
    assert torch.equal(ours, theirs._materialize())
    torch.testing.assert_close(
        F.scaled_dot_product_attention(q, k, v, attn_mask=ours),
        F.scaled_dot_product_attention(q, k, v, attn_mask=theirs),
    )


@given(
    n_queries=st.integers(0, 9),
    n_keys=st.integers(0, 9),
    window=st.integers(1, 10),
    offset=st.integers(-3, 10),
)
def test_sliding_window_mask_is_the_definition(n_queries, n_keys, window, offset):
    mask = ma.sliding_window_mask(n_queries, n_keys, window=window, offset=offset)
    i = torch.arange(n_queries)[:, None]
    j = torch.arange(n_keys)[None, :]
    expected = (j <= i + offset) & (j > i + offset - window)
    assert mask.dtype == torch.bool and torch.equal(mask, expected)
    assert mask.numel() == 0 or int(mask.sum(-1).max()) <= window


def test_sliding_window_rows_see_window_keys_once_the_window_is_full():
    mask = ma.sliding_window_mask(8, window=3)
    assert mask.sum(-1).tolist() == [1, 2, 3, 3, 3, 3, 3, 3]
    assert torch.equal(ma.sliding_window_mask(5, window=5), ma.causal_mask(5))
    assert torch.equal(ma.sliding_window_mask(5, window=1), torch.eye(5, dtype=torch.bool))


def test_sliding_window_mask_with_window_larger_than_the_sequence_is_causal():
    for offset in (0, 2):
        assert torch.equal(
            ma.sliding_window_mask(3, 5, window=100, offset=offset),
            ma.causal_mask(3, 5, offset=offset),
        )


@pytest.mark.parametrize("window", [0, -2])
def test_sliding_window_mask_refuses_a_window_below_one(window):
    with pytest.raises(ValueError, match=f"window must be at least 1.*got {window}"):
        ma.sliding_window_mask(4, window=window)


@pytest.mark.parametrize("bad", [2.0, True, "3"])
def test_sliding_window_mask_refuses_a_non_integer_window(bad):
    with pytest.raises(TypeError, match="window must be an int"):
        ma.sliding_window_mask(4, window=bad)


@pytest.mark.parametrize("bad", [1.5, None])
def test_masks_refuse_a_non_integer_offset(bad):
    with pytest.raises(TypeError, match="offset must be an int"):
        ma.causal_mask(3, offset=bad)
    with pytest.raises(TypeError, match="offset must be an int"):
        ma.sliding_window_mask(3, window=2, offset=bad)


def test_sliding_window_mask_refuses_negative_sizes_and_needs_a_window():
    with pytest.raises(ValueError, match="n_queries=2, n_keys=-1"):
        ma.sliding_window_mask(2, -1, window=2)
    with pytest.raises(TypeError, match="window"):
        ma.sliding_window_mask(2)  # window is keyword-only and required
