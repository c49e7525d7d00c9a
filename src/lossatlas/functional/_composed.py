"""The composed forms of the pair-based embedding losses (issue 22): a distance, a reference
set, a miner's indices and a reducer, as pytorch-metric-learning composes them.

The losses of :mod:`lossatlas.functional.metric` take this path when a call passes any of
``ref_emb``, ``distance`` or ``reducer`` (a memory bank passes ``ref_emb``); without them
they keep their own kernels. With the defaults of each loss (its paper distance, its own
``'mean'``) the composed path gives the same value as the direct one (tested).

Reference set: anchors are the rows of ``embeddings`` [N, D]; positives and negatives are
rows of ``ref_emb`` [M, D] (labels ``ref_labels`` [M]); without ``ref_emb`` the reference is
the batch itself and a row is never its own positive. Miner indices index anchors into
``embeddings`` and positives / negatives into the reference.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_class_indices, check_finite, check_float, check_same_device, check_tensor, compiling
from ..distances import CosineSimilarity, Distance, LpDistance
from ..reducers import AvgNonZeroReducer, MeanReducer, Reducer, Terms, reduce_terms
from ._common import compute_dtype
from ._infonce import nce_matrix

EUCLIDEAN = LpDistance()
COSINE = CosineSimilarity()


def wants_composed(ref_emb: Any, ref_labels: Any, distance: Any, reducer: Any) -> bool:
    """Whether a call asks for the composed path."""
    return ref_emb is not None or ref_labels is not None or distance is not None or reducer is not None


def check_pieces(distance: Any, reducer: Any, reduction: str, tiled: Any = False) -> None:
    if tiled is True:
        raise ValueError("tiled=True has no composed form: ref_emb / distance / reducer build the dense [N, M] "
                         "matrix; pass tiled=False (or 'auto') with them")
    if distance is not None and not isinstance(distance, Distance):
        raise TypeError(f"distance must be a lossatlas.distances.Distance (or None), got {type(distance).__name__}")
    if reducer is not None and not isinstance(reducer, Reducer):
        raise TypeError(f"reducer must be a lossatlas.reducers.Reducer (or None), got {type(reducer).__name__}")
    if reducer is not None and reduction != "mean":
        raise ValueError(f"reducer= reduces the terms to one number: use it with reduction='mean', got reduction={reduction!r}")


def reference(
    embeddings: Tensor, labels: Tensor, ref_emb: Tensor | None, ref_labels: Tensor | None, validate: bool
) -> tuple[Tensor | None, Tensor]:
    """Check ``ref_emb`` [M, D] and ``ref_labels`` [M]; ``(None, labels)`` without a reference."""
    if ref_emb is None:
        if ref_labels is not None:
            raise ValueError("ref_labels was given without ref_emb: pass the reference embeddings ref_emb [M, D] too")
        return None, labels
    check_float(ref_emb, "ref_emb")
    if ref_emb.dim() != 2 or ref_emb.shape[1] != embeddings.shape[1]:
        raise ValueError(f"ref_emb must have shape [M, D] with D = {embeddings.shape[1]} (the embeddings' D), "
                         f"got {tuple(ref_emb.shape)}")
    check_same_device("embeddings", embeddings, "ref_emb", ref_emb)
    check_finite(ref_emb, "ref_emb", validate)
    if ref_labels is None:
        raise ValueError("ref_emb needs its labels: pass ref_labels [M]")
    check_tensor(ref_labels, "ref_labels")
    y = check_class_indices(ref_labels, "ref_labels")
    if y.dim() != 1 or y.shape[0] != ref_emb.shape[0]:
        raise ValueError(f"ref_labels must have shape [M] = [{ref_emb.shape[0]}] to match ref_emb, got {tuple(y.shape)}")
    check_same_device("ref_emb", ref_emb, "ref_labels", y)
    return ref_emb, y


def matrix(embeddings: Tensor, ref: Tensor | None, distance: Distance) -> Tensor:
    """``distance(embeddings, ref)`` in the compute dtype (float16 / bfloat16 → float32)."""
    dt = compute_dtype(embeddings)
    return distance(embeddings.to(dt), None if ref is None else ref.to(dt))


def label_masks(labels: Tensor, ref_labels: Tensor, same: bool) -> tuple[Tensor, Tensor]:
    """[N, M] positive (same label; not the row itself when ``same``) and negative masks."""
    eq = labels.unsqueeze(1) == ref_labels.unsqueeze(0)
    pos = eq.clone()
    if same:
        pos.fill_diagonal_(False)
    return pos, ~eq


def _check_index(value: Any, k: int, bound: int, what: str, validate: bool, device: torch.device) -> Tensor:
    t = check_tensor(value, f"indices[{k}]")
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.dim() != 1:
        raise TypeError(f"indices[{k}] must be a 1-D integer tensor, got dtype {t.dtype} shape {tuple(t.shape)}")
    if validate and not compiling() and t.numel() and (int(t.min()) < 0 or int(t.max()) >= bound):
        raise ValueError(f"indices[{k}] must index the {bound} {what}, found values outside [0, {bound})")
    return t.to(device=device, dtype=torch.long)


def check_indices(indices: Any, n: int, m: int, device: torch.device, validate: bool) -> tuple[Tensor, ...]:
    """A miner's tuple; anchors index the N embeddings, the others the M reference rows."""
    if not isinstance(indices, (tuple, list)) or len(indices) not in (3, 4):
        raise TypeError("indices must be a miner's tuple: (anchors, positives, negatives) or "
                        "(anchors_pos, positives, anchors_neg, negatives) of int64 tensors")
    anchor_slots = (0,) if len(indices) == 3 else (0, 2)
    out = tuple(
        _check_index(t, k, n if k in anchor_slots else m, "embeddings" if k in anchor_slots else "reference rows", validate, device)
        for k, t in enumerate(indices)
    )
    if len(out) == 3 and not (out[0].numel() == out[1].numel() == out[2].numel()):
        raise ValueError("the three tensors of a triplet tuple (anchors, positives, negatives) must have equal length")
    if len(out) == 4 and (out[0].numel() != out[1].numel() or out[2].numel() != out[3].numel()):
        raise ValueError("a pair tuple needs len(anchors_pos) == len(positives) and len(anchors_neg) == len(negatives)")
    return out


def pairs(labels: Tensor, ref_labels: Tensor, same: bool, indices: Any, m: int, validate: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(anchors_pos, positives, anchors_neg, negatives)``: all pairs, or the miner's."""
    if indices is None:
        pos, neg = label_masks(labels, ref_labels, same)
        a1, p = torch.nonzero(pos, as_tuple=True)
        a2, n = torch.nonzero(neg, as_tuple=True)
        return a1, p, a2, n
    idx = check_indices(indices, labels.shape[0], m, labels.device, validate)
    if len(idx) == 3:
        return idx[0], idx[1], idx[0], idx[2]
    return idx[0], idx[1], idx[2], idx[3]


def triplets(labels: Tensor, ref_labels: Tensor, same: bool, indices: Any, m: int, validate: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``(anchors, positives, negatives)``: every valid triplet, or the miner's (a pair tuple
    gives every triplet whose two pairs share the anchor)."""
    if indices is None:
        pos, neg = label_masks(labels, ref_labels, same)
        a, p, n = torch.nonzero(pos.unsqueeze(2) & neg.unsqueeze(1), as_tuple=True)
        return a, p, n
    idx = check_indices(indices, labels.shape[0], m, labels.device, validate)
    if len(idx) == 3:
        return idx[0], idx[1], idx[2]
    # every (a, p, n) whose pairs (a, p) and (a, n) are listed, a pair listed k times counting
    # k times; built per anchor on [N, M, M] rather than on (#pos pairs x #neg pairs)
    a1, p, a2, n = idx
    rows = labels.shape[0]
    ones = torch.ones_like(a1)
    wp = torch.zeros(rows, m, dtype=torch.long, device=labels.device).index_put_((a1, p), ones, accumulate=True)
    wn = torch.zeros(rows, m, dtype=torch.long, device=labels.device).index_put_((a2, n), torch.ones_like(a2), accumulate=True)
    a, tp, tn = torch.nonzero((wp > 0).unsqueeze(2) & (wn > 0).unsqueeze(1), as_tuple=True)
    mult = wp[a, tp] * wn[a, tn]
    if bool((mult > 1).any()):
        a, tp, tn = a.repeat_interleave(mult), tp.repeat_interleave(mult), tn.repeat_interleave(mult)
    return a, tp, tn


def pair_masks(labels: Tensor, ref_labels: Tensor, same: bool, indices: Any, m: int, validate: bool) -> tuple[Tensor, Tensor]:
    """[N, M] masks of the positive / negative pairs (a pair listed twice counts once)."""
    if indices is None:
        return label_masks(labels, ref_labels, same)
    a1, p, a2, n = pairs(labels, ref_labels, same, indices, m, validate)
    pos = torch.zeros(labels.shape[0], m, dtype=torch.bool, device=labels.device)
    neg = torch.zeros_like(pos)
    pos[a1, p] = True
    neg[a2, n] = True
    return pos, neg


def _finish(parts: list[Terms], reducer: Reducer, reduction: str, out_dtype: torch.dtype) -> Tensor:
    return reduce_terms(parts, reducer, reduction).to(out_dtype)


def _masked_lse(x: Tensor, mask: Tensor) -> Tensor:
    """Row logsumexp over ``mask``; ``-inf`` (zero gradient) for empty rows."""
    if x.shape[1] == 0:
        return x.sum(1) - math.inf
    xm = x.masked_fill(~mask, torch.finfo(x.dtype).min)
    mx = xm.amax(1, keepdim=True).detach()
    s = (torch.exp(xm - mx) * mask).sum(1)
    lse = torch.log(s.clamp_min(torch.finfo(x.dtype).tiny)) + mx.squeeze(1)
    return torch.where(mask.any(1), lse, torch.full_like(lse, -math.inf))


# ----------------------------------------------------------------------------- the losses
def contrastive(embeddings: Tensor, labels: Tensor, *, ref_emb: Tensor | None, ref_labels: Tensor | None,
                indices: Any, distance: Distance | None, reducer: Reducer | None, pos_margin: float,
                neg_margin: float, average_nonzero: bool, reduction: str, validate: bool) -> Tensor:
    """Parts ``pos_pair``: ``relu(margin(d_ap, m+))``, ``neg_pair``: ``relu(margin(m−, d_an))``."""
    ref, ref_y = reference(embeddings, labels, ref_emb, ref_labels, validate)
    dist = distance or EUCLIDEAN
    mat = matrix(embeddings, ref, dist)
    a1, p, a2, n = pairs(labels, ref_y, ref is None, indices, mat.shape[1], validate)
    lp = F.relu(dist.margin(mat[a1, p], pos_margin))
    ln = F.relu(dist.margin(neg_margin, mat[a2, n]))
    red = reducer or (AvgNonZeroReducer() if average_nonzero else MeanReducer())
    nrows = embeddings.shape[0]
    return _finish([Terms(lp, "pos_pair", a1, nrows), Terms(ln, "neg_pair", a2, nrows)], red, reduction, embeddings.dtype)


def triplet_margin(embeddings: Tensor, labels: Tensor, *, ref_emb: Tensor | None, ref_labels: Tensor | None,
                   indices: Any, distance: Distance | None, reducer: Reducer | None, margin: float,
                   average_nonzero: bool, reduction: str, validate: bool) -> Tensor:
    """``relu(margin(d_ap, d_an) + margin)`` per triplet."""
    ref, ref_y = reference(embeddings, labels, ref_emb, ref_labels, validate)
    dist = distance or EUCLIDEAN
    mat = matrix(embeddings, ref, dist)
    a, p, n = triplets(labels, ref_y, ref is None, indices, mat.shape[1], validate)
    losses = F.relu(dist.margin(mat[a, p], mat[a, n]) + margin)
    red = reducer or (AvgNonZeroReducer() if average_nonzero else MeanReducer())
    return _finish([Terms(losses, "triplet", a, embeddings.shape[0])], red, reduction, embeddings.dtype)


def ms_mine_masks(s: Tensor, pos: Tensor, neg: Tensor, epsilon: float) -> tuple[Tensor, Tensor]:
    """The multi-similarity miner on a similarity matrix [N, M] with candidate masks."""
    hardest_neg = s.masked_fill(~neg, -math.inf).amax(1, keepdim=True) if s.numel() else s.sum(1, keepdim=True)
    easiest_pos = s.masked_fill(~pos, math.inf).amin(1, keepdim=True) if s.numel() else s.sum(1, keepdim=True)
    both = pos.any() & neg.any()
    return pos & (s - epsilon < hardest_neg) & both, neg & (s + epsilon > easiest_pos) & both


def multi_similarity(embeddings: Tensor, labels: Tensor, *, ref_emb: Tensor | None, ref_labels: Tensor | None,
                     indices: Any, distance: Distance | None, reducer: Reducer | None, alpha: float, beta: float,
                     base: float, miner_epsilon: float | None, reduction: str, validate: bool) -> Tensor:
    """Per anchor ``(1/α) log(1 + Σ_P e^{α·margin(s, λ)}) + (1/β) log(1 + Σ_N e^{β·margin(λ, s)})``."""
    ref, ref_y = reference(embeddings, labels, ref_emb, ref_labels, validate)
    dist = distance or COSINE
    mat = matrix(embeddings, ref, dist)
    if miner_epsilon is not None:
        if indices is not None:
            raise ValueError("pass either indices= (from a miner) or miner_epsilon, not both")
        cand_p, cand_n = label_masks(labels, ref_y, ref is None)
        pos, neg = ms_mine_masks(-dist.dissimilarity(mat.detach()), cand_p, cand_n, miner_epsilon)
    else:
        pos, neg = pair_masks(labels, ref_y, ref is None, indices, mat.shape[1], validate)
    zero = torch.zeros((), dtype=mat.dtype, device=mat.device)
    lp = torch.logaddexp(_masked_lse(alpha * dist.margin(mat, base), pos), zero) / alpha
    ln = torch.logaddexp(_masked_lse(beta * dist.margin(base, mat), neg), zero) / beta
    nrows = embeddings.shape[0]
    anchors = torch.arange(nrows, device=mat.device)
    return _finish([Terms(lp + ln, "element", anchors, nrows)], reducer or MeanReducer(), reduction, embeddings.dtype)


def _logits(mat: Tensor, dist: Distance, temperature: float) -> Tensor:
    """Similarity logits ``s/τ`` (a distance is negated, as pytorch-metric-learning does)."""
    return (mat if dist.is_inverted else -mat) / temperature


def supcon(embeddings: Tensor, labels: Tensor, *, ref_emb: Tensor | None, ref_labels: Tensor | None,
           indices: Any, distance: Distance | None, reducer: Reducer | None, temperature: float,
           base_temperature: float, average_over: str, reduction: str, validate: bool) -> Tensor:
    """Per anchor ``−(τ/τ_b) mean_{p∈P_i} [z_ip − log Σ_{k∈P_i∪N_i} e^{z_ik}]``, ``z = s/τ``."""
    ref, ref_y = reference(embeddings, labels, ref_emb, ref_labels, validate)
    dist = distance or COSINE
    z = _logits(matrix(embeddings, ref, dist), dist, temperature)
    pos, neg = pair_masks(labels, ref_y, ref is None, indices, z.shape[1], validate)
    per, _ = nce_matrix(z, pos, pos | neg)  # the InfoNCE family's kernel on these logits
    npos = pos.sum(1)
    per_anchor = (temperature / base_temperature) * per
    nrows = embeddings.shape[0]
    anchors = torch.arange(nrows, device=z.device)
    if reducer is None and average_over == "anchors_with_positives":
        per_anchor = torch.where(pos.any() & neg.any(), per_anchor, torch.zeros_like(per_anchor))
        keep = npos > 0
        if reduction == "mean":
            mean = torch.where(keep, per_anchor, torch.zeros_like(per_anchor)).sum() / keep.sum().clamp_min(1).to(z.dtype)
            return mean.to(embeddings.dtype)
    return _finish([Terms(per_anchor, "element", anchors, nrows)], reducer or MeanReducer(), reduction, embeddings.dtype)


def ntxent(embeddings: Tensor, labels: Tensor, *, ref_emb: Tensor | None, ref_labels: Tensor | None,
           indices: Any, distance: Distance | None, reducer: Reducer | None, temperature: float,
           reduction: str, validate: bool) -> Tensor:
    """Per positive pair ``−log e^{z_ap} / (e^{z_ap} + Σ_{n∈N_a} e^{z_an})``, ``z = s/τ``; a
    negative listed k times counts k times (pytorch-metric-learning)."""
    ref, ref_y = reference(embeddings, labels, ref_emb, ref_labels, validate)
    dist = distance or COSINE
    z = _logits(matrix(embeddings, ref, dist), dist, temperature)
    a1, p, a2, n = pairs(labels, ref_y, ref is None, indices, z.shape[1], validate)
    wn = torch.zeros_like(z).index_put_((a2, n), torch.ones_like(a2, dtype=z.dtype), accumulate=True)
    lse_neg = _masked_lse(z + torch.log(wn.clamp_min(1.0)), wn > 0)  # [N]
    zp = z[a1, p]
    losses = torch.logaddexp(zp, lse_neg[a1]) - zp
    ok = (a1.numel() > 0) and (a2.numel() > 0)
    if not ok:
        losses = losses * 0.0
    return _finish([Terms(losses, "pos_pair", a1, embeddings.shape[0])], reducer or MeanReducer(), reduction, embeddings.dtype)
