"""Figures: attention weights as heat maps, and the roofline of a device (chapter 8)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .._validation import fmt_shape
from .roofline import attainable_flops

__all__ = ["plot_attention", "plot_roofline", "point_style"]

_MARKERS = "osD^v<>Ph*X"


def point_style(i: int) -> dict:
    """The colour and marker of the ``i``-th point or line of a figure, distinct for i < 110.

    Matplotlib's default cycle has 10 colours; past 10 points the marker changes, so that
    no two of the first 110 share both colour and marker.

    Args:
        i (int): the index of the point, from 0.

    Returns:
        dict: ``color`` and ``marker``, keyword arguments of ``Axes.plot``.
    """
    return {"color": f"C{i % 10}", "marker": _MARKERS[(i // 10) % len(_MARKERS)]}


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

    Shape legend:

    - ``L``: queries
    - ``S``: keys
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


def plot_roofline(
    peak_flops: float,
    bandwidth: float,
    *,
    points: Sequence[tuple[str, float, float]] = (),
    ax=None,
    title: str | None = None,
    intensity_range: tuple[float, float] | None = None,
    label: str = "roofline",
    color: str = "k",
):
    """Draw the roofline of a device and place measured computations under it.

    Log-log axes: arithmetic intensity (FLOP/byte) horizontally, FLOP/s vertically. The
    slanted part is the memory ceiling, the flat part the compute ceiling; they meet at
    the ridge point ``peak_flops / bandwidth``. A computation left of the ridge is
    memory-bound, right of it compute-bound.

    Args:
        peak_flops (float): the compute ceiling in FLOP/s.
        bandwidth (float): the memory ceiling in bytes/s.
        points (sequence of (str, float, float)): ``(label, intensity, achieved FLOP/s)``
            for each measured computation.
        ax (matplotlib Axes, optional): where to draw; a new figure if None.
        title (str, optional): the title of the axes.
        intensity_range (tuple of float, optional): the horizontal range. Default: from
            the points and the ridge point, with a margin.
        label (str): the legend label of the ceilings. Default: ``"roofline"``.
        color (str): the colour of the ceilings and the ridge line. Default: black.

    Returns:
        matplotlib Axes: the axes drawn on.

    Raises:
        ValueError: if ``peak_flops`` or ``bandwidth`` is not positive.
    """
    import matplotlib.pyplot as plt

    attainable_flops(1.0, peak_flops, bandwidth)  # checks the ceilings
    ridge = peak_flops / bandwidth
    if intensity_range is None:
        values = [ridge] + [p[1] for p in points]
        intensity_range = (min(values) / 8, max(values) * 8)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    x = np.geomspace(*intensity_range, 200)
    ax.loglog(x, attainable_flops(x, peak_flops, bandwidth), "-", color=color, lw=2, label=label)
    ax.axvline(ridge, color=color, ls=":", lw=1, label=f"ridge point, {ridge:.3g} FLOP/byte")
    for i, (name, intensity, achieved) in enumerate(points):
        ax.loglog([intensity], [achieved], ls="none", label=name, **point_style(i))
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("FLOP/s")
    if title is not None:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return ax
