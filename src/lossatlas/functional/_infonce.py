"""The positive-mask InfoNCE family: one kernel behind SupCon, NT-Xent, InfoNCE / CLIP (one-way
and symmetric), multi-positive InfoNCE and multi-label SupCon (issue 22).

Queries ``q`` [Nq, D] meet keys ``k`` [Nk, D] through the logits ``z_ij = scale · q_i·k_j``.
Each pair carries a positive weight ``w_ij ≥ 0`` and a denominator weight ``d_ij ≥ 0`` (a
boolean mask or a multiplicity: an entry listed twice counts twice). Two per-query losses:

* ``each=False`` (SupCon's L_out, InfoNCE, CLIP, SimCLR's 2N form): the weighted mean over
  positives of ``−log softmax``, with the softmax over the denominator entries,
  ``ℓ_i = log Σ_j d_ij e^{z_ij} − Σ_j w_ij z_ij / Σ_j w_ij`` (0 when ``Σ_j w_ij = 0``);
* ``each=True`` (pytorch-metric-learning's NT-Xent): every positive against the negatives
  only, ``ℓ_i = Σ_j w_ij softplus(L_i − z_ij)``, ``L_i = log Σ_n d_in e^{z_in}`` (here ``d``
  marks the negatives; no negative gives 0).

The presets choose ``w`` and ``d``: integer labels (same label is a positive; a pair's own
view is the positive of CLIP when the "labels" are the row indices), multi-hot labels with
Jaccard weights, or a miner's pair lists. :func:`nce_matrix` evaluates the two losses on a
given logit matrix (the dense form, and the composed form whose logits come from any
distance); :func:`nce` builds the logits of ``q`` and ``k`` itself, either densely or in
blocks of query rows (``tiled=True``) whose backward recomputes each block and applies the
analytic gradient (not differentiable twice), so memory is ``O((Nq + Nk) D + rows · Nk)``,
linear in N. Both forms share
the row math (:func:`_rows` and :func:`_rows_grad`): the values agree up to summation order
(1e-10 relative in float64, tests/test_infonce_family.py). Across processes, the presets
pass the keys and labels of every process (all-gathered with gradients) as ``k``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, cast

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .._validation import compiling
from ..distributed.blocks import row_blocks
from ..distributed.tiled import _backward_products, pairwise_logsumexp

__all__ = ["Weights", "nce", "nce_blocks", "nce_matrix", "label_weights", "jaccard_weights"]

#: ``weights(r0, r1) -> (w, d)`` for the query rows ``r0:r1``: the positive weights ``w``
#: [r1 - r0, Nk] (bool, or float weights) and the denominator ``d``: a bool mask or float
#: multiplicities [r1 - r0, Nk], or int64 columns [r1 - r0, m] left out of an all-keys
#: denominator (a query's own row), or ``None`` (every key).
Weights = Callable[[int, int], tuple[Tensor, "Tensor | None"]]


def _masked(z: Tensor, d: Tensor | None) -> Tensor:
    """``z + log d``: ``-inf`` outside the denominator, ``+ log(multiplicity)`` inside."""
    if d is None:
        return z
    if d.dtype == torch.bool:
        return z.masked_fill(~d, -math.inf)
    if not d.is_floating_point():  # columns left out
        return z.scatter(1, d, -math.inf)
    return z + torch.log(d.to(z.dtype))


def _in_denominator(z: Tensor, d: Tensor | None) -> Tensor:
    """How many entries each row's denominator has [b]."""
    if d is None:
        return z.new_full((z.shape[0],), float(z.shape[1]))
    if d.dtype == torch.bool or d.is_floating_point():
        return torch.count_nonzero(d, dim=1).to(z.dtype)
    return z.new_full((z.shape[0],), float(z.shape[1] - d.shape[1]))


def _positive_sum(z: Tensor, w: Tensor) -> Tensor:
    """``Σ_j w_ij z_ij`` [b]."""
    if w.dtype == torch.bool:
        return torch.where(w, z, 0.0).sum(1)
    return (w.to(z.dtype) * z).sum(1)


def _rows(z: Tensor, w: Tensor, d: Tensor | None, each: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row losses [b], the row statistic backward needs (the log-sum-exp) [b], and per-row
    counts [b, 2]: the positive weight ``Σ_j w_ij`` and the number of denominator entries that
    are not positives (with ``each``, the negatives: all of them)."""
    lse = torch.logsumexp(_masked(z, d), dim=1)
    wsum = w.sum(1, dtype=z.dtype)
    n_den = _in_denominator(z, d)
    if each:
        sp = torch.nn.functional.softplus(lse.unsqueeze(1) - z)
        loss = _positive_sum(sp, w)
        return loss, lse, torch.stack([wsum, n_den], dim=1)
    has = wsum > 0
    loss = torch.where(has, lse - _positive_sum(z, w) / torch.where(has, wsum, 1.0), 0.0)
    return loss, lse, torch.stack([wsum, n_den - torch.count_nonzero(w, dim=1).to(z.dtype)], dim=1)


def _rows_grad(z: Tensor, w: Tensor, d: Tensor | None, each: bool, lse: Tensor, g: Tensor) -> Tensor:
    """``g_i ∂ℓ_i/∂z_ij`` [b, Nk] of :func:`_rows` (``lse`` its row statistic)."""
    ok = torch.isfinite(lse)
    shift = torch.where(ok, lse, 0.0).unsqueeze(1)
    grad = torch.exp(_masked(z, d) - shift)  # the softmax over the denominator (0 outside it)
    if each:
        # ℓ = Σ_j w_ij softplus(L_i − z_ij): −w_ij σ(L_i − z_ij) directly, plus Σ_j w_ij σ(·) times ∂L_i/∂z
        pull = torch.sigmoid(shift - z)
        pull = torch.where(w, pull, 0.0) if w.dtype == torch.bool else pull.mul_(w.to(z.dtype))
        pull.mul_(torch.where(ok, g, 0.0).unsqueeze(1))
        return grad.mul_(pull.sum(1, keepdim=True)).sub_(pull)
    wsum = w.sum(1, dtype=z.dtype)
    has = wsum > 0
    gi = torch.where(has, g, 0.0)
    grad.mul_(gi.unsqueeze(1))
    per_weight = (gi / torch.where(has, wsum, 1.0)).unsqueeze(1)
    if w.dtype == torch.bool:
        return torch.where(w, grad - per_weight, grad)
    return grad.sub_(w.to(z.dtype) * per_weight)


class _Matrix(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: Tensor, w: Tensor, d: Tensor | None, each: bool) -> tuple[Tensor, Tensor]:
        loss, lse, counts = _rows(z, w, d, each)
        ctx.save_for_backward(z, w, d, lse)
        ctx.each = each
        ctx.mark_non_differentiable(counts)
        return loss, counts

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: Tensor, _: Tensor | None) -> tuple[Any, ...]:
        z, w, d, lse = ctx.saved_tensors
        return _rows_grad(z, w, d, ctx.each, lse, g), None, None, None


def _logit_blocks(q: Tensor, k: Tensor, scale: Tensor, weights: Weights,
                  bs: int) -> Iterator[tuple[int, int, Tensor, Tensor, Tensor | None]]:
    """``(r0, r1, z, w, d)`` for each block of query rows: the logits ``scale · q[r0:r1] kᵀ`` (in
    one reused buffer) and the block's weights."""
    nq = q.shape[0]
    qs = q * scale
    buf = q.new_empty((min(bs, nq), k.shape[0]))
    for r0 in range(0, nq, bs):
        r1 = min(r0 + bs, nq)
        yield (r0, r1, torch.matmul(qs[r0:r1], k.T, out=buf[: r1 - r0]), *weights(r0, r1))


class _Tiles(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, scale: Tensor, weights: Weights, each: bool,
                bs: int) -> tuple[Tensor, Tensor]:
        nq = q.shape[0]
        loss, lse, counts = q.new_zeros(nq), q.new_zeros(nq), q.new_zeros((nq, 2))
        for r0, r1, z, w, d in _logit_blocks(q, k, scale, weights, bs):
            loss[r0:r1], lse[r0:r1], counts[r0:r1] = _rows(z, w, d, each)
        ctx.save_for_backward(q, k, scale, lse)
        ctx.weights, ctx.each, ctx.bs = weights, each, bs
        ctx.mark_non_differentiable(counts)
        return loss, counts

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: Tensor, _: Tensor | None) -> tuple[Any, ...]:
        q, k, scale, lse = ctx.saved_tensors
        need = tuple(ctx.needs_input_grad[:3])
        grad_q = torch.zeros_like(q) if need[0] else None
        grad_k = torch.zeros_like(k) if need[1] else None
        grad_s = torch.zeros((), dtype=q.dtype, device=q.device)
        for r0, r1, z, w, d in _logit_blocks(q, k, scale, ctx.weights, ctx.bs):
            dz = _rows_grad(z, w, d, ctx.each, lse[r0:r1], g[r0:r1])
            _backward_products(dz, q, k, r0, r1, need, grad_q, grad_k, grad_s)
        if grad_q is not None:
            grad_q.mul_(scale)
        if grad_k is not None:
            grad_k.mul_(scale)
        return grad_q, grad_k, (grad_s.reshape(scale.shape) if need[2] else None), None, None, None


# Function.apply is unannotated in torch
_matrix = cast(Callable[..., tuple[Tensor, Tensor]], _Matrix.apply)
_tiles = cast(Callable[..., tuple[Tensor, Tensor]], _Tiles.apply)


def nce_matrix(z: Tensor, w: Tensor, d: Tensor | None, *, each: bool = False) -> tuple[Tensor, Tensor]:
    """The family's per-row losses [Nq] on a given logit matrix ``z`` [Nq, Nk] (differentiable
    in ``z``), and the per-row counts [Nq, 2] (positive weight, negatives) without gradient."""
    return _matrix(z, w, d, each)


def nce_blocks(q: Tensor, k: Tensor, scale: float | Tensor, weights: Weights, *, each: bool = False,
               tiled: bool = False, block_size: int = 1) -> tuple[Tensor, Tensor]:
    """Per-query losses [Nq] and counts [Nq, 2] of ``z = scale · q kᵀ`` with the weights that
    ``weights(r0, r1)`` gives for query rows ``r0:r1``; ``tiled`` evaluates ``block_size``
    query rows at a time (memory linear in N), else the whole matrix at once."""
    sc = _scalar(scale, q)
    if not tiled:
        w, d = weights(0, q.shape[0])
        return _matrix((q @ k.T) * sc, w, d, each)
    return _tiles(q, k, sc, weights, each, max(1, int(block_size)))


def _scalar(scale: float | Tensor, like: Tensor) -> Tensor:
    if isinstance(scale, Tensor):
        return scale.to(dtype=like.dtype, device=like.device).reshape(())
    return torch.tensor(float(scale), dtype=like.dtype, device=like.device)


def _label_sums(yq: Tensor, yk: Tensor, k: Tensor, self_cols: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """For integer labels: ``Σ_j w_ij k_j`` [Nq, D] over the keys with the query's label (its own
    row left out), the positive count ``W_i`` [Nq] and the negative count [Nq]. Per-class sums
    (O(N·D)); under ``torch.compile`` without a data-dependent shape: each class's sum sits in
    the row of its first key (an [Nk, D] buffer), found with the [N, N] label comparison (no
    [N, N] x D product: the label matrix times the keys, forward and backward, made the
    compiled supcon ~1.5x its eager time at N = 1024)."""
    nq, nk = yq.shape[0], yk.shape[0]
    if compiling():
        same = yq[:, None] == yk[None, :]
        cnt = same.sum(1, dtype=k.dtype)
        if nq and nk:
            first_q = same.to(torch.uint8).argmax(1)  # the first key of the query's class (any key if none)
            first_k = (yk[:, None] == yk[None, :]).to(torch.uint8).argmax(1)
            sums = k.new_zeros(k.shape).index_add(0, first_k, k)[first_q]
            sums = torch.where(cnt[:, None] > 0, sums, torch.zeros_like(sums))
        else:
            sums = same.to(k.dtype) @ k
        if self_cols is not None:
            sums = sums - k[self_cols]
            cnt = cnt - 1
    else:
        _, inv = torch.unique(torch.cat([yq, yk]), return_inverse=True)
        iq, ik = inv[:nq], inv[nq:]
        n_cls = int(inv.max()) + 1 if inv.numel() else 0
        per_class = torch.bincount(ik, minlength=n_cls).to(k.dtype)
        sums = k.new_zeros((n_cls, k.shape[1])).index_add(0, ik, k)[iq]
        cnt = per_class[iq]
        if self_cols is not None:
            sums = sums - k[self_cols]
            cnt = cnt - 1
    n_neg = (nk - cnt - (0 if self_cols is None else 1)).to(k.dtype)
    return sums, cnt, n_neg


def _jaccard_sums(yq: Tensor, yk: Tensor, k: Tensor, self_cols: Tensor | None, tiled: bool,
                  block_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """For multi-hot labels: ``Σ_j J_ij k_j`` [Nq, D], ``W_i = Σ_j J_ij`` and the number of keys
    sharing no label (the negatives), in blocks of query rows when ``tiled``."""
    weights = jaccard_weights(yq, yk, self_cols)

    def rows(r0: int, r1: int, keys: Tensor) -> Tensor:
        w, _ = weights(r0, r1)
        n_neg = keys.shape[0] - torch.count_nonzero(w, dim=1) - (0 if self_cols is None else 1)
        return torch.cat([w @ keys, w.sum(1, keepdim=True), n_neg.to(keys.dtype)[:, None]], dim=1)

    out = row_blocks(rows, yq.shape[0], block_size, k) if tiled else rows(0, yq.shape[0], k)
    d = k.shape[1]
    return out[:, :d], out[:, d].detach(), out[:, d + 1].detach()


def nce(q: Tensor, k: Tensor, scale: float | Tensor, yq: Tensor | None, yk: Tensor | None, *,
        partner: Tensor | None = None, self_cols: Tensor | None = None, each: bool = False, cols: bool = False,
        tiled: bool = False, block_size: int = 1) -> tuple[Tensor, Tensor, Tensor | None]:
    """The family on labelled queries and keys: per-query losses [Nq], counts [Nq, 2] and, with
    ``cols`` (``each=False``, no ``self_cols``), the per-key losses [Nk] of the keys as queries
    (CLIP's second direction, from the same matrix).

    ``yq`` [Nq] / ``yk`` [Nk] integer labels (same label = positive), or multi-hot [Nq, C] /
    [Nk, C] floating-point 0/1 labels (Jaccard-weighted positives); or, with ``yq = yk =
    None``, one positive per query, the key ``partner[i]`` (CLIP, SimCLR: the other view;
    with ``cols``, query j is key j's partner). ``self_cols[i]`` is the key column of query i
    itself (left out everywhere).

    ``each=False`` is linear in the positive logits: ``ℓ_i = lse_i − scale · q_i·P_i / W_i``
    with ``P_i = Σ_j w_ij k_j``, so only the log-sum-exp needs the matrix
    (:func:`lossatlas.distributed.tiled.pairwise_logsumexp`, tiled with its own backward) and
    the positive sums take O(N·D) per-class sums. ``each=True`` (NT-Xent) is not linear in
    them and goes through :func:`nce_blocks`.
    """
    multi_hot = yq is not None and yq.dim() == 2
    if each:
        if yq is None or yk is None or multi_hot:
            raise ValueError("the per-positive form (each=True) takes integer labels")
        return (*nce_blocks(q, k, scale, label_weights(yq, yk, self_cols, each=True), each=True, tiled=tiled,
                            block_size=block_size), None)
    sc = scale if isinstance(scale, Tensor) else float(scale)
    lse_r, lse_c = pairwise_logsumexp(q, k, sc, exclude=None if self_cols is None else self_cols[:, None],
                                      rows=True, cols=cols, tiled=tiled, block_size=block_size)
    assert lse_r is not None
    if yq is None or yk is None:
        assert partner is not None
        sums, cnt = k[partner], q.new_ones(q.shape[0])
        n_neg = cnt * (k.shape[0] - 1 - (0 if self_cols is None else 1))
    elif multi_hot:
        sums, cnt, n_neg = _jaccard_sums(yq, yk, k, self_cols, tiled, block_size)
    else:
        sums, cnt, n_neg = _label_sums(yq, yk, k, self_cols)
    loss = _finish(lse_r, q, sums, cnt, sc)
    back = None
    if cols:
        assert lse_c is not None and not multi_hot and self_cols is None
        if yq is None or yk is None:  # key j's positive is query j
            back = _finish(lse_c, k, q, k.new_ones(k.shape[0]), sc)
        else:
            sums_c, cnt_c, _ = _label_sums(yk, yq, q, None)
            back = _finish(lse_c, k, sums_c, cnt_c, sc)
    return loss, torch.stack([cnt, n_neg], dim=1), back


def _finish(lse: Tensor, q: Tensor, sums: Tensor, cnt: Tensor, scale: float | Tensor) -> Tensor:
    """``lse_i − scale · q_i·sums_i / W_i`` where ``W_i > 0``, else 0 (with a zero gradient)."""
    has = cnt > 0
    lse = torch.where(has, lse, 0.0)  # an anchor alone in the batch: -inf, unused
    pos = (q * sums).sum(1) / torch.where(has, cnt, 1.0)
    return torch.where(has, lse - scale * pos, 0.0)


def label_weights(yq: Tensor, yk: Tensor, self_cols: Tensor | None, *, each: bool = False) -> Weights:
    """Weights of integer labels: a key with the query's label is a positive (the query's own
    column ``self_cols[i]`` never is, nor is it in any denominator); the denominator is every
    other key (``each=False``) or the keys with another label (``each=True``, the negatives)."""

    def weights(r0: int, r1: int) -> tuple[Tensor, Tensor | None]:
        same = yq[r0:r1, None] == yk[None, :]
        if each:
            neg = ~same
            if self_cols is not None:
                same.scatter_(1, self_cols[r0:r1, None], False)
            return same, neg
        if self_cols is None:
            return same, None
        own = self_cols[r0:r1, None]
        return same.scatter_(1, own, False), own

    return weights


def jaccard_weights(yq: Tensor, yk: Tensor, self_cols: Tensor | None) -> Weights:
    """Weights of multi-hot labels ``yq`` [Nq, C], ``yk`` [Nk, C] (0/1, floating point): the
    Jaccard index ``|y_i ∧ y_j| / |y_i ∨ y_j|`` of the two label sets is the positive weight
    (0 for two empty sets); the denominator is every key but the query's own."""
    nq_lab, nk_lab = yq.sum(1), yk.sum(1)

    def weights(r0: int, r1: int) -> tuple[Tensor, Tensor | None]:
        inter = yq[r0:r1] @ yk.T
        union = nq_lab[r0:r1, None] + nk_lab[None, :] - inter
        jac = torch.where(union > 0, inter / torch.where(union > 0, union, 1.0), 0.0)
        if self_cols is None:
            return jac, None
        own = self_cols[r0:r1, None]
        return jac.scatter_(1, own, 0.0), own

    return weights
