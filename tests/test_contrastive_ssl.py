"""The ``ssl`` benchmark task and suite (contrastive pre-training on MNIST-1D)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("mnist1d")

from lossatlas.bench.recipes import load_suite  # noqa: E402
from lossatlas.bench.tasks import ssl  # noqa: E402

TINY = {"task": "ssl", "name": "t", "data": {"num_samples": 600}, "model": {"name": "mlp", "hidden": [32], "embedding_size": 16},
        "batch_size": 64, "epochs": 1, "probe": {"max_iter": 20}}


def test_suite_loads_and_every_recipe_validates() -> None:
    suite = load_suite("ssl")
    names = {r.name for r in suite.recipes}
    assert {"untrained", "infonce_clip", "siglip", "barlow_twins", "wmse", "infonce_gradcache"} <= names
    for r in suite.recipes:
        assert r.config["task"] == "ssl"
        assert r.config["loss"]["id"]
    assert next(r for r in suite.recipes if r.name == "untrained").config["epochs"] == 0


def test_validate_fills_defaults_and_rejects_bad_fields() -> None:
    r = ssl.validate({"task": "ssl", "name": "x"})
    assert r["loss"] == {"id": "infonce"} and r["augment"] == {"shift": 10, "scale": 0.3, "amplitude": 0.2, "noise": 0.3}
    assert r["batch_size"] == 256 and r["chunk_size"] is None
    assert ssl.validate({"task": "ssl", "name": "x", "loss": {"id": "clip"}})["loss"]["id"] == "infonce"
    with pytest.raises(ValueError, match="pair loss"):
        ssl.validate({"task": "ssl", "name": "x", "loss": {"id": "focal"}})
    with pytest.raises(ValueError, match="unknown options"):
        ssl.validate({"task": "ssl", "name": "x", "loss": {"id": "infonce", "tau": 1}})
    with pytest.raises(ValueError, match="augment"):
        ssl.validate({"task": "ssl", "name": "x", "augment": {"blur": 1}})
    with pytest.raises(ValueError, match="epochs"):
        ssl.validate({"task": "ssl", "name": "x", "epochs": -1})
    with pytest.raises(ValueError, match="batch_size"):
        ssl.validate({"task": "ssl", "name": "x", "batch_size": 0})
    with pytest.raises(ValueError, match="unknown fields"):
        ssl.validate({"task": "ssl", "name": "x", "sampler": {}})


def test_augment_shifts_scales_and_adds_noise() -> None:
    x = torch.arange(20.0).repeat(3, 1)
    g = torch.Generator().manual_seed(0)
    shifted = ssl.augment(x, shift=3, scale=0.0, noise=0.0, generator=g)
    for row in shifted:  # a circular shift keeps the multiset of values
        assert torch.equal(row.sort().values, x[0])
    amp = ssl.augment(x, shift=0, scale=0.0, noise=0.0, generator=g, amplitude=0.5)
    ratio = amp[:, 1:] / x[:, 1:]
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio)) and ((ratio >= 0.5) & (ratio <= 1.5)).all()
    stretched = ssl.augment(x, shift=0, scale=0.3, noise=0.0, generator=g)
    centre = x[0, 9:11].mean()  # time scaling about the centre keeps a linear ramp linear through it
    assert torch.allclose(stretched[:, 9:11].mean(1), centre.expand(3), atol=1e-5)
    assert (stretched.diff(dim=1) >= -1e-6).all()  # monotone ramp stays monotone
    same = ssl.augment(x, 0, 0.0, 0.0, g)
    assert torch.equal(same, x)
    a1 = ssl.augment(x, 2, 0.1, 0.1, torch.Generator().manual_seed(5))
    a2 = ssl.augment(x, 2, 0.1, 0.1, torch.Generator().manual_seed(5))
    assert torch.equal(a1, a2)


def test_tiny_run_reports_probe_and_retrieval() -> None:
    out = ssl.run(TINY, seed=0, device=torch.device("cpu"))
    for key in ("probe_accuracy", "recall@1", "map@r", "train_time_s", "final_train_loss"):
        assert key in out
    assert 0.0 <= out["probe_accuracy"] <= 1.0 and 0.0 <= out["recall@1"] <= 1.0
    assert out["primary_metric"] == "probe_accuracy"
    assert len(out["per_class_accuracy"]) == 10
    assert out["final_train_loss"] == out["final_train_loss"]  # trained: not NaN
    curves = out["curves"]  # per-epoch training loss for the report, the last one the final
    assert curves["epoch"] == list(range(1, TINY["epochs"] + 1)) and curves["train_loss"][-1] == out["final_train_loss"]


def test_untrained_baseline_does_not_train() -> None:
    out = ssl.run({**TINY, "epochs": 0}, seed=0, device=torch.device("cpu"))
    assert out["final_train_loss"] != out["final_train_loss"] and 0.0 <= out["probe_accuracy"] <= 1.0


def test_gradcache_recipe_trains_like_the_plain_one() -> None:
    plain = ssl.run({**TINY, "loss": {"id": "infonce", "temperature": 0.1}}, seed=1, device=torch.device("cpu"))
    cached = ssl.run({**TINY, "loss": {"id": "infonce", "temperature": 0.1}, "chunk_size": 16}, seed=1, device=torch.device("cpu"))
    assert cached["final_train_loss"] == pytest.approx(plain["final_train_loss"], rel=1e-4)
