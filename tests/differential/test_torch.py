"""Differential tests: lossatlas equals its peer on every input the peer accepts.

Hypothesis draws the inputs (profiles in ``conftest.py``: ``ci`` by default, ``thorough`` with
``pytest tests/differential --hypothesis-profile=thorough``): shapes (N = 0, 1, 2, ...;
C = 1..7; ``[N, C]``, K-dimensional ``[N, C, d1, ..., dk]`` and unbatched ``[C]``), dtypes
float64 / float32 / bfloat16, duplicate rows, all-same and all-different labels, extreme
logits, ``ignore_index`` on some or all positions, class weights, ``-inf`` (masked)
non-target columns, label smoothing, both computation paths. Value AND gradient are
compared with

* ``F.cross_entropy`` (and ``F.nll_loss`` on ``log_softmax``) for ``cross_entropy``;
* the same, applied to each method's adjusted logits, for logit adjustment, balanced
  softmax, VS and LDAM, and the focal factor on ``F.nll_loss``'s per-position loss for
  ``focal``;
* ``F.binary_cross_entropy_with_logits`` for ``bce``;
* torchvision's ``sigmoid_focal_loss`` for ``sigmoid_focal``: its formula is written here from
  torchvision/ops/focal_loss.py, because torchvision cannot be imported beside this
  project's CPU torch build (its wheels pin another torch; benchmarks/ run it from a
  separate venv).

Every reference is computed in float64 on the same input values (a bfloat16 or float32
input is upcast exactly), and tolerances follow the dtype: lossatlas computes half
precision in float32 and rounds the result, so bfloat16 is held to bfloat16's rounding.
Deliberate differences (docs/differences.md) are asserted as such: a ``"mean"`` with nothing
counted (empty batch, every position ignored, zero total class weight) is 0 with a zero
gradient where torch gives NaN, and the sigmoid focal gradient is finite where
torchvision's ``(1 − p_t)^γ`` with γ < 1 has an infinite derivative (``p_t = 1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor

import lossatlas.functional as LF
from lossatlas._paths import force_path

DTYPES = (torch.float64, torch.float32, torch.bfloat16)
REDUCTIONS = ("mean", "sum", "none")
#: Machine epsilon of the dtype lossatlas computes in (half precision is computed in float32).
COMPUTE_EPS = {torch.float64: 2.0**-52, torch.float32: 2.0**-23, torch.bfloat16: 2.0**-23}
#: Relative rounding of the returned dtype (the float32 result of a bfloat16 input is rounded to it).
OUT_RTOL = {torch.float64: 1e-9, torch.float32: 1e-5, torch.bfloat16: 2.0**-7}


# ---------------------------------------------------------------- inputs
@dataclass
class ClassCase:
    """One drawn input of the integer-target family (layout, values, options)."""

    logits: Tensor  # in the drawn dtype
    target: Tensor  # int64, the logits' layout without the class dim
    c: int
    ignore_index: int
    weight: Tensor | None  # float64 [C]
    reduction: str
    path: Literal["plain", "fused"]
    notes: dict[str, Any] = field(default_factory=dict)

    def class_view(self, v: Tensor) -> Tensor:
        """A per-class [C] tensor shaped to broadcast along the logits' class dim."""
        if self.logits.dim() == 1:
            return v
        return v.reshape((1, self.c) + (1,) * (self.logits.dim() - 2))

    def one_hot(self) -> Tensor:
        """float64 one-hot of the (ignore-safe) target, class dim where the logits have it."""
        safe = torch.where(self.target == self.ignore_index, 0, self.target)
        oh = F.one_hot(safe, self.c).to(torch.float64)
        return oh if self.logits.dim() == 1 else oh.movedim(-1, 1)

    def kept_weight(self) -> float:
        """Σ over counted positions of the target's class weight (the torch mean's divisor)."""
        keep = self.target != self.ignore_index
        safe = torch.where(keep, self.target, 0)
        w = torch.ones(self.c, dtype=torch.float64) if self.weight is None else self.weight
        return float((w[safe] * keep).sum())


@st.composite
def class_cases(draw: st.DrawFn) -> ClassCase:
    dtype = draw(st.sampled_from(DTYPES))
    layout = draw(st.sampled_from(("2d", "kd", "unbatched")))
    c = draw(st.integers(1, 7))
    spatial: tuple[int, ...] = ()
    if layout == "unbatched":
        n = 1
    else:
        n = draw(st.integers(0, 6))
        spatial = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))) if layout == "kd" else ()
    m = n * math.prod(spatial)  # positions (rows of the flattened problem)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))

    # logits as rows [M, C] first; the layout is applied at the end
    scale = draw(st.sampled_from((1e-3, 1.0, 10.0, 1e3, 1e4)))
    z = torch.randn(m, c, generator=g, dtype=torch.float64) * scale
    if draw(st.booleans()) and m:  # a few extreme entries
        hit = torch.rand(m, c, generator=g) < 0.2
        z = torch.where(hit, torch.sign(torch.randn(m, c, generator=g, dtype=torch.float64)) * 1e4, z)
    if draw(st.booleans()) and m > 1:  # duplicate rows
        z[1:] = z[0]

    labels = draw(st.sampled_from(("random", "all_same", "all_different")))
    if labels == "random":
        y = torch.randint(0, c, (m,), generator=g)
    elif labels == "all_same":
        y = torch.full((m,), draw(st.integers(0, c - 1)), dtype=torch.long)
    else:
        y = torch.randperm(max(m, c), generator=g)[:m] % c

    ignore_index = draw(st.sampled_from((-100, -1, c, c + 5)))
    ignore = draw(st.sampled_from(("none", "some", "all")))
    keep = torch.ones(m, dtype=torch.bool)
    if ignore == "all":
        keep[:] = False
    elif ignore == "some":
        keep = torch.rand(m, generator=g) < 0.6
    y = torch.where(keep, y, ignore_index)

    if draw(st.booleans()) and c > 1:  # masked classes: -inf in non-target columns
        masked = torch.rand(m, c, generator=g) < 0.3
        safe = torch.where(keep, y, 0)
        masked[torch.arange(m), safe] = False  # never a counted row's target (nor column 0 of an ignored row)
        z = z.masked_fill(masked, float("-inf"))

    weight = None
    if draw(st.booleans()):
        weight = torch.rand(c, generator=g, dtype=torch.float64) * 3
        if draw(st.booleans()):
            weight[torch.rand(c, generator=g) < 0.4] = 0.0  # zero-weight classes

    if layout == "kd":
        logits = z.reshape((n,) + spatial + (c,)).movedim(-1, 1).contiguous()
        target = y.reshape((n,) + spatial)
    elif layout == "unbatched":
        logits, target = z[0], y[0]
    else:
        logits, target = z, y
    return ClassCase(
        logits=logits.to(dtype), target=target, c=c, ignore_index=ignore_index, weight=weight,
        reduction=draw(st.sampled_from(REDUCTIONS)), path=draw(st.sampled_from(("plain", "fused"))),
        notes={"layout": layout, "labels": labels, "ignore": ignore},
    )


# ---------------------------------------------------------------- comparison
def _grads(out: Tensor, x: Tensor, upstream: Tensor) -> Tensor:
    (g,) = torch.autograd.grad(out, x, upstream)
    return g


def _upstream(shape: torch.Size, dtype: torch.dtype, seed: int) -> Tensor:
    """A random upstream gradient in the result's dtype (the reference uses the same values)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=torch.float64) + 0.5).to(dtype)


def _finite_scale(*tensors: Tensor) -> float:
    return max([1.0] + [float(t.detach()[torch.isfinite(t)].abs().max()) for t in tensors if torch.isfinite(t).any()])


def _assert_close(got: Tensor, ref: Tensor, dtype: torch.dtype, atol: float, what: str) -> None:
    got64 = got.detach().to(torch.float64)
    assert got64.shape == ref.shape, f"{what}: shape {tuple(got64.shape)} vs torch {tuple(ref.shape)}"
    torch.testing.assert_close(got64, ref.detach(), rtol=OUT_RTOL[dtype], atol=atol, equal_nan=False, msg=lambda m: f"{what}: {m}")


def check_against(
    case: ClassCase, ours: Any, reference: Any, adjusted: Tensor | None = None, sum_scale: float = 1.0,
    grad_scale: float = 1.0,
) -> None:
    """Compare ``ours(logits)`` (lossatlas, in the drawn dtype, on ``case.path``) with
    ``reference(z64)`` (torch in float64 on the same values): dtype, shape, value, gradient.

    Tolerances: a softmax of logits of size S in a dtype of epsilon e is exact to about e·S
    (``cond``) per position, absolutely (``p_y − 1`` cancels in every dtype); that is scaled
    by what multiplies a position's loss (class weight, ``sum_scale`` for α, the upstream
    gradient, the mean's divisor, ``grad_scale`` for dz-scaling such as LDAM's s) and added
    up over positions by ``"sum"``; bfloat16 results are also rounded (``OUT_RTOL``).
    ``adjusted``: the float64 logits the reference feeds to softmax. A reference ``"mean"``
    with nothing counted is torch's NaN: lossatlas owes 0 and a zero gradient there
    (docs/differences.md)."""
    dtype = case.logits.dtype
    x = case.logits.detach().clone().requires_grad_()
    with force_path(case.path):
        out = ours(x)
    assert out.dtype == dtype, f"result dtype {out.dtype}, input {dtype}"
    x64 = case.logits.detach().to(torch.float64).requires_grad_()
    ref = reference(x64)
    up = _upstream(out.shape, dtype, seed=case.c)
    g = _grads(out, x, up)
    g_ref = _grads(ref, x64, up.to(torch.float64))
    kept = case.kept_weight()
    if case.reduction == "mean" and kept == 0.0:
        assert not bool(torch.isfinite(ref)), f"torch's mean with nothing counted was {ref} (no longer NaN?)"
        assert float(out.detach()) == 0.0, f"mean with nothing counted: {out}, expected 0 (docs/differences.md)"
        assert bool((g == 0).all()), "mean with nothing counted must have a zero gradient"
        return
    cond = 64 * COMPUTE_EPS[dtype] * _finite_scale(x64.detach() if adjusted is None else adjusted)
    w_max = 1.0 if case.weight is None else max(1.0, float(case.weight.max()))
    n_terms = max(1, case.target.numel()) if case.reduction == "sum" else 1
    _assert_close(out, ref, dtype, atol=cond * n_terms * w_max * sum_scale, what="value")
    assert bool(torch.isfinite(g).all()), f"non-finite gradient {g}"
    coef = 1.5 * w_max * sum_scale * grad_scale / (kept if case.reduction == "mean" else 1.0)
    _assert_close(g, g_ref, dtype, atol=4 * cond * coef, what="gradient")


# ---------------------------------------------------------------- cross-entropy
@given(case=class_cases(), smoothing=st.sampled_from((0.0, 0.0, 0.1, 0.5, 1.0)))
def test_cross_entropy_equals_torch(case: ClassCase, smoothing: float) -> None:
    w = case.weight
    kw: dict[str, Any] = {"ignore_index": case.ignore_index, "reduction": case.reduction, "label_smoothing": smoothing}

    def ours(x: Tensor) -> Tensor:
        return LF.cross_entropy(x, case.target, weight=w, **kw)

    def reference(x64: Tensor) -> Tensor:
        ref = F.cross_entropy(x64, case.target, weight=w, **kw)
        if not (smoothing and w is not None and bool((w == 0).any()) and bool(torch.isneginf(x64).any())):
            return ref
        # A masked class of weight 0: torch's smoothing term has 0·(−inf) = NaN; its own
        # formula with that term 0 (the class adds nothing at any finite logit) is the value
        # lossatlas owes (docs/differences.md).
        explicit = smoothed_weighted_ce(x64, case, smoothing)
        has_number = ~torch.isnan(ref)  # the formula is torch's wherever torch has a number
        torch.testing.assert_close(explicit.detach()[has_number], ref.detach()[has_number])
        return explicit

    check_against(case, ours, reference)


def smoothed_weighted_ce(x64: Tensor, case: ClassCase, eps: float) -> Tensor:
    """torch's label smoothing with class weights (aten cross_entropy_loss_label_smoothing):
    ``(1 − ε)·NLL_w + (ε/C)·Σ_j w_j (−log p_j)``, ``"mean"`` ÷ ``Σ w_{y_i}`` over the kept rows;
    classes of weight 0 left out of the sum (written here; torch computes 0·(−inf) there)."""
    class_dim = 0 if x64.dim() == 1 else 1
    assert case.weight is not None
    logp = F.log_softmax(x64, class_dim)
    nll = F.nll_loss(logp, case.target, weight=case.weight, ignore_index=case.ignore_index, reduction="none")
    w = case.class_view(case.weight)
    smooth = -(logp * w).where(w > 0, 0.0).sum(class_dim)
    keep = case.target != case.ignore_index
    losses = (1 - eps) * nll + (eps / case.c) * smooth.where(keep, 0.0)
    if case.reduction == "none":
        return losses
    return losses.sum() if case.reduction == "sum" else losses.sum() / case.kept_weight()


@given(case=class_cases())
def test_cross_entropy_equals_nll_of_log_softmax(case: ClassCase) -> None:
    # The same loss spelled as torch's two steps.
    class_dim = 0 if case.logits.dim() == 1 else 1
    w = case.weight

    def ours(x: Tensor) -> Tensor:
        return LF.cross_entropy(x, case.target, weight=w, ignore_index=case.ignore_index, reduction=case.reduction)

    def reference(x64: Tensor) -> Tensor:
        return F.nll_loss(F.log_softmax(x64, class_dim), case.target, weight=w, ignore_index=case.ignore_index,
                          reduction=case.reduction)

    check_against(case, ours, reference)


# ---------------------------------------------------------------- prior-adjusted losses
COUNTS = st.lists(st.integers(1, 5000), min_size=7, max_size=7)


def _counts(case: ClassCase, counts: list[int]) -> Tensor:
    return torch.tensor(counts[: case.c], dtype=torch.float64)


def _ce(case: ClassCase, u: Tensor) -> Tensor:
    return F.cross_entropy(u, case.target, weight=case.weight, ignore_index=case.ignore_index, reduction=case.reduction)


@given(case=class_cases(), counts=COUNTS, tau=st.floats(-1.0, 2.0))
def test_logit_adjusted_is_ce_of_adjusted_logits(case: ClassCase, counts: list[int], tau: float) -> None:
    n = _counts(case, counts)
    bias = case.class_view(tau * torch.log(n / n.sum()))  # Menon et al.: z + τ log π
    check_against(
        case,
        lambda x: LF.logit_adjusted(x, case.target, n, tau=tau, weight=case.weight, ignore_index=case.ignore_index,
                                    reduction=case.reduction),
        lambda x64: _ce(case, x64 + bias),
        adjusted=case.logits.double() + bias,
    )


@given(case=class_cases(), counts=COUNTS)
def test_balanced_softmax_is_ce_of_adjusted_logits(case: ClassCase, counts: list[int]) -> None:
    n = _counts(case, counts)
    bias = case.class_view(torch.log(n))  # Ren et al.: z + log n
    check_against(
        case,
        lambda x: LF.balanced_softmax(x, case.target, n, weight=case.weight, ignore_index=case.ignore_index,
                                      reduction=case.reduction),
        lambda x64: _ce(case, x64 + bias),
        adjusted=case.logits.double() + bias,
    )


@given(case=class_cases(), counts=COUNTS, gamma=st.floats(0.0, 1.0), tau=st.floats(0.0, 2.0))
def test_vs_is_ce_of_adjusted_logits(case: ClassCase, counts: list[int], gamma: float, tau: float) -> None:
    n = _counts(case, counts)
    delta = case.class_view((n.max() / n) ** gamma)  # Kini et al.: z / Δ + τ log π, Δ_j = (n_max / n_j)^γ
    iota = case.class_view(tau * torch.log(n / n.sum()))
    check_against(
        case,
        lambda x: LF.vs(x, case.target, n, gamma=gamma, tau=tau, weight=case.weight, ignore_index=case.ignore_index,
                        reduction=case.reduction),
        lambda x64: _ce(case, x64 / delta + iota),
        adjusted=case.logits.double() / delta + iota,
    )


@given(case=class_cases(), counts=COUNTS, max_margin=st.floats(0.0, 1.0), scale=st.floats(0.5, 30.0))
def test_ldam_is_ce_of_margin_shifted_logits(case: ClassCase, counts: list[int], max_margin: float, scale: float) -> None:
    n = _counts(case, counts)
    m = n.pow(-0.25)
    m = m * (max_margin / m.max())  # Cao et al.: m_j ∝ n_j^{-1/4}, the largest max_margin
    margin = case.one_hot() * case.class_view(m)  # m_y at each position's target, 0 elsewhere

    def reference(x64: Tensor) -> Tensor:
        return _ce(case, scale * (x64 - margin))

    check_against(
        case,
        lambda x: LF.ldam(x, case.target, n, max_margin=max_margin, scale=scale, weight=case.weight,
                          ignore_index=case.ignore_index, reduction=case.reduction),
        reference,
        adjusted=scale * case.logits.double(),
        grad_scale=scale,
    )


@given(
    case=class_cases(),
    gamma=st.sampled_from((0.0, 0.5, 1.0, 2.0, 3.5)),
    alpha_kind=st.sampled_from(("none", "float", "per_class")),
    alpha_value=st.floats(0.0, 2.0),
)
def test_focal_is_focal_factor_on_torch_nll(case: ClassCase, gamma: float, alpha_kind: str, alpha_value: float) -> None:
    class_dim = 0 if case.logits.dim() == 1 else 1
    alpha: float | Tensor | None = None
    if alpha_kind == "float":
        alpha = alpha_value
    elif alpha_kind == "per_class":
        alpha = torch.linspace(0.25, 1.0, case.c, dtype=torch.float64) * alpha_value
    keep = case.target != case.ignore_index
    safe = torch.where(keep, case.target, 0)
    w = torch.ones(case.c, dtype=torch.float64) if case.weight is None else case.weight
    row_w = w[safe] * keep  # class weight of each counted position, 0 where ignored
    a = 1.0 if alpha is None else (alpha[safe] if isinstance(alpha, Tensor) else alpha)

    def reference(x64: Tensor) -> Tensor:
        # Lin et al.: -α_y (1 - p_y)^γ log p_y, with lossatlas's weight (numerator w_y, mean ÷ Σ w_y)
        ce = F.nll_loss(F.log_softmax(x64, class_dim), case.target, ignore_index=case.ignore_index, reduction="none")
        q = -torch.expm1(-ce)  # 1 - p_y
        losses = a * q.pow(gamma) * ce * row_w
        if case.reduction == "none":
            return losses
        return losses.sum() if case.reduction == "sum" else losses.sum() / row_w.sum()

    def ours(x: Tensor) -> Tensor:
        return LF.focal(x, case.target, gamma=gamma, alpha=alpha, weight=case.weight, ignore_index=case.ignore_index,
                        reduction=case.reduction)

    if gamma < 1.0 and gamma != 0.0:
        _check_focal_fractional(case, ours, reference)
    else:
        check_against(case, ours, reference, sum_scale=max(1.0, float(alpha_value)), grad_scale=1.0 + gamma)


def _check_focal_fractional(case: ClassCase, ours: Any, reference: Any) -> None:
    """γ ∈ (0, 1): (1 − p)^γ has an infinite derivative at p = 1, which a row whose target
    logit dominates reaches in floating point; lossatlas clamps 1 − p at the smallest normal
    (a zero gradient there) where the reference's gradient is NaN. Compare the rest."""
    x64 = case.logits.detach().to(torch.float64).requires_grad_()
    probe = reference(x64)
    (g_probe,) = torch.autograd.grad(probe.sum(), x64)
    if bool(torch.isfinite(g_probe).all()):
        check_against(case, ours, reference, grad_scale=2.0)
        return
    x = case.logits.detach().clone().requires_grad_()
    with force_path(case.path):
        out = ours(x)
    (g,) = torch.autograd.grad(out.sum(), x)
    assert bool(torch.isfinite(g).all()), "lossatlas's focal gradient must stay finite at p_t = 1"
    if case.reduction == "mean" and case.kept_weight() == 0.0:
        assert float(out.detach()) == 0.0
        return
    scale = max(1.0, float(probe.detach().abs().max())) if probe.numel() else 1.0
    _assert_close(out, probe, case.logits.dtype, atol=64 * COMPUTE_EPS[case.logits.dtype] * _finite_scale(x64.detach())
                  * scale * max(1, case.target.numel()), what="value")


# ---------------------------------------------------------------- probability targets
@given(
    dtype=st.sampled_from(DTYPES),
    layout=st.sampled_from(("2d", "kd", "unbatched")),
    c=st.integers(1, 6),
    n=st.integers(0, 4),
    spatial=st.lists(st.integers(1, 3), min_size=1, max_size=2),
    smoothing=st.sampled_from((0.0, 0.2)),
    reduction=st.sampled_from(REDUCTIONS),
    seed=st.integers(0, 2**31 - 1),
)
def test_probability_targets_equal_torch(
    dtype: torch.dtype, layout: str, c: int, n: int, spatial: list[int], smoothing: float, reduction: str, seed: int,
) -> None:
    g = torch.Generator().manual_seed(seed)
    shape = (c,) if layout == "unbatched" else (n, c) + (tuple(spatial) if layout == "kd" else ())
    class_dim = 0 if layout == "unbatched" else 1
    z = (torch.randn(shape, generator=g, dtype=torch.float64) * 3).to(dtype)
    p = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64) * 2, class_dim)
    x = z.clone().requires_grad_()
    out = LF.cross_entropy(x, p.to(dtype), label_smoothing=smoothing, reduction=reduction)
    x64 = z.double().requires_grad_()
    ref = F.cross_entropy(x64, p.to(dtype).double(), label_smoothing=smoothing, reduction=reduction)
    assert out.dtype == dtype and out.shape == ref.shape
    if reduction == "mean" and ref.isnan():  # an empty batch: torch 0/0, lossatlas 0 (docs/differences.md)
        assert math.prod(shape) == 0 and float(out.detach()) == 0.0
        return
    atol = 64 * COMPUTE_EPS[dtype] * 10 * max(1, math.prod(shape))
    torch.testing.assert_close(out.double(), ref, rtol=OUT_RTOL[dtype], atol=atol)
    up = _upstream(out.shape, dtype, seed=c)
    torch.testing.assert_close(_grads(out, x, up).double(), _grads(ref, x64, up.double()), rtol=OUT_RTOL[dtype], atol=atol)


# ---------------------------------------------------------------- elementwise (sigmoid) losses
@st.composite
def elementwise_inputs(draw: st.DrawFn) -> tuple[Tensor, Tensor, str]:
    dtype = draw(st.sampled_from(DTYPES))
    shape = tuple(draw(st.sampled_from(([], [1], [0], [3], [2, 3], [0, 4], [2, 3, 2, 2], [1, 2, 3]))))
    shape = tuple(draw(st.integers(1, 4)) if d == 3 else d for d in shape)  # vary one size
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    scale = draw(st.sampled_from((1e-3, 1.0, 10.0, 100.0)))
    z = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    if draw(st.booleans()):  # saturated entries
        z = torch.where(torch.rand(shape, generator=g) < 0.3, torch.sign(z) * 80.0, z)
    if draw(st.booleans()):
        y = (torch.rand(shape, generator=g) < 0.5).to(torch.float64)
    else:
        y = torch.rand(shape, generator=g, dtype=torch.float64)
    return z.to(dtype), y.to(dtype), draw(st.sampled_from(REDUCTIONS))


def _check_elementwise(
    z: Tensor, y: Tensor, reduction: str, ours: Any, reference: Any, finite_ref_grad_only: bool = False, w_max: float = 1.0,
    grad_scale: float = 1.0,
) -> None:
    dtype = z.dtype
    x = z.clone().requires_grad_()
    out = ours(x)
    x64 = z.double().requires_grad_()
    ref = reference(x64)
    assert out.dtype == dtype and out.shape == ref.shape, (out.shape, ref.shape)
    if reduction == "mean" and z.numel() == 0:  # torch 0/0, lossatlas 0 (docs/differences.md)
        assert bool(ref.isnan()) and float(out.detach()) == 0.0
        return
    n_terms = max(1, z.numel()) if reduction == "sum" else 1
    cond = 64 * COMPUTE_EPS[dtype] * _finite_scale(z.double())
    torch.testing.assert_close(out.double(), ref.detach(), rtol=OUT_RTOL[dtype], atol=cond * n_terms * w_max)
    up = _upstream(out.shape, dtype, seed=7)
    g = _grads(out, x, up).double()
    g_ref = _grads(ref, x64, up.double())
    assert bool(torch.isfinite(g).all())
    if finite_ref_grad_only:
        ok = torch.isfinite(g_ref)
        g, g_ref = g[ok], g_ref[ok]
    # σ(z) − y cancels absolutely: the coefficient of an element (upstream, weight, focal
    # factor's derivative, the mean's 1/numel) scales cond
    coef = 1.5 * w_max * grad_scale / (max(1, z.numel()) if reduction == "mean" else 1)
    torch.testing.assert_close(g, g_ref, rtol=OUT_RTOL[dtype], atol=4 * cond * coef)


@given(inputs=elementwise_inputs(), pos_weight=st.sampled_from(("none", "last_dim", "dim_1", "one")))
def test_bce_equals_torch_on_any_shape(inputs: tuple[Tensor, Tensor, str], pos_weight: str) -> None:
    z, y, reduction = inputs
    pw = None  # every layout torch broadcasts: [L] along the last dim, [C, 1, ..., 1] along dim 1, [1]
    if pos_weight == "last_dim" and z.dim() >= 1:
        pw = torch.linspace(0.5, 3.0, z.shape[-1], dtype=torch.float64)
    elif pos_weight == "dim_1" and z.dim() >= 2:
        pw = torch.linspace(0.5, 3.0, z.shape[1], dtype=torch.float64).reshape((z.shape[1],) + (1,) * (z.dim() - 2))
    elif pos_weight == "one" and z.dim() >= 1:
        pw = torch.tensor([2.5], dtype=torch.float64)
    _check_elementwise(
        z, y, reduction,
        lambda x: LF.bce(x, y, pos_weight=pw, reduction=reduction),
        lambda x64: F.binary_cross_entropy_with_logits(x64, y.double(), pos_weight=pw, reduction=reduction),
        w_max=3.0,
    )


def torchvision_sigmoid_focal_loss(inputs: Tensor, targets: Tensor, alpha: float, gamma: float, reduction: str) -> Tensor:
    """``torchvision.ops.sigmoid_focal_loss``'s formula (torchvision/ops/focal_loss.py), written
    out: BCE times ``(1 − p_t)^γ``, times ``α_t`` when ``α ≥ 0``; mean over every element."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


@given(
    inputs=elementwise_inputs(),
    alpha=st.sampled_from((None, 0.0, 0.25, 0.5, 1.0)),
    gamma=st.sampled_from((0.0, 0.5, 1.0, 2.0, 3.0)),
)
def test_sigmoid_focal_equals_torchvision_on_any_shape(inputs: tuple[Tensor, Tensor, str], alpha: float | None, gamma: float) -> None:
    z, y, reduction = inputs
    _check_elementwise(
        z, y, reduction,
        lambda x: LF.sigmoid_focal(x, y, alpha=alpha, gamma=gamma, reduction=reduction),
        lambda x64: torchvision_sigmoid_focal_loss(x64, y.double(), -1.0 if alpha is None else alpha, gamma, reduction),
        # γ < 1: (1 − p_t)^γ at p_t = 1 has an infinite derivative (NaN in torchvision's
        # gradient); lossatlas clamps 1 − p_t at the smallest normal (docs/differences.md)
        finite_ref_grad_only=0.0 < gamma < 1.0,
        grad_scale=1.0 + gamma,
    )


# ---------------------------------------------------------------- fixed cases of the new layouts
def test_minus_inf_column_with_label_smoothing_is_torchs_infinity() -> None:
    # Smoothing gives the masked class ε/C, so the loss is +inf by definition: torch returns
    # it (gradient p − t, finite), and so does lossatlas (it used to raise).
    z = torch.tensor([[1.0, float("-inf"), 0.5], [0.2, 0.1, -0.3]], dtype=torch.float64)
    y = torch.tensor([0, 2])
    for reduction in REDUCTIONS:
        x, x64 = z.clone().requires_grad_(), z.clone().requires_grad_()
        out = LF.cross_entropy(x, y, label_smoothing=0.3, reduction=reduction)
        ref = F.cross_entropy(x64, y, label_smoothing=0.3, reduction=reduction)
        torch.testing.assert_close(out, ref)
        assert not bool(torch.isfinite(out).all())
        out.sum().backward()
        ref.sum().backward()
        assert x.grad is not None and x64.grad is not None
        torch.testing.assert_close(x.grad, x64.grad)
    bad = z.clone()
    bad[1, 2] = float("-inf")  # now a counted row's target is masked: still an error
    with pytest.raises(ValueError, match="logits contains NaN or Inf"):
        LF.cross_entropy(bad, y, label_smoothing=0.3)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="logits contains NaN or Inf"):
        LF.cross_entropy(bad, y, label_smoothing=0.3)
    bad[1] = torch.tensor([0.0, 1.0, float("-inf")])  # the masked target row ignored: no error
    out = LF.cross_entropy(bad, torch.tensor([0, -100]), label_smoothing=0.3)
    assert out == F.cross_entropy(bad, torch.tensor([0, -100]), label_smoothing=0.3)


def test_label_smoothing_mean_with_zero_total_weight_is_zero() -> None:
    # Every counted target weighs 0 while other classes do not: the smoothing sum is not 0,
    # torch divides it by 0 (NaN); lossatlas counts nothing, so 0 with a zero gradient
    # (it returned sum / 1e-38 ≈ 1.8e37 before).
    z = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(3, dtype=torch.long)
    w = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    assert F.cross_entropy(z, y, weight=w, label_smoothing=0.1).isnan()
    out = LF.cross_entropy(z, y, weight=w, label_smoothing=0.1)
    out.backward()
    assert float(out.detach()) == 0.0 and z.grad is not None and bool((z.grad == 0).all())


@pytest.mark.parametrize("target", [torch.tensor(2), torch.tensor([2])])
def test_unbatched_input_takes_a_0dim_or_one_element_target(target: Tensor) -> None:
    z = torch.randn(5, dtype=torch.float64)
    for reduction in REDUCTIONS:
        out = LF.cross_entropy(z, target, reduction=reduction)
        ref = F.cross_entropy(z, target, reduction=reduction)
        assert out.shape == ref.shape == torch.Size([])
        torch.testing.assert_close(out, ref)
    torch.testing.assert_close(LF.focal(z, target, gamma=0.0), F.cross_entropy(z, target))


def test_new_layouts_keep_clear_errors() -> None:
    z = torch.randn(2, 3, 4, 5)
    with pytest.raises(ValueError, match=r"target must have shape \[N, d1, \.\.\., dk\] = \[2, 4, 5\]"):
        LF.cross_entropy(z, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"logits must have shape \[N, C\] \(or \[C\] with a 0-dim target"):
        LF.focal(torch.randn(3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"logits must have shape \[N, C\]"):
        LF.cross_entropy(torch.tensor(1.0), torch.tensor(0))
    with pytest.raises(ValueError, match="at least one class column"):
        LF.cross_entropy(torch.randn(2, 0, 3), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"target values must be in \[0, 3\)"):
        LF.ldam(z, torch.full((2, 4, 5), 3), [3, 2, 1])
    with pytest.raises(ValueError, match="alpha has 2 entries but logits have 3 classes"):
        LF.focal(z, torch.zeros(2, 4, 5, dtype=torch.long), alpha=[0.5, 0.5])
    with pytest.raises(ValueError, match="target must have the shape of logits"):
        LF.cross_entropy(z, torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="sum to 1"):
        LF.cross_entropy(z, torch.full((2, 3, 4, 5), 0.5))
    with pytest.raises(ValueError, match="target must have the shape of logits"):
        LF.sigmoid_focal(z, torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="target must have the shape of logits"):
        LF.bce(torch.randn(4), torch.rand(5))
    with pytest.raises(ValueError, match="broadcastable"):
        LF.bce(z, torch.rand(2, 3, 4, 5), mask=torch.ones(3, 2))
    with pytest.raises(ValueError, match="pos_weight has 3 entries but logits have 5 classes"):
        LF.bce(z, torch.rand(2, 3, 4, 5), pos_weight=torch.ones(3))
    with pytest.raises(ValueError, match=r"pos_weight of shape \(2, 1, 1\) must broadcast to the logits' shape"):
        LF.bce(z, torch.rand(2, 3, 4, 5), pos_weight=torch.ones(2, 1, 1))
    with pytest.raises(ValueError, match="pos_weight must be finite and non-negative"):
        LF.bce(z, torch.rand(2, 3, 4, 5), pos_weight=-torch.ones(3, 1, 1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        LF.sigmoid_focal(z, 2 * torch.ones(2, 3, 4, 5))


def test_kd_mask_on_elementwise_losses_matches_masked_mean() -> None:
    # mask broadcast over [N, C, H, W] (here one value per (N, C) map): "mean" is Σ m·l / Σ m.
    g = torch.Generator().manual_seed(3)
    z = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    y = (torch.rand(2, 3, 4, 4, generator=g) < 0.5).double()
    m = (torch.rand(2, 3, 1, 1, generator=g) < 0.5).double()
    m[0, 0] = 1.0
    full = m.expand_as(z)
    ref_bce = (F.binary_cross_entropy_with_logits(z, y, reduction="none") * full).sum() / full.sum()
    torch.testing.assert_close(LF.bce(z, y, mask=m), ref_bce)
    ref_focal = (torchvision_sigmoid_focal_loss(z, y, 0.25, 2.0, "none") * full).sum() / full.sum()
    torch.testing.assert_close(LF.sigmoid_focal(z, y, mask=m), ref_focal)


def test_masked_class_of_weight_zero_adds_nothing_to_label_smoothing() -> None:
    # A class of weight 0 adds nothing to the smoothing term at any finite logit, so at -inf
    # it adds nothing either: torch's value at a finite stand-in (-1e300, where p = 0 exactly
    # and 0·log p = 0) and its gradient are the value owed; torch itself gives NaN (0·(−inf)).
    z = torch.tensor([[1.0, float("-inf"), 0.5], [0.2, 0.1, -0.3], [0.3, float("-inf"), 2.0]], dtype=torch.float64)
    y = torch.tensor([0, 2, -100])
    w = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    stand_in = z.nan_to_num(neginf=-1e300)
    for reduction in REDUCTIONS:
        assert bool(F.cross_entropy(z, y, weight=w, label_smoothing=0.2, reduction=reduction).isnan().any())
        x, x_ref = z.clone().requires_grad_(), stand_in.clone().requires_grad_()
        out = LF.cross_entropy(x, y, weight=w, label_smoothing=0.2, reduction=reduction)
        ref = F.cross_entropy(x_ref, y, weight=w, label_smoothing=0.2, reduction=reduction)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        out.sum().backward()
        ref.sum().backward()
        assert x.grad is not None and x_ref.grad is not None
        torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-12)


def test_bce_module_keeps_a_channel_pos_weight() -> None:
    # nn.BCEWithLogitsLoss(pos_weight=[C, 1, 1]) on [N, C, H, W]: the module twin takes the
    # same tensor (a buffer of that shape) and gives torch's value and gradient.
    import lossatlas as la

    pw = torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64).reshape(3, 1, 1)
    g = torch.Generator().manual_seed(5)
    z = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    y = (torch.rand(2, 3, 4, 4, generator=g) < 0.3).double()
    crit = la.create("bce", pos_weight=pw)
    assert crit.pos_weight.shape == (3, 1, 1)
    x, x_ref = z.clone().requires_grad_(), z.clone().requires_grad_()
    out, ref = crit(x, y), torch.nn.BCEWithLogitsLoss(pos_weight=pw)(x_ref, y)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    out.backward()
    ref.backward()
    assert x.grad is not None and x_ref.grad is not None
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-12)


def test_validation_differences_are_deliberate() -> None:
    # docs/differences.md: where torch computes (or fails obscurely) on a bad input, lossatlas
    # raises a ValueError naming the argument. Each row checks torch's behaviour too, so a
    # change on torch's side shows up here.
    z = torch.randn(3, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    nan = z.clone()
    nan[0, 3] = float("nan")
    assert F.cross_entropy(nan, y).isnan()
    with pytest.raises(ValueError, match="^logits contains NaN or Inf"):
        LF.cross_entropy(nan, y)
    # ignore_index inside [0, C): torch silently drops that class's rows
    torch.testing.assert_close(F.cross_entropy(z, y, ignore_index=1), F.cross_entropy(z[[0, 2]], y[[0, 2]]))
    with pytest.raises(ValueError, match="^ignore_index=1 is a valid class index for 4 classes"):
        LF.cross_entropy(z, y, ignore_index=1)
    with pytest.raises(IndexError):
        F.cross_entropy(z, torch.tensor([0, 1, 7]))
    with pytest.raises(ValueError, match=r"^target values must be in \[0, 4\).*found \[7\]"):
        LF.cross_entropy(z, torch.tensor([0, 1, 7]))
    unnormalised = torch.full((3, 4), 0.3, dtype=torch.float64)
    assert torch.isfinite(F.cross_entropy(z, unnormalised))
    with pytest.raises(ValueError, match="sum to 1"):
        LF.cross_entropy(z, unnormalised)
    masked_target = z.clone()
    masked_target[1, 1] = float("-inf")
    assert F.cross_entropy(masked_target, y).isinf()
    with pytest.raises(ValueError, match="^logits contains NaN or Inf"):
        LF.cross_entropy(masked_target, y)
    # bce: a target of 2 is computed by torch, refused here; -100 is left out with ignore_index=-100
    t = torch.rand(3, 4, dtype=torch.float64)
    t2 = t.clone()
    t2[0, 0] = 2.0
    assert torch.isfinite(F.binary_cross_entropy_with_logits(z, t2))
    with pytest.raises(ValueError, match=r"^target values must lie in \[0, 1\]"):
        LF.bce(z, t2)
    t2[0, 0] = -100.0
    keep = torch.ones(3, 4, dtype=torch.bool)
    keep[0, 0] = False
    torch.testing.assert_close(LF.bce(z, t2, ignore_index=-100), F.binary_cross_entropy_with_logits(z[keep], t[keep]))
    torch.testing.assert_close(LF.bce(z, t2, ignore_index=None, validate=False), F.binary_cross_entropy_with_logits(z, t2))


def test_bfloat16_probability_targets_are_accepted() -> None:
    # A bfloat16 probability row is exact only to ~2^-8: summed in bfloat16 (as the check did)
    # some rows of these inputs miss 1 by 2^-8, more than the old 1e-3 tolerance; torch takes
    # them, and so does lossatlas (the sum is now taken in float32, to the dtype's eps).
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 7, generator=g, dtype=torch.float64).to(torch.bfloat16)
    p = torch.softmax(torch.randn(64, 7, generator=g, dtype=torch.float64), 1).to(torch.bfloat16)
    assert float((p.sum(1).double() - 1).abs().max()) > 1e-3
    out = LF.cross_entropy(z, p)
    ref = F.cross_entropy(z.double(), p.double())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), ref, rtol=2.0**-7, atol=1e-6)
    with pytest.raises(ValueError, match="sum to 1"):  # a real mistake is still caught
        LF.cross_entropy(z, p * 0.9)
