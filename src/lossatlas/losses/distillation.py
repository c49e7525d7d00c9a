"""Knowledge-distillation losses on logits (catalogue row K1): Hinton's KD and decoupled KD.

Inputs of the ``distillation`` kind: ``(student_logits[N, C], teacher_logits[N, C],
target int64[N])``, the order of megvii-research/mdistiller's ``kd_loss`` / ``dkd_loss``.
"""

from __future__ import annotations

from .. import functional as LF
from ..registry import Paper, register
from ._base import FunctionalLoss

__all__ = ["KDLoss", "DKDLoss", "DualHeadKDLoss"]

KD_PAPER = Paper("G. Hinton, O. Vinyals, J. Dean", "Distilling the Knowledge in a Neural Network",
                 "NIPS Deep Learning Workshop", 2015, "1503.02531")
DHKD_PAPER = Paper("P. Yang, C.-C. Zong, S.-J. Huang, L. Feng, B. An",
                   "Dual-Head Knowledge Distillation: Enhancing Logits Utilization with an Auxiliary Head", "arXiv", 2024,
                   "2411.08937")
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


@register(
    "dual_head_kd",
    aliases=("dhkd", "dual_head_knowledge_distillation", "binary_kl_norm"),
    family="distillation",
    kind="distillation",
    catalogue="K1",
    formula="l_i = γ CE(s_i, y_i) + α T² Σ_c KL(Bern(½) || Bern(σ((a_ic - t_ic)/T))) "
            "= γ CE(s_i, y_i) + α T² Σ_c log cosh((a_ic - t_ic)/(2T)),  a = the auxiliary head's logits",
    paper=DHKD_PAPER,
    code="penghui-yang/DHKD distiller_zoo/BinaryKLNorm.py, helper/loops.py (γ·CE(head 0) + α·BinaryKLNorm(head 1))",
)
class DualHeadKDLoss(FunctionalLoss, function=LF.dual_head_kd):
    r"""Dual-head knowledge distillation, DHKD (Yang, Zong, Huang, Feng & An, 2024, "Dual-Head
    Knowledge Distillation: Enhancing Logits Utilization with an Auxiliary Head").

    .. math:: \ell_i = \gamma\,\mathrm{CE}(s_i, y_i) + \alpha\,T^2\sum_c
              \mathrm{KL}\big(\mathrm{Bern}(\tfrac12)\,\|\,\mathrm{Bern}(\sigma((a_{ic}-t_{ic})/T))\big)
              = \gamma\,\mathrm{CE}(s_i, y_i) + \alpha\,T^2\sum_c \log\cosh\frac{a_{ic}-t_{ic}}{2T}

    The student has two linear heads on one backbone: the original head's logits ``s`` are
    trained by cross-entropy, the auxiliary head's logits ``a`` (``aux_logits=``) by the
    logit-level BinaryKL-Norm against the teacher's logits ``t``, which, unlike a softmax KL, is
    not invariant to a shift of the logits (the information the paper says probabilities hide).
    The paper shows that both losses on one head make its classifier collapse, while on the
    backbone they agree; splitting the heads keeps both gradients in the backbone. A call
    without ``aux_logits`` puts both terms on the one head (the paper's failing combination,
    kept as the ablation). The per-class term is ``log cosh(Δ/2T)``: 0 at ``a = t``, ``Δ²/(8T²)``
    for small differences, ``|Δ|/(2T) − log 2`` for large ones. As in the official code
    (``helper/loops.py``) the probability-level loss is the cross-entropy alone, and the
    weights are ``-r`` (γ, default 1) and ``-a`` (α: 1 in the README's CIFAR-100 command, 0.1
    for ImageNet); ``T = 2`` is ``--BinaryKL_T``'s default. The official code clamps the sigmoid
    to ``[1e-8, 1 − 1e-8]``, which caps each term near ``9.2 − log 2``; here it is exact
    (the same values while ``|Δ|/T < 18``). Its gradient alignment (``--ga``) is an optimiser
    step, not part of the loss. The teacher's logits must be finite (no masked class).

    {args}

    Shapes: ``student_logits``, ``teacher_logits``, ``aux_logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("dual_head_kd")
        >>> round(crit(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1]), aux_logits=torch.zeros(2, 3)).item(), 4)
        1.0986
    """
