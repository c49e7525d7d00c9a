"""Stochastic AP, partial-AUC and NDCG objectives with per-sample state (catalogue rows H3, D5).

These are LibAUC's X-risk losses whose inner expectation (over the whole training set) is
tracked per training sample by a moving average indexed by the sample's dataset index:
SOAP (:func:`ap_soap`, :func:`multilabel_ap`), SOPA (:func:`pauc_cvar`), SOPA-s
(:func:`pauc_dro`), SOTA-s (:func:`tpauc_kl`), their multi-label form
(:func:`multilabel_pauc`), SONG / K-SONG (:func:`ndcg`) and the stochastic listwise
cross-entropy (:func:`listwise_ce`).

The state is explicit, as ``F.batch_norm``'s running statistics: each function takes the
state tensors as keyword arguments and **updates them in place** (the moving averages are
written before they are used, as LibAUC does). Without state tensors every sample is on its
first visit and nothing is stored. The module twins in :mod:`lossatlas.losses.ranking` keep
the state in buffers (``state_dict``, ``.to()``) and carry the full documentation; their
``functional_kwargs()`` returns copies of it, so
``la.functional.<id>(*inputs, **crit.functional_kwargs(), index=...)`` equals ``crit(...)``.

The AUC/AP losses take **scores, not logits** (probabilities in (0, 1), e.g.
``torch.sigmoid(model(x))``, as LibAUC's examples feed them; no sigmoid is applied inside);
:func:`ndcg` and :func:`listwise_ce` take raw scores. Under ``torch.distributed`` (an
initialised process group of more than one process) every function gathers the batch of all
processes, updates the state with the global batch (so every process holds the same table)
and returns the loss of the concatenated batch: ``"mean"``/``"sum"`` follow
:func:`lossatlas.distributed.replicated_loss` (each process computes the whole loss; the
gradient reaching its own rows is the single-process gradient), ``"none"`` returns this
process's rows.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .._spec import Param, any_number, as_int, loss_function, mean_divisor, positive, unit_interval
from .._validation import check_finite, check_float, check_tensor, compiling
from ..distributed.gather import is_distributed, replicated_loss
from ._common import compute_dtype, reduce_loss
from .auc import pairwise_surrogate

__all__ = [
    "ap_soap",
    "pauc_cvar",
    "pauc_dro",
    "tpauc_kl",
    "multilabel_ap",
    "multilabel_pauc",
    "ndcg",
    "listwise_ce",
]

LIBAUC_AUC = "Optimization-AI/LibAUC libauc/losses/auc.py"
LIBAUC_RANKING = "Optimization-AI/LibAUC libauc/losses/ranking.py"
BINARY = ("scores", "target")
SURROGATES = ("squared_hinge", "squared", "hinge", "logistic")


# --------------------------------------------------------------------------------------
# Hyper-parameter checks
# --------------------------------------------------------------------------------------
def _rate(value: Any, name: str) -> float:
    """A moving-average rate in (0, 1]."""
    v = unit_interval(value, name)
    if v == 0.0:
        raise ValueError(f"{name} must be in (0, 1] (a moving-average rate; 0 would never update the state), got {v}")
    return v


def _surrogate_name(value: Any, name: str) -> str:
    if not isinstance(value, str) or value not in SURROGATES:
        raise ValueError(f"{name} must be one of {SURROGATES}, got {value!r}")
    return value


def _top_k(value: Any, name: str) -> int:
    v = as_int(value, name)
    if v < -1:
        raise ValueError(f"{name} must be -1 (off) or a non-negative int, got {v}")
    return v


def _top_k_version(value: Any, name: str) -> str:
    if value not in ("theo", "prac"):
        raise ValueError(f"{name} must be 'theo' or 'prac', got {value!r}")
    return str(value)


def _mode(value: Any, name: str) -> str:
    if value not in ("1w", "2w"):
        raise ValueError(f"{name} must be '1w' (one-way pAUC, KL-DRO) or '2w' (two-way pAUC, nested KL-DRO), got {value!r}")
    return str(value)


def _count(value: Any, name: str) -> int:
    v = as_int(value, name)
    if v < 1:
        raise ValueError(f"{name} must be a positive int, got {v}")
    return v


_GAMMA = Param("moving-average rate of the per-sample estimates, in (0, 1]", _rate, f"{LIBAUC_AUC} (gamma=0.9)")
_MARGIN = Param("margin m of the surrogate ℓ(m, t) (the scale for ``'logistic'``, as LibAUC passes it)", any_number,
                f"{LIBAUC_AUC} (margin=1.0)")
_SURROGATE = Param("pairwise surrogate ℓ(m, t) of 1[t ≤ 0]: " + ", ".join(f"``'{s}'``" for s in SURROGATES)
                   + " (LibAUC ``surr_loss``)", _surrogate_name, f"{LIBAUC_AUC} (surr_loss='squared_hinge')")
_TEMPERATURE = Param("λ > 0, the KL-DRO temperature over the negatives (LibAUC ``Lambda``)", positive,
                     f"{LIBAUC_AUC} (Lambda=1.0)")


# --------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------
def _surrogate(diff: Tensor, surrogate: str, margin: float) -> Tensor:
    """LibAUC's one-parameter surrogates ``ℓ(m, t)`` on score differences: LibAUC passes the
    loss's ``margin`` as the surrogate's only hyper-parameter, so for ``'logistic'`` it is the scale."""
    return pairwise_surrogate(diff, surrogate, margin=margin, scale=margin)


def _log_rates(gamma: float) -> tuple[float, float]:
    """``(log(1 - γ), log γ)`` for the moving average in log space."""
    return (-math.inf if gamma >= 1.0 else math.log1p(-gamma)), math.log(gamma)


def _gather(*tensors: Tensor) -> tuple[list[Tensor], int]:
    """The global batch under torch.distributed (imported here: lossatlas.losses imports this module)."""
    if not is_distributed():
        return list(tensors), 0
    from ..losses._state import gather_batch

    return gather_batch(*tensors)


def _finish(out: Tensor, reduction: str, offset: int, n_local: int) -> Tensor:
    """The global loss as :mod:`lossatlas.distributed.gather` prescribes; the input unchanged
    in a single process."""
    if not is_distributed():
        return out
    if reduction == "none":
        return out[offset: offset + n_local]
    return replicated_loss(out)


def _check_state(state: Any, name: str, tail: tuple[int, ...] = ()) -> Tensor:
    t = check_tensor(state, name)
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (per-sample state), got dtype {t.dtype}")
    if t.dim() != 1 + len(tail) or tuple(t.shape[1:]) != tail:
        want = "[data_len" + "".join(f", {d}" for d in tail) + "]"
        raise ValueError(f"{name} must have shape {want}, got {list(t.shape)}")
    return t


def _states(names: tuple[str, ...], values: tuple[Tensor | None, ...]) -> bool:
    """Whether the state is given (all of it) or absent (none of it)."""
    given = [v is not None for v in values]
    if any(given) and not all(given):
        missing = [n for n, g in zip(names, given) if not g]
        raise ValueError(f"give the whole state ({', '.join(names)}) or none of it; missing {', '.join(missing)}")
    return all(given)


def _check_index_type(value: Any, name: str, shape: tuple[int, ...]) -> Tensor:
    index = check_tensor(value, name)
    if index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of dataset indices (int64), got dtype {index.dtype}")
    if tuple(index.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(index.shape)}")
    return index.long()


def _check_index_values(index: Tensor, name: str, size: int, size_name: str, distinct: bool = True) -> None:
    """Range (and distinctness) of the global batch's indices; reads values: validate only."""
    if not index.numel():
        return
    lo, hi = int(index.min()), int(index.max())
    if lo < 0 or hi >= size:
        raise ValueError(f"{name} must lie in [0, {size_name}={size}), got values in [{lo}, {hi}]")
    if distinct and torch.unique(index).numel() != index.numel():
        raise ValueError(f"{name} holds a dataset index twice in one batch; each sample's state is updated once "
                         "per call (the reference leaves repeats undefined)")


def _check_binary_target(target: Tensor, name: str = "target") -> None:
    if bool(((target != 0) & (target != 1)).any()):
        raise ValueError(f"{name} must hold labels in {{0, 1}}, got values {sorted(set(target.unique().tolist()))[:6]}")




def _read(state: Tensor | None, rows: Tensor, shape: tuple[int, ...], fill: float, like: Tensor) -> Tensor:
    """The state's entries at ``rows`` reshaped to ``shape`` (compute dtype), or ``fill`` (a
    first visit) without state."""
    if state is None:
        return torch.full(shape, fill, dtype=like.dtype, device=like.device)
    return state.index_select(0, rows.to(state.device)).to(device=like.device, dtype=like.dtype).reshape(shape)


def _write(state: Tensor | None, rows: Tensor, values: Tensor) -> None:
    """``state[rows] = values`` in place (detached), reshaped to the state's rows."""
    if state is None:
        return
    with torch.no_grad():
        v = values.detach().reshape(rows.shape[0], *state.shape[1:])
        state.index_copy_(0, rows.to(state.device), v.to(device=state.device, dtype=state.dtype))


def _read_kn(state: Tensor | None, rows: Tensor, s: Tensor, fill: float) -> Tensor:
    """Per-sample state [data_len] or [data_len, K] at the batch rows, as [K, N]."""
    k, n = s.shape
    return _read(state, rows, (n, k), fill, s).t()


def _write_kn(state: Tensor | None, rows: Tensor, values: Tensor) -> None:
    _write(state, rows, values.t())


def _prepare_scores_target(scores: Any, target: Any, validate: bool, columns: int | None) -> tuple[Tensor, Tensor]:
    """Binary ``scores`` [N] (or [N, 1]) or multi-label [N, L]; ``target`` of the same shape."""
    check_float(scores, "scores")
    check_tensor(target, "target")
    if columns is None:
        if scores.dim() == 2 and scores.shape[1] == 1:
            scores = scores.reshape(-1)
        if scores.dim() != 1:
            raise ValueError(f"scores must have shape [N] (or [N, 1]): one score per sample, got {list(scores.shape)}")
        if target.dim() == 2 and target.shape[1] == 1:
            target = target.reshape(-1)
    elif scores.dim() != 2 or (columns >= 0 and scores.shape[1] != columns):
        want = "num_labels" if columns < 0 else f"num_labels={columns}"
        raise ValueError(f"scores must have shape [N, {want}], got {list(scores.shape)}")
    if tuple(target.shape) != tuple(scores.shape):
        raise ValueError(f"target must have the shape of scores, {list(scores.shape)}, got {list(target.shape)}")
    if target.is_complex():
        raise TypeError(f"target must hold 0/1 labels (int64, bool or float), got dtype {target.dtype}")
    check_finite(scores, "scores", validate)
    return scores, target


def _binary_batch(
    scores: Any, target: Any, index: Any, state: Tensor | None, validate: bool,
    multilabel: bool, need_negative: bool, loss: str,
) -> tuple[Tensor, Tensor, Tensor, int, int]:
    """Checked and (under torch.distributed) gathered ``(scores [K, N], positive mask [K, N],
    rows [N], offset, n_local)``: K = 1 for a binary loss, the labels for a multi-label one.
    ``state`` is one of the loss's state tables (for its length and width), or None."""
    columns = None
    if multilabel:
        columns = state.shape[1] if state is not None else (scores.shape[1] if isinstance(scores, Tensor)
                                                             and scores.dim() == 2 else -1)
        if columns == 0:
            raise ValueError("scores must have at least one label column")
    scores, target = _prepare_scores_target(scores, target, validate, columns)
    out_n = scores.shape[0]
    if state is not None:
        if index is None:
            raise ValueError(f"{loss} keeps per-sample state: call it with index=<int64 [N] dataset indices>")
        rows = _check_index_type(index, "index", (out_n,)).to(scores.device)
        (scores, target, rows), offset = _gather(scores, target, rows)
    else:
        if index is not None:
            raise ValueError("index= needs the per-sample state it indexes (the module keeps it; see functional_kwargs())")
        (scores, target), offset = _gather(scores, target)
        rows = torch.zeros(0, dtype=torch.long, device=scores.device)
    n = scores.shape[0]
    k = scores.shape[1] if multilabel else 1
    t2 = target.reshape(n, k)
    if validate and not compiling() and n:
        _check_binary_target(target)
        if state is not None:
            _check_index_values(rows, "index", state.shape[0], "data_len")
        npos = (t2 == 1).sum(0)
        if bool((npos == 0).any()):
            where = f" (label {int((npos == 0).nonzero()[0])})" if multilabel else ""
            raise ValueError(f"target has no positive sample in this batch{where}; {loss} needs at least one positive "
                             "(a batch sampler with a controlled positive ratio, e.g. LibAUC's DualSampler, guarantees it)")
        if need_negative and bool((npos == n).any()):
            where = f" (label {int((npos == n).nonzero()[0])})" if multilabel else ""
            raise ValueError(f"target has no negative sample in this batch{where}; {loss} compares positives with "
                             "negatives and needs at least one of each")
    s = scores.to(compute_dtype(scores)).reshape(n, k).t()  # [K, N]
    return s, (t2 == 1).t(), rows, offset, out_n


def _pair_surrogates(s: Tensor, surrogate: str, margin: float) -> Tensor:
    """``L[k, i, j] = ℓ(m, s_ki − s_kj)``: anchor i (a row), every sample j (a column)."""
    return _surrogate(s.unsqueeze(2) - s.unsqueeze(1), surrogate, margin)


# --------------------------------------------------------------------------------------
# Kernels on [K, N] (K tasks: 1 for a binary loss, the labels for a multi-label one)
# --------------------------------------------------------------------------------------
def _soap_kernel(
    s: Tensor, pos: Tensor, old_all: Tensor, old_pos: Tensor, gamma: float, margin: float, surrogate: str, top_k: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """SOAP: per-anchor losses [K, N] (0 at non-positive rows) and the new u_all, u_pos [K, N]."""
    pair = _pair_surrogates(s, surrogate, margin)  # [K, N, N]
    posf = pos.to(s.dtype)
    with torch.no_grad():
        d = pair.detach()
        new_all = torch.where(pos, (1 - gamma) * old_all + gamma * d.mean(2), old_all)
        new_pos = torch.where(pos, (1 - gamma) * old_pos + gamma * (d * posf.unsqueeze(1)).mean(2), old_pos)
        ok = pos & (new_all != 0)  # u_all > 0 always, unless every surrogate term was 0 (then so is the row)
        u_all = torch.where(ok, new_all, torch.ones_like(new_all)).unsqueeze(2)
        weight = (torch.where(ok, new_pos, torch.zeros_like(new_pos)).unsqueeze(2) - u_all * posf.unsqueeze(1)) / u_all.square()
        weight = torch.where(ok.unsqueeze(2), weight, torch.zeros_like(weight))
        if top_k > -1:  # mAP@k: LibAUC's selector σ(k − Σ_{i positive} ℓ_ij) on each column j
            weight = weight * torch.sigmoid(top_k - (d * posf.unsqueeze(2)).sum(1, keepdim=True))
    return (weight * pair).mean(2), new_all, new_pos


def _negatives(pos: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Negative mask [K, N] and the number of negatives per task [K, 1] (1 where there is none)."""
    neg = ~pos
    return neg, mean_divisor(neg.sum(1, keepdim=True).to(dtype))


def _cvar_kernel(
    s: Tensor, pos: Tensor, old: Tensor, beta: float, eta: float, margin: float, surrogate: str,
) -> tuple[Tensor, Tensor]:
    """SOPA: per-anchor losses and the new thresholds [K, N]."""
    pair = _pair_surrogates(s, surrogate, margin)
    neg, n_neg = _negatives(pos, s.dtype)
    with torch.no_grad():
        active = (pair.detach() > old.unsqueeze(2)) & neg.unsqueeze(1) & pos.unsqueeze(2)  # thresholds before the update
        weight = active.to(s.dtype)
        new = torch.where(pos, old - eta * (1 - weight.sum(2) / (beta * n_neg)), old)
    return (weight * pair).sum(2) / (n_neg * beta), new


def _dro_logs(pair: Tensor, pos: Tensor, old_log: Tensor, gamma: float, temperature: float) -> tuple[Tensor, Tensor, Tensor]:
    """KL-DRO's inner moving average in log space: ``(log u_new [K, N], z = ℓ/λ masked to the
    negatives [K, N, N], log n_neg [K, 1])``; detached."""
    neg, n_neg = _negatives(pos, pair.dtype)
    z = torch.where(neg.unsqueeze(1), pair.detach() / temperature, torch.full_like(pair, -math.inf))
    log_mean = torch.logsumexp(z, 2) - torch.log(n_neg)
    keep, take = _log_rates(gamma)
    new = torch.where(pos, torch.logaddexp(old_log + keep, log_mean + take), old_log)
    return new, z, n_neg


def _dro_kernel(
    s: Tensor, pos: Tensor, old_log: Tensor, gamma: float, margin: float, temperature: float, surrogate: str,
) -> tuple[Tensor, Tensor]:
    """SOPA-s: per-anchor losses and the new log u [K, N]."""
    pair = _pair_surrogates(s, surrogate, margin)
    with torch.no_grad():
        new, z, n_neg = _dro_logs(pair, pos, old_log, gamma, temperature)
        live = pos.unsqueeze(2) & (z > -math.inf)
        weight = torch.exp(torch.where(live, z - new.unsqueeze(2), torch.full_like(z, -math.inf)))
    return (weight * pair).sum(2) / n_neg, new


def _tpauc_kernel(
    s: Tensor, pos: Tensor, old_log: Tensor, log_w: Tensor, gamma: float, gamma_outer: float, margin: float,
    temperature: float, temperature_pos: float, surrogate: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """SOTA-s: per-anchor losses, the new log u [K, N] and the new log w (one scalar, updated
    task after task, as LibAUC's multi-label loss shares it across labels)."""
    pair = _pair_surrogates(s, surrogate, margin)
    ratio = temperature / temperature_pos
    with torch.no_grad():
        new, z, n_neg = _dro_logs(pair, pos, old_log, gamma, temperature)
        n_pos = mean_divisor(pos.sum(1).to(s.dtype))
        log_mean = torch.logsumexp(torch.where(pos, ratio * new, torch.full_like(new, -math.inf)), 1) - torch.log(n_pos)
        keep, take = _log_rates(gamma_outer)
        current = log_w.to(s)
        per_task = []
        for k in range(s.shape[0]):
            current = torch.logaddexp(current + keep, log_mean[k] + take)
            per_task.append(current)
        lw = torch.stack(per_task)  # [K]
        live = pos.unsqueeze(2) & (z > -math.inf)
        expo = (ratio - 1) * new.unsqueeze(2) + z - lw.reshape(-1, 1, 1)
        weight = torch.exp(torch.where(live, expo, torch.full_like(z, -math.inf)))
    return (weight * pair).sum(2) / n_neg, new, current


def _reduce_binary(per: Tensor, pos: Tensor, reduction: str, out_dtype: torch.dtype, offset: int, n: int) -> Tensor:
    """Per-anchor losses [1, N] to the loss: ``"mean"`` over the positive anchors (LibAUC's mean
    over the n_pos × n pair matrix), ``"sum"`` over them, ``"none"`` per row (0 at negatives)."""
    out = reduce_loss(per[0], reduction, pos[0].to(per.dtype), out_dtype)
    return _finish(out, reduction, offset, n)


def _reduce_labels(per: Tensor, pos: Tensor, reduction: str, out_dtype: torch.dtype, offset: int, n: int) -> Tensor:
    """Per-(label, anchor) losses [L, N] to the loss: ``"mean"`` = mean over labels of each
    label's mean over its positive anchors (LibAUC's), ``"sum"`` over every (row, label)
    anchor, ``"none"`` [N, L] (0 where the target is 0)."""
    posf = pos.to(per.dtype)
    terms = per * posf
    if reduction == "none":
        out = terms.t().contiguous()
    elif reduction == "sum":
        out = terms.sum()
    else:
        out = (terms.sum(1) / mean_divisor(posf.sum(1))).mean()
    return _finish(out.to(out_dtype), reduction, offset, n)


# --------------------------------------------------------------------------------------
# H3: SOAP, SOPA, SOPA-s, SOTA-s
# --------------------------------------------------------------------------------------
def _state_pair(a: Tensor | None, b: Tensor | None, names: tuple[str, str], tail: tuple[int, ...] | None) -> bool:
    """Check two per-sample tables of one loss (same length; ``tail`` None: [data_len], else
    [data_len, L] of any L shared by both); whether they are given."""
    if not _states(names, (a, b)):
        return False
    assert a is not None and b is not None
    _check_state(a, names[0], () if tail is None else _label_tail(a, names[0]))
    _check_state(b, names[1], tuple(a.shape[1:]))
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{names[0]} and {names[1]} must have the same length (data_len), got {a.shape[0]} and {b.shape[0]}")
    return True


@loss_function(inputs=BINARY, call=("index", "u_all", "u_pos"), params={
    "gamma": _GAMMA, "margin": _MARGIN, "surrogate": _SURROGATE,
})
def ap_soap(
    scores: Tensor,
    target: Tensor,
    *,
    index: Tensor | None = None,
    u_all: Tensor | None = None,
    u_pos: Tensor | None = None,
    gamma: float = 0.9,
    margin: float = 1.0,
    surrogate: str = "squared_hinge",
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """SOAP average-precision surrogate; see :class:`lossatlas.losses.APSoapLoss`.

    ``u_all``, ``u_pos`` [data_len] are the per-sample moving averages (updated in place at
    the positive rows' ``index``); without them every sample is on its first visit.

    >>> import torch, lossatlas as la
    >>> s = torch.tensor([0.9, 0.2, 0.6, 0.4], requires_grad=True)
    >>> la.functional.ap_soap(s, torch.tensor([1, 0, 1, 0])).abs().item() < 1e-6  # first visit: 0, with a gradient
    True
    """
    state = _state_pair(u_all, u_pos, ("u_all", "u_pos"), None)
    s, pos, rows, offset, n = _binary_batch(scores, target, index, u_all if state else None, validate, False, False, "ap_soap")
    per, new_all, new_pos = _soap_kernel(s, pos, _read_kn(u_all, rows, s, 0.0), _read_kn(u_pos, rows, s, 0.0),
                                         gamma, margin, surrogate, -1)
    _write_kn(u_all, rows, new_all)
    _write_kn(u_pos, rows, new_pos)
    return _reduce_binary(per, pos, reduction, scores.dtype, offset, n)


@loss_function(inputs=BINARY, call=("index", "threshold"), params={
    "margin": _MARGIN,
    "beta": Param("β in (0, 1], the largest false-positive rate of the partial AUC", _rate, f"{LIBAUC_AUC} (beta=0.2)"),
    "eta": Param("η > 0, step size of the per-positive CVaR threshold s_i", positive, f"{LIBAUC_AUC} (eta=0.1)"),
    "surrogate": _SURROGATE,
})
def pauc_cvar(
    scores: Tensor,
    target: Tensor,
    *,
    index: Tensor | None = None,
    threshold: Tensor | None = None,
    margin: float = 1.0,
    beta: float = 0.2,
    eta: float = 0.1,
    surrogate: str = "squared_hinge",
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """SOPA one-way partial AUC (CVaR); see :class:`lossatlas.losses.PAUCCVaRLoss`.

    ``threshold`` [data_len] holds each positive's CVaR threshold s_i (updated in place).

    >>> import torch, lossatlas as la
    >>> s = torch.tensor([0.9, 0.2, 0.6, 0.4])  # first visit: every pair above s_i = 0, mean of (1 - Δ)² / β
    >>> round(la.functional.pauc_cvar(s, torch.tensor([1, 0, 1, 0])).item(), 4)  # (0.09 + 0.25 + 0.36 + 0.64) / 4 / 0.2
    1.675
    """
    state = threshold is not None
    if state:
        _check_state(threshold, "threshold")
    s, pos, rows, offset, n = _binary_batch(scores, target, index, threshold, validate, False, True, "pauc_cvar")
    per, new = _cvar_kernel(s, pos, _read_kn(threshold, rows, s, 0.0), beta, eta, margin, surrogate)
    _write_kn(threshold, rows, new)
    return _reduce_binary(per, pos, reduction, scores.dtype, offset, n)


@loss_function(inputs=BINARY, call=("index", "log_u"), params={
    "gamma": _GAMMA, "margin": _MARGIN, "temperature": _TEMPERATURE, "surrogate": _SURROGATE,
})
def pauc_dro(
    scores: Tensor,
    target: Tensor,
    *,
    index: Tensor | None = None,
    log_u: Tensor | None = None,
    gamma: float = 0.9,
    margin: float = 1.0,
    temperature: float = 1.0,
    surrogate: str = "squared_hinge",
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """SOPA-s one-way partial AUC (KL-DRO); see :class:`lossatlas.losses.PAUCDROLoss`.

    ``log_u`` [data_len] holds log u_i, the log of each positive's moving average of
    ``exp(ℓ/λ)`` (−inf before the first visit; updated in place).

    >>> import torch, lossatlas as la
    >>> s = torch.tensor([0.9, 0.2, 0.6, 0.4], requires_grad=True)
    >>> la.functional.pauc_dro(s, torch.tensor([1, 0, 1, 0]), temperature=0.5).ndim
    0
    """
    if log_u is not None:
        _check_state(log_u, "log_u")
    s, pos, rows, offset, n = _binary_batch(scores, target, index, log_u, validate, False, True, "pauc_dro")
    per, new = _dro_kernel(s, pos, _read_kn(log_u, rows, s, -math.inf), gamma, margin, temperature, surrogate)
    _write_kn(log_u, rows, new)
    return _reduce_binary(per, pos, reduction, scores.dtype, offset, n)


_TPAUC_PARAMS = {
    "gamma": Param("moving-average rate of the per-positive inner estimates u_i, in (0, 1] (LibAUC ``gammas[0]``)",
                   _rate, f"{LIBAUC_AUC} tpAUC_KL_Loss (gammas=(0.9, 0.9))"),
    "gamma_outer": Param("moving-average rate of the outer estimate w, in (0, 1] (LibAUC ``gammas[1]``)", _rate,
                         f"{LIBAUC_AUC} tpAUC_KL_Loss (gammas=(0.9, 0.9))"),
    "margin": _MARGIN,
    "temperature": _TEMPERATURE,
    "temperature_pos": Param("λ' > 0, the KL-DRO temperature over the positives (LibAUC ``tau``)", positive,
                             f"{LIBAUC_AUC} tpAUC_KL_Loss (tau=1.0)"),
    "surrogate": _SURROGATE,
}


@loss_function(inputs=BINARY, call=("index", "log_u", "log_w"), params=_TPAUC_PARAMS)
def tpauc_kl(
    scores: Tensor,
    target: Tensor,
    *,
    index: Tensor | None = None,
    log_u: Tensor | None = None,
    log_w: Tensor | None = None,
    gamma: float = 0.9,
    gamma_outer: float = 0.9,
    margin: float = 1.0,
    temperature: float = 1.0,
    temperature_pos: float = 1.0,
    surrogate: str = "squared_hinge",
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """SOTA-s two-way partial AUC (nested KL-DRO); see :class:`lossatlas.losses.TPAUCKLLoss`.

    ``log_u`` [data_len] holds each positive's log u_i and ``log_w`` (a 0-dim tensor) the log
    of the outer moving average w (both −inf before the first visit; updated in place).

    >>> import torch, lossatlas as la
    >>> s = torch.tensor([0.9, 0.2, 0.6, 0.4], requires_grad=True)
    >>> la.functional.tpauc_kl(s, torch.tensor([1, 0, 1, 0]), temperature_pos=0.5).ndim
    0
    """
    state = _states(("log_u", "log_w"), (log_u, log_w))
    if state:
        _check_state(log_u, "log_u")
        _check_log_w(log_w)
    s, pos, rows, offset, n = _binary_batch(scores, target, index, log_u, validate, False, True, "tpauc_kl")
    per, new, new_w = _tpauc_kernel(s, pos, _read_kn(log_u, rows, s, -math.inf), _scalar_state(log_w, s),
                                    gamma, gamma_outer, margin, temperature, temperature_pos, surrogate)
    _write_kn(log_u, rows, new)
    _write_scalar(log_w, new_w)
    return _reduce_binary(per, pos, reduction, scores.dtype, offset, n)


def _label_tail(t: Any, name: str) -> tuple[int]:
    check_tensor(t, name)
    if t.dim() != 2:
        raise ValueError(f"{name} must have shape [data_len, num_labels], got {list(t.shape)}")
    return (int(t.shape[1]),)


def _check_log_w(log_w: Any) -> None:
    check_tensor(log_w, "log_w")
    if not log_w.is_floating_point() or log_w.numel() != 1:
        raise ValueError(f"log_w must be a floating-point tensor with one element (the outer state), got {log_w.dtype} "
                         f"of shape {list(log_w.shape)}")


def _scalar_state(state: Tensor | None, like: Tensor) -> Tensor:
    if state is None:
        return torch.full((), -math.inf, dtype=like.dtype, device=like.device)
    return state.detach().reshape(()).to(like)


def _write_scalar(state: Tensor | None, value: Tensor) -> None:
    if state is None:
        return
    with torch.no_grad():
        state.copy_(value.detach().reshape(state.shape))


# --------------------------------------------------------------------------------------
# D5: multi-label AP and partial AUC
# --------------------------------------------------------------------------------------
@loss_function(inputs=BINARY, call=("index", "u_all", "u_pos"), params={
    "margin": _MARGIN,
    "gamma": _GAMMA,
    "top_k": Param("mAP@k: LibAUC's column selector σ(k − Σ_i ℓ_ij) acts when ``top_k > -1``; -1 is plain mAP", _top_k,
                   f"{LIBAUC_AUC} meanAveragePrecisionLoss (top_k=-1)"),
    "surrogate": _SURROGATE,
})
def multilabel_ap(
    scores: Tensor,
    target: Tensor,
    *,
    index: Tensor | None = None,
    u_all: Tensor | None = None,
    u_pos: Tensor | None = None,
    margin: float = 1.0,
    gamma: float = 0.9,
    top_k: int = -1,
    surrogate: str = "squared_hinge",
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Multi-label SOAP (mean AP); see :class:`lossatlas.losses.MultiLabelAPLoss`.

    ``u_all``, ``u_pos`` [data_len, num_labels] (updated in place at each label's positives).

    >>> import torch, lossatlas as la
    >>> s = torch.tensor([[0.9, 0.3], [0.2, 0.8], [0.6, 0.1]])
    >>> la.functional.multilabel_ap(s, torch.tensor([[1, 0], [0, 1], [1, 1]])).shape
    torch.Size([])
    """
    state = _state_pair(u_all, u_pos, ("u_all", "u_pos"), ())
    s, pos, rows, offset, n = _binary_batch(scores, target, index, u_all if state else None, validate, True, False,
                                            "multilabel_ap")
    per, new_all, new_pos = _soap_kernel(s, pos, _read_kn(u_all, rows, s, 0.0), _read_kn(u_pos, rows, s, 0.0),
                                         gamma, margin, surrogate, top_k)
    _write_kn(u_all, rows, new_all)
    _write_kn(u_pos, rows, new_pos)
    return _reduce_labels(per, pos, reduction, scores.dtype, offset, n)


@loss_function(inputs=BINARY, call=("index", "log_u", "log_w"), params={
    "mode": Param("``'1w'``: one-way pAUC (:func:`pauc_dro` per label); ``'2w'``: two-way pAUC (:func:`tpauc_kl` per "
                  "label)", _mode, f"{LIBAUC_AUC} MultiLabelpAUCLoss (mode='1w')"),
    **_TPAUC_PARAMS,
})
def multilabel_pauc(
    scores: Tensor,
    target: Tensor,
    *,
    index: Tensor | None = None,
    log_u: Tensor | None = None,
    log_w: Tensor | None = None,
    mode: str = "1w",
    gamma: float = 0.9,
    gamma_outer: float = 0.9,
    margin: float = 1.0,
    temperature: float = 1.0,
    temperature_pos: float = 1.0,
    surrogate: str = "squared_hinge",
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Multi-label partial AUC; see :class:`lossatlas.losses.MultiLabelPAUCLoss`.

    ``log_u`` [data_len, num_labels] holds each label's per-positive log u; ``log_w`` (0-dim,
    ``'2w'`` only) the outer estimate, one scalar shared by the labels as in LibAUC.

    >>> import torch, lossatlas as la
    >>> s = torch.tensor([[0.9, 0.3], [0.2, 0.8], [0.6, 0.1]])
    >>> la.functional.multilabel_pauc(s, torch.tensor([[1, 0], [0, 1], [1, 1]]), mode="2w").shape
    torch.Size([])
    """
    two_way = mode == "2w"
    state = log_u is not None
    if state:
        _check_state(log_u, "log_u", _label_tail(log_u, "log_u"))
        if two_way:
            if log_w is None:
                raise ValueError("mode='2w' keeps an outer state too: give log_w with log_u")
            _check_log_w(log_w)
    elif log_w is not None:
        raise ValueError("log_w= needs log_u= (give the whole state or none of it)")
    s, pos, rows, offset, n = _binary_batch(scores, target, index, log_u, validate, True, True, "multilabel_pauc")
    old = _read_kn(log_u, rows, s, -math.inf)
    if two_way:
        per, new, new_w = _tpauc_kernel(s, pos, old, _scalar_state(log_w, s), gamma, gamma_outer, margin, temperature,
                                        temperature_pos, surrogate)
        _write_scalar(log_w, new_w)
    else:
        per, new = _dro_kernel(s, pos, old, gamma, margin, temperature, surrogate)
    _write_kn(log_u, rows, new)
    return _reduce_labels(per, pos, reduction, scores.dtype, offset, n)


# --------------------------------------------------------------------------------------
# H3: SONG / K-SONG and the listwise cross-entropy (scores [queries, num_pos + num_neg])
# --------------------------------------------------------------------------------------
def _ranking_scores(value: Any, num_pos: int, validate: bool, need_negative: bool) -> Tensor:
    scores = check_float(value, "scores")
    least = num_pos + 1 if need_negative else num_pos
    if scores.dim() != 2 or scores.shape[1] < least:
        raise ValueError(f"scores must have shape [queries, num_pos + num_neg] with num_pos={num_pos} relevant columns "
                         f"first{' and at least one negative' if need_negative else ''}, got {list(scores.shape)}")
    check_finite(scores, "scores", validate)
    return scores


def _pair_rows(index: Any, batch: int, num_pos: int, columns: int) -> Tensor:
    """``index`` [B, num_pos] (or [B, num_pos + num_neg], LibAUC's ``user_item_id``, of which the
    relevant columns are read) as the flat pair ids [B * num_pos]."""
    check_tensor(index, "index")
    if index.dim() == 2 and index.shape[0] == batch and index.shape[1] in (num_pos, columns):
        index = index[:, :num_pos]
    else:
        raise ValueError(f"index must have shape [B={batch}, num_pos={num_pos}] (the ids of the relevant query-item pairs), "
                         f"got {list(index.shape)}")
    return _check_index_type(index, "index", (batch, num_pos)).reshape(-1)


def _query_vector(value: Any, name: str, batch: int, floating: bool) -> Tensor:
    x = check_tensor(value, name)
    if tuple(x.shape) != (batch,):
        raise ValueError(f"{name} must have shape [B={batch}] (one value per query), got {list(x.shape)}")
    if x.is_complex() or (not floating and (x.is_floating_point() or x.dtype == torch.bool)):
        raise TypeError(f"{name} must be an integer tensor, got dtype {x.dtype}")
    return x


@loss_function(inputs=("scores", "rating"),
               call=("index", "query_index", "num_pos_items", "ideal_dcg", "u", "lambda_q", "s_q"), params={
    "num_items": Param("number of items of the catalogue (N_q of the paper, LibAUC ``num_item``)", _count),
    "num_pos": Param("relevant (positive) columns per query, first in ``scores``", _count),
    "gamma": Param("moving-average rate of u_qi, in (0, 1] (LibAUC ``gamma0``)", _rate, f"{LIBAUC_RANKING} (gamma0=0.9)"),
    "gamma_lambda": Param("moving-average rate of K-SONG's Hessian estimate s_q, in (0, 1] (LibAUC ``gamma1``)", _rate,
                          f"{LIBAUC_RANKING} (gamma1=0.9)"),
    "eta": Param("step size of K-SONG's threshold λ_q (LibAUC ``eta0``)", positive, f"{LIBAUC_RANKING} (eta0=0.01)"),
    "margin": Param("margin m of the surrogate ℓ(m, s_qi − s_qj) (the scale for ``'logistic'``)", positive,
                    f"{LIBAUC_RANKING} (margin=1.0)"),
    "top_k": Param("K-SONG's K (NDCG@K) when > 0; -1 is SONG (all positions)", _top_k,
                   f"{LIBAUC_RANKING} code (topk=-1; its docstring says 1e-10)"),
    "top_k_version": Param("``'theo'`` (with the implicit-gradient term of λ_q) or ``'prac'`` (without)", _top_k_version,
                           f"{LIBAUC_RANKING} (topk_version='theo')"),
    "tau_1": Param("τ₁ > 0, temperature of the smoothed top-K indicator of λ_q's problem", positive,
                   f"{LIBAUC_RANKING} (tau_1=0.01)"),
    "tau_2": Param("τ₂ > 0, strength of λ_q's quadratic regulariser", positive, f"{LIBAUC_RANKING} (tau_2=0.0001)"),
    "sigmoid_alpha": Param("α of ψ(t) = σ(α t), the smoothed indicator of a top-K position", positive,
                           f"{LIBAUC_RANKING} code (sigmoid_alpha=2.0; its docstring says 1.0)"),
    "surrogate": Param(_SURROGATE.doc, _surrogate_name, f"{LIBAUC_RANKING} (surrogate_loss='squared_hinge')"),
})
def ndcg(
    scores: Tensor,
    rating: Tensor,
    *,
    num_pos_items: Tensor,
    ideal_dcg: Tensor,
    index: Tensor | None = None,
    query_index: Tensor | None = None,
    u: Tensor | None = None,
    lambda_q: Tensor | None = None,
    s_q: Tensor | None = None,
    num_items: int,
    num_pos: int,
    gamma: float = 0.9,
    gamma_lambda: float = 0.9,
    eta: float = 0.01,
    margin: float = 1.0,
    top_k: int = -1,
    top_k_version: str = "theo",
    tau_1: float = 0.01,
    tau_2: float = 0.0001,
    sigmoid_alpha: float = 2.0,
    surrogate: str = "squared_hinge",
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """SONG / K-SONG NDCG surrogate; see :class:`lossatlas.losses.NDCGLoss`.

    ``u`` [data_len] holds u_qi per relevant (query, item) pair (``index``), ``lambda_q`` and
    ``s_q`` [num_queries] K-SONG's per-query threshold and Hessian estimate (``query_index``);
    all updated in place.

    >>> import torch, lossatlas as la
    >>> s = torch.tensor([[2.0, 0.5, 1.0, -1.0]])
    >>> la.functional.ndcg(s, torch.tensor([[3]]), num_pos_items=torch.tensor([1]), ideal_dcg=torch.tensor([7.0]),
    ...                    num_items=10, num_pos=1, reduction="none").shape
    torch.Size([1])
    """
    state = _states(("u", "lambda_q", "s_q"), (u, lambda_q, s_q))
    _ranking_scores(scores, num_pos, validate, False)
    b, columns = scores.shape
    check_tensor(rating, "rating")
    if rating.dim() != 2 or rating.shape[0] != b or rating.shape[1] not in (num_pos, columns):
        raise ValueError(f"rating must have shape [B={b}, num_pos={num_pos}] (the relevance of the relevant columns), "
                         f"got {list(rating.shape)}")
    rating = rating[:, :num_pos]
    npi = _query_vector(num_pos_items, "num_pos_items", b, True)
    idcg = _query_vector(ideal_dcg, "ideal_dcg", b, True)
    ksong = top_k > 0
    if state:
        assert u is not None and lambda_q is not None and s_q is not None
        _check_state(u, "u")
        _check_state(lambda_q, "lambda_q")
        _check_state(s_q, "s_q")
        if lambda_q.shape != s_q.shape:
            raise ValueError(f"lambda_q and s_q must both have shape [num_queries], got {list(lambda_q.shape)} and {list(s_q.shape)}")
        if index is None:
            raise ValueError("ndcg keeps per-pair state: call it with index=<int64 [B, num_pos] ids of the relevant pairs>")
        rows = _pair_rows(index, b, num_pos, columns).to(scores.device)
        if ksong and query_index is None:
            raise ValueError(f"top_k={top_k} (K-SONG) keeps a threshold per query: call it with query_index=<int64 [B]>")
    elif index is not None:
        raise ValueError("index= needs the per-pair state it indexes (the module keeps it; see functional_kwargs())")
    else:
        rows = torch.zeros(b * num_pos, dtype=torch.long, device=scores.device)
    queries = (_query_vector(query_index, "query_index", b, False).long() if query_index is not None
               else torch.zeros(b, dtype=torch.long, device=scores.device)).to(scores.device)
    (scores, rating, rows, queries, npi, idcg), offset = _gather(scores, rating, rows.reshape(b, num_pos), queries, npi, idcg)
    rows = rows.reshape(-1)
    nb = scores.shape[0]
    if validate and not compiling() and nb:
        check_finite(rating.float(), "rating", True)
        if bool((rating < 0).any()):
            raise ValueError("rating must be >= 0 (relevance grades; the gain is 2^rating - 1)")
        if bool((idcg <= 0).any()) or not bool(torch.isfinite(idcg).all()):
            raise ValueError("ideal_dcg must be finite and > 0 for every query (the NDCG normaliser)")
        if state:
            assert u is not None and lambda_q is not None
            _check_index_values(rows, "index", u.shape[0], "data_len")
            if ksong:
                _check_index_values(queries, "query_index", lambda_q.shape[0], "num_queries")
    dtype = compute_dtype(scores)
    s = scores.to(dtype)
    per = _ndcg_kernel(s, rating.to(dtype), rows, queries, npi.to(dtype), idcg.to(dtype), u, lambda_q, s_q,
                       num_items, num_pos, gamma, gamma_lambda, eta, margin, top_k, top_k_version, tau_1, tau_2,
                       sigmoid_alpha, surrogate)
    return _finish(reduce_loss(per, reduction, None, scores.dtype), reduction, offset, b)


def _ndcg_kernel(
    s: Tensor, rating: Tensor, rows: Tensor, queries: Tensor, npi: Tensor, idcg: Tensor,
    u: Tensor | None, lambda_q: Tensor | None, s_q: Tensor | None,
    num_items: int, num_pos: int, gamma: float, gamma_lambda: float, eta: float, margin: float, top_k: int,
    version: str, tau_1: float, tau_2: float, alpha: float, surrogate: str,
) -> Tensor:
    """Per-query SONG / K-SONG losses [B] (LibAUC NDCGLoss.forward's steps, in its order)."""
    b = s.shape[0]
    pos = s[:, :num_pos]
    g = _surrogate(pos.unsqueeze(2) - s.unsqueeze(1), surrogate, margin).mean(2)  # [B, P]
    gain = torch.pow(2.0, rating) - 1
    n = float(num_items)
    with torch.no_grad():
        new_u = (1 - gamma) * _read(u, rows, (b, num_pos), 0.0, s) + gamma * g.detach()
        _write(u, rows, new_u)
        log_term = torch.log2(1 + n * new_u)
        weight = gain * n / (log_term.square() * (1 + n * new_u) * math.log(2))  # ∇f(u)
    if top_k <= 0:
        return npi * (weight * g).mean(1) / idcg
    with torch.no_grad():
        sd = s.detach()
        lam = _read(lambda_q, queries, (b,), 0.0, s)
        diff = sd - lam.unsqueeze(1)
        sig = torch.sigmoid(diff / tau_1)
        _write(lambda_q, queries, lam - eta * (top_k / n + tau_2 * lam - sig.mean(1)))
        psi = torch.sigmoid(diff[:, :num_pos] * alpha)  # ψ at the threshold before this call's update (LibAUC)
        weight = weight * psi
    if version == "prac":
        return npi * (weight * g).mean(1) / idcg
    with torch.no_grad():
        d_psi = psi * (1 - psi)
        f_u = -gain / log_term
        temp = sig * (1 - sig) / tau_1
        new_s = gamma_lambda * (tau_2 + temp.mean(1)) + (1 - gamma_lambda) * _read(s_q, queries, (b,), 0.0, s)
        _write(s_q, queries, new_s)
    hessian_term = (temp * s).mean(1) / new_s  # ∇²_{λ,w} L_q / s_q, with the gradient through s
    return npi * (weight * g + d_psi * f_u * (pos - hessian_term.unsqueeze(1))).mean(1) / idcg


@loss_function(inputs=("scores",), call=("index", "u"), params={
    "num_pos": Param("relevant (positive) columns per query, first in ``scores``", _count),
    "gamma": Param("moving-average rate of u_qi, in (0, 1]", _rate,
                   "LibAUC's ListwiseCELoss has no default; 0.9 as its NDCGLoss's gamma0 (parity fixtures)"),
    "eps": Param("ε > 0 added to u_qi before dividing", positive, f"{LIBAUC_RANKING} ListwiseCELoss (eps=1e-10)"),
})
def listwise_ce(
    scores: Tensor,
    *,
    index: Tensor | None = None,
    u: Tensor | None = None,
    num_pos: int,
    gamma: float = 0.9,
    eps: float = 1e-10,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Stochastic listwise cross-entropy; see :class:`lossatlas.losses.ListwiseCELoss`.

    ``u`` [data_len] holds u_qi per relevant (query, item) pair (``index``; updated in place).

    >>> import torch, lossatlas as la
    >>> s = torch.tensor([[2.0, 0.5, 1.0, -1.0]])
    >>> la.functional.listwise_ce(s, num_pos=1, reduction="none").shape
    torch.Size([1])
    """
    _ranking_scores(scores, num_pos, validate, True)
    b, columns = scores.shape
    if u is not None:
        _check_state(u, "u")
        if index is None:
            raise ValueError("listwise_ce keeps per-pair state: call it with index=<int64 [B, num_pos] ids of the relevant pairs>")
        rows = _pair_rows(index, b, num_pos, columns).to(scores.device)
    elif index is not None:
        raise ValueError("index= needs the per-pair state it indexes (the module keeps it; see functional_kwargs())")
    else:
        rows = torch.zeros(b * num_pos, dtype=torch.long, device=scores.device)
    (scores, rows), offset = _gather(scores, rows.reshape(b, num_pos))
    rows = rows.reshape(-1)
    nb = scores.shape[0]
    if validate and not compiling() and nb and u is not None:
        _check_index_values(rows, "index", u.shape[0], "data_len")
    s = scores.to(compute_dtype(scores))
    diff = s[:, num_pos:].unsqueeze(1) - s[:, :num_pos].unsqueeze(2)  # [B, P, M]: s_qj − s_qi over the negatives
    with torch.no_grad():
        d = diff.detach()
        shift = d.max() if d.numel() else d.new_zeros(())  # one shift for the whole batch, not undone (LibAUC)
        e = torch.exp(d - shift)
        new_u = (1 - gamma) * _read(u, rows, (nb, num_pos), 0.0, s) + gamma * e.mean(2)
        _write(u, rows, new_u)
        weight = e / (new_u.unsqueeze(2) + eps)
    per = (diff * weight).sum((1, 2))
    return _finish(reduce_loss(per, reduction, None, scores.dtype), reduction, offset, b)
