"""Export every chapter as a Jupyter notebook, in two editions.

    python scripts/export_notebooks.py [--out _build/notebooks] [--repository-url URL] [chapters]

- ``instructor/NN-name.ipynb``: the whole chapter, solutions included;
- ``student/NN-name.ipynb``: the same without the solutions (their explanations and cells):
  each exercise keeps its text, its starter cell (a stub that raises ``NotImplementedError``)
  and its checker cell, which says "not implemented yet" until the stub is replaced.
- ``nbgrader/source/NN-name/NN-name.ipynb``: an nbgrader source notebook (see
  :func:`nbgrader_edition`), for ``nbgrader generate_assignment NN-name``.

The code cells are the chapter's own, unchanged. The markdown is made readable in a plain
Jupyter or Colab (which do not know MyST): exercises and solutions become headings,
``{literalinclude}`` becomes the code it includes, citations become "Author (year)", and
cross-references become their text. Cells are tagged (``exercise-starter``, ``solution``,
``exercise-checker``) and carry ``metadata.exercise`` = ``{"label", "number"}``.

If the book has a repository URL (``repository.url`` in ``_config.yml``, or
``--repository-url``), each notebook starts with a cell that installs ``mini_attn`` from it
when it is missing, as on Colab. The notebooks are generated, never committed; the book
build (``_ext/course_kit.py``) writes the same files into the HTML under ``notebooks/``.
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import yaml

if __package__ in (None, ""):  # run as a script: make the `scripts` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.chapters import (
    BOOK,
    CHAPTERS,
    ROOT,
    Directive,
    Exercise,
    cells,
    chapter,
    directives,
    is_definition_only,
)

EDITIONS = ("instructor", "student")
OUT = ROOT / "_build" / "notebooks"

# --------------------------------------------------------------------------- MyST -> Markdown


def _bibliography(path: Path = BOOK / "references.bib") -> dict[str, tuple[str, str]]:
    """``key -> (authors as cited, year)`` from the book's BibTeX file."""
    entries: dict[str, tuple[str, str]] = {}
    if not path.exists():
        return entries
    for match in re.finditer(r"@\w+\{([^,\s]+),(.*?)\n\}", path.read_text(), re.DOTALL):
        key, body = match.groups()
        author = re.search(r"author\s*=\s*\{(.*?)\},?\s*\n", body, re.DOTALL)
        year = re.search(r"year\s*=\s*\{?(\d{4})", body)
        names = [n.strip() for n in (author.group(1) if author else "").split(" and ")]
        surnames = [n.split(",")[0].strip("{} ") if "," in n else n.split()[-1] for n in names if n]
        cited = f"{surnames[0]} et al." if len(surnames) > 2 else " and ".join(surnames)
        entries[key] = (cited or key, year.group(1) if year else "n.d.")
    return entries


def _role(
    name: str, content: str, bibliography: dict[str, tuple[str, str]], labels: dict[str, str]
) -> str:
    """The plain-Markdown text of a MyST role."""
    if name.startswith("cite"):
        cited = [bibliography.get(k.strip(), (k.strip(), "")) for k in content.split(",")]
        if name in ("cite:t", "cite:ts"):
            return "; ".join(f"{who} ({year})" for who, year in cited)
        return "(" + "; ".join(f"{who}, {year}" for who, year in cited) + ")"
    if name == "math":
        return f"${content}$"
    explicit = re.match(r"^(.*?)\s*<([^>]+)>$", content, re.DOTALL)
    if explicit:
        return explicit.group(1)
    if content in labels:
        return labels[content]
    if name in ("func", "class", "meth", "attr", "mod", "obj", "data", "exc") or name.startswith(
        "py:"
    ):
        target = content[1:].rsplit(".", 1)[-1] if content.startswith("~") else content
        return f"`{target}`"
    return content


def _literalinclude(directive: Directive, chapter_path: Path) -> str:
    """The code a ``{literalinclude}`` shows, read exactly as Sphinx reads it."""
    from sphinx.directives.code import LiteralIncludeReader

    filename = (chapter_path.parent / directive.argument).resolve()
    config = SimpleNamespace(source_encoding="utf-8-sig")
    options = dict(directive.options)
    text, _ = LiteralIncludeReader(str(filename), options, config).read()
    language = options.get("language", "python")
    return f"```{language}\n{text.rstrip()}\n```"


def _directive_markdown(
    directive: Directive, chapter_path: Path, numbers: dict[str, str]
) -> str | None:
    """A MyST directive as plain Markdown, or its MyST source if there is no better rendering."""
    name, title, body = directive.name, directive.argument, directive.body
    if name == "exercise":
        number = numbers.get(directive.options.get("label", ""), "")
        return f"### Exercise {number}: {title}\n\n{body}".rstrip()
    if name == "literalinclude":
        try:
            return _literalinclude(directive, chapter_path)
        except Exception:  # a broken include stays visible as its MyST source
            return None
    if name.startswith("prf:") or name in ("admonition", "note", "tip", "important", "warning"):
        kind = name.removeprefix("prf:").capitalize()
        heading = (
            f"**{kind} ({title}).**" if title and name != "admonition" else f"**{title or kind}.**"
        )
        quoted = "\n".join(f"> {line}".rstrip() for line in f"{heading} {body}".splitlines())
        return quoted
    return None


def myst_to_markdown(
    text: str,
    chapter_path: Path,
    numbers: dict[str, str],
    bibliography: dict[str, tuple[str, str]],
    labels: dict[str, str] | None = None,
) -> str:
    """Markdown that a plain Jupyter renders well, from a markdown cell of a chapter."""
    pieces, position = [], 0
    for directive in directives(text):
        rendered = _directive_markdown(directive, chapter_path, numbers)
        if rendered is None:
            continue
        pieces.append(text[position : directive.start])
        pieces.append(rendered + "\n")
        position = directive.end
    pieces.append(text[position:])
    text = "".join(pieces)
    text = re.sub(r"^\([\w-]+\)=[ \t]*\n", "", text, flags=re.MULTILINE)  # MyST targets
    return re.sub(
        r"\{([\w:.-]+)\}`([^`]*)`",
        lambda m: _role(m.group(1), m.group(2), bibliography, labels or {}),
        text,
    )


# --------------------------------------------------------------------------- the editions


def _solution_spans(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, kind)`` of the solution-start / solution-end directives of a cell."""
    return [
        (d.start, d.end, d.name)
        for d in directives(text)
        if d.name in ("solution-start", "solution-end")
    ]


def _without_solutions(text: str, inside: bool) -> tuple[str, bool]:
    """The text of a markdown cell with every solution region removed.

    ``inside`` says whether the cell starts inside a solution (a region spans cells: the
    solution's code cells sit between its start and its end); the new value is returned.
    """
    kept, position = [], 0
    for start, end, kind in _solution_spans(text):
        if kind == "solution-start":
            if not inside:
                kept.append(text[position:start])
            inside = True
        else:
            inside = False
        position = end
    if not inside:
        kept.append(text[position:])
    return "".join(kept).strip("\n"), inside


def _solution_heading(text: str, numbers: dict[str, str]) -> str:
    """Replace solution-start / solution-end directives by a heading / nothing."""
    for d in reversed(directives(text)):
        if d.name == "solution-start":
            heading = f"#### Solution to exercise {numbers.get(d.argument, '')}".rstrip() + "\n"
            text = text[: d.start] + heading + text[d.end :]
        elif d.name == "solution-end":
            text = text[: d.start] + text[d.end :]
    return text.strip("\n")


def install_cell(repository_url: str) -> nbformat.NotebookNode:
    """A first cell that installs ``mini_attn`` from the book's repository when it is missing."""
    source = (
        "# Colab, Binder or a JupyterHub without the book's package: install mini_attn\n"
        "# from the book's repository (a no-op where it is installed already).\n"
        "import importlib.util\n\n"
        'if importlib.util.find_spec("mini_attn") is None:\n'
        f'    %pip install --quiet "mini_attn[chapters] @ git+{repository_url.rstrip("/")}"'
    )
    return nbformat.v4.new_code_cell(source, metadata={"tags": ["install"]})


def _header(edition: str, number: int, title: str, has_exercises: bool) -> str:
    if edition == "instructor":
        what = "the whole chapter, **with the solutions** of its exercises"
    else:
        what = (
            "the whole chapter **without the solutions**: for each exercise, replace the "
            "`raise NotImplementedError` line of its starter cell with your code, then run "
            "the checker cell after it, which tells you what is wrong or prints ✓"
        )
    note = f"*{edition.capitalize()} edition of chapter {number}, {title}*: {what}."
    if not has_exercises:
        note = f"*{edition.capitalize()} edition of chapter {number}, {title}.*"
    return (
        note
        + " Run it with the `mini_attn` package installed (see the book's page *For instructors*)."
    )


def labels_of(path: Path, numbers: dict[str, str]) -> dict[str, str]:
    """The text a reference to a label shows: chapter titles, exercise numbers, definitions."""
    labels = {}
    for other in CHAPTERS:
        info = chapter(other)
        if info.label:
            labels[info.label] = f"chapter {info.number}, *{info.title}*"
    labels.update({label: f"exercise {number}" for label, number in numbers.items()})
    for cell in cells(path):
        if cell.cell_type == "markdown":
            for d in directives(cell.source):
                if "label" in d.options and d.argument:
                    labels.setdefault(d.options["label"], f"*{d.argument}*")
    return labels


def editions(
    path: Path, repository_url: str = "", bibliography: dict | None = None
) -> dict[str, nbformat.NotebookNode]:
    """The instructor and student notebooks of one chapter."""
    bibliography = _bibliography() if bibliography is None else bibliography
    info = chapter(path)
    numbers = {ex.label: ex.number for ex in info.exercises}
    roles: dict[int, tuple[str, Exercise]] = {}
    for ex in info.exercises:
        if ex.starter_cell is not None:
            roles[ex.starter_cell] = ("exercise-starter", ex)
        for index in ex.solution_cells:
            roles[index] = ("solution", ex)
        if ex.checker_cell is not None:
            roles[ex.checker_cell] = ("exercise-checker", ex)

    source_cells = cells(path)
    labels = labels_of(path, numbers)
    result = {}
    for edition in EDITIONS:
        notebook = nbformat.v4.new_notebook()
        notebook.metadata = {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "mini_attn": {
                "chapter": info.number,
                "source": f"book/{path.name}",
                "edition": edition,
            },
        }
        new = [
            nbformat.v4.new_markdown_cell(_header(edition, info.number, info.title, bool(numbers)))
        ]
        inside = False
        for index, cell in enumerate(source_cells):
            role, exercise = roles.get(index, ("", None))
            if cell.cell_type == "markdown":
                text = cell.source
                if edition == "student":
                    text, inside = _without_solutions(text, inside)
                else:
                    text = _solution_heading(text, numbers)
                text = myst_to_markdown(text, path, numbers, bibliography, labels)
                if text.strip():
                    new.append(nbformat.v4.new_markdown_cell(text.strip("\n")))
                continue
            if edition == "student" and role == "solution":
                continue
            if edition == "student" and inside and cell.cell_type == "code":
                continue  # a code cell inside a solution that the exercise parser did not claim
            metadata = copy.deepcopy(dict(cell.metadata))
            if role:
                metadata["tags"] = [*metadata.get("tags", []), role]
                metadata["exercise"] = {"label": exercise.label, "number": exercise.number}
            new.append(nbformat.v4.new_code_cell(cell.source, metadata=metadata))
        first_code = next((i for i, c in enumerate(new) if c.cell_type == "code"), None)
        if repository_url and first_code is not None:
            new.insert(first_code, install_cell(repository_url))
        for i, cell in enumerate(new):
            cell["id"] = f"{edition[0]}{i:03d}"  # stable ids: two exports give the same files
        notebook.cells = new
        nbformat.validate(notebook)
        result[edition] = notebook
    return result


# --------------------------------------------------------------------------- nbgrader

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def _nbgrader(grade_id: str, *, solution: bool, grade: bool, points: int = 0) -> dict:
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": not solution,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if grade:
        meta["points"] = points
    return meta


def _functions(source: str) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}


def answer_cell_source(starter: str, solutions: list[str]) -> str | None:
    """The starter cell with each ``raise NotImplementedError`` replaced by the solution's body
    between nbgrader's solution markers, or None if the two do not match function by function
    (the stub's functions must end with that raise; the solution must define only them)."""
    stubs = _functions(starter)
    tree = ast.parse(starter)
    if not stubs or len(stubs) != len(tree.body):
        return None
    solved: dict[str, ast.FunctionDef] = {}
    for source in solutions:
        for node in ast.parse(source).body:
            if not isinstance(node, ast.FunctionDef) or node.name not in stubs:
                return None
            solved[node.name] = node
    if set(solved) != set(stubs):
        return None
    starter_lines, replacements = starter.splitlines(), {}
    for name, stub in stubs.items():
        last = stub.body[-1]
        is_raise = isinstance(last, ast.Raise) and "NotImplementedError" in ast.unparse(last)
        if not is_raise or last.lineno != last.end_lineno:
            return None
        body = solved[name].body
        if isinstance(body[0], ast.Expr) and isinstance(
            getattr(body[0], "value", None), ast.Constant
        ):
            body = body[1:]  # the docstring stays the stub's
        source = next(s for s in solutions if name in _functions(s))
        lines = source.splitlines()[body[0].lineno - 1 : body[-1].end_lineno]
        old_indent = len(lines[0]) - len(lines[0].lstrip())
        indent = " " * last.col_offset
        replacements[last.lineno - 1] = [
            indent + BEGIN,
            *[(indent + line[old_indent:]) if line.strip() else "" for line in lines],
            indent + END,
        ]
    out = []
    for index, line in enumerate(starter_lines):
        out.extend(replacements.get(index, [line]))
    return "\n".join(out)


def nbgrader_edition(instructor: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """An nbgrader *source* notebook from an instructor notebook.

    Per exercise: one autograded answer cell (the starter, its ``raise NotImplementedError``
    replaced by the solution between ``### BEGIN SOLUTION`` / ``### END SOLUTION``, which
    ``nbgrader generate_assignment`` turns back into a stub) and one autograder test cell,
    the checker, worth 1 point. The solutions' explanations and demonstrations are left out.
    Where starter and solution do not match function by function, the solution's cells become
    the answer cells, whole between the markers.
    """
    notebook = copy.deepcopy(instructor)
    notebook.metadata["mini_attn"]["edition"] = "nbgrader"
    by_label: dict[str, dict[str, list]] = {}
    for cell in notebook.cells:
        for tag in ("exercise-starter", "solution", "exercise-checker"):
            if tag in cell.metadata.get("tags", []):
                label = cell.metadata["exercise"]["label"]
                by_label.setdefault(label, {}).setdefault(tag, []).append(cell)
    new, in_solution = [], False
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "markdown":
            if cell.source.startswith("#### Solution to exercise"):
                in_solution = True  # leave out the explanations, up to the checker
            elif not in_solution:
                if cell.source.startswith("*Instructor edition"):
                    cell.source = cell.source.replace("*Instructor edition", "*nbgrader source", 1)
                new.append(cell)
            continue
        if "exercise-checker" in tags:
            in_solution = False
            label = cell.metadata["exercise"]["label"]
            cell.metadata["nbgrader"] = _nbgrader(
                f"{label}-check", solution=False, grade=True, points=1
            )
            new.append(cell)
        elif "exercise-starter" in tags:
            label = cell.metadata["exercise"]["label"]
            definitions = [
                c.source
                for c in by_label[label].get("solution", [])
                if is_definition_only(c.source)
            ]
            answer = answer_cell_source(cell.source, definitions)
            if answer is not None:
                cell.source = answer
                cell.metadata["nbgrader"] = _nbgrader(f"{label}-answer", solution=True, grade=False)
                new.append(cell)
            else:  # the solution's definitions become the answer cells, whole
                for n, source in enumerate(definitions):
                    new.append(
                        nbformat.v4.new_code_cell(
                            f"{BEGIN}\n{source}\n{END}",
                            metadata={
                                "tags": ["solution"],
                                "exercise": cell.metadata["exercise"],
                                "nbgrader": _nbgrader(
                                    f"{label}-answer-{n}", solution=True, grade=False
                                ),
                            },
                        )
                    )
        elif "solution" in tags or in_solution:
            continue
        else:
            new.append(cell)
    for i, cell in enumerate(new):
        cell["id"] = f"g{i:03d}"
    notebook.cells = new
    nbformat.validate(notebook)
    return notebook


def repository_url_from_config(config: Path = ROOT / "_config.yml") -> str:
    """``repository.url`` of the book's ``_config.yml``, or ``""``."""
    data = yaml.safe_load(config.read_text()) or {}
    return ((data.get("repository") or {}).get("url") or "").strip()


def export(
    chapters: list[Path] | None = None,
    out: Path = OUT,
    repository_url: str | None = None,
    with_solutions: bool = True,
) -> list[Path]:
    """Write ``out/{instructor,student}/NN-name.ipynb`` and the nbgrader source
    ``out/nbgrader/source/NN-name/NN-name.ipynb`` of every chapter; return the paths.
    Without solutions (the students' copy of the book), the student notebooks only."""
    chapters = CHAPTERS if chapters is None else chapters
    repository_url = repository_url_from_config() if repository_url is None else repository_url
    bibliography = _bibliography()
    written = []
    for path in chapters:
        notebooks = editions(path, repository_url, bibliography)
        if with_solutions:
            notebooks["nbgrader"] = nbgrader_edition(notebooks["instructor"])
        else:
            notebooks = {"student": notebooks["student"]}
        for edition, notebook in notebooks.items():
            target = out / edition / f"{path.stem}.ipynb"
            if edition == "nbgrader":  # nbgrader's course folder: source/<assignment>/<notebook>
                target = out / edition / "source" / path.stem / f"{path.stem}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            text = nbformat.writes(notebook) + "\n"
            if not target.exists() or target.read_text() != text:
                target.write_text(text)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="chapters (default: all)")
    parser.add_argument(
        "--out", type=Path, default=OUT, help=f"folder (default: {OUT.relative_to(ROOT)})"
    )
    parser.add_argument(
        "--repository-url",
        default=None,
        help="the book's repository, for the install cell (default: repository.url of _config.yml)",
    )
    args = parser.parse_args(argv)
    written = export([p.resolve() for p in args.chapters] or None, args.out, args.repository_url)
    for edition in (*EDITIONS, "nbgrader"):
        count = sum(1 for p in written if p.relative_to(args.out).parts[0] == edition)
        where = args.out / edition / ("source" if edition == "nbgrader" else "")
        print(f"{count} {edition} notebooks in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
