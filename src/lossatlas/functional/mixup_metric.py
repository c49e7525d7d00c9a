"""Metrix, mixup for deep metric learning (catalogue row F9), as a pure function.

Inputs of the ``pair`` kind: ``(anchors [M, D], mixed [M, D])``, each anchor's clean embedding and
the embedding of its mixed example, with the call keyword ``lam=``: the positive's share of each mix.

The public function is the one definition of the method; the module twin in
:mod:`lossatlas.losses.mixup_metric` carries the full documentation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._spec import Param, as_bool, loss_function, nonnegative
from .._validation import check_finite, check_float, check_number, check_reduction, check_same_device, compiling
from ._common import compute_dtype, reduce_loss

__all__ = ["metrix", "mixup_embeddings"]

METRIX_CODE = "billpsomas/Metrix_ICLR22"


def mixup_embeddings(positive: Tensor, negative: Tensor, lam: Any) -> Tensor:
    """Metrix's embedding mixup ``λ·positive + (1 − λ)·negative`` (rows; ``lam`` a number or [M])."""
    lam_t = torch.as_tensor(lam, dtype=positive.dtype, device=positive.device)
    lam_t = lam_t.unsqueeze(-1) if lam_t.dim() == 1 else lam_t
    return lam_t * positive + (1.0 - lam_t) * negative


def _lam(lam: Any, m: int, like: Tensor, validate: bool) -> Tensor:
    """``lam`` as a [M] tensor of the compute dtype, checked to lie in [0, 1]."""
    if isinstance(lam, Tensor):
        w: Tensor = check_float(lam, "lam")
        if w.dim() == 0:
            w = w.expand(m)
        if w.shape != (m,):
            raise ValueError(f"lam must be a number or a tensor [M] = [{m}] (one mixing weight per pair), got {tuple(w.shape)}")
        check_same_device("lam", w, "anchors", like)
        if validate and not compiling() and m:
            check_finite(w, "lam", validate)
            if bool(((w < 0) | (w > 1)).any()):
                raise ValueError("lam must lie in [0, 1] (the positive's share of each mix)")
        return w.to(like.dtype)
    return torch.full((m,), check_number(lam, "lam", low=0.0, high=1.0), dtype=like.dtype, device=like.device)


@loss_function(inputs=("anchors", "mixed"), call=("lam",), params={
    "pos_margin": Param("margin m+ ≥ 0 of the positive term ``relu(d − m+)``", nonnegative,
                        f"{METRIX_CODE} mixup/losses.py margin(pair_dist, 0.0)"),
    "neg_margin": Param("margin m− ≥ 0 of the negative term ``relu(m− − d)``", nonnegative,
                        f"{METRIX_CODE} main.py ContrastiveLoss(neg_margin=0.5); mixup/losses.py margin(0.5, pair_dist)"),
    "average_nonzero": Param("``'mean'`` averages each term over its non-zero entries (pytorch-metric-learning's "
                             "AvgNonZeroReducer) instead of over all pairs", as_bool,
                             f"{METRIX_CODE} main.py: AvgNonZeroReducer for pos_loss and neg_loss"),
})
def metrix(
    anchors: Tensor,
    mixed: Tensor,
    *,
    lam: Tensor | float = 0.5,
    pos_margin: float = 0.0,
    neg_margin: float = 0.5,
    average_nonzero: bool = True,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Metrix's mixed contrastive loss ``λ relu(d − m+) + (1 − λ) relu(m− − d)`` per (anchor, mixed)
    pair; see :class:`lossatlas.losses.MetrixLoss`."""
    check_reduction(reduction)
    a, x = check_float(anchors, "anchors"), check_float(mixed, "mixed")
    if a.dim() != 2 or a.shape[1] < 1:
        raise ValueError(f"anchors must have shape [M, D], got {tuple(a.shape)}")
    if x.shape != a.shape:
        raise ValueError(f"mixed must have the shape of anchors {tuple(a.shape)}, got {tuple(x.shape)}")
    check_same_device("anchors", a, "mixed", x)
    check_finite(a, "anchors", validate, mixed=x)
    lam_t = _lam(lam, a.shape[0], a.to(compute_dtype(a)), validate)
    dt = compute_dtype(a)
    d = torch.linalg.vector_norm(F.normalize(a.to(dt), dim=1) - F.normalize(x.to(dt), dim=1), dim=1)
    pos = lam_t * torch.relu(d - pos_margin)
    neg = (1.0 - lam_t) * torch.relu(neg_margin - d)
    if reduction != "mean":
        return reduce_loss(pos + neg, reduction, None, a.dtype)
    if average_nonzero:
        mean = pos.sum() / (pos > 0).sum().clamp_min(1) + neg.sum() / (neg > 0).sum().clamp_min(1)
    else:
        mean = (pos.mean() + neg.mean()) if pos.numel() else pos.sum()
    return mean.to(a.dtype)
