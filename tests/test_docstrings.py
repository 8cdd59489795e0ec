"""Every docstring of the package has PyTorch's form, in one order everywhere.

A summary, then ``Args:``, ``Returns:``, ``Raises:`` (those present, in that order), and a
bulleted ``Shape legend:`` last, as the docstring of
:func:`torch.nn.functional.scaled_dot_product_attention` has it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mini_attn"
ORDER = ["Args:", "Returns:", "Raises:", "Shape legend:"]


def _docstrings():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc and any(h in doc for h in ORDER):
                    rel = path.relative_to(PACKAGE)
                    yield pytest.param(doc, id=f"{rel}:{node.name}")


@pytest.mark.parametrize("doc", list(_docstrings()))
def test_sections_in_pytorch_order(doc):
    found = [h for h in ORDER if re.search(rf"^{re.escape(h)}", doc, flags=re.M)]
    positions = [re.search(rf"^{re.escape(h)}", doc, flags=re.M).start() for h in found]
    assert positions == sorted(positions), f"sections out of order: {found}"
    if "Shape legend:" in found:
        legend = doc[doc.index("Shape legend:") :].split("\n")[1:]
        items = [line for line in legend if line.strip()]
        assert items and all(line.lstrip().startswith("- ") for line in items), (
            "the shape legend is a bulleted list, one letter per line, and comes last"
        )
