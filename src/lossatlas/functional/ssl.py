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
from ._infonce import nce

__all__ = [
    "infonce",
    "siglip",
    "decoupled_contrastive",
    "debiased_contrastive",
    "hard_negative_contrastive",
    "mochi",
    "barlow_twins",
    "wmse",
    "sogclr",
    "isogclr",
    "sogclr_bimodal",
    "isogclr_bimodal",
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
    # the positive-mask InfoNCE family (:mod:`._infonce`): same-label keys are the positives;
    # without labels each row's one positive is its pair in the other view
    own = torch.arange(n, device=a.device) + off
    y = yg = None
    if labels is not None:
        y = _check_labels(labels, n, a.device, validate)
        yg, _ = _gather(y, on, group)
    if not intra_view_negatives:  # cross-view (CLIP): a -> b, and b -> a when symmetric
        use = _use_tiles(tiled, n, n_global)
        bs = block_rows(n_global, block_size)
        both = symmetric and not on  # one matrix serves both directions
        per, _, back = nce(a, bg, scale, y, yg, partner=own, cols=both, tiled=use, block_size=bs)
        if symmetric:
            if back is None:
                back, _, _ = nce(b, ag, scale, y, yg, partner=own, tiled=use, block_size=bs)
            per = 0.5 * (per + back)
    else:  # SimCLR's 2N form: queries cat(a, b) against keys cat(ag, bg), the anchor's own row left out
        q = torch.cat([a, b]) if symmetric else a
        keys = torch.cat([ag, bg])
        cols = _two_view_exclusion(n, off, n_global, a.device, drop_positive=True)[: q.shape[0]]
        lq, _, _ = nce(q, keys, scale, None if y is None else torch.cat([y, y])[: q.shape[0]],
                       None if yg is None else torch.cat([yg, yg]), partner=cols[:, 1], self_cols=cols[:, 0],
                       tiled=_use_tiles(tiled, q.shape[0], keys.shape[0]), block_size=block_rows(keys.shape[0], block_size))
        per = lq[:n] if not symmetric else 0.5 * (lq[:n] + lq[n:])
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


# ----------------------------------------------------------------------------- G16: SogCLR / iSogCLR
# Global contrastive losses with a per-sample moving average of each anchor's negative term
# (LibAUC GCLoss_v1 / GCLoss_v2). The state tensors are call keywords, updated IN PLACE at
# the batch's dataset indices (as F.batch_norm updates its running statistics).

def _state_index(index: Any, n: int, data_len: int, validate: bool, name: str = "index") -> Tensor:
    """``index`` as int64 [n]; its values are read (range) only when validating outside compile."""
    if not isinstance(index, Tensor):
        raise TypeError(f"{name} must be a tensor of dataset indices (int64), got {type(index).__name__}")
    if index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of dataset indices, got dtype {index.dtype}")
    if index.ndim != 1 or index.shape[0] != n:
        raise ValueError(f"{name} must have shape [{n}] (one dataset index per row), got {list(index.shape)}")
    if validate and not compiling() and n:
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= data_len:
            raise ValueError(f"{name} must lie in [0, data_len={data_len}) (the length of the state), "
                             f"got values in [{lo}, {hi}]")
    return index.long()


def _check_unique(index: Tensor, validate: bool, name: str = "index") -> None:
    if validate and not compiling() and index.numel() and torch.unique(index).numel() != index.numel():
        raise ValueError(
            f"{name} repeats a dataset index within one batch (across processes under torch.distributed: "
            "DistributedSampler pads the last batch with repeats, use drop_last=True); each sample's state "
            "is updated once per call")


def _states(names: tuple[str, ...], values: tuple[Any, ...], index: Any, n: int, device: torch.device,
            validate: bool) -> tuple[list[Tensor] | None, Tensor | None]:
    """The state tensors (all given, or all ``None``: a stateless call) and the checked ``index``."""
    given = [v is not None for v in values]
    if not any(given):
        if index is not None:
            raise ValueError(f"index= needs the state it indexes ({', '.join(n + '=' for n in names)})")
        return None, None
    if not all(given):
        missing = [nm for nm, g in zip(names, given) if not g]
        raise ValueError(f"the state is given in part: pass {', '.join(names)} together (missing {', '.join(missing)})")
    states: list[Tensor] = []
    for nm, v in zip(names, values):
        check_float(v, nm)
        if v.dim() != 1:
            raise ValueError(f"{nm} must be a 1-D tensor [data_len] (one entry per training sample), got shape {tuple(v.shape)}")
        if v.shape != values[0].shape:
            raise ValueError(f"{nm} must have the length of {names[0]} ({values[0].shape[0]}), got {v.shape[0]}")
        if v.device != device:
            raise ValueError(f"{nm} is on {v.device} but a is on {device}; move the state with the loss (.to(device))")
        states.append(v)
    if index is None:
        raise ValueError(f"{names[0]}= needs index= (int64 [N], the dataset index of each row)")
    return states, _state_index(index, n, states[0].shape[0], validate)


def _gather_values(x: Tensor, on: bool, group: Any) -> Tensor:
    """Every process's ``x`` (values, no graph), concatenated in rank order."""
    if not on:
        return x
    from ..losses._state import gather_batch  # here: lossatlas.losses imports this module

    return gather_batch(x.detach(), group=group)[0][0]


def _negatives(q: Tensor, keys: Tensor, inv_tau: Tensor, exclude: Tensor, tiled: bool | str,
               block_size: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """Per query row i over the key columns it does not exclude, with ``l_ik = q_i·k_k``:

    * ``lse_i = log Σ_k exp(l_ik / τ_i)`` (with its gradient),
    * ``max_i = max_k l_ik`` and ``mean_i = Σ_k softmax_k(l_ik / τ_i) l_ik`` (detached).

    Dense, or in blocks of query rows: the log-sum-exp by :func:`pairwise_logsumexp` (custom
    backward, memory linear in N), max and mean by one more no-grad pass over the blocks.
    """
    use = _use_tiles(tiled, q.shape[0], keys.shape[0])
    if not use:
        logits = (q @ keys.T).scatter(1, exclude, float("-inf"))
        lse = torch.logsumexp(logits * inv_tau[:, None], 1)
        ld = logits.detach()
        w = torch.exp(ld * inv_tau[:, None] - lse.detach()[:, None])
        mean = (w * torch.where(torch.isfinite(ld), ld, torch.zeros_like(ld))).sum(1)
        return lse, ld.amax(1), mean
    lse_t, _ = pairwise_logsumexp(q * inv_tau[:, None], keys, 1.0, exclude=exclude, tiled=True, block_size=block_size)
    assert lse_t is not None
    rows = block_rows(keys.shape[0], block_size)
    with torch.no_grad():
        qd, kd, ld_lse = q.detach(), keys.detach(), lse_t.detach()
        top, mean = qd.new_empty(q.shape[0]), qd.new_empty(q.shape[0])
        for r0 in range(0, q.shape[0], rows):
            r1 = min(r0 + rows, q.shape[0])
            blk = (qd[r0:r1] @ kd.T).scatter_(1, exclude[r0:r1], float("-inf"))
            top[r0:r1] = blk.amax(1)
            w = torch.exp(blk * inv_tau[r0:r1, None] - ld_lse[r0:r1, None])
            mean[r0:r1] = (w * torch.where(torch.isfinite(blk), blk, torch.zeros_like(blk))).sum(1)
    return lse_t, top, mean


def _gradient_through(lse: Tensor, tau: Tensor) -> Tensor:
    """0 in value; gradient ``τ ∇lse`` = ``Σ_k softmax_k ∇l_k`` (τ is constant state)."""
    return tau * (lse - lse.detach())


def _first_visit_gamma(u_old_global: Tensor, gamma: float) -> Tensor:
    """LibAUC: γ = 1 when the whole (global) batch's state is still 0 (never visited), else γ."""
    total = u_old_global.sum()
    return torch.where(total == 0, torch.ones_like(total), torch.full_like(total, gamma))


def _check_tau_range(tau_min: float, tau_max: float) -> None:
    if tau_min > tau_max:
        raise ValueError(f"tau_min must be <= tau_max, got tau_min={tau_min}, tau_max={tau_max}")


def _update_temperature(tau: Tensor, tau_grad: Tensor, rows: Tensor, grad: Tensor, *, tau_min: float,
                        tau_max: float, eta: float, beta: float) -> None:
    """iSogCLR's per-sample temperature step, in place at ``rows``:
    ``m ← (1-β) m + β g``, ``τ ← clamp(τ - η m, τ_min, τ_max)``."""
    with torch.no_grad():
        rows = rows.to(tau.device)
        m = (1.0 - beta) * tau_grad[rows] + beta * grad.to(tau_grad)
        tau_grad.index_copy_(0, rows, m)
        tau.index_copy_(0, rows, (tau[rows] - eta * m).clamp(min=tau_min, max=tau_max).to(tau))


def _gcl_unimodal(
    a: Tensor, b: Tensor, index: Any, u: Tensor | None, tau_state: tuple[Tensor | None, Tensor | None], *,
    temperature: float, gamma: float, eps: float, isogclr: dict[str, float] | None, normalize: bool,
    tiled: bool | str, block_size: int | None, distributed: bool, group: Any, reduction: str, validate: bool,
) -> Tensor:
    """SogCLR / iSogCLR, unimodal (GCLoss_v1): see :func:`sogclr`."""
    a, b, out_dtype = _prepare_pair(a, b, validate, normalize)
    n, dev = a.shape[0], a.device
    names: tuple[str, ...] = ("u", "tau", "tau_grad") if isogclr is not None else ("u",)
    values: tuple[Any, ...] = (u, *tau_state) if isogclr is not None else (u,)
    states, idx = _states(names, values, index, n, dev, validate)
    on = distributed and is_distributed(group)
    if n == 0:
        return _no_pairs(a, b, reduction, out_dtype)
    ag, bg, off = _gather_pair(a, b, on, group)
    n_global = ag.shape[0]
    if n_global == 1:  # a single pair: no negative, nothing to contrast; the state is left alone
        return _finish((a * b).sum(1) * 0.0, reduction, n_global, on, group, out_dtype)
    idx_g = _gather_values(idx, on, group) if idx is not None else None
    if idx_g is not None:
        _check_unique(idx_g, validate)
    # the temperature of each anchor: the global one, or iSogCLR's per-sample state at index
    if states is not None and isogclr is not None:
        assert idx is not None
        tau = states[1][idx].to(a.dtype)
    else:
        tau = a.new_full((n,), temperature)
    tau2 = torch.cat([tau, tau])
    count = 2 * (n_global - 1)  # negatives per anchor
    q, keys, excl = _two_view_queries(a, b, ag, bg, off, symmetric=True, drop_positive=True)
    lse, _, mean = _negatives(q, keys, 1.0 / tau2, excl, tiled, block_size)
    batch_u = torch.exp(lse.detach()) / count  # the anchors' in-batch estimate of E exp(h/τ)
    if states is None:
        u_new = batch_u
    else:
        assert idx is not None and idx_g is not None
        g = _first_visit_gamma(states[0][idx_g.to(states[0].device)].to(a.dtype), gamma)
        u_old = states[0][idx].to(a.dtype)
        u_new = (1.0 - g) * torch.cat([u_old, u_old]) + g * batch_u
    denom = u_new.clamp(min=eps)
    coef = batch_u / denom  # Σ_k p_ik / count, p_ik = e_ik / max(u_i, eps) (detached)
    pos = (a * b).sum(1)
    per2 = coef * (_gradient_through(lse, tau2) + mean)  # Σ_k p_ik l_ik / count
    per = per2[:n] + per2[n:] - 2.0 * pos
    if states is not None:
        assert idx is not None and idx_g is not None
        u_state = states[0]
        u_keep = 0.5 * (u_new[:n] + u_new[n:])
        with torch.no_grad():
            u_state.index_copy_(0, idx_g.to(u_state.device), _gather_values(u_keep, on, group).to(u_state))
        if isogclr is not None:
            # ∂/∂τ_i of the RGCL objective, estimated as LibAUC does: log u + ρ - Σ_k p_ik (l_ik/τ_i) / count
            grad2 = torch.log(u_new) + isogclr["rho"] - coef * mean / tau2
            grad = 0.5 * (grad2[:n] + grad2[n:])
            _update_temperature(states[1], states[2], idx_g, _gather_values(grad, on, group),
                                tau_min=isogclr["tau_min"], tau_max=isogclr["tau_max"],
                                eta=isogclr["eta"], beta=isogclr["beta"])
    return _finish(per, reduction, n_global, on, group, out_dtype)


def _gcl_bimodal_side(
    q: Tensor, keys: Tensor, pos: Tensor, tau: Tensor, off: int, states: list[Tensor] | None,
    idx: Tensor | None, idx_g: Tensor | None, *, gamma: float, eps: float, isogclr: dict[str, float] | None,
    tiled: bool | str, block_size: int | None, on: bool, group: Any,
) -> Tensor:
    """One direction of GCLoss_v2 (image→text or text→image): per anchor ``Σ_j p_ij d_ij``.

    ``states`` = [u, running max b] (+ [τ, τ moving gradient] for iSogCLR), updated in place.
    """
    n = q.shape[0]
    excl = (torch.arange(n, device=q.device) + off)[:, None]
    lse, top, mean = _negatives(q, keys, 1.0 / tau, excl, tiled, block_size)
    pos_d = pos.detach()
    # d_ij = l_ij - l_ii; LibAUC's running max b_i = max(b_i, max_j d_ij/τ_i), j = i (d_ii = 0) included
    row_max = torch.clamp((top - pos_d) / tau, min=0.0)
    # in-batch Σ_{j≠i} exp(d_ij/τ_i - b_i) / (B - 1), before and after the shift b
    log_s = lse.detach() - pos_d / tau
    count = keys.shape[0] - 1
    if states is None:
        b_new = row_max
        u_new = torch.exp(log_s - b_new) / count
    else:
        assert idx is not None and idx_g is not None
        u_state, b_state = states[0], states[1]
        b_old = b_state[idx].to(q.dtype)
        b_new = torch.maximum(b_old, row_max)
        g = _first_visit_gamma(u_state[idx_g.to(u_state.device)].to(q.dtype), gamma)
        u_old = u_state[idx].to(q.dtype)
        u_new = (1.0 - g) * u_old * torch.exp(b_old - b_new) + g * torch.exp(log_s - b_new) / count
    u_new = u_new.clamp(min=eps)
    coef = torch.exp(log_s - b_new) / u_new  # Σ_j p_ij, p_ij = e_ij / u_i (detached)
    per = coef * (_gradient_through(lse, tau) + mean - pos_d) - coef * (pos - pos_d)
    if states is not None:
        assert idx_g is not None
        with torch.no_grad():
            rows = idx_g.to(states[0].device)
            states[0].index_copy_(0, rows, _gather_values(u_new, on, group).to(states[0]))
            states[1].index_copy_(0, rows, _gather_values(b_new, on, group).to(states[1]))
        if isogclr is not None:
            # log u + ρ + b - Σ_j p_ij (d_ij/τ_i) / (B - 1)
            grad = torch.log(u_new) + isogclr["rho"] + b_new - coef * (mean - pos_d) / tau / count
            _update_temperature(states[2], states[3], idx_g, _gather_values(grad, on, group),
                                tau_min=isogclr["tau_min"], tau_max=isogclr["tau_max"],
                                eta=isogclr["eta"], beta=isogclr["beta"])
    return per


def _gcl_bimodal(
    a: Tensor, b: Tensor, index: Any, state_a: tuple[Tensor | None, ...], state_b: tuple[Tensor | None, ...], *,
    temperature: float, gamma: float, eps: float, isogclr: dict[str, float] | None, normalize: bool,
    tiled: bool | str, block_size: int | None, distributed: bool, group: Any, reduction: str, validate: bool,
) -> Tensor:
    """SogCLR / iSogCLR, bimodal (GCLoss_v2): see :func:`sogclr_bimodal`."""
    a, b, out_dtype = _prepare_pair(a, b, validate, normalize)
    n, dev = a.shape[0], a.device
    names: tuple[str, ...] = ("u_a", "max_a", "u_b", "max_b")
    if isogclr is not None:
        names = ("u_a", "max_a", "tau_a", "tau_grad_a", "u_b", "max_b", "tau_b", "tau_grad_b")
    states, idx = _states(names, (*state_a, *state_b), index, n, dev, validate)
    on = distributed and is_distributed(group)
    if n == 0:
        return _no_pairs(a, b, reduction, out_dtype)
    ag, bg, off = _gather_pair(a, b, on, group)
    n_global = ag.shape[0]
    if n_global == 1:  # a single pair: no negative, nothing to contrast; the state is left alone
        return _finish((a * b).sum(1) * 0.0, reduction, n_global, on, group, out_dtype)
    idx_g = _gather_values(idx, on, group) if idx is not None else None
    if idx_g is not None:
        _check_unique(idx_g, validate)
    half = len(names) // 2
    st_a = states[:half] if states is not None else None
    st_b = states[half:] if states is not None else None
    if st_a is not None and st_b is not None and isogclr is not None:
        assert idx is not None
        tau_a, tau_b = st_a[2][idx].to(a.dtype), st_b[2][idx].to(a.dtype)
    else:
        tau_a = tau_b = a.new_full((n,), temperature)
    pos = (a * b).sum(1)
    common = {"gamma": gamma, "eps": eps, "isogclr": isogclr, "tiled": tiled, "block_size": block_size,
              "on": on, "group": group}
    side_a = _gcl_bimodal_side(a, bg, pos, tau_a, off, st_a, idx, idx_g, **common)
    side_b = _gcl_bimodal_side(b, ag, pos, tau_b, off, st_b, idx, idx_g, **common)
    return _finish(0.5 * (side_a + side_b), reduction, n_global, on, group, out_dtype)


_LIBAUC_GCL = "LibAUC GCLoss_v1 (libauc/losses/contrastive.py)"
_LIBAUC_GCL2 = "LibAUC GCLoss_v2 (libauc/losses/contrastive.py)"
_GCL_TILED = Param("``True`` computes each anchor's negative sum as a tiled log-sum-exp (blocks of ``block_size`` query "
                   "rows, custom backward: memory linear in N) plus one no-grad pass for the weighted mean; ``False`` "
                   "builds the similarity matrix; ``'auto'`` tiles above 4M entries", tiled_option,
                   "this library (LibAUC builds the matrix)")
_GCL_DISTRIBUTED = Param("with an initialised ``torch.distributed`` group of more than one process, every process's rows "
                         "are negatives (all-gather with gradients) and the state is updated at the global batch's "
                         "indices, so every process holds the same table and returns the loss of the concatenated batch",
                         as_bool, "LibAUC distributed=False; on here, because a state updated per process diverges "
                         "between processes (no effect without a process group)")


def _gcl_params(source: str, temperature_source: str, eps_doc: str, eps_source: str, normalize_doc: str,
                normalize_source: str) -> dict[str, Param]:
    return {
        "temperature": Param("τ > 0 (iSogCLR: the initial per-sample temperature)", positive, temperature_source),
        "gamma": Param("γ in [0, 1], the moving-average weight of the new batch estimate of each sample's negative term "
                       "(a call whose whole batch was never visited uses 1)", unit_interval, source),
        "eps": Param(eps_doc, positive, eps_source),
        "normalize": Param(normalize_doc, as_bool, normalize_source),
        "tiled": _GCL_TILED,
        "block_size": SHARED["block_size"],
        "distributed": _GCL_DISTRIBUTED,
        "group": SHARED["group"],
    }


def _isogclr_params(source: str, tau_min: str, tau_max: str, rho: str) -> dict[str, Param]:
    return {
        "tau_min": Param("lower bound of the per-sample temperatures (> 0; tau_min <= tau_max)", positive, f"{source} {tau_min}"),
        "tau_max": Param("upper bound of the per-sample temperatures", positive, f"{source} {tau_max}"),
        "rho": Param("ρ, the weight of the temperature penalty τ_i ρ of the RGCL objective", any_number, f"{source} {rho}"),
        "eta": Param("η ≥ 0, the step size of the temperature update", nonnegative, f"{source} eta=0.01"),
        "beta": Param("β in [0, 1], the moving-average weight of the temperature gradient", unit_interval,
                      f"{source} beta=0.9"),
    }


_UNIMODAL = _gcl_params(
    _LIBAUC_GCL + " gamma=0.9", _LIBAUC_GCL + " tau=0.1",
    "ε > 0: the weights divide by max(u_i, ε)", _LIBAUC_GCL + " eps=1e-8",
    "L2-normalise the rows of a and b inside (gradients flow through the normalisation)", "GCLoss_v1 normalises inside")
_BIMODAL = _gcl_params(
    _LIBAUC_GCL2 + " gamma=0.9", _LIBAUC_GCL2 + " tau=0.01",
    "ε > 0: the state u_i is clamped at ε", _LIBAUC_GCL2 + " hard-codes 1e-20",
    "L2-normalise the rows of a and b inside (``False``: they are taken as given, CLIP pipelines pass unit rows)",
    "GCLoss_v2 takes the features as given")


@loss_function(inputs=PAIR, call=("index", "u"), params=_UNIMODAL)
def sogclr(
    a: Tensor,
    b: Tensor,
    *,
    index: Tensor | None = None,
    u: Tensor | None = None,
    temperature: float = 0.1,
    gamma: float = 0.9,
    eps: float = 1e-8,
    normalize: bool = True,
    tiled: bool | str = "auto",
    block_size: int | None = None,
    distributed: bool = True,
    group: Any = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """SogCLR's global contrastive loss, unimodal (two views of one sample; LibAUC ``GCLoss_v1``).

    Anchor ``a_i`` has the 2(B-1) negatives ``{a_i·b_k, a_i·a_k : k ≠ i}`` (unit rows),
    ``e_ik = exp(l_ik / τ)``; the per-sample state ``u`` [data_len] keeps a moving average of
    ``mean_k e_ik``: ``u1_i = (1-γ) u[index_i] + γ Σ_k e_ik / (2(B-1))`` (likewise ``u2_i`` for
    anchor ``b_i``, from the same old ``u``), written back as ``u[index_i] = (u1_i + u2_i)/2``
    *in place*. ``p_ik = e_ik / max(u1_i, ε)`` (detached) and
    ``ℓ_i = -(l_ii - Σ_k p_ik l_ik / (2(B-1)))`` + the same for anchor ``b_i``; its gradient is
    the stochastic gradient of ``τ log E_k exp((l_ik - l_ii)/τ)`` (Yuan et al. 2022). γ = 1
    when the whole batch's state is 0 (never visited). Without ``u`` (and ``index``) every
    sample is on its first visit and nothing is stored. Shapes: ``a``, ``b`` [N, D], ``index``
    int64 [N] (distinct), ``u`` float [data_len]; output scalar, or [N] for ``"none"``. See
    :class:`lossatlas.losses.SogCLRLoss`.

    Example:
        >>> import torch, lossatlas as la
        >>> u = torch.zeros(100)
        >>> la.functional.sogclr(torch.randn(8, 4), torch.randn(8, 4), index=torch.arange(8), u=u).shape
        torch.Size([])
    """
    return _gcl_unimodal(a, b, index, u, (None, None), temperature=temperature, gamma=gamma, eps=eps, isogclr=None,
                         normalize=normalize, tiled=tiled, block_size=block_size, distributed=distributed,
                         group=group, reduction=reduction, validate=validate)


@loss_function(inputs=PAIR, call=("index", "u", "tau", "tau_grad"), params={
    **_UNIMODAL, **_isogclr_params(_LIBAUC_GCL, "tau_min=0.05", "tau_max=0.7", "rho=0.3 (its comment recommends 0.1-0.5 for unimodal tasks)")})
def isogclr(
    a: Tensor,
    b: Tensor,
    *,
    index: Tensor | None = None,
    u: Tensor | None = None,
    tau: Tensor | None = None,
    tau_grad: Tensor | None = None,
    temperature: float = 0.1,
    gamma: float = 0.9,
    eps: float = 1e-8,
    tau_min: float = 0.05,
    tau_max: float = 0.7,
    rho: float = 0.3,
    eta: float = 0.01,
    beta: float = 0.9,
    normalize: bool = True,
    tiled: bool | str = "auto",
    block_size: int | None = None,
    distributed: bool = True,
    group: Any = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """iSogCLR, unimodal: :func:`sogclr` with a per-sample temperature ``τ_i`` (LibAUC
    ``GCLoss_v1(enable_isogclr=True)``, Qiu et al. 2023).

    ``e_ik = exp(l_ik / τ_i)`` with ``τ_i = tau[index_i]`` read before the call; after it,
    in place: ``g_i = ½ Σ_views (log u_i + ρ - Σ_k p_ik (l_ik / τ_i) / (2(B-1)))``,
    ``tau_grad[index_i] ← (1-β) tau_grad[index_i] + β g_i``,
    ``tau[index_i] ← clamp(tau[index_i] - η tau_grad[index_i], tau_min, tau_max)``. The state
    is ``u``, ``tau`` (initialised to ``temperature``) and ``tau_grad`` (zeros), all [data_len];
    without them every sample is on its first visit at ``temperature``. See
    :class:`lossatlas.losses.ISogCLRLoss`.

    Example:
        >>> import torch, lossatlas as la
        >>> u, tau, m = torch.zeros(100), torch.full((100,), 0.1), torch.zeros(100)
        >>> la.functional.isogclr(torch.randn(8, 4), torch.randn(8, 4), index=torch.arange(8), u=u, tau=tau, tau_grad=m).shape
        torch.Size([])
    """
    _check_tau_range(tau_min, tau_max)
    return _gcl_unimodal(a, b, index, u, (tau, tau_grad), temperature=temperature, gamma=gamma, eps=eps,
                         isogclr={"tau_min": tau_min, "tau_max": tau_max, "rho": rho, "eta": eta, "beta": beta},
                         normalize=normalize, tiled=tiled, block_size=block_size, distributed=distributed,
                         group=group, reduction=reduction, validate=validate)


@loss_function(inputs=PAIR, call=("index", "u_a", "u_b", "max_a", "max_b"), params=_BIMODAL)
def sogclr_bimodal(
    a: Tensor,
    b: Tensor,
    *,
    index: Tensor | None = None,
    u_a: Tensor | None = None,
    u_b: Tensor | None = None,
    max_a: Tensor | None = None,
    max_b: Tensor | None = None,
    temperature: float = 0.01,
    gamma: float = 0.9,
    eps: float = 1e-20,
    normalize: bool = False,
    tiled: bool | str = "auto",
    block_size: int | None = None,
    distributed: bool = True,
    group: Any = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """SogCLR's global contrastive loss, bimodal (image ``a``, text ``b``; LibAUC ``GCLoss_v2``).

    ``d_ij = a_i·b_j - a_i·b_i`` (image anchor i against text j ≠ i) and, for the text side,
    ``d'_ij = b_i·a_j - b_i·a_i``. Per side, with a running shift ``max_a[index_i] ←
    max(max_a[index_i], max_j d_ij/τ)`` (j = i, d_ii = 0, included) against overflow:
    ``e_ij = exp(d_ij/τ - max_a_i)``, ``u_a[index_i] ← max((1-γ) u_a_i exp(max_old - max_new) +
    γ Σ_{j≠i} e_ij/(B-1), ε)``, ``p_ij = e_ij / u_a_i`` (detached) and the side's term
    ``Σ_{j≠i} p_ij d_ij``; ``ℓ_i`` is the mean of the two sides. As LibAUC's code, the term is
    not divided by B-1: its gradient is (B-1) times that of ``τ log E_j exp(d_ij/τ)``. γ = 1
    for a side whose state is 0 over the whole batch. No normalisation inside by default.
    See :class:`lossatlas.losses.SogCLRBimodalLoss`.

    Example:
        >>> import torch, torch.nn.functional as F, lossatlas as la
        >>> st = {k: torch.zeros(100) for k in ("u_a", "u_b", "max_a", "max_b")}
        >>> la.functional.sogclr_bimodal(F.normalize(torch.randn(8, 4), dim=1), F.normalize(torch.randn(8, 4), dim=1), index=torch.arange(8), **st).shape
        torch.Size([])
    """
    return _gcl_bimodal(a, b, index, (u_a, max_a), (u_b, max_b), temperature=temperature, gamma=gamma, eps=eps,
                        isogclr=None, normalize=normalize, tiled=tiled, block_size=block_size,
                        distributed=distributed, group=group, reduction=reduction, validate=validate)


@loss_function(inputs=PAIR, call=("index", "u_a", "u_b", "max_a", "max_b", "tau_a", "tau_b", "tau_grad_a", "tau_grad_b"),
               params={**_BIMODAL, **_isogclr_params(_LIBAUC_GCL2, "tau_min=0.005", "tau_max=0.05", "rho=6.0")})
def isogclr_bimodal(
    a: Tensor,
    b: Tensor,
    *,
    index: Tensor | None = None,
    u_a: Tensor | None = None,
    u_b: Tensor | None = None,
    max_a: Tensor | None = None,
    max_b: Tensor | None = None,
    tau_a: Tensor | None = None,
    tau_b: Tensor | None = None,
    tau_grad_a: Tensor | None = None,
    tau_grad_b: Tensor | None = None,
    temperature: float = 0.01,
    gamma: float = 0.9,
    eps: float = 1e-20,
    tau_min: float = 0.005,
    tau_max: float = 0.05,
    rho: float = 6.0,
    eta: float = 0.01,
    beta: float = 0.9,
    normalize: bool = False,
    tiled: bool | str = "auto",
    block_size: int | None = None,
    distributed: bool = True,
    group: Any = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """iSogCLR, bimodal: :func:`sogclr_bimodal` with per-sample temperatures ``tau_a`` (image
    side) and ``tau_b`` (text side) (LibAUC ``GCLoss_v2(enable_isogclr=True)``).

    Per side, after the loss, in place: ``g_i = log u_i + ρ + max_i - Σ_j p_ij (d_ij/τ_i)/(B-1)``,
    ``tau_grad ← (1-β) tau_grad + β g``, ``tau ← clamp(tau - η tau_grad, tau_min, tau_max)``.
    See :class:`lossatlas.losses.ISogCLRBimodalLoss`.

    Example:
        >>> import torch, torch.nn.functional as F, lossatlas as la
        >>> st = {k: torch.zeros(100) for k in ("u_a", "u_b", "max_a", "max_b", "tau_grad_a", "tau_grad_b")}
        >>> st.update(tau_a=torch.full((100,), 0.01), tau_b=torch.full((100,), 0.01))
        >>> la.functional.isogclr_bimodal(F.normalize(torch.randn(8, 4), dim=1), F.normalize(torch.randn(8, 4), dim=1), index=torch.arange(8), **st).shape
        torch.Size([])
    """
    _check_tau_range(tau_min, tau_max)
    return _gcl_bimodal(a, b, index, (u_a, max_a, tau_a, tau_grad_a), (u_b, max_b, tau_b, tau_grad_b),
                        temperature=temperature, gamma=gamma, eps=eps,
                        isogclr={"tau_min": tau_min, "tau_max": tau_max, "rho": rho, "eta": eta, "beta": beta},
                        normalize=normalize, tiled=tiled, block_size=block_size, distributed=distributed,
                        group=group, reduction=reduction, validate=validate)
