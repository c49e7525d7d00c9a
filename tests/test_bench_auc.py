"""The ``auc`` benchmark suite and its ``binary`` task: imbalanced one-vs-rest data built
offline, one-logit models trained with BCE / focal / AUC-M + PESG / compositional AUC +
PDSCA / SOAP, test AUROC and AP, per-task report tables.

The end-to-end test runs every recipe of the real suite for one epoch on shrunken data
(a few seconds); the real suite is ``lossatlas bench run auc`` (about 10 minutes).
"""

from __future__ import annotations

import copy
import csv
import json
import math
from importlib import resources

import numpy as np
import pytest
import torch

from lossatlas.bench import training
from lossatlas.bench.recipes import load_suite, validate_recipe
from lossatlas.bench.store import ResultsStore, RunKey
from lossatlas.bench.tasks import binary, get_task
from lossatlas.data import datasets as ds

METHODS = {"ce", "focal", "ce_dual", "aucm_pesg", "compositional_pdsca", "soap"}
FRACTIONS = {0.01, 0.05, 0.1}
TINY = {"name": "tiny", "task": "binary", "data": {"name": "digits", "positive_class": 8, "positive_fraction": 0.05},
        "model": {"name": "mlp", "hidden": [16]}, "epochs": 2, "batch_size": 64}


def _suite_json():
    return json.loads((resources.files("lossatlas.bench") / "suites" / "auc.json").read_text(encoding="utf-8"))


# -- the suite's recipes ------------------------------------------------------------------------
def test_auc_suite_covers_every_method_task_and_fraction():
    suite = load_suite("auc")
    seen = set()
    for r in suite.recipes:
        c = r.config
        assert c["task"] == "binary" and r.seeds == 3
        seen.add((c["data"]["name"], c["data"]["positive_fraction"], c["label"]))
    assert seen == {(d, f, m) for d in ("mnist1d", "digits") for f in FRACTIONS for m in METHODS}
    by_label = {r.config["label"]: r.config for r in suite.recipes if r.config["data"]["name"] == "mnist1d"
                and r.config["data"]["positive_fraction"] == 0.01}
    # LibAUC's recipes: AUC-M with PESG, compositional AUC with PDSCA, SOAP; the AUC losses get DualSampler batches
    assert by_label["aucm_pesg"]["loss"]["id"] == "aucm" and by_label["aucm_pesg"]["optimizer"]["name"] == "pesg"
    assert by_label["compositional_pdsca"]["optimizer"]["name"] == "pdsca"
    assert by_label["soap"]["loss"]["id"] == "ap_soap"
    for m in ("aucm_pesg", "compositional_pdsca", "soap", "ce_dual"):
        assert by_label[m]["sampler"]["name"] == "dual"
    assert by_label["ce"]["sampler"] is None and by_label["ce"]["loss"]["id"] == "bce"
    # the same number of epochs (hence steps) for every method of a task
    for d in ("mnist1d", "digits"):
        assert len({r.config["epochs"] for r in suite.recipes if r.config["data"]["name"] == d}) == 1


def test_binary_subsample_hits_the_fraction_keeps_negatives_and_follows_the_seed():
    y = np.r_[np.zeros(990, dtype=np.int64), np.ones(300, dtype=np.int64)]
    rng = np.random.default_rng(0)
    y = y[rng.permutation(y.size)]
    keep = binary.binary_subsample(y, 0.01, seed=3)
    assert np.all(np.diff(keep) > 0) and (y[keep] == 0).sum() == 990  # every negative kept
    assert (y[keep] == 1).sum() == 10  # round(0.01 / 0.99 * 990)
    other = binary.binary_subsample(y, 0.01, seed=4)
    assert not np.array_equal(keep, other) and np.array_equal(keep, binary.binary_subsample(y, 0.01, seed=3))
    # more positives asked for than exist: all positives kept, negatives drawn
    keep = binary.binary_subsample(y, 0.5, seed=0)
    assert (y[keep] == 1).sum() == 300 and (y[keep] == 0).sum() == 300
    assert np.array_equal(binary.binary_subsample(y, None, seed=0), np.arange(y.size))


@pytest.mark.parametrize("name", ["mnist1d", "digits"])
def test_the_one_percent_task_really_has_one_percent_positives(name):
    suite = load_suite("auc")
    for r in suite.recipes:
        c = r.config["data"]
        if c["name"] != name or r.config["label"] != "ce":
            continue
        full = ds.load_dataset(name, **{k: v for k, v in c.items() if k not in ("name", "positive_class", "positive_fraction", "seed")})
        n_pos_full = int((full.y_train == c["positive_class"]).sum())
        n_neg_full = full.y_train.size - n_pos_full
        for seed in (0, 1):
            x_tr, y_tr, x_te, y_te = binary.build_data(c, seed)
            frac = y_tr.mean()
            assert abs(frac - c["positive_fraction"]) <= 1.0 / y_tr.size, (c, frac)
            if y_tr.sum() < n_pos_full:  # the fraction comes from dropping positives only
                assert (y_tr == 0).sum() == n_neg_full
            else:  # or, above the natural fraction, negatives only
                assert y_tr.sum() == n_pos_full and c["positive_fraction"] == 0.1
            # the test split keeps its natural fraction (about 10 % for one class of ten)
            assert y_te.size == full.y_test.size and y_te.sum() == (full.y_test == c["positive_class"]).sum()
            assert 0.07 < y_te.mean() < 0.13
            assert x_tr.shape[0] == y_tr.size and set(np.unique(y_tr)) == {0, 1}
        if c["positive_fraction"] == 0.01:
            assert y_tr.sum() >= 10  # at least ten positives to learn from


# -- training: indices, loss parameters, decay --------------------------------------------------
def test_index_aware_losses_get_each_rows_training_position(monkeypatch):
    """ap_soap's state is indexed by dataset position: the index of every row the loss sees
    is the row's position in the training set (its label there matches), and repeats of a
    row within a DualSampler batch reach the loss once."""
    seen = []
    real_create = binary.create

    class Spy(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, scores, target, index):
            seen.append((target.clone(), index.clone()))
            return self.inner(scores, target, index=index)

    monkeypatch.setattr(binary, "create", lambda spec, extra, available: Spy(real_create(spec, extra, available))
                        if spec.get("id") == "ap_soap" else real_create(spec, extra, available))
    recipe = {**TINY, "data": {**TINY["data"], "positive_fraction": 0.01}, "loss": {"id": "ap_soap"},
              "sampler": {"name": "dual", "sampling_rate": 0.5}, "epochs": 1}
    out = get_task("binary").run(recipe, 0, torch.device("cpu"))
    _, y_tr, _, _ = binary.build_data(validate_recipe(recipe).config["data"], 0)
    assert seen and out["n_skipped_batches"] == 0
    assert out["n_repeats_dropped"] > 0  # 11 positives cycled into 32-positive batches
    for target, index in seen:
        assert index.unique().numel() == index.numel()
        assert torch.equal(target, torch.as_tensor(y_tr)[index])
        assert int(target.sum()) == int(y_tr.sum())  # every positive, once


def test_loss_parameters_are_trained_and_pesg_ascends_alpha():
    """A plain optimiser gets the loss's a, b, alpha; PESG gets the loss (a, b descend,
    alpha ascends, as min-max requires)."""
    import lossatlas as la

    model = torch.nn.Linear(3, 1)
    crit = la.create("aucm")
    opt = training.build_optimizer(model.parameters(), training.validate_optimizer({"name": "adam", "lr": 0.01}), loss=crit)
    ids = {id(p) for g in opt.param_groups for p in g["params"]}
    assert {id(crit.a), id(crit.b), id(crit.alpha)} <= ids and {id(p) for p in model.parameters()} <= ids
    pesg = training.build_optimizer(model.parameters(), training.validate_optimizer({"name": "pesg", "lr": 0.1}), loss=crit)
    x, y = torch.randn(16, 3), torch.tensor([1, 0, 0, 0] * 4)
    before = (crit.a.detach().clone(), crit.alpha.detach().clone())
    pesg.zero_grad()
    crit(torch.sigmoid(model(x)).squeeze(1), y).backward()
    pesg.step()
    assert not torch.equal(crit.a.detach(), before[0]) and float(crit.alpha.detach()) > float(before[1])
    with pytest.raises(ValueError, match="unknown fields"):
        training.validate_optimizer({"name": "pesg", "lr": 0.1, "gama": 1})
    with pytest.raises(ValueError, match="needs the loss"):
        training.build_optimizer(model.parameters(), {"name": "pesg"})


def test_decay_learning_rate_divides_lr_or_restarts_the_stage():
    p = torch.nn.Parameter(torch.zeros(2))
    sgd = torch.optim.SGD([p], lr=0.5)
    training.decay_learning_rate(sgd, 10)
    assert sgd.param_groups[0]["lr"] == pytest.approx(0.05)
    calls = []

    class Staged(torch.optim.SGD):
        def update_regularizer(self, decay_factor=None):
            calls.append(decay_factor)

    staged = Staged([p], lr=0.5)
    training.decay_learning_rate(staged, 10)
    assert calls == [10] and staged.param_groups[0]["lr"] == 0.5  # the optimiser does it itself


def test_binary_task_is_deterministic_and_seeded():
    task = get_task("binary")
    calls = []
    a = task.run(dict(TINY), 0, torch.device("cpu"), lambda d, t, m="": calls.append((d, t)))
    assert calls == [(1, 2), (2, 2)]
    assert a["group"] == "digits 8-vs-rest 5%" and a["label"] == "tiny" and a["primary_metric"] == "auroc"
    b = task.run(dict(TINY), 0, torch.device("cpu"))
    assert (a["auroc"], a["ap"]) == (b["auroc"], b["ap"])
    c = task.run(dict(TINY), 1, torch.device("cpu"))
    assert c["n_train_pos"] == a["n_train_pos"] and (c["auroc"], c["ap"]) != (a["auroc"], a["ap"])


def test_reported_auroc_and_ap_match_closed_forms():
    """The task's metrics are AUROC = P(s+ > s-) (+ half the ties) and AP = the mean
    precision at each positive's rank, computed here from the definitions."""
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.1).astype(np.int64)
    s = rng.random(300) + 0.3 * y
    s[:20] = 0.5  # ties
    m = binary._scores_metrics(s, y)
    pos, neg = s[y == 1], s[y == 0]
    auroc = ((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
    # precision at each positive's threshold, ties counted together (the step-function AP)
    ap = np.mean([(y[s >= t]).sum() / (s >= t).sum() for t in pos])
    assert m["auroc"] == pytest.approx(auroc, abs=1e-12) and m["ap"] == pytest.approx(ap, abs=1e-12)


@pytest.mark.parametrize("change, match", [
    ({"data": {"name": "cifar"}}, "mnist1d' or 'digits"),
    ({"data": {"name": "digits", "positive_fraction": 1.5}}, "positive_fraction"),
    ({"data": {"name": "digits", "positive_class": 10}}, "positive_class"),
    ({"data": {"name": "digits", "num_samples": 10}}, "unknown options"),
    ({"loss": {"id": "cross_entropy"}}, "binary task needs"),
    ({"sampler": {"name": "square"}}, "sampler.name"),
    ({"sampler": {"name": "dual", "rate": 0.5}}, "unknown options"),
    ({"decay_epochs": [0.75, 0.5]}, "decay_epochs"),
    ({"decay_factor": 0.5}, "decay_factor"),
    ({"schedule": {"name": "cosine"}}, "unknown fields"),
    ({"batch_size": 1}, "batch_size"),
])
def test_binary_recipe_errors_name_the_field(change, match):
    with pytest.raises(ValueError, match=match):
        validate_recipe({**TINY, **change})


# -- the whole suite, tiny, end to end ---------------------------------------------------------------
def test_tiny_auc_suite_runs_every_method_and_round_trips_the_store(tmp_path):
    from lossatlas.bench.report import write_report
    from lossatlas.bench.runner import run_suite

    suite = _suite_json()
    recipes = []
    for r in suite["recipes"]:
        if r["data"]["positive_fraction"] != 0.01 and r["label"] != "ce":
            continue  # every method on the 1 % tasks; the 5 % and 10 % tasks with ce
        r = copy.deepcopy(r)
        if r["data"]["name"] == "mnist1d":
            r["data"]["num_samples"] = 1000
            r["model"] = {"name": "cnn1d", "channels": 8}
        else:
            r["model"] = {"name": "mlp", "hidden": [16]}
        r["epochs"] = 1
        recipes.append(r)
    suite.update(name="auc_tiny", recipes=recipes)
    path = tmp_path / "auc_tiny.json"
    path.write_text(json.dumps(suite))
    returned = {}
    summary = run_suite(str(path), tmp_path / "r.sqlite", seeds=1, progress=False,
                        on_run_done=lambda res: returned.__setitem__(res["method"], res))
    assert (summary.done, summary.failed) == (len(recipes), 0)
    with ResultsStore(tmp_path / "r.sqlite") as store:
        rows = store.results()
    assert {r["method"] for r in rows} == {r["name"] for r in recipes}
    for row in rows:
        m, ret = row["metrics"], returned[row["method"]]
        assert 0.0 <= m["auroc"] <= 1.0 and 0.0 <= m["ap"] <= 1.0
        assert m["n_skipped_batches"] == 0
        for k, v in m.items():  # a stored run round-trips: numbers as returned, labels in extra
            assert v == ret[k], k
        assert row["extra"]["group"] == ret["group"] and row["extra"]["label"] == ret["label"]
        assert row["recipe"]["data"]["positive_fraction"] in FRACTIONS
        frac = m["n_train_pos"] / m["n_train"]
        assert abs(frac - row["recipe"]["data"]["positive_fraction"]) <= 1.0 / m["n_train"]
    assert {(row["extra"]["label"]) for row in rows if row["recipe"]["data"]["positive_fraction"] == 0.01} == METHODS

    paths = write_report(tmp_path / "r.sqlite", tmp_path / "rep")
    md = open(paths["markdown"], encoding="utf-8").read()
    assert "### auroc in % by method and task" in md and "### ap in % by method and task" in md
    assert "### Task mnist1d 5-vs-rest 1%" in md and "### Task digits 8-vs-rest 10%" in md
    with open(paths["csv"]) as f:
        table = list(csv.DictReader(f))
    assert {r["group"] for r in table} == {binary.group_label(r["data"]) for r in recipes}
    for g in {r["group"] for r in table}:  # ranks count within a task, by AUROC
        sub = sorted((r for r in table if r["group"] == g), key=lambda r: int(r["rank"]))
        assert [int(r["rank"]) for r in sub] == list(range(1, len(sub) + 1))
        aurocs = [float(r["auroc_pct_mean"]) for r in sub]
        assert aurocs == sorted(aurocs, reverse=True)


def test_report_pivots_methods_by_task_with_the_best_in_bold(tmp_path):
    from lossatlas.bench.report import write_report

    db = tmp_path / "r.sqlite"
    runs = [("t1", "a", 0.6), ("t1", "a", 0.8), ("t1", "b", 0.9), ("t2", "a", 0.95), ("t2", "b", 0.5)]
    with ResultsStore(db) as s:
        for i, (group, label, auroc) in enumerate(runs):
            s.add_runs([(f"{group}{label}", i, "auc", f"{group}_{label}", "binary", {"loss": {"id": "bce"}, "optimizer": {"name": "adam", "lr": 0.001}})])
            row = s.claim("o:1:x")
            s.finish(RunKey(row["recipe_hash"], row["seed"]), "o:1:x",
                     {"auroc": auroc, "ap": auroc / 2, "n_train": 10, "group": group, "label": label, "primary_metric": "auroc"},
                     wall_time_s=1, version="v", torch_version="t", device="cpu")
    paths = write_report(db, tmp_path / "rep")
    md = open(paths["markdown"], encoding="utf-8").read()
    lines = md.splitlines()
    head = lines.index("### auroc in % by method and task (mean ± sd over seeds, the value alone for a single seed; best in bold; mean rank by auroc)")
    assert lines[head + 2] == "| method | mean rank | t1 | t2 |"
    std_a = float(np.std([0.6, 0.8], ddof=1))
    rows = {ln.split(" | ")[0].strip("| "): ln for ln in lines[head + 4 : head + 6]}
    assert rows["a"] == f"| a | 1.5 | 70.0 ± {100 * std_a:.1f} | **95.0** |"  # percent; one seed: its value alone
    assert rows["b"] == "| b | 1.5 | **90.0** | 50.0 |"
    assert "adam(lr=0.001)" in md and "<strong>95.0</strong>" in open(paths["html"], encoding="utf-8").read()
    assert math.isfinite(std_a)
