"""Symmetric InfoNCE forward + backward: dense vs tiled, time and peak memory (catalogue G9).

Every measurement runs in a fresh subprocess, so the peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is that run's own peak: the allocator cannot
hide memory from it the way ``tracemalloc`` misses torch's buffers. The script also times
a 4096³ float32 matrix multiply in the same run, as the machine's reference speed, and
records the load average (the CPU is shared, so timings are noisy: compare within a run).

    python benchmarks/contrastive_memory.py                      # default sizes, writes results
    python benchmarks/contrastive_memory.py --sizes 4096 8192 --no-write

The dense form is run at every size whose estimated peak (≈ 22 bytes x N², measured) fits
in 60% of the available memory; the tiled form at every size.
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

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "contrastive_memory.md"
DENSE_BYTES_PER_ENTRY = 22.0  # measured peak of the dense form, float32, per similarity entry


def _child(mode: str, n: int, d: int, threads: int | None) -> None:
    import torch

    import lossatlas.functional as LF

    if threads:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, d, generator=g).requires_grad_()
    b = (a.detach() + 0.5 * torch.randn(n, d, generator=g)).requires_grad_()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    loss = LF.infonce(a, b, temperature=0.07, symmetric=True, tiled=(mode == "tiled"))
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "mode": mode, "n": n, "d": d, "loss": float(loss), "fwd_s": t1 - t0, "bwd_s": t2 - t1,
        "total_s": t2 - t0, "peak_rss_mb": peak / 1024, "baseline_rss_mb": base / 1024,
        "grad_norm": float(a.grad.norm()), "threads": torch.get_num_threads(),
    }))


def _matmul_gflops() -> float:
    import torch

    x = torch.randn(4096, 4096)
    x @ x
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        x @ x
        best = min(best, time.perf_counter() - t)
    return 2 * 4096**3 / best / 1e9


def _reference_lines(gflops: float, load_before: tuple[float, ...], load_after: tuple[float, ...]) -> list[str]:
    """The report's lines on the machine's reference speed and the load around the run."""
    return [
        f"- 4096³ float32 matmul in this run: {gflops:.0f} GFLOP/s",
        f"- load average (1, 5, 15 min) before: {', '.join(f'{x:.1f}' for x in load_before)}; "
        f"after: {', '.join(f'{x:.1f}' for x in load_after)}",
    ]


def _timing_row(lead: list[object], r: dict, value_key: str) -> str:
    """A results-table row: the ``lead`` cells, then forward / backward / total seconds, peak and
    baseline RSS and ``r[value_key]``; or, for a row that failed, its error in the total's cell."""
    if "error" in r:
        cells = [*lead, "–", "–", r["error"], "–", "–", "–"]
    else:
        cells = [*lead, f"{r['fwd_s']:.2f}", f"{r['bwd_s']:.2f}", f"{r['total_s']:.2f}", f"{r['peak_rss_mb']:.0f}",
                 f"{r['baseline_rss_mb']:.0f}", f"{r[value_key]:.6f}"]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _write_results(path: Path, header: str, text: str, append: bool) -> None:
    """``header`` then ``text`` into ``path``, or ``text`` as a new section of it (``append``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if append and path.exists():
        path.write_text(path.read_text().rstrip("\n") + "\n\n" + text)
    else:
        path.write_text(header + text)


def _available_mb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def _run(mode: str, n: int, d: int, threads: int | None, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, str(n), str(d)] + (["--threads", str(threads)] if threads else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return {"mode": mode, "n": n, "d": d, "error": f"timeout after {timeout:.0f}s"}
    except subprocess.CalledProcessError as exc:
        return {"mode": mode, "n": n, "d": d, "error": (exc.stderr or "").strip().splitlines()[-1:] or "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", nargs=3, metavar=("MODE", "N", "D"), help=argparse.SUPPRESS)
    p.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192, 16384, 32768, 65536])
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="torch threads in each run (default: torch's)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    p.add_argument("--no-write", action="store_true", help="print only, do not write the results file")
    p.add_argument("--append", action="store_true", help="add this run as a new section of the results file")
    args = p.parse_args()
    if args.child:
        mode, n, d = args.child
        _child(mode, int(n), int(d), args.threads)
        return

    load_before = os.getloadavg()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # the reference matmul runs with the same threads
    gflops = _matmul_gflops()
    rows = []
    for n in args.sizes:
        dense_est = DENSE_BYTES_PER_ENTRY * n * n / 2**20
        modes = ["tiled"]
        if dense_est < 0.6 * _available_mb():
            modes.insert(0, "dense")
        else:
            print(f"N={n}: dense skipped (estimated {dense_est / 1024:.1f} GB > 60% of available memory)", flush=True)
        for mode in modes:
            r = _run(mode, n, args.dim, args.threads, args.timeout)
            rows.append(r)
            print(json.dumps(r), flush=True)
    load_after = os.getloadavg()

    import torch

    largest_dense = max((r["n"] for r in rows if r["mode"] == "dense" and "error" not in r), default=None)
    header = [
        "# Symmetric InfoNCE, forward + backward: dense vs tiled",
        "",
        "Produced by `python benchmarks/contrastive_memory.py` (each row a fresh subprocess; peak",
        "memory = its `ru_maxrss`, which includes the Python + torch baseline shown separately).",
        "The CPU is shared with other jobs: compare rows within one run, not across runs.",
        "",
    ]
    threads = rows[0].get("threads", "?") if rows else "?"
    lines = [
        f"## Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch threads = {threads}",
        "",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs), torch {torch.__version__}",
        f"- float32, D = {args.dim}, temperature 0.07, `lossatlas.functional.infonce(..., tiled=...)`",
        *_reference_lines(gflops, load_before, load_after),
        "",
        "| N | form | forward s | backward s | total s | peak RSS MB | baseline RSS MB | loss |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [_timing_row([r["n"], r["mode"]], r, "loss") for r in rows]
    lines.append("")
    if largest_dense is not None:
        d = next(r for r in rows if r["mode"] == "dense" and r["n"] == largest_dense)
        t = next((r for r in rows if r["mode"] == "tiled" and r["n"] == largest_dense and "error" not in r), None)
        if t is not None:
            lines.append(
                f"At the largest N where the dense form fits here (N = {largest_dense}): tiled "
                f"{t['total_s']:.1f} s / {t['peak_rss_mb']:.0f} MB vs dense {d['total_s']:.1f} s / "
                f"{d['peak_rss_mb']:.0f} MB ({d['total_s'] / t['total_s']:.2f}x time, "
                f"{d['peak_rss_mb'] / t['peak_rss_mb']:.1f}x memory)."
            )
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        _write_results(RESULTS, "\n".join(header) + "\n", text, args.append)


if __name__ == "__main__":
    main()
