"""Summarise a mutmut run as markdown: per-file counts and every surviving mutant's diff.

Run from the mutation worktree after ``mutmut run`` (see ``benchmarks/mutation/run.sh``):
``python benchmarks/mutation/report.py --equivalent benchmarks/mutation/equivalent.json``.
Reads ``mutants/sample.json`` (which mutants were run) and mutmut's ``.meta`` files (their
results). ``equivalent.json`` maps a mutant name to the reason it cannot change behaviour;
those leave the denominator of the score. ``killed_since.json`` maps a mutant that survived
the run to the test added afterwards that fails on it (checked by running that test under the
mutant); it counts as killed. A timeout counts as killed (the tests noticed).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
from pathlib import Path

KILLED = {1, 3, -24, 24, 152, 255, 36}  # failed test, pytest internal error, CPU / wall timeouts
SURVIVED = {0}
NO_TESTS = {5, 33}


def mutant_diffs(path: Path, names: set[str]) -> dict[str, list[str]]:
    src = path.read_text()
    tree = ast.parse(src)
    funcs: dict[str, ast.FunctionDef] = {}

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef):
                funcs[node.name] = node
            elif isinstance(node, ast.ClassDef):
                visit(node.body)

    visit(tree.body)
    out: dict[str, list[str]] = {}
    for full in names:
        short = full.rsplit(".", 1)[1]
        base = short.rsplit("__mutmut_", 1)[0]
        if short not in funcs or base + "__mutmut_orig" not in funcs:
            out[full] = ["(source not found)"]
            continue
        a = (ast.get_source_segment(src, funcs[base + "__mutmut_orig"]) or "").splitlines()
        b = (ast.get_source_segment(src, funcs[short]) or "").replace(short, base + "__mutmut_orig", 1).splitlines()
        out[full] = [line for line in difflib.unified_diff(a, b, lineterm="", n=0)
                     if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mutants", type=Path, default=Path("mutants"))
    ap.add_argument("--equivalent", type=Path, required=True)
    ap.add_argument("--killed-since", type=Path, default=None)
    args = ap.parse_args()
    sample = json.loads((args.mutants / "sample.json").read_text())
    equivalent: dict[str, str] = json.loads(args.equivalent.read_text()) if args.equivalent.exists() else {}
    since_path = args.killed_since or args.equivalent.with_name("killed_since.json")
    since: dict[str, str] = json.loads(since_path.read_text()) if since_path.exists() else {}
    notes_path = args.equivalent.with_name("surviving.json")  # why a survivor is left (not equivalent)
    notes: dict[str, str] = json.loads(notes_path.read_text()) if notes_path.exists() else {}
    rows = []
    survivors: list[tuple[str, str, list[str]]] = []
    totals = [0] * 7
    for f, info in sample["files"].items():
        meta_path = args.mutants / "src" / "lossatlas" / (f + ".meta")
        codes = json.loads(meta_path.read_text())["exit_code_by_key"]
        names = info["sample"]
        killed = sum(codes.get(n) in KILLED for n in names)
        alive = [n for n in names if codes.get(n) in SURVIVED or codes.get(n) in NO_TESTS]
        unchecked = sum(codes.get(n) is None for n in names)
        eq = [n for n in alive if n in equivalent]
        capped = [n for n in alive if since.get(n, "").startswith("existing test ") and n not in equivalent]
        later = [n for n in alive if n in since and n not in equivalent and n not in capped]
        left = [n for n in alive if n not in equivalent and n not in since]
        denom = len(names) - unchecked - len(eq)
        killed += len(capped)  # killed by the suite of the run, once re-run on all the tests that reach the function
        score = 100.0 * (killed + len(later)) / denom if denom else float("nan")
        before = 100.0 * killed / denom if denom else float("nan")
        row = [info["total"], len(names), killed, len(later), len(eq), len(left), unchecked]
        rows.append((f, *row, before, score))
        totals = [t + r for t, r in zip(totals, row)]
        diffs = mutant_diffs(args.mutants / "src" / "lossatlas" / f, set(alive))
        for n in alive:
            status = ("equivalent" if n in equivalent else "uncapped" if n in capped else "killed since" if n in since
                      else "survived")
            survivors.append((n, status, equivalent.get(n) or since.get(n) or notes.get(n, ""), diffs.get(n, [])))
    print("| file | mutants | sampled | killed by the suite of the run | killed by tests added since | equivalent | surviving "
          "| not run | score of the run's suite | score now |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for f, total, n, killed, later, eq, left, unchecked, before, score in rows:
        print(f"| `{f}` | {total} | {n} | {killed} | {later} | {eq} | {left} | {unchecked} | {before:.1f} % | {score:.1f} % |")
    total, n, killed, later, eq, left, unchecked = totals
    denom = n - unchecked - eq
    print(f"| **all** | {total} | {n} | {killed} | {later} | {eq} | {left} | {unchecked} | {100.0 * killed / denom:.1f} % "
          f"| **{100.0 * (killed + later) / denom:.1f} %** |")
    print()
    print("Score: killed / (sampled − not run − equivalent).")
    print()
    for status in ("survived", "killed since", "uncapped", "equivalent"):
        chosen = [s for s in survivors if s[1] == status]
        title = {"survived": "Surviving mutants (why they are left)", "killed since": "Survivors killed by tests added since (the test)",
                 "uncapped": "Killed by an existing test once re-run without the per-function test cap",
                 "equivalent": "Equivalent mutants (the reason)"}[status]
        print(f"### {title}: {len(chosen)}")
        print()
        for name, _, reason, diff in chosen:
            print(f"- `{name}`" + (f": {reason}" if reason else ""))
            print("  ```diff")
            for line in diff:
                print("  " + line.strip()[:160] if line[:1] in "+-" else line)
            print("  ```")
        print()


if __name__ == "__main__":
    main()
