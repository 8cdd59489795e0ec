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
        ({"scale": "d"}, "not by D"),
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
    """The square case runs first, so the forgotten transpose meets its hint; where E ≠ D
    the crash gets the same explanation."""
    with pytest.raises(
        CheckFailed, match=r"(?s)square E=D=6.*Hint: nn.Linear computes x @ weight.T"
    ):
        check_self_attention_from_weights(
            lambda x, q, k, v: _from_weights(x, q, k, v, transpose=False)
        )

    with pytest.raises(CheckFailed, match=r"(?s)E=8, D=4.*RuntimeError.*Hint: nn.Linear stores"):
        check_self_attention_from_weights(
            lambda x, q, k, v: _from_weights(x, q, k, v, transpose=q.weight.shape[0] == 6)
        )


def test_self_attention_from_weights_refuses_calling_the_modules():
    def calls_the_modules(x, q_proj, k_proj, v_proj):
        return ma.scaled_dot_product_attention(q_proj(x), k_proj(x), v_proj(x))[0]

    with pytest.raises(CheckFailed, match=r"do not call the projection module.*\.weight"):
        check_self_attention_from_weights(calls_the_modules)


# ------------------------------------------------- issue 16: more mistakes, clean refusals


def _chapter_attention_numpy(query, key, value, mask=None):
    """The chapter's solution to exercise 5.1."""
    scores = query @ np.swapaxes(key, -1, -2) / np.sqrt(query.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    row_max = scores.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    exp = np.exp(scores - row_max)
    weights = exp / np.maximum(exp.sum(axis=-1, keepdims=True), np.finfo(exp.dtype).tiny)
    return weights @ value


def _float32_with_zeroed_rows(query, key, value, mask=None):
    """A different correct 5.1: float32, einsum, masked rows zeroed after the softmax."""
    q, k, v = (a.astype(np.float32) for a in (query, key, value))
    scores = np.einsum("...ld,...sd->...ls", q, k) / np.float32(np.sqrt(q.shape[-1]))
    allowed = (
        np.ones(scores.shape, dtype=bool) if mask is None else np.broadcast_to(mask, scores.shape)
    )
    masked = np.where(allowed, scores, -np.inf)
    top = np.max(np.where(allowed, scores, np.finfo(np.float32).min), axis=-1, keepdims=True)
    exp = np.where(allowed, np.exp(masked - top), 0.0)
    total = exp.sum(axis=-1, keepdims=True)
    weights = np.divide(exp, total, out=np.zeros_like(exp), where=total > 0)
    return weights @ v


def test_attention_numpy_two_correct_solutions_pass(capsys):
    check_attention_numpy(_chapter_attention_numpy)
    check_attention_numpy(_float32_with_zeroed_rows)
    assert capsys.readouterr().out.count("✓ attention_numpy") == 2


def _minus_1e9(q, k, v, mask=None):
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -1e9)  # the Annotated Transformer's fill
    w = np.exp(scores - scores.max(-1, keepdims=True))
    return w / w.sum(-1, keepdims=True) @ v


def _max_over_all_keys(q, k, v, mask=None):
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    exp = np.exp(scores - scores.max(-1, keepdims=True))  # masked keys included in the max
    if mask is not None:
        exp = exp * mask
    return exp / exp.sum(-1, keepdims=True) @ v


def _key_dot_t(q, k, v, mask=None):
    return _chapter_attention_numpy(q, np.swapaxes(k.T, -1, -2) if k.ndim == 2 else k.T, v, mask)


def _in_place(q, k, v, mask=None):
    q /= np.sqrt(q.shape[-1])  # scales the caller's array
    return _chapter_attention_numpy(q * np.sqrt(q.shape[-1]), k, v, mask)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize(
    "fn, message",
    [
        (_minus_1e9, r"(?s)query 2 may attend to no key.*Hint: .*-1e9"),
        (
            _max_over_all_keys,
            r"(?s)largest score masked.*Hint: you subtracted the maximum over all keys",
        ),
        (_key_dot_t, r"(?s)batch \(2, 3\).*ValueError.*Hint: .*np.swapaxes\(key, -1, -2\)"),
        (_in_place, r"changed its argument `query` in place"),
        (lambda q, k, v, mask=None: _chapter_attention_numpy(q, k, v, mask)[..., :1], "shape"),
        (
            lambda q, k, v, mask=None: _chapter_attention_numpy(q, k, v, mask).astype(bool),
            "dtype bool",
        ),
        (lambda q, k, v, mask=None: _chapter_attention_numpy(q, k, v, mask).tolist(), "got list"),
        (lambda q, k, v, mask=None: _chapter_attention_numpy(q, k, v, mask) * np.nan, "nan"),
    ],
)
def test_attention_numpy_more_mistakes(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_attention_numpy(fn)


def _chapter_decoder(query, key, value, key_lengths):
    """The chapter's solution to exercise 5.2."""
    n_queries, n_keys = query.shape[-2], key.shape[-2]
    positions = torch.arange(n_keys)
    padding = positions[None, None, :] < key_lengths[:, None, None]  # (B, 1, S)
    causal = positions[None, :] <= torch.arange(n_queries)[:, None]  # (L, S)
    output, _ = ma.scaled_dot_product_attention(query, key, value, mask=padding & causal)
    return output


def _decoder_with_pytorch(query, key, value, key_lengths):
    """A different correct 5.2: PyTorch's function, rows with no key zeroed by hand."""
    mask = ma.padding_mask(key_lengths, key.shape[1]) & ma.causal_mask(query.shape[1], key.shape[1])
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    return torch.where(mask.any(-1, keepdim=True), out, 0.0).nan_to_num()


def test_decoder_attention_two_correct_solutions_pass(capsys):
    check_decoder_attention(_chapter_decoder)
    check_decoder_attention(_decoder_with_pytorch)
    assert capsys.readouterr().out.count("✓ decoder_attention") == 2


def _decoder_causal_argument(q, k, v, lengths):
    return ma.scaled_dot_product_attention(
        q, k, v, mask=ma.padding_mask(lengths, k.shape[1]), causal=True
    )[0]


def _decoder_is_causal(q, k, v, lengths):
    out = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=ma.padding_mask(lengths, k.shape[1]), is_causal=False
    )
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True) * 0 + out


def _decoder_square_causal(q, k, v, lengths):
    mask = ma.padding_mask(lengths, k.shape[1]) & ma.causal_mask(q.shape[1])  # ignores S
    return ma.scaled_dot_product_attention(q, k, v, mask=mask)[0]


def _decoder_padding_without_query_axis(q, k, v, lengths):
    padding = torch.arange(k.shape[1])[None, :] < lengths[:, None]  # (B, S)
    return ma.scaled_dot_product_attention(
        q, k, v, mask=padding & ma.causal_mask(q.shape[1], k.shape[1])
    )[0]


def _decoder_off_by_one(q, k, v, lengths):
    padding = torch.arange(k.shape[1])[None, None, :] <= lengths[:, None, None]
    return ma.scaled_dot_product_attention(
        q, k, v, mask=padding & ma.causal_mask(q.shape[1], k.shape[1])
    )[0]


def _decoder_or(q, k, v, lengths):
    mask = ma.padding_mask(lengths, k.shape[1]) | ma.causal_mask(q.shape[1], k.shape[1])
    return ma.scaled_dot_product_attention(q, k, v, mask=mask)[0]


def _decoder_in_place(q, k, v, lengths):
    out = _chapter_decoder(q, k, v, lengths)
    v.zero_()
    return out


@pytest.mark.parametrize(
    "fn, message",
    [
        (_decoder_causal_argument, r"called ma.scaled_dot_product_attention\(..., causal=True\)"),
        (_decoder_is_causal, r"called F.scaled_dot_product_attention\(..., is_causal=True\)"),
        (_decoder_square_causal, r"(?s)L=3, S=6.*RuntimeError.*Hint: .*\(L, S\) = \(3, 6\)"),
        (_decoder_padding_without_query_axis, r"(?s)L=S=5.*Hint: .*\(B, 1, S\) = \(2, 1, 5\)"),
        (_decoder_off_by_one, "off by one in the padding"),
        (_decoder_or, r"combined with \| \(or\)"),
        (_decoder_in_place, "changed its argument `value` in place"),
        (
            lambda q, k, v, lengths: _chapter_decoder(q, k, v, lengths).numpy(),
            "should be a torch.Tensor",
        ),
        (lambda q, k, v, lengths: _chapter_decoder(q, k, v, lengths)[:, :1], "should have shape"),
    ],
)
def test_decoder_attention_more_mistakes(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_decoder_attention(fn)


def test_decoder_attention_silent_padding_broadcast_when_b_equals_l():
    """(B, S) & (L, S) runs without an error when B = L, and gives query i sequence i's padding."""

    def padding_without_query_axis_only_when_it_runs(q, k, v, lengths):
        if q.shape[0] != q.shape[1]:
            return _chapter_decoder(q, k, v, lengths)
        return _decoder_padding_without_query_axis(q, k, v, lengths)

    with pytest.raises(CheckFailed, match=r"(?s)B=L=3.*Hint: the padding mask \(B, S\) lines"):
        check_decoder_attention(padding_without_query_axis_only_when_it_runs)


def test_decoder_attention_restores_the_functions_it_watches():
    import torch.nn.functional as F

    before = (ma.scaled_dot_product_attention, F.scaled_dot_product_attention)
    with pytest.raises(CheckFailed):
        check_decoder_attention(_decoder_causal_argument)
    check_decoder_attention(_chapter_decoder)
    assert (ma.scaled_dot_product_attention, F.scaled_dot_product_attention) == before


def _chapter_from_weights(x, q_proj, k_proj, v_proj):
    """The chapter's solution to exercise 5.3."""

    def project(layer):
        y = x @ layer.weight.T
        return y if layer.bias is None else y + layer.bias

    q, k, v = project(q_proj), project(k_proj), project(v_proj)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v


def _from_weights_functional(x, q_proj, k_proj, v_proj):
    """A different correct 5.3: F.linear and PyTorch's attention."""
    q, k, v = (torch.nn.functional.linear(x, p.weight, p.bias) for p in (q_proj, k_proj, v_proj))
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def test_self_attention_from_weights_two_correct_solutions_pass(capsys):
    check_self_attention_from_weights(_chapter_from_weights)
    check_self_attention_from_weights(_from_weights_functional)
    assert capsys.readouterr().out.count("✓ self_attention_from_weights") == 2


def _always_add_bias(x, q_proj, k_proj, v_proj):
    q, k, v = (x @ p.weight.T + p.bias for p in (q_proj, k_proj, v_proj))
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


def _k_dot_t(x, q_proj, k_proj, v_proj):
    q, k, v = (torch.nn.functional.linear(x, p.weight, p.bias) for p in (q_proj, k_proj, v_proj))
    return torch.softmax(q @ k.T / math.sqrt(q.shape[-1]), dim=-1) @ v


def _modifies_the_weight(x, q_proj, k_proj, v_proj):
    with torch.no_grad():
        q_proj.weight.mul_(1.0)
        q_proj.weight[0, 0] += 1.0
    return _chapter_from_weights(x, q_proj, k_proj, v_proj)


@pytest.mark.filterwarnings("ignore::UserWarning")  # k.T on a 3-D tensor is deprecated
@pytest.mark.parametrize(
    "fn, message",
    [
        (_always_add_bias, r"(?s)bias=None.*TypeError.*Hint: this case's layers have bias=None"),
        (_k_dot_t, r"(?s)Hint: .*k.transpose\(-2, -1\)"),
        (_modifies_the_weight, r"changed q_proj.weight in place"),
        (lambda x, q, k, v: (_chapter_from_weights(x, q, k, v), None), "got a tuple of 2"),
        (lambda x, q, k, v: _chapter_from_weights(x, q, k, v)[..., 0], "should have shape"),
    ],
)
def test_self_attention_from_weights_more_mistakes(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_self_attention_from_weights(fn)


def test_checkers_leave_the_rng_and_threads_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    threads = torch.get_num_threads()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002 (the global RNG, on purpose)
    check_attention_numpy(_chapter_attention_numpy)
    check_decoder_attention(_chapter_decoder)
    check_self_attention_from_weights(_chapter_from_weights)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads
    assert np.array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002
