"""The page "For instructors", generated from the chapters at build time (a Sphinx extension).

- ``{course-chapters}``: a table of the chapters (goals, the earlier chapters each refers
  back to, the run time measured by this build, the notebooks to download);
- ``{course-exercises}``: every exercise with its checker, difficulty and solution size;
- ``{course-runtime}`book/NN-name```: the run time this build measured for a chapter.

The page is re-read whenever a chapter changes. Everything comes from
:func:`book_tools.chapters.chapter`.
"""

from __future__ import annotations

import posixpath

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.docutils import SphinxDirective, SphinxRole

from book_tools.chapters import CHAPTERS, chapter
from book_tools.editions import offered
from book_tools.export import NOTEBOOKS


def _chapter_stems() -> set[str]:
    return {f"book/{p.stem}" for p in CHAPTERS}


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
                for e in offered(self.config.course_kit_students)
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
