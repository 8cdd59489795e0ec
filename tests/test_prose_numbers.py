"""No measured number typed into a chapter's prose: it must come from the run, by glue.

A chapter's prose is what is left of its MyST source once code cells, fenced blocks,
math, inline code, roles (``{glue:text}`key`, ``{cite:p}``, ``{ref}``), directive options,
link targets and HTML comments are removed. In that prose a decimal (``0.3``) or a
percentage (``98 %``, ``12 per cent``) is a number somebody typed, and typed numbers go
stale when the run changes (chapter 2's long-input paragraph did). Such a number reaches
the text through myst-nb's ``glue`` instead::

    glue("acc_soft", 100 * acc, display=False)     # in a code cell
    {glue:text}`acc_soft:.1f` %                    # in the Markdown

Numbers that are stated inputs, not measurements (a target the training stops at, a
threshold, a version), are allowed by ``ALLOWED``, each with its reason. An entry that
no longer occurs in its chapter fails too, so the list cannot outlive its reasons.

The second test checks statically that every glue key a chapter's prose uses is glued
by one of that chapter's code cells (a missing key is only a warning in Sphinx).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTER_FILES = sorted(BOOK.glob("[0-9]*.md"))

# (chapter file, the exact text as it stands in the prose) -> why it is not a measurement
ALLOWED: dict[tuple[str, str], str] = {
    ("02-soft-attention.md", "99.5 %"): "the accuracy target the attention model trains to "
    "(an input of the training loop, stated in the code cell that uses it)",
    ("02-soft-attention.md", "98 %"): "the accuracy target of the baseline (an input)",
}

_FENCE = re.compile(r"^(`{3,}|~{3,})")
_DECIMAL = re.compile(r"(?<![\w.])[-−]?\d+\.\d+(?![\w.]*\d)")
_PERCENT = re.compile(r"\d+(?:\.\d+)?\s*(?:%|per ?cent\b|percent\b)")
_NUMBER = re.compile(f"{_PERCENT.pattern}|{_DECIMAL.pattern}")
# directives whose body is prose (the rest, like code-cell and literalinclude, are code)
_PROSE_DIRECTIVES = re.compile(
    r"\{(prf:\w+|exercise|solution-start|solution|admonition|note|tip|warning|important|"
    r"caution|attention|hint|seealso|margin|sidebar|topic|epigraph|dropdown|card|tab-item|"
    r"figure|glue:figure)\}"
)


def prose_lines(text: str) -> list[tuple[int, str]]:
    """The (line number, line) pairs of a chapter's prose, code and markup removed."""
    lines = text.splitlines()
    out: list[tuple[int, str]] = []
    i = 0
    if lines and lines[0].strip() == "---":  # the jupytext front matter
        i = lines.index("---", 1) + 1
    stack: list[tuple[str, bool]] = []  # open fences: (fence, is prose inside)
    in_math = in_comment = False
    options = False  # directly after a prose directive's opening: its :option: lines
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        i += 1
        fence = _FENCE.match(stripped)
        if in_comment:
            in_comment = "-->" not in line
            continue
        opening = stack[-1][0] if stack else ""
        if (
            fence
            and stack
            and stripped == fence.group(1)
            and fence.group(1)[0] == opening[0]
            and (len(fence.group(1)) >= len(opening))
        ):
            stack.pop()
            continue
        if fence:
            info = stripped[len(fence.group(1)) :]
            prose = bool(_PROSE_DIRECTIVES.match(info))
            if not stack or stack[-1][1]:  # only open inside prose (code hides the rest)
                stack.append((fence.group(1), prose))
                options = prose
                continue
        if stack and not stack[-1][1]:
            continue  # inside a code cell or another non-prose block
        if options and re.match(r"^\s*:[\w-]+:", line):
            continue  # a directive option (:label:, :class:, :width: ...)
        options = False
        if stripped.startswith("$$"):
            in_math = not (in_math or (stripped.endswith("$$") and len(stripped) > 2))
            continue
        if in_math:
            continue
        if "<!--" in line:
            before, _, after = line.partition("<!--")
            in_comment = "-->" not in after
            line = before + (after.split("-->", 1)[1] if not in_comment else "")
        if re.match(r"^\(.+\)=\s*$", stripped) or stripped.startswith("+++"):
            continue  # a label target or a cell break
        out.append((i, _strip_markup(line)))
    return out


def _strip_markup(line: str) -> str:
    line = re.sub(r"\{[\w:-]+\}`[^`]*`", " ", line)  # roles: glue, cite, ref, math, func ...
    line = re.sub(r"``[^`]+``|`[^`]*`", " ", line)  # inline code
    line = re.sub(r"\$[^$]+\$", " ", line)  # inline math
    line = re.sub(r"\]\([^)]*\)", "] ", line)  # link targets (the text stays)
    line = re.sub(r"<https?://[^>]*>", " ", line)
    return line


def typed_numbers(path: Path) -> list[tuple[int, str, str]]:
    """(line, number, the line) for every decimal or percentage typed into the prose."""
    found = []
    for lineno, line in prose_lines(path.read_text(encoding="utf-8")):
        for match in _NUMBER.finditer(line):
            if (path.name, match.group(0)) not in ALLOWED:
                found.append((lineno, match.group(0), line.strip()))
    return found


@pytest.mark.parametrize("path", CHAPTER_FILES, ids=lambda p: p.stem)
def test_no_number_typed_into_the_prose(path):
    found = typed_numbers(path)
    listing = "\n".join(f"  line {n}: {number!r} in: {line[:100]}" for n, number, line in found)
    assert not found, (
        f"{path.name}: {len(found)} number(s) typed into the prose; glue them from the run "
        f"(or, for a stated input, add them to ALLOWED with the reason):\n{listing}"
    )


@pytest.mark.parametrize("entry", sorted(ALLOWED), ids=lambda e: f"{e[0]}:{e[1]}")
def test_allowed_numbers_still_occur(entry):
    name, number = entry
    prose = " ".join(line for _, line in prose_lines((BOOK / name).read_text(encoding="utf-8")))
    assert any(m.group(0) == number for m in _NUMBER.finditer(prose)), (
        f"{number!r} no longer occurs in the prose of {name}: remove it from ALLOWED"
    )


_GLUE_ROLE = re.compile(r"\{glue(?::\w*)?\}`([^`:]+)")
_GLUE_DIRECTIVE = re.compile(r"^\s*```+\{glue(?::\w+)?\}\s+(\S+)", re.MULTILINE)
_GLUE_CALL = re.compile(r"\bglue\(\s*(f?)([\"'])(.+?)\2")


def glued_keys(text: str) -> list[re.Pattern]:
    """The keys glued in code cells, as patterns (an f-string key matches any fill)."""
    patterns = []
    for is_f, _, key in _GLUE_CALL.findall(text):
        if is_f:
            parts = re.split(r"\{[^}]*\}", key)
            patterns.append(re.compile(".+".join(re.escape(p) for p in parts) + "$"))
        else:
            patterns.append(re.compile(re.escape(key) + "$"))
    return patterns


def used_keys(text: str) -> set[str]:
    prose = "\n".join(line for line in _prose_with_roles(text))
    return set(_GLUE_ROLE.findall(prose)) | set(_GLUE_DIRECTIVE.findall(text))


def _prose_with_roles(text: str) -> list[str]:
    """Lines outside code cells, roles kept (what _strip_markup would remove)."""
    keep, inside = [], None
    for line in text.splitlines():
        fence = _FENCE.match(line.strip())
        if inside is None and fence and "{code-cell}" in line:
            inside = fence.group(1)
            continue
        if inside is not None:
            inside = None if line.strip() == inside else inside
            continue
        keep.append(line)
    return keep


@pytest.mark.parametrize("path", CHAPTER_FILES, ids=lambda p: p.stem)
def test_every_glue_key_is_glued_by_its_chapter(path):
    text = path.read_text(encoding="utf-8")
    patterns = glued_keys(text)
    missing = sorted(k for k in used_keys(text) if not any(p.match(k) for p in patterns))
    assert not missing, f"{path.name} uses glue keys that none of its code cells glues: {missing}"


def test_the_detector_sees_typed_numbers_and_ignores_code():
    """The parser on a small sample: what counts as prose and what does not."""
    sample = "\n".join(
        [
            "---",
            "jupytext: x",
            "---",
            "The model reaches 97.7 % and loses 0.25 nats.",
            "A target of {glue:text}`acc:.1f` %, inline `0.5` and math $h = 0.3$.",
            "```{code-cell} ipython3",
            "x = 0.75  # 12 %",
            "```",
            "$$",
            "f = 0.5",
            "$$",
            "```{exercise} Title",
            ":label: ex-1.5",
            "",
            "Use a rate of 12 per cent.",
            "```",
            "See [the 2.0 docs](https://x.org/v2.0) and version 1.2.3.",
        ]
    )
    path = BOOK / "_sample_prose_numbers.md"
    try:
        path.write_text(sample, encoding="utf-8")
        numbers = [number for _, number, _ in typed_numbers(path)]
    finally:
        path.unlink()
    assert numbers == ["97.7 %", "0.25", "12 per cent", "2.0"]
    assert used_keys("Ok {glue:text}`acc:.1f` and {glue:}`loss`.") == {"acc", "loss"}
    assert [p.pattern for p in glued_keys('glue("acc", 1)\nglue(f"n_{i}", 2)')] == ["acc$", "n_.+$"]
