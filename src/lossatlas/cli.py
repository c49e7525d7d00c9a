"""The ``lossatlas`` command: ``list``, ``info`` and (from :mod:`lossatlas.bench`) ``bench``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .registry import families, info, list_entries

log = logging.getLogger("lossatlas")


def _cmd_list(args: argparse.Namespace) -> int:
    entries = list_entries(family=args.family)
    if args.json:
        print(json.dumps([e.as_dict() for e in entries], indent=2))
        return 0
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text when rich is not installed
        for fam in sorted({e.family for e in entries}):
            print(f"[{fam}]")
            for e in (x for x in entries if x.family == fam):
                print(f"  {e.id:<28} {e.catalogue:<5} {e.kind:<15} {e.formula}")
        return 0
    table = Table(title=f"lossatlas {__version__}: {len(entries)} methods", show_lines=False)
    for col in ("family", "id", "row", "input", "formula"):
        table.add_column(col, overflow="fold")
    last = None
    for e in entries:
        table.add_row(e.family if e.family != last else "", e.id, e.catalogue, e.kind, e.formula)
        last = e.family
    Console().print(table)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    entry = info(args.id)
    print(json.dumps(entry.as_dict(), indent=2) if args.json else entry)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lossatlas",
        description="Losses, samplers and metrics for long-tailed, noisy and contrastive learning.",
    )
    parser.add_argument("--version", action="version", version=f"lossatlas {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("list", help="list the registered methods, grouped by family")
    p.add_argument("--family", choices=families(), help="only this family")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="show one method: formula, paper, defaults and their source")
    p.add_argument("id", help="registry id or alias, e.g. ldam")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_info)

    try:
        from .bench.cli import add_bench_parser
    except ImportError:
        pass
    else:
        add_bench_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"lossatlas: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
