"""Figures of attention weights."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .._validation import fmt_shape

__all__ = ["plot_attention"]


def _as_matrix(weights) -> np.ndarray:
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().to("cpu", torch.float32).numpy()
    matrix = np.asarray(weights, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(
            f"weights must be a 2-D matrix (queries × keys), got shape {fmt_shape(matrix.shape)}; "
            "select one example and one head first, e.g. weights[0, 0]"
        )
    return matrix


def plot_attention(
    weights,
    *,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    ax=None,
    title: str | None = None,
    xlabel: str = "keys",
    ylabel: str = "queries",
    cmap: str = "viridis",
    colorbar: bool = True,
    vmin: float | None = 0.0,
    vmax: float | None = None,
    colorbar_label: str = "weight",
):
    """Draw a weight matrix as a labelled heat map: one row per query, one column per key.

    Args:
        weights (Tensor or array): shape :math:`(L, S)`.
        x_labels (sequence of str, optional): one label per key (column).
        y_labels (sequence of str, optional): one label per query (row).
        ax (matplotlib Axes, optional): where to draw; a new figure if None.
        title (str, optional): the title of the axes.
        xlabel (str): the name of the horizontal axis. Default: ``"keys"``.
        ylabel (str): the name of the vertical axis. Default: ``"queries"``.
        cmap (str): a matplotlib colour map. Default: ``"viridis"``.
        colorbar (bool): add a colour bar. Default: True.
        vmin (float, optional): the value drawn with the lowest colour; smaller values are
            drawn with it too. None takes the smallest value of ``weights``. Default: 0, the
            smallest possible weight.
        vmax (float, optional): the value drawn with the highest colour. Default: None, the
            largest value of ``weights``.
        colorbar_label (str): the label of the colour bar. Default: ``"weight"``.

    Returns:
        matplotlib Axes: the axes drawn on.

    Shape legend: ``L`` queries, ``S`` keys.
    """
    import matplotlib.pyplot as plt

    matrix = _as_matrix(weights)
    n_rows, n_cols = matrix.shape
    for name, labels, n, what in (
        ("x_labels", x_labels, n_cols, "columns (keys)"),
        ("y_labels", y_labels, n_rows, "rows (queries)"),
    ):
        if labels is not None and len(labels) != n:
            raise ValueError(f"{name} has {len(labels)} labels but weights has {n} {what}")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(3.0, 0.3 * n_cols + 1.5), max(2.5, 0.3 * n_rows + 1)))
    image = ax.imshow(
        matrix, cmap=cmap, aspect="auto", interpolation="nearest", vmin=vmin, vmax=vmax
    )
    if x_labels is not None:
        ax.set_xticks(range(n_cols), [str(s) for s in x_labels], rotation=90)
    if y_labels is not None:
        ax.set_yticks(range(n_rows), [str(s) for s in y_labels])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label=colorbar_label, fraction=0.046, pad=0.04)
    return ax
