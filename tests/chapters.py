"""The chapter parser lives in ``book_tools/chapters.py``, shared with the editions and the
instructors' page; this module re-exports it so that ``from tests.chapters import ...``
keeps working."""

from book_tools.chapters import (  # noqa: F401
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
