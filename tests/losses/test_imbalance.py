"""Long-tail losses A1–A8: identities, gradients, edge cases, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
import lossatlas.functional as LF
from helpers import assert_finite_extremes, gradcheck_loss

COUNTS = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
C = len(COUNTS)


def batch(n=16, c=C, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=dtype) * 3, torch.randint(0, c, (n,), generator=g)


PRIOR_IDS = ["ldam", "logit_adjusted", "balanced_softmax", "vs"]
ALL_IDS = ["cross_entropy", "focal"] + PRIOR_IDS


def make(id, **kw):
    if id in PRIOR_IDS:
        kw.setdefault("class_counts", COUNTS)
    return la.create(id, **kw)


# ---------------------------------------------------------------- identities with CE
@pytest.mark.parametrize(
    "id,kwargs",
    [
        ("focal", {"gamma": 0.0}),
        ("ldam", {"max_margin": 0.0, "scale": 1.0}),
        ("logit_adjusted", {"tau": 0.0}),
        ("balanced_softmax", {"class_counts": [7] * C}),
        ("vs", {"gamma": 0.0, "tau": 0.0}),
        ("cross_entropy", {}),
    ],
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reduces_to_cross_entropy(id, kwargs, reduction):
    z, y = batch()
    got = make(id, reduction=reduction, **kwargs)(z, y)
    torch.testing.assert_close(got, F.cross_entropy(z, y, reduction=reduction), rtol=1e-12, atol=1e-12)


def test_logit_adjustment_tau1_equals_balanced_softmax():
    z, y = batch()
    la_loss = la.create("logit_adjusted", class_counts=COUNTS, tau=1.0, reduction="none")(z, y)
    bs_loss = la.create("balanced_softmax", class_counts=COUNTS, reduction="none")(z, y)
    torch.testing.assert_close(la_loss, bs_loss, rtol=1e-12, atol=1e-12)


def test_balanced_softmax_is_ce_of_shifted_logits():
    z, y = batch()
    expected = F.cross_entropy(z + torch.log(torch.tensor(COUNTS, dtype=z.dtype)), y)
    torch.testing.assert_close(la.create("balanced_softmax", class_counts=COUNTS)(z, y), expected)


def test_focal_matches_definition_and_downweights_easy_examples():
    z, y = batch()
    p = torch.softmax(z, 1).gather(1, y[:, None]).squeeze(1)
    expected = ((1 - p) ** 2 * -torch.log(p)).mean()
    torch.testing.assert_close(LF.focal(z, y, gamma=2.0), expected, rtol=1e-10, atol=1e-12)
    assert LF.focal(z, y, gamma=2.0) < F.cross_entropy(z, y)
    # per-class alpha multiplies each sample's loss by alpha[y]
    alpha = torch.linspace(0.1, 1.0, C, dtype=z.dtype)
    torch.testing.assert_close(
        LF.focal(z, y, gamma=1.0, alpha=alpha, reduction="none"), alpha[y] * LF.focal(z, y, gamma=1.0, reduction="none")
    )


def test_focal_fractional_gamma_has_finite_gradient_at_certainty():
    z = torch.tensor([[50.0, -50.0], [0.3, 0.1]], dtype=torch.float64, requires_grad=True)
    loss = LF.focal(z, torch.tensor([0, 1]), gamma=0.5)
    loss.backward()
    assert torch.isfinite(z.grad).all()


def test_ldam_margins_and_formula():
    m = LF.ldam_margins(COUNTS, max_margin=0.5)
    assert m.argmax() == C - 1 and math.isclose(float(m.max()), 0.5)
    ratio = m / torch.tensor(COUNTS, dtype=torch.float64).pow(-0.25)
    torch.testing.assert_close(ratio, ratio[0].expand_as(ratio))
    z, y = batch()
    onehot = F.one_hot(y, C).to(z.dtype)
    expected = F.cross_entropy(30.0 * (z - m[y][:, None] * onehot), y)
    torch.testing.assert_close(la.create("ldam", class_counts=COUNTS)(z, y), expected)



def test_ldam_under_torch_func_grad_on_float32_logits():
    # under torch.func the margins are converted to the logits' dtype without the cache
    g = torch.Generator().manual_seed(6)
    z = torch.randn(6, 4, generator=g) * 0.5
    y = torch.randint(0, 4, (6,), generator=g)
    counts = [50, 30, 20, 10]
    m = LF.ldam_margins(counts, max_margin=0.5)
    z64 = z.double().requires_grad_()
    F.cross_entropy(2.0 * (z64 - m[y][:, None] * F.one_hot(y, 4)), y).backward()
    got = torch.func.grad(lambda t: LF.ldam(t, y, counts, scale=2.0))(z)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, z64.grad.float(), rtol=1e-5, atol=1e-6)

def test_vs_parameters_and_formula():
    delta, iota = LF.vs_parameters(COUNTS, gamma=0.3, tau=1.0)
    assert float(delta[0]) == 1.0 and bool((delta[1:] > 1).all())
    z, y = batch()
    expected = F.cross_entropy(z / delta + iota, y)
    torch.testing.assert_close(la.create("vs", class_counts=COUNTS)(z, y), expected)


def test_posthoc_logit_adjustment():
    z, _ = batch()
    adjusted = LF.posthoc_logit_adjustment(z, COUNTS, tau=1.0)
    prior = torch.tensor(COUNTS, dtype=z.dtype) / sum(COUNTS)
    torch.testing.assert_close(adjusted, z - torch.log(prior))
    # equal logits: the adjustment predicts the rarest class
    assert int(LF.posthoc_logit_adjustment(torch.zeros(1, C), COUNTS).argmax()) == C - 1
    crit = la.create("logit_adjusted", class_counts=COUNTS, tau=1.0)
    torch.testing.assert_close(crit.adjust(z), adjusted)


def test_cross_entropy_matches_torch_with_weight_smoothing_ignore_and_soft_targets():
    z, y = batch()
    y = y.clone()
    y[:3] = -100
    w = torch.rand(C, dtype=z.dtype) + 0.1
    for reduction in ("mean", "sum", "none"):
        got = LF.cross_entropy(z, y, weight=w, label_smoothing=0.1, reduction=reduction)
        torch.testing.assert_close(got, F.cross_entropy(z, y, weight=w, label_smoothing=0.1, reduction=reduction))
    soft = torch.softmax(torch.randn(16, C, dtype=z.dtype), 1)
    torch.testing.assert_close(LF.cross_entropy(z, soft), F.cross_entropy(z, soft))


@pytest.mark.parametrize("id", ["focal"] + PRIOR_IDS)
def test_class_weight_is_torch_weighted_mean(id):
    z, y = batch()
    w = torch.rand(C, dtype=z.dtype) + 0.1
    per = make(id, reduction="none")(z, y)
    got = make(id, weight=w)(z, y)
    torch.testing.assert_close(got, (w[y] * per).sum() / w[y].sum())
    torch.testing.assert_close(make(id, weight=w, reduction="sum")(z, y), (w[y] * per).sum())


@pytest.mark.parametrize("id", ALL_IDS)
def test_ignore_index_skips_samples(id):
    z, y = batch()
    y2 = y.clone()
    y2[:5] = -100
    full = make(id, reduction="none")(z[5:], y[5:])
    torch.testing.assert_close(make(id)(z, y2), full.mean())
    none = make(id, reduction="none")(z, y2)
    assert bool((none[:5] == 0).all())


# ---------------------------------------------------------------- function == module, gradients
@pytest.mark.parametrize(
    "id,fn,fkw",
    [
        ("focal", LF.focal, {"gamma": 2.0}),
        ("ldam", LF.ldam, {"class_counts": COUNTS}),
        ("logit_adjusted", LF.logit_adjusted, {"class_counts": COUNTS}),
        ("balanced_softmax", LF.balanced_softmax, {"class_counts": COUNTS}),
        ("vs", LF.vs, {"class_counts": COUNTS}),
        ("cross_entropy", LF.cross_entropy, {"label_smoothing": 0.2}),
    ],
)
def test_functional_equals_module_and_gradcheck(id, fn, fkw):
    z, y = batch(n=6)
    mod_kw = {k: v for k, v in fkw.items()}
    torch.testing.assert_close(fn(z, y, **fkw), make(id, **mod_kw)(z, y))
    gradcheck_loss(lambda logits: fn(logits, y, **fkw), z)
    gradcheck_loss(lambda logits: make(id, **mod_kw, reduction="none")(logits, y).sum(), z)


def test_sigmoid_focal_gradcheck_and_definition():
    z = torch.randn(5, 4, dtype=torch.float64)
    t = (torch.rand(5, 4) < 0.4).double()
    gradcheck_loss(lambda logits: LF.sigmoid_focal(logits, t), z)
    p = torch.sigmoid(z)
    pt = p * t + (1 - p) * (1 - t)
    expected = (0.25 * t + 0.75 * (1 - t)) * (1 - pt) ** 2 * F.binary_cross_entropy_with_logits(z, t, reduction="none")
    torch.testing.assert_close(LF.sigmoid_focal(z, t, reduction="none"), expected)
    # gamma = 0, no alpha: plain BCE with logits
    torch.testing.assert_close(LF.sigmoid_focal(z, t, alpha=None, gamma=0.0), F.binary_cross_entropy_with_logits(z, t))


@pytest.mark.parametrize("id", ALL_IDS)
def test_extreme_logits_are_finite(id):
    crit = make(id)
    assert_finite_extremes(crit, num_classes=C)


def test_sigmoid_focal_extreme_logits_are_finite():
    for dtype in (torch.float32, torch.bfloat16):
        z = (torch.sign(torch.randn(4, 3)) * 1e4).to(dtype).requires_grad_()
        t = (torch.rand(4, 3) < 0.5).to(dtype)
        loss = LF.sigmoid_focal(z, t)
        loss.float().backward()
        assert torch.isfinite(loss.float()) and torch.isfinite(z.grad.float()).all()


@pytest.mark.parametrize("id", ALL_IDS)
def test_low_precision_returns_input_dtype(id):
    z, y = batch(dtype=torch.float32)
    out = make(id)(z.bfloat16(), y)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), make(id)(z, y), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("id", ALL_IDS)
def test_empty_batch_mean_is_zero_with_gradient(id):
    z = torch.zeros(0, C, requires_grad=True)
    out = make(id)(z, torch.zeros(0, dtype=torch.long))
    assert out.item() == 0.0
    out.backward()
    assert z.grad.shape == (0, C)


@pytest.mark.parametrize("id", ALL_IDS)
def test_single_class_batch(id):
    z, _ = batch()
    y = torch.full((16,), 3)
    out = make(id)(z, y)
    assert torch.isfinite(out) and out > 0


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("id", ALL_IDS)
def test_bad_inputs_raise_clear_errors(id):
    crit = make(id)
    z, y = batch()
    with pytest.raises(ValueError, match=r"logits must have shape \[N, C\]"):
        crit(z[0], y)
    with pytest.raises(ValueError, match="target must have shape"):
        crit(z, y[:-1])
    with pytest.raises(ValueError, match=r"target values must be in \[0, 10\)"):
        crit(z, torch.full_like(y, C))
    bad = z.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="logits contains NaN or Inf"):
        crit(bad, y)
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        crit(bad, y)
    with pytest.raises(TypeError, match="logits must be a torch.Tensor"):
        crit(z.numpy(), y)
    with pytest.raises(TypeError, match="floating-point"):
        crit(y[:, None].expand(-1, C), y)
    with pytest.raises(ValueError, match="same device"):
        crit(z, y.to("meta"))
    if id not in SOFT_TARGET_IDS:
        with pytest.raises(TypeError, match="integer class indices"):
            crit(z, torch.softmax(z, 1))
    else:  # probability targets are accepted, but still checked
        with pytest.raises(ValueError, match="sum to 1"):
            crit(z, torch.softmax(z, 1) * 0.5)


SOFT_TARGET_IDS = ("cross_entropy", "logit_adjusted", "balanced_softmax", "vs")


@pytest.mark.parametrize("id", PRIOR_IDS)
def test_bad_class_counts(id):
    with pytest.raises(TypeError, match="requires the argument"):
        la.create(id)
    with pytest.raises(ValueError, match="must be positive"):
        la.create(id, class_counts=[10, 0, 5])
    with pytest.raises(ValueError, match="must be positive"):
        la.create(id, class_counts=[10, -1, 5])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        la.create(id, class_counts=[])
    with pytest.raises(TypeError, match="per-class counts"):
        la.create(id, class_counts="10,20")
    with pytest.raises(ValueError, match="NaN or Inf"):
        la.create(id, class_counts=[1.0, float("nan")])
    crit = la.create(id, class_counts=[10, 20, 30])
    z, y = batch(c=4)
    with pytest.raises(ValueError, match="class"):
        crit(z, y)


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        la.create("focal", gamma=-1)
    with pytest.raises(TypeError, match="gamma must be a real number"):
        la.create("focal", gamma="2")
    with pytest.raises(ValueError, match="scale must be > 0"):
        la.create("ldam", class_counts=COUNTS, scale=0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        la.create("focal", reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing must be <= 1"):
        la.create("ce", label_smoothing=1.5)
    with pytest.raises(ValueError, match="weight has 3 entries"):
        la.create("ldam", class_counts=COUNTS, weight=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="non-negative"):
        la.create("ce", weight=[1.0, -2.0])


def test_validate_false_skips_value_checks():
    z, y = batch()
    bad = z.clone()
    bad[0, 0] = float("nan")
    out = la.create("focal", validate=False)(bad, y)
    assert torch.isnan(out)


# ---------------------------------------------------------------- module state
def test_buffers_in_state_dict_and_moved_by_to():
    crit = la.create("ldam", class_counts=COUNTS)
    sd = crit.state_dict()
    assert set(sd) == {"class_counts"}  # the margins are derived from it (and cached per buffer version)
    crit2 = la.create("ldam", class_counts=[1] * C)
    z, y = batch()
    before = crit2(z, y)
    crit2.load_state_dict(sd)  # an in-place update of the buffer: the derived margins follow it
    torch.testing.assert_close(crit2(z, y), crit(z, y))
    assert not torch.allclose(before, crit2(z, y))
    assert crit.to(torch.float32).class_counts.dtype == torch.float32
    assert "max_margin=0.5" in repr(crit)


# ---------------------------------------------------------------- weighting: effective number and DRW
def test_effective_number_weights():
    w = LF.effective_number_weights(COUNTS, beta=0.9999)
    assert math.isclose(float(w.sum()), C) and bool((w[1:] > w[:-1]).all())
    n = np.array(COUNTS, dtype=np.float64)
    ref = (1 - 0.9999) / (1 - 0.9999**n)
    np.testing.assert_allclose(w.numpy(), ref / ref.sum() * C, rtol=1e-12)
    torch.testing.assert_close(LF.effective_number_weights(COUNTS, beta=0.0), torch.ones(C, dtype=torch.float64))
    inv = 1.0 / n
    np.testing.assert_allclose(LF.effective_number_weights(COUNTS, beta=1.0).numpy(), inv / inv.sum() * C)
    # continuity of the β → 1 limit
    np.testing.assert_allclose(LF.effective_number_weights(COUNTS, beta=1 - 1e-12).numpy(), inv / inv.sum() * C, rtol=1e-3)
    with pytest.raises(ValueError, match="beta must be <= 1"):
        la.create("effective_number", class_counts=COUNTS, beta=1.5)


def test_drw_schedule_and_state():
    drw = la.create("drw", class_counts=COUNTS, start_epoch=3)
    torch.testing.assert_close(drw(), torch.ones(C, dtype=torch.float64))
    drw.set_epoch(3)
    torch.testing.assert_close(drw(), LF.effective_number_weights(COUNTS, 0.9999))
    torch.testing.assert_close(LF.drw_weights(COUNTS, 3, start_epoch=3), drw())
    other = la.create("drw", class_counts=COUNTS, start_epoch=3)
    other.load_state_dict(drw.state_dict())
    torch.testing.assert_close(other(), drw())
    with pytest.raises(ValueError, match="epoch must be a non-negative int"):
        drw.set_epoch(-1)


def test_ldam_drw_by_composition_equals_weight_argument():
    z, y = batch()
    drw = la.create("drw", class_counts=COUNTS, start_epoch=0)
    per_sample = la.create("ldam", class_counts=COUNTS, reduction="none")(z, y)
    composed = la.weighting.apply(per_sample, drw, y)
    direct = la.create("ldam", class_counts=COUNTS, weight=drw())(z, y)
    torch.testing.assert_close(composed, direct)
    # CB-focal = focal + effective number
    cb = la.create("effective_number", class_counts=COUNTS)
    torch.testing.assert_close(
        la.weighting.apply(la.create("focal", reduction="none")(z, y), cb, y),
        la.create("focal", weight=cb())(z, y),
    )
    with pytest.raises(ValueError, match="per-sample"):
        la.weighting.apply(per_sample.sum(), drw, y)
    with pytest.raises(ValueError, match="target"):
        la.weighting.apply(per_sample, drw, None)


# ------------------------------------------------------------------ probability targets
@pytest.mark.parametrize("loss_id, adjust", [
    ("logit_adjusted", lambda z, n: z + 1.0 * torch.log(n / n.sum())),
    ("balanced_softmax", lambda z, n: z + torch.log(n)),
    ("vs", lambda z, n: z / (n.max() / n).pow(0.3) + 1.0 * torch.log(n / n.sum())),
])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_prior_losses_take_probability_targets(loss_id, adjust, reduction):
    counts = torch.tensor([50.0, 20.0, 5.0, 1.0], dtype=torch.float64)
    z = torch.randn(6, 4, dtype=torch.float64)
    p = torch.softmax(torch.randn(6, 4, dtype=torch.float64), 1)
    crit = la.create(loss_id, class_counts=counts.tolist(), reduction=reduction)
    # the definition: soft cross-entropy of the adjusted logits, -Σ_j p_ij log softmax(u_i)_j
    per_row = -(p * torch.log_softmax(adjust(z, counts), 1)).sum(1)
    expected = {"mean": per_row.mean(), "sum": per_row.sum(), "none": per_row}[reduction]
    torch.testing.assert_close(crit(z, p), expected)
    # one-hot probabilities give the same value and gradient as integer targets
    y = torch.tensor([0, 1, 2, 3, 3, 0])
    zi, zs = z.clone().requires_grad_(), z.clone().requires_grad_()
    a, b = crit(zi, y), crit(zs, F.one_hot(y, 4).double())
    torch.testing.assert_close(a, b)
    (a.sum()).backward(), (b.sum()).backward()
    torch.testing.assert_close(zi.grad, zs.grad)
    gradcheck_loss(lambda t: crit(t, p), z.clone().requires_grad_())


def test_prior_losses_reject_bad_probability_targets():
    crit = la.create("balanced_softmax", class_counts=[5, 3, 2])
    with pytest.raises(ValueError, match="sum to 1"):
        crit(torch.randn(2, 3), torch.full((2, 3), 0.5))
    with pytest.raises(ValueError):
        crit(torch.randn(2, 3), torch.full((2, 4), 0.25))
    with pytest.raises(TypeError, match="probability targets"):
        la.create("ldam", class_counts=[5, 3, 2])(torch.randn(2, 3), torch.full((2, 3), 1 / 3))


# ----------------------------------------------------------------- conventions at non-default settings
# (issue 26: each paper convention also checked by a float64 closed form away from its defaults)


def _ce_rows(z, y):
    """-log softmax(z)_y per row, written out."""
    return torch.logsumexp(z, 1) - z.gather(1, y[:, None]).squeeze(1)


def test_conventions_closed_forms_at_non_default_settings():
    z, y = batch(n=12, seed=5)
    n = torch.tensor(COUNTS, dtype=torch.float64)
    prior = n / n.sum()
    onehot = F.one_hot(y, C).double()
    # LDAM (Cao et al. 2019): margin Δ_j = m · n_j^{-1/4} / max_k n_k^{-1/4}, subtracted from the
    # target logit BEFORE the scale s: CE(s · (z - Δ_y e_y))
    delta = 0.3 * n.pow(-0.25) / n.pow(-0.25).max()
    ref = _ce_rows(10.0 * (z - delta[y][:, None] * onehot), y).mean()
    torch.testing.assert_close(LF.ldam(z, y, COUNTS, max_margin=0.3, scale=10.0), ref)
    # logit adjustment (Menon et al. 2021): CE(z + τ log π), τ = 0.5
    torch.testing.assert_close(LF.logit_adjusted(z, y, COUNTS, tau=0.5, reduction="none"), _ce_rows(z + 0.5 * prior.log(), y))
    # VS (Kini et al. 2021; README's CIFAR-10-LT setting γ = 0.2, τ = 1.2): CE(z / Δ + ι),
    # Δ_j = (n_max / n_j)^γ, ι_j = τ log π_j
    vs_delta = (n.max() / n) ** 0.2
    torch.testing.assert_close(LF.vs(z, y, COUNTS, gamma=0.2, tau=1.2, reduction="sum"),
                               _ce_rows(z / vs_delta + 1.2 * prior.log(), y).sum())
    # focal (Lin et al. 2017), softmax form: α_y (1 - p_y)^γ (-log p_y), γ = 0.5, per-class α
    alpha = torch.linspace(0.2, 0.9, C, dtype=torch.float64)
    ce = _ce_rows(z, y)
    p_y = torch.exp(-ce)
    torch.testing.assert_close(LF.focal(z, y, gamma=0.5, alpha=alpha, reduction="none"), alpha[y] * (1 - p_y) ** 0.5 * ce)
    # ... with a class weight as well: the mean divides by Σ w_y (torch's weighted mean)
    w = torch.linspace(1.0, 3.0, C, dtype=torch.float64)
    per = alpha[y] * (1 - p_y) ** 0.5 * ce
    torch.testing.assert_close(LF.focal(z, y, gamma=0.5, alpha=alpha, weight=w), (w[y] * per).sum() / w[y].sum())
    # sigmoid focal (torchvision's form): α on positives, 1 - α on negatives, α = 0.6, γ = 1.5
    t = (torch.rand(12, C, generator=torch.Generator().manual_seed(1)) < 0.3).double()
    q = torch.sigmoid(z)
    p_t = q * t + (1 - q) * (1 - t)
    bce = -(t * torch.log(q) + (1 - t) * torch.log(1 - q))
    ref = ((0.6 * t + 0.4 * (1 - t)) * (1 - p_t) ** 1.5 * bce).mean()
    torch.testing.assert_close(LF.sigmoid_focal(z, t, alpha=0.6, gamma=1.5), ref)


# ----------------------------------------------------------------- killing surviving mutants (issue 26)
def test_errors_name_the_argument_exactly():
    z, y = batch()
    with pytest.raises(ValueError, match=r"^weight has 3 entries but logits have 10 classes"):
        LF.cross_entropy(z, y, weight=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"^max_margin must be >= 0.0"):
        LF.ldam_margins(COUNTS, max_margin=-0.1)


def test_effective_number_function_checks_beta_in_the_unit_interval():
    for bad in (-0.5, 1.5):
        with pytest.raises(ValueError, match=r"^beta must be"):
            LF.effective_number_weights(COUNTS, beta=bad)


def test_probability_targets_with_class_weights_are_torchs_weighted_soft_ce():
    z, y = batch(n=8)
    g = torch.Generator().manual_seed(2)
    p = torch.softmax(torch.randn(8, C, generator=g, dtype=torch.float64), 1)
    w = torch.linspace(0.5, 2.0, C, dtype=torch.float64)
    for reduction in ("mean", "sum", "none"):
        torch.testing.assert_close(LF.cross_entropy(z, p, weight=w, reduction=reduction),
                                   F.cross_entropy(z, p, weight=w, reduction=reduction))
    # with a prior-aware adjustment too: torch's weighted soft CE of the adjusted logits
    shift = 0.5 * torch.log(torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS))
    torch.testing.assert_close(LF.logit_adjusted(z, p, COUNTS, tau=0.5, weight=w), F.cross_entropy(z + shift, p, weight=w))


def test_probability_target_values_are_checked_only_with_validate():
    z, _ = batch(n=4)
    outside = torch.full((4, C), 0.0, dtype=torch.float64)
    outside[:, 0], outside[:, 1] = 1.5, -0.5  # rows sum to 1, values outside [0, 1]
    with pytest.raises(ValueError, match="target values must lie in"):
        LF.cross_entropy(z, outside)
    not_summing = torch.full((4, C), 0.05, dtype=torch.float64)
    with pytest.raises(ValueError, match="must sum to 1"):
        LF.cross_entropy(z, not_summing)
    # validate=False: neither value check runs (no host read); the loss is torch's formula
    torch.testing.assert_close(LF.cross_entropy(z, outside, validate=False), F.cross_entropy(z, outside))
    torch.testing.assert_close(LF.cross_entropy(z, not_summing, validate=False), F.cross_entropy(z, not_summing))


def test_while_tracing_the_target_check_runs_before_the_kernel_and_skips_ignored_rows(monkeypatch):
    """Under torch.compile (compiling() True) the checks are not deferred: the target is checked
    before the kernel, and ignored rows (ignore_index) are not out-of-range targets."""
    from lossatlas.functional import _common

    z, y = batch(n=6)
    y = y.clone()
    y[1] = -100
    eager = LF.cross_entropy(z, y)
    monkeypatch.setattr(_common, "compiling", lambda: True)
    torch.testing.assert_close(LF.cross_entropy(z, y), eager)
    torch.testing.assert_close(LF.focal(z, y, gamma=1.0), LF.focal(z, y, gamma=1.0, validate=False))
    y[2] = C  # a real out-of-range target is still reported, naming target
    with pytest.raises(ValueError, match="target"):
        LF.cross_entropy(z, y)


def test_sigmoid_focal_mask_values_are_checked_when_validating():
    z = torch.randn(4, 3, dtype=torch.float64)
    t = (torch.rand(4, 3) < 0.5).double()
    mask = torch.ones_like(z)
    mask[1, 2] = -1.0
    with pytest.raises(ValueError, match="mask"):
        LF.sigmoid_focal(z, t, mask=mask)
    good = torch.ones_like(z)
    good[1, 2] = 0.0
    per = LF.sigmoid_focal(z, t, reduction="none")
    torch.testing.assert_close(LF.sigmoid_focal(z, t, mask=good), (per * good).sum() / good.sum())


@pytest.mark.parametrize("id", ALL_IDS)
def test_functions_validate_by_default(id):
    z, y = batch()
    z[0, 1] = float("nan")
    kw = {"class_counts": COUNTS} if id in PRIOR_IDS else {}
    with pytest.raises(ValueError, match="logits"):
        getattr(LF, id)(z, y, **kw)
    assert torch.isnan(getattr(LF, id)(z, y, validate=False, **kw))


def test_sigmoid_focal_negative_alpha_means_no_alpha():
    """torchvision's convention: alpha < 0 disables the α-balancing."""
    z = torch.randn(5, 3, dtype=torch.float64)
    t = (torch.rand(5, 3) < 0.4).double()
    torch.testing.assert_close(LF.sigmoid_focal(z, t, alpha=-1.0, gamma=1.5), LF.sigmoid_focal(z, t, alpha=None, gamma=1.5))
    assert not torch.allclose(LF.sigmoid_focal(z, t, alpha=0.25, gamma=1.5), LF.sigmoid_focal(z, t, alpha=None, gamma=1.5))


def test_sigmoid_focal_kd_mask_values_are_checked_when_validating():
    z = torch.randn(2, 3, 4, dtype=torch.float64)
    t = (torch.rand(2, 3, 4) < 0.5).double()
    mask = torch.ones_like(z)
    mask[1, 2, 3] = -1.0
    with pytest.raises(ValueError, match="mask"):
        LF.sigmoid_focal(z, t, mask=mask)


# --- A12 Gumbel optimised loss (Alexandridis et al. 2022) -----------------------------------------

def _gol_reference(z, y, lo=-4.0, hi=10.0):
    """The official recipe written out: clamp, Gumbel CDF, BCE per class against one-hot, summed
    over classes (droploss.py: sum(cls_loss) / n_i)."""
    zc = z.clamp(lo, hi) if lo is not None else z
    p = torch.exp(-torch.exp(-zc))
    onehot = F.one_hot(y, z.shape[1]).to(z.dtype)
    return F.binary_cross_entropy(p, onehot, reduction="none").sum(1)


def test_gumbel_matches_the_official_recipe_and_closed_form():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(8, 5, generator=g, dtype=torch.float64) * 3
    y = torch.arange(8) % 5
    out = LF.gumbel(z, y, reduction="none")
    assert torch.allclose(out, _gol_reference(z, y), rtol=1e-10, atol=1e-12)
    assert torch.allclose(LF.gumbel(z, y), _gol_reference(z, y).mean())  # 'mean': over samples, not cells
    # closed form of one row: target e^{-z_y}, others -log(1 - exp(-e^{-z_j}))
    row = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    expected = math.exp(-0.5) - math.log(1 - math.exp(-math.exp(1.0))) - math.log(1 - math.exp(-math.exp(-2.0)))
    assert LF.gumbel(row, torch.tensor([0])).item() == pytest.approx(expected, rel=1e-12)
    # the clamp: logits outside [-4, 10] act as the bounds and pass no gradient
    wide = torch.tensor([[-9.0, 12.0, 0.0]], dtype=torch.float64, requires_grad=True)
    bounded = torch.tensor([[-4.0, 10.0, 0.0]], dtype=torch.float64)
    assert LF.gumbel(wide, torch.tensor([2])).item() == pytest.approx(LF.gumbel(bounded, torch.tensor([2])).item())
    LF.gumbel(wide, torch.tensor([2])).backward()
    assert wide.grad[0, :2].abs().max() == 0 and wide.grad[0, 2] != 0
    # no clamp: the plain Gumbel BCE, exact (expm1) where 1 - exp(-e^{-z}) ~ e^{-z}
    far = torch.tensor([[30.0, 0.0]], dtype=torch.float64)
    assert LF.gumbel(far, torch.tensor([1]), clamp_max=None).item() == pytest.approx(1.0 + 30.0, rel=1e-9)


def test_gumbel_gradcheck_weight_ignore_and_bad_input():
    g = torch.Generator().manual_seed(6)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, -100])
    gradcheck_loss(lambda x: LF.gumbel(x, y, weight=[1.0, 2.0, 0.5, 1.0]), z)
    gradcheck_loss(lambda x: LF.gumbel(x, y, clamp_min=None, clamp_max=None), z)
    w = torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=torch.float64)
    per = _gol_reference(z[:5], y[:5])
    assert torch.allclose(LF.gumbel(z, y, weight=w), (w[y[:5]] * per).sum() / w[y[:5]].sum())
    with pytest.raises(ValueError, match="clamp_min"):
        LF.gumbel(z, y, clamp_min=1.0, clamp_max=0.0)
    with pytest.raises(TypeError, match="clamp_max"):
        la.create("gol", clamp_max="10")
    assert_finite_extremes(lambda a, b: LF.gumbel(a, b), num_classes=4)


def _gumbel_definition(z, y, lo, hi, w, ignore_index, reduction):
    """The definition from composed autograd ops (float64): clamp, then e^{-z_y} for the target and
    -log(1 - exp(-e^{-z_j})) for the others, summed per row, weighted and reduced as F.cross_entropy."""
    zc = z.clamp(lo, hi) if (lo is not None or hi is not None) else z
    keep = y != ignore_index
    safe = torch.where(keep, y, 0)
    e = torch.exp(-zc)
    others = -torch.log(-torch.expm1(-e))
    onehot = F.one_hot(safe, z.shape[1]).bool()
    rows = torch.where(onehot, e, others).sum(1)
    rw = keep.to(z.dtype) * (w[safe] if w is not None else 1.0)
    if reduction == "none":
        return rows * rw
    if reduction == "sum":
        return (rows * rw).sum()
    return (rows * rw).sum() / rw.sum() if rw.sum() > 0 else (rows * rw).sum()


@pytest.mark.parametrize("path", ["plain", "fused"])
@pytest.mark.parametrize("num_classes", [10, 100, 1000])
def test_gumbel_one_pass_function_equals_the_definition(num_classes, path):
    """The hand-derived single-pass Gumbel function (taken when the logits need a gradient) gives
    the composed definition's values and gradients in float64: clamps on both sides, one side or
    none, logits far out (±100, and exactly on the clamp bounds, where the clamp still passes the
    gradient), class weights, ignored rows, every reduction."""
    from lossatlas._paths import force_path

    g = torch.Generator().manual_seed(num_classes)
    n = 12
    z = torch.randn(n, num_classes, generator=g, dtype=torch.float64) * 4
    z[0, :3] = torch.tensor([100.0, -100.0, 30.0], dtype=torch.float64)
    z[1, :4] = torch.tensor([-4.0, 10.0, -4.0, 10.0], dtype=torch.float64)  # on the default bounds
    y = torch.randint(0, num_classes, (n,), generator=g)
    y[0], y[1], y[2], y[3] = 0, 2, 1, -100
    w = torch.rand(num_classes, generator=g, dtype=torch.float64) + 0.5
    cases = [dict(), dict(clamp_min=None, clamp_max=None), dict(clamp_min=-3.0, clamp_max=None),
             dict(clamp_min=None, clamp_max=2.5)]
    for kw in cases:
        lo, hi = kw.get("clamp_min", -4.0), kw.get("clamp_max", 10.0)
        zz = z if lo is not None else z.clamp_min(-30.0)  # unclamped: e^{-z} stays finite
        for weight in (None, w):
            for reduction in ("mean", "sum", "none"):
                a = zz.clone().requires_grad_()
                b = zz.clone().requires_grad_()
                with force_path(path):
                    out = LF.gumbel(a, y, weight=weight, reduction=reduction, validate=False, **kw)
                ref = _gumbel_definition(b, y, lo, hi, weight, -100, reduction)
                torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
                cot = torch.rand(out.shape, generator=g, dtype=torch.float64)
                (out * cot).sum().backward()
                (ref * cot).sum().backward()
                torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-14)
    # the path is taken (the gradient comes from the function) and gradcheck holds through it
    with force_path("fused"):
        small = z[:4, :5].clone()
        yy = torch.tensor([0, 1, 4, 2])
        assert "GumbelRows" in type(LF.gumbel(small.requires_grad_(), yy, reduction="none").grad_fn).__name__
        assert "GumbelRows" in type(LF.gumbel(small, yy, reduction="none", validate=False).grad_fn).__name__
        inner = torch.randn(4, 5, generator=g, dtype=torch.float64) * 2  # away from the clamp's kinks
        gradcheck_loss(lambda x: LF.gumbel(x, yy, weight=[1.0, 2.0, 0.5, 1.0, 3.0]), inner)
        gradcheck_loss(lambda x: LF.gumbel(x, yy, clamp_min=None, clamp_max=None), inner)
        gradcheck_loss(lambda x: LF.gumbel(x, yy, clamp_min=-0.5, clamp_max=0.5), inner)
        # an empty batch: 0 (mean), connected to the graph
        empty = torch.zeros(0, 7, dtype=torch.float64, requires_grad=True)
        out = LF.gumbel(empty, torch.zeros(0, dtype=torch.long))
        out.backward()
        assert out.item() == 0.0 and empty.grad.shape == (0, 7)


def test_gumbel_scores_rare_classes_less_harshly_than_sigmoid_bce():
    """The Gumbel CDF's asymmetry (the paper's motivation): a negative class with a low score costs
    less than under the sigmoid, and a target with a low score costs more."""
    z = torch.tensor([[-2.0, -2.0]], dtype=torch.float64)
    gum = torch.exp(-torch.exp(-z))
    sig = torch.sigmoid(z)
    assert bool((gum < sig).all())  # the Gumbel CDF is lower on the left: negatives are cheaper there
    as_negative = LF.gumbel(z, torch.tensor([0]), reduction="none") - torch.exp(-z[0, 0])
    assert as_negative.item() < F.binary_cross_entropy_with_logits(z[0, 1], torch.tensor(0.0, dtype=torch.float64)).item()


def test_a_masked_class_in_an_ignored_row_is_not_a_masked_target():
    # the -inf check looks only at rows that count: an ignored row's placeholder target is not its target
    z = torch.tensor([[float("-inf"), 1.0, 0.5], [0.2, 0.1, -0.3]], dtype=torch.float64)
    out = LF.focal(z, torch.tensor([-100, 2]))
    torch.testing.assert_close(out, LF.focal(z[1:], torch.tensor([2])))
