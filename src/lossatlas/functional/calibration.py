"""Calibration-minded classification losses (catalogue rows C1–C5), as pure functions.

Every per-sample function takes ``logits`` [N, C] and integer ``target`` [N] and returns a
scalar for ``reduction="mean"|"sum"`` and per-sample losses [N] for ``"none"``; samples
whose target equals ``ignore_index`` are skipped (the mean is over the others).

AnyLoss is a batch-level loss (it scores a soft confusion matrix of the whole batch): its
``"none"`` returns one loss per class [K] and ``"mean"`` is their macro average.

The module twins in :mod:`lossatlas.losses.calibration` carry the full documentation.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import (
    check_class_target,
    check_finite,
    check_float,
    check_logits,
    check_number,
    check_reduction,
    check_same_device,
    check_tensor,
)
from ._common import compute_dtype, prepare_classification, reduce_loss, target_logit

__all__ = [
    "poly1",
    "encouraging",
    "squentropy",
    "spherical_z_loss",
    "log_z_regulariser",
    "log_z_squared",
    "soft_confusion_matrix",
    "anyloss",
    "ANYLOSS_METRICS",
]


def _check_two_classes(logits: Tensor, loss: str, why: str) -> None:
    check_logits(logits, validate=False)
    if logits.shape[1] < 2:
        raise ValueError(f"{loss} needs at least 2 classes ({why}), got logits {tuple(logits.shape)}")


def poly1(
    logits: Tensor,
    target: Tensor,
    *,
    epsilon: float = 1.0,
    label_smoothing: float = 0.0,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Poly-1 loss ``CE + ε (1 − p_t)``; see :class:`lossatlas.losses.Poly1Loss`.

    With label smoothing, ``CE`` is the smoothed cross-entropy and ``p_t = Σ_j t_j p_j`` for the
    smoothed target ``t`` (as in the paper's reference listing).
    """
    epsilon = check_number(epsilon, "epsilon", low=-1.0)
    label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    z, y, sample_w, out_dtype = prepare_classification(logits, target, reduction, validate, weight, ignore_index)
    logp = torch.log_softmax(z, dim=1)
    logp_y = target_logit(logp, y)
    if label_smoothing == 0.0:
        ce = -logp_y
        # 1 − p_t = −expm1(log p_t): accurate when p_t is close to 1.
        one_minus_pt = -torch.expm1(logp_y)
    else:
        num_classes = z.shape[1]
        ls = label_smoothing
        ce = -((1.0 - ls) * logp_y + (ls / num_classes) * logp.sum(1))
        pt = (1.0 - ls) * logp_y.exp() + ls / num_classes  # Σ_j p_j = 1
        one_minus_pt = 1.0 - pt
    losses = ce + epsilon * one_minus_pt
    return reduce_loss(losses, reduction, sample_w, out_dtype)


def encouraging(
    logits: Tensor,
    target: Tensor,
    *,
    log_end: float = 0.75,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Encouraging loss ``−log p_y + log(1 − p_y)`` (linear above ``log_end``); see
    :class:`lossatlas.losses.EncouragingLoss`."""
    log_end = check_number(log_end, "log_end", low=0.0, high=1.0, low_open=True)
    z, y, sample_w, out_dtype = prepare_classification(logits, target, reduction, validate, None, ignore_index)
    logp_y = target_logit(torch.log_softmax(z, dim=1), y)
    # The reference clamps 1 − p at 1e-5 before the log (so the bonus is ≥ log 1e-5).
    bonus = torch.log((-torch.expm1(logp_y)).clamp_min(1e-5))
    if log_end != 1.0:
        p_y = logp_y.exp()
        linear = (p_y - log_end) / (log_end - 1.0) + torch.log(torch.tensor(1.0 - log_end, dtype=z.dtype, device=z.device))
        bonus = torch.where(p_y > log_end, linear, bonus)
    losses = bonus - logp_y
    return reduce_loss(losses, reduction, sample_w, out_dtype)


def squentropy(
    logits: Tensor,
    target: Tensor,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Squentropy ``CE + (1 / (C − 1)) Σ_{j≠y} z_j²``; see :class:`lossatlas.losses.SquentropyLoss`."""
    _check_two_classes(logits, "squentropy", "it averages over the C - 1 wrong ones")
    z, y, sample_w, out_dtype = prepare_classification(logits, target, reduction, validate, None, ignore_index)
    ce = F.cross_entropy(z, y, reduction="none")
    # Σ over the wrong classes, summed directly (no cancellation against z_y²).
    wrong_sq = z.square().scatter(1, y.unsqueeze(1), 0.0).sum(1)
    losses = ce + wrong_sq / (z.shape[1] - 1)
    return reduce_loss(losses, reduction, sample_w, out_dtype)


def spherical_z_loss(
    logits: Tensor,
    target: Tensor,
    *,
    a: float = 1.0,
    b: float = 0.0,
    eps: float = 1e-12,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """de Brébisson & Vincent's Z-loss ``(1/a) softplus(a (b − (z_y − μ)/σ))``; see
    :class:`lossatlas.losses.SphericalZLoss`. Not the PaLM log-Z² penalty (:func:`log_z_squared`)."""
    a = check_number(a, "a", low=0.0, low_open=True)
    b = check_number(b, "b")
    eps = check_number(eps, "eps", low=0.0)
    _check_two_classes(logits, "spherical_z_loss", "it standardises over classes")
    z, y, sample_w, out_dtype = prepare_classification(logits, target, reduction, validate, None, ignore_index)
    mu = z.mean(1, keepdim=True)
    centred = z - mu
    var = centred.square().mean(1)  # population variance over the C outputs, as the paper
    sigma = var.clamp_min(torch.finfo(z.dtype).tiny).sqrt() + eps
    zc = target_logit(centred, y) / sigma
    losses = F.softplus(a * (b - zc)) / a
    return reduce_loss(losses, reduction, sample_w, out_dtype)


def log_z_regulariser(
    logits: Tensor,
    *,
    mask: Tensor | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """The bare penalty ``(log Z)²`` with ``log Z = logsumexp_j z_j``, per row (no coefficient).

    ``mask`` [N] (bool or 0/1) leaves rows out (e.g. padding tokens); ``"mean"`` is over kept rows.
    """
    check_reduction(reduction)
    check_logits(logits, validate)
    out_dtype = logits.dtype
    z = logits.to(compute_dtype(logits))
    pen = torch.logsumexp(z, dim=1).square()
    w = None
    if mask is not None:
        check_tensor(mask, "mask")
        check_same_device("logits", logits, "mask", mask)
        if mask.shape != (logits.shape[0],):
            raise ValueError(f"mask must have shape [N] = [{logits.shape[0]}], got {tuple(mask.shape)}")
        w = mask.to(z.dtype)
    return reduce_loss(pen, reduction, w, out_dtype)


def log_z_squared(
    logits: Tensor,
    target: Tensor,
    *,
    coefficient: float = 1e-4,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """PaLM / T5X ``CE + c (log Z)²`` with ``log Z = logsumexp_j z_j``; see
    :class:`lossatlas.losses.LogZSquaredLoss`. Not de Brébisson's Z-loss (:func:`spherical_z_loss`)."""
    coefficient = check_number(coefficient, "coefficient", low=0.0)
    z, y, sample_w, out_dtype = prepare_classification(logits, target, reduction, validate, None, ignore_index)
    log_z = torch.logsumexp(z, dim=1)
    ce = log_z - target_logit(z, y)
    losses = ce + coefficient * log_z.square()
    return reduce_loss(losses, reduction, sample_w, out_dtype)


ANYLOSS_METRICS = ("accuracy", "f_beta", "gmean", "balanced_accuracy")


def _anyloss_inputs(logits: Tensor, target: Tensor, validate: bool) -> tuple[Tensor, Tensor, torch.dtype]:
    """(probabilities [N, K], one-vs-rest targets [N, K], out dtype) for binary or multi-class input.

    Binary: ``logits`` [N] or [N, 1] with 0/1 ``target`` [N] (int, bool or float); K = 1 and
    p = σ(z). Multi-class: ``logits`` [N, C ≥ 2] with class indices [N]; K = C, p = softmax(z).
    """
    check_float(logits, "logits")
    check_tensor(target, "target")
    if logits.dim() == 1:
        logits = logits.unsqueeze(1)
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape [N] or [N, 1] (binary) or [N, C] (multi-class), got {tuple(logits.shape)}")
    check_finite(logits, "logits", validate)
    check_same_device("logits", logits, "target", target)
    z = logits.to(compute_dtype(logits))
    if logits.shape[1] == 1:
        if target.dim() != 1 or target.shape[0] != logits.shape[0]:
            raise ValueError(f"target must have shape [N] = [{logits.shape[0]}] of 0/1 labels, got {tuple(target.shape)}")
        if target.is_complex():
            raise TypeError("target must hold 0/1 labels (int, bool or float)")
        y = target.to(z.dtype)
        if validate and y.numel() and not bool(((y == 0) | (y == 1)).all()):
            raise ValueError("binary target values must be 0 or 1")
        return torch.sigmoid(z), y.unsqueeze(1), logits.dtype
    check_class_target(target, logits, validate)
    y = F.one_hot(target, logits.shape[1]).to(z.dtype)
    return torch.softmax(z, dim=1), y, logits.dtype


def soft_confusion_matrix(logits: Tensor, target: Tensor, *, amplifier: float = 73.0, validate: bool = True) -> Tensor:
    """AnyLoss's soft one-vs-rest confusion matrices, [K, 2, 2] as ``[[TN, FP], [FN, TP]]``.

    ``ŷ = A(p) = σ(L (p − 0.5))`` with ``L = amplifier``; ``TP = Σ y ŷ``, ``FN = Σ y (1 − ŷ)``,
    ``FP = Σ (1 − y) ŷ``, ``TN = Σ (1 − y)(1 − ŷ)``. As L → ∞ it tends to the hard confusion
    matrix of the prediction ``p > 0.5`` (same layout as sklearn's
    ``multilabel_confusion_matrix``). K = 1 for binary input, C for multi-class.
    """
    amplifier = check_number(amplifier, "amplifier", low=0.0, low_open=True)
    p, y, _ = _anyloss_inputs(logits, target, validate)
    yhat = torch.sigmoid(amplifier * (p - 0.5))
    tp = (y * yhat).sum(0)
    pos = y.sum(0)
    pred = yhat.sum(0)
    n = torch.tensor(float(y.shape[0]), dtype=p.dtype, device=p.device)
    fn = pos - tp
    fp = pred - tp
    tn = n - pos - pred + tp
    return torch.stack([torch.stack([tn, fp], -1), torch.stack([fn, tp], -1)], -2)


def anyloss(
    logits: Tensor,
    target: Tensor,
    *,
    metric: str = "f_beta",
    beta: float = 1.0,
    amplifier: float = 73.0,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """AnyLoss ``1 − metric(soft confusion matrix)``; see :class:`lossatlas.losses.AnyLoss`.

    ``metric`` in ``ANYLOSS_METRICS``. Returns per-class losses [K] for ``"none"``, their macro
    mean for ``"mean"`` and sum for ``"sum"`` (K = 1 for binary input).
    """
    check_reduction(reduction)
    if metric not in ANYLOSS_METRICS:
        raise ValueError(f"metric must be one of {ANYLOSS_METRICS}, got {metric!r}")
    beta = check_number(beta, "beta", low=0.0)
    cm = soft_confusion_matrix(logits, target, amplifier=amplifier, validate=validate)
    out_dtype = logits.dtype
    tn, fp, fn, tp = cm[:, 0, 0], cm[:, 0, 1], cm[:, 1, 0], cm[:, 1, 1]
    tiny = torch.finfo(cm.dtype).tiny
    n = tn + fp + fn + tp
    if metric == "accuracy":
        score = (tp + tn) / n.clamp_min(tiny)
    elif metric == "f_beta":
        b2 = beta * beta
        score = (1.0 + b2) * tp / ((1.0 + b2) * tp + b2 * fn + fp).clamp_min(tiny)
    else:
        # TP + FN = Σ y and TN + FP = N − Σ y are the (exact) class sizes.
        tpr = tp / (tp + fn).clamp_min(tiny)
        tnr = tn / (tn + fp).clamp_min(tiny)
        if metric == "balanced_accuracy":
            score = 0.5 * (tpr + tnr)
        else:
            score = (tpr * tnr).clamp_min(tiny).sqrt()
    losses = 1.0 - score
    if reduction == "none":
        return losses.to(out_dtype)
    out = losses.sum() if reduction == "sum" else losses.mean()
    return out.to(out_dtype)
