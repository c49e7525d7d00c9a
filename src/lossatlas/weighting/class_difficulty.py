"""Class-difficulty weights, CDB-W, and the CDB-CE loss (catalogue rows A9 and E3).

The weight of a class grows with its difficulty ``d_c = 1 - accuracy_c``, measured on
held-out data and refreshed every epoch; τ sharpens the weights and can itself follow the
spread of the accuracies ("dynamic"). The same weights drive the CDB-S sampler
(:class:`lossatlas.samplers.ClassDifficultySampler`). :func:`cdb_cross_entropy` is the
reference's CDB-CE loss, reduced as its training script reduces it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._validation import check_number, check_reduction, check_tensor
from ..functional._common import prepare_classification, reduce_loss, target_logit
from ..registry import Paper, register
from .base import ClassWeighting

__all__ = ["ClassDifficultyWeights", "cdb_cross_entropy", "class_difficulty_weights", "dynamic_tau"]

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


def cdb_cross_entropy(
    logits: Tensor,
    target: Tensor,
    class_weights: Tensor,
    *,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    r"""CDB-CE, the class-difficulty-balanced cross-entropy, reduced as the reference reduces it.

    .. math:: \ell_i = w_{y_i}\,\mathrm{CE}(z_i, y_i),\qquad
              \text{mean} = \frac1N \sum_i w_{y_i}\,\mathrm{CE}(z_i, y_i)

    ``"mean"`` is the *plain* mean of the weighted per-sample losses, not torch's weighted
    mean ``Σ w_{y_i} ℓ_i / Σ w_{y_i}``: hitachi-rd-cv/CDB-loss builds
    ``nn.CrossEntropyLoss(weight=w, reduction="none")`` and its CIFAR-LT training script
    takes ``torch.mean`` of that. ``"sum"`` is ``Σ_i w_{y_i} CE_i``; ``"none"`` gives
    ``w_{y_i} CE_i`` [N]. ``class_weights`` [C] (e.g. :func:`class_difficulty_weights`) are
    detached. No ``ignore_index``: every target must be a class in ``[0, C)``.

    Shapes: ``logits`` [N, C]; ``target`` int64 [N]; ``class_weights`` [C].

    Example:
        >>> import torch, lossatlas as la
        >>> w = la.weighting.class_difficulty_weights([0.9, 0.5, 0.5], tau=1.0)
        >>> la.weighting.cdb_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]), w).ndim
        0
    """
    check_tensor(class_weights, "class_weights")
    z, y, _, out_dtype = prepare_classification(logits, target, reduction, validate)
    if class_weights.dim() != 1 or class_weights.numel() != z.shape[1]:
        raise ValueError(
            f"class_weights must have shape [C] = [{z.shape[1]}] (one weight per class of the logits), "
            f"got {tuple(class_weights.shape)}"
        )
    w = class_weights.detach().to(device=z.device, dtype=z.dtype)
    ce = -target_logit(torch.log_softmax(z, dim=1), y)
    return reduce_loss(w[y] * ce, reduction, None, out_dtype)


@register(
    "class_difficulty",
    aliases=("cdb", "cdb_w", "class_difficulty_weights", "cdb_weights"),
    family="weighting",
    kind="weighting",
    catalogue="A9",
    formula="d_c = 1 - acc_c;  w_c = C · d_c^τ / Σ_k d_k^τ;  τ fixed or dynamic: τ = sigmoid(max acc / (min acc + 0.01));  "
            "CDB-CE: (1/N) Σ_i w_{y_i} CE(z_i, y_i)",
    paper=CDB_PAPER,
    code="hitachi-rd-cv/CDB-loss CIFAR-LT/losses/cdb_loss.py::CDB_loss",
    function=class_difficulty_weights,
    defaults_source={
        "tau": "'dynamic', the paper's recommended setting (the CDB-loss scripts take --tau 'dynamic' or a number)",
        "num_classes": "None: no weights until the first accuracy update (the reference trains its first epoch with plain CE)",
        "reduction": "'mean' = plain mean of w_{y_i}·CE_i: CDB_loss(reduction='none') then torch.mean in CIFAR-LT/cifar_train.py",
    },
    notes="Call obj(class_accuracy) after each validation to refresh the weights; obj() returns the current ones; "
          "obj(logits, target, class_accuracy=None) returns the CDB-CE loss (plain mean of w_{y_i}·CE_i, as the reference).",
)
class ClassDifficultyWeights(ClassWeighting):
    r"""Class-wise difficulty-balanced weights, CDB-W, and the CDB-CE loss (Sinha, Ohashi,
    Nakamura, 2020, "Class-Wise Difficulty-Balanced Loss for Solving Class-Imbalance", ACCV;
    also published as "Class-Difficulty Based Methods for Long-Tailed Visual Recognition").

    .. math:: d_c = 1 - \mathrm{acc}_c,\qquad w_c = C\,\frac{d_c^{\tau}}{\sum_k d_k^{\tau}},
              \qquad \tau_{\text{dyn}} = \sigma\!\Big(\frac{\max_c \mathrm{acc}_c}{\min_c \mathrm{acc}_c + 0.01}\Big)

    .. math:: \text{CDB-CE} = \frac1N \sum_{i=1}^{N} w_{y_i}\,\mathrm{CE}(z_i, y_i)

    Hard classes (low held-out accuracy) get large weights; the weights sum to C. Three calls:

    * ``cdb(class_accuracy)`` after each validation, with the per-class accuracies [C] (in
      [0, 1], e.g. ``la.metrics.per_class_accuracy``): stores and returns the new weights [C];
    * ``cdb()`` returns the current weights; they compose with any loss via ``weight=`` or
      :func:`lossatlas.weighting.apply` (which give torch's weighted mean);
    * ``cdb(logits, target, class_accuracy=acc)`` refreshes the weights from ``acc`` exactly
      as ``cdb(acc)`` does (``class_accuracy`` may be omitted to keep the current weights)
      and returns the CDB-CE loss of hitachi-rd-cv/CDB-loss (CIFAR-LT), see
      :func:`cdb_cross_entropy`.

    **Reduction (this method's exception to the weighted-mean rule):** lossatlas reduces
    ``weight=`` losses with torch's weighted mean ``Σ w_{y_i} ℓ_i / Σ w_{y_i}``; CDB-CE
    does not. The reference builds ``nn.CrossEntropyLoss(weight=w, reduction="none")`` and
    its training script averages that with ``torch.mean``, so ``reduction="mean"`` here is
    the plain mean ``Σ_i w_{y_i} CE_i / N``. ``"sum"`` gives ``Σ_i w_{y_i} CE_i`` and
    ``"none"`` gives ``w_{y_i} CE_i`` [N]. The weights are detached (no gradient). Before
    any accuracy is given (and without ``num_classes``) the loss uses uniform weights 1,
    i.e. plain cross-entropy, as the reference's first epoch (``class_difficulty = ones``).

    ``tau``: a number ≥ 0 (τ = 0 is uniform) or ``"dynamic"`` — the rule of the reference's
    loss class (its unused ``utils.compute_weights`` has a different one). A class with
    accuracy 1 gets weight 0, as in the reference; if all classes have accuracy 1 the
    weights are uniform (the reference divides by zero). Default τ = "dynamic" (the paper's
    recommendation). ``num_classes`` optionally starts with uniform weights [C] before the
    first update (otherwise ``cdb()`` before any update raises). The weights are a buffer
    (saved in ``state_dict``).

    Args:
        tau: τ ≥ 0 or ``"dynamic"``.
        num_classes: C, to start from uniform weights (optional).
        reduction: ``"mean"`` (plain mean, as the reference) | ``"sum"`` | ``"none"``, for
            the loss call only.
        validate: check the logits and targets of the loss call.

    Shapes: ``class_accuracy`` [C] → weights [C]; ``logits`` [N, C], ``target`` int64 [N]
    → loss (scalar, or [N] for ``"none"``).

    Example:
        >>> import torch, lossatlas as la
        >>> cdb = la.create("class_difficulty", tau=1.0)
        >>> [round(w, 4) for w in cdb([0.9, 0.5, 0.5]).tolist()]
        [0.2727, 1.3636, 1.3636]
        >>> cdb(torch.zeros(2, 3), torch.tensor([0, 1]), class_accuracy=[0.9, 0.5, 0.5]).ndim
        0
    """

    weights: Tensor | None  # buffer (None until the first class accuracies without num_classes)

    def __init__(self, tau: float | str = "dynamic", num_classes: int | None = None, reduction: str = "mean",
                 validate: bool = True) -> None:
        super().__init__()
        self.tau = _check_tau(tau)
        self.reduction = check_reduction(reduction)
        self.validate = bool(validate)
        if num_classes is not None:
            if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
                raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")
            self.register_buffer("weights", torch.ones(num_classes, dtype=torch.float64))
        else:
            self.register_buffer("weights", None)

    def _check_count(self, w: Tensor) -> None:
        if self.weights is not None and self.weights.numel() != w.numel():
            raise ValueError(
                f"class_accuracy has {w.numel()} classes but the weights have {self.weights.numel()}; "
                "pass one accuracy per class"
            )

    def update(self, class_accuracy: Any) -> Tensor:
        """Recompute the weights from per-class accuracies [C]; returns them."""
        w = class_difficulty_weights(class_accuracy, self.tau)
        self._check_count(w)
        self.weights = w.detach().clone()
        return w

    def class_weights(self) -> Tensor:
        if self.weights is None:
            raise ValueError(
                "class_difficulty has no weights yet: call it with the per-class validation accuracy first, "
                "or create it with num_classes= to start from uniform weights"
            )
        return self.weights

    def forward(
        self, logits: Any = None, target: Tensor | None = None, *, class_accuracy: Any = None
    ) -> Tensor:
        if target is None:
            # weights mode: cdb(acc), cdb(class_accuracy=acc) or cdb()
            if logits is not None and class_accuracy is not None:
                raise TypeError("give the per-class accuracy once: cdb(class_accuracy) or cdb(logits, target, class_accuracy=...)")
            acc = logits if logits is not None else class_accuracy
            return self.update(acc) if acc is not None else self.class_weights()
        # loss mode: cdb(logits, target, class_accuracy=None)
        check_tensor(logits, "logits")
        if logits.dim() != 2:
            raise ValueError(f"logits must have shape [N, C], got {tuple(logits.shape)}")
        num_classes = logits.shape[1]
        if class_accuracy is not None:
            w = class_difficulty_weights(class_accuracy, self.tau)
            if w.numel() != num_classes:
                raise ValueError(f"class_accuracy has {w.numel()} classes but the logits have {num_classes}")
            self._check_count(w)
            self.weights = w.detach().clone()
        if self.weights is None:
            weights = torch.ones(num_classes, dtype=logits.dtype, device=logits.device)
        else:
            weights = self.weights
            if weights.numel() != num_classes:
                raise ValueError(f"the logits have {num_classes} classes but the weights have {weights.numel()}")
        return cdb_cross_entropy(logits, target, weights, reduction=self.reduction, validate=self.validate)

    def extra_repr(self) -> str:
        return f"tau={self.tau!r}, reduction={self.reduction!r}"
