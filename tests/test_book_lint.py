"""book_tools.lint: the project's ruff rules on the chapters' code, at book/NN.md:line; and
the line length it enforces is what the built book's code column shows."""

from __future__ import annotations

import os
import shutil

import pytest

from book_tools.chapters import cells
from book_tools.lint import LINE_LENGTH, NOTEBOOK_IGNORES, lint, percent_script

HEADER = "---\njupytext:\n  text_representation:\n    format_name: myst\n---\n\n# A chapter\n\n"
LONG = "x = " + " + ".join(["1"] * 40)  # longer than any code column


def _chapter(tmp_path, body: str):
    path = tmp_path / "01-lint.md"
    path.write_text(HEADER + body)
    return path


def test_a_long_line_and_an_unused_import_are_reported_at_their_md_lines(tmp_path):
    body = (
        "```{code-cell} ipython3\nimport math\n```\n\nSome text.\n\n"
        "```{code-cell} ipython3\n:tags: [hide-input]\n\ny = 2\n" + LONG + "\n```\n"
    )
    path = _chapter(tmp_path, body)
    lines = path.read_text().splitlines()
    problems = lint([path])
    found = {(p.code, p.line) for p in problems}
    long_line = lines.index(LONG) + 1
    import_line = lines.index("import math") + 1
    assert ("E501", long_line) in found, problems
    assert ("F401", import_line) in found, problems
    assert str(problems[0]).startswith(f"{path}:{import_line}:")  # outside the repository


def test_a_line_that_fits_and_the_notebook_idioms_pass(tmp_path):
    body = (
        "```{code-cell} ipython3\nimport math\n\n\ndef f():\n    raise NotImplementedError\n```\n\n"
        "```{code-cell} ipython3\ndef f():\n    return math.pi\n```\n\n"  # a solution: F811
        "```{code-cell} ipython3\n%timeit math.sqrt(2)\nimport os\n\nprint(os.sep)\n```\n\n"  # E402
        "```{code-cell} ipython3\n" + "z = '" + "a" * (LINE_LENGTH - 6) + "'\n```\n"
    )
    assert lint([_chapter(tmp_path, body)]) == []
    assert {"E402", "F811"} == set(NOTEBOOK_IGNORES)


def test_imports_sort_with_mini_attn_as_the_projects_own(tmp_path):
    """As in the repository, mini_attn is first-party: after the third-party imports."""
    good = "import torch\n\nimport mini_attn as ma\n\nma.seed_everything(torch.initial_seed())\n"
    bad = "import mini_attn as ma\nimport torch\n\nma.seed_everything(torch.initial_seed())\n"
    assert lint([_chapter(tmp_path, f"```{{code-cell}} ipython3\n{good}```\n")]) == []
    problems = lint([_chapter(tmp_path, f"```{{code-cell}} ipython3\n{bad}```\n")])
    assert [p.code for p in problems] == ["I001"]


def test_the_percent_script_maps_every_code_line_back(tmp_path):
    body = "```{code-cell} ipython3\na = 1\n\nb = 2\n```\n\n```{code-cell} ipython3\nc = 3\n```\n"
    path = _chapter(tmp_path, body)
    text, mapping = percent_script([c for c in cells(path) if c.cell_type == "code"])
    md, script = path.read_text().splitlines(), text.splitlines()
    assert mapping and all(script[s - 1] == md[m - 1] for s, m in mapping.items())
    assert len(mapping) == 4  # a = 1, the blank line, b = 2, c = 3


@pytest.mark.book
def test_the_line_length_fits_the_code_column_of_the_built_book():
    from book_tools.code_width import HTML, measure

    if not (HTML / "index.html").exists():
        pytest.fail("the book is not built: run `make book` first (`make test` does)")
    if shutil.which("chromium") is None and os.environ.get("CI") != "true":
        pytest.skip("no chromium on PATH (CI installs it)")
    rows = measure(1280)
    narrowest = min(row["chars"] for row in rows)
    assert narrowest >= LINE_LENGTH, f"the narrowest code block shows {narrowest} characters"
