"""The course kit: the student and instructor notebooks, the launch settings, the built
book's downloads and instructors' page, and the conventions the kit relies on.

- The instructor notebook of a chapter executes top to bottom without error.
- The student notebook executes up to its first unsolved exercise, whose checker fails with
  the checker's own message ("not implemented yet"), and nothing else in it fails.

Executing chapter 1 takes seconds; the other chapters are marked slow.
"""

from __future__ import annotations

import html
import linecache
import re

import nbformat
import pytest

from book_tools import course_kit
from book_tools.chapters import (
    BOOK,
    CHAPTERS,
    ROOT,
    cells,
    chapter,
    directives,
    exercises,
    imports_cell,
)
from book_tools.editions import EDITIONS, OFFERED, editions, install_cell
from book_tools.export import export, repository_url_from_config
from book_tools.nbgrader import BEGIN, END, answer_cell_source
from book_tools.run_chapter import execute_notebook
from mini_attn.exercises import CheckFailed

WRITTEN = [p for p in CHAPTERS if chapter(p).written]
HTML = ROOT / "_build" / "html"


def _course_kit():
    return course_kit


def _slow_unless_first(paths):
    return [
        pytest.param(p, id=p.stem, marks=() if p == CHAPTERS[0] else pytest.mark.slow)
        for p in paths
    ]


def _code(notebook) -> list[str]:
    return [c.source for c in notebook.cells if c.cell_type == "code"]


def _tagged(notebook, tag: str) -> list:
    return [c for c in notebook.cells if tag in c.metadata.get("tags", [])]


# --------------------------------------------------------------------------- the parser


def test_directives_read_arguments_options_and_nested_fences():
    text = (
        "Intro.\n\n````{exercise} A title\n:label: ex-a\n:class: difficulty-hard\n\n"
        "Body with `code` and\n```python\nx = 1\n```\n````\n\n```{solution-end}\n```\n"
    )
    found = directives(text)
    assert [d.name for d in found] == ["exercise", "solution-end"]
    assert found[0].argument == "A title"
    assert found[0].options == {"label": "ex-a", "class": "difficulty-hard"}
    assert found[0].body.startswith("Body with `code`") and "x = 1" in found[0].body
    assert text[found[1].start : found[1].end] == "```{solution-end}\n```\n"


def test_exercises_are_numbered_by_chapter_and_position():
    found = exercises(CHAPTERS[0])
    assert [ex.number for ex in found] == [f"1.{k}" for k in range(1, len(found) + 1)]
    assert all(ex.checker_name.startswith("check_") for ex in found)
    assert all(ex.title and ex.solution_lines > 0 for ex in found)


# --------------------------------------------------------------------------- the editions


@pytest.fixture(scope="module")
def built_editions():
    return {p: editions(p) for p in WRITTEN}


@pytest.mark.parametrize("path", WRITTEN, ids=lambda p: p.stem)
def test_instructor_edition_has_every_code_cell_of_the_chapter(built_editions, path):
    chapter_code = [c.source for c in chapter_cells(path) if c.cell_type == "code"]
    instructor = built_editions[path]["instructor"]
    assert _code(instructor) == chapter_code
    assert len(_tagged(instructor, "solution")) >= len(exercises(path))


def chapter_cells(path):
    return cells(path)


@pytest.mark.parametrize("path", WRITTEN, ids=lambda p: p.stem)
def test_student_edition_removes_solutions_and_keeps_stubs_and_checkers(built_editions, path):
    student = built_editions[path]["student"]
    found = exercises(path)
    chapter_code = [
        c.source for c in chapter_cells(path) if c.cell_type == "code" and not c.is_solution
    ]
    assert _code(student) == chapter_code, "the student edition lost or kept the wrong cells"
    assert not _tagged(student, "solution")
    starters, checkers = _tagged(student, "exercise-starter"), _tagged(student, "exercise-checker")
    assert [c.metadata["exercise"]["label"] for c in starters] == [ex.label for ex in found]
    assert [c.source for c in checkers] == [ex.checker for ex in found]
    assert all("raise NotImplementedError" in c.source for c in starters)
    markdown = "\n".join(c.source for c in student.cells if c.cell_type == "markdown")
    for name in ("{exercise}", "{solution-start}", "{solution-end}", "#### Solution"):
        assert name not in markdown
    for ex in found:
        assert f"### Exercise {ex.number}: {ex.title}" in markdown
    # the explanations inside the solutions are gone from the student edition
    instructor_md = [
        c.source for c in built_editions[path]["instructor"].cells if c.cell_type == "markdown"
    ]
    explanations = [t for t in instructor_md if t.startswith("#### Solution to exercise")]
    assert len(explanations) == len(found)
    for text in explanations:
        # the explanation's first paragraph (its start can be a code span such as `torch.nn`)
        first_paragraph = text.split("\n\n", 1)[-1].split("\n\n")[0]
        assert first_paragraph not in markdown


def test_markdown_shows_what_the_page_shows():
    """A ``:no-docstring:`` include becomes the code the page shows (the docstring dropped),
    a citation "Author, year" from the BibTeX file (pybtex), a target disappears."""
    from book_tools.literalinclude import code_without_docstring

    path = CHAPTERS[0]
    markdown = "\n".join(
        c.source for c in editions(path)["instructor"].cells if c.cell_type == "markdown"
    )
    shown = code_without_docstring(ROOT / "mini_attn/core/softmax.py", "masked_softmax")
    assert f"```python\n{shown.rstrip()}\n```" in markdown
    assert '"""' not in shown and "{literalinclude}" not in markdown
    assert "(James, 1890)" in markdown and "{cite:p}" not in markdown
    assert "(ch-what-is-attention)=" not in markdown


def test_export_writes_every_edition_and_is_deterministic(tmp_path):
    first = export(CHAPTERS[:1], tmp_path / "a", repository_url="")
    second = export(CHAPTERS[:1], tmp_path / "b", repository_url="")
    names = sorted(str(p.relative_to(tmp_path / "a")) for p in first)
    stem = CHAPTERS[0].stem
    assert EDITIONS == ("instructor", "student", "nbgrader")
    assert names == sorted(
        [
            f"instructor/{stem}.ipynb",
            f"student/{stem}.ipynb",
            f"nbgrader/source/{stem}/{stem}.ipynb",
        ]
    )
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), f"{a.name}: two exports differ"
        nbformat.validate(nbformat.read(a, as_version=4))


def test_install_cell_only_with_a_repository_url():
    url = "https://github.com/example/attention-book"
    with_url = editions(CHAPTERS[0], repository_url=url)["student"]
    first_code = next(c for c in with_url.cells if c.cell_type == "code")
    assert first_code.source == install_cell(url).source
    assert f"mini_attn[chapters] @ git+{url}" in first_code.source
    from IPython.core.inputtransformer2 import TransformerManager

    python = TransformerManager().transform_cell(first_code.source)
    compile(python, "install-cell", "exec")  # the %pip line is valid IPython
    without = editions(CHAPTERS[0], repository_url="")["student"]
    assert not _tagged(without, "install")
    for path in CHAPTERS:  # a chapter without code (a placeholder) gets no install cell
        for notebook in editions(path, repository_url=url).values():
            assert bool(_tagged(notebook, "install")) == bool(_code(notebook)[1:])


# --------------------------------------------------------------------------- nbgrader


def _release(source: str) -> str:
    """What ``nbgrader generate_assignment`` does to an answer cell: the region between the
    solution markers becomes its stub, indented like the first marker."""
    return re.sub(
        rf"^([ \t]*){re.escape(BEGIN)}\n.*?^[ \t]*{re.escape(END)}$",
        lambda m: f"{m.group(1)}# YOUR CODE HERE\n{m.group(1)}raise NotImplementedError()",
        source,
        flags=re.MULTILINE | re.DOTALL,
    )


def _solved(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if line.strip() not in (BEGIN, END))


def test_answer_cell_keeps_the_stub_and_puts_the_solution_between_markers():
    stub = 'def f(x):\n    """Doc."""\n    raise NotImplementedError("Exercise 9.1: f")\n'
    solution = 'def f(x):\n    """Doc."""\n    y = x + 1\n\n    return y\n'
    assert answer_cell_source(stub, [solution]) == (
        f'def f(x):\n    """Doc."""\n    {BEGIN}\n    y = x + 1\n\n    return y\n    {END}'
    )
    assert answer_cell_source(stub, ["def g(x):\n    return x\n"]) is None  # not the same function
    long_stub = 'def f(x):\n    raise NotImplementedError(\n        "Exercise 9.1: f"\n    )\n'
    assert answer_cell_source(long_stub, [solution]) == (
        f"def f(x):\n    {BEGIN}\n    y = x + 1\n\n    return y\n    {END}"
    )


@pytest.mark.parametrize("path", WRITTEN, ids=lambda p: p.stem)
def test_nbgrader_source_grades_each_exercise(built_editions, path, capsys):
    notebook = built_editions[path]["nbgrader"]
    found = exercises(path)
    graded = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade")]
    answers = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert [c.source for c in graded] == [ex.checker for ex in found]
    assert all(c.metadata["nbgrader"]["points"] == 1 for c in graded)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in graded + answers]
    assert len(ids) == len(set(ids)), "nbgrader needs unique grade ids"
    assert not [c for c in notebook.cells if c.source.startswith("#### Solution")]
    # solved, each answer passes its checker; released, it fails with "not implemented yet"
    for ex in found:
        sources = [c.source for c in answers if c.metadata["exercise"]["label"] == ex.label]
        assert sources and all(BEGIN in c and END in c for c in sources)
        for version, expect_pass in ((_solved, True), (_release, False)):
            namespace: dict = {}
            _run(imports_cell(path), namespace, f"<{path.stem}-imports>")
            for n, source in enumerate(sources):
                _run(version(source), namespace, f"<{ex.label}-{version.__name__}-{n}>")
            if expect_pass:
                _run(ex.checker, namespace, f"<{ex.label}-check>")
                assert "✓" in capsys.readouterr().out
            else:
                with pytest.raises(CheckFailed, match="not implemented yet"):
                    _run(ex.checker, namespace, f"<{ex.label}-check-released>")


def _run(source: str, namespace: dict, filename: str) -> None:
    """exec with a file name of its own, so that inspect (and triton.jit) finds the source."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)


# --------------------------------------------------------------------------- execution


def _execute(notebook, *, allow_errors: bool):
    return execute_notebook(notebook, BOOK, allow_errors=allow_errors)


def _errors(notebook) -> list[tuple[int, dict]]:
    return [
        (i, out)
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]


@pytest.mark.parametrize("path", _slow_unless_first(WRITTEN))
def test_instructor_notebook_executes_top_to_bottom(path):
    notebook = _execute(editions(path)["instructor"], allow_errors=False)
    assert not _errors(notebook)
    checkers = _tagged(notebook, "exercise-checker")
    outputs = ["".join(o.get("text", "") for o in c.outputs) for c in checkers]
    assert all("✓" in text for text in outputs), f"a checker did not pass: {outputs}"


@pytest.mark.parametrize("path", _slow_unless_first(WRITTEN))
def test_student_notebook_stops_at_the_first_exercise_with_the_checkers_message(path):
    notebook = _execute(editions(path)["student"], allow_errors=True)
    errors = _errors(notebook)
    assert errors, "the student notebook ran without any exercise failing"
    first_checker = next(
        i for i, c in enumerate(notebook.cells) if "exercise-checker" in c.metadata.get("tags", [])
    )
    index, first = errors[0]
    assert index == first_checker, (
        f"the first error is in cell {index}, not in the first checker cell ({first_checker}):\n"
        f"{notebook.cells[index].source}\n{first.get('ename')}: {first.get('evalue')}"
    )
    for index, error in errors:
        cell = notebook.cells[index]
        assert "exercise-checker" in cell.metadata.get("tags", []), (
            f"a cell other than a checker failed: {cell.source!r}: {error.get('evalue')}"
        )
        assert error["ename"] == "CheckFailed" and "not implemented yet" in error["evalue"], (
            f"{cell.source!r} failed with {error['ename']}: {error['evalue']}"
        )


# --------------------------------------------------------------------------- the one setting


def test_buttons_are_off_without_a_repository_url():
    kit = _course_kit()
    options = kit.apply_repository_setting(
        {
            "repository_url": "",
            "use_repository_button": True,
            "launch_buttons": {"binderhub_url": "https://mybinder.org", "colab_url": "x"},
        }
    )
    assert "repository_url" not in options and options["use_repository_button"] is False
    assert not any(options["launch_buttons"].get(k) for k in kit.SERVICES)


def test_a_repository_url_switches_the_buttons_on_and_launches_the_student_notebook():
    kit = _course_kit()
    url = "https://github.com/example/attention-book"
    launch = {
        "binderhub_url": "https://mybinder.org",
        "colab_url": "https://colab.research.google.com",
        "jupyterhub_url": "https://hub.example.edu",
        "notebook_interface": "classic",
    }
    options = kit.apply_repository_setting({"repository_url": url, "launch_buttons": launch})
    assert options["use_repository_button"] is True
    assert options["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    notebook = "notebooks/student/01-what-is-attention.ipynb"
    urls = kit.launch_urls(url, launch, notebook)
    assert urls["Colab"] == (
        "https://colab.research.google.com/github/example/attention-book/blob/gh-pages/" + notebook
    )
    assert urls["Binder"] == (
        "https://mybinder.org/v2/gh/example/attention-book/gh-pages?urlpath=tree/" + notebook
    )
    assert urls["JupyterHub"].startswith("https://hub.example.edu/hub/user-redirect/git-pull?")
    assert "branch=gh-pages" in urls["JupyterHub"]
    assert f"urlpath=tree/attention-book/{notebook}" in urls["JupyterHub"]


def test_the_config_has_no_repository_url_and_the_extensions_are_loaded():
    config = (ROOT / "_config.yml").read_text()
    assert repository_url_from_config() == ""
    for name in ("course_kit", "instructors", "literalinclude"):
        assert re.search(rf"^\s+book_tools\.{name}: \.$", config, re.MULTILINE), name


# --------------------------------------------------------------------------- the built book


@pytest.fixture(scope="module")
def built():
    if not (HTML / "index.html").exists():
        pytest.fail("the book is not built: run `make book` first (`make test` does)")
    return HTML


@pytest.mark.book
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_built_book_offers_both_notebooks(built, path):
    page = (built / "book" / f"{path.stem}.html").read_text()
    for edition in OFFERED:  # the nbgrader source is for instructors' tools, not a download
        notebook = built / "notebooks" / edition / f"{path.stem}.ipynb"
        assert notebook.exists(), f"{notebook} was not written by the build"
        assert f"../notebooks/{edition}/{path.stem}.ipynb" in page, f"no {edition} link"
    assert "launch-buttons" not in page, "launch buttons without a repository URL"
    assert "repository-button" not in page and "fa-github" not in page


@pytest.mark.book
def test_instructors_page_indexes_every_exercise_and_run_time(built):
    page = re.sub(r"<[^>]+>", " ", (built / "book" / "instructors.html").read_text())
    page = re.sub(r"\s+", " ", html.unescape(page)).replace("\u2019", "'")  # smart quotes
    for path in WRITTEN:
        info = chapter(path)
        for ex in info.exercises:
            assert ex.title in page and ex.checker_name in page, f"{ex.label} is not indexed"
        for goal in info.goals[:1]:
            assert re.sub(r"[`*]", "", goal)[:40] in page
    runtimes = re.findall(r"(\d+) s\b", page)
    assert len(runtimes) >= len(WRITTEN), "a written chapter has no measured run time"
    assert "not executed" not in page or len(WRITTEN) < len(CHAPTERS)


# --------------------------------------------------------------------------- conventions


def _toc_chapters() -> list[str]:
    return re.findall(r"file:\s*book/(\d\d-[\w-]+)", (ROOT / "_toc.yml").read_text())


def test_chapters_are_numbered_in_toc_order():
    listed = _toc_chapters()
    assert listed == sorted(listed), f"_toc.yml lists the chapters out of order: {listed}"
    assert [int(s[:2]) for s in listed] == list(range(1, len(listed) + 1))


@pytest.mark.parametrize("path", WRITTEN, ids=lambda p: p.stem)
def test_chapter_ends_with_summary_then_exercises(path):
    sections = chapter(path).sections
    assert sections[-2:] == ["Summary", "Exercises"], f"the last sections are {sections[-2:]}"


@pytest.mark.parametrize("path", WRITTEN, ids=lambda p: p.stem)
def test_exercises_are_labelled_and_their_stubs_name_their_number(path):
    for ex in exercises(path):
        assert re.fullmatch(r"ex-[a-z0-9-]+", ex.label), f"label {ex.label!r} is not ex-..."
        assert f"Exercise {ex.number}:" in ex.starter, (
            f"the stub of {ex.label} should say 'Exercise {ex.number}: ...', got {ex.starter!r}"
        )


def test_exercise_labels_are_unique_across_the_book():
    labels = [ex.label for p in WRITTEN for ex in exercises(p)]
    assert len(labels) == len(set(labels)), f"repeated labels: {labels}"


# --------------------------------------------------------------------------- one mark


SYNTHETIC = '''---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

(ch-synthetic)=
# A synthetic chapter

```{code-cell} ipython3
import math
```

## Exercises

```{exercise} Double it
:label: ex-double

Write `double(x)`.
```

```{code-cell} ipython3
def double(x):
    """x -> 2 x."""
    raise NotImplementedError("Exercise 1.1: double")
```

Text before the solution stays.
```{solution-start} ex-double
:class: dropdown
```

SECRET-EXPLANATION: add it to itself.

```{code-cell} ipython3
def double(x):
    """x -> 2 x."""
    return x + x  # SECRET-CODE
```

More SECRET-EXPLANATION between two cells.

```{code-cell} ipython3
print(double(21))  # SECRET-DEMO
```

```{solution-end}
```

After the solution: visible.

```{code-cell} ipython3
check_double(double)
```
'''


@pytest.fixture()
def synthetic(tmp_path):
    path = tmp_path / "01-synthetic.md"
    path.write_text(SYNTHETIC)
    return path


def test_the_parser_tags_every_cell_of_a_solution_once(synthetic):
    tagged = [(c.cell_type, c.tag) for c in cells(synthetic) if c.tag]
    assert tagged == [
        ("code", "exercise-starter"),
        ("markdown", "solution"),  # the solution-start and the first explanation
        ("code", "solution"),
        ("markdown", "solution"),
        ("code", "solution"),
        ("code", "exercise-checker"),
    ]
    solution_text = "\n".join(c.source for c in cells(synthetic) if c.is_solution)
    assert solution_text.count("SECRET") == 4 and "Text before" not in solution_text
    lines = SYNTHETIC.splitlines()
    for cell in cells(synthetic):  # each cell knows its line in the .md file
        assert lines[cell.line - 1] == cell.source.splitlines()[0], cell


@pytest.mark.parametrize("edition", ["student", "nbgrader"])
def test_a_solution_leaves_every_edition_without_solutions(synthetic, edition):
    notebook = editions(synthetic)[edition]
    text = "\n".join(c.source for c in notebook.cells)
    assert "SECRET-EXPLANATION" not in text and "SECRET-DEMO" not in text
    assert "Text before the solution stays." in text and "After the solution" in text
    assert "check_double(double)" in text
    if edition == "student":
        assert "SECRET-CODE" not in text
    else:  # the answer cell holds the solution's body between nbgrader's markers, once
        answer = next(c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution"))
        assert f"{BEGIN}\n    return x + x  # SECRET-CODE\n    {END}" in answer.source
        assert text.count("SECRET-CODE") == 1


def test_the_instructor_edition_keeps_the_solution_under_a_heading(synthetic):
    notebook = editions(synthetic)["instructor"]
    text = "\n".join(c.source for c in notebook.cells)
    assert text.count("SECRET") == 4
    assert "#### Solution to exercise 1.1" in text
    assert "{solution-start}" not in text and "{solution-end}" not in text


def test_the_students_book_removes_the_solutions_the_parser_tagged(caplog):
    """RemoveSolutions drops the merged solution nodes of the tagged exercises, and keeps
    (with an error) a solution the parser does not know of."""
    from types import SimpleNamespace

    from docutils import nodes
    from docutils.frontend import get_default_settings
    from docutils.utils import new_document
    from sphinx_exercise.nodes import solution_node

    path = CHAPTERS[0]
    labels = [ex.label for ex in exercises(path)]
    document = new_document("test", get_default_settings())
    config = SimpleNamespace(course_kit_students=True)
    document.settings.env = SimpleNamespace(docname=f"book/{path.stem}", config=config)
    for label in [*labels, "ex-unknown"]:
        document += solution_node(label=f"{label}-solution", target_label=label)
    document += nodes.paragraph(text="kept")
    transform = course_kit.RemoveSolutions(document)
    transform.apply()
    left = [n.get("target_label") for n in document.findall(solution_node)]
    assert left == ["ex-unknown"]
    assert "did not tag" in caplog.text
    assert len(document.children) == 2 and document.astext().strip() == "kept"


@pytest.mark.book
@pytest.mark.parametrize("path", WRITTEN, ids=lambda p: p.stem)
def test_the_built_books_solutions_are_the_ones_the_parser_tagged(path, caplog):
    """On the main build's doctree (after sphinx-exercise's merge), RemoveSolutions leaves
    no solution and finds none that the parser did not tag."""
    import pickle
    from types import SimpleNamespace

    from sphinx_exercise.nodes import solution_node

    doctree = ROOT / "_build" / ".doctrees" / "book" / f"{path.stem}.doctree"
    if not doctree.exists():
        pytest.fail("the book is not built: run `make book` first (`make test` does)")
    document = pickle.loads(doctree.read_bytes())
    found = list(document.findall(solution_node))
    assert len(found) == len(exercises(path))
    config = SimpleNamespace(course_kit_students=True)
    document.settings.env = SimpleNamespace(docname=f"book/{path.stem}", config=config)
    course_kit.RemoveSolutions(document).apply()
    assert not list(document.findall(solution_node))
    assert "did not tag" not in caplog.text
