"""Exactness of the CE-family kernel in lossatlas.functional._fused against the loss formulas.

Both paths (the fused autograd.Function and the plain torch ops) are forced explicitly
and compared with the formula written out with a one-hot matrix, in float64, values and
gradients; gradcheck runs on the fused path. No timings here (they live in benchmarks/).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
from helpers import gradcheck_loss
from lossatlas._paths import force_path
from lossatlas.functional import _fused
from lossatlas.functional._fused import as_dtype, cast_constant, softmax_cross_entropy

N, C = 7, 5
REDUCTIONS = ("mean", "sum", "none")


def _path(fused):
    return None if fused is None else ("fused" if fused else "plain")


def affine_cross_entropy(z, y, fused=None, **kw):
    """The CE family's kernel on the forced path (``fused=None``: the size-based choice)."""
    with force_path(_path(fused)):
        return softmax_cross_entropy(z, y, **kw)


def softmax_focal(z, y, gamma, fused=None, **kw):
    with force_path(_path(fused)):
        return softmax_cross_entropy(z, y, gamma=gamma, **kw)


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(N, C, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, C, (N,), generator=g)
    return z, y, g


def _affine_reference(z, y, scale, bias, divisor, shift, weight, ignore_index, reduction):
    u = z / divisor if divisor is not None else z * (scale if scale is not None else 1.0)
    if bias is not None:
        u = u + bias
    if shift is not None:
        safe = torch.where(y == ignore_index, 0, y)
        u = u + F.one_hot(safe, C).to(z.dtype) * shift[safe].unsqueeze(1)
    return F.cross_entropy(u, y, weight=weight, ignore_index=ignore_index, reduction=reduction)


def _value_and_grad(fn, z):
    z = z.detach().clone().requires_grad_()
    out = fn(z)
    out.sum().backward()
    return out.detach(), z.grad


CONFIGS = {
    "ldam": lambda g: {"scale": 30.0, "shift": -torch.rand(C, generator=g, dtype=torch.float64) * 15},
    "la_bs": lambda g: {"bias": torch.randn(C, generator=g, dtype=torch.float64)},
    "vs": lambda g: {"divisor": torch.rand(C, generator=g, dtype=torch.float64) + 0.5,
                     "bias": torch.randn(C, generator=g, dtype=torch.float64)},
    # a float scale with a bias (no loss uses the pair yet; the kernel's torch.add(bias, z, alpha=s) branch)
    "scalar_scale_bias": lambda g: {"scale": 2.5, "bias": torch.randn(C, generator=g, dtype=torch.float64)},
    "vector_scale_weighted": lambda g: {"scale": torch.rand(C, generator=g, dtype=torch.float64) + 0.5,
                                        "bias": torch.randn(C, generator=g, dtype=torch.float64),
                                        "shift": -torch.rand(C, generator=g, dtype=torch.float64),
                                        "weight": torch.rand(C, generator=g, dtype=torch.float64) + 0.1},
}


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_affine_cross_entropy_matches_one_hot_formula(config, reduction, fused):
    z, y, g = _data()
    kw = CONFIGS[config](g)
    y = y.clone()
    y[2] = -100  # an ignored sample
    ref = dict(scale=kw.get("scale"), bias=kw.get("bias"), divisor=kw.get("divisor"), shift=kw.get("shift"),
               weight=kw.get("weight"), ignore_index=-100, reduction=reduction)
    v_ref, g_ref = _value_and_grad(lambda t: _affine_reference(t, y, **ref), z)
    v, gz = _value_and_grad(lambda t: affine_cross_entropy(t, y, reduction=reduction, fused=fused, **kw), z)
    torch.testing.assert_close(v, v_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gz, g_ref, rtol=1e-12, atol=1e-12)
    assert float(gz[2].abs().sum()) == 0.0  # the ignored row gets no gradient


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_affine_cross_entropy_gradcheck_fused(config):
    z, y, g = _data(1)
    kw = CONFIGS[config](g)
    gradcheck_loss(lambda t: affine_cross_entropy(t, y, fused=True, **kw), z)


def test_affine_cross_entropy_positive_ignore_index_and_empty_batch():
    z, y, g = _data(2)
    y = y.clone()
    y[0] = 255
    shift = -torch.rand(C, generator=g, dtype=torch.float64)
    for fused in (True, False):
        v, gz = _value_and_grad(lambda t: affine_cross_entropy(t, y, scale=2.0, shift=shift, ignore_index=255, fused=fused), z)
        v_ref, g_ref = _value_and_grad(lambda t: _affine_reference(t, y, 2.0, None, None, shift, None, 255, "mean"), z)
        torch.testing.assert_close(v, v_ref)
        torch.testing.assert_close(gz, g_ref)
    empty = torch.zeros(0, C, dtype=torch.float64, requires_grad=True)
    out = affine_cross_entropy(empty, torch.zeros(0, dtype=torch.long), bias=torch.zeros(C, dtype=torch.float64))
    assert float(out.detach()) == 0.0 and out.requires_grad


def _focal_reference(z, y, gamma, row_scale, w, reduction):
    logp = torch.log_softmax(z, 1)
    lpt = (logp * F.one_hot(y, C).to(z.dtype)).sum(1)
    q = 1 - lpt.exp()
    if gamma < 1.0:
        q = q.clamp_min(torch.finfo(z.dtype).tiny)
    losses = q.pow(gamma) * -lpt
    if row_scale is not None:
        losses = losses * row_scale
    if w is not None:
        losses = losses * w
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / w.sum() if w is not None else losses.mean()


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.0, 3.3])  # 1, 2: their own branches; 3: not 2's
def test_softmax_focal_matches_formula(gamma, reduction, fused):
    z, y, g = _data(3)
    alpha = torch.rand(C, generator=g, dtype=torch.float64)  # per class
    w = torch.rand(C, generator=g, dtype=torch.float64)  # class weights
    for a, wc in [(None, None), (0.25, None), (alpha, w)]:
        rs = a[y] if isinstance(a, torch.Tensor) else a
        sw = None if wc is None else wc[y]
        v_ref, g_ref = _value_and_grad(lambda t: _focal_reference(t, y, gamma, rs, sw, reduction), z)
        v, gz = _value_and_grad(lambda t: softmax_focal(t, y, gamma, alpha=a, weight=wc, reduction=reduction, fused=fused), z)
        torch.testing.assert_close(v, v_ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(gz, g_ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 3.3])
def test_softmax_focal_gradcheck_fused(gamma):
    z, y, g = _data(4)
    alpha = torch.rand(C, generator=g, dtype=torch.float64) + 0.1
    gradcheck_loss(lambda t: softmax_focal(t, y, gamma, alpha=alpha, fused=True), z)


def test_fused_focal_confident_rows_stay_finite():
    z = torch.tensor([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    y = torch.tensor([0, 1])
    for gamma in (0.5, 2.0):
        loss = softmax_focal(z, y, gamma, fused=True)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
        z.grad = None


@pytest.mark.parametrize("loss_id", ["ldam", "logit_adjusted", "balanced_softmax", "vs", "focal"])
def test_public_losses_agree_on_both_paths(loss_id, monkeypatch):
    g = torch.Generator().manual_seed(5)
    z = torch.randn(64, 10, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    kw = {} if loss_id == "focal" else {"class_counts": list(range(3, 13))}
    crit = la.create(loss_id, **kw)
    results = []
    for threshold in (0, 10**9):  # 0: always fused; huge: always composed
        monkeypatch.setattr(_fused, "FUSE_MIN_NUMEL", threshold)
        results.append(_value_and_grad(lambda t: crit(t, y), z))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-7)


def _graph_nodes(out):
    names, seen, stack = set(), set(), [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is not None and id(fn) not in seen:
            seen.add(id(fn))
            names.add(type(fn).__name__)
            stack.extend(f for f, _ in fn.next_functions)
    return names


def test_plain_cross_entropy_fuses_from_twice_the_size_of_the_others(monkeypatch):
    # FUSE_MIN_NUMEL's note: focal / LA / VS / LDAM pay off fused from N·C = FUSE_MIN_NUMEL,
    # plain cross-entropy from twice that (mutation seed 27: the factor of the others)
    monkeypatch.setattr(_fused, "FUSE_MIN_NUMEL", 100)
    g = torch.Generator().manual_seed(6)
    for n in (9, 10, 15, 20):  # N·C = 90, 100, 150, 200 with C = 10
        z = torch.randn(n, 10, generator=g, requires_grad=True)
        y = torch.randint(0, 10, (n,), generator=g)
        for loss_id, kw, start in (("focal", {}, 100), ("logit_adjusted", {"class_counts": list(range(3, 13))}, 100),
                                   ("cross_entropy", {}, 200)):
            names = _graph_nodes(la.create(loss_id, **kw)(z, y))
            assert ("_SoftmaxCEBackward" in names) == (n * 10 >= start), (loss_id, n, names)


def test_cast_constant_cache_sees_in_place_updates():
    buf = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    like = torch.zeros(2, 3)
    a = cast_constant(buf, like, -2.0)
    assert a.dtype == torch.float32 and a.tolist() == [-2.0, -4.0, -6.0]
    assert cast_constant(buf, like, -2.0) is a  # cached
    buf.mul_(10)  # e.g. load_state_dict copies into the buffer
    assert cast_constant(buf, like, -2.0).tolist() == [-20.0, -40.0, -60.0]
    assert cast_constant(buf, like).tolist() == [10.0, 20.0, 30.0]
    x = torch.zeros(2)
    assert as_dtype(x, torch.float32) is x and as_dtype(x, torch.float64).dtype == torch.float64


def test_module_state_dict_reload_updates_ldam_margins():
    z = torch.randn(8, 4)
    y = torch.randint(0, 4, (8,))
    a = la.create("ldam", class_counts=[100, 50, 10, 1])
    b = la.create("ldam", class_counts=[1, 10, 50, 100])
    before = a(z, y)
    a.load_state_dict(b.state_dict())
    torch.testing.assert_close(a(z, y), b(z, y))
    assert not torch.allclose(before, a(z, y))


@pytest.mark.parametrize("loss_id", ["ldam", "focal"])
def test_dynamo_traces_without_graph_breaks(loss_id):
    # backend="eager": Dynamo's full-graph capture only (no code generation), so this stays
    # fast; benchmarks/perf.py runs the real torch.compile and compares it with eager.
    torch._dynamo.reset()
    kw = {} if loss_id == "focal" else {"class_counts": list(range(3, 13))}
    crit = la.create(loss_id, validate=False, **kw)
    z = torch.randn(16, 10, requires_grad=True)
    y = torch.randint(0, 10, (16,))
    compiled = torch.compile(crit, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(z, y), crit(z, y))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.3])
def test_focal_ignored_rows_leave_the_mean(gamma, reduction, fused):
    # ignored rows contribute 0 and leave the denominator; all ignored: a mean of 0, zero gradient
    z, y, g = _data(6)
    for ignored in ([], [1, 4], list(range(N))):
        t = y.clone()
        t[ignored] = -100
        mask = (t != -100).to(z.dtype)
        safe = torch.where(t == -100, 0, t)
        v_ref, g_ref = _value_and_grad(lambda u: _focal_reference(u, safe, gamma, 0.5, mask, reduction), z)
        if not ignored or len(ignored) < N or reduction != "mean":
            v, gz = _value_and_grad(lambda u: softmax_focal(u, t, gamma, alpha=0.5, reduction=reduction, fused=fused), z)
        if len(ignored) == N and reduction == "mean":
            v_ref, g_ref = torch.zeros((), dtype=z.dtype), torch.zeros_like(z)  # 0/0 in the reference: our rule
            v, gz = _value_and_grad(lambda u: softmax_focal(u, t, gamma, alpha=0.5, reduction=reduction, fused=fused), z)
        torch.testing.assert_close(v, v_ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gz, g_ref, rtol=1e-12, atol=1e-12)
    empty = torch.zeros(0, C, dtype=torch.float64, requires_grad=True)
    out = softmax_focal(empty, torch.zeros(0, dtype=torch.long), gamma, reduction=reduction, fused=fused)
    assert out.numel() == 0 if reduction == "none" else float(out.detach()) == 0.0


def test_benchmark_peer_specs_name_registered_losses_and_valid_kwargs():
    # benchmarks/peers.py maps registry ids to peers; a renamed id or kwarg must fail here,
    # not silently drop out of the performance table.
    import importlib.util
    import pathlib
    import sys

    path = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "peers.py"
    spec = importlib.util.spec_from_file_location("lossatlas_bench_peers", path)
    peers = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = peers  # dataclasses look their module up while the file runs
    spec.loader.exec_module(peers)
    for s in peers.SPECS:
        entry = la.info(s.id)
        assert entry.id == s.id
        assert set(s.kwargs) <= set(entry.parameters), (s.id, set(s.kwargs) - set(entry.parameters))
        assert s.peers, s.id


@pytest.mark.parametrize("loss_id", ["cross_entropy", "focal", "ldam", "logit_adjusted", "balanced_softmax", "vs"])
@pytest.mark.parametrize("threshold", [0, 10**9])
def test_deferred_target_check_still_raises_value_error(loss_id, threshold, monkeypatch):
    # On CPU the target range check is left to the cross-entropy kernels; a bad target must
    # still raise the library's ValueError, on the fused and the composed path alike.
    monkeypatch.setattr(_fused, "FUSE_MIN_NUMEL", threshold)
    kw = {} if loss_id in ("cross_entropy", "focal") else {"class_counts": list(range(3, 13))}
    z = torch.randn(6, 10, requires_grad=True)
    for bad, ignore_index in [(10, -100), (-5, -100), (300, 255), (-100, 255)]:
        y = torch.tensor([0, 1, 2, bad, 4, 5])
        for reduction in ("mean", "none"):
            crit = la.create(loss_id, ignore_index=ignore_index, reduction=reduction, **kw)
            with pytest.raises(ValueError, match=r"target values must be in \[0, 10\)"):
                crit(z, y)
    ok = la.create(loss_id, ignore_index=255, **kw)(z, torch.tensor([0, 1, 255, 3, 4, 5]))
    assert torch.isfinite(ok)


def test_cast_constant_cache_sees_data_swap():
    buf = torch.tensor([1.0, 2.0], dtype=torch.float64)
    like = torch.zeros(1, 2)
    assert cast_constant(buf, like).tolist() == [1.0, 2.0]
    buf.data = torch.tensor([5.0, 6.0], dtype=torch.float64)
    assert cast_constant(buf, like).tolist() == [5.0, 6.0]


def test_one_softmax_kernel_recomputes_underflowing_target_probabilities():
    # float32 rows whose target probability underflows (e^-200) must give the exact
    # lse − u_y, as F.cross_entropy does, not inf; a row of huge logits must not overflow.
    z = torch.tensor([[0.0, 200.0, -5.0], [1.0, 2.0, 3.0], [1e4, -1e4, 0.0], [-300.0, 0.0, 300.0]])
    y = torch.tensor([0, 2, 0, 0])
    for reduction in REDUCTIONS:
        v_ref, g_ref = _value_and_grad(lambda t: F.cross_entropy(t, y, reduction=reduction), z)
        v, gz = _value_and_grad(lambda t: affine_cross_entropy(t, y, reduction=reduction, fused=True), z)
        torch.testing.assert_close(v, v_ref)
        torch.testing.assert_close(gz, g_ref)
    v, gz = _value_and_grad(lambda t: softmax_focal(t, y, 2.0, reduction="none", fused=True), z)
    v_ref, g_ref = _value_and_grad(lambda t: softmax_focal(t, y, 2.0, reduction="none", fused=False), z)
    torch.testing.assert_close(v, v_ref)
    torch.testing.assert_close(gz, g_ref)
    assert float(v[0]) == pytest.approx(200.0, rel=1e-6)  # (1 − p_t)^2 = 1 where p_t underflows
    # within range of the tensor's maximum, but the target far below its row: exact, no log(0)
    z2, y2 = torch.tensor([[0.0, -200.0, 5.0], [3.0, 1.0, 2.0]]), torch.tensor([1, 0])
    v, gz = _value_and_grad(lambda t: affine_cross_entropy(t, y2, reduction="none", fused=True), z2)
    v_ref, g_ref = _value_and_grad(lambda t: F.cross_entropy(t, y2, reduction="none"), z2)
    torch.testing.assert_close(v, v_ref)
    torch.testing.assert_close(gz, g_ref)
    shift = -torch.tensor([3.0, 1.0, 0.5])
    v, gz = _value_and_grad(lambda t: affine_cross_entropy(t, y, scale=30.0, shift=shift, reduction="none", fused=True), z)
    v_ref, g_ref = _value_and_grad(lambda t: F.cross_entropy(t * 30.0 + F.one_hot(y, 3) * shift[y, None], y, reduction="none"), z)
    torch.testing.assert_close(v, v_ref)
    torch.testing.assert_close(gz, g_ref)


def test_one_softmax_kernel_backward_twice_with_retain_graph():
    z, y, g = _data(7)
    z = z.requires_grad_()
    for fn in (lambda: affine_cross_entropy(z, y, scale=2.0, fused=True), lambda: softmax_focal(z, y, 2.0, fused=True)):
        loss = fn()
        loss.backward(retain_graph=True)
        once = z.grad.clone()
        loss.backward()
        torch.testing.assert_close(z.grad, 2 * once)
        z.grad = None


@pytest.mark.parametrize("loss_id", ["cross_entropy", "focal", "ldam", "logit_adjusted", "balanced_softmax", "vs"])
@pytest.mark.parametrize("threshold", [0, 10**9])
def test_value_checks_after_the_kernel(loss_id, threshold, monkeypatch):
    # validate=True checks the loss, then the logits: NaN / +inf still raise on every
    # reduction; -inf in a non-target column is a masked class (finite loss, no error).
    monkeypatch.setattr(_fused, "FUSE_MIN_NUMEL", threshold)
    kw = {} if loss_id in ("cross_entropy", "focal") else {"class_counts": list(range(3, 13))}
    z = torch.randn(6, 10)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    for reduction in REDUCTIONS:
        crit = la.create(loss_id, reduction=reduction, **kw)
        for value, col in ((float("nan"), 7), (float("inf"), 7), (float("-inf"), 0)):
            bad = z.clone().requires_grad_()
            bad.data[0, col] = value
            with pytest.raises(ValueError, match="logits contains NaN or Inf"):
                crit(bad, y)
        masked = z.clone()
        masked[0, 7] = float("-inf")
        masked.requires_grad_()
        out = crit(masked, y)
        assert torch.isfinite(out).all()
        out.sum().backward()
        assert torch.isfinite(masked.grad).all() and float(masked.grad[0, 7]) == 0.0


def _plain_path_reference(z, y, kw, reduction, num_classes):
    """torch's cross-entropy of the adjusted logits (float64), or the focal formula; the mean over no
    counted row is 0 (our rule where torch gives 0/0)."""
    safe = torch.where(y == -100, 0, y)
    u = z * kw["scale"] + F.one_hot(safe, num_classes).to(z.dtype) * kw["shift"][safe].unsqueeze(1) if "shift" in kw else z
    if "gamma" in kw:
        lpt = torch.log_softmax(u, 1).gather(1, safe.unsqueeze(1)).squeeze(1)
        losses = -lpt * (1 - lpt.exp()) ** kw["gamma"] * (y != -100)
        out = losses if reduction == "none" else losses.sum()
        return out / (y != -100).sum().clamp_min(1) if reduction == "mean" else out
    out = F.cross_entropy(u, y, weight=kw.get("weight"), label_smoothing=kw.get("label_smoothing", 0.0),
                          reduction=reduction)
    return torch.nan_to_num(out, nan=0.0) if reduction == "mean" and bool((y == -100).all()) else out


@pytest.mark.parametrize("extra", ["ce", "weight", "smoothing", "ldam", "focal"])
@pytest.mark.parametrize("ignored", ["none", "some", "all"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("num_classes", [5, 10, 100])
def test_plain_path_against_torch_with_and_without_ignored_rows(num_classes, reduction, ignored, extra):
    # the plain path reads on the CPU whether a row is ignored (ATen's own mean where some row counts,
    # the target itself as the index where none is ignored): every case against the definition
    g = torch.Generator().manual_seed(num_classes)
    n = 9
    z = torch.randn(n, num_classes, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, num_classes, (n,), generator=g)
    y[{"none": [], "some": [1, 5], "all": list(range(n))}[ignored]] = -100
    kw: dict = {
        "ce": {}, "weight": {"weight": torch.rand(num_classes, generator=g, dtype=torch.float64) + 0.1},
        "smoothing": {"label_smoothing": 0.2}, "focal": {"gamma": 2.0},
        "ldam": {"scale": 3.0, "shift": -torch.rand(num_classes, generator=g, dtype=torch.float64)},
    }[extra]
    v_ref, g_ref = _value_and_grad(lambda t: _plain_path_reference(t, y, kw, reduction, num_classes), z)
    v, gz = _value_and_grad(lambda t: affine_cross_entropy(t, y, reduction=reduction, fused=False, **kw), z)
    torch.testing.assert_close(v, v_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gz, g_ref, rtol=1e-12, atol=1e-12)
    assert float(gz[y == -100].abs().sum()) == 0.0  # ignored rows get no gradient


def test_narrow_logits_take_the_transposed_kernels_below_narrow_c():
    # the (log-)softmax of [N, C] along dim 0 of the transposed view below NARROW_C classes, the
    # last-dim kernels from it on: same values either way
    for num_classes in (_fused.NARROW_C - 1, _fused.NARROW_C):
        z = torch.randn(6, num_classes, dtype=torch.float64)
        assert _fused.log_softmax_rows(z).is_contiguous() == (num_classes >= _fused.NARROW_C)
        torch.testing.assert_close(_fused.log_softmax_rows(z), torch.log_softmax(z, 1), rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(_fused.softmax_rows(z), torch.softmax(z, 1), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("loss_id", ["cross_entropy", "focal", "ldam", "vs"])
def test_per_sample_gradients_under_vmap(loss_id):
    # the plain path's host read (whether a row is ignored) is skipped under torch.func transforms:
    # vmap(grad(loss)) gives each sample's gradient, as a loop over the samples does
    g = torch.Generator().manual_seed(3)
    z = torch.randn(6, 10, generator=g, dtype=torch.float64) * 0.3
    y = torch.randint(0, 10, (6,), generator=g)
    kw = {"class_counts": [50 - 4 * j for j in range(10)]} if loss_id in ("ldam", "vs") else {}
    fn = getattr(la.functional, loss_id)

    def one(zi, yi):
        return fn(zi.unsqueeze(0), yi.unsqueeze(0), validate=False, **kw)

    got = torch.func.vmap(torch.func.grad(one))(z, y)
    want = torch.stack([torch.autograd.grad(one(zi, y[i]), zi)[0]
                        for i, zi in enumerate(z.clone().requires_grad_().unbind(0))])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_opaque_operators_pass_opcheck_and_match_their_definitions() -> None:
    """The two custom operators the traced kernels hide from inductor: schema, fake tensor and
    AOT dispatch checks (torch.library.opcheck), and their values against plain torch."""
    torch.manual_seed(0)
    z = torch.randn(6, 5, dtype=torch.float64)
    idx = torch.tensor([[0], [4], [2], [2], [1], [3]])
    torch.library.opcheck(_fused._materialize, (z,))
    torch.library.opcheck(_fused.softmax_and_log_target_op, (z, idx))
    assert torch.equal(_fused._materialize(z), z)
    p, lpy = _fused.softmax_and_log_target_op(z, idx)
    assert lpy.shape == (6, 1)
    torch.testing.assert_close(p, torch.softmax(z, 1), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(lpy, torch.log_softmax(z, 1).gather(1, idx), rtol=1e-12, atol=1e-14)
