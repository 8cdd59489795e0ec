"""Chapter 2 checkers: reference answers pass, plausible wrong answers fail with helpful hints."""

from __future__ import annotations

import math

import pytest
import torch

import mini_attn as ma
from mini_attn.exercises import (
    CheckFailed,
    check_additive_scores,
    check_attention_entropy,
    check_padded_soft_attention,
)

# --- Exercise 2.1: additive scores ----------------------------------------------------------


def additive_right(query, key, w_q, w_k, w):
    return torch.tanh((query @ w_q.T)[:, None, :] + (key @ w_k.T)[None, :, :]) @ w


def additive_via_module(query, key, w_q, w_k, w):
    module = ma.AdditiveScore(query.shape[-1], key.shape[-1], w.shape[0])
    with torch.no_grad():
        module.query_proj.weight.copy_(w_q)
        module.key_proj.weight.copy_(w_k)
        module.out.weight.copy_(w[None])
    return module(query, key)


def additive_no_tanh(query, key, w_q, w_k, w):
    return ((query @ w_q.T)[:, None, :] + (key @ w_k.T)[None, :, :]) @ w


def additive_tanh_each_part(query, key, w_q, w_k, w):
    return (torch.tanh(query @ w_q.T) @ w)[:, None] + (torch.tanh(key @ w_k.T) @ w)[None, :]


def additive_transposed(query, key, w_q, w_k, w):
    return additive_right(query, key, w_q, w_k, w).T


def additive_no_transpose(query, key, w_q, w_k, w):
    return torch.tanh((query @ w_q)[:, None, :] + (key @ w_k)[None, :, :]) @ w


def additive_sum_not_w(query, key, w_q, w_k, w):
    return torch.tanh((query @ w_q.T)[:, None, :] + (key @ w_k.T)[None, :, :]).sum(-1)


def additive_hidden_only(query, key, w_q, w_k, w):
    return torch.tanh((query @ w_q.T)[:, None, :] + (key @ w_k.T)[None, :, :])


def additive_loop(query, key, w_q, w_k, w):
    rows = []
    for q in query:
        rows.append(torch.stack([w @ torch.tanh(w_q @ q + w_k @ k) for k in key]))
    return torch.stack(rows)


def additive_einsum(query, key, w_q, w_k, w):  # a different correct answer
    hidden = torch.einsum("la,sa->lsa", query @ w_q.T, torch.ones(key.shape[0], w.shape[0]))
    hidden = hidden + torch.einsum(
        "sa,la->lsa", key @ w_k.T, torch.ones(query.shape[0], w.shape[0])
    )
    return torch.einsum("lsa,a->ls", torch.tanh(hidden), w)


@pytest.mark.parametrize("fn", [additive_right, additive_via_module, additive_einsum])
def test_additive_right_answers_pass(fn, capsys):
    check_additive_scores(fn)
    assert "✓ additive_scores" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("fn", "hint"),
    [
        (additive_no_tanh, r"apply tanh to W_q q \+ W_k k before"),
        (additive_tanh_each_part, "not on each part separately"),
        (additive_transposed, r"the result is \(L, S\), not \(S, L\)"),
        (additive_no_transpose, r"not query @ w_q\."),
        (additive_sum_not_w, "not a plain sum"),
        (additive_hidden_only, r"returned the \(L, S, A\) hidden tensor"),
        (additive_loop, "a Python loop over the pairs"),
        (lambda *a: additive_right(*a).numpy(), "a NumPy array"),
    ],
)
def test_additive_wrong_answers_fail_with_a_hint(fn, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_additive_scores(fn)


# --- Exercise 2.2: soft attention over padded sequences -------------------------------------


def _mask(scores, lengths):
    return (torch.arange(scores.shape[-1])[None, :] < lengths[:, None])[:, None, :]


def padded_right(scores, values, lengths):
    return ma.soft_attention(scores, values, mask=_mask(scores, lengths))


def padded_inverted_mask(scores, values, lengths):
    return ma.soft_attention(scores, values, mask=~_mask(scores, lengths))


def padded_off_by_one(scores, values, lengths):
    return ma.soft_attention(scores, values, mask=_mask(scores, lengths - 1))


def padded_large_negative(scores, values, lengths):
    weights = torch.softmax(scores.masked_fill(~_mask(scores, lengths), -1e9), dim=-1)
    return weights @ values, weights


def padded_minus_inf(scores, values, lengths):
    weights = torch.softmax(scores.masked_fill(~_mask(scores, lengths), float("-inf")), dim=-1)
    return weights @ values, weights


def padded_no_mask(scores, values, lengths):
    return ma.soft_attention(scores, values)


def padded_weights_only(scores, values, lengths):
    return padded_right(scores, values, lengths)[1]


def padded_le(scores, values, lengths):
    mask = (torch.arange(scores.shape[-1])[None, :] <= lengths[:, None])[:, None, :]
    return ma.soft_attention(scores, values, mask=mask)


def padded_swapped(scores, values, lengths):  # was a crash of the checker
    context, weights = padded_right(scores, values, lengths)
    return weights, context


def padded_zero_after(scores, values, lengths):
    weights = torch.softmax(scores, dim=-1) * _mask(scores, lengths)
    return weights @ values, weights


def padded_bs_mask(scores, values, lengths):
    mask = torch.arange(scores.shape[-1])[None, :] < lengths[:, None]  # (B, S): no query axis
    return ma.soft_attention(scores, values, mask=mask)


def padded_by_hand(scores, values, lengths):  # a different correct answer
    keep = torch.arange(scores.shape[-1]) < lengths[:, None, None]  # (B, 1, S)
    shifted = scores - scores.masked_fill(~keep, -1e30).amax(-1, keepdim=True)
    e = torch.where(keep, torch.exp(shifted), torch.zeros_like(scores))  # not exp * mask: inf·0
    total = e.sum(-1, keepdim=True)
    weights = torch.where(total > 0, e / total.clamp_min(1e-30), torch.zeros_like(e))
    return weights @ values, weights


@pytest.mark.parametrize("fn", [padded_right, padded_by_hand])
def test_padded_right_answers_pass(fn, capsys):
    check_padded_soft_attention(fn)
    assert "✓ padded_soft_attention" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("fn", "hint"),
    [
        (padded_inverted_mask, "every real key got weight 0: is your mask inverted"),
        (padded_off_by_one, r"some real keys got weight 0: .*no - 1"),
        (padded_large_negative, "gives uniform weights there instead of zeros"),
        (padded_minus_inf, "NaN appears for the empty sequence"),
        (padded_no_mask, r"the padding \(positions >= length\) must get weight exactly 0"),
        (padded_weights_only, r"return a tuple \(context, weights\), got one tensor"),
        (padded_le, r"use <, not <="),
        (padded_swapped, r"you returned \(weights, context\)"),
        (padded_zero_after, "no longer sum to 1"),
        (padded_bs_mask, r"case 'no padding.*raised ValueError: mask of shape \(3, 5\)"),
    ],
)
def test_padded_wrong_answers_fail_with_a_hint(fn, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_padded_soft_attention(fn)


def test_padded_failure_names_the_case():
    with pytest.raises(CheckFailed, match="case 'lengths 5, 2 and 3'"):
        check_padded_soft_attention(padded_no_mask)


# --- Exercise 2.3: entropy of attention rows ------------------------------------------------


def entropy_right(weights):
    logs = torch.where(weights > 0, weights.log(), torch.zeros_like(weights))
    return -(weights * logs).sum(dim=-1)


def entropy_xlogy(weights):
    return -torch.special.xlogy(weights, weights).sum(dim=-1)


def entropy_naive(weights):
    return -(weights * weights.log()).sum(dim=-1)


def entropy_log2(weights):
    return entropy_right(weights) / math.log(2)


def entropy_no_minus(weights):
    return -entropy_right(weights)


def entropy_log10(weights):
    return entropy_right(weights) / math.log(10)


def entropy_mean(weights):
    return entropy_right(weights) / weights.shape[-1]


def entropy_wrong_dim(weights):
    logs = torch.where(weights > 0, weights.log(), torch.zeros_like(weights))
    return -(weights * logs).sum(dim=-2)


def entropy_terms_only(weights):
    return -torch.special.xlogy(weights, weights)


def test_entropy_right_answers_pass(capsys):
    for fn in (entropy_right, entropy_xlogy):
        check_attention_entropy(fn)
    assert capsys.readouterr().out.count("✓ attention_entropy") == 2


@pytest.mark.parametrize(
    ("fn", "hint"),
    [
        (entropy_naive, "0 · ln 0 gives NaN"),
        (entropy_log2, "use the natural logarithm"),
        (entropy_no_minus, "don't forget the minus sign"),
        (entropy_log10, "not log10"),
        (entropy_mean, "do not average"),
        (entropy_wrong_dim, "not over dim -2"),
        (entropy_terms_only, "one entropy per row"),
        (lambda w: entropy_right(w).sum(), r"should have shape \(1,\), got \(\)"),
    ],
)
def test_entropy_wrong_answers_fail_with_a_hint(fn, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_attention_entropy(fn)


def test_a_wrong_shape_is_reported():
    with pytest.raises(CheckFailed, match=r"should have shape \(1,\), got \(\)"):
        check_attention_entropy(lambda w: entropy_right(w).sum())
