"""The attention explorer: choose a layer and a head, hover a query token, read the weights.

Everything is computed before the page is shown: the weights of every layer and head are
embedded once (float32, exactly) and the interaction is JavaScript in the figure, so it works
with no kernel and no network (see :mod:`mini_attn.tools.interactive`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .._validation import fmt_shape
from .explorer_js import HOVER, REDRAW
from .interactive import InteractiveFigure

__all__ = ["AttentionExplorer", "attention_explorer"]

_CELL = 24  # pixels per token in the heat maps, at most
_WIDTH = 720  # pixels: the book's text column is about 750 wide
# a tick's label: the token at that position of the current example (integer ticks only)
_LABELS = "const t = Math.round(tick); return t === tick ? (src.data.t[t] ?? '') : '';"


def _as_array(weights, index: int | None) -> np.ndarray:
    name = "weights" if index is None else f"weights[{index}]"
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().to("cpu", torch.float32).numpy()
    array = np.asarray(weights, dtype=np.float32)
    if array.ndim != 4:
        raise ValueError(
            f"{name} must have shape (layers, heads, L, S), got {fmt_shape(array.shape)}; "
            "for one matrix use weights[None, None]"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has NaN or infinite entries")
    return array


def _check_inputs(weights, tokens, key_tokens, titles):
    """Normalise to lists of examples (weights, query tokens, key tokens, titles) and check."""
    if isinstance(weights, (torch.Tensor, np.ndarray)):
        weights, tokens = [weights], [tokens]
        key_tokens = None if key_tokens is None else [key_tokens]
        arrays = [_as_array(weights[0], None)]
    else:
        arrays = [_as_array(w, n) for n, w in enumerate(weights)]
    if len(arrays) == 0:
        raise ValueError("weights is empty: give at least one (layers, heads, L, S) tensor")
    key_tokens = tokens if key_tokens is None else key_tokens
    titles = [f"example {n + 1}" for n in range(len(arrays))] if titles is None else titles
    for name, given in (("tokens", tokens), ("key_tokens", key_tokens), ("titles", titles)):
        if len(given) != len(arrays):
            raise ValueError(f"{name} has {len(given)} entries for {len(arrays)} examples")
    if len(set(titles)) != len(titles):
        raise ValueError(f"titles must be distinct, got {list(titles)}")
    first = arrays[0].shape[:2]
    for n, (array, queries, keys) in enumerate(zip(arrays, tokens, key_tokens, strict=True)):
        layers, heads, n_queries, n_keys = array.shape
        if (layers, heads) != first:
            raise ValueError(
                f"every example needs the same layers and heads: weights[0] has {first}, "
                f"weights[{n}] has {(layers, heads)}"
            )
        if len(queries) != n_queries or len(keys) != n_keys:
            raise ValueError(
                f"example {n}: weights {fmt_shape(array.shape)} needs {n_queries} query tokens "
                f"and {n_keys} key tokens, got {len(queries)} and {len(keys)}"
            )
    return (
        arrays,
        [[str(t) for t in q] for q in tokens],
        [[str(t) for t in k] for k in key_tokens],
        [str(t) for t in titles],
    )


def _cells(fig, cells, box, colours):
    """Coloured unit cells from ``cells`` and a red outline from ``box``; the cells' renderer."""
    renderer = fig.rect(
        "x", "y", 1, 1, source=cells, line_color=None,
        fill_color={"field": "w", "transform": colours},
    )  # fmt: skip
    fig.rect("x", "y", "width", 1, source=box, fill_alpha=0, line_color="red", line_width=2)
    return renderer


class AttentionExplorer(InteractiveFigure):
    """An interactive view of attention weights; see :func:`~mini_attn.attention_explorer`.

    Attributes:
        weights (list of ndarray): one float32 array ``(layers, heads, L, S)`` per example.
        queries (list of list of str): the query tokens of each example.
        keys (list of list of str): the key tokens of each example.
        titles (list of str): the name of each example.
    """

    kind = "attention explorer"

    def __init__(self, weights, queries, keys, titles, *, query_label, key_label, vmax):
        self.weights, self.queries, self.keys, self.titles = weights, queries, keys, titles
        self.query_label, self.key_label = query_label, key_label
        self.vmax = float(max(w.max() for w in weights)) if vmax is None else float(vmax)

    @property
    def embedded_weights(self) -> np.ndarray:
        """All examples' weights, flattened in the order the figure embeds them."""
        return np.concatenate([w.ravel() for w in self.weights])

    def _view(self, example: int, layer: int, head: int, query: int) -> dict:
        """The data of every panel for one choice (what the JavaScript computes on a change)."""
        w = self.weights[example]
        qt, kt = self.queries[example], self.keys[example]
        n_queries, n_keys = len(qt), len(kt)
        i, j = np.divmod(np.arange(n_queries * n_keys), n_keys)
        h, jh = np.divmod(np.arange(w.shape[1] * n_keys), n_keys)
        return {
            "cells": {
                "x": j.tolist(), "y": i.tolist(), "w": w[layer, head].ravel().tolist(),
                "q": [qt[a] for a in i], "k": [kt[b] for b in j],
            },
            "row": {"x": list(range(n_keys)), "w": w[layer, head, query].tolist(), "k": kt},
            "outline": {"x": [(n_keys - 1) / 2], "y": [query], "width": [n_keys], "h": [head]},
            "per_head": {
                "x": jh.tolist(), "y": h.tolist(), "w": w[layer, :, query].ravel().tolist(),
                "k": [kt[b] for b in jh], "h": h.tolist(),
            },
            "head_box": {"x": [(n_keys - 1) / 2], "y": [head], "width": [n_keys]},
        }  # fmt: skip

    def _titles(self, example: int, layer: int, head: int, query: int) -> dict[str, str]:
        """The panels' titles for one choice (the JavaScript writes the same)."""
        layers, n_heads = self.weights[example].shape[:2]
        where = ", ".join([f"layer {layer}"] * (layers > 1) + [f"head {head}"] * (n_heads > 1))
        token = self.queries[example][query]
        return {
            "heat": ": ".join(
                t for t in [self.titles[example] * (len(self.titles) > 1), where] if t
            ),
            "bars": f'query "{token}"' + (f" ({where})" if where else "") + ": its weights",
            "heads": f'query "{token}": every head of layer {layer}',
        }

    def _sources(self) -> dict:
        """The figure's data: the embedded weights, what the page shows first, the labels."""
        from bokeh.models import ColumnDataSource

        layers, n_heads = self.weights[0].shape[:2]
        view = self._view(0, 0, 0, 0)  # what the page shows first: drawn without JavaScript
        src = {name: ColumnDataSource(view[name], name=name) for name in view}
        src["row_source"] = src.pop("row")
        src.update(
            store=ColumnDataSource({"w": self.embedded_weights}, name="weights"),
            state=ColumnDataSource({"example": [0], "query": [0]}),
            qlabels=ColumnDataSource({"t": self.queries[0]}),
            klabels=ColumnDataSource({"t": self.keys[0]}),
            meta={
                "titles": self.titles,
                "queries": self.queries,
                "keys": self.keys,
                "L": [len(q) for q in self.queries],
                "S": [len(k) for k in self.keys],
                "offsets": np.cumsum([0] + [w.size for w in self.weights[:-1]]).tolist(),
                "layers": layers,
                "heads": n_heads,
            },
        )
        return src

    def _figure(self, name: str, width: int, height: int, y_range, src: dict, tickers_x: list):
        """An empty panel whose x axis is the key tokens (its ticker joins ``tickers_x``)."""
        from bokeh.models import CustomJSTickFormatter, FixedTicker, Range1d
        from bokeh.plotting import figure

        fig = figure(
            width=width,
            height=height,
            x_range=Range1d(-0.5, len(self.keys[0]) - 0.5),
            y_range=y_range,
            tools="",
            title=self._titles(0, 0, 0, 0)[name],
            name=name,
        )
        ticker = FixedTicker(ticks=list(range(len(self.keys[0]))))
        tickers_x.append(ticker)
        fig.xaxis.ticker = ticker
        fig.xaxis.formatter = CustomJSTickFormatter(args={"src": src["klabels"]}, code=_LABELS)
        fig.xaxis.major_label_orientation = np.pi / 2
        fig.xaxis.axis_label = self.key_label
        fig.xgrid.visible = fig.ygrid.visible = False
        fig.toolbar_location = None
        return fig

    def _heat(self, src: dict, width: int, cell: int, colours, tickers_x: list):
        """The heat map of one head, the hovered query outlined; returns it, its cells, ticker."""
        from bokeh.models import ColorBar, CustomJSTickFormatter, FixedTicker, Range1d

        n_queries = max(len(q) for q in self.queries)
        y_range = Range1d(len(self.queries[0]) - 0.5, -0.5)
        heat = self._figure(
            "heat", width, max(260, cell * n_queries + 130), y_range, src, tickers_x
        )
        cells = _cells(heat, src["cells"], src["outline"], colours)
        ticker_y = FixedTicker(ticks=list(range(len(self.queries[0]))))
        heat.yaxis.ticker = ticker_y
        heat.yaxis.formatter = CustomJSTickFormatter(args={"src": src["qlabels"]}, code=_LABELS)
        heat.yaxis.axis_label = self.query_label
        heat.add_layout(
            ColorBar(color_mapper=colours, title="weight (one scale for every head)"), "right"
        )
        return heat, cells, ticker_y

    def _bars(self, src: dict, width: int, tickers_x: list):
        """The hovered query's weights over the keys, the exact weight on hover."""
        from bokeh.models import HoverTool, Range1d

        bars = self._figure("bars", width, 230, Range1d(0, 1.02 * self.vmax), src, tickers_x)
        renderer = bars.vbar("x", 0.8, "w", source=src["row_source"], color="#3b528b")
        bars.yaxis.axis_label = "weight"
        bars.add_tools(
            HoverTool(renderers=[renderer], tooltips=[("key", "@k"), ("weight", "@w{0.0000}")])
        )
        return bars

    def _heads(self, src: dict, width: int, colours, tickers_x: list):
        """Every head's weights for the hovered query (None for a single head)."""
        from bokeh.models import FixedTicker, HoverTool, Range1d

        n_heads = self.weights[0].shape[1]
        if n_heads == 1:
            return None
        y_range = Range1d(n_heads - 0.5, -0.5)
        heads = self._figure("heads", width, max(200, 18 * n_heads + 130), y_range, src, tickers_x)
        renderer = _cells(heads, src["per_head"], src["head_box"], colours)
        heads.yaxis.ticker = FixedTicker(ticks=list(range(n_heads)))
        heads.yaxis.axis_label = "head"
        heads.add_tools(
            HoverTool(
                renderers=[renderer],
                tooltips=[("head", "@h"), ("key", "@k"), ("weight", "@w{0.0000}")],
            )
        )
        return heads

    def _build(self):
        from bokeh.layouts import column, row
        from bokeh.models import CustomJS, Div, HoverTool, LinearColorMapper, Select, Slider
        from bokeh.palettes import Viridis256

        layers, n_heads = self.weights[0].shape[:2]
        n_keys = max(len(k) for k in self.keys)
        src = self._sources()
        colours = LinearColorMapper(palette=Viridis256, low=0.0, high=self.vmax)
        cell = max(12, min(_CELL, (_WIDTH - 160) // n_keys))  # long inputs: smaller cells
        width = max(320, cell * n_keys + 160)
        tickers_x = []
        heat, cells_renderer, ticker_y = self._heat(src, width, cell, colours, tickers_x)
        bars = self._bars(src, width, tickers_x)
        heads = self._heads(src, width, colours, tickers_x)

        example = Select(
            title="example", value=self.titles[0], options=self.titles, visible=len(self.titles) > 1
        )
        layer_slider = Slider(
            title="layer", start=0, end=max(layers - 1, 1), value=0, step=1, visible=layers > 1
        )
        head_slider = Slider(
            title="head", start=0, end=max(n_heads - 1, 1), value=0, step=1, visible=n_heads > 1
        )
        redraw = CustomJS(
            args=dict(
                meta=src["meta"], store=src["store"], cells=src["cells"], row=src["row_source"],
                outline=src["outline"], per_head=src["per_head"], head_box=src["head_box"],
                state=src["state"], qlabels=src["qlabels"], klabels=src["klabels"], heat=heat,
                bars=bars, heads=heads, tickers_x=tickers_x, ticker_y=ticker_y, example=example,
                layer_slider=layer_slider, head_slider=head_slider,
            ),
            code=REDRAW,
        )  # fmt: skip
        hover = CustomJS(
            args={"cells": src["cells"], "state": src["state"], "redraw": redraw}, code=HOVER
        )
        heat.add_tools(
            HoverTool(
                renderers=[cells_renderer],
                tooltips=[("query", "@q"), ("key", "@k"), ("weight", "@w{0.0000}")],
                callback=hover,
            )
        )
        for widget in (example, layer_slider, head_slider):
            widget.js_on_change("value", redraw)
        hint = Div(
            text="Hover a row of the heat map: the bars show that query's weights"
            + (", and the lower panel every head's." if n_heads > 1 else ".")
        )
        controls = row(example, layer_slider, head_slider)
        panels = [heat, bars] + ([heads] if heads is not None else [])
        return column(controls, hint, *panels, name="attention-explorer")

    def _draw_static(self):
        import matplotlib.pyplot as plt

        from .plotting import plot_attention

        matrix = self.weights[0][0, 0]
        fig, ax = plt.subplots(
            figsize=(max(3.0, 0.3 * matrix.shape[1] + 1.5), max(2.5, 0.3 * matrix.shape[0] + 1))
        )
        names = (["layer 0"] if self.weights[0].shape[0] > 1 else []) + (
            ["head 0"] if self.weights[0].shape[1] > 1 else []
        )
        plot_attention(
            matrix, x_labels=self.keys[0], y_labels=self.queries[0], ax=ax,
            title=", ".join([self.titles[0]] * (len(self.titles) > 1) + names) or None,
            xlabel=self.key_label, ylabel=self.query_label, vmax=self.vmax,
        )  # fmt: skip
        return fig


def attention_explorer(
    weights,
    tokens: Sequence[str] | Sequence[Sequence[str]],
    *,
    key_tokens: Sequence[str] | Sequence[Sequence[str]] | None = None,
    titles: Sequence[str] | None = None,
    query_label: str = "query token",
    key_label: str = "key token",
    vmax: float | None = None,
) -> AttentionExplorer:
    """An interactive figure of attention weights, for Jupyter and for the book, offline.

    A slider picks the layer and another the head (a menu picks the example, when there are
    several); the heat map shows that head's weights, one row per query token and one column
    per key token, with the exact weight on hover. Hovering a row selects its query: a bar
    chart shows its weights over the keys and, with several heads, a second heat map shows
    where that query looks in every head of the layer. Without JavaScript the figure is a
    static image of layer 0, head 0 of the first example (numbered from 0, as the
    tensor's indices).

    Args:
        weights (Tensor or sequence): attention weights of shape
            :math:`(N_\\text{layers}, H, L, S)`, or one such tensor per example (the same
            number of layers and heads; ``L`` and ``S`` may differ). One matrix is
            ``weights[None, None]``.
        tokens (sequence): the ``L`` query tokens (str), or one such list per example.
        key_tokens (sequence, optional): the ``S`` key tokens, or one list per example.
            Default: ``tokens`` (self-attention).
        titles (sequence of str, optional): a distinct name per example, shown in the menu.
        query_label (str): the name of the query axis. Default: ``"query token"``.
        key_label (str): the name of the key axis. Default: ``"key token"``.
        vmax (float, optional): the weight drawn with the brightest colour, one scale for
            every head and layer. Default: the largest weight.

    Returns:
        An :class:`~mini_attn.tools.explorer.AttentionExplorer`, which displays itself in
        Jupyter and in the book (``text/html``, with an ``image/png`` for PDF and notebooks
        without JavaScript); ``.to_html()`` gives the fragment, ``.nbytes`` its size,
        ``.embedded_weights`` the numbers it embeds.

    Raises:
        ValueError: if a weight tensor is not 4-D or not finite, if the tokens do not match
            its ``L`` and ``S``, or if the examples differ in layers or heads.

    Shape legend:

    - ``N_layers``: layers
    - ``H``: heads per layer
    - ``L``: queries
    - ``S``: keys
    """
    arrays, queries, keys, names = _check_inputs(weights, tokens, key_tokens, titles)
    return AttentionExplorer(
        arrays, queries, keys, names, query_label=query_label, key_label=key_label, vmax=vmax
    )
