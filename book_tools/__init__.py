"""What builds the book beyond Sphinx: shown library code, notebooks, editions, grades.

Not part of the ``mini_attn`` package (nothing here ships in its wheel). Run its commands
from the repository's root (``python -m book_tools.<module>``, as the Makefile does); the
book's configuration loads its Sphinx extensions from there (``_config.yml``,
``local_extensions``), and pytest finds it from the root too.
"""
