r"""The cross-entropy family's hot path: one kernel for CE, LA, BS, VS, LDAM and focal (internal).

All six are a cross-entropy (or its focal reweighting) of an affine transform of the logits
with a per-class shift of the target logit,

.. math:: u_{ij} = a_j z_{ij} + b_j - d_{y_i}\,[j = y_i],\qquad
          \ell_i = \operatorname{logsumexp}_j u_{ij} - u_{i y_i},\qquad
          \ell^{\text{focal}}_i = (1 - e^{-\ell_i})^\gamma\,\ell_i,

which is logit adjustment / balanced softmax (``b``), VS (``a = 1/Δ``, ``b = ι``) and LDAM
(``a = s``, ``d = s·m``; callers pass ``shift = −d``). Three implementations, same values and
gradients (tests/test_fused.py compares the first two with the one-hot formula in float64,
tests/test_native.py the third with the first):

* composed torch ops (small inputs, CUDA, ``torch.compile``): the affine in one kernel
  (``addcdiv`` / ``addcmul`` / ``add``), a scatter of N values for the shift, then ATen's
  ``cross_entropy``; ``torch.compile`` traces it without graph breaks, and nothing reads a
  tensor value on the host, so CUDA never synchronises;
* :class:`_SoftmaxCE`, a ``torch.autograd.Function`` for large CPU inputs that need a
  gradient: ONE softmax in the forward (``ℓ_i = −log p_{i,y_i}``, exact fallback for
  underflowing rows), and a backward ``c_i (p_i − e_{y_i})`` with one coefficient per row,
  where ``F.cross_entropy`` computes the exponentials a second time in its backward. On a
  2-core CPU at N=1024, C=1000 this is ~0.5-0.9× the time of ``F.cross_entropy`` on the
  same logits (benchmarks/results/perf_cpu.md);
* :class:`_NativeCE`, the compiled kernel of :mod:`lossatlas._native` (one call forward, one
  backward) for smaller CPU inputs that need a gradient, where the fixed cost of each ATen
  call and autograd node is most of the time; it is skipped when no C++ compiler is found
  or ``LOSSATLAS_NATIVE=0``.

No one-hot matrix on any path.

:func:`softmax_focal_ignore` is the common focal case (no class weights), with
``ignore_index`` handled inside ATen's cross-entropy on the composed path.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _native
from .._validation import compiling

__all__ = ["affine_cross_entropy", "native_cross_entropy", "use_native", "affine_logits", "softmax_focal", "softmax_focal_ignore", "use_fused", "wants_autograd_function", "cast_constant", "as_dtype", "FUSE_MIN_NUMEL"]

#: Logit tensors with fewer elements than this use the composed path: below it the cost of
#: a Python ``autograd.Function`` exceeds the passes it saves. Measured at N=1024 on CPU:
#: LA / VS / LDAM / focal are faster fused from C≈128 (their composed form allocates an
#: adjusted copy of the logits or runs per-row terms); plain cross-entropy, which has
#: nothing to fuse but the backward's exponentials, from twice that (C≈256).
FUSE_MIN_NUMEL = 131072


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


def wants_autograd_function(z: Tensor, min_numel: int) -> bool:
    """A hand-written ``autograd.Function`` pays off for ``z``: it needs a gradient, has at least
    ``min_numel`` elements, and ``torch.compile`` is not tracing (it fuses the composed ops itself)."""
    return z.requires_grad and z.numel() >= max(min_numel, 1) and torch.is_grad_enabled() and not compiling()


def use_fused(z: Tensor, fused: bool | None = None, plain: bool = False) -> bool:
    """Whether the fused kernel should run for logits ``z`` (``fused`` forces it):
    CPU tensors that need a gradient, from ``FUSE_MIN_NUMEL`` elements (twice that for a
    ``plain`` cross-entropy), never while ``torch.compile`` traces."""
    if fused is not None:
        return fused and z.numel() > 0 and not compiling()
    return z.device.type == "cpu" and wants_autograd_function(z, FUSE_MIN_NUMEL * (2 if plain else 1))


def use_native(z: Tensor, target: Tensor, fused: bool | None = None) -> bool:
    """Whether the native kernel (:mod:`lossatlas._native`) should run: ``fused`` is ``None``
    (not forced either way), ``z`` is a contiguous float32/float64 CPU matrix that needs a
    gradient with fewer than ``FUSE_MIN_NUMEL`` elements (above it :class:`_SoftmaxCE`'s
    multi-threaded softmax takes over), ``target`` is contiguous int64 [N], nothing is being
    traced or transformed by ``torch.func``, and the library loaded."""
    return (
        fused is None
        and z.device.type == "cpu"
        and z.dtype in _NATIVE_DTYPES
        and z.dim() == 2
        and 0 < z.numel() < FUSE_MIN_NUMEL
        and target.dtype == torch.int64
        and target.dim() == 1
        and z.is_contiguous()
        and target.is_contiguous()
        and wants_autograd_function(z, 1)
        and not torch._C._are_functorch_transforms_active()  # torch.func wrappers have no memory to point at
        and _native.library() is not None
    )


_NATIVE_DTYPES = (torch.float32, torch.float64)


def _address(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class _NativeCE(torch.autograd.Function):
    """CE / LA / BS / VS / LDAM / focal of ``u = affine(z) + shift·e_y`` in one native call
    forward and one backward (``softmax_ce.cpp``; the formulas are in its header).

    Arguments: per-class ``a`` (multiplier, or divisor with ``divide``), scalar ``s``,
    per-class ``b`` (bias), ``d`` (target shift), ``w`` (class weights), focal ``gamma``,
    scalar ``alpha``, ``ignore_index``, ``mean_mode`` (0 sum, 1 Σℓ/Σw, 2 Σℓ/max(kept, 1)) and
    ``none`` (per-row losses). Saves the softmax [N, C] like ``F.cross_entropy`` saves its
    log-softmax. ``again`` is the same loss in torch ops: a backward that must itself be
    differentiable (``create_graph=True``, e.g. MAML or a gradient penalty) differentiates it
    instead, so second derivatives are those of the torch path.
    """

    @staticmethod
    def forward(ctx, z, target, a, divide, s, b, d, w, gamma, alpha, ignore_index, mean_mode, none, again):  # type: ignore[override]
        lib = _native.library()
        n, c = z.shape
        p = torch.empty_like(z)  # exp(u − row max); the softmax is p / Σ_j p (1 / Σ kept per row)
        buf = z.new_empty(3 * n + 2 if none else 2 * n + 2)  # [loss, divisor, coef (n), 1 / Σ (n), rows (n)]
        base, size = buf.data_ptr(), buf.element_size()
        kernel = lib.la_forward_f32 if z.dtype == torch.float32 else lib.la_forward_f64
        bad = kernel(z.data_ptr(), target.data_ptr(), n, c, _address(a), divide, s, _address(b), _address(d), _address(w),
                     gamma, alpha, ignore_index, mean_mode, p.data_ptr(), base + 2 * size,
                     base + (2 * n + 2) * size if none else None, base)
        if bad:
            raise IndexError(f"Target {int(target[bad - 1])} is out of bounds.")
        ctx.save_for_backward(p, target, buf, a, z)
        ctx.divide, ctx.s, ctx.again = divide, s, again
        return buf[2 * n + 2:] if none else buf[0]

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        p, target, buf, a, z = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the torch formula's differentiable gradient
            with torch.enable_grad():
                (gz,) = torch.autograd.grad(ctx.again(z), z, grad, create_graph=True)
            return (gz,) + (None,) * 13
        n, c = p.shape
        grad = grad.contiguous()
        gz = torch.empty_like(p)
        base, size = buf.data_ptr(), buf.element_size()
        lib = _native.library()
        kernel = lib.la_backward_f32 if p.dtype == torch.float32 else lib.la_backward_f64
        kernel(p.data_ptr(), target.data_ptr(), n, c, _address(a), ctx.divide, ctx.s, base + 2 * size, grad.data_ptr(),
               0 if grad.dim() == 0 else 1, base + size, gz.data_ptr())
        return (gz,) + (None,) * 13


def native_cross_entropy(
    z: Tensor,
    target: Tensor,
    *,
    scale: Tensor | float | None = None,
    bias: Tensor | None = None,
    divisor: Tensor | None = None,
    shift: Tensor | None = None,
    weight: Tensor | None = None,
    gamma: float = 0.0,
    alpha: float | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    focal: bool = False,
) -> Tensor:
    """:class:`_NativeCE` with :func:`affine_cross_entropy`'s arguments (call when
    :func:`use_native` says so). ``focal=True`` is :func:`softmax_focal_ignore` (``gamma``,
    ``alpha``), whose ``"mean"`` divides by the number of kept rows (at least 1); otherwise
    the ``"mean"`` is torch's ``Σ w ℓ / Σ w`` (NaN when every row is ignored)."""
    a = divisor if divisor is not None else (scale if isinstance(scale, Tensor) else None)
    s = float(scale) if isinstance(scale, (int, float)) else 1.0
    mean_mode = 0 if reduction != "mean" else (2 if focal else 1)
    if focal:
        def again(u: Tensor) -> Tensor:
            return softmax_focal_ignore(u, target, gamma, row_scale=alpha, ignore_index=ignore_index, reduction=reduction,
                                        fused=False)
    else:
        def again(u: Tensor) -> Tensor:
            return affine_cross_entropy(u, target, scale=scale, bias=bias, divisor=divisor, shift=shift, weight=weight,
                                        ignore_index=ignore_index, reduction=reduction, fused=False)
    return _NativeCE.apply(z, target, _contiguous(a), int(divisor is not None), s, _contiguous(bias), _contiguous(shift),
                           _contiguous(weight), float(gamma), 1.0 if alpha is None else float(alpha), int(ignore_index),
                           mean_mode, reduction == "none", again)


def _contiguous(t: Tensor | None) -> Tensor | None:
    return t if t is None or t.is_contiguous() else t.contiguous()


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


def _rows(target: Tensor, ignore_index: int, weight: Tensor | None, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
    """``(safe_target, row_weight)``: ignored rows point at class 0 and weigh 0; others weigh
    ``weight[y_i]``. Without class weights and with no ignored row the weight is ``None``
    (every row 1), which the kernel's plain mean is faster for; finding that out reads one
    value on the host (the kernel is for CPU tensors)."""
    valid = target != ignore_index
    if weight is None and bool(valid.all()):
        return target, None
    safe = target * valid
    row_w = valid.to(dtype)
    if weight is not None:
        row_w = row_w * weight.index_select(0, safe)
    return safe, row_w


def _adjusted_logits(z: Tensor, idx: Tensor, add: Tensor | None, scale: Tensor | float | None,
                     bias: Tensor | None, divisor: Tensor | None) -> Tensor:
    """``u = affine(z) + shift·e_y`` (``z`` itself when there is nothing to do; never modified)."""
    u = affine_logits(z, scale, bias, divisor)
    if add is None:
        return u
    return (u.clone() if u is z else u).scatter_add_(1, idx, add)


def _softmax_and_nll(u: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """``(p, ℓ)``: ``p = softmax(u)`` (ATen's softmax kernel: one vectorised exponential pass)
    and ``ℓ_i = −log p_{i,y_i}`` from N logarithms instead of a log-softmax pass.

    Where a target probability is so small that its logarithm would lose digits (below the
    dtype's smallest normal times 2^24) the exact ``lse_i − u_{iy} = max_j u_{ij} −
    log max_j p_{ij} − u_{iy}`` is used instead (``max_j p_{ij} ≥ 1/C`` never underflows):
    two max passes, paid only when such a row exists. Deciding that reads one value on the
    host, so this is for CPU tensors.
    """
    p = torch.softmax(u, 1)
    pt = p.gather(1, idx).squeeze_(1)
    ce = pt.log().neg_()
    low = pt < torch.finfo(p.dtype).tiny * 2.0**24
    if bool(low.any()):
        exact = u.amax(1).sub_(u.gather(1, idx).squeeze_(1)).sub_(p.amax(1).log_())
        ce = torch.where(low, exact, ce)
    return p, ce


class _SoftmaxCE(torch.autograd.Function):
    """Cross-entropy (``gamma = 0``) or focal loss of ``u = affine(z) + shift·e_y`` from ONE softmax.

    Forward: ``p = softmax(u)`` and ``ℓ_i = −log p_{i,y_i}`` (:func:`_softmax_and_nll`);
    nothing else of size N×C. Backward: ``∂L/∂u_i = c_i (p_i − e_{y_i})`` with one
    coefficient ``c_i`` per row (the row weight, the reduction's divisor, focal's
    ``−∂ℓ/∂log p_t`` and a scalar scale folded in), i.e. one multiply and an N-element
    scatter; ``F.cross_entropy`` computes the exponentials again in its backward.
    """

    @staticmethod
    def forward(ctx, z, idx, add, scale, bias, divisor, row_w, row_scale, gamma, reduction):  # type: ignore[override]
        p, ce = _softmax_and_nll(_adjusted_logits(z, idx, add, scale, bias, divisor), idx)
        if gamma == 0.0:
            loss, c = ce, row_w  # c = None means 1 per row
        else:
            loss, c = _focal_terms(ce.neg(), gamma)
            c = c.neg_() if row_w is None else c.neg_().mul_(row_w)
        if row_w is not None:
            loss = loss * row_w
        if isinstance(row_scale, Tensor):  # per-row α: in the loss and the gradient, not the divisor
            loss = loss * row_scale
            c = row_scale if c is None else c * row_scale
            row_scale = None
        factor = 1.0 if row_scale is None else row_scale
        if reduction == "mean":
            if row_w is not None:
                denom = row_w.sum().clamp_min(torch.finfo(loss.dtype).tiny)
                out = loss.sum() / denom
                c = c / denom
            else:
                out = loss.mean()
                factor /= loss.shape[0]
        else:
            out = loss.sum() if reduction == "sum" else loss
        if row_scale is not None:
            out = out * row_scale
        if isinstance(scale, (int, float)):
            factor *= scale  # linear: a scalar scale folds into the row coefficients
        # ∂L/∂u_i = g·c_i·(p_i − e_{y_i}): the row coefficient −c_i (factor folded in) precomputed
        neg_c = torch.full_like(ce, -factor) if c is None else c * -factor
        vec = divisor if divisor is not None else (scale if isinstance(scale, Tensor) else None)
        ctx.save_for_backward(p, neg_c, idx, vec)
        ctx.divide = divisor is not None
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        p, neg_c, idx, vec = ctx.saved_tensors
        cg = (neg_c * grad).unsqueeze_(1)  # grad: a scalar, or [N] for "none"
        gz = p * cg.neg()
        gz.scatter_add_(1, idx, cg)
        if vec is not None:
            gz = gz.div_(vec) if ctx.divide else gz.mul_(vec)
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
    if use_native(z, target, fused):
        return native_cross_entropy(z, target, scale=scale, bias=bias, divisor=divisor, shift=shift, weight=weight,
                                    ignore_index=ignore_index, reduction=reduction)
    col = None if shift is None else (shift if shift.dim() == 2 else shift.unsqueeze(1))  # [C, 1]
    plain = scale is None and bias is None and divisor is None and col is None
    if use_fused(z, fused, plain):
        safe, row_w = _rows(target, ignore_index, weight, z.dtype)
        idx = safe.unsqueeze(1)
        add = None if col is None else col.index_select(0, safe)  # [N, 1]: each row's target shift
        return _SoftmaxCE.apply(z, idx, add, scale, bias, divisor, row_w, None, 0.0, reduction)
    u = affine_logits(z, scale, bias, divisor)
    if col is not None:
        safe = _safe_target(target, ignore_index)
        idx = safe.unsqueeze(1)
        add = col.index_select(0, safe)
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


def _focal_from_ce(ce: Tensor, gamma: float, total: bool = False) -> Tensor:
    """``(1 − p_t)^γ · ce`` from per-row ``ce = −log p_t`` (differentiable torch ops);
    ``total=True`` returns its sum as one dot product (one autograd node fewer)."""
    if gamma == 0.0:
        return ce.sum() if total else ce
    if gamma == 2.0:
        e = torch.expm1(-ce)  # −(1 − p_t); squared, the sign goes
        return torch.dot(e * ce, e) if total else e * e * ce
    q = -torch.expm1(-ce)  # 1 − p_t, accurate when p_t is close to 1
    if gamma < 1.0:
        q = q.clamp_min(torch.finfo(ce.dtype).tiny)
    return torch.dot(q.pow(gamma), ce) if total else q.pow(gamma) * ce


def softmax_focal_ignore(
    z: Tensor,
    target: Tensor,
    gamma: float,
    *,
    row_scale: float | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    fused: bool | None = None,
) -> Tensor:
    """Softmax focal loss on the raw ``target``, ignored rows handled inside ATen's cross-entropy.

    Same values and gradients as :func:`softmax_focal` with ``sample_weights`` = the
    not-ignored mask, in fewer kernels: the cross-entropy of an ignored row is 0, so its focal
    loss is 0, and ``"mean"`` divides by the number of rows that are not ignored (0 if none).
    Large inputs that need a gradient go through the fused kernel.
    """
    if row_scale == 1.0:
        row_scale = None
    if use_native(z, target, fused):
        return native_cross_entropy(z, target, gamma=gamma, alpha=row_scale, ignore_index=ignore_index,
                                    reduction=reduction, focal=True)
    if use_fused(z, fused):
        safe, row_w = _rows(target, ignore_index, None, z.dtype)
        return _SoftmaxCE.apply(z, safe.unsqueeze(1), None, None, None, None, row_w, row_scale, gamma, reduction)
    ce = F.cross_entropy(z, target, ignore_index=ignore_index, reduction="none")
    out = _focal_from_ce(ce, gamma, total=reduction != "none")
    if row_scale is not None:
        out = out * row_scale
    if reduction == "mean":
        out = out / (target != ignore_index).sum().clamp_min(1)
    return out


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
        return _SoftmaxCE.apply(z, idx, None, None, None, None, sample_weights, row_scale, gamma, reduction)
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
