"""CDB-S: the class-difficulty sampler (catalogue row I3)."""

from __future__ import annotations

from typing import Any

import torch

from ..registry import register
from ..weighting.class_difficulty import CDB_PAPER, _check_tau, class_difficulty_weights
from ._base import SEEDING_DEFAULTS, ClassSampler

__all__ = ["ClassDifficultySampler"]


@register(
    "class_difficulty_sampler",
    aliases=("cdb_s", "cdb_sampler"),
    family="samplers",
    kind="sampler",
    catalogue="I3",
    formula="p_c ∝ d_c^τ, d_c = 1 − acc_c (τ fixed or dynamic, as CDB-W); instance-balanced before the first update",
    paper=CDB_PAPER,
    code="hitachi-rd-cv/CDB-loss (CDB-W; the sampler follows the paper's CDB-S description)",
    defaults_source={
        "tau": "'dynamic', as the CDB weights",
        "num_samples": "None = len(labels) per epoch",
        **SEEDING_DEFAULTS,
    },
)
class ClassDifficultySampler(ClassSampler):
    r"""Class-wise difficulty-balanced sampler, CDB-S (Sinha, Ohashi, Nakamura, 2020,
    "Class-Wise Difficulty-Balanced Loss for Solving Class-Imbalance", ACCV).

    .. math:: d_c = 1 - \mathrm{acc}_c,\qquad p_c = \frac{d_c^{\tau}}{\sum_k d_k^{\tau}}

    The sampling counterpart of CDB-W (:class:`lossatlas.weighting.ClassDifficultyWeights`,
    same τ rules, ``"dynamic"`` included): classes that are hard on held-out data are drawn
    more often. Call :meth:`update` with the per-class validation accuracy after each
    evaluation (every rank must pass the same values); until then it samples
    instance-balanced (like ordinary shuffling). A class with accuracy 1 is not drawn while
    τ > 0. Epoch, seeding and distributed semantics as
    :class:`lossatlas.samplers.ClassBalancedSampler`.

    Example:
        >>> import lossatlas as la
        >>> s = la.samplers.ClassDifficultySampler([0, 0, 0, 1], tau=1.0)
        >>> s.update([0.9, 0.6]); [round(p, 3) for p in s.class_probabilities().tolist()]
        [0.2, 0.8]
    """

    def __init__(
        self,
        labels: Any,
        tau: float | str = "dynamic",
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__(labels, num_samples, seed, num_replicas, rank)
        self.tau = _check_tau(tau)
        self.difficulty_weights: torch.Tensor | None = None

    def update(self, class_accuracy: Any) -> None:
        """Set the per-class accuracies [C] (in [0, 1]) that drive the next epochs' draws."""
        w = class_difficulty_weights(class_accuracy, self.tau).double()
        if w.numel() != self.num_classes:
            raise ValueError(
                f"class_accuracy has {w.numel()} entries but labels have {self.num_classes} classes; pass one per class"
            )
        self.difficulty_weights = w

    def class_probabilities(self) -> torch.Tensor:
        if self.difficulty_weights is None:
            c = self.class_counts.double()
            return c / c.sum()
        w = torch.where(self.class_counts > 0, self.difficulty_weights, torch.zeros_like(self.difficulty_weights))
        if not bool(w.sum() > 0):  # only perfectly classified classes are present: fall back to balanced
            w = (self.class_counts > 0).double()
        return w / w.sum()
