"""Rewrite decorated functions as ``name = decorator(name)`` so mutmut mutates their bodies.

mutmut 3 does not mutate a function that has a decorator (other than a lone
``@staticmethod`` / ``@classmethod``): it cannot know what the decorator does at definition
time. Every public loss function here is decorated with ``@loss_function(...)`` (and
``FunctionSpec``'s properties with ``@property``), so without this step the bodies of the
public functions would never be mutated. The rewrite is exact: ::

    @dec_a(args)            def f(...):
    @dec_b                      ...
    def f(...):       ->    f = dec_a(args)(dec_b(f))
        ...

The decorators are then applied to mutmut's trampoline (which keeps ``f``'s signature), and
the mutated copies of ``f`` are plain functions, so a mutated default value is what a call
that omits that argument gets. Only the copy that mutmut mutates is rewritten (a throwaway
git worktree, see ``benchmarks/mutation/run.sh``); ``src/`` is never touched.

Usage: ``python benchmarks/mutation/undecorate.py FILE [FILE ...]`` (rewrites in place).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

KEEP_ALONE = {"staticmethod", "classmethod"}  # mutmut handles a lone one of these itself


def _decorated(body: list[ast.stmt]) -> list[ast.FunctionDef]:
    found: list[ast.FunctionDef] = []
    for node in body:
        if isinstance(node, ast.FunctionDef) and node.decorator_list:
            only = node.decorator_list
            if not (len(only) == 1 and isinstance(only[0], ast.Name) and only[0].id in KEEP_ALONE):
                found.append(node)
        elif isinstance(node, ast.ClassDef):
            found.extend(_decorated(node.body))
    return found


def undecorate(source: str) -> str:
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    # bottom-up, so the line numbers of the nodes still to rewrite stay valid
    for fn in sorted(_decorated(tree.body), key=lambda n: n.lineno, reverse=True):
        texts = [ast.get_source_segment(source, d) for d in fn.decorator_list]
        if any(t is None for t in texts):
            raise ValueError(f"line {fn.lineno}: cannot read the decorators of {fn.name}")
        first = min(d.lineno for d in fn.decorator_list) - 1  # 0-based line of the first '@'
        def_line = lines[fn.lineno - 1]
        indent = def_line[: len(def_line) - len(def_line.lstrip())]
        expr = fn.name
        for text in reversed(texts):  # the decorator nearest the def is applied first
            expr = f"({text})({expr})"
        assert fn.end_lineno is not None
        lines.insert(fn.end_lineno, f"{indent}{fn.name} = {expr}\n")
        del lines[first : fn.lineno - 1]
    out = "".join(lines)
    ast.parse(out)  # still valid Python
    return out


def main(paths: list[str]) -> None:
    for p in paths:
        path = Path(p)
        path.write_text(undecorate(path.read_text()))


if __name__ == "__main__":
    main(sys.argv[1:])
