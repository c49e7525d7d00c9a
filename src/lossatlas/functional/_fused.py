r"""The cross-entropy family's kernel: one function for CE, LA, BS, VS, LDAM and focal (internal).

All six are a cross-entropy (or its focal reweighting) of an affine transform of the logits
with a per-class shift of the target logit,

.. math:: u_{ij} = a_j z_{ij} + b_j - d_{y_i}\,[j = y_i],\qquad
          \ell_i = \operatorname{logsumexp}_j u_{ij} - u_{i y_i},\qquad
          \ell^{\text{focal}}_i = \alpha_{y_i} (1 - e^{-\ell_i})^\gamma\,\ell_i,

which is logit adjustment / balanced softmax (``b``), VS (``a = 1/Δ``, ``b = ι``) and LDAM
(``a = s``, ``d = s·m``; callers pass ``shift = −d``). :func:`softmax_cross_entropy` computes
it on one of two paths (:mod:`lossatlas._paths`), both pure PyTorch, same values and
gradients:

* ``"plain"`` (small inputs, CUDA, ``torch.compile``): the affine in one kernel (``addcdiv`` /
  ``addcmul`` / ``add``), a scatter of N values for the shift, then ATen's ``cross_entropy``;
  ``torch.compile`` traces it without graph breaks, and nothing reads a tensor value on the
  host, so CUDA never synchronises;
* ``"fused"`` (:class:`_SoftmaxCE`, large CPU inputs that need a gradient): ONE softmax in the
  forward (``ℓ_i = −log p_{i,y_i}``, exact fallback for underflowing rows) and a backward
  ``c_i (p_i − e_{y_i})`` with one coefficient per row, where ``F.cross_entropy`` computes the
  exponentials a second time in its backward.

Reduction (both paths): ``"mean"`` is the weighted mean ``Σ w_{y_i} α_{y_i} ℓ_i / Σ w_{y_i}``
over the rows that are not ignored (``w = 1`` without class weights), and 0 with a zero
gradient when no row is left (empty or all-ignored batch). No one-hot matrix on any path.
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from .._paths import backward_keeps_graph, compiling, take_fused
from .._spec import mean_divisor
from ._common import blank_rows, none_ignored

__all__ = ["softmax_cross_entropy", "pointwise_loss", "log_prob_target", "fused_or_traced", "affine_logits", "cast_constant", "derived", "as_dtype", "FUSE_MIN_NUMEL"]

#: Logit tensors with fewer elements than this take the plain path: below it the cost of a
#: Python ``autograd.Function`` exceeds the passes it saves. Measured at N=1024 on CPU:
#: LA / VS / LDAM / focal are faster fused from C≈128 (their plain form allocates an
#: adjusted copy of the logits or runs per-row terms); plain cross-entropy, which has
#: nothing to fuse but the backward's exponentials, from twice that (C≈256).
FUSE_MIN_NUMEL = 131072
_SUM = 2  # ATen's reduction enum: 0 none, 1 mean, 2 sum


def as_dtype(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``x.to(dtype)``, skipping the call (a dispatcher round trip) when it is already there."""
    return x if x.dtype == dtype else x.to(dtype)


_CACHE: dict[tuple[Any, ...], tuple[weakref.ref[Tensor], tuple[int, int], Tensor]] = {}
_CACHE_SIZE = 64


def _uncacheable(t: Tensor) -> bool:
    return t.requires_grad or compiling() or bool(torch._C._are_functorch_transforms_active())


def _cached(t: Tensor, key: tuple[Any, ...], make: Callable[[], Tensor]) -> Tensor:
    """``make()``, remembered in memory per (``t``, its version, ``key``) while ``t`` lives: an
    in-place update of ``t`` (``load_state_dict``, ``copy_``) or ``.data =`` is seen."""
    full = (id(t),) + key
    hit = _CACHE.get(full)
    version = (t._version, t.data_ptr())
    if hit is not None and hit[0]() is t and hit[1] == version:
        return hit[2]
    out = make()
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[full] = (weakref.ref(t), version, out)
    return out


@torch.library.custom_op("lossatlas::materialize", mutates_args=())
def _materialize(x: Tensor) -> Tensor:
    """A copy of ``x`` that inductor cannot fuse into its consumers (a custom operator is opaque to it)."""
    return x.clone()


@_materialize.register_fake
def _(x: Tensor) -> Tensor:
    return torch.empty_like(x)


def materialized(x: Tensor) -> Tensor:
    """``x``, kept as a buffer under ``torch.compile``: a per-class constant derived from the class
    counts (``(max n / n_j)^γ``, ``τ log π_j``) is otherwise recomputed by inductor for every
    element of the [N, C] logits in every pass that reads it (VS: a float64 power per element,
    ~10× slower than eager at C = 1,000). Eager, or with a gradient: ``x`` itself."""
    if compiling() and not x.requires_grad:
        return cast(Tensor, _materialize(x))
    return x


def cast_constant(t: Tensor, like: Tensor, scale: float | None = None, column: bool = False) -> Tensor:
    """``t`` (a per-class constant, e.g. a float64 buffer) on ``like``'s device and dtype, times ``scale``.

    Modules keep their prior-derived constants in float64; converting (and scaling) them on
    every call is one or two extra kernels, which at small C cost as much as the loss. The
    result is cached in memory (:func:`_cached`). Tensors that need a gradient, tensors
    wrapped by ``torch.func`` transforms and calls under ``torch.compile`` are never cached.
    ``column=True`` returns it as [C, 1].
    """
    def make() -> Tensor:
        out = t.detach().to(device=like.device, dtype=like.dtype, copy=True)
        if scale is not None:
            out.mul_(scale)
        return out.unsqueeze(1) if column else out

    if _uncacheable(t):
        out = t.to(device=like.device, dtype=like.dtype)
        out = materialized(out if scale is None else out * scale)
        return out.unsqueeze(1) if column else out
    return _cached(t, ("cast", like.dtype, like.device, scale, column), make)


def derived(compute: Callable[..., Tensor], t: Tensor, *args: Any) -> Tensor:
    """``compute(t, *args)`` (a constant derived from a per-class tensor, e.g. LDAM's margins
    from the class counts), cached like :func:`cast_constant` while ``t`` is unchanged."""
    if _uncacheable(t):
        return materialized(compute(t, *args))
    return _cached(t, ("derived", compute, args), lambda: compute(t, *args))


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


def _rows(z: Tensor, target: Tensor, ignore_index: int, weight: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(z, safe_target, row_weight)``: ignored rows point at class 0, weigh 0 and have their
    logits replaced by zeros (:func:`blank_rows`: a -inf there would make the row's loss and
    gradient NaN); others weigh ``weight[y_i]``. Without class weights and with no ignored row
    the weight is ``None`` (every row 1), which the kernel's plain mean is faster for. Finding
    out whether a row is ignored reads one value on the host (the kernel is for CPU tensors);
    the logits are copied only when one is."""
    valid = target != ignore_index
    if bool(valid.all()):
        return z, target, None if weight is None else weight.index_select(0, target)
    safe = target * valid
    row_w = valid.to(z.dtype)
    if weight is not None:
        row_w = row_w * weight.index_select(0, safe)
    return blank_rows(z, valid), safe, row_w


def _adjusted_logits(z: Tensor, idx: Tensor, add: Tensor | None, scale: Tensor | float | None,
                     bias: Tensor | None, divisor: Tensor | None) -> Tensor:
    """``u = affine(z) + shift·e_y`` (``z`` itself when there is nothing to do; never modified)."""
    u = affine_logits(z, scale, bias, divisor)
    if add is None:
        return u
    return (u.clone() if u is z else u).scatter_add_(1, idx, add)


#: Below this many classes ATen's last-dim (log-)softmax kernels take a scalar path on CPU
#: (narrower than one AVX2 vector of 8 floats); along dim 0 of the transposed view they
#: vectorise over the rows instead. Measured with torch 2.13/2.14 at N = 1,024, 1 thread: at
#: C = 4 the transposed softmax takes 0.5× the time, at C = 10 the last-dim kernels are the
#: faster (log-softmax forward 33 against 37 µs, its backward 31 against 49 µs).
NARROW_C = 8

#: :func:`folded_scale` folds the scale into the per-row coefficients from this many classes on.
FOLD_MIN_C = 16


def softmax_rows(u: Tensor) -> Tensor:
    """``torch.softmax(u, 1)`` for [N, C] ``u``; narrow CPU inputs (C < :data:`NARROW_C`) are
    computed along dim 0 of ``u.t()`` (same values; the result is a transposed view)."""
    if u.shape[1] < NARROW_C and u.is_cpu:
        return torch.softmax(u.t(), 0).t()
    return torch.softmax(u, 1)


def log_softmax_rows(u: Tensor) -> Tensor:
    """``torch.log_softmax(u, 1)``, as :func:`softmax_rows` (differentiable: torch's own backward)."""
    if u.shape[1] < NARROW_C and u.is_cpu:
        return torch.log_softmax(u.t(), 0).t()
    return torch.log_softmax(u, 1)


def log_prob_target(u: Tensor, target: Tensor) -> Tensor:
    """``log p_{i,y_i}`` [N] with ``p = softmax(u)`` (``target`` int64 [N], valid classes).

    Eager: the row of a log-softmax, gathered. Under ``torch.compile``: ``u_{iy} − logsumexp_j u_{ij}``,
    whose backward is ``g_i (e_{y_i} − p_i)`` with no reduction over the classes; through a
    log-softmax the backward sums the scattered gradient over each row, and inductor's code
    for that sum recomputes the per-row terms above it (a focal weight, an exponential) once
    per class, several times slower than eager at C = 1,000."""
    idx = target.unsqueeze(1)
    if compiling():
        return u.gather(1, idx).squeeze(1) - torch.logsumexp(u, 1)
    return log_softmax_rows(u).gather(1, idx).squeeze(1)


def _nll_rows(u: Tensor, target: Tensor, ignore_index: int) -> Tensor:
    """``−log p_{i,y_i}`` [N], 0 on ignored rows (``F.nll_loss(log_softmax(u), reduction="none")``);
    under ``torch.compile`` from :func:`log_prob_target`."""
    if not compiling():
        return _aten_ce(u, target, None, "none", ignore_index)
    lpy = log_prob_target(u, _safe_target(target, ignore_index))
    return torch.where(target != ignore_index, -lpy, 0.0)


def _softmax_and_nll(u: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """``(p, ℓ)``: ``p = softmax(u)`` (ATen's softmax kernel: one vectorised exponential pass)
    and ``ℓ_i = −log p_{i,y_i}`` from N logarithms instead of a log-softmax pass.

    Where a target probability is so small that its logarithm would lose digits (below the
    dtype's smallest normal times 2^24) the exact ``lse_i − u_{iy} = max_j u_{ij} −
    log max_j p_{ij} − u_{iy}`` is used instead (``max_j p_{ij} ≥ 1/C`` never underflows):
    two max passes, paid only when such a row exists. Deciding that reads one value on the
    host, so this is for CPU tensors.
    """
    p, lpt = softmax_and_log_target(u, idx)
    return p, lpt.neg_()


def softmax_and_log_target(u: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """``(p, log p_{i,y_i})`` [N, C] and [N] from one softmax, with :func:`_softmax_and_nll`'s
    exact fallback for target probabilities too small for their logarithm (one host read).

    Narrow CPU logits (:data:`NARROW_C` ≤ C < :data:`LOG_PIECES_MAX_C`) take both from one
    log-softmax instead (exact, no fallback, no host read): ``log p_y`` gathered from it and ``p``
    its exponential, in place outside autograd. There ATen's last-dim softmax kernel is as slow
    as a log-softmax and an exponential together, and the softmax route's gather, N logarithms,
    minimum and host read are four operator calls more (measured at N = 1,024, C = 10, 1 thread:
    softmax, gather, log, min, host read and the backward's multiply and scatter 73 µs, the
    log-softmax route 65 µs; at C = 8 and 16 the two are even or the softmax route faster)."""
    if NARROW_C <= u.shape[1] < LOG_PIECES_MAX_C and u.is_cpu:
        logp = torch.log_softmax(u, 1)
        lpt = logp.gather(1, idx).squeeze_(1)
        return _exp_outside_autograd(logp, u), lpt
    return _softmax_then_log_target(u, idx)


def _exp_outside_autograd(logp: Tensor, u: Tensor) -> Tensor:
    """``exp(logp)`` for ``logp = log_softmax(u)``: in place where autograd does not record ``u``'s
    graph (a fused Function's forward), else a new tensor (``logp`` may be saved for a backward)."""
    return logp.exp() if u.requires_grad and torch.is_grad_enabled() else logp.exp_()


def _softmax_then_log_target(u: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`softmax_and_log_target` from a softmax at every width (the opaque operator's form)."""
    p = softmax_rows(u)
    return p, _log_target(p, idx, lambda: u)


def _log_target(p: Tensor, idx: Tensor, logits: Callable[[], Tensor]) -> Tensor:
    """``log p_{i,y_i}`` [N] of ``p = softmax(u)``, exact where ``p_y`` is too small for its logarithm
    (``logits()`` gives ``u``, called only then)."""
    pt = p.gather(1, idx)
    lpt = pt.log().squeeze_(1)
    floor = torch.finfo(p.dtype).tiny * 2.0**24
    if float(pt.amin()) < floor:
        u = logits()
        exact = u.gather(1, idx).squeeze_(1).sub_(u.amax(1)).add_(p.amax(1).log_())
        lpt = torch.where(pt.squeeze(1) < floor, exact, lpt)
    return lpt


def softmax_and_log_target_(u: Tensor, idx: Tensor, recompute: Callable[[], Tensor]) -> tuple[Tensor, Tensor]:
    """:func:`softmax_and_log_target` with ``p`` written over ``u``, a buffer of the caller's own
    (no fresh [N, C] buffer): ATen's CPU softmax with ``out=u`` (its row kernel reads each
    element before writing it: the same values as :func:`torch.softmax`, which the fused
    losses' float64 tests check), where ``u`` is a contiguous CPU tensor of at least
    :data:`NARROW_C` classes; else as :func:`softmax_and_log_target` (then ``u`` is unchanged).
    ``recompute()`` gives ``u`` again, for the exact fallback of tiny target probabilities only."""
    if not _in_place_softmax(u):
        return softmax_and_log_target(u, idx)
    p = torch._softmax(u, 1, False, out=u)
    return p, _log_target(p, idx, recompute)


def _in_place_softmax(u: Tensor) -> bool:
    return u.is_cpu and u.shape[1] >= NARROW_C and u.is_contiguous()


def softmax_rows_(u: Tensor) -> Tensor:
    """:func:`softmax_rows` written over ``u`` (a buffer of the caller's own) where
    :func:`softmax_and_log_target_` would (else a new tensor)."""
    return torch._softmax(u, 1, False, out=u) if _in_place_softmax(u) else softmax_rows(u)


def kept_probabilities(z: Tensor, lse: Tensor, p: Tensor | None, keep: Tensor | None) -> Tensor:
    """``softmax(z)`` in a traced kernel's backward (:class:`_TracedRowLoss`, the noise mixes): ``exp(z − log Z)`` (``log Z = +∞`` on ignored rows:
    0 there), or the saved ``p`` with ignored rows set to 0 (a row of -inf logits has NaN there)."""
    if p is None:
        return torch.exp(z - lse)
    return p if keep is None else torch.where(keep, p, 0.0)


@torch.library.custom_op("lossatlas::softmax_and_log_target", mutates_args=())
def softmax_and_log_target_op(z: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """``(softmax(z), log p_y [N, 1])`` by :func:`softmax_and_log_target` (ATen's softmax: one
    exponential pass; its exact fallback's host read is a CPU one), opaque to inductor, which
    would compute the exponentials twice (once for ``log Z``, once for ``p``)."""
    p, lpy = _softmax_then_log_target(z, idx)
    return p.contiguous(), lpy.unsqueeze_(1)


@softmax_and_log_target_op.register_fake
def _(z: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    return torch.empty_like(z), z.new_empty((z.shape[0], 1))


#: Below this many classes the fused losses that need ``p`` and ``log p_y`` (or ``Σ_j log p_j``)
#: take them from one log-softmax and an exponential (:func:`softmax_log_pieces`): fewer operator
#: calls, which is what a call costs at small C; from it on, from one softmax (an exponential
#: pass over N×C fewer: ``exp`` costs as much as a whole softmax on CPU, measured at N = 1,024,
#: 1 thread: 111 µs against 143 µs at C = 100).
LOG_PIECES_MAX_C = 16


def softmax_log_pieces(z: Tensor, idx: Tensor, log_sum: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(p, log p_y, Σ_j log p_j)``: ``p = softmax(z)`` [N, C], the target's log-probability as a
    column [N, 1] and, with ``log_sum``, the row sums of ``log p`` [N, 1] (else ``None``).

    Below :data:`LOG_PIECES_MAX_C` classes: ``log p`` from one log-softmax, ``p = exp(log p)``,
    a gather and a row sum (exact; no host read). Above: :func:`softmax_and_log_target` (one
    softmax, N logarithms, its exact fallback) and ``Σ_j log p_j = Σ_j z_j − C log Z`` with
    ``log Z = z_y − log p_y`` (a row sum of the logits, no log-softmax pass)."""
    if z.shape[1] < LOG_PIECES_MAX_C:
        logp = log_softmax_rows(z)
        lpy, s = logp.gather(1, idx), (logp.sum(1, keepdim=True) if log_sum else None)
        return _exp_outside_autograd(logp, z), lpy, s
    p, lpy = softmax_and_log_target(z, idx)
    lpy = lpy.unsqueeze_(1)
    if not log_sum:
        return p, lpy, None
    return p, lpy, z.sum(1, keepdim=True).sub_(z.gather(1, idx).sub_(lpy).mul_(z.shape[1]))


class _SoftmaxCE(torch.autograd.Function):
    """Cross-entropy (``gamma = 0``) or focal loss of ``u = affine(z) + shift·e_y`` from ONE softmax.

    Forward: ``p = softmax(u)`` and ``ℓ_i = −log p_{i,y_i}`` (:func:`_softmax_and_nll`);
    nothing else of size N×C. Backward: ``∂L/∂u_i = c_i (p_i − e_{y_i})`` with one
    coefficient ``c_i`` per row (the row weight, the reduction's divisor, focal's
    ``−∂ℓ/∂log p_t`` and a scalar scale folded in), i.e. one multiply and an N-element
    scatter; ``F.cross_entropy`` computes the exponentials again in its backward.
    """

    @staticmethod
    def forward(
        ctx: Any, z: Tensor, idx: Tensor, add: Tensor | None, scale: Tensor | float | None, bias: Tensor | None,
        divisor: Tensor | None, row_w: Tensor | None, row_scale: Tensor | float | None, gamma: float, reduction: str,
    ) -> Tensor:
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
                denom = mean_divisor(row_w.sum())
                out = loss.sum() / denom
                assert c is not None  # row weights given: c is them, or focal's coefficient times them
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
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        p, neg_c, idx, vec = ctx.saved_tensors
        cg = (neg_c * grad).unsqueeze_(1)  # grad: a scalar, or [N] for "none"
        gz = p * cg.neg()
        gz.scatter_add_(1, idx, cg)
        if vec is not None:
            gz = gz.div_(vec) if ctx.divide else gz.mul_(vec)
        return gz, None, None, None, None, None, None, None, None, None


_softmax_ce_fused = cast(Callable[..., Tensor], _SoftmaxCE.apply)  # Function.apply is unannotated in torch


# --------------------------------------------------------------------------------------
# Shared pieces of the other softmax losses' fused paths (noise, calibration, multi-label)
# --------------------------------------------------------------------------------------
def reduce_rows(loss: Tensor, row_w: Tensor | None, reduction: str) -> tuple[Tensor, Tensor | float]:
    """``(reduced loss, k)`` with :func:`~lossatlas.functional._common.reduce_loss`'s semantics
    for per-row losses [N] and optional row weights (``None``: every row 1), and ``k`` the
    factor of each row's gradient in the result: a float, or a tensor [N]. For ``"none"``,
    ``k`` is the row weight (the upstream gradient is then [N] and multiplies it). Row weights
    that are all 1 (the usual ignore mask with nothing ignored; one host read) are dropped."""
    if row_w is not None and bool((row_w == 1.0).all()):
        row_w = None
    if row_w is None and reduction == "mean":
        return (loss.mean() if loss.numel() else loss.sum()), 1.0 / max(loss.shape[0], 1)
    return traced_reduce(loss, row_w, reduction)


def col(x: Tensor | float) -> Tensor | float:
    """A per-row coefficient as a [N, 1] column (a float stays a float)."""
    return x.unsqueeze(1) if isinstance(x, Tensor) else x


def scale_grad(gz: Tensor, k: Tensor | float, grad: Tensor) -> Tensor:
    """``gz · k · grad`` in place, the last step of a fused backward: ``k`` the reduction's row
    factor (a float or [N]), ``grad`` the upstream gradient (0-dim, or [N] for ``"none"``). One
    pass over [N, C] (none when the factor is 1), where scaling each per-row coefficient would
    be an operator call each. CPU only: a 0-dim ``grad`` is read on the host."""
    if grad.dim() == 0 and not isinstance(k, Tensor):
        s = float(grad) * k
        return gz if s == 1.0 else gz.mul_(s)
    kg = k * grad if isinstance(k, Tensor) else grad * k
    return gz.mul_(kg.unsqueeze(1) if kg.dim() == 1 else kg)


def handed_back(gz: Tensor, grad: Tensor) -> Tensor:
    """The backward of a fused Function whose forward already computed ``∂L/∂z`` into ``gz``, a
    buffer of its own (the loss's gradient for an upstream gradient of 1): ``gz`` itself where the
    upstream gradient is exactly 1 (one host read), no graph of the backward is being built and
    the backward does not retain its graph, else ``gz · grad`` (``grad`` 0-dim, or [N] for
    ``"none"``). Handed back as it is, autograd keeps it as ``.grad`` without a copy (the
    Function's saved reference is released before the gradient is accumulated): the fresh
    [N, C] buffer and the pass of a backward that computes the gradient are saved. With
    ``retain_graph`` the buffer stays saved for the next backward, so a new tensor is returned
    (``torch.autograd.grad`` hands its result to the caller as it is, who may change it in
    place). On a GPU (no host read, no synchronisation) always ``gz · grad``."""
    if grad.dim() == 0:
        if (gz.is_cpu and not grad.requires_grad and backward_keeps_graph() is False
                and float(grad) == 1.0):
            return gz
        return gz * grad
    return gz * grad.unsqueeze(1)


def folded_scale(k: Tensor | float, grad: Tensor, num_classes: int) -> float | None:
    """``k · grad`` as a float where both are scalars (a reduced loss's backward; one host read),
    to be folded into a backward's per-row coefficients instead of a pass over [N, C]; ``None``
    otherwise, and below :data:`FOLD_MIN_C` classes, where that pass costs one operator call
    and the coefficients several (then :func:`scale_grad` scales the result)."""
    if grad.dim() == 0 and not isinstance(k, Tensor) and num_classes >= FOLD_MIN_C:
        return float(grad) * k
    return None


def fused_grad(p: Tensor, idx: Tensor, coef_p: Tensor | float, coef_e: Tensor | float, k: Tensor | float,
               grad: Tensor) -> Tensor:
    """``k g (coef_p · p + coef_e · e_y)`` [N, C]: the backward of a per-row softmax loss (one
    multiply over [N, C], an N-element scatter and the final scaling)."""
    gz = p * col(coef_p)
    e = coef_e.unsqueeze(1) if isinstance(coef_e, Tensor) else torch.full((idx.shape[0], 1), coef_e, dtype=p.dtype)
    return scale_grad(gz.scatter_add_(1, idx, e), k, grad)


class _Pointwise(torch.autograd.Function):
    """A per-element loss ``ℓ(z)`` whose value and derivative ``dℓ/dz`` come from one function of
    the input, computed without a graph; the backward is one multiply ``g · dℓ/dz``."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, terms: Callable[[Tensor], tuple[Tensor, Tensor]]) -> Tensor:
        loss, slope = terms(z)
        ctx.save_for_backward(slope)
        return loss

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (slope,) = ctx.saved_tensors
        return grad * slope, None


_pointwise = cast(Callable[..., Tensor], _Pointwise.apply)


def pointwise_loss(z: Tensor, terms: Callable[[Tensor], tuple[Tensor, Tensor]], *others: Tensor,
                   cpu_only: bool = True, traced: bool = False) -> Tensor | None:
    """``ℓ(z)`` elementwise from ``terms(z) = (ℓ, dℓ/dz)`` (:class:`_Pointwise`: no autograd graph
    of the terms), or ``None`` where the composed ops should run: the size-based choice of
    :func:`~lossatlas._paths.take_fused` (``cpu_only=False`` where ``terms`` reads nothing on the
    host, so CUDA takes it too), and never when one of ``others`` (the target) needs a
    gradient (``terms`` gives none for it). ``traced=True`` takes it under ``torch.compile`` too
    (where ``z`` needs a gradient; ``terms`` must read nothing on the host): inductor fuses the
    terms into one kernel and the backward is one multiply, where autograd's graph of the
    composed ops makes it recompute the transcendentals."""
    if any(t.requires_grad for t in others):
        return None
    if traced and compiling():
        return _pointwise(z, terms) if z.requires_grad and torch.is_grad_enabled() else None
    if not take_fused(z, 1, cpu_only=cpu_only):
        return None
    return _pointwise(z, terms)


@functools.cache
def next_below(value: float, dtype: torch.dtype) -> float:
    """The largest number of ``dtype`` below ``value`` (as ``dtype`` rounds it): ``x > next_below(v)``
    is ``x >= v``, so :func:`torch.nn.functional.threshold` reproduces a ``clamp_min(v)``'s gradient
    mask in one pass."""
    v = torch.tensor(value, dtype=dtype)
    return float(torch.nextafter(v, torch.zeros_like(v)))


#: ``row(lpy, lse) -> (loss, a, b)`` of :func:`softmax_row_loss`.
RowFunction = Callable[[Tensor, "Tensor | None"], "tuple[Tensor, Tensor | float, Tensor | float | None]"]


class _SoftmaxRowLoss(torch.autograd.Function):
    """A per-row loss of ``log p_{i,y_i}`` (and ``log Z_i``) from ONE softmax, hand-derived backward.

    ``row(lpy, lse)`` returns ``(ℓ [N], a, b)`` with ``∂ℓ_i/∂z_i = a_i (e_{y_i} − p_i) + b_i p_i``
    (``a = ∂ℓ/∂ log p_y``; ``b``: the part through ``log Z`` beyond it, ``None`` for none). The
    forward keeps ``p`` and two coefficients per row; the backward is one multiply over [N, C]
    and an N-element scatter, where the composed ops replay log-softmax, gather and the
    elementwise terms through autograd.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, idx: Tensor, row: RowFunction, with_lse: bool, row_w: Tensor | None,
                reduction: str) -> Tensor:
        p, lpy = softmax_and_log_target(z, idx)
        lse = z.gather(1, idx).squeeze_(1).sub_(lpy) if with_lse else None
        loss, a, b = row(lpy, lse)
        out, ctx.k = reduce_rows(loss, row_w, reduction)
        # ∂ℓ_i/∂z_i = (b_i − a_i) p_i + a_i e_{y_i}: two per-row coefficients (tensors [N] or floats),
        # kept as attributes (intermediates; no double backward); b = None: −a, formed in the backward
        ctx.coef_e = a
        ctx.coef_p = (b - a) if b is not None else None
        ctx.save_for_backward(p, idx)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        p, idx = ctx.saved_tensors
        a, coef_p = ctx.coef_e, ctx.coef_p
        if coef_p is None:
            if isinstance(a, Tensor) and grad.dim() == 0 and not isinstance(ctx.k, Tensor):
                # s a_i (e_{y_i} − p_i) with the scalar s = k·g (one host read) in the [N, 1] column:
                # one pass over [N, C] and one operator call fewer than −a in the forward and fused_grad
                e = a.unsqueeze(1) * (-float(grad) * ctx.k)
                gz = p * e
                return gz.scatter_add_(1, idx, e.neg_()), None, None, None, None, None
            coef_p = -a
        return fused_grad(p, idx, coef_p, a, ctx.k, grad), None, None, None, None, None


_softmax_row_loss = cast(Callable[..., Tensor], _SoftmaxRowLoss.apply)


def traced_reduce(loss: Tensor, row_w: Tensor | None, reduction: str) -> tuple[Tensor, Tensor | float]:
    """:func:`reduce_rows` without host reads (for ``torch.compile``): all-ones weights are kept."""
    if row_w is None:
        if reduction == "mean":
            return loss.sum() / max(loss.shape[0], 1), 1.0 / max(loss.shape[0], 1)
        return (loss if reduction == "none" else loss.sum()), 1.0
    loss = loss * row_w
    if reduction != "mean":
        return (loss if reduction == "none" else loss.sum()), row_w
    denom = mean_divisor(row_w.sum())
    return loss.sum() / denom, row_w / denom


def _row_coefficient(c: Tensor | float, like: Tensor) -> Tensor:
    return c if isinstance(c, Tensor) else torch.full_like(like, c)


class _TracedRowLoss(torch.autograd.Function):
    """:class:`_SoftmaxRowLoss` for ``torch.compile``: no host reads, nothing in place on inputs.

    Forward: ``log Z = logsumexp(z)`` and ``log p_y = z_y − log Z`` (exact; no softmax kept),
    the row terms and the reduction, and the two per-row gradient coefficients, which are saved
    (so inductor's backward reads them rather than recomputing the row terms once per class).
    Backward: ``g·(coef_p_i · exp(z_ij − log Z_i) + coef_e_i [j = y_i])``: one pass over
    [N, C] and an N-element scatter, where autograd through a log-softmax sums each row of the
    scattered gradient again.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, idx: Tensor, row: RowFunction, with_lse: bool, row_w: Tensor | None,
                reduction: str) -> Tensor:
        p, lpy_col, row_lse_col, lse, keep = traced_log_target(z, idx, row_w)
        lpy, row_lse = lpy_col.squeeze(1), row_lse_col.squeeze(1)
        loss, a, b = row(lpy, row_lse if with_lse else None)
        out, k = traced_reduce(loss, row_w, reduction)
        coef_p = (b - a) if b is not None else -a
        ctx.saved_p = p is not None
        ctx.save_for_backward(z if p is None else p, idx, lse, _row_coefficient(coef_p * k, lpy),
                              _row_coefficient(a * k, lpy), keep)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        z_or_p, idx, lse, coef_p, coef_e, keep = ctx.saved_tensors
        g = grad.unsqueeze(1) if grad.dim() == 1 else grad
        p = kept_probabilities(z_or_p, lse, z_or_p if ctx.saved_p else None, keep)
        gz = p * (coef_p.unsqueeze(1) * g)
        gz = gz.scatter_add(1, idx, coef_e.unsqueeze(1) * g)
        return gz, None, None, None, None, None


_traced_row_loss = cast(Callable[..., Tensor], _TracedRowLoss.apply)


def traced_log_target(z: Tensor, idx: Tensor, row_w: Tensor | None
                      ) -> tuple[Tensor | None, Tensor, Tensor, Tensor, Tensor | None]:
    """The traced kernels' shared start (:class:`_TracedRowLoss`, the noise mixes), no host reads:
    ``(p, log p_y, log Z, log Z for exp(z − log Z), keep)``, all but ``p`` as columns [N, 1].

    On CPU ``p = softmax(z)`` from ATen behind an opaque operator (one exponential pass; inductor's
    form makes two) and ``log Z = z_y − log p_y``; elsewhere ``p`` is ``None`` and ``log Z`` a
    logsumexp. With row weights, the rows of weight 0 (``keep`` false) are made harmless
    (``log p_y = 0``, ``log Z = 0`` for the row terms, ``+inf`` for the exponential), so that a
    traced kernel may take the logits of ignored rows as they are (``-inf`` included) instead of
    a blanked copy (a pass over [N, C] that inductor keeps as a buffer and differentiates
    through): their terms are then finite, times a zero weight, and ``exp(z − ∞) = 0`` in the
    backward (:func:`kept_probabilities`)."""
    p: Tensor | None = None
    if z.device.type == "cpu":
        p, lpy = softmax_and_log_target_op(z, idx)
        lse = z.gather(1, idx) - lpy
    else:
        lse = torch.logsumexp(z, 1, keepdim=True)
        lpy = z.gather(1, idx) - lse
    if row_w is None:
        return p, lpy, lse, lse, None
    keep = row_w.unsqueeze(1) != 0
    return p, torch.where(keep, lpy, 0.0), torch.where(keep, lse, 0.0), torch.where(keep, lse, math.inf), keep


def softmax_row_loss(z: Tensor, target: Tensor, row: RowFunction, row_w: Tensor | None, reduction: str,
                     with_lse: bool = False) -> Tensor:
    """The fused path of a loss ``ℓ_i = f(log p_{i,y_i}, log Z_i)`` (:class:`_SoftmaxRowLoss`):
    ``z`` [N, C] in the compute dtype, ``target`` [N] int64 (ignored rows already pointed at a
    valid class and weighted 0 in ``row_w``), reduced as ``reduce_loss`` does. Under
    ``torch.compile`` :class:`_TracedRowLoss` (see :func:`fused_or_traced`)."""
    if compiling():
        return _traced_row_loss(z, target.unsqueeze(1), row, with_lse, row_w, reduction)
    return _softmax_row_loss(z, target.unsqueeze(1), row, with_lse, row_w, reduction)


def fused_or_traced(z: Tensor, min_numel: int) -> bool:
    """Whether a per-row softmax loss runs :func:`softmax_row_loss`: where
    :func:`~lossatlas._paths.take_fused` says so, and under ``torch.compile`` with a gradient
    (its traced form has the hand-derived backward that inductor's code needs)."""
    if compiling():
        return z.requires_grad and torch.is_grad_enabled()
    return take_fused(z, min_numel)


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



def _total_weight(target: Tensor, ignore_index: int, weight: Tensor | None) -> Tensor:
    """What a ``"mean"`` counts: the number of rows not ignored (an integer tensor), or
    ``Σ w_{y_i}`` over them; divide by :func:`~lossatlas._spec.mean_divisor` of it, so that
    an empty or all-ignored batch gives 0 with a zero gradient."""
    valid = target != ignore_index
    if weight is None:
        return valid.sum()
    return (weight.index_select(0, target * valid) * valid).sum()


def _denominator(target: Tensor, ignore_index: int, weight: Tensor | None, dtype: torch.dtype) -> Tensor:
    """The ``"mean"``'s divisor (see :func:`_total_weight`; a count is at least 1 unless 0)."""
    total = _total_weight(target, ignore_index, weight)
    return total.clamp_min(1) if weight is None else mean_divisor(total)


def _smoothed_weighted_ce(u: Tensor, target: Tensor, weight: Tensor, ignore_index: int, reduction: str, eps: float) -> Tensor:
    """torch's label-smoothed cross-entropy with class weights ``w``,
    ``ℓ_i = (1 − ε) w_{y_i} (−log p_{i y_i}) + (ε/C) Σ_j w_j (−log p_{ij})``, ``"mean"`` ÷ ``Σ_i w_{y_i}``
    over the rows kept, with two differences where torch has no number: a class of weight 0
    adds 0 even when it is masked (``−inf`` logit; torch computes 0·∞ = NaN), and a mean with
    nothing counted (``Σ_i w_{y_i} = 0``, while the smoothing sum need not be 0) is 0."""
    logp = torch.log_softmax(u, 1)
    nll = F.nll_loss(logp, target, weight=weight, ignore_index=ignore_index, reduction="none")  # 0 on ignored rows
    smooth = torch.where(weight > 0, logp * weight, 0.0).sum(1).neg()
    smooth = torch.where(target != ignore_index, smooth, 0.0)  # where, not a product: ignored rows may be +inf
    losses = nll * (1.0 - eps) + smooth * (eps / u.shape[1])
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    counted = _total_weight(target, ignore_index, weight)  # the smoothing term is weighted by every class: 0 if nothing counted
    return torch.where(counted > 0, total / mean_divisor(counted), 0.0)


#: ATen's reduction enum (``torch.nn._reduction.get_enum``).
_ENUM = {"none": 0, "mean": 1, "sum": _SUM}


def _aten_ce(u: Tensor, target: Tensor, weight: Tensor | None, reduction: str, ignore_index: int,
             label_smoothing: float = 0.0) -> Tensor:
    """``F.cross_entropy`` without its Python wrapper (ATen's composite: a log-softmax, then the NLL);
    narrow CPU logits (C < :data:`NARROW_C`) take :func:`log_softmax_rows` and ATen's NLL. (torch's
    stubs type the reduction as a string; the bindings take ATen's enum, as ``F.cross_entropy`` passes it.)"""
    enum: Any = _ENUM[reduction]
    if not label_smoothing and u.shape[1] < NARROW_C and u.is_cpu:
        return torch._C._nn.nll_loss_nd(log_softmax_rows(u), target, weight, enum, ignore_index)
    return torch._C._nn.cross_entropy_loss(u, target, weight, enum, ignore_index, label_smoothing)


def _host_rows(target: Tensor, ignore_index: int, counted: bool = True) -> tuple[bool, bool]:
    """``(no row is ignored, some row is counted)``, read on the host for a CPU ``target`` (one
    reduction, :func:`~lossatlas.functional._common.none_ignored`; where some row is ignored and
    ``counted``, a second); ``(False, False)`` (nothing known) on other devices (the plain path
    reads nothing there), under ``torch.compile`` and ``torch.func`` transforms (``vmap`` cannot
    read a value) and for an empty batch. A target out of range reads as neither; the kernel
    rejects it."""
    if not target.is_cpu or not target.numel() or compiling() or torch._C._are_functorch_transforms_active():
        return False, False
    if none_ignored(target, ignore_index):
        return True, True
    if not counted:
        return False, False
    return False, (int(target.amax()) > ignore_index if ignore_index < 0 else int(target.amin()) < ignore_index)


def _plain(
    z: Tensor, target: Tensor, col: Tensor | None, scale: Tensor | float | None, bias: Tensor | None,
    divisor: Tensor | None, weight: Tensor | None, gamma: float, alpha: Tensor | float | None,
    ignore_index: int, reduction: str, label_smoothing: float = 0.0,
) -> Tensor:
    """The plain path: composed torch operators, no host reads except :func:`_host_rows` on CPU.

    A ``"mean"`` over no counted row is 0 with a zero gradient. Where ATen's own mean is that
    mean (no class weights, some row counted: known on CPU from :func:`_host_rows`) it is
    ATen's, as ``F.cross_entropy`` computes it; elsewhere the sum over its total weight."""
    u = affine_logits(z, scale, bias, divisor)
    # under torch.compile the unsmoothed loss goes through _nll_rows (no log-softmax backward)
    ce_only = gamma == 0.0 and not isinstance(alpha, Tensor) and (bool(label_smoothing) or not compiling())
    unweighted_mean = reduction == "mean" and weight is None
    indexed = col is not None or isinstance(alpha, Tensor) or (weight is not None and not ce_only)
    every_row, counted = _host_rows(target, ignore_index, unweighted_mean) if unweighted_mean or indexed else (False, False)
    safe = None
    if indexed:
        safe = target if every_row else _safe_target(target, ignore_index)
    if col is not None:
        assert safe is not None
        idx = safe.unsqueeze(1)
        add = col.index_select(0, safe)
        u = u.scatter_add(1, idx, add) if u is z else u.scatter_add_(1, idx, add)
    if ce_only:
        if label_smoothing and weight is not None:
            out = _smoothed_weighted_ce(u, target, weight, ignore_index, reduction, label_smoothing)
        elif reduction != "mean" or unweighted_mean and counted:
            out = _aten_ce(u, target, weight, reduction, ignore_index, label_smoothing)
        elif not label_smoothing:
            # ATen's NLL returns its total weight (the rows kept, or Σ w_{y_i}) beside the sum: the
            # mean's divisor without another pass (1 where it is 0: an all-ignored batch gives 0;
            # without class weights it is a count, ≥ 1 unless 0)
            nll: tuple[Tensor, Tensor] = torch.ops.aten.nll_loss_forward(log_softmax_rows(u), target, weight, _SUM,
                                                                          ignore_index)
            out = nll[0] / (nll[1].clamp_min(1) if weight is None else mean_divisor(nll[1]))
        else:
            out = _aten_ce(u, target, None, "sum", ignore_index, label_smoothing)
            out = out / _denominator(target, ignore_index, None, out.dtype)
        return out if alpha is None else out * alpha
    ce = _nll_rows(u, target, ignore_index)  # 0 on ignored rows
    row = None
    if weight is not None:
        assert safe is not None
        row = weight.index_select(0, safe)
    if isinstance(alpha, Tensor):
        assert safe is not None
        a = alpha.index_select(0, safe)
        row = a if row is None else row * a
    if reduction == "none" or row is not None:
        losses = _focal_from_ce(ce, gamma)
        losses = losses if row is None else losses * row
        total = losses if reduction == "none" else losses.sum()
    else:
        total = _focal_from_ce(ce, gamma, total=True)  # one dot product
    if isinstance(alpha, float):
        total = total * alpha
    if reduction == "mean":
        # every row counted (CPU, read above): the divisor is N
        total = total / (target.shape[0] if unweighted_mean and every_row else
                         _denominator(target, ignore_index, weight, total.dtype))
    return total


def _traced_cross_entropy(
    z: Tensor, target: Tensor, col: Tensor | None, scale: Tensor | float | None, bias: Tensor | None,
    divisor: Tensor | None, weight: Tensor | None, gamma: float, alpha: Tensor | float | None,
    ignore_index: int, reduction: str,
) -> Tensor:
    """The family's loss under ``torch.compile`` (with a gradient): :class:`_TracedRowLoss` of
    ``u = affine(z) + shift·e_y`` with the row terms of :func:`_focal_terms` (γ = 0: ``−log p_y``);
    row weights ``w_{y_i}`` (0 on ignored rows) and ``α_{y_i}`` as :func:`_plain` applies them."""
    safe = _safe_target(target, ignore_index)
    idx = safe.unsqueeze(1)
    valid = target != ignore_index
    u = affine_logits(blank_rows(z, valid), scale, bias, divisor)  # traced: fused into the kernel
    if col is not None:
        add = col.index_select(0, safe)
        u = u.scatter_add_(1, idx, add)
    row_w = valid.to(u.dtype)
    if weight is not None:
        row_w = row_w * weight.index_select(0, safe)
    row_alpha = alpha.index_select(0, safe) if isinstance(alpha, Tensor) else alpha

    def row(lpy: Tensor, _: Tensor | None) -> tuple[Tensor, Tensor, None]:
        loss, coef = _focal_terms(lpy, gamma)
        if row_alpha is not None:
            loss, coef = loss * row_alpha, coef * row_alpha
        return loss, coef, None

    return _traced_row_loss(u, idx, row, False, row_w, reduction)


def softmax_cross_entropy(
    z: Tensor,
    target: Tensor,
    *,
    scale: Tensor | float | None = None,
    bias: Tensor | None = None,
    divisor: Tensor | None = None,
    shift: Tensor | None = None,
    weight: Tensor | None = None,
    gamma: float = 0.0,
    alpha: Tensor | float | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy (``gamma = 0``) or focal loss of ``u`` (module docstring), reduced.

    ``z`` [N, C] is already in the compute dtype and ``target`` int64 [N] (``ignore_index``
    allowed). ``scale`` is a float or a [C] tensor, ``divisor`` [C] (``u = z / divisor +
    bias``, exclusive with ``scale``), ``bias`` [C], ``shift`` [C] or [C, 1] (*added* at each
    row's target, so it is ``−d``: LDAM passes ``−s·m``), ``weight`` [C] class weights and
    ``alpha`` a float or [C] per-class factor (in the numerator only); tensors are on ``z``'s
    device and dtype. ``label_smoothing`` (plain cross-entropy only) is torch's; it has
    no fused form. The path is chosen by :func:`lossatlas._paths.take_fused`.
    """
    if isinstance(alpha, float) and alpha == 1.0:
        alpha = None
    col = None if shift is None else (shift if shift.dim() == 2 else shift.unsqueeze(1))  # [C, 1]
    plain_ce = scale is None and bias is None and divisor is None and col is None and gamma == 0.0 and alpha is None
    if not label_smoothing and compiling() and z.requires_grad and torch.is_grad_enabled():
        return _traced_cross_entropy(z, target, col, scale, bias, divisor, weight, gamma, alpha, ignore_index, reduction)
    if not label_smoothing and take_fused(z, FUSE_MIN_NUMEL * (2 if plain_ce else 1)):
        z, safe, row_w = _rows(z, target, ignore_index, weight)
        add = None if col is None else col.index_select(0, safe)  # [N, 1]: each row's target shift
        row_scale = alpha.index_select(0, safe) if isinstance(alpha, Tensor) else alpha
        return _softmax_ce_fused(z, safe.unsqueeze(1), add, scale, bias, divisor, row_w, row_scale, gamma, reduction)
    return _plain(z, target, col, scale, bias, divisor, weight, gamma, alpha, ignore_index, reduction, label_smoothing)
