r"""Fused forward/backward kernels for the hot classification losses (internal).

Eager PyTorch runs a loss such as LDAM as a chain of small operations (scale, gather the
margin, scatter it into the target column, log-softmax, gather, mean), each recorded by
autograd and each replayed backwards. The functions here compute the same values and
gradients with the fewest passes over the ``[N, C]`` logits:

* :func:`affine_cross_entropy` — cross-entropy of an affine transform of the logits with a
  per-class shift of the target logit,

  .. math:: u_{ij} = a_j z_{ij} + b_j - d_{y_i}\,[j = y_i],\qquad
            \ell_i = \operatorname{logsumexp}_j u_{ij} - u_{i y_i},

  which is logit adjustment / balanced softmax (``b``), VS (``a = 1/Δ``, ``b = ι``) and
  LDAM (``a = s``, ``d = s·m``; callers pass ``shift = −d``). Forward is one affine pass,
  a scatter of N values, one log-softmax and ATen's ``nll_loss``; backward is ATen's
  ``nll_loss`` and log-softmax backward kernels with the scale folded into the incoming
  gradient (no extra pass for a scalar ``a``; with only a bias or a per-class divisor the
  composed ops make the same passes, so the automatic choice uses them). No one-hot matrix.
* :func:`softmax_focal_ignore` — the common focal case (no class weights) with
  ``ignore_index`` handled inside ATen's cross-entropy: no mask, no safe-target copy.
* :func:`softmax_focal` — the softmax focal loss with a hand-derived backward: the whole
  per-sample chain ``(1 − p_t)^γ · (−log p_t)`` collapses into one coefficient per row,
  so backward is a single log-softmax-backward pass.

Both pick the fused ``torch.autograd.Function`` when the logits need a gradient, the
tensor is large enough for passes (not Python overhead) to dominate, and ``torch.compile``
is not tracing; otherwise they use the equivalent composition of differentiable torch ops,
which ``torch.compile`` fuses itself without graph breaks. Neither path reads a tensor value
on the host, so CUDA never synchronises.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import compiling

__all__ = ["affine_cross_entropy", "affine_logits", "softmax_focal", "softmax_focal_ignore", "use_fused", "cast_constant", "as_dtype", "FUSE_MIN_NUMEL"]

#: Logit tensors with fewer elements than this use the composed path: below it the cost of
#: a Python ``autograd.Function`` exceeds the passes it saves (measured: N=1024 × C=100 is
#: faster composed, N=1024 × C=1000 fused).
FUSE_MIN_NUMEL = 262144

_REDUCTION_ENUM = {"none": 0, "mean": 1, "sum": 2}


def as_dtype(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``x.to(dtype)``, skipping the call (a dispatcher round trip) when it is already there."""
    return x if x.dtype == dtype else x.to(dtype)


_CAST_CACHE: dict[tuple, tuple[weakref.ref, tuple[int, int], Tensor]] = {}
_CAST_CACHE_SIZE = 64


def cast_constant(t: Tensor, like: Tensor, scale: float | None = None, column: bool = False) -> Tensor:
    """``t`` (a per-class constant, e.g. a float64 buffer) on ``like``'s device and dtype, times ``scale``.

    Modules keep their prior-derived constants in float64; converting (and scaling) them on
    every call is one or two extra kernels, which at small C cost as much as the loss. The
    result is cached per (tensor, version, dtype, device, scale), so an in-place update of
    the buffer (``load_state_dict``, ``copy_``) is seen. Tensors that need a gradient and
    calls under ``torch.compile`` are never cached. ``column=True`` returns it as [C, 1].
    """
    if t.requires_grad or compiling():
        out = t.to(device=like.device, dtype=like.dtype)
        out = out if scale is None else out * scale
        return out.unsqueeze(1) if column else out
    key = (id(t), like.dtype, like.device, scale, column)
    hit = _CAST_CACHE.get(key)
    version = (t._version, t.data_ptr())  # in-place updates bump the version; `.data =` swaps the pointer
    if hit is not None and hit[0]() is t and hit[1] == version:
        return hit[2]
    out = t.detach().to(device=like.device, dtype=like.dtype, copy=True)
    if scale is not None:
        out.mul_(scale)
    if column:
        out = out.unsqueeze(1)
    if len(_CAST_CACHE) >= _CAST_CACHE_SIZE:
        _CAST_CACHE.pop(next(iter(_CAST_CACHE)))
    _CAST_CACHE[key] = (weakref.ref(t), version, out)
    return out


def use_fused(z: Tensor, fused: bool | None = None) -> bool:
    """Whether the fused autograd functions should run for logits ``z`` (``fused`` forces it)."""
    if fused is not None:
        return fused and not compiling()
    return z.requires_grad and z.numel() >= FUSE_MIN_NUMEL and torch.is_grad_enabled() and not compiling()


def _safe_target(target: Tensor, ignore_index: int) -> Tensor:
    # Index usable by gather/scatter; ignored rows point at class 0 (their loss is dropped).
    if ignore_index < 0:
        return target.clamp_min(0)
    return torch.where(target == ignore_index, 0, target)


def affine_logits(z: Tensor, scale: Tensor | float | None, bias: Tensor | None, divisor: Tensor | None) -> Tensor:
    """``z / divisor + bias`` or ``scale · z + bias`` (each part optional), in one kernel where torch has one."""
    if divisor is not None:
        return torch.addcdiv(bias, z, divisor) if bias is not None else z / divisor
    if isinstance(scale, Tensor):
        return torch.addcmul(bias, z, scale) if bias is not None else z * scale
    if scale is not None and scale != 1.0:
        return torch.add(bias, z, alpha=scale) if bias is not None else z * scale
    return z + bias if bias is not None else z


class _AffineCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, target, idx, add, scale, bias, divisor, weight, reduction, ignore_index):  # type: ignore[override]
        u = affine_logits(z, scale, bias, divisor)
        if u is z:
            u = z.clone()
        if add is not None:
            u.scatter_add_(1, idx, add)
        logp = torch.log_softmax(u, 1)
        del u
        red = _REDUCTION_ENUM[reduction]
        out, total_weight = torch.ops.aten.nll_loss_forward(logp, target, weight, red, ignore_index)
        ctx.save_for_backward(logp, target, weight, total_weight, divisor, scale if isinstance(scale, Tensor) else None)
        ctx.scalar_scale = scale if not isinstance(scale, Tensor) else None
        ctx.red = red
        ctx.ignore_index = ignore_index
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        logp, target, weight, total_weight, divisor, vscale = ctx.saved_tensors
        if ctx.scalar_scale is not None and ctx.scalar_scale != 1.0:
            grad = grad * ctx.scalar_scale  # linear: fold the scale into the incoming gradient
        glogp = torch.ops.aten.nll_loss_backward(grad, logp, target, weight, ctx.red, ctx.ignore_index, total_weight)
        gz = torch.ops.aten._log_softmax_backward_data(glogp, logp, 1, logp.dtype)
        if divisor is not None:
            gz.div_(divisor)
        elif vscale is not None:
            gz.mul_(vscale)
        return gz, None, None, None, None, None, None, None, None, None


def affine_cross_entropy(
    z: Tensor,
    target: Tensor,
    *,
    scale: Tensor | float | None = None,
    bias: Tensor | None = None,
    divisor: Tensor | None = None,
    shift: Tensor | None = None,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    fused: bool | None = None,
) -> Tensor:
    """``F.cross_entropy(u, target, weight, ignore_index, reduction)`` with ``u`` as above.

    ``z`` [N, C] is already in the compute dtype; ``scale`` is a float or a [C] tensor,
    ``divisor`` [C] (``u = z / divisor + bias``, exclusive with ``scale``), ``bias`` [C] and
    ``shift`` [C] or [C, 1] (*added* at each row's target, so it is ``−d``: LDAM passes ``−s·m``)
    are tensors on ``z``'s device and dtype.
    Torch semantics throughout, except that a ``"mean"`` over an empty batch is 0.
    ``fused`` forces (True) or forbids (False) the fused autograd function; ``None`` chooses.
    """
    if reduction == "mean" and z.shape[0] == 0:
        return z.sum() * 0.0
    idx = add = None
    if shift is not None:
        safe = _safe_target(target, ignore_index)
        idx = safe.unsqueeze(1)
        col = shift if shift.dim() == 2 else shift.unsqueeze(1)  # [C, 1]
        add = col.index_select(0, safe)  # [N, 1]: the shift of each row's target
    # Automatic choice: only a scalar scale (LDAM) saves a pass (it folds into the incoming
    # gradient); a bias or a per-class divisor costs the same passes either way, so the
    # composed path (no Python autograd.Function overhead) is used for them.
    if use_fused(z, fused) and (fused or (scale is not None and not isinstance(scale, Tensor) and scale != 1.0)):
        return _AffineCE.apply(z, target, idx, add, scale, bias, divisor, weight, reduction, ignore_index)
    u = affine_logits(z, scale, bias, divisor)
    if shift is not None:
        u = u.scatter_add(1, idx, add) if u is z else u.scatter_add_(1, idx, add)
    return F.cross_entropy(u, target, weight=weight, ignore_index=ignore_index, reduction=reduction)


def _focal_terms(lpt: Tensor, gamma: float) -> tuple[Tensor, Tensor]:
    """Per-row focal loss ``(1 − p)^γ (−log p)`` and its derivative w.r.t. ``log p``."""
    ce = -lpt
    if gamma == 0.0:
        return ce, torch.full_like(lpt, -1.0)
    q = -torch.expm1(lpt)  # 1 − p_t, accurate when p_t is close to 1
    tiny = torch.finfo(lpt.dtype).tiny
    qc = q.clamp_min(tiny) if gamma < 1.0 else q
    if gamma == 1.0:
        q_g, q_gm1 = qc, torch.ones_like(qc)
    elif gamma == 2.0:
        q_g, q_gm1 = qc * qc, qc
    else:
        q_gm1 = qc.pow(gamma - 1.0)
        q_g = q_gm1 * qc
    loss = q_g * ce
    # d/dlpt [q^γ · (−lpt)] = −q^γ + γ q^{γ−1} · (−dq/dlpt = p) · lpt ... with dq/dlpt = −p
    dq = q_gm1 * (gamma * (1.0 - q))  # γ q^{γ−1} p
    if gamma < 1.0:
        dq = dq * (q >= tiny)  # the clamp passes no gradient below `tiny`
    coef = dq * lpt - q_g
    return loss, coef


class _Focal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, idx, gamma, row_scale, sample_w, reduction):  # type: ignore[override]
        logp = torch.log_softmax(z, 1)
        lpt = logp.gather(1, idx).squeeze(1)
        loss, coef = _focal_terms(lpt, gamma)
        if row_scale is not None:
            loss = loss * row_scale
            coef = coef * row_scale
        if sample_w is not None:
            loss = loss * sample_w
            coef = coef * sample_w
        n = loss.shape[0]
        if reduction == "none":
            out = loss
        elif reduction == "sum":
            out = loss.sum()
        elif sample_w is not None:
            denom = sample_w.sum().clamp_min(torch.finfo(loss.dtype).tiny)
            out = loss.sum() / denom
            coef = coef / denom
        else:
            out = loss.mean() if n else loss.sum()
            if n:
                coef = coef / n
        ctx.save_for_backward(logp, idx, coef)
        ctx.reduction = reduction
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        logp, idx, coef = ctx.saved_tensors
        g = coef * grad  # [N] (grad is [N] for "none", a scalar otherwise)
        # onehot(y)·g as the gradient w.r.t. log p, through ATen's nll_loss backward
        # (it writes −grad_output at the target column, so pass −g).
        glogp = torch.ops.aten.nll_loss_backward(-g, logp, idx.squeeze(1), None, 0, -100, g.new_ones(()))
        return torch.ops.aten._log_softmax_backward_data(glogp, logp, 1, logp.dtype), None, None, None, None, None


def _focal_from_ce(ce: Tensor, gamma: float) -> Tensor:
    """``(1 − p_t)^γ · ce`` from per-row ``ce = −log p_t`` (differentiable torch ops)."""
    if gamma == 2.0:
        e = torch.expm1(-ce)  # −(1 − p_t); squared, the sign goes
        return e * e * ce
    if gamma == 0.0:
        return ce
    q = -torch.expm1(-ce)  # 1 − p_t, accurate when p_t is close to 1
    if gamma < 1.0:
        q = q.clamp_min(torch.finfo(ce.dtype).tiny)
    return q.pow(gamma) * ce


def softmax_focal_ignore(
    z: Tensor,
    target: Tensor,
    gamma: float,
    *,
    row_scale: float | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Softmax focal loss on the raw ``target``, ignored rows handled inside ATen's cross-entropy.

    Same values and gradients as :func:`softmax_focal` with ``sample_weights`` = the
    not-ignored mask, in fewer kernels: the cross-entropy of an ignored row is 0, so its focal
    loss is 0, and ``"mean"`` divides by the number of rows that are not ignored (0 if none).
    """
    losses = _focal_from_ce(F.cross_entropy(z, target, ignore_index=ignore_index, reduction="none"), gamma)
    if row_scale is not None and row_scale != 1.0:
        losses = losses * row_scale
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / (target != ignore_index).sum().clamp_min(1)


def softmax_focal(
    z: Tensor,
    target: Tensor,
    gamma: float,
    *,
    row_scale: Tensor | float | None = None,
    sample_weights: Tensor | None = None,
    reduction: str = "mean",
    fused: bool | None = None,
) -> Tensor:
    """Softmax focal loss ``row_scale_i · w_i · (1 − p_t)^γ (−log p_t)`` reduced like ``reduce_loss``.

    ``target`` must be safe for indexing (ignored rows replaced and zeroed by
    ``sample_weights``); ``row_scale`` is α (a float or an [N] tensor of α_{y_i}).
    """
    idx = target.unsqueeze(1)
    if isinstance(row_scale, (int, float)):
        row_scale = float(row_scale)
        if row_scale == 1.0:
            row_scale = None
    if use_fused(z, fused):
        return _Focal.apply(z, idx, gamma, row_scale, sample_weights, reduction)
    # −log p_t through ATen's fused cross-entropy (one node forward, two backward).
    losses = _focal_from_ce(F.cross_entropy(z, target, reduction="none"), gamma)
    if row_scale is not None:
        losses = losses * row_scale
    if sample_weights is not None:
        losses = losses * sample_weights
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    if sample_weights is not None:
        return losses.sum() / sample_weights.sum().clamp_min(torch.finfo(losses.dtype).tiny)
    return losses.mean() if losses.numel() else losses.sum()
