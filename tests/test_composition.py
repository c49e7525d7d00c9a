"""Everything composes through the public API: loss × weighting × sampler × two-stage."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lossatlas as la
from lossatlas.two_stage import TauNormalizedClassifier, crt_parameters

COUNTS = [240, 60, 20, 8]
C, D = len(COUNTS), 6


def _blobs(counts, seed):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(C, D, generator=torch.Generator().manual_seed(123)) * 2.0
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    x = centers[y] + torch.randn(len(y), D, generator=g) * 1.2
    return x, y


X_TRAIN, Y_TRAIN = _blobs(COUNTS, 0)
X_TEST, Y_TEST = _blobs([100] * C, 1)


def per_class_accuracy(model, x, y):
    with torch.no_grad():
        pred = model(x).argmax(1)
    return torch.stack([(pred[y == c] == c).double().mean() for c in range(C)])


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D, 16), nn.ReLU(), nn.Linear(16, C))


def test_ldam_drw_with_class_balanced_sampler_trains():
    model = _model()
    crit = la.create("ldam", class_counts=COUNTS, scale=5.0, reduction="none")
    drw = la.create("drw", class_counts=COUNTS, start_epoch=4)
    sampler = la.samplers.ClassBalancedSampler(Y_TRAIN, seed=0)
    loader = DataLoader(TensorDataset(X_TRAIN, Y_TRAIN), batch_size=32, sampler=sampler)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    seen = torch.zeros(C)
    first = None
    for epoch in range(6):
        sampler.set_epoch(epoch)
        drw.set_epoch(epoch)
        total = 0.0
        for xb, yb in loader:
            loss = la.weighting.apply(crit(model(xb), yb), drw, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
            seen += torch.bincount(yb, minlength=C)
        first = total if first is None else first
    assert seen.max() - seen.min() <= 6 * 1  # class-balanced batches: ±1 per class and epoch
    assert total < first
    acc = per_class_accuracy(model, X_TEST, Y_TEST)
    assert float(acc.mean()) > 0.7 and float(acc[-1]) > 0.4  # chance is 0.25


def _train_focal_absgd(lam):
    model = _model()
    crit = la.create("focal", gamma=1.0, reduction="none")
    absgd = la.create("absgd", lam=lam, gamma=0.1, start_epoch=2)
    loader = DataLoader(TensorDataset(X_TRAIN, Y_TRAIN), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(5):
        absgd.set_epoch(epoch)
        if epoch == 2:  # the paper's two-stage recipe: ABSGD from the first learning-rate decay on
            for group in opt.param_groups:
                group["lr"] *= 0.1
        for xb, yb in loader:
            loss = la.weighting.apply(crit(model(xb), yb), absgd, reduction="sum")
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert torch.isfinite(loss)
        if epoch < 2:
            assert float(absgd.u) == 0.0  # first stage: plain SGD, the state is untouched
    return per_class_accuracy(model, X_TEST, Y_TEST), absgd


def test_focal_with_absgd_trains_and_updates_state():
    acc, absgd = _train_focal_absgd(1.0)
    assert float(absgd.u) > 0
    plain, plain_absgd = _train_focal_absgd(200.0)  # λ ≥ 200: plain averaging throughout
    assert float(plain_absgd.u) == 0.0
    # measured: balanced accuracy 0.84 vs 0.72, tail class 0.61 vs 0.07 (one seed)
    assert float(acc.mean()) > 0.75 and float(acc.mean()) > float(plain.mean())
    assert float(acc[-1]) > float(plain[-1])


def test_cdb_weights_and_sampler_loss_based_and_two_stage():
    model = _model()
    ce = la.create("cross_entropy", reduction="none")
    cdb = la.create("class_difficulty", tau="dynamic", num_classes=C)
    rw = la.create("loss_based", strategy="linupper", burnout_steps=5)
    sampler = la.samplers.ClassDifficultySampler(Y_TRAIN, tau=1.0, seed=0)
    loader = DataLoader(TensorDataset(X_TRAIN, Y_TRAIN), batch_size=32, sampler=sampler)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(4):
        sampler.set_epoch(epoch)
        for xb, yb in loader:
            per = ce(model(xb), yb)
            # class weights (CDB-W) and loss-based sample weights multiply: two weightings, one loss
            w = cdb.sample_weights(per, yb).float() * rw.sample_weights(per.detach())
            loss = (w * per).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        acc = per_class_accuracy(model, X_TEST, Y_TEST)  # stands in for a validation split
        cdb(acc)
        sampler.update(acc)
    assert torch.isfinite(cdb()).all() and abs(float(cdb().sum()) - C) < 1e-9
    assert int(rw.step) > 5
    # stage 2: cRT on frozen features with a class-balanced sampler, then τ-normalisation
    params = crt_parameters(model, model[2])
    opt2 = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    cb = la.samplers.ClassBalancedSampler(Y_TRAIN, seed=1)
    frozen = model[0].weight.detach().clone()
    for xb, yb in DataLoader(TensorDataset(X_TRAIN, Y_TRAIN), batch_size=32, sampler=cb):
        loss = la.create("cross_entropy")(model(xb), yb)
        opt2.zero_grad()
        loss.backward()
        opt2.step()
    assert torch.equal(model[0].weight, frozen)
    model[2] = TauNormalizedClassifier.from_linear(model[2], tau=1.0)
    acc = per_class_accuracy(model, X_TEST, Y_TEST)
    assert float(acc.mean()) > 0.6
    assert np.isfinite(acc.numpy()).all()
