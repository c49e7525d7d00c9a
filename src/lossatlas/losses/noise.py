"""Noise-robust classification losses (catalogue rows B1–B7).

Bounded / symmetric losses (MAE, GCE, RCE, SCE), the normalised losses and their
active-passive combinations (NCE, NFL, NGCE, NCE+RCE, NCE+MAE, …), LogitClip as a wrapper
around any logit-based loss, the label-distributionally robust LDR / ALDR losses, Taylor
cross-entropy and α-loss. Each loss is defined by its function in
:mod:`lossatlas.functional.noise` (names, defaults, checks); the modules here are built
from those functions. The label noise protocols are in :mod:`lossatlas.data.noise`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .. import functional as LF
from .._docs import fill_doc
from .._spec import fresh, spec_of
from ..functional.noise import _same_reduction
from ..registry import Paper, create, register
from ._base import FunctionalLoss, Loss

__all__ = [
    "MAELoss",
    "GCELoss",
    "RCELoss",
    "SCELoss",
    "NCELoss",
    "NFLLoss",
    "NGCELoss",
    "ActivePassiveLoss",
    "NCERCELoss",
    "NCEMAELoss",
    "LogitClipLoss",
    "LDRLoss",
    "ALDRLoss",
    "TaylorCELoss",
    "AlphaLoss",
    "CompSumLoss",
    "SmoothAdversarialCompSumLoss",
    "EnsLoss",
]

APL_CODE = "HanxunH/Active-Passive-Losses loss.py"
GHOSH_PAPER = Paper("A. Ghosh, H. Kumar, P. S. Sastry", "Robust Loss Functions under Label Noise for Deep Neural Networks", "AAAI", 2017, "1712.09482")
GCE_PAPER = Paper("Z. Zhang, M. R. Sabuncu", "Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy Labels", "NeurIPS", 2018, "1805.07836")
SCE_PAPER = Paper("Y. Wang, X. Ma, Z. Chen, Y. Luo, J. Yi, J. Bailey", "Symmetric Cross Entropy for Robust Learning with Noisy Labels", "ICCV", 2019, "1908.06112")
APL_PAPER = Paper("X. Ma, H. Huang, Y. Wang, S. Romano, S. Erfani, J. Bailey", "Normalized Loss Functions for Deep Learning with Noisy Labels", "ICML", 2020, "2006.13554")
LOGITCLIP_PAPER = Paper("H. Wei, H. Zhuang, R. Xie, L. Feng, G. Niu, B. An, Y. Li", "Mitigating Memorization of Noisy Labels by Clipping the Model Prediction", "ICML", 2023, "2212.04055")
LDR_PAPER = Paper("D. Zhu, Y. Ying, T. Yang", "Label Distributionally Robust Losses for Multi-class Classification: Consistency, Robustness and Adaptivity", "ICML", 2023, "2112.14869")
TAYLOR_PAPER = Paper("L. Feng, S. Shu, Z. Lin, F. Lv, L. Li, B. An", "Can Cross Entropy Loss Be Robust to Label Noise?", "IJCAI", 2020)
COMP_SUM_PAPER = Paper("A. Mao, M. Mohri, Y. Zhong", "Cross-Entropy Loss Functions: Theoretical Analysis and Applications",
                       "ICML", 2023, "2304.07288")
ENSLOSS_PAPER = Paper("B. Dai", "EnsLoss: Stochastic Calibrated Loss Ensembles for Preventing Overfitting in Classification",
                      "ICML 2025 (arXiv 2024)", 2024, "2409.00908")
ALPHA_PAPER = Paper("T. Sypherd, M. Diaz, J. K. Cava, G. Dasarathy, P. Kairouz, L. Sankar", "A Tunable Loss Function for Robust Classification: Calibration, Landscape, and Generalization", "IEEE Trans. Inf. Theory 2022 (arXiv 2019)", 2019, "1906.02314")


def _usage(create_args: str, result: str = "0", call: str = "crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 2])).ndim") -> str:
    """The shapes line and a runnable three-line example, for a ``{usage}`` docstring line."""
    return f"""\
Shapes: ``logits`` [N, C]; ``target`` int64 [N].

Example:
    >>> import torch, lossatlas as la
    >>> crit = la.create({create_args})
    >>> {call}
    {result}
"""


# --------------------------------------------------------------------------------------
# B1
# --------------------------------------------------------------------------------------
@register(
    "mae",
    aliases=("mae_loss", "mean_absolute_error"),
    family="noise",
    kind="classification",
    catalogue="B1",
    formula="l_i = scale · (1 - p_{i,y_i}),  p = softmax(z)  (= scale/2 · ||p_i - onehot(y_i)||_1)",
    paper=GHOSH_PAPER,
    code=f"{APL_CODE}::MeanAbsoluteError",
)
@fill_doc(usage=_usage('"mae"', "0.75", "round(float(crit(torch.zeros(2, 4), torch.tensor([0, 3]))), 4)"))
class MAELoss(FunctionalLoss, function=LF.mae):
    r"""Mean absolute error on the softmax (Ghosh, Kumar, Sastry, 2017, "Robust Loss
    Functions under Label Noise for Deep Neural Networks"; used as the GCE baseline by
    Zhang & Sabuncu, 2018).

    .. math:: \ell_i = s\,(1 - p_{i,y_i}) = \tfrac{s}{2}\,\lVert p_i - e_{y_i}\rVert_1

    This is the reference's "reduced" MAE (``1 − p_y``, half of the L1 distance between the
    softmax and the one-hot target), the form HanxunH/Active-Passive-Losses trains with
    (parity case ``cls_mae``). MAE is *symmetric*: ``Σ_j ℓ(z, j) = s (C − 1)`` for every
    ``z``, which makes it robust to symmetric label noise (Ghosh et al. 2017), at the cost of
    slow training. ``1 − p`` is evaluated as ``−expm1(log p)``.

    {args}

    {usage}
    """


@register(
    "gce",
    aliases=("gce_loss", "generalized_cross_entropy", "generalised_cross_entropy", "lq_loss"),
    family="noise",
    kind="classification",
    catalogue="B1",
    formula="l_i = (1 - p_{i,y_i}^q) / q,  p clamped to [1e-7, 1];  q -> 0: CE,  q = 1: 1 - p_y (MAE)",
    paper=GCE_PAPER,
    code=f"{APL_CODE}::GeneralizedCrossEntropy",
)
@fill_doc(usage=_usage('"gce", q=0.7'))
class GCELoss(FunctionalLoss, function=LF.gce):
    r"""Generalised cross-entropy, the L_q loss (Zhang & Sabuncu, 2018, "Generalized Cross
    Entropy Loss for Training Deep Neural Networks with Noisy Labels").

    .. math:: \ell_i = \frac{1 - p_{i,y_i}^{\,q}}{q},\qquad q \in [0, 1]

    A Box-Cox interpolation between cross-entropy (``q → 0``) and MAE (``q = 1``, where it
    equals ``1 − p_y``). Default ``q = 0.7`` is the paper's and the reference's. As in
    HanxunH/Active-Passive-Losses (parity case ``cls_gce``) the softmax is clamped to
    ``[1e-7, 1]`` first, so probabilities below 1e-7 get no gradient. The paper's truncated
    variant (L_trunc) is not implemented. ``q = 0`` is accepted and gives (clamped) CE.

    {args}

    {usage}
    """


# --------------------------------------------------------------------------------------
# B2
# --------------------------------------------------------------------------------------
@register(
    "rce",
    aliases=("rce_loss", "reverse_cross_entropy"),
    family="noise",
    kind="classification",
    catalogue="B2",
    formula="l_i = -scale · A · Σ_{j≠y_i} clamp(p_ij, 1e-7, 1),  A = log_zero = log(1e-4)",
    paper=SCE_PAPER,
    code=f"{APL_CODE}::ReverseCrossEntropy",
)
@fill_doc(usage=_usage('"rce", log_zero=-4.0', "3.0", "round(float(crit(torch.zeros(2, 4), torch.tensor([0, 3]))), 4)"))
class RCELoss(FunctionalLoss, function=LF.rce):
    r"""Reverse cross-entropy (Wang et al., 2019, "Symmetric Cross Entropy for Robust
    Learning with Noisy Labels").

    .. math:: \ell_i = -\sum_j p_{ij}\,\log \tilde y_{ij} = -A\sum_{j \ne y_i} p_{ij},
              \qquad \log 0 := A

    The cross-entropy with prediction and label swapped; ``log 0`` of the one-hot label is
    replaced by the constant ``A``. The paper sets ``A = −4``; the official code (and the
    APL PyTorch reference, parity case ``cls_rce``) clamps the one-hot label to
    ``[1e-4, 1]``, i.e. ``A = log(1e-4) ≈ −9.21`` — the default here; pass
    ``log_zero=-4.0`` for the paper's value. The softmax is clamped to ``[1e-7, 1]`` as in
    the reference. RCE is symmetric: ``Σ_j ℓ(z, j) = −A (C − 1)`` (exactly, when no
    probability is below 1e-7). It is the "passive" half of SCE and NCE+RCE.

    {args}

    {usage}
    """


@register(
    "sce",
    aliases=("sce_loss", "symmetric_cross_entropy"),
    family="noise",
    kind="classification",
    catalogue="B2",
    formula="l_i = α · CE(z_i, y_i) + β · RCE(z_i, y_i)",
    paper=SCE_PAPER,
    code="YisenWang/symmetric_cross_entropy_for_noisy_labels (Keras); PyTorch: " + f"{APL_CODE}::SCELoss",
)
@fill_doc(usage=_usage('"sce", alpha=0.1, beta=1.0'))
class SCELoss(FunctionalLoss, function=LF.sce):
    r"""Symmetric cross-entropy (Wang et al., 2019, "Symmetric Cross Entropy for Robust
    Learning with Noisy Labels").

    .. math:: \ell_i = \alpha\,\mathrm{CE}(z_i, y_i) + \beta\,\mathrm{RCE}(z_i, y_i)

    CE (unclamped) fits the clean samples; the symmetric RCE term (see :class:`RCELoss`)
    adds noise robustness. Defaults α = 0.1, β = 1.0 are the paper's CIFAR-10 values (CIFAR-100:
    α = 6.0, β = 0.1); ``A = log(1e-4)`` as in the code (parity case ``cls_sce``).

    {args}

    {usage}
    """


# --------------------------------------------------------------------------------------
# B3: normalised losses
# --------------------------------------------------------------------------------------
@register(
    "nce",
    aliases=("nce_loss", "normalized_cross_entropy", "normalised_cross_entropy"),
    family="noise",
    kind="classification",
    catalogue="B3",
    formula="l_i = scale · log p_{i,y_i} / Σ_j log p_ij",
    paper=APL_PAPER,
    code=f"{APL_CODE}::NormalizedCrossEntropy",
)
@fill_doc(usage=_usage('"nce"', "0.25", "round(float(crit(torch.zeros(2, 4), torch.tensor([0, 3]))), 4)"))
class NCELoss(FunctionalLoss, function=LF.nce):
    r"""Normalised cross-entropy (Ma et al., 2020, "Normalized Loss Functions for Deep
    Learning with Noisy Labels").

    .. math:: \ell_i = s\,\frac{-\log p_{i,y_i}}{-\sum_{j}\log p_{ij}}

    Normalising any loss by its sum over all labels makes it symmetric
    (``Σ_j ℓ(z, j) = s``), hence robust to symmetric noise, but it underfits on its own:
    pair it with a passive loss (:class:`NCERCELoss`, :class:`ActivePassiveLoss`). Computed
    from ``log_softmax`` with no clamp, like the reference (parity case ``cls_nce``). Not
    to be confused with noise-contrastive estimation.

    {args}

    {usage}
    """


@register(
    "nfl",
    aliases=("nfl_loss", "normalized_focal", "normalised_focal"),
    family="noise",
    kind="classification",
    catalogue="B3",
    formula="l_i = scale · (1-p_y)^γ log p_y / Σ_j (1-p_j)^γ log p_j,  (1-p)^γ factors detached (reference)",
    paper=APL_PAPER,
    code=f"{APL_CODE}::NormalizedFocalLoss",
)
@fill_doc(usage=_usage('"nfl", gamma=0.5'))
class NFLLoss(FunctionalLoss, function=LF.nfl):
    r"""Normalised focal loss (Ma et al., 2020, "Normalized Loss Functions for Deep Learning
    with Noisy Labels").

    .. math:: \ell_i = s\,\frac{(1-p_{i,y_i})^{\gamma}\log p_{i,y_i}}{\sum_j (1-p_{ij})^{\gamma}\log p_{ij}}

    **Gradient convention.** The reference computes every modulating factor
    ``(1 − p)^γ`` from ``logpt.data``, i.e. with the gradient stopped, while the ``log p``
    terms keep theirs. ``detach=True`` (default) reproduces it (parity case ``cls_nfl``),
    so the gradient is by design not the derivative of the value; ``detach=False``
    differentiates the whole expression (same loss value, gradients differ by ~1e-3).
    ``γ = 0`` is :class:`NCELoss`.

    {args}

    {usage}
    """


@register(
    "ngce",
    aliases=("ngce_loss", "normalized_gce", "normalised_gce"),
    family="noise",
    kind="classification",
    catalogue="B3",
    formula="l_i = scale · (1 - p_y^q) / Σ_j (1 - p_j^q),  p clamped to [1e-7, 1]",
    paper=APL_PAPER,
    code=f"{APL_CODE}::NormalizedGeneralizedCrossEntropy",
)
@fill_doc(usage=_usage('"ngce", q=0.7', "0.25", "round(float(crit(torch.zeros(2, 4), torch.tensor([0, 3]))), 4)"))
class NGCELoss(FunctionalLoss, function=LF.ngce):
    r"""Normalised generalised cross-entropy (Ma et al., 2020, "Normalized Loss Functions for
    Deep Learning with Noisy Labels").

    .. math:: \ell_i = s\,\frac{1 - p_{i,y_i}^{\,q}}{\sum_j \big(1 - p_{ij}^{\,q}\big)}
              = s\,\frac{1 - p_{i,y_i}^{\,q}}{C - \sum_j p_{ij}^{\,q}}

    The softmax is clamped to ``[1e-7, 1]`` like the reference (parity case ``cls_ngce``);
    nothing is detached. Default ``q = 0.7`` (GCE's); the APL CIFAR-10 configuration uses
    ``q = 0.1``.

    {args}

    {usage}
    """


def _create_part(arg: str, loss_id: str, **kwargs: Any) -> nn.Module:
    """``create(loss_id, **kwargs)`` for the argument ``arg`` of a composite loss; an unknown id
    or keyword is reported as that argument's (``active='nfll': unknown lossatlas id ...``)."""
    try:
        return create(loss_id, **kwargs)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{arg}={loss_id!r}: {exc}") from None


# --------------------------------------------------------------------------------------
# B3: active-passive composition
# --------------------------------------------------------------------------------------
@register(
    "active_passive",
    aliases=("apl", "active_passive_loss"),
    family="noise",
    kind="classification",
    catalogue="B3",
    formula="l_i = α · L_active(z_i, y_i) + β · L_passive(z_i, y_i)",
    paper=APL_PAPER,
    code=APL_CODE,
)
@fill_doc(usage=_usage('"active_passive", active="nfl", passive="mae", alpha=1.0, beta=1.0'))
class ActivePassiveLoss(FunctionalLoss, function=LF.active_passive):
    r"""Active-passive loss (APL; Ma et al., 2020, "Normalized Loss Functions for Deep
    Learning with Noisy Labels"): a robust *active* loss plus a robust *passive* loss.

    .. math:: \ell_i = \alpha\,L_{\text{active}}(z_i, y_i) + \beta\,L_{\text{passive}}(z_i, y_i)

    Active losses push up ``p_y`` explicitly (NCE, NFL, NGCE, …), passive ones push down
    ``p_{j≠y}`` (MAE, RCE, …). Normalised losses alone underfit; pairing them fixes it
    while staying robust. A part given as a registry id is built here as a module with
    ``reduction="none"`` (options in ``active_kwargs`` / ``passive_kwargs``), so
    ``crit.active`` / ``crit.passive`` are modules; any lossatlas loss composes, so NFL+RCE,
    NGCE+MAE, … need no new class. :class:`NCERCELoss` and :class:`NCEMAELoss` are the
    two presets with parity cases. The logits and targets are validated once here.

    {args}

    {usage}
    """

    active: str | Callable[..., Tensor]
    passive: str | Callable[..., Tensor]
    active_kwargs: dict[str, Any] | None
    passive_kwargs: dict[str, Any] | None

    def setup(self) -> None:
        if isinstance(self.active, str):
            self.active = _create_part("active", self.active, reduction="none", **(self.active_kwargs or {}))
            self.active_kwargs = None
        if isinstance(self.passive, str):
            self.passive = _create_part("passive", self.passive, reduction="none", **(self.passive_kwargs or {}))
            self.passive_kwargs = None

    def _hparams(self) -> dict[str, Any]:  # the parts are shown as submodules
        return {k: v for k, v in super()._hparams().items() if not isinstance(v, nn.Module) and v is not None}


@register(
    "nce_rce",
    aliases=("nce+rce", "ncerce"),
    family="noise",
    kind="classification",
    catalogue="B3",
    formula="l_i = α · NCE(z_i, y_i) + β · RCE(z_i, y_i)",
    paper=APL_PAPER,
    code=f"{APL_CODE}::NCEandRCE",
    notes="Equals active_passive(active='nce', passive='rce').",
)
@fill_doc(usage=_usage('"nce_rce", alpha=1.0, beta=1.0'))
class NCERCELoss(FunctionalLoss, function=LF.nce_rce):
    r"""NCE+RCE, the flagship active-passive loss (Ma et al., 2020, "Normalized Loss
    Functions for Deep Learning with Noisy Labels").

    .. math:: \ell_i = \alpha\,\mathrm{NCE}(z_i, y_i) + \beta\,\mathrm{RCE}(z_i, y_i)

    :class:`ActivePassiveLoss` with ``active="nce"``, ``passive="rce"``, with RCE's
    reference constants (``A = log 1e-4``, softmax clamped at 1e-7). Defaults α = β = 1
    are the APL CIFAR-10 configuration (CIFAR-100: α = 10, β = 0.1); parity case
    ``cls_nce_rce``.

    {args}

    {usage}
    """


@register(
    "nce_mae",
    aliases=("nce+mae", "ncemae"),
    family="noise",
    kind="classification",
    catalogue="B3",
    formula="l_i = α · NCE(z_i, y_i) + β · (1 - p_{i,y_i})",
    paper=APL_PAPER,
    code=f"{APL_CODE}::NCEandMAE",
    notes="Equals active_passive(active='nce', passive='mae').",
)
@fill_doc(usage=_usage('"nce_mae", alpha=1.0, beta=1.0'))
class NCEMAELoss(FunctionalLoss, function=LF.nce_mae):
    r"""NCE+MAE active-passive loss (Ma et al., 2020, "Normalized Loss Functions for Deep
    Learning with Noisy Labels").

    .. math:: \ell_i = \alpha\,\mathrm{NCE}(z_i, y_i) + \beta\,(1 - p_{i,y_i})

    :class:`ActivePassiveLoss` with ``active="nce"``, ``passive="mae"``. MAE is at the
    reference's scale, ``1 − p_y`` (``MeanAbsoluteError`` of HanxunH/Active-Passive-Losses:
    half of ``‖p − e_y‖_1``), and the passive part is MAE, not RCE. Defaults α = β = 1 (APL
    CIFAR-10 configuration; CIFAR-100: α = 10, β = 1); parity case ``cls_nce_mae``.

    {args}

    {usage}
    """


# --------------------------------------------------------------------------------------
# B4: LogitClip
# --------------------------------------------------------------------------------------
@register(
    "logitclip",
    aliases=("logit_clip", "logit_clipping"),
    family="noise",
    kind="classification",
    catalogue="B4",
    formula="l_i = base(z'_i, y_i),  z' = z / (τ ||z||_p) if ||z||_p > 1/τ else z  (base = CE by default)",
    paper=LOGITCLIP_PAPER,
    code="hongxin001/LogitClip algorithms/clip.py::LogitClipping",
)
class LogitClipLoss(FunctionalLoss, function=LF.logitclip):
    r"""Logit clipping (Wei et al., 2023, "Mitigating Memorization of Noisy Labels by
    Clipping the Model Prediction"): clamp the p-norm of each logit vector, then apply any
    logit-based loss.

    .. math:: z' = \begin{cases} \dfrac{z}{\tau\,\lVert z\rVert_p} & \lVert z\rVert_p > 1/\tau\\
              z & \text{otherwise}\end{cases},\qquad \ell_i = L_{\text{base}}(z'_i, y_i)

    Bounding the logit norm bounds the loss, which curbs memorisation of noisy labels.
    This is a *wrapper*: ``base`` is any classification loss — a registry id (built here as
    a module with this ``reduction`` and ``base_kwargs``; ``crit.base`` is that module), a
    loss module with the same ``reduction``, or a function ``f(logits, target,
    reduction=..., **kw)``; default cross-entropy (the paper's, parity case
    ``cls_logitclip``). Extra keyword arguments of the call (e.g. ``index=`` for ALDR) are
    passed to the base loss.

    **Threshold, paper vs code.** The paper clips rows with ``‖z‖_p > 1/τ`` to norm
    ``1/τ`` (continuous in z); the official code clips rows with ``‖z‖_p > τ`` (its
    ``--temp``) to norm ``1/τ``. They coincide at τ = 1 (the default). This class follows
    the paper; ``tau`` is the code's ``--temp``, ``p`` its ``--lp``. Like the code it adds
    ``eps = 1e-7`` to the norm, and the gradient flows through the norm.

    {args}

    Shapes: ``logits`` [N, C]; ``target`` as the base loss takes it (int64 [N] for CE).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("logitclip", tau=1.0, p=2.0, base="focal", base_kwargs={"gamma": 2.0})
        >>> crit(100 * torch.randn(4, 3), torch.tensor([0, 1, 2, 2])).ndim
        0
    """

    tau: float
    p: float
    eps: float
    base: str | Callable[..., Tensor] | None
    base_kwargs: dict[str, Any] | None

    def setup(self) -> None:
        if self.base is None or isinstance(self.base, str):
            self.base = _create_part("base", self.base or "cross_entropy", reduction=self.reduction, **(self.base_kwargs or {}))
            self.base_kwargs = None
        elif isinstance(self.base, nn.Module):
            _same_reduction(self.base, self.reduction)
            if self.base_kwargs:
                raise ValueError("base_kwargs apply only when base is a registry id or a function")

    def _hparams(self) -> dict[str, Any]:  # a module base is shown as a submodule
        return {k: v for k, v in super()._hparams().items() if not isinstance(v, nn.Module) and v is not None}

    def clip(self, logits: Tensor) -> Tensor:
        """The clipped logits (same dtype as the input)."""
        return LF.clip_logits(logits, tau=self.tau, p=self.p, eps=self.eps).to(logits.dtype)


# --------------------------------------------------------------------------------------
# B5: LDR and ALDR
# --------------------------------------------------------------------------------------
@register(
    "ldr",
    aliases=("ldr_loss", "ldr_kl"),
    family="noise",
    kind="classification",
    catalogue="B5",
    formula="l_i = λ log (1/C) Σ_j exp((m·1[j≠y] + z'_j - z'_y)/λ),  z' = softplus(z) / mean_j softplus(z_j)",
    paper=LDR_PAPER,
    code="Optimization-AI/ICML2023_LDR loss.py::LDRLoss_V1",
)
@fill_doc(usage=_usage('"ldr", margin=0.1, temperature=10.0'))
class LDRLoss(FunctionalLoss, function=LF.ldr):
    r"""Label-distributionally robust loss, LDR-KL (Zhu, Ying & Yang, 2023, "Label
    Distributionally Robust Losses for Multi-class Classification: Consistency, Robustness
    and Adaptivity").

    .. math:: \ell_i = \lambda \log \frac{1}{C}\sum_{j} \exp\!\Big(\frac{m\,\mathbb 1[j\ne y_i] + z'_{ij} - z'_{i,y_i}}{\lambda}\Big),
              \qquad z'_i = \frac{f(z_i)}{\lVert f(z_i)\rVert_1 / C},\ f = \mathrm{softplus}

    The worst case, over label distributions KL-close to uniform, of the margin-shifted
    logit gaps. The temperature λ interpolates between the paper's limits: ``λ → 0`` gives
    the max-margin (Crammer–Singer) loss ``max(0, max_{j≠y} m + z'_j − z'_y)``;
    ``λ → ∞`` gives the average form ``(1/C) Σ_j (m 1[j≠y] + z'_j − z'_y)``. The logits
    pass softplus and are divided by their mean, as in the reference (parity case
    ``cls_ldr``); ``softplus=False`` divides the raw logits by their mean absolute value
    (what :class:`ALDRLoss` does by default). Defaults ``m = 0.1``, ``λ = 10`` are
    experiment.py's. ``temperature`` may also be a tensor [N] of per-sample values
    (functional form).

    {args}

    {usage}
    """


_ALDR = spec_of(LF.aldr)
_ALDR_DEFAULTS = _ALDR.defaults


@register(
    "aldr",
    aliases=("aldr_loss", "aldr_kl", "adaptive_ldr"),
    family="noise",
    kind="classification",
    catalogue="B5",
    formula="λ_i = Λ - Λ·KL(q_i || u)/(α log C), q_i = softmax(z'_i/λ_i^old);  l_i = LDR_{λ_i}(z_i, y_i) - α log C/(2Λ)·(λ_i - Λ)^2",
    paper=LDR_PAPER,
    code="Optimization-AI/ICML2023_LDR loss.py::ALDRLoss_V1",
    function=LF.aldr,
    defaults_source=_ALDR.sources,
)
@fill_doc(args="\n".join([
    "Args:",
    "    num_samples: size of the training set (indices run over ``[0, num_samples)``; reference ``N``).",
    *_ALDR.args_doc().split("\n")[1:],
]))
class ALDRLoss(Loss):
    r"""Adaptive label-distributionally robust loss, ALDR-KL (Zhu, Ying & Yang, 2023, "Label
    Distributionally Robust Losses for Multi-class Classification: Consistency, Robustness
    and Adaptivity"): LDR with a per-sample temperature λ_i, set in closed form.

    .. math:: q_i = \mathrm{normalise}\big(\mathrm{softmax}(z'_i/\lambda^{\text{old}}_i) + 10^{-5}\big),\quad
              \lambda_i = \Lambda - \frac{\Lambda\,\mathrm{KL}(q_i\,\Vert\,u)}{\alpha\log C}

    .. math:: \ell_i = \lambda_i \log \frac1C\sum_j e^{(m 1[j\ne y_i] + z'_{ij} - z'_{i,y_i})/\lambda_i}
              - \frac{\alpha \log C}{2\Lambda}(\lambda_i - \Lambda)^2

    ``z'`` is the LDR normalisation (:class:`LDRLoss`) *without* softplus by default,
    ``z' = z / (‖z‖_1 / C)``: the official training script (experiment.py) builds
    ``ALDRLoss_V1`` without passing ``softplus``, so its class default ``False`` is what
    runs (only the CIFAR-100 branch passes ``softplus=True``). Confident (low-entropy) samples,
    more likely mislabelled when wrong, get a smaller λ_i. **State:** λ_i of every training
    sample is the buffer ``sample_temperature`` [num_samples] (initialised to Λ; saved in
    ``state_dict``, moved by ``.to()``). Each call reads λ^old at ``index``, computes the new
    λ (detached), writes it back *before* computing the loss, as the reference does
    (parity sequence ``seq_aldr``). The floor ``λ ≥ 1e-6·Λ`` guards α < 1 (for α ≥ 1,
    λ > 0 always). Needs C ≥ 2; ``ignore_index`` is not supported. The function
    :func:`lossatlas.functional.aldr` takes the state explicitly (``sample_temperature=``);
    :meth:`functional_kwargs` hands it a copy of this module's.

    {args}

    Call: ``crit(logits [N, C], target int64 [N], index=int64 [N])`` with distinct
    dataset indices of the batch's samples.

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("aldr", num_samples=100)
        >>> crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 2]), index=torch.tensor([5, 6, 7, 8])).ndim
        0
    """

    sample_temperature: Tensor

    def __init__(
        self,
        num_samples: int,
        margin: float = _ALDR_DEFAULTS["margin"],
        temperature: float = _ALDR_DEFAULTS["temperature"],
        alpha: float = _ALDR_DEFAULTS["alpha"],
        softplus: bool = _ALDR_DEFAULTS["softplus"],
        reduction: str = _ALDR_DEFAULTS["reduction"],
        validate: bool = _ALDR_DEFAULTS["validate"],
    ) -> None:
        checked = _ALDR.check_all({"margin": margin, "temperature": temperature, "alpha": alpha, "softplus": softplus,
                                   "reduction": reduction, "validate": validate})
        super().__init__(checked["reduction"], checked["validate"])
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int (the training-set size), got {num_samples!r}")
        self.num_samples = num_samples
        self.margin: float = checked["margin"]
        self.temperature: float = checked["temperature"]
        self.alpha: float = checked["alpha"]
        self.softplus: bool = checked["softplus"]
        self.register_buffer("sample_temperature", torch.full((num_samples,), self.temperature, dtype=torch.float32))

    def _hparams(self) -> dict[str, Any]:
        return {"num_samples": self.num_samples, "margin": self.margin, "temperature": self.temperature,
                "alpha": self.alpha, "softplus": self.softplus}

    def hparams(self) -> dict[str, Any]:
        """The hyper-parameters as :func:`lossatlas.functional.aldr` takes them."""
        return {"margin": self.margin, "temperature": self.temperature, "alpha": self.alpha, "softplus": self.softplus,
                "reduction": self.reduction, "validate": self.validate}

    def functional_kwargs(self) -> dict[str, Any]:
        """The hyper-parameters and a *copy* of the state: the function then gives this
        module's next result (with the same ``index=``) and leaves the module unchanged."""
        return {**self.hparams(), "sample_temperature": self.sample_temperature.clone()}

    def reset(self) -> None:
        """Set every sample's λ back to Λ."""
        self.sample_temperature.fill_(self.temperature)

    def forward(self, logits: Tensor, target: Tensor, index: Tensor | None = None) -> Tensor:
        if index is None:
            raise ValueError("ALDR keeps a temperature per training sample: call it with index=<int64 [N] dataset indices>")
        return fresh(_ALDR.function(logits, target, index=index, sample_temperature=self.sample_temperature, **self.hparams()))


# --------------------------------------------------------------------------------------
# B6, B7
# --------------------------------------------------------------------------------------
@register(
    "taylor_ce",
    aliases=("taylor_cross_entropy", "t_ce"),
    family="noise",
    kind="classification",
    catalogue="B6",
    formula="l_i = Σ_{k=1}^{t} (1 - p_{i,y_i})^k / k   (t -> ∞: CE;  t = 1: MAE)",
    paper=TAYLOR_PAPER,
    code=None,
)
@fill_doc(usage=_usage('"taylor_ce", order=2', "0.625", "round(float(crit(torch.zeros(2, 2), torch.tensor([0, 1]))), 4)"))
class TaylorCELoss(FunctionalLoss, function=LF.taylor_ce):
    r"""Taylor cross-entropy (Feng et al., 2020, "Can Cross Entropy Loss Be Robust to Label
    Noise?").

    .. math:: \ell_i = \sum_{k=1}^{t} \frac{(1 - p_{i,y_i})^k}{k}

    The order-t Taylor expansion of ``−log p_y`` around ``p_y = 1``: ``t = 1`` is MAE, and
    as ``t → ∞`` it converges to cross-entropy (for ``p_y > 0``). Small t is bounded and
    noise-robust, large t fits faster. No official code; the default ``t = 2`` is this
    library's choice (the paper tunes t per dataset).

    {args}

    {usage}
    """


@register(
    "alpha_loss",
    aliases=("alphaloss", "alpha_loss_sypherd"),
    family="noise",
    kind="classification",
    catalogue="B7",
    formula="l_i = α/(α-1) · (1 - p_{i,y_i}^{(α-1)/α});  α = 1: CE,  α = ∞: 1 - p_y,  α = 1/2: 1/p_y - 1",
    paper=ALPHA_PAPER,
    code="sankarlab/alphaloss",
)
@fill_doc(usage=_usage('"alpha_loss", alpha=2.0', "1.0", "round(float(crit(torch.zeros(2, 4), torch.tensor([0, 3]))), 4)"))
class AlphaLoss(FunctionalLoss, function=LF.alpha_loss):
    r"""α-loss (Sypherd et al., 2019, "A Tunable Loss Function for Robust Classification:
    Calibration, Landscape, and Generalization"; IEEE Trans. Inf. Theory 2022).

    .. math:: \ell_i = \frac{\alpha}{\alpha - 1}\Big(1 - p_{i,y_i}^{(\alpha-1)/\alpha}\Big),\qquad \alpha \in (0, \infty]

    ``α = 1`` is cross-entropy (the limit), ``α → ∞`` gives ``1 − p_y`` (MAE), ``α = 1/2``
    gives ``1/p_y − 1`` (exponential-loss-like). α > 1 trades convexity for robustness to
    label noise; α < 1 emphasises hard samples and is unbounded (it overflows for
    extreme logits). Computed as ``−expm1(c log p_y)/c`` with ``c = (α−1)/α``, exact near
    α = 1. Pass ``alpha=math.inf`` for the limit. Default α = 2 is this library's choice.

    {args}

    {usage}
    """


@register(
    "comp_sum",
    aliases=("comp_sum_loss", "compsum"),
    family="noise",
    kind="classification",
    catalogue="B8",
    formula="l_i = Φ_τ(Σ_{j≠y} e^{z_j - z_y}),  Φ_τ(u) = ((1+u)^{1-τ} - 1)/(1-τ)  (τ = 1: log(1+u), CE)",
    paper=COMP_SUM_PAPER,
    code=None,
    notes="The paper's smooth adversarial comp-sum losses are registered as smooth_adversarial_comp_sum (they take "
          "the logits of an adversarial input as well).",
)
@fill_doc(usage=_usage('"comp_sum", tau=0.5', "0"))
class CompSumLoss(FunctionalLoss, function=LF.comp_sum):
    r"""Comp-sum losses (Mao, Mohri, Zhong, 2023, "Cross-Entropy Loss Functions: Theoretical
    Analysis and Applications", ICML): a composition Φ_τ of the sum of exponential pairwise terms.

    .. math:: \ell_i = \Phi_\tau\Big(\sum_{j \ne y_i} e^{z_{ij} - z_{i y_i}}\Big),\qquad
              \Phi_\tau(u) = \frac{(1 + u)^{1-\tau} - 1}{1 - \tau}\ (\tau \ne 1),\quad \Phi_1(u) = \log(1 + u)

    Since ``1 + Σ_{j≠y} e^{z_j − z_y} = 1/p_y``, ``ℓ = (1 − p_y^{τ−1})/(τ − 1)``. The family holds
    the sum-exponential loss (τ = 0, ``1/p_y − 1``), cross-entropy (τ = 1), generalised
    cross-entropy with ``q = τ − 1`` (τ ∈ (1, 2)) and the mean absolute error ``1 − p_y``
    (τ = 2); the paper proves H-consistency bounds for every τ ≥ 0. It is the α-loss family
    re-parametrised (``α = 1/(2 − τ)`` for τ < 2). The paper sets no default: τ = 1 (CE) is
    this library's. The paper's smooth adversarial comp-sum losses, which add a smoothness term on
    adversarially perturbed inputs, are :class:`SmoothAdversarialCompSumLoss`.

    {args}

    {usage}
    """


@register(
    "smooth_adversarial_comp_sum",
    aliases=("adv_comp_sum", "smooth_adv_comp_sum"),
    family="noise",
    kind="classification",
    catalogue="B8",
    formula="l_i = Φ_τ(Σ_{j≠y} e^{z_j - z_y}) + ν ‖Δ(z'_i) - Δ(z_i)‖₂,  Δ(z)_j = z_j - z_y,  z' = logits of the "
            "adversarial input",
    paper=COMP_SUM_PAPER,
    code=None,
)
class SmoothAdversarialCompSumLoss(FunctionalLoss, function=LF.smooth_adversarial_comp_sum):
    r"""Smooth adversarial comp-sum losses (Mao, Mohri, Zhong, 2023, "Cross-Entropy Loss
    Functions: Theoretical Analysis and Applications", ICML, section 6): a comp-sum loss at the
    clean input plus a smooth term that measures how far an adversarial input moves the scores.

    .. math:: \ell_i = \Phi_\tau\Big(\sum_{j \ne y_i} e^{z_{ij} - z_{i y_i}}\Big)
              + \nu\,\lVert \Delta(z'_i) - \Delta(z_i) \rVert_2,\qquad
              \Delta(z)_j = z_j - z_{y},\quad z'_i = h(x'_i),\ \lVert x'_i - x_i \rVert_p \le \gamma

    ``Φ_τ`` is :class:`CompSumLoss`'s (τ = 1 cross-entropy, τ = 2 MAE, …). The paper's loss takes
    the supremum of the smooth term over the perturbation ball; that supremum is an attack on the
    model (the paper's algorithm, ADV-COMP-SUM, approximates it with PGD, as TRADES does), so this
    loss takes the attack's result as an input: ``adv_logits`` = the model's logits at ``x′``. It is
    the paper's regularised objective without the weight penalty (leave that to the optimiser's
    weight decay). ``vector='margins'`` is the definition, with the score differences ``Δ``;
    ``vector='scores'`` uses the raw score vectors ``‖h̄(x′) − h̄(x)‖₂``, the upper bound (up to a
    constant) the paper's algorithm minimises. ``ν = 0`` gives :class:`CompSumLoss`. A class masked
    (``-inf``) in either tensor leaves the smooth term. No official code; ν = 1 and τ = 1 are this
    library's defaults (the paper tunes ν).

    {args}

    Shapes: ``logits`` and ``adv_logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("smooth_adversarial_comp_sum", tau=1.0, nu=2.0)
        >>> z = torch.zeros(2, 3); float(crit(z, torch.tensor([0, 1]), z)) == float(la.functional.comp_sum(z, torch.tensor([0, 1])))
        True
    """


_ENS = spec_of(LF.ensloss)


@register(
    "ensloss",
    aliases=("ens_loss", "ensloss_binary"),
    family="noise",
    kind="binary",
    catalogue="B9",
    formula="∂l_i/∂z_i = φ'(z_i), z_i = (2 y_i - 1) s_i: N draws -BoxCox⁻¹_λ(ε), ε ~ N(0, 1), floored at -1, sorted and "
            "given to the margins in order (÷ z above 1, - 1e-6); l_i = g_i ψ(z_i) - 1e-6 z_i",
    paper=ENSLOSS_PAPER,
    code="statmlben/ensLoss",
    function=LF.ensloss,
    defaults_source={**_ENS.sources, "seed": "None = torch's global RNG"},
)
@fill_doc(args="\n".join([
    *_ENS.args_doc().split("\n"),
    "    seed: seed of a private generator for the derivative draws (``None``: torch's global RNG). Default ``None``.",
]))
class EnsLoss(Loss):
    r"""EnsLoss (Dai, 2025, "EnsLoss: Stochastic Calibrated Loss Ensembles for Preventing
    Overfitting in Classification", ICML; arXiv 2024): binary classification with a new random
    convex calibrated surrogate loss at every batch, an ensemble of losses trained once (as
    Dropout ensembles networks).

    A margin loss ``φ(z)``, ``z = y f(x)`` with ``y = ±1``, is convex and classification-calibrated
    iff its derivative is non-decreasing with ``φ'(0) < 0`` (Bartlett, Jordan & McAuliffe 2006).
    EnsLoss never writes ``φ``: it draws the derivatives at the batch's margins directly,

    .. math:: \varepsilon_k \sim N(0, 1),\quad d_k = \max\big(-\mathrm{BoxCox}_\lambda^{-1}(\varepsilon_k),\,-1\big),
              \quad \varphi'(z_{(k)}) = d_{(k)} / \max(z_{(k)}, 1) - 10^{-6}

    the k-th smallest draw going to the k-th smallest margin (non-decreasing: convexity; all
    negative: calibration), divided by the margin above 1 (the official code's "superlinear
    tail") and lowered by 1e-6 (strictly negative), as statmlben/ensLoss ``losses.py::ensLoss``
    does (λ = 0: ``d = max(−e^ε, −1)``). The official loss has no value of its own (its
    ``mean(g.detach() · z)`` is a device for the gradient); here the value is
    ``g ψ(z) − 10⁻⁶ z`` with ``ψ(z) = z`` up to 1 and ``1 + log z`` above, whose derivative is exactly
    the drawn ``φ'`` (so gradients equal the official code's, and the value is the sampled loss up
    to a constant per sample). :func:`lossatlas.functional.ensloss_derivatives` returns a draw.
    Reproducible under ``seed`` (a private ``torch.Generator``) or ``generator=`` of the function.

    {args}

    Shapes: ``scores`` [N] (or [N, 1]) real-valued logits, not probabilities (unlike the AUC losses
    of the same input kind: on ``sigmoid`` outputs every margin lies in (−1, 1) and the model does
    not learn); ``target`` [N] 0/1 labels (any dtype).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("ensloss", seed=0)
        >>> crit(torch.randn(8), torch.randint(0, 2, (8,))).ndim
        0
    """

    def __init__(self, lam: float = _ENS.defaults["lam"], seed: int | None = None,
                 reduction: str = _ENS.defaults["reduction"], validate: bool = _ENS.defaults["validate"]) -> None:
        checked = _ENS.check_all({"lam": lam, "reduction": reduction, "validate": validate})
        super().__init__(checked["reduction"], checked["validate"])
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        self.lam: float = checked["lam"]
        self.seed = seed
        self._generator = None if seed is None else torch.Generator().manual_seed(seed)

    def _hparams(self) -> dict[str, Any]:
        return {"lam": self.lam, "seed": self.seed}

    def functional_kwargs(self) -> dict[str, Any]:
        """The hyper-parameters and a *copy* of the private generator: the function then draws
        this module's next derivatives and leaves the module's draws as they were."""
        copy = None
        if self._generator is not None:
            copy = torch.Generator()
            copy.set_state(self._generator.get_state())
        return {"lam": self.lam, "generator": copy, "reduction": self.reduction, "validate": self.validate}

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        return fresh(_ENS.function(scores, target, lam=self.lam, generator=self._generator,
                                   reduction=self.reduction, validate=self.validate))
