"""Non-negative contrastive learning (catalogue row G15), as a pure function.

Wang et al. (2024) constrain the features of contrastive learning to be non-negative
(``σ₊(z)``, by default a ReLU whose backward is a GELU's) before the usual SimCLR loss, the
contrastive analogue of non-negative matrix factorisation; the features become sparse and
their dimensions interpretable. The loss is SimCLR's NT-Xent over the 2N views (computed by
:func:`lossatlas.functional.infonce`) on the activated features.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from .._spec import Param, loss_function, positive
from .._validation import check_float
from .ssl import PAIR, infonce

__all__ = ["non_negative_contrastive", "non_negative_features", "NON_NEGATIVE_ACTIVATIONS"]

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
