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


@pytest.mark.parametrize("fn", [additive_right, additive_via_module])
def test_additive_right_answers_pass(fn, capsys):
    check_additive_scores(fn)
    assert "✓ additive_scores" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("fn", "hint"),
    [
        (additive_no_tanh, r"apply tanh to W_q q \+ W_k k before"),
        (additive_tanh_each_part, "not on each part separately"),
        (additive_transposed, r"the result is \(L, S\), not \(S, L\)"),
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


def test_padded_right_answer_passes(capsys):
    check_padded_soft_attention(padded_right)
    assert "✓ padded_soft_attention" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("fn", "hint"),
    [
        (padded_inverted_mask, "every real key got weight 0: is your mask inverted"),
        (padded_off_by_one, r"some real keys got weight 0: .*no - 1"),
        (padded_large_negative, "gives uniform weights there instead of zeros"),
        (padded_minus_inf, "NaN appears for the empty sequence"),
        (padded_no_mask, r"the padding \(positions >= length\) must get weight exactly 0"),
        (padded_weights_only, r"return a tuple \(context, weights\), got Tensor"),
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
    ],
)
def test_entropy_wrong_answers_fail_with_a_hint(fn, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_attention_entropy(fn)


def test_a_wrong_shape_is_reported():
    with pytest.raises(CheckFailed, match=r"should have shape \(1,\), got \(\)"):
        check_attention_entropy(lambda w: entropy_right(w).sum())
