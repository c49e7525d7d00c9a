"""In-batch negatives across processes: all-gather *with* gradients (catalogue row G10).

``torch.distributed.all_gather`` returns tensors that are cut from the graph, so a loss on
the gathered batch sends no gradient back to the other processes' embeddings.
:func:`all_gather_with_grad` gathers the rows of every process (batch sizes may differ)
and, in backward, sums the gradient each process computed for every slice and returns each
process its own slice.

Convention used by every lossatlas contrastive loss with ``distributed=True``: on each
process the loss is computed for the *local* anchors against the *global* batch, its value
is all-reduced so that every process returns the loss of the concatenated batch, and the
gradient that reaches the local embeddings is exactly the single-process gradient of that
loss (tests/test_distributed_contrastive.py checks both with 2 gloo processes).
``DistributedDataParallel`` averages parameter gradients over processes; multiply the loss
by the world size (:func:`world_size`) when you want DDP's averaged gradient to be the
gradient of the global loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["is_distributed", "world_size", "rank", "all_gather_with_grad", "global_reduce", "replicated_loss"]


def is_distributed(group: Any = None) -> bool:
    """True when torch.distributed is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def world_size(group: Any = None) -> int:
    return dist.get_world_size(group) if is_distributed(group) else 1


def rank(group: Any = None) -> int:
    return dist.get_rank(group) if is_distributed(group) else 0


def _gather_sizes(n: int, device: torch.device, group: Any) -> list[int]:
    size = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size(group))]
    dist.all_gather(sizes, size, group=group)
    return [int(s) for s in sizes]


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, group: Any, sizes: list[int]) -> Tensor:
        ctx.group = group
        ctx.sizes = sizes
        ctx.rank = dist.get_rank(group)
        biggest = max(sizes)
        padded = x.new_zeros((biggest, *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous(), group=group)
        return torch.cat([p[:s] for p, s in zip(parts, sizes)])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


_all_gather = cast(Callable[[Tensor, Any, list[int]], Tensor], _AllGather.apply)  # Function.apply is unannotated in torch


def all_gather_with_grad(x: Tensor, group: Any = None) -> tuple[Tensor, int]:
    """Concatenate ``x`` [n_r, ...] of every process along dim 0, keeping the graph.

    Returns ``(x_global, offset)`` where ``x_global[offset : offset + n_local]`` is this
    process's ``x`` (which is the original tensor's values; its gradient is the sum over
    processes of the gradients computed for that slice). Without an initialised process
    group of size > 1 it returns ``(x, 0)``.
    """
    if not is_distributed(group):
        return x, 0
    sizes = _gather_sizes(x.shape[0], x.device, group)
    out = _all_gather(x, group, sizes)
    return out, sum(sizes[: dist.get_rank(group)])


def _all_reduce_value(x: Tensor, group: Any) -> Tensor:
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM, group=group)
    return y


def global_reduce(local: Tensor, reduction: str, total: int, group: Any = None, enabled: bool = True) -> Tensor:
    """Reduce per-anchor losses of the local anchors to the loss of the global batch.

    ``"sum"``/``"mean"`` (mean = sum / ``total``, the global number of anchors) return, on
    every process, the value of the global loss while the gradient flows through the local
    terms only (the gather's backward adds the other processes' contributions).
    ``"none"`` returns the local per-anchor losses unchanged.
    """
    if reduction == "none":
        return local
    s = local.sum()
    if reduction == "mean":
        s = s / max(total, 1)
    if not (enabled and is_distributed(group)):
        return s
    return s + (_all_reduce_value(s, group) - s.detach())


def replicated_loss(loss: Tensor, group: Any = None) -> Tensor:
    """For a loss that every process computes in full on gathered inputs.

    Each process's copy sends gradient into every slice, and the gather's backward sums
    them, so the gradient is scaled by ``1 / world_size``; the value is unchanged.
    """
    if not is_distributed(group):
        return loss
    w = world_size(group)
    scaled = loss / w
    return scaled + (loss.detach() - scaled.detach())
