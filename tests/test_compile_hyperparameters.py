"""A float hyper-parameter that changes between calls of a compiled function (a schedule, a
sweep) is traced by torch.compile as a symbolic float after the first change; the argument
checks must compile (no graph break, so ``fullgraph=True`` works), give the eager values and
still refuse a value outside its interval. (A symbolic float is a real number to torch's
symbolic shapes: inf / nan are caught only while dynamo keeps the value constant; see
``check_number``.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import lossatlas.functional as LF

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _logits() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 5, generator=g, requires_grad=True), torch.randint(0, 5, (8,), generator=g)


def _emb() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(12, 6, generator=g, requires_grad=True), torch.randint(0, 3, (12,), generator=g)


CASES: dict[str, tuple[Callable[..., torch.Tensor], Callable[[], tuple[torch.Tensor, torch.Tensor]], tuple[float, ...], float]] = {
    # id: (call with the hyper-parameter, inputs, values in the order of the calls, a refused value)
    "focal": (lambda x, y, v: LF.focal(x, y, gamma=v), _logits, (2.0, 3.0, 0.5), -1.0),
    "gce": (lambda x, y, v: LF.gce(x, y, q=v), _logits, (0.7, 0.5, 0.9), 1.5),
    "poly1": (lambda x, y, v: LF.poly1(x, y, epsilon=v), _logits, (1.0, 2.0, -0.5), -2.0),
    "supcon": (lambda x, y, v: LF.supcon(x, y, temperature=v, base_temperature=v), _emb, (0.07, 0.1, 0.5), 0.0),
}


@pytest.mark.parametrize("loss_id", sorted(CASES))
def test_a_changing_float_hyperparameter_compiles_in_one_graph(loss_id: str) -> None:
    fn, inputs, values, bad = CASES[loss_id]
    torch._dynamo.reset()
    compiled: Any = torch.compile(fn, fullgraph=True, backend="aot_eager")
    x, y = inputs()
    for v in values:  # the second value makes it symbolic: the case that broke the graph
        out = compiled(x, y, v)
        (g,) = torch.autograd.grad(out, x)
        ref = fn(x, y, v)
        (g_ref,) = torch.autograd.grad(ref, x)
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(g, g_ref)
    # a bad value still fails: as the argument's ValueError where dynamo may fall back to eager,
    # and as dynamo's error carrying that ValueError under fullgraph=True
    name = {"focal": "gamma", "gce": "q", "poly1": "epsilon", "supcon": "temperature"}[loss_id]
    with pytest.raises(ValueError, match=name):
        torch.compile(fn, backend="aot_eager")(x, y, bad)
    with pytest.raises(Exception, match=f"{name} must be"):
        compiled(x, y, bad)


def test_a_constant_non_finite_value_is_still_refused_under_compile() -> None:
    torch._dynamo.reset()
    x, y = _logits()
    with pytest.raises(Exception, match="epsilon must be finite"):
        torch.compile(lambda a, b: LF.poly1(a, b, epsilon=float("inf")), fullgraph=True, backend="aot_eager")(x, y)
