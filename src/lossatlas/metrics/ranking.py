"""AUROC, average precision, one- and two-way partial AUROC and NDCG@k (issue 19, LibAUC's metrics).

Definitions (all computed in float64 from exact counts; only the order of the scores and
their ties matter):

- **AUROC** (Hanley & McNeil 1982, "The meaning and use of the area under a receiver
  operating characteristic (ROC) curve"): ``P(s⁺ > s⁻) + ½ P(s⁺ = s⁻)`` over all
  positive-negative pairs, computed from the average ranks (Mann-Whitney).
- **AP**: ``Σ_n (R_n − R_{n−1}) P_n`` over the distinct thresholds in decreasing order (the
  step-wise area under the precision-recall curve, no interpolation; scikit-learn's and
  torchmetrics' ``average_precision``).
- **One-way partial AUROC** (FPR ≤ β): the area under the ROC curve (linear between its
  points, cut at FPR = β) ``A = ∫_0^β TPR dFPR``; ``standardized=True`` (default) returns
  McClish's (1989, "Analyzing a portion of the ROC curve") ``½(1 + (A − β²/2)/(β − β²/2))``,
  which is what scikit-learn's ``roc_auc_score(max_fpr=β)``, torchmetrics' ``BinaryAUROC(max_fpr=β)``
  and LibAUC's ``pauc_roc_score`` return; ``standardized=False`` returns ``A / β`` (the mean
  TPR over FPR in [0, β], in [0, 1]).
- **Two-way partial AUROC** (TPR ≥ α, FPR ≤ β; Yang, Xu, Bao, Cao & Huang 2021, "When All We
  Need is a Piece of the Pie: A Generic Framework for Optimizing Two-way Partial AUC"): the
  AUROC between the ``max(1, round((1 − α)P))`` lowest-scored positives and the
  ``max(1, round(βM))`` highest-scored negatives, as LibAUC's ``pauc_roc_score(min_tpr=α,
  max_fpr=β)`` (Python's ``round``, half to even).
- **NDCG@k** (Järvelin & Kekäläinen 2002, "Cumulated gain-based evaluation of IR
  techniques"): per query ``DCG@k / IDCG@k`` with ``DCG@k = Σ_{r ≤ k} g(rel_r) / log2(r + 1)``,
  ``g(rel) = rel`` (default, scikit-learn's ``ndcg_score`` and torchmetrics) or
  ``2^rel − 1`` (``gain="exponential"``, Burges et al. 2005 and LibAUC's ``ndcg_at_k``);
  tied scores share their positions' discounts equally (McSherry & Najork 2008, as
  scikit-learn's default ``ignore_ties=False``).

Shapes: binary ``scores`` [N] with ``target`` [N] in {0, 1}; multi-label ``scores`` [N, L]
with a multi-hot ``target`` [N, L] (one value per label, ``average="macro"`` their mean,
``"none"`` the [L] vector). NDCG: ``scores`` [N] is one ranking of N items; [Q, M] is Q
queries (rows) ranking their M items (scikit-learn's ``ndcg_score`` convention), with
relevance ``target`` >= 0 of the same shape; ``average="macro"`` is the mean over queries.

Undefined values: AUROC and the partial AUROCs of a label whose target has one class only,
and AP of a label with no positive, are NaN (torchmetrics returns 0 there with a warning;
scikit-learn warns and returns NaN for AUROC, older versions raise); ``"macro"`` averages the defined labels (as LibAUC's
``auc_roc_score``), NaN when none is. An NDCG query with no relevant item scores 0 (the
convention of scikit-learn and torchmetrics). An empty input gives NaN.

Why not torchmetrics' functional versions: they compute the curves in float32 (about 3e-8
from scikit-learn at N = 2·10⁵) and apply a sigmoid to scores outside [0, 1], which merges
large distinct scores into ties in float64 (σ(40) = σ(50) = 1.0). The classes here are
``torchmetrics.Metric`` subclasses (accumulation over batches, sync across processes by
concatenation); tests/test_auc_metrics.py checks every value against scikit-learn and
torchmetrics.

>>> import torch
>>> from lossatlas.metrics import auroc, average_precision
>>> s, y = torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])
>>> float(auroc(s, y)), round(float(average_precision(s, y)), 4)
(0.75, 0.8333)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from ._common import Tensor, as_tensor, check_positive_int

__all__ = [
    "auroc",
    "average_precision",
    "partial_auroc",
    "two_way_partial_auroc",
    "ndcg_at_k",
    "AUROC",
    "AveragePrecision",
    "PartialAUROC",
    "TwoWayPartialAUROC",
    "NDCGAtK",
]

AVERAGES = ("macro", "none")
NAN = float("nan")


# ----------------------------------------------------------------------------- checks
def _scores(scores: Any, name: str = "scores") -> Tensor:
    s = as_tensor(scores, name)
    if not (s.is_floating_point() or s.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)):
        raise TypeError(f"{name} must hold real-valued scores, got dtype {s.dtype}")
    if s.dim() not in (1, 2):
        raise ValueError(f"{name} must have shape [N] (binary) or [N, L] (multi-label), got {tuple(s.shape)}")
    s = s.to(torch.float64)
    if s.numel() and not bool(torch.isfinite(s).all()):
        raise ValueError(f"{name} contains NaN or Inf values")
    return s


def _pair(scores: Any, target: Any, binary: bool) -> tuple[Tensor, Tensor]:
    s = _scores(scores)
    t = as_tensor(target, "target")
    if tuple(t.shape) != tuple(s.shape):
        raise ValueError(f"target must have the shape of scores {tuple(s.shape)}, got {tuple(t.shape)}")
    if t.is_complex():
        raise TypeError(f"target must be real, got dtype {t.dtype}")
    t = t.to(torch.float64)
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError("target contains NaN or Inf values")
    if binary and t.numel() and not bool(((t == 0) | (t == 1)).all()):
        bad = t[(t != 0) & (t != 1)][0].item()
        raise ValueError(f"target must be 0/1 (binary, or multi-hot for multi-label scores), found {bad!r}")
    if not binary and t.numel() and bool((t < 0).any()):
        raise ValueError(f"target holds relevance grades, which must be >= 0; found {t.min().item()!r}")
    return s, t


def _average(average: Any) -> str:
    if average not in AVERAGES:
        raise ValueError(f"average must be 'macro' or 'none', got {average!r}")
    return str(average)


def _fraction(value: Any, name: str, *, low_open: bool, high_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if (v < 0 or (low_open and v == 0)) or (v > 1 or (high_open and v == 1)):
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be in {lo}0, 1{hi}, got {value!r}")
    return v


def _per_label(s: Tensor, t: Tensor, fn: Callable[[Tensor, Tensor], float], average: str) -> Tensor:
    """``fn`` per column of [N, L] (a single column for [N]), then the average."""
    if s.dim() == 1:
        return torch.tensor(fn(s, t), dtype=torch.float64)
    values = torch.tensor([fn(s[:, j], t[:, j]) for j in range(s.shape[1])], dtype=torch.float64)
    if average == "none":
        return values
    defined = values[~torch.isnan(values)]
    return defined.mean() if defined.numel() else torch.tensor(NAN, dtype=torch.float64)


# ----------------------------------------------------------------------------- binary kernels (float64)
def _auroc1(s: Tensor, t: Tensor) -> float:
    pos = t == 1
    p, m = int(pos.sum()), int((~pos).sum())
    if p == 0 or m == 0:
        return NAN
    # Mann-Whitney: average ranks (ties share the mean of their positions)
    sorted_s, order = torch.sort(s)
    _, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    last = torch.cumsum(counts, 0).to(torch.float64)
    mean_rank = last - (counts.to(torch.float64) - 1) / 2  # 1-based
    ranks = torch.empty_like(s)
    ranks[order] = mean_rank[inverse]
    rank_sum = float(ranks[pos].sum())
    return (rank_sum - p * (p + 1) / 2) / (p * m)


def _curve(s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Cumulative (true positives, false positives) at each distinct threshold, in decreasing order."""
    sorted_s, order = torch.sort(s, descending=True, stable=True)
    y = t[order]
    _, counts = torch.unique_consecutive(sorted_s, return_counts=True)
    ends = torch.cumsum(counts, 0) - 1
    tps = torch.cumsum(y, 0)[ends]
    fps = (ends + 1).to(torch.float64) - tps
    return tps, fps


def _ap1(s: Tensor, t: Tensor) -> float:
    p = float(t.sum())
    if p == 0:
        return NAN
    tps, fps = _curve(s, t)
    precision = tps / (tps + fps)
    recall = tps / p
    steps = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((steps * precision).sum())


def _partial_area(s: Tensor, t: Tensor, max_fpr: float) -> float:
    """``∫_0^β TPR dFPR`` of the ROC curve (linear between its points), NaN with one class only."""
    p, m = float(t.sum()), float((1 - t).sum())
    if p == 0 or m == 0:
        return NAN
    tps, fps = _curve(s, t)
    tpr = torch.cat([tps.new_zeros(1), tps / p])
    fpr = torch.cat([fps.new_zeros(1), fps / m])
    stop = int(torch.searchsorted(fpr, torch.tensor([max_fpr], dtype=torch.float64), right=True))
    x, y = fpr[:stop], tpr[:stop]
    if stop < fpr.numel() and float(x[-1]) < max_fpr:  # cut the segment that crosses FPR = β
        w = (max_fpr - float(fpr[stop - 1])) / float(fpr[stop] - fpr[stop - 1])
        x = torch.cat([x, x.new_tensor([max_fpr])])
        y = torch.cat([y, (y[-1] + w * (tpr[stop] - y[-1])).reshape(1)])
    return float(torch.trapezoid(y, x))


def _two_way1(s: Tensor, t: Tensor, min_tpr: float, max_fpr: float) -> float:
    pos, neg = s[t == 1], s[t == 0]
    if pos.numel() == 0 or neg.numel() == 0:
        return NAN
    k_pos = max(1, round(pos.numel() * (1 - min_tpr)))
    k_neg = max(1, round(neg.numel() * max_fpr))
    hard_pos = torch.sort(pos).values[:k_pos]  # the lowest-scored positives
    hard_neg = torch.sort(neg, descending=True).values[:k_neg]  # the highest-scored negatives
    both = torch.cat([hard_pos, hard_neg])
    labels = torch.cat([torch.ones(k_pos, dtype=torch.float64), torch.zeros(k_neg, dtype=torch.float64)])
    return _auroc1(both, labels)


def _ndcg1(s: Tensor, rel: Tensor, k: int | None, exponential: bool) -> float:
    n = s.numel()
    if n == 0:
        return NAN
    top = n if k is None else min(k, n)
    gain = torch.exp2(rel) - 1 if exponential else rel
    discount = 1.0 / torch.log2(torch.arange(2, n + 2, dtype=torch.float64))
    discount[top:] = 0.0
    ideal = float((torch.sort(gain, descending=True).values * discount).sum())
    if ideal == 0:
        return 0.0
    # tied scores share their positions' discounts: each item gets its tie group's mean gain
    sorted_s, order = torch.sort(s, descending=True, stable=True)
    _, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    group_gain = torch.zeros(counts.numel(), dtype=torch.float64).index_add_(0, inverse, gain[order])
    group_discount = torch.zeros(counts.numel(), dtype=torch.float64).index_add_(0, inverse, discount)
    return float((group_gain / counts * group_discount).sum()) / ideal


# ----------------------------------------------------------------------------- functions
def auroc(scores: Any, target: Any, *, average: str = "macro") -> Tensor:
    """Area under the ROC curve: ``P(s⁺ > s⁻) + ½ P(s⁺ = s⁻)`` (Hanley & McNeil 1982).

    ``scores`` [N] or [N, L] (any real scores: probabilities, logits), ``target`` 0/1 of the
    same shape; ``average`` ``"macro"`` (default: the mean over labels with both classes, as
    LibAUC's ``auc_roc_score``) or ``"none"`` ([L]). NaN for a label with one class only.
    Returns a float64 tensor. See :class:`AUROC`.

    >>> import torch
    >>> float(auroc(torch.tensor([0.2, 0.6, 0.6, 0.9]), torch.tensor([0, 0, 1, 1])))
    0.875
    """
    s, t = _pair(scores, target, binary=True)
    return _per_label(s, t, _auroc1, _average(average))


def average_precision(scores: Any, target: Any, *, average: str = "macro") -> Tensor:
    """Average precision ``Σ_n (R_n − R_{n−1}) P_n`` (scikit-learn's, torchmetrics'): the
    step-wise area under the precision-recall curve. NaN for a label with no positive.
    Shapes and ``average`` as :func:`auroc`. See :class:`AveragePrecision`.

    >>> import torch
    >>> round(float(average_precision(torch.tensor([0.2, 0.6, 0.4, 0.9]), torch.tensor([0, 0, 1, 1]))), 4)
    0.8333
    """
    s, t = _pair(scores, target, binary=True)
    return _per_label(s, t, _ap1, _average(average))


def partial_auroc(scores: Any, target: Any, *, max_fpr: float, standardized: bool = True,
                  average: str = "macro") -> Tensor:
    """One-way partial AUROC over FPR ∈ [0, ``max_fpr``] = β.

    ``A = ∫_0^β TPR dFPR`` of the ROC curve (linear between its points, cut at β, as
    scikit-learn); ``standardized=True`` (default) gives McClish's
    ``½(1 + (A − β²/2)/(β − β²/2))`` (scikit-learn ``roc_auc_score(max_fpr=β)``, torchmetrics
    ``BinaryAUROC(max_fpr=β)``, LibAUC ``pauc_roc_score``; 0.5 for a random ranking, 1 for a
    perfect one), ``False`` gives ``A / β`` (the mean TPR over the range). β = 1 is the AUROC.
    ``max_fpr`` has no default (it is the question asked; LibAUC's and scikit-learn's default
    is the whole curve). NaN for a label with one class only. Shapes and ``average`` as :func:`auroc`. See :class:`PartialAUROC`.

    >>> import torch
    >>> float(partial_auroc(torch.tensor([0.2, 0.6, 0.4, 0.9]), torch.tensor([0, 0, 1, 1]), max_fpr=0.5, standardized=False))
    0.5
    """
    s, t = _pair(scores, target, binary=True)
    beta = _fraction(max_fpr, "max_fpr", low_open=True, high_open=False)
    if not isinstance(standardized, bool):
        raise TypeError(f"standardized must be True or False, got {standardized!r}")

    def one(x: Tensor, y: Tensor) -> float:
        area = _partial_area(x, y, beta)
        if not standardized:
            return area / beta
        lo, hi = beta * beta / 2, beta
        return 0.5 * (1 + (area - lo) / (hi - lo))

    return _per_label(s, t, one, _average(average))


def two_way_partial_auroc(scores: Any, target: Any, *, min_tpr: float, max_fpr: float,
                          average: str = "macro") -> Tensor:
    """Two-way partial AUROC over TPR ≥ ``min_tpr`` = α and FPR ≤ ``max_fpr`` = β (Yang et al. 2021).

    The AUROC between the ``max(1, round((1-α)P))`` lowest-scored positives and the
    ``max(1, round(βM))`` highest-scored negatives (LibAUC's ``pauc_roc_score(min_tpr=α,
    max_fpr=β)``), in [0, 1]; α = 0, β = 1 is the AUROC (LibAUC's defaults, so no default
    here: α and β are the question asked). NaN for a label with one class only. Shapes and ``average`` as :func:`auroc`. See
    :class:`TwoWayPartialAUROC`.

    >>> import torch
    >>> float(two_way_partial_auroc(torch.tensor([0.2, 0.6, 0.4, 0.9]), torch.tensor([0, 0, 1, 1]), min_tpr=0.5, max_fpr=0.5))
    0.0
    """
    s, t = _pair(scores, target, binary=True)
    alpha = _fraction(min_tpr, "min_tpr", low_open=False, high_open=True)
    beta = _fraction(max_fpr, "max_fpr", low_open=True, high_open=False)
    return _per_label(s, t, lambda x, y: _two_way1(x, y, alpha, beta), _average(average))


def ndcg_at_k(scores: Any, target: Any, *, k: int | None = None, gain: str = "linear", average: str = "macro") -> Tensor:
    """NDCG@k: ``DCG@k / IDCG@k``, ``DCG@k = Σ_{r ≤ k} g(rel_r) / log2(r + 1)`` (Järvelin & Kekäläinen 2002).

    ``scores`` [N] (one ranking) or [Q, M] (Q queries, each ranking its M items: rows, as
    scikit-learn's ``ndcg_score``), ``target`` the relevance grades (>= 0) of the same shape.
    ``k``: the cut-off (``None``: every item). ``gain``: ``"linear"`` (``g = rel``: scikit-learn,
    torchmetrics) or ``"exponential"`` (``g = 2^rel − 1``: Burges et al. 2005, LibAUC's
    ``ndcg_at_k``); equal for 0/1 relevance. Tied scores share their positions' discounts.
    A query with no relevant item scores 0. ``average``: ``"macro"`` (mean over queries) or
    ``"none"`` ([Q]). See :class:`NDCGAtK`.

    >>> import torch
    >>> round(float(ndcg_at_k(torch.tensor([0.9, 0.8, 0.1]), torch.tensor([0, 1, 1]), k=2)), 4)
    0.3869
    """
    s, t = _pair(scores, target, binary=False)
    if k is not None:
        k = check_positive_int(k, "k")
    if gain not in ("linear", "exponential"):
        raise ValueError(f"gain must be 'linear' or 'exponential', got {gain!r}")
    average = _average(average)
    exponential = gain == "exponential"
    if s.dim() == 1:
        return torch.tensor(_ndcg1(s, t, k, exponential), dtype=torch.float64)
    values = torch.tensor([_ndcg1(s[q], t[q], k, exponential) for q in range(s.shape[0])], dtype=torch.float64)
    if average == "none":
        return values
    return values.mean() if values.numel() else torch.tensor(NAN, dtype=torch.float64)


# ----------------------------------------------------------------------------- metrics
class _ScoreMetric(Metric):
    """Scores and targets of every batch, concatenated (across processes too); the value of
    the functional twin ``function`` on all of them."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    function: ClassVar[Callable[..., Tensor]]
    binary: ClassVar[bool] = True

    scores: list[Tensor]
    target: list[Tensor]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def _options(self) -> dict[str, Any]:
        return {}

    def update(self, scores: Any, target: Any) -> None:
        s, t = _pair(scores, target, binary=self.binary)
        if isinstance(self.scores, list) and self.scores and s.shape[1:] != self.scores[0].shape[1:]:
            raise ValueError(f"scores of shape {tuple(s.shape)} do not continue the earlier batches "
                             f"[*, {', '.join(map(str, self.scores[0].shape[1:]))}]")
        self.scores.append(s)
        self.target.append(t)

    def compute(self) -> Tensor:
        # a list of batches; after the sync across processes, their concatenation
        if isinstance(self.scores, list) and not self.scores:
            return torch.tensor(NAN, dtype=torch.float64)
        return type(self).function(dim_zero_cat(self.scores), dim_zero_cat(self.target), **self._options())


class AUROC(_ScoreMetric):
    """AUROC accumulated over batches (functional twin :func:`auroc`; definition in the module doc).

    States: every batch's ``scores`` and ``target`` (float64), concatenated across processes,
    so the result equals :func:`auroc` on all the data. ``update(scores, target)``: [N] or
    [N, L] scores and 0/1 targets of the same shape.

    Args:
        average: ``"macro"`` (mean over the labels with both classes) or ``"none"`` ([L]).

    >>> import torch
    >>> m = AUROC()
    >>> m.update(torch.tensor([0.2, 0.6]), torch.tensor([0, 1])); m.update(torch.tensor([0.6, 0.9]), torch.tensor([0, 1]))
    >>> float(m.compute())
    0.875
    """

    function = staticmethod(auroc)

    def __init__(self, average: str = "macro", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.average = _average(average)

    def _options(self) -> dict[str, Any]:
        return {"average": self.average}


class AveragePrecision(AUROC):
    """Average precision accumulated over batches (functional twin :func:`average_precision`).

    States and arguments as :class:`AUROC`.

    >>> import torch
    >>> m = AveragePrecision()
    >>> m.update(torch.tensor([0.2, 0.6, 0.4, 0.9]), torch.tensor([0, 0, 1, 1]))
    >>> round(float(m.compute()), 4)
    0.8333
    """

    function = staticmethod(average_precision)


class PartialAUROC(_ScoreMetric):
    """One-way partial AUROC over FPR ≤ ``max_fpr`` accumulated over batches (functional twin
    :func:`partial_auroc`; McClish-standardised unless ``standardized=False``).

    Args:
        max_fpr: β in (0, 1] (required).
        standardized: McClish's standardisation (default, as scikit-learn / torchmetrics /
            LibAUC); ``False``: the area divided by β.
        average: ``"macro"`` or ``"none"``.

    >>> import torch
    >>> m = PartialAUROC(max_fpr=0.5)
    >>> m.update(torch.tensor([0.2, 0.6, 0.4, 0.9]), torch.tensor([0, 0, 1, 1]))
    >>> round(float(m.compute()), 4)
    0.6667
    """

    function = staticmethod(partial_auroc)

    def __init__(self, max_fpr: float, standardized: bool = True, average: str = "macro", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_fpr = _fraction(max_fpr, "max_fpr", low_open=True, high_open=False)
        if not isinstance(standardized, bool):
            raise TypeError(f"standardized must be True or False, got {standardized!r}")
        self.standardized = standardized
        self.average = _average(average)

    def _options(self) -> dict[str, Any]:
        return {"max_fpr": self.max_fpr, "standardized": self.standardized, "average": self.average}


class TwoWayPartialAUROC(_ScoreMetric):
    """Two-way partial AUROC (TPR ≥ ``min_tpr``, FPR ≤ ``max_fpr``) accumulated over batches
    (functional twin :func:`two_way_partial_auroc`; Yang et al. 2021, LibAUC's estimator).

    Args:
        min_tpr: α in [0, 1) (required).
        max_fpr: β in (0, 1] (required).
        average: ``"macro"`` or ``"none"``.

    >>> import torch
    >>> m = TwoWayPartialAUROC(min_tpr=0.0, max_fpr=1.0)
    >>> m.update(torch.tensor([0.2, 0.6, 0.4, 0.9]), torch.tensor([0, 0, 1, 1]))
    >>> float(m.compute())
    0.75
    """

    function = staticmethod(two_way_partial_auroc)

    def __init__(self, min_tpr: float, max_fpr: float, average: str = "macro", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_tpr = _fraction(min_tpr, "min_tpr", low_open=False, high_open=True)
        self.max_fpr = _fraction(max_fpr, "max_fpr", low_open=True, high_open=False)
        self.average = _average(average)

    def _options(self) -> dict[str, Any]:
        return {"min_tpr": self.min_tpr, "max_fpr": self.max_fpr, "average": self.average}


class NDCGAtK(_ScoreMetric):
    """NDCG@k accumulated over batches (functional twin :func:`ndcg_at_k`).

    ``update(scores, target)``: [N] scores (all batches form one ranking) or [Q, M] (each
    row a query; the queries of all batches are averaged), relevance ``target`` >= 0.

    Args:
        k: the cut-off (``None``: every item).
        gain: ``"linear"`` (default, scikit-learn / torchmetrics) or ``"exponential"``.
        average: ``"macro"`` (mean over queries) or ``"none"`` ([Q]).

    >>> import torch
    >>> m = NDCGAtK(k=2)
    >>> m.update(torch.tensor([[0.9, 0.8, 0.1]]), torch.tensor([[0, 1, 1]]))
    >>> round(float(m.compute()), 4)
    0.3869
    """

    function = staticmethod(ndcg_at_k)
    binary = False

    def __init__(self, k: int | None = None, gain: str = "linear", average: str = "macro", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.k = None if k is None else check_positive_int(k, "k")
        if gain not in ("linear", "exponential"):
            raise ValueError(f"gain must be 'linear' or 'exponential', got {gain!r}")
        self.gain = gain
        self.average = _average(average)

    def _options(self) -> dict[str, Any]:
        return {"k": self.k, "gain": self.gain, "average": self.average}
