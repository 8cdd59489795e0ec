"""The API reference page documents every public name of mini_attn and every checker."""

from pathlib import Path

import pytest

import mini_attn
import mini_attn.exercises

API = (Path(__file__).resolve().parents[1] / "book" / "api.md").read_text()
NAMES = [f"mini_attn.{n}" for n in mini_attn.__all__ if not n.isupper()] + [
    f"mini_attn.exercises.{n}" for n in mini_attn.exercises.__all__
]


@pytest.mark.parametrize("name", NAMES)
def test_public_name_is_documented(name):
    assert f":: {name}\n" in API, f"book/api.md does not document {name}"


@pytest.mark.parametrize("name", [n for n in mini_attn.__all__ if not n.isupper()])
def test_public_name_has_a_docstring(name):
    doc = getattr(mini_attn, name).__doc__ or ""
    assert len(doc.strip()) > 20, f"mini_attn.{name} needs a docstring"
