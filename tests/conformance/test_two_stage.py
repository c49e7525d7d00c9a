"""Conformance of every registered ``two_stage`` id (stage 2 of decoupled training), from the registry.

Nothing here names an id: each stage-2 method is applied to the same small trained model, and
the rules of :class:`lossatlas.two_stage.StageTwo` are checked for all of them.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import lossatlas as la
from lossatlas.two_stage import StageTwo

IDS = sorted(e.id for e in la.list(kind="two_stage"))
C, D = 4, 6


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("body", nn.Sequential(nn.Linear(D, 8), nn.ReLU()))
    model.add_module("fc", nn.Linear(8, C))
    with torch.no_grad():  # a head class with larger rows, as stage 1 leaves them
        model.fc.weight.mul_(torch.tensor([4.0, 2.0, 1.0, 0.5]).unsqueeze(1))
    return model


def test_there_are_two_stage_ids():
    assert {"crt", "tau_norm", "lws", "weight_balancing"} <= set(IDS)
    assert {e.catalogue for e in la.list(kind="two_stage")} == {"A10", "A11"}


@pytest.mark.parametrize("id_", IDS)
def test_apply_freezes_the_backbone_and_returns_the_head_parameters(id_):
    model = _model()
    body = copy.deepcopy(model.body.state_dict())
    method = la.create(id_)
    assert isinstance(method, StageTwo)
    params = method.apply(model, "fc")
    assert method.head is model.fc
    head_ids = {id(p) for p in model.fc.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in params} == {id(p) for p in trainable} and {id(p) for p in params} <= head_ids
    assert all(not p.requires_grad for p in model.body.parameters())
    x = torch.randn(5, D)
    out = model(x)
    assert out.shape == (5, C) and torch.isfinite(out).all()
    assert (len(params) > 0) == (method.epochs > 0), "a method that trains nothing has no epochs, and vice versa"
    if params:
        opt = torch.optim.SGD(params, lr=0.1, weight_decay=method.weight_decay)
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), torch.arange(5) % C).backward()
            assert all(p.grad is None for p in model.body.parameters())
            opt.step()
            method.after_step()
        assert all(torch.equal(v, model.body.state_dict()[k]) for k, v in body.items())
        assert torch.isfinite(model(x)).all()


@pytest.mark.parametrize("id_", IDS)
def test_state_dict_round_trip_after_apply(id_):
    a, b = _model(), _model()
    la.create(id_).apply(a, "fc")
    la.create(id_).apply(b, "fc")
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.5)
        for name, buf in b.named_buffers():
            buf.add_(0.5)
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, D)
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("id_", IDS)
def test_dotted_path_and_bad_classifier(id_):
    outer = nn.Module()
    outer.net = _model()
    la.create(id_).apply(outer.net, "fc")  # plain
    inner = nn.Module()
    inner.net = _model()
    la.create(id_).apply(inner, "net.fc")  # dotted
    with pytest.raises(ValueError, match="classifier='head'"):
        la.create(id_).apply(_model(), "head")
    with pytest.raises(TypeError, match="classifier"):
        la.create(id_).apply(_model(), "body")  # not an nn.Linear
    with pytest.raises(TypeError, match="model"):
        la.create(id_).apply("fc", "fc")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="apply"):
        la.create(id_).after_step()


@pytest.mark.parametrize("id_", IDS)
def test_schedule_sampler_and_repr(id_):
    method = la.create(id_)
    assert method.sampler is None or la.info(method.sampler).kind == "sampler"
    assert method.epochs >= 0 and method.lr >= 0 and method.weight_decay >= 0
    assert type(method).__name__ in repr(method)
    entry = la.info(id_)
    if "sampler" in entry.parameters:
        with pytest.raises(ValueError, match="sampler"):
            la.create(id_, sampler="focal")
    if "epochs" in entry.parameters:
        with pytest.raises(ValueError, match="epochs"):
            la.create(id_, epochs=0)
        with pytest.raises(ValueError, match="lr"):
            la.create(id_, lr=0.0)
