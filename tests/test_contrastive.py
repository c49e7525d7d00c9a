"""Contrastive losses on paired views (G1, G3–G8): identities, gradients, edge cases, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
import lossatlas.functional as LF
from lossatlas.distributed import cached_backward

from helpers import PARITY_DIR, assert_finite_extremes, gradcheck_loss, require_parity_dir

IDS = ["infonce", "siglip", "decoupled_contrastive", "debiased_contrastive", "hard_negative_contrastive",
       "mochi", "barlow_twins", "wmse"]
SIM_IDS = IDS[:5]


def _pair(n=12, d=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=dtype)
    return a, a + 0.7 * torch.randn(n, d, generator=g, dtype=dtype)


def _create(id_, **kw):
    if id_ == "wmse":
        kw.setdefault("w_size", 16)
    if id_ == "mochi":
        kw = {"num_hard": 4, "num_mix": 6, "num_query_mix": 3, **kw}
    return la.create(id_, **kw)


# ----------------------------------------------------------------------------- identities
def test_infonce_is_cross_entropy_over_the_similarity_matrix():
    a, b = _pair()
    ah, bh = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logits = ah @ bh.T / 0.1
    y = torch.arange(len(a))
    one = LF.infonce(a, b, temperature=0.1, symmetric=False)
    torch.testing.assert_close(one, F.cross_entropy(logits, y))
    sym = LF.infonce(a, b, temperature=0.1)
    torch.testing.assert_close(sym, 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y)))
    # one-way b -> a is the transpose
    torch.testing.assert_close(LF.infonce(b, a, temperature=0.1, symmetric=False), F.cross_entropy(logits.T, y))


def test_infonce_intra_view_is_simclr_ntxent():
    a, b = _pair(n=8)
    z = F.normalize(torch.cat([a, b]), dim=1)
    sim = (z @ z.T / 0.5).masked_fill(torch.eye(16, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(8, 16), torch.arange(8)])
    expected = F.cross_entropy(sim, target)
    torch.testing.assert_close(LF.infonce(a, b, temperature=0.5, intra_view_negatives=True), expected)


def test_infonce_matches_pml_ntxent_with_labels():
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    a, b = _pair(n=10)
    lab = torch.arange(10)
    ref = pml.NTXentLoss(temperature=0.2)(torch.cat([a, b]), torch.cat([lab, lab]))
    torch.testing.assert_close(LF.infonce(a, b, temperature=0.2, intra_view_negatives=True), ref)


def test_infonce_with_labels_is_supcon():
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    a, b = _pair(n=14)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 3, 3, 0, 1, 4, 4, 2, 0])
    ref = pml.SupConLoss(temperature=0.1)(torch.cat([a, b]), torch.cat([y, y]))
    for tiled in (False, True):
        got = la.create("infonce", temperature=0.1, intra_view_negatives=True, tiled=tiled, block_size=4).double()(a, b, y)
        torch.testing.assert_close(got, ref)
    # unique labels: the ordinary one-positive loss; cross-view form against an explicit mask
    torch.testing.assert_close(LF.infonce(a, b, labels=torch.arange(14)), LF.infonce(a, b))
    ah, bh = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logp = torch.log_softmax(ah @ bh.T / 0.07, 1)
    same = (y[:, None] == y[None, :]).double()
    expected = -((logp * same).sum(1) / same.sum(1)).mean()
    torch.testing.assert_close(LF.infonce(a, b, labels=y, symmetric=False), expected)


def test_siglip_is_bce_with_identity_targets_summed_over_rows():
    a, b = _pair()
    ah, bh = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logits = 7.0 * ah @ bh.T - 3.0
    target = torch.eye(len(a), dtype=a.dtype)
    per_row = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(1)
    torch.testing.assert_close(LF.siglip(a, b, scale=7.0, bias=-3.0, reduction="none"), per_row)
    torch.testing.assert_close(LF.siglip(a, b, scale=7.0, bias=-3.0), per_row.sum() / len(a))


def test_decoupled_drops_the_positive_from_the_denominator():
    a, b = _pair(n=6)
    z = F.normalize(torch.cat([a, b]), dim=1)
    n = 6
    sim = z @ z.T / 0.1
    mask = torch.eye(2 * n, dtype=torch.bool) | torch.eye(2 * n, dtype=torch.bool).roll(n, 1)
    pos = sim[torch.arange(2 * n), (torch.arange(2 * n) + n) % (2 * n)]
    per = torch.logsumexp(sim.masked_fill(mask, float("-inf")), 1) - pos
    torch.testing.assert_close(LF.decoupled_contrastive(a, b, temperature=0.1), per.mean())
    # DCLW with a huge sigma has weights -> 1
    torch.testing.assert_close(LF.decoupled_contrastive(a, b, weighted=True, sigma=1e9),
                               LF.decoupled_contrastive(a, b), rtol=1e-6, atol=1e-8)


def test_hcl_beta_zero_is_debiased_and_tau_zero_is_ntxent():
    a, b = _pair()
    torch.testing.assert_close(LF.hard_negative_contrastive(a, b, beta=0.0, tau_plus=0.1),
                               LF.debiased_contrastive(a, b, tau_plus=0.1))
    # unit vectors: every negative term >= e^{-1/T}, so the clamp is inactive at tau_plus = 0
    torch.testing.assert_close(LF.debiased_contrastive(a, b, temperature=0.5, tau_plus=0.0),
                               LF.infonce(a, b, temperature=0.5, intra_view_negatives=True))


def test_hcl_upweights_hard_negatives():
    a, b = _pair(n=16, d=8)
    assert LF.hard_negative_contrastive(a, b, beta=2.0, tau_plus=0.0) > LF.hard_negative_contrastive(a, b, beta=0.0, tau_plus=0.0)


def test_mochi_without_mixing_is_moco_infonce_over_the_queue():
    a, b = _pair()
    q = torch.randn(7, 5, dtype=torch.float64)
    got = LF.mochi(a, b, temperature=0.2, num_mix=0, num_query_mix=0, queue=q)
    ah, bh, qh = (F.normalize(x, dim=1) for x in (a, b, q))
    # MoCo: the positive, then the queue; the other keys of the batch are not negatives
    logits = torch.cat([(ah * bh).sum(1, keepdim=True), ah @ qh.T], 1) / 0.2
    torch.testing.assert_close(got, F.cross_entropy(logits, torch.zeros(len(a), dtype=torch.long)))
    # no queue: the batch's keys are the queue, so the value is one-way InfoNCE
    torch.testing.assert_close(LF.mochi(a, b, temperature=0.2, num_mix=0, num_query_mix=0),
                               LF.infonce(a, b, temperature=0.2, symmetric=False))


def test_mochi_synthetic_negatives_add_to_denominator_and_are_seeded():
    a, b = _pair(n=10)
    plain = LF.mochi(a, b, num_mix=0, num_query_mix=0, reduction="none")
    mixed = LF.mochi(a, b, num_hard=5, num_mix=8, num_query_mix=4, generator=torch.Generator().manual_seed(0), reduction="none")
    assert torch.all(mixed > plain)
    again = LF.mochi(a, b, num_hard=5, num_mix=8, num_query_mix=4, generator=torch.Generator().manual_seed(0), reduction="none")
    torch.testing.assert_close(mixed, again)


def test_barlow_twins_identical_views_and_formula():
    a, _ = _pair(n=64, d=4)
    assert float(LF.barlow_twins(a, a, lambd=0.0)) < 1e-6
    b = torch.randn_like(a)
    za = (a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + 1e-5)
    zb = (b - b.mean(0)) / torch.sqrt(b.var(0, unbiased=False) + 1e-5)
    c = za.T @ zb / 64
    off = c - torch.diag(torch.diagonal(c))
    expected = ((1 - torch.diagonal(c)) ** 2).sum() + 0.3 * (off ** 2).sum()
    torch.testing.assert_close(LF.barlow_twins(a, b, lambd=0.3), expected)
    torch.testing.assert_close(LF.barlow_twins(a, b, lambd=0.3, reduction="mean"), expected / 4)
    assert LF.barlow_twins(a, b, reduction="none").shape == (4,)


def test_barlow_twins_is_invariant_to_per_feature_affine_maps():
    a, b = _pair(n=32, d=4)
    s = torch.tensor([2.0, 0.5, 3.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(LF.barlow_twins(a * s + 1.0, b, eps=0.0), LF.barlow_twins(a, b, eps=0.0))


def test_wmse_whitens_and_is_zero_for_identical_views():
    a, b = _pair(n=32, d=4)
    assert float(LF.wmse(a, a, w_size=32)) < 1e-10
    # the whitened view has identity covariance: check against an explicit whitening
    xn = a - a.mean(0)
    cov = xn.T @ xn / 31
    w = torch.linalg.inv(torch.linalg.cholesky(cov))
    za = xn @ w.T
    torch.testing.assert_close(za.T @ za / 31, torch.eye(4, dtype=torch.float64))
    yn = b - b.mean(0)
    zb = yn @ torch.linalg.inv(torch.linalg.cholesky(yn.T @ yn / 31)).T
    expected = 2 - 2 * (F.normalize(za, dim=1) * F.normalize(zb, dim=1)).sum(1)
    torch.testing.assert_close(LF.wmse(a, b, w_size=32, reduction="none"), expected)


def test_losses_are_invariant_to_input_scale_and_joint_permutation():
    a, b = _pair()
    perm = torch.randperm(len(a), generator=torch.Generator().manual_seed(1))
    for id_ in SIM_IDS:
        crit = la.create(id_).double()
        base = crit(a, b)
        torch.testing.assert_close(crit(3.0 * a, 0.5 * b), base)
        torch.testing.assert_close(crit(a[perm], b[perm]), base)


def test_normalize_false_takes_unit_rows():
    a, b = _pair()
    ah, bh = F.normalize(a, dim=1), F.normalize(b, dim=1)
    for id_ in SIM_IDS:
        torch.testing.assert_close(la.create(id_, normalize=False).double()(ah, bh), la.create(id_).double()(a, b))


def test_reductions_are_consistent():
    a, b = _pair()
    for id_ in IDS:
        torch.manual_seed(0)
        none = _create(id_, reduction="none").double()(a, b)
        torch.manual_seed(0)
        total = _create(id_, reduction="sum").double()(a, b)
        torch.manual_seed(0)
        mean = _create(id_, reduction="mean").double()(a, b)
        torch.testing.assert_close(none.sum(), total)
        torch.testing.assert_close(none.mean(), mean)


# ----------------------------------------------------------------------------- learnable temperature
def _parity(case):
    require_parity_dir()
    arrays = np.load(PARITY_DIR / f"{case}.npz")
    return {k: torch.from_numpy(arrays[k]) for k in arrays.files}


def test_learnable_infonce_temperature_gradient_matches_open_clip():
    arr = _parity("pair_infonce")
    crit = la.create("infonce", temperature=0.07, learnable=True).double()
    assert isinstance(crit.logit_scale, torch.nn.Parameter)
    loss = crit(arr["a"], arr["b"])
    torch.testing.assert_close(loss, arr["loss"], rtol=1e-6, atol=1e-9)
    loss.backward()
    scale = 1 / 0.07  # d/d log(s) = s * d/ds
    torch.testing.assert_close(crit.logit_scale.grad, scale * arr["grad_logit_scale"], rtol=1e-6, atol=1e-9)


def test_learnable_siglip_scale_and_bias_gradients_match_open_clip():
    arr = _parity("pair_siglip")
    for tiled in (False, True):
        crit = la.create("siglip", learnable=True, tiled=tiled, block_size=7).double()
        loss = crit(arr["a"], arr["b"])
        torch.testing.assert_close(loss, arr["loss"], rtol=1e-6, atol=1e-9)
        loss.backward()
        torch.testing.assert_close(crit.logit_scale.grad, 10.0 * arr["grad_logit_scale"], rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(crit.logit_bias.grad, arr["grad_logit_bias"], rtol=1e-6, atol=1e-9)


def test_unit_input_gradients_match_reference_extras():
    for case, id_, kw in [("pair_infonce", "infonce", {"temperature": 0.07}),
                          ("pair_debiased_contrastive", "debiased_contrastive", {"temperature": 0.5, "tau_plus": 0.1}),
                          ("pair_hard_negative_contrastive", "hard_negative_contrastive", {"temperature": 0.5, "tau_plus": 0.1, "beta": 1.0})]:
        arr = _parity(case)
        a, b = arr["a_unit"].clone().requires_grad_(), arr["b_unit"].clone().requires_grad_()
        for tiled in (False, True):
            loss = la.create(id_, normalize=False, tiled=tiled, block_size=5, **kw).double()(a, b)
            ga, gb = torch.autograd.grad(loss, [a, b])
            torch.testing.assert_close(ga, arr["grad_a_unit"], rtol=1e-6, atol=1e-9)
            torch.testing.assert_close(gb, arr["grad_b_unit"], rtol=1e-6, atol=1e-9)


def test_learnable_temperature_trains():
    a, b = _pair(n=16)
    crit = la.create("infonce", temperature=1.0, learnable=True).double()
    opt = torch.optim.SGD(crit.parameters(), lr=0.5)
    before = crit(a, b).item()
    for _ in range(5):
        opt.zero_grad()
        crit(a, b).backward()
        opt.step()
    assert crit(a, b).item() < before
    assert crit.temperature.item() != 1.0


# ----------------------------------------------------------------------------- gradients, extremes
@pytest.mark.parametrize("id_", IDS)
def test_gradcheck(id_):
    a, b = _pair(n=8 if id_ != "wmse" else 16, d=3)
    crit = _create(id_, **({"w_size": 16} if id_ == "wmse" else {})).double()
    if id_ == "mochi":
        # the key, the queue and the synthetic points carry no gradient by design (stop-gradient,
        # as in MoCo), so finite differences apply to the query alone; the query-mixed points
        # h' = normalize(βq + (1-β)n) move with q in value, so they are left out here (their
        # gradient is checked against a reference in tests/test_mochi.py)
        crit = la.create("mochi", num_hard=3, num_mix=4, num_query_mix=0).double()
        g = torch.Generator().manual_seed(5)
        queue = torch.randn(5, 3, generator=g, dtype=torch.float64)
        mix = {"mix_index": torch.randint(3, (8, 4, 2), generator=g),
               "mix_alpha": torch.rand(8, 4, generator=g, dtype=torch.float64)}
        gradcheck_loss(lambda x: crit(x, b, queue=queue, **mix), a)
    else:
        gradcheck_loss(crit, a, b)


@pytest.mark.parametrize("id_", IDS)
def test_extreme_inputs_are_finite(id_):
    # W-MSE whitens: it needs a full-rank sub-batch, i.e. more (generic) rows than dimensions
    n = 64 if id_ == "wmse" else 6
    crit = _create(id_, w_size=n) if id_ == "wmse" else _create(id_)
    assert_finite_extremes(lambda x, t: crit(x, x.roll(1, 0) * t[:, None].to(x.dtype).add(1)), num_classes=5, n=n)


@pytest.mark.parametrize("id_", IDS)
def test_low_precision_returns_input_dtype(id_):
    a, b = _pair(n=16, d=4, dtype=torch.float32)
    crit = _create(id_)
    out16 = crit(a.bfloat16(), b.bfloat16())
    assert out16.dtype == torch.bfloat16
    torch.manual_seed(0)
    ref = crit(a, b)
    assert abs(float(out16) - float(ref)) <= 0.05 * abs(float(ref)) + 0.05


# ----------------------------------------------------------------------------- edge cases, errors
@pytest.mark.parametrize("id_", [i for i in IDS if i not in ("barlow_twins",)])
def test_empty_batch(id_):
    a = torch.zeros(0, 4, requires_grad=True)
    b = torch.zeros(0, 4, requires_grad=True)
    loss = _create(id_)(a, b)
    assert loss.shape == () and float(loss.detach()) == 0.0
    loss.backward()
    assert _create(id_, reduction="none")(a, b).shape == (0,)


@pytest.mark.parametrize("id_", SIM_IDS)
def test_single_pair_has_no_negative(id_):
    a, b = _pair(n=1)
    a.requires_grad_()
    loss = la.create(id_).double()(a, b)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(a.grad).all()
    if id_ in ("infonce", "debiased_contrastive", "hard_negative_contrastive", "decoupled_contrastive"):
        assert float(loss.detach()) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_barlow_twins_non_finite_inputs_raise(reduction):
    # the check is made on the result (a non-finite input always reaches it), then on the inputs
    a, b = _pair(n=6, d=3)
    for bad, name in ((float("nan"), "a"), (float("inf"), "b"), (-float("inf"), "a")):
        x, y = a.clone(), b.clone()
        (x if name == "a" else y)[2, 1] = bad
        with pytest.raises(ValueError, match=f"^{name} contains NaN or Inf"):
            LF.barlow_twins(x, y, reduction=reduction)
        assert not torch.isfinite(LF.barlow_twins(x, y, reduction=reduction, validate=False)).all()
    # finite inputs whose result is not finite (a constant feature with eps = 0) do not raise
    x = a.clone()
    x[:, 0] = 1.0
    assert torch.isnan(LF.barlow_twins(x, b, eps=0.0, reduction=reduction)).any()


def test_barlow_twins_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2"):
        LF.barlow_twins(torch.randn(1, 3), torch.randn(1, 3))


def test_bad_inputs():
    a = torch.randn(4, 3)
    with pytest.raises(ValueError, match="b must have the shape"):
        LF.infonce(a, torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        LF.siglip(torch.randn(4), torch.randn(4))
    with pytest.raises(TypeError, match="floating-point"):
        LF.decoupled_contrastive(a, torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        la.create("infonce", temperature=0.0)
    with pytest.raises(ValueError, match="tiled"):
        la.create("infonce", tiled="yes")
    with pytest.raises(ValueError, match="block_size"):
        LF.infonce(a, a, block_size=0)
    with pytest.raises(ValueError, match="tau_plus"):
        la.create("debiased_contrastive", tau_plus=1.0)
    with pytest.raises(ValueError, match="multiple of w_size"):
        LF.wmse(torch.randn(20, 3), torch.randn(20, 3), w_size=8)
    with pytest.raises(ValueError, match="singular"):
        LF.wmse(torch.randn(4, 8), torch.randn(4, 8))
    with pytest.raises(ValueError, match="eps > 0"):
        LF.wmse(torch.ones(8, 3), torch.randn(8, 3), w_size=8)
    with pytest.raises(TypeError, match="labels"):
        LF.infonce(a, a, labels=torch.zeros(4))
    with pytest.raises(ValueError, match="labels must have shape"):
        LF.infonce(a, a, labels=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        LF.infonce(torch.full((2, 2), float("nan")), torch.randn(2, 2))
    with pytest.raises(ValueError, match="queue"):
        LF.mochi(a, a, queue=torch.randn(3, 2))
    with pytest.raises(ValueError, match="reduction"):
        LF.barlow_twins(a, a, reduction="avg")


def test_registry_metadata():
    for id_ in IDS:
        e = la.info(id_)
        assert e.family == "contrastive" and e.kind == "pair" and e.catalogue.startswith("G")
        assert e.function is not None and e.paper is not None
    assert la.info("clip").id == "infonce" and la.info("hcl").id == "hard_negative_contrastive"


# ----------------------------------------------------------------------------- GradCache
class _Encoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 4))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("id_", ["infonce", "siglip", "barlow_twins"])
def test_cached_backward_equals_full_batch_backward(id_):
    g = torch.Generator().manual_seed(0)
    xa, xb = torch.randn(20, 6, generator=g, dtype=torch.float64), torch.randn(20, 6, generator=g, dtype=torch.float64)
    enc = _Encoder().double()
    loss_fn = la.create(id_, **({"learnable": True} if id_ != "barlow_twins" else {})).double()

    torch.manual_seed(123)  # plain path, embedding the same chunks in the same order (same dropout masks)
    ea = torch.cat([enc(c) for c in xa.split(6)])
    eb = torch.cat([enc(c) for c in xb.split(6)])
    ref = loss_fn(ea, eb)
    ref.backward()
    ref_grads = [p.grad.clone() for p in [*enc.parameters(), *loss_fn.parameters()]]
    for p in [*enc.parameters(), *loss_fn.parameters()]:
        p.grad = None

    torch.manual_seed(123)
    loss = cached_backward(loss_fn, enc, [xa, xb], chunk_size=6)
    torch.testing.assert_close(loss, ref.detach())
    for r, p in zip(ref_grads, [*enc.parameters(), *loss_fn.parameters()]):
        torch.testing.assert_close(p.grad, r)


def test_cached_backward_errors():
    enc = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match="chunk_size"):
        cached_backward(la.create("infonce"), enc, [torch.randn(4, 3)] * 2, chunk_size=0)
    with pytest.raises(ValueError, match="one encoder per input"):
        cached_backward(la.create("infonce"), [enc], [torch.randn(4, 3)] * 2, chunk_size=2)
    with pytest.raises(ValueError, match="scalar"):
        cached_backward(la.create("infonce", reduction="none"), enc, [torch.randn(4, 3)] * 2, chunk_size=2)


def test_cached_backward_with_tiled_loss_matches_temperature_identity():
    # one-way InfoNCE at T -> the gradient wrt the learnable log-scale equals s * dL/ds
    a, b = _pair(n=10)
    crit = la.create("infonce", learnable=True, tiled=True, block_size=3).double()
    loss = cached_backward(crit, torch.nn.Identity(), [a, b], chunk_size=4)
    s = torch.tensor(1 / 0.07, dtype=torch.float64, requires_grad=True)
    ref = LF.infonce(a, b, temperature=1 / s)
    ref.backward()
    torch.testing.assert_close(loss, ref.detach())
    torch.testing.assert_close(crit.logit_scale.grad, s.detach() * s.grad)
    assert math.isfinite(float(loss))
