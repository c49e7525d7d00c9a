"""CDB-CE (class_difficulty) as hitachi-rd-cv/CDB-loss trains it (CIFAR-LT).

Reference: losses/cdb_loss.py builds nn.CrossEntropyLoss(weight=w, reduction='none') with
w = C·d^τ/Σd^τ, d = 1 − class accuracy; cifar_train.py rebuilds it after each validation and
reduces with torch.mean, i.e. Σ_i w_{y_i}·CE_i / N (not torch's weighted mean).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
from helpers import gradcheck_loss

C = 5


def _batch(n: int = 9, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(n, C, generator=g, dtype=torch.float64), torch.randint(0, C, (n,), generator=g)


ACC = [0.92, 0.35, 0.6, 0.15, 0.8]


def _weights_np(acc, tau):
    d = 1.0 - np.asarray(acc, dtype=np.float64)
    if tau == "dynamic":
        tau = 1.0 / (1.0 + np.exp(-(1.0 - d.min()) / (1.0 - d.max() + 0.01)))
    w = d ** tau
    return w / w.sum() * len(w)


def _cdb_ce_np(z, y, acc, tau):
    """Per-sample w_{y_i}·CE_i in float64 numpy."""
    z = z.detach().numpy()
    y = y.numpy()
    m = z.max(1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(1, keepdims=True)))[:, 0]
    ce = lse - z[np.arange(len(y)), y]
    return _weights_np(acc, tau)[y] * ce


@pytest.mark.parametrize("tau", [1.5, "dynamic"])
def test_loss_call_refreshes_weights_as_the_weight_call(tau):
    z, y = _batch()
    a = la.create("class_difficulty", tau=tau)
    b = la.create("class_difficulty", tau=tau)
    a(z, y, class_accuracy=ACC)
    w = b(ACC)  # the weight call keeps returning the vector [C]
    assert w.shape == (C,)
    assert torch.equal(a(), w) and torch.equal(a.weights, b.weights)
    # a later refresh through the loss call replaces them again
    acc2 = [0.5, 0.5, 0.9, 0.1, 0.3]
    a(z, y, class_accuracy=acc2)
    assert torch.equal(a(), b(acc2))


@pytest.mark.parametrize("tau", [1.5, "dynamic"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cdb_ce_closed_form(tau, reduction):
    z, y = _batch(seed=1)
    per = _cdb_ce_np(z, y, ACC, tau)
    want = {"mean": per.sum() / len(per), "sum": per.sum(), "none": per}[reduction]
    got = la.create("class_difficulty", tau=tau, reduction=reduction)(z, y, class_accuracy=ACC)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12, atol=1e-12)
    fn = la.weighting.cdb_cross_entropy(z, y, torch.as_tensor(_weights_np(ACC, tau)), reduction=reduction)
    np.testing.assert_allclose(fn.numpy(), want, rtol=1e-12, atol=1e-12)


def test_cdb_ce_mean_is_not_torch_weighted_mean():
    z, y = _batch(n=8, seed=2)
    y = torch.tensor([0, 0, 0, 0, 0, 3, 3, 1])  # mostly easy class 0 (small weight): Σ w_y far from N
    crit = la.create("class_difficulty", tau=1.0)
    got = crit(z, y, class_accuracy=ACC)
    w = crit()
    assert abs(float(w[y].sum()) - len(y)) > 1.0
    torch_weighted_mean = F.cross_entropy(z, y, weight=w)
    plain_mean = F.cross_entropy(z, y, weight=w, reduction="none").mean()
    torch.testing.assert_close(got, plain_mean, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(got, torch_weighted_mean, rtol=1e-3)
    # the weighting routes (weight= / apply) keep torch's weighted mean
    per = F.cross_entropy(z, y, reduction="none")
    torch.testing.assert_close(la.weighting.apply(per, crit, y), torch_weighted_mean)


def test_cdb_ce_keeps_weights_without_accuracy_and_is_ce_before_any():
    z, y = _batch(seed=3)
    crit = la.create("class_difficulty", tau=1.0)
    torch.testing.assert_close(crit(z, y), F.cross_entropy(z, y))  # reference's first epoch: d = 1, w = 1
    assert crit.weights is None
    crit(ACC)
    np.testing.assert_allclose(crit(z, y).numpy(), _cdb_ce_np(z, y, ACC, 1.0).mean(), rtol=1e-12)


def test_cdb_ce_gradcheck_and_detached_weights():
    z, y = _batch(n=4, seed=4)
    crit = la.create("class_difficulty", tau="dynamic")
    crit(ACC)
    gradcheck_loss(crit, z, y)
    zz = z.detach().float().requires_grad_()
    out = crit(zz, y)
    assert out.dtype == torch.float32
    out.backward()
    assert zz.grad is not None and torch.isfinite(zz.grad).all() and not crit.weights.requires_grad


def test_cdb_ce_errors():
    z, y = _batch()
    crit = la.create("class_difficulty", tau=1.0)
    with pytest.raises(ValueError, match="class_accuracy"):
        crit(z, y, class_accuracy=[0.5, 0.5])
    assert crit.weights is None  # a rejected refresh leaves the state alone
    with pytest.raises(TypeError, match="once"):
        crit(ACC, class_accuracy=ACC)
    with pytest.raises(ValueError, match="reduction"):
        la.create("class_difficulty", reduction="avg")
    with pytest.raises(ValueError, match="class_weights"):
        la.weighting.cdb_cross_entropy(z, y, torch.ones(C + 1, dtype=torch.float64))
    with pytest.raises(TypeError, match="class_weights"):
        la.weighting.cdb_cross_entropy(z, y, [1.0] * C)
