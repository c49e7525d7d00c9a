"""Subclass-balancing contrastive learning, SBCL (catalogue row G13).

Inputs of the ``embedding`` kind: ``(embeddings [N, D] or [bsz, n_views, D], labels)`` and the
call keyword ``subclass=`` (cluster labels within each class).
"""

from __future__ import annotations

from .. import functional as LF
from ..registry import Paper, register
from ._base import FunctionalLoss

__all__ = ["SBCLLoss"]

SBCL_PAPER = Paper("C. Hou, J. Zhang, H. Wang, T. Zhou",
                   "Subclass-balancing Contrastive Learning for Long-tailed Recognition", "ICCV", 2023, "2306.15925")


@register(
    "sbcl",
    aliases=("subclass_balancing_contrastive", "subclass_contrastive"),
    family="contrastive",
    kind="embedding",
    catalogue="G13",
    formula="l_i = -(τ/τ_b) mean_{p∈S(i)} log[e^{s_ip/τ} / Σ_{k≠i} e^{s_ik/τ}] "
            "- γ mean_{p∈V(i)∪C(i)} log[e^{s_ip/τ_y} / Σ_{k∈V(i)∪O(i)} e^{s_ik/τ_y}]; S: same subclass, "
            "V: the anchor's other views, C: same class other subclass, O: other subclasses",
    paper=SBCL_PAPER,
    code="JackHck/SBCL SimCLR/loss.py (SupConLoss_rank), SimCLR/main.py (clusters, class temperatures)",
)
class SBCLLoss(FunctionalLoss, function=LF.sbcl):
    r"""Subclass-balancing contrastive loss, SBCL (Hou, Zhang, Wang & Zhou, ICCV 2023,
    "Subclass-balancing Contrastive Learning for Long-tailed Recognition").

    .. math:: \ell_i = -\frac{\tau}{\tau_b}\,\frac{1}{|S_i|}\sum_{p\in S_i}
              \log\frac{e^{s_{ip}/\tau}}{\sum_{k\ne i} e^{s_{ik}/\tau}}
              \;-\;\gamma\,\frac{1}{|V_i\cup C_i|}\sum_{p\in V_i\cup C_i}
              \log\frac{e^{s_{ip}/\tau_{y_i}}}{\sum_{k\in V_i\cup O_i} e^{s_{ik}/\tau_{y_i}}}

    with ``s`` the cosine similarities of the L2-normalised embeddings. Head classes are
    clustered into subclasses of about a tail class's size (``subclass=``, the cluster id of
    each sample within its class; two samples share a subclass when they share class and
    id). The subclass term is SupCon over subclasses (``S_i``: the other rows of ``i``'s
    subclass), so every subclass, not every class, weighs alike; the class term keeps the
    class structure: the rows of ``i``'s class in other subclasses (``C_i``) and the other
    views of ``i``'s own sample (``V_i``, with ``[bsz, n_views, D]`` embeddings) are pulled
    closer than every row of another subclass (``O_i``), at the class temperature ``τ_y``
    (``class_temperature=`` [C]; the official code sets it per class from the clusters'
    spread, ``τ · d_c / mean d``; without it, ``τ``). This is the official default
    ``--train_rule Ranking`` (``SupConLoss_rank``): ``τ = 0.1``, ``τ_b = 0.07``, ``γ = 0.25``;
    the loss is the mean over all anchors. The official training re-clusters every 10
    epochs with cosine k-means, ``n_c // max(min n, 10)`` clusters per class
    (:func:`lossatlas.functional.sbcl_subclass_counts`), after 10 SupCon warm-up epochs;
    :func:`lossatlas.functional.sbcl_subclasses` clusters a training set's features so, and
    :func:`lossatlas.functional.sbcl_class_temperature` gives the official class temperatures.
    Without ``subclass`` each class is one subclass and the loss is SupCon at ``τ/τ_b``
    averaged over all anchors (plus ``γ`` times the other-view term).

    {args}

    Shapes: ``embeddings`` [N, D] or [bsz, n_views, D]; ``labels``, ``subclass`` int64 [N] (or
    [bsz]); ``class_temperature`` [C]. ``"none"`` gives one loss per row of the flattened batch.

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("sbcl")
        >>> crit(torch.randn(8, 2, 16), torch.tensor([0, 0, 0, 0, 1, 1, 2, 2]), subclass=torch.tensor([0, 0, 1, 1, 0, 0, 0, 0])).ndim
        0
    """
