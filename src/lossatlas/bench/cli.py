"""``lossatlas bench run``, ``sweep``, ``report``, ``suites`` and ``failures`` (added to the ``lossatlas`` command)."""

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
        workers=args.workers, ray=args.ray, progress=not args.no_progress, retry_failed=not args.no_retry,
        on_run_done=lambda result: print(_run_done_line(result), flush=True),
    )
    print(
        f"suite {summary.suite}: {summary.done}/{summary.total} runs done "
        f"({summary.ran} now, {summary.skipped} before, {summary.failed} failed, {summary.elsewhere} running elsewhere) "
        f"in {summary.wall_time_s:.1f} s -> {args.db}"
    )
    if summary.failed:
        print(f"some runs failed; list them and their errors with `lossatlas bench failures --db {args.db}`, fix, and rerun (failed runs are retried)")
    return 1 if summary.failed else 0


def _last_line(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _match_ref(row: dict[str, Any], ref: str) -> bool:
    """``ref``: a recipe hash (or its first characters) or a method name, optionally ``:SEED``."""
    name, _, seed = ref.partition(":")
    if seed and str(row["seed"]) != seed:
        return False
    return bool(name) and (row["method"] == name or str(row["recipe_hash"]).startswith(name))


def _cmd_failures(args: argparse.Namespace) -> int:
    import datetime

    from .store import ResultsStore, RunKey

    if not os.path.exists(args.db):
        raise FileNotFoundError(f"results database {args.db!r} does not exist (run `lossatlas bench run` first, or pass --db)")
    with ResultsStore(args.db) as store:
        rows = [r for r in store.results(suite=args.suite, status="failed") if args.method is None or r["method"] == args.method]
        if args.show is not None:
            rows = [r for r in rows if _match_ref(r, args.show)]
            if not rows:
                raise ValueError(f"no failed run matches {args.show!r} (a recipe hash or its start, or a method name, optionally :SEED); "
                                 "`lossatlas bench failures` lists them")
            for r in rows:
                print(f"== {r['suite']} / {r['method']} seed {r['seed']} (recipe {r['recipe_hash']}, attempt {r['attempts']})")
                print((r["error"] or "(no error recorded)").rstrip())
            return 0
        if args.prune:
            n = store.prune_failed(keys=[RunKey(r["recipe_hash"], r["seed"]) for r in rows])
            print(f"pruned {n} failed run{'s' if n != 1 else ''} from {args.db} (a later `bench run` of their suite adds them again as pending)")
            return 0
    if not rows:
        print(f"no failed runs in {args.db}")
        return 0
    print(f"{len(rows)} failed run{'s' if len(rows) != 1 else ''} in {args.db} (details: --show HASH|METHOD[:SEED]; forget them: --prune)")
    for r in rows:
        when = datetime.datetime.fromtimestamp(r["finished_at"], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M") if r["finished_at"] else "?"
        print(f"{r['suite']:<10} {r['method']:<22} seed {r['seed']:<3} {r['recipe_hash']}  attempts {r['attempts']}  {when} UTC  {_last_line(r['error'])[:160]}")
    return 0


def _sweep_command(args: argparse.Namespace) -> str:
    """The sweep's defining options, as a command line (for the summary file)."""
    import shlex

    words = [args.suite] + [w for m in args.method or () for w in ("--method", m)] + [w for t in args.param for w in ("--param", t)]
    for flag, value in (("--trials", args.trials), ("--sweep-seed", args.sweep_seed if args.trials else None), ("--seeds", args.seeds), ("--name", args.name)):
        if value is not None:
            words += [flag, str(value)]
    return " ".join(shlex.quote(w) for w in words)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .recipes import load_suite
    from .report import sweep_tables
    from .runner import run_suite
    from .store import ResultsStore
    from .sweep import parse_param, plan_sweep, write_sweep_suite
    from .tasks import check_task_data

    if not args.param:
        raise ValueError("lossatlas bench sweep needs at least one --param PATH=V1,V2,... (e.g. --param loss.gamma=0,0.1,0.2)")
    suite = load_suite(args.suite)
    params = [parse_param(t) for t in args.param]
    name, points = plan_sweep(suite, params, args.method, args.trials, args.sweep_seed, args.name)
    check_task_data(p.recipe.config for p in points)  # a bad data file stops here, before anything is stored
    path = write_sweep_suite(name, points, os.path.join(os.path.dirname(os.path.abspath(args.db)), "sweeps"))
    with ResultsStore(args.db) as store:
        store.add_sweep_points(name, [(p.method, p.recipe.hash, p.params, p.is_default) for p in points])
    print(f"sweep {name}: {len(points)} settings ({sum(p.is_default for p in points)} defaults) of {sorted({p.method for p in points})} -> {path}", flush=True)
    summary = run_suite(
        path, args.db, seeds=args.seeds, device=args.device, threads=args.threads, workers=args.workers, ray=args.ray,
        progress=not args.no_progress, retry_failed=not args.no_retry, on_run_done=lambda result: print(_run_done_line(result), flush=True),
    )
    print(
        f"sweep {name}: {summary.done}/{summary.total} runs done ({summary.ran} now, {summary.skipped} before, {summary.failed} failed, "
        f"{summary.elsewhere} running elsewhere) in {summary.wall_time_s:.1f} s -> {args.db}"
    )
    with ResultsStore(args.db) as store:
        hashes = {p.recipe.hash for p in points}
        rows = [r for r in store.results(suite=name) if r["recipe_hash"] in hashes]
        mine = [p for p in store.sweep_points(name) if p["recipe_hash"] in hashes]
    text = "\n".join(sweep_tables(rows, mine, full=True))
    print(text)
    if args.summary:
        os.makedirs(os.path.dirname(os.path.abspath(args.summary)), exist_ok=True)
        with open(args.summary, "w", encoding="utf-8") as f:
            f.write(f"# Sweep `{name}`\n\n`lossatlas bench sweep {_sweep_command(args)}`\n\n{text}\n")
        print(f"summary: {args.summary}")
    if summary.failed:
        print(f"some runs failed; see `lossatlas bench failures --db {args.db} --suite {name}`")
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


def _first_docstring_line(path: str) -> str:
    import ast

    try:
        with open(path, encoding="utf-8") as f:
            doc = ast.get_docstring(ast.parse(f.read())) or ""
    except (OSError, SyntaxError):
        return ""
    return " ".join(doc.split("\n\n")[0].split())


def catalogue_text() -> str:
    """The ``bench run --help`` epilog: every built-in suite and task, and the ``.npz`` layout
    (read from the suite files and task docstrings without importing the tasks)."""
    import json
    import textwrap
    from importlib import resources

    from ..data.datasets import NPZ_LAYOUT

    lines = ["built-in suites (lossatlas bench suites --recipes lists their recipes):"]
    folder = resources.files("lossatlas.bench") / "suites"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            data = json.loads(entry.read_text(encoding="utf-8"))
            desc = f"{len(data.get('recipes', []))} recipes. {data.get('description', '')}"
            lines += textwrap.wrap(desc, 100, initial_indent=f"  {entry.name[:-5]:<8} ", subsequent_indent=" " * 11)
    lines += ["", "tasks (a recipe's \"task\" field; src/lossatlas/bench/tasks/<name>.py):"]
    tasks = resources.files("lossatlas.bench") / "tasks"
    for entry in sorted(tasks.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".py") and not entry.name.startswith("_"):
            lines += textwrap.wrap(_first_docstring_line(str(entry)) or "(undocumented)", 100, initial_indent=f"  {entry.name[:-3]:<15} ", subsequent_indent=" " * 18)
    lines += ["", "your own data: a recipe with \"data\": {\"name\": \"npz\", \"path\": \"mine.npz\"} (a relative path is read from the",
              "recipe file's folder; the file is checked once, before anything is trained or stored)."]
    for para in NPZ_LAYOUT.replace("``", "").split("\n\n"):
        for item in para.split("\n- "):
            first = "- " if item is not para.split("\n- ")[0] else ""
            lines += textwrap.wrap(" ".join(item.split()), 100, initial_indent="  " + first, subsequent_indent="  " + " " * len(first))
    return "\n".join(lines)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=_DEFAULT_DB, metavar="PATH", help=f"SQLite results database, created if missing (default: {_DEFAULT_DB})")
    p.add_argument("--seeds", type=int, default=None, metavar="N", help="run seeds 0..N-1 of every recipe instead of the recipe's own 'seeds'")
    p.add_argument("--device", default="auto", help="'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:K' (default: auto)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch CPU threads per runner process (default 1: fastest for the small models; raise it for ResNet-32 on CPU)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="runner processes sharing the work (default 1); e.g. 2 on a 2-core machine runs two runs at a time; "
                        "with --ray: at most N runs in flight (default: the cluster's CPUs / --threads)")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="dispatch the runs to a Ray cluster (pip install 'lossatlas[ray]'): 'local' starts one on this machine "
                        "(as ray.init(address='local')), 'auto' finds a running one, or host:port / ray://host:port; "
                        "results are written by this process into --db")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    p.add_argument("--no-retry", action="store_true", help="leave runs that failed before alone instead of retrying them")


def add_bench_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``bench`` (with ``run``, ``sweep``, ``report``, ``suites``, ``failures``) to the ``lossatlas`` sub-commands."""
    bench = subparsers.add_parser(
        "bench",
        help="run benchmark suites into a results database and write reports",
        description="Train real models under the long-tail / label-noise / retrieval / self-supervised / imbalanced-AUC protocols and report a leaderboard.",
    )
    sub = bench.add_subparsers(dest="bench_command", metavar="{run,sweep,report,suites,failures}")
    sub.required = True

    p = sub.add_parser(
        "run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=catalogue_text(),
        help="run a suite (or a recipe file); resumable and safe to kill",
        description=(
            "Run every (recipe, seed) of a suite that the results database has not finished. "
            "Safe to kill at any moment: rerun the same command to resume; finished runs are never repeated. "
            "Several runners may share one database."
        ),
    )
    p.add_argument("suite", nargs="?", default="quick", metavar="SUITE|RECIPE_FILE",
                   help="a built-in suite (quick [default], lt, noise, metric, ssl, auc; listed below) or a path to a suite/recipe JSON file")
    _add_run_options(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "sweep",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="grid or random search over a recipe's hyper-parameters, into the same store",
        description=(
            "Run a suite's recipes (--method: only these) at every setting of the --param grid, or at --trials random settings, "
            "beside each recipe as written (its published default). Runs land in the same SQLite store under the suite "
            "'<suite>-sweep', keyed by recipe hash and seed: rerunning the command repeats nothing and resumes a killed sweep; "
            "`lossatlas bench report` shows each method's best setting beside its default."
        ),
        epilog=(
            "examples:\n"
            "  lossatlas bench sweep lt --method vs --param loss.gamma=0,0.1,0.2 --param loss.tau=0.5,1,1.2 --workers 2\n"
            "  lossatlas bench sweep lt --method logit_adjustment --param loss.tau=0.25,0.5,1,1.5,2\n"
            "  lossatlas bench sweep lt --method focal --param 'loss.gamma=uniform(0,5)' --param 'optimizer.lr=loguniform(0.01,0.3)' --trials 12\n"
            "PATH is a dotted path into the recipe (loss.gamma, loss.tau, optimizer.lr, weighting.beta, epochs); values are JSON\n"
            "(numbers, true/false, null; bare words are strings). Ranges uniform(a,b), loguniform(a,b), int(a,b) need --trials."
        ),
    )
    p.add_argument("suite", metavar="SUITE|RECIPE_FILE", help="a built-in suite (see `lossatlas bench run --help`) or a suite/recipe JSON file")
    p.add_argument("--param", action="append", metavar="PATH=VALUES", help="a swept field: PATH=V1,V2,... or PATH=uniform(a,b) (repeatable; the grid is their product)")
    p.add_argument("--method", action="append", metavar="NAME", help="sweep this recipe of the suite (repeatable; default: every recipe)")
    p.add_argument("--trials", type=int, default=None, metavar="N", help="random search: N settings drawn from the --param lists / ranges instead of the full grid")
    p.add_argument("--sweep-seed", type=int, default=0, metavar="S", help="seed of the random search's draws (default 0; the same seed draws the same settings)")
    p.add_argument("--name", default=None, metavar="SUITE", help="store the sweep under this suite name (default: '<suite>-sweep')")
    p.add_argument("--summary", default=None, metavar="FILE.md", help="also write the sweep's Markdown summary (every setting, best first) here")
    _add_run_options(p)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser(
        "report",
        help="write the leaderboard, plots and HTML/Markdown report",
        description=(
            "Write report.md, report.html (one self-contained file, figures embedded as SVG) and leaderboard.csv "
            "(one row per suite and method: mean, std and 95 % t interval over seeds in percent, ties with the best by a "
            "paired t-test across seeds, ranked by balanced accuracy) from the finished runs."
        ),
    )
    p.add_argument("--db", default=_DEFAULT_DB, metavar="PATH", help=f"SQLite results database to read (default: {_DEFAULT_DB})")
    p.add_argument("--out", default=_DEFAULT_OUT, metavar="DIR", help=f"folder for the report files, created if missing (default: {_DEFAULT_OUT})")
    p.add_argument("--suite", action="append", metavar="NAME", help="only this suite (repeatable; default: every suite in the database)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("suites", help="list the built-in suites", description="List the built-in suites with their recipes.")
    p.add_argument("--recipes", dest="verbose_suites", action="store_true", help="also list each recipe and its hash")
    p.set_defaults(func=_cmd_suites)

    p = sub.add_parser(
        "failures",
        help="list, show (the traceback) and prune failed runs",
        description=(
            "List the failed runs of a results database (suite, method, seed, recipe hash, attempts, the error's last line); "
            "--show prints the full traceback of the matching ones; --prune deletes them (a later `bench run` of their suite "
            "registers them again as pending, while a plain rerun retries failed runs anyway)."
        ),
    )
    p.add_argument("--db", default=_DEFAULT_DB, metavar="PATH", help=f"SQLite results database (default: {_DEFAULT_DB})")
    p.add_argument("--suite", metavar="NAME", help="only this suite's failed runs")
    p.add_argument("--method", metavar="NAME", help="only this method's (recipe name's) failed runs")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--show", metavar="HASH|METHOD[:SEED]", help="print the traceback of the failed runs of this recipe hash (or its first characters) or method, optionally one seed")
    action.add_argument("--prune", action="store_true", help="delete the listed failed runs (with --suite / --method: only those)")
    p.set_defaults(func=_cmd_failures)
    return bench
