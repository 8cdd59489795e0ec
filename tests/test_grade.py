"""scripts/grade.py: handed-in notebooks are graded by the chapters' own checkers."""

from __future__ import annotations

import nbformat
import pytest

from scripts.chapters import BOOK
from scripts.export_notebooks import editions
from scripts.grade import grade

CHAPTER = BOOK / "01-what-is-attention.md"


@pytest.fixture(scope="module")
def notebooks():
    return editions(CHAPTER)


def _write(notebook, path):
    nbformat.write(notebook, path)
    return path


@pytest.mark.slow
def test_an_untouched_student_notebook_scores_nothing(notebooks, tmp_path):
    passed, total, results = grade(_write(notebooks["student"], tmp_path / "s.ipynb"))
    assert (passed, total) == (0, 3)
    assert all("✗" in line and "not implemented yet" in line for line in results), results


@pytest.mark.slow
def test_a_solved_notebook_scores_every_exercise(notebooks, tmp_path):
    passed, total, results = grade(_write(notebooks["instructor"], tmp_path / "i.ipynb"))
    assert (passed, total) == (3, 3), results


@pytest.mark.slow
def test_edited_or_deleted_checkers_are_put_back(notebooks, tmp_path):
    """A checker cell replaced by a printed ✓, or deleted, still grades the exercise."""
    student = nbformat.from_dict(notebooks["student"])
    checkers = [c for c in student.cells if "exercise-checker" in c.metadata.get("tags", [])]
    checkers[0].source = 'print("✓ all cases passed")'
    checkers[1].source = "def check_anything(fn):\n    pass"
    student.cells.remove(checkers[2])
    student.cells.insert(1, nbformat.v4.new_code_cell('print("✓ ✓ ✓")'))
    passed, total, results = grade(_write(student, tmp_path / "t.ipynb"))
    assert (passed, total) == (0, 3), results


def test_a_notebook_from_elsewhere_is_refused(tmp_path):
    path = _write(nbformat.v4.new_notebook(), tmp_path / "other.ipynb")
    with pytest.raises(ValueError, match="make notebooks"):
        grade(path)
