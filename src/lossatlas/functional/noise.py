"""Noise-robust classification losses (catalogue rows B1–B7), as pure functions.

Every function takes ``logits`` [N, C] and integer ``target`` [N] (class indices) and
returns a scalar for ``reduction="mean"|"sum"`` or per-sample losses [N] for ``"none"``.
Samples whose target equals ``ignore_index`` are skipped (``"mean"`` averages over the
others). float16 / bfloat16 logits are computed in float32 and the result is returned in
the input dtype. The module twins in :mod:`lossatlas.losses.noise` carry the full
documentation (formulas, papers, where the defaults come from).

Numerical conventions follow the official code where a parity case pins them:

* GCE, NGCE and RCE clamp the softmax to ``[1e-7, 1]`` before use (HanxunH/Active-Passive-Losses),
  which zeroes the gradient of any probability below ``1e-7``;
* ``(1 − p^q)/q`` is evaluated as ``−expm1(q·log p)/q`` (exact as ``q → 0``, where it is
  ``−log p``), and ``1 − p`` as ``−expm1(log p)``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_logits, check_number, check_reduction, check_tensor
from ._common import compute_dtype, prepare_classification, reduce_loss, target_logit
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
]

#: softmax clamp of the Active-Passive-Losses reference (GCE, NGCE, RCE).
P_MIN = 1e-7
_LOG_P_MIN = math.log(P_MIN)
#: RCE's value of log 0: the reference clamps the one-hot target to [1e-4, 1].
RCE_LOG_ZERO = math.log(1e-4)


def _box_cox(logp: Tensor, q: float) -> Tensor:
    """``(1 − p^q) / q`` from ``log p``; ``q = 0`` gives ``−log p``."""
    if q == 0.0:
        return -logp
    return -torch.expm1(q * logp) / q


def _tiny(x: Tensor) -> float:
    return torch.finfo(x.dtype).tiny


def _log_p_y(z: Tensor, y: Tensor) -> Tensor:
    """``log p_y`` [N], ``p = softmax(z)``."""
    return target_logit(torch.log_softmax(z, dim=1), y)


def _prepare(logits: Tensor, target: Tensor, reduction: str, validate: bool, ignore_index: int | None):
    return prepare_classification(logits, target, reduction, validate, None, ignore_index)


# --------------------------------------------------------------------------------------
# B1: MAE and GCE
# --------------------------------------------------------------------------------------
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
    scale = check_number(scale, "scale")
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    logp_y = _log_p_y(z, y)
    return reduce_loss(-torch.expm1(logp_y) * scale, reduction, w, out_dtype)


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
    q = check_number(q, "q", low=0.0, high=1.0)
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    logp_y = _log_p_y(z, y).clamp_min(_LOG_P_MIN)
    return reduce_loss(_box_cox(logp_y, q), reduction, w, out_dtype)


# --------------------------------------------------------------------------------------
# B2: RCE and SCE
# --------------------------------------------------------------------------------------
def _rce_terms(z: Tensor, y: Tensor, log_zero: float) -> Tensor:
    p = torch.softmax(z, dim=1).clamp_min(P_MIN)
    others = p.scatter(1, y.unsqueeze(1), 0.0).sum(1)  # Σ_{j≠y} p_j (clamped)
    return -log_zero * others


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
    scale = check_number(scale, "scale")
    log_zero = check_number(log_zero, "log_zero", high=0.0)
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    return reduce_loss(_rce_terms(z, y, log_zero) * scale, reduction, w, out_dtype)


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
    alpha = check_number(alpha, "alpha", low=0.0)
    beta = check_number(beta, "beta", low=0.0)
    log_zero = check_number(log_zero, "log_zero", high=0.0)
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    ce = -_log_p_y(z, y)
    return reduce_loss(alpha * ce + beta * _rce_terms(z, y, log_zero), reduction, w, out_dtype)


# --------------------------------------------------------------------------------------
# B3: normalised losses and active-passive pairs
# --------------------------------------------------------------------------------------
def _normalised(terms: Tensor, y: Tensor) -> Tensor:
    """``terms[i, y_i] / Σ_j terms[i, j]`` (0 where the normaliser is 0)."""
    return target_logit(terms, y) / terms.sum(1).clamp_min(_tiny(terms))


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
    scale = check_number(scale, "scale")
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    terms = -torch.log_softmax(z, dim=1)
    return reduce_loss(_normalised(terms, y) * scale, reduction, w, out_dtype)


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
    modulating factor ``(1 − p_j)^γ``.
    """
    gamma = check_number(gamma, "gamma", low=0.0)
    scale = check_number(scale, "scale")
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
    q = check_number(q, "q", low=0.0, high=1.0)
    scale = check_number(scale, "scale")
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    terms = _box_cox(torch.log_softmax(z, dim=1).clamp_min(_LOG_P_MIN), q)
    return reduce_loss(_normalised(terms, y) * scale, reduction, w, out_dtype)


#: per-sample losses that ``active_passive`` accepts by name (all the Ma et al. 2020 pieces).
def _component(name: str) -> Callable[..., Tensor]:
    table: dict[str, Callable[..., Tensor]] = {
        "ce": cross_entropy, "cross_entropy": cross_entropy,
        "nce": nce, "nfl": nfl, "ngce": ngce, "gce": gce, "mae": mae, "rce": rce,
    }
    key = name.strip().lower().replace("-", "_")
    if key not in table:
        raise ValueError(f"unknown active/passive loss {name!r}; use one of {sorted(table)} or pass a callable")
    return table[key]


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

    ``active`` / ``passive`` name a function of this module (``"nce"``, ``"nfl"``,
    ``"ngce"``, ``"ce"``, ``"gce"``, ``"mae"``, ``"rce"``) or are callables
    ``f(logits, target, reduction="none", ...)`` returning per-sample losses.
    """
    alpha = check_number(alpha, "alpha", low=0.0)
    beta = check_number(beta, "beta", low=0.0)
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    parts = []
    for fn, kw in ((active, active_kwargs), (passive, passive_kwargs)):
        if isinstance(fn, str):
            f, extra = _component(fn), {"validate": False}  # inputs were validated above
        elif callable(fn):
            f, extra = fn, {}
        else:
            raise TypeError(f"active/passive must be a loss name or a callable, got {type(fn).__name__}")
        parts.append(f(z, y, reduction="none", **{**extra, **dict(kw or {})}))
    return reduce_loss(alpha * parts[0] + beta * parts[1], reduction, w, out_dtype)


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
    """NCE+RCE ``α·NCE + β·RCE``; see :class:`lossatlas.losses.NCERCELoss`."""
    return active_passive(logits, target, active="nce", passive="rce", alpha=alpha, beta=beta,
                          ignore_index=ignore_index, reduction=reduction, validate=validate)


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
    return active_passive(logits, target, active="nce", passive="mae", alpha=alpha, beta=beta,
                          ignore_index=ignore_index, reduction=reduction, validate=validate)


# --------------------------------------------------------------------------------------
# B4: LogitClip
# --------------------------------------------------------------------------------------
def _clip_params(tau: float, p: float, eps: float) -> tuple[float, float, float]:
    """LogitClip's checked ``(τ > 0, p >= 1 or math.inf, eps >= 0)``."""
    tau = check_number(tau, "tau", low=0.0, low_open=True)
    p = math.inf if isinstance(p, float) and p == math.inf else check_number(p, "p", low=1.0)
    return tau, p, check_number(eps, "eps", low=0.0)


def clip_logits(logits: Tensor, *, tau: float = 1.0, p: float = 2.0, eps: float = 1e-7) -> Tensor:
    """LogitClip's projection: rows with ``‖z‖_p + eps > 1/τ`` become ``z / (τ (‖z‖_p + eps))``.

    The paper's rule (Wei et al. 2023, Eq. 6): the clipped rows have norm ``1/τ`` (up to
    ``eps``, the reference's ``+1e-7`` on the norm). Gradients flow through the norm.
    """
    check_logits(logits, validate=False)
    tau, p, eps = _clip_params(tau, p, eps)
    z = logits.to(compute_dtype(logits))
    bound = 1.0 / tau
    norms = torch.linalg.vector_norm(z, ord=p, dim=1, keepdim=True) + eps
    clipped = z * (bound / norms)
    return torch.where(norms > bound, clipped, z)


def logitclip(
    logits: Tensor,
    target: Tensor,
    *,
    tau: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-7,
    base: Callable[..., Tensor] | None = None,
    reduction: str = "mean",
    validate: bool = True,
    **base_kwargs: Any,
) -> Tensor:
    """``base(clip_logits(z), target)``; ``base`` defaults to cross-entropy. See :class:`lossatlas.losses.LogitClipLoss`.

    ``base`` is any function ``f(logits, target, reduction=..., **base_kwargs)``.
    """
    check_reduction(reduction)
    check_logits(logits, validate)
    fn = cross_entropy if base is None else base
    if not callable(fn):
        raise TypeError(f"base must be a callable loss function, got {type(base).__name__}")
    out = fn(clip_logits(logits, tau=tau, p=p, eps=eps), target, reduction=reduction, **base_kwargs)
    return out.to(logits.dtype)


# --------------------------------------------------------------------------------------
# B5: LDR and ALDR
# --------------------------------------------------------------------------------------
def ldr_normalise(logits: Tensor, softplus: bool = True) -> Tensor:
    """LDR's logit normalisation ``f(z) / (‖f(z)‖_1 / C)``, ``f = softplus`` (or identity)."""
    f = F.softplus(logits) if softplus else logits
    mean_abs = f.abs().sum(1, keepdim=True) / f.shape[1]
    return f / mean_abs.clamp_min(_tiny(f))


def _ldr_core(zn: Tensor, y: Tensor, margin: float, lam: Tensor | float) -> Tensor:
    """``λ · log mean_j exp(d_j / λ)``, ``d_j = margin·1[j≠y] + z_j − z_y`` (per sample)."""
    d = zn - target_logit(zn, y).unsqueeze(1) + margin
    d = d.scatter(1, y.unsqueeze(1), 0.0)
    lam_col = lam.unsqueeze(1) if isinstance(lam, Tensor) else lam
    lse = torch.logsumexp(d / lam_col, dim=1) - math.log(zn.shape[1])
    return lse * lam


def _as_temperature(temperature: float | Tensor, z: Tensor, name: str = "temperature") -> Tensor | float:
    if isinstance(temperature, Tensor):
        t = temperature.to(device=z.device, dtype=z.dtype)
        if t.dim() != 1 or t.shape[0] != z.shape[0]:
            raise ValueError(f"{name} must be a float or a tensor [N] = [{z.shape[0]}] of per-sample temperatures, got shape {tuple(t.shape)}")
        if t.numel() and not bool((t > 0).all()):
            raise ValueError(f"{name} must be positive")
        return t
    return check_number(temperature, name, low=0.0, low_open=True)


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
    margin = check_number(margin, "margin")
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    lam = _as_temperature(temperature, z)
    return reduce_loss(_ldr_core(ldr_normalise(z, softplus), y, margin, lam), reduction, w, out_dtype)


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


def aldr(
    logits: Tensor,
    target: Tensor,
    prev_temperature: Tensor,
    *,
    margin: float = 0.1,
    temperature: float = 10.0,
    alpha: float = 2.0,
    softplus: bool = False,
    reduction: str = "mean",
    validate: bool = True,
    return_temperature: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Adaptive LDR (ALDR-KL) for one batch; see :class:`lossatlas.losses.ALDRLoss`.

    ``prev_temperature`` [N] holds each sample's λ from its previous visit (Λ on the
    first). The new λ [N] (detached) is computed first and used in the loss; pass
    ``return_temperature=True`` to get ``(loss, new_λ)`` to store for the next visit.
    ``softplus=False`` (default, as the official training script runs it) divides the raw
    logits by their mean absolute value; ``True`` applies softplus first (LDR's form).
    """
    margin = check_number(margin, "margin")
    temperature = check_number(temperature, "temperature", low=0.0, low_open=True)
    alpha = check_number(alpha, "alpha", low=0.0, low_open=True)
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, None)
    check_tensor(prev_temperature, "prev_temperature")
    if prev_temperature.dim() != 1 or prev_temperature.shape[0] != z.shape[0]:
        raise ValueError(f"prev_temperature must have shape [N] = [{z.shape[0]}], got {tuple(prev_temperature.shape)}")
    zn = ldr_normalise(z, softplus)
    lam = aldr_temperature(zn, prev_temperature, temperature=temperature, alpha=alpha)
    penalty = alpha * math.log(zn.shape[1]) / (2.0 * temperature) * (lam - temperature) ** 2
    out = reduce_loss(_ldr_core(zn, y, margin, lam) - penalty, reduction, w, out_dtype)
    return (out, lam) if return_temperature else out


# --------------------------------------------------------------------------------------
# B6, B7: Taylor cross-entropy and α-loss
# --------------------------------------------------------------------------------------
def _check_order(order: int) -> int:
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be an int >= 1 (the number of Taylor terms), got {order!r}")
    return order


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
    _check_order(order)
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    u = -torch.expm1(_log_p_y(z, y))  # 1 - p_y
    losses = torch.zeros_like(u)
    power = torch.ones_like(u)
    for k in range(1, order + 1):
        power = power * u
        losses = losses + power / k
    return reduce_loss(losses, reduction, w, out_dtype)


def _check_alpha(alpha: float) -> float:
    """α > 0, or ``math.inf`` (the ``1 − p_y`` limit)."""
    if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and math.isinf(alpha) and alpha > 0:
        return math.inf
    return check_number(alpha, "alpha", low=0.0, low_open=True)


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
    alpha = _check_alpha(alpha)
    c = 1.0 if alpha == math.inf else (alpha - 1.0) / alpha
    z, y, w, out_dtype = _prepare(logits, target, reduction, validate, ignore_index)
    logp_y = _log_p_y(z, y)
    return reduce_loss(_box_cox(logp_y, c), reduction, w, out_dtype)
