"""Long-tailed classification losses (catalogue rows A1–A8), as pure functions.

Every softmax function takes ``logits`` [N, C] and integer ``target`` [N] (class indices),
returns a scalar for ``reduction="mean"|"sum"`` and per-sample losses [N] for ``"none"``.
Like ``F.cross_entropy`` they also take K-dimensional inputs ``[N, C, d1, …, dk]`` with
targets ``[N, d1, …, dk]`` (one loss per position: segmentation, token classification;
``"none"`` returns ``[N, d1, …, dk]``, ``"mean"`` averages over every position) and an
unbatched ``[C]`` input with a 0-dim target. Optional per-class ``weight`` [C] follows
``F.cross_entropy``: ``"mean"`` becomes the weighted mean ``Σ_i w_{y_i} l_i / Σ_i w_{y_i}``.
:func:`sigmoid_focal` is elementwise on any shape. The module twins live in
:mod:`lossatlas.losses.imbalance` and carry the full documentation.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from .._paths import take_fused
from .._spec import COMMON, Param, any_number, loss_function, nonnegative, positive, unit_interval
from .._validation import (
    as_class_counts,
    check_float,
    check_logits,
    check_mask,
    check_multilabel_target,
    check_num_classes,
    check_number,
    check_reduction,
    check_tensor,
    compiling,
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
from ._fused import (
    affine_logits,
    as_dtype,
    cast_constant,
    col,
    derived,
    handed_back,
    pointwise_loss,
    reduce_rows,
    softmax_cross_entropy,
)

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
    "gumbel",
]

ClassCounts = Any  # list / tuple / numpy array / tensor of positive counts
CLASSIFICATION = ("logits", "target")


def _class_rows(logits: Any, target: Any, soft: bool = False) -> tuple[Any, Any, tuple[int, ...] | None]:
    """``F.cross_entropy``'s input layouts as the rows [M, C] / [M] the family's kernel takes.

    ``[N, C, d1, …, dk]`` with target ``[N, d1, …, dk]`` (``soft``: probabilities of the
    logits' shape) becomes one row per position (the class dim moved last, then flattened);
    an unbatched ``[C]`` with a 0-dim (or one-element) target becomes one row. Returns
    ``(logits, target, shape)``, ``shape`` being that of the ``"none"`` result (``None`` for
    ``[N, C]`` inputs, which are returned unchanged, and for non-tensors, which the usual
    checks reject by name).
    """
    if not isinstance(logits, Tensor) or not isinstance(target, Tensor) or logits.dim() == 2:
        return logits, target, None
    zs, ts = tuple(logits.shape), tuple(target.shape)
    if logits.dim() == 0:
        raise ValueError(f"logits must have shape [N, C] (or [C], or [N, C, d1, ..., dk]), got {zs}")
    if soft:
        if ts != zs:
            raise ValueError(f"target must have the shape of logits {zs}, got {ts}")
    elif logits.dim() == 1:
        if target.numel() != 1 or target.dim() > 1:
            raise ValueError(f"logits must have shape [N, C] (or [C] with a 0-dim target, or [N, C, d1, ..., dk] "
                             f"with target [N, d1, ..., dk]); got logits {zs} and target {ts}")
    elif ts != zs[:1] + zs[2:]:
        raise ValueError(f"target must have shape [N, d1, ..., dk] = {list(zs[:1] + zs[2:])} to match logits {zs}, got {ts}")
    if logits.dim() == 1:
        return logits.unsqueeze(0), (target.unsqueeze(0) if soft else target.reshape(1)), ()
    c = zs[1]
    if c < 1:
        raise ValueError(f"logits must have at least one class column, got shape {zs}")
    rows = logits.movedim(1, -1).reshape(-1, c)
    return rows, (target.movedim(1, -1).reshape(-1, c) if soft else target.reshape(-1)), zs[:1] + zs[2:]


def _unrows(out: Tensor, shape: tuple[int, ...] | None, reduction: str) -> Tensor:
    """The ``"none"`` result of :func:`_class_rows`'s rows in the caller's layout."""
    return out if shape is None or reduction != "none" else out.reshape(shape)


def _smoothing_target_error(logits: Tensor, target: Tensor, ignore_index: int) -> bool:
    """Whether an infinite label-smoothed loss comes from bad logits (NaN/+inf anywhere, or
    ``-inf`` at a counted row's target) rather than from a masked non-target class."""
    z = logits.detach()
    if bool((torch.isnan(z) | torch.isposinf(z)).any()):
        return True
    keep = target != ignore_index
    at_target = z.gather(1, torch.where(keep, target, 0).unsqueeze(1)).squeeze(1)
    return bool((torch.isneginf(at_target) & keep).any())


def _class_ce(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | Sequence[float] | None,
    ignore_index: int,
    reduction: str,
    validate: bool,
    per_class: dict[str, Tensor] | None = None,
    **kernel: Any,
) -> Tensor:
    """The integer-target CE family: checks, then :func:`_fused.softmax_cross_entropy` with
    ``kernel``'s constants (callables are called with ``z``, the logits in the compute dtype).

    Every layout of :func:`_class_rows` is computed as rows [M, C] and the ``"none"`` result
    put back in the input's layout; ``per_class`` (name → tensor [C]) are checked against C."""
    rows, target, shape = _class_rows(logits, target)
    z, out_dtype, deferred = check_classification_deferred(rows, target, reduction, validate, ignore_index)
    check_ignore_index(ignore_index, rows.shape[1])
    for name, values in (per_class or {}).items():
        check_num_classes(values, rows, name)
    w = class_weight_like(weight, z, validate=False)
    consts = {k: (v(z) if callable(v) else v) for k, v in kernel.items()}
    # label smoothing puts ε/C on every class: a masked (-inf) non-target class makes the loss
    # +inf by definition, F.cross_entropy's value (its gradient p − t stays finite), not an error
    smoothed = (lambda: _smoothing_target_error(rows, target, ignore_index)) if consts.get("label_smoothing") else None
    out = run_deferred(
        lambda: softmax_cross_entropy(z, target, weight=w, ignore_index=ignore_index, reduction=reduction, **consts),
        deferred, target, rows, ignore_index, out_dtype, smoothed,
    )
    return _unrows(out, shape, reduction)


def _check_soft_target(logits: Tensor, target: Tensor, validate: bool) -> None:
    check_logits(logits, validate)
    check_multilabel_target(target, logits, validate)
    if validate and target.numel():
        # summed in float32 at least, and to the dtype's own rounding: a bfloat16 row of
        # probabilities is exact only to ~2^-8
        rows = target.sum(1, dtype=compute_dtype(target))
        tol = max(1e-3, torch.finfo(target.dtype).eps)
        if not bool(torch.allclose(rows, torch.ones_like(rows), atol=tol, rtol=0.0)):
            raise ValueError("probability targets must sum to 1 over the classes of each row")


def _soft_cross_entropy(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | Sequence[float] | None,
    reduction: str,
    validate: bool,
    *,
    label_smoothing: float = 0.0,
    transform: Callable[[Tensor], Tensor] | None = None,
    class_counts: Tensor | None = None,
) -> Tensor:
    """``F.cross_entropy(transform(z), p)`` for class-probability targets ``p`` [N, C] (e.g.
    mixup / CutMix labels; also ``[N, C, d1, …, dk]`` and unbatched ``[C]``, as
    :func:`_class_rows`); ``transform`` is a prior-aware loss's logit adjustment. ``"mean"``
    is torch's (over the rows; 0 for an empty batch)."""
    logits, target, shape = _class_rows(logits, target, soft=True)
    _check_soft_target(logits, target, validate)
    if class_counts is not None:
        check_num_classes(class_counts, logits, "class_counts")
    z = logits.to(compute_dtype(logits))
    w = class_weight_like(weight, z, validate=False)
    u = z if transform is None else transform(z)
    losses = F.cross_entropy(u, target.to(z.dtype), weight=w, label_smoothing=label_smoothing, reduction="none")
    return _unrows(reduce_loss(losses, reduction, None, logits.dtype), shape, reduction)


def _is_soft(target: Any) -> bool:
    return isinstance(target, Tensor) and target.is_floating_point()


@loss_function(inputs=CLASSIFICATION, params={
    "label_smoothing": Param("ε in [0, 1]: the target is ``(1 − ε)·e_y + ε/C``", unit_interval,
                             "0 = plain CE (torch default); Szegedy et al. use 0.1"),
})
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

    ``target`` is int64 [N] or class probabilities [N, C]; K-dimensional ``[N, C, d1, …, dk]``
    logits (targets ``[N, d1, …, dk]`` or probabilities of the logits' shape) and an unbatched
    ``[C]`` (0-dim target) are taken as torch takes them. See
    :class:`lossatlas.losses.CrossEntropyLoss`.
    """
    if _is_soft(target):
        return _soft_cross_entropy(logits, target, weight, reduction, validate, label_smoothing=label_smoothing)
    return _class_ce(logits, target, weight, ignore_index, reduction, validate, label_smoothing=label_smoothing)


def _focal_alpha(value: Any, name: str) -> float | Tensor | None:
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return None if value is None else nonnegative(value, name)
    a = value.detach().to("cpu", torch.float64) if isinstance(value, Tensor) else torch.as_tensor(value, dtype=torch.float64)
    if a.dim() != 1:
        raise ValueError(f"{name} must be a float or a 1-D sequence with one value per class, got shape {tuple(a.shape)}")
    if not bool(torch.isfinite(a).all()) or bool((a < 0).any()):
        raise ValueError(f"{name} must be finite and non-negative")
    return a


@loss_function(inputs=CLASSIFICATION, params={
    "gamma": Param("focusing parameter γ ≥ 0 (γ = 0 is cross-entropy)", nonnegative,
                   "Lin et al. 2017 (γ=2 best on COCO); LDAM-DRW's CIFAR script uses γ=1"),
    "alpha": Param("optional balance factor α: a float (scales every term) or one value per class [C]",
                   _focal_alpha, "none: α is the sigmoid form's class prior (see sigmoid_focal)"),
})
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
    a: Any = alpha
    per_class = None
    if isinstance(alpha, Tensor):
        per_class = {"alpha": alpha}
        a = lambda z: cast_constant(alpha, z)  # noqa: E731
    return _class_ce(logits, target, weight, ignore_index, reduction, validate, per_class, gamma=float(gamma), alpha=a)


def _sigmoid_alpha(value: Any, name: str) -> float | None:
    if value is None:
        return None
    v = check_number(value, name, high=1.0)
    return None if v < 0 else v


@loss_function(inputs=CLASSIFICATION, call=("mask",), params={
    "alpha": Param("weight α ∈ [0, 1] of the positive terms (1 − α of the negatives); ``None`` or negative disables it",
                   _sigmoid_alpha, "Lin et al. 2017 / torchvision (0.25)"),
    "gamma": Param("focusing parameter γ ≥ 0", nonnegative, "Lin et al. 2017 / torchvision (2)"),
})
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

    Elementwise on any shape (``logits`` and ``target`` the same shape: [N, C], [N],
    [N, C, H, W], …, as torchvision's ``sigmoid_focal_loss``). ``reduction="none"`` returns
    the elementwise losses in that shape; ``"mean"`` averages all elements. Optional ``mask``
    (broadcastable to the logits' shape, 1 = count, 0 = unannotated) zeroes left-out
    elements and makes ``"mean"`` the masked mean ``Σ m·l / Σ m``.
    """
    check_reduction(reduction)
    logits, target, mask, shape = elementwise_rows(logits, target, mask, validate)
    check_logits(logits, validate)
    check_multilabel_target(target, logits, validate)
    out_dtype = logits.dtype
    z = logits.to(compute_dtype(logits))
    y = target.to(z.dtype)
    losses = pointwise_loss(z, lambda x: _sigmoid_focal_terms(x, y, alpha, gamma), y, cpu_only=False, traced=True)
    if losses is None:
        losses = _sigmoid_focal_plain(z, y, alpha, gamma)
    m = None if mask is None else check_mask(mask, logits, validate).to(z.dtype)
    return _unrows(reduce_loss(losses, reduction, m, out_dtype), shape, reduction)


def _sigmoid_focal_plain(z: Tensor, y: Tensor, alpha: float | None, gamma: float) -> Tensor:
    """The elementwise sigmoid focal loss from composed (differentiable) torch ops."""
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
    if alpha is not None:
        # α y + (1 − α)(1 − y) = (1 − α) + (2α − 1) y, built without a gradient.
        losses = losses * y.mul(2.0 * alpha - 1.0).add_(1.0 - alpha)
    return losses


def _sigmoid_focal_terms(z: Tensor, y: Tensor, alpha: float | None, gamma: float) -> tuple[Tensor, Tensor]:
    """``(ℓ, dℓ/dz)`` elementwise, no graph: ``ℓ = a · q^γ · ce`` with ``ce = (1 − y) z − log σ(z)``
    (ATen's ``binary_cross_entropy_with_logits``), ``q = 1 − p_t = y + σ(z)(1 − 2y)`` (clamped at
    the dtype's smallest normal for γ < 1, as :func:`_sigmoid_focal_plain`) and ``a = α y + (1 − α)(1 − y)``;
    ``dℓ/dz = a [(σ(z) − y) q^γ + γ ce q^{γ−1} (1 − 2y) σ(z)(1 − σ(z))]`` (the clamp passes no
    gradient below its floor)."""
    # every buffer but the outputs is reused in place: a fresh [N, C] allocation costs about
    # as much as a pass over it on CPU (page faults)
    p = torch.sigmoid(z)
    ce = F.logsigmoid(z).neg_()
    s = torch.rsub(y, 1.0)
    ce.addcmul_(s, z)  # (1 − y) z − log σ(z)
    if gamma == 0.0:
        slope = p.sub_(y)
    else:
        s.sub_(y)  # 1 − 2y
        q = torch.addcmul(y, p, s)
        dq = s.mul_(p)
        dq.addcmul_(dq, p, value=-1.0).mul_(ce)  # ce · ∂q/∂z = ce (1 − 2y) σ(z)(1 − σ(z))
        slope = p.sub_(y)  # ∂ce/∂z
        if gamma == 1.0:
            q_g = q
        elif gamma == 2.0:
            dq.mul_(q)
            q_g = q.mul_(q)
        else:
            if gamma < 1.0:
                tiny = torch.finfo(z.dtype).tiny
                dq.mul_(q >= tiny)  # the clamp passes no gradient below its floor
                q.clamp_min_(tiny)
            q_g = q.pow(gamma - 1.0)
            dq.mul_(q_g)
            q_g.mul_(q)
        # traced, a scalar keyword argument cannot be symbolic (inductor fails on it)
        slope.mul_(q_g).add_(dq.mul_(gamma) if compiling() else dq, alpha=1.0 if compiling() else gamma)
        ce.mul_(q_g)
    if alpha is not None:
        a = y.mul(2.0 * alpha - 1.0).add_(1.0 - alpha)
        ce.mul_(a)
        slope.mul_(a)
    return ce, slope


def elementwise_rows(
    logits: Any, target: Any, mask: Tensor | None, validate: bool
) -> tuple[Any, Any, Tensor | None, tuple[int, ...] | None]:
    """An elementwise (sigmoid) loss's inputs of any shape as the [M, L] the checks take.

    ``logits`` and ``target`` must have the same shape; ``L`` is its last dim (1 for a
    0-dim input or an empty last dim), so a per-class tensor [L] broadcasts over the last
    dim as in torch.
    ``mask`` is checked against the original shape (``ValueError`` naming it), then laid
    out the same way. Returns ``(logits, target, mask, shape)`` with ``shape`` the
    ``"none"`` result's (``None`` for [N, C] inputs, returned unchanged)."""
    check_float(logits, "logits")
    check_tensor(target, "target")
    if logits.dim() == 2:
        return logits, target, mask, None
    shape = tuple(logits.shape)
    if tuple(target.shape) != shape:
        raise ValueError(f"target must have the shape of logits {shape}, got {tuple(target.shape)}")
    if mask is not None:
        mask = check_mask(mask, logits, validate)
    rows = (math.prod(shape[:-1]), shape[-1]) if shape and shape[-1] else (logits.numel(), 1)
    return (logits.reshape(rows), target.reshape(rows), None if mask is None else mask.reshape(rows), shape)


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


def drw_weights(class_counts: ClassCounts, epoch: int, *, start_epoch: int, beta: float = 0.9999) -> Tensor:
    """Deferred re-weighting: uniform weights before ``start_epoch``, then effective-number weights.

    ``start_epoch`` has no default: LDAM-DRW's CIFAR recipe switches at 160 of 200 epochs, a
    schedule to choose for each training run."""
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
    return effective_number_weights(class_counts, beta if epoch >= start_epoch else 0.0)


def ldam_margins(class_counts: ClassCounts, max_margin: float = 0.5) -> Tensor:
    """LDAM margins ``m_j = max_margin · n_j^{-1/4} / max_k n_k^{-1/4}`` (float64 [C])."""
    return _ldam_margins(as_class_counts(class_counts), check_number(max_margin, "max_margin", low=0.0))


def _ldam_margins(counts: Tensor, max_margin: float) -> Tensor:
    m = counts.pow(-0.25)
    return m * (max_margin / m.max())


@loss_function(inputs=CLASSIFICATION, params={
    "class_counts": COMMON["class_counts"],
    "max_margin": Param("the largest margin C, given to the rarest class", nonnegative, "kaidic/LDAM-DRW (max_m=0.5)"),
    "scale": Param("s > 0, multiplies the margin-shifted logits", positive, "kaidic/LDAM-DRW (s=30)"),
})
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
) -> Tensor:
    """LDAM loss ``CE(s · (z − m_y e_y), y)``; see :class:`lossatlas.losses.LDAMLoss`.

    With ``validate=True`` and ``scale > 1`` it warns (once per process) when the logits
    cannot be cosines, ``max |z| > 1.01``: the scale assumes a normalised classifier
    (:class:`lossatlas.heads.NormedLinear`)."""
    margins = derived(_ldam_margins, class_counts, max_margin)
    # |z| read after the kernel: the CE family's deferred check has already waited for it
    peak = _ldam_peak(logits) if validate and not _LDAM_WARNED[0] and float(scale) > 1.0 and not compiling() else None
    # s·(z − m_y e_y) without a one-hot matrix: scale, then subtract s·m_y at the target.
    out = _class_ce(logits, target, weight, ignore_index, reduction, validate, {"class_counts": class_counts}, scale=scale,
                    shift=lambda z: cast_constant(margins, z, -scale, column=True))
    if peak is not None:
        _warn_unnormalised(_peak_value(logits, peak), float(scale))
    return out


#: Cosine logits are in [-1, 1]; rounding (bfloat16: 2^-8) stays well below this tolerance.
LDAM_COSINE_TOLERANCE = 0.01
_LDAM_WARNED = [False]  # warn once per process


def _ldam_peak(logits: Tensor) -> tuple[Tensor, Tensor] | None:
    """The logits' least and largest value, on the device (one pass; :func:`_peak_value` reads them)."""
    if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.numel() == 0:
        return None  # the checks of the call report bad logits
    lo, hi = torch.aminmax(logits.detach())
    return lo, hi


def _peak_value(logits: Tensor, extremes: tuple[Tensor, Tensor]) -> float:
    """max |z| over the finite logits (a masked class's -inf is not a magnitude) from :func:`_ldam_peak`'s
    extremes; where one is not finite (-inf, or NaN/+inf, which the deferred checks have reported when
    ``validate``), from the exact pass over the finite entries."""
    lo, hi = float(extremes[0]), float(extremes[1])
    if math.isfinite(lo) and math.isfinite(hi):
        return max(-lo, hi)
    return float(logits.detach().abs().nan_to_num(0.0, 0.0, 0.0).amax())


def _warn_unnormalised(peak: float, scale: float) -> None:
    if peak > 1.0 + LDAM_COSINE_TOLERANCE and not _LDAM_WARNED[0]:
        _LDAM_WARNED[0] = True
        # point at the user's line: skip the frames of lossatlas and of torch (nn.Module.__call__)
        inside = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(os.path.abspath(torch.__file__)))
        frame, level = sys._getframe(0), 1
        while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(inside):
            frame, level = frame.f_back, level + 1
        warnings.warn(
            f"ldam: logits reach |z| = {peak:.3g} > 1 with scale={scale:g}. LDAM's scale assumes cosine logits in [-1, 1] "
            "from a normalised classifier (lossatlas.heads.NormedLinear, kaidic/LDAM-DRW's NormedLinear); on a plain "
            "nn.Linear head the scaled logits grow without bound and training can diverge to NaN. Use "
            "la.heads.NormedLinear as the last layer, or scale=1 for plain logits. (Warned once; validate=False skips the check.)",
            UserWarning,
            stacklevel=level,
        )


def log_prior(class_counts: ClassCounts) -> Tensor:
    """``log π_j = log(n_j / Σ n)`` as float64 [C]."""
    return _log_prior(as_class_counts(class_counts))


def _log_prior(counts: Tensor) -> Tensor:
    return torch.log(counts / counts.sum())


def _biased_ce(
    logits: Tensor,
    target: Tensor,
    class_counts: Tensor,
    bias: Tensor,
    reduction: str,
    validate: bool,
    weight: Tensor | Sequence[float] | None,
    ignore_index: int,
    divisor: Tensor | None = None,
) -> Tensor:
    """CE(z / divisor + bias, y): the shared core of logit adjustment, balanced softmax and VS.

    ``target`` is int64 [N] or class probabilities [N, C] (soft labels, e.g. from mixup)."""
    if _is_soft(target):
        def adjust(z: Tensor) -> Tensor:
            return affine_logits(z, None, cast_constant(bias, z), None if divisor is None else cast_constant(divisor, z))

        return _soft_cross_entropy(logits, target, weight, reduction, validate, transform=adjust, class_counts=class_counts)
    return _class_ce(logits, target, weight, ignore_index, reduction, validate, {"class_counts": class_counts},
                     bias=lambda z: cast_constant(bias, z),
                     divisor=None if divisor is None else (lambda z: cast_constant(divisor, z)))


def _la_bias(counts: Tensor, tau: float) -> Tensor:
    return tau * _log_prior(counts)


@loss_function(inputs=CLASSIFICATION, params={
    "class_counts": COMMON["class_counts"],
    "tau": Param("τ, the adjustment strength (τ = 0 is cross-entropy)", any_number, "Menon et al. 2021 (τ=1)"),
})
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
    return _biased_ce(logits, target, class_counts, derived(_la_bias, class_counts, tau), reduction, validate, weight, ignore_index)


def posthoc_logit_adjustment(logits: Tensor, class_counts: ClassCounts, *, tau: float = 1.0) -> Tensor:
    """Post-hoc logit adjustment (Menon et al. 2021): ``z − τ log π``; predict with its argmax."""
    check_logits(logits, validate=False)
    tau = check_number(tau, "tau")
    lp = log_prior(class_counts)
    check_num_classes(lp, logits, "class_counts")
    return logits - (tau * lp).to(device=logits.device, dtype=logits.dtype)


@loss_function(inputs=CLASSIFICATION, params={"class_counts": COMMON["class_counts"]})
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
    return _biased_ce(logits, target, class_counts, derived(torch.log, class_counts), reduction, validate, weight, ignore_index)


def vs_parameters(class_counts: ClassCounts, gamma: float = 0.3, tau: float = 1.0) -> tuple[Tensor, Tensor]:
    """VS loss constants: multiplicative ``Δ_j = (n_max / n_j)^γ`` (divides z) and additive ``ι_j = τ log π_j``."""
    counts = as_class_counts(class_counts)
    return _vs_delta(counts, check_number(gamma, "gamma", low=0.0)), _la_bias(counts, check_number(tau, "tau"))


@loss_function(inputs=CLASSIFICATION, params={
    "class_counts": COMMON["class_counts"],
    "gamma": Param("γ ≥ 0, strength of the multiplicative adjustment", nonnegative,
                   "orparask/VS-Loss class default (0.3); README CIFAR-10-LT ρ=100 example uses 0.2"),
    "tau": Param("τ, strength of the additive adjustment", any_number,
                 "orparask/VS-Loss class default (1.0); README example uses 1.2"),
})
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
    delta = derived(_vs_delta, class_counts, gamma)
    iota = derived(_la_bias, class_counts, tau)
    return _biased_ce(logits, target, class_counts, iota, reduction, validate, weight, ignore_index, divisor=delta)


def _vs_delta(counts: Tensor, gamma: float) -> Tensor:
    return (counts.max() / counts).pow(gamma)


def _optional_logit(value: Any, name: str) -> float | None:
    """``None`` (no clamp) or a finite real number."""
    return None if value is None else any_number(value, name)


def _gumbel_terms(z: Tensor, y: Tensor) -> Tensor:
    """``Σ_j BCE(exp(−e^{−z_j}), 1[j = y])`` per row: ``e^{−z_y}`` for the target and
    ``−log(1 − exp(−e^{−z_j}))`` for the others (written with ``expm1`` so that it stays exact
    for large ``z_j``, where it tends to ``z_j``)."""
    e = torch.exp(-z)
    negative = -torch.log(-torch.expm1(-e))
    # a comparison, not a scatter into zeros, which inductor compiles to a slow kernel (under
    # torch.compile this is the traced path)
    onehot = torch.arange(z.shape[1], device=z.device) == y.unsqueeze(1)
    return torch.where(onehot, e, negative).sum(dim=1)


@functools.cache
def _outward(value: float, dtype: torch.dtype, toward: float) -> float:
    """The neighbour of ``value`` in ``dtype`` toward ``toward`` (±inf): ``hardtanh_backward``'s open
    interval between the outward neighbours of ``lo`` and ``hi`` is the closed ``[lo, hi]`` where
    ``torch.clamp`` passes its gradient."""
    v = torch.tensor(value, dtype=dtype)
    return float(torch.nextafter(v, torch.tensor(toward, dtype=dtype)))


class _GumbelRows(torch.autograd.Function):
    """:func:`_gumbel_terms` of ``clamp(z, lo, hi)`` per row, reduced, in one pass, with a hand-derived
    gradient computed in the forward.

    With ``e = e^{−x}`` (``x`` the clamped logit) and ``w = 1 − exp(−e) = −expm1(−e)``, a
    non-target term is ``−log w`` with ``d/dx = e exp(−e) / w = e/w − e``, the target's ``e`` has
    ``d/dx = −e``; the clamp passes the gradient on ``[lo, hi]`` only. Three transcendental
    passes (exp, expm1, log) over [N, C] and two [N, C] buffers (the second becomes the
    gradient, the reduction's row factor included), where the composed ops replay ``exp``,
    ``expm1``, ``log``, ``where`` and the clamp through autograd. The backward hands the
    gradient back (:func:`~lossatlas.functional._fused.handed_back`).
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, y: Tensor, lo: float | None, hi: float | None, row_w: Tensor | None,
                reduction: str) -> Tensor:
        idx = y.unsqueeze(1)
        clamped = lo is not None or hi is not None
        e = (torch.clamp(z, lo, hi).neg_() if clamped else z.neg()).exp_()
        w = torch.neg(e).expm1_().neg_()  # 1 − exp(−e), in (0, 1]
        ey = e.gather(1, idx)
        slope = e.div_(w)
        slope.addcmul_(slope, w, value=-1.0)  # e/w − e
        slope.scatter_(1, idx, ey.neg())
        # the target's −log w is replaced by its e (set to 0 first: w may be 0 there, far right)
        rows = w.log_().scatter_(1, idx, 0.0).sum(1).neg_().add_(ey.squeeze(1))
        out, k = reduce_rows(rows, row_w, reduction)
        if isinstance(k, Tensor) or k != 1.0:
            slope.mul_(col(k))
        if clamped:
            a = -math.inf if lo is None else _outward(lo, z.dtype, -math.inf)
            b = math.inf if hi is None else _outward(hi, z.dtype, math.inf)
            slope = torch.ops.aten.hardtanh_backward.grad_input(slope, z, a, b, grad_input=slope)
        ctx.save_for_backward(slope)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        return handed_back(ctx.saved_tensors[0], grad), None, None, None, None, None


_gumbel_rows = cast(Callable[..., Tensor], _GumbelRows.apply)


@loss_function(compile_opaque=True, inputs=CLASSIFICATION, params={
    "clamp_min": Param("lower clamp of the logits before the Gumbel CDF (``None``: none)", _optional_logit,
                       "kostas1515/GOL mmdet/models/losses/droploss.py: torch.clamp(cls_score, min=-4, max=10)"),
    "clamp_max": Param("upper clamp of the logits before the Gumbel CDF (``None``: none)", _optional_logit,
                       "kostas1515/GOL mmdet/models/losses/droploss.py: torch.clamp(cls_score, min=-4, max=10)"),
    "weight": COMMON["weight"],
})
def gumbel(
    logits: Tensor,
    target: Tensor,
    *,
    clamp_min: float | None = -4.0,
    clamp_max: float | None = 10.0,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Gumbel optimised loss ``Σ_j BCE(exp(−e^{−z_j}), 1[j = y])``; see :class:`lossatlas.losses.GumbelLoss`."""
    if clamp_min is not None and clamp_max is not None and clamp_min >= clamp_max:
        raise ValueError(f"clamp_min must be below clamp_max, got clamp_min={clamp_min}, clamp_max={clamp_max}")
    # the spec has turned weight into a tensor [C] (or None)
    # on the fused CPU path the ignore mask is built only when some target can be ignore_index (one host read)
    lazy = isinstance(logits, Tensor) and take_fused(logits, 1)
    z, y, w, out_dtype = prepare_classification(logits, target, reduction, validate, cast("Tensor | None", weight),
                                                ignore_index, lazy_mask=lazy)
    if take_fused(z, 1, cpu_only=False):
        return as_dtype(_gumbel_rows(z, y, clamp_min, clamp_max, w, reduction), out_dtype)
    if clamp_min is not None or clamp_max is not None:
        z = torch.clamp(z, min=clamp_min, max=clamp_max)
    return reduce_loss(_gumbel_terms(z, y), reduction, w, out_dtype)
