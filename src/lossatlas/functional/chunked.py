r"""A linear (or cosine) classification head fused with its loss, computed over blocks of classes.

With 10^5–10^7 classes (face recognition, extreme classification) the logit matrix
``Z = X Wᵀ`` [N, C], not the model, limits the batch: at N = 4,096 and C = 10^6 it is 16 GB
in float32, and its gradient as much again. :func:`chunked_linear_cross_entropy` computes
the head's matmul and the loss together, ``chunk_size`` classes at a time, with an online
log-sum-exp (a running maximum and a rescaled running sum of exponentials, as in
Milakov & Gimelshein 2018, "Online normalizer calculation for softmax"), and a custom
backward that recomputes each block's logits and accumulates ``∂L/∂X`` while it writes
``∂L/∂W`` block by block. It never holds N × C values: the extra memory is
O(N · chunk_size) (a few such blocks), besides the weight and its gradient. The result is
exact: the same value and gradients as the dense ``F.linear`` + loss, to rounding.

Losses (``loss=``), each the function of the same name in :mod:`lossatlas.functional`,
with that function's hyper-parameter names, defaults and checks (imported from its
:class:`~lossatlas._spec.Param` spec, not re-written here):

* ``"cross_entropy"``: ``u = X Wᵀ + b``; ``ℓ_i = LSE_j u_ij − u_iy`` (with
  ``label_smoothing`` ε: ``LSE_j u_ij − (1 − ε) u_iy − (ε / C) Σ_j u_ij``, torch's
  definition).
* ``"logit_adjusted"`` (Menon et al. 2021): ``u = X Wᵀ + b + τ log π``.
* ``"balanced_softmax"`` (Ren et al. 2020): ``u = X Wᵀ + b + log n``.
* ``"cosface"`` (Wang et al. 2018): ``u_ij = s cos θ_ij`` for ``j ≠ y_i`` and
  ``u_iy = s (cos θ_iy − m)``, with ``cos θ_ij = x̂_i · ŵ_j`` (rows L2-normalised).
* ``"arcface"`` (Deng et al. 2019): as CosFace with ``u_iy = s cos(θ_iy + m)``
  (:func:`lossatlas.functional.margin_logits`: ``cos θ − m sin m`` past ``θ = π − m``).
* ``"sface"`` (Zhong et al. 2021): ``ℓ_i = −σ(k(θ_iy − a)) s cos θ_iy
  + Σ_{j≠y} σ(−k(θ_ij − b)) s cos θ_ij`` with the sigmoid weights held constant.

For the margin softmaxes the margin applies to the target column only, so the kernel
computes ``s cos θ`` for every class, leaves each row's target column out of its running
statistics, and returns the target's raw value (``x̂_i · ŵ_{y_i}``) separately; the
margin, the log-sum-exp of the two parts and the smoothing term are then ordinary
differentiable operations on [N] vectors.

Class-parallel sharding (``class_parallel=True`` under an initialised ``torch.distributed``
group): each process holds a slice of the classes (its ``weight`` [C_r, D] are the classes
``[Σ_{q<r} C_q, Σ_{q≤r} C_q)``, in rank order) and passes its own batch (features [n_r, D],
targets as GLOBAL class ids). The batches are gathered (gradient back to each process's own
rows), each process runs the kernel over its classes, and the per-row statistics (maximum,
rescaled sum of exponentials, target logit, smoothing sum) are all-reduced. Every process
then holds the loss of the global batch over ALL classes, exactly, as Partial FC (An et al.
2021, "Partial FC: Training 10 Million Identities on a Single Machine") distributes the
classifier, but without sampling classes. Prior art for plain cross-entropy only:
cut-cross-entropy (Wijmans et al. 2024, "Cut Your Losses in Large-Vocabulary Language
Models") and Liger-Kernel's fused linear cross-entropy (Hsu et al. 2024).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from .._spec import COMMON, Param, any_number, as_bool, loss_function, spec_of
from .._validation import (
    check_class_indices,
    check_finite,
    check_float,
    check_same_device,
    compiling,
)
from ..distributed.gather import all_gather_with_grad, is_distributed
from ._common import compute_dtype, reduce_loss
from .imbalance import _la_bias, balanced_softmax, cross_entropy, logit_adjusted
from .metric import arcface, cosface, margin_logits, sface

__all__ = ["chunked_linear_cross_entropy"]

#: The losses :func:`chunked_linear_cross_entropy` computes, by the name of their function.
CHUNKED_LOSSES = ("cross_entropy", "logit_adjusted", "balanced_softmax", "arcface", "cosface", "sface")
_FUNCTIONS: dict[str, Callable[..., Tensor]] = {
    "cross_entropy": cross_entropy, "logit_adjusted": logit_adjusted, "balanced_softmax": balanced_softmax,
    "arcface": arcface, "cosface": cosface, "sface": sface,
}
_COSINE = ("arcface", "cosface", "sface")
_SOFTMAX = ("cross_entropy", "logit_adjusted", "balanced_softmax", "arcface", "cosface")
#: the per-loss hyper-parameters; their defaults and checks are those of the loss's own function
_OWN: dict[str, tuple[str, ...]] = {
    "cross_entropy": (), "logit_adjusted": ("tau",), "balanced_softmax": (),
    "arcface": ("margin", "scale"), "cosface": ("margin", "scale"), "sface": ("scale", "k", "a", "b"),
}
#: F.normalize's default eps, which the dense metric losses use for both features and weight
_NORM_EPS = 1e-12


def _loss_name(value: Any, name: str) -> str:
    """One of :data:`CHUNKED_LOSSES`."""
    if not isinstance(value, str) or value not in CHUNKED_LOSSES:
        raise ValueError(f"{name} must be one of {CHUNKED_LOSSES}, got {value!r}")
    return value


def _chunk(value: Any, name: str) -> int:
    """A positive int (classes per block)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def resolve_hparams(loss: str, given: dict[str, Any]) -> dict[str, Any]:
    """The loss-specific hyper-parameters of ``loss``: each given value checked with the
    check of ``loss``'s own function (e.g. ArcFace's margin in [0, π]), each ``None`` replaced
    by that function's default. A value given for a loss that does not use it is an error."""
    loss = _loss_name(loss, "loss")
    spec = spec_of(_FUNCTIONS[loss])
    out: dict[str, Any] = {}
    smoothing = given.pop("label_smoothing", 0.0)
    for name, value in given.items():
        if name in _OWN[loss]:
            out[name] = spec.defaults[name] if value is None else spec.check(name, value)
        elif value is not None:
            users = [k for k, v in _OWN.items() if name in v]
            raise ValueError(f"{name} is not a hyper-parameter of loss={loss!r} (it is one of {users})")
    if loss == "sface" and smoothing:
        raise ValueError("label_smoothing applies to the softmax losses, not to loss='sface'")
    return out


# --------------------------------------------------------------------------------------
# the kernel: per-row statistics over blocks of classes
# --------------------------------------------------------------------------------------
def _block(x: Tensor, weight: Tensor, shift: Tensor | None, s: int, e: int,
           cosine: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """Logits of classes [s, e): ``x Ŵᵀ + shift`` [N, e − s] (one addmm), the (normalised)
    block of the weight in the compute dtype, and its row norms (clamped at eps) when ``cosine``."""
    w = weight[s:e].to(x.dtype)
    norm = None
    if cosine:
        norm = w.norm(dim=1, keepdim=True).clamp_min(_NORM_EPS)
        w = w / norm
    z = x @ w.T if shift is None else torch.addmm(shift[s:e], x, w.T)
    return z, w, norm


def _column_shift(bias: Tensor | None, offset: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    if bias is None:
        return offset
    return bias.to(dtype) if offset is None else bias.to(dtype) + offset


def _set_target(z: Tensor, idx: Tensor, here: Tensor, value: float) -> None:
    """Set each row's target column of the block (rows whose target is in it) to ``value``."""
    current = z.gather(1, idx)
    z.scatter_(1, idx, torch.where(here, torch.full_like(current, value), current))


def _where_here(tl: Tensor, width: int) -> tuple[Tensor, Tensor]:
    here = (tl >= 0) & (tl < width)
    return tl.clamp(0, width - 1).unsqueeze(1), here.unsqueeze(1)


def _sface_weights(z: Tensor, k: float, b: float) -> Tensor:
    return torch.sigmoid(-k * (torch.acos(z.clamp(-1.0, 1.0)) - b))


def _finite_or_zero(x: Tensor) -> Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def _forward_loop(x: Tensor, weight: Tensor, bias: Tensor | None, offset: Tensor | None, target: Tensor, chunk: int,
                  cosine: bool, sface: bool, need_lin: bool, k: float, b: float,
                  start: int) -> tuple[Tensor, Tensor, Tensor]:
    """This process's per-row statistics (see :func:`_stats_op`), one block of classes at a time."""
    n, c = x.shape[0], weight.shape[0]
    local = target - start
    shift = _column_shift(bias, offset, x.dtype)
    stat = x.new_zeros((n,)) if sface else x.new_full((n,), float("-inf"))
    lin = x.new_zeros((n,))
    t = x.new_zeros((n,))
    for s in range(0, c, chunk):
        e = min(s + chunk, c)
        z, _, _ = _block(x, weight, shift, s, e, cosine)
        idx, here = _where_here(local - s, e - s)
        zt = torch.where(here, z.gather(1, idx), torch.zeros_like(t).unsqueeze(1)).squeeze(1)
        t += zt
        if sface:
            w = _sface_weights(z, k, b).mul_(z)
            _set_target(w, idx, here, 0.0)
            stat += w.sum(1)
            continue
        if need_lin:
            lin += z.sum(1) - zt
        _set_target(z, idx, here, float("-inf"))
        stat = torch.logaddexp(stat, torch.logsumexp(z, dim=1))  # the online log-sum-exp
    return stat, lin, t


def _backward_loop(x: Tensor, weight: Tensor, bias: Tensor | None, offset: Tensor | None, target: Tensor, stat: Tensor,
                   g_stat: Tensor, g_lin: Tensor, g_t: Tensor, chunk: int, cosine: bool, sface: bool, need_lin: bool,
                   k: float, b: float, start: int, need_x: bool, need_w: bool,
                   need_b: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``∂L/∂x``, ``∂L/∂weight``, ``∂L/∂bias`` (an empty [0] tensor where not needed), recomputing
    each block's logits; ``stat`` is the forward's first output over ALL classes."""
    need_b = need_b and bias is not None
    grad_x = torch.zeros_like(x) if need_x else x.new_empty((0,))
    grad_w = torch.zeros_like(weight) if need_w else weight.new_empty((0,))
    grad_b = torch.zeros_like(bias) if need_b and bias is not None else x.new_empty((0,))
    local = target - start
    shift = _column_shift(bias, offset, x.dtype)
    lse = _finite_or_zero(stat).unsqueeze(1)
    for s in range(0, weight.shape[0], chunk):
        e = min(s + chunk, weight.shape[0])
        z, w, norm = _block(x, weight, shift, s, e, cosine)
        idx, here = _where_here(local - s, e - s)
        if sface:  # ∂L/∂z_ij = g_stat_i · w_ij
            g = _sface_weights(z, k, b).mul_(g_stat.unsqueeze(1))
        else:  # ∂L/∂z_ij = g_stat_i · softmax over the non-target classes (z)_ij + g_lin_i
            g = z.sub_(lse).exp_().mul_(g_stat.unsqueeze(1))
            if need_lin:
                g.add_(g_lin.unsqueeze(1))
        _set_target(g, idx, here, 0.0)  # the target column: ∂L/∂t only
        g.scatter_add_(1, idx, torch.where(here, g_t.unsqueeze(1), torch.zeros_like(g_t).unsqueeze(1)))
        if need_x:
            grad_x.addmm_(g, w)
        if need_w:
            if norm is None and grad_w.dtype == g.dtype:
                torch.mm(g.T, x, out=grad_w[s:e])
            else:
                gw = g.T @ x
                if norm is not None:  # through ŵ = w / max(‖w‖, eps): (gŵ − ŵ (ŵ·gŵ)) / ‖w‖ above eps
                    radial = torch.where(norm > _NORM_EPS, (w * gw).sum(1, keepdim=True), torch.zeros_like(norm))
                    gw = (gw - w * radial) / norm
                grad_w[s:e] = gw.to(weight.dtype)
        if need_b:
            grad_b[s:e] = g.sum(0).to(grad_b.dtype)
    return grad_x, grad_w, grad_b


# The two loops are custom operators, opaque to torch.compile: the compiled graph holds one
# call to each whatever C / chunk (tracing the loop unrolled it into C / chunk graph steps,
# and compiling at C = 10^6 did not finish in 11 minutes). Pure torch code inside.
@torch.library.custom_op("lossatlas::chunked_stats", mutates_args=())
def _stats_op(x: Tensor, weight: Tensor, bias: Tensor | None, offset: Tensor | None, target: Tensor, chunk: int,
              cosine: bool, sface: bool, need_lin: bool, k: float, b: float,
              start: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row statistics of the logits ``z = x Ŵᵀ + bias + offset`` over this process's
    classes, ``chunk`` classes at a time (``Ŵ`` row-normalised when ``cosine``; ``start`` is
    the global id of the first class of ``weight``).

    Softmax mode returns ``(lse, lin, t)``: the log-sum-exp over each row's non-target
    classes, their sum (for label smoothing; zeros unless ``need_lin``) and the target value
    ``t = z_iy``. SFace mode returns ``(Σ_{j≠y} w_ij z_ij, 0, t)`` with the constant weights
    ``w = σ(−k(acos z − b))``."""
    return _forward_loop(x, weight, bias, offset, target, chunk, cosine, sface, need_lin, k, b, start)


@_stats_op.register_fake
def _(x: Tensor, weight: Tensor, bias: Tensor | None, offset: Tensor | None, target: Tensor, chunk: int,
      cosine: bool, sface: bool, need_lin: bool, k: float, b: float, start: int) -> tuple[Tensor, Tensor, Tensor]:
    n = x.shape[0]
    return x.new_empty((n,)), x.new_empty((n,)), x.new_empty((n,))


@torch.library.custom_op("lossatlas::chunked_stats_backward", mutates_args=())
def _stats_backward_op(x: Tensor, weight: Tensor, bias: Tensor | None, offset: Tensor | None, target: Tensor,
                       stat: Tensor, g_stat: Tensor, g_lin: Tensor, g_t: Tensor, chunk: int, cosine: bool, sface: bool,
                       need_lin: bool, k: float, b: float, start: int, need_x: bool, need_w: bool,
                       need_b: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The gradients of :func:`_stats_op`'s inputs ``x``, ``weight``, ``bias`` from those of
    its outputs (an empty [0] tensor for one not needed)."""
    return _backward_loop(x, weight, bias, offset, target, stat, g_stat, g_lin, g_t, chunk, cosine, sface, need_lin,
                          k, b, start, need_x, need_w, need_b)


@_stats_backward_op.register_fake
def _(x: Tensor, weight: Tensor, bias: Tensor | None, offset: Tensor | None, target: Tensor, stat: Tensor,
      g_stat: Tensor, g_lin: Tensor, g_t: Tensor, chunk: int, cosine: bool, sface: bool, need_lin: bool, k: float,
      b: float, start: int, need_x: bool, need_w: bool, need_b: bool) -> tuple[Tensor, Tensor, Tensor]:
    return (torch.empty_like(x) if need_x else x.new_empty((0,)),
            torch.empty_like(weight) if need_w else weight.new_empty((0,)),
            torch.empty_like(bias) if need_b and bias is not None else x.new_empty((0,)))


def _save(ctx: Any, inputs: tuple[Any, ...], stat: Tensor) -> None:
    x, weight, bias, offset, target, *cfg = inputs
    ctx.save_for_backward(x, weight, bias, offset, target, stat)
    ctx.cfg = tuple(cfg[:7])


def _grads(ctx: Any, g_stat: Tensor, g_lin: Tensor, g_t: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    x, weight, bias, offset, target, stat = ctx.saved_tensors
    need = tuple(bool(v) for v in ctx.needs_input_grad[:3])
    gx, gw, gb = _stats_backward_op(x, weight, bias, offset, target, stat, g_stat, g_lin, g_t, *ctx.cfg, *need)
    return gx if need[0] else None, gw if need[1] else None, gb if need[2] and bias is not None else None


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor, Tensor]) -> None:
    _save(ctx, inputs, output[0])


def _backward(ctx: Any, g_stat: Tensor, g_lin: Tensor, g_t: Tensor) -> tuple[Tensor | None, ...]:
    return _grads(ctx, g_stat, g_lin, g_t) + (None,) * 9


_stats_op.register_autograd(_backward, setup_context=_setup_context)


class _ShardedStats(torch.autograd.Function):
    """:func:`_stats_op` over this process's classes, its statistics then all-reduced over the
    class-parallel group (eager only: the collectives are not part of the custom operator)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, offset: Tensor | None, target: Tensor,
                chunk: int, cosine: bool, sface: bool, need_lin: bool, k: float, b: float,
                start: int, group: Any) -> tuple[Tensor, Tensor, Tensor]:
        stat, lin, t = _stats_op(x, weight, bias, offset, target, chunk, cosine, sface, need_lin, k, b, start)
        if not sface:  # Σ_r exp(lse_r), about the largest lse_r
            top = stat.clone()
            dist.all_reduce(top, op=dist.ReduceOp.MAX, group=group)
            ref = _finite_or_zero(top)
            acc = torch.exp(stat - ref)
            dist.all_reduce(acc, op=dist.ReduceOp.SUM, group=group)
            stat = acc.log() + ref
        for v in ((stat, lin, t) if sface else (lin, t)):
            dist.all_reduce(v, op=dist.ReduceOp.SUM, group=group)
        _save(ctx, (x, weight, bias, offset, target, chunk, cosine, sface, need_lin, k, b, start), stat)
        return stat, lin, t

    @staticmethod
    def backward(ctx: Any, g_stat: Tensor, g_lin: Tensor, g_t: Tensor) -> tuple[Tensor | None, ...]:
        return _grads(ctx, g_stat, g_lin, g_t) + (None,) * 10


_sharded_stats = cast(Callable[..., tuple[Tensor, Tensor, Tensor]], _ShardedStats.apply)  # Function.apply is unannotated


# --------------------------------------------------------------------------------------
# the public function
# --------------------------------------------------------------------------------------
def _per_loss(loss: str) -> str:
    return f"the default and check of ``lossatlas.functional.{loss}``'s"


@loss_function(inputs=("features", "weight", "target"), call=("bias", "process_group"), params={
    "loss": Param(f"which loss, by its function's name: one of {CHUNKED_LOSSES}", _loss_name),
    "chunk_size": Param("classes per block; the extra memory is a few [N, chunk_size] blocks", _chunk,
                        "4096: about 64 MB per float32 block at N = 4096"),
    "label_smoothing": Param("ε in [0, 1] for the softmax losses: the target is ``(1 − ε)·e_y + ε/C``",
                             spec_of(cross_entropy).params["label_smoothing"].check,
                             spec_of(cross_entropy).params["label_smoothing"].source),
    "class_counts": COMMON["class_counts"],
    "tau": Param(f"τ of ``'logit_adjusted'`` (``None``: {_per_loss('logit_adjusted')})", any_number,
                 spec_of(logit_adjusted).params["tau"].source),
    "margin": Param("m of ``'arcface'`` (radians) / ``'cosface'`` (``None``: that function's default and check)",
                    any_number, "lossatlas.functional.arcface (0.5) / cosface (0.35)"),
    "scale": Param("s of the cosine losses (``None``: that function's default and check)", any_number,
                   "lossatlas.functional.arcface / cosface / sface (64)"),
    "k": Param(f"k of ``'sface'`` (``None``: {_per_loss('sface')})", any_number, spec_of(sface).params["k"].source),
    "a": Param(f"a of ``'sface'`` (``None``: {_per_loss('sface')})", any_number, spec_of(sface).params["a"].source),
    "b": Param(f"b of ``'sface'`` (``None``: {_per_loss('sface')})", any_number, spec_of(sface).params["b"].source),
    "class_parallel": Param("under torch.distributed: ``weight`` is this process's slice of the classes "
                            "(in rank order) and the loss is the global batch's over all classes", as_bool),
})
def chunked_linear_cross_entropy(
    features: Tensor,
    weight: Tensor,
    target: Tensor,
    *,
    bias: Tensor | None = None,
    loss: str = "cross_entropy",
    chunk_size: int = 4096,
    label_smoothing: float = 0.0,
    class_counts: Tensor | None = None,
    tau: float | None = None,
    margin: float | None = None,
    scale: float | None = None,
    k: float | None = None,
    a: float | None = None,
    b: float | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
    class_parallel: bool = False,
    process_group: Any = None,
) -> Tensor:
    r"""The loss of a linear / cosine classification head over many classes, without N × C logits.

    Equals ``la.functional.<loss>(F.linear(features, weight, bias), target, ...)`` for the
    linear losses and ``la.functional.<loss>(features, target, weight, ...)`` for the cosine
    ones (ArcFace, CosFace, SFace normalise the rows of both), in value and gradients (to
    rounding), computing the logits ``chunk_size`` classes at a time with an online
    log-sum-exp and a custom backward that recomputes them block by block:

    .. math:: \ell_i = \log\Big(e^{u_{iy}} + \sum_{j \ne y_i} e^{u_{ij}}\Big) - (1-\varepsilon)\,u_{iy}
              - \frac{\varepsilon}{C}\sum_j u_{ij}

    with ``u`` the loss's logits (module docstring: :mod:`lossatlas.functional.chunked`).
    The margins and scales are those of :func:`~lossatlas.functional.arcface`,
    :func:`~lossatlas.functional.cosface`, :func:`~lossatlas.functional.sface` and the
    prior adjustments those of :func:`~lossatlas.functional.logit_adjusted` (Menon et al.
    2021, "Long-tail learning via logit adjustment") and
    :func:`~lossatlas.functional.balanced_softmax` (Ren et al. 2020, "Balanced Meta-Softmax
    for Long-Tailed Visual Recognition"): ``None`` takes that function's default, and a value
    is checked by that function's check. Papers of the margins: Deng et al. 2019 (ArcFace),
    Wang et al. 2018 (CosFace), Zhong et al. 2021 (SFace). Class-parallel sharding follows
    Partial FC (An et al. 2021) over all classes; fused linear cross-entropy
    (cut-cross-entropy, Liger-Kernel) is the prior art for plain cross-entropy.

    Shapes: ``features`` [N, D] (float), ``weight`` [C, D] (``nn.Linear`` layout), ``bias``
    [C] or ``None`` (linear losses only), ``target`` int64 [N] in [0, C) or
    ``ignore_index`` (ignored rows leave the mean). Output: a scalar, or [N] for
    ``reduction="none"``, in ``features``' dtype (float16 / bfloat16 computed in float32).
    With ``class_parallel=True`` under an initialised process group of size > 1, ``weight``
    and ``bias`` are this process's classes, ``class_counts`` covers all C classes, ``target``
    holds global class ids, and the result is the global batch's (``"none"``: [N_global],
    the same on every process).

    ``validate`` checks that ``features`` are finite and ``target``'s range (one host read);
    ``weight`` is not scanned (C × D). Under ``torch.compile`` (``fullgraph=True`` works) the
    value checks are skipped and the two block loops are custom operators
    (``torch.ops.lossatlas.chunked_stats`` and ``chunked_stats_backward``), opaque to the
    compiler: the graph has one call to each whatever C, so compiling takes the same seconds at
    C = 10^6 as at 10^3; the loops themselves run as in eager mode (no fusion inside them).
    Class-parallel collectives are not supported there.

    {args}

    Example:
        >>> import torch, lossatlas as la
        >>> x, w, y = torch.randn(8, 16), torch.randn(1000, 16), torch.randint(0, 1000, (8,))
        >>> bool(torch.isclose(la.functional.chunked_linear_cross_entropy(x, w, y, chunk_size=256), torch.nn.functional.cross_entropy(x @ w.T, y)))
        True
    """
    own = resolve_hparams(loss, {"tau": tau, "margin": margin, "scale": scale, "k": k, "a": a, "b": b,
                                 "label_smoothing": label_smoothing})
    cosine = loss in _COSINE
    check_float(features, "features")
    check_float(weight, "weight")
    if features.dim() != 2:
        raise ValueError(f"features must have shape [N, D], got {tuple(features.shape)}")
    if weight.dim() != 2 or weight.shape[1] != features.shape[1]:
        raise ValueError(f"weight must have shape [num_classes, D] = [C, {features.shape[1]}] (nn.Linear layout), "
                         f"got {tuple(weight.shape)}")
    check_same_device("features", features, "weight", weight)
    target = check_class_indices(target, "target")
    if target.dim() != 1 or target.shape[0] != features.shape[0]:
        raise ValueError(f"target must have shape [N] = [{features.shape[0]}] to match features "
                         f"{tuple(features.shape)}, got {tuple(target.shape)}")
    check_same_device("features", features, "target", target)
    if bias is not None:
        if cosine:
            raise ValueError(f"bias must be None for loss={loss!r}: its logits are scaled cosines, which have no bias")
        check_float(bias, "bias")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape [C] = [{weight.shape[0]}] (one per row of weight), "
                             f"got {tuple(bias.shape)}")
        check_same_device("weight", weight, "bias", bias)
    if loss in ("logit_adjusted", "balanced_softmax"):
        if class_counts is None:
            raise ValueError(f"loss={loss!r} needs class_counts (training samples per class, [C])")
    elif class_counts is not None:
        raise ValueError(f"class_counts is not a hyper-parameter of loss={loss!r} (it is one of "
                         "['logit_adjusted', 'balanced_softmax'])")
    check_finite(features, "features", validate)

    sharded = class_parallel and is_distributed(process_group)
    group = process_group
    out_dtype = features.dtype
    dt = torch.promote_types(compute_dtype(features), compute_dtype(weight))
    x = features.to(dt)
    start, num_classes = 0, weight.shape[0]
    if sharded:
        x, _ = all_gather_with_grad(x, group)
        target, _ = all_gather_with_grad(target, group)
        sizes = [torch.zeros(1, dtype=torch.long, device=weight.device) for _ in range(dist.get_world_size(group))]
        dist.all_gather(sizes, torch.tensor([weight.shape[0]], device=weight.device), group=group)
        counts = [int(v) for v in sizes]
        start, num_classes = sum(counts[: dist.get_rank(group)]), sum(counts)
    if validate and not compiling() and target.numel():
        bad = ((target < 0) | (target >= num_classes)) & (target != ignore_index)
        if bool(bad.any()):
            raise ValueError(f"target values must be in [0, {num_classes}) (num_classes={num_classes}, the rows of "
                             f"weight) or ignore_index={ignore_index}; found {target[bad][:5].tolist()}")
    keep = target != ignore_index
    safe = torch.where(keep, target, torch.zeros_like(target))

    offset = None
    if class_counts is not None:
        if class_counts.numel() != num_classes:
            raise ValueError(f"class_counts has {class_counts.numel()} entries but there are {num_classes} classes "
                             "(the rows of weight, over all processes)")
        full = _la_bias(class_counts, own["tau"]) if loss == "logit_adjusted" else torch.log(class_counts)
        offset = full.to(device=x.device, dtype=dt)
    local_offset = None if offset is None else offset[start : start + weight.shape[0]]

    smoothing = float(label_smoothing)
    s = float(own.get("scale", 1.0))
    if cosine:  # the softmax margins' kernel sees s·x̂, so its logits are s·cos θ
        x = F.normalize(x, dim=1)
        if loss != "sface":
            x = s * x
    cfg = (chunk_size, cosine, loss == "sface", smoothing > 0, float(own.get("k", 0.0)), float(own.get("b", 0.0)), start)
    if sharded:
        stat, lin, t = _sharded_stats(x, weight, bias, local_offset, safe, *cfg, group)
    else:
        stat, lin, t = _stats_op(x, weight, bias, local_offset, safe, *cfg)
    if loss == "sface":
        with torch.no_grad():
            w_intra = torch.sigmoid(own["k"] * (torch.acos(t.clamp(-1.0, 1.0)) - own["a"]))
        losses = -w_intra * s * t + s * stat
    else:
        # t is the target's logit (u_iy: x·w_y + b_y + offset_y) or s·cos θ_iy, before its margin
        u_t = s * margin_logits((t / s).unsqueeze(1), torch.zeros_like(safe), loss, own["margin"]).squeeze(1) if cosine else t
        losses = torch.logaddexp(stat, u_t) - (1.0 - smoothing) * u_t
        if smoothing > 0:
            losses = losses - (smoothing / num_classes) * (lin + u_t)
    return reduce_loss(losses, reduction, keep.to(dt), out_dtype)

