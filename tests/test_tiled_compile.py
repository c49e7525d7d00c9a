"""The tiled (blockwise) contrastive losses compile to one graph (``fullgraph=True``) and give
the eager values and gradients: no host read in the blockwise log-sum-exp's backward and no
tensor passed twice to its autograd.Function under torch.compile (both broke the graph)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import lossatlas.functional as LF

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CASES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "supcon": lambda e, y: LF.supcon(e, y, tiled=True, block_size=16),
    "infonce_labels": lambda e, y: LF.infonce(e, e.flip(0), labels=y, tiled=True, block_size=16),
    "infonce_pairs": lambda e, y: LF.infonce(e, e.flip(0), tiled=True, block_size=16),
    "decoupled_contrastive": lambda e, y: LF.decoupled_contrastive(e, e.flip(0), tiled=True, block_size=16),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tiled_loss_compiles_in_one_graph_and_equals_eager(name: str) -> None:
    fn = CASES[name]
    torch._dynamo.reset()
    compiled: Any = torch.compile(fn, fullgraph=True, dynamic=True, backend="aot_eager")
    g = torch.Generator().manual_seed(0)
    for n in (48, 64):
        e = torch.nn.functional.normalize(torch.randn(n, 8, generator=g, dtype=torch.float64), dim=1).requires_grad_()
        y = torch.randint(0, 4, (n,), generator=g)
        out = compiled(e, y)
        (grad,) = torch.autograd.grad(out, e)
        ref = fn(e, y)
        (grad_ref,) = torch.autograd.grad(ref, e)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-12)
