"""Chapter 5's checkers accept the right answers and reject plausible wrong ones, helpfully."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mini_attn as ma
from mini_attn.exercises import (
    CheckFailed,
    check_attention_numpy,
    check_decoder_attention,
    check_self_attention_from_weights,
)

# ----------------------------------------------------------------------- NumPy attention


def _numpy_attention(q, k, v, mask=None, *, scale="sqrt", axis=-1, stable=True, invert=False):
    d = q.shape[-1]
    factor = {"sqrt": 1 / math.sqrt(d), "none": 1.0, "d": 1 / d}[scale]
    scores = q @ np.swapaxes(k, -1, -2) * factor
    if mask is not None:
        scores = np.where(~mask if invert else mask, scores, -np.inf)
    if stable:
        row_max = scores.max(axis=axis, keepdims=True)
        scores = scores - np.where(np.isfinite(row_max), row_max, 0.0)
    exp = np.exp(scores)
    total = exp.sum(axis=axis, keepdims=True)
    return exp / (np.maximum(total, np.finfo(float).tiny) if stable else total) @ v


def test_attention_numpy_right_answers_pass(capsys):
    check_attention_numpy(_numpy_attention)
    check_attention_numpy(
        lambda q, k, v, mask=None: ma.scaled_dot_product_attention_numpy(q, k, v, mask=mask)[0]
    )
    assert "✓ attention_numpy" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the unstable variant overflows
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scale": "none"}, "not scaled"),
        ({"scale": "d"}, "not by E"),
        ({"axis": -2}, "over the keys"),
        ({"invert": True}, "inverted"),
        ({"stable": False}, "exp overflowed"),
    ],
)
def test_attention_numpy_wrong_answers(kwargs, message):
    with pytest.raises(CheckFailed, match=message):
        check_attention_numpy(lambda q, k, v, mask=None: _numpy_attention(q, k, v, mask, **kwargs))


def test_attention_numpy_fully_masked_row_without_clamping():
    def no_clamp(q, k, v, mask=None):
        scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = np.where(mask, scores, -1e30)  # a large negative number instead of -inf
        w = np.exp(scores - scores.max(-1, keepdims=True))
        return w / w.sum(-1, keepdims=True) @ v

    with pytest.raises(CheckFailed, match="query 2 may attend to no key"):
        check_attention_numpy(no_clamp)


def test_attention_numpy_wrong_types():
    with pytest.raises(CheckFailed, match="return only the output array, got a tuple"):
        check_attention_numpy(
            lambda q, k, v, mask=None: ma.scaled_dot_product_attention_numpy(q, k, v, mask=mask)
        )
    with pytest.raises(CheckFailed, match=r"got a torch\.Tensor"):
        check_attention_numpy(
            lambda q, k, v, mask=None: torch.from_numpy(_numpy_attention(q, k, v, mask))
        )


# --------------------------------------------------------------------- decoder attention


def _decoder(q, k, v, lengths, *, causal=True, padding=True, flip_causal=False, bottom_right=False):
    n_queries, n_keys = q.shape[1], k.shape[1]
    mask = torch.ones(q.shape[0], n_queries, n_keys, dtype=torch.bool)
    if padding:
        mask = mask & ma.padding_mask(lengths, n_keys)
    if causal:
        future = torch.ones(n_queries, n_keys, dtype=torch.bool).tril(
            n_keys - n_queries if bottom_right else 0
        )
        mask = mask & (~future if flip_causal else future)
    return ma.scaled_dot_product_attention(q, k, v, mask=mask)[0]


def test_decoder_attention_right_answers_pass(capsys):
    check_decoder_attention(_decoder)
    assert "✓ decoder_attention" in capsys.readouterr().out


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"causal": False}, "causal mask is missing"),
        ({"padding": False}, "padding is not masked"),
        ({"flip_causal": True}, "causal mask is inverted"),
        ({"bottom_right": True}, "bottom right"),
    ],
)
def test_decoder_attention_wrong_answers(kwargs, message):
    with pytest.raises(CheckFailed, match=message):
        check_decoder_attention(lambda q, k, v, lengths: _decoder(q, k, v, lengths, **kwargs))


def test_decoder_attention_nan_for_an_empty_sequence():
    def with_pytorch_additive_mask(q, k, v, lengths):
        allowed = ma.padding_mask(lengths, k.shape[1]) & ma.causal_mask(q.shape[1], k.shape[1])
        additive = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + additive
        return torch.softmax(scores, dim=-1) @ v  # NaN where every key is -inf

    with pytest.raises(CheckFailed, match=r"length 0.*\n?.*NaN.*must be zero"):
        check_decoder_attention(with_pytorch_additive_mask)


# ------------------------------------------------------------ from nn.Linear's weights


def _from_weights(x, q_proj, k_proj, v_proj, *, transpose=True, bias=True, scale="d", dim=-1):
    def project(p):
        y = x @ (p.weight.T if transpose else p.weight)
        return y + p.bias if bias and p.bias is not None else y

    q, k, v = project(q_proj), project(k_proj), project(v_proj)
    factor = {"d": q.shape[-1], "e": x.shape[-1], "none": 1.0}[scale]
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(factor), dim=dim) @ v


def test_self_attention_from_weights_right_answers_pass(capsys):
    check_self_attention_from_weights(_from_weights)
    assert "✓ self_attention_from_weights" in capsys.readouterr().out


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scale": "e"}, r"1/√D, with D the size of the queries and keys"),
        ({"scale": "none"}, "not scaled"),
        ({"bias": False}, "biases are missing"),
        ({"dim": -2}, "over the keys"),
    ],
)
def test_self_attention_from_weights_wrong_answers(kwargs, message):
    with pytest.raises(CheckFailed, match=message):
        check_self_attention_from_weights(lambda x, q, k, v: _from_weights(x, q, k, v, **kwargs))


def test_self_attention_from_weights_without_transpose():
    """With E ≠ D the shapes do not fit (a clear error); with E = D the hint explains."""
    with pytest.raises(CheckFailed, match=r"E=8, D=4.*raised RuntimeError"):
        check_self_attention_from_weights(
            lambda x, q, k, v: _from_weights(x, q, k, v, transpose=False)
        )

    def transpose_only_when_it_fits(x, q, k, v):
        square = q.weight.shape[0] == q.weight.shape[1]
        return _from_weights(x, q, k, v, transpose=not square)

    with pytest.raises(CheckFailed, match=r"(?s)square E=D=6.*transpose it"):
        check_self_attention_from_weights(transpose_only_when_it_fits)


def test_self_attention_from_weights_refuses_calling_the_modules():
    def calls_the_modules(x, q_proj, k_proj, v_proj):
        return ma.scaled_dot_product_attention(q_proj(x), k_proj(x), v_proj(x))[0]

    with pytest.raises(CheckFailed, match=r"do not call the projection module.*\.weight"):
        check_self_attention_from_weights(calls_the_modules)
