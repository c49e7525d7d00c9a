"""Class-balanced, square-root and progressively-balanced samplers (catalogue rows I1, I4).

Kang et al. (2020) write them as one family: a draw comes from class j with probability
``p_j = n_j^q / Σ_i n_i^q`` — q = 1 instance-balanced (ordinary shuffling), q = 0
class-balanced, q = 1/2 square-root — and progressively-balanced interpolates from
instance- to class-balanced over training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..registry import Paper, register
from ._base import SEEDING_DEFAULTS, ClassSampler, check_int

__all__ = ["ClassBalancedSampler", "SquareRootSampler", "ProgressivelyBalancedSampler"]

KANG_PAPER = Paper(
    "B. Kang, S. Xie, M. Rohrbach, Z. Yan, A. Gordo, J. Feng, Y. Kalantidis",
    "Decoupling Representation and Classifier for Long-Tailed Recognition",
    "ICLR",
    2020,
    "1910.09217",
)
_CODE = "facebookresearch/classifier-balancing data/ClassAwareSampler.py, data/ClassPrioritySampler.py"
_COMMON_DEFAULTS = {
    "num_samples": "None = len(labels) per epoch (Kang's ClassAwareSampler uses n_max·C)",
    **SEEDING_DEFAULTS,
}


def _register_kang(id: str, *, aliases: tuple[str, ...], formula: str) -> Callable[[type], type]:
    """Register one of Kang et al.'s samplers (catalogue row I1)."""
    return register(
        id,
        aliases=aliases,
        family="samplers",
        kind="sampler",
        catalogue="I1",
        formula=formula,
        paper=KANG_PAPER,
        code=_CODE,
        defaults_source=dict(_COMMON_DEFAULTS),
    )


def _power_probs(counts: torch.Tensor, q: float) -> torch.Tensor:
    c = counts.double()
    p = torch.where(c > 0, c.pow(q), torch.zeros_like(c))
    return p / p.sum()


@_register_kang(
    "class_balanced_sampler",
    aliases=("class_aware_sampler", "cb_sampler", "balanced_sampler"),
    formula="p_j = 1 / C (q = 0 in p_j = n_j^q / Σ_i n_i^q); uniform within a class",
)
class ClassBalancedSampler(ClassSampler):
    r"""Class-balanced sampler (Kang et al., 2020, "Decoupling Representation and Classifier
    for Long-Tailed Recognition", ICLR): every class is drawn equally often.

    .. math:: p_j = \frac{n_j^{q}}{\sum_i n_i^{q}},\quad q = 0\ \Rightarrow\ p_j = \frac1C

    Each epoch draws ``num_samples`` indices (default ``len(labels)``) so that each class
    present in ``labels`` gets ``⌊T/C⌋`` or ``⌈T/C⌉`` of them (T the epoch's draw size);
    within a class, samples are visited in a random order and reshuffled when exhausted
    (Kang's ``RandomCycleIter``), so tail samples repeat and head samples are subsampled.
    The draw is seeded by ``seed + epoch`` (call :meth:`set_epoch` each epoch, like
    ``DistributedSampler``). Distributed: rank r of R takes positions ``r, r+R, …`` of the
    same global draw (padded to a multiple of R), so shares are disjoint and their union is
    the global draw. Pass it to ``DataLoader(sampler=...)`` without ``shuffle``.

    Args: ``labels`` (int [N], list/array/tensor), ``num_samples``, ``seed``,
    ``num_replicas``, ``rank``.

    Example:
        >>> import lossatlas as la
        >>> labels = [0] * 8 + [1] * 2
        >>> s = la.samplers.ClassBalancedSampler(labels, seed=0)
        >>> la.data.class_counts([labels[i] for i in s]).tolist()
        [5, 5]
    """

    def class_probabilities(self) -> torch.Tensor:
        return _power_probs(self.class_counts, 0.0)


@_register_kang(
    "square_root_sampler",
    aliases=("sqrt_sampler", "square_root_sampling"),
    formula="p_j = √n_j / Σ_i √n_i (q = 1/2)",
)
class SquareRootSampler(ClassSampler):
    r"""Square-root sampler (Kang et al., 2020; after Mahajan et al., 2018): class j is drawn
    with probability proportional to the square root of its size.

    .. math:: p_j = \frac{\sqrt{n_j}}{\sum_i \sqrt{n_i}}

    A middle ground between instance-balanced (q = 1) and class-balanced (q = 0) sampling.
    Same epoch, seeding and distributed semantics as :class:`ClassBalancedSampler`: class
    counts per epoch are ``⌊T p_j⌋`` or ``⌈T p_j⌉``.

    Example:
        >>> import lossatlas as la
        >>> s = la.samplers.SquareRootSampler([0] * 9 + [1] * 1, num_samples=40)
        >>> s.class_probabilities().tolist()
        [0.75, 0.25]
    """

    def class_probabilities(self) -> torch.Tensor:
        return _power_probs(self.class_counts, 0.5)


@_register_kang(
    "progressively_balanced_sampler",
    aliases=("progressive_sampler", "pb_sampler"),
    formula="p_j(t) = (1 − t/T)·n_j/N + (t/T)·1/C,  t = epoch, T = num_epochs",
)
class ProgressivelyBalancedSampler(ClassSampler):
    r"""Progressively-balanced sampler (Kang et al., 2020): moves from instance-balanced to
    class-balanced sampling over ``num_epochs`` epochs.

    .. math:: p_j^{PB}(t) = \Big(1 - \frac tT\Big)\frac{n_j}{N} + \frac tT\,\frac1C

    ``t`` is the epoch set with :meth:`set_epoch` (clamped to T), ``T = num_epochs``. At
    epoch 0 it samples like ordinary shuffling (each sample once per epoch when
    ``num_samples = N``), at epoch T it is class-balanced. Same seeding and distributed
    semantics as :class:`ClassBalancedSampler`.

    Example:
        >>> import lossatlas as la
        >>> s = la.samplers.ProgressivelyBalancedSampler([0] * 3 + [1], num_epochs=2)
        >>> s.set_epoch(1); s.class_probabilities().tolist()
        [0.625, 0.375]
    """

    def __init__(
        self,
        labels: Any,
        num_epochs: int,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__(labels, num_samples, seed, num_replicas, rank)
        self.num_epochs = check_int(num_epochs, "num_epochs", low=1)

    def class_probabilities(self) -> torch.Tensor:
        t = min(self.epoch, self.num_epochs) / self.num_epochs
        return (1.0 - t) * _power_probs(self.class_counts, 1.0) + t * _power_probs(self.class_counts, 0.0)
