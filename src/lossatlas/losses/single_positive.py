"""Single-positive multi-label losses (catalogue row D4): assume-negative and entropy maximisation.

Target: the observed label matrix [N, C], 1 for the observed positive(s), 0 for unobserved.
"""

from __future__ import annotations

from .. import functional as LF
from ..registry import Paper, register
from ._base import FunctionalLoss

__all__ = ["AssumeNegativeLoss", "EntropyMaximizationLoss"]

COLE_PAPER = Paper("E. Cole, O. Mac Aodha, T. Lorieul, P. Perona, D. Morris, N. Jojic",
                   "Multi-Label Learning from Single Positive Labels", "CVPR", 2021, "2106.09708")
ZHOU_PAPER = Paper("D. Zhou, P. Chen, Q. Wang, G. Chen, P.-A. Heng",
                   "Acknowledging the Unknown for Multi-label Learning with Single Positive Labels", "ECCV", 2022,
                   "2203.16219")


@register(
    "assume_negative",
    aliases=("an", "an_loss", "wan", "weighted_assume_negative", "an_ls"),
    family="multilabel",
    kind="multilabel",
    catalogue="D4",
    formula="l_ic = y_ic BCE⁺_ε(z_ic) + γ (1 - y_ic) BCE⁻_ε(z_ic),  γ = 1 (AN) or 1/(C - 1) (WAN), "
            "BCE⁺_ε = (1-ε)(-log σ) + ε(-log(1-σ)), BCE⁻_ε likewise",
    paper=COLE_PAPER,
    code="elijahcole/single-positive-multi-label losses.py (loss_an, loss_wan, loss_an_ls)",
)
class AssumeNegativeLoss(FunctionalLoss, function=LF.assume_negative):
    r"""Assume-negative loss for single-positive labels (Cole, Mac Aodha, Lorieul, Perona,
    Morris & Jojic, CVPR 2021, "Multi-Label Learning from Single Positive Labels").

    .. math:: \ell_{ic} = y_{ic}\big[-(1-\varepsilon)\log\sigma(z_{ic}) - \varepsilon\log(1-\sigma(z_{ic}))\big]
              + \gamma\,(1-y_{ic})\big[-(1-\varepsilon)\log(1-\sigma(z_{ic})) - \varepsilon\log\sigma(z_{ic})\big]

    Every unobserved label is taken as a negative: with ``γ = 1``, ``ε = 0`` this is BCE against
    the observed matrix (AN); ``weighted=True`` down-weights the assumed negatives by
    ``γ = 1/(C − 1)`` (WAN), so the one positive and the C − 1 negatives weigh the same;
    ``label_smoothing=ε`` smooths both terms (AN-LS; the paper's code uses ε = 0.1). The
    paper's default is AN (``loss_an``). ``"mean"`` averages over all N·C entries (the official
    ``sum(loss / (N·C))``). Computed with log-sigmoids, where the official code takes
    ``−log(σ + 1e-5)`` of probabilities: the values agree to about 1e-5 where σ is not tiny, and
    here a confident wrong label is not capped at ``log 1e5``.

    {args}

    Shapes: ``logits`` [N, C]; ``target`` [N, C] (1 observed positive, 0 unobserved).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("assume_negative", weighted=True)
        >>> round(crit(torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0]])).item(), 4)  # (1 + 2·½) log 2 / 3
        0.4621
    """


@register(
    "entropy_maximization",
    aliases=("em", "em_loss", "acknowledging_the_unknown", "entropy_maximisation"),
    family="multilabel",
    kind="multilabel",
    catalogue="D4",
    formula="l_ic = y_ic (-log σ(z_ic)) - α (1 - y_ic) H(σ(z_ic)),  H(p) = -p log p - (1-p) log(1-p)",
    paper=ZHOU_PAPER,
    code="Correr-Zhou/SPML-AckTheUnknown losses.py (loss_EM; alpha in main.py)",
)
class EntropyMaximizationLoss(FunctionalLoss, function=LF.entropy_maximization):
    r"""Entropy-maximisation loss, "acknowledging the unknown" (Zhou, Chen, Wang, Chen & Heng,
    ECCV 2022, "Acknowledging the Unknown for Multi-label Learning with Single Positive Labels").

    .. math:: \ell_{ic} = -y_{ic}\log\sigma(z_{ic}) - \alpha\,(1-y_{ic})\,H(\sigma(z_{ic})),
              \qquad H(p) = -p\log p - (1-p)\log(1-p)

    The observed positive is fitted by BCE; an unobserved label is not assumed negative but
    pushed towards maximal uncertainty (its entropy is maximised, so the loss can be negative,
    down to ``−α log 2`` per unobserved label at ``σ = ½``). The gradient on an unobserved
    logit is ``α σ(1 − σ) z``, zero at ``z = 0``. ``α = 0.2`` is the official ``main.py``'s value
    for its default data set (PASCAL VOC; 0.1 for COCO and NUS-WIDE, 0.01 for CUB). The paper's
    asymmetric pseudo-labelling (APL) is a data-set-level procedure between epochs, not part of
    this loss; its soft negative labels can be trained with :class:`AssumeNegativeLoss` or BCE.
    ``"mean"`` averages over all N·C entries (the official ``sum(loss / (N·C))``); computed with
    log-sigmoids (the official code adds 1e-5 inside its logs).

    {args}

    Shapes: ``logits`` [N, C]; ``target`` [N, C] (1 observed positive, 0 unobserved).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("entropy_maximization", alpha=0.2, reduction="sum")
        >>> round(crit(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])).item(), 4)  # log 2 − 0.2 log 2
        0.5545
    """
