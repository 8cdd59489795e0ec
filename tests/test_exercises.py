"""Every exercise of every chapter: structure, reference solution passes, stub fails clearly.

The solutions are read from the chapters themselves, so the code the book shows is the
code these tests run. Plausible wrong answers are tested per chapter (test_checkers_*.py).
"""

from __future__ import annotations

import pytest

from mini_attn.exercises import CheckFailed
from tests.chapters import CHAPTERS, exercises, imports_cell, is_definition_only

ALL = [ex for path in CHAPTERS for ex in exercises(path)]
IDS = [f"{ex.chapter}:{ex.label}" for ex in ALL]


def _namespace(chapter: str) -> dict:
    namespace: dict = {}
    exec(imports_cell(next(p for p in CHAPTERS if p.stem == chapter)), namespace)
    return namespace


@pytest.mark.parametrize(
    "path", [p for p in CHAPTERS if "{code-cell}" in p.read_text()], ids=lambda p: p.stem
)
def test_chapter_has_three_exercises(path):
    found = exercises(path)
    assert len(found) >= 3, (
        f"{path.name} has {len(found)} exercises; every chapter ends with at least 3"
    )
    labels = [ex.label for ex in found]
    assert all(labels) and len(set(labels)) == len(labels), f"labels missing or repeated: {labels}"


@pytest.mark.parametrize("exercise", ALL, ids=IDS)
def test_exercise_is_complete(exercise):
    assert "raise NotImplementedError" in exercise.starter, "the starter cell must be a stub"
    assert exercise.solution, "no solution cells between solution-start and solution-end"
    assert exercise.checker.strip().startswith("check_"), (
        f"the cell after the solution must call a checker, got {exercise.checker!r}"
    )


@pytest.mark.parametrize("exercise", ALL, ids=IDS)
def test_reference_solution_passes(exercise, capsys):
    namespace = _namespace(exercise.chapter)
    for source in exercise.solution:
        if is_definition_only(source):
            exec(source, namespace)
    exec(exercise.checker, namespace)
    assert "✓" in capsys.readouterr().out, "the checker should print its success line"


@pytest.mark.parametrize("exercise", ALL, ids=IDS)
def test_starter_stub_fails_with_a_clear_message(exercise):
    namespace = _namespace(exercise.chapter)
    exec(exercise.starter, namespace)
    with pytest.raises(CheckFailed, match="not implemented yet"):
        exec(exercise.checker, namespace)
