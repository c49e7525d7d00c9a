"""The README's first command says what it is doing at once (issue 20): ``lossatlas bench run``
prints a line before PyTorch is imported (the console script's launcher, ``_lossatlas_cli``),
then the runner's set-up line, then training progress: rich bars on a terminal and a line per
finished run (the only progress when the output is piped)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import selectors
import subprocess
import sys
import time

import pytest

import _lossatlas_cli
from _lossatlas_cli import bench_run_suite
from lossatlas.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv, suite", [
    (["bench", "run"], "quick"),
    (["bench", "run", "quick"], "quick"),
    (["-v", "bench", "run", "lt", "--workers", "2"], "lt"),
    (["bench", "run", "--db", "x.sqlite", "--seeds", "3", "noise"], "noise"),
    (["bench", "run", "--no-progress", "my.json"], "my.json"),
    (["bench", "run", "--help"], None),
    (["bench", "report"], None),
    (["list"], None),
    ([], None),
])
def test_launcher_recognises_bench_run(argv, suite):
    assert bench_run_suite(argv) == suite


def test_launcher_imports_no_torch():
    code = "import sys, _lossatlas_cli; print('torch' in sys.modules, 'lossatlas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_console_script_is_the_launcher():
    (ep,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "lossatlas"]
    assert ep.value == "_lossatlas_cli:main"
    assert ep.load() is _lossatlas_cli.main


def test_launcher_hands_over_to_the_cli(capsys):
    assert _lossatlas_cli.main(["info", "ldam"]) == 0
    captured = capsys.readouterr()
    assert "ldam" in captured.out and captured.err == ""  # nothing extra for other commands


def _command(*args):
    script = pathlib.Path(sys.executable).with_name("lossatlas")
    if script.exists():  # the installed console script, as the README runs it
        return [str(script), *args]
    return [sys.executable, "-c", "import sys, _lossatlas_cli; sys.exit(_lossatlas_cli.main())", *args]


def test_bench_run_says_what_it_is_doing_within_two_seconds(tmp_path):
    """The real command, piped: the first line within 2 s of the start (PyTorch alone takes
    1-10 s to import on a busy 2-core machine, so it is printed before), then the runner's
    set-up line naming the suite, its runs, the database and the device; then killed."""
    db = tmp_path / "r.sqlite"
    t0 = time.monotonic()
    proc = subprocess.Popen(_command("bench", "run", "quick", "--db", str(db)), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[tuple[float, str]] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    try:
        while time.monotonic() - t0 < 240 and not any("7 runs" in line for _, line in lines):
            if not sel.select(timeout=0.05):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                lines.append((time.monotonic() - t0, line.decode(errors="replace")))
    finally:
        proc.kill()
        proc.wait()
        sel.close()
    assert lines, "no output at all"
    first_t, first = lines[0]
    assert first.startswith("lossatlas bench run quick: starting"), first
    assert first_t < 2.0, f"first line after {first_t:.2f} s"
    setup = [line for _, line in lines if "suite quick: 7 runs" in line]
    assert setup and str(db) in setup[0] and "on cpu" in setup[0], lines


def test_bench_run_prints_a_line_per_finished_run(tmp_path, capsys):
    suite = tmp_path / "tiny.json"
    tiny = {"data": {"name": "digits"}, "model": {"name": "mlp", "hidden": [16]}, "epochs": 1, "batch_size": 64}
    suite.write_text(json.dumps({"name": "tiny", "recipes": [{"name": "ce", **tiny, "loss": {"id": "cross_entropy"}},
                                                             {"name": "focal", **tiny, "loss": {"id": "focal"}}]}))
    assert main(["bench", "run", str(suite), "--db", str(tmp_path / "r.sqlite"), "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    done = [line for line in out if line.startswith("finished ")]
    assert [line.split(":")[0] for line in done] == ["finished ce seed 0", "finished focal seed 0"]
    for line in done:
        value = float(line.rsplit("balanced_accuracy ", 1)[1])
        assert 0.0 <= value <= 1.0
    # a rerun has nothing to do: no run lines, the summary only
    assert main(["bench", "run", str(suite), "--db", str(tmp_path / "r.sqlite"), "--no-progress"]) == 0
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("finished ")]


def test_readme_first_command_announces_its_set_up_then_runs_the_bench():
    """The README's first command: an echo of what the silent pip installs are doing, first
    thing; then ``lossatlas bench run quick`` (whose own first line is tested above)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = text.split("```bash\n", 1)[1].split("\n```", 1)[0]
    steps = [s.strip() for s in first.split("&&")]
    assert steps[0].startswith("echo ") and "set-up" in steps[0]
    assert steps.index(".venv/bin/lossatlas bench run quick") > steps.index("python3 -m venv .venv")
