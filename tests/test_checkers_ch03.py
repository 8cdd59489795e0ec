"""The checkers of chapter 3 catch plausible wrong answers and say what is wrong.

The reference solutions are run by test_exercises.py, from the chapter itself; the
correct answers below are a second, independent check that the checkers accept them.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from mini_attn.exercises import (
    CheckFailed,
    check_gumbel_max_sample,
    check_hard_weights,
    check_reinforce_gradient,
    check_topk_weights,
)

# --- exercise 3.1: one-hot hard attention weights ------------------------------------------


def hard_weights(scores, mask=None):
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = F.one_hot(scores.argmax(-1), scores.shape[-1]).to(scores.dtype)
    if mask is not None:
        weights = weights * mask.expand(scores.shape).any(-1, keepdim=True)
    return weights


def hard_weights_ignoring_mask(scores, mask=None):
    return F.one_hot(scores.argmax(-1), scores.shape[-1]).float()


def hard_weights_inverted_mask(scores, mask=None):
    return hard_weights(scores, None if mask is None else ~mask)


def hard_weights_no_empty_rows(scores, mask=None):
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return F.one_hot(scores.argmax(-1), scores.shape[-1]).float()  # a row of -inf picks key 0


def hard_weights_softmax(scores, mask=None):
    return torch.softmax(scores if mask is None else scores.masked_fill(~mask, -1e9), dim=-1)


def hard_weights_argmin(scores, mask=None):
    return hard_weights(-scores, mask)


def test_hard_weights_accepts_a_correct_answer(capsys):
    check_hard_weights(hard_weights)
    assert "✓ hard_weights" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (hard_weights_ignoring_mask, "masked keys .* must never be chosen"),
        (hard_weights_inverted_mask, "inverted"),
        (hard_weights_no_empty_rows, "every key masked must get all zeros"),
        (hard_weights_softmax, "0 or 1"),
        (hard_weights_argmin, "smallest score"),
    ],
)
def test_hard_weights_rejects_wrong_answers(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_hard_weights(fn)


# --- exercise 3.2: the REINFORCE estimate --------------------------------------------------


def reinforce_gradient(scores, index, loss, baseline):
    one_hot = F.one_hot(index, scores.shape[-1]).to(scores.dtype)
    advantage = torch.as_tensor(loss - baseline, dtype=scores.dtype)
    return advantage[..., None] * (one_hot - torch.softmax(scores, -1))


def reinforce_with_autograd(scores, index, loss, baseline):
    scores = scores.clone().requires_grad_(True)
    log_prob = torch.log_softmax(scores, -1).gather(-1, index[..., None]).squeeze(-1)
    advantage = torch.as_tensor(loss - baseline, dtype=scores.dtype)
    return torch.autograd.grad((advantage * log_prob).sum(), scores)[0]


def reinforce_sign_flipped(scores, index, loss, baseline):
    return -reinforce_gradient(scores, index, loss, baseline)


def reinforce_no_baseline(scores, index, loss, baseline):
    return reinforce_gradient(scores, index, loss, 0.0)


def reinforce_one_hot_only(scores, index, loss, baseline):
    one_hot = F.one_hot(index, scores.shape[-1]).to(scores.dtype)
    return torch.as_tensor(loss - baseline, dtype=scores.dtype)[..., None] * one_hot


def reinforce_naive_softmax(scores, index, loss, baseline):
    probs = torch.exp(scores) / torch.exp(scores).sum(-1, keepdim=True)  # overflows
    one_hot = F.one_hot(index, scores.shape[-1]).to(scores.dtype)
    return torch.as_tensor(loss - baseline, dtype=scores.dtype)[..., None] * (one_hot - probs)


@pytest.mark.parametrize("fn", [reinforce_gradient, reinforce_with_autograd])
def test_reinforce_accepts_correct_answers(fn, capsys):
    check_reinforce_gradient(fn)
    assert "✓ reinforce_gradient" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (reinforce_sign_flipped, "sign is flipped"),
        (reinforce_no_baseline, "subtract the baseline"),
        (reinforce_one_hot_only, "subtract the probabilities"),
        (reinforce_naive_softmax, "NaN"),
    ],
)
def test_reinforce_rejects_wrong_answers(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_reinforce_gradient(fn)


# --- exercise 3.3: sampling with the Gumbel-max trick --------------------------------------


def gumbel_max_sample(scores, generator):
    uniform = torch.rand(scores.shape, generator=generator).clamp(1e-10, 1 - 1e-7)
    return (scores - torch.log(-torch.log(uniform))).argmax(-1)


def sample_without_noise(scores, generator):
    return scores.argmax(-1)


def sample_with_uniform_noise(scores, generator):
    return (scores + torch.rand(scores.shape, generator=generator)).argmax(-1)


def sample_with_flipped_gumbel(scores, generator):
    uniform = torch.rand(scores.shape, generator=generator).clamp(1e-10, 1 - 1e-7)
    return (scores + torch.log(-torch.log(uniform))).argmax(-1)  # the noise of a minimum


def sample_ignoring_generator(scores, generator):
    return gumbel_max_sample(scores, None)


def sample_keepdim(scores, generator):
    return gumbel_max_sample(scores, generator)[..., None]


def sample_float(scores, generator):
    return gumbel_max_sample(scores, generator).float()


def test_gumbel_max_accepts_a_correct_answer(capsys):
    check_gumbel_max_sample(gumbel_max_sample)
    assert "✓ gumbel_max_sample" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (sample_without_noise, r"every draw is the same key: add Gumbel noise g = -log\(-log U\)"),
        (sample_with_uniform_noise, r"g = -log\(-log U\)"),
        (sample_with_flipped_gumbel, "the frequencies are"),
        (sample_ignoring_generator, "generator=generator"),
        (sample_keepdim, r"expected indices of shape \(2, 3\), got \(2, 3, 1\)"),
        (sample_float, "must be integers"),
    ],
)
def test_gumbel_max_rejects_wrong_answers(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_gumbel_max_sample(fn)


# --- exercise 3.4: top-k attention weights -------------------------------------------------


def topk_weights(scores, k):
    best = scores.topk(k, dim=-1)
    return torch.zeros_like(scores).scatter(-1, best.indices, torch.softmax(best.values, -1))


def topk_softmax_then_zero(scores, k):
    weights = torch.softmax(scores, -1)
    keep = torch.zeros_like(scores, dtype=torch.bool).scatter(-1, scores.topk(k, -1).indices, True)
    return weights * keep  # rows no longer sum to one


def topk_smallest(scores, k):
    smallest = scores.topk(k, dim=-1, largest=False)
    return torch.zeros_like(scores).scatter(
        -1, smallest.indices, torch.softmax(smallest.values, -1)
    )


def topk_keep_everything(scores, k):
    return torch.softmax(scores, -1)


def topk_naive_softmax(scores, k):
    best = scores.topk(k, dim=-1)
    exp = torch.exp(best.values)  # overflows for large scores
    return torch.zeros_like(scores).scatter(-1, best.indices, exp / exp.sum(-1, keepdim=True))


def test_topk_accepts_a_correct_answer(capsys):
    check_topk_weights(topk_weights)
    assert "✓ topk_weights" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (topk_softmax_then_zero, "each row must sum to 1"),
        (topk_smallest, "k smallest"),
        (topk_keep_everything, "more than k = 2 weights"),
        (topk_naive_softmax, "NaN"),
    ],
)
def test_topk_rejects_wrong_answers(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_topk_weights(fn)


# --- a crash and a stub are reported with the case ----------------------------------------


def test_a_crash_names_the_case():
    def crashes(scores, mask=None):
        return scores.argmax(dim=5)

    with pytest.raises(CheckFailed, match="case 'no mask"):
        check_hard_weights(crashes)


# --- issue 16: more mistakes, and second correct solutions ---------------------------------


def hard_weights_with_where(scores, mask=None):
    allowed = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask.expand_as(scores)
    filled = torch.where(allowed, scores, torch.tensor(float("-inf")))
    best = filled.max(dim=-1, keepdim=True).values
    weights = (filled == best) & allowed.any(-1, keepdim=True)
    return weights.to(scores.dtype)


def hard_weights_times_mask(scores, mask=None):
    return hard_weights(scores * mask if mask is not None else scores, None)


def hard_weights_times_mask_zeroing_empty(scores, mask=None):
    weights = hard_weights(scores * mask if mask is not None else scores, None)
    return weights if mask is None else weights * mask.expand(scores.shape).any(-1, keepdim=True)


def hard_weights_indices(scores, mask=None):
    return hard_weights(scores, mask).argmax(-1)


def test_hard_weights_accepts_a_second_correct_answer(capsys):
    check_hard_weights(hard_weights_with_where)
    assert "✓ hard_weights" in capsys.readouterr().out


@pytest.mark.parametrize("fn", [hard_weights_times_mask, hard_weights_times_mask_zeroing_empty])
def test_hard_weights_rejects_scores_times_mask(fn):
    message = r"(?s)every allowed score is negative.*-inf with masked_fill"
    with pytest.raises(CheckFailed, match=message):
        check_hard_weights(fn)


def test_hard_weights_rejects_indices_with_a_shape_message():
    with pytest.raises(CheckFailed, match=r"should have shape \(4, 6\), got \(4,\)"):
        check_hard_weights(hard_weights_indices)


def reinforce_no_broadcast(scores, index, loss, baseline):
    one_hot = F.one_hot(index, scores.shape[-1]).to(scores.dtype)
    return torch.as_tensor(loss - baseline) * (one_hot - torch.softmax(scores, -1))


def reinforce_grad_p(scores, index, loss, baseline):
    probs = torch.softmax(scores, -1)
    return probs.gather(-1, index[..., None]) * reinforce_gradient(scores, index, loss, baseline)


def reinforce_returns_a_tuple(scores, index, loss, baseline):
    return reinforce_gradient(scores, index, loss, baseline), None


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (reinforce_no_broadcast, r"raised RuntimeError.*\n.*\[\.\.\., None\]"),
        (reinforce_grad_p, "∇p_i, the gradient of the probability"),
        (reinforce_returns_a_tuple, "should be a torch.Tensor, got tuple"),
    ],
)
def test_reinforce_rejects_more_wrong_answers(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_reinforce_gradient(fn)


def gumbel_max_with_exponential(scores, generator):
    exponential = torch.empty(scores.shape).exponential_(generator=generator)
    return (scores - exponential.log()).argmax(-1)


def sample_with_shared_noise(scores, generator):
    uniform = torch.rand(scores.shape[-1], generator=generator).clamp(1e-10, 1 - 1e-7)
    return (scores - torch.log(-torch.log(uniform))).argmax(-1)  # one noise vector for all rows


def test_gumbel_max_accepts_a_second_correct_answer(capsys):
    check_gumbel_max_sample(gumbel_max_with_exponential)
    assert "✓ gumbel_max_sample" in capsys.readouterr().out


def test_gumbel_max_names_shared_noise():
    with pytest.raises(CheckFailed, match="one noise vector is shared by all the rows") as info:
        check_gumbel_max_sample(sample_with_shared_noise)
    assert "add Gumbel noise" not in str(info.value)


def topk_with_masked_softmax(scores, k):
    keep = torch.zeros_like(scores, dtype=torch.bool).scatter(-1, scores.topk(k, -1).indices, True)
    return torch.softmax(scores.masked_fill(~keep, float("-inf")), -1)


def topk_without_scatter(scores, k):
    return torch.softmax(scores.topk(k, dim=-1).values, -1)


def test_topk_accepts_a_second_correct_answer(capsys):
    check_topk_weights(topk_with_masked_softmax)
    assert "✓ topk_weights" in capsys.readouterr().out


def test_topk_names_the_missing_scatter():
    with pytest.raises(CheckFailed, match="scatter the softmax of the k best scores"):
        check_topk_weights(topk_without_scatter)


def test_gumbel_max_checker_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with pytest.raises(CheckFailed):
        check_gumbel_max_sample(sample_ignoring_generator)  # draws from the global RNG
    torch.testing.assert_close(torch.rand(3), expected)
