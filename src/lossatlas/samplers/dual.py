"""DualSampler: mini-batches with a controlled share of positives (catalogue row H4).

The X-risk losses of LibAUC (AUC-M, compositional AUC, SOAP, SOPA) estimate pairwise terms
over the positives and negatives of a batch; with 1 % positives most batches hold none.
LibAUC's ``DualSampler`` fixes the number of positives in every batch by oversampling them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from ..registry import Paper, register
from ._base import Cycler, EpochSeeded, check_int

__all__ = ["DualSampler"]


def _binary_column(labels: Any, label: int | None) -> torch.Tensor:
    """The 0/1 column whose positives the sampler controls, as a bool tensor [N]."""
    if isinstance(labels, torch.Tensor):
        y = labels.detach().cpu()
    else:
        try:
            y = torch.as_tensor(np.asarray(labels))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"labels must be a sequence of 0/1 labels [N] or a multi-hot matrix [N, L], "
                            f"got {type(labels).__name__}") from exc
    if y.is_complex() or y.dim() not in (1, 2):
        raise ValueError(f"labels must be binary [N] or multi-hot [N, L], got shape {tuple(y.shape)}")
    if y.numel() == 0:
        raise ValueError("labels is empty: a sampler needs at least one sample")
    if y.dim() == 2:
        if label is None:
            raise ValueError(f"labels is multi-label [N, L] = {list(y.shape)}: pass label=<column> to choose the "
                             "label whose positives each batch holds (LibAUC's DualSampler uses column 0)")
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= int(label) < y.shape[1]:
            raise ValueError(f"label must be a column index in [0, {y.shape[1]}), got {label!r}")
        y = y[:, int(label)]
    elif label is not None:
        raise ValueError(f"label={label!r} selects a column of multi-label [N, L] labels; these labels are binary [N]")
    if y.dtype != torch.bool:
        bad = ~((y == 0) | (y == 1))
        if bool(bad.any()):
            raise ValueError(f"labels must be 0/1 (binary, or one column of a multi-hot matrix); found {y[bad][0].item()!r} "
                             "(for a multi-class problem pass (labels == c) for one class against the rest)")
    return y.bool()


def _draw(items: torch.Tensor, n: int, shuffle: bool, g: torch.Generator) -> torch.Tensor:
    """``n`` items cycling over ``items``: whole passes, each a fresh permutation (``shuffle``)
    or the items in order, then the start of one more."""
    if shuffle:
        return torch.tensor(Cycler(items, g).take(n), dtype=torch.long)
    reps = math.ceil(n / items.numel())
    return items.repeat(reps)[:n]


@register(
    "dual_sampler",
    aliases=("dualsampler",),
    family="samplers",
    kind="sampler",
    catalogue="H4",
    formula="every batch: num_pos = max(1, int(sampling_rate * B)) positives (oversampled by cycling) + B - num_pos negatives",
    paper=Paper("Z. Yuan, D. Zhu, Z.-H. Qiu, G. Li, X. Wang, T. Yang",
                "LibAUC: A Deep Learning Library for X-Risk Optimization", "KDD", 2023, "2306.03065"),
    code="Optimization-AI/LibAUC libauc/sampler/sampler.py::DualSampler",
    defaults_source={
        "sampling_rate": "LibAUC 2.0.1 DualSampler(sampling_rate=0.5)",
        "num_pos": "LibAUC 2.0.1 DualSampler(num_pos=None): derived from sampling_rate",
        "label": "lossatlas: None = binary labels (LibAUC reads column 0 of multi-label targets)",
        "shuffle": "LibAUC 2.0.1 DualSampler(shuffle=True)",
        "seed": "lossatlas samplers (seed=0; the epoch's draw uses seed + epoch; LibAUC seeds numpy with 2023)",
        "num_replicas": "lossatlas samplers (None = the process group's world size)",
        "rank": "lossatlas samplers (None = the process's rank)",
    },
)
class DualSampler(EpochSeeded, Sampler[int]):
    r"""Batches with a fixed number of positives (LibAUC's ``DualSampler``; Yuan, Zhu, Qiu,
    Li, Wang & Yang, 2023, "LibAUC: A Deep Learning Library for X-Risk Optimization").

    .. math:: |\mathcal B^+| = \max(1, \lfloor r\,B \rfloor),\quad |\mathcal B^-| = B - |\mathcal B^+|

    Every batch of ``batch_size`` = B indices holds ``num_pos`` positives first, then
    ``B - num_pos`` negatives, with ``num_pos = max(1, int(sampling_rate · B))`` (LibAUC's
    rounding) unless ``num_pos`` is given (it then overrides ``sampling_rate``). Positives
    and negatives are each drawn by cycling through their samples: a pass is a random
    permutation (``shuffle=True``) or index order, and the next pass starts when one is
    used up, so a rare positive class is oversampled and every sample of a class is drawn
    once before any is drawn twice. The epoch has
    ``max(⌈P / num_pos⌉, ⌊M / num_neg⌋)`` batches (P positives, M negatives): LibAUC's
    ``max(P // num_pos, M // num_neg)``, with the positives' count rounded up so that every
    positive is drawn in every epoch (LibAUC instead carries its position in the positives
    over to the next epoch; an epoch-seeded sampler starts each epoch afresh).

    Labels: binary ``[N]`` in {0, 1}, or a multi-hot ``[N, L]`` matrix with ``label`` the
    column whose positives are controlled (required there; LibAUC uses column 0). Yields
    dataset indices: use it as ``DataLoader(dataset, batch_size=B, sampler=sampler)``
    (the loader's ``batch_size`` must be the sampler's, so that each loaded batch is one of
    its batches).

    Seeded by ``seed + epoch`` (:meth:`set_epoch`), as ``DistributedSampler``; LibAUC
    seeds numpy with ``random_seed=2023`` (the draws differ from LibAUC's). Distributed:
    ``batch_size`` is the per-process batch; the epoch's global list of
    ``⌈num_batches / R⌉·R`` batches is the same on every rank and rank r keeps batches
    ``r, r+R, …``, so each process's every batch has exactly ``num_pos`` positives
    (LibAUC's ``DistributedDualSampler`` strides one global batch's indices over the ranks,
    which splits its positives unevenly when R does not divide them).

    Args:
        labels: binary labels [N] (0/1) or a multi-hot matrix [N, L].
        batch_size: indices per batch (per process), at least 2.
        sampling_rate: the share of positives in a batch, in (0, 1). Default ``0.5`` (LibAUC).
        num_pos: positives per batch, in [1, batch_size - 1]; overrides ``sampling_rate``.
            Default ``None`` (LibAUC).
        label: the column of multi-hot labels whose positives are controlled. Default ``None``
            (binary labels).
        shuffle: draw each pass in a random order (``False``: index order). Default ``True`` (LibAUC).
        seed: the epoch's draw is seeded with ``seed + epoch``. Default ``0``.
        num_replicas: processes sharing the epoch. Default ``None`` (the process group's world size, else 1).
        rank: this process's rank. Default ``None`` (its rank in the process group, else 0).

    Example:
        >>> import lossatlas as la
        >>> s = la.samplers.DualSampler([1, 0, 0, 0, 0, 0, 0, 0, 1, 0], batch_size=4, sampling_rate=0.5)
        >>> idx = list(s)
        >>> [sum(i in (0, 8) for i in idx[k:k + 4]) for k in range(0, len(idx), 4)]
        [2, 2, 2, 2]
    """

    def __init__(
        self,
        labels: Any,
        batch_size: int,
        sampling_rate: float = 0.5,
        num_pos: int | None = None,
        label: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        positive = _binary_column(labels, label)
        self.batch_size = check_int(batch_size, "batch_size", low=2)
        if num_pos is None:
            if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, float)) \
                    or not 0.0 < float(sampling_rate) < 1.0:
                raise ValueError(f"sampling_rate must be a number in (0, 1) (the share of positives in a batch), "
                                 f"got {sampling_rate!r}")
            num_pos = max(1, int(float(sampling_rate) * self.batch_size))
        else:
            num_pos = check_int(num_pos, "num_pos", low=1)
            if num_pos >= self.batch_size:
                raise ValueError(f"num_pos must be at most batch_size - 1 = {self.batch_size - 1} (a batch needs a "
                                 f"negative), got {num_pos}")
        if not isinstance(shuffle, bool):
            raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
        self.sampling_rate = sampling_rate
        self.label = label
        self.shuffle = shuffle
        self.num_pos = num_pos
        self.num_neg = self.batch_size - num_pos
        self.pos_indices = torch.nonzero(positive).flatten()
        self.neg_indices = torch.nonzero(~positive).flatten()
        if self.pos_indices.numel() == 0 or self.neg_indices.numel() == 0:
            which = "positive" if self.pos_indices.numel() == 0 else "negative"
            raise ValueError(f"labels hold no {which} sample: DualSampler needs both classes")
        self._init_seeding(seed, num_replicas, rank)
        self.num_batches = max(math.ceil(self.pos_indices.numel() / self.num_pos),
                               self.neg_indices.numel() // self.num_neg, 1)
        self.total_batches = math.ceil(self.num_batches / self.num_replicas) * self.num_replicas

    def global_batches(self) -> torch.Tensor:
        """All of the epoch's batches (every rank's) [total_batches, batch_size], identical on every rank."""
        g = self._generator()
        pos = _draw(self.pos_indices, self.total_batches * self.num_pos, self.shuffle, g)
        neg = _draw(self.neg_indices, self.total_batches * self.num_neg, self.shuffle, g)
        return torch.cat([pos.view(self.total_batches, self.num_pos), neg.view(self.total_batches, self.num_neg)], 1)

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_batches()[self.rank :: self.num_replicas].flatten().tolist())

    def __len__(self) -> int:
        return self.total_batches // self.num_replicas * self.batch_size

    def __repr__(self) -> str:
        return (f"DualSampler(batch_size={self.batch_size}, num_pos={self.num_pos}, positives={self.pos_indices.numel()}, "
                f"negatives={self.neg_indices.numel()}, num_batches={self.num_batches}, {self._seeding_repr()})")
