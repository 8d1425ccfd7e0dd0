"""Escaping for every output format: names and notes come from plugins and config files."""

from __future__ import annotations

import html
import re

_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """Make ``text`` literal inside a LaTeX table cell."""
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_ENTITY_START = re.compile(r"&(?=[#A-Za-z])")


def markdown_escape(text: str) -> str:
    """Keep ``text`` inside its GitHub-markdown table cell: pipes, newlines, and anything that
    GitHub would read as an HTML tag or entity; a plain ``<=`` stays readable."""
    t = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")
    t = _ENTITY_START.sub("&amp;", t)
    return _TAG_START.sub("&lt;", t)


def h(text: object) -> str:
    """HTML-escape any value for element content and quoted attributes."""
    return html.escape(str(text), quote=True)
