"""Summarise a mutmut run as markdown: per-file counts and every surviving mutant's diff.

Run from the mutation worktree after ``mutmut run`` (see ``benchmarks/mutation/run.sh``):
``python benchmarks/mutation/report.py --equivalent benchmarks/mutation/equivalent.json``.
Reads ``mutants/sample.json`` (which mutants were run) and mutmut's ``.meta`` files (their
results). ``equivalent.json`` maps a mutant name to the reason it cannot change behaviour;
those leave the denominator of the score. A timeout counts as killed (the tests noticed).
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
        a = (ast.get_source_segment(src, funcs[base + "__mutmut_orig"]) or "").splitlines()[1:]
        b = (ast.get_source_segment(src, funcs[short]) or "").splitlines()[1:]
        out[full] = [line for line in difflib.unified_diff(a, b, lineterm="", n=0)
                     if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mutants", type=Path, default=Path("mutants"))
    ap.add_argument("--equivalent", type=Path, required=True)
    args = ap.parse_args()
    sample = json.loads((args.mutants / "sample.json").read_text())
    equivalent: dict[str, str] = json.loads(args.equivalent.read_text()) if args.equivalent.exists() else {}
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
        left = [n for n in alive if n not in equivalent]
        denom = len(names) - unchecked - len(eq)
        score = 100.0 * killed / denom if denom else float("nan")
        row = [info["total"], len(names), killed, len(eq), len(left), unchecked]
        rows.append((f, *row, score))
        totals = [t + r for t, r in zip(totals, row + [0])]
        diffs = mutant_diffs(args.mutants / "src" / "lossatlas" / f, set(alive))
        for n in alive:
            survivors.append((n, equivalent.get(n, ""), diffs.get(n, [])))
    print("| file | mutants | sampled | killed | equivalent | survived | not run | killed / non-equivalent |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for f, total, n, killed, eq, left, unchecked, score in rows:
        print(f"| `{f}` | {total} | {n} | {killed} | {eq} | {left} | {unchecked} | {score:.1f} % |")
    total, n, killed, eq, left, unchecked = totals[:6]
    denom = n - unchecked - eq
    print(f"| **all** | {total} | {n} | {killed} | {eq} | {left} | {unchecked} | **{100.0 * killed / denom:.1f} %** |")
    print()
    for status in ("survived", "equivalent"):
        chosen = [s for s in survivors if (s[1] == "") == (status == "survived")]
        print(f"### {'Surviving' if status == 'survived' else 'Equivalent'} mutants ({len(chosen)})")
        print()
        for name, reason, diff in chosen:
            print(f"- `{name}`" + (f": {reason}" if reason else ""))
            print("  ```diff")
            for line in diff:
                print("  " + line.strip()[:160] if line[:1] in "+-" else line)
            print("  ```")
        print()


if __name__ == "__main__":
    main()
