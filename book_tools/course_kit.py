"""The course kit in the built book (a Sphinx extension): notebooks, buttons, the students' copy.

- **Notebooks.** Every chapter's editions are written into the HTML output,
  ``notebooks/{student,instructor}/NN-name.ipynb`` and nbgrader's source (the same files
  that ``python -m book_tools.export`` writes), and each chapter page's download menu offers
  the student and instructor notebooks.
- **One setting for the buttons.** ``repository.url`` in ``_config.yml`` switches on the
  repository button and the launch buttons (Binder, Colab, and JupyterHub when
  ``launch_buttons.jupyterhub_url`` names a hub); without it they are all off. The chapters are
  MyST Markdown, which Colab cannot open, so every launch button opens the chapter's
  *student notebook* as published with the book: the branch that holds the built HTML
  (``launch_buttons.notebooks_branch``, default ``gh-pages``, where ``ghp-import`` puts it),
  path ``notebooks/student/NN-name.ipynb``. Its first cell installs ``mini_attn`` from the
  repository where it is missing.
- **The students' copy** (``course_kit_students``, set by ``make student-book``): the
  solutions leave the pages (:class:`RemoveSolutions`) and only the student notebooks are
  written and offered.

The page "For instructors" is :mod:`book_tools.instructors`.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlencode

from sphinx.transforms import SphinxTransform
from sphinx.util import logging

from book_tools.chapters import CHAPTERS, chapter
from book_tools.editions import EDITIONS, offered
from book_tools.export import NOTEBOOKS, export

LOGGER = logging.getLogger(__name__)
SERVICES = ("binderhub_url", "jupyterhub_url", "colab_url", "deepnote_url", "jupyterlite_url")
DEFAULT_NOTEBOOKS_BRANCH = "gh-pages"


# --------------------------------------------------------------------------- the one setting


def apply_repository_setting(theme_options: dict) -> dict:
    """Switch the repository and launch buttons on or off from ``repository_url`` alone.

    Returns the updated theme options (the dict is changed in place too).
    """
    url = (theme_options.get("repository_url") or "").strip()
    launch = dict(theme_options.get("launch_buttons") or {})
    if url:
        theme_options["use_repository_button"] = True
    else:
        theme_options.pop("repository_url", None)
        for key in ("use_repository_button", "use_issues_button", "use_edit_page_button"):
            theme_options[key] = False
        for key in SERVICES:
            launch[key] = ""
        launch["thebe"] = False
    theme_options["launch_buttons"] = launch
    return theme_options


def launch_urls(
    repository_url: str, launch: dict, notebook: str, *, branch: str | None = None
) -> dict[str, str]:
    """The launch URL of each configured service for a notebook of the published book.

    ``notebook`` is its path in the HTML output, e.g. ``notebooks/student/01-x.ipynb``.
    """
    branch = branch or launch.get("notebooks_branch") or DEFAULT_NOTEBOOKS_BRANCH
    parts = repository_url.rstrip("/").removesuffix(".git").split("/")
    org, repo = parts[-2], parts[-1]
    ui = {"classic": "tree", "jupyterlab": "lab/tree"}.get(
        launch.get("notebook_interface", "classic"), "tree"
    )
    urls = {}
    if launch.get("binderhub_url"):
        binder = launch["binderhub_url"].rstrip("/")
        urls["Binder"] = f"{binder}/v2/gh/{org}/{repo}/{branch}?urlpath={ui}/{notebook}"
    if launch.get("jupyterhub_url"):
        hub = launch["jupyterhub_url"].rstrip("/")
        query = urlencode(
            {"repo": repository_url, "branch": branch, "urlpath": f"{ui}/{repo}/{notebook}"},
            safe="/",
        )
        urls["JupyterHub"] = f"{hub}/hub/user-redirect/git-pull?{query}"
    if launch.get("colab_url"):
        colab = launch["colab_url"].rstrip("/")
        urls["Colab"] = f"{colab}/github/{org}/{repo}/blob/{quote(branch)}/{notebook}"
    return urls


def _config_inited(app, config):
    apply_repository_setting(config.html_theme_options)


# --------------------------------------------------------------------------- the notebooks


class RemoveSolutions(SphinxTransform):
    """The students' copy: every solution that :mod:`book_tools.chapters` tagged leaves
    the page, its text, code and outputs.

    It runs after sphinx-exercise has merged each ``solution-start`` … ``solution-end``
    into one node naming its exercise, ``target_label`` (sphinx-exercise's own ``hide_solutions``
    drops only the start of a gated solution, and the build then fails on its orphaned
    end), and removes the nodes of the exercises whose cells the parser tagged
    ``solution``. A solution on the page that the parser did not tag is an error.
    """

    default_priority = 20  # after sphinx-exercise's MergeGatedSolutions (10)

    def apply(self):
        path = _chapter_stems().get(self.env.docname)
        if not self.config.course_kit_students or path is None:
            return
        from sphinx_exercise.nodes import solution_node

        tagged = {cell.label for cell in chapter(path).cells if cell.is_solution}
        for node in list(self.document.findall(solution_node)):
            if node.get("target_label") not in tagged:  # the exercise's label
                LOGGER.error(f"course kit: a solution the chapter parser did not tag: {node}")
                continue
            node.parent.remove(node)


def _chapter_stems() -> dict[str, Path]:
    return {f"book/{p.stem}": p for p in CHAPTERS}


def _page_buttons(app, pagename, templatename, context, doctree):
    """Offer the chapter's notebooks in the download menu; point launch buttons at them."""
    path = _chapter_stems().get(pagename)
    buttons = context.get("header_buttons")
    if path is None or buttons is None:
        return
    pathto = context["pathto"]
    links = [
        {
            "type": "link",
            "url": pathto(f"{NOTEBOOKS}/{edition}/{path.stem}.ipynb", 1),
            "text": f"{edition} .ipynb",
            "tooltip": f"Download the {edition} notebook"
            + (" (with solutions)" if edition == "instructor" else " (without solutions)"),
            "icon": "fas fa-book" if edition == "student" else "fas fa-chalkboard-teacher",
            "label": f"download-{edition}-notebook-button",
        }
        for edition in offered(app.config.course_kit_students)
    ]
    group = next((b for b in buttons if b.get("label") == "download-buttons"), None)
    if group is None:
        group = {
            "type": "group",
            "tooltip": "Download this page",
            "icon": "fas fa-download",
            "buttons": [],
            "label": "download-buttons",
        }
        buttons.insert(0, group)
    group["buttons"][:0] = links

    options = app.builder.theme_options if hasattr(app.builder, "theme_options") else {}
    repository_url = options.get("repository_url") or ""
    launch = next((b for b in buttons if b.get("label") == "launch-buttons"), None)
    if launch and repository_url:
        urls = launch_urls(
            repository_url,
            options.get("launch_buttons") or {},
            f"{NOTEBOOKS}/student/{path.stem}.ipynb",
        )
        for button in launch["buttons"]:
            if button.get("text") in urls:
                button["url"] = urls[button["text"]]
                button["tooltip"] = f"Open the student notebook on {button['text']}"


def _write_notebooks(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    repository_url = app.config.html_theme_options.get("repository_url") or ""
    written = export(
        out=Path(app.outdir) / NOTEBOOKS,
        repository_url=repository_url,
        names=("student",) if app.config.course_kit_students else EDITIONS,
    )
    LOGGER.info(f"course kit: {len(written)} notebooks written to {NOTEBOOKS}/")


def setup(app):
    app.add_config_value("course_kit_students", False, "env")
    app.add_transform(RemoveSolutions)
    app.connect("config-inited", _config_inited, priority=900)
    app.connect("html-page-context", _page_buttons, priority=600)
    app.connect("build-finished", _write_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
