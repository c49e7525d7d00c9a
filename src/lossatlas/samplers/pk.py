"""P×K batch sampler for metric learning (catalogue rows I2, I4)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

from ..registry import Paper, register
from ._base import SEEDING_DEFAULTS, Cycler, EpochSeeded, as_labels, check_int, split_by_class

__all__ = ["PKBatchSampler"]

PK_PAPER = Paper(
    "A. Hermans, L. Beyer, B. Leibe",
    "In Defense of the Triplet Loss for Person Re-Identification",
    "arXiv preprint",
    2017,
    "1703.07737",
)


@register(
    "pk_sampler",
    aliases=("pk_batch_sampler", "m_per_class_sampler"),
    family="samplers",
    kind="sampler",
    catalogue="I2",
    formula="batch = P distinct classes × K samples each (without replacement when n_c ≥ K)",
    paper=PK_PAPER,
    code="pytorch-metric-learning samplers.MPerClassSampler (behavioural peer)",
    defaults_source={
        "num_batches": "None = len(labels) // (p·k) batches per epoch (at least 1)",
        **SEEDING_DEFAULTS,
    },
)
class PKBatchSampler(EpochSeeded, Sampler[list[int]]):
    r"""P×K batch sampler (Hermans, Beyer, Leibe, 2017, "In Defense of the Triplet Loss for
    Person Re-Identification"): each batch holds P distinct classes and K samples of each,
    so every anchor has K−1 positives and (P−1)·K negatives.

    .. math:: \mathcal B = \{(c, x) : c \in \mathcal C_P,\ x \in \mathcal S_K(c)\},\quad |\mathcal C_P| = P,\ |\mathcal S_K(c)| = K

    Classes are visited in random cycles (every class appears equally often over an epoch,
    ±1 per cycle) and a class's samples in random cycles too, so K samples are distinct
    whenever the class has at least K; a class with fewer than K samples repeats some
    inside its K (as pytorch-metric-learning's ``MPerClassSampler``). Yields lists of
    ``p·k`` indices, ordered class by class; use it as ``DataLoader(batch_sampler=...)``.

    Seeded by ``seed + epoch`` (:meth:`set_epoch`). Distributed: the epoch's global list of
    ``⌈num_batches / R⌉·R`` batches is the same on every rank and rank r keeps batches
    ``r, r+R, …`` — each rank gets its own full P×K batches, disjoint from the others'.

    Example:
        >>> import lossatlas as la
        >>> s = la.samplers.PKBatchSampler([0, 0, 1, 1, 2, 2, 3, 3], p=2, k=2)
        >>> [len(b) for b in s]
        [4, 4]
    """

    def __init__(
        self,
        labels: Any,
        p: int,
        k: int,
        num_batches: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        self.labels = as_labels(labels)
        self.p = check_int(p, "p", low=1)
        self.k = check_int(k, "k", low=1)
        counts, split = split_by_class(self.labels)
        self.classes = torch.nonzero(counts > 0).flatten()
        if self.p > self.classes.numel():
            raise ValueError(
                f"p={self.p} classes per batch but labels contain only {self.classes.numel()} classes; lower p"
            )
        self.class_indices = {int(c): split[int(c)] for c in self.classes}
        if num_batches is None:
            num_batches = max(1, len(self.labels) // (self.p * self.k))
        self.num_batches = check_int(num_batches, "num_batches", low=1)
        self._init_seeding(seed, num_replicas, rank)
        self.total_batches = math.ceil(self.num_batches / self.num_replicas) * self.num_replicas

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def global_batches(self) -> list[list[int]]:
        """All of the epoch's batches (every rank's), identical on every rank."""
        g = self._generator()
        class_cycle = Cycler(self.classes, g)
        sample_cycles = {c: Cycler(idx, g) for c, idx in self.class_indices.items()}
        batches = []
        for _ in range(self.total_batches):
            batch: list[int] = []
            for c in class_cycle.take(self.p, distinct=True):
                cyc = sample_cycles[c]
                batch.extend(cyc.take(self.k, distinct=self.k <= cyc.items.numel()))
            batches.append(batch)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.global_batches()[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return self.total_batches // self.num_replicas

    def __repr__(self) -> str:
        return f"PKBatchSampler(p={self.p}, k={self.k}, num_batches={self.num_batches}, {self._seeding_repr()})"
