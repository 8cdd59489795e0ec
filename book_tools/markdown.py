"""MyST Markdown as the plain Markdown that a Jupyter or Colab renders (they know no MyST).

Exercises and solutions become headings, ``{literalinclude}`` becomes the code the page
shows (:func:`book_tools.literalinclude.code_without_docstring` for ``:no-docstring:``),
admonitions and ``prf:`` blocks become quotes, citations become "Author (year)" from the
book's BibTeX file (read with pybtex, as sphinxcontrib-bibtex does), and cross-references
become their text.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from pybtex.database import parse_file
from sphinx.pycode import ModuleAnalyzer

from book_tools.chapters import BOOK, CHAPTERS, chapter
from book_tools.literalinclude import code_without_docstring
from book_tools.myst import Directive, directives

BIBLIOGRAPHY = BOOK / "references.bib"
ADMONITIONS = ("admonition", "note", "tip", "important", "warning")


@functools.cache
def bibliography(path: Path = BIBLIOGRAPHY) -> dict[str, tuple[str, str]]:
    """``key -> (authors as cited, year)`` from the book's BibTeX file."""
    if not path.exists():
        return {}
    entries = {}
    for key, entry in parse_file(str(path), bib_format="bibtex").entries.items():
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        surnames = [" ".join(p.last_names).replace("{", "").replace("}", "") for p in people]
        cited = f"{surnames[0]} et al." if len(surnames) > 2 else " and ".join(surnames)
        entries[key] = (cited or key, entry.fields.get("year", "n.d."))
    return entries


def labels_of(path: Path) -> dict[str, str]:
    """The text a reference to a label shows: chapter titles, exercise numbers, definitions."""
    labels = {}
    for other in CHAPTERS:
        info = chapter(other)
        if info.label:
            labels[info.label] = f"chapter {info.number}, *{info.title}*"
    labels.update({ex.label: f"exercise {ex.number}" for ex in chapter(path).exercises})
    for cell in chapter(path).cells:
        if cell.cell_type == "markdown":
            for d in directives(cell.source):
                if "label" in d.options and d.argument:
                    labels.setdefault(d.options["label"], f"*{d.argument}*")
    return labels


def _role(name: str, content: str, labels: dict[str, str]) -> str:
    """The plain-Markdown text of a MyST role."""
    if name.startswith("cite"):
        cited = [bibliography().get(k.strip(), (k.strip(), "")) for k in content.split(",")]
        if name in ("cite:t", "cite:ts"):
            return "; ".join(f"{who} ({year})" for who, year in cited)
        return "(" + "; ".join(f"{who}, {year}" for who, year in cited) + ")"
    if name == "math":
        return f"${content}$"
    explicit = re.match(r"^(.*?)\s*<([^>]+)>$", content, re.DOTALL)
    if explicit:
        return explicit.group(1)
    if content in labels:
        return labels[content]
    python = ("func", "class", "meth", "attr", "mod", "obj", "data", "exc")
    if name in python or name.startswith("py:"):
        target = content[1:].rsplit(".", 1)[-1] if content.startswith("~") else content
        return f"`{target}`"
    return content


def shown_code(filename: Path, options: dict[str, str]) -> str:
    """The code a ``{literalinclude}`` with ``:pyobject:`` (and optionally ``:no-docstring:``
    and ``:start-at:``) shows; ValueError for any other option."""
    unknown = set(options) - {"pyobject", "no-docstring", "start-at", "language", "caption"}
    if "pyobject" not in options or unknown:
        raise ValueError(f"cannot render the options {sorted(unknown) or ['(no :pyobject:)']}")
    pyobject = options["pyobject"]
    if "no-docstring" in options:
        text = code_without_docstring(filename, pyobject)
    else:
        _, start, end = ModuleAnalyzer.for_file(str(filename), "").find_tags()[pyobject]
        text = "".join(Path(filename).read_text().splitlines(keepends=True)[start - 1 : end])
    if "start-at" in options:
        lines = text.splitlines(keepends=True)
        first = next(i for i, line in enumerate(lines) if options["start-at"] in line)
        text = "".join(lines[first:])
    return text


def _directive_markdown(directive: Directive, path: Path, numbers: dict[str, str]) -> str | None:
    """A MyST directive as plain Markdown, or None to keep its MyST source."""
    name, title, body = directive.name, directive.argument, directive.body
    if name == "exercise":
        number = numbers.get(directive.options.get("label", ""), "")
        return f"### Exercise {number}: {title}\n\n{body}".rstrip()
    if name == "solution-start":
        return f"#### Solution to exercise {numbers.get(title, '')}".rstrip()
    if name == "solution-end":
        return ""
    if name == "literalinclude":
        try:
            code = shown_code((path.parent / title).resolve(), directive.options)
        except (ValueError, KeyError, OSError, StopIteration):
            return None  # a broken include stays visible as its MyST source
        return f"```{directive.options.get('language', 'python')}\n{code.rstrip()}\n```"
    if name.startswith("prf:") or name in ADMONITIONS:
        kind = name.removeprefix("prf:").capitalize()
        named = title and name != "admonition"
        heading = f"**{kind} ({title}).**" if named else f"**{title or kind}.**"
        return "\n".join(f"> {line}".rstrip() for line in f"{heading} {body}".splitlines())
    return None


def myst_to_markdown(text: str, path: Path, labels: dict[str, str] | None = None) -> str:
    """Markdown that a plain Jupyter renders well, from a markdown cell of chapter ``path``."""
    numbers = {ex.label: ex.number for ex in chapter(path).exercises}
    labels = labels_of(path) if labels is None else labels
    pieces, position = [], 0
    for directive in directives(text):
        rendered = _directive_markdown(directive, path, numbers)
        if rendered is None:
            continue
        pieces += [text[position : directive.start], rendered + "\n" if rendered else ""]
        position = directive.end
    pieces.append(text[position:])
    text = "".join(pieces)
    text = re.sub(r"^\([\w-]+\)=[ \t]*\n", "", text, flags=re.MULTILINE)  # MyST targets
    text = re.sub(r"\{([\w:.-]+)\}`([^`]*)`", lambda m: _role(m.group(1), m.group(2), labels), text)
    return text.strip("\n")
