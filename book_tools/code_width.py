"""Measure how many characters of code the built book shows without a horizontal scroll bar.

    python -m book_tools.code_width [--width 1280]      (after make book; needs chromium)

Serves ``_build/html`` on 127.0.0.1, opens every chapter page in headless Chromium
(Playwright, driving the system's ``chromium``) at a desktop viewport, and, for every
``div.highlight pre``, divides its content width (``clientWidth`` minus the padding) by the
width of one character of its font (a probe of 200 zeros in the ``pre``). Prints the
narrowest count and where it is; :data:`book_tools.lint.LINE_LENGTH` must not exceed it.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from book_tools.chapters import CHAPTERS, ROOT

HTML = ROOT / "_build" / "html"
_MEASURE = """() => Array.from(document.querySelectorAll('div.highlight pre'), pre => {
  const style = getComputedStyle(pre);
  const probe = document.createElement('span');
  probe.textContent = '0'.repeat(200);
  probe.style.whiteSpace = 'pre';
  pre.appendChild(probe);
  const char = probe.getBoundingClientRect().width / 200;
  pre.removeChild(probe);
  const inner = pre.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return {chars: Math.floor(inner / char + 1e-6), inner, char, font: style.fontFamily,
          size: style.fontSize, in_solution: !!pre.closest('.solution')};
})"""


@contextmanager
def serve(folder=HTML) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a free port); yield its URL."""
    quiet = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    handler = functools.partial(quiet, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def measure(width: int = 1280, height: int = 900) -> list[dict]:
    """One row per code block of every chapter page: ``chars`` that fit, and how measured."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise RuntimeError("no chromium on PATH (apt-get install chromium)")
    rows = []
    with serve() as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": width, "height": height})
        for path in CHAPTERS:
            if not (HTML / "book" / f"{path.stem}.html").exists():
                continue
            page.goto(f"{url}/book/{path.stem}.html")
            page.wait_for_load_state("networkidle")
            rows += [{**row, "page": path.stem} for row in page.evaluate(_MEASURE)]
        browser.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=1280, help="viewport width in px")
    args = parser.parse_args(argv)
    rows = measure(args.width)
    if not rows:
        print("no chapter page in _build/html: run make book first")
        return 1
    for in_solution in (False, True):
        some = [r for r in rows if r["in_solution"] == in_solution]
        if some:
            narrowest = min(some, key=lambda r: r["chars"])
            where = "inside a solution" if in_solution else "on the page"
            print(
                f"{where}: {narrowest['chars']} characters fit ({len(some)} blocks; "
                f"{narrowest['inner']:.0f} px / {narrowest['char']:.3f} px per character of "
                f"{narrowest['size']} {narrowest['font'].split(',')[0]})"
            )
    print(f"narrowest: {min(r['chars'] for r in rows)} characters at {args.width} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
