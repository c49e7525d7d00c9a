"""Label-aware metric losses, forward + backward: dense vs tiled vs cached vs pytorch-metric-learning.

Issue 22. Every measurement runs in a fresh subprocess, so its peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which sees torch's allocations, unlike
``tracemalloc``) is that run's own peak; the Python + torch baseline is shown beside it.
The script also times a 4096³ float32 matmul in the same run as the machine's reference
speed and records the load average (the CPU is shared: compare rows within one run).

Forms (``--forms``):

* ``dense`` / ``tiled``: ``lossatlas.functional.<loss>(embeddings, labels, tiled=False/True)``
  on leaf embeddings [N, D];
* ``pml``: pytorch-metric-learning's loss on the same inputs (its default reducer; the
  triplet loss with its ``BatchHardMiner``);
* ``encoder`` / ``cached``: a 2-layer MLP encoder (256 -> 1024 -> D) in front of the tiled
  loss, trained end to end on the whole batch (``encoder``) or with
  :func:`lossatlas.distributed.cached_backward` in chunks of 1024 rows (``cached``,
  GradCache): the same parameter gradients, the encoder's activations held one chunk at a time.

Losses (``--losses``): ``supcon`` (τ = 0.1), ``ntxent`` (τ = 0.1), ``multi_similarity``
(with the MS miner, ε = 0.1), ``contrastive`` (every pair), ``triplet_margin`` (batch-hard: the
blockwise :class:`lossatlas.miners.BatchHardMiner` for the tiled form). Labels: N / 16
classes drawn uniformly (about 16 rows per class).

    python benchmarks/label_aware_memory.py                           # default grid, writes results
    python benchmarks/label_aware_memory.py --losses supcon --sizes 16384 65536 --forms dense tiled
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# the machine measurements and report pieces of the contrastive memory benchmark, shared (run as scripts: benchmarks/ is on sys.path)
from contrastive_memory import _available_mb, _matmul_gflops, _reference_lines, _timing_row, _write_results

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "label_aware_memory.md"
#: measured peak of the dense forms (float32) per similarity entry, to skip sizes that cannot fit
DENSE_BYTES_PER_ENTRY = {"supcon": 30.0, "ntxent": 30.0, "multi_similarity": 30.0, "contrastive": 30.0, "triplet_margin": 30.0}
IN_DIM, HIDDEN = 256, 1024


def _loss_fn(loss: str, form: str, labels: Any) -> Any:
    import lossatlas.functional as LF
    from lossatlas.miners import BatchHardMiner

    tiled = form != "dense"
    if loss == "supcon":
        return lambda e: LF.supcon(e, labels, temperature=0.1, base_temperature=0.1, tiled=tiled)
    if loss == "ntxent":
        return lambda e: LF.ntxent(e, labels, temperature=0.1, tiled=tiled)
    if loss == "multi_similarity":
        return lambda e: LF.multi_similarity(e, labels, miner_epsilon=0.1, tiled=tiled)
    if loss == "contrastive":
        return lambda e: LF.contrastive(e, labels, tiled=tiled)
    if loss == "triplet_margin":
        miner = BatchHardMiner(block_size=256 if tiled else None)
        return lambda e: LF.triplet_margin(e, labels, margin=0.2, indices=miner(e, labels), tiled=tiled)
    raise ValueError(loss)


def _pml_fn(loss: str, labels: Any) -> Any:
    from pytorch_metric_learning import losses as L
    from pytorch_metric_learning import miners as M

    if loss == "supcon":
        crit = L.SupConLoss(temperature=0.1)
        return lambda e: crit(e, labels)
    if loss == "ntxent":
        crit = L.NTXentLoss(temperature=0.1)
        return lambda e: crit(e, labels)
    if loss == "multi_similarity":
        crit, miner = L.MultiSimilarityLoss(), M.MultiSimilarityMiner(epsilon=0.1)
        return lambda e: crit(e, labels, miner(e, labels))
    if loss == "contrastive":
        crit = L.ContrastiveLoss()
        return lambda e: crit(e, labels)
    if loss == "triplet_margin":
        crit, miner = L.TripletMarginLoss(margin=0.2), M.BatchHardMiner()
        return lambda e: crit(e, labels, miner(e, labels))
    raise ValueError(loss)


def _child(loss: str, form: str, n: int, d: int, threads: int | None) -> None:
    import torch

    from lossatlas.distributed import cached_backward

    if threads:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, max(n // 16, 2), (n,), generator=g)
    centres = torch.randn(max(n // 16, 2), d, generator=g)
    torch.manual_seed(0)  # the encoder's initialisation
    enc = None
    if form in ("encoder", "cached"):
        enc = torch.nn.Sequential(torch.nn.Linear(IN_DIM, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, d))
        x = torch.randn(n, IN_DIM, generator=g)
    else:
        x = (centres[labels] + 1.5 * torch.randn(n, d, generator=g)).requires_grad_()
    fn = _pml_fn(loss, labels) if form == "pml" else _loss_fn(loss, form, labels)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if form == "cached":
        assert enc is not None
        value = cached_backward(fn, enc, [x], chunk_size=1024)
        t1 = t2 = time.perf_counter()
        grad = enc[0].weight.grad
    else:
        out = fn(enc(x)) if enc is not None else fn(x)
        t1 = time.perf_counter()
        out.backward()
        t2 = time.perf_counter()
        value = out.detach()
        grad = enc[0].weight.grad if enc is not None else x.grad
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert grad is not None
    print(json.dumps({
        "loss": loss, "form": form, "n": n, "d": d, "value": float(value), "fwd_s": t1 - t0, "bwd_s": t2 - t1,
        "total_s": t2 - t0, "peak_rss_mb": peak / 1024, "baseline_rss_mb": base / 1024,
        "grad_norm": float(grad.norm()), "threads": torch.get_num_threads(),
    }))


def _run(loss: str, form: str, n: int, d: int, threads: int | None, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", loss, form, str(n), str(d)] + (["--threads", str(threads)] if threads else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return {"loss": loss, "form": form, "n": n, "d": d, "error": f"timeout after {timeout:.0f}s"}
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or "").strip().splitlines()[-1:] or ["failed"]
        return {"loss": loss, "form": form, "n": n, "d": d, "error": tail[0][:120]}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", nargs=4, metavar=("LOSS", "FORM", "N", "D"), help=argparse.SUPPRESS)
    p.add_argument("--losses", nargs="+", default=["supcon", "ntxent", "multi_similarity", "contrastive", "triplet_margin"])
    p.add_argument("--forms", nargs="+", default=["dense", "tiled", "pml", "encoder", "cached"])
    p.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384])
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="torch threads in each run (default: torch's)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    p.add_argument("--title", default="Label-aware metric losses, forward + backward")
    p.add_argument("--no-write", action="store_true", help="print only, do not write the results file")
    p.add_argument("--append", action="store_true", help="add this run as a new section of the results file")
    args = p.parse_args()
    if args.child:
        loss, form, n, d = args.child
        _child(loss, form, int(n), int(d), args.threads)
        return

    load_before = os.getloadavg()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    gflops = _matmul_gflops()
    rows = []
    for loss in args.losses:
        for n in args.sizes:
            for form in args.forms:
                est = DENSE_BYTES_PER_ENTRY[loss] * n * n / 2**20
                if form in ("dense", "pml") and est > 0.6 * _available_mb():
                    rows.append({"loss": loss, "form": form, "n": n, "d": args.dim,
                                 "error": f"skipped (estimated {est / 1024:.1f} GB > 60% of available memory)"})
                    continue
                r = _run(loss, form, n, args.dim, args.threads, args.timeout)
                rows.append(r)
                print(json.dumps(r), flush=True)
    load_after = os.getloadavg()

    import torch

    threads = next((r["threads"] for r in rows if "threads" in r), "?")
    lines = [
        f"## {args.title}: run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch threads = {threads}",
        "",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs), torch {torch.__version__}",
        f"- float32, D = {args.dim}, labels: N / 16 classes; command: `python benchmarks/label_aware_memory.py "
        f"--losses {' '.join(args.losses)} --forms {' '.join(args.forms)} --sizes {' '.join(map(str, args.sizes))}"
        + (f" --threads {args.threads}" if args.threads else "") + "`",
        *_reference_lines(gflops, load_before, load_after),
        "",
        "| loss | N | form | forward s | backward s | total s | peak RSS MB | baseline RSS MB | loss value |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [_timing_row([r["loss"], r["n"], r["form"]], r, "value") for r in rows]
    lines.append("")
    for loss in args.losses:
        for n in args.sizes:
            got = {r["form"]: r for r in rows if r["loss"] == loss and r["n"] == n and "error" not in r}
            if "dense" in got and "tiled" in got:
                dn, tl = got["dense"], got["tiled"]
                lines.append(
                    f"- {loss}, N = {n}: tiled / dense time {tl['total_s'] / dn['total_s']:.2f}, "
                    f"peak RSS above baseline {tl['peak_rss_mb'] - tl['baseline_rss_mb']:.0f} MB vs "
                    f"{dn['peak_rss_mb'] - dn['baseline_rss_mb']:.0f} MB"
                )
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        header = (
            "# Label-aware metric losses: dense vs tiled vs cached vs pytorch-metric-learning\n\n"
            "Produced by `python benchmarks/label_aware_memory.py` (each row a fresh subprocess; peak memory =\n"
            "its `ru_maxrss`, which includes the Python + torch baseline shown separately). The CPU is shared\n"
            "with other jobs: compare rows within one run, not across runs.\n\n"
        )
        _write_results(RESULTS, header, text, args.append)


if __name__ == "__main__":
    main()
