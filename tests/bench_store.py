"""Shared by the crash-safety tests of ``lossatlas bench`` (tests/test_bench_resume.py,
tests/test_bench_ray.py): reading a results store, killing a running driver once some runs are
stored, and checking that the rerun finished every run exactly once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from typing import Any

_COLUMNS = ("hash", "seed", "status", "attempts", "finished_at", "metrics", "error")


def store_rows(db: str) -> list[dict[str, Any]]:
    """Every run row of the store at ``db`` (empty before its table exists)."""
    con = sqlite3.connect(db, timeout=30)
    try:
        return [dict(zip(_COLUMNS, r))
                for r in con.execute("SELECT recipe_hash, seed, status, attempts, finished_at, metrics, error FROM runs")]
    except sqlite3.OperationalError:  # table not created yet
        return []
    finally:
        con.close()


def sigkill_after_runs_done(proc: subprocess.Popen[bytes], db: str, n: int, at_least: int = 2,
                            deadline_s: float = 300) -> dict[tuple[str, int], dict[str, Any]]:
    """SIGKILL ``proc`` once ``at_least`` runs are stored as done, and return the done rows by
    (hash, seed). The deadline is not a timing: the driver may start workers that import torch."""
    deadline = time.time() + deadline_s
    while time.time() < deadline and proc.poll() is None:
        if sum(r["status"] == "done" for r in store_rows(db)) >= at_least:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the driver finished or died before it could be killed: " + proc.stdout.read().decode()[-2000:]  # type: ignore[union-attr]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {(r["hash"], r["seed"]): r for r in store_rows(db) if r["status"] == "done"}
    assert at_least <= len(before) < n
    return before


def assert_rerun_completed_once(out: str, returncode: int, db: str, n: int,
                                before: dict[tuple[str, int], dict[str, Any]]) -> None:
    """The rerun after the kill: every run done exactly once, the ones done before the kill
    neither repeated nor lost, and the driver's summary line says so."""
    assert returncode == 0, out[-3000:]
    rows = store_rows(db)
    assert len(rows) == n and len({(r["hash"], r["seed"]) for r in rows}) == n
    assert all(r["status"] == "done" and r["metrics"] for r in rows)
    for key, r in before.items():  # finished runs were neither repeated nor lost
        now = next(x for x in rows if (x["hash"], x["seed"]) == key)
        assert now["finished_at"] == r["finished_at"] and now["attempts"] == 1
    assert f"{n}/{n} runs done ({n - len(before)} now, {len(before)} before" in out
