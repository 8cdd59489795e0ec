"""The built HTML book in a real browser: headless Chromium driven by Playwright.

Every page loads, its math is typeset by the locally served MathJax, every image loads, a
solution opens on click, no request leaves 127.0.0.1 and no unexpected console error
appears. On every page with interactive figures (``ma.attention_explorer``,
``ma.slider_figure``), BokehJS comes once from the book's own copy, and hovering or moving
a control changes what each figure shows (a static figure fails). Screenshots are saved
under ``test-artifacts/screenshots/``. In CI (``CI=true``) the test must run; on a laptop
without Chromium it skips with a message.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("[0-9]*.md"))
# every page of the table of contents, the root first
PAGES = ["intro"] + [
    f.removeprefix("book/") for f in re.findall(r"file:\s*(\S+)", (ROOT / "_toc.yml").read_text())
]
# the chapters with interactive figures, found in their sources
INTERACTIVE_CALLS = ("ma.attention_explorer(", "ma.slider_figure(")
INTERACTIVE = [
    c
    for c in CHAPTERS
    if any(k in (ROOT / "book" / f"{c}.md").read_text() for k in INTERACTIVE_CALLS)
]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]

pytestmark = pytest.mark.book


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").exists():
        pytest.fail("the book is not built: run `make book` first (`make test` does)")
    handler = functools.partial(
        type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}),
        directory=str(HTML),
    )
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser test, but Chromium is not installed")
        pytest.skip("Chromium not found: install it (apt-get install chromium) to run this test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=FLAGS)
        yield b
        b.close()


def _open(browser, url: str):
    """Open ``url`` in a fresh page; return the page and the list of console errors.

    A request to anything but the local server (or an inline ``data:`` URL) is an error too:
    the book must read offline.
    """
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    local = re.match(r"https?://127\.0\.0\.1:\d+/", url).group(0)
    page.on(
        "request",
        lambda r: (
            None
            if r.url.startswith((local, "data:", "blob:", "about:"))
            else errors.append(f"request leaves 127.0.0.1: {r.url}")
        ),
    )
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.on(
        "response",
        lambda r: errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None,
    )
    page.goto(url, wait_until="load")
    return page, errors


def _typeset(page) -> int:
    """Wait for MathJax to finish and return the number of typeset formulas.

    Sphinx loads MathJax only on pages that contain math; elsewhere there is nothing to wait for.
    """
    if not page.evaluate("() => !!document.querySelector('script[src*=\"mathjax\"]')"):
        return 0
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
    page.evaluate("() => MathJax.startup.promise")
    return page.locator("mjx-container").count()


@pytest.mark.parametrize("name", PAGES)
def test_page_renders(browser, server, name):
    page, errors = _open(browser, f"{server}/book/{name}.html")
    try:
        assert page.locator("article h1").first.is_visible(), f"{name}: no visible title"
        math_source = (ROOT / "book" / f"{name}.md").read_text()
        formulas = _typeset(page)
        if "$" in math_source or "{math}" in math_source:
            assert formulas > 0, f"{name}: the page has math but MathJax typeset none"
            assert page.locator("mjx-merror").count() == 0, f"{name}: MathJax reported an error"
        broken = page.evaluate(
            "() => Array.from(document.images)"
            ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
        )
        assert broken == [], f"{name}: images that did not load: {broken}"
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
        assert errors == [], f"{name}: console errors: {errors}"
    finally:
        page.close()


@pytest.mark.parametrize(
    "name", [c for c in CHAPTERS if "{solution-start}" in (ROOT / "book" / f"{c}.md").read_text()]
)
def test_solutions_open_and_close(browser, server, name):
    page, errors = _open(browser, f"{server}/book/{name}.html")
    try:
        solutions = page.locator("div.solution.dropdown")
        assert solutions.count() >= 3, f"{name}: expected at least 3 solutions"
        first = solutions.first
        body = first.locator("section").first
        first.scroll_into_view_if_needed()
        assert not body.is_visible(), f"{name}: a solution is visible before it is opened"
        first.locator("button.toggle-button").click()
        body.wait_for(state="visible", timeout=5000)
        page.wait_for_timeout(500)  # let the opening animation finish
        page.screenshot(path=str(SHOTS / f"{name}-solution-open.png"))
        first.locator("button.toggle-button").click()
        body.wait_for(state="hidden", timeout=5000)
        assert errors == [], f"{name}: console errors: {errors}"
    finally:
        page.close()


# --- interactive figures ---------------------------------------------------------------------

_FRAME = """([d, name]) => {
  const model = Bokeh.documents[d].get_model_by_name(name);
  const view = [...Bokeh.index.all_views()].find((v) => v.model === model);
  const r = view.el.getBoundingClientRect(), f = view.frame.bbox;
  return {x: r.left + f.left, y: r.top + f.top, width: f.width, height: f.height};
}"""
_GET = "([d, name, attr]) => Bokeh.documents[d].get_model_by_name(name)[attr]"
_TITLE = "([d, name]) => Bokeh.documents[d].get_model_by_name(name).title.text"


def _settled_frame(page, d: int, name: str) -> dict:
    """The figure's plot frame in viewport coordinates, once two reads 100 ms apart agree."""
    box = page.evaluate(_FRAME, [d, name])
    for _ in range(20):
        page.wait_for_timeout(100)
        again = page.evaluate(_FRAME, [d, name])
        if again == box:
            break
        box = again
    return box


def _wait_for_figures(page) -> int:
    """Wait until BokehJS has drawn every figure of the page; return their number."""
    n = page.locator(".mini-attn-bokeh").count()
    page.wait_for_function(
        "(n) => window.Bokeh && Bokeh.documents.length === n"
        " && [...Bokeh.index.all_views()].length > 0",
        arg=n,
        timeout=20000,
    )
    page.wait_for_timeout(300)  # the first paint
    return n


def _changes(page, container, action, what: str, name: str, shot: str) -> None:
    """Run ``action`` and assert that the figure looks different afterwards."""
    container.scroll_into_view_if_needed()
    page.mouse.move(1, 1)  # no tooltip in the picture before
    page.wait_for_timeout(150)
    before = container.screenshot(path=str(SHOTS / f"{shot}-before.png"))
    action()
    page.wait_for_timeout(400)
    after = container.screenshot(path=str(SHOTS / f"{shot}-after.png"))
    assert after != before, f"{name}: {what} did not change what the figure shows"


def _press(handle, key: str, times: int = 1) -> None:
    handle.focus()
    for _ in range(times):
        handle.press(key)


def _exercise_explorer(page, d: int, container, name: str, shot: str) -> None:
    """Hover another query row, then move the head (or layer) slider or pick an example."""
    top = page.evaluate("([d]) => Bokeh.documents[d].get_model_by_name('heat').y_range.start", [d])
    rows = round(top + 0.5)  # the query axis runs from L - 1/2 (bottom) to -1/2 (top)
    title = page.evaluate(_TITLE, [d, "bars"])

    right = page.evaluate("([d]) => Bokeh.documents[d].get_model_by_name('heat').x_range.end", [d])
    cols = round(right + 0.5)  # the key axis runs from -1/2 to S - 1/2
    tried = []

    def hover_last_row():
        # A slow machine may still move the page (fonts, MathJax above the figure) after the
        # scroll: read the frame until it stands still, hover the centre of a cell of the last
        # row, and wait for the bar chart's title to follow; try again from outside the figure
        # if the pointer landed before the page settled. A static figure fails all three.
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        for _ in range(3):
            box = _settled_frame(page, d, "heat")  # viewport coordinates
            y = box["y"] + box["height"] * (rows - 0.5) / rows
            if not 0 < y < page.viewport_size["height"]:  # a tall figure: bring the row in view
                page.evaluate(
                    "(dy) => window.scrollBy(0, dy)", y - page.viewport_size["height"] / 2
                )
                box = _settled_frame(page, d, "heat")
                y = box["y"] + box["height"] * (rows - 0.5) / rows
            x = box["x"] + box["width"] * (cols // 2 + 0.5) / cols
            tried.append((round(x), round(y), box))
            page.mouse.move(x, y, steps=5)  # several mousemove events, as a hand makes
            try:
                page.wait_for_function(f"([d, t]) => ({_TITLE})([d, 'bars']) !== t",
                                       arg=[d, title], timeout=3000)  # fmt: skip
                return
            except PlaywrightTimeout:
                page.mouse.move(1, 1)

    _changes(page, container, hover_last_row, "hovering a row of the heat map", name, shot)
    assert page.evaluate(_TITLE, [d, "bars"]) != title, (
        f"{name}: the hovered query is not shown; pointer at (x, y, frame): {tried}"
    )
    handles = [h for h in container.locator(".noUi-handle").all() if h.is_visible()]
    heat_title = page.evaluate(_TITLE, [d, "heat"])
    if handles:  # the head slider (the layer's if there is one head)
        handle = handles[-1]  # an explorer may start on its last head: then move left
        now, end = (handle.get_attribute(f"aria-value{a}") for a in ("now", "max"))
        at_end = now is not None and now == end
        key = "ArrowLeft" if at_end else "ArrowRight"
        _changes(page, container, lambda: _press(handle, key, 3), "a slider",
                 name, f"{shot}-slider")  # fmt: skip
    else:  # one layer and one head: the example menu
        select = container.locator("select")
        options = select.locator("option").all_text_contents()
        _changes(page, container, lambda: select.select_option(options[-1]), "the example menu",
                 name, f"{shot}-menu")  # fmt: skip
    assert page.evaluate(_TITLE, [d, "heat"]) != heat_title, f"{name}: the title did not follow"


def _exercise_slider(page, d: int, container, name: str, shot: str) -> None:
    """Move the slider: its value and the curves change."""
    value = page.evaluate(_GET, [d, "slider", "value"])
    end = page.evaluate(_GET, [d, "slider", "end"])
    key = "ArrowLeft" if value == end else "ArrowRight"
    handle = container.locator(".noUi-handle").first
    _changes(page, container, lambda: _press(handle, key, 3), "moving the slider", name, shot)
    assert page.evaluate(_GET, [d, "slider", "value"]) != value, f"{name}: the slider is stuck"


def exercise_figures(page, name: str) -> int:
    """Interact with every figure of the open page; return how many there were."""
    n = _wait_for_figures(page)
    for d in range(n):
        container = page.locator(".mini-attn-bokeh").nth(d)
        shot = f"{name}-interaction-{d}"
        roots = page.evaluate("([d]) => Bokeh.documents[d].roots().map((r) => r.name)", [d])
        if "attention-explorer" in roots:
            _exercise_explorer(page, d, container, name, shot)
        else:
            assert "slider-figure" in roots, f"{name}: unknown figure {roots}"
            _exercise_slider(page, d, container, name, shot)
    return n


def test_the_book_has_interactive_figures():
    """The explorer in two chapters and two explorable figures elsewhere (issue 17)."""
    text = {c: (ROOT / "book" / f"{c}.md").read_text() for c in INTERACTIVE}
    explorers = [c for c, t in text.items() if "ma.attention_explorer(" in t]
    sliders = [c for c, t in text.items() if "ma.slider_figure(" in t]
    assert len(explorers) >= 2 and len(sliders) >= 2, (explorers, sliders)


@pytest.mark.parametrize("name", INTERACTIVE)
def test_interactive_figures_respond(browser, server, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page, errors = _open(browser, f"{server}/book/{name}.html")
    try:
        source = (HTML / "book" / f"{name}.html").read_text()
        assert "data-mini-attn-bokehjs" not in source, f"{name}: BokehJS is inlined in the page"
        served = re.findall(r'<script src="([^"]*bokeh/bokeh[^"]*)"', source)
        assert len(served) == 2, f"{name}: BokehJS should be loaded once, got {served}"
        n = exercise_figures(page, name)
        assert n >= 1, f"{name}: no interactive figure drawn"
        figures = re.findall(r'<div class="mini-attn-bokeh">.*?</script>', source, flags=re.S)
        sizes = ", ".join(f"{len(f.encode()) / 1e3:.0f} kB" for f in figures)
        print(f"{name}: {n} interactive figures, adding {sizes} to a page of "
              f"{len(source.encode()) / 1e3:.0f} kB")  # fmt: skip
        assert errors == [], f"{name}: console errors: {errors}"
    finally:
        page.close()


def test_pages_without_figures_do_not_load_bokehjs(server):
    for name in ["intro", "glossary"]:
        assert "bokeh/bokeh" not in (HTML / "book" / f"{name}.html").read_text(), name
