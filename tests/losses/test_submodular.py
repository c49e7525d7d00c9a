"""F11: SCoRe's facility-location loss: the official formula, closed forms, bounds, gradients, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
from helpers import gradcheck_loss

G = torch.Generator().manual_seed(11)


def _official_fl(features, labels, tau=0.07, tau_b=0.07, lamda=1.0):
    """amajee11us/SCoRe objectives/combinatorial/FL.py written out: features [bsz, V, D], cosine kernel of the
    view-major rows, other-class entries kept (others 0), a log-sum-exp down each column, mean over the anchors."""
    bsz, views, _ = features.shape
    x = F.normalize(torch.cat(torch.unbind(features, 1)), dim=1)
    y = labels.repeat(views)
    n = x.shape[0]
    cols = []
    for j in range(n):
        entries = [float(x[i] @ x[j]) if y[i] != y[j] else 0.0 for i in range(n)]
        cols.append(lamda * math.log(sum(math.exp(v) for v in entries)) * tau / tau_b)
    return sum(cols) / n


@pytest.mark.parametrize(("tau", "lamda"), [(0.07, 1.0), (0.5, 0.3)])
def test_score_facility_location_is_the_official_loss(tau, lamda):
    f = torch.randn(6, 2, 5, generator=G, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    got = la.functional.score_facility_location(f, labels, temperature=tau, lamda=lamda)
    torch.testing.assert_close(got, torch.tensor(_official_fl(f, labels, tau, 0.07, lamda), dtype=torch.float64),
                               rtol=1e-12, atol=1e-12)


def test_score_facility_location_closed_forms_and_bounds():
    e = torch.randn(7, 4, generator=G, dtype=torch.float64)
    # one class: every entry is 0, each anchor's loss is log N
    one = la.functional.score_facility_location(e, torch.zeros(7, dtype=torch.long), reduction="none")
    torch.testing.assert_close(one, torch.full((7,), math.log(7.0), dtype=torch.float64))
    # orthogonal classes: cosine 0 across them, the same log N
    ortho = torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(la.functional.score_facility_location(ortho, torch.arange(4), reduction="none"),
                               torch.full((4,), math.log(4.0), dtype=torch.float64))
    # the soft maximum lies between the column's maximum and the maximum plus log N
    y = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    none = la.functional.score_facility_location(e, y, reduction="none")
    u = F.normalize(e, dim=1)
    s = torch.where(y[:, None] != y[None, :], u @ u.T, torch.zeros(7, 7, dtype=torch.float64))
    assert bool((none >= s.max(0).values).all()) and bool((none <= s.max(0).values + math.log(7)).all())
    # scale τ/τ_b · λ, invariance to the embeddings' norms
    torch.testing.assert_close(la.functional.score_facility_location(e, y, temperature=0.14, lamda=0.5), none.mean())
    torch.testing.assert_close(la.functional.score_facility_location(3 * e, y, reduction="none"), none)
    # pulling two classes apart lowers the loss
    near = torch.tensor([[1.0, 0.0], [1.0, 0.1]], dtype=torch.float64)
    far = torch.tensor([[1.0, 0.0], [-1.0, 0.1]], dtype=torch.float64)
    assert la.functional.score_facility_location(far, torch.tensor([0, 1])) < la.functional.score_facility_location(
        near, torch.tensor([0, 1]))


def test_score_facility_location_gradcheck_module_and_bad_input():
    e = torch.randn(6, 3, generator=G, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 2, 0, 2])
    gradcheck_loss(lambda x: la.functional.score_facility_location(x, y, temperature=0.2), e)
    torch.testing.assert_close(la.create("score", lamda=2.0)(e, y), la.functional.score_facility_location(e, y, lamda=2.0))
    with pytest.raises(ValueError, match="labels"):
        la.functional.score_facility_location(e, y[:4])
    with pytest.raises(TypeError, match="embeddings"):
        la.functional.score_facility_location(e.long(), y)
    with pytest.raises(ValueError, match="lamda"):
        la.create("score_facility_location", lamda=0.0)
    with pytest.raises(ValueError, match="temperature"):
        la.functional.score_facility_location(e, y, temperature=-1.0)


def _official_logdet(features, labels, ridge=0.5):
    """amajee11us/SCoRe objectives/combinatorial/logdet.py (is_cf=True) written out: the dot-product kernel of the
    view-major rows (unit rows, as the official model outputs), one log-determinant per class, minus the whole set's."""
    views = features.shape[1]
    x = F.normalize(torch.cat(torch.unbind(features, 1)), dim=1)
    y = labels.repeat(views)
    s = x @ x.T
    total = 0.0
    for c in torch.unique(y):
        rows = (y == c).nonzero().squeeze(1)
        total += torch.logdet(s[rows][:, rows] + ridge * torch.eye(rows.numel(), dtype=s.dtype))
    return total - torch.logdet(s + ridge * torch.eye(s.shape[0], dtype=s.dtype))


@pytest.mark.parametrize("ridge", [0.5, 0.1, 2.0])
def test_score_logdet_is_the_official_total_correlation(ridge):
    f = torch.randn(5, 2, 4, generator=G, dtype=torch.float64)
    labels = torch.tensor([2, 0, 2, 1, 0])
    got = la.functional.score_logdet(f, labels, ridge=ridge)
    torch.testing.assert_close(got, _official_logdet(f, labels, ridge), rtol=1e-12, atol=1e-12)


def test_score_logdet_is_nonnegative_and_zero_for_one_or_orthogonal_classes():
    e = torch.randn(9, 5, generator=G, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    assert float(la.functional.score_logdet(e, y)) > 0  # Fischer's inequality, strict when classes correlate
    assert abs(float(la.functional.score_logdet(e, torch.zeros(9, dtype=torch.long)))) < 1e-12
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=G, dtype=torch.float64))
    blocks = torch.cat([q[:, :3] @ torch.randn(3, 4, generator=G, dtype=torch.float64), q[:, 3:] @
                        torch.randn(3, 4, generator=G, dtype=torch.float64)], 1).T  # class 0 in one subspace, 1 in another
    lab = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    assert abs(float(la.functional.score_logdet(blocks, lab))) < 1e-10
    none = la.functional.score_logdet(e, y, reduction="none")
    assert none.shape == (1,) and la.functional.score_logdet(e[:0], y[:0], reduction="none").shape == (0,)


def test_score_logdet_gradcheck_module_and_bad_input():
    e = torch.randn(6, 3, generator=G, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 2, 0, 2])
    gradcheck_loss(lambda x: la.functional.score_logdet(x, y, ridge=0.3), e)
    torch.testing.assert_close(la.create("score_logdet", ridge=0.3)(e, y), la.functional.score_logdet(e, y, ridge=0.3))
    with pytest.raises(ValueError, match="ridge"):
        la.create("score_logdet", ridge=0.0)
    with pytest.raises(ValueError, match="labels"):
        la.functional.score_logdet(e, y[:3])
