"""Subsampling to the smallest group (catalogue row E4): "throwing away data" (Idrissi et al., 2022).

SUBG keeps, for every group, as many samples as the smallest group has, drawn once at random,
and trains on that balanced subset with ordinary shuffling; SUBY does the same with classes.
Both are this sampler: pass group ids (SUBG) or class ids (SUBY) as ``labels``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

from ..registry import Paper, register
from ._base import SEEDING_DEFAULTS, EpochSeeded, as_labels, split_by_class

__all__ = ["SubsampleSampler"]

IDRISSI_PAPER = Paper(
    "B. Y. Idrissi, M. Arjovsky, M. Pezeshki, D. Lopez-Paz",
    "Simple data balancing achieves competitive worst-group-accuracy", "CLeaR", 2022, "2110.14503",
)


@register(
    "subsample_sampler",
    aliases=("subg", "suby", "subsampling", "group_subsampling"),
    family="samplers",
    kind="sampler",
    catalogue="E4",
    formula="keep min_g n_g random samples of every group (drawn once, with seed); shuffle that subset each epoch",
    paper=IDRISSI_PAPER,
    code="facebookresearch/BalancingGroups datasets.py (GroupDataset.subsample)",
    defaults_source=dict(SEEDING_DEFAULTS, seed="0; the subset is drawn once with seed, each epoch's order with "
                                                "seed + epoch (DistributedSampler's convention)"),
)
class SubsampleSampler(EpochSeeded, Sampler[int]):
    r"""Subsample every group to the size of the smallest one (Idrissi, Arjovsky, Pezeshki &
    Lopez-Paz, CLeaR 2022, "Simple data balancing achieves competitive worst-group-accuracy").

    With ``n_g`` the samples of group g in ``labels``, the sampler keeps a subset ``S`` of
    ``G · min_g n_g`` indices, ``min_g n_g`` drawn without replacement from each group, once
    (from ``seed``): the paper's SUBG (group ids) or SUBY (class ids) data set, which is fixed
    for the whole of training (the official ``subsample`` draws it once when the data set is
    built). Each epoch iterates over a new permutation of ``S`` (seed ``seed + epoch``, see
    :meth:`set_epoch`). Only the groups present in ``labels`` count (an id with no sample is
    not a group). Rank ``r`` of ``R`` takes positions ``r, r + R, …`` of the epoch's order,
    padded with its first indices to a multiple of R (``DistributedSampler``).

    Args:
        labels: the group id (SUBG) or class id (SUBY) of every sample [N].
        seed: seed of the subset and, plus the epoch, of each epoch's order.
        num_replicas, rank: ``torch.distributed`` process count and rank (default: the
            initialised process group's, else 1 and 0).

    Example:
        >>> from lossatlas.samplers import SubsampleSampler
        >>> s = SubsampleSampler([0, 0, 0, 0, 1, 1, 2, 2, 2])
        >>> len(s), sorted(len([i for i in s if i in g]) for g in ({0, 1, 2, 3}, {4, 5}, {6, 7, 8}))
        (6, [2, 2, 2])
    """

    def __init__(self, labels: Any, seed: int = 0, num_replicas: int | None = None, rank: int | None = None) -> None:
        self.labels = as_labels(labels)
        self._init_seeding(seed, num_replicas, rank)
        counts, per_group = split_by_class(self.labels)
        present = [idx for idx in per_group if idx.numel() > 0]
        self.group_size = min(int(idx.numel()) for idx in present)
        self.num_groups = len(present)
        g = torch.Generator().manual_seed(self.seed)
        kept = [idx[torch.randperm(idx.numel(), generator=g)[: self.group_size]] for idx in present]
        #: the kept subset S (sorted), fixed for the sampler's life
        self.subset = torch.cat(kept).sort().values
        self.total_size = math.ceil(self.subset.numel() / self.num_replicas) * self.num_replicas

    def global_indices(self) -> torch.Tensor:
        """The epoch's order of the subset, padded to ``total_size``, identical on every rank."""
        order = self.subset[torch.randperm(self.subset.numel(), generator=self._generator())]
        pad = self.total_size - order.numel()
        return torch.cat([order, order[:pad]]) if pad else order

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_indices()[self.rank : self.total_size : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.total_size // self.num_replicas

    def __repr__(self) -> str:
        return (f"SubsampleSampler(num_groups={self.num_groups}, group_size={self.group_size}, "
                f"{self._seeding_repr()})")
