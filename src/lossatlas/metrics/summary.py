"""One entry point: every classification metric of a model's test-set scores, as a flat dict.

:func:`evaluate` is what the benchmark calls. torchmetrics computes what it has (J1:
accuracy, top-k, macro-F1, Cohen's kappa, confusion matrix; J3: ECE; J4: AUROC / average
precision); this package's :class:`torchmetrics.Metric` subclasses compute the rest (shot
split and worst-class accuracy, MCE, classwise ECE, average-k, neural collapse).

The scores may be logits or probabilities: ``input="auto"`` (default) takes them as
probabilities when every value is in [0, 1] and every row sums to 1, as logits otherwise
(:func:`lossatlas.metrics.infer_input` says which); ``input="logits"`` / ``"probs"`` say it.
Every metric then sees the same float64 probabilities, so logits and the probabilities they
give have the same results.

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

from ._common import Tensor, as_tensor, check_input_kind, check_scores_target, to_probs
from .calibration import DEFAULT_BINS, BinnedCalibration, ClasswiseECE
from .classification import FEW_THRESHOLD, MANY_THRESHOLD, ShotAccuracy

__all__ = ["evaluate", "ranking_metrics", "confusion_matrix"]


def _present_mask(target: Tensor, num_classes: int) -> Tensor:
    """Classes for which a one-vs-rest ranking metric is defined: >= 1 positive and >= 1 negative."""
    counts = torch.bincount(target, minlength=num_classes)
    return (counts > 0) & (counts < target.numel())


def ranking_metrics(preds: Any, target: Any, num_classes: int | None = None, input: str = "auto") -> dict[str, Tensor]:
    """One-vs-rest AUROC and average precision per class (torchmetrics) and their macro means.

    ``preds`` [N, C] are logits or probabilities (``input``: ``"auto"``, ``"logits"`` or
    ``"probs"``, as for :func:`evaluate`); the curves are those of the probabilities (a
    softmax of logits: a class's AUROC on raw logits is a different number).

    A class with no positive (or no negative) test sample has no AUROC/AP: it is NaN in the
    per-class tensors and left out of the macro mean (torchmetrics' own macro AUROC would
    count it as 0). Returns ``auroc``, ``average_precision`` (macro, scalars) and
    ``auroc_per_class``, ``average_precision_per_class`` ([C]).
    """
    preds, target = check_scores_target(preds, target, num_classes)
    C = preds.shape[1]
    probs, _ = to_probs(preds, check_input_kind(input))
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


def confusion_matrix(preds: Any, target: Any, num_classes: int | None = None) -> Tensor:
    """The [C, C] int64 confusion matrix (rows: true class, columns: predicted), by torchmetrics.

    The prediction is the argmax of ``preds`` [N, C], logits or probabilities alike."""
    preds, target = check_scores_target(preds, target, num_classes)
    cm = MulticlassConfusionMatrix(num_classes=preds.shape[1])
    matrix: Tensor = cm(preds.argmax(dim=1), target)  # Metric.__call__ (forward) is untyped
    return matrix.long()


def evaluate(
    preds: Any,
    target: Any,
    *,
    input: str = "auto",
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
    """Evaluate test-set scores ``preds`` [N, C] against int64 ``target`` [N]; a flat dict of floats.

    ``preds`` are logits or probabilities: ``input="auto"`` (default) takes them as
    probabilities when every value is in [0, 1] and every row sums to 1, as logits otherwise
    (:func:`lossatlas.metrics.infer_input` tells which it assumes); ``"logits"`` or
    ``"probs"`` says it (``"probs"`` on anything but probability rows is a ``ValueError``).

    Always: ``accuracy``; ``top{k}_accuracy`` for k in ``top_ks`` when C >= k (fixed-size
    set-valued accuracy); ``balanced_accuracy`` (mean per-class recall over classes with
    test samples); ``worst_class_accuracy``; ``macro_f1``; ``kappa`` (Cohen's);
    ``ece`` (torchmetrics, ``n_bins`` equal-width bins, 15 by default; a confidence of
    exactly 1.0 gets torchmetrics' extra bin); ``mce`` (max over non-empty bins);
    ``classwise_ece``; ``auroc`` and ``average_precision`` (one-vs-rest, macro over
    classes present; ``ranking=False`` skips them: torchmetrics' exact curves cost about
    a second per 10^5 scores on a small CPU); ``avg{k}_accuracy`` for k in ``average_ks`` when C > k (adaptive
    average-k, Lorieul et al. 2021; the threshold is fitted on these scores).

    With ``train_class_counts`` [C]: ``many_shot_accuracy``, ``medium_shot_accuracy``,
    ``few_shot_accuracy`` (> ``many_threshold``, between, < ``few_threshold`` training
    samples; NaN for an empty split).

    With ``features`` [N, D] (penultimate layer): ``nc1``, ``nc2_equinorm_features``,
    ``nc2_equiangular_features``, ``nc4`` (against the argmax of ``preds``); with
    ``classifier_weight`` [C, D] as well: ``nc2_equinorm_weights``,
    ``nc2_equiangular_weights``, ``nc3`` (Papyan et al. 2020).

    Inputs may live on any device; the computation runs on CPU (test sets are small).
    """
    preds, target = check_scores_target(preds, target, num_classes)
    if preds.shape[0] == 0:
        raise ValueError("preds is empty: evaluate needs at least one test sample")
    target = target.cpu()
    C = preds.shape[1]
    # float64 probabilities: a top-1 confidence rounds to exactly 1.0 far less often, and
    # only there does torchmetrics' binning differ from BinnedCalibration's (see calibration);
    # every metric below reads these, so logits and their softmax give the same results
    probs64, _ = to_probs(preds.cpu(), check_input_kind(input))
    probs = probs64.to(torch.float32)
    labels = probs.argmax(dim=1)
    out: dict[str, float] = {}

    out["accuracy"] = float(MulticlassAccuracy(num_classes=C, average="micro")(labels, target))
    for k in top_ks:
        if 1 < k <= C:
            acc = MulticlassAccuracy(num_classes=C, average="micro", top_k=k)
            out[f"top{k}_accuracy"] = float(acc(probs, target))

    shots = ShotAccuracy(C, train_class_counts, many_threshold, few_threshold)
    shots.update(labels, target)
    for name, value in shots.compute().items():
        if name != "per_class_accuracy":
            out[name] = float(value)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["macro_f1"] = float(MulticlassF1Score(num_classes=C, average="macro")(labels, target))
        out["kappa"] = float(MulticlassCohenKappa(num_classes=C)(labels, target))
    if math.isnan(out["kappa"]):  # 0/0: predictions and targets all one and the same class
        out["kappa"] = 1.0 if bool((labels == target).all()) else 0.0

    out["ece"] = float(MulticlassCalibrationError(num_classes=C, n_bins=n_bins, norm="l1")(probs64, target))
    binned = BinnedCalibration(n_bins=n_bins, input="probs")
    binned.update(probs64, target)
    out["mce"] = float(binned.compute()["mce"])
    cw = ClasswiseECE(C, n_bins=n_bins, input="probs")
    cw.update(probs64, target)
    out["classwise_ece"] = float(cw.compute()["classwise_ece"])

    if ranking:
        curves = ranking_metrics(probs64, target, input="probs")
        out["auroc"] = float(curves["auroc"])
        out["average_precision"] = float(curves["average_precision"])

    out.update(_optional_metrics(probs64, target, features, classifier_weight, average_ks))
    return out


def _optional_metrics(probs: Tensor, target: Tensor, features: Any, classifier_weight: Any, average_ks: tuple[int, ...]) -> dict[str, float]:
    """Average-k and neural-collapse entries from probabilities [N, C] (modules imported lazily)."""
    out: dict[str, float] = {}
    C = probs.shape[1]
    ks = tuple(k for k in average_ks if k < C)
    if ks:
        from .setvalued import AverageKAccuracy

        for k in ks:
            m = AverageKAccuracy(k=k, input="probs")
            m.update(probs, target)
            out[f"avg{k}_accuracy"] = float(m.compute()["average_k_accuracy"])
    if features is not None:
        from .neural_collapse import NeuralCollapse

        feats = as_tensor(features, "features").cpu()
        weight = None if classifier_weight is None else as_tensor(classifier_weight, "classifier_weight").cpu()
        if feats.dim() != 2:
            raise ValueError(f"features must have shape [N, D], got {tuple(feats.shape)}")
        nc = NeuralCollapse(num_classes=C, feature_dim=feats.shape[1], classifier_weight=weight)
        nc.update(feats, target, logits=probs)  # NC4 reads the argmax only
        out.update({k: float(v) for k, v in nc.compute().items()})
    elif classifier_weight is not None:
        raise ValueError("classifier_weight needs features: pass the penultimate-layer features too")
    return out
