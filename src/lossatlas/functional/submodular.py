"""SCoRe, submodular combinatorial representation losses (catalogue row F11), as pure functions.

Inputs of the ``embedding`` kind: ``(embeddings [N, D] or [bsz, n_views, D], labels)``; the
``[bsz, n_views, D]`` layout is flattened view-major as :func:`lossatlas.functional.supcon`.

The public function is the one definition of the method; the module twin in
:mod:`lossatlas.losses.submodular` carries the full documentation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._spec import Param, loss_function, positive
from ._common import reduce_loss
from .metric import EMBEDDING, _unit, _views

__all__ = ["score_facility_location", "score_logdet"]

SCORE_CODE = "amajee11us/SCoRe"


def _facility_location(u: Tensor, y: Tensor, scale: float) -> Tensor:
    """Per-anchor facility-location losses [N] on unit rows (math only): ``scale · LSE_i s̃_ij``,
    ``s̃_ij`` the cosine similarity where ``i`` is of another class than ``j`` and 0 elsewhere."""
    other = y.unsqueeze(1) != y.unsqueeze(0)
    s = torch.where(other, u @ u.T, torch.zeros((), dtype=u.dtype, device=u.device))
    return scale * torch.logsumexp(s, dim=0)


@loss_function(inputs=EMBEDDING, params={
    "temperature": Param("τ > 0: the loss is scaled by τ/τ_b (the similarities are not divided by it)", positive,
                         f"{SCORE_CODE} train_stage1.py --temp default 0.07"),
    "base_temperature": Param("τ_b > 0 of the τ/τ_b scale", positive,
                              f"{SCORE_CODE} objectives/combinatorial/FL.py base_temperature = 0.07"),
    "lamda": Param("weight λ > 0 of the facility-location term", positive,
                   f"{SCORE_CODE} train_stage1.py --method fl: FacilityLocation(lamda=1.0)"),
})
def score_facility_location(
    embeddings: Tensor,
    labels: Tensor,
    *,
    temperature: float = 0.07,
    base_temperature: float = 0.07,
    lamda: float = 1.0,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """SCoRe's facility-location loss ``(τ/τ_b) λ log Σ_i exp(s̃_ij)`` per anchor ``j``; see
    :class:`lossatlas.losses.SCoReFacilityLocationLoss`."""
    flat, y_rows = _views(embeddings, labels, validate)
    u, y, out_dtype = _unit(flat, y_rows, validate)
    return reduce_loss(_facility_location(u, y, (temperature / base_temperature) * lamda), reduction, None, out_dtype)


@loss_function(inputs=EMBEDDING, params={
    "ridge": Param("ε > 0 added to the kernel's diagonal, ``log det(S + εI)``", positive,
                   f"{SCORE_CODE} objectives/combinatorial/logdet.py: torch.logdet(S + 0.5 * I)"),
})
def score_logdet(
    embeddings: Tensor,
    labels: Tensor,
    *,
    ridge: float = 0.5,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """SCoRe's log-determinant total correlation ``Σ_k log det(S_{A_k} + εI) − log det(S + εI)``
    of the batch; see :class:`lossatlas.losses.SCoReLogDetLoss`."""
    flat, y_rows = _views(embeddings, labels, validate)
    u, y, out_dtype = _unit(flat, y_rows, validate)
    n = u.shape[0]
    if n == 0:
        return reduce_loss(u.sum(1), reduction, None, out_dtype)
    s = u @ u.T
    eye = ridge * torch.eye(n, dtype=u.dtype, device=u.device)
    same = y.unsqueeze(1) == y.unsqueeze(0)
    # the classes' blocks of S form a block-diagonal matrix (up to a permutation of the rows and
    # columns, which leaves determinants alone): its log-determinant is the sum over the classes
    within = torch.logdet(torch.where(same, s, torch.zeros((), dtype=s.dtype, device=s.device)) + eye)
    loss = (within - torch.logdet(s + eye)).reshape(1)
    return reduce_loss(loss, reduction, None, out_dtype)
