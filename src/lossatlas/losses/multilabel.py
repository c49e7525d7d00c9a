"""Multi-label losses (catalogue rows D1–D3): sigmoid BCE, ASL (multi- and single-label), self-adjusting Dice.

The sigmoid focal loss of row D1 is ``sigmoid_focal`` (registered with the long-tail family,
:class:`lossatlas.losses.SigmoidFocalLoss`). Multi-label losses here take an optional
``mask`` at call time and an ``ignore_index`` target value for partially annotated labels.
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor

from .. import functional as LF
from .._validation import check_number
from ..registry import Paper, register
from ._base import Loss

__all__ = ["BCELoss", "AsymmetricLoss", "AsymmetricSingleLabelLoss", "DiceLoss"]

ASL_PAPER = Paper(
    "T. Ridnik, E. Ben-Baruch, N. Zamir, A. Noy, I. Friedman, M. Protter, L. Zelnik-Manor",
    "Asymmetric Loss For Multi-Label Classification", "ICCV", 2021, "2009.14119",
)
DICE_PAPER = Paper(
    "X. Li, X. Sun, Y. Meng, J. Liang, F. Wu, J. Li",
    "Dice Loss for Data-imbalanced NLP Tasks", "ACL", 2020, "1911.02855",
)


def _check_ignore(ignore_index: Any) -> float | None:
    if ignore_index is None:
        return None
    value = check_number(ignore_index, "ignore_index")
    if 0.0 <= value <= 1.0:
        raise ValueError(f"ignore_index={ignore_index} is a valid multi-label target value; use a value outside [0, 1] such as -1")
    return value


@register(
    "bce",
    aliases=("binary_cross_entropy", "sigmoid_bce", "bce_with_logits"),
    family="multilabel",
    kind="multilabel",
    catalogue="D1",
    formula="l_ic = -[w_c y_ic log σ(z_ic) + (1 - y_ic) log(1 - σ(z_ic))],  w = pos_weight",
    paper=None,
    code="torch.nn.functional.binary_cross_entropy_with_logits",
    function=LF.bce,
    defaults_source={"pos_weight": "torch default (none)", "ignore_index": "none: every element is annotated"},
)
class BCELoss(Loss):
    r"""Sigmoid binary cross-entropy for multi-label targets, the multi-label baseline (row D1).

    .. math:: \ell_{ic} = -\big[w_c\,y_{ic}\log\sigma(z_{ic}) + (1-y_{ic})\log(1-\sigma(z_{ic}))\big]

    Same values and gradients as ``torch.nn.BCEWithLogitsLoss(pos_weight=w)`` (computed with
    log-sigmoid, finite for any logit), plus masking for partially annotated labels: pass
    ``mask`` [N, C] (1 = annotated) at call time, or set ``ignore_index`` (e.g. -1) to leave
    out elements whose target has that value. ``reduction="mean"`` averages over the counted
    elements; ``"none"`` returns [N, C] (masked elements are 0). The sigmoid focal baseline
    is ``la.create("sigmoid_focal")`` (Lin et al. 2017).

    Args:
        pos_weight: optional weight of the positive term per class [C] (torch semantics).
        ignore_index: target value marking an unannotated element (outside [0, 1]); None = none.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.

    Shapes: ``logits`` [N, C]; ``target`` multi-hot or soft [N, C] in [0, 1]; ``mask`` broadcastable to [N, C].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("bce", ignore_index=-1)
        >>> crit(torch.zeros(2, 3), torch.tensor([[1., 0., -1.], [0., 1., 1.]])).item()  # log 2
        0.693...
    """

    def __init__(
        self,
        pos_weight: Tensor | Sequence[float] | None = None,
        ignore_index: float | None = None,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__(reduction, validate)
        self._register_class_weight(pos_weight, "pos_weight")
        self.ignore_index = _check_ignore(ignore_index)

    def _hparams(self) -> dict[str, Any]:
        return {"ignore_index": self.ignore_index}

    def forward(self, logits: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        return LF.bce(
            logits, target, pos_weight=self.pos_weight, mask=mask, ignore_index=self.ignore_index,
            reduction=self.reduction, validate=self.validate,
        )


@register(
    "asymmetric",
    aliases=("asl", "asymmetric_loss"),
    family="multilabel",
    kind="multilabel",
    catalogue="D2",
    formula="l_ic = -[y (1-p)^γ+ log p + (1-y) p_m^γ- log(1-p_m)],  p = σ(z), p_m = max(p - clip, 0); sum over all N·C",
    paper=ASL_PAPER,
    code="Alibaba-MIIL/ASL src/loss_functions/losses.py::AsymmetricLoss",
    function=LF.asymmetric,
    defaults_source={
        "gamma_neg": "Alibaba-MIIL/ASL AsymmetricLoss (4)",
        "gamma_pos": "Alibaba-MIIL/ASL AsymmetricLoss (1); its train.py uses 0",
        "clip": "Alibaba-MIIL/ASL (probability margin 0.05)",
        "eps": "Alibaba-MIIL/ASL (1e-8, log clamp)",
        "detach_weight": "Alibaba-MIIL/ASL disable_torch_grad_focal_loss=True",
        "reduction": "'sum': the reference returns -loss.sum() over all N·C elements",
    },
)
class AsymmetricLoss(Loss):
    r"""Asymmetric loss, ASL (Ridnik et al., 2021, "Asymmetric Loss For Multi-Label Classification").

    .. math:: \ell_{ic} = -\big[y\,(1-p)^{\gamma_+}\log p + (1-y)\,p_m^{\gamma_-}\log(1-p_m)\big],
              \quad p = \sigma(z),\ p_m = \max(p - m, 0)

    Negatives are focused harder (γ− > γ+) and easy negatives with ``p < clip`` (the
    probability margin m) are discarded entirely. Logs are clamped at ``eps``. Defaults
    γ− = 4, γ+ = 1, clip = 0.05, eps = 1e-8 are the reference class's
    (Alibaba-MIIL/ASL ``AsymmetricLoss``; parity case ``ml_asymmetric``).

    **Reduction:** the default is ``"sum"`` over all N·C elements, because that is what the
    reference returns (it has no mean); ``reduction="mean"`` gives the per-element mean, and
    ``"none"`` the [N, C] losses. **Gradient:** like the reference default
    (``disable_torch_grad_focal_loss=True``) the focusing weight is treated as a constant
    (``detach_weight=True``); ``detach_weight=False`` differentiates through it.
    With γ+ = γ− = 0 and ``clip=0`` this is BCE (up to the ``eps`` clamp).

    Args:
        gamma_neg, gamma_pos: focusing exponents γ−, γ+ ≥ 0.
        clip: probability margin m in [0, 1] for negatives (0 or None disables it).
        eps: lower clamp of the probabilities inside the logs.
        detach_weight: compute the focusing weight without gradient (reference default).
        ignore_index: target value marking an unannotated element (e.g. -1); None = none.
        reduction: ``"sum"`` (default, reference) | ``"mean"`` | ``"none"``.

    Shapes: ``logits`` [N, C]; ``target`` multi-hot [N, C]; optional call argument ``mask``
    broadcastable to [N, C] (1 = annotated).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("asymmetric")
        >>> crit(torch.randn(4, 5), (torch.rand(4, 5) < 0.3).float()).ndim
        0
    """

    def __init__(
        self,
        gamma_neg: float = 4.0,
        gamma_pos: float = 1.0,
        clip: float | None = 0.05,
        eps: float = 1e-8,
        detach_weight: bool = True,
        ignore_index: float | None = None,
        reduction: str = "sum",
        validate: bool = True,
    ) -> None:
        super().__init__(reduction, validate)
        self.gamma_neg = check_number(gamma_neg, "gamma_neg", low=0.0)
        self.gamma_pos = check_number(gamma_pos, "gamma_pos", low=0.0)
        self.clip = 0.0 if clip is None else check_number(clip, "clip", low=0.0, high=1.0)
        self.eps = check_number(eps, "eps", low=0.0, high=1.0, low_open=True)
        self.detach_weight = bool(detach_weight)
        self.ignore_index = _check_ignore(ignore_index)

    def _hparams(self) -> dict[str, Any]:
        return {"gamma_neg": self.gamma_neg, "gamma_pos": self.gamma_pos, "clip": self.clip, "eps": self.eps,
                "detach_weight": self.detach_weight}

    def forward(self, logits: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        return LF.asymmetric(
            logits, target, gamma_neg=self.gamma_neg, gamma_pos=self.gamma_pos, clip=self.clip, eps=self.eps,
            detach_weight=self.detach_weight, mask=mask, ignore_index=self.ignore_index,
            reduction=self.reduction, validate=self.validate,
        )


@register(
    "asymmetric_single_label",
    aliases=("asl_single_label",),
    family="multilabel",
    kind="classification",
    catalogue="D2",
    formula="l_i = -Σ_j t_j w_j log p_j,  p = softmax(z), w_y = (1-p_y)^γ+, w_j = p_j^γ- (j≠y), t = (1-ε) e_y + ε/C",
    paper=ASL_PAPER,
    code="Alibaba-MIIL/ASL src/loss_functions/losses.py::ASLSingleLabel",
    function=LF.asymmetric_single_label,
    defaults_source={
        "gamma_pos": "Alibaba-MIIL/ASL ASLSingleLabel (0)",
        "gamma_neg": "Alibaba-MIIL/ASL ASLSingleLabel (4)",
        "eps": "Alibaba-MIIL/ASL ASLSingleLabel (label smoothing 0.1)",
    },
)
class AsymmetricSingleLabelLoss(Loss):
    r"""Single-label (softmax) asymmetric loss (Ridnik et al., 2021, Alibaba-MIIL/ASL ``ASLSingleLabel``).

    .. math:: \ell_i = -\sum_j t_j\,w_j\,\log p_j,\quad p = \operatorname{softmax}(z),\quad
              w_{y} = (1-p_{y})^{\gamma_+},\ w_{j\ne y} = p_j^{\gamma_-},\quad
              t = (1-\varepsilon)\,e_y + \varepsilon / C

    The focusing weights are applied first and the one-hot target is label-smoothed after
    (as in the reference); nothing is detached. ``eps`` is label smoothing, not a log clamp.
    Defaults γ+ = 0, γ− = 4, ε = 0.1 are the reference's (parity case
    ``cls_asymmetric_single_label``). With γ+ = γ− = 0 it is label-smoothed cross-entropy.

    Args:
        gamma_pos, gamma_neg: focusing exponents ≥ 0.
        eps: label smoothing ε in [0, 1].
        ignore_index: target value whose samples are skipped (default -100).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (per-sample [N]).

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("asymmetric_single_label")
        >>> crit(torch.randn(4, 5), torch.tensor([0, 1, 2, 3])).ndim
        0
    """

    def __init__(
        self,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        eps: float = 0.1,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__(reduction, validate)
        self.gamma_pos = check_number(gamma_pos, "gamma_pos", low=0.0)
        self.gamma_neg = check_number(gamma_neg, "gamma_neg", low=0.0)
        self.eps = check_number(eps, "eps", low=0.0, high=1.0)
        self.ignore_index = int(ignore_index)

    def _hparams(self) -> dict[str, Any]:
        return {"gamma_pos": self.gamma_pos, "gamma_neg": self.gamma_neg, "eps": self.eps}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return LF.asymmetric_single_label(
            logits, target, gamma_pos=self.gamma_pos, gamma_neg=self.gamma_neg, eps=self.eps,
            ignore_index=self.ignore_index, reduction=self.reduction, validate=self.validate,
        )


@register(
    "dice",
    aliases=("dice_loss", "self_adjusting_dice", "dsc"),
    family="multilabel",
    kind="classification",
    catalogue="D3",
    formula="l_i = Σ_c [1 - (2 q_ic y_ic + s) / D_ic],  q = (1-p)^α p;  D_ic = q_ic² + y_ic² + s (square) or Σ_n q_nc + Σ_n y_nc + s",
    paper=DICE_PAPER,
    code="ShannonAI/dice_loss_for_NLP loss/dice_loss.py::DiceLoss",
    function=LF.dice,
    defaults_source={
        "alpha": "ShannonAI utils/get_parser.py --dice_alpha (0.01); the class default is 0",
        "smooth": "ShannonAI utils/get_parser.py --dice_smooth (1e-4)",
        "square_denominator": "ShannonAI argparse default (False); its run scripts pass --dice_square",
        "denominator": "'reference': ShannonAI's DiceLoss as coded (see docstring)",
        "activation": "softmax over classes, as the reference with integer targets",
    },
)
class DiceLoss(Loss):
    r"""Self-adjusting Dice loss (Li et al., 2020, "Dice Loss for Data-imbalanced NLP Tasks").

    .. math:: q_{ic} = (1-p_{ic})^{\alpha}\,p_{ic},\qquad
              \ell_i = \sum_c \Big[1 - \frac{2\,q_{ic}\,y_{ic} + s}{D_{ic}}\Big]

    The factor (1 − p)^α pushes down easy examples (α = 0 is the plain soft Dice). Per-sample
    losses are **summed over classes** and averaged over samples, as the reference does.
    ``denominator`` picks D:

    * ``"element"``: ``D_ic = q_ic^k + y_ic^k + s`` (the paper's per-example DSC),
    * ``"batch"``: ``D_ic = Σ_n q_nc^k + Σ_n y_nc^k + s`` (shared by the batch, per class),
    * ``"reference"`` (default): what ShannonAI/dice_loss_for_NLP's ``DiceLoss`` computes when
      each class is fed as an [N, 1] column — element-wise when ``square_denominator=True``
      (parity case ``cls_dice``) and batch-wide when False (``cls_dice_linear``),

    with k = 2 if ``square_denominator`` else 1. Defaults α = 0.01, s = 1e-4, no square are the
    repo's argparse defaults (``utils/get_parser.py``; its run scripts use s = 1, --dice_square).
    OHEM is not implemented. ``ignore_index`` rows are zeroed (no prediction, no target) and
    left out of the mean, as the reference's mask does.

    Args:
        alpha: α ≥ 0, the self-adjusting exponent.
        smooth: s ≥ 0 added to numerator and denominator.
        square_denominator: square q and y in the denominator.
        denominator: ``"reference"`` | ``"element"`` | ``"batch"`` (see above).
        activation: ``"softmax"`` (classes compete) or ``"sigmoid"`` (multi-label targets).
        ignore_index: target value whose samples are skipped (integer targets only).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (per-sample [N]).

    Shapes: ``logits`` [N, C]; ``target`` int64 [N] or multi-hot / probabilities [N, C].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("dice", alpha=0.01, smooth=1.0, square_denominator=True)
        >>> crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 0])).ndim
        0
    """

    def __init__(
        self,
        alpha: float = 0.01,
        smooth: float = 1e-4,
        square_denominator: bool = False,
        denominator: str = "reference",
        activation: str = "softmax",
        ignore_index: int = -100,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__(reduction, validate)
        self.alpha = check_number(alpha, "alpha", low=0.0)
        self.smooth = check_number(smooth, "smooth", low=0.0)
        self.square_denominator = bool(square_denominator)
        if denominator not in ("reference", "element", "batch"):
            raise ValueError(f"denominator must be 'reference', 'element' or 'batch', got {denominator!r}")
        if activation not in ("softmax", "sigmoid"):
            raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}")
        self.denominator = denominator
        self.activation = activation
        self.ignore_index = int(ignore_index)

    def _hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "smooth": self.smooth, "square_denominator": self.square_denominator,
                "denominator": self.denominator, "activation": self.activation}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return LF.dice(
            logits, target, alpha=self.alpha, smooth=self.smooth, square_denominator=self.square_denominator,
            denominator=self.denominator, activation=self.activation, ignore_index=self.ignore_index,
            reduction=self.reduction, validate=self.validate,
        )
