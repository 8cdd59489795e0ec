"""Two small fixes to the HTML that Jupyter Book 1 writes, so pages load with a clean console.

- The theme's Thebe settings script is added twice (once by sphinx-thebe, once again when
  sphinx-book-theme sets it up), and the second ``const THEBE_JS_URL`` is a JavaScript
  error: keep one copy of every identical script.
- pydata-sphinx-theme logs "invalid theme mode" when no default mode is set: use "auto".
"""

from __future__ import annotations


def _dedup_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        attributes = getattr(script, "attributes", {})
        key = (
            getattr(script, "filename", None) or "",
            tuple(sorted((k, str(v)) for k, v in attributes.items() if k != "priority")),
        )
        if key not in seen:
            seen.add(key)
            unique.append(script)
    if "script_files" in context:
        context["script_files"][:] = unique
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


def setup(app):
    app.connect("html-page-context", _dedup_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
