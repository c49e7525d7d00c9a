"""Non-negative contrastive learning (catalogue row G15, first half)."""

from __future__ import annotations

from .. import functional as LF
from ..registry import Paper, register
from ._base import FunctionalLoss

__all__ = ["NonNegativeContrastiveLoss"]

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
