"""What a chapter shows of the library is the library's code, exactly.

Chapters show library code with ``{literalinclude}`` and ``:pyobject:``; the long
docstrings are dropped with ``:no-docstring:`` (``book_tools/literalinclude.py``), never
with a ``:lines:`` range counted by hand: a docstring one line shorter would silently hide
a line of code from the page. These tests compare what the page shows with the function's
own syntax tree, so a page that loses or gains a line of code fails.
"""

from __future__ import annotations

import ast
import html
import re
import textwrap
import tomllib

import pytest

from book_tools.lint import LINE_LENGTH
from book_tools.literalinclude import code_without_docstring, lines_option
from tests.chapters import BOOK, ROOT

DIRECTIVE = re.compile(r"```\{literalinclude\}\s+(\S+)\n((?::[\w-]+:.*\n)*)")


def _includes():
    for chapter in sorted(BOOK.glob("*.md")):
        for match in DIRECTIVE.finditer(chapter.read_text()):
            options = dict(re.findall(r":([\w-]+):\s*(.*)", match.group(2)))
            yield pytest.param(
                chapter,
                (chapter.parent / match.group(1)).resolve(),
                options,
                id=f"{chapter.stem}:{options.get('pyobject', match.group(1))}",
            )


INCLUDES = list(_includes())


def _node(path, qualname):
    scope = ast.parse(path.read_text())
    for name in qualname.split("."):
        scope = next(
            n
            for n in ast.iter_child_nodes(scope)
            if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)
            and n.name == name
        )
    return scope


def _without_docstring(node):
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        node.body = body[1:] or [ast.Pass()]
    return ast.dump(node)


@pytest.mark.parametrize(("chapter", "path", "options"), INCLUDES)
def test_no_line_ranges(chapter, path, options):
    assert path.exists(), f"{chapter.name} includes {path}, which does not exist"
    assert "lines" not in options, (
        f"{chapter.name} cuts {options.get('pyobject', path.name)} with :lines: "
        f"{options['lines']}; use :no-docstring: (a range drifts when the docstring changes)"
    )


@pytest.mark.parametrize(("chapter", "path", "options"), INCLUDES)
def test_shown_code_is_the_function(chapter, path, options):
    if "pyobject" not in options:
        pytest.skip("a whole file")
    qualname = options["pyobject"]
    node = _node(path, qualname)
    if "no-docstring" in options:
        shown = code_without_docstring(path, qualname)
    else:
        lines = path.read_text().splitlines(keepends=True)
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        shown = "".join(lines[start - 1 : node.end_lineno])
    tree = ast.parse(textwrap.dedent(shown)).body[0]
    if "no-docstring" in options:
        assert ast.get_docstring(tree) is None, f"{chapter.name} shows {qualname}'s docstring"
    # (a docstring shown whole is dedented with the code, so compare the code only)
    assert _without_docstring(tree) == _without_docstring(node), (
        f"{chapter.name} shows {qualname} with lines missing or added"
    )


def test_a_wrong_range_is_caught():
    """The check above fails for a range one line off, as the review's experiment did."""
    path = ROOT / "mini_attn" / "core" / "sdpa.py"
    good = lines_option(path, "scaled_dot_product_attention")
    first, rest = good.split(",")
    off_by_one = f"{first},{int(rest.rstrip('-')) + 1}-"  # hides the first line of code
    lines = code_without_docstring(path, "scaled_dot_product_attention").splitlines()
    all_lines = path.read_text().splitlines()
    assert off_by_one != good and lines[1] in all_lines
    with pytest.raises(AssertionError):
        shown = "\n".join(lines[:1] + lines[2:])  # what the off-by-one range would show
        expected = _without_docstring(_node(path, "scaled_dot_product_attention"))
        assert ast.dump(ast.parse(textwrap.dedent(shown)).body[0]) == expected


@pytest.mark.book
@pytest.mark.parametrize(("chapter", "path", "options"), INCLUDES)
def test_the_built_page_shows_the_code(chapter, path, options):
    page = ROOT / "_build" / "html" / "book" / f"{chapter.stem}.html"
    if not page.exists():
        pytest.fail("the book is not built: run `make book` first (`make test` does)")
    if "pyobject" not in options or "no-docstring" not in options:
        pytest.skip("shown whole")
    text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
    # Sphinx keeps a method's indentation; compare line by line, stripped
    shown = [
        line.strip() for line in code_without_docstring(path, options["pyobject"]).splitlines()
    ]
    page_lines = [line.strip() for line in text.splitlines()]
    starts = [i for i, line in enumerate(page_lines) if line == shown[0]]
    assert any(page_lines[i : i + len(shown)] == shown for i in starts), (
        f"{page.name} does not show {options['pyobject']} as it is"
    )


def _shown_lines(path, options) -> list[str]:
    """The lines of ``path`` a page shows, with the indentation Sphinx keeps."""
    if "pyobject" not in options:
        lines = path.read_text().splitlines()
    elif "no-docstring" in options:
        lines = code_without_docstring(path, options["pyobject"]).splitlines()
    else:
        node = _node(path, options["pyobject"])
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        lines = path.read_text().splitlines()[start - 1 : node.end_lineno]
    if "start-at" in options:
        text = options["start-at"].strip().strip('"')
        lines = lines[next(i for i, line in enumerate(lines) if text in line) :]
    if "end-before" in options:
        text = options["end-before"].strip().strip('"')
        lines = lines[: next(i for i, line in enumerate(lines) if text in line)]
    return lines


@pytest.mark.parametrize(("chapter", "path", "options"), INCLUDES)
def test_shown_code_fits_the_page(chapter, path, options):
    """No line a page shows of the library is wider than the book's code column."""
    too_long = [
        f"{len(line)}: {line.strip()}"
        for line in _shown_lines(path, options)
        if len(line) > LINE_LENGTH
    ]
    assert too_long == [], (
        f"{chapter.name} shows {options.get('pyobject', path.name)} with lines over "
        f"{LINE_LENGTH} characters (the page's column; see book_tools/lint.py)"
    )


def test_the_shown_modules_are_formatted_to_the_page():
    """pyproject.toml lists exactly the modules the chapters show (formatted at 74)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["ruff"]["format"]["exclude"])
    shown = {str(p.values[1].relative_to(ROOT)) for p in INCLUDES}
    assert listed == shown, (
        f"add to [tool.ruff.format] exclude: {sorted(shown - listed)}; "
        f"remove: {sorted(listed - shown)}"
    )
