#!/usr/bin/env bash
# Run tests under one mutant (or unmutated), to check that a test kills a survivor.
#
#   benchmarks/mutation/under.sh [--dir DIR] NAME|none PYTEST_ARGS...
#
# DIR is the run's mutation worktree (default /tmp/lossatlas-mutation); NAME a mutant
# (lossatlas.functional.noise.x_gce__mutmut_12) or `none` for the unmutated code. This checkout's
# tests/ is copied over DIR/mutants/tests first, so a test written since the run is the one run.
# Exit status: pytest's (non-zero under a mutant = the mutant is killed).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=/tmp/lossatlas-mutation
if [ "${1:-}" = --dir ]; then dir=$2; shift 2; fi
name=$1; shift
[ -d "$dir/mutants/src" ] || { echo "no mutants in $dir: run benchmarks/mutation/run.sh first" >&2; exit 2; }
cp -r "$root/tests/." "$dir/mutants/tests/"
cd "$dir/mutants"
[ "$name" = none ] && name=""
export MUTANT_UNDER_TEST=$name PYTHONPATH=$PWD/src PY_IGNORE_IMPORTMISMATCH=1 OMP_NUM_THREADS=1
export LOSSATLAS_PARITY_DIR=${LOSSATLAS_PARITY_DIR:-$root/../shared/parity}
exec nice -n 10 "$root/.venv/bin/python" -m pytest -p no:cacheprovider -q "$@"
