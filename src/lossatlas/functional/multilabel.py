"""Multi-label losses (catalogue rows D1–D3), as pure functions.

Multi-label functions take ``logits`` [N, C] and a multi-hot (or soft) ``target`` [N, C]
in [0, 1]. ``reduction="none"`` returns the elementwise losses [N, C] (as
``F.binary_cross_entropy_with_logits`` and ``torchvision.ops.sigmoid_focal_loss`` do);
``"mean"`` averages over the counted elements, ``"sum"`` sums them.

Masked targets: every multi-label function accepts ``mask`` (bool or float, broadcastable
to [N, C]; 0 = not annotated, the element is left out) and ``ignore_index`` (a target value
outside [0, 1], -100 by default as in torch, that marks an element as not annotated, as in
partially labelled data such as OpenImages; ``None`` turns it off). Masked elements
contribute 0 to ``"none"``/``"sum"``, and ``"mean"`` is ``Σ m·l / Σ m`` (0, with a zero
gradient, when nothing is counted).

The single-label ASL and the self-adjusting Dice loss take integer targets [N] (Dice also
accepts [N, C] targets). Each public loss function is the one definition of its method
(:func:`lossatlas._spec.loss_function`); the module twins in
:mod:`lossatlas.losses.multilabel` are built from them and carry the full documentation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from .._paths import take_fused
from .._spec import COMMON, Param, as_bool, loss_function, mean_divisor, nonnegative, unit_interval, weight_param
from .._validation import (
    check_logits,
    check_mask,
    check_multilabel_target,
    check_number,
    check_tensor,
    compiling,
)
from ._common import compute_dtype, prepare_classification, reduce_loss
from ._fused import fused_or_traced, handed_back, log_softmax_rows, materialized, reduce_rows, softmax_rows, traced_reduce
from .imbalance import elementwise_rows

__all__ = ["bce", "asymmetric", "asymmetric_single_label", "dice"]

MULTILABEL = ("logits", "target")


def _multilabel_ignore(value: Any, name: str) -> float:
    """A target value outside [0, 1] (inside it would drop real labels)."""
    v = check_number(value, name)
    if 0.0 <= v <= 1.0:
        raise ValueError(f"{name}={value} is a valid multi-label target value; use a value outside [0, 1] such as -100")
    return v


#: ``ignore_index`` of the multi-label losses: a float target value, off by default (torch's
#: ``binary_cross_entropy_with_logits`` has none, and checking for it costs a pass over N·C).
MULTILABEL_IGNORE = Param("target value marking an unannotated element (outside [0, 1], e.g. -100; ``None``: every element counts)",
                          _multilabel_ignore, "None, as torch's binary_cross_entropy_with_logits (no ignore value); opt in with e.g. -100")


def _in_unit_interval(target: Tensor) -> bool:
    """Whether every value of ``target`` lies in [0, 1] (one pass, one host read; NaN gives False)."""
    t = target if target.is_floating_point() else target.to(torch.float32)
    lo, hi = torch.aminmax(t.detach())
    return bool(float(lo) >= 0 and float(hi) <= 1)


def _prepare_multilabel(
    logits: Tensor,
    target: Tensor,
    validate: bool,
    mask: Tensor | None = None,
    ignore_index: float | None = None,
) -> tuple[Tensor, Tensor, Tensor | None, torch.dtype]:
    """Validate (logits, multi-hot target, mask) and return ``(z, y, m, out_dtype)``.

    ``z`` and ``y`` are in the compute dtype; ``m`` is the [N, C] element mask (float, in the
    compute dtype) or ``None`` when every element counts.
    """
    check_logits(logits, validate)
    check_tensor(target, "target")
    if target.shape != logits.shape:
        raise ValueError(f"target must have the shape of logits {tuple(logits.shape)}, got {tuple(target.shape)}")
    z = logits.to(compute_dtype(logits))
    m = None
    if ignore_index is None:
        check_multilabel_target(target, logits, validate)
    elif validate and not compiling() and target.numel() and _in_unit_interval(target):
        # The range check has read the target: no element holds ignore_index (a value outside
        # [0, 1]), so no mask is built (the mask costs more passes than BCE itself).
        check_multilabel_target(target, logits, validate=False)
    else:
        ignored = target == ignore_index
        target = torch.where(ignored, torch.zeros_like(target), target)
        m = (~ignored).to(z.dtype)
        check_multilabel_target(target, logits, validate)
    if mask is not None:
        mm = check_mask(mask, logits, validate).to(z.dtype)
        m = mm if m is None else m * mm
    return z, target.to(z.dtype), m, logits.dtype


def _pos_weight(value: Any, name: str) -> Tensor:
    """Weights of the positive terms: finite, non-negative, any shape (broadcast against the
    logits at the call, as torch does); a float64 tensor unless given as a float tensor."""
    t = value if isinstance(value, Tensor) else torch.as_tensor(value, dtype=torch.float64)
    checked = weight_param(t.reshape(-1), name)
    assert checked is not None
    return checked.reshape(t.shape)


def _check_pos_weight(pw: Tensor, shape: tuple[int, ...]) -> None:
    """torch's rule: ``pos_weight`` broadcasts to the logits' shape without enlarging it."""
    try:
        ok = tuple(torch.broadcast_shapes(tuple(pw.shape), shape)) == shape
    except RuntimeError:
        ok = False
    if ok:
        return
    if pw.dim() == 1 and shape:
        raise ValueError(f"pos_weight has {pw.shape[0]} entries but logits have {shape[-1]} classes (their last dim); "
                         "they must match")
    raise ValueError(f"pos_weight of shape {tuple(pw.shape)} must broadcast to the logits' shape {shape} "
                     "(as in torch: [C] runs along the last dim; use [C, 1, 1] for [N, C, H, W] logits)")


@loss_function(inputs=MULTILABEL, call=("mask",), params={
    "pos_weight": Param("optional weight of the positive term, broadcast against the logits as torch does: [C] "
                        "per class of [N, C] logits, [C, 1, 1] per channel of [N, C, H, W]", _pos_weight,
                        "torch default (none)"),
    "ignore_index": MULTILABEL_IGNORE,
})
def bce(
    logits: Tensor,
    target: Tensor,
    *,
    pos_weight: Tensor | Sequence[float] | None = None,
    mask: Tensor | None = None,
    ignore_index: float | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Sigmoid binary cross-entropy per label; see :class:`lossatlas.losses.BCELoss`.

    ``l_ic = −[w_c y log σ(z) + (1 − y) log(1 − σ(z))]`` with ``w = pos_weight`` (torch semantics).
    Elementwise on any shape (``logits`` and ``target`` the same shape, as
    ``F.binary_cross_entropy_with_logits``; ``pos_weight`` broadcasts against them as in torch:
    a [C] tensor runs along the last dim, [C, 1, 1] along dim 1 of [N, C, H, W]);
    ``"none"`` returns that shape.
    """
    rows, target, mask, shape = elementwise_rows(logits, target, mask, validate)
    z, y, m, out_dtype = _prepare_multilabel(rows, target, validate, mask, ignore_index)
    if shape is not None:  # checked as rows; computed in the caller's shape (pos_weight broadcasts as in torch)
        z, y, m = z.reshape(shape), y.reshape(shape), None if m is None else m.reshape(shape)
    pw = cast("Tensor | None", pos_weight)
    if pw is not None:
        _check_pos_weight(pw, tuple(z.shape))
        pw = pw.to(device=z.device, dtype=z.dtype)
    if m is None and z.numel():  # torch's own reduction: one node fewer (an empty mean stays 0 below)
        out = F.binary_cross_entropy_with_logits(z, y, pos_weight=pw, reduction=reduction)
        return out if out.dtype == out_dtype else out.to(out_dtype)
    losses = F.binary_cross_entropy_with_logits(z, y, pos_weight=pw, reduction="none")
    return reduce_loss(losses, reduction, m, out_dtype)


#: From this many logits ASL runs as one autograd.Function (measured on CPU: faster than the
#: composed ops at every size tried, N·C = 640 to 10^6; tests force the other path with
#: :func:`lossatlas._paths.force_path`).
ASL_FUSE_MIN_NUMEL = 1


class _Asymmetric(torch.autograd.Function):
    """ASL with its focusing weight detached, elementwise, with a hand-derived gradient.

    With ``s⁺ = σ(z)``, ``s⁻ = σ(−z)``, ``x⁻ = min(s⁻ + clip, 1)`` and the detached weight
    ``w = (y s⁻ + (1 − y)(1 − x⁻))^{γ₊ y + γ₋ (1 − y)}``, the loss ``−w (y log max(s⁺, ε) +
    (1 − y) log max(x⁻, ε))`` has the derivative ``w (−y s⁻ [s⁺ > ε] + (1 − y) s⁺ s⁻ / x⁻
    [x⁻ > ε][s⁻ + clip < 1])`` (for ``clip = 0``: ``(1 − y) s⁺ [s⁻ > ε]``). The forward
    computes it beside the loss from the same sigmoids, so the backward is one multiply:
    about half the passes over [N, C] of the composed ops and their autograd replay.
    """

    @staticmethod
    def forward(
        ctx: Any, z: Tensor, y: Tensor, m: Tensor | None, gamma_neg: float, gamma_pos: float, clip: float, eps: float,
        reduction: str,
    ) -> Tensor:
        # products with y and 1 − y rather than lerp (several times slower on CPU), and every
        # buffer reused in place once its last reader is done: a fresh [N, C] allocation costs
        # about a pass over it
        sp = torch.sigmoid(z)
        sn = torch.neg(z).sigmoid_()
        flat = sp <= eps  # where log max(s⁺, ε) is flat
        below = None if z.device.type == "cpu" and not bool(flat.any()) else flat  # one host read, not on CUDA (a sync)
        if clip > 0:
            d_neg = sp * sn  # ÷ x⁻ below
            one_minus_neg = (sp - clip).clamp_min_(0.0)
        else:
            d_neg = sp.masked_fill(sn <= eps, 0.0)
            one_minus_neg = sp
        w_pos = w_neg = None
        if gamma_neg > 0 or gamma_pos > 0:
            if z.device.type == "cpu" and not bool(((y != 0.0) & (y != 1.0)).any()):
                # binary targets (y (1 − y) = 0 everywhere; one host read): w = y (s⁻)^γ₊ + (1 − y)(1 − x⁻)^γ₋
                w_pos = sn if gamma_pos == 1.0 else _power(sn, gamma_pos)  # sn is read below
                w_neg = one_minus_neg if gamma_neg == 1.0 else _power(one_minus_neg, gamma_neg, in_place=clip > 0)
            else:
                base = torch.addcmul(one_minus_neg, y, one_minus_neg, value=-1.0).addcmul_(y, sn)  # lerp is slower
                w_pos = w_neg = base.pow_(torch.mul(y, gamma_pos - gamma_neg).add_(gamma_neg))
        d_pos = sn.clone() if w_pos is None else sn * w_pos  # −∂ log max(s⁺, ε)/∂z · w
        if below is not None:
            d_pos.masked_fill_(below, 0.0)
        # sp is free from here where the clip made 1 − x⁻ a buffer of its own
        log_pos = (sp.clamp_min_(eps) if clip > 0 else sp.clamp_min(eps)).log_()
        if w_pos is not None:
            log_pos.mul_(w_pos)
        # sn is free from here (its readers above are done)
        if clip > 0:
            xneg = sn.add_(clip).clamp_max_(1.0)
            d_neg.div_(xneg).masked_fill_(xneg >= 1.0, 0.0)
            if eps > clip:  # x⁻ ≥ clip, so the eps floor can only bind when eps > clip
                d_neg.masked_fill_(xneg <= eps, 0.0)
                xneg.clamp_min_(eps)
            log_neg = xneg.log_()
        else:
            log_neg = sn.clamp_min_(eps).log_()
        if w_neg is not None:
            log_neg.mul_(w_neg)
            d_neg.mul_(w_neg)
        # (1 − y) a + y b as a − y a + y b: exact at y ∈ {0, 1}, no (1 − y) buffer
        loss = log_neg.addcmul_(y, log_neg, value=-1.0).addcmul_(y, log_pos)  # −loss, negated at the end
        grad = d_neg.addcmul_(y, d_neg, value=-1.0).addcmul_(y, d_pos, value=-1.0)
        if m is not None:
            loss.mul_(m)
            grad.mul_(m)
        if reduction == "none":
            out = loss.neg_()
        elif reduction == "sum":
            out = loss.sum().neg_()
        else:  # the mean over the counted elements, as reduce_loss (0 when nothing is counted)
            denom: Tensor | int = mean_divisor(m.sum()) if m is not None else loss.numel()
            out = loss.sum().neg_() / denom
            grad.div_(denom)
        ctx.save_for_backward(grad)
        return out

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        (grad,) = ctx.saved_tensors
        return grad * g, None, None, None, None, None, None, None


_asymmetric_fused = cast(Callable[..., Tensor], _Asymmetric.apply)  # Function.apply is unannotated in torch


class _TracedAsymmetric(_Asymmetric):
    """:class:`_Asymmetric` for ``torch.compile``: no host reads, nothing in place.

    The same loss and derivative, with the weight ``w = base^exponent`` of the composed ops
    (any target in [0, 1]; the eager Function reads on the host whether the targets are 0/1),
    all elementwise for inductor to fuse into one pass; the backward is :class:`_Asymmetric`'s
    multiply. Autograd through the composed ops costs inductor a second pass recomputing the
    sigmoids and logs (1.4–1.8× eager at C = 100 to 1,000, issue 25).
    """

    @staticmethod
    def forward(
        ctx: Any, z: Tensor, y: Tensor, m: Tensor | None, gamma_neg: float, gamma_pos: float, clip: float, eps: float,
        reduction: str,
    ) -> Tensor:
        sp = torch.sigmoid(z)
        sn = torch.sigmoid(-z)
        log_pos = torch.log(sp.clamp_min(eps))
        d_pos = torch.where(sp > eps, sn, 0.0)  # ∂ log max(s⁺, ε)/∂z
        if clip > 0:
            xneg = (sn + clip).clamp_max(1.0)
            one_minus_neg = (sp - clip).clamp_min(0.0)
            d_neg = torch.where((xneg < 1.0) & (xneg > eps), sp * sn / xneg, 0.0)  # −∂ log max(x⁻, ε)/∂z
        else:
            xneg, one_minus_neg = sn, sp
            d_neg = torch.where(sn > eps, sp, 0.0)
        log_neg = torch.log(xneg.clamp_min(eps))
        term = y * log_pos + (1.0 - y) * log_neg  # −loss / w
        grad = (1.0 - y) * d_neg - y * d_pos
        if gamma_neg > 0 or gamma_pos > 0:
            w = torch.pow(y * sn + (1.0 - y) * one_minus_neg, y * (gamma_pos - gamma_neg) + gamma_neg)
            term = term * w
            grad = grad * w
        if m is not None:
            term = term * m
            grad = grad * m
        if reduction == "none":
            out = -term
        else:
            out = -term.sum()
            if reduction == "mean":  # over the counted elements, as reduce_loss (0 when nothing is counted)
                denom: Tensor | int = mean_divisor(m.sum()) if m is not None else max(term.numel(), 1)
                out = out / denom
                grad = grad / denom
        ctx.save_for_backward(grad)
        return out


_asymmetric_traced = cast(Callable[..., Tensor], _TracedAsymmetric.apply)


def _clip(value: Any, name: str) -> float | None:
    """``None`` (no margin) or a probability margin in [0, 1]."""
    return None if value is None else unit_interval(value, name)


def _log_floor(value: Any, name: str) -> float:
    """A probability floor in (0, 1]."""
    return check_number(value, name, low=0.0, high=1.0, low_open=True)


@loss_function(inputs=MULTILABEL, call=("mask",), params={
    "gamma_neg": Param("focusing exponent γ− ≥ 0 of the negatives", nonnegative, "Alibaba-MIIL/ASL AsymmetricLoss (4)"),
    "gamma_pos": Param("focusing exponent γ+ ≥ 0 of the positives", nonnegative,
                       "Alibaba-MIIL/ASL AsymmetricLoss (1); its train.py uses 0"),
    "clip": Param("probability margin m in [0, 1] of the negatives (0 or ``None`` disables it)", _clip,
                  "Alibaba-MIIL/ASL (probability margin 0.05)"),
    "eps": Param("lower clamp in (0, 1] of the probabilities inside the logs",
                 _log_floor, "Alibaba-MIIL/ASL (1e-8, log clamp)"),
    "detach_weight": Param("compute the focusing weight without gradient (the gradient is then w · ∂CE/∂z)", as_bool,
                           "Alibaba-MIIL/ASL disable_torch_grad_focal_loss=True"),
    "ignore_index": MULTILABEL_IGNORE,
    "reduction": Param("``'sum'`` | ``'mean'`` (over the counted elements) | ``'none'`` ([N, C])", COMMON["reduction"].check,
                       "'sum': the reference returns -loss.sum() over all N·C elements"),
})
def asymmetric(
    logits: Tensor,
    target: Tensor,
    *,
    gamma_neg: float = 4.0,
    gamma_pos: float = 1.0,
    clip: float | None = 0.05,
    eps: float = 1e-8,
    detach_weight: bool = True,
    mask: Tensor | None = None,
    ignore_index: float | None = None,
    reduction: str = "sum",
    validate: bool = True,
) -> Tensor:
    """Asymmetric loss (ASL) for multi-label targets; see :class:`lossatlas.losses.AsymmetricLoss`.

    The default ``reduction="sum"`` is the reference's (it returns ``−Σ`` over all N·C elements).
    Two paths with the same values and gradients: ``"fused"`` (one autograd.Function, the
    detached weight only) and ``"plain"`` (composed ops; the path of ``torch.compile`` and of
    ``detach_weight=False``); :func:`lossatlas._paths.force_path` picks one.

    ``1 − p_t`` is computed from ``σ(−z)`` and ``σ(z) − clip`` (no ``1 − σ(z)`` cancellation), and
    with ``detach_weight=False`` and 0 < γ < 1 it is clamped at the dtype's smallest normal. Where
    timm's ``AsymmetricLossMultiLabel`` rounds ``1 − p_t`` to 0 (float32: a positive at z ≳ 17, or a
    negative without a clip at z ≲ −17) its gradient is NaN (∞ · 0 in the derivative of x^γ at 0);
    this function's value and gradient there are finite and match an exact mpmath reference
    (tests/differential/test_peers.py; docs/differences.md).
    """
    margin = 0.0 if clip is None else clip
    z, y, m, out_dtype = _prepare_multilabel(logits, target, validate, mask, ignore_index)
    traced = compiling() and z.requires_grad and torch.is_grad_enabled()
    if detach_weight and not y.requires_grad and (traced or take_fused(z, ASL_FUSE_MIN_NUMEL, cpu_only=False)):
        fused = _asymmetric_traced if traced else _asymmetric_fused  # (no gradient for y)
        out = fused(z, y, m, gamma_neg, gamma_pos, margin, eps, reduction)
        return out if out.dtype == out_dtype else out.to(out_dtype)
    return reduce_loss(_asymmetric_plain(z, y, gamma_neg, gamma_pos, margin, eps, detach_weight), reduction, m, out_dtype)


def _asymmetric_plain(z: Tensor, y: Tensor, gamma_neg: float, gamma_pos: float, clip: float, eps: float,
                      detach_weight: bool) -> Tensor:
    """Elementwise ASL [N, C] from composed ops (any ``detach_weight``)."""
    log_eps = math.log(eps)
    # Positive part: log(max(σ(z), eps)), computed as max(log σ(z), log eps) (no underflow).
    log_pos = F.logsigmoid(z).clamp_min(log_eps)
    # Negative part with the probability shift: x_neg = min(σ(−z) + clip, 1).
    if clip > 0:
        p_neg = (torch.sigmoid(-z) + clip).clamp_max(1.0)
        log_neg = torch.log(p_neg.clamp_min(eps))
        # 1 − x_neg = max(σ(z) − clip, 0): the shifted probability of a negative.
        one_minus_neg = (torch.sigmoid(z) - clip).clamp_min(0.0)
    else:
        log_neg = F.logsigmoid(-z).clamp_min(log_eps)
        one_minus_neg = torch.sigmoid(z)
    losses = -(y * log_pos + (1.0 - y) * log_neg)
    if gamma_neg > 0 or gamma_pos > 0:
        # 1 − p_t with p_t = x_pos·y + x_neg·(1 − y), written without cancellation.
        base = y * torch.sigmoid(-z) + (1.0 - y) * one_minus_neg
        exponent = gamma_pos * y + gamma_neg * (1.0 - y)
        if detach_weight:
            with torch.no_grad():
                w = torch.pow(base, exponent)
        else:
            if min(gamma_pos, gamma_neg) < 1.0:  # d/dx x^γ is infinite at 0 for 0 < γ < 1
                base = base.clamp_min(torch.finfo(z.dtype).tiny)
            w = torch.pow(base, exponent)
        losses = losses * w
    return losses


@loss_function(inputs=("logits", "target"), params={
    "gamma_pos": Param("focusing exponent γ+ ≥ 0 of the target class", nonnegative, "Alibaba-MIIL/ASL ASLSingleLabel (0)"),
    "gamma_neg": Param("focusing exponent γ− ≥ 0 of the other classes", nonnegative, "Alibaba-MIIL/ASL ASLSingleLabel (4)"),
    "eps": Param("label smoothing ε in [0, 1] (not a log clamp)", unit_interval,
                 "Alibaba-MIIL/ASL ASLSingleLabel (label smoothing 0.1)"),
})
def asymmetric_single_label(
    logits: Tensor,
    target: Tensor,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    eps: float = 0.1,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Single-label ASL (softmax, label smoothing ε); see :class:`lossatlas.losses.AsymmetricSingleLabelLoss`.

    ``l_i = −Σ_j t_j w_j log p_j`` with ``w_y = (1 − p_y)^γ+``, ``w_j = p_j^γ−`` (j ≠ y) and
    ``t = (1 − ε) e_y + ε / C``; per-sample losses [N] for ``"none"``. The weights are
    ``exp(γ− log p_j)`` and ``(1 − p_y)^γ+`` with ``1 − p_y = −expm1(log p_y)``, clamped at the smallest
    normal for γ+ < 1: with a γ below 1, where timm's ``AsymmetricLossSingleLabel`` rounds
    ``1 − (1 − p_j)`` to 0 (its weight 0, its gradient NaN), the value and gradient here match an
    exact mpmath reference (tests/differential/test_peers.py).
    """
    # the ignore mask only where some target is ignore_index, where the fused path runs (one host read)
    lazy = isinstance(logits, Tensor) and take_fused(logits, SOFTMAX_FUSE_MIN_NUMEL)
    z, y, sample_w, out_dtype = prepare_classification(logits, target, reduction, validate, None, ignore_index,
                                                       lazy_mask=lazy)
    if fused_or_traced(z, SOFTMAX_FUSE_MIN_NUMEL):
        fused = _asl_single_traced if compiling() else _asl_single_fused
        return fused(z, y.unsqueeze(1), gamma_pos, gamma_neg, eps, sample_w, reduction).to(out_dtype)
    num_classes = z.shape[1]
    logp = torch.log_softmax(z, dim=1)
    idx = y.unsqueeze(1)
    logp_y = logp.gather(1, idx)
    # Non-target weights p_j^γ− = exp(γ− log p_j); target weight (1 − p_y)^γ+.
    w = torch.exp(gamma_neg * logp) if gamma_neg != 0 else torch.ones_like(logp)
    if gamma_pos != 0:
        one_minus = -torch.expm1(logp_y)
        if gamma_pos < 1.0:
            one_minus = one_minus.clamp_min(torch.finfo(z.dtype).tiny)
        w_y = one_minus.pow(gamma_pos)
    else:
        w_y = torch.ones_like(logp_y)
    w = w.scatter(1, idx, w_y)
    # A masked class (-inf logit, p_j = 0) contributes p_j^γ− log p_j → 0 (γ− > 0); log p_j is
    # replaced by 0 there so that neither the value nor the gradient sees 0 · (−inf).
    weighted = w * torch.where(torch.isneginf(logp), 0.0, logp)
    wl_y = weighted.gather(1, idx).squeeze(1)
    losses = -((eps / num_classes) * weighted.sum(1) + (1.0 - eps) * wl_y)
    return reduce_loss(losses, reduction, sample_w, out_dtype)


#: From this many logits (on the CPU, with a gradient) single-label ASL and the softmax Dice
#: loss run as one ``torch.autograd.Function`` with a hand-derived backward; measured at
#: N = 1024 on CPU, faster than the composed ops from C = 10 up.
SOFTMAX_FUSE_MIN_NUMEL = 1


def _power(x: Tensor, gamma: float, in_place: bool = False) -> Tensor:
    """``x^γ`` (a new tensor; with ``in_place``, ``x`` overwritten), by multiplication for the
    integer exponents 0 to 4 (``pow`` with a scalar 4 is a transcendental pass on CPU, ~30× a multiply)."""
    if gamma == 0.0:
        return x.fill_(1.0) if in_place else torch.ones_like(x)
    if gamma == 1.0:
        return x if in_place else x.clone()
    if gamma in (2.0, 4.0):
        out = x.square_() if in_place else torch.square(x)
        return out.square_() if gamma == 4.0 else out
    if gamma == 3.0:
        return x.mul_(x.square()) if in_place else x.square().mul_(x)
    return x.pow_(gamma) if in_place else x.pow(gamma)


class _AsymmetricSingleLabel(torch.autograd.Function):
    """Single-label ASL from one log-softmax, hand-derived gradient computed in the forward.

    ``ℓ = −Σ_j t_j w_j log p_j`` with ``t = (1 − ε) e_y + ε/C``, ``w_j = p_j^{γ−}`` (j ≠ y) and
    ``w_y = (1 − p_y)^{γ+}`` (both differentiated, as the plain path): ``∂ℓ/∂ log p_j = −t_j
    w_j (1 + γ− log p_j)`` off the target and ``−t_y ((1 − p_y)^{γ+} − γ+ (1 − p_y)^{γ+−1} p_y log p_y)``
    at it, then the log-softmax's ``g − p Σ_j g_j``. A masked class (``log p_j = −inf``, ``w_j = 0``)
    contributes 0 to both, as the plain path's guard does. The forward builds that gradient,
    the reduction's factor included, in ``log p``'s buffer once the loss is summed (no buffer
    kept but the gradient), and the backward hands it back (:func:`handed_back`): at C = 1,000
    most of the time is fresh [N, C] allocations, and this needs three (``log p``, ``p``, ``w``)
    where the composed ops need eight.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, idx: Tensor, gamma_pos: float, gamma_neg: float, eps: float,
                row_w: Tensor | None, reduction: str) -> Tensor:
        num_classes = z.shape[1]
        logp = log_softmax_rows(z)
        p = logp.exp()
        if gamma_neg == 0.0:  # weight 1 except at a masked class (log p = −inf), which adds 0
            finite = ~torch.isneginf(logp)
            w = finite.to(z.dtype).scatter_(1, idx, 0.0)
            logp = torch.where(finite, logp, 0.0)
        else:  # a masked class has w = p^γ− = 0: log p made finite so that w·log p = 0
            w = _power(p, gamma_neg).scatter_(1, idx, 0.0)  # the target's weight is added below
            logp.clamp_min_(torch.finfo(z.dtype).min)
        lp_y = logp.gather(1, idx).squeeze_(1)
        p_y = p.gather(1, idx).squeeze_(1)
        one_minus = -torch.expm1(lp_y)
        tiny = torch.finfo(z.dtype).tiny
        if 0.0 < gamma_pos < 1.0:
            kept = one_minus >= tiny
            one_minus = one_minus.clamp_min(tiny)
        w_y = one_minus.pow(gamma_pos) if gamma_pos != 0.0 else torch.ones_like(one_minus)
        off = eps / num_classes
        t_y = off + 1.0 - eps
        w_logp = logp.mul_(w)  # log p is not needed after this
        total = w_logp.sum(1)  # Σ_{j≠y} w_j log p_j
        loss = (total * off + w_y * lp_y * t_y).neg_()
        out, k = reduce_rows(loss, row_w, reduction)
        # ∂ℓ/∂ log p_y (without the factor −t_y): (1 − p_y)^γ+ − γ+ (1 − p_y)^(γ+−1) p_y log p_y
        slope_y = w_y
        if gamma_pos != 0.0:
            term = one_minus.pow(gamma_pos - 1.0) * p_y * lp_y * gamma_pos
            slope_y = slope_y - (term * kept if 0.0 < gamma_pos < 1.0 else term)
        # ∂ℓ/∂ log p_j: −(ε/C) w_j (1 + γ− log p_j) off the target (the factor −ε/C applied last),
        # −t_y slope_y at it
        if off:
            g_lp = torch.add(w, w_logp, alpha=gamma_neg, out=w_logp) if gamma_neg != 0.0 else w
            g_lp.scatter_(1, idx, (slope_y * (t_y / off)).unsqueeze_(1))
            factor = -off
        else:
            g_lp = w_logp.zero_().scatter_(1, idx, (slope_y * -t_y).unsqueeze_(1))
            factor = 1.0
        gz = g_lp.addcmul_(p, g_lp.sum(1, keepdim=True), value=-1.0)  # log-softmax backward
        kf = k * factor
        ctx.save_for_backward(gz.mul_(kf.unsqueeze(1) if isinstance(kf, Tensor) else kf))
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        return handed_back(ctx.saved_tensors[0], grad), None, None, None, None, None, None


_asl_single_fused = cast(Callable[..., Tensor], _AsymmetricSingleLabel.apply)


def _traced_power(x: Tensor, gamma: float, log_x: Tensor) -> Tensor:
    """``x^γ`` under ``torch.compile``: products for the integer exponents 1 to 4 (inductor fuses
    them into the pass that makes ``x``), ``exp(γ log x)`` otherwise."""
    if gamma in (1.0, 2.0, 3.0, 4.0):
        out = x
        for _ in range(int(gamma) - 1):
            out = out * x
        return out
    return torch.exp(log_x * gamma)


class _TracedAsymmetricSingleLabel(torch.autograd.Function):
    """:class:`_AsymmetricSingleLabel` for ``torch.compile``: no host reads, nothing in place.

    The forward computes the loss and its whole gradient ``k (∂ℓ/∂ log p − p Σ_j ∂ℓ/∂ log p_j)``
    (the same derivative as :class:`_AsymmetricSingleLabel`; ``k`` the reduction's row factor)
    in the passes that make ``p``; the backward is one multiply. Autograd through the composed
    ops has inductor recompute ``p^γ−`` for every class in the log-softmax's backward
    (2.0–2.6× slower than eager at C = 100 to 1,000, issue 25).
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, idx: Tensor, gamma_pos: float, gamma_neg: float, eps: float,
                row_w: Tensor | None, reduction: str) -> Tensor:
        num_classes = z.shape[1]
        logp = z - torch.logsumexp(z, 1, keepdim=True)
        p = torch.exp(logp)
        hit = torch.arange(num_classes, device=z.device) == idx
        if gamma_neg == 0.0:  # weight 1 except at a masked class (log p = −inf), which adds 0
            finite = ~torch.isneginf(logp)
            w = torch.where(hit, 0.0, finite.to(z.dtype))
            logp = torch.where(finite, logp, 0.0)
        else:  # a masked class has w = p^γ− = 0: log p made finite so that w·log p = 0
            logp = logp.clamp_min(torch.finfo(z.dtype).min)
            w = torch.where(hit, 0.0, _traced_power(p, gamma_neg, logp))
        lp_y = logp.gather(1, idx).squeeze(1)
        one_minus = -torch.expm1(lp_y)
        tiny = torch.finfo(z.dtype).tiny
        kept = one_minus >= tiny
        if 0.0 < gamma_pos < 1.0:
            one_minus = one_minus.clamp_min(tiny)
        w_y = one_minus.pow(gamma_pos) if gamma_pos != 0.0 else torch.ones_like(one_minus)
        off = eps / num_classes
        t_y = off + 1.0 - eps
        w_logp = w * logp
        loss = -(w_logp.sum(1) * off + w_y * lp_y * t_y)
        out, k = traced_reduce(loss, row_w, reduction)
        slope_y = w_y  # ∂/∂ log p_y of (1 − p_y)^γ+ log p_y
        if gamma_pos != 0.0:
            term = one_minus.pow(gamma_pos - 1.0) * torch.exp(lp_y) * lp_y * gamma_pos
            slope_y = slope_y - (term * kept if 0.0 < gamma_pos < 1.0 else term)
        # −∂ℓ/∂ log p_j: (ε/C) w_j (1 + γ− log p_j) off the target, t_y slope_y at it
        g_lp = torch.where(hit, (slope_y * t_y).unsqueeze(1), (w + w_logp * gamma_neg) * off)
        gz = p * g_lp.sum(1, keepdim=True) - g_lp  # the log-softmax's backward
        ctx.save_for_backward(gz * (k.unsqueeze(1) if isinstance(k, Tensor) else k))
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (gz,) = ctx.saved_tensors
        return gz * (grad.unsqueeze(1) if grad.dim() == 1 else grad), None, None, None, None, None, None


_asl_single_traced = cast(Callable[..., Tensor], _TracedAsymmetricSingleLabel.apply)


def _clamped_dice_terms(p: Tensor, one_minus: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """``(q, s)`` where ``1 − p`` rounds below the smallest normal somewhere: ``(1 − p)^(α−1)`` by a
    power, the clamp (α < 1) with its zero gradient: ``q = (1 − p)^(α−1) (1 − p) p``,
    ``s = q − α p² (1 − p)^(α−1)``."""
    kept = one_minus >= torch.finfo(p.dtype).tiny
    base = one_minus.clamp_min(torch.finfo(p.dtype).tiny) if alpha < 1.0 else one_minus
    v = base.pow(alpha - 1.0)
    q = v * base * p
    pv = p * p * v
    return q, q - alpha * (pv * kept if alpha < 1.0 else pv)


class _DiceSums(torch.autograd.Function):
    """The softmax Dice loss's batch sums from one softmax, hand-derived backward.

    With ``q = (1 − p)^α p`` (``1 − p`` clamped at the smallest normal for α < 1) and row
    weights ``m`` (0 for ignored rows), returns ``Σ_n m_n q_nc`` (or ``Σ_n m_n q_nc²``) [C]
    and the target entries ``q_{n,y_n}`` [N]. The forward keeps ``s = p ⊙ ∂q/∂p = q (1 − α p/(1 − p))``;
    the backward is ``H − p Σ_j H_j`` with ``H = s ⊙ ∂L/∂q`` (the softmax's backward). The
    [C]-sized rest of the loss stays with autograd.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, idx: Tensor, keep: Tensor | None, alpha: float, square: bool) -> tuple[Tensor, Tensor]:
        p = softmax_rows(z)
        if alpha != 0.0:
            tiny = torch.finfo(z.dtype).tiny
            one_minus = torch.rsub(p, 1.0)
            if float(one_minus.amin()) >= tiny:
                ratio = p / one_minus
                w = one_minus.log_().mul_(alpha).exp_() if alpha != 1.0 else one_minus  # (1 − p)^α, in place
                q = w.mul_(p)
                s = torch.addcmul(q, q, ratio, value=-alpha, out=ratio)  # p ∂q/∂p = q (1 − α p/(1 − p))
            else:
                q, s = _clamped_dice_terms(p, one_minus, alpha)
        else:
            q, s = p, p
        qk = q * q if square else q
        sums = qk.sum(0) if keep is None else torch.mv(qk.t(), keep)
        ctx.square = square
        ctx.save_for_backward(p, q, s, idx, keep)
        return sums, q.gather(1, idx).squeeze(1)

    @staticmethod
    def backward(ctx: Any, g_sums: Tensor, g_qy: Tensor) -> tuple[Tensor | None, ...]:
        p, q, s, idx, keep = ctx.saved_tensors
        h = s * g_sums  # p ⊙ ∂/∂p of Σ_n m_n q_nc g_c (the row weights and the square below)
        if ctx.square:
            h.mul_(q).mul_(2.0)
        if keep is not None:
            h.mul_(keep.unsqueeze(1))
        h.scatter_add_(1, idx, (s.gather(1, idx).squeeze_(1) * g_qy).unsqueeze_(1))
        total = h.sum(1, keepdim=True)
        return h.addcmul_(p, total, value=-1.0), None, None, None, None  # softmax backward


_dice_sums = cast(Callable[..., "tuple[Tensor, Tensor]"], _DiceSums.apply)


def _traced_dice_terms(z: Tensor, alpha: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(p, q, s)`` under ``torch.compile``: ``p = softmax(z)``, ``q = (1 − p)^α p`` and ``s = p ∂q/∂p``,
    with ``1 − p`` clamped at the smallest normal for α < 1 (``s`` takes no term where the clamp binds):
    ``q = (1 − p)^(α−1) (1 − p) p`` and ``s = q − α p² (1 − p)^(α−1)``."""
    p = torch.exp(z - torch.logsumexp(z, 1, keepdim=True))
    if alpha == 0.0:
        return p, p, p
    tiny = torch.finfo(z.dtype).tiny
    one_minus = 1.0 - p
    base = one_minus.clamp_min(tiny) if alpha < 1.0 else one_minus
    v = torch.exp(torch.log(base) * (alpha - 1.0)) if alpha != 1.0 else torch.ones_like(p)  # (1 − p)^(α−1)
    q = v * base * p
    pv = p * p * v
    return p, q, q - alpha * (torch.where(one_minus >= tiny, pv, 0.0) if alpha < 1.0 else pv)


class _TracedDiceSums(torch.autograd.Function):
    """:class:`_DiceSums` for ``torch.compile``: no host reads, nothing in place on its inputs.

    ``1 − p`` clamped at the smallest normal for α < 1 (``s`` takes no term where the clamp
    binds), ``q = (1 − p)^(α−1) (1 − p) p`` and ``s = q − α p² (1 − p)^(α−1)``. ``p`` and ``s``
    are kept as buffers (:func:`~lossatlas.functional._fused.materialized`): left to itself,
    inductor's backward recomputes them from the logits (an exp, a log and an exp per element
    again; 1.5× eager at C = 1,000, issue 25).
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, idx: Tensor, keep: Tensor | None, alpha: float, square: bool) -> tuple[Tensor, Tensor]:
        p, q, s = _traced_dice_terms(z, alpha)
        qk = q * q if square else q
        sums = qk.sum(0) if keep is None else (qk * keep.unsqueeze(1)).sum(0)
        ctx.square = square
        ctx.save_for_backward(materialized(p), q if square else None, materialized(s), idx, keep)
        return sums, q.gather(1, idx).squeeze(1)

    @staticmethod
    def backward(ctx: Any, g_sums: Tensor, g_qy: Tensor) -> tuple[Tensor | None, ...]:
        p, q, s, idx, keep = ctx.saved_tensors
        g = g_sums.unsqueeze(0)  # ∂L/∂q_nc through the sums, then the target entries
        if ctx.square:
            g = g * (2.0 * q)
        if keep is not None:
            g = g * keep.unsqueeze(1)
        hit = torch.arange(p.shape[1], device=p.device) == idx
        h = s * (g + torch.where(hit, g_qy.unsqueeze(1), 0.0))
        return h - p * h.sum(1, keepdim=True), None, None, None, None  # softmax backward


_traced_dice_sums = cast(Callable[..., "tuple[Tensor, Tensor]"], _TracedDiceSums.apply)


class _TracedDiceLoss(torch.autograd.Function):
    """The softmax Dice loss with a batch denominator, reduced (``"mean"`` or ``"sum"``), for
    ``torch.compile``: the whole gradient is built in the forward once the class sums are known,
    so the backward is one multiply (:class:`_TracedDiceSums` leaves the [C]-sized rest to
    autograd, and inductor's partitioner then recomputes ``s = p ∂q/∂p`` from ``p`` in the
    backward: a log and an exp per element again, 1.8× eager at C = 1,000).

    With ``L = Σ_i k_i l_i`` (``k`` the reduction's row factors), ``l_i = C − s Σ_c 1/D_c −
    2 m_i q_{i,y_i}/D_{y_i}`` and ``D_c = Σ_n m_n q_nc^κ + n_c + s``: ``∂L/∂D_c = (s Σ_i k_i +
    2 Σ_{i: y_i = c} k_i m_i q_{i,y_i}) / D_c²`` (0 where the floor at ``tiny`` binds),
    ``∂L/∂q_{i,y_i} = −2 k_i m_i / D_{y_i}``, then through ``s`` and the softmax as
    :class:`_DiceSums`.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, y: Tensor, keep: Tensor | None, alpha: float, smooth: float, square: bool,
                reduction: str) -> Tensor:
        num_classes = z.shape[1]
        idx = y.unsqueeze(1)
        p, q, s = _traced_dice_terms(z, alpha)
        rows = keep if keep is not None else torch.ones(y.shape, dtype=z.dtype, device=z.device)
        qk = q * q if square else q
        sums = qk.sum(0) if keep is None else (qk * keep.unsqueeze(1)).sum(0)
        counts = torch.zeros(num_classes, dtype=z.dtype, device=z.device).index_add(0, y, rows)
        out, g_den, g_y = _dice_batch_terms(sums, counts, q.gather(1, idx).squeeze(1), y, keep, rows, smooth,
                                            reduction, traced_reduce)
        g = g_den.unsqueeze(0) * (2.0 * q if square else 1.0)
        if keep is not None:
            g = g * keep.unsqueeze(1)
        hit = torch.arange(num_classes, device=z.device) == idx
        h = s * (g + torch.where(hit, g_y.unsqueeze(1), 0.0))
        ctx.save_for_backward(h - p * h.sum(1, keepdim=True))  # softmax backward
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (gz,) = ctx.saved_tensors
        return gz * grad, None, None, None, None, None, None


_traced_dice_loss = cast(Callable[..., Tensor], _TracedDiceLoss.apply)


def _dice_batch_terms(sums: Tensor, counts: Tensor, q_y: Tensor, y: Tensor, keep: Tensor | None, rows: Tensor,
                      smooth: float, reduction: str,
                      reduce: Callable[[Tensor, Tensor | None, str], tuple[Tensor, Tensor | float]]
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """``(L, ∂L/∂D_c [C], ∂L/∂q_{i,y_i} [N])`` of the batch-denominator Dice loss from the class sums
    ``Σ_n m_n q_nc^κ``, the class counts, the target entries ``q_{i,y_i}`` and the row weights ``rows``
    (``keep``, or ones): see :class:`_TracedDiceLoss`; ``reduce`` is ``traced_reduce`` (no host
    reads) or ``reduce_rows``."""
    tiny = torch.finfo(sums.dtype).tiny
    den = sums + counts + smooth
    inv = den.clamp_min(tiny).reciprocal()
    inv_y = inv.index_select(0, y)
    q_y = q_y * rows
    out, k = reduce((sums.shape[0] - smooth * inv.sum()) - 2.0 * q_y * inv_y, keep, reduction)
    k_rows = k * rows if isinstance(k, Tensor) else rows * k
    a = torch.zeros_like(sums).index_add(0, y, k_rows * q_y)
    g_den = (k_rows.sum() * smooth + 2.0 * a) * inv * inv * (den >= tiny)
    return out, g_den, -2.0 * k_rows * inv_y


class _DiceLoss(torch.autograd.Function):
    """The softmax Dice loss with a batch denominator, reduced (``"mean"`` or ``"sum"``), eager on the
    CPU: :class:`_TracedDiceLoss`'s math with in-place buffers, the gradient handed back
    (:func:`~lossatlas.functional._fused.handed_back`). With ``B = (1 − p)^(α−1) p`` (a logarithm
    and an exponential pass over ``1 − p``, in its buffer) and ``s = p ∂q/∂p = B (1 − (1 + α) p)``
    (in place), ``q = B (1 − p) = (α B + s)/(1 + α)``: the class sums and target entries of ``q``
    come from ``B``'s and ``s``'s (``q`` itself is built only for ``square_denominator``), and the
    gradient ``H − p Σ_j H_j``, ``H = s ⊙ ∂L/∂q``, is written over ``s``: two fresh [N, C] buffers
    (:class:`_DiceSums` with autograd's rest: four). Where ``1 − p`` rounds below the smallest
    normal, :class:`_DiceSums`' clamped terms (:func:`_clamped_dice_terms`)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, y: Tensor, keep: Tensor | None, alpha: float, smooth: float, square: bool,
                reduction: str) -> Tensor:
        idx = y.unsqueeze(1)

        def column_sums(t: Tensor) -> Tensor:  # Σ_n m_n t_nc
            return t.sum(0) if keep is None else torch.mv(t.t(), keep)

        p = softmax_rows(z)
        b = torch.rsub(p, 1.0)
        q: Tensor | None = None
        if alpha == 0.0:  # q = p
            q, s = p, b.copy_(p)
        elif float(b.amin()) >= torch.finfo(z.dtype).tiny:
            if alpha != 1.0:
                b.log_().mul_(alpha - 1.0).exp_()  # (1 − p)^(α−1)
            else:
                b.fill_(1.0)
            b.mul_(p)
            if square:
                q = torch.addcmul(b, b, p, value=-1.0)  # (1 − p)^α p
            else:  # q = (α B + s)/(1 + α): its class sums and target entries from B's and s's, no q buffer
                b_sums, b_y = column_sums(b), b.gather(1, idx).squeeze(1)
            s = b.addcmul_(b, p, value=-(1.0 + alpha))  # (1 − p)^(α−1) p (1 − (1 + α) p)
        else:
            q, s = _clamped_dice_terms(p, b, alpha)
        if q is not None:
            sums, q_y = column_sums(q * q if square else q), q.gather(1, idx).squeeze(1)
        else:
            sums = column_sums(s).add_(b_sums, alpha=alpha).div_(1.0 + alpha)
            q_y = s.gather(1, idx).squeeze_(1).add_(b_y, alpha=alpha).div_(1.0 + alpha)
        counts = torch.bincount(y, weights=keep, minlength=z.shape[1]).to(z.dtype)
        rows = keep if keep is not None else torch.ones(y.shape, dtype=z.dtype)
        out, g_den, g_y = _dice_batch_terms(sums, counts, q_y, y, keep, rows, smooth, reduction, reduce_rows)
        g_y = g_y.mul_(s.gather(1, idx).squeeze_(1)).unsqueeze_(1)  # s_{i,y_i} ∂L/∂q_{i,y_i}
        h = s.mul_(g_den)
        if square:
            assert q is not None
            h.mul_(q).mul_(2.0)
        if keep is not None:
            h.mul_(keep.unsqueeze(1))
        h.scatter_add_(1, idx, g_y)
        ctx.save_for_backward(h.addcmul_(p, h.sum(1, keepdim=True), value=-1.0))  # softmax backward
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        return handed_back(ctx.saved_tensors[0], grad), None, None, None, None, None, None


_dice_loss = cast(Callable[..., Tensor], _DiceLoss.apply)


def _dice_batch_fused(z: Tensor, y: Tensor, sample_w: Tensor | None, alpha: float, smooth: float, square: bool,
                      reduction: str) -> Tensor:
    """The softmax Dice loss with a batch denominator on the fused path: ``l_i = C − s Σ_c 1/D_c −
    2 q_{i,y_i}/D_{y_i}`` (the per-class sum of ``1 − (2 q y + s)/D`` with one-hot ``y``)."""
    num_classes = z.shape[1]
    if compiling() and reduction != "none":
        return _traced_dice_loss(z, y, sample_w, alpha, smooth, square, reduction)
    if reduction != "none" and z.is_cpu and not compiling():
        keep = None if sample_w is None or float(sample_w.min()) == 1.0 else sample_w
        return _dice_loss(z, y, keep, alpha, smooth, square, reduction)
    if compiling():  # no host reads; bincount's length would be data-dependent
        keep = sample_w
        sums, q_y = _traced_dice_sums(z, y.unsqueeze(1), keep, alpha, square)
        ones = keep if keep is not None else torch.ones(y.shape, dtype=z.dtype, device=z.device)
        counts = torch.zeros(num_classes, dtype=z.dtype, device=z.device).index_add(0, y, ones)
    else:
        keep = None if sample_w is None or float(sample_w.min()) == 1.0 else sample_w
        sums, q_y = _dice_sums(z, y.unsqueeze(1), keep, alpha, square)
        counts = torch.bincount(y, weights=keep, minlength=num_classes).to(z.dtype)  # Σ_n y_nc (= Σ y² for 0/1)
    den = (sums + counts + smooth).clamp_min(torch.finfo(z.dtype).tiny)
    inv = den.reciprocal()
    if keep is not None:
        q_y = q_y * keep
    losses = (num_classes - smooth * inv.sum()) - 2.0 * q_y * inv.index_select(0, y)
    return reduce_loss(losses, reduction, sample_w, None)


def _choice(*options: str) -> Callable[[Any, str], str]:
    def check(value: Any, name: str) -> str:
        if not isinstance(value, str) or value not in options:
            raise ValueError(f"{name} must be one of {options}, got {value!r}")
        return value

    check.__doc__ = f"One of {options}."
    return check


@loss_function(compile_opaque=True, inputs=("logits", "target"), params={
    "alpha": Param("α ≥ 0, the self-adjusting exponent of ``q = (1 − p)^α p`` (0 = plain soft Dice)", nonnegative,
                   "ShannonAI utils/get_parser.py --dice_alpha (0.01); the class default is 0"),
    "smooth": Param("s ≥ 0 added to numerator and denominator", nonnegative, "ShannonAI utils/get_parser.py --dice_smooth (1e-4)"),
    "square_denominator": Param("square q and y in the denominator", as_bool,
                                "ShannonAI argparse default (False); its run scripts pass --dice_square"),
    "denominator": Param("``'reference'`` | ``'element'`` | ``'batch'`` (see the class docstring)",
                         _choice("reference", "element", "batch"), "'reference': ShannonAI's DiceLoss as coded (see docstring)"),
    "activation": Param("``'softmax'`` (classes compete) or ``'sigmoid'`` (multi-label targets)", _choice("softmax", "sigmoid"),
                        "softmax over classes, as the reference with integer targets"),
    "ignore_index": Param("target value whose samples are skipped (integer targets only)", COMMON["ignore_index"].check,
                          "torch (-100)"),
})
def dice(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.01,
    smooth: float = 1e-4,
    square_denominator: bool = False,
    denominator: str = "reference",
    activation: str = "softmax",
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Self-adjusting Dice loss (Li et al. 2020); see :class:`lossatlas.losses.DiceLoss`.

    Per-sample losses ``l_i = Σ_c [1 − (2 q_ic y_ic + s) / D_ic]`` with ``q = (1 − p)^α p``.
    ``denominator="element"``: ``D_ic = q_ic^k + y_ic^k + s``; ``"batch"``:
    ``D_ic = Σ_n q_nc^k + Σ_n y_nc^k + s`` (k = 2 if ``square_denominator`` else 1);
    ``"reference"`` (default) reproduces ShannonAI's code: element-wise when
    ``square_denominator`` else batch-wide.
    """
    check_logits(logits, validate=False)  # shapes; values: by prepare_classification or below
    check_tensor(target, "target")
    sample_w = None
    per_element = denominator == "element" or (denominator == "reference" and square_denominator)
    if target.dim() == 1:
        batch = activation == "softmax" and not per_element
        lazy = batch and take_fused(logits, SOFTMAX_FUSE_MIN_NUMEL)  # the ignore mask only where needed (a host read)
        z, yi, sample_w, out_dtype = prepare_classification(logits, target, reduction, validate, None, ignore_index,
                                                            lazy_mask=lazy)
        if batch and fused_or_traced(z, SOFTMAX_FUSE_MIN_NUMEL):
            return _dice_batch_fused(z, yi, sample_w, alpha, smooth, square_denominator, reduction).to(out_dtype)
        y = F.one_hot(yi, z.shape[1]).to(z.dtype)
    else:
        check_logits(logits, validate)
        check_multilabel_target(target, logits, validate)
        out_dtype = logits.dtype
        z = logits.to(compute_dtype(logits))
        y = target.to(z.dtype)
    if activation == "softmax":
        logp = torch.log_softmax(z, dim=1)
        p = logp.exp()
        one_minus_p = -torch.expm1(logp)
    else:
        p = torch.sigmoid(z)
        one_minus_p = torch.sigmoid(-z)
    if alpha != 0.0:
        if alpha < 1.0:  # d/dx x^α is infinite at 0 for α < 1
            one_minus_p = one_minus_p.clamp_min(torch.finfo(z.dtype).tiny)
        q = one_minus_p.pow(alpha) * p
    else:
        q = p
    if sample_w is not None:  # ignored rows: no prediction, no target, no loss
        keep = sample_w.unsqueeze(1)
        q = q * keep
        y = y * keep
    qk, yk = (q * q, y * y) if square_denominator else (q, y)
    if per_element:
        den = qk + yk + smooth
    else:
        den = (qk.sum(0) + yk.sum(0) + smooth).unsqueeze(0)
    ratio = (2.0 * q * y + smooth) / den.clamp_min(torch.finfo(z.dtype).tiny)
    losses = (1.0 - ratio).sum(1)
    return reduce_loss(losses, reduction, sample_w, out_dtype)
