"""ConR, the contrastive regulariser for deep imbalanced regression (catalogue row G14)."""

from __future__ import annotations

from .. import functional as LF
from ..registry import Paper, register
from ._base import FunctionalLoss

__all__ = ["ConRLoss"]

CONR_PAPER = Paper("M. Keramati, L. Meng, R. D. Evans", "ConR: Contrastive Regularizer for Deep Imbalanced Regression",
                   "ICLR", 2024, "2309.06651")


@register(
    "conr",
    aliases=("contrastive_regularizer", "conr_loss"),
    family="contrastive",
    kind="regression_embedding",
    catalogue="G14",
    formula="l_i = -(1/|P_i|) Σ_{j∈P_i} log e^{s_ij} / (Σ_{p∈P_i} e^{s_ip} + Σ_{k∈N_i} e^{e|y_i-y_k|} e^{s_ik}), "
            "s = ẑ·ẑ/τ, P_i: |y_i-y_j| ≤ ω, N_i: |y_i-y_k| > ω and |ŷ_i-ŷ_k| ≤ ω",
    paper=CONR_PAPER,
    code="BorealisAI/ConR agedb-dir/loss.py (ConR), agedb-dir/train.py (its call and defaults)",
)
class ConRLoss(FunctionalLoss, function=LF.conr):
    r"""ConR, contrastive regulariser for deep imbalanced regression (Keramati, Meng & Evans,
    ICLR 2024).

    .. math:: \ell_i = -\frac{1}{|P_i|}\sum_{j\in P_i}\log\frac{e^{s_{ij}}}
              {\sum_{p\in P_i}e^{s_{ip}} + \sum_{k\in N_i} S_{ik}\,e^{s_{ik}}},\qquad
              s_{ij} = \hat z_i\cdot\hat z_j/\tau,\quad S_{ik} = e^{e\,|y_i-y_k|}

    Positives of anchor i are the other rows whose *targets* lie within ω of ``y_i``; its
    negatives are the rows whose targets are farther than ω but whose *predictions* lie within
    ω of ``ŷ_i`` (the confusions of the regressor, where minority targets collapse onto majority
    ones), pushed harder the farther their targets are. An anchor with no positive or no negative
    adds 0 (and still counts in the mean, as in the official code). The paper's training adds
    ``β · ConR`` (``--beta 4``) to the regression loss, on the features of two augmented views
    concatenated (so every anchor has its other view as a positive), with the predictions
    detached. Defaults ω = 1 and e = 0.01 are the official ``train.py``'s; τ = 0.07 is the value
    the official ``ConR`` function uses (it overwrites its ``t`` argument, whose default is 0.2).
    Two deliberate differences from the official function: its denominator sums ``exp`` over the
    whole row of the masked similarity matrix, adding 1 for every non-positive (including the
    anchor itself); here it sums over the positives as the paper's equation does. And an anchor
    without positives is 0 here, not the official 0/0 = NaN. Its per-sample LDS weights are not
    taken (``S_ik`` uses weight 1, the official default without LDS).

    {args}

    Shapes: ``features`` [N, D]; ``target``, ``preds`` float [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("conr")
        >>> y = torch.tensor([20.0, 20.5, 60.0, 61.0])
        >>> float(crit(torch.randn(4, 8), y, torch.tensor([30.0, 30.0, 30.5, 30.0]))) > 0
        True
    """
