"""``lossatlas bench sweep``: grid and random search over recipe fields, into the same store.

The settings (grid product, seeded random draws), the plan (the default recipe beside each
setting, a setting equal to the default not repeated), resumption (a rerun repeats nothing,
a wider grid adds only the new settings) and the report's best-versus-default section, whose
numbers are recomputed here from the stored runs.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from lossatlas.bench.recipes import load_suite
from lossatlas.bench.store import ResultsStore
from lossatlas.bench.sweep import Param, parse_param, plan_sweep, sweep_settings, write_sweep_suite

TINY = {"data": {"name": "digits", "longtail": {"imbalance_ratio": 10}}, "model": {"name": "mlp", "hidden": [16]}, "epochs": 2, "batch_size": 64}


def _suite(tmp_path) -> str:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"name": "t", "defaults": {**TINY, "seeds": 2},
                                "recipes": [{"name": "ce"}, {"name": "la", "loss": {"id": "logit_adjusted", "tau": 1.0}}]}))
    return str(path)


# -- settings ---------------------------------------------------------------------------------
def test_parse_param_values_and_ranges():
    assert parse_param("loss.gamma=0,0.1,0.2") == Param("loss.gamma", values=(0, 0.1, 0.2))
    assert parse_param("schedule.name=cosine,step,cosine").values == ("cosine", "step")  # bare words, duplicates dropped
    assert parse_param("grad_clip=null,1").values == (None, 1)
    assert parse_param("optimizer.lr=loguniform(1e-3, 0.3)") == Param("optimizer.lr", dist=("loguniform", 1e-3, 0.3))
    for bad, match in (("loss.gamma", "PATH=V1"), ("loss..gamma=1", "dotted recipe path"), ("a=uniform(2,1)", "a < b"),
                       ("a=loguniform(0,1)", "a > 0"), ("a=1,,2", "empty value"), ("a=int(x,2)", "must be numbers")):
        with pytest.raises(ValueError, match=match):
            parse_param(bad)


def test_grid_is_the_product_and_random_search_is_seeded():
    grid = sweep_settings([parse_param("a=1,2,3"), parse_param("b.c=x,y")])
    assert len(grid) == 6 and {(g["a"], g["b.c"]) for g in grid} == {(a, b) for a in (1, 2, 3) for b in "xy"}
    params = [parse_param("a=uniform(0,5)"), parse_param("b=loguniform(0.01,1)"), parse_param("c=int(1,4)"), parse_param("d=p,q")]
    draws = sweep_settings(params, trials=40, seed=3)
    assert draws == sweep_settings(params, trials=40, seed=3)  # a rerun draws the same settings (so repeats nothing)
    assert draws != sweep_settings(params, trials=40, seed=4)
    assert all(0 <= d["a"] <= 5 and 0.01 <= d["b"] <= 1 and d["c"] in (1, 2, 3, 4) and d["d"] in ("p", "q") for d in draws)
    assert {d["c"] for d in draws} == {1, 2, 3, 4} and {d["d"] for d in draws} == {"p", "q"}
    assert sum(d["b"] < 0.1 for d in draws) > 10  # log-uniform: about half the draws below the geometric middle
    with pytest.raises(ValueError, match="--trials"):
        sweep_settings(params)
    with pytest.raises(ValueError, match="distinct"):
        sweep_settings([parse_param("a=1"), parse_param("a=2")])


def test_plan_keeps_the_default_and_names_the_settings(tmp_path):
    suite = load_suite(_suite(tmp_path))
    name, points = plan_sweep(suite, [parse_param("loss.tau=0,1,2")], methods=["la"])
    assert name == "t-sweep"
    assert [(p.recipe.name, p.is_default, p.params) for p in points] == [
        ("la", True, {}), ("la[tau=0]", False, {"loss.tau": 0}), ("la[tau=2]", False, {"loss.tau": 2})]  # tau=1 is the default
    assert points[1].recipe.config["loss"] == {"id": "logit_adjusted", "tau": 0}
    assert len({p.recipe.hash for p in points}) == 3
    with pytest.raises(ValueError, match="has no recipe 'vs'"):
        plan_sweep(suite, [parse_param("loss.tau=1")], methods=["vs"])
    with pytest.raises(ValueError, match="no 'weighting' object"):
        plan_sweep(suite, [parse_param("weighting.beta=0.9")], methods=["la"])
    with pytest.raises(ValueError, match="la\\[bogus=1\\]|unknown options"):
        plan_sweep(suite, [parse_param("loss.bogus=1")], methods=["la"])
    # the suite file the runner processes load gives the same recipes and hashes
    path = write_sweep_suite(name, points, tmp_path / "sweeps")
    assert [r.hash for r in load_suite(path).recipes] == [p.recipe.hash for p in points]


# -- running, resuming, reporting -------------------------------------------------------------------
def test_sweep_runs_resumes_widens_and_reports_best_beside_default(tmp_path, capsys):
    from lossatlas.bench.report import write_report
    from lossatlas.cli import main

    suite, db = _suite(tmp_path), str(tmp_path / "r.sqlite")
    argv = ["bench", "sweep", suite, "--method", "la", "--param", "loss.tau=0,1,2", "--db", db, "--no-progress"]
    assert main(argv + ["--summary", str(tmp_path / "sweep.md")]) == 0
    out = capsys.readouterr().out
    assert "sweep t-sweep: 6/6 runs done (6 now, 0 before" in out
    assert main(argv) == 0  # the rerun repeats nothing
    assert "6/6 runs done (0 now, 6 before" in capsys.readouterr().out
    assert main(argv[:6] + ["loss.tau=0,1,2,3"] + argv[7:]) == 0  # a wider grid runs only the new setting
    assert "8/8 runs done (2 now, 6 before" in capsys.readouterr().out

    with ResultsStore(db) as s:
        rows = s.results(suite="t-sweep")
        points = s.sweep_points("t-sweep")
    assert len(rows) == 8 and all(r["attempts"] == 1 for r in rows)
    assert sorted(str(p["params"].get("loss.tau", "default")) for p in points) == ["0", "2", "3", "default"]
    means = {}
    for p in points:
        vals = [r["metrics"]["balanced_accuracy"] for r in rows if r["recipe_hash"] == p["recipe_hash"]]
        assert len(vals) == 2
        means["default" if p["is_default"] else p["params"]["loss.tau"]] = float(np.mean(vals))
    best = max((k for k in means if k != "default"), key=lambda k: means[k])
    if means["default"] >= means[best]:
        best = "default"

    paths = write_report(db, tmp_path / "rep")
    md = open(paths["markdown"], encoding="utf-8").read()
    assert "## Sweeps" in md and "### Sweep `t-sweep`" in md
    [line] = [ln for ln in md.splitlines() if ln.startswith("| la |")]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "tau=1.0"  # the default setting, as the suite writes it
    assert cells[2].startswith(f"{100 * means['default']:.1f} ± ") and cells[2].endswith("(n=2)")
    assert cells[3] == ("tau=1.0 (the default)" if best == "default" else f"tau={best}")
    assert cells[4].startswith(f"{100 * means[best]:.1f} ± ")
    assert float(cells[5]) == pytest.approx(100 * (means[best] - means["default"]), abs=0.051)
    html = open(paths["html"], encoding="utf-8").read()
    assert "<h2>Sweeps</h2>" in html and f"{100 * means['default']:.1f}" in html
    summary = open(tmp_path / "sweep.md", encoding="utf-8").read()
    assert "--param loss.tau=0,1,2" in summary and "every setting (best first)" in summary
    # the leaderboard shows the sweep's settings as their own suite
    assert "## Suite `t-sweep`" in md and "la[tau=2]" in md


def test_sweep_errors_store_nothing(tmp_path, capsys):
    from lossatlas.cli import main

    suite, db = _suite(tmp_path), str(tmp_path / "r.sqlite")
    assert main(["bench", "sweep", suite, "--db", db]) == 2
    assert "at least one --param" in capsys.readouterr().err
    assert main(["bench", "sweep", suite, "--param", "loss.tau=uniform(0,1)", "--db", db]) == 2
    assert "--trials" in capsys.readouterr().err
    np.savez(tmp_path / "bad.npz", features=np.zeros((10, 2), np.float32), labels=np.zeros(9, np.int64))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "b", "data": {"name": "npz", "path": "bad.npz"}, **{k: v for k, v in TINY.items() if k != "data"}}))
    assert main(["bench", "sweep", str(bad), "--param", "epochs=1,2", "--db", db]) == 2
    assert "array 'labels' has 9 labels" in capsys.readouterr().err
    assert not os.path.exists(db) or not ResultsStore(db).results(status=None)


def test_random_search_through_the_cli_is_resumable(tmp_path, capsys):
    from lossatlas.cli import main

    suite, db = _suite(tmp_path), str(tmp_path / "r.sqlite")
    argv = ["bench", "sweep", suite, "--method", "ce", "--param", "optimizer.lr=loguniform(0.01,0.2)", "--trials", "2",
            "--seeds", "1", "--db", db, "--no-progress"]
    assert main(argv) == 0
    assert "3/3 runs done (3 now" in capsys.readouterr().out
    assert main(argv) == 0
    assert "3/3 runs done (0 now, 3 before" in capsys.readouterr().out
    with ResultsStore(db) as s:
        lrs = sorted(r["recipe"]["optimizer"]["lr"] for r in s.results(suite="t-sweep"))
    assert len(lrs) == 3 and all(0.01 <= lr <= 0.2 for lr in lrs) and 0.1 in lrs  # 0.1: the recipe's own (sgd default)
    assert all(math.isfinite(lr) for lr in lrs)
