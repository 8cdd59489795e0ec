"""The chapter parser moved to ``scripts/chapters.py``, shared with the notebook export and
the instructors page; this module re-exports it so that ``from tests.chapters import ...``
keeps working."""

from scripts.chapters import (  # noqa: F401
    BOOK,
    CHAPTERS,
    ROOT,
    Chapter,
    Exercise,
    cells,
    chapter,
    chapter_number,
    directives,
    exercises,
    imports_cell,
    is_definition_only,
)
