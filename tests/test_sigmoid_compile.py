"""Elementwise sigmoid-type losses under torch.compile: the traced form is the hand-derived
pointwise function (one fused kernel for the value and the derivative, a multiply for the
backward) instead of autograd's graph of the composed ops, in one fullgraph compile whose float
hyper-parameters may change between calls (symbolic floats), with the eager values and gradients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import lossatlas.functional as LF

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    z = torch.randn(6, 7, generator=g, dtype=torch.float64) * 4
    z[0, :4] = torch.tensor([40.0, -40.0, 100.0, -100.0], dtype=torch.float64)
    y = (torch.rand(6, 7, generator=g) < 0.3).double()
    y[1, 2] = 0.4  # a soft target
    mask = (torch.rand(6, 7, generator=g) < 0.8).double()
    return z, y, mask


CASES: dict[str, tuple[Callable[..., torch.Tensor], tuple[Any, ...]]] = {
    # id: (call with the hyper-parameter, values in the order of the calls)
    "entropy_maximization": (lambda x, y, m, v: LF.entropy_maximization(x, y, alpha=v, reduction="sum"), (0.2, 0.1, 0.5)),
    "sigmoid_focal gamma": (lambda x, y, m, v: LF.sigmoid_focal(x, y, gamma=v, mask=m), (2.0, 1.0, 0.5, 3.0)),
    "sigmoid_focal alpha": (lambda x, y, m, v: LF.sigmoid_focal(x, y, alpha=v, reduction="none"), (0.25, 0.5, 0.9)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_traced_pointwise_function_equals_eager(case: str) -> None:
    fn, values = CASES[case]
    graphs: list[str] = []

    def backend(gm: torch.fx.GraphModule, example: list[torch.Tensor]) -> Any:
        graphs.append(gm.code)
        from functorch.compile import make_boxed_func
        from torch._dynamo.backends.common import aot_autograd

        return aot_autograd(fw_compiler=lambda g, _: make_boxed_func(g.forward))(gm, example)

    torch._dynamo.reset()
    compiled: Any = torch.compile(fn, fullgraph=True, backend=backend, dynamic=True)
    z, y, m = _inputs()
    x = z.clone().requires_grad_()
    for v in values:
        out = compiled(x, y, m, v)
        cot = torch.rand(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
        (g,) = torch.autograd.grad((out * cot).sum(), x)
        ref = fn(x, y, m, v)
        (g_ref,) = torch.autograd.grad((ref * cot).sum(), x)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-14)
    # the traced graph holds the hand-derived function, not the composed ops' autograd graph
    assert graphs and all("_Pointwise" in code or "autograd_function_apply" in code for code in graphs), graphs[-1]


def test_gumbel_compiled_equals_eager() -> None:
    """Gumbel's traced path (the composed ops, the one-hot as a comparison) in one fullgraph
    compile: the eager values and gradients, the default clamp and none, an ignored row."""
    g = torch.Generator().manual_seed(4)
    z = torch.randn(6, 9, generator=g, dtype=torch.float64) * 4
    y = torch.tensor([0, 8, 3, -100, 5, 5])

    def fn(x: torch.Tensor, lo: float | None) -> torch.Tensor:
        return LF.gumbel(x, y, clamp_min=lo, clamp_max=None if lo is None else 10.0, reduction="sum")

    torch._dynamo.reset()
    compiled: Any = torch.compile(fn, fullgraph=True, backend="aot_eager")
    for lo in (-4.0, None):
        x = z.clone().requires_grad_()
        out, ref = compiled(x, lo), fn(x, lo)
        (gc,), (gr,) = torch.autograd.grad(out, x), torch.autograd.grad(ref, x)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gc, gr, rtol=1e-10, atol=1e-14)
