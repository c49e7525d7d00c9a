"""The static public API, and the promise that nothing is compiled, loaded or written at run time."""

from __future__ import annotations

import os
import pathlib
import runpy
import subprocess
import sys
import textwrap

import pytest
import torch

import lossatlas as la

ROOT = pathlib.Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "lossatlas"


def test_every_subpackage_is_an_attribute_after_import():
    for name in ("functional", "losses", "weighting", "samplers", "miners", "two_stage", "distributed", "data", "metrics",
                 "optim"):
        assert hasattr(la, name), name
        assert name in la.__all__
    for name in la.__all__:
        assert getattr(la, name) is not None


def test_every_family_export_is_reachable_by_name():
    for pkg in (la.functional, la.losses, la.weighting, la.samplers, la.data, la.metrics):
        for name in pkg.__all__:
            assert getattr(pkg, name) is not None, (pkg.__name__, name)
        assert len(set(pkg.__all__)) == len(pkg.__all__), f"{pkg.__name__} exports a name twice"


def test_the_typed_user_script_runs():
    # CI type-checks this file with mypy --strict; here it must also work.
    module = runpy.run_path(str(ROOT / "tests" / "typing" / "user_script.py"))
    g = torch.Generator().manual_seed(0)
    y = torch.arange(12) % 3
    out = module["train_step"](torch.randn(12, 3, generator=g, requires_grad=True), y,
                               torch.randn(12, 8, generator=g, requires_grad=True), y)
    assert out == out and out > 0  # finite, positive


FORBIDDEN = ("import ctypes", "from ctypes", "cpp_extension", "CDLL(", "import subprocess", "from subprocess",
             "os.system(", "os.chmod(")


def test_no_run_time_compilation_or_native_loading_in_the_package():
    hits = []
    for path in SRC.rglob("*"):
        if path.suffix in (".c", ".cc", ".cpp", ".cu", ".so", ".dll", ".dylib"):
            hits.append(str(path))
        if path.suffix == ".py":
            text = path.read_text()
            hits += [f"{path.relative_to(SRC)}: {word}" for word in FORBIDDEN if word in text]
    assert not hits, hits


def test_importing_and_running_every_loss_writes_nothing(tmp_path):
    # A clean process with its home, cache and temp folders pointed at empty directories
    # imports lossatlas, runs every registered loss forward and backward, and must leave them empty.
    dirs = {k: tmp_path / k for k in ("home", "cache", "tmp", "cwd")}
    for d in dirs.values():
        d.mkdir()
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        import torch, lossatlas as la
        from conformance import cases as K
        for entry in K.loss_entries():
            case = K.make_case(entry)
            out = K.call(K.create(entry), case)
            out.sum().backward()
        print(len(K.loss_entries()))
    """)
    env = {**os.environ, "HOME": str(dirs["home"]), "XDG_CACHE_HOME": str(dirs["cache"]), "TMPDIR": str(dirs["tmp"]),
           "TORCHINDUCTOR_CACHE_DIR": str(dirs["cache"] / "inductor"), "PYTHONDONTWRITEBYTECODE": "1"}
    res = subprocess.run([sys.executable, "-c", script], cwd=dirs["cwd"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert int(res.stdout.strip().splitlines()[-1]) > 40
    written = [str(p) for d in dirs.values() for p in d.rglob("*")]
    assert written == [], written


@pytest.mark.parametrize("path", ["functional"])
def test_family_modules_do_not_shadow_loss_ids(path):
    # la.functional.<id> is the loss of every registered id; no submodule takes that name.
    pkg = getattr(la, path)
    ids = {e.id for e in la.list()}
    shadowed = [n for n in ids if isinstance(getattr(pkg, n, None), type(la))]
    assert not shadowed, shadowed
