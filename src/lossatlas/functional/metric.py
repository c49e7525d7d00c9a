"""Metric-learning losses (catalogue rows F1–F7, plus SupCon G2 and NT-Xent G1), as pure functions.

Inputs follow the ``embedding`` kind: ``embeddings`` [N, D] (raw: every loss L2-normalises
the rows inside, so gradients flow through the normalisation) and integer ``labels`` [N].
Classifier-style losses (ArcFace, CosFace, NormFace, SFace, UNPG, Partial FC) also take the
class-weight matrix ``weight`` [C, D] in ``nn.Linear`` layout (its rows are normalised too).

Every loss here is a :func:`lossatlas._spec.loss_function`: its signature holds each
hyper-parameter's name and default, its ``Param`` the check, doc line and the source of the
default; the modules of :mod:`lossatlas.losses.metric` are built from (or call) the same
functions.

Pair and triplet losses accept ``indices=`` from a miner (:mod:`lossatlas.miners`): a
triplet tuple ``(anchors, positives, negatives)`` or a pair tuple
``(anchors_pos, positives, anchors_neg, negatives)``, int64 tensors indexing the batch. A
triplet tuple given to a pair loss becomes the pairs ``(a, p)`` and ``(a, n)``; a pair tuple
given to the triplet loss becomes every triplet whose two pairs share the anchor
(pytorch-metric-learning's conventions). ``indices=None`` uses every pair / triplet.

Composition (issue 22): ``contrastive``, ``triplet_margin``, ``multi_similarity``, ``supcon``
and ``ntxent`` also take the call keywords ``ref_emb`` [M, D] / ``ref_labels`` [M] (anchors
from ``embeddings``, positives and negatives from the reference set; miner indices then index
the reference), ``distance=`` (a :class:`lossatlas.distances.Distance`; the default is each
loss's paper distance) and ``reducer=`` (a :class:`lossatlas.reducers.Reducer`; the default is
each loss's own ``'mean'``), as pytorch-metric-learning composes them; a call with any of them
takes the composed kernel (:mod:`lossatlas.functional._composed`), equal to the direct one at
the defaults. :class:`lossatlas.memory.MemoryLoss` adds a cross-batch memory or a MoCo queue.

Distances are Euclidean between the unit rows, ``d_ij = sqrt(2 − 2 u_i·u_j)`` from one Gram
matrix (:func:`_unit_distances`, the one distance piece of every distance-based loss and
miner); identical points are at distance exactly 0 with a zero (finite) gradient there, as
``torch.cdist`` gives pytorch-metric-learning, and have bit-identical distances to every
row (so a miner's or a triplet's exact ties stay exact).

Reductions of the pair / triplet losses: ``"none"`` returns per-anchor losses [N] (the
sum of the terms anchored at each sample, or the anchor's loss for the per-anchor losses
MS / SupCon), ``"sum"`` their sum, and ``"mean"`` the reference's average, documented
per loss (e.g. the mean over non-zero terms for contrastive and triplet losses).
The modules in :mod:`lossatlas.losses.metric` carry the full documentation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from .._paths import take_fused
from .._spec import Param, any_number, as_bool, loss_function, nonnegative, positive
from .._validation import (
    check_class_indices,
    check_class_target,
    check_finite,
    check_float,
    check_number,
    check_same_device,
    check_tensor,
    compiling,
)
from ..distances import Distance
from ..distributed.blocks import row_blocks
from ..distributed.gather import _all_reduce_value, all_gather_with_grad, global_reduce, is_distributed
from ..distributed.tiled import block_rows
from ..reducers import Reducer
from . import _composed
from ._common import add_to_target, compute_dtype, reduce_loss, target_logit
from ._infonce import nce, nce_matrix
from .ssl import SHARED, _use_tiles, block_size_option, tiled_option

__all__ = [
    "contrastive",
    "triplet_margin",
    "multi_similarity",
    "multi_similarity_mine",
    "supcon",
    "ntxent",
    "threshold_consistent_margin",
    "normalized_softmax",
    "cosface",
    "arcface",
    "margin_logits",
    "sface",
    "unpg",
    "box_and_whisker_filter",
    "partial_fc",
    "sample_class_centres",
]

Indices = Sequence[Tensor]
MARGIN_TYPES = ("arcface", "cosface", "normface")
AVERAGE_OVER = ("anchors_with_positives", "all_anchors")
EMBEDDING = ("embeddings", "labels")
CLASSIFIER = ("embeddings", "labels", "weight")
PML = "pytorch-metric-learning"
INSIGHTFACE = "insightface arcface_torch"


# --------------------------------------------------------------------------------------
# hyper-parameter checks
# --------------------------------------------------------------------------------------
def _one_of(choices: tuple[str, ...]) -> Callable[[Any, str], str]:
    def check(value: Any, name: str) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        return value

    check.__doc__ = f"One of {choices}."
    return check


def _cosine_level(value: Any, name: str) -> float:
    """A cosine similarity threshold in [−1, 1]."""
    return check_number(value, name, low=-1.0, high=1.0)


def _angle(value: Any, name: str) -> float:
    """An angle in radians in [0, π]."""
    return check_number(value, name, low=0.0, high=math.pi)


def _rate(value: Any, name: str) -> float:
    """A fraction in (0, 1]."""
    return check_number(value, name, low=0.0, high=1.0, low_open=True)


_margin_type = _one_of(MARGIN_TYPES)
_average_over = _one_of(AVERAGE_OVER)


_ROW_BLOCK_SIZE = Param("anchor rows per block of the row-block form (``None``: about 1M matrix entries per block)",
                        block_size_option, "this library")


# --------------------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------------------
def _check_embeddings(embeddings: Tensor, labels: Tensor, validate: bool) -> Tensor:
    """Check ``embeddings`` [N, D] (float, finite) and ``labels`` [N]; return the labels as
    int64 (the class-index dtypes every loss takes: :func:`~lossatlas._validation.check_class_indices`)."""
    check_float(embeddings, "embeddings")
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must have shape [N, D], got {tuple(embeddings.shape)}")
    if embeddings.shape[1] < 1:
        raise ValueError(f"embeddings must have at least one feature column, got shape {tuple(embeddings.shape)}")
    labels = check_class_indices(labels, "labels")
    if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels must have shape [N] = [{embeddings.shape[0]}] to match embeddings "
            f"{tuple(embeddings.shape)}, got {tuple(labels.shape)}"
        )
    check_same_device("embeddings", embeddings, "labels", labels)
    check_finite(embeddings, "embeddings", validate)
    return labels


def _unit(embeddings: Tensor, labels: Tensor, validate: bool) -> tuple[Tensor, Tensor, torch.dtype]:
    """Validate, cast to the compute dtype and L2-normalise the rows; also returns the labels
    as int64 and the output dtype."""
    labels = _check_embeddings(embeddings, labels, validate)
    u = F.normalize(embeddings.to(compute_dtype(embeddings)), p=2.0, dim=1)
    return u, labels, embeddings.dtype


def _views(embeddings: Any, labels: Any, validate: bool) -> tuple[Tensor, Tensor]:
    """The labelled batch ``(embeddings [M, D], labels [M])`` of a SupCon / NT-Xent call.

    Three call forms, told apart by the inputs' dtypes and shapes:

    * ``(embeddings [N, D], labels [N])`` with INTEGER labels: returned as given;
    * ``(z1 [N, D], z2 [N, D])``, a FLOATING-POINT second argument: two views of the same N
      samples (SimCLR), the batch ``cat([z1, z2])`` [2N, D] with labels ``cat([arange(N),
      arange(N)])``: each row's one positive is the other view of its sample;
    * ``(features [B, V, D], labels [B] or None)``: SupContrast's layout (``V`` views of B
      samples), flattened view-major as SupContrast's ``torch.cat(torch.unbind(features, 1))``
      (row ``v·B + i`` is ``features[i, v]``) with the labels tiled V times; ``None`` gives
      every sample its own label (SupContrast's ``labels=None``: SimCLR).
    """
    e = check_float(embeddings, "embeddings")
    if e.dim() == 3:
        b, v, d = e.shape
        if v < 1 or d < 1:
            raise ValueError(f"embeddings [bsz, n_views, D] needs n_views >= 1 and D >= 1, got shape {tuple(e.shape)}")
        if labels is None:
            y = torch.arange(b, device=e.device)
        else:
            check_tensor(labels, "labels")
            if labels.is_floating_point():
                raise TypeError(
                    f"with embeddings of shape [bsz, n_views, D] = {tuple(e.shape)}, labels must be integer class ids "
                    f"[bsz] or None, got a {labels.dtype} tensor (a second view is only for [N, D] embeddings)"
                )
            y = check_class_indices(labels, "labels")
            if y.dim() != 1 or y.shape[0] != b:
                raise ValueError(
                    f"labels must have shape [bsz] = [{b}] to match embeddings [bsz, n_views, D] = {tuple(e.shape)}, "
                    f"got {tuple(y.shape)}"
                )
            check_same_device("embeddings", e, "labels", y)
        return e.transpose(0, 1).reshape(v * b, d), y.repeat(v)
    if e.dim() != 2:
        raise ValueError(f"embeddings must have shape [N, D] or [bsz, n_views, D], got {tuple(e.shape)}")
    if labels is None:
        raise ValueError(
            "labels are required with embeddings of shape [N, D]: pass integer labels [N], a second view [N, D] "
            "(SimCLR's two views), or embeddings of shape [bsz, n_views, D] (labels optional)"
        )
    if isinstance(labels, Tensor) and labels.is_floating_point():
        if labels.shape != e.shape:
            raise ValueError(
                f"a floating-point second argument is the second view and must have the shape of embeddings "
                f"{tuple(e.shape)}, got {tuple(labels.shape)}; class labels must be an integer tensor (labels.long()), "
                f"multi-hot labels [N, C] (supcon) a bool or integer one (labels.bool())"
            )
        check_same_device("embeddings", e, "the second view", labels)
        check_finite(labels, "the second view", validate)
        n = e.shape[0]
        return torch.cat([e, labels]), torch.arange(n, device=e.device).repeat(2)
    return e, labels


def _row_keys(u: Tensor) -> Tensor:
    """An exact integer fingerprint [N] of each row's bits: equal rows get equal keys.

    ``Σ_k w_k · word_k`` over the row's 32-bit words (a float64 row has 2D), with fixed
    weights ``w_k ∈ [1, 2^16)``: integer sums do not depend on the order of summation, so
    (unlike any floating-point product) two identical rows get the same key whichever kernel
    computes it, and no sum overflows int64 (D < 2^15 columns). Two rows that differ in one
    word never share a key.
    """
    x = u.detach() + 0.0  # −0.0 + 0.0 = +0.0: the two zeros are the same point
    if x.element_size() < 4:
        x = x.float()
    words = x.contiguous().view(torch.int32).to(torch.int64)  # float64 rows: 2D words
    k = torch.arange(words.shape[1], device=u.device, dtype=torch.int64)
    weights = (k * 40503 + 12345) % 65521 + 1
    return (words * weights).sum(1)


def _has_repeats(keys: Tensor) -> bool:
    """Whether two rows share a key (a host read; O(N log N))."""
    if keys.numel() < 2:
        return False
    s = keys.sort().values
    return bool((s[1:] == s[:-1]).any())


def _identical_pairs(u: Tensor, sq: Tensor, keys: Tensor) -> Tensor:
    """Pairs [N, N] of identical rows (the diagonal included): equal keys, and a squared
    distance ``sq = 2 − 2 u_i·u_j`` under the rounding that identical rows leave there
    (≤ 2(D + 4)·eps), so a key collision of distinct rows could only zero a distance that
    rounding already hides."""
    bound = 4.0 * (u.shape[1] + 4) * torch.finfo(sq.dtype).eps
    return (sq <= bound) & (keys.unsqueeze(0) == keys.unsqueeze(1))


def _zero_distance_pairs(u: Tensor, sq: Tensor) -> tuple[Tensor, Tensor | None]:
    """Pairs [N, N] at distance exactly 0 (a row with itself, identical rows, and pairs whose
    squared distance ``sq`` rounds to ≤ 0), and each row's representative [N]: the first row
    identical to it (``None`` when no two rows are identical, known on eager CPU only).

    Eager CPU calls look on the host whether two rows share a key and build the [N, N] key
    comparison only then; CUDA and ``torch.compile`` build it without a host read.
    """
    keys = _row_keys(u)
    n = sq.shape[0]
    if not compiling() and u.device.type == "cpu":
        zero = sq <= 0
        zero.diagonal().fill_(True)
        if not _has_repeats(keys):
            return zero, None
        same = _identical_pairs(u, sq, keys)
        same.diagonal().fill_(True)
        return zero | same, same.to(torch.uint8).argmax(1)
    same = _identical_pairs(u, sq, keys) | torch.eye(n, dtype=torch.bool, device=sq.device)
    return (sq <= 0) | same, (same.to(torch.uint8).argmax(1) if n else None)


def _unit_distances(u: Tensor) -> Tensor:
    """Euclidean distances [N, N] between the unit rows of ``u``: ``sqrt(2 − 2 u_i·u_j)``.

    The one distance piece of the distance-based losses (contrastive, triplet) and miners.
    One matrix product gives every distance; identical rows are at distance exactly 0 (the
    product alone leaves rounding of order sqrt(eps) there) and the gradient at a zero
    distance is 0, finite, as ``torch.cdist``'s (which pytorch-metric-learning uses).
    Identical rows also have bit-identical distances to every row (the product can round
    two equal columns differently, which would break the exact ties a miner or a triplet
    margin compares, e.g. a positive and a negative at the same point): every entry takes its
    representatives' value, ``d[rep_i, rep_j]``, and keeps its own gradient.

    >>> import torch
    >>> u = torch.nn.functional.normalize(torch.tensor([[3.0, 1.0], [3.0, 1.0], [0.0, 1.0]]), dim=1)
    >>> _unit_distances(u)[0, 1].item()
    0.0
    """
    sq = (2.0 - 2.0 * (u @ u.T)).clamp_min(0.0)
    zero, rep = _zero_distance_pairs(u, sq.detach())
    d = torch.where(zero, torch.zeros_like(sq), sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt())
    if rep is None:
        return d
    return d.detach()[rep][:, rep] + (d - d.detach())  # the value of the representatives, the gradient of d


# ----------------------------------------------------------------------------- row blocks (tiled forms)
def _key_reps(keys: Tensor) -> Tensor | None:
    """Each row's representative (the first row with the same bit fingerprint), or ``None``
    when all rows differ: the tiled forms' version of :func:`_zero_distance_pairs`'s
    representatives without the [N, N] comparison (two different rows that share a key,
    a 64-bit collision, would count as identical here)."""
    if not _has_repeats(keys):
        return None
    uniq, inv = torch.unique(keys, return_inverse=True)
    idx = torch.arange(keys.numel(), device=keys.device)
    first = torch.full((uniq.numel(),), keys.numel(), dtype=torch.long, device=keys.device)
    return first.scatter_reduce_(0, inv, idx, "amin")[inv]


def _self_mask(rows: int, cols: int, start: int, device: torch.device) -> Tensor:
    """Boolean [rows, cols], True at (i, start + i): an anchor block's own columns."""
    m = torch.zeros(rows, cols, dtype=torch.bool, device=device)
    idx = torch.arange(rows, device=device)
    m[idx, idx + start] = True
    return m


def _label_rows(labels: Tensor, r0: int, r1: int) -> tuple[Tensor, Tensor]:
    """Rows ``r0:r1`` of :func:`_all_pair_masks`: positives (same label, not the anchor) and negatives."""
    same = labels[r0:r1].unsqueeze(1) == labels.unsqueeze(0)
    return same & ~_self_mask(r1 - r0, labels.shape[0], r0, labels.device), ~same


def _distance_rows(q: Tensor, k: Tensor, r0: int, r1: int, keys: Tensor, reps: Tensor | None, off: int = 0) -> Tensor:
    """Rows ``r0:r1`` of the anchors ``q`` against the keys ``k`` as in :func:`_unit_distances`:
    ``sqrt(2 − 2 u_i·u_j)``, exactly 0 on the diagonal, between identical rows and where the
    square rounds to ≤ 0, with the representatives' values where rows repeat. Anchor ``i`` of
    ``q`` is key ``off + i`` (in one process ``q`` and ``k`` are one tensor passed twice, so
    that both sides get their gradient; with ``distributed=True`` ``k`` is every process's
    rows and ``off`` where this process's rows start in them); ``keys`` / ``reps`` are those
    of ``k``."""

    def dist(qb: Tensor, kk: Tensor, qid: Tensor, kid: Tensor) -> Tensor:
        sq = (2.0 - 2.0 * (qb @ kk.T)).clamp_min(0.0)
        sd = sq.detach()
        zero = (sd <= 0) | (qid.unsqueeze(1) == kid.unsqueeze(0))
        if reps is not None:
            bound = 4.0 * (qb.shape[1] + 4) * torch.finfo(sq.dtype).eps
            zero |= (sd <= bound) & (keys[qid].unsqueeze(1) == keys[kid].unsqueeze(0))
        return torch.where(zero, torch.zeros_like(sq), sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt())

    rows = torch.arange(off + r0, off + r1, device=q.device)
    cols = torch.arange(k.shape[0], device=q.device)
    d = dist(q[r0:r1], k, rows, cols)
    if reps is None:
        return d
    with torch.no_grad():
        kd = k.detach()
        value = dist(kd[reps[off + r0 : off + r1]], kd[reps], reps[off + r0 : off + r1], reps)
    return value + (d - d.detach())  # the value of the representatives, the gradient of d


def _pair_distances(u: Tensor, i: Tensor, j: Tensor, keys: Tensor, reps: Tensor | None) -> Tensor:
    """``d(u_i, u_j)`` for listed pairs [M] (the entries of :func:`_unit_distances`, O(M·D))."""

    def dist(a: Tensor, b: Tensor, ia: Tensor, ib: Tensor) -> Tensor:
        sq = (2.0 - 2.0 * (a * b).sum(1)).clamp_min(0.0)
        sd = sq.detach()
        bound = 4.0 * (u.shape[1] + 4) * torch.finfo(sq.dtype).eps
        zero = (sd <= 0) | (ia == ib) | ((sd <= bound) & (keys[ia] == keys[ib]))
        return torch.where(zero, torch.zeros_like(sq), sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt())

    d = dist(u[i], u[j], i, j)
    if reps is None:
        return d
    with torch.no_grad():
        ud = u.detach()
        value = dist(ud[reps[i]], ud[reps[j]], reps[i], reps[j])
    return value + (d - d.detach())


#: matrix entries per block of the row-block losses (``block_size=None``): each holds about a dozen
#: block-sized temporaries and, in backward, their graph, so blocks are 16x smaller than the
#: log-sum-exp tiles of :mod:`lossatlas.distributed.tiled` (at 16M entries a block cost ~1 GB)
ROW_BLOCK_ELEMENTS = 1 << 20


def _tile_rows(n_keys: int, block_size: int | None, per_row: int = 1) -> int:
    """Anchor rows per block: ``block_size``, or about ``ROW_BLOCK_ELEMENTS`` entries."""
    if block_size is not None:
        return block_size
    return max(1, ROW_BLOCK_ELEMENTS // max(n_keys * per_row, 1))


def _masked_lse(x: Tensor, mask: Tensor, dim: int = 1) -> Tensor:
    """logsumexp over the entries where ``mask``; ``-inf`` (with zero gradient) for empty rows."""
    if x.shape[dim] == 0:
        return x.sum(dim=dim) - math.inf
    neg_inf = torch.finfo(x.dtype).min
    xm = x.masked_fill(~mask, neg_inf)
    m = xm.amax(dim=dim, keepdim=True).detach()
    s = (torch.exp(xm - m) * mask).sum(dim=dim)
    any_ = mask.any(dim=dim)
    lse = torch.log(s.clamp_min(torch.finfo(x.dtype).tiny)) + m.squeeze(dim)
    return torch.where(any_, lse, torch.full_like(lse, -math.inf))


def _check_indices(indices: Indices, n: int, device: torch.device, validate: bool = True) -> tuple[Tensor, ...]:
    if not isinstance(indices, (tuple, list)) or len(indices) not in (3, 4):
        raise TypeError(
            "indices must be a miner's tuple: (anchors, positives, negatives) or "
            "(anchors_pos, positives, anchors_neg, negatives) of int64 tensors"
        )
    out = []
    for k, t in enumerate(indices):
        check_tensor(t, f"indices[{k}]")
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.dim() != 1:
            raise TypeError(f"indices[{k}] must be a 1-D integer tensor, got dtype {t.dtype} shape {tuple(t.shape)}")
        if validate and not compiling() and t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
            raise ValueError(f"indices[{k}] must index the batch of {n} embeddings, found values outside [0, {n})")
        out.append(t.to(device=device, dtype=torch.long))
    if len(out) == 3 and not (out[0].numel() == out[1].numel() == out[2].numel()):
        raise ValueError("the three tensors of a triplet tuple (anchors, positives, negatives) must have equal length")
    if len(out) == 4 and (out[0].numel() != out[1].numel() or out[2].numel() != out[3].numel()):
        raise ValueError("a pair tuple needs len(anchors_pos) == len(positives) and len(anchors_neg) == len(negatives)")
    return tuple(out)


def _pairs_of(idx: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A miner's tuple as ``(anchors_pos, positives, anchors_neg, negatives)``."""
    if len(idx) == 3:
        return idx[0], idx[1], idx[0], idx[2]
    return idx[0], idx[1], idx[2], idx[3]


def _all_pair_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Boolean [N, N] masks of every positive pair (same label, i ≠ j) and negative pair."""
    n = labels.shape[0]
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    pos = same & ~torch.eye(n, dtype=torch.bool, device=labels.device)
    return pos, ~same


def _pair_masks(labels: Tensor, indices: Indices | None, validate: bool = True) -> tuple[Tensor, Tensor]:
    """Boolean [N, N] masks of the positive and negative pairs (ordered, i != j)."""
    if indices is None:
        return _all_pair_masks(labels)
    n = labels.shape[0]
    a1, p, a2, nn_ = _pairs_of(_check_indices(indices, n, labels.device, validate))
    pos = torch.zeros(n, n, dtype=torch.bool, device=labels.device)
    neg = torch.zeros_like(pos)
    pos[a1, p] = True
    neg[a2, nn_] = True
    return pos, neg


def _pair_weights(labels: Tensor, indices: Indices | None, dtype: torch.dtype, validate: bool = True) -> tuple[Tensor, Tensor]:
    """Multiplicities [N, N] of the positive and negative pairs.

    0/1 for all pairs; with ``indices`` a pair listed k times counts k times, as in the
    pair-based losses of pytorch-metric-learning (a triplet miner repeats (a, p) pairs).
    """
    if indices is None:
        pos, neg = _all_pair_masks(labels)
        return pos.to(dtype), neg.to(dtype)
    n = labels.shape[0]
    a1, p, a2, nn_ = _pairs_of(_check_indices(indices, n, labels.device, validate))
    pos = torch.zeros(n, n, dtype=dtype, device=labels.device)
    neg = torch.zeros_like(pos)
    pos.index_put_((a1, p), torch.ones_like(a1, dtype=dtype), accumulate=True)
    neg.index_put_((a2, nn_), torch.ones_like(a2, dtype=dtype), accumulate=True)
    return pos, neg


def _triplets_from(indices: Indices, n: int, device: torch.device, validate: bool) -> tuple[Tensor, Tensor, Tensor]:
    idx = _check_indices(indices, n, device, validate)
    if len(idx) == 3:
        return idx[0], idx[1], idx[2]
    a1, p, a2, nn_ = idx
    i, j = torch.nonzero(a1.unsqueeze(1) == a2.unsqueeze(0), as_tuple=True)
    return a1[i], p[i], nn_[j]


def _pairwise_reduce(per_anchor: Tensor, mean: Tensor, reduction: str, out_dtype: torch.dtype) -> Tensor:
    """``"none"``/``"sum"`` of the per-anchor losses (:func:`reduce_loss`); ``"mean"`` is the
    method's own average ``mean`` (not always the mean of the per-anchor losses)."""
    if reduction == "mean":
        return mean.to(out_dtype)
    return reduce_loss(per_anchor, reduction, None, out_dtype)


def _wavg(values: Tensor, weights: Tensor) -> Tensor:
    """Σ w·values / Σ w (0 when Σ w = 0)."""
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def _avg(values: Tensor, active: Tensor) -> Tensor:
    """Σ values / #active (0 when nothing is active)."""
    count = active.sum()
    return values.sum() / count.clamp_min(1).to(values.dtype)


def _zero_unless(condition: Tensor, x: Tensor) -> Tensor:
    """``x`` where the 0-d bool ``condition`` holds, else zeros with zero gradient (no host read)."""
    return torch.where(condition, x, torch.zeros_like(x))


# ----------------------------------------------------------------------------- across processes
_DISTRIBUTED = Param(
    "with an initialised ``torch.distributed`` group of > 1 processes, each process's anchors (its own rows) are "
    "compared with every process's rows and labels (all-gathered with gradients, in rank order; shards may differ in "
    "size): every process returns the loss of the concatenated batch (mining and the mean's denominators are "
    "global) and gets its rows' exact gradient (under DDP, which averages gradients, multiply the loss by the world "
    "size). A miner's ``indices`` then index the concatenated batch, anchors among this process's rows (a miner "
    "with ``distributed=True`` gives them). Without such a group: one process", as_bool, "off: a single process")


def _check_distributed(distributed: bool, indices: Indices | None, n: int, n_global: int, off: int, device: torch.device,
                       validate: bool) -> tuple[Tensor, ...] | None:
    """A miner's ``indices`` of a ``distributed=True`` call: they index the ``n_global`` rows
    of every process and their anchors are this process's rows ``[off, off + n)``."""
    if indices is None:
        return None
    idx = _check_indices(indices, n_global, device, validate)
    anchors = (idx[0],) if len(idx) == 3 else (idx[0], idx[2])
    if distributed and validate and not compiling():
        for k, a in zip((0, 2), anchors):
            if a.numel() and (int(a.min()) < off or int(a.max()) >= off + n):
                raise ValueError(
                    f"with distributed=True, indices index the concatenated batch of every process and indices[{k}] "
                    f"(anchors) must be this process's rows [{off}, {off + n}); mine them with distributed=True "
                    f"(e.g. BatchHardMiner(distributed=True))")
    return idx


def _no_distributed_pieces(distributed: bool) -> None:
    if distributed:
        raise ValueError("distributed=True has no composed form: ref_emb / ref_labels / distance / reducer compare "
                         "this process's rows with the reference it is given; for a memory bank filled from every "
                         "process use lossatlas.memory.MemoryLoss(..., gather=True, distributed=True)")


def _keys_of(u: Tensor, labels: Tensor, on: bool, group: Any) -> tuple[Tensor, Tensor, int]:
    """The keys of a batch loss and where this process's anchors start in them.

    ``on`` (``distributed=True`` in a process group of > 1): every process's unit rows and
    labels, concatenated in rank order by :func:`lossatlas.distributed.all_gather_with_grad`
    (the gradient a process computes for another's rows reaches their owner in backward);
    otherwise ``(u, labels, 0)``: the batch is its own keys.
    """
    if not on:
        return u, labels, 0
    ug, off = all_gather_with_grad(u, group)
    yg, _ = all_gather_with_grad(labels, group)
    return ug, yg, off


def _global_ratio(total: Tensor, count: Tensor, on: bool, group: Any) -> Tensor:
    """``Σ total / Σ count`` (0 when the count is 0): with ``on`` both sums run over the
    processes (the value of the concatenated batch's average, the gradient of this process's
    terms, to which the gather's backward adds the others')."""
    count = count.detach().to(total.dtype)
    if on:
        total = global_reduce(total, "sum", 0, group)
        count = global_reduce(count, "sum", 0, group)
    return total / count.clamp_min(1.0)


def _reduce_anchors(per_anchor: Tensor, mean: Callable[[], Tensor], reduction: str, out_dtype: torch.dtype, on: bool,
                    group: Any) -> Tensor:
    """:func:`_pairwise_reduce` of this process's per-anchor losses; with ``on``, ``"sum"``
    is the sum over every process (``"none"`` stays per local anchor) and ``mean()`` must
    give the global average (:func:`_global_ratio`)."""
    if reduction == "mean":
        return mean().to(out_dtype)
    if on:
        return global_reduce(per_anchor, reduction, 0, group).to(out_dtype)
    return reduce_loss(per_anchor, reduction, None, out_dtype)


# --------------------------------------------------------------------------------------
# F1: contrastive and triplet margin losses
# --------------------------------------------------------------------------------------
#: the fused all-pairs contrastive form is taken on the CPU from this many input elements
CONTRASTIVE_FUSE_MIN_NUMEL = 1


@loss_function(inputs=EMBEDDING, call=("indices", "ref_emb", "ref_labels", "distance", "reducer"), params={
    "pos_margin": Param("m+, positive distances below it cost nothing", any_number, f"{PML} (0)"),
    "neg_margin": Param("m−, negatives farther than it cost nothing", any_number, f"{PML} (1)"),
    "average_nonzero": Param("``'mean'`` averages only the non-zero terms of each part (else every pair)", as_bool,
                             f"{PML}'s AvgNonZeroReducer"),
    "tiled": Param("``True`` computes the loss in blocks of anchor rows, recomputed in backward "
                   "(:func:`lossatlas.distributed.blocks.row_blocks`): the dense form's values and gradients, memory "
                   "linear in N; ``False`` builds the N x N matrices; ``'auto'`` tiles above 4M matrix entries",
                   tiled_option, "this library (dense: tiling pays in memory, not in time, at small N)"),
    "block_size": _ROW_BLOCK_SIZE,
    "distributed": _DISTRIBUTED,
    "group": SHARED["group"],
})
def contrastive(
    embeddings: Tensor,
    labels: Tensor,
    *,
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    average_nonzero: bool = True,
    indices: Indices | None = None,
    tiled: bool | str = False,
    block_size: int | None = None,
    distributed: bool = False,
    group: Any = None,
    ref_emb: Tensor | None = None,
    ref_labels: Tensor | None = None,
    distance: Distance | None = None,
    reducer: Reducer | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Contrastive (pair) loss on L2-normalised rows; see :class:`lossatlas.losses.ContrastiveLoss`.

    ``relu(d_ij − m+)`` over positive pairs and ``relu(m− − d_ij)`` over negative pairs;
    ``"mean"``: mean of the positive-pair terms > 0 plus mean of the negative-pair terms > 0
    (``average_nonzero=False``: plain means over all positive / negative pairs).

    ``distributed=True`` (in a process group of > 1): this process's rows are the anchors, the
    rows and labels of every process (all-gathered with gradients) the other side of each
    pair; the means' counts of non-zero terms are summed over the processes, so every process
    returns the loss of the concatenated batch and its rows get that loss's gradient. It runs
    the row-block form (one block of this process's rows unless ``tiled``), or the listed
    pairs of a miner's ``indices`` into the concatenated batch.

    {args}

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.contrastive(torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2])).ndim
        0
    """
    if _composed.wants_composed(ref_emb, ref_labels, distance, reducer):
        _no_distributed_pieces(distributed)
        _composed.check_pieces(distance, reducer, reduction, tiled)
        return _composed.contrastive(embeddings, _check_embeddings(embeddings, labels, validate), ref_emb=ref_emb,
                                     ref_labels=ref_labels, indices=indices, distance=distance, reducer=reducer,
                                     pos_margin=pos_margin, neg_margin=neg_margin, average_nonzero=average_nonzero,
                                     reduction=reduction, validate=validate)
    u, labels, out_dtype = _unit(embeddings, labels, validate)
    on = distributed and is_distributed(group)
    if on or _use_tiles(tiled, u.shape[0], u.shape[0]):
        return _contrastive_tiled(u, labels, pos_margin, neg_margin, average_nonzero, indices, block_size, reduction,
                                  out_dtype, validate, on, group, tiled)
    # the fused form lists the positive pairs with `nonzero` (a host read): CPU only unless
    # forced, so that CUDA never synchronises; torch.compile traces the same without host
    # reads ([N, N] masks), CUDA runs the composed ops
    if indices is None and take_fused(u, CONTRASTIVE_FUSE_MIN_NUMEL):
        return _all_pair_contrastive(u, labels, pos_margin, neg_margin, reduction, average_nonzero).to(out_dtype)
    if indices is None and compiling():  # the same without host reads
        return _all_pair_contrastive_traced(u, labels, pos_margin, neg_margin, reduction, average_nonzero).to(out_dtype)
    return _contrastive_composed(u, labels, pos_margin, neg_margin, average_nonzero, indices, reduction, out_dtype, validate)


def _contrastive_composed(
    u: Tensor, labels: Tensor, pos_margin: float, neg_margin: float, average_nonzero: bool,
    indices: Indices | None, reduction: str, out_dtype: torch.dtype, validate: bool = True,
) -> Tensor:
    """The contrastive loss as differentiable torch ops (mined pairs; ``torch.compile``)."""
    d = _unit_distances(u)
    wp, wn = _pair_weights(labels, indices, d.dtype, validate)
    lp = torch.where(wp > 0, F.relu(d - pos_margin), torch.zeros_like(d))
    ln = torch.where(wn > 0, F.relu(neg_margin - d), torch.zeros_like(d))
    per_anchor = (lp * wp).sum(1) + (ln * wn).sum(1)
    if reduction != "mean":
        return reduce_loss(per_anchor, reduction, None, out_dtype)
    if average_nonzero:
        mean = _wavg(lp, wp * (lp > 0)) + _wavg(ln, wn * (ln > 0))
    else:
        mean = _wavg(lp, wp) + _wavg(ln, wn)
    return mean.to(out_dtype)


def _contrastive_tiled(
    u: Tensor, labels: Tensor, pos_margin: float, neg_margin: float, average_nonzero: bool, indices: Indices | None,
    block_size: int | None, reduction: str, out_dtype: torch.dtype, validate: bool, on: bool = False,
    group: Any = None, tiled: bool | str = True,
) -> Tensor:
    """The contrastive loss without N x N matrices: over blocks of anchor rows (every pair) or
    over the listed pairs of a miner (O(pairs · D)); values and gradients are the dense form's.
    With ``on`` the anchors are this process's rows and the keys every process's
    (:func:`_keys_of`); the means are global (:func:`_global_ratio`)."""
    n = u.shape[0]
    ug, yg, off = _keys_of(u, labels, on, group)
    keys = _row_keys(ug)
    reps = _key_reps(keys)
    idx = _check_distributed(on, indices, n, ug.shape[0], off, u.device, validate)
    if idx is not None:
        a1, p, a2, ng = _pairs_of(idx)
        lp = F.relu(_pair_distances(ug, a1, p, keys, reps) - pos_margin)
        ln = F.relu(neg_margin - _pair_distances(ug, a2, ng, keys, reps))
        per_anchor = u.new_zeros(n).index_add(0, a1 - off, lp).index_add(0, a2 - off, ln)

        def pair_mean() -> Tensor:
            if average_nonzero:
                return _global_ratio(lp.sum(), (lp > 0).sum(), on, group) + _global_ratio(ln.sum(), (ln > 0).sum(), on, group)
            return (_global_ratio(lp.sum(), torch.tensor(lp.numel(), device=u.device), on, group)
                    + _global_ratio(ln.sum(), torch.tensor(ln.numel(), device=u.device), on, group))

        return _reduce_anchors(per_anchor, pair_mean, reduction, out_dtype, on, group)

    def rows(r0: int, r1: int, q: Tensor, k: Tensor) -> Tensor:
        d = _distance_rows(q, k, r0, r1, keys, reps, off)
        pos, neg = _label_rows(yg, off + r0, off + r1)
        lp = torch.where(pos, F.relu(d - pos_margin), torch.zeros_like(d))
        ln = torch.where(neg, F.relu(neg_margin - d), torch.zeros_like(d))
        cols = (lp.sum(1), ln.sum(1), (lp > 0).sum(1), (ln > 0).sum(1), pos.sum(1), neg.sum(1))
        return torch.stack([c.to(torch.float64) for c in cols], 1)

    bs = _tile_rows(ug.shape[0], block_size) if _use_tiles(tiled, n, ug.shape[0]) else max(n, 1)
    out = row_blocks(rows, n, bs, u, ug)
    per_anchor = (out[:, 0] + out[:, 1]).to(u.dtype)

    def mean() -> Tensor:
        cp, cn = (out[:, 2].sum(), out[:, 3].sum()) if average_nonzero else (out[:, 4].sum(), out[:, 5].sum())
        return _global_ratio(out[:, 0].sum(), cp, on, group) + _global_ratio(out[:, 1].sum(), cn, on, group)

    return _reduce_anchors(per_anchor, mean, reduction, out_dtype, on, group)


class _AllPairContrastive(torch.autograd.Function):
    """The contrastive loss over every pair of the batch, with a hand-derived backward.

    Eager autograd records about twenty [N, N] operations for the composed form (distance
    chain, float pair weights, two masked relus, non-zero masks) and replays as many
    backwards. Here the distances are computed in place on the Gram matrix (identical rows
    at exactly 0, as :func:`_unit_distances`), the negative terms in one [N, N] buffer, the
    (few) positive pairs as a gathered list, and backward needs one [N, N] matrix: with
    ``d = sqrt(2 − 2 uᵢ·uⱼ)``, an active negative term ``relu(m⁻ − d)`` has
    ``∂/∂(uᵢ·uⱼ) = 1/d`` and an active positive term ``relu(d − m⁺)`` has ``−1/d`` (zero
    where ``d = 0``, as the composed form). That matrix is symmetric, so the gradient of a
    scalar reduction is one matrix product ``2·C·u`` instead of autograd's two. Values and
    gradients are the composed form's up to float rounding. Reads one size on the host (the
    number of positive pairs, from ``nonzero``). No double backward.
    """

    @staticmethod
    def forward(
        ctx: Any, u: Tensor, labels: Tensor, pos_margin: float, neg_margin: float, reduction: str, average_nonzero: bool,
    ) -> Tensor:
        n = u.shape[0]
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        pi, pj = torch.nonzero(same, as_tuple=True)
        off = pi != pj
        pi, pj = pi[off], pj[off]
        # distances sqrt(clamp(2 − 2 u·uᵀ, 0)), in place, exactly 0 between identical rows
        d = torch.mm(u, u.T)
        d.mul_(-2.0).add_(2.0).clamp_min_(0.0)
        keys = _row_keys(u)
        if _has_repeats(keys):  # (the diagonal is no pair here)
            d.masked_fill_(_identical_pairs(u, d, keys), 0.0)
        d.sqrt_()
        # negative pairs: relu(m⁻ − d) off the class blocks
        ln = torch.rsub(d, neg_margin).relu_().masked_fill_(same, 0.0)
        sn = ln.sum(1)
        # positive pairs (i ≠ j, same class): a short list
        dp = d[pi, pj]
        lp = (dp - pos_margin).relu_()
        sp = torch.zeros(n, dtype=u.dtype, device=u.device).index_add_(0, pi, lp)
        kp: Tensor | None = None
        kn: Tensor | None = None
        if reduction == "mean":
            if average_nonzero:
                cp, cn = torch.count_nonzero(lp), torch.count_nonzero(ln)
            else:  # every positive / negative pair, known from the shapes
                cp = torch.tensor(pi.numel(), device=u.device)
                cn = torch.tensor(n * n - n - pi.numel(), device=u.device)
            kp = 1.0 / cp.clamp_min(1).to(u.dtype)
            kn = 1.0 / cn.clamp_min(1).to(u.dtype)
            out = sp.sum() * kp + sn.sum() * kn
        else:
            per_anchor = sp + sn
            out = per_anchor if reduction == "none" else per_anchor.sum()
        # backward coefficients, in place on d: 1/d where the negative term is active, else 0
        c = d.masked_fill_(ln <= 0, math.inf).reciprocal_()
        del ln
        c.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)  # d = 0 (identical rows): no gradient
        cpos = torch.where((lp > 0) & (dp > 0), dp.reciprocal(), torch.zeros_like(dp))
        ctx.save_for_backward(u, c, pi, pj, cpos, kp, kn)
        ctx.reduction = reduction
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None, None, None]:
        u, c, pi, pj, cpos, kp, kn = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        if ctx.reduction == "none":  # grad [N]: row i of the Gram gradient is grad_i · C_i
            gu = grad.unsqueeze(1) * (c @ u) + c @ (grad.unsqueeze(1) * u)
            w = -grad[pi] * cpos
        else:
            gn = grad * kn if ctx.reduction == "mean" else grad
            gu = (c @ u).mul_(2.0 * gn)
            w = -(grad * kp if ctx.reduction == "mean" else grad) * cpos
        w = w.unsqueeze(1)
        gu.index_add_(0, pi, w * u[pj])
        gu.index_add_(0, pj, w * u[pi])
        return gu, None, None, None, None, None


_all_pair_contrastive = cast(Callable[..., Tensor], _AllPairContrastive.apply)  # Function.apply is unannotated in torch


class _AllPairContrastiveTraced(torch.autograd.Function):
    """:class:`_AllPairContrastive` without host reads, the form ``torch.compile`` traces.

    The pairs are [N, N] masks rather than a gathered list of positives (whose length is a
    host read), identical rows are found by the [N, N] key comparison of
    :func:`_zero_distance_pairs` (no host check whether any exist) and every reduction's
    backward is one or two matrix products with the saved coefficient matrix
    ``C = ∂loss/∂(uᵢ·uⱼ)``: ``−a/d`` per pair, with ``a = ±1`` (times the mean's ``1/count``)
    for an active positive / negative term and 0 where ``d = 0``. Inductor fuses the
    elementwise [N, N] work of each direction into one or two loops; autograd's graph of the
    composed form (distance chain, float pair weights, masked relus, representatives'
    gather) compiled to about twice the eager fused time (perf table, N = 1024 – 4096).
    Values and gradients are the composed form's (identical rows at distance 0, no gradient
    there). No double backward.
    """

    @staticmethod
    def forward(
        ctx: Any, u: Tensor, labels: Tensor, pos_margin: float, neg_margin: float, reduction: str, average_nonzero: bool,
    ) -> Tensor:
        sq = (2.0 - 2.0 * (u @ u.T)).clamp_min(0.0)
        zero, _ = _zero_distance_pairs(u, sq)
        d = torch.where(zero, torch.zeros_like(sq), sq.sqrt())
        pos, neg = _all_pair_masks(labels)
        lp = torch.where(pos, F.relu(d - pos_margin), torch.zeros_like(d))
        ln = torch.where(neg, F.relu(neg_margin - d), torch.zeros_like(d))
        act_p, act_n = lp > 0, ln > 0
        inv = torch.where(zero, torch.zeros_like(d), d.reciprocal())
        if reduction == "mean":
            cp, cn = (act_p.sum(), act_n.sum()) if average_nonzero else (pos.sum(), neg.sum())
            kp = 1.0 / cp.clamp_min(1).to(u.dtype)
            kn = 1.0 / cn.clamp_min(1).to(u.dtype)
            out = lp.sum() * kp + ln.sum() * kn
            # ∂/∂d = kp (positive) or −kn (negative); ∂d/∂(u·u') = −1/d
            c = torch.where(act_n, inv * kn, torch.where(act_p, -inv * kp, torch.zeros_like(d)))
        else:
            per_anchor = lp.sum(1) + ln.sum(1)
            out = per_anchor if reduction == "none" else per_anchor.sum()
            c = torch.where(act_n, inv, torch.where(act_p, -inv, torch.zeros_like(d)))
        ctx.save_for_backward(u, c)
        ctx.reduction = reduction
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None, None, None]:
        u, c = ctx.saved_tensors
        if ctx.reduction == "none":  # row i of the Gram gradient is grad_i · C_i; C is symmetric
            gu = grad.unsqueeze(1) * (c @ u) + c @ (grad.unsqueeze(1) * u)
        else:  # a scalar: (C + Cᵀ) u = 2 C u
            gu = (c @ u) * (2.0 * grad)
        return gu, None, None, None, None, None


_all_pair_contrastive_traced = cast(Callable[..., Tensor], _AllPairContrastiveTraced.apply)


def _all_triplets(d: Tensor, labels: Tensor, margin: float) -> tuple[Tensor, Tensor, Tensor]:
    """``relu(d_ap − d_an + margin)`` over every valid triplet, as an [N, P, N] tensor.

    ``P`` is the largest number of positives of an anchor (read on the host), so the tensor
    is [N, P, N] rather than the dense [N, N, N]: anchor a's positives are gathered into
    row a (padded), the padding gets ``d_ap = −inf`` and the non-negatives ``d_an = +inf``,
    which makes their terms ``relu(−inf) = 0`` with zero gradient. Each term is the dense
    form's expression ``(d_ap − d_an) + margin``. Returns the terms, the per-anchor sums [N]
    and the number of valid triplets.
    """
    pos, neg = _all_pair_masks(labels)
    n_pos = pos.sum(1)
    p_max = int(n_pos.max()) if d.shape[0] else 0
    n_valid = (n_pos * neg.sum(1)).sum()
    pv, pidx = pos.to(torch.int8).topk(p_max, dim=1)  # each row's positives first (order irrelevant)
    d_ap = d.gather(1, pidx).masked_fill(pv == 0, -math.inf)  # [N, P]
    d_an = d.masked_fill(~neg, math.inf)  # [N, N]
    losses = (d_ap.unsqueeze(2) - d_an.unsqueeze(1)).add_(margin).relu_()  # [a, p, n]
    return losses, losses.sum((1, 2)), n_valid


def _sorted_triplets(d: Tensor, labels: Tensor, margin: float) -> tuple[Tensor, Tensor, Tensor]:
    """Every valid triplet's ``relu(d_ap − d_an + margin)`` summed per anchor without the
    [N, P, N] (or [N, N, N]) terms and without host reads: the form ``torch.compile`` traces.

    For anchor a and positive p the active negatives are those with ``d_an < d_ap + margin``;
    with the anchor's negative distances sorted, their number ``c_ap`` is a
    ``searchsorted`` and their sum ``S_ap`` a prefix sum, so the anchor's loss is
    ``Σ_p c_ap·(d_ap + margin) − S_ap`` (O(N² log N)). Autograd through the sort, the prefix
    sum and the gather gives the dense form's gradient (``c_ap`` for ``d_ap``, minus the
    number of positives that count ``n`` for ``d_an``). Values are the dense form's up to the
    summation order; a term within rounding of the margin boundary may count on one side in
    one form and on the other in the other. Returns the per-anchor sums [N], the number of
    active triplets and of valid triplets (0-d).
    """
    pos, neg = _all_pair_masks(labels)
    dn = torch.where(neg, d, torch.full_like(d, math.inf)).sort(1).values
    prefix = F.pad(torch.where(neg.sum(1, keepdim=True) > torch.arange(d.shape[1], device=d.device),
                               dn, torch.zeros_like(dn)).cumsum(1), (1, 0))  # [N, N + 1], sums of the first k
    q = d + margin
    c = torch.searchsorted(dn, q.detach().contiguous())  # negatives with d_an < d_ap + margin
    terms = torch.where(pos, c.to(d.dtype) * q - prefix.gather(1, c), torch.zeros_like(d))
    count = torch.where(pos, c, torch.zeros_like(c)).sum()
    return terms.sum(1), count, (pos.sum(1) * neg.sum(1)).sum()


@loss_function(compile_opaque=True, opaque_min_numel=0, inputs=EMBEDDING, call=("indices", "ref_emb", "ref_labels", "distance", "reducer"), params={
    "margin": Param("α, the distance by which a negative must be farther than the positive", any_number,
                    f"FaceNet (α = 0.2); {PML}'s default is 0.05"),
    "average_nonzero": Param("``'mean'`` averages only the triplets with a non-zero loss (else every triplet)",
                             as_bool, f"{PML}'s AvgNonZeroReducer"),
    "tiled": Param("``True`` computes the loss in blocks of anchor rows, recomputed in backward "
                   "(:func:`lossatlas.distributed.blocks.row_blocks`): the dense form's values and gradients, memory "
                   "linear in N; ``False`` builds the N x N matrices; ``'auto'`` tiles above 4M matrix entries",
                   tiled_option, "this library (dense: tiling pays in memory, not in time, at small N)"),
    "block_size": _ROW_BLOCK_SIZE,
    "distributed": _DISTRIBUTED,
    "group": SHARED["group"],
})
def triplet_margin(
    embeddings: Tensor,
    labels: Tensor,
    *,
    margin: float = 0.2,
    average_nonzero: bool = True,
    indices: Indices | None = None,
    tiled: bool | str = False,
    block_size: int | None = None,
    distributed: bool = False,
    group: Any = None,
    ref_emb: Tensor | None = None,
    ref_labels: Tensor | None = None,
    distance: Distance | None = None,
    reducer: Reducer | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Triplet margin loss ``relu(d_ap − d_an + margin)``; see :class:`lossatlas.losses.TripletMarginLoss`.

    ``"mean"``: mean over the triplets whose loss is > 0 (``average_nonzero=False``: over
    all triplets). Without ``indices`` every valid triplet is used.

    ``distributed=True`` (in a process group of > 1): this process's rows are the anchors,
    positives and negatives come from every process's rows (all-gathered with gradients);
    the count of the mean is summed over the processes, so every process returns the loss of
    the concatenated batch and its rows get that loss's gradient. A batch-hard or semi-hard
    miner built with ``distributed=True`` mines this process's anchors against the
    concatenated batch (block by block with its ``block_size``) and returns ``indices`` into
    it: the same triplets as one process mining the concatenated batch.

    {args}

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.triplet_margin(torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2])).ndim
        0
    """
    if _composed.wants_composed(ref_emb, ref_labels, distance, reducer):
        _no_distributed_pieces(distributed)
        _composed.check_pieces(distance, reducer, reduction, tiled)
        return _composed.triplet_margin(embeddings, _check_embeddings(embeddings, labels, validate), ref_emb=ref_emb,
                                        ref_labels=ref_labels, indices=indices, distance=distance, reducer=reducer,
                                        margin=margin, average_nonzero=average_nonzero, reduction=reduction,
                                        validate=validate)
    u, labels, out_dtype = _unit(embeddings, labels, validate)
    n = u.shape[0]
    on = distributed and is_distributed(group)
    if on or _use_tiles(tiled, n, n):
        return _triplet_tiled(u, labels, margin, average_nonzero, indices, block_size, reduction, out_dtype, validate,
                              on, group, tiled)
    d = _unit_distances(u)
    # gathered [N, P_max, N] form: reads P_max on the host, so eager CPU only (CUDA stays free
    # of synchronisation and, like torch.compile, uses the dense form below)
    if indices is None and not compiling() and u.device.type == "cpu":
        losses, per_anchor, n_valid = _all_triplets(d, labels, margin)
        mean = _avg(losses, losses > 0) if average_nonzero else losses.sum() / n_valid.clamp_min(1).to(losses.dtype)
        return _pairwise_reduce(per_anchor, mean, reduction, out_dtype)
    if indices is None and compiling():  # sorted form: O(N² log N), no host read
        per_anchor, active, n_valid = _sorted_triplets(d, labels, margin)
        mean = per_anchor.sum() / (active if average_nonzero else n_valid).clamp_min(1).to(d.dtype)
        return _pairwise_reduce(per_anchor, mean, reduction, out_dtype)
    if indices is None:  # dense [a, p, n] form: no host read (CUDA)
        pos, neg = _all_pair_masks(labels)
        valid = pos.unsqueeze(2) & neg.unsqueeze(1)  # [a, p, n]
        t = d.unsqueeze(2) - d.unsqueeze(1) + margin
        losses = torch.where(valid, F.relu(t), torch.zeros_like(t))
        per_anchor = losses.sum((1, 2))
    else:
        a, p, ng = _triplets_from(indices, n, u.device, validate)
        losses = F.relu(d[a, p] - d[a, ng] + margin)
        valid = torch.ones_like(losses, dtype=torch.bool)
        per_anchor = torch.zeros(n, dtype=d.dtype, device=d.device).index_add(0, a, losses)
    mean = _avg(losses, losses > 0) if average_nonzero else _avg(losses, valid)
    return _pairwise_reduce(per_anchor, mean, reduction, out_dtype)


def _triplet_tiled(
    u: Tensor, labels: Tensor, margin: float, average_nonzero: bool, indices: Indices | None, block_size: int | None,
    reduction: str, out_dtype: torch.dtype, validate: bool, on: bool = False, group: Any = None,
    tiled: bool | str = True,
) -> Tensor:
    """The triplet loss without N x N (x P) tensors: every triplet over blocks of anchors
    ([rows, P, N] at a time), or a miner's triplets from their pair distances (O(triplets · D),
    e.g. :class:`lossatlas.miners.BatchHardMiner` with ``block_size``). With ``on`` the
    anchors are this process's rows and the keys every process's (:func:`_keys_of`)."""
    n = u.shape[0]
    ug, yg, off = _keys_of(u, labels, on, group)
    keys = _row_keys(ug)
    reps = _key_reps(keys)
    idx = _check_distributed(on, indices, n, ug.shape[0], off, u.device, validate)
    if idx is not None:
        a, p, ng = _triplets_from(idx, ug.shape[0], u.device, False)
        losses = F.relu(_pair_distances(ug, a, p, keys, reps) - _pair_distances(ug, a, ng, keys, reps) + margin)
        per_anchor = u.new_zeros(n).index_add(0, a - off, losses)
        count = (losses > 0).sum() if average_nonzero else torch.tensor(losses.numel(), device=u.device)
        return _reduce_anchors(per_anchor, lambda: _global_ratio(losses.sum(), count, on, group), reduction,
                               out_dtype, on, group)
    _, cnt, _, _ = _class_stats(yg)
    p_max = int(cnt.max()) - 1 if yg.numel() else 0

    def rows(r0: int, r1: int, q: Tensor, k: Tensor) -> Tensor:
        d = _distance_rows(q, k, r0, r1, keys, reps, off)
        pos, neg = _label_rows(yg, off + r0, off + r1)
        pv, pidx = pos.to(torch.int8).topk(p_max, dim=1)
        d_ap = d.gather(1, pidx).masked_fill(pv == 0, -math.inf)
        d_an = d.masked_fill(~neg, math.inf)
        t = F.relu(d_ap.unsqueeze(2) - d_an.unsqueeze(1) + margin)
        cols = (t.sum((1, 2)), (t > 0).sum((1, 2)), pos.sum(1) * neg.sum(1))
        return torch.stack([c.to(torch.float64) for c in cols], 1)

    bs = _tile_rows(ug.shape[0], block_size, max(p_max, 1)) if _use_tiles(tiled, n, ug.shape[0]) else max(n, 1)
    out = row_blocks(rows, n, bs, u, ug)
    per_anchor = out[:, 0].to(u.dtype)
    count = out[:, 1].sum() if average_nonzero else out[:, 2].sum()
    return _reduce_anchors(per_anchor, lambda: _global_ratio(out[:, 0].sum(), count, on, group), reduction,
                           out_dtype, on, group)


# --------------------------------------------------------------------------------------
# F2: multi-similarity loss and its miner
# --------------------------------------------------------------------------------------
def _ms_masks(s: Tensor, labels: Tensor, epsilon: float) -> tuple[Tensor, Tensor]:
    """The multi-similarity miner's kept pairs as [N, N] masks (static shapes, no host read)."""
    pos, neg = _all_pair_masks(labels)
    hardest_neg = s.masked_fill(~neg, -math.inf).amax(1, keepdim=True) if s.numel() else s.sum(1, keepdim=True)
    easiest_pos = s.masked_fill(~pos, math.inf).amin(1, keepdim=True) if s.numel() else s.sum(1, keepdim=True)
    both = pos.any() & neg.any()  # a batch without a positive or a negative pair mines nothing
    keep_pos = pos & (s - epsilon < hardest_neg) & both
    keep_neg = neg & (s + epsilon > easiest_pos) & both
    return keep_pos, keep_neg


@torch.no_grad()
def multi_similarity_mine(
    similarities: Tensor, labels: Tensor, epsilon: float = 0.1
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The multi-similarity miner (Wang et al., 2019) on a cosine-similarity matrix [N, N].

    Keeps, for anchor i, the positives with ``s_ip − ε < max_{n∈N_i} s_in`` and the negatives
    with ``s_in + ε > min_{p∈P_i} s_ip``. Returns the pair tuple
    ``(anchors_pos, positives, anchors_neg, negatives)``; all four are empty when the batch
    has no positive or no negative pair.

    >>> import torch
    >>> s = torch.tensor([[1.0, 0.2, 0.5], [0.2, 1.0, 0.1], [0.5, 0.1, 1.0]])
    >>> [t.tolist() for t in multi_similarity_mine(s, torch.tensor([0, 0, 1]), 0.15)]
    [[0, 1], [1, 0], [0, 1], [2, 2]]
    >>> [t.tolist() for t in multi_similarity_mine(s, torch.tensor([0, 0, 1]), 0.05)]  # anchor 1 mines nothing
    [[0], [1], [0], [2]]
    """
    epsilon = check_number(epsilon, "epsilon")
    keep_pos, keep_neg = _ms_masks(similarities, labels, epsilon)
    a1, p = torch.nonzero(keep_pos, as_tuple=True)
    a2, n = torch.nonzero(keep_neg, as_tuple=True)
    return a1, p, a2, n


@loss_function(inputs=EMBEDDING, call=("indices", "ref_emb", "ref_labels", "distance", "reducer"), params={
    "alpha": Param("α > 0, the positive pairs' scale", positive, "Wang et al. 2019 / PML (2)"),
    "beta": Param("β > 0, the negative pairs' scale", positive, "Wang et al. 2019 / PML (50)"),
    "base": Param("λ, the similarity margin", any_number, "λ: official code and PML (0.5); the paper reports λ = 1"),
    "miner_epsilon": Param("ε ≥ 0 of the MS miner applied first (``None``: no mining)", nonnegative,
                           "None = no mining; the MS miner's ε is 0.1 in the paper and PML"),
    "tiled": Param("``True`` computes the loss in blocks of anchor rows, recomputed in backward "
                   "(:func:`lossatlas.distributed.blocks.row_blocks`): the dense form's values and gradients, memory "
                   "linear in N; ``False`` builds the N x N matrices; ``'auto'`` tiles above 4M matrix entries",
                   tiled_option, "this library (dense: tiling pays in memory, not in time, at small N)"),
    "block_size": _ROW_BLOCK_SIZE,
    "distributed": _DISTRIBUTED,
    "group": SHARED["group"],
})
def multi_similarity(
    embeddings: Tensor,
    labels: Tensor,
    *,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    miner_epsilon: float | None = None,
    indices: Indices | None = None,
    tiled: bool | str = False,
    block_size: int | None = None,
    distributed: bool = False,
    group: Any = None,
    ref_emb: Tensor | None = None,
    ref_labels: Tensor | None = None,
    distance: Distance | None = None,
    reducer: Reducer | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Multi-similarity loss; see :class:`lossatlas.losses.MultiSimilarityLoss`.

    Per anchor ``(1/α) log(1 + Σ_P e^{−α(s−λ)}) + (1/β) log(1 + Σ_N e^{β(s−λ)})``;
    ``"mean"`` averages over all N anchors. ``miner_epsilon`` applies the MS miner first.

    ``distributed=True`` (in a process group of > 1): this process's rows are the anchors,
    every process's rows and labels (all-gathered with gradients) their positives and
    negatives; the MS miner's thresholds are each anchor's, taken over the concatenated
    batch, and ``"mean"`` divides by the number of anchors of every process, so every
    process returns the loss of the concatenated batch and its rows get that loss's gradient
    (the row-block form: one block of this process's rows unless ``tiled``). A miner's
    ``indices`` then index the concatenated batch (:class:`lossatlas.miners.MultiSimilarityMiner`
    with ``distributed=True`` gives them).

    {args}

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.multi_similarity(torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """
    if _composed.wants_composed(ref_emb, ref_labels, distance, reducer):
        _no_distributed_pieces(distributed)
        _composed.check_pieces(distance, reducer, reduction, tiled)
        return _composed.multi_similarity(embeddings, _check_embeddings(embeddings, labels, validate), ref_emb=ref_emb,
                                          ref_labels=ref_labels, indices=indices, distance=distance, reducer=reducer,
                                          alpha=alpha, beta=beta, base=base, miner_epsilon=miner_epsilon,
                                          reduction=reduction, validate=validate)
    u, labels, out_dtype = _unit(embeddings, labels, validate)
    if miner_epsilon is not None and indices is not None:
        raise ValueError("pass either indices= (from a miner) or miner_epsilon, not both")
    on = distributed and is_distributed(group)
    tiles = _use_tiles(tiled, u.shape[0], u.shape[0])
    if on:
        return _ms_tiled(u, labels, alpha, beta, base, miner_epsilon, block_size, indices, reduction, out_dtype,
                         validate, on, group, tiled)
    if tiles:
        if indices is not None:
            raise ValueError("indices (a miner's pairs) need the dense form: pass tiled=False with indices, or use "
                             "miner_epsilon (the MS miner, mined block by block)")
        return _ms_tiled(u, labels, alpha, beta, base, miner_epsilon, block_size, None, reduction, out_dtype, validate)
    s = u @ u.T
    if miner_epsilon is not None:
        if indices is not None:
            raise ValueError("pass either indices= (from a miner) or miner_epsilon, not both")
        pos, neg = _ms_masks(s.detach(), labels, miner_epsilon)
    else:
        pos, neg = _pair_masks(labels, indices, validate)
    zero = torch.zeros((), dtype=s.dtype, device=s.device)
    lp = torch.logaddexp(_masked_lse(-alpha * (s - base), pos), zero) / alpha
    ln = torch.logaddexp(_masked_lse(beta * (s - base), neg), zero) / beta
    return reduce_loss(lp + ln, reduction, None, out_dtype)


def _ms_tiled(u: Tensor, labels: Tensor, alpha: float, beta: float, base: float, miner_epsilon: float | None,
              block_size: int | None, indices: Indices | None, reduction: str, out_dtype: torch.dtype, validate: bool,
              on: bool = False, group: Any = None, tiled: bool | str = True) -> Tensor:
    """Multi-similarity over blocks of anchor rows (the MS miner's thresholds are per anchor,
    so it mines within the block). With ``on`` the anchors are this process's rows and the
    keys every process's (:func:`_keys_of`), and a miner's ``indices`` (into the concatenated
    batch) become [n, N] pair masks of this process's anchors (the one case that is not
    linear in N)."""
    n = u.shape[0]
    ug, yg, off = _keys_of(u, labels, on, group)
    _, _, has_pos, has_neg = _class_stats(yg)
    both = bool(has_pos & has_neg)
    idx = _check_distributed(on, indices, n, ug.shape[0], off, u.device, validate)
    masks: tuple[Tensor, Tensor] | None = None
    if idx is not None:
        a1, p, a2, ng = _pairs_of(idx)
        pm = torch.zeros(n, ug.shape[0], dtype=torch.bool, device=u.device)
        nm = torch.zeros_like(pm)
        pm[a1 - off, p] = True
        nm[a2 - off, ng] = True
        masks = (pm, nm)

    def rows(r0: int, r1: int, q: Tensor, k: Tensor) -> Tensor:
        s = q[r0:r1] @ k.T
        if masks is not None:
            pos, neg = masks[0][r0:r1], masks[1][r0:r1]
        else:
            pos, neg = _label_rows(yg, off + r0, off + r1)
        if miner_epsilon is not None:
            sd = s.detach()
            hardest_neg = sd.masked_fill(~neg, -math.inf).amax(1, keepdim=True)
            easiest_pos = sd.masked_fill(~pos, math.inf).amin(1, keepdim=True)
            pos = pos & (sd - miner_epsilon < hardest_neg) & both
            neg = neg & (sd + miner_epsilon > easiest_pos) & both
        zero = torch.zeros((), dtype=s.dtype, device=s.device)
        lp = torch.logaddexp(_masked_lse(-alpha * (s - base), pos), zero) / alpha
        ln = torch.logaddexp(_masked_lse(beta * (s - base), neg), zero) / beta
        return lp + ln

    bs = _tile_rows(ug.shape[0], block_size) if _use_tiles(tiled, n, ug.shape[0]) else max(n, 1)
    per_anchor = row_blocks(rows, n, bs, u, ug)
    if not on:
        return reduce_loss(per_anchor, reduction, None, out_dtype)
    return global_reduce(per_anchor, reduction, ug.shape[0], group).to(out_dtype)


# --------------------------------------------------------------------------------------
# G2 / G1: supervised contrastive and NT-Xent
# --------------------------------------------------------------------------------------
@loss_function(inputs=EMBEDDING, call=("indices", "ref_emb", "ref_labels", "distance", "reducer"), params={
    "temperature": Param("τ > 0 of the softmax over similarities", positive, "HobbitLong/SupContrast (0.07)"),
    "base_temperature": Param("τ_b > 0; the loss is scaled by τ/τ_b", positive, "HobbitLong/SupContrast (0.07)"),
    "average_over": Param("``'anchors_with_positives'`` (PML) | ``'all_anchors'`` (SupContrast): what ``'mean'`` averages",
                          _average_over, f"{PML}'s convention (anchors with a positive)"),
    "tiled": SHARED["tiled"],
    "block_size": SHARED["block_size"],
    "distributed": SHARED["distributed"],
    "group": SHARED["group"],
})
def supcon(
    embeddings: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float = 0.07,
    base_temperature: float = 0.07,
    average_over: str = "anchors_with_positives",
    indices: Indices | None = None,
    tiled: bool | str = "auto",
    block_size: int | None = None,
    distributed: bool = False,
    group: Any = None,
    ref_emb: Tensor | None = None,
    ref_labels: Tensor | None = None,
    distance: Distance | None = None,
    reducer: Reducer | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Supervised contrastive loss; see :class:`lossatlas.losses.SupConLoss`.

    Per anchor ``−(τ/τ_b) · mean_{p∈P_i} [s_ip/τ − log Σ_{k≠i} e^{s_ik/τ}]`` (0 without
    positives). ``average_over="anchors_with_positives"`` (pytorch-metric-learning): mean
    over anchors with a positive, 0 for a batch without a positive or a negative pair;
    ``"all_anchors"`` (HobbitLong/SupContrast): mean over all N anchors.

    Call forms (the second argument's dtype decides): ``supcon(embeddings [N, D], labels
    [N])`` with integer labels; ``supcon(z1, z2)`` with two float [N, D] views of the same
    samples (SimCLR: the batch ``cat([z1, z2])``, labels ``arange(N)`` twice);
    ``supcon(features [bsz, n_views, D], labels [bsz] or None)``, SupContrast's layout
    (flattened view-major, row ``v·bsz + i`` = ``features[i, v]``; ``None``: SimCLR).
    ``"none"`` and ``indices`` refer to the rows of the flattened batch.

    SupCon is the ``each=False`` setting of the positive-mask InfoNCE family
    (:mod:`lossatlas.functional._infonce`): positives are the same-label rows, the
    denominator every row but the anchor. Tiled form (``tiled=True``, or ``"auto"`` above 4M
    matrix entries; not with a miner's ``indices``, whose pair masks are N x N): blocks of
    anchor rows, each backward block recomputed with the analytic gradient, so memory is
    linear in N.
    ``distributed=True``: every process's rows are keys (all-gather with gradients), each
    process returns the loss of the concatenated batch and gets its exact gradient.

    Multi-label SupCon (``labels`` [N, C] multi-hot, a bool or integer 0/1 tensor; with
    ``features`` [bsz, n_views, D], labels [bsz, C]): every other row is a positive weighted
    by the Jaccard index of the two label sets, ``w_ij = |Y_i ∩ Y_j| / |Y_i ∪ Y_j|`` (the
    weights of the Jaccard Similarity Contrastive Loss, JSCL, of Lin et al. 2023, "An
    Effective Deployment of Contrastive Learning in Multi-label Text Classification",
    Findings of ACL 2023, arXiv 2212.00552), and per anchor
    ``ℓ_i = −(τ/τ_b) Σ_{j≠i} w_ij log p_ij / Σ_{j≠i} w_ij``, ``p_ij = e^{s_ij/τ} / Σ_{k≠i}
    e^{s_ik/τ}``. The weighted mean (the normalisation by ``Σ_j w_ij``) is this library's
    choice: one-hot labels give single-label SupCon exactly. A negative pair shares no label;
    the averaging conventions, the tiled and the distributed forms are the single-label ones
    (the Jaccard weights are formed block by block). Not with ``indices`` or the composed
    keywords.

    {args}

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.supcon(torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2]), temperature=0.1).ndim
        0
        >>> la.functional.supcon(torch.randn(3, 2, 4), torch.tensor([0, 0, 1])).ndim  # [bsz, n_views, D]
        0
        >>> multi_hot = torch.tensor([[1, 0, 1], [1, 0, 0], [0, 1, 1], [0, 1, 0]])  # multi-label SupCon
        >>> la.functional.supcon(torch.randn(4, 8), multi_hot).ndim
        0
    """
    if _is_multi_hot(labels):
        if indices is not None or _composed.wants_composed(ref_emb, ref_labels, distance, reducer):
            raise ValueError("labels: multi-hot labels [N, C] (Jaccard-weighted positives) take no indices, ref_emb, "
                             "ref_labels, distance or reducer; pass integer labels [N] with them")
        u, labels, out_dtype = _unit_multi_hot(embeddings, cast(Tensor, labels), validate)
        return _supcon_reduce(u, labels, None, temperature, base_temperature, average_over, tiled, block_size,
                              distributed, group, reduction, out_dtype)
    embeddings, labels = _views(embeddings, labels, validate)
    if _composed.wants_composed(ref_emb, ref_labels, distance, reducer):
        _no_distributed_pieces(distributed)
        _composed.check_pieces(distance, reducer, reduction, tiled)
        return _composed.supcon(embeddings, _check_embeddings(embeddings, labels, validate), ref_emb=ref_emb,
                                ref_labels=ref_labels, indices=indices, distance=distance, reducer=reducer,
                                temperature=temperature, base_temperature=base_temperature,
                                average_over=average_over, reduction=reduction, validate=validate)
    u, labels, out_dtype = _unit(embeddings, labels, validate)
    return _supcon_reduce(u, labels, indices, temperature, base_temperature, average_over, tiled, block_size,
                          distributed, group, reduction, out_dtype, validate)


def _supcon_reduce(u: Tensor, labels: Tensor, indices: Indices | None, temperature: float, base_temperature: float,
                   average_over: str, tiled: bool | str, block_size: int | None, distributed: bool, group: Any,
                   reduction: str, out_dtype: torch.dtype, validate: bool = True) -> Tensor:
    """SupCon of the unit rows ``u`` (labels [N] or multi-hot [N, C]): the family's per-anchor
    losses times τ/τ_b, reduced as ``average_over`` says."""
    on = distributed and is_distributed(group)
    if indices is not None and (on or tiled is True):
        raise ValueError("indices (a miner's pairs) need the dense N x N form: pass tiled=False and distributed=False "
                         "with indices, or drop indices")
    if indices is None:
        per, counts = _embedding_nce(u, labels, 1.0 / temperature, False, tiled, block_rows(u.shape[0], block_size),
                                     on, group)
    else:
        pos, neg = _pair_masks(labels, indices, validate)
        per, counts = nce_matrix((u @ u.T) * (1.0 / temperature), pos, pos | neg)
    per_anchor = (temperature / base_temperature) * per
    if average_over == "anchors_with_positives":
        per_anchor = _zero_unless(_has_pairs(counts, on, group), per_anchor)
        count = (counts[:, 0] > 0).sum()
    else:
        count = counts.new_tensor(counts.shape[0])
    return _reduce_anchors(per_anchor, lambda: _global_ratio(per_anchor.sum(), count, on, group), reduction,
                           out_dtype, on, group)


def _is_multi_hot(labels: Any) -> bool:
    """Multi-hot labels: a 2-D bool or integer tensor (a float [N, D] is a second view)."""
    return isinstance(labels, Tensor) and labels.dim() == 2 and not labels.is_floating_point() and not labels.is_complex()


def _unit_multi_hot(embeddings: Any, labels: Tensor, validate: bool) -> tuple[Tensor, Tensor, torch.dtype]:
    """Unit rows [N, D] and multi-hot labels [N, C] as 0/1 floats (``features`` [bsz, n_views, D]
    are flattened view-major, their labels [bsz, C] tiled), and the output dtype."""
    e = check_float(embeddings, "embeddings")
    if e.dim() == 3:
        b, v, d = e.shape
        if labels.shape[0] != b:
            raise ValueError(f"labels must have shape [bsz, C] with bsz = {b} (embeddings [bsz, n_views, D] = "
                             f"{tuple(e.shape)}), got {tuple(labels.shape)}")
        e, labels = e.transpose(0, 1).reshape(v * b, d), labels.repeat(v, 1)
    if e.dim() != 2 or e.shape[1] < 1:
        raise ValueError(f"embeddings must have shape [N, D] or [bsz, n_views, D], got {tuple(e.shape)}")
    if labels.shape[0] != e.shape[0] or labels.shape[1] < 1:
        raise ValueError(f"labels must have shape [N, C] = [{e.shape[0]}, C >= 1] (multi-hot, one row per embedding), "
                         f"got {tuple(labels.shape)}")
    check_same_device("embeddings", e, "labels", labels)
    check_finite(e, "embeddings", validate)
    if validate and not compiling() and labels.dtype != torch.bool and labels.numel() and (
            int(labels.min()) < 0 or int(labels.max()) > 1):
        raise ValueError("labels: multi-hot labels [N, C] must hold 0 and 1 (or be a bool tensor)")
    u = F.normalize(e.to(compute_dtype(e)), p=2.0, dim=1)
    return u, labels.to(u.dtype), e.dtype


def _embedding_nce(u: Tensor, labels: Tensor, scale: float, each: bool, tiled: bool | str, block_size: int,
                   on: bool, group: Any) -> tuple[Tensor, Tensor]:
    """The InfoNCE family (:mod:`._infonce`) on one labelled batch: the local unit rows ``u``
    against the rows of every process (``on``: all-gathered with gradients) or of this one,
    each row's own column left out; per-anchor losses [n] and counts [n, 2]."""
    ug, yg, off = _keys_of(u, labels, on, group)
    own = torch.arange(u.shape[0], device=u.device) + off
    per, counts, _ = nce(u, ug, scale, labels, yg, self_cols=own, each=each,
                         tiled=_use_tiles(tiled, u.shape[0], ug.shape[0]), block_size=block_size)
    return per, counts


def _has_pairs(counts: Tensor, on: bool, group: Any) -> Tensor:
    """Whether the batch (of every process, ``on``) has a positive and a negative pair, from the
    kernel's per-row counts: a 0-d bool tensor without gradient (no host read)."""
    c = torch.stack([(counts[:, 0] > 0).sum(), (counts[:, 1] > 0).sum()])
    if on:
        c = _all_reduce_value(c, group)
    return (c[0] > 0) & (c[1] > 0)


def _class_stats(labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Dense class ids of ``labels`` (``torch.unique``'s inverse), the count of each class, and
    whether the batch has a positive pair (a class seen twice) and a negative pair (two classes)."""
    if labels.numel() == 0:
        e = labels.new_zeros(0)
        f = torch.zeros((), dtype=torch.bool, device=labels.device)
        return e, e, f, f
    uniq, inv = torch.unique(labels, return_inverse=True)
    cnt = torch.bincount(inv, minlength=uniq.numel())
    has_pos = (cnt > 1).any()
    has_neg = torch.tensor(uniq.numel() > 1, device=labels.device)
    return inv, cnt, has_pos, has_neg


@loss_function(inputs=EMBEDDING, call=("indices", "ref_emb", "ref_labels", "distance", "reducer"), params={
    "temperature": Param("τ > 0 of the softmax over similarities", positive, f"{PML} (0.07)"),
    "tiled": Param("``True`` computes the loss in blocks of anchor rows with an analytic backward that recomputes "
                   "each block (the InfoNCE family's kernel): the dense form's values and gradients, memory "
                   "linear in N; ``False`` builds the N x N matrices; ``'auto'`` tiles above 4M matrix entries",
                   tiled_option, "this library (dense: tiling pays in memory, not in time, at small N)"),
    "block_size": _ROW_BLOCK_SIZE,
    "distributed": SHARED["distributed"],
    "group": SHARED["group"],
})
def ntxent(
    embeddings: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float = 0.07,
    indices: Indices | None = None,
    tiled: bool | str = False,
    block_size: int | None = None,
    distributed: bool = False,
    group: Any = None,
    ref_emb: Tensor | None = None,
    ref_labels: Tensor | None = None,
    distance: Distance | None = None,
    reducer: Reducer | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """NT-Xent (SimCLR), with labels as pytorch-metric-learning or on two views; see
    :class:`lossatlas.losses.NTXentLoss`.

    Per ordered positive pair ``l_ap = −log e^{s_ap/τ} / (e^{s_ap/τ} + Σ_{n∈N_a} e^{s_an/τ})``;
    ``"mean"`` averages over the positive pairs, 0 when the batch lacks positives or negatives.

    Call forms (the second argument's dtype decides): ``ntxent(embeddings [N, D], labels
    [N])`` with integer labels; ``ntxent(z1, z2)`` with two float [N, D] views of the same N
    samples: SimCLR's NT-Xent, each row's positive the other view of its sample and its
    negatives the other 2N − 2 rows (= the labelled form on ``cat([z1, z2])`` with labels
    ``arange(N)`` twice); ``ntxent(features [bsz, n_views, D], labels [bsz] or None)``,
    SupContrast's layout (flattened view-major; ``None``: each sample its own label).
    ``"none"`` and ``indices`` refer to the rows of the flattened batch (``cat([z1, z2])``).

    {args}

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.ntxent(torch.randn(6, 4), torch.arange(3).repeat(2), temperature=0.5).ndim
        0
        >>> la.functional.ntxent(torch.randn(3, 4), torch.randn(3, 4), temperature=0.5).ndim  # two views
        0
    """
    embeddings, labels = _views(embeddings, labels, validate)
    if _composed.wants_composed(ref_emb, ref_labels, distance, reducer):
        _no_distributed_pieces(distributed)
        _composed.check_pieces(distance, reducer, reduction, tiled)
        return _composed.ntxent(embeddings, _check_embeddings(embeddings, labels, validate), ref_emb=ref_emb,
                                ref_labels=ref_labels, indices=indices, distance=distance, reducer=reducer,
                                temperature=temperature, reduction=reduction, validate=validate)
    u, labels, out_dtype = _unit(embeddings, labels, validate)
    on = distributed and is_distributed(group)
    if indices is not None and (on or _use_tiles(tiled, u.shape[0], u.shape[0])):
        raise ValueError("indices (a miner's pairs) need the dense form: pass tiled=False (and distributed=False) "
                         "with indices")
    if indices is None:
        per_anchor, counts = _embedding_nce(u, labels, 1.0 / temperature, True, tiled,
                                            _tile_rows(u.shape[0], block_size), on, group)
    else:
        # Σ_n w_an e^{z_an}: a negative listed k times by a miner counts k times (PML)
        wp, wn = _pair_weights(labels, indices, u.dtype, validate)
        per_anchor, counts = nce_matrix((u @ u.T) * (1.0 / temperature), wp, wn, each=True)
    per_anchor = _zero_unless(_has_pairs(counts, on, group), per_anchor)
    # "mean": over the (weighted) positive pairs
    return _reduce_anchors(per_anchor, lambda: _global_ratio(per_anchor.sum(), counts[:, 0].sum(), on, group),
                           reduction, out_dtype, on, group)


# --------------------------------------------------------------------------------------
# F6: threshold-consistent margin (a regulariser added to a base metric loss)
# --------------------------------------------------------------------------------------
@loss_function(inputs=EMBEDDING, call=("indices",), params={
    "lambda_plus": Param("λ+ ≥ 0, weight of the hard-positive term", nonnegative, "PML / Zhang et al. (1)"),
    "lambda_minus": Param("λ− ≥ 0, weight of the hard-negative term", nonnegative, "PML / Zhang et al. (1)"),
    "margin_plus": Param("m+ ∈ [−1, 1]: positives with a cosine below it are penalised", _cosine_level,
                         "PML / Zhang et al. (0.9)"),
    "margin_minus": Param("m− ∈ [−1, 1]: negatives with a cosine above it are penalised", _cosine_level,
                          "PML / Zhang et al. (0.5)"),
})
def threshold_consistent_margin(
    embeddings: Tensor,
    labels: Tensor,
    *,
    lambda_plus: float = 1.0,
    lambda_minus: float = 1.0,
    margin_plus: float = 0.9,
    margin_minus: float = 0.5,
    indices: Indices | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """TCM regulariser; see :class:`lossatlas.losses.ThresholdConsistentMarginLoss`.

    ``"mean"``: ``λ+ · mean_{pos: s ≤ m+}(m+ − s) + λ− · mean_{neg: s ≥ m−}(s − m−)``.

    {args}

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.threshold_consistent_margin(torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2])).ndim
        0
    """
    u, labels, out_dtype = _unit(embeddings, labels, validate)
    s = u @ u.T
    wp, wn = _pair_weights(labels, indices, s.dtype, validate)
    act_p = wp * (s <= margin_plus)
    act_n = wn * (s >= margin_minus)
    tp = torch.where(act_p > 0, margin_plus - s, torch.zeros_like(s))
    tn = torch.where(act_n > 0, s - margin_minus, torch.zeros_like(s))
    per_anchor = lambda_plus * (tp * act_p).sum(1) + lambda_minus * (tn * act_n).sum(1)
    mean = lambda_plus * _wavg(tp, act_p) + lambda_minus * _wavg(tn, act_n)
    return _pairwise_reduce(per_anchor, mean, reduction, out_dtype)


# --------------------------------------------------------------------------------------
# F3: normalised-softmax classifiers (NormFace, CosFace, ArcFace) and their pieces
# --------------------------------------------------------------------------------------
def _cosines(embeddings: Tensor, labels: Tensor, weight: Tensor, validate: bool) -> tuple[Tensor, Tensor, torch.dtype]:
    """cos(θ_ij) [N, C] between normalised embeddings and normalised class vectors, the labels
    (int64, checked against the C classes) and the output dtype."""
    labels = _check_embeddings(embeddings, labels, validate)
    check_float(weight, "weight")
    if weight.dim() != 2 or weight.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"weight must have shape [num_classes, embedding_size] = [C, {embeddings.shape[1]}] "
            f"(nn.Linear layout), got {tuple(weight.shape)}"
        )
    check_same_device("embeddings", embeddings, "weight", weight)
    dt = torch.promote_types(compute_dtype(embeddings), compute_dtype(weight))
    u = F.normalize(embeddings.to(dt), dim=1)
    w = F.normalize(weight.to(dt), dim=1)
    cos = u @ w.T
    # the range is checked here against the class vectors, the user's num_classes (the shared
    # check would name the internal cosine matrix as "logits")
    num_classes = weight.shape[0]
    if validate and not compiling() and labels.numel():
        lo, hi = (int(v) for v in torch.aminmax(labels))
        if lo < 0 or hi >= num_classes:
            bad = labels[(labels < 0) | (labels >= num_classes)][:5].tolist()
            raise ValueError(f"labels values must be in [0, {num_classes}) (num_classes={num_classes}, the rows of "
                             f"weight); found {bad}")
    labels = check_class_target(labels, cos, False, name="labels")
    return cos, labels, embeddings.dtype


def margin_logits(cos: Tensor, labels: Tensor, margin_type: str = "arcface", margin: float = 0.5) -> Tensor:
    """Apply an additive angular (ArcFace), additive cosine (CosFace) or no (NormFace)
    margin to each row's target cosine. ``cos`` [N, C]; returns unscaled logits [N, C].

    ArcFace (margin in radians): ``cos(θ + m)`` while ``θ ≤ π − m``, else ``cos θ − m sin m``
    (keeps the target logit monotone in θ, as pytorch-metric-learning 2.9's ArcFaceLoss and
    insightface's earlier ``ArcFace`` head do; insightface's current ``CombinedMarginLoss``
    and the UNPG head use ``cos(θ + m)`` for every θ: see :func:`partial_fc`, :func:`unpg`).

    >>> import torch
    >>> margin_logits(torch.tensor([[0.0, 0.5]]), torch.tensor([1]), "cosface", 0.25).tolist()
    [[0.0, 0.25]]
    """
    margin_type = _margin_type(margin_type, "margin_type")
    margin = check_number(margin, "margin")
    if margin_type == "normface" or cos.shape[0] == 0:
        return cos
    ct = target_logit(cos, labels)
    if margin_type == "cosface":
        new = ct - margin
    else:
        cm, sm = math.cos(margin), math.sin(margin)
        # sin θ: the exact value, with the gradient of sqrt(max(1 − cos²θ, 1e-12)), finite at
        # |cos θ| = 1 (where d acos / d cos is infinite; pytorch-metric-learning's is NaN there)
        sin2 = 1.0 - ct * ct
        grad_sin = sin2.clamp_min(1e-12).sqrt()
        sin_t = sin2.clamp_min(0.0).sqrt().detach() + (grad_sin - grad_sin.detach())
        new = torch.where(ct >= -cm, ct * cm - sin_t * sm, ct - margin * sm)
    return add_to_target(cos, labels, new - ct)


def _ce(logits: Tensor, labels: Tensor, reduction: str, out_dtype: torch.dtype) -> Tensor:
    losses = F.cross_entropy(logits, labels, reduction="none")
    return reduce_loss(losses, reduction, None, out_dtype)


@loss_function(compile_opaque=True, inputs=CLASSIFIER, params={
    "temperature": Param("T > 0: the logits are cos θ / T", positive, f"{PML} / Zhai & Wu 2018 (0.05, i.e. scale 20)"),
})
def normalized_softmax(
    embeddings: Tensor, labels: Tensor, weight: Tensor, *, temperature: float = 0.05,
    reduction: str = "mean", validate: bool = True,
) -> Tensor:
    """NormFace / normalised softmax: ``CE(cos(θ) / T, y)``; see :class:`lossatlas.losses.NormalizedSoftmaxLoss`.

    {args}

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.normalized_softmax(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.randn(5, 3)).ndim
        0
    """
    cos, labels, out_dtype = _cosines(embeddings, labels, weight, validate)
    return _ce(cos / temperature, labels, reduction, out_dtype)


_SCALE = Param("s > 0, the scale of the cosine logits", positive, "pytorch-metric-learning / insightface (64)")


@loss_function(inputs=CLASSIFIER, params={
    "margin": Param("m, subtracted from the target cosine", any_number, f"{PML} / Wang et al. 2018 (0.35)"),
    "scale": _SCALE,
})
def cosface(
    embeddings: Tensor, labels: Tensor, weight: Tensor, *, margin: float = 0.35, scale: float = 64.0,
    reduction: str = "mean", validate: bool = True,
) -> Tensor:
    """CosFace: ``CE(s·(cos θ − m·e_y), y)``; see :class:`lossatlas.losses.CosFaceLoss`.

    {args}

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.cosface(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.randn(5, 3)).ndim
        0
    """
    cos, labels, out_dtype = _cosines(embeddings, labels, weight, validate)
    return _ce(scale * margin_logits(cos, labels, "cosface", margin), labels, reduction, out_dtype)


@loss_function(inputs=CLASSIFIER, params={
    "margin": Param("m ∈ [0, π] in RADIANS, added to the target angle", _angle,
                    f"{INSIGHTFACE} configs margin_list (1.0, 0.5, 0.0): 0.5 rad, the paper's m "
                    "(PML's default is 28.6° = 0.49916 rad)"),
    "scale": Param("s > 0, the scale of the cosine logits", positive, f"{INSIGHTFACE} CombinedMarginLoss(64, …) / PML (64)"),
})
def arcface(
    embeddings: Tensor, labels: Tensor, weight: Tensor, *, margin: float = 0.5, scale: float = 64.0,
    reduction: str = "mean", validate: bool = True,
) -> Tensor:
    """ArcFace: ``CE(s·cos(θ + m·e_y), y)``, margin in RADIANS; see :class:`lossatlas.losses.ArcFaceLoss`.

    Defaults m = 0.5 rad, s = 64 are insightface's (arcface_torch ``margin_list = (1.0, 0.5,
    0.0)``, ``CombinedMarginLoss(64, …)``) and the module's; the target logit is
    :func:`margin_logits`'s (``cos θ − m sin m`` past ``θ = π − m``).

    {args}

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.arcface(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.randn(5, 3)).ndim
        0
    """
    cos, labels, out_dtype = _cosines(embeddings, labels, weight, validate)
    return _ce(scale * margin_logits(cos, labels, "arcface", margin), labels, reduction, out_dtype)


# --------------------------------------------------------------------------------------
# F5: SFace
# --------------------------------------------------------------------------------------
@loss_function(inputs=CLASSIFIER, params={
    "scale": Param("s > 0, the scale of the cosines", positive, "zhongyy/SFace (64)"),
    "k": Param("k ≥ 0, the slope of both sigmoid weights (0 makes them constant 1/2)", nonnegative, "zhongyy/SFace (80)"),
    "a": Param("a, the target angle (radians) where the intra-class weight is 1/2", any_number,
               "zhongyy/SFace torch head (0.8)"),
    "b": Param("b, the angle (radians) where the inter-class weights are 1/2", any_number, "zhongyy/SFace torch head (1.23)"),
})
def sface(
    embeddings: Tensor, labels: Tensor, weight: Tensor, *, scale: float = 64.0, k: float = 80.0,
    a: float = 0.8, b: float = 1.23, reduction: str = "mean", validate: bool = True,
) -> Tensor:
    """SFace: sigmoid-re-weighted intra- and inter-class cosines; see :class:`lossatlas.losses.SFaceLoss`.

    ``l_i = −w_y · s cos θ_y + Σ_{j≠y} w_j · s cos θ_j`` with the weights
    ``w_y = σ(k(θ_y − a))``, ``w_j = σ(−k(θ_j − b))`` held constant (no gradient).

    {args}

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.sface(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.randn(5, 3)).ndim
        0
    """
    cos, labels, out_dtype = _cosines(embeddings, labels, weight, validate)
    ct = target_logit(cos, labels)
    with torch.no_grad():
        theta = torch.acos(cos.clamp(-1.0, 1.0))
        w_intra = torch.sigmoid(k * (target_logit(theta, labels) - a))
        w_inter = torch.sigmoid(-k * (theta - b)).scatter(1, labels.unsqueeze(1), 0.0)
    losses = -w_intra * scale * ct + (w_inter * scale * cos).sum(1)
    return reduce_loss(losses, reduction, None, out_dtype)


# --------------------------------------------------------------------------------------
# F4: UNPG
# --------------------------------------------------------------------------------------
def box_and_whisker_filter(values: Tensor, whisker: float = 1.5) -> Tensor:
    """Keep the values inside ``[Q1 − w·IQR, Q3 + w·IQR]`` (UNPG's noisy-negative filter).

    Quartiles are order statistics of the sorted values at positions ``int(0.25 L)`` and
    ``int(0.75 L)``, as in Jung-Jun-Uk/UNPG. Returns the kept values, sorted ascending.

    >>> import torch
    >>> v = torch.tensor([0.1, 0.2, 0.15, 0.12, 0.18, 0.11, 0.14, 5.0], dtype=torch.float64)
    >>> box_and_whisker_filter(v).tolist()  # Q1 = 0.12, Q3 = 0.2: 5.0 is above Q3 + 1.5 IQR
    [0.1, 0.11, 0.12, 0.14, 0.15, 0.18, 0.2]
    """
    whisker = check_number(whisker, "whisker", low=0.0)
    if values.numel() == 0:
        return values
    x = values.sort().values
    length = x.shape[0]
    with torch.no_grad():
        q1, q3 = x[int(0.25 * length)], x[int(0.75 * length)]
        iqr = q3 - q1
        keep = (x >= q1 - whisker * iqr) & (x <= q3 + whisker * iqr)
    return x[keep]


def _unpg_head(cos: Tensor, labels: Tensor, margin_type: str, margin: float) -> Tensor:
    """UNPG's margin heads (Jung-Jun-Uk/UNPG recognition/models/head.py), unscaled.

    ArcFace: ``cos(θ_y + m)`` for EVERY θ (the official head takes ``acos`` in place, adds
    m and takes ``cos``: no ``θ > π − m`` fallback, no easy margin), written as
    ``cos θ · cos m − sin θ · sin m`` (the same value for θ ∈ [0, π] and the gradient
    ``sin(θ + m) / sin θ``, sin θ's derivative taken from ``sqrt(max(1 − cos²θ, 1e-12))`` so that
    it stays finite at |cos θ| = 1). CosFace / NormFace: :func:`margin_logits`.
    """
    if margin_type != "arcface":
        return margin_logits(cos, labels, margin_type, margin)
    if cos.shape[0] == 0:
        return cos
    ct = target_logit(cos, labels)
    # sin θ: the exact value (so cos(θ + m) is exact at θ = 0), with the gradient of
    # sqrt(max(1 − cos²θ, 1e-12)), finite at |cos θ| = 1 (as margin_logits)
    sin2 = 1.0 - ct * ct
    grad_sin = sin2.clamp_min(1e-12).sqrt()
    sin_t = sin2.clamp_min(0.0).sqrt().detach() + (grad_sin - grad_sin.detach())
    new = ct * math.cos(margin) - sin_t * math.sin(margin)
    return add_to_target(cos, labels, new - ct)


def _whisker_mask(values: Tensor, valid: Tensor, whisker: float) -> Tensor:
    """Mask of the ``valid`` entries that :func:`box_and_whisker_filter` keeps, static shapes.

    The L valid values sort first (the rest are +inf); ``Q1`` and ``Q3`` are the sorted
    values at ``int(0.25 L) = L // 4`` and ``int(0.75 L) = 3L // 4`` (exact in binary).
    """
    if values.numel() == 0:
        return valid
    with torch.no_grad():
        x = values.masked_fill(~valid, math.inf).sort().values
        length = valid.sum()
        last = values.numel() - 1
        q1 = x.gather(0, (length // 4).clamp_max(last).reshape(1))
        q3 = x.gather(0, ((3 * length) // 4).clamp_max(last).reshape(1))
        iqr = q3 - q1
        return valid & (values >= q1 - whisker * iqr) & (values <= q3 + whisker * iqr)


@loss_function(inputs=CLASSIFIER, params={
    "margin": Param("m of the margin head (radians for ArcFace)", any_number, "Jung-Jun-Uk/UNPG head.zoo.yaml arcface (0.5 rad)"),
    "scale": Param("s > 0, the scale of the logits", positive, "Jung-Jun-Uk/UNPG (64)"),
    "margin_type": Param("the margin head: ``'arcface'`` | ``'cosface'`` | ``'normface'``", _margin_type,
                         "Jung-Jun-Uk/UNPG best setting (ArcFace head)"),
    "whisker": Param("w ≥ 0 of the box-and-whisker filter of the negative pairs", nonnegative,
                     "Jung-Jun-Uk/UNPG head.zoo.yaml unpg.wisk (1.5)"),
})
def unpg(
    embeddings: Tensor, labels: Tensor, weight: Tensor, *, margin: float = 0.5, scale: float = 64.0,
    margin_type: str = "arcface", whisker: float = 1.5, reduction: str = "mean", validate: bool = True,
) -> Tensor:
    """UNPG: margin softmax whose negatives are the other classes AND the batch's filtered
    negative-pair cosines; see :class:`lossatlas.losses.UNPGLoss`.

    ``l_i = log(Σ_j e^{s·ℓ_ij} + Σ_{k∈S'_n} e^{s·s_k}) − s·ℓ_{i,y_i}`` where ``ℓ`` are the
    official head's margin logits (ArcFace: ``cos(θ + m)`` at the target for every θ, no
    fallback) and ``S'_n`` the box-and-whisker-filtered cosines of the unordered
    different-label pairs of the batch (the columns the official code appends to every row).
    Defaults m = 0.5, s = 64, w = 1.5 are the official configs'.

    {args}

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.unpg(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.randn(5, 3)).ndim
        0
    """
    cos, labels, out_dtype = _cosines(embeddings, labels, weight, validate)
    logits = scale * _unpg_head(cos, labels, margin_type, margin)
    u = F.normalize(embeddings.to(cos.dtype), dim=1)
    n = u.shape[0]
    # every unordered pair i < j (a static shape); the negative ones kept by the filter are
    # masked in, so no data-dependent shape appears (torch.compile captures one graph)
    iu = torch.triu_indices(n, n, 1, device=u.device)
    sims = (u[iu[0]] * u[iu[1]]).sum(1)
    keep = _whisker_mask(sims, labels[iu[0]] != labels[iu[1]], whisker)
    lse = torch.logsumexp(logits, dim=1)
    if sims.numel():
        extra = _masked_lse(scale * sims.unsqueeze(0), keep.unsqueeze(0))  # −inf (zero gradient) if none kept
        lse = torch.logaddexp(lse, extra)
    losses = lse - target_logit(logits, labels)
    return reduce_loss(losses, reduction, None, out_dtype)


# --------------------------------------------------------------------------------------
# F7: Partial FC
# --------------------------------------------------------------------------------------
def sample_class_centres(
    labels: Tensor, num_classes: int, num_sample: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Partial FC's sampling: every class present in ``labels`` plus random others,
    ``max(num_sample, #present)`` centres in all.

    Returns ``(index, local_labels)``: the sorted sampled class ids [S] and ``labels``
    re-indexed into them (``index[local_labels] == labels``).

    >>> import torch
    >>> index, local = sample_class_centres(torch.tensor([7, 2, 7]), 10, 2)
    >>> index.tolist(), local.tolist()
    ([2, 7], [1, 0, 1])
    """
    if num_sample >= num_classes:
        index = torch.arange(num_classes, device=labels.device)
        return index, labels
    positive = torch.unique(labels)
    if num_sample <= positive.numel():
        index = positive
    else:
        score = torch.rand(num_classes, generator=generator, device=generator.device if generator is not None else "cpu")
        score = score.to(labels.device)
        score[positive] = 2.0  # present classes always win the top-k
        index = torch.topk(score, num_sample).indices.sort().values
    return index, torch.searchsorted(index, labels)


#: insightface's DistCrossEntropy clamps each target probability at 1e-30 before the log,
#: so a per-sample loss never exceeds −log 1e-30 ≈ 69.08 (its backward ignores the clamp)
PFC_CE_CAP = -math.log(1e-30)


def _check_pfc_index(index: Tensor, labels: Tensor, num_classes: int, validate: bool) -> Tensor:
    """Partial FC's ``index``: sorted, distinct int64 class ids in [0, C) covering ``labels``."""
    check_tensor(index, "index")
    if index.dtype.is_floating_point or index.dtype == torch.bool or index.is_complex():
        raise TypeError(f"index must hold integer class ids (torch.long), got dtype {index.dtype}")
    if index.dim() != 1 or index.numel() == 0:
        raise ValueError(f"index must be a non-empty 1-D tensor of class ids [S], got shape {tuple(index.shape)}")
    check_same_device("labels", labels, "index", index)
    index = index.to(torch.long)
    if validate and not compiling():
        if int(index.min()) < 0 or int(index.max()) >= num_classes:
            raise ValueError(f"index values must be class ids in [0, {num_classes}) for a weight with {num_classes} classes")
        if index.numel() > 1 and not bool((index[1:] > index[:-1]).all()):
            raise ValueError("index must be sorted ascending without repeats (e.g. torch.unique(ids))")
        if labels.numel():
            pos = torch.searchsorted(index, labels.to(torch.long)).clamp_max(index.numel() - 1)
            missing = index[pos] != labels
            if bool(missing.any()):
                absent = torch.unique(labels[missing])[:5].tolist()
                raise ValueError(f"index must include every class in labels; missing e.g. {absent}")
    return index


def _pfc_margin_ce(cos: Tensor, local: Tensor, margin_type: str, margin: float, scale: float) -> Tensor:
    """Per-sample CE of insightface's ``CombinedMarginLoss`` + ``DistCrossEntropy`` [N].

    The target cosine is replaced under ``no_grad`` (ArcFace ``cos(acos(c) + m)`` for every
    θ, CosFace ``c − m``, NormFace ``c``), so the margin is the identity in backward:
    ``∂l_i/∂cos_ij = s·(softmax_ij − 1[j = y_i])``. Each loss is capped at ``PFC_CE_CAP`` in
    value only (the gradient stays the uncapped CE's).
    """
    if cos.shape[0] == 0:
        return F.cross_entropy(scale * cos, local, reduction="none")
    with torch.no_grad():
        ct = target_logit(cos, local)
        if margin_type == "arcface":
            new = torch.cos(torch.acos(ct) + margin)
        elif margin_type == "cosface":
            new = ct - margin
        else:
            new = ct
        delta = new - ct
    logits = scale * add_to_target(cos, local, delta)
    ce = F.cross_entropy(logits, local, reduction="none")
    return ce - (ce - PFC_CE_CAP).clamp_min(0.0).detach()


@loss_function(inputs=CLASSIFIER, call=("generator", "index"), params={
    "sample_rate": Param("r ∈ (0, 1], the fraction of class centres sampled per call (1: all)", _rate,
                         "insightface configs (0.1 for very many classes; 1.0 = full softmax)"),
    "margin": Param("m of the margin (radians for ArcFace)", any_number,
                    f"{INSIGHTFACE} margin_list (1.0, 0.5, 0.0): ArcFace 0.5 rad"),
    "scale": Param("s > 0, the scale of the logits", positive, f"{INSIGHTFACE} CombinedMarginLoss(64, …)"),
    "margin_type": Param("``'arcface'`` | ``'cosface'`` | ``'normface'``", _margin_type, "insightface default (ArcFace)"),
})
def partial_fc(
    embeddings: Tensor, labels: Tensor, weight: Tensor, *, sample_rate: float = 0.1, margin: float = 0.5,
    scale: float = 64.0, margin_type: str = "arcface", generator: torch.Generator | None = None,
    index: Tensor | None = None, reduction: str = "mean", validate: bool = True,
) -> Tensor:
    """Margin softmax over a subset of class centres, as insightface's arcface_torch
    (``PartialFC_V2`` + ``CombinedMarginLoss``); see :class:`lossatlas.losses.PartialFCLoss`.

    ``cos`` is clamped to [−1, 1]; the target logit becomes ``cos(θ + m)`` (ArcFace, every
    θ), ``cos θ − m`` (CosFace) or ``cos θ`` (NormFace) in VALUE only: the gradient is
    straight through, ``∂L/∂cos_ij = s·(softmax_ij − 1[j = y_i])/N`` for ``"mean"``. Each
    per-sample loss is capped at ``−log 1e-30`` in value only. The centres are ``index``
    (sorted int64 class ids that include every label) when given, else every class of the
    batch plus random others (:func:`sample_class_centres`, drawn from ``generator`` or
    torch's global RNG); ``sample_rate=1.0`` uses all.

    {args}

    Example:
        >>> import torch, lossatlas as la
        >>> la.functional.partial_fc(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.randn(50, 3)).ndim
        0
    """
    check_float(weight, "weight")
    if weight.dim() != 2:
        raise ValueError(f"weight must have shape [num_classes, embedding_size], got {tuple(weight.shape)}")
    labels = _check_embeddings(embeddings, labels, validate)
    num_classes = weight.shape[0]
    # validate the global labels before sampling (the local ones are in range by construction)
    if validate and not compiling() and labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][:5].tolist()
        raise ValueError(f"labels values must be in [0, {num_classes}) (num_classes={num_classes}, the rows of weight); "
                         f"found {bad}")
    if index is None:
        index, local = sample_class_centres(labels, num_classes, int(sample_rate * num_classes), generator)
    else:
        index = _check_pfc_index(index, labels, num_classes, validate)
        local = torch.searchsorted(index, labels)
    cos, _, out_dtype = _cosines(embeddings, local, weight[index], validate=False)
    losses = _pfc_margin_ce(cos.clamp(-1.0, 1.0), local, margin_type, margin, scale)
    return reduce_loss(losses, reduction, None, out_dtype)
