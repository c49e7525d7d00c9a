"""Few-shot metric losses (catalogue row F8): the proto-triplet and ICNN losses, as pure functions.

Inputs of the ``embedding`` kind: ``(embeddings [N, D], labels [N])`` (an episode's queries, or
support and queries together); the proto-triplet loss takes the class prototypes as the call
keywords ``prototypes=`` / ``prototype_labels=`` (default: the class means of the batch).

Each public loss function is the one definition of its method; the module twins in
:mod:`lossatlas.losses.few_shot` carry the full documentation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._spec import Param, as_int, loss_function, nonnegative
from .._validation import check_class_indices, check_float, check_same_device, check_tensor
from ._common import compute_dtype, reduce_loss
from .metric import EMBEDDING, _check_embeddings

__all__ = ["proto_triplet", "icnn", "icnn_score", "episode_distances"]

FSL_CODE = "maumruiz/FSL-Loss (ICNN and proto-triplet losses, util icnn module)"


def episode_distances(x: Tensor, y: Tensor) -> Tensor:
    """The official distances ``sqrt(‖x_i − y_j‖² + 1e-6)`` [N, M] (squared differences summed,
    a 1e-6 inside the root: smooth everywhere, ``1e-3`` between equal rows)."""
    return ((x.unsqueeze(1) - y.unsqueeze(0)).pow(2).sum(2) + 1e-6).sqrt()


def _class_means(e: Tensor, labels: Tensor) -> Tensor:
    """Each row's class mean in the batch [N, D] (rows of one class share it)."""
    same = (labels.unsqueeze(1) == labels.unsqueeze(0)).to(e.dtype)
    return (same @ e) / same.sum(1, keepdim=True)


@loss_function(inputs=EMBEDDING, call=("prototypes", "prototype_labels"), params={
    "margin": Param("margin m ≥ 0 between the distance to the own prototype and to the nearest other one",
                    nonnegative, f"{FSL_CODE}: proto_triplet_loss(margin=0.5)"),
})
def proto_triplet(
    embeddings: Tensor,
    labels: Tensor,
    *,
    prototypes: Tensor | None = None,
    prototype_labels: Tensor | None = None,
    margin: float = 0.5,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Proto-triplet loss ``relu(d(q, c_y) − min_{c ≠ y} d(q, c) + m)`` per query; see
    :class:`lossatlas.losses.ProtoTripletLoss`."""
    y = _check_embeddings(embeddings, labels, validate)
    dt = compute_dtype(embeddings)
    q = embeddings.to(dt)
    if prototypes is None:
        if prototype_labels is not None:
            raise ValueError("prototype_labels= needs prototypes= (the class prototypes they label)")
        protos, p_labels = _class_means(q, y), y
    else:
        protos = check_float(prototypes, "prototypes").to(dt)
        if protos.dim() != 2 or protos.shape[1] != q.shape[1]:
            raise ValueError(f"prototypes must have shape [W, D] with D = {q.shape[1]}, got {tuple(prototypes.shape)}")
        check_same_device("prototypes", prototypes, "embeddings", embeddings)
        p_labels = (torch.arange(protos.shape[0], device=q.device) if prototype_labels is None
                    else check_class_indices(check_tensor(prototype_labels, "prototype_labels"), "prototype_labels"))
        if p_labels.shape != (protos.shape[0],):
            raise ValueError(f"prototype_labels must have shape [W] = [{protos.shape[0]}], got {tuple(p_labels.shape)}")
        if validate and q.shape[0] and not bool((y.unsqueeze(1) == p_labels.unsqueeze(0)).any(1).all()):
            raise ValueError("every query's label must have a prototype (labels missing from prototype_labels)")
    d = episode_distances(q, protos)
    own = y.unsqueeze(1) == p_labels.to(y.device).unsqueeze(0)
    d_pos = torch.where(own, d, torch.full_like(d, -torch.inf)).amax(1) if d.numel() else d.sum(1)
    d_neg = torch.where(own, torch.full_like(d, torch.inf), d).amin(1) if d.numel() else d.sum(1)
    losses = torch.relu(d_pos - d_neg + margin)
    losses = torch.where(torch.isfinite(d_neg), losses, torch.zeros_like(losses))  # one class only: no negative
    return reduce_loss(losses, reduction, None, embeddings.dtype)


def icnn_score(embeddings: Tensor, labels: Tensor, k: int = 4, neighbors: int | None = None) -> Tensor:
    """The ICNN score of a batch in (0, 1] (math only; N ≥ 3): ``(λ + γ)/2``.

    Over each sample's ``neighbors`` nearest other samples (default ``k + 1``): distances are
    divided by the nearest different-class one; over the first ``k`` (``N − 2`` if ``k + 2 ≥
    N``), each row normalised by ``max(1, its max)``, ``λ_sc = 1 −`` mean over samples (with a
    same-class neighbour) of the mean normalised same-class distance; the different-class
    distances divided by their largest give ``λ_dc``, their mean of means (``|0 − 1| = 1`` when
    no sample has a different-class neighbour); ``λ = (λ_sc + λ_dc)/2``; ``γ`` is the mean
    fraction of same-class neighbours (1 when ``k`` was cut to ``N − 2``).
    """
    n, eps = embeddings.shape[0], 1e-7
    k = n - 2 if k + 2 >= n else k
    ipc = k + 1 if neighbors is None else neighbors
    ipc = min(ipc, n - 1)
    d_all = episode_distances(embeddings, embeddings)
    dist, idx = d_all.topk(ipc + 1, dim=1, largest=False)
    dist, idx = dist[:, 1:], idx[:, 1:]  # the nearest is the sample itself (distance 1e-3)
    same = labels[idx] == labels.unsqueeze(1)
    diff = ~same
    nn_dc = torch.where(diff, dist, torch.full_like(dist, torch.inf)).amin(1)
    has_dc = torch.isfinite(nn_dc).unsqueeze(1)  # no different-class neighbour: distance / inf = 0
    nd = torch.where(has_dc, dist / (torch.where(has_dc, nn_dc.unsqueeze(1), 1.0) + eps), 0.0)[:, :k]
    nd = nd / nd.amax(1, keepdim=True).clamp_min(1.0)
    same_k, diff_k = same[:, :k].to(dist.dtype), diff[:, :k].to(dist.dtype)
    sc_counts = same_k.sum(1)
    sc_lamb = 1.0 - ((nd * same_k).sum(1) / (sc_counts + eps)).sum() / ((sc_counts > 0).sum().to(dist.dtype) + eps)
    dcnd = (dist * diff)[:, :k]
    dcnd = dcnd / (dcnd.max() + eps)
    dc_counts = diff_k.sum(1)
    dc_lamb = ((dcnd.sum(1) / (dc_counts + eps)).sum() / ((dc_counts > 0).sum().to(dist.dtype) + eps))
    dc_lamb = torch.where(diff[:, :k].any(), dc_lamb.abs(), (dc_lamb - 1.0).abs())  # no different-class neighbour: 1
    gamma = (same_k.sum(1) / k).sum() / n if k + 2 < n else torch.ones((), dtype=dist.dtype, device=dist.device)
    return ((sc_lamb + dc_lamb) / 2 + gamma) / 2


def _neighbors(value: Any, name: str) -> int | None:
    if value is None:
        return None
    v = as_int(value, name)
    if v < 1:
        raise ValueError(f"{name} must be a positive int (or None for k + 1), got {v}")
    return v


def _k(value: Any, name: str) -> int:
    v = as_int(value, name)
    if v < 1:
        raise ValueError(f"{name} must be a positive int, got {v}")
    return v


@loss_function(inputs=EMBEDDING, params={
    "k": Param("number k ≥ 1 of nearest neighbours scored per sample", _k, f"{FSL_CODE}: modified_score(k=4)"),
    "neighbors": Param("neighbours searched for the nearest different-class distance (None: k + 1; the official "
                       "'fullicnn' passes shot + query)", _neighbors, f"{FSL_CODE}: modified_score(ipc=None) -> k + 1"),
})
def icnn(
    embeddings: Tensor,
    labels: Tensor,
    *,
    k: int = 4,
    neighbors: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """ICNN loss ``−log score`` of the batch; see :class:`lossatlas.losses.ICNNLoss`."""
    y = _check_embeddings(embeddings, labels, validate)
    n = embeddings.shape[0]
    if n == 0:
        return reduce_loss(embeddings.sum(1), reduction, None, embeddings.dtype)
    if n < 3:
        raise ValueError(f"icnn needs at least 3 embeddings (each scored against its nearest neighbours), got {n}")
    e = embeddings.to(compute_dtype(embeddings))
    loss = -torch.log(icnn_score(e, y, k, neighbors)).reshape(1)
    return reduce_loss(loss, reduction, None, embeddings.dtype)
