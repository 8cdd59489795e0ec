"""Every `{literalinclude}` of a chapter shows valid, complete Python.

Chapters show library code with ``:pyobject:`` and often ``:lines:`` to skip a long
docstring. When a docstring grows, fixed line ranges drift and the page shows a stray
``\"\"\"`` or half a statement: this test selects the same lines Sphinx does and parses them.
"""

from __future__ import annotations

import ast
import re
import textwrap

import pytest

from tests.chapters import BOOK

DIRECTIVE = re.compile(r"```\{literalinclude\}\s+(\S+)\n((?::[\w-]+:.*\n)*)")


def _includes():
    for chapter in sorted(BOOK.glob("*.md")):
        for match in DIRECTIVE.finditer(chapter.read_text()):
            options = dict(re.findall(r":([\w-]+):\s*(.*)", match.group(2)))
            yield pytest.param(
                chapter,
                match.group(1),
                options,
                id=f"{chapter.stem}:{options.get('pyobject', match.group(1))}",
            )


def _select_lines(lines: list[str], spec: str) -> list[str]:
    """Sphinx's ``:lines:`` syntax: ``1-3,8,10-`` (1-based, inclusive, open ended)."""
    chosen = []
    for part in spec.split(","):
        start, _, end = part.strip().partition("-")
        first = int(start) if start else 1
        last = (int(end) if end else len(lines)) if "-" in part else first
        assert 1 <= first <= len(lines) and first <= last <= len(lines), (
            f":lines: {spec} is out of range ({len(lines)} lines)"
        )
        chosen.extend(lines[first - 1 : last])
    return chosen


@pytest.mark.parametrize(("chapter", "target", "options"), list(_includes()))
def test_included_code_is_valid_python(chapter, target, options):
    path = (chapter.parent / target).resolve()
    assert path.exists(), f"{chapter.name} includes {target}, which does not exist"
    source = path.read_text()
    lines = source.splitlines()
    if "pyobject" in options:
        names = options["pyobject"].split(".")
        scope = ast.parse(source)
        node = None
        for name in names:
            node = next(
                (
                    n
                    for n in scope.body
                    if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)
                    and n.name == name
                ),
                None,
            )
            assert node is not None, f"{target} has no {options['pyobject']}"
            scope = node
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        lines = lines[start - 1 : node.end_lineno]
    if "lines" in options:
        lines = _select_lines(lines, options["lines"])
    snippet = textwrap.dedent("\n".join(lines))
    if (
        snippet.lstrip().startswith(("def ", "class ", "@", "async def "))
        or "pyobject" not in options
    ):
        try:
            ast.parse(snippet)
        except SyntaxError as error:
            pytest.fail(
                f"{chapter.name} shows invalid Python from {target} (check :lines:): "
                f"{error}\n{snippet[:600]}"
            )
