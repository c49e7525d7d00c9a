"""Calibration-minded losses C1–C5: identities, gradients, edge cases, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
import lossatlas.functional as LF
from helpers import assert_finite_extremes, gradcheck_loss
from lossatlas._paths import force_path

C = 6


def batch(n=12, c=C, seed=0, dtype=torch.float64, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=dtype) * scale, torch.randint(0, c, (n,), generator=g)


PER_SAMPLE_IDS = ["poly1", "encouraging", "squentropy", "spherical_z_loss", "log_z_squared"]


# ---------------------------------------------------------------- identities
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_poly1_epsilon0_is_cross_entropy(reduction):
    z, y = batch()
    got = la.create("poly1", epsilon=0.0, reduction=reduction)(z, y)
    torch.testing.assert_close(got, F.cross_entropy(z, y, reduction=reduction), rtol=1e-12, atol=1e-12)
    # with label smoothing, and with class weights
    got = LF.poly1(z, y, epsilon=0.0, label_smoothing=0.1, reduction=reduction)
    torch.testing.assert_close(got, F.cross_entropy(z, y, label_smoothing=0.1, reduction=reduction))
    w = torch.linspace(0.5, 2.0, C, dtype=z.dtype)
    got = LF.poly1(z, y, epsilon=0.0, weight=w, reduction=reduction)
    torch.testing.assert_close(got, F.cross_entropy(z, y, weight=w, reduction=reduction))


def test_poly1_definition():
    z, y = batch()
    p = torch.softmax(z, 1).gather(1, y[:, None]).squeeze(1)
    expected = -torch.log(p) + 2.5 * (1 - p)
    torch.testing.assert_close(LF.poly1(z, y, epsilon=2.5, reduction="none"), expected, rtol=1e-10, atol=1e-12)
    # with smoothing: p_t = Σ t_j p_j
    t = F.one_hot(y, C).double() * 0.9 + 0.1 / C
    pt = (t * torch.softmax(z, 1)).sum(1)
    expected = F.cross_entropy(z, y, label_smoothing=0.1, reduction="none") + (1 - pt)
    torch.testing.assert_close(LF.poly1(z, y, label_smoothing=0.1, reduction="none"), expected)


def _encouraging_by_definition(z, y, log_end):
    p = torch.softmax(z, 1).gather(1, y[:, None]).squeeze(1)
    out = []
    for pi in p.tolist():
        if log_end != 1.0 and pi > log_end:
            bonus = (pi - log_end) / (log_end - 1) + math.log(1 - log_end)
        else:
            bonus = math.log(max(1 - pi, 1e-5))
        out.append(-math.log(pi) + bonus)
    return torch.tensor(out, dtype=z.dtype)


@pytest.mark.parametrize("log_end", [0.5, 0.75, 1.0])
def test_encouraging_definition_and_bonus_sign(log_end):
    z, y = batch(n=40)
    got = LF.encouraging(z, y, log_end=log_end, reduction="none")
    torch.testing.assert_close(got, _encouraging_by_definition(z, y, log_end), rtol=1e-9, atol=1e-12)
    # the bonus log(1 - p) <= 0 rewards confidence: never above CE
    assert bool((got <= F.cross_entropy(z, y, reduction="none") + 1e-12).all())


def test_encouraging_bonus_is_continuous_at_log_end():
    # two-class rows with p_y just below / above log_end give (almost) the same bonus
    log_end = 0.75
    logit = math.log(log_end / (1 - log_end))
    z = torch.tensor([[logit - 1e-7, 0.0], [logit + 1e-7, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 0])
    lo, hi = LF.encouraging(z, y, log_end=log_end, reduction="none")
    assert abs(float(lo - hi)) < 1e-6


def test_squentropy_definition_and_ce_when_wrong_logits_vanish():
    z, y = batch()
    wrong = z.clone().scatter_(1, y[:, None], 0.0)
    expected = F.cross_entropy(z, y, reduction="none") + wrong.pow(2).sum(1) / (C - 1)
    torch.testing.assert_close(LF.squentropy(z, y, reduction="none"), expected, rtol=1e-12, atol=1e-12)
    only_target = torch.zeros_like(z).scatter_(1, y[:, None], z.gather(1, y[:, None]))
    torch.testing.assert_close(LF.squentropy(only_target, y), F.cross_entropy(only_target, y))


def test_spherical_z_loss_definition_and_invariances():
    z, y = batch()
    mu = z.mean(1)
    sigma = ((z ** 2).mean(1) - mu ** 2).sqrt()  # the authors' formula
    zc = (z.gather(1, y[:, None]).squeeze(1) - mu) / (sigma + 1e-12)
    for a, b in [(1.0, 0.0), (0.5, 2.0)]:
        expected = F.softplus(a * (b - zc)) / a
        torch.testing.assert_close(LF.spherical_z_loss(z, y, a=a, b=b, reduction="none"), expected)
    base = LF.spherical_z_loss(z, y, a=0.5, b=2.0, reduction="none")
    torch.testing.assert_close(LF.spherical_z_loss(z + 7.0, y, a=0.5, b=2.0, reduction="none"), base)
    torch.testing.assert_close(LF.spherical_z_loss(z * 13.0, y, a=0.5, b=2.0, reduction="none"), base)
    # cross-entropy is shift- but not scale-invariant: the two losses really differ
    assert not torch.allclose(F.cross_entropy(z * 13.0, y), F.cross_entropy(z, y))


def test_log_z_squared_is_ce_plus_palm_penalty_and_differs_from_spherical():
    z, y = batch()
    lse = torch.logsumexp(z, 1)
    expected = F.cross_entropy(z, y, reduction="none") + 1e-4 * lse ** 2
    torch.testing.assert_close(LF.log_z_squared(z, y, reduction="none"), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(la.create("log_z_squared", coefficient=0.0)(z, y), F.cross_entropy(z, y))
    torch.testing.assert_close(LF.log_z_regulariser(z), (lse ** 2).mean())
    mask = torch.arange(z.shape[0]) % 2 == 0
    torch.testing.assert_close(LF.log_z_regulariser(z, mask=mask), (lse[mask] ** 2).mean())
    # the penalty pulls log Z to 0: its gradient is 2 log Z · softmax(z)
    zz = z.clone().requires_grad_()
    LF.log_z_regulariser(zz, reduction="sum").backward()
    torch.testing.assert_close(zz.grad, 2 * lse[:, None] * torch.softmax(z, 1))
    # two different "Z-losses"
    assert la.info("log_z_squared").cls is not la.info("spherical_z_loss").cls
    with pytest.raises(ValueError, match="unknown lossatlas id"):
        la.info("z_loss")


# ---------------------------------------------------------------- AnyLoss
def test_soft_confusion_matrix_approaches_hard_one_as_amplifier_grows():
    from sklearn.metrics import confusion_matrix, multilabel_confusion_matrix

    g = torch.Generator().manual_seed(1)
    z = torch.randn(200, 4, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 4, (200,), generator=g)
    p = torch.softmax(z, 1)
    hard = multilabel_confusion_matrix(F.one_hot(y, 4).numpy(), (p > 0.5).int().numpy())
    errors = []
    for amp in [1.0, 10.0, 73.0, 1e3, 1e5]:
        soft = LF.soft_confusion_matrix(z, y, amplifier=amp)
        assert soft.shape == (4, 2, 2)
        torch.testing.assert_close(soft.sum((1, 2)), torch.full((4,), 200.0, dtype=z.dtype))
        errors.append(float((soft - torch.from_numpy(hard).double()).abs().max()))
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-2

    # binary input [N] with sigmoid probabilities
    zb = torch.randn(100, generator=g, dtype=torch.float64) * 3
    yb = (torch.rand(100, generator=g) < 0.3).long()
    hard_b = confusion_matrix(yb.numpy(), (zb > 0).int().numpy(), labels=[0, 1])[None]
    soft_b = LF.soft_confusion_matrix(zb, yb, amplifier=1e6)
    np.testing.assert_allclose(soft_b.numpy(), hard_b, atol=1e-2)


def _notebook_scores(z, y, L=73.0, beta=1.0):
    """The official notebook's closed forms (sy, syh, syhy, yl), written out independently."""
    yh = torch.sigmoid(L * (torch.sigmoid(z) - 0.5))
    y = y.double()
    sy, syh, syhy, yl = y.sum(), yh.sum(), (yh * y).sum(), float(len(y))
    return {
        "accuracy": (yl - sy - syh + 2 * syhy) / yl,
        "f_beta": (1 + beta ** 2) * syhy / (beta ** 2 * sy + syh),
        "gmean": torch.sqrt(syhy * (yl - syh - sy + syhy) / (sy * (yl - sy))),
        "balanced_accuracy": (yl * (syhy + sy) - sy * (syh + sy)) / (2 * sy * (yl - sy)),
    }


@pytest.mark.parametrize("metric", ["accuracy", "f_beta", "gmean", "balanced_accuracy"])
def test_anyloss_binary_matches_official_closed_forms(metric):
    g = torch.Generator().manual_seed(2)
    z = torch.randn(64, generator=g, dtype=torch.float64)
    y = (torch.rand(64, generator=g) < 0.4).long()
    beta = 2.0
    expected = 1 - _notebook_scores(z, y, beta=beta)[metric]
    torch.testing.assert_close(la.create("anyloss", metric=metric, beta=beta)(z, y), expected)
    torch.testing.assert_close(LF.anyloss(z[:, None], y.double(), metric=metric, beta=beta), expected)


@pytest.mark.parametrize(
    "metric,sk",
    [("accuracy", "accuracy"), ("f_beta", "f1"), ("balanced_accuracy", "balanced"), ("gmean", "gmean")],
)
def test_anyloss_macro_matches_hard_metrics_at_large_amplifier(metric, sk):
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score

    g = torch.Generator().manual_seed(3)
    z = torch.randn(300, 3, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 3, (300,), generator=g)
    pred = (torch.softmax(z, 1) > 0.5).int().numpy()
    onehot = F.one_hot(y, 3).numpy()
    per_class = []
    for c in range(3):
        t, p = onehot[:, c], pred[:, c]
        if sk == "accuracy":
            per_class.append(accuracy_score(t, p))
        elif sk == "f1":
            per_class.append(f1_score(t, p))
        elif sk == "balanced":
            per_class.append(balanced_accuracy_score(t, p))
        else:
            per_class.append(math.sqrt(recall_score(t, p) * recall_score(1 - t, 1 - p)))
    got = LF.anyloss_per_class(z, y, metric=metric, amplifier=1e6)
    np.testing.assert_allclose(got.numpy(), 1 - np.array(per_class), atol=5e-3)
    torch.testing.assert_close(LF.anyloss(z, y, metric=metric, amplifier=1e6), got.mean())


def test_anyloss_trains_towards_the_metric():
    # a few gradient steps on a separable 1-D problem raise the hard F1
    g = torch.Generator().manual_seed(4)
    x = torch.randn(200, 1, generator=g)
    y = (x[:, 0] + 0.1 * torch.randn(200, generator=g) > 0.8).long()
    w = torch.zeros(1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    crit = la.create("anyloss", metric="f_beta")
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss = crit((x * w + b)[:, 0], y)
        first = float(loss.detach()) if first is None else first
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first - 0.2


# ---------------------------------------------------------------- gradients and extremes
@pytest.mark.parametrize(
    "id,kwargs",
    [
        ("poly1", {}),
        ("poly1", {"label_smoothing": 0.1, "epsilon": -0.5}),
        ("encouraging", {"log_end": 0.75}),
        ("encouraging", {"log_end": 1.0}),
        ("squentropy", {}),
        ("spherical_z_loss", {"a": 0.7, "b": 1.0}),
        ("log_z_squared", {"coefficient": 0.1}),
        ("anyloss", {"metric": "accuracy", "amplifier": 5.0}),
        ("anyloss", {"metric": "f_beta", "beta": 0.5, "amplifier": 5.0}),
        ("anyloss", {"metric": "gmean", "amplifier": 5.0}),
        ("anyloss", {"metric": "balanced_accuracy"}),
    ],
)
def test_gradcheck(id, kwargs):
    z, y = batch(n=8, c=4, scale=1.0)
    gradcheck_loss(la.create(id, **kwargs), z, y)


@pytest.mark.parametrize("id", PER_SAMPLE_IDS + ["anyloss"])
def test_extreme_logits_finite(id):
    assert_finite_extremes(la.create(id))
    assert_finite_extremes(la.create(id, reduction="none"))


@pytest.mark.parametrize("metric", ["accuracy", "f_beta", "gmean", "balanced_accuracy"])
def test_anyloss_extreme_and_binary_finite(metric):
    assert_finite_extremes(la.create("anyloss", metric=metric))
    for dtype in (torch.float32, torch.bfloat16):
        z = torch.tensor([1e4, -1e4, 1e4, -1e4], dtype=dtype, requires_grad=True)
        loss = LF.anyloss(z, torch.tensor([1, 0, 0, 1]), metric=metric)
        loss.float().backward()
        assert torch.isfinite(loss.float()) and torch.isfinite(z.grad.float()).all()


@pytest.mark.parametrize("id", PER_SAMPLE_IDS + ["anyloss"])
def test_low_precision_computed_in_float32(id):
    z, y = batch(dtype=torch.float32)
    crit = la.create(id)
    out = crit(z.to(torch.bfloat16), y)
    assert out.dtype == torch.bfloat16
    ref = crit(z.to(torch.bfloat16).float(), y)
    torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)


# ---------------------------------------------------------------- edge cases
@pytest.mark.parametrize("id", PER_SAMPLE_IDS)
def test_empty_batch_and_ignore_index(id):
    crit = la.create(id)
    z = torch.zeros(0, C, requires_grad=True)
    out = crit(z, torch.zeros(0, dtype=torch.long))
    assert out.item() == 0.0
    out.backward()
    z, y = batch()
    y_ign = y.clone()
    y_ign[::2] = -100
    torch.testing.assert_close(crit(z, y_ign), crit(z[1::2], y[1::2]))
    assert la.create(id, reduction="none")(z, y_ign)[::2].abs().sum() == 0
    assert crit(z, torch.full_like(y, -100)).item() == 0.0


def test_anyloss_one_class_present_is_finite():
    # no positive in the batch: TPR is undefined, taken as 0; no NaN in value or gradient
    z = torch.randn(10, dtype=torch.float64, requires_grad=True)
    for metric in ["accuracy", "f_beta", "gmean", "balanced_accuracy"]:
        loss = LF.anyloss(z, torch.zeros(10, dtype=torch.long), metric=metric)
        (g,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(loss) and torch.isfinite(g).all()
    # multi-class batch where only class 0 occurs
    zc = torch.randn(10, 3, dtype=torch.float64, requires_grad=True)
    loss = LF.anyloss_per_class(zc, torch.zeros(10, dtype=torch.long), metric="balanced_accuracy")
    assert loss.shape == (3,) and torch.isfinite(loss).all()


@pytest.mark.parametrize("metric", ["accuracy", "f_beta", "gmean", "balanced_accuracy"])
def test_anyloss_reductions_of_a_batch_level_loss(metric):
    # one loss per batch: "mean" is it, "none" gives it to each of the N samples, "sum" is N times it
    g = torch.Generator().manual_seed(6)
    z = torch.randn(64, generator=g, dtype=torch.float64)
    y = (torch.rand(64, generator=g) < 0.4).long()
    expected = 1 - _notebook_scores(z, y, beta=1.0)[metric]  # the official binary closed form
    none = la.create("anyloss", metric=metric, reduction="none")(z, y)
    assert none.shape == (64,)
    torch.testing.assert_close(none, expected.expand(64))
    torch.testing.assert_close(la.create("anyloss", metric=metric, reduction="sum")(z, y), 64 * expected)
    torch.testing.assert_close(la.create("anyloss", metric=metric)(z, y), expected)
    # multi-class: the macro mean of the per-class losses, the same for every sample
    zc, yc = batch(n=20, c=3)
    per_class = LF.anyloss_per_class(zc, yc, metric=metric)
    assert per_class.shape == (3,)
    torch.testing.assert_close(LF.anyloss(zc, yc, metric=metric, reduction="none"), per_class.mean().expand(20))
    # the gradient of "none"'s mean is the gradient of the batch loss
    a = zc.clone().requires_grad_()
    b = zc.clone().requires_grad_()
    LF.anyloss(a, yc, metric=metric, reduction="none").mean().backward()
    LF.anyloss_per_class(b, yc, metric=metric).mean().backward()
    torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("metric", ["accuracy", "f_beta", "gmean", "balanced_accuracy"])
def test_anyloss_empty_batch_is_zero_with_zero_gradient(metric):
    # (the soft confusion matrix of no sample is all zeros; 1 − metric would be 1 for F_β)
    for shape, target in (((0,), torch.zeros(0, dtype=torch.long)), ((0, 3), torch.zeros(0, dtype=torch.long))):
        z = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
        for reduction in ("mean", "sum"):
            out = LF.anyloss(z, target, metric=metric, reduction=reduction)
            assert out.shape == () and out.item() == 0.0
            (g,) = torch.autograd.grad(out, z)
            assert g.shape == shape
        assert LF.anyloss(z, target, metric=metric, reduction="none").shape == (0,)


# ---------------------------------------------------------------- errors
def test_bad_inputs():
    z, y = batch()
    with pytest.raises(ValueError, match="epsilon"):
        la.create("poly1", epsilon=-2.0)
    with pytest.raises(ValueError, match="log_end"):
        la.create("encouraging", log_end=0.0)
    with pytest.raises(ValueError, match="log_end"):
        la.create("encouraging", log_end=1.5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        la.create("squentropy")(torch.randn(3, 1), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2 classes"):
        la.create("spherical_z_loss")(torch.randn(3, 1), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="a must be >"):
        la.create("spherical_z_loss", a=0.0)
    with pytest.raises(ValueError, match="coefficient"):
        la.create("log_z_squared", coefficient=-1.0)
    with pytest.raises(ValueError, match="metric must be one of"):
        la.create("anyloss", metric="auc")
    with pytest.raises(ValueError, match="amplifier"):
        la.create("anyloss", amplifier=0.0)
    with pytest.raises(ValueError, match="0 or 1"):
        la.create("anyloss")(torch.randn(4), torch.tensor([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="shape"):
        la.create("anyloss")(torch.randn(4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="mask must have shape"):
        LF.log_z_regulariser(z, mask=torch.ones(3))
    for id in PER_SAMPLE_IDS + ["anyloss"]:
        crit = la.create(id)
        with pytest.raises(TypeError, match="target"):
            crit(z, y.double())
        with pytest.raises(ValueError, match=r"\[0, 6\)"):
            crit(z, torch.full_like(y, 9))
        with pytest.raises(ValueError, match="NaN"):
            crit(torch.full_like(z, float("nan")), y)
        with pytest.raises(TypeError, match="logits"):
            crit(z.long(), y)
        with pytest.raises(ValueError, match="reduction"):
            la.create(id, reduction="avg")


# ---------------------------------------------------------------- conventions at non-default settings
# (issue 26: each paper convention also checked by a float64 closed form away from its defaults)
def test_log_z_squared_coefficient_and_squentropy_average_at_non_default_settings():
    z, y = batch(n=11)
    c = z.shape[1]
    lse = torch.logsumexp(z, 1)
    ce = lse - z.gather(1, y[:, None]).squeeze(1)
    # PaLM z-loss: CE + c · (log Z)^2 per sample, averaged over samples; c = 0.05
    torch.testing.assert_close(LF.log_z_squared(z, y, coefficient=0.05), (ce + 0.05 * lse**2).mean())
    torch.testing.assert_close(LF.log_z_squared(z, y, coefficient=0.05, reduction="sum"), (ce + 0.05 * lse**2).sum())
    # squentropy (Hui, Belkin, Wright 2023): CE + the MEAN over the C - 1 wrong classes of z_j^2
    # (not the sum, not over all C), on logits far from the defaults' scale
    z3 = 4.0 * z
    lse3 = torch.logsumexp(z3, 1)
    ce3 = lse3 - z3.gather(1, y[:, None]).squeeze(1)
    sq = (z3**2).sum(1) - z3.gather(1, y[:, None]).squeeze(1) ** 2
    torch.testing.assert_close(LF.squentropy(z3, y, reduction="sum"), (ce3 + sq / (c - 1)).sum())


# ---------------------------------------------------------------- killing surviving mutants (issue 26)
def test_log_z_regulariser_mask_shape_error_names_n():
    z = torch.zeros(3, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"mask must have shape \[N\] = \[3\], got \(5,\)"):
        LF.log_z_regulariser(z, mask=torch.ones(5))


def test_squentropy_one_class_error_says_why():
    with pytest.raises(ValueError, match=r"squentropy needs at least 2 classes \(it averages over the C - 1 wrong ones\), got logits \(3, 1\)"):
        LF.squentropy(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))


def test_poly1_weight_of_the_wrong_length_is_named():
    z, y = batch()
    with pytest.raises(ValueError, match=r"^weight has 2 entries but logits have 6 classes"):
        LF.poly1(z, y, weight=[1.0, 2.0])


def test_spherical_z_loss_one_class_error_names_the_loss():
    with pytest.raises(ValueError, match=r"^spherical_z_loss needs at least 2 classes \(it standardises over classes\)"):
        LF.spherical_z_loss(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))


def test_anyloss_nan_logits_error_names_logits():
    z = torch.zeros(4, 3, dtype=torch.float64)
    z[1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"^logits"):
        LF.anyloss(z, torch.tensor([0, 1, 2, 0]))


# --- C7 CALS (Liu et al. 2023): class-wise augmented Lagrangian -----------------------------------

def _phr(h, lam, rho):
    """penalty.py::phr of by-liu/CALS, written out: value and derivative in h."""
    x = lam + rho * h
    value = torch.where(x >= 0, (x ** 2 - lam ** 2) / (2 * rho), -(lam ** 2) / (2 * rho) + 0 * h)
    return value, torch.where(x >= 0, x, torch.zeros_like(x))


def test_cals_value_is_ce_plus_the_phr_penalty_of_the_margin_constraints():
    g = torch.Generator().manual_seed(8)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64) * 8
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    lam = torch.tensor([0.5, 2.0, 0.0, 1.0], dtype=torch.float64)
    margin, rho = 3.0, 1.5
    h = (z.max(1, keepdim=True).values - z - margin) / margin
    expected = F.cross_entropy(z, y, reduction="none") + _phr(h, lam, rho)[0].sum(1)
    out = LF.cals(z, y, multipliers=lam, margin=margin, rho=rho, reduction="none")
    assert torch.allclose(out, expected, rtol=1e-12)
    h_raw = z.max(1, keepdim=True).values - z - margin  # normalize=False: the distances themselves
    assert torch.allclose(LF.cals(z, y, multipliers=lam, margin=margin, rho=rho, normalize=False, reduction="none"),
                          F.cross_entropy(z, y, reduction="none") + _phr(h_raw, lam, rho)[0].sum(1))
    # all multipliers 0 and every constraint met: cross-entropy exactly
    assert torch.allclose(LF.cals(z, y, multipliers=torch.zeros(4, dtype=torch.float64), margin=1e3),
                          F.cross_entropy(z, y))
    gradcheck_loss(lambda x: LF.cals(x, y, multipliers=lam, margin=margin, rho=rho), z)


def test_cals_penalty_pushes_large_logit_gaps_down():
    z = torch.tensor([[30.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)  # gap 30 > margin 20
    lam = torch.ones(3, dtype=torch.float64)
    (g_pen,) = torch.autograd.grad(LF.cals(z, torch.tensor([0]), multipliers=lam), z)
    (g_ce,) = torch.autograd.grad(F.cross_entropy(z, torch.tensor([0])), z)
    assert g_pen[0, 0] > g_ce[0, 0] and g_pen[0, 1] < g_ce[0, 1]  # the max is pulled down, the others up


def test_cals_module_multiplier_and_rho_updates_follow_the_official_rules():
    g = torch.Generator().manual_seed(9)
    crit = la.create("cals", num_classes=4, margin=2.0)
    assert torch.equal(crit.multipliers, torch.full((4,), 1e-6, dtype=torch.float64))
    z, y = torch.randn(5, 4, generator=g) * 4, torch.tensor([0, 1, 2, 3, 0])
    assert torch.equal(crit(z, y), LF.cals(z, y, **crit.functional_kwargs()))
    assert torch.equal(crit(z, y), LF.cals(z, y, margin=2.0))  # multipliers None = the start 1e-6
    batches = [torch.randn(7, 4, generator=g) * 5 for _ in range(3)]
    for b in batches:
        crit.accumulate(b)
    allz = torch.cat(batches).double()
    h = (allz.max(1, keepdim=True).values - allz - 2.0) / 2.0
    expected = _phr(h, torch.full((4,), 1e-6, dtype=torch.float64), 1.0)[1].clamp(1e-6, 1e6).mean(0)
    assert torch.allclose(crit.update_multipliers(), expected.clamp(1e-6, 1e6))
    assert torch.allclose(crit.multipliers, expected) and bool((crit.multipliers > 1e-6).any())
    with pytest.raises(RuntimeError, match="accumulate"):
        crit.update_multipliers()  # the sums were reset
    state = crit.state_dict()
    other = la.create("cals", num_classes=4, margin=2.0)
    other.load_state_dict(state)
    assert torch.equal(other.multipliers, crit.multipliers) and torch.equal(other(z, y), crit(z, y))
    # rho: grows by gamma when the validation penalty did not fall below tao * previous, capped at rho_max
    assert crit.update_rho(1.0) == 1.0  # no previous penalty
    assert crit.update_rho(0.95) == pytest.approx(1.2)  # 0.95 > 0.9 * 1.0
    assert crit.update_rho(0.5) == pytest.approx(1.2)  # 0.5 < 0.9 * 0.95: improved enough
    for _ in range(30):
        crit.update_rho(1.0)
    assert crit.rho == 10.0
    assert crit.penalty(z) == pytest.approx(float(_phr((z.double().max(1, keepdim=True).values - z.double() - 2) / 2,
                                                       crit.multipliers, crit.rho)[0].sum(1).mean()))


def test_cals_bad_input():
    z, y = torch.randn(3, 4), torch.tensor([0, 1, 3])
    with pytest.raises(ValueError, match="multipliers"):
        LF.cals(z, y, multipliers=torch.ones(3))
    with pytest.raises(ValueError, match="multipliers"):
        LF.cals(z, y, multipliers=-torch.ones(4))
    with pytest.raises(ValueError, match="margin"):
        la.create("cals", num_classes=4, margin=0.0)
    with pytest.raises(ValueError, match="num_classes"):
        la.create("cals", num_classes=0)
    with pytest.raises(ValueError, match="tao"):
        la.create("cals", num_classes=4, tao=1.5)
    with pytest.raises(ValueError, match="logits"):
        la.create("cals", num_classes=4).accumulate(torch.randn(2, 3))


# ---------------------------------------------------------------- C8 correctness-aware loss (Liu et al. 2024)
def _ca_official(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """liuyvchi/Correctness-aware-calibration temperature_scaling_CA.py's loss, written out: MSE between
    the max softmax probability and the correctness, weighted 1 - acc on correct rows and acc on wrong ones,
    summed and divided by the summed weights."""
    correct = z.argmax(1) == y
    acc = correct.double().sum() / len(correct)
    weights = torch.where(correct, 1 - acc, acc)
    loss = (torch.softmax(z, 1).max(1)[0] - correct.double()) ** 2
    return (loss * weights).sum() / weights.sum()


def test_correctness_aware_is_the_official_weighted_mse():
    z, y = batch(n=20, seed=21, scale=1.5)
    correct = z.argmax(1) == y
    assert 0 < int(correct.sum()) < 20
    torch.testing.assert_close(LF.correctness_aware(z, y), _ca_official(z, y), rtol=1e-12, atol=1e-12)
    conf = torch.softmax(z, 1).amax(1)
    sq = (conf - correct.double()) ** 2
    # the balanced mean is the mean of the two groups' means; 'none' has mean 'mean'
    torch.testing.assert_close(LF.correctness_aware(z, y), 0.5 * (sq[correct].mean() + sq[~correct].mean()))
    torch.testing.assert_close(LF.correctness_aware(z, y, reduction="none").mean(), LF.correctness_aware(z, y))
    # balance=False: the plain mean of (conf - correct)^2
    torch.testing.assert_close(LF.correctness_aware(z, y, balance=False, reduction="none"), sq, rtol=1e-12, atol=1e-12)
    # a batch of one kind only: the plain mean (the official weights are all 0 there: 0 / 0)
    y_all = z.argmax(1)
    torch.testing.assert_close(LF.correctness_aware(z, y_all), ((1 - conf) ** 2).mean())
    gradcheck_loss(lambda a: LF.correctness_aware(a, y), z)
    gradcheck_loss(lambda a: LF.correctness_aware(a, y, balance=False, reduction="sum"), z)


def test_correctness_aware_lowers_confidence_on_a_narrow_misclassification_where_ce_raises_it():
    # the paper's example: predicted class 0 (p = 0.5), true class 1 (p = 0.4). A temperature calibrator
    # z / T: cross-entropy's gradient in T is positive (descent sharpens: more confidence on the wrong class),
    # the CA loss's is negative (descent softens it).
    z = torch.log(torch.tensor([[0.5, 0.4, 0.1]], dtype=torch.float64))
    y = torch.tensor([1])
    t = torch.ones((), dtype=torch.float64, requires_grad=True)
    (g_ce,) = torch.autograd.grad(F.cross_entropy(z / t, y), t)
    (g_ca,) = torch.autograd.grad(LF.correctness_aware(z / t, y), t)
    assert float(g_ce) > 0 > float(g_ca)
    # a correct row: CA asks for more confidence (lower T), as CE does
    (g_ok,) = torch.autograd.grad(LF.correctness_aware(z / t, torch.tensor([0])), t)
    assert float(g_ok) > 0


def test_correctness_aware_bad_input_and_module():
    z, y = batch(n=4, c=3)
    with pytest.raises(TypeError, match="balance"):
        la.create("correctness_aware", balance=1)
    with pytest.raises(ValueError, match="target"):
        LF.correctness_aware(z, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="logits"):
        LF.correctness_aware(torch.full((4, 3), float("nan")), y)
    assert torch.equal(la.create("ca_loss")(z, y), LF.correctness_aware(z, y))
    assert_finite_extremes(LF.correctness_aware)


# ---------------------------------------------------------------- C9 RankMixup (Noh et al. 2023)
def _mixes(n: int, m: int, c: int, seed: int, lams: tuple[float, ...] | None = None, same: bool = False):
    """Mix-major official-style inputs: raw logits [N, C], targets, mixed logits [M·N, C], soft labels [M·N, C], λ's."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, c, (n,), generator=g)
    eye = torch.eye(c, dtype=torch.float64)
    lams = lams or tuple(0.1 + 0.8 * float(v) for v in torch.rand(m, generator=g))
    mixed, soft = [], []
    for lam in lams:
        perm = torch.randperm(n, generator=g)
        other = y[perm] if same else (y + 1 + torch.randint(0, c - 1, (n,), generator=g)) % c
        mixed.append(lam * z + (1 - lam) * z[perm] + 0.3 * torch.randn(n, c, generator=g, dtype=torch.float64))
        soft.append(lam * eye[y] + (1 - lam) * eye[other])
    return z, y, torch.cat(mixed), torch.cat(soft), list(lams)


def _per_sample(t: torch.Tensor, m: int) -> torch.Tensor:
    """[M·N, C] mix-major -> [N, M, C], the layout lossatlas takes."""
    return t.view(m, -1, t.shape[-1]).transpose(0, 1)


def test_rankmixup_mrl_equals_the_official_loss_when_no_mix_is_masked():
    z, y, mz, mt, _ = _mixes(9, 1, 5, seed=31)
    for margin, alpha in ((2.0, 0.1), (0.5, 0.7)):
        # official RankMixup_MRL.forward with get_logit_diff, written out ([N, 1] hinge times the [N] mask)
        mask = ((mt == 1.0).sum(1).reshape(1, -1).sum(0) == 0.0)
        diff = mz.max(1)[0].unsqueeze(1) - z.max(1)[0].unsqueeze(1)
        official = F.cross_entropy(z, y) + alpha * (mask * F.relu(diff + margin)).mean()
        got = LF.rankmixup_mrl(z, y, mz, mt, margin=margin, alpha=alpha)
        torch.testing.assert_close(got, official, rtol=1e-12, atol=1e-12)
        # the paper's confidences instead of logits
        conf = torch.softmax(mz, 1).amax(1) - torch.softmax(z, 1).amax(1)
        ref = F.cross_entropy(z, y, reduction="none") + alpha * F.relu(conf + margin / 10)
        got = LF.rankmixup_mrl(z, y, mz, mt, margin=margin / 10, alpha=alpha, score="confidence", reduction="none")
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
        gradcheck_loss(lambda a, b: LF.rankmixup_mrl(a, y, b, mt, margin=margin, alpha=alpha), z, mz)


def test_rankmixup_mrl_masks_each_mix_of_one_class_itself():
    z, y, mz, mt, _ = _mixes(8, 1, 4, seed=32)
    mt[:3] = torch.eye(4, dtype=torch.float64)[y[:3]]  # rows 0-2: one-class mixes
    hinge = F.relu(mz.amax(1) - z.amax(1) + 2.0)
    keep = torch.ones(8, dtype=torch.float64)
    keep[:3] = 0
    got = LF.rankmixup_mrl(z, y, mz, mt, reduction="none")
    torch.testing.assert_close(got, F.cross_entropy(z, y, reduction="none") + 0.1 * keep * hinge, rtol=1e-12, atol=1e-12)
    # the official broadcast gives mean(mask) * mean(hinge) instead: the documented difference
    assert not torch.isclose(got.mean(), F.cross_entropy(z, y) + 0.1 * keep.mean() * hinge.mean())
    # M mixes per sample: the hinge terms are averaged over the mixes
    z, y, mz, mt, _ = _mixes(6, 3, 4, seed=33)
    hinge = F.relu(_per_sample(mz, 3).amax(2) - z.amax(1, keepdim=True) + 2.0).mean(1)
    torch.testing.assert_close(LF.rankmixup_mrl(z, y, _per_sample(mz, 3), _per_sample(mt, 3), reduction="none"),
                               F.cross_entropy(z, y, reduction="none") + 0.1 * hinge, rtol=1e-12, atol=1e-12)


def _mndcg_official(z, mz, mt, lams, c):
    """RankMixup_MNDCG.get_indcg written out (mix-major inputs, λ's distinct)."""
    mixup = torch.softmax(mz.reshape(len(lams), -1, c), 2)
    target_re = mt.reshape(len(lams), -1, c)
    max_values = torch.softmax(z, 1).max(1, keepdim=True)[0]
    max_mixup = mixup.max(2)[0].t()
    max_lam = target_re.max(2)[0].t()
    sort_index = torch.argsort(max_lam, descending=True)
    dcg_order = torch.log2(torch.arange(1, 2 + len(lams), dtype=torch.float64) + 1)
    dcg = (torch.cat((max_values, torch.gather(max_mixup, 1, sort_index)), 1) / dcg_order).sum(1)
    idcg = (torch.cat((torch.ones(z.shape[0], 1, dtype=torch.float64), torch.gather(max_lam, 1, sort_index)), 1)
            / dcg_order).sum(1)
    return torch.where(idcg > dcg, dcg / idcg, idcg / dcg)


def test_rankmixup_mndcg_equals_the_official_loss():
    c = 5
    z, y, mz, mt, lams = _mixes(7, 3, c, seed=34, lams=(0.3, 0.85, 0.6))
    for alpha in (0.1, 0.8):
        official = F.cross_entropy(z, y) + alpha * (1.0 - _mndcg_official(z, mz, mt, lams, c)).mean()
        got = LF.rankmixup_mndcg(z, y, _per_sample(mz, 3), _per_sample(mt, 3), alpha=alpha)
        torch.testing.assert_close(got, official, rtol=1e-12, atol=1e-12)
    gradcheck_loss(lambda a, b: LF.rankmixup_mndcg(a, y, b, _per_sample(mt, 3), alpha=0.5), z, _per_sample(mz, 3))


def test_rankmixup_mndcg_rewards_confidences_ordered_as_the_mixing_coefficients():
    # two mixes, coefficients 0.9 and 0.6; confidences given in that order or swapped
    lam = torch.tensor([[[0.9, 0.1], [0.6, 0.4]]], dtype=torch.float64)
    z, y = torch.tensor([[2.0, 0.0]], dtype=torch.float64), torch.tensor([0])

    def logits(p: float) -> list[float]:
        return [math.log(p), math.log(1 - p)]

    aligned = torch.tensor([[logits(0.9), logits(0.6)]], dtype=torch.float64)
    swapped = torch.tensor([[logits(0.6), logits(0.9)]], dtype=torch.float64)
    ce = F.cross_entropy(z, y)
    a = LF.rankmixup_mndcg(z, y, aligned, lam, alpha=1.0) - ce
    s = LF.rankmixup_mndcg(z, y, swapped, lam, alpha=1.0) - ce
    assert 0.0 <= float(a) < float(s) <= 1.0
    # α = 0 is cross-entropy
    torch.testing.assert_close(LF.rankmixup_mndcg(z, y, swapped, lam, alpha=0.0), ce)


def test_rankmixup_bad_input_and_modules():
    z, y, mz, mt, _ = _mixes(4, 1, 3, seed=35)
    with pytest.raises(ValueError, match="mixed_logits"):
        LF.rankmixup_mrl(z, y, mz[:, :2], mt)
    with pytest.raises(ValueError, match="mixed_logits"):
        LF.rankmixup_mndcg(z, y, mz[:3], mt[:3])
    with pytest.raises(ValueError, match="mixed_target"):
        LF.rankmixup_mrl(z, y, mz, mt[:, :2])
    bad = mt.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="mixed_target"):
        LF.rankmixup_mndcg(z, y, mz, bad)
    with pytest.raises(TypeError, match="mixed_target"):
        LF.rankmixup_mrl(z, y, mz, y)
    with pytest.raises(ValueError, match="margin"):
        la.create("rankmixup_mrl", margin=-1.0)
    with pytest.raises(ValueError, match="score"):
        la.create("mrl", score="prob")
    with pytest.raises(ValueError, match="alpha"):
        LF.rankmixup_mndcg(z, y, mz, mt, alpha=-0.1)
    assert torch.equal(la.create("mrl", margin=1.0)(z, y, mz, mt), LF.rankmixup_mrl(z, y, mz, mt, margin=1.0))
    assert torch.equal(la.create("mndcg")(z, y, mz, mt), LF.rankmixup_mndcg(z, y, mz, mt))


def test_anyloss_fused_path_rejects_out_of_range_class_indices():
    # the fused confusion matrices check the targets as the plain path does (validate=True)
    z = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 4])
    for path in ("fused", "plain"):
        with force_path(path), pytest.raises(ValueError, match=r"target values must be in \[0, 4\)"):
            LF.anyloss(z, y)
