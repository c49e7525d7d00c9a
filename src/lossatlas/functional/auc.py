"""AUC objectives (catalogue rows H1, H2, D5, G12), as pure functions.

The binary losses take ``scores`` [N] (probabilities in (0, 1), e.g. ``torch.sigmoid`` of a
model's output, as LibAUC feeds them: no sigmoid is applied inside) and an int64 ``target``
[N] in {0, 1}. The module twins live in :mod:`lossatlas.losses.auc` and carry the full
documentation.

:func:`pairwise_surrogate` is the shared pairwise piece: a surrogate ``ℓ(t)`` of the 0/1
loss ``1[t ≤ 0]`` applied to score differences ``t = s_pos − s_neg``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._spec import Param, any_number, as_int, loss_function, mean_divisor, positive, safe_ratio
from .._validation import check_finite, check_float, check_reduction, check_same_device, check_tensor, compiling
from ..distributed.gather import is_distributed, world_size
from ._common import reduce_loss

__all__ = ["pairwise_auc", "mw", "aucm", "compositional_auc", "multilabel_aucm"]

#: The surrogates :func:`pairwise_surrogate` knows (LibAUC ``libauc/losses/surrogate.py``
#: plus ``exponential``).
SURROGATES = ("squared_hinge", "squared", "hinge", "logistic", "exponential", "barrier_hinge")


def pairwise_surrogate(diff: Tensor, surrogate: str, margin: float = 1.0, scale: float = 1.0) -> Tensor:
    """The surrogate ``ℓ(t)`` of ``1[t ≤ 0]``, elementwise on score differences ``t = diff``.

    ``m`` = ``margin``, ``s`` = ``scale`` (LibAUC's ``hparam``; the one each surrogate reads):

    * ``squared_hinge``: ``max(m − t, 0)²``
    * ``squared``: ``(m − t)²``
    * ``hinge``: ``max(m − t, 0)``
    * ``logistic``: ``log(1 + exp(−s·t))`` (computed as ``softplus(−s·t)``: finite everywhere)
    * ``exponential``: ``exp(−s·t)`` (not in LibAUC; the AdaBoost/RankBoost surrogate)
    * ``barrier_hinge``: ``max(−s(m + t) + m, max(m − t, s(t − m)))`` (Charoenphakdee et al.
      2019; LibAUC reads ``hparam = (m, s)``)

    Returns a tensor of ``diff``'s shape and dtype. ``surrogate``, ``margin`` and ``scale`` are
    not checked here (callers check them once).

    >>> import torch
    >>> pairwise_surrogate(torch.tensor([0.0, 2.0]), "hinge", margin=1.0).tolist()
    [1.0, 0.0]
    """
    if surrogate == "squared_hinge":
        return torch.clamp(margin - diff, min=0.0).square()
    if surrogate == "squared":
        return (margin - diff).square()
    if surrogate == "hinge":
        return torch.clamp(margin - diff, min=0.0)
    if surrogate == "logistic":
        return F.softplus(-scale * diff)
    if surrogate == "exponential":
        return torch.exp(-scale * diff)
    if surrogate == "barrier_hinge":
        return torch.maximum(-scale * (margin + diff) + margin,
                             torch.maximum(margin - diff, scale * (diff - margin)))
    raise ValueError(f"surrogate must be one of {', '.join(map(repr, SURROGATES))}, got {surrogate!r}")


def pairwise_differences(pos: Tensor, neg: Tensor) -> Tensor:
    """``t[i, j] = pos[i] − neg[j]``: every positive against every negative, [P, M]."""
    return pos.unsqueeze(-1) - neg.unsqueeze(-2)


# --------------------------------------------------------------------------------------
# Hyper-parameter checks and input checks
# --------------------------------------------------------------------------------------
LIBAUC = "Optimization-AI/LibAUC libauc/losses/auc.py"
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _surrogate_name(value: Any, name: str) -> str:
    if value not in SURROGATES:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, SURROGATES))}, got {value!r}")
    return str(value)


def _version(value: Any, name: str) -> str:
    if value not in ("v1", "v2"):
        raise ValueError(f"{name} must be 'v1' (with the class prior p) or 'v2' (without), got {value!r}")
    return str(value)


def _prior(value: Any, name: str) -> float:
    """A class prior p in (0, 1) (None, the batch's positive fraction, is passed through)."""
    v = any_number(value, name)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must lie in (0, 1) (the fraction of positives), got {v}")
    return v


def _priors(value: Any, name: str) -> float | tuple[float, ...]:
    """One prior for every label, or one per label (a sequence or 1-D tensor)."""
    if isinstance(value, Tensor) and value.dim() == 1 or isinstance(value, Sequence) and not isinstance(value, str):
        items = value.tolist() if isinstance(value, Tensor) else list(value)
        if not items:
            raise ValueError(f"{name} must hold one prior per label, got an empty sequence")
        return tuple(_prior(v, f"{name}[{i}]") for i, v in enumerate(items))
    return _prior(value, name)


def _positive_int(value: Any, name: str) -> int:
    v = as_int(value, name)
    if v < 1:
        raise ValueError(f"{name} must be a positive int, got {v}")
    return v


_MARGIN_PAIR = Param("margin m of ``'squared_hinge'``, ``'squared'``, ``'hinge'`` and ``'barrier_hinge'`` (LibAUC "
                     "``hparam``; the default surrogate ``'logistic'`` does not read it)", any_number,
                     f"{LIBAUC}::PairwiseAUCLoss (hparam=1.0)")
_SCALE_PAIR = Param("scale s of ``'logistic'``, ``'exponential'`` and ``'barrier_hinge'`` (LibAUC ``hparam``)", positive,
                    f"{LIBAUC}::PairwiseAUCLoss (hparam=1.0)")
_MARGIN_AUCM = Param("margin m of the square-hinge AUC-M surrogate", any_number, f"{LIBAUC}::AUCMLoss (margin=1.0)")
_IMRATIO = Param("class prior p of ``'v1'`` in (0, 1); None: the batch's positive fraction (not differentiated). "
                 "``'v2'`` has no prior (a number is refused there)", _prior,
                 f"{LIBAUC}::AUCMLoss (imratio=None)")
_VERSION = Param("``'v1'``: the paper's objective with the class prior p; ``'v2'``: class-conditional means, no prior",
                 _version, f"{LIBAUC}::AUCMLoss (version='v1')")


def _binary_inputs(scores: Any, target: Any, validate: bool, *, labels: int | None = None,
                   ) -> tuple[Tensor, Tensor, torch.dtype]:
    """``(s, y, out_dtype)``: ``scores`` in the compute dtype and ``target`` as a 0/1 float mask
    of the same shape, after the checks every AUC loss shares.

    Binary (``labels`` None): ``scores`` [N] (or LibAUC's [N, 1]) and ``target`` [N] (or
    [N, 1]). Multi-label (``labels`` = L): ``scores`` and ``target`` [N, L]. ``target`` holds
    0/1 labels (1 = positive) of any integer, bool or floating dtype.
    """
    s = check_float(scores, "scores")
    t = check_tensor(target, "target")
    if t.is_complex():
        raise TypeError(f"target must hold 0/1 labels (int64, bool or float), got dtype {t.dtype}")
    if labels is None:
        if s.dim() == 2 and s.shape[1] == 1:  # LibAUC's models return [N, 1]
            s = s[:, 0]
        if t.dim() == 2 and t.shape[1] == 1:
            t = t[:, 0]
        if s.dim() != 1:
            raise ValueError(f"scores must have shape [N] (or [N, 1]): one score per sample, got {tuple(scores.shape)}")
    elif s.dim() != 2 or s.shape[1] != labels:
        raise ValueError(f"scores must have shape [N, num_labels={labels}], got {tuple(s.shape)}")
    if t.shape != s.shape:
        raise ValueError(f"target must have the shape of scores {tuple(s.shape)}, got {tuple(target.shape)}")
    check_same_device("scores", s, "target", t)
    check_finite(s, "scores", validate)
    if validate and not compiling() and t.numel() and not bool(((t == 0) | (t == 1)).all()):
        bad = t[(t != 0) & (t != 1)].unique()[:5].tolist()
        raise ValueError(f"target must hold 0/1 labels (1 = positive, 0 = negative), got values {bad}")
    out_dtype = s.dtype
    s = s.float() if out_dtype in _LOW_PRECISION else s
    return s, t.to(s.dtype), out_dtype


def _require_both(y: Tensor, loss: str, validate: bool) -> None:
    """``ValueError`` when a non-empty batch (per label column for [N, L]) lacks a positive or
    a negative: ``loss`` needs both (read on the host; skipped with ``validate=False``)."""
    if not validate or compiling() or not y.numel():
        return
    n = y.shape[0]
    pos = y.sum(0)
    lacking = ((pos == 0) | (pos == n)).reshape(-1)
    if bool(lacking.any()):
        where = "" if y.dim() == 1 else f" in label column(s) {lacking.nonzero().flatten()[:5].tolist()}"
        count = int(pos.reshape(-1)[lacking][0])
        raise ValueError(
            f"{loss} needs at least one positive and one negative in the batch{where}: got {count} positive(s) "
            f"among {n} samples; draw batches with a controlled positive ratio (a DualSampler) or a larger batch"
        )


def _check_param(value: Tensor | None, name: str, s: Tensor, size: int | None) -> Tensor:
    """A learnable a / b / alpha as the compute dtype: one value ([] or [1]), or [size] per label.
    None is 0 (LibAUC's initial value)."""
    if value is None:
        return s.new_zeros(() if size is None else (size,))
    v = check_float(value, name)
    check_same_device("scores", s, name, v)
    if size is None and v.numel() != 1:
        raise ValueError(f"{name} must hold one value (shape [] or [1]), got shape {tuple(v.shape)}")
    if size is not None and tuple(v.shape) != (size,) and v.numel() != 1:
        raise ValueError(f"{name} must have shape [num_labels={size}] (one value per label), got {tuple(v.shape)}")
    return v.to(s.dtype).reshape(()) if v.numel() == 1 and size is None else v.to(s.dtype)


# --------------------------------------------------------------------------------------
# Under torch.distributed: the batch means are those of the global batch
# --------------------------------------------------------------------------------------
def _scale_grad(x: Tensor, c: float) -> Tensor:
    """``x`` (the same values, exactly) whose gradient is multiplied by ``c``."""
    x0 = x.detach()
    return x0 + (x - x0) * c


def _global_batch(s: Tensor, y: Tensor, reduction: str) -> tuple[Tensor, Tensor, int]:
    """``(s, y, offset)`` of the batch of every process, concatenated in rank order.

    Every process then computes the loss of the global batch, so its value and the gradients
    of the learnable a, b, alpha are the single-process ones; the gradient sent to the
    gathered scores is divided by the world size (each process sends it, the gather's
    backward sums them), so each process's own scores receive exactly their slice of the
    single-process gradient. ``"none"`` returns this process's rows (no scaling). Without a
    process group of more than one process: unchanged, offset 0.
    """
    if not is_distributed():
        return s, y, 0
    from ..losses._state import gather_batch  # here: lossatlas.losses imports this module

    (sg, yg), offset = gather_batch(s, y.detach())
    if reduction != "none":
        sg = _scale_grad(sg, 1.0 / world_size())
    return sg, yg, offset


def _local(out: Tensor, reduction: str, offset: int, n: int) -> Tensor:
    return out[offset: offset + n] if reduction == "none" and out.shape[0] != n else out


# --------------------------------------------------------------------------------------
# H1 / G12: pairwise surrogates over every positive x negative pair
# --------------------------------------------------------------------------------------
def _pairwise_rows(s: Tensor, y: Tensor, surrogate: str, margin: float, scale: float) -> Tensor:
    """``r_i = (1/M) Σ_{j: y_j = 0} ℓ(s_i − s_j)`` for every row (used at the positives).

    Dense over the N x N differences (no data-dependent shapes, so it compiles); the pairs
    that are not (positive, negative) are zeroed before and after the surrogate, so an
    overflowing surrogate there sends no NaN into the gradient.
    """
    neg = 1.0 - y
    keep = (y.unsqueeze(1) * neg.unsqueeze(0)) > 0
    d = s.unsqueeze(1) - s.unsqueeze(0)
    zero = torch.zeros_like(d)
    terms = torch.where(keep, pairwise_surrogate(torch.where(keep, d, zero), surrogate, margin, scale), zero)
    return terms.sum(1) / mean_divisor(neg.sum())


def _pairwise_loss(scores: Any, target: Any, surrogate: str, margin: float, scale: float, reduction: str,
                   validate: bool, loss: str) -> Tensor:
    check_reduction(reduction)
    s, y, out_dtype = _binary_inputs(scores, target, validate)
    n = s.shape[0]
    s, y, offset = _global_batch(s, y, reduction)
    _require_both(y, loss, validate)
    rows = _pairwise_rows(s, y, surrogate, margin, scale)
    return reduce_loss(_local(rows, reduction, offset, n), reduction, weights=_local(y, reduction, offset, n),
                       out_dtype=out_dtype)


@loss_function(inputs=("scores", "target"), params={
    "surrogate": Param("pairwise surrogate ℓ(t) of 1[t ≤ 0] on t = s_pos − s_neg: "
                       + ", ".join(f"``'{n}'``" for n in SURROGATES) + " (LibAUC ``surr_loss``)", _surrogate_name,
                       f"{LIBAUC}::PairwiseAUCLoss (surr_loss='logistic'; its docstring says 'squared_hinge')"),
    "margin": _MARGIN_PAIR,
    "scale": _SCALE_PAIR,
})
def pairwise_auc(
    scores: Tensor,
    target: Tensor,
    *,
    surrogate: str = "logistic",
    margin: float = 1.0,
    scale: float = 1.0,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Pairwise AUC loss ``mean_{i: y=1, j: y=0} ℓ(s_i − s_j)``; see :class:`lossatlas.losses.PairwiseAUCLoss`."""
    return _pairwise_loss(scores, target, surrogate, margin, scale, reduction, validate, "pairwise_auc")


@loss_function(inputs=("scores", "target"), params={
    "scale": Param("s > 0 multiplying the score difference inside the sigmoid: BCE(σ(s·(s⁺ − s⁻)), 1)", positive,
                   "Sheikholeslami et al. 2025 (BCE on the plain score difference: s = 1)"),
})
def mw(
    scores: Tensor,
    target: Tensor,
    *,
    scale: float = 1.0,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """MW loss ``mean_{i: y=1, j: y=0} −log σ(s·(s_i − s_j))``; see :class:`lossatlas.losses.MWLoss`."""
    flat = isinstance(scores, Tensor) and scores.dim() == 2 and scores.shape[1] != 1
    if flat:  # a [Q, D] (query, document) score matrix: every scored pair is a sample
        if not isinstance(target, Tensor) or target.shape != scores.shape:
            got = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
            raise ValueError(f"target must have the shape of scores {tuple(scores.shape)}, got {got}")
        out = _pairwise_loss(scores.reshape(-1), target.reshape(-1), "logistic", 0.0, scale, reduction, validate, "mw")
        return out.reshape(scores.shape) if reduction == "none" else out
    return _pairwise_loss(scores, target, "logistic", 0.0, scale, reduction, validate, "mw")


# --------------------------------------------------------------------------------------
# H2 / D5: AUC-M (min-max margin) and compositional AUC
# --------------------------------------------------------------------------------------
def _aucm_terms(s: Tensor, y: Tensor, a: Tensor, b: Tensor, alpha: Tensor, margin: float, p: Tensor | None,
                version: str) -> Tensor:
    """Per-sample AUC-M terms whose mean over the batch (rows) is the AUC-M objective.

    ``v1`` (Yuan et al. 2021, eq. with the prior p), per row: ``(1−p)(s−a)² y + p(s−b)² (1−y)
    + 2α(p(1−p)m + p s (1−y) − (1−p) s y) − p(1−p)α²``. ``v2`` (no prior; p̂ = the batch's
    positive fraction): ``y/p̂ ((s−a)² − 2αs) + (1−y)/(1−p̂) ((s−b)² + 2αs) + 2αm − α²``, whose
    row mean is ``mean_pos (s−a)² + mean_neg (s−b)² + 2α(m + mean_neg s − mean_pos s) − α²``.
    ``s``, ``y`` are [N] or [N, L]; a, b, alpha, p broadcast along the last dimension.
    """
    n = s.shape[0]
    if version == "v1":
        prior = safe_ratio(y.sum(0), s.new_tensor(float(n))) if p is None else p
        q = prior * (1.0 - prior)
        return ((1.0 - prior) * (s - a).square() * y + prior * (s - b).square() * (1.0 - y)
                + 2.0 * alpha * (q * margin + prior * s * (1.0 - y) - (1.0 - prior) * s * y) - q * alpha.square())
    pos_w = safe_ratio(y * n, y.sum(0))  # y / p̂
    neg_w = safe_ratio((1.0 - y) * n, (1.0 - y).sum(0))  # (1 − y) / (1 − p̂)
    return (pos_w * ((s - a).square() - 2.0 * alpha * s) + neg_w * ((s - b).square() + 2.0 * alpha * s)
            + 2.0 * alpha * margin - alpha.square())


def _aucm_loss(s: Tensor, y: Tensor, a: Tensor | None, b: Tensor | None, alpha: Tensor | None, margin: float,
               imratio: Any, version: str, reduction: str, validate: bool, out_dtype: torch.dtype, loss: str,
               labels: int | None = None) -> Tensor:
    if version == "v2" and imratio is not None:
        raise ValueError(f"{loss}: imratio is the class prior of version 'v1'; version 'v2' has none (pass imratio=None)")
    av, bv, alv = (_check_param(v, name, s, labels) for v, name in ((a, "a"), (b, "b"), (alpha, "alpha")))
    n = s.shape[0]
    s, y, offset = _global_batch(s, y, reduction)
    if version == "v2":
        _require_both(y, f"{loss} (version 'v2': means over the positives and over the negatives)", validate)
    p = None if imratio is None else torch.as_tensor(imratio, dtype=s.dtype, device=s.device)
    terms = _aucm_terms(s, y, av, bv, alv, margin, p, version)
    return reduce_loss(_local(terms, reduction, offset, n), reduction, out_dtype=out_dtype)


@loss_function(inputs=("scores", "target"), call=("a", "b", "alpha"), params={
    "margin": _MARGIN_AUCM,
    "imratio": _IMRATIO,
    "version": _VERSION,
})
def aucm(
    scores: Tensor,
    target: Tensor,
    *,
    a: Tensor | None = None,
    b: Tensor | None = None,
    alpha: Tensor | None = None,
    margin: float = 1.0,
    imratio: float | None = None,
    version: str = "v1",
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """AUC-M min-max margin loss at the given ``a``, ``b``, ``alpha`` (None: 0); see
    :class:`lossatlas.losses.AUCMLoss`."""
    check_reduction(reduction)
    s, y, out_dtype = _binary_inputs(scores, target, validate)
    return _aucm_loss(s, y, a, b, alpha, margin, imratio, version, reduction, validate, out_dtype, "aucm")


def compositional_phase(step: int, k: int) -> str:
    """``'ce'`` or ``'auc'``: the objective of call number ``step`` (0, 1, ...) of compositional
    AUC with ``k`` inner steps (LibAUC: ``step mod 2k < k`` is a cross-entropy step)."""
    return "ce" if step % (2 * k) < k else "auc"


@loss_function(inputs=("scores", "target"), call=("a", "b", "alpha", "step"), params={
    "margin": _MARGIN_AUCM,
    "k": Param("k ≥ 1: k cross-entropy calls, then k AUC-M calls, in turn (LibAUC's schedule)", _positive_int,
               f"{LIBAUC}::CompositionalAUCLoss (k=1)"),
    "imratio": _IMRATIO,
    "version": _VERSION,
})
def compositional_auc(
    scores: Tensor,
    target: Tensor,
    *,
    a: Tensor | None = None,
    b: Tensor | None = None,
    alpha: Tensor | None = None,
    step: int = 0,
    margin: float = 1.0,
    k: int = 1,
    imratio: float | None = None,
    version: str = "v1",
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Call number ``step`` of compositional AUC: binary cross-entropy when ``step mod 2k < k``,
    else AUC-M; see :class:`lossatlas.losses.CompositionalAUCLoss`."""
    check_reduction(reduction)
    s, y, out_dtype = _binary_inputs(scores, target, validate)
    step = as_int(step, "step")
    if step < 0:
        raise ValueError(f"step must be >= 0 (the number of calls so far), got {step}")
    if validate and not compiling() and s.numel() and not bool(((s >= 0) & (s <= 1)).all()):
        raise ValueError("scores must be probabilities in [0, 1] (its cross-entropy steps are binary cross-entropy on "
                         "them): pass torch.sigmoid(model(x))")
    if compositional_phase(step, k) == "auc":
        return _aucm_loss(s, y, a, b, alpha, margin, imratio, version, reduction, validate, out_dtype,
                          "compositional_auc")
    n = s.shape[0]
    sg, yg, offset = _global_batch(s, y, reduction)
    terms = F.binary_cross_entropy(sg, yg, reduction="none")
    return reduce_loss(_local(terms, reduction, offset, n), reduction, out_dtype=out_dtype)


@loss_function(inputs=("scores", "target"), call=("a", "b", "alpha"), params={
    "num_labels": Param("L, the number of labels (columns of scores; length of a, b, alpha)", _positive_int),
    "margin": Param("margin m of the square-hinge AUC-M surrogate (LibAUC's v1 ignores it: see the class)", any_number,
                    f"{LIBAUC}::MultiLabelAUCMLoss (margin=1.0)"),
    "imratio": Param("class prior p of ``'v1'`` in (0, 1): one for every label or one per label; None: each label's "
                     "batch positive fraction. ``'v2'`` has none", _priors,
                     f"{LIBAUC}::MultiLabelAUCMLoss (imratio=None)"),
    "version": Param("``'v1'`` (with each label's prior) or ``'v2'`` (class-conditional means)", _version,
                     f"{LIBAUC}::MultiLabelAUCMLoss (version='v1')"),
})
def multilabel_aucm(
    scores: Tensor,
    target: Tensor,
    num_labels: int,
    *,
    a: Tensor | None = None,
    b: Tensor | None = None,
    alpha: Tensor | None = None,
    margin: float = 1.0,
    imratio: float | Sequence[float] | None = None,
    version: str = "v1",
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Mean over labels of each label column's AUC-M; see :class:`lossatlas.losses.MultiLabelAUCMLoss`."""
    check_reduction(reduction)
    s, y, out_dtype = _binary_inputs(scores, target, validate, labels=num_labels)
    if isinstance(imratio, tuple) and len(imratio) != num_labels:
        raise ValueError(f"imratio must hold one prior per label ({num_labels}), got {len(imratio)}")
    return _aucm_loss(s, y, a, b, alpha, margin, imratio, version, reduction, validate, out_dtype,
                      "multilabel_aucm", labels=num_labels)
