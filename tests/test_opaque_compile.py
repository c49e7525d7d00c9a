"""The opaque-operator route of compiled losses on CPU (``lossatlas._opaque``).

Under ``torch.compile`` a call that :func:`~lossatlas._opaque.opaque_call_key` accepts runs the
loss's eager code as one custom operator, ``lossatlas::eager_loss``, and its backward as
``lossatlas::eager_loss_backward``. Every registered id is compiled here with the size
threshold at 0 (so the small conformance cases take the route) and must give eager's value and
gradients; the route itself (which calls take it, the graph's lifetime, ``retain_graph``,
a body that writes into its input, :func:`lossatlas.traced_kernels`) is tested on
cross-entropy.
"""

from __future__ import annotations

import copy
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import torch

import lossatlas
import lossatlas.functional as LF
from conformance import cases as K
from conformance.test_losses import STATEFUL_CALL
from lossatlas import _opaque

IDS = K.loss_ids()

#: Ids whose calls never take the route, with the reason (beside the conformance tests'
#: STATEFUL_CALL: per-sample or running state passed with each call and written in place).
NOT_ROUTED = {
    **{i: "stateful: the state tensors are call keywords" for i in STATEFUL_CALL},
    "aucm": "its learned a, b and α are passed with each call (call keywords)",
    "multilabel_aucm": "its learned a, b and α are passed with each call (call keywords)",
    "cals": "its Lagrange multipliers are passed with each call (a call keyword)",
    "role": "its per-sample label estimates are indexed by the call keyword index",
    "active_passive": "its module holds the active and passive terms as loss objects, which a key cannot name",
}
ENTRIES = {e.id: e for e in K.loss_entries()}
CE = "lossatlas.functional.imbalance.cross_entropy"


@pytest.fixture
def route_all(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every loss and every size takes the route (the conformance cases are small)."""
    monkeypatch.setattr(_opaque, "OPAQUE_MIN_NUMEL", 0)
    monkeypatch.setattr(_opaque, "_ROUTE_EVERY_LOSS", True)
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The losses the operator ran, in order (recorded by wrapping its call of the body)."""
    ran: list[str] = []
    run = _opaque._run_body

    def spy(key: str, *args: Any) -> torch.Tensor:
        ran.append(key)
        return run(key, *args)

    monkeypatch.setattr(_opaque, "_run_body", spy)
    return ran


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss_id", IDS)
def test_every_loss_compiled_through_the_operator_matches_eager(loss_id: str, route_all: None,
                                                               counted: list[str]) -> None:
    entry = ENTRIES[loss_id]
    crit = K.create(entry, validate=False) if "validate" in entry.parameters else K.create(entry)
    case = K.make_case(entry)
    v_ref, g_ref = K.value_and_grads(copy.deepcopy(crit), case.clone())
    compiled = torch.compile(crit, backend="aot_eager", fullgraph=True)
    v, g = K.value_and_grads(compiled, case.clone())
    assert bool(counted) == (loss_id not in NOT_ROUTED), counted
    _close(v, v_ref)
    for a, b, x in zip(g, g_ref, K.leaves_of(crit, case)):
        # an input the loss does not use: eager's gradient is None, the operator's zeros (it
        # cannot know at trace time which inputs the body reads)
        if b is None and a is not None:
            b = torch.zeros_like(x)
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            _close(a, b)


def _inputs(n: int = 16, c: int = 5, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, c, generator=g, dtype=dtype).mul_(3).requires_grad_()
    return z, torch.randint(0, c, (n,), generator=g)


def test_a_routed_call_runs_the_operator_and_gives_eager_results(route_all: None, counted: list[str]) -> None:
    z, t = _inputs()
    w = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0], dtype=torch.float64)
    fn = torch.compile(LF.cross_entropy, fullgraph=True, dynamic=True, backend="aot_eager")
    for reduction in ("mean", "sum"):
        out = fn(z, t, weight=w, label_smoothing=0.1, reduction=reduction)
        (g,) = torch.autograd.grad(out * 3.0, z)  # an upstream gradient other than 1
        ref = LF.cross_entropy(z, t, weight=w, label_smoothing=0.1, reduction=reduction)
        (g_ref,) = torch.autograd.grad(ref * 3.0, z)
        _close(out, ref)
        _close(g, g_ref)
    assert len(counted) == 2 and all(CE in k for k in counted)


def test_the_route_is_taken_only_where_it_is_safe(route_all: None, counted: list[str]) -> None:
    z, t = _inputs()
    aot: Any = dict(fullgraph=True, backend="aot_eager")
    torch.compile(LF.cross_entropy, **aot)(z, t, reduction="none").sum().backward()  # not a scalar
    torch.compile(LF.cross_entropy, **aot)(z.detach(), t)  # nothing needs a gradient
    with torch.no_grad():
        torch.compile(LF.cross_entropy, **aot)(z, t)
    torch.compile(LF.cross_entropy, **aot)(z.half(), t).backward()  # neither float32 nor float64
    assert counted == []
    torch.compile(LF.cross_entropy, **aot)(z.float(), t).backward()
    assert len(counted) == 1


def test_the_route_needs_plain_constant_arguments(route_all: None) -> None:
    z, t = _inputs()
    ap = "lossatlas.functional.noise.active_passive"
    found = _opaque.opaque_call_key(ap, (z, t), {"active": "nce", "active_kwargs": {"w": (1.5, z, 3)}}, (), "mean")
    assert found is not None
    kwargs = dict(_opaque._parse(found.key)[2])
    assert _opaque._decode(kwargs["active_kwargs"], found.tensors, found.ints, found.floats) == {"w": (1.5, z, 3)}
    assert found.floats == [1.5] and found.ints == [3]
    assert _opaque.opaque_call_key(CE, (z, t), {}, (), "mean") is not None
    assert _opaque.opaque_call_key(CE, (z, t), {"reduction": "none"}, (), "mean") is None
    assert _opaque.opaque_call_key(CE, (z, t), {"mask": torch.ones(16)}, ("mask",), "mean") is None
    assert _opaque.opaque_call_key(CE, (z, t), {"distance": object()}, (), "mean") is None
    assert _opaque.opaque_call_key("not.a.loss", (z, t), {}, (), "mean") is None
    found = _opaque.opaque_call_key(CE, (z, t), {"label_smoothing": 0.1, "weight": None, "ignore_index": -3}, (), "mean")
    assert found is not None and found.tensors == [z, t] and found.floats == [0.1] and found.ints == [-3]
    body, args, kwargs, needs = _opaque._parse(found.key)
    assert needs == (True, False) and dict(kwargs)["weight"] is None


#: The losses that opted in (``loss_function(compile_opaque=True)``): their traced forms
#: compiled slower than their eager kernels on CPU (benchmarks/perf.py).
OPTED_IN = ["gumbel", "dice", "ldr", "nfl", "ngce", "anyloss", "correctness_aware", "triplet_margin", "normalized_softmax",
             "squentropy"]


def test_the_losses_that_opted_in_are_these() -> None:
    opted = sorted(i for i in IDS if getattr(ENTRIES[i].function.unchecked, "compile_opaque", False))
    assert opted == sorted(OPTED_IN)


def test_small_inputs_keep_the_traced_kernels_and_large_ones_take_the_operator(counted: list[str]) -> None:
    torch._dynamo.reset()
    fn = torch.compile(LF.gumbel, fullgraph=True, dynamic=True, backend="aot_eager")
    small = _inputs(n=16, c=5, dtype=torch.float32)
    fn(*small).backward()
    assert counted == []
    n = _opaque.OPAQUE_MIN_NUMEL // 8
    big = _inputs(n=n, c=8, dtype=torch.float32)
    out = fn(*big)
    out.backward()
    assert len(counted) == 1 and counted[0].startswith("('lossatlas.functional.imbalance.gumbel'")
    ref = LF.gumbel(big[0], big[1])
    (g_ref,) = torch.autograd.grad(ref, big[0])
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(big[0].grad, g_ref)
    # a loss that did not opt in compiles its traced form at every size
    torch.compile(LF.cross_entropy, fullgraph=True, dynamic=True, backend="aot_eager")(*big).backward()
    assert len(counted) == 1


def test_traced_kernels_turns_the_route_off(route_all: None, counted: list[str]) -> None:
    z, t = _inputs()
    with lossatlas.traced_kernels():
        torch.compile(LF.cross_entropy, fullgraph=True, backend="aot_eager")(z, t).backward()
    assert counted == []


def test_retain_graph_allows_a_second_backward(route_all: None) -> None:
    z, t = _inputs()
    out = torch.compile(LF.focal, fullgraph=True, backend="aot_eager")(z, t, gamma=2.0)
    out.backward(retain_graph=True)
    first = z.grad.clone()
    out.backward()
    _close(z.grad, 2 * first)
    with pytest.raises(RuntimeError, match="graph"):
        out.backward()  # the graph was freed by the second backward, as in eager


def test_the_eager_graph_is_freed_with_or_without_a_backward(route_all: None, monkeypatch: pytest.MonkeyPatch) -> None:
    alive: list[weakref.ref[torch.Tensor]] = []
    run = _opaque._run_body

    def spy(key: str, *args: Any) -> torch.Tensor:
        out = run(key, *args)
        alive.append(weakref.ref(out))
        return out

    monkeypatch.setattr(_opaque, "_run_body", spy)
    z, t = _inputs()
    fn = torch.compile(LF.cross_entropy, fullgraph=True, backend="aot_eager")
    fn(z, t).backward()
    out = fn(z, t)  # no backward: the graph goes with the loss
    del out
    gc.collect()
    assert len(alive) == 2 and all(r() is None for r in alive)


def test_a_body_that_writes_into_its_input_is_refused(route_all: None) -> None:
    def scribble(x: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
        x.detach().add_(1.0)
        return x.sum()

    _opaque.register_body("tests.scribble", scribble)
    z, _ = _inputs()
    found = _opaque.opaque_call_key("tests.scribble", (z,), {}, (), "mean")
    assert found is not None
    with pytest.raises(RuntimeError, match="wrote into one of its inputs"):
        _opaque.run_opaque(found)


def test_the_operators_pass_torch_library_opcheck(route_all: None) -> None:
    z, t = _inputs()
    found = _opaque.opaque_call_key(CE, (z, t), {"ignore_index": -100, "label_smoothing": 0.1}, (), "mean")
    assert found is not None
    torch.library.opcheck(torch.ops.lossatlas.eager_loss.default, tuple(found),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_inputs_never_take_the_route(route_all: None) -> None:
    z, t = _inputs()
    assert _opaque.opaque_call_key(CE, (z.cuda(), t.cuda()), {}, (), "mean") is None


def test_a_loss_may_set_its_own_threshold(counted: list[str]) -> None:
    # triplet_margin's cost grows with the pairs of the batch, not its elements: it routes at every size
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(24, 8, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 4, (24,), generator=g)
    out = torch.compile(LF.triplet_margin, fullgraph=True, dynamic=True, backend="aot_eager")(emb, labels)
    (grad,) = torch.autograd.grad(out, emb)
    ref = LF.triplet_margin(emb, labels)
    (g_ref,) = torch.autograd.grad(ref, emb)
    assert len(counted) == 1 and "triplet_margin" in counted[0]
    _close(out, ref)
    _close(grad, g_ref)
