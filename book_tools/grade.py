"""Grade handed-in student notebooks by the chapters' own checkers.

    python scripts/grade.py handed-in.ipynb [more.ipynb ...] [--timeout 600]

For each notebook: every checker cell (tagged ``exercise-checker`` by ``make notebooks``)
is put back as the chapter has it, with a fresh import of its checker, so that an edited or
deleted checker cell grades nothing; the notebook is executed top to bottom in ``book/``
(as the chapters run), going on past errors; and an exercise counts as passed when its
checker cell ran without an error. Prints one line per notebook, ``N/M`` and each
exercise's result with the first line of its checker's message, and exits 0.

This guards against accidents (a checker cell edited or skipped, a stray ✓ printed), not
against a determined student who rewrites ``mini_attn`` itself.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import nbformat

if __package__ in (None, ""):  # run as a script: make the `scripts` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.chapters import BOOK, ROOT
from scripts.export_notebooks import editions
from scripts.run_chapter import execute_notebook

CHECKER = "exercise-checker"


def _label(cell) -> str | None:
    if CHECKER in cell.metadata.get("tags", []):
        return cell.metadata.get("exercise", {}).get("label")
    return None


def _with_fresh_import(source: str) -> str:
    """``check_x(f)`` preceded by ``from mini_attn.exercises import check_x``."""
    names = sorted(
        node.func.id
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id.startswith("check_")
    )
    imports = "".join(f"from mini_attn.exercises import {name}\n" for name in names)
    return imports + source


def restore_checkers(handed_in: nbformat.NotebookNode) -> dict[str, str]:
    """Put the chapter's checker cells back into ``handed_in``; return ``{label: number}``.

    A checker cell that is missing is appended at the end of the notebook, so that its
    exercise is graded (and fails if the function it checks is missing).
    """
    source = handed_in.metadata.get("mini_attn", {}).get("source")
    if not source:
        raise ValueError(
            "this notebook has no metadata.mini_attn.source: grade the student notebooks "
            "that `make notebooks` writes (or the book offers for download)"
        )
    reference = editions(ROOT / source)["student"]
    checkers = {_label(c): c for c in reference.cells if _label(c)}
    numbers = {label: c.metadata["exercise"]["number"] for label, c in checkers.items()}
    seen = set()
    for cell in handed_in.cells:
        label = _label(cell)
        if label in checkers:
            cell.cell_type = "code"
            cell.source = _with_fresh_import(checkers[label].source)
            seen.add(label)
    for label, cell in checkers.items():
        if label not in seen:
            missing = nbformat.v4.new_code_cell(_with_fresh_import(cell.source))
            missing.metadata = {"tags": [CHECKER], "exercise": dict(cell.metadata["exercise"])}
            handed_in.cells.append(missing)
    return numbers


def grade(path: Path, *, timeout: int = 600) -> tuple[int, int, list[str]]:
    """Execute the handed-in notebook at ``path``; return (passed, total, one line each)."""
    notebook = nbformat.read(path, as_version=4)
    numbers = restore_checkers(notebook)
    execute_notebook(notebook, BOOK, timeout=timeout, allow_errors=True)
    results, passed = [], 0
    for cell in notebook.cells:
        label = _label(cell)
        if label not in numbers:
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            message = f"{errors[0]['ename']}: {errors[0]['evalue']}".splitlines()[0]
            results.append(f"{numbers[label]} ✗ {message[:120]}")
        else:
            passed += 1
            results.append(f"{numbers[label]} ✓")
    return passed, len(numbers), results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="handed-in student notebooks")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        passed, total, results = grade(path, timeout=args.timeout)
        print(f"{path}: {passed}/{total} exercises pass   " + "; ".join(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
