"""Draw a fixed-seed random sample of mutants per file, and cap the tests each mutant runs.

Run from the mutation worktree (see ``benchmarks/mutation/run.sh``) after a first ``mutmut
run`` has generated the mutants and collected ``mutants/mutmut-stats.json``.

* Sample: ``--per-file N`` mutants drawn from each mutated file with ``random.Random(seed)``
  (files in a fixed order: ``_spec.py``, then ``functional/`` by name; ``--files`` restricts
  them; mutant names sorted), written to ``mutants/sample.json``; ``N = 0`` takes
  every mutant. Prints the names to pass to ``mutmut run``.
* Cap: mutmut runs, for a mutant, every test that called its function; for the helpers that
  every loss calls (``reduce_loss``, ``FunctionSpec.check``) that is ~2,000 tests, and a
  surviving mutant there would take many minutes. ``--cap K`` keeps, per function, at most K
  tests and about ``--cap-seconds`` of recorded test time, taken round-robin over the test
  files that call it (the fastest first in each). A mutant that survives the capped tests is
  re-run on every test (``--uncap NAME...`` restores the full list) before it is reported.
  The full lists are kept in ``mutants/mutmut-stats.full.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import shutil
from pathlib import Path


def mutated_files(mutants: Path) -> list[str]:
    """Every file mutmut mutated: ``_spec.py`` first, then ``functional/*.py`` sorted by name."""
    root = mutants / "src" / "lossatlas"
    found = sorted(str(p.relative_to(root))[: -len(".meta")] for p in root.rglob("*.py.meta"))
    return sorted(found, key=lambda f: (f != "_spec.py", f))


def draw(mutants: Path, per_file: int, seed: int, files: list[str]) -> dict[str, dict[str, object]]:
    rng = random.Random(seed)
    out: dict[str, dict[str, object]] = {}
    for f in files:
        meta = mutants / "src" / "lossatlas" / (f + ".meta")
        if not meta.exists():
            continue
        names = sorted(json.loads(meta.read_text())["exit_code_by_key"])
        chosen = names if per_file == 0 else sorted(rng.sample(names, min(per_file, len(names))))
        out[f] = {"total": len(names), "sample": chosen}
    return out


def cap(mutants: Path, k: int, seconds: float, uncap: list[str]) -> None:
    stats_path = mutants / "mutmut-stats.json"
    full_path = mutants / "mutmut-stats.full.json"
    if not full_path.exists():
        shutil.copy(stats_path, full_path)
    full = json.loads(full_path.read_text())
    stats = json.loads(stats_path.read_text())
    duration = full["duration_by_test"]
    capped: dict[str, list[str]] = {}
    for fn, tests in full["tests_by_mangled_function_name"].items():
        if any(name.startswith(fn + "__mutmut_") for name in uncap):
            capped[fn] = list(tests)
            continue
        by_file: dict[str, list[str]] = collections.defaultdict(list)
        for t in tests:
            by_file[t.split("::")[0]].append(t)
        queues = [sorted(v, key=lambda t: duration.get(t, 0.0)) for v in by_file.values()]
        queues.sort(key=len, reverse=True)
        pick: list[str] = []
        total = 0.0
        while queues and len(pick) < k and total < seconds:
            rest = []
            for q in queues:
                if len(pick) >= k or total >= seconds:
                    break
                t = q.pop(0)
                pick.append(t)
                total += duration.get(t, 0.0)
                if q:
                    rest.append(q)
            queues = rest
        capped[fn] = pick
    # tests collected after the full stats run (new tests) keep their mapping
    for fn, tests in stats["tests_by_mangled_function_name"].items():
        extra = [t for t in tests if t not in full["tests_by_mangled_function_name"].get(fn, [])]
        capped.setdefault(fn, []).extend(t for t in extra if t not in capped[fn])
    stats["tests_by_mangled_function_name"] = capped
    stats_path.write_text(json.dumps(stats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mutants", type=Path, default=Path("mutants"))
    ap.add_argument("--per-file", type=int, default=40)
    ap.add_argument("--seed", type=int, default=26)
    ap.add_argument("--cap", type=int, default=40)
    ap.add_argument("--cap-seconds", type=float, default=12.0)
    ap.add_argument("--uncap", nargs="*", default=[])
    ap.add_argument("--files", nargs="*", default=None,
                    help="files to draw from, relative to src/lossatlas (default: every mutated file, _spec.py first)")
    args = ap.parse_args()
    if args.uncap and (args.mutants / "sample.json").exists():
        # re-running survivors: keep the drawn sample, only widen their test lists
        cap(args.mutants, args.cap, args.cap_seconds, args.uncap)
        print("\n".join(args.uncap))
        return
    files = args.files if args.files is not None else mutated_files(args.mutants)
    sample = draw(args.mutants, args.per_file, args.seed, files)
    (args.mutants / "sample.json").write_text(json.dumps({"seed": args.seed, "per_file": args.per_file, "files": sample}, indent=1))
    if args.cap > 0:
        cap(args.mutants, args.cap, args.cap_seconds, args.uncap)
    print("\n".join(n for v in sample.values() for n in v["sample"]))  # type: ignore[union-attr]


if __name__ == "__main__":
    main()
