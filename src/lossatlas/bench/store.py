"""The SQLite results store: one row per (recipe hash, seed).

Safe to kill at any moment and shared safely between runners:

- the database is in WAL mode and every state change is one short transaction, so a kill
  (even SIGKILL) loses at most the run in flight, never a finished one;
- a runner *claims* a run atomically (``BEGIN IMMEDIATE``: one writer at a time) by
  moving it from ``pending`` to ``running`` under its owner id; two runners never claim
  the same run;
- a ``running`` row whose owner is dead (same host and its process is gone, or no
  heartbeat for ``stale_after`` seconds) is claimed again, so a rerun resumes what a
  killed runner left; ``finish`` only writes when the caller still owns the row, so a run
  is recorded exactly once;
- ``done`` rows are never run again.

Table ``sweep_points`` (sweep, method, recipe_hash, params JSON, is_default): which recipe
of a sweep suite is which method's default and which setting (:mod:`lossatlas.bench.sweep`).

Columns of ``runs``: recipe_hash, seed, suite, method, task, recipe (JSON), status, owner, attempts,
claimed_at, heartbeat, started_at, finished_at, wall_time_s, metrics (JSON: flat numbers
incl. timings), per_class_accuracy, class_counts, reliability (JSON), extra (JSON: any
other task output), version (lossatlas), torch_version, device, error; and, added later
(:data:`ADDED_COLUMNS`, put into an older database when it is opened, its rows left as they
were with these empty): curves (JSON: per-epoch training loss and test metric), hardware
(JSON: CPU, cores, threads, GPU, platform, Python, numpy).
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ResultsStore", "RunKey", "make_owner"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    recipe_hash TEXT NOT NULL,
    seed INTEGER NOT NULL,
    suite TEXT NOT NULL,
    method TEXT NOT NULL,
    task TEXT NOT NULL,
    recipe TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    owner TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_at REAL,
    heartbeat REAL,
    started_at REAL,
    finished_at REAL,
    wall_time_s REAL,
    metrics TEXT,
    per_class_accuracy TEXT,
    class_counts TEXT,
    reliability TEXT,
    extra TEXT,
    version TEXT,
    torch_version TEXT,
    device TEXT,
    error TEXT,
    PRIMARY KEY (recipe_hash, seed)
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE INDEX IF NOT EXISTS runs_suite ON runs (suite, method);
CREATE TABLE IF NOT EXISTS sweep_points (
    sweep TEXT NOT NULL,
    method TEXT NOT NULL,
    recipe_hash TEXT NOT NULL,
    params TEXT NOT NULL,
    is_default INTEGER NOT NULL,
    PRIMARY KEY (sweep, recipe_hash)
);
"""


#: Columns added after schema version 1, as (name, SQL type): ``ALTER TABLE ... ADD COLUMN``
#: puts them into a database made before them (additive: old rows keep their values, the new
#: columns are NULL there, and an older lossatlas still reads the database).
ADDED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("curves", "TEXT"),
    ("hardware", "TEXT"),
)
#: JSON columns decoded by :meth:`ResultsStore.results`.
_JSON_COLUMNS = ("recipe", "metrics", "per_class_accuracy", "class_counts", "reliability", "extra", "curves", "hardware")


@dataclass(frozen=True)
class RunKey:
    recipe_hash: str
    seed: int


def make_owner() -> str:
    """A unique owner id ``host:pid:token`` for one runner."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_alive(owner: str | None) -> bool:
    """Whether the owner's process is alive; ``True`` when it cannot be told (other host)."""
    if not owner:
        return False
    try:
        host, pid_s, _ = owner.rsplit(":", 2)
        pid = int(pid_s)
    except ValueError:
        return True
    if host != socket.gethostname():
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _json(value: Any) -> str | None:
    if value is None:
        return None

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if hasattr(v, "tolist"):
            return clean(v.tolist())
        return v

    return json.dumps(clean(value), sort_keys=True, allow_nan=False)


class ResultsStore:
    """A results database at ``path`` (created with its parent folder if missing).

    ``stale_after``: seconds without heartbeat after which another runner may take over a
    ``running`` row whose owner cannot be checked directly (another host).
    """

    def __init__(self, path: str | os.PathLike[str], stale_after: float = 900.0, timeout: float = 120.0) -> None:
        self.path = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        self.stale_after = float(stale_after)
        self.conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # pragma: no cover - e.g. some network file systems
            raise RuntimeError(f"{self.path}: SQLite could not switch to WAL mode (got {mode}); use a local disk")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        with self._transaction():
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                self.conn.execute(stmt)
            self.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            have = {row[1] for row in self.conn.execute("PRAGMA table_info(runs)")}
            for name, sql_type in ADDED_COLUMNS:
                if name not in have:
                    self.conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {sql_type}")
        found = int(self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
        if found != SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: results schema version {found}, this lossatlas reads {SCHEMA_VERSION}; use a new --db")

    # -- plumbing -----------------------------------------------------------------------
    class _Txn:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __enter__(self) -> sqlite3.Connection:
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")

    def _transaction(self) -> ResultsStore._Txn:
        return ResultsStore._Txn(self.conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------------
    def add_runs(self, runs: Iterable[tuple[str, int, str, str, str, dict[str, Any]]]) -> int:
        """Register ``(recipe_hash, seed, suite, method, task, recipe)`` runs as ``pending``;
        existing rows (any status) are left alone. Returns how many were new."""
        rows = [(h, int(s), suite, method, task, json.dumps(recipe, sort_keys=True)) for h, s, suite, method, task, recipe in runs]
        with self._transaction() as c:
            before = c.total_changes
            c.executemany(
                "INSERT OR IGNORE INTO runs (recipe_hash, seed, suite, method, task, recipe, status) VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                rows,
            )
            return c.total_changes - before

    def claim(self, owner: str, keys: Sequence[RunKey] | None = None, retry_failed: bool = True, failed_before: float | None = None) -> sqlite3.Row | None:
        """Atomically take the next runnable row (pending, failed if ``retry_failed``, or a
        dead runner's ``running`` row), restricted to ``keys`` when given. ``None`` when
        nothing is left to take.

        ``failed_before`` (a ``time.time()`` value) limits the retried failures to those that
        finished before it, so that a runner passes it its own start time and tries each
        failing run once per invocation instead of looping on it."""
        wanted = None if keys is None else {(k.recipe_hash, int(k.seed)) for k in keys}
        statuses = ("pending", "failed", "running") if retry_failed else ("pending", "running")
        now = time.time()
        with self._transaction() as c:
            q = f"SELECT recipe_hash, seed, status, owner, heartbeat, finished_at FROM runs WHERE status IN ({','.join('?' * len(statuses))}) ORDER BY rowid"
            for row in c.execute(q, statuses).fetchall():
                if wanted is not None and (row["recipe_hash"], row["seed"]) not in wanted:
                    continue
                if row["status"] == "failed" and failed_before is not None and (row["finished_at"] or 0.0) >= failed_before:
                    continue
                if row["status"] == "running":
                    fresh = row["heartbeat"] is not None and now - row["heartbeat"] < self.stale_after
                    if _owner_alive(row["owner"]) and fresh:
                        continue
                c.execute(
                    "UPDATE runs SET status = 'running', owner = ?, attempts = attempts + 1, claimed_at = ?, heartbeat = ?, started_at = ?, error = NULL "
                    "WHERE recipe_hash = ? AND seed = ?",
                    (owner, now, now, now, row["recipe_hash"], row["seed"]),
                )
                claimed: sqlite3.Row | None = c.execute("SELECT * FROM runs WHERE recipe_hash = ? AND seed = ?", (row["recipe_hash"], row["seed"])).fetchone()
                return claimed
        return None

    def heartbeat(self, key: RunKey, owner: str) -> bool:
        """Refresh a claimed row's heartbeat; ``False`` if the caller no longer owns it."""
        with self._transaction() as c:
            cur = c.execute("UPDATE runs SET heartbeat = ? WHERE recipe_hash = ? AND seed = ? AND owner = ? AND status = 'running'", (time.time(), key.recipe_hash, key.seed, owner))
            return cur.rowcount == 1

    def finish(
        self, key: RunKey, owner: str, result: dict[str, Any], *, wall_time_s: float, version: str, torch_version: str, device: str,
        hardware: dict[str, Any] | None = None,
    ) -> bool:
        """Record a finished run, in one transaction, if ``owner`` still holds it. Returns
        whether it was recorded (``False``: another runner took the row over). A ``curves``
        entry of ``result`` (per-epoch lists) goes to its own column, as does ``hardware``."""
        result = dict(result)
        per_class = result.pop("per_class_accuracy", None)
        counts = result.pop("class_counts", None)
        reliability = result.pop("reliability", None)
        curves = result.pop("curves", None)
        metrics = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        extra = {k: v for k, v in result.items() if k not in metrics}
        with self._transaction() as c:
            cur = c.execute(
                "UPDATE runs SET status = 'done', finished_at = ?, wall_time_s = ?, metrics = ?, per_class_accuracy = ?, class_counts = ?, "
                "reliability = ?, extra = ?, version = ?, torch_version = ?, device = ?, curves = ?, hardware = ?, error = NULL "
                "WHERE recipe_hash = ? AND seed = ? AND owner = ? AND status = 'running'",
                (time.time(), wall_time_s, _json(metrics), _json(per_class), _json(counts), _json(reliability), _json(extra or None),
                 version, torch_version, device, _json(curves), _json(hardware), key.recipe_hash, key.seed, owner),
            )
            return cur.rowcount == 1

    def fail(self, key: RunKey, owner: str, error: str) -> bool:
        """Mark a claimed run ``failed`` with its error (a rerun retries it)."""
        with self._transaction() as c:
            cur = c.execute(
                "UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE recipe_hash = ? AND seed = ? AND owner = ? AND status = 'running'",
                (time.time(), error[-4000:], key.recipe_hash, key.seed, owner),
            )
            return cur.rowcount == 1

    def release(self, key: RunKey, owner: str) -> None:
        """Give a claimed run back (``pending``), e.g. on Ctrl-C."""
        with self._transaction() as c:
            c.execute("UPDATE runs SET status = 'pending', owner = NULL WHERE recipe_hash = ? AND seed = ? AND owner = ? AND status = 'running'", (key.recipe_hash, key.seed, owner))

    def prune_failed(self, suite: str | None = None, method: str | None = None, keys: Sequence[RunKey] | None = None) -> int:
        """Delete ``failed`` rows (only those of ``suite`` / ``method`` / ``keys`` when given);
        returns how many. A later run of their suite registers them again as ``pending``."""
        cond, args = ["status = 'failed'"], []
        if suite is not None:
            cond.append("suite = ?")
            args.append(suite)
        if method is not None:
            cond.append("method = ?")
            args.append(method)
        wanted = None if keys is None else {(k.recipe_hash, int(k.seed)) for k in keys}
        with self._transaction() as c:
            rows = c.execute("SELECT recipe_hash, seed FROM runs WHERE " + " AND ".join(cond), args).fetchall()
            gone = [(r["recipe_hash"], r["seed"]) for r in rows if wanted is None or (r["recipe_hash"], r["seed"]) in wanted]
            c.executemany("DELETE FROM runs WHERE recipe_hash = ? AND seed = ? AND status = 'failed'", gone)
        return len(gone)

    def add_sweep_points(self, sweep: str, points: Iterable[tuple[str, str, dict[str, Any], bool]]) -> None:
        """Record ``(method, recipe_hash, params, is_default)`` points of the sweep suite ``sweep``
        (existing ones are left alone)."""
        rows = [(sweep, m, h, json.dumps(p, sort_keys=True), int(d)) for m, h, p, d in points]
        with self._transaction() as c:
            c.executemany("INSERT OR IGNORE INTO sweep_points (sweep, method, recipe_hash, params, is_default) VALUES (?, ?, ?, ?, ?)", rows)

    def sweep_points(self, sweep: str | None = None) -> list[dict[str, Any]]:
        """The recorded sweep points (of ``sweep`` when given): sweep, method, recipe_hash,
        params (decoded), is_default (bool)."""
        q, args = "SELECT * FROM sweep_points", []
        if sweep is not None:
            q += " WHERE sweep = ?"
            args.append(sweep)
        out = []
        for row in self.conn.execute(q + " ORDER BY rowid", args):
            d = dict(row)
            d["params"] = json.loads(d["params"])
            d["is_default"] = bool(d["is_default"])
            out.append(d)
        return out

    # -- reading --------------------------------------------------------------------------
    def counts(self, keys: Sequence[RunKey] | None = None) -> dict[str, int]:
        """Number of rows per status (among ``keys`` when given)."""
        out = {"pending": 0, "running": 0, "done": 0, "failed": 0}
        wanted = None if keys is None else {(k.recipe_hash, int(k.seed)) for k in keys}
        for row in self.conn.execute("SELECT recipe_hash, seed, status FROM runs"):
            if wanted is None or (row["recipe_hash"], row["seed"]) in wanted:
                out[row["status"]] += 1
        return out

    def results(self, suite: str | None = None, status: str | None = "done") -> list[dict[str, Any]]:
        """Rows as dicts with JSON columns decoded (``metrics`` etc.), ordered by insertion."""
        q = "SELECT * FROM runs"
        cond, args = [], []
        if suite is not None:
            cond.append("suite = ?")
            args.append(suite)
        if status is not None:
            cond.append("status = ?")
            args.append(status)
        if cond:
            q += " WHERE " + " AND ".join(cond)
        out = []
        for row in self.conn.execute(q + " ORDER BY rowid", args):
            d = dict(row)
            for k in _JSON_COLUMNS:
                if d.get(k) is not None:
                    d[k] = json.loads(d[k])
            out.append(d)
        return out
