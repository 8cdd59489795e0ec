"""Execute one or more chapters top to bottom, as a reader's Jupyter would, and time them.

    python -m book_tools.run_chapter book/01-what-is-attention.md [more chapters...]

Writes the executed notebooks to ``_build/executed/`` and prints the wall time of each
chapter (the design's budget: 90 s on 2 CPU cores). Exits non-zero if a cell fails.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

OUT = Path("_build/executed")


def execute_notebook(
    notebook, folder: Path, *, timeout: int = 600, allow_errors: bool = False, **options
):
    """Execute ``notebook`` in place, top to bottom, in a fresh kernel whose working directory
    is ``folder`` (``book/`` for the chapters, where they find ``data/``); return it.

    Raises ``CellExecutionError`` at the first failing cell unless ``allow_errors``, and
    nbclient's ``DeadKernelError`` if the kernel dies. ``options`` go to ``NotebookClient``.
    """
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(folder)}},
        **options,
    )
    client.execute()
    return notebook


def run(path: Path, timeout: int = 600) -> float:
    notebook = jupytext.read(path)
    start = time.perf_counter()
    execute_notebook(notebook, path.parent, timeout=timeout)
    elapsed = time.perf_counter() - start
    OUT.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, OUT / f"{path.stem}.ipynb")
    return elapsed


def main(paths: list[str]) -> int:
    failed = 0
    for name in paths:
        path = Path(name)
        try:
            elapsed = run(path)
        except CellExecutionError as error:
            print(f"✗ {path}: a cell failed\n{error}")
            failed += 1
            continue
        print(f"✓ {path}: executed in {elapsed:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or sorted(str(p) for p in Path("book").glob("[0-9]*.md"))))
