"""Few-shot metric losses (catalogue row F8): the proto-triplet and ICNN losses.

Inputs of the ``embedding`` kind: ``(embeddings [N, D], labels [N])``.
"""

from __future__ import annotations

from .. import functional as LF
from ..registry import Paper, register
from ._base import FunctionalLoss

__all__ = ["ProtoTripletLoss", "ICNNLoss"]

FSL_PAPER = Paper("M. Mendez-Ruiz, J. Gonzalez-Zapata, I. Reyes-Amezcua, D. Flores-Araiza, F. Lopez-Tiro, "
                  "A. Mendez-Vazquez, G. Ochoa-Ruiz",
                  "SuSana Distancia is all you need: Enforcing class separability in metric learning via two novel "
                  "distance-based loss functions for few-shot image classification", "arXiv", 2023)
FSL_CODE = "maumruiz/FSL-Loss (and maumruiz/FewShot-KidneyStones pro-fewshot/algorithms/icnn_loss.py)"


@register(
    "proto_triplet",
    aliases=("proto_triplet_loss", "prototype_triplet"),
    family="metric",
    kind="embedding",
    catalogue="F8",
    formula="l_i = relu(d(q_i, c_{y_i}) - min_{c ≠ y_i} d(q_i, c) + m),  d = sqrt(‖·‖² + 1e-6), c the class prototypes",
    paper=FSL_PAPER,
    code=f"{FSL_CODE}: proto_triplet_loss",
)
class ProtoTripletLoss(FunctionalLoss, function=LF.proto_triplet):
    r"""Proto-triplet loss (Mendez-Ruiz et al., 2023, "SuSana Distancia is all you need: Enforcing
    class separability in metric learning via two novel distance-based loss functions for
    few-shot image classification").

    .. math:: \ell_i = \big[d(q_i, c_{y_i}) - \min_{c \ne y_i} d(q_i, c) + m\big]_+

    A triplet loss for prototypical few-shot episodes: the anchor is a query, its positive the
    prototype of its class, its negative the nearest prototype of another class, so each query
    must be nearer its own prototype than any other by the margin ``m = 0.5`` (the official
    default). Distances are the official ``sqrt(Σ (q − c)² + 1e-6)``. Prototypes and their
    labels come as ``prototypes=`` [W, D] / ``prototype_labels=`` [W] (default ``0..W−1``, the
    episode's way order); without them, each sample's class mean in the batch. A query whose
    class is the only one has no negative and contributes 0. The official episode loss is the
    mean over the queries, averaged with the other losses it is combined with (e.g. the
    prototypical cross-entropy).

    {args}

    Shapes: ``embeddings`` [N, D]; ``labels`` int64 [N]; ``prototypes`` [W, D].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("proto_triplet", margin=0.5)
        >>> crit(torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2]), prototypes=torch.randn(3, 4)).ndim
        0
    """


@register(
    "icnn",
    aliases=("icnn_loss", "inter_intra_class_nearest_neighbors"),
    family="metric",
    kind="embedding",
    catalogue="F8",
    formula="L = -log score,  score = ((λ_sc + λ_dc)/2 + γ)/2 over each sample's k nearest neighbours "
            "(same-class distances normalised by the nearest different-class one, γ = fraction of same-class neighbours)",
    paper=FSL_PAPER,
    code=f"{FSL_CODE}: modified_score, get_icnn_loss ('fullicnn' / 'suppicnn')",
)
class ICNNLoss(FunctionalLoss, function=LF.icnn):
    r"""ICNN loss, the inter- and intra-class nearest-neighbour score as a loss (Mendez-Ruiz et
    al., 2023, "SuSana Distancia is all you need").

    .. math:: L = -\log\Big(\tfrac12\big(\tfrac{\lambda_{sc} + \lambda_{dc}}{2} + \gamma\big)\Big)

    The score rates how well the batch's classes are separated, from each sample's ``k``
    nearest other samples: ``λ_sc`` is one minus the mean distance to same-class neighbours,
    each divided by the distance to the nearest different-class neighbour (among ``neighbors``
    searched, default ``k + 1``) and capped per sample at 1; ``λ_dc`` the mean distance to
    different-class neighbours divided by the largest of them (1 when no sample has one); ``γ``
    the mean fraction of same-class neighbours (a count: no gradient). Tight, well separated
    classes score 1 (loss 0). ``k = 4`` is the official ``modified_score``'s default (cut to
    ``N − 2`` on small batches, where ``γ`` is then 1); the official 'fullicnn' loss scores
    support and queries together with ``neighbors = shot + query``. The loss is one number
    per batch: ``"none"`` returns it as a tensor [1] (empty for an empty batch). Needs N ≥ 3.
    Where a sample has more neighbours searched than the batch holds, the search is cut to
    ``N − 1`` (the official code fails there).

    {args}

    Shapes: ``embeddings`` [N, D] (N ≥ 3); ``labels`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> labels = torch.tensor([0, 0, 0, 1, 1, 1])
        >>> tight = torch.tensor([[0.0, 0.0], [0.0, 0.1], [0.1, 0.0], [9.0, 9.0], [9.0, 9.1], [9.1, 9.0]])
        >>> round(la.create("icnn", k=2)(tight, labels).item(), 2)  # separated classes: score near 1
        0.0
    """
