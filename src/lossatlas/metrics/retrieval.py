"""Retrieval metrics on embeddings: Recall@k, R-precision and MAP@R (catalogue J7).

Definitions (Musgrave, Belongie & Lim 2020, "A Metric Learning Reality Check", ECCV):

- for a query q, rank the references by similarity (cosine by default; ties broken by
  reference order). ``R`` is the number of references with q's label;
- Recall@k (Song et al. 2016's convention, used by every deep metric learning paper):
  1 if at least one of the k nearest references has q's label, else 0;
- R-precision: the fraction of the R nearest references with q's label;
- MAP@R: ``1/R sum_{i=1}^{R} P(i) rel(i)``, with ``rel(i)`` = 1 when the i-th nearest
  reference has q's label and ``P(i)`` the precision over the first i references.

All are averaged over queries. Leave-one-out (no references given): every query is
retrieved against the other queries, itself excluded. Queries with ``R = 0`` (no
reference of their class) are left out of every average.

>>> import torch
>>> from lossatlas.metrics import retrieval_metrics
>>> emb = torch.tensor([[1., 0], [0.9, 0.1], [0, 1.], [0.1, 0.9]])
>>> retrieval_metrics(emb, torch.tensor([0, 0, 1, 1]), ks=(1,))
{'recall@1': 1.0, 'r_precision': 1.0, 'map@r': 1.0}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from .._validation import check_float
from ._common import Tensor, as_tensor, check_positive_int

__all__ = ["RetrievalMetrics", "retrieval_metrics"]

METRICS = ("cosine", "euclidean", "dot")


def _check_embeddings(emb: Any, labels: Any, name: str) -> tuple[Tensor, Tensor]:
    emb = check_float(as_tensor(emb, f"{name}_emb"), f"{name}_emb")
    labels = as_tensor(labels, f"{name}_labels")
    if emb.dim() != 2:
        raise ValueError(f"{name}_emb must have shape [N, D], got {tuple(emb.shape)}")
    if labels.dim() != 1 or labels.shape[0] != emb.shape[0] or labels.is_floating_point():
        raise ValueError(
            f"{name}_labels must be integer labels of shape [{emb.shape[0]}], got {tuple(labels.shape)} {labels.dtype}"
        )
    if emb.numel() and not bool(torch.isfinite(emb).all()):
        raise ValueError(f"{name}_emb contains NaN or Inf")
    return emb, labels.long()


def _similarity(q: Tensor, r: Tensor, metric: str) -> Tensor:
    if metric == "cosine":
        return torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(r, dim=1).T
    if metric == "dot":
        return q @ r.T
    return -torch.cdist(q, r)


def _retrieval(
    q: Tensor, ql: Tensor, r: Tensor, rl: Tensor, ks: Sequence[int], metric: str, leave_one_out: bool, chunk: int = 512
) -> dict[str, float]:
    q, r = q.to(torch.float64), r.to(torch.float64)
    # R per query: references with the query's label (minus the query itself when leave-one-out)
    ref_classes, ref_counts = torch.unique(rl, return_counts=True)
    pos = torch.searchsorted(ref_classes, ql).clamp_max(max(len(ref_classes) - 1, 0))
    R = torch.where(ref_classes[pos] == ql, ref_counts[pos], 0) if len(ref_classes) else torch.zeros_like(ql)
    if leave_one_out:
        R = R - 1
    hits = {k: 0.0 for k in ks}
    rprec = mapr = 0.0
    valid = int((R > 0).sum())
    kmax = max(ks)
    for s in range(0, q.shape[0], chunk):
        sim = _similarity(q[s : s + chunk], r, metric)
        if leave_one_out:
            rows = torch.arange(sim.shape[0], device=sim.device)
            sim[rows, rows + s] = -float("inf")
        Rc = R[s : s + chunk]
        depth = min(max(kmax, int(Rc.max()) if Rc.numel() else 0), sim.shape[1])
        order = torch.sort(sim, dim=1, descending=True, stable=True).indices[:, :depth]
        rel = (rl[order] == ql[s : s + chunk, None]).to(torch.float64)
        ok = Rc > 0
        for k in ks:
            hits[k] += float(rel[ok, :k].amax(dim=1).sum()) if k > 0 else 0.0
        ranks = torch.arange(1, depth + 1, dtype=torch.float64, device=rel.device)
        within = ranks[None, :] <= Rc[:, None]  # the first R positions
        rel_r = rel * within
        rprec += float((rel_r.sum(dim=1)[ok] / Rc[ok]).sum())
        prec_at_i = rel_r.cumsum(dim=1) / ranks
        mapr += float(((prec_at_i * rel_r).sum(dim=1)[ok] / Rc[ok]).sum())
    nan = float("nan")
    out = {f"recall@{k}": hits[k] / valid if valid else nan for k in ks}
    out["r_precision"] = rprec / valid if valid else nan
    out["map@r"] = mapr / valid if valid else nan
    return out


def _nonempty(state: Tensor | list[Tensor]) -> bool:
    return state.numel() > 0 if isinstance(state, Tensor) else any(t.numel() for t in state)


class RetrievalMetrics(Metric):
    """Recall@k, R-precision and MAP@R (Musgrave et al. 2020) over accumulated embeddings.

    ``update(query_emb, query_labels, ref_emb=None, ref_labels=None)`` appends queries
    (and, optionally, references); states are concatenated across processes. With no
    reference ever given, ``compute()`` runs leave-one-out within the queries.

    Args:
        ks: the k of Recall@k (default (1, 2, 4, 8), the CUB/Cars/SOP convention).
        metric: ``"cosine"`` (default), ``"euclidean"`` or ``"dot"`` similarity.

    ``compute()`` returns a dict of floats ``recall@k`` ..., ``r_precision``, ``map@r``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    # list states: a list of update() batches; after a distributed sync inside compute() torchmetrics
    # has concatenated them into one tensor (dim_zero_cat accepts both)
    query_emb: list[Tensor]
    query_labels: list[Tensor]
    ref_emb: list[Tensor]
    ref_labels: list[Tensor]

    def __init__(self, ks: Sequence[int] = (1, 2, 4, 8), metric: str = "cosine", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ks = tuple(check_positive_int(k, "ks") for k in ks)
        if not self.ks:
            raise ValueError("ks must hold at least one k, e.g. (1, 2, 4, 8)")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.metric = metric
        for name in ("query_emb", "query_labels", "ref_emb", "ref_labels"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, query_emb: Tensor, query_labels: Tensor, ref_emb: Tensor | None = None, ref_labels: Tensor | None = None) -> None:
        q, ql = _check_embeddings(query_emb, query_labels, "query")
        self.query_emb.append(q)
        self.query_labels.append(ql)
        if (ref_emb is None) != (ref_labels is None):
            raise ValueError("pass both ref_emb and ref_labels, or neither (leave-one-out)")
        if ref_emb is not None:
            r, rl = _check_embeddings(ref_emb, ref_labels, "ref")
            if r.shape[1] != q.shape[1]:
                raise ValueError(f"ref_emb has dimension {r.shape[1]} but query_emb has {q.shape[1]}; they must match")
            self.ref_emb.append(r)
            self.ref_labels.append(rl)

    def compute(self) -> dict[str, float]:
        if not _nonempty(self.query_emb):
            raise ValueError("no queries: call update() with at least one embedding before compute()")
        q, ql = dim_zero_cat(self.query_emb), dim_zero_cat(self.query_labels)
        if _nonempty(self.ref_emb):
            r, rl = dim_zero_cat(self.ref_emb), dim_zero_cat(self.ref_labels)
            return _retrieval(q, ql, r, rl, self.ks, self.metric, leave_one_out=False)
        return _retrieval(q, ql, q, ql, self.ks, self.metric, leave_one_out=True)


def retrieval_metrics(
    query_emb: Any,
    query_labels: Any,
    ref_emb: Any = None,
    ref_labels: Any = None,
    ks: Sequence[int] = (1, 2, 4, 8),
    metric: str = "cosine",
) -> dict[str, float]:
    """Recall@k for k in ``ks``, R-precision and MAP@R; ``ref_emb=None`` means leave-one-out.

    Returns a flat dict: ``recall@1``, ``recall@2``, ..., ``r_precision``, ``map@r``.
    """
    m = RetrievalMetrics(ks=ks, metric=metric)
    m.update(query_emb, query_labels, ref_emb, ref_labels)
    return m.compute()
