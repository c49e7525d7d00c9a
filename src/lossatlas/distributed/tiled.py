"""Tiled similarity reductions: contrastive losses without the N x N matrix (catalogue row G9).

Every loss of :mod:`lossatlas.functional.contrastive` that depends on the similarity matrix
``S = scale * q k^T`` only through

* row / column log-sum-exps ``lse_i = log Σ_j exp(S_ij)`` (InfoNCE, NT-Xent, decoupled,
  debiased and hard-negative contrastive), or
* row sums of ``-log σ(-(S_ij + bias))`` (SigLIP),

is computed here block by block (Inf-CL, Cheng et al. 2024). Forward walks over blocks of
query rows, each a ``[rows, Nk]`` matrix multiply, and keeps only the per-row (and running
per-column) statistics. Backward recomputes each block and uses
``dS_ij = exp(S_ij - lse_i) g_i`` (rows) ``+ exp(S_ij - lse_j) h_j`` (columns), again as
matrix multiplies. Memory is ``O((Nq + Nk) D + rows * Nk)``: linear in the batch for a fixed
block, while the work stays in BLAS. Values and gradients equal the dense form up to
floating-point summation order (tests/test_tiled.py: 1e-10 relative in float64).

``exclude`` [Nq, m] lists, per query row, key columns that are not part of the matrix
(self-similarity, or the positive for losses that drop it); rows may repeat an index.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["pairwise_logsumexp", "pairwise_softplus_sum", "block_rows", "DEFAULT_BLOCK_ELEMENTS"]

#: Default number of similarity entries per block (rows = this / Nk).
DEFAULT_BLOCK_ELEMENTS = 1 << 22


def block_rows(num_keys: int, block_size: int | None) -> int:
    """Query rows per block: ``block_size`` or ``DEFAULT_BLOCK_ELEMENTS / num_keys``."""
    if block_size is not None:
        return max(1, int(block_size))
    return max(16, DEFAULT_BLOCK_ELEMENTS // max(num_keys, 1))


def _block(q: Tensor, k: Tensor, scale: Tensor, exclude: Tensor | None, r0: int, r1: int,
           keep_raw: bool = False) -> tuple[Tensor | None, Tensor]:
    raw = q[r0:r1] @ k.T
    s = raw * scale if keep_raw else raw.mul_(scale)
    raw = raw if keep_raw else None
    if exclude is not None:
        s.scatter_(1, exclude[r0:r1], float("-inf"))
    return raw, s


def _finite_or_zero(x: Tensor) -> Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


class _TiledLSE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, scale: Tensor, exclude: Tensor | None,  # type: ignore[override]
                rows: bool, cols: bool, bs: int) -> tuple[Tensor, Tensor]:
        nq, nk = q.shape[0], k.shape[0]
        lse_r = q.new_full((nq if rows else 0,), float("-inf"))
        col_max = q.new_full((nk if cols else 0,), float("-inf"))
        col_sum = q.new_zeros((nk if cols else 0,))
        for r0 in range(0, nq, bs):
            r1 = min(r0 + bs, nq)
            _, s = _block(q, k, scale, exclude, r0, r1)
            if rows:
                lse_r[r0:r1] = torch.logsumexp(s, dim=1)
            if cols:
                new_max = torch.maximum(col_max, s.amax(dim=0))
                shift = _finite_or_zero(new_max)
                col_sum.mul_(torch.exp(col_max - shift))
                col_sum.add_(torch.exp(s.sub_(shift)).sum(dim=0))
                col_max = new_max
        lse_c = col_sum.log().add_(_finite_or_zero(col_max)) if cols else col_sum
        ctx.save_for_backward(q, k, scale, exclude, lse_r, lse_c)
        ctx.rows, ctx.cols, ctx.bs = rows, cols, bs
        ctx.mark_non_differentiable(*(t for t, used in ((lse_r, rows), (lse_c, cols)) if not used))
        return lse_r, lse_c

    @staticmethod
    def backward(ctx: Any, g_r: Tensor | None, g_c: Tensor | None) -> tuple[Any, ...]:  # type: ignore[override]
        q, k, scale, exclude, lse_r, lse_c = ctx.saved_tensors
        rows = ctx.rows and g_r is not None
        cols = ctx.cols and g_c is not None
        need_q, need_k, need_s = ctx.needs_input_grad[:3]
        grad_q = torch.zeros_like(q) if need_q else None
        grad_k = torch.zeros_like(k) if need_k else None
        grad_s = torch.zeros((), dtype=q.dtype, device=q.device) if need_s else None
        if not (rows or cols):
            return grad_q, grad_k, (None if grad_s is None else grad_s.reshape(scale.shape)), None, None, None, None
        if rows:
            ok = torch.isfinite(lse_r)
            lr, gr = torch.where(ok, lse_r, 0), torch.where(ok, g_r, 0)
        if cols:
            ok = torch.isfinite(lse_c)
            lc, gc = torch.where(ok, lse_c, 0), torch.where(ok, g_c, 0)
        nq = q.shape[0]
        for r0 in range(0, nq, ctx.bs):
            r1 = min(r0 + ctx.bs, nq)
            raw, s = _block(q, k, scale, exclude, r0, r1, keep_raw=need_s)
            if rows and cols:
                w = torch.exp(s - lr[r0:r1, None]).mul_(gr[r0:r1, None])
                w.add_(torch.exp(s.sub_(lc[None, :])).mul_(gc[None, :]))
            elif rows:
                w = torch.exp(s.sub_(lr[r0:r1, None])).mul_(gr[r0:r1, None])
            else:
                w = torch.exp(s.sub_(lc[None, :])).mul_(gc[None, :])
            if need_s:
                grad_s += (w * raw).sum()
            if need_q:
                torch.matmul(w, k, out=grad_q[r0:r1])
            if need_k:
                grad_k.addmm_(w.T, q[r0:r1])
        if need_q:
            grad_q.mul_(scale)
        if need_k:
            grad_k.mul_(scale)
        return grad_q, grad_k, (None if grad_s is None else grad_s.reshape(scale.shape)), None, None, None, None


class _TiledSoftplusSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, scale: Tensor, bias: Tensor, bs: int) -> Tensor:  # type: ignore[override]
        nq = q.shape[0]
        out = q.new_zeros(nq)
        for r0 in range(0, nq, bs):
            r1 = min(r0 + bs, nq)
            _, s = _block(q, k, scale, None, r0, r1)
            out[r0:r1] = -F.logsigmoid(s.add_(bias).neg_()).sum(dim=1)
        ctx.save_for_backward(q, k, scale, bias)
        ctx.bs = bs
        return out

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        q, k, scale, bias = ctx.saved_tensors
        need_q, need_k, need_s, need_b = ctx.needs_input_grad[:4]
        grad_q = torch.zeros_like(q) if need_q else None
        grad_k = torch.zeros_like(k) if need_k else None
        grad_s = torch.zeros((), dtype=q.dtype, device=q.device)
        grad_b = torch.zeros((), dtype=q.dtype, device=q.device)
        nq = q.shape[0]
        for r0 in range(0, nq, ctx.bs):
            r1 = min(r0 + ctx.bs, nq)
            raw, s = _block(q, k, scale, None, r0, r1, keep_raw=need_s)
            w = torch.sigmoid_(s.add_(bias)).mul_(g[r0:r1, None])
            if need_s:
                grad_s += (w * raw).sum()
            if need_b:
                grad_b += w.sum()
            if need_q:
                torch.matmul(w, k, out=grad_q[r0:r1])
            if need_k:
                grad_k.addmm_(w.T, q[r0:r1])
        if need_q:
            grad_q.mul_(scale)
        if need_k:
            grad_k.mul_(scale)
        return (grad_q, grad_k, grad_s.reshape(scale.shape) if need_s else None,
                grad_b.reshape(bias.shape) if need_b else None, None)


def _as_scalar(x: float | Tensor, like: Tensor) -> Tensor:
    if isinstance(x, Tensor):
        return x.to(dtype=like.dtype, device=like.device).reshape(())
    return torch.tensor(float(x), dtype=like.dtype, device=like.device)


def pairwise_logsumexp(
    q: Tensor,
    k: Tensor,
    scale: float | Tensor,
    *,
    exclude: Tensor | None = None,
    rows: bool = True,
    cols: bool = False,
    tiled: bool = True,
    block_size: int | None = None,
) -> tuple[Tensor | None, Tensor | None]:
    """Row and/or column log-sum-exp of ``S = scale * q k^T`` with ``exclude``-d entries removed.

    Returns ``(lse_rows [Nq] or None, lse_cols [Nk] or None)``. A row (column) with every
    entry excluded gives ``-inf``. ``tiled=False`` builds S densely (the reference form);
    ``tiled=True`` never holds more than ``block_rows(Nk, block_size) x Nk`` entries.
    ``scale`` may be a tensor with gradient (learnable temperature).
    """
    sc = _as_scalar(scale, q)
    if not tiled:
        s = sc * (q @ k.T)
        if exclude is not None:
            s = s.scatter(1, exclude, float("-inf"))
        return (torch.logsumexp(s, 1) if rows else None, torch.logsumexp(s, 0) if cols else None)
    bs = block_rows(k.shape[0], block_size)
    if exclude is not None:
        exclude = exclude.to(device=q.device, dtype=torch.long)
    lr, lc = _TiledLSE.apply(q, k, sc, exclude, rows, cols, bs)
    return (lr if rows else None, lc if cols else None)


def pairwise_softplus_sum(
    q: Tensor,
    k: Tensor,
    scale: float | Tensor,
    bias: float | Tensor,
    *,
    tiled: bool = True,
    block_size: int | None = None,
) -> Tensor:
    """Row sums ``Σ_j -log σ(-(scale * q_i·k_j + bias))`` (SigLIP's negative-pair terms), [Nq]."""
    sc, bi = _as_scalar(scale, q), _as_scalar(bias, q)
    if not tiled:
        return -F.logsigmoid(-(sc * (q @ k.T) + bi)).sum(1)
    return _TiledSoftplusSum.apply(q, k, sc, bi, block_rows(k.shape[0], block_size))
