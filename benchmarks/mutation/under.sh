#!/usr/bin/env bash
# Run tests under one mutant (or unmutated), to check that a test kills a survivor.
#
#   benchmarks/mutation/under.sh [--dir DIR] [--run-tests] NAME|none TEST_ID... [PYTEST_ARGS...]
#
# DIR is the run's mutation worktree (default /tmp/lossatlas-mutation); NAME a mutant
# (lossatlas.functional.noise.x_gce__mutmut_12) or `none` for the unmutated code; TEST_IDs are
# written as from the repository root (tests/losses/test_noise.py::test_x). This checkout's
# tests/ is copied to DIR/mutants/tests_now/ and run from there, so a test written since the
# run is the one run (the run's own DIR/mutants/tests/ is left alone); with --run-tests the
# run's tests are run instead (to re-run a survivor on all of them: the ids are in
# DIR/mutants/mutmut-stats.full.json). No timeout. Exit status: pytest's (non-zero under a
# mutant: the mutant is killed).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=/tmp/lossatlas-mutation
copy=1
while :; do
  case ${1:-} in
    --dir) dir=$2; shift 2 ;;
    --run-tests) copy=0; shift ;;
    *) break ;;
  esac
done
name=$1; shift
[ -d "$dir/mutants/src" ] || { echo "no mutants in $dir: run benchmarks/mutation/run.sh first" >&2; exit 2; }
cd "$dir/mutants"
args=("$@")
if [ $copy = 1 ]; then
  rm -rf tests_now && cp -r "$root/tests" tests_now
  args=("${args[@]/#tests\//tests_now/}")
fi
[ "$name" = none ] && name=""
export MUTANT_UNDER_TEST=$name PYTHONPATH=$PWD/src PY_IGNORE_IMPORTMISMATCH=1 OMP_NUM_THREADS=1
export LOSSATLAS_PARITY_DIR=${LOSSATLAS_PARITY_DIR:-$root/../shared/parity}
exec nice -n 10 "$root/.venv/bin/python" -m pytest --rootdir=. -p no:cacheprovider -p no:randomly -q "${args[@]}"
