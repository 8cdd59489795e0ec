"""``literalinclude`` with a ``:no-docstring:`` option: library code shown without drift.

The chapters show the library's functions with ``{literalinclude}`` and ``:pyobject:``.
Their docstrings are long (Args, Returns, a shape legend), and the page documents them
elsewhere (the API reference); ``:no-docstring:`` drops exactly the object's docstring,
found with :mod:`ast`, so that a docstring that grows or shrinks never hides a line of
code, as a ``:lines:`` range counted by hand does.

:func:`code_without_docstring` is what the page shows; the tests compare it with the
function's own code (:mod:`tests.test_literalincludes`).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import ClassVar

from sphinx.directives.code import LiteralInclude
from sphinx.pycode import ModuleAnalyzer


def _find(tree: ast.Module, qualname: str) -> ast.AST:
    node: ast.AST = tree
    for part in qualname.split("."):
        for child in ast.iter_child_nodes(node):
            defines = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            if defines and child.name == part:
                node = child
                break
        else:
            raise ValueError(f"no object named {qualname!r}")
    return node


def docstring_lines(filename: str | Path, pyobject: str) -> tuple[int, int] | None:
    """The first and last line (1-based, in the file) of ``pyobject``'s docstring, or None."""
    node = _find(ast.parse(Path(filename).read_text()), pyobject)
    body = getattr(node, "body", [])
    first = body[0] if body else None
    value = first.value if isinstance(first, ast.Expr) else None
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return first.lineno, first.end_lineno
    return None


def lines_option(filename: str | Path, pyobject: str) -> str | None:
    """The ``:lines:`` value, relative to the object as Sphinx cuts it, that drops its
    docstring; None when it has none."""
    docstring = docstring_lines(filename, pyobject)
    if docstring is None:
        return None
    _, start, _ = ModuleAnalyzer.for_file(str(filename), "").find_tags()[pyobject]
    first, last = docstring[0] - start + 1, docstring[1] - start + 1
    return f"1-{first - 1},{last + 1}-"


def code_without_docstring(filename: str | Path, pyobject: str) -> str:
    """The source of ``pyobject`` in ``filename`` without its docstring: what the page shows."""
    lines = Path(filename).read_text().splitlines(keepends=True)
    _, start, end = ModuleAnalyzer.for_file(str(filename), "").find_tags()[pyobject]
    docstring = docstring_lines(filename, pyobject)
    shown = range(start, end + 1)
    if docstring is not None:
        shown = [n for n in shown if not docstring[0] <= n <= docstring[1]]
    return "".join(lines[n - 1] for n in shown)


class LiteralIncludeWithoutDocstring(LiteralInclude):
    """Sphinx's ``literalinclude``, plus ``:no-docstring:`` (with ``:pyobject:`` only)."""

    option_spec: ClassVar = {**LiteralInclude.option_spec, "no-docstring": lambda argument: True}

    def run(self):
        if "no-docstring" in self.options:
            if "pyobject" not in self.options or "lines" in self.options:
                raise self.error(":no-docstring: needs :pyobject: and no :lines:")
            _, filename = self.env.relfn2path(self.arguments[0])
            lines = lines_option(filename, self.options["pyobject"])
            if lines is not None:
                self.options["lines"] = lines
            del self.options["no-docstring"]
        return super().run()


def setup(app):
    app.add_directive("literalinclude", LiteralIncludeWithoutDocstring, override=True)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
