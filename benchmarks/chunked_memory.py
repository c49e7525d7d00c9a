"""Linear head + cross-entropy over many classes, forward + backward: dense vs chunked, time and peak memory.

Dense: ``F.cross_entropy(F.linear(x, W, b), y)`` (holds the N x C logits, their softmax and
their gradient). Chunked: ``lossatlas.functional.chunked_linear_cross_entropy`` (O(N x chunk)
extra), for plain cross-entropy and for ArcFace, and ``torch.compile(fullgraph=True)`` of the
same chunked function, with the ``aot_eager`` backend (tracing only) and with ``inductor``. The
block loops are custom operators (``lossatlas::chunked_stats`` and its backward), opaque to the
compiler: the graph is the same at every C, so compiling costs the same seconds at C = 10^6 as
at 10^3, and the loops run as in eager mode (inductor compiles only the [N]-vector ops around
them). The compile time (first call minus a later one) is in its own column.

Every measurement runs in a fresh subprocess, so the peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is that run's own peak (``tracemalloc`` does
not see torch's buffers). "extra MB" is the peak minus the RSS after the inputs (features,
weight [C, D], bias) were allocated: it contains the weight's gradient (C x D x 4 bytes) and
what the loss itself allocates. A 4096^3 float32 matmul gives the machine's speed in the same
run, and the load average is recorded: the CPU is shared, compare rows within a run.

    python benchmarks/chunked_memory.py            # N=4096 at C=100k (dense fits), N=512 at C=1M; writes results
    python benchmarks/chunked_memory.py --configs 4096:1000000 --forms chunked --no-write

The dense form runs only where its estimated peak (16 bytes x N x C, float32) is under
``--dense-max-gb`` (8) and 40% of the available memory; otherwise the table says so. Rows not
started within ``--max-minutes`` of the start are listed as not run (the CPU is shared).
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
RESULTS = HERE / "results" / "chunked_memory.md"
DENSE_BYTES_PER_LOGIT = 16.0  # logits, their softmax / gradient and the autograd copies, float32
FORMS = ("dense", "chunked", "chunked-arcface", "chunked-compiled", "chunked-inductor")
DEFAULT_FORMS = ("dense", "chunked", "chunked-inductor")
#: torch.compile backend of each compiled form: aot_eager traces only; inductor fuses (and compiles C++ here)
BACKENDS = {"chunked-compiled": "aot_eager", "chunked-inductor": "inductor"}


def _child(form: str, n: int, c: int, d: int, chunk: int, threads: int | None) -> None:
    import torch
    import torch.nn.functional as F

    import lossatlas.functional as LF

    if threads:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g).requires_grad_()
    w = (torch.randn(c, d, generator=g) * d ** -0.5).requires_grad_()
    cosine = form == "chunked-arcface"
    b = None if cosine else torch.zeros(c).requires_grad_()
    y = torch.randint(0, c, (n,), generator=g)

    def run() -> torch.Tensor:
        if form == "dense":
            return F.cross_entropy(F.linear(x, w, b), y)
        if cosine:
            return LF.chunked_linear_cross_entropy(x, w, y, loss="arcface", chunk_size=chunk)
        return LF.chunked_linear_cross_entropy(x, w, y, bias=b, chunk_size=chunk, validate=form not in BACKENDS)

    fn = run
    compile_s = 0.0
    # one-time costs outside the timing: a custom operator's first call imports torch._dynamo
    LF.chunked_linear_cross_entropy(x[:2].detach(), w[:3].detach(), torch.zeros(2, dtype=torch.long))
    if form in BACKENDS:
        import torch._dynamo

        fn = torch.compile(run, backend=BACKENDS[form], fullgraph=True)
        t = time.perf_counter()
        fn().backward()  # compile outside the timing; its memory is in the baseline
        compile_s = time.perf_counter() - t
        w.grad = x.grad = None
        if b is not None:
            b.grad = None
    base_now = _rss_mb()
    t0 = time.perf_counter()
    loss = fn()
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert w.grad is not None
    print(json.dumps({
        "form": form, "n": n, "c": c, "d": d, "chunk": chunk, "loss": float(loss), "fwd_s": t1 - t0,
        "bwd_s": t2 - t1, "total_s": t2 - t0, "peak_rss_mb": peak, "base_rss_mb": base_now,
        "compile_s": compile_s, "grad_norm": float(w.grad.norm()), "threads": torch.get_num_threads(),
    }))


def _compile_cell(r: dict[str, object]) -> str:
    first = float(str(r.get("compile_s", 0.0)))
    return f"{first - float(str(r['total_s'])):.1f}" if first else ""


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _available_mb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _matmul_gflops() -> float:
    import torch

    x = torch.randn(4096, 4096)
    x @ x
    t = time.perf_counter()
    x @ x
    return 2 * 4096**3 / (time.perf_counter() - t) / 1e9


def _run(form: str, n: int, c: int, d: int, chunk: int, threads: int | None) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--child", form, str(n), str(c), str(d), str(chunk), str(threads or 0)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"form": form, "n": n, "c": c, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", default=["4096:100000", "512:1000000"], help="N:C pairs")
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--chunk", type=int, default=4096)
    p.add_argument("--forms", nargs="+", default=list(DEFAULT_FORMS), choices=FORMS)
    p.add_argument("--dense-max-gb", type=float, default=8.0, help="run the dense form only under this estimated peak")
    p.add_argument("--max-minutes", type=float, default=15.0, help="start no row after this many minutes")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        form, n, c, d, chunk, threads = args.child
        _child(form, int(n), int(c), int(d), int(chunk), int(threads) or None)
        return
    import torch

    load0 = os.getloadavg()
    started = time.time()
    gflops = _matmul_gflops()
    rows = []
    for cfg in args.configs:
        n, c = (int(v) for v in cfg.split(":"))
        for form in args.forms:
            need_gb = DENSE_BYTES_PER_LOGIT * n * c / 2**30
            cap_gb = min(args.dense_max_gb, 0.4 * _available_mb() / 1024)
            if form == "dense" and need_gb > cap_gb:
                rows.append({"form": form, "n": n, "c": c, "error": f"not run: estimated {need_gb:.1f} GB > {cap_gb:.1f} GB "
                             f"(min of --dense-max-gb and 40% of the {_available_mb() / 1024:.1f} GB available)"})
                continue
            if time.time() - started > 60 * args.max_minutes:
                rows.append({"form": form, "n": n, "c": c, "error": f"not run: past --max-minutes {args.max_minutes:g}"})
                continue
            r = _run(form, n, c, args.d, args.chunk, args.threads)
            print(json.dumps(r), flush=True)
            rows.append(r)
    load1 = os.getloadavg()
    wall = time.time() - started
    lines = [
        f"## Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"- command: `{' '.join(['python', 'benchmarks/' + Path(__file__).name, *sys.argv[1:]])}` "
        f"({wall / 60:.1f} min wall)",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs), torch {torch.__version__}, "
        f"torch threads {args.threads or torch.get_num_threads()}",
        f"- float32, D = {args.d}, chunk_size = {args.chunk}; dense = `F.cross_entropy(F.linear(x, W, b), y)`; chunked = "
        "`la.functional.chunked_linear_cross_entropy(x, W, y, bias=b)` (arcface: `loss='arcface'`, no bias); "
        "compiled / inductor = `torch.compile(..., backend='aot_eager' / 'inductor', fullgraph=True)` of the chunked call "
        "(`validate=False`; compile time excluded from the times, in its own column: the first call's time minus the "
        "timed call's)",
        f"- 4096^3 float32 matmul in this run: {gflops:.0f} GFLOP/s",
        f"- load average (1, 5, 15 min) before: {', '.join(f'{v:.1f}' for v in load0)}; after: "
        f"{', '.join(f'{v:.1f}' for v in load1)}",
        "",
        "| N | C | form | forward s | backward s | total s | peak RSS MB | extra MB (peak - after inputs) | compile s | loss |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['n']} | {r['c']} | {r['form']} | | | | | | | {r['error']} |")
            continue
        extra = float(str(r["peak_rss_mb"])) - float(str(r["base_rss_mb"]))
        lines.append(
            f"| {r['n']} | {r['c']} | {r['form']} | {r['fwd_s']:.2f} | {r['bwd_s']:.2f} | {r['total_s']:.2f} | "
            f"{r['peak_rss_mb']:.0f} | {extra:.0f} | {_compile_cell(r)} | {r['loss']:.6f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        head = "" if RESULTS.exists() else (
            "# Linear head + loss over many classes, forward + backward: dense vs chunked\n\n"
            "Produced by `python benchmarks/chunked_memory.py` (each row a fresh subprocess; peak memory = its\n"
            "`ru_maxrss`). The weight's gradient alone is C x D x 4 bytes (51 MB at C = 100k, 512 MB at 1M).\n"
            "The CPU (2 cores) is shared with other jobs at a load of ~10: compare rows within one run.\n\n")
        with RESULTS.open("a") as f:
            f.write(head + text + "\n")


if __name__ == "__main__":
    main()
