"""Crash safety of ``lossatlas bench run``: a SIGKILLed suite resumes with every run recorded
exactly once, and two runners on one database split the work without overlap."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from bench_store import assert_rerun_completed_once, sigkill_after_runs_done, store_rows

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


def _suite(path, n, epochs):
    recipes = [{"name": f"r{i}", "optimizer": {"name": "sgd", "lr": 0.05 + 0.01 * i}} for i in range(n)]
    path.write_text(json.dumps({"name": "crash", "defaults": {"data": {"name": "digits"}, "model": {"name": "mlp", "hidden": [32]},
                                                             "epochs": epochs, "batch_size": 32}, "recipes": recipes}))
    return str(path)


def _runner(suite, db):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "lossatlas", "bench", "run", suite, "--db", db, "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


def test_sigkill_mid_suite_then_rerun_records_every_run_once(tmp_path):
    n = 10
    suite, db = _suite(tmp_path / "s.json", n, epochs=15), str(tmp_path / "r.sqlite")
    before = sigkill_after_runs_done(_runner(suite, db), db, n)
    rerun = _runner(suite, db)
    assert_rerun_completed_once(rerun.communicate(timeout=600)[0].decode(), rerun.returncode, db, n, before)


def test_two_runners_on_one_database_do_not_collide(tmp_path):
    n = 8
    suite, db = _suite(tmp_path / "s.json", n, epochs=3), str(tmp_path / "r.sqlite")
    procs = [_runner(suite, db), _runner(suite, db)]
    outs = [p.communicate(timeout=600)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    rows = store_rows(db)
    assert len(rows) == n and all(r["status"] == "done" for r in rows)
    assert all(r["attempts"] == 1 for r in rows), "a run was claimed twice"
    ran = [int(re.search(r"suite crash: \d+/\d+ runs done \((\d+) now", o).group(1)) for o in outs]
    assert sum(ran) == n  # the two runners' work adds up to the suite, without overlap


def test_workers_split_one_suite_in_spawned_processes(tmp_path):
    # --workers 2: the second worker is a spawned interpreter running the same CLI (no
    # subprocess in the library); every run is recorded once, done.
    from lossatlas.bench.runner import run_suite

    suite, db = _suite(tmp_path / "w.json", 4, epochs=2), str(tmp_path / "w.sqlite")
    summary = run_suite(suite, db, workers=2, progress=False)
    rows = store_rows(db)
    assert summary.done == summary.total == 4 == len(rows)
    assert all(r["status"] == "done" and r["attempts"] == 1 for r in rows)
