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


# --- the registered stage-2 methods (A10, A11) on a long-tailed problem ---------------------------

def _long_tailed(seed: int = 0, n_test: int = 200):
    """Four Gaussian classes in 2-D (overlapping), 400 / 100 / 25 / 8 training samples; a balanced test set."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [1.5, 0.0], [0.0, 1.5], [1.5, 1.5]])

    def draw(counts):
        y = torch.cat([torch.full((c,), j) for j, c in enumerate(counts)])
        return centres[y] + 0.7 * torch.randn(len(y), 2, generator=g), y

    return draw([400, 100, 25, 8]), draw([n_test] * 4)


def _stage_one(x, y):
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("body", nn.Sequential(nn.Linear(2, 16), nn.ReLU()))
    model.add_module("fc", nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        for b in torch.randperm(len(y), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
    return model


def _balanced_accuracy(model, x, y):
    with torch.no_grad():
        pred = model(x).argmax(1)
    return float(torch.stack([(pred[y == j] == j).float().mean() for j in range(4)]).mean())


@pytest.mark.parametrize("id_", ["crt", "tau_norm", "lws", "weight_balancing"])
def test_stage_two_raises_balanced_accuracy_on_a_long_tailed_problem(id_):
    import lossatlas as la

    (x, y), (xt, yt) = _long_tailed()
    model = _stage_one(x, y)
    before = _balanced_accuracy(model, xt, yt)
    body = [p.detach().clone() for p in model.body.parameters()]
    method = la.create(id_)
    if id_ == "weight_balancing":  # its class-balanced loss: CB focal (the official demo's), by composition
        counts = la.data.class_counts(y, 4)
        w = la.create("effective_number", class_counts=counts, beta=0.9999)()
        crit = la.create("focal", gamma=2.0, weight=w)
    else:
        crit = la.create("cross_entropy")
    ts.fit_stage_two(method, model, x, y, crit, batch_size=64, seed=0)
    after = _balanced_accuracy(model, xt, yt)
    assert after > before + 0.02, (before, after)
    assert all(torch.equal(a, b) for a, b in zip(body, model.body.parameters()))  # the representation is kept
    if id_ == "weight_balancing":  # the cap held after every step
        assert bool((ts.per_class_norms(model.fc) <= method.max_norm.cap.float() + 1e-5).all())


def test_crt_and_lws_draw_class_balanced_batches():
    import lossatlas as la

    (x, y), _ = _long_tailed()
    model = _stage_one(x, y)
    seen = []
    crit = la.create("cross_entropy")

    def loss(z, t):
        seen.append(t)
        return crit(z, t)

    ts.fit_stage_two(la.create("lws", epochs=1), model, x, y, loss, batch_size=64)
    counts = la.data.class_counts(torch.cat(seen), 4)
    assert counts.min() >= counts.max() - 1  # every class equally often (±1), not 400 : 8
    with pytest.raises(TypeError, match="method"):
        ts.fit_stage_two("crt", model, x, y, loss)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="y must be"):
        ts.fit_stage_two(la.create("crt"), model, x, y.int(), loss)
