"""lossatlas.optim: PESG and PDSCA (issue 19, H2).

The expected updates are hand-written here in float64 from LibAUC 2.0.1's
libauc/optimizers/pesg.py and pdsca.py (the papers' Algorithm 1 with LibAUC's momentum and
dual-step conventions), with the papers' v_ref = v_0; the resume tests check that a run
restored from state_dicts (model, loss, optimiser) is bit-identical to the uninterrupted one.
"""

from __future__ import annotations

import io
import math

import pytest
import torch

import lossatlas as la
from lossatlas.optim import PDSCA, PESG

F64 = torch.float64


def _data(n: int = 24, d: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.3).long()
    y[0], y[1] = 1, 0
    x = torch.randn(n, d, generator=g, dtype=F64) + y[:, None].double()
    return x, y


def _model(seed: int = 0, d: int = 4) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(d, 1).double()


def _scores(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(model(x)).squeeze(1)


def _batches(steps: int, n: int = 8, seed: int = 0):
    x, y = _data(n=3 * n, seed=seed)
    return [(x[(i % 3) * n:(i % 3 + 1) * n], y[(i % 3) * n:(i % 3 + 1) * n]) for i in range(steps)]


# ----------------------------------------------------------------------------- hand-written references
class _RefPESG:
    """LibAUC PESG (sgd and adam modes) on a list of float64 tensors; alpha updated apart."""

    def __init__(self, params, lr, momentum, wd, ed, clip, mode="sgd", betas=(0.9, 0.999), eps=1e-8):
        self.p = [p.detach().clone() for p in params]
        self.ref = [p.clone() for p in self.p]  # v_ref = v_0 (the paper; LibAUC: N(0, 0.01²))
        self.acc = [torch.zeros_like(p) for p in self.p]
        self.buf = [None] * len(self.p)
        self.m1 = [torch.zeros_like(p) for p in self.p]
        self.m2 = [torch.zeros_like(p) for p in self.p]
        self.t = 0
        self.T = 0
        self.lr, self.momentum, self.wd, self.ed, self.clip, self.mode = lr, momentum, wd, ed, clip, mode
        self.betas, self.eps = betas, eps

    def step(self, grads):
        self.t += 1
        for i, g in enumerate(grads):
            d = torch.clamp(g, -self.clip, self.clip) + self.ed * (self.p[i] - self.ref[i]) + self.wd * self.p[i]
            if self.mode == "sgd":
                if self.momentum != 0:
                    self.buf[i] = d.clone() if self.buf[i] is None else (1 - self.momentum) * self.buf[i] + self.momentum * d
                    d = self.buf[i]
                self.p[i] = self.p[i] - self.lr * d
            else:
                b1, b2 = self.betas
                self.m1[i] = b1 * self.m1[i] + (1 - b1) * d
                self.m2[i] = b2 * self.m2[i] + (1 - b2) * d * d
                denom = self.m2[i].sqrt() / math.sqrt(1 - b2 ** self.t) + self.eps
                self.p[i] = self.p[i] - self.lr / (1 - b1 ** self.t) * self.m1[i] / denom
            self.acc[i] = self.acc[i] + self.p[i]
        self.T += 1

    def update_regularizer(self, decay):
        self.lr = self.lr / decay
        self.ref = [a / self.T for a in self.acc]
        self.acc = [torch.zeros_like(a) for a in self.acc]
        self.T = 0


def _alpha_step(alpha, a, b, m, lr):
    return torch.clamp(alpha + lr * (2 * (m + b - a) - 2 * alpha), 0, 999)


def _set(module: torch.nn.Module, values) -> None:
    with torch.no_grad():
        for p, v in zip(module.parameters(), values):
            p.copy_(v)


# ----------------------------------------------------------------------------- PESG
@pytest.mark.parametrize("mode", ["sgd", "adam"])
def test_pesg_steps_are_libaucs_update_rule(mode):
    model, crit = _model(), la.create("aucm", margin=0.8).double()
    with torch.no_grad():
        crit.alpha.fill_(0.1)
    kw = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3, "epoch_decay": 2e-2, "clip_value": 0.05}
    opt = PESG(model.parameters(), loss_fn=crit, mode=mode, **kw)
    ref = _RefPESG([*model.parameters(), crit.a, crit.b], kw["lr"], kw["momentum"], kw["weight_decay"],
                   kw["epoch_decay"], kw["clip_value"], mode)
    alpha = crit.alpha.detach().clone()
    ref_model, ref_crit = _model(), la.create("aucm", margin=0.8).double()
    for step, (x, y) in enumerate(_batches(6)):
        # the reference's gradient at the reference's point (the same loss, evaluated on copies)
        _set(ref_model, ref.p[:2])
        with torch.no_grad():
            ref_crit.a.copy_(ref.p[2])
            ref_crit.b.copy_(ref.p[3])
            ref_crit.alpha.copy_(alpha)
        ref_model.zero_grad()
        ref_crit.zero_grad()
        ref_crit(_scores(ref_model, x), y).backward()
        ref.step([*(p.grad for p in ref_model.parameters()), ref_crit.a.grad, ref_crit.b.grad])
        alpha = _alpha_step(alpha, ref.p[2], ref.p[3], 0.8, ref.lr)

        opt.zero_grad()
        crit(_scores(model, x), y).backward()
        opt.step()
        if step == 2:
            opt.update_regularizer(decay_factor=2.0)
            ref.update_regularizer(2.0)
        for got, want in zip([*model.parameters(), crit.a, crit.b], ref.p):
            torch.testing.assert_close(got.detach(), want, rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(crit.alpha.detach(), alpha, rtol=1e-13, atol=1e-15)
    assert opt.optim_step == 6 and opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_pesg_without_momentum_or_epoch_decay_is_clipped_sgd_with_weight_decay():
    model, crit = _model(), la.create("aucm").double()
    opt = PESG(model.parameters(), crit, lr=0.5, momentum=0.0, epoch_decay=0.0, weight_decay=0.01, clip_value=None)
    x, y = _data()
    crit(_scores(model, x), y).backward()
    before = [p.detach().clone() for p in model.parameters()]
    grads = [p.grad.clone() for p in model.parameters()]
    opt.step()
    for p, b, g in zip(model.parameters(), before, grads):
        torch.testing.assert_close(p.detach(), b - 0.5 * (g + 0.01 * b), rtol=1e-14, atol=1e-16)
    assert "ref" not in opt.state[next(model.parameters())]  # epoch_decay = 0 keeps no reference points


def test_pesg_alpha_ascends_and_is_clamped_at_zero():
    model, crit = _model(), la.create("aucm", margin=0.1).double()
    with torch.no_grad():
        crit.a.fill_(0.9)
        crit.b.fill_(0.1)
        crit.alpha.fill_(0.05)
    opt = PESG(model.parameters(), crit, lr=1.0, epoch_decay=0.0)
    x, y = _data()
    crit(_scores(model, x), y).backward()
    opt.step()
    assert float(crit.alpha.detach()) == 0.0  # 0.05 + (2(0.1 + b - a) - 0.1) < 0: projected to [0, 999]
    # no alpha gradient (a loss without alpha in its graph): alpha is left alone
    crit.zero_grad()
    with torch.no_grad():
        crit.alpha.fill_(0.3)
    opt.step()
    assert float(crit.alpha.detach()) == pytest.approx(0.3)


def test_parameter_groups_hold_a_and_b_but_not_alpha():
    model, crit = _model(), la.create("aucm").double()
    opt = PESG([*model.parameters(), *crit.parameters()], crit)  # the loss's parameters passed too
    params = [p for g in opt.param_groups for p in g["params"]]
    assert len(params) == 4 and any(p is crit.a for p in params) and any(p is crit.b for p in params)
    assert not any(p is crit.alpha for p in params)
    opt = PESG([{"params": model.weight}, {"params": [model.bias], "lr": 0.01}], crit)
    assert [len(g["params"]) for g in opt.param_groups] == [3, 1]


def test_pesg_defaults_are_libaucs():
    model, crit = _model(), la.create("aucm")
    group = PESG(model.parameters(), crit).param_groups[0]
    # libauc/optimizers/pesg.py: lr=0.1, mode='sgd', clip_value=1.0, weight_decay=1e-5, epoch_decay=2e-3,
    # momentum=0.9, betas=(0.9, 0.999), eps=1e-8, amsgrad=False
    assert (group["lr"], group["mode"], group["clip_value"], group["weight_decay"], group["epoch_decay"],
            group["momentum"], group["betas"], group["eps"], group["amsgrad"]) == (
        0.1, "sgd", 1.0, 1e-5, 2e-3, 0.9, (0.9, 0.999), 1e-8, False)


# ----------------------------------------------------------------------------- PDSCA
def test_pdsca_steps_are_libaucs_update_rule():
    model, crit = _model(), la.create("compositional_auc", margin=0.7).double()
    lr, lr0, b1, b2, wd, ed, clip = 0.2, 0.05, 0.6, 0.7, 1e-3, 3e-2, 0.5
    opt = PDSCA(model.parameters(), crit, lr=lr, lr0=lr0, beta1=b1, beta2=b2, weight_decay=wd, epoch_decay=ed,
                clip_value=clip)
    w = [p.detach().clone() for p in model.parameters()]
    ab = [crit.a.detach().clone(), crit.b.detach().clone()]
    alpha = crit.alpha.detach().clone()
    ref = [*[x.clone() for x in w], *[x.clone() for x in ab]]  # v_ref = v_0
    acc = [torch.zeros_like(x) for x in ref]
    wbuf = [None, None]
    mbuf = [None] * 4
    ref_model, ref_crit = _model(), la.create("compositional_auc", margin=0.7).double()
    for step, (x, y) in enumerate(_batches(6, seed=1)):
        # reference: the gradient at the reference's point, LibAUC's two branches written out
        _set(ref_model, w)
        with torch.no_grad():
            ref_crit.a.copy_(ab[0])
            ref_crit.b.copy_(ab[1])
            ref_crit.alpha.copy_(alpha)
        ref_crit.step = step
        ref_model.zero_grad(set_to_none=True)
        ref_crit.zero_grad(set_to_none=True)
        ref_crit(_scores(ref_model, x), y).backward()
        params = [*w, *ab]
        grads = [p.grad for p in ref_model.parameters()] + [ref_crit.a.grad, ref_crit.b.grad]
        for i, g in enumerate(grads):
            if g is None:  # a, b on a CE step
                continue
            d = torch.clamp(g, -clip, clip) + ed * (params[i] - ref[i]) + wd * params[i]
            if step % 2 == 0:  # CE: SGD with lr0, then the weight average (first: the updated weights)
                params[i] = params[i] - lr0 * d
                wbuf[i] = params[i].clone() if wbuf[i] is None else (1 - b1) * wbuf[i] + b1 * params[i]
                params[i] = wbuf[i].clone()
            else:  # AUC: the gradient average (first: d), then the step with lr
                mbuf[i] = d.clone() if mbuf[i] is None else (1 - b2) * mbuf[i] + b2 * d
                params[i] = params[i] - lr * mbuf[i]
            acc[i] = acc[i] + params[i]
        w, ab = params[:2], params[2:]
        if step % 2 == 1:
            alpha = _alpha_step(alpha, ab[0], ab[1], 0.7, lr)

        opt.zero_grad()
        crit(_scores(model, x), y).backward()
        opt.step()
        for got, want in zip([*model.parameters(), crit.a, crit.b], [*w, *ab]):
            torch.testing.assert_close(got.detach(), want, rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(crit.alpha.detach(), alpha, rtol=1e-13, atol=1e-15)
    opt.update_regularizer(decay_factor=2.0, decay_factor0=4.0)
    for p, a in zip([*model.parameters(), crit.a, crit.b], acc):
        torch.testing.assert_close(opt.state[p]["ref"], a / 6, rtol=1e-13, atol=1e-15)
    assert (opt.param_groups[0]["lr"], opt.param_groups[0]["lr0"]) == pytest.approx((0.1, 0.0125))


def test_pdsca_follows_the_loss_phase_even_without_set_to_none():
    model, crit = _model(), la.create("compositional_auc").double()
    opt = PDSCA(model.parameters(), crit, lr=0.1)
    x, y = _data()
    for _ in range(3):
        opt.zero_grad(set_to_none=False)  # alpha.grad stays a zero tensor: LibAUC would take AUC steps only
        crit(_scores(model, x), y).backward()
        a_before = crit.a.detach().clone()
        opt.step()
        if crit.last_phase == "ce":
            assert torch.equal(crit.a.detach(), a_before)  # a, b take no CE step
            assert "weight_buffer" in opt.state[model.weight]
        else:
            assert "momentum_buffer" in opt.state[model.weight]


def test_pdsca_defaults_are_libaucs():
    crit = la.create("compositional_auc")
    group = PDSCA(_model().parameters(), crit).param_groups[0]
    # libauc/optimizers/pdsca.py: lr=0.1, lr0=None (= lr), beta1=0.99, beta2=0.999, clip_value=1.0,
    # weight_decay=1e-5, epoch_decay=2e-3
    assert (group["lr"], group["lr0"], group["beta1"], group["beta2"], group["clip_value"], group["weight_decay"],
            group["epoch_decay"]) == (0.1, 0.1, 0.99, 0.999, 1.0, 1e-5, 2e-3)


# ----------------------------------------------------------------------------- resume
def _save(*objs) -> bytes:
    buf = io.BytesIO()
    torch.save([o.state_dict() for o in objs], buf)
    return buf.getvalue()


def _loss(kind: str, crit: torch.nn.Module, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return crit(s[:, None], y[:, None]) if kind == "pesg_adam" else crit(s, y)  # multi-label: one label column


def _run(kind: str, steps: int, resume_at: int | None):
    def build():
        model = _model(seed=3)
        if kind == "pesg":
            crit = la.create("aucm", margin=0.9).double()
            return model, crit, PESG(model.parameters(), crit, lr=0.1)
        if kind == "pesg_adam":
            crit = la.create("multilabel_aucm", num_labels=1, version="v2").double()
            return model, crit, PESG(model.parameters(), crit, lr=0.05, mode="adam", amsgrad=True)
        crit = la.create("compositional_auc", k=2).double()
        return model, crit, PDSCA(model.parameters(), crit, lr=0.1, lr0=0.05)

    model, crit, opt = build()
    losses = []
    for step, (x, y) in enumerate(_batches(steps, seed=5)):
        if step == resume_at:
            blob = _save(model, crit, opt)
            model, crit, opt = build()
            # a fresh start first moves the new objects (their state must all be overwritten)
            _loss(kind, crit, _scores(model, x), y).backward()
            opt.step()
            states = torch.load(io.BytesIO(blob))
            for obj, st in zip((model, crit, opt), states):
                obj.load_state_dict(st)
        opt.zero_grad()
        loss = _loss(kind, crit, _scores(model, x), y)
        loss.backward()
        opt.step()
        if step in (3, 7):
            opt.update_regularizer(decay_factor=3.0)
        losses.append(loss.item())
    return losses, [p.detach().clone() for p in [*model.parameters(), *crit.parameters()]]


@pytest.mark.parametrize("kind", ["pesg", "pesg_adam", "pdsca"])
@pytest.mark.parametrize("resume_at", [2, 5])
def test_a_resumed_run_is_bit_identical(kind, resume_at):
    full, params_full = _run(kind, 10, None)
    resumed, params_resumed = _run(kind, 10, resume_at)
    assert resumed == full  # exact equality of every loss after the resume
    assert all(torch.equal(a, b) for a, b in zip(params_full, params_resumed))


def test_reference_points_and_counters_are_in_the_state_dict():
    model, crit = _model(), la.create("aucm").double()
    opt = PESG(model.parameters(), crit)
    x, y = _data()
    crit(_scores(model, x), y).backward()
    opt.step()
    sd = opt.state_dict()
    assert set(sd["state"][0]) == {"ref", "acc", "momentum_buffer"}
    assert len(sd["state"]) == 4  # weight, bias, a, b
    assert (sd["param_groups"][0]["steps"], sd["param_groups"][0]["epoch_steps"]) == (1, 1)
    opt.update_regularizer()
    assert opt.state_dict()["param_groups"][0]["epoch_steps"] == 0
    torch.testing.assert_close(opt.state[model.weight]["ref"], model.weight.detach())  # the average of one iterate


# ----------------------------------------------------------------------------- convergence sanity
def test_pesg_raises_the_auc_of_a_linear_model():
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(200, generator=g) < 0.1).long()
    x = torch.randn(200, 5, generator=g, dtype=F64) + 1.5 * y[:, None].double() * torch.tensor([1.0, -1, 0, 0, 0],
                                                                                              dtype=F64)
    model, crit = _model(seed=1, d=5), la.create("aucm").double()
    opt = PESG(model.parameters(), crit, lr=0.1)

    def auc() -> float:
        with torch.no_grad():
            s = model(x).squeeze(1)
        pos, neg = s[y == 1], s[y == 0]
        return float((pos[:, None] > neg[None, :]).double().mean())

    start = auc()
    for epoch in range(20):
        for i in range(0, 200, 50):
            opt.zero_grad()
            crit(_scores(model, x[i:i + 50]), y[i:i + 50]).backward()
            opt.step()
        if epoch % 5 == 4:
            opt.update_regularizer(decay_factor=2.0)
    assert auc() > max(start, 0.9)


# ----------------------------------------------------------------------------- bad hyper-parameters
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"lr": -0.1}, r"lr must lie in \[0.0"),
    ({"momentum": 1.5}, r"momentum must lie in \[0.0, 1.0\]"),
    ({"weight_decay": -1e-5}, "weight_decay must lie"),
    ({"epoch_decay": -1.0}, "epoch_decay must lie"),
    ({"clip_value": 0.0}, r"clip_value must lie in \(0.0"),
    ({"betas": (1.0, 0.9)}, r"betas\[0\] must lie in \[0.0, 1.0\)"),
    ({"betas": (0.9,)}, "betas must be a pair"),
    ({"eps": -1.0}, "eps must lie"),
    ({"mode": "rmsprop"}, "mode must be 'sgd' or 'adam'"),
    ({"lr": float("nan")}, "lr must be a finite number"),
])
def test_pesg_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PESG(_model().parameters(), la.create("aucm"), **kwargs)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"beta1": 1.5}, "beta1 must lie"),
    ({"beta2": -0.1}, "beta2 must lie"),
    ({"lr0": -1.0}, "lr0 must lie"),
    ({"lr": -1.0}, "lr must lie"),
])
def test_pdsca_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PDSCA(_model().parameters(), la.create("compositional_auc"), **kwargs)


def test_bad_loss_and_schedule_arguments():
    with pytest.raises(ValueError, match="PDSCA needs loss_fn="):
        PDSCA(_model().parameters(), None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="has no tensor 'a'"):
        PESG(_model().parameters(), la.create("focal"))
    with pytest.raises(TypeError, match="single tensor"):
        PESG(torch.zeros(2, requires_grad=True), la.create("aucm"))
    opt = PESG(_model().parameters(), la.create("aucm"))
    with pytest.raises(ValueError, match=r"decay_factor must lie in \(0.0"):
        opt.update_regularizer(decay_factor=0.0)
    with pytest.raises(ValueError, match="decay_factor0 must lie"):
        PDSCA(_model().parameters(), la.create("compositional_auc")).update_lr(decay_factor0=-2.0)


@pytest.mark.parametrize("module", ["lossatlas.optim", "lossatlas.optim.pesg", "lossatlas.optim.pdsca"])
def test_module_doctests(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
