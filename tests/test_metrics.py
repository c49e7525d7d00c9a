"""lossatlas.metrics: every metric written here against a direct numpy computation on random
data, batch accumulation == single pass, hand-built shot-split / worst-class cases, and the
evaluate() entry point against torchmetrics / scikit-learn."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("torchmetrics")

from lossatlas.metrics import (  # noqa: E402
    AverageKAccuracy,
    BinnedCalibration,
    ClasswiseECE,
    NeuralCollapse,
    RetrievalMetrics,
    ShotAccuracy,
    confusion_matrix,
    evaluate,
    per_class_accuracy,
    ranking_metrics,
    reliability_diagram,
    retrieval_metrics,
    shot_groups,
)


def _data(n=200, c=7, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    target = torch.randint(0, c, (n,), generator=g)
    return logits, target


def _softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _batched(metric, *arrays, sizes=(1, 13, 50, 0, 136), **kw):
    """Feed ``arrays`` to ``metric.update`` in uneven batches (an empty one included)."""
    start = 0
    for s in sizes:
        metric.update(*(a[start : start + s] for a in arrays), **kw)
        start += s
    assert start == arrays[0].shape[0]
    return metric.compute()


def _close_dicts(a, b, keys=None):
    for k in keys or b:
        x, y = np.asarray(a[k], dtype=np.float64), np.asarray(b[k], dtype=np.float64)
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12, equal_nan=True, err_msg=k)


def test_import_lossatlas_does_not_import_metrics():
    code = "import sys, lossatlas; assert 'lossatlas.metrics' not in sys.modules and 'torchmetrics' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- shot split / worst class


def _preds_from(confusion):
    """Targets and predictions realising a confusion matrix (rows true, columns predicted)."""
    t, p = [], []
    for i, row in enumerate(confusion):
        for j, n in enumerate(row):
            t += [i] * n
            p += [j] * n
    return torch.tensor(p), torch.tensor(t)


def test_shot_split_hand_built():
    # class 0 many (150), 1 and 2 medium (100, 20: both boundaries), 3 few (19)
    confusion = [[3, 1, 0, 0], [1, 1, 0, 0], [0, 0, 5, 0], [0, 2, 0, 0]]
    preds, target = _preds_from(confusion)
    m = ShotAccuracy(4, train_class_counts=[150, 100, 20, 19])
    m.update(preds, target)
    r = m.compute()
    assert r["per_class_accuracy"].tolist() == [0.75, 0.5, 1.0, 0.0]
    assert float(r["many_shot_accuracy"]) == 0.75
    assert float(r["medium_shot_accuracy"]) == 0.75  # mean of per-class accuracies, not of samples (6/7)
    assert float(r["few_shot_accuracy"]) == 0.0
    assert float(r["worst_class_accuracy"]) == 0.0
    assert float(r["balanced_accuracy"]) == pytest.approx(2.25 / 4)


def test_shot_split_empty_split_and_missing_test_class():
    # no many-shot class; class 2 has no test sample and is left out of every mean
    confusion = [[2, 0, 0], [1, 1, 0], [0, 0, 0]]
    preds, target = _preds_from(confusion)
    m = ShotAccuracy(3, train_class_counts=[50, 10, 5])
    m.update(preds, target)
    r = m.compute()
    assert math.isnan(float(r["many_shot_accuracy"]))
    assert float(r["medium_shot_accuracy"]) == 1.0
    assert float(r["few_shot_accuracy"]) == 0.5
    assert math.isnan(float(r["per_class_accuracy"][2]))
    assert float(r["worst_class_accuracy"]) == 0.5
    assert float(r["balanced_accuracy"]) == 0.75


def test_shot_thresholds_configurable():
    g = shot_groups([5, 10, 11, 30], many_threshold=10, few_threshold=6)
    assert g["many"].tolist() == [False, False, True, True]
    assert g["medium"].tolist() == [False, True, False, False]
    assert g["few"].tolist() == [True, False, False, False]
    d = shot_groups([0, 19, 20, 100, 101])  # zero training samples is few-shot, not an error
    assert d["few"].tolist() == [True, True, False, False, False]
    assert d["many"].tolist() == [False, False, False, False, True]
    with pytest.raises(ValueError, match="few_threshold"):
        shot_groups([1, 2], many_threshold=5, few_threshold=10)
    with pytest.raises(ValueError, match="train_class_counts"):
        shot_groups([1, -2])


def test_shot_accuracy_random_vs_numpy_and_batched():
    logits, target = _data(n=250, c=9, seed=3)
    counts = np.array([400, 150, 101, 100, 60, 20, 19, 3, 0])
    z, t = logits.numpy(), target.numpy()
    pred = z.argmax(1)
    acc = np.array([(pred[t == c] == c).mean() if (t == c).any() else np.nan for c in range(9)])
    ref = {
        "per_class_accuracy": acc,
        "balanced_accuracy": np.nanmean(acc),
        "worst_class_accuracy": np.nanmin(acc),
        "many_shot_accuracy": np.nanmean(acc[counts > 100]),
        "medium_shot_accuracy": np.nanmean(acc[(counts >= 20) & (counts <= 100)]),
        "few_shot_accuracy": np.nanmean(acc[counts < 20]),
    }
    one = ShotAccuracy(9, train_class_counts=counts)
    one.update(logits, target)
    _close_dicts(one.compute(), ref)
    _close_dicts(_batched(ShotAccuracy(9, train_class_counts=counts), logits, target, sizes=(7, 0, 100, 143)), ref)
    assert per_class_accuracy(logits, target, 9) == pytest.approx(acc.tolist(), nan_ok=True)


# ---------------------------------------------------------------- calibration


def _numpy_binned(probs, target, n_bins):
    conf, pred = probs.max(1), probs.argmax(1)
    hit = (pred == target).astype(float)
    idx = np.minimum((conf * n_bins).astype(int), n_bins - 1)  # [b/n, (b+1)/n), 1.0 in the last
    ece, mce, acc_b, conf_b, cnt = 0.0, 0.0, [], [], []
    for b in range(n_bins):
        sel = idx == b
        cnt.append(sel.sum())
        if sel.any():
            gap = abs(hit[sel].mean() - conf[sel].mean())
            ece += sel.mean() * gap
            mce = max(mce, gap)
            acc_b.append(hit[sel].mean())
            conf_b.append(conf[sel].mean())
        else:
            acc_b.append(np.nan)
            conf_b.append(np.nan)
    return {"ece": ece, "mce": mce, "accuracy": acc_b, "confidence": conf_b, "count": cnt}


@pytest.mark.parametrize("n_bins", [15, 4])
def test_binned_calibration_vs_numpy_and_torchmetrics(n_bins):
    from torchmetrics.classification import MulticlassCalibrationError

    logits, target = _data(n=300, c=6, seed=1)
    probs = _softmax(logits.numpy())
    ref = _numpy_binned(probs, target.numpy(), n_bins)
    one = BinnedCalibration(n_bins=n_bins)
    one.update(logits, target)
    r = one.compute()
    _close_dicts(r, ref)
    assert r["bin_lower"][1] == pytest.approx(1 / n_bins) and r["bin_upper"][-1] == 1.0
    _close_dicts(_batched(BinnedCalibration(n_bins=n_bins), logits, target, sizes=(100, 0, 1, 199)), ref)
    for norm, key in (("l1", "ece"), ("max", "mce")):
        tm = MulticlassCalibrationError(num_classes=6, n_bins=n_bins, norm=norm)
        assert float(tm(torch.from_numpy(probs).float(), target)) == pytest.approx(float(r[key]), abs=1e-6)
    d = reliability_diagram(logits, target, n_bins=n_bins)
    assert d["count"] == [int(c) for c in ref["count"]] and d["ece"] == pytest.approx(ref["ece"])
    assert set(d) >= {"bin_lower", "bin_upper", "confidence", "accuracy", "count"}


def test_calibration_confidence_one_goes_to_last_bin():
    logits = torch.tensor([[1e4, 0.0], [0.0, 1e4]])
    r = reliability_diagram(logits, torch.tensor([0, 0]), n_bins=10)
    assert r["count"][-1] == 2 and r["accuracy"][-1] == 0.5 and r["ece"] == pytest.approx(0.5)
    assert r["mce"] == pytest.approx(0.5)


def test_classwise_ece_vs_numpy():
    logits, target = _data(n=240, c=5, seed=2)
    probs, t = _softmax(logits.numpy()), target.numpy()
    n_bins = 10
    per_class = []
    for c in range(5):
        p, y = probs[:, c], (t == c).astype(float)
        idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
        per_class.append(sum((idx == b).mean() * abs(y[idx == b].mean() - p[idx == b].mean()) for b in range(n_bins) if (idx == b).any()))
    ref = {"per_class_ece": per_class, "classwise_ece": np.mean(per_class)}
    one = ClasswiseECE(5, n_bins=n_bins)
    one.update(logits, target)
    _close_dicts(one.compute(), ref)
    _close_dicts(_batched(ClasswiseECE(5, n_bins=n_bins), logits, target, sizes=(3, 0, 200, 37)), ref)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_calibration_perfect_and_empty():
    # one-hot probabilities that are always right: every calibration error is 0
    probs = torch.eye(4, dtype=torch.float64).repeat(3, 1)
    target = torch.arange(4).repeat(3)
    m = BinnedCalibration(input="probs")
    m.update(probs, target)
    assert float(m.compute()["ece"]) == 0.0 and float(m.compute()["mce"]) == 0.0
    cw = ClasswiseECE(4, input="probs")
    cw.update(probs, target)
    assert float(cw.compute()["classwise_ece"]) == 0.0
    assert math.isnan(float(BinnedCalibration().compute()["ece"]))
    assert math.isnan(float(ClasswiseECE(3).compute()["classwise_ece"]))


# ---------------------------------------------------------------- average-k


@pytest.mark.parametrize("k", [1, 2, 4])
def test_average_k_vs_numpy(k):
    logits, target = _data(n=150, c=8, seed=4)
    probs, t = _softmax(logits.numpy()), target.numpy()
    n = len(t)
    lam = np.sort(probs.ravel())[::-1][n * k - 1]
    topk = np.argsort(-probs, axis=1)[:, :k]
    ref = {
        "top_k_accuracy": np.mean([t[i] in topk[i] for i in range(n)]),
        "average_k_accuracy": np.mean(probs[np.arange(n), t] >= lam),
        "threshold": lam,
        "average_set_size": (probs >= lam).sum() / n,
    }
    assert ref["average_set_size"] == k  # continuous data: no ties
    one = AverageKAccuracy(k=k)
    one.update(logits, target)
    _close_dicts(one.compute(), ref)
    _close_dicts(_batched(AverageKAccuracy(k=k), logits, target, sizes=(60, 0, 1, 89)), ref)
    fixed = AverageKAccuracy(k=k, threshold=0.3)
    fixed.update(logits, target)
    r = fixed.compute()
    assert float(r["average_set_size"]) == pytest.approx((probs >= 0.3).sum() / n)
    assert float(r["average_k_accuracy"]) == pytest.approx(np.mean(probs[np.arange(n), t] >= 0.3))


def test_average_k_equals_top_k_when_sets_cannot_adapt():
    # identical score rows: the global threshold gives every sample the same k labels
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]]).repeat(10, 1) + torch.arange(4.0) * 1e-3
    target = torch.arange(10) % 4
    m = AverageKAccuracy(k=2)
    m.update(logits, target)
    r = m.compute()
    assert float(r["top_k_accuracy"]) == float(r["average_k_accuracy"]) == pytest.approx(0.6)


# ---------------------------------------------------------------- neural collapse


def _numpy_nc(h, y, w, pred, c):
    mus = np.stack([h[y == k].mean(0) for k in range(c)])
    mu_g = mus.mean(0)
    m_c = mus - mu_g
    sw = sum(np.outer(h[i] - mus[y[i]], h[i] - mus[y[i]]) for i in range(len(y))) / len(y)
    sb = m_c.T @ m_c / c
    nc1 = np.trace(sw @ np.linalg.pinv(sb, rcond=1e-10)) / c

    def equinorm(v):
        n = np.linalg.norm(v, axis=1)
        return n.std(ddof=1) / n.mean()

    def equiangular(v):
        u = v / np.linalg.norm(v, axis=1, keepdims=True)
        g = u @ u.T + 1 / (c - 1)
        return np.abs(g[~np.eye(c, dtype=bool)]).mean()

    ncc = np.array([np.argmin(((mus - x) ** 2).sum(1)) for x in h])
    return {
        "nc1": nc1,
        "nc2_equinorm_features": equinorm(m_c),
        "nc2_equiangular_features": equiangular(m_c),
        "nc2_equinorm_weights": equinorm(w),
        "nc2_equiangular_weights": equiangular(w),
        "nc3": ((w / np.linalg.norm(w) - m_c / np.linalg.norm(m_c)) ** 2).sum(),
        "nc4": (ncc != pred).mean(),
    }


@pytest.mark.parametrize("dim", [3, 12])  # D < C - 1 (pinv keeps D directions) and D > C
def test_neural_collapse_vs_numpy(dim):
    g = torch.Generator().manual_seed(5)
    c, n = 5, 120
    y = torch.randint(0, c, (n,), generator=g)
    h = torch.randn(n, dim, generator=g, dtype=torch.float64) + torch.randn(c, dim, generator=g, dtype=torch.float64)[y] * 2
    w = torch.randn(c, dim, generator=g, dtype=torch.float64)
    logits = h @ w.T
    ref = _numpy_nc(h.numpy(), y.numpy(), w.numpy(), logits.argmax(1).numpy(), c)
    one = NeuralCollapse(c, classifier_weight=w)
    one.update(h, y, logits=logits)
    r = one.compute()
    np.testing.assert_allclose(float(r["nc1"]), ref["nc1"], rtol=1e-8)
    _close_dicts({k: v for k, v in r.items() if k != "nc1"}, {k: v for k, v in ref.items() if k != "nc1"}, [k for k in ref if k != "nc1"])
    batched = _batched(NeuralCollapse(c, classifier_weight=w), h, y, logits, sizes=(30, 0, 1, 89))
    for k in ref:
        np.testing.assert_allclose(float(batched[k]), ref[k], rtol=1e-8, err_msg=k)
    # without logits, NC4 uses the classifier weight's own predictions: the same here
    no_logits = NeuralCollapse(c, classifier_weight=w)
    no_logits.update(h, y)
    assert float(no_logits.compute()["nc4"]) == pytest.approx(ref["nc4"])


def test_neural_collapse_on_a_simplex_etf_is_zero():
    c, d = 4, 6
    # an exact simplex ETF in R^d: the centred standard basis, rotated into d dimensions
    q, _ = torch.linalg.qr(torch.randn(d, c, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    etf = (torch.eye(c, dtype=torch.float64) - 1.0 / c) @ q.T  # [c, d]
    h = etf.repeat(5, 1) + 1e-9 * torch.randn(5 * c, d, dtype=torch.float64)
    y = torch.arange(c).repeat(5)
    m = NeuralCollapse(c, classifier_weight=3 * etf)
    m.update(h, y, logits=h @ etf.T)
    r = m.compute()
    for k, v in r.items():
        assert abs(float(v)) < 1e-6, (k, float(v))


def test_neural_collapse_errors():
    with pytest.raises(ValueError, match="feature_dim"):
        NeuralCollapse(3)
    m = NeuralCollapse(3, feature_dim=4)
    with pytest.raises(ValueError, match="dimension"):
        m.update(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="target"):
        m.update(torch.randn(2, 4), torch.tensor([0, 3]))
    m.update(torch.randn(4, 4), torch.tensor([0, 0, 0, 0]))  # one class present: undefined
    assert math.isnan(float(m.compute()["nc1"]))


# ---------------------------------------------------------------- retrieval


def _numpy_retrieval(q, ql, r, rl, ks, loo, metric="cosine"):
    if metric == "cosine":
        sims = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (r / np.linalg.norm(r, axis=1, keepdims=True)).T
    elif metric == "euclidean":
        sims = -np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(-1))
    else:
        sims = q @ r.T
    recall = {k: [] for k in ks}
    rprec, mapr = [], []
    for i in range(len(ql)):
        s = sims[i].copy()
        idx = np.arange(len(rl))
        if loo:
            s, idx = np.delete(s, i), np.delete(idx, i)
        order = idx[np.argsort(-s, kind="stable")]
        rel = (rl[order] == ql[i]).astype(float)
        R = int(rel.sum())
        if R == 0:
            continue
        for k in ks:
            recall[k].append(rel[:k].max())
        rprec.append(rel[:R].mean())
        mapr.append(sum(rel[:j + 1].mean() for j in range(R) if rel[j]) / R)
    out = {f"recall@{k}": np.mean(v) for k, v in recall.items()}
    out.update({"r_precision": np.mean(rprec), "map@r": np.mean(mapr)})
    return out


def test_retrieval_vs_numpy_leave_one_out_and_batched():
    g = torch.Generator().manual_seed(6)
    y = torch.randint(0, 5, (90,), generator=g)
    x = torch.randn(90, 8, generator=g, dtype=torch.float64) + torch.randn(5, 8, generator=g, dtype=torch.float64)[y]
    y[0] = 7  # a singleton class: R = 0, left out
    ks = (1, 2, 4, 8)
    ref = _numpy_retrieval(x.numpy(), y.numpy(), x.numpy(), y.numpy(), ks, loo=True)
    _close_dicts(retrieval_metrics(x, y, ks=ks), ref)
    _close_dicts(_batched(RetrievalMetrics(ks=ks), x, y, sizes=(40, 0, 1, 49)), ref)
    m = RetrievalMetrics(ks=ks)
    m.update(x, y)
    assert m.compute() == pytest.approx(retrieval_metrics(x, y, ks=ks))


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot"])
def test_retrieval_with_references_vs_numpy(metric):
    g = torch.Generator().manual_seed(7)
    q, ql = torch.randn(30, 6, generator=g), torch.randint(0, 4, (30,), generator=g)
    r, rl = torch.randn(70, 6, generator=g), torch.randint(0, 4, (70,), generator=g)
    ref = _numpy_retrieval(q.double().numpy(), ql.numpy(), r.double().numpy(), rl.numpy(), (1, 3), loo=False, metric=metric)
    _close_dicts(retrieval_metrics(q, ql, r, rl, ks=(1, 3), metric=metric), ref)
    m = RetrievalMetrics(ks=(1, 3), metric=metric)
    m.update(q[:10], ql[:10], r[:35], rl[:35])
    m.update(q[10:], ql[10:], r[35:], rl[35:])
    _close_dicts(m.compute(), ref)


def test_map_at_r_matches_pytorch_metric_learning():
    pml = pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    del pml
    g = torch.Generator().manual_seed(8)
    y = torch.randint(0, 4, (60,), generator=g)
    x = torch.randn(60, 8, generator=g) + torch.randn(4, 8, generator=g)[y]
    calc = AccuracyCalculator(
        include=("mean_average_precision_at_r", "r_precision", "precision_at_1"), knn_func=CustomKNN(CosineSimilarity())
    )
    peer = calc.get_accuracy(x, y, x, y, ref_includes_query=True)
    ours = retrieval_metrics(x, y, ks=(1,))
    assert ours["map@r"] == pytest.approx(peer["mean_average_precision_at_r"], rel=1e-5)
    assert ours["r_precision"] == pytest.approx(peer["r_precision"], rel=1e-5)
    assert ours["recall@1"] == pytest.approx(peer["precision_at_1"], rel=1e-5)


def test_retrieval_hand_built_map_at_r():
    # query 0 (label 0) ranks: ref label 0 at rank 1 and 3, label 1 at rank 2 -> R = 2,
    # MAP@R = (1/1 + 0) / 2 = 0.5 (the third position is beyond R), R-precision = 1/2
    q = torch.tensor([[1.0, 0.0]])
    r = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.5, 0.5]])
    out = retrieval_metrics(q, torch.tensor([0]), r, torch.tensor([0, 1, 0]), ks=(1, 2, 3))
    assert out == {"recall@1": 1.0, "recall@2": 1.0, "recall@3": 1.0, "r_precision": 0.5, "map@r": 0.5}


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_retrieval_errors():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="ref_emb"):
        retrieval_metrics(x, torch.tensor([0, 0, 1, 1]), x)
    with pytest.raises(ValueError, match="dimension"):
        retrieval_metrics(x, torch.tensor([0, 0, 1, 1]), torch.randn(4, 2), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="metric"):
        RetrievalMetrics(metric="manhattan")
    with pytest.raises(ValueError, match="query_labels"):
        retrieval_metrics(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="no queries"):
        RetrievalMetrics().compute()


# ---------------------------------------------------------------- evaluate (J1-J4 via torchmetrics)


def test_evaluate_keys_and_oracles():
    from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, f1_score, roc_auc_score

    logits, target = _data(n=300, c=6, seed=9)
    counts = [500, 120, 60, 30, 10, 2]
    r = evaluate(logits.float(), target, train_class_counts=counts)
    need = {"accuracy", "top5_accuracy", "balanced_accuracy", "macro_f1", "kappa", "ece", "mce", "classwise_ece",
            "worst_class_accuracy", "many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy", "auroc",
            "average_precision", "avg2_accuracy", "avg5_accuracy", "top2_accuracy"}
    assert need <= set(r) and all(isinstance(v, float) for v in r.values())
    z, t = logits.numpy(), target.numpy()
    pred = z.argmax(1)
    assert r["accuracy"] == pytest.approx((pred == t).mean())
    assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(t, pred))
    assert r["macro_f1"] == pytest.approx(f1_score(t, pred, average="macro"), abs=1e-6)
    assert r["kappa"] == pytest.approx(cohen_kappa_score(t, pred), abs=1e-6)
    assert r["auroc"] == pytest.approx(roc_auc_score(t, _softmax(z), multi_class="ovr", average="macro"), abs=1e-5)
    top5 = np.argsort(-z, axis=1)[:, :5]
    assert r["top5_accuracy"] == pytest.approx(np.mean([t[i] in top5[i] for i in range(len(t))]))
    assert r["ece"] == pytest.approx(_numpy_binned(_softmax(z), t, 15)["ece"], abs=1e-6)
    assert r["avg2_accuracy"] >= 0 and r["worst_class_accuracy"] <= r["balanced_accuracy"]
    assert confusion_matrix(logits, target).sum() == 300
    assert torch.equal(confusion_matrix(logits, target).diagonal(), torch.bincount(target[torch.from_numpy(pred == t)], minlength=6))


def test_evaluate_small_c_and_no_counts():
    logits, target = _data(n=40, c=3, seed=10)
    r = evaluate(logits, target)
    assert "top5_accuracy" not in r and "many_shot_accuracy" not in r and "avg5_accuracy" not in r
    assert "top2_accuracy" in r and "avg2_accuracy" in r
    assert "auroc" not in evaluate(logits, target, ranking=False)
    assert "top3_accuracy" in evaluate(logits, target, top_ks=(3,), average_ks=())


def test_evaluate_with_features_matches_neural_collapse():
    g = torch.Generator().manual_seed(11)
    y = torch.randint(0, 4, (80,), generator=g)
    h = torch.randn(80, 6, generator=g) + 3 * torch.randn(4, 6, generator=g)[y]
    w = torch.randn(4, 6, generator=g)
    r = evaluate(h @ w.T, y, features=h, classifier_weight=w)
    nc = NeuralCollapse(4, classifier_weight=w)
    nc.update(h, y, logits=h @ w.T)
    for k, v in nc.compute().items():
        assert r[k] == pytest.approx(float(v))
    assert {"nc1", "nc2_equinorm_features", "nc3", "nc4"} <= set(r)


def test_ranking_metrics_absent_class_is_nan_not_zero():
    logits, target = _data(n=60, c=4, seed=12)
    target[target == 3] = 0
    r = ranking_metrics(logits, target)
    assert math.isnan(float(r["auroc_per_class"][3]))
    assert float(r["auroc"]) == pytest.approx(float(r["auroc_per_class"][:3].mean()))
    from sklearn.metrics import average_precision_score, roc_auc_score

    probs, t = _softmax(logits.numpy()), target.numpy()
    for c in range(3):
        assert float(r["auroc_per_class"][c]) == pytest.approx(roc_auc_score(t == c, probs[:, c]), abs=1e-6)
        assert float(r["average_precision_per_class"][c]) == pytest.approx(average_precision_score(t == c, probs[:, c]), abs=1e-6)
    assert math.isnan(float(r["average_precision_per_class"][3]))


def test_evaluate_one_class_perfect():
    r = evaluate(torch.tensor([[5.0, 0.0], [5.0, 0.0]]), torch.tensor([0, 0]))
    assert r["accuracy"] == 1.0 and r["kappa"] == 1.0 and r["worst_class_accuracy"] == 1.0
    assert math.isnan(r["auroc"])  # one class only: no negatives


def test_bad_inputs():
    logits, target = _data(n=10, c=3)
    with pytest.raises(ValueError, match="empty"):
        evaluate(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="target"):
        evaluate(logits, target + 3)
    with pytest.raises(TypeError, match="target"):
        evaluate(logits, target.float())
    with pytest.raises(ValueError, match="num_classes"):
        evaluate(logits, target, num_classes=4)
    with pytest.raises(ValueError, match="train_class_counts"):
        evaluate(logits, target, train_class_counts=[1, 2])
    with pytest.raises(ValueError, match="features"):
        evaluate(logits, target, classifier_weight=torch.randn(3, 2))
    with pytest.raises(ValueError, match="NaN"):
        evaluate(logits.masked_fill(torch.eye(10, 3, dtype=torch.bool), float("nan")), target)
    with pytest.raises(ValueError, match="k="):
        AverageKAccuracy(k=5).update(logits, target)
    with pytest.raises(ValueError, match=r"input='probs' but preds has values outside \[0, 1\]"):
        BinnedCalibration(input="probs").update(logits * 10, target)
    with pytest.raises(TypeError, match="n_bins"):
        BinnedCalibration(n_bins=2.5)


def test_numpy_inputs_accepted():
    logits, target = _data(n=30, c=4, seed=13)
    a = evaluate(logits.numpy(), target.numpy())
    b = evaluate(logits, target)
    assert a == pytest.approx(b, nan_ok=True)


# ---------------------------------------------------------------- linear probe, dtypes, docs, exports


def test_linear_probe_matches_sklearn_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    from lossatlas.metrics import fit_linear_probe, linear_probe_accuracy

    g = torch.Generator().manual_seed(14)
    y = torch.randint(0, 3, (150,), generator=g)
    x = torch.randn(150, 4, generator=g, dtype=torch.float64) * 3 + 1 + torch.randn(3, 4, generator=g, dtype=torch.float64)[y]
    wd = 1e-2
    w, b, mean, std = fit_linear_probe(x[:100], y[:100], weight_decay=wd)
    z = ((x[:100] - x[:100].mean(0)) / x[:100].std(0, unbiased=False)).numpy()
    # sklearn minimises C * sum CE + ||w||^2 / 2, the same problem for C = 1 / (wd * N)
    clf = LogisticRegression(C=1 / (wd * 100), tol=1e-10, max_iter=10000).fit(z, y[:100].numpy())
    np.testing.assert_allclose(w.numpy(), clf.coef_, atol=1e-4)
    np.testing.assert_allclose(b.numpy(), clf.intercept_, atol=1e-4)
    zt = ((x[100:] - mean) / std).numpy()
    acc = linear_probe_accuracy(x[:100], y[:100], x[100:], y[100:], weight_decay=wd)
    assert acc == pytest.approx(clf.score(zt, y[100:].numpy()))
    with pytest.raises(ValueError, match="dimension"):
        linear_probe_accuracy(x[:100], y[:100], x[100:, :3], y[100:])
    with pytest.raises(ValueError, match="weight_decay"):
        fit_linear_probe(x, y, weight_decay=-1.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_logits_computed_in_float32_or_more(dtype):
    logits, target = _data(n=120, c=6, seed=15)
    low = evaluate(logits.to(dtype), target)
    ref = evaluate(logits.to(dtype).float(), target)
    assert low == pytest.approx(ref, nan_ok=True)
    extreme = evaluate((torch.randn(20, 6) * 1e4).to(dtype), torch.randint(0, 6, (20,)))
    assert all(math.isfinite(v) for k, v in extreme.items() if k not in ("auroc", "average_precision"))


def test_module_doctests():
    import doctest
    import importlib
    import pkgutil

    import lossatlas.metrics as pkg

    names = [m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]
    assert {"calibration", "classification", "neural_collapse", "retrieval", "setvalued", "summary", "probe"} <= set(names)
    for name in names:
        result = doctest.testmod(importlib.import_module(f"lossatlas.metrics.{name}"), optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, name


def test_exports():
    import lossatlas.metrics as pkg

    for name in ("evaluate", "per_class_accuracy", "reliability_diagram", "retrieval_metrics", "ShotAccuracy", "NeuralCollapse"):
        assert name in pkg.__all__
    if (pkg.__path__ and __import__("os").path.exists(__import__("os").path.join(pkg.__path__[0], "susceptibility.py"))):
        assert "Susceptibility" in pkg.__all__  # the noise team's metric, exported by discovery


def test_retrieval_chunking_does_not_change_results():
    from lossatlas.metrics.retrieval import _retrieval

    g = torch.Generator().manual_seed(16)
    y = torch.randint(0, 6, (50,), generator=g)
    x = torch.randn(50, 5, generator=g) + torch.randn(6, 5, generator=g)[y]
    whole = _retrieval(x, y, x, y, (1, 5), "cosine", leave_one_out=True)
    assert _retrieval(x, y, x, y, (1, 5), "cosine", leave_one_out=True, chunk=7) == pytest.approx(whole)
    assert whole == pytest.approx(_numpy_retrieval(x.double().numpy(), y.numpy(), x.double().numpy(), y.numpy(), (1, 5), loo=True))


# ---------------------------------------------------------------- logits or probabilities (issue 20)


def _calibration_results(preds, target, c, **kw):
    """Every calibration number the package gives, for scores ``preds`` [N, C]."""
    binned = BinnedCalibration(n_bins=10, **kw)
    binned.update(preds, target)
    cw = ClasswiseECE(c, n_bins=10, **kw)
    cw.update(preds, target)
    avgk = AverageKAccuracy(k=2, **kw)
    avgk.update(preds, target)
    return {
        "binned": binned.compute(),
        "classwise": cw.compute(),
        "avgk": avgk.compute(),
        "diagram": {k: v for k, v in reliability_diagram(preds, target, n_bins=10, **kw).items() if k != "input"},
        "ranking": ranking_metrics(preds, target, **kw),
        "evaluate": evaluate(preds, target, train_class_counts=[90, 40, 20, 9, 3], **kw),
    }


def test_calibration_of_probabilities_equals_that_of_their_logits():
    # The trap: ECE of softmax probabilities used to be computed on a softmax of them
    # (0.359 against 0.092 on the same predictions). Expected values: the numpy ECE of the
    # probabilities, written in this file.
    logits, target = _data(n=400, c=5, seed=21, scale=3.0)
    probs = torch.softmax(logits, dim=1)  # float64, the same operation the metric applies to logits
    ref = _numpy_binned(probs.numpy(), target.numpy(), 10)
    from_logits = _calibration_results(logits, target, 5)
    from_probs = _calibration_results(probs, target, 5)
    for name in from_logits:
        _close_dicts(from_probs[name], from_logits[name])
    _close_dicts(from_probs["binned"], ref)
    ref15 = _numpy_binned(probs.numpy(), target.numpy(), 15)  # evaluate's default bins
    assert from_probs["evaluate"]["mce"] == pytest.approx(ref15["mce"], rel=1e-12)
    assert from_probs["evaluate"]["ece"] == pytest.approx(ref15["ece"], abs=1e-6)  # torchmetrics, float32
    # numpy arrays of probabilities are probabilities too
    assert reliability_diagram(probs.numpy(), target.numpy(), n_bins=10)["ece"] == pytest.approx(ref["ece"], rel=1e-12)
    # the old behaviour (a second softmax) gives a different, wrong number on these data
    assert abs(_numpy_binned(_softmax(probs.numpy()), target.numpy(), 10)["ece"] - ref["ece"]) > 0.05


def test_metrics_say_which_input_they_assumed():
    from lossatlas.metrics import infer_input

    logits, target = _data(n=50, c=4, seed=22)
    probs = torch.softmax(logits, dim=1)
    assert reliability_diagram(logits, target)["input"] == "logits"
    assert reliability_diagram(probs, target)["input"] == "probs"
    for metric in (BinnedCalibration(), ClasswiseECE(4), AverageKAccuracy(k=2)):
        assert metric.input == "auto" and metric.input_kind is None
        metric.update(probs[:0], target[:0])  # an empty batch assumes nothing
        assert metric.input_kind is None
        metric.update(probs, target)
        assert metric.input_kind == "probs"
        metric.reset()
        assert metric.input_kind is None
        metric.update(logits, target)
        assert metric.input_kind == "logits"
    assert infer_input(probs) == "probs" and infer_input(logits) == "logits"
    # in [0, 1] but the rows are not distributions (sigmoid outputs): logits, as the row sums say
    assert infer_input(torch.sigmoid(logits)) == "logits"
    # probabilities rounded to half precision, or printed to 4 decimals, are still probabilities
    assert infer_input(probs.half()) == "probs" and infer_input(probs.bfloat16()) == "probs"
    assert infer_input(np.round(probs.numpy(), 4)) == "probs"


def test_explicit_input_is_obeyed_and_checked():
    logits, target = _data(n=120, c=4, seed=23)
    probs = torch.softmax(logits, dim=1)
    t = target.numpy()
    # "logits" on probabilities: taken at their word, a softmax of them (numpy reference)
    m = BinnedCalibration(n_bins=10, input="logits")
    m.update(probs, target)
    _close_dicts(m.compute(), _numpy_binned(_softmax(probs.numpy()), t, 10))
    assert m.input_kind == "logits"
    # "probs" on probabilities: as given
    m = BinnedCalibration(n_bins=10, input="probs")
    m.update(probs, target)
    _close_dicts(m.compute(), _numpy_binned(probs.numpy(), t, 10))
    # "probs" contradicted by the data: a ValueError that says what is wrong and what to pass
    bad = {
        r"outside \[0, 1\]": logits,
        r"do not sum to 1": torch.sigmoid(logits),
    }
    for msg, x in bad.items():
        for make in (lambda: BinnedCalibration(input="probs"), lambda: ClasswiseECE(4, input="probs"),
                     lambda: AverageKAccuracy(input="probs")):
            with pytest.raises(ValueError, match=rf"input='probs' but .*{msg}.*input='logits'"):
                make().update(x, target)
        with pytest.raises(ValueError, match=msg):
            reliability_diagram(x, target, input="probs")
        with pytest.raises(ValueError, match=msg):
            evaluate(x, target, input="probs")
        with pytest.raises(ValueError, match=msg):
            ranking_metrics(x, target, input="probs")
    for bad_kind in ("prob", "softmax", True, None):
        with pytest.raises(ValueError, match="input must be 'auto', 'logits' or 'probs'"):
            BinnedCalibration(input=bad_kind)
        with pytest.raises(ValueError, match="input must be"):
            evaluate(logits, target, input=bad_kind)
    # the old switch names its replacement
    with pytest.raises(TypeError, match="from_logits was replaced by input="):
        BinnedCalibration(from_logits=False)
    with pytest.raises(TypeError, match="from_logits was replaced by input="):
        AverageKAccuracy(from_logits=True)


def test_auto_input_refuses_mixed_batches():
    logits, target = _data(n=60, c=3, seed=24)
    m = ClasswiseECE(3)
    m.update(logits[:30], target[:30])
    with pytest.raises(ValueError, match="looked like logits, this one like probs.*input="):
        m.update(torch.softmax(logits[30:], dim=1), target[30:])
    # explicit input: no detection, no complaint
    m = ClasswiseECE(3, input="logits")
    m.update(logits[:30], target[:30])
    m.update(torch.softmax(logits[30:], dim=1), target[30:])


def test_batched_probabilities_equal_one_pass():
    logits, target = _data(n=200, c=6, seed=25)
    probs = torch.softmax(logits, dim=1)
    ref = _numpy_binned(probs.numpy(), target.numpy(), 15)
    _close_dicts(_batched(BinnedCalibration(), probs, target), ref)


def test_float32_probabilities_match_float32_logits():
    # the everyday case: torch.softmax of float32 logits; the two ECEs agree to float32
    # rounding when no confidence lies within rounding of a bin edge (checked here)
    logits, target = _data(n=500, c=10, seed=26, scale=2.5)
    z = logits.float()
    conf = torch.softmax(z.double(), dim=1).max(dim=1).values
    assert float(((conf * 15) - (conf * 15).round()).abs().min()) > 1e-4
    a = reliability_diagram(z, target)
    b = reliability_diagram(torch.softmax(z, dim=1), target)
    assert (a["input"], b["input"]) == ("logits", "probs")
    assert a["count"] == b["count"] and b["ece"] == pytest.approx(a["ece"], abs=1e-6)


def test_infer_input_doctest():
    import doctest

    import lossatlas.metrics._common as common

    assert doctest.testmod(common).failed == 0
