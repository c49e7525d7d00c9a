"""Differential tests against the peer libraries that need their own venv (timm, open_clip,
sentence-transformers, torchvision).

These peers do not import beside CI's CPU torch 2.13 build (torchvision 0.28's C ops fail with
it; 0.29 needs torch 2.14), so this file runs from the peers' venv (benchmarks/README.md):

    benchmarks/.venv-peers/bin/python -m pytest -q tests/differential/test_peers.py

In any other venv each test skips, saying which peer is missing; with
``LOSSATLAS_REQUIRE_PEERS=1`` (what ``.ci/run`` sets) a missing peer is a failure instead.

Compared, on inputs drawn by Hypothesis (profiles in ``tests/conftest.py``; ``ci`` by default),
value AND gradient, float32 and float64 wherever the peer computes in float64:

* timm ``AsymmetricLossMultiLabel`` vs ``asymmetric`` (every timm reduction, both focusing-
  weight gradients, soft and multi-hot targets, saturated logits; float32 only: timm casts its
  input to float32), ``AsymmetricLossSingleLabel`` vs ``asymmetric_single_label``,
  ``SoftTargetCrossEntropy`` vs ``cross_entropy`` with probability targets (also the target's
  gradient), ``LabelSmoothingCrossEntropy`` vs ``cross_entropy(label_smoothing=)``;
* open_clip ``ClipLoss`` vs ``infonce`` (symmetric, ``temperature = 1 / logit_scale``; a fixed
  float scale and a learnable one, whose gradient is compared too) and ``SigLipLoss`` vs
  ``siglip`` (scale and bias learnable); both the dense and the tiled form of lossatlas;
* sentence-transformers ``MultipleNegativesRankingLoss`` (the one-way, symmetric and
  query-to-query forms, cosine and dot similarity) on the same embedding batch through
  ``compute_loss_from_embeddings``, and ``CachedMultipleNegativesRankingLoss`` through a real
  GradCache forward/backward of a tiny ``SentenceTransformer`` built here (an embedding table,
  nothing downloaded): the gradient that reaches the table is compared;
* torchvision ``sigmoid_focal_loss`` vs ``sigmoid_focal`` (tests/differential/test_torch.py
  compares its formula; here the library itself).

Where the peer's gradient is NaN and lossatlas's is finite (a focusing exponent 0 < γ < 1 where
the base ``1 − p_t`` is 0 in floating point: ASL multi- and single-label, sigmoid focal), the
NaN elements are compared with an exact mpmath reference instead; where timm's float32 formula
loses digits (``1 − σ(z)`` for |z| > 8 without the probability margin, ``1 − (1 − p_j)`` in the
single-label weights with γ < 1), lossatlas is compared with mpmath there. Each deliberate
difference is asserted below and listed in docs/differences.md ("timm, open_clip,
sentence-transformers, torchvision").
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import mpmath
import pytest
import torch
import torch.nn.functional as F
from hypothesis import event, given
from hypothesis import strategies as st
from torch import Tensor, nn

import lossatlas.functional as LF
from lossatlas._paths import force_path

F32, F64 = torch.float32, torch.float64
#: set by .ci/run: a peer that cannot be imported fails the run instead of skipping
REQUIRE_PEERS = os.environ.get("LOSSATLAS_REQUIRE_PEERS", "") not in ("", "0")
VALUE_TOL = {F32: {"rtol": 2e-5, "atol": 1e-6}, F64: {"rtol": 1e-11, "atol": 1e-13}}
GRAD_TOL = {F32: {"rtol": 2e-4, "atol": 2e-6}, F64: {"rtol": 1e-9, "atol": 1e-12}}
EPS = {F32: 2.0**-23, F64: 2.0**-52}


# ------------------------------------------------------------------ peers
def _peer(module: str, pip_name: str) -> Any:
    reason = (f"peer library {pip_name} ({module}) not importable: it runs from the peers' venv "
              "(benchmarks/README.md), since torchvision does not import beside CI's CPU torch 2.13")
    if REQUIRE_PEERS:
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            pytest.fail(f"LOSSATLAS_REQUIRE_PEERS is set but the {reason}: {exc!r}")
    try:
        return pytest.importorskip(module, reason=reason)
    except (OSError, RuntimeError) as exc:  # installed but broken beside this torch (torchvision's C ops)
        pytest.skip(f"{reason}: {exc!r}")


@pytest.fixture(scope="module")
def timm_loss() -> Any:
    return _peer("timm.loss", "timm")


@pytest.fixture(scope="module")
def clip_loss() -> Any:
    return _peer("open_clip.loss", "open_clip_torch")


@pytest.fixture(scope="module")
def tv_ops() -> Any:
    return _peer("torchvision.ops", "torchvision")


@pytest.fixture(scope="module")
def st_lib() -> Any:
    return _peer("sentence_transformers.sentence_transformer.losses", "sentence-transformers")


# ------------------------------------------------------------------ helpers
def cotangent(out: Tensor) -> Tensor:
    """A fixed non-uniform cotangent, so that a ``"none"`` output's every element is checked."""
    if out.dim() == 0:
        return torch.ones_like(out)
    return torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)


def value_and_grads(fn: Callable[..., Tensor], *inputs: Tensor) -> tuple[Tensor, list[Tensor]]:
    """``fn`` on fresh leaf copies of ``inputs``: its value and the gradients w.r.t. each input."""
    leaves = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
    out = fn(*leaves)
    wrt = [x for x in leaves if x.requires_grad]
    grads = torch.autograd.grad(out, wrt, cotangent(out), allow_unused=True) if out.numel() else [None] * len(wrt)
    return out.detach(), [torch.zeros_like(x) if g is None else g for x, g in zip(wrt, grads)]


def assert_same(ours: tuple[Tensor, list[Tensor]], peer: tuple[Tensor, list[Tensor]], dtype: torch.dtype,
                magnitude: float = 1.0, grad_magnitude: float = 1.0) -> None:
    """Value within VALUE_TOL, every gradient within GRAD_TOL.

    ``magnitude`` is the size of the largest term the loss sums (e.g. the largest logit of a
    similarity loss) and ``grad_magnitude`` that of the largest term of a gradient: rounding in
    either library is ε times them, so the absolute tolerances scale with them.
    """
    (v, gs), (pv, pgs) = ours, peer
    assert v.dtype == pv.dtype and v.shape == pv.shape, (v.dtype, pv.dtype, v.shape, pv.shape)
    m = max(1.0, magnitude)
    torch.testing.assert_close(v, pv, rtol=VALUE_TOL[dtype]["rtol"], atol=VALUE_TOL[dtype]["atol"] * m)
    for g, pg in zip(gs, pgs, strict=True):
        big = max(1.0, grad_magnitude, float(pg.abs().max()) if pg.numel() else 1.0)
        torch.testing.assert_close(g, pg, rtol=GRAD_TOL[dtype]["rtol"], atol=GRAD_TOL[dtype]["atol"] * m * big)


def similarity_magnitudes(a: Tensor, b: Tensor, scale: float, normalize: bool) -> tuple[float, float]:
    """The largest |logit| of ``scale · a bᵀ`` (cosines when normalised) and the largest term of
    its gradient w.r.t. a row (``scale · |b_j|``; through the normalisation ``scale / |a_i|``)."""
    na, nb = a.double().norm(dim=1), b.double().norm(dim=1)
    if not a.numel():
        return scale, scale
    if normalize:
        return scale, scale / max(float(torch.cat([na, nb]).min()), 1e-30)
    return scale * float(na.max() * nb.max()), scale * float(torch.cat([na, nb]).max())


def assert_matches_exact(ours: Tensor, exact: Sequence[float], dtype: torch.dtype, what: str) -> None:
    """Each element within 64 ε of the exact value, relative to it or to the batch's scale.

    The scale is ``max(1, max |exact|)``: lossatlas keeps every element to the dtype's
    resolution of an O(1) loss; a term far below that (e.g. ``(1 − p_t)^γ · CE ≈ 1e-20`` at a
    saturated logit) may be rounded away, as any float sum of it with the others would.
    """
    ref = torch.tensor(list(exact), dtype=F64).reshape(ours.shape)
    got = ours.detach().to(F64)
    assert bool(torch.isfinite(got).all()), f"{what}: lossatlas gives non-finite {got}"
    scale = max(1.0, float(ref.abs().max())) if ref.numel() else 1.0
    bound = 64 * EPS[dtype] * (ref.abs() + scale)
    bad = (got - ref).abs() > bound
    assert not bool(bad.any()), f"{what}: lossatlas {got[bad].tolist()} vs exact {ref[bad].tolist()}"


def _seeded(draw: st.DrawFn) -> torch.Generator:
    return torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))


def _sig(x: Any) -> Any:
    return 1 / (1 + mpmath.exp(-x))


#: mpmath working precision of the exact references (decimal digits)
DPS = 60


# ------------------------------------------------------------------ exact references (mpmath)
def asl_exact(z: float, y: float, gamma_neg: float, gamma_pos: float, clip: float | None, eps: float,
              detach: bool) -> tuple[float, float]:
    """ASL's element (Ridnik et al. 2021; Alibaba-MIIL/ASL ``AsymmetricLoss``) and its derivative.

    ``l = −[y log max(p, eps) + (1 − y) log max(x⁻, eps)] · (1 − p_t)^γ`` with ``p = σ(z)``,
    ``x⁻ = min(1 − p + clip, 1)`` (``1 − p`` without a clip), ``1 − p_t = y (1 − p) + (1 − y)(1 − x⁻)``
    and ``γ = γ+ y + γ− (1 − y)``; the detached form's derivative is ``(1 − p_t)^γ · ∂CE/∂z``.
    """
    with mpmath.workdps(DPS):
        zz, yy = mpmath.mpf(z), mpmath.mpf(y)

        def parts(x: Any) -> tuple[Any, Any]:
            p, q = _sig(x), _sig(-x)  # q = 1 - p, computed without cancellation
            xn = min(q + clip, 1) if clip else q
            one_minus_xn = max(p - clip, 0) if clip else p
            ce = -(yy * mpmath.log(max(p, eps)) + (1 - yy) * mpmath.log(max(xn, eps)))
            if gamma_neg == 0 and gamma_pos == 0:
                return ce, mpmath.mpf(1)
            return ce, (yy * q + (1 - yy) * one_minus_xn) ** (gamma_pos * yy + gamma_neg * (1 - yy))

        ce, w = parts(zz)
        if detach:
            grad = w * mpmath.diff(lambda x: parts(x)[0], zz)
        else:
            grad = mpmath.diff(lambda x: parts(x)[0] * parts(x)[1], zz)
        return float(ce * w), float(grad)


def sigmoid_focal_exact(z: float, y: float, alpha: float | None, gamma: float) -> tuple[float, float]:
    """Sigmoid focal loss element (Lin et al. 2017, torchvision's definition) and its derivative."""
    with mpmath.workdps(DPS):
        zz, yy = mpmath.mpf(z), mpmath.mpf(y)
        a = 1 if alpha is None else alpha * yy + (1 - alpha) * (1 - yy)

        def f(x: Any) -> Any:
            p, q = _sig(x), _sig(-x)
            ce = -(yy * mpmath.log(p) + (1 - yy) * mpmath.log(q))
            return a * (yy * q + (1 - yy) * p) ** gamma * ce

        return float(f(zz)), float(mpmath.diff(f, zz))


def asl_single_exact(z: Sequence[float], y: int, gamma_pos: float, gamma_neg: float, eps: float) -> tuple[float, list[float]]:
    """Single-label ASL of one row (Alibaba-MIIL/ASL ``ASLSingleLabel``) and its gradient.

    ``l = −Σ_j t_j w_j log p_j``, ``p = softmax(z)``, ``w_y = (1 − p_y)^γ+``, ``w_j = p_j^γ−``,
    ``t = (1 − ε) e_y + ε / C``.
    """
    c = len(z)
    with mpmath.workdps(DPS):
        def f(*x: Any) -> Any:
            lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in x))
            logp = [v - lse for v in x]
            p = [mpmath.exp(v) for v in logp]
            rest = mpmath.fsum(p[j] for j in range(c) if j != y)  # 1 − p_y without cancellation
            total = mpmath.mpf(0)
            for j in range(c):
                w = rest**gamma_pos if j == y else p[j] ** gamma_neg
                t = (1 - eps) * (j == y) + mpmath.mpf(eps) / c
                total -= t * w * logp[j]
            return total

        zz = [mpmath.mpf(v) for v in z]
        grad = [float(mpmath.diff(f, zz, tuple(int(i == k) for i in range(c)))) for k in range(c)]
        return float(f(*zz)), grad


# ================================================================== timm: ASL multi-label
@st.composite
def asl_cases(draw: st.DrawFn, nan_prone: bool = False) -> dict[str, Any]:
    """ASL inputs; ``nan_prone``: 0 < γ < 1, the weight differentiated, saturated logits (where
    timm's gradient has NaN elements)."""
    g = _seeded(draw)
    n, c = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    # |z| ≤ 8 keeps timm's float32 1 − σ(z) accurate (see test_asl_where_timm_float32_loses_digits);
    # saturated entries (±30, ±100) are where both formulas are exact again, or timm's gradient is NaN.
    z = (torch.randn(n, c, generator=g) * draw(st.sampled_from((0.1, 1.0, 3.0)))).clamp(-8, 8)
    if nan_prone or draw(st.booleans()):
        hit = torch.rand(n, c, generator=g) < 0.3
        big = torch.tensor([30.0, 100.0])[torch.randint(0, 2, (n, c), generator=g)]
        z = torch.where(hit, big * torch.randn(n, c, generator=g).sign(), z)
    kind = draw(st.sampled_from(("multi_hot", "soft", "zeros", "ones")))
    y = {"multi_hot": (torch.rand(n, c, generator=g) < 0.3).float(), "soft": torch.rand(n, c, generator=g),
         "zeros": torch.zeros(n, c), "ones": torch.ones(n, c)}[kind]
    return {
        "z": z, "y": y,
        "gamma_neg": draw(st.sampled_from((0.25, 0.5) if nan_prone else (0.0, 0.5, 1.0, 2.0, 4.0))),
        "gamma_pos": draw(st.sampled_from((0.25, 0.5) if nan_prone else (0.0, 0.5, 1.0, 2.0))),
        "clip": draw(st.sampled_from((None, 0.0, 0.05, 0.3))),
        "eps": draw(st.sampled_from((1e-8, 1e-3))),
        "detach": False if nan_prone else draw(st.booleans()),
        "reduction": draw(st.sampled_from(("batchmean", "sum", "mean", "none"))),
        "path": draw(st.sampled_from(("plain", "fused"))),
    }


@given(case=st.one_of(asl_cases(), asl_cases(nan_prone=True)))
def test_asl_multilabel_equals_timm(timm_loss: Any, case: dict[str, Any]) -> None:
    z, y, red = case["z"], case["y"], case["reduction"]
    hp = {k: case[k] for k in ("gamma_neg", "gamma_pos", "clip", "eps")}
    peer = timm_loss.AsymmetricLossMultiLabel(**hp, disable_torch_grad_focal_loss=case["detach"], reduction=red)

    def ours(x: Tensor) -> Tensor:
        with force_path(case["path"]):
            out = LF.asymmetric(x, y, **hp, detach_weight=case["detach"], reduction="sum" if red == "batchmean" else red)
        return out / x.shape[0] if red == "batchmean" else out

    v, (g,) = value_and_grads(ours, z)
    pv, (pg,) = value_and_grads(lambda x: peer(x, y), z)
    torch.testing.assert_close(v, pv, **VALUE_TOL[F32])
    nan = torch.isnan(pg)
    # timm's gradient is NaN only where (1 − p_t)^γ with 0 < γ < 1 is differentiated at a base of 0
    gammas = (case["gamma_neg"], case["gamma_pos"])
    assert not nan.any() or (not case["detach"] and any(0 < gm < 1 for gm in gammas)), pg
    torch.testing.assert_close(g[~nan], pg[~nan], **GRAD_TOL[F32])
    if nan.any():  # there: lossatlas's finite gradient is the exact one
        event("timm's ASL gradient has NaN elements: compared with mpmath")
        factor = {"batchmean": 1 / z.shape[0], "sum": 1.0, "mean": 1 / z.numel()}.get(red)
        cot = cotangent(v) if factor is None else torch.full_like(z, factor)
        exact = [asl_exact(float(z[i, j]), float(y[i, j]), **hp, detach=case["detach"])[1] * float(cot[i, j])
                 for i, j in nan.nonzero().tolist()]
        assert_matches_exact(g[nan], exact, F32, "ASL gradient where timm's is NaN")


# ================================================================== timm: ASL single-label
@st.composite
def single_label_cases(draw: st.DrawFn, gammas: Sequence[float], scales: Sequence[float]) -> dict[str, Any]:
    g = _seeded(draw)
    dtype = draw(st.sampled_from((F32, F64)))
    n, c = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    z = torch.randn(n, c, generator=g, dtype=F64) * draw(st.sampled_from(scales))
    if draw(st.booleans()) and n > 1:
        z[1:] = z[0]  # duplicate rows
    y = torch.randint(0, c, (n,), generator=g) if draw(st.booleans()) else torch.full((n,), c - 1)
    return {"z": z.to(dtype), "y": y, "dtype": dtype,
            "gamma_pos": draw(st.sampled_from(gammas)), "gamma_neg": draw(st.sampled_from(gammas)),
            "eps": draw(st.sampled_from((0.0, 0.1, 0.5))), "reduction": draw(st.sampled_from(("mean", "none")))}


@given(case=single_label_cases(gammas=(0.0, 1.0, 2.0, 4.0), scales=(0.1, 1.0, 5.0)))
def test_asl_single_label_equals_timm(timm_loss: Any, case: dict[str, Any]) -> None:
    z, y, red = case["z"], case["y"], case["reduction"]
    hp = {k: case[k] for k in ("gamma_pos", "gamma_neg", "eps")}
    peer = timm_loss.AsymmetricLossSingleLabel(**hp, reduction=red)  # anything but "mean" is per sample
    ours = value_and_grads(lambda x: LF.asymmetric_single_label(x, y, **hp, reduction=red), z)
    assert_same(ours, value_and_grads(lambda x: peer(x, y), z), case["dtype"])


@given(case=single_label_cases(gammas=(0.0, 0.25, 0.5, 2.0), scales=(1.0, 30.0, 100.0)))
def test_asl_single_label_gamma_below_one_is_exact(case: dict[str, Any]) -> None:
    """γ < 1 and saturated logits: timm's ``1 − (1 − p_j)`` rounds the base to 0 (its weight
    then 0, its gradient NaN); lossatlas's value and gradient are those of an mpmath reference."""
    z, y, red, dtype = case["z"], case["y"], case["reduction"], case["dtype"]
    hp = {k: case[k] for k in ("gamma_pos", "gamma_neg", "eps")}
    v, (g,) = value_and_grads(lambda x: LF.asymmetric_single_label(x, y, **hp, reduction=red), z)
    rows = [asl_single_exact(z[i].tolist(), int(y[i]), **hp) for i in range(z.shape[0])]
    n = z.shape[0]
    cot = [1.0 / n] * n if red == "mean" else cotangent(v).tolist()
    exact_v = [sum(r[0] for r in rows) / n] if red == "mean" else [r[0] for r in rows]
    assert_matches_exact(v.reshape(-1), exact_v, dtype, "single-label ASL value")
    assert_matches_exact(g, [gj * cot[i] for i, r in enumerate(rows) for gj in r[1]], dtype, "single-label ASL gradient")


# ================================================================== timm: cross-entropy
@st.composite
def soft_target_cases(draw: st.DrawFn) -> tuple[Tensor, Tensor, torch.dtype]:
    g = _seeded(draw)
    dtype = draw(st.sampled_from((F32, F64)))
    n, c = draw(st.integers(1, 6)), draw(st.integers(1, 7))
    z = torch.randn(n, c, generator=g, dtype=F64) * draw(st.sampled_from((0.1, 1.0, 10.0, 100.0)))
    kind = draw(st.sampled_from(("softmax", "mixup", "one_hot")))
    if kind == "softmax":
        t = torch.softmax(torch.randn(n, c, generator=g, dtype=F64) * 3, dim=1)
    else:  # timm's Mixup: λ·smooth(e_a) + (1 − λ)·smooth(e_b), or a plain one-hot
        a, b = torch.randint(0, c, (n,), generator=g), torch.randint(0, c, (n,), generator=g)
        lam = float(torch.rand((), generator=g, dtype=F64)) if kind == "mixup" else 1.0
        s = draw(st.sampled_from((0.0, 0.1))) if kind == "mixup" else 0.0
        oh = lambda k: F.one_hot(k, c).to(F64) * (1 - s) + s / c
        t = lam * oh(a) + (1 - lam) * oh(b)
    return z.to(dtype), t.to(dtype), dtype


@given(case=soft_target_cases())
def test_soft_target_cross_entropy_equals_timm(timm_loss: Any, case: tuple[Tensor, Tensor, torch.dtype]) -> None:
    z, t, dtype = case
    peer = timm_loss.SoftTargetCrossEntropy()
    # the gradient w.r.t. the target too (distillation targets carry one)
    assert_same(value_and_grads(LF.cross_entropy, z, t), value_and_grads(peer, z, t), dtype)


@given(dtype=st.sampled_from((F32, F64)), n=st.integers(1, 6), c=st.integers(1, 7),
       scale=st.sampled_from((0.1, 1.0, 10.0, 100.0)), smoothing=st.sampled_from((0.0, 0.1, 0.3, 0.9)),
       seed=st.integers(0, 2**31 - 1))
def test_label_smoothing_cross_entropy_equals_timm(timm_loss: Any, dtype: torch.dtype, n: int, c: int, scale: float,
                                                   smoothing: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, c, generator=g, dtype=F64) * scale).to(dtype)
    y = torch.randint(0, c, (n,), generator=g)
    peer = timm_loss.LabelSmoothingCrossEntropy(smoothing=smoothing)
    ours = value_and_grads(lambda x: LF.cross_entropy(x, y, label_smoothing=smoothing), z)
    assert_same(ours, value_and_grads(lambda x: peer(x, y), z), dtype)


# ================================================================== open_clip
@st.composite
def pair_batches(draw: st.DrawFn, min_n: int = 1) -> tuple[Tensor, Tensor, torch.dtype]:
    """Two views [N, D] (row norms 2^k, a few duplicated rows), in float32 or float64."""
    g = _seeded(draw)
    dtype = draw(st.sampled_from((F32, F64)))
    n, d = draw(st.integers(min_n, 8)), draw(st.integers(1, 6))
    a = torch.randn(n, d, generator=g, dtype=F64)
    b = a + torch.randn(n, d, generator=g, dtype=F64) * draw(st.sampled_from((0.1, 1.0, 3.0)))
    if draw(st.booleans()) and n > 2:
        a[2], b[2] = a[0], b[0]  # a duplicated pair (its copy is a negative of equal score)
    k = torch.tensor(draw(st.lists(st.integers(-8, 8), min_size=n, max_size=n)), dtype=F64)
    return (a * 2.0**k[:, None]).to(dtype), (b * 2.0 ** k.flip(0)[:, None]).to(dtype), dtype


@given(batch=pair_batches(), scale=st.sampled_from((1.0, 1 / 0.07, 100.0)), learnable=st.booleans(),
       normalize=st.booleans(), tiled=st.booleans())
def test_clip_loss_equals_symmetric_infonce(clip_loss: Any, batch: tuple[Tensor, Tensor, torch.dtype], scale: float,
                                            learnable: bool, normalize: bool, tiled: bool) -> None:
    """open_clip's ClipLoss gets the model's unit features (F.normalize: what open_clip's
    models return) or, with ``normalize=False``, the raw rows as lossatlas does."""
    a, b, dtype = batch
    s = torch.tensor(scale, dtype=dtype)
    prep = (lambda x: F.normalize(x, dim=-1)) if normalize else (lambda x: x)
    peer = clip_loss.ClipLoss()

    def run(fn: Callable[[Tensor, Tensor, Any], Tensor]) -> tuple[Tensor, list[Tensor]]:
        if learnable:
            return value_and_grads(fn, a, b, s)
        return value_and_grads(lambda x, y: fn(x, y, scale), a, b)

    ours = run(lambda x, y, t: LF.infonce(x, y, temperature=1 / t, symmetric=True, normalize=normalize, tiled=tiled))
    theirs = run(lambda x, y, t: peer(prep(x), prep(y), t))
    # raw rows up to 2^8 make the logits large: tolerances scale with them
    assert_same(ours, theirs, dtype, *similarity_magnitudes(a, b, scale, normalize))


@given(batch=pair_batches(), scale=st.sampled_from((1.0, 10.0, 100.0)), bias=st.sampled_from((-10.0, 0.0, 3.0)),
       normalize=st.booleans(), tiled=st.booleans())
def test_siglip_loss_equals_siglip(clip_loss: Any, batch: tuple[Tensor, Tensor, torch.dtype], scale: float, bias: float,
                                   normalize: bool, tiled: bool) -> None:
    """open_clip's SigLipLoss takes the exponentiated scale t and the bias b (its model
    passes ``logit_scale.exp()``); both are learnable here and their gradients compared."""
    a, b, dtype = batch
    t, bi = torch.tensor(scale, dtype=dtype), torch.tensor(bias, dtype=dtype)
    prep = (lambda x: F.normalize(x, dim=-1)) if normalize else (lambda x: x)
    peer = clip_loss.SigLipLoss()
    ours = value_and_grads(lambda x, y, s, c: LF.siglip(x, y, scale=s, bias=c, normalize=normalize, tiled=tiled), a, b, t, bi)
    theirs = value_and_grads(lambda x, y, s, c: peer(prep(x), prep(y), s, c), a, b, t, bi)
    # each row sums N softplus terms
    logit, grad = similarity_magnitudes(a, b, scale, normalize)
    assert_same(ours, theirs, dtype, a.shape[0] * (logit + abs(bias)), a.shape[0] * grad)


# ================================================================== sentence-transformers
MNRL_FORMS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # sentence-transformers directions / partition_mode  ->  lossatlas infonce keywords
    "one_way": ({"directions": ("query_to_doc",), "partition_mode": "joint"},
                {"symmetric": False}),
    "symmetric": ({"directions": ("query_to_doc", "doc_to_query"), "partition_mode": "per_direction"},
                  {"symmetric": True}),
    "query_to_query": ({"directions": ("query_to_doc", "query_to_query"), "partition_mode": "joint"},
                       {"symmetric": False, "intra_view_negatives": True}),
}


@given(batch=pair_batches(), form=st.sampled_from(sorted(MNRL_FORMS)), cosine=st.booleans(),
       scale=st.sampled_from((1.0, 20.0, 50.0)), tiled=st.booleans())
def test_multiple_negatives_ranking_equals_infonce(st_lib: Any, batch: tuple[Tensor, Tensor, torch.dtype], form: str,
                                                   cosine: bool, scale: float, tiled: bool) -> None:
    """MNRL's ``compute_loss_from_embeddings`` (the loss on the columns' embeddings) on the
    same (query, document) batch; cosine similarity = lossatlas's ``normalize=True``."""
    from sentence_transformers.util import cos_sim, dot_score

    q, d, dtype = batch
    st_kw, la_kw = MNRL_FORMS[form]
    peer = st_lib.MultipleNegativesRankingLoss(None, scale=scale, similarity_fct=cos_sim if cosine else dot_score, **st_kw)
    ours = value_and_grads(lambda x, y: LF.infonce(x, y, temperature=1 / scale, normalize=cosine, tiled=tiled, **la_kw), q, d)
    theirs = value_and_grads(lambda x, y: peer.compute_loss_from_embeddings([x, y], None), q, d)
    assert_same(ours, theirs, dtype, *similarity_magnitudes(q, d, scale, cosine))


class TableEncoder(nn.Module):
    """A SentenceTransformer module with no tokenizer and no weights to fetch: sentence k's
    embedding is row k of a table (``input_ids`` [B, 1] hold k)."""

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        features["sentence_embedding"] = self.table[features["input_ids"][:, 0]]
        return features


def _features(ids: Tensor) -> dict[str, Tensor]:
    return {"input_ids": ids[:, None], "attention_mask": torch.ones(len(ids), 1, dtype=torch.long)}


@given(dtype=st.sampled_from((F32, F64)), n=st.integers(1, 7), mini_batch=st.integers(1, 8),
       form=st.sampled_from(sorted(MNRL_FORMS)), shared_rows=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_mnrl_and_cached_mnrl_through_a_model_equal_infonce(st_lib: Any, dtype: torch.dtype, n: int, mini_batch: int,
                                                            form: str, shared_rows: bool, seed: int) -> None:
    """The whole sentence-transformers path: ``loss(features, labels)`` embeds the columns with
    a SentenceTransformer; CachedMNRL embeds in mini-batches without gradient, caches the
    gradient of the loss w.r.t. the embeddings and re-embeds (GradCache). The gradient that
    reaches the embedding table must be lossatlas's (``shared_rows``: some documents are
    rows that are also queries, so gradients from both columns accumulate)."""
    from sentence_transformers import SentenceTransformer

    g = torch.Generator().manual_seed(seed)
    table = torch.randn(2 * n, 5, generator=g, dtype=F64).to(dtype)
    q_ids = torch.arange(n)
    d_ids = torch.randint(0, 2 * n, (n,), generator=g) if shared_rows else torch.arange(n, 2 * n)
    st_kw, la_kw = MNRL_FORMS[form]
    scale = 20.0

    x = table.clone().requires_grad_()
    ours = LF.infonce(x[q_ids], x[d_ids], temperature=1 / scale, **la_kw)
    ours.backward()
    assert x.grad is not None
    model = SentenceTransformer(modules=[TableEncoder(table.clone())], device="cpu")
    losses = {"MNRL": st_lib.MultipleNegativesRankingLoss(model, scale=scale, **st_kw),
              "CachedMNRL": st_lib.CachedMultipleNegativesRankingLoss(model, scale=scale, mini_batch_size=mini_batch, **st_kw)}
    for loss in losses.values():
        model.zero_grad(set_to_none=True)
        value = loss([_features(q_ids), _features(d_ids)], torch.zeros(n))
        value.backward()
        assert_same((ours.detach(), [x.grad]), (value.detach(), [model[0].table.grad]), dtype,
                    *similarity_magnitudes(table, table, scale, True))


# ================================================================== torchvision: sigmoid focal
@st.composite
def focal_cases(draw: st.DrawFn, nan_prone: bool = False) -> dict[str, Any]:
    """Sigmoid focal inputs; ``nan_prone``: 0 < γ < 1 and saturated logits."""
    g = _seeded(draw)
    dtype = draw(st.sampled_from((F32, F64)))
    shape = draw(st.sampled_from(((4, 3), (6,), (2, 3, 2, 2), (1, 1))))
    z = torch.randn(shape, generator=g, dtype=F64) * draw(st.sampled_from((0.1, 1.0, 5.0)))
    if nan_prone or draw(st.booleans()):  # saturated logits: p_t = 1 in floating point for the correct ones
        hit = torch.rand(shape, generator=g) < 0.3
        z = torch.where(hit, torch.randn(shape, generator=g, dtype=F64).sign() * 40.0, z)
    soft = draw(st.booleans())
    y = torch.rand(shape, generator=g, dtype=F64) if soft else (torch.rand(shape, generator=g) < 0.4).to(F64)
    return {"z": z.to(dtype), "y": y.to(dtype), "dtype": dtype,
            "alpha": draw(st.sampled_from((None, 0.25, 0.5, 1.0))),
            "gamma": draw(st.sampled_from((0.25, 0.5) if nan_prone else (0.0, 0.5, 1.0, 2.0, 3.0))),
            "reduction": draw(st.sampled_from(("mean", "sum", "none")))}


@given(case=st.one_of(focal_cases(), focal_cases(nan_prone=True)))
def test_sigmoid_focal_equals_torchvision(tv_ops: Any, case: dict[str, Any]) -> None:
    z, y, dtype, red = case["z"], case["y"], case["dtype"], case["reduction"]
    alpha, gamma = case["alpha"], case["gamma"]
    v, (g,) = value_and_grads(lambda x: LF.sigmoid_focal(x, y, alpha=alpha, gamma=gamma, reduction=red), z)
    pv, (pg,) = value_and_grads(
        lambda x: tv_ops.sigmoid_focal_loss(x, y, alpha=-1.0 if alpha is None else alpha, gamma=gamma, reduction=red), z)
    torch.testing.assert_close(v, pv, **VALUE_TOL[dtype])
    nan = torch.isnan(pg)
    assert not nan.any() or 0 < gamma < 1, pg  # torchvision's NaN: d(1 − p_t)^γ/dp_t at 1 − p_t = 0
    torch.testing.assert_close(g[~nan], pg[~nan], **GRAD_TOL[dtype])
    if nan.any():
        event("torchvision's gradient has NaN elements: compared with mpmath")
        factor = {"sum": 1.0, "mean": 1 / z.numel()}.get(red)
        cot = cotangent(v) if factor is None else torch.full_like(z, factor)
        idx = nan.nonzero().tolist()
        exact = [sigmoid_focal_exact(float(z[tuple(i)]), float(y[tuple(i)]), alpha, gamma)[1] * float(cot[tuple(i)])
                 for i in idx]
        assert_matches_exact(g[nan], exact, dtype, "sigmoid focal gradient where torchvision's is NaN")


# ================================================================== deliberate differences
@pytest.mark.parametrize("dtype", [F32, F64])
def test_peers_give_nan_gradients_where_lossatlas_is_exact(timm_loss: Any, tv_ops: Any, dtype: torch.dtype) -> None:
    """γ < 1 at logits where 1 − p_t is 0 in floating point (a saturated correct positive; a
    negative below ASL's probability margin): timm's and torchvision's gradients are NaN
    (∞ · 0 in the derivative of x^γ at 0); lossatlas's value and gradient are the exact ones."""
    z = torch.tensor([[40.0, -3.5, 100.0, -40.0, 2.0]], dtype=dtype)
    y = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0]], dtype=dtype)
    hp = {"gamma_neg": 0.5, "gamma_pos": 0.5, "clip": 0.05, "eps": 1e-8}
    if dtype == F32:  # timm's ASL computes in float32 only
        peer = timm_loss.AsymmetricLossMultiLabel(**hp, disable_torch_grad_focal_loss=False, reduction="sum")
        assert bool(torch.isnan(value_and_grads(lambda x: peer(x, y), z)[1][0]).any())
    v, (g,) = value_and_grads(lambda x: LF.asymmetric(x, y, **hp, detach_weight=False, reduction="none"), z)
    exact = [asl_exact(float(a), float(b), **hp, detach=False) for a, b in zip(z.flatten(), y.flatten())]
    assert_matches_exact(v.flatten(), [e[0] for e in exact], dtype, "ASL value")
    assert_matches_exact((g / cotangent(v)).flatten(), [e[1] for e in exact], dtype, "ASL gradient")

    tv = value_and_grads(lambda x: tv_ops.sigmoid_focal_loss(x, y, alpha=0.25, gamma=0.5, reduction="none"), z)
    assert bool(torch.isnan(tv[1][0]).any())
    v, (g,) = value_and_grads(lambda x: LF.sigmoid_focal(x, y, alpha=0.25, gamma=0.5, reduction="none"), z)
    exact = [sigmoid_focal_exact(float(a), float(b), 0.25, 0.5) for a, b in zip(z.flatten(), y.flatten())]
    assert_matches_exact(v.flatten(), [e[0] for e in exact], dtype, "sigmoid focal value")
    assert_matches_exact((g / cotangent(v)).flatten(), [e[1] for e in exact], dtype, "sigmoid focal gradient")

    zs = torch.tensor([[60.0, 0.0, -60.0], [1.0, 2.0, 3.0]], dtype=dtype)
    ys = torch.tensor([0, 2])
    peer_s = timm_loss.AsymmetricLossSingleLabel(gamma_pos=0.5, gamma_neg=0.5, eps=0.1, reduction="none")
    assert bool(torch.isnan(value_and_grads(lambda x: peer_s(x, ys), zs)[1][0]).any())
    v, (g,) = value_and_grads(lambda x: LF.asymmetric_single_label(x, ys, gamma_pos=0.5, gamma_neg=0.5, eps=0.1,
                                                                  reduction="none"), zs)
    rows = [asl_single_exact(zs[i].tolist(), int(ys[i]), 0.5, 0.5, 0.1) for i in range(2)]
    assert_matches_exact(v, [r[0] for r in rows], dtype, "single-label ASL value")
    cot = cotangent(v)
    assert_matches_exact(g, [gj * float(cot[i]) for i, r in enumerate(rows) for gj in r[1]], dtype,
                         "single-label ASL gradient")


def test_asl_where_timm_float32_loses_digits(timm_loss: Any) -> None:
    """Without a probability margin, timm's ``log(1 − σ(z))`` of a negative loses digits for
    8 < z < 18.4 in float32 (1 − σ(z) is a difference of numbers near 1, then the eps clamp);
    lossatlas's ``log σ(−z)`` is the exact value there."""
    z = torch.tensor([[9.0, 12.0, 15.0, 17.0, 18.0]])
    y = torch.zeros_like(z)
    hp = {"gamma_neg": 0.0, "gamma_pos": 0.0, "clip": None, "eps": 1e-8}
    ours = LF.asymmetric(z, y, **hp, reduction="none")
    exact = [asl_exact(float(a), 0.0, **hp, detach=True)[0] for a in z.flatten()]
    assert_matches_exact(ours.flatten(), exact, F32, "ASL without clip")
    theirs = timm_loss.AsymmetricLossMultiLabel(**hp, reduction="none")(z, y)
    assert float((theirs.double() - torch.tensor([exact], dtype=F64)).abs().max()) > 0.5  # timm at 17: log(eps) = 18.4


def test_empty_batch_mean_is_zero_where_peers_give_nan(timm_loss: Any, clip_loss: Any, st_lib: Any) -> None:
    """An empty batch: the peers' means are 0/0 = NaN, lossatlas's 0 with a zero gradient
    (docs/differences.md, the first row of the table)."""
    z, e = torch.zeros(0, 4), torch.zeros(0, 3)
    t, y = torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)
    mnrl = st_lib.MultipleNegativesRankingLoss(None)
    cases: list[tuple[Callable[..., Tensor], Callable[..., Tensor], Tensor]] = [
        (lambda x: timm_loss.AsymmetricLossMultiLabel(reduction="mean")(x, t),
         lambda x: LF.asymmetric(x, t, reduction="mean"), z),
        (lambda x: timm_loss.SoftTargetCrossEntropy()(x, t), lambda x: LF.cross_entropy(x, t), z),
        (lambda x: timm_loss.LabelSmoothingCrossEntropy()(x, y), lambda x: LF.cross_entropy(x, y, label_smoothing=0.1), z),
        (lambda x: clip_loss.ClipLoss()(x, x, 10.0), lambda x: LF.infonce(x, x, temperature=0.1), e),
        (lambda x: clip_loss.SigLipLoss()(x, x, 10.0, -10.0), lambda x: LF.siglip(x, x), e),
        (lambda x: mnrl.compute_loss_from_embeddings([x, x], None),
         lambda x: LF.infonce(x, x, temperature=0.05, symmetric=False), e),
    ]
    for peer, ours, x in cases:
        assert bool(torch.isnan(peer(x)))
        v, (g,) = value_and_grads(ours, x)
        assert float(v) == 0.0 and g.shape == x.shape


def test_documented_default_differences(timm_loss: Any, st_lib: Any) -> None:
    """The peers' defaults that differ from lossatlas's (docs/differences.md), and the
    keywords that give the peer's loss."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 4, generator=g) * 2
    y = (torch.rand(5, 4, generator=g) < 0.4).float()
    # timm ASL: reduction 'batchmean' (lossatlas: the reference's 'sum') and a gradient through
    # the focusing weight (lossatlas: detached, as the reference's default)
    peer = timm_loss.AsymmetricLossMultiLabel()
    pv, (pg,) = value_and_grads(lambda x: peer(x, y), z)
    dv, (dg,) = value_and_grads(lambda x: LF.asymmetric(x, y), z)
    assert not torch.allclose(dv, pv) and not torch.allclose(dg / 5, pg, rtol=1e-3)
    assert_same(value_and_grads(lambda x: LF.asymmetric(x, y, detach_weight=False) / 5, z), (pv, [pg]), F32)
    # timm ASL single-label: gamma_pos 1 (lossatlas: the reference's 0)
    ys = torch.tensor([0, 1, 2, 3, 0])
    peer_s = timm_loss.AsymmetricLossSingleLabel()
    assert not torch.allclose(LF.asymmetric_single_label(z, ys), peer_s(z, ys))
    torch.testing.assert_close(LF.asymmetric_single_label(z, ys, gamma_pos=1.0), peer_s(z, ys))
    # timm LabelSmoothingCrossEntropy: smoothing 0.1 (lossatlas: torch's 0)
    assert not torch.allclose(LF.cross_entropy(z, ys), timm_loss.LabelSmoothingCrossEntropy()(z, ys))
    torch.testing.assert_close(LF.cross_entropy(z, ys, label_smoothing=0.1), timm_loss.LabelSmoothingCrossEntropy()(z, ys))
    # sentence-transformers MNRL: scale 20 (T = 0.05), one-way (lossatlas: T = 0.07, symmetric, CLIP's)
    q, d = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    mnrl = st_lib.MultipleNegativesRankingLoss(None).compute_loss_from_embeddings([q, d], None)
    assert not torch.allclose(LF.infonce(q, d), mnrl)
    torch.testing.assert_close(LF.infonce(q, d, temperature=0.05, symmetric=False), mnrl)
