"""plot_attention draws a labelled heat map and refuses what it cannot draw."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import mini_attn as ma


def test_heat_map_shows_the_weights_with_labels():
    weights = torch.softmax(torch.randn(3, 4), dim=-1)
    ax = ma.plot_attention(weights, x_labels=list("abcd"), y_labels=["x", "y", "z"], title="t")
    image = ax.get_images()[0]
    np.testing.assert_allclose(image.get_array(), weights.numpy())
    assert [t.get_text() for t in ax.get_xticklabels()] == list("abcd")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y", "z"]
    assert ax.get_title() == "t" and ax.get_xlabel() == "keys" and ax.get_ylabel() == "queries"
    assert len(ax.figure.axes) == 2  # the heat map and its colour bar
    plt.close(ax.figure)


def test_draws_on_a_given_axes_without_colorbar_and_accepts_numpy():
    fig, axes = plt.subplots(1, 2)
    returned = ma.plot_attention(np.eye(3), ax=axes[1], colorbar=False, xlabel="k", ylabel="q")
    assert returned is axes[1] and len(fig.axes) == 2
    assert returned.get_xlabel() == "k"
    plt.close(fig)


def test_colour_limits_and_colorbar_label():
    similarity = torch.tensor([[1.0, -0.1], [-0.1, 1.0]])
    ax = ma.plot_attention(similarity)  # default: weights, drawn from 0 (negatives clipped)
    assert ax.get_images()[0].get_clim() == (0.0, 1.0)
    assert ax.figure.axes[1].get_ylabel() == "weight"
    plt.close(ax.figure)
    ax = ma.plot_attention(
        similarity, vmin=-1, vmax=1, cmap="RdBu_r", colorbar_label="cosine similarity"
    )
    assert ax.get_images()[0].get_clim() == (-1.0, 1.0)
    assert ax.figure.axes[1].get_ylabel() == "cosine similarity"
    plt.close(ax.figure)
    ax = ma.plot_attention(similarity, vmin=None)  # None: the data's own range
    assert ax.get_images()[0].get_clim() == pytest.approx((-0.1, 1.0))
    plt.close(ax.figure)


def test_requires_grad_tensors_are_fine():
    ax = ma.plot_attention(torch.rand(2, 2, requires_grad=True))
    plt.close(ax.figure)


@pytest.mark.parametrize(
    ("weights", "kwargs", "pattern"),
    [
        (torch.rand(2, 3, 4), {}, r"2-D matrix.*\(2, 3, 4\).*weights\[0, 0\]"),
        (
            torch.rand(2, 3),
            {"x_labels": ["a", "b"]},
            "x_labels has 2 labels but weights has 3 columns",
        ),
        (torch.rand(2, 3), {"y_labels": ["a"]}, "y_labels has 1 labels but weights has 2 rows"),
    ],
)
def test_bad_input(weights, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        ma.plot_attention(weights, **kwargs)
