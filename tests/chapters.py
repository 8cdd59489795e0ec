"""Read the chapters (MyST Markdown notebooks) the way the tests need them.

An exercise in a chapter follows the convention of CONTRIBUTING.md:

    ```{exercise} Title            <- with a :label:
    ```{code-cell}                  <- the starter cell: a stub that raises NotImplementedError
    ```{solution-start} label       <- then markdown and code cells: the reference solution
    ```{solution-end}
    ```{code-cell}                  <- the checker call, e.g. check_x(x)
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("[0-9]*.md"))


@dataclass
class Exercise:
    chapter: str
    label: str
    starter: str = ""
    solution: list[str] = field(default_factory=list)
    checker: str = ""


def cells(path: Path):
    """The notebook cells of a chapter, as jupytext reads them."""
    return jupytext.read(path).cells


def imports_cell(path: Path) -> str:
    """The first code cell of a chapter: its imports (and seeding)."""
    return next(c.source for c in cells(path) if c.cell_type == "code")


def exercises(path: Path) -> list[Exercise]:
    """Every exercise of a chapter with its starter, solution and checker cells."""
    found: list[Exercise] = []
    current: Exercise | None = None
    state = "outside"  # outside -> starter -> solution -> checker -> outside
    for cell in cells(path):
        if cell.cell_type == "markdown":
            for match in re.finditer(
                r"```\{(exercise|solution-start|solution-end)\}([^\n]*)\n([^`]*)", cell.source
            ):
                kind, _argument, body = match.groups()
                if kind == "exercise":
                    label = re.search(r":label:\s*(\S+)", body)
                    current = Exercise(path.stem, label.group(1) if label else "")
                    found.append(current)
                    state = "starter"
                elif kind == "solution-start":
                    state = "solution"
                elif kind == "solution-end":
                    state = "checker"
            continue
        if current is None:
            continue
        if state == "starter" and not current.starter:
            current.starter = cell.source
        elif state == "solution":
            current.solution.append(cell.source)
        elif state == "checker" and not current.checker:
            current.checker = cell.source
            state = "outside"
    return found


def is_definition_only(source: str) -> bool:
    """True if a cell only imports and defines (functions, classes): safe to run alone."""
    tree = ast.parse(source)
    allowed = (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
    return all(isinstance(node, allowed) for node in tree.body)
