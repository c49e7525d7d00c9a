"""Native CPU kernel for the cross-entropy family at small sizes (internal).

``softmax_ce.cpp`` (next to this file) is compiled on first use with the machine's C++
compiler (``$CXX``, else ``c++`` / ``g++`` / ``clang++``; no PyTorch headers, about one
second) into a per-user cache, ``$LOSSATLAS_CACHE_DIR`` or ``~/.cache/lossatlas``, keyed by
the source, the compiler and the flags, and called through :mod:`ctypes` on the tensors'
memory. Why: at N·C below ~10^5 on a CPU, a loss's forward + backward costs what its ATen
calls and autograd nodes cost, not its arithmetic (see benchmarks/results/perf_cpu.md);
this kernel is one call forward and one backward for CE, LA, BS, VS, LDAM and focal.

Nothing depends on it: without a compiler, with ``LOSSATLAS_NATIVE=0``, or if the compiled
library fails its load-time self-check, every loss runs its composed torch path (same values
and gradients; tests/test_native.py compares the two). The outcome is logged once on the
``lossatlas.native`` logger.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

__all__ = ["library", "available", "set_enabled", "ENV_VAR"]

log = logging.getLogger("lossatlas.native")

#: Environment variable: ``0`` / ``false`` / ``off`` disables the native kernel.
ENV_VAR = "LOSSATLAS_NATIVE"
_SOURCE = Path(__file__).with_name("softmax_ce.cpp")
_FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-fno-trapping-math"]  # the last lets the exponential loop vectorise
_lock = threading.Lock()
_state: dict[str, object] = {"lib": None, "tried": False, "enabled": None}


def _enabled_by_env() -> bool:
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "off", "no")


def set_enabled(flag: bool | None) -> None:
    """Turn the native kernel on or off for this process (``None``: back to ``$LOSSATLAS_NATIVE``)."""
    _state["enabled"] = flag


def _reset() -> None:
    """Forget the loaded library and the setting (tests: the next call builds / loads again)."""
    _state.update(lib=None, tried=False, enabled=None)


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def _cache_dir() -> Path:
    root = os.environ.get("LOSSATLAS_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lossatlas"


def _build(cxx: str) -> Path:
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(
        b"\0".join([source, cxx.encode(), " ".join(_FLAGS).encode(), platform.machine().encode(), sys.platform.encode()])
    ).hexdigest()[:16]
    suffix = ".dylib" if sys.platform == "darwin" else ".so"
    for folder in (_cache_dir(), Path(tempfile.gettempdir()) / f"lossatlas-{os.getuid() if hasattr(os, 'getuid') else 0}"):
        target = folder / f"softmax_ce-{key}{suffix}"
        if target.exists():
            return target
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=suffix)
            os.close(fd)
        except OSError:
            continue  # not writable: try the next folder
        try:
            t0 = time.perf_counter()
            subprocess.run([cxx, *_FLAGS, "-o", tmp, str(_SOURCE)], check=True, capture_output=True, timeout=300)
            os.replace(tmp, target)  # atomic: concurrent processes never load a half-written file
            log.info("compiled the native cross-entropy kernel in %.1f s: %s", time.perf_counter() - t0, target)
            return target
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise OSError("no writable cache folder for the native kernel")


def _bind(lib: ctypes.CDLL) -> None:
    p, i64, dbl, cint = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
    for suffix in ("f32", "f64"):
        fwd = getattr(lib, f"la_forward_{suffix}")
        fwd.restype = i64
        fwd.argtypes = [p, p, i64, i64, p, cint, dbl, p, p, p, dbl, dbl, i64, cint, p, p, p, p]
        bwd = getattr(lib, f"la_backward_{suffix}")
        bwd.restype = None
        bwd.argtypes = [p, p, i64, i64, p, cint, dbl, p, p, i64, p, p]
        exp = getattr(lib, f"la_exp_{suffix}")  # the kernel's exponential, in place (tested on its own)
        exp.restype = None
        exp.argtypes = [p, i64]


def _self_check(lib: ctypes.CDLL) -> bool:
    """A 3×4 cross-entropy and a focal loss against torch in float64, and one gradient."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 4, generator=g, dtype=torch.float64) * 3
    y = torch.tensor([0, 3, 1])
    p, coef, out = torch.empty_like(z), torch.empty(6, dtype=torch.float64), torch.empty(2, dtype=torch.float64)
    ok = True
    lp = torch.log_softmax(z, 1).gather(1, y[:, None]).squeeze(1)
    for gamma in (2.0, 0.0):  # cross-entropy last: its state feeds the backward below
        bad = lib.la_forward_f64(z.data_ptr(), y.data_ptr(), 3, 4, None, 0, 1.0, None, None, None, gamma, 1.0, -100, 1,
                                 p.data_ptr(), coef.data_ptr(), None, out.data_ptr())
        ref = (-(-torch.expm1(lp)) ** gamma * lp).mean()
        ok = ok and bad == 0 and math.isclose(out[0].item(), ref.item(), rel_tol=1e-12)
    gz = torch.empty_like(z)
    one = torch.ones((), dtype=torch.float64)
    lib.la_backward_f64(p.data_ptr(), y.data_ptr(), 3, 4, None, 0, 1.0, coef.data_ptr(), one.data_ptr(), 0,
                        out[1:].data_ptr(), gz.data_ptr())
    ref_g = (torch.softmax(z, 1) - torch.nn.functional.one_hot(y, 4)) / 3
    return ok and bool(torch.allclose(gz, ref_g, rtol=1e-12, atol=1e-15))


def library() -> ctypes.CDLL | None:
    """The loaded native library, or ``None`` (disabled, no compiler, or it failed to build).
    ``$LOSSATLAS_NATIVE`` is read on the first call (after :func:`set_enabled(None) <set_enabled>`, again)."""
    enabled = _state["enabled"]
    if enabled is None:
        enabled = _state["enabled"] = _enabled_by_env()
    if not enabled:
        return None
    if _state["tried"]:
        return _state["lib"]  # type: ignore[return-value]
    with _lock:
        if not _state["tried"]:
            _state["lib"] = _load()
            _state["tried"] = True
    return _state["lib"]  # type: ignore[return-value]


def _load() -> ctypes.CDLL | None:
    cxx = _compiler()
    if cxx is None:
        log.info("no C++ compiler found: the cross-entropy family runs its torch path")
        return None
    try:
        lib = ctypes.CDLL(str(_build(cxx)))
        _bind(lib)
        if not _self_check(lib):
            log.warning("the native cross-entropy kernel failed its self-check; using the torch path")
            return None
        return lib
    except (OSError, subprocess.SubprocessError, AttributeError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        log.warning("native cross-entropy kernel unavailable (%s%s); using the torch path",
                    exc, (": " + detail.decode(errors="replace")[-500:]) if detail else "")
        return None


def available() -> bool:
    """Whether the native kernel is enabled and loaded (compiling it on the first call)."""
    return library() is not None
