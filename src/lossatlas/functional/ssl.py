"""Contrastive losses on paired views (catalogue rows G1, G3–G10), as pure functions.

Every function takes two views ``a`` [N, D] and ``b`` [N, D] (row i of ``a`` and row i of
``b`` are a positive pair), L2-normalises them inside (``normalize=False`` when they are
already unit rows; Barlow Twins standardises instead, W-MSE whitens) and returns a scalar
for ``reduction="mean"|"sum"`` and per-pair losses [N] for ``"none"`` (Barlow Twins: per
feature [D]). Each function is the definition of its method (:func:`lossatlas._spec.loss_function`):
its signature holds every default, its Params the checks and the defaults' sources.
Reductions follow :func:`lossatlas.functional._common.reduce_loss`: an empty batch gives 0
(``"mean"`` and ``"sum"``, with a zero gradient) and an empty ``"none"``.

Shared options of the similarity-matrix losses (InfoNCE, SigLIP, decoupled, debiased,
hard-negative):

* ``tiled``: ``True`` computes the loss in blocks of query rows with a custom backward
  (:mod:`lossatlas.distributed.tiled`): same values and gradients as the dense form, memory
  linear in N, and faster at large N; ``False`` builds the N x N matrix; ``"auto"`` (default)
  tiles when the matrix has more than ``AUTO_TILE_ELEMENTS`` (4M) entries.
* ``block_size``: query rows per block (default: about 16M entries per block).
* ``distributed``: with an initialised ``torch.distributed`` group, negatives come from the
  views of every process (all-gather with gradients). Every process returns the loss of the
  concatenated batch and receives the exact gradient of that loss
  (see :mod:`lossatlas.distributed.gather`).

The module twins in :mod:`lossatlas.losses.ssl` carry the full documentation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from .._spec import COMMON, Param, any_number, as_bool, loss_function, nonnegative, positive, unit_interval
from .._validation import check_finite, check_float, check_int, check_number, check_same_device, compiling
from ..distributed.gather import all_gather_with_grad, global_reduce, is_distributed, replicated_loss
from ..distributed.tiled import block_rows, pairwise_logsumexp, pairwise_softplus_sum
from ._common import compute_dtype, reduce_loss

__all__ = [
    "infonce",
    "siglip",
    "decoupled_contrastive",
    "debiased_contrastive",
    "hard_negative_contrastive",
    "mochi",
    "barlow_twins",
    "wmse",
]

#: A hyper-parameter that may be learned: a float, or a one-element tensor (e.g. an ``nn.Parameter``).
Scalar = float | Tensor

#: ``tiled="auto"`` tiles above this many similarity entries (N > 2048 for a square matrix).
AUTO_TILE_ELEMENTS = 1 << 22

PAIR = ("a", "b")


# ----------------------------------------------------------------------------- checks of hyper-parameters
def _tensor_scalar(value: Tensor, name: str) -> Tensor:
    if value.numel() != 1:
        raise ValueError(f"{name} must be a scalar, got a tensor of shape {tuple(value.shape)}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    return value


def positive_scalar(value: Any, name: str) -> Scalar:
    """A finite real number > 0, or a one-element floating-point tensor (learnable; its value is not read)."""
    return _tensor_scalar(value, name) if isinstance(value, Tensor) else positive(value, name)


def any_scalar(value: Any, name: str) -> Scalar:
    """A finite real number, or a one-element floating-point tensor (learnable; its value is not read)."""
    return _tensor_scalar(value, name) if isinstance(value, Tensor) else any_number(value, name)


def tiled_option(value: Any, name: str) -> bool | str:
    """``True``, ``False`` or ``"auto"``."""
    if not (value is True or value is False or value == "auto"):
        raise ValueError(f"{name} must be True, False or 'auto', got {value!r}")
    return cast("bool | str", value)


def block_size_option(value: Any, name: str) -> int:
    """A positive int (``None`` is accepted before this check)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int (query rows per block) or None, got {value!r}")
    return value


def count(value: Any, name: str) -> int:
    """A non-negative int."""
    return check_int(value, name, low=0)


def positive_int(value: Any, name: str) -> int:
    """A positive int."""
    return check_int(value, name, low=1)


def prior(value: Any, name: str) -> float:
    """A real number in [0, 1)."""
    return check_number(value, name, low=0.0, high=1.0, high_open=True)


#: Options shared by the similarity-matrix losses (and MoCHi's tiling).
SHARED: dict[str, Param] = {
    "normalize": Param("L2-normalise the rows of a and b inside (``False`` when they are already unit rows)", as_bool,
                       "CLIP / SimCLR compare unit embeddings"),
    "tiled": Param("``True`` computes the loss in blocks of ``block_size`` query rows with a custom backward "
                   "(Inf-CL, Cheng et al. 2024): the dense form's values and gradients, memory linear in N; "
                   "``False`` builds the N x N matrix; ``'auto'`` tiles above 4M matrix entries", tiled_option,
                   "this library (tiling only pays off at large N)"),
    "block_size": Param("query rows per block of the tiled form (``None``: about 16M matrix entries per block)",
                        block_size_option, "this library"),
    "distributed": Param("with an initialised ``torch.distributed`` group, every process's rows are negatives "
                         "(all-gather with gradients); each process returns the loss of the concatenated batch and "
                         "gets its exact gradient (under DDP, which averages gradients, multiply the loss by the "
                         "world size)", as_bool, "off: a single process"),
    "group": Param("the ``torch.distributed`` process group of ``distributed`` (``None``: the default group)"),
}

_TEMPERATURE = "T > 0 (a float, or a one-element tensor such as a learnable parameter)"


# ----------------------------------------------------------------------------- helpers
def _prepare_pair(a: Tensor, b: Tensor, validate: bool, normalize: bool) -> tuple[Tensor, Tensor, torch.dtype]:
    check_float(a, "a")
    check_float(b, "b")
    if a.dim() != 2:
        raise ValueError(f"a must have shape [N, D] (one embedding per row), got {tuple(a.shape)}")
    if b.shape != a.shape:
        raise ValueError(f"b must have the shape of a {tuple(a.shape)} (row i of a and b is a positive pair), got {tuple(b.shape)}")
    check_same_device("a", a, "b", b)
    check_finite(a, "a", validate, b=b)
    out_dtype = torch.promote_types(a.dtype, b.dtype)
    ct = compute_dtype(torch.empty((), dtype=out_dtype))
    a, b = a.to(ct), b.to(ct)
    if normalize:
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    return a, b, out_dtype


def _use_tiles(tiled: bool | str, nq: int, nk: int) -> bool:
    tiled = tiled_option(tiled, "tiled")
    if tiled == "auto":
        return nq * nk > AUTO_TILE_ELEMENTS
    return bool(tiled)


def _as_compute(x: Scalar, like: Tensor) -> Scalar:
    """A float as it is, a one-element tensor (a learnable parameter) cast to the compute dtype."""
    return x.reshape(()).to(like.dtype) if isinstance(x, Tensor) else x


def _gather(x: Tensor, on: bool, group: Any) -> tuple[Tensor, int]:
    return all_gather_with_grad(x, group) if on else (x, 0)


def _gather_pair(a: Tensor, b: Tensor, on: bool, group: Any) -> tuple[Tensor, Tensor, int]:
    """Both views of every process (with gradients) and the offset of this process's rows."""
    ag, off = _gather(a, on, group)
    bg, _ = _gather(b, on, group)
    return ag, bg, off


def _finish(per: Tensor, reduction: str, total: int, on: bool, group: Any, out_dtype: torch.dtype) -> Tensor:
    """The one reduction (:func:`reduce_loss`); across processes, the global batch's loss."""
    if on:
        return global_reduce(per, reduction, total, group, on).to(out_dtype)
    return reduce_loss(per, reduction, out_dtype=out_dtype)


def _no_pairs(a: Tensor, b: Tensor, reduction: str, out_dtype: torch.dtype) -> Tensor:
    """An empty batch: per-pair losses [0] connected to both inputs, reduced (0, zero gradient)."""
    return reduce_loss((a * b).sum(1), reduction, out_dtype=out_dtype)


def _check_labels(labels: Any, n: int, device: torch.device, validate: bool) -> Tensor:
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a torch.Tensor of int64 class ids [N], got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"labels must hold integer class ids (torch.long), got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape [N] = [{n}] (one per pair), got {tuple(labels.shape)}")
    if labels.device != device:
        raise ValueError(f"labels is on {labels.device} but a is on {device}; move them to the same device")
    if validate and not compiling() and n and int(labels.min()) < 0:
        raise ValueError("labels must be non-negative class ids")
    return labels.long()


def _two_view_exclusion(n: int, offset: int, n_global: int, device: torch.device, drop_positive: bool) -> Tensor:
    """Columns to exclude for queries cat(a, b) against keys cat(a_global, b_global)."""
    idx = torch.arange(n, device=device) + offset
    self_col = torch.cat([idx, idx + n_global])
    if not drop_positive:
        return self_col[:, None]
    pos_col = torch.cat([idx + n_global, idx])
    return torch.stack([self_col, pos_col], dim=1)


def _two_view_queries(
    a: Tensor, b: Tensor, ag: Tensor, bg: Tensor, off: int, symmetric: bool, drop_positive: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Queries cat(a, b) (a alone unless ``symmetric``), keys cat(ag, bg) and the key columns
    each query excludes: its own row and, with ``drop_positive``, its positive."""
    q = torch.cat([a, b]) if symmetric else a
    keys = torch.cat([ag, bg])
    excl = _two_view_exclusion(a.shape[0], off, ag.shape[0], a.device, drop_positive)[: q.shape[0]]
    return q, keys, excl


def _lse(q: Tensor, k: Tensor, scale: Scalar, tiled: bool | str, block_size: int | None,
         exclude: Tensor | None = None) -> Tensor:
    """Row log-sum-exps of ``scale * q kᵀ`` (excluded entries removed), tiled or dense."""
    lse, _ = pairwise_logsumexp(q, k, scale, exclude=exclude, tiled=_use_tiles(tiled, q.shape[0], k.shape[0]),
                                block_size=block_size)
    assert lse is not None
    return lse


# ----------------------------------------------------------------------------- G1
@loss_function(inputs=PAIR, call=("labels",), params={
    "temperature": Param(_TEMPERATURE, positive_scalar,
                         "CLIP's initial logit scale 1/0.07 (Radford et al. 2021; open_clip init log(1/0.07))"),
    "symmetric": Param("average the a→b and b→a losses (CLIP); ``False`` is the one-way a→b loss", as_bool,
                       "CLIP / open_clip ClipLoss (image→text and text→image, averaged)"),
    "intra_view_negatives": Param("SimCLR's 2N form: the other rows of the anchor's own view are negatives too", as_bool,
                                  "CLIP's cross-view negatives (open_clip ClipLoss)"),
    **SHARED,
})
def infonce(
    a: Tensor,
    b: Tensor,
    *,
    temperature: Scalar = 0.07,
    symmetric: bool = True,
    intra_view_negatives: bool = False,
    labels: Tensor | None = None,
    normalize: bool = True,
    tiled: bool | str = "auto",
    block_size: int | None = None,
    distributed: bool = False,
    group: Any = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """InfoNCE / NT-Xent with in-batch negatives; symmetric (CLIP) or one-way (a -> b).

    ``l_i = -log softmax_j(a_i·b_j / T)_i`` (one-way); symmetric adds the b -> a term and
    halves. ``intra_view_negatives=True`` is SimCLR's 2N form (the other rows of the same
    view are negatives too, the anchor itself is excluded). ``labels`` [N] (a call keyword)
    makes every same-label key a positive (the loss averages ``-log p`` over them,
    SupCon-style; with ``intra_view_negatives=True`` this is SupCon on the 2N views).
    See :class:`lossatlas.losses.InfoNCELoss`.

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.infonce(torch.randn(8, 4), torch.randn(8, 4), temperature=0.1).shape
        torch.Size([])
    """
    a, b, out_dtype = _prepare_pair(a, b, validate, normalize)
    t = _as_compute(temperature, a)
    scale = 1.0 / t
    n = a.shape[0]
    on = distributed and is_distributed(group)
    if n == 0:
        return _no_pairs(a, b, reduction, out_dtype)
    ag, bg, off = _gather_pair(a, b, on, group)
    n_global = ag.shape[0]
    if labels is None:
        pos = pos_r = pos_c = scale * (a * b).sum(1)
    else:
        y = _check_labels(labels, n, a.device, validate)
        yg, _ = _gather(y, on, group)
        num = int(yg.max()) + 1
        cnt = torch.bincount(yg, minlength=num).to(a.dtype)
        sum_a = a.new_zeros((num, a.shape[1])).index_add(0, yg, ag)
        sum_b = a.new_zeros((num, a.shape[1])).index_add(0, yg, bg)
    if not intra_view_negatives:
        if labels is not None:  # mean similarity to the same-label keys of the other view
            pos_r = scale * (a * sum_b[y]).sum(1) / cnt[y]
            pos_c = scale * (b * sum_a[y]).sum(1) / cnt[y]
        use = _use_tiles(tiled, n, n_global)
        if on:
            lr, _ = pairwise_logsumexp(a, bg, scale, tiled=use, block_size=block_size)
            lc = pairwise_logsumexp(b, ag, scale, tiled=use, block_size=block_size)[0] if symmetric else None
        else:
            lr, lc = pairwise_logsumexp(a, b, scale, rows=True, cols=symmetric, tiled=use, block_size=block_size)
        assert lr is not None
        per = lr - pos_r
        if symmetric:
            assert lc is not None
            per = 0.5 * (per + (lc - pos_c))
    else:
        q, keys, excl = _two_view_queries(a, b, ag, bg, off, symmetric, drop_positive=False)
        lse = _lse(q, keys, scale, tiled, block_size, excl)
        if labels is None:
            pos_q = torch.cat([pos, pos])[: q.shape[0]]
        else:  # SupCon: every other same-label row of either view, the anchor's own row excluded
            yq = torch.cat([y, y])[: q.shape[0]]
            others = (sum_a + sum_b)[yq] - keys[excl[:, 0]]
            pos_q = scale * (q * others).sum(1) / (2 * cnt[yq] - 1)
        per = lse[:n] - pos_q[:n]
        if symmetric:
            per = 0.5 * (per + (lse[n:] - pos_q[n:]))
    return _finish(per, reduction, n_global, on, group, out_dtype)


# ----------------------------------------------------------------------------- G3
@loss_function(inputs=PAIR, params={
    "scale": Param("t > 0, the already-exponentiated logit scale (a float or a one-element tensor)", positive_scalar,
                   "Zhai et al. 2023: t = exp(t'), t' = log 10 at init"),
    "bias": Param("b, the logit bias (a float or a one-element tensor)", any_scalar, "Zhai et al. 2023: b = -10 at init"),
    **SHARED,
})
def siglip(
    a: Tensor,
    b: Tensor,
    *,
    scale: Scalar = 10.0,
    bias: Scalar = -10.0,
    normalize: bool = True,
    tiled: bool | str = "auto",
    block_size: int | None = None,
    distributed: bool = False,
    group: Any = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """SigLIP pairwise sigmoid loss, ``l_i = -Σ_j log σ(z_ij (t a_i·b_j + bias))``.

    ``z_ij = +1`` for j = i and -1 otherwise; ``"mean"`` is ``Σ_i l_i / N`` (open_clip's
    sum over N² pairs divided by N). See :class:`lossatlas.losses.SigLIPLoss`.

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.siglip(torch.randn(8, 4), torch.randn(8, 4), reduction="none").shape
        torch.Size([8])
    """
    a, b, out_dtype = _prepare_pair(a, b, validate, normalize)
    t = _as_compute(scale, a)
    bi = _as_compute(bias, a)
    n = a.shape[0]
    on = distributed and is_distributed(group)
    if n == 0:
        return _no_pairs(a, b, reduction, out_dtype)
    bg, _ = _gather(b, on, group)
    rows = pairwise_softplus_sum(a, bg, t, bi, tiled=_use_tiles(tiled, n, bg.shape[0]), block_size=block_size)
    # -log σ(L) = softplus(L) - L: the positive's term replaces its negative-pair term.
    per = rows - (t * (a * b).sum(1) + bi)
    return _finish(per, reduction, bg.shape[0], on, group, out_dtype)


# ----------------------------------------------------------------------------- G4
@loss_function(inputs=PAIR, params={
    "temperature": Param(_TEMPERATURE, positive_scalar, "Yeh et al. 2022 and lightly DCLLoss: 0.1"),
    "symmetric": Param("average L(a, b) and L(b, a)", as_bool, "lightly DCLLoss (the reference)"),
    "weighted": Param("DCLW: weight the positive by the von Mises-Fisher ``w_i = 2 - N softmax_i(â·b̂ / σ)``",
                      as_bool, "Yeh et al. 2022: DCL (DCLW is the variant)"),
    "sigma": Param("σ > 0 of the DCLW weighting", positive, "Yeh et al. 2022 DCLW: σ = 0.5"),
    **SHARED,
})
def decoupled_contrastive(
    a: Tensor,
    b: Tensor,
    *,
    temperature: Scalar = 0.1,
    symmetric: bool = True,
    weighted: bool = False,
    sigma: float = 0.5,
    normalize: bool = True,
    tiled: bool | str = "auto",
    block_size: int | None = None,
    distributed: bool = False,
    group: Any = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Decoupled contrastive loss (DCL): InfoNCE with the positive dropped from the denominator.

    ``L(a,b)_i = -w_i a_i·b_i/T + log Σ_{j≠i} [exp(a_i·a_j/T) + exp(a_i·b_j/T)]``, symmetric
    ``(L(a,b) + L(b,a)) / 2``; ``w_i = 1`` (DCL) or, with ``weighted=True`` (DCLW),
    ``w_i = 2 - N softmax_i(a·b / σ)`` on detached similarities. See
    :class:`lossatlas.losses.DecoupledContrastiveLoss`.

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.decoupled_contrastive(torch.randn(8, 4), torch.randn(8, 4)).shape
        torch.Size([])
    """
    a, b, out_dtype = _prepare_pair(a, b, validate, normalize)
    t = _as_compute(temperature, a)
    n = a.shape[0]
    on = distributed and is_distributed(group)
    if n == 0:
        return _no_pairs(a, b, reduction, out_dtype)
    ag, bg, off = _gather_pair(a, b, on, group)
    n_global = ag.shape[0]
    sim = (a * b).sum(1)
    if n_global == 1:  # no negative at all: nothing to contrast, the loss is 0
        return _finish(sim * 0.0, reduction, n_global, on, group, out_dtype)
    pos = sim / t
    if weighted:
        sim_g, _ = _gather(sim.detach(), on, group)
        w = 2.0 - n_global * torch.softmax(sim_g / sigma, dim=0)[off : off + n]
        pos = w * pos
    q, keys, excl = _two_view_queries(a, b, ag, bg, off, symmetric, drop_positive=True)
    lse = _lse(q, keys, 1.0 / t, tiled, block_size, excl)
    per = lse[:n] - pos
    if symmetric:
        per = 0.5 * (per + (lse[n:] - pos))
    return _finish(per, reduction, n_global, on, group, out_dtype)


# ----------------------------------------------------------------------------- G5, G6
def _debiased(
    a: Tensor, b: Tensor, temperature: Scalar, tau_plus: float, beta: float, normalize: bool,
    tiled: bool | str, block_size: int | None, distributed: bool, group: Any, reduction: str, validate: bool,
) -> Tensor:
    """The debiased estimator (β = 0) and its hard-negative reweighting (β > 0)."""
    a, b, out_dtype = _prepare_pair(a, b, validate, normalize)
    t = _as_compute(temperature, a)
    n = a.shape[0]
    on = distributed and is_distributed(group)
    if n == 0:
        return _no_pairs(a, b, reduction, out_dtype)
    ag, bg, off = _gather_pair(a, b, on, group)
    n_global = ag.shape[0]
    m = 2 * n_global - 2  # negatives per anchor
    if m == 0:  # a single pair: no negative, the loss is 0
        return _finish((a * b).sum(1) * 0.0, reduction, n_global, on, group, out_dtype)
    pos_logit = (a * b).sum(1) / t
    pos_logit = torch.cat([pos_logit, pos_logit])
    q, keys, excl = _two_view_queries(a, b, ag, bg, off, symmetric=True, drop_positive=True)
    if beta == 0.0:
        log_reweight = _lse(q, keys, 1.0 / t, tiled, block_size, excl)
    else:
        # Σ imp·neg / mean(imp) with imp = neg^β, neg = exp(s/T): two log-sum-exps.
        l1 = _lse(q, keys, (beta + 1.0) / t, tiled, block_size, excl)
        l0 = _lse(q, keys, beta / t, tiled, block_size, excl)
        log_reweight = math.log(m) + l1 - l0
    pos = torch.exp(pos_logit)
    ng = (torch.exp(log_reweight) - tau_plus * m * pos) / (1.0 - tau_plus)
    if isinstance(t, Tensor):  # a learnable T: the floor on the device (no host read), with its derivative in T
        ng = torch.maximum(ng, m * torch.exp(-1.0 / t))
    else:
        ng = torch.clamp(ng, min=m * math.exp(-1.0 / t))
    loss2 = torch.log(pos + ng) - pos_logit
    per = 0.5 * (loss2[:n] + loss2[n:])
    return _finish(per, reduction, n_global, on, group, out_dtype)


_TAU_PLUS = Param("class prior τ⁺ in [0, 1): the probability that an in-batch negative shares the anchor's class", prior)


@loss_function(inputs=PAIR, params={
    "temperature": Param(_TEMPERATURE, positive_scalar, "chingyaoc/DCL main.py default 0.5"),
    "tau_plus": Param(_TAU_PLUS.doc, prior, "chingyaoc/DCL main.py default 0.1"),
    **SHARED,
})
def debiased_contrastive(
    a: Tensor,
    b: Tensor,
    *,
    temperature: Scalar = 0.5,
    tau_plus: float = 0.1,
    normalize: bool = True,
    tiled: bool | str = "auto",
    block_size: int | None = None,
    distributed: bool = False,
    group: Any = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Debiased contrastive loss (Chuang et al. 2020), chingyaoc/DCL's estimator.

    2N anchors, M = 2N - 2 negatives each; ``Ng = max((Σ_neg e^{s/T} - τ⁺ M e^{s⁺/T}) /
    (1 - τ⁺), M e^{-1/T})``, ``l = -log(e^{s⁺/T} / (e^{s⁺/T} + Ng))``; per pair the mean of
    its two anchors. ``temperature`` may be a one-element tensor (learnable): the value is
    the same, and its gradient includes the floor's where the floor is active.
    See :class:`lossatlas.losses.DebiasedContrastiveLoss`.

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.debiased_contrastive(torch.randn(8, 4), torch.randn(8, 4), tau_plus=0.1).shape
        torch.Size([])
    """
    return _debiased(a, b, temperature, tau_plus, 0.0, normalize, tiled, block_size, distributed, group, reduction, validate)


@loss_function(inputs=PAIR, params={
    "temperature": Param(_TEMPERATURE, positive_scalar, "joshr17/HCL image/main.py: 0.5"),
    "tau_plus": Param(_TAU_PLUS.doc, prior, "joshr17/HCL: 0.1"),
    "beta": Param("concentration β ≥ 0 of the importance weights ``e^{β s/T}`` (β = 0 is the debiased loss)",
                  nonnegative, "joshr17/HCL: 1.0"),
    **SHARED,
})
def hard_negative_contrastive(
    a: Tensor,
    b: Tensor,
    *,
    temperature: Scalar = 0.5,
    tau_plus: float = 0.1,
    beta: float = 1.0,
    normalize: bool = True,
    tiled: bool | str = "auto",
    block_size: int | None = None,
    distributed: bool = False,
    group: Any = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Hard negative sampling (HCL, Robinson et al. 2021): the debiased estimator with the
    negatives importance-weighted by ``neg^β``. β = 0 is :func:`debiased_contrastive`.
    See :class:`lossatlas.losses.HardNegativeContrastiveLoss`.

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.hard_negative_contrastive(torch.randn(8, 4), torch.randn(8, 4), beta=1.0).shape
        torch.Size([])
    """
    return _debiased(a, b, temperature, tau_plus, beta, normalize, tiled, block_size, distributed, group, reduction, validate)


# ----------------------------------------------------------------------------- G7
class _ZeroGradientTo(torch.autograd.Function):
    """``out`` unchanged; ``x`` joins the graph with an exact zero gradient.

    MoCHi's key branch carries no gradient (MoCo's keys come from the momentum encoder under
    ``no_grad``). The loss is computed from the detached key; this node keeps ``b`` in the
    graph so that ``autograd.grad(loss, [a, b])`` answers zeros for ``b`` instead of raising.
    """

    @staticmethod
    def forward(ctx: Any, out: Tensor, x: Tensor) -> Tensor:
        ctx.x_meta = (x.shape, x.dtype, x.device)
        return out.clone()

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, Tensor]:
        shape, dtype, device = ctx.x_meta
        return g, torch.zeros(shape, dtype=dtype, device=device)


_zero_gradient_to = cast(Callable[[Tensor, Tensor], Tensor], _ZeroGradientTo.apply)  # Function.apply is unannotated in torch


def _mochi_keyword(x: Any, name: str, shape: tuple[int, ...], spelled: str, integer: bool, device: torch.device) -> Tensor | None:
    """``None`` or a tensor of the documented shape (``spelled`` names its dimensions)."""
    if x is None:
        return None
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if integer and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise TypeError(f"{name} must hold integer ranks (torch.long), got dtype {x.dtype}")
    if not integer and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if tuple(x.shape) != shape:
        raise ValueError(f"{name} must have shape {spelled} = {list(shape)}, got {list(x.shape)}")
    if x.device != device:
        raise ValueError(f"{name} is on {x.device} but a is on {device}; move them to the same device")
    return x


def _check_ranks(x: Tensor, name: str, h: int, validate: bool) -> Tensor:
    if validate and not compiling() and x.numel() and (int(x.min()) < 0 or int(x.max()) >= h):
        raise ValueError(
            f"{name} holds ranks among each query's hard negatives, which must lie in [0, {h}) "
            f"(h = min(num_hard, number of negatives)); got values in [{int(x.min())}, {int(x.max())}]"
        )
    return x.long()


def _check_weights(x: Tensor, name: str, like: Tensor, validate: bool) -> Tensor:
    if validate and not compiling() and x.numel():
        lo, hi = float(x.min()), float(x.max())
        if not (0.0 <= lo and hi <= 1.0):  # NaN fails too
            raise ValueError(f"{name} must lie in [0, 1] (convex weights), got values in [{lo}, {hi}]")
    return x.to(like.dtype)


def _prepare_queue(queue: Any, a: Tensor, validate: bool, normalize: bool) -> Tensor | None:
    if queue is None:
        return None
    check_float(queue, "queue")
    if queue.dim() != 2 or queue.shape[1] != a.shape[1]:
        raise ValueError(f"queue must have shape [K, D] = [K, {a.shape[1]}], got {tuple(queue.shape)}")
    check_same_device("a", a, "queue", queue)
    check_finite(queue, "queue", validate)
    out = queue.detach().to(a.dtype)
    return F.normalize(out, dim=1) if normalize else out


def _hardest(q: Tensor, negs: Tensor, h: int, rows: int, skip_own: bool) -> Tensor:
    """Indices [N, h] of the ``h`` negatives most similar to each query, most similar first,
    in blocks of ``rows`` query rows (``skip_own``: row i's own column i is no negative)."""
    n, dev = q.shape[0], q.device
    hard = torch.empty((n, h), dtype=torch.long, device=dev)
    for r0 in range(0, n, rows):
        r1 = min(r0 + rows, n)
        sim = q[r0:r1] @ negs.T
        if skip_own:
            sim[torch.arange(r1 - r0, device=dev), torch.arange(r0, r1, device=dev)] = float("-inf")
        hard[r0:r1] = sim.topk(h, dim=1).indices
    return hard


@loss_function(
    inputs=PAIR,
    call=("queue", "mix_index", "mix_alpha", "query_mix_index", "query_mix_beta", "generator"),
    params={
        "temperature": Param("T > 0", positive, "MoCo v2, which MoCHi builds on: T = 0.2"),
        "num_hard": Param("N, hard negatives per query to mix from (capped by the number of negatives)", count,
                          "Kalantidis et al. 2020 name runs MoCHi (N, s, s') and ablate N, s, s' with no single default; "
                          "N = 1024 is this library's choice"),
        "num_mix": Param("s, mixtures of two hard negatives per query", count,
                         "this library's choice of s (the paper ablates s, no single default)"),
        "num_query_mix": Param("s', mixtures of the query with one hard negative (0 turns them off)", count,
                               "this library's choice of s' (the paper ablates s', no single default; s' = 0 turns it off)"),
        "normalize": Param("L2-normalise a, b and the queue inside", as_bool, "MoCo compares unit embeddings"),
        "tiled": Param("the denominator over the queue as a tiled log-sum-exp and the hard-negative search in blocks "
                       "of query rows (``True`` / ``False`` / ``'auto'``, as InfoNCE); same values and gradients",
                       tiled_option, "this library (tiling only pays off at large N·K)"),
        "block_size": SHARED["block_size"],
    },
)
def mochi(
    a: Tensor,
    b: Tensor,
    *,
    temperature: float = 0.2,
    num_hard: int = 1024,
    num_mix: int = 1024,
    num_query_mix: int = 256,
    queue: Tensor | None = None,
    mix_index: Tensor | None = None,
    mix_alpha: Tensor | None = None,
    query_mix_index: Tensor | None = None,
    query_mix_beta: Tensor | None = None,
    normalize: bool = True,
    tiled: bool | str = "auto",
    block_size: int | None = None,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """MoCHi: MoCo's InfoNCE (query ``a_i``, key ``b_i``, negatives the ``queue``) with
    synthetic hard negatives.

    ``l_i = -log e^{q·k/T} / (e^{q·k/T} + Σ_n e^{q·n/T} + Σ_h e^{q·h/T} + Σ_h' e^{q·h'/T})``
    with ``n`` the rows of ``queue`` [K, D] (only: the other keys of the batch are not
    negatives; ``queue=None`` uses the detached batch keys ``b_j``, j ≠ i, as the queue). The
    hard negatives of query i are its ``min(num_hard, K)`` most similar queue rows, ranked (rank
    0 = most similar); ``h = normalize(α n_{r1} + (1-α) n_{r2})`` (``num_mix`` per query) and
    ``h' = normalize(β q + (1-β) n_r)`` (``num_query_mix``), with ranks and weights from
    ``mix_index`` [N, num_mix, 2] / ``mix_alpha`` [N, num_mix] and ``query_mix_index``
    [N, num_query_mix] / ``query_mix_beta`` [N, num_query_mix], or drawn with ``generator``
    (ranks uniform, α ~ U(0, 1), β ~ U(0, 0.5); weights drawn in float64). The call keywords
    are ``queue``, the four mixing tensors and ``generator``. No gradient reaches the key ``b``
    (it receives zeros), the queue or the synthetic points. See :class:`lossatlas.losses.MoCHiLoss`.

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.mochi(torch.randn(8, 4), torch.randn(8, 4), num_hard=4, num_mix=8, num_query_mix=2).shape
        torch.Size([])
    """
    # the key is used detached throughout; the raw b rejoins the graph, with zero gradient, at the end
    b_in = b
    a, k, out_dtype = _prepare_pair(a, b.detach() if isinstance(b, Tensor) else b, validate, normalize)
    n, dev = a.shape[0], a.device
    mix_index = _mochi_keyword(mix_index, "mix_index", (n, num_mix, 2), "[N, num_mix, 2]", True, dev)
    mix_alpha = _mochi_keyword(mix_alpha, "mix_alpha", (n, num_mix), "[N, num_mix]", False, dev)
    query_mix_index = _mochi_keyword(query_mix_index, "query_mix_index", (n, num_query_mix), "[N, num_query_mix]", True, dev)
    query_mix_beta = _mochi_keyword(query_mix_beta, "query_mix_beta", (n, num_query_mix), "[N, num_query_mix]", False, dev)
    queue = _prepare_queue(queue, a, validate, normalize)
    if n == 0:
        return _no_pairs(a, b_in, reduction, out_dtype)
    scale = 1.0 / temperature
    pos = (a * k).sum(1) * scale
    if queue is None:
        # the batch keys stand in for the queue: column i of row i is the positive itself, so
        # the row log-sum-exp over k is the whole InfoNCE denominator
        negs, n_neg = k, n - 1
        use = _use_tiles(tiled, n, n)
        lse = _lse(a, k, scale, use, block_size)
    else:
        negs, n_neg = queue, queue.shape[0]
        use = _use_tiles(tiled, n, n_neg)
        lse = torch.logaddexp(pos, _lse(a, queue, scale, use, block_size)) if n_neg else pos
    h = min(num_hard, n_neg)
    if mix_index is not None:
        mix_index = _check_ranks(mix_index, "mix_index", h, validate)
    if query_mix_index is not None:
        query_mix_index = _check_ranks(query_mix_index, "query_mix_index", h, validate)
    if mix_alpha is not None:
        mix_alpha = _check_weights(mix_alpha, "mix_alpha", a, validate)
    if query_mix_beta is not None:
        query_mix_beta = _check_weights(query_mix_beta, "query_mix_beta", a, validate)
    if h > 0 and (num_mix > 0 or num_query_mix > 0):
        with torch.no_grad():
            qd = a.detach()
            hard = _hardest(qd, negs, h, block_rows(negs.shape[0], block_size) if use else n, skip_own=queue is None)
            # draws, in this order, for what the caller did not give; the weights are drawn in
            # float64 whatever the input dtype, so one seed gives one mixing in every precision
            if num_mix > 0 and mix_index is None:
                mix_index = torch.randint(h, (n, num_mix, 2), generator=generator, device=dev)
            if num_mix > 0 and mix_alpha is None:
                mix_alpha = torch.rand((n, num_mix), generator=generator, device=dev, dtype=torch.float64).to(a.dtype)
            if num_query_mix > 0 and query_mix_index is None:
                query_mix_index = torch.randint(h, (n, num_query_mix), generator=generator, device=dev)
            if num_query_mix > 0 and query_mix_beta is None:
                query_mix_beta = (0.5 * torch.rand((n, num_query_mix), generator=generator, device=dev,
                                                   dtype=torch.float64)).to(a.dtype)
            synth = []
            if num_mix > 0:
                assert mix_index is not None and mix_alpha is not None
                n1 = negs[hard.gather(1, mix_index[..., 0])]
                n2 = negs[hard.gather(1, mix_index[..., 1])]
                al = mix_alpha[..., None]
                synth.append(F.normalize(al * n1 + (1 - al) * n2, dim=2))
            if num_query_mix > 0:
                assert query_mix_index is not None and query_mix_beta is not None
                be = query_mix_beta[..., None]
                synth.append(F.normalize(be * qd[:, None, :] + (1 - be) * negs[hard.gather(1, query_mix_index)], dim=2))
            synth_t = torch.cat(synth, 1)
        lse_syn = torch.logsumexp(torch.einsum("nd,nsd->ns", a, synth_t) * scale, 1)
        lse = torch.logaddexp(lse, lse_syn)
    per = lse - pos
    if isinstance(b_in, Tensor) and b_in.requires_grad:
        per = _zero_gradient_to(per, b_in)
    return reduce_loss(per, reduction, out_dtype=out_dtype)


# ----------------------------------------------------------------------------- G8
@loss_function(inputs=PAIR, params={
    "lambd": Param("λ ≥ 0, weight of the off-diagonal (redundancy) terms", nonnegative,
                   "facebookresearch/barlowtwins main.py --lambd 0.0051"),
    "eps": Param("ε ≥ 0 inside the square root of the batch variance", nonnegative,
                 "nn.BatchNorm1d default eps (the reference's standardisation)"),
    "distributed": Param("standardise and correlate over every process's rows (all-gather with gradients); each "
                         "process returns the loss of the concatenated batch", as_bool, "off: a single process"),
    "group": SHARED["group"],
    "reduction": Param("``'sum'`` over the D feature rows (the reference) | ``'mean'`` over them | ``'none'`` "
                       "(per feature row ``(1 - C_ii)² + λ Σ_{j≠i} C_ij²``, [D])", COMMON["reduction"].check,
                       "the reference sums over the D x D terms"),
})
def barlow_twins(
    a: Tensor,
    b: Tensor,
    *,
    lambd: float = 0.0051,
    eps: float = 1e-5,
    distributed: bool = False,
    group: Any = None,
    reduction: str = "sum",
    validate: bool = True,
) -> Tensor:
    """Barlow Twins: ``Σ_i (1 - C_ii)² + λ Σ_{i≠j} C_ij²``, ``C = bn(a)ᵀ bn(b) / N``.

    ``bn`` standardises each feature over the batch (biased variance, ``eps`` inside the
    square root, as ``BatchNorm1d(affine=False)`` in training mode). ``"none"`` returns the
    D per-feature rows ``(1 - C_ii)² + λ Σ_{j≠i} C_ij²``, ``"sum"`` (default) their sum,
    ``"mean"`` their mean. An empty batch gives 0 (``"none"``: an empty tensor); one sample
    cannot be standardised (``ValueError``). See :class:`lossatlas.losses.BarlowTwinsLoss`.

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.barlow_twins(torch.randn(16, 4), torch.randn(16, 4), reduction="none").shape
        torch.Size([4])
    """
    a_in, b_in = a, b
    # The finiteness check is deferred to the (D-element) result: a NaN or Inf anywhere in a
    # feature column reaches that column's batch statistics, hence C's row or column and the
    # diagonal term, so a finite result proves finite inputs, and only a non-finite one pays
    # for reading the inputs. Same errors, no [N, D] reductions on the common path.
    a, b, out_dtype = _prepare_pair(a, b, False, normalize=False)
    on = distributed and is_distributed(group)
    ag, bg, _ = _gather_pair(a, b, on, group)
    n = ag.shape[0]
    if n == 0:
        return _no_pairs(a, b, reduction, out_dtype)
    if n < 2:
        raise ValueError(f"barlow_twins needs at least 2 samples to standardise each feature over the batch, got N={n}")

    if eps > 0:
        # ATen's batch norm (training mode, no affine, no running statistics) is this
        # standardisation with one fused kernel forward and one backward, where the composed
        # mean / var / sub / div chain makes about a dozen passes over [N, D] each way.
        za = F.batch_norm(ag, None, None, training=True, momentum=0.0, eps=eps)
        zb = F.batch_norm(bg, None, None, training=True, momentum=0.0, eps=eps)
    else:
        # eps = 0 (which F.batch_norm refuses): a constant feature gives 0/0 = NaN here,
        # where ATen's kernel would return 0.
        def bn(x: Tensor) -> Tensor:
            xc = x - x.mean(0)
            return xc / torch.sqrt(xc.pow(2).mean(0))

        za, zb = bn(ag), bn(bg)
    c = (za.T @ zb).div_(n)
    diag = torch.diagonal(c)
    per = (1.0 - diag).pow(2) + lambd * (c.pow(2).sum(1) - diag.pow(2))
    if validate and not compiling() and not bool(torch.isfinite(per).all()):
        check_finite(a_in, "a", True)
        check_finite(b_in, "b", True)
    out = reduce_loss(per, reduction, out_dtype=out_dtype)
    if on and reduction != "none":
        out = replicated_loss(out, group)
    return out


# ----------------------------------------------------------------------------- W-MSE
def _whiten(x: Tensor, eps: float, eye: Tensor, validate: bool) -> Tensor:
    """``(x - μ) Lᵀ⁻¹`` with ``L Lᵀ = (1 - eps) Σ + eps I`` (Σ the unbiased covariance of the rows)."""
    xn = x - x.mean(0)
    cov = xn.T @ xn / (x.shape[0] - 1)
    cov = (1.0 - eps) * cov + eps * eye
    chol, info = torch.linalg.cholesky_ex(cov)
    if validate and not compiling() and int(info) != 0:
        raise ValueError(
            "wmse: the covariance of a whitening sub-batch is singular (features are linearly "
            "dependent within the sub-batch); set eps > 0 (e.g. 1e-3) or use a larger w_size"
        )
    w: Tensor = torch.linalg.solve_triangular(chol, eye, upper=False)
    return xn @ w.T


@loss_function(inputs=PAIR, call=("generator",), params={
    "w_size": Param("rows per whitening sub-batch (capped at N; N must be a multiple of it, and it must exceed D "
                    "unless eps > 0)", positive_int, "htdt/self-supervised cfg --w_size 128"),
    "w_iter": Param("whitening iterations, each with a fresh permutation (their losses are averaged)", positive_int,
                    "htdt/self-supervised cfg --w_iter 1"),
    "eps": Param("covariance shrinkage in [0, 1]: ``(1 - eps) Σ + eps I``", unit_interval,
                 "Whitening2d eps=0 (--w_eps 0)"),
})
def wmse(
    a: Tensor,
    b: Tensor,
    *,
    w_size: int = 128,
    w_iter: int = 1,
    eps: float = 0.0,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """W-MSE: whiten each view over sub-batches, then ``2 - 2 cos(z_a, z_b)`` per pair.

    Each view is whitened separately within random sub-batches of ``w_size`` rows
    (Cholesky whitening of the unbiased covariance, shrunk by ``eps``), ``w_iter`` times
    with fresh permutations (drawn with the call keyword ``generator``, or torch's global
    RNG); the per-pair losses are averaged over iterations. With ``validate=True`` a
    singular sub-batch covariance raises ``ValueError`` (a host read; ``validate=False``
    and ``torch.compile`` skip it, and a singular covariance then gives NaN). See
    :class:`lossatlas.losses.WMSELoss`.

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.wmse(torch.randn(32, 4), torch.randn(32, 4), w_size=16).shape
        torch.Size([])
    """
    a, b, out_dtype = _prepare_pair(a, b, validate, normalize=False)
    n, d = a.shape
    if n == 0:
        return _no_pairs(a, b, reduction, out_dtype)
    ws = min(w_size, n)
    if n % ws:
        raise ValueError(f"the batch size N={n} must be a multiple of w_size={w_size}; change the batch size or w_size")
    if ws <= d and eps == 0.0:
        raise ValueError(
            f"whitening needs more samples per sub-batch than dimensions (w_size={ws} <= D={d}): "
            "the covariance is singular; raise w_size / the batch size, or set eps > 0"
        )
    eye = torch.eye(d, dtype=a.dtype, device=a.device)
    per = a.new_zeros(n)
    for _ in range(w_iter):
        perm = torch.randperm(n, generator=generator).to(a.device)
        za, zb = torch.empty_like(a), torch.empty_like(b)
        for idx in perm.view(-1, ws):
            za = za.index_put((idx,), _whiten(a[idx], eps, eye, validate))
            zb = zb.index_put((idx,), _whiten(b[idx], eps, eye, validate))
        per = per + (2.0 - 2.0 * (F.normalize(za, dim=1) * F.normalize(zb, dim=1)).sum(1))
    return reduce_loss(per / w_iter, reduction, out_dtype=out_dtype)
