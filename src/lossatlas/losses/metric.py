"""Metric-learning losses (catalogue rows F1–F7; SupCon G2 and NT-Xent G1 in their labelled,
embedding form).

Call convention (input kind ``embedding``): ``loss(embeddings [N, D], labels int64 [N])``.
Embeddings are raw; every loss L2-normalises them inside, so gradients flow through the
normalisation. Pair / triplet losses also take ``indices=`` from a miner
(:mod:`lossatlas.miners`). Classifier-style losses hold the class-weight matrix as the
parameter ``weight`` [C, D] (``nn.Linear`` layout).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .. import functional as LF
from .._validation import check_int, check_number
from ..functional.metric import AVERAGE_OVER, MARGIN_TYPES, Indices
from ..registry import Paper, register
from ._base import Loss

__all__ = [
    "ContrastiveLoss",
    "TripletMarginLoss",
    "MultiSimilarityLoss",
    "SupConLoss",
    "NTXentLoss",
    "ThresholdConsistentMarginLoss",
    "NormalizedSoftmaxLoss",
    "CosFaceLoss",
    "ArcFaceLoss",
    "SFaceLoss",
    "UNPGLoss",
    "PartialFCLoss",
]

PML = "KevinMusgrave/pytorch-metric-learning"
HADSELL = Paper("R. Hadsell, S. Chopra, Y. LeCun", "Dimensionality Reduction by Learning an Invariant Mapping", "CVPR", 2006)
FACENET = Paper("F. Schroff, D. Kalenichenko, J. Philbin", "FaceNet: A Unified Embedding for Face Recognition and Clustering", "CVPR", 2015, "1503.03832")
MS_PAPER = Paper("X. Wang, X. Han, W. Huang, D. Dong, M. R. Scott", "Multi-Similarity Loss with General Pair Weighting for Deep Metric Learning", "CVPR", 2019, "1904.06627")
SUPCON_PAPER = Paper("P. Khosla, P. Teterwak, C. Wang, A. Sarna, Y. Tian, P. Isola, A. Maschinot, C. Liu, D. Krishnan", "Supervised Contrastive Learning", "NeurIPS", 2020, "2004.11362")
SIMCLR = Paper("T. Chen, S. Kornblith, M. Norouzi, G. Hinton", "A Simple Framework for Contrastive Learning of Visual Representations", "ICML", 2020, "2002.05709")
TCM_PAPER = Paper("Q. Zhang, L. Xu, Q. Tang, J. Fang, Y. N. Wu, J. Tighe, Y. Xing", "Threshold-Consistent Margin Loss for Open-World Deep Metric Learning", "ICLR", 2024, "2307.04047")
NORMFACE = Paper("F. Wang, X. Xiang, J. Cheng, A. L. Yuille", "NormFace: L2 Hypersphere Embedding for Face Verification", "ACM MM", 2017, "1704.06369")
COSFACE = Paper("H. Wang, Y. Wang, Z. Zhou, X. Ji, D. Gong, J. Zhou, Z. Li, W. Liu", "CosFace: Large Margin Cosine Loss for Deep Face Recognition", "CVPR", 2018, "1801.09414")
ARCFACE = Paper("J. Deng, J. Guo, N. Xue, S. Zafeiriou", "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", "CVPR", 2019, "1801.07698")
SFACE = Paper("Y. Zhong, W. Deng, J. Hu, D. Zhao, X. Li, D. Wen", "SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face Recognition", "IEEE TIP", 2021, "2205.12010")
UNPG_PAPER = Paper("J. Jung, S. Lee, H.-S. Oh, Y. Park, J. Park, S. Son", "Unified Negative Pair Generation toward Well-discriminative Feature Space for Face Recognition", "BMVC", 2022, "2203.11593")
PFC_PAPER = Paper("X. An, X. Zhu, Y. Gao, Y. Xiao, Y. Zhao, Z. Feng, L. Wu, B. Qin, M. Zhang, D. Zhang, Y. Fu", "Partial FC: Training 10 Million Identities on a Single Machine", "ICCV Workshops", 2021, "2010.05222")


class _PairLoss(Loss):
    """Base of the losses computed from the batch's pairs / triplets (accept ``indices=``)."""

    def __init__(self, reduction: str, validate: bool) -> None:
        super().__init__(reduction, validate)


# ----------------------------------------------------------------------------- F1
@register(
    "contrastive",
    aliases=("contrastive_loss", "pair_contrastive"),
    family="metric",
    kind="embedding",
    catalogue="F1",
    formula="pos pairs: relu(d_ij − m_pos); neg pairs: relu(m_neg − d_ij); d = ‖u_i − u_j‖, u = e/‖e‖; mean = mean_{>0}(pos) + mean_{>0}(neg)",
    paper=HADSELL,
    code=f"{PML} losses/contrastive_loss.py::ContrastiveLoss",
    function=LF.pair_contrastive,
    defaults_source={"pos_margin": "pytorch-metric-learning (0)", "neg_margin": "pytorch-metric-learning (1)",
                     "average_nonzero": "pytorch-metric-learning's AvgNonZeroReducer"},
)
class ContrastiveLoss(_PairLoss):
    r"""Contrastive (pair) loss (Hadsell, Chopra & LeCun, 2006, "Dimensionality Reduction by
    Learning an Invariant Mapping"), in pytorch-metric-learning's form.

    .. math:: \ell^+_{ij} = [d_{ij} - m_+]_+,\quad \ell^-_{ij} = [m_- - d_{ij}]_+,\quad
              d_{ij} = \lVert u_i - u_j \rVert_2,\ u = e / \lVert e \rVert

    over all ordered pairs i ≠ j (same label: positive, different: negative), or the pairs
    a miner gives through ``indices=``. ``reduction="mean"`` is the reference's:
    mean of the positive terms > 0 plus mean of the negative terms > 0 (a part with no
    non-zero term adds 0); ``average_nonzero=False`` averages over all pairs instead.
    ``"none"`` returns per-anchor sums of terms [N], ``"sum"`` their total. Defaults
    (m+ = 0, m− = 1) are pytorch-metric-learning's (parity case ``emb_contrastive``).

    Args:
        pos_margin: m+, positive distances below it cost nothing.
        neg_margin: m−, negatives farther than it cost nothing.
        average_nonzero: average only the non-zero terms (reference default).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N]; optional ``indices``.

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("contrastive", neg_margin=1.0)
        >>> float(crit(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))) >= 0
        True
    """

    def __init__(self, pos_margin: float = 0.0, neg_margin: float = 1.0, average_nonzero: bool = True,
                 reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(reduction, validate)
        self.pos_margin = check_number(pos_margin, "pos_margin")
        self.neg_margin = check_number(neg_margin, "neg_margin")
        self.average_nonzero = bool(average_nonzero)

    def _hparams(self) -> dict[str, Any]:
        return {"pos_margin": self.pos_margin, "neg_margin": self.neg_margin}

    def forward(self, embeddings: Tensor, labels: Tensor, indices: Indices | None = None) -> Tensor:
        return LF.pair_contrastive(embeddings, labels, pos_margin=self.pos_margin, neg_margin=self.neg_margin,
                              average_nonzero=self.average_nonzero, indices=indices,
                              reduction=self.reduction, validate=self.validate)


@register(
    "triplet_margin",
    aliases=("triplet", "triplet_loss", "triplet_margin_loss"),
    family="metric",
    kind="embedding",
    catalogue="F1",
    formula="l_apn = relu(d_ap − d_an + margin), d = ‖u_a − u_·‖, u = e/‖e‖; mean over l > 0",
    paper=FACENET,
    code=f"{PML} losses/triplet_margin_loss.py::TripletMarginLoss",
    function=LF.triplet_margin,
    defaults_source={"margin": "FaceNet (α = 0.2); pytorch-metric-learning's default is 0.05",
                     "average_nonzero": "pytorch-metric-learning's AvgNonZeroReducer"},
)
class TripletMarginLoss(_PairLoss):
    r"""Triplet margin loss (Schroff, Kalenichenko & Philbin, 2015, "FaceNet: A Unified
    Embedding for Face Recognition and Clustering").

    .. math:: \ell_{apn} = [\,d_{ap} - d_{an} + \alpha\,]_+,\qquad d = \lVert u_a - u_\cdot\rVert_2

    over every triplet (label[p] = label[a], p ≠ a, label[n] ≠ label[a]) or the triplets of
    a miner (``indices=``; e.g. :class:`lossatlas.miners.BatchHardMiner`,
    :class:`lossatlas.miners.BatchSemiHardMiner`). ``"mean"`` averages the triplets with a
    non-zero loss (pytorch-metric-learning's AvgNonZeroReducer; parity ``emb_triplet_margin``);
    ``average_nonzero=False`` averages all. ``"none"``: per-anchor sums [N]. Default
    α = 0.2 is FaceNet's (PML uses 0.05). All triplets are formed as an [N, N, N] tensor:
    use a miner for large batches.

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N]; optional ``indices``.

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("triplet_margin", margin=0.2)
        >>> crit(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])).ndim
        0
    """

    def __init__(self, margin: float = 0.2, average_nonzero: bool = True, reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(reduction, validate)
        self.margin = check_number(margin, "margin")
        self.average_nonzero = bool(average_nonzero)

    def _hparams(self) -> dict[str, Any]:
        return {"margin": self.margin}

    def forward(self, embeddings: Tensor, labels: Tensor, indices: Indices | None = None) -> Tensor:
        return LF.triplet_margin(embeddings, labels, margin=self.margin, average_nonzero=self.average_nonzero,
                                 indices=indices, reduction=self.reduction, validate=self.validate)


# ----------------------------------------------------------------------------- F2
@register(
    "multi_similarity",
    aliases=("ms", "ms_loss", "multi_similarity_loss"),
    family="metric",
    kind="embedding",
    catalogue="F2",
    formula="l_i = (1/α) log(1 + Σ_{p∈P_i} e^{−α(s_ip − λ)}) + (1/β) log(1 + Σ_{n∈N_i} e^{β(s_in − λ)}); mean over anchors",
    paper=MS_PAPER,
    code="msight-tech/research-ms-loss; " + f"{PML} losses/multi_similarity_loss.py::MultiSimilarityLoss",
    function=LF.multi_similarity,
    defaults_source={"alpha": "Wang et al. 2019 / PML (2)", "beta": "Wang et al. 2019 / PML (50)",
                     "base": "λ: official code and PML (0.5); the paper reports λ = 1",
                     "miner_epsilon": "None = no mining; the MS miner's ε is 0.1 in the paper and PML"},
)
class MultiSimilarityLoss(_PairLoss):
    r"""Multi-similarity loss (Wang, Han, Huang, Dong & Scott, 2019, "Multi-Similarity Loss with
    General Pair Weighting for Deep Metric Learning").

    .. math:: \ell_i = \frac1\alpha \log\Big(1 + \sum_{p\in P_i} e^{-\alpha(s_{ip}-\lambda)}\Big)
              + \frac1\beta \log\Big(1 + \sum_{n\in N_i} e^{\beta(s_{in}-\lambda)}\Big)

    with cosine similarities ``s``. An empty set contributes 0; ``"mean"`` averages over all
    N anchors (parity ``emb_multi_similarity``). ``miner_epsilon=ε`` first applies the MS
    miner (:func:`lossatlas.functional.multi_similarity_mine`): positives with
    ``s_ip − ε < max_n s_in`` and negatives with ``s_in + ε > min_p s_ip`` are kept
    (parity ``emb_multi_similarity_miner``); any other miner works through ``indices=``.
    Defaults α = 2, β = 50, λ = 0.5 are the official code's and PML's.

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N]; ``"none"`` gives [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("multi_similarity", miner_epsilon=0.1)
        >>> crit(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])).ndim
        0
    """

    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5, miner_epsilon: float | None = None,
                 reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(reduction, validate)
        self.alpha = check_number(alpha, "alpha", low=0.0, low_open=True)
        self.beta = check_number(beta, "beta", low=0.0, low_open=True)
        self.base = check_number(base, "base")
        self.miner_epsilon = None if miner_epsilon is None else check_number(miner_epsilon, "miner_epsilon", low=0.0)

    def _hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta, "base": self.base, "miner_epsilon": self.miner_epsilon}

    def forward(self, embeddings: Tensor, labels: Tensor, indices: Indices | None = None) -> Tensor:
        return LF.multi_similarity(embeddings, labels, alpha=self.alpha, beta=self.beta, base=self.base,
                                   miner_epsilon=self.miner_epsilon, indices=indices,
                                   reduction=self.reduction, validate=self.validate)


# ----------------------------------------------------------------------------- G2 / G1
@register(
    "supcon",
    aliases=("supervised_contrastive", "supcon_loss"),
    family="metric",
    kind="embedding",
    catalogue="G2",
    formula="l_i = −(τ/τ_b) · (1/|P_i|) Σ_{p∈P_i} log( e^{s_ip/τ} / Σ_{k≠i} e^{s_ik/τ} )",
    paper=SUPCON_PAPER,
    code="HobbitLong/SupContrast losses.py::SupConLoss; " + f"{PML} losses/supcon_loss.py::SupConLoss",
    function=LF.supcon,
    defaults_source={"temperature": "HobbitLong/SupContrast (0.07)", "base_temperature": "HobbitLong/SupContrast (0.07)",
                     "average_over": "pytorch-metric-learning's convention (anchors with a positive)"},
)
class SupConLoss(_PairLoss):
    r"""Supervised contrastive loss (Khosla et al., 2020, "Supervised Contrastive Learning"),
    the L_out form, on one batch of (multi-view) embeddings with labels.

    .. math:: \ell_i = -\frac{\tau}{\tau_b}\,\frac{1}{|P_i|}\sum_{p\in P_i}
              \log\frac{e^{s_{ip}/\tau}}{\sum_{k\neq i} e^{s_{ik}/\tau}}

    Multi-view batches are passed flattened (e.g. view-major ``cat([v1, v2])`` with labels
    tiled); anchors without a positive give 0. Two averaging conventions exist:
    ``average_over="anchors_with_positives"`` (default; pytorch-metric-learning: mean over
    anchors with ≥ 1 positive, and 0 for a batch without a positive or without a negative
    pair; parity ``emb_supcon``) and ``"all_anchors"`` (HobbitLong/SupContrast: mean over
    all N anchors; parity ``emb_supcon_supcontrast``). Defaults τ = τ_b = 0.07 are
    SupContrast's (PML: τ = 0.1 and no τ_b, i.e. τ_b = τ).

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N]; ``"none"`` gives [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("supcon", temperature=0.1, base_temperature=0.1)
        >>> crit(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])).ndim
        0
    """

    def __init__(self, temperature: float = 0.07, base_temperature: float = 0.07,
                 average_over: str = "anchors_with_positives", reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(reduction, validate)
        self.temperature = check_number(temperature, "temperature", low=0.0, low_open=True)
        self.base_temperature = check_number(base_temperature, "base_temperature", low=0.0, low_open=True)
        if average_over not in AVERAGE_OVER:
            raise ValueError(f"average_over must be one of {AVERAGE_OVER}, got {average_over!r}")
        self.average_over = average_over

    def _hparams(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "base_temperature": self.base_temperature, "average_over": self.average_over}

    def forward(self, embeddings: Tensor, labels: Tensor, indices: Indices | None = None) -> Tensor:
        return LF.supcon(embeddings, labels, temperature=self.temperature, base_temperature=self.base_temperature,
                         average_over=self.average_over, indices=indices, reduction=self.reduction, validate=self.validate)


@register(
    "ntxent",
    aliases=("nt_xent", "ntxent_loss"),
    family="metric",
    kind="embedding",
    catalogue="G1",
    formula="l_ap = −log( e^{s_ap/τ} / (e^{s_ap/τ} + Σ_{n: y_n≠y_a} e^{s_an/τ}) ), mean over ordered positive pairs",
    paper=SIMCLR,
    code=f"{PML} losses/ntxent_loss.py::NTXentLoss",
    function=LF.ntxent,
    defaults_source={"temperature": "pytorch-metric-learning (0.07)"},
    notes="Labelled batch form. The paired-views form (a, b) is the contrastive family's 'infonce'.",
)
class NTXentLoss(_PairLoss):
    r"""NT-Xent (Chen et al., 2020, "A Simple Framework for Contrastive Learning of Visual
    Representations") in pytorch-metric-learning's labelled form.

    .. math:: \ell_{ap} = -\log\frac{e^{s_{ap}/\tau}}{e^{s_{ap}/\tau} + \sum_{n:\,y_n\neq y_a} e^{s_{an}/\tau}}

    for every ordered positive pair (a, p); the anchor's other positives are not in the
    denominator. ``"mean"`` averages over the positive pairs (parity ``emb_ntxent``) and is 0
    for a batch without a positive or a negative pair; ``"none"`` gives per-anchor sums [N].
    SimCLR's two-view batch is ``cat([z1, z2])`` with labels ``arange(B)`` tiled twice.

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N]; optional ``indices``.

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("ntxent", temperature=0.5)
        >>> crit(torch.randn(8, 4), torch.arange(4).repeat(2)).ndim
        0
    """

    def __init__(self, temperature: float = 0.07, reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(reduction, validate)
        self.temperature = check_number(temperature, "temperature", low=0.0, low_open=True)

    def _hparams(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def forward(self, embeddings: Tensor, labels: Tensor, indices: Indices | None = None) -> Tensor:
        return LF.ntxent(embeddings, labels, temperature=self.temperature, indices=indices,
                         reduction=self.reduction, validate=self.validate)


# ----------------------------------------------------------------------------- F6
@register(
    "threshold_consistent_margin",
    aliases=("tcm", "tcm_loss"),
    family="metric",
    kind="embedding",
    catalogue="F6",
    formula="λ+ · mean_{pos: s ≤ m+}(m+ − s) + λ− · mean_{neg: s ≥ m−}(s − m−), s = cosine similarity",
    paper=TCM_PAPER,
    code=f"{PML} losses/tcm_loss.py::ThresholdConsistentMarginLoss",
    function=LF.threshold_consistent_margin,
    defaults_source={"lambda_plus": "PML / Zhang et al. (1)", "lambda_minus": "PML / Zhang et al. (1)",
                     "margin_plus": "PML / Zhang et al. (0.9)", "margin_minus": "PML / Zhang et al. (0.5)"},
    notes="A regulariser: add it to a base metric loss (composition, e.g. multi_similarity(e, y) + tcm(e, y)).",
)
class ThresholdConsistentMarginLoss(_PairLoss):
    r"""Threshold-consistent margin (TCM) regulariser (Zhang et al., 2024 [arXiv 2023],
    "Threshold-Consistent Margin Loss for Open-World Deep Metric Learning").

    .. math:: L = \lambda_+ \frac{\sum_{(i,j)\in P} [s_{ij} \le m_+](m_+ - s_{ij})}{\sum_{P} [s_{ij} \le m_+]}
              + \lambda_- \frac{\sum_{(i,j)\in N} [s_{ij} \ge m_-](s_{ij} - m_-)}{\sum_{N} [s_{ij} \ge m_-]}

    It only penalises hard positives (cosine below m+) and hard negatives (above m−), which
    makes a single verification threshold work across classes. It is meant to be ADDED to a
    base loss (the paper pairs it with SmoothAP, MS, ...); it is one module, compose by
    summing. Defaults are the paper's / PML's. ``"none"`` gives per-anchor sums [N].

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N]; optional ``indices``.

    Example:
        >>> import torch, lossatlas as la
        >>> e, y = torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> (la.create("multi_similarity")(e, y) + la.create("tcm")(e, y)).ndim
        0
    """

    def __init__(self, lambda_plus: float = 1.0, lambda_minus: float = 1.0, margin_plus: float = 0.9,
                 margin_minus: float = 0.5, reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(reduction, validate)
        self.lambda_plus = check_number(lambda_plus, "lambda_plus", low=0.0)
        self.lambda_minus = check_number(lambda_minus, "lambda_minus", low=0.0)
        self.margin_plus = check_number(margin_plus, "margin_plus", low=-1.0, high=1.0)
        self.margin_minus = check_number(margin_minus, "margin_minus", low=-1.0, high=1.0)

    def _hparams(self) -> dict[str, Any]:
        return {"lambda_plus": self.lambda_plus, "lambda_minus": self.lambda_minus,
                "margin_plus": self.margin_plus, "margin_minus": self.margin_minus}

    def forward(self, embeddings: Tensor, labels: Tensor, indices: Indices | None = None) -> Tensor:
        return LF.threshold_consistent_margin(
            embeddings, labels, lambda_plus=self.lambda_plus, lambda_minus=self.lambda_minus,
            margin_plus=self.margin_plus, margin_minus=self.margin_minus, indices=indices,
            reduction=self.reduction, validate=self.validate)


# ----------------------------------------------------------------------------- F3 / F4 / F5 / F7
class _ClassifierLoss(Loss):
    """Losses with a learnable class-weight matrix ``weight`` [num_classes, embedding_size]."""

    def __init__(self, num_classes: int, embedding_size: int, reduction: str, validate: bool) -> None:
        super().__init__(reduction, validate)
        self.num_classes = check_int(num_classes, "num_classes")
        self.embedding_size = check_int(embedding_size, "embedding_size")
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.xavier_uniform_(self.weight)

    def _hparams(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "embedding_size": self.embedding_size}

    def logits(self, embeddings: Tensor) -> Tensor:
        """Cosine similarities [N, C] to the class centres, for prediction (no margin)."""
        u = nn.functional.normalize(embeddings, dim=1)
        return u @ nn.functional.normalize(self.weight.to(u.dtype), dim=1).T


@register(
    "normalized_softmax",
    aliases=("normface", "normalised_softmax", "norm_softmax"),
    family="metric",
    kind="embedding",
    catalogue="F3",
    formula="l_i = CE(cos θ_i / T, y_i),  cos θ_ij = ⟨e_i/‖e_i‖, W_j/‖W_j‖⟩",
    paper=NORMFACE,
    code=f"{PML} losses/normalized_softmax_loss.py::NormalizedSoftmaxLoss",
    function=LF.normalized_softmax,
    defaults_source={"temperature": "pytorch-metric-learning / Zhai & Wu 2018 (0.05, i.e. scale 20)"},
)
class NormalizedSoftmaxLoss(_ClassifierLoss):
    r"""Normalised softmax / NormFace (Wang, Xiang, Cheng & Yuille, 2017, "NormFace: L2
    Hypersphere Embedding for Face Verification").

    .. math:: \ell_i = \mathrm{CE}\big(\cos\theta_i / T,\ y_i\big),\qquad
              \cos\theta_{ij} = \frac{e_i^\top W_j}{\lVert e_i\rVert\,\lVert W_j\rVert}

    A cosine classifier; no margin. ``weight`` [C, D] is a parameter (``nn.Linear``
    layout; pytorch-metric-learning stores the transpose). Default T = 0.05 is PML's (after
    Zhai & Wu, 2018). Parity ``emb_normalized_softmax``. ``"none"``: per-sample [N].

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N] in [0, C).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("normalized_softmax", num_classes=5, embedding_size=4)
        >>> crit(torch.randn(8, 4), torch.randint(0, 5, (8,))).ndim
        0
    """

    def __init__(self, num_classes: int, embedding_size: int, temperature: float = 0.05,
                 reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(num_classes, embedding_size, reduction, validate)
        self.temperature = check_number(temperature, "temperature", low=0.0, low_open=True)

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "temperature": self.temperature}

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return LF.normalized_softmax(embeddings, labels, self.weight, temperature=self.temperature,
                                     reduction=self.reduction, validate=self.validate)


@register(
    "cosface",
    aliases=("cosface_loss", "lmcl", "am_softmax"),
    family="metric",
    kind="embedding",
    catalogue="F3",
    formula="l_i = CE(s·(cos θ_i − m·e_{y_i}), y_i)",
    paper=COSFACE,
    code=f"{PML} losses/cosface_loss.py::CosFaceLoss",
    function=LF.cosface,
    defaults_source={"margin": "pytorch-metric-learning / Wang et al. 2018 (0.35)", "scale": "pytorch-metric-learning / insightface (64)"},
)
class CosFaceLoss(_ClassifierLoss):
    r"""CosFace / large margin cosine loss (Wang et al., 2018, "CosFace: Large Margin Cosine
    Loss for Deep Face Recognition").

    .. math:: \ell_i = -\log\frac{e^{s(\cos\theta_{y_i} - m)}}{e^{s(\cos\theta_{y_i} - m)} + \sum_{j\ne y_i} e^{s\cos\theta_j}}

    Defaults m = 0.35, s = 64 are PML's (parity ``emb_cosface``). m = 0 is the normalised
    softmax with T = 1/s. ``weight`` [C, D] is a parameter.

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N] in [0, C).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("cosface", num_classes=5, embedding_size=4, margin=0.35, scale=64.0)
        >>> crit(torch.randn(8, 4), torch.randint(0, 5, (8,))).ndim
        0
    """

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 0.35, scale: float = 64.0,
                 reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(num_classes, embedding_size, reduction, validate)
        self.margin = check_number(margin, "margin")
        self.scale = check_number(scale, "scale", low=0.0, low_open=True)

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "margin": self.margin, "scale": self.scale}

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return LF.cosface(embeddings, labels, self.weight, margin=self.margin, scale=self.scale,
                          reduction=self.reduction, validate=self.validate)


@register(
    "arcface",
    aliases=("arcface_loss", "additive_angular_margin"),
    family="metric",
    kind="embedding",
    catalogue="F3",
    formula="l_i = CE(s·cos(θ_i + m·e_{y_i}), y_i); target: cos(θ+m) if θ ≤ π−m else cos θ − m sin m; m in radians",
    paper=ARCFACE,
    code=f"{PML} losses/arcface_loss.py::ArcFaceLoss; deepinsight/insightface recognition/arcface_torch/losses.py",
    function=LF.arcface,
    defaults_source={"margin": "insightface arcface_torch configs margin_list (1.0, 0.5, 0.0): 0.5 rad, the paper's m "
                               "(PML's default is 28.6° = 0.49916 rad)",
                     "scale": "insightface arcface_torch CombinedMarginLoss(64, …) / PML (64)"},
    notes="margin is in RADIANS here; pytorch-metric-learning's ArcFaceLoss takes degrees (pass math.radians(deg)).",
)
class ArcFaceLoss(_ClassifierLoss):
    r"""ArcFace / additive angular margin loss (Deng, Guo, Xue & Zafeiriou, 2019, "ArcFace:
    Additive Angular Margin Loss for Deep Face Recognition").

    .. math:: \ell_i = -\log\frac{e^{s\cos(\theta_{y_i} + m)}}{e^{s\cos(\theta_{y_i} + m)} + \sum_{j\ne y_i} e^{s\cos\theta_j}}

    When θ > π − m the target logit is ``cos θ − m sin m`` (keeps it monotone; as
    pytorch-metric-learning 2.9 and insightface's earlier ``ArcFace`` head; insightface's
    current ``CombinedMarginLoss`` is :class:`PartialFCLoss`). **The margin is in radians**
    (pytorch-metric-learning's ``margin`` is in degrees: pass ``math.radians(deg)``).
    Defaults m = 0.5 rad, s = 64 are insightface's (arcface_torch ``margin_list = (1.0,
    0.5, 0.0)``, ``CombinedMarginLoss(64, …)``) and the paper's, shared with
    :func:`lossatlas.functional.arcface`; PML's default margin is 28.6° = 0.4992 rad (parity
    ``emb_arcface`` passes it explicitly). m = 0 is the normalised softmax with T = 1/s.
    ``weight`` [C, D] is a parameter.

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N] in [0, C).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("arcface", num_classes=5, embedding_size=4)  # m = 0.5 rad, s = 64
        >>> crit(torch.randn(8, 4), torch.randint(0, 5, (8,))).ndim
        0
    """

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 0.5, scale: float = 64.0,
                 reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(num_classes, embedding_size, reduction, validate)
        self.margin = check_number(margin, "margin", low=0.0, high=math.pi)
        self.scale = check_number(scale, "scale", low=0.0, low_open=True)

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "margin": self.margin, "scale": self.scale}

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return LF.arcface(embeddings, labels, self.weight, margin=self.margin, scale=self.scale,
                          reduction=self.reduction, validate=self.validate)


@register(
    "sface",
    aliases=("sface_loss",),
    family="metric",
    kind="embedding",
    catalogue="F5",
    formula="l_i = −w_y·s cos θ_y + Σ_{j≠y} w_j·s cos θ_j,  w_y = σ(k(θ_y − a)), w_j = σ(−k(θ_j − b)) (no gradient through w)",
    paper=SFACE,
    code="zhongyy/SFace SFace_torch/head/metrics.py::SFaceLoss",
    function=LF.sface,
    defaults_source={"scale": "zhongyy/SFace (64)", "k": "zhongyy/SFace (80)", "a": "zhongyy/SFace torch head (0.8)",
                     "b": "zhongyy/SFace torch head (1.23)"},
)
class SFaceLoss(_ClassifierLoss):
    r"""SFace: sigmoid-constrained hypersphere loss (Zhong et al., 2021, "SFace:
    Sigmoid-Constrained Hypersphere Loss for Robust Face Recognition").

    .. math:: \ell_i = -\,w_{y}\, s\cos\theta_{y} + \sum_{j\ne y} w_j\, s\cos\theta_j,\quad
              w_y = \sigma\big(k(\theta_y - a)\big),\ w_j = \sigma\big(-k(\theta_j - b)\big)

    The sigmoid weights are constants (computed without gradient, as in the official code),
    so the gradient moves the target angle down until θ_y ≈ a and the non-target angles up
    until θ_j ≈ b, and then stops: easy and noisy samples are not over-fitted. The
    official code returns ``mean(intra) + mean(inter)`` = the mean of ``l_i``. The loss can
    be negative. Defaults s = 64, k = 80, a = 0.8, b = 1.23 are the official torch head's.

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N] in [0, C).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("sface", num_classes=5, embedding_size=4)
        >>> crit(torch.randn(8, 4), torch.randint(0, 5, (8,))).ndim
        0
    """

    def __init__(self, num_classes: int, embedding_size: int, scale: float = 64.0, k: float = 80.0, a: float = 0.8,
                 b: float = 1.23, reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(num_classes, embedding_size, reduction, validate)
        self.scale = check_number(scale, "scale", low=0.0, low_open=True)
        self.k = check_number(k, "k", low=0.0)
        self.a = check_number(a, "a")
        self.b = check_number(b, "b")

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "scale": self.scale, "k": self.k, "a": self.a, "b": self.b}

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return LF.sface(embeddings, labels, self.weight, scale=self.scale, k=self.k, a=self.a, b=self.b,
                        reduction=self.reduction, validate=self.validate)


@register(
    "unpg",
    aliases=("unpg_loss", "unified_negative_pair_generation"),
    family="metric",
    kind="embedding",
    catalogue="F4",
    formula="l_i = log(Σ_j e^{s·ℓ_ij} + Σ_{k∈S'_n} e^{s·s_k}) − s·ℓ_{i,y_i}; ℓ_{i,y_i} = cos(θ + m) for every θ (ArcFace head), S'_n = box-and-whisker-filtered negative-pair cosines",
    paper=UNPG_PAPER,
    code="Jung-Jun-Uk/UNPG recognition/models/build.py (box_and_whisker_algorithm) + head.py::UNPG",
    function=LF.unpg,
    defaults_source={"margin": "Jung-Jun-Uk/UNPG head.zoo.yaml arcface (0.5 rad)", "scale": "Jung-Jun-Uk/UNPG (64)",
                     "margin_type": "Jung-Jun-Uk/UNPG best setting (ArcFace head)", "whisker": "Jung-Jun-Uk/UNPG head.zoo.yaml unpg.wisk (1.5)"},
)
class UNPGLoss(_ClassifierLoss):
    r"""UNPG: unified negative pair generation (Jung et al., 2022, "Unified Negative Pair
    Generation toward Well-discriminative Feature Space for Face Recognition").

    .. math:: \ell_i = \log\Big(\sum_j e^{s\,\ell_{ij}} + \sum_{k\in S'_n} e^{s\, s_k}\Big) - s\,\ell_{i,y_i}

    ``ℓ`` are the official head's margin logits (``margin_type`` in ``arcface | cosface |
    normface``; ArcFace by default, whose target logit is ``cos(θ + m)`` for EVERY θ, as the
    official head computes it: no ``θ > π − m`` fallback and no easy margin, unlike
    :class:`ArcFaceLoss`) and ``S'_n`` the cosine similarities of the batch's unordered
    negative pairs (i < j, different labels) — the metric-loss negatives — after the
    box-and-whisker filter (sorted values x, ``Q1 = x[int(0.25 L)]``, ``Q3 = x[int(0.75 L)]``,
    keep ``[Q1 − w·IQR, Q3 + w·IQR]``) that drops noisy negatives. The official code appends
    them as extra columns to every row before the scaled cross-entropy; here the softmax
    denominator grows by one shared log-sum-exp (the same value; no [N, C + |S'_n|] matrix).
    Defaults m = 0.5, s = 64 (head.zoo.yaml ``arcface``), w = 1.5 (``unpg.wisk``).

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N] in [0, C).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("unpg", num_classes=5, embedding_size=4)
        >>> crit(torch.randn(8, 4), torch.randint(0, 5, (8,))).ndim
        0
    """

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 0.5, scale: float = 64.0,
                 margin_type: str = "arcface", whisker: float = 1.5, reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(num_classes, embedding_size, reduction, validate)
        if margin_type not in MARGIN_TYPES:
            raise ValueError(f"margin_type must be one of {MARGIN_TYPES}, got {margin_type!r}")
        self.margin = check_number(margin, "margin")
        self.scale = check_number(scale, "scale", low=0.0, low_open=True)
        self.margin_type = margin_type
        self.whisker = check_number(whisker, "whisker", low=0.0)

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "margin": self.margin, "scale": self.scale, "margin_type": self.margin_type, "whisker": self.whisker}

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return LF.unpg(embeddings, labels, self.weight, margin=self.margin, scale=self.scale, margin_type=self.margin_type,
                       whisker=self.whisker, reduction=self.reduction, validate=self.validate)


@register(
    "partial_fc",
    aliases=("partialfc", "partial_fc_loss"),
    family="metric",
    kind="embedding",
    catalogue="F7",
    formula="l_i = min(CE(s·ℓ_i, y_i), −log 1e-30) over centres S = index or {classes in the batch} ∪ random others, |S| = max(⌊r·C⌋, #present); ℓ = clamp(cos, −1, 1) with the target set to cos(θ+m) in value only (straight-through gradient)",
    paper=PFC_PAPER,
    code="deepinsight/insightface recognition/arcface_torch/partial_fc_v2.py::PartialFC_V2 + losses.py::CombinedMarginLoss",
    function=LF.partial_fc,
    defaults_source={"sample_rate": "insightface configs (0.1 for very many classes; 1.0 = full softmax)",
                     "margin": "insightface arcface_torch margin_list (1.0, 0.5, 0.0): ArcFace 0.5 rad",
                     "scale": "insightface arcface_torch CombinedMarginLoss(64, …)",
                     "margin_type": "insightface default (ArcFace)", "seed": "None = torch's global RNG"},
)
class PartialFCLoss(_ClassifierLoss):
    r"""Partial FC (An et al., 2021, "Partial FC: Training 10 Million Identities on a Single
    Machine"): a margin softmax whose denominator uses a subset of class centres, computed
    as insightface's arcface_torch (``PartialFC_V2`` with ``CombinedMarginLoss`` and
    ``DistCrossEntropy``).

    .. math:: \ell_i = \min\Big(-\log\frac{e^{s\,z_{i,y_i}}}{\sum_{j\in S} e^{s\,z_{ij}}},\ -\log 10^{-30}\Big),\qquad
              z_{ij} = \begin{cases}\cos(\theta_{ij} + m) & j = y_i\\ \cos\theta_{ij} & \text{else}\end{cases}

    ``cos θ`` is clamped to [−1, 1] and the target takes ``cos(θ + m)`` for every θ
    (CosFace: ``cos θ − m``; NormFace: ``cos θ``). As in insightface the margin is applied
    under ``no_grad``, so backward treats it as the identity (straight-through):
    ``∂L/∂cos_ij = s·(softmax_ij − 1[j = y_i])/N`` (``"mean"``); the cap at ``−log 1e-30``
    (the 1e-30 clamp of the target probability) is also value-only. The centres ``S`` are
    ``index`` when given to the call (sorted int64 class ids that include every label),
    else every positive centre (class of the batch) plus centres drawn uniformly each call
    (``seed`` makes the draws reproducible), ``|S| = max(⌊rC⌋, #present)``; ``sample_rate=1.0``
    uses all. Only the rows of ``weight`` in ``S`` get a gradient and only an [N, |S|] logit
    matrix is formed, which is what makes millions of classes fit. Single-process form:
    insightface also shards ``weight`` across GPUs. Its value equals :class:`ArcFaceLoss`'s
    while θ ≤ π − m and no loss reaches the cap; its ArcFace gradient is the straight-through
    one, not the derivative of ``cos(θ + m)``.

    Args:
        num_classes, embedding_size: shape of ``weight`` [C, D].
        sample_rate: r in (0, 1].
        margin, scale, margin_type: the margin softmax (``arcface`` radians | ``cosface`` | ``normface``).
        seed: seed of a private generator for the sampling (None: global RNG).

    Call: ``crit(embeddings, labels, index=None)``.

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N] in [0, C); ``index`` int64 [S].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("partial_fc", num_classes=100, embedding_size=4, sample_rate=0.1, seed=0)
        >>> crit(torch.randn(8, 4), torch.randint(0, 100, (8,))).ndim
        0
    """

    def __init__(self, num_classes: int, embedding_size: int, sample_rate: float = 0.1, margin: float = 0.5,
                 scale: float = 64.0, margin_type: str = "arcface", seed: int | None = None,
                 reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(num_classes, embedding_size, reduction, validate)
        if margin_type not in MARGIN_TYPES:
            raise ValueError(f"margin_type must be one of {MARGIN_TYPES}, got {margin_type!r}")
        self.sample_rate = check_number(sample_rate, "sample_rate", low=0.0, high=1.0, low_open=True)
        self.margin = check_number(margin, "margin")
        self.scale = check_number(scale, "scale", low=0.0, low_open=True)
        self.margin_type = margin_type
        self.seed = seed
        self._generator = None if seed is None else torch.Generator().manual_seed(int(seed))

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "sample_rate": self.sample_rate, "margin": self.margin, "scale": self.scale,
                "margin_type": self.margin_type}

    def forward(self, embeddings: Tensor, labels: Tensor, index: Tensor | None = None) -> Tensor:
        return LF.partial_fc(embeddings, labels, self.weight, sample_rate=self.sample_rate, margin=self.margin,
                             scale=self.scale, margin_type=self.margin_type, generator=self._generator,
                             index=index, reduction=self.reduction, validate=self.validate)
