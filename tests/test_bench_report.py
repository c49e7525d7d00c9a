"""The benchmark report (issue 21): its statistics against scipy.stats on made-up numbers, what
it says was run, one unit in the CSV and the Markdown, the figures, an older store read
after the additive migration, the per-epoch curves of the classification task, and the
HTML in a real headless Chromium (no raw markup, every figure loaded, a clean console, a
screenshot).

Stores are made up here (``ResultsStore.finish`` with numbers chosen by the test), except
the curves test, which trains a tiny model.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats as sps

from lossatlas.bench.report import _CSV_COLUMNS, leaderboard, write_report
from lossatlas.bench.stats import paired_ties, summarize
from lossatlas.bench.store import ResultsStore, RunKey

# -- statistics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [[0.81, 0.84, 0.79], [1.0, 2.0], [3.0, 3.5, 2.5, 4.0, 3.25, 2.0, 5.0]])
def test_confidence_interval_is_scipys_student_t(values):
    s = summarize(values)
    lo, hi = sps.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sps.sem(values))
    assert (s.n, s.mean, s.std) == (len(values), pytest.approx(np.mean(values)), pytest.approx(np.std(values, ddof=1)))
    assert s.ci_low == pytest.approx(lo, rel=1e-12) and s.ci_high == pytest.approx(hi, rel=1e-12)
    s90 = summarize(values, level=0.9)
    assert s90.ci_high - s90.ci_low < s.ci_high - s.ci_low  # a lower level is narrower


def test_single_value_has_no_spread_and_none_and_nan_are_dropped():
    one = summarize([0.7, None, float("nan")])
    assert one.n == 1 and one.mean == 0.7 and math.isnan(one.std) and math.isnan(one.ci_low) and not one.has_interval
    assert summarize([]).n == 0 and math.isnan(summarize([]).mean)
    with pytest.raises(ValueError, match="level"):
        summarize([1.0, 2.0], level=1.0)


def test_paired_ties_are_scipys_paired_t_test_on_the_shared_seeds():
    best = {0: 0.90, 1: 0.86, 2: 0.88, 3: 0.91}
    close = {0: 0.89, 1: 0.87, 2: 0.86, 3: 0.90}  # small, inconsistent gaps: a tie
    far = {0: 0.80, 1: 0.77, 2: 0.79, 3: 0.81}  # consistently ~0.1 lower
    partial = {1: 0.85, 3: 0.80, 7: 0.99}  # seed 7 has no partner: only seeds 1 and 3 count
    single = {0: 0.95}
    out = paired_ties({"best": best, "close": close, "far": far, "partial": partial, "single": single}, "best")
    p_close = sps.ttest_rel([best[s] for s in range(4)], [close[s] for s in range(4)]).pvalue
    p_far = sps.ttest_rel([best[s] for s in range(4)], [far[s] for s in range(4)]).pvalue
    p_partial = sps.ttest_rel([best[1], best[3]], [partial[1], partial[3]]).pvalue
    assert out["best"].status == "best"
    assert (out["close"].status, out["close"].p) == ("tie", pytest.approx(p_close)) and p_close >= 0.05
    assert (out["far"].status, out["far"].p) == ("below", pytest.approx(p_far)) and p_far < 0.05
    assert out["partial"].n_pairs == 2 and out["partial"].p == pytest.approx(p_partial)
    assert out["partial"].mean_diff == pytest.approx(np.mean([best[1] - partial[1], best[3] - partial[3]]))
    assert out["single"].status == "untested" and out["single"].n_pairs == 1 and math.isnan(out["single"].p)
    # no spread in the differences: scipy gives nan (0/0) or an infinite t; equal is a tie, a constant gap is not
    same = paired_ties({"a": best, "b": dict(best)}, "a")["b"]
    shifted = paired_ties({"a": best, "b": {s: v - 0.05 for s, v in best.items()}}, "a")["b"]
    assert (same.status, same.p) == ("tie", 1.0) and shifted.status == "below"
    # alpha moves the line: the close pair is "below" at a level above its p
    assert paired_ties({"best": best, "close": close}, "best", alpha=min(0.99, p_close + 0.01))["close"].status == "below"
    with pytest.raises(ValueError, match="best method"):
        paired_ties({"a": best}, "z")


# -- made-up stores ------------------------------------------------------------------------------

OWNER = "o:1:x"


def _curves(final_loss: float, final_acc: float, epochs: int = 5) -> dict[str, list[float]]:
    return {"epoch": list(range(1, epochs + 1)),
            "train_loss": [final_loss * (epochs + 1 - e) for e in range(1, epochs + 1)],
            "test_balanced_accuracy": [final_acc * e / epochs for e in range(1, epochs + 1)]}


def _reliability(acc: float) -> dict[str, list[float]]:
    edges = np.linspace(0, 1, 6)
    return {"bin_lower": edges[:-1].tolist(), "bin_upper": edges[1:].tolist(), "count": [1, 2, 5, 10, 30],
            "accuracy": [0.1, 0.3, 0.5, acc * 0.8, acc], "confidence": [0.1, 0.3, 0.5, 0.7, 0.95]}


def _result(bal: float, seed: int, counts: list[int] | None = None) -> dict[str, Any]:
    counts = counts or [300, 120, 60, 25, 8]
    return {"balanced_accuracy": bal, "accuracy": bal + 0.05, "many_shot_accuracy": min(1.0, bal + 0.1), "medium_shot_accuracy": bal,
            "few_shot_accuracy": bal - 0.2, "ece": 0.05 + 0.01 * seed, "macro_f1": bal - 0.01, "worst_class_accuracy": bal - 0.3,
            "train_time_s": 2.0 + seed, "n_train": sum(counts), "n_test": 500, "noise_rate_realised": 0.0, "final_train_loss": 0.3,
            "per_class_accuracy": [min(1.0, bal + 0.1), bal, bal, bal - 0.1, bal - 0.2], "class_counts": counts,
            "reliability": _reliability(bal), "curves": _curves(0.3, bal)}


def _store(db: Path, suite: str, runs: list[tuple[str, int, dict[str, Any], dict[str, Any]]], hardware: dict[str, Any] | None = None) -> None:
    """``runs``: (method, seed, recipe, result) recorded as finished."""
    with ResultsStore(db) as s:
        for method, seed, recipe, result in runs:
            h = f"{suite}-{method}"
            s.add_runs([(h, seed, suite, method, "classification", {"name": method, **recipe})])
            row = s.claim(OWNER, [RunKey(h, seed)])
            assert row is not None
            assert s.finish(RunKey(h, seed), OWNER, result, wall_time_s=3.0 + seed, version="9.9", torch_version="2.13.0", device="cpu",
                            hardware=hardware or {"cpu": "Test CPU 3000", "cpu_count": 2, "torch_threads": 1, "platform": "Linux", "python": "3.11", "numpy": "2"})


BASE = {"task": "classification", "data": {"name": "mnist1d", "num_samples": 5000, "longtail": {"imbalance_ratio": 100, "profile": "exp"}},
        "model": {"name": "cnn1d", "channels": 32}, "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0005},
        "schedule": {"name": "onecycle", "pct_start": 0.3}, "epochs": 5, "batch_size": 128, "seeds": 3}
#: made-up balanced accuracies per seed: "best" leads, "close" is within the noise, "far" is far behind, "one" ran one seed
LT_RUNS = {"best": [0.90, 0.86, 0.88], "close": [0.89, 0.87, 0.86], "far": [0.70, 0.69, 0.72], "one": [0.95]}
LOSSES = {"best": {"id": "ldam", "scale": 1.0}, "close": {"id": "logit_adjusted", "tau": 1.0}, "far": {"id": "cross_entropy"}, "one": {"id": "focal", "gamma": 2.0}}


def _lt_store(db: Path) -> None:
    _store(db, "lt", [(m, seed, {**BASE, "loss": LOSSES[m]}, _result(v, seed)) for m, vals in LT_RUNS.items() for seed, v in enumerate(vals)])


def _noise_store(db: Path) -> None:
    runs = []
    for loss, drop in (("cross_entropy", 0.5), ("gce", 0.2)):
        for rate in (0.0, 0.2, 0.4):
            data = {"name": "mnist1d", "num_samples": 5000}
            if rate:
                data["noise"] = {"type": "symmetric", "rate": rate}
            name = f"sym{int(rate * 100)}_{loss}"
            for seed in range(2):
                res = _result(0.9 - drop * rate + 0.01 * seed, seed, counts=[400] * 5)
                res["noise_rate_realised"] = rate * 0.98
                runs.append((name, seed, {**BASE, "data": data, "loss": {"id": loss}}, res))
    _store(db, "noise", runs)


def _read_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_leaderboard_flags_ties_by_the_paired_test(tmp_path):
    db = tmp_path / "r.sqlite"
    _lt_store(db)
    with ResultsStore(db) as s:
        board = {e["method"]: e for e in leaderboard(s.results())}
    assert board["one"]["rank"] == 1 and board["one"]["vs_best"] == "best"  # the highest mean, on one seed
    # against a one-seed best nothing can be tested
    assert {board[m]["vs_best"] for m in ("best", "close", "far")} == {"untested"}
    # without it, "best" leads: "close" ties, "far" is below, with scipy's p-values
    with ResultsStore(db) as s:
        rows = [r for r in s.results() if r["method"] != "one"]
    board = {e["method"]: e for e in leaderboard(rows)}
    for m, status in (("best", "best"), ("close", "tie"), ("far", "below")):
        assert board[m]["vs_best"] == status
    assert board["close"]["vs_best_p"] == pytest.approx(sps.ttest_rel(LT_RUNS["best"], LT_RUNS["close"]).pvalue)
    lo, hi = sps.t.interval(0.95, 2, loc=np.mean(LT_RUNS["far"]), scale=sps.sem(LT_RUNS["far"]))
    assert (board["far"]["balanced_accuracy_ci_low"], board["far"]["balanced_accuracy_ci_high"]) == (pytest.approx(lo), pytest.approx(hi))


def test_report_says_what_was_run_in_one_unit_with_intervals_and_ties(tmp_path):
    db = tmp_path / "r.sqlite"
    _lt_store(db)
    paths = write_report(db, tmp_path / "rep")
    md = Path(paths["markdown"]).read_text(encoding="utf-8")
    table = {r["method"]: r for r in _read_csv(paths["csv"])}
    assert list(table) == ["one", "best", "close", "far"]
    assert set(_CSV_COLUMNS) <= set(next(iter(table.values())))
    # one unit: the CSV is in percent and the Markdown shows the same numbers rounded
    far = table["far"]
    assert float(far["balanced_accuracy_pct_mean"]) == pytest.approx(100 * np.mean(LT_RUNS["far"]))
    assert float(far["balanced_accuracy_pct_std"]) == pytest.approx(100 * np.std(LT_RUNS["far"], ddof=1))
    lo, hi = sps.t.interval(0.95, 2, loc=100 * np.mean(LT_RUNS["far"]), scale=100 * sps.sem(LT_RUNS["far"]))
    assert float(far["balanced_accuracy_pct_ci_low"]) == pytest.approx(lo) and float(far["balanced_accuracy_pct_ci_high"]) == pytest.approx(hi)
    assert float(far["ece_pct_mean"]) == pytest.approx(100 * np.mean([0.05, 0.06, 0.07]))
    line = next(ln for ln in md.splitlines() if ln.startswith("| 4 | far |"))
    mean, sd = float(far["balanced_accuracy_pct_mean"]), float(far["balanced_accuracy_pct_std"])
    assert f"| 3 | {mean:.1f} ± {sd:.1f} | [{lo:.1f}, {hi:.1f}] |" in line
    assert "| bal. acc (%) | 95 % CI (%) | vs #1 (paired t) |" in md and "| ECE (%) |" in md and "| many (%) | medium (%) | few (%) |" in md
    # a single seed: its value alone, "single seed, no interval", never "± 0.0"
    one = next(ln for ln in md.splitlines() if ln.startswith("| 1 | one |"))
    assert "| 1 | 95.0 | single seed, no interval | best |" in one and "± 0.0" not in md
    assert table["one"]["balanced_accuracy_pct_std"] == "" and table["one"]["seeds"] == "1"
    # ties are named with their test
    assert "paired t-test" in md and "not tested" in next(ln for ln in md.splitlines() if ln.startswith("| 2 | best |"))
    # what was run: data, model, epochs, optimiser, seeds, hardware, versions, wall time, the resolved recipes
    for text in ("MNIST-1D", "5,000 samples generated", "imbalance ratio 100", "no label noise", "cnn1d(channels=32)",
                 "sgd(lr=0.1, momentum=0.9, weight_decay=0.0005)", "onecycle(pct_start=0.3)", "| epochs | 5 |", "| seeds | 0, 1, 2 (1 to 3 per method",
                 "Test CPU 3000, 2 logical cores, 1 torch thread(s)", "torch 2.13.0; lossatlas 9.9", "| wall time per run | mean ",
                 "513 training samples", '"imbalance_ratio": 100'):
        assert text in md, text
    assert md.count("```json") == 4
    # the figures: curves, per-class, reliability (no noise-rate lines: one noise level)
    figs = sorted(os.listdir(tmp_path / "rep" / "figures"))
    assert figs == ["lt_curves.svg", "lt_per_class.svg", "lt_reliability.svg"]
    assert all(f"figures/{f}" in md for f in figs)
    assert all((tmp_path / "rep" / "figures" / f).read_bytes().lstrip().startswith((b"<?xml", b"<svg")) for f in figs)


def test_noise_suite_gets_accuracy_against_noise_rate(tmp_path):
    db = tmp_path / "r.sqlite"
    _noise_store(db)
    paths = write_report(db, tmp_path / "rep")
    md = Path(paths["markdown"]).read_text(encoding="utf-8")
    assert "figures/noise_noise_rate.svg" in md and "### Accuracy against noise rate" in md
    svg = (tmp_path / "rep" / "figures" / "noise_noise_rate.svg").read_text(encoding="utf-8")
    assert "symmetric noise" in svg and "gce" in svg and "cross_entropy" in svg and "noise rate (%)" in svg
    # the data differ by recipe: a data column, and the realised rate
    board = md.split("### Leaderboard")[1].splitlines()
    assert board[4].endswith("| loss | data: noise |") and board[6].endswith("| cross_entropy | no label noise |")
    assert "| sym40_gce |" in md and "| gce | label noise: symmetric, rate 40 % |" in md
    assert "| data (common) | MNIST-1D (generated offline); 5,000 samples generated |" in md
    assert "realised label-noise rate 19.6–39.2 %" in md


def test_noise_rate_lines_pair_recipes_that_differ_only_in_their_noise():
    from lossatlas.bench.report import _noise_lines

    def runs(loss, noise, vals):
        data = {"name": "mnist1d", **({"noise": noise} if noise else {})}
        recipe = {**BASE, "data": data, "loss": {"id": loss}}
        return [{"recipe": recipe, "metrics": {"balanced_accuracy": v}, "seed": i} for i, v in enumerate(vals)]

    suite = {"ce0": runs("cross_entropy", None, [0.9, 0.8]), "ce_sym": runs("cross_entropy", {"type": "symmetric", "rate": 0.4}, [0.5, 0.7]),
             "ce_pair": runs("cross_entropy", {"type": "pair_flip", "rate": 0.2}, [0.6]),
             "gce_sym": runs("gce", {"type": "symmetric", "rate": 0.4}, [0.75])}  # gce has one rate only: no line
    lines = _noise_lines(suite, "balanced_accuracy")
    assert sorted(lines) == ["pair_flip", "symmetric"] and list(lines["symmetric"]) == ["cross_entropy"]
    (r0, m0, lo0, hi0), (r1, m1, _, _) = lines["symmetric"]["cross_entropy"]
    assert (r0, r1) == (0.0, 0.4) and (m0, m1) == (pytest.approx(0.85), pytest.approx(0.6))
    assert (lo0, hi0) == tuple(pytest.approx(v) for v in sps.t.interval(0.95, 1, loc=0.85, scale=sps.sem([0.9, 0.8])))
    rate, mean, lo, _ = lines["pair_flip"]["cross_entropy"][1]
    assert (rate, mean) == (0.2, pytest.approx(0.6)) and math.isnan(lo)  # one seed: no interval


def test_legends_sit_outside_every_axes(tmp_path, monkeypatch):
    import lossatlas.bench.report as report

    checked = []
    real_svg = report._svg

    def spy(fig):  # each figure as the report saves it
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is not None:
                box = legend.get_window_extent(renderer)
                assert not any(box.overlaps(other.get_window_extent(renderer)) for other in fig.axes), "a legend covers the data"
                checked.append(ax.get_xlabel())
        return real_svg(fig)

    monkeypatch.setattr(report, "_svg", spy)
    db = tmp_path / "r.sqlite"
    _lt_store(db)
    _noise_store(db)
    write_report(db, tmp_path / "rep")
    assert sorted(checked) == ["epoch", "epoch", "noise rate (%)", "training samples of the class (log scale; dotted: few < 20, many > 100)"]


def test_grouped_suite_pivots_in_percent_with_single_seed_values(tmp_path):
    db = tmp_path / "r.sqlite"
    runs = [("t1", "a", 0.6), ("t1", "a", 0.8), ("t1", "b", 0.9), ("t2", "a", 0.95), ("t2", "b", 0.5)]
    with ResultsStore(db) as s:
        for i, (group, label, auroc) in enumerate(runs):
            s.add_runs([(f"{group}{label}", i, "auc", f"{group}_{label}", "binary", {"loss": {"id": "bce"}})])
            row = s.claim(OWNER)
            s.finish(RunKey(row["recipe_hash"], row["seed"]), OWNER, {"auroc": auroc, "ap": auroc / 2, "group": group, "label": label, "primary_metric": "auroc"},
                     wall_time_s=1, version="v", torch_version="t", device="cpu")
    paths = write_report(db, tmp_path / "rep")
    lines = Path(paths["markdown"]).read_text(encoding="utf-8").splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("### auroc in % by method and task"))
    rows = {ln.split(" | ")[0].strip("| "): ln for ln in lines[head + 4 : head + 6]}
    assert rows["a"] == f"| a | 1.5 | 70.0 ± {100 * np.std([0.6, 0.8], ddof=1):.1f} | **95.0** |"
    assert rows["b"] == "| b | 1.5 | **90.0** | 50.0 |"
    md = "\n".join(lines)
    t2 = md.split("### Task t2")[1]
    assert "Every method ran a single seed: single seed, no interval" in t2.split("###")[0]  # the per-task table says so
    table = _read_csv(paths["csv"])
    assert {(r["group"], r["label"]): float(r["auroc_pct_mean"]) for r in table} == {
        ("t1", "a"): pytest.approx(70.0), ("t1", "b"): pytest.approx(90.0), ("t2", "a"): pytest.approx(95.0), ("t2", "b"): pytest.approx(50.0)}


_OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (recipe_hash TEXT NOT NULL, seed INTEGER NOT NULL, suite TEXT NOT NULL, method TEXT NOT NULL, task TEXT NOT NULL,
    recipe TEXT NOT NULL, status TEXT NOT NULL, owner TEXT, attempts INTEGER NOT NULL DEFAULT 0, claimed_at REAL, heartbeat REAL,
    started_at REAL, finished_at REAL, wall_time_s REAL, metrics TEXT, per_class_accuracy TEXT, class_counts TEXT, reliability TEXT,
    extra TEXT, version TEXT, torch_version TEXT, device TEXT, error TEXT, PRIMARY KEY (recipe_hash, seed));
INSERT INTO meta VALUES ('schema_version', '1');
"""


def test_a_store_from_before_the_new_columns_is_migrated_additively_and_reported(tmp_path):
    db = tmp_path / "old.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript(_OLD_SCHEMA)
    conn.execute("INSERT INTO runs (recipe_hash, seed, suite, method, task, recipe, status, finished_at, wall_time_s, metrics, version, torch_version, device) "
                 "VALUES ('h', 0, 'old', 'ce', 'classification', ?, 'done', 1.7e9, 12.5, ?, '0.1', '2.4.0', 'cpu')",
                 (json.dumps({"name": "ce", **BASE, "loss": {"id": "cross_entropy"}}), json.dumps({"balanced_accuracy": 0.5, "accuracy": 0.6})))
    conn.commit()
    conn.close()
    with ResultsStore(db) as s:
        [row] = s.results()
        assert row["curves"] is None and row["hardware"] is None and row["metrics"]["balanced_accuracy"] == 0.5
    cols = [r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(runs)")]
    assert cols[:23] == [r.split()[0] for r in _OLD_SCHEMA.split("(", 2)[2].split(", PRIMARY")[0].replace("\n", " ").split(", ")]  # old columns first, as they were
    assert {"curves", "hardware"} <= set(cols)
    md = Path(write_report(db, tmp_path / "rep")["markdown"]).read_text(encoding="utf-8")
    assert "hardware not recorded for 1 of 1 runs" in md and "torch 2.4.0; lossatlas 0.1" in md and "single seed, no interval" in md
    assert not os.path.exists(tmp_path / "rep" / "figures" / "old_curves.svg")  # no curves recorded: no figure


def test_classification_records_per_epoch_curves():
    from lossatlas.bench.tasks import get_task

    recipe = {"name": "tiny", "data": {"name": "digits", "longtail": {"imbalance_ratio": 10}}, "model": {"name": "mlp", "hidden": [16]},
              "epochs": 3, "batch_size": 64}
    out = get_task("classification").run(recipe, 0, torch.device("cpu"))
    c = out["curves"]
    assert c["epoch"] == [1, 2, 3] and len(c["train_loss"]) == len(c["test_balanced_accuracy"]) == 3
    assert c["train_loss"][-1] == pytest.approx(out["final_train_loss"])
    assert c["test_balanced_accuracy"][-1] == pytest.approx(out["balanced_accuracy"], abs=1e-6)  # the last epoch's model is the one evaluated
    assert c["train_loss"][-1] < c["train_loss"][0]  # it learns


@pytest.mark.parametrize("task, recipe, keys", [
    ("binary", {"data": {"name": "digits", "positive_class": 8, "positive_fraction": 0.2}, "model": {"name": "mlp", "hidden": [8]}, "batch_size": 64},
     ["test_auroc", "train_loss"]),
    ("metric", {"data": {"num_samples": 400}, "model": {"name": "mlp", "embedding_size": 8}, "loss": {"id": "contrastive"},
                "sampler": {"p": 3, "k": 4}, "steps_per_epoch": 2}, ["train_loss"]),
])
def test_other_tasks_record_per_epoch_curves(task, recipe, keys):
    from lossatlas.bench.tasks import get_task

    out = get_task(task).run({"name": "t", "task": task, "epochs": 2, **recipe}, 0, torch.device("cpu"))
    c = out["curves"]
    assert c["epoch"] == [1, 2] and sorted(k for k in c if k != "epoch") == keys and all(len(c[k]) == 2 for k in keys)
    if task == "binary":
        assert c["test_auroc"][-1] == pytest.approx(out["auroc"])  # the last epoch's model is the one evaluated
    # every epoch's mean training loss is recorded (not only the first), the last one is the final
    assert all(isinstance(v, float) and math.isfinite(v) for v in c["train_loss"])
    assert c["train_loss"][-1] == pytest.approx(out["final_train_loss"])


def test_the_runner_stores_curves_and_hardware(tmp_path):
    from lossatlas.bench.runner import run_suite

    path = tmp_path / "s.json"
    path.write_text(json.dumps({"name": "s", "defaults": {"data": {"name": "digits"}, "model": {"name": "mlp", "hidden": [8]}, "epochs": 2, "batch_size": 64},
                                "recipes": [{"name": "ce"}]}))
    run_suite(str(path), tmp_path / "r.sqlite", progress=False)
    with ResultsStore(tmp_path / "r.sqlite") as s:
        [row] = s.results()
    assert row["curves"]["epoch"] == [1, 2] and "curves" not in (row["extra"] or {})
    hw = row["hardware"]
    assert hw["cpu_count"] == os.cpu_count() and hw["torch_threads"] >= 1 and hw["cpu"] and hw["python"]


# -- the HTML in a browser -----------------------------------------------------------------------


def test_report_html_in_headless_chromium(tmp_path):
    from chromium import chromium, console_errors, requested_urls, require_chromium

    require_chromium()
    db = tmp_path / "r.sqlite"
    _lt_store(db)
    _noise_store(db)
    paths = write_report(db, tmp_path / "rep")
    n_figures = len(os.listdir(tmp_path / "rep" / "figures"))
    assert n_figures == 6  # lt: curves, per-class, reliability; noise: curves, noise rate, reliability (balanced classes: no per-class figure)
    page = Path(paths["html"]).read_text(encoding="utf-8")
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # self-contained
    with chromium() as driver:
        driver.get(Path(paths["html"]).as_uri())
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
        info = driver.execute_script(
            """
            document.querySelectorAll('details').forEach(d => d.open = true);
            const imgs = [...document.querySelectorAll('img')];
            return {text: document.body.innerText, all: document.body.textContent,
                    imgs: imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width, i.src.slice(0, 26)]),
                    tables: document.querySelectorAll('table').length, code: document.querySelectorAll('code').length,
                    strong: [...document.querySelectorAll('td strong')].map(s => s.textContent),
                    font: getComputedStyle(document.body).fontFamily};
            """
        )
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
        if os.environ.get("LOSSATLAS_REPORT_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["LOSSATLAS_REPORT_SCREENSHOT"])
        errors = console_errors(driver)
        urls = requested_urls(driver)
    # no raw Markdown anywhere on the page, inside the closed parts included
    for text in (info["text"], info["all"]):
        for raw in ("`", "**", "|---", "![", "](", "| ---", "\\|"):
            assert raw not in text, (raw, text[max(0, text.find(raw) - 80) : text.find(raw) + 80])
    assert re.search(r"\n\s*\|", info["text"]) is None  # no Markdown table rows
    # every figure present, loaded and laid out
    assert len(info["imgs"]) == n_figures
    for complete, width, height, shown, src in info["imgs"]:
        assert complete and width > 0 and height > 0 and shown > 100 and src.startswith("data:image/svg+xml"), (complete, width, height, shown, src)
    assert info["tables"] >= 6 and info["code"] > 0 and any(s.startswith("tie") for s in info["strong"])
    assert "system-ui" in info["font"]
    assert not errors, f"console errors: {errors}"
    assert urls, "no request recorded"
    foreign = [u for u in urls if not u.startswith(("file:", "data:", "about:", "chrome:", "chrome-untrusted:", "devtools:"))]
    assert not foreign, f"requests outside the report file: {foreign}"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
