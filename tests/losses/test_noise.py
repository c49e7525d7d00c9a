"""Noise-robust losses B1-B7: identities, gradients, extremes, edge cases, errors, state, and
the official code's definitions (float64 references written here).

ALDR: Optimization-AI/ICML2023_LDR, loss.py::ALDRLoss_V1 as experiment.py builds it
(threshold=margin=0.1, Lambda=temperature=10, alpha=2, N=num_samples, softplus not passed,
so the class default False runs). NCE+MAE: HanxunH/Active-Passive-Losses, loss.py::NCEandMAE
= NormalizedCrossEntropy(scale=alpha) + MeanAbsoluteError(scale=beta), MAE = 1 - p_y.
NFL: loss.py::NormalizedFocalLoss, whose (1 - p)^γ factors come from logpt.data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import lossatlas as la
import lossatlas.functional as LF
from helpers import PARITY_DIR, assert_finite_extremes, gradcheck_loss, require_parity_dir

N, C = 7, 5
IDS = ["mae", "gce", "rce", "sce", "nce", "nfl", "ngce", "active_passive", "nce_rce", "nce_mae",
       "logitclip", "ldr", "taylor_ce", "alpha_loss"]


def _data(n: int = N, c: int = C, scale: float = 2.0, seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, c, generator=g, dtype=dtype), torch.randint(0, c, (n,), generator=g)


def _ce_none(z: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(z, y, reduction="none")


def _aldr(**kwargs: Any) -> la.losses.ALDRLoss:
    crit = la.create("aldr", **kwargs)
    assert isinstance(crit, la.losses.ALDRLoss)
    return crit


# ------------------------------------------------------------------------- identities
def test_gce_limits() -> None:
    z, y = _data()
    ce = _ce_none(z, y)
    # q -> 0: CE (error O(q log^2 p))
    torch.testing.assert_close(LF.gce(z, y, q=1e-7, reduction="none"), ce, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(LF.gce(z, y, q=0.0, reduction="none"), ce)
    # q = 1: 1 - p_y = MAE, and MAE·const for any scale
    torch.testing.assert_close(LF.gce(z, y, q=1.0, reduction="none"), LF.mae(z, y, reduction="none"))
    torch.testing.assert_close(LF.gce(z, y, q=1.0, reduction="none") * 3.0, LF.mae(z, y, scale=3.0, reduction="none"))


def test_mae_is_half_l1() -> None:
    z, y = _data()
    p = torch.softmax(z, 1)
    half_l1 = 0.5 * (p - F.one_hot(y, C).double()).abs().sum(1)
    torch.testing.assert_close(LF.mae(z, y, reduction="none"), half_l1)


def test_alpha_loss_special_cases() -> None:
    z, y = _data()
    ce = _ce_none(z, y)
    torch.testing.assert_close(LF.alpha_loss(z, y, alpha=1.0, reduction="none"), ce)
    torch.testing.assert_close(LF.alpha_loss(z, y, alpha=1.0 + 1e-9, reduction="none"), ce, rtol=1e-6, atol=1e-8)
    py = torch.softmax(z, 1).gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(LF.alpha_loss(z, y, alpha=math.inf, reduction="none"), 1 - py)
    torch.testing.assert_close(LF.alpha_loss(z, y, alpha=0.5, reduction="none"), 1 / py - 1)
    # α-loss with α = 1/(1-q) is GCE with that q (Box-Cox family), away from the 1e-7 clamp
    torch.testing.assert_close(LF.alpha_loss(z, y, alpha=1 / 0.3, reduction="none"), LF.gce(z, y, q=0.7, reduction="none"))


def test_taylor_ce_converges_to_ce() -> None:
    z, y = _data(scale=1.0)
    ce = _ce_none(z, y)
    errs = [float((LF.taylor_ce(z, y, order=t, reduction="none") - ce).abs().max()) for t in (1, 2, 5, 20, 200, 2000)]
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 1e-6
    torch.testing.assert_close(LF.taylor_ce(z, y, order=1, reduction="none"), LF.mae(z, y, reduction="none"))


@pytest.mark.parametrize("name,const", [
    ("mae", lambda c: c - 1.0),
    ("rce", lambda c: -math.log(1e-4) * (c - 1.0)),
    ("nce", lambda c: 1.0),
    ("ngce", lambda c: 1.0),
    ("nfl", lambda c: 1.0),
])
def test_symmetric_losses_sum_over_labels_is_constant(name: str, const: Callable[[int], float]) -> None:
    fn = getattr(LF, name)
    for seed in range(5):
        z, _ = _data(n=6, c=C, scale=1.5, seed=seed)  # moderate logits: no 1e-7 clamping
        total = torch.stack([fn(z, torch.full((6,), j), reduction="none") for j in range(C)]).sum(0)
        torch.testing.assert_close(total, torch.full((6,), const(C), dtype=torch.float64))


def test_ce_is_not_symmetric() -> None:  # the property above can fail
    z, _ = _data(n=6, scale=1.5)
    total = torch.stack([_ce_none(z, torch.full((6,), j)) for j in range(C)]).sum(0)
    assert float(total.std()) > 1e-3


def test_sce_and_active_passive_compose() -> None:
    z, y = _data()
    ce = _ce_none(z, y)
    rce = LF.rce(z, y, reduction="none")
    torch.testing.assert_close(LF.sce(z, y, alpha=0.3, beta=2.0, reduction="none"), 0.3 * ce + 2.0 * rce)
    nce = LF.nce(z, y, reduction="none")
    torch.testing.assert_close(la.create("nce_rce", alpha=10, beta=0.1, reduction="none")(z, y), 10 * nce + 0.1 * rce)
    torch.testing.assert_close(la.create("nce_mae", alpha=2, beta=3, reduction="none")(z, y), 2 * nce + 3 * LF.mae(z, y, reduction="none"))
    # any pair composes: NFL + RCE by id, NGCE + MAE by module, and the functional twin agrees
    m = la.create("active_passive", active="nfl", passive="rce", active_kwargs={"gamma": 0.5}, alpha=1.0, beta=1.0)
    torch.testing.assert_close(m(z, y), (LF.nfl(z, y, gamma=0.5, reduction="none") + rce).mean())
    torch.testing.assert_close(m(z, y), LF.active_passive(z, y, active="nfl", passive="rce", active_kwargs={"gamma": 0.5}))
    m2 = la.create("active_passive", active=la.create("ngce", q=0.1, reduction="none"), passive=la.create("mae", reduction="none"))
    torch.testing.assert_close(m2(z, y), (LF.ngce(z, y, q=0.1, reduction="none") + LF.mae(z, y, reduction="none")).mean())


@pytest.mark.parametrize("path", ["plain", "fused"])
@pytest.mark.parametrize("num_classes, gamma", [(2, 2.0), (3, 5.0), (3, 0.5), (10, 2.0)])
def test_nfl_and_nce_at_equal_logits_are_one_over_c(num_classes: int, gamma: float, path: str) -> None:
    # p = 1/C for every class: numerator and each of the C terms of the normaliser are equal, so
    # NFL = 1/C whatever γ, also where the normaliser C (1 − 1/C)^γ log C is below 1 (C = 2, γ = 2;
    # C = 3, γ = 5; mutation seed 27)
    from lossatlas._paths import force_path

    z = torch.zeros(4, num_classes, dtype=torch.float64, requires_grad=True)
    y = torch.arange(4) % num_classes
    with force_path(path):
        for out in (LF.nfl(z, y, gamma=gamma, reduction="none"), LF.nce(z, y, reduction="none")):
            torch.testing.assert_close(out.detach(), torch.full((4,), 1.0 / num_classes, dtype=torch.float64),
                                       rtol=1e-14, atol=0.0)


def test_nfl_gamma0_is_nce_and_detach_changes_only_gradient() -> None:
    z, y = _data()
    torch.testing.assert_close(LF.nfl(z, y, gamma=0.0), LF.nce(z, y))
    a = z.clone().requires_grad_()
    b = z.clone().requires_grad_()
    la_ = LF.nfl(a, y, gamma=0.5, detach=True)
    lb = LF.nfl(b, y, gamma=0.5, detach=False)
    torch.testing.assert_close(la_, lb)
    la_.backward()
    lb.backward()
    assert a.grad is not None and b.grad is not None
    assert float((a.grad - b.grad).abs().max()) > 1e-6


def test_ldr_temperature_limits() -> None:
    z, y = _data(scale=1.0)
    zn = LF.ldr_normalise(z)
    m = 0.1
    d = zn - zn.gather(1, y[:, None]) + m
    d = d.scatter(1, y[:, None], 0.0)
    max_margin = d.max(1).values  # = max(0, max_{j≠y} m + z'_j - z'_y)
    average = d.mean(1)
    torch.testing.assert_close(LF.ldr(z, y, margin=m, temperature=1e-4, reduction="none"), max_margin, atol=1e-3, rtol=0)
    torch.testing.assert_close(LF.ldr(z, y, margin=m, temperature=1e6, reduction="none"), average, atol=1e-5, rtol=0)
    # monotone in between: λ log mean exp(d/λ) decreases as λ grows
    vals = [float(LF.ldr(z, y, temperature=t)) for t in (0.01, 0.1, 1.0, 10.0, 100.0)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


def test_ldr_normalisation_matches_definition() -> None:
    z, y = _data()
    sp = F.softplus(z)
    torch.testing.assert_close(LF.ldr_normalise(z), sp / sp.mean(1, keepdim=True))
    torch.testing.assert_close(LF.ldr_normalise(z, softplus=False), z / z.abs().mean(1, keepdim=True))


def test_logitclip_rule_and_composition() -> None:
    z, y = _data(scale=5.0)
    z[:3] *= 0.05  # some rows inside the ball, some outside
    tau = 0.5
    clipped = LF.clip_logits(z, tau=tau, p=2.0, eps=0.0)
    norms = z.norm(dim=1)
    big = norms > 1 / tau
    assert big.any() and (~big).any()
    torch.testing.assert_close(clipped.norm(dim=1)[big], torch.full((int(big.sum()),), 1 / tau, dtype=torch.float64))
    torch.testing.assert_close(clipped[~big], z[~big])
    # the wrapper is composition: LogitClip(base) == base(clip(z))
    for base, kw in (("focal", {"gamma": 2.0}), ("gce", {"q": 0.7}), ("nce_rce", {})):
        crit = la.create("logitclip", tau=tau, base=base, base_kwargs=kw)
        ref = la.create(base, **kw)(LF.clip_logits(z, tau=tau), y)
        torch.testing.assert_close(crit(z, y), ref)
    # a module base, and a reduction mismatch is an error
    crit = la.create("logitclip", tau=tau, base=la.create("mae", reduction="none"), reduction="none")
    assert crit(z, y).shape == (N,)
    with pytest.raises(ValueError, match="reduction"):
        la.create("logitclip", base=la.create("mae", reduction="none"))
    # large τ·norm: CE of clipped logits is bounded by log C + 2/τ
    huge = 1e3 * z
    assert float(la.create("logitclip", tau=tau)(huge, y)) <= math.log(C) + 2 / tau + 1e-9


def test_logitclip_paper_rule_vs_code_rule() -> None:
    # official code: clip rows with ||z|| > tau (its --temp) to norm 1/tau; the paper (and lossatlas): rows with ||z|| > 1/tau
    def code_rule(z: Tensor, temp: float) -> Tensor:
        norms = z.norm(dim=1, keepdim=True) + 1e-7
        return torch.where(norms > temp, z / norms / temp, z)

    z, y = _data(n=40, scale=1.0)
    z = z * torch.logspace(-2, 2, 40, dtype=torch.float64)[:, None]
    for tau in (0.5, 1.0, 2.0):
        norms = z.norm(dim=1)
        outside = (norms < min(tau, 1 / tau)) | (norms > max(tau, 1 / tau))
        ours = LF.clip_logits(z, tau=tau)
        torch.testing.assert_close(ours[outside], code_rule(z, tau)[outside])
        if tau != 1.0:  # rows with a norm between tau and 1/tau are where the two rules differ
            assert (~outside).any() and not torch.allclose(ours[~outside], code_rule(z, tau)[~outside])
    # a plain function as base gets the wrapper's reduction
    crit = la.create("logitclip", tau=0.5, base=LF.gce, reduction="none")
    torch.testing.assert_close(crit(z, y), LF.gce(LF.clip_logits(z, tau=0.5), y, reduction="none"))
    assert la.create("logitclip", p=math.inf)(z, y).ndim == 0


def test_logitclip_wraps_stateful_aldr() -> None:
    z, y = _data()
    crit = la.create("logitclip", tau=1.0, base="aldr", base_kwargs={"num_samples": 20})
    out = crit(z, y, index=torch.arange(N))
    assert out.ndim == 0
    assert "base.sample_temperature" in crit.state_dict()


# ------------------------------------------------------------------------- ALDR state
def _aldr_case() -> dict[str, Any]:
    import json

    require_parity_dir()

    for path in sorted(PARITY_DIR.glob("manifest*.json")):
        for case in json.loads(path.read_text()):
            if case["case"] == "seq_aldr":
                found: dict[str, Any] = case
                return found
    pytest.fail(f"parity manifests in {PARITY_DIR} have no seq_aldr case")


def test_aldr_state_matches_reference_sequence() -> None:
    case = _aldr_case()
    arrays = np.load(PARITY_DIR / "seq_aldr.npz")
    crit = _aldr(**case["kwargs"]).double()
    for s in range(case["sequence"]):
        crit(torch.from_numpy(arrays[f"logits_{s}"]), torch.from_numpy(arrays[f"target_{s}"]),
             index=torch.from_numpy(arrays[f"index_{s}"]))
        np.testing.assert_allclose(crit.sample_temperature.numpy(), arrays[f"lambda_state_{s}"], rtol=1e-6, atol=1e-9)


def test_aldr_state_is_a_buffer_and_updates_before_use() -> None:
    z, y = _data()
    crit = _aldr(num_samples=30, softplus=False)
    assert "sample_temperature" in crit.state_dict()
    assert crit.state_dict()["sample_temperature"].shape == (30,)
    idx = torch.arange(3, 3 + N)
    loss = crit(z, y, index=idx, )
    lam = crit.sample_temperature[idx].double()
    assert bool((lam < 10.0).all()) and bool((lam >= 5.0).all())  # α = 2: λ ∈ [Λ/2, Λ]
    untouched = torch.cat([crit.sample_temperature[:3], crit.sample_temperature[3 + N:]])
    assert bool((untouched == 10.0).all())
    # loss used the *new* λ: equals LDR with per-sample λ minus the penalty
    expected = LF.ldr(z, y, temperature=lam, softplus=False, reduction="none") - 2 * math.log(C) / 20 * (lam - 10) ** 2
    torch.testing.assert_close(loss, expected.mean(), rtol=1e-6, atol=1e-7)  # λ stored in float32
    crit2 = la.create("aldr", num_samples=30, softplus=False)
    crit2.load_state_dict(crit.state_dict())
    torch.testing.assert_close(crit2.sample_temperature, crit.sample_temperature)
    assert crit.double().sample_temperature.dtype == torch.float64
    crit.reset()
    assert bool((crit.sample_temperature == 10.0).all())


def test_aldr_index_errors() -> None:
    z, y = _data()
    crit = la.create("aldr", num_samples=10)
    with pytest.raises(ValueError, match="index="):
        crit(z, y)
    with pytest.raises(ValueError, match="num_samples"):
        crit(z, y, index=torch.arange(N) + 5)
    with pytest.raises(ValueError, match="repeated"):
        crit(z, y, index=torch.zeros(N, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        crit(z, y, index=torch.arange(N).double())
    with pytest.raises(ValueError, match="shape"):
        crit(z, y, index=torch.arange(N - 1))
    with pytest.raises(ValueError, match="2 classes"):
        la.create("aldr", num_samples=10)(torch.randn(3, 1), torch.zeros(3, dtype=torch.long), index=torch.arange(3))
    with pytest.raises(ValueError, match="num_samples"):
        la.create("aldr", num_samples=0)


# ------------------------------------------------------------------------- gradients
GRAD_KW: dict[str, dict[str, Any]] = {
    "mae": {}, "gce": {"q": 0.7}, "rce": {}, "sce": {}, "nce": {}, "ngce": {"q": 0.3},
    "nfl": {"detach": False, "gamma": 0.5}, "nce_rce": {}, "nce_mae": {}, "logitclip": {"tau": 0.5},
    "ldr": {}, "taylor_ce": {"order": 3}, "alpha_loss": {"alpha": 3.0}, "active_passive": {"active": "ngce", "passive": "mae"},
}


@pytest.mark.parametrize("name", sorted(GRAD_KW))
def test_gradcheck(name: str) -> None:
    z, y = _data(n=4, c=4, scale=1.0)
    crit = la.create(name, **GRAD_KW[name])
    gradcheck_loss(crit, z, y)


def test_gradcheck_ldr_per_sample_temperature() -> None:
    z, y = _data(n=4, c=4, scale=1.0)
    lam = torch.tensor([0.5, 1.0, 3.0, 10.0], dtype=torch.float64)
    gradcheck_loss(lambda a, b: LF.ldr(a, b, temperature=lam, softplus=False), z, y)


@pytest.mark.parametrize("name", IDS + ["nfl_nodetach", "alpha_inf"])
def test_extreme_logits_finite(name: str) -> None:
    kw: dict[str, tuple[str, dict[str, Any]]] = {"nfl_nodetach": ("nfl", {"detach": False}), "alpha_inf": ("alpha_loss", {"alpha": math.inf})}
    ident, kwargs = kw.get(name, (name, {}))
    assert_finite_extremes(la.create(ident, **kwargs))


def test_extreme_logits_finite_aldr() -> None:
    crit = _aldr(num_samples=6)
    assert_finite_extremes(lambda z, y: crit(z, y, index=torch.arange(6)), num_classes=5, n=6)
    assert torch.isfinite(crit.sample_temperature).all()


@pytest.mark.parametrize("name", IDS)
def test_low_precision_returns_input_dtype(name: str) -> None:
    z, y = _data(dtype=torch.float32)
    out = la.create(name)(z.bfloat16(), y)
    ref = la.create(name)(z.bfloat16().float(), y)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)


# ------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("name", IDS)
def test_empty_batch_and_reductions(name: str) -> None:
    crit = la.create(name)
    z = torch.zeros(0, C, requires_grad=True)
    y = torch.zeros(0, dtype=torch.long)
    out = crit(z, y)
    assert out.shape == () and float(out.detach()) == 0.0
    out.backward()
    z2, y2 = _data()
    per = la.create(name, reduction="none")(z2, y2)
    assert per.shape == (N,)
    torch.testing.assert_close(la.create(name, reduction="sum")(z2, y2), per.sum())
    torch.testing.assert_close(crit(z2, y2), per.mean())


@pytest.mark.parametrize("name", ["mae", "gce", "rce", "sce", "nce", "nfl", "ngce", "nce_rce", "ldr", "taylor_ce", "alpha_loss"])
def test_ignore_index_and_one_class_present(name: str) -> None:
    z, y = _data()
    y_ign = y.clone()
    y_ign[:3] = -100
    per = la.create(name, reduction="none")(z, y)
    got = la.create(name)(z, y_ign)
    torch.testing.assert_close(got, per[3:].mean())
    same = torch.full((N,), 2)
    out = la.create(name, reduction="none")(z, same)
    assert torch.isfinite(out).all() and out.shape == (N,)


def test_perfect_prediction_gives_zero_for_bounded_losses() -> None:
    y = torch.tensor([0, 1, 2])
    z = 50.0 * F.one_hot(y, 3).double()
    for name in ("mae", "gce", "nce", "ngce", "nfl", "taylor_ce", "alpha_loss"):
        assert float(la.create(name)(z, y)) < 1e-9, name


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", IDS)
def test_bad_inputs(name: str) -> None:
    crit = la.create(name)
    z, y = _data()
    # CE (LogitClip's default base) also takes probability targets [N, C], so a float [N] is a shape error there
    with pytest.raises(ValueError if name == "logitclip" else TypeError, match="target"):
        crit(z, y.double())
    with pytest.raises(ValueError, match="target"):
        crit(z, y + C)
    with pytest.raises(ValueError, match="logits"):
        crit(z[0], y)
    with pytest.raises(ValueError, match="NaN"):
        crit(torch.full_like(z, float("nan")), y)
    with pytest.raises(TypeError, match="logits"):
        crit(z.long(), y)


@pytest.mark.parametrize("name,kwargs,exc", [
    ("gce", {"q": 1.5}, ValueError), ("gce", {"q": -0.1}, ValueError), ("ngce", {"q": 2.0}, ValueError),
    ("sce", {"alpha": -1.0}, ValueError), ("rce", {"log_zero": 1.0}, ValueError), ("nfl", {"gamma": -1.0}, ValueError),
    ("logitclip", {"tau": 0.0}, ValueError), ("logitclip", {"p": 0.5}, ValueError), ("logitclip", {"base": 3}, TypeError),
    ("logitclip", {"base": "nope"}, ValueError), ("ldr", {"temperature": 0.0}, ValueError),
    ("taylor_ce", {"order": 0}, ValueError), ("taylor_ce", {"order": 2.5}, ValueError), ("alpha_loss", {"alpha": 0.0}, ValueError),
    ("alpha_loss", {"alpha": "2"}, TypeError), ("active_passive", {"active": "focal_nope"}, ValueError),
    ("active_passive", {"passive": la.create("mae")}, ValueError), ("active_passive", {"active": 1}, TypeError),
    ("aldr", {"num_samples": 5, "alpha": 0.0}, ValueError), ("gce", {"reduction": "avg"}, ValueError),
])
def test_bad_hyperparameters(name: str, kwargs: dict[str, Any], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        la.create(name, **kwargs)


def test_registry_metadata() -> None:
    ids = {e.id for e in la.list(family="noise")}
    assert {"gce", "sce", "nce", "rce", "nce_rce", "nfl", "ngce", "nce_mae", "mae", "logitclip", "ldr", "aldr",
            "taylor_ce", "alpha_loss", "active_passive"} <= ids
    assert la.info("aldr").required == ("num_samples",)
    assert la.info("nce+rce").id == "nce_rce"
    assert la.info("logitclip").defaults["tau"] == 1.0


# ========================================================================= official definitions
def _batch(n: int, c: int, seed: int, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(n, c, generator=g, dtype=torch.float64)
    z[0, 0] = -4.0 * scale  # negative logits: where softplus and |z| normalisation differ most
    return z, torch.randint(0, c, (n,), generator=g)


# ----------------------------------------------------------------------------- ALDR
class _ALDRReference:
    """ALDRLoss_V1's forward, from its definition, in float64 (no lossatlas code).

    z' = f(z) / (||f(z)||_1 / C), f = softplus or identity; q = l1-normalise(softmax(z'/λ_old) + 1e-5);
    λ = Λ - Λ·Σ_j q_j log(C q_j) / (α log C), stored at ids *before* use (detached);
    l_i = λ_i log mean_j exp((m·1[j≠y] + z'_j - z'_y)/λ_i) - α log C/(2Λ)·(λ_i - Λ)²; mean over i.
    """

    def __init__(self, n: int, margin: float = 0.1, lam: float = 10.0, alpha: float = 2.0, softplus: bool = False) -> None:
        self.state = torch.full((n,), lam, dtype=torch.float64)
        self.margin, self.lam_ref, self.alpha, self.softplus = margin, lam, alpha, softplus

    def __call__(self, z: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        c = z.shape[1]
        f = torch.log1p(torch.exp(z)) if self.softplus else z
        zn = f / (f.abs().sum(1, keepdim=True) / c)
        lam_old = self.state[ids].unsqueeze(1)
        e = torch.exp(zn.detach() / lam_old - (zn.detach() / lam_old).max(1, keepdim=True).values)
        q = e / e.sum(1, keepdim=True) + 1e-5
        q = q / q.sum(1, keepdim=True)
        kl = (q * torch.log(c * q)).sum(1)
        lam = self.lam_ref - self.lam_ref * kl / (self.alpha * math.log(c))
        self.state[ids] = lam  # updated before it is used
        lam = self.state[ids]
        onehot = torch.nn.functional.one_hot(y, c).double()
        d = self.margin * (1 - onehot) + zn - (zn * onehot).sum(1, keepdim=True)
        per = lam * torch.log(torch.exp(d / lam.unsqueeze(1)).mean(1))
        per = per - self.alpha * math.log(c) / (2 * self.lam_ref) * (lam - self.lam_ref) ** 2
        return per.mean()


def _aldr_steps() -> list[tuple[Tensor, Tensor, Tensor]]:
    # three batches; indices overlap across steps so the stored λ is read back
    return [(*_batch(9, 6, seed=s), torch.tensor(ix)) for s, ix in
            enumerate([[0, 1, 2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10, 11, 12], [12, 0, 4, 8, 13, 14, 15, 16, 17]])]


def test_aldr_default_is_official_no_softplus() -> None:
    """The default (softplus not passed) equals ALDRLoss_V1 as experiment.py runs it: no softplus."""
    crit = _aldr(num_samples=20).double()  # margin 0.1, Λ 10, α 2 are the defaults too
    assert crit.softplus is False
    ref = _ALDRReference(20, margin=0.1, lam=10.0, alpha=2.0, softplus=False)
    for z, y, ids in _aldr_steps():
        a = z.clone().requires_grad_()
        b = z.clone().requires_grad_()
        got, want = crit(a, y, index=ids), ref(b, y, ids)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(torch.autograd.grad(got, a)[0], torch.autograd.grad(want, b)[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(crit.sample_temperature, ref.state, rtol=1e-12, atol=1e-12)


def test_aldr_default_differs_from_softplus_variant() -> None:
    """On these logits the softplus form gives another value: the default is not it."""
    z, y, ids = _aldr_steps()[0]
    ours = la.create("aldr", num_samples=20).double()(z, y, index=ids)
    softplus_ref = _ALDRReference(20, softplus=True)(z, y, ids)
    assert not torch.allclose(ours, softplus_ref, rtol=1e-3)
    torch.testing.assert_close(la.create("aldr", num_samples=20, softplus=True).double()(z, y, index=ids), softplus_ref,
                               rtol=1e-10, atol=1e-12)


def test_aldr_functional_default_is_no_softplus() -> None:
    z, y, ids = _aldr_steps()[0]
    prev = torch.full((z.shape[0],), 10.0, dtype=torch.float64)
    torch.testing.assert_close(LF.aldr(z, y, sample_temperature=prev), _ALDRReference(20)(z, y, ids), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(LF.aldr(z, y), _ALDRReference(20)(z, y, ids), rtol=1e-10, atol=1e-12)  # no state: λ_old = Λ


def test_aldr_registry_records_the_official_default() -> None:
    e = la.info("aldr")
    assert e.defaults["softplus"] is False
    assert "experiment.py" in e.defaults_source["softplus"]


# ----------------------------------------------------------------------------- NCE+MAE
def _nce_mae_closed_form(z: torch.Tensor, y: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """α·log p_y / Σ_j log p_j + β·(1 − p_y), per sample, float64."""
    logp = z - torch.logsumexp(z, 1, keepdim=True)
    logp_y = logp[torch.arange(len(y)), y]
    return alpha * logp_y / logp.sum(1) + beta * (1.0 - torch.exp(logp_y))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nce_mae_module_is_alpha_nce_plus_beta_mae(reduction: str) -> None:
    z, y = _batch(11, 7, seed=3)
    per = _nce_mae_closed_form(z, y, alpha=10.0, beta=0.5)
    want = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    torch.testing.assert_close(la.create("nce_mae", alpha=10.0, beta=0.5, reduction=reduction)(z, y), want,
                               rtol=1e-12, atol=1e-12)


def test_nce_mae_registered_function_is_nce_plus_mae_not_rce() -> None:
    """The registry's functional twin of nce_mae computes NCE + MAE (it used to be
    active_passive, whose default passive loss is RCE)."""
    z, y = _batch(11, 7, seed=4)
    want = _nce_mae_closed_form(z, y, alpha=2.0, beta=0.25).mean()
    fn = la.info("nce_mae").function
    assert fn is not None
    torch.testing.assert_close(fn(z, y, alpha=2.0, beta=0.25), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(LF.nce_mae(z, y, alpha=2.0, beta=0.25, reduction="none"),
                               _nce_mae_closed_form(z, y, alpha=2.0, beta=0.25), rtol=1e-12, atol=1e-12)
    nce_rce = LF.active_passive(z, y, active="nce", passive="rce", alpha=2.0, beta=0.25)
    assert not torch.allclose(fn(z, y, alpha=2.0, beta=0.25), nce_rce)


def test_nce_rce_registered_function_matches_module() -> None:
    z, y = _batch(11, 7, seed=5)
    fn = la.info("nce_rce").function
    assert fn is not None
    torch.testing.assert_close(fn(z, y, alpha=10.0, beta=0.1), la.create("nce_rce", alpha=10.0, beta=0.1)(z, y))


# ========================================================================= the one core: function = definition
NOISE_IDS = ["mae", "gce", "rce", "sce", "nce", "nfl", "ngce", "active_passive", "nce_rce", "nce_mae",
             "logitclip", "ldr", "aldr", "taylor_ce", "alpha_loss", "comp_sum", "smooth_adversarial_comp_sum", "ensloss"]


def test_every_noise_id_is_defined_by_its_function() -> None:
    """The registered function is la.functional.<id>, a loss_function whose Params give the
    module's defaults and their sources."""
    from lossatlas._spec import spec_of

    assert {e.id for e in la.list(family="noise")} == set(NOISE_IDS)
    for loss_id in NOISE_IDS:
        entry = la.info(loss_id)
        assert entry.function is getattr(LF, loss_id), loss_id
        spec = spec_of(entry.function)
        for name, default in spec.defaults.items():
            if name in entry.defaults:
                assert entry.defaults[name] == default, (loss_id, name)
        assert set(spec.sources) <= set(entry.defaults_source), loss_id
    assert "Zhang & Sabuncu" in la.info("gce").defaults_source["q"]
    assert "logpt.data" in la.info("nfl").defaults_source["detach"]


@pytest.mark.parametrize("call,exc,match", [
    (lambda z, y: LF.gce(z, y, q=2.0), ValueError, "q"),
    (lambda z, y: LF.nfl(z, y, detach=1), TypeError, "detach"),  # type: ignore[arg-type]  # the wrong type is the test
    (lambda z, y: LF.ldr(z, y, softplus="no"), TypeError, "softplus"),  # type: ignore[arg-type]  # the wrong type is the test
    (lambda z, y: LF.ldr(z, y, temperature=torch.ones(3, dtype=torch.float64)), ValueError, "temperature"),
    (lambda z, y: LF.ldr(z, y, temperature=-torch.ones(N, dtype=torch.float64)), ValueError, "temperature"),
    (lambda z, y: LF.ldr(z, y, temperature=torch.ones(N, dtype=torch.long)), TypeError, "temperature"),
    (lambda z, y: LF.active_passive(z, y, active_kwargs=[1]), TypeError, "active_kwargs"),  # type: ignore[arg-type]  # the wrong type is the test
    (lambda z, y: LF.logitclip(z, y, p=0.5), ValueError, "p"),
    (lambda z, y: LF.alpha_loss(z, y, alpha=-1.0), ValueError, "alpha"),
    (lambda z, y: la.create("nfl", detach=1), TypeError, "detach"),
])
def test_functions_and_modules_check_hyperparameters_by_name(call: Callable[[Tensor, Tensor], object], exc: type[Exception], match: str) -> None:
    z, y = _data()
    with pytest.raises(exc, match=match):
        call(z, y)


def _nfl_official(z: Tensor, y: Tensor, gamma: float, scale: float = 1.0) -> Tensor:
    """NormalizedFocalLoss.forward from its definition, per sample: every (1 - p)^γ factor is
    computed from the detached log p (logpt.data), the log p terms keep their gradient."""
    logp = z - torch.logsumexp(z, 1, keepdim=True)
    normalizor = (-(1 - torch.exp(logp.detach())) ** gamma * logp).sum(1)
    logpt = logp[torch.arange(len(y)), y]
    pt = torch.exp(logpt.detach())
    return scale * (-(1 - pt) ** gamma * logpt) / normalizor


def test_nfl_gradient_is_the_official_detached_one_not_the_derivative() -> None:
    """Why conformance's gradcheck exempts nfl: with the reference's detached factors the
    gradient is, by design, not the derivative of the value; detach=False is."""
    z, y = _data(scale=2.0, seed=3)
    a = z.clone().requires_grad_()
    b = z.clone().requires_grad_()
    got = LF.nfl(a, y, gamma=0.5, scale=2.0, reduction="none")
    want = _nfl_official(b, y, 0.5, 2.0)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(got.sum(), a)[0], torch.autograd.grad(want.sum(), b)[0], rtol=1e-10, atol=1e-12)
    x = z[:4].clone().requires_grad_()
    assert not torch.autograd.gradcheck(lambda t: LF.nfl(t, y[:4]), [x], eps=1e-6, atol=1e-5, rtol=1e-4, raise_exception=False)
    assert torch.autograd.gradcheck(lambda t: LF.nfl(t, y[:4], detach=False), [x], eps=1e-6, atol=1e-5, rtol=1e-4)


def _taylor_closed_form(z: Tensor, y: Tensor, order: int) -> Tensor:
    p_y = torch.softmax(z, 1)[torch.arange(len(y)), y]
    return torch.stack([(1 - p_y) ** k / k for k in range(1, order + 1)]).sum(0)


def test_active_passive_function_takes_any_registry_id_and_loss_modules() -> None:
    z, y = _batch(11, 7, seed=6)
    want = 2.0 * _nce_mae_closed_form(z, y, alpha=1.0, beta=0.0) + 0.5 * _taylor_closed_form(z, y, 3)
    by_id = LF.active_passive(z, y, active="nce", passive="taylor_ce", passive_kwargs={"order": 3}, alpha=2.0, beta=0.5,
                              reduction="none")
    torch.testing.assert_close(by_id, want, rtol=1e-12, atol=1e-12)
    by_module = LF.active_passive(z, y, active=la.create("nce", reduction="none"),
                                  passive=la.create("taylor_ce", order=3, reduction="none"), alpha=2.0, beta=0.5, reduction="none")
    torch.testing.assert_close(by_module, want, rtol=1e-12, atol=1e-12)
    crit = la.create("active_passive", passive="taylor_ce", passive_kwargs={"order": 3}, alpha=2.0, beta=0.5)
    kw = crit.functional_kwargs()
    assert isinstance(kw["passive"], torch.nn.Module) and kw["passive_kwargs"] is None
    torch.testing.assert_close(crit(z, y), want.mean(), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="reduction='none'"):
        LF.active_passive(z, y, active=la.create("nce"))
    with pytest.raises(ValueError, match="active_kwargs"):
        LF.active_passive(z, y, active=la.create("nce", reduction="none"), active_kwargs={"scale": 2.0})
    with pytest.raises(ValueError, match="passive"):
        LF.active_passive(z, y, passive="no_such_loss")


def _clip_reference(z: Tensor, tau: float, eps: float = 1e-7) -> Tensor:
    norms = z.pow(2).sum(1, keepdim=True).sqrt() + eps
    return torch.where(norms > 1 / tau, z / (tau * norms), z)


def _focal_reference(z: Tensor, y: Tensor, gamma: float) -> Tensor:
    logp_y = (z - torch.logsumexp(z, 1, keepdim=True))[torch.arange(len(y)), y]
    return -((1 - torch.exp(logp_y)) ** gamma) * logp_y


def test_logitclip_function_takes_an_id_a_module_or_a_function_as_base() -> None:
    z, y = _data(scale=5.0)
    want = _focal_reference(_clip_reference(z, 0.5), y, 2.0)
    by_id = LF.logitclip(z, y, tau=0.5, base="focal", base_kwargs={"gamma": 2.0}, reduction="none")
    torch.testing.assert_close(by_id, want, rtol=1e-12, atol=1e-12)
    by_module = LF.logitclip(z, y, tau=0.5, base=la.create("focal", gamma=2.0, reduction="none"), reduction="none")
    torch.testing.assert_close(by_module, want, rtol=1e-12, atol=1e-12)
    by_function = LF.logitclip(z, y, tau=0.5, base=LF.focal, gamma=2.0)  # call keywords go on to the base
    torch.testing.assert_close(by_function, want.mean(), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="reduction"):
        LF.logitclip(z, y, base=la.create("mae"), reduction="none")
    with pytest.raises(ValueError, match="base_kwargs"):
        LF.logitclip(z, y, base=la.create("mae"), base_kwargs={"scale": 2.0})
    with pytest.raises(ValueError, match="base"):
        LF.logitclip(z, y, base="no_such_loss")
    with pytest.raises(TypeError, match="base"):
        LF.logitclip(z, y, base=3)  # type: ignore[arg-type]  # the wrong type is the test


def test_aldr_function_takes_the_state_explicitly_and_updates_it_in_place() -> None:
    ref = _ALDRReference(20)
    state = torch.full((20,), 10.0, dtype=torch.float64)
    for z, y, ids in _aldr_steps():
        got = LF.aldr(z, y, index=ids, sample_temperature=state)
        torch.testing.assert_close(got, ref(z, y, ids), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(state, ref.state, rtol=1e-12, atol=1e-12)


def test_aldr_functional_kwargs_hand_over_a_copy_of_the_state() -> None:
    steps = _aldr_steps()
    crit = _aldr(num_samples=20).double()
    crit(steps[0][0], steps[0][1], index=steps[0][2])  # the state is no longer all Λ
    before = crit.sample_temperature.clone()
    kw = crit.functional_kwargs()
    z, y, ids = steps[1]
    by_function = LF.aldr(z, y, index=ids, **kw)
    assert torch.equal(crit.sample_temperature, before)  # the function changed the copy only
    torch.testing.assert_close(by_function, crit(z, y, index=ids), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kw["sample_temperature"], crit.sample_temperature, rtol=0, atol=0)


def test_aldr_function_state_errors() -> None:
    z, y = _data()
    with pytest.raises(ValueError, match="sample_temperature"):
        LF.aldr(z, y, index=torch.arange(N))
    with pytest.raises(ValueError, match="shape"):
        LF.aldr(z, y, sample_temperature=torch.full((N + 1,), 10.0))
    with pytest.raises(ValueError, match="sample_temperature"):
        LF.aldr(z, y, sample_temperature=torch.full((N,), 10, dtype=torch.long))
    with pytest.raises(ValueError, match="num_samples"):
        LF.aldr(z, y, index=torch.arange(N) + 20, sample_temperature=torch.full((20,), 10.0))


# ------------------------------------------------------------------------- conventions at non-default settings
# (issue 26: each convention of a paper also checked by a float64 closed form away from its defaults)


def test_conventions_closed_forms_at_non_default_settings() -> None:
    z, y = _data(n=9, c=6, scale=1.5, seed=3)
    c = z.shape[1]
    p = torch.softmax(z, 1)
    p_y = p.gather(1, y[:, None]).squeeze(1)
    logp = torch.log(p)
    nll = -logp
    # GCE (Zhang & Sabuncu 2018): (1 - p_y^q) / q, q = 0.4, mean over samples
    torch.testing.assert_close(LF.gce(z, y, q=0.4), ((1 - p_y**0.4) / 0.4).mean())
    # MAE (APL code): scale · (1 - p_y)
    torch.testing.assert_close(LF.mae(z, y, scale=3.5, reduction="sum"), (3.5 * (1 - p_y)).sum())
    # NCE (Ma et al. 2020): scale · (-log p_y) / Σ_j (-log p_j)
    torch.testing.assert_close(LF.nce(z, y, scale=2.5, reduction="none"), 2.5 * nll.gather(1, y[:, None]).squeeze(1) / nll.sum(1))
    # NFL: scale · (1-p_y)^γ (-log p_y) / Σ_j (1-p_j)^γ (-log p_j), γ = 1.5
    fl = (1 - p) ** 1.5 * nll
    torch.testing.assert_close(LF.nfl(z, y, gamma=1.5, scale=2.0, reduction="none"),
                               2.0 * fl.gather(1, y[:, None]).squeeze(1) / fl.sum(1))
    # RCE (Wang et al. 2019): -Σ_j p_j log q_j with q the one-hot target and log 0 := A; = -A · (1 - p_y)
    a = math.log(1e-3)
    torch.testing.assert_close(LF.rce(z, y, scale=0.5, log_zero=a, reduction="none"), 0.5 * -a * (1 - p_y))
    # NGCE: scale · (1 - p_y^q) / Σ_j (1 - p_j^q) = scale · (1 - p_y^q) / (C - Σ_j p_j^q)
    torch.testing.assert_close(LF.ngce(z, y, q=0.3, scale=1.5, reduction="none"),
                               1.5 * (1 - p_y**0.3) / (c - (p**0.3).sum(1)))
    # Taylor CE (Feng et al. 2020): Σ_{k=1}^{t} (1 - p_y)^k / k, t = 4
    torch.testing.assert_close(LF.taylor_ce(z, y, order=4, reduction="none"), sum((1 - p_y) ** k / k for k in range(1, 5)))
    # α-loss (Sypherd et al. 2022): α/(α-1) · (1 - p_y^{(α-1)/α}), α = 3
    torch.testing.assert_close(LF.alpha_loss(z, y, alpha=3.0, reduction="none"), 1.5 * (1 - p_y ** (2 / 3)))
    # LDR (Zhu et al. 2023): λ · log mean_j exp((m·1[j≠y] + z̃_j - z̃_y)/λ), z̃ = softplus(z) / mean_j softplus(z)
    sp = F.softplus(z)
    zt = sp / sp.mean(1, keepdim=True)
    d = 0.3 * (1 - F.one_hot(y, c).double()) + zt - zt.gather(1, y[:, None])
    lam = 2.0
    ref = lam * torch.log(torch.exp(d / lam).mean(1))
    torch.testing.assert_close(LF.ldr(z, y, margin=0.3, temperature=lam, reduction="none"), ref)
    # and without softplus: divided by the mean |z|
    zt2 = z / z.abs().mean(1, keepdim=True)
    d2 = 0.3 * (1 - F.one_hot(y, c).double()) + zt2 - zt2.gather(1, y[:, None])
    torch.testing.assert_close(LF.ldr(z, y, margin=0.3, temperature=lam, softplus=False, reduction="none"),
                               lam * torch.log(torch.exp(d2 / lam).mean(1)))


# ------------------------------------------------------------------------- killing surviving mutants (issue 26)
def test_aldr_temperature_with_two_classes_closed_form() -> None:
    """Two classes are enough (log C > 0): λ = Λ - Λ·KL(q || uniform) / (α log 2)."""
    g = torch.Generator().manual_seed(9)
    zn = torch.randn(5, 2, generator=g, dtype=torch.float64)
    prev = torch.full((5,), 3.0, dtype=torch.float64)
    q = torch.softmax(zn / 3.0, 1) + 1e-5
    q = q / q.sum(1, keepdim=True)
    kl = (q * torch.log(2 * q)).sum(1)
    torch.testing.assert_close(LF.aldr_temperature(zn, prev, temperature=4.0, alpha=1.5), 4.0 - 4.0 * kl / (1.5 * math.log(2)))
    with pytest.raises(ValueError, match="at least 2 classes"):
        LF.aldr_temperature(zn[:, :1], prev)


@pytest.mark.parametrize("id_", IDS)
def test_functions_validate_by_default(id_: str) -> None:
    """Called without ``validate``, every noise loss checks the logits' values (NaN -> ValueError
    naming logits)."""
    z, y = _data()
    z[0, 1] = float("nan")
    fn = getattr(LF, id_)
    with pytest.raises(ValueError, match="logits"):
        fn(z, y)


def test_active_passive_with_validate_false_checks_nothing() -> None:
    z, y = _data()
    z[0, 1] = float("nan")
    with pytest.raises(ValueError, match="logits"):
        LF.active_passive(z, y)
    out = LF.active_passive(z, y, validate=False, reduction="none")
    assert torch.isnan(out[0]) and bool(torch.isfinite(out[1:]).all())


def test_rce_positive_log_zero_is_refused_by_name() -> None:
    z, y = _data()
    with pytest.raises(ValueError, match=r"^log_zero must be <= 0.0, got 1.0"):
        LF.rce(z, y, log_zero=1.0)


def test_active_passive_function_parts_receive_their_kwargs() -> None:
    """A plain function as a part gets its ``*_kwargs`` (here GCE's q and MAE's scale)."""
    z, y = _data()
    got = LF.active_passive(z, y, active=LF.gce, passive=LF.mae, active_kwargs={"q": 0.3},
                            passive_kwargs={"scale": 2.0}, alpha=0.5, beta=1.5, reduction="none")
    p_y = torch.softmax(z, 1).gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(got, 0.5 * (1 - p_y**0.3) / 0.3 + 1.5 * 2.0 * (1 - p_y))


# --- B8 comp-sum losses (Mao, Mohri, Zhong 2023) -------------------------------------------------

def _comp_sum_reference(z: Tensor, y: Tensor, tau: float) -> Tensor:
    """Φ_τ(Σ_{j≠y} e^{z_j − z_y}) written from the paper's definition (the pairwise sum, not p_y)."""
    diff = z - z.gather(1, y[:, None])
    u = diff.exp().sum(1) - 1.0  # the j = y term is e^0 = 1
    if tau == 1.0:
        return torch.log1p(u)
    return ((1 + u) ** (1 - tau) - 1) / (1 - tau)


@pytest.mark.parametrize("tau", [0.0, 0.3, 0.5, 1.0, 1.5, 2.0, 3.0])
def test_comp_sum_is_the_paper_composition_of_the_pairwise_sum(tau):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(7, 5, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 5, (7,), generator=g)
    out = LF.comp_sum(z, y, tau=tau, reduction="none")
    assert torch.allclose(out, _comp_sum_reference(z, y, tau), rtol=1e-12, atol=1e-12)
    gradcheck_loss(lambda x: LF.comp_sum(x, y, tau=tau), z)


def test_comp_sum_family_members():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(9, 4, generator=g, dtype=torch.float64) * 3
    y = torch.arange(9) % 4
    p_y = torch.softmax(z, 1).gather(1, y[:, None]).squeeze(1)
    none = {"reduction": "none"}
    assert torch.allclose(LF.comp_sum(z, y, tau=0.0, **none), 1 / p_y - 1)  # sum exponential
    assert torch.allclose(LF.comp_sum(z, y, tau=1.0, **none), F.cross_entropy(z, y, reduction="none"))  # logistic
    assert torch.allclose(LF.comp_sum(z, y, tau=2.0, **none), 1 - p_y)  # mean absolute error
    assert torch.allclose(LF.comp_sum(z, y, tau=1.7, **none), LF.gce(z, y, q=0.7, reduction="none"))  # GCE, q = τ − 1
    for tau in (0.0, 0.5, 1.5):  # the α-loss family re-parametrised: α = 1 / (2 − τ)
        assert torch.allclose(LF.comp_sum(z, y, tau=tau, **none), LF.alpha_loss(z, y, alpha=1 / (2 - tau), **none))
    # continuous in τ at the logistic loss, and decreasing in τ (Φ_τ(u) decreases with τ for u > 0)
    assert torch.allclose(LF.comp_sum(z, y, tau=1 + 1e-7, **none), LF.comp_sum(z, y, tau=1.0, **none), atol=1e-5)
    values = [LF.comp_sum(z, y, tau=t, **none) for t in (0.0, 0.5, 1.0, 1.5, 2.0)]
    assert all(bool((a >= b).all()) for a, b in zip(values, values[1:]))


def test_comp_sum_bad_input_and_module():
    z, y = torch.randn(3, 4), torch.tensor([0, 1, 3])
    with pytest.raises(ValueError, match="tau"):
        LF.comp_sum(z, y, tau=-0.5)
    with pytest.raises(TypeError, match="tau"):
        la.create("comp_sum", tau="1")
    with pytest.raises(ValueError, match="target"):
        LF.comp_sum(z, torch.tensor([0, 1, 4]))
    crit = la.create("compsum", tau=0.5)
    assert torch.equal(crit(z, y), LF.comp_sum(z, y, tau=0.5))
    assert_finite_extremes(lambda a, b: LF.comp_sum(a, b, tau=1.5), num_classes=4)


# --- B8 smooth adversarial comp-sum losses (Mao, Mohri, Zhong 2023, section 6) --------------------

def _smooth_adv_reference(z: Tensor, y: Tensor, adv: Tensor, tau: float, nu: float, vector: str) -> Tensor:
    """Φ_τ(Σ_{j≠y} e^{z_j − z_y}) + ν ‖Δ(z′) − Δ(z)‖₂ (Δ(z)_j = z_j − z_y), or ‖z′ − z‖₂ for 'scores',
    written row by row from the paper's definition."""
    rows = []
    for i in range(z.shape[0]):
        k = int(y[i])
        if vector == "margins":
            d = (adv[i] - adv[i, k]) - (z[i] - z[i, k])
        else:
            d = adv[i] - z[i]
        rows.append(math.sqrt(sum(float(v) ** 2 for v in d)))
    return _comp_sum_reference(z, y, tau) + nu * torch.tensor(rows, dtype=z.dtype)


@pytest.mark.parametrize("vector", ["margins", "scores"])
@pytest.mark.parametrize(("tau", "nu"), [(1.0, 1.0), (0.5, 0.3), (1.5, 2.5), (2.0, 0.7)])
def test_smooth_adversarial_comp_sum_is_the_paper_definition(tau, nu, vector):
    z, y = _data(seed=11)
    adv = z + 0.4 * torch.randn(z.shape, generator=torch.Generator().manual_seed(12), dtype=z.dtype)
    out = LF.smooth_adversarial_comp_sum(z, y, adv, tau=tau, nu=nu, vector=vector, reduction="none")
    torch.testing.assert_close(out, _smooth_adv_reference(z, y, adv, tau, nu, vector), rtol=1e-12, atol=1e-12)
    gradcheck_loss(lambda a, b: LF.smooth_adversarial_comp_sum(a, y, b, tau=tau, nu=nu, vector=vector), z, adv)


def test_smooth_adversarial_comp_sum_identities():
    z, y = _data(seed=13)
    g = torch.Generator().manual_seed(14)
    adv = z + 0.5 * torch.randn(z.shape, generator=g, dtype=z.dtype)
    none = {"reduction": "none"}
    base = LF.comp_sum(z, y, tau=0.5, **none)
    # ν = 0, or an attack that moves nothing, is the comp-sum loss
    torch.testing.assert_close(LF.smooth_adversarial_comp_sum(z, y, adv, tau=0.5, nu=0.0, **none), base)
    torch.testing.assert_close(LF.smooth_adversarial_comp_sum(z, y, z.clone(), tau=0.5, nu=3.0, **none), base)
    # Δ is invariant to adding a constant to a row: 'margins' ignores per-row shifts of either view, 'scores' does not
    shift = torch.randn(z.shape[0], 1, generator=g, dtype=z.dtype)
    m = LF.smooth_adversarial_comp_sum(z, y, adv, nu=2.0, **none)
    torch.testing.assert_close(LF.smooth_adversarial_comp_sum(z + shift, y, adv - shift, nu=2.0, **none), m)
    s = LF.smooth_adversarial_comp_sum(z, y, adv, nu=2.0, vector="scores", **none)
    assert not torch.allclose(LF.smooth_adversarial_comp_sum(z, y, adv + shift, nu=2.0, vector="scores", **none), s)
    # the algorithm's score-vector term bounds the definition's: ‖a − a_y 1‖ ≤ (1 + √C) ‖a‖, a = z′ − z
    ce = LF.comp_sum(z, y, **none)
    assert bool(((m - ce) <= (1 + math.sqrt(C)) * (s - ce) + 1e-12).all())
    # the smooth term grows with the perturbation: scaling a = z′ − z by 2 doubles it
    two = LF.smooth_adversarial_comp_sum(z, y, z + 2 * (adv - z), nu=2.0, **none)
    torch.testing.assert_close(two - ce, 2 * (m - ce))


def test_smooth_adversarial_comp_sum_masked_class_leaves_the_smooth_term():
    z, y = _data(seed=15)
    adv = z + 0.3
    adv[:, 1:] += 0.2 * torch.arange(1, C, dtype=z.dtype)  # moves every class but 0
    y = torch.where(y == 0, torch.ones_like(y), y)
    zm, am = z.clone(), adv.clone()
    zm[:, 0] = float("-inf")
    am[:, 0] = float("-inf")
    out = LF.smooth_adversarial_comp_sum(zm, y, am, nu=1.5, reduction="none")
    # the same loss as over the classes 1..C-1 only (class 0 has probability 0 in both views)
    ref = LF.smooth_adversarial_comp_sum(z[:, 1:].contiguous(), y - 1, adv[:, 1:].contiguous(), nu=1.5, reduction="none")
    torch.testing.assert_close(out, ref)


def test_smooth_adversarial_comp_sum_bad_input():
    z, y = torch.randn(3, 4), torch.tensor([0, 1, 3])
    with pytest.raises(ValueError, match="adv_logits"):
        LF.smooth_adversarial_comp_sum(z, y, torch.randn(3, 5))
    with pytest.raises(ValueError, match="adv_logits"):
        LF.smooth_adversarial_comp_sum(z, y, torch.randn(4, 4))
    with pytest.raises(TypeError, match="adv_logits"):
        LF.smooth_adversarial_comp_sum(z, y, torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="adv_logits"):
        LF.smooth_adversarial_comp_sum(z, y, torch.randn(3, 4, dtype=torch.float64))
    bad = torch.randn(3, 4)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="adv_logits"):
        LF.smooth_adversarial_comp_sum(z, y, bad)
    with pytest.raises(ValueError, match="nu"):
        la.create("smooth_adversarial_comp_sum", nu=-1.0)
    with pytest.raises(ValueError, match="vector"):
        LF.smooth_adversarial_comp_sum(z, y, z, vector="logits")
    with pytest.raises(ValueError, match="tau"):
        LF.smooth_adversarial_comp_sum(z, y, z, tau=-1.0)
    crit = la.create("adv_comp_sum", tau=0.5, nu=0.2)
    adv = z + 0.1
    assert torch.equal(crit(z, y, adv), LF.smooth_adversarial_comp_sum(z, y, adv, tau=0.5, nu=0.2))


# --- B9 EnsLoss (Dai 2025): random calibrated loss-derivatives per batch --------------------------

def _ensloss_official_grad(output: Tensor, target: Tensor, lam: float) -> Tensor:
    """statmlben/ensLoss losses.py::ensLoss.forward, written out (CPU, float32 as its torch.randn draws):
    the gradient of mean(g.detach() * s) with respect to the output."""
    t = 2.0 * target - 1.0
    s = output.flatten() * t.flatten()
    eps = torch.randn((len(t),))
    inv = torch.exp(eps) if lam == 0.0 else torch.where(1.0 + lam * eps > 0.0, 1.0 + lam * eps, 0.0) ** (1.0 / lam)
    rd = torch.sort(-inv)[0]
    rd = torch.maximum(rd, torch.tensor(-1.0))
    g = torch.zeros(len(t))
    g[torch.sort(s)[1]] = rd
    pos = s.detach() > 1.0
    g[pos] *= 1 / s.detach()[pos]
    g = g.detach() - 1e-6
    return g * t / len(t)  # ∂ mean(g s) / ∂ output


@pytest.mark.parametrize("lam", [0.0, 0.5, -0.5])
def test_ensloss_gradient_is_the_official_one_under_the_same_seed(lam):
    g = torch.Generator().manual_seed(41)
    scores = 2.0 * torch.randn(64, generator=g)
    target = (torch.rand(64, generator=g) < 0.5).float()
    x = scores.clone().requires_grad_()
    torch.manual_seed(5)
    (got,) = torch.autograd.grad(LF.ensloss(x, target, lam=lam), x)
    torch.manual_seed(5)
    torch.testing.assert_close(got, _ensloss_official_grad(scores, target, lam), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("lam", [-1.0, -0.3, 0.0, 0.4, 1.0, 2.0])
def test_each_sampled_ensloss_is_convex_and_calibrated(lam):
    """Bartlett et al.'s conditions on every draw: φ' non-decreasing in the margin (convex φ) and
    φ'(0) < 0 (here every φ' < 0); also φ' ≥ −1 − 1e-6 (the official floor)."""
    g = torch.Generator().manual_seed(42)
    for seed in range(20):
        z = 3.0 * torch.randn(50, generator=g, dtype=torch.float64)
        d = LF.ensloss_derivatives(z, lam=lam, generator=torch.Generator().manual_seed(seed))
        order = z.argsort()
        assert bool((d[order].diff() >= 0).all()), (lam, seed)
        assert bool((d < 0).all()) and bool((d >= -1.0 - 1e-6).all())
        # the loss those derivatives define (the piecewise-linear integral through the sorted margins) is convex:
        # its chords' slopes are non-decreasing
        zs, ds = z[order], d[order]
        phi = torch.cat([torch.zeros(1, dtype=z.dtype), torch.cumsum(0.5 * (ds[1:] + ds[:-1]) * zs.diff(), 0)])
        slopes = phi.diff() / zs.diff()
        assert bool((slopes.diff() >= -1e-12).all())


def test_ensloss_value_gradient_and_determinism():
    g = torch.Generator().manual_seed(43)
    scores = 2.0 * torch.randn(12, generator=g, dtype=torch.float64)
    target = torch.arange(12) % 2
    z = (2.0 * target - 1.0) * scores
    # the gradient of the value is the drawn derivative (the value is differentiated exactly: gradcheck)
    x = scores.clone().requires_grad_()
    (grad,) = torch.autograd.grad(LF.ensloss(x, target, generator=torch.Generator().manual_seed(1), reduction="sum"), x)
    d = LF.ensloss_derivatives(z, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(grad, d * (2.0 * target - 1.0), rtol=1e-12, atol=1e-15)
    gradcheck_loss(lambda s: LF.ensloss(s, target, lam=0.5, generator=torch.Generator().manual_seed(2)), scores)
    # the value: g ψ(z) − 1e-6 z, ψ continuous at z = 1
    v = LF.ensloss(scores, target, generator=torch.Generator().manual_seed(1), reduction="none")
    g_draw = torch.where(z > 1, (d + 1e-6) * z, d + 1e-6)
    psi = torch.where(z > 1, 1 + torch.log(z.clamp_min(1)), z)
    torch.testing.assert_close(v, g_draw * psi - 1e-6 * z, rtol=1e-12, atol=1e-15)
    # reproducible under a seed, a fresh draw on every call
    a, b = la.create("ensloss", seed=7), la.create("ensloss", seed=7)
    first = a(scores, target)
    assert torch.equal(first, b(scores, target))
    assert not torch.equal(a(scores, target), first)
    c = la.create("ensloss", seed=7)
    kwargs = c.functional_kwargs()
    assert torch.equal(LF.ensloss(scores, target, **kwargs), c(scores, target))


def test_ensloss_bad_input():
    s, y = torch.randn(4), torch.tensor([0, 1, 1, 0])
    with pytest.raises(ValueError, match="target"):
        LF.ensloss(s, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="scores"):
        LF.ensloss(torch.randn(4, 2), y)
    with pytest.raises(ValueError, match="target"):
        LF.ensloss(s, torch.tensor([0, 1, 1]))
    with pytest.raises(TypeError, match="lam"):
        LF.ensloss(s, y, lam="0")
    with pytest.raises(TypeError, match="seed"):
        la.create("ensloss", seed=True)
    with pytest.raises(ValueError, match="scores"):
        LF.ensloss(torch.tensor([0.0, float("nan"), 1.0, 2.0]), y)
