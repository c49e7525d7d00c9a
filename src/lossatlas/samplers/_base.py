"""Shared machinery of the samplers: labels, replicas, epoch seeding, per-class cycling."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler


def as_labels(labels: Any, name: str = "labels") -> torch.Tensor:
    """A 1-D int64 CPU tensor of non-negative class ids (from a list, array or tensor)."""
    if isinstance(labels, torch.Tensor):
        y = labels.detach().cpu()
    else:
        try:
            y = torch.as_tensor(np.asarray(labels))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be a 1-D sequence of integer class ids, got {type(labels).__name__}") from exc
    if y.numel() == 0:
        raise ValueError(f"{name} is empty: a sampler needs at least one sample")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex() or y.dim() != 1:
        raise TypeError(f"{name} must be a 1-D sequence of integer class ids, got dtype {y.dtype}, shape {tuple(y.shape)}")
    if int(y.min()) < 0:
        raise ValueError(f"{name} must be non-negative class ids; found {int(y.min())}")
    return y.long()


def check_int(value: Any, name: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def resolve_replicas(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """``DistributedSampler``'s defaults: world size and rank of the default process group
    when it is initialised, else a single replica (1, 0)."""
    dist_on = torch.distributed.is_available() and torch.distributed.is_initialized()
    if num_replicas is None:
        num_replicas = torch.distributed.get_world_size() if dist_on else 1
    if rank is None:
        rank = torch.distributed.get_rank() if dist_on else 0
    num_replicas = check_int(num_replicas, "num_replicas", low=1)
    rank = check_int(rank, "rank", low=0)
    if rank >= num_replicas:
        raise ValueError(f"rank must be in [0, num_replicas - 1] = [0, {num_replicas - 1}], got {rank}")
    return num_replicas, rank


#: ``defaults_source`` of the seeding and replica arguments every sampler takes.
SEEDING_DEFAULTS = {
    "seed": "0; the epoch's draw is seeded with seed + epoch, as DistributedSampler",
    "num_replicas": "None = world size of the initialised process group, else 1",
    "rank": "None = rank in the initialised process group, else 0",
}


def split_by_class(labels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Per-class counts [C] (C = max label + 1) and, for each class, the indices of its samples."""
    counts = torch.bincount(labels, minlength=int(labels.max()) + 1)
    order = torch.argsort(labels, stable=True)
    return counts, list(torch.split(order, counts.tolist()))


class EpochSeeded:
    """Seed, replicas and epoch of a sampler whose draw is seeded with ``seed + epoch``."""

    seed: int
    num_replicas: int
    rank: int
    epoch: int

    def _init_seeding(self, seed: int, num_replicas: int | None, rank: int | None) -> None:
        self.seed = check_int(seed, "seed", low=0)
        self.num_replicas, self.rank = resolve_replicas(num_replicas, rank)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch (reseeds the draw: ``seed + epoch``), as ``DistributedSampler``."""
        self.epoch = check_int(epoch, "epoch", low=0)

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + self.epoch)

    def _seeding_repr(self) -> str:
        return f"seed={self.seed}, num_replicas={self.num_replicas}, rank={self.rank}, epoch={self.epoch}"


class Cycler:
    """Endless random cycling over a fixed set of items (a new permutation per pass).

    ``take(n)`` returns the next ``n`` items; with ``distinct=True`` (needs ``n <= len``)
    no item repeats inside one call, items skipped at a pass boundary come next.
    """

    def __init__(self, items: torch.Tensor, generator: torch.Generator) -> None:
        self.items = items
        self.gen = generator
        self.queue: deque[int] = deque()

    def _refill(self) -> None:
        perm = torch.randperm(self.items.numel(), generator=self.gen)
        self.queue.extend(self.items[perm].tolist())

    def take(self, n: int, distinct: bool = False) -> list[int]:
        if not distinct:
            while len(self.queue) < n:
                self._refill()
            return [self.queue.popleft() for _ in range(n)]
        if n > self.items.numel():
            raise ValueError(f"cannot take {n} distinct items out of {self.items.numel()}")
        chosen: list[int] = []
        seen: set[int] = set()
        deferred: list[int] = []
        while len(chosen) < n:
            if not self.queue:
                self._refill()
            x = self.queue.popleft()
            if x in seen:
                deferred.append(x)
            else:
                seen.add(x)
                chosen.append(x)
        self.queue.extendleft(reversed(deferred))
        return chosen


def allocate(total: int, probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Integer counts [C] summing to ``total`` with ``count_c ∈ {⌊total·p_c⌋, ⌈total·p_c⌉}``.

    The remainder goes to classes drawn without replacement in proportion to their
    fractional parts, so ``E[count_c] = total·p_c`` exactly for the common cases.
    """
    expected = probs.double() * total
    base = torch.floor(expected)
    frac = (expected - base).clamp_min(0)
    rest = int(round(total - float(base.sum())))
    counts = base.long()
    if rest > 0:
        nonzero = int((frac > 0).sum())
        if nonzero >= rest:
            extra = torch.multinomial(frac, rest, replacement=False, generator=generator)
        else:  # rounding left more than the fractional parts can carry; spread by probability
            extra = torch.multinomial(probs.double(), rest, replacement=True, generator=generator)
        counts += torch.bincount(extra, minlength=counts.numel())
    return counts


class ClassSampler(EpochSeeded, Sampler[int]):
    """Base of the class-level samplers: each epoch draws ``num_samples`` indices whose class
    frequencies follow :meth:`class_probabilities` (exactly, up to rounding), cycling
    through each class's samples in random order, then shuffles them; rank ``r`` of ``R``
    keeps positions ``r, r+R, …`` of that global draw (padded up to a multiple of R)."""

    def __init__(
        self,
        labels: Any,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        self.labels = as_labels(labels)
        self.class_counts, self.class_indices = split_by_class(self.labels)
        self.num_classes = self.class_counts.numel()
        self.num_samples = len(self.labels) if num_samples is None else check_int(num_samples, "num_samples", low=1)
        self._init_seeding(seed, num_replicas, rank)
        self.total_size = math.ceil(self.num_samples / self.num_replicas) * self.num_replicas

    def class_probabilities(self) -> torch.Tensor:  # pragma: no cover - abstract
        """Probability [C] (float64) that a draw comes from class c, at the current epoch."""
        raise NotImplementedError

    def global_indices(self) -> torch.Tensor:
        """The whole epoch's draw [total_size], identical on every rank."""
        g = self._generator()
        probs = self.class_probabilities().double()
        probs = torch.where(self.class_counts > 0, probs, torch.zeros_like(probs))
        if not bool(probs.sum() > 0):
            raise ValueError("the class probabilities are all zero for the classes present in labels")
        probs = probs / probs.sum()
        counts = allocate(self.total_size, probs, g)
        parts = [
            torch.tensor(Cycler(self.class_indices[c], g).take(int(n)), dtype=torch.long)
            for c, n in enumerate(counts.tolist())
            if n > 0
        ]
        flat = torch.cat(parts)
        return flat[torch.randperm(flat.numel(), generator=g)]

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_indices()[self.rank : self.total_size : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.total_size // self.num_replicas

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_samples={self.num_samples}, num_classes={self.num_classes}, {self._seeding_repr()})"
