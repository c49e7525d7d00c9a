"""Calibration-minded classification losses (catalogue rows C1–C5), as pure functions.

Every per-sample function takes ``logits`` [N, C] and integer ``target`` [N] and returns a
scalar for ``reduction="mean"|"sum"`` and per-sample losses [N] for ``"none"``; samples
whose target equals ``ignore_index`` are skipped (the mean is over the others).

AnyLoss is a batch-level loss (it scores a soft confusion matrix of the whole batch): it
has no per-sample decomposition, so ``"none"`` gives each of the N samples the batch loss
(``"mean"`` is the batch loss, ``"sum"`` N times it); :func:`anyloss_per_class` returns the
per-class losses [K] whose mean it is.

Each public loss function is the one definition of its method (:func:`lossatlas._spec.loss_function`:
its signature holds the defaults, its Params the checks and the defaults' sources); the module
twins in :mod:`lossatlas.losses.calibration` are built from them and carry the full documentation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from .._paths import take_fused
from .._spec import (
    COMMON,
    Param,
    any_number,
    as_bool,
    loss_function,
    mean_divisor,
    nonnegative,
    positive,
    safe_ratio,
    unit_interval,
)
from .._validation import (
    check_class_target,
    check_finite,
    check_float,
    check_logits,
    check_number,
    check_same_device,
    check_tensor,
    compiling,
)
from ._common import check_companion_logits, compute_dtype, prepare_classification, reduce_loss, target_logit
from ._fused import (
    as_dtype,
    fused_or_traced,
    handed_back,
    log_prob_target,
    reduce_rows,
    scale_grad,
    softmax_and_log_target,
    softmax_row_loss,
    softmax_rows,
    traced_reduce,
)

__all__ = [
    "cals_constraints",
    "cals_penalty",
    "cals",
    "poly1",
    "encouraging",
    "squentropy",
    "spherical_z_loss",
    "log_z_regulariser",
    "log_z_squared",
    "soft_confusion_matrix",
    "anyloss",
    "anyloss_per_class",
    "ANYLOSS_METRICS",
    "correctness_aware",
    "rankmixup_mrl",
    "rankmixup_mndcg",
]

CLASSIFICATION = ("logits", "target")
#: From this many logits (on the CPU, with a gradient) a loss of this module runs as one
#: ``torch.autograd.Function`` with a hand-derived backward (one softmax where it needs one);
#: measured at N = 1024 on CPU, faster than the composed ops from C = 10 up.
#: :func:`lossatlas._paths.force_path` picks either path for the tests.
FUSE_MIN_NUMEL = 1


def _prepare(logits: Tensor, target: Tensor, reduction: str, validate: bool, ignore_index: int,
             weight: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None, torch.dtype]:
    """:func:`prepare_classification`; where the fused path will run (CPU), the ignore mask is
    built only when some target can be ``ignore_index`` (one host read; the usual batch then
    skips the mask, its blanking pass over [N, C] and the later test that its weights are 1)."""
    lazy = isinstance(logits, Tensor) and take_fused(logits, FUSE_MIN_NUMEL)
    return prepare_classification(logits, target, reduction, validate, weight, ignore_index, lazy_mask=lazy)


def _check_two_classes(logits: Tensor, loss: str, why: str) -> None:
    check_logits(logits, validate=False)
    if logits.shape[1] < 2:
        raise ValueError(f"{loss} needs at least 2 classes ({why}), got logits {tuple(logits.shape)}")


def _poly_epsilon(value: Any, name: str) -> float:
    """A real number ≥ −1 (ε = −1 removes the leading polynomial term)."""
    return check_number(value, name, low=-1.0)


def _open_unit(value: Any, name: str) -> float:
    """A real number in (0, 1]."""
    return check_number(value, name, low=0.0, high=1.0, low_open=True)


@loss_function(inputs=CLASSIFICATION, params={
    "epsilon": Param("ε ≥ −1, the perturbation of the leading polynomial coefficient (0 = cross-entropy)", _poly_epsilon,
                     "Leng et al. 2022 (ε = 1 for Poly-1 in the paper's main ImageNet results)"),
    "label_smoothing": Param("label smoothing in [0, 1]; ``p_t`` is then ``Σ_j t_j p_j`` for the smoothed target", unit_interval,
                             "0 (the paper also combines Poly-1 with smoothing 0.1)"),
})
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
    z, y, sample_w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index, cast("Tensor | None", weight))
    if label_smoothing == 0.0 and fused_or_traced(z, FUSE_MIN_NUMEL):
        def row(lpy: Tensor, _: Tensor | None) -> tuple[Tensor, Tensor, None]:
            # ℓ = −log p_t + ε (1 − p_t); ∂ℓ/∂ log p_t = −1 − ε p_t = ε (1 − p_t) − (1 + ε): four operator
            # calls on N values from m = ε (1 − p_t); no cancellation (m ≤ 0 ≤ 1 + ε for ε < 0, m < 1 + ε for ε ≥ 0)
            m = torch.expm1(lpy).mul_(-epsilon)
            return m - lpy, m.sub_(1.0 + epsilon), None

        return as_dtype(softmax_row_loss(z, y, row, sample_w, reduction), out_dtype)
    losses = _poly1(z, y, epsilon, label_smoothing)
    return reduce_loss(losses, reduction, sample_w, out_dtype)


def _poly1(z: Tensor, y: Tensor, epsilon: float, label_smoothing: float) -> Tensor:
    if label_smoothing == 0.0:
        logp_y = log_prob_target(z, y)
        # 1 − p_t = −expm1(log p_t): accurate when p_t is close to 1.
        return -logp_y + epsilon * -torch.expm1(logp_y)
    logp = torch.log_softmax(z, dim=1)
    logp_y = target_logit(logp, y)
    ls = label_smoothing
    num_classes = z.shape[1]
    ce = -((1.0 - ls) * logp_y + (ls / num_classes) * logp.sum(1))
    pt = (1.0 - ls) * logp_y.exp() + ls / num_classes  # Σ_j p_j = 1
    return ce + epsilon * (1.0 - pt)


@loss_function(inputs=CLASSIFICATION, params={
    "log_end": Param("in (0, 1]: the probability above which the log bonus continues linearly (1 = pure log bonus)",
                     _open_unit, "lancopku EncouragingLoss (0.75)"),
})
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
    z, y, sample_w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    if fused_or_traced(z, FUSE_MIN_NUMEL):
        return as_dtype(softmax_row_loss(z, y, lambda lpy, _: _encouraging_row(lpy, log_end), sample_w, reduction), out_dtype)
    logp_y = log_prob_target(z, y)
    # The reference clamps 1 − p at 1e-5 before the log (so the bonus is ≥ log 1e-5).
    bonus = torch.log((-torch.expm1(logp_y)).clamp_min(1e-5))
    if log_end != 1.0:
        p_y = logp_y.exp()
        linear = (p_y - log_end) / (log_end - 1.0) + math.log(1.0 - log_end)
        bonus = torch.where(p_y > log_end, linear, bonus)
    return reduce_loss(bonus - logp_y, reduction, sample_w, out_dtype)


#: Below this ``log_end`` the fused encouraging loss needs no clamp of ``1 − p`` (margin for float32's rounding of ``p``).
_ENCOURAGING_UNCLAMPED = 0.9999


def _encouraging_row(lpy: Tensor, log_end: float) -> tuple[Tensor, Tensor, None]:
    """Encouraging loss per row and its derivative w.r.t. ``log p_y`` (the fused path)."""
    p_y = lpy.exp()
    if log_end < _ENCOURAGING_UNCLAMPED:
        # every row that the 1e-5 clamp would touch (1 − p < 1e-5) lies in the linear part (p > log_end), so
        # the clamp never decides anything: bonus log(1 − p) below log_end, with ∂/∂ log p − 1 = −1/(1 − p)
        one_minus = torch.expm1(lpy).neg_()
        above = p_y > log_end
        linear = p_y.mul_(1.0 / (log_end - 1.0))
        bonus = torch.where(above, linear + (math.log(1.0 - log_end) - log_end / (log_end - 1.0)), one_minus.log())
        return bonus.sub_(lpy), torch.where(above, linear.sub_(1.0), one_minus.reciprocal_().neg_()), None

    one_minus = -torch.expm1(lpy)
    kept = one_minus >= 1e-5  # clamp_min's gradient mask
    one_minus_c = one_minus.clamp_min(1e-5)
    bonus = one_minus_c.log()
    slope = torch.where(kept, -p_y / one_minus_c, 0.0)  # ∂ log(1 − p)/∂ log p = −p / (1 − p)
    if log_end != 1.0:
        linear = (p_y - log_end) / (log_end - 1.0) + math.log(1.0 - log_end)
        above = p_y > log_end
        bonus = torch.where(above, linear, bonus)
        slope = torch.where(above, p_y / (log_end - 1.0), slope)
    return bonus - lpy, slope.sub_(1.0), None


@loss_function(compile_opaque=True, inputs=CLASSIFICATION)
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
    z, y, sample_w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    if take_fused(z, FUSE_MIN_NUMEL):
        return as_dtype(_squentropy_fused(z, y.unsqueeze(1), sample_w, reduction), out_dtype)
    ce = -log_prob_target(z, y)
    # Σ over the wrong classes, summed directly (no cancellation against z_y²).
    wrong_sq = z.square().scatter(1, y.unsqueeze(1), 0.0).sum(1)
    return reduce_loss(ce + wrong_sq / (z.shape[1] - 1), reduction, sample_w, out_dtype)


class _Squentropy(torch.autograd.Function):
    """Squentropy from one softmax: ``ℓ_i = −log p_{iy} + Σ_{j≠y} z_{ij}² / (C − 1)``, backward
    ``∂ℓ/∂z = p − e_y + 2 z_{j≠y} / (C − 1)`` written as ``p + 2z/(C−1)`` with the target column set
    to ``p_y − 1`` (one add, one multiply over [N, C]; ``z`` itself is what is kept)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, idx: Tensor, row_w: Tensor | None, reduction: str) -> Tensor:
        p, lpy = softmax_and_log_target(z, idx)
        wrong_sq = z.square().scatter_(1, idx, 0.0).sum(1)  # Σ over the wrong classes, summed directly
        out, ctx.k = reduce_rows(wrong_sq.div_(z.shape[1] - 1).sub_(lpy), row_w, reduction)
        ctx.save_for_backward(z, idx, p, torch.expm1(lpy).unsqueeze_(1))
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        z, idx, p, p_y_minus_1 = ctx.saved_tensors
        gz = torch.add(p, z, alpha=2.0 / (z.shape[1] - 1))
        gz.scatter_(1, idx, p_y_minus_1)
        return scale_grad(gz, ctx.k, grad), None, None, None


_squentropy_fused = cast(Callable[..., Tensor], _Squentropy.apply)


class _SphericalZ(torch.autograd.Function):
    """de Brébisson & Vincent's Z-loss with a hand-derived backward: with ``c = z − μ``,
    ``σ = √max(var, tiny) + ε`` and ``s = σ_sigmoid(a (b − c_y/σ))``, ``∂ℓ/∂z_k =
    −s (e_{y,k} − 1/C)/σ + s c_y [var ≥ tiny] c_k / (C σ² √max(var, tiny))``: one multiply-add
    over [N, C] and an N-element scatter."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, idx: Tensor, a: float, b: float, eps: float, row_w: Tensor | None,
                reduction: str) -> Tensor:
        num_classes = z.shape[1]
        centred = z - z.mean(1, keepdim=True)
        var = torch.linalg.vector_norm(centred, dim=1).square_().div_(num_classes)  # population variance
        tiny = torch.finfo(z.dtype).tiny
        root = var.clamp_min(tiny).sqrt_()
        sigma = root + eps
        c_y = centred.gather(1, idx).squeeze_(1)
        x = torch.div(c_y, sigma).neg_().add_(b)
        if a != 1.0:
            x = x.mul_(a)
        out, ctx.k = reduce_rows(F.softplus(x) if a == 1.0 else F.softplus(x).div_(a), row_w, reduction)
        s_over = torch.sigmoid(x).div_(sigma)  # −∂ℓ/∂c_y, s/σ
        # ∂ℓ/∂z = coef_c · c + coef_1 + coef_e · e_y
        ctx.coef_1 = s_over / num_classes
        ctx.coef_c = torch.where(var >= tiny, s_over * c_y / (sigma * root * num_classes), 0.0)
        ctx.coef_e = s_over.neg_()
        ctx.centred = centred
        ctx.save_for_backward(idx)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (idx,) = ctx.saved_tensors
        gz = torch.addcmul(ctx.coef_1.unsqueeze(1), ctx.centred, ctx.coef_c.unsqueeze(1))
        gz.scatter_add_(1, idx, ctx.coef_e.unsqueeze(1))
        return scale_grad(gz, ctx.k, grad), None, None, None, None, None, None


_spherical_z_fused = cast(Callable[..., Tensor], _SphericalZ.apply)


@loss_function(inputs=CLASSIFICATION, params={
    "a": Param("sharpness a > 0", positive, "authors' example code (a = 1); the paper tunes a per task"),
    "b": Param("location b: the standardised score beyond which the loss flattens", any_number,
               "authors' example code (b = 0); the paper tunes b per task"),
    "eps": Param("ε ≥ 0 added to σ (all-equal logits give σ = 0)", nonnegative, "authors' example code (1e-12 added to σ)"),
})
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
    _check_two_classes(logits, "spherical_z_loss", "it standardises over classes")
    z, y, sample_w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    if take_fused(z, FUSE_MIN_NUMEL):
        return as_dtype(_spherical_z_fused(z, y.unsqueeze(1), a, b, eps, sample_w, reduction), out_dtype)
    centred = z - z.mean(1, keepdim=True)
    var = centred.square().mean(1)  # population variance over the C outputs, as the paper
    sigma = var.clamp_min(torch.finfo(z.dtype).tiny).sqrt() + eps
    zc = target_logit(centred, y) / sigma
    return reduce_loss(F.softplus(a * (b - zc)) / a, reduction, sample_w, out_dtype)


@loss_function(inputs=("logits",), call=("mask",))
def log_z_regulariser(
    logits: Tensor,
    *,
    mask: Tensor | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """The bare penalty ``(log Z)²`` with ``log Z = logsumexp_j z_j``, per row (no coefficient).

    ``mask`` [N] (bool or 0/1) leaves rows out (e.g. padding tokens); ``"mean"`` is over kept rows.

    >>> import torch, lossatlas as la
    >>> float(la.functional.log_z_regulariser(torch.zeros(3, 4)))  # (log 4)²
    1.921...
    """
    check_logits(logits, validate)
    z = logits.to(compute_dtype(logits))
    w = None
    if mask is not None:
        check_tensor(mask, "mask")
        check_same_device("logits", logits, "mask", mask)
        if mask.shape != (logits.shape[0],):
            raise ValueError(f"mask must have shape [N] = [{logits.shape[0]}], got {tuple(mask.shape)}")
        w = mask.to(z.dtype)
    return reduce_loss(torch.logsumexp(z, dim=1).square(), reduction, w, logits.dtype)


@loss_function(inputs=CLASSIFICATION, params={
    "coefficient": Param("c ≥ 0, the weight of the (log Z)² penalty (0 = cross-entropy)", nonnegative,
                         "PaLM (Chowdhery et al.) and T5X: z_loss = 1e-4"),
})
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
    z, y, sample_w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    if fused_or_traced(z, FUSE_MIN_NUMEL):
        def row(lpy: Tensor, lse: Tensor | None) -> tuple[Tensor, float, Tensor]:
            assert lse is not None
            # ℓ = −log p_y + c (log Z)²: ∂ℓ/∂z = (p − e_y) + 2c log Z · p
            return torch.addcmul(-lpy, lse, lse, value=coefficient), -1.0, lse * (2.0 * coefficient)

        return as_dtype(softmax_row_loss(z, y, row, sample_w, reduction, with_lse=True), out_dtype)
    log_z = torch.logsumexp(z, dim=1)
    losses = (log_z - target_logit(z, y)) + coefficient * log_z.square()
    return reduce_loss(losses, reduction, sample_w, out_dtype)


ANYLOSS_METRICS = ("accuracy", "f_beta", "gmean", "balanced_accuracy")


def _anyloss_metric(value: Any, name: str) -> str:
    """One of :data:`ANYLOSS_METRICS`."""
    if not isinstance(value, str) or value not in ANYLOSS_METRICS:
        raise ValueError(f"{name} must be one of {ANYLOSS_METRICS}, got {value!r}")
    return value


_ANYLOSS_PARAMS = {
    "metric": Param("the metric turned into a loss: ``'accuracy'``, ``'f_beta'``, ``'gmean'`` or ``'balanced_accuracy'``",
                    _anyloss_metric,
                    "lossatlas choice (F1); the paper covers accuracy, F_β, G-mean, balanced accuracy"),
    "beta": Param("β ≥ 0 of F_β (used by ``metric='f_beta'`` only)", nonnegative, "F_1 (β = 1)"),
    "amplifier": Param("L > 0, the slope of the amplifier ``ŷ = σ(L (p − 0.5))``", positive, "doheonhan/anyloss (L = 73)"),
}


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
    check_finite(logits, "logits", validate, allow_neg_inf=True)  # -inf: p = 0, a masked class (softmax) or a sure negative (sigmoid)
    check_same_device("logits", logits, "target", target)
    z = logits.to(compute_dtype(logits))
    if logits.shape[1] == 1:
        if target.dim() != 1 or target.shape[0] != logits.shape[0]:
            raise ValueError(f"target must have shape [N] = [{logits.shape[0]}] of 0/1 labels, got {tuple(target.shape)}")
        if target.is_complex():
            raise TypeError("target must hold 0/1 labels (int, bool or float)")
        y = target.to(z.dtype)
        if validate and not compiling() and y.numel() and not bool(((y == 0) | (y == 1)).all()):
            raise ValueError("binary target values must be 0 or 1")
        return torch.sigmoid(z), y.unsqueeze(1), logits.dtype
    check_class_target(target, logits, validate)
    y = F.one_hot(target, logits.shape[1]).to(z.dtype)
    return torch.softmax(z, dim=1), y, logits.dtype


def _soft_confusion(p: Tensor, y: Tensor, amplifier: float) -> Tensor:
    """[K, 2, 2] soft confusion matrices ``[[TN, FP], [FN, TP]]`` of probabilities ``p`` and targets ``y`` [N, K]."""
    yhat = torch.sigmoid(amplifier * (p - 0.5))
    return _confusion(tp=(y * yhat).sum(0), pos=y.sum(0), pred=yhat.sum(0), n=y.shape[0])


def _anyloss_terms(tp: Tensor, pos: Tensor, pred: Tensor, n: int, metric: str, beta: float,
                   scale: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """AnyLoss ``1 − mean_k score_k`` from the soft counts [C] (TP, positives, predicted
    positives) of N rows, and its derivatives w.r.t. TP and Σ ŷ [C], written out: with
    ``D = β² P + Σŷ`` (= (1+β²) TP + β² FN + FP), ``Q = N − P`` (= TN + FP) and ``TN = Q − Σŷ + TP``,

    * accuracy ``(TP + TN) / N``: ∂/∂TP = 2/N, ∂/∂Σŷ = −1/N;
    * F_β ``(1+β²) TP / D``: ∂/∂TP = (1+β²)/D, ∂/∂Σŷ = −score/D;
    * balanced accuracy ``(TP/P + TN/Q)/2``: ∂/∂TP = (1/P + 1/Q)/2, ∂/∂Σŷ = −1/(2Q);
    * G-mean ``√max(TPR·TNR, tiny)``: the chain rule through the product (0 where clamped);

    a ratio with a zero denominator is 0 with a zero gradient, as :func:`safe_ratio`. The
    derivatives come multiplied by ``scale`` (the caller's chain-rule factor)."""
    k = tp.shape[0] / scale
    if metric == "accuracy":
        score = (pred.neg().add_(tp, alpha=2.0).add_(n).sub_(pos)).div_(n)
        return 1.0 - score.mean(), torch.full_like(tp, -2.0 / (n * k)), torch.full_like(tp, 1.0 / (n * k))
    if metric == "f_beta":
        b2 = beta * beta
        den = pos.mul(b2).add_(pred)
        inv = torch.where(den > 0, den, math.inf).reciprocal_()  # 0 where D = 0
        score = tp.mul(1.0 + b2).mul_(inv)
        loss = 1.0 - score.mean()
        return loss, inv.mul(-(1.0 + b2) / k), score.mul_(inv).div_(k)
    q = pos.neg().add_(n)  # TN + FP
    inv_p = torch.where(pos > 0, pos, 1.0).reciprocal_().masked_fill_(pos == 0, 0.0)
    inv_q = torch.where(q > 0, q, 1.0).reciprocal_().masked_fill_(q == 0, 0.0)
    tpr = tp * inv_p
    tnr = (q - pred + tp).mul_(inv_q)
    if metric == "balanced_accuracy":
        score = (tpr + tnr).mul_(0.5)
        return 1.0 - score.mean(), (inv_p + inv_q).mul_(-0.5 / k), inv_q.mul(0.5 / k)
    r = tpr * tnr
    tiny = torch.finfo(r.dtype).tiny
    score = r.clamp_min(tiny).sqrt_()
    d_r = torch.where(r >= tiny, 0.5 / score, 0.0).div_(-k)  # ∂(−score/K)/∂r
    return 1.0 - score.mean(), (tnr * inv_p).add_(tpr * inv_q).mul_(d_r), d_r.mul_(inv_q).mul_(tpr).neg_()


class _AnyLoss(torch.autograd.Function):
    """AnyLoss of multi-class logits ``z`` [N, C] (class indices ``idx`` [N, 1]) as one Function.

    Forward: ``p = softmax(z)``, ``ŷ = σ(L (p − 1/2))``, the soft counts TP = Σ_{i: y_i = k} ŷ_ik
    and Σ_i ŷ_ik, the metric and its derivatives ``a = ∂loss/∂TP``, ``b = ∂loss/∂Σŷ`` [C]
    (:func:`_anyloss_terms`, no autograd graph), and the gradient: ``h = L p ŷ (1 − ŷ) ⊙ (b + a_y e_y)``
    (``∂loss/∂p`` times ``p``), then the softmax's ``h − p Σ_k h_k``, all in ``ŷ``'s buffer (one
    fresh [N, C] buffer beside ``p``: ``L p − L/2`` in one pass); the backward hands it back
    (:func:`handed_back`). ``traced`` (``torch.compile``): class counts by ``index_add`` (no
    ``bincount``, whose size inductor cannot know), no host reads, the gradient in the backward."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, idx: Tensor, amplifier: float, metric: str, beta: float,
                traced: bool) -> Tensor:
        n, num_classes = z.shape
        rows = idx.squeeze(1)
        p = softmax_rows(z)
        if traced:
            yhat = p.sub(0.5).mul_(amplifier).sigmoid_()
        else:  # L p − L/2: one pass
            yhat = torch.add(p.new_full((), -0.5 * amplifier), p, alpha=amplifier).sigmoid_()
        pred = yhat.sum(0)
        yhat_y = yhat.gather(1, idx).squeeze_(1)
        if traced:
            tp = torch.zeros_like(pred).index_add_(0, rows, yhat_y)
            pos = torch.zeros_like(pred).index_add_(0, rows, torch.ones_like(yhat_y))
        else:
            tp = torch.bincount(rows, weights=yhat_y, minlength=num_classes).to(z.dtype)
            pos = torch.bincount(rows, minlength=num_classes).to(z.dtype)
        loss, d_tp, d_pred = _anyloss_terms(tp, pos, pred, n, metric, beta, amplifier)  # derivatives × L
        s = yhat.addcmul_(yhat, yhat, value=-1.0).mul_(p)  # p ŷ (1 − ŷ) = p ∂ŷ/∂p / L
        # ∂loss/∂z through ŷ_{i,y_i}'s count in TP: s_{i,y_i} L a_{y_i}, one per row
        e = s.gather(1, idx).mul_(d_tp.index_select(0, rows).unsqueeze_(1))
        if traced:
            ctx.save_for_backward(p, s, idx, e, d_pred)
        else:
            h = s.mul_(d_pred).scatter_add_(1, idx, e)
            ctx.save_for_backward(h.addcmul_(p, h.sum(1, keepdim=True), value=-1.0))
        ctx.traced = traced
        return loss

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        if not ctx.traced:
            return handed_back(ctx.saved_tensors[0], grad), None, None, None, None, None
        p, s, idx, e, d_pred = ctx.saved_tensors
        h = s * (d_pred * grad)
        h.scatter_add_(1, idx, e * grad)
        return h.addcmul_(p, h.sum(1, keepdim=True), value=-1.0), None, None, None, None, None


_anyloss_fused = cast(Callable[..., Tensor], _AnyLoss.apply)


def _confusion(tp: Tensor, pos: Tensor, pred: Tensor, n: int) -> Tensor:
    """[K, 2, 2] ``[[TN, FP], [FN, TP]]`` from the true positives, positives and predicted positives [K]."""
    fn = pos - tp
    fp = pred - tp
    tn = (n - pos) - pred + tp
    return torch.stack([torch.stack([tn, fp], -1), torch.stack([fn, tp], -1)], -2)


def soft_confusion_matrix(logits: Tensor, target: Tensor, *, amplifier: float = 73.0, validate: bool = True) -> Tensor:
    """AnyLoss's soft one-vs-rest confusion matrices, [K, 2, 2] as ``[[TN, FP], [FN, TP]]``.

    ``ŷ = A(p) = σ(L (p − 0.5))`` with ``L = amplifier``; ``TP = Σ y ŷ``, ``FN = Σ y (1 − ŷ)``,
    ``FP = Σ (1 − y) ŷ``, ``TN = Σ (1 − y)(1 − ŷ)``. As L → ∞ it tends to the hard confusion
    matrix of the prediction ``p > 0.5`` (same layout as sklearn's
    ``multilabel_confusion_matrix``). K = 1 for binary input, C for multi-class.

    >>> import torch, lossatlas as la
    >>> la.functional.soft_confusion_matrix(torch.tensor([5.0, -5.0]), torch.tensor([1, 0])).shape
    torch.Size([1, 2, 2])
    """
    amplifier = positive(amplifier, "amplifier")
    p, y, _ = _anyloss_inputs(logits, target, validate)
    return _soft_confusion(p, y, amplifier)


def _anyloss_scores(cm: Tensor, metric: str, beta: float) -> Tensor:
    """``1 − metric`` per class, from soft confusion matrices [K, 2, 2]; undefined ratios are 0."""
    tn, fp, fn, tp = cm[:, 0, 0], cm[:, 0, 1], cm[:, 1, 0], cm[:, 1, 1]
    tiny = torch.finfo(cm.dtype).tiny
    if metric == "accuracy":
        score = safe_ratio(tp + tn, tn + fp + fn + tp)
    elif metric == "f_beta":
        b2 = beta * beta
        score = safe_ratio((1.0 + b2) * tp, (1.0 + b2) * tp + b2 * fn + fp)
    else:
        # TP + FN = Σ y and TN + FP = N − Σ y are the (exact) class sizes.
        tpr = safe_ratio(tp, tp + fn)
        tnr = safe_ratio(tn, tn + fp)
        score = 0.5 * (tpr + tnr) if metric == "balanced_accuracy" else (tpr * tnr).clamp_min(tiny).sqrt()
    return 1.0 - score


@loss_function(inputs=CLASSIFICATION, params=_ANYLOSS_PARAMS)
def anyloss_per_class(
    logits: Tensor,
    target: Tensor,
    *,
    metric: str = "f_beta",
    beta: float = 1.0,
    amplifier: float = 73.0,
    validate: bool = True,
) -> Tensor:
    """AnyLoss of each one-vs-rest class, ``1 − metric(soft confusion matrix of class k)``, as [K]
    (K = 1 for binary input, C for multi-class); :func:`anyloss` is their mean.

    >>> import torch, lossatlas as la
    >>> la.functional.anyloss_per_class(torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])).shape
    torch.Size([3])
    """
    p, y, out_dtype = _anyloss_inputs(logits, target, validate)
    return _anyloss_scores(_soft_confusion(p, y, amplifier), metric, beta).to(out_dtype)


@loss_function(compile_opaque=True, inputs=CLASSIFICATION, params={**_ANYLOSS_PARAMS, "reduction": Param(
    "``'mean'`` (the batch loss) | ``'sum'`` (N times it) | ``'none'`` (the batch loss for each sample, [N])",
    COMMON["reduction"].check, "torch")})
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

    The batch loss is the macro mean over the K one-vs-rest classes of :func:`anyloss_per_class`
    (K = 1 for binary input). It is one number for the whole batch: ``"mean"`` returns it,
    ``"none"`` gives it to each of the N samples ([N], for composition with per-sample code) and
    ``"sum"`` is N times it. An empty batch has loss 0.
    """
    fused = _anyloss_fused_loss(logits, target, validate, amplifier, metric, beta)
    if fused is not None:
        batch_loss, n, out_dtype = fused
    else:
        p, y, out_dtype = _anyloss_inputs(logits, target, validate)
        batch_loss, n = _anyloss_scores(_soft_confusion(p, y, amplifier), metric, beta).mean(), p.shape[0]
    if reduction == "mean" and n:
        return as_dtype(batch_loss, out_dtype)
    return reduce_loss(batch_loss.expand(n), reduction, None, out_dtype)


def _anyloss_fused_loss(logits: Tensor, target: Tensor, validate: bool, amplifier: float, metric: str,
                        beta: float) -> tuple[Tensor, int, torch.dtype] | None:
    """The batch loss of multi-class input from :class:`_AnyLoss` (``None``: take the plain path):
    on the fused path, and under ``torch.compile`` with a gradient (its traced form)."""
    if not (isinstance(logits, Tensor) and logits.dim() == 2 and logits.shape[1] > 1 and logits.shape[0] > 0
            and fused_or_traced(logits, FUSE_MIN_NUMEL)):
        return None
    check_float(logits, "logits")
    check_tensor(target, "target")
    check_finite(logits, "logits", validate, allow_neg_inf=True)
    check_same_device("logits", logits, "target", target)
    check_class_target(target, logits, validate)
    z = as_dtype(logits, compute_dtype(logits))
    return _anyloss_fused(z, target.unsqueeze(1), amplifier, metric, beta, compiling()), z.shape[0], logits.dtype


CALS_CODE = "by-liu/CALS"


def cals_constraints(logits: Tensor, margin: float = 20.0, normalize: bool = True) -> Tensor:
    """CALS's constraints ``h_ij = (max_k z_ik − z_ij − m) / m`` ([N, C]; not divided by ``m``
    without ``normalize``): ``h ≤ 0`` asks every logit distance to the row's largest to stay below
    the margin ``m`` (``AugLagrangian.get_constraints``)."""
    h = logits.amax(dim=1, keepdim=True) - logits - margin
    return h / margin if normalize else h


def cals_penalty(h: Tensor, multipliers: Tensor, rho: float) -> tuple[Tensor, Tensor]:
    """The PHR penalty-Lagrangian of the official ``penalty.py::phr`` and its derivative in ``h``:
    ``P = ((λ + ρh)² − λ²)/(2ρ)`` where ``λ + ρh ≥ 0``, else ``−λ²/(2ρ)``; ``P' = max(λ + ρh, 0)``."""
    x = multipliers + rho * h
    inside = x >= 0
    value = torch.where(inside, (x * x - multipliers * multipliers) / (2 * rho), -(multipliers * multipliers) / (2 * rho))
    return value, torch.where(inside, x, torch.zeros_like(x))


@loss_function(inputs=CLASSIFICATION, call=("multipliers",), params={
    "margin": Param("margin m of the logit distances max_k z_k − z_j ≤ m", positive,
                    f"{CALS_CODE} configs/lag/aug_lagrangian_class.yaml (margin: 20)"),
    "rho": Param("penalty parameter ρ > 0 of the augmented Lagrangian (the module raises it, see update_rho)", positive,
                 f"{CALS_CODE} configs/lag/aug_lagrangian_class.yaml (rho: 1, the initial rho_min)"),
    "normalize": Param("divide the constraints by the margin", as_bool,
                       f"{CALS_CODE} configs/lag/aug_lagrangian_class.yaml (normalize: True)"),
})
def cals(
    logits: Tensor,
    target: Tensor,
    *,
    multipliers: Tensor | None = None,
    margin: float = 20.0,
    rho: float = 1.0,
    normalize: bool = True,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """CALS: ``CE + Σ_j P(h_ij; λ_j, ρ)`` at the class multipliers ``λ`` [C] (None: all
    1e-6, the official start); see :class:`lossatlas.losses.CALSLoss`."""
    z, y, w, out_dtype = prepare_classification(logits, target, reduction, validate, None, ignore_index)
    if multipliers is None:
        lam = torch.full((z.shape[1],), 1e-6, dtype=z.dtype, device=z.device)
    else:
        lam = check_float(multipliers, "multipliers").to(device=z.device, dtype=z.dtype)
        if lam.shape != (z.shape[1],):
            raise ValueError(f"multipliers must have shape [C] = [{z.shape[1]}], got {tuple(lam.shape)}")
        if validate and not bool((lam >= 0).all()):
            raise ValueError("multipliers must be non-negative")
    ce = -target_logit(torch.log_softmax(z, dim=1), y)
    h = cals_constraints(z, margin, normalize)
    live = torch.isfinite(z)  # a -inf column is a masked class: it has no constraint (and no NaN gradient)
    penalty, _ = cals_penalty(torch.where(live, h, torch.zeros_like(h)), lam, rho)
    penalty = torch.where(live, penalty, torch.zeros_like(penalty))
    return reduce_loss(ce + penalty.sum(dim=1), reduction, w, out_dtype)


# --------------------------------------------------------------------------------------
# C8: the correctness-aware loss of a post-hoc calibrator (Liu et al. 2024)
# --------------------------------------------------------------------------------------
CA_CODE = "liuyvchi/Correctness-aware-calibration src/cal_metrics/temperature_scaling_CA.py"


def _group_balance(correct: Tensor, valid: Tensor) -> Tensor:
    """Per-row weights that give the correct and the wrong rows equal total weight, with mean 1
    over the valid rows: ``n / (G n_c)`` on correct rows, ``n / (G n_w)`` on wrong ones (``G`` the
    number of non-empty groups; 0 on invalid rows). The official weights ``1 − acc`` / ``acc``
    up to a factor: the same weighted mean."""
    v = valid.to(torch.float64)
    c = (correct & valid).to(torch.float64)
    n_c, n = c.sum(), v.sum()
    n_w = n - n_c
    groups = (n_c > 0).to(torch.float64) + (n_w > 0).to(torch.float64)
    per_correct = safe_ratio(n, groups * n_c)
    per_wrong = safe_ratio(n, groups * n_w)
    return torch.where(c > 0, per_correct, per_wrong) * v


@loss_function(compile_opaque=True, inputs=CLASSIFICATION, params={
    "balance": Param("weight the correctly and the wrongly predicted rows of the batch equally (the official "
                     "weights 1 − accuracy and accuracy); ``False``: the plain mean of (conf − correct)²", as_bool,
                     f"{CA_CODE} (weights[correctness] = 1 - weight_correct)"),
})
def correctness_aware(
    logits: Tensor,
    target: Tensor,
    *,
    balance: bool = True,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Correctness-aware loss ``(max_k softmax(z)_k − 1[argmax z = y])²`` of a post-hoc calibrator's
    logits; see :class:`lossatlas.losses.CorrectnessAwareLoss`."""
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    if fused_or_traced(z, FUSE_MIN_NUMEL):
        return as_dtype(_correctness_aware_fused(z, y.unsqueeze(1), w, balance, reduction, compiling()), out_dtype)
    conf = torch.softmax(z, dim=1).amax(1)
    correct = z.argmax(1) == y
    losses = (conf - correct.to(z.dtype)).square()
    if balance:
        valid = torch.ones_like(correct) if w is None else w > 0
        w = _group_balance(correct, valid).to(z.dtype)
    return reduce_loss(losses, reduction, w, out_dtype)


class _CorrectnessAware(torch.autograd.Function):
    """The correctness-aware loss from one softmax, hand-derived backward (CPU; host reads).

    Forward: ``p = softmax(z)``, ``conf = max_k p``, the mask ``M = [p = conf]`` of each row's
    largest probabilities (a float mask: float compares are several times faster than boolean
    ones on CPU, and ``max``'s index several times slower than ``amax``), ``c = M_y`` (correct:
    the target holds the row's only largest probability), ``ℓ = (conf − c)²``, the group-balance
    weights from the two group sizes (read on the host) and the reduction. Backward:
    ``∂ℓ/∂z = u conf (M − p)`` with ``u = 2 (conf − c)`` times the row's factor. Where a largest
    probability is tied (equal logits; one host read), ``M`` is divided by the number ``T`` of
    tied classes (``amax`` splits its gradient evenly) and ``c`` is ``1[argmax z = y]`` (the first
    largest logit), as the composed ops."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, idx: Tensor, row_w: Tensor | None, balance: bool, reduction: str,
                traced: bool) -> Tensor:
        if traced:
            return _correctness_aware_traced(ctx, z, idx, row_w, balance, reduction)
        p = softmax_rows(z)
        conf = p.amax(1)
        top = p.sub(conf.unsqueeze(1)).eq_(0.0)
        if float(top.sum()) > z.shape[0]:  # a tie: the first largest logit, and amax's share per tied class
            correct = z.argmax(1) == idx.squeeze(1)
            hit = correct.to(z.dtype)
            top.div_(top.sum(1, keepdim=True))
        else:
            hit = top.gather(1, idx).squeeze_(1)
            correct = hit > 0
        diff = conf - hit
        loss = diff * diff
        weights, kept = _balanced_weights(correct, row_w, diff) if balance else (row_w, None)
        k: Tensor | float
        if weights is not None and reduction != "none":
            # "mean": Σ w ℓ / Σ w, where Σ w is the number of rows kept when balanced
            k = weights if reduction == "sum" else weights / (max(kept, 1) if kept is not None else mean_divisor(weights.sum()))
            out = torch.dot(loss, k)
        else:
            out, k = traced_reduce(loss, weights, reduction)
        coef = diff.mul_(conf).mul_(2.0)  # ∂ℓ/∂conf · conf
        ctx.save_for_backward(p, top, coef * k if isinstance(k, Tensor) else coef.mul_(k))
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        p, top, coef = ctx.saved_tensors
        c = (coef * grad).unsqueeze_(1)
        return (p * c.neg()).addcmul_(top, c), None, None, None, None, None


def _correctness_aware_traced(ctx: Any, z: Tensor, idx: Tensor, row_w: Tensor | None, balance: bool,
                              reduction: str) -> Tensor:
    """:class:`_CorrectnessAware`'s forward for ``torch.compile`` (no host reads, nothing in place
    on saved tensors): ``M / T`` for every row, ``argmax`` for correctness, :func:`_group_balance`."""
    p = torch.softmax(z, 1)
    conf = p.amax(1)
    top = (p == conf.unsqueeze(1)).to(z.dtype)
    top = top / top.sum(1, keepdim=True)
    correct = z.argmax(1) == idx.squeeze(1)
    diff = conf - correct.to(z.dtype)
    weights = row_w
    if balance:
        weights = _group_balance(correct, torch.ones_like(correct) if row_w is None else row_w > 0).to(z.dtype)
    out, k = traced_reduce(diff * diff, weights, reduction)
    ctx.save_for_backward(p, top, diff * conf * 2.0 * k)
    return out


_correctness_aware_fused = cast(Callable[..., Tensor], _CorrectnessAware.apply)


def _balanced_weights(correct: Tensor, row_w: Tensor | None, like: Tensor) -> tuple[Tensor, int]:
    """:func:`_group_balance` from the two group sizes read on the host: ``n / (G n_c)`` on the
    correct rows, ``n / (G n_w)`` on the wrong ones, 0 on ignored rows (``row_w`` 0); and ``n``,
    the number of rows kept (the weights' sum)."""
    kept = correct if row_w is None else correct & (row_w > 0)
    n = correct.shape[0] if row_w is None else int(row_w.count_nonzero())
    n_c = int(kept.count_nonzero())
    n_w = n - n_c
    groups = (n_c > 0) + (n_w > 0)
    per_c = n / (groups * n_c) if n_c > 0 else 0.0
    per_w = n / (groups * n_w) if n_w > 0 else 0.0
    w = kept.to(like.dtype).mul_(per_c - per_w).add_(per_w)
    return (w if row_w is None else w.mul_(row_w)), n


# --------------------------------------------------------------------------------------
# C9: RankMixup's ranking losses between raw and mixup-augmented samples (Noh et al. 2023)
# --------------------------------------------------------------------------------------
RANKMIXUP_CODE = "cvlab-yonsei/RankMixup"
MIXUP = ("logits", "target", "mixed_logits", "mixed_target")


def _mixup_inputs(logits: Tensor, target: Tensor, mixed_logits: Tensor, mixed_target: Tensor, reduction: str,
                  validate: bool, ignore_index: int) -> tuple[Tensor, Tensor, Tensor | None, torch.dtype, Tensor, Tensor]:
    """(z, y, sample weights, output dtype) as a classification loss's, and the mixed logits and soft
    targets as [N, M, C] in the compute dtype."""
    z, y, w, out_dtype = prepare_classification(logits, target, reduction, validate, None, ignore_index)
    mz = check_companion_logits(mixed_logits, logits, "mixed_logits", validate, stacked=True)
    mt = check_float(mixed_target, "mixed_target")
    if mt.shape != mixed_logits.shape:
        raise ValueError(f"mixed_target must have the shape of mixed_logits {tuple(mixed_logits.shape)} (one soft "
                         f"label per mixed sample), got {tuple(mt.shape)}")
    check_same_device("mixed_target", mt, "logits", logits)
    check_finite(mt, "mixed_target", validate)
    if mz.dim() == 2:
        mz, mt = mz.unsqueeze(1), mt.unsqueeze(1)
    return z, y, w, out_dtype, mz, mt.to(mz.dtype)


def _rank_score(value: Any, name: str) -> str:
    if value not in ("logit", "confidence"):
        raise ValueError(f"{name} must be 'logit' (the official code: the largest logit) or 'confidence' (the largest "
                         f"softmax probability), got {value!r}")
    return str(value)


@loss_function(inputs=MIXUP, params={
    "alpha": Param("weight α ≥ 0 of the ranking term (added to the cross-entropy of the raw samples)", nonnegative,
                   f"{RANKMIXUP_CODE} configs/loss/mrl.yaml (alpha: 0.1)"),
    "margin": Param("margin m ≥ 0 by which a raw sample's score must exceed its mixed sample's", nonnegative,
                    f"{RANKMIXUP_CODE} configs/loss/mrl.yaml (margin: 2.0 for CIFAR; 1.0 for Tiny-ImageNet)"),
    "score": Param("what is ranked: ``'logit'``, the largest logit (the official code's get_logit_diff), or "
                   "``'confidence'``, the largest softmax probability (its commented-out get_conf_diff)", _rank_score,
                   f"{RANKMIXUP_CODE} calibrate/losses/rankmixup.py (diff = self.get_logit_diff(inputs, mixup))"),
})
def rankmixup_mrl(
    logits: Tensor,
    target: Tensor,
    mixed_logits: Tensor,
    mixed_target: Tensor,
    *,
    alpha: float = 0.1,
    margin: float = 2.0,
    score: str = "logit",
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """RankMixup's mixup ranking loss ``CE + α · mean_m 1[mix m of two classes] · [s(z̃_m) − s(z) + m]_+``;
    see :class:`lossatlas.losses.RankMixupMRLLoss`."""
    z, y, w, out_dtype, mz, mt = _mixup_inputs(logits, target, mixed_logits, mixed_target, reduction, validate,
                                                ignore_index)
    ce = -log_prob_target(z, y)
    if score == "logit":
        raw, mixed = z.amax(1), mz.amax(2)
    else:
        raw, mixed = torch.softmax(z, 1).amax(1), torch.softmax(mz, 2).amax(2)
    two_classes = (mt != 1.0).all(2).to(z.dtype)  # a mix of one class (or λ ∈ {0, 1}) has no order to keep
    rank = (two_classes * torch.relu(mixed - raw.unsqueeze(1) + margin)).mean(1)
    return reduce_loss(ce + alpha * rank, reduction, w, out_dtype)


@loss_function(inputs=MIXUP, params={
    "alpha": Param("weight α ≥ 0 of the 1 − M-NDCG term (added to the cross-entropy of the raw samples)", nonnegative,
                   f"{RANKMIXUP_CODE} configs/loss/mndcg.yaml (alpha: 0.1)"),
})
def rankmixup_mndcg(
    logits: Tensor,
    target: Tensor,
    mixed_logits: Tensor,
    mixed_target: Tensor,
    *,
    alpha: float = 0.1,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """RankMixup's M-NDCG loss ``CE + α (1 − M-NDCG)``, the confidences of a raw sample and its mixes
    ranked against their mixing coefficients; see :class:`lossatlas.losses.RankMixupMNDCGLoss`."""
    z, y, w, out_dtype, mz, mt = _mixup_inputs(logits, target, mixed_logits, mixed_target, reduction, validate,
                                                ignore_index)
    ce = -log_prob_target(z, y)
    return reduce_loss(ce + alpha * (1.0 - _mndcg(z, mz, mt)), reduction, w, out_dtype)


def _mndcg(z: Tensor, mz: Tensor, mt: Tensor) -> Tensor:
    """M-NDCG per row: the raw sample (relevance 1) first, then its mixes by descending mixing
    coefficient ``max_k t̃_k``; DCG of the confidences over IDCG of the coefficients, or its inverse
    where that is below 1 (so 1 is the best value)."""
    lam, order = mt.amax(2).sort(dim=1, descending=True, stable=True)
    conf = torch.softmax(mz, 2).amax(2).gather(1, order)
    ones = torch.ones_like(lam[:, :1])
    discount = torch.log2(torch.arange(2, lam.shape[1] + 3, device=z.device, dtype=z.dtype))
    dcg = (torch.cat([torch.softmax(z, 1).amax(1, keepdim=True), conf], 1) / discount).sum(1)
    idcg = (torch.cat([ones, lam], 1) / discount).sum(1)
    return torch.where(idcg > dcg, dcg / idcg, idcg / dcg)
