"""Noise-robust classification losses (catalogue rows B1–B7), as pure functions.

Every loss function takes ``logits`` [N, C] and integer ``target`` [N] (class indices) and
returns a scalar for ``reduction="mean"|"sum"`` or per-sample losses [N] for ``"none"``.
Samples whose target equals ``ignore_index`` are skipped (``"mean"`` averages over the
others). float16 / bfloat16 logits are computed in float32 and the result is returned in
the input dtype. Each function is the definition of its method (argument names, defaults,
checks, the sources of the defaults); the module twins in :mod:`lossatlas.losses.noise`
are built from them and carry the full documentation (formulas, papers).

Numerical conventions follow the official code where a parity case pins them:

* GCE, NGCE and RCE clamp the softmax to ``[1e-7, 1]`` before use (HanxunH/Active-Passive-Losses),
  which zeroes the gradient of any probability below ``1e-7``;
* ``(1 − p^q)/q`` is evaluated as ``−expm1(q·log p)/q`` (exact as ``q → 0``, where it is
  ``−log p``), and ``1 − p`` as ``−expm1(log p)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._paths import take_fused
from .._spec import Param, any_number, as_bool, loss_function, nonnegative, positive, safe_ratio, spec_of, unit_interval
from .._validation import check_logits, check_number, check_tensor, compiling
from ._common import check_companion_logits, compute_dtype, prepare_classification, reduce_loss, target_logit
from ._fused import (
    LOG_PIECES_MAX_C,
    as_dtype,
    col,
    folded_scale,
    fused_or_traced,
    handed_back,
    kept_probabilities,
    log_prob_target,
    next_below,
    reduce_rows,
    scale_grad,
    softmax_and_log_target,
    softmax_and_log_target_,
    softmax_log_pieces,
    softmax_row_loss,
    softmax_rows_,
    traced_log_target,
    traced_reduce,
)
from .imbalance import cross_entropy

__all__ = [
    "mae",
    "gce",
    "rce",
    "sce",
    "nce",
    "nfl",
    "ngce",
    "active_passive",
    "nce_rce",
    "nce_mae",
    "clip_logits",
    "logitclip",
    "ldr_normalise",
    "ldr",
    "aldr_temperature",
    "aldr",
    "taylor_ce",
    "alpha_loss",
    "comp_sum",
    "smooth_adversarial_comp_sum",
    "ensloss_derivatives",
    "ensloss",
]

CLASSIFICATION = ("logits", "target")
APL = "HanxunH/Active-Passive-Losses"
LDR_CODE = "Optimization-AI/ICML2023_LDR experiment.py"

#: softmax clamp of the Active-Passive-Losses reference (GCE, NGCE, RCE).
P_MIN = 1e-7
_LOG_P_MIN = math.log(P_MIN)
#: RCE's value of log 0: the reference clamps the one-hot target to [1e-4, 1].
RCE_LOG_ZERO = math.log(1e-4)
#: From this many logits (on the CPU, with a gradient) a loss of this module runs as one
#: ``torch.autograd.Function`` (one softmax, hand-derived backward): measured at N = 1024
#: on CPU, faster than the composed ops from C = 10 up; :func:`lossatlas._paths.force_path`
#: picks either path for the tests.
FUSE_MIN_NUMEL = 1


# --------------------------------------------------------------------------------------
# Hyper-parameter checks that the shared ones in lossatlas._spec do not cover
# --------------------------------------------------------------------------------------
def _nonpositive(value: Any, name: str) -> float:
    """A finite real number ≤ 0."""
    return check_number(value, name, high=0.0)


def _order(value: Any, name: str) -> int:
    """An int ≥ 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1 (the number of Taylor terms), got {value!r}")
    return value


def _positive_or_inf(value: Any, name: str) -> float:
    """A real number > 0, or ``math.inf``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isinf(value) and value > 0:
        return math.inf
    return positive(value, name)


def _norm_order(value: Any, name: str) -> float:
    """A real number ≥ 1, or ``math.inf``."""
    if isinstance(value, float) and value == math.inf:
        return math.inf
    return check_number(value, name, low=1.0)


def _temperature(value: Any, name: str) -> float | Tensor:
    """A real number > 0, or a float tensor [N] of per-sample values (checked against the batch per call)."""
    if isinstance(value, Tensor) and value.dim() == 1:
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a float tensor of per-sample temperatures, got dtype {value.dtype}")
        return value
    return positive(value, name)


def _options(value: Any, name: str) -> dict[str, Any] | None:
    """``None`` or a mapping of keyword arguments."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of keyword arguments (a dict) or None, got {type(value).__name__}")
    return dict(value)


def _loss_part(value: Any, name: str) -> str | Callable[..., Tensor]:
    """A registry id, a loss module built with ``reduction='none'``, or a function of (logits, target)."""
    if isinstance(value, str):
        return value
    if isinstance(value, nn.Module):
        reduction = getattr(value, "reduction", "none")
        if reduction != "none":
            raise ValueError(
                f"{name} must return per-sample losses: build it with reduction='none' "
                f"(got reduction={reduction!r}); the combination reduces once at the end"
            )
        return value
    if callable(value):
        return value  # type: ignore[no-any-return]  # callable() narrows to a bare Callable
    raise TypeError(f"{name} must be a registry id (e.g. 'nce'), a loss module or a function, got {type(value).__name__}")


def _base(value: Any, name: str) -> str | Callable[..., Tensor]:
    """A registry id, a loss module or a function of (logits, target)."""
    if isinstance(value, str) or callable(value):
        return value  # type: ignore[no-any-return]  # callable() narrows to a bare Callable
    raise TypeError(f"{name} must be a registry id, a loss module or a callable, got {type(value).__name__}")


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------
def _prepare(
    logits: Tensor, target: Tensor, reduction: str, validate: bool, ignore_index: int | None, traced: bool = False
) -> tuple[Tensor, Tensor, Tensor | None, torch.dtype]:
    """:func:`prepare_classification`; where a fused path can run (CPU, a gradient, not traced:
    host reads are cheap there) the ignore mask is built only when some target is ``ignore_index``.
    ``traced=True``: the caller runs a traced kernel under ``torch.compile`` when the logits need a
    gradient, which keeps ignored rows out itself (:func:`~._fused.traced_log_target`): their
    logits are then not blanked (a [N, C] buffer and a pass in each direction, ~30 % of a
    compiled call at C = 1,000)."""
    lazy = isinstance(logits, Tensor) and take_fused(logits, FUSE_MIN_NUMEL)
    blank = not (traced and compiling() and isinstance(logits, Tensor) and logits.requires_grad
                 and torch.is_grad_enabled())
    return prepare_classification(logits, target, reduction, validate, None, ignore_index, lazy_mask=lazy,
                                  blank_ignored=blank)


def _box_cox(logp: Tensor, q: float) -> Tensor:
    """``(1 − p^q) / q`` from ``log p``; ``q = 0`` gives ``−log p``."""
    if q == 0.0:
        return -logp
    return -torch.expm1(q * logp) / q


def _box_cox_slope(logp: Tensor, q: float) -> Tensor:
    """``∂/∂ log p`` of :func:`_box_cox`: ``−p^q`` (−1 for ``q = 0``)."""
    if q == 0.0:
        return torch.full_like(logp, -1.0)
    return torch.exp(q * logp).neg_()


def _box_cox_and_slope(logp: Tensor, q: float) -> tuple[Tensor, Tensor]:
    """``(_box_cox(logp, q), _box_cox_slope(logp, q))`` from one product ``q log p``, in place: five
    operator calls where the two functions make seven (the fused rows of GCE and the α-loss)."""
    if q == 0.0:
        return _box_cox(logp, q), _box_cox_slope(logp, q)
    t = logp * q
    return torch.expm1(t).mul_(-1.0 / q), t.exp_().neg_()


def _tiny(x: Tensor) -> float:
    return torch.finfo(x.dtype).tiny


def _log_p_y(z: Tensor, y: Tensor) -> Tensor:
    """``log p_y`` [N], ``p = softmax(z)`` (:func:`~lossatlas.functional._fused.log_prob_target`)."""
    return log_prob_target(z, y)


def _mae_terms(z: Tensor, y: Tensor) -> Tensor:
    """``1 − p_y`` [N], as ``−expm1(log p_y)``."""
    return -torch.expm1(_log_p_y(z, y))


def _rce_terms(z: Tensor, y: Tensor, log_zero: float) -> Tensor:
    """``−A · Σ_{j≠y} p_j`` [N] with ``p`` clamped to ``[1e-7, 1]``."""
    p = torch.softmax(z, dim=1).clamp_min(P_MIN)
    others = p.scatter(1, y.unsqueeze(1), 0.0).sum(1)
    return -log_zero * others


def _normalised(terms: Tensor, y: Tensor) -> Tensor:
    """``terms[i, y_i] / Σ_j terms[i, j]`` (0 where the normaliser is 0)."""
    return safe_ratio(target_logit(terms, y), terms.sum(1))


def _nce_terms(z: Tensor, y: Tensor) -> Tensor:
    """``log p_y / Σ_j log p_j`` [N]."""
    return _normalised(-torch.log_softmax(z, dim=1), y)


def _log_prob_sum(z: Tensor, idx: Tensor, lpy: Tensor) -> Tensor:
    """``Σ_j log p_j`` [N] from the logits and ``log p_y``: ``Σ_j z_j − C·log Z`` with
    ``log Z = z_y − log p_y`` (one row sum, no log-softmax pass; its rounding is relative to
    ``Σ_j |z_j|`` rather than to ``Σ_j |log p_j|``: a few ulps unless the logits share an
    offset far larger than their spread)."""
    num_classes = z.shape[1]
    return z.sum(1) - (z.gather(1, idx).squeeze(1) - lpy) * num_classes


class _NoiseMix(torch.autograd.Function):
    """``w_ce·(−log p_y) + w_mae·(1 − p_y) + w_nce·NCE + w_rce·Σ_{j≠y} max(p_j, 1e-7)`` from ONE
    softmax, with a hand-derived backward (the fused path of RCE, SCE, NCE, NCE+RCE, NCE+MAE
    and active-passive pairs of them).

    Every term's gradient is ``a e_y + b p + c`` per row (coefficient columns [N, 1]) except
    RCE's where its clamp is active: with ``S = Σ_j log p_j`` and ``r = log p_y / S`` (NCE),
    ``∂r/∂z = (e_y − p)/S − r (1 − C p)/S``; CE ``−(e_y − p)``; MAE ``−p_y (e_y − p)``. Where no
    probability is below 1e-7 (one reduction and one host read), RCE is ``1 − p_y`` exactly,
    i.e. MAE with weight ``w_rce``, and is computed as such; otherwise its gradient
    ``t − t_y e_y − p (Σ_j t_j − t_y)`` with ``t = p [p ≥ 1e-7]`` (the clamp's mask) is rebuilt
    in the backward from ``p`` by one threshold pass. ``S < 0`` for ``C ≥ 2`` (``−∞`` with a
    masked class, where NCE is 0); :func:`_mixed` drops NCE for ``C = 1`` (0 with a zero
    gradient, as :func:`lossatlas._spec.safe_ratio` gives on the plain path).
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, idx: Tensor, w_ce: float, w_mae: float, w_nce: float, w_rce: float,
                row_w: Tensor | None, reduction: str) -> Tensor:
        num_classes = z.shape[1]
        p, lpy, s = softmax_log_pieces(z, idx, log_sum=bool(w_nce))
        if w_rce and float(p.amin()) >= P_MIN:  # no clamp: Σ_{j≠y} p_j = 1 − p_y
            w_mae, w_rce = w_mae + w_rce, 0.0
        # per-row terms as [N, 1] columns; ∂ℓ/∂z = a e_y + b p + c (+ RCE's clamped part)
        loss: Tensor | None = None
        a: Tensor | float = -w_ce
        b_more: Tensor | None = None
        c: Tensor | None = None

        def add(term: Tensor, weight: float) -> None:
            nonlocal loss
            loss = term * weight if loss is None else loss.add_(term, alpha=weight)

        if w_ce:
            add(lpy, -w_ce)
        if w_mae:
            add(torch.expm1(lpy), -w_mae)
            a = lpy.exp().mul_(-w_mae)
            if w_ce:
                a.sub_(w_ce)
        if w_nce:
            assert s is not None
            inv = s.reciprocal()
            r = lpy * inv
            add(r, w_nce)
            a = torch.add(a, inv, alpha=w_nce) if isinstance(a, Tensor) else inv.mul(w_nce).add_(a)
            r_inv = r.mul_(inv)  # r/S (r itself is no longer needed)
            b_more = r_inv * (w_nce * num_classes)
            c = r_inv.mul_(-w_nce)
        if w_rce:  # clamped: Σ_j max(p_j, 1e-7) − max(p_y, 1e-7)
            pc = p.clamp_min(P_MIN)
            add(pc.sum(1, keepdim=True).sub_(pc.gather(1, idx)), w_rce)
        if loss is None:  # NCE alone with one class
            loss = torch.zeros_like(lpy)
        out, ctx.k = reduce_rows(loss.squeeze(1), row_w, reduction)
        if b_more is None:
            b: Tensor | float = -a
        else:
            b = b_more.sub_(a)
        ctx.coefs = (a, b, c, w_rce)
        ctx.save_for_backward(p, idx)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        p, idx = ctx.saved_tensors
        a, b, c, w_rce = ctx.coefs
        k = folded_scale(ctx.k, grad, p.shape[1])  # a scalar factor goes into the [N, 1] coefficients
        if k is not None and k != 1.0:
            a, b, w_rce = a * k, b * k, w_rce * k
            c = None if c is None else c * k
        if not isinstance(a, Tensor):
            a = torch.full((idx.shape[0], 1), a, dtype=p.dtype)
        if w_rce:  # RCE's clamped part: w (t − t_y e_y − p Σ_j t_j + p t_y), t = p where the clamp passes
            gz = F.threshold(p, next_below(P_MIN, p.dtype), 0.0)
            t_y = gz.gather(1, idx)
            b = gz.sum(1, keepdim=True).sub_(t_y).mul_(-w_rce).add_(b)
            a = torch.sub(a, t_y, alpha=w_rce)
            gz.mul_(w_rce).addcmul_(p, b)
        else:
            gz = p * b
        if c is not None:
            gz.add_(c)
        gz.scatter_add_(1, idx, a)
        return (gz if k is not None else scale_grad(gz, ctx.k, grad)), None, None, None, None, None, None, None


_noise_mix = cast(Callable[..., Tensor], _NoiseMix.apply)


class _TracedNoiseMix(torch.autograd.Function):
    """:class:`_NoiseMix` for ``torch.compile``: no host reads, nothing in place. ``log Z`` from a
    logsumexp, ``log p_y = z_y − log Z``, ``Σ_j log p_j = Σ_j z_j − C log Z``; RCE always in its
    clamped form (no test of whether the clamp is reached). The per-row coefficients, times the
    reduction's factor, are saved; the backward recomputes ``p = exp(z − log Z)`` (one pass over
    [N, C]) and builds ``a e_y + b p + c`` (+ RCE's ``w (t − t_y e_y − p (Σ_j t_j − t_y))``, ``t = p
    [p ≥ 1e-7]``), where autograd through the composed ops replays log-softmax, gathers and the
    clamp."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, idx: Tensor, w_ce: float, w_mae: float, w_nce: float, w_rce: float,
                row_w: Tensor | None, reduction: str) -> Tensor:
        num_classes = z.shape[1]
        # ignored rows' logits are not blanked (_prepare): traced_log_target makes their terms finite
        p, lpy, _, lse, keep = traced_log_target(z, idx, row_w)
        loss = torch.zeros_like(lpy)
        a: Tensor | float = -w_ce
        b_more: Tensor | float = 0.0
        c: Tensor | float = 0.0
        if w_ce:
            loss = loss - w_ce * lpy
        if w_mae:
            loss = loss - w_mae * torch.expm1(lpy)
            a = a - w_mae * torch.exp(lpy)
        if w_nce:
            inv = 1.0 / (z.sum(1, keepdim=True) - num_classes * lse)  # 1 / Σ_j log p_j
            r = lpy * inv
            loss = loss + w_nce * r
            a = a + w_nce * inv
            b_more = (w_nce * num_classes) * (r * inv)
            c = -w_nce * (r * inv)
        if w_rce:
            pc = kept_probabilities(z, lse, p, keep).clamp_min(P_MIN)
            loss = loss + w_rce * (pc.sum(1, keepdim=True) - pc.gather(1, idx))
        out, k = traced_reduce(loss.squeeze(1), row_w, reduction)
        kc = k.unsqueeze(1) if isinstance(k, Tensor) else k

        def column(x: Tensor | float) -> Tensor:
            return x * kc if isinstance(x, Tensor) else torch.full_like(lpy, x) * kc

        ctx.rce = bool(w_rce)
        ctx.saved_p = p is not None
        ctx.save_for_backward(z if p is None else p, idx, lse, column(a), column(b_more - a), column(c), column(w_rce),
                              keep)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        z_or_p, idx, lse, a, b, c, w_rce, keep = ctx.saved_tensors
        g = grad.unsqueeze(1) if grad.dim() == 1 else grad
        p = kept_probabilities(z_or_p, lse, z_or_p if ctx.saved_p else None, keep)
        gz = p * (b * g) + c * g
        if ctx.rce:  # RCE: w (t − t_y e_y − p (Σ_j t_j − t_y)), t = p where the clamp passes
            t = torch.where(p >= P_MIN, p, 0.0)
            t_y = t.gather(1, idx)
            wg = w_rce * g
            gz = gz + wg * t - p * (wg * (t.sum(1, keepdim=True) - t_y))
            a = a - w_rce * t_y
        return gz.scatter_add(1, idx, a * g), None, None, None, None, None, None, None


_traced_noise_mix = cast(Callable[..., Tensor], _TracedNoiseMix.apply)


def _prepare_fused(logits: Any, target: Any, reduction: str, validate: bool,
                   ignore_index: int | None) -> tuple[Tensor, Tensor, Tensor | None, torch.dtype] | None:
    """:func:`_prepare` for a fused path, or ``None`` where the plain one runs (nothing checked
    then: the plain path does it); the ignore mask only when some target can be ignored."""
    if not isinstance(logits, Tensor) or not take_fused(logits, FUSE_MIN_NUMEL):
        return None
    return _prepare(logits, target, reduction, validate, ignore_index)


def _mixed(logits: Tensor, target: Tensor, reduction: str, validate: bool, ignore_index: int | None,
           w_ce: float = 0.0, w_mae: float = 0.0, w_nce: float = 0.0, w_rce: float = 0.0) -> Tensor | None:
    """A combination of CE, MAE, NCE and RCE on the fused path (under ``torch.compile`` its traced
    form), or ``None`` where the plain one runs."""
    if compiling():
        z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index, traced=True)
        kernel = _traced_noise_mix
        if not fused_or_traced(z, FUSE_MIN_NUMEL):
            return None
    else:
        prepared = _prepare_fused(logits, target, reduction, validate, ignore_index)
        if prepared is None:
            return None
        z, y, w, out_dtype = prepared
        kernel = _noise_mix
    if z.shape[1] == 1:  # NCE of one class: 0 with a zero gradient (S = Σ_j log p_j = 0)
        w_nce = 0.0
    return as_dtype(kernel(z, y.unsqueeze(1), w_ce, w_mae, w_nce, w_rce, w, reduction), out_dtype)


# --------------------------------------------------------------------------------------
# B1: MAE and GCE
# --------------------------------------------------------------------------------------
@loss_function(inputs=CLASSIFICATION, params={
    "scale": Param("s, multiplies the loss", any_number, APL),
})
def mae(
    logits: Tensor,
    target: Tensor,
    *,
    scale: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Mean absolute error on the softmax, ``scale · (1 − p_y)``; see :class:`lossatlas.losses.MAELoss`."""
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index, traced=True)
    if fused_or_traced(z, FUSE_MIN_NUMEL):
        def row(lpy: Tensor, _: Tensor | None) -> tuple[Tensor, Tensor, None]:
            return torch.expm1(lpy).mul_(-scale), lpy.exp().mul_(-scale), None

        return as_dtype(softmax_row_loss(z, y, row, w, reduction), out_dtype)
    return reduce_loss(_mae_terms(z, y) * scale, reduction, w, out_dtype)


@loss_function(inputs=CLASSIFICATION, params={
    "q": Param("the exponent q ∈ [0, 1] (0 is CE on the clamped softmax, 1 is MAE)", unit_interval,
               f"Zhang & Sabuncu 2018 and {APL}"),
})
def gce(
    logits: Tensor,
    target: Tensor,
    *,
    q: float = 0.7,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Generalised cross-entropy ``(1 − p_y^q)/q`` with ``p_y ≥ 1e-7``; see :class:`lossatlas.losses.GCELoss`."""
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index, traced=True)
    if fused_or_traced(z, FUSE_MIN_NUMEL):
        def row(lpy: Tensor, _: Tensor | None) -> tuple[Tensor, Tensor, None]:
            kept = lpy >= _LOG_P_MIN  # clamp_min's gradient mask
            loss, slope = _box_cox_and_slope(lpy.clamp_min(_LOG_P_MIN), q)
            return loss, slope.mul_(kept), None

        return as_dtype(softmax_row_loss(z, y, row, w, reduction), out_dtype)
    logp_y = _log_p_y(z, y).clamp_min(_LOG_P_MIN)
    return reduce_loss(_box_cox(logp_y, q), reduction, w, out_dtype)


# --------------------------------------------------------------------------------------
# B2: RCE and SCE
# --------------------------------------------------------------------------------------
_LOG_ZERO = Param("A ≤ 0, the value used for log 0 of the one-hot label (the paper writes A = −4)", _nonpositive,
                  "reference code: one-hot clamped to [1e-4, 1], A = log(1e-4) ≈ −9.21")


@loss_function(inputs=CLASSIFICATION, params={
    "scale": Param("s, multiplies the loss", any_number, APL),
    "log_zero": _LOG_ZERO,
})
def rce(
    logits: Tensor,
    target: Tensor,
    *,
    scale: float = 1.0,
    log_zero: float = RCE_LOG_ZERO,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Reverse cross-entropy ``−A · Σ_{j≠y} p_j``, ``A = log_zero``; see :class:`lossatlas.losses.RCELoss`."""
    fused = _mixed(logits, target, reduction, validate, ignore_index, w_rce=-log_zero * scale)
    if fused is not None:
        return fused
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    return reduce_loss(_rce_terms(z, y, log_zero) * scale, reduction, w, out_dtype)


@loss_function(inputs=CLASSIFICATION, params={
    "alpha": Param("α ≥ 0, weight of CE", nonnegative, "SCE paper's CIFAR-10 setting; CIFAR-100: 6.0"),
    "beta": Param("β ≥ 0, weight of RCE", nonnegative, "SCE paper's CIFAR-10 setting; CIFAR-100: 0.1"),
    "log_zero": _LOG_ZERO,
})
def sce(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.1,
    beta: float = 1.0,
    log_zero: float = RCE_LOG_ZERO,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Symmetric cross-entropy ``α·CE + β·RCE``; see :class:`lossatlas.losses.SCELoss`."""
    fused = _mixed(logits, target, reduction, validate, ignore_index, w_ce=alpha, w_rce=-log_zero * beta)
    if fused is not None:
        return fused
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    ce = -_log_p_y(z, y)
    return reduce_loss(alpha * ce + beta * _rce_terms(z, y, log_zero), reduction, w, out_dtype)


# --------------------------------------------------------------------------------------
# B3: normalised losses and active-passive pairs
# --------------------------------------------------------------------------------------
@loss_function(inputs=CLASSIFICATION, params={
    "scale": Param("s, multiplies the loss (the APL configs scale the combined losses instead)", any_number, APL),
})
def nce(
    logits: Tensor,
    target: Tensor,
    *,
    scale: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Normalised cross-entropy ``log p_y / Σ_j log p_j``; see :class:`lossatlas.losses.NCELoss`."""
    fused = _mixed(logits, target, reduction, validate, ignore_index, w_nce=scale)
    if fused is not None:
        return fused
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    return reduce_loss(_nce_terms(z, y) * scale, reduction, w, out_dtype)


@loss_function(compile_opaque=True, inputs=CLASSIFICATION, params={
    "gamma": Param("focusing parameter γ ≥ 0 (γ = 0 is NCE)", nonnegative, f"{APL} configs"),
    "scale": Param("s, multiplies the loss", any_number, "no scaling, as the other normalised losses; the APL CIFAR-10 config uses 10 for NFL alone"),
    "detach": Param("stop the gradient through the modulating factors (1 − p)^γ, as the reference does", as_bool,
                    "reference code computes the factors from logpt.data"),
})
def nfl(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 0.5,
    scale: float = 1.0,
    detach: bool = True,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Normalised focal loss ``FL_y / Σ_j FL_j``; see :class:`lossatlas.losses.NFLLoss`.

    ``detach=True`` (the reference's convention) stops the gradient through every
    modulating factor ``(1 − p_j)^γ``: the gradient is then not the derivative of the value.
    """
    if gamma == 0.0 or detach:
        fused = (_mixed(logits, target, reduction, validate, ignore_index, w_nce=scale) if gamma == 0.0 else
                 _fused_normalised(_nfl_fused, logits, target, reduction, validate, ignore_index, gamma, scale))
        if fused is not None:
            return fused
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    logp = torch.log_softmax(z, dim=1)
    if gamma == 0.0:
        terms = -logp
    else:
        one_minus_p = -torch.expm1(logp.detach() if detach else logp)
        if not detach and gamma < 1.0:  # d/dx x^γ is infinite at 0 for γ < 1
            one_minus_p = one_minus_p.clamp_min(_tiny(z))
        terms = -one_minus_p.pow(gamma) * logp
    return reduce_loss(_normalised(terms, y) * scale, reduction, w, out_dtype)


@loss_function(compile_opaque=True, inputs=CLASSIFICATION, params={
    "q": Param("the exponent q ∈ [0, 1]", unit_interval, "GCE's q; the APL CIFAR-10 config uses 0.1"),
    "scale": Param("s, multiplies the loss", any_number, APL),
})
def ngce(
    logits: Tensor,
    target: Tensor,
    *,
    q: float = 0.7,
    scale: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Normalised GCE ``(1 − p_y^q) / Σ_j (1 − p_j^q)``, ``p ≥ 1e-7``; see :class:`lossatlas.losses.NGCELoss`."""
    if q > 0.0:
        fused = _fused_normalised(_ngce_fused, logits, target, reduction, validate, ignore_index, q, scale)
        if fused is not None:
            return fused
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    terms = _box_cox(torch.log_softmax(z, dim=1).clamp_min(_LOG_P_MIN), q)
    return reduce_loss(_normalised(terms, y) * scale, reduction, w, out_dtype)


def _normalised_grad(ctx: Any, r: Tensor, inv: Tensor, row_w: Tensor | None, reduction: str, scale: float,
                     terms: Tensor, p: Tensor, idx: Tensor, at_y: Tensor, terms_sum: Tensor) -> Tensor:
    """Reduce ``scale · r`` (``r = num/D`` per row, ``inv = 1/D``) and compute its gradient in the
    forward, in place in ``terms`` (the per-class slopes, a buffer of the caller's own; ``at_y``
    their target entries): ``k (terms (r/D) + p (t_y − r Σ terms)/D − e_y t_y/D)``, ``k`` the
    reduction's row factor times ``scale``; the backward hands it back (:func:`handed_back`)."""
    out, k = reduce_rows(r * scale if scale != 1.0 else r, row_w, reduction)
    k = k * scale if scale != 1.0 else k
    r_inv = r * inv
    if isinstance(k, Tensor) or k != 1.0:
        r_inv, inv = r_inv * k, inv * k
    at_y_inv = (at_y * inv).unsqueeze_(1)
    gz = terms.mul_(r_inv.unsqueeze(1))
    gz.addcmul_(p, at_y_inv - (r_inv * terms_sum).unsqueeze_(1))
    ctx.save_for_backward(gz.scatter_add_(1, idx, at_y_inv.neg_()))
    return out


class _NormalisedGCE(torch.autograd.Function):
    """NGCE ``r = t_y / Σ_j t_j``, ``t_j = (1 − max(p_j, 1e-7)^q)/q`` (q > 0), from two softmaxes
    (``p`` and ``softmax(q z)``, whose rescaling is ``p^q`` without a power pass), with a
    hand-derived gradient, computed in the forward (:func:`_normalised_grad`): with
    ``c_j = p_j^q [p_j ≥ 1e-7]`` (the clamp's mask),
    ``∂r/∂z = c (r/D) + p (c_y − r Σc)/D − e_y c_y/D``, ``D = Σ_j t_j`` (0 where ``D = 0``).
    Below the clamp ``p^q`` is changed in place (``Σ_j max(p_j^q, 1e-7^q)`` from a row sum with
    −1e-7^q there, then ``c``): three fresh [N, C] buffers in all (``p``, ``p^q``, no gradient's)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, idx: Tensor, q: float, scale: float, row_w: Tensor | None,
                reduction: str) -> Tensor:
        num_classes = z.shape[1]
        p, lpy = softmax_and_log_target(z, idx)
        if q == 1.0:
            pq = p
        else:  # p^q = exp(q z − q log Z): one affine and one exponential pass, log Z = z_y − log p_y
            log_z = z.gather(1, idx).sub_(lpy.unsqueeze(1))
            pq = torch.add(log_z.mul_(-q), z, alpha=q).exp_()
        floor = P_MIN**q
        if float(pq.amin()) >= floor:  # no clamp (one host read): every p^q is kept
            kept = pq.clone() if pq is p else pq  # the gradient's buffer
            kept_sum = clamped_sum = kept.sum(1)
        elif pq is p:
            kept = F.threshold(pq, next_below(floor, pq.dtype), 0.0)  # p^q where the clamp passes, else 0
            kept_sum = kept.sum(1)
            clamped_sum = pq.clamp_min(floor).sum(1)
        else:  # pq is this function's own buffer: changed in place (no fresh N×C buffer)
            # p^q below the floor set to −floor: its row sum is Σ kept − n_below·floor; then 0 there
            signed_sum = torch.threshold_(pq, next_below(floor, pq.dtype), -floor).sum(1)
            kept = pq.clamp_min_(0.0)
            kept_sum = kept.sum(1)
            clamped_sum = kept_sum * 2.0 - signed_sum  # Σ_j max(p_j^q, floor) = Σ kept + n_below·floor
        den = torch.rsub(clamped_sum, num_classes).div_(q)  # Σ_j (1 − max(p_j, 1e-7)^q)/q
        inv = torch.where(den > 0, den, math.inf).reciprocal_()  # 0 where NGCE is undefined
        r = _box_cox(lpy.clamp_min(_LOG_P_MIN), q) * inv
        kept_y = kept.gather(1, idx).squeeze_(1)
        return _normalised_grad(ctx, r, inv, row_w, reduction, scale, kept, p, idx, kept_y, kept_sum)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        return handed_back(ctx.saved_tensors[0], grad), None, None, None, None, None


class _NormalisedFocal(torch.autograd.Function):
    """NFL ``r = FL_y / Σ_j FL_j``, ``FL_j = −w_j log p_j`` with the factors ``w = (1 − p)^γ``
    detached (the reference's convention), with a hand-derived gradient computed in the forward
    (:func:`_normalised_grad`): ``∂r/∂z = w (r/D) + p (w_y − r Σw)/D − e_y w_y/D``,
    ``D = Σ_j FL_j`` (0 where ``D = 0``)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, idx: Tensor, gamma: float, scale: float, row_w: Tensor | None,
                reduction: str) -> Tensor:
        p, lpy = softmax_and_log_target(z, idx)
        w = torch.rsub(p, 1.0)
        if gamma == 0.5:
            w.sqrt_()
        elif gamma == 2.0:
            w.square_()
        elif gamma != 1.0:
            w.pow_(gamma)
        w_sum = w.sum(1)
        log_z = z.gather(1, idx).squeeze_(1).sub_(lpy)
        # Σ_j FL_j = −Σ_j w_j (z_j − log Z): one product with the logits, no log-softmax pass
        den = torch.linalg.vecdot(w, z).sub_(log_z * w_sum).neg_()
        inv = torch.where(den > 0, den, math.inf).reciprocal_()  # 0 where NFL is undefined
        w_y = w.gather(1, idx).squeeze_(1)
        r = w_y * lpy * -inv
        return _normalised_grad(ctx, r, inv, row_w, reduction, scale, w, p, idx, w_y, w_sum)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        return handed_back(ctx.saved_tensors[0], grad), None, None, None, None, None


_ngce_fused = cast(Callable[..., Tensor], _NormalisedGCE.apply)
_nfl_fused = cast(Callable[..., Tensor], _NormalisedFocal.apply)


def _fused_normalised(kernel: Callable[..., Tensor], logits: Tensor, target: Tensor, reduction: str, validate: bool,
                      ignore_index: int, exponent: float, scale: float) -> Tensor | None:
    """NGCE / NFL on the fused path, or ``None`` where the plain one runs."""
    prepared = _prepare_fused(logits, target, reduction, validate, ignore_index)
    if prepared is None:
        return None
    z, y, w, out_dtype = prepared
    return as_dtype(kernel(z, y.unsqueeze(1), exponent, scale, w, reduction), out_dtype)


def _registered_function(id: str, name: str) -> Callable[..., Tensor]:
    """The registered loss function of a classification id (``name`` is the argument that gave it)."""
    from ..registry import info  # the registry imports the loss modules, which import this one

    try:
        entry = info(id)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    if entry.kind != "classification" or entry.function is None:
        raise ValueError(f"{name}={id!r} is not a classification loss with a function; pass a loss module instead")
    return entry.function


def _per_sample(part: str | Callable[..., Tensor], options: Mapping[str, Any] | None, z: Tensor, y: Tensor,
                name: str) -> Tensor:
    """Per-sample losses [N] of an active-passive part (inputs already validated)."""
    if isinstance(part, nn.Module):
        if options:
            raise ValueError(f"{name}_kwargs apply only when {name} is a registry id or a function")
        out: Tensor = part(z, y)
        return out
    if isinstance(part, str):
        return _registered_function(part, name)(z, y, reduction="none", validate=False, **dict(options or {}))
    return part(z, y, reduction="none", **dict(options or {}))


#: Active-passive parts the fused path computes: registry id → its weight's name in :class:`_NoiseMix`.
_MIX_PARTS: dict[str, str] = {"nce": "w_nce", "rce": "w_rce", "mae": "w_mae"}


def _mix_weights(part: Any, options: Mapping[str, Any] | None, weight: float, name: str) -> dict[str, float] | None:
    """``{w_*: value}`` of an active-passive part (an id, or the module of one, without hooks) for
    :class:`_NoiseMix`; ``None`` where the part is not one of them (the plain path runs)."""
    if isinstance(part, nn.Module):
        part_id = getattr(type(part), "registry_id", None)
        if part_id not in _MIX_PARTS or options or part._forward_pre_hooks or part._forward_hooks:
            return None
        opts = {k: v for k, v in cast(Any, part).functional_kwargs().items() if k not in ("ignore_index", "reduction", "validate")}
        part = part_id  # its hyper-parameters were checked when it was built
    elif isinstance(part, str) and part in _MIX_PARTS:
        opts = dict(options or {})
    else:
        return None
    spec = spec_of(_registered_function(part, name))
    if not set(opts) <= {"scale", "log_zero"} or ("log_zero" in opts and part != "rce"):
        return None  # the plain path reports what is wrong with them
    scale = spec.check("scale", opts.get("scale", 1.0))
    if part == "rce":
        return {"w_rce": -spec.check("log_zero", opts.get("log_zero", RCE_LOG_ZERO)) * scale * weight}
    return {_MIX_PARTS[part]: scale * weight}


@loss_function(inputs=CLASSIFICATION, params={
    "active": Param("the active loss: a registry id (e.g. ``'nce'``, ``'nfl'``, ``'ngce'``), a loss module built "
                    "with ``reduction='none'``, or a function ``f(logits, target, reduction='none', **kw)``",
                    _loss_part, "Ma et al. 2020"),
    "passive": Param("the passive loss (e.g. ``'rce'``, ``'mae'``), given as ``active`` is", _loss_part,
                     "Ma et al. 2020"),
    "alpha": Param("α ≥ 0, weight of the active loss", nonnegative, "APL CIFAR-10 configs; CIFAR-100 NCE+RCE: 10"),
    "beta": Param("β ≥ 0, weight of the passive loss", nonnegative, "APL CIFAR-10 configs; CIFAR-100 NCE+RCE: 0.1"),
    "active_kwargs": Param("hyper-parameters of the active loss when it is an id or a function", _options),
    "passive_kwargs": Param("hyper-parameters of the passive loss when it is an id or a function", _options),
})
def active_passive(
    logits: Tensor,
    target: Tensor,
    *,
    active: str | Callable[..., Tensor] = "nce",
    passive: str | Callable[..., Tensor] = "rce",
    alpha: float = 1.0,
    beta: float = 1.0,
    active_kwargs: Mapping[str, Any] | None = None,
    passive_kwargs: Mapping[str, Any] | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Active-passive loss ``α·L_active + β·L_passive``; see :class:`lossatlas.losses.ActivePassiveLoss`.

    The logits and targets are validated once here; the parts receive them (in the compute
    dtype, ignored rows' targets replaced by 0) and return per-sample losses.
    """
    mix = _mix_weights(active, active_kwargs, alpha, "active")
    other = _mix_weights(passive, passive_kwargs, beta, "passive")
    if mix is not None and other is not None:
        for key, value in other.items():
            mix[key] = mix.get(key, 0.0) + value
        fused = _mixed(logits, target, reduction, validate, ignore_index, **mix)
        if fused is not None:
            return fused
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    losses = alpha * _per_sample(active, active_kwargs, z, y, "active") + beta * _per_sample(passive, passive_kwargs, z, y, "passive")
    return reduce_loss(losses, reduction, w, out_dtype)


@loss_function(inputs=CLASSIFICATION, params={
    "alpha": Param("α ≥ 0, weight of NCE", nonnegative, "APL CIFAR-10 config; CIFAR-100: 10"),
    "beta": Param("β ≥ 0, weight of RCE", nonnegative, "APL CIFAR-10 config; CIFAR-100: 0.1"),
})
def nce_rce(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """NCE+RCE ``α·NCE + β·RCE`` (RCE with ``A = log 1e-4``); see :class:`lossatlas.losses.NCERCELoss`."""
    fused = _mixed(logits, target, reduction, validate, ignore_index, w_nce=alpha, w_rce=-RCE_LOG_ZERO * beta)
    if fused is not None:
        return fused
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    return reduce_loss(alpha * _nce_terms(z, y) + beta * _rce_terms(z, y, RCE_LOG_ZERO), reduction, w, out_dtype)


@loss_function(inputs=CLASSIFICATION, params={
    "alpha": Param("α ≥ 0, weight of NCE", nonnegative, "APL CIFAR-10 config; CIFAR-100: 10"),
    "beta": Param("β ≥ 0, weight of MAE", nonnegative, "APL configs"),
})
def nce_mae(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """NCE+MAE ``α·NCE + β·(1 − p_y)`` (MAE at the APL reference's scale); see :class:`lossatlas.losses.NCEMAELoss`."""
    fused = _mixed(logits, target, reduction, validate, ignore_index, w_nce=alpha, w_mae=beta)
    if fused is not None:
        return fused
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    return reduce_loss(alpha * _nce_terms(z, y) + beta * _mae_terms(z, y), reduction, w, out_dtype)


# --------------------------------------------------------------------------------------
# B4: LogitClip
# --------------------------------------------------------------------------------------
def _clip(z: Tensor, tau: float, p: float, eps: float) -> Tensor:
    """Rows with ``‖z‖_p + eps > 1/τ`` become ``z / (τ (‖z‖_p + eps))`` (no data-dependent branch)."""
    bound = 1.0 / tau
    norms = torch.linalg.vector_norm(z, ord=p, dim=1, keepdim=True) + eps
    return torch.where(norms > bound, z * (bound / norms), z)


def clip_logits(logits: Tensor, *, tau: float = 1.0, p: float = 2.0, eps: float = 1e-7) -> Tensor:
    """LogitClip's projection: rows with ``‖z‖_p + eps > 1/τ`` become ``z / (τ (‖z‖_p + eps))``.

    The paper's rule (Wei et al. 2023, Eq. 6): the clipped rows have norm ``1/τ`` (up to
    ``eps``, the reference's ``+1e-7`` on the norm). Gradients flow through the norm.
    Returns the clipped logits in the compute dtype (float32 for float16 / bfloat16 input).
    """
    check_logits(logits, validate=False)
    z = logits.to(compute_dtype(logits))
    return _clip(z, positive(tau, "tau"), _norm_order(p, "p"), nonnegative(eps, "eps"))


def _plain_cross_entropy(base: Any, base_kwargs: Mapping[str, Any] | None, base_call: Mapping[str, Any]) -> tuple[int, bool] | None:
    """``(ignore_index, validate)`` when LogitClip's base is plain cross-entropy (no class weights,
    no label smoothing, no hooks; as an id, a module or the default), else ``None``."""
    if base_call:
        return None
    if base is None or base == "cross_entropy":
        kw = dict(base_kwargs or {})
    elif isinstance(base, nn.Module) and getattr(type(base), "registry_id", None) == "cross_entropy" and not base_kwargs:
        if base._forward_pre_hooks or base._forward_hooks or not hasattr(base, "functional_kwargs"):
            return None  # e.g. class weights attached by a hook at call time
        kw = cast(Any, base).functional_kwargs()
    else:
        return None
    if not set(kw) <= {"weight", "ignore_index", "label_smoothing", "reduction", "validate"}:
        return None
    if kw.get("weight") is not None or kw.get("label_smoothing", 0.0) != 0.0:
        return None
    ignore = kw.get("ignore_index", -100)
    return (ignore, bool(kw.get("validate", True))) if isinstance(ignore, int) and not isinstance(ignore, bool) else None


class _ClippedCE(torch.autograd.Function):
    """Cross-entropy of LogitClip's L2-clipped logits ``u = s z``, ``s = 1/(τ(‖z‖ + ε))`` where that
    is below 1 (else 1), from one softmax, with a hand-derived gradient computed in the forward:
    with ``g_u = p − e_y``, ``∂ℓ/∂z = s g_u − [clipped] s/(‖z‖ (‖z‖ + ε)) ⟨g_u, z⟩ z`` (per-row
    factors as [N, 1] columns; a zero row, clipped only when ``ε > 1/τ``, has no second term).
    ``u``, ``p`` and the gradient share one fresh [N, C] buffer (the softmax in place,
    :func:`softmax_and_log_target_`); the backward hands the gradient back (:func:`handed_back`)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, idx: Tensor, tau: float, eps: float, row_w: Tensor | None, reduction: str) -> Tensor:
        bound = 1.0 / tau
        norm = torch.linalg.vector_norm(z, dim=1, keepdim=True)
        padded = norm + eps
        clipped = padded > bound
        ratio = padded.reciprocal().mul_(bound)
        s = torch.where(clipped, ratio, 1.0)
        if z.shape[1] < LOG_PIECES_MAX_C:  # few classes: from one log-softmax (fewer operator calls)
            p, lpy_col, _ = softmax_log_pieces(z * s, idx)
            lpy = lpy_col.squeeze(1)
        else:
            p, lpy = softmax_and_log_target_(z * s, idx, lambda: z * s)
        out, k = reduce_rows(lpy.neg(), row_w, reduction)
        dot = torch.linalg.vecdot(p, z).unsqueeze_(1).sub_(z.gather(1, idx))  # ⟨p − e_y, z⟩
        # −[clipped] s ⟨g_u, z⟩ / (‖z‖ (‖z‖ + ε)), with ‖z‖ floored at the smallest normal (z = 0 there)
        coef_z = torch.where(clipped, ratio.div_(norm.clamp_min_(torch.finfo(z.dtype).tiny)), 0.0).mul_(dot).div_(padded).neg_()
        if isinstance(k, Tensor) or k != 1.0:
            kc = col(k)
            s, coef_z = s * kc, coef_z.mul_(kc)
        gz = p.mul_(s).addcmul_(z, coef_z)  # p's buffer: the softmax is not needed after this
        ctx.save_for_backward(gz.scatter_add_(1, idx, s.neg()))
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        return handed_back(ctx.saved_tensors[0], grad), None, None, None, None, None


_clipped_ce_fused = cast(Callable[..., Tensor], _ClippedCE.apply)


def _same_reduction(base: Any, reduction: str, name: str = "base") -> None:
    """A loss module given to a wrapper must reduce as the wrapper does (it returns the wrapper's output)."""
    own = getattr(base, "reduction", reduction) if isinstance(base, nn.Module) else reduction
    if own != reduction:
        raise ValueError(f"{name} has reduction={own!r} but the wrapper has reduction={reduction!r}; "
                         "build both with the same reduction")


@loss_function(inputs=CLASSIFICATION, call=("base_call",), params={
    "tau": Param("τ > 0; rows with ‖z‖_p > 1/τ are scaled to norm 1/τ (the official code's ``--temp``)", positive,
                 "parity case; the paper tunes τ over {0.1, 0.5, 1, …, 5}"),
    "p": Param("the norm's order, ≥ 1 or ``math.inf`` (the official code's ``--lp``)", _norm_order, "paper and code"),
    "eps": Param("added to the norm", nonnegative, "reference code adds 1e-7 to the norm"),
    "base": Param("the loss applied to the clipped logits: ``None`` (cross-entropy), a registry id, a loss module "
                  "built with this ``reduction``, or a function ``f(logits, target, reduction=..., **kw)``", _base,
                  "paper: cross-entropy"),
    "base_kwargs": Param("hyper-parameters of ``base`` when it is an id or a function", _options),
})
def logitclip(
    logits: Tensor,
    target: Tensor,
    *,
    tau: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-7,
    base: str | Callable[..., Tensor] | None = None,
    base_kwargs: Mapping[str, Any] | None = None,
    reduction: str = "mean",
    validate: bool = True,
    **base_call: Any,
) -> Tensor:
    """``base(clip_logits(z), target)``; ``base`` defaults to cross-entropy. See :class:`lossatlas.losses.LogitClipLoss`.

    Further keywords of the call (e.g. ``index=`` for ALDR) are passed on to ``base``.
    """
    check_logits(logits, validate)
    plain_ce = _plain_cross_entropy(base, base_kwargs, base_call) if p == 2.0 else None
    if plain_ce is not None and take_fused(logits, FUSE_MIN_NUMEL):
        ignore, check_target = plain_ce  # the cross-entropy's own checks, on the logits it would see clipped
        z, y, w, out_dtype = prepare_classification(logits, target, reduction, check_target, None, ignore, lazy_mask=True)
        return as_dtype(_clipped_ce_fused(z, y.unsqueeze(1), tau, eps, w, reduction), out_dtype)
    z = _clip(logits.to(compute_dtype(logits)), tau, p, eps)
    if isinstance(base, nn.Module):
        _same_reduction(base, reduction)
        if base_kwargs:
            raise ValueError("base_kwargs apply only when base is a registry id or a function")
        out: Tensor = base(z, target, **base_call)
    else:
        fn = cross_entropy if base is None else _registered_function(base, "base") if isinstance(base, str) else base
        out = fn(z, target, reduction=reduction, **dict(base_kwargs or {}), **base_call)
    return out.to(logits.dtype)


# --------------------------------------------------------------------------------------
# B5: LDR and ALDR
# --------------------------------------------------------------------------------------
def ldr_normalise(logits: Tensor, softplus: bool = True) -> Tensor:
    """LDR's logit normalisation ``f(z) / (‖f(z)‖_1 / C)``, ``f = softplus`` (or identity).

    An all-zero row of ``f`` (``softplus=False``; the reference divides 0 by 0) is returned as 0
    with a zero gradient."""
    f = F.softplus(logits) if softplus else logits
    mean_abs = f.abs().sum(1, keepdim=True) / f.shape[1]
    return safe_ratio(f, mean_abs)  # an all-zero row stays 0, with a zero gradient


def _ldr_core(zn: Tensor, y: Tensor, margin: float, lam: Tensor | float) -> Tensor:
    """``λ · log mean_j exp(d_j / λ)``, ``d_j = margin·1[j≠y] + z_j − z_y`` (per sample)."""
    d = zn - target_logit(zn, y).unsqueeze(1) + margin
    d = d.scatter(1, y.unsqueeze(1), 0.0)
    lam_col = lam.unsqueeze(1) if isinstance(lam, Tensor) else lam
    lse = torch.logsumexp(d / lam_col, dim=1) - math.log(zn.shape[1])
    return lse * lam


def _per_sample_temperature(temperature: float | Tensor, z: Tensor, validate: bool) -> Tensor | float:
    if not isinstance(temperature, Tensor):
        return temperature
    if temperature.shape != (z.shape[0],):
        raise ValueError(f"temperature must be a float or a tensor [N] = [{z.shape[0]}] of per-sample temperatures, "
                         f"got shape {tuple(temperature.shape)}")
    t = temperature.to(device=z.device, dtype=z.dtype)
    if validate and not compiling() and t.numel() and not bool((t > 0).all()):
        raise ValueError("temperature must be positive")
    return t


#: torch's default softplus threshold (``F.softplus``: ``z`` itself above it), which LDR's normalisation uses.
_SOFTPLUS_THRESHOLD = 20.0

_MARGIN = Param("m, added to every non-target logit gap (reference ``threshold``)", any_number, LDR_CODE)


@loss_function(compile_opaque=True, inputs=CLASSIFICATION, params={
    "margin": _MARGIN,
    "temperature": Param("λ > 0 (reference ``Lambda``), or a float tensor [N] of per-sample values", _temperature,
                         LDR_CODE),
    "softplus": Param("apply softplus before normalising (``False``: divide the raw logits by their mean |z|)", as_bool,
                      "LDRLoss_V1 always applies softplus"),
})
def ldr(
    logits: Tensor,
    target: Tensor,
    *,
    margin: float = 0.1,
    temperature: float | Tensor = 10.0,
    softplus: bool = True,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Label-distributionally robust loss; see :class:`lossatlas.losses.LDRLoss`.

    ``temperature`` is λ: a positive float or a tensor [N] of per-sample values.
    """
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    lam = _per_sample_temperature(temperature, z, validate)
    if take_fused(z, FUSE_MIN_NUMEL):
        return as_dtype(_ldr_fused(z, y.unsqueeze(1), margin, lam, w, reduction, softplus, None), out_dtype)
    return reduce_loss(_ldr_core(ldr_normalise(z, softplus), y, margin, lam), reduction, w, out_dtype)


class _LDR(torch.autograd.Function):
    """LDR (and ALDR, ``adaptive=(Λ, α)``) from one normalisation and one softmax, hand-derived gradient
    computed in the forward and handed back (:func:`handed_back`).

    With ``f = softplus(z)`` (or ``z``), ``v = C / Σ_j |f_j|`` (0 for an all-zero row) and
    ``u = v f / λ − (m/λ) e_y`` (softmax is shift-invariant: the margin added to every other
    class is subtracted at the target instead, an N-element scatter rather than a pass), the loss
    ``λ (−log q_y − log C)``, ``q = softmax(u)``, is LDR's ``λ log mean_j exp(d_j/λ)``. Its
    gradient w.r.t. ``f`` is ``h = v (q − e_y) − (v²/C)(⟨q, f⟩ − f_y) sign(f)``, then softplus's
    slope ``σ(z) = E/(1 + E)``, ``E = exp(z)``: ``h σ = h − h/(1 + E)`` (1 above torch's softplus
    threshold 20, where softplus is ``z``). Softplus is ``log1p(E)`` (two passes, faster than
    ATen's softplus kernel on CPU), ``E`` kept for the slope (no exponential pass in the
    backward); the ``where`` pass of the threshold runs only when some logit exceeds 20 (one
    host read). The softmax is written over ``u`` and the gradient over it; ``⟨q, f⟩`` is summed
    from ``f``'s own buffer (three fresh [N, C] buffers with softplus: ``E``, ``f``, ``u``).

    ALDR: ``λ`` is computed here from the previous temperature ``λ_old`` [N] (given as ``lam``):
    ``r = softmax(v f / λ_old) + 1e-5``, ``s = Σ_j r_j``, ``KL = Σ_j (r_j/s) log(C r_j/s) =
    (Σ_j r_j log r_j)/s + log(C/s)`` (one logarithm pass, in ``r``'s buffer),
    ``λ = max(Λ − Λ KL/(α log C), 1e-6 Λ)``, and the loss loses the (constant) penalty
    ``α log C (λ − Λ)²/(2Λ)``; ``λ`` is returned too (no gradient), for the caller's state.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, idx: Tensor, margin: float, lam: Tensor | float, row_w: Tensor | None,
                reduction: str, softplus: bool, adaptive: tuple[float, float] | None) -> Any:
        num_classes = z.shape[1]
        log_c = math.log(num_classes)
        big_z = None
        if not softplus:
            f = z
            total = z.abs().sum(1, keepdim=True)
        else:
            if z.numel() and float(z.amax()) > _SOFTPLUS_THRESHOLD:
                big_z = z > _SOFTPLUS_THRESHOLD
                e_z = z.clamp_max(_SOFTPLUS_THRESHOLD).exp_()
                f = torch.where(big_z, z, torch.log1p(e_z))
            else:
                e_z = z.exp()
                f = torch.log1p(e_z)
            total = f.sum(1, keepdim=True)  # Σ|f| (softplus ≥ 0)
        v = torch.where(total > 0, total, math.inf).reciprocal_().mul_(num_classes)  # C/Σ|f|, 0 for an all-zero row
        penalty = None
        if adaptive is not None:
            big, alpha = adaptive
            assert isinstance(lam, Tensor)
            r = softmax_rows_(f * (v / lam.unsqueeze(1))).add_(1e-5)
            s = r.sum(1)
            kl = r.xlogy_(r).sum(1).div_(s).sub_(s.log()).add_(log_c)  # Σ_j r_j log r_j in r's buffer
            lam_new = kl.mul_(-big / (alpha * log_c)).add_(big).clamp_min_(1e-6 * big)
            penalty = (lam_new - big).square_().mul_(alpha * log_c / (2.0 * big))
            lam = lam_new
        lam_col = lam.unsqueeze(1) if isinstance(lam, Tensor) else lam
        shift = (lam_col.reciprocal().mul_(-margin) if isinstance(lam_col, Tensor) else
                 torch.full_like(v, -margin / lam_col))

        def logits() -> Tensor:
            return (f * (v / lam_col)).scatter_add_(1, idx, shift)

        q, lqy = softmax_and_log_target_(logits(), idx, logits)
        loss = (lqy.neg_() - log_c) * lam
        if penalty is not None:
            loss.sub_(penalty)
        out, k = reduce_rows(loss, row_w, reduction)
        f_y = f.gather(1, idx)
        # ⟨q, f⟩: in f's buffer when it is this function's own (f is not needed after)
        dot = (f.mul_(q) if f is not z else f * q).sum(1, keepdim=True)
        coef_1 = dot.sub_(f_y).mul_(v * v / -num_classes)
        if isinstance(k, Tensor) or k != 1.0:
            kc = col(k)
            v, coef_1 = v * kc, coef_1.mul_(kc)
        if softplus:  # f ≥ 0: sign(f) = 1 (where f = 0, softplus's slope σ(z) is 0 too)
            h = q.mul_(v).add_(coef_1).scatter_add_(1, idx, v.neg())
            one_minus = torch.div(h, e_z.add_(1.0), out=e_z)  # h (1 − σ(z))
            if big_z is not None:
                one_minus.masked_fill_(big_z, 0.0)  # slope 1 above the threshold, as softplus_backward
            gz = h.sub_(one_minus)
        else:
            gz = q.mul_(v).addcmul_(torch.sgn(z), coef_1).scatter_add_(1, idx, v.neg())
        ctx.save_for_backward(gz)
        if adaptive is None:
            return out
        ctx.mark_non_differentiable(lam)
        return out, lam

    @staticmethod
    def backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        return handed_back(ctx.saved_tensors[0], grad), None, None, None, None, None, None, None


_ldr_fused = cast(Callable[..., Tensor], _LDR.apply)
_aldr_fused = cast(Callable[..., tuple[Tensor, Tensor]], _LDR.apply)  # (loss, the new λ [N])


def aldr_temperature(
    normalised_logits: Tensor, prev_temperature: Tensor, *, temperature: float = 10.0, alpha: float = 2.0
) -> Tensor:
    """ALDR's closed-form per-sample λ (detached), from the LDR-normalised logits.

    ``q = normalise(softmax(z'/λ_prev) + 1e-5)``, ``KL = Σ_j q_j log(C q_j)``,
    ``λ = Λ − Λ·KL / (α log C)``, floored at ``1e-6·Λ`` (only reachable for α < 1).
    """
    zn = normalised_logits.detach()
    num_classes = zn.shape[1]
    if num_classes < 2:
        raise ValueError("ALDR needs at least 2 classes (its temperature update divides by log C)")
    prev = prev_temperature.detach().to(device=zn.device, dtype=zn.dtype)
    q = torch.softmax(zn / prev.unsqueeze(1), dim=1) + 1e-5
    q = q / q.sum(1, keepdim=True)
    kl = (q * torch.log(num_classes * q)).sum(1)
    lam = temperature - temperature * kl / (alpha * math.log(num_classes))
    return lam.clamp_min(1e-6 * temperature)


def _aldr_index(index: Tensor | None, n: int, state: Tensor, validate: bool) -> Tensor:
    """Checked rows of ``state`` [M] for a batch of ``n`` samples (``None``: the state is the batch's, [N])."""
    if index is None:
        if state.shape != (n,):
            raise ValueError(f"sample_temperature without index= must have shape [N] = [{n}], got {tuple(state.shape)}")
        return torch.arange(n, device=state.device)
    check_tensor(index, "index")
    if index.dtype.is_floating_point or index.dtype == torch.bool or index.is_complex():
        raise TypeError(f"index must hold integer dataset indices (torch.long), got dtype {index.dtype}")
    if index.shape != (n,):
        raise ValueError(f"index must have shape [N] = [{n}] (one dataset index per sample), got {tuple(index.shape)}")
    index = index.to(state.device)
    if validate and not compiling() and n:
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= state.shape[0]:
            raise ValueError(f"index values must be in [0, num_samples={state.shape[0]}) (the length of sample_temperature); "
                             f"found {lo}..{hi}")
        if torch.unique(index).numel() != n:
            raise ValueError("index contains repeated dataset indices within one batch; each sample's state can be updated once per call")
    return index


@loss_function(inputs=CLASSIFICATION, call=("index", "sample_temperature"), params={
    "margin": _MARGIN,
    "temperature": Param("Λ > 0, the initial and largest λ (reference ``Lambda``)", positive, LDR_CODE),
    "alpha": Param("α > 0, strength of the KL regulariser on λ", positive, LDR_CODE),
    "softplus": Param("apply softplus before normalising (``True`` is LDR's form and the CIFAR-100 setting)", as_bool,
                      "experiment.py builds ALDRLoss_V1 without it, so its class default False runs; only the CIFAR-100 branch passes True"),
})
def aldr(
    logits: Tensor,
    target: Tensor,
    *,
    index: Tensor | None = None,
    sample_temperature: Tensor | None = None,
    margin: float = 0.1,
    temperature: float = 10.0,
    alpha: float = 2.0,
    softplus: bool = False,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Adaptive LDR (ALDR-KL) for one batch; see :class:`lossatlas.losses.ALDRLoss`.

    The state is explicit: ``sample_temperature`` [M] holds each training sample's λ from its
    previous visit (Λ before the first) and ``index`` int64 [N] says which rows are this
    batch's (without ``index``, ``sample_temperature`` is the batch's own, [N]). The new λ
    (detached) is written into ``sample_temperature[index]`` *in place*, then used in the
    loss, as the reference does. Without ``sample_temperature`` every sample is on its first
    visit (λ_old = Λ) and nothing is stored. ``softplus=False`` (default, as the official
    training script runs it) divides the raw logits by their mean absolute value.
    """
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, None)
    n = z.shape[0]
    if sample_temperature is None:
        if index is not None:
            raise ValueError("index= needs sample_temperature= (the per-sample state it indexes)")
        rows, prev = None, torch.full((n,), temperature, device=z.device, dtype=z.dtype)
    else:
        check_tensor(sample_temperature, "sample_temperature")
        if sample_temperature.dim() != 1 or not sample_temperature.is_floating_point():
            raise ValueError(f"sample_temperature must be a float tensor [num_samples], got {sample_temperature.dtype} "
                             f"of shape {tuple(sample_temperature.shape)}")
        rows = _aldr_index(index, n, sample_temperature, validate)
        prev = sample_temperature[rows]
    if take_fused(z, FUSE_MIN_NUMEL) and z.shape[1] >= 2:
        out, lam = _aldr_fused(z, y.unsqueeze(1), margin, prev, w, reduction, softplus, (temperature, alpha))
        out = out.to(out_dtype)
    else:
        zn = ldr_normalise(z, softplus)
        lam = aldr_temperature(zn, prev, temperature=temperature, alpha=alpha)
        penalty = alpha * math.log(zn.shape[1]) / (2.0 * temperature) * (lam - temperature) ** 2
        out = reduce_loss(_ldr_core(zn, y, margin, lam) - penalty, reduction, w, out_dtype)
    if sample_temperature is not None:
        with torch.no_grad():
            sample_temperature[rows] = lam.to(device=sample_temperature.device, dtype=sample_temperature.dtype)
    return out


# --------------------------------------------------------------------------------------
# B6, B7: Taylor cross-entropy and α-loss
# --------------------------------------------------------------------------------------
@loss_function(inputs=CLASSIFICATION, params={
    "order": Param("t ≥ 1, the number of Taylor terms (1 is MAE; t → ∞ is CE)", _order,
                   "lossatlas choice; the paper tunes t per dataset"),
})
def taylor_ce(
    logits: Tensor,
    target: Tensor,
    *,
    order: int = 2,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Taylor cross-entropy ``Σ_{k=1}^{t} (1 − p_y)^k / k``; see :class:`lossatlas.losses.TaylorCELoss`."""
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index, traced=True)
    if fused_or_traced(z, FUSE_MIN_NUMEL):
        def row(lpy: Tensor, _: Tensor | None) -> tuple[Tensor, Tensor, None]:
            # Σ_{k=1}^{t} u^k / k and its derivative Σ_{k<t} u^k by Horner's rule (two operator calls a
            # term, in place: at C = 10 each call costs about what the softmax's pass does), u = 1 − p_y
            u = torch.expm1(lpy).neg_()
            loss = u * (1.0 / order)
            for k in range(order - 1, 0, -1):
                loss.add_(1.0 / k).mul_(u)
            p_y = lpy.exp()
            if order == 1:
                return loss, p_y.neg_(), None
            slope = u + 1.0
            for _k in range(order - 2):
                slope.mul_(u).add_(1.0)
            return loss, slope.mul_(p_y).neg_(), None  # ∂u/∂ log p_y = −p_y

        return as_dtype(softmax_row_loss(z, y, row, w, reduction), out_dtype)
    u = _mae_terms(z, y)  # 1 - p_y
    losses = torch.zeros_like(u)
    power = torch.ones_like(u)
    for k in range(1, order + 1):
        power = power * u
        losses = losses + power / k
    return reduce_loss(losses, reduction, w, out_dtype)


@loss_function(inputs=CLASSIFICATION, params={
    "alpha": Param("α > 0 or ``math.inf`` (1 is CE, ∞ is 1 − p_y, 1/2 is 1/p_y − 1)", _positive_or_inf,
                   "lossatlas choice; the paper recommends α > 1 for label noise"),
})
def alpha_loss(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 2.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """α-loss ``α/(α−1) · (1 − p_y^{(α−1)/α})``; α = 1 is CE, α = ∞ is ``1 − p_y``. See :class:`lossatlas.losses.AlphaLoss`."""
    c = 1.0 if alpha == math.inf else (alpha - 1.0) / alpha
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index, traced=True)
    if fused_or_traced(z, FUSE_MIN_NUMEL):
        def row(lpy: Tensor, _: Tensor | None) -> tuple[Tensor, Tensor, None]:
            return (*_box_cox_and_slope(lpy, c), None)

        return as_dtype(softmax_row_loss(z, y, row, w, reduction), out_dtype)
    return reduce_loss(_box_cox(_log_p_y(z, y), c), reduction, w, out_dtype)


@loss_function(inputs=CLASSIFICATION, params={
    "tau": Param("τ ≥ 0: 0 sum-exponential, 1 cross-entropy, (1, 2) generalised CE with q = τ − 1, 2 MAE (1 − p_y)",
                 nonnegative, "lossatlas: τ = 1 (cross-entropy); Mao, Mohri & Zhong (2023) define the family for "
                              "every τ ≥ 0 and set no default"),
})
def comp_sum(
    logits: Tensor,
    target: Tensor,
    *,
    tau: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Comp-sum loss ``Φ_τ(Σ_{j≠y} e^{z_j − z_y})`` = ``(1 − p_y^{τ−1})/(τ − 1)``; see :class:`lossatlas.losses.CompSumLoss`."""
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    # 1 + Σ_{j≠y} e^{z_j − z_y} = 1 / p_y, so Φ_τ(u) = ((1 + u)^{1−τ} − 1)/(1 − τ) is the Box-Cox
    # transform of log p_y with exponent τ − 1 (τ = 1: −log p_y)
    return reduce_loss(_box_cox(_log_p_y(z, y), tau - 1.0), reduction, w, out_dtype)


def _smooth_vector(value: Any, name: str) -> str:
    """``'margins'`` or ``'scores'``."""
    if value not in ("margins", "scores"):
        raise ValueError(f"{name} must be 'margins' (Δ_h, the paper's definition) or 'scores' (h̄, its algorithm's "
                         f"bound), got {value!r}")
    return str(value)


def _smooth_term(z: Tensor, adv: Tensor, y: Tensor, vector: str) -> Tensor:
    """``‖Δ(adv) − Δ(z)‖₂`` per row (``Δ(z)_j = z_j − z_y``) or, for ``'scores'``, ``‖adv − z‖₂``;
    a column masked (``-inf``) in either tensor adds 0."""
    live = torch.isfinite(z) & torch.isfinite(adv)
    diff = torch.where(live, adv, torch.zeros_like(adv)) - torch.where(live, z, torch.zeros_like(z))
    if vector == "margins":
        diff = torch.where(live, diff - target_logit(diff, y).unsqueeze(1), torch.zeros_like(diff))
    norm: Tensor = torch.linalg.vector_norm(diff, dim=1)
    return norm


@loss_function(inputs=("logits", "target", "adv_logits"), params={
    "tau": spec_of(comp_sum).params["tau"],
    "nu": Param("ν ≥ 0, the weight of the smooth term (0 is comp_sum)", nonnegative,
                "lossatlas choice; Mao, Mohri & Zhong (2023) tune ν with their regulariser"),
    "vector": Param("``'margins'``: ‖Δ_h(x′, y) − Δ_h(x, y)‖₂ with Δ_h(x, y)_j = h(x, j) − h(x, y) (the paper's "
                    "definition); ``'scores'``: ‖h̄(x′) − h̄(x)‖₂ over the raw logits (the bound its algorithm uses)",
                    _smooth_vector, "the paper's definition of the smooth adversarial comp-sum loss"),
})
def smooth_adversarial_comp_sum(
    logits: Tensor,
    target: Tensor,
    adv_logits: Tensor,
    *,
    tau: float = 1.0,
    nu: float = 1.0,
    vector: str = "margins",
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Smooth adversarial comp-sum loss ``Φ_τ(Σ_{j≠y} e^{z_j − z_y}) + ν ‖Δ(z′) − Δ(z)‖₂``, ``z′`` the
    logits of the adversarial input; see :class:`lossatlas.losses.SmoothAdversarialCompSumLoss`."""
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    adv = check_companion_logits(adv_logits, logits, "adv_logits", validate)
    losses = _box_cox(_log_p_y(z, y), tau - 1.0) + nu * _smooth_term(z, adv, y, vector)
    return reduce_loss(losses, reduction, w, out_dtype)


# --------------------------------------------------------------------------------------
# B9: EnsLoss, random calibrated loss-derivatives per batch (Dai 2025)
# --------------------------------------------------------------------------------------
ENSLOSS_CODE = "statmlben/ensLoss losses.py::ensLoss"
#: the official code subtracts this from every derivative, so that each one is strictly negative
ENSLOSS_SHIFT = 1e-6


def _inverse_box_cox(eps: Tensor, lam: float) -> Tensor:
    """``exp(ε)`` for λ = 0, else ``max(1 + λε, 0)^{1/λ}``: the inverse Box-Cox transform."""
    if lam == 0.0:
        return eps.exp()
    return torch.clamp_min(1.0 + lam * eps, 0.0).pow(1.0 / lam)


def _ensloss_draws(z: Tensor, lam: float, generator: torch.Generator | None) -> Tensor:
    """The sorted draws ``max(−BoxCox⁻¹_λ(ε), −1)``, ε ~ N(0, 1), given to ``z`` [N] in its order."""
    # float32 draws on the CPU, as the official torch.randn((N,)): the same seed gives the same derivatives
    eps = torch.randn(z.shape, generator=generator, dtype=torch.float32,
                      device=generator.device if generator is not None else "cpu").to(device=z.device, dtype=z.dtype)
    draws = torch.clamp_min(-_inverse_box_cox(eps, lam), -1.0).sort().values
    return torch.empty_like(z).scatter_(0, z.argsort(stable=True), draws)


def ensloss_derivatives(margins: Tensor, *, lam: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
    """One draw of EnsLoss's calibrated loss-derivatives at ``margins`` [N] (math only; no gradient).

    ``N`` standard normal draws (from ``generator``, or torch's global RNG) go through
    ``−BoxCox⁻¹_λ``, are sorted, floored at −1 and given to the margins in their order (the
    smallest margin the most negative derivative), so the derivative is non-decreasing in the
    margin (a convex loss); margins above 1 divide theirs by the margin (the official
    "superlinear tail") and every one is lowered by 1e-6, so ``φ'(0) < 0`` (calibration).
    """
    z = margins.detach()
    g = _ensloss_draws(z, lam, generator)
    return torch.where(z > 1.0, g / torch.clamp_min(z, 1.0), g) - ENSLOSS_SHIFT


def _ensloss_lambda(value: Any, name: str) -> float:
    """A finite real number: the Box-Cox λ of the derivative distribution."""
    return check_number(value, name)


@loss_function(inputs=("scores", "target"), call=("generator",), params={
    "lam": Param("λ of the inverse Box-Cox transform that maps N(0, 1) draws to derivative magnitudes (0: exp, a "
                 "log-normal)", _ensloss_lambda, f"{ENSLOSS_CODE} (self.lam = 0.0; main_image.py keeps it: "
                                                   "ensLoss_per_epochs = -1)"),
})
def ensloss(
    scores: Tensor,
    target: Tensor,
    *,
    lam: float = 0.0,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """EnsLoss: a loss whose derivative in the margin ``z = ±score`` is a fresh random calibrated
    loss-derivative at each call; see :class:`lossatlas.losses.EnsLoss`."""
    from .auc import _binary_inputs

    s, y, out_dtype = _binary_inputs(scores, target, validate)
    z = (2.0 * y - 1.0) * s
    g = _ensloss_draws(z.detach(), lam, generator)
    # g ψ(z) − 1e-6 z, ψ(z) = z up to 1 and 1 + log z above: its derivative in z is ensloss_derivatives(z)
    psi = torch.where(z > 1.0, 1.0 + torch.log(torch.clamp_min(z, 1.0)), z)
    return reduce_loss(g * psi - ENSLOSS_SHIFT * z, reduction, None, out_dtype)
