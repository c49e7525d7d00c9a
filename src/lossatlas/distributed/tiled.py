"""Tiled similarity reductions: contrastive losses without the N x N matrix (catalogue row G9).

Every loss of :mod:`lossatlas.functional.ssl` that depends on the similarity matrix
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

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["pairwise_logsumexp", "pairwise_softplus_sum", "block_rows", "DEFAULT_BLOCK_ELEMENTS"]

#: Default number of similarity entries per block (rows = this / Nk).
DEFAULT_BLOCK_ELEMENTS = 1 << 24


def block_rows(num_keys: int, block_size: int | None) -> int:
    """Query rows per block: ``block_size`` or ``DEFAULT_BLOCK_ELEMENTS / num_keys``."""
    if block_size is not None:
        return max(1, int(block_size))
    return max(16, DEFAULT_BLOCK_ELEMENTS // max(num_keys, 1))


def _block(qs: Tensor, k: Tensor, exclude: Tensor | None, r0: int, r1: int, buf: Tensor) -> Tensor:
    """``qs[r0:r1] k^T`` (``qs`` = scale * q; excluded entries -inf) written into ``buf``."""
    s = buf[: r1 - r0]
    torch.matmul(qs[r0:r1], k.T, out=s)
    if exclude is not None:
        s.scatter_(1, exclude[r0:r1], float("-inf"))
    return s


def _finite_or_zero(x: Tensor) -> Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


# How far (in log space) a column's log-sum-exp may lie below the running maximum of the
# whole matrix before the single-exp column accumulation could lose accuracy to underflow
# (exp underflows near -87 in float32 and -708 in float64; the margin covers log N terms).
_SAFE_SPREAD = {torch.float32: 50.0, torch.float64: 600.0}


def _exact_col_lse(qs: Tensor, k: Tensor, exclude: Tensor | None, bs: int, buf: Tensor, work: Tensor) -> Tensor:
    """Column log-sum-exp with a per-column running maximum (two passes per block)."""
    nq, nk = qs.shape[0], k.shape[0]
    col_max = qs.new_full((nk,), float("-inf"))
    col_sum = qs.new_zeros((nk,))
    for r0 in range(0, nq, bs):
        r1 = min(r0 + bs, nq)
        s = _block(qs, k, exclude, r0, r1, buf)
        e = work[: r1 - r0]
        new_max = torch.maximum(col_max, s.amax(dim=0))
        shift = _finite_or_zero(new_max)
        col_sum.mul_(torch.exp(col_max - shift))
        torch.sub(s, shift, out=e)
        torch.exp(e, out=s)
        col_sum.add_(s.sum(dim=0))
        col_max = new_max
    return col_sum.log().add_(_finite_or_zero(col_max))


def _backward_products(w: Tensor, q: Tensor, k: Tensor, r0: int, r1: int, need: tuple[bool, bool, bool],
                       grad_q: Tensor | None, grad_k: Tensor | None, grad_s: Tensor) -> None:
    """Accumulate dL/dq = w k, dL/dk += wᵀ q and Σ w∘(q kᵀ) = Σ_i q_i·(w k)_i (before the scale)."""
    need_q, need_k, need_s = need
    if need_q or need_s:
        wk = torch.matmul(w, k, out=grad_q[r0:r1]) if grad_q is not None else w @ k
        if need_s:
            grad_s += (wk * q[r0:r1]).sum()
    if need_k:
        assert grad_k is not None  # allocated when needed
        grad_k.addmm_(w.T, q[r0:r1])


def _shift_and_gain(lse: Tensor, g: Tensor) -> tuple[Tensor, Tensor | None]:
    """exp(S - lse) * g as exp(S - shift) [* gain]: the gradient folds into the shift when g > 0."""
    ok = torch.isfinite(lse)
    lse = torch.where(ok, lse, 0)
    g = torch.where(ok, g, 0)
    # the fold needs one host read; under torch.compile the general form (a gain) keeps one graph
    if not torch.compiler.is_compiling() and bool((g > 0).all()):
        return lse - torch.log(g), None
    return lse, g


class _TiledLSE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, scale: Tensor, exclude: Tensor | None,
                rows: bool, cols: bool, bs: int) -> tuple[Tensor, Tensor]:
        nq, nk = q.shape[0], k.shape[0]
        qs = q * scale
        lse_r = q.new_full((nq if rows else 0,), float("-inf"))
        acc = q.new_zeros((nk if cols else 0,))  # Σ_i exp(S_ij - run_max)
        run_max = q.new_full((), float("-inf"))
        rb = min(bs, nq)
        buf, work = q.new_empty((rb, nk)), q.new_empty((rb, nk))
        for r0 in range(0, nq, bs):
            r1 = min(r0 + bs, nq)
            s = _block(qs, k, exclude, r0, r1, buf)
            e = work[: r1 - r0]
            m = s.amax(dim=1)
            mf = _finite_or_zero(m)
            torch.sub(s, mf[:, None], out=e)
            torch.exp(e, out=s)  # s now holds exp(S - m_i)
            if rows:
                lse_r[r0:r1] = s.sum(dim=1).log_().add_(mf)
            if cols:
                # Σ_i exp(S_ij - M) = Σ_i exp(S_ij - m_i) exp(m_i - M): one GEMV per block.
                blk_max = m.max()
                new_max = torch.maximum(run_max, blk_max)
                ref = _finite_or_zero(new_max)
                acc.mul_(torch.exp(run_max - ref))
                acc.add_(torch.mv(s.T, torch.exp(m - ref)))
                run_max = new_max
        if cols:
            lse_c = acc.log().add_(_finite_or_zero(run_max))
            spread = _SAFE_SPREAD.get(q.dtype, 50.0)
            # under torch.compile the exact second pass always runs (the check is a host read)
            if torch.compiler.is_compiling() or bool((lse_c < run_max - spread).any()):
                lse_c = _exact_col_lse(qs, k, exclude, bs, buf, work)
        else:
            lse_c = acc
        ctx.save_for_backward(q, k, scale, exclude, lse_r, lse_c)
        ctx.rows, ctx.cols, ctx.bs = rows, cols, bs
        ctx.mark_non_differentiable(*(t for t, used in ((lse_r, rows), (lse_c, cols)) if not used))
        return lse_r, lse_c

    @staticmethod
    def backward(ctx: Any, g_r: Tensor | None, g_c: Tensor | None) -> tuple[Any, ...]:
        q, k, scale, exclude, lse_r, lse_c = ctx.saved_tensors
        rows = ctx.rows and g_r is not None
        cols = ctx.cols and g_c is not None
        need = tuple(ctx.needs_input_grad[:3])
        grad_q = torch.zeros_like(q) if need[0] else None
        grad_k = torch.zeros_like(k) if need[1] else None
        grad_s = torch.zeros((), dtype=q.dtype, device=q.device)
        if rows or cols:
            if rows:
                assert g_r is not None
                shift_r, gain_r = _shift_and_gain(lse_r, g_r)
            if cols:
                assert g_c is not None
                shift_c, gain_c = _shift_and_gain(lse_c, g_c)
            qs = q * scale
            nq, nk = q.shape[0], k.shape[0]
            rb = min(ctx.bs, nq)
            buf, work = q.new_empty((rb, nk)), q.new_empty((rb, nk))
            acc = q.new_empty((rb, nk)) if (rows and cols) else None
            for r0 in range(0, nq, ctx.bs):
                r1 = min(r0 + ctx.bs, nq)
                s = _block(qs, k, exclude, r0, r1, buf)
                e = work[: r1 - r0]
                w = None
                if rows:  # exp(S - lse_i) g_i
                    w = acc[: r1 - r0] if acc is not None else s
                    torch.sub(s, shift_r[r0:r1, None], out=e)
                    torch.exp(e, out=w)
                    if gain_r is not None:
                        w.mul_(gain_r[r0:r1, None])
                if cols:  # + exp(S - lse_j) h_j
                    torch.sub(s, shift_c, out=e)
                    torch.exp(e, out=s)
                    if gain_c is not None:
                        s.mul_(gain_c)
                    w = s if w is None else w.add_(s)
                assert w is not None  # rows or cols
                _backward_products(w, q, k, r0, r1, need, grad_q, grad_k, grad_s)
        if grad_q is not None:
            grad_q.mul_(scale)
        if grad_k is not None:
            grad_k.mul_(scale)
        return grad_q, grad_k, (grad_s.reshape(scale.shape) if need[2] else None), None, None, None, None


class _TiledSoftplusSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, scale: Tensor, bias: Tensor, bs: int) -> Tensor:
        nq, nk = q.shape[0], k.shape[0]
        qs = q * scale
        out = q.new_zeros(nq)
        buf, work = q.new_empty((min(bs, nq), nk)), q.new_empty((min(bs, nq), nk))
        for r0 in range(0, nq, bs):
            r1 = min(r0 + bs, nq)
            s = _block(qs, k, None, r0, r1, buf)
            e = work[: r1 - r0]
            torch.sub(-bias, s, out=e)  # -(S + b)
            # -log σ(-x) = softplus(x), written as -logsigmoid(-x) to match the dense form.
            out[r0:r1] = F.logsigmoid(e).sum(dim=1).neg_()
        ctx.save_for_backward(q, k, scale, bias)
        ctx.bs = bs
        return out

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:
        q, k, scale, bias = ctx.saved_tensors
        need = tuple(ctx.needs_input_grad[:3])
        need_b = ctx.needs_input_grad[3]
        grad_q = torch.zeros_like(q) if need[0] else None
        grad_k = torch.zeros_like(k) if need[1] else None
        grad_s = torch.zeros((), dtype=q.dtype, device=q.device)
        grad_b = torch.zeros((), dtype=q.dtype, device=q.device)
        qs = q * scale
        nq, nk = q.shape[0], k.shape[0]
        buf, work = q.new_empty((min(ctx.bs, nq), nk)), q.new_empty((min(ctx.bs, nq), nk))
        for r0 in range(0, nq, ctx.bs):
            r1 = min(r0 + ctx.bs, nq)
            s = _block(qs, k, None, r0, r1, buf)
            e = work[: r1 - r0]
            torch.add(s, bias, out=e)
            torch.sigmoid(e, out=s)
            w = s.mul_(g[r0:r1, None])
            if need_b:
                grad_b += w.sum()
            _backward_products(w, q, k, r0, r1, need, grad_q, grad_k, grad_s)
        if grad_q is not None:
            grad_q.mul_(scale)
        if grad_k is not None:
            grad_k.mul_(scale)
        return (grad_q, grad_k, grad_s.reshape(scale.shape) if need[2] else None,
                grad_b.reshape(bias.shape) if need_b else None, None)


# Function.apply is unannotated in torch
_tiled_lse = cast(Callable[..., tuple[Tensor, Tensor]], _TiledLSE.apply)
_tiled_softplus_sum = cast(Callable[..., Tensor], _TiledSoftplusSum.apply)


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
    if k is q and torch.compiler.is_compiling():
        k = k.view_as(k)  # dynamo traces an autograd.Function only without a tensor passed twice
    lr, lc = _tiled_lse(q, k, sc, exclude, rows, cols, bs)
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
    bi = _as_scalar(bias, q)
    if not tiled:
        # softplus(x) = −log σ(−x); one addmm for scale·q·kᵀ + bias (a Python scale is addmm's alpha,
        # a tensor one scales q, O(N·D)); threshold 40: beyond it softplus(x) − x < 1e-17·x
        if isinstance(scale, Tensor):
            logits = torch.addmm(bi, q * _as_scalar(scale, q), k.T)
        else:
            logits = torch.addmm(bi, q, k.T, alpha=float(scale))
        return F.softplus(logits, threshold=40.0).sum(1)
    return _tiled_softplus_sum(q, k, _as_scalar(scale, q), bi, block_rows(k.shape[0], block_size))
