"""Metric-learning losses (catalogue rows F1–F7; SupCon G2 and NT-Xent G1 in their labelled,
embedding form).

Call convention (input kind ``embedding``): ``loss(embeddings [N, D], labels [N])``, labels
of an integer class-index dtype (int64, or uint8: the dtypes ``F.cross_entropy`` takes; others
raise a ``TypeError`` naming ``labels``). SupCon and NT-Xent also take two views
``loss(z1 [N, D], z2 [N, D])`` (a floating-point second argument) and SupContrast's
``loss(features [bsz, n_views, D], labels [bsz] or None)``. Embeddings are raw; every loss L2-normalises them inside, so gradients flow through the
normalisation. Pair / triplet losses also take ``indices=`` from a miner
(:mod:`lossatlas.miners`); they are the module twins of their functions
(:class:`~lossatlas.losses.FunctionalLoss`). Classifier-style losses hold the class-weight
matrix as the parameter ``weight`` [C, D] (``nn.Linear`` layout): their modules are written
by hand, validate with their function's spec and call the same function with that
parameter (:meth:`_ClassifierLoss.functional_kwargs` gives the keywords).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .. import functional as LF
from .._docs import fill_doc
from .._spec import FunctionSpec, fresh, spec_of
from .._validation import check_int
from ..distances import Distance
from ..functional.metric import Indices
from ..reducers import Reducer
from ..registry import Paper, register
from ._base import FunctionalLoss, Loss

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


def _pieces(ref_emb: Tensor | None, ref_labels: Tensor | None, distance: Distance | None,
            reducer: Reducer | None) -> dict[str, Any]:
    """The composition keywords a call passed (none: the loss's own path, and losses without
    them, such as TCM, keep their signature)."""
    given = {"ref_emb": ref_emb, "ref_labels": ref_labels, "distance": distance, "reducer": reducer}
    return {k: v for k, v in given.items() if v is not None}


class _PairLoss(FunctionalLoss):
    """Module twin of a pair / triplet loss function: its call takes a miner's ``indices=``."""

    # the signature names the call keyword (the metric benchmark task and readers look for
    # `indices` in it); FunctionalLoss.forward takes any inputs and keywords
    def forward(self, embeddings: Tensor, labels: Tensor, indices: Indices | None = None, *,
                ref_emb: Tensor | None = None, ref_labels: Tensor | None = None,
                distance: Distance | None = None, reducer: Reducer | None = None) -> Tensor:
        return super().forward(embeddings, labels, indices=indices, **_pieces(ref_emb, ref_labels, distance, reducer))


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
)
class ContrastiveLoss(_PairLoss, function=LF.contrastive):
    r"""Contrastive (pair) loss (Hadsell, Chopra & LeCun, 2006, "Dimensionality Reduction by
    Learning an Invariant Mapping"), in pytorch-metric-learning's form.

    .. math:: \ell^+_{ij} = [d_{ij} - m_+]_+,\quad \ell^-_{ij} = [m_- - d_{ij}]_+,\quad
              d_{ij} = \lVert u_i - u_j \rVert_2,\ u = e / \lVert e \rVert

    over all ordered pairs i ≠ j (same label: positive, different: negative), or the pairs
    a miner gives through ``indices=``. ``reduction="mean"`` is the reference's:
    mean of the positive terms > 0 plus mean of the negative terms > 0 (a part with no
    non-zero term adds 0); ``average_nonzero=False`` averages over all pairs instead.
    ``"none"`` returns per-anchor sums of terms [N], ``"sum"`` their total. Identical
    points are at distance exactly 0 (their positive term is 0 and not counted in the
    mean), as pytorch-metric-learning's ``torch.cdist`` gives. Defaults (m+ = 0, m− = 1)
    are pytorch-metric-learning's (parity case ``emb_contrastive``).

    {args}

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N]; optional ``indices``.

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("contrastive", neg_margin=1.0)
        >>> float(crit(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))) >= 0
        True
    """


@register(
    "triplet_margin",
    aliases=("triplet", "triplet_loss", "triplet_margin_loss"),
    family="metric",
    kind="embedding",
    catalogue="F1",
    formula="l_apn = relu(d_ap − d_an + margin), d = ‖u_a − u_·‖, u = e/‖e‖; mean over l > 0",
    paper=FACENET,
    code=f"{PML} losses/triplet_margin_loss.py::TripletMarginLoss",
)
class TripletMarginLoss(_PairLoss, function=LF.triplet_margin):
    r"""Triplet margin loss (Schroff, Kalenichenko & Philbin, 2015, "FaceNet: A Unified
    Embedding for Face Recognition and Clustering").

    .. math:: \ell_{apn} = [\,d_{ap} - d_{an} + \alpha\,]_+,\qquad d = \lVert u_a - u_\cdot\rVert_2

    over every triplet (label[p] = label[a], p ≠ a, label[n] ≠ label[a]) or the triplets of
    a miner (``indices=``; e.g. :class:`lossatlas.miners.BatchHardMiner`,
    :class:`lossatlas.miners.BatchSemiHardMiner`). ``"mean"`` averages the triplets with a
    non-zero loss (pytorch-metric-learning's AvgNonZeroReducer; parity ``emb_triplet_margin``);
    ``average_nonzero=False`` averages all. ``"none"``: per-anchor sums [N]. Default
    α = 0.2 is FaceNet's (PML uses 0.05). Without a miner, eager CPU calls gather each
    anchor's positives ([N, P, N], one host read of P); CUDA and ``torch.compile`` form the
    dense [N, N, N] tensor: use a miner for large batches.

    {args}

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N]; optional ``indices``.

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("triplet_margin", margin=0.2)
        >>> crit(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])).ndim
        0
    """


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
)
class MultiSimilarityLoss(_PairLoss, function=LF.multi_similarity):
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

    {args}

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N]; ``"none"`` gives [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("multi_similarity", miner_epsilon=0.1)
        >>> crit(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])).ndim
        0
    """


# ----------------------------------------------------------------------------- G2 / G1
class _MultiViewLoss(_PairLoss):
    """SupCon / NT-Xent: the second argument is integer labels, a float second view, or (with
    [bsz, n_views, D] features) optional labels; see :func:`lossatlas.functional.metric._views`."""

    def forward(self, embeddings: Tensor, labels: Tensor | None = None, indices: Indices | None = None, *,
                ref_emb: Tensor | None = None, ref_labels: Tensor | None = None,
                distance: Distance | None = None, reducer: Reducer | None = None) -> Tensor:
        return FunctionalLoss.forward(self, embeddings, labels, indices=indices,
                                      **_pieces(ref_emb, ref_labels, distance, reducer))


@register(
    "supcon",
    aliases=("supervised_contrastive", "supcon_loss"),
    family="metric",
    kind="embedding",
    catalogue="G2",
    formula="l_i = −(τ/τ_b) · (1/|P_i|) Σ_{p∈P_i} log( e^{s_ip/τ} / Σ_{k≠i} e^{s_ik/τ} )",
    paper=SUPCON_PAPER,
    code="HobbitLong/SupContrast losses.py::SupConLoss; " + f"{PML} losses/supcon_loss.py::SupConLoss",
)
class SupConLoss(_MultiViewLoss, function=LF.supcon):
    r"""Supervised contrastive loss (Khosla et al., 2020, "Supervised Contrastive Learning"),
    the L_out form, on one batch of (multi-view) embeddings with labels.

    .. math:: \ell_i = -\frac{\tau}{\tau_b}\,\frac{1}{|P_i|}\sum_{p\in P_i}
              \log\frac{e^{s_{ip}/\tau}}{\sum_{k\neq i} e^{s_{ik}/\tau}}

    Three call forms, told apart by the second argument (unambiguous: labels are integers,
    views are floats):

    * ``crit(embeddings [N, D], labels [N])``, integer labels: every other row with the
      anchor's label is a positive (a multi-view batch flattened, e.g. ``cat([v1, v2])`` with
      labels tiled);
    * ``crit(features [bsz, n_views, D], labels [bsz])``: HobbitLong/SupContrast's layout,
      the same loss as the flattened batch ``torch.cat(torch.unbind(features, 1))`` (row
      ``v·bsz + i`` is ``features[i, v]``) with labels tiled ``n_views`` times; ``labels=None``
      (or omitted) gives every sample its own label, SupContrast's unsupervised (SimCLR) case;
    * ``crit(z1 [N, D], z2 [N, D])``, a float second argument: two views of the same N
      samples, the same as ``features = stack([z1, z2], 1)`` without labels.

    ``"none"`` and a miner's ``indices`` refer to the rows of the flattened batch.
    SupContrast's ``SupConLoss(contrast_mode='all')`` is ``average_over="all_anchors"``
    (equal to the default whenever every anchor has a positive, e.g. n_views ≥ 2, and the
    batch has a negative pair); its features are unit rows from the model, here the rows are
    normalised inside. Anchors without a positive give 0. Two averaging conventions exist:
    ``average_over="anchors_with_positives"`` (default; pytorch-metric-learning: mean over
    anchors with ≥ 1 positive, and 0 for a batch without a positive or without a negative
    pair; parity ``emb_supcon``) and ``"all_anchors"`` (HobbitLong/SupContrast: mean over
    all N anchors; parity ``emb_supcon_supcontrast``). PML's reducer averages the non-zero
    anchor losses, which is the same mean unless an anchor's loss is exactly 0 (it rounds to
    0, or a mined anchor has one positive and no negative): PML drops such an anchor, lossatlas
    counts it (docs/differences.md). Defaults τ = τ_b = 0.07 are SupContrast's (PML: τ = 0.1
    and no τ_b, i.e. τ_b = τ).

    {args}

    Shapes: ``embeddings`` [N, D] (raw) with ``labels`` int64 [N], or two float views
    [N, D], or ``features`` [bsz, n_views, D] with ``labels`` [bsz] or ``None``; ``"none"``
    gives the flattened batch's per-anchor losses ([N], [2N] or [n_views·bsz]).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("supcon", temperature=0.1, base_temperature=0.1)
        >>> crit(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])).ndim
        0
        >>> crit(torch.randn(4, 2, 8), torch.tensor([0, 0, 1, 1])).ndim  # SupContrast's [bsz, n_views, D]
        0
    """


@register(
    "ntxent",
    aliases=("nt_xent", "ntxent_loss"),
    family="metric",
    kind="embedding",
    catalogue="G1",
    formula="l_ap = −log( e^{s_ap/τ} / (e^{s_ap/τ} + Σ_{n: y_n≠y_a} e^{s_an/τ}) ), mean over ordered positive pairs",
    paper=SIMCLR,
    code=f"{PML} losses/ntxent_loss.py::NTXentLoss",
    notes="Labelled batch form (embeddings, labels), SimCLR's two views (z1, z2) (a float second argument) or "
          "[bsz, n_views, D] features; the contrastive family's 'infonce' is the paired-views form with more options.",
)
class NTXentLoss(_MultiViewLoss, function=LF.ntxent):
    r"""NT-Xent (Chen et al., 2020, "A Simple Framework for Contrastive Learning of Visual
    Representations") in pytorch-metric-learning's labelled form.

    .. math:: \ell_{ap} = -\log\frac{e^{s_{ap}/\tau}}{e^{s_{ap}/\tau} + \sum_{n:\,y_n\neq y_a} e^{s_{an}/\tau}}

    for every ordered positive pair (a, p); the anchor's other positives are not in the
    denominator. ``"mean"`` averages over the positive pairs (parity ``emb_ntxent``) and is 0
    for a batch without a positive or a negative pair; ``"none"`` gives per-anchor sums [N].
    Default τ = 0.07 is pytorch-metric-learning's.

    Three call forms, told apart by the second argument (unambiguous: labels are integers,
    views are floats):

    * ``crit(embeddings [N, D], labels [N])``, integer labels (pytorch-metric-learning's form);
    * ``crit(z1 [N, D], z2 [N, D])``, a float second argument: SimCLR's NT-Xent on two views
      of the same N samples. Each of the 2N rows has one positive, the other view of its
      sample, and the other 2N − 2 rows as negatives:
      ``ℓ_i = −log e^{s_{i,j(i)}/τ} / Σ_{k≠i} e^{s_ik/τ}``, averaged over the 2N rows. It is
      the labelled form on ``cat([z1, z2])`` with labels ``cat([arange(N), arange(N)])``;
    * ``crit(features [bsz, n_views, D], labels [bsz] or None)``: SupContrast's layout,
      flattened view-major (row ``v·bsz + i`` is ``features[i, v]``) with labels tiled;
      ``None`` gives every sample its own label.

    ``"none"`` and a miner's ``indices`` refer to the rows of the flattened batch.

    {args}

    Shapes: ``embeddings`` [N, D] (raw) with ``labels`` int64 [N], or two float views
    [N, D] (``"none"``: [2N]), or ``features`` [bsz, n_views, D] with ``labels`` [bsz] or
    ``None``; optional ``indices``.

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("ntxent", temperature=0.5)
        >>> crit(torch.randn(8, 4), torch.arange(4).repeat(2)).ndim
        0
        >>> crit(torch.randn(4, 16), torch.randn(4, 16)).ndim  # SimCLR: two views z1, z2
        0
    """


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
    notes="A regulariser: add it to a base metric loss (composition, e.g. multi_similarity(e, y) + tcm(e, y)).",
)
class ThresholdConsistentMarginLoss(_PairLoss, function=LF.threshold_consistent_margin):
    r"""Threshold-consistent margin (TCM) regulariser (Zhang et al., 2024 [arXiv 2023],
    "Threshold-Consistent Margin Loss for Open-World Deep Metric Learning").

    .. math:: L = \lambda_+ \frac{\sum_{(i,j)\in P} [s_{ij} \le m_+](m_+ - s_{ij})}{\sum_{P} [s_{ij} \le m_+]}
              + \lambda_- \frac{\sum_{(i,j)\in N} [s_{ij} \ge m_-](s_{ij} - m_-)}{\sum_{N} [s_{ij} \ge m_-]}

    It only penalises hard positives (cosine below m+) and hard negatives (above m−), which
    makes a single verification threshold work across classes. It is meant to be ADDED to a
    base loss (the paper pairs it with SmoothAP, MS, ...); it is one module, compose by
    summing. Defaults are the paper's / PML's. ``"none"`` gives per-anchor sums [N].

    {args}

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N]; optional ``indices``.

    Example:
        >>> import torch, lossatlas as la
        >>> e, y = torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> (la.create("multi_similarity")(e, y) + la.create("tcm")(e, y)).ndim
        0
    """


# ----------------------------------------------------------------------------- F3 / F4 / F5 / F7
_HEAD_ARGS = (
    "    num_classes: C, the number of class centres (rows of ``weight``).",
    "    embedding_size: D, the embedding width (columns of ``weight``).",
)


class _ClassifierLoss(Loss):
    """A loss with a learnable class-weight matrix ``weight`` [num_classes, embedding_size]
    (``nn.Parameter``, Xavier-uniform initialised): ``class X(_ClassifierLoss, function=f)``.

    The hyper-parameters are ``f``'s (checked by its spec, once, here); ``forward`` calls
    ``f``'s body with ``weight`` as its third input, and :meth:`functional_kwargs` gives the
    keywords that make ``f(embeddings, labels, **kw)`` this module's call. A ``{args}`` line
    of the docstring becomes the Args block (``num_classes``, ``embedding_size``, then ``f``'s
    hyper-parameters and ``extra_args``).
    """

    spec: ClassVar[FunctionSpec]
    function: ClassVar[Callable[..., Tensor]]
    weight: nn.Parameter

    def __init_subclass__(cls, function: Callable[..., Tensor] | None = None, extra_args: tuple[str, ...] = (),
                          **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if function is None:
            return
        cls.spec = spec_of(function)
        cls.function = staticmethod(function)
        rows = cls.spec.args_doc().split("\n")[1:]
        fill_doc(args="\n".join(["Args:", *_HEAD_ARGS, *rows, *extra_args]))(cls)

    def __init__(self, num_classes: int, embedding_size: int, **hparams: Any) -> None:
        values = self.spec.check_all(hparams)
        unknown = set(values) - set(self.spec.hparams)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown hyper-parameter(s) {sorted(unknown)}")
        super().__init__(values.pop("reduction"), values.pop("validate"))
        self.num_classes = check_int(num_classes, "num_classes")
        self.embedding_size = check_int(embedding_size, "embedding_size")
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.xavier_uniform_(self.weight)
        for name, value in values.items():
            setattr(self, name, value)

    def hparams(self) -> dict[str, Any]:
        """The hyper-parameters as the function takes them (``reduction`` and ``validate`` included)."""
        return {name: getattr(self, name) for name in self.spec.hparams}

    def functional_kwargs(self) -> dict[str, Any]:
        """``weight`` (this module's parameter) and the hyper-parameters."""
        return {"weight": self.weight, **self.hparams()}

    def _hparams(self) -> dict[str, Any]:
        shown = {k: v for k, v in self.hparams().items() if k not in ("reduction", "validate")}
        return {"num_classes": self.num_classes, "embedding_size": self.embedding_size, **shown}

    def logits(self, embeddings: Tensor) -> Tensor:
        """Cosine similarities [N, C] to the class centres, for prediction (no margin)."""
        u = nn.functional.normalize(embeddings, dim=1)
        return u @ nn.functional.normalize(self.weight.to(u.dtype), dim=1).T

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return fresh(self.spec.function(embeddings, labels, self.weight, **self.hparams()))


_NORM = spec_of(LF.normalized_softmax).defaults
_COS = spec_of(LF.cosface).defaults
_ARC = spec_of(LF.arcface).defaults
_SFACE = spec_of(LF.sface).defaults
_UNPG = spec_of(LF.unpg).defaults
_PFC = spec_of(LF.partial_fc).defaults


@register(
    "normalized_softmax",
    aliases=("normface", "normalised_softmax", "norm_softmax"),
    family="metric",
    kind="embedding",
    catalogue="F3",
    formula="l_i = CE(cos θ_i / T, y_i),  cos θ_ij = ⟨e_i/‖e_i‖, W_j/‖W_j‖⟩",
    paper=NORMFACE,
    code=f"{PML} losses/normalized_softmax_loss.py::NormalizedSoftmaxLoss",
)
class NormalizedSoftmaxLoss(_ClassifierLoss, function=LF.normalized_softmax):
    r"""Normalised softmax / NormFace (Wang, Xiang, Cheng & Yuille, 2017, "NormFace: L2
    Hypersphere Embedding for Face Verification").

    .. math:: \ell_i = \mathrm{CE}\big(\cos\theta_i / T,\ y_i\big),\qquad
              \cos\theta_{ij} = \frac{e_i^\top W_j}{\lVert e_i\rVert\,\lVert W_j\rVert}

    A cosine classifier; no margin. ``weight`` [C, D] is a parameter (``nn.Linear``
    layout; pytorch-metric-learning stores the transpose). Default T = 0.05 is PML's (after
    Zhai & Wu, 2018). Parity ``emb_normalized_softmax``. ``"none"``: per-sample [N].

    {args}

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N] in [0, C).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("normalized_softmax", num_classes=5, embedding_size=4)
        >>> crit(torch.randn(8, 4), torch.randint(0, 5, (8,))).ndim
        0
    """

    temperature: float

    def __init__(self, num_classes: int, embedding_size: int, temperature: float = _NORM["temperature"],
                 reduction: str = _NORM["reduction"], validate: bool = _NORM["validate"]) -> None:
        super().__init__(num_classes, embedding_size, temperature=temperature, reduction=reduction, validate=validate)


@register(
    "cosface",
    aliases=("cosface_loss", "lmcl", "am_softmax"),
    family="metric",
    kind="embedding",
    catalogue="F3",
    formula="l_i = CE(s·(cos θ_i − m·e_{y_i}), y_i)",
    paper=COSFACE,
    code=f"{PML} losses/cosface_loss.py::CosFaceLoss",
)
class CosFaceLoss(_ClassifierLoss, function=LF.cosface):
    r"""CosFace / large margin cosine loss (Wang et al., 2018, "CosFace: Large Margin Cosine
    Loss for Deep Face Recognition").

    .. math:: \ell_i = -\log\frac{e^{s(\cos\theta_{y_i} - m)}}{e^{s(\cos\theta_{y_i} - m)} + \sum_{j\ne y_i} e^{s\cos\theta_j}}

    Defaults m = 0.35, s = 64 are PML's (parity ``emb_cosface``). m = 0 is the normalised
    softmax with T = 1/s. ``weight`` [C, D] is a parameter.

    {args}

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N] in [0, C).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("cosface", num_classes=5, embedding_size=4, margin=0.35, scale=64.0)
        >>> crit(torch.randn(8, 4), torch.randint(0, 5, (8,))).ndim
        0
    """

    margin: float
    scale: float

    def __init__(self, num_classes: int, embedding_size: int, margin: float = _COS["margin"], scale: float = _COS["scale"],
                 reduction: str = _COS["reduction"], validate: bool = _COS["validate"]) -> None:
        super().__init__(num_classes, embedding_size, margin=margin, scale=scale, reduction=reduction, validate=validate)


@register(
    "arcface",
    aliases=("arcface_loss", "additive_angular_margin"),
    family="metric",
    kind="embedding",
    catalogue="F3",
    formula="l_i = CE(s·cos(θ_i + m·e_{y_i}), y_i); target: cos(θ+m) if θ ≤ π−m else cos θ − m sin m; m in radians",
    paper=ARCFACE,
    code=f"{PML} losses/arcface_loss.py::ArcFaceLoss; deepinsight/insightface recognition/arcface_torch/losses.py",
    notes="margin is in RADIANS here; pytorch-metric-learning's ArcFaceLoss takes degrees (pass math.radians(deg)).",
)
class ArcFaceLoss(_ClassifierLoss, function=LF.arcface):
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

    {args}

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N] in [0, C).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("arcface", num_classes=5, embedding_size=4)  # m = 0.5 rad, s = 64
        >>> crit(torch.randn(8, 4), torch.randint(0, 5, (8,))).ndim
        0
    """

    margin: float
    scale: float

    def __init__(self, num_classes: int, embedding_size: int, margin: float = _ARC["margin"], scale: float = _ARC["scale"],
                 reduction: str = _ARC["reduction"], validate: bool = _ARC["validate"]) -> None:
        super().__init__(num_classes, embedding_size, margin=margin, scale=scale, reduction=reduction, validate=validate)


@register(
    "sface",
    aliases=("sface_loss",),
    family="metric",
    kind="embedding",
    catalogue="F5",
    formula="l_i = −w_y·s cos θ_y + Σ_{j≠y} w_j·s cos θ_j,  w_y = σ(k(θ_y − a)), w_j = σ(−k(θ_j − b)) (no gradient through w)",
    paper=SFACE,
    code="zhongyy/SFace SFace_torch/head/metrics.py::SFaceLoss",
)
class SFaceLoss(_ClassifierLoss, function=LF.sface):
    r"""SFace: sigmoid-constrained hypersphere loss (Zhong et al., 2021, "SFace:
    Sigmoid-Constrained Hypersphere Loss for Robust Face Recognition").

    .. math:: \ell_i = -\,w_{y}\, s\cos\theta_{y} + \sum_{j\ne y} w_j\, s\cos\theta_j,\quad
              w_y = \sigma\big(k(\theta_y - a)\big),\ w_j = \sigma\big(-k(\theta_j - b)\big)

    The sigmoid weights are constants (computed without gradient, as in the official code),
    so the gradient moves the target angle down until θ_y ≈ a and the non-target angles up
    until θ_j ≈ b, and then stops: easy and noisy samples are not over-fitted. The
    gradient is therefore not the derivative of the value unless k = 0 (constant weights
    1/2). The official code returns ``mean(intra) + mean(inter)`` = the mean of ``l_i``. The
    loss can be negative. Defaults s = 64, k = 80, a = 0.8, b = 1.23 are the official torch
    head's.

    {args}

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N] in [0, C).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("sface", num_classes=5, embedding_size=4)
        >>> crit(torch.randn(8, 4), torch.randint(0, 5, (8,))).ndim
        0
    """

    scale: float
    k: float
    a: float
    b: float

    def __init__(self, num_classes: int, embedding_size: int, scale: float = _SFACE["scale"], k: float = _SFACE["k"],
                 a: float = _SFACE["a"], b: float = _SFACE["b"], reduction: str = _SFACE["reduction"],
                 validate: bool = _SFACE["validate"]) -> None:
        super().__init__(num_classes, embedding_size, scale=scale, k=k, a=a, b=b, reduction=reduction, validate=validate)


@register(
    "unpg",
    aliases=("unpg_loss", "unified_negative_pair_generation"),
    family="metric",
    kind="embedding",
    catalogue="F4",
    formula="l_i = log(Σ_j e^{s·ℓ_ij} + Σ_{k∈S'_n} e^{s·s_k}) − s·ℓ_{i,y_i}; ℓ_{i,y_i} = cos(θ + m) for every θ (ArcFace head), S'_n = box-and-whisker-filtered negative-pair cosines",
    paper=UNPG_PAPER,
    code="Jung-Jun-Uk/UNPG recognition/models/build.py (box_and_whisker_algorithm) + head.py::UNPG",
)
class UNPGLoss(_ClassifierLoss, function=LF.unpg):
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

    {args}

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N] in [0, C).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("unpg", num_classes=5, embedding_size=4)
        >>> crit(torch.randn(8, 4), torch.randint(0, 5, (8,))).ndim
        0
    """

    margin: float
    scale: float
    margin_type: str
    whisker: float

    def __init__(self, num_classes: int, embedding_size: int, margin: float = _UNPG["margin"], scale: float = _UNPG["scale"],
                 margin_type: str = _UNPG["margin_type"], whisker: float = _UNPG["whisker"],
                 reduction: str = _UNPG["reduction"], validate: bool = _UNPG["validate"]) -> None:
        super().__init__(num_classes, embedding_size, margin=margin, scale=scale, margin_type=margin_type, whisker=whisker,
                         reduction=reduction, validate=validate)


@register(
    "partial_fc",
    aliases=("partialfc", "partial_fc_loss"),
    family="metric",
    kind="embedding",
    catalogue="F7",
    formula="l_i = min(CE(s·ℓ_i, y_i), −log 1e-30) over centres S = index or {classes in the batch} ∪ random others, |S| = max(⌊r·C⌋, #present); ℓ = clamp(cos, −1, 1) with the target set to cos(θ+m) in value only (straight-through gradient)",
    paper=PFC_PAPER,
    code="deepinsight/insightface recognition/arcface_torch/partial_fc_v2.py::PartialFC_V2 + losses.py::CombinedMarginLoss",
    defaults_source={"seed": "None = torch's global RNG"},
)
class PartialFCLoss(_ClassifierLoss, function=LF.partial_fc, extra_args=(
        "    seed: seed of a private generator for the sampling (``None``: torch's global RNG). Default ``None``.",)):
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

    {args}

    Call: ``crit(embeddings, labels, index=None)``.

    Shapes: ``embeddings`` [N, D] (raw); ``labels`` int64 [N] in [0, C); ``index`` int64 [S].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("partial_fc", num_classes=100, embedding_size=4, sample_rate=0.1, seed=0)
        >>> crit(torch.randn(8, 4), torch.randint(0, 100, (8,))).ndim
        0
    """

    sample_rate: float
    margin: float
    scale: float
    margin_type: str

    def __init__(self, num_classes: int, embedding_size: int, sample_rate: float = _PFC["sample_rate"],
                 margin: float = _PFC["margin"], scale: float = _PFC["scale"], margin_type: str = _PFC["margin_type"],
                 seed: int | None = None, reduction: str = _PFC["reduction"], validate: bool = _PFC["validate"]) -> None:
        super().__init__(num_classes, embedding_size, sample_rate=sample_rate, margin=margin, scale=scale,
                         margin_type=margin_type, reduction=reduction, validate=validate)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        self.seed = seed
        self._generator = None if seed is None else torch.Generator().manual_seed(seed)

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "seed": self.seed}

    def _generator_copy(self) -> torch.Generator | None:
        if self._generator is None:
            return None
        copy = torch.Generator(device=self._generator.device)
        copy.set_state(self._generator.get_state())
        return copy

    def functional_kwargs(self) -> dict[str, Any]:
        """``weight``, the hyper-parameters and a *copy* of the sampling generator: the
        function then draws this module's next centres and leaves the module's draws as
        they were."""
        return {**super().functional_kwargs(), "generator": self._generator_copy()}

    def forward(self, embeddings: Tensor, labels: Tensor, index: Tensor | None = None) -> Tensor:
        return fresh(self.spec.function(embeddings, labels, self.weight, generator=self._generator, index=index,
                                        **self.hparams()))
