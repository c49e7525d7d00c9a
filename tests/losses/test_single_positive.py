"""D4: single-positive multi-label losses: the official formulas, identities, gradients, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lossatlas as la

G = torch.Generator().manual_seed(4)


def _batch(n: int = 6, c: int = 5):
    z = torch.randn(n, c, generator=G, dtype=torch.float64) * 2
    y = torch.zeros(n, c, dtype=torch.float64)
    y[torch.arange(n), torch.randint(0, c, (n,), generator=G)] = 1.0  # one observed positive per row
    return z, y


def _neg_log(p):  # the official helper: -log(p + 1e-5)
    return -torch.log(p + 1e-5)


def _official_an(z, y, gamma=1.0, ls=0.0):
    # loss_an / loss_wan / loss_an_ls of elijahcole/single-positive-multi-label, on probabilities
    p = torch.sigmoid(z)
    pos = (1 - ls) * _neg_log(p) + ls * _neg_log(1 - p)
    neg = gamma * ((1 - ls) * _neg_log(1 - p) + ls * _neg_log(p))
    return torch.where(y == 1, pos, neg)


def _official_em(z, y, alpha):
    p = torch.sigmoid(z)
    return torch.where(y == 1, _neg_log(p), -alpha * (p * _neg_log(p) + (1 - p) * _neg_log(1 - p)))


@pytest.mark.parametrize(("weighted", "ls"), [(False, 0.0), (True, 0.0), (False, 0.1)])
def test_assume_negative_matches_the_official_formulas(weighted, ls):
    z, y = _batch()
    got = la.functional.assume_negative(z, y, weighted=weighted, label_smoothing=ls, reduction="none")
    ref = _official_an(z, y, 1 / (z.shape[1] - 1) if weighted else 1.0, ls)
    # the official code adds 1e-5 inside its logs: agreement to that order where σ is not tiny
    torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-4)
    mean = la.functional.assume_negative(z, y, weighted=weighted, label_smoothing=ls)
    torch.testing.assert_close(mean, got.sum() / z.numel())  # the official sum(loss / (N·C))


def test_assume_negative_is_bce_against_the_observed_matrix():
    z, y = _batch()
    torch.testing.assert_close(la.functional.assume_negative(z, y), F.binary_cross_entropy_with_logits(z, y))
    # WAN: the negatives of each row weigh as much as its one positive
    wan = la.functional.assume_negative(z, y, weighted=True, reduction="none")
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    torch.testing.assert_close(wan, torch.where(y == 1, bce, bce / (z.shape[1] - 1)))
    # label smoothing ε: BCE against the smoothed targets y(1 - ε) + (1 - y) ε
    ls = la.functional.assume_negative(z, y, label_smoothing=0.2)
    torch.testing.assert_close(ls, F.binary_cross_entropy_with_logits(z, y * 0.6 + 0.2))


@pytest.mark.parametrize("alpha", [0.2, 0.01, 1.0])
def test_entropy_maximization_matches_the_official_formula(alpha):
    z, y = _batch()
    got = la.functional.entropy_maximization(z, y, alpha=alpha, reduction="none")
    torch.testing.assert_close(got, _official_em(z, y, alpha), rtol=1e-3, atol=1e-4)


def test_entropy_maximization_identities():
    z, y = _batch()
    # alpha = 0: only the observed positives count, as BCE on them
    em0 = la.functional.entropy_maximization(z, y, alpha=0.0, reduction="none")
    torch.testing.assert_close(em0, y * F.binary_cross_entropy_with_logits(z, y, reduction="none"))
    # the unobserved term is smallest (-α log 2) at σ = 1/2 and its gradient there is 0
    zero = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    out = la.functional.entropy_maximization(zero, target, alpha=0.5, reduction="none")
    torch.testing.assert_close(out[0, 1:], torch.full((2,), -0.5 * math.log(2), dtype=torch.float64))
    out[0, 1:].sum().backward()
    assert torch.equal(zero.grad[0, 1:], torch.zeros(2, dtype=torch.float64))
    # gradient on an unobserved logit: α σ(1 - σ) z (pushes it back towards 0 from either side)
    z.requires_grad_(True)
    la.functional.entropy_maximization(z, y, alpha=0.3, reduction="sum").backward()
    s = torch.sigmoid(z.detach())
    torch.testing.assert_close(z.grad[y == 0], (0.3 * s * (1 - s) * z.detach())[y == 0])
    # finite far out (H -> 0, no 0 · log 0)
    far = torch.tensor([[1e4, -1e4]], requires_grad=True)
    out = la.functional.entropy_maximization(far, torch.tensor([[0.0, 0.0]]))
    out.backward()
    assert math.isfinite(out.item()) and bool(torch.isfinite(far.grad).all())


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(("weighted", "ls"), [(False, 0.0), (True, 0.0), (False, 0.15), (True, 0.15)])
def test_assume_negative_one_bce_equals_the_definition(weighted, ls, reduction):
    # the loss runs as one BCE with logits (weight γ + (1 − γ) y, target A / w); here the definition
    # term by term from log-sigmoids, differentiated by autograd, soft target entries included
    z, y = _batch(n=7, c=6)
    y[0, 2], y[3, 0] = 0.3, 0.8
    gamma = 1 / (z.shape[1] - 1) if weighted else 1.0

    def ref(x):
        sp, sn = -F.logsigmoid(x), -F.logsigmoid(-x)
        losses = y * ((1 - ls) * sp + ls * sn) + gamma * (1 - y) * ((1 - ls) * sn + ls * sp)
        return losses if reduction == "none" else losses.sum() if reduction == "sum" else losses.mean()

    def ours(x):
        return la.functional.assume_negative(x, y, weighted=weighted, label_smoothing=ls, reduction=reduction)

    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    v, rv = ours(z1), ref(z2)
    torch.testing.assert_close(v, rv, rtol=1e-12, atol=1e-14)
    (g,), (rg,) = torch.autograd.grad(v.sum(), z1), torch.autograd.grad(rv.sum(), z2)
    torch.testing.assert_close(g, rg, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("path", ["plain", "fused"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_entropy_maximization_both_paths_equal_the_definition(path, reduction):
    # fused: value and derivative from one pass (no graph); plain: composed ops. Both against the
    # definition from sigmoids and logs, soft entries and logits far out (|z| = 40) included
    from lossatlas._paths import force_path

    z, y = _batch(n=7, c=6)
    y[0, 2], y[3, 0] = 0.3, 0.8
    z[1, 1], z[2, 4] = 40.0, -40.0
    alpha = 0.3

    def ref(x):
        p, q = torch.sigmoid(x), torch.sigmoid(-x)
        h = -(p * torch.log(p) + q * torch.log(q))
        losses = -y * torch.log(p) - alpha * (1 - y) * h
        return losses if reduction == "none" else losses.mean()

    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    with force_path(path):
        v = la.functional.entropy_maximization(z1, y, alpha=alpha, reduction=reduction)
    rv = ref(z2)
    torch.testing.assert_close(v, rv, rtol=1e-12, atol=1e-14)
    (g,), (rg,) = torch.autograd.grad(v.sum(), z1), torch.autograd.grad(rv.sum(), z2)
    torch.testing.assert_close(g, rg, rtol=1e-10, atol=1e-14)
    if path == "fused":
        assert type(v.grad_fn if reduction == "none" else v.grad_fn.next_functions[0][0]).__name__ == "_PointwiseBackward"


@pytest.mark.parametrize("num_classes", [10, 100, 1000])
def test_entropy_maximization_one_pass_terms_equal_the_definition_far_out(num_classes):
    """The one-pass terms (sigmoid of −|z| and log1p) against the definition in float64 at the
    suite's sizes: logits at ±100 and ±700 (where σ underflows to 1e-304), soft targets, an
    ignore_index mask, every reduction; the fused path must be the one taken."""
    from lossatlas._paths import force_path

    g = torch.Generator().manual_seed(num_classes)
    z = torch.randn(9, num_classes, generator=g, dtype=torch.float64) * 5
    z[0, :4] = torch.tensor([100.0, -100.0, 700.0, -700.0], dtype=torch.float64)
    y = (torch.rand(9, num_classes, generator=g) < 0.2).double()
    y[0, :4] = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    y[1, :2] = torch.tensor([0.25, 0.7], dtype=torch.float64)
    y[2, 3] = -1.0  # ignored
    alpha = 0.2
    keep = (y != -1.0).double()
    yy = y * keep

    def ref(x, reduction):
        ls_p, ls_n = F.logsigmoid(x), F.logsigmoid(-x)
        h = -(torch.sigmoid(x) * ls_p + torch.sigmoid(-x) * ls_n)
        losses = (-yy * ls_p - alpha * (1 - yy) * h) * keep
        return losses if reduction == "none" else losses.sum() if reduction == "sum" else losses.sum() / keep.sum()

    for reduction in ("none", "sum", "mean"):
        z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
        with force_path("fused"):
            v = la.functional.entropy_maximization(z1, y, alpha=alpha, ignore_index=-1.0, reduction=reduction,
                                                   validate=False)
        rv = ref(z2, reduction)
        torch.testing.assert_close(v, rv, rtol=1e-12, atol=1e-300)
        cot = torch.rand(v.shape, generator=g, dtype=torch.float64)
        (gv,), (rg,) = torch.autograd.grad((v * cot).sum(), z1), torch.autograd.grad((rv * cot).sum(), z2)
        torch.testing.assert_close(gv, rg, rtol=1e-10, atol=1e-300)
    with force_path("fused"):
        v = la.functional.entropy_maximization(z[3:].clone().requires_grad_(), y[3:], reduction="none")
    assert type(v.grad_fn).__name__ == "_PointwiseBackward"


@pytest.mark.parametrize("fn", [la.functional.assume_negative, la.functional.entropy_maximization])
def test_gradcheck(fn):
    z, y = _batch(n=3, c=4)
    y[0, 3] = 0.4  # a soft entry: both terms act on it
    assert torch.autograd.gradcheck(lambda x: fn(x, y, reduction="none"), [z.requires_grad_(True)])


def test_ignore_index_leaves_entries_out():
    z, y = _batch()
    y_ign = y.clone()
    y_ign[0, :] = torch.where(y[0] == 1, y[0], torch.full_like(y[0], -100.0))
    for fn in (la.functional.assume_negative, la.functional.entropy_maximization):
        full = fn(z, y, reduction="none")
        out = fn(z, y_ign, ignore_index=-100, reduction="none")
        kept = y_ign != -100
        torch.testing.assert_close(out[kept], full[kept])
        assert bool((out[~kept] == 0).all())


def test_bad_input_names_the_argument():
    z, y = _batch()
    with pytest.raises(ValueError, match="target"):
        la.functional.assume_negative(z, y[:, :3])
    with pytest.raises(ValueError, match="target"):
        la.functional.entropy_maximization(z, y * 2)
    with pytest.raises(ValueError, match="label_smoothing"):
        la.functional.assume_negative(z, y, label_smoothing=1.5)
    with pytest.raises(TypeError, match="weighted"):
        la.create("assume_negative", weighted=1)
    with pytest.raises(ValueError, match="alpha"):
        la.functional.entropy_maximization(z, y, alpha=-0.1)
    with pytest.raises(ValueError, match="weighted"):
        la.functional.assume_negative(z[:, :1], y[:, :1], weighted=True)


# --- ROLE (Cole et al. 2021) --------------------------------------------------------------------------

def _official_role(z, theta, y, k, eps=1e-5):
    # loss_role + compute_batch_loss of elijahcole/single-positive-multi-label written out: f = σ(z), g = σ(θ)
    def nl(p):
        return -torch.log(p + eps)

    f, g = torch.sigmoid(z), torch.sigmoid(theta)
    n, c = z.shape
    pos_1 = torch.where(y == 1, nl(f), torch.zeros_like(f))
    cross_1 = g.detach() * nl(f) + (1 - g.detach()) * nl(1 - f)
    reg_1 = (f.sum(1).mean(0) - k) ** 2 / c**2
    pos_2 = torch.where(y == 1, nl(g), torch.zeros_like(g))
    cross_2 = f.detach() * nl(g) + (1 - f.detach()) * nl(1 - g)
    reg_2 = (g.sum(1).mean(0) - k) ** 2 / c**2
    mtx = 0.5 * (pos_1 + pos_2) + 0.5 * (cross_1 + cross_2)
    return (mtx / (n * c)).sum() + 0.5 * (reg_1 + reg_2)


@pytest.mark.parametrize("k", [1.5, 0.7, 3.0])
def test_role_matches_the_official_loss_value_and_gradients(k):
    z, y = _batch(n=6, c=5)
    table = torch.randn(10, 5, generator=G, dtype=torch.float64) * 1.5
    index = torch.tensor([3, 0, 9, 4, 7, 1])
    z.requires_grad_(True)
    table.requires_grad_(True)
    got = la.functional.role(z, y, index=index, label_logits=table, expected_num_pos=k)
    want = _official_role(z, table[index], y, k, eps=0.0)  # exact logs: the same formula
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(got, [z, table]), torch.autograd.grad(want, [z, table])):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # the official -log(x + 1e-5) differs by about 1e-5 at these probabilities
    torch.testing.assert_close(got, _official_role(z, table[index], y, k), rtol=1e-4, atol=0.0)


def test_role_gradients_pull_each_model_towards_the_other():
    # d/dz (per entry, before /(N·C)) = ½(f − g) + ½ y (f − 1) + the regulariser's (Σ_c f̄_c − k) f(1 − f) N / C²
    z, y = _batch(n=4, c=3)
    u = torch.randn(4, 3, generator=G, dtype=torch.float64)
    z.requires_grad_(True)
    u.requires_grad_(True)
    k = 2.0
    loss = la.functional.role(z, y, label_logits=u, expected_num_pos=k)
    gz, gu = torch.autograd.grad(loss, [z, u])
    f, g = torch.sigmoid(z.detach()), torch.sigmoid(u.detach())
    n, c = 4, 3
    want_z = (0.5 * (f - g) + 0.5 * y * (f - 1)) / (n * c) + (f.sum(1).mean() - k) * f * (1 - f) / (n * c**2)
    want_u = (0.5 * (g - f) + 0.5 * y * (g - 1)) / (n * c) + (g.sum(1).mean() - k) * g * (1 - g) / (n * c**2)
    torch.testing.assert_close(gz, want_z, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(gu, want_u, rtol=1e-10, atol=1e-14)


def test_role_reductions_and_the_regulariser():
    z, y = _batch(n=5, c=4)
    u = torch.randn(5, 4, generator=G, dtype=torch.float64)
    none = la.functional.role(z, y, label_logits=u, reduction="none")
    assert none.shape == (5, 4)
    torch.testing.assert_close(none.mean(), la.functional.role(z, y, label_logits=u))
    torch.testing.assert_close(none.sum(), la.functional.role(z, y, label_logits=u, reduction="sum"))
    # logits and estimates whose batch mean count of positives is exactly k: no regulariser
    zero = torch.zeros(2, 4, dtype=torch.float64)  # σ = ½: Σ_c = 2
    ones = torch.zeros(2, 4, dtype=torch.float64)
    at_k = la.functional.role(zero, ones, label_logits=zero, expected_num_pos=2.0, reduction="none")
    torch.testing.assert_close(at_k, torch.full_like(at_k, math.log(2.0)))  # ½(2 BCE(½; ½)) = log 2
    off_k = la.functional.role(zero, ones, label_logits=zero, expected_num_pos=1.0, reduction="none")
    torch.testing.assert_close(off_k - at_k, torch.full_like(at_k, (1.0 + 1.0) / (2 * 16)))
    # without label estimates every estimate is ½
    torch.testing.assert_close(la.functional.role(z, y), la.functional.role(z, y, label_logits=torch.zeros_like(z)))
    empty = la.functional.role(z[:0], y[:0], label_logits=u[:0])
    assert float(empty) == 0.0


def test_role_module_keeps_the_official_initial_estimates_and_trains_them():
    crit = la.create("role", num_samples=50, num_classes=4, seed=3)
    est = crit.estimates()
    assert est.shape == (50, 4) and bool(((est > 0.4) & (est < 0.6)).all()) and est.std() > 0.03
    observed = torch.zeros(50, 4)
    observed[torch.arange(50), torch.arange(50) % 4] = 1.0
    crit.observe(observed)
    torch.testing.assert_close(crit.estimates()[observed == 1], torch.full((50,), 0.995))
    assert bool(((crit.estimates()[observed == 0] - 0.5).abs() < 0.1).all())
    torch.testing.assert_close(la.create("role", num_samples=50, num_classes=4, seed=3).estimates(), est)
    # the table is a parameter: the gradient reaches the batch's rows only, and the function equals the module
    logits = torch.randn(5, 4, generator=G)
    index = torch.tensor([2, 11, 30, 31, 49])
    loss = crit(logits, observed[index], index=index)
    (grad,) = torch.autograd.grad(loss, [crit.label_logits])
    assert bool((grad[index] != 0).all()) and int((grad.abs().sum(1) > 0).sum()) == 5
    torch.testing.assert_close(loss, la.functional.role(logits, observed[index], index=index,
                                                        **crit.functional_kwargs()))
    assert "label_logits" in crit.state_dict()
    # a few Adam steps on the table alone bring the unobserved estimates towards fixed predictions of 0.9 / 0.1
    f = torch.tensor([[4.0, -4.0, -4.0, -4.0]]).repeat(5, 1)
    opt = torch.optim.Adam(crit.parameters(), lr=0.1)
    before = (crit.estimates()[index] - torch.sigmoid(f)).abs().mean()
    for _ in range(50):
        opt.zero_grad()
        crit(f, observed[index], index=index).backward()
        opt.step()
    assert (crit.estimates()[index] - torch.sigmoid(f)).abs().mean() < 0.5 * before


def test_role_gradient_is_the_frozen_target_objectives_and_bad_input():
    z, y = _batch(n=4, c=3)
    table = torch.randn(6, 3, generator=G, dtype=torch.float64)
    index = torch.tensor([5, 0, 2, 2])  # a repeated row: its gradients add up
    # ROLE's gradient is by definition not its value's derivative (each model's target is the other's output with
    # its gradient stopped); it is the derivative of the objective with those targets frozen at the current point:
    # central differences of that objective, in float64, against autograd's gradient of the loss
    k = 0.8
    zr, tr = z.clone().requires_grad_(), table.clone().requires_grad_()
    gz, gt = torch.autograd.grad(la.functional.role(zr, y, index=index, label_logits=tr, expected_num_pos=k), [zr, tr])
    f0, g0 = torch.sigmoid(z), torch.sigmoid(table[index])

    def frozen(z_, t_):
        u_ = t_[index]
        bce = -F.logsigmoid(z_), -F.logsigmoid(-z_), -F.logsigmoid(u_), -F.logsigmoid(-u_)
        mtx = 0.5 * (y * (bce[0] + bce[2]) + g0 * bce[0] + (1 - g0) * bce[1] + f0 * bce[2] + (1 - f0) * bce[3])
        reg = ((torch.sigmoid(z_).sum(1).mean() - k) ** 2 + (torch.sigmoid(u_).sum(1).mean() - k) ** 2) / (2 * 9)
        return mtx.mean() + reg

    for x, g_auto, which in ((z, gz, 0), (table, gt, 1)):
        numeric = torch.zeros_like(x)
        for i in range(x.numel()):
            d = torch.zeros_like(x).view(-1)
            d[i] = 1e-6
            d = d.view_as(x)
            plus = frozen(z + d, table) if which == 0 else frozen(z, table + d)
            minus = frozen(z - d, table) if which == 0 else frozen(z, table - d)
            numeric.view(-1)[i] = (plus - minus) / 2e-6
        torch.testing.assert_close(g_auto, numeric, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="label_logits"):
        la.functional.role(z, y, index=index, label_logits=table[:, :2])
    with pytest.raises(ValueError, match="label_logits"):
        la.functional.role(z, y, label_logits=table)  # no index: must be the batch's rows
    with pytest.raises(TypeError, match="label_logits"):
        la.functional.role(z, y, index=index, label_logits=table.long())
    with pytest.raises(TypeError, match="index"):
        la.functional.role(z, y, index=index.double(), label_logits=table)
    with pytest.raises(ValueError, match="index"):
        la.functional.role(z, y, index=index + 3, label_logits=table)
    with pytest.raises(ValueError, match="index"):
        la.functional.role(z, y, index=index[:2], label_logits=table)
    with pytest.raises(ValueError, match="label_logits"):
        la.functional.role(z, y, index=index)
    with pytest.raises(ValueError, match="expected_num_pos"):
        la.functional.role(z, y, expected_num_pos=0.0)
    with pytest.raises(ValueError, match="target"):
        la.functional.role(z, y * 2)
    crit = la.create("role", num_samples=6, num_classes=3)
    with pytest.raises(ValueError, match="index"):
        crit(z, y)
    with pytest.raises(ValueError, match="observed_labels"):
        crit.observe(torch.ones(5, 3))
    with pytest.raises(ValueError, match="num_samples"):
        la.create("role", num_samples=0, num_classes=3)
    with pytest.raises(ValueError, match="expected_num_pos"):
        la.create("role", num_samples=6, num_classes=3, expected_num_pos=-1.0)
    with pytest.raises(TypeError, match="seed"):
        la.create("role", num_samples=6, num_classes=3, seed=1.5)
