"""One entry point: every classification metric of a model's test-set logits, as a flat dict.

:func:`evaluate` is what the benchmark calls. torchmetrics computes what it has (J1:
accuracy, top-k, macro-F1, Cohen's kappa, confusion matrix; J3: ECE; J4: AUROC / average
precision); this package's :class:`torchmetrics.Metric` subclasses compute the rest (shot
split and worst-class accuracy, MCE, classwise ECE, average-k, neural collapse).

>>> import torch
>>> from lossatlas.metrics import evaluate
>>> r = evaluate(torch.eye(3) * 5, torch.tensor([0, 1, 2]), train_class_counts=[300, 50, 5])
>>> r["accuracy"], r["balanced_accuracy"], r["few_shot_accuracy"]
(1.0, 1.0, 1.0)
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassAveragePrecision,
    MulticlassCalibrationError,
    MulticlassCohenKappa,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from ._common import Tensor, as_tensor, check_scores_target
from .calibration import DEFAULT_BINS, BinnedCalibration, ClasswiseECE
from .classification import FEW_THRESHOLD, MANY_THRESHOLD, ShotAccuracy

__all__ = ["evaluate", "ranking_metrics", "confusion_matrix"]


def _present_mask(target: Tensor, num_classes: int) -> Tensor:
    """Classes for which a one-vs-rest ranking metric is defined: >= 1 positive and >= 1 negative."""
    counts = torch.bincount(target, minlength=num_classes)
    return (counts > 0) & (counts < target.numel())


def ranking_metrics(logits: Any, target: Any, num_classes: int | None = None) -> dict[str, Tensor]:
    """One-vs-rest AUROC and average precision per class (torchmetrics) and their macro means.

    A class with no positive (or no negative) test sample has no AUROC/AP: it is NaN in the
    per-class tensors and left out of the macro mean (torchmetrics' own macro AUROC would
    count it as 0). Returns ``auroc``, ``average_precision`` (macro, scalars) and
    ``auroc_per_class``, ``average_precision_per_class`` ([C]).
    """
    logits, target = check_scores_target(logits, target, num_classes)
    C = logits.shape[1]
    probs = torch.softmax(logits.float(), dim=1)
    mask = _present_mask(target, C)
    out: dict[str, Tensor] = {}
    for name, cls in (("auroc", MulticlassAUROC), ("average_precision", MulticlassAveragePrecision)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchmetrics warns for absent classes; they are masked below
            per_class = cls(num_classes=C, average=None, thresholds=None)(probs, target).to(torch.float64)
        per_class = torch.where(mask, per_class, float("nan"))
        valid = per_class[~torch.isnan(per_class)]
        out[name] = valid.mean() if valid.numel() else torch.tensor(float("nan"), dtype=torch.float64)
        out[f"{name}_per_class"] = per_class
    return out


def confusion_matrix(logits: Any, target: Any, num_classes: int | None = None) -> Tensor:
    """The [C, C] int64 confusion matrix (rows: true class, columns: predicted), by torchmetrics."""
    logits, target = check_scores_target(logits, target, num_classes)
    cm = MulticlassConfusionMatrix(num_classes=logits.shape[1])
    matrix: Tensor = cm(logits.argmax(dim=1), target)  # Metric.__call__ (forward) is untyped
    return matrix.long()


def evaluate(
    logits: Any,
    target: Any,
    *,
    train_class_counts: Any = None,
    features: Any = None,
    classifier_weight: Any = None,
    num_classes: int | None = None,
    n_bins: int = DEFAULT_BINS,
    many_threshold: float = MANY_THRESHOLD,
    few_threshold: float = FEW_THRESHOLD,
    top_ks: tuple[int, ...] = (2, 5),
    average_ks: tuple[int, ...] = (2, 5),
    ranking: bool = True,
) -> dict[str, float]:
    """Evaluate test-set ``logits`` [N, C] against int64 ``target`` [N]; a flat dict of floats.

    Always: ``accuracy``; ``top{k}_accuracy`` for k in ``top_ks`` when C >= k (fixed-size
    set-valued accuracy); ``balanced_accuracy`` (mean per-class recall over classes with
    test samples); ``worst_class_accuracy``; ``macro_f1``; ``kappa`` (Cohen's);
    ``ece`` (torchmetrics, ``n_bins`` equal-width bins, 15 by default; a confidence of
    exactly 1.0 gets torchmetrics' extra bin); ``mce`` (max over non-empty bins);
    ``classwise_ece``; ``auroc`` and ``average_precision`` (one-vs-rest, macro over
    classes present; ``ranking=False`` skips them: torchmetrics' exact curves cost about
    a second per 10^5 scores on a small CPU); ``avg{k}_accuracy`` for k in ``average_ks`` when C > k (adaptive
    average-k, Lorieul et al. 2021; the threshold is fitted on these logits).

    With ``train_class_counts`` [C]: ``many_shot_accuracy``, ``medium_shot_accuracy``,
    ``few_shot_accuracy`` (> ``many_threshold``, between, < ``few_threshold`` training
    samples; NaN for an empty split).

    With ``features`` [N, D] (penultimate layer): ``nc1``, ``nc2_equinorm_features``,
    ``nc2_equiangular_features``, ``nc4`` (against the argmax of ``logits``); with
    ``classifier_weight`` [C, D] as well: ``nc2_equinorm_weights``,
    ``nc2_equiangular_weights``, ``nc3`` (Papyan et al. 2020).

    Inputs may live on any device; the computation runs on CPU (test sets are small).
    """
    logits, target = check_scores_target(logits, target, num_classes)
    if logits.shape[0] == 0:
        raise ValueError("logits is empty: evaluate needs at least one test sample")
    logits, target = logits.cpu(), target.cpu()
    C = logits.shape[1]
    probs = torch.softmax(logits.to(torch.float32), dim=1)
    preds = probs.argmax(dim=1)
    out: dict[str, float] = {}

    out["accuracy"] = float(MulticlassAccuracy(num_classes=C, average="micro")(preds, target))
    for k in top_ks:
        if 1 < k <= C:
            acc = MulticlassAccuracy(num_classes=C, average="micro", top_k=k)
            out[f"top{k}_accuracy"] = float(acc(probs, target))

    shots = ShotAccuracy(C, train_class_counts, many_threshold, few_threshold)
    shots.update(preds, target)
    for name, value in shots.compute().items():
        if name != "per_class_accuracy":
            out[name] = float(value)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["macro_f1"] = float(MulticlassF1Score(num_classes=C, average="macro")(preds, target))
        out["kappa"] = float(MulticlassCohenKappa(num_classes=C)(preds, target))
    if math.isnan(out["kappa"]):  # 0/0: predictions and targets all one and the same class
        out["kappa"] = 1.0 if bool((preds == target).all()) else 0.0

    # float64 probabilities: a top-1 confidence rounds to exactly 1.0 far less often, and
    # only there does torchmetrics' binning differ from BinnedCalibration's (see calibration)
    probs64 = torch.softmax(logits.to(torch.float64), dim=1)
    out["ece"] = float(MulticlassCalibrationError(num_classes=C, n_bins=n_bins, norm="l1")(probs64, target))
    binned = BinnedCalibration(n_bins=n_bins)
    binned.update(logits, target)
    out["mce"] = float(binned.compute()["mce"])
    cw = ClasswiseECE(C, n_bins=n_bins)
    cw.update(logits, target)
    out["classwise_ece"] = float(cw.compute()["classwise_ece"])

    if ranking:
        curves = ranking_metrics(logits, target)
        out["auroc"] = float(curves["auroc"])
        out["average_precision"] = float(curves["average_precision"])

    out.update(_optional_metrics(logits, target, features, classifier_weight, average_ks))
    return out


def _optional_metrics(logits: Tensor, target: Tensor, features: Any, classifier_weight: Any, average_ks: tuple[int, ...]) -> dict[str, float]:
    """Average-k and neural-collapse entries (their modules are imported lazily)."""
    out: dict[str, float] = {}
    C = logits.shape[1]
    ks = tuple(k for k in average_ks if k < C)
    if ks:
        from .setvalued import AverageKAccuracy

        for k in ks:
            m = AverageKAccuracy(k=k)
            m.update(logits, target)
            out[f"avg{k}_accuracy"] = float(m.compute()["average_k_accuracy"])
    if features is not None:
        from .neural_collapse import NeuralCollapse

        feats = as_tensor(features, "features").cpu()
        weight = None if classifier_weight is None else as_tensor(classifier_weight, "classifier_weight").cpu()
        if feats.dim() != 2:
            raise ValueError(f"features must have shape [N, D], got {tuple(feats.shape)}")
        nc = NeuralCollapse(num_classes=C, feature_dim=feats.shape[1], classifier_weight=weight)
        nc.update(feats, target, logits=logits)
        out.update({k: float(v) for k, v in nc.compute().items()})
    elif classifier_weight is not None:
        raise ValueError("classifier_weight needs features: pass the penultimate-layer features too")
    return out
