"""Non-negative contrastive learning and contrastive attraction / repulsion (catalogue row G15)."""

from __future__ import annotations

from .. import functional as LF
from ..registry import Paper, register
from ._base import FunctionalLoss

__all__ = ["NonNegativeContrastiveLoss", "AttractionRepulsionLoss"]

NCL_PAPER = Paper("Y. Wang, Q. Zhang, Y. Guo, Y. Wang", "Non-negative Contrastive Learning", "ICLR", 2024, "2403.12459")


@register(
    "non_negative_contrastive",
    aliases=("ncl", "non_negative_contrastive_learning"),
    family="contrastive",
    kind="pair",
    catalogue="G15",
    formula="NT-Xent over the 2N views of normalize(σ₊(a)), normalize(σ₊(b)), σ₊ = ReLU (GELU backward by default)",
    paper=NCL_PAPER,
    code="PKU-ML/non_neg solo/methods/simclr.py (non_neg), solo/losses/simclr.py (simclr_loss_func)",
)
class NonNegativeContrastiveLoss(FunctionalLoss, function=LF.non_negative_contrastive):
    r"""Non-negative contrastive learning, NCL (Wang, Zhang, Guo & Wang, ICLR 2024).

    .. math:: \ell_i = -\log\frac{e^{u_i\cdot v_i/T}}{\sum_{k\ne i} e^{u_i\cdot w_k/T}},\qquad
              u = \frac{\sigma_+(z)}{\|\sigma_+(z)\|}

    SimCLR's NT-Xent (each of the 2N views is an anchor, its other view the positive, the other
    2N − 2 views the negatives; the mean over the 2N anchors) computed on non-negative features
    ``σ₊(z)``. With non-negative features the similarity matrix is that of a non-negative matrix
    factorisation of the co-occurrence matrix (the paper's analogy to NMF), which makes the
    feature dimensions sparse and interpretable. ``activation="rep_relu"`` (the default of the
    official ``ncl.yaml``) is a ReLU whose backward is a GELU's: the value is the ReLU's, the
    gradient keeps flowing into inactive dimensions (so this default's gradient is, by design,
    not the derivative of the value); ``"relu"`` is the plain map. ``T = 0.2`` is the official
    CIFAR configuration's. A row whose features are all negative becomes the zero vector (its
    similarities are 0). ``a`` and ``b`` are the projector outputs of the two views, before any
    activation or normalisation. Equal to
    ``la.functional.infonce(σ₊(a), σ₊(b), intra_view_negatives=True)``.

    {args}

    Shapes: ``a``, ``b`` [N, D] (row i of each: two views of sample i).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("non_negative_contrastive", temperature=0.2)
        >>> float(crit(torch.randn(8, 16), torch.randn(8, 16))) > 0
        True
    """


CACR_PAPER = Paper("H. Zheng, X. Chen, J. Yao, H. Yang, C. Li, Y. Zhang, H. Zhang, I. Tsang, J. Zhou, M. Zhou",
                   "Contrastive Attraction and Contrastive Repulsion for Representation Learning", "TMLR", 2023,
                   "2105.03746")


@register(
    "attraction_repulsion",
    aliases=("cacr", "contrastive_attraction_repulsion"),
    family="contrastive",
    kind="pair",
    catalogue="G15",
    formula="l_i = α‖a_i - b_i‖² - β Σ_{j≠i} π_ij ‖a_i - b_j‖²,  π_i = softmax_{j≠i}(-τ₋‖a_i - b_j‖²)",
    paper=CACR_PAPER,
    code="JegZheng/CACR-SSL small_scale_experiments/losses/__init__.py (our_loss1, our_loss2)",
)
class AttractionRepulsionLoss(FunctionalLoss, function=LF.attraction_repulsion):
    r"""Contrastive attraction and contrastive repulsion, CACR (Zheng, Chen, Yao, Yang, Li, Zhang,
    Zhang, Tsang, Zhou & Zhou, TMLR 2023; arXiv 2021).

    .. math:: \ell_i = \alpha\,\|a_i - b_i\|^2 - \beta\sum_{j\ne i}\pi_{ij}\,\|a_i - b_j\|^2,\qquad
              \pi_{ij} = \frac{e^{-\tau_-\|a_i - b_j\|^2}}{\sum_{k\ne i} e^{-\tau_-\|a_i - b_k\|^2}}

    The query ``a_i`` is pulled towards its positive ``b_i`` and pushed from the other rows
    ``b_j`` of the second view, each negative weighted by a conditional distribution that puts
    more mass on close (hard) negatives; the weights are part of the objective (the official code
    does not detach them). The paper's attraction is likewise a softmax over a query's positives
    of ``τ₊‖·‖²`` (distant positives weigh more); with the one positive of a pair of views that
    weight is 1, so τ₊ does not enter here. The official CIFAR script uses 5 views (``--Ny 4``)
    and averages the attraction over views and the repulsion over pairs of views; for two views
    both reduce to this loss. Defaults ``α = β = τ₋ = 1`` and unit-normalised features are the
    official ``main_ours.py`` and ``SmallAlexNet`` (whose last layer is an L2 normalisation). The
    loss can be negative (the repulsion term is); ``"mean"`` averages over the queries.

    {args}

    Shapes: ``a``, ``b`` [N, D] (row i of each: two views of sample i).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("attraction_repulsion")
        >>> a = torch.randn(6, 8)
        >>> bool(crit(a, a) <= 0)  # identical views: no attraction, only the (negative) repulsion
        True
    """
