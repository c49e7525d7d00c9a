"""Docstring fragments shared by several classes, written once and inserted at import.

A docstring names a fragment with a line holding only ``{name}``; :func:`fill_doc`
replaces that line with the fragment, indented like the marker, so ``__doc__``,
``inspect.getdoc``, doctests and the rendered documentation all see the full text.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import TypeVar

__all__ = ["fill_doc"]

T = TypeVar("T")


def _marker(line: str, fragments: dict[str, str]) -> str | None:
    """The fragment name if ``line`` is a ``{name}`` marker of a known fragment."""
    key = line.strip()
    if key.startswith("{") and key.endswith("}") and key[1:-1] in fragments:
        return key[1:-1]
    return None


def _expand(doc: str, fragments: dict[str, str]) -> tuple[str, set[str]]:
    lines: list[str] = []
    used: set[str] = set()
    for line in doc.split("\n"):
        name = _marker(line, fragments)
        if name is None:
            lines.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        lines.extend(textwrap.indent(textwrap.dedent(fragments[name]).strip("\n"), indent).split("\n"))
        used.add(name)
    return "\n".join(lines), used


def fill_doc(**fragments: str) -> Callable[[T], T]:
    """Decorator: replace every ``{name}`` line of the docstring with ``fragments[name]``.

    Every fragment must be used (a missing marker is a mistake, not a no-op). Without
    docstrings (``python -OO``) the object is returned as it is.
    """

    def decorate(obj: T) -> T:
        if obj.__doc__ is None:
            return obj
        doc, used = _expand(obj.__doc__, fragments)
        unused = sorted(set(fragments) - used)
        if unused:
            raise ValueError(f"{getattr(obj, '__qualname__', obj)!r}: no line {{{unused[0]}}} in the docstring")
        obj.__doc__ = doc
        return obj

    return decorate
