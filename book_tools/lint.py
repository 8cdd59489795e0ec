"""Lint the chapters' code cells with the project's ruff rules, errors at ``book/NN.md:line``.

    python -m book_tools.lint [chapters]           (make lint-book)
    python -m book_tools.lint --format [chapters]  (make format-book)

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


def lift_long_comments(source: str, line_length: int = LINE_LENGTH) -> str:
    """Move the trailing comment of a line longer than ``line_length`` onto its own line
    above it (same indentation), so that the formatter need not split the code around it."""
    import io
    import tokenize

    lines = source.split("\n")
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return source
    comments = {
        tok.start[0]: tok.start[1]
        for tok in tokens
        if tok.type == tokenize.COMMENT and lines[tok.start[0] - 1][: tok.start[1]].strip()
    }
    for number in sorted(comments, reverse=True):
        line = lines[number - 1]
        if len(line) <= line_length:
            continue
        column = comments[number]
        code, comment = line[:column].rstrip(), line[column:]
        if "fmt:" in comment or "noqa" in comment or "type:" in comment:
            continue
        indent = line[: len(line) - len(line.lstrip())]
        lines[number - 1 : number] = [indent + comment, code]
    return "\n".join(_wrap_comment_lines(lines, line_length))


def _wrap_comment_lines(lines: list[str], line_length: int) -> list[str]:
    """Wrap the comment-only lines longer than ``line_length`` (``# fmt``/``noqa`` kept)."""
    import textwrap

    wrapped = []
    for line in lines:
        stripped = line.lstrip()
        if len(line) <= line_length or not stripped.startswith("# ") or "noqa" in line:
            wrapped.append(line)
            continue
        indent = line[: len(line) - len(stripped)] + "# "
        wrapped.extend(
            textwrap.wrap(
                stripped[2:],
                line_length,
                initial_indent=indent,
                subsequent_indent=indent,
                break_long_words=False,
            )
        )
    return wrapped


def format_chapter(path: Path, line_length: int = LINE_LENGTH) -> int:
    """Format the code cells of ``path`` in place with ``ruff format`` and sort their imports.

    Returns the number of cells changed. A cell ruff cannot parse (an IPython magic) is
    left as it is.
    """
    text = path.read_text().split("\n")
    changed = 0
    code_cells = [c for c in cells(path) if c.cell_type == "code"]
    for cell in sorted(code_cells, key=lambda c: c.line, reverse=True):
        source = lift_long_comments(cell.source, line_length)
        config = [
            *("--config", str(ROOT / "pyproject.toml")),
            *("--config", f"line-length = {line_length}"),
        ]
        fixed = subprocess.run(
            [sys.executable, "-m", "ruff", "check", "--no-cache", "--fix-only", "-q",
             "--select", "I", *config,
             "--config", "lint.isort.known-first-party = ['mini_attn', 'book_tools']",
             "--stdin-filename", "cell.py", "-"],
            input=source, capture_output=True, text=True,
        )  # fmt: skip
        source = fixed.stdout if fixed.returncode == 0 and fixed.stdout else source
        result = subprocess.run(
            [sys.executable, "-m", "ruff", "format", "--no-cache", "-q", *config,
             "--stdin-filename", "cell.py", "-"],
            input=source, capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            continue
        new = result.stdout.rstrip("\n")
        if new == cell.source.rstrip("\n"):
            continue
        first = cell.line - 1
        count = len(cell.source.rstrip("\n").split("\n"))
        text[first : first + count] = new.split("\n")
        changed += 1
    path.write_text("\n".join(text))
    return changed


def _ignores() -> list[str]:
    """The project's ignores plus the notebook ones (``--ignore`` replaces, not extends)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ignored = config.get("tool", {}).get("ruff", {}).get("lint", {}).get("ignore", [])
    return [*ignored, *NOTEBOOK_IGNORES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="chapters (default: all)")
    parser.add_argument("--line-length", type=int, default=LINE_LENGTH)
    parser.add_argument("--format", action="store_true", help="format the code cells in place")
    args = parser.parse_args(argv)
    if args.format:
        for path in [p.resolve() for p in args.chapters] or CHAPTERS:
            print(f"{path.name}: {format_chapter(path, args.line_length)} cells formatted")
        return 0
    problems = lint([p.resolve() for p in args.chapters] or CHAPTERS, args.line_length)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problems in the chapters' code (line length {args.line_length})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
