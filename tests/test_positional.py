"""sinusoidal_positional_encoding: the formula, its relative-position property, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import mini_attn as ma


def classic(n_positions: int, dim: int) -> torch.Tensor:
    """The usual implementation (The Annotated Transformer), for an even ``dim``."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * -(math.log(10000.0) / dim))
    pe = torch.zeros(n_positions, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe


@pytest.mark.parametrize("n_positions, dim", [(1, 2), (10, 4), (50, 16), (128, 64)])
def test_equals_the_classic_implementation(n_positions, dim):
    pe = ma.sinusoidal_positional_encoding(n_positions, dim, dtype=torch.float64)
    torch.testing.assert_close(pe, classic(n_positions, dim))


@given(n_positions=st.integers(1, 40), dim=st.integers(1, 33), data=st.data())
def test_every_entry_follows_the_formula(n_positions, dim, data):
    pe = ma.sinusoidal_positional_encoding(n_positions, dim, dtype=torch.float64)
    assert pe.shape == (n_positions, dim)
    p = data.draw(st.integers(0, n_positions - 1))
    column = data.draw(st.integers(0, dim - 1))
    i = column // 2
    angle = p / 10000 ** (2 * i / dim)
    expected = math.sin(angle) if column % 2 == 0 else math.cos(angle)
    assert pe[p, column].item() == pytest.approx(expected, abs=1e-12)


def test_first_row_and_range():
    pe = ma.sinusoidal_positional_encoding(200, 7)
    assert pe[0].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]  # odd dim: last column is sin
    assert pe.abs().max() <= 1.0
    assert pe.dtype == torch.float32


def test_base_argument():
    pe = ma.sinusoidal_positional_encoding(5, 4, base=100.0, dtype=torch.float64)
    assert pe[3, 2].item() == pytest.approx(math.sin(3 / 100 ** (2 / 4)))


@given(p=st.integers(0, 60), q=st.integers(0, 60), shift=st.integers(0, 60))
def test_dot_products_depend_on_the_offset_only(p, q, shift):
    """PE[p] · PE[q] = Σ cos((p - q) ω_i): shifting both positions changes nothing."""
    pe = ma.sinusoidal_positional_encoding(130, 32, dtype=torch.float64)
    assert pe[p] @ pe[q] == pytest.approx((pe[p + shift] @ pe[q + shift]).item(), abs=1e-9)


def test_a_shift_is_a_rotation_of_each_pair_of_columns():
    dim, shift = 8, 5
    pe = ma.sinusoidal_positional_encoding(40, dim, dtype=torch.float64)
    frequencies = 10000 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    rotation = torch.zeros(dim, dim, dtype=torch.float64)
    for i, w in enumerate(frequencies):
        c, s = math.cos(shift * w), math.sin(shift * w)
        # (sin(a + b), cos(a + b)) = (sin a cos b + cos a sin b, cos a cos b - sin a sin b)
        rotation[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, -s], [s, c]])
    torch.testing.assert_close(pe[shift:], pe[:-shift] @ rotation)


def test_float32_is_accurate_at_large_positions():
    pe32 = ma.sinusoidal_positional_encoding(5000, 16)
    pe64 = ma.sinusoidal_positional_encoding(5000, 16, dtype=torch.float64)
    torch.testing.assert_close(pe32, pe64.float(), atol=1e-6, rtol=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_positions=-1, dim=4"):
        ma.sinusoidal_positional_encoding(-1, 4)
    with pytest.raises(ValueError, match="dim=0"):
        ma.sinusoidal_positional_encoding(3, 0)
    with pytest.raises(TypeError, match="floating-point dtype"):
        ma.sinusoidal_positional_encoding(3, 4, dtype=torch.int64)
    assert ma.sinusoidal_positional_encoding(0, 4).shape == (0, 4)
