#!/usr/bin/env bash
# Mutation testing (mutmut 3) of src/lossatlas/functional/ and the one core (src/lossatlas/_spec.py).
# Kept out of CI: a complete run is hours on a 2-core machine. See CONTRIBUTING.md, "Mutation testing".
#
#   benchmarks/mutation/run.sh [--commit REV] [--dir DIR] [--per-file N] [--seed S] [--children K]
#
# 1. a throwaway git worktree of REV (default HEAD) in DIR (default /tmp/lossatlas-mutation), so
#    mutmut's copy never touches this checkout; this checkout's setup.cfg ([mutmut])
#    is copied in;
# 2. benchmarks/mutation/undecorate.py rewrites `@loss_function(...) def f` as `f = loss_function(...)(f)`
#    there (mutmut 3 skips decorated functions: without this the public losses' bodies are never mutated);
# 3. a first `mutmut run` of one mutant generates every mutant and maps tests to functions;
# 4. benchmarks/mutation/sample.py draws N mutants per file (random.Random(S), default 26; N = 0: all of them) and caps
#    the tests per function; `mutmut run` runs them (niced, K workers);
# 5. benchmarks/mutation/report.py saves the results in benchmarks/mutation/seed<S>/ and prints the report (markdown).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
commit=HEAD dir=/tmp/lossatlas-mutation per_file=40 seed=26 children=2
while [ $# -gt 0 ]; do
  case $1 in
    --commit) commit=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --per-file) per_file=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --children) children=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
py=$root/.venv/bin/python
mutmut=$root/.venv/bin/mutmut
[ -x "$mutmut" ] || { echo "mutmut is not installed: $root/.venv/bin/pip install 'mutmut==3.8.1'" >&2; exit 1; }
if [ ! -d "$dir" ]; then
  git -C "$root" worktree add --detach "$dir" "$commit"
  cp "$root/setup.cfg" "$dir/setup.cfg"
  (cd "$dir" && "$py" "$root/benchmarks/mutation/undecorate.py" src/lossatlas/_spec.py src/lossatlas/functional/[!_]*.py \
     src/lossatlas/functional/_common.py src/lossatlas/functional/_fused.py)
fi
cd "$dir"
export OMP_NUM_THREADS=1 LOSSATLAS_PARITY_DIR=${LOSSATLAS_PARITY_DIR:-$root/../shared/parity}
[ -f mutants/mutmut-stats.json ] || nice -n 10 "$mutmut" run --max-children 1 'lossatlas._spec.x_fresh__mutmut_1'
mapfile -t names < <("$py" "$root/benchmarks/mutation/sample.py" --per-file "$per_file" --seed "$seed")
nice -n 10 "$mutmut" run --max-children "$children" "${names[@]}"
# saves the run's results in benchmarks/mutation/seed$seed/results.json and prints the report (markdown)
cd "$root"
"$py" benchmarks/mutation/report.py --run-dir "benchmarks/mutation/seed$seed" --mutants "$dir/mutants" --save
