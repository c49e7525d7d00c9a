"""Differential tests against pytorch-metric-learning (PML), on batches drawn by Hypothesis.

Every lossatlas id that PML implements is compared in value and in gradient (w.r.t. the raw
embeddings, and w.r.t. the class weights for the classifier heads): ``contrastive``,
``triplet_margin``, ``multi_similarity``, ``supcon``, ``ntxent``,
``threshold_consistent_margin`` (PML's ``ThresholdConsistentMarginLoss``), ``arcface``,
``cosface``, ``normalized_softmax``. The miners of :mod:`lossatlas.miners` are compared with
PML's as sets of index tuples: ``BatchHardMiner``, ``TripletMarginMiner``,
``MultiSimilarityMiner``, and ``BatchSemiHardMiner`` against the one PML miner that picks
semi-hard negatives (``BatchEasyHardMiner(pos_strategy="easy", neg_strategy="semihard")``,
one triplet per anchor: see :func:`test_batch_semihard_miner_restricts_to_pml_easy_semihard`).

Batches (:func:`batches`): float32 and float64, N = 1..10 (N = 1 and 2 included), D = 1..6
(D = 1 puts every row at ±1), rows copied from earlier rows with their label (what a P×K
sampler drawing with replacement gives), label patterns "all same", "all different",
"random" and "random with a one-sample class", and per-row norms 2^k over a wide range (large
and tiny norms; a power-of-two scale leaves the normalised row bit-identical, so scaled
copies are still duplicates). Hyper-parameters are passed explicitly to both libraries (PML's
ArcFace margin in degrees); :func:`test_documented_default_differences` checks the defaults.

Comparisons are made where both libraries compute the same real number up to rounding:
Hypothesis ``assume``s that no pair, triplet or cosine sits within rounding of a threshold of
the definition (a relu kink, an indicator, ArcFace's branch, a miner's margin or argmax tie)
and that two distinct float32 rows are not closer than 1e-2 (lossatlas's Gram-matrix
distance has an absolute rounding floor of ~sqrt(eps) there, PML's ``cdist`` does not).
Ties between bit-identical rows are not ambiguous: both libraries break them the same way
(exact equal distances, or the same bits of one cosine matrix, and the first index wins), so
the miners' index sets are compared exactly.

Where the libraries differ on purpose, or PML's result is an artefact (NaN, saturation, its
single-pair shortcut), a test below asserts the difference explicitly; each has a row in
docs/differences.md ("pytorch-metric-learning").
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import Tensor

import lossatlas.functional as LF
from lossatlas._spec import spec_of
from lossatlas.miners import BatchHardMiner, BatchSemiHardMiner, MultiSimilarityMiner, TripletMarginMiner

pml: Any = pytest.importorskip("pytorch_metric_learning")  # no type information: Any
from pytorch_metric_learning import distances as PD  # noqa: E402
from pytorch_metric_learning import losses as PL  # noqa: E402
from pytorch_metric_learning import miners as PM  # noqa: E402
from pytorch_metric_learning import reducers as PR  # noqa: E402

# Hypothesis may reject a few draws near a threshold; those checks are not slow
SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

F32, F64 = torch.float32, torch.float64
#: distance to a threshold below which the two libraries may round to opposite sides
KINK = {F32: 2e-4, F64: 1e-9}
#: smallest distance between two distinct float32 rows at which the Gram form is accurate
SEPARATION = {F32: 1e-2, F64: 1e-6}
VALUE_TOL = {F32: {"rtol": 2e-4, "atol": 2e-5}, F64: {"rtol": 1e-9, "atol": 1e-11}}
GRAD_TOL = {F32: {"rtol": 2e-3, "atol": 2e-4}, F64: {"rtol": 1e-7, "atol": 1e-9}}


# ------------------------------------------------------------------ batches
@st.composite
def batches(draw: st.DrawFn, max_n: int = 10, max_d: int = 6, min_exp: int | None = None) -> tuple[Tensor, Tensor]:
    """A labelled batch ``(embeddings [N, D], labels [N])`` (see the module docstring).

    Row directions come from a seeded normal draw (so ties are structural, not accidental);
    Hypothesis chooses the shape, the label pattern, which rows are copies and each row's
    power-of-two norm.
    """
    dtype = draw(st.sampled_from([F32, F64]))
    n = draw(st.sampled_from(range(1, max_n + 1)))  # uniform, not weighted towards the bounds
    d = draw(st.sampled_from(range(1, max_d + 1)))
    pattern = draw(st.sampled_from(["random", "random", "singleton", "all_same", "all_different"]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    if pattern == "all_same":
        labels = [0] * n
    elif pattern == "all_different":
        labels = list(range(n))
    else:
        k = draw(st.integers(2, max(2, n // 2 + 1)))
        labels = torch.randint(0, k, (n,), generator=g).tolist()
    base = F.normalize(torch.randn(n, d, generator=g, dtype=F64), dim=1)
    base = base * (0.5 + 1.5 * torch.rand(n, 1, generator=g, dtype=F64))
    if pattern != "all_different":  # row i copies an earlier row with its label (P×K with replacement)
        for i, v in enumerate(draw(st.lists(st.integers(0, 2 * n), min_size=n, max_size=n))):
            if i and v > n:
                j = (v - n - 1) % i
                base[i], labels[i] = base[j], labels[j]
    if pattern == "singleton" and n > 1:
        labels[-1] = max(labels) + 1  # a class with one sample
    lo, hi = (-24, 50) if dtype == F32 else (-36, 200)
    exps = draw(st.lists(st.integers(lo if min_exp is None else max(lo, min_exp), hi), min_size=n, max_size=n))
    scale = torch.tensor([2.0**k for k in exps], dtype=F64).unsqueeze(1)
    e = (base.to(dtype) * scale.to(dtype)).contiguous()
    return e, torch.tensor(labels, dtype=torch.long)


class Geometry:
    """The float64 geometry of a batch's unit rows (what both libraries compute in ``e.dtype``).

    ``same_row[i, j]``: the normalised rows are bit-identical (distance exactly 0 in both
    libraries); ``canon[i]``: the first index whose row is bit-identical with the same label
    (twins: a tie between them is not a near-tie).
    """

    def __init__(self, e: Tensor, y: Tensor) -> None:
        self.dtype = e.dtype
        self.n = e.shape[0]
        self.y = y
        u = F.normalize(e, dim=1)  # both libraries normalise with this call
        self.same_row = (u.unsqueeze(1) == u.unsqueeze(0)).all(-1)
        u64 = F.normalize(e.to(F64), dim=1)
        self.s = (u64 @ u64.T).masked_fill(self.same_row, 1.0)
        self.d = (u64.unsqueeze(1) - u64.unsqueeze(0)).norm(dim=-1).masked_fill(self.same_row, 0.0)
        same_label = y.unsqueeze(0) == y.unsqueeze(1)
        eye = torch.eye(self.n, dtype=torch.bool)
        self.pos = same_label & ~eye
        self.neg = ~same_label
        twin = self.same_row & same_label
        self.canon = [int(torch.nonzero(twin[i])[0]) for i in range(self.n)]
        self.kink = KINK[e.dtype]

    def separated(self) -> bool:
        """Distinct rows are at least SEPARATION apart."""
        return bool((self.same_row | (self.d >= SEPARATION[self.dtype])).all())

    def clear_of(self, values: Tensor, where: Tensor, threshold: float) -> bool:
        """No value (at ``where``, off identical pairs) within rounding of ``threshold``."""
        near = where & ~self.same_row & ((values - threshold).abs() < self.kink)
        return not bool(near.any())


def _tuples(idx: Sequence[Tensor]) -> set[tuple[int, ...]]:
    return set(zip(*[t.tolist() for t in idx]))


def _pairs(idx: Sequence[Tensor]) -> tuple[set[tuple[int, ...]], set[tuple[int, ...]]]:
    return _tuples(idx[:2]), _tuples(idx[2:])


# ------------------------------------------------------------------ value and gradient
def _value_and_grads(fn: Callable[..., Tensor], *inputs: Tensor) -> tuple[Tensor, list[Tensor]]:
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves, allow_unused=True)
    return out.detach(), [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads)]


def _assert_same(ours: tuple[Tensor, list[Tensor]], ref: tuple[Tensor, list[Tensor]], inputs: Sequence[Tensor]) -> None:
    """Values, then gradients in the units of the unit rows (``g_i · ‖x_i‖``: a row with norm
    2^-20 has a gradient 2^20 times larger than the same direction at norm 1)."""
    dtype = inputs[0].dtype
    torch.testing.assert_close(ours[0], ref[0].to(ours[0].dtype), **VALUE_TOL[dtype])
    for x, g_ours, g_ref in zip(inputs, ours[1], ref[1]):
        assert torch.isfinite(g_ours).all()
        norms = x.detach().to(F64).norm(dim=1, keepdim=True)
        a, b = g_ours.to(F64) * norms, g_ref.to(F64) * norms
        tol = GRAD_TOL[dtype]
        torch.testing.assert_close(a, b, rtol=tol["rtol"], atol=tol["atol"] * max(1.0, float(b.abs().max())))


def _check_pair_loss(id_: str, kw: dict[str, Any], ref: Any, e: Tensor, y: Tensor, indices: Sequence[Tensor] | None = None) -> None:
    fn = getattr(LF, id_)
    ours = _value_and_grads(lambda x: fn(x, y, indices=indices, **kw), e)
    theirs = _value_and_grads(lambda x: ref(x, y, indices), e)
    _assert_same(ours, theirs, [e])


# ------------------------------------------------------------------ the pair / triplet losses
def _reducer(mode: str) -> dict[str, Any]:
    return {"reducer": PR.SumReducer()} if mode == "sum" else {"reducer": PR.MeanReducer()} if mode == "mean_all" else {}


def _la_reduction(mode: str) -> dict[str, Any]:
    return {"reduction": "sum"} if mode == "sum" else {"average_nonzero": False} if mode == "mean_all" else {}


def _pair_case(id_: str, data: st.DataObject, geo: Geometry) -> tuple[dict[str, Any], Any]:
    """Explicit hyper-parameters of one id for both libraries, and the conditioning of the batch."""
    u = st.floats
    if id_ == "contrastive":
        pm, nm = data.draw(u(0.0, 0.5)), data.draw(u(0.3, 1.8))
        mode = data.draw(st.sampled_from(["avg_nonzero", "mean_all", "sum"]))
        assume(geo.separated() and geo.clear_of(geo.d, geo.pos, pm) and geo.clear_of(geo.d, geo.neg, nm))
        return {"pos_margin": pm, "neg_margin": nm, **_la_reduction(mode)}, PL.ContrastiveLoss(pos_margin=pm, neg_margin=nm, **_reducer(mode))
    if id_ == "triplet_margin":
        m = data.draw(u(0.01, 1.0))
        mode = data.draw(st.sampled_from(["avg_nonzero", "mean_all", "sum"]))
        valid = geo.pos.unsqueeze(2) & geo.neg.unsqueeze(1)
        t = geo.d.unsqueeze(1) - geo.d.unsqueeze(2)  # [a, p, n] = d_an − d_ap: the kink is at m
        structural = geo.same_row.unsqueeze(0)  # p and n bit-identical: d_an − d_ap = 0 exactly
        assume(geo.separated() and not bool((valid & ~structural & ((t - m).abs() < geo.kink)).any()))
        return {"margin": m, **_la_reduction(mode)}, PL.TripletMarginLoss(margin=m, **_reducer(mode))
    if id_ == "multi_similarity":
        a, b, lam = data.draw(u(0.5, 5.0)), data.draw(u(5.0, 60.0)), data.draw(u(0.0, 1.0))
        red = data.draw(st.sampled_from(["mean", "sum"]))
        return {"alpha": a, "beta": b, "base": lam, "reduction": red}, PL.MultiSimilarityLoss(alpha=a, beta=b, base=lam, **_reducer(red))
    if id_ == "supcon":
        tau = data.draw(u(0.05, 1.0))
        red = data.draw(st.sampled_from(["mean", "sum"]))
        assume(_supcon_anchor_losses_nonzero(geo, tau))
        return ({"temperature": tau, "base_temperature": tau, "reduction": red},
                PL.SupConLoss(temperature=tau, **_reducer(red)))
    if id_ == "ntxent":
        tau = data.draw(u(0.05, 1.0))  # the largest loss is ≤ 2/τ + log N: PML's cap −log(tiny) is not reached
        red = data.draw(st.sampled_from(["mean", "sum"]))
        return {"temperature": tau, "reduction": red}, PL.NTXentLoss(temperature=tau, **_reducer(red))
    assert id_ == "threshold_consistent_margin"
    lp, lm = data.draw(u(0.0, 2.0)), data.draw(u(0.0, 2.0))
    mp, mm = data.draw(u(0.3, 0.95)), data.draw(u(-0.5, 0.8))
    assume(geo.clear_of(geo.s, geo.pos, mp) and geo.clear_of(geo.s, geo.neg, mm))
    return ({"lambda_plus": lp, "lambda_minus": lm, "margin_plus": mp, "margin_minus": mm},
            PL.ThresholdConsistentMarginLoss(lambda_plus=lp, lambda_minus=lm, margin_plus=mp, margin_minus=mm))


def _supcon_anchor_losses_nonzero(geo: Geometry, tau: float, pos: Tensor | None = None, neg: Tensor | None = None) -> bool:
    """Every anchor with a positive has a float64 SupCon loss that does not round to 0 in the
    batch dtype (PML's AvgNonZeroReducer drops anchors whose loss is exactly 0:
    :func:`test_supcon_pml_drops_anchors_whose_loss_rounds_to_zero`). ``pos`` / ``neg``: the
    pairs (default: all pairs of the batch)."""
    pos = geo.pos if pos is None else pos
    neg = geo.neg if neg is None else neg
    z = geo.s / tau
    lse = torch.logsumexp(z.masked_fill(~(pos | neg), -math.inf), dim=1, keepdim=True)
    per = -(torch.where(pos, z - lse, torch.zeros_like(z))).sum(1) / pos.sum(1).clamp_min(1)
    return not bool((pos.any(1) & (per < 1e3 * torch.finfo(geo.dtype).eps)).any())


PAIR_IDS = ["contrastive", "triplet_margin", "multi_similarity", "supcon", "ntxent", "threshold_consistent_margin"]


@pytest.mark.parametrize("id_", PAIR_IDS)
@SETTINGS
@given(data=st.data())
def test_pair_losses_match_pml(id_: str, data: st.DataObject) -> None:
    # PML's TCM takes F.cosine_similarity (norms clamped at 1e-8): rows of norm ≥ 2^-20 here
    e, y = data.draw(batches(min_exp=-20 if id_ == "threshold_consistent_margin" else None))
    geo = Geometry(e, y)
    kw, ref = _pair_case(id_, data, geo)
    _check_pair_loss(id_, kw, ref, e, y)


@pytest.mark.parametrize("id_", PAIR_IDS)
@SETTINGS
@given(data=st.data())
def test_pair_losses_match_pml_on_mined_indices(id_: str, data: st.DataObject) -> None:
    """A miner's tuple (triplet or pair form, repeats included) given to both libraries."""
    e, y = data.draw(batches(min_exp=-20 if id_ == "threshold_consistent_margin" else None))
    geo = Geometry(e, y)
    kw, ref = _pair_case(id_, data, geo)
    miner = data.draw(st.sampled_from(["batch_hard", "semihard", "triplet_all", "multi_similarity"]))
    idx = {
        "batch_hard": lambda: BatchHardMiner()(e, y),
        "semihard": lambda: BatchSemiHardMiner()(e, y),
        "triplet_all": lambda: TripletMarginMiner(margin=0.5, type_of_triplets="all")(e, y),
        "multi_similarity": lambda: MultiSimilarityMiner(epsilon=0.1)(e, y),
    }[miner]()
    pairs = idx if len(idx) == 4 else (idx[0], idx[1], idx[0], idx[2])
    if id_ in _GENERIC_PAIR_IDS and all(len(t) <= 1 for t in pairs):
        # PML's GenericPairLoss returns 0 when every list of its pair tuple holds ≤ 1 index
        # (test_pml_generic_pair_losses_ignore_a_single_mined_pair); lossatlas computes the pair
        assert float(ref(e, y, idx)) == 0.0
        return
    if id_ == "supcon" and kw.get("reduction", "mean") == "mean":
        # a mined anchor with one positive and no negative has loss 0 exactly, which PML's
        # AvgNonZeroReducer drops (test_supcon_pml_drops_mined_anchors_with_a_positive_and_no_negative)
        pos, neg = torch.zeros(geo.n, geo.n, dtype=torch.bool), torch.zeros(geo.n, geo.n, dtype=torch.bool)
        pos[pairs[0], pairs[1]] = True
        neg[pairs[2], pairs[3]] = True
        assume(_supcon_anchor_losses_nonzero(geo, kw["temperature"], pos, neg))
    _check_pair_loss(id_, kw, ref, e, y, idx)


_GENERIC_PAIR_IDS = ("contrastive", "multi_similarity", "supcon", "ntxent")


@SETTINGS
@given(batch=batches(), epsilon=st.floats(0.0, 0.5), data=st.data())
def test_multi_similarity_with_miner_epsilon_matches_pml_loss_and_miner(batch: tuple[Tensor, Tensor], epsilon: float,
                                                                        data: st.DataObject) -> None:
    e, y = batch
    kw, ref = _pair_case("multi_similarity", data, Geometry(e, y))
    mined = PM.MultiSimilarityMiner(epsilon=epsilon)(e, y)
    if all(len(t) <= 1 for t in mined):  # PML's single-pair shortcut (see the mined-indices test)
        assert float(ref(e, y, mined)) == 0.0
        return
    ours = _value_and_grads(lambda x: LF.multi_similarity(x, y, miner_epsilon=epsilon, **kw), e)
    theirs = _value_and_grads(lambda x: ref(x, y, PM.MultiSimilarityMiner(epsilon=epsilon)(x, y)), e)
    _assert_same(ours, theirs, [e])


# ------------------------------------------------------------------ the classifier heads
@st.composite
def head_batches(draw: st.DrawFn) -> tuple[Tensor, Tensor, Tensor]:
    e, y = draw(batches())
    c = draw(st.integers(1, 6))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    exps = draw(st.lists(st.integers(-20, 20), min_size=c, max_size=c))
    w = torch.randn(c, e.shape[1], generator=g, dtype=F64) * torch.tensor([2.0**k for k in exps], dtype=F64).unsqueeze(1)
    return e, y % c, w.to(e.dtype)


def _pml_head(cls: Any, w: Tensor, **kw: Any) -> Any:
    head = cls(num_classes=w.shape[0], embedding_size=w.shape[1], **kw).to(w.dtype)
    with torch.no_grad():
        head.W.copy_(w.T)  # PML stores [D, C]
    return head


def _target_cosines(e: Tensor, y: Tensor, w: Tensor) -> Tensor:
    cos = F.normalize(e.to(F64), dim=1) @ F.normalize(w.to(F64), dim=1).T
    return cos.gather(1, y.unsqueeze(1)).squeeze(1)


@pytest.mark.parametrize("id_", ["arcface", "cosface", "normalized_softmax"])
@SETTINGS
@given(batch=head_batches(), data=st.data())
def test_heads_match_pml(id_: str, batch: tuple[Tensor, Tensor, Tensor], data: st.DataObject) -> None:
    e, y, w = batch
    red = data.draw(st.sampled_from(["mean", "sum"]))
    if id_ == "arcface":
        degrees, scale = data.draw(st.floats(0.0, 90.0)), data.draw(st.floats(1.0, 64.0))
        m = float(np.radians(degrees))  # PML's margin is in degrees, lossatlas's in radians
        ct = _target_cosines(e, y, w)
        kink = KINK[e.dtype]
        # ArcFace's branch cos θ ≥ −cos m, and acos's infinite slope at |cos θ| = 1 (PML: NaN there)
        assume(bool(((ct + math.cos(m)).abs() >= kink).all() and (1.0 - ct * ct >= (1e-3 if e.dtype == F32 else 1e-6)).all()))
        kw: dict[str, Any] = {"margin": m, "scale": scale}
        ref = _pml_head(PL.ArcFaceLoss, w, margin=degrees, scale=scale, **_reducer(red))
    elif id_ == "cosface":
        m, scale = data.draw(st.floats(0.0, 0.6)), data.draw(st.floats(1.0, 64.0))
        kw = {"margin": m, "scale": scale}
        ref = _pml_head(PL.CosFaceLoss, w, margin=m, scale=scale, **_reducer(red))
    else:
        tau = data.draw(st.floats(0.02, 1.0))
        kw = {"temperature": tau}
        ref = _pml_head(PL.NormalizedSoftmaxLoss, w, temperature=tau, **_reducer(red))
    fn = getattr(LF, id_)
    ours = _value_and_grads(lambda x, v: fn(x, y, v, reduction=red, **kw), e, w)
    x = e.detach().clone().requires_grad_()
    out = ref(x, y)
    g_x, g_w = torch.autograd.grad(out, [x, ref.W])
    _assert_same(ours, (out.detach(), [g_x, g_w.T]), [e, w])


# ------------------------------------------------------------------ the miners
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@SETTINGS
@given(batch=batches())
def test_batch_hard_miner_matches_pml(distance: str, batch: tuple[Tensor, Tensor]) -> None:
    e, y = batch
    geo = Geometry(e, y)
    dist = geo.d if distance == "euclidean" else -geo.s
    _assume_unique_extreme(geo, dist, geo.pos, largest=True)
    _assume_unique_extreme(geo, dist, geo.neg, largest=False)
    ours = BatchHardMiner(distance=distance)(e, y)
    theirs = PM.BatchHardMiner(distance=_pml_distance(distance))(e, y)
    # ties between identical rows are exact in both libraries (first index wins)
    assert _tuples(ours) == _tuples(theirs)


def _pml_distance(distance: str) -> Any:
    return PD.LpDistance(p=2) if distance == "euclidean" else PD.CosineSimilarity()


def _assume_unique_extreme(geo: Geometry, dist: Tensor, mask: Tensor, largest: bool) -> None:
    """Each row's extreme of ``dist`` over ``mask`` is unique up to bit-identical twins."""
    for a in range(geo.n):
        cand = torch.nonzero(mask[a]).flatten().tolist()
        if not cand:
            continue
        vals = dist[a, cand]
        best = cand[int(vals.argmax() if largest else vals.argmin())]
        for j in cand:
            if geo.canon[j] != geo.canon[best]:
                assume(float((dist[a, j] - dist[a, best]).abs()) >= geo.kink)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("kind", ["all", "hard", "semihard", "easy"])
@SETTINGS
@given(batch=batches(), margin=st.floats(0.0, 1.0))
def test_triplet_margin_miner_matches_pml(distance: str, kind: str, batch: tuple[Tensor, Tensor], margin: float) -> None:
    e, y = batch
    geo = Geometry(e, y)
    # m_t = d_an − d_ap (euclidean) or s_ap − s_an (cosine); kinks at 0 and at the margin
    t = geo.d.unsqueeze(1) - geo.d.unsqueeze(2) if distance == "euclidean" else geo.s.unsqueeze(2) - geo.s.unsqueeze(1)
    valid = geo.pos.unsqueeze(2) & geo.neg.unsqueeze(1) & ~geo.same_row.unsqueeze(0)
    assume(not bool((valid & (((t - margin).abs() < geo.kink) | (t.abs() < geo.kink))).any()))
    ours = TripletMarginMiner(margin=margin, type_of_triplets=kind, distance=distance)(e, y)
    theirs = PM.TripletMarginMiner(margin=margin, type_of_triplets=kind, distance=_pml_distance(distance))(e, y)
    assert _tuples(ours) == _tuples(theirs)


@SETTINGS
@given(batch=batches(), epsilon=st.floats(0.0, 0.5))
def test_multi_similarity_miner_matches_pml(batch: tuple[Tensor, Tensor], epsilon: float) -> None:
    # both libraries compare the same cosine matrix (one F.normalize, one matmul): no assumption
    e, y = batch
    ours = MultiSimilarityMiner(epsilon=epsilon)(e, y)
    theirs = PM.MultiSimilarityMiner(epsilon=epsilon)(e, y)
    assert _pairs(ours) == _pairs(theirs)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@SETTINGS
@given(batch=batches())
def test_batch_semihard_miner_restricts_to_pml_easy_semihard(distance: str, batch: tuple[Tensor, Tensor]) -> None:
    """PML has no per-positive-pair semi-hard miner; its ``BatchEasyHardMiner("easy",
    "semihard")`` gives, per anchor, the closest positive p* and the closest negative farther
    than p* (anchors without one are dropped). lossatlas's ``BatchSemiHardMiner`` gives a
    triplet for every positive pair, with TF-Addons' fallback (the farthest negative) when no
    negative is farther: its triplets at (a, p*) that are semi-hard are PML's; the others are
    fallbacks at exactly the anchors PML drops."""
    e, y = batch
    geo = Geometry(e, y)
    dist = geo.d if distance == "euclidean" else -geo.s
    # the order both libraries see: exact for euclidean (identical rows tie exactly in both),
    # the shared float cosine matrix for cosine (one F.normalize, one matmul: the same bits)
    u = F.normalize(e, dim=1)
    seen = geo.d if distance == "euclidean" else -(u @ u.T).to(F64)
    _assume_unique_extreme(geo, dist, geo.pos, largest=False)
    ok = geo.pos.any(1) & geo.neg.any(1)
    p_star = {a: int(seen[a].masked_fill(~geo.pos[a], math.inf).argmin()) for a in range(geo.n) if ok[a]}
    for a, p in p_star.items():  # the semi-hard candidates of (a, p*) are clear of d_ap* and of each other
        assume(not bool((geo.neg[a] & ~geo.same_row[p] & ((dist[a] - dist[a, p]).abs() < geo.kink)).any()))
        row = torch.zeros_like(geo.pos)
        row[a] = geo.neg[a] & (seen[a] > seen[a, p])
        _assume_unique_extreme(geo, dist, row, largest=False)
    ours = _tuples(BatchSemiHardMiner(distance=distance)(e, y))
    pml_miner = PM.BatchEasyHardMiner(pos_strategy="easy", neg_strategy="semihard", distance=_pml_distance(distance))
    a_t, p_t, _, n_t = pml_miner(e, y)
    theirs = _tuples((a_t, p_t, n_t))
    at_p_star = {t for t in ours if p_star.get(t[0]) == t[1]}
    assert {t[0] for t in at_p_star} == set(p_star)
    semihard = {t for t in at_p_star if float(seen[t[0], t[2]]) > float(seen[t[0], t[1]])}
    assert semihard == theirs
    assert {t[0] for t in at_p_star - semihard} == set(p_star) - {t[0] for t in theirs}


# ------------------------------------------------------------------ exact ties between identical rows
def _tied_batch(seed: int) -> tuple[Tensor, Tensor]:
    """Anchor 1 (class 0); rows 0, 2 (its positives) and 4 (class 1) are one point, so every
    triplet (1, p, 4) has d_an − d_ap = 0 exactly; row 3 (class 2) is antipodal to the anchor.
    A 5-row float64 Gram product rounds its last column differently from the others: a
    distance read from it alone puts row 4 an ulp nearer (seed 12) or farther (seed 0)."""
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(5, 5, generator=g, dtype=F64)
    e[2], e[4], e[3] = e[0], e[0], -e[1]
    return e, torch.tensor([0, 0, 0, 2, 1])


TIE_SEEDS = [0, 12]


@pytest.mark.parametrize("seed", TIE_SEEDS)
def test_identical_rows_have_bit_identical_distances(seed: int) -> None:
    from lossatlas.functional.metric import _unit_distances

    e, _ = _tied_batch(seed)
    u = F.normalize(e, dim=1)
    d = _unit_distances(u)
    for j in (2, 4):
        assert torch.equal(d[:, j], d[:, 0]) and torch.equal(d[j], d[0])
    exact = torch.cdist(u, u, compute_mode="donot_use_mm_for_euclid_dist")
    torch.testing.assert_close(d, exact, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", TIE_SEEDS)
@pytest.mark.parametrize("kind", ["all", "hard", "semihard", "easy"])
def test_triplet_margin_miner_keeps_exact_ties_of_identical_rows(kind: str, seed: int) -> None:
    # m_t = 0 exactly for (1, p, 4): "all" and "hard" keep it (m_t ≤ 0), "semihard" and "easy" drop it
    e, y = _tied_batch(seed)
    ours = _tuples(TripletMarginMiner(margin=0.0, type_of_triplets=kind)(e, y))
    assert ours == _tuples(PM.TripletMarginMiner(margin=0.0, type_of_triplets=kind)(e, y))
    assert ({(1, 0, 4), (1, 2, 4)} <= ours) == (kind in ("all", "hard"))
    assert not ({(1, 0, 4), (1, 2, 4)} & ours) == (kind in ("semihard", "easy"))


@pytest.mark.parametrize("seed", TIE_SEEDS)
def test_semihard_miner_and_zero_margin_triplet_loss_keep_exact_ties(seed: int) -> None:
    e, y = _tied_batch(seed)
    # for (1, p), negative 4 is exactly as far as p: not semi-hard; the antipodal 3 is
    a, p, n = BatchSemiHardMiner()(e, y)
    assert {(i, j, k) for i, j, k in zip(a.tolist(), p.tolist(), n.tolist()) if i == 1} == {(1, 0, 3), (1, 2, 3)}
    # margin 0: relu(d_ap − d_an) = 0 exactly for (1, p, 4) (AvgNonZero does not count them)
    ours = _value_and_grads(lambda x: LF.triplet_margin(x, y, margin=0.0), e)
    theirs = _value_and_grads(lambda x: PL.TripletMarginLoss(margin=0.0)(x, y), e)
    _assert_same(ours, theirs, [e])


# ------------------------------------------------------------------ documented differences
def _defaults(cls: Any) -> dict[str, Any]:
    return {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items() if p.default is not inspect.Parameter.empty}


def test_documented_default_differences() -> None:
    """lossatlas's defaults follow the papers / official code where PML's differ: triplet
    margin (FaceNet 0.2, PML 0.05), SupCon temperature (SupContrast τ = τ_b = 0.07, PML
    τ = 0.1 without τ_b), ArcFace margin (0.5 rad, PML 28.6 degrees = 0.49916 rad). Every other
    shared default is equal."""
    ours = {id_: spec_of(getattr(LF, id_)).defaults for id_ in [*PAIR_IDS, "arcface", "cosface", "normalized_softmax"]}
    assert _defaults(PL.TripletMarginLoss)["margin"] == 0.05 and ours["triplet_margin"]["margin"] == 0.2
    assert _defaults(PL.SupConLoss)["temperature"] == 0.1
    assert ours["supcon"]["temperature"] == ours["supcon"]["base_temperature"] == 0.07
    assert _defaults(PL.ArcFaceLoss)["margin"] == 28.6 and ours["arcface"]["margin"] == 0.5
    assert math.radians(28.6) != 0.5
    same = {
        "contrastive": (PL.ContrastiveLoss, {"pos_margin": "pos_margin", "neg_margin": "neg_margin"}),
        "multi_similarity": (PL.MultiSimilarityLoss, {"alpha": "alpha", "beta": "beta", "base": "base"}),
        "ntxent": (PL.NTXentLoss, {"temperature": "temperature"}),
        "threshold_consistent_margin": (PL.ThresholdConsistentMarginLoss,
                                        {k: k for k in ("lambda_plus", "lambda_minus", "margin_plus", "margin_minus")}),
        "cosface": (PL.CosFaceLoss, {"margin": "margin", "scale": "scale"}),
        "normalized_softmax": (PL.NormalizedSoftmaxLoss, {"temperature": "temperature"}),
        "arcface": (PL.ArcFaceLoss, {"scale": "scale"}),
    }
    for id_, (cls, names) in same.items():
        for ours_name, theirs_name in names.items():
            assert ours[id_][ours_name] == _defaults(cls)[theirs_name], (id_, ours_name)
    assert _defaults(PM.TripletMarginMiner) == {"margin": 0.2, "type_of_triplets": "all"}
    assert _defaults(TripletMarginMiner)["margin"] == 0.2 and _defaults(TripletMarginMiner)["type_of_triplets"] == "all"
    assert _defaults(PM.MultiSimilarityMiner)["epsilon"] == _defaults(MultiSimilarityMiner)["epsilon"] == 0.1


def test_default_differences_change_the_value_and_pml_defaults_reproduce_pml() -> None:
    g = torch.Generator().manual_seed(5)
    e, y = torch.randn(12, 6, generator=g, dtype=F64), torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    w = torch.randn(4, 6, generator=g, dtype=F64)
    cases = [
        (lambda **kw: LF.triplet_margin(e, y, **kw), PL.TripletMarginLoss()(e, y), {"margin": 0.05}),
        (lambda **kw: LF.supcon(e, y, **kw), PL.SupConLoss()(e, y), {"temperature": 0.1, "base_temperature": 0.1}),
        (lambda **kw: LF.arcface(e, y, w, **kw), _pml_head(PL.ArcFaceLoss, w)(e, y).detach(), {"margin": float(np.radians(28.6))}),
    ]
    for ours, theirs, pml_defaults in cases:
        assert abs(float(ours()) - float(theirs)) > 1e-4
        torch.testing.assert_close(ours(**pml_defaults), theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("id_", _GENERIC_PAIR_IDS)
def test_pml_generic_pair_losses_ignore_a_single_mined_pair(id_: str) -> None:
    """PML's GenericPairLoss returns 0 when each list of the pair tuple holds ≤ 1 index (one
    mined triplet, or one positive and one negative pair); lossatlas computes that pair's loss."""
    g = torch.Generator().manual_seed(7)
    e, y = torch.randn(4, 5, generator=g, dtype=F64), torch.tensor([0, 0, 1, 2])
    idx = (torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    u = F.normalize(e, dim=1)
    s_ap, s_an = float(u[0] @ u[1]), float(u[0] @ u[2])
    d_ap, d_an = math.sqrt(2 - 2 * s_ap), math.sqrt(2 - 2 * s_an)
    tau = 0.1
    one_pair_ce = -math.log(math.exp(s_ap / tau) / (math.exp(s_ap / tau) + math.exp(s_an / tau)))
    expected, ref, kw = {
        "contrastive": (max(d_ap - 0.0, 0.0) + max(1.0 - d_an, 0.0), PL.ContrastiveLoss(), {}),
        "multi_similarity": ((math.log1p(math.exp(-2 * (s_ap - 0.5))) / 2 + math.log1p(math.exp(50 * (s_an - 0.5))) / 50) / 4,
                             PL.MultiSimilarityLoss(), {}),
        "supcon": (one_pair_ce, PL.SupConLoss(temperature=tau), {"temperature": tau, "base_temperature": tau}),
        "ntxent": (one_pair_ce, PL.NTXentLoss(temperature=tau), {"temperature": tau}),
    }[id_]
    assert float(ref(e, y, idx)) == 0.0
    assert math.isclose(float(getattr(LF, id_)(e, y, indices=idx, **kw)), expected, rel_tol=1e-12)


def test_supcon_pml_drops_anchors_whose_loss_rounds_to_zero() -> None:
    """PML averages SupCon with AvgNonZeroReducer: an anchor whose loss rounds to exactly 0
    (float32: its positive beats every negative by > 16.6 τ) leaves PML's mean; lossatlas
    averages over the anchors with a positive, as its documentation says."""
    e = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 1.0], [-1.0, -1.0]])
    y = torch.tensor([0, 0, 1, 1])
    tau = 0.07
    u = F.normalize(e.to(F64), dim=1)
    z = u @ u.T / tau
    per = []
    for a in range(4):
        p = [j for j in range(4) if j != a and y[j] == y[a]][0]
        per.append(-(z[a, p] - torch.logsumexp(z[a, [j for j in range(4) if j != a]], 0)))
    ref = torch.stack(per)
    assert float(ref[:2].max()) < 1e-9 < float(ref[2:].min())  # anchors 0, 1: loss below float32's resolution
    ours = LF.supcon(e, y, temperature=tau, base_temperature=tau)
    theirs = PL.SupConLoss(temperature=tau)(e, y)
    torch.testing.assert_close(ours.double(), ref.mean(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(theirs.double(), ref[2:].mean(), rtol=1e-5, atol=1e-7)


def test_supcon_pml_drops_mined_anchors_with_a_positive_and_no_negative() -> None:
    """With mined pairs, an anchor with one positive and no negative has SupCon loss
    −log(e^{z_p}/e^{z_p}) = 0 exactly: PML's AvgNonZeroReducer drops it, lossatlas counts it
    among the anchors with a positive."""
    g = torch.Generator().manual_seed(4)
    e, y = torch.randn(6, 3, generator=g, dtype=F64), torch.tensor([0, 0, 1, 1, 2, 2])
    # anchor 0: positive 1, no negative; anchor 2: positive 3, negatives 0 and 4
    idx = (torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([2, 2]), torch.tensor([0, 4]))
    tau = 0.2
    u = F.normalize(e, dim=1)
    z = u @ u.T / tau
    loss_2 = float(-(z[2, 3] - torch.logsumexp(z[2, [3, 0, 4]], 0)))
    ours = LF.supcon(e, y, indices=idx, temperature=tau, base_temperature=tau)
    theirs = PL.SupConLoss(temperature=tau)(e, y, idx)
    assert math.isclose(float(ours), (0.0 + loss_2) / 2, rel_tol=1e-12)
    assert math.isclose(float(theirs), loss_2, rel_tol=1e-12)


def test_ntxent_pml_saturates_at_minus_log_tiny() -> None:
    """PML's NT-Xent takes log(num/den + tiny): a pair whose probability underflows costs
    −log(tiny) (87.34 in float32) with a vanishing gradient; lossatlas's log-sum-exp form is
    exact (gradient ±1/(2τ) per coordinate here)."""
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1])
    tau = 0.01
    # every positive pair (s = 0) has a negative at s = 1: l = −log(e^0 / (e^0 + e^{1/τ})) = log1p(e^{100})
    exact = 100.0 + math.log1p(math.exp(-100.0))
    ours_v, (ours_g,) = _value_and_grads(lambda x: LF.ntxent(x, y, temperature=tau), e)
    theirs_v, (theirs_g,) = _value_and_grads(lambda x: PL.NTXentLoss(temperature=tau)(x, y), e)
    assert math.isclose(float(ours_v), exact, rel_tol=1e-6)
    assert math.isclose(float(theirs_v), -math.log(torch.finfo(F32).tiny), rel_tol=1e-6)
    assert float(ours_g.abs().max()) > 10.0 and float(theirs_g.abs().max()) < 1e-3


def test_arcface_at_a_target_angle_of_zero() -> None:
    """An embedding parallel to its class centre (θ = 0): PML's acos has an infinite slope
    there and its gradient is NaN; lossatlas gives the same value with a finite gradient."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(4, 5, generator=g, dtype=F64)
    e = torch.cat([3.0 * w[:2], torch.randn(2, 5, generator=g, dtype=F64)])
    y = torch.tensor([0, 1, 2, 3])
    m, s = 0.5, 4.0
    cos = F.normalize(e, dim=1) @ F.normalize(w, dim=1).T
    assert float((cos.diagonal()[:2] - 1.0).abs().max()) < 1e-15
    theta = torch.acos(cos.gather(1, y.unsqueeze(1)).clamp(-1, 1))
    target = torch.where(theta <= math.pi - m, torch.cos(theta + m), torch.cos(theta) - m * math.sin(m))
    expected = F.cross_entropy(s * cos.scatter(1, y.unsqueeze(1), target), y)
    ours_v, (g_e, g_w) = _value_and_grads(lambda x, v: LF.arcface(x, y, v, margin=m, scale=s), e, w)
    head = _pml_head(PL.ArcFaceLoss, w, margin=math.degrees(m), scale=s)
    x = e.clone().requires_grad_()
    theirs_v = head(x, y)
    (theirs_g,) = torch.autograd.grad(theirs_v, x)
    torch.testing.assert_close(ours_v, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(theirs_v.detach(), expected, rtol=1e-12, atol=1e-14)
    assert torch.isfinite(g_e).all() and torch.isfinite(g_w).all()
    assert not torch.isfinite(theirs_g[:2]).all()


def test_tcm_pml_shrinks_the_cosines_of_rows_below_1e_8() -> None:
    """PML's TCM takes F.cosine_similarity, which clamps each norm at 1e-8: rows shorter than
    that get shrunken cosines. lossatlas normalises with F.normalize (eps 1e-12) like its other
    losses: the value does not depend on the rows' norms down to 1e-12."""
    g = torch.Generator().manual_seed(2)
    e, y = torch.randn(8, 4, generator=g, dtype=F64), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    full = PL.ThresholdConsistentMarginLoss()(e, y)
    torch.testing.assert_close(LF.threshold_consistent_margin(e, y), full, rtol=1e-12, atol=1e-14)
    tiny = e * 1e-10
    torch.testing.assert_close(LF.threshold_consistent_margin(tiny, y), full, rtol=1e-12, atol=1e-14)
    assert abs(float(PL.ThresholdConsistentMarginLoss()(tiny, y)) - float(full)) > 1e-2


def test_rows_that_f_normalize_cannot_normalise() -> None:
    """A row with ‖e‖ < 1e-12 (F.normalize's eps; e.g. a zero row) stays short after the
    normalisation both libraries apply. lossatlas's distance is the unit-sphere one,
    sqrt(2 − 2 u_i·u_j): a zero row is at sqrt(2) from every unit row (the cosine-0 point, as
    the cosine losses see it); PML's cdist gives the length of the other row, 1."""
    e = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=F64)
    y = torch.tensor([0, 0, 1, 1])
    ours = LF.contrastive(e, y, pos_margin=0.0, neg_margin=2.0, reduction="sum")
    theirs = PL.ContrastiveLoss(pos_margin=0.0, neg_margin=2.0, reducer=PR.SumReducer())(e, y)
    # positive pairs (0, 1), (2, 3); negative pairs (0, 2), (0, 3), (1, 2), (1, 3); both orders
    d = {(0, 2): math.sqrt(2.0), (0, 3): math.sqrt(2 - 2 * 0.6), (2, 3): math.sqrt(2 - 2 * 0.8)}
    pos = d[(2, 3)]
    neg = (2 - d[(0, 2)]) + (2 - d[(0, 3)])
    assert math.isclose(float(ours), 2 * (pos + math.sqrt(2.0) + neg + 2 * (2 - math.sqrt(2.0))), rel_tol=1e-12)
    assert math.isclose(float(theirs), 2 * (pos + 1.0 + neg + 2 * (2 - 1.0)), rel_tol=1e-12)


def test_pml_distances_of_identical_rows_above_25_rows_are_not_zero() -> None:
    """torch.cdist (PML's LpDistance) switches to a matrix product for more than 25 rows: in
    float32 identical rows can be ~5e-4 apart there and count as non-zero positive terms.
    lossatlas keeps them at exactly 0 at every batch size; its value is the float64 one."""
    y = torch.arange(32) % 16
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        e = torch.randn(32, 8, generator=g)
        e[16:] = e[:16]
        d_pml = PD.LpDistance()(e)
        if bool((d_pml[torch.arange(16), torch.arange(16) + 16] > 0).any()):
            break
    else:
        pytest.skip("this torch build's cdist gives identical rows distance 0 in these batches")
    u = F.normalize(e, dim=1).to(F64)
    d = (u.unsqueeze(1) - u.unsqueeze(0)).norm(dim=-1)  # exact differences: identical rows at 0
    pos, neg = y.unsqueeze(0) == y.unsqueeze(1), y.unsqueeze(0) != y.unsqueeze(1)
    pos &= ~torch.eye(32, dtype=torch.bool)
    lp, ln = d[pos], (1.0 - d[neg]).clamp_min(0)
    ref = (lp[lp > 0].mean() if (lp > 0).any() else 0.0) + ln[ln > 0].mean()
    ours = LF.contrastive(e, y)
    theirs = PL.ContrastiveLoss()(e, y)
    assert abs(float(ours) - float(ref)) < 1e-6 < 1e-5 < abs(float(theirs) - float(ref))


def test_float32_distances_of_nearly_identical_rows_have_a_rounding_floor() -> None:
    """Two distinct float32 unit rows one rounding step apart: the exact distance is ~1e-7;
    lossatlas's sqrt(2 − 2 u_i·u_j) resolves distances only down to ~sqrt(eps) ≈ 5e-4
    (PML's direct cdist, up to 25 rows, resolves them). The Hypothesis tests keep distinct
    float32 rows ≥ 1e-2 apart, where the relative error is below 1e-4."""
    from lossatlas.functional.metric import _unit_distances

    for seed in range(100):
        e = torch.randn(2, 4, generator=torch.Generator().manual_seed(seed))
        e[1] = 3.0 * e[0]  # the same direction; F.normalize may round the two rows apart
        u = F.normalize(e, dim=1)
        if not torch.equal(u[0], u[1]):
            break
    exact = float((u[0].double() - u[1].double()).norm())
    ours = float(_unit_distances(u)[0, 1])
    assert exact < 1e-6 and abs(ours - exact) <= 8 * math.sqrt(torch.finfo(F32).eps)
    assert abs(float(PD.LpDistance()(e)[0, 1]) - exact) < 1e-7
