"""Lint the chapters' code cells with the project's ruff rules, errors at ``book/NN.md:line``.

    python -m book_tools.lint [chapters]     (make lint-book)

Each chapter's code cells (as :mod:`book_tools.chapters` reads them) are written by jupytext
as a ``py:percent`` script into a temporary folder, ruff checks it with the rules of
``pyproject.toml``, and every error is reported at the line of the chapter's ``.md`` file it
comes from. Exits 1 if any error is found.

The code lines may be at most :data:`LINE_LENGTH` characters: what the book's code column
shows without a horizontal scroll bar (measured in the built HTML, see CONTRIBUTING.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat

from book_tools.chapters import CHAPTERS, ROOT, Cell, cells

# Characters of the code font that fit in `div.highlight pre` of a chapter page at a
# 1280-px-wide desktop viewport, in the narrowest block: a code cell inside an opened
# solution (74; 77 on the page itself). Measured with headless Chromium by
# `python -m book_tools.code_width` (CONTRIBUTING.md, "Building").
LINE_LENGTH = 74

# A chapter is a notebook, not a module; two rules of a module do not hold in it (without
# them, today's chapters give 7 E402 and 29 F811, every one of them of these two kinds):
NOTEBOOK_IGNORES = [
    "E402",  # an import in a later cell, where a section first needs it, is not at the top
    "F811",  # an exercise's solution redefines its starter's stub, by design
]


@dataclass
class Problem:
    path: Path
    line: int
    column: int
    code: str
    message: str

    def __str__(self) -> str:
        where = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{where}:{self.line}:{self.column}: {self.code} {self.message}"


def percent_script(code_cells: list[Cell]) -> tuple[str, dict[int, int]]:
    """The cells as a ``py:percent`` script (jupytext), and ``{script line: .md line}``."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(c.source) for c in code_cells]
    text = jupytext.writes(notebook, fmt="py:percent")
    lines, mapping, cell, offset = text.splitlines(), {}, -1, 0
    for number, line in enumerate(lines, start=1):
        if line.startswith("# %%"):
            cell, offset = cell + 1, 0
            continue
        if cell >= 0 and offset < len(code_cells[cell].source.splitlines()):
            mapping[number] = code_cells[cell].line + offset
        offset += 1
    return text, mapping


def lint(paths: list[Path], line_length: int = LINE_LENGTH) -> list[Problem]:
    """Ruff's errors in the code cells of the chapters ``paths``."""
    problems = []
    with tempfile.TemporaryDirectory() as folder:
        scripts = {}
        for path in paths:
            code_cells = [c for c in cells(path) if c.cell_type == "code"]
            if not code_cells:
                continue
            text, mapping = percent_script(code_cells)
            script = Path(folder) / f"{path.stem.replace('-', '_')}.py"
            script.write_text(text)
            scripts[str(script.resolve())] = (path, mapping)
        if not scripts:
            return []
        command = [
            *(sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "json"),
            *("--config", str(ROOT / "pyproject.toml")),
            *("--config", f"line-length = {line_length}"),
            # in the temporary folder ruff cannot see that mini_attn is the project's own
            *("--config", "lint.isort.known-first-party = ['mini_attn', 'book_tools']"),
            *("--ignore", ",".join(_ignores())),
            *scripts,
        ]
        result = subprocess.run(command, capture_output=True, text=True, cwd=folder)
        if result.returncode not in (0, 1):
            raise RuntimeError(f"ruff failed: {result.stderr}")
        for error in json.loads(result.stdout or "[]"):
            path, mapping = scripts[str(Path(error["filename"]).resolve())]
            line = error["location"]["row"]
            problems.append(
                Problem(
                    path,
                    mapping.get(line, 0),
                    error["location"]["column"],
                    error["code"] or "",
                    error["message"],
                )
            )
    return sorted(problems, key=lambda p: (str(p.path), p.line, p.column))


def _ignores() -> list[str]:
    """The project's ignores plus the notebook ones (``--ignore`` replaces, not extends)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ignored = config.get("tool", {}).get("ruff", {}).get("lint", {}).get("ignore", [])
    return [*ignored, *NOTEBOOK_IGNORES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="chapters (default: all)")
    parser.add_argument("--line-length", type=int, default=LINE_LENGTH)
    args = parser.parse_args(argv)
    problems = lint([p.resolve() for p in args.chapters] or CHAPTERS, args.line_length)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problems in the chapters' code (line length {args.line_length})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
