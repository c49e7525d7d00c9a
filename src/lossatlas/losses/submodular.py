"""SCoRe, submodular combinatorial representation losses (catalogue row F11): facility location, log-determinant.

Inputs of the ``embedding`` kind: ``(embeddings [N, D] or [bsz, n_views, D], labels)``.
"""

from __future__ import annotations

from .. import functional as LF
from ..registry import Paper, register
from ._base import FunctionalLoss

__all__ = ["SCoReFacilityLocationLoss", "SCoReLogDetLoss"]

SCORE_PAPER = Paper("A. Majee, S. Kothawade, K. Killamsetty, R. Iyer",
                    "SCoRe: Submodular Combinatorial Representation Learning", "ICML", 2024, "2310.00165")


@register(
    "score_facility_location",
    aliases=("score_fl", "score", "submodular_facility_location"),
    family="metric",
    kind="embedding",
    catalogue="F11",
    formula="l_j = (τ/τ_b) λ log Σ_i exp(s̃_ij),  s̃_ij = cos(e_i, e_j) if y_i ≠ y_j else 0",
    paper=SCORE_PAPER,
    code="amajee11us/SCoRe objectives/combinatorial/FL.py (FacilityLocation), objectives/utils.py (soft_max)",
)
class SCoReFacilityLocationLoss(FunctionalLoss, function=LF.score_facility_location):
    r"""SCoRe's facility-location loss (Majee, Kothawade, Killamsetty & Iyer, "SCoRe: Submodular
    Combinatorial Representation Learning", ICML 2024).

    .. math:: \ell_j = \frac{\tau}{\tau_b}\,\lambda\,\log\sum_{i} e^{\tilde s_{ij}},\qquad
              \tilde s_{ij} = \begin{cases}\cos(e_i, e_j) & y_i \ne y_j\\ 0 & \text{otherwise}\end{cases}

    SCoRe treats each class as a set ``A_k`` of the batch and minimises a submodular
    information measure between the classes; for facility location, the total information is
    ``Σ_k Σ_{i∉A_k} max_{j∈A_k} s_ij``, each sample's largest similarity to another class, which
    the official code relaxes to a soft maximum (a log-sum-exp over the column, with the
    masked same-class and self entries entering as 0, as written here) and averages over the
    anchors. Minimising it pulls every class away from its most similar other class (the
    inter-class bias SCoRe targets). ``s`` are cosine similarities (official ``metric='cosSim'``,
    not divided by ``τ``); the loss is scaled by ``τ/τ_b`` (1 at the official ``--temp 0.07``)
    and ``λ = 1`` (the official ``--method fl``). One class only: every ``s̃`` is 0 and each
    anchor's loss is ``(τ/τ_b) λ log N``. The log-determinant objective is
    :class:`SCoReLogDetLoss`; the paper's graph-cut objective is not implemented here.

    {args}

    Shapes: ``embeddings`` [N, D] or [bsz, n_views, D]; ``labels`` int64 [N] (or [bsz]).
    ``"none"`` gives one loss per row of the flattened batch.

    Example:
        >>> import torch, lossatlas as la
        >>> round(la.create("score_facility_location")(torch.randn(4, 8), torch.zeros(4, dtype=torch.long)).item(), 4)
        1.3863
    """


@register(
    "score_logdet",
    aliases=("score_log_det", "submodular_logdet"),
    family="metric",
    kind="embedding",
    catalogue="F11",
    formula="L = Σ_k log det(S_{A_k} + εI) - log det(S + εI),  S = cosine kernel of the batch, A_k its class k",
    paper=SCORE_PAPER,
    code="amajee11us/SCoRe objectives/combinatorial/logdet.py (LogDet, is_cf=True)",
)
class SCoReLogDetLoss(FunctionalLoss, function=LF.score_logdet):
    r"""SCoRe's log-determinant total correlation (Majee, Kothawade, Killamsetty & Iyer, "SCoRe:
    Submodular Combinatorial Representation Learning", ICML 2024).

    .. math:: L = \sum_k \log\det\big(S_{A_k} + \varepsilon I\big) - \log\det\big(S + \varepsilon I\big)

    With the submodular ``f(A) = log det(S_A + εI)`` on the batch's similarity kernel ``S`` and
    the classes ``A_k`` as sets, this is the total correlation ``Σ_k f(A_k) − f(∪_k A_k)``: how
    much information the classes share. By Fischer's inequality it is ≥ 0, and 0 exactly when
    every cross-class similarity is 0 (orthogonal classes) or there is one class; minimising it
    decorrelates the classes. ``S`` is the cosine kernel (the official model L2-normalises its
    output before the loss, whose kernel is then the dot product; here the loss normalises),
    ``ε = 0.5`` the official ridge (``is_cf=True``, the default of ``--method LogDet``, in which
    the temperature plays no part). One number per batch: ``"none"`` returns it as a tensor [1]
    (empty for an empty batch). The per-class sum is one log-determinant of the kernel with its
    cross-class entries set to 0 (a block-diagonal matrix up to a permutation).

    {args}

    Shapes: ``embeddings`` [N, D] or [bsz, n_views, D]; ``labels`` int64 [N] (or [bsz]).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("score_logdet")
        >>> float(crit(torch.eye(4), torch.tensor([0, 1, 2, 3])))  # orthogonal classes share nothing
        0.0
    """
