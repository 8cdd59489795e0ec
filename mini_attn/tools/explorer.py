"""The attention explorer: choose a layer and a head, hover a query token, read the weights.

Everything is computed before the page is shown: the weights of every layer and head are
embedded once (float32, exactly) and the interaction is JavaScript in the figure, so it works
with no kernel and no network (see :mod:`mini_attn.tools.interactive`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .explorer_checks import check_inputs, check_start, check_vmax
from .explorer_js import HOVER, REDRAW
from .interactive import InteractiveFigure

__all__ = ["AttentionExplorer", "attention_explorer"]

_CELL = 24  # pixels per token in the heat maps, at most
_WIDTH = 720  # pixels: the book's text column is about 750 wide
# a tick's label: the token at that position of the current example (integer ticks only)
_LABELS = "const t = Math.round(tick); return t === tick ? (src.data.t[t] ?? '') : '';"


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
        start (tuple of int): the ``(example, layer, head)`` shown first.
        vmax (float or None): the top of the colour scale shared by every head; None when
            each head has its own (``vmax="head"``).
    """

    kind = "attention explorer"

    def __init__(
        self, weights, queries, keys, titles, *, query_label, key_label, vmax, start=(0, 0, 0)
    ):
        self.weights, self.queries, self.keys, self.titles = weights, queries, keys, titles
        self.query_label, self.key_label = query_label, key_label
        self.start = start  # the (example, layer, head) shown first
        self.per_head = vmax == "head"  # each head's own colour scale
        largest = float(max(w.max() for w in weights))
        self.vmax = None if self.per_head else largest if vmax is None else float(vmax)
        shared = "weight (one scale for the whole figure)"
        self.scale_label = "weight (0 to this head's largest)" if self.per_head else shared

    def _top(self, example: int, layer: int, head: int) -> float:
        """The weight drawn brightest when this head is shown (1 for an all-zero head)."""
        if not self.per_head:
            return self.vmax
        return float(self.weights[example][layer, head].max()) or 1.0

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
        example = self.start[0]
        # what the page shows first, drawn without JavaScript
        view = self._view(*self.start, 0)
        src = {name: ColumnDataSource(view[name], name=name) for name in view}
        src["row_source"] = src.pop("row")
        src.update(
            store=ColumnDataSource({"w": self.embedded_weights}, name="weights"),
            state=ColumnDataSource({"example": [example], "query": [0]}, name="state"),
            qlabels=ColumnDataSource({"t": self.queries[example]}),
            klabels=ColumnDataSource({"t": self.keys[example]}),
            meta={
                "titles": self.titles,
                "queries": self.queries,
                "keys": self.keys,
                "L": [len(q) for q in self.queries],
                "S": [len(k) for k in self.keys],
                "offsets": np.cumsum([0] + [w.size for w in self.weights[:-1]]).tolist(),
                "layers": layers,
                "heads": n_heads,
                "scale": "head" if self.per_head else "shared",
            },
        )
        return src

    def _figure(self, name: str, width: int, height: int, y_range, src: dict, tickers_x: list):
        """An empty panel whose x axis is the key tokens (its ticker joins ``tickers_x``)."""
        from bokeh.models import CustomJSTickFormatter, FixedTicker, Range1d
        from bokeh.plotting import figure

        n_keys = len(self.keys[self.start[0]])
        fig = figure(
            width=width,
            height=height,
            x_range=Range1d(-0.5, n_keys - 0.5),
            y_range=y_range,
            tools="",
            title=self._titles(*self.start, 0)[name],
            name=name,
        )
        ticker = FixedTicker(ticks=list(range(n_keys)))
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
        shown = len(self.queries[self.start[0]])
        y_range = Range1d(shown - 0.5, -0.5)
        heat = self._figure(
            "heat", width, max(260, cell * n_queries + 130), y_range, src, tickers_x
        )
        cells = _cells(heat, src["cells"], src["outline"], colours)
        ticker_y = FixedTicker(ticks=list(range(shown)))
        heat.yaxis.ticker = ticker_y
        heat.yaxis.formatter = CustomJSTickFormatter(args={"src": src["qlabels"]}, code=_LABELS)
        heat.yaxis.axis_label = self.query_label
        heat.add_layout(ColorBar(color_mapper=colours, title=self.scale_label), "right")
        return heat, cells, ticker_y

    def _bars(self, src: dict, width: int, tickers_x: list):
        """The hovered query's weights over the keys, the exact weight on hover."""
        from bokeh.models import HoverTool, Range1d

        top = 1.02 * self._top(*self.start)
        bars = self._figure("bars", width, 230, Range1d(0, top), src, tickers_x)
        renderer = bars.vbar("x", 0.8, "w", source=src["row_source"], color="#3b528b")
        bars.yaxis.axis_label = "weight"
        bars.add_tools(
            HoverTool(renderers=[renderer], tooltips=[("key", "@k"), ("weight", "@w{0.0000}")])
        )
        return bars

    def _heads(self, src: dict, width: int, colours, tickers_x: list):
        """Every head's weights for the hovered query (None for a single head).

        With a colour scale per head (``vmax="head"``), ``colours`` is this panel's own,
        its top the largest weight the panel shows, and it gets its own colour bar.
        """
        from bokeh.models import ColorBar, FixedTicker, HoverTool, Range1d

        n_heads = self.weights[0].shape[1]
        if n_heads == 1:
            return None
        y_range = Range1d(n_heads - 0.5, -0.5)
        heads = self._figure("heads", width, max(200, 18 * n_heads + 130), y_range, src, tickers_x)
        renderer = _cells(heads, src["per_head"], src["head_box"], colours)
        heads.yaxis.ticker = FixedTicker(ticks=list(range(n_heads)))
        heads.yaxis.axis_label = "head"
        if self.per_head:
            title = "weight (0 to this panel's largest)"
            heads.add_layout(ColorBar(color_mapper=colours, title=title), "right")
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
        e, layer, head = self.start
        n_keys = max(len(k) for k in self.keys)
        src = self._sources()
        colours = LinearColorMapper(palette=Viridis256, low=0.0, high=self._top(*self.start))
        head_colours = colours
        if self.per_head:  # the per-head panel's own scale: its largest weight
            top = float(self.weights[e][layer, :, 0].max()) or 1.0
            head_colours = LinearColorMapper(palette=Viridis256, low=0.0, high=top)
        cell = max(12, min(_CELL, (_WIDTH - 160) // n_keys))  # long inputs: smaller cells
        width = max(320, cell * n_keys + 160)
        tickers_x = []
        heat, cells_renderer, ticker_y = self._heat(src, width, cell, colours, tickers_x)
        bars = self._bars(src, width, tickers_x)
        heads = self._heads(src, width, head_colours, tickers_x)

        example = Select(
            title="example", value=self.titles[e], options=self.titles, visible=len(self.titles) > 1
        )
        layer_slider = Slider(
            title="layer", start=0, end=max(layers - 1, 1), value=layer, step=1,
            visible=layers > 1, name="layer_slider",
        )  # fmt: skip
        head_slider = Slider(
            title="head", start=0, end=max(n_heads - 1, 1), value=head, step=1,
            visible=n_heads > 1, name="head_slider",
        )  # fmt: skip
        redraw = CustomJS(
            args=dict(
                meta=src["meta"], store=src["store"], cells=src["cells"], row=src["row_source"],
                outline=src["outline"], per_head=src["per_head"], head_box=src["head_box"],
                state=src["state"], qlabels=src["qlabels"], klabels=src["klabels"], heat=heat,
                bars=bars, heads=heads, tickers_x=tickers_x, ticker_y=ticker_y, example=example,
                layer_slider=layer_slider, head_slider=head_slider, colours=colours,
                head_colours=head_colours,
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

        e, layer, head = self.start
        matrix = self.weights[e][layer, head]
        fig, ax = plt.subplots(
            figsize=(max(3.0, 0.3 * matrix.shape[1] + 1.5), max(2.5, 0.3 * matrix.shape[0] + 1))
        )
        plot_attention(
            matrix, x_labels=self.keys[e], y_labels=self.queries[e], ax=ax,
            title=self._titles(e, layer, head, 0)["heat"] or None,
            xlabel=self.key_label, ylabel=self.query_label, vmax=self._top(e, layer, head),
            colorbar_label=self.scale_label,
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
    vmax: float | str | None = None,
    example: int = 0,
    layer: int = 0,
    head: int = 0,
) -> AttentionExplorer:
    """An interactive figure of attention weights, for Jupyter and for the book, offline.

    A slider picks the layer and another the head (a menu picks the example, when there are
    several); the heat map shows that head's weights, one row per query token and one column
    per key token, with the exact weight on hover. Hovering a row selects its query: a bar
    chart shows its weights over the keys and, with several heads, a second heat map shows
    where that query looks in every head of the layer. The figure starts at ``example``,
    ``layer`` and ``head`` (numbered from 0, as the tensor's indices), with its first query
    selected; without JavaScript it is a static image of that starting head.

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
        vmax (float or str, optional): the weight drawn with the brightest colour. A number
            or None gives one scale for every example, layer and head, from 0 to that number
            (None: the largest weight given). ``"head"`` gives each head its own scale, from
            0 to the largest weight of the head shown, so that a head whose weights are
            spread is not drawn dark; the per-head panel then has its own scale and colour
            bar, from 0 to the largest weight it shows. The colour bars say which.
            Default: None.
        example (int): the example shown first, an index into ``weights``. Default: 0.
        layer (int): the layer shown first, from 0 to ``N_layers - 1``. Default: 0.
        head (int): the head shown first, from 0 to ``H - 1``. Default: 0.

    Returns:
        An :class:`~mini_attn.tools.explorer.AttentionExplorer`, which displays itself in
        Jupyter and in the book (``text/html``, with an ``image/png`` for PDF and notebooks
        without JavaScript); ``.to_html()`` gives the fragment, ``.nbytes`` its size,
        ``.embedded_weights`` the numbers it embeds.

    Raises:
        ValueError: if a weight tensor is not 4-D or not finite, if the tokens do not match
            its ``L`` and ``S``, if the examples differ in layers or heads, if ``example``,
            ``layer`` or ``head`` is not an integer index within its range, or if ``vmax``
            is neither None, ``"head"`` nor a positive number.

    Shape legend:

    - ``N_layers``: layers
    - ``H``: heads per layer
    - ``L``: queries
    - ``S``: keys
    """
    arrays, queries, keys, names = check_inputs(weights, tokens, key_tokens, titles)
    start = check_start(arrays, example, layer, head)
    return AttentionExplorer(
        arrays, queries, keys, names, query_label=query_label, key_label=key_label,
        vmax=check_vmax(vmax), start=start,
    )  # fmt: skip
