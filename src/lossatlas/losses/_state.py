"""Per-sample state of the stochastic X-risk losses (AUC, AP, partial AUC, NDCG, SogCLR).

These losses estimate an inner expectation per training sample (SOAP's ranking terms,
SOPA's per-positive weights, SogCLR's negative term) by a moving average that is updated at
the batch's dataset indices. :class:`PerSampleState` keeps that table in a registered buffer,
so it is in ``state_dict`` (a resumed run continues the same trajectory), moves with
``.to(device)`` and follows ``.double()``.

Under ``torch.distributed`` the losses gather the batch of every process
(:func:`gather_batch`) and update the table with the global batch, so every process holds the
same table and returns the loss of the concatenated batch (the convention of
:mod:`lossatlas.distributed.gather`).

>>> import torch
>>> from lossatlas.losses._state import PerSampleState
>>> u = PerSampleState(data_len=5)
>>> u.write(torch.tensor([1, 3]), torch.tensor([0.5, 2.0]))
>>> u.read(torch.tensor([3, 1, 0])).tolist()
[2.0, 0.5, 0.0]
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..distributed.gather import all_gather_with_grad, is_distributed

__all__ = ["PerSampleState", "check_index", "gather_batch"]


def check_index(index: Any, n: int, data_len: int, name: str = "index") -> Tensor:
    """``index`` as an int64 vector of ``n`` dataset indices in ``[0, data_len)``.

    Raises ``TypeError`` when it is not an integer tensor and ``ValueError`` (naming ``name``)
    when its shape or values are wrong.
    """
    if not isinstance(index, Tensor):
        raise TypeError(f"{name} must be a tensor of dataset indices (int64), got {type(index).__name__}")
    if index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of dataset indices, got dtype {index.dtype}")
    if index.ndim != 1 or index.shape[0] != n:
        raise ValueError(f"{name} must have shape [{n}] (one dataset index per row), got {list(index.shape)}")
    if n and (int(index.min()) < 0 or int(index.max()) >= data_len):
        raise ValueError(
            f"{name} must lie in [0, data_len={data_len}), got values in [{int(index.min())}, {int(index.max())}]"
        )
    return index.long()


class PerSampleState(nn.Module):
    """A table ``value[data_len, *shape]`` of per-sample moving averages, in a buffer.

    Args:
        data_len: number of samples of the dataset (indices run over ``0 .. data_len - 1``).
        shape: trailing shape of each sample's entry (``()`` for a scalar).
        init: initial value of every entry.
    """

    value: Tensor

    def __init__(self, data_len: int, shape: tuple[int, ...] = (), init: float = 0.0) -> None:
        super().__init__()
        if isinstance(data_len, bool) or not isinstance(data_len, int) or data_len < 1:
            raise ValueError(f"data_len must be a positive int (the number of samples), got {data_len!r}")
        self.data_len = data_len
        self.init = float(init)
        self.register_buffer("value", torch.full((data_len, *shape), self.init))

    def read(self, index: Tensor) -> Tensor:
        """The entries at ``index`` (a copy, outside the graph)."""
        return self.value.index_select(0, index.to(self.value.device)).clone()

    def write(self, index: Tensor, values: Tensor) -> None:
        """Set the entries at ``index`` to ``values`` (detached; indices should be distinct)."""
        with torch.no_grad():
            self.value.index_copy_(0, index.to(self.value.device), values.detach().to(self.value))

    def reset(self) -> None:
        """Every entry back to ``init``."""
        with torch.no_grad():
            self.value.fill_(self.init)

    def extra_repr(self) -> str:
        return f"data_len={self.data_len}, shape={tuple(self.value.shape[1:])}, init={self.init}"


def gather_batch(*tensors: Tensor, group: Any = None) -> tuple[list[Tensor], int]:
    """The batch of every process, concatenated in rank order, and this process's offset.

    Floating tensors keep their graph (:func:`lossatlas.distributed.all_gather_with_grad`);
    integer tensors (targets, indices) are gathered as values. Without an initialised
    process group of more than one process it returns the tensors unchanged and offset 0.
    """
    if not is_distributed(group):
        return list(tensors), 0
    out: list[Tensor] = []
    offset = 0
    for t in tensors:
        if t.is_floating_point():
            g, offset = all_gather_with_grad(t, group)
        else:
            g = _gather_values(t, group)
        out.append(g)
    return out, offset


def _gather_values(t: Tensor, group: Any) -> Tensor:
    n = torch.tensor([t.shape[0]], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size(group))]
    dist.all_gather(sizes, n, group=group)
    biggest = int(max(int(s) for s in sizes))
    padded = t.new_zeros((biggest, *t.shape[1:]))
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([p[: int(s)] for p, s in zip(parts, sizes)])
