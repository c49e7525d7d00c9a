"""Contrastive losses on paired views (catalogue rows G1, G3–G8 and G16; G9 tiling and G10
distributed negatives are options of every similarity-matrix loss here).

Input kind ``pair``: ``(a[N, D], b[N, D])`` raw embeddings of two views (row i of each is a
positive pair), L2-normalised inside unless ``normalize=False``. SupCon and NT-Xent with
class labels (kind ``embedding``) live in :mod:`lossatlas.losses.metric`.

Every method is defined by its function in :mod:`lossatlas.functional.ssl` (names,
defaults, checks and the defaults' sources). Decoupled, debiased, hard-negative
contrastive, Barlow Twins and W-MSE are that function's module twins
(:class:`~lossatlas.losses.FunctionalLoss`); InfoNCE and SigLIP keep a module of their own
for the learnable temperature / scale and bias (``learnable=True``), MoCHi for its call
signature (``forward(a, b, queue, generator, ...)``); all three validate with the
function's spec and call the same function, and ``functional_kwargs()`` gives the keywords
that make the function equal the module. The SogCLR family (G16: ``sogclr``, ``isogclr``,
``sogclr_bimodal``, ``isogclr_bimodal``) keeps its per-sample moving averages in
:class:`~lossatlas.losses._state.PerSampleState` buffers and is called with ``index=``.

Scaling options shared by InfoNCE, SigLIP, decoupled, debiased and hard-negative losses:
``tiled`` (True / False / "auto") computes the loss in blocks with a custom backward, with
the dense form's values and gradients and memory linear in N; ``distributed=True`` takes
negatives from every process (all-gather with gradients). For the encoder side of a large
batch see :func:`lossatlas.distributed.cached_backward` (GradCache).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .. import functional as LF
from .._docs import fill_doc
from .._spec import FunctionSpec, as_bool, fresh, positive, spec_of
from ..registry import Paper, register
from ._base import FunctionalLoss, Loss
from ._state import PerSampleState

__all__ = [
    "InfoNCELoss",
    "SigLIPLoss",
    "DecoupledContrastiveLoss",
    "DebiasedContrastiveLoss",
    "HardNegativeContrastiveLoss",
    "MoCHiLoss",
    "BarlowTwinsLoss",
    "WMSELoss",
    "SogCLRLoss",
    "ISogCLRLoss",
    "SogCLRBimodalLoss",
    "ISogCLRBimodalLoss",
]

CPC_PAPER = Paper("A. van den Oord, Y. Li, O. Vinyals", "Representation Learning with Contrastive Predictive Coding", "arXiv", 2018, "1807.03748")
SIGLIP_PAPER = Paper("X. Zhai, B. Mustafa, A. Kolesnikov, L. Beyer", "Sigmoid Loss for Language Image Pre-Training", "ICCV", 2023, "2303.15343")
DCL_PAPER = Paper("C.-H. Yeh, C.-Y. Hong, Y.-C. Hsu, T.-L. Liu, Y. Chen, Y. LeCun", "Decoupled Contrastive Learning", "ECCV", 2022, "2110.06848")
DEBIASED_PAPER = Paper("C.-Y. Chuang, J. Robinson, L. Yen-Chen, A. Torralba, S. Jegelka", "Debiased Contrastive Learning", "NeurIPS", 2020, "2007.00224")
HCL_PAPER = Paper("J. Robinson, C.-Y. Chuang, S. Sra, S. Jegelka", "Contrastive Learning with Hard Negative Samples", "ICLR", 2021, "2010.04592")
MOCHI_PAPER = Paper("Y. Kalantidis, M. B. Sariyildiz, N. Pion, P. Weinzaepfel, D. Larlus", "Hard Negative Mixing for Contrastive Learning", "NeurIPS", 2020, "2010.01028")
BARLOW_PAPER = Paper("J. Zbontar, L. Jing, I. Misra, Y. LeCun, S. Deny", "Barlow Twins: Self-Supervised Learning via Redundancy Reduction", "ICML", 2021, "2103.03230")
WMSE_PAPER = Paper("A. Ermolov, A. Siarohin, E. Sangineto, N. Sebe", "Whitening for Self-Supervised Representation Learning", "ICML", 2021, "2007.06346")

_INFONCE = spec_of(LF.infonce)
_SIGLIP = spec_of(LF.siglip)
_MOCHI = spec_of(LF.mochi)


def _args(spec_doc: str, *module_only: str) -> str:
    """An ``Args:`` block: the module-only arguments, then the function's."""
    return "\n".join(["Args:", *(f"    {line}" for line in module_only), *spec_doc.split("\n")[1:]])


# ----------------------------------------------------------------------------- G1
@register(
    "infonce",
    aliases=("info_nce", "clip", "clip_loss"),
    family="contrastive",
    kind="pair",
    catalogue="G1",
    formula="l_i = -log softmax_j(â_i·b̂_j / T)_i ; symmetric: (l_i(a→b) + l_i(b→a)) / 2",
    paper=CPC_PAPER,
    code="mlfoundations/open_clip src/open_clip/loss.py::ClipLoss; KevinMusgrave/pytorch-metric-learning NTXentLoss",
    function=LF.infonce,
    defaults_source={**_INFONCE.sources, "max_scale": "CLIP clamps the learnable logit scale at 100",
                     "learnable": "a fixed temperature (CLIP learns it: learnable=True)"},
)
@fill_doc(args=_args(
    _INFONCE.args_doc(),
    "learnable: make the temperature an ``nn.Parameter`` ``logit_scale = log(1/T)``, as CLIP; the",
    "    scale ``exp(logit_scale)`` is clamped at ``max_scale``. Default ``False``.",
    "max_scale: the clamp of the learnable scale 1/T. Default ``100.0`` (CLIP).",
))
class InfoNCELoss(Loss):
    r"""InfoNCE / NT-Xent with in-batch negatives; one-way or symmetric (CLIP) form.

    .. math:: \ell_i^{a\to b} = -\log \frac{\exp(\hat a_i\cdot\hat b_i/T)}{\sum_j \exp(\hat a_i\cdot\hat b_j/T)},
              \qquad \ell_i = \tfrac12(\ell_i^{a\to b} + \ell_i^{b\to a})\ \text{(symmetric)}

    van den Oord, Li & Vinyals (2018), "Representation Learning with Contrastive Predictive
    Coding"; the symmetric form is CLIP's (Radford et al. 2021) as in open_clip's
    ``ClipLoss`` (parity case ``pair_infonce``); ``symmetric=False`` is the one-way a→b loss
    (pytorch-metric-learning ``NTXentLoss`` with ``ref_emb``, case ``pair_infonce_oneway``).
    ``intra_view_negatives=True`` gives SimCLR's NT-Xent (Chen et al. 2020): the other rows
    of the anchor's own view are negatives too (2N - 2 negatives per anchor).
    ``forward(a, b, labels)`` makes every same-label key a positive (the loss averages
    ``-log p`` over them): with ``intra_view_negatives=True`` that is SupCon (Khosla et al.
    2020) on the 2N views with ``base_temperature = temperature``, and it tiles and
    distributes like the rest (the positives' mean similarity is linear: class sums).
    The function is :func:`lossatlas.functional.infonce`; ``functional_kwargs()`` hands it
    the (learnable) temperature.

    {args}

    Shapes: ``a``, ``b`` [N, D], ``labels`` int64 [N] (optional); output scalar or [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("infonce", temperature=0.1)
        >>> float(crit(torch.randn(8, 4), torch.randn(8, 4))) > 0
        True
    """

    logit_scale: nn.Parameter | None

    def __init__(
        self,
        temperature: float = 0.07,
        symmetric: bool = True,
        intra_view_negatives: bool = False,
        learnable: bool = False,
        max_scale: float = 100.0,
        normalize: bool = True,
        tiled: bool | str = "auto",
        block_size: int | None = None,
        distributed: bool = False,
        group: Any = None,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        if isinstance(temperature, Tensor):
            raise TypeError("temperature must be a real number (learnable=True makes it a parameter)")
        checked = _INFONCE.check_all({
            "temperature": temperature, "symmetric": symmetric, "intra_view_negatives": intra_view_negatives,
            "normalize": normalize, "tiled": tiled, "block_size": block_size, "distributed": distributed,
            "group": group, "reduction": reduction, "validate": validate,
        })
        super().__init__(checked.pop("reduction"), checked.pop("validate"))
        self.learnable = as_bool(learnable, "learnable")
        self.max_scale = positive(max_scale, "max_scale")
        self._temperature: float = checked.pop("temperature")
        self.symmetric: bool = checked["symmetric"]
        self.intra_view_negatives: bool = checked["intra_view_negatives"]
        self.normalize: bool = checked["normalize"]
        self.tiled: bool | str = checked["tiled"]
        self.block_size: int | None = checked["block_size"]
        self.distributed: bool = checked["distributed"]
        self.group: Any = checked["group"]
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / self._temperature))) if self.learnable else None

    @property
    def temperature(self) -> float | Tensor:
        """T: the float given, or ``1 / min(exp(logit_scale), max_scale)`` when learnable."""
        if self.logit_scale is None:
            return self._temperature
        return 1.0 / self.logit_scale.exp().clamp(max=self.max_scale)

    def _hparams(self) -> dict[str, Any]:
        return {"temperature": self._temperature, "symmetric": self.symmetric, "learnable": self.learnable, "tiled": self.tiled}

    def functional_kwargs(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "symmetric": self.symmetric,
                "intra_view_negatives": self.intra_view_negatives, "normalize": self.normalize, "tiled": self.tiled,
                "block_size": self.block_size, "distributed": self.distributed, "group": self.group,
                "reduction": self.reduction, "validate": self.validate}

    def forward(self, a: Tensor, b: Tensor, labels: Tensor | None = None) -> Tensor:
        return fresh(_INFONCE.function(a, b, labels=labels, **self.functional_kwargs()))


# ----------------------------------------------------------------------------- G3
@register(
    "siglip",
    aliases=("sigmoid_contrastive", "siglip_loss"),
    family="contrastive",
    kind="pair",
    catalogue="G3",
    formula="l_i = -Σ_j log σ(z_ij (t·â_i·b̂_j + b)), z_ii = 1, z_ij = -1 (i≠j); mean = Σ_i l_i / N",
    paper=SIGLIP_PAPER,
    code="mlfoundations/open_clip src/open_clip/loss.py::SigLipLoss; google-research/big_vision",
    function=LF.siglip,
    defaults_source={**_SIGLIP.sources, "learnable": "fixed scale and bias (SigLIP learns them: learnable=True)"},
)
@fill_doc(args=_args(
    _SIGLIP.args_doc(),
    "learnable: make ``logit_scale = log t`` and ``logit_bias = b`` ``nn.Parameter``\\ s (as SigLIP).",
    "    Default ``False``.",
))
class SigLIPLoss(Loss):
    r"""SigLIP pairwise sigmoid loss (Zhai, Mustafa, Kolesnikov & Beyer, 2023, "Sigmoid Loss
    for Language Image Pre-Training").

    .. math:: \ell_i = -\sum_j \log \sigma\big(z_{ij}\,(t\,\hat a_i\cdot\hat b_j + b)\big),\qquad
              z_{ii} = 1,\ z_{ij} = -1\ (i \ne j)

    Every pair is an independent binary problem, so no softmax normaliser couples the
    batch. ``reduction="mean"`` is ``Σ_i ℓ_i / N``: open_clip's sum over the N² pairs
    divided by N (parity case ``pair_siglip``), not a mean over pairs; ``"none"`` is per
    anchor a_i. The defaults t = 10, b = -10 are the paper's initial values (so that the
    many negatives start near 0 loss). The function is :func:`lossatlas.functional.siglip`;
    ``functional_kwargs()`` hands it the (learnable) scale and bias.

    {args}

    Shapes: ``a``, ``b`` [N, D]; output scalar or [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("siglip", learnable=True)
        >>> crit(torch.randn(8, 4), torch.randn(8, 4)).shape
        torch.Size([])
    """

    logit_scale: nn.Parameter | None
    logit_bias: nn.Parameter | None

    def __init__(
        self,
        scale: float = 10.0,
        bias: float = -10.0,
        learnable: bool = False,
        normalize: bool = True,
        tiled: bool | str = "auto",
        block_size: int | None = None,
        distributed: bool = False,
        group: Any = None,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        if isinstance(scale, Tensor) or isinstance(bias, Tensor):
            raise TypeError("scale and bias must be real numbers (learnable=True makes them parameters)")
        checked = _SIGLIP.check_all({
            "scale": scale, "bias": bias, "normalize": normalize, "tiled": tiled, "block_size": block_size,
            "distributed": distributed, "group": group, "reduction": reduction, "validate": validate,
        })
        super().__init__(checked.pop("reduction"), checked.pop("validate"))
        self.learnable = as_bool(learnable, "learnable")
        self._scale: float = checked["scale"]
        self._bias: float = checked["bias"]
        self.normalize: bool = checked["normalize"]
        self.tiled: bool | str = checked["tiled"]
        self.block_size: int | None = checked["block_size"]
        self.distributed: bool = checked["distributed"]
        self.group: Any = checked["group"]
        if self.learnable:
            self.logit_scale = nn.Parameter(torch.tensor(math.log(self._scale)))
            self.logit_bias = nn.Parameter(torch.tensor(self._bias))
        else:
            self.logit_scale = None
            self.logit_bias = None

    @property
    def scale(self) -> float | Tensor:
        """t: the float given, or ``exp(logit_scale)`` when learnable."""
        return self._scale if self.logit_scale is None else self.logit_scale.exp()

    @property
    def bias(self) -> float | Tensor:
        """b: the float given, or ``logit_bias`` when learnable."""
        return self._bias if self.logit_bias is None else self.logit_bias

    def _hparams(self) -> dict[str, Any]:
        return {"scale": self._scale, "bias": self._bias, "learnable": self.learnable, "tiled": self.tiled}

    def functional_kwargs(self) -> dict[str, Any]:
        return {"scale": self.scale, "bias": self.bias, "normalize": self.normalize, "tiled": self.tiled,
                "block_size": self.block_size, "distributed": self.distributed, "group": self.group,
                "reduction": self.reduction, "validate": self.validate}

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return fresh(_SIGLIP.function(a, b, **self.functional_kwargs()))


# ----------------------------------------------------------------------------- G4
@register(
    "decoupled_contrastive",
    aliases=("decoupled_cl", "dcl_loss"),
    family="contrastive",
    kind="pair",
    catalogue="G4",
    formula="L(a,b)_i = -w_i â_i·b̂_i/T + log Σ_{j≠i}[exp(â_i·â_j/T) + exp(â_i·b̂_j/T)]; l_i = (L(a,b)_i + L(b,a)_i)/2",
    paper=DCL_PAPER,
    code="lightly-ai/lightly lightly/loss/dcl_loss.py::DCLLoss (no official code)",
)
class DecoupledContrastiveLoss(FunctionalLoss, function=LF.decoupled_contrastive):
    r"""Decoupled contrastive learning, DCL (Yeh et al., 2022, "Decoupled Contrastive Learning").

    .. math:: L(a,b)_i = -w_i\,\hat a_i\cdot\hat b_i/T + \log\sum_{j\ne i}\big[e^{\hat a_i\cdot\hat a_j/T} + e^{\hat a_i\cdot\hat b_j/T}\big]

    InfoNCE with the positive removed from the denominator (2N - 2 negatives), which
    removes the negative-positive coupling that makes InfoNCE need large batches. The value
    can be negative. Symmetric ``(L(a,b) + L(b,a))/2`` by default, as lightly's ``DCLLoss``
    (the reference, parity case ``pair_decoupled_contrastive``; no official code exists).
    ``weighted=True`` is DCLW: ``w_i = 2 - N softmax_i(â·b̂ / σ)`` on detached similarities.
    A single pair has no negative: its loss is 0.

    {args}

    Shapes: ``a``, ``b`` [N, D]; output scalar or [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("decoupled_contrastive")
        >>> crit(torch.randn(8, 4), torch.randn(8, 4)).shape
        torch.Size([])
    """


# ----------------------------------------------------------------------------- G5
@register(
    "debiased_contrastive",
    aliases=("debiased_cl",),
    family="contrastive",
    kind="pair",
    catalogue="G5",
    formula="Ng = max((Σ_neg e^{s/T} - τ⁺ M e^{s⁺/T})/(1-τ⁺), M e^{-1/T}), l = -log(e^{s⁺/T}/(e^{s⁺/T}+Ng)), M = 2N-2",
    paper=DEBIASED_PAPER,
    code="chingyaoc/DCL main.py::train (debiased=True)",
)
class DebiasedContrastiveLoss(FunctionalLoss, function=LF.debiased_contrastive):
    r"""Debiased contrastive loss (Chuang, Robinson, Yen-Chen, Torralba & Jegelka, 2020,
    "Debiased Contrastive Learning").

    .. math:: N_g = \max\Big(\frac{\sum_{k\in\text{neg}} e^{s_k/T} - \tau^+ M e^{s^+/T}}{1-\tau^+},\ M e^{-1/T}\Big),\qquad
              \ell = -\log\frac{e^{s^+/T}}{e^{s^+/T} + N_g}

    In-batch "negatives" include same-class samples with probability τ⁺ (the class prior);
    the estimator subtracts their expected contribution. 2N anchors (both views), each
    with the M = 2N - 2 other samples as negatives, as chingyaoc/DCL's ``main.py`` (parity
    case ``pair_debiased_contrastive``); the clamp (zero gradient where active) is part of
    the reference. τ⁺ = 0 is SimCLR's NT-Xent without the positive in the denominator.
    ``"none"`` returns per pair [N] the mean of its two anchors' losses.

    {args}

    Shapes: ``a``, ``b`` [N, D]; output scalar or [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("debiased_contrastive", tau_plus=0.1)
        >>> crit(torch.randn(8, 4), torch.randn(8, 4)).shape
        torch.Size([])
    """


# ----------------------------------------------------------------------------- G6
@register(
    "hard_negative_contrastive",
    aliases=("hcl", "hard_negative_cl"),
    family="contrastive",
    kind="pair",
    catalogue="G6",
    formula="reweight = Σ_neg e^{(β+1)s/T} / mean_neg e^{βs/T}; Ng = max((reweight - τ⁺ M e^{s⁺/T})/(1-τ⁺), M e^{-1/T}); l = -log(e^{s⁺/T}/(e^{s⁺/T}+Ng))",
    paper=HCL_PAPER,
    code="joshr17/HCL image/main.py::criterion (estimator='hard')",
)
class HardNegativeContrastiveLoss(FunctionalLoss, function=LF.hard_negative_contrastive):
    r"""Hard negative sampling, HCL (Robinson, Chuang, Sra & Jegelka, 2021, "Contrastive
    Learning with Hard Negative Samples").

    .. math:: \text{reweight} = \frac{\sum_k w_k e^{s_k/T}}{\tfrac1M\sum_k w_k},\ w_k = e^{\beta s_k/T},\qquad
              N_g = \max\Big(\frac{\text{reweight} - \tau^+ M e^{s^+/T}}{1-\tau^+}, M e^{-1/T}\Big)

    The debiased estimator with negatives importance-weighted towards the hard ones
    (concentration β). β = 0 is :class:`DebiasedContrastiveLoss`; β = 0 and τ⁺ = 0 is
    NT-Xent without the positive in the denominator. Matches joshr17/HCL's ``criterion``
    with ``estimator='hard'`` (parity case ``pair_hard_negative_contrastive``), including
    the gradient through the weights (they are not detached there). The weighted sum is
    computed as ``M·exp(lse_{(β+1)/T} - lse_{β/T})``, so the tiled form needs no N×N matrix.
    ``"none"`` returns per pair [N] the mean of its two anchors' losses.

    {args}

    Shapes: ``a``, ``b`` [N, D]; output scalar or [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("hcl", beta=1.0)
        >>> crit(torch.randn(8, 4), torch.randn(8, 4)).shape
        torch.Size([])
    """


# ----------------------------------------------------------------------------- G7
@register(
    "mochi",
    aliases=("hard_negative_mixing",),
    family="contrastive",
    kind="pair",
    catalogue="G7",
    formula="l_i = -log e^{q·k/T} / (e^{q·k/T} + Σ_{n∈queue} e^{q·n/T} + Σ_h e^{q·h/T} + Σ_h' e^{q·h'/T}), "
            "h = normalize(α n_{r1} + (1-α) n_{r2}), h' = normalize(β q + (1-β) n_r), n_r the r-th most similar queue row",
    paper=MOCHI_PAPER,
    code="(paper, Sec. 4; no official code: the authors released pretrained models only)",
    function=LF.mochi,
    defaults_source=_MOCHI.sources,
)
@fill_doc(args=_MOCHI.args_doc())
class MoCHiLoss(Loss):
    r"""MoCHi, hard negative mixing (Kalantidis, Sariyildiz, Pion, Weinzaepfel & Larlus, 2020,
    "Hard Negative Mixing for Contrastive Learning", NeurIPS).

    .. math:: \ell_i = -\log\frac{e^{q_i\cdot k_i/T}}{e^{q_i\cdot k_i/T} + \sum_{n\in Q} e^{q_i\cdot n/T}
              + \sum_{h\in H_i} e^{q_i\cdot h/T} + \sum_{h'\in H'_i} e^{q_i\cdot h'/T}}

    MoCo's InfoNCE of query ``q_i = a_i`` against key ``k_i = b_i``, whose negatives are the
    rows ``n`` of the ``queue`` Q [K, D] (MoCo's memory bank, passed to ``forward``) and only
    those: the other keys of the batch are not negatives. As in MoCo, the key branch carries
    no gradient (``b`` receives zeros), nor do the queue and the synthetic points; the query
    gets its gradient through every logit.

    Hard negatives (paper Sec. 4.1): the queue rows ranked by similarity to ``q_i``, most
    similar first (rank 0); the first ``min(num_hard, K)`` are the hard negatives of query i.
    Each query gets ``num_mix`` (s) mixtures of two of them and ``num_query_mix`` (s') mixtures
    of itself with one of them (Sec. 4.2), L2-normalised:

    * ``h = normalize(α n_{r1} + (1 - α) n_{r2})``, ranks ``(r1, r2) = mix_index[i, m]`` and
      ``α = mix_alpha[i, m]``;
    * ``h' = normalize(β q + (1 - β) n_r)``, ``r = query_mix_index[i, m]`` and
      ``β = query_mix_beta[i, m]``.

    Without these keywords they are drawn as in the paper, with ``generator`` (or torch's global
    RNG), in this order: ``mix_index`` (uniform ranks, with replacement), ``mix_alpha``
    (α ~ U(0, 1)), ``query_mix_index``, ``query_mix_beta`` (β ~ U(0, 0.5), so the query weighs
    less than the negative); the weights are drawn in float64 and cast, so one seed gives the
    same mixing for float64, float32 or bfloat16 inputs. Passing them makes the loss
    deterministic.

    ``queue=None`` (no memory bank) uses the batch's own keys, detached, as the queue: the
    negatives of query i are then ``b_j``, j ≠ i (MoCHi on in-batch negatives).

    {args}

    Defaults: the paper names its runs MoCHi (N, s, s') and ablates the three counts per
    dataset without fixing one setting; 1024 / 1024 / 256 is this library's choice (see
    ``lossatlas.info("mochi").defaults_source``). T = 0.2 is MoCo v2's, which MoCHi uses.
    The module holds no state: it is :func:`lossatlas.functional.mochi` with its
    hyper-parameters (``functional_kwargs()``) and a call signature of its own.

    Shapes: ``a``, ``b`` [N, D]; ``forward(a, b, queue=None, generator=None, *, mix_index,
    mix_alpha, query_mix_index, query_mix_beta)`` with ``queue`` [K, D], ``mix_index`` int64
    [N, s, 2], ``mix_alpha`` [N, s], ``query_mix_index`` int64 [N, s'], ``query_mix_beta``
    [N, s']; output scalar or [N]. Memory ``N (s + s') D`` for the synthetic points, plus a
    block of the N x K similarity matrix.

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("mochi", num_hard=4, num_mix=8, num_query_mix=2)
        >>> crit(torch.randn(8, 4), torch.randn(8, 4), queue=torch.randn(16, 4)).shape
        torch.Size([])
    """

    def __init__(
        self,
        temperature: float = 0.2,
        num_hard: int = 1024,
        num_mix: int = 1024,
        num_query_mix: int = 256,
        normalize: bool = True,
        tiled: bool | str = "auto",
        block_size: int | None = None,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        checked = _MOCHI.check_all({
            "temperature": temperature, "num_hard": num_hard, "num_mix": num_mix, "num_query_mix": num_query_mix,
            "normalize": normalize, "tiled": tiled, "block_size": block_size, "reduction": reduction, "validate": validate,
        })
        super().__init__(checked.pop("reduction"), checked.pop("validate"))
        self.temperature: float = checked["temperature"]
        self.num_hard: int = checked["num_hard"]
        self.num_mix: int = checked["num_mix"]
        self.num_query_mix: int = checked["num_query_mix"]
        self.normalize: bool = checked["normalize"]
        self.tiled: bool | str = checked["tiled"]
        self.block_size: int | None = checked["block_size"]

    def _hparams(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "num_hard": self.num_hard, "num_mix": self.num_mix, "num_query_mix": self.num_query_mix}

    def functional_kwargs(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "num_hard": self.num_hard, "num_mix": self.num_mix,
                "num_query_mix": self.num_query_mix, "normalize": self.normalize, "tiled": self.tiled,
                "block_size": self.block_size, "reduction": self.reduction, "validate": self.validate}

    def forward(
        self,
        a: Tensor,
        b: Tensor,
        queue: Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        mix_index: Tensor | None = None,
        mix_alpha: Tensor | None = None,
        query_mix_index: Tensor | None = None,
        query_mix_beta: Tensor | None = None,
    ) -> Tensor:
        return fresh(_MOCHI.function(a, b, queue=queue, generator=generator, mix_index=mix_index, mix_alpha=mix_alpha,
                                     query_mix_index=query_mix_index, query_mix_beta=query_mix_beta,
                                     **self.functional_kwargs()))


# ----------------------------------------------------------------------------- G8
@register(
    "barlow_twins",
    aliases=("barlowtwins",),
    family="contrastive",
    kind="pair",
    catalogue="G8",
    formula="C = bn(a)ᵀ bn(b) / N; L = Σ_i (1 - C_ii)² + λ Σ_{i≠j} C_ij²",
    paper=BARLOW_PAPER,
    code="facebookresearch/barlowtwins main.py::BarlowTwins.forward",
)
class BarlowTwinsLoss(FunctionalLoss, function=LF.barlow_twins):
    r"""Barlow Twins redundancy reduction (Zbontar, Jing, Misra, LeCun & Deny, 2021,
    "Barlow Twins: Self-Supervised Learning via Redundancy Reduction").

    .. math:: C = \tfrac1N\,\mathrm{bn}(a)^\top \mathrm{bn}(b),\qquad
              \mathcal L = \sum_i (1 - C_{ii})^2 + \lambda \sum_{i\ne j} C_{ij}^2

    ``bn`` standardises each feature over the batch with the biased variance and
    ``eps = 1e-5`` inside the square root (``BatchNorm1d(affine=False)`` in training mode, as
    facebookresearch/barlowtwins; parity case ``pair_barlow_twins``). No L2 normalisation.
    The loss lives on the D × D cross-correlation, so its memory is O(N·D + D²) at any N.
    With ``distributed=True`` the batch statistics and C are those of the concatenated batch.
    One loss per batch: ``"none"`` gives its D per-feature rows. A batch of one sample
    cannot be standardised (``ValueError``); an empty batch gives 0 (``"none"``: an empty
    tensor) with a zero gradient.

    {args}

    Shapes: ``a``, ``b`` [N, D] with N >= 2; output scalar or [D].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("barlow_twins")
        >>> float(crit(torch.randn(16, 4), torch.randn(16, 4))) > 0
        True
    """


@register(
    "wmse",
    aliases=("w_mse", "whitening_mse"),
    family="contrastive",
    kind="pair",
    catalogue="G8",
    formula="z = normalize(W(x - μ)) per view and sub-batch, WΣWᵀ = I (Cholesky); l_i = 2 - 2 z_a,i·z_b,i",
    paper=WMSE_PAPER,
    code="htdt/self-supervised methods/w_mse.py + methods/whitening.py::Whitening2d",
)
class WMSELoss(FunctionalLoss, function=LF.wmse):
    r"""W-MSE, whitening MSE (Ermolov, Siarohin, Sangineto & Sebe, 2021, "Whitening for
    Self-Supervised Representation Learning").

    .. math:: z = \mathrm{normalize}\big(L^{-1}(x - \mu)\big),\ LL^\top = \Sigma,\qquad
              \ell_i = \lVert z^a_i - z^b_i\rVert^2 = 2 - 2\,z^a_i\cdot z^b_i

    Each view is whitened separately (Cholesky whitening of its unbiased covariance) inside
    random sub-batches of ``w_size`` rows, repeated ``w_iter`` times with fresh
    permutations, then the normalised MSE of the positive pairs is taken, as
    htdt/self-supervised ``WMSE`` with ``Whitening2d``. Whitening scatters the batch on the
    unit sphere, so no negatives are needed. Needs ``min(w_size, N) > D`` (or ``eps > 0``):
    otherwise a ``ValueError`` says so. A singular sub-batch covariance raises with
    ``validate=True`` (a host read) and gives NaN with ``validate=False`` or under
    ``torch.compile``. Randomness of the permutation: the call keyword ``generator``, or
    torch's global RNG.

    {args}

    Shapes: ``a``, ``b`` [N, D], N a multiple of ``min(w_size, N)``; output scalar or [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("wmse", w_size=16)
        >>> float(crit(torch.randn(32, 4), torch.randn(32, 4))) >= 0
        True
    """


# ----------------------------------------------------------------------------- G16
SOGCLR_PAPER = Paper("Z. Yuan, Y. Wu, Z.-H. Qiu, X. Du, L. Zhang, D. Zhou, T. Yang",
                     "Provable Stochastic Optimization for Global Contrastive Learning: Small Batch Does Not Harm "
                     "Performance", "ICML", 2022, "2202.12387")
ISOGCLR_PAPER = Paper("Z.-H. Qiu, Q. Hu, Z. Yuan, D. Zhou, L. Zhang, T. Yang",
                      "Not All Semantics are Created Equal: Contrastive Self-supervised Learning with Automatic "
                      "Temperature Individualization", "ICML", 2023, "2305.11965")

_DATA_LEN_DOC = ("data_len: the number of training samples: every state table has one entry per dataset index "
                 "``0 .. data_len - 1`` (LibAUC ``N``, default 100000 there; required here, the state must match the dataset).")


class _GlobalContrastiveLoss(Loss):
    """SogCLR-family module: the function's hyper-parameters, and its state in
    :class:`PerSampleState` buffers (``state_dict``, ``.to()``, ``.double()``).

    A subclass names its function and its state (``name -> initial value``: ``0.0`` or
    ``"temperature"``); the constructor's signature is ``(data_len, *, <the function's
    hyper-parameters>)``, generated from the function as :class:`FunctionalLoss` does.
    """

    spec: ClassVar[FunctionSpec]
    function: ClassVar[Callable[..., Tensor]]
    state_names: ClassVar[dict[str, float | str]]

    def __init_subclass__(cls, function: Callable[..., Tensor] | None = None,
                          states: dict[str, float | str] | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if function is None or states is None:
            return
        spec = spec_of(function)
        cls.spec = spec
        cls.function = staticmethod(function)
        cls.state_names = states
        params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                  inspect.Parameter("data_len", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=int)]
        params += [spec.signature.parameters[n].replace(kind=inspect.Parameter.KEYWORD_ONLY) for n in spec.hparams]

        def __init__(self: _GlobalContrastiveLoss, *args: Any, **kw: Any) -> None:
            _GlobalContrastiveLoss._construct(self, *args, **kw)

        __init__.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        __init__.__doc__ = f"Build the loss: ``data_len`` and the arguments of :func:`{function.__module__}.{function.__name__}`."
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        setattr(cls, "__init__", __init__)  # noqa: B010 - a generated constructor with the function's signature

    def _construct(self, *args: Any, **kwargs: Any) -> None:
        sig = inspect.signature(type(self).__init__)
        try:
            bound = sig.bind(self, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{type(self).__name__}: {exc}") from None
        bound.apply_defaults()
        values = {n: v for n, v in bound.arguments.items() if n not in ("self", "data_len")}
        values = self.spec.check_all(values)
        if "tau_min" in values and values["tau_min"] > values["tau_max"]:
            raise ValueError(f"tau_min must be <= tau_max, got tau_min={values['tau_min']}, tau_max={values['tau_max']}")
        Loss.__init__(self, values.pop("reduction"), values.pop("validate"))
        self._hparam_names = tuple(values)
        for name, value in values.items():
            setattr(self, name, value)
        data_len = bound.arguments["data_len"]
        for name, init in self.state_names.items():
            start = float(values["temperature"]) if init == "temperature" else float(init)
            state = PerSampleState(data_len, init=start)
            # float64 tables: a temperature of 0.01 stays 0.01 (a float32 table holds 0.0099999998, which
            # .double() keeps), and long moving averages round less; .float() / .to() still convert them
            state.value = torch.full((data_len,), start, dtype=torch.float64)
            self.add_module(name, state)
        self.data_len: int = data_len

    def hparams(self) -> dict[str, Any]:
        """The hyper-parameters as the function takes them."""
        return {n: getattr(self, n) for n in (*self._hparam_names, "reduction", "validate")}

    def _hparams(self) -> dict[str, Any]:
        return {"data_len": self.data_len, **{n: getattr(self, n) for n in self._hparam_names if n != "group"}}

    def state(self) -> dict[str, Tensor]:
        """The state tables (the buffers themselves, [data_len] each), by the function's keyword names."""
        out: dict[str, Tensor] = {}
        for name in self.state_names:
            state = self.get_submodule(name)
            assert isinstance(state, PerSampleState)
            out[name] = state.value
        return out

    def functional_kwargs(self) -> dict[str, Any]:
        """The hyper-parameters and a *copy* of the state: the function then gives this
        module's next result (with the same ``index=``) and leaves the module unchanged."""
        return {**self.hparams(), **{k: v.clone() for k, v in self.state().items()}}

    def reset(self) -> None:
        """Every state entry back to its initial value (as a new loss)."""
        for name in self.state_names:
            state = self.get_submodule(name)
            assert isinstance(state, PerSampleState)
            state.reset()

    def forward(self, a: Tensor, b: Tensor, index: Tensor | None = None) -> Tensor:
        if index is None:
            raise ValueError(f"{type(self).__name__} keeps a state per training sample: call it with "
                             "index=<int64 [N], the dataset index of each row>")
        return fresh(self.spec.function(a, b, index=index, **self.hparams(), **self.state()))


_GCL_CALL = """Call: ``crit(a [N, D], b [N, D], index=int64 [N])``, ``index`` the distinct dataset indices of the
rows; output scalar, or [N] per anchor pair for ``reduction="none"``."""


@register(
    "sogclr",
    aliases=("gcl", "global_contrastive"),
    family="contrastive",
    kind="pair",
    catalogue="G16",
    formula="u_i ← (1-γ)u_i + γ mean_k e^{l_ik/τ};  l_i = Σ_views -(l_ii - Σ_k (e^{l_ik/τ}/u_i) l_ik / (2(B-1)))",
    paper=SOGCLR_PAPER,
    code="Optimization-AI/LibAUC libauc/losses/contrastive.py::GCLoss_v1",
)
@fill_doc(args=_args(LF.sogclr.spec.args_doc(), _DATA_LEN_DOC), call=_GCL_CALL)  # type: ignore[attr-defined]
class SogCLRLoss(_GlobalContrastiveLoss, function=LF.sogclr, states={"u": 0.0}):
    r"""SogCLR: the global contrastive loss optimised with a per-sample moving average (Yuan,
    Wu, Qiu, Du, Zhang, Zhou & Yang, 2022, "Provable Stochastic Optimization for Global
    Contrastive Learning: Small Batch Does Not Harm Performance"), unimodal form.

    .. math:: F(w) = \frac1n\sum_i \tau \log \mathbb{E}_{z\in S_i^-} \exp\Big(\frac{h_i(z)}{\tau}\Big),\qquad
              h_i(z) = \hat a_i\cdot z - \hat a_i\cdot \hat b_i

    The inner mean over *all* of sample i's negatives in the dataset is tracked by
    ``u_i ← (1-γ) u_i + γ \frac{1}{2(B-1)}\sum_k e^{l_ik/τ}`` (the batch's 2(B-1) negatives of
    anchor ``â_i``: ``â_i·b̂_k``, ``â_i·â_k``, k ≠ i), and the loss is LibAUC's surrogate
    ``ℓ_i = -(l_ii - Σ_k p_ik l_ik/(2(B-1)))`` with ``p_ik = e^{l_ik/τ}/max(u_i, ε)`` detached,
    summed over the two views (anchor ``b̂_i`` likewise); ``"mean"`` averages over the pairs.
    Its gradient is the SogCLR gradient estimator; its value is not F (a weighted mean
    of the logits). **State:** ``u`` [data_len], a :class:`~lossatlas.losses._state.PerSampleState`
    (float64, whatever the inputs' dtype; ``state_dict``, ``.to()``), written *in place* at ``index``: ``u ← (u1 + u2)/2`` of the
    two views' estimates, both from the same old ``u``. A call whose whole batch is unseen
    (state 0) uses γ = 1 (LibAUC; a batch that mixes unseen and seen samples uses γ for all).
    Under ``torch.distributed`` (``distributed=True``, default) the batch of every process
    is gathered, so each process returns the loss of the concatenated batch, gets its exact
    gradient, and holds the same table (tests/test_sogclr_ddp.py). ``tiled`` computes the
    negative sums blockwise (the tiled log-sum-exp of :mod:`lossatlas.distributed.tiled`
    gives ``Σ_k e^{l_ik/τ}`` and, through its backward, ``Σ_k p_ik ∇l_ik``; one more
    no-grad pass gives the value's weighted mean). The function
    :func:`lossatlas.functional.sogclr` takes the state explicitly (``u=``, ``index=``);
    :meth:`functional_kwargs` hands it a copy. Parity: LibAUC ``GCLoss(mode='unimodal')``
    (cases ``sogclr``).

    {args}

    {call}

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("sogclr", data_len=100)
        >>> crit(torch.randn(8, 16), torch.randn(8, 16), index=torch.arange(8)).shape
        torch.Size([])
    """


@register(
    "isogclr",
    aliases=("isogclr_unimodal", "rgcl"),
    family="contrastive",
    kind="pair",
    catalogue="G16",
    formula="SogCLR with τ_i per sample: τ_i ← clamp(τ_i - η m_i, τ_min, τ_max), m_i ← (1-β)m_i + β(log u_i + ρ - Σ_k p_ik l_ik/τ_i/(2(B-1)))",
    paper=ISOGCLR_PAPER,
    code="Optimization-AI/LibAUC libauc/losses/contrastive.py::GCLoss_v1 (enable_isogclr=True)",
)
@fill_doc(args=_args(LF.isogclr.spec.args_doc(), _DATA_LEN_DOC), call=_GCL_CALL)  # type: ignore[attr-defined]
class ISogCLRLoss(_GlobalContrastiveLoss, function=LF.isogclr,
                  states={"u": 0.0, "tau": "temperature", "tau_grad": 0.0}):
    r"""iSogCLR: SogCLR with individualised temperatures (Qiu, Hu, Yuan, Zhou, Zhang & Yang,
    2023, "Not All Semantics are Created Equal: Contrastive Self-supervised Learning with
    Automatic Temperature Individualization"), unimodal form.

    .. math:: F(w, \tau) = \frac1n\sum_i \tau_i \log \mathbb{E}_{z\in S_i^-} \exp\Big(\frac{h_i(z)}{\tau_i}\Big) + \tau_i\rho

    :class:`SogCLRLoss` with ``e^{l_ik/τ_i}``, ``τ_i = tau[index_i]`` read before the call.
    After the loss, each sample's temperature takes one momentum step on the objective's
    τ-gradient estimate, as LibAUC: ``g_i = ½Σ_views(log u_i + ρ - Σ_k p_ik (l_ik/τ_i)/(2(B-1)))``,
    ``tau_grad_i ← (1-β) tau_grad_i + β g_i``, ``τ_i ← clamp(τ_i - η tau_grad_i, τ_min, τ_max)``.
    **State:** ``u`` (zeros), ``tau`` (``temperature``) and ``tau_grad`` (zeros), each
    [data_len] in a :class:`~lossatlas.losses._state.PerSampleState`. LibAUC keeps the
    graph of ``u`` in the stored temperatures (memory grows across calls); here every state
    update is detached (same values). The state tables are float64 (see :class:`SogCLRLoss`). Distributed and tiled as :class:`SogCLRLoss`.
    Parity: case ``isogclr``.

    {args}

    {call}

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("isogclr", data_len=100)
        >>> crit(torch.randn(8, 16), torch.randn(8, 16), index=torch.arange(8)).shape
        torch.Size([])
    """


@register(
    "sogclr_bimodal",
    aliases=("gcl_bimodal", "sogclr_clip"),
    family="contrastive",
    kind="pair",
    catalogue="G16",
    formula="d_ij = a_i·b_j - a_i·b_i; u_i ← (1-γ)u_i + γ mean_{j≠i} e^{d_ij/τ}; l_i = ½(Σ_j (e^{d_ij/τ}/u_i) d_ij + text side)",
    paper=SOGCLR_PAPER,
    code="Optimization-AI/LibAUC libauc/losses/contrastive.py::GCLoss_v2",
)
@fill_doc(args=_args(LF.sogclr_bimodal.spec.args_doc(), _DATA_LEN_DOC), call=_GCL_CALL)  # type: ignore[attr-defined]
class SogCLRBimodalLoss(_GlobalContrastiveLoss, function=LF.sogclr_bimodal,
                        states={"u_a": 0.0, "u_b": 0.0, "max_a": 0.0, "max_b": 0.0}):
    r"""SogCLR, bimodal (image-text) form (Yuan et al., 2022, "Provable Stochastic Optimization
    for Global Contrastive Learning: Small Batch Does Not Harm Performance"; LibAUC ``GCLoss_v2``).

    .. math:: F(w) = \frac1n\sum_i \tau \log \mathbb{E}_{t\in T_i^-} e^{h_{x_i}(t)/\tau}
              + \tau \log \mathbb{E}_{x\in I_i^-} e^{h_{t_i}(x)/\tau}

    ``a`` are image features, ``b`` text features (taken as given: CLIP pipelines pass unit
    rows; ``normalize=True`` normalises inside). Image side: ``d_ij = a_i·b_j - a_i·b_i``;
    with the running shift ``max_a_i ← max(max_a_i, max_j d_ij/τ)`` (j = i, d_ii = 0,
    included; against overflow at small τ), ``e_ij = e^{d_ij/τ - max_a_i}``,
    ``u_a_i ← max((1-γ) u_a_i e^{max_old - max_new} + γ Σ_{j≠i} e_ij/(B-1), ε)``,
    ``p_ij = e_ij/u_a_i`` (detached) and the term ``Σ_{j≠i} p_ij d_ij``; the text side
    likewise with ``d'_ij = b_i·a_j - b_i·a_i``, ``u_b``, ``max_b``; ``ℓ_i`` is the mean of the
    two sides. As LibAUC's code, the terms are not divided by B-1, so the gradient is
    (B-1) times the gradient estimator of F (scale the learning rate accordingly). The floor
    ``ε = 1e-20`` is LibAUC's: because the shift is at least ``d_ii/τ = 0``, a row whose
    negatives all lie far below its positive (``d_ij < -46τ``, e.g. -0.5 at τ = 0.01) has
    ``u`` below ε, and the floor then scales that row's weights down. γ = 1 for a side
    whose state is 0 over the whole batch. **State:** ``u_a``, ``u_b``, ``max_a``,
    ``max_b`` [data_len] (zeros), written in place at ``index``. Under ``torch.distributed``
    the running shifts are gathered and written on every process like ``u`` (LibAUC writes
    them at the local indices only, so its processes' tables drift apart). Parity: case
    ``sogclr_bimodal``.

    {args}

    {call}

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("sogclr_bimodal", data_len=100, normalize=True)
        >>> crit(torch.randn(8, 16), torch.randn(8, 16), index=torch.arange(8)).shape
        torch.Size([])
    """


@register(
    "isogclr_bimodal",
    aliases=("isogclr_clip",),
    family="contrastive",
    kind="pair",
    catalogue="G16",
    formula="SogCLR bimodal with τ_i, τ'_i per sample; per side m_i ← (1-β)m_i + β(log u_i + ρ + max_i - Σ_j p_ij d_ij/τ_i/(B-1)), τ_i ← clamp(τ_i - η m_i)",
    paper=ISOGCLR_PAPER,
    code="Optimization-AI/LibAUC libauc/losses/contrastive.py::GCLoss_v2 (enable_isogclr=True)",
)
@fill_doc(args=_args(LF.isogclr_bimodal.spec.args_doc(), _DATA_LEN_DOC), call=_GCL_CALL)  # type: ignore[attr-defined]
class ISogCLRBimodalLoss(_GlobalContrastiveLoss, function=LF.isogclr_bimodal,
                         states={"u_a": 0.0, "u_b": 0.0, "max_a": 0.0, "max_b": 0.0, "tau_a": "temperature",
                                 "tau_b": "temperature", "tau_grad_a": 0.0, "tau_grad_b": 0.0}):
    r"""iSogCLR, bimodal (image-text) form (Qiu et al., 2023, "Not All Semantics are Created
    Equal: Contrastive Self-supervised Learning with Automatic Temperature Individualization";
    LibAUC ``GCLoss_v2(enable_isogclr=True)``).

    .. math:: F(w, \tau, \tau') = \frac1n\sum_i (\tau_i + \tau'_i)\rho + \tau_i \log \mathbb{E}_{t\in T_i^-} e^{h_{x_i}(t)/\tau_i}
              + \tau'_i \log \mathbb{E}_{x\in I_i^-} e^{h_{t_i}(x)/\tau'_i}

    :class:`SogCLRBimodalLoss` with a temperature per image (``tau_a``) and per text
    (``tau_b``), read at ``index`` before the call; after it, per side:
    ``g_i = log u_i + ρ + max_i - Σ_j p_ij (d_ij/τ_i)/(B-1)``, ``tau_grad_i ← (1-β) tau_grad_i + β g_i``,
    ``τ_i ← clamp(τ_i - η tau_grad_i, τ_min, τ_max)``. **State:** as SogCLR bimodal plus
    ``tau_a``, ``tau_b`` (``temperature``) and ``tau_grad_a``, ``tau_grad_b`` (zeros), all
    [data_len]. Parity: case ``isogclr_bimodal``.

    {args}

    {call}

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("isogclr_bimodal", data_len=100, normalize=True)
        >>> crit(torch.randn(8, 16), torch.randn(8, 16), index=torch.arange(8)).shape
        torch.Size([])
    """
