"""Knowledge-distillation losses on logits (catalogue row K1): Hinton's KD and decoupled KD.

Inputs of the ``distillation`` kind: ``(student_logits[N, C], teacher_logits[N, C],
target int64[N])``, the order of megvii-research/mdistiller's ``kd_loss`` / ``dkd_loss``.
"""

from __future__ import annotations

from .. import functional as LF
from ..registry import Paper, register
from ._base import FunctionalLoss

__all__ = ["KDLoss", "DKDLoss"]

KD_PAPER = Paper("G. Hinton, O. Vinyals, J. Dean", "Distilling the Knowledge in a Neural Network",
                 "NIPS Deep Learning Workshop", 2015, "1503.02531")
DKD_PAPER = Paper("B. Zhao, Q. Cui, R. Song, Y. Qiu, J. Liang", "Decoupled Knowledge Distillation", "CVPR", 2022,
                  "2203.08679")


@register(
    "kd",
    aliases=("hinton_kd", "knowledge_distillation", "kd_loss"),
    family="distillation",
    kind="distillation",
    catalogue="K1",
    formula="l_i = (1 - α) CE(s_i, y_i) + α T² KL(softmax(t_i/T) || softmax(s_i/T))",
    paper=KD_PAPER,
    code="megvii-research/mdistiller mdistiller/distillers/KD.py (kd_loss; weights in engine/cfg.py)",
)
class KDLoss(FunctionalLoss, function=LF.kd):
    r"""Knowledge distillation (Hinton, Vinyals & Dean, 2015, "Distilling the Knowledge in a
    Neural Network").

    .. math:: \ell_i = (1-\alpha)\,\mathrm{CE}(s_i, y_i)
              + \alpha\,T^2\,\mathrm{KL}\big(\mathrm{softmax}(t_i/T)\,\|\,\mathrm{softmax}(s_i/T)\big)

    ``s`` are the student's logits, ``t`` the teacher's. The soft-target term is multiplied by
    ``T²`` (the paper: its gradients scale as ``1/T²``, so the factor keeps the two terms'
    relative weight when ``T`` changes); ``α = 1`` is the pure soft-target loss (mdistiller's
    ``kd_loss``), ``α = 0`` plain cross-entropy. As ``T → ∞`` with zero-mean logits the
    soft-target term tends to ``mean_j (s_j − t_j)² / 2`` per sample, the logit-matching limit
    the paper derives. The paper fixes no ``T`` or weight; the defaults ``T = 4``, ``α = 0.9``
    are mdistiller's CIFAR-100 configuration (``KD.TEMPERATURE``, ``KD.LOSS.KD_WEIGHT`` 0.9 and
    ``CE_WEIGHT`` 0.1), whose weights sum to 1 and so are this α. The teacher's logits should
    come from ``torch.no_grad()`` unless the teacher is trained too.

    {args}

    Shapes: ``student_logits``, ``teacher_logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("kd", temperature=4.0, alpha=0.9)
        >>> round(crit(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1])).item(), 4)  # 0.1 log 3
        0.1099
    """


@register(
    "dkd",
    aliases=("decoupled_kd", "decoupled_knowledge_distillation"),
    family="distillation",
    kind="distillation",
    catalogue="K1",
    formula="l_i = ce_weight CE(s_i, y_i) + w (α T² KL(b^t || b^s) + β T² KL(p̂^t || p̂^s)), "
            "b = (p_y, 1 - p_y), p̂ = non-target softmax, w = min(epoch/warmup, 1)",
    paper=DKD_PAPER,
    code="megvii-research/mdistiller mdistiller/distillers/DKD.py (dkd_loss; defaults in engine/cfg.py)",
)
class DKDLoss(FunctionalLoss, function=LF.dkd):
    r"""Decoupled knowledge distillation (Zhao, Cui, Song, Qiu & Liang, CVPR 2022).

    .. math:: \ell_i = c\,\mathrm{CE}(s_i, y_i) + w\,T^2\big(\alpha\,\mathrm{KL}(b^t\|b^s)
              + \beta\,\mathrm{KL}(\hat p^t\|\hat p^s)\big),\qquad w = \min(\text{epoch}/\text{warmup}, 1)

    with ``p = softmax(z/T)`` of each model, ``b = (p_y, 1 − p_y)`` its binary target/non-target
    distribution (TCKD) and ``p̂_j = p_j / (1 − p_y)`` over the non-target classes ``j ≠ y``
    (NCKD). The paper's identity ``KL(p^t‖p^s) = TCKD + (1 − p^t_y) NCKD`` shows that Hinton's KD
    couples NCKD to the teacher's confidence; DKD weights the two parts freely. ``α = β = 1``
    with ``c = 0`` is therefore not KD; ``α = 1, β = 1 − p^t_y`` would be. Defaults are
    mdistiller's (``DKD.ALPHA`` 1, ``BETA`` 8, ``T`` 4, ``CE_WEIGHT`` 1, ``WARMUP`` 20; the paper
    tunes β per teacher-student pair, e.g. 8 for ResNet32×4 → ResNet8×4). Pass ``epoch=`` to a
    call for mdistiller's linear warm-up of the distillation term; without it ``w = 1``.
    Computed from log-sum-exps (``log(1 − p_y)`` is the non-target log-sum-exp minus the full
    one), where mdistiller takes the log of summed probabilities and masks the target with
    ``−1000``: the same values where both are finite.

    {args}

    Shapes: ``student_logits``, ``teacher_logits`` [N, C] (C ≥ 2); ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("dkd", beta=8.0)
        >>> s, t = torch.randn(4, 5), torch.randn(4, 5)
        >>> bool(crit(s, t, torch.tensor([0, 1, 2, 3]), epoch=10) <= crit(s, t, torch.tensor([0, 1, 2, 3])))
        True
    """
