"""``lossatlas bench run`` and ``lossatlas bench report`` (added to the ``lossatlas`` command)."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

__all__ = ["add_bench_parser"]

log = logging.getLogger("lossatlas.bench")

_DEFAULT_DB = os.path.join("lossatlas-results", "results.sqlite")
_DEFAULT_OUT = os.path.join("lossatlas-results", "report")


def _run_done_line(result: dict[str, Any]) -> str:
    """One line per finished run (above the progress bars, and the only progress when the
    output is not a terminal, where rich draws no bars): method, seed, its headline metric."""
    key = "balanced_accuracy" if "balanced_accuracy" in result else result.get("primary_metric")
    value = result.get(key) if isinstance(key, str) else None
    score = f": {key} {value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
    return f"finished {result.get('method')} seed {result.get('seed')}{score}"


def _cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_suite

    summary = run_suite(
        args.suite, args.db, seeds=args.seeds, device=args.device, threads=args.threads,
        workers=args.workers, progress=not args.no_progress, retry_failed=not args.no_retry,
        on_run_done=lambda result: print(_run_done_line(result), flush=True),
    )
    print(
        f"suite {summary.suite}: {summary.done}/{summary.total} runs done "
        f"({summary.ran} now, {summary.skipped} before, {summary.failed} failed, {summary.elsewhere} running elsewhere) "
        f"in {summary.wall_time_s:.1f} s -> {args.db}"
    )
    if summary.failed:
        print("some runs failed; see the 'error' column of the runs table, fix, and rerun (failed runs are retried)")
    return 1 if summary.failed else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    paths = write_report(args.db, args.out, suites=args.suite or None)
    print(f"report: {paths['html']} (self-contained), {paths['markdown']}, {paths['csv']}")
    return 0


def _cmd_suites(args: argparse.Namespace) -> int:
    from .recipes import builtin_suites, load_suite

    for name in builtin_suites():
        s = load_suite(name)
        runs = sum(r.seeds for r in s.recipes)
        print(f"{name:<8} {len(s.recipes)} recipes, {runs} runs: {s.description}")
        if args.verbose_suites:
            for r in s.recipes:
                print(f"    {r.name:<22} {r.hash}  seeds={r.seeds}")
    return 0


def add_bench_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``bench`` (with ``run``, ``report``, ``suites``) to the ``lossatlas`` sub-commands."""
    bench = subparsers.add_parser(
        "bench",
        help="run benchmark suites into a results database and write reports",
        description="Train real models under the long-tail / label-noise / retrieval / self-supervised / imbalanced-AUC protocols and report a leaderboard.",
    )
    sub = bench.add_subparsers(dest="bench_command", metavar="{run,report,suites}")
    sub.required = True

    p = sub.add_parser(
        "run",
        help="run a suite (or a recipe file); resumable and safe to kill",
        description=(
            "Run every (recipe, seed) of a suite that the results database has not finished. "
            "Safe to kill at any moment: rerun the same command to resume; finished runs are never repeated. "
            "Several runners may share one database."
        ),
    )
    p.add_argument("suite", nargs="?", default="quick", metavar="SUITE|RECIPE_FILE",
                   help="a built-in suite (quick [default], lt, noise, metric, ssl, auc; see `lossatlas bench suites`) or a path to a suite/recipe JSON file")
    p.add_argument("--db", default=_DEFAULT_DB, metavar="PATH", help=f"SQLite results database, created if missing (default: {_DEFAULT_DB})")
    p.add_argument("--seeds", type=int, default=None, metavar="N", help="run seeds 0..N-1 of every recipe instead of the recipe's own 'seeds'")
    p.add_argument("--device", default="auto", help="'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:K' (default: auto)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch CPU threads per runner process (default 1: fastest for the small models; raise it for ResNet-32 on CPU)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="runner processes sharing the work (default 1); e.g. 2 on a 2-core machine runs two runs at a time")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    p.add_argument("--no-retry", action="store_true", help="leave runs that failed before alone instead of retrying them")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "report",
        help="write the leaderboard, plots and HTML/Markdown report",
        description=(
            "Write report.md, report.html (one self-contained file, plots embedded as PNG) and leaderboard.csv "
            "(one row per suite and method: mean and std over seeds, ranked by balanced accuracy) from the finished runs."
        ),
    )
    p.add_argument("--db", default=_DEFAULT_DB, metavar="PATH", help=f"SQLite results database to read (default: {_DEFAULT_DB})")
    p.add_argument("--out", default=_DEFAULT_OUT, metavar="DIR", help=f"folder for the report files, created if missing (default: {_DEFAULT_OUT})")
    p.add_argument("--suite", action="append", metavar="NAME", help="only this suite (repeatable; default: every suite in the database)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("suites", help="list the built-in suites", description="List the built-in suites with their recipes.")
    p.add_argument("--recipes", dest="verbose_suites", action="store_true", help="also list each recipe and its hash")
    p.set_defaults(func=_cmd_suites)
    return bench
