"""Argument checks shared by every loss, in the style of scikit-learn's messages.

Checks that need the values of a tensor (finiteness, target range) synchronise a CUDA
device with the host; they run only when ``validate=True`` (the default) and never while
``torch.compile`` traces. Shape, dtype and device checks are free and always run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

Tensor = torch.Tensor

REDUCTIONS = ("mean", "sum", "none")


def compiling() -> bool:
    return bool(torch.compiler.is_compiling())


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def check_tensor(x: Any, name: str) -> Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_float(x: Any, name: str) -> Tensor:
    t = check_tensor(x, name)
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}; cast it with .float()")
    return t


def check_finite(x: Tensor, name: str, validate: bool, *, allow_neg_inf: bool = False, **more: Tensor) -> bool:
    """Raise ``ValueError`` naming the first of ``x`` (called ``name``) and ``more`` (name=tensor)
    that holds NaN/Inf (NaN/+Inf with ``allow_neg_inf``, e.g. logits of a masked class).

    One reduction (a sum) per tensor is ~40x cheaper than ``isfinite(x).all()``: NaN/Inf
    propagate into the sums, read on the host once for all tensors, and only a non-finite
    total (which may also be an overflow of huge finite values) pays for the exact check.
    Returns whether that exact check ran (then ``-inf`` may be present, where allowed).
    """
    if not validate or compiling():
        return False
    tensors = {name: x, **more}
    sums = [t.detach().sum() for t in tensors.values() if t.numel()]  # detached: no graph node
    if not sums or math.isfinite(float(sum(sums))):
        return False
    for label, t in tensors.items():
        if not t.numel():
            continue
        if allow_neg_inf:
            if bool((torch.isnan(t) | torch.isposinf(t)).any()):
                raise ValueError(f"{label} contains NaN or +Inf values; check the model output or the data "
                                 "(-inf is allowed: a masked class)")
        elif not bool(torch.isfinite(t).all()):
            raise ValueError(f"{label} contains NaN or Inf values; check the model output or the data")
    return True


def check_same_device(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.device != b.device:
        raise ValueError(f"{name_a} is on {a.device} but {name_b} is on {b.device}; move them to the same device")


def check_logits(logits: Any, validate: bool = True, name: str = "logits", *, masked: bool = False) -> Tensor:
    """A float [N, C] tensor with C >= 1, without NaN/Inf (with ``masked``, ``-inf`` is allowed:
    a masked class; the caller checks that no target is masked, see :func:`check_unmasked_targets`)."""
    z = check_float(logits, name)
    if z.dim() != 2:
        raise ValueError(f"{name} must have shape [N, C], got {tuple(z.shape)}")
    if z.shape[1] < 1:
        raise ValueError(f"{name} must have at least one class column, got shape {tuple(z.shape)}")
    check_finite(z, name, validate, allow_neg_inf=masked)
    return z


def check_unmasked_targets(logits: Tensor, safe_target: Tensor, keep: Tensor | None, name: str = "logits") -> None:
    """``ValueError`` if a row's target logit is ``-inf`` (its class is masked, so its loss is
    infinite); ``keep`` marks the rows that count (not ignored). One gather, on the host."""
    t = logits.detach().gather(1, safe_target.unsqueeze(1)).squeeze(1)
    bad = torch.isneginf(t) if keep is None else torch.isneginf(t) & keep
    if bool(bad.any()):
        rows = bad.nonzero().flatten()[:5].tolist()
        raise ValueError(f"{name} is -inf at the target class of row(s) {rows}: a masked class cannot be the target")


#: The dtypes every loss takes as class indices (targets, labels), computed with as int64.
#: torch's ``F.cross_entropy`` takes int64 and uint8 and rejects int32/int16/int8; uint8 is
#: left out until every caller computes with :func:`check_class_target`'s returned tensor
#: (a uint8 tensor used as an index is a boolean mask), so that each dtype is accepted by
#: every loss or refused by every loss with the same ``TypeError``.
CLASS_INDEX_DTYPES: tuple[torch.dtype, ...] = (torch.int64,)


def check_class_indices(target: Any, name: str = "target", hint: str = "") -> Tensor:
    """Class indices as an int64 tensor (any shape; values unchecked).

    A tensor of a dtype in :data:`CLASS_INDEX_DTYPES` is returned as int64 (cast once if
    needed); any other dtype raises ``TypeError`` naming ``name`` (``hint`` is appended for a
    float, bool or complex tensor).
    """
    t = check_tensor(target, name)
    if t.dtype in CLASS_INDEX_DTYPES:
        return t if t.dtype == torch.int64 else t.to(torch.int64)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise TypeError(
            f"{name} must hold integer class indices (torch.long), got dtype {t.dtype}" + (f"; {hint}" if hint else "")
        )
    accepted = ", ".join(str(d) for d in CLASS_INDEX_DTYPES)
    raise TypeError(
        f"{name} must hold class indices of dtype {accepted} (torch.long), got dtype {t.dtype}; "
        f"cast it once with {name}.long()"
    )


def check_class_target(
    target: Any,
    logits: Tensor,
    validate: bool = True,
    ignore_index: int | None = None,
    name: str = "target",
) -> Tensor:
    """An int64 [N] tensor of class indices in [0, C) (or ``ignore_index``)."""
    t = check_class_indices(target, name, "this loss does not accept probability targets")
    if t.dim() != 1 or t.shape[0] != logits.shape[0]:
        raise ValueError(
            f"{name} must have shape [N] = [{logits.shape[0]}] to match logits {tuple(logits.shape)}, "
            f"got {tuple(t.shape)}"
        )
    check_same_device("logits", logits, name, t)
    if validate and not compiling() and t.numel():
        num_classes = logits.shape[1]
        lo, hi = (int(v) for v in torch.aminmax(t))  # one cheap pass; exact check only if needed
        if lo >= 0 and hi < num_classes:
            return t
        valid = (t >= 0) & (t < num_classes)
        if ignore_index is not None:
            valid |= t == ignore_index
        if not bool(valid.all()):
            bad = t[~valid][:5].tolist()
            raise ValueError(
                f"{name} values must be in [0, {num_classes}) for logits with {num_classes} classes"
                + (f" (or ignore_index={ignore_index})" if ignore_index is not None else "")
                + f"; found {bad}"
            )
    return t


def check_multilabel_target(target: Any, logits: Tensor, validate: bool = True, name: str = "target") -> Tensor:
    """A float [N, C] tensor of values in [0, 1], same shape as logits."""
    y = check_tensor(target, name)
    if y.shape != logits.shape:
        raise ValueError(f"{name} must have the shape of logits {tuple(logits.shape)}, got {tuple(y.shape)}")
    check_same_device("logits", logits, name, y)
    if validate and not compiling() and y.numel():
        t = y.to(torch.float32) if not y.is_floating_point() else y
        lo, hi = torch.aminmax(t.detach())  # one pass; NaN propagates and fails both comparisons
        if not (float(lo) >= 0 and float(hi) <= 1):
            raise ValueError(f"{name} values must lie in [0, 1] (multi-hot or probabilities)")
    return y


def as_count_vector(values: Any, name: str, sequences: tuple[type, ...]) -> Tensor:
    """A non-empty 1-D float64 CPU tensor of per-class numbers, from a tensor or one of ``sequences``
    (strings excluded); the values themselves are the caller's to check."""
    if isinstance(values, torch.Tensor):
        out = values.detach().to("cpu", torch.float64)
    elif isinstance(values, sequences) and not isinstance(values, (str, bytes)):
        try:
            out = torch.as_tensor(np.asarray(values, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be a sequence of numbers, got {values!r}") from exc
    else:
        raise TypeError(f"{name} must be a list, numpy array or tensor of per-class counts, got {type(values).__name__}")
    if out.dim() != 1 or out.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence (one count per class), got shape {tuple(out.shape)}")
    return out


def as_class_counts(class_counts: Any, name: str = "class_counts") -> Tensor:
    """Validate class counts and return them as a float64 CPU tensor [C].

    Accepts a list, tuple, numpy array or tensor of positive, finite numbers (their values
    are not checked under ``torch.compile``, where reading them would break the graph).
    """
    if class_counts is None:
        raise ValueError(
            f"{name} is required: pass the number of training samples per class, "
            "e.g. lossatlas.data.class_counts(train_labels)"
        )
    counts = as_count_vector(class_counts, name, (Sequence, np.ndarray))
    if compiling():  # the values' checks read them on the host: under torch.compile, a graph break
        return counts
    if not bool(torch.isfinite(counts).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    bad = (counts <= 0).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"{name} must be positive for every class; classes {bad[:10]} have count <= 0. "
            "Remove classes that have no training samples, or add one pseudo-count"
        )
    return counts


def check_num_classes(values: Tensor, logits: Tensor, name: str) -> None:
    if values.shape[0] != logits.shape[1]:
        raise ValueError(
            f"{name} has {values.shape[0]} entries but logits have {logits.shape[1]} classes; "
            "they must match"
        )


def as_class_weight(weight: Any, name: str = "weight") -> Tensor | None:
    """Optional per-class weights [C], non-negative and finite, as a tensor."""
    if weight is None:
        return None
    w = weight if isinstance(weight, torch.Tensor) else torch.as_tensor(np.asarray(weight, dtype=np.float64))
    if not w.is_floating_point():
        w = w.to(torch.float64)
    if w.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor of per-class weights, got shape {tuple(w.shape)}")
    if not compiling() and (not bool(torch.isfinite(w).all()) or bool((w < 0).any())):
        raise ValueError(f"{name} must be finite and non-negative")
    return w


def check_number(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """A real number inside the given interval (closed unless ``*_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = float(value)
        else:
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    # Under torch.compile a hyper-parameter that changed between calls is traced as a symbolic
    # float, which math.isfinite cannot take (a graph break, an error under fullgraph). v · 0 == 0
    # holds exactly for finite v (inf · 0 and nan · 0 are nan), so a value dynamo keeps constant is
    # still checked; a symbolic one is a real number to torch's symbolic shapes (the test folds to
    # True), and only the interval checks below guard it.
    finite = (v * 0.0 == 0.0) if torch.compiler.is_compiling() else math.isfinite(v)
    if not finite:
        raise ValueError(f"{name} must be finite, got {v}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {v}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {v}")
    return v


def check_int(value: Any, name: str, *, low: int = 1) -> int:
    """An ``int`` (not a bool) ``>= low``, where ``low`` is 1 (a positive count) or 0."""
    if low not in (0, 1):
        raise ValueError(f"low must be 0 or 1, got {low!r}")
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be a {'positive' if low else 'non-negative'} int, got {value!r}")
    return value


def check_mask(mask: Any, logits: Tensor, validate: bool = True, name: str = "mask") -> Tensor:
    """An element mask (bool or real, 1 = count, 0 = leave out) broadcast to the shape of ``logits``.

    Returns the broadcast view (not yet cast); values must be finite and non-negative.
    """
    check_tensor(mask, name)
    check_same_device("logits", logits, name, mask)
    if mask.is_complex():
        raise TypeError(f"{name} must be a bool or real tensor (1 = count the element, 0 = leave it out)")
    try:
        out = torch.broadcast_to(mask, logits.shape)
    except RuntimeError as exc:
        raise ValueError(
            f"{name} must be broadcastable to logits {tuple(logits.shape)} (e.g. [N, C], [N, 1] or [C]), "
            f"got {tuple(mask.shape)}"
        ) from exc
    if validate and not compiling() and out.numel() and mask.dtype != torch.bool:
        if not bool(((mask >= 0) & torch.isfinite(mask)).all()):
            raise ValueError(f"{name} values must be finite and non-negative (1 = count, 0 = leave out)")
    return out
