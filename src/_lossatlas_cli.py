"""Entry point of the ``lossatlas`` console script.

``import lossatlas`` imports PyTorch, which takes one to several seconds (more on a busy
machine). A long command, ``lossatlas bench run``, says what it is doing before that, then
hands over to :func:`lossatlas.cli.main`. This module lives outside the ``lossatlas`` package
because importing any ``lossatlas.*`` module runs the package's ``__init__`` (and so imports
torch) first. It imports nothing but ``sys``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

#: ``lossatlas bench run`` options that take a value (the suite is the first other word).
_VALUE_OPTIONS = ("--db", "--seeds", "--device", "--threads", "--workers", "--ray")


def bench_run_suite(argv: Sequence[str]) -> str | None:
    """The suite a ``lossatlas bench run`` command line runs (``"quick"`` when none is
    named), or ``None`` for any other command and for ``--help``."""
    args = list(argv)
    while args and args[0] in ("-v", "--verbose"):
        args.pop(0)
    if args[:2] != ["bench", "run"] or any(a in ("-h", "--help") for a in args):
        return None
    rest = args[2:]
    i = 0
    while i < len(rest):
        word = rest[i]
        if word in _VALUE_OPTIONS:
            i += 2
            continue
        if not word.startswith("-"):
            return word
        i += 1
    return "quick"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    suite = bench_run_suite(args)
    if suite is not None:
        print(f"lossatlas bench run {suite}: starting (loading PyTorch, then the suite, its data and models; "
              "progress follows)", file=sys.stderr, flush=True)
    from lossatlas.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
