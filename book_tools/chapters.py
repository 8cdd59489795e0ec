"""Read the chapters (MyST Markdown notebooks) with the parser the book's build uses.

The cells come from myst-nb's own reader (the one ``jupyter-book build`` runs), and the
directives and headings of their Markdown from myst-parser's markdown-it parser, configured
with the book's ``myst_enable_extensions``. Nothing here matches fences with a regex.

**Solutions are marked once, here.** An exercise follows the convention of CONTRIBUTING.md:

    ```{exercise} Title            <- with a :label: (and optionally :class: difficulty-easy)
    ```{code-cell}                  <- the starter cell: a stub that raises NotImplementedError
    ```{solution-start} label       <- then markdown and code cells: the reference solution
    ```{solution-end}
    ```{code-cell}                  <- the checker call, e.g. check_x(x)

:func:`parse` splits every markdown cell at the solution's start and end, so that each
:class:`Cell` is wholly inside or outside a solution, and gives each cell its tag:
``exercise-starter``, ``solution`` (every cell of a solution, its explanations included)
or ``exercise-checker``. Every edition (:mod:`book_tools.editions`) and the students' copy
of the book (:mod:`book_tools.course_kit`) is derived from these tags.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it.token import Token
from myst_nb.core.read import read_myst_markdown_notebook

from book_tools.myst import directives, parser_config, tokens

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("[0-9]*.md"))
DIFFICULTIES = ("easy", "medium", "hard")
GOAL_PHRASE = r"by the end|you (can|will)|objectives|goals"

# the tags of the cells of an exercise (the one mark of a solution is SOLUTION)
STARTER, SOLUTION, CHECKER = "exercise-starter", "solution", "exercise-checker"


@dataclass
class Cell:
    """A cell of a chapter: markdown (split at solutions' boundaries) or code."""

    cell_type: str  # "markdown" or "code"
    source: str
    line: int  # the line of the .md file (1-based) where the cell's source starts
    metadata: dict = field(default_factory=dict)  # a code cell's own (``:tags:`` ...)
    tag: str = ""  # STARTER, SOLUTION, CHECKER or ""
    label: str = ""  # the exercise it belongs to, with a tag

    @property
    def is_solution(self) -> bool:
        return self.tag == SOLUTION


@dataclass
class Exercise:
    chapter: str
    label: str
    title: str = ""
    number: str = ""  # "N.k": chapter number, then the position in the chapter (from 1)
    difficulty: str = ""  # from `:class: difficulty-<easy|medium|hard>`, empty if not given
    starter: str = ""
    solution: list[str] = field(default_factory=list)  # the solution's code cells
    checker: str = ""

    @property
    def checker_name(self) -> str:
        """The name of the checker the checker cell calls, e.g. ``check_masked_softmax``."""
        match = re.match(r"\s*(check_\w+)\s*\(", self.checker)
        return match.group(1) if match else ""

    @property
    def solution_lines(self) -> int:
        """Lines of code of the solution's definitions (docstrings, comments, blanks excluded)."""
        return sum(code_lines(source) for source in self.solution if is_definition_only(source))


@dataclass
class Chapter:
    path: Path
    number: int
    label: str  # e.g. "ch-what-is-attention", from the `(ch-...)=` line above the title
    title: str
    goals: list[str]  # the learning objectives: the bullet list of the introduction
    refers_back_to: list[str]  # labels of earlier chapters it refers to ({ref}`... <ch-...>`)
    sections: list[str]  # its `##` headings, in order
    exercises: list[Exercise]
    cells: list[Cell]

    @property
    def written(self) -> bool:
        """A chapter with code cells; the placeholders of unwritten chapters have none."""
        return any(c.cell_type == "code" for c in self.cells)


# --------------------------------------------------------------------------- the parser


def _reader_cells(path: Path) -> list[Cell]:
    """The cells of a chapter as myst-nb reads it, each with its line in the file."""
    text = path.read_text()
    notebook = read_myst_markdown_notebook(text, parser_config(), add_source_map=True)
    lines = text.splitlines()
    result = []
    for cell, start in zip(notebook.cells, notebook.metadata["source_map"], strict=True):
        source = cell.source
        first = source.splitlines()[0] if source else ""
        line = max(start - 1, 0)  # find the first line of the source from the map on
        while line < len(lines) and first and lines[line] != first:
            line += 1
        metadata = dict(cell.metadata) if cell.cell_type == "code" else {}
        result.append(Cell(cell.cell_type, source, line + 1, metadata))
    return result


def _split_at_solutions(cell: Cell, inside: bool) -> tuple[list[tuple[Cell, bool, str]], bool]:
    """A markdown cell cut where solutions start and end: ``(piece, in a solution, label)``,
    and whether the cell ends inside a solution (``inside``: whether it starts in one).
    The ``{solution-end}`` fence itself is dropped."""
    text, pieces, position, label = cell.source, [], 0, ""

    def flush(end: int, in_solution: bool) -> None:
        piece = text[position:end]
        if piece.strip():
            start = position + len(piece) - len(piece.lstrip("\n"))
            line = cell.line + text.count("\n", 0, start)
            pieces.append((Cell("markdown", piece.strip("\n"), line), in_solution, label))

    for directive in directives(text):
        if directive.name == "solution-start" and not inside:
            flush(directive.start, False)
            position, inside, label = directive.start, True, directive.argument
        elif directive.name == "solution-end" and inside:
            flush(directive.start, True)
            position, inside = directive.end, False
    flush(len(text), inside)
    return pieces, inside


def parse(path: Path) -> tuple[list[Cell], list[Exercise]]:
    """The chapter's cells, each tagged once, and its exercises."""
    found: list[Exercise] = []
    by_label: dict[str, Exercise] = {}
    cells: list[Cell] = []
    current: Exercise | None = None
    state = "outside"  # outside -> starter -> solution -> checker -> outside
    for cell in _reader_cells(path):
        if cell.cell_type == "markdown":
            pieces, inside = _split_at_solutions(cell, state == "solution")
            for piece, in_solution, label in pieces:
                for directive in directives(piece.source):
                    if directive.name == "exercise":
                        current = Exercise(
                            path.stem,
                            directive.options.get("label", ""),
                            title=directive.argument,
                            number=f"{chapter_number(path)}.{len(found) + 1}",
                            difficulty=difficulty_of(directive.options),
                        )
                        found.append(current)
                        by_label[current.label] = current
                        state = "starter"
                if in_solution:
                    owner = by_label.get(label, current)
                    piece.tag, piece.label = SOLUTION, owner.label if owner else label
                cells.append(piece)
            if inside:
                state = "solution"
            elif state == "solution":
                state = "checker"
            continue
        if current is not None and state == "solution":
            cell.tag, cell.label = SOLUTION, current.label
            current.solution.append(cell.source)
        elif current is not None and state == "starter" and not current.starter:
            cell.tag, cell.label = STARTER, current.label
            current.starter = cell.source
        elif current is not None and state == "checker":
            cell.tag, cell.label = CHECKER, current.label
            current.checker = cell.source
            state = "outside"
        cells.append(cell)
    return cells, found


# --------------------------------------------------------------------------- what it holds


def cells(path: Path) -> list[Cell]:
    """The tagged cells of a chapter."""
    return chapter(path).cells


def exercises(path: Path) -> list[Exercise]:
    """Every exercise of a chapter with its starter, solution and checker."""
    return chapter(path).exercises


def imports_cell(path: Path) -> str:
    """The first code cell of a chapter: its imports (and seeding)."""
    return next(c.source for c in cells(path) if c.cell_type == "code")


def chapter_number(path: Path) -> int:
    """The number in the chapter's file name: ``book/01-what-is-attention.md`` is 1."""
    return int(path.stem.split("-", 1)[0])


def difficulty_of(options: dict[str, str]) -> str:
    """``easy``, ``medium`` or ``hard`` from an exercise's ``:class: difficulty-...``."""
    for css_class in options.get("class", "").split():
        if css_class.startswith("difficulty-"):
            return css_class.removeprefix("difficulty-")
    return ""


def is_definition_only(source: str) -> bool:
    """True if a cell only imports and defines (functions, classes): safe to run alone."""
    tree = ast.parse(source)
    allowed = (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
    return all(isinstance(node, allowed) for node in tree.body)


def code_lines(source: str) -> int:
    """The number of lines of code of a cell, docstrings, comments and blank lines excluded."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module):
            first = node.body[0] if node.body else None
            value = getattr(first, "value", None)
            if isinstance(first, ast.Expr) and isinstance(getattr(value, "value", None), str):
                docstrings.update(range(first.lineno, first.end_lineno + 1))
    return sum(
        1
        for number, line in enumerate(source.splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#") and number not in docstrings
    )


def _inline_text(token: Token) -> str:
    return token.content.replace("\n", " ").strip()


def _outline(markdown: list[str]) -> dict:
    """Label, title, sections, goals and the chapters it refers to, from the tokens.

    The goals are the first bullet list of the introduction (before the first ``##``)
    after a sentence such as "By the end of the chapter you can:" (or its first list).
    """
    label, title, sections, referred = "", "", [], []
    lists: list[tuple[int, list[str]]] = []  # the introduction's lists, by position
    phrase_at, position, introduction = None, 0, True
    for text in markdown:
        stream = tokens(text)
        for i, token in enumerate(stream):
            position += 1
            if token.type == "myst_target" and not label and token.content.startswith("ch-"):
                label = token.content
            elif token.type == "heading_open" and token.tag == "h1" and not title:
                title = _inline_text(stream[i + 1])
            elif token.type == "heading_open" and token.tag == "h2":
                sections.append(_inline_text(stream[i + 1]))
                introduction = False
            elif token.type == "bullet_list_open" and token.level == 0 and introduction:
                lists.append((position, _list_items(stream, i)))
            elif token.type == "inline":
                for role in (c for c in token.children or [] if c.type == "myst_role"):
                    target = re.search(r"<?(ch-[\w-]+)>?\s*$", role.content)
                    if role.meta.get("name") in ("ref", "numref") and target:
                        referred.append(target.group(1))
                goal_phrase = re.search(GOAL_PHRASE, token.content, re.IGNORECASE)
                if introduction and phrase_at is None and goal_phrase:
                    phrase_at = position
    after = [items for at, items in lists if phrase_at is None or at > phrase_at]
    goals = after[0] if after else []
    return {
        "label": label,
        "title": title,
        "sections": sections,
        "goals": goals,
        "referred": referred,
    }


def _list_items(stream: list[Token], start: int) -> list[str]:
    """The text of the first paragraph of each item of the list that opens at ``start``."""
    items, depth = [], 0
    for i in range(start, len(stream)):
        token = stream[i]
        if token.type in ("bullet_list_open", "ordered_list_open"):
            depth += 1
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            depth -= 1
            if depth == 0:
                break
        elif token.type == "list_item_open" and depth == 1:
            items.append(
                _inline_text(stream[i + 2]) if stream[i + 1].type == "paragraph_open" else ""
            )
    return items


@functools.cache
def _chapter(path: Path, text: str) -> Chapter:
    chapter_cells, found = parse(path)
    outline = _outline([c.source for c in chapter_cells if c.cell_type == "markdown"])
    earlier = {_label(p) for p in CHAPTERS if chapter_number(p) < chapter_number(path)}
    return Chapter(
        path=path,
        number=chapter_number(path),
        label=outline["label"],
        title=outline["title"] or path.stem,
        goals=outline["goals"],
        refers_back_to=list(dict.fromkeys(r for r in outline["referred"] if r in earlier)),
        sections=outline["sections"],
        exercises=found,
        cells=chapter_cells,
    )


def chapter(path: Path) -> Chapter:
    """What the editions, the instructors' page and the convention checks need to know
    about a chapter (parsed once per content of the file)."""
    path = Path(path).resolve()
    return _chapter(path, path.read_text())


def _label(path: Path) -> str:
    return chapter(path).label
