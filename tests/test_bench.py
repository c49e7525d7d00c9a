"""lossatlas bench: recipes, models, schedules, the SQLite store, the task, runner, report, CLI.

Everything runs on tiny data (digits or small MNIST-1D, 1-2 epochs) to stay fast on 2 cores.
The kill/resume and two-runner tests are in tests/test_bench_resume.py.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re

import numpy as np
import pytest
import torch

from lossatlas.bench import models, training
from lossatlas.bench.recipes import builtin_suites, load_suite, validate_recipe
from lossatlas.bench.store import ResultsStore, RunKey
from lossatlas.bench.tasks import available_tasks, get_task

TINY = {
    "name": "tiny",
    "data": {"name": "digits"},
    "model": {"name": "mlp", "hidden": [16]},
    "epochs": 1,
    "batch_size": 64,
}


# -- recipes ---------------------------------------------------------------------------------
def test_builtin_suites_validate():
    assert {"quick", "lt", "noise"} <= set(builtin_suites())
    lt = load_suite("lt")
    names = {r.name for r in lt.recipes}
    assert {"ce", "focal", "cb_focal", "ldam_drw", "logit_adjustment", "balanced_softmax", "vs"} <= names
    for r in lt.recipes:
        assert r.seeds == 3 and r.config["data"]["longtail"]["imbalance_ratio"] == 100
    noise = load_suite("noise")
    kinds = {(r.config["data"]["noise"]["type"], r.config["data"]["noise"]["rate"]) for r in noise.recipes}
    assert kinds == {("symmetric", 0.4), ("pair_flip", 0.4)}
    for tag in ("sym40", "asym40"):
        assert {f"{tag}_{m}" for m in ("ce", "gce", "sce", "logitclip")} <= {r.name for r in noise.recipes}
    quick = load_suite("quick")
    assert len(quick.recipes) >= 3 and len({r.hash for r in quick.recipes}) == len(quick.recipes)


def test_noise_rates_suite_runs_each_method_over_the_rates():
    """The report's accuracy-vs-noise-rate lines need each method at several rates with every
    other setting equal (a line compares like with like)."""
    suite = load_suite("noise_rates")
    by_loss: dict[str, dict[float, dict[str, object]]] = {}
    for r in suite.recipes:
        noise = r.config["data"]["noise"]
        assert noise["type"] == "symmetric"
        rest = {k: v for k, v in r.config.items() if k not in ("data", "name")}
        rest["data"] = {k: v for k, v in r.config["data"].items() if k != "noise"}
        by_loss.setdefault(json.dumps(r.config["loss"], sort_keys=True), {})[noise["rate"]] = rest
    assert len(by_loss) == 4
    for rates in by_loss.values():
        assert sorted(rates) == [0.2, 0.4, 0.6]
        configs = [json.dumps(c, sort_keys=True) for c in rates.values()]
        assert len(set(configs)) == 1, "only the noise rate may differ along a line"


def test_recipe_hash_defaults_and_identity():
    a = validate_recipe(dict(TINY), "s")
    assert a.config["loss"] == {"id": "cross_entropy"} and a.config["optimizer"]["name"] == "sgd"
    assert validate_recipe({**TINY, "optimizer": {"name": "sgd"}}, "s").hash == a.hash  # explicit defaults: same recipe
    assert validate_recipe({**TINY, "seeds": 5}, "s").hash == a.hash  # seeds are not part of the identity
    assert validate_recipe({**TINY, "epochs": 2}, "s").hash != a.hash
    assert validate_recipe(dict(TINY), "other").hash != a.hash
    assert re.fullmatch(r"[0-9a-f]{16}", a.hash)


@pytest.mark.parametrize("change, match", [
    ({"epochs": 0}, "epochs"),
    ({"lr": 0.1}, "unknown fields"),
    ({"loss": {"id": "no_such_loss"}}, "no_such_loss"),
    ({"loss": {"id": "focal", "gama": 2}}, "gama"),
    ({"loss": {"id": "drw"}}, "weighting entry"),
    ({"weighting": {"id": "drw", "start_fraction": 2}}, "start_fraction"),
    ({"data": {"name": "npz"}}, "data.path"),
    ({"data": {"name": "digits", "longtail": {"imbalance_ratio": 0.5}}}, "imbalance_ratio"),
    ({"data": {"name": "digits", "noise": {"type": "uniform", "rate": 0.2}}}, "data.noise"),
    ({"model": {"name": "vgg"}}, "model.name"),
    ({"optimizer": {"name": "sgd", "lr": -1}}, "optimizer.lr"),
    ({"schedule": {"name": "step", "milestones": [0.9, 0.5]}}, "milestones"),
    ({"name": "has space"}, "name"),
    ({"task": "nope"}, "unknown task"),
])
def test_recipe_errors_name_the_field(change, match):
    with pytest.raises(ValueError, match=match):
        validate_recipe({**TINY, **change})


def test_suite_file_defaults_merge_and_errors(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"name": "mine", "defaults": {**TINY, "weighting": {"id": "effective_number"}},
                                "recipes": [{"name": "a"}, {"name": "b", "weighting": None, "loss": {"id": "focal"}}]}))
    s = load_suite(str(path))
    a, b = s.recipes
    assert s.name == "mine" and a.config["weighting"]["id"] == "effective_number" and b.config["weighting"] is None
    assert b.config["loss"]["id"] == "focal" and b.config["data"]["name"] == "digits"
    single = tmp_path / "one.json"
    single.write_text(json.dumps(TINY))
    assert load_suite(str(single)).name == "one"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_suite(str(tmp_path / "bad.json"))
    (tmp_path / "dup.json").write_text(json.dumps({"recipes": [TINY, TINY]}))
    with pytest.raises(ValueError, match="unique"):
        load_suite(str(tmp_path / "dup.json"))
    with pytest.raises(ValueError, match="neither a built-in suite"):
        load_suite("no-such-suite")


def test_task_plugin_interface():
    assert "classification" in available_tasks()
    assert callable(get_task("classification").run)
    with pytest.raises(ValueError, match="unknown task"):
        get_task("not_a_task")


# -- models and schedules ----------------------------------------------------------------------
def test_models_shapes_and_cosine_head():
    x = torch.randn(4, 40)
    assert models.build_model({"name": "cnn1d"}, (40,), 10)(x).shape == (4, 10)
    assert models.build_model({"name": "mlp", "hidden": [8]}, (40,), 3)(x).shape == (4, 3)
    cos = models.build_model({"name": "cnn1d", "classifier": "cosine"}, (40,), 10)(x)
    assert cos.abs().max() <= 1.0 + 1e-5
    net = models.build_model({"name": "resnet32"}, (3, 32, 32), 7)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 31  # 1 + 3 stages x 5 blocks x 2
    with pytest.raises(ValueError, match="image"):
        models.build_model({"name": "resnet32"}, (40,), 10)
    with pytest.raises(ValueError, match="bad option"):
        models.build_model({"name": "mlp", "depth": 3}, (40,), 10)


@pytest.mark.parametrize("spec, check", [
    ({"name": "step", "milestones": [0.5, 0.75], "gamma": 0.1}, lambda lrs: np.allclose([lrs[0], lrs[50], lrs[80]], [1.0, 0.1, 0.01])),
    ({"name": "cosine", "warmup_epochs": 1}, lambda lrs: lrs[0] < lrs[9] and abs(lrs[10] - 1.0) < 1e-9 and lrs[-1] < 0.01),
    ({"name": "onecycle"}, lambda lrs: max(lrs) == pytest.approx(1.0, rel=1e-3) and lrs[-1] < 1e-3),
])
def test_schedules(spec, check):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = training.build_optimizer([p], training.validate_optimizer({"name": "sgd", "lr": 1.0}))
    sched = training.build_schedule(opt, training.validate_schedule(spec), epochs=10, steps_per_epoch=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert check(lrs)


# -- results store -----------------------------------------------------------------------------
def _add(store, n=3):
    store.add_runs((f"h{i}", 0, "s", f"m{i}", "classification", {"i": i}) for i in range(n))


def test_store_claims_are_exclusive_and_finish_is_owned(tmp_path):
    db = tmp_path / "r.sqlite"
    a, b = ResultsStore(db), ResultsStore(db)
    _add(a)
    assert a.add_runs([("h0", 0, "s", "m0", "classification", {})]) == 0  # never duplicated
    r1, r2, r3 = a.claim("host:1:a"), b.claim("host:2:b"), a.claim("host:1:a")
    assert len({r1["recipe_hash"], r2["recipe_hash"], r3["recipe_hash"]}) == 3
    assert b.claim("host:2:b") is None
    key = RunKey(r1["recipe_hash"], 0)
    assert not b.finish(key, "host:2:b", {"accuracy": 1.0}, wall_time_s=0, version="v", torch_version="t", device="cpu")
    assert a.finish(key, "host:1:a", {"accuracy": 0.5, "per_class_accuracy": [0.5, float("nan")], "note": "x"},
                    wall_time_s=1, version="v", torch_version="t", device="cpu")
    assert not a.finish(key, "host:1:a", {"accuracy": 0.9}, wall_time_s=1, version="v", torch_version="t", device="cpu")
    [row] = a.results()
    assert row["metrics"] == {"accuracy": 0.5} and row["per_class_accuracy"] == [0.5, None] and row["extra"] == {"note": "x"}
    assert a.counts() == {"pending": 0, "running": 2, "done": 1, "failed": 0}
    a.close(), b.close()


def test_store_reclaims_dead_and_failed_runs_not_done_ones(tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    store = ResultsStore(tmp_path / "r.sqlite")
    _add(store, 2)
    dead_owner = f"{socket.gethostname()}:{dead}:zz"
    live_owner = f"{socket.gethostname()}:{os.getpid()}:me"
    first, second = store.claim(live_owner), store.claim(live_owner)
    assert first["recipe_hash"] != second["recipe_hash"]
    store.fail(RunKey(first["recipe_hash"], 0), live_owner, "boom")
    store.conn.execute("UPDATE runs SET owner = ? WHERE status = 'running'", (dead_owner,))  # its process died mid-run
    again = store.claim("me:1:x")  # the failed one, then the one whose owner died
    again2 = store.claim("me:1:x")
    assert {again["recipe_hash"], again2["recipe_hash"]} == {"h0", "h1"} and again["attempts"] == 2
    assert store.claim("me:1:x", retry_failed=True) is None
    for r in (again, again2):
        store.finish(RunKey(r["recipe_hash"], 0), "me:1:x", {"accuracy": 1.0}, wall_time_s=0, version="v", torch_version="t", device="cpu")
    assert store.claim("other:2:y") is None  # done rows are never run again
    live = ResultsStore(tmp_path / "r2.sqlite")
    _add(live, 1)
    live.claim(f"{socket.gethostname()}:{os.getpid()}:alive")
    assert live.claim("other:3:z") is None  # a live owner's fresh claim is respected
    store.close(), live.close()


def test_store_retries_a_failure_once_per_invocation(tmp_path):
    import time

    with ResultsStore(tmp_path / "r.sqlite") as store:
        _add(store, 1)
        started = time.time()
        row = store.claim("me:1:x", failed_before=started)
        store.fail(RunKey(row["recipe_hash"], 0), "me:1:x", "boom")
        # failed during this invocation: not taken again (the runner looped here before)
        assert store.claim("me:1:x", failed_before=started) is None
        # a later invocation (start time after the failure) retries it, unless told not to
        assert store.claim("me:2:y", retry_failed=False, failed_before=time.time() + 1) is None
        assert store.claim("me:2:y", failed_before=time.time() + 1)["attempts"] == 2


# -- the classification task ---------------------------------------------------------------------
def test_classification_run_metrics_and_cpu_determinism():
    task = get_task("classification")
    recipe = {**TINY, "data": {"name": "digits", "longtail": {"imbalance_ratio": 10}},
              "loss": {"id": "ldam", "scale": 1.0}, "weighting": {"id": "drw", "start_fraction": 0.5}, "epochs": 2}
    calls = []
    out = task.run(recipe, 0, torch.device("cpu"), lambda d, t, m="": calls.append((d, t)))
    assert calls == [(1, 2), (2, 2)]
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "ece", "many_shot_accuracy", "train_time_s"):
        assert key in out and isinstance(out[key], float)
    counts = out["class_counts"]
    assert counts[0] / counts[-1] == pytest.approx(10, rel=0.15) and out["n_train"] == sum(counts)
    assert len(out["per_class_accuracy"]) == 10 and set(out["reliability"]) >= {"bin_lower", "accuracy", "count"}
    assert out["balanced_accuracy"] == pytest.approx(np.nanmean(out["per_class_accuracy"]), abs=1e-6)
    again = task.run(recipe, 0, torch.device("cpu"))
    assert again["accuracy"] == out["accuracy"] and again["ece"] == out["ece"]  # deterministic on CPU
    other = task.run(recipe, 1, torch.device("cpu"))
    assert other["class_counts"] != counts or other["ece"] != out["ece"]  # the seed changes the run


def test_classification_with_noise_records_realised_rate():
    out = get_task("classification").run({**TINY, "data": {"name": "digits", "noise": {"type": "symmetric", "rate": 0.4}}}, 0, torch.device("cpu"))
    assert 0.3 < out["noise_rate_realised"] < 0.45


def test_classification_trains_on_npz_and_cifar_format(tmp_path):
    import pickle

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-2, 1, (40, 4)), rng.normal(2, 1, (40, 4))])
    np.savez(tmp_path / "mine.npz", features=x, labels=np.repeat([0, 1], 40))
    task = get_task("classification")
    out = task.run({**TINY, "data": {"name": "npz", "path": str(tmp_path / "mine.npz")}, "epochs": 5, "batch_size": 16}, 0, torch.device("cpu"))
    assert out["accuracy"] > 0.9  # separable blobs are learnt
    for name in ("data_batch_1", "test_batch"):
        with open(tmp_path / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (8, 3072), dtype=np.uint8), b"labels": list(range(8))}, f)
    out = task.run({"name": "c", "data": {"name": "cifar", "path": str(tmp_path)}, "epochs": 1, "batch_size": 4,
                    "model": {"name": "resnet32", "blocks_per_stage": 1}}, 0, torch.device("cpu"))
    assert out["n_test"] == 8 and len(out["per_class_accuracy"]) == 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_classification_on_cuda():
    out = get_task("classification").run(dict(TINY), 0, torch.device("cuda"))
    assert out["accuracy"] > 0.0


# -- runner, report, CLI ---------------------------------------------------------------------------
def test_run_suite_resume_and_report(tmp_path):
    from lossatlas.bench.report import write_report
    from lossatlas.bench.runner import run_suite

    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"name": "t", "defaults": {**TINY, "seeds": 2, "data": {"name": "digits", "longtail": {"imbalance_ratio": 10}}},
                                "recipes": [{"name": "ce"}, {"name": "la", "loss": {"id": "logit_adjusted"}}]}))
    db = tmp_path / "r.sqlite"
    first = run_suite(str(path), db, progress=False)
    assert (first.total, first.done, first.ran, first.failed) == (4, 4, 4, 0)
    second = run_suite(str(path), db, progress=False)
    assert (second.ran, second.skipped, second.done) == (0, 4, 4)
    more = run_suite(str(path), db, seeds=3, progress=False)  # --seeds 3 adds seed 2 only
    assert (more.total, more.ran) == (6, 2)
    with ResultsStore(db) as s:
        rows = s.results()
    assert len(rows) == 6 and len({(r["recipe_hash"], r["seed"]) for r in rows}) == 6
    assert all(r["version"] and r["wall_time_s"] > 0 and r["attempts"] == 1 for r in rows)

    paths = write_report(db, tmp_path / "rep")
    with open(paths["csv"]) as f:
        table = list(csv.DictReader(f))
    assert {"suite", "method", "seeds", "balanced_accuracy_pct_mean", "balanced_accuracy_pct_std", "accuracy_pct_mean", "ece_pct_mean"} <= set(table[0])
    assert sorted((r["suite"], r["method"], r["seeds"]) for r in table) == [("t", "ce", "3"), ("t", "la", "3")]
    bal = [float(r["balanced_accuracy_pct_mean"]) for r in table]
    assert bal == sorted(bal, reverse=True)
    ce = [r for r in rows if r["method"] == "ce"]
    assert float(next(r for r in table if r["method"] == "ce")["balanced_accuracy_pct_mean"]) == pytest.approx(
        100 * np.mean([r["metrics"]["balanced_accuracy"] for r in ce]), rel=1e-8)  # in percent
    page = open(paths["html"], encoding="utf-8").read()
    imgs = re.findall(r"src='data:image/svg\+xml;base64,([^']+)'", page)
    assert len(imgs) == 3 and all(b"<svg" in base64.b64decode(i)[:2000] for i in imgs)  # curves, per-class, reliability
    assert "https://" not in page and "http://" not in page.replace("http://www.w3.org/", "")  # self-contained (SVG namespaces aside)
    md = open(paths["markdown"], encoding="utf-8").read()
    assert "| 1 | ce |" in md or "| 1 | la |" in md
    assert "figures/t_per_class.svg" in md and os.path.exists(tmp_path / "rep" / "figures" / "t_per_class.svg")


def test_failed_run_is_recorded_and_suite_continues(tmp_path):
    from lossatlas.bench.runner import run_suite

    path = tmp_path / "s.json"
    # lr 1e30 makes the model diverge: that run fails once (not retried in a loop), the other still runs
    path.write_text(json.dumps({"name": "f", "defaults": TINY, "recipes": [{"name": "bad", "optimizer": {"name": "sgd", "lr": 1e30}}, {"name": "ok"}]}))
    summary = run_suite(str(path), tmp_path / "r.sqlite", progress=False)
    assert (summary.done, summary.failed) == (1, 1)
    with ResultsStore(tmp_path / "r.sqlite") as s:
        [bad] = s.results(status="failed")
    assert "non-finite" in bad["error"]


def test_cli_help_and_errors(tmp_path, capsys):
    from lossatlas.cli import build_parser, main

    parser = build_parser()
    for argv, words in ((["bench", "run", "--help"], ["--db", "--seeds", "SUITE|RECIPE_FILE", "resume"]),
                        (["bench", "report", "--help"], ["--db", "--out", "leaderboard.csv"])):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        text = capsys.readouterr().out
        assert all(w in text for w in words), text
    assert main(["bench", "report", "--db", str(tmp_path / "none.sqlite"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["bench", "run", "no-such-suite", "--db", str(tmp_path / "x.sqlite")]) == 2
    assert main(["bench", "suites"]) == 0 and "lt" in capsys.readouterr().out


def test_report_ranks_other_tasks_by_their_primary_metric(tmp_path):
    from lossatlas.bench.report import write_report

    db = tmp_path / "r.sqlite"
    with ResultsStore(db) as s:
        for i, (method, r1) in enumerate((("a", 0.5), ("b", 0.9), ("a", 0.7))):
            s.add_runs([(f"h{method}", i, "ret", method, "metric", {"loss": {"id": method}})])
            row = s.claim("o:1:x")
            s.finish(RunKey(row["recipe_hash"], row["seed"]), "o:1:x", {"recall@1": r1, "map@r": r1 / 2, "primary_metric": "recall@1"},
                     wall_time_s=1, version="v", torch_version="t", device="cpu")
    paths = write_report(db, tmp_path / "rep")
    with open(paths["csv"]) as f:
        table = list(csv.DictReader(f))
    assert [(r["method"], r["rank"], r["rank_by"]) for r in table] == [("b", "1", "recall@1"), ("a", "2", "recall@1")]
    assert float(table[1]["recall@1_pct_mean"]) == pytest.approx(60.0)  # recall@k in percent, as every fraction
    assert "recall@1" in open(paths["markdown"]).read()


def test_rank_metric_fallback_skips_timings_counts_and_training_loss():
    from lossatlas.bench.report import _rank_metric

    runs = [{"metrics": {"final_train_loss": 9.0, "eval_time_s": 1.0, "n_train": 5, "map@r": 0.3, "recall@1": 0.5}, "extra": None}]
    assert _rank_metric(runs) == "map@r"
    assert _rank_metric([{**runs[0], "extra": {"primary_metric": "recall@1"}}]) == "recall@1"


def test_report_describes_pieces_without_a_registry_id(tmp_path):
    # the metric task's P x K sampler and its miners have no registry "id": the report
    # once failed on them with KeyError('id')
    from lossatlas.bench.report import write_report

    db = tmp_path / "r.sqlite"
    recipe = {"loss": {"id": "triplet_margin", "margin": 0.2}, "sampler": {"p": 7, "k": 16}, "miner": {"name": "semi_hard"}}
    with ResultsStore(db) as s:
        s.add_runs([("h", 0, "ret", "triplet_semihard", "metric", recipe)])
        row = s.claim("o:1:x")
        s.finish(RunKey(row["recipe_hash"], 0), "o:1:x", {"recall@1": 0.8, "map@r": 0.5, "primary_metric": "map@r"},
                 wall_time_s=1, version="v", torch_version="t", device="cpu")
    paths = write_report(db, tmp_path / "rep")
    md = open(paths["markdown"]).read()
    assert "| miner |" in md and "semi_hard" in md and "k=16, p=7" in md and "| weighting |" not in md
    with open(paths["csv"]) as f:
        [r] = list(csv.DictReader(f))
    assert r["miner"] == "semi_hard" and r["rank_by"] == "map@r"


def test_classification_stage2_decoupled_methods():
    """A recipe's ``stage2`` runs the registered two-stage method after stage 1 (issue 23, A10 / A11)."""
    task = get_task("classification")
    base = {**TINY, "data": {"name": "digits", "longtail": {"imbalance_ratio": 10}}, "epochs": 2}
    one = task.run(base, 0, torch.device("cpu"))
    tau = task.run({**base, "stage2": {"id": "tau_norm", "tau": 1.0}}, 0, torch.device("cpu"))
    # the same stage 1 (CPU-deterministic), then a different classifier: the predictions change, not the data
    assert tau["class_counts"] == one["class_counts"] and tau["per_class_accuracy"] != one["per_class_accuracy"]
    assert tau["final_train_loss"] == one["final_train_loss"]  # tau_norm trains nothing
    wb = task.run({**base, "stage2": {"id": "weight_balancing", "epochs": 1, "loss": {"id": "focal"},
                                      "weighting": {"id": "effective_number"}}}, 0, torch.device("cpu"))
    assert wb["final_train_loss"] != one["final_train_loss"] and wb["per_class_accuracy"] != one["per_class_accuracy"]
    with pytest.raises(ValueError, match="stage2"):
        task.validate({**base, "stage2": {"id": "focal"}})
    with pytest.raises(ValueError, match="stage2"):
        task.validate({**base, "stage2": {"id": "crt", "nope": 1}})
    with pytest.raises(ValueError, match="linear"):
        task.validate({**base, "model": {"name": "mlp", "classifier": "cosine"}, "stage2": {"id": "crt"}})
