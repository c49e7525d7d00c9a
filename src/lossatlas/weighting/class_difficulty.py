"""Class-difficulty weights, CDB-W (catalogue rows A9 and E3).

The weight of a class grows with its difficulty ``d_c = 1 - accuracy_c``, measured on
held-out data and refreshed every epoch; τ sharpens the weights and can itself follow the
spread of the accuracies ("dynamic"). The same weights drive the CDB-S sampler
(:class:`lossatlas.samplers.ClassDifficultySampler`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._validation import check_number
from ..registry import Paper, register
from .base import ClassWeighting

__all__ = ["ClassDifficultyWeights", "class_difficulty_weights", "dynamic_tau"]

CDB_PAPER = Paper(
    "S. Sinha, H. Ohashi, K. Nakamura",
    "Class-Wise Difficulty-Balanced Loss for Solving Class-Imbalance",
    "ACCV",
    2020,
    "2010.01824",
)


def _as_accuracy(class_accuracy: Any) -> Tensor:
    if isinstance(class_accuracy, Tensor):
        acc = class_accuracy.detach()
        if not acc.is_floating_point():
            acc = acc.to(torch.float64)
    elif isinstance(class_accuracy, (list, tuple, np.ndarray)):
        acc = torch.as_tensor(np.asarray(class_accuracy, dtype=np.float64))
    else:
        raise TypeError(
            f"class_accuracy must be a 1-D tensor, array or list of per-class accuracies in [0, 1], "
            f"got {type(class_accuracy).__name__}"
        )
    if acc.dim() != 1 or acc.numel() == 0:
        raise ValueError(f"class_accuracy must be a non-empty 1-D sequence (one accuracy per class), got shape {tuple(acc.shape)}")
    if not bool(torch.isfinite(acc).all()) or bool(((acc < 0) | (acc > 1)).any()):
        raise ValueError("class_accuracy values must be finite and lie in [0, 1] (fractions, not percentages)")
    return acc


def _check_tau(tau: Any) -> float | str:
    if isinstance(tau, str):
        if tau != "dynamic":
            raise ValueError(f"tau must be a non-negative number or the string 'dynamic', got {tau!r}")
        return tau
    return check_number(tau, "tau", low=0.0)


def dynamic_tau(class_accuracy: Any) -> Tensor:
    r"""The CDB loss's dynamic exponent ``τ = sigmoid(max_c acc_c / (min_c acc_c + 0.01))``.

    This is the rule of the loss class the reference trains with (``cdb_loss.py``); the
    same repository's ``utils.compute_weights`` (unused) has ``2·sigmoid(ratio − 1)``.
    """
    acc = _as_accuracy(class_accuracy)
    d = 1.0 - acc
    return torch.sigmoid((1.0 - d.min()) / (1.0 - d.max() + 0.01))


def class_difficulty_weights(class_accuracy: Any, tau: float | str = "dynamic") -> Tensor:
    r"""CDB class weights ``w_c = d_c^τ / Σ_k d_k^τ · C`` with ``d_c = 1 - accuracy_c``.

    ``tau`` is a number ≥ 0 or ``"dynamic"`` (:func:`dynamic_tau`). A class with accuracy 1
    gets weight 0 (τ > 0). If every class is perfectly classified (Σ d^τ = 0, where the
    reference divides by zero) the weights are uniform ones. Returns the accuracy's
    floating dtype (float64 for lists). See :class:`ClassDifficultyWeights`.
    """
    acc = _as_accuracy(class_accuracy)
    tau = _check_tau(tau)
    d = 1.0 - acc
    t = dynamic_tau(acc) if tau == "dynamic" else torch.as_tensor(tau, dtype=d.dtype)
    w = d.pow(t.to(d.dtype))
    total = w.sum()
    if not bool(total > 0):
        return torch.ones_like(d)
    return w / total * d.numel()


@register(
    "class_difficulty",
    aliases=("cdb", "cdb_w", "class_difficulty_weights", "cdb_weights"),
    family="weighting",
    kind="weighting",
    catalogue="A9",
    formula="d_c = 1 - acc_c;  w_c = C · d_c^τ / Σ_k d_k^τ;  τ fixed or dynamic: τ = sigmoid(max acc / (min acc + 0.01))",
    paper=CDB_PAPER,
    code="hitachi-rd-cv/CDB-loss CIFAR-LT/losses/cdb_loss.py::CDB_loss",
    function=class_difficulty_weights,
    defaults_source={
        "tau": "'dynamic', the paper's recommended setting (the CDB-loss scripts take --tau 'dynamic' or a number)",
        "num_classes": "None: no weights until the first accuracy update (the reference trains its first epoch with plain CE)",
    },
    notes="Call obj(class_accuracy) after each validation to refresh the weights; obj() returns the current ones.",
)
class ClassDifficultyWeights(ClassWeighting):
    r"""Class-wise difficulty-balanced weights, CDB-W (Sinha, Ohashi, Nakamura, 2020,
    "Class-Wise Difficulty-Balanced Loss for Solving Class-Imbalance", ACCV).

    .. math:: d_c = 1 - \mathrm{acc}_c,\qquad w_c = C\,\frac{d_c^{\tau}}{\sum_k d_k^{\tau}},
              \qquad \tau_{\text{dyn}} = \sigma\!\Big(\frac{\max_c \mathrm{acc}_c}{\min_c \mathrm{acc}_c + 0.01}\Big)

    Hard classes (low held-out accuracy) get large weights; the weights sum to C. After
    each validation call ``cdb(class_accuracy)`` with the per-class accuracies [C] (in
    [0, 1], e.g. ``la.metrics.per_class_accuracy``): it stores and returns the new weights.
    ``cdb()`` returns the current weights; they compose with any loss via ``weight=`` or
    :func:`lossatlas.weighting.apply`. The weights are a buffer (saved in ``state_dict``).

    ``tau``: a number ≥ 0 (τ = 0 is uniform) or ``"dynamic"`` — the rule of the reference's
    loss class (its unused ``utils.compute_weights`` has a different one). A class with
    accuracy 1 gets weight 0, as in the reference; if all classes have accuracy 1 the
    weights are uniform (the reference divides by zero). Default τ = "dynamic" (the paper's
    recommendation). ``num_classes`` optionally starts with uniform weights [C] before the
    first update (otherwise ``cdb()`` before any update raises).

    Example:
        >>> import lossatlas as la
        >>> cdb = la.create("class_difficulty", tau=1.0)
        >>> [round(w, 4) for w in cdb([0.9, 0.5, 0.5]).tolist()]
        [0.2727, 1.3636, 1.3636]
    """

    def __init__(self, tau: float | str = "dynamic", num_classes: int | None = None) -> None:
        super().__init__()
        self.tau = _check_tau(tau)
        if num_classes is not None:
            if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
                raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")
            self.register_buffer("weights", torch.ones(num_classes, dtype=torch.float64))
        else:
            self.register_buffer("weights", None)

    def update(self, class_accuracy: Any) -> Tensor:
        """Recompute the weights from per-class accuracies [C]; returns them."""
        w = class_difficulty_weights(class_accuracy, self.tau)
        if self.weights is not None and self.weights.numel() != w.numel():
            raise ValueError(
                f"class_accuracy has {w.numel()} classes but the weights have {self.weights.numel()}; "
                "pass one accuracy per class"
            )
        self.weights = w.detach().clone()
        return w

    def class_weights(self) -> Tensor:
        if self.weights is None:
            raise ValueError(
                "class_difficulty has no weights yet: call it with the per-class validation accuracy first, "
                "or create it with num_classes= to start from uniform weights"
            )
        return self.weights

    def forward(self, class_accuracy: Any = None) -> Tensor:  # type: ignore[override]
        if class_accuracy is not None:
            return self.update(class_accuracy)
        return self.class_weights()

    def extra_repr(self) -> str:
        return f"tau={self.tau!r}"
