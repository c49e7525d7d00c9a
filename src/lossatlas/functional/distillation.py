"""Knowledge-distillation losses on logits (catalogue row K1), as pure functions.

Every function takes the student's logits [N, C], the teacher's logits [N, C] and the integer
target [N] (the order of megvii-research/mdistiller's ``kd_loss`` / ``dkd_loss`` and of
torchdistill), and returns a scalar for ``reduction="mean"|"sum"`` and per-sample losses [N]
for ``"none"``. The teacher's logits are used as given: compute them under ``torch.no_grad()``
(as mdistiller does) unless the teacher is trained too (online / mutual distillation), in which
case the gradient of the loss reaches it.

Each public loss function is the one definition of its method; the module twins in
:mod:`lossatlas.losses.distillation` are built from them and carry the full documentation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._spec import Param, loss_function, positive, unit_interval
from .._validation import (
    check_class_target,
    check_finite,
    check_logits,
    check_number,
    check_reduction,
    check_same_device,
    check_unmasked_targets,
)
from ._common import compute_dtype, reduce_loss, target_logit

__all__ = ["kd", "dkd", "dual_head_kd", "soft_kl", "decoupled_kl", "binary_kl_norm"]

DISTILLATION = ("student_logits", "teacher_logits", "target")
MDISTILLER_CFG = "megvii-research/mdistiller mdistiller/engine/cfg.py"
DHKD_CODE = "penghui-yang/DHKD"


def _check_inputs(student: Any, teacher: Any, target: Any, reduction: str, validate: bool,
                  two_classes: bool = False) -> tuple[Tensor, Tensor, Tensor, torch.dtype]:
    """Validated ``(student, teacher)`` in the compute dtype, the target and the output dtype."""
    check_reduction(reduction)
    # -inf is a masked class (DESIGN.md); the student's target class must not be one
    s = check_logits(student, False, "student_logits")
    t = check_logits(teacher, False, "teacher_logits")
    masked = check_finite(s, "student_logits", validate, allow_neg_inf=True)
    check_finite(t, "teacher_logits", validate, allow_neg_inf=True)
    if t.shape != s.shape:
        raise ValueError(f"teacher_logits must have the shape of student_logits {tuple(s.shape)}, got {tuple(t.shape)}")
    check_same_device("student_logits", s, "teacher_logits", t)
    if two_classes and s.shape[1] < 2:
        raise ValueError(f"student_logits needs at least 2 classes (a target and a non-target one), got {tuple(s.shape)}")
    y = check_class_target(target, s, validate)
    if masked:
        check_unmasked_targets(s, y, None, "student_logits")
    dt = compute_dtype(s)
    return s.to(dt), t.to(dt), y, s.dtype


def _kl_rows(log_p: Tensor, log_q: Tensor) -> Tensor:
    """``Σ_j p_j (log p_j − log q_j)`` per row; a column where ``p_j = 0`` adds 0 (no NaN from
    ``0 · (−inf − log q)``), so a class the teacher masks with ``−inf`` drops out."""
    p = log_p.exp()
    safe_log_p = torch.where(p > 0, log_p, torch.zeros_like(log_p))
    return torch.where(p > 0, p * (safe_log_p - log_q), torch.zeros_like(p)).sum(1)


def soft_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Per-sample ``KL(softmax(t/T) ‖ softmax(s/T))`` [N], without the ``T²`` factor (math only)."""
    log_q = torch.log_softmax(student_logits / temperature, dim=1)
    log_p = torch.log_softmax(teacher_logits / temperature, dim=1)
    return _kl_rows(log_p, log_q)


@loss_function(inputs=DISTILLATION, params={
    "temperature": Param("softmax temperature T > 0 of both models' soft targets", positive,
                         f"{MDISTILLER_CFG} KD.TEMPERATURE = 4"),
    "alpha": Param("weight α in [0, 1] of the distillation term; the cross-entropy gets 1 − α", unit_interval,
                   f"{MDISTILLER_CFG} KD.LOSS.KD_WEIGHT = 0.9, CE_WEIGHT = 0.1"),
})
def kd(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Hinton's distillation loss ``(1 − α) CE(s, y) + α T² KL(softmax(t/T) ‖ softmax(s/T))``;
    see :class:`lossatlas.losses.KDLoss`."""
    s, t, y, out_dtype = _check_inputs(student_logits, teacher_logits, target, reduction, validate)
    return reduce_loss(_kd(s, t, y, temperature, alpha), reduction, None, out_dtype)


def _kd(s: Tensor, t: Tensor, y: Tensor, temperature: float, alpha: float) -> Tensor:
    ce = -target_logit(torch.log_softmax(s, dim=1), y)
    return (1.0 - alpha) * ce + (alpha * temperature**2) * soft_kl(s, t, temperature)


def decoupled_kl(student_logits: Tensor, teacher_logits: Tensor, target: Tensor,
                 temperature: float) -> tuple[Tensor, Tensor]:
    """DKD's two parts per sample, without ``T²`` (math only; C ≥ 2): ``(TCKD, NCKD)``.

    TCKD is the KL between the binary distributions ``(p_y, 1 − p_y)`` of teacher and student,
    NCKD the KL between their distributions over the non-target classes (renormalised).
    ``log(1 − p_y)`` is the log-sum-exp of the non-target logits minus that of all logits, so
    no probability is subtracted from 1.
    """
    zs, zt = student_logits / temperature, teacher_logits / temperature
    idx = target.unsqueeze(1)
    is_target = torch.zeros_like(zs, dtype=torch.bool).scatter_(1, idx, True)
    neg_inf = torch.full_like(zs, float("-inf"))
    lse_s, lse_t = zs.logsumexp(1), zt.logsumexp(1)
    nt_s, nt_t = torch.where(is_target, neg_inf, zs), torch.where(is_target, neg_inf, zt)
    lse_nt_s, lse_nt_t = nt_s.logsumexp(1), nt_t.logsumexp(1)
    # binary (target, rest) log-probabilities [N, 2]
    log_b_s = torch.stack([target_logit(zs, target) - lse_s, lse_nt_s - lse_s], 1)
    log_b_t = torch.stack([target_logit(zt, target) - lse_t, lse_nt_t - lse_t], 1)
    tckd = _kl_rows(log_b_t, log_b_s)
    # non-target distributions; the target column is -inf for both (p = 0 there: it adds 0)
    log_hat_s = nt_s - lse_nt_s.unsqueeze(1)
    log_hat_t = nt_t - lse_nt_t.unsqueeze(1)
    nckd = _kl_rows(log_hat_t, torch.where(is_target, torch.zeros_like(zs), log_hat_s))
    return tckd, nckd


def _epoch(value: Any, name: str) -> float | None:
    return None if value is None else check_number(value, name, low=0.0)


@loss_function(inputs=DISTILLATION, call=("epoch",), params={
    "alpha": Param("weight α ≥ 0 of the target-class term TCKD", lambda v, n: check_number(v, n, low=0.0),
                   f"{MDISTILLER_CFG} DKD.ALPHA = 1.0"),
    "beta": Param("weight β ≥ 0 of the non-target-class term NCKD", lambda v, n: check_number(v, n, low=0.0),
                  f"{MDISTILLER_CFG} DKD.BETA = 8.0 (the paper tunes β per teacher-student pair)"),
    "temperature": Param("softmax temperature T > 0", positive, f"{MDISTILLER_CFG} DKD.T = 4.0"),
    "ce_weight": Param("weight ≥ 0 of the student's cross-entropy", lambda v, n: check_number(v, n, low=0.0),
                       f"{MDISTILLER_CFG} DKD.CE_WEIGHT = 1.0"),
    "warmup": Param("epochs over which the DKD term ramps up, ``min(epoch / warmup, 1)``; acts only when a call "
                    "passes ``epoch=``", positive, f"{MDISTILLER_CFG} DKD.WARMUP = 20"),
})
def dkd(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
    ce_weight: float = 1.0,
    warmup: float = 20.0,
    epoch: float | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Decoupled KD ``ce_weight · CE + w (α T² TCKD + β T² NCKD)``, ``w = min(epoch / warmup, 1)``
    (1 without ``epoch``); see :class:`lossatlas.losses.DKDLoss`."""
    s, t, y, out_dtype = _check_inputs(student_logits, teacher_logits, target, reduction, validate, two_classes=True)
    ramp = 1.0 if epoch is None else min(_epoch(epoch, "epoch") / warmup, 1.0)  # type: ignore[operator]
    tckd, nckd = decoupled_kl(s, t, y, temperature)
    ce = -target_logit(torch.log_softmax(s, dim=1), y)
    losses = ce_weight * ce + (ramp * temperature**2) * (alpha * tckd + beta * nckd)
    return reduce_loss(losses, reduction, None, out_dtype)


def binary_kl_norm(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Per-sample BinaryKL-Norm of dual-head KD without ``T²`` (math only):
    ``Σ_c KL(Bernoulli(½) ‖ Bernoulli(σ((s_c − t_c)/T)))``, which is ``Σ_c log cosh((s_c − t_c)/(2T))``.

    Written as ``½(softplus(x) + softplus(−x)) − log 2`` with ``x = (s − t)/T``: finite and
    smooth for any difference (the official code clamps σ to ``[1e-8, 1 − 1e-8]`` instead).
    """
    x = (student_logits - teacher_logits) / temperature
    return (0.5 * (F.softplus(x) + F.softplus(-x)) - math.log(2.0)).sum(1)


@loss_function(inputs=DISTILLATION, call=("aux_logits",), params={
    "temperature": Param("temperature T > 0 of the logit-level term", positive,
                         f"{DHKD_CODE} train_student.py --BinaryKL_T default 2"),
    "alpha": Param("weight α ≥ 0 of the logit-level term BinaryKL-Norm on the auxiliary head",
                   lambda v, n: check_number(v, n, low=0.0),
                   f"{DHKD_CODE} README CIFAR-100 command -a 1 (ImageNet: 0.1)"),
    "ce_weight": Param("weight γ ≥ 0 of the cross-entropy on the original head", lambda v, n: check_number(v, n, low=0.0),
                       f"{DHKD_CODE} train_student.py -r/--gamma default 1"),
})
def dual_head_kd(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor,
    *,
    aux_logits: Tensor | None = None,
    temperature: float = 2.0,
    alpha: float = 1.0,
    ce_weight: float = 1.0,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Dual-head KD ``γ CE(s, y) + α T² Σ_c log cosh((a_c − t_c)/(2T))`` with ``a`` the auxiliary
    head's logits (``aux_logits``; without them the student's own, the single-head combination);
    see :class:`lossatlas.losses.DualHeadKDLoss`."""
    s, t, y, out_dtype = _check_inputs(student_logits, teacher_logits, target, reduction, validate)
    check_finite(t, "teacher_logits", validate)  # no masked class: the logit-level term compares raw logits
    a = s
    if aux_logits is None:
        check_finite(s, "student_logits", validate)  # its logits are the logit-level term's too
    else:
        a = check_logits(aux_logits, False, "aux_logits")
        if a.shape != s.shape:
            raise ValueError(f"aux_logits must have the shape of student_logits {tuple(s.shape)}, got {tuple(a.shape)}")
        check_same_device("aux_logits", a, "student_logits", s)
        check_finite(a, "aux_logits", validate)
        a = a.to(s.dtype)
    ce = -target_logit(torch.log_softmax(s, dim=1), y)
    losses = ce_weight * ce + (alpha * temperature**2) * binary_kl_norm(a, t, temperature)
    return reduce_loss(losses, reduction, None, out_dtype)
