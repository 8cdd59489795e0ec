"""The built HTML book in a real browser: headless Chromium driven by Playwright.

Every page loads, its math is typeset by the locally served MathJax, every image loads, a
solution opens on click, and no unexpected console error appears. Screenshots are saved
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
    """Open ``url`` in a fresh page; return the page and the list of console errors."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
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
