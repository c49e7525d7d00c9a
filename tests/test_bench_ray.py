"""``--ray``: runs dispatched to a real local Ray cluster (started here with 2 CPUs, shut down
at the end), results written by the driver into its one SQLite store.

- the same suite through ``--ray`` and through ``--workers 2`` gives the same leaderboard:
  the same (recipe, seed) runs with the same numbers;
- a driver SIGKILLed mid-sweep loses nothing and repeats nothing: the rerun finishes the
  rest, every run stored once, the finished ones untouched;
- a failing run is recorded with its traceback, like without Ray.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import pytest

from bench_store import assert_rerun_completed_once, sigkill_after_runs_done, store_rows

ray = pytest.importorskip("ray")  # the `ray` extra (part of the `test` extra)

pytestmark = [pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals"), pytest.mark.slow]

TINY = {"data": {"name": "digits", "longtail": {"imbalance_ratio": 10}}, "model": {"name": "mlp", "hidden": [16]}, "batch_size": 64}


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
    assert not ray.is_initialized()


def _suite(path, recipes, epochs, seeds=2) -> str:
    path.write_text(json.dumps({"name": "r", "defaults": {**TINY, "epochs": epochs, "seeds": seeds}, "recipes": recipes}))
    return str(path)


def test_ray_and_workers_give_the_same_leaderboard(cluster, tmp_path, capsys):
    from lossatlas.bench.report import leaderboard
    from lossatlas.bench.store import ResultsStore
    from lossatlas.cli import main

    recipes = [{"name": "ce"}, {"name": "la", "loss": {"id": "logit_adjusted"}}, {"name": "focal", "loss": {"id": "focal", "gamma": 2.0}}]
    suite = _suite(tmp_path / "s.json", recipes, epochs=2)
    db_ray, db_local = str(tmp_path / "ray.sqlite"), str(tmp_path / "local.sqlite")
    # Ray is initialised in this process (the fixture's cluster), so `--ray local` uses that cluster
    assert main(["bench", "run", suite, "--db", db_ray, "--ray", "local", "--no-progress"]) == 0
    assert "6/6 runs done (6 now" in capsys.readouterr().out
    assert ray.is_initialized()  # the runner leaves a session it did not start alone
    assert main(["bench", "run", suite, "--db", db_local, "--workers", "2", "--no-progress"]) == 0
    with ResultsStore(db_ray) as a, ResultsStore(db_local) as b:
        on_ray, local = a.results(), b.results()
    assert len(on_ray) == len(local) == 6
    by_key = {(r["recipe_hash"], r["seed"]): r for r in local}
    for r in on_ray:
        twin = by_key[(r["recipe_hash"], r["seed"])]
        scores = {k: v for k, v in r["metrics"].items() if not k.endswith("_time_s")}
        assert scores == {k: v for k, v in twin["metrics"].items() if not k.endswith("_time_s")}  # the same numbers, exactly
        assert r["per_class_accuracy"] == twin["per_class_accuracy"] and r["owner"].split(":")[1] == str(os.getpid())
        assert r["hardware"]["torch_threads"] == twin["hardware"]["torch_threads"] == 1  # measured in the Ray worker
    # timings differ; NaN (an undefined interval or p-value) is compared as NaN
    keep = lambda board: [{k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in e.items() if "_time_s" not in k} for e in board]
    assert keep(leaderboard(on_ray)) == keep(leaderboard(local))


def test_ray_records_a_failing_run_with_its_traceback(cluster, tmp_path):
    from lossatlas.bench.runner import run_suite

    suite = _suite(tmp_path / "f.json", [{"name": "bad", "optimizer": {"name": "sgd", "lr": 1e30}}, {"name": "ok"}], epochs=1, seeds=1)
    summary = run_suite(suite, tmp_path / "r.sqlite", ray="auto", progress=False)
    assert (summary.done, summary.failed) == (1, 1)
    [bad] = [r for r in store_rows(str(tmp_path / "r.sqlite")) if r["status"] == "failed"]
    assert "Traceback" in bad["error"] and "FloatingPointError" in bad["error"] and "non-finite" in bad["error"]


def test_sigkilled_ray_driver_mid_sweep_loses_and_repeats_nothing(cluster, tmp_path):
    suite = _suite(tmp_path / "s.json", [{"name": "ce"}], epochs=30, seeds=1)
    db = str(tmp_path / "r.sqlite")
    argv = [sys.executable, "-m", "lossatlas", "bench", "sweep", suite, "--param", "optimizer.lr=0.02,0.04,0.06,0.08,0.12",
            "--db", db, "--ray", cluster, "--no-progress"]
    n = 6  # 5 settings and the default
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    before = sigkill_after_runs_done(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env), db, n)
    rerun = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=300)
    assert_rerun_completed_once(rerun.stdout.decode(), rerun.returncode, db, n, before)
