"""The interactive figures without a browser: what the HTML embeds is exactly the data given.

The figures' behaviour in a browser (hover and sliders change what is shown, nothing leaves
127.0.0.1) is tested on the built book by tests/test_browser.py.
"""

from __future__ import annotations

import base64
import importlib.util
import re

import numpy as np
import pytest
import torch

pytest.importorskip("bokeh")

from mini_attn.tools import interactive
from mini_attn.tools.explorer import attention_explorer
from mini_attn.tools.interactive import decode_array
from mini_attn.tools.sliders import slider_figure


def _objects(node):
    """Every Bokeh model serialised in a document (depth first)."""
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


def _data(figure, name: str) -> dict:
    """The columns of the ColumnDataSource called ``name``, as the page receives them."""
    (document,) = figure.embedded_documents().values()
    sources = [o for o in _objects(document) if o.get("attributes", {}).get("name") == name]
    assert sources, f"no data source named {name!r} in the embedded document"
    columns = {}
    for key, value in sources[0]["attributes"]["data"]["entries"]:
        columns[key] = decode_array(value) if isinstance(value, dict) else np.asarray(value)
    return columns


def _meta(figure) -> dict:
    html = figure.to_html()
    (document,) = figure.embedded_documents().values()
    for obj in _objects(document):
        if obj["name"] == "CustomJS":
            entries = dict(obj["attributes"]["args"]["entries"])
            if "meta" in entries:
                return {k: v for k, v in entries["meta"]["entries"]}
    raise AssertionError(f"no explorer metadata in the page ({len(html)} bytes)")


@pytest.fixture
def examples():
    g = torch.Generator().manual_seed(0)
    first = torch.softmax(torch.randn(3, 4, 5, 7, generator=g), dim=-1)
    second = torch.softmax(torch.randn(3, 4, 2, 3, generator=g), dim=-1)
    return [first, second], [list("abcde"), ["x", "y"]], [list("ABCDEFG"), ["1", "2", "3"]]


def test_embedded_weights_equal_the_weights_exactly(examples):
    weights, queries, keys = examples
    fig = attention_explorer(weights, queries, key_tokens=keys, titles=["one", "two"])
    embedded = _data(fig, "weights")["w"]
    assert embedded.dtype == np.float32
    expected = np.concatenate([w.numpy().ravel() for w in weights])
    np.testing.assert_array_equal(embedded, expected)  # bit for bit, every layer and head
    meta = _meta(fig)
    # the JavaScript finds example e, layer l, head h, query i, key j at this index
    for e, w in enumerate(weights):
        layers, heads, n_q, n_k = w.shape
        layer, h, i, j = layers - 1, heads - 1, n_q - 1, n_k - 1
        index = meta["offsets"][e] + ((layer * heads + h) * n_q + i) * n_k + j
        assert embedded[index] == w[layer, h, i, j].item()
    assert meta["queries"] == queries and meta["keys"] == keys
    assert meta["titles"] == ["one", "two"] and (meta["layers"], meta["heads"]) == (3, 4)


def test_first_view_shows_layer_0_head_0(examples):
    weights, queries, keys = examples
    fig = attention_explorer(weights, queries, key_tokens=keys)
    cells = _data(fig, "cells")
    n_q, n_k = weights[0].shape[-2:]
    shown = np.zeros((n_q, n_k))
    shown[cells["y"].astype(int), cells["x"].astype(int)] = cells["w"]
    np.testing.assert_allclose(shown, weights[0][0, 0].numpy(), rtol=1e-7)
    assert [str(t) for t in cells["q"][:n_k]] == [queries[0][0]] * n_k
    row = _data(fig, "row")
    np.testing.assert_allclose(row["w"], weights[0][0, 0, 0].numpy(), rtol=1e-7)
    per_head = _data(fig, "per_head")  # the first query in every head of layer 0
    np.testing.assert_allclose(per_head["w"], weights[0][0, :, 0].numpy().ravel(), rtol=1e-7)


def _models(figure, kind: str) -> list[dict]:
    """The attributes of every model of type ``kind`` (``"Slider"``, ...) in the document."""
    (document,) = figure.embedded_documents().values()
    return [o["attributes"] for o in _objects(document) if o["name"] == kind]


def test_the_initial_state_is_what_is_shown(examples):
    weights, queries, keys = examples
    fig = attention_explorer(
        weights, queries, key_tokens=keys, titles=["one", "two"], example=1, layer=2, head=3
    )
    chosen = weights[1][2, 3].numpy()  # example 1, layer 2, head 3
    cells = _data(fig, "cells")
    shown = np.zeros(chosen.shape)
    shown[cells["y"].astype(int), cells["x"].astype(int)] = cells["w"]
    np.testing.assert_array_equal(shown, chosen)
    assert [str(t) for t in cells["q"]] == [q for q in queries[1] for _ in keys[1]]
    np.testing.assert_array_equal(_data(fig, "row")["w"], chosen[0])  # the first query
    per_head = _data(fig, "per_head")  # the first query in every head of layer 2
    np.testing.assert_array_equal(per_head["w"], weights[1][2, :, 0].numpy().ravel())
    assert _data(fig, "head_box")["y"].tolist() == [3]
    assert _data(fig, "state")["example"].tolist() == [1]  # what the JavaScript starts from
    sliders = {a["name"]: a["value"] for a in _models(fig, "Slider")}
    assert sliders == {"layer_slider": 2, "head_slider": 3}
    assert [a["value"] for a in _models(fig, "Select")] == ["two"]
    assert "two: layer 2, head 3" in [a.get("text") for a in _models(fig, "Title")]
    static = fig._draw_static().axes[0]  # the image shown without JavaScript
    np.testing.assert_array_equal(static.images[0].get_array(), chosen)
    assert static.get_title() == "two: layer 2, head 3"
    assert [t.get_text() for t in static.get_yticklabels()] == queries[1]


def test_colour_scale_shared_or_per_head(examples):
    weights, queries, keys = examples
    largest = max(w.max().item() for w in weights)
    shared = attention_explorer(weights, queries, key_tokens=keys, layer=1, head=2)
    assert [a["high"] for a in _models(shared, "LinearColorMapper")] == [pytest.approx(largest)]
    assert [a["title"] for a in _models(shared, "ColorBar")] == [
        "weight (one scale for the whole figure)"
    ]
    assert _meta(shared)["scale"] == "shared"
    fixed = attention_explorer(weights, queries, key_tokens=keys, vmax=0.5)
    assert [a["high"] for a in _models(fixed, "LinearColorMapper")] == [0.5]

    own = attention_explorer(weights, queries, key_tokens=keys, layer=1, head=2, vmax="head")
    heat_top = weights[0][1, 2].max().item()  # the shown head's largest weight
    panel_top = weights[0][1, :, 0].max().item()  # the per-head panel's: query 0, layer 1
    highs = [a["high"] for a in _models(own, "LinearColorMapper")]
    assert highs == [pytest.approx(heat_top), pytest.approx(panel_top)]
    assert [a["title"] for a in _models(own, "ColorBar")] == [
        "weight (0 to this head's largest)",
        "weight (0 to this panel's largest)",
    ]
    assert _meta(own)["scale"] == "head"  # the JavaScript rescales on every change
    ends = [a.get("end") for a in _models(own, "Range1d") if a.get("start", 0) == 0]
    assert pytest.approx(1.02 * heat_top) in ends  # the bars' axis follows the head
    static = own._draw_static().axes[0]
    assert static.images[0].get_clim() == pytest.approx((0.0, heat_top))


def test_self_attention_defaults_and_one_head():
    w = torch.softmax(torch.randn(1, 1, 4, 4), dim=-1)
    fig = attention_explorer(w, ["[CLS]", "a", "b", "[SEP]"])
    assert _meta(fig)["keys"] == [["[CLS]", "a", "b", "[SEP]"]]
    html = fig.to_html()
    assert 'name":"heads"' not in html  # no per-head panel for one head
    np.testing.assert_array_equal(_data(fig, "weights")["w"], w.numpy().ravel())


def test_offline_and_served_once(examples):
    weights, queries, keys = examples
    fig = attention_explorer(weights, queries, key_tokens=keys)
    html = fig.to_html()
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", html), "the figure loads something"
    assert re.findall(r"https?://[^\s\"'<>]+", html) == []  # not one URL, let alone a CDN's
    assert interactive.LOADER_ATTRIBUTE not in html  # BokehJS is not in the figure itself
    assert f'class="{interactive.FIGURE_CLASS}"' in html
    png = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"  # the no-JavaScript image
    print(f"explorer of 2 examples, 3 layers x 4 heads: {fig.nbytes / 1e3:.1f} kB")


def test_a_notebook_output_carries_bokehjs(examples):
    weights, queries, keys = examples
    figure = attention_explorer(weights, queries, key_tokens=keys)
    bundle = figure._repr_mimebundle_()
    assert interactive.LOADER_ATTRIBUTE in bundle["text/html"]  # works offline in Jupyter
    bokehjs = sum(len(p.read_text(encoding="utf-8")) for p in interactive.bokehjs_files())
    assert len(bundle["text/html"]) > bokehjs > len(figure.to_html())
    assert bundle["text/html"].endswith(figure.to_html())
    assert base64.b64decode(bundle["image/png"])[:4] == b"\x89PNG"
    assert "</script" not in "".join(p.read_text() for p in interactive.bokehjs_files())


def test_two_builds_write_the_same_bytes(examples):
    weights, queries, keys = examples
    a = attention_explorer(weights, queries, key_tokens=keys).to_html()
    b = attention_explorer(weights, queries, key_tokens=keys).to_html()
    strip = re.compile(r'"id":"p\d+"|"p\d+"|data-root-id="p\d+"')  # Bokeh's model counter
    assert strip.sub("", a) == strip.sub("", b)
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}", a), "a random UUID is left"


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: attention_explorer(torch.rand(4, 5, 5), list("abcde")),
            r"\(layers, heads, L, S\)",
        ),
        (lambda: attention_explorer(torch.rand(1, 1, 3, 3), list("ab")), "3 query tokens"),
        (
            lambda: attention_explorer(torch.rand(1, 1, 2, 3), list("ab"), key_tokens=list("ab")),
            "3 key tokens",
        ),
        (
            lambda: attention_explorer(torch.full((1, 1, 2, 2), float("nan")), list("ab")),
            "NaN",
        ),
        (
            lambda: attention_explorer(
                [torch.rand(1, 2, 2, 2), torch.rand(1, 3, 2, 2)], [list("ab"), list("ab")]
            ),
            "same layers and heads",
        ),
        (
            lambda: attention_explorer(
                [torch.rand(1, 1, 2, 2)] * 2, [list("ab")] * 2, titles=["a", "a"]
            ),
            "distinct",
        ),
        (lambda: attention_explorer([torch.rand(1, 1, 2, 2)], [list("ab")] * 2), "2 entries"),
    ],
)
def test_bad_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    "start, message",
    [
        ({"example": 2}, r"example must be an integer from 0 to 1 \(2 examples given\), got 2"),
        ({"example": -1}, "example must be an integer from 0 to 1"),
        ({"layer": 3}, r"layer must be an integer from 0 to 2 \(3 layers given\), got 3"),
        ({"head": 4}, r"head must be an integer from 0 to 3 \(4 heads given\), got 4"),
        ({"head": 1.0}, "head must be an integer .*, got 1.0"),
        ({"layer": True}, "layer must be an integer .*, got True"),
        ({"head": "0"}, "head must be an integer .*, got '0'"),
        ({"vmax": "max"}, "vmax must be None, \"head\" or a positive number, got 'max'"),
        ({"vmax": 0.0}, "vmax must be"),
        ({"vmax": float("nan")}, "vmax must be"),
    ],
)
def test_bad_start_or_scale_is_refused(examples, start, message):
    weights, queries, keys = examples
    with pytest.raises(ValueError, match=message):
        attention_explorer(weights, queries, key_tokens=keys, **start)


def test_slider_figure_embeds_every_row():
    values = [0.1, 0.5, 1.0, 2.0]
    x = np.linspace(0, 1, 6)
    moving = np.stack([np.exp(-x / v) for v in values])
    fig = slider_figure(values, "tau", start=2, notes=[f"tau {v}" for v in values])
    fig.panel(title="t", xlabel="x", ylabel="y").scatter(x, x).line(x, moving, label="moves")
    (document,) = fig.embedded_documents().values()
    stores = [
        decode_array(dict(o["attributes"]["data"]["entries"])["y"])
        for o in _objects(document)
        if o["name"] == "ColumnDataSource"
        and isinstance(dict(o["attributes"]["data"]["entries"]).get("y"), dict)
    ]
    assert len(stores) == 1  # one moving series, every slider position embedded
    np.testing.assert_array_equal(stores[0], moving.astype(np.float32).ravel())
    html = fig.to_html()
    assert "tau 1.0" in html and "https://" not in html
    assert fig.static_png[:4] == b"\x89PNG"
    print(f"slider figure, 4 positions x 6 points: {fig.nbytes / 1e3:.1f} kB")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: slider_figure([[1.0, 2.0]], "h"), "1-D"),
        (lambda: slider_figure([1.0, 2.0], "h", start=2), "start"),
        (lambda: slider_figure([1.0, 2.0], "h", notes=["a"]), "1 lines for 2 values"),
        (
            lambda: slider_figure([1.0, 2.0], "h").panel().line([0, 1], np.zeros((3, 2))),
            r"\(2, 2\)",
        ),
        (lambda: slider_figure([1.0], "h").to_html(), "no series"),
    ],
)
def test_slider_bad_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.skipif(importlib.util.find_spec("sphinx") is None, reason="needs Sphinx")
def test_book_extension_serves_one_copy(examples, monkeypatch, tmp_path):
    from book_tools import bokeh_figures

    weights, queries, keys = examples
    outputs = [attention_explorer(weights, queries, key_tokens=keys) for _ in range(2)]
    body = "<p>text</p>" + "".join(o._repr_mimebundle_()["text/html"] for o in outputs)
    interactive.copy_bokehjs(tmp_path / "_assets")
    context = {"body": body, "pathto": lambda path, resource: f"../{path}"}
    app = type("App", (), {"confdir": str(tmp_path)})()
    bokeh_figures._serve_bokehjs(app, "book/page", "page.html", context, None)
    served = context["body"]
    assert interactive.LOADER_ATTRIBUTE not in served
    tags = re.findall(r'<script src="([^"]+)"></script>', served)
    assert tags == ["../" + p for p in interactive.served_bokehjs()]
    assert served.index(tags[-1]) < served.index(interactive.FIGURE_CLASS)
    assert len(served) < len(body) / 10  # the page does not carry BokehJS itself
    untouched = {"body": "<p>no figure</p>", "pathto": None}
    bokeh_figures._serve_bokehjs(app, "book/other", "page.html", untouched, None)
    assert untouched["body"] == "<p>no figure</p>"
