"""scaled_dot_product_attention against PyTorch's: values, masks, broadcasting, gradients.

The reference is :func:`torch.nn.functional.scaled_dot_product_attention`, which returns no
weights: the weights are compared with the softmax of the masked, scaled scores.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import mini_attn as ma


def reference(query, key, value, *, mask=None, causal=False, scale=None):
    """PyTorch's output, and the weights softmax(scores) with masked keys at -inf."""
    batch = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    q = query.expand(*batch, *query.shape[-2:])
    k = key.expand(*batch, *key.shape[-2:])
    v = value.expand(*batch, *value.shape[-2:])
    allowed = mask
    if causal:
        future = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
        allowed = future if mask is None else mask & future
    if allowed is not None:  # PyTorch wants a mask of at least 2 dims: give it the full shape
        allowed = allowed.expand(*batch, q.shape[-2], k.shape[-2])
    output = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return output, torch.softmax(scores, dim=-1)


def randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def random_mask(*shape, seed=0, p=0.6):
    """A random boolean mask in which every query row keeps at least its first key."""
    mask = torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < p
    mask[..., 0] = True
    return mask


# ---------------------------------------------------------------------------- equality


@given(
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    n_queries=st.integers(1, 7),
    n_keys=st.integers(1, 7),
    dim=st.integers(1, 9),
    value_dim=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_equals_pytorch_on_random_shapes(batch, n_queries, n_keys, dim, value_dim, seed):
    q = randn(*batch, n_queries, dim, seed=seed)
    k = randn(*batch, n_keys, dim, seed=seed + 1)
    v = randn(*batch, n_keys, value_dim, seed=seed + 2)
    output, weights = ma.scaled_dot_product_attention(q, k, v)
    expected, expected_weights = reference(q, k, v)
    assert output.shape == (*batch, n_queries, value_dim)
    assert weights.shape == (*batch, n_queries, n_keys)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(weights, expected_weights)


def test_batch_dimensions_broadcast():
    q = randn(2, 1, 5, 4, seed=1)  # (B, 1, L, E): one query set per batch
    k = randn(1, 3, 6, 4, seed=2)  # (1, H, S, E): one key set per head
    v = randn(3, 6, 2, seed=3)  # (H, S, Ev): fewer dims, broadcasts from the left
    output, weights = ma.scaled_dot_product_attention(q, k, v)
    expected, expected_weights = reference(q, k, v)
    assert output.shape == (2, 3, 5, 2) and weights.shape == (2, 3, 5, 6)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(weights, expected_weights)


@pytest.mark.parametrize(
    "mask_shape",
    [(5, 6), (6,), (2, 1, 1, 6), (2, 3, 5, 6), (3, 5, 6), (5, 1)],
    ids=lambda s: "mask" + str(s),
)
def test_boolean_masks_of_every_broadcastable_shape(mask_shape):
    q, k, v = randn(2, 3, 5, 4, seed=1), randn(2, 3, 6, 4, seed=2), randn(2, 3, 6, 3, seed=3)
    mask = random_mask(*mask_shape, seed=4)
    if mask_shape == (5, 1):
        mask[:] = True  # a (L, 1) mask keeps or drops whole rows; keep them all here
    output, weights = ma.scaled_dot_product_attention(q, k, v, mask=mask)
    expected, expected_weights = reference(q, k, v, mask=mask)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(weights, expected_weights)
    assert (weights.masked_fill(mask, 0) == 0).all(), "a masked key got a non-zero weight"


def test_mask_with_more_batch_dimensions_than_the_inputs():
    q, k, v = randn(5, 4, seed=1), randn(6, 4, seed=2), randn(6, 3, seed=3)
    mask = random_mask(2, 5, 6, seed=4)  # (B, L, S), while the inputs have no batch dims
    with pytest.raises(ValueError, match=r"mask of shape \(2, 5, 6\).*\(5, 6\)"):
        ma.scaled_dot_product_attention(q, k, v, mask=mask)
    # with a batched value the mask is fine, and broadcasts over the unbatched q and k
    v = randn(2, 6, 3, seed=3)
    output, weights = ma.scaled_dot_product_attention(q, k, v, mask=mask)
    expected, expected_weights = reference(q, k, v, mask=mask)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(weights, expected_weights)


@pytest.mark.parametrize("n_queries, n_keys", [(4, 4), (3, 7), (7, 3), (1, 5), (5, 1)])
def test_causal_equals_pytorch_is_causal_also_when_lengths_differ(n_queries, n_keys):
    q, k, v = randn(2, n_queries, 8, seed=1), randn(2, n_keys, 8, seed=2), randn(2, n_keys, 3)
    output, weights = ma.scaled_dot_product_attention(q, k, v, causal=True)
    torch.testing.assert_close(output, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    torch.testing.assert_close(output, reference(q, k, v, causal=True)[0])
    future = ~torch.ones(n_queries, n_keys, dtype=torch.bool).tril()
    assert (weights[:, future] == 0).all(), "query i attended to a key j > i"


def test_causal_and_mask_combine_by_and():
    q, k, v = randn(2, 6, 4, seed=1), randn(2, 6, 4, seed=2), randn(2, 6, 3, seed=3)
    mask = random_mask(2, 1, 6, seed=5)
    output, weights = ma.scaled_dot_product_attention(q, k, v, mask=mask, causal=True)
    expected, expected_weights = reference(q, k, v, mask=mask, causal=True)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(weights, expected_weights)
    both = mask & ma.causal_mask(6)
    torch.testing.assert_close(
        output, ma.scaled_dot_product_attention(q, k, v, mask=both)[0], rtol=0, atol=0
    )


@pytest.mark.parametrize("scale", [0.01, 0.3, 1.0, 5.0])
def test_custom_scale_equals_pytorch(scale):
    q, k, v = randn(2, 3, 5, 8, seed=1), randn(2, 3, 6, 8, seed=2), randn(2, 3, 6, 4, seed=3)
    output, weights = ma.scaled_dot_product_attention(q, k, v, scale=scale)
    expected, expected_weights = reference(q, k, v, scale=scale)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(weights, expected_weights)


def test_default_scale_is_one_over_sqrt_of_the_query_size():
    q, k, v = randn(5, 16, seed=1), randn(6, 16, seed=2), randn(6, 3, seed=3)
    torch.testing.assert_close(
        ma.scaled_dot_product_attention(q, k, v)[0],
        ma.scaled_dot_product_attention(q, k, v, scale=0.25)[0],
    )


def test_non_contiguous_inputs():
    base = randn(2, 7, 3, 8, seed=1)  # (B, N, H, E), as a projection produces it
    q = base.transpose(1, 2)  # (B, H, N, E), a transposed view
    k = randn(2, 3, 14, 8, seed=2)[:, :, ::2]  # every second key: a strided view
    v = randn(2, 3, 4, 7, seed=3).transpose(-2, -1)  # (B, H, S=7, Ev=4)
    mask = (random_mask(7, 7, seed=4) | torch.eye(7, dtype=torch.bool)).T  # transposed (L, S)
    assert not (q.is_contiguous() or k.is_contiguous() or v.is_contiguous())
    assert not mask.is_contiguous()
    output, weights = ma.scaled_dot_product_attention(q, k, v, mask=mask)
    expected, expected_weights = reference(
        q.contiguous(), k.contiguous(), v.contiguous(), mask=mask
    )
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(weights, expected_weights)


def test_inputs_are_not_modified():
    q, k, v = randn(3, 4, seed=1), randn(5, 4, seed=2), randn(5, 2, seed=3)
    mask = random_mask(3, 5)
    copies = [t.clone() for t in (q, k, v, mask)]
    ma.scaled_dot_product_attention(q, k, v, mask=mask, causal=True, scale=2.0)
    for before, after in zip(copies, (q, k, v, mask), strict=True):
        assert torch.equal(before, after)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_keeps_its_dtype_and_is_close_to_float32(dtype):
    q, k, v = randn(2, 6, 16, seed=1), randn(2, 6, 16, seed=2), randn(2, 6, 4, seed=3)
    output, weights = ma.scaled_dot_product_attention(q.to(dtype), k.to(dtype), v.to(dtype))
    assert output.dtype == dtype and weights.dtype == dtype
    expected, expected_weights = ma.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(output.float(), expected, atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(weights.float(), expected_weights, atol=1e-2, rtol=3e-2)


def test_large_scores_give_no_nan():
    q, k, v = 1e3 * randn(4, 8, seed=1), 1e3 * randn(5, 8, seed=2), randn(5, 3, seed=3)
    output, weights = ma.scaled_dot_product_attention(q, k, v)
    assert torch.isfinite(output).all() and torch.isfinite(weights).all()
    torch.testing.assert_close(output, reference(q, k, v)[0])


# --------------------------------------------------------------------- fully masked rows


def test_a_fully_masked_row_gives_a_zero_output_row_and_zero_gradients():
    q = randn(2, 4, 3, dtype=torch.float64, seed=1).requires_grad_()
    k = randn(2, 5, 3, dtype=torch.float64, seed=2).requires_grad_()
    v = randn(2, 5, 2, dtype=torch.float64, seed=3).requires_grad_()
    mask = random_mask(2, 4, 5, seed=4)
    mask[0, 2] = False  # query 2 of batch 0 may attend to nothing
    output, weights = ma.scaled_dot_product_attention(q, k, v, mask=mask)
    assert (output[0, 2] == 0).all() and (weights[0, 2] == 0).all()
    assert torch.isfinite(output).all() and torch.isfinite(weights).all()
    # every other row is a normal softmax
    rows = weights.sum(-1)
    assert torch.allclose(rows[mask.any(-1)], torch.ones((), dtype=rows.dtype), atol=1e-12)
    (output.sum() + weights.square().sum()).backward()
    for name, t in (("query", q), ("key", k), ("value", v)):
        assert torch.isfinite(t.grad).all(), f"NaN in the gradient of {name}"
    assert (q.grad[0, 2] == 0).all(), "the fully masked query should get no gradient"
    # the other rows equal PyTorch's
    keep = mask.any(-1)
    torch.testing.assert_close(output[keep], reference(q, k, v, mask=mask)[0][keep])


def test_a_fully_masked_row_from_padding_every_key():
    q, k, v = randn(3, 4, 8, seed=1), randn(3, 6, 8, seed=2), randn(3, 6, 2, seed=3)
    mask = ma.padding_mask(torch.tensor([6, 0, 2]))  # the second sequence has no keys at all
    output, weights = ma.scaled_dot_product_attention(q, k, v, mask=mask)
    assert (output[1] == 0).all() and (weights[1] == 0).all()
    assert (weights[2, :, 2:] == 0).all(), "padded keys got weight"
    torch.testing.assert_close(output[[0, 2]], reference(q, k, v, mask=mask)[0][[0, 2]])


# ---------------------------------------------------------------------------- gradients


def test_float64_gradients_equal_pytorchs():
    shapes = {"q": (2, 3, 5, 4), "k": (2, 3, 6, 4), "v": (2, 3, 6, 3)}
    mask = random_mask(2, 1, 5, 6, seed=7)
    for causal in (False, True):
        ours = {
            n: randn(*s, dtype=torch.float64, seed=i) for i, (n, s) in enumerate(shapes.items())
        }
        theirs = {n: t.clone() for n, t in ours.items()}
        for t in (*ours.values(), *theirs.values()):
            t.requires_grad_()
        upstream = randn(2, 3, 5, 3, dtype=torch.float64, seed=9)
        out, _ = ma.scaled_dot_product_attention(
            ours["q"], ours["k"], ours["v"], mask=mask, causal=causal, scale=0.7
        )
        allowed = mask & torch.ones(5, 6, dtype=torch.bool).tril() if causal else mask
        expected = F.scaled_dot_product_attention(
            theirs["q"], theirs["k"], theirs["v"], attn_mask=allowed, scale=0.7
        )
        (out * upstream).sum().backward()
        (expected * upstream).sum().backward()
        for name in shapes:
            torch.testing.assert_close(ours[name].grad, theirs[name].grad, rtol=1e-10, atol=1e-12)


def test_gradcheck_with_mask_and_causal():
    q = randn(2, 4, 3, dtype=torch.float64, seed=1).requires_grad_()
    k = randn(2, 5, 3, dtype=torch.float64, seed=2).requires_grad_()
    v = randn(2, 5, 2, dtype=torch.float64, seed=3).requires_grad_()
    mask = random_mask(2, 4, 5, seed=4)
    mask[1, 3] = False  # one fully masked row: its gradient must be (and stay) zero

    def output_and_weights(q, k, v):
        return ma.scaled_dot_product_attention(q, k, v, mask=mask, causal=True, scale=0.8)

    assert torch.autograd.gradcheck(output_and_weights, (q, k, v))


# ---------------------------------------------------------------------------- properties


@given(
    n_queries=st.integers(1, 6),
    n_keys=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_permuting_keys_and_values_together_changes_nothing(n_queries, n_keys, seed, data):
    """The keys form a set: shuffle them with their values and the output is the same."""
    perm = torch.tensor(data.draw(st.permutations(range(n_keys))))
    q = randn(2, n_queries, 4, dtype=torch.float64, seed=seed)
    k = randn(2, n_keys, 4, dtype=torch.float64, seed=seed + 1)
    v = randn(2, n_keys, 3, dtype=torch.float64, seed=seed + 2)
    mask = random_mask(2, n_queries, n_keys, seed=seed + 3)
    output, weights = ma.scaled_dot_product_attention(q, k, v, mask=mask)
    output_p, weights_p = ma.scaled_dot_product_attention(
        q, k[:, perm], v[:, perm], mask=mask[..., perm]
    )
    torch.testing.assert_close(output_p, output)
    torch.testing.assert_close(weights_p, weights[..., perm])


@given(n=st.integers(1, 8), seed=st.integers(0, 2**16), data=st.data())
def test_self_attention_without_positions_is_permutation_equivariant(n, seed, data):
    """q = k = v = x: permuting the positions of x permutes the output rows the same way."""
    perm = torch.tensor(data.draw(st.permutations(range(n))))
    x = randn(3, n, 5, dtype=torch.float64, seed=seed)
    output, weights = ma.scaled_dot_product_attention(x, x, x)
    output_p, weights_p = ma.scaled_dot_product_attention(x[:, perm], x[:, perm], x[:, perm])
    torch.testing.assert_close(output_p, output[:, perm])
    torch.testing.assert_close(weights_p, weights[:, perm][:, :, perm])


@given(
    n_queries=st.integers(1, 6),
    n_keys=st.integers(1, 6),
    scale=st.floats(0.01, 10.0),
    seed=st.integers(0, 2**16),
)
def test_weights_are_a_distribution_over_the_allowed_keys(n_queries, n_keys, scale, seed):
    q, k, v = randn(n_queries, 4, seed=seed), randn(n_keys, 4, seed=seed + 1), randn(n_keys, 2)
    mask = torch.rand(n_queries, n_keys, generator=torch.Generator().manual_seed(seed)) < 0.5
    _, weights = ma.scaled_dot_product_attention(q, k, v, mask=mask, scale=scale)
    assert (weights >= 0).all() and (weights[~mask] == 0).all()
    sums = weights.sum(-1)
    expected = mask.any(-1).float()  # 1 for a row with an allowed key, 0 for a fully masked one
    torch.testing.assert_close(sums, expected)


# ------------------------------------------------------------------------------ dropout


def test_dropout_zeroes_weights_and_rescales_the_rest():
    q, k, v = randn(2, 50, 8, seed=1), randn(2, 60, 8, seed=2), randn(2, 60, 3, seed=3)
    _, plain = ma.scaled_dot_product_attention(q, k, v)
    torch.manual_seed(0)
    _, dropped = ma.scaled_dot_product_attention(q, k, v, dropout_p=0.25)
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], plain[kept] / 0.75)
    assert 0.2 < 1 - kept.float().mean().item() < 0.3


# --------------------------------------------------------------------------- bad input


def test_query_and_key_sizes_must_match_and_the_error_names_both_shapes():
    q, k, v = randn(2, 3, 4), randn(2, 5, 6), randn(2, 5, 6)
    with pytest.raises(ValueError, match=r"query \(2, 3, 4\) and key \(2, 5, 6\)"):
        ma.scaled_dot_product_attention(q, k, v)


def test_key_and_value_lengths_must_match_and_the_error_names_both_shapes():
    q, k, v = randn(2, 3, 4), randn(2, 5, 4), randn(2, 6, 4)
    with pytest.raises(ValueError, match=r"key \(2, 5, 4\) and value \(2, 6, 4\)"):
        ma.scaled_dot_product_attention(q, k, v)


def test_batch_dimensions_that_do_not_broadcast_are_named():
    q, k, v = randn(2, 3, 4), randn(3, 5, 4), randn(3, 5, 4)
    with pytest.raises(ValueError, match=r"query \(2, 3, 4\), key \(3, 5, 4\)"):
        ma.scaled_dot_product_attention(q, k, v)


def test_a_mask_that_does_not_broadcast_is_named_with_the_scores_shape():
    q, k, v = randn(2, 3, 4), randn(2, 5, 4), randn(2, 5, 4)
    with pytest.raises(ValueError, match=r"mask of shape \(3, 4\).*scores of shape \(2, 3, 5\)"):
        ma.scaled_dot_product_attention(q, k, v, mask=torch.ones(3, 4, dtype=torch.bool))


def test_float_masks_are_refused_with_a_type_error():
    q, k, v = randn(3, 4), randn(5, 4), randn(5, 4)
    additive = torch.zeros(3, 5).masked_fill(~random_mask(3, 5), float("-inf"))
    with pytest.raises(TypeError, match=r"boolean.*float32.*mask == 0"):
        ma.scaled_dot_product_attention(q, k, v, mask=additive)
    with pytest.raises(TypeError, match="boolean"):
        ma.scaled_dot_product_attention(q, k, v, mask=torch.ones(3, 5, dtype=torch.int64))


def test_other_bad_input():
    q = randn(3, 4)
    with pytest.raises(TypeError, match="query must be a floating-point tensor"):
        ma.scaled_dot_product_attention(q.long(), q, q)
    with pytest.raises(TypeError, match=r"key must be a torch\.Tensor"):
        ma.scaled_dot_product_attention(q, q.numpy(), q)
    with pytest.raises(
        ValueError, match=r"value must have at least 2 dimension\(s\), got shape \(4,\)"
    ):
        ma.scaled_dot_product_attention(q, q, q[0])
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\)"):
        ma.scaled_dot_product_attention(q, q, q, dropout_p=1.0)
