"""G15: non-negative contrastive learning: SimCLR's loss on σ₊(z), the official rep_relu gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
from lossatlas.functional.non_negative import non_negative_features

G = torch.Generator().manual_seed(15)


def _views(n: int = 6, d: int = 5):
    a = torch.randn(n, d, generator=G, dtype=torch.float64)
    return a, a + 0.5 * torch.randn(n, d, generator=G, dtype=torch.float64)


def _simclr_reference(a, b, temperature):
    # solo-learn's simclr_loss_func written out: 2N views, positive = the other view of the sample,
    # negatives = every other view, mean over the 2N anchors
    z = F.normalize(torch.cat([a, b]), dim=1)
    idx = torch.arange(a.shape[0]).repeat(2)
    sim = torch.exp(z @ z.T / temperature)
    pos_mask = (idx[:, None] == idx[None, :]) & ~torch.eye(len(idx), dtype=torch.bool)
    neg_mask = idx[:, None] != idx[None, :]
    pos, neg = (sim * pos_mask).sum(1), (sim * neg_mask).sum(1)
    return -torch.log(pos / (pos + neg)).mean()


@pytest.mark.parametrize("temperature", [0.2, 0.5])
def test_ncl_is_simclr_on_relu_features(temperature):
    a, b = _views()
    got = la.functional.non_negative_contrastive(a, b, temperature=temperature)
    torch.testing.assert_close(got, _simclr_reference(F.relu(a), F.relu(b), temperature), rtol=1e-10, atol=1e-12)
    relu = la.functional.non_negative_contrastive(a, b, temperature=temperature, activation="relu")
    torch.testing.assert_close(relu, got)  # the two activations have the same value
    # non-negative inputs are left as they are: the loss is SimCLR's
    torch.testing.assert_close(la.functional.non_negative_contrastive(a.abs(), b.abs(), temperature=temperature),
                               _simclr_reference(a.abs(), b.abs(), temperature))


def test_rep_relu_has_relu_value_and_gelu_gradient():
    z = torch.randn(4, 6, generator=G, dtype=torch.float64, requires_grad=True)
    out = non_negative_features(z)
    torch.testing.assert_close(out, F.relu(z))
    (g,) = torch.autograd.grad(out.sum(), z)
    x = z.detach().requires_grad_(True)
    (g_gelu,) = torch.autograd.grad(F.gelu(x).sum(), x)
    torch.testing.assert_close(g, g_gelu)
    assert bool((g[z < 0] != 0).all())  # inactive dimensions still get a gradient (plain ReLU: 0)


def test_ncl_gradient_through_rep_relu_is_the_chain_rule_with_gelu():
    a, b = _views(n=4, d=3)
    a.requires_grad_(True)
    la.functional.non_negative_contrastive(a, b).backward()
    # the same loss as a function of the activated features, times GELU's derivative
    u = F.relu(a.detach()).requires_grad_(True)
    la.functional.non_negative_contrastive(u, b, activation="relu").backward()
    x = a.detach().requires_grad_(True)
    (dgelu,) = torch.autograd.grad(F.gelu(x).sum(), x)
    # with relu(u) = u for u >= 0, ∂L/∂u is the gradient wrt the activated features (at positive entries)
    mask = a.detach() > 0
    torch.testing.assert_close(a.grad[mask], (u.grad * dgelu)[mask])


def test_ncl_gradcheck_with_plain_relu():
    a, b = _views(n=4, d=3)
    assert torch.autograd.gradcheck(
        lambda x, y: la.functional.non_negative_contrastive(x, y, activation="relu", reduction="none"),
        [a.requires_grad_(True), b.requires_grad_(True)])


def test_all_negative_row_is_finite_and_bad_input():
    a, b = _views()
    a[0] = -a[0].abs()  # every feature negative: the zero vector after σ₊
    out = la.functional.non_negative_contrastive(a.requires_grad_(True), b)
    out.backward()
    assert torch.isfinite(out) and bool(torch.isfinite(a.grad).all())
    with pytest.raises(ValueError, match="activation"):
        la.create("non_negative_contrastive", activation="gelu")
    with pytest.raises(ValueError, match="b must have the shape"):
        la.functional.non_negative_contrastive(a, b[:, :3])
    with pytest.raises(TypeError, match="a must be a floating-point"):
        la.functional.non_negative_contrastive(a.long(), b)
    with pytest.raises(ValueError, match="temperature"):
        la.functional.non_negative_contrastive(a, b, temperature=0.0)


# ----------------------------------------------------------------------------- CACR

def _official_cacr(a, b, alpha, beta, tau_neg):
    # JegZheng/CACR-SSL our_loss1 + our_loss2 for two views, written out with loops (inputs already unit rows)
    n = a.shape[0]
    attract = sum(alpha * float((a[i] - b[i]).square().sum()) for i in range(n)) / n  # one positive: weight 1
    repel = 0.0
    for i in range(n):
        costs = [-beta * float((a[i] - b[j]).square().sum()) for j in range(n) if j != i]
        w = torch.softmax(torch.tensor(costs, dtype=torch.float64) * (tau_neg / beta), 0)
        repel += float((w * torch.tensor(costs, dtype=torch.float64)).sum())
    return attract + repel / n


@pytest.mark.parametrize(("alpha", "beta", "tau_neg"), [(1.0, 1.0, 1.0), (0.5, 2.0, 3.0)])
def test_cacr_matches_the_official_two_view_loss(alpha, beta, tau_neg):
    a, b = _views(n=5, d=4)
    got = la.functional.attraction_repulsion(a, b, alpha=alpha, beta=beta, tau_neg=tau_neg)
    ref = _official_cacr(F.normalize(a, dim=1), F.normalize(b, dim=1), alpha, beta, tau_neg)
    assert got.item() == pytest.approx(ref, rel=1e-12)


def test_cacr_limits_and_invariances():
    a, b = _views(n=5, d=4)
    ua, ub = F.normalize(a, dim=1), F.normalize(b, dim=1)
    # β = 0: attraction only, α times the squared distance of the positive pair
    got = la.functional.attraction_repulsion(a, b, beta=0.0, alpha=2.0, reduction="none")
    torch.testing.assert_close(got, 2.0 * (ua - ub).square().sum(1))
    # τ₋ = 0: uniform weights, minus β times the mean squared distance to the other rows
    d2 = torch.cdist(ua, ub).square()
    off = ~torch.eye(5, dtype=torch.bool)
    uniform = la.functional.attraction_repulsion(a, b, alpha=0.0, tau_neg=0.0, reduction="none")
    torch.testing.assert_close(uniform, -(d2 * off).sum(1) / 4)
    # larger τ₋ puts the weight on the closest negative: the repulsion tends to -β min_j d²
    sharp = la.functional.attraction_repulsion(a, b, alpha=0.0, tau_neg=1e4, reduction="none")
    torch.testing.assert_close(sharp, -d2.masked_fill(~off, float("inf")).min(1).values, rtol=1e-6, atol=1e-8)
    # a permutation of the batch permutes the per-sample losses
    p = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(la.functional.attraction_repulsion(a[p], b[p], reduction="none"),
                               la.functional.attraction_repulsion(a, b, reduction="none")[p])
    # normalize=False uses the rows as given
    torch.testing.assert_close(la.functional.attraction_repulsion(ua, ub, normalize=False),
                               la.functional.attraction_repulsion(a, b))


def test_cacr_gradcheck_through_the_weights_and_bad_input():
    a, b = _views(n=4, d=3)
    assert torch.autograd.gradcheck(lambda x, y: la.functional.attraction_repulsion(x, y, reduction="none"),
                                    [a.requires_grad_(True), b.requires_grad_(True)])
    one = la.functional.attraction_repulsion(a[:1], b[:1])  # one row: no negative, attraction only
    torch.testing.assert_close(one, (F.normalize(a[:1], dim=1) - F.normalize(b[:1], dim=1)).square().sum())
    with pytest.raises(ValueError, match="beta"):
        la.create("attraction_repulsion", beta=-1.0)
    with pytest.raises(TypeError, match="normalize"):
        la.create("attraction_repulsion", normalize=1)
    with pytest.raises(ValueError, match="b must have the shape"):
        la.functional.attraction_repulsion(a, b[:2])
