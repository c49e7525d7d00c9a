"""ABSGD (E1), dynamic loss-based re-weighting (E2) and class-difficulty weights (A9)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lossatlas as la
from lossatlas.weighting import ABSGD, ClassDifficultyWeights, LossBasedReweighting

# ----------------------------------------------------------------------------- ABSGD


def _absgd_reference(loss_seq, lam, gamma, alpha=1.0):
    """The reference's recursion, transcribed from the paper's formula (u starts at 0)."""
    u, out = 0.0, []
    for l in loss_seq:
        e = np.exp(np.asarray(l, dtype=np.float64) / lam)
        u = (1 - gamma) * u + gamma * alpha * e.mean()
        out.append((e / (u * len(e)), u))
    return out


@pytest.mark.parametrize("lam,gamma,alpha", [(1.0, 0.1, 1.0), (0.5, 0.9, 0.5), (3.0, 1.0, 1.0)])
def test_absgd_matches_defining_recursion(lam, gamma, alpha):
    rng = np.random.default_rng(1)
    seq = [rng.uniform(0, 3, size=7) for _ in range(4)]
    obj = la.create("absgd", lam=lam, gamma=gamma, alpha=alpha)
    for (w_ref, u_ref), l in zip(_absgd_reference(seq, lam, gamma, alpha), seq):
        w = obj(torch.tensor(l))
        np.testing.assert_allclose(w.numpy(), w_ref, rtol=1e-12)
        assert math.isclose(float(obj.u), u_ref, rel_tol=1e-12)


def test_absgd_first_step_sums_to_one_over_gamma_no_bias_correction():
    obj = ABSGD(lam=1.0, gamma=0.1)
    w = obj(torch.rand(16, dtype=torch.float64) * 3)
    assert math.isclose(float(w.sum()), 10.0, rel_tol=1e-12)
    for _ in range(200):  # the sum decays towards 1 when the losses stop changing
        w = obj(torch.full((16,), 0.7, dtype=torch.float64))
    assert math.isclose(float(w.sum()), 1.0, rel_tol=1e-6)


def test_absgd_lambda_200_is_plain_averaging_and_keeps_u():
    obj = ABSGD(lam=1.0)
    obj(torch.rand(5))
    u_before = float(obj.u)
    obj_big = ABSGD(lam=200.0)
    w = obj_big(torch.rand(8) * 50)
    assert torch.equal(w, torch.full((8,), 1 / 8))
    assert float(obj_big.u) == 0.0
    # and the two-stage warm-up uses the same rule
    obj.start_epoch = 3
    w2 = obj(torch.rand(4))
    assert torch.equal(w2, torch.full((4,), 0.25)) and float(obj.u) == u_before


def test_absgd_large_lambda_tends_to_uniform_shape():
    l = torch.rand(32, dtype=torch.float64) * 5
    w = ABSGD(lam=150.0)(l)
    assert float(w.max() / w.min()) < math.exp(5 / 150) + 1e-12
    w_small = ABSGD(lam=0.1)(l)
    assert int(w_small.argmax()) == int(l.argmax())  # small λ: weight goes to the hardest sample


def test_absgd_two_stage_switches_at_start_epoch():
    obj = ABSGD(lam=1.0, gamma=0.1, start_epoch=2)
    l = torch.tensor([0.1, 2.0, 4.0], dtype=torch.float64)
    assert torch.allclose(obj(l), torch.full((3,), 1 / 3, dtype=torch.float64))
    obj.set_epoch(2)
    w = obj(l)
    assert w[2] > w[1] > w[0] and math.isclose(float(w.sum()), 10.0, rel_tol=1e-12)


def test_absgd_state_is_a_buffer_and_roundtrips():
    obj = ABSGD()
    obj(torch.rand(6))
    sd = obj.state_dict()
    assert "log_u" in sd and "epoch" in sd
    other = ABSGD()
    other.load_state_dict(sd)
    l = torch.rand(6)
    assert torch.equal(obj(l), other(l))
    obj.reset()
    assert float(obj.u) == 0.0


def test_absgd_extreme_losses_finite_and_half_precision():
    obj = ABSGD(lam=1.0)
    w = obj(torch.tensor([1e4, 1.0, 0.0]))
    assert torch.isfinite(w).all() and torch.isfinite(obj.log_u)
    assert w[0] > 0.99 * w.sum()
    for dtype in (torch.float16, torch.bfloat16):
        wh = ABSGD(lam=0.5)(torch.tensor([3e2, 1.0, 0.5]).to(dtype))
        assert wh.dtype == dtype and torch.isfinite(wh.float()).all()


def test_absgd_empty_batch_and_errors():
    obj = ABSGD()
    assert obj(torch.empty(0)).numel() == 0
    with pytest.raises(ValueError, match="per-sample"):
        obj(torch.rand(3, 2))
    with pytest.raises(TypeError, match="floating"):
        obj(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        obj(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="lam"):
        ABSGD(lam=0.0)
    with pytest.raises(ValueError, match="gamma"):
        ABSGD(gamma=1.5)
    with pytest.raises(ValueError, match="start_epoch"):
        ABSGD(start_epoch=-1)


def test_absgd_apply_sum_is_reference_objective_and_weights_are_detached():
    obj = ABSGD(lam=1.0, gamma=0.1)
    l = (torch.rand(5, dtype=torch.float64) * 2).requires_grad_()
    out = la.weighting.apply(l, obj, reduction="sum")
    w = torch.exp(l.detach()) / (0.1 * torch.exp(l.detach()).mean() * 5)
    assert torch.allclose(out, (w * l.detach()).sum())
    (g,) = torch.autograd.grad(out, l)
    assert torch.allclose(g, w)  # d/dl of sum(w·l) with w detached is w: the reference's weights


# ----------------------------------------------------------------------- loss-based


def _h(l, delta):
    lmin, lmax = l.min(), l.max()
    return delta * (2 * l - lmax - lmin) / max(lmax - lmin, 1e-6)


F_REF = {
    "linupper": lambda x, d: np.minimum(x + d, d),
    "quadratic": lambda x, d: 1 - x**2 / d**2,
    "extremes": lambda x, d: np.abs(x),
}


@pytest.mark.parametrize("strategy", sorted(F_REF))
@pytest.mark.parametrize("r,delta", [(1.0, 1.0), (0.3, 2.0)])
def test_loss_based_matches_defining_formula(strategy, r, delta):
    l = np.random.default_rng(3).gamma(2.0, 1.0, size=11)
    f = F_REF[strategy](_h(l, delta), delta)
    ref = np.exp(f / r) / np.exp(f / r).sum() * len(l)
    w = la.weighting.loss_based_weights(torch.tensor(l), strategy, r, delta)
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-12)
    obj = la.create("loss_based", strategy=strategy, r=r, delta=delta, burnout_steps=0)
    np.testing.assert_allclose(obj(torch.tensor(l)).numpy(), ref, rtol=1e-12)
    assert math.isclose(float(w.mean()), 1.0, rel_tol=1e-12)


def test_loss_based_strategy_shapes():
    l = torch.linspace(0, 4, 9, dtype=torch.float64)  # normalised losses -1 .. 1
    lin = la.weighting.loss_based_weights(l, "linupper")
    assert (lin[1:5] > lin[:4]).all() and torch.allclose(lin[4:], lin[4].expand(5))
    quad = la.weighting.loss_based_weights(l, "quadratic")
    assert int(quad.argmax()) == 4 and torch.allclose(quad, quad.flip(0))
    ext = la.weighting.loss_based_weights(l, "extremes")
    assert int(ext.argmin()) == 4 and torch.allclose(ext, ext.flip(0))
    assert torch.equal(la.weighting.loss_based_weights(l, "mid"), quad)  # the official code's name


def test_loss_based_limits_and_edge_cases():
    l = torch.rand(10, dtype=torch.float64) * 3
    assert torch.allclose(la.weighting.loss_based_weights(l, r=1e9), torch.ones(10, dtype=torch.float64))
    assert torch.allclose(la.weighting.loss_based_weights(torch.full((4,), 2.0)), torch.ones(4))
    assert la.weighting.loss_based_weights(torch.empty(0)).numel() == 0
    one = la.weighting.loss_based_weights(torch.tensor([5.0]))
    assert torch.allclose(one, torch.ones(1))
    big = la.weighting.loss_based_weights(torch.tensor([1e4, 0.0, 5.0]))
    assert torch.isfinite(big).all()
    wh = la.weighting.loss_based_weights(torch.tensor([1.0, 2.0, 3.0], dtype=torch.bfloat16))
    assert wh.dtype == torch.bfloat16


def test_loss_based_burnout_counts_calls():
    obj = LossBasedReweighting(burnout_steps=2)
    l = torch.tensor([0.1, 1.0, 3.0])
    assert torch.equal(obj(l), torch.ones(3)) and torch.equal(obj(l), torch.ones(3))
    assert not torch.equal(obj(l), torch.ones(3))
    assert int(obj.state_dict()["step"]) == 3


def test_loss_based_errors():
    with pytest.raises(ValueError, match="strategy"):
        LossBasedReweighting(strategy="upper_mid")
    with pytest.raises(ValueError, match="r must be"):
        LossBasedReweighting(r=0)
    with pytest.raises(ValueError, match="per-sample"):
        la.weighting.loss_based_weights(torch.rand(2, 2))
    with pytest.raises(ValueError, match="burnout_steps"):
        LossBasedReweighting(burnout_steps=-1)


# ------------------------------------------------------------------ class difficulty


def test_class_difficulty_fixed_tau_formula():
    acc = np.array([0.9, 0.6, 0.3, 0.05])
    d = 1 - acc
    ref = d**1.5 / (d**1.5).sum() * 4
    np.testing.assert_allclose(la.create("class_difficulty", tau=1.5)(torch.tensor(acc)).numpy(), ref, rtol=1e-12)
    assert torch.allclose(la.weighting.class_difficulty_weights(acc, 0.0), torch.ones(4, dtype=torch.float64))


def test_class_difficulty_dynamic_tau_formula():
    acc = np.array([0.8, 0.5, 0.2])
    tau = 1 / (1 + np.exp(-(0.8 / (0.2 + 0.01))))
    d = 1 - acc
    ref = d**tau / (d**tau).sum() * 3
    np.testing.assert_allclose(la.weighting.class_difficulty_weights(acc, "dynamic").numpy(), ref, rtol=1e-12)
    assert math.isclose(float(la.weighting.dynamic_tau(acc)), tau, rel_tol=1e-12)


def test_class_difficulty_edges():
    w = la.weighting.class_difficulty_weights([1.0, 0.5], 1.0)
    assert w.tolist() == [0.0, 2.0]  # a perfectly classified class gets weight 0, as the reference
    assert la.weighting.class_difficulty_weights([1.0, 1.0], 2.0).tolist() == [1.0, 1.0]
    assert la.weighting.class_difficulty_weights([0.3], "dynamic").tolist() == [1.0]


def test_class_difficulty_state_and_composition():
    cdb = ClassDifficultyWeights(tau=1.0, num_classes=3)
    assert torch.equal(cdb(), torch.ones(3, dtype=torch.float64))
    cdb([0.9, 0.5, 0.5])
    assert "weights" in cdb.state_dict()
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    target = torch.tensor([0, 1, 2, 1])
    w = cdb.class_weights()
    expected = (w[target].float() * losses).sum() / w[target].float().sum()
    assert torch.allclose(la.weighting.apply(losses, cdb, target), expected)
    # the class vector also plugs into a loss's weight= argument: same value
    logits = torch.randn(4, 3)
    per = la.create("cross_entropy", reduction="none")(logits, target)
    assert torch.allclose(la.weighting.apply(per, cdb, target), la.create("cross_entropy", weight=cdb())(logits, target))


def test_class_difficulty_errors():
    with pytest.raises(ValueError, match="no weights yet"):
        la.create("class_difficulty")()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        la.create("class_difficulty")([50.0, 20.0])
    with pytest.raises(ValueError, match="tau"):
        la.create("class_difficulty", tau="auto")
    with pytest.raises(ValueError, match="tau"):
        la.create("class_difficulty", tau=-1.0)
    with pytest.raises(TypeError, match="class_accuracy"):
        la.weighting.class_difficulty_weights("0.5")
    cdb = ClassDifficultyWeights(num_classes=3)
    with pytest.raises(ValueError, match="3"):
        cdb([0.5, 0.5])


# ------------------------------------------------------- DRW: explicit schedule, live weights (issue 20)

DRW_COUNTS = [400, 120, 30, 6]


def _effective_number(counts, beta):
    """Cui et al. 2019: w_j = (1 - β) / (1 - β^{n_j}), rescaled to sum to C (float64, numpy)."""
    n = np.asarray(counts, dtype=np.float64)
    w = (1 - beta) / (1 - beta**n)
    return w / w.sum() * len(n)


def test_drw_start_epoch_is_required_and_documented():
    from lossatlas.weighting import DRW

    with pytest.raises(TypeError, match="requires the argument.*start_epoch"):
        la.create("drw", class_counts=DRW_COUNTS)
    with pytest.raises(TypeError, match="start_epoch"):
        DRW(DRW_COUNTS)
    entry = la.info("drw")
    assert "start_epoch" in entry.required and "start_epoch" not in entry.defaults
    doc = DRW.__doc__ or ""
    assert "160" in doc and "200" in doc  # where LDAM-DRW's CIFAR recipe switches, said in words
    with pytest.raises(TypeError, match="start_epoch must be an int"):
        DRW(DRW_COUNTS, start_epoch=1.5)
    with pytest.raises(ValueError, match="start_epoch must be >= 0"):
        DRW(DRW_COUNTS, start_epoch=-1)


def test_drw_weights_are_a_fresh_tensor_not_its_buffer():
    drw = la.create("drw", class_counts=DRW_COUNTS, start_epoch=0)
    w = drw()
    w.mul_(0)  # a caller scribbling on the vector it was given
    np.testing.assert_allclose(drw().numpy(), _effective_number(DRW_COUNTS, 0.9999), rtol=1e-12)


def test_drw_schedule_reads_no_host_value():
    # the switch is a select on the epoch buffer, not int(epoch): it runs where no value can be
    # read (the meta device), as it must on a GPU without a synchronisation
    drw = la.create("drw", class_counts=DRW_COUNTS, start_epoch=3).to("meta")
    assert drw().device.type == "meta" and drw().shape == (4,)


LOSSES_WITH_WEIGHT = ["cross_entropy", "focal", "poly1", "ldam", "logit_adjusted", "balanced_softmax", "vs"]


def _make_loss(id, **kw):
    if "class_counts" in la.info(id).required:
        kw["class_counts"] = DRW_COUNTS
    return la.create(id, **kw)


@pytest.mark.parametrize("id", LOSSES_WITH_WEIGHT)
@pytest.mark.parametrize("built_with_weight", [False, True])
def test_attached_drw_is_followed_by_the_loss(id, built_with_weight):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(12, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3] * 3)
    drw = la.create("drw", class_counts=DRW_COUNTS, start_epoch=5)
    crit = _make_loss(id, **({"weight": torch.ones(4)} if built_with_weight else {}))
    drw.attach(crit)
    per_sample = _make_loss(id, reduction="none")(z, y).numpy()  # unweighted per-sample losses

    def weighted_mean(w):  # torch's weighted mean, Σ w_{y_i} l_i / Σ w_{y_i}
        return (w[y.numpy()] * per_sample).sum() / w[y.numpy()].sum()

    for epoch, w in ((0, np.ones(4)), (4, np.ones(4)), (5, _effective_number(DRW_COUNTS, 0.9999)), (9, _effective_number(DRW_COUNTS, 0.9999))):
        drw.set_epoch(epoch)
        assert float(crit(z, y)) == pytest.approx(weighted_mean(w), rel=1e-10), epoch
    # the apply route gives the same number
    composed = la.weighting.apply(_make_loss(id, reduction="none")(z, y), drw, y)
    assert float(composed) == pytest.approx(float(crit(z, y)), rel=1e-12)
    # after loading an earlier epoch into the schedule, the loss follows that too
    early = la.create("drw", class_counts=DRW_COUNTS, start_epoch=5)
    drw.load_state_dict(early.state_dict())
    assert float(crit(z, y)) == pytest.approx(weighted_mean(np.ones(4)), rel=1e-10)


def test_attach_handle_detaches_and_one_weighting_per_argument():
    drw = la.create("drw", class_counts=DRW_COUNTS, start_epoch=1)
    crit = la.create("ldam", class_counts=DRW_COUNTS)
    handle = drw.attach(crit)
    with pytest.raises(ValueError, match="already follows a DRW"):
        la.create("effective_number", class_counts=DRW_COUNTS).attach(crit)
    handle.remove()
    z, y = torch.randn(8, 4, dtype=torch.float64), torch.arange(4).repeat(2)
    before = crit(z, y)
    drw.set_epoch(3)
    assert torch.equal(crit(z, y), before)  # detached: keeps the last weights (uniform)
    la.create("effective_number", class_counts=DRW_COUNTS).attach(crit)  # free again


def test_attach_survives_two_calls_before_one_backward():
    # gradient accumulation across the switch: the weights are replaced, never written in
    # place, so the first call's graph (which may hold the float64 weight itself) stays valid
    drw = la.create("drw", class_counts=DRW_COUNTS, start_epoch=1)
    crit = la.create("cross_entropy")
    drw.attach(crit)
    z = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    y = torch.arange(4).repeat(2)
    first = crit(z, y)
    drw.set_epoch(1)
    second = crit(z, y)
    (first + second).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_attach_errors_and_the_weight_object_trap():
    drw = la.create("drw", class_counts=DRW_COUNTS, start_epoch=1)
    with pytest.raises(TypeError, match="not a weight tensor.*attach"):
        la.create("ldam", class_counts=DRW_COUNTS, weight=drw)
    with pytest.raises(TypeError, match="nn.Module"):
        drw.attach(lambda z, y: z)
    with pytest.raises(ValueError, match="no class-weight argument 'weight'"):
        drw.attach(la.create("mae"))
    with pytest.raises(ValueError, match=r"has shape \(3,\) but DRW gives 4"):
        drw.attach(la.create("focal", weight=[1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="no weights yet"):
        la.create("class_difficulty").attach(la.create("focal"))


def test_attached_class_difficulty_follows_its_updates():
    cdb = ClassDifficultyWeights(tau=1.0, num_classes=3)
    crit = la.create("cross_entropy")
    cdb.attach(crit)
    z, y = torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 2, 1, 0])
    per_sample = la.create("cross_entropy", reduction="none")(z, y).numpy()
    cdb([0.9, 0.5, 0.2])  # a validation pass: new weights, set after the loss was built
    d = 1 - np.array([0.9, 0.5, 0.2])
    w = (d / d.sum() * 3)[y.numpy()]
    assert float(crit(z, y)) == pytest.approx((w * per_sample).sum() / w.sum(), rel=1e-12)
