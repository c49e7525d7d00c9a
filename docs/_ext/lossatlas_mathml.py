"""Sphinx math renderer: LaTeX -> MathML at build time (latex2mathml), no JavaScript.

The HTML gets ``<math>`` elements that the browser lays out itself (MathML Core: Chromium
>= 109, Firefox, Safari), so the site needs no network and no math library at view time.
A formula that latex2mathml cannot translate (an unknown command survives as text
starting with a backslash) is a Sphinx warning, which ``-W`` turns into a build error.
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from latex2mathml.converter import convert
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: Escapes that latex2mathml keeps verbatim inside \text{...} / \texttt{...}.
_TEXT_ESCAPES = {"\\_": "_", "\\%": "%", "\\#": "#", "\\$": "$", "\\{": "{", "\\}": "}"}
_LEFTOVER = re.compile(r"\\[A-Za-z]+")


def to_mathml(latex: str, display: str) -> tuple[str, str | None]:
    """``(mathml, problem)``: the MathML of ``latex`` and, if it is not clean, why."""
    try:
        out = convert(latex.strip(), display=display)
    except Exception as exc:  # latex2mathml raises its own exception types
        return f"<code>{latex}</code>", f"latex2mathml cannot convert {latex!r}: {exc}"
    for escaped, plain in _TEXT_ESCAPES.items():
        out = out.replace(escaped, plain)
    left = _LEFTOVER.search(out)
    if left is not None:
        return out, f"unsupported LaTeX command {left.group(0)} in {latex!r}"
    return out, None


def _render(self: Any, node: nodes.Element, latex: str, display: str) -> str:
    out, problem = to_mathml(latex, display)
    if problem is not None:
        logger.warning(problem, location=node)
    return out


def visit_math(self: Any, node: nodes.Element) -> None:
    self.body.append(self.starttag(node, "span", "", CLASS="math notranslate"))
    self.body.append(_render(self, node, node.astext(), "inline"))
    self.body.append("</span>")
    raise nodes.SkipNode


def visit_displaymath(self: Any, node: nodes.Element) -> None:
    self.body.append(self.starttag(node, "div", CLASS="math notranslate"))
    if node.get("number"):
        self.body.append(f'<span class="eqno">({node["number"]})</span>')
    latex = node.astext()
    # Sphinx's convention (as its MathJax renderer): blank-line separated parts are separate equations.
    parts = [latex] if node.get("nowrap") else [p for p in latex.split("\n\n") if p.strip()]
    for part in parts:
        self.body.append(_render(self, node, part, "block"))
    self.body.append("</div>\n")
    raise nodes.SkipNode


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_html_math_renderer("mathml", inline_renderers=(visit_math, None), block_renderers=(visit_displaymath, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
