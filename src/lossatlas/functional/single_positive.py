"""Single-positive multi-label losses (catalogue row D4), as pure functions.

In single-positive multi-label learning each training image has one observed positive label
and every other label is unobserved (Cole et al., 2021). The target is the observed matrix
[N, C]: 1 for an observed positive, 0 for an unobserved label (values in between act linearly).
``"none"`` returns the elementwise losses [N, C]; ``"mean"`` averages all N·C of them (the
official code's ``sum(loss / (N·C))``), ``"sum"`` adds them.

Each public loss function is the one definition of its method; the module twins in
:mod:`lossatlas.losses.single_positive` carry the full documentation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._spec import Param, as_bool, loss_function, unit_interval
from .._validation import check_number
from ._common import reduce_loss
from .multilabel import MULTILABEL, MULTILABEL_IGNORE, _prepare_multilabel

__all__ = ["assume_negative", "entropy_maximization", "binary_entropy_with_logits"]

COLE = "elijahcole/single-positive-multi-label"
ZHOU = "Correr-Zhou/SPML-AckTheUnknown main.py"


def binary_entropy_with_logits(z: Tensor) -> Tensor:
    """``H(σ(z)) = −σ(z) log σ(z) − σ(−z) log σ(−z)`` elementwise, from log-sigmoids (finite
    and exact at large |z|, where ``H → 0``)."""
    return -(torch.sigmoid(z) * F.logsigmoid(z) + torch.sigmoid(-z) * F.logsigmoid(-z))


@loss_function(inputs=MULTILABEL, params={
    "weighted": Param("weight the assumed negatives by γ = 1/(C − 1) (WAN) instead of 1 (AN)", as_bool,
                      f"{COLE} losses.py loss_an (False); loss_wan is True"),
    "label_smoothing": Param("label smoothing ε in [0, 1] of both terms (AN-LS): the positive's target is 1 − ε, "
                             "an assumed negative's ε", unit_interval, f"{COLE} losses.py loss_an (0); AN-LS uses ls_coef"),
    "ignore_index": MULTILABEL_IGNORE,
})
def assume_negative(
    logits: Tensor,
    target: Tensor,
    *,
    weighted: bool = False,
    label_smoothing: float = 0.0,
    ignore_index: float | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Assume-negative BCE (AN, WAN, AN-LS); see :class:`lossatlas.losses.AssumeNegativeLoss`."""
    z, y, m, out_dtype = _prepare_multilabel(logits, target, validate, None, ignore_index)
    if weighted and z.shape[-1] < 2:
        raise ValueError(f"weighted=True needs at least 2 labels (γ = 1/(C − 1)), got logits {tuple(z.shape)}")
    gamma = 1.0 / (z.shape[-1] - 1) if weighted else 1.0
    return reduce_loss(_assume_negative(z, y, gamma, label_smoothing), reduction, m, out_dtype)


def _assume_negative(z: Tensor, y: Tensor, gamma: float, eps: float) -> Tensor:
    pos, neg = -F.logsigmoid(z), -F.logsigmoid(-z)  # −log σ(z), −log(1 − σ(z))
    on_pos = (1.0 - eps) * pos + eps * neg
    on_neg = gamma * ((1.0 - eps) * neg + eps * pos)
    return y * on_pos + (1.0 - y) * on_neg


def _alpha(value: object, name: str) -> float:
    return check_number(value, name, low=0.0)


@loss_function(inputs=MULTILABEL, params={
    "alpha": Param("weight α ≥ 0 of the entropy of the unobserved labels", _alpha,
                   f"{ZHOU}: alpha = 0.2 for the default data set (pascal; coco and nuswide 0.1, cub 0.01)"),
    "ignore_index": MULTILABEL_IGNORE,
})
def entropy_maximization(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.2,
    ignore_index: float | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Entropy-maximisation loss ``y·(−log σ(z)) − (1 − y)·α H(σ(z))``; see
    :class:`lossatlas.losses.EntropyMaximizationLoss`."""
    z, y, m, out_dtype = _prepare_multilabel(logits, target, validate, None, ignore_index)
    losses = y * -F.logsigmoid(z) - (1.0 - y) * (alpha * binary_entropy_with_logits(z))
    return reduce_loss(losses, reduction, m, out_dtype)
