"""Read the chapters (MyST Markdown notebooks): the one parser the tests, the notebook export
and the instructors page share.

An exercise in a chapter follows the convention of CONTRIBUTING.md:

    ```{exercise} Title            <- with a :label: (and optionally :class: difficulty-easy)
    ```{code-cell}                  <- the starter cell: a stub that raises NotImplementedError
    ```{solution-start} label       <- then markdown and code cells: the reference solution
    ```{solution-end}
    ```{code-cell}                  <- the checker call, e.g. check_x(x)

Import it as ``scripts.chapters`` (the tests, the Sphinx extension ``_ext/course_kit.py``)
or as ``chapters`` from a script in this folder.
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

# A directive fence of MyST: ```{name} argument ... ``` (or ~~~ / ::: with colon_fence).
_OPEN = re.compile(r"^(?P<fence>`{3,}|~{3,}|:{3,})\{(?P<name>[\w:.-]+)\}[ \t]*(?P<argument>.*)$")
_OPTION = re.compile(r"^:(?P<key>[\w-]+):[ \t]*(?P<value>.*)$")
DIFFICULTIES = ("easy", "medium", "hard")


@dataclass
class Directive:
    """One MyST directive of a markdown cell: its name, argument, options and body."""

    name: str
    argument: str
    options: dict[str, str]
    body: str
    start: int  # character offsets of the whole directive (fences included) in the cell
    end: int


@dataclass
class Exercise:
    chapter: str
    label: str
    title: str = ""
    number: str = ""  # "N.k": chapter number, then the position in the chapter (from 1)
    difficulty: str = ""  # from `:class: difficulty-<easy|medium|hard>`, empty if not given
    starter: str = ""
    solution: list[str] = field(default_factory=list)
    checker: str = ""
    # indices in the chapter's notebook cells (jupytext), for the notebook editions
    exercise_cell: int | None = None
    starter_cell: int | None = None
    solution_cells: list[int] = field(default_factory=list)
    checker_cell: int | None = None

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

    @property
    def written(self) -> bool:
        """A chapter with code cells; the placeholders of unwritten chapters have none."""
        return any(c.cell_type == "code" for c in cells(self.path))


def cells(path: Path):
    """The notebook cells of a chapter, as jupytext reads them."""
    return jupytext.read(path).cells


def imports_cell(path: Path) -> str:
    """The first code cell of a chapter: its imports (and seeding)."""
    return next(c.source for c in cells(path) if c.cell_type == "code")


def chapter_number(path: Path) -> int:
    """The number in the chapter's file name: ``book/01-what-is-attention.md`` is 1."""
    return int(path.stem.split("-", 1)[0])


def directives(text: str) -> list[Directive]:
    """The top-level MyST directives of a markdown text, in order."""
    found: list[Directive] = []
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    i = 0
    while i < len(lines):
        match = _OPEN.match(lines[i].rstrip("\n"))
        if not match:
            i += 1
            continue
        fence = match.group("fence")
        closing = re.compile(rf"^{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        j = i + 1
        while j < len(lines) and not closing.match(lines[j].rstrip("\n")):
            j += 1
        content = lines[i + 1 : j]
        options: dict[str, str] = {}
        while content and (option := _OPTION.match(content[0].rstrip("\n"))):
            options[option.group("key")] = option.group("value").strip()
            content = content[1:]
        found.append(
            Directive(
                name=match.group("name"),
                argument=match.group("argument").strip(),
                options=options,
                body="".join(content).strip("\n"),
                start=offsets[i],
                end=offsets[min(j + 1, len(lines))],
            )
        )
        i = j + 1
    return found


def difficulty_of(options: dict[str, str]) -> str:
    """``easy``, ``medium`` or ``hard`` from an exercise's ``:class: difficulty-...``."""
    for css_class in options.get("class", "").split():
        if css_class.startswith("difficulty-"):
            return css_class.removeprefix("difficulty-")
    return ""


def exercises(path: Path) -> list[Exercise]:
    """Every exercise of a chapter with its starter, solution and checker cells."""
    found: list[Exercise] = []
    current: Exercise | None = None
    state = "outside"  # outside -> starter -> solution -> checker -> outside
    for index, cell in enumerate(cells(path)):
        if cell.cell_type == "markdown":
            for directive in directives(cell.source):
                if directive.name == "exercise":
                    current = Exercise(
                        path.stem,
                        directive.options.get("label", ""),
                        title=directive.argument,
                        number=f"{chapter_number(path)}.{len(found) + 1}",
                        difficulty=difficulty_of(directive.options),
                        exercise_cell=index,
                    )
                    found.append(current)
                    state = "starter"
                elif directive.name == "solution-start":
                    state = "solution"
                elif directive.name == "solution-end":
                    state = "checker"
            continue
        if current is None:
            continue
        if state == "starter" and not current.starter:
            current.starter = cell.source
            current.starter_cell = index
        elif state == "solution":
            current.solution.append(cell.source)
            current.solution_cells.append(index)
        elif state == "checker" and not current.checker:
            current.checker = cell.source
            current.checker_cell = index
            state = "outside"
    return found


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
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            first = node.body[0] if node.body else None
            value = getattr(first, "value", None)
            if isinstance(first, ast.Expr) and isinstance(getattr(value, "value", None), str):
                docstrings.update(range(first.lineno, first.end_lineno + 1))
    return sum(
        1
        for number, line in enumerate(source.splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#") and number not in docstrings
    )


def _markdown(path: Path) -> str:
    return "\n\n".join(c.source for c in cells(path) if c.cell_type == "markdown")


def _goals(introduction: str) -> list[str]:
    """The bullet list that follows "By the end of the chapter you can:" (or the first one)."""
    lines = introduction.splitlines()
    start = next(
        (
            i
            for i, line in enumerate(lines)
            if re.search(r"by the end|you (can|will)|objectives|goals", line, re.IGNORECASE)
        ),
        0,
    )
    goals: list[str] = []
    in_list = False
    for line in lines[start:]:
        if re.match(r"^[-*+] ", line):
            goals.append(line[2:].strip())
            in_list = True
        elif in_list and line.startswith("  ") and line.strip():
            goals[-1] += " " + line.strip()
        elif in_list:
            break
    return goals


def chapter(path: Path) -> Chapter:
    """What the instructors page and the convention checks need to know about a chapter."""
    text = _markdown(path)
    label = re.search(r"^\((ch-[\w-]+)\)=\s*$", text, re.MULTILINE)
    title = re.search(r"^# (.+)$", text, re.MULTILINE)
    introduction = re.split(r"^## ", text, maxsplit=1, flags=re.MULTILINE)[0]
    earlier = {_label(p) for p in CHAPTERS if chapter_number(p) < chapter_number(path)}
    referred = re.findall(r"\{(?:ref|numref)\}`(?:[^`<]*<)?(ch-[\w-]+)>?`", text)
    return Chapter(
        path=path,
        number=chapter_number(path),
        label=label.group(1) if label else "",
        title=title.group(1).strip() if title else path.stem,
        goals=_goals(introduction),
        refers_back_to=list(dict.fromkeys(r for r in referred if r in earlier)),
        sections=re.findall(r"^## (.+?)\s*$", text, re.MULTILINE),
        exercises=exercises(path),
    )


def _label(path: Path) -> str:
    match = re.search(r"^\((ch-[\w-]+)\)=\s*$", path.read_text(), re.MULTILINE)
    return match.group(1) if match else ""
