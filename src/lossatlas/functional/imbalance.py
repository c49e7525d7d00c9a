"""Long-tailed classification losses (catalogue rows A1–A8), as pure functions.

Every function takes ``logits`` [N, C] and integer ``target`` [N] (class indices),
returns a scalar for ``reduction="mean"|"sum"`` and per-sample losses [N] for ``"none"``.
Optional per-class ``weight`` [C] follows ``F.cross_entropy``: ``"mean"`` becomes the
weighted mean ``Σ_i w_{y_i} l_i / Σ_i w_{y_i}``. The module twins live in
:mod:`lossatlas.losses.imbalance` and carry the full documentation.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import (
    as_class_counts,
    check_logits,
    check_mask,
    check_multilabel_target,
    check_num_classes,
    check_number,
    check_reduction,
)
from ._common import (
    check_classification_deferred,
    check_ignore_index,
    class_weight_like,
    compute_dtype,
    prepare_classification,
    reduce_loss,
    run_deferred,
)
from ._fused import affine_cross_entropy, affine_logits, as_dtype, cast_constant, softmax_focal, softmax_focal_ignore

__all__ = [
    "cross_entropy",
    "focal",
    "sigmoid_focal",
    "effective_number_weights",
    "drw_weights",
    "ldam_margins",
    "ldam",
    "log_prior",
    "logit_adjusted",
    "posthoc_logit_adjustment",
    "balanced_softmax",
    "vs_parameters",
    "vs",
]

ClassCounts = Any  # list / tuple / numpy array / tensor of positive counts


def _counts_on(class_counts: ClassCounts, logits: Tensor) -> Tensor:
    counts = as_class_counts(class_counts)
    check_num_classes(counts, logits, "class_counts")
    return counts


def cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Cross-entropy with optional class weights and label smoothing (torch semantics).

    ``target`` is int64 [N] or class probabilities [N, C]. See
    :class:`lossatlas.losses.CrossEntropyLoss`.
    """
    soft = isinstance(target, Tensor) and target.is_floating_point()
    if not soft:
        z, out_dtype, deferred = check_classification_deferred(logits, target, reduction, validate, ignore_index)
        if label_smoothing:
            check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        w = class_weight_like(weight, z, validate)
        if reduction == "mean" and z.shape[0] == 0:
            return (z.sum() * 0.0).to(out_dtype)
        if label_smoothing:
            kernel = lambda: F.cross_entropy(  # noqa: E731
                z, target, weight=w, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction)
        else:  # large inputs: the fused kernel (see _fused.affine_cross_entropy)
            kernel = lambda: affine_cross_entropy(z, target, weight=w, ignore_index=ignore_index, reduction=reduction)  # noqa: E731
        return run_deferred(kernel, deferred, target, logits, ignore_index, out_dtype)
    check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    return _soft_cross_entropy(logits, target, weight, reduction, validate, label_smoothing=label_smoothing)


def _soft_cross_entropy(
    logits: Tensor,
    target: Tensor,
    weight: Any,
    reduction: str,
    validate: bool,
    *,
    label_smoothing: float = 0.0,
    transform: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """``F.cross_entropy(transform(z), p)`` for class-probability targets ``p`` [N, C] (e.g.
    mixup / CutMix labels); ``transform`` is a prior-aware loss's logit adjustment."""
    check_reduction(reduction)
    check_logits(logits, validate)
    check_multilabel_target(target, logits, validate)
    if validate and target.numel():
        rows = target.sum(1)
        if not bool(torch.allclose(rows, torch.ones_like(rows), atol=1e-3)):
            raise ValueError("probability targets must sum to 1 over the classes of each row")
    z = logits.to(compute_dtype(logits))
    w = class_weight_like(weight, z, validate)
    if reduction == "mean" and z.shape[0] == 0:
        return (z.sum() * 0.0).to(logits.dtype)
    u = z if transform is None else transform(z)
    out = F.cross_entropy(u, target.to(z.dtype), weight=w, label_smoothing=label_smoothing, reduction=reduction)
    return out.to(logits.dtype)


def focal(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | Tensor | None = None,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Softmax focal loss ``α_t (1 − p_t)^γ · (−log p_t)``; see :class:`lossatlas.losses.FocalLoss`."""
    gamma = check_number(gamma, "gamma", low=0.0)
    if weight is None and (alpha is None or isinstance(alpha, (int, float))):
        # Common case in fewer kernels, at every size (the fused focal saves no pass here):
        # ignore_index handled by the cross-entropy kernel itself (no mask, no safe-target
        # copy); same values and gradients as below.
        z, out_dtype, deferred = check_classification_deferred(logits, target, reduction, validate, ignore_index)
        check_ignore_index(ignore_index, logits.shape[1])
        a = None if alpha is None else check_number(alpha, "alpha", low=0.0)
        return run_deferred(
            lambda: softmax_focal_ignore(z, target, gamma, row_scale=a, ignore_index=ignore_index, reduction=reduction),
            deferred, target, logits, ignore_index, out_dtype,
        )
    z, y, sample_w, out_dtype = prepare_classification(logits, target, reduction, validate, weight, ignore_index)
    row_scale: Tensor | float | None = None
    if alpha is not None:
        if isinstance(alpha, (int, float)):
            row_scale = check_number(alpha, "alpha", low=0.0)
        else:
            a = cast_constant(alpha, z) if isinstance(alpha, Tensor) else torch.as_tensor(alpha, dtype=z.dtype, device=z.device)
            if a.dim() != 1:
                raise ValueError("alpha must be a float or a 1-D sequence with one value per class")
            check_num_classes(a, logits, "alpha")
            row_scale = a[y]
    # Fused forward/backward (one coefficient per row) on large inputs; see _fused.softmax_focal.
    return as_dtype(softmax_focal(z, y, gamma, row_scale=row_scale, sample_weights=sample_w, reduction=reduction), out_dtype)


def sigmoid_focal(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: str = "mean",
    validate: bool = True,
    mask: Tensor | None = None,
) -> Tensor:
    """Sigmoid (binary / multi-label) focal loss; see :class:`lossatlas.losses.SigmoidFocalLoss`.

    ``reduction="none"`` returns the elementwise losses [N, C]; ``"mean"`` averages all N·C.
    Optional ``mask`` (broadcastable to [N, C], 1 = count, 0 = unannotated) zeroes left-out
    elements and makes ``"mean"`` the masked mean ``Σ m·l / Σ m``.
    """
    check_reduction(reduction)
    check_logits(logits, validate)
    check_multilabel_target(target, logits, validate)
    gamma = check_number(gamma, "gamma", low=0.0)
    out_dtype = logits.dtype
    z = logits.to(compute_dtype(logits))
    y = target.to(z.dtype)
    ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    if gamma != 0.0:
        # 1 - p_t = p (1 - y) + (1 - p) y = y + p (1 - 2y), with p = σ(z): one fused op on the
        # graph (1 - 2y needs no gradient).
        p = torch.sigmoid(z)
        one_minus_pt = torch.addcmul(y, p, y.mul(-2.0).add_(1.0))
        if gamma < 1.0:
            one_minus_pt = one_minus_pt.clamp_min(torch.finfo(z.dtype).tiny)
        losses = ce * (one_minus_pt * one_minus_pt if gamma == 2.0 else one_minus_pt.pow(gamma))
    else:
        losses = ce
    if alpha is not None and alpha >= 0:
        alpha = check_number(alpha, "alpha", low=0.0, high=1.0)
        # α y + (1 − α)(1 − y) = (1 − α) + (2α − 1) y, built without a gradient.
        losses = losses * y.mul(2.0 * alpha - 1.0).add_(1.0 - alpha)
    m = None if mask is None else check_mask(mask, logits, validate).to(z.dtype)
    return reduce_loss(losses, reduction, m, out_dtype)


def effective_number_weights(class_counts: ClassCounts, beta: float = 0.9999) -> Tensor:
    """Class-balanced weights ``w_j = (1 − β) / (1 − β^{n_j})``, normalised to sum to C.

    Cui et al. (2019). β = 0 gives uniform weights; β → 1 gives inverse class frequency.
    Returns a float64 tensor [C] on the CPU.
    """
    counts = as_class_counts(class_counts)
    beta = check_number(beta, "beta", low=0.0, high=1.0)
    if beta == 1.0:
        w = 1.0 / counts  # the β → 1 limit of (1-β)/(1-β^n)
    else:
        # 1 - β^n computed as -expm1(n log β) keeps precision for β close to 1.
        w = (1.0 - beta) / (-torch.expm1(counts * math.log(beta))) if beta > 0 else torch.ones_like(counts)
    return w / w.sum() * counts.numel()


def drw_weights(
    class_counts: ClassCounts, epoch: int, *, start_epoch: int = 160, beta: float = 0.9999
) -> Tensor:
    """Deferred re-weighting: uniform weights before ``start_epoch``, then effective-number weights."""
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
    return effective_number_weights(class_counts, beta if epoch >= start_epoch else 0.0)


def ldam_margins(class_counts: ClassCounts, max_margin: float = 0.5) -> Tensor:
    """LDAM margins ``m_j = max_margin · n_j^{-1/4} / max_k n_k^{-1/4}`` (float64 [C])."""
    counts = as_class_counts(class_counts)
    check_number(max_margin, "max_margin", low=0.0)
    m = counts.pow(-0.25)
    return m * (max_margin / m.max())


def ldam(
    logits: Tensor,
    target: Tensor,
    class_counts: ClassCounts,
    *,
    max_margin: float = 0.5,
    scale: float = 30.0,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
    margins: Tensor | None = None,
) -> Tensor:
    """LDAM loss ``CE(s · (z − m_y e_y), y)``; see :class:`lossatlas.losses.LDAMLoss`.

    ``margins`` [C] may be passed pre-computed (the module does) instead of being derived
    from ``class_counts``.
    """
    scale = check_number(scale, "scale", low=0.0, low_open=True)
    z, out_dtype, deferred = check_classification_deferred(logits, target, reduction, validate, ignore_index)
    if margins is None:
        margins = ldam_margins(_counts_on(class_counts, logits), max_margin)
    else:
        check_num_classes(margins, logits, "margins")
    # s·(z − m_y e_y) without a one-hot matrix: scale, then subtract s·m_y at the target,
    # fused with the cross-entropy (see _fused.affine_cross_entropy).
    w = class_weight_like(weight, z, validate)
    shift = cast_constant(margins, z, -scale, column=True)
    return run_deferred(
        lambda: affine_cross_entropy(z, target, scale=scale, shift=shift, weight=w, ignore_index=ignore_index, reduction=reduction),
        deferred, target, logits, ignore_index, out_dtype,
    )


def log_prior(class_counts: ClassCounts) -> Tensor:
    """``log π_j = log(n_j / Σ n)`` as float64 [C]."""
    counts = as_class_counts(class_counts)
    return torch.log(counts / counts.sum())


def _biased_ce(
    logits: Tensor,
    target: Tensor,
    bias: Tensor,
    reduction: str,
    validate: bool,
    weight: Any,
    ignore_index: int,
    divisor: Tensor | None = None,
) -> Tensor:
    """CE(z / divisor + bias, y): the shared core of logit adjustment, balanced softmax and VS.

    ``target`` is int64 [N] or class probabilities [N, C] (soft labels, e.g. from mixup)."""
    if isinstance(target, Tensor) and target.is_floating_point():
        check_num_classes(bias, logits, "class_counts")

        def adjust(z: Tensor) -> Tensor:
            return affine_logits(z, None, cast_constant(bias, z), None if divisor is None else cast_constant(divisor, z))

        return _soft_cross_entropy(logits, target, weight, reduction, validate, transform=adjust)
    z, out_dtype, deferred = check_classification_deferred(logits, target, reduction, validate, ignore_index)
    check_num_classes(bias, logits, "class_counts")
    w = class_weight_like(weight, z, validate)
    bias = cast_constant(bias, z)
    div = None if divisor is None else cast_constant(divisor, z)
    return run_deferred(
        lambda: affine_cross_entropy(z, target, bias=bias, divisor=div, weight=w, ignore_index=ignore_index, reduction=reduction),
        deferred, target, logits, ignore_index, out_dtype,
    )


def logit_adjusted(
    logits: Tensor,
    target: Tensor,
    class_counts: ClassCounts,
    *,
    tau: float = 1.0,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Logit-adjusted loss ``CE(z + τ log π, y)``; see :class:`lossatlas.losses.LogitAdjustedLoss`."""
    tau = check_number(tau, "tau")
    return _biased_ce(logits, target, tau * log_prior(class_counts), reduction, validate, weight, ignore_index)


def posthoc_logit_adjustment(logits: Tensor, class_counts: ClassCounts, *, tau: float = 1.0) -> Tensor:
    """Post-hoc logit adjustment (Menon et al. 2021): ``z − τ log π``; predict with its argmax."""
    check_logits(logits, validate=False)
    tau = check_number(tau, "tau")
    lp = log_prior(class_counts)
    check_num_classes(lp, logits, "class_counts")
    return logits - (tau * lp).to(device=logits.device, dtype=logits.dtype)


def balanced_softmax(
    logits: Tensor,
    target: Tensor,
    class_counts: ClassCounts,
    *,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Balanced softmax ``CE(z + log n, y)``; see :class:`lossatlas.losses.BalancedSoftmaxLoss`."""
    bias = torch.log(as_class_counts(class_counts))
    return _biased_ce(logits, target, bias, reduction, validate, weight, ignore_index)


def vs_parameters(class_counts: ClassCounts, gamma: float = 0.3, tau: float = 1.0) -> tuple[Tensor, Tensor]:
    """VS loss constants: multiplicative ``Δ_j = (n_max / n_j)^γ`` (divides z) and additive ``ι_j = τ log π_j``."""
    counts = as_class_counts(class_counts)
    gamma = check_number(gamma, "gamma", low=0.0)
    tau = check_number(tau, "tau")
    delta = (counts.max() / counts).pow(gamma)
    iota = tau * torch.log(counts / counts.sum())
    return delta, iota


def vs(
    logits: Tensor,
    target: Tensor,
    class_counts: ClassCounts,
    *,
    gamma: float = 0.3,
    tau: float = 1.0,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Vector-scaling loss ``CE(z / Δ + ι, y)``; see :class:`lossatlas.losses.VSLoss`."""
    delta, iota = vs_parameters(class_counts, gamma, tau)
    return _biased_ce(logits, target, iota, reduction, validate, weight, ignore_index, divisor=delta)
