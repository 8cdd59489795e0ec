"""The folders of ``mini_attn`` are its layers: each imports only the layers above it.

    core  ←  attention, kernels  ←  tasks  ←  tools, bench, exercises

A module's layer is its folder (``mini_attn/core/sdpa.py`` is in ``core``); the shared
input checks of ``mini_attn/_validation.py`` belong to the first layer, and the package's
``__init__.py`` re-exports every layer. A primitive never imports a task, a checker or the
bench; nothing in the package imports the book, the tests or the scripts.
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
