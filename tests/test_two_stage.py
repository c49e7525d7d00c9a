"""Two-stage utilities (A10 cRT / τ-norm / LWS, A11 MaxNorm) and the SMOTE wrapper (A13)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from torch import nn

import lossatlas.two_stage as ts
from helpers import gradcheck_loss


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


def test_module_doctests():
    assert doctest.testmod(ts).failed == 0


def test_crt_freezes_backbone_and_reinitialises_classifier():
    model = _model()
    backbone_before = model[0].weight.detach().clone()
    fc_before = model[2].weight.detach().clone()
    params = ts.crt_parameters(model, model[2])
    assert {id(p) for p in params} == {id(model[2].weight), id(model[2].bias)}
    assert not torch.equal(model[2].weight, fc_before)  # re-initialised
    assert not model[0].weight.requires_grad
    opt = torch.optim.SGD(params, lr=0.5)
    loss = nn.functional.cross_entropy(model(torch.randn(16, 5)), torch.randint(0, 3, (16,)))
    loss.backward()
    opt.step()
    assert model[0].weight.grad is None and torch.equal(model[0].weight, backbone_before)
    with pytest.raises(ValueError, match="no parameters inside model"):
        ts.crt_parameters(model, nn.Linear(2, 2))


def test_crt_without_reinit_keeps_weights():
    model = _model()
    before = model[2].weight.detach().clone()
    ts.crt_parameters(model, model[2], reinit=False)
    assert torch.equal(model[2].weight, before)


def test_tau_normalize_identities_and_gradcheck():
    w = torch.randn(4, 6, dtype=torch.float64)
    assert torch.allclose(ts.tau_normalize(w, 0.0), w)
    assert torch.allclose(ts.tau_normalize(w, 1.0).norm(dim=1), torch.ones(4, dtype=torch.float64))
    t = 0.7
    assert torch.allclose(ts.tau_normalize(w, t), w / w.norm(dim=1, keepdim=True) ** t)
    gradcheck_loss(lambda x: ts.tau_normalize(x, 1.3).sum(), torch.randn(3, 4))
    with pytest.raises(ValueError, match="tau"):
        ts.tau_normalize(w, -1.0)
    with pytest.raises(ValueError, match=r"\[C, D\]"):
        ts.tau_normalize(torch.randn(3), 1.0)


def test_tau_normalized_classifier():
    fc = nn.Linear(6, 4)
    x = torch.randn(5, 6)
    clf0 = ts.TauNormalizedClassifier.from_linear(fc, tau=0.0)
    assert torch.allclose(clf0(x), x @ fc.weight.detach().t())  # τ = 0: the linear layer without bias
    clf0b = ts.TauNormalizedClassifier.from_linear(fc, tau=0.0, keep_bias=True)
    assert torch.allclose(clf0b(x), fc(x).detach())
    clf1 = ts.TauNormalizedClassifier.from_linear(fc, tau=1.0)
    wn = fc.weight.detach() / fc.weight.detach().norm(dim=1, keepdim=True)
    assert torch.allclose(clf1(x), x @ wn.t(), atol=1e-6)
    assert list(clf1.parameters()) == [] and "weight" in clf1.state_dict()
    # equal-norm rows: any τ preserves the argmax
    w = torch.nn.functional.normalize(torch.randn(4, 6), dim=1) * 3
    for tau in (0.0, 1.0, 2.0):
        c = ts.TauNormalizedClassifier(w, tau=tau)
        assert torch.equal(c(x).argmax(1), (x @ w.t()).argmax(1))
    with pytest.raises(ValueError, match="bias"):
        ts.TauNormalizedClassifier(w, bias=torch.zeros(3))


def test_tau_norm_rebalances_towards_small_norm_classes():
    w = torch.tensor([[4.0, 0.0], [0.0, 1.0]])  # head class with a large norm
    x = torch.tensor([[0.3, 1.0]])
    assert int(ts.TauNormalizedClassifier(w, tau=0.0)(x).argmax()) == 0
    assert int(ts.TauNormalizedClassifier(w, tau=1.0)(x).argmax()) == 1


def test_lws():
    fc = nn.Linear(6, 3)
    lws = ts.LWSClassifier(fc)
    x = torch.randn(4, 6)
    assert torch.allclose(lws(x), fc(x))
    with torch.no_grad():
        lws.scales.copy_(torch.tensor([1.0, 2.0, 0.5]))
    assert torch.allclose(lws(x), fc(x) * torch.tensor([1.0, 2.0, 0.5]))
    lws(x).sum().backward()
    assert fc.weight.grad is None and lws.scales.grad is not None
    with pytest.raises(TypeError, match="nn.Linear"):
        ts.LWSClassifier(nn.Conv1d(1, 1, 1))


def test_max_norm_projection():
    w = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    out = ts.max_norm_(w.clone(), 1.0)
    assert torch.allclose(out[0], torch.tensor([0.6, 0.8]))  # projected onto the ball
    assert torch.equal(out[1:], w[1:])  # inside rows and zero rows untouched
    assert torch.equal(ts.max_norm_(out.clone(), 1.0), out)  # idempotent
    per = ts.max_norm_(w.clone(), torch.tensor([10.0, 0.25, 1.0]))
    assert torch.allclose(per.norm(dim=1), torch.tensor([5.0, 0.25, 0.0]))
    with pytest.raises(ValueError, match="per-class"):
        ts.max_norm_(w.clone(), torch.ones(2))


def test_maxnorm_calibrates_like_the_reference():
    fc = nn.Linear(4, 5)
    with torch.no_grad():
        fc.weight.copy_(torch.diag_embed(torch.tensor([1.0, 2.0, 3.0, 4.0]))[:, :4].repeat(2, 1)[:5])
    bias = fc.bias.detach().clone()
    norms = ts.per_class_norms(fc)
    cap = ts.MaxNorm(thresh=0.1)
    cap(fc)
    expected = norms.min() + 0.1 * (norms.max() - norms.min())
    assert torch.allclose(cap.cap.float(), expected)
    assert torch.allclose(ts.per_class_norms(fc), torch.clamp(norms, max=float(expected)))
    assert torch.equal(fc.bias, bias)  # the bias is not constrained
    same = nn.Linear(4, 5)
    before = same.weight.detach().clone()
    ts.MaxNorm(thresh=1.0)(same)  # cap = max norm: nothing moves
    assert torch.allclose(same.weight, before)


def test_maxnorm_keeps_constraint_during_training():
    model = _model()
    params = ts.crt_parameters(model, model[2], reinit=False)
    cap = ts.MaxNorm(max_norm=0.2)
    opt = torch.optim.SGD(params, lr=1.0)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.randn(8, 5)), torch.randint(0, 3, (8,))).backward()
        opt.step()
        cap(model[2])
        assert (ts.per_class_norms(model[2]) <= 0.2 + 1e-6).all()


# ------------------------------------------------------------------------- SMOTE


def test_smote_balances_and_interpolates_within_class():
    pytest.importorskip("imblearn")
    from lossatlas.data import smote_resample

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (40, 3)), rng.normal(5, 0.5, (8, 3))])
    y = np.array([0] * 40 + [1] * 8)
    Xr, yr = smote_resample(X, y, seed=0)
    assert np.bincount(yr).tolist() == [40, 40]
    np.testing.assert_array_equal(Xr[:48], X)  # originals first
    synth = Xr[48:]
    lo, hi = X[y == 1].min(0), X[y == 1].max(0)
    assert ((synth >= lo - 1e-12) & (synth <= hi + 1e-12)).all()  # interpolations of minority points
    Xr2, _ = smote_resample(X, y, seed=0)
    np.testing.assert_array_equal(Xr, Xr2)


def test_smote_variants_and_torch_io():
    pytest.importorskip("imblearn")
    from lossatlas.data import smote_resample

    g = torch.Generator().manual_seed(0)
    X = torch.cat([torch.randn(30, 2, generator=g), torch.randn(10, 2, generator=g) + 1.5])
    y = torch.tensor([0] * 30 + [1] * 10)
    for method in ("borderline", "adasyn", "random"):
        Xr, yr = smote_resample(X, y, method=method, k_neighbors=3 if method != "random" else None)
        assert isinstance(Xr, torch.Tensor) and Xr.dtype == X.dtype and yr.dtype == torch.long
        assert int((yr == 1).sum()) >= 20
    with pytest.raises(ValueError, match="method"):
        smote_resample(X, y, method="mixup")
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        smote_resample(X[:, 0], y)
    with pytest.raises(ValueError, match="labels"):
        smote_resample(X, y.float())
