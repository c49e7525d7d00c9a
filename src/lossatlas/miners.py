"""Miners: choose which pairs / triplets of a batch a metric loss sees (catalogue F1, F2).

A miner is called like a loss, ``miner(embeddings [N, D], labels [N])``, runs under
``torch.no_grad`` and returns index tuples of int64 tensors into the batch:

- a triplet tuple ``(anchors, positives, negatives)``, or
- a pair tuple ``(anchors_pos, positives, anchors_neg, negatives)``.

Every pair / triplet loss of :mod:`lossatlas.losses.metric` accepts either through its
``indices=`` call argument (a triplet tuple becomes the pairs (a, p), (a, n); a pair tuple
becomes the triplets whose pairs share an anchor):

>>> import torch, lossatlas as la
>>> from lossatlas.miners import BatchHardMiner
>>> e, y = torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
>>> la.create("triplet_margin")(e, y, indices=BatchHardMiner()(e, y)).ndim
0

Across processes (``distributed=True`` under an initialised ``torch.distributed`` group of
> 1 processes): the miner all-gathers every process's rows and labels (no gradient, rank
order; shards may differ in size), mines this process's rows as anchors against the
concatenated batch (block by block with ``block_size``) and returns indices into the
concatenated batch, the anchors' among this process's rows: exactly the tuples one process
mining the concatenated batch gives for those anchors. Pass them to a loss called with
``distributed=True`` (which gathers the same rows, with gradients).

Distances are computed on L2-normalised rows, as the losses do: ``"euclidean"``
(‖u_i − u_j‖, pytorch-metric-learning's default ``LpDistance``) or ``"cosine"``
(similarity; larger is closer). Miners hold no state; mining is vectorised (no loop over
anchors). Use them with a P×K batch (:class:`lossatlas.samplers.PKBatchSampler`) so every
anchor has positives.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validation import check_number
from .distances import Distance
from .distributed.gather import all_gather_with_grad, is_distributed
from .functional import _composed
from .functional.metric import (
    _check_embeddings,
    _distance_rows,
    _key_reps,
    _label_rows,
    _pair_masks,
    _row_keys,
    _unit_distances,
    multi_similarity_mine,
)

__all__ = ["Miner", "BatchHardMiner", "BatchSemiHardMiner", "TripletMarginMiner", "MultiSimilarityMiner"]

DISTANCES = ("euclidean", "cosine")
TRIPLET_TYPES = ("all", "hard", "semihard", "easy")


class Miner:
    """Base class: validates the inputs, normalises, and mines without gradient.

    ``miner(embeddings [N, D], labels [N], ref_emb=None, ref_labels=None)``: with a reference
    set (a memory bank's rows, :mod:`lossatlas.memory`) anchors are the rows of
    ``embeddings`` and positives / negatives index ``ref_emb`` [M, D] (the batch form never
    pairs a row with itself; a reference set may hold the anchor's own row). ``distance`` is
    ``"euclidean"``, ``"cosine"`` or a :class:`lossatlas.distances.Distance` (applied to the
    raw rows; it normalises them itself). A reference set or a ``Distance`` mines on the
    dense [N, M] matrix (:meth:`mine_matrix`).
    """

    distance: str | Distance = "euclidean"
    #: mine this process's rows against every process's (see the module docstring)
    distributed: bool = False
    #: the process group of ``distributed`` (``None``: the default group)
    group: Any = None
    #: anchor rows per block of the row-block form (``None``: the dense N x N form)
    block_size: int | None = None
    #: positions of the anchors in the tuple :meth:`mine_matrix` returns
    anchor_slots: tuple[int, ...] = (0,)

    def __call__(self, embeddings: Tensor, labels: Tensor, ref_emb: Tensor | None = None,
                 ref_labels: Tensor | None = None) -> tuple[Tensor, ...]:
        labels = _check_embeddings(embeddings, labels, validate=True)
        ref, ref_y = _composed.reference(embeddings, labels, ref_emb, ref_labels, validate=True)
        with torch.no_grad():
            if self.distributed and is_distributed(self.group):
                if ref is not None:
                    raise ValueError("a miner with distributed=True mines the rows of every process and takes no "
                                     "ref_emb / ref_labels; for a memory bank filled from every process use "
                                     "lossatlas.memory.MemoryLoss(..., gather=True, distributed=True)")
                u = _unit_rows(embeddings)
                ug, off = all_gather_with_grad(u, self.group)
                yg, _ = all_gather_with_grad(labels, self.group)
                return self._mine_rows(ug, yg, self.block_size or max(u.shape[0], 1), off, off + u.shape[0])
            if ref is None and self._native():
                return self.mine(_unit_rows(embeddings), labels)
            if isinstance(self.distance, Distance):
                mat = _composed.matrix(embeddings.detach(), None if ref is None else ref.detach(), self.distance)
                d = self.distance.dissimilarity(mat)
            else:
                u = _unit_rows(embeddings)
                r = u if ref is None else F.normalize(ref.detach().to(u.dtype), dim=1)
                if self.distance == "euclidean":
                    d = _unit_distances(u) if ref is None else torch.cdist(u, r)
                else:
                    d = -(u @ r.T)
            pos, neg = _composed.label_masks(labels, ref_y, ref is None)
            return self.mine_matrix(d, pos, neg)

    def _native(self) -> bool:
        """Whether :meth:`mine` handles this miner's distance (the batch form's own kernels)."""
        return isinstance(self.distance, str)

    def mine(self, u: Tensor, labels: Tensor) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def mine_matrix(self, d: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, ...]:
        """Mine from a dissimilarity [N, M] (smaller is closer) and the candidate masks [N, M]."""
        raise NotImplementedError

    def _dist(self, u: Tensor) -> Tensor:
        """A dissimilarity [N, N] (smaller is closer) under this miner's distance."""
        return _unit_distances(u) if self.distance == "euclidean" else -(u @ u.T)

    def _dist_blocks(self, u: Tensor, labels: Tensor, block_size: int, start: int, stop: int
                     ) -> Iterator[tuple[int, Tensor, Tensor, Tensor]]:
        """Row blocks ``(r0, dissimilarity rows, positive rows, negative rows)`` of
        :meth:`_dist` and the pair masks for the anchors ``start:stop``, without the N x N
        matrices."""
        keys = _row_keys(u)
        reps = _key_reps(keys) if self.distance == "euclidean" else None
        for r0 in range(start, stop, block_size):
            r1 = min(r0 + block_size, stop)
            d = _distance_rows(u, u, r0, r1, keys, reps) if self.distance == "euclidean" else -(u[r0:r1] @ u.T)
            pos, neg = _label_rows(labels, r0, r1)
            yield r0, d, pos, neg

    def _mine_rows(self, u: Tensor, labels: Tensor, block_size: int, start: int = 0, stop: int | None = None
                   ) -> tuple[Tensor, ...]:
        """:meth:`mine_matrix` of the anchors ``u[start:stop]`` against every row of ``u``, over
        blocks of ``block_size`` anchors (memory linear in N); indices into ``u``."""
        stop = u.shape[0] if stop is None else stop
        parts = []
        for r0, d, pos, neg in self._dist_blocks(u, labels, block_size, start, stop):
            idx = self.mine_matrix(d, pos, neg)
            parts.append(tuple(t + r0 if k in self.anchor_slots else t for k, t in enumerate(idx)))
        if not parts:  # no anchors: the empty tuple of this miner's form
            none = torch.zeros(0, u.shape[0], dtype=torch.bool, device=u.device)
            return self.mine_matrix(u.new_zeros(0, u.shape[0]), none, none)
        return tuple(torch.cat(t) for t in zip(*parts))

    def _check_distributed(self, distributed: bool, group: Any) -> None:
        if not isinstance(distributed, bool):
            raise TypeError(f"distributed must be True or False, got {distributed!r}")
        if distributed and not isinstance(self.distance, str):
            raise ValueError("distributed=True mines with the miner's own distances: pass distance='euclidean' or "
                             f"'cosine', got {self.distance!r}")
        self.distributed = distributed
        self.group = group

    @staticmethod
    def _check_block_size(block_size: int | None) -> int | None:
        if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1):
            raise ValueError(f"block_size must be a positive int (anchor rows per block) or None, got {block_size!r}")
        return block_size

    @staticmethod
    def _check_distance(distance: str | Distance) -> str | Distance:
        if isinstance(distance, Distance):
            return distance
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES} or a lossatlas.distances.Distance, got {distance!r}")
        return distance

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


def _unit_rows(embeddings: Tensor) -> Tensor:
    """The detached L2-normalised rows the miners compare (float16 / bfloat16 in float32)."""
    e = embeddings.detach()
    return F.normalize(e.float() if e.dtype in (torch.float16, torch.bfloat16) else e, dim=1)


def _empty3(device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    e = torch.empty(0, dtype=torch.long, device=device)
    return e, e.clone(), e.clone()


class BatchHardMiner(Miner):
    """Batch-hard mining (Hermans, Beyer & Leibe, 2017, "In Defense of the Triplet Loss for
    Person Re-Identification"): for each anchor, its farthest positive and its closest
    negative. Anchors without a positive or a negative are skipped.

    Returns a triplet tuple ``(anchors, positives, negatives)`` with one triplet per anchor.
    ``block_size``: mine over blocks of that many anchor rows (memory linear in N, the same
    triplets); ``None`` builds the N x N distances. ``distributed=True`` (``group``): mine
    this process's rows against every process's (see the module docstring).

    >>> import torch
    >>> a, p, n = BatchHardMiner()(torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2]))
    >>> a.tolist()
    [0, 1, 2, 3, 4, 5]
    """

    def __init__(self, distance: str | Distance = "euclidean", block_size: int | None = None, *,
                 distributed: bool = False, group: Any = None) -> None:
        self.distance = self._check_distance(distance)
        self.block_size = self._check_block_size(block_size)
        self._check_distributed(distributed, group)

    def mine_matrix(self, d: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, ...]:
        ok = pos.any(1) & neg.any(1)
        if not bool(ok.any()):
            return _empty3(d.device)
        a = torch.nonzero(ok).flatten()
        return a, d.masked_fill(~pos, -math.inf).argmax(1)[a], d.masked_fill(~neg, math.inf).argmin(1)[a]

    def mine(self, u: Tensor, labels: Tensor) -> tuple[Tensor, ...]:
        if self.block_size is not None:
            return self._mine_rows(u, labels, self.block_size)
        d = self._dist(u)
        pos, neg = _pair_masks(labels, None)
        ok = pos.any(1) & neg.any(1)
        if not bool(ok.any()):
            return _empty3(u.device)
        hardest_p = d.masked_fill(~pos, -math.inf).argmax(1)
        hardest_n = d.masked_fill(~neg, math.inf).argmin(1)
        a = torch.nonzero(ok).flatten()
        return a, hardest_p[a], hardest_n[a]


class BatchSemiHardMiner(Miner):
    """Semi-hard negative mining (Schroff, Kalenichenko & Philbin, 2015, "FaceNet"): for every
    positive pair (a, p), the closest negative that is still farther than the positive,
    ``argmin_{n: d_an > d_ap} d_an``; when no negative is farther, the farthest negative
    (TensorFlow Addons' ``triplet_semihard_loss`` rule). With ``margin`` set, only negatives
    inside the margin band ``d_ap < d_an < d_ap + margin`` count as semi-hard.

    Returns a triplet tuple, one triplet per positive pair. ``block_size``: mine over blocks
    of that many anchor rows (memory linear in N for a bounded number of positives per
    anchor, the same triplets); ``None`` builds the N x N distances. ``distributed=True``
    (``group``): mine this process's rows against every process's (see the module docstring).

    >>> import torch
    >>> a, p, n = BatchSemiHardMiner()(torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2]))
    >>> len(a)
    6
    """

    def __init__(self, margin: float | None = None, distance: str | Distance = "euclidean", block_size: int | None = None,
                 *, distributed: bool = False, group: Any = None) -> None:
        self.margin = None if margin is None else check_number(margin, "margin", low=0.0, low_open=True)
        self.distance = self._check_distance(distance)
        self.block_size = self._check_block_size(block_size)
        self._check_distributed(distributed, group)

    def mine(self, u: Tensor, labels: Tensor) -> tuple[Tensor, ...]:
        if self.block_size is not None:
            return self._mine_rows(u, labels, self.block_size)
        d = self._dist(u)
        pos, neg = _pair_masks(labels, None)
        a, p, n = self._semihard(0, d, pos, neg)
        return (a, p, n) if a.numel() else _empty3(u.device)

    def mine_matrix(self, d: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, ...]:
        a, p, n = self._semihard(0, d, pos, neg)
        return (a, p, n) if a.numel() else _empty3(d.device)

    def _semihard(self, r0: int, d: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Semi-hard triplets of the anchor rows ``d`` [rows, N] (anchors ``r0 + row``)."""
        a, p = torch.nonzero(pos & neg.any(1, keepdim=True), as_tuple=True)
        if a.numel() == 0:
            return _empty3(d.device)
        d_ap = d[a, p].unsqueeze(1)  # [P, 1]
        d_an = d[a]  # [P, N]
        negs = neg[a]
        outside = negs & (d_an > d_ap)
        if self.margin is not None:
            outside &= d_an < d_ap + self.margin
        semi = d_an.masked_fill(~outside, math.inf).argmin(1)
        fallback = d_an.masked_fill(~negs, -math.inf).argmax(1)
        n = torch.where(outside.any(1), semi, fallback)
        return a + r0, p, n


class TripletMarginMiner(Miner):
    """Triplets selected by their margin (pytorch-metric-learning's ``TripletMarginMiner``).

    With ``m_t = d_an − d_ap``: ``"all"`` keeps ``m_t ≤ margin`` (the triplets with a
    non-zero triplet loss), ``"hard"`` those with also ``m_t ≤ 0``, ``"semihard"`` those
    with ``0 < m_t ≤ margin``, ``"easy"`` those with ``m_t > margin``. Forms the [N, N, N]
    triplet cube: meant for P×K batches of moderate size (with ``distributed=True``, the
    [n, N, N] cube of this process's n anchors).

    >>> import torch
    >>> m = TripletMarginMiner(margin=0.2, type_of_triplets="semihard")
    >>> len(m(torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2])))
    3
    """

    def __init__(self, margin: float = 0.2, type_of_triplets: str = "all", distance: str | Distance = "euclidean", *,
                 distributed: bool = False, group: Any = None) -> None:
        self.margin = check_number(margin, "margin")
        if type_of_triplets not in TRIPLET_TYPES:
            raise ValueError(f"type_of_triplets must be one of {TRIPLET_TYPES}, got {type_of_triplets!r}")
        self.type_of_triplets = type_of_triplets
        self.distance = self._check_distance(distance)
        self._check_distributed(distributed, group)

    def mine(self, u: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        d = self._dist(u)
        pos, neg = _pair_masks(labels, None)
        a, p, n = self.mine_matrix(d, pos, neg)
        return a, p, n

    def mine_matrix(self, d: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, ...]:
        valid = pos.unsqueeze(2) & neg.unsqueeze(1)
        m = d.unsqueeze(1) - d.unsqueeze(2)  # [a, p, n] = d_an - d_ap
        if self.type_of_triplets == "easy":
            keep = m > self.margin
        else:
            keep = m <= self.margin
            if self.type_of_triplets == "hard":
                keep &= m <= 0
            elif self.type_of_triplets == "semihard":
                keep &= m > 0
        a, p, n = torch.nonzero(valid & keep, as_tuple=True)
        return a, p, n


class MultiSimilarityMiner(Miner):
    """The multi-similarity miner (Wang et al., 2019, "Multi-Similarity Loss with General Pair
    Weighting for Deep Metric Learning"), on cosine similarities: positives with
    ``s_ap − ε < max_n s_an`` and negatives with ``s_an + ε > min_p s_ap`` (ε = 0.1 in the
    paper and pytorch-metric-learning). Returns a pair tuple
    ``(anchors_pos, positives, anchors_neg, negatives)``. ``distributed=True`` (``group``):
    mine this process's rows against every process's (see the module docstring).

    >>> import torch
    >>> len(MultiSimilarityMiner(epsilon=0.1)(torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2])))
    4
    """

    anchor_slots = (0, 2)

    def __init__(self, epsilon: float = 0.1, distance: str | Distance = "cosine", *, distributed: bool = False,
                 group: Any = None) -> None:
        self.epsilon = check_number(epsilon, "epsilon", low=0.0)
        self.distance = self._check_distance(distance)
        self._check_distributed(distributed, group)

    def _native(self) -> bool:
        return self.distance == "cosine"

    def mine_matrix(self, d: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, ...]:
        keep_pos, keep_neg = _composed.ms_mine_masks(-d, pos, neg, self.epsilon)
        a1, p = torch.nonzero(keep_pos, as_tuple=True)
        a2, n = torch.nonzero(keep_neg, as_tuple=True)
        return a1, p, a2, n

    def mine(self, u: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return multi_similarity_mine(u @ u.T, labels, self.epsilon)
