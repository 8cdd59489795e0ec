"""The folders of ``mini_attn`` are its layers: each imports only the layers above it.

    core  ←  attention, kernels  ←  tasks  ←  tools, bench, exercises

A module's layer is its folder (``mini_attn/core/sdpa.py`` is in ``core``); the shared
input checks of ``mini_attn/_validation.py`` belong to the first layer, and the package's
``__init__.py`` re-exports every layer. A primitive never imports a task, a checker or the
bench; nothing in the package imports the book, the tests or the scripts.

Every module fits a reader's sitting: at most 400 lines, and no function longer than 80
lines once its docstring is left out (issue 13); a longer one is split where its steps are.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mini_attn"
RANK = {
    "_validation": 0,
    "core": 0,
    "attention": 1,
    "kernels": 1,
    "tasks": 2,
    "tools": 3,
    "bench": 3,
    "exercises": 3,
}


def _layer(parts: tuple[str, ...]) -> str:
    """``core`` for ("core", "sdpa.py"), ``_validation`` for ("_validation.py",)."""
    return parts[0].removesuffix(".py")


def _imported_layers(path: Path) -> set[str]:
    """The layers of ``mini_attn`` that ``path`` imports (relative or absolute imports)."""
    here = path.relative_to(PACKAGE).parts[:-1]  # the folders below mini_attn/
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                targets = [node.module.split(".")]
            elif node.level:
                base = ["mini_attn", *here[: len(here) - (node.level - 1)]]
                module = node.module.split(".") if node.module else []
                targets = [
                    base + module + ([a.name] if not node.module else []) for a in node.names
                ]
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".") for a in node.names]
        for target in targets:
            if target[0] == "mini_attn" and len(target) > 1:
                found.add(target[1])
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.name != "__init__.py")


def test_every_top_level_entry_is_a_layer():
    entries = {_layer(p.relative_to(PACKAGE).parts) for p in SOURCES}
    assert entries <= set(RANK), (
        f"mini_attn/ holds {sorted(entries - set(RANK))}: a module belongs in a layer's "
        f"folder ({', '.join(sorted(RANK))})"
    )


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_up_the_layers(path):
    layer = _layer(path.relative_to(PACKAGE).parts)
    for imported in _imported_layers(path) - {layer}:
        assert imported in RANK, f"{path.name} imports unknown mini_attn.{imported}"
        assert RANK[imported] <= RANK[layer], (
            f"{path.relative_to(PACKAGE)} ({layer}) imports mini_attn.{imported}, a lower layer"
        )


def test_the_rule_can_fail(tmp_path):
    """The rule sees relative imports two folders deep, and absolute ones."""
    module = PACKAGE / "core" / "_probe_for_test_layers.py"
    module.write_text("from ..tasks.training import train_model\nimport mini_attn.tools\n")
    try:
        assert _imported_layers(module) == {"tasks", "tools"}
    finally:
        module.unlink()
    nested = PACKAGE / "tasks" / "models" / "encoder.py"
    assert {"_validation", "core", "attention"} <= _imported_layers(nested)


MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _long_functions(source: str) -> list[tuple[str, int]]:
    """(name, lines) of every function whose body, docstring excluded, is over the limit."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = node.body
        if (
            len(body) > 1
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            body = body[1:]  # the docstring
        lines = node.end_lineno - body[0].lineno + 1
        if lines > MAX_FUNCTION_LINES:
            found.append((node.name, lines))
    return found


ALL_SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", ALL_SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_are_short(path):
    source = path.read_text()
    lines = len(source.splitlines())
    assert lines <= MAX_MODULE_LINES, (
        f"{path.relative_to(PACKAGE)} has {lines} lines (at most {MAX_MODULE_LINES}): split it"
    )
    assert _long_functions(source) == [], (
        f"{path.relative_to(PACKAGE)}: functions over {MAX_FUNCTION_LINES} lines (name, lines)"
    )


def test_the_length_rule_can_fail():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES + 1))
    source = f'def long():\n    """A docstring."""\n{body}\n\n\ndef short():\n    return 1\n'
    assert _long_functions(source) == [("long", MAX_FUNCTION_LINES + 1)]
