"""Linear-probe accuracy of frozen features (catalogue J7).

The standard evaluation of a self-supervised / contrastive encoder (Chen et al. 2020,
SimCLR, "A Simple Framework for Contrastive Learning of Visual Representations"; Kolesnikov
et al. 2019): fit a multinomial logistic regression on the frozen training features and
report its top-1 accuracy on the test features.

Here: features are standardised with the training mean and standard deviation, then
``W, b`` minimise ``mean_i CE(W h_i + b, y_i) + weight_decay / 2 * ||W||^2`` by full-batch
L-BFGS (strong-Wolfe line search) in float64, from zero. The problem is strictly convex
for ``weight_decay > 0``, so the result does not depend on a seed. Defaults:
``weight_decay=1e-4`` and ``max_iter=200`` are this library's choices (SimCLR tunes the
L2 strength on a validation split; do that with ``weight_decay`` for final numbers).

>>> import torch
>>> from lossatlas.metrics import linear_probe_accuracy
>>> x = torch.tensor([[0., 1.], [0.2, 1.], [1., 0.], [1., 0.1]])
>>> linear_probe_accuracy(x, torch.tensor([0, 0, 1, 1]), x, torch.tensor([0, 0, 1, 1]))
1.0
"""

from __future__ import annotations

from typing import Any

import torch

from .._validation import check_float, check_number
from ._common import Tensor, as_tensor, check_positive_int

__all__ = ["linear_probe_accuracy", "fit_linear_probe"]


def _features_labels(x: Any, y: Any, name: str) -> tuple[Tensor, Tensor]:
    x = check_float(as_tensor(x, f"{name}_features"), f"{name}_features")
    y = as_tensor(y, f"{name}_labels")
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"{name}_features must have shape [N, D] with N >= 1, got {tuple(x.shape)}")
    if y.dim() != 1 or y.shape[0] != x.shape[0] or y.is_floating_point():
        raise ValueError(f"{name}_labels must be integer labels of shape [{x.shape[0]}], got {tuple(y.shape)} {y.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}_features contains NaN or Inf")
    return x.detach().cpu().to(torch.float64), y.cpu().long()


def fit_linear_probe(
    train_features: Any,
    train_labels: Any,
    num_classes: int | None = None,
    weight_decay: float = 1e-4,
    max_iter: int = 200,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Fit the probe; returns ``(weight [C, D], bias [C], mean [D], std [D])`` (float64, CPU).

    Predict with ``((h - mean) / std) @ weight.T + bias``.
    """
    x, y = _features_labels(train_features, train_labels, "train")
    if num_classes is None:
        num_classes = int(y.max()) + 1
    num_classes = check_positive_int(num_classes, "num_classes")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"train_labels must lie in [0, {num_classes})")
    check_number(weight_decay, "weight_decay", low=0.0)
    max_iter = check_positive_int(max_iter, "max_iter")
    mean = x.mean(dim=0)
    std = x.std(dim=0, unbiased=False).clamp_min(1e-12)
    z = (x - mean) / std
    w = torch.zeros(num_classes, z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w.T + b, y) + 0.5 * weight_decay * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach(), mean, std


def linear_probe_accuracy(
    train_features: Any,
    train_labels: Any,
    test_features: Any,
    test_labels: Any,
    num_classes: int | None = None,
    weight_decay: float = 1e-4,
    max_iter: int = 200,
) -> float:
    """Top-1 test accuracy of a logistic-regression probe fitted on the training features."""
    xt, yt = _features_labels(test_features, test_labels, "test")
    if num_classes is None:
        num_classes = int(max(int(as_tensor(train_labels, "train_labels").max()), int(yt.max()))) + 1
    w, b, mean, std = fit_linear_probe(train_features, train_labels, num_classes, weight_decay, max_iter)
    if xt.shape[1] != w.shape[1]:
        raise ValueError(f"test_features have dimension {xt.shape[1]} but train_features have {w.shape[1]}")
    pred = (((xt - mean) / std) @ w.T + b).argmax(dim=1)
    return float((pred == yt).to(torch.float64).mean())
