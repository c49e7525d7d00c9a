"""Traps fixed at their root (issue 20): a misspelt keyword to ``la.create`` says what was
meant, ``lossatlas list`` fits 80 columns, and every Python example of the README runs as
written. (The metric and DRW traps are tested in test_metrics.py and test_weighting.py.)"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest
import torch

import lossatlas as la
from lossatlas.cli import main

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"

# ---------------------------------------------------------------- la.create: did you mean


def _create_error(id, **kw):
    with pytest.raises(TypeError) as info:
        la.create(id, **kw)
    return str(info.value)


def test_create_unknown_keyword_suggests_the_close_name():
    msg = _create_error("focal", gama=2.0)
    assert "unexpected argument(s) gama; did you mean 'gamma'?" in msg
    assert "It accepts gamma, alpha" in msg  # and the whole list, as before
    # several misspellings: one suggestion each
    msg = _create_error("focal", gama=2.0, alpah=0.25)
    assert "did you mean 'gamma' (for gama), 'alpha' (for alpah)?" in msg
    # case and dashes as in ids
    assert "did you mean 'gamma'?" in _create_error("focal", Gamma=2.0)
    # nothing close: no guess, still the list
    msg = _create_error("focal", zzz=1)
    assert "did you mean" not in msg and "unexpected argument(s) zzz. It accepts gamma" in msg


def test_create_misspelt_required_keyword_is_named_as_the_misspelling():
    # a misspelt required argument is reported as the misspelling, not only as "missing"
    msg = _create_error("drw", class_counts=[10, 5], start_epok=3)
    assert "start_epok; did you mean 'start_epoch'?" in msg and "It also requires start_epoch" in msg
    # a name already given is not suggested for another
    msg = _create_error("ldam", class_counts=[10, 5], max_margin=0.5, max_margn=0.3)
    assert "did you mean 'max_margin'" not in msg
    # no unknown keyword: the missing ones, as before
    assert "requires the argument(s) start_epoch" in _create_error("drw", class_counts=[10, 5])


# ---------------------------------------------------------------- lossatlas list in 80 columns


def _ids_in(lines):
    return [line.split()[0] for line in lines if line.startswith("  ") and not line.startswith("      ")]


@pytest.mark.parametrize("full", [False, True])
def test_cli_list_fits_80_columns_and_shows_every_id_whole(capsys, monkeypatch, full):
    monkeypatch.setenv("COLUMNS", "80")  # the terminal's width, as shutil reads it
    assert main(["list"] + (["--full"] if full else [])) == 0
    lines = capsys.readouterr().out.splitlines()
    too_long = [line for line in lines if len(line) > 80]
    assert not too_long, too_long
    entries = la.list()
    assert sorted(_ids_in(lines)) == sorted(e.id for e in entries)  # each id once, never cut
    for e in entries:
        assert e.family in "\n".join(lines)
    if full:  # every formula in full, wrapped
        text = " ".join(line.strip() for line in lines)
        for e in entries:
            assert " ".join(e.formula.split()) in " ".join(text.split()), e.id


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_cli_list_width_option(capsys, width):
    assert main(["list", "--width", str(width)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= width
    assert sorted(_ids_in(lines)) == sorted(e.id for e in la.list())
    with pytest.raises(SystemExit):
        main(["list", "--width", "20"])


def test_cli_list_piped_is_80_columns():
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    out = subprocess.run([sys.executable, "-m", "lossatlas", "list"], capture_output=True, text=True, check=True,
                         env=env, encoding="utf-8").stdout
    lines = out.splitlines()
    assert lines and max(len(line) for line in lines) <= 80
    assert sorted(_ids_in(lines)) == sorted(e.id for e in la.list())


# ---------------------------------------------------------------- README examples, as written


def _readme_blocks():
    text = README.read_text(encoding="utf-8")
    return re.findall(r"^```([^\n`]*)\n(.*?)^```", text, re.S | re.M)


def _python_blocks():
    return [code for lang, code in _readme_blocks() if lang.strip().lower() == "python"]


def test_readme_python_fences_are_all_tested():
    langs = {lang.strip().lower() for lang, _ in _readme_blocks()}
    # a block fenced ```py or ```python3 would be skipped by the test below: keep one spelling
    assert not (langs & {"py", "python3", "pycon", "ipython"}), langs
    assert len(_python_blocks()) >= 2


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_python_block_runs(index, capsys):
    code = _python_blocks()[index]
    namespace = {"__name__": f"readme_block_{index}"}
    exec(compile(code, f"{README}[python block {index}]", "exec"), namespace)
    # the LDAM-DRW composition the README shows really follows the schedule
    if "drw" in namespace and "ldam_drw" in namespace:
        drw, crit = namespace["drw"], namespace["ldam_drw"]
        z, y = torch.randn(6, 10), torch.randint(0, 10, (6,))
        crit(z, y)
        assert torch.equal(crit.weight, drw())
        drw.set_epoch(0)
        crit(z, y)
        assert torch.equal(crit.weight, torch.ones(10, dtype=torch.float64))
