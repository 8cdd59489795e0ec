"""The notebooks of a chapter, one per edition, all derived from the chapter's tagged cells.

- ``instructor``: every cell, solutions included (each solution under a heading);
- ``student``: every cell but those tagged ``solution``: each exercise keeps its text, its
  starter cell (a stub that raises ``NotImplementedError``) and its checker cell, which says
  "not implemented yet" until the stub is replaced;
- ``nbgrader``: the student's cells, with each starter filled in with the solution between
  nbgrader's markers and each checker graded (:mod:`book_tools.nbgrader`), for
  ``nbgrader generate_assignment NN-name``.

The one mark of a solution is the tag :func:`book_tools.chapters.parse` gives its cells; an
edition without solutions drops the cells so tagged, and nothing else looks for them. The code
cells are the chapter's own, unchanged; the markdown is made readable in a plain Jupyter
(:mod:`book_tools.markdown`). Code cells keep their tag (``exercise-starter``, ``solution``,
``exercise-checker``) and carry ``metadata.exercise`` = ``{"label", "number"}``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat

from book_tools import nbgrader
from book_tools.chapters import CHECKER, STARTER, Chapter, chapter, is_definition_only
from book_tools.markdown import labels_of, myst_to_markdown

EDITIONS = ("instructor", "student", "nbgrader")
OFFERED = ("student", "instructor")  # what a chapter page of the book offers for download
WITH_SOLUTIONS = {"instructor": True, "student": False, "nbgrader": False}
_ID_PREFIX = {"instructor": "i", "student": "s", "nbgrader": "g"}


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


def _header(edition: str, info: Chapter) -> str:
    what = {
        "instructor": "the whole chapter, **with the solutions** of its exercises",
        "student": (
            "the whole chapter **without the solutions**: for each exercise, replace the "
            "`raise NotImplementedError` line of its starter cell with your code, then run "
            "the checker cell after it, which tells you what is wrong or prints ✓"
        ),
        "nbgrader": (
            "the student edition with each answer cell holding the solution between "
            "nbgrader's markers and each checker graded, for `nbgrader generate_assignment`"
        ),
    }[edition]
    name = "nbgrader source" if edition == "nbgrader" else f"{edition.capitalize()} edition"
    note = f"*{name} of chapter {info.number}, {info.title}*: {what}."
    if not info.exercises:
        note = f"*{name} of chapter {info.number}, {info.title}.*"
    return (
        note
        + " Run it with the `mini_attn` package installed (see the book's page *For instructors*)."
    )


def _code_cells(cell, edition: str, numbers: dict[str, str], definitions: dict[str, list]):
    """The notebook cells of one code cell of the chapter, in this edition."""
    metadata = copy.deepcopy(cell.metadata)
    if cell.tag:
        metadata["tags"] = [*metadata.get("tags", []), cell.tag]
        metadata["exercise"] = {"label": cell.label, "number": numbers[cell.label]}
    new = nbformat.v4.new_code_cell(cell.source, metadata=metadata)
    if edition == "nbgrader" and cell.tag == STARTER:
        return nbgrader.answer_cells(new, definitions.get(cell.label, []))
    if edition == "nbgrader" and cell.tag == CHECKER:
        return [nbgrader.graded(new)]
    return [new]


def offered(students_copy: bool) -> tuple[str, ...]:
    """The notebooks the book offers: the student ones only in the students' copy
    (``make student-book``), else the student and instructor ones."""
    return ("student",) if students_copy else OFFERED


def edition(path: Path, name: str, repository_url: str = "") -> nbformat.NotebookNode:
    """The notebook of chapter ``path`` in edition ``name`` (one of :data:`EDITIONS`)."""
    info = chapter(path)
    numbers = {ex.label: ex.number for ex in info.exercises}
    definitions = {
        ex.label: [s for s in ex.solution if is_definition_only(s)] for ex in info.exercises
    }
    labels = labels_of(path)
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "mini_attn": {"chapter": info.number, "source": f"book/{path.name}", "edition": name},
    }
    new = [nbformat.v4.new_markdown_cell(_header(name, info))]
    for cell in info.cells:
        if cell.is_solution and not WITH_SOLUTIONS[name]:
            continue
        if cell.cell_type == "markdown":
            text = myst_to_markdown(cell.source, path, labels)
            if text.strip():
                new.append(nbformat.v4.new_markdown_cell(text))
        else:
            new += _code_cells(cell, name, numbers, definitions)
    first_code = next((i for i, c in enumerate(new) if c.cell_type == "code"), None)
    if repository_url and first_code is not None:
        new.insert(first_code, install_cell(repository_url))
    for i, cell in enumerate(new):
        cell["id"] = f"{_ID_PREFIX[name]}{i:03d}"  # stable ids: two exports give the same files
    notebook.cells = new
    nbformat.validate(notebook)
    return notebook


def editions(
    path: Path, repository_url: str = "", names: tuple[str, ...] = EDITIONS
) -> dict[str, nbformat.NotebookNode]:
    """``{edition: notebook}`` of one chapter."""
    return {name: edition(Path(path), name, repository_url) for name in names}
