"""The book's interactive figures load the ONE copy of BokehJS served with the book.

A figure of :mod:`mini_attn.tools.interactive` displayed by a kernel carries BokehJS
inlined (about 1.7 MB, so that it works in Jupyter offline). On every page with such a figure,
this extension removes the inlined copy and loads instead the files that ``make book`` copies
from the installed ``bokeh`` wheel into ``_assets/bokeh/`` (served at ``bokeh/`` by
``html_extra_path``, like MathJax): the browser fetches them once for the whole book, pages
without figures do not load them, and nothing comes from a CDN.

    python -m book_tools.bokeh_figures _assets    # what `make book` runs: the copy
"""

from __future__ import annotations

import re
from pathlib import Path

from sphinx.util import logging

from mini_attn.tools.interactive import (
    FIGURE_CLASS,
    LOADER_ATTRIBUTE,
    copy_bokehjs,
    served_bokehjs,
)

logger = logging.getLogger(__name__)
_LOADER = re.compile(rf"<script[^>]*\b{LOADER_ATTRIBUTE}=[^>]*>.*?</script>\n?", re.S)


def _serve_bokehjs(app, pagename, templatename, context, doctree):
    body = context.get("body")
    if not body or f'class="{FIGURE_CLASS}"' not in body:
        return
    missing = [p for p in served_bokehjs() if not (Path(app.confdir) / "_assets" / p).exists()]
    if missing:
        logger.warning(
            f"{pagename} has interactive figures but BokehJS is not in _assets/: {missing}; "
            "run `make book` (or `python -m book_tools.bokeh_figures _assets`)",
            type="bokeh_figures",
        )
    body = _LOADER.sub("", body)
    tags = "".join(
        f'<script src="{context["pathto"](path, 1)}"></script>' for path in served_bokehjs()
    )
    first = body.index(f'<div class="{FIGURE_CLASS}"')
    context["body"] = body[:first] + tags + body[first:]


def setup(app):
    app.connect("html-page-context", _serve_bokehjs)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    import sys

    for written in copy_bokehjs(sys.argv[1] if len(sys.argv) > 1 else "_assets"):
        print(f"{written} ({written.stat().st_size / 1e6:.2f} MB)")
