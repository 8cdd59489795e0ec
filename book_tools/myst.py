"""The MyST parser of the book's build, for the pipeline: myst-parser's markdown-it parser
configured with the book's ``parse.myst_enable_extensions``, and its directives.

Nothing here matches fences with a regex: a directive is a top-level ``fence`` (or
``colon_fence``) token whose info is ``{name} argument``, and its options are read by
myst-parser's own ``parse_directive_text``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from myst_parser.config.main import MdParserConfig
from myst_parser.parsers.directives import TestDirective, parse_directive_text
from myst_parser.parsers.mdit import create_md_parser

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Directive:
    """One top-level MyST directive of a markdown text: name, argument, options, body, and
    where it is (``start``/``end``: character offsets, ``line``: 0-based first line)."""

    name: str
    argument: str
    options: dict[str, str]
    body: str
    start: int
    end: int
    line: int


@functools.cache
def parser_config() -> MdParserConfig:
    """myst-parser's configuration with the book's ``parse.myst_enable_extensions``."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text()) or {}
    extensions = (config.get("parse") or {}).get("myst_enable_extensions") or []
    return MdParserConfig(enable_extensions=set(extensions))


@functools.cache
def _markdown_it():
    return create_md_parser(parser_config(), RendererHTML)


def tokens(text: str) -> list[Token]:
    """The markdown-it block tokens of a Markdown text (inline tokens as their children)."""
    return _markdown_it().parse(text)


class _AnyDirective(TestDirective):
    """Reads any directive's argument and options (myst's TestDirective accepts all)."""

    required_arguments = 0
    optional_arguments = 1
    final_argument_whitespace = True
    has_content = True


def directives(text: str) -> list[Directive]:
    """The top-level MyST directives of a markdown text, in order."""
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    found = []
    for token in tokens(text):
        if token.level or token.type not in ("fence", "colon_fence") or not token.map:
            continue
        match = re.fullmatch(r"\{([^}]+)\}\s*(.*)", token.info.strip(), re.DOTALL)
        if not match:
            continue  # a code block (```python), not a directive
        name, first_line = match.groups()
        parsed = parse_directive_text(
            _AnyDirective, first_line, token.content, validate_options=False
        )
        options = {k: "" if v is None else str(v) for k, v in parsed.options.items()}
        first, last = token.map
        found.append(
            Directive(
                name=name,
                argument=" ".join(parsed.arguments),
                options=options,
                body="\n".join(parsed.body).strip("\n"),
                start=offsets[first],
                end=offsets[min(last, len(lines))],
                line=first,
            )
        )
    return found
