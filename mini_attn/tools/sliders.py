"""Explorable figures: curves and bars that move with a slider, precomputed, offline.

A chapter computes what the figure shows for every value of a parameter (a bandwidth, a
temperature, ...) and the slider picks which one is drawn; the page needs no kernel, and the
numbers drawn are the chapter's (see :mod:`mini_attn.tools.interactive`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .._validation import fmt_shape
from .interactive import InteractiveFigure

__all__ = ["SliderFigure", "slider_figure"]

_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")

_MOVE = """
const k = slider.value;
for (const [source, store, n] of moving) {
  source.data = {x: source.data.x, y: Array.from(store.data.y.slice(k * n, (k + 1) * n))};
}
note.text = notes.length ? notes[k] : "";
"""


def _as_array(values, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has NaN or infinite entries")
    return array


class _Panel:
    """One plot of a :class:`SliderFigure`: add series with :meth:`line`, :meth:`scatter`,
    :meth:`bars`; a series whose ``y`` has one row per slider value moves with the slider."""

    def __init__(self, owner, title, xlabel, ylabel, ylim):
        self.owner, self.title, self.xlabel, self.ylabel, self.ylim = (
            owner, title, xlabel, ylabel, ylim,
        )  # fmt: skip
        self.series: list[dict] = []

    def _add(self, kind, x, y, label, colour, width=None):
        x = _as_array(x, "x")
        y = _as_array(y, "y")
        n_values = len(self.owner.values)
        if x.ndim != 1:
            raise ValueError(f"x must be 1-D, got shape {fmt_shape(x.shape)}")
        if y.shape not in ((len(x),), (n_values, len(x))):
            raise ValueError(
                f"y must have shape ({len(x)},) (fixed) or ({n_values}, {len(x)}) (one row per "
                f"slider value), got {fmt_shape(y.shape)}"
            )
        colour = colour or _COLOURS[len(self.series) % len(_COLOURS)]
        if width is None and kind == "bars":
            gaps = np.diff(np.unique(x))
            width = 0.8 * (gaps.min() if len(gaps) else 1.0)
        self.series.append(
            {"kind": kind, "x": x, "y": y, "label": label, "colour": colour, "width": width}
        )
        return self

    def line(self, x, y, *, label: str | None = None, colour: str | None = None):
        """A line through ``(x, y)``; ``y`` of shape ``(n,)`` or ``(n_values, n)`` (moves)."""
        return self._add("line", x, y, label, colour)

    def scatter(self, x, y, *, label: str | None = None, colour: str | None = None):
        """Points at ``(x, y)``; ``y`` of shape ``(n,)`` or ``(n_values, n)`` (moves)."""
        return self._add("scatter", x, y, label, colour)

    def bars(self, x, y, *, label: str | None = None, colour: str | None = None, width=None):
        """Vertical bars of height ``y`` at ``x``; ``(n,)`` or ``(n_values, n)`` (moves).
        ``width``: of each bar, in units of ``x``; default 0.8 of the smallest gap."""
        return self._add("bars", x, y, label, colour, width)


class SliderFigure(InteractiveFigure):
    """Panels whose series move with one slider; see :func:`~mini_attn.slider_figure`.

    Attributes:
        values (ndarray): the parameter's values, one per slider position.
        panels (list): the panels, in the order added.
    """

    kind = "explorable figure"

    def __init__(self, values, name, *, start, notes, digits):
        self.values, self.name, self.start, self.notes, self.digits = (
            values, name, start, notes, digits,
        )  # fmt: skip
        self.panels: list[_Panel] = []

    def panel(
        self,
        *,
        title: str = "",
        xlabel: str = "",
        ylabel: str = "",
        ylim: tuple[float, float] | None = None,
    ) -> _Panel:
        """Add a panel (drawn left to right) and return it, to add series to.

        Args:
            title (str): the panel's title.
            xlabel (str): the name of the horizontal axis.
            ylabel (str): the name of the vertical axis.
            ylim (tuple of float, optional): the vertical range, fixed while the slider moves.
                Default: the range of every value the panel can show.

        Returns:
            the panel, with ``line``, ``scatter`` and ``bars`` methods.
        """
        self.__dict__.pop("model", None)
        self.__dict__.pop("_components", None)
        self.__dict__.pop("static_png", None)
        created = _Panel(self, title, xlabel, ylabel, ylim)
        self.panels.append(created)
        return created

    def _label(self, k: int) -> str:
        return f"{self.name} = {self.values[k]:.{self.digits}g}"

    def _limits(self, p: _Panel) -> tuple[float, float]:
        if p.ylim is not None:
            return p.ylim
        low = min(
            [0.0] * any(s["kind"] == "bars" for s in p.series) + [s["y"].min() for s in p.series]
        )
        high = max(s["y"].max() for s in p.series)
        pad = 0.05 * (high - low or 1.0)
        return low - pad * (low != 0), high + pad

    def _build(self):
        from bokeh.layouts import column, row
        from bokeh.models import (
            ColumnDataSource,
            CustomJS,
            CustomJSTickFormatter,
            Div,
            Range1d,
            Slider,
        )
        from bokeh.plotting import figure

        if not self.panels or not any(p.series for p in self.panels):
            raise ValueError("the figure has no series: add panels with .panel().line(...)")
        k = self.start
        moving, figures = [], []
        width = 560 if len(self.panels) == 1 else 720 // len(self.panels)  # a ~750 px column
        for p in self.panels:
            fig = figure(
                width=width, height=320, title=p.title, tools="", toolbar_location=None,
                x_axis_label=p.xlabel, y_axis_label=p.ylabel, y_range=Range1d(*self._limits(p)),
            )  # fmt: skip
            for s in p.series:
                moves = s["y"].ndim == 2
                shown = s["y"].astype(np.float32)[k] if moves else s["y"]
                source = ColumnDataSource({"x": s["x"].tolist(), "y": shown.tolist()})
                if moves:
                    store = ColumnDataSource({"y": s["y"].astype(np.float32).ravel()})
                    moving.append([source, store, len(s["x"])])
                legend = {} if s["label"] is None else {"legend_label": s["label"]}
                if s["kind"] == "line":
                    fig.line("x", "y", source=source, color=s["colour"], line_width=2, **legend)
                elif s["kind"] == "scatter":
                    fig.scatter("x", "y", source=source, color=s["colour"], size=6, **legend)
                else:
                    fig.vbar("x", s["width"], "y", source=source, color=s["colour"], **legend)
            if any(s["label"] for s in p.series):
                fig.legend.location = "top_left"
                fig.legend.background_fill_alpha = 0.6
            figures.append(fig)
        slider = Slider(
            start=0, end=max(len(self.values) - 1, 1), value=k, step=1, title=self.name,
            width=min(width * len(self.panels), 700), name="slider",
            format=CustomJSTickFormatter(
                args={"values": self.values.tolist(), "digits": self.digits},
                code="return Number(values[Math.round(tick)].toPrecision(digits)).toString();",
            ),
        )  # fmt: skip
        note = Div(text=self.notes[k] if self.notes else "", name="note")
        slider.js_on_change(
            "value",
            CustomJS(args={"slider": slider, "moving": moving, "note": note, "notes": self.notes},
                     code=_MOVE),
        )  # fmt: skip
        return column(slider, note, row(*figures), name="slider-figure")

    def _draw_static(self):
        import matplotlib.pyplot as plt

        k = self.start
        fig, axes = plt.subplots(
            1, len(self.panels), figsize=(4.6 * len(self.panels), 3.4), squeeze=False,
            layout="constrained",
        )  # fmt: skip
        for ax, p in zip(axes[0], self.panels, strict=True):
            for s in p.series:
                y = s["y"][k] if s["y"].ndim == 2 else s["y"]
                if s["kind"] == "line":
                    ax.plot(s["x"], y, color=s["colour"], label=s["label"])
                elif s["kind"] == "scatter":
                    ax.scatter(s["x"], y, color=s["colour"], s=12, label=s["label"])
                else:
                    ax.bar(s["x"], y, s["width"], color=s["colour"], label=s["label"])
            ax.set(title=p.title, xlabel=p.xlabel, ylabel=p.ylabel, ylim=self._limits(p))
            if any(s["label"] for s in p.series):
                ax.legend(fontsize=8, loc="upper left")
        fig.suptitle(self._label(k))
        return fig


def slider_figure(
    values,
    name: str,
    *,
    start: int = 0,
    notes: Sequence[str] | None = None,
    digits: int = 3,
) -> SliderFigure:
    """A figure whose curves and bars move with a slider over precomputed parameter values.

    Add panels with ``.panel(title=, xlabel=, ylabel=)`` and series to them with
    ``.line(x, y)``, ``.scatter(x, y)`` and ``.bars(x, y)``: a series with ``y`` of shape
    ``(n,)`` is fixed, one with ``y`` of shape ``(len(values), n)`` shows row ``k`` when
    the slider is at ``values[k]``. Everything is embedded in the figure, so it works in the
    static book with no kernel; without JavaScript it is a static image at ``values[start]``.

    Args:
        values (sequence): the parameter's values (float), one per slider position.
        name (str): the parameter's name, shown on the slider (e.g. ``"bandwidth h"``).
        start (int): the slider's first position (an index into ``values``). Default: 0.
        notes (sequence of str, optional): one line of text per value, shown under the slider
            (e.g. a measured error for that value).
        digits (int): significant digits of the value shown on the slider. Default: 3.

    Returns:
        A :class:`~mini_attn.tools.sliders.SliderFigure`: add panels to it; it displays
        itself in Jupyter and in the book.

    Raises:
        ValueError: if ``values`` is not 1-D and finite, ``start`` is not one of its
            indices, ``notes`` does not have one line per value, or a series' ``y`` has
            neither shape.

    Shape legend:

    - ``n``: points (or bars) of a series
    - ``len(values)``: positions of the slider
    """
    array = _as_array(values, "values")
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(
            f"values must be a non-empty 1-D sequence, got shape {fmt_shape(array.shape)}"
        )
    if not 0 <= start < len(array):
        raise ValueError(f"start must be an index of values (0 to {len(array) - 1}), got {start}")
    notes = [] if notes is None else [str(n) for n in notes]
    if notes and len(notes) != len(array):
        raise ValueError(f"notes has {len(notes)} lines for {len(array)} values")
    return SliderFigure(array, name, start=start, notes=notes, digits=digits)
