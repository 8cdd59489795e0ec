"""The API reference page documents every public name of mini_attn and every checker."""

from pathlib import Path

import pytest

import mini_attn
import mini_attn.exercises

API = (Path(__file__).resolve().parents[1] / "book" / "api.md").read_text()
TOP = [n for n in mini_attn.__all__ if n != "tasks"]
NAMES = (
    [f"mini_attn.{n}" for n in TOP]
    + [f"mini_attn.tasks.{n}" for n in mini_attn.tasks.__all__ if not n.isupper()]
    + [f"mini_attn.exercises.{n}" for n in mini_attn.exercises.__all__]
)


@pytest.mark.parametrize("name", NAMES)
def test_public_name_is_documented(name):
    assert f":: {name}\n" in API, f"book/api.md does not document {name}"


def test_all_is_written_out_and_complete():
    """``__all__`` lists every public name the package imports, and nothing it does not."""
    public = {
        n
        for n, v in vars(mini_attn).items()
        if not n.startswith("_") and (not isinstance(v, type(mini_attn)) or n == "tasks")
    }
    assert set(mini_attn.__all__) == public
    assert len(mini_attn.__all__) == len(set(mini_attn.__all__)), "a name is listed twice"
    tasks = {n for n in vars(mini_attn.tasks) if not n.startswith("_")} - {"data", "models"}
    tasks -= {n for n, v in vars(mini_attn.tasks).items() if isinstance(v, type(mini_attn))}
    assert set(mini_attn.tasks.__all__) == tasks


@pytest.mark.parametrize(
    "obj",
    [getattr(mini_attn, n) for n in TOP if not n.isupper()]
    + [getattr(mini_attn.tasks, n) for n in mini_attn.tasks.__all__ if not n.isupper()],
    ids=lambda o: getattr(o, "__name__", str(o)),
)
def test_public_name_has_a_docstring(obj):
    doc = obj.__doc__ or ""
    assert len(doc.strip()) > 20, f"{obj} needs a docstring"
