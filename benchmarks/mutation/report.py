"""Write ``benchmarks/results/mutation.md`` from a mutmut run: the score with its interval, per file, and every survivor.

Each run has a folder ``benchmarks/mutation/seed<S>/`` (S: the seed of its sample) holding

* ``results.json``: what the run measured, saved from the mutation worktree with ``--save``
  (the commit mutated, mutmut's version, the seed, each file's number of mutants, the sampled
  mutants' exit codes, and the diff of each that survived), so the report can be written again
  without the throwaway worktree;
* ``equivalent.json``: survivors that cannot change behaviour, with the reason (they leave the
  denominator of the score);
* ``killed_since.json``: survivors killed afterwards, by the test named. A value starting with
  ``existing test`` is a test of the run's suite that the per-function cap left out and that
  fails on the mutant when it is re-run uncapped: that counts for the suite of the run. Any
  other test was written after the run (checked by running it under its mutant) and counts only
  in "score now";
* ``surviving.json``: why a survivor that is neither is left;
* ``notes.md`` (optional): what the survivors had in common, inserted as written.

Usage, from the repository root::

    # after benchmarks/mutation/run.sh: save what the run measured
    python benchmarks/mutation/report.py --run-dir benchmarks/mutation/seed27 --mutants /tmp/lossatlas-mutation-27/mutants --save
    # write the report (from the saved results; the previous run's summary from its folder)
    python benchmarks/mutation/report.py --run-dir benchmarks/mutation/seed27 --previous benchmarks/mutation/seed26 \\
        > benchmarks/results/mutation.md

A timeout counts as killed (the tests noticed). Intervals are 95 %: Wilson's for the plain ratio
over the sample, and for the estimate over every mutant a ratio estimator stratified by file
(each file's sample weighed by its number of mutants) with its linearised variance.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import math
import subprocess
from pathlib import Path
from typing import Any

KILLED = {1, 3, -24, 24, 152, 255, 36}  # failed test, pytest internal error, CPU / wall timeouts
SURVIVED = {0}
NO_TESTS = {5, 33}
Z = 1.959963984540054  # two-sided 95 %


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


def save(mutants: Path, run_dir: Path) -> None:
    """Collect the run's results from the mutation worktree into ``run_dir/results.json``."""
    from importlib.metadata import version

    sample = json.loads((mutants / "sample.json").read_text())
    commit = subprocess.run(["git", "-C", str(mutants.parent), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    files: dict[str, Any] = {}
    diffs: dict[str, list[str]] = {}
    for f, info in sample["files"].items():
        codes = json.loads((mutants / "src" / "lossatlas" / (f + ".meta")).read_text())["exit_code_by_key"]
        got = {n: codes.get(n) for n in info["sample"]}
        files[f] = {"total": info["total"], "exit_code": got}
        alive = {n for n, c in got.items() if c in SURVIVED or c in NO_TESTS}
        diffs.update(mutant_diffs(mutants / "src" / "lossatlas" / f, alive))
    out = {"commit": commit, "mutmut": version("mutmut"), "seed": sample["seed"], "per_file": sample["per_file"],
           "files": files, "diffs": dict(sorted(diffs.items()))}
    (run_dir / "results.json").write_text(json.dumps(out, indent=1) + "\n")


def _load(path: Path) -> dict[str, str]:
    return json.loads(path.read_text()) if path.exists() else {}


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return centre - half, centre + half


def stratified(strata: list[tuple[int, list[tuple[int, int]]]]) -> tuple[float, float, float]:
    """Ratio estimate of killed / non-equivalent over every mutant, and its 95 % interval.

    ``strata``: per file, (its number of mutants N_h, [(killed, non-equivalent) per sampled mutant]).
    """
    y = sum(n_pop * sum(k for k, _ in s) / len(s) for n_pop, s in strata if s)
    x = sum(n_pop * sum(m for _, m in s) / len(s) for n_pop, s in strata if s)
    r = y / x
    var = 0.0
    for n_pop, s in strata:
        n = len(s)
        if n < 2:
            continue
        d = [k - r * m for k, m in s]
        mean = sum(d) / n
        s2 = sum((v - mean) ** 2 for v in d) / (n - 1)
        var += n_pop * n_pop * (1 - n / n_pop) * s2 / n
    half = Z * math.sqrt(var) / x
    return r, r - half, min(r + half, 1.0)


class Run:
    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.res = json.loads((run_dir / "results.json").read_text())
        self.equivalent = _load(run_dir / "equivalent.json")
        self.since = _load(run_dir / "killed_since.json")
        self.notes = _load(run_dir / "surviving.json")
        self.rows: list[tuple[Any, ...]] = []
        self.status: dict[str, str] = {}
        strata_run: list[tuple[int, list[tuple[int, int]]]] = []
        strata_now: list[tuple[int, list[tuple[int, int]]]] = []
        for f, info in self.res["files"].items():
            codes: dict[str, int | None] = info["exit_code"]
            ran = [n for n, c in codes.items() if c is not None]
            per_run, per_now = [], []
            counts = dict.fromkeys(("killed", "capped", "later", "equivalent", "left"), 0)
            for n in ran:
                c = codes[n]
                if c in KILLED:
                    st = "killed"
                elif c in SURVIVED or c in NO_TESTS:
                    if n in self.equivalent:
                        st = "equivalent"
                    elif self.since.get(n, "").startswith("existing test "):
                        st = "capped"
                    elif n in self.since:
                        st = "later"
                    else:
                        st = "left"
                else:
                    raise SystemExit(f"{n}: exit code {c} is neither killed nor survived; add it to report.py's sets")
                counts[st] += 1
                if st != "killed":
                    self.status[n] = st
                m = int(st != "equivalent")
                per_run.append((int(st in ("killed", "capped")), m))
                per_now.append((int(st in ("killed", "capped", "later")), m))
            strata_run.append((info["total"], per_run))
            strata_now.append((info["total"], per_now))
            killed_run = counts["killed"] + counts["capped"]
            denom = len(ran) - counts["equivalent"]
            self.rows.append((f, info["total"], len(codes), killed_run, counts["later"], counts["equivalent"], counts["left"],
                              len(codes) - len(ran), killed_run / denom if denom else float("nan"),
                              (killed_run + counts["later"]) / denom if denom else float("nan")))
        cols = list(zip(*self.rows))
        self.total, self.sampled, self.killed, self.later, self.eq, self.left, self.not_run = (sum(c) for c in cols[1:8])
        self.denom = self.sampled - self.not_run - self.eq
        self.score = self.killed / self.denom
        self.score_now = (self.killed + self.later) / self.denom
        self.ci = wilson(self.killed, self.denom)
        self.strat = stratified(strata_run)
        self.strat_now = stratified(strata_now)[0]

    def table(self) -> list[str]:
        out = ["| file | mutants | sampled | killed by the suite of the run | killed by tests added since | equivalent "
               "| surviving | not run | score of the run's suite | score now |",
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for f, total, n, killed, later, eq, left, not_run, before, now in self.rows:
            out.append(f"| `{f}` | {total} | {n} | {killed} | {later} | {eq} | {left} | {not_run} | {pct(before)} "
                       f"| {pct(now)} |")
        out.append(f"| **all** | {self.total} | {self.sampled} | {self.killed} | {self.later} | {self.eq} | {self.left} "
                   f"| {self.not_run} | **{100 * self.score:.1f} %** | {100 * self.score_now:.1f} % |")
        return out


def pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{100 * x:.1f} %"


def report(run: Run, previous: Run | None) -> list[str]:
    r = run.res
    commit = r["commit"][:7]
    files = ", ".join(f"`{f}`" for f in r["files"])
    lo, hi = run.ci
    s, slo, shi = run.strat
    # both estimates at or above 90 %: yes; both below: no; one on each side: on the line (say which)
    verdict = ("**yes**" if run.score >= 0.9 and s >= 0.9 else "**no**" if run.score < 0.9 and s < 0.9
               else "**on the line**")
    out = [
        "# Mutation testing: `src/lossatlas/functional/` and the one core (`_spec.py`)",
        "",
        f"Written by `benchmarks/mutation/report.py` from `{run.dir.as_posix()}/` (the run's results and the",
        "classification of its survivors); do not edit by hand. See CONTRIBUTING.md, \"Mutation testing\". Not run in CI.",
        "",
        f"## Latest run: seed {r['seed']}, commit `{commit}`",
        "",
        f"- **Tool**: mutmut {r['mutmut']} (`setup.cfg [mutmut]`), driven by `benchmarks/mutation/run.sh`.",
        f"- **Code mutated**: commit `{commit}`: {files}. mutmut 3 skips decorated functions, so the",
        "  run's throwaway worktree first rewrote every decorated function (`@loss_function(...)`, `@property`, ...)",
        "  as `f = decorator(f)` (`benchmarks/mutation/undecorate.py`): the public losses' bodies and default values",
        "  are mutated too.",
        f"- **Mutants**: {run.total} in all; **a random sample of {r['per_file']} per file**, drawn with "
        f"`random.Random({r['seed']})` over the sorted mutant names, files in the order of the table "
        f"(`sample.py --per-file {r['per_file']} --seed {r['seed']}`): {run.sampled} mutants, "
        f"{run.sampled - run.not_run} of them run. The seed was chosen before the run and the sample was not redrawn.",
        "- **Tests per mutant**: the tests that called the mutated function (mutmut's coverage map), from the fast",
        "  files listed in `setup.cfg` (no benchmark, gloo, integration, docs-site, subprocess or `torch.compile`",
        "  tests), capped per function at 40 tests / ~12 s of recorded test time. A mutant that survived the",
        "  capped tests is re-run on all the tests that reach its function (`sample.py --uncap`), and on the suite's",
        "  tests that mutmut leaves out (distributed, torch.compile) where they reach it; a test of the suite at the",
        "  run that then fails counts as killed by the suite of the run (the test is listed below; the notes say",
        "  which survivors were not re-run).",
        "- **Score** = killed / (run − equivalent); a timeout counts as killed. \"Score of the run's suite\" is the",
        f"  suite as it was at `{commit}`; \"score now\" adds the tests written since for this run's survivors (each",
        "  checked by running it under its mutant).",
        "",
        f"Reproduce: `benchmarks/mutation/run.sh --commit {commit} --per-file {r['per_file']} --seed {r['seed']} "
        f"--dir /tmp/lossatlas-mutation-{r['seed']}`.",
        "",
        "## Score",
        "",
        *([f"**Incomplete run: {run.sampled - run.not_run} of the {run.sampled} sampled mutants have a result; "
           f"{run.not_run} were not run.** mutmut runs the mutants with the smallest estimated test time first, so "
           "those with a result are not a random subset of the sample, and no estimate over all mutants is made: "
           "the numbers below describe the mutants that were run, and their intervals assume a random subset.",
           ""] if run.not_run else []),
        f"**Score of the suite at `{commit}`, before any test written for this run: {run.killed} of {run.denom} "
        f"non-equivalent sampled mutants killed, {pct(run.score)} (95 % Wilson interval {pct(lo)}–{pct(hi)}).** "
        + ("" if run.not_run else
        f"The sample has the same size in every file, so this plain ratio weighs a small file's mutants more than a "
        f"large one's; weighing each file's sample by its number of mutants, the estimate over all {run.total} "
        f"mutants is {pct(s)} (95 % interval {pct(slo)}–{pct(shi)})."),
        "",
        (f"Is the score of the run's suite (before new tests) at least 90 %? **not shown by this run**: on the "
         f"{run.denom} non-equivalent mutants that were run it is {pct(run.score)}"
         + (" (below 90 %)." if run.score < 0.9 else ".") if run.not_run else
        f"Is the score of the run's suite (before new tests) at least 90 %? {verdict}: the sample's ratio is "
        f"{100 * run.score:.2f} % and the estimate over all mutants {100 * s:.2f} %"
        + ("; the two estimates fall on either side of 90 %, and both 95 % intervals contain it: this sample "
           "cannot tell whether the score over every mutant is above or below 90 %." if verdict == "**on the line**" else
           "; the lower ends of the 95 % intervals are below 90 %, so this sample cannot rule out a score under "
           "90 % over every mutant." if verdict == "**yes**" and min(lo, slo) < 0.9 else
           "; the upper ends of the 95 % intervals are above 90 %, so this sample cannot rule out a score of 90 % "
           "or more either." if verdict == "**no**" and max(hi, shi) >= 0.9 else ".")),
        "",
        f"Score now (the same sample, with the tests written since for its survivors): {pct(run.score_now)} "
        f"({run.killed + run.later} of {run.denom}); {run.left} left surviving. This is not an unbiased estimate for "
        "the mutants outside the sample: the new tests were written for the sampled survivors.",
        "",
        *run.table(),
        "",
    ]
    notes = run.dir / "notes.md"
    if notes.exists():
        out += [notes.read_text().strip(), ""]
    titles = {"left": "Surviving mutants (why they are left)",
              "later": "Survivors killed by tests added since (the test)",
              "capped": "Killed by an existing test left out of mutmut's run: the per-function cap, the test selection or "
                        "its coverage map (the test)",
              "equivalent": "Equivalent mutants (the reason)"}
    for st, title in titles.items():
        chosen = sorted(n for n, s2 in run.status.items() if s2 == st)
        out += [f"### {title}: {len(chosen)}", ""]
        for name in chosen:
            reason = run.equivalent.get(name) or run.since.get(name) or run.notes.get(name, "")
            out.append(f"- `{name}`" + (f": {reason}" if reason else ""))
            out.append("  ```diff")
            out += ["  " + line.strip()[:160] for line in r["diffs"].get(name, ["(no diff saved)"])]
            out.append("  ```")
        out.append("")
    if previous is not None:
        p = previous.res
        plo, phi = previous.ci
        ps, pslo, pshi = previous.strat
        new = [f"`{f}`" for f in r["files"] if f not in p["files"]]
        missing = f"; {', '.join(new)} not in it" if new else ""
        out += [
            f"## Previous run: seed {p['seed']}, commit `{p['commit'][:7]}`",
            "",
            f"mutmut {p['mutmut']}, {p['per_file']} mutants per file (`random.Random({p['seed']})`) from "
            f"{len(p['files'])} files ({previous.total} mutants{missing}): {previous.sampled} sampled. The suite at `{p['commit'][:7]}` killed {previous.killed} "
            f"of {previous.denom} non-equivalent mutants, **{pct(previous.score)}** (95 % Wilson interval "
            f"{pct(plo)}–{pct(phi)}; weighed by file, {pct(ps)}, {pct(pslo)}–{pct(pshi)}); {previous.eq} equivalent; "
            f"each of its {previous.later} other survivors was killed by a test written afterwards (score now on that "
            f"sample {pct(previous.score_now)}). Its survivors, their tests and reasons: "
            f"`{previous.dir.as_posix()}/`.",
            "",
        ]
    while out and out[-1] == "":
        out.pop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--mutants", type=Path, default=Path("mutants"))
    ap.add_argument("--save", action="store_true", help="first save the run's results from --mutants into the run folder")
    ap.add_argument("--previous", type=Path, default=None, help="a previous run's folder, summarised at the end")
    args = ap.parse_args()
    if args.save:
        args.run_dir.mkdir(parents=True, exist_ok=True)
        save(args.mutants, args.run_dir)
    run = Run(args.run_dir)
    previous = Run(args.previous) if args.previous else None
    print("\n".join(report(run, previous)))


if __name__ == "__main__":
    main()
