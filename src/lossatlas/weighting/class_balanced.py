"""Class-balanced "effective number" weights (A3) and the deferred re-weighting schedule (A5)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._validation import as_class_counts, check_number
from ..functional.imbalance import effective_number_weights
from ..losses.imbalance import LDAM_PAPER
from ..registry import Paper, register
from .base import ClassWeighting

__all__ = ["EffectiveNumberWeights", "DRW"]

CB_PAPER = Paper("Y. Cui, M. Jia, T.-Y. Lin, Y. Song, S. Belongie", "Class-Balanced Loss Based on Effective Number of Samples", "CVPR", 2019, "1901.05555")


@register(
    "effective_number",
    aliases=("class_balanced", "cb_weights", "effective_number_weights"),
    family="weighting",
    kind="weighting",
    catalogue="A3",
    formula="w_j = (1 - β) / (1 - β^{n_j}), normalised so that Σ_j w_j = C",
    paper=CB_PAPER,
    code="richardaecn/class-balanced-loss; kaidic/LDAM-DRW cifar_train.py",
    function=effective_number_weights,
    defaults_source={"beta": "Cui et al. 2019 and LDAM-DRW (β = 0.9999)"},
    notes="Class-balanced focal (CB-focal) = focal(weight=effective_number()).",
)
class EffectiveNumberWeights(ClassWeighting):
    r"""Class-balanced weights from the effective number of samples (Cui et al., 2019,
    "Class-Balanced Loss Based on Effective Number of Samples").

    .. math:: w_j = \frac{1-\beta}{1-\beta^{n_j}},\qquad \text{rescaled so } \textstyle\sum_j w_j = C

    β = 0 gives uniform weights, β → 1 inverse class frequency. Default β = 0.9999 as in
    the paper's CIFAR experiments and LDAM-DRW (parity case ``w_effective_number``).
    Called with no argument it returns the weights [C] (float64); compose with a loss via
    ``weight=`` or :func:`lossatlas.weighting.apply`.

    Example:
        >>> import lossatlas as la
        >>> w = la.create("effective_number", class_counts=[500, 50, 5])()
        >>> round(float(w.sum()), 6)
        3.0
    """

    class_counts: Tensor  # buffers
    weights: Tensor

    def __init__(self, class_counts: Any, beta: float = 0.9999) -> None:
        super().__init__()
        self.beta = check_number(beta, "beta", low=0.0, high=1.0)
        counts = as_class_counts(class_counts)
        self.register_buffer("class_counts", counts.clone())
        self.register_buffer("weights", effective_number_weights(counts, self.beta))

    def class_weights(self) -> Tensor:
        return self.weights

    def extra_repr(self) -> str:
        return f"num_classes={self.weights.numel()}, beta={self.beta}"


@register(
    "drw",
    aliases=("deferred_reweighting",),
    family="weighting",
    kind="weighting",
    catalogue="A5",
    formula="w(epoch) = effective_number(β=0) = 1 before start_epoch, effective_number(β) from start_epoch on",
    paper=LDAM_PAPER,
    code="kaidic/LDAM-DRW cifar_train.py (train_rule 'DRW')",
    defaults_source={"beta": "LDAM-DRW (β = 0.9999)"},
    notes="start_epoch is required (no default): LDAM-DRW's CIFAR recipe switches at epoch 160 of 200.",
)
class DRW(ClassWeighting):
    r"""Deferred re-weighting schedule (Cao et al., 2019).

    .. math:: w_j(e) = \begin{cases} 1 & e < e_0 \\ \frac{1-\beta}{1-\beta^{n_j}}\ \text{(sum } C) & e \ge e_0\end{cases}

    Train with uniform weights first, so the representation is learnt from all data, then
    switch to class-balanced weights. β = 0.9999 by default, as in kaidic/LDAM-DRW.
    ``start_epoch`` (e₀, 0-based, keyword) is required: it belongs to the training schedule,
    not to the method. LDAM-DRW's CIFAR recipe trains 200 epochs and switches at 160, at its
    learning-rate decay (``start_epoch=160``); a schedule of E epochs usually takes the same
    fraction, ``round(0.8 * E)``.

    Call :meth:`set_epoch` each epoch (the epoch is a buffer, saved in ``state_dict``).
    ``drw()`` returns the weights [C] of the current epoch, a new tensor: a loss built with
    ``weight=drw()`` keeps *that* vector and never sees the switch. To train LDAM-DRW, either
    :meth:`attach` the schedule to the loss (its ``weight`` then follows ``set_epoch``) or
    reduce per-sample losses with :func:`lossatlas.weighting.apply`.

    Example:
        >>> import torch, lossatlas as la
        >>> drw = la.create("drw", class_counts=[500, 50, 5], start_epoch=2)
        >>> crit = la.create("ldam", class_counts=[500, 50, 5]); _ = drw.attach(crit)
        >>> drw.set_epoch(2); loss = crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 2]))
        >>> bool(drw()[2] > drw()[0]) and torch.equal(crit.weight, drw())  # the weights of that call
        True
    """

    class_counts: Tensor  # buffers
    weights: Tensor
    epoch: Tensor

    def __init__(self, class_counts: Any, beta: float = 0.9999, *, start_epoch: int) -> None:
        super().__init__()
        self.beta = check_number(beta, "beta", low=0.0, high=1.0)
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int):
            raise TypeError(f"start_epoch must be an int (the 0-based epoch of the switch), got {type(start_epoch).__name__}")
        if start_epoch < 0:
            raise ValueError(f"start_epoch must be >= 0, got {start_epoch}")
        self.start_epoch = start_epoch
        counts = as_class_counts(class_counts)
        self.register_buffer("class_counts", counts.clone())
        self.register_buffer("weights", effective_number_weights(counts, self.beta))
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))

    def set_epoch(self, epoch: int) -> None:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self.epoch.fill_(epoch)

    def class_weights(self) -> Tensor:
        # a select, not a Python branch: no host read when the buffers live on a GPU
        return torch.where(self.epoch >= self.start_epoch, self.weights, torch.ones_like(self.weights))

    def extra_repr(self) -> str:
        return f"num_classes={self.weights.numel()}, beta={self.beta}, start_epoch={self.start_epoch}"
