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
