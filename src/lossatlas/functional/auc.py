"""AUC objectives (catalogue rows H1, H2, D5, G12), as pure functions.

The binary losses take ``scores`` [N] (probabilities in (0, 1), e.g. ``torch.sigmoid`` of a
model's output, as LibAUC feeds them: no sigmoid is applied inside) and an int64 ``target``
[N] in {0, 1}. The module twins live in :mod:`lossatlas.losses.auc` and carry the full
documentation.

:func:`pairwise_surrogate` is the shared pairwise piece: a surrogate ``ℓ(t)`` of the 0/1
loss ``1[t ≤ 0]`` applied to score differences ``t = s_pos − s_neg``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__: list[str] = []

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
