"""Every numeric guard, tested where it acts (issue 26).

A guard (a clamp, an eps floor, a log-of-zero replacement, a ``-inf`` mask, a safe division,
the fused kernel's underflow fallback) only changes a result on some inputs; a test of
finiteness alone lets a removed or moved guard through. Each test here evaluates the VALUE
and the GRADIENT on inputs inside the guarded region and compares both with a reference
computed independently: mpmath at 50 digits (central differences with step 1e-20 for the
gradient, or a closed form where the guard defines the gradient), written from the official
code's definition, guard included. Inputs outside the region sit in the same batches, so a
guard moved to a wider region fails too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import mpmath
import pytest
import torch

import lossatlas as la
from lossatlas._paths import force_path
from lossatlas.functional.metric import _unpg_head

mp = mpmath.mp
mpf = mpmath.mpf
F = la.functional
NEG_INF = float("-inf")
MP_NEG_INF = mpmath.ninf
H = mpf(10) ** -20
TINY64 = torch.finfo(torch.float64).tiny

MpFn = Callable[[list[Any]], Any]


@pytest.fixture(autouse=True)
def _fifty_digits() -> Any:
    with mp.workdps(50):
        yield


# ----------------------------------------------------------------------------- helpers
def leaf(values: Any, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, requires_grad=True)


def flat(t: torch.Tensor) -> list[Any]:
    """The tensor's values as exact mpf numbers (a float converts exactly)."""
    return [mpf(v) for v in t.detach().double().reshape(-1).tolist()]


def rows_of(xs: Sequence[Any], width: int) -> list[list[Any]]:
    return [list(xs[i:i + width]) for i in range(0, len(xs), width)]


def num_grad(f: MpFn, xs: list[Any], h: Any = H) -> list[Any]:
    """Central differences of ``f`` at ``xs`` (0 for the non-finite coordinates: masked entries)."""
    out = []
    for k, x in enumerate(xs):
        if not mpmath.isfinite(x):
            out.append(mpf(0))
            continue
        up, dn = list(xs), list(xs)
        up[k], dn[k] = x + h, x - h
        out.append((f(up) - f(dn)) / (2 * h))
    return out


def assert_close(actual: torch.Tensor, expected: Sequence[Any], rtol: float = 1e-10, atol: float = 1e-12,
                 what: str = "") -> None:
    got = actual.detach().double().reshape(-1).tolist()
    want = [float(v) for v in expected]
    assert len(got) == len(want), f"{what}: {len(got)} values, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        if math.isinf(w):
            assert g == w, f"{what}[{i}]: got {g}, expected {w}"
        else:
            assert math.isfinite(g) and abs(g - w) <= atol + rtol * abs(w), f"{what}[{i}]: got {g!r}, expected {w!r}"


def grad_of(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(out.sum(), x)
    return g


def mp_log_softmax(row: Sequence[Any]) -> list[Any]:
    """``log p_j = −log(1 + Σ_{k≠j} e^{z_k − z_j})``: exact for any gap (``−inf`` logits: p = 0)."""
    out = []
    for j, zj in enumerate(row):
        if zj == MP_NEG_INF:
            out.append(MP_NEG_INF)
        else:
            out.append(-mpmath.log1p(mpmath.fsum(mpmath.exp(zk - zj) for k, zk in enumerate(row) if k != j)))
    return out


def mp_softmax(row: Sequence[Any]) -> list[Any]:
    return [mpmath.exp(v) for v in mp_log_softmax(row)]


def mp_one_minus_softmax(row: Sequence[Any]) -> list[Any]:
    """``1 − p_j = Σ_{k≠j} p_k`` (no cancellation)."""
    p = mp_softmax(row)
    return [mpmath.fsum(p[k] for k in range(len(p)) if k != j) for j in range(len(p))]


def mp_sigmoid(z: Any) -> Any:
    return 1 / (1 + mpmath.exp(-z))


def mp_lse(xs: Sequence[Any]) -> Any:
    finite = [x for x in xs if x != MP_NEG_INF]
    if not finite:
        return MP_NEG_INF
    m = max(finite)
    return m + mpmath.log(mpmath.fsum(mpmath.exp(x - m) for x in finite))


def mp_unit(row: Sequence[Any]) -> list[Any]:
    n = mpmath.sqrt(mpmath.fsum(v * v for v in row))
    return [v / n for v in row]


def mp_dot(a: Sequence[Any], b: Sequence[Any]) -> Any:
    return mpmath.fsum(x * y for x, y in zip(a, b))


def mp_dist(a: Sequence[Any], b: Sequence[Any]) -> Any:
    return mpmath.sqrt(mpmath.fsum((x - y) ** 2 for x, y in zip(a, b)))


# ============================================================================= the CE kernel (_fused.py)
@pytest.mark.parametrize("dtype, gaps", [
    (torch.float32, (0.5, 80.0, 100.0, 200.0)),  # p_y normal-but-low, subnormal, underflowing to 0
    (torch.float64, (0.5, 700.0, 740.0, 800.0)),
])
def test_fused_ce_underflow_fallback(dtype: torch.dtype, gaps: tuple[float, ...]) -> None:
    """_fused.py `_softmax_and_nll`: target probabilities below tiny·2^24 take lse − u_y."""
    z = leaf([[0.0, -g, 1.5] for g in gaps], dtype)
    y = torch.ones(len(gaps), dtype=torch.long)
    with force_path("fused"):
        out = F.cross_entropy(z, y, reduction="none")
        mean = F.cross_entropy(z, y)
    rows = rows_of(flat(z), 3)
    want = [mp_lse(r) - r[1] for r in rows]
    rtol = 2e-6 if dtype == torch.float32 else 1e-12
    assert_close(out, want, rtol=rtol, what="per-row CE")
    # gradient of the mean: (p − e_y) / N, p the exact softmax
    expected = []
    for r in rows:
        p = mp_softmax(r)
        expected += [(p[j] - (1 if j == 1 else 0)) / len(rows) for j in range(3)]
    assert_close(grad_of(mean, z), expected, rtol=rtol, atol=1e-7 if dtype == torch.float32 else 1e-15, what="grad")


@pytest.mark.parametrize("path", ["plain", "fused"])
@pytest.mark.parametrize("loss", ["cross_entropy", "focal"])
@pytest.mark.parametrize("weighted", [False, True])
def test_mean_over_nothing_is_zero_with_zero_gradient(path: str, loss: str, weighted: bool) -> None:
    """_fused.py: the mean's divisors (row weights clamp_min(tiny) in the fused kernel, the
    plain CE's total weight clamp_min(tiny), `_denominator`'s clamp_min(1) / clamp_min(tiny))."""
    z = leaf([[0.3, -0.2, 1.1], [2.0, 0.1, -1.0]])
    y = torch.tensor([-100, -100])
    kw: dict[str, Any] = {"weight": torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)} if weighted else {}
    with force_path(path):
        out = getattr(F, loss)(z, y, **kw)
    assert float(out.detach()) == 0.0
    assert torch.equal(grad_of(out, z), torch.zeros_like(z))


def _focal_ref(gamma: float, targets: Sequence[int]) -> MpFn:
    def f(xs: list[Any]) -> Any:
        total = mpf(0)
        for r, t in zip(rows_of(xs, 3), targets):
            lp = mp_log_softmax(r)[t]
            total += mp_one_minus_softmax(r)[t] ** gamma * -lp
        return total
    return f


@pytest.mark.parametrize("path", ["plain", "fused"])
def test_focal_gamma_below_one_at_certain_rows(path: str) -> None:
    """_fused.py `_focal_terms` / `_focal_from_ce`: q = 1 − p_t clamped at tiny for γ < 1
    (d q^γ/dq is infinite at q = 0, reached where p_t rounds to 1)."""
    z = leaf([[0.0, -800.0, -800.0], [0.3, -0.2, 1.0], [0.0, -30.0, -30.0], [-0.7, 0.4, 0.1]])
    y = [0, 2, 0, 1]
    with force_path(path):
        out = F.focal(z, torch.tensor(y), gamma=0.5, reduction="none")
    xs = flat(z)
    ref = _focal_ref(0.5, y)
    per_row = [_focal_ref(0.5, [t])(r) for r, t in zip(rows_of(xs, 3), y)]
    assert_close(out, per_row, what="focal value")
    assert_close(grad_of(out, z), num_grad(ref, xs), atol=1e-14, what="focal grad")


# ============================================================================= imbalance.py
def test_sigmoid_focal_gamma_below_one_where_p_t_rounds_to_one() -> None:
    """imbalance.py `sigmoid_focal`: 1 − p_t clamped at tiny for γ < 1."""
    z = leaf([[40.0, -800.0, 0.3], [-40.0, 2.0, -1.5]])
    t = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    out = F.sigmoid_focal(z, t, gamma=0.5, alpha=0.25, reduction="none")
    tt = flat(t)

    def elem(zv: Any, yv: Any) -> Any:
        if yv == 1:
            one_minus_pt, ce = 1 / (1 + mpmath.exp(zv)), mpmath.log1p(mpmath.exp(-zv))
        else:
            one_minus_pt, ce = mp_sigmoid(zv), mpmath.log1p(mpmath.exp(zv))
        a = mpf(0.25) if yv == 1 else 1 - mpf(0.25)
        return a * one_minus_pt ** mpf(0.5) * ce

    xs = flat(z)
    assert_close(out, [elem(v, w) for v, w in zip(xs, tt)], what="value")
    assert_close(grad_of(out, z), num_grad(lambda v: mpmath.fsum(elem(a, b) for a, b in zip(v, tt)), xs),
                 atol=1e-20, what="grad")


def test_label_smoothing_over_a_masked_class_is_infinite_not_an_error() -> None:
    """imbalance.py `_smoothing_target_error`: ``-inf`` at a non-target class gives +inf
    (ε/C on log 0) with the finite gradient (p − t)/N; at a target it is an error."""
    z = leaf([[0.5, NEG_INF, 1.0], [0.2, -0.3, 0.1]])
    eps = 0.1
    out = F.cross_entropy(z, torch.tensor([0, 1]), label_smoothing=eps)
    assert float(out.detach()) == math.inf
    expected = []
    for r, t in zip(rows_of(flat(z), 3), (0, 1)):
        p = mp_softmax(r)
        expected += [(p[j] - ((1 - mpf(eps)) * (j == t) + mpf(eps) / 3)) / 2 for j in range(3)]
    assert_close(grad_of(out, z), expected, what="grad")
    with pytest.raises(ValueError, match="logits"):
        F.cross_entropy(z.detach(), torch.tensor([1, 1]), label_smoothing=eps)


def test_weighted_label_smoothing_masked_zero_weight_class_and_ignored_rows() -> None:
    """_fused.py `_smoothed_weighted_ce`: a zero-weight masked class adds 0 (not 0·∞), an
    ignored row with a masked weighted class adds 0 (not +∞), and Σ w_y = 0 gives 0."""
    w = [1.0, 0.0, 2.0]
    eps = 0.2
    z = leaf([[0.5, NEG_INF, 1.0], [0.2, 0.1, -0.3], [0.0, 0.3, NEG_INF]])
    y = [0, 2, -100]
    out = F.cross_entropy(z, torch.tensor(y), weight=torch.tensor(w, dtype=torch.float64), label_smoothing=eps)

    def ref(xs: list[Any]) -> Any:
        total, den = mpf(0), mpf(0)
        for r, t in zip(rows_of(xs, 3), y):
            if t == -100:
                continue
            lp = mp_log_softmax(r)
            total += (1 - mpf(eps)) * w[t] * -lp[t] + mpf(eps) / 3 * mpmath.fsum(
                w[j] * -lp[j] for j in range(3) if w[j] > 0)
            den += w[t]
        return total / den

    xs = flat(z)
    assert_close(out.reshape(1), [ref(xs)], what="value")
    assert_close(grad_of(out, z), num_grad(ref, xs), what="grad")
    # no target class carries weight: Σ_i w_{y_i} = 0 while the smoothing sum is not 0
    z2 = leaf([[0.5, -0.1, 1.0], [0.2, 0.1, -0.3]])
    out2 = F.cross_entropy(z2, torch.tensor([0, 1]), weight=torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64),
                           label_smoothing=eps)
    assert float(out2.detach()) == 0.0
    assert torch.equal(grad_of(out2, z2), torch.zeros_like(z2))


# ============================================================================= _common.py reduce_loss
def test_weighted_mean_with_nothing_counted() -> None:
    """_common.py `reduce_loss`: Σ w clamped at tiny (all ignored / all masked → 0, zero gradient)."""
    z = leaf([[0.3, -0.2, 1.1], [2.0, 0.1, -1.0]])
    out = F.gce(z, torch.tensor([-100, -100]))
    assert float(out.detach()) == 0.0 and torch.equal(grad_of(out, z), torch.zeros_like(z))
    t = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    out = F.bce(z, t, mask=torch.zeros_like(t))
    assert float(out.detach()) == 0.0 and torch.equal(grad_of(out, z), torch.zeros_like(z))


_ZERO_W = torch.tensor([0.0, 1.0, 1.0])
_IGNORED = torch.tensor([-100, -100])


def _empty_mean_cases() -> list[Any]:
    ce_zero_w = lambda z: F.cross_entropy(z, torch.tensor([0, 0]), weight=_ZERO_W)  # noqa: E731
    focal_zero_w = lambda z: F.focal(z, torch.tensor([0, 0]), weight=_ZERO_W)  # noqa: E731
    cases = [
        ("fused", lambda z: F.cross_entropy(z, _IGNORED), "ce-ignored", None),
        ("plain", lambda z: F.cross_entropy(z, _IGNORED), "ce-ignored", None),
        ("plain", lambda z: F.focal(z, _IGNORED, weight=_ZERO_W), "focal-ignored-weighted", None),
        ("plain", lambda z: F.cross_entropy(z, torch.tensor([0, 0]), weight=_ZERO_W, label_smoothing=0.1),
         "smoothed-ce-zero-weight", None),
        ("fused", ce_zero_w, "ce-zero-weight", None),
        ("fused", focal_zero_w, "focal-zero-weight", None),
        ("fused", lambda z: F.asymmetric(z, torch.zeros(2, 3), mask=torch.zeros(2, 3), reduction="mean"),
         "asl-masked", None),
        ("plain", ce_zero_w, "ce-zero-weight", None),
        ("plain", focal_zero_w, "focal-zero-weight", None),
        ("plain", lambda z: F.gce(z, _IGNORED), "gce-ignored", None),
        ("plain", lambda z: F.poly1(z, _IGNORED), "poly1-ignored", None),
        ("plain", lambda z: F.bce(z, torch.zeros(2, 3), mask=torch.zeros(2, 3)), "bce-masked", None),
        ("plain", lambda z: F.asymmetric(z, torch.zeros(2, 3), mask=torch.zeros(2, 3), reduction="mean"),
         "asl-masked", None),
    ]
    return [pytest.param(path, fn, id=f"{path}-{name}") for path, fn, name, _ in cases]


@pytest.mark.parametrize("path, case", _empty_mean_cases())
def test_mean_over_nothing_under_a_loss_weight(path: str, case: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """A mean over nothing stays 0 with a ZERO gradient under a loss weight (AMP's GradScaler
    multiplies the loss by 65536): the divisor's guard must not scale the gradient by 1/tiny."""
    z = leaf([[0.3, -0.2, 1.1], [2.0, 0.1, -1.0]], torch.float32)
    with force_path(path):
        out = case(z)
    assert float(out.detach()) == 0.0
    assert torch.equal(grad_of(65536.0 * out, z), torch.zeros_like(z))


# ============================================================================= noise.py
P_MIN = mpf(1e-7)  # the float 1e-7 of the reference's clamp


def test_gce_clamps_p_y_at_1e_minus_7() -> None:
    """noise.py `gce`: log p_y clamped at log 1e-7 (value (1 − 1e-7^q)/q, zero gradient below)."""
    # p_y ≈ 2.5e-7 (above the clamp), 5.1e-8, 4e-18 (below), 0.6
    z = leaf([[0.0, -15.2], [0.0, -16.8], [0.0, -40.0], [0.0, 0.4]])
    q = mpf(0.7)

    def per_row(r: list[Any]) -> Any:
        p = mpmath.exp(mp_log_softmax(r)[1])
        return (1 - max(p, P_MIN) ** q) / q

    out = F.gce(z, torch.ones(4, dtype=torch.long), q=0.7, reduction="none")
    xs = flat(z)
    assert_close(out, [per_row(r) for r in rows_of(xs, 2)], what="value")
    g = num_grad(lambda v: mpmath.fsum(per_row(r) for r in rows_of(v, 2)), xs)
    assert_close(grad_of(out, z), g, what="grad")
    assert all(v == 0 for v in g[2:6])  # the clamped rows


def test_ngce_clamps_every_probability_at_1e_minus_7() -> None:
    """noise.py `ngce`: the whole log-softmax clamped at log 1e-7 (target and normaliser)."""
    z = leaf([[0.0, -20.0, 2.0], [0.0, -20.0, 2.0], [0.3, -16.0, 0.1], [0.5, 0.2, -0.4]])
    y = [0, 1, 2, 1]
    q = mpf(0.7)

    def per_row(r: list[Any], t: int) -> Any:
        terms = [(1 - max(mpmath.exp(v), P_MIN) ** q) / q for v in mp_log_softmax(r)]
        return terms[t] / mpmath.fsum(terms)

    out = F.ngce(z, torch.tensor(y), q=0.7, reduction="none")
    xs = flat(z)
    assert_close(out, [per_row(r, t) for r, t in zip(rows_of(xs, 3), y)], what="value")
    g = num_grad(lambda v: mpmath.fsum(per_row(r, t) for r, t in zip(rows_of(v, 3), y)), xs)
    assert_close(grad_of(out, z), g, what="grad")


@pytest.mark.parametrize("loss", ["rce", "sce", "nce_rce"])
def test_rce_softmax_clamp_and_log_of_zero(loss: str) -> None:
    """noise.py `_rce_terms`: the softmax clamped at 1e-7 and log 0 := log 1e-4 (RCE_LOG_ZERO)."""
    z = leaf([[0.0, -20.0, 2.0], [0.1, 0.2, 0.3], [0.0, -17.0, -40.0]])
    y = [2, 0, 0]
    a_log0 = mpmath.log(mpf("1e-4"))

    def per_row(r: list[Any], t: int) -> Any:
        p = mp_softmax(r)
        rce = -a_log0 * mpmath.fsum(max(p[j], P_MIN) for j in range(3) if j != t)
        lp = mp_log_softmax(r)
        if loss == "rce":
            return rce
        if loss == "sce":
            return mpf(0.1) * -lp[t] + rce
        return lp[t] / mpmath.fsum(lp) + rce

    out = getattr(F, loss)(z, torch.tensor(y), reduction="none")
    xs = flat(z)
    assert_close(out, [per_row(r, t) for r, t in zip(rows_of(xs, 3), y)], what="value")
    g = num_grad(lambda v: mpmath.fsum(per_row(r, t) for r, t in zip(rows_of(v, 3), y)), xs)
    assert_close(grad_of(out, z), g, what="grad")


@pytest.mark.parametrize("loss, kw", [("nce", {}), ("ngce", {}), ("nfl", {}), ("nfl", {"detach": False, "gamma": 0.5})])
def test_normalised_losses_with_a_zero_normaliser(loss: str, kw: dict[str, Any]) -> None:
    """noise.py `_normalised`: Σ_j terms clamped at tiny; one class (every term 0) gives 0."""
    z = leaf([[1.0], [-2.0]])
    out = getattr(F, loss)(z, torch.tensor([0, 0]), reduction="none", **kw)
    assert out.tolist() == [0.0, 0.0]
    # also under a loss weight: a normaliser clamped at tiny would give inf − inf = NaN
    assert torch.equal(grad_of(1e4 * out, z), torch.zeros_like(z))


def test_nfl_undetached_gamma_below_one_at_certain_rows() -> None:
    """noise.py `nfl` (detach=False): 1 − p clamped at tiny for γ < 1."""
    z = leaf([[0.0, -800.0], [0.0, -800.0], [0.3, -0.1], [-1.2, 0.4]])
    y = [0, 1, 0, 1]
    gamma = mpf(0.5)

    def per_row(r: list[Any], t: int) -> Any:
        lp, om = mp_log_softmax(r), mp_one_minus_softmax(r)
        fl = [-(om[j] ** gamma) * lp[j] for j in range(2)]
        return fl[t] / mpmath.fsum(fl)

    out = F.nfl(z, torch.tensor(y), gamma=0.5, detach=False, reduction="none")
    xs = flat(z)
    assert_close(out, [per_row(r, t) for r, t in zip(rows_of(xs, 2), y)], what="value")
    g = num_grad(lambda v: mpmath.fsum(per_row(r, t) for r, t in zip(rows_of(v, 2), y)), xs)
    assert_close(grad_of(out, z), g, atol=1e-14, what="grad")


@pytest.mark.parametrize("eps", [1e-7, 0.01])
def test_logitclip_norm_clip_with_eps(eps: float) -> None:
    """noise.py `_clip`: rows with ‖z‖ + eps > 1/τ become z / (τ(‖z‖ + eps)); a row whose norm is
    eps/2 under 1/τ is clipped only because of eps."""
    tau = 2.0
    small = [0.1, -0.2, 0.05]
    edge_norm = 1.0 / tau - eps / 2
    base = [0.6, -0.48, 0.64]  # norm 1
    z = leaf([[3.0, -4.0, 1.0], small, [v * edge_norm for v in base]])
    y = [0, 2, 1]

    def per_row(r: list[Any], t: int) -> Any:
        n = mpmath.sqrt(mpmath.fsum(v * v for v in r)) + mpf(eps)
        zc = [v / (mpf(tau) * n) for v in r] if n > 1 / mpf(tau) else r
        return mp_lse(zc) - zc[t]

    out = F.logitclip(z, torch.tensor(y), tau=tau, eps=eps, reduction="none")
    xs = flat(z)
    assert_close(out, [per_row(r, t) for r, t in zip(rows_of(xs, 3), y)], rtol=1e-13, atol=0.0, what="value")
    g = num_grad(lambda v: mpmath.fsum(per_row(r, t) for r, t in zip(rows_of(v, 3), y)), xs)
    assert_close(grad_of(out, z), g, what="grad")


def test_ldr_normalisation_of_an_all_zero_row() -> None:
    """noise.py `ldr_normalise`: an all-zero row (softplus=False; 0/0 in the reference) is
    normalised to 0 with a zero gradient, also under a large loss weight (a denominator
    clamped at tiny would scale the gradient by 1/tiny: 1e307, inf once weighted)."""
    margin, lam = mpf(0.1), mpf(10)
    z = leaf([[0.0, 0.0, 0.0], [0.4, -1.3, 0.9]])
    y = [1, 2]
    out = F.ldr(z, torch.tensor(y), margin=0.1, temperature=10.0, softplus=False, reduction="none")

    def per_row(r: list[Any], t: int) -> Any:
        mean_abs = mpmath.fsum(abs(v) for v in r) / 3
        zn = [v / mean_abs for v in r] if mean_abs > 0 else [mpf(0)] * 3
        d = [(0 if j == t else margin + zn[j] - zn[t]) for j in range(3)]
        return lam * (mp_lse([v / lam for v in d]) - mpmath.log(3))

    xs = flat(z)
    assert_close(out, [per_row(r, t) for r, t in zip(rows_of(xs, 3), y)], what="value")
    (g,) = torch.autograd.grad((out * torch.tensor([1e4, 1.0], dtype=torch.float64)).sum(), z)
    assert torch.equal(g[0], torch.zeros(3, dtype=torch.float64))
    assert_close(g[1], num_grad(lambda v: per_row(v, 2), xs[3:]), what="grad of the other row")


@pytest.mark.parametrize("alpha", [2.0, 0.5])
def test_aldr_temperature_smoothing_and_floor(alpha: float) -> None:
    """noise.py `aldr_temperature`: q = normalise(softmax(z'/λ_prev) + 1e-5) and λ floored at
    1e-6·Λ (reached for α < 1 with a peaked q); the loss uses λ detached."""
    big = 10.0
    z = leaf([[2.0, -1.0, 0.5, 0.1], [0.3, 0.2, -0.6, 1.5], [1.0, -2.0, 0.0, 3.0]])
    y = [0, 1, 3]
    prev = torch.tensor([10.0, 0.01, 0.001], dtype=torch.float64)
    state = prev.clone()
    out = F.aldr(z, torch.tensor(y), sample_temperature=state, margin=0.1, temperature=big, alpha=alpha,
                 reduction="none")
    a, lam_max, m, c = mpf(alpha), mpf(big), mpf(0.1), 4

    def normalise(r: list[Any]) -> list[Any]:
        mean_abs = mpmath.fsum(abs(v) for v in r) / c
        return [v / mean_abs for v in r]

    def lam_of(r: list[Any], lp: Any) -> Any:
        q = [v + mpf(1e-5) for v in mp_softmax([v / lp for v in normalise(r)])]
        s = mpmath.fsum(q)
        q = [v / s for v in q]
        kl = mpmath.fsum(v * mpmath.log(c * v) for v in q)
        return max(lam_max - lam_max * kl / (a * mpmath.log(c)), mpf(1e-6) * lam_max)

    xs = flat(z)
    lams = [lam_of(r, mpf(p)) for r, p in zip(rows_of(xs, c), prev.tolist())]

    def per_row(r: list[Any], t: int, lam: Any) -> Any:
        zn = normalise(r)
        d = [(0 if j == t else m + zn[j] - zn[t]) for j in range(c)]
        core = lam * (mp_lse([v / lam for v in d]) - mpmath.log(c))
        return core - a * mpmath.log(c) / (2 * lam_max) * (lam - lam_max) ** 2

    assert_close(state, lams, what="stored λ")
    if alpha < 1:
        assert float(lams[2]) == pytest.approx(1e-5, rel=1e-12)  # the floor binds
    assert_close(out, [per_row(r, t, lm) for r, t, lm in zip(rows_of(xs, c), y, lams)], rtol=1e-9, what="value")
    g = num_grad(lambda v: mpmath.fsum(per_row(r, t, lm) for r, t, lm in zip(rows_of(v, c), y, lams)), xs)
    assert_close(grad_of(out, z), g, rtol=1e-9, atol=1e-10, what="grad (λ detached)")


# ============================================================================= calibration.py
@pytest.mark.parametrize("log_end", [1.0, 0.75])
def test_encouraging_bonus_clamp(log_end: float) -> None:
    """calibration.py `encouraging`: log(1 − p) with 1 − p clamped at 1e-5 (zero gradient
    above p = 1 − 1e-5; no NaN where p rounds to 1 and the linear branch is taken)."""
    # 1 − p_y ≈ 1.1e-7 (clamped), 2.75e-5 (not), 0.1, and p_y = 1 in float64
    z = leaf([[0.0, -16.0], [0.0, -10.5], [0.0, -2.2], [0.0, -800.0], [0.7, 0.2]])
    le = mpf(log_end)

    def per_row(r: list[Any]) -> Any:
        lp = mp_log_softmax(r)[0]
        p, om = mpmath.exp(lp), mp_one_minus_softmax(r)[0]
        bonus = mpmath.log(max(om, mpf(1e-5)))
        if log_end != 1.0 and p > le:
            bonus = (p - le) / (le - 1) + mpmath.log(1 - le)
        return bonus - lp

    out = F.encouraging(z, torch.zeros(5, dtype=torch.long), log_end=log_end, reduction="none")
    xs = flat(z)
    assert_close(out, [per_row(r) for r in rows_of(xs, 2)], what="value")
    assert_close(grad_of(out, z), num_grad(lambda v: mpmath.fsum(per_row(r) for r in rows_of(v, 2)), xs),
                 rtol=1e-9, what="grad")


def test_spherical_z_loss_sigma_of_equal_logits() -> None:
    """calibration.py `spherical_z_loss`: the variance clamped at tiny before the square root
    (zero gradient through σ at σ = 0) and eps added to σ, not inside the root."""
    a, b, eps = mpf(1), mpf(0), mpf(1e-12)
    z = leaf([[0.75, 0.75, 0.75], [-0.4, 0.25, 0.1], [0.3, -1.2, 2.0]])  # 0.75: an exact mean
    y = [1, 1, 0]

    def per_row(r: list[Any], t: int) -> Any:
        mu = mpmath.fsum(r) / 3
        sigma = mpmath.sqrt(mpmath.fsum((v - mu) ** 2 for v in r) / 3) + eps
        zc = (r[t] - mu) / sigma
        return mpmath.log1p(mpmath.exp(a * (b - zc))) / a

    out = F.spherical_z_loss(z, torch.tensor(y), reduction="none")
    xs = flat(z)
    assert_close(out, [per_row(r, t) for r, t in zip(rows_of(xs, 3), y)], what="value")
    g = num_grad(lambda v: mpmath.fsum(per_row(r, t) for r, t in zip(rows_of(v, 3), y)), xs, h=mpf(10) ** -32)
    assert_close(grad_of(out, z), g, rtol=1e-9, what="grad")  # ~1e12 in the equal row: (e_y − 1/C)/eps


@pytest.mark.parametrize("metric", ["balanced_accuracy", "gmean"])
def test_anyloss_class_absent_from_the_batch(metric: str) -> None:
    """calibration.py `_anyloss_scores`: TP + FN = 0 (an absent class) and TN + FP = 0 (every
    sample positive) clamped at tiny, so TPR / TNR = 0; G-mean's product clamped before √."""
    L = mpf(73)

    def scores(p_rows: list[list[Any]], y_rows: list[list[int]]) -> list[Any]:
        out = []
        for k in range(len(p_rows[0])):
            yh = [mp_sigmoid(L * (p[k] - mpf(0.5))) for p in p_rows]
            ys = [yy[k] for yy in y_rows]
            tp = mpmath.fsum(t * h for t, h in zip(ys, yh))
            fn = mpmath.fsum(t * (1 - h) for t, h in zip(ys, yh))
            fp = mpmath.fsum((1 - t) * h for t, h in zip(ys, yh))
            tn = mpmath.fsum((1 - t) * (1 - h) for t, h in zip(ys, yh))
            tpr = tp / (tp + fn) if sum(ys) > 0 else mpf(0)
            tnr = tn / (tn + fp) if sum(ys) < len(ys) else mpf(0)
            out.append(1 - (tpr + tnr) / 2 if metric == "balanced_accuracy" else 1 - mpmath.sqrt(tpr * tnr))
        return out

    # multi-class: class 2 never a target
    z = leaf([[0.5, 0.1, 0.3], [-0.2, 0.4, 0.35], [0.9, -0.5, 0.2], [0.1, 0.2, 0.15]])
    y = [0, 1, 0, 1]
    onehot = [[1 if j == t else 0 for j in range(3)] for t in y]

    def ref(xs: list[Any]) -> list[Any]:
        return scores([mp_softmax(r) for r in rows_of(xs, 3)], onehot)

    out = F.anyloss_per_class(z, torch.tensor(y), metric=metric)
    xs = flat(z)
    assert_close(out, ref(xs), what="multi-class value")
    # under a loss weight (a denominator clamped at tiny scales the absent class's gradient by
    # 1/tiny: inf · 0 = NaN once weighted by ≥ 4)
    weight = 1000.0
    assert_close(grad_of(weight * out, z), [weight * v for v in num_grad(lambda v: mpmath.fsum(ref(v)), xs)],
                 what="multi-class grad")
    # binary: every sample positive (no negative to score)
    zb = leaf([0.3, -0.4, 1.2])

    def ref_b(xs: list[Any]) -> list[Any]:
        return scores([[mp_sigmoid(v)] for v in xs], [[1], [1], [1]])

    outb = F.anyloss_per_class(zb, torch.tensor([1, 1, 1]), metric=metric)
    assert_close(outb, ref_b(flat(zb)), what="binary value")
    # TN − FP's ±1/tiny gradients cancel exactly and absorb TPR's unless the ratio is 0 there
    assert_close(grad_of(weight * outb, zb), [weight * v for v in num_grad(lambda v: ref_b(v)[0], flat(zb))],
                 what="binary grad")


@pytest.mark.parametrize("metric", ["accuracy", "f_beta"])
def test_anyloss_of_an_empty_batch(metric: str) -> None:
    """calibration.py `_anyloss_scores`: the accuracy / F_β denominators clamped at tiny; with no
    sample every ratio is undefined, hence 0, and each class loss 1 (the batch loss is 0)."""
    z = torch.zeros(0, 3, dtype=torch.float64, requires_grad=True)
    out = F.anyloss_per_class(z, torch.zeros(0, dtype=torch.long), metric=metric)
    assert out.tolist() == [1.0, 1.0, 1.0]
    assert float(F.anyloss(z, torch.zeros(0, dtype=torch.long), metric=metric).detach()) == 0.0


# ============================================================================= multilabel.py
ASL_CONFIGS = [  # (gamma_neg, gamma_pos, clip, eps)
    (4.0, 1.0, 0.05, 1e-8),  # the reference's defaults
    (0.0, 0.0, 0.05, 1e-8),  # no weight: the clip's min(·, 1) and its zero gradient show
    (2.0, 1.0, 0.0, 1e-8),  # no clip: the eps floor of log σ(−z)
    (1.0, 1.0, 0.05, 0.1),  # eps > clip: the eps floor of log(x⁻) binds
    (2.5, 1.0, 0.05, 1e-8),  # a fractional γ−: max(σ(z) − clip, 0)^γ− is NaN without the max
]


def _asl_ref(t: Sequence[int], gneg: float, gpos: float, clip: float, eps: float) -> Callable[..., Any]:
    gn, gp, cl, ep = mpf(gneg), mpf(gpos), mpf(clip), mpf(eps)

    def weights(xs: list[Any]) -> list[Any]:
        out = []
        for z, y in zip(xs, t):
            base = mp_sigmoid(-z) if y else (max(mp_sigmoid(z) - cl, 0) if clip > 0 else mp_sigmoid(z))
            ex = gp if y else gn
            out.append(mpf(1) if ex == 0 else base ** ex)
        return out

    def f(xs: list[Any], w: list[Any] | None = None) -> Any:
        w = weights(xs) if w is None else w
        total = mpf(0)
        for z, y, wi in zip(xs, t, w):
            if y:
                term = mpmath.log(max(mp_sigmoid(z), ep))
            else:
                xneg = min(mp_sigmoid(-z) + cl, 1) if clip > 0 else mp_sigmoid(-z)
                term = mpmath.log(max(xneg, ep))
            total += -wi * term
        return total

    f.weights = weights  # type: ignore[attr-defined]
    return f


@pytest.mark.parametrize("path", ["plain", "fused"])
@pytest.mark.parametrize("config", ASL_CONFIGS)
def test_asymmetric_eps_floor_and_clip(path: str, config: tuple[float, ...]) -> None:
    """multilabel.py ASL (both paths): log max(σ(z), eps), log max(min(σ(−z) + clip, 1), eps),
    the weight max(σ(z) − clip, 0), each with the zero gradient of its flat side; the weight
    is detached (the reference's default)."""
    gneg, gpos, clip, eps = config
    z = leaf([[-30.0, 2.0, -5.0, 1.0], [5.0, 30.0, 40.0, -2.0]])
    t = [1, 1, 0, 0, 0, 0, 1, 1]
    target = torch.tensor(t, dtype=torch.float64).reshape(2, 4)
    with force_path(path):
        out = F.asymmetric(z, target, gamma_neg=gneg, gamma_pos=gpos, clip=clip, eps=eps, reduction="sum")
    ref = _asl_ref(t, gneg, gpos, clip, eps)
    xs = flat(z)
    assert_close(out.reshape(1), [ref(xs)], what="value")
    w = ref.weights(xs)  # type: ignore[attr-defined]
    assert_close(grad_of(out, z), num_grad(lambda v: ref(v, w), xs), what="grad")


@pytest.mark.parametrize("path", ["plain", "fused"])
def test_asymmetric_masked_mean_over_nothing(path: str) -> None:
    """multilabel.py ASL ``"mean"``: Σ m clamped at tiny (fused) / reduce_loss (plain)."""
    z = leaf([[0.3, -1.0], [2.0, 0.5]])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    with force_path(path):
        out = F.asymmetric(z, t, mask=torch.zeros_like(t), reduction="mean")
    assert float(out.detach()) == 0.0 and torch.equal(grad_of(out, z), torch.zeros_like(z))


def test_asymmetric_undetached_weight_with_gamma_below_one() -> None:
    """multilabel.py `_asymmetric_plain` (detach_weight=False): the weight's base clamped at tiny
    for γ < 1 (its derivative is infinite at 0: a negative below the clip, a positive σ(−z) = 0)."""
    z = leaf([[-5.0, 800.0, 40.0], [0.4, -0.3, 1.0]])
    t = [0, 1, 1, 0, 1, 0]
    target = torch.tensor(t, dtype=torch.float64).reshape(2, 3)
    out = F.asymmetric(z, target, gamma_neg=0.5, gamma_pos=0.5, clip=0.05, detach_weight=False, reduction="none")
    ref = _asl_ref(t, 0.5, 0.5, 0.05, 1e-8)
    xs = flat(z)
    assert_close(out, [_asl_ref([y], 0.5, 0.5, 0.05, 1e-8)([v]) for v, y in zip(xs, t)], what="value")
    assert_close(grad_of(out, z), num_grad(lambda v: ref(v), xs), atol=1e-14, what="grad (weight differentiated)")


def test_asymmetric_single_label_gamma_pos_below_one_and_masked_class() -> None:
    """multilabel.py `asymmetric_single_label`: 1 − p_y clamped at tiny for γ+ < 1, and log p_j
    of a masked class (−inf) replaced by 0 (p_j^γ− log p_j → 0, not 0·∞)."""
    z = leaf([[0.0, -800.0, -800.0], [0.2, NEG_INF, 1.0], [0.3, 0.1, -0.4]])
    y = [0, 2, 1]
    gp, gn, eps = mpf(0.5), mpf(4), mpf(0.1)

    def per_row(r: list[Any], t: int) -> Any:
        lp, om = mp_log_softmax(r), mp_one_minus_softmax(r)
        total = mpf(0)
        for j in range(3):
            if lp[j] == MP_NEG_INF:
                continue  # p^γ− log p → 0
            w = om[j] ** gp if j == t else mpmath.exp(gn * lp[j])
            tj = (1 - eps) * (j == t) + eps / 3
            total += -tj * w * lp[j]
        return total

    out = F.asymmetric_single_label(z, torch.tensor(y), gamma_pos=0.5, gamma_neg=4.0, eps=0.1, reduction="none")
    xs = flat(z)
    assert_close(out, [per_row(r, t) for r, t in zip(rows_of(xs, 3), y)], what="value")
    g = num_grad(lambda v: mpmath.fsum(per_row(r, t) for r, t in zip(rows_of(v, 3), y)), xs)
    assert_close(grad_of(out, z), g, atol=1e-14, what="grad")


def _dice_ref(y: Sequence[int], alpha: Any, smooth: Any, per_element: bool) -> MpFn:
    def f(xs: list[Any]) -> list[Any]:
        rows = rows_of(xs, 3)
        q = []
        for r in rows:
            p, om = mp_softmax(r), mp_one_minus_softmax(r)
            q.append([om[j] ** alpha * p[j] for j in range(3)])
        yy = [[1 if j == t else 0 for j in range(3)] for t in y]
        out = []
        for i in range(len(rows)):
            total = mpf(0)
            for j in range(3):
                den = q[i][j] + yy[i][j] + smooth if per_element else (
                    mpmath.fsum(q[n][j] for n in range(len(rows))) + sum(yy[n][j] for n in range(len(rows))) + smooth)
                num = 2 * q[i][j] * yy[i][j] + smooth
                total += 1 - (num / den if den > 0 else mpf(0))  # 0/0 := 0, the documented convention
            out.append(total)
        return out
    return f


@pytest.mark.parametrize("denominator", ["element", "batch"])
def test_dice_alpha_below_one_where_p_rounds_to_one(denominator: str) -> None:
    """multilabel.py `dice`: 1 − p clamped at tiny for α < 1 (a row with p = 1 in float64)."""
    z = leaf([[0.0, -800.0, -800.0], [0.3, 0.1, -0.2], [-0.5, 0.2, 0.9]])
    y = [0, 2, 1]
    ref = _dice_ref(y, mpf(0.5), mpf(1e-4), denominator == "element")
    out = F.dice(z, torch.tensor(y), alpha=0.5, denominator=denominator, reduction="none")
    xs = flat(z)
    assert_close(out, ref(xs), what="value")
    assert_close(grad_of(out, z), num_grad(lambda v: mpmath.fsum(ref(v)), xs), atol=1e-14, what="grad")


def test_dice_zero_denominator_without_smoothing() -> None:
    """multilabel.py `dice`: the denominator clamped at tiny; q = y = 0 with smooth = 0 (a
    masked class, a class whose p underflows) gives the ratio 0 (the limit for y = 0)."""
    z = leaf([[0.5, NEG_INF, 0.2], [0.0, -800.0, 0.3]])
    y = [0, 2]
    ref = _dice_ref(y, mpf(0.01), mpf(0), True)
    out = F.dice(z, torch.tensor(y), alpha=0.01, smooth=0.0, denominator="element", reduction="none")
    xs = flat(z)
    assert_close(out, ref(xs), what="value")
    assert_close(grad_of(out, z), num_grad(lambda v: mpmath.fsum(ref(v)), xs), what="grad")


# ============================================================================= metric.py
def _pair_terms(xs: list[Any], labels: Sequence[int], d: int, pos_margin: Any, neg_margin: Any,
                zero: frozenset[tuple[int, int]] = frozenset()) -> tuple[list[Any], ...]:
    """Contrastive pair terms; the pairs in ``zero`` are at distance 0 (constant)."""
    u = [mp_unit(r) for r in rows_of(xs, d)]
    n = len(u)
    lp, ln = [], []
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            dist = mpf(0) if (i, j) in zero else mp_dist(u[i], u[j])
            if labels[i] == labels[j]:
                lp.append(max(dist - pos_margin, 0))
            else:
                ln.append(max(neg_margin - dist, 0))
    return lp, ln


def _contrastive_ref(labels: Sequence[int], d: int, average_nonzero: bool, pos_margin: float = 0.0,
                     zero: frozenset[tuple[int, int]] = frozenset()) -> MpFn:
    def mean(v: list[Any]) -> Any:
        keep = [x for x in v if x > 0] if average_nonzero else v
        return mpmath.fsum(keep) / len(keep) if keep else mpf(0)

    def f(xs: list[Any]) -> Any:
        lp, ln = _pair_terms(xs, labels, d, mpf(pos_margin), mpf(1), zero)
        return mean(lp) + mean(ln)
    return f


IDENTICAL = [[0.3, -1.1, 0.8], [0.3, -1.1, 0.8], [0.3, -1.1, 0.8], [-0.2, 0.5, 0.7], [1.0, 0.1, -0.4]]


@pytest.mark.parametrize("path", ["plain", "fused"])
@pytest.mark.parametrize("pos_margin", [0.0, -0.1])
def test_contrastive_at_zero_distance(path: str, pos_margin: float) -> None:
    """metric.py `_unit_distances` / `_AllPairContrastive`: identical rows at distance exactly 0
    (the zero mask, the sqrt's argument clamped at tiny; the fused kernel's masked fill, its
    nan_to_num of 1/d and its d > 0 mask of the positive pairs, active at d = 0 when m+ < 0)
    with a zero gradient there, as torch.cdist."""
    x = leaf(IDENTICAL)
    labels = [0, 0, 1, 1, 2]  # rows 0, 1: a positive pair at 0; rows 0/1, 2: negatives at 0
    with force_path(path):
        out = F.contrastive(x, torch.tensor(labels), pos_margin=pos_margin)
    ref = _contrastive_ref(labels, 3, True, pos_margin)
    xs = flat(x)
    assert_close(out.reshape(1), [ref(xs)], what="value")
    assert_close(grad_of(out, x), num_grad(ref, xs), what="grad")


#: a row whose Gram product with itself rounds above 1 (and with its 1-ulp neighbours too)
ROUNDS_ABOVE_ONE = [0.19199507185683629, 0.5427713494727768, -2.2187793699300005, 0.2589845413662202]


@pytest.mark.parametrize("path", ["plain", "fused"])
def test_contrastive_distinct_rows_whose_squared_distance_rounds_below_zero(path: str) -> None:
    """metric.py `_unit_distances` / `_AllPairContrastive`: 2 − 2 u·u' clamped at 0 (it rounds to
    −4.4e-16 for two distinct rows one ulp apart, whose true distance ~1e-16 is below rounding):
    distance 0 with a zero gradient, as for identical rows, not sqrt(negative) = NaN."""
    near = list(ROUNDS_ABOVE_ONE)
    near[2] = math.nextafter(near[2], math.inf)
    x = leaf([ROUNDS_ABOVE_ONE, near, [0.3, -0.2, 0.5, 0.1], [0.2, 0.4, -0.1, 0.3]])
    labels = [0, 1, 1, 0]
    with force_path(path):
        out = F.contrastive(x, torch.tensor(labels))
    ref = _contrastive_ref(labels, 4, True, zero=frozenset({(0, 1), (1, 0)}))
    xs = flat(x)
    assert_close(out.reshape(1), [ref(xs)], what="value")
    assert_close(grad_of(out, x), num_grad(ref, xs), what="grad")


@pytest.mark.parametrize("path", ["plain", "fused"])
@pytest.mark.parametrize("average_nonzero", [True, False])
@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [0, 0, 0, 0]])
def test_contrastive_with_a_part_without_pairs(path: str, average_nonzero: bool, labels: list[int]) -> None:
    """metric.py `_wavg` and the fused kernel's counts: clamp_min(1), so a part with no term
    (no positive pair; no negative pair) adds 0."""
    x = leaf([[0.3, -1.1, 0.8], [-0.2, 0.5, 0.7], [1.0, 0.1, -0.4], [0.2, 0.9, 0.1]])
    with force_path(path):
        out = F.contrastive(x, torch.tensor(labels), average_nonzero=average_nonzero)
    ref = _contrastive_ref(labels, 3, average_nonzero)
    xs = flat(x)
    assert_close(out.reshape(1), [ref(xs)], what="value")
    assert_close(grad_of(out, x), num_grad(ref, xs), what="grad")


def test_triplet_padding_and_zero_distance() -> None:
    """metric.py `_all_triplets`: padded positives at d_ap = −inf and non-negatives at d_an = +inf
    contribute relu(−inf) = 0 (a padded d_ap = 0 would add relu(m − d_an) > 0 for the negatives
    within the margin); identical rows at distance 0 with zero gradient."""
    x = leaf(IDENTICAL + [[0.4, 0.4, -0.9]])
    labels = [0, 0, 0, 1, 1, 2]  # anchors with 2, 1 and 0 positives
    margin = mpf(1.0)

    def ref(xs: list[Any]) -> Any:
        u = [mp_unit(r) for r in rows_of(xs, 3)]
        terms = []
        for a in range(len(u)):
            for p in range(len(u)):
                for n in range(len(u)):
                    if p != a and labels[p] == labels[a] and labels[n] != labels[a]:
                        terms.append(max(mp_dist(u[a], u[p]) - mp_dist(u[a], u[n]) + margin, 0))
        keep = [v for v in terms if v > 0]
        return mpmath.fsum(keep) / len(keep)

    out = F.triplet_margin(x, torch.tensor(labels), margin=1.0)
    xs = flat(x)
    assert_close(out.reshape(1), [ref(xs)], what="value")
    assert_close(grad_of(out, x), num_grad(ref, xs), what="grad")


@pytest.mark.parametrize("average_nonzero", [True, False])
@pytest.mark.parametrize("labels, margin", [([0, 1, 2, 3], 0.2), ([0, 0, 1, 1], -5.0)])
def test_triplet_mean_over_nothing(average_nonzero: bool, labels: list[int], margin: float) -> None:
    """metric.py `triplet_margin`: the mean's counts clamped at 1 (no valid triplet; no triplet
    with a loss above 0) give 0 with a zero gradient."""
    x = leaf([[0.3, -1.1, 0.8], [-0.2, 0.5, 0.7], [1.0, 0.1, -0.4], [0.2, 0.9, 0.1]])
    out = F.triplet_margin(x, torch.tensor(labels), margin=margin, average_nonzero=average_nonzero)
    assert float(out.detach()) == 0.0
    assert torch.equal(grad_of(out, x), torch.zeros_like(x))


def _similarities(xs: list[Any], d: int) -> list[list[Any]]:
    u = [mp_unit(r) for r in rows_of(xs, d)]
    return [[mp_dot(a, b) for b in u] for a in u]


def test_multi_similarity_anchor_without_positives() -> None:
    """metric.py `_masked_lse`: an anchor with no positive pair has log(1 + Σ_∅) = 0 (−inf
    log-sum-exp with zero gradient: the fill value, the tiny clamp and the final where)."""
    x = leaf([[0.3, -1.1, 0.8], [0.2, -0.9, 1.0], [-0.2, 0.5, 0.7], [1.0, 0.1, -0.4]])
    labels = [0, 0, 1, 2]
    al, be, lam = mpf(2), mpf(50), mpf(0.5)

    def per_anchor(xs: list[Any]) -> list[Any]:
        s = _similarities(xs, 3)
        out = []
        for i in range(4):
            ps = [s[i][j] for j in range(4) if j != i and labels[j] == labels[i]]
            ns = [s[i][j] for j in range(4) if labels[j] != labels[i]]
            out.append(mpmath.log1p(mpmath.fsum(mpmath.exp(-al * (v - lam)) for v in ps)) / al
                       + mpmath.log1p(mpmath.fsum(mpmath.exp(be * (v - lam)) for v in ns)) / be)
        return out

    out = F.multi_similarity(x, torch.tensor(labels), reduction="none")
    xs = flat(x)
    assert_close(out, per_anchor(xs), what="value")
    assert_close(grad_of(out, x), num_grad(lambda v: mpmath.fsum(per_anchor(v)), xs), what="grad")


@pytest.mark.parametrize("average_over", ["anchors_with_positives", "all_anchors"])
def test_supcon_anchor_without_positives(average_over: str) -> None:
    """metric.py `supcon`: the positive count clamped at 1 (an anchor without positives adds 0),
    the anchor itself masked out of its denominator."""
    x = leaf([[0.3, -1.1, 0.8], [0.2, -0.9, 1.0], [-0.2, 0.5, 0.7], [1.0, 0.1, -0.4]])
    labels = [0, 0, 1, 2]
    tau = mpf(0.1)

    def per_anchor(xs: list[Any]) -> list[Any]:
        s = _similarities(xs, 3)
        out = []
        for i in range(4):
            ps = [j for j in range(4) if j != i and labels[j] == labels[i]]
            if not ps:
                out.append(mpf(0))
                continue
            den = mp_lse([s[i][k] / tau for k in range(4) if k != i])
            out.append(-mpmath.fsum(s[i][p] / tau - den for p in ps) / len(ps))
        return out

    def mean(xs: list[Any]) -> Any:
        v = per_anchor(xs)
        return (v[0] + v[1]) / 2 if average_over == "anchors_with_positives" else mpmath.fsum(v) / 4

    out = F.supcon(x, torch.tensor(labels), temperature=0.1, base_temperature=0.1, average_over=average_over)
    xs = flat(x)
    assert_close(out.reshape(1), [mean(xs)], what="value")
    assert_close(grad_of(out, x), num_grad(mean, xs), what="grad")
    none = F.supcon(x, torch.tensor(labels), temperature=0.1, base_temperature=0.1, reduction="none")
    assert_close(none, per_anchor(xs), what="per anchor")


def test_ntxent_mined_multiplicities_and_an_anchor_without_negatives() -> None:
    """metric.py `ntxent`: a negative listed k times counts k times (log of the multiplicity,
    clamped at 1 for the pairs not listed) and a positive pair whose anchor has no mined
    negative costs log(e^z / e^z) = 0."""
    x = leaf([[0.3, -1.1, 0.8], [0.2, -0.9, 1.0], [-0.2, 0.5, 0.7], [1.0, 0.1, -0.4]])
    labels = [0, 0, 1, 1]
    ap, p = torch.tensor([0, 1, 2]), torch.tensor([1, 0, 3])
    an, n = torch.tensor([0, 0, 1]), torch.tensor([2, 2, 3])  # anchor 2 has no negative listed
    tau = mpf(0.5)
    pos_pairs = list(zip(ap.tolist(), p.tolist()))
    neg_pairs = list(zip(an.tolist(), n.tolist()))

    def mean(xs: list[Any]) -> Any:
        s = _similarities(xs, 3)
        losses = []
        for a, q in pos_pairs:
            negs = [s[a][k] / tau for b, k in neg_pairs if b == a]
            zp = s[a][q] / tau
            losses.append(mp_lse([zp] + negs) - zp)
        return mpmath.fsum(losses) / len(losses)

    out = F.ntxent(x, torch.tensor(labels), temperature=0.5, indices=(ap, p, an, n))
    xs = flat(x)
    assert_close(out.reshape(1), [mean(xs)], what="value")
    assert_close(grad_of(out, x), num_grad(mean, xs), what="grad")


# cos θ of the target column: 1, within 5e-13 of 1 (sin² < 1e-12), 1e-10 below 1, just above 1
# (rounding), −1, an ordinary angle
TARGET_COS = [1.0, 1.0 - 1e-14, 1.0 - 1e-10, 1.0 + 2.0**-52, -1.0, 0.3]


def _arc_value(c: Any, m: Any, fallback: bool) -> Any:
    if fallback and c < -mpmath.cos(m):
        return c - m * mpmath.sin(m)
    return c * mpmath.cos(m) - mpmath.sqrt(max(1 - c * c, 0)) * mpmath.sin(m)


def _arc_slope(c: float, m: Any, fallback: bool) -> Any:
    """d/dc of the target logit with the gradient's guard: sin θ's derivative from
    sqrt(max(1 − c², 1e-12)), zero where 1 − c² < 1e-12 (the clamp's flat side)."""
    if fallback and c < -math.cos(float(m)):
        return mpf(1)
    cc = mpf(c)
    s2 = 1 - cc * cc
    return mpmath.cos(m) + (mpmath.sin(m) * cc / mpmath.sqrt(s2) if s2 >= mpf(1e-12) else 0)


@pytest.mark.parametrize("head", ["margin_logits", "unpg"])
def test_arcface_sin_theta_exact_in_value_clamped_in_gradient(head: str) -> None:
    """metric.py `margin_logits` (ArcFace) and `_unpg_head`: sin θ = sqrt(max(1 − cos², 0)) in
    value (exact cos(θ + m) at θ = 0 and for cos rounded above 1), with the gradient of
    sqrt(max(1 − cos², 1e-12)); UNPG has no θ > π − m fallback."""
    m = 0.5
    cos = leaf([[c, 0.25] for c in TARGET_COS])
    labels = torch.zeros(len(TARGET_COS), dtype=torch.long)
    fallback = head == "margin_logits"
    out = F.margin_logits(cos, labels, "arcface", m) if fallback else _unpg_head(cos, labels, "arcface", m)
    want = []
    for c in TARGET_COS:
        want += [_arc_value(mpf(c), mpf(m), fallback), mpf(0.25)]
    # 1 − c² is computed in float64 (error ~1e-16, so ~1e-10 on sin θ near θ = 0)
    assert_close(out, want, rtol=0.0, atol=1e-9, what="logits")
    grad = []
    for c in TARGET_COS:
        grad += [_arc_slope(c, mpf(m), fallback), mpf(1)]
    assert_close(grad_of(out, cos), grad, rtol=1e-6, what="grad")


def test_partial_fc_cap_in_value_only_and_cos_clamp() -> None:
    """metric.py `_pfc_margin_ce`: each loss capped at −log 1e-30 in VALUE only (the gradient
    is the uncapped CE's, straight through the margin), and cos clamped to [−1, 1] before acos."""
    v = ROUNDS_ABOVE_ONE  # û·û rounds above 1
    w = leaf([v, [-x for x in v], [0.3, -0.2, 0.5, 0.1]])
    x = leaf([[-e for e in v], [0.5, 0.1, -0.3, 0.2], v])  # anti-parallel to its class (capped); parallel
    labels = [0, 2, 0]
    s, m = mpf(64), mpf(0.5)
    out = F.partial_fc(x, torch.tensor(labels), w, sample_rate=1.0, reduction="none")
    xs, ws = flat(x), flat(w)

    def cosines(xv: list[Any], wv: list[Any]) -> list[list[Any]]:
        u, c = [mp_unit(r) for r in rows_of(xv, 4)], [mp_unit(r) for r in rows_of(wv, 4)]
        return [[mp_dot(a, b) for b in c] for a in u]

    cos = cosines(xs, ws)
    cap = -mpmath.log(mpf("1e-30"))
    values, coef = [], []
    for row, t in zip(cos, labels):
        logits = [s * (mpmath.cos(mpmath.acos(min(max(c, -1), 1)) + m) if j == t else c) for j, c in enumerate(row)]
        values.append(min(mp_lse(logits) - logits[t], cap))
        p = mp_softmax(logits)
        coef.append([s * (p[j] - (j == t)) for j in range(3)])  # ∂l/∂cos_ij, straight through
    assert_close(out, values, what="value")
    assert float(values[0]) == pytest.approx(float(cap))  # the cap binds

    def surrogate(xv: list[Any], wv: list[Any]) -> Any:
        c = cosines(xv, wv)
        return mpmath.fsum(coef[i][j] * c[i][j] for i in range(3) for j in range(3))

    gx, gw = torch.autograd.grad(out.sum(), (x, w))
    assert_close(gx, num_grad(lambda v_: surrogate(v_, ws), xs), atol=1e-10, what="grad embeddings")
    assert_close(gw, num_grad(lambda v_: surrogate(xs, v_), ws), atol=1e-10, what="grad weight")


def test_sface_acos_of_a_cosine_rounded_above_one() -> None:
    """metric.py `sface`: the detached θ = acos(clamp(cos, −1, 1)) (θ = 0, not NaN, where û·ŵ
    rounds above 1)."""
    v = ROUNDS_ABOVE_ONE
    w = torch.tensor([v, [0.3, -0.2, 0.5, 0.1]], dtype=torch.float64)
    x = leaf([v, [0.5, 0.1, -0.3, 0.2]])
    labels = [0, 1]
    s, k, a, b = mpf(64), mpf(80), mpf(0.8), mpf(1.23)
    ws = [mp_unit(r) for r in rows_of(flat(w), 4)]

    def cosines(xv: list[Any]) -> list[list[Any]]:
        return [[mp_dot(mp_unit(r), c) for c in ws] for r in rows_of(xv, 4)]

    c0 = cosines(flat(x))  # the weights are computed once, without gradient
    wts = []
    for row, t in zip(c0, labels):
        th = [mpmath.acos(min(max(c, -1), 1)) for c in row]
        wts.append([mp_sigmoid(k * (th[j] - a)) if j == t else mp_sigmoid(-k * (th[j] - b)) for j in range(2)])

    def per_row(xv: list[Any]) -> list[Any]:
        c = cosines(xv)
        return [-wts[i][t] * s * c[i][t] + mpmath.fsum(wts[i][j] * s * c[i][j] for j in range(2) if j != t)
                for i, t in enumerate(labels)]

    out = F.sface(x, torch.tensor(labels), w, reduction="none")
    xs = flat(x)
    assert_close(out, per_row(xs), rtol=1e-9, what="value")
    assert_close(grad_of(out, x), num_grad(lambda v_: mpmath.fsum(per_row(v_)), xs), rtol=1e-9, atol=1e-10,
                 what="grad")


# ============================================================================= ssl.py
@pytest.mark.parametrize("learnable", [False, True])
def test_debiased_negative_estimator_floor(learnable: bool) -> None:
    """ssl.py `_debiased`: Ng floored at M·e^{−1/T} (a float T: torch.clamp; a tensor T:
    torch.maximum, whose floor carries its derivative in T)."""
    a = leaf([[1.0, 0.1, 0.0], [0.0, 1.0, 0.2], [0.3, -0.4, 1.0]])
    b = leaf([[0.95, 0.15, 0.05], [0.5, 0.8, -0.1], [-0.6, 0.2, 0.4]])
    tau_plus = mpf(0.5)
    temperature = leaf(0.5) if learnable else 0.5
    out = F.debiased_contrastive(a, b, temperature=temperature, tau_plus=0.5, reduction="none")
    n, m = 3, 4

    def per_pair(xs: list[Any]) -> list[Any]:
        av, bv = [mp_unit(r) for r in rows_of(xs[:9], 3)], [mp_unit(r) for r in rows_of(xs[9:18], 3)]
        t = xs[18]
        views = av + bv
        losses = []
        for i in range(2 * n):
            pos_j = (i + n) % (2 * n)
            pos = mpmath.exp(mp_dot(views[i], views[pos_j]) / t)
            neg = mpmath.fsum(mpmath.exp(mp_dot(views[i], views[k]) / t) for k in range(2 * n) if k not in (i, pos_j))
            ng = max((neg - tau_plus * m * pos) / (1 - tau_plus), m * mpmath.exp(-1 / t))
            losses.append(-mpmath.log(pos / (pos + ng)))
        return [(losses[i] + losses[i + n]) / 2 for i in range(n)]

    xs = flat(a) + flat(b) + [mpf(0.5)]
    want = per_pair(xs)
    assert_close(out, want, what="value")
    g = num_grad(lambda v: mpmath.fsum(per_pair(v)), xs)
    inputs = (a, b, temperature) if learnable else (a, b)
    grads = torch.autograd.grad(out.sum(), inputs)
    assert_close(torch.cat([t.reshape(-1) for t in grads]), g[: 19 if learnable else 18], what="grad")
    # the floor binds for some anchor of this batch (else the test would not test it)
    views = [mp_unit(r) for r in rows_of(xs[:18], 3)]
    bound = [((mpmath.fsum(mpmath.exp(2 * mp_dot(views[i], views[k])) for k in range(6) if k not in (i, (i + 3) % 6))
               - tau_plus * m * mpmath.exp(2 * mp_dot(views[i], views[(i + 3) % 6]))) / (1 - tau_plus))
             < m * mpmath.exp(-2) for i in range(6)]
    assert any(bound) and not all(bound)


def test_barlow_twins_batch_norm_eps() -> None:
    """ssl.py `barlow_twins`: eps = 1e-5 inside the square root of the biased batch variance
    (a constant feature standardises to 0, a feature of variance ~eps is damped)."""
    a = leaf([[1.0, 0.3, 0.002], [1.0, -0.5, -0.001], [1.0, 0.9, 0.004], [1.0, 0.1, 0.0]])
    b = leaf([[0.2, 0.4, -0.3], [-0.7, 0.1, 0.8], [0.5, -0.2, 0.1], [0.3, 0.6, -0.9]])
    lambd, eps, n, d = mpf(0.0051), mpf(1e-5), 4, 3

    def bn(x: list[list[Any]]) -> list[list[Any]]:
        cols = []
        for j in range(d):
            col = [r[j] for r in x]
            mu = mpmath.fsum(col) / n
            var = mpmath.fsum((v - mu) ** 2 for v in col) / n
            cols.append([(v - mu) / mpmath.sqrt(var + eps) for v in col])
        return [[cols[j][i] for j in range(d)] for i in range(n)]

    def per_row(xs: list[Any]) -> list[Any]:
        za, zb = bn(rows_of(xs[:12], 3)), bn(rows_of(xs[12:], 3))
        c = [[mpmath.fsum(za[k][i] * zb[k][j] for k in range(n)) / n for j in range(d)] for i in range(d)]
        return [(1 - c[i][i]) ** 2 + lambd * mpmath.fsum(c[i][j] ** 2 for j in range(d) if j != i) for i in range(d)]

    out = F.barlow_twins(a, b, reduction="none")
    xs = flat(a) + flat(b)
    assert_close(out, per_row(xs), rtol=1e-9, what="value")
    ga, gb = torch.autograd.grad(out.sum(), (a, b))
    assert_close(torch.cat([ga.reshape(-1), gb.reshape(-1)]), num_grad(lambda v: mpmath.fsum(per_row(v)), xs),
                 rtol=1e-8, atol=1e-10, what="grad")


@pytest.mark.parametrize("loss", ["decoupled_contrastive", "debiased_contrastive", "hard_negative_contrastive"])
def test_single_pair_has_no_negative(loss: str) -> None:
    """ssl.py: one pair leaves no negative (DCL's N = 1, the debiased M = 2N − 2 = 0): the loss is
    0 with a zero gradient, not log of an empty sum."""
    a, b = leaf([[0.3, -0.2, 0.9]]), leaf([[0.1, 0.4, -0.5]])
    out = getattr(F, loss)(a, b)
    assert float(out.detach()) == 0.0
    ga, gb = torch.autograd.grad(out, (a, b))
    assert torch.equal(ga, torch.zeros_like(a)) and torch.equal(gb, torch.zeros_like(b))
