"""The JavaScript of :func:`mini_attn.attention_explorer`, apart from its Python.

``REDRAW`` redraws every panel from the embedded weights when a control changes; ``HOVER``
selects the hovered query row and calls it. The names it reads (``example``, ``meta``,
``state``, the panels' sources, the colour mappers) are the ``args`` the explorer passes to
Bokeh's ``CustomJS``.
"""

__all__ = ["HOVER", "REDRAW"]

# The JavaScript of the figure: one function that redraws every panel from the embedded weights.
REDRAW = """
const e = example.value == null ? 0 : meta.titles.indexOf(example.value);
const ex = Math.max(e, 0);
const layer = layer_slider.value, head = head_slider.value;
const L = meta.L[ex], S = meta.S[ex], H = meta.heads, N = meta.layers;
const q = Math.min(state.data.query[0], L - 1);
const w = store.data.w;
const base = meta.offsets[ex];
const at = (l, h, i, j) => w[base + ((l * H + h) * L + i) * S + j];
const qt = meta.queries[ex], kt = meta.keys[ex];
if (state.data.example[0] !== ex) {   // a new example: new tokens, new axes
  qlabels.data = {t: qt}; klabels.data = {t: kt};
  for (const r of [heat.x_range, bars.x_range, (heads ? heads.x_range : heat.x_range)]) {
    r.start = -0.5; r.end = S - 0.5;
  }
  heat.y_range.start = L - 0.5; heat.y_range.end = -0.5;
  for (const t of tickers_x) t.ticks = [...Array(S).keys()];
  ticker_y.ticks = [...Array(L).keys()];
}
const x = [], y = [], v = [], qs = [], ks = [];
for (let i = 0; i < L; i++) for (let j = 0; j < S; j++) {
  x.push(j); y.push(i); v.push(at(layer, head, i, j)); qs.push(qt[i]); ks.push(kt[j]);
}
cells.data = {x: x, y: y, w: v, q: qs, k: ks};
// vmax="head": the colours and the bars run from 0 to the largest weight of the shown head
const top = (values) => Math.max(...values) || 1;
if (meta.scale === "head") { colours.high = top(v); bars.y_range.end = 1.02 * top(v); }
const bx = [], bw = [], bk = [];
for (let j = 0; j < S; j++) { bx.push(j); bw.push(at(layer, head, q, j)); bk.push(kt[j]); }
row.data = {x: bx, w: bw, k: bk};
outline.data = {x: [(S - 1) / 2], y: [q], width: [S], h: [head]};
if (heads) {
  const hx = [], hy = [], hw = [], hk = [], hh = [];
  for (let h = 0; h < H; h++) for (let j = 0; j < S; j++) {
    hx.push(j); hy.push(h); hw.push(at(layer, h, q, j)); hk.push(kt[j]); hh.push(h);
  }
  per_head.data = {x: hx, y: hy, w: hw, k: hk, h: hh};
  if (meta.scale === "head") head_colours.high = top(hw);  // this panel's own scale
  head_box.data = {x: [(S - 1) / 2], y: [head], width: [S]};
  heads.title.text = `query "${qt[q]}": every head of layer ${layer}`;
}
const where = [N > 1 ? `layer ${layer}` : "", H > 1 ? `head ${head}` : ""]
  .filter(s => s).join(", ");
heat.title.text = [meta.titles.length > 1 ? meta.titles[ex] : "", where]
  .filter(s => s).join(": ");
bars.title.text = `query "${qt[q]}"` + (where ? ` (${where})` : "") + ": its weights";
state.data = {example: [ex], query: [q]};
"""

HOVER = """
const hit = cb_data.index.indices;
if (hit.length === 0) return;
const i = cells.data.y[hit[0]];
if (i === state.data.query[0]) return;
state.data = {example: state.data.example, query: [i]};
redraw.execute(cb_obj);
"""
