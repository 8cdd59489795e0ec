"""Grade handed-in student notebooks by the chapters' own checkers.

    python -m book_tools.grade handed-in.ipynb [more.ipynb ...] [--timeout 600]

For each notebook: every checker cell (tagged ``exercise-checker`` in the editions) is put
back as the chapter has it, with a fresh import of its checker, so that an edited or
deleted checker cell grades nothing; the notebook is executed top to bottom in ``book/``
(as the chapters run), going on past errors; and an exercise counts as passed when its
checker cell ran without an error. Prints one line per notebook, ``N/M`` and each
exercise's result with the first line of its checker's message, and exits 0.

Whatever happens in a checker cell is that exercise's result, never the end of the grading:
a ``CheckFailed`` is the checker's verdict; any other exception (a checker that crashed on
an answer it did not foresee) fails the exercise with "the checker crashed" and the
exception; a cell that kills the kernel (a kernel's out-of-bounds write, ``os._exit``) or
runs past the timeout is replaced by a cell that raises, and the notebook is run again, so
that the exercises after it are still graded.

This guards against accidents (a checker cell edited or skipped, a stray ✓ printed), not
against a determined student who rewrites ``mini_attn`` itself.
"""

from __future__ import annotations

import argparse
import ast
import copy
import sys
from pathlib import Path

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from book_tools.chapters import BOOK, CHECKER, ROOT
from book_tools.editions import edition
from book_tools.run_chapter import execute_notebook

KILLED = "KernelDied"  # the ename of a cell that killed the kernel (or timed out)


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
    reference = edition(ROOT / source, "student")
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


def _killer_source(why: str) -> str:
    return f"raise RuntimeError({why!r})"


def execute_surviving(notebook, *, timeout: int = 600, attempts: int = 20):
    """Execute a copy of ``notebook`` past errors; a cell that kills the kernel or times out
    is replaced by one that raises (ename :data:`KILLED` in its output) and the notebook is
    run again from the top. Returns the executed copy."""
    killed: dict[int, str] = {}
    for _ in range(attempts):
        run = copy.deepcopy(notebook)
        for cell in run.cells:  # a handed-in notebook has the student's counts and outputs
            if cell.cell_type == "code":
                cell.execution_count, cell.outputs = None, []
        for index, why in killed.items():
            run.cells[index].source = _killer_source(why)
        running: dict[str, int] = {}

        def started(cell, cell_index, running=running):
            running["index"] = cell_index

        try:
            execute_notebook(
                run,
                BOOK,
                timeout=timeout,
                allow_errors=True,
                interrupt_on_timeout=True,
                on_cell_start=started,
            )
        except (DeadKernelError, CellTimeoutError) as error:
            index = running.get("index")
            if index is None or index in killed:
                raise
            kind = "timed out" if isinstance(error, CellTimeoutError) else "killed the kernel"
            killed[index] = f"this cell {kind} ({type(error).__name__})"
            continue
        for index, why in killed.items():
            run.cells[index].outputs = [
                nbformat.v4.new_output("error", ename=KILLED, evalue=why, traceback=[])
            ]
        return run
    raise RuntimeError(f"the kernel died {attempts} times")


def _verdict(cell) -> str | None:
    """None if the checker cell passed, else the first line of why it failed."""
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    if not errors:
        return None
    ename, evalue = errors[0]["ename"], errors[0]["evalue"]
    if ename == "CheckFailed":
        message = f"{ename}: {evalue}"
    elif ename == KILLED:
        message = f"the kernel died while checking: {evalue}"
    elif ename == "KeyboardInterrupt":
        message = "the checker ran past the timeout and was interrupted"
    else:
        message = f"the checker crashed: {ename}: {evalue}"
    return message.splitlines()[0] if message.strip() else ename


def grade_notebook(notebook, *, timeout: int = 600) -> tuple[int, int, list[str]]:
    """Grade a handed-in notebook (changed in place); return (passed, total, one line each)."""
    numbers = restore_checkers(notebook)
    executed = execute_surviving(notebook, timeout=timeout)
    results, passed = [], 0
    for cell in executed.cells:
        label = _label(cell)
        if label not in numbers:
            continue
        message = _verdict(cell)
        if message is None:
            passed += 1
            results.append(f"{numbers[label]} ✓")
        else:
            results.append(f"{numbers[label]} ✗ {message[:160]}")
    return passed, len(numbers), results


def grade(path: Path, *, timeout: int = 600) -> tuple[int, int, list[str]]:
    """Grade the handed-in notebook at ``path``; return (passed, total, one line each)."""
    return grade_notebook(nbformat.read(path, as_version=4), timeout=timeout)


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
