"""Reducers: how the terms of an embedding loss become one number (issue 22).

A composed embedding loss (:mod:`lossatlas.functional.metric` with ``distance=``,
``reducer=``, ``ref_emb=`` or a memory bank) produces one or more :class:`Terms` — its
per-element losses with their *kind* and the anchor row of each — and a reducer turns each
into a scalar; a loss with several parts (the contrastive loss's positive and negative parts)
is the sum of its parts' reductions. This follows pytorch-metric-learning's reducers (their
semantics, not their code): ``"element"`` terms have one loss per anchor, ``"pos_pair"`` /
``"neg_pair"`` one per pair, ``"triplet"`` one per triplet.

>>> import torch
>>> from lossatlas.reducers import AvgNonZeroReducer, MeanReducer, Terms
>>> t = Terms(torch.tensor([0.0, 1.0, 3.0]), "pos_pair", torch.tensor([0, 0, 1]), 2)
>>> round(MeanReducer()(t).item(), 4), AvgNonZeroReducer()(t).item()
(1.3333, 2.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._validation import check_number

__all__ = [
    "Terms",
    "Reducer",
    "MeanReducer",
    "SumReducer",
    "ThresholdReducer",
    "AvgNonZeroReducer",
    "PerAnchorReducer",
    "reduce_terms",
]

KINDS = ("element", "pos_pair", "neg_pair", "triplet")


@dataclass(frozen=True)
class Terms:
    """The unreduced terms of one part of an embedding loss.

    Attributes:
        losses: the terms [K] (differentiable).
        kind: ``"element"`` (one per anchor), ``"pos_pair"``, ``"neg_pair"`` or ``"triplet"``.
        anchors: int64 [K], the anchor row (into the loss's ``embeddings``) of each term.
        num_anchors: N, the number of rows of ``embeddings``.
    """

    losses: Tensor
    kind: str
    anchors: Tensor
    num_anchors: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.losses.shape != self.anchors.shape or self.losses.dim() != 1:
            raise ValueError(f"losses and anchors must be 1-D of equal length, got {tuple(self.losses.shape)} "
                             f"and {tuple(self.anchors.shape)}")

    def per_anchor_sum(self) -> Tensor:
        """The sum of the terms of each anchor, [N] (``reduction="none"`` of the losses)."""
        out = torch.zeros(self.num_anchors, dtype=self.losses.dtype, device=self.losses.device)
        return out.index_add(0, self.anchors, self.losses)


class Reducer:
    """Base class: ``reducer(terms) -> 0-d tensor``. Empty terms give 0 (with a zero gradient
    that still reaches the inputs)."""

    def __call__(self, terms: Terms) -> Tensor:
        if not isinstance(terms, Terms):
            raise TypeError(f"a reducer takes Terms, got {type(terms).__name__}")
        return self.reduce(terms)

    def reduce(self, terms: Terms) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


def _mean_of(losses: Tensor, keep: Tensor | None = None) -> Tensor:
    """Mean of ``losses`` where ``keep`` (all when None); 0 when nothing is kept (no host read)."""
    if keep is None:
        return losses.sum() / max(losses.numel(), 1)
    w = keep.to(losses.dtype)
    return torch.where(keep, losses, torch.zeros_like(losses)).sum() / w.sum().clamp_min(1.0)


class MeanReducer(Reducer):
    """The mean of every term (pytorch-metric-learning's ``MeanReducer``, the default of most
    of its losses); 0 for no terms.

    >>> import torch
    >>> MeanReducer()(Terms(torch.tensor([1.0, 2.0]), "element", torch.tensor([0, 1]), 2)).item()
    1.5
    """

    def reduce(self, terms: Terms) -> Tensor:
        return _mean_of(terms.losses)


class SumReducer(Reducer):
    """The sum of the terms.

    >>> import torch
    >>> SumReducer()(Terms(torch.tensor([1.0, 2.0]), "element", torch.tensor([0, 1]), 2)).item()
    3.0
    """

    def reduce(self, terms: Terms) -> Tensor:
        return terms.losses.sum()


class ThresholdReducer(Reducer):
    """The mean of the terms with ``low < loss < high`` (either bound may be None, not both);
    0 when none passes (pytorch-metric-learning's ``ThresholdReducer``).

    >>> import torch
    >>> ThresholdReducer(low=0.5, high=2.5)(Terms(torch.tensor([0.0, 1.0, 2.0, 3.0]), "triplet", torch.zeros(4, dtype=torch.long), 1)).item()
    1.5
    """

    def __init__(self, low: float | None = None, high: float | None = None) -> None:
        if low is None and high is None:
            raise ValueError("ThresholdReducer needs low or high (or both)")
        self.low = None if low is None else check_number(low, "low")
        self.high = None if high is None else check_number(high, "high")

    def reduce(self, terms: Terms) -> Tensor:
        x = terms.losses
        keep = torch.ones_like(x, dtype=torch.bool)
        if self.low is not None:
            keep &= x > self.low
        if self.high is not None:
            keep &= x < self.high
        return _mean_of(x, keep)


class AvgNonZeroReducer(ThresholdReducer):
    """The mean of the terms > 0 (pytorch-metric-learning's ``AvgNonZeroReducer``, the
    default of its contrastive, triplet and SupCon losses); 0 when all are 0.

    >>> import torch
    >>> AvgNonZeroReducer()(Terms(torch.tensor([0.0, 2.0, 4.0]), "triplet", torch.zeros(3, dtype=torch.long), 1)).item()
    3.0
    """

    def __init__(self) -> None:
        super().__init__(low=0.0)


class PerAnchorReducer(Reducer):
    """Average the terms of each anchor first (pairs and triplets grouped by their anchor row;
    an anchor without terms gets 0), then reduce those N per-anchor losses as ``"element"``
    terms with ``reducer`` (default :class:`MeanReducer`): pytorch-metric-learning's
    ``PerAnchorReducer`` with its default aggregation. ``"element"`` terms go to ``reducer``
    unchanged.

    Differences from pytorch-metric-learning, where its reducer is undefined or fails: a pair
    listed k times counts k times (its [N, N] scatter keeps one), reference sets larger than
    the batch work, and triplets are grouped by anchor (it raises).

    >>> import torch
    >>> t = Terms(torch.tensor([1.0, 3.0, 4.0]), "pos_pair", torch.tensor([0, 0, 1]), 3)
    >>> PerAnchorReducer()(t).item()  # (mean(1, 3) + 4 + 0) / 3
    2.0
    """

    def __init__(self, reducer: Reducer | None = None) -> None:
        if reducer is not None and not isinstance(reducer, Reducer):
            raise TypeError(f"reducer must be a lossatlas.reducers.Reducer, got {type(reducer).__name__}")
        self.reducer: Reducer = MeanReducer() if reducer is None else reducer

    def reduce(self, terms: Terms) -> Tensor:
        if terms.kind == "element":
            return self.reducer(terms)
        sums = terms.per_anchor_sum()
        counts = torch.zeros_like(sums).index_add(0, terms.anchors, torch.ones_like(terms.losses))
        per_anchor = sums / counts.clamp_min(1.0)
        anchors = torch.arange(terms.num_anchors, device=sums.device)
        return self.reducer(Terms(per_anchor, "element", anchors, terms.num_anchors))


def reduce_terms(parts: Sequence[Terms], reducer: Reducer, reduction: str) -> Tensor:
    """The loss of a composed embedding loss: ``"mean"`` is the sum over its parts of
    ``reducer(part)`` (pytorch-metric-learning's sum over sub-losses); ``"sum"`` the sum of
    every term; ``"none"`` the per-anchor sums [N]."""
    if reduction == "mean":
        out = reducer(parts[0])
        for p in parts[1:]:
            out = out + reducer(p)
        return out
    per_anchor = parts[0].per_anchor_sum()
    for p in parts[1:]:
        per_anchor = per_anchor + p.per_anchor_sum()
    return per_anchor if reduction == "none" else per_anchor.sum()
