"""The built book: every page of the table of contents exists, every chapter was executed
without error (execution statistics), and every exercise's checker printed its success line.

`make test` builds the book first (`make book`, with -W -n: a warning fails the build).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from tests.chapters import CHAPTERS, exercises

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"

pytestmark = pytest.mark.book


def _text(path: Path, sep: str = " ") -> str:
    """The page's text; ``sep=""`` joins highlighted code tokens back into source lines."""
    return html.unescape(re.sub(r"<[^>]+>", sep, path.read_text()))


@pytest.fixture(scope="module")
def built():
    if not (HTML / "index.html").exists():
        pytest.fail("the book is not built: run `make book` first (`make test` does)")
    return HTML


def _toc_files() -> list[str]:
    return re.findall(r"file:\s*(\S+)", (ROOT / "_toc.yml").read_text())


def test_every_toc_entry_is_a_page(built):
    for name in [*_toc_files(), "book/intro"]:
        assert (built / f"{name}.html").exists(), f"{name} was not built"


def test_every_chapter_is_in_the_toc():
    listed = set(_toc_files())
    for path in CHAPTERS:
        assert f"book/{path.stem}" in listed, f"{path.name} is not in _toc.yml"


EXECUTED = [p for p in CHAPTERS if "{code-cell}" in p.read_text()]


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: p.stem)
def test_chapter_was_executed_without_error(built, path):
    table = _text(built / "book" / "execution-statistics.html")
    row = re.search(rf"book/{re.escape(path.stem)}\s+(\S+ \S+)\s+(\w+)\s+([\d.]+)\s+(\S+)", table)
    assert row, f"{path.stem} is missing from the execution statistics"
    status = row.group(4)
    assert status == "✅", f"{path.stem} did not execute cleanly: {status}"
    page = _text(built / "book" / f"{path.stem}.html")
    assert "Traceback (most recent call last)" not in page, f"{path.stem} shows a traceback"


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: p.stem)
def test_every_checker_printed_success(built, path):
    page = _text(built / "book" / f"{path.stem}.html", sep="")
    for exercise in exercises(path):
        call = exercise.checker.strip()
        assert call in page, f"{path.stem}: the checker call {call!r} is not on the page"
        output = page.split(call)[-1][:600]  # the text right after the checker cell
        assert "✓" in output, f"{path.stem}: the checker of {exercise.label} did not print success"


def test_mathjax_is_served_locally(built):
    assert (built / "mathjax" / "tex-chtml.js").exists()
    page = (built / "book" / "01-what-is-attention.html").read_text()
    assert re.search(r'src="[^"]*mathjax/tex-chtml\.js', page)
    assert "cdn.jsdelivr" not in page and "cdnjs" not in page
