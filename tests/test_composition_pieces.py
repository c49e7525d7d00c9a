"""Composable pieces of the embedding losses (issue 22): distances, reducers, reference sets,
and their products against pytorch-metric-learning.

Closed forms are written here from the definitions (pytorch-metric-learning's documented
semantics); the PML comparisons run its installed package (the ``test`` extra) on the same
float64 inputs and compare values and gradients.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
from lossatlas import distances as D
from lossatlas import miners as M
from lossatlas import reducers as R

LF = la.functional


def _batch(n: int = 12, d: int = 5, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.arange(n) % classes
    return e, y


# ----------------------------------------------------------------------------- distances
def test_distances_match_their_definitions() -> None:
    g = torch.Generator().manual_seed(1)
    x, r = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    ux, ur = x / x.norm(dim=1, keepdim=True), r / r.norm(dim=1, keepdim=True)
    brute = torch.tensor([[float((a - b).norm()) for b in ur] for a in ux], dtype=torch.float64)
    torch.testing.assert_close(D.LpDistance()(x, r), brute)
    l1x, l1r = x / x.abs().sum(1, keepdim=True), r / r.abs().sum(1, keepdim=True)
    brute1 = torch.tensor([[float((a - b).abs().sum()) for b in l1r] for a in l1x], dtype=torch.float64)
    torch.testing.assert_close(D.LpDistance(p=1)(x, r), brute1)
    raw = torch.tensor([[float((a - b).norm()) ** 2 for b in r] for a in x], dtype=torch.float64)
    torch.testing.assert_close(D.LpDistance(normalize_embeddings=False, power=2)(x, r), raw)
    torch.testing.assert_close(D.CosineSimilarity()(x, r), ux @ ur.T)
    torch.testing.assert_close(D.DotProductSimilarity(normalize_embeddings=False)(x, r), x @ r.T)
    torch.testing.assert_close(D.DotProductSimilarity()(x, r), ux @ ur.T)  # PML's default normalises
    # one batch: the losses' own distance (exact zero on the diagonal)
    assert D.LpDistance()(x).diagonal().abs().max().item() == 0.0


def test_distance_orientation_and_margin() -> None:
    assert D.CosineSimilarity.is_inverted and D.DotProductSimilarity.is_inverted and not D.LpDistance.is_inverted
    x, y = torch.tensor(0.3), torch.tensor(0.7)
    assert D.LpDistance().margin(x, y).item() == pytest.approx(-0.4)  # x − y
    assert D.CosineSimilarity().margin(x, y).item() == pytest.approx(0.4)  # y − x
    assert torch.equal(D.CosineSimilarity().dissimilarity(y), -y)


def test_distance_bad_inputs_name_the_argument() -> None:
    with pytest.raises(ValueError, match="ref"):
        D.CosineSimilarity()(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="query"):
        D.LpDistance()(torch.randn(3))
    with pytest.raises(ValueError, match="p"):
        D.LpDistance(p=0)
    with pytest.raises(TypeError, match="normalize_embeddings"):
        D.LpDistance(normalize_embeddings=1)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- reducers
def _terms(values: list[float], kind: str = "pos_pair", anchors: list[int] | None = None, n: int = 3) -> R.Terms:
    x = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    a = torch.tensor(anchors if anchors is not None else [0] * len(values), dtype=torch.long)
    return R.Terms(x, kind, a, n)


def test_reducers_closed_forms() -> None:
    t = _terms([0.0, 1.0, 2.0, 5.0], anchors=[0, 0, 1, 2])
    assert R.MeanReducer()(t).item() == pytest.approx(2.0)
    assert R.SumReducer()(t).item() == pytest.approx(8.0)
    assert R.AvgNonZeroReducer()(t).item() == pytest.approx(8.0 / 3)
    assert R.ThresholdReducer(low=0.5, high=4.0)(t).item() == pytest.approx(1.5)
    assert R.ThresholdReducer(high=1.5)(t).item() == pytest.approx(0.5)
    # per anchor: anchor 0 → mean(0, 1) = 0.5, anchor 1 → 2, anchor 2 → 5; then their mean
    assert R.PerAnchorReducer()(t).item() == pytest.approx((0.5 + 2 + 5) / 3)
    # an anchor without terms counts 0 in the outer mean
    t4 = _terms([1.0, 3.0], anchors=[0, 0], n=4)
    assert R.PerAnchorReducer()(t4).item() == pytest.approx(2.0 / 4)
    assert R.PerAnchorReducer(R.AvgNonZeroReducer())(t4).item() == pytest.approx(2.0)


def test_reducers_gradient_and_empty_terms() -> None:
    t = _terms([0.0, 1.0, 3.0])
    R.AvgNonZeroReducer()(t).backward()
    assert t.losses.grad is not None
    assert t.losses.grad.tolist() == [0.0, 0.5, 0.5]  # zero terms leave the mean and get no gradient
    empty = _terms([])
    for red in (R.MeanReducer(), R.AvgNonZeroReducer(), R.PerAnchorReducer(), R.SumReducer()):
        out = red(empty)
        assert out.item() == 0.0 and out.requires_grad


def test_reducer_bad_inputs() -> None:
    with pytest.raises(ValueError, match="low or high"):
        R.ThresholdReducer()
    with pytest.raises(ValueError, match="kind"):
        R.Terms(torch.zeros(1), "pairs", torch.zeros(1, dtype=torch.long), 1)
    with pytest.raises(TypeError, match="reducer"):
        R.PerAnchorReducer(reducer="mean")  # type: ignore[arg-type]
    e, y = _batch()
    with pytest.raises(ValueError, match="reducer"):
        LF.contrastive(e, y, reducer=R.MeanReducer(), reduction="none")
    with pytest.raises(TypeError, match="distance"):
        LF.triplet_margin(e, y, distance="cosine")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the composed path
_DIRECT = {
    "contrastive": dict(pos_margin=0.1, neg_margin=0.9),
    "triplet_margin": dict(margin=0.3),
    "multi_similarity": dict(alpha=2.5, beta=20.0, base=0.4),
    "supcon": dict(temperature=0.2, base_temperature=0.1),
    "ntxent": dict(temperature=0.3),
}


@pytest.mark.parametrize("loss_id", sorted(_DIRECT))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("mined", [False, True])
def test_composed_path_with_default_pieces_equals_the_direct_loss(loss_id: str, reduction: str, mined: bool) -> None:
    """``distance=`` the loss's paper distance takes the composed kernel; it must give the
    direct kernel's value and gradient (its own 'mean', none, sum)."""
    e, y = _batch()
    fn = getattr(LF, loss_id)
    default = D.CosineSimilarity() if loss_id in ("multi_similarity", "supcon", "ntxent") else D.LpDistance()
    call: dict[str, Any] = dict(_DIRECT[loss_id], reduction=reduction)
    if mined:
        call["indices"] = M.TripletMarginMiner(margin=0.5)(e, y)
    e1, e2 = e.clone().requires_grad_(), e.clone().requires_grad_()
    direct = fn(e1, y, **call)
    composed = fn(e2, y, distance=default, **call)
    torch.testing.assert_close(composed, direct)
    direct.sum().backward()
    composed.sum().backward()
    torch.testing.assert_close(e2.grad, e1.grad)


def test_multi_similarity_miner_epsilon_on_the_composed_path() -> None:
    e, y = _batch(seed=3)
    direct = LF.multi_similarity(e, y, miner_epsilon=0.1)
    composed = LF.multi_similarity(e, y, miner_epsilon=0.1, distance=D.CosineSimilarity())
    torch.testing.assert_close(composed, direct)


def test_ref_emb_triplet_brute_force() -> None:
    """Anchors from ``embeddings``, positives / negatives from the reference set: every
    (i, p, n) with y_i = r_p ≠ r_n, the row itself included when it is in the reference."""
    g = torch.Generator().manual_seed(5)
    e = torch.randn(4, 3, generator=g, dtype=torch.float64)
    ref = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y, ry = torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 0, 1, 3])
    u, ur = F.normalize(e, dim=1), F.normalize(ref, dim=1)
    terms = []
    for i in range(4):
        for p in range(6):
            for n in range(6):
                if y[i] == ry[p] and y[i] != ry[n]:
                    terms.append(max(float((u[i] - ur[p]).norm() - (u[i] - ur[n]).norm()) + 0.4, 0.0))
    nonzero = [t for t in terms if t > 0]
    got = LF.triplet_margin(e, y, margin=0.4, ref_emb=ref, ref_labels=ry)
    assert got.item() == pytest.approx(sum(nonzero) / len(nonzero))
    got_mean = LF.triplet_margin(e, y, margin=0.4, ref_emb=ref, ref_labels=ry, reducer=R.MeanReducer())
    assert got_mean.item() == pytest.approx(sum(terms) / len(terms))


def test_ref_emb_supcon_closed_form() -> None:
    g = torch.Generator().manual_seed(6)
    e = torch.randn(3, 4, generator=g, dtype=torch.float64)
    ref = torch.randn(5, 4, generator=g, dtype=torch.float64)
    y, ry = torch.tensor([0, 1, 2]), torch.tensor([0, 0, 1, 2, 3])
    t, tb = 0.2, 0.1
    s = F.normalize(e, dim=1) @ F.normalize(ref, dim=1).T / t
    per = []
    for i in range(3):
        pos = [j for j in range(5) if ry[j] == y[i]]
        lse = torch.logsumexp(s[i], 0)  # every reference row is a positive or a negative
        per.append(-(t / tb) * sum(float(s[i, j] - lse) for j in pos) / len(pos))
    got = LF.supcon(e, y, temperature=t, base_temperature=tb, ref_emb=ref, ref_labels=ry, reduction="none")
    torch.testing.assert_close(got, torch.tensor(per, dtype=torch.float64))


def test_ref_emb_gradcheck() -> None:
    g = torch.Generator().manual_seed(7)
    e = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y, ry = torch.tensor([0, 1, 0, 1, 2]), torch.tensor([0, 1, 2, 0, 1, 2])
    for fn, kw in [(LF.multi_similarity, {}), (LF.supcon, {"temperature": 0.5}), (LF.ntxent, {"temperature": 0.5}),
                   (LF.contrastive, {"distance": D.CosineSimilarity(), "pos_margin": 1.0, "neg_margin": 0.0}),
                   (LF.triplet_margin, {"distance": D.CosineSimilarity(), "margin": 0.5})]:
        assert torch.autograd.gradcheck(lambda a, b: fn(a, y, ref_emb=b, ref_labels=ry, **kw), (e, ref))


def test_ref_emb_bad_inputs_name_the_argument() -> None:
    e, y = _batch()
    with pytest.raises(ValueError, match="ref_labels"):
        LF.contrastive(e, y, ref_emb=e)
    with pytest.raises(ValueError, match="ref_emb"):
        LF.contrastive(e, y, ref_labels=y)
    with pytest.raises(ValueError, match="ref_emb"):
        LF.supcon(e, y, ref_emb=e[:, :2], ref_labels=y)
    with pytest.raises(ValueError, match="ref_labels"):
        LF.ntxent(e, y, ref_emb=e, ref_labels=y[:3])
    with pytest.raises(ValueError, match="indices"):
        LF.triplet_margin(e[:3], y[:3], ref_emb=e, ref_labels=y, indices=(torch.tensor([5]), torch.tensor([0]), torch.tensor([1])))
    with pytest.raises(TypeError, match="ref_labels"):
        LF.multi_similarity(e, y, ref_emb=e, ref_labels=y.double())
    with pytest.raises(ValueError, match="tiled"):
        LF.supcon(e, y, ref_emb=e, ref_labels=y, tiled=True)


def test_module_forward_takes_the_pieces() -> None:
    e, y = _batch()
    crit = la.create("triplet_margin", margin=0.3)
    out = crit(e, y, ref_emb=e[:6], ref_labels=y[:6], distance=D.CosineSimilarity(), reducer=R.MeanReducer())
    assert out.item() == pytest.approx(
        LF.triplet_margin(e, y, margin=0.3, ref_emb=e[:6], ref_labels=y[:6], distance=D.CosineSimilarity(), reducer=R.MeanReducer()).item())


def test_miners_with_a_reference_set_match_brute_force() -> None:
    g = torch.Generator().manual_seed(8)
    e, ref = torch.randn(5, 3, generator=g), torch.randn(9, 3, generator=g)
    y, ry = torch.tensor([0, 1, 2, 0, 1]), torch.arange(9) % 3
    a, p, n = M.BatchHardMiner()(e, y, ref, ry)
    d = torch.cdist(F.normalize(e, dim=1), F.normalize(ref, dim=1))
    for i in range(5):
        same = ry == y[i]
        assert p[i] == torch.where(same, d[i], torch.tensor(-1.0)).argmax()
        assert n[i] == torch.where(~same, d[i], torch.tensor(9.0)).argmin()
    a, p, n = M.TripletMarginMiner(margin=0.3, distance=D.CosineSimilarity())(e, y, ref, ry)
    s = F.normalize(e, dim=1) @ F.normalize(ref, dim=1).T
    expect = {(i, j, k) for i in range(5) for j in range(9) for k in range(9)
              if ry[j] == y[i] and ry[k] != y[i] and float(s[i, j] - s[i, k]) <= 0.3}
    assert set(zip(a.tolist(), p.tolist(), n.tolist())) == expect


# ----------------------------------------------------------------------------- vs pytorch-metric-learning
pml = pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning import distances as pd  # noqa: E402
from pytorch_metric_learning import losses as pl  # noqa: E402
from pytorch_metric_learning import miners as pm  # noqa: E402
from pytorch_metric_learning import reducers as pr  # noqa: E402

DISTANCES = {
    "lp": (lambda: D.LpDistance(), lambda: pd.LpDistance()),
    "lp_p1_sq": (lambda: D.LpDistance(p=1.0, power=2.0), lambda: pd.LpDistance(p=1, power=2)),
    "cosine": (lambda: D.CosineSimilarity(), lambda: pd.CosineSimilarity()),
    "dot_raw": (lambda: D.DotProductSimilarity(normalize_embeddings=False), lambda: pd.DotProductSimilarity(normalize_embeddings=False)),
}
REDUCERS = {
    "mean": (lambda: R.MeanReducer(), lambda: pr.MeanReducer()),
    "avg_nonzero": (lambda: R.AvgNonZeroReducer(), lambda: pr.AvgNonZeroReducer()),
    "threshold": (lambda: R.ThresholdReducer(low=0.05, high=3.0), lambda: pr.ThresholdReducer(low=0.05, high=3.0)),
    "per_anchor": (lambda: R.PerAnchorReducer(), lambda: pr.PerAnchorReducer()),
}
MINERS = {
    "none": (lambda dist: None, lambda dist: None),
    "triplet_semihard": (lambda dist: M.TripletMarginMiner(0.3, "semihard", distance=dist),
                         lambda dist: pm.TripletMarginMiner(margin=0.3, type_of_triplets="semihard", distance=dist)),
    "batch_hard": (lambda dist: M.BatchHardMiner(distance=dist), lambda dist: pm.BatchHardMiner(distance=dist)),
    "multi_similarity": (lambda dist: M.MultiSimilarityMiner(0.1, distance=dist), lambda dist: pm.MultiSimilarityMiner(epsilon=0.1, distance=dist)),
}
# (our id, our kwargs, PML class, PML kwargs); margins chosen for each orientation
LOSSES: dict[str, tuple[str, dict[str, Any], Any, dict[str, Any]]] = {
    "contrastive_lp": ("contrastive", dict(pos_margin=0.2, neg_margin=1.1), pl.ContrastiveLoss, dict(pos_margin=0.2, neg_margin=1.1)),
    "contrastive_sim": ("contrastive", dict(pos_margin=0.9, neg_margin=0.1), pl.ContrastiveLoss, dict(pos_margin=0.9, neg_margin=0.1)),
    "triplet": ("triplet_margin", dict(margin=0.25), pl.TripletMarginLoss, dict(margin=0.25)),
    "multi_similarity": ("multi_similarity", dict(alpha=2.0, beta=10.0, base=0.3), pl.MultiSimilarityLoss, dict(alpha=2.0, beta=10.0, base=0.3)),
    "supcon": ("supcon", dict(temperature=0.2, base_temperature=0.2), pl.SupConLoss, dict(temperature=0.2)),
    "ntxent": ("ntxent", dict(temperature=0.2), pl.NTXentLoss, dict(temperature=0.2)),
}
SIM_ONLY = {"contrastive_sim"}
LP_ONLY = {"contrastive_lp"}


def _configs() -> list[Any]:
    out = []
    for loss, dist, miner, red in itertools.product(LOSSES, DISTANCES, MINERS, REDUCERS):
        inverted = dist in ("cosine", "dot_raw")
        if (loss in SIM_ONLY and not inverted) or (loss in LP_ONLY and inverted):
            continue
        if red == "per_anchor" and loss == "triplet":
            continue  # PML's PerAnchorReducer does not reduce triplets (ours groups them by anchor)
        if red == "per_anchor" and miner == "triplet_semihard" and loss != "supcon":
            continue  # repeated pairs: PML's [N, N] scatter keeps one, ours counts each (documented)
        if loss in ("supcon", "multi_similarity") and red == "per_anchor":
            continue  # element losses: PerAnchorReducer is the inner reducer, covered by 'mean'
        out.append(pytest.param(loss, dist, miner, red, id=f"{loss}-{dist}-{miner}-{red}"))
    return out


def _pml_call(loss: Any, miner: Any, e: torch.Tensor, y: torch.Tensor, ref: torch.Tensor | None, ry: torch.Tensor | None) -> torch.Tensor:
    idx = None if miner is None else miner(e, y, ref, ry)
    out = loss(e, y, idx, ref, ry)
    assert isinstance(out, torch.Tensor)
    return out


@pytest.mark.parametrize(("loss", "dist", "miner", "red"), _configs())
def test_composed_loss_matches_pml(loss: str, dist: str, miner: str, red: str) -> None:
    """distance × miner × reducer (and a reference set) reproduce PML's value and gradients."""
    our_id, our_kw, pml_cls, pml_kw = LOSSES[loss]
    g = torch.Generator().manual_seed(11)
    e = torch.randn(16, 6, generator=g, dtype=torch.float64)
    y = torch.arange(16) % 4
    ref = torch.randn(10, 6, generator=g, dtype=torch.float64)
    ry = torch.arange(10) % 5
    for use_ref in (False, True):
        if use_ref and red == "per_anchor":
            continue  # PML's PerAnchorReducer builds a [batch, batch] table: a larger reference set does not fit it
        ours_d, pml_d = DISTANCES[dist][0](), DISTANCES[dist][1]()
        ours_m, pml_m = MINERS[miner][0](ours_d), MINERS[miner][1](pml_d)
        e1, e2 = e.clone().requires_grad_(), e.clone().requires_grad_()
        r1, r2 = ref.clone().requires_grad_(), ref.clone().requires_grad_()
        refs1 = dict(ref_emb=r1, ref_labels=ry) if use_ref else {}
        idx = None if ours_m is None else ours_m(e1, y, r1 if use_ref else None, ry if use_ref else None)
        ours = getattr(LF, our_id)(e1, y, indices=idx, distance=ours_d, reducer=REDUCERS[red][0](), **our_kw, **refs1)
        theirs = _pml_call(pml_cls(distance=pml_d, reducer=REDUCERS[red][1](), **pml_kw), pml_m, e2, y,
                           r2 if use_ref else None, ry if use_ref else None)
        torch.testing.assert_close(ours, theirs.to(ours.dtype), rtol=1e-7, atol=1e-10, msg=f"value, ref={use_ref}")
        if not theirs.requires_grad:
            assert not ours.requires_grad or ours.item() == 0.0
            continue
        ours.backward()
        theirs.backward()
        g1 = e1.grad if e1.grad is not None else torch.zeros_like(e)
        g2 = e2.grad if e2.grad is not None else torch.zeros_like(e)
        torch.testing.assert_close(g1, g2, rtol=1e-6, atol=1e-9, msg=f"embeddings gradient, ref={use_ref}")
        if use_ref:
            h1 = r1.grad if r1.grad is not None else torch.zeros_like(ref)
            h2 = r2.grad if r2.grad is not None else torch.zeros_like(ref)
            torch.testing.assert_close(h1, h2, rtol=1e-6, atol=1e-9, msg="ref_emb gradient")


def test_pair_tuple_with_repeated_pairs_gives_pmls_triplets() -> None:
    """A pair tuple becomes every (a, p, n) sharing the anchor, a pair listed k times counting
    k times (PML's convert_to_triplets); with a reference set too."""
    e, y = _batch(n=8, seed=12)
    ref, ry = _batch(n=10, seed=13)
    a1, p = torch.tensor([0, 0, 1, 2, 0]), torch.tensor([4, 4, 5, 6, 7])
    a2, n = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([1, 2, 2, 2, 3])
    for refs in ({}, {"ref_emb": ref, "ref_labels": ry}):
        ours = LF.triplet_margin(e, y, margin=0.5, indices=(a1, p, a2, n), reducer=R.MeanReducer(), **refs)
        theirs = pl.TripletMarginLoss(margin=0.5, reducer=pr.MeanReducer())(
            e, y, (a1, p, a2, n), refs.get("ref_emb"), refs.get("ref_labels"))
        torch.testing.assert_close(ours, theirs)
        total = LF.triplet_margin(e, y, margin=0.5, indices=(a1, p, a2, n), reduction="sum", **refs)
        assert total.item() == pytest.approx(float(theirs) * 9)  # anchor 0: 3 x 2, anchor 1: 1 x 2, anchor 2: 1 x 1
