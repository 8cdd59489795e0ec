"""`make student-book`: the book without its solutions, for a course to publish.

Built here into a temporary folder from the main build's cache of executed chapters (`make
test` builds the book first), with -W -n like the main build.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chapters import CHAPTERS, cells, exercises

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.book


def _code_text(path: Path) -> str:
    """The page's text with highlighted code tokens joined back into source lines."""
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


@pytest.fixture(scope="module")
def student_book(tmp_path_factory):
    if not (ROOT / "_build" / ".jupyter_cache").exists():
        pytest.fail("the book is not built: run `make book` first (`make test` does)")
    out = tmp_path_factory.mktemp("students")
    config = out / "config.yml"
    config.write_text(
        subprocess.run(
            [sys.executable, "-m", "book_tools.student_config"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    build = subprocess.run(
        [str(BIN / "jupyter-book"), "build", ".", "--config", str(config), "--path-output",
         str(out), "--all", "-W", "-n", "--keep-going"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return out / "_build" / "html"


def _solution_only_lines(path: Path) -> list[str]:
    """Lines of the chapter's solution code that appear nowhere else in its Markdown."""
    outside = "\n".join(c.source for c in cells(path) if not c.is_solution)
    lines = []
    for exercise in exercises(path):
        for source in exercise.solution:
            for line in source.splitlines():
                line = line.strip()
                if len(line) > 15 and not line.startswith("#") and line not in outside:
                    lines.append(line)
    return lines


def test_no_solution_reaches_the_students(student_book):
    """The solutions' own code is on the main book's pages and missing from the students'."""
    main = ROOT / "_build" / "html"
    checked = 0
    for path in CHAPTERS:
        page = f"book/{path.stem}.html"
        students, teachers = _code_text(student_book / page), _code_text(main / page)
        for line in _solution_only_lines(path):  # it may also be in included package code
            assert line in teachers, (page, line)
            shown = students.count(line)
            assert shown < teachers.count(line), f"{page}: a solution's line stays: {line}"
            checked += 1
        for exercise in exercises(path):
            assert exercise.checker.strip() in students, (page, exercise.checker)
    assert checked > 50


def test_only_the_student_notebooks_are_published(student_book):
    notebooks = student_book / "notebooks"
    assert sorted(p.name for p in notebooks.iterdir()) == ["student"]
    assert len(list((notebooks / "student").glob("*.ipynb"))) == len(CHAPTERS)
    for page in (student_book / "book").glob("*.html"):  # no link to an instructor notebook
        assert "notebooks/instructor/" not in re.sub(r"<code.*?</code>", "", page.read_text()), page
