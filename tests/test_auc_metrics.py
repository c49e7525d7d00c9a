"""AUROC, AP, one- and two-way partial AUROC and NDCG@k (lossatlas.metrics.ranking).

Independent references: scikit-learn (roc_auc_score, average_precision_score, ndcg_score,
all float64), float64 formulas written here from the definitions (pairwise Wilcoxon counts,
the ROC area cut at β, Yang et al.'s two-way region, DCG with 2^rel − 1 gains), and
torchmetrics (float32 curves: compared at 1e-6).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("torchmetrics")
sklearn_metrics = pytest.importorskip("sklearn.metrics")

from torchmetrics.functional.classification import (  # noqa: E402
    binary_auroc,
    binary_average_precision,
    multilabel_auroc,
)
from torchmetrics.functional.retrieval import retrieval_normalized_dcg  # noqa: E402

from gloo import run_gloo  # noqa: E402
from lossatlas.metrics import (  # noqa: E402
    AUROC,
    AveragePrecision,
    NDCGAtK,
    PartialAUROC,
    TwoWayPartialAUROC,
    auroc,
    average_precision,
    ndcg_at_k,
    partial_auroc,
    two_way_partial_auroc,
)


def _binary(n: int, pos: float, seed: int, ties: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = (torch.rand(n, generator=g) < pos).long()
    t[0], t[1] = 1, 0  # both classes
    s = torch.randn(n, generator=g, dtype=torch.float64) + 0.8 * t
    if ties:
        s = torch.round(s * 2) / 2
    return s, t


def _pairwise(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mean over positive-negative pairs of 1[s+ > s-] + ½ 1[s+ = s-] (float64)."""
    d = pos[:, None] - neg[None, :]
    return float(((d > 0) + 0.5 * (d == 0)).mean())


# ----------------------------------------------------------------------------- AUROC / AP
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_auroc_and_ap_match_sklearn_and_the_pairwise_definition(seed, ties):
    s, t = _binary(200 + 37 * seed, 0.1 + 0.1 * seed, seed, ties)
    sn, tn = s.numpy(), t.numpy()
    assert math.isclose(float(auroc(s, t)), sklearn_metrics.roc_auc_score(tn, sn), rel_tol=1e-12)
    assert math.isclose(float(auroc(s, t)), _pairwise(sn[tn == 1], sn[tn == 0]), rel_tol=1e-12)
    assert math.isclose(float(average_precision(s, t)), sklearn_metrics.average_precision_score(tn, sn), rel_tol=1e-12)
    # torchmetrics (float32 curves)
    assert abs(float(auroc(s, t)) - float(binary_auroc(s, t))) < 1e-6
    assert abs(float(average_precision(s, t)) - float(binary_average_precision(s, t))) < 1e-6
    assert auroc(s, t).dtype == torch.float64 and auroc(s, t).dim() == 0


def test_large_scores_keep_their_order():
    # torchmetrics applies a sigmoid to scores outside [0, 1]: 40 and 50 both become 1.0 in float64
    s = torch.tensor([40.0, 50.0, 30.0, 45.0], dtype=torch.float64)
    t = torch.tensor([0, 1, 0, 1])
    assert float(auroc(s, t)) == sklearn_metrics.roc_auc_score(t.numpy(), s.numpy()) == 1.0
    assert float(average_precision(s, t)) == 1.0


def test_inputs_may_be_numpy_lists_of_ints_or_bool_targets():
    s, t = _binary(50, 0.3, 9)
    ref = float(auroc(s, t))
    assert float(auroc(s.numpy(), t.numpy())) == ref
    assert float(auroc(s.tolist(), t.bool())) == ref
    assert float(auroc(s.float(), t.double())) == pytest.approx(ref, rel=1e-6)


def test_multilabel_per_label_and_macro():
    g = torch.Generator().manual_seed(1)
    n, labels = 120, 5
    t = (torch.rand(n, labels, generator=g) < torch.tensor([0.05, 0.2, 0.5, 0.8, 0.3])).long()
    t[0], t[1] = 1, 0
    s = torch.randn(n, labels, generator=g, dtype=torch.float64) + t
    s = torch.round(s * 4) / 4  # ties
    per = auroc(s, t, average="none")
    ref = [sklearn_metrics.roc_auc_score(t[:, j].numpy(), s[:, j].numpy()) for j in range(labels)]
    np.testing.assert_allclose(per.numpy(), ref, rtol=1e-12)
    assert math.isclose(float(auroc(s, t)), float(np.mean(ref)), rel_tol=1e-12)
    tm = multilabel_auroc(s.float(), t, num_labels=labels, average=None)
    np.testing.assert_allclose(per.numpy(), tm.double().numpy(), atol=1e-6)
    ap = average_precision(s, t, average="none")
    ref_ap = [sklearn_metrics.average_precision_score(t[:, j].numpy(), s[:, j].numpy()) for j in range(labels)]
    np.testing.assert_allclose(ap.numpy(), ref_ap, rtol=1e-12)
    assert math.isclose(float(average_precision(s, t)), float(np.mean(ref_ap)), rel_tol=1e-12)


def test_undefined_labels_are_nan_and_macro_averages_the_defined_ones():
    s = torch.tensor([[0.1, 0.2, 0.9], [0.4, 0.8, 0.3], [0.35, 0.6, 0.5], [0.8, 0.1, 0.7]], dtype=torch.float64)
    t = torch.tensor([[0, 1, 0], [0, 1, 0], [1, 1, 0], [1, 1, 0]])  # label 1: all positive; label 2: none
    per = auroc(s, t, average="none")
    assert per[0] == 0.75 and torch.isnan(per[1:]).all()
    assert float(auroc(s, t)) == 0.75  # the mean over the defined label (LibAUC's auc_roc_score drops them)
    ap = average_precision(s, t, average="none")
    assert ap[1] == 1.0 and torch.isnan(ap[2])  # AP is defined without negatives, not without positives
    assert torch.isnan(partial_auroc(s, t, max_fpr=0.5, average="none")[1:]).all()
    assert torch.isnan(two_way_partial_auroc(s, t, min_tpr=0.5, max_fpr=0.5, average="none")[1:]).all()
    one_class = torch.tensor([1, 1, 1, 1])
    for value in (auroc(s[:, 0], one_class), partial_auroc(s[:, 0], one_class, max_fpr=0.3),
                  two_way_partial_auroc(s[:, 0], one_class, min_tpr=0.2, max_fpr=0.3),
                  average_precision(s[:, 0], 1 - one_class), auroc(s[:, 1:], t[:, 1:])):
        assert torch.isnan(value)
    with pytest.warns(Warning):  # scikit-learn warns and says NaN too (older versions raise ValueError)
        try:
            assert math.isnan(sklearn_metrics.roc_auc_score(one_class.numpy(), s[:, 0].numpy()))
        except ValueError:
            import warnings
            warnings.warn("scikit-learn raised", UserWarning, stacklevel=1)
    assert torch.isnan(auroc(torch.zeros(0), torch.zeros(0)))


# ----------------------------------------------------------------------------- partial AUROC
@pytest.mark.parametrize("max_fpr", [0.05, 0.1, 0.3, 0.77, 1.0])
@pytest.mark.parametrize("ties", [False, True])
def test_one_way_partial_auroc_standardised_is_sklearns(max_fpr, ties):
    s, t = _binary(300, 0.2, 3, ties)
    ref = sklearn_metrics.roc_auc_score(t.numpy(), s.numpy(), max_fpr=max_fpr)
    assert math.isclose(float(partial_auroc(s, t, max_fpr=max_fpr)), ref, rel_tol=1e-12)
    assert abs(float(partial_auroc(s, t, max_fpr=max_fpr)) - float(binary_auroc(s, t, max_fpr=max_fpr))) < 1e-6
    # unstandardised: A / β with A from McClish's formula inverted
    lo, hi = max_fpr**2 / 2, max_fpr
    area = lo + (2 * ref - 1) * (hi - lo)
    assert math.isclose(float(partial_auroc(s, t, max_fpr=max_fpr, standardized=False)), area / max_fpr, rel_tol=1e-10)


def test_one_way_partial_auroc_is_the_pairwise_count_over_the_top_negatives():
    # no ties and βM an integer: A = (1/(P·M)) Σ_{j ≤ βM} #{positives above the j-th highest negative}
    s, t = _binary(250, 0.2, 4)
    pos, neg = s[t == 1].numpy(), np.sort(s[t == 0].numpy())[::-1]
    m = neg.size
    for j in (1, 7, m // 3, m):
        beta = j / m
        area = sum(int((pos > neg[i]).sum()) for i in range(j)) / (pos.size * m)
        assert math.isclose(float(partial_auroc(s, t, max_fpr=beta, standardized=False)), area / beta, rel_tol=1e-12)
    assert math.isclose(float(partial_auroc(s, t, max_fpr=1.0)), float(auroc(s, t)), rel_tol=1e-12)


def _two_way_reference(s: np.ndarray, t: np.ndarray, alpha: float, beta: float) -> float:
    """LibAUC's pauc_roc_score(min_tpr=α, max_fpr=β): the hardest (1-α)P positives against the hardest βM negatives."""
    pos, neg = np.sort(s[t == 1]), np.sort(s[t == 0])[::-1]
    k_pos = max(1, round(pos.size * (1 - alpha)))
    k_neg = max(1, round(neg.size * beta))
    return _pairwise(pos[:k_pos], neg[:k_neg])


@pytest.mark.parametrize(("alpha", "beta"), [(0.0, 1.0), (0.5, 0.5), (0.3, 0.1), (0.8, 0.05), (0.9, 0.9)])
@pytest.mark.parametrize("ties", [False, True])
def test_two_way_partial_auroc_is_libaucs_estimator(alpha, beta, ties):
    s, t = _binary(400, 0.15, 5, ties)
    ref = _two_way_reference(s.numpy(), t.numpy(), alpha, beta)
    assert math.isclose(float(two_way_partial_auroc(s, t, min_tpr=alpha, max_fpr=beta)), ref, rel_tol=1e-12)
    if alpha == 0.0 and beta == 1.0:
        assert math.isclose(ref, float(auroc(s, t)), rel_tol=1e-12)


def test_two_way_partial_auroc_is_the_area_of_yang_et_als_region():
    # no ties, αP and βM integers: ∫_0^β max(TPR - α, 0) dFPR / ((1-α)β) over the step ROC curve
    g = torch.Generator().manual_seed(6)
    t = torch.tensor([1] * 40 + [0] * 160)
    s = torch.randn(200, generator=g, dtype=torch.float64) + 1.0 * t
    pos, neg = s[t == 1].numpy(), np.sort(s[t == 0].numpy())[::-1]
    for alpha, beta in ((0.25, 0.5), (0.5, 0.125), (0.0, 0.25), (0.75, 1.0)):
        region = sum(max((pos > neg[j]).mean() - alpha, 0.0) for j in range(round(beta * 160))) / 160
        expected = region / ((1 - alpha) * beta)
        assert math.isclose(float(two_way_partial_auroc(s, t, min_tpr=alpha, max_fpr=beta)), expected, rel_tol=1e-12)


# ----------------------------------------------------------------------------- NDCG
@pytest.mark.parametrize("k", [None, 1, 3, 10])
def test_ndcg_matches_sklearn_with_ties_and_graded_relevance(k):
    g = torch.Generator().manual_seed(7)
    rel = torch.randint(0, 4, (9, 12), generator=g)
    rel[2] = 0  # a query with no relevant item: 0, as scikit-learn and torchmetrics
    scores = torch.randint(0, 5, (9, 12), generator=g).double()  # many ties
    ref = sklearn_metrics.ndcg_score(rel.numpy(), scores.numpy(), k=k)
    assert math.isclose(float(ndcg_at_k(scores, rel, k=k)), ref, rel_tol=1e-12)
    per = ndcg_at_k(scores, rel, k=k, average="none")
    assert per.shape == (9,) and per[2] == 0.0
    for q in range(9):
        assert math.isclose(float(per[q]), sklearn_metrics.ndcg_score(rel[q : q + 1].numpy(), scores[q : q + 1].numpy(), k=k),
                            rel_tol=1e-12, abs_tol=1e-15)
        assert abs(float(per[q]) - float(retrieval_normalized_dcg(scores[q].float(), rel[q], top_k=k))) < 1e-6
    # one ranking [N] is one query
    assert math.isclose(float(ndcg_at_k(scores[0], rel[0], k=k)),
                        sklearn_metrics.ndcg_score(rel[:1].numpy(), scores[:1].numpy(), k=k), rel_tol=1e-12)


def test_ndcg_exponential_gain_against_the_definition():
    g = torch.Generator().manual_seed(8)
    rel = torch.randint(0, 4, (5, 10), generator=g).double()
    scores = torch.randn(5, 10, generator=g, dtype=torch.float64)  # no ties
    for k in (2, 5, 10):
        expected = []
        for q in range(5):
            order = torch.argsort(scores[q], descending=True)
            disc = 1 / np.log2(np.arange(2, 12))
            dcg = sum((2 ** rel[q, order[r]].item() - 1) * disc[r] for r in range(k))
            ideal = sorted((2 ** rel[q]).tolist(), reverse=True)
            idcg = sum((ideal[r] - 1) * disc[r] for r in range(k))
            expected.append(dcg / idcg if idcg else 0.0)
        got = ndcg_at_k(scores, rel, k=k, gain="exponential", average="none")
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    binary = (rel > 1).double()  # 0/1 relevance: both gains agree
    torch.testing.assert_close(ndcg_at_k(scores, binary, k=3, gain="exponential"), ndcg_at_k(scores, binary, k=3))


# ----------------------------------------------------------------------------- Metric classes
def _metrics() -> list[tuple[Any, Any, dict[str, Any], bool]]:
    return [
        (AUROC(), auroc, {}, False),
        (AUROC(average="none"), auroc, {"average": "none"}, True),
        (AveragePrecision(), average_precision, {}, False),
        (PartialAUROC(max_fpr=0.2), partial_auroc, {"max_fpr": 0.2}, False),
        (PartialAUROC(max_fpr=0.2, standardized=False), partial_auroc, {"max_fpr": 0.2, "standardized": False}, True),
        (TwoWayPartialAUROC(min_tpr=0.4, max_fpr=0.3), two_way_partial_auroc, {"min_tpr": 0.4, "max_fpr": 0.3}, True),
        (NDCGAtK(k=5), ndcg_at_k, {"k": 5}, True),
        (NDCGAtK(k=3, gain="exponential"), ndcg_at_k, {"k": 3, "gain": "exponential"}, False),
    ]


def _data(multilabel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    shape = (90, 3) if multilabel else (90,)
    t = (torch.rand(shape, generator=g) < 0.3).long()
    t[0], t[1] = 1, 0
    return torch.randn(shape, generator=g, dtype=torch.float64) + t, t


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")  # torchmetrics: compute after reset, on purpose
def test_metric_classes_accumulate_to_their_functional_twin():
    for metric, function, options, multilabel in _metrics():
        assert type(metric).function is function  # the class names its functional twin
        s, t = _data(multilabel)
        for part in (slice(0, 30), slice(30, 71), slice(71, 90)):
            metric.update(s[part], t[part])
        torch.testing.assert_close(metric.compute(), function(s, t, **options), rtol=0, atol=0)
        metric.reset()
        assert torch.isnan(metric.compute())


def test_metric_update_checks_its_batches():
    m = AUROC()
    m.update(torch.rand(4, 3), torch.tensor([[0, 1, 0]] * 2 + [[1, 0, 1]] * 2))
    with pytest.raises(ValueError, match="do not continue"):
        m.update(torch.rand(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="target must be 0/1"):
        m.update(torch.rand(4, 3), torch.full((4, 3), 2))


WORLD = 2
SHARDS = (slice(0, 53), slice(53, 90))  # uneven


def _worker(rank: int) -> list[torch.Tensor]:
    out = []
    for metric, _, _, multilabel in _metrics():
        s, t = _data(multilabel)
        metric.update(s[SHARDS[rank]], t[SHARDS[rank]])
        out.append(metric.compute())
    return out


def test_metric_classes_sync_across_processes(tmp_path):
    results = run_gloo(_worker, tmp_path, WORLD)
    for i, (_, function, options, multilabel) in enumerate(_metrics()):
        s, t = _data(multilabel)
        for r in range(WORLD):  # every rank computes the value of the whole data
            torch.testing.assert_close(results[r][i], function(s, t, **options), rtol=1e-12, atol=0)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: auroc(torch.rand(5), torch.tensor([0, 1, 0, 1])), ValueError, "target must have the shape"),
    (lambda: auroc(torch.rand(4), torch.tensor([0, 1, 2, 1])), ValueError, "target must be 0/1"),
    (lambda: auroc(torch.tensor([0.1, float("nan"), 0.3]), torch.tensor([0, 1, 1])), ValueError, "scores contains NaN"),
    (lambda: auroc(torch.rand(2, 2, 2), torch.zeros(2, 2, 2)), ValueError, "scores must have shape"),
    (lambda: auroc(torch.rand(3), torch.tensor([0.0, float("nan"), 1.0])), ValueError, "target contains NaN"),
    (lambda: auroc(torch.rand(3), torch.tensor([0, 1, 1]), average="micro"), ValueError, "average"),
    (lambda: auroc("abc", [0, 1]), TypeError, "scores"),
    (lambda: partial_auroc(torch.rand(4), torch.tensor([0, 1, 0, 1]), max_fpr=0.0), ValueError, "max_fpr"),
    (lambda: partial_auroc(torch.rand(4), torch.tensor([0, 1, 0, 1]), max_fpr=1.5), ValueError, "max_fpr"),
    (lambda: partial_auroc(torch.rand(4), torch.tensor([0, 1, 0, 1]), max_fpr=True), ValueError, "max_fpr"),
    (lambda: partial_auroc(torch.rand(4), torch.tensor([0, 1, 0, 1]), max_fpr=0.3, standardized=1), TypeError,
     "standardized"),
    (lambda: partial_auroc(torch.rand(4), torch.tensor([0, 1, 0, 1])), TypeError, "max_fpr"),
    (lambda: two_way_partial_auroc(torch.rand(4), torch.tensor([0, 1, 0, 1]), min_tpr=1.0, max_fpr=0.5), ValueError,
     "min_tpr"),
    (lambda: two_way_partial_auroc(torch.rand(4), torch.tensor([0, 1, 0, 1]), min_tpr=-0.1, max_fpr=0.5), ValueError,
     "min_tpr"),
    (lambda: ndcg_at_k(torch.rand(4), torch.tensor([0, 1, 0, 1]), k=0), ValueError, "k must be"),
    (lambda: ndcg_at_k(torch.rand(4), torch.tensor([0, -1, 0, 1])), ValueError, "relevance"),
    (lambda: ndcg_at_k(torch.rand(4), torch.tensor([0, 1, 0, 1]), gain="log"), ValueError, "gain"),
    (lambda: PartialAUROC(max_fpr=2.0), ValueError, "max_fpr"),
    (lambda: TwoWayPartialAUROC(min_tpr=0.5, max_fpr=0.0), ValueError, "max_fpr"),
    (lambda: NDCGAtK(k=-2), ValueError, "k must be"),
    (lambda: AUROC(average="weighted"), ValueError, "average"),
])
def test_bad_input_is_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()
