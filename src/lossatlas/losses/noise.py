"""Noise-robust classification losses (catalogue rows B1–B7).

Bounded / symmetric losses (MAE, GCE, RCE, SCE), the normalised losses and their
active-passive combinations (NCE, NFL, NGCE, NCE+RCE, NCE+MAE, …), LogitClip as a wrapper
around any logit-based loss, the label-distributionally robust LDR / ALDR losses, Taylor
cross-entropy and α-loss. The math lives in :mod:`lossatlas.functional.noise`; the label
noise protocols in :mod:`lossatlas.data.noise`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from .. import functional as LF
from .._docs import fill_doc
from .._validation import check_logits, check_number, check_tensor, compiling
from ..functional._common import prepare_classification, reduce_loss
from ..functional.noise import RCE_LOG_ZERO, _check_alpha, _check_order, _clip_params
from ..registry import Paper, create, register
from ._base import Loss

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
]

APL_CODE = "HanxunH/Active-Passive-Losses loss.py"
GHOSH_PAPER = Paper("A. Ghosh, H. Kumar, P. S. Sastry", "Robust Loss Functions under Label Noise for Deep Neural Networks", "AAAI", 2017, "1712.09482")
GCE_PAPER = Paper("Z. Zhang, M. R. Sabuncu", "Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy Labels", "NeurIPS", 2018, "1805.07836")
SCE_PAPER = Paper("Y. Wang, X. Ma, Z. Chen, Y. Luo, J. Yi, J. Bailey", "Symmetric Cross Entropy for Robust Learning with Noisy Labels", "ICCV", 2019, "1908.06112")
APL_PAPER = Paper("X. Ma, H. Huang, Y. Wang, S. Romano, S. Erfani, J. Bailey", "Normalized Loss Functions for Deep Learning with Noisy Labels", "ICML", 2020, "2006.13554")
LOGITCLIP_PAPER = Paper("H. Wei, H. Zhuang, R. Xie, L. Feng, G. Niu, B. An, Y. Li", "Mitigating Memorization of Noisy Labels by Clipping the Model Prediction", "ICML", 2023, "2212.04055")
LDR_PAPER = Paper("D. Zhu, Y. Ying, T. Yang", "Label Distributionally Robust Losses for Multi-class Classification: Consistency, Robustness and Adaptivity", "ICML", 2023, "2112.14869")
TAYLOR_PAPER = Paper("L. Feng, S. Shu, Z. Lin, F. Lv, L. Li, B. An", "Can Cross Entropy Loss Be Robust to Label Noise?", "IJCAI", 2020)
ALPHA_PAPER = Paper("T. Sypherd, M. Diaz, J. K. Cava, G. Dasarathy, P. Kairouz, L. Sankar", "A Tunable Loss Function for Robust Classification: Calibration, Landscape, and Generalization", "IEEE Trans. Inf. Theory 2022 (arXiv 2019)", 2019, "1906.02314")


class _NoiseLoss(Loss):
    """Shared constructor: ``ignore_index``, ``reduction``, ``validate``."""

    def __init__(self, ignore_index: int = -100, reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(reduction, validate)
        self.ignore_index = int(ignore_index)

    def _common(self) -> dict[str, Any]:
        return {"ignore_index": self.ignore_index, "reduction": self.reduction, "validate": self.validate}


class _ScaledLoss(_NoiseLoss):
    """A loss whose one hyper-parameter is ``scale``; ``_function`` is its functional twin."""

    _function: Callable[..., Tensor]

    def __init__(self, scale: float = 1.0, ignore_index: int = -100, reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(ignore_index, reduction, validate)
        self.scale = check_number(scale, "scale")

    def _hparams(self) -> dict[str, Any]:
        return {"scale": self.scale}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self._function(logits, target, scale=self.scale, **self._common())


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
    function=LF.mae,
    defaults_source={"scale": "HanxunH/Active-Passive-Losses (scale=1.0)"},
)
class MAELoss(_ScaledLoss):
    r"""Mean absolute error on the softmax (Ghosh, Kumar, Sastry, 2017, "Robust Loss
    Functions under Label Noise for Deep Neural Networks"; used as the GCE baseline by
    Zhang & Sabuncu, 2018).

    .. math:: \ell_i = s\,(1 - p_{i,y_i}) = \tfrac{s}{2}\,\lVert p_i - e_{y_i}\rVert_1

    This is the reference's "reduced" MAE (``1 − p_y``, half of the L1 distance between the
    softmax and the one-hot target), the form HanxunH/Active-Passive-Losses trains with
    (parity case ``cls_mae``). MAE is *symmetric*: ``Σ_j ℓ(z, j) = s (C − 1)`` for every
    ``z``, which makes it robust to symmetric label noise (Ghosh et al. 2017), at the cost of
    slow training. ``1 − p`` is evaluated as ``−expm1(log p)``.

    Args:
        scale: s, multiplies the loss (default 1.0, the reference's).
        ignore_index: target value to skip (default -100).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        validate: check values (NaN/Inf logits, target range).

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("mae")
        >>> round(float(crit(torch.zeros(2, 4), torch.tensor([0, 3]))), 4)
        0.75
    """

    _function = staticmethod(LF.mae)


@register(
    "gce",
    aliases=("gce_loss", "generalized_cross_entropy", "generalised_cross_entropy", "lq_loss"),
    family="noise",
    kind="classification",
    catalogue="B1",
    formula="l_i = (1 - p_{i,y_i}^q) / q,  p clamped to [1e-7, 1];  q -> 0: CE,  q = 1: 1 - p_y (MAE)",
    paper=GCE_PAPER,
    code=f"{APL_CODE}::GeneralizedCrossEntropy",
    function=LF.gce,
    defaults_source={"q": "Zhang & Sabuncu 2018 and HanxunH/Active-Passive-Losses (q=0.7)"},
)
class GCELoss(_NoiseLoss):
    r"""Generalised cross-entropy, the L_q loss (Zhang & Sabuncu, 2018, "Generalized Cross
    Entropy Loss for Training Deep Neural Networks with Noisy Labels").

    .. math:: \ell_i = \frac{1 - p_{i,y_i}^{\,q}}{q},\qquad q \in [0, 1]

    A Box-Cox interpolation between cross-entropy (``q → 0``) and MAE (``q = 1``, where it
    equals ``1 − p_y``). Default ``q = 0.7`` is the paper's and the reference's. As in
    HanxunH/Active-Passive-Losses (parity case ``cls_gce``) the softmax is clamped to
    ``[1e-7, 1]`` first, so probabilities below 1e-7 get no gradient. The paper's truncated
    variant (L_trunc) is not implemented. ``q = 0`` is accepted and gives (clamped) CE.

    Args:
        q: the exponent q in [0, 1] (default 0.7).
        ignore_index, reduction, validate: as in :class:`MAELoss`.

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("gce", q=0.7)
        >>> crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 2])).ndim
        0
    """

    def __init__(self, q: float = 0.7, ignore_index: int = -100, reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(ignore_index, reduction, validate)
        self.q = check_number(q, "q", low=0.0, high=1.0)

    def _hparams(self) -> dict[str, Any]:
        return {"q": self.q}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return LF.gce(logits, target, q=self.q, **self._common())


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
    function=LF.rce,
    defaults_source={"scale": "HanxunH/Active-Passive-Losses (scale=1.0)",
                     "log_zero": "reference code: one-hot clamped to [1e-4, 1], A = log(1e-4) ≈ -9.21 (the paper writes A = -4)"},
)
class RCELoss(_NoiseLoss):
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

    Args:
        scale: multiplies the loss (default 1.0).
        log_zero: A, the value used for log 0 (≤ 0).
        ignore_index, reduction, validate: as in :class:`MAELoss`.

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("rce", log_zero=-4.0)
        >>> round(float(crit(torch.zeros(2, 4), torch.tensor([0, 3]))), 4)
        3.0
    """

    def __init__(self, scale: float = 1.0, log_zero: float = RCE_LOG_ZERO, ignore_index: int = -100,
                 reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(ignore_index, reduction, validate)
        self.scale = check_number(scale, "scale")
        self.log_zero = check_number(log_zero, "log_zero", high=0.0)

    def _hparams(self) -> dict[str, Any]:
        return {"scale": self.scale, "log_zero": self.log_zero}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return LF.rce(logits, target, scale=self.scale, log_zero=self.log_zero, **self._common())


@register(
    "sce",
    aliases=("sce_loss", "symmetric_cross_entropy"),
    family="noise",
    kind="classification",
    catalogue="B2",
    formula="l_i = α · CE(z_i, y_i) + β · RCE(z_i, y_i)",
    paper=SCE_PAPER,
    code="YisenWang/symmetric_cross_entropy_for_noisy_labels (Keras); PyTorch: " + f"{APL_CODE}::SCELoss",
    function=LF.sce,
    defaults_source={"alpha": "SCE paper CIFAR-10 setting (α=0.1; CIFAR-100: 6.0)",
                     "beta": "SCE paper CIFAR-10 setting (β=1.0; CIFAR-100: 0.1)",
                     "log_zero": "reference code, A = log(1e-4) (the paper writes A = -4)"},
)
class SCELoss(_NoiseLoss):
    r"""Symmetric cross-entropy (Wang et al., 2019, "Symmetric Cross Entropy for Robust
    Learning with Noisy Labels").

    .. math:: \ell_i = \alpha\,\mathrm{CE}(z_i, y_i) + \beta\,\mathrm{RCE}(z_i, y_i)

    CE (unclamped) fits the clean samples; the symmetric RCE term (see :class:`RCELoss`)
    adds noise robustness. Defaults α = 0.1, β = 1.0 are the paper's CIFAR-10 values (CIFAR-100:
    α = 6.0, β = 0.1); ``A = log(1e-4)`` as in the code (parity case ``cls_sce``).

    Args:
        alpha: weight of CE (≥ 0).
        beta: weight of RCE (≥ 0).
        log_zero: RCE's A (see :class:`RCELoss`).
        ignore_index, reduction, validate: as in :class:`MAELoss`.

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("sce", alpha=0.1, beta=1.0)
        >>> crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 2])).ndim
        0
    """

    def __init__(self, alpha: float = 0.1, beta: float = 1.0, log_zero: float = RCE_LOG_ZERO, ignore_index: int = -100,
                 reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(ignore_index, reduction, validate)
        self.alpha = check_number(alpha, "alpha", low=0.0)
        self.beta = check_number(beta, "beta", low=0.0)
        self.log_zero = check_number(log_zero, "log_zero", high=0.0)

    def _hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return LF.sce(logits, target, alpha=self.alpha, beta=self.beta, log_zero=self.log_zero, **self._common())


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
    function=LF.nce,
    defaults_source={"scale": "HanxunH/Active-Passive-Losses (scale=1.0)"},
)
class NCELoss(_ScaledLoss):
    r"""Normalised cross-entropy (Ma et al., 2020, "Normalized Loss Functions for Deep
    Learning with Noisy Labels").

    .. math:: \ell_i = s\,\frac{-\log p_{i,y_i}}{-\sum_{j}\log p_{ij}}

    Normalising any loss by its sum over all labels makes it symmetric
    (``Σ_j ℓ(z, j) = s``), hence robust to symmetric noise, but it underfits on its own:
    pair it with a passive loss (:class:`NCERCELoss`, :class:`ActivePassiveLoss`). Computed
    from ``log_softmax`` with no clamp, like the reference (parity case ``cls_nce``). Not
    to be confused with noise-contrastive estimation.

    Args:
        scale: s (default 1.0; the APL configs scale the combined losses instead).
        ignore_index, reduction, validate: as in :class:`MAELoss`.

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("nce")
        >>> round(float(crit(torch.zeros(2, 4), torch.tensor([0, 3]))), 4)
        0.25
    """

    _function = staticmethod(LF.nce)


@register(
    "nfl",
    aliases=("nfl_loss", "normalized_focal", "normalised_focal"),
    family="noise",
    kind="classification",
    catalogue="B3",
    formula="l_i = scale · (1-p_y)^γ log p_y / Σ_j (1-p_j)^γ log p_j,  (1-p)^γ factors detached (reference)",
    paper=APL_PAPER,
    code=f"{APL_CODE}::NormalizedFocalLoss",
    function=LF.nfl,
    defaults_source={"gamma": "HanxunH/Active-Passive-Losses configs (γ=0.5)",
                     "scale": "1.0 (the APL CIFAR-10 config uses 10 for NFL alone)",
                     "detach": "reference code detaches the modulating factors"},
)
class NFLLoss(_NoiseLoss):
    r"""Normalised focal loss (Ma et al., 2020, "Normalized Loss Functions for Deep Learning
    with Noisy Labels").

    .. math:: \ell_i = s\,\frac{(1-p_{i,y_i})^{\gamma}\log p_{i,y_i}}{\sum_j (1-p_{ij})^{\gamma}\log p_{ij}}

    **Gradient convention.** The reference computes every modulating factor
    ``(1 − p)^γ`` from ``logpt.data``, i.e. with the gradient stopped, while the ``log p``
    terms keep theirs. ``detach=True`` (default) reproduces it (parity case ``cls_nfl``);
    ``detach=False`` differentiates the whole expression (same loss value, gradients
    differ by ~1e-3). ``γ = 0`` is :class:`NCELoss`.

    Args:
        gamma: focusing parameter γ ≥ 0 (default 0.5, the APL configs').
        scale: s (default 1.0).
        detach: stop the gradient through ``(1 − p)^γ`` (reference behaviour).
        ignore_index, reduction, validate: as in :class:`MAELoss`.

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("nfl", gamma=0.5)
        >>> crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 2])).ndim
        0
    """

    def __init__(self, gamma: float = 0.5, scale: float = 1.0, detach: bool = True, ignore_index: int = -100,
                 reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(ignore_index, reduction, validate)
        self.gamma = check_number(gamma, "gamma", low=0.0)
        self.scale = check_number(scale, "scale")
        self.detach = bool(detach)

    def _hparams(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "scale": self.scale, "detach": self.detach}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return LF.nfl(logits, target, gamma=self.gamma, scale=self.scale, detach=self.detach, **self._common())


@register(
    "ngce",
    aliases=("ngce_loss", "normalized_gce", "normalised_gce"),
    family="noise",
    kind="classification",
    catalogue="B3",
    formula="l_i = scale · (1 - p_y^q) / Σ_j (1 - p_j^q),  p clamped to [1e-7, 1]",
    paper=APL_PAPER,
    code=f"{APL_CODE}::NormalizedGeneralizedCrossEntropy",
    function=LF.ngce,
    defaults_source={"q": "GCE's q=0.7 (the APL CIFAR-10 config uses 0.1)", "scale": "1.0"},
)
class NGCELoss(_NoiseLoss):
    r"""Normalised generalised cross-entropy (Ma et al., 2020, "Normalized Loss Functions for
    Deep Learning with Noisy Labels").

    .. math:: \ell_i = s\,\frac{1 - p_{i,y_i}^{\,q}}{\sum_j \big(1 - p_{ij}^{\,q}\big)}
              = s\,\frac{1 - p_{i,y_i}^{\,q}}{C - \sum_j p_{ij}^{\,q}}

    The softmax is clamped to ``[1e-7, 1]`` like the reference (parity case ``cls_ngce``);
    nothing is detached. Default ``q = 0.7`` (GCE's); the APL CIFAR-10 configuration uses
    ``q = 0.1``.

    Args:
        q: exponent in [0, 1].
        scale: s (default 1.0).
        ignore_index, reduction, validate: as in :class:`MAELoss`.

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("ngce", q=0.7)
        >>> round(float(crit(torch.zeros(2, 4), torch.tensor([0, 3]))), 4)
        0.25
    """

    def __init__(self, q: float = 0.7, scale: float = 1.0, ignore_index: int = -100, reduction: str = "mean",
                 validate: bool = True) -> None:
        super().__init__(ignore_index, reduction, validate)
        self.q = check_number(q, "q", low=0.0, high=1.0)
        self.scale = check_number(scale, "scale")

    def _hparams(self) -> dict[str, Any]:
        return {"q": self.q, "scale": self.scale}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return LF.ngce(logits, target, q=self.q, scale=self.scale, **self._common())


# --------------------------------------------------------------------------------------
# B3: active-passive composition
# --------------------------------------------------------------------------------------
def _per_sample_part(part: Any, kwargs: Mapping[str, Any] | None, name: str) -> nn.Module:
    """A loss module returning per-sample losses, from a registry id or a module."""
    if isinstance(part, str):
        return create(part, reduction="none", **dict(kwargs or {}))
    if kwargs:
        raise ValueError(f"{name}_kwargs apply only when {name} is a registry id string")
    if isinstance(part, nn.Module):
        if getattr(part, "reduction", "none") != "none":
            raise ValueError(
                f"{name} must return per-sample losses: build it with reduction='none' "
                f"(got reduction={part.reduction!r}); the combination reduces once at the end"
            )
        return part
    raise TypeError(f"{name} must be a registry id (e.g. 'nce') or a loss module, got {type(part).__name__}")


@register(
    "active_passive",
    aliases=("apl", "active_passive_loss"),
    family="noise",
    kind="classification",
    catalogue="B3",
    formula="l_i = α · L_active(z_i, y_i) + β · L_passive(z_i, y_i)",
    paper=APL_PAPER,
    code=APL_CODE,
    function=LF.active_passive,
    defaults_source={"active": "Ma et al. 2020 (NCE)", "passive": "Ma et al. 2020 (RCE)",
                     "alpha": "APL CIFAR-10 configs (α=1; CIFAR-100 NCE+RCE: 10)", "beta": "APL CIFAR-10 configs (β=1; CIFAR-100 NCE+RCE: 0.1)"},
)
class ActivePassiveLoss(Loss):
    r"""Active-passive loss (APL; Ma et al., 2020, "Normalized Loss Functions for Deep
    Learning with Noisy Labels"): a robust *active* loss plus a robust *passive* loss.

    .. math:: \ell_i = \alpha\,L_{\text{active}}(z_i, y_i) + \beta\,L_{\text{passive}}(z_i, y_i)

    Active losses push up ``p_y`` explicitly (NCE, NFL, NGCE, …), passive ones push down
    ``p_{j≠y}`` (MAE, RCE, …). Normalised losses alone underfit; pairing them fixes it
    while staying robust. The parts are given as registry ids (created with
    ``reduction="none"``, options in ``active_kwargs`` / ``passive_kwargs``) or as loss
    modules built with ``reduction="none"`` — any lossatlas loss composes, so NFL+RCE,
    NGCE+MAE, … need no new class. :class:`NCERCELoss` and :class:`NCEMAELoss` are the
    two presets with parity cases. The logits and targets are validated once here.

    Args:
        active: id or module of the active loss (default ``"nce"``).
        passive: id or module of the passive loss (default ``"rce"``).
        alpha: weight of the active loss (≥ 0).
        beta: weight of the passive loss (≥ 0).
        active_kwargs / passive_kwargs: constructor options when the part is an id.
        ignore_index, reduction, validate: as in :class:`MAELoss`.

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("active_passive", active="nfl", passive="mae", alpha=1.0, beta=1.0)
        >>> crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 2])).ndim
        0
    """

    def __init__(
        self,
        active: str | nn.Module = "nce",
        passive: str | nn.Module = "rce",
        alpha: float = 1.0,
        beta: float = 1.0,
        active_kwargs: Mapping[str, Any] | None = None,
        passive_kwargs: Mapping[str, Any] | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__(reduction, validate)
        self.alpha = check_number(alpha, "alpha", low=0.0)
        self.beta = check_number(beta, "beta", low=0.0)
        self.active = _per_sample_part(active, active_kwargs, "active")
        self.passive = _per_sample_part(passive, passive_kwargs, "passive")
        self.ignore_index = int(ignore_index)

    def _hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        z, y, w, out_dtype = prepare_classification(logits, target, self.reduction, self.validate, None, self.ignore_index)
        losses = self.alpha * self.active(z, y) + self.beta * self.passive(z, y)
        return reduce_loss(losses, self.reduction, w, out_dtype)


class _NCEPreset(ActivePassiveLoss):
    """An NCE + passive loss preset of :class:`ActivePassiveLoss`; ``_passive`` names the passive part."""

    _passive: str

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, ignore_index: int = -100, reduction: str = "mean",
                 validate: bool = True) -> None:
        super().__init__("nce", self._passive, alpha, beta, None, None, ignore_index, reduction, validate)


def _preset_usage(loss_id: str, passive: str) -> str:
    """The Args, Shapes and Example sections of an NCE preset's docstring."""
    return f"""\
Args:
    alpha: weight of NCE; beta: weight of {passive}.
    ignore_index, reduction, validate: as in :class:`MAELoss`.

Shapes: ``logits`` [N, C]; ``target`` int64 [N].

Example:
    >>> import torch, lossatlas as la
    >>> crit = la.create("{loss_id}", alpha=1.0, beta=1.0)
    >>> crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 2])).ndim
    0"""


@register(
    "nce_rce",
    aliases=("nce+rce", "ncerce"),
    family="noise",
    kind="classification",
    catalogue="B3",
    formula="l_i = α · NCE(z_i, y_i) + β · RCE(z_i, y_i)",
    paper=APL_PAPER,
    code=f"{APL_CODE}::NCEandRCE",
    function=LF.nce_rce,
    defaults_source={"alpha": "APL CIFAR-10 config (α=1; CIFAR-100: 10)", "beta": "APL CIFAR-10 config (β=1; CIFAR-100: 0.1)"},
    notes="Preset of active_passive(active='nce', passive='rce').",
)
@fill_doc(usage=_preset_usage("nce_rce", "RCE"))
class NCERCELoss(_NCEPreset):
    r"""NCE+RCE, the flagship active-passive loss (Ma et al., 2020, "Normalized Loss
    Functions for Deep Learning with Noisy Labels").

    .. math:: \ell_i = \alpha\,\mathrm{NCE}(z_i, y_i) + \beta\,\mathrm{RCE}(z_i, y_i)

    A preset of :class:`ActivePassiveLoss` (``active="nce"``, ``passive="rce"``), with RCE's
    reference constants (``A = log 1e-4``, softmax clamped at 1e-7). Defaults α = β = 1
    are the APL CIFAR-10 configuration (CIFAR-100: α = 10, β = 0.1); parity case
    ``cls_nce_rce``.

    {usage}
    """

    _passive = "rce"


@register(
    "nce_mae",
    aliases=("nce+mae", "ncemae"),
    family="noise",
    kind="classification",
    catalogue="B3",
    formula="l_i = α · NCE(z_i, y_i) + β · (1 - p_{i,y_i})",
    paper=APL_PAPER,
    code=f"{APL_CODE}::NCEandMAE",
    function=LF.nce_mae,
    defaults_source={"alpha": "APL CIFAR-10 config (α=1; CIFAR-100: 10)", "beta": "APL configs (β=1)"},
    notes="Preset of active_passive(active='nce', passive='mae').",
)
@fill_doc(usage=_preset_usage("nce_mae", "MAE"))
class NCEMAELoss(_NCEPreset):
    r"""NCE+MAE active-passive loss (Ma et al., 2020, "Normalized Loss Functions for Deep
    Learning with Noisy Labels").

    .. math:: \ell_i = \alpha\,\mathrm{NCE}(z_i, y_i) + \beta\,(1 - p_{i,y_i})

    A preset of :class:`ActivePassiveLoss` (``active="nce"``, ``passive="mae"``; functional
    twin :func:`lossatlas.functional.nce_mae`). MAE is at the reference's scale, ``1 − p_y``
    (``MeanAbsoluteError`` of HanxunH/Active-Passive-Losses: half of ``‖p − e_y‖_1``), and
    the passive part is MAE, not RCE. Defaults α = β = 1 (APL CIFAR-10 configuration; CIFAR-100:
    α = 10, β = 1); parity case ``cls_nce_mae``.

    {usage}
    """

    _passive = "mae"


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
    function=LF.logitclip,
    defaults_source={"tau": "parity case / paper grid {0.1, 0.5, 1, ..., 5} (τ=1)", "p": "paper and code (--lp 2)",
                     "eps": "reference code adds 1e-7 to the norm", "base": "paper: cross-entropy"},
)
class LogitClipLoss(Loss):
    r"""Logit clipping (Wei et al., 2023, "Mitigating Memorization of Noisy Labels by
    Clipping the Model Prediction"): clamp the p-norm of each logit vector, then apply any
    logit-based loss.

    .. math:: z' = \begin{cases} \dfrac{z}{\tau\,\lVert z\rVert_p} & \lVert z\rVert_p > 1/\tau\\
              z & \text{otherwise}\end{cases},\qquad \ell_i = L_{\text{base}}(z'_i, y_i)

    Bounding the logit norm bounds the loss, which curbs memorisation of noisy labels.
    This is a *wrapper*: ``base`` is any classification loss — a registry id (created with
    this module's ``reduction`` and ``base_kwargs``), a loss module, or a callable
    ``f(logits, target, **kw)``; default cross-entropy (the paper's, parity case
    ``cls_logitclip``). Extra keyword arguments of ``forward`` (e.g. ``index=`` for ALDR)
    are passed to the base loss; a plain-function base also receives ``reduction=``.

    **Threshold, paper vs code.** The paper clips rows with ``‖z‖_p > 1/τ`` to norm
    ``1/τ`` (continuous in z); the official code clips rows with ``‖z‖_p > τ`` (its
    ``--temp``) to norm ``1/τ``. They coincide at τ = 1 (the default). This class follows
    the paper; ``tau`` is the code's ``--temp``, ``p`` its ``--lp``. Like the code it adds
    ``eps = 1e-7`` to the norm, and the gradient flows through the norm.

    Args:
        tau: τ > 0; the clipped norm is 1/τ (paper grid {0.1, 0.5, 1, …, 5}).
        p: the norm's order, ≥ 1 or ``math.inf`` (default 2).
        base: base loss (default ``"cross_entropy"``).
        base_kwargs: constructor options when ``base`` is an id.
        eps: added to the norm (default 1e-7, the reference's).
        reduction: used to build ``base`` from an id; a ``base`` module must use the same.
        validate: check the logits for NaN/Inf.

    Shapes: ``logits`` [N, C]; ``target`` as the base loss takes it (int64 [N] for CE).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("logitclip", tau=1.0, p=2.0, base="focal", base_kwargs={"gamma": 2.0})
        >>> crit(100 * torch.randn(4, 3), torch.tensor([0, 1, 2, 2])).ndim
        0
    """

    def __init__(
        self,
        tau: float = 1.0,
        p: float = 2.0,
        base: str | nn.Module | Callable[..., Tensor] | None = None,
        base_kwargs: Mapping[str, Any] | None = None,
        eps: float = 1e-7,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__(reduction, validate)
        self.tau, self.p, self.eps = _clip_params(tau, p, eps)
        if base is None or isinstance(base, str):
            self.base = create(base or "cross_entropy", reduction=reduction, **dict(base_kwargs or {}))
        elif base_kwargs:
            raise ValueError("base_kwargs apply only when base is a registry id string")
        elif isinstance(base, nn.Module):
            if getattr(base, "reduction", reduction) != reduction:
                raise ValueError(
                    f"base has reduction={base.reduction!r} but LogitClipLoss has reduction={reduction!r}; "
                    "build both with the same reduction"
                )
            self.base = base
        elif callable(base):
            self.base = base
        else:
            raise TypeError(f"base must be a registry id, a loss module or a callable, got {type(base).__name__}")

    def _hparams(self) -> dict[str, Any]:
        return {"tau": self.tau, "p": self.p}

    def clip(self, logits: Tensor) -> Tensor:
        """The clipped logits (same dtype as the input)."""
        return LF.clip_logits(logits, tau=self.tau, p=self.p, eps=self.eps).to(logits.dtype)

    def forward(self, logits: Tensor, target: Tensor, **kwargs: Any) -> Tensor:
        check_logits(logits, self.validate)
        z = LF.clip_logits(logits, tau=self.tau, p=self.p, eps=self.eps)
        if not isinstance(self.base, nn.Module):
            kwargs.setdefault("reduction", self.reduction)  # a plain function gets this module's reduction
        return self.base(z, target, **kwargs).to(logits.dtype)


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
    function=LF.ldr,
    defaults_source={"margin": "Optimization-AI/ICML2023_LDR experiment.py (threshold=0.1)",
                     "temperature": "Optimization-AI/ICML2023_LDR experiment.py (Lambda=10)",
                     "softplus": "LDRLoss_V1 always applies softplus"},
)
class LDRLoss(_NoiseLoss):
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
    (what :class:`ALDRLoss` does by default). Defaults ``m = 0.1``, ``λ = 10`` are experiment.py's. ``temperature``
    may also be a tensor [N] of per-sample values (functional form).

    Args:
        margin: m, added to every non-target gap (reference ``threshold``).
        temperature: λ > 0 (reference ``Lambda``).
        softplus: apply softplus before normalising.
        ignore_index, reduction, validate: as in :class:`MAELoss`.

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("ldr", margin=0.1, temperature=10.0)
        >>> crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 2])).ndim
        0
    """

    def __init__(self, margin: float = 0.1, temperature: float = 10.0, softplus: bool = True, ignore_index: int = -100,
                 reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(ignore_index, reduction, validate)
        self.margin = check_number(margin, "margin")
        self.temperature = check_number(temperature, "temperature", low=0.0, low_open=True)
        self.softplus = bool(softplus)

    def _hparams(self) -> dict[str, Any]:
        return {"margin": self.margin, "temperature": self.temperature, "softplus": self.softplus}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return LF.ldr(logits, target, margin=self.margin, temperature=self.temperature, softplus=self.softplus,
                      **self._common())


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
    defaults_source={"margin": "experiment.py (threshold=0.1)", "temperature": "experiment.py (Lambda=10)",
                     "alpha": "experiment.py (alpha=2)",
                     "softplus": "False: experiment.py builds ALDRLoss_V1 without it (class default False); only its CIFAR-100 branch passes True"},
)
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
    λ > 0 always). Needs C ≥ 2; ``ignore_index`` is not supported.

    Args:
        num_samples: size of the training set (indices run over ``[0, num_samples)``;
            reference ``N``).
        margin: m (default 0.1; reference ``threshold``, experiment.py ``--margin``).
        temperature: Λ, the initial / maximal λ (default 10; reference ``Lambda``,
            experiment.py's parameter set ``[10]``).
        alpha: α > 0, strength of the KL regulariser on λ (default 2; experiment.py ``--alpha``).
        softplus: apply softplus before normalising (default False, as experiment.py runs
            ALDR; True is its CIFAR-100 setting and LDR's form).
        reduction, validate: as in :class:`MAELoss`.

    Call: ``crit(logits [N, C], target int64 [N], index=int64 [N])`` with distinct
    dataset indices of the batch's samples.

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("aldr", num_samples=100)
        >>> crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 2]), index=torch.tensor([5, 6, 7, 8])).ndim
        0
    """

    def __init__(
        self,
        num_samples: int,
        margin: float = 0.1,
        temperature: float = 10.0,
        alpha: float = 2.0,
        softplus: bool = False,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__(reduction, validate)
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int (the training-set size), got {num_samples!r}")
        self.num_samples = num_samples
        self.margin = check_number(margin, "margin")
        self.temperature = check_number(temperature, "temperature", low=0.0, low_open=True)
        self.alpha = check_number(alpha, "alpha", low=0.0, low_open=True)
        self.softplus = bool(softplus)
        self.register_buffer("sample_temperature", torch.full((num_samples,), self.temperature, dtype=torch.float32))

    def _hparams(self) -> dict[str, Any]:
        return {"num_samples": self.num_samples, "margin": self.margin, "temperature": self.temperature,
                "alpha": self.alpha, "softplus": self.softplus}

    def reset(self) -> None:
        """Set every sample's λ back to Λ."""
        self.sample_temperature.fill_(self.temperature)

    def _check_index(self, index: Any, n: int) -> Tensor:
        if index is None:
            raise ValueError("ALDR keeps a temperature per training sample: call it with index=<int64 [N] dataset indices>")
        check_tensor(index, "index")
        if index.dtype.is_floating_point or index.dtype == torch.bool or index.is_complex():
            raise TypeError(f"index must hold integer dataset indices (torch.long), got dtype {index.dtype}")
        if index.dim() != 1 or index.shape[0] != n:
            raise ValueError(f"index must have shape [N] = [{n}] (one dataset index per sample), got {tuple(index.shape)}")
        index = index.to(self.sample_temperature.device)
        if self.validate and not compiling() and n:
            if int(index.min()) < 0 or int(index.max()) >= self.num_samples:
                raise ValueError(f"index values must be in [0, num_samples={self.num_samples}); found {int(index.min())}..{int(index.max())}")
            if torch.unique(index).numel() != n:
                raise ValueError("index contains repeated dataset indices within one batch; each sample's state can be updated once per call")
        return index

    def forward(self, logits: Tensor, target: Tensor, index: Tensor | None = None) -> Tensor:
        index = self._check_index(index, logits.shape[0] if isinstance(logits, Tensor) and logits.dim() == 2 else -1)
        prev = self.sample_temperature[index]
        loss, lam = LF.aldr(
            logits, target, prev, margin=self.margin, temperature=self.temperature, alpha=self.alpha,
            softplus=self.softplus, reduction=self.reduction, validate=self.validate, return_temperature=True,
        )
        with torch.no_grad():
            self.sample_temperature[index] = lam.to(self.sample_temperature.dtype)
        return loss


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
    function=LF.taylor_ce,
    defaults_source={"order": "lossatlas choice (t=2); the paper tunes t per dataset"},
)
class TaylorCELoss(_NoiseLoss):
    r"""Taylor cross-entropy (Feng et al., 2020, "Can Cross Entropy Loss Be Robust to Label
    Noise?").

    .. math:: \ell_i = \sum_{k=1}^{t} \frac{(1 - p_{i,y_i})^k}{k}

    The order-t Taylor expansion of ``−log p_y`` around ``p_y = 1``: ``t = 1`` is MAE, and
    as ``t → ∞`` it converges to cross-entropy (for ``p_y > 0``). Small t is bounded and
    noise-robust, large t fits faster. No official code; the default ``t = 2`` is this
    library's choice (the paper tunes t per dataset).

    Args:
        order: t ≥ 1, the number of Taylor terms.
        ignore_index, reduction, validate: as in :class:`MAELoss`.

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("taylor_ce", order=2)
        >>> round(float(crit(torch.zeros(2, 2), torch.tensor([0, 1]))), 4)
        0.625
    """

    def __init__(self, order: int = 2, ignore_index: int = -100, reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(ignore_index, reduction, validate)
        self.order = _check_order(order)

    def _hparams(self) -> dict[str, Any]:
        return {"order": self.order}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return LF.taylor_ce(logits, target, order=self.order, **self._common())


@register(
    "alpha_loss",
    aliases=("alphaloss", "alpha_loss_sypherd"),
    family="noise",
    kind="classification",
    catalogue="B7",
    formula="l_i = α/(α-1) · (1 - p_{i,y_i}^{(α-1)/α});  α = 1: CE,  α = ∞: 1 - p_y,  α = 1/2: 1/p_y - 1",
    paper=ALPHA_PAPER,
    code="sankarlab/alphaloss",
    function=LF.alpha_loss,
    defaults_source={"alpha": "lossatlas choice (α=2); the paper recommends α > 1 for label noise"},
)
class AlphaLoss(_NoiseLoss):
    r"""α-loss (Sypherd et al., 2019, "A Tunable Loss Function for Robust Classification:
    Calibration, Landscape, and Generalization"; IEEE Trans. Inf. Theory 2022).

    .. math:: \ell_i = \frac{\alpha}{\alpha - 1}\Big(1 - p_{i,y_i}^{(\alpha-1)/\alpha}\Big),\qquad \alpha \in (0, \infty]

    ``α = 1`` is cross-entropy (the limit), ``α → ∞`` gives ``1 − p_y`` (MAE), ``α = 1/2``
    gives ``1/p_y − 1`` (exponential-loss-like). α > 1 trades convexity for robustness to
    label noise; α < 1 emphasises hard samples and is unbounded (it overflows for
    extreme logits). Computed as ``−expm1(c log p_y)/c`` with ``c = (α−1)/α``, exact near
    α = 1. Pass ``alpha=math.inf`` for the limit. Default α = 2 is this library's choice.

    Args:
        alpha: α > 0 or ``math.inf``.
        ignore_index, reduction, validate: as in :class:`MAELoss`.

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("alpha_loss", alpha=2.0)
        >>> round(float(crit(torch.zeros(2, 4), torch.tensor([0, 3]))), 4)
        1.0
    """

    def __init__(self, alpha: float = 2.0, ignore_index: int = -100, reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(ignore_index, reduction, validate)
        self.alpha = _check_alpha(alpha)

    def _hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return LF.alpha_loss(logits, target, alpha=self.alpha, **self._common())
