"""Chapter 4's checkers accept the right answers and reject plausible wrong ones, helpfully."""

from __future__ import annotations

import pytest
import torch

import mini_attn as ma
from mini_attn.exercises import (
    CheckFailed,
    check_causal_mask,
    check_encoder_block,
    check_positional_encoding,
)

# ------------------------------------------------------------------ positional encoding


def _encoding(n_positions, dim, *, exponent="pair", layout="interleaved", swap=False):
    p = torch.arange(n_positions, dtype=torch.float64)[:, None]
    pair = torch.arange(0, dim, 2, dtype=torch.float64)
    angles = p / 10000 ** (pair / dim)
    first, second = (torch.cos, torch.sin) if swap else (torch.sin, torch.cos)
    if exponent == "multiply":
        angles = p * 10000 ** (pair / dim)
    if layout == "halves":
        return torch.cat([first(angles), second(angles)], -1).float()
    pe = torch.stack([first(angles), second(angles)], -1).flatten(-2)
    if exponent == "column":
        j = torch.arange(dim, dtype=torch.float64)
        a = p / 10000 ** (j / dim)
        pe = torch.where(j % 2 == 0, torch.sin(a), torch.cos(a))
    return pe.float()


def test_positional_encoding_right_answers_pass(capsys):
    check_positional_encoding(ma.sinusoidal_positional_encoding)
    check_positional_encoding(_encoding)
    assert "✓ positional_encoding" in capsys.readouterr().out


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"swap": True}, "sin and cos are swapped"),
        ({"layout": "halves"}, "all the sines first"),
        ({"exponent": "column"}, r"share one frequency.*\(2i\+1\)/dim"),
        ({"exponent": "multiply"}, "do not multiply"),
    ],
)
def test_positional_encoding_wrong_answers(kwargs, message):
    with pytest.raises(CheckFailed, match=message):
        check_positional_encoding(lambda n, d: _encoding(n, d, **kwargs))


def test_positional_encoding_integer_result():
    with pytest.raises(CheckFailed, match=r"floating-point tensor, got torch\.int64"):
        check_positional_encoding(lambda n, d: _encoding(n, d).long())


def test_positional_encoding_stub():
    def stub(n, d):
        raise NotImplementedError

    with pytest.raises(CheckFailed, match="not implemented yet"):
        check_positional_encoding(stub)


# --------------------------------------------------------------------------- causal mask


def test_causal_mask_right_answers_pass(capsys):
    check_causal_mask(ma.causal_mask)
    check_causal_mask(lambda n, s: torch.arange(s)[None, :] <= torch.arange(n)[:, None])
    assert "✓ causal_mask" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda n, s: ~ma.causal_mask(n, s), "inverted"),
        (lambda n, s: torch.ones(n, s, dtype=torch.bool).tril(-1), "keep the diagonal"),
        (lambda n, s: torch.ones(n, s, dtype=torch.bool).triu(), "upper triangle"),
        (lambda n, s: torch.ones(n, s, dtype=torch.bool).tril(s - n), "bottom right"),
        (lambda n, s: torch.ones(n, s).tril(), "boolean tensor.*torch.float32"),
        (lambda n, s: torch.ones(n, n, dtype=torch.bool).tril(), r"shape \(3, 6\)"),
        (lambda n, s: ma.causal_mask(n, s).tolist(), "return a torch.Tensor, got list"),
    ],
    ids=["inverted", "no-diagonal", "upper", "bottom-right", "float", "square", "list"],
)
def test_causal_mask_wrong_answers(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        check_causal_mask(wrong)


def test_causal_mask_message_shows_the_first_wrong_entry():
    with pytest.raises(CheckFailed, match=r"\(query 0, key 1\): expected False, got True"):
        check_causal_mask(lambda n, s: torch.ones(n, s, dtype=torch.bool))


# ------------------------------------------------------------------------- encoder block


def _pre_norm(x, attention, norm1, mlp, norm2):
    h = x + attention(norm1(x))[0]
    return h + mlp(norm2(h))


def test_encoder_block_right_answers_pass(capsys):
    check_encoder_block(_pre_norm)

    def with_encoder_block(x, attention, norm1, mlp, norm2):
        block = ma.tasks.EncoderBlock(x.shape[-1], attention)
        block.norm1, block.mlp, block.norm2 = norm1, mlp, norm2
        return block(x)[0]

    check_encoder_block(with_encoder_block)
    assert "✓ encoder_block" in capsys.readouterr().out


def _post_norm(x, attention, norm1, mlp, norm2):
    h = norm1(x + attention(x)[0])
    return norm2(h + mlp(h))


def _no_residuals(x, attention, norm1, mlp, norm2):
    return mlp(norm2(attention(norm1(x))[0]))


def _no_second_residual(x, attention, norm1, mlp, norm2):
    h = x + attention(norm1(x))[0]
    return mlp(norm2(h))


def _residual_on_normalised(x, attention, norm1, mlp, norm2):
    return _pre_norm(norm1(x), attention, lambda t: t, mlp, norm2)


@pytest.mark.parametrize(
    "wrong, message",
    [
        (_post_norm, "post-norm"),
        (_no_residuals, "residual connections are missing"),
        (_no_second_residual, "second residual is missing"),
        (_residual_on_normalised, "un-normalised x"),
        (lambda x, a, n1, m, n2: x + a(n1(x)), "raised TypeError"),  # forgot [0]
    ],
)
def test_encoder_block_wrong_answers(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        check_encoder_block(wrong)


def test_encoder_block_checker_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_encoder_block(_pre_norm)
    torch.testing.assert_close(torch.rand(3), expected)


# ------------------------------------------------------- issue 16: more mistakes


def _pe_from_one(n, d):
    return _encoding(n + 1, d)[1:]


def _pe_half_exponent(n, d):
    p = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(d // 2, dtype=torch.float64)
    angles = p / 10000 ** (i / d)  # forgot the 2 of 2i
    return torch.stack([torch.sin(angles), torch.cos(angles)], -1).flatten(-2).float()


def _pe_integer_exponent(n, d):
    p = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(d // 2)
    angles = p / 10000 ** (2 * i // d)  # integer division: every exponent 0
    return torch.stack([torch.sin(angles), torch.cos(angles)], -1).flatten(-2).float()


@pytest.mark.parametrize(
    "wrong, message",
    [
        (_pe_from_one, "positions start at 0"),
        (_pe_half_exponent, "the exponent is 2i/dim"),
        (_pe_integer_exponent, "integer division"),
        (lambda n, d: _encoding(n, d).numpy(), "should be a torch.Tensor, got ndarray"),
    ],
)
def test_positional_encoding_more_wrong_answers(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        check_positional_encoding(wrong)


def test_causal_mask_bottom_right_is_called_a_legitimate_convention():
    with pytest.raises(CheckFailed, match="legitimate convention elsewhere") as info:
        check_causal_mask(lambda n, s: torch.ones(n, s, dtype=torch.bool).tril(s - n))
    assert "causal_lower_right" in str(info.value)


def _parallel_block(x, attention, norm1, mlp, norm2):
    return x + attention(norm1(x))[0] + mlp(norm2(x))


def _norm1_twice(x, attention, norm1, mlp, norm2):
    h = x + attention(norm1(x))[0]
    return h + mlp(norm1(h))


def _returns_a_pair(x, attention, norm1, mlp, norm2):
    return _pre_norm(x, attention, norm1, mlp, norm2), None


@pytest.mark.parametrize(
    "wrong, message",
    [
        (_parallel_block, "must read h"),
        (_norm1_twice, "normalise h with norm2"),
        (lambda x, a, n1, m, n2: x + a(n1(x)), r"(?s)raised TypeError.*returns a pair"),
        (_returns_a_pair, "not a tuple"),
    ],
)
def test_encoder_block_more_wrong_answers(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        check_encoder_block(wrong)
