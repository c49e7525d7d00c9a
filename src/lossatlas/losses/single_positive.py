"""Single-positive multi-label losses (catalogue row D4): assume-negative, entropy maximisation and ROLE.

Target: the observed label matrix [N, C], 1 for the observed positive(s), 0 for unobserved.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .. import functional as LF
from .._docs import fill_doc
from .._spec import as_int, fresh, spec_of
from .._validation import check_tensor
from ..registry import Paper, register
from ._base import FunctionalLoss, Loss

__all__ = ["AssumeNegativeLoss", "EntropyMaximizationLoss", "ROLELoss"]

COLE_PAPER = Paper("E. Cole, O. Mac Aodha, T. Lorieul, P. Perona, D. Morris, N. Jojic",
                   "Multi-Label Learning from Single Positive Labels", "CVPR", 2021, "2106.09708")
ZHOU_PAPER = Paper("D. Zhou, P. Chen, Q. Wang, G. Chen, P.-A. Heng",
                   "Acknowledging the Unknown for Multi-label Learning with Single Positive Labels", "ECCV", 2022,
                   "2203.16219")


@register(
    "assume_negative",
    aliases=("an", "an_loss", "wan", "weighted_assume_negative", "an_ls"),
    family="multilabel",
    kind="multilabel",
    catalogue="D4",
    formula="l_ic = y_ic BCE⁺_ε(z_ic) + γ (1 - y_ic) BCE⁻_ε(z_ic),  γ = 1 (AN) or 1/(C - 1) (WAN), "
            "BCE⁺_ε = (1-ε)(-log σ) + ε(-log(1-σ)), BCE⁻_ε likewise",
    paper=COLE_PAPER,
    code="elijahcole/single-positive-multi-label losses.py (loss_an, loss_wan, loss_an_ls)",
)
class AssumeNegativeLoss(FunctionalLoss, function=LF.assume_negative):
    r"""Assume-negative loss for single-positive labels (Cole, Mac Aodha, Lorieul, Perona,
    Morris & Jojic, CVPR 2021, "Multi-Label Learning from Single Positive Labels").

    .. math:: \ell_{ic} = y_{ic}\big[-(1-\varepsilon)\log\sigma(z_{ic}) - \varepsilon\log(1-\sigma(z_{ic}))\big]
              + \gamma\,(1-y_{ic})\big[-(1-\varepsilon)\log(1-\sigma(z_{ic})) - \varepsilon\log\sigma(z_{ic})\big]

    Every unobserved label is taken as a negative: with ``γ = 1``, ``ε = 0`` this is BCE against
    the observed matrix (AN); ``weighted=True`` down-weights the assumed negatives by
    ``γ = 1/(C − 1)`` (WAN), so the one positive and the C − 1 negatives weigh the same;
    ``label_smoothing=ε`` smooths both terms (AN-LS; the paper's code uses ε = 0.1). The
    paper's default is AN (``loss_an``). ``"mean"`` averages over all N·C entries (the official
    ``sum(loss / (N·C))``). Computed with log-sigmoids, where the official code takes
    ``−log(σ + 1e-5)`` of probabilities: the values agree to about 1e-5 where σ is not tiny, and
    here a confident wrong label is not capped at ``log 1e5``.

    {args}

    Shapes: ``logits`` [N, C]; ``target`` [N, C] (1 observed positive, 0 unobserved).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("assume_negative", weighted=True)
        >>> round(crit(torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0]])).item(), 4)  # (1 + 2·½) log 2 / 3
        0.4621
    """


@register(
    "entropy_maximization",
    aliases=("em", "em_loss", "acknowledging_the_unknown", "entropy_maximisation"),
    family="multilabel",
    kind="multilabel",
    catalogue="D4",
    formula="l_ic = y_ic (-log σ(z_ic)) - α (1 - y_ic) H(σ(z_ic)),  H(p) = -p log p - (1-p) log(1-p)",
    paper=ZHOU_PAPER,
    code="Correr-Zhou/SPML-AckTheUnknown losses.py (loss_EM; alpha in main.py)",
)
class EntropyMaximizationLoss(FunctionalLoss, function=LF.entropy_maximization):
    r"""Entropy-maximisation loss, "acknowledging the unknown" (Zhou, Chen, Wang, Chen & Heng,
    ECCV 2022, "Acknowledging the Unknown for Multi-label Learning with Single Positive Labels").

    .. math:: \ell_{ic} = -y_{ic}\log\sigma(z_{ic}) - \alpha\,(1-y_{ic})\,H(\sigma(z_{ic})),
              \qquad H(p) = -p\log p - (1-p)\log(1-p)

    The observed positive is fitted by BCE; an unobserved label is not assumed negative but
    pushed towards maximal uncertainty (its entropy is maximised, so the loss can be negative,
    down to ``−α log 2`` per unobserved label at ``σ = ½``). The gradient on an unobserved
    logit is ``α σ(1 − σ) z``, zero at ``z = 0``. ``α = 0.2`` is the official ``main.py``'s value
    for its default data set (PASCAL VOC; 0.1 for COCO and NUS-WIDE, 0.01 for CUB). The paper's
    asymmetric pseudo-labelling (APL) is a data-set-level procedure between epochs, not part of
    this loss; its soft negative labels can be trained with :class:`AssumeNegativeLoss` or BCE.
    ``"mean"`` averages over all N·C entries (the official ``sum(loss / (N·C))``); computed with
    log-sigmoids (the official code adds 1e-5 inside its logs).

    {args}

    Shapes: ``logits`` [N, C]; ``target`` [N, C] (1 observed positive, 0 unobserved).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("entropy_maximization", alpha=0.2, reduction="sum")
        >>> round(crit(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])).item(), 4)  # log 2 − 0.2 log 2
        0.5545
    """


_ROLE = spec_of(LF.role)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


#: the official LabelEstimator's initial estimates: unobserved labels uniform in σ⁻¹(½ ± 0.1),
#: observed positives σ⁻¹(0.995) (elijahcole/single-positive-multi-label models.py)
ROLE_INIT_HALF_WIDTH = _logit(0.6)
ROLE_INIT_POSITIVE = _logit(0.995)


@register(
    "role",
    aliases=("regularized_online_label_estimation", "role_loss"),
    family="multilabel",
    kind="multilabel",
    catalogue="D4",
    formula="l_ic = ½[y_ic(-log f_ic - log g_ic) + BCE(f_ic; sg(g_ic)) + BCE(g_ic; sg(f_ic))] "
            "+ [(Σ_c mean_i f_ic - k)² + (Σ_c mean_i g_ic - k)²] / (2C²),  f = σ(logits), g = σ(label estimates)",
    paper=COLE_PAPER,
    code="elijahcole/single-positive-multi-label losses.py (loss_role), models.py (LabelEstimator)",
    function=LF.role,
    defaults_source={**_ROLE.sources, "seed": "lossatlas: the estimator table's own generator (the official code "
                                              "draws it from the run's torch seed)"},
)
@fill_doc(args="\n".join([
    "Args:",
    "    num_samples: size of the training set (rows of the estimate table; indices run over ``[0, num_samples)``).",
    "    num_classes: number of labels C.",
    *_ROLE.args_doc().split("\n")[1:],
    "    seed: seed of the generator that draws the initial estimates. Default ``0``.",
]))
class ROLELoss(Loss):
    r"""ROLE, regularised online label estimation (Cole, Mac Aodha, Lorieul, Perona, Morris &
    Jojic, CVPR 2021, "Multi-Label Learning from Single Positive Labels").

    .. math:: \ell_{ic} = \tfrac12\big[y_{ic}(-\log f_{ic} - \log g_{ic})
              + \mathrm{BCE}(f_{ic};\,\mathrm{sg}(g_{ic})) + \mathrm{BCE}(g_{ic};\,\mathrm{sg}(f_{ic}))\big]
              + \frac{(\sum_c \bar f_c - k)^2 + (\sum_c \bar g_c - k)^2}{2C^2}

    ``f = σ(logits)`` are the classifier's predictions, ``g = σ(θ)`` the label estimates of the
    batch's training samples, a learned table θ [num_samples, C] kept by this module as the
    parameter ``label_logits`` and trained jointly (give ``crit.parameters()`` to the optimiser;
    the official code uses Adam with 10x the classifier's learning rate for it). Each model is
    fitted to the observed positives and, by BCE, to the other's output with its gradient
    stopped (``sg``); the expected-positive regulariser pulls the number of predicted positives
    per sample (the batch mean of ``Σ_c f_c``, and likewise for ``g``) towards ``k``. ``f̄_c``,
    ``ḡ_c`` are batch means. ``"mean"`` is the official value, the mean over the N·C entries plus
    the regulariser; ``"none"`` gives each entry its own term plus the (batch) regulariser, so
    that ``"mean"`` is its mean (and ``"sum"`` its sum). Initial estimates are the official
    ``LabelEstimator``'s: unobserved labels uniform in ``σ⁻¹(½ ± 0.1)``, drawn from a generator
    seeded with ``seed``; call :meth:`observe` with the training set's observed label matrix to
    set the observed positives to ``σ⁻¹(0.995)``, as the official code does before training.
    ``k = 1.5`` is the official ``train.py``'s value for its default data set (PASCAL VOC).
    Computed with log-sigmoids where the official code takes ``−log(x + 1e-5)`` of probabilities.

    {args}

    Call: ``crit(logits [N, C], target [N, C], index=int64 [N])``: the observed matrix (1 for
    the observed positive, 0 unobserved) and the batch's dataset indices.

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("role", num_samples=100, num_classes=5)
        >>> crit.observe(torch.eye(5).repeat(20, 1))  # sample i's observed positive: label i mod 5
        >>> crit(torch.randn(4, 5), torch.eye(5)[:4], index=torch.arange(4)).ndim
        0
    """

    label_logits: nn.Parameter

    def __init__(
        self,
        num_samples: int,
        num_classes: int,
        expected_num_pos: float = _ROLE.defaults["expected_num_pos"],
        seed: int = 0,
        reduction: str = _ROLE.defaults["reduction"],
        validate: bool = _ROLE.defaults["validate"],
    ) -> None:
        checked = _ROLE.check_all({"expected_num_pos": expected_num_pos, "reduction": reduction, "validate": validate})
        super().__init__(checked["reduction"], checked["validate"])
        for name, value in (("num_samples", num_samples), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.num_samples, self.num_classes = num_samples, num_classes
        self.expected_num_pos: float = checked["expected_num_pos"]
        self.seed = as_int(seed, "seed")
        g = torch.Generator().manual_seed(self.seed)
        init = ROLE_INIT_HALF_WIDTH * (2.0 * torch.rand(num_samples, num_classes, generator=g) - 1.0)
        self.label_logits = nn.Parameter(init)

    def observe(self, observed_labels: Tensor) -> None:
        """Set the estimates of the observed positives (entries equal to 1 of the observed label
        matrix [num_samples, C]) to ``σ⁻¹(0.995)``, the official initialisation."""
        check_tensor(observed_labels, "observed_labels")
        if observed_labels.shape != self.label_logits.shape:
            raise ValueError(f"observed_labels must have shape [num_samples, num_classes] = "
                             f"{tuple(self.label_logits.shape)}, got {tuple(observed_labels.shape)}")
        with torch.no_grad():
            self.label_logits[observed_labels.to(self.label_logits.device) == 1] = ROLE_INIT_POSITIVE

    def estimates(self) -> Tensor:
        """The current label estimates ``σ(θ)`` [num_samples, C] (detached)."""
        return torch.sigmoid(self.label_logits.detach())

    def _hparams(self) -> dict[str, Any]:
        return {"num_samples": self.num_samples, "num_classes": self.num_classes,
                "expected_num_pos": self.expected_num_pos, "seed": self.seed}

    def hparams(self) -> dict[str, Any]:
        """The hyper-parameters as :func:`lossatlas.functional.role` takes them."""
        return {"expected_num_pos": self.expected_num_pos, "reduction": self.reduction, "validate": self.validate}

    def functional_kwargs(self) -> dict[str, Any]:
        """The hyper-parameters and the estimate table itself (a parameter: gradients reach it)."""
        return {**self.hparams(), "label_logits": self.label_logits}

    def forward(self, logits: Tensor, target: Tensor, index: Tensor | None = None) -> Tensor:
        if index is None:
            raise ValueError("ROLE keeps label estimates per training sample: call it with index=<int64 [N] dataset indices>")
        return fresh(_ROLE.function(logits, target, index=index, label_logits=self.label_logits, **self.hparams()))
