"""Subclass-balancing contrastive learning, SBCL (catalogue row G13), as a pure function.

Inputs of the ``embedding`` kind: ``(embeddings, labels)`` with the subclass (cluster) label of
each sample as the call keyword ``subclass=``; ``embeddings`` is [N, D] or SupContrast's
``[bsz, n_views, D]`` (flattened view-major, as :func:`lossatlas.functional.supcon`).

The public function is the one definition of the method; the module twin in
:mod:`lossatlas.losses.subclass_contrastive` carries the full documentation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._spec import Param, loss_function, nonnegative, positive
from .._validation import check_class_indices, check_finite, check_float, check_same_device, check_tensor, compiling
from ._common import reduce_loss
from .metric import EMBEDDING, _masked_lse, _unit, _views

__all__ = ["sbcl", "sbcl_subclass_counts", "sbcl_subclasses", "sbcl_class_temperature"]

SBCL_CODE = "JackHck/SBCL SimCLR"


def sbcl_subclass_counts(class_counts: Any) -> list[int]:
    """SBCL's number of subclasses of each class: ``n_c // max(min_c n_c, 10)``, at least 1
    (official ``SimCLR/main.py``): head classes split into clusters of about a tail class's size."""
    counts = [int(c) for c in torch.as_tensor(class_counts).reshape(-1).tolist()]
    if not counts or min(counts) < 1:
        raise ValueError(f"class_counts must be positive sample counts per class, got {counts}")
    size = max(min(counts), 10)
    return [max(c // size, 1) for c in counts]


def _cosine_kmeans(x: Tensor, k: int, generator: torch.Generator, iters: int, tol: float) -> Tensor:
    """Cluster ids [n] of the rows of ``x`` by k-means on the unit sphere (assign by largest cosine,
    centres the normalised means), started from a row drawn with ``generator`` and then, one by
    one, the row least similar to the centres chosen (kmeans_pytorch draws all its starting
    centres at random, which can merge two clusters); stops when no centre moves by more than
    ``tol`` (kmeans_pytorch's rule)."""
    u = F.normalize(x, dim=1)
    first = int(torch.randint(u.shape[0], (1,), generator=generator))
    chosen = [first]
    nearest = u @ u[first]
    for _ in range(1, k):  # farthest-point start: each next centre is the row least similar to those chosen
        nxt = int(nearest.argmin())
        chosen.append(nxt)
        nearest = torch.maximum(nearest, u @ u[nxt])
    centres = u[chosen]
    ids = torch.zeros(u.shape[0], dtype=torch.long, device=u.device)
    for _ in range(iters):
        ids = (u @ centres.T).argmax(1)
        sums = torch.zeros_like(centres).index_add(0, ids, u)
        counts = torch.bincount(ids, minlength=k).unsqueeze(1)
        moved = torch.where(counts > 0, F.normalize(sums, dim=1), centres)  # an empty cluster keeps its centre
        shift = float((moved - centres).norm(dim=1).max())
        centres = moved
        if shift <= tol:
            break
    return (u @ centres.T).argmax(1)


def sbcl_subclasses(features: Tensor, labels: Tensor, class_counts: Any = None, *, iters: int = 25,
                    tol: float = 1e-3, seed: int = 0) -> Tensor:
    """SBCL's subclass labels [N]: each class's features clustered by cosine k-means into
    :func:`sbcl_subclass_counts` clusters (counted from ``labels`` unless ``class_counts`` is
    given); the official code re-clusters the whole training set every 10 epochs, with at
    most 25 iterations (``kmeans_pytorch``, ``distance='cosine'``, ``tol=1e-3``). Ids run
    from 0 within each class, as :func:`sbcl`'s ``subclass=`` takes them."""
    x = check_float(features, "features")
    y = check_class_indices(labels, "labels")
    if x.dim() != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"features must be [N, D] and labels [N], got {tuple(x.shape)} and {tuple(y.shape)}")
    num_classes = int(y.max()) + 1 if y.numel() else 0
    counts = torch.bincount(y, minlength=num_classes) if class_counts is None else torch.as_tensor(class_counts)
    clusters = sbcl_subclass_counts(counts) if num_classes else []
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros_like(y)
    with torch.no_grad():
        for c, k in enumerate(clusters):
            rows = (y == c).nonzero().squeeze(1)
            if k > 1 and rows.numel() > k:
                out[rows] = _cosine_kmeans(x[rows].detach(), k, g, iters, tol)
    return out


def sbcl_class_temperature(features: Tensor, labels: Tensor, temperature: float = 0.1, class_counts: Any = None) -> Tensor:
    """SBCL's class temperatures [C] (official ``cluster()``, ``--train_rule Ranking``): each class's mean
    distance to its centre over ``log(n_c + 10)``, clipped to its 10th..90th percentiles over the classes,
    ``τ · d_c / mean(d)``; classes of a single subclass get ``τ``."""
    x = check_float(features, "features")
    y = check_class_indices(labels, "labels")
    num_classes = int(y.max()) + 1
    counts = torch.bincount(y, minlength=num_classes) if class_counts is None else torch.as_tensor(class_counts)
    density = torch.zeros(num_classes, dtype=torch.float64)
    with torch.no_grad():
        for c in range(num_classes):
            fc = x[y == c].detach().double()
            density[c] = (fc - fc.mean(0)).norm(dim=1).mean() / math.log(fc.shape[0] + 10.0)
    lo, hi = torch.quantile(density, 0.1), torch.quantile(density, 0.9)
    density = density.clamp(lo, hi)
    tau = temperature * density / density.mean()
    single = torch.tensor(sbcl_subclass_counts(counts)) == 1
    return torch.where(single, torch.full_like(tau, temperature), tau)


def _rows(values: Any, name: str, labels_given: Tensor, n_views: int) -> Tensor:
    """A per-sample integer vector given like ``labels`` ([N], or [bsz] for [bsz, n_views, D]), tiled to the rows."""
    v = check_class_indices(check_tensor(values, name), name)
    if v.shape != labels_given.shape:
        raise ValueError(f"{name} must have the shape of labels {tuple(labels_given.shape)}, got {tuple(v.shape)}")
    check_same_device(name, v, "labels", labels_given)
    return v.repeat(n_views)


def _sbcl(u: Tensor, y: Tensor, sub: Tensor, sample: Tensor, temperature: float, base_temperature: float,
          gamma: float, tau_rows: Tensor) -> Tensor:
    """Per-anchor SBCL losses [N] on unit rows ``u`` (math only).

    Subclass term: SupCon at ``τ`` whose positives share the anchor's subclass (class and
    cluster), over every other row. Class term: at the anchor's class temperature, positives
    are the other views of the anchor's sample and the rows of its class in other subclasses;
    the denominator holds those views and every row of another subclass.
    """
    n = u.shape[0]
    s = u @ u.T
    eye = torch.eye(n, dtype=torch.bool, device=u.device)
    same_class = y.unsqueeze(1) == y.unsqueeze(0)
    same_sub = same_class & (sub.unsqueeze(1) == sub.unsqueeze(0))
    other_view = (sample.unsqueeze(1) == sample.unsqueeze(0)) & ~eye
    zero = torch.zeros_like(s)

    z1 = s / temperature
    pos1 = same_sub & ~eye
    log_p1 = torch.where(pos1, z1 - _masked_lse(z1, ~eye).unsqueeze(1), zero)
    term1 = log_p1.sum(1) / pos1.sum(1).clamp_min(1).to(s.dtype)

    z2 = s / tau_rows.unsqueeze(1)
    pos2 = other_view | (same_class & ~same_sub)
    log_p2 = torch.where(pos2, z2 - _masked_lse(z2, other_view | ~same_sub).unsqueeze(1), zero)
    term2 = log_p2.sum(1) / pos2.sum(1).clamp_min(1).to(s.dtype)
    return -(temperature / base_temperature) * term1 - gamma * term2


@loss_function(inputs=EMBEDDING, call=("subclass", "class_temperature"), params={
    "temperature": Param("temperature τ > 0 of the subclass term (and of the class term where no "
                         "``class_temperature`` is given)", positive,
                         f"{SBCL_CODE}/main.py --temperature default 0.1 (loss.py SupConLoss_rank temperature=0.1)"),
    "base_temperature": Param("τ_b > 0: the subclass term is scaled by τ/τ_b, as SupCon", positive,
                              f"{SBCL_CODE}/loss.py SupConLoss_rank(base_temperature=0.07)"),
    "gamma": Param("weight γ ≥ 0 of the class term", nonnegative,
                   f"{SBCL_CODE}/loss.py SupConLoss_rank(grama=0.25)"),
})
def sbcl(
    embeddings: Tensor,
    labels: Tensor,
    *,
    subclass: Tensor | None = None,
    class_temperature: Tensor | None = None,
    temperature: float = 0.1,
    base_temperature: float = 0.07,
    gamma: float = 0.25,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """SBCL's bi-granularity contrastive loss; see :class:`lossatlas.losses.SBCLLoss`.

    ``subclass`` [N] (or [bsz]) are the cluster labels within each class (two samples share a
    subclass when they share the class and the cluster id; ``None``: one subclass per class);
    ``class_temperature`` [C] the class term's temperature of each class (``None``: ``τ``).
    """
    if isinstance(labels, Tensor) and labels.is_floating_point():
        raise TypeError(f"labels must be integer class ids, got dtype {labels.dtype}")
    emb = check_float(embeddings, "embeddings")
    n_views = emb.shape[1] if emb.dim() == 3 else 1
    flat, y_rows = _views(emb, labels, validate)
    u, y, out_dtype = _unit(flat, y_rows, validate)
    given = check_class_indices(labels, "labels")
    n = u.shape[0]
    sample = torch.arange(n // n_views, device=u.device).repeat(n_views)  # row v·bsz + i is sample i's view v
    sub = torch.zeros_like(y) if subclass is None else _rows(subclass, "subclass", given, n_views)
    if class_temperature is None:
        tau_rows = torch.full((n,), temperature, dtype=u.dtype, device=u.device)
    else:
        tau = check_float(check_tensor(class_temperature, "class_temperature"), "class_temperature")
        if tau.dim() != 1:
            raise ValueError(f"class_temperature must have shape [C] (one temperature per class), got {tuple(tau.shape)}")
        check_same_device("class_temperature", tau, "embeddings", u)
        if validate and not compiling():
            check_finite(tau, "class_temperature", validate)
            if tau.numel() and bool((tau <= 0).any()):
                raise ValueError("class_temperature must be positive")
            if n and int(y.max()) >= tau.numel():
                raise ValueError(f"labels must be < len(class_temperature) = {tau.numel()}, found {int(y.max())}")
        tau_rows = tau.to(u.dtype)[y]
    return reduce_loss(_sbcl(u, y, sub, sample, temperature, base_temperature, gamma, tau_rows), reduction, None, out_dtype)
