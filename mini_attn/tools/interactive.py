"""Interactive figures that work offline: Bokeh documents embedded in the page, no server.

An :class:`InteractiveFigure` is a Bokeh layout whose interaction is JavaScript written into
the figure (``CustomJS``): everything it shows is computed in Python beforehand, so it works
in a static HTML page with no kernel, in a notebook saved and reopened, and in Jupyter
(classic, Lab, Notebook 7) with no network:

- **In Jupyter**, every interactive figure's output carries BokehJS itself (the
  ``bokeh.min.js`` and ``bokeh-widgets.min.js`` of the installed ``bokeh`` wheel, about
  1.7 MB), which defines it only where the page does not have it yet: a figure works in a
  reloaded page, a second tab or a re-run cell, whatever ran before. No CDN, no kernel
  comms: a saved (trusted) notebook shows its figures without a kernel.
- **In the book**, the Sphinx extension ``book_tools/bokeh_figures.py`` removes the inlined copies
  from the page and loads the one copy of BokehJS served with the book (``make book`` copies
  it from the wheel into ``_assets/bokeh/``, as it copies MathJax), so each page carries only
  its figures' data.
- **Without JavaScript** (print, a PDF, a reader with scripts off), the figure is a static
  PNG: the bundle's ``image/png`` (what LaTeX/PDF builds use) and a ``<noscript>`` image.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import io
import json
import re
from functools import cached_property
from pathlib import Path

__all__ = ["InteractiveFigure", "bokehjs_files", "copy_bokehjs", "served_bokehjs"]

#: the BokehJS bundles an interactive figure needs, in load order
BOKEHJS_BUNDLES = ("bokeh", "bokeh-widgets")
#: marks the inlined BokehJS (Jupyter); the book's Sphinx extension replaces it
LOADER_ATTRIBUTE = "data-mini-attn-bokehjs"
#: the class of every figure's container (the book's extension looks for it)
FIGURE_CLASS = "mini-attn-bokeh"


def bokehjs_files() -> list[Path]:
    """The minified BokehJS bundles inside the installed ``bokeh`` wheel, in load order.

    Returns:
        list of Path: ``bokeh.min.js`` and ``bokeh-widgets.min.js`` of the installed Bokeh,
        the files the book serves (copied as ``bokeh-<version>.min.js`` and
        ``bokeh-widgets-<version>.min.js``).
    """
    import bokeh

    folder = Path(bokeh.__file__).parent / "server" / "static" / "js"
    return [folder / f"{name}.min.js" for name in BOKEHJS_BUNDLES]


def served_bokehjs() -> list[str]:
    """The paths, relative to the book's root, at which the book serves BokehJS (in load order).

    Returns:
        list of str: ``bokeh/bokeh-<version>.min.js`` and ``bokeh/bokeh-widgets-<version>.min.js``.
    """
    import bokeh

    return [f"bokeh/{name}-{bokeh.__version__}.min.js" for name in BOKEHJS_BUNDLES]


def copy_bokehjs(folder) -> list[Path]:
    """Copy the installed wheel's BokehJS into ``folder``, named as :func:`served_bokehjs`.

    ``make book`` runs it (``python -m book_tools.bokeh_figures _assets``) so that the book
    serves the one copy from ``_assets/bokeh/``, as it serves MathJax.

    Args:
        folder (str or Path): the folder served as the book's root (``_assets``).

    Returns:
        list of Path: the files written.
    """
    import shutil

    written = []
    for source, target in zip(bokehjs_files(), served_bokehjs(), strict=True):
        path = Path(folder) / target
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
        written.append(path)
    return written


def _bokehjs_loader() -> str:
    """A script that defines BokehJS (this version) unless the page already has it."""
    import bokeh

    version = bokeh.__version__
    bundles = "\n".join(
        f"(function(){{\n{path.read_text(encoding='utf-8')}\n}}).call(window);"
        for path in bokehjs_files()
    )
    check = f'window.Bokeh && window.Bokeh["{version}"] && window.Bokeh.Widgets'
    return (
        f'<script type="text/javascript" {LOADER_ATTRIBUTE}="{version}">\n'
        f"if (!({check})) {{\n{bundles}\n}}\n</script>\n"
    )


def _stable_ids(text: str) -> str:
    """Replace Bokeh's random UUIDs (document and element ids) by ids derived from ``text``,
    so that two builds of a page write the same bytes."""
    uuids = list(dict.fromkeys(re.findall(r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}", text)))
    # the digest ignores the UUIDs and Bokeh's model counter ("p1234"), which a fresh kernel
    # restarts: the same figure gets the same ids in every build
    content = re.sub(r"[0-9a-f-]{36}|\bp\d+\b", "", text)
    digest = hashlib.sha1(content.encode()).hexdigest()[:12]
    for n, uuid in enumerate(uuids):
        text = text.replace(uuid, f"mini-attn-{digest}-{n}")
    return text


class InteractiveFigure:
    """A Bokeh layout that displays, offline, in Jupyter and in the book.

    Subclasses build the layout (:meth:`_build`) and the static image (:meth:`_draw_static`).

    Attributes:
        model: the Bokeh layout (a ``bokeh.models.LayoutDOM``).
    """

    #: the name shown in ``repr`` and in the static image's alternative text
    kind = "interactive figure"

    def _build(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _draw_static(self):  # pragma: no cover - abstract
        """Return a matplotlib Figure: what the figure shows before any interaction."""
        raise NotImplementedError

    @cached_property
    def model(self):
        return self._build()

    @cached_property
    def _components(self) -> tuple[str, str]:
        from bokeh.embed import components

        script, div = components(self.model)
        joined = _stable_ids(script + "\n<!--split-->\n" + div)
        script, div = joined.split("\n<!--split-->\n")
        return script, div

    @cached_property
    def static_png(self) -> bytes:
        """The static image (PNG bytes): the figure before any interaction."""
        import matplotlib.pyplot as plt

        fig = self._draw_static()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=72, bbox_inches="tight")
        plt.close(fig)
        return buffer.getvalue()

    def to_html(self, *, include_bokehjs: bool = False) -> str:
        """The figure as an HTML fragment: its container, its data and the script that draws it.

        Args:
            include_bokehjs (bool): prepend BokehJS itself (about 1.7 MB), for a page or a
                notebook that does not load it. Default: False.

        Returns:
            str: the HTML fragment.
        """
        script, div = self._components
        png = base64.b64encode(self.static_png).decode()
        alt = html.escape(f"{self.kind} (static image: the state before any interaction)")
        fragment = (
            f'<div class="{FIGURE_CLASS}">{div}'
            f'<noscript><img alt="{alt}" src="data:image/png;base64,{png}"></noscript>'
            f"</div>\n{script}"
        )
        return (_bokehjs_loader() if include_bokehjs else "") + fragment

    @property
    def nbytes(self) -> int:
        """The bytes this figure adds to an HTML page (BokehJS, served once, not counted)."""
        return len(self.to_html().encode())

    def embedded_documents(self) -> dict:
        """The Bokeh documents the HTML embeds, decoded from the HTML (what the page gets)."""
        script, _ = self._components
        match = re.search(r"const docs_json = '(.*?)';\n", script, flags=re.S)
        # the JSON is written as a JavaScript string: HTML-escaped, its backslashes doubled
        return json.loads(html.unescape(match.group(1).replace("\\\\", "\\")))

    def _repr_mimebundle_(self, include=None, exclude=None):
        # BokehJS in every output (defined once per page): a figure shown in a reloaded page,
        # a second tab or a re-run cell draws, whichever cells ran before
        return {
            "text/html": self.to_html(include_bokehjs=True),
            "image/png": base64.b64encode(self.static_png).decode(),
            "text/plain": repr(self),
        }

    def __repr__(self) -> str:
        return f"<{self.kind}: interactive in a browser, a static image elsewhere>"


def decode_array(encoded: dict):
    """A NumPy array from Bokeh's serialised ``ndarray`` (base64 bytes, gzip-compressed or not).

    Args:
        encoded (dict): ``{"type": "ndarray", "array": {"type": "bytes", "data": ...},
            "shape": [...], "dtype": ..., "order": ...}``, as a Bokeh document holds it.

    Returns:
        ndarray: the array, of the serialised dtype and shape.
    """
    import numpy as np

    raw = base64.b64decode(encoded["array"]["data"])
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    dtype = np.dtype(encoded["dtype"]).newbyteorder("<" if encoded["order"] == "little" else ">")
    return np.frombuffer(raw, dtype=dtype).reshape(encoded["shape"])
