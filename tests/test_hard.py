"""Hard attention: argmax, sampled (REINFORCE), Gumbel-softmax and top-k attention."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import mini_attn as ma

G = torch.Generator().manual_seed(0)


def _scores_values(*batch, n_queries=3, n_keys=5, ev=2, dtype=torch.float32):
    scores = torch.randn(*batch, n_queries, n_keys, generator=G, dtype=dtype)
    values = torch.randn(*batch, n_keys, ev, generator=G, dtype=dtype)
    return scores, values


def _frequency_tolerance(probs: torch.Tensor, n: int) -> torch.Tensor:
    """Five standard deviations of a binomial frequency: fails by chance about once in 10⁶."""
    return 5 * torch.sqrt(probs * (1 - probs) / n) + 1e-3


# hard (argmax) attention ----------------------------------------------------------------


def test_hard_attention_returns_the_value_of_the_argmax():
    scores, values = _scores_values(2)
    context, index = ma.hard_attention(scores, values)
    assert index.shape == (2, 3) and index.dtype == torch.int64
    torch.testing.assert_close(index, scores.argmax(dim=-1))
    expected = torch.stack([values[b, index[b]] for b in range(2)])  # (2, 3, Ev)
    torch.testing.assert_close(context, expected)


def test_hard_attention_never_chooses_a_masked_key():
    scores = torch.tensor([[5.0, 1.0, 2.0, 0.0]])
    values = torch.arange(4.0)[:, None]  # (4, 1): value j is j
    mask = torch.tensor([[False, True, True, True]])  # the best key is masked
    context, index = ma.hard_attention(scores, values, mask=mask)
    assert index.item() == 2
    assert context.item() == 2.0


def test_hard_attention_fully_masked_row_chooses_nothing():
    scores, values = _scores_values()
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False
    context, index = ma.hard_attention(scores, values, mask=mask)
    assert index[1].item() == -1
    assert torch.equal(context[1], torch.zeros(2))
    torch.testing.assert_close(index[[0, 2]], scores[[0, 2]].argmax(-1))


def test_hard_attention_passes_no_gradient_to_the_scores():
    scores, values = _scores_values()
    scores.requires_grad_(True)
    values.requires_grad_(True)
    context, index = ma.hard_attention(scores, values)
    grad_scores, grad_values = torch.autograd.grad(
        context.sum(), (scores, values), allow_unused=True
    )
    assert grad_scores is None  # the argmax is not part of the graph
    # each chosen value gets a gradient of 1 per query that chose it
    counts = torch.zeros(5).index_add_(0, index, torch.ones(3))
    torch.testing.assert_close(grad_values, counts[:, None].expand(5, 2))


@given(
    st.integers(1, 3), st.integers(1, 4), st.integers(1, 6), st.integers(0, 10_000), st.booleans()
)
def test_hard_attention_property(batch, n_queries, n_keys, seed, use_mask):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, n_queries, n_keys, generator=g)
    values = torch.randn(batch, n_keys, 3, generator=g)
    mask = torch.rand(batch, n_queries, n_keys, generator=g) > 0.4 if use_mask else None
    context, index = ma.hard_attention(scores, values, mask=mask)
    allowed = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask
    for b in range(batch):
        for q in range(n_queries):
            i = index[b, q].item()
            if not allowed[b, q].any():
                assert i == -1 and not context[b, q].any()
                continue
            assert allowed[b, q, i], "a masked key was chosen"
            assert scores[b, q, i] == scores[b, q][allowed[b, q]].max()
            torch.testing.assert_close(context[b, q], values[b, i])


def test_hard_attention_broadcasts_batch_dimensions():
    scores = torch.randn(2, 3, 4, 5, generator=G)
    values = torch.randn(5, 6, generator=G)  # shared by every batch element
    context, index = ma.hard_attention(scores, values)
    assert context.shape == (2, 3, 4, 6) and index.shape == (2, 3, 4)
    torch.testing.assert_close(context, values[index])


# sampled attention (REINFORCE) -----------------------------------------------------------


def test_sample_frequencies_match_the_softmax():
    n = 20_000
    scores = torch.tensor([1.0, 0.0, 2.0, -1.0, 0.5])
    probs = torch.softmax(scores, dim=-1)
    values = torch.eye(5)
    g = torch.Generator().manual_seed(1)
    _, index, _ = ma.sample_attention(scores.expand(n, 1, 5), values, generator=g)
    freq = torch.bincount(index.flatten(), minlength=5).float() / n
    assert ((freq - probs).abs() <= _frequency_tolerance(probs, n)).all(), (freq, probs)


def test_sample_never_draws_a_masked_key_and_renormalises():
    n = 20_000
    scores = torch.tensor([3.0, 0.0, 1.0, 0.5])
    mask = torch.tensor([False, True, True, False])
    g = torch.Generator().manual_seed(2)
    _, index, _ = ma.sample_attention(scores.expand(n, 1, 4), torch.eye(4), mask=mask, generator=g)
    freq = torch.bincount(index.flatten(), minlength=4).float() / n
    assert freq[0] == 0 and freq[3] == 0
    probs = ma.masked_softmax(scores, mask)
    assert ((freq - probs).abs() <= _frequency_tolerance(probs, n)).all(), (freq, probs)


def test_sample_context_is_the_drawn_value_and_log_prob_is_log_softmax():
    scores, values = _scores_values(4)
    context, index, log_prob = ma.sample_attention(scores, values, generator=G)
    expected = torch.stack([values[b, index[b]] for b in range(4)])
    torch.testing.assert_close(context, expected)
    log_softmax = torch.log_softmax(scores, dim=-1)
    torch.testing.assert_close(log_prob, log_softmax.gather(-1, index[..., None]).squeeze(-1))


def test_log_prob_gradient_is_one_hot_minus_probabilities():
    scores, values = _scores_values(4, dtype=torch.float64)
    scores.requires_grad_(True)
    _, index, log_prob = ma.sample_attention(scores, values, generator=G)
    (grad,) = torch.autograd.grad(log_prob.sum(), scores)  # each log p depends on its own row
    one_hot = torch.nn.functional.one_hot(index, 5).double()
    torch.testing.assert_close(grad, one_hot - torch.softmax(scores.detach(), dim=-1))


def test_log_prob_gradcheck_float64_with_mask():
    scores, values = _scores_values(2, dtype=torch.float64)
    scores.requires_grad_(True)
    mask = torch.rand(2, 3, 5, generator=G) > 0.3
    mask[..., 0] = True

    def log_prob(s):  # the same draw every call: the generator is seeded inside
        g = torch.Generator().manual_seed(3)
        return ma.sample_attention(s, values, mask=mask, generator=g)[2]

    assert torch.autograd.gradcheck(log_prob, (scores,))


def test_sample_fully_masked_row_is_finite():
    scores, values = _scores_values()
    scores.requires_grad_(True)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[0] = False
    context, index, log_prob = ma.sample_attention(scores, values, mask=mask, generator=G)
    assert index[0].item() == -1 and log_prob[0].item() == 0.0
    assert not context[0].any()
    (grad,) = torch.autograd.grad(log_prob.sum(), scores)
    assert torch.isfinite(grad).all() and not grad[0].any()


def test_sample_is_reproducible_with_a_generator():
    scores, values = _scores_values(8)
    first = ma.sample_attention(scores, values, generator=torch.Generator().manual_seed(5))[1]
    again = ma.sample_attention(scores, values, generator=torch.Generator().manual_seed(5))[1]
    assert torch.equal(first, again)


def test_reinforce_estimate_is_unbiased():
    """The average of (r_i · ∇ log p_i) over many draws is the exact gradient of E[r]."""
    n = 50_000
    scores = torch.tensor([0.5, -1.0, 1.5, 0.0])
    rewards = torch.tensor([1.0, 4.0, 2.0, -3.0])
    probs = torch.softmax(scores, dim=-1)
    exact = probs * (rewards - (probs * rewards).sum())  # ∂/∂s_j Σ_i p_i r_i
    leaf = scores.expand(n, 1, 4).clone().requires_grad_(True)
    g = torch.Generator().manual_seed(6)
    _, index, log_prob = ma.sample_attention(leaf, torch.eye(4), generator=g)
    (grad,) = torch.autograd.grad((rewards[index] * log_prob).sum(), leaf)
    estimate = grad.mean(dim=(0, 1))
    spread = grad.squeeze(1).std(dim=0) / math.sqrt(n)
    assert ((estimate - exact).abs() <= 5 * spread).all(), (estimate, exact)


# Gumbel-softmax attention ----------------------------------------------------------------


@pytest.mark.parametrize("hard", [True, False])
@pytest.mark.parametrize("tau", [0.3, 1.0, 2.0])
def test_gumbel_equals_torch_gumbel_softmax(hard, tau):
    scores, values = _scores_values(2)
    torch.manual_seed(7)
    context, weights = ma.gumbel_softmax_attention(scores, values, tau=tau, hard=hard)
    torch.manual_seed(7)
    expected = torch.nn.functional.gumbel_softmax(scores, tau=tau, hard=hard)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(context, expected @ values)


def test_gumbel_hard_weights_are_one_hot_with_a_nonzero_gradient():
    scores, values = _scores_values(4)
    scores.requires_grad_(True)
    context, weights = ma.gumbel_softmax_attention(scores, values, generator=G)
    assert torch.equal(weights.detach(), weights.detach().round())  # only 0s and 1s
    torch.testing.assert_close(weights.detach().sum(-1), torch.ones(4, 3))
    (grad,) = torch.autograd.grad((context * torch.randn_like(context)).sum(), scores)
    assert torch.isfinite(grad).all() and (grad.abs().sum(-1) > 0).all()


def test_gumbel_straight_through_gradient_is_the_relaxed_gradient():
    scores, values = _scores_values(dtype=torch.float64)
    scores.requires_grad_(True)
    upstream = torch.randn(3, 2, generator=G, dtype=torch.float64)
    hard, _ = ma.gumbel_softmax_attention(
        scores, values, hard=True, generator=torch.Generator().manual_seed(8)
    )
    soft, _ = ma.gumbel_softmax_attention(
        scores, values, hard=False, generator=torch.Generator().manual_seed(8)
    )
    (grad_hard,) = torch.autograd.grad((hard * upstream).sum(), scores)
    (grad_soft,) = torch.autograd.grad((soft * upstream).sum(), scores)
    torch.testing.assert_close(grad_hard, grad_soft)


def test_gumbel_soft_gradcheck_float64():
    scores, values = _scores_values(dtype=torch.float64)
    scores.requires_grad_(True)

    def context(s):
        g = torch.Generator().manual_seed(9)
        return ma.gumbel_softmax_attention(s, values, tau=0.7, hard=False, generator=g)[0]

    assert torch.autograd.gradcheck(context, (scores,))


def test_gumbel_draws_follow_the_softmax_and_avoid_masked_keys():
    n = 20_000
    scores = torch.tensor([1.0, 2.0, 0.0, 3.0, -0.5])
    mask = torch.tensor([True, True, True, False, True])  # the best key is masked
    g = torch.Generator().manual_seed(10)
    _, weights = ma.gumbel_softmax_attention(
        scores.expand(n, 1, 5), torch.eye(5), mask=mask, generator=g
    )
    freq = weights.detach().sum(dim=(0, 1)) / n
    assert freq[3] == 0
    probs = ma.masked_softmax(scores, mask)
    assert ((freq - probs).abs() <= _frequency_tolerance(probs, n)).all(), (freq, probs)


def test_gumbel_low_temperature_relaxed_weights_are_almost_one_hot():
    scores, values = _scores_values(8)
    _, weights = ma.gumbel_softmax_attention(scores, values, tau=0.01, hard=False, generator=G)
    assert (weights.max(dim=-1).values > 0.99).float().mean() > 0.95


def test_gumbel_fully_masked_row_is_zero():
    scores, values = _scores_values()
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[2] = False
    for hard in (True, False):
        context, weights = ma.gumbel_softmax_attention(
            scores, values, hard=hard, mask=mask, generator=G
        )
        assert not weights[2].any() and not context[2].any()
        assert torch.isfinite(weights).all()


# top-k attention ------------------------------------------------------------------------


def _topk_reference(scores, values, k):
    top = scores.topk(k, dim=-1)
    weights = torch.zeros_like(scores).scatter(-1, top.indices, torch.softmax(top.values, -1))
    return weights @ values, weights


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_topk_is_a_softmax_over_the_k_best(k):
    scores, values = _scores_values(2)
    context, weights = ma.topk_attention(scores, values, k)
    expected_context, expected_weights = _topk_reference(scores, values, k)
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(context, expected_context)
    assert ((weights > 0).sum(-1) == k).all()


def test_topk_extremes_are_hard_and_soft_attention():
    scores, values = _scores_values(2)
    context_1, _ = ma.topk_attention(scores, values, 1)
    torch.testing.assert_close(context_1, ma.hard_attention(scores, values)[0])
    context_s, weights_s = ma.topk_attention(scores, values, 5)
    torch.testing.assert_close(weights_s, torch.softmax(scores, dim=-1))
    torch.testing.assert_close(context_s, torch.softmax(scores, dim=-1) @ values)


def test_topk_with_a_mask_keeps_only_allowed_keys():
    scores = torch.tensor([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    mask = torch.tensor(
        [[False, True, True, True], [False, False, False, True], [False, False, False, False]]
    )
    _, weights = ma.topk_attention(scores, torch.eye(4), 2, mask=mask)
    two_best = torch.softmax(torch.tensor([3.0, 2.0]), dim=0)  # keys 1 and 2; key 0 is masked
    torch.testing.assert_close(weights[0], torch.tensor([0.0, *two_best, 0.0]))
    torch.testing.assert_close(weights[1], torch.tensor([0.0, 0.0, 0.0, 1.0]))  # one key allowed
    assert not weights[2].any()  # every key masked


@given(st.integers(1, 6), st.integers(0, 10_000), st.data())
def test_topk_property(n_keys, seed, data):
    k = data.draw(st.integers(1, n_keys))
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(2, 3, n_keys, generator=g)
    mask = torch.rand(2, 3, n_keys, generator=g) > 0.3
    _, weights = ma.topk_attention(scores, torch.eye(n_keys), k, mask=mask)
    assert ((weights > 0).sum(-1) <= k).all()
    assert not weights.masked_select(~mask).any()
    sums = weights.sum(-1)
    has_key = mask.any(-1)
    torch.testing.assert_close(sums[has_key], torch.ones_like(sums[has_key]))
    assert not sums[~has_key].any()


def test_topk_gradcheck_float64():
    scores, values = _scores_values(dtype=torch.float64)
    scores.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: ma.topk_attention(s, values, 3)[0], (scores,))


# errors ---------------------------------------------------------------------------------

FUNCTIONS = {
    "hard": lambda s, v, **kw: ma.hard_attention(s, v, **kw),
    "sample": lambda s, v, **kw: ma.sample_attention(s, v, **kw),
    "gumbel": lambda s, v, **kw: ma.gumbel_softmax_attention(s, v, **kw),
    "topk": lambda s, v, **kw: ma.topk_attention(s, v, 2, **kw),
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_clear_errors(name):
    fn = FUNCTIONS[name]
    scores, values = _scores_values()
    with pytest.raises(ValueError, match=r"scores \(3, 5\) and values \(4, 2\)"):
        fn(scores, values[:4])
    with pytest.raises(TypeError, match="boolean"):
        fn(scores, values, mask=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="does not broadcast"):
        fn(scores, values, mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="floating-point"):
        fn(scores.long(), values)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        fn(scores.tolist(), values)


def test_clear_errors_for_options():
    scores, values = _scores_values()
    with pytest.raises(ValueError, match="tau must be positive"):
        ma.gumbel_softmax_attention(scores, values, tau=0.0)
    for k in (0, 6, 2.0, True):
        with pytest.raises(ValueError, match=r"k must be an integer in \[1, S=5\]"):
            ma.topk_attention(scores, values, k)
