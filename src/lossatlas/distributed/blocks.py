"""Losses over row blocks, recomputed in backward: any per-anchor loss in memory linear in N.

The label-aware metric losses (contrastive, triplet, multi-similarity, NT-Xent) need, for
each anchor, a reduction over its row of the N x N similarity / distance matrix (and, for
triplets, over pairs of entries of that row). :func:`row_blocks` evaluates such a per-anchor
function ``fn(r0, r1, *inputs) -> [r1 - r0, ...]`` over blocks of anchor rows without a
graph, keeps only its per-row outputs, and in backward recomputes each block with a graph
and pulls the incoming gradient of those rows through it (activation checkpointing, one
block at a time). Values are the dense computation's (the same operators on the same
rows); gradients are exactly the dense ones up to floating-point summation order, and peak
memory is one block's graph plus the inputs, i.e. linear in N for a fixed block.

The custom backward is not differentiable twice (``once_differentiable``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["row_blocks", "BlockFn"]

#: ``fn(r0, r1, *inputs)``: the per-row outputs of rows ``r0:r1`` ([r1 - r0] or [r1 - r0, k]).
BlockFn = Callable[..., Tensor]


class _RowBlocks(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, fn: BlockFn, n: int, bs: int, *inputs: Tensor) -> Tensor:
        ctx.fn, ctx.n, ctx.bs = fn, n, bs
        ctx.save_for_backward(*inputs)
        with torch.no_grad():
            parts = [fn(r0, min(r0 + bs, n), *inputs) for r0 in range(0, n, bs)]
            return torch.cat(parts) if parts else fn(0, 0, *inputs)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        inputs = ctx.saved_tensors
        need = ctx.needs_input_grad[3:]
        grads = [torch.zeros_like(x) if nd else None for x, nd in zip(inputs, need)]
        if any(need):
            for r0 in range(0, ctx.n, ctx.bs):
                r1 = min(r0 + ctx.bs, ctx.n)
                with torch.enable_grad():
                    xs = [x.detach().requires_grad_(bool(nd)) for x, nd in zip(inputs, need)]
                    out = ctx.fn(r0, r1, *xs)
                    if not out.requires_grad:
                        continue
                    wrt = [x for x, nd in zip(xs, need) if nd]
                    gs = torch.autograd.grad(out, wrt, grad[r0:r1], allow_unused=True)
                it = iter(gs)
                for i, nd in enumerate(need):
                    if nd:
                        gi = next(it)
                        acc = grads[i]
                        if gi is not None and acc is not None:
                            acc.add_(gi)
        return (None, None, None, *grads)


_row_blocks = cast(Callable[..., Tensor], _RowBlocks.apply)  # Function.apply is unannotated in torch


def row_blocks(fn: BlockFn, n: int, block_size: int, *inputs: Tensor) -> Tensor:
    """``cat([fn(r0, r1, *inputs) for each block of block_size rows of n])`` with a
    block-by-block recomputing backward (gradients reach every floating-point input).

    ``fn`` must be deterministic and read the inputs only through its arguments. Its
    outputs may mix differentiable columns with counts (which carry no gradient).

    >>> import torch
    >>> x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    >>> rows = lambda r0, r1, x: torch.logsumexp(x[r0:r1] @ x.T, 1)
    >>> torch.autograd.gradcheck(lambda x: row_blocks(rows, 5, 2, x), (x,))
    True
    """
    if block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    return _row_blocks(fn, n, int(block_size), *inputs)
