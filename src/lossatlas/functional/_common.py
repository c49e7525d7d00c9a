"""Pieces every classification loss shares: reduction, dtype handling, target masks."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .._spec import fresh, mean_divisor
from .._validation import (
    as_class_weight,
    check_class_target,
    check_finite,
    check_float,
    check_logits,
    check_num_classes,
    check_reduction,
    check_unmasked_targets,
    compiling,
)

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def compute_dtype(x: Tensor) -> torch.dtype:
    """float16/bfloat16 inputs are computed in float32 (the loss is returned in the input dtype)."""
    return torch.float32 if x.dtype in _LOW_PRECISION else x.dtype


def reduce_loss(
    losses: Tensor,
    reduction: str,
    weights: Tensor | None = None,
    out_dtype: torch.dtype | None = None,
) -> Tensor:
    """Reduce per-sample ``losses`` [N] with torch semantics.

    ``weights`` [N] (per-sample, e.g. class weight of the target, 0 for ignored samples)
    turn ``"mean"`` into the weighted mean ``Σ w_i l_i / Σ w_i`` (as ``F.cross_entropy``
    does with ``weight=``) and ``"none"``/``"sum"`` into ``w_i l_i``. A mean over an empty
    batch (or one where every weight is zero) is 0, connected to the graph, rather than NaN.
    """
    if weights is not None:
        losses = losses * weights
    if reduction == "none":
        out = losses
    elif reduction == "sum":
        out = losses.sum()
    elif weights is not None:
        out = losses.sum() / mean_divisor(weights.sum())
    else:
        out = losses.mean() if losses.numel() else losses.sum()
    return fresh(out if out_dtype is None else out.to(out_dtype))


def prepare_classification(
    logits: Tensor,
    target: Tensor,
    reduction: str,
    validate: bool,
    weight: Tensor | None = None,
    ignore_index: int | None = None,
    lazy_mask: bool = False,
    blank_ignored: bool = True,
) -> tuple[Tensor, Tensor, Tensor | None, torch.dtype]:
    """Validate and normalise (logits, integer target) for a per-sample classification loss.

    Returns ``(z, safe_target, sample_weights, out_dtype)`` where ``z`` is the logits in the
    compute dtype, ``safe_target`` has ignored entries replaced by 0, and ``sample_weights``
    is ``weight[target]`` times the not-ignored mask (``None`` when neither applies).
    ``lazy_mask=True`` (fused CPU paths; one host read) builds the mask only when some target
    can be ``ignore_index``: the usual batch with nothing ignored then costs two operator
    calls instead of the mask's four and the later test that its weights are all 1.
    ``blank_ignored=False``: ignored rows' logits are left as they are (the caller's kernel
    keeps them out of the loss and the gradient itself, e.g. :func:`~._fused.traced_log_target`).
    """
    check_reduction(reduction)
    masked = check_finite_logits(logits, validate)
    check_class_target(target, logits, validate, ignore_index)
    out_dtype = logits.dtype
    z = logits.float() if out_dtype in _LOW_PRECISION else logits
    sample_weights = None
    safe_target = target
    check_ignore_index(ignore_index, logits.shape[1])
    mask = None
    if ignore_index is not None and not (lazy_mask and none_ignored(target, ignore_index)):
        mask = target != ignore_index
        safe_target = torch.where(mask, target, torch.zeros_like(target))
    if masked:  # a -inf logit was seen: it must not be a target's
        check_unmasked_targets(logits, safe_target, mask)
    if mask is not None and blank_ignored and (masked or not validate or compiling()):
        # an ignored row's logits may hold -inf (a masked class, maybe its placeholder target 0):
        # every loss would be inf or NaN there, and ×0 keeps NaN in the value and the gradient
        z = blank_rows(z, mask)
    w = as_class_weight(weight)
    if w is not None:
        check_num_classes(w, logits, "weight")
        sample_weights = w.to(device=logits.device, dtype=z.dtype)[safe_target]
    if mask is not None:
        m = mask.to(z.dtype)
        sample_weights = m if sample_weights is None else sample_weights * m
    return z, safe_target, sample_weights, out_dtype


def none_ignored(target: Tensor, ignore_index: int) -> bool:
    """Whether no entry of ``target`` can be ``ignore_index`` (one reduction and one host read):
    every entry is above a negative ``ignore_index`` or below a nonnegative one."""
    if not target.numel():
        return False
    return int(target.amin()) > ignore_index if ignore_index < 0 else int(target.amax()) < ignore_index


def blank_rows(z: Tensor, keep: Tensor) -> Tensor:
    """``z`` [N, C] with the rows where ``keep`` [N] is False replaced by zeros (the ignored rows:
    whatever they hold, -inf included, reaches neither the loss nor the gradient, which is 0
    there). One pass over [N, C]; the callers run it only where such a row may hold -inf."""
    return torch.where(keep.unsqueeze(1), z, 0.0)


def check_finite_logits(logits: Any, validate: bool) -> bool:
    """:func:`check_logits` for a classification loss: ``-inf`` (a masked class) is allowed;
    returns whether one may be present (then the caller checks that no target is masked)."""
    z = check_logits(logits, validate=False)
    return check_finite(z, "logits", validate, allow_neg_inf=True)


def check_ignore_index(ignore_index: int | None, num_classes: int) -> None:
    """``ignore_index`` must not be a real class (it would silently drop that class)."""
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        raise ValueError(f"ignore_index={ignore_index} is a valid class index for {num_classes} classes; use a negative value such as -100")


def check_classification_deferred(
    logits: Tensor, target: Tensor, reduction: str, validate: bool, ignore_index: int | None = None
) -> tuple[Tensor, torch.dtype, bool]:
    """Validate (logits, integer target) for a caller whose next step is an ATen cross-entropy
    kernel; returns ``(logits in the compute dtype, output dtype, deferred)``.

    The value checks are moved after the kernel, where they cost almost nothing: the caller
    passes the third return value (True when ``validate`` and not tracing) to
    :func:`run_deferred`, which

    * checks the *loss* for NaN/Inf (one host read of a scalar, or a sum over N values) and
      only then scans ``logits``: NaN/Inf logits raise the same ``ValueError`` as before,
      except ``-inf`` in a non-target column, which gives a finite loss (a masked class) and
      is accepted;
    * on CPU, where ATen's kernels bound-check every target themselves, turns a kernel error
      on a bad target into the target check's ``ValueError`` (on CUDA, whose device asserts
      cannot be caught, the target is checked before the kernel, as before).
    """
    check_reduction(reduction)
    deferred = validate and not compiling()
    check_logits(logits, validate and not deferred)
    check_class_target(target, logits, validate and not (deferred and logits.device.type == "cpu"), ignore_index)
    dt = logits.dtype
    return (logits.float() if dt in _LOW_PRECISION else logits), dt, deferred


def raise_target_error(deferred: bool, target: Tensor, logits: Tensor, ignore_index: int | None) -> None:
    """After a kernel raised: run the deferred target check (raises its ``ValueError`` if the
    target is out of range); the caller re-raises the kernel's error otherwise."""
    if deferred:
        try:
            check_class_target(target, logits, True, ignore_index)
        except ValueError as exc:
            raise exc from None  # the kernel's IndexError is an implementation detail


def run_deferred(
    kernel: Callable[[], Tensor],
    deferred: bool,
    target: Tensor,
    logits: Tensor,
    ignore_index: int | None,
    out_dtype: torch.dtype,
    nonfinite_is_error: Callable[[], bool] | None = None,
) -> Tensor:
    """``kernel()`` cast to ``out_dtype``, with the value checks that
    :func:`check_classification_deferred` moved after it: a non-finite loss means NaN/Inf
    logits (then their ``ValueError``), unless ``nonfinite_is_error()`` says the loss is
    infinite by definition (label smoothing over a masked class)."""
    try:
        out = kernel()
    except (IndexError, RuntimeError):
        raise_target_error(deferred, target, logits, ignore_index)
        raise
    if deferred and out.numel():
        total = out.detach() if out.dim() == 0 else out.detach().sum()
        if not math.isfinite(total.item()) and (nonfinite_is_error is None or nonfinite_is_error()):
            check_finite(logits, "logits", True)
    return out if out.dtype == out_dtype else out.to(out_dtype)


def class_weight_like(weight: Tensor | Sequence[float] | None, z: Tensor, validate: bool = True) -> Tensor | None:
    """Per-class weights [C] checked against ``z`` [N, C] and cast to its device and dtype."""
    w = as_class_weight(weight) if validate or not isinstance(weight, Tensor) else weight
    if w is None:
        return None
    check_num_classes(w, z, "weight")
    return w.to(device=z.device, dtype=z.dtype)


def target_logit(z: Tensor, target: Tensor) -> Tensor:
    """z[i, target_i] as a [N] tensor."""
    return z.gather(1, target.unsqueeze(1)).squeeze(1)


def add_to_target(z: Tensor, target: Tensor, delta: Tensor) -> Tensor:
    """Return a copy of ``z`` with ``delta`` [N] added to each row's target logit (no one-hot)."""
    idx = target.unsqueeze(1)
    return z.scatter_add(1, idx, delta.unsqueeze(1).to(z.dtype))


def check_companion_logits(other: Any, logits: Tensor, name: str, validate: bool, *, stacked: bool = False) -> Tensor:
    """A second logit tensor of the same batch (adversarial or mixup-augmented inputs' logits):
    a float tensor of ``logits``' shape [N, C] (or, with ``stacked``, [N, M, C]: M per sample),
    device and dtype, without NaN/+Inf (``-inf`` is a masked class). Returned in the compute dtype."""
    z = check_float(other, name)
    shape = (logits.shape[0], logits.shape[1])
    if z.dim() not in ((2, 3) if stacked else (2,)) or (z.shape[0], z.shape[-1]) != shape:
        want = f"[N, C] = {list(shape)}" + (" or [N, M, C]" if stacked else "")
        raise ValueError(f"{name} must have shape {want} (the logits' batch and classes), got {tuple(z.shape)}")
    if z.device != logits.device:
        raise ValueError(f"{name} is on {z.device} but logits is on {logits.device}; move them to one device")
    if z.dtype != logits.dtype:
        raise TypeError(f"{name} has dtype {z.dtype} but logits has {logits.dtype}; cast one of them")
    check_finite(z, name, validate, allow_neg_inf=True)
    return z.float() if z.dtype in _LOW_PRECISION else z
