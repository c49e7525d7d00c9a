"""The fused (one-softmax, hand-derived backward) paths of the noise, calibration and
single-label multi-label losses, against references written here from each loss's definition.

Every reference below is the formula in float64 torch ops (one-hot matrices, explicit
clamps), differentiated by autograd: nothing of the code under test is called to build
it. Both paths are forced (:func:`lossatlas._paths.force_path`) with non-default
hyper-parameters, an ignored row, narrow (C < 16: the transposed softmax) and wide class
counts, and logits large enough to reach the clamps; the fused path is gradchecked; the
numeric-guard tests of tests/test_guards.py that concern these losses are re-run on each
forced path (their default is the size-based choice). Timings live in benchmarks/perf.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import mpmath
import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
import test_guards as G
from lossatlas._paths import force_path
from lossatlas.functional._fused import log_softmax_rows, next_below, softmax_rows

LF = la.functional
DT = torch.float64
P_MIN = 1e-7


# ----------------------------------------------------------------------- references
def _onehot(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.one_hot(y, z.shape[1]).to(z.dtype)


def _p_y(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (torch.softmax(z, 1) * _onehot(z, y)).sum(1)


def ref_mae(z, y, scale=1.0):
    return scale * (1 - _p_y(z, y))


def ref_gce(z, y, q=0.7):
    return (1 - _p_y(z, y).clamp_min(P_MIN) ** q) / q


def ref_alpha(z, y, alpha=2.0):
    p = _p_y(z, y)
    if alpha == 1.0:
        return -torch.log(p)
    if math.isinf(alpha):
        return 1 - p
    return alpha / (alpha - 1) * (1 - p ** ((alpha - 1) / alpha))


def ref_taylor(z, y, order=2):
    u = 1 - _p_y(z, y)
    return sum(u**k / k for k in range(1, order + 1))


def ref_rce(z, y, scale=1.0, log_zero=math.log(1e-4)):
    p = torch.softmax(z, 1).clamp_min(P_MIN)
    return -log_zero * scale * (p * (1 - _onehot(z, y))).sum(1)


def ref_sce(z, y, alpha=0.1, beta=1.0, log_zero=math.log(1e-4)):
    return alpha * -torch.log(_p_y(z, y)) + ref_rce(z, y, beta, log_zero)


def ref_nce(z, y, scale=1.0):
    logp = torch.log_softmax(z, 1)
    return scale * (logp * _onehot(z, y)).sum(1) / logp.sum(1)


def ref_nce_rce(z, y, alpha=1.0, beta=1.0):
    return alpha * ref_nce(z, y) + ref_rce(z, y, beta)


def ref_nce_mae(z, y, alpha=1.0, beta=1.0):
    return alpha * ref_nce(z, y) + beta * ref_mae(z, y)


def ref_ngce(z, y, q=0.7, scale=1.0):
    t = (1 - torch.softmax(z, 1).clamp_min(P_MIN) ** q) / q
    return scale * (t * _onehot(z, y)).sum(1) / t.sum(1)


def ref_nfl(z, y, gamma=0.5, scale=1.0):
    logp = torch.log_softmax(z, 1)
    fl = -((1 - torch.softmax(z, 1)) ** gamma).detach() * logp  # the reference's detached factors
    return scale * (fl * _onehot(z, y)).sum(1) / fl.sum(1)


def ref_ldr(z, y, margin=0.1, temperature=10.0):
    f = F.softplus(z)
    zn = f / (f.sum(1, keepdim=True) / z.shape[1])
    oh = _onehot(z, y)
    d = (zn - (zn * oh).sum(1, keepdim=True) + margin) * (1 - oh)
    lam = temperature.unsqueeze(1) if isinstance(temperature, torch.Tensor) else temperature
    return temperature * (torch.logsumexp(d / lam, 1) - math.log(z.shape[1]))


def ref_logitclip(z, y, tau=1.0, eps=1e-7):
    n = z.norm(dim=1, keepdim=True) + eps
    zc = torch.where(n > 1 / tau, z / (tau * n), z)
    return -(torch.log_softmax(zc, 1) * _onehot(z, y)).sum(1)


def ref_poly1(z, y, epsilon=1.0):
    p = _p_y(z, y)
    return -torch.log(p) + epsilon * (1 - p)


def ref_encouraging(z, y, log_end=0.75):
    p = _p_y(z, y)
    bonus = torch.log((1 - p).clamp_min(1e-5))
    if log_end != 1.0:
        bonus = torch.where(p > log_end, (p - log_end) / (log_end - 1) + math.log(1 - log_end), bonus)
    return bonus - torch.log(p)


def ref_log_z_squared(z, y, coefficient=1e-4):
    lse = torch.logsumexp(z, 1)
    return lse - (z * _onehot(z, y)).sum(1) + coefficient * lse**2


def ref_squentropy(z, y):
    oh = _onehot(z, y)
    return -(torch.log_softmax(z, 1) * oh).sum(1) + (z**2 * (1 - oh)).sum(1) / (z.shape[1] - 1)


def ref_spherical(z, y, a=1.0, b=0.0, eps=1e-12):
    mu = z.mean(1)
    sigma = ((z - mu[:, None]) ** 2).mean(1).sqrt() + eps
    zc = ((z * _onehot(z, y)).sum(1) - mu) / sigma
    return F.softplus(a * (b - zc)) / a


def ref_asl_single(z, y, gamma_pos=0.0, gamma_neg=4.0, eps=0.1):
    oh = _onehot(z, y)
    p, logp = torch.softmax(z, 1), torch.log_softmax(z, 1)
    w = oh * (1 - p) ** gamma_pos + (1 - oh) * p**gamma_neg
    t = (1 - eps) * oh + eps / z.shape[1]
    return -(t * w * logp).sum(1)


# per-row references: (id, keywords, reference)
ROW_CASES: list[tuple[str, dict[str, Any], Callable[..., torch.Tensor]]] = [
    ("mae", {"scale": 2.5}, ref_mae),
    ("gce", {"q": 0.4}, ref_gce),
    ("alpha_loss", {"alpha": 0.6}, ref_alpha),
    ("alpha_loss", {"alpha": math.inf}, ref_alpha),
    ("taylor_ce", {"order": 4}, ref_taylor),
    ("rce", {"scale": 0.5, "log_zero": -4.0}, ref_rce),
    ("sce", {"alpha": 0.3, "beta": 2.0}, ref_sce),
    ("nce", {"scale": 3.0}, ref_nce),
    ("nce_rce", {"alpha": 2.0, "beta": 0.5}, ref_nce_rce),
    ("nce_mae", {"alpha": 0.5, "beta": 2.0}, ref_nce_mae),
    ("ngce", {"q": 0.3, "scale": 2.0}, ref_ngce),
    ("ngce", {"q": 1.0}, ref_ngce),
    ("nfl", {"gamma": 0.5}, ref_nfl),
    ("nfl", {"gamma": 2.0, "scale": 1.5}, ref_nfl),
    ("nfl", {"gamma": 1.3}, ref_nfl),
    ("ldr", {"margin": 0.3, "temperature": 2.0}, ref_ldr),
    ("logitclip", {"tau": 0.5, "eps": 1e-3}, ref_logitclip),
    ("poly1", {"epsilon": -0.5}, ref_poly1),
    ("encouraging", {"log_end": 0.6}, ref_encouraging),
    ("encouraging", {"log_end": 1.0}, ref_encouraging),
    ("log_z_squared", {"coefficient": 0.05}, ref_log_z_squared),
    ("squentropy", {}, ref_squentropy),
    ("spherical_z_loss", {"a": 2.0, "b": 0.5}, ref_spherical),
    ("asymmetric_single_label", {"gamma_pos": 0.5, "gamma_neg": 2.5, "eps": 0.2}, ref_asl_single),
    ("asymmetric_single_label", {"gamma_pos": 2.0, "gamma_neg": 4.0, "eps": 0.1}, ref_asl_single),
]

#: The ``grad_fn`` of each loss's fused output (CPU, logits that need a gradient): the fused
#: path is the one taken by default, not only when forced.
FUSED_NODE = {
    "mae": "_SoftmaxRowLoss", "gce": "_SoftmaxRowLoss", "alpha_loss": "_SoftmaxRowLoss", "taylor_ce": "_SoftmaxRowLoss",
    "poly1": "_SoftmaxRowLoss", "encouraging": "_SoftmaxRowLoss", "log_z_squared": "_SoftmaxRowLoss",
    "rce": "_NoiseMix", "sce": "_NoiseMix", "nce": "_NoiseMix", "nce_rce": "_NoiseMix", "nce_mae": "_NoiseMix",
    "active_passive": "_NoiseMix", "ngce": "_NormalisedGCE", "nfl": "_NormalisedFocal", "ldr": "_LDR",
    "logitclip": "_ClippedCE", "squentropy": "_Squentropy", "spherical_z_loss": "_SphericalZ",
    "asymmetric_single_label": "_AsymmetricSingleLabel", "dice": "_DiceLoss", "anyloss": "_AnyLoss",
    "correctness_aware": "_CorrectnessAware",
}


def _inputs(n: int, c: int, scale: float, seed: int = 0, ignore: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=DT) * scale
    y = torch.randint(0, c, (n,), generator=g)
    if ignore:
        y[1] = -100
    return z, y


def _value_and_grad(fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = z.detach().clone().requires_grad_()
    out = fn(z)
    (g,) = torch.autograd.grad(out.sum(), z)
    return out.detach(), g


def _reduce(losses: torch.Tensor, keep: torch.Tensor, reduction: str) -> torch.Tensor:
    losses = torch.where(keep, losses, 0.0)
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.sum() / keep.sum()


@pytest.mark.parametrize("path", ["plain", "fused"])
@pytest.mark.parametrize("reduction", ["mean", "none", "sum"])
@pytest.mark.parametrize("num_classes, scale", [(5, 3.0), (23, 3.0), (9, 12.0)])
@pytest.mark.parametrize("loss_id, kw, ref", ROW_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(ROW_CASES)])
def test_value_and_gradient_against_the_definition(loss_id, kw, ref, num_classes, scale, reduction, path):
    z, y = _inputs(7, num_classes, scale)
    keep = y != -100
    ys = torch.where(keep, y, 0)
    fn = getattr(LF, loss_id)
    with force_path(path):
        v, g = _value_and_grad(lambda t: fn(t, y, reduction=reduction, **kw), z)
    rv, rg = _value_and_grad(lambda t: _reduce(ref(t, ys, **kw), keep, reduction), z)
    torch.testing.assert_close(v, rv, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g, rg, rtol=1e-7, atol=1e-10)


CALIBRATION_ROWS = [("poly1", {"epsilon": 2.0}, ref_poly1), ("encouraging", {"log_end": 0.75}, ref_encouraging),
                    ("encouraging", {"log_end": 0.99995}, ref_encouraging), ("squentropy", {}, ref_squentropy),
                    ("spherical_z_loss", {"a": 1.5, "b": 0.3}, ref_spherical),
                    ("spherical_z_loss", {}, ref_spherical), ("log_z_squared", {"coefficient": 0.01},
                                                                                  ref_log_z_squared)]


@pytest.mark.parametrize("num_classes", [10, 100, 1000])
@pytest.mark.parametrize("loss_id, kw, ref", CALIBRATION_ROWS, ids=[f"{c[0]}-{i}" for i, c in enumerate(CALIBRATION_ROWS)])
def test_calibration_fused_rows_at_the_benchmarked_widths(loss_id, kw, ref, num_classes):
    # the default (fused) path at C = 10 / 100 / 1000 with an ignored row and rows whose p_y is within 1e-5 of 1
    # (encouraging's clamp and linear part), every reduction, against the float64 definition
    z, y = _inputs(12, num_classes, 4.0, seed=num_classes)
    z[2, y[2]] = 40.0
    z[3, y[3]] = z[3].max() + 12.0
    keep = y != -100
    for reduction in ("mean", "none", "sum"):
        v, g = _value_and_grad(lambda t: getattr(LF, loss_id)(t, y, reduction=reduction, **kw), z)
        rv, rg = _value_and_grad(lambda t: _reduce(ref(t, torch.where(keep, y, 0), **kw), keep, reduction), z)
        torch.testing.assert_close(v, rv, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(g, rg, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("num_classes", [4, 20])
@pytest.mark.parametrize("loss_id, kw, ref", [c for c in ROW_CASES if c[0] != "nfl"],
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(ROW_CASES) if c[0] != "nfl"])
def test_fused_gradcheck(loss_id, kw, ref, num_classes):
    # NFL's fused gradient is the reference's (factors detached), not the derivative of its value
    z, y = _inputs(5, num_classes, 2.0, seed=3)
    fn = getattr(LF, loss_id)
    with force_path("fused"):
        for reduction in ("mean", "none"):
            assert torch.autograd.gradcheck(lambda t: fn(t, y, reduction=reduction, **kw),
                                            (z.clone().requires_grad_(),))


@pytest.mark.parametrize("loss_id", sorted(FUSED_NODE))
def test_the_fused_path_is_the_default_on_cpu(loss_id):
    z, y = _inputs(6, 5, 2.0, ignore=False)
    z.requires_grad_()
    names = _node_names(la.create(loss_id)(z, y))  # the node may sit under the reduction (AnyLoss, Dice)
    assert FUSED_NODE[loss_id] + "Backward" in names, names
    with torch.no_grad():  # no gradient wanted: the composed ops (nothing kept for a backward)
        assert la.create(loss_id)(z, y).grad_fn is None


def test_ldr_per_sample_temperature():
    z, y = _inputs(6, 7, 2.0)
    lam = torch.linspace(0.2, 5.0, 6, dtype=DT)
    keep = y != -100
    ref = lambda t: _reduce(ref_ldr(t, torch.where(keep, y, 0), 0.2, lam), keep, "mean")  # noqa: E731
    rv, rg = _value_and_grad(ref, z)
    for path in ("plain", "fused"):
        with force_path(path):
            v, g = _value_and_grad(lambda t: LF.ldr(t, y, margin=0.2, temperature=lam), z)
        torch.testing.assert_close(v, rv, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(g, rg, rtol=1e-8, atol=1e-11)


def ref_aldr(z, y, prev, margin=0.1, temperature=10.0, alpha=2.0, softplus=False):
    """ALDR-KL from its definition: LDR's normalisation, the closed-form λ from the previous λ
    (detached), LDR's loss at λ minus the KL penalty. Returns (per-sample loss, λ)."""
    num_classes = z.shape[1]
    f = F.softplus(z) if softplus else z
    zn = f / (f.abs().sum(1, keepdim=True) / num_classes)
    q = torch.softmax(zn.detach() / prev.unsqueeze(1), 1) + 1e-5
    q = q / q.sum(1, keepdim=True)
    kl = (q * torch.log(num_classes * q)).sum(1)
    lam = (temperature - temperature * kl / (alpha * math.log(num_classes))).clamp_min(1e-6 * temperature)
    oh = _onehot(z, y)
    d = (zn - (zn * oh).sum(1, keepdim=True) + margin) * (1 - oh)
    loss = lam * (torch.logsumexp(d / lam.unsqueeze(1), 1) - math.log(num_classes))
    return loss - alpha * math.log(num_classes) / (2 * temperature) * (lam - temperature) ** 2, lam


@pytest.mark.parametrize("path", ["plain", "fused"])
@pytest.mark.parametrize("reduction", ["mean", "none", "sum"])
@pytest.mark.parametrize("softplus", [False, True])
@pytest.mark.parametrize("num_classes", [5, 10, 23, 100, 1000])
def test_aldr_value_gradient_and_state_against_the_definition(num_classes, softplus, reduction, path):
    z, y = _inputs(6, num_classes, 3.0, seed=num_classes, ignore=False)
    state = torch.linspace(0.5, 12.0, 9, dtype=DT)
    index = torch.tensor([7, 0, 3, 8, 1, 5])
    kw = {"margin": 0.3, "temperature": 7.0, "alpha": 1.5, "softplus": softplus}
    rl, rlam = ref_aldr(z, y, state[index], **kw)
    rv, rg = _value_and_grad(lambda t: _reduce(ref_aldr(t, y, state[index], **kw)[0], y >= 0, reduction), z)
    new_state = state.clone()
    with force_path(path):
        v, g = _value_and_grad(lambda t: LF.aldr(t, y, index=index, sample_temperature=new_state, reduction=reduction,
                                                 **kw), z)
    torch.testing.assert_close(v, rv, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g, rg, rtol=1e-8, atol=1e-11)
    expected = state.clone()
    expected[index] = rlam
    torch.testing.assert_close(new_state, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("softplus", [False, True])
@pytest.mark.parametrize("num_classes", [4, 20])
def test_ldr_fused_gradcheck(num_classes, softplus):
    # (ALDR's gradient holds its λ fixed, detached as the definition does: not the derivative of
    # its value, so it is checked against the reference above instead; at a fixed λ it is LDR's)
    z, y = _inputs(5, num_classes, 2.0, seed=5, ignore=False)
    with force_path("fused"):
        for reduction in ("mean", "none"):
            assert torch.autograd.gradcheck(lambda t: LF.ldr(t, y, softplus=softplus, reduction=reduction, margin=0.2,
                                                             temperature=torch.linspace(0.5, 3.0, 5, dtype=DT)),
                                            (z.clone().requires_grad_(),))


@pytest.mark.parametrize("softplus", [False, True])
@pytest.mark.parametrize("num_classes", [10, 100, 1000])
def test_ldr_and_aldr_edge_rows_are_the_same_on_both_paths(num_classes, softplus):
    # an all-zero row (without softplus LDR's 0/0: loss from 0 logits, zero gradient), exact zeros (|z|'s kink),
    # logits above softplus's threshold 20 (z itself there), an ignored row (LDR), an empty batch
    z, y = _inputs(6, num_classes, 3.0, seed=1)
    z[2] = 0.0
    z[3, :3] = 0.0
    z[4, 1] = 25.0
    z[5, 0] = 21.0
    state = torch.linspace(0.5, 12.0, 6, dtype=DT)
    ya = torch.where(y >= 0, y, 0)
    for reduction in ("mean", "none"):
        for n in (6, 0):
            res = []
            for path in ("plain", "fused"):
                st = state[:n].clone()
                with force_path(path):
                    res.append(_value_and_grad(lambda t: LF.ldr(t, y[:n], softplus=softplus, reduction=reduction)
                                               + 2.0 * LF.aldr(t, ya[:n], sample_temperature=st, softplus=softplus,
                                                               reduction=reduction), z[:n]) + (st,))
            for a, b in zip(*res):
                torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
            if n and not softplus:  # the all-zero row: LDR's 0/0 has a zero gradient
                assert torch.equal(res[1][1][2], torch.zeros(num_classes, dtype=DT))


def test_aldr_fused_path_is_the_default_on_cpu():
    z, y = _inputs(6, 5, 2.0, ignore=False)
    z.requires_grad_()
    crit = la.create("aldr", num_samples=6)
    assert "_LDRBackward" in _node_names(crit(z, y, index=torch.arange(6)))
    assert "_LDRBackward" in _node_names(la.create("ldr", softplus=False)(z, y))


@pytest.mark.parametrize("loss_id", ["nce", "nce_rce", "rce", "ngce", "nfl", "asymmetric_single_label", "log_z_squared"])
def test_a_masked_class_is_the_same_on_both_paths(loss_id):
    z, y = _inputs(5, 6, 2.0, ignore=False)
    z[:, 3] = -math.inf
    y = torch.where(y == 3, 0, y)
    fn = getattr(LF, loss_id)
    res = []
    for path in ("plain", "fused"):
        with force_path(path):
            res.append(_value_and_grad(lambda t: fn(t, y, reduction="none"), z))
    (v0, g0), (v1, g1) = res
    torch.testing.assert_close(v1, v0, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g1, g0, rtol=1e-9, atol=1e-12)
    assert torch.equal(g1[:, 3], torch.zeros(5, dtype=DT))


# ------------------------------------------------------------------ active-passive
@pytest.mark.parametrize("active, passive, akw, pkw, ref", [
    ("nce", "rce", None, None, lambda z, y: ref_nce(z, y) * 2.0 + ref_rce(z, y) * 0.5),
    ("nce", "mae", {"scale": 3.0}, {"scale": 0.5}, lambda z, y: ref_nce(z, y, 3.0) * 2.0 + ref_mae(z, y, 0.5) * 0.5),
    ("mae", "rce", None, {"log_zero": -2.0}, lambda z, y: ref_mae(z, y) * 2.0 + ref_rce(z, y, 1.0, -2.0) * 0.5),
    ("ngce", "rce", {"q": 0.3}, None, lambda z, y: ref_ngce(z, y, 0.3) * 2.0 + ref_rce(z, y) * 0.5),  # not fused
])
def test_active_passive_pairs(active, passive, akw, pkw, ref):
    z, y = _inputs(7, 6, 3.0)
    keep = y != -100
    rv, rg = _value_and_grad(lambda t: _reduce(ref(t, torch.where(keep, y, 0)), keep, "mean"), z)
    for path in ("plain", "fused"):
        with force_path(path):
            v, g = _value_and_grad(lambda t: LF.active_passive(t, y, active=active, passive=passive, alpha=2.0, beta=0.5,
                                                               active_kwargs=akw, passive_kwargs=pkw), z)
        torch.testing.assert_close(v, rv, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(g, rg, rtol=1e-8, atol=1e-11)


MIX_CASES = [c for c in ROW_CASES if c[0] in ("rce", "sce", "nce", "nce_rce", "nce_mae", "logitclip", "ngce")]


@pytest.mark.parametrize("clamped", [False, True])
@pytest.mark.parametrize("num_classes", [2, 15, 16, 40])
@pytest.mark.parametrize("loss_id, kw, ref", MIX_CASES, ids=[c[0] for c in MIX_CASES])
def test_noise_mix_both_softmax_forms_and_both_rce_forms(loss_id, kw, ref, num_classes, clamped):
    # below 16 classes p comes from a log-softmax, from 16 on from a softmax; without a probability
    # below 1e-7 RCE is computed as 1 − p_y and NGCE keeps every p^q, with one the clamped forms run
    z, y = _inputs(9, num_classes, 14.0 if clamped else 0.5, seed=5)
    assert bool((torch.softmax(z, 1) < P_MIN).any()) == clamped
    keep = y != -100
    rv, rg = _value_and_grad(lambda t: _reduce(ref(t, torch.where(keep, y, 0), **kw), keep, "mean"), z)
    with force_path("fused"):
        v, g = _value_and_grad(lambda t: getattr(LF, loss_id)(t, y, **kw), z)
        for reduction in ("mean", "none"):
            assert torch.autograd.gradcheck(lambda t: getattr(LF, loss_id)(t, y, reduction=reduction, **kw),
                                            (z.clone().requires_grad_(),))
    torch.testing.assert_close(v, rv, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g, rg, rtol=1e-7, atol=1e-10)


TRACED_ROW_CASES = [("mae", {"scale": 2.5}), ("gce", {"q": 0.4}), ("alpha_loss", {"alpha": 1.0}),
                    ("alpha_loss", {"alpha": 0.6}), ("taylor_ce", {"order": 3}), ("nce", {}), ("rce", {}),
                    ("sce", {}), ("nce_rce", {}), ("nce_mae", {}), ("active_passive", {})]


@pytest.mark.parametrize("num_classes", [10, 1000])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("loss_id, kw", TRACED_ROW_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(TRACED_ROW_CASES)])
def test_traced_forms_keep_unblanked_ignored_rows_out(loss_id, kw, reduction, num_classes):
    # Under torch.compile the traced kernels take ignored rows' logits as they are (not blanked):
    # all -inf, -inf but one column, a large logit there; values and gradients equal eager's
    # (float64; eager blanks those rows), finite, 0 on the ignored rows
    torch._dynamo.reset()
    z, y = _inputs(9, num_classes, 3.0, seed=num_classes)
    y[2], y[4], y[6] = -100, -100, -100
    z[2] = -math.inf
    z[4, :-1] = -math.inf
    z[6, 1] = 60.0
    fn = getattr(LF, loss_id)
    rv, rg = _value_and_grad(lambda t: fn(t, y, reduction=reduction, validate=False, **kw), z)
    compiled = torch.compile(lambda t: fn(t, y, reduction=reduction, validate=False, **kw), backend="aot_eager",
                             fullgraph=True)
    v, g = _value_and_grad(compiled, z)
    torch.testing.assert_close(v, rv, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g, rg, rtol=1e-10, atol=1e-12)
    assert bool(torch.isfinite(g).all()) and bool((g[[2, 4, 6]] == 0).all())


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("loss_id, kw, ref", [c for c in MIX_CASES if c[0] not in ("logitclip", "ngce")],
                         ids=[c[0] for c in MIX_CASES if c[0] not in ("logitclip", "ngce")])
def test_noise_mix_traced_form_under_torch_compile(loss_id, kw, ref, reduction):
    # torch.compile (Dynamo + AOTAutograd, no code generation) takes _TracedNoiseMix: against the
    # float64 definition with an ignored row and logits that reach RCE's clamp, values and gradients
    torch._dynamo.reset()
    z, y = _inputs(9, 7, 14.0, seed=6)
    assert bool((torch.softmax(z, 1) < P_MIN).any())
    keep = y != -100
    rv, rg = _value_and_grad(lambda t: _reduce(ref(t, torch.where(keep, y, 0), **kw), keep, reduction), z)
    fn = torch.compile(lambda t: getattr(LF, loss_id)(t, y, reduction=reduction, validate=False, **kw),
                       backend="aot_eager", fullgraph=True)
    v, g = _value_and_grad(fn, z)
    torch.testing.assert_close(v, rv, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g, rg, rtol=1e-7, atol=1e-10)
    names = []
    with torch._dynamo.config.patch(verbose=False):
        from torch._dynamo.testing import CompileCounterWithBackend
        counter = CompileCounterWithBackend("aot_eager")
        torch._dynamo.reset()
        out = torch.compile(lambda t: getattr(LF, loss_id)(t, y, validate=False, **kw), backend=counter,
                            fullgraph=True)(z.clone().requires_grad_())
        names = [str(n.target) for gm in counter.graphs for n in gm.graph.nodes]
    assert out.requires_grad and any("TracedNoiseMix" in n or "autograd_function_apply" in n for n in names), names


def test_noise_mix_without_ignored_rows_and_one_class():
    # nothing ignored: no mask is built (the lazy mask); one class: NCE is 0 with a zero gradient
    z, y = _inputs(6, 7, 2.0, ignore=False)
    rv, rg = _value_and_grad(lambda t: ref_nce_rce(t, y, 2.0, 0.5).mean(), z)
    with force_path("fused"):
        v, g = _value_and_grad(lambda t: LF.nce_rce(t, y, alpha=2.0, beta=0.5), z)
        v1, g1 = _value_and_grad(lambda t: LF.nce_mae(t, torch.zeros(6, dtype=torch.long), reduction="sum"), z[:, :1])
    torch.testing.assert_close(v, rv, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g, rg, rtol=1e-8, atol=1e-11)
    assert v1.item() == 0.0 and torch.equal(g1, torch.zeros_like(g1))


@pytest.mark.parametrize("path", ["plain", "fused"])
def test_active_passive_part_options_are_checked_on_both_paths(path):
    z, y = _inputs(4, 3, 1.0, ignore=False)
    with force_path(path):
        with pytest.raises(ValueError, match="log_zero"):
            LF.active_passive(z, y, passive="rce", passive_kwargs={"log_zero": 1.0})
        with pytest.raises(TypeError):
            LF.active_passive(z, y, active="nce", active_kwargs={"no_such": 1.0})


# --------------------------------------------------------------------- logit clip
def test_logitclip_with_a_weighted_cross_entropy_base_is_not_fused():
    # class weights are not part of the fused clipped cross-entropy: the composed ops run
    z, y = _inputs(6, 4, 3.0, ignore=False)
    w = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=DT)
    crit = la.create("logitclip", base="cross_entropy", base_kwargs={"weight": w})
    zz = z.clone().requires_grad_()
    out = crit(zz, y)
    n = z.norm(dim=1, keepdim=True) + 1e-7
    zc = torch.where(n > 1.0, z / n, z)
    torch.testing.assert_close(out.detach(), F.cross_entropy(zc, y, weight=w), rtol=1e-10, atol=1e-12)
    assert "_ClippedCE" not in type(out.grad_fn).__name__


def test_logitclip_module_with_a_hooked_base_runs_the_hook():
    z, y = _inputs(6, 4, 3.0, ignore=False)
    crit = la.create("logitclip")
    calls = []
    crit.base.register_forward_pre_hook(lambda mod, inp: calls.append(1))
    crit(z.clone().requires_grad_(), y)
    assert calls == [1]


# ------------------------------------------------------------------------- AnyLoss
def ref_anyloss(z, y, metric="f_beta", beta=1.0, amplifier=73.0):
    oh = _onehot(z, y)
    yhat = torch.sigmoid(amplifier * (torch.softmax(z, 1) - 0.5))
    tp = (oh * yhat).sum(0)
    fn = (oh * (1 - yhat)).sum(0)
    fp = ((1 - oh) * yhat).sum(0)
    tn = ((1 - oh) * (1 - yhat)).sum(0)
    if metric == "accuracy":
        score = (tp + tn) / (tp + tn + fp + fn)
    elif metric == "f_beta":
        score = (1 + beta**2) * tp / ((1 + beta**2) * tp + beta**2 * fn + fp)
    else:
        tpr, tnr = tp / (tp + fn), tn / (tn + fp)
        score = (tpr + tnr) / 2 if metric == "balanced_accuracy" else (tpr * tnr).sqrt()
    return (1 - score).mean()


@pytest.mark.parametrize("num_classes", [3, 17])
@pytest.mark.parametrize("metric, kw", [("f_beta", {"beta": 2.0}), ("accuracy", {}), ("gmean", {"amplifier": 5.0}),
                                        ("balanced_accuracy", {})])
def test_anyloss_against_the_definition(metric, kw, num_classes):
    g = torch.Generator().manual_seed(5)
    z = torch.randn(3 * num_classes, num_classes, generator=g, dtype=DT) * 2
    y = torch.arange(3 * num_classes) % num_classes  # every class present: every ratio defined
    rv, rg = _value_and_grad(lambda t: ref_anyloss(t, y, metric, **kw), z)
    for path in ("plain", "fused"):
        with force_path(path):
            v, gz = _value_and_grad(lambda t: LF.anyloss(t, y, metric=metric, **kw), z)
        torch.testing.assert_close(v, rv, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(gz, rg, rtol=1e-8, atol=1e-11)
    with force_path("fused"):
        assert torch.autograd.gradcheck(lambda t: LF.anyloss(t, y[:9], metric=metric, **kw), (z[:9].clone().requires_grad_(),))


@pytest.mark.parametrize("num_classes, n, metrics", [
    (10, 40, ("f_beta", "accuracy", "gmean", "balanced_accuracy")),
    (100, 200, ("f_beta", "accuracy", "gmean", "balanced_accuracy")),
    (1000, 48, ("f_beta", "accuracy")),  # most classes absent: F_β's and accuracy's denominators stay > 0
])
def test_anyloss_fused_at_the_benchmarked_widths(num_classes, n, metrics):
    # _AnyLoss (the fused path, the default on CPU) against the definition at C = 10 / 100 / 1000, all
    # reductions ("none": the batch loss per sample; "sum": N times it)
    g = torch.Generator().manual_seed(num_classes)
    z = torch.randn(n, num_classes, generator=g, dtype=DT) * 2
    y = torch.arange(n) % num_classes
    for metric in metrics:
        rv, rg = _value_and_grad(lambda t: ref_anyloss(t, y, metric, beta=0.7), z)
        for reduction, k in (("mean", 1), ("sum", n), ("none", n)):
            v, gz = _value_and_grad(lambda t: LF.anyloss(t, y, metric=metric, beta=0.7, reduction=reduction), z)
            torch.testing.assert_close(v.sum(), rv * k, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(gz, rg * k, rtol=1e-8, atol=1e-11)
    zc = z[:6, :10].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: LF.anyloss(t, y[:6] % 10, metric="gmean", reduction="none"), (zc,))


def test_anyloss_fused_absent_class_rates_are_zero():
    # a class absent from the batch: TPR 0 / 0 is 0 with no gradient (safe_ratio), on both paths alike
    g = torch.Generator().manual_seed(9)
    z = torch.randn(12, 6, generator=g, dtype=DT) * 2
    y = torch.arange(12) % 4  # classes 4 and 5 absent
    for metric in ("gmean", "balanced_accuracy", "f_beta", "accuracy"):
        with force_path("plain"):
            rv, rg = _value_and_grad(lambda t: LF.anyloss(t, y, metric=metric), z)
        with force_path("fused"):
            v, gz = _value_and_grad(lambda t: LF.anyloss(t, y, metric=metric), z)
        assert torch.isfinite(gz).all()
        torch.testing.assert_close(v, rv, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(gz, rg, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_anyloss_traced_form_under_torch_compile(reduction):
    # torch.compile (Dynamo + AOTAutograd) takes _AnyLoss's traced form (class counts by index_add):
    # against the float64 definition, a class absent from the batch included (F_β)
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(8)
    z = torch.randn(14, 6, generator=g, dtype=DT) * 2
    y = torch.arange(14) % 5
    rv, rg = _value_and_grad(lambda t: ref_anyloss(t, y, "f_beta", beta=2.0), z)
    fn = torch.compile(lambda t: LF.anyloss(t, y, beta=2.0, reduction=reduction, validate=False),
                       backend="aot_eager", fullgraph=True)
    v, gz = _value_and_grad(fn, z)
    k = 14 if reduction == "none" else 1
    torch.testing.assert_close(v.sum(), rv * k, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gz, rg * k, rtol=1e-8, atol=1e-11)


# ------------------------------------------------------------------- correctness-aware
def ref_correctness_aware(z, y, keep, balance, reduction):
    """(max softmax − 1[argmax = y])², rows weighted n / (G n_group) (G non-empty groups) when balanced."""
    conf = torch.softmax(z, 1).amax(1)
    correct = (z.argmax(1) == y) & keep
    losses = (conf - correct.double()) ** 2
    n = int(keep.sum())
    if balance:
        n_c = int(correct.sum())
        sizes = {True: n_c, False: n - n_c}
        groups = sum(1 for v in sizes.values() if v)
        w = torch.tensor([n / (groups * sizes[bool(c)]) if k else 0.0 for c, k in zip(correct, keep)], dtype=DT)
    else:
        w = keep.double()
    if reduction == "none":
        return w * losses
    total = (w * losses).sum()
    return total if reduction == "sum" else total / max(float(w.sum()), 1.0)


@pytest.mark.parametrize("balance", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "none", "sum"])
@pytest.mark.parametrize("num_classes", [10, 100, 1000])
def test_correctness_aware_fused_against_the_definition(num_classes, reduction, balance):
    g = torch.Generator().manual_seed(num_classes + 1)
    n = 30
    z = torch.randn(n, num_classes, generator=g, dtype=DT) * 3
    y = torch.randint(0, num_classes, (n,), generator=g)
    y[: n // 3] = z[: n // 3].argmax(1)  # a third correct
    z[3] = 0.0  # all tied: amax splits the gradient over the C classes
    z[4, :2] = z[4].max() + 1.0  # two tied largest logits
    z[5, 7] = -math.inf  # a masked class
    for ignored in (False, True):
        yy = y.clone()
        if ignored:
            yy[[1, 8, 20]] = -100
        keep = yy != -100
        ys = torch.where(keep, yy, 0)
        rv, rg = _value_and_grad(lambda t: ref_correctness_aware(t, ys, keep, balance, reduction), z)
        for path in ("plain", "fused"):
            with force_path(path):
                v, gz = _value_and_grad(lambda t: LF.correctness_aware(t, yy, balance=balance, reduction=reduction), z)
            torch.testing.assert_close(v, rv, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(gz, rg, rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("reduction", ["mean", "none", "sum"])
def test_correctness_aware_traced_form_under_torch_compile(reduction):
    # torch.compile (Dynamo + AOTAutograd) takes _CorrectnessAware's traced form (no host reads): against the
    # float64 definition with a tied row, an ignored row and both balance settings
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(12)
    z = torch.randn(16, 7, generator=g, dtype=DT) * 2
    y = torch.randint(0, 7, (16,), generator=g)
    y[:6] = z[:6].argmax(1)
    z[2] = 0.5  # all tied
    y[9] = -100
    keep = y != -100
    for balance in (True, False):
        rv, rg = _value_and_grad(lambda t: ref_correctness_aware(t, torch.where(keep, y, 0), keep, balance, reduction), z)
        fn = torch.compile(lambda t: LF.correctness_aware(t, y, balance=balance, reduction=reduction, validate=False),
                           backend="aot_eager", fullgraph=True)
        v, gz = _value_and_grad(fn, z)
        torch.testing.assert_close(v, rv, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(gz, rg, rtol=1e-8, atol=1e-11)


def test_correctness_aware_fused_one_group_empty_batch_and_gradcheck():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(9, 5, generator=g, dtype=DT)
    for y in (z.argmax(1), (z.argmax(1) + 1) % 5, torch.full((9,), -100)):  # all correct, all wrong, all ignored
        keep = y != -100
        ys = torch.where(keep, y, 0)
        for reduction in ("mean", "sum", "none"):
            rv, rg = _value_and_grad(lambda t: ref_correctness_aware(t, ys, keep, True, reduction), z)
            with force_path("fused"):
                v, gz = _value_and_grad(lambda t: LF.correctness_aware(t, y, reduction=reduction), z)
            torch.testing.assert_close(v, rv, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(gz, rg, rtol=1e-8, atol=1e-11)
    with force_path("fused"):
        empty = torch.zeros(0, 5, dtype=DT, requires_grad=True)
        out = LF.correctness_aware(empty, torch.zeros(0, dtype=torch.long))
        assert out.item() == 0.0
        out.backward()
        y = torch.randint(0, 5, (9,), generator=g)
        for reduction in ("mean", "none"):
            for balance in (True, False):
                assert torch.autograd.gradcheck(
                    lambda t: LF.correctness_aware(t, y, balance=balance, reduction=reduction), (z.clone().requires_grad_(),))


# ---------------------------------------------------------------------------- Dice
def ref_dice_batch(z, y, keep, alpha=0.01, smooth=1e-4, square=False):
    oh = _onehot(z, y) * keep[:, None]
    p = torch.softmax(z, 1)
    q = (1 - p) ** alpha * p * keep[:, None]
    qk, yk = (q * q, oh * oh) if square else (q, oh)
    den = qk.sum(0) + yk.sum(0) + smooth
    return (1 - (2 * q * oh + smooth) / den).sum(1)


@pytest.mark.parametrize("path", ["plain", "fused"])
@pytest.mark.parametrize("kw", [{}, {"alpha": 0.0}, {"alpha": 1.5, "smooth": 0.1}, {"alpha": 0.3, "denominator": "batch",
                                                                                     "square_denominator": True}])
@pytest.mark.parametrize("num_classes", [5, 19])
def test_dice_batch_denominator_against_the_definition(kw, num_classes, path):
    z, y = _inputs(8, num_classes, 2.0)
    keep = y != -100
    ys = torch.where(keep, y, 0)
    alpha, smooth = kw.get("alpha", 0.01), kw.get("smooth", 1e-4)
    for reduction in ("mean", "none"):
        rv, rg = _value_and_grad(lambda t: _reduce(ref_dice_batch(t, ys, keep.to(DT), alpha, smooth,
                                                                  kw.get("square_denominator", False)), keep, reduction), z)
        with force_path(path):
            v, g = _value_and_grad(lambda t: LF.dice(t, y, reduction=reduction, **kw), z)
        torch.testing.assert_close(v, rv, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(g, rg, rtol=1e-8, atol=1e-11)
    with force_path("fused"):
        assert torch.autograd.gradcheck(lambda t: LF.dice(t, y, **kw), (z.clone().requires_grad_(),))


# ------------------------------------------- Dice and single-label ASL under torch.compile
TRACED_SOFTMAX_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("dice", {}, "_TracedDiceLoss"),
    ("dice", {"alpha": 0.0}, "_TracedDiceLoss"),
    ("dice", {"alpha": 1.5, "smooth": 0.1}, "_TracedDiceLoss"),
    ("dice", {"alpha": 0.3, "denominator": "batch", "square_denominator": True}, "_TracedDiceLoss"),
    ("asymmetric_single_label", {}, "_TracedAsymmetricSingleLabel"),
    ("asymmetric_single_label", {"gamma_pos": 0.5, "gamma_neg": 2.5, "eps": 0.2}, "_TracedAsymmetricSingleLabel"),
    ("asymmetric_single_label", {"gamma_pos": 2.0, "gamma_neg": 0.0, "eps": 0.0}, "_TracedAsymmetricSingleLabel"),
    ("asymmetric_single_label", {"gamma_pos": 1.0, "gamma_neg": 3.0}, "_TracedAsymmetricSingleLabel"),
]


def _traced_softmax_reference(loss_id: str, kw: dict[str, Any]) -> Callable[..., torch.Tensor]:
    if loss_id == "asymmetric_single_label":
        return lambda t, ys, keep: ref_asl_single(t, ys, **kw)
    return lambda t, ys, keep: ref_dice_batch(t, ys, keep.to(DT), kw.get("alpha", 0.01), kw.get("smooth", 1e-4),
                                              kw.get("square_denominator", False))


@pytest.mark.parametrize("num_classes", [10, 100, 1000])
@pytest.mark.parametrize("loss_id, kw, node", TRACED_SOFTMAX_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(TRACED_SOFTMAX_CASES)])
def test_traced_softmax_forms_under_torch_compile(loss_id, kw, node, num_classes):
    # torch.compile (Dynamo + AOTAutograd, no code generation) takes the traced Function: values
    # and gradients against the float64 definition with an ignored row, every reduction
    z, y = _inputs(12, num_classes, 3.0, seed=4)
    keep = y != -100
    ys = torch.where(keep, y, 0)
    ref = _traced_softmax_reference(loss_id, kw)
    for reduction in ("mean", "sum", "none"):
        _compiled_matches(lambda t: getattr(LF, loss_id)(t, y, reduction=reduction, validate=False, **kw),
                          lambda t: _reduce(ref(t, ys, keep), keep, reduction), z, 1e-10, 1e-8)
    names = _compiled_graph_targets(lambda t: getattr(LF, loss_id)(t, y, validate=False, **kw), z)
    assert any(node in n or "autograd_function_apply" in n for n in names), names


def _compiled_matches(loss: Callable[[torch.Tensor], torch.Tensor], ref: Callable[[torch.Tensor], torch.Tensor],
                      z: torch.Tensor, rtol: float, grad_rtol: float) -> None:
    """``loss`` under torch.compile (Dynamo + AOTAutograd, fullgraph) against ``ref``: values and gradients."""
    torch._dynamo.reset()
    rv, rg = _value_and_grad(ref, z)
    v, g = _value_and_grad(torch.compile(loss, backend="aot_eager", fullgraph=True), z)
    torch.testing.assert_close(v, rv, rtol=rtol, atol=1e-12)
    torch.testing.assert_close(g, rg, rtol=grad_rtol, atol=1e-10 if grad_rtol >= 1e-7 else 1e-11)


def _compiled_graph_targets(loss: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> list[str]:
    """The targets of the nodes of the graphs Dynamo captures for ``loss`` (fullgraph)."""
    from torch._dynamo.testing import CompileCounterWithBackend
    counter = CompileCounterWithBackend("aot_eager")
    torch._dynamo.reset()
    torch.compile(loss, backend=counter, fullgraph=True)(z.clone().requires_grad_())
    return [str(n.target) for gm in counter.graphs for n in gm.graph.nodes]


def test_traced_softmax_forms_without_an_ignore_index_and_with_a_masked_class():
    # ignore_index=None (no row weights in the traced Dice sums) and a -inf logit (a masked class)
    z, y = _inputs(9, 6, 2.0, seed=5, ignore=False)
    z[0, (int(y[0]) + 1) % 6] = -math.inf
    keep = torch.ones(9, dtype=torch.bool)
    for loss_id, kw, _ in (TRACED_SOFTMAX_CASES[0], TRACED_SOFTMAX_CASES[4], TRACED_SOFTMAX_CASES[6]):
        torch._dynamo.reset()
        with force_path("plain"):
            rv, rg = _value_and_grad(lambda t: getattr(LF, loss_id)(t, y, ignore_index=None, **kw), z)
        fn = torch.compile(lambda t: getattr(LF, loss_id)(t, y, ignore_index=None, validate=False, **kw),
                           backend="aot_eager", fullgraph=True)
        v, g = _value_and_grad(fn, z)
        assert torch.isfinite(v).all() and torch.isfinite(g).all()
        torch.testing.assert_close(v, rv, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(g, rg, rtol=1e-8, atol=1e-11)
    del keep


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_traced_softmax_functions_gradcheck(reduction):
    # the traced Functions run eagerly too (their buffers are then plain tensors): float64 gradcheck
    from lossatlas.functional import multilabel as ML
    z, y = _inputs(6, 7, 2.0, seed=7, ignore=False)
    idx = y.unsqueeze(1)
    keep = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0, 1.0], dtype=DT)
    for alpha, square in ((0.01, False), (0.3, True), (1.5, False), (0.0, False)):
        def sums(t, alpha=alpha, square=square):
            s, qy = ML._traced_dice_sums(t, idx, keep, alpha, square)
            return s.sum() * 0.7 + (qy * torch.linspace(0.5, 2.0, 6, dtype=DT)).sum()
        assert torch.autograd.gradcheck(sums, (z.clone().requires_grad_(),))
        if reduction != "none":  # the reduced loss with its gradient built in the forward
            for rows in (keep, None):
                assert torch.autograd.gradcheck(lambda t, rows=rows, alpha=alpha, square=square: ML._traced_dice_loss(
                    t, y, rows, alpha, 0.1, square, reduction), (z.clone().requires_grad_(),))
    for gp, gn, eps in ((0.0, 4.0, 0.1), (0.5, 2.5, 0.2), (2.0, 0.0, 0.0)):
        assert torch.autograd.gradcheck(lambda t: ML._asl_single_traced(t, idx, gp, gn, eps, keep, reduction),
                                        (z.clone().requires_grad_(),))


# -------------------------------------------------------------- shared pieces
@pytest.mark.parametrize("num_classes", [1, 3, 15, 16, 40])
def test_softmax_rows_equal_torch(num_classes):
    z = torch.randn(33, num_classes, dtype=torch.float32) * 3
    z[0, 0] = -math.inf if num_classes > 1 else z[0, 0]
    torch.testing.assert_close(softmax_rows(z), torch.softmax(z, 1), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(log_softmax_rows(z), torch.log_softmax(z, 1), rtol=1e-6, atol=1e-6)
    zz = z.clone().double().requires_grad_()
    (g,) = torch.autograd.grad((log_softmax_rows(zz) * torch.arange(num_classes)).sum(), zz)
    zz2 = z.clone().double().requires_grad_()
    (g2,) = torch.autograd.grad((torch.log_softmax(zz2, 1) * torch.arange(num_classes)).sum(), zz2)
    torch.testing.assert_close(g, g2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_threshold_at_next_below_is_a_clamp_mask(dtype):
    v = 1e-7
    at = torch.tensor(v, dtype=dtype)
    below = torch.nextafter(at, torch.zeros_like(at))
    above = torch.nextafter(at, torch.ones_like(at))
    x = torch.stack([below, at, above, torch.zeros_like(at), torch.ones_like(at)])
    kept = F.threshold(x, next_below(v, dtype), 0.0)
    assert torch.equal(kept != 0, x >= v), (x, kept)


# ------------------------------------------------- the numeric guards on each path
GUARDS = [
    G.test_gce_clamps_p_y_at_1e_minus_7, G.test_ngce_clamps_every_probability_at_1e_minus_7,
    G.test_rce_softmax_clamp_and_log_of_zero, G.test_normalised_losses_with_a_zero_normaliser,
    G.test_logitclip_norm_clip_with_eps, G.test_encouraging_bonus_clamp, G.test_spherical_z_loss_sigma_of_equal_logits,
    G.test_anyloss_class_absent_from_the_batch, G.test_asymmetric_single_label_gamma_pos_below_one_and_masked_class,
    G.test_dice_alpha_below_one_where_p_rounds_to_one,
]


def _guard_cases() -> list[Any]:
    out = []
    for fn in GUARDS:
        marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
        if not marks:
            out.append(pytest.param(fn, {}, id=fn.__name__))
            continue
        (mark,) = marks
        names = [n.strip() for n in mark.args[0].split(",")]
        for i, values in enumerate(mark.args[1]):
            values = values if len(names) > 1 else (values,)
            out.append(pytest.param(fn, dict(zip(names, values)), id=f"{fn.__name__}-{i}"))
    return out


@pytest.mark.parametrize("path", ["plain", "fused"])
@pytest.mark.parametrize("guard, kw", _guard_cases())
def test_numeric_guards_on_each_path(guard, kw, path):
    with mpmath.mp.workdps(50), force_path(path):
        guard(**kw)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 1.5, 2.0])
def test_dice_where_p_rounds_to_one(alpha):
    # 1 − p = 0 in float64 in the first row: the fused path's power of (1 − p) takes its exact branch
    z = torch.tensor([[0.0, -800.0, -800.0], [0.3, 0.1, -0.2], [-0.5, 0.2, 0.9]], dtype=DT)
    y = torch.tensor([0, 2, 1])
    keep = torch.ones(3, dtype=DT)
    if alpha >= 1.0:  # no clamp: the definition differentiates as written
        rv, rg = _value_and_grad(lambda t: ref_dice_batch(t, y, keep, alpha), z)
    res = []
    for path in ("plain", "fused"):
        with force_path(path):
            res.append(_value_and_grad(lambda t: LF.dice(t, y, alpha=alpha, denominator="batch", reduction="none"), z))
    (v0, g0), (v1, g1) = res
    torch.testing.assert_close(v1, v0, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g1, g0, rtol=1e-9, atol=1e-12)
    assert torch.isfinite(g1).all()
    if alpha >= 1.0:
        torch.testing.assert_close(v1, rv, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(g1, rg, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ sigmoid (multi-label) losses
def ref_sigmoid_focal(z, y, alpha=0.25, gamma=2.0):
    """Lin et al.'s α_t (1 − p_t)^γ · BCE, with 1 − p_t = y σ(−z) + (1 − y) σ(z)."""
    ce = torch.logaddexp(torch.zeros_like(z), z) - y * z  # −[y log σ(z) + (1 − y) log σ(−z)]
    q = y * torch.sigmoid(-z) + (1 - y) * torch.sigmoid(z)
    out = ce * q**gamma
    return out if alpha is None else out * (alpha * y + (1 - alpha) * (1 - y))


def _multilabel_inputs(n: int, c: int, scale: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits with ±40 entries on both kinds of target, a multi-hot target with one soft row, a 0/1 mask."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=DT) * scale
    y = (torch.rand(n, c, generator=g) < 0.4).to(DT)
    z[0, :4] = torch.tensor([40.0, -40.0, 40.0, -40.0], dtype=DT)
    y[0, :4] = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=DT)
    y[2] = torch.rand(c, generator=g, dtype=DT)
    m = (torch.rand(n, c, generator=g) < 0.8).to(DT)
    return z, y, m


def _masked_reduce(losses: torch.Tensor, m: torch.Tensor | None, reduction: str) -> torch.Tensor:
    if m is not None:
        losses = losses * m
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.sum() / (losses.numel() if m is None else m.sum())


def _check_elementwise(fn: Callable[[torch.Tensor], torch.Tensor], ref: Callable[[torch.Tensor], torch.Tensor],
                       z: torch.Tensor, path: str) -> None:
    """``fn`` on ``path`` against the reference (values and gradients), and against the other path."""
    with force_path(path):
        v, g = _value_and_grad(fn, z)
    rv, rg = _value_and_grad(ref, z)
    torch.testing.assert_close(v, rv, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g, rg, rtol=1e-7, atol=1e-10)
    with force_path("plain" if path == "fused" else "fused"):  # the two paths: the same numbers
        v2, g2 = _value_and_grad(fn, z)
    torch.testing.assert_close(v, v2, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g, g2, rtol=1e-12, atol=1e-14)


FOCAL_KW = [dict(alpha=0.25, gamma=2.0), dict(alpha=None, gamma=0.0), dict(alpha=0.6, gamma=0.5),
            dict(alpha=None, gamma=1.0), dict(alpha=0.9, gamma=3.5)]


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("path", ["plain", "fused"])
@pytest.mark.parametrize("reduction", ["mean", "none", "sum"])
@pytest.mark.parametrize("kw", FOCAL_KW, ids=str)
def test_sigmoid_focal_against_the_definition(kw, reduction, path, masked):
    z, y, m = _multilabel_inputs(7, 9, 12.0)
    mask = m if masked else None
    _check_elementwise(lambda t: LF.sigmoid_focal(t, y, reduction=reduction, mask=mask, **kw),
                       lambda t: _masked_reduce(ref_sigmoid_focal(t, y, **kw), mask, reduction), z, path)


@pytest.mark.parametrize("kw", FOCAL_KW, ids=str)
def test_sigmoid_focal_fused_gradcheck(kw):
    z, y, m = _multilabel_inputs(5, 4, 2.0, seed=3)
    z[0, :4] = torch.randn(4, dtype=DT)  # away from ±40, where finite differences mean nothing
    with force_path("fused"):
        for reduction, mask in (("mean", None), ("none", None), ("sum", m)):
            assert torch.autograd.gradcheck(lambda t: LF.sigmoid_focal(t, y, reduction=reduction, mask=mask, **kw),
                                            (z.clone().requires_grad_(),))


def _node_names(out: torch.Tensor) -> set[str]:
    names, visited, stack = set(), set(), [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is not None and id(fn) not in visited:
            visited.add(id(fn))
            names.add(type(fn).__name__)
            stack.extend(f for f, _ in fn.next_functions)
    return names


@pytest.mark.parametrize("loss_id, node", [("sigmoid_focal", "_PointwiseBackward"), ("asymmetric", "_AsymmetricBackward")])
def test_the_sigmoid_fused_path_is_the_default_with_a_gradient(loss_id, node):
    z, y, _ = _multilabel_inputs(6, 5, 2.0)
    z.requires_grad_()
    assert node in _node_names(la.create(loss_id)(z, y))
    y.requires_grad_()  # a target that needs a gradient: the composed ops (the fused path gives none for it)
    out = la.create(loss_id)(z, y)
    assert node not in _node_names(out)
    assert torch.autograd.grad(out.sum(), y)[0].abs().sum() > 0


def ref_asymmetric(z, y, gamma_neg=4.0, gamma_pos=1.0, clip=0.05, eps=1e-8):
    """Ridnik et al.'s ASL with the reference's detached focusing weight: x⁺ = σ(z), x⁻ = min(σ(−z) + m, 1),
    ℓ = −w [y log max(x⁺, ε) + (1 − y) log max(x⁻, ε)], w = (1 − p_t)^{γ₊ y + γ₋ (1 − y)}."""
    x_pos = torch.sigmoid(z)
    x_neg = torch.sigmoid(-z)
    if clip:
        x_neg = (x_neg + clip).clamp_max(1.0)
    ce = y * x_pos.clamp_min(eps).log() + (1 - y) * x_neg.clamp_min(eps).log()
    with torch.no_grad():
        one_minus_neg = (torch.sigmoid(z) - clip).clamp_min(0.0) if clip else torch.sigmoid(z)
        w = (y * torch.sigmoid(-z) + (1 - y) * one_minus_neg) ** (gamma_pos * y + gamma_neg * (1 - y))
    return -ce * w


ASL_KW = [dict(), dict(gamma_neg=2.0, gamma_pos=0.0, clip=0.0), dict(gamma_neg=2.5, gamma_pos=0.5, clip=0.3, eps=0.5),
          dict(gamma_neg=0.0, gamma_pos=0.0, clip=None), dict(gamma_neg=3.0, gamma_pos=2.0, clip=0.1, eps=1e-3),
          dict(gamma_neg=1.0, gamma_pos=4.0, clip=0.0, eps=0.2)]


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("path", ["plain", "fused"])
@pytest.mark.parametrize("reduction", ["mean", "none", "sum"])
@pytest.mark.parametrize("kw", ASL_KW, ids=str)
def test_asymmetric_against_the_definition(kw, reduction, path, masked, soft):
    z, y, m = _multilabel_inputs(7, 9, 12.0)
    if not soft:  # the fused path's binary-target form (two scalar powers) and its general form
        y[2] = (y[2] > 0.5).to(DT)
    mask = m if masked else None
    ref_kw = {**kw, "clip": kw.get("clip", 0.05) or 0.0}
    _check_elementwise(lambda t: LF.asymmetric(t, y, reduction=reduction, mask=mask, **kw),
                       lambda t: _masked_reduce(ref_asymmetric(t, y, **ref_kw), mask, reduction), z, path)


@pytest.mark.parametrize("num_classes", [10, 100, 1000])
@pytest.mark.parametrize("kw", ASL_KW, ids=str)
def test_asymmetric_traced_form_under_torch_compile(kw, num_classes):
    # torch.compile (Dynamo + AOTAutograd, no code generation) takes _TracedAsymmetric: against the
    # float64 definition, 0/1 and soft targets, with and without a mask, every reduction
    z, y, m = _multilabel_inputs(6, num_classes, 12.0)
    y[2] = (y[2] > 0.5).to(DT)
    ref_kw = {**kw, "clip": kw.get("clip", 0.05) or 0.0}
    for mask in (None, m):
        for reduction in ("mean", "none", "sum"):
            _compiled_matches(lambda t: LF.asymmetric(t, y, reduction=reduction, mask=mask, validate=False, **kw),
                              lambda t: _masked_reduce(ref_asymmetric(t, y, **ref_kw), mask, reduction), z, 1e-9, 1e-7)
    names = _compiled_graph_targets(lambda t: LF.asymmetric(t, y, validate=False, **kw), z)
    assert any("TracedAsymmetric" in n or "autograd_function_apply" in n for n in names), names


@pytest.mark.parametrize("kw", ASL_KW, ids=str)
def test_asymmetric_traced_gradcheck(kw):
    # the traced Function run eagerly: float64 gradcheck, masked, each reduction; γ = 0 (the
    # focusing weight is detached, so with γ > 0 the gradient is not the value's derivative)
    from lossatlas.functional import multilabel as ML
    z, y, m = _multilabel_inputs(4, 5, 3.0)
    margin = kw.get("clip", 0.05) or 0.0
    for reduction in ("mean", "none", "sum"):
        assert torch.autograd.gradcheck(lambda t: ML._asymmetric_traced(t, y, m, 0.0, 0.0, margin, kw.get("eps", 1e-8), reduction),
                                        (z.clone().requires_grad_(),))


@pytest.mark.parametrize("kw", ASL_KW, ids=str)
def test_asymmetric_fused_gradcheck(kw):
    # the weight is detached (the reference's default): gradcheck the loss at a fixed weight, i.e.
    # that the fused gradient is the derivative of −w·ce, by checking against autograd of the reference
    z, y, m = _multilabel_inputs(5, 4, 2.0, seed=3)
    z[0, :4] = torch.randn(4, dtype=DT)
    ref_kw = {**kw, "clip": kw.get("clip", 0.05) or 0.0}
    with force_path("fused"):
        for reduction, mask in (("mean", None), ("none", None), ("sum", m)):
            v, g = _value_and_grad(lambda t: LF.asymmetric(t, y, reduction=reduction, mask=mask, **kw), z)
            rv, rg = _value_and_grad(lambda t: _masked_reduce(ref_asymmetric(t, y, **ref_kw), mask, reduction), z)
            torch.testing.assert_close(g, rg, rtol=1e-9, atol=1e-12)
    # with no focusing weight the loss is a function of z alone: gradcheck proper
    with force_path("fused"):
        assert torch.autograd.gradcheck(lambda t: LF.asymmetric(t, y, gamma_neg=0.0, gamma_pos=0.0, clip=kw.get("clip", 0.05)),
                                        (z.clone().requires_grad_(),))


# ----------------------------------------------------- gradients computed in the forward
#: Fused Functions whose forward computes the gradient into a buffer of its own and whose
#: backward hands it back (``_fused.handed_back``): (id, keywords, per-row reference or None
#: for a batch loss with its reference in ``BATCH_REFS``).
HANDED_BACK = [
    ("ngce", {"q": 0.7}, ref_ngce),
    ("ngce", {"q": 0.3, "scale": 2.0}, ref_ngce),
    ("ngce", {"q": 1.0}, ref_ngce),
    ("nfl", {"gamma": 0.5}, ref_nfl),
    ("nfl", {"gamma": 2.0, "scale": 1.5}, ref_nfl),
    ("logitclip", {"tau": 0.5, "eps": 1e-3}, ref_logitclip),  # every row clipped
    ("logitclip", {"tau": 1e-3}, ref_logitclip),  # no row clipped: p_y below exp(-700) in row 4 (the exact fallback)
    ("asymmetric_single_label", {"gamma_pos": 0.5, "gamma_neg": 4.0, "eps": 0.1}, ref_asl_single),
    ("asymmetric_single_label", {"gamma_pos": 1.0, "gamma_neg": 2.5, "eps": 0.0}, ref_asl_single),
    ("asymmetric_single_label", {"gamma_pos": 0.0, "gamma_neg": 0.0, "eps": 0.2}, ref_asl_single),
    ("ldr", {}, ref_ldr),  # row 3 has a logit above softplus's threshold 20 (its where pass and slope 1)
    ("ldr", {"margin": 0.3, "temperature": 2.0}, ref_ldr),
]


@pytest.mark.parametrize("num_classes", [10, 100, 1000])
@pytest.mark.parametrize("logit_scale", [2.0, 12.0])  # 12: probabilities below NGCE's 1e-7 clamp at every width
@pytest.mark.parametrize("loss_id, kw, ref", HANDED_BACK, ids=[f"{c[0]}-{i}" for i, c in enumerate(HANDED_BACK)])
def test_handed_back_rows_at_the_benchmarked_widths(loss_id, kw, ref, logit_scale, num_classes):
    # the default (fused) path at C = 10 / 100 / 1000 with ignored rows, a row far above the rest
    # and one whose target probability is below exp(-700), every reduction, against the float64
    # definition; the node is the fused one
    z, y = _inputs(24, num_classes, logit_scale, seed=num_classes, ignore=False)
    z[3, y[3]] = z[3].max() + 30.0
    z[4, y[4]] = z[4].max() - 800.0
    fn = getattr(LF, loss_id)
    assert FUSED_NODE[loss_id] + "Backward" in _node_names(fn(z.clone().requires_grad_(), y, **kw))
    for y in (y, torch.where(torch.arange(24) % 7 == 5, -100, y)):  # without and with ignored rows
        keep = y != -100
        for reduction in ("mean", "none", "sum"):
            v, g = _value_and_grad(lambda t: fn(t, y, reduction=reduction, **kw), z)
            rv, rg = _value_and_grad(lambda t: _reduce(ref(t, torch.where(keep, y, 0), **kw), keep, reduction), z)
            torch.testing.assert_close(v, rv, rtol=1e-9, atol=1e-12)
            torch.testing.assert_close(g, rg, rtol=1e-7, atol=1e-10)
    empty = torch.zeros(0, num_classes, dtype=DT, requires_grad=True)
    for reduction in ("mean", "none", "sum"):
        with force_path("plain"):
            expected = fn(empty, y[:0], reduction=reduction, **kw)
        torch.testing.assert_close(fn(empty, y[:0], reduction=reduction, **kw), expected, equal_nan=True)


@pytest.mark.parametrize("loss_id, kw", [(c[0], c[1]) for c in HANDED_BACK] + [
    ("anyloss", {"metric": "gmean"}), ("gumbel", {}), ("gumbel", {"clamp_min": None, "clamp_max": None})],
                         ids=lambda v: str(v))
def test_handed_back_gradient_upstream_factors_and_retained_graphs(loss_id, kw):
    # the gradient computed in the forward: an upstream factor (≠ 1) scales it, a retained graph's
    # second backward gives it again (autograd copies the kept buffer, which stays unchanged), and
    # the .grad autograd keeps is not changed by a later call
    z, y = _inputs(20, 30, 3.0, seed=4, ignore=False)
    fn = getattr(LF, loss_id)
    _, once = _value_and_grad(lambda t: fn(t, y, **kw), z)
    _, scaled = _value_and_grad(lambda t: fn(t, y, **kw) * -2.5, z)
    torch.testing.assert_close(scaled, once * -2.5, rtol=1e-12, atol=1e-15)
    t = z.clone().requires_grad_()
    loss = fn(t, y, **kw)
    loss.backward(retain_graph=True)
    first = t.grad.clone()
    loss.backward()
    torch.testing.assert_close(t.grad, 2 * first, rtol=1e-12, atol=1e-15)
    loss = fn(t, y, **kw)  # torch.autograd.grad with a retained graph: the result is the caller's to change
    (g1,) = torch.autograd.grad(loss, t, retain_graph=True)
    g1.mul_(0.0)
    (g2,) = torch.autograd.grad(loss, t)
    torch.testing.assert_close(g2, once, rtol=1e-12, atol=1e-15)
    t.grad = None
    fn(t, y, **kw).backward()
    kept = t.grad
    torch.testing.assert_close(kept, once, rtol=1e-12, atol=1e-15)
    fn(t * 1.0, y, **kw).backward()  # accumulates into .grad
    torch.testing.assert_close(kept, 2 * once, rtol=1e-12, atol=1e-15)
    # two losses of the same logits in one graph: their gradients add
    _, both = _value_and_grad(lambda t: fn(t, y, **kw) + fn(t, y, **kw), z)
    torch.testing.assert_close(both, 2 * once, rtol=1e-12, atol=1e-15)
    # a graph of the backward (create_graph): the gradient still equals, and is differentiable in the upstream factor
    w = torch.tensor(1.0, dtype=DT, requires_grad=True)
    t = z.clone().requires_grad_()
    (g,) = torch.autograd.grad(fn(t, y, **kw) * w, t, create_graph=True)
    torch.testing.assert_close(g.detach(), once, rtol=1e-12, atol=1e-15)
    (dw,) = torch.autograd.grad((g * z).sum(), w)
    torch.testing.assert_close(dw, (once * z).sum(), rtol=1e-10, atol=1e-12)


# Issue 25, small C: at NARROW_C <= C < LOG_PIECES_MAX_C on CPU the fused softmax losses take p and
# log p_y from one log-softmax (no host read), and _SoftmaxRowLoss's backward folds the scalar factor
# of a reduced loss into the [N, 1] coefficient. Both against the float64 definitions, with an
# upstream gradient that is not 1 (the folded factor), with and without an ignored row (with one, or
# with class weights, the factor is a tensor: fused_grad's general form), a target probability far
# below float32's normal range (exp(-90)) and, where the loss takes them, class weights.
SMALL_C_ROWS = [c for c in ROW_CASES if c[0] in ("mae", "gce", "alpha_loss", "taylor_ce", "poly1", "encouraging",
                                                  "log_z_squared", "squentropy", "ngce", "nfl", "nce", "sce",
                                                  "rce", "nce_rce", "nce_mae")] + [
    # the row terms rewritten for fewer operator calls (Horner's rule, one shared q log p, ε (1 − p_t)):
    # every branch of each (t = 1, 2, 3; α = 1, i.e. q = 0; ε = −1, where ∂ℓ/∂ log p_t → 0 as p_t → 1)
    ("mae", {}, ref_mae), ("taylor_ce", {"order": 1}, ref_taylor), ("taylor_ce", {"order": 2}, ref_taylor),
    ("taylor_ce", {"order": 3}, ref_taylor), ("alpha_loss", {"alpha": 1.0}, ref_alpha),
    ("alpha_loss", {"alpha": 2.0}, ref_alpha), ("gce", {"q": 1.0}, ref_gce), ("gce", {"q": 0.7}, ref_gce),
    ("poly1", {"epsilon": 1.0}, ref_poly1), ("poly1", {"epsilon": -1.0}, ref_poly1)]


@pytest.mark.parametrize("tiny", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("num_classes", [8, 10, 15, 16, 100])
@pytest.mark.parametrize("loss_id, kw, ref", SMALL_C_ROWS, ids=[f"{c[0]}-{i}" for i, c in enumerate(SMALL_C_ROWS)])
def test_small_c_fused_rows_against_the_definition(loss_id, kw, ref, num_classes, ignore, tiny):
    # without the tiny probability (logits 0.5 randn: every p_j far above RCE's 1e-7 clamp) the noise
    # mixes' RCE is 1 − p_y and their gradient a (e_y − p) (its scale folded into the column)
    z, y = _inputs(9, num_classes, 3.0 if tiny else 0.5, seed=num_classes, ignore=ignore)
    if tiny:
        z[0] = 0.0
        z[0, y[0]] = -90.0  # p_y ≈ e^-90
    keep = y != -100
    ys = torch.where(keep, y, 0)
    fn = getattr(LF, loss_id)
    weighted = "weight" in la.info(loss_id).parameters
    w = torch.linspace(0.5, 2.0, num_classes, dtype=DT)
    for reduction in ("mean", "sum", "none"):
        for weight in ((None, w) if weighted else (None,)):
            extra = {} if weight is None else {"weight": weight}
            row_w = keep.to(DT) if weight is None else keep * weight[ys]
            v, g = _value_and_grad(lambda t: 2.5 * fn(t, y, reduction=reduction, **kw, **extra), z)

            def definition(t):
                losses = ref(t, ys, **kw) * row_w
                if reduction == "none":
                    return 2.5 * losses
                return 2.5 * (losses.sum() if reduction == "sum" else losses.sum() / row_w.sum())

            rv, rg = _value_and_grad(definition, z)
            assert v.grad_fn is None and fn(z.clone().requires_grad_(), y).grad_fn.name() == FUSED_NODE[loss_id] + "Backward"
            torch.testing.assert_close(v, rv, rtol=1e-9, atol=1e-12)
            torch.testing.assert_close(g, rg, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("loss_id, kw, ref", SMALL_C_ROWS, ids=[f"{c[0]}-{i}" for i, c in enumerate(SMALL_C_ROWS)])
def test_small_c_fused_rows_empty_batch(loss_id, kw, ref):
    fn = getattr(LF, loss_id)
    for reduction in ("mean", "sum", "none"):
        z = torch.zeros(0, 10, dtype=DT, requires_grad=True)
        out = fn(z, torch.zeros(0, dtype=torch.long), reduction=reduction, **kw)
        (g,) = torch.autograd.grad(out.sum(), z)
        assert out.shape == ((0,) if reduction == "none" else ()) and float(out.detach().sum()) == 0.0 and g.shape == (0, 10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_classes", [4, 8, 10, 15, 16, 100])
def test_softmax_and_log_target_against_log_softmax(num_classes, dtype):
    from lossatlas.functional._fused import softmax_and_log_target

    z, y = _inputs(64, num_classes, 5.0, seed=3, ignore=False)
    z[0] = 0.0
    z[0, y[0]] = -200.0  # p_y underflows float32: log p_y must still be exact
    z = z.to(dtype)
    p, lpy = softmax_and_log_target(z, y.unsqueeze(1))
    ref = torch.log_softmax(z.double(), 1)
    tol = {"rtol": 1e-12, "atol": 1e-14} if dtype == torch.float64 else {"rtol": 2e-6, "atol": 1e-6}
    torch.testing.assert_close(lpy.double(), ref.gather(1, y.unsqueeze(1)).squeeze(1), **tol)
    torch.testing.assert_close(p.double(), ref.exp(), **tol)
    assert p.shape == z.shape and lpy.shape == (64,) and p.dtype == lpy.dtype == dtype


@pytest.mark.parametrize("num_classes", [10, 100, 1000])
@pytest.mark.parametrize("kw", [{}, {"alpha": 0.0}, {"alpha": 1.0}, {"alpha": 1.5, "smooth": 0.1},
                                {"alpha": 0.3, "denominator": "batch", "square_denominator": True}], ids=str)
def test_dice_whole_loss_function_at_the_benchmarked_widths(kw, num_classes):
    # _DiceLoss (the eager CPU path for "mean" / "sum": the gradient built in the forward and handed
    # back) against the float64 definition at C = 10 / 100 / 1000, with and without ignored rows, a
    # row whose 1 − p rounds to 0 (the clamped terms' branch; α ≥ 1 there, where the definition's
    # derivative is the clamp-free one) and the upstream-factor / retained-graph checks
    alpha, smooth = kw.get("alpha", 0.01), kw.get("smooth", 1e-4)
    z, y = _inputs(20, num_classes, 3.0, seed=num_classes, ignore=False)
    variants = [(z, y), (z, torch.where(torch.arange(20) % 6 == 1, -100, y))]
    if alpha >= 1.0:
        z1 = z.clone()
        z1[0] = -800.0
        z1[0, y[0]] = 0.0
        variants.append((z1, y))
    for zz, yy in variants:
        keep = yy != -100
        ys = torch.where(keep, yy, 0)
        zr = zz.clone().requires_grad_()
        assert "_DiceLossBackward" in _node_names(LF.dice(zr, yy, **kw))
        for reduction in ("mean", "sum"):
            rv, rg = _value_and_grad(lambda t: _reduce(ref_dice_batch(t, ys, keep.to(DT), alpha, smooth,
                                                                      kw.get("square_denominator", False)),
                                                       keep, reduction), zz)
            v, g = _value_and_grad(lambda t: LF.dice(t, yy, reduction=reduction, **kw), zz)
            torch.testing.assert_close(v, rv, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(g, rg, rtol=1e-8, atol=1e-11)
            _, g3 = _value_and_grad(lambda t: LF.dice(t, yy, reduction=reduction, **kw) * 3.0, zz)
            torch.testing.assert_close(g3, 3.0 * rg, rtol=1e-8, atol=1e-11)
    t = z.clone().requires_grad_()
    loss = LF.dice(t, y, **kw)
    loss.backward(retain_graph=True)
    first = t.grad.clone()
    loss.backward()
    torch.testing.assert_close(t.grad, 2 * first, rtol=1e-12, atol=1e-15)
    with force_path("fused"):
        assert torch.autograd.gradcheck(lambda t: LF.dice(t, y[:6] % 17, reduction="sum", **kw),
                                        (z[:6, :17].clone().requires_grad_(),))
