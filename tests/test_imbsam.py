"""ImbSAM (catalogue A14, Zhou et al. ICCV 2023): one step against the official three-step
procedure written out (cool-xuan/Imbalanced_SAM imbsam.py + utils/trainval.py::forbackward)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lossatlas as la
from lossatlas.optim import ImbSAM, tail_classes


def _setup(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x = torch.randn(10, 4, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 0])
    return model, x, y


def _reference_step(model, x, y, tail, rho, lr):
    """The official procedure with plain SGD: head gradient at w, tail gradient at w + ε."""
    params = list(model.parameters())
    n = len(y)
    losses = nn.functional.cross_entropy(model(x), y, reduction="none")
    mask = torch.isin(y, tail)
    g_head = torch.autograd.grad(losses[~mask].sum() / n, params, retain_graph=True)
    g_tail = torch.autograd.grad(losses[mask].sum() / n, params)
    norm = torch.norm(torch.stack([torch.norm(g, p=2) for g in g_tail]), p=2) + 1e-16
    with torch.no_grad():
        eps = [g * rho / norm for g in g_tail]
        for p, e in zip(params, eps):
            p.add_(e)
    g_sharp = torch.autograd.grad(nn.functional.cross_entropy(model(x)[mask], y[mask], reduction="sum") / n, params)
    with torch.no_grad():
        for p, e, a, b in zip(params, eps, g_head, g_sharp):
            p.sub_(e)
            p.sub_(lr * (a + b))


def test_imbsam_step_equals_the_official_procedure():
    model, x, y = _setup()
    ref = [p.detach().clone() for p in model.parameters()]
    ref_model, _, _ = _setup()
    _reference_step(ref_model, x, y, torch.tensor([2]), rho=0.05, lr=0.3)
    opt = ImbSAM(torch.optim.SGD(model.parameters(), lr=0.3), model.parameters(), class_counts=[500, 40, 5])
    assert opt.tail.tolist() == [2]  # fewer than eta = 20 samples
    crit = la.create("cross_entropy", reduction="none")
    opt.step(lambda: crit(model(x), y), y)
    for p, q, r in zip(model.parameters(), ref_model.parameters(), ref):
        assert torch.allclose(p, q, rtol=1e-12, atol=1e-14) and not torch.equal(p, r)
    assert all(p.grad is None for p in model.parameters())


def test_imbsam_differs_from_sam_and_reduces_to_sgd():
    crit = la.create("cross_entropy", reduction="none")
    # rho = 0, or a batch without tail samples: a plain SGD step on the mean loss
    for rho, y_override in ((0.0, None), (0.05, torch.tensor([0, 0, 0, 0, 1, 1, 1, 0, 1, 0]))):
        model, x, y = _setup(1)
        y = y if y_override is None else y_override
        sgd_model, _, _ = _setup(1)
        opt = ImbSAM(torch.optim.SGD(model.parameters(), lr=0.5), model.parameters(), tail=[2], rho=rho)
        opt.step(lambda: crit(model(x), y), y)
        sgd = torch.optim.SGD(sgd_model.parameters(), lr=0.5)
        nn.functional.cross_entropy(sgd_model(x), y).backward()
        sgd.step()
        for p, q in zip(model.parameters(), sgd_model.parameters()):
            assert torch.allclose(p, q, rtol=1e-12)
    # with tail samples and rho > 0 the step is not SGD's
    model, x, y = _setup(2)
    sgd_model, _, _ = _setup(2)
    ImbSAM(torch.optim.SGD(model.parameters(), lr=0.5), model.parameters(), tail=[2], rho=0.5).step(
        lambda: crit(model(x), y), y)
    sgd = torch.optim.SGD(sgd_model.parameters(), lr=0.5)
    nn.functional.cross_entropy(sgd_model(x), y).backward()
    sgd.step()
    assert not all(torch.allclose(p, q) for p, q in zip(model.parameters(), sgd_model.parameters()))


def test_imbsam_tail_classes_state_and_bad_input():
    assert tail_classes([100, 20, 19, 0]).tolist() == [2, 3]
    assert tail_classes([100, 20, 19], eta=50).tolist() == [1, 2]
    model, x, y = _setup()
    opt = ImbSAM(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), model.parameters(), tail=[2])
    crit = la.create("cross_entropy", reduction="none")
    opt.step(lambda: crit(model(x), y), y)
    state = opt.state_dict()
    other = ImbSAM(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), model.parameters(), tail=[1], rho=0.1)
    other.load_state_dict(state)
    assert other.rho == 0.05 and other.tail.tolist() == [2] and "ImbSAM(rho=0.05" in repr(other)
    with pytest.raises(ValueError, match="exactly one"):
        ImbSAM(torch.optim.SGD(model.parameters(), lr=0.1), model.parameters())
    with pytest.raises(ValueError, match="rho"):
        ImbSAM(torch.optim.SGD(model.parameters(), lr=0.1), model.parameters(), tail=[2], rho=-1.0)
    with pytest.raises(TypeError, match="optimizer"):
        ImbSAM("sgd", model.parameters(), tail=[2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="per-sample"):
        opt.step(lambda: crit(model(x), y).mean(), y)
    with pytest.raises(ValueError, match="target"):
        opt.step(lambda: crit(model(x), y), y[:3])
    with pytest.raises(ValueError, match="class_counts"):
        tail_classes([[1, 2]])
