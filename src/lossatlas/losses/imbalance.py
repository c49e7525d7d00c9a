"""Long-tailed classification losses (catalogue rows A1, A2, A4, A6, A7, A8).

Class re-weighting (A3 effective number, A5 DRW) lives in :mod:`lossatlas.weighting` and
composes with every loss here through ``weight=`` or ``reduction="none"``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from .. import functional as LF
from .._docs import fill_doc
from .._validation import as_class_counts, check_number
from ..functional.imbalance import _biased_ce, ldam_margins, log_prior, vs_parameters
from ..registry import Paper, register
from ._base import Loss

__all__ = [
    "CrossEntropyLoss",
    "FocalLoss",
    "SigmoidFocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "BalancedSoftmaxLoss",
    "VSLoss",
]

FOCAL_PAPER = Paper("T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollár", "Focal Loss for Dense Object Detection", "ICCV", 2017, "1708.02002")
LDAM_PAPER = Paper("K. Cao, C. Wei, A. Gaidon, N. Arechiga, T. Ma", "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss", "NeurIPS", 2019, "1906.07413")
LA_PAPER = Paper("A. K. Menon, S. Jayasumana, A. S. Rawat, H. Jain, A. Veit, S. Kumar", "Long-tail learning via logit adjustment", "ICLR", 2021, "2007.07314")
BS_PAPER = Paper("J. Ren, C. Yu, S. Sheng, X. Ma, H. Zhao, S. Yi, H. Li", "Balanced Meta-Softmax for Long-Tailed Visual Recognition", "NeurIPS", 2020, "2007.10740")
VS_PAPER = Paper("G. R. Kini, O. Paraskevas, S. Oymak, C. Thrampoulidis", "Label-Imbalanced and Group-Sensitive Classification under Overparameterization", "NeurIPS", 2021, "2103.01550")
LS_PAPER = Paper("C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens, Z. Wojna", "Rethinking the Inception Architecture for Computer Vision", "CVPR", 2016, "1512.00567")


def _prior_tail(create_args: str, soft: bool = True) -> str:
    """The shapes line and runnable example the class-count losses share, for their
    ``{shapes_example}`` docstring line (``la.create(create_args)``); ``soft``: the loss also
    takes probability targets."""
    soft_text = " or class probabilities [N, C] (soft labels, e.g. mixup; the adjusted logits' cross-entropy)" if soft else ""
    return f"""\
Shapes: ``logits`` [N, C]; ``target`` int64 [N]{soft_text}.

Example:
    >>> import torch, lossatlas as la
    >>> crit = la.create({create_args})
    >>> crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 2])).ndim
    0
"""


@register(
    "cross_entropy",
    aliases=("ce", "softmax_ce"),
    family="imbalance",
    kind="classification",
    catalogue="A1",
    formula="l_i = -Σ_j t_ij log softmax(z_i)_j, t = (1-ε)·onehot(y) + ε/C; weighted mean Σ w_{y_i} l_i / Σ w_{y_i}",
    paper=LS_PAPER,
    code="torch.nn.functional.cross_entropy",
    function=LF.cross_entropy,
    defaults_source={"label_smoothing": "0 = plain CE (torch default); Szegedy et al. use 0.1", "ignore_index": "torch default"},
)
class CrossEntropyLoss(Loss):
    r"""Cross-entropy with class weights and label smoothing, exactly as ``torch.nn.CrossEntropyLoss``.

    .. math:: \ell_i = -\sum_j t_{ij}\,\log \operatorname{softmax}(z_i)_j,\qquad
              t_i = (1-\varepsilon)\,e_{y_i} + \varepsilon / C

    The baseline every other classification loss is compared with. Label smoothing is from
    Szegedy et al. (2016), "Rethinking the Inception Architecture for Computer Vision".
    Difference from torch: a ``"mean"`` over an empty batch is 0 (with a gradient), not NaN.

    Args:
        weight: optional per-class weights [C]; ``"mean"`` is then ``Σ w_{y_i} l_i / Σ w_{y_i}``.
        ignore_index: target value whose samples are skipped (default -100, as torch).
        label_smoothing: ε in [0, 1] (default 0).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.

    Shapes: ``logits`` [N, C]; ``target`` int64 [N] or class probabilities [N, C].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("cross_entropy", label_smoothing=0.1)
        >>> crit(torch.randn(8, 5), torch.randint(0, 5, (8,))).shape
        torch.Size([])
    """

    def __init__(
        self,
        weight: Tensor | Sequence[float] | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__(reduction, validate)
        self._register_class_weight(weight)
        self.ignore_index = int(ignore_index)
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)

    def _hparams(self) -> dict[str, Any]:
        return {"label_smoothing": self.label_smoothing, "ignore_index": self.ignore_index}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return LF.cross_entropy(
            logits, target, weight=self.weight, ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing, reduction=self.reduction, validate=self.validate,
        )


@register(
    "focal",
    aliases=("focal_loss", "softmax_focal"),
    family="imbalance",
    kind="classification",
    catalogue="A2",
    formula="l_i = -α_{y_i} (1 - p_{i,y_i})^γ log p_{i,y_i},  p = softmax(z)",
    paper=FOCAL_PAPER,
    code="kaidic/LDAM-DRW losses.py::FocalLoss (softmax form); facebookresearch/Detectron (sigmoid form)",
    function=LF.focal,
    defaults_source={"gamma": "Lin et al. 2017 (γ=2 best on COCO); LDAM-DRW's CIFAR script uses γ=1", "alpha": "none: α is the sigmoid form's class prior (see sigmoid_focal)"},
)
class FocalLoss(Loss):
    r"""Softmax focal loss (Lin et al., 2017, "Focal Loss for Dense Object Detection").

    .. math:: \ell_i = -\alpha_{y_i}\,(1 - p_{i,y_i})^{\gamma}\,\log p_{i,y_i},\qquad p_i = \operatorname{softmax}(z_i)

    Down-weights well-classified examples. γ = 0 is cross-entropy. Default γ = 2 is the
    paper's; the gradient flows through the modulating factor, as in the paper and
    kaidic/LDAM-DRW's ``FocalLoss`` (parity case ``cls_focal``).

    Args:
        gamma: focusing parameter γ ≥ 0 (default 2.0).
        alpha: optional balance factor: a float (scales every term) or one value per class.
        weight: optional per-class weights [C] with torch's weighted-mean semantics (this is
            how class-balanced focal = ``focal`` + ``effective_number`` composes). Note the
            LDAM-DRW reference computes ``p = exp(-w_y·CE)`` when weighted; here the
            modulating factor always uses the true ``p_t``.
        ignore_index: target value to skip (default -100).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("focal", gamma=2.0)
        >>> float(crit(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]))) > 0
        True
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = None,
        weight: Tensor | Sequence[float] | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__(reduction, validate)
        self.gamma = check_number(gamma, "gamma", low=0.0)
        if alpha is None or isinstance(alpha, (int, float)):
            self.alpha = None if alpha is None else check_number(alpha, "alpha", low=0.0)
        else:
            self.register_buffer("alpha", self._buffer(torch.as_tensor(alpha, dtype=torch.float64)))
        self._register_class_weight(weight)
        self.ignore_index = int(ignore_index)

    def _hparams(self) -> dict[str, Any]:
        return {"gamma": self.gamma}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return LF.focal(
            logits, target, gamma=self.gamma, alpha=self.alpha, weight=self.weight,
            ignore_index=self.ignore_index, reduction=self.reduction, validate=self.validate,
        )


@register(
    "sigmoid_focal",
    aliases=("sigmoid_focal_loss",),
    family="imbalance",
    kind="multilabel",
    catalogue="A2",
    formula="l_ic = α_t (1 - p_t)^γ BCE(z_ic, y_ic),  p_t = σ(z)·y + (1-σ(z))(1-y),  α_t = α y + (1-α)(1-y)",
    paper=FOCAL_PAPER,
    code="pytorch/vision torchvision/ops/focal_loss.py::sigmoid_focal_loss",
    function=LF.sigmoid_focal,
    defaults_source={"alpha": "Lin et al. 2017 / torchvision (0.25)", "gamma": "Lin et al. 2017 / torchvision (2)"},
)
class SigmoidFocalLoss(Loss):
    r"""Sigmoid focal loss for binary / multi-label targets (Lin et al., 2017).

    .. math:: \ell_{ic} = \alpha_t\,(1-p_t)^{\gamma}\,\mathrm{BCE}(z_{ic}, y_{ic}),\quad
              p_t = \sigma(z)\,y + (1-\sigma(z))(1-y),\quad \alpha_t = \alpha y + (1-\alpha)(1-y)

    Same values and gradients as ``torchvision.ops.sigmoid_focal_loss`` (parity case
    ``ml_sigmoid_focal``). ``alpha=None`` (or negative) disables the α balance.
    ``reduction="mean"`` averages over all N·C elements; ``"none"`` returns [N, C].
    An optional call argument ``mask`` (broadcastable to [N, C], 1 = annotated) leaves
    unannotated labels out; ``"mean"`` is then over the counted elements.

    Shapes: ``logits`` [N, C]; ``target`` float multi-hot (or soft) [N, C] in [0, 1].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("sigmoid_focal")
        >>> crit(torch.randn(4, 3), torch.ones(4, 3)).ndim
        0
    """

    def __init__(self, alpha: float | None = 0.25, gamma: float = 2.0, reduction: str = "mean", validate: bool = True) -> None:
        super().__init__(reduction, validate)
        self.alpha = None if alpha is None or alpha < 0 else check_number(alpha, "alpha", low=0.0, high=1.0)
        self.gamma = check_number(gamma, "gamma", low=0.0)

    def _hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "gamma": self.gamma}

    def forward(self, logits: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        return LF.sigmoid_focal(logits, target, alpha=self.alpha, gamma=self.gamma, reduction=self.reduction,
                                validate=self.validate, mask=mask)


class _PriorLoss(Loss):
    """Shared constructor of the losses that take ``class_counts``."""

    def __init__(self, class_counts: Any, weight: Any, ignore_index: int, reduction: str, validate: bool) -> None:
        super().__init__(reduction, validate)
        counts = as_class_counts(class_counts)
        self.register_buffer("class_counts", self._buffer(counts))
        self._register_class_weight(weight)
        if self.weight is not None and self.weight.numel() != counts.numel():
            raise ValueError(f"weight has {self.weight.numel()} entries but class_counts has {counts.numel()}; they must match")
        self.ignore_index = int(ignore_index)

    @property
    def num_classes(self) -> int:
        return int(self.class_counts.numel())

    def _common(self) -> dict[str, Any]:
        return {"weight": self.weight, "ignore_index": self.ignore_index, "reduction": self.reduction, "validate": self.validate}


@register(
    "ldam",
    aliases=("ldam_loss",),
    family="imbalance",
    kind="classification",
    catalogue="A4",
    formula="l_i = CE(s·(z_i - m_{y_i} e_{y_i}), y_i),  m_j = max_margin · n_j^{-1/4} / max_k n_k^{-1/4}",
    paper=LDAM_PAPER,
    code="kaidic/LDAM-DRW losses.py::LDAMLoss",
    function=LF.ldam,
    defaults_source={"max_margin": "kaidic/LDAM-DRW (max_m=0.5)", "scale": "kaidic/LDAM-DRW (s=30)"},
    notes="LDAM-DRW = this loss + the 'drw' weighting (pass weight=drw() or compose with reduction='none').",
)
@fill_doc(shapes_example=_prior_tail('"ldam", class_counts=[500, 50, 5]', soft=False))
class LDAMLoss(_PriorLoss):
    r"""Label-distribution-aware margin loss (Cao et al., 2019, "Learning Imbalanced Datasets
    with Label-Distribution-Aware Margin Loss").

    .. math:: \ell_i = \mathrm{CE}\big(s\,(z_i - m_{y_i} e_{y_i}),\ y_i\big),\qquad
              m_j = \texttt{max\_margin}\cdot \frac{n_j^{-1/4}}{\max_k n_k^{-1/4}}

    Rare classes get larger margins. Defaults ``max_margin=0.5``, ``scale=30`` are those of
    kaidic/LDAM-DRW (parity cases ``cls_ldam``, ``cls_ldam_drw``). The logits are used as
    given: the paper feeds cosine similarities (a normalised linear layer) — put that in
    the model. With zero margins and ``scale=1`` this is cross-entropy.

    Args:
        class_counts: training samples per class [C] (positive).
        max_margin: the largest margin (given to the rarest class).
        scale: s, multiplies the margin-shifted logits.
        weight: optional per-class weights [C] (e.g. DRW), torch weighted mean.
        ignore_index, reduction, validate: as in :class:`CrossEntropyLoss`.

    {shapes_example}
    """

    def __init__(
        self,
        class_counts: Any,
        max_margin: float = 0.5,
        scale: float = 30.0,
        weight: Tensor | Sequence[float] | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__(class_counts, weight, ignore_index, reduction, validate)
        self.max_margin = check_number(max_margin, "max_margin", low=0.0)
        self.scale = check_number(scale, "scale", low=0.0, low_open=True)
        self.register_buffer("margins", self._buffer(ldam_margins(self.class_counts, self.max_margin)))

    def _hparams(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "max_margin": self.max_margin, "scale": self.scale}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return LF.ldam(logits, target, None, scale=self.scale, margins=self.margins, **self._common())


@register(
    "logit_adjusted",
    aliases=("logit_adjustment", "la_loss", "logit_adjusted_loss"),
    family="imbalance",
    kind="classification",
    catalogue="A6",
    formula="l_i = CE(z_i + τ log π, y_i),  π_j = n_j / Σ_k n_k;  post-hoc: argmax_j (z_j - τ log π_j)",
    paper=LA_PAPER,
    code="google-research/google-research logit_adjustment/main.py",
    function=LF.logit_adjusted,
    defaults_source={"tau": "Menon et al. 2021 (τ=1)"},
    notes="τ=1 equals balanced_softmax (log π and log n differ by a per-row constant). Post-hoc form: lossatlas.functional.posthoc_logit_adjustment.",
)
@fill_doc(shapes_example=_prior_tail('"logit_adjusted", class_counts=[500, 50, 5], tau=1.0'))
class LogitAdjustedLoss(_PriorLoss):
    r"""Logit-adjusted softmax cross-entropy (Menon et al., 2021, "Long-tail learning via
    logit adjustment").

    .. math:: \ell_i = \mathrm{CE}(z_i + \tau \log \pi,\ y_i),\qquad \pi_j = n_j / \textstyle\sum_k n_k

    At test time predict with the raw logits (the adjustment is training-only). The post-hoc
    variant trains with plain CE and predicts ``argmax(z − τ log π)``: see :meth:`adjust`
    and :func:`lossatlas.functional.posthoc_logit_adjustment`. Default τ = 1 (paper). The
    official TF code adds 1e-12 inside the log; that is omitted (< 1e-8 relative).

    Args:
        class_counts: training samples per class [C].
        tau: τ, the adjustment strength (τ = 0 is CE).
        weight, ignore_index, reduction, validate: as in :class:`CrossEntropyLoss`.

    {shapes_example}
    """

    def __init__(
        self,
        class_counts: Any,
        tau: float = 1.0,
        weight: Tensor | Sequence[float] | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__(class_counts, weight, ignore_index, reduction, validate)
        self.tau = check_number(tau, "tau")
        self.register_buffer("bias", self._buffer(self.tau * log_prior(self.class_counts)))

    def _hparams(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "tau": self.tau}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return _biased_ce(logits, target, self.bias, self.reduction, self.validate, self.weight, self.ignore_index)

    def adjust(self, logits: Tensor) -> Tensor:
        """Post-hoc adjusted logits ``z − τ log π`` for prediction."""
        return logits - self.bias.to(device=logits.device, dtype=logits.dtype)


@register(
    "balanced_softmax",
    aliases=("balanced_softmax_loss", "bayias"),
    family="imbalance",
    kind="classification",
    catalogue="A7",
    formula="l_i = CE(z_i + log n, y_i)",
    paper=BS_PAPER,
    code="jiawei-ren/BalancedMetaSoftmax loss/BalancedSoftmaxLoss.py",
    function=LF.balanced_softmax,
    notes="Same loss as logit_adjusted with τ=1 and as UniMix's Bayias compensation.",
)
@fill_doc(shapes_example=_prior_tail('"balanced_softmax", class_counts=[500, 50, 5]'))
class BalancedSoftmaxLoss(_PriorLoss):
    r"""Balanced softmax (Ren et al., 2020, "Balanced Meta-Softmax for Long-Tailed Visual
    Recognition"); also the Bayias compensation of UniMix.

    .. math:: \ell_i = \mathrm{CE}(z_i + \log n,\ y_i)

    No hyper-parameter. Identical to :class:`LogitAdjustedLoss` with τ = 1 (log n and log π
    differ by a constant per row). Uniform counts give cross-entropy. Parity case
    ``cls_balanced_softmax``.

    Args:
        class_counts: training samples per class [C].
        weight, ignore_index, reduction, validate: as in :class:`CrossEntropyLoss`.

    {shapes_example}
    """

    def __init__(
        self,
        class_counts: Any,
        weight: Tensor | Sequence[float] | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__(class_counts, weight, ignore_index, reduction, validate)
        self.register_buffer("bias", self._buffer(torch.log(self.class_counts)))

    def _hparams(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return _biased_ce(logits, target, self.bias, self.reduction, self.validate, self.weight, self.ignore_index)


@register(
    "vs",
    aliases=("vs_loss", "vector_scaling"),
    family="imbalance",
    kind="classification",
    catalogue="A8",
    formula="l_i = CE(z_i / Δ + ι, y_i),  Δ_j = (n_max / n_j)^γ,  ι_j = τ log π_j",
    paper=VS_PAPER,
    code="orparask/VS-Loss loss.py::VSLoss",
    function=LF.vs,
    defaults_source={"gamma": "orparask/VS-Loss class default (0.3); README CIFAR-10-LT ρ=100 example uses 0.2", "tau": "orparask/VS-Loss class default (1.0); README example uses 1.2"},
)
@fill_doc(shapes_example=_prior_tail('"vs", class_counts=[500, 50, 5], gamma=0.2, tau=1.2'))
class VSLoss(_PriorLoss):
    r"""Vector-scaling loss (Kini et al., 2021, "Label-Imbalanced and Group-Sensitive
    Classification under Overparameterization").

    .. math:: \ell_i = \mathrm{CE}(z_i \odot \Delta^{-1} + \iota,\ y_i),\qquad
              \Delta_j = (n_{\max}/n_j)^{\gamma},\quad \iota_j = \tau \log \pi_j

    A multiplicative (CDT-like) and an additive (logit-adjustment) correction together.
    Rare classes' logits are divided by Δ_j ≥ 1, i.e. multiplied by the paper's
    ``(n_j/n_max)^γ``. γ = τ = 0 is cross-entropy. Defaults γ = 0.3, τ = 1 are
    orparask/VS-Loss's class defaults (parity case ``cls_vs``).

    Args:
        class_counts: training samples per class [C].
        gamma: γ ≥ 0, strength of the multiplicative adjustment.
        tau: τ, strength of the additive adjustment.
        weight, ignore_index, reduction, validate: as in :class:`CrossEntropyLoss`.

    {shapes_example}
    """

    def __init__(
        self,
        class_counts: Any,
        gamma: float = 0.3,
        tau: float = 1.0,
        weight: Tensor | Sequence[float] | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__(class_counts, weight, ignore_index, reduction, validate)
        self.gamma = check_number(gamma, "gamma", low=0.0)
        self.tau = check_number(tau, "tau")
        delta, iota = vs_parameters(self.class_counts, self.gamma, self.tau)
        self.register_buffer("delta", self._buffer(delta))
        self.register_buffer("iota", self._buffer(iota))

    def _hparams(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "gamma": self.gamma, "tau": self.tau}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return _biased_ce(logits, target, self.iota, self.reduction, self.validate, self.weight, self.ignore_index, divisor=self.delta)

