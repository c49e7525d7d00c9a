"""The ``lossatlas`` command: ``list``, ``info`` and (from :mod:`lossatlas.bench`) ``bench``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import textwrap
from collections.abc import Sequence

from . import __version__
from .registry import Entry, families, info, list_entries

log = logging.getLogger("lossatlas")


#: Narrowest ``--width`` accepted (an id, its catalogue row and input kind must fit).
MIN_WIDTH = 40


def _width(value: str) -> int:
    try:
        width = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--width must be an int, got {value!r}") from None
    if width < MIN_WIDTH:
        raise argparse.ArgumentTypeError(f"--width must be >= {MIN_WIDTH}, got {width}")
    return width


def _clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def format_list(entries: Sequence[Entry], width: int = 80, full: bool = False) -> list[str]:
    """The lines of ``lossatlas list``: entries grouped by family, one line each (id, catalogue
    row, input kind unless the whole family shares it, formula), no line longer than ``width``:
    the formula is cut with an ellipsis, or with ``full`` wrapped in full below its entry."""
    width = max(int(width), MIN_WIDTH)
    lines = [_clip(f"lossatlas {__version__}: {len(entries)} methods (lossatlas info ID for one in full)", width)]
    for fam in sorted({e.family for e in entries}):
        group = [e for e in entries if e.family == fam]
        kinds = {e.kind for e in group}
        shared = kinds.pop() if len(kinds) == 1 else None
        lines += ["", _clip(fam if shared is None else f"{fam} (input: {shared})", width)]
        idw = max(len(e.id) for e in group)
        roww = max(len(e.catalogue) for e in group)
        kindw = 0 if shared is not None else max(len(e.kind) for e in group) + 2
        room = width - (2 + idw + 2 + roww + kindw + 2)
        inline = not full and room >= 12
        for e in group:
            row = f"  {e.id:<{idw}}  {e.catalogue:<{roww}}" + ("" if shared is not None else f"  {e.kind:<{kindw - 2}}")
            if inline:
                lines.append(f"{row}  {_clip(e.formula, room)}")
                continue
            lines.append(_clip(row.rstrip(), width))
            lines += ["      " + part for part in textwrap.wrap(e.formula, width - 6, break_on_hyphens=False)]
    return lines


def format_catalogue(width: int = 80) -> list[str]:
    """The lines of ``lossatlas list --catalogue``: every catalogue row the library knows of, with
    its registered ids, or the note saying where it lives / why it is not a loss, or what is
    still missing (:mod:`lossatlas.catalogue`), wrapped to ``width``."""
    from .catalogue import rows

    width = max(int(width), MIN_WIDTH)
    table = rows()
    counts = {s: sum(r.status == s for r in table) for s in ("registered", "note", "pending")}
    lines = [_clip(f"lossatlas {__version__}: {len(table)} catalogue rows: {counts['registered']} registered, "
                   f"{counts['note']} with a note, {counts['pending']} not implemented yet", width)]
    for r in table:
        head = f"  {r.row:<4} {r.status:<10} "
        text = ", ".join(r.ids) if r.status == "registered" else r.text
        parts = textwrap.wrap(text, width - len(head), break_on_hyphens=False) or [""]
        lines.append(head + parts[0])
        lines += [" " * len(head) + part for part in parts[1:]]
    return lines


def _cmd_list(args: argparse.Namespace) -> int:
    if args.catalogue:
        if args.family is not None:
            raise ValueError("--catalogue lists every row; it takes no --family")
        if args.json:
            from dataclasses import asdict

            from .catalogue import rows

            print(json.dumps([asdict(r) for r in rows()], indent=2))
            return 0
        width = args.width if args.width is not None else shutil.get_terminal_size((80, 24)).columns
        print("\n".join(format_catalogue(width)))
        return 0
    entries = list_entries(family=args.family)
    if args.json:
        print(json.dumps([e.as_dict() for e in entries], indent=2))
        return 0
    width = args.width if args.width is not None else shutil.get_terminal_size((80, 24)).columns
    print("\n".join(format_list(entries, width, full=args.full)))
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
    p.add_argument("--width", type=_width, metavar="N", help="line width (default: the terminal's, 80 when not a terminal)")
    p.add_argument("--full", action="store_true", help="each formula in full, wrapped below its entry")
    p.add_argument("--catalogue", action="store_true",
                   help="every catalogue row: its registered ids, or where it lives / why it is not a loss")
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
    except BrokenPipeError:  # the reader went away (lossatlas list | head): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"lossatlas: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
