"""One memory bank for the embedding and contrastive losses (issue 22).

:class:`MemoryBank` is a ring buffer of past embeddings (keys) and their labels whose state
lives in registered buffers (``state_dict`` round trip, ``.to(device)``, DDP broadcast), and
:class:`MemoryLoss` is the one wrapper that lets an existing loss see it, in either of two modes:

* ``mode="xbm"`` — cross-batch memory (Wang, Zhang, Huang & Scott, 2020, "Cross-Batch Memory
  for Embedding Learning", CVPR; pytorch-metric-learning's ``CrossBatchMemory``): the batch is
  enqueued first, then its rows are the anchors and the whole memory (this batch included) is
  the reference set, each anchor's comparison with its own slot removed. Works with every
  embedding loss that takes ``ref_emb`` (contrastive, triplet, multi-similarity, SupCon,
  NT-Xent) and an optional miner (mining anchors against the memory).
* ``mode="queue"`` — a MoCo queue (He, Fan, Wu, Xie & Girshick, 2020, "Momentum Contrast for
  Unsupervised Visual Representation Learning", CVPR): ``forward(queries, labels, keys=)``;
  the loss compares the queries with the batch's keys and the queue, then the keys are
  enqueued (after the loss, as MoCo). For MoCHi (``la.create("mochi")``) the queue is passed
  as its ``queue=``; for the embedding losses the reference set is ``cat(keys, queue)``, so
  with ``labels=None`` (instance discrimination: every sample its own class, ids that never
  repeat) SupCon / NT-Xent over the queue is MoCo's InfoNCE with the other keys of the batch
  as further negatives (MoCo v3's in-batch keys).

Under ``torch.distributed``, ``gather=True`` fills the bank from the keys all-gathered over the
group (in rank order), so every process holds the same bank, equal to the bank of one
process fed the concatenated global batch (tested with two gloo processes). Each process's
loss is then that of its own rows against the bank. ``distributed=True`` (with ``gather``)
makes it the loss of the concatenated batch: the batch's rows, labels (and keys) are
all-gathered with gradients (:func:`lossatlas.distributed.all_gather_with_grad`), every
process computes the loss of all of them against the bank (miner, distance and reducer
included) and returns it with :func:`lossatlas.distributed.replicated_loss`, so the value and
each process's gradient are those of one process fed the concatenated batch (under DDP,
multiply by the world size, as for every ``distributed=True`` loss; ``reduction="none"``
returns this process's rows). The loss is computed in full on every process: the bank is the
larger side of the comparison, and the reducers need every term.

>>> import torch, lossatlas as la
>>> from lossatlas.memory import MemoryLoss
>>> xbm = MemoryLoss(la.create("triplet_margin"), memory_size=64, embedding_dim=8)
>>> xbm(torch.randn(16, 8), torch.arange(16) % 4).ndim
0
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ._validation import check_class_indices, check_float, check_int
from .distances import Distance
from .distributed.gather import all_gather_with_grad, is_distributed, replicated_loss
from .functional.metric import _check_embeddings
from .miners import Miner
from .reducers import Reducer

__all__ = ["MemoryBank", "MemoryLoss", "remove_self_comparisons"]

MODES = ("xbm", "queue")


class MemoryBank(nn.Module):
    """A ring buffer of ``size`` embeddings [size, dim] with int64 labels.

    Buffers: ``embeddings`` [size, dim], ``labels`` [size], ``ptr`` (the next slot to write),
    ``count`` (rows written so far, capped at ``size``) and ``next_id`` (the next instance id
    handed out by :meth:`instance_labels`). :meth:`contents` returns the filled rows in slot
    order (pytorch-metric-learning's order: slots ``0 .. count − 1``).

    Args:
        size: the number of rows kept.
        dim: the embedding dimension.
        dtype: the stored dtype (float32).

    >>> import torch
    >>> bank = MemoryBank(4, 2)
    >>> bank.enqueue(torch.ones(3, 2), torch.tensor([0, 1, 2])).tolist()
    [0, 1, 2]
    >>> bank.enqueue(torch.zeros(2, 2), torch.tensor([3, 4])).tolist()  # wraps around
    [3, 0]
    >>> bank.contents()[1].tolist()
    [4, 1, 2, 3]
    """

    embeddings: Tensor
    labels: Tensor
    ptr: Tensor
    count: Tensor
    next_id: Tensor

    def __init__(self, size: int, dim: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.size = check_int(size, "size")
        self.dim = check_int(dim, "dim")
        if not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
        self.register_buffer("embeddings", torch.zeros(self.size, self.dim, dtype=dtype))
        self.register_buffer("labels", torch.full((self.size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.register_buffer("next_id", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"

    @property
    def filled(self) -> int:
        """How many rows hold data (a host read)."""
        return int(self.count)

    def reset(self) -> None:
        """Empty the bank (the buffers keep their device and dtype)."""
        self.embeddings.zero_()
        self.labels.fill_(-1)
        self.ptr.zero_()
        self.count.zero_()
        self.next_id.zero_()

    def contents(self) -> tuple[Tensor, Tensor]:
        """The filled rows ``(embeddings [n, dim], labels [n])`` in slot order (views of the buffers)."""
        n = self.filled
        return self.embeddings[:n], self.labels[:n]

    def instance_labels(self, n: int, *, gather: bool = False, group: Any = None) -> Tensor:
        """``n`` fresh instance ids (each sample its own class, never reused while in the bank);
        with ``gather`` the ids of the global batch are handed out in rank order, so every
        process agrees (returns this process's ids)."""
        sizes = _sizes(n, self.ptr.device, group) if gather and is_distributed(group) else [n]
        offset = sum(sizes[: dist.get_rank(group)]) if len(sizes) > 1 else 0
        ids = self.next_id + offset + torch.arange(n, device=self.ptr.device)
        self.next_id.add_(sum(sizes))
        return ids

    @torch.no_grad()
    def enqueue(self, keys: Tensor, labels: Tensor, *, gather: bool = False, group: Any = None) -> Tensor:
        """Write ``keys`` [n, dim] (detached) and ``labels`` [n] at the next slots, wrapping
        around; returns the slots [n] of this call's rows. With ``gather=True`` under an
        initialised process group the keys and labels of every process are all-gathered (in
        rank order) and all written, and the slots of this process's rows are returned.
        """
        check_float(keys, "keys")
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape [n, dim] = [n, {self.dim}], got {tuple(keys.shape)}")
        y = check_class_indices(labels, "labels")
        if y.shape != (keys.shape[0],):
            raise ValueError(f"labels must have shape [n] = [{keys.shape[0]}] to match keys, got {tuple(y.shape)}")
        k, y = keys.detach().to(self.embeddings.device, self.embeddings.dtype), y.to(self.labels.device)
        offset = 0
        if gather and is_distributed(group):
            sizes = _sizes(k.shape[0], k.device, group)
            offset = sum(sizes[: dist.get_rank(group)])
            k, y = _gather_rows(k, sizes, group), _gather_rows(y, sizes, group)
        total = k.shape[0]
        if total > self.size:
            raise ValueError(f"cannot enqueue {total} rows into a memory of size {self.size}; use a larger memory_size")
        slots = (self.ptr + torch.arange(total, device=self.ptr.device)) % self.size
        self.embeddings[slots] = k
        self.labels[slots] = y
        self.ptr.copy_((self.ptr + total) % self.size)
        self.count.copy_((self.count + total).clamp_max(self.size))
        return slots[offset : offset + keys.shape[0]]


def _sizes(n: int, device: torch.device, group: Any) -> list[int]:
    size = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size(group))]
    dist.all_gather(sizes, size, group=group)
    return [int(s) for s in sizes]


def _gather_rows(x: Tensor, sizes: list[int], group: Any) -> Tensor:
    """All-gather rows of unequal counts (no gradient), concatenated in rank order."""
    padded = x.new_zeros((max(sizes), *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous(), group=group)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


def remove_self_comparisons(indices: tuple[Tensor, ...], slots: Tensor) -> tuple[Tensor, ...]:
    """Drop the positive pairs / triplets whose positive is the anchor's own memory slot
    (``positives == slots[anchors]``); negatives are never the anchor itself."""
    if len(indices) == 3:
        a, p, n = indices
        keep = p != slots[a]
        return a[keep], p[keep], n[keep]
    a1, p, a2, n = indices
    keep = p != slots[a1]
    return a1[keep], p[keep], a2, n


class MemoryLoss(nn.Module):
    """An embedding or contrastive loss that also sees a :class:`MemoryBank` (see the module
    docstring for the two modes).

    Args:
        loss: a loss module: an embedding loss taking ``ref_emb`` (``la.create("triplet_margin")``,
            ``"contrastive"``, ``"multi_similarity"``, ``"supcon"``, ``"ntxent"``) or, in
            ``"queue"`` mode, MoCHi (a loss whose ``forward`` takes ``queue=``).
        memory_size: rows kept (XBM's memory size, MoCo's K).
        embedding_dim: D.
        mode: ``"xbm"`` or ``"queue"``.
        miner: a :class:`lossatlas.miners.Miner` applied to (batch, memory) in ``"xbm"`` mode.
        distance, reducer: passed to the loss (``None``: its own).
        gather: fill the bank from the keys all-gathered over ``group`` (DDP).
        distributed: with ``gather``, return the loss of the concatenated batch of every
            process (see the module docstring); no effect outside a process group of > 1.
        group: the process group (``None``: the default group).

    ``forward(embeddings [N, D], labels [N] | None = None, keys [N, D] | None = None)``;
    ``"xbm"`` needs labels; ``"queue"`` needs keys (labels optional).
    """

    def __init__(self, loss: nn.Module, memory_size: int, embedding_dim: int, *, mode: str = "xbm",
                 miner: Miner | None = None, distance: Distance | None = None, reducer: Reducer | None = None,
                 gather: bool = False, distributed: bool = False, group: Any = None) -> None:
        super().__init__()
        if not isinstance(loss, nn.Module):
            raise TypeError(f"loss must be a loss module (la.create(...)), got {type(loss).__name__}")
        if not isinstance(distributed, bool):
            raise TypeError(f"distributed must be True or False, got {distributed!r}")
        if distributed and not gather:
            raise ValueError("distributed=True needs gather=True: the loss of the concatenated batch compares it with "
                             "the bank of every process's keys")
        if getattr(loss, "distributed", False):
            raise ValueError("loss was built with distributed=True: MemoryLoss gathers the batch itself; build the "
                             "loss without it and pass distributed=True to MemoryLoss")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if miner is not None and not isinstance(miner, Miner):
            raise TypeError(f"miner must be a lossatlas.miners.Miner, got {type(miner).__name__}")
        if miner is not None and mode == "queue":
            raise ValueError("a miner mines the batch against an XBM memory: use it with mode='xbm'")
        self.loss = loss
        self.bank = MemoryBank(memory_size, embedding_dim)
        self.mode = mode
        self.miner = miner
        self.distance = distance
        self.reducer = reducer
        self.gather = bool(gather)
        self.distributed = distributed
        self.group = group
        self._takes_queue = mode == "queue" and "ref_emb" not in _forward_keywords(loss)

    def _pieces(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.distance is not None:
            out["distance"] = self.distance
        if self.reducer is not None:
            out["reducer"] = self.reducer
        return out

    def forward(self, embeddings: Tensor, labels: Tensor | None = None, keys: Tensor | None = None) -> Tensor:
        if self.bank.embeddings.dtype != embeddings.dtype and embeddings.is_floating_point():
            self.bank.embeddings = self.bank.embeddings.to(embeddings.dtype)
        if self.mode == "xbm":
            return self._xbm(embeddings, labels)
        return self._queue(embeddings, labels, keys)

    def _xbm(self, embeddings: Tensor, labels: Tensor | None) -> Tensor:
        if labels is None:
            raise ValueError("mode='xbm' needs labels [N]")
        labels = _check_embeddings(embeddings, labels, validate=True)
        slots = self.bank.enqueue(embeddings, labels, gather=self.gather, group=self.group)
        rows = embeddings.shape[0]
        off, (embeddings, labels, slots) = self._global(embeddings, labels, slots)
        mem, mem_y = self.bank.contents()
        if self.miner is not None:
            indices = self.miner(embeddings, labels, mem, mem_y)
        else:
            eq = labels.unsqueeze(1) == mem_y.unsqueeze(0)
            a1, p = torch.nonzero(eq, as_tuple=True)
            a2, n = torch.nonzero(~eq, as_tuple=True)
            indices = (a1, p, a2, n)
        indices = remove_self_comparisons(tuple(indices), slots)
        out: Tensor = self.loss(embeddings, labels, indices, ref_emb=mem, ref_labels=mem_y, **self._pieces())
        return self._local(out, off, rows)

    def _on(self) -> bool:
        return self.distributed and is_distributed(self.group)

    def _global(self, *xs: Tensor) -> tuple[int, tuple[Tensor, ...]]:
        """With ``distributed`` in a process group of > 1: ``xs`` of every process (all-gathered
        with gradients, rank order) and where this process's rows start; else ``(0, xs)``."""
        if not self._on():
            return 0, xs
        parts = [all_gather_with_grad(x, self.group) for x in xs]
        return parts[0][1], tuple(p[0] for p in parts)

    def _local(self, out: Tensor, off: int, n: int) -> Tensor:
        """The loss of the gathered batch as this process returns it: a scalar replicated (its
        gradient shared so that the gather's backward sums to the exact one), per-row losses
        this process's rows."""
        if not self._on():
            return out
        return replicated_loss(out, self.group) if out.dim() == 0 else out[off : off + n]

    def _queue(self, queries: Tensor, labels: Tensor | None, keys: Tensor | None) -> Tensor:
        if keys is None:
            raise ValueError("mode='queue' needs keys [N, D] (the momentum encoder's embeddings)")
        check_float(keys, "keys")
        if keys.shape != queries.shape:
            raise ValueError(f"keys must have the shape of the queries {tuple(queries.shape)}, got {tuple(keys.shape)}")
        if labels is None:
            labels = self.bank.instance_labels(queries.shape[0], gather=self.gather, group=self.group)
        labels = _check_embeddings(queries, labels, validate=True)
        mem, mem_y = self.bank.contents()
        n = queries.shape[0]
        off, (q, y, k) = self._global(queries, labels, keys)
        if self._takes_queue:
            out: Tensor = self.loss(q, k, queue=mem.clone() if mem.shape[0] else None)
        else:
            ref = torch.cat([k.detach(), mem.to(k.dtype)])
            ref_y = torch.cat([y, mem_y])
            out = self.loss(q, y, ref_emb=ref, ref_labels=ref_y, **self._pieces())
        self.bank.enqueue(keys, labels, gather=self.gather, group=self.group)
        return self._local(out, off, n)


def _forward_keywords(loss: nn.Module) -> set[str]:
    import inspect

    return set(inspect.signature(loss.forward).parameters)
