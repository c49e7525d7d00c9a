"""G16: SogCLR / iSogCLR global contrastive losses (unimodal and bimodal), with per-sample state.

References written here in float64 from the papers' objectives and LibAUC's update rules
(libauc/losses/contrastive.py, GCLoss_v1 / GCLoss_v2):

* closed form: with γ = 1 the gradient of SogCLR is the gradient of the in-batch global
  contrastive objective ``Σ_views τ log mean_k exp((l_ik - l_ii)/τ)`` (Yuan et al. 2022,
  Eq. (3) with the batch as the dataset), and its value is LibAUC's surrogate
  ``-l_ii + Σ_k softmax_k(l_ik/τ) l_ik``;
* at a fixed state (γ < 1, u given) the gradient is the derivative of
  ``Σ_views -l_ii + τ Σ_k e^{l_ik/τ} / (2(B-1) max(ū_i, ε))`` with ū_i the moving average
  held constant: checked against central finite differences of that objective;
* the state updates (u, iSogCLR's temperatures, the bimodal running shift) against the
  same references; resume from ``state_dict`` bit-identical; dense == tiled; bad input.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import lossatlas as la
import lossatlas.functional as LF

IDS = ["sogclr", "isogclr", "sogclr_bimodal", "isogclr_bimodal"]
BIMODAL = {"sogclr_bimodal", "isogclr_bimodal"}
ISOGCLR = {"isogclr", "isogclr_bimodal"}


def _documented(id_: str) -> dict[str, str]:
    """The Args lines of the module's docstring (written from the Param tables), by argument."""
    doc = la.info(id_).cls.__doc__ or ""
    return {m.group(1): m.group(2) for m in re.finditer(r"^ {8}(\w+): (.*)$", doc, re.M)}


@pytest.mark.parametrize("id_", IDS)
def test_documented_ranges_and_sources_are_the_checked_ones(id_):
    # The Param tables are built at import (mutation seed 27): each line of the docs states the
    # range that la.create enforces, names the arguments as they are spelled, and the default's
    # source is the one that goes with it.
    lines = _documented(id_)
    assert lines["gamma"].startswith("γ in [0, 1], the moving-average weight of the new batch estimate"), lines["gamma"]
    for ok in (0.0, 1.0):
        _create(id_, gamma=ok)
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError, match=r"^gamma must be"):
            _create(id_, gamma=bad)
    if id_ not in ISOGCLR:
        return
    assert lines["tau_min"].startswith("lower bound of the per-sample temperatures (> 0; tau_min <= tau_max). "
                                       "Default ``"), lines["tau_min"]
    with pytest.raises(ValueError, match=r"^tau_min must be > 0"):
        _create(id_, tau_min=0.0)
    with pytest.raises(ValueError, match=r"^tau_min must be <= tau_max"):
        _create(id_, tau_min=0.5, tau_max=0.4)
    source = la.info(id_).defaults_source["tau_min"]
    assert source.startswith("LibAUC ") and source.endswith(f"tau_min={la.info(id_).defaults['tau_min']}"), source


STATE_NAMES = {"sogclr": ("u",), "isogclr": ("u", "tau", "tau_grad"), "sogclr_bimodal": ("u_a", "max_a", "u_b", "max_b"),
               "isogclr_bimodal": ("u_a", "max_a", "tau_a", "tau_grad_a", "u_b", "max_b", "tau_b", "tau_grad_b")}


@pytest.mark.parametrize("id_", IDS)
def test_a_state_given_in_part_or_of_the_wrong_length_is_named(id_):
    # the function's state tensors go together; an error names the one missing or wrong (mutation seed 27)
    fn = getattr(LF, id_)
    a, b = _pair()
    names = STATE_NAMES[id_]
    full = {nm: torch.full((20,), 0.1 if nm in ("tau", "tau_a", "tau_b") else 0.0, dtype=torch.float64) for nm in names}
    assert torch.isfinite(fn(a, b, index=torch.arange(6), **full))
    for nm in names:
        part = {k: v for k, v in full.items() if k != nm}
        if part:
            with pytest.raises(ValueError, match=rf"^the state is given in part: pass {', '.join(names)} together "
                                                 rf"\(missing {nm}\)$"):
                fn(a, b, index=torch.arange(6), **part)
        if nm != names[0]:
            with pytest.raises(ValueError, match=rf"^{nm} must have the length of {names[0]} \(20\), got 19$"):
                fn(a, b, index=torch.arange(6), **{**full, nm: torch.zeros(19, dtype=torch.float64)})


def _pair(n: int = 6, d: int = 4, seed: int = 0, unit: bool = False) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    b = a + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
    if unit:
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    return a, b


def _create(id_: str, data_len: int = 20, **kw: Any) -> Any:
    crit = la.create(id_, data_len=data_len, **kw).double()
    return crit


def _grads(crit: Any, a: Tensor, b: Tensor, index: Tensor, **kw: Any) -> tuple[Tensor, Tensor, Tensor]:
    a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
    loss = crit(a, b, index=index, **kw)
    ga, gb = torch.autograd.grad(loss, [a, b])
    return loss.detach(), ga, gb


def _numeric_grad(fn: Callable[[Tensor, Tensor], Tensor], a: Tensor, b: Tensor, h: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Central differences of a scalar function of (a, b), float64."""
    out = []
    for which in (0, 1):
        x = (a, b)[which]
        g = torch.zeros_like(x)
        for i in range(x.numel()):
            xp, xm = x.clone(), x.clone()
            xp.view(-1)[i] += h
            xm.view(-1)[i] -= h
            args_p = (xp, b) if which == 0 else (a, xp)
            args_m = (xm, b) if which == 0 else (a, xm)
            g.view(-1)[i] = (fn(*args_p) - fn(*args_m)) / (2 * h)
        out.append(g)
    return out[0], out[1]


# ----------------------------------------------------------------------------- references (float64)
def _unimodal_negatives(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Anchor x_i: logits against y_k (k ≠ i) and x_k (k ≠ i) [B, 2(B-1)], positive x_i·y_i [B]."""
    n = x.shape[0]
    off = ~torch.eye(n, dtype=torch.bool)
    negs = torch.cat([(x @ y.T)[off].view(n, n - 1), (x @ x.T)[off].view(n, n - 1)], 1)
    return negs, (x * y).sum(1)


def _gcl_objective(a: Tensor, b: Tensor, tau: Tensor) -> Tensor:
    """Yuan et al. (2022): mean_i Σ_views τ_i log mean_k exp((l_ik - l_ii)/τ_i), unit rows inside."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    total = a.new_zeros(())
    for x, y in ((a, b), (b, a)):
        negs, pos = _unimodal_negatives(x, y)
        total = total + (tau * torch.log(torch.exp((negs - pos[:, None]) / tau[:, None]).mean(1))).mean()
    return total


def _unimodal_reference(a: Tensor, b: Tensor, u_old: Tensor, gamma: float, tau: Tensor, eps: float,
                        rho: float = 0.3) -> dict[str, Tensor]:
    """LibAUC GCLoss_v1 for one call (γ as given: the caller decides first visits)."""
    an, bn = F.normalize(a, dim=1), F.normalize(b, dim=1)
    count = 2 * (a.shape[0] - 1)
    per, us, grads = a.new_zeros(a.shape[0]), [], []
    for x, y in ((an, bn), (bn, an)):
        negs, pos = _unimodal_negatives(x, y)
        e = torch.exp(negs / tau[:, None])
        u = (1 - gamma) * u_old + gamma * e.sum(1) / count
        p = e / u.clamp(min=eps)[:, None]
        per = per - (pos - (p * negs).sum(1) / count)
        us.append(u)
        grads.append(torch.log(u) + rho - (p * negs / tau[:, None]).sum(1) / count)
    return {"per": per, "u": 0.5 * (us[0] + us[1]), "u1": us[0], "u2": us[1], "tau_grad": 0.5 * (grads[0] + grads[1])}


def _bimodal_side(x: Tensor, y: Tensor, u_old: Tensor, b_old: Tensor, gamma: float, tau: Tensor, eps: float,
                  rho: float = 6.0) -> dict[str, Tensor]:
    """LibAUC GCLoss_v2, one side: anchor x_i against y_j, d_ij = x_i·y_j - x_i·y_i."""
    n = x.shape[0]
    s = x @ y.T
    d = s - torch.diagonal(s)[:, None]
    b_new = torch.maximum(b_old, (d / tau[:, None]).amax(1))  # j = i (d = 0) included
    e = torch.exp(d / tau[:, None] - b_new[:, None]) * (1 - torch.eye(n, dtype=x.dtype))
    u = ((1 - gamma) * u_old * torch.exp(b_old - b_new) + gamma * e.sum(1) / (n - 1)).clamp(min=eps)
    p = e / u[:, None]
    grad = torch.log(u) + rho + b_new - (p * d / tau[:, None]).sum(1) / (n - 1)
    return {"per": (p * d).sum(1), "u": u, "b": b_new, "tau_grad": grad}


# ----------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("id_", ["sogclr", "isogclr"])
def test_gamma_one_is_the_in_batch_global_contrastive_loss(id_):
    crit = _create(id_, gamma=1.0)
    for step, index in enumerate((torch.arange(6), torch.tensor([3, 4, 5, 6, 7, 8]))):
        a, b = _pair(seed=step)
        tau = crit.tau.value[index].clone() if id_ == "isogclr" else torch.full((6,), 0.1, dtype=torch.float64)
        loss, ga, gb = _grads(crit, a, b, index)
        # value: LibAUC's surrogate with p = softmax over the 2(B-1) negatives
        an, bn = F.normalize(a, dim=1), F.normalize(b, dim=1)
        value = a.new_zeros(6)
        for x, y in ((an, bn), (bn, an)):
            negs, pos = _unimodal_negatives(x, y)
            value = value - pos + (torch.softmax(negs / tau[:, None], 1) * negs).sum(1)
        torch.testing.assert_close(loss, value.mean(), rtol=1e-12, atol=1e-12)
        # gradient: the paper's objective on the batch
        ar, br = a.clone().requires_grad_(), b.clone().requires_grad_()
        ref_a, ref_b = torch.autograd.grad(_gcl_objective(ar, br, tau), [ar, br])
        torch.testing.assert_close(ga, ref_a, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(gb, ref_b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("id_", ["sogclr_bimodal", "isogclr_bimodal"])
def test_bimodal_gamma_one_is_b_minus_one_times_the_global_contrastive_gradient(id_):
    # τ = 0.1: u stays above LibAUC's floor ε = 1e-20 (at τ = 0.01 a batch whose negatives all lie
    # 0.5 below the positive has u ~ e^-50 < ε, and the floor scales the weights down)
    crit = _create(id_, gamma=1.0, temperature=0.1)
    n = 6
    for step, index in enumerate((torch.arange(n), torch.tensor([3, 4, 5, 6, 7, 8]))):
        a, b = _pair(n, seed=step, unit=True)
        tau_a = crit.tau_a.value[index].clone() if id_ in ISOGCLR else torch.full((n,), 0.1, dtype=torch.float64)
        tau_b = crit.tau_b.value[index].clone() if id_ in ISOGCLR else tau_a
        loss, ga, gb = _grads(crit, a, b, index)

        def objective(x: Tensor, y: Tensor) -> Tensor:
            total = x.new_zeros(())
            for p, q, t in ((x, y, tau_a), (y, x, tau_b)):
                s = p @ q.T
                d = (s - torch.diagonal(s)[:, None])[~torch.eye(n, dtype=torch.bool)].view(n, n - 1)
                total = total + (t * torch.log(torch.exp(d / t[:, None]).mean(1))).mean()
            return (n - 1) / 2 * total

        value = a.new_zeros(())
        for p, q, t in ((a, b, tau_a), (b, a, tau_b)):
            s = p @ q.T
            d = (s - torch.diagonal(s)[:, None])[~torch.eye(n, dtype=torch.bool)].view(n, n - 1)
            value = value + (n - 1) / 2 * (torch.softmax(d / t[:, None], 1) * d).sum(1).mean()
        torch.testing.assert_close(loss, value, rtol=1e-10, atol=1e-12)
        ar, br = a.clone().requires_grad_(), b.clone().requires_grad_()
        ref_a, ref_b = torch.autograd.grad(objective(ar, br), [ar, br])
        torch.testing.assert_close(ga, ref_a, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(gb, ref_b, rtol=1e-9, atol=1e-11)


# ----------------------------------------------------------------------------- fixed state
def _seeded_state(crit: Any, index: Tensor, seed: int = 5) -> None:
    """Visited samples: positive moving averages (and temperatures inside the bounds) at index."""
    g = torch.Generator().manual_seed(seed)
    for name, table in crit.state().items():
        k = index.numel()
        if name.startswith("tau_grad"):
            values = 0.3 * torch.randn(k, generator=g, dtype=torch.float64)
        elif name.startswith("tau"):
            lo, hi = (0.06, 0.5) if name == "tau" else (0.006, 0.04)
            values = lo + (hi - lo) * torch.rand(k, generator=g, dtype=torch.float64)
        elif name.startswith("max"):
            values = 5.0 * torch.rand(k, generator=g, dtype=torch.float64)
        else:
            values = 0.5 + torch.rand(k, generator=g, dtype=torch.float64)
        table[index] = values


@pytest.mark.parametrize("id_", ["sogclr", "isogclr"])
def test_unimodal_gradient_at_fixed_state_is_the_derivative_of_its_objective(id_):
    crit = _create(id_, gamma=0.7, eps=1e-8)
    index = torch.tensor([2, 7, 11, 3, 19])
    _seeded_state(crit, index)
    a, b = _pair(5, 3, seed=1)
    u_old = crit.u.value[index].clone()
    tau = crit.tau.value[index].clone() if id_ == "isogclr" else torch.full((5,), 0.1, dtype=torch.float64)
    tau_grad_old = crit.tau_grad.value[index].clone() if id_ == "isogclr" else None
    ref = _unimodal_reference(a, b, u_old, 0.7, tau, 1e-8)
    loss, ga, gb = _grads(crit, a, b, index)
    torch.testing.assert_close(loss, ref["per"].mean(), rtol=1e-12, atol=1e-12)
    u_bar = (ref["u1"].clamp(min=1e-8), ref["u2"].clamp(min=1e-8))

    def phi(x: Tensor, y: Tensor) -> Tensor:  # the moving averages held constant
        xn, yn = F.normalize(x, dim=1), F.normalize(y, dim=1)
        total = x.new_zeros(5)
        for (p, q), ub in zip(((xn, yn), (yn, xn)), u_bar):
            negs, pos = _unimodal_negatives(p, q)
            total = total - pos + tau * torch.exp(negs / tau[:, None]).sum(1) / (8 * ub)
        return total.mean()

    na, nb = _numeric_grad(phi, a, b)
    torch.testing.assert_close(ga, na, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(gb, nb, rtol=1e-6, atol=1e-8)
    # the state: u ← (u1 + u2)/2 at index; iSogCLR: temperature momentum step
    torch.testing.assert_close(crit.u.value[index], ref["u"], rtol=1e-12, atol=1e-15)
    if id_ == "isogclr":
        m = 0.1 * tau_grad_old + 0.9 * ref["tau_grad"]
        torch.testing.assert_close(crit.tau_grad.value[index], m, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(crit.tau.value[index], (tau - 0.01 * m).clamp(0.05, 0.7), rtol=1e-12, atol=1e-15)
    untouched = torch.ones(20, dtype=torch.bool)
    untouched[index] = False
    assert bool((crit.u.value[untouched] == 0).all())


@pytest.mark.parametrize("id_", ["sogclr_bimodal", "isogclr_bimodal"])
def test_bimodal_gradient_at_fixed_state_is_the_derivative_of_its_objective(id_):
    crit = _create(id_, gamma=0.6)
    index = torch.tensor([4, 0, 13, 8, 17])
    _seeded_state(crit, index)
    a, b = _pair(5, 3, seed=2, unit=True)
    old = {k: v[index].clone() for k, v in crit.state().items()}
    iso = id_ in ISOGCLR
    tau_a = old["tau_a"] if iso else torch.full((5,), 0.01, dtype=torch.float64)
    tau_b = old["tau_b"] if iso else tau_a
    ref_a = _bimodal_side(a, b, old["u_a"], old["max_a"], 0.6, tau_a, 1e-20)
    ref_b = _bimodal_side(b, a, old["u_b"], old["max_b"], 0.6, tau_b, 1e-20)
    loss, ga, gb = _grads(crit, a, b, index)
    torch.testing.assert_close(loss, (0.5 * (ref_a["per"] + ref_b["per"])).mean(), rtol=1e-10, atol=1e-12)

    def phi(x: Tensor, y: Tensor) -> Tensor:  # u and the shifts held constant
        total = x.new_zeros(5)
        for p, q, ref, t in ((x, y, ref_a, tau_a), (y, x, ref_b, tau_b)):
            s = p @ q.T
            d = s - torch.diagonal(s)[:, None]
            e = torch.exp(d / t[:, None] - ref["b"][:, None]) * (1 - torch.eye(5, dtype=x.dtype))
            total = total + 0.5 * t * e.sum(1) / ref["u"]
        return total.mean()

    na, nb = _numeric_grad(phi, a, b)
    torch.testing.assert_close(ga, na, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(gb, nb, rtol=1e-6, atol=1e-7)
    for side, ref in (("a", ref_a), ("b", ref_b)):
        torch.testing.assert_close(crit.state()[f"u_{side}"][index], ref["u"], rtol=1e-12, atol=1e-300)
        torch.testing.assert_close(crit.state()[f"max_{side}"][index], ref["b"], rtol=1e-12, atol=0.0)
        if iso:
            m = 0.1 * old[f"tau_grad_{side}"] + 0.9 * ref["tau_grad"]
            torch.testing.assert_close(crit.state()[f"tau_grad_{side}"][index], m, rtol=1e-12, atol=1e-15)
            tau = old[f"tau_{side}"]
            torch.testing.assert_close(crit.state()[f"tau_{side}"][index], (tau - 0.01 * m).clamp(0.005, 0.05),
                                       rtol=1e-12, atol=1e-15)


def test_first_visit_uses_gamma_one_only_for_a_wholly_unseen_batch():
    crit = _create("sogclr", gamma=0.9)
    tau = torch.full((6,), 0.1, dtype=torch.float64)
    a, b = _pair(seed=3)
    crit(a, b, index=torch.arange(6))  # unseen: u = the batch estimate
    torch.testing.assert_close(crit.u.value[:6], _unimodal_reference(a, b, torch.zeros(6, dtype=torch.float64),
                                                                     1.0, tau, 1e-8)["u"])
    a2, b2 = _pair(seed=4)
    index = torch.tensor([3, 4, 5, 6, 7, 8])  # half seen: γ = 0.9 for every row, unseen ones too
    u_old = crit.u.value[index].clone()
    crit(a2, b2, index=index)
    ref = _unimodal_reference(a2, b2, u_old, 0.9, tau, 1e-8)["u"]
    torch.testing.assert_close(crit.u.value[index], ref)
    assert not torch.allclose(ref[3:], _unimodal_reference(a2, b2, u_old, 1.0, tau, 1e-8)["u"][3:])


# ----------------------------------------------------------------------------- one core
@pytest.mark.parametrize("id_", IDS)
def test_function_with_explicit_state_equals_the_module_over_a_sequence(id_):
    crit = _create(id_)
    state = {k: v.clone() for k, v in crit.state().items()}
    fn = getattr(LF, id_)
    for step, index in enumerate((torch.arange(6), torch.tensor([5, 9, 1, 12, 0, 3]), torch.arange(6) + 8)):
        a, b = _pair(seed=10 + step, unit=id_ in BIMODAL)
        kw = crit.functional_kwargs()
        before = {k: v.clone() for k, v in crit.state().items()}
        mod = _grads(crit, a, b, index)
        assert all(torch.equal(kw[k], before[k]) for k in before)  # functional_kwargs gives copies
        fun = _grads(lambda x, y, index: fn(x, y, index=index, **state, **crit.hparams()), a, b, index)
        for x, y in zip(mod, fun):
            assert torch.equal(x, y)
        for k in state:
            assert torch.equal(state[k], crit.state()[k]), k


@pytest.mark.parametrize("id_", IDS)
def test_without_state_the_function_is_a_first_visit(id_):
    a, b = _pair(seed=6, unit=id_ in BIMODAL)
    crit = _create(id_)
    first = crit(a, b, index=torch.arange(6) + 3)
    torch.testing.assert_close(getattr(LF, id_)(a, b), first, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("id_", IDS)
def test_tiled_equals_dense(id_):
    dense, tiled = _create(id_, data_len=40), _create(id_, data_len=40, tiled=True, block_size=4)
    for step, index in enumerate((torch.arange(13), torch.arange(13) + 7, torch.arange(26, 39))):
        a, b = _pair(13, 5, seed=20 + step, unit=id_ in BIMODAL)
        for x, y in zip(_grads(dense, a, b, index), _grads(tiled, a, b, index)):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
        for k in dense.state():
            torch.testing.assert_close(dense.state()[k], tiled.state()[k], rtol=1e-10, atol=1e-300)
    a, b = _pair(13, 5, seed=30, unit=id_ in BIMODAL)
    n_none = _create(id_, data_len=40, reduction="none")(a, b, index=torch.arange(13))
    t_none = _create(id_, data_len=40, reduction="none", tiled=True, block_size=5)(a, b, index=torch.arange(13))
    torch.testing.assert_close(n_none, t_none, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("id_", IDS)
def test_reductions_and_dtypes(id_):
    a, b = _pair(seed=7, unit=id_ in BIMODAL)
    index = torch.arange(6)
    none = _create(id_, reduction="none")(a, b, index=index)
    assert none.shape == (6,)
    torch.testing.assert_close(_create(id_)(a, b, index=index), none.mean())
    torch.testing.assert_close(_create(id_, reduction="sum")(a, b, index=index), none.sum())
    crit = la.create(id_, data_len=20)  # not .double(): the tables are float64 from the start
    out = crit(a.float(), b.float(), index=index)
    assert out.dtype == torch.float32 and all(v.dtype == torch.float64 for v in crit.state().values())
    torch.testing.assert_close(out.double(), _create(id_)(a, b, index=index), rtol=1e-4, atol=1e-5)
    half = la.create(id_, data_len=20).float()
    assert all(v.dtype == torch.float32 for v in half.state().values())
    assert half(a.float(), b.float(), index=index).dtype == torch.float32


@pytest.mark.parametrize("id_", IDS)
def test_empty_batch_and_single_pair_leave_the_state_alone(id_):
    crit = _create(id_)
    before = {k: v.clone() for k, v in crit.state().items()}
    a, b = _pair(seed=8, unit=id_ in BIMODAL)
    empty = crit(a[:0].requires_grad_(), b[:0], index=torch.arange(0))
    assert float(empty.detach()) == 0.0
    single = crit(a[:1].requires_grad_(), b[:1], index=torch.tensor([4]))
    assert float(single.detach()) == 0.0
    assert all(torch.equal(v, before[k]) for k, v in crit.state().items())


@pytest.mark.parametrize("id_", IDS)
def test_state_dict_reset_and_repr(id_):
    crit = _create(id_, data_len=11)
    names = set(crit.state())
    assert set(crit.state_dict()) == {f"{n}.value" for n in names}
    assert all(v.shape == (11,) for v in crit.state().values())
    temperature = crit.temperature
    crit(*_pair(seed=9, unit=id_ in BIMODAL), index=torch.arange(6) + 2)
    assert any(bool((v != v[0]).any()) for v in crit.state().values())
    crit.reset()
    for k, v in crit.state().items():
        assert bool((v == (temperature if k in ("tau", "tau_a", "tau_b") else 0.0)).all()), k
    assert "data_len=11" in repr(crit)


# ----------------------------------------------------------------------------- resume
def _training(id_: str, steps: int, resume_at: int | None, restore_loss: bool = True) -> list[Tensor]:
    """A small float64 run (encoder, loss, optimiser), interrupted and resumed from state_dicts."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(24, 5, generator=g, dtype=torch.float64)
    noise = torch.randn(steps, 2, 6, 5, generator=g, dtype=torch.float64)
    batches = [torch.randperm(24, generator=g)[:6] for _ in range(steps)]

    def build() -> tuple[torch.nn.Module, Any, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = torch.nn.Linear(5, 4).double()
        crit = _create(id_, data_len=24, gamma=0.8)
        opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        return model, crit, opt

    model, crit, opt = build()
    losses = []
    for step in range(steps):
        if step == resume_at:
            saved = copy.deepcopy((model.state_dict(), crit.state_dict(), opt.state_dict()))
            model, crit, opt = build()
            model.load_state_dict(saved[0])
            if restore_loss:
                crit.load_state_dict(saved[1])
            opt.load_state_dict(saved[2])
        idx = batches[step]
        za, zb = model(x[idx] + 0.1 * noise[step, 0]), model(x[idx] + 0.1 * noise[step, 1])
        if id_ in BIMODAL:
            za, zb = F.normalize(za, dim=1), F.normalize(zb, dim=1)
        loss = crit(za, zb, index=idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return losses


@pytest.mark.parametrize("id_", IDS)
def test_resume_from_state_dict_is_bit_identical(id_):
    straight = _training(id_, 8, None)
    resumed = _training(id_, 8, 3)
    assert all(torch.equal(x, y) for x, y in zip(straight, resumed))
    # the loss's state is what makes it so: without it the resumed run departs
    fresh_loss = _training(id_, 8, 3, restore_loss=False)
    assert not all(torch.equal(x, y) for x, y in zip(straight[3:], fresh_loss[3:]))


# ----------------------------------------------------------------------------- defaults that act on the state
_WIDE = {"tau_max": 10.0}  # at the bimodal defaults the first step already clamps τ at tau_max = 0.05
STATE_DEFAULTS = [  # (id, name, another value, other fixed arguments): these act from the second call on
    *[(i, "gamma", 0.5, {}) for i in IDS],
    ("isogclr", "rho", 0.0, {}), ("isogclr", "eta", 0.1, {}), ("isogclr", "beta", 0.5, {}),
    ("isogclr", "tau_min", 0.2, {}), ("isogclr", "tau_max", 0.06, {}),
    ("isogclr_bimodal", "rho", 0.0, {}), ("isogclr_bimodal", "eta", 0.1, _WIDE),
    ("isogclr_bimodal", "beta", 0.5, _WIDE), ("isogclr_bimodal", "tau_min", 0.02, {}),
    ("isogclr_bimodal", "tau_max", 0.006, {}),
]


@pytest.mark.parametrize(("id_", "name", "other", "fixed"), STATE_DEFAULTS, ids=[f"{i}.{n}" for i, n, *_ in STATE_DEFAULTS])
def test_state_hyperparameters_act_on_the_next_call(id_, name, other, fixed):
    default = la.info(id_).defaults[name]

    def two_calls(**kw: Any) -> Tensor:
        crit = _create(id_, **fixed, **kw)
        crit(*_pair(seed=11, unit=id_ in BIMODAL), index=torch.arange(6))
        return crit(*_pair(seed=12, unit=id_ in BIMODAL), index=torch.arange(6) + 2).detach()

    base = two_calls()
    assert torch.equal(base, two_calls(**{name: default}))
    assert not torch.allclose(base, two_calls(**{name: other}), rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("id_", IDS)
def test_bad_index_is_a_clear_error(id_):
    crit = _create(id_, data_len=10)
    a, b = _pair(seed=0, unit=id_ in BIMODAL)
    with pytest.raises(ValueError, match="index="):
        crit(a, b)
    with pytest.raises(ValueError, match=r"index must lie in \[0, data_len=10\)"):
        crit(a, b, index=torch.tensor([0, 1, 2, 3, 4, 10]))
    with pytest.raises(ValueError, match="index must lie"):
        crit(a, b, index=torch.tensor([-1, 1, 2, 3, 4, 5]))
    with pytest.raises(ValueError, match=r"index must have shape \[6\]"):
        crit(a, b, index=torch.arange(5))
    with pytest.raises(TypeError, match="index must be an integer tensor"):
        crit(a, b, index=torch.arange(6.0))
    with pytest.raises(ValueError, match="repeats a dataset index"):
        crit(a, b, index=torch.tensor([0, 1, 2, 3, 4, 4]))
    assert all(bool((v == v[0]).all()) for v in crit.state().values())  # no partial update


@pytest.mark.parametrize("id_", IDS)
def test_bad_shapes_and_arguments_are_clear_errors(id_):
    a, b = _pair(seed=0, unit=id_ in BIMODAL)
    crit = _create(id_)
    with pytest.raises(ValueError, match="b must have the shape of a"):
        crit(a, b[:, :3], index=torch.arange(6))
    with pytest.raises(ValueError, match=r"a must have shape \[N, D\]"):
        crit(a[0], b[0], index=torch.arange(1))
    with pytest.raises(TypeError, match="a must be a floating-point tensor"):
        crit(a.long(), b, index=torch.arange(6))
    with pytest.raises(ValueError, match="data_len"):
        la.create(id_, data_len=0)
    with pytest.raises(ValueError, match="temperature"):
        la.create(id_, data_len=5, temperature=0.0)
    with pytest.raises(ValueError, match="gamma"):
        la.create(id_, data_len=5, gamma=1.5)
    fn = getattr(LF, id_)
    first_state = next(iter(_create(id_).state()))
    with pytest.raises(ValueError, match="needs the state"):
        fn(a, b, index=torch.arange(6))
    with pytest.raises(ValueError, match="needs index="):
        fn(a, b, **{k: v.clone() for k, v in _create(id_).state().items()})
    with pytest.raises(ValueError, match="1-D tensor"):
        fn(a, b, index=torch.arange(6), **{k: v.clone()[:, None] for k, v in _create(id_).state().items()})
    if len(crit.state()) > 1:
        with pytest.raises(ValueError, match="together"):
            fn(a, b, index=torch.arange(6), **{first_state: torch.zeros(20, dtype=torch.float64)})
        short = {k: (v.clone() if k == first_state else v.clone()[:7]) for k, v in _create(id_).state().items()}
        with pytest.raises(ValueError, match="must have the length of"):
            fn(a, b, index=torch.arange(6), **short)
    if id_ in ISOGCLR:
        with pytest.raises(ValueError, match="tau_min must be <= tau_max"):
            la.create(id_, data_len=5, tau_min=0.5, tau_max=0.1)
        with pytest.raises(ValueError, match="tau_min must be <= tau_max"):
            fn(a, b, tau_min=0.5, tau_max=0.1)
