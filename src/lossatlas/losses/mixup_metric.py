"""Metrix, mixup for deep metric learning (catalogue row F9).

Inputs of the ``pair`` kind: ``(anchors [M, D], mixed [M, D])`` and the call keyword ``lam=``.
"""

from __future__ import annotations

from .. import functional as LF
from ..registry import Paper, register
from ._base import FunctionalLoss

__all__ = ["MetrixLoss"]

METRIX_PAPER = Paper("S. Venkataramanan, B. Psomas, E. Kijak, L. Amsaleg, K. Karantzalos, Y. Avrithis",
                     "It Takes Two to Tango: Mixup for Deep Metric Learning", "ICLR", 2022, "2106.04990")


@register(
    "metrix",
    aliases=("metric_mix", "metrix_contrastive", "mixup_metric_learning"),
    family="metric",
    kind="pair",
    catalogue="F9",
    formula="l_k = λ_k relu(d(a_k, x̃_k) - m+) + (1 - λ_k) relu(m- - d(a_k, x̃_k)),  x̃_k = mix of a positive "
            "(weight λ_k) and a negative of a_k;  'mean' = AvgNonZero(pos) + AvgNonZero(neg)",
    paper=METRIX_PAPER,
    code="billpsomas/Metrix_ICLR22 mixup/losses.py (loss_posneg_mixup), train.py, main.py",
)
class MetrixLoss(FunctionalLoss, function=LF.metrix):
    r"""Metrix, the mixed contrastive loss of "It Takes Two to Tango: Mixup for Deep Metric
    Learning" (Venkataramanan, Psomas, Kijak, Amsaleg, Karantzalos & Avrithis, ICLR 2022).

    .. math:: \ell_k = \lambda_k\,[d(a_k, \tilde x_k) - m_+]_+ + (1-\lambda_k)\,[m_- - d(a_k, \tilde x_k)]_+

    Metric-learning losses are not sums over examples, so mixup cannot interpolate their
    targets directly; Metrix writes the loss as positive and negative terms and gives a mixed
    example ``x̃ = λ·positive + (1 − λ)·negative`` (inputs, features or embeddings) the positive
    term with weight λ and the negative term with weight ``1 − λ``, "interpolating the label" of
    the pair. ``d`` is the Euclidean distance between the L2-normalised anchor and mixed
    embeddings (pytorch-metric-learning's ``LpDistance``, as the official code). ``"mean"`` is
    the official reduction, the average of the non-zero positive terms plus that of the
    non-zero negative terms; ``"none"`` gives ``ℓ_k`` per pair. The official contrastive setting:
    ``m+ = 0``, ``m− = 0.5``, ``λ ~ Beta(2, 2)`` drawn once per step (``--alpha 2``), mixes of an
    anchor's positive with each of its negatives (or of the anchor itself with a negative), and
    the training loss ``contrastive(clean) + 0.4 · metrix`` (``la.create("contrastive",
    neg_margin=0.5)`` for the clean term; :func:`lossatlas.functional.mixup_embeddings` mixes
    embeddings). ``lam`` is a number or one weight per pair; the default ½ is the mean of
    Beta(2, 2). ``λ = 1`` is the contrastive loss of positive pairs, ``λ = 0`` of negative pairs.

    {args}

    Shapes: ``anchors``, ``mixed`` [M, D]; ``lam`` a number or [M] in [0, 1].

    Example:
        >>> import torch, lossatlas as la
        >>> a, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)
        >>> la.create("metrix")(a, la.functional.mixup_embeddings(p, n, 0.3), lam=0.3).ndim
        0
    """
