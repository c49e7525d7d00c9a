"""Multi-label losses (catalogue rows D1–D3): sigmoid BCE, ASL (multi- and single-label), self-adjusting Dice.

The sigmoid focal loss of row D1 is ``sigmoid_focal`` (registered with the long-tail family,
:class:`lossatlas.losses.SigmoidFocalLoss`). Multi-label losses here take an optional
``mask`` at call time and an ``ignore_index`` target value for partially annotated labels.
"""

from __future__ import annotations

from .. import functional as LF
from ..registry import Paper, register
from ._base import FunctionalLoss

__all__ = ["BCELoss", "AsymmetricLoss", "AsymmetricSingleLabelLoss", "DiceLoss"]

ASL_PAPER = Paper(
    "T. Ridnik, E. Ben-Baruch, N. Zamir, A. Noy, I. Friedman, M. Protter, L. Zelnik-Manor",
    "Asymmetric Loss For Multi-Label Classification", "ICCV", 2021, "2009.14119",
)
DICE_PAPER = Paper(
    "X. Li, X. Sun, Y. Meng, J. Liang, F. Wu, J. Li",
    "Dice Loss for Data-imbalanced NLP Tasks", "ACL", 2020, "1911.02855",
)


@register(
    "bce",
    aliases=("binary_cross_entropy", "sigmoid_bce", "bce_with_logits"),
    family="multilabel",
    kind="multilabel",
    catalogue="D1",
    formula="l_ic = -[w_c y_ic log σ(z_ic) + (1 - y_ic) log(1 - σ(z_ic))],  w = pos_weight",
    paper=None,
    code="torch.nn.functional.binary_cross_entropy_with_logits",
)
class BCELoss(FunctionalLoss, function=LF.bce):
    r"""Sigmoid binary cross-entropy for multi-label targets, the multi-label baseline (row D1).

    .. math:: \ell_{ic} = -\big[w_c\,y_{ic}\log\sigma(z_{ic}) + (1-y_{ic})\log(1-\sigma(z_{ic}))\big]

    Same values and gradients as ``torch.nn.BCEWithLogitsLoss(pos_weight=w)`` (computed with
    log-sigmoid, finite for any logit), plus masking for partially annotated labels: pass
    ``mask`` [N, C] (1 = annotated) at call time, or write ``ignore_index`` (-100 by default,
    as torch's integer-target losses; any value outside [0, 1]) into the target of the
    elements to leave out. ``reduction="mean"`` averages over the counted elements (0, with a
    zero gradient, when none is counted); ``"none"`` returns [N, C] (left-out elements are 0).
    The sigmoid focal baseline is ``la.create("sigmoid_focal")`` (Lin et al. 2017).

    {args}

    Shapes: ``logits`` [N, C]; ``target`` multi-hot or soft [N, C] in [0, 1]; ``mask`` broadcastable to [N, C].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("bce", ignore_index=-1)
        >>> crit(torch.zeros(2, 3), torch.tensor([[1., 0., -1.], [0., 1., 1.]])).item()  # log 2
        0.693...
    """


@register(
    "asymmetric",
    aliases=("asl", "asymmetric_loss"),
    family="multilabel",
    kind="multilabel",
    catalogue="D2",
    formula="l_ic = -[y (1-p)^γ+ log p + (1-y) p_m^γ- log(1-p_m)],  p = σ(z), p_m = max(p - clip, 0); sum over all N·C",
    paper=ASL_PAPER,
    code="Alibaba-MIIL/ASL src/loss_functions/losses.py::AsymmetricLoss",
)
class AsymmetricLoss(FunctionalLoss, function=LF.asymmetric):
    r"""Asymmetric loss, ASL (Ridnik et al., 2021, "Asymmetric Loss For Multi-Label Classification").

    .. math:: \ell_{ic} = -\big[y\,(1-p)^{\gamma_+}\log p + (1-y)\,p_m^{\gamma_-}\log(1-p_m)\big],
              \quad p = \sigma(z),\ p_m = \max(p - m, 0)

    Negatives are focused harder (γ− > γ+) and easy negatives with ``p < clip`` (the
    probability margin m) are discarded entirely. Logs are clamped at ``eps``. Defaults
    γ− = 4, γ+ = 1, clip = 0.05, eps = 1e-8 are the reference class's
    (Alibaba-MIIL/ASL ``AsymmetricLoss``; parity case ``ml_asymmetric``).

    **Reduction:** the default is ``"sum"`` over all N·C elements, because that is what the
    reference returns (it has no mean); ``reduction="mean"`` gives the per-element mean, and
    ``"none"`` the [N, C] losses. Elements whose target is ``ignore_index`` (-100 by
    default) or whose call-time ``mask`` is 0 are left out (``"mean"`` is over the counted
    elements, 0 with a zero gradient when none is). **Gradient:** like the reference default
    (``disable_torch_grad_focal_loss=True``) the focusing weight is treated as a constant
    (``detach_weight=True``): the gradient is ``w · ∂CE_clipped/∂z``, deliberately *not* the
    derivative of the value; ``detach_weight=False`` differentiates through the weight.
    With γ+ = γ− = 0 and ``clip=0`` this is BCE (up to the ``eps`` clamp). The detached form
    runs as one ``autograd.Function`` (the ``"fused"`` path; same values and gradients as
    the composed ops, which ``torch.compile`` traces).

    {args}

    Shapes: ``logits`` [N, C]; ``target`` multi-hot [N, C]; optional call argument ``mask``
    broadcastable to [N, C] (1 = annotated).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("asymmetric")
        >>> crit(torch.randn(4, 5), (torch.rand(4, 5) < 0.3).float()).ndim
        0
    """


@register(
    "asymmetric_single_label",
    aliases=("asl_single_label",),
    family="multilabel",
    kind="classification",
    catalogue="D2",
    formula="l_i = -Σ_j t_j w_j log p_j,  p = softmax(z), w_y = (1-p_y)^γ+, w_j = p_j^γ- (j≠y), t = (1-ε) e_y + ε/C",
    paper=ASL_PAPER,
    code="Alibaba-MIIL/ASL src/loss_functions/losses.py::ASLSingleLabel",
)
class AsymmetricSingleLabelLoss(FunctionalLoss, function=LF.asymmetric_single_label):
    r"""Single-label (softmax) asymmetric loss (Ridnik et al., 2021, Alibaba-MIIL/ASL ``ASLSingleLabel``).

    .. math:: \ell_i = -\sum_j t_j\,w_j\,\log p_j,\quad p = \operatorname{softmax}(z),\quad
              w_{y} = (1-p_{y})^{\gamma_+},\ w_{j\ne y} = p_j^{\gamma_-},\quad
              t = (1-\varepsilon)\,e_y + \varepsilon / C

    The focusing weights are applied first and the one-hot target is label-smoothed after
    (as in the reference); nothing is detached. ``eps`` is label smoothing, not a log clamp.
    Defaults γ+ = 0, γ− = 4, ε = 0.1 are the reference's (parity case
    ``cls_asymmetric_single_label``). With γ+ = γ− = 0 it is label-smoothed cross-entropy.

    {args}

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("asymmetric_single_label")
        >>> crit(torch.randn(4, 5), torch.tensor([0, 1, 2, 3])).ndim
        0
    """


@register(
    "dice",
    aliases=("dice_loss", "self_adjusting_dice", "dsc"),
    family="multilabel",
    kind="classification",
    catalogue="D3",
    formula="l_i = Σ_c [1 - (2 q_ic y_ic + s) / D_ic],  q = (1-p)^α p;  D_ic = q_ic² + y_ic² + s (square) or Σ_n q_nc + Σ_n y_nc + s",
    paper=DICE_PAPER,
    code="ShannonAI/dice_loss_for_NLP loss/dice_loss.py::DiceLoss",
)
class DiceLoss(FunctionalLoss, function=LF.dice):
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

    {args}

    Shapes: ``logits`` [N, C]; ``target`` int64 [N] or multi-hot / probabilities [N, C].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("dice", alpha=0.01, smooth=1.0, square_denominator=True)
        >>> crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 0])).ndim
        0
    """
