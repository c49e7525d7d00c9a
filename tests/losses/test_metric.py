"""Metric-learning losses (F1–F7, SupCon G2, NT-Xent G1): identities, oracles, gradients,
edges, errors, and the official code's definitions.

Oracles: pytorch-metric-learning (installed) for the pair losses, ArcFace/CosFace/NormFace and
the identical-points rule. References written here from scratch in float64 from the official
code's definitions:
- insightface recognition/arcface_torch (configs ``margin_list = (1.0, 0.5, 0.0)``,
  ``CombinedMarginLoss(64, …)``; ``PartialFC_V2`` + ``DistCrossEntropy``): cosines clamped to
  [−1, 1], target ``cos(acos(c) + m)`` set under ``no_grad`` (identity in backward), target
  probability clamped at 1e-30 before the log (value only; backward ``(softmax − onehot)/N``);
- Jung-Jun-Uk/UNPG recognition/models (ArcFace head ``cos(acos(c) + m)`` for every θ,
  ``box_and_whisker_algorithm``, negative pairs i < j appended as columns to every row);
- zhongyy/SFace (sigmoid weights without gradient).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import lossatlas as la
import lossatlas.functional as LF
from helpers import assert_finite_extremes, gradcheck_loss
from lossatlas._paths import force_path
from lossatlas.losses.metric import _ClassifierLoss
from lossatlas.miners import BatchHardMiner

PAIR_IDS = ["contrastive", "triplet_margin", "multi_similarity", "supcon", "ntxent", "threshold_consistent_margin"]
CLS_IDS = ["normalized_softmax", "cosface", "arcface", "sface", "unpg", "partial_fc"]


def _batch(n: int = 24, d: int = 8, c: int = 5, seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randint(0, c, (n,), generator=g)


def _head(id_: str, **kw: Any) -> _ClassifierLoss:
    """A loss with learned class centres (typed: ``weight``, ``hparams()``, ``functional_kwargs()``)."""
    crit = la.create(id_, **kw)
    assert isinstance(crit, _ClassifierLoss)
    return crit


def _cls(id_: str, c: int = 5, d: int = 8, **kw: Any) -> _ClassifierLoss:
    return _head(id_, num_classes=c, embedding_size=d, **kw).double()


def _value_and_grad(fn: Callable[[Tensor], Tensor], e: Tensor, *extra: Tensor) -> tuple[Tensor, list[Tensor]]:
    e = e.clone().requires_grad_()
    params = [p for p in extra if isinstance(p, torch.Tensor) and p.requires_grad]
    out = fn(e)
    grads = torch.autograd.grad(out, [e, *params], allow_unused=True)
    return out.detach(), [torch.zeros_like(x) if g is None else g for x, g in zip([e, *params], grads)]


# ------------------------------------------------------------------ oracle: pytorch-metric-learning
@pytest.fixture(scope="module")
def pml() -> Any:
    module: Any = pytest.importorskip("pytorch_metric_learning")  # no type information: Any
    pytest.importorskip("pytorch_metric_learning.losses")
    pytest.importorskip("pytorch_metric_learning.miners")
    return module


def _pml_pair(pml: Any, id_: str) -> tuple[Callable[[], Any], dict[str, float]]:
    L = pml.losses
    return {
        "contrastive": (lambda: L.ContrastiveLoss(pos_margin=0.1, neg_margin=0.8), {"pos_margin": 0.1, "neg_margin": 0.8}),
        "triplet_margin": (lambda: L.TripletMarginLoss(margin=0.3), {"margin": 0.3}),
        "multi_similarity": (lambda: L.MultiSimilarityLoss(alpha=3.0, beta=40.0, base=0.4), {"alpha": 3.0, "beta": 40.0, "base": 0.4}),
        "supcon": (lambda: L.SupConLoss(temperature=0.2), {"temperature": 0.2, "base_temperature": 0.2}),
        "ntxent": (lambda: L.NTXentLoss(temperature=0.3), {"temperature": 0.3}),
        "threshold_consistent_margin": (lambda: L.ThresholdConsistentMarginLoss(), {}),
    }[id_]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("id_", PAIR_IDS)
def test_pair_losses_match_pml_on_random_batches(pml: Any, id_: str, seed: int) -> None:
    e, y = _batch(n=20, c=4 + seed, seed=seed)
    make_ref, kw = _pml_pair(pml, id_)
    ours, g_ours = _value_and_grad(lambda x: la.create(id_, **kw)(x, y), e)
    ref, g_ref = _value_and_grad(lambda x: make_ref()(x, y), e)
    torch.testing.assert_close(ours, ref, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(g_ours[0], g_ref[0], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("id_", ["contrastive", "triplet_margin", "multi_similarity", "ntxent", "threshold_consistent_margin"])
def test_pair_losses_match_pml_with_mined_indices(pml: Any, id_: str) -> None:
    e, y = _batch(n=20, c=4, seed=3)
    make_ref, kw = _pml_pair(pml, id_)
    for miner in (pml.miners.TripletMarginMiner(margin=0.3, type_of_triplets="semihard"), pml.miners.MultiSimilarityMiner(0.1)):
        idx = miner(e, y)
        ours, g_ours = _value_and_grad(lambda x: la.create(id_, **kw)(x, y, indices=idx), e)
        ref, g_ref = _value_and_grad(lambda x: make_ref()(x, y, idx), e)
        torch.testing.assert_close(ours, ref, rtol=1e-7, atol=1e-10)
        torch.testing.assert_close(g_ours[0], g_ref[0], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("id_,pml_cls,kw,pml_kw", [
    ("arcface", "ArcFaceLoss", {"margin": math.radians(20.0), "scale": 30.0}, {"margin": 20.0, "scale": 30.0}),
    ("arcface", "ArcFaceLoss", {"margin": math.radians(80.0), "scale": 10.0}, {"margin": 80.0, "scale": 10.0}),
    ("cosface", "CosFaceLoss", {"margin": 0.2, "scale": 16.0}, {"margin": 0.2, "scale": 16.0}),
    ("normalized_softmax", "NormalizedSoftmaxLoss", {"temperature": 0.1}, {"temperature": 0.1}),
])
def test_classifier_losses_match_pml(pml: Any, id_: str, pml_cls: str, kw: dict[str, float], pml_kw: dict[str, float]) -> None:
    e, y = _batch(n=16, d=6, c=7, seed=4)
    ours = _cls(id_, c=7, d=6, **kw)
    ref = getattr(pml.losses, pml_cls)(num_classes=7, embedding_size=6, **pml_kw).double()
    with torch.no_grad():
        ref.W.copy_(ours.weight.T)
    v1, g1 = _value_and_grad(lambda x: ours(x, y), e, ours.weight)
    v2, g2 = _value_and_grad(lambda x: ref(x, y), e, ref.W)
    torch.testing.assert_close(v1, v2, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(g1[0], g2[0], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(g1[1], g2[1].T, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------ identities
def test_margin_zero_reduces_to_normalised_softmax() -> None:
    e, y = _batch(c=5)
    arc = _cls("arcface", margin=0.0, scale=20.0)
    cos = _cls("cosface", margin=0.0, scale=20.0)
    norm = _cls("normalized_softmax", temperature=1 / 20.0)
    for m in (cos, norm):
        m.weight.data.copy_(arc.weight.data)
    ref = F.cross_entropy(20.0 * F.normalize(e) @ F.normalize(arc.weight).T, y)
    for m in (arc, cos, norm):
        torch.testing.assert_close(m(e, y), ref)


def test_arcface_target_logit_is_cos_theta_plus_m() -> None:
    cos = torch.tensor([[0.3, -0.2], [-0.99, 0.5]], dtype=torch.float64)
    y = torch.tensor([0, 0])
    out = LF.margin_logits(cos, y, "arcface", 0.5)
    assert out[0, 0].item() == pytest.approx(math.cos(math.acos(0.3) + 0.5))
    # θ > π − m: the monotone extension cos θ − m sin m
    assert out[1, 0].item() == pytest.approx(-0.99 - 0.5 * math.sin(0.5))
    assert out[:, 1].tolist() == cos[:, 1].tolist()


def test_arcface_and_cosface_penalise_the_target() -> None:
    e, y = _batch()
    base = _cls("normalized_softmax", temperature=1 / 64.0)
    for id_ in ("arcface", "cosface"):
        m = _cls(id_)
        m.weight.data.copy_(base.weight.data)
        assert m(e, y).item() > base(e, y).item()


@pytest.mark.parametrize("margin_type,ref_id,ref_kw", [
    ("arcface", "arcface", {"margin": 0.5, "scale": 64.0}),
    ("cosface", "cosface", {"margin": 0.5, "scale": 64.0}),
    ("normface", "normalized_softmax", {"temperature": 1 / 64.0}),
])
def test_partial_fc_with_rate_one_is_the_full_margin_loss(margin_type: str, ref_id: str, ref_kw: dict[str, Any]) -> None:
    # insightface caps each loss at −log 1e-30 (value only) and applies the margin under
    # no_grad: values match the full loss capped; gradients match where the margin's
    # derivative is the identity (CosFace, NormFace); ArcFace's is checked in test_metric_official
    e, y = _batch(c=9)
    pfc = _cls("partial_fc", c=9, sample_rate=1.0, margin=0.5, scale=64.0, margin_type=margin_type, reduction="none")
    full = _cls(ref_id, c=9, reduction="none", **ref_kw)
    full.weight.data.copy_(pfc.weight.data)
    cos = F.normalize(e) @ F.normalize(full.weight.detach()).T
    assert bool((torch.acos(cos.gather(1, y[:, None])) <= math.pi - 0.5).all())  # no ArcFace fallback in play
    _, g1 = _value_and_grad(lambda x: pfc(x, y).sum(), e, pfc.weight)
    _, g2 = _value_and_grad(lambda x: full(x, y).sum(), e, full.weight)
    torch.testing.assert_close(pfc(e, y), full(e, y).clamp_max(-math.log(1e-30)))
    if margin_type != "arcface":
        torch.testing.assert_close(g1[0], g2[0])
        torch.testing.assert_close(g1[1], g2[1])


def test_partial_fc_sampling_always_keeps_the_positive_centres() -> None:
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        labels = torch.randint(0, 1000, (int(torch.randint(1, 64, (1,), generator=g)),), generator=g)
        index, local = LF.sample_class_centres(labels, 1000, 100, g)
        assert set(labels.tolist()) <= set(index.tolist())
        assert index.numel() == 100 and bool((index[1:] > index[:-1]).all())
        assert torch.equal(index[local], labels)
    # more positives than the budget: exactly the positives
    labels = torch.arange(0, 500, 3)
    index, local = LF.sample_class_centres(labels, 1000, 10)
    assert torch.equal(index, labels) and torch.equal(local, torch.arange(labels.numel()))


def test_partial_fc_gradient_reaches_only_sampled_centres_and_varies_per_call() -> None:
    e, y = _batch(n=8, c=3)
    crit = _cls("partial_fc", c=200, sample_rate=0.05, seed=0)
    crit(e, y).backward()
    assert crit.weight.grad is not None
    touched = (crit.weight.grad.abs().sum(1) > 0).nonzero().flatten()
    assert set(y.tolist()) <= set(touched.tolist()) and touched.numel() <= 10
    # the sampled negatives change between calls; the same seed reproduces them
    a = LF.sample_class_centres(y, 200, 10, torch.Generator().manual_seed(1))[0]
    b = LF.sample_class_centres(y, 200, 10, torch.Generator().manual_seed(2))[0]
    c = LF.sample_class_centres(y, 200, 10, torch.Generator().manual_seed(1))[0]
    assert torch.equal(a, c) and not torch.equal(a, b)


def test_unpg_equals_ce_over_classes_and_filtered_negative_pairs() -> None:
    e, y = _batch(n=16, c=4)
    crit = _cls("unpg", c=4, margin=0.5, scale=16.0, whisker=1.5)
    w = crit.weight
    u = F.normalize(e)
    cos = u @ F.normalize(w).T
    ct = cos.gather(1, y[:, None])
    logits = cos.scatter(1, y[:, None], torch.cos(torch.acos(ct) + 0.5))  # official head: cos(θ + m), every θ
    iu = torch.triu_indices(16, 16, 1)
    sims = (u @ u.T)[iu[0], iu[1]][(y[iu[0]] != y[iu[1]])]
    x = np.sort(sims.detach().numpy())
    q1, q3 = x[int(0.25 * len(x))], x[int(0.75 * len(x))]
    kept = [v for v in x if q1 - 1.5 * (q3 - q1) <= v <= q3 + 1.5 * (q3 - q1)]
    full = torch.cat([logits, torch.tensor(kept, dtype=logits.dtype).expand(16, -1)], dim=1)
    torch.testing.assert_close(crit(e, y), F.cross_entropy(16.0 * full, y))
    # extra negatives only make the loss larger than the plain margin loss
    arc = _cls("arcface", c=4, margin=0.5, scale=16.0)
    arc.weight.data.copy_(w.data)
    assert crit(e, y).item() > arc(e, y).item()


def test_unpg_without_negative_pairs_is_arcface() -> None:
    e, _ = _batch(n=6)
    y = torch.full((6,), 2)
    crit = _cls("unpg", margin=0.4, scale=30.0)
    arc = _cls("arcface", margin=0.4, scale=30.0)
    arc.weight.data.copy_(crit.weight.data)
    torch.testing.assert_close(crit(e, y), arc(e, y))


def test_box_and_whisker_drops_outliers() -> None:
    v = torch.tensor([0.0, 0.1, 0.12, 0.11, 0.09, 0.1, 0.95, -0.9], dtype=torch.float64)
    kept = LF.box_and_whisker_filter(v, 1.5)
    # sorted: -0.9, 0, .09, .1, .1, .11, .12, .95; Q1 = x[2] = .09, Q3 = x[6] = .12, band [.045, .165]
    assert kept.tolist() == [0.09, 0.1, 0.1, 0.11, 0.12]
    assert LF.box_and_whisker_filter(v, 100.0).numel() == 8


def test_sface_matches_official_formula_and_stops_gradient_through_weights() -> None:
    e, y = _batch(n=10, c=4)
    crit = _cls("sface", c=4, scale=64.0, k=80.0, a=0.8, b=1.23)
    cos = F.normalize(e) @ F.normalize(crit.weight).T
    onehot = F.one_hot(y, 4).double()
    with torch.no_grad():
        th = torch.acos(cos.clamp(-1, 1))
        wy = torch.sigmoid(80.0 * ((th * onehot).sum(1) - 0.8))
        wj = torch.sigmoid(-80.0 * (th - 1.23)) * (1 - onehot)
    intra = -wy * 64.0 * (cos * onehot).sum(1)
    inter = (wj * 64.0 * cos).sum(1)
    ref = intra.mean() + inter.mean()
    e1 = e.clone().requires_grad_()
    out = crit(e1, y)
    torch.testing.assert_close(out, ref)
    (g_ref,) = torch.autograd.grad(ref, crit.weight, retain_graph=True)
    (g_out,) = torch.autograd.grad(out, crit.weight)
    torch.testing.assert_close(g_out, g_ref)


def test_supcon_two_views_equals_ntxent_and_simclr_cross_entropy() -> None:
    g = torch.Generator().manual_seed(5)
    b, t = 6, 0.5
    e = torch.randn(2 * b, 5, generator=g, dtype=torch.float64)
    y = torch.arange(b).repeat(2)
    sup = la.create("supcon", temperature=t, base_temperature=t)(e, y)
    nt = la.create("ntxent", temperature=t)(e, y)
    u = F.normalize(e)
    z = (u @ u.T / t).masked_fill(torch.eye(2 * b, dtype=torch.bool), -math.inf)
    simclr = F.cross_entropy(z, torch.cat([torch.arange(b, 2 * b), torch.arange(b)]))
    torch.testing.assert_close(sup, simclr)
    torch.testing.assert_close(nt, simclr)


# ------------------------------------------------------------------ SimCLR's two views; SupContrast's [bsz, n_views, D]
def _simclr_ntxent_ref(z1: Tensor, z2: Tensor, t: float) -> Tensor:
    """SimCLR's NT-Xent (Chen et al. 2020, Algorithm 1), float64, one row at a time: row i of
    ``cat([z1, z2])`` has the other view of its sample as its positive and the other 2N − 2
    rows as negatives, ``ℓ_i = −log e^{s_ij/τ} / Σ_{k≠i} e^{s_ik/τ}`` with cosine ``s``.
    Returns the 2N row losses."""
    z = torch.cat([z1, z2]).double()
    m = z.shape[0]
    n = m // 2
    losses = []
    for i in range(m):
        sim = torch.stack([F.cosine_similarity(z[i], z[k], dim=0, eps=0.0) for k in range(m)]) / t
        j = (i + n) % m
        others = torch.tensor([k for k in range(m) if k != i])
        losses.append(torch.logsumexp(sim[others], 0) - sim[j])
    return torch.stack(losses)


def _supcontrast_ref(features: Tensor, labels: Tensor | None, t: float, tb: float) -> tuple[Tensor, Tensor]:
    """HobbitLong/SupContrast ``SupConLoss(temperature=t, contrast_mode='all', base_temperature=tb)``
    (losses.py at HEAD: no-positive anchors give 0 and are counted), float64, one anchor at a time.

    ``features`` [B, V, D] are the model's unit rows; anchors are ``cat(unbind(features, 1))``
    (row v·B + i is features[i, v]); labels ``None`` make each sample its own class. Anchor a:
    ``−(t/tb) · mean_{p∈P_a} [s_ap/t − log Σ_{k≠a} e^{s_ak/t}]`` (0 without positives); the
    loss is the mean over all V·B anchors. Returns (loss, per-anchor losses)."""
    b, v, _ = features.shape
    rows = [features[i, k] for k in range(v) for i in range(b)]
    ids = [i for _ in range(v) for i in range(b)]
    cls = ids if labels is None else [int(labels[i]) for i in ids]
    per = []
    for a in range(v * b):
        logits = torch.stack([rows[a] @ rows[k] for k in range(v * b)]) / t
        others = [k for k in range(v * b) if k != a]
        lse = torch.logsumexp(logits[others], 0)
        pos = [k for k in others if cls[k] == cls[a]]
        mean_pos = torch.stack([logits[p] - lse for p in pos]).mean() if pos else logits.sum() * 0.0
        per.append(-(t / tb) * mean_pos)
    per_t = torch.stack(per)
    return per_t.mean(), per_t


def _grads(fn: Callable[..., Tensor], *xs: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
    leaves = [x.detach().clone().requires_grad_() for x in xs]
    out = fn(*leaves)
    return out.detach(), torch.autograd.grad(out.sum(), leaves)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ntxent_two_views_is_simclr_and_the_labelled_form(reduction: str) -> None:
    g = torch.Generator().manual_seed(21)
    n, t = 5, 0.5
    z1, z2 = torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randn(n, 6, generator=g, dtype=torch.float64)
    crit = la.create("ntxent", temperature=t, reduction=reduction)
    two, g_two = _grads(lambda a, b: LF.ntxent(a, b, temperature=t, reduction=reduction), z1, z2)
    mod, g_mod = _grads(lambda a, b: crit(a, b), z1, z2)
    y = torch.cat([torch.arange(n), torch.arange(n)])
    lab, g_lab = _grads(lambda a, b: LF.ntxent(torch.cat([a, b]), y, temperature=t, reduction=reduction), z1, z2)
    ref, g_ref = _grads(lambda a, b: _reduce(_simclr_ntxent_ref(a, b, t), reduction), z1, z2)
    assert two.shape == ((2 * n,) if reduction == "none" else ())
    for value, grads in ((two, g_two), (mod, g_mod), (lab, g_lab)):
        torch.testing.assert_close(value, ref)
        for got, want in zip(grads, g_ref):
            torch.testing.assert_close(got, want)
    # SupCon with one positive per anchor is NT-Xent: the same two-view call, τ_b = τ
    torch.testing.assert_close(LF.supcon(z1, z2, temperature=t, base_temperature=t, reduction=reduction), ref)


def test_ntxent_and_supcon_two_views_gradcheck() -> None:
    g = torch.Generator().manual_seed(22)
    z1, z2 = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    gradcheck_loss(lambda a, b: LF.ntxent(a, b, temperature=0.5), z1, z2)
    gradcheck_loss(lambda a, b: LF.supcon(a, b, temperature=0.5), z1, z2)
    gradcheck_loss(lambda f: LF.supcon(f, torch.tensor([0, 0, 1, 2]), temperature=0.5), torch.stack([z1, z2], 1))


@pytest.mark.parametrize("views,labels,t,tb", [
    (2, [0, 0, 1, 2, 2, 3], 0.1, 0.07),
    (3, [4, 1, 4, 4, 0], 0.07, 0.07),
    (2, None, 0.2, 0.07),  # SupContrast's labels=None: SimCLR
    (1, [0, 0, 1, 2, 3, 3], 0.1, 0.1),  # one view: anchors 2 and 3 have no positive (0, counted)
])
def test_supcon_features_layout_matches_supcontrast(views: int, labels: list[int] | None, t: float, tb: float) -> None:
    g = torch.Generator().manual_seed(23)
    b = 6 if labels is None else len(labels)
    raw = torch.randn(b, views, 5, generator=g, dtype=torch.float64)
    y = None if labels is None else torch.tensor(labels)
    # SupContrast's models hand it unit rows (SupConResNet normalises); lossatlas normalises inside
    ref, g_ref = _grads(lambda f: _supcontrast_ref(F.normalize(f, dim=-1), y, t, tb)[0], raw)
    every_anchor_has_a_positive = views > 1
    for average_over in ("all_anchors", "anchors_with_positives"):
        kw: dict[str, Any] = {"temperature": t, "base_temperature": tb, "average_over": average_over}
        crit = la.create("supcon", **kw)
        for fn in (lambda f: LF.supcon(f, y, **kw), lambda f: crit(f, y)):
            out, g_out = _grads(fn, raw)
            if average_over == "all_anchors" or every_anchor_has_a_positive:
                torch.testing.assert_close(out, ref)
                torch.testing.assert_close(g_out[0], g_ref[0])
    per_ref = _supcontrast_ref(F.normalize(raw, dim=-1), y, t, tb)[1]
    torch.testing.assert_close(LF.supcon(raw, y, temperature=t, base_temperature=tb, reduction="none"), per_ref)


@pytest.mark.parametrize("id_", ["supcon", "ntxent"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_features_layout_equals_the_flattened_batch(id_: str, reduction: str) -> None:
    g = torch.Generator().manual_seed(24)
    b, v = 5, 3
    raw = torch.randn(b, v, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 2, 1])
    flat = torch.cat(torch.unbind(raw, 1))  # SupContrast's view-major order
    fn = getattr(LF, id_)
    for labels, flat_labels in ((y, y.repeat(v)), (None, torch.arange(b).repeat(v))):
        got, g_got = _grads(lambda f: fn(f, labels, temperature=0.3, reduction=reduction), raw)
        want, g_want = _grads(lambda f: fn(torch.cat(torch.unbind(f, 1)), flat_labels, temperature=0.3, reduction=reduction), raw)
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(g_got[0], g_want[0])
        mod = la.create(id_, temperature=0.3, reduction=reduction)
        torch.testing.assert_close(mod(raw, labels), fn(flat, flat_labels, temperature=0.3, reduction=reduction))


def test_multi_view_call_forms_raise_clear_errors() -> None:
    g = torch.Generator().manual_seed(25)
    z1, z2 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    feats = torch.stack([z1, z2], 1)
    for fn in (LF.ntxent, LF.supcon, la.create("ntxent"), la.create("supcon")):
        with pytest.raises(ValueError, match=r"second view and must have the shape of embeddings \(4, 3\), got \(4,\)"):
            fn(z1, z2[:, 0])
        with pytest.raises(ValueError, match=r"second view .* got \(4, 2\)"):
            fn(z1, z2[:, :2])
        with pytest.raises(ValueError, match="labels are required with embeddings of shape"):
            fn(z1)
        with pytest.raises(ValueError, match="^the second view contains NaN"):
            fn(z1, z2 * float("nan"))
        with pytest.raises(ValueError, match="^embeddings contains NaN"):
            fn(feats * float("nan"))
        with pytest.raises(TypeError, match=r"labels must be integer class ids \[bsz\] or None"):
            fn(feats, torch.zeros(4))
        with pytest.raises(ValueError, match=r"labels must have shape \[bsz\] = \[4\]"):
            fn(feats, torch.arange(8))
        with pytest.raises(TypeError, match=r"^labels must hold class indices of dtype torch.int64"):
            fn(feats, torch.arange(4, dtype=torch.int32))
        with pytest.raises(ValueError, match=r"embeddings must have shape \[N, D\] or \[bsz, n_views, D\]"):
            fn(feats.unsqueeze(0))


def test_supcon_base_temperature_scales_and_averaging_conventions() -> None:
    e, y = _batch(n=12, c=6, seed=7)
    y[0] = 9  # an anchor without positives
    a = la.create("supcon", temperature=0.1, base_temperature=0.1, reduction="none")(e, y)
    b = la.create("supcon", temperature=0.1, base_temperature=0.2, reduction="none")(e, y)
    torch.testing.assert_close(b, a / 2)
    assert a[0] == 0
    has_pos = torch.tensor([(y == y[i]).sum() > 1 for i in range(12)])
    torch.testing.assert_close(la.create("supcon", temperature=0.1, base_temperature=0.1)(e, y), a[has_pos].mean())
    torch.testing.assert_close(la.create("supcon", temperature=0.1, base_temperature=0.1, average_over="all_anchors")(e, y), a.mean())


def test_multi_similarity_none_matches_per_anchor_formula() -> None:
    e, y = _batch(n=10, c=3, seed=8)
    out = la.create("multi_similarity", alpha=2.0, beta=10.0, base=0.5, reduction="none")(e, y)
    u = F.normalize(e)
    s = u @ u.T
    for i in range(10):
        p = [j for j in range(10) if j != i and y[j] == y[i]]
        n = [j for j in range(10) if y[j] != y[i]]
        ref = (math.log1p(sum(math.exp(-2.0 * (s[i, j] - 0.5)) for j in p)) / 2.0
               + math.log1p(sum(math.exp(10.0 * (s[i, j] - 0.5)) for j in n)) / 10.0)
        assert out[i].item() == pytest.approx(ref, rel=1e-10)


def test_triplet_with_batch_hard_miner_equals_manual_batch_hard() -> None:
    e, y = _batch(n=16, c=4, seed=9)
    out = la.create("triplet_margin", margin=0.3, average_nonzero=False)(e, y, indices=BatchHardMiner()(e, y))
    d = torch.cdist(F.normalize(e), F.normalize(e))
    same = y[:, None] == y[None]
    hp = d.masked_fill(~same, -1).max(1).values
    hn = d.masked_fill(same, 9).min(1).values
    torch.testing.assert_close(out, F.relu(hp - hn + 0.3).mean())


@pytest.mark.parametrize("id_", PAIR_IDS)
def test_pair_losses_are_scale_and_permutation_invariant(id_: str) -> None:
    e, y = _batch(n=12, c=3, seed=10)
    crit = la.create(id_)
    perm = torch.randperm(12)
    base = crit(e, y)
    torch.testing.assert_close(crit(3.7 * e, y), base)
    torch.testing.assert_close(crit(e[perm], y[perm]), base)
    none = la.create(id_, reduction="none")(e, y)
    assert none.shape == (12,)
    torch.testing.assert_close(la.create(id_, reduction="sum")(e, y), none.sum())


def test_pair_reductions_are_the_documented_averages() -> None:
    e, y = _batch(n=12, c=3, seed=11)
    d = torch.cdist(F.normalize(e), F.normalize(e))
    same = (y[:, None] == y[None]) & ~torch.eye(12, dtype=torch.bool)
    diff = y[:, None] != y[None]
    lp, ln = F.relu(d - 0.1)[same], F.relu(0.9 - d)[diff]
    c = la.create("contrastive", pos_margin=0.1, neg_margin=0.9, average_nonzero=False)(e, y)
    torch.testing.assert_close(c, lp.mean() + ln.mean())
    cnz = la.create("contrastive", pos_margin=0.1, neg_margin=0.9)(e, y)
    torch.testing.assert_close(cnz, lp[lp > 0].mean() + ln[ln > 0].mean())
    nt = la.create("ntxent", temperature=0.5, reduction="sum")(e, y) / same.sum()
    torch.testing.assert_close(la.create("ntxent", temperature=0.5)(e, y), nt)


# ------------------------------------------------------------------ all-pairs / all-triplets fast paths
LABEL_PATTERNS = {
    "random_with_singleton": [0, 0, 1, 1, 1, 2, 3, 3, 3, 3, 4, 1, 0, 5],  # class 2 and 5: one sample
    "pairs": [0, 0, 1, 1, 2, 2, 3, 3, 4, 4],
    "uneven": [0, 0, 0, 0, 0, 0, 0, 1, 2, 2],
    "all_distinct": list(range(7)),  # no positive pair: no valid triplet
    "one_class": [3] * 6,  # no negative: no valid triplet
    "one_sample": [0],
}


def _ref_distances(e: Tensor) -> Tensor:
    """sqrt(2 − 2 uᵢ·uⱼ), exactly 0 (with zero gradient) where the argument is ≤ 0."""
    u = F.normalize(e, dim=1)
    x = (2.0 - 2.0 * (u @ u.T)).clamp_min(0.0)
    return torch.where(x > 0, x.clamp_min(1e-300).sqrt(), torch.zeros_like(x))


def _brute_force_triplets(e: Tensor, y: Tensor, margin: float, average_nonzero: bool, reduction: str) -> Tensor:
    """relu(d_ap − d_an + margin) over the dense [a, p, n] tensor, written out."""
    d = _ref_distances(e)
    n = len(y)
    same = y[:, None] == y[None]
    valid = (same & ~torch.eye(n, dtype=torch.bool))[:, :, None] & ~same[:, None, :]
    t = F.relu(d[:, :, None] - d[:, None, :] + margin) * valid
    if reduction == "none":
        return t.sum((1, 2))
    if reduction == "sum":
        return t.sum()
    count = (t > 0).sum() if average_nonzero else valid.sum()
    return t.sum() / max(int(count), 1)


def _brute_force_contrastive(e: Tensor, y: Tensor, pm: float, nm: float, average_nonzero: bool, reduction: str) -> Tensor:
    d = _ref_distances(e)
    same = y[:, None] == y[None]
    pos = same & ~torch.eye(len(y), dtype=torch.bool)
    lp, ln = F.relu(d - pm) * pos, F.relu(nm - d) * ~same
    if reduction != "mean":
        per = lp.sum(1) + ln.sum(1)
        return per if reduction == "none" else per.sum()
    cp = (lp > 0).sum() if average_nonzero else pos.sum()
    cn = (ln > 0).sum() if average_nonzero else (~same).sum()
    return lp.sum() / max(int(cp), 1) + ln.sum() / max(int(cn), 1)


@pytest.mark.parametrize("pattern", list(LABEL_PATTERNS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("average_nonzero", [True, False])
def test_all_triplets_equal_brute_force_dense_reference(pattern: str, reduction: str, average_nonzero: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from lossatlas.functional import metric as M

    y = torch.tensor(LABEL_PATTERNS[pattern])
    e = torch.randn(len(y), 5, generator=torch.Generator().manual_seed(len(y)), dtype=torch.float64)
    kw: dict[str, Any] = {"margin": 0.7, "average_nonzero": average_nonzero, "reduction": reduction}
    ref, ref_g = _value_and_grad(lambda x: _brute_force_triplets(x, y, 0.7, average_nonzero, reduction).sum(), e)
    out, g = _value_and_grad(lambda x: LF.triplet_margin(x, y, **kw).sum(), e)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(g[0], ref_g[0])
    if reduction == "none":
        torch.testing.assert_close(LF.triplet_margin(e, y, **kw), _brute_force_triplets(e, y, 0.7, average_nonzero, "none"))
    # the dense [a, p, n] form kept for torch.compile gives the same
    monkeypatch.setattr(M, "compiling", lambda: True)
    dense, dense_g = _value_and_grad(lambda x: LF.triplet_margin(x, y, **kw).sum(), e)
    torch.testing.assert_close(dense, ref)
    torch.testing.assert_close(dense_g[0], ref_g[0])


@pytest.mark.parametrize("pattern", list(LABEL_PATTERNS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("average_nonzero", [True, False])
def test_all_pairs_contrastive_equals_composed_and_reference(pattern: str, reduction: str, average_nonzero: bool) -> None:
    y = torch.tensor(LABEL_PATTERNS[pattern])
    e = torch.randn(len(y), 5, generator=torch.Generator().manual_seed(3 + len(y)), dtype=torch.float64)
    kw: dict[str, Any] = {"pos_margin": 0.2, "neg_margin": 1.1, "average_nonzero": average_nonzero, "reduction": reduction}
    w = torch.rand(len(y) if reduction == "none" else (), dtype=torch.float64) + 0.5  # a non-uniform upstream gradient
    ref, ref_g = _value_and_grad(lambda x: (_brute_force_contrastive(x, y, 0.2, 1.1, average_nonzero, reduction) * w).sum(), e)
    out, g = _value_and_grad(lambda x: (LF.contrastive(x, y, **kw) * w).sum(), e)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(g[0], ref_g[0])
    with force_path("plain"):  # the composed ops (mined pairs, torch.compile)
        comp, comp_g = _value_and_grad(lambda x: (LF.contrastive(x, y, **kw) * w).sum(), e)
    torch.testing.assert_close(comp, ref)
    torch.testing.assert_close(comp_g[0], ref_g[0])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_pairs_contrastive_gradcheck_and_coincident_rows(reduction: str) -> None:
    from lossatlas.functional import metric as M

    e, y = _batch(n=9, d=4, c=3, seed=21)
    gradcheck_loss(lambda x: LF.contrastive(x, y, pos_margin=0.1, neg_margin=1.3, reduction=reduction), e)
    # coincident rows of different classes (d = 0) and of the same class: zero gradient through d = 0,
    # as the composed form's safe square root
    # (axis-aligned rows: the unit vectors are exact, so those distances are exactly 0)
    e = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1, 2])
    from lossatlas.functional.metric import _unit_distances

    assert _unit_distances(F.normalize(e))[0, 1] == 0.0
    out, g = _value_and_grad(lambda x: LF.contrastive(x, y, reduction=reduction).sum(), e)
    ref, ref_g = _value_and_grad(lambda x: _brute_force_contrastive(x, y, 0.0, 1.0, True, reduction).sum(), e)
    assert torch.isfinite(g[0]).all()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(g[0], ref_g[0])
    comp, comp_g = _value_and_grad(
        lambda x: M._contrastive_composed(F.normalize(x, dim=1), y, 0.0, 1.0, True, None, reduction, x.dtype).sum(), e)
    torch.testing.assert_close(out, comp)
    torch.testing.assert_close(g[0], comp_g[0])


# ------------------------------------------------------------------ gradients
@pytest.mark.parametrize("id_", PAIR_IDS + ["supcon_all"])
def test_gradcheck_pair_losses(id_: str) -> None:
    e, y = _batch(n=8, d=4, c=3, seed=12)
    kw = {"average_over": "all_anchors"} if id_ == "supcon_all" else {}
    crit = la.create("supcon" if id_ == "supcon_all" else id_, **kw)
    gradcheck_loss(lambda x: crit(x, y), e)


@pytest.mark.parametrize("id_", CLS_IDS)
def test_gradcheck_classifier_losses(id_: str) -> None:
    e, y = _batch(n=6, d=4, c=5, seed=13)
    kw: dict[str, Any] = {"scale": 8.0} if id_ not in ("normalized_softmax",) else {}
    if id_ == "sface":
        kw["k"] = 0.0  # the sigmoid weights carry no gradient (by design); k = 0 makes them constant
    if id_ == "partial_fc":
        # insightface's ArcFace margin is straight-through in backward (not the derivative of
        # its value; see the official-definition tests below); CosFace's margin is a constant shift
        kw.update(sample_rate=1.0, margin_type="cosface")
    crit = _cls(id_, c=5, d=4, **kw)
    w = crit.weight.detach().clone()
    fn: Callable[..., Tensor] = getattr(LF, id_)
    gradcheck_loss(lambda x, ww: fn(x, y, ww, **kw), e, w)


# ------------------------------------------------------------------ extremes, dtypes
@pytest.mark.parametrize("id_", PAIR_IDS + CLS_IDS)
def test_extreme_embeddings_stay_finite(id_: str) -> None:
    if id_ in CLS_IDS:
        crit = la.create(id_, num_classes=5, embedding_size=5)
    else:
        crit = la.create(id_)
    assert_finite_extremes(lambda e, y: crit(e, y), num_classes=5, n=8)


@pytest.mark.parametrize("id_", PAIR_IDS + CLS_IDS)
def test_low_precision_computed_in_float32(id_: str) -> None:
    e, y = _batch(n=12, d=5, c=5, dtype=torch.float32)
    rate = {"sample_rate": 1.0} if id_ == "partial_fc" else {}
    crit = la.create(id_, num_classes=5, embedding_size=5, **rate) if id_ in CLS_IDS else la.create(id_)
    ref = crit(e, y)
    out = crit(e.bfloat16(), y)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=0.1, atol=0.05 * (1 + abs(float(ref.detach()))))


# ------------------------------------------------------------------ edge cases
@pytest.mark.parametrize("id_", PAIR_IDS + CLS_IDS)
def test_empty_batch_gives_zero(id_: str) -> None:
    crit = la.create(id_, num_classes=5, embedding_size=4) if id_ in CLS_IDS else la.create(id_)
    e = torch.zeros(0, 4, requires_grad=True)
    out = crit(e, torch.zeros(0, dtype=torch.long))
    assert out.item() == 0.0
    out.backward()


def test_one_class_batch() -> None:
    e, _ = _batch(n=6)
    y = torch.zeros(6, dtype=torch.long)
    er = e.clone().requires_grad_()
    # no negatives: PML-convention SupCon and NT-Xent give 0 (zero grad); SupContrast does not
    for id_ in ("supcon", "ntxent"):
        out = la.create(id_)(er, y)
        assert out.item() == 0.0
        (g,) = torch.autograd.grad(out, er)
        assert torch.count_nonzero(g) == 0
    assert la.create("supcon", average_over="all_anchors")(e, y).item() > 0
    assert la.create("triplet_margin")(e, y).item() == 0.0
    c = la.create("contrastive", pos_margin=0.0)(e, y)
    d = torch.cdist(F.normalize(e), F.normalize(e))
    torch.testing.assert_close(c, d[~torch.eye(6, dtype=torch.bool)].mean())
    ms = la.create("multi_similarity", reduction="none")(e, y)
    assert bool((ms > 0).all())


def test_no_positive_pair_batch() -> None:
    e, _ = _batch(n=5)
    y = torch.arange(5)
    assert la.create("triplet_margin")(e, y).item() == 0.0
    assert la.create("supcon")(e, y).item() == 0.0
    assert la.create("supcon", average_over="all_anchors")(e, y).item() == 0.0
    assert la.create("ntxent")(e, y).item() == 0.0
    c = la.create("contrastive", neg_margin=2.0)(e, y)
    assert c.item() > 0 and math.isfinite(c.item())
    ms = la.create("multi_similarity", miner_epsilon=0.1)(e, y)
    assert ms.item() == 0.0


def test_single_sample_and_duplicate_embeddings() -> None:
    e = torch.randn(1, 4, requires_grad=True)
    for id_ in PAIR_IDS:
        out = la.create(id_)(e, torch.tensor([0]))
        assert out.item() == 0.0
    # identical positives: distance 0, finite gradients
    e = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 1.0]], requires_grad=True)
    y = torch.tensor([0, 0, 1])
    for id_ in PAIR_IDS:
        out = la.create(id_)(e, y)
        (g,) = torch.autograd.grad(out, e)
        assert torch.isfinite(g).all(), id_


# ------------------------------------------------------------------ bad input
def test_bad_inputs_raise_clear_errors() -> None:
    e, y = _batch(n=6, c=3)
    crit = la.create("triplet_margin")
    with pytest.raises(ValueError, match="embeddings must have shape"):
        crit(e[0], y)
    with pytest.raises(TypeError, match="labels must hold integer"):
        crit(e, y.double())
    with pytest.raises(ValueError, match="labels must have shape"):
        crit(e, y[:3])
    with pytest.raises(TypeError, match="floating-point"):
        crit(e.long(), y)
    with pytest.raises(ValueError, match="NaN"):
        crit(e * float("nan"), y)
    with pytest.raises(ValueError, match="reduction"):
        la.create("contrastive", reduction="avg")
    with pytest.raises(ValueError, match="average_over"):
        la.create("supcon", average_over="anchors")
    with pytest.raises(ValueError, match="temperature"):
        la.create("ntxent", temperature=0.0)
    with pytest.raises(ValueError, match="margin_type"):
        la.create("unpg", num_classes=3, embedding_size=8, margin_type="sphereface")
    with pytest.raises(ValueError, match="num_classes"):
        la.create("arcface", num_classes=0, embedding_size=8)
    with pytest.raises(TypeError, match="requires the argument"):
        la.create("cosface", num_classes=3)
    with pytest.raises(ValueError, match="sample_rate"):
        la.create("partial_fc", num_classes=3, embedding_size=8, sample_rate=0.0)
    arc = la.create("arcface", num_classes=3, embedding_size=8).double()
    with pytest.raises(ValueError, match=r"labels values must be in \[0, 3\)"):
        arc(e, y + 5)
    with pytest.raises(ValueError, match="weight must have shape"):
        LF.arcface(e, y, torch.randn(3, 7, dtype=torch.float64))
    with pytest.raises(TypeError, match="indices must be"):
        crit(e, y, indices=(torch.tensor([0]),))
    with pytest.raises(ValueError, match="index the batch"):
        crit(e, y, indices=(torch.tensor([0]), torch.tensor([9]), torch.tensor([1])))
    with pytest.raises(ValueError, match="not both"):
        la.create("multi_similarity", miner_epsilon=0.1)(e, y, indices=BatchHardMiner()(e, y))


@pytest.mark.parametrize("id_", ["triplet_margin", "contrastive"])
def test_mined_indices_must_lie_in_the_batch_up_to_its_last_row(id_: str) -> None:
    # [0, N) exactly (mutation seed 27): N - 1 is the last row; N and -1 are refused, naming the tensor
    e, y = _batch(n=6, c=3)
    crit = la.create(id_)
    last = crit(e, y, indices=(torch.tensor([0]), torch.tensor([3]), torch.tensor([5])))
    assert torch.isfinite(last)
    for k, bad in ((2, 6), (1, -1), (0, 6)):
        idx = [torch.tensor([0]), torch.tensor([3]), torch.tensor([5])]
        idx[k] = torch.tensor([bad])
        with pytest.raises(ValueError, match=rf"^indices\[{k}\] must index the batch of 6 embeddings, found values "
                                             r"outside \[0, 6\)$"):
            crit(e, y, indices=tuple(idx))


# ------------------------------------------------------------------ benchmark task `metric`
def test_metric_task_validates_recipes() -> None:
    from lossatlas.bench.tasks import metric

    r = metric.validate({"task": "metric"})
    assert r["data"]["train_classes"] == list(range(7)) and r["data"]["test_classes"] == [7, 8, 9]
    assert r["loss"]["id"] == "multi_similarity" and r["sampler"] == {"p": 7, "k": 16}
    with pytest.raises(ValueError, match="disjoint"):
        metric.validate({"data": {"train_classes": [0, 1], "test_classes": [1, 2]}})
    with pytest.raises(ValueError, match="embedding loss"):
        metric.validate({"loss": {"id": "cross_entropy"}})
    with pytest.raises(ValueError, match="miner"):
        metric.validate({"miner": {"name": "hardest"}})
    with pytest.raises(ValueError, match="sampler.p"):
        metric.validate({"sampler": {"p": 9}})
    with pytest.raises(ValueError, match="unknown options"):
        metric.validate({"loss": {"id": "arcface", "margn": 0.5}})


@pytest.mark.parametrize("loss,miner", [({"id": "triplet_margin"}, {"name": "batch_hard"}), ({"id": "arcface"}, None)])
def test_metric_task_runs_and_reports_retrieval(loss: dict[str, Any], miner: dict[str, Any] | None) -> None:
    from lossatlas.bench.tasks import metric

    recipe = {"task": "metric", "data": {"num_samples": 400}, "model": {"name": "mlp", "embedding_size": 8},
              "loss": loss, "miner": miner, "sampler": {"p": 3, "k": 4}, "epochs": 1, "steps_per_epoch": 2}
    calls = []
    out = metric.run(recipe, 0, torch.device("cpu"), progress=lambda d, t, m="": calls.append((d, t)))
    assert calls == [(1, 1)]
    for key in ("recall@1", "recall@8", "map@r", "seen_recall@1"):
        assert 0.0 <= out[key] <= 1.0, key
    assert out["recall@1"] <= out["recall@8"]
    assert out["n_query"] > 0 and out["n_train"] > 0
    assert out["primary_metric"] == "map@r"  # what the report ranks the metric suite by


# ===================================================================== official code's definitions (ArcFace, UNPG, Partial FC)
CAP = -math.log(1e-30)
DT = torch.float64


def _unit(x: Tensor) -> Tensor:
    return x / x.pow(2).sum(1, keepdim=True).sqrt()


def _adversarial_batch(n: int = 12, d: int = 6, c: int = 7, seed: int = 0, flip: tuple[int, int] = (0, 3)) -> tuple[Tensor, Tensor, Tensor]:
    """Random embeddings / centres where the rows in ``flip`` point (almost) opposite their
    class centre, so θ_y + 0.5 > π there; one of them is also close to another centre,
    which pushes its cross-entropy past −log 1e-30 at scale 64."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(c, d, generator=g, dtype=DT)
    y = torch.randint(0, c, (n,), generator=g)
    e = torch.randn(n, d, generator=g, dtype=DT)
    for i in flip:
        e[i] = -_unit(w)[y[i]] + 0.05 * torch.randn(d, generator=g, dtype=DT)
    other = int((y[flip[0]] + 1) % c)
    e[flip[0]] = -_unit(w)[y[flip[0]]] + 0.9 * _unit(w)[other]
    return e, y, w


def _target_angles(e: Tensor, y: Tensor, w: Tensor) -> Tensor:
    return torch.acos((_unit(e) @ _unit(w).T).gather(1, y[:, None]).squeeze(1).clamp(-1, 1))


def _reduce(per: torch.Tensor, reduction: str) -> torch.Tensor:
    return {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]


# ===================================================================== 1. ArcFace defaults
def _arcface_ref(e: Tensor, y: Tensor, w: Tensor, m: float, s: float) -> Tensor:
    """CE(s·z, y), z = cos with the target cos(θ + m) (θ ≤ π − m here, so no fallback)."""
    cos = _unit(e) @ _unit(w).T
    theta = torch.acos(cos.gather(1, y[:, None]).clamp(-1, 1))
    z = cos.scatter(1, y[:, None], torch.cos(theta + m))
    return torch.mean(torch.logsumexp(s * z, dim=1) - s * z.gather(1, y[:, None]).squeeze(1))


def test_arcface_module_and_function_share_insightface_defaults() -> None:
    crit = la.create("arcface", num_classes=5, embedding_size=4)
    assert crit.margin == 0.5 and crit.scale == 64.0
    sig = inspect.signature(LF.arcface).parameters
    assert sig["margin"].default == 0.5 and sig["scale"].default == 64.0
    entry = la.info("arcface")
    assert entry.defaults["margin"] == 0.5 and entry.defaults["scale"] == 64.0
    assert "insightface" in entry.defaults_source["margin"] and "0.5" in entry.defaults_source["margin"]
    assert "insightface" in entry.defaults_source["scale"]


def test_arcface_default_loss_is_insightface_m_half_s_64() -> None:
    g = torch.Generator().manual_seed(3)
    e, y = torch.randn(10, 4, generator=g, dtype=DT), torch.randint(0, 5, (10,), generator=g)
    crit = _head("arcface", num_classes=5, embedding_size=4).double()
    w = crit.weight.detach()
    assert bool((_target_angles(e, y, w) <= math.pi - 0.5).all())
    ref = _arcface_ref(e, y, w, 0.5, 64.0)
    torch.testing.assert_close(crit(e, y), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(LF.arcface(e, y, w), ref, rtol=1e-12, atol=1e-12)
    # PML's 28.6° (the old module default) is a different loss
    assert abs(float(_arcface_ref(e, y, w, math.radians(28.6), 64.0)) - float(ref)) > 1e-6


# ===================================================================== 2. UNPG
def _unpg_ref(e: Tensor, y: Tensor, w: Tensor, m: float = 0.5, s: float = 64.0, wisk: float = 1.5,
              reduction: str = "mean") -> tuple[Tensor, int, int]:
    """Jung-Jun-Uk/UNPG's ArcFace head + box_and_whisker_algorithm + UNPG head, in float64."""
    u, wn = _unit(e), _unit(w)
    cos = u @ wn.T
    n = e.shape[0]
    rows = torch.arange(n)
    logits = cos.clone()
    logits[rows, y] = torch.cos(torch.acos(cos[rows, y]) + m)  # every θ, no threshold / easy margin
    sims = u @ u.T
    sn = torch.stack([sims[i, j] for i in range(n) for j in range(i + 1, n) if y[i] != y[j]])
    x = torch.sort(sn).values
    q1, q3 = x[int(0.25 * len(x))], x[int(0.75 * len(x))]
    iqr = q3 - q1
    kept = x[(x >= q1 - wisk * iqr) & (x <= q3 + wisk * iqr)]
    full = torch.cat([logits, kept.unsqueeze(0).expand(n, -1)], dim=1)
    per = -torch.log_softmax(s * full, dim=1)[rows, y]
    return _reduce(per, reduction), len(x), len(kept)


def test_unpg_defaults_are_the_official_configs() -> None:
    crit = la.create("unpg", num_classes=5, embedding_size=4)
    assert isinstance(crit, la.losses.UNPGLoss)
    assert (crit.margin, crit.scale, crit.whisker, crit.margin_type) == (0.5, 64.0, 1.5, "arcface")
    sig = inspect.signature(LF.unpg).parameters
    assert (sig["margin"].default, sig["scale"].default, sig["whisker"].default) == (0.5, 64.0, 1.5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_unpg_matches_official_definition_past_pi_minus_m(reduction: str) -> None:
    # D = 32: random cosines concentrate near 0, so a near-duplicate different-label pair
    # (cos ≈ 1) is an outlier negative pair that the filter drops
    e, y, w = _adversarial_batch(d=32, seed=1)
    j = int(torch.nonzero(y != y[5])[-1])  # not one of the flipped rows 0, 3
    assert j not in (0, 3)
    e[j] = e[5] + 1e-3
    assert bool((_target_angles(e, y, w) + 0.5 > math.pi).any())
    ref_e, ref_w = e.clone().requires_grad_(), w.clone().requires_grad_()
    ref, n_neg, n_kept = _unpg_ref(ref_e, y, ref_w, reduction=reduction)
    assert n_kept < n_neg  # the box-and-whisker filter is in play
    ours_e, ours_w = e.clone().requires_grad_(), w.clone().requires_grad_()
    ours = LF.unpg(ours_e, y, ours_w, reduction=reduction)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    g_ref = torch.autograd.grad(ref.sum(), [ref_e, ref_w])
    g_ours = torch.autograd.grad(ours.sum(), [ours_e, ours_w])
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    # the module with its defaults is the same loss
    crit = _head("unpg", num_classes=w.shape[0], embedding_size=w.shape[1], reduction=reduction).double()
    crit.weight.data.copy_(w)
    torch.testing.assert_close(crit(e, y), ref.detach(), rtol=1e-10, atol=1e-10)


def test_unpg_gradcheck_past_pi_minus_m() -> None:
    e, y, w = _adversarial_batch(n=8, d=4, c=5, seed=2, flip=(0, 2))
    e[0] = e[0] + 0.3 * torch.randn(4, generator=torch.Generator().manual_seed(9), dtype=DT)  # keep |cos| < 1
    assert bool((_target_angles(e, y, w) + 0.5 > math.pi).any())
    gradcheck_loss(lambda x, ww: LF.unpg(x, y, ww, scale=4.0), e, w)


# ===================================================================== 3. Partial FC
def _pfc_ref(e: Tensor, y: Tensor, w: Tensor, index: Tensor, m: float = 0.5, s: float = 64.0, margin_type: str = "arcface",
             reduction: str = "mean") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """insightface PartialFC_V2 + CombinedMarginLoss + DistCrossEntropy (one process), float64.

    Returns the loss and the analytic gradients w.r.t. ``e`` and the full ``w``:
    ∂L/∂cos = s·(softmax − onehot)·r (r = 1/N for "mean", 1 otherwise, summed for "none"),
    zero where the raw cosine left [−1, 1]; then through the two L2 normalisations.
    """
    n = e.shape[0]
    rows = torch.arange(n)
    local = torch.tensor([index.tolist().index(int(v)) for v in y])
    ne, nw = e.norm(dim=1, keepdim=True), w[index].norm(dim=1, keepdim=True)
    u, wn = e / ne, w[index] / nw
    raw = u @ wn.T
    cos = raw.clamp(-1.0, 1.0)
    z = cos.clone()
    ct = cos[rows, local]
    if margin_type == "arcface":
        z[rows, local] = torch.cos(torch.acos(ct) + m)
    elif margin_type == "cosface":
        z[rows, local] = ct - m
    logits = s * z
    logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    per = torch.minimum(-logp[rows, local], torch.full((n,), CAP, dtype=DT))  # −log max(p, 1e-30)
    onehot = torch.zeros_like(z)
    onehot[rows, local] = 1.0
    r = 1.0 / n if reduction == "mean" else 1.0
    g_cos = s * (logp.exp() - onehot) * r * ((raw >= -1) & (raw <= 1))
    g_u, g_wn = g_cos @ wn, g_cos.T @ u
    g_e = (g_u - u * (u * g_u).sum(1, keepdim=True)) / ne
    g_wsub = (g_wn - wn * (wn * g_wn).sum(1, keepdim=True)) / nw
    g_w = torch.zeros_like(w)
    g_w[index] = g_wsub
    return _reduce(per, reduction), g_e, g_w, per


def _ours_with_grads(fn: Callable[[Tensor, Tensor], Tensor], e: Tensor, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    ee, ww = e.clone().requires_grad_(), w.clone().requires_grad_()
    out = fn(ee, ww)
    g_e, g_w = torch.autograd.grad(out.sum(), [ee, ww])
    return out.detach(), g_e, g_w


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("margin_type", ["arcface", "cosface", "normface"])
def test_partial_fc_matches_insightface_value_and_straight_through_gradient(margin_type: str, reduction: str) -> None:
    e, y, w = _adversarial_batch(seed=0)
    index = torch.arange(w.shape[0])
    ref, g_e, g_w, per = _pfc_ref(e, y, w, index, margin_type=margin_type, reduction=reduction)
    if margin_type == "arcface":
        assert bool((_target_angles(e, y, w) + 0.5 > math.pi).any())  # cos(θ + m) past π − m
    assert bool((per == CAP).any())  # one loss is capped at −log 1e-30
    out, ge, gw = _ours_with_grads(
        lambda x, ww: LF.partial_fc(x, y, ww, sample_rate=1.0, margin_type=margin_type, reduction=reduction), e, w)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ge, g_e, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(gw, g_w, rtol=1e-8, atol=1e-10)


def test_partial_fc_module_defaults_match_insightface_reference() -> None:
    e, y, w = _adversarial_batch(seed=4)
    crit = la.create("partial_fc", num_classes=w.shape[0], embedding_size=w.shape[1], sample_rate=1.0).double()
    assert isinstance(crit, la.losses.PartialFCLoss)
    assert (crit.margin, crit.scale, crit.margin_type) == (0.5, 64.0, "arcface")
    crit.weight.data.copy_(w)
    ee = e.clone().requires_grad_()
    out = crit(ee, y)
    out.backward()
    ref, g_e, g_w, _ = _pfc_ref(e, y, w, torch.arange(w.shape[0]))
    torch.testing.assert_close(out.detach(), ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ee.grad, g_e, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(crit.weight.grad, g_w, rtol=1e-8, atol=1e-10)


def test_partial_fc_clamps_cosines_to_unit_interval() -> None:
    # an embedding parallel to its centre: the raw cosine may round above 1; clamped it is 1
    g = torch.Generator().manual_seed(5)
    w = torch.randn(4, 3, generator=g, dtype=DT)
    e = torch.cat([w[1:2] * 3.0, torch.randn(3, 3, generator=g, dtype=DT)])
    y = torch.tensor([1, 0, 2, 3])
    ref, g_e, g_w, _ = _pfc_ref(e, y, w, torch.arange(4), s=8.0, reduction="none")
    out, ge, gw = _ours_with_grads(
        lambda x, ww: LF.partial_fc(x, y, ww, sample_rate=1.0, scale=8.0, reduction="none"), e, w)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    assert torch.isfinite(ge).all() and torch.isfinite(gw).all()
    torch.testing.assert_close(ge, g_e, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(gw, g_w, rtol=1e-8, atol=1e-10)


def test_partial_fc_index_keyword_uses_exactly_those_centres() -> None:
    e, y, w = _adversarial_batch(n=10, c=40, seed=6)
    index = torch.unique(torch.cat([y, torch.tensor([2, 11, 37])]))
    ref, g_e, g_w, _ = _pfc_ref(e, y, w, index)
    # sample_rate and the generator are ignored: no random draw
    fn = lambda x, ww: LF.partial_fc(x, y, ww, sample_rate=0.01, index=index, generator=torch.Generator())
    out, ge, gw = _ours_with_grads(fn, e, w)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ge, g_e, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(gw, g_w, rtol=1e-8, atol=1e-10)
    touched = torch.nonzero(gw.abs().sum(1) > 0).flatten()
    assert torch.equal(touched, index)
    # the module takes it as a call keyword
    crit = _head("partial_fc", num_classes=40, embedding_size=w.shape[1], sample_rate=0.01, seed=0).double()
    crit.weight.data.copy_(w)
    torch.testing.assert_close(crit(e, y, index=index), ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(crit(e, y, index=index.to(torch.int32)), ref, rtol=1e-10, atol=1e-10)


def test_partial_fc_index_on_another_device_names_labels_and_index() -> None:
    # a "meta" tensor stands in for a second device on a CPU-only machine (mutation seed 27)
    g = torch.Generator().manual_seed(7)
    e = torch.randn(3, 4, generator=g, dtype=DT)
    w = torch.randn(5, 4, generator=g, dtype=DT)
    with pytest.raises(ValueError, match=r"^labels is on cpu but index is on meta; move them to the same device$"):
        LF.partial_fc(e, torch.tensor([0, 1, 2]), w, index=torch.tensor([0, 1, 2], device="meta"))


@pytest.mark.parametrize("bad,match", [
    (torch.tensor([5, 1, 2, 3, 4, 6]), "sorted"),            # not ascending
    (torch.tensor([0, 1, 1, 2, 3, 4, 5, 6]), "sorted"),      # repeats
    (torch.tensor([0, 1, 2]), "include every class"),        # a label is missing
    (torch.arange(0, 12), r"\[0, 10\)"),                     # beyond num_classes
    (torch.tensor([-1, 0, 1, 2, 3, 4, 5, 6]), r"\[0, 10\)"),  # negative id
    (torch.arange(8).reshape(2, 4), "1-D"),                  # not [S]
    (torch.zeros(0, dtype=torch.long), "non-empty"),         # empty
])
def test_partial_fc_bad_index_raises_value_error_naming_index(bad: Tensor, match: str) -> None:
    g = torch.Generator().manual_seed(7)
    e = torch.randn(6, 4, generator=g, dtype=DT)
    y = torch.tensor([0, 1, 2, 3, 4, 6])
    w = torch.randn(10, 4, generator=g, dtype=DT)
    with pytest.raises(ValueError, match="index") as info:
        LF.partial_fc(e, y, w, index=bad)
    assert info.match(match)
    crit = la.create("partial_fc", num_classes=10, embedding_size=4)
    with pytest.raises(ValueError, match="index"):
        crit(e.float(), y, index=bad)


def test_partial_fc_index_of_wrong_type_raises_type_error_naming_index() -> None:
    e, y = torch.randn(3, 4), torch.tensor([0, 1, 2])
    w = torch.randn(5, 4)
    with pytest.raises(TypeError, match="index"):
        LF.partial_fc(e, y, w, index=torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="index"):
        LF.partial_fc(e, y, w, index=[0, 1, 2])  # type: ignore[arg-type]  # the wrong type is the test


def test_unpg_filter_mask_equals_box_and_whisker_on_every_length() -> None:
    from lossatlas.functional.metric import _whisker_mask

    g = torch.Generator().manual_seed(8)
    for length in range(1, 41):
        values = torch.randn(length + 7, generator=g, dtype=DT)
        values[:3] = torch.tensor([5.0, -4.0, 0.1], dtype=DT)  # outliers and a repeat
        values[3] = 0.1
        valid = torch.ones_like(values, dtype=torch.bool)
        valid[torch.randperm(values.numel(), generator=g)[:7]] = False
        valid[0] = length > 3  # the outlier is sometimes among the valid values
        for wisk in (0.0, 1.5):
            kept = values[_whisker_mask(values, valid, wisk)].sort().values
            torch.testing.assert_close(kept, LF.box_and_whisker_filter(values[valid], wisk), rtol=0, atol=0)


def test_unpg_compiles_to_one_graph() -> None:
    e, y, w = _adversarial_batch(d=8, seed=3)
    crit = _head("unpg", num_classes=w.shape[0], embedding_size=8, validate=False).double()
    crit.weight.data.copy_(w)
    torch._dynamo.reset()
    compiled = torch.compile(crit, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(e, y), _unpg_ref(e, y, w)[0], rtol=1e-10, atol=1e-10)


# ========================================================================= identical points (distance exactly 0)
def _duplicated_batch(dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """12 rows, 5 classes; rows 1, 4, 11 repeat rows 0, 3, 10 (same label), row 7 is 4 × row 5
    (the same unit row: a power-of-two scale normalises exactly), row 9 repeats row 2 with
    another label. 12 ≤ 25 rows: torch.cdist (pytorch-metric-learning's distance) takes its
    exact difference path, where identical points are at distance 0."""
    g = torch.Generator().manual_seed(0)
    e = torch.randn(12, 5, generator=g, dtype=dtype)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4])
    e[1], e[4], e[7], e[11], e[9] = e[0], e[3], 4 * e[5], e[10], e[2]
    return e, y


@pytest.mark.parametrize("path", ["plain", "fused"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_contrastive_equals_pml_on_duplicated_same_label_rows(pml: Any, dtype: torch.dtype, path: str) -> None:
    # identical positives are at distance 0: their term relu(0 − m+) is 0 and AvgNonZero does
    # not count it (a rounding distance of ~1e-8 would count it and change the mean)
    e, y = _duplicated_batch(dtype)
    tol: dict[str, Any] = {"rtol": 1e-6, "atol": 1e-7} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-14}
    for kw in ({}, {"pos_margin": 0.1, "neg_margin": 0.8}):
        with force_path(path):  # type: ignore[arg-type]  # the path names are the parameter
            ours, g_ours = _value_and_grad(lambda x: la.create("contrastive", **kw)(x, y), e)
        ref, g_ref = _value_and_grad(lambda x: pml.losses.ContrastiveLoss(**kw)(x, y), e)
        assert torch.isfinite(g_ours[0]).all()
        torch.testing.assert_close(ours, ref, **tol)
        torch.testing.assert_close(g_ours[0], g_ref[0], **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triplet_equals_pml_on_duplicated_rows(pml: Any, dtype: torch.dtype) -> None:
    e, y = _duplicated_batch(dtype)
    tol: dict[str, Any] = {"rtol": 1e-6, "atol": 1e-7} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-14}
    ours, g_ours = _value_and_grad(lambda x: la.create("triplet_margin", margin=0.05)(x, y), e)
    ref, g_ref = _value_and_grad(lambda x: pml.losses.TripletMarginLoss(margin=0.05)(x, y), e)
    torch.testing.assert_close(ours, ref, **tol)
    torch.testing.assert_close(g_ours[0], g_ref[0], **tol)


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identical_points_are_at_distance_exactly_zero_with_zero_gradient(dtype: torch.dtype, traced: bool,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from lossatlas.functional import metric as M
    from lossatlas.functional.metric import _unit_distances

    if traced:  # the mask built without a host read (CUDA, torch.compile)
        monkeypatch.setattr(M, "compiling", lambda: True)

    # a batch large enough that a Gram matrix leaves rounding on the diagonal and between
    # duplicates (2 − 2 u·u ≠ 0): the distances must still be exactly 0 there
    g = torch.Generator().manual_seed(1)
    e = torch.randn(64, 128, generator=g, dtype=dtype)
    src, dst = torch.arange(0, 20), torch.arange(40, 60)
    e[dst] = e[src] * 2.0
    e.requires_grad_()
    u = F.normalize(e, dim=1)
    d = _unit_distances(u)
    same = (u.detach().unsqueeze(1) == u.detach().unsqueeze(0)).all(-1)
    assert int(same.sum()) == 64 + 2 * 20
    assert bool((d[same] == 0).all())
    # elsewhere: the exact-difference distance (torch.cdist without the matrix product)
    exact = torch.cdist(u, u, compute_mode="donot_use_mm_for_euclid_dist")
    tol: dict[str, Any] = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}
    torch.testing.assert_close(d, exact, **tol)
    # gradient w.r.t. the raw rows (sqrt(2 − 2 u·u) and ‖u_i − u_j‖ differ off the sphere, not on
    # it): finite, cdist's, and zero through the zero distances (as cdist's)
    w = torch.rand(64, 64, generator=g, dtype=dtype)
    (g_ours,) = torch.autograd.grad((d * w).sum(), e, retain_graph=True)
    (g_exact,) = torch.autograd.grad((exact * w).sum(), e, retain_graph=True)
    assert torch.isfinite(g_ours).all()
    torch.testing.assert_close(g_ours, g_exact, **tol)
    (g_dup,) = torch.autograd.grad((d * same).sum(), e)
    assert bool((g_dup == 0).all())


# ========================================================================= the one core: function = definition
METRIC_IDS = PAIR_IDS + CLS_IDS
# losses over a whole batch or episode (no pair indices, no class centres): few-shot (F8), Metrix (F9), SCoRe (F11)
SET_IDS = {"icnn": ("embeddings", "labels"), "proto_triplet": ("embeddings", "labels"), "metrix": ("anchors", "mixed"),
           "score_facility_location": ("embeddings", "labels"), "score_logdet": ("embeddings", "labels")}


def test_every_set_level_metric_id_is_defined_by_its_function() -> None:
    """The batch-level metric losses are FunctionalLoss twins of their registered functions,
    with the function's defaults and sources."""
    from lossatlas._spec import spec_of

    for loss_id, inputs in SET_IDS.items():
        entry = la.info(loss_id)
        assert entry.family == "metric" and entry.function is getattr(LF, loss_id), loss_id
        spec = spec_of(entry.function)
        assert spec.inputs == inputs, loss_id
        assert spec.defaults and all(entry.defaults[k] == v for k, v in spec.defaults.items()), loss_id
        assert set(spec.sources) <= set(entry.defaults_source), loss_id
        assert issubclass(entry.cls, la.FunctionalLoss), loss_id


def test_every_metric_id_is_defined_by_its_function() -> None:
    """la.functional.<id> is the registered loss_function; its Params give the module's
    defaults and their sources; the pair losses are FunctionalLoss twins, the heads with class
    centres check with the same spec."""
    from lossatlas._spec import spec_of

    assert {e.id for e in la.list(family="metric")} == set(METRIC_IDS) | set(SET_IDS) | {"orthohash"}
    hashing = la.info("orthohash")  # a fixed ±1 codebook in place of learnt class centres (tests/losses/test_hashing.py)
    assert hashing.function is LF.orthohash and spec_of(LF.orthohash).inputs == ("embeddings", "labels", "codebook")
    for loss_id in METRIC_IDS:
        entry = la.info(loss_id)
        assert entry.function is getattr(LF, loss_id), loss_id
        spec = spec_of(entry.function)
        assert spec.inputs == (("embeddings", "labels") if loss_id in PAIR_IDS else ("embeddings", "labels", "weight"))
        for name, default in spec.defaults.items():
            assert entry.defaults[name] == default, (loss_id, name)
        assert set(spec.sources) <= set(entry.defaults_source), loss_id
        if loss_id in PAIR_IDS:
            assert issubclass(entry.cls, la.FunctionalLoss) and "indices" in spec.call, loss_id
        else:
            assert issubclass(entry.cls, _ClassifierLoss) and entry.cls.spec is spec, loss_id
    # the metric contrastive loss owns the name (the SSL family's pair losses live in functional.ssl)
    assert LF.contrastive.__module__ == "lossatlas.functional.metric"
    assert la.info("pair_contrastive").id == "contrastive"
    assert "pytorch-metric-learning" in la.info("contrastive").defaults_source["neg_margin"]
    assert "insightface" in la.info("partial_fc").defaults_source["sample_rate"]


def _w(c: int = 5, d: int = 4) -> Tensor:
    return torch.randn(c, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


@pytest.mark.parametrize("call,exc,match", [
    (lambda e, y: LF.contrastive(e, y, average_nonzero=1), TypeError, "average_nonzero"),  # type: ignore[arg-type]  # the wrong type is the test
    (lambda e, y: la.create("contrastive", pos_margin="0"), TypeError, "pos_margin"),
    (lambda e, y: LF.triplet_margin(e, y, margin=math.inf), ValueError, "margin"),
    (lambda e, y: LF.supcon(e, y, average_over="anchors"), ValueError, "average_over"),
    (lambda e, y: la.create("supcon", base_temperature=0.0), ValueError, "base_temperature"),
    (lambda e, y: LF.multi_similarity(e, y, miner_epsilon=-0.1), ValueError, "miner_epsilon"),
    (lambda e, y: LF.threshold_consistent_margin(e, y, margin_plus=1.5), ValueError, "margin_plus"),
    (lambda e, y: LF.arcface(e, y, _w(), margin=4.0), ValueError, "margin"),
    (lambda e, y: la.create("arcface", num_classes=5, embedding_size=4, margin=-0.1), ValueError, "margin"),
    (lambda e, y: la.create("cosface", num_classes=5, embedding_size=4, scale=0.0), ValueError, "scale"),
    (lambda e, y: la.create("cosface", num_classes=5, embedding_size=4, margn=0.2), TypeError, "margn"),
    (lambda e, y: LF.sface(e, y, _w(), k=-1.0), ValueError, "k"),
    (lambda e, y: la.create("sface", num_classes=5, embedding_size=4, validate="yes"), TypeError, "validate"),
    (lambda e, y: LF.unpg(e, y, _w(), margin_type="sphereface"), ValueError, "margin_type"),
    (lambda e, y: la.create("unpg", num_classes=5, embedding_size=4, whisker=-1.0), ValueError, "whisker"),
    (lambda e, y: LF.partial_fc(e, y, _w(), sample_rate=1.5), ValueError, "sample_rate"),
    (lambda e, y: la.create("partial_fc", num_classes=5, embedding_size=4, seed=1.5), TypeError, "seed"),
    (lambda e, y: LF.normalized_softmax(e, y, _w(), reduction="avg"), ValueError, "reduction"),
])
def test_functions_and_modules_check_hyperparameters_by_name(call: Callable[[Tensor, Tensor], object],
                                                             exc: type[Exception], match: str) -> None:
    e, y = _batch(n=6, d=4, c=5)
    with pytest.raises(exc, match=match):
        call(e, y)


@pytest.mark.parametrize("id_,kw", [
    ("normalized_softmax", {"temperature": 0.2}),
    ("cosface", {"margin": 0.2, "scale": 16.0, "reduction": "none"}),
    ("arcface", {"margin": 0.3, "scale": 10.0, "reduction": "sum"}),
    ("sface", {"scale": 8.0, "k": 10.0, "a": 0.7, "b": 1.3}),
    ("unpg", {"margin": 0.2, "scale": 8.0, "margin_type": "cosface", "whisker": 1.0}),
    ("partial_fc", {"sample_rate": 0.5, "margin": 0.3, "scale": 8.0, "margin_type": "cosface", "seed": 3}),
])
def test_head_functional_kwargs_make_the_function_the_module(id_: str, kw: dict[str, Any]) -> None:
    e, y = _batch(n=10, d=6, c=8, seed=5)
    crit = _cls(id_, c=8, d=6, **kw)
    fn = la.info(id_).function
    assert fn is not None
    fkw = crit.functional_kwargs()
    assert fkw["weight"] is crit.weight
    assert {k: v for k, v in fkw.items() if k not in ("weight", "generator")} == crit.hparams()
    torch.manual_seed(7)
    out = fn(e, y, **fkw)
    (g_fn,) = torch.autograd.grad(out.sum(), crit.weight)
    torch.manual_seed(7)
    ref = crit(e, y)
    (g_mod,) = torch.autograd.grad(ref.sum(), crit.weight)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    torch.testing.assert_close(g_fn, g_mod, rtol=0, atol=0)


def test_partial_fc_functional_kwargs_hand_a_copy_of_the_generator() -> None:
    e, y = _batch(n=6, d=4, c=3)
    crit = _cls("partial_fc", c=200, d=4, sample_rate=0.05, seed=11)
    first = crit.functional_kwargs()
    again = crit.functional_kwargs()
    touched = []
    for kw in (first, again):
        w = crit.weight.detach().clone().requires_grad_()
        LF.partial_fc(e, y, **{**kw, "weight": w}).backward()
        assert w.grad is not None
        touched.append(torch.nonzero(w.grad.abs().sum(1) > 0).flatten())
    assert torch.equal(touched[0], touched[1])  # the module's generator did not move
    crit(e, y).backward()  # the module's own next draw is the one the copies made
    assert crit.weight.grad is not None
    assert torch.equal(torch.nonzero(crit.weight.grad.abs().sum(1) > 0).flatten(), touched[0])
    # the next call draws other centres
    crit.weight.grad = None
    crit(e, y).backward()
    assert crit.weight.grad is not None
    assert not torch.equal(torch.nonzero(crit.weight.grad.abs().sum(1) > 0).flatten(), touched[0])


# ========================================================================= torch.compile without host reads
@pytest.mark.parametrize("id_,kw,mined", [
    ("supcon", {}, False), ("supcon", {"average_over": "all_anchors"}, False), ("ntxent", {}, False),
    ("multi_similarity", {"miner_epsilon": 0.1}, False), ("contrastive", {}, True), ("ntxent", {}, True),
    ("threshold_consistent_margin", {}, True), ("triplet_margin", {}, True),
])
@pytest.mark.parametrize("labels", ["pairs", "one_class", "all_distinct"])
def test_compiled_pair_losses_capture_one_graph_on_degenerate_batches(id_: str, kw: dict[str, Any], mined: bool,
                                                                      labels: str) -> None:
    # the "no positive or no negative pair" rules are torch.where, not Python branches on
    # tensor values: fullgraph capture works for every batch, and gives eager's values
    e, _ = _batch(n=12, d=5, seed=14)
    y = {"pairs": torch.arange(12) % 6, "one_class": torch.zeros(12, dtype=torch.long), "all_distinct": torch.arange(12)}[labels]
    call = {"indices": BatchHardMiner()(e, torch.arange(12) % 4)} if mined else {}
    crit = la.create(id_, validate=False, **kw)
    ref, g_ref = _value_and_grad(lambda x: crit(x, y, **call), e)
    torch._dynamo.reset()
    compiled = torch.compile(crit, backend="aot_eager", fullgraph=True)
    out, g = _value_and_grad(lambda x: compiled(x, y, **call), e)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g[0], g_ref[0], rtol=1e-9, atol=1e-11)


def test_mined_indices_are_range_checked_only_with_validate() -> None:
    e, y = _batch(n=6, d=4, c=3)
    bad = (torch.tensor([0]), torch.tensor([9]), torch.tensor([1]))
    with pytest.raises(ValueError, match="index the batch"):
        LF.contrastive(e, y, indices=bad)
    # validate=False reads no tensor values: the check is skipped (indexing then fails in torch)
    with pytest.raises(IndexError):
        LF.contrastive(e, y, indices=bad, validate=False)


# ------------------------------------------------------------------ conventions at non-default settings
# (issue 26: each paper convention also checked by a float64 closed form away from its defaults)
def _supcon_from_the_paper(e: Tensor, y: Tensor, tau: float, tau_b: float) -> Tensor:
    """Khosla et al. 2020, eq. 2 as HobbitLong/SupContrast computes it, one anchor at a time:
    -(τ/τ_b) · 1/|P(i)| Σ_{p∈P(i)} log( exp(s_ip/τ) / Σ_{a≠i} exp(s_ia/τ) ), 0 without positives."""
    u = e / e.norm(dim=1, keepdim=True)
    out = []
    for i in range(len(y)):
        others = [a for a in range(len(y)) if a != i]
        log_den = math.log(sum(math.exp(float(u[i] @ u[a]) / tau) for a in others))
        pos = [p for p in others if y[p] == y[i]]
        if not pos:
            out.append(0.0)
            continue
        out.append(-(tau / tau_b) * sum(float(u[i] @ u[p]) / tau - log_den for p in pos) / len(pos))
    return torch.tensor(out, dtype=torch.float64)


def test_supcon_temperature_ratio_and_averages_closed_form_with_tau_unlike_tau_b() -> None:
    e, y = _batch(n=10, c=4, seed=31)
    y[3] = 7  # an anchor without positives
    ref = _supcon_from_the_paper(e, y, tau=0.2, tau_b=0.05)
    got = LF.supcon(e, y, temperature=0.2, base_temperature=0.05, reduction="none")
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    has_pos = torch.tensor([bool((y == y[i]).sum() > 1) for i in range(10)])
    assert not bool(has_pos.all())
    # "mean": PML's average over the anchors that have a positive; SupContrast's over all anchors
    torch.testing.assert_close(LF.supcon(e, y, temperature=0.2, base_temperature=0.05), ref[has_pos].mean(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(LF.supcon(e, y, temperature=0.2, base_temperature=0.05, average_over="all_anchors"),
                               ref.mean(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(LF.supcon(e, y, temperature=0.2, base_temperature=0.05, reduction="sum"), ref.sum(),
                               rtol=1e-10, atol=1e-12)


def test_cosface_and_normalized_softmax_closed_forms_at_non_default_settings() -> None:
    e, y = _batch(n=9, c=4, seed=2)
    w = torch.randn(4, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    cos = (e / e.norm(dim=1, keepdim=True)) @ (w / w.norm(dim=1, keepdim=True)).T

    def ce(logits: Tensor) -> Tensor:
        return (torch.logsumexp(logits, 1) - logits.gather(1, y[:, None]).squeeze(1)).mean()

    onehot = F.one_hot(y, 4).double()
    # CosFace (Wang et al. 2018): the margin is subtracted from the target cosine BEFORE the scale
    torch.testing.assert_close(LF.cosface(e, y, w, margin=0.2, scale=16.0), ce(16.0 * (cos - 0.2 * onehot)))
    # ArcFace (Deng et al. 2019): the margin is added to the target ANGLE, then scaled
    theta = torch.acos(cos.gather(1, y[:, None]).squeeze(1))
    assert bool((theta + 0.3 < math.pi).all())
    arc = cos.scatter(1, y[:, None], torch.cos(theta + 0.3)[:, None])
    torch.testing.assert_close(LF.arcface(e, y, w, margin=0.3, scale=16.0), ce(16.0 * arc))
    # NormFace: CE(cos θ / T), T = 0.2
    torch.testing.assert_close(LF.normalized_softmax(e, y, w, temperature=0.2), ce(cos / 0.2))


# ------------------------------------------------------------------ killing surviving mutants (issue 26)
def test_partial_fc_index_values_are_checked_only_with_validate() -> None:
    """validate=False skips the host reads of the index checks (a repeated id is then not
    reported); validate=True reports it."""
    g = torch.Generator().manual_seed(7)
    e = torch.randn(6, 4, generator=g, dtype=DT)
    y = torch.tensor([0, 1, 2, 3, 4, 6])
    w = torch.randn(10, 4, generator=g, dtype=DT)
    repeated = torch.tensor([0, 1, 2, 3, 3, 4, 6])
    with pytest.raises(ValueError, match="sorted ascending without repeats"):
        LF.partial_fc(e, y, w, index=repeated)
    out = LF.partial_fc(e, y, w, index=repeated, validate=False)
    assert out.ndim == 0


def test_classifier_heads_check_embedding_values_by_default() -> None:
    e, y = _batch(n=6, c=3)
    e[1, 2] = float("nan")
    w = torch.randn(3, 8, dtype=DT)
    for fn in (LF.arcface, LF.cosface, LF.normalized_softmax):
        with pytest.raises(ValueError, match="embeddings"):
            fn(e, y, w)


def test_multi_similarity_miner_on_a_one_class_batch_mines_nothing() -> None:
    e, _ = _batch(n=6, c=1)
    y = torch.zeros(6, dtype=torch.long)
    x = e.clone().requires_grad_()
    out = LF.multi_similarity(x, y, miner_epsilon=0.1)
    out.backward()
    assert out.item() == 0.0 and float(x.grad.abs().sum()) == 0.0
