"""lossatlas.metrics across processes: 2 gloo ranks on localhost, each updating with an uneven
shard, must compute exactly what one process computes on the whole data."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchmetrics")
import torch.distributed as dist  # noqa: E402

from gloo import run_gloo  # noqa: E402

WORLD = 2


def _make_metrics(c: int, d: int, w: torch.Tensor, **kw):
    from lossatlas.metrics import (
        AverageKAccuracy,
        BinnedCalibration,
        ClasswiseECE,
        NeuralCollapse,
        RetrievalMetrics,
        ShotAccuracy,
    )

    counts = [300, 150, 100, 50, 20, 19, 5][:c]
    return {
        "shots": (ShotAccuracy(c, train_class_counts=counts, **kw), "logits"),
        "binned": (BinnedCalibration(n_bins=10, **kw), "logits"),
        "classwise": (ClasswiseECE(c, n_bins=10, **kw), "logits"),
        "avgk": (AverageKAccuracy(k=2, **kw), "logits"),
        "nc": (NeuralCollapse(c, classifier_weight=w, **kw), "features"),
        "retrieval": (RetrievalMetrics(ks=(1, 4), **kw), "retrieval"),
        "retrieval_ref": (RetrievalMetrics(ks=(1, 4), metric="euclidean", **kw), "retrieval_ref"),
    }


def _update(metric, how, logits, target, feats):
    if how == "logits":
        metric.update(logits, target)
    elif how == "features":
        metric.update(feats, target, logits=logits)
    elif how == "retrieval":
        metric.update(feats, target)
    else:  # queries and references (references: shifted features, odd labels moved to the next class)
        metric.update(feats, target, feats + 0.3, (target + (target % 2)) % logits.shape[1])


def _as_float_dict(result):
    out = {}
    for k, v in result.items():
        v = torch.as_tensor(v, dtype=torch.float64)
        out[k] = v.flatten().tolist()
    return out


def _worker(rank: int) -> None:
    g = torch.Generator().manual_seed(0)
    n, c, d = 70, 7, 5
    target = torch.randint(0, c, (n,), generator=g)
    feats = torch.randn(n, d, generator=g, dtype=torch.float64) + 2 * torch.randn(c, d, generator=g, dtype=torch.float64)[target]
    w = torch.randn(c, d, generator=g, dtype=torch.float64)
    logits = feats @ w.T
    cut = 29  # uneven shards: 29 and 41 samples, each fed in two batches
    lo, hi = (0, cut) if rank == 0 else (cut, n)
    synced = _make_metrics(c, d, w)
    single = _make_metrics(c, d, w, sync_on_compute=False)
    for name, (metric, how) in synced.items():
        mid = (lo + hi) // 2
        for a, b in ((lo, mid), (mid, hi)):
            _update(metric, how, logits[a:b], target[a:b], feats[a:b])
        ref_metric, _ = single[name]
        _update(ref_metric, how, logits, target, feats)
        got, want = _as_float_dict(metric.compute()), _as_float_dict(ref_metric.compute())
        assert got.keys() == want.keys(), name
        for k in want:
            torch.testing.assert_close(
                torch.tensor(got[k]), torch.tensor(want[k]), rtol=1e-9, atol=1e-12, equal_nan=True, msg=f"{name}.{k}"
            )
    # the local (unsynced) view of a shard really differs: the sync did something
    local = _make_metrics(c, d, w, sync_on_compute=False)["shots"][0]
    local.update(logits[lo:hi], target[lo:hi])
    assert not torch.equal(local.compute()["per_class_accuracy"].nan_to_num(-1),
                           single["shots"][0].compute()["per_class_accuracy"].nan_to_num(-1))


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_metrics_sync_across_two_gloo_processes(tmp_path):
    run_gloo(_worker, tmp_path, WORLD)
