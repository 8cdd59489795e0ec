"""Print the configuration of the students' copy of the book (``make student-book``).

    python -m book_tools.student_config > _build/students-config.yml

The book's own ``_config.yml`` with ``course_kit_students`` switched on:
:mod:`book_tools.course_kit` then removes the solutions (their text, code and outputs)
from the pages and offers and writes the student notebooks only. The chapters' executions
are shared with the main build's cache, so nothing runs twice.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def student_config(config: dict) -> dict:
    config = dict(config)
    sphinx = dict(config.get("sphinx", {}))
    sphinx["config"] = {**sphinx.get("config", {}), "course_kit_students": True}
    # this file is written under _build/: the paths of the original are made absolute
    sphinx["local_extensions"] = {
        name: str(ROOT / folder) for name, folder in sphinx.get("local_extensions", {}).items()
    }
    config["bibtex_bibfiles"] = [str(ROOT / p) for p in config.get("bibtex_bibfiles", [])]
    config["sphinx"] = sphinx
    execute = dict(config.get("execute", {}))
    execute["cache"] = str(ROOT / "_build" / ".jupyter_cache")  # the main build's executions
    config["execute"] = execute
    config["title"] = f"{config.get('title', '')} (students' edition)".strip()
    return config


if __name__ == "__main__":
    source = yaml.safe_load((ROOT / "_config.yml").read_text())
    yaml.safe_dump(student_config(source), sys.stdout, sort_keys=False, allow_unicode=True)
