"""The package's layers: each module imports only its own layer and the layers above it.

    primitives  ←  mechanisms  ←  tasks  ←  tools

A primitive never imports a task, a checker or the bench; nothing in the package imports
the book. Every module of ``mini_attn`` must be listed here, so a new one gets a layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mini_attn"
ORDER = ["primitives", "mechanisms", "tasks", "tools"]
LAYERS = {
    "_validation": "primitives",
    "device": "primitives",
    "softmax": "primitives",
    "masks": "primitives",
    "sdpa": "primitives",
    "pooling": "mechanisms",
    "scoring": "mechanisms",
    "soft": "mechanisms",
    "hard": "mechanisms",
    "glimpses": "tasks",
    "glimpse_models": "tasks",
    "regression": "tasks",
    "dates": "tasks",
    "seq2seq": "tasks",
    "training": "tasks",
    "positional": "primitives",
    "kqv_numpy": "primitives",
    "self_attention": "mechanisms",
    "sequences": "tasks",
    "encoder": "tasks",
    "multihead": "mechanisms",
    "minilm": "tasks",
    "triton_attention": "mechanisms",
    "triton_kernels": "mechanisms",
    "triton_compile": "tools",
    "flops": "primitives",
    "tiled": "mechanisms",
    "profiling": "tools",
    "bench": "tools",
    "plotting": "tools",
    "exercises": "tools",
}


def _module_name(path: Path) -> str:
    """``softmax`` for mini_attn/softmax.py, ``exercises`` for mini_attn/exercises/ch01.py."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_modules(path: Path) -> set[str]:
    """The mini_attn modules that ``path`` imports (relative or absolute imports)."""
    tree = ast.parse(path.read_text())
    depth = len(path.relative_to(PACKAGE).parts)  # 1 for mini_attn/x.py, 2 for mini_attn/pkg/x.py
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.startswith("mini_attn."):
                found.add(node.module.split(".")[1])
            elif node.level >= 1:
                up = node.level - (depth - 1)  # how far above mini_attn/ the import points
                if up == 1:  # relative to mini_attn/ itself
                    if node.module:
                        found.add(node.module.split(".")[0])
                    else:
                        found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(
                a.name.split(".")[1] for a in node.names if a.name.startswith("mini_attn.")
            )
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_module_has_a_layer():
    modules = {_module_name(p) for p in SOURCES if p.name != "__main__.py"}
    missing = modules - set(LAYERS)
    assert not missing, f"add these modules to LAYERS in {Path(__file__).name}: {sorted(missing)}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_up_the_layers(path):
    module = _module_name(path)
    if module not in LAYERS:
        pytest.skip("reported by test_every_module_has_a_layer")
    own = ORDER.index(LAYERS[module])
    for imported in _imported_modules(path) - {module}:
        assert imported in LAYERS, f"{path.name} imports unknown module mini_attn.{imported}"
        assert ORDER.index(LAYERS[imported]) <= own, (
            f"{path.relative_to(PACKAGE)} ({LAYERS[module]}) imports mini_attn.{imported} "
            f"({LAYERS[imported]}), a lower layer"
        )
