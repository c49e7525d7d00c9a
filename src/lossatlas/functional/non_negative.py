"""Non-negative contrastive learning and contrastive attraction / repulsion (catalogue row G15).

Wang et al. (2024) constrain the features of contrastive learning to be non-negative
(``σ₊(z)``, by default a ReLU whose backward is a GELU's) before the usual SimCLR loss, the
contrastive analogue of non-negative matrix factorisation; the features become sparse and
their dimensions interpretable. The loss is SimCLR's NT-Xent over the 2N views (computed by
:func:`lossatlas.functional.infonce`) on the activated features.

CACR (Zheng et al., 2021) replaces the softmax of InfoNCE by two conditional distributions:
a query attracts its positives and repels its negatives, each weighted by a softmax of their
squared distance (distant positives and close negatives weigh more).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._spec import Param, as_bool, loss_function, nonnegative, positive
from .._validation import check_float
from ._common import reduce_loss
from .ssl import PAIR, _prepare_pair, infonce

__all__ = ["non_negative_contrastive", "non_negative_features", "NON_NEGATIVE_ACTIVATIONS", "attraction_repulsion"]

NCL_CODE = "PKU-ML/non_neg"
#: The non-negative maps of the official code (``non_neg``): ReLU, and ReLU with a GELU backward.
NON_NEGATIVE_ACTIVATIONS = ("rep_relu", "relu")


def _activation(value: Any, name: str) -> str:
    if not isinstance(value, str) or value not in NON_NEGATIVE_ACTIVATIONS:
        raise ValueError(f"{name} must be one of {NON_NEGATIVE_ACTIVATIONS}, got {value!r}")
    return value


def non_negative_features(z: Tensor, activation: str = "rep_relu") -> Tensor:
    """``σ₊(z)``: ``relu(z)``; ``"rep_relu"`` has ReLU's value and GELU's gradient (the official
    "reparameterised ReLU", which keeps a gradient on inactive dimensions)."""
    z = check_float(z, "z")
    activation = _activation(activation, "activation")
    if activation == "relu":
        return F.relu(z)
    g = F.gelu(z)
    return g + (F.relu(z) - g).detach()


@loss_function(inputs=PAIR, params={
    "temperature": Param("softmax temperature T > 0", positive, f"{NCL_CODE} scripts/pretrain/cifar/ncl.yaml temperature 0.2"),
    "activation": Param("the non-negative map σ₊: ``'rep_relu'`` (ReLU forward, GELU backward) or ``'relu'``", _activation,
                        f"{NCL_CODE} scripts/pretrain/cifar/ncl.yaml non_neg: rep_relu"),
})
def non_negative_contrastive(
    a: Tensor,
    b: Tensor,
    *,
    temperature: float = 0.2,
    activation: str = "rep_relu",
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """NT-Xent (SimCLR, 2N views) on ``normalize(σ₊(a))``, ``normalize(σ₊(b))``; see
    :class:`lossatlas.losses.NonNegativeContrastiveLoss`."""
    check_float(a, "a")
    check_float(b, "b")
    return infonce(non_negative_features(a, activation), non_negative_features(b, activation),
                   temperature=temperature, symmetric=True, intra_view_negatives=True, normalize=True, tiled=False,
                   reduction=reduction, validate=validate)


CACR_CODE = "JegZheng/CACR-SSL small_scale_experiments/cifar10/main_ours.py"


@loss_function(inputs=PAIR, params={
    "alpha": Param("α ≥ 0, the scale of the attraction cost α‖a_i − b_i‖²", nonnegative, f"{CACR_CODE} --alpha 1.0"),
    "beta": Param("β ≥ 0, the scale of the repulsion cost −β‖a_i − b_j‖²", nonnegative, f"{CACR_CODE} --beta 1.0"),
    "tau_neg": Param("τ₋ ≥ 0, the temperature of the negatives' weights softmax(−τ₋‖a_i − b_j‖²) over j ≠ i", nonnegative,
                     f"{CACR_CODE} --tau_neg 1.0"),
    "normalize": Param("L2-normalise the rows of a and b inside (the official encoder ends in an L2 normalisation)",
                       as_bool, "JegZheng/CACR-SSL small_scale_experiments/cifar10/encoder.py SmallAlexNet (L2Norm last)"),
})
def attraction_repulsion(
    a: Tensor,
    b: Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    tau_neg: float = 1.0,
    normalize: bool = True,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """CACR ``α‖a_i − b_i‖² − β Σ_{j≠i} π_ij ‖a_i − b_j‖²``, ``π_i = softmax_j(−τ₋‖a_i − b_j‖²)``; see
    :class:`lossatlas.losses.AttractionRepulsionLoss`."""
    a, b, out_dtype = _prepare_pair(a, b, validate, normalize)
    n = a.shape[0]
    # attraction: with one positive view its conditional weight softmax(τ₊ · cost) is 1, whatever τ₊
    attract = alpha * (a - b).square().sum(1)
    if n < 2:
        return reduce_loss(attract, reduction, None, out_dtype)
    d2 = (a.unsqueeze(1) - b.unsqueeze(0)).square().sum(-1)  # [N, N] squared distances a_i to b_j
    off = ~torch.eye(n, dtype=torch.bool, device=a.device)
    cost = -beta * d2
    logits = torch.where(off, -tau_neg * d2, torch.full_like(d2, float("-inf")))
    pi = torch.softmax(logits, dim=1)
    repel = (pi * torch.where(off, cost, torch.zeros_like(cost))).sum(1)
    return reduce_loss(attract + repel, reduction, None, out_dtype)
