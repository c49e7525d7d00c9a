"""The benchmark runner: runs every (recipe, seed) of a suite once, into the results store.

- Seeds python/numpy/torch per run; CUDA when present (``device="auto"``), deterministic
  kernels on CPU.
- Progress bars (rich) for the suite and the run in flight; ``progress=False`` for none.
- Resumable and shareable: runs are claimed atomically from the SQLite store
  (:class:`~lossatlas.bench.store.ResultsStore`); a rerun skips finished runs and picks
  up pending, failed and abandoned ones; several runners (``workers > 1`` or separate
  commands) on one database split the work without overlap.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

import torch

from .. import __version__
from .recipes import Suite, load_suite
from .store import ResultsStore, RunKey, make_owner
from .tasks import check_task_data, get_task

__all__ = ["run_suite", "resolve_device", "hardware_info", "DEFAULT_DB", "RunSummary"]

log = logging.getLogger(__name__)

#: Default results database (relative to the working directory).
DEFAULT_DB = os.path.join("lossatlas-results", "results.sqlite")

_HEARTBEAT_EVERY = 5.0


@dataclass
class RunSummary:
    suite: str
    total: int
    done: int
    failed: int
    ran: int
    skipped: int
    elsewhere: int
    wall_time_s: float


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None``: CUDA when available, else CPU; otherwise ``torch.device(device)``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; use --device cpu or auto")
    return dev


@functools.lru_cache(maxsize=1)
def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")) and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def hardware_info(device: torch.device) -> dict[str, Any]:
    """What a run ran on, stored with it: CPU model, logical cores, torch threads, the GPU
    (name, memory in GiB) when ``device`` is CUDA, the OS, Python, numpy and torch's CUDA."""
    import numpy as np

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info


def _suite_runs(suite: Suite, seeds: int | None) -> list[tuple[Any, int]]:
    out = []
    for recipe in suite.recipes:
        n = recipe.seeds if seeds is None else seeds
        out += [(recipe, s) for s in range(n)]
    return out


class _Bars:
    """rich progress bars, or nothing."""

    def __init__(self, enabled: bool, total: int, title: str) -> None:
        self.progress = None
        if enabled:
            try:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            except ImportError:  # pragma: no cover
                enabled = False
            else:
                self.progress = Progress(
                    TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    transient=False,
                )
                self.progress.start()
                self.suite_bar = self.progress.add_task(title, total=total, info="")
                self.run_bar = self.progress.add_task("", total=1, info="", visible=False)

    def suite(self, completed: int, info: str = "") -> None:
        if self.progress is not None:
            self.progress.update(self.suite_bar, completed=completed, info=info)

    def start_run(self, label: str) -> None:
        if self.progress is not None:
            self.progress.reset(self.run_bar, total=1, description=f"  {label}", info="", visible=True)

    def run(self, done: int, total: int, message: str = "") -> None:
        if self.progress is not None:
            self.progress.update(self.run_bar, completed=done, total=total, info=message)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _worker(argv: list[str]) -> None:
    from ..cli import main

    main(argv)


def _spawn_workers(n: int, suite_arg: str, db: str, seeds: int | None, device: str, threads: int) -> list[BaseProcess]:
    # fresh interpreters ("spawn") running the same CLI; they leave earlier failures to this
    # process, which retries each of them once
    argv = ["bench", "run", suite_arg, "--db", db, "--no-progress", "--no-retry", "--workers", "1", "--device", device, "--threads", str(threads)]
    if seeds is not None:
        argv += ["--seeds", str(seeds)]
    ctx = multiprocessing.get_context("spawn")
    procs: list[BaseProcess] = [ctx.Process(target=_worker, args=(argv,), daemon=False) for _ in range(n)]
    for p in procs:
        p.start()
    return procs


def _execute(config: dict[str, Any], seed: int, device: str, threads: int) -> dict[str, Any]:
    """One run in a Ray worker: the result or the traceback (so the store keeps the real one)."""
    torch.set_num_threads(threads)
    try:
        dev = resolve_device(device)
        t = time.perf_counter()
        result = get_task(config["task"]).run(config, seed, dev, None)
        wall = time.perf_counter() - t
        return {"ok": True, "result": result, "wall": wall, "device": str(dev), "torch": torch.__version__, "hardware": hardware_info(dev)}
    except Exception as exc:
        return {"ok": False, "error": "".join(traceback.format_exception(exc))}


def _ray_init(address: str) -> tuple[Any, bool]:
    """The ``ray`` module, connected; and whether this call started the connection (and so shuts it down)."""
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs Ray: pip install 'lossatlas[ray]'") from None
    if ray.is_initialized():
        return ray, False
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address == "local":
        kwargs["include_dashboard"] = False
    ray.init(address=address, **kwargs)
    return ray, True


def _run_on_ray(
    address: str, store: ResultsStore, owner: str, keys: list[RunKey], by_key: dict[tuple[str, int], Any], device: str, threads: int,
    workers: int, retry_failed: bool, started: float, bars: _Bars, on_run_done: Callable[[dict[str, Any]], None] | None,
) -> int:
    """Claim runs, run them as Ray tasks, record each result in ``store`` from this process."""
    ray, owns = _ray_init(address)
    try:
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        gpus = float(ray.cluster_resources().get("GPU", 0.0))
        use_gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
        capacity = workers if workers > 1 else max(1, int(cpus // threads))
        remote = ray.remote(num_cpus=threads, num_gpus=1 if use_gpu else 0, max_retries=0)(_execute)
        in_flight: dict[Any, tuple[RunKey, Any, str]] = {}
        ran, last_beat = 0, time.time()
        try:
            while True:
                while len(in_flight) < capacity:
                    row = store.claim(owner, keys, retry_failed=retry_failed, failed_before=started)
                    if row is None:
                        break
                    key = RunKey(row["recipe_hash"], row["seed"])
                    recipe = by_key[(key.recipe_hash, key.seed)]
                    ref = remote.remote(recipe.config, key.seed, device, threads)
                    in_flight[ref] = (key, recipe, f"{recipe.name} seed {key.seed}")
                    bars.start_run(f"{len(in_flight)} on the cluster")
                if not in_flight:
                    break
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=_HEARTBEAT_EVERY)
                if time.time() - last_beat > _HEARTBEAT_EVERY:
                    last_beat = time.time()
                    for k, _r, _l in in_flight.values():
                        store.heartbeat(k, owner)
                for ref in ready:
                    key, recipe, label = in_flight.pop(ref)
                    try:
                        out = ray.get(ref)
                    except Exception as exc:  # the worker died (out of memory, a node lost): recorded like a failing run
                        out = {"ok": False, "error": "".join(traceback.format_exception(exc))}
                    if not out["ok"]:
                        log.error("run %s failed: %s", label, out["error"].strip().splitlines()[-1] if out["error"].strip() else "")
                        store.fail(key, owner, out["error"])
                    elif store.finish(key, owner, out["result"], wall_time_s=out["wall"], version=__version__, torch_version=out["torch"], device=out["device"],
                                      hardware=out["hardware"]):
                        ran += 1
                        if on_run_done is not None:
                            on_run_done({"method": recipe.name, "seed": key.seed, **out["result"]})
                    else:
                        log.warning("run %s was taken over by another runner; its result is kept, this one dropped", label)
                    bars.suite(store.counts(keys)["done"], f"last: {label}")
        except BaseException:
            for ref, (k, _r, _l) in in_flight.items():  # Ctrl-C: give the runs in flight back
                ray.cancel(ref, force=True)
                store.release(k, owner)
            raise
        return ran
    finally:
        if owns:
            ray.shutdown()


def run_suite(
    suite: str | Suite,
    db: str | os.PathLike[str] = DEFAULT_DB,
    *,
    seeds: int | None = None,
    device: str | torch.device | None = "auto",
    threads: int | None = 1,
    workers: int = 1,
    progress: bool = True,
    retry_failed: bool = True,
    owner: str | None = None,
    on_run_done: Callable[[dict[str, Any]], None] | None = None,
    ray: str | None = None,
) -> RunSummary:
    """Run every (recipe, seed) of ``suite`` (a name, a JSON path or a loaded :class:`Suite`)
    that the store ``db`` has not finished.

    ``seeds`` overrides each recipe's number of seeds (seeds ``0 .. seeds-1``). ``threads``
    is torch's intra-op thread count for this process (1 suits the small models best;
    ``None`` leaves torch's default). ``workers > 1`` starts that many extra runner
    processes (same suite and database, one thread each) beside this one.

    ``ray``: a Ray cluster address (``"local"`` starts one here, as
    ``ray.init(address="local")``; ``"auto"``, ``host:port``, ``ray://host:port``); when Ray
    is already initialised in this process, its cluster is used. This process claims each run
    in the store, sends it to the cluster as a task (``threads`` CPUs each; at most
    ``workers`` in flight when ``workers > 1``, else as many as the cluster's CPUs allow) and
    writes the result or the failure's traceback into ``db`` itself: the store, resume and
    failure records work as without Ray. The workers need lossatlas installed and the data
    paths readable.
    """
    t0 = time.perf_counter()
    started = time.time()  # failures recorded from now on are not retried by this invocation
    suite_arg = suite if isinstance(suite, str) else None
    s = load_suite(suite) if isinstance(suite, str) else suite
    dev = resolve_device(device)
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        torch.set_num_threads(threads)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ValueError(f"seeds must be a positive int, got {seeds!r}")
    runs = _suite_runs(s, seeds)
    check_task_data(r.config for r in s.recipes)  # a bad data file stops here: nothing stored, nothing trained
    keys = [RunKey(r.hash, seed) for r, seed in runs]
    by_key = {(r.hash, seed): r for r, seed in runs}
    owner = owner or make_owner()
    db_path = os.fspath(db)
    children: list[BaseProcess] = []
    with ResultsStore(db_path) as store:
        store.add_runs((r.hash, seed, s.name, r.name, r.config["task"], r.config) for r, seed in runs)
        before = store.counts(keys)
        log.info("suite %s: %d runs (%d already done) -> %s on %s", s.name, len(keys), before["done"], db_path, dev)
        if workers > 1 and ray is None:
            if suite_arg is None:
                raise ValueError("workers > 1 needs the suite as a name or path (the workers load it themselves)")
            children = _spawn_workers(workers - 1, suite_arg, db_path, seeds, str(device or "auto"), threads or 1)
        bars = _Bars(progress, len(keys), f"{s.name}")
        ran = 0
        try:
            bars.suite(before["done"])
            if ray is not None:
                ran = _run_on_ray(ray, store, owner, keys, by_key, str(device or "auto"), threads or 1, workers, retry_failed, started, bars, on_run_done)
            while ray is None:
                row = store.claim(owner, keys, retry_failed=retry_failed, failed_before=started)
                if row is None:
                    break
                key = RunKey(row["recipe_hash"], row["seed"])
                recipe = by_key[(key.recipe_hash, key.seed)]
                label = f"{recipe.name} seed {key.seed}"
                bars.start_run(label)
                last_beat = [time.time()]

                def progress_cb(done: int, total: int, message: str = "", _key: RunKey = key, _beat: list[float] = last_beat) -> None:
                    bars.run(done, total, message)
                    now = time.time()
                    if now - _beat[0] > _HEARTBEAT_EVERY:
                        _beat[0] = now
                        store.heartbeat(_key, owner)

                task = get_task(recipe.config["task"])
                t_run = time.perf_counter()
                try:
                    result = task.run(recipe.config, key.seed, dev, progress_cb)
                except KeyboardInterrupt:
                    store.release(key, owner)
                    raise
                except Exception as exc:  # a failing run is recorded and the suite goes on
                    log.error("run %s failed: %s", label, exc)
                    store.fail(key, owner, "".join(traceback.format_exception(exc)))
                else:
                    wall = time.perf_counter() - t_run
                    recorded = store.finish(key, owner, result, wall_time_s=wall, version=__version__, torch_version=torch.__version__, device=str(dev),
                                            hardware=hardware_info(dev))
                    if recorded:
                        ran += 1
                        if on_run_done is not None:
                            on_run_done({"method": recipe.name, "seed": key.seed, **result})
                    else:
                        log.warning("run %s was taken over by another runner; its result is kept, this one dropped", label)
                c = store.counts(keys)
                bars.suite(c["done"], f"last: {label}")
        finally:
            bars.close()
            for p in children:
                p.join()
        after = store.counts(keys)
    summary = RunSummary(
        suite=s.name, total=len(keys), done=after["done"], failed=after["failed"], ran=ran,
        skipped=before["done"], elsewhere=after["running"], wall_time_s=time.perf_counter() - t0,
    )
    log.info("suite %s: %d/%d done (%d ran now, %d were done before, %d failed, %d running elsewhere) in %.1f s",
             s.name, summary.done, summary.total, summary.ran, summary.skipped, summary.failed, summary.elsewhere, summary.wall_time_s)
    return summary
