"""lossatlas.integrations.lightning.loggable, and lossatlas losses and metrics in a real Lightning run.

The expected metric values are computed here from scratch (per-class accuracy with bincount,
ECE from its definition in float64), not with lossatlas.metrics.
"""

from __future__ import annotations

import csv
import doctest
import math

import numpy as np
import pytest
import torch

import lossatlas as la
from lossatlas.integrations import lightning as lmod
from lossatlas.integrations.lightning import loggable

pytest.importorskip("torchmetrics", reason="lossatlas.metrics needs torchmetrics")

# ---------- loggable on its own ----------


def test_vectors_split_into_named_float32_scalars_nan_kept():
    acc = torch.tensor([1.0, 0.25, float("nan")], dtype=torch.float64)
    out = loggable({"per_class_accuracy": acc, "balanced_accuracy": torch.tensor(0.625, dtype=torch.float64)}, prefix="val/")
    assert list(out) == ["val/per_class_accuracy/0", "val/per_class_accuracy/1", "val/per_class_accuracy/2", "val/balanced_accuracy"]
    for v in out.values():
        assert v.dtype == torch.float32 and v.dim() == 0
    assert float(out["val/per_class_accuracy/1"]) == 0.25 and float(out["val/balanced_accuracy"]) == 0.625
    assert math.isnan(float(out["val/per_class_accuracy/2"]))


def test_values_are_copies():
    state = torch.tensor([3.0, 4.0])
    out = loggable({"count": state, "total": state.sum()})
    state.zero_()  # a metric's reset() / update() works in place on its states
    assert [float(out["count/0"]), float(out["count/1"]), float(out["total"])] == [3.0, 4.0, 7.0]
    f32 = torch.tensor(2.0)
    assert loggable({"x": f32})["x"] is not f32


def test_matrices_nested_mappings_numbers_lists_and_metadata():
    out = loggable({
        "confusion": torch.tensor([[1, 2], [3, 4]]),
        "nested": {"a": 1, "b": [0.5, 1.5]},
        "flag": True,
        "np": np.float64(0.125),
        "arr": np.array([7, 8]),
        "input": "logits",  # metadata: left out
        "nothing": None,
    })
    expected = {"confusion/0/0": 1.0, "confusion/0/1": 2.0, "confusion/1/0": 3.0, "confusion/1/1": 4.0,
                "nested/a": 1.0, "nested/b/0": 0.5, "nested/b/1": 1.5, "flag": 1.0, "np": 0.125, "arr/0": 7.0, "arr/1": 8.0}
    assert {k: float(v) for k, v in out.items()} == expected


def test_single_value_takes_prefix_as_name():
    assert {k: float(v) for k, v in loggable(torch.tensor(0.5), prefix="val/zeta").items()} == {"val/zeta": 0.5}
    assert list(loggable(torch.tensor([1.0, 2.0]), prefix="val/per_class")) == ["val/per_class/0", "val/per_class/1"]
    assert list(loggable(torch.tensor([1.0, 2.0]), prefix="pc/")) == ["pc/0", "pc/1"]
    assert list(loggable({"ece": 0.1}, prefix="val_")) == ["val_ece"]


def test_bad_input():
    with pytest.raises(ValueError, match="prefix"):
        loggable(torch.tensor(1.0))
    with pytest.raises(ValueError, match="'a/0'"):
        loggable({"a": torch.tensor([1.0]), "a/0": 2.0})
    with pytest.raises(TypeError, match="'z'"):
        loggable({"z": torch.tensor([1 + 2j])})
    with pytest.raises(TypeError, match="'o'"):
        loggable({"o": object()})
    with pytest.raises(TypeError, match="'l'"):
        loggable({"l": ["a", "b"]})
    with pytest.raises(TypeError, match="prefix"):
        loggable({"a": 1.0}, prefix=3)


def test_lossatlas_metric_results():
    m = la.metrics.ClasswiseECE(3, n_bins=4)
    m.update(torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), torch.tensor([0, 0]))
    result = m.compute()
    out = loggable(result)
    assert set(out) == {"classwise_ece", "per_class_ece/0", "per_class_ece/1", "per_class_ece/2"}
    for k in range(3):
        torch.testing.assert_close(out[f"per_class_ece/{k}"], result["per_class_ece"][k].float(), equal_nan=True)
    diagram = la.metrics.reliability_diagram(torch.tensor([[4.0, 0.0], [0.0, 4.0]]), torch.tensor([0, 0]), n_bins=10)
    out = loggable(diagram, prefix="diag/")
    assert "diag/input" not in out and len([k for k in out if k.startswith("diag/count/")]) == 10


def test_doctests():
    assert doctest.testmod(lmod, optionflags=doctest.ELLIPSIS).failed == 0


# ---------- a Lightning run ----------

lightning = pytest.importorskip("lightning", reason="pip install 'lossatlas[lightning]'")

COUNTS = [150, 50, 5]  # many (> 100), medium, few (< 20) shot
N_BINS = 5


class _LitClassifier(lightning.LightningModule):
    def __init__(self, flatten=loggable):
        super().__init__()
        self.flatten = flatten
        self.net = torch.nn.Linear(4, 3)
        self.crit = la.create("logit_adjusted", class_counts=COUNTS)
        self.shots = la.metrics.ShotAccuracy(3, train_class_counts=COUNTS)
        self.calibration = la.metrics.BinnedCalibration(n_bins=N_BINS)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.crit(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.shots.update(logits, y)
        self.calibration.update(logits, y)

    def on_validation_epoch_end(self):
        self.log_dict(self.flatten(self.shots.compute(), prefix="val/"))
        self.log_dict(self.flatten(self.calibration.compute(), prefix="val/"))
        self.shots.reset()
        self.calibration.reset()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _data():
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(4, 3, generator=g)
    y_train = torch.multinomial(torch.tensor(COUNTS, dtype=torch.float), 205, replacement=True, generator=g)
    x_train = torch.randn(205, 4, generator=g) + teacher.T[y_train]
    y_val = torch.tensor([0, 1] * 20)  # no class-2 sample: its accuracy and the few-shot accuracy are NaN
    x_val = torch.randn(40, 4, generator=g) + teacher.T[y_val]
    loader = torch.utils.data.DataLoader
    ds = torch.utils.data.TensorDataset
    return loader(ds(x_train, y_train), batch_size=32, shuffle=True), loader(ds(x_val, y_val), batch_size=16), (x_val, y_val)


def _reference_metrics(logits, y):
    """Per-class accuracy and ECE (Guo et al. 2017: Σ_b |Σ_{i in b} (correct_i - conf_i)| / N, equal-width bins)."""
    probs = torch.softmax(logits.double(), dim=1)
    conf, pred = probs.max(dim=1)
    correct = (pred == y).double()
    per_class = [float(correct[y == k].mean()) if bool((y == k).any()) else float("nan") for k in range(3)]
    ece = 0.0
    for b in range(N_BINS):
        lo, hi = b / N_BINS, (b + 1) / N_BINS
        in_bin = (conf >= lo) & ((conf < hi) if b < N_BINS - 1 else (conf <= hi))
        ece += abs(float((correct[in_bin] - conf[in_bin]).sum()))
    return per_class, ece / len(y)


def _trainer(logger):
    return lightning.Trainer(
        max_epochs=2, accelerator="cpu", devices=1, logger=logger, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1,
    )


def test_lightning_rejects_the_raw_results():
    """What loggable is for: log_dict of a metric result with vector entries fails in Lightning."""
    train, val, _ = _data()
    model = _LitClassifier(flatten=lambda result, prefix: {prefix + k: v for k, v in result.items()})
    with pytest.raises(ValueError, match="per_class_accuracy"):
        _trainer(logger=False).fit(model, train, val)


def test_lightning_logs_lossatlas_metrics(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    torch.manual_seed(0)
    train, val, (x_val, y_val) = _data()
    model = _LitClassifier()
    trainer = _trainer(CSVLogger(str(tmp_path)))
    initial = model.net.weight.detach().clone()
    trainer.fit(model, train, val)
    assert not torch.equal(initial, model.net.weight)

    with torch.no_grad():
        per_class, ece = _reference_metrics(model(x_val), y_val)
    assert 0 < per_class[0] < 1 or 0 < per_class[1] < 1  # not a trivial all-right / all-wrong model
    metrics = trainer.callback_metrics
    for k in range(2):
        assert float(metrics[f"val/per_class_accuracy/{k}"]) == pytest.approx(per_class[k], abs=1e-6)
    assert math.isnan(float(metrics["val/per_class_accuracy/2"])) and math.isnan(float(metrics["val/few_shot_accuracy"]))
    assert float(metrics["val/balanced_accuracy"]) == pytest.approx((per_class[0] + per_class[1]) / 2, abs=1e-6)
    assert float(metrics["val/many_shot_accuracy"]) == pytest.approx(per_class[0], abs=1e-6)
    assert float(metrics["val/medium_shot_accuracy"]) == pytest.approx(per_class[1], abs=1e-6)
    assert float(metrics["val/ece"]) == pytest.approx(ece, abs=1e-6)
    assert sum(float(metrics[f"val/count/{b}"]) for b in range(N_BINS)) == len(y_val)
    assert math.isfinite(float(metrics["train/loss"]))
    assert "val/ece" in trainer.logged_metrics and "val/per_class_accuracy/0" in trainer.logged_metrics

    # the logger got one row of validation metrics per epoch
    with open(trainer.logger.log_dir + "/metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("val/ece")]
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert float(rows[-1]["val/per_class_accuracy/0"]) == pytest.approx(per_class[0], abs=1e-6)
    assert rows[-1]["val/per_class_accuracy/2"].lower() == "nan"
