"""book_tools.grade: handed-in notebooks are graded by the chapters' own checkers."""

from __future__ import annotations

import nbformat
import pytest

from book_tools.chapters import BOOK, exercises, imports_cell
from book_tools.editions import editions
from book_tools.grade import grade, grade_notebook

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


@pytest.mark.slow
def test_a_crashing_checker_or_a_dead_kernel_fails_its_exercise_not_the_grading():
    """Exercise 1.1 solved; 1.2's checker crashes (ZeroDivisionError, not CheckFailed);
    1.3's answer kills the kernel: graded 1/3, each failure with its message."""
    chapter = BOOK / "01-what-is-attention.md"
    first = exercises(chapter)[0]
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["mini_attn"] = {"source": f"book/{chapter.name}"}
    sources = [
        imports_cell(chapter),
        *first.solution,
        "import mini_attn.exercises\n\n"
        "def my_masked_softmax(scores, mask=None):\n    return scores\n\n"
        "mini_attn.exercises.check_masked_softmax = lambda fn: 1 / 0",
        "def soft_lookup(*args):\n    import os\n\n    os._exit(1)",
    ]
    notebook.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    passed, total, results = grade_notebook(notebook, timeout=120)
    assert (passed, total) == (1, 3), results
    assert results[0] == "1.1 ✓"
    assert results[1].startswith("1.2 ✗ the checker crashed: ZeroDivisionError"), results
    assert results[2].startswith("1.3 ✗ the kernel died while checking"), results
