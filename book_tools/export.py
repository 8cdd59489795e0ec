"""Write every chapter's notebooks, one per edition (:mod:`book_tools.editions`).

    python -m book_tools.export [--out _build/notebooks] [--repository-url URL] [chapters]

writes ``instructor/NN-name.ipynb``, ``student/NN-name.ipynb`` and nbgrader's course folder
``nbgrader/source/NN-name/NN-name.ipynb``. If the book has a repository URL
(``repository.url`` in ``_config.yml``, or ``--repository-url``), each notebook starts with
a cell that installs ``mini_attn`` from it when it is missing, as on Colab. The notebooks are
generated, never committed; the book build (:mod:`book_tools.course_kit`) writes the same
files into the HTML under ``notebooks/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
import yaml

from book_tools.chapters import CHAPTERS, ROOT
from book_tools.editions import EDITIONS, editions

OUT = ROOT / "_build" / "notebooks"
NOTEBOOKS = "notebooks"  # the folder of the book's HTML output that holds them


def repository_url_from_config(config: Path = ROOT / "_config.yml") -> str:
    """``repository.url`` of the book's ``_config.yml``, or ``""``."""
    data = yaml.safe_load(config.read_text()) or {}
    return ((data.get("repository") or {}).get("url") or "").strip()


def target(out: Path, edition: str, path: Path) -> Path:
    """Where a chapter's notebook of an edition goes (nbgrader: ``source/<assignment>/``)."""
    if edition == "nbgrader":
        return out / edition / "source" / path.stem / f"{path.stem}.ipynb"
    return out / edition / f"{path.stem}.ipynb"


def export(
    chapters: list[Path] | None = None,
    out: Path = OUT,
    repository_url: str | None = None,
    names: tuple[str, ...] = EDITIONS,
) -> list[Path]:
    """Write the notebooks of ``names`` for every chapter; return their paths. A file whose
    text is unchanged is not rewritten."""
    chapters = CHAPTERS if chapters is None else chapters
    repository_url = repository_url_from_config() if repository_url is None else repository_url
    written = []
    for path in chapters:
        for edition, notebook in editions(path, repository_url, names).items():
            file = target(out, edition, path)
            file.parent.mkdir(parents=True, exist_ok=True)
            text = nbformat.writes(notebook) + "\n"
            if not file.exists() or file.read_text() != text:
                file.write_text(text)
            written.append(file)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="chapters (default: all)")
    parser.add_argument(
        "--out", type=Path, default=OUT, help=f"folder (default: {OUT.relative_to(ROOT)})"
    )
    parser.add_argument(
        "--repository-url",
        default=None,
        help="the book's repository, for the install cell (default: repository.url of _config.yml)",
    )
    args = parser.parse_args(argv)
    written = export([p.resolve() for p in args.chapters] or None, args.out, args.repository_url)
    for edition in EDITIONS:
        count = sum(1 for p in written if p.relative_to(args.out).parts[0] == edition)
        where = args.out / edition / ("source" if edition == "nbgrader" else "")
        print(f"{count} {edition} notebooks in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
