"""The course kit in the built book: notebooks to download, launch buttons, instructors' tables.

- **Notebooks.** Every chapter is written as a student and an instructor notebook into the
  HTML output, ``notebooks/{student,instructor}/NN-name.ipynb`` (the same files that
  ``scripts/export_notebooks.py`` writes), and each chapter page's download menu offers them.
- **One setting for the buttons.** ``repository.url`` in ``_config.yml`` switches on the
  repository button and the launch buttons (Binder, Colab, and JupyterHub when
  ``launch_buttons.jupyterhub_url`` names a hub); without it they are all off. The chapters are
  MyST Markdown, which Colab cannot open, so every launch button opens the chapter's
  *student notebook* as published with the book: the branch that holds the built HTML
  (``launch_buttons.notebooks_branch``, default ``gh-pages``, where ``ghp-import`` puts it),
  path ``notebooks/student/NN-name.ipynb``. Its first cell installs ``mini_attn`` from the
  repository where it is missing.
- **Directives for the page "For instructors"**, generated from the chapters at build time:
  ``{course-chapters}`` (goals, what each chapter refers back to, the run time measured by
  this build, the notebooks) and ``{course-exercises}`` (every exercise with its checker,
  difficulty and solution size). The page is re-read whenever a chapter changes.
"""

from __future__ import annotations

import posixpath
import sys
from pathlib import Path
from urllib.parse import quote, urlencode

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.transforms import SphinxTransform
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective, SphinxRole

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.chapters import CHAPTERS, chapter  # noqa: E402
from scripts.export_notebooks import EDITIONS, export  # noqa: E402

LOGGER = logging.getLogger(__name__)
NOTEBOOKS = "notebooks"  # folder of the HTML output that holds the notebooks
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


def _editions(config) -> tuple[str, ...]:
    """The notebooks this build offers: the student ones only in the students' copy
    (``course_kit_students``, set by ``make student-book``), else both editions."""
    return ("student",) if config.course_kit_students else EDITIONS


class RemoveSolutions(SphinxTransform):
    """The students' copy: every solution leaves the pages, its text, code and outputs.

    It runs after sphinx-exercise has merged each ``solution-start`` … ``solution-end``
    into one solution node (sphinx-exercise's own ``hide_solutions`` drops only the start
    of a gated solution, and the build then fails on its orphaned end).
    """

    default_priority = 20  # after sphinx-exercise's MergeGatedSolutions (10)

    def apply(self):
        if not self.config.course_kit_students:
            return
        from sphinx_exercise.nodes import solution_node

        for node in list(self.document.findall(solution_node)):
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
        for edition in _editions(app.config)
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
        with_solutions=not app.config.course_kit_students,
    )
    LOGGER.info(f"course kit: {len(written)} notebooks written to {NOTEBOOKS}/")


# --------------------------------------------------------------------------- instructors' page


class RuntimeNode(nodes.General, nodes.Element):
    """Placeholder for the measured run time of a chapter, filled in once all are executed."""


class RuntimeRole(SphinxRole):
    """``{course-runtime}`book/01-name``` -> the run time this build measured for the chapter."""

    def run(self):
        _pages(self.env, "runtime").add(self.env.docname)
        return [RuntimeNode(docname=self.text.strip())], []


def _exec_data(env, docname: str) -> dict | None:
    from myst_nb.sphinx_ import NbMetadataCollector

    return NbMetadataCollector.get_doc_data(env).get(docname, {}).get("exec_data")


class RuntimeTransform(SphinxPostTransform):
    default_priority = 8

    def run(self, **kwargs):
        for node in list(self.document.findall(RuntimeNode)):
            data = _exec_data(self.env, node["docname"])
            if not data or data.get("runtime") is None:
                text = "not executed"
            elif not data.get("succeeded"):
                text = f"{data['runtime']:.0f} s (failed)"
            else:
                text = f"{data['runtime']:.0f} s"
            node.replace_self(nodes.Text(text))


def _pages_with_runtimes(app, env):
    """When a chapter was executed again, re-write the pages that show run times."""
    from myst_nb.sphinx_ import NbMetadataCollector

    if not NbMetadataCollector.new_exec_data(env):
        return []
    return sorted(_pages(env, "runtime"))


def _outdated(app, env, added, changed, removed):
    """Re-read the instructors' pages when a chapter appears, changes or disappears."""
    chapters = set(_chapter_stems())
    if chapters & (set(added) | set(changed) | set(removed)):
        return sorted(_pages(env, "index"))
    return []


def _pages(env, kind: str) -> set[str]:
    """The documents that use the run-time role (``runtime``) or the tables (``index``)."""
    if not hasattr(env, "course_kit_pages"):
        env.course_kit_pages = {"runtime": set(), "index": set()}
    return env.course_kit_pages[kind]


def _purge(app, env, docname):
    for kind in ("runtime", "index"):
        _pages(env, kind).discard(docname)


def _merge(app, env, docnames, other):
    for kind in ("runtime", "index"):
        _pages(env, kind).update(_pages(other, kind) & set(docnames))


class _ChaptersDirective(SphinxDirective):
    has_content = False

    def chapters(self):
        _pages(self.env, "index").add(self.env.docname)
        for path in CHAPTERS:
            self.env.note_dependency(str(path))
        return [chapter(path) for path in CHAPTERS]

    def relative(self, target: str) -> str:
        return posixpath.relpath(target, posixpath.dirname(self.env.docname) or ".")

    def parse(self, text: str) -> list[nodes.Node]:
        container = nodes.container(classes=["course-kit"])
        self.state.nested_parse(StringList(text.splitlines()), self.content_offset, container)
        return [container]


def _escape(text: str) -> str:
    """Text that is safe as the explicit title of a role."""
    return text.replace("`", "").replace("<", "\\<").replace(">", "\\>")


class CourseChapters(_ChaptersDirective):
    """A table of the chapters: goals, earlier chapters used, measured run time, notebooks."""

    def run(self):
        rows = []
        for info in self.chapters():
            docname = f"book/{info.path.stem}"
            if info.goals:
                goals = "- " + "\n    - ".join(info.goals)
            else:
                goals = "no list of goals found" if info.written else "not written yet"
            back = ", ".join(f"{{ref}}`{label}`" for label in info.refers_back_to) or "—"
            links = " · ".join(
                f'<a href="{self.relative(f"{NOTEBOOKS}/{e}/{info.path.stem}.ipynb")}" '
                f'download="{info.path.stem}-{e}.ipynb">{e}</a>'
                for e in _editions(self.config)
            )
            rows.append(
                f"* - {{doc}}`{info.number}. {_escape(info.title)} <{self.relative(docname)}>`\n"
                f"  - {goals}\n"
                f"  - {back}\n"
                f"  - {{course-runtime}}`{docname}`\n"
                f"  - {links}"
            )
        table = (
            ":::{list-table}\n:header-rows: 1\n:widths: 18 50 12 8 12\n\n"
            "* - chapter\n  - by the end, students can\n  - refers back to\n"
            "  - run time\n  - notebooks\n" + "\n".join(rows) + "\n:::"
        )
        return self.parse(table)


class CourseExercises(_ChaptersDirective):
    """A table of every exercise: number and title, chapter, checker, difficulty, size."""

    def run(self):
        rows = []
        for info in self.chapters():
            for ex in info.exercises:
                checker = (
                    f"{{py:func}}`~mini_attn.exercises.{ex.checker_name}`"
                    if ex.checker_name
                    else "—"
                )
                difficulty = ex.difficulty or "not tagged"
                rows.append(
                    f"* - {{numref}}`%s <{ex.label}>`\n"
                    f"  - {{ref}}`{_escape(ex.title)} <{ex.label}>`\n"
                    f"  - {info.number}\n"
                    f"  - {checker}\n"
                    f"  - {difficulty}\n"
                    f"  - {ex.solution_lines}"
                )
        if not rows:
            return self.parse("No chapter has exercises yet.")
        table = (
            ":::{list-table}\n:header-rows: 1\n:widths: 8 40 8 26 10 8\n\n"
            "* - #\n  - exercise\n  - chapter\n  - checker\n  - difficulty\n"
            "  - solution (lines)\n" + "\n".join(rows) + "\n:::"
        )
        return self.parse(table)


def setup(app):
    app.add_config_value("course_kit_students", False, "env")
    app.add_transform(RemoveSolutions)
    app.connect("config-inited", _config_inited, priority=900)
    app.connect("html-page-context", _page_buttons, priority=600)
    app.connect("build-finished", _write_notebooks)
    app.connect("env-get-outdated", _outdated)
    app.connect("env-updated", _pages_with_runtimes)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.add_node(RuntimeNode)
    app.add_role("course-runtime", RuntimeRole())
    app.add_post_transform(RuntimeTransform)
    app.add_directive("course-chapters", CourseChapters)
    app.add_directive("course-exercises", CourseExercises)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
