"""The native CPU kernel of the cross-entropy family (lossatlas/_native) against the torch path.

Every case compares the native forward and backward with the composed torch ops
(``fused=False``: ATen's cross-entropy of the adjusted logits), which tests/test_imbalance.py
and the parity suite check against the papers' formulas and official code.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
from lossatlas import _native
from lossatlas.functional._fused import (
    affine_cross_entropy,
    native_cross_entropy,
    softmax_focal_ignore,
    use_native,
)

if not _native.available():  # pragma: no cover - machines without a C++ compiler
    pytest.skip("no C++ compiler here: the native kernel cannot be built (the torch path is tested elsewhere)",
                allow_module_level=True)

N, C = 9, 5
REDUCTIONS = ("none", "mean", "sum")


@pytest.fixture(autouse=True)
def _restore_native():
    yield
    _native._reset()


def _data(seed=0, dtype=torch.float64, n=N, c=C, spread=3.0):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, c, generator=g, dtype=torch.float64) * spread).to(dtype)
    y = torch.randint(0, c, (n,), generator=g)
    return z, y


def _value_and_grad(fn, z):
    z = z.detach().clone().requires_grad_(True)
    out = fn(z)
    out.backward(torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape))
    return out.detach(), z.grad


def _close(a, b, dtype=torch.float64):
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(a, b, rtol=tol, atol=tol, equal_nan=True)


def _affine_cases(dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    r = lambda: (torch.rand(C, generator=g, dtype=torch.float64) + 0.5).to(dtype)  # noqa: E731
    return {
        "plain": {},
        "bias (LA / BS)": {"bias": r().log()},
        "divisor + bias (VS)": {"divisor": r(), "bias": r().log()},
        "scale + shift (LDAM)": {"scale": 30.0, "shift": -r()},
        "vector scale + bias": {"scale": r(), "bias": r()},
        "scale + bias + shift": {"scale": 2.0, "bias": r(), "shift": -r().unsqueeze(1)},
    }


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(_affine_cases()))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_affine_cross_entropy_equals_torch_path(case, reduction, dtype):
    kw = _affine_cases(dtype)[case]
    z, y = _data(dtype=dtype)
    weight = (torch.rand(C, generator=torch.Generator().manual_seed(2), dtype=torch.float64) + 0.1).to(dtype)
    for w in (None, weight):
        for ignored in ([], [2, 7]):
            t = y.clone()
            t[ignored] = -100
            assert use_native(z.requires_grad_(), t)
            v, g = _value_and_grad(lambda u: native_cross_entropy(u, t, weight=w, reduction=reduction, **kw), z)
            v_ref, g_ref = _value_and_grad(
                lambda u: affine_cross_entropy(u, t, weight=w, reduction=reduction, fused=False, **kw), z)
            _close(v, v_ref, dtype)
            _close(g, g_ref, dtype)
            if ignored:
                assert torch.all(g[ignored] == 0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.3])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_focal_equals_torch_path(gamma, alpha, reduction):
    z, y = _data(3)
    for ignored in ([], [0, 4], list(range(N))):
        t = y.clone()
        t[ignored] = -100
        v, g = _value_and_grad(
            lambda u: native_cross_entropy(u, t, gamma=gamma, alpha=alpha, reduction=reduction, focal=True), z)
        _native.set_enabled(False)
        v_ref, g_ref = _value_and_grad(
            lambda u: softmax_focal_ignore(u, t, gamma, row_scale=alpha, reduction=reduction), z)
        _native.set_enabled(None)
        _close(v, v_ref)
        _close(g, g_ref)


def test_all_rows_ignored_follows_torch():
    z, _ = _data()
    t = torch.full((N,), -100)
    zz = z.clone().requires_grad_()
    assert math.isnan(native_cross_entropy(zz, t).item())  # torch: 0 / 0
    assert native_cross_entropy(zz, t, reduction="sum").item() == 0.0
    assert native_cross_entropy(zz, t, gamma=2.0, focal=True).item() == 0.0  # focal divides by max(kept, 1)


@pytest.mark.parametrize("kw", [{}, {"scale": 30.0, "shift": -torch.rand(C, dtype=torch.float64)},
                                {"divisor": torch.rand(C, dtype=torch.float64) + 0.5, "bias": torch.randn(C, dtype=torch.float64)},
                                {"gamma": 2.0, "focal": True}, {"gamma": 0.7, "alpha": 0.3, "focal": True}])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck(kw, reduction):
    z, y = _data(4, spread=1.0)
    y[1] = -100
    z.requires_grad_()
    assert torch.autograd.gradcheck(lambda u: native_cross_entropy(u, y, reduction=reduction, **kw), (z,))


def test_float32_matches_float64_reference_at_extremes():
    """Large spreads, a -inf (masked) class, a target probability below float32's range."""
    z, y = _data(5, dtype=torch.float32, spread=1e3)
    z[0] = torch.tensor([0.0, -200.0, 10.0, 5.0, -1.0])
    y[0] = 1  # p_t ≈ e^-210: below float32's range, its logarithm is not
    z[1, 3] = -math.inf
    y[1] = 0
    references = {
        0.0: lambda u: F.cross_entropy(u.double(), y, reduction="none"),
        2.0: lambda u: softmax_focal_ignore(u.double(), y, 2.0, reduction="none", fused=False),
    }
    for gamma, reference in references.items():
        kw = {"gamma": gamma, "focal": True} if gamma else {}
        v, g = _value_and_grad(lambda u: native_cross_entropy(u, y, reduction="none", **kw), z)
        v_ref, g_ref = _value_and_grad(reference, z)
        torch.testing.assert_close(v.double(), v_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)
        assert torch.isfinite(v).all() and g[1, 3] == 0
        if not gamma:  # −log p_t = logsumexp(z_0) + 200 ≈ 210.0068, though p_t itself underflows float32
            assert v[0].item() == pytest.approx((torch.logsumexp(z[0].double(), 0) + 200).item(), rel=1e-6)


def test_confident_rows_keep_their_digits():
    """p_t = 1 − 1e-12: −log p_t ≈ 1e-12 (log1p path) and focal's (1 − p_t)^γ from the non-target mass."""
    z = torch.tensor([[0.0, -27.631021115928547, -math.inf]], dtype=torch.float64, requires_grad=True)  # e^-27.63 = 1e-12
    y = torch.tensor([0])
    ce = native_cross_entropy(z, y).item()
    assert ce == pytest.approx(1e-12, rel=1e-9)
    fl = native_cross_entropy(z, y, gamma=2.0, focal=True).item()
    assert fl == pytest.approx(1e-36, rel=1e-8)


def test_nan_logits_give_nan_and_public_validation_still_raises():
    z, y = _data()
    z[2, 1] = math.nan
    zz = z.clone().requires_grad_()
    assert math.isnan(native_cross_entropy(zz, y).item())
    with pytest.raises(ValueError, match="NaN|finite"):
        la.functional.ldam(zz, y, [50, 40, 30, 20, 10])


def test_bad_target():
    z, y = _data()
    y[3] = C
    zz = z.clone().requires_grad_()
    with pytest.raises(IndexError, match=f"Target {C} is out of bounds"):
        native_cross_entropy(zz, y)
    with pytest.raises(ValueError):
        la.functional.logit_adjusted(zz, y, [5, 4, 3, 2, 1])  # validate=True: the target check's message
    with pytest.raises(IndexError):
        la.functional.logit_adjusted(zz, y, [5, 4, 3, 2, 1], validate=False)


def test_retain_graph():
    z, y = _data()
    z.requires_grad_()
    loss = native_cross_entropy(z, y, gamma=2.0, focal=True)
    (g1,) = torch.autograd.grad(loss, z, retain_graph=True)
    (g2,) = torch.autograd.grad(loss, z)
    assert torch.equal(g1, g2)


@pytest.mark.parametrize("kw", [{}, {"scale": 30.0, "shift": -torch.rand(C, dtype=torch.float64)},
                                {"gamma": 2.0, "alpha": 0.5, "focal": True}])
def test_double_backward_equals_torch_path(kw):
    """create_graph=True (MAML, gradient penalties): second derivatives of the torch formula."""
    z, y = _data(7, spread=1.0)
    y[2] = -100
    v = torch.randn(N, C, dtype=torch.float64, generator=torch.Generator().manual_seed(8))

    def hvp(fn):
        zz = z.clone().requires_grad_()
        (g,) = torch.autograd.grad(fn(zz), zz, create_graph=True)
        (h,) = torch.autograd.grad((g * v).sum(), zz)
        return g.detach(), h

    g, h = hvp(lambda u: native_cross_entropy(u, y, **kw))
    if kw.get("focal"):
        ref = lambda u: softmax_focal_ignore(u, y, kw["gamma"], row_scale=kw["alpha"], fused=False)  # noqa: E731
    else:
        ref = lambda u: affine_cross_entropy(u, y, fused=False, **kw)  # noqa: E731
    g_ref, h_ref = hvp(ref)
    _close(g, g_ref)
    _close(h, h_ref)
    assert h.abs().sum() > 0


@pytest.mark.parametrize("loss_id", ["cross_entropy", "logit_adjusted", "balanced_softmax", "vs", "ldam", "focal"])
def test_public_losses_take_the_native_path_and_agree(loss_id):
    counts = [60, 30, 15, 8, 4]
    kw = {} if loss_id in ("cross_entropy", "focal") else {"class_counts": counts}
    z, y = _data(6, dtype=torch.float32)
    module = la.create(loss_id, **kw)
    calls = []
    original = _native.library

    def spy():
        calls.append(1)
        return original()

    _native.library = spy
    try:
        v, g = _value_and_grad(lambda u: module(u, y), z)
    finally:
        _native.library = original
    assert calls, "the native kernel was not used"
    _native.set_enabled(False)
    v_ref, g_ref = _value_and_grad(lambda u: module(u, y), z)
    torch.testing.assert_close(v, v_ref, rtol=2e-6, atol=1e-6)
    torch.testing.assert_close(g, g_ref, rtol=2e-5, atol=1e-7)


def test_routing_rules():
    z, y = _data()
    z.requires_grad_()
    assert use_native(z, y)
    assert not use_native(z, y, fused=False) and not use_native(z, y, fused=True)
    assert not use_native(z.detach(), y)  # no gradient needed: ATen's forward is as good
    assert not use_native(z.t(), torch.randint(0, N, (C,)))  # not contiguous
    assert not use_native(z, y.int())  # int32 targets: torch path
    assert not use_native(z.half(), y)
    with torch.no_grad():
        assert not use_native(z, y)
    big = torch.zeros(1024, 256, requires_grad=True)
    assert not use_native(big, torch.zeros(1024, dtype=torch.long))  # the fused softmax kernel's size
    _native.set_enabled(False)
    assert not use_native(z, y)


def test_torch_func_transforms_use_the_torch_path():
    z, y = _data()
    g = torch.func.grad(lambda u: la.functional.cross_entropy(u, y, validate=False))(z)
    zz = z.clone().requires_grad_()
    F.cross_entropy(zz, y).backward()
    _close(g, zz.grad)


def test_exponential_accuracy():
    lib = _native.library()
    for dtype, fn, hi in ((torch.float32, lib.la_exp_f32, 88.0), (torch.float64, lib.la_exp_f64, 709.0)):
        x = torch.cat([torch.linspace(-hi - 20, hi + 0.7, 200_001, dtype=torch.float64).to(dtype),
                       torch.tensor([math.nan, math.inf, -math.inf, 0.0, -0.0], dtype=dtype)])
        out = x.clone()
        fn(out.data_ptr(), out.numel())
        ref = torch.exp(x.double())
        info = torch.finfo(dtype)
        normal = (ref >= info.tiny) & (ref <= info.max)
        rel = ((out.double() - ref).abs() / ref)[normal]
        assert rel.max().item() <= 2 * info.eps
        assert torch.all(out[ref < info.tiny] <= info.tiny)  # below the normal range: 0 (no subnormals)
        assert torch.all(torch.isinf(out[torch.isinf(ref) | (ref > info.max)]))
        assert math.isnan(out[-5].item()) and out[-4].item() == math.inf and out[-3].item() == 0.0
        assert out[-2].item() == 1.0 and out[-1].item() == 1.0


def test_disabled_by_environment_variable():
    code = "from lossatlas import _native; print(_native.available())"
    env = {**os.environ, "LOSSATLAS_NATIVE": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_builds_into_the_cache_and_reuses_it(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LOSSATLAS_CACHE_DIR", str(tmp_path))
    _native._reset()
    with caplog.at_level(logging.INFO, logger="lossatlas.native"):
        assert _native.available()
    built = list(tmp_path.glob("softmax_ce-*"))
    assert len(built) == 1 and "compiled" in caplog.text
    stamp = built[0].stat().st_mtime_ns
    _native._reset()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lossatlas.native"):
        assert _native.available()
    assert built[0].stat().st_mtime_ns == stamp and "compiled" not in caplog.text


def test_without_a_compiler_the_losses_use_torch(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LOSSATLAS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_native, "_compiler", lambda: None)
    _native._reset()
    assert not _native.available()
    z, y = _data()
    z.requires_grad_()
    assert not use_native(z, y)
    v = la.functional.ldam(z, y, [50, 40, 30, 20, 10])
    v.backward()
    assert torch.isfinite(z.grad).all()


def test_a_failing_compiler_is_reported_and_ignored(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LOSSATLAS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_native, "_compiler", lambda: "/bin/false")
    _native._reset()
    with caplog.at_level(logging.WARNING, logger="lossatlas.native"):
        assert not _native.available()
    assert "unavailable" in caplog.text
    assert not list(tmp_path.glob("softmax_ce-*"))  # no half-written library left behind
