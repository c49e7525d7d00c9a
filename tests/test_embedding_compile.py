"""The traced (``torch.compile``) forms of the all-pair embedding losses: one graph
(``fullgraph=True``) whose values and gradients are the eager ones in float64, and the
hand-derived backward of each traced autograd.Function checked by ``gradcheck``."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

import lossatlas.functional as LF
from lossatlas.functional import metric as M

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _batch(n: int, seed: int, repeats: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(n, 6, generator=g, dtype=torch.float64)
    if repeats:  # identical rows (distance exactly 0, no gradient there), also across classes
        e[1] = e[0]
        e[5] = e[4]
        e[7] = 2.0 * e[6]  # the same direction: the same unit row
    y = torch.randint(0, 4, (n,), generator=g)
    return e, y


def _compiled_equals_eager(fn: Any, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """``fn`` compiled in one graph (dynamic shapes) gives eager's values and gradients on each batch
    (a weighted sum, so that the rows of a ``'none'`` reduction each get their own weight)."""
    torch._dynamo.reset()
    compiled: Any = torch.compile(fn, fullgraph=True, dynamic=True, backend="aot_eager")
    for e, y in batches:
        e.requires_grad_()
        out, ref = compiled(e, y), fn(e, y)
        n = e.shape[0]
        w = torch.linspace(0.5, 2.0, n, dtype=torch.float64) if out.ndim else torch.tensor(1.0, dtype=torch.float64)
        (grad,) = torch.autograd.grad((out * w).sum(), e)
        (grad_ref,) = torch.autograd.grad((ref * w).sum(), e)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-12)


CONTRASTIVE: dict[str, dict[str, Any]] = {
    "mean": {},
    "mean_margins": {"pos_margin": 0.3, "neg_margin": 1.2},
    "mean_all_pairs": {"average_nonzero": False, "pos_margin": 0.2},
    "sum": {"reduction": "sum", "neg_margin": 1.4},
    "none": {"reduction": "none", "pos_margin": 0.1},
}


@pytest.mark.parametrize("case", sorted(CONTRASTIVE))
def test_contrastive_compiles_in_one_graph_and_equals_eager(case: str) -> None:
    kw = CONTRASTIVE[case]

    def fn(e: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return LF.contrastive(e, y, validate=False, **kw)

    _compiled_equals_eager(fn, [_batch(24, 24, True), _batch(40, 40)])


@pytest.mark.parametrize("case", sorted(CONTRASTIVE))
def test_contrastive_traced_function_equals_composed_form_and_passes_gradcheck(case: str) -> None:
    kw = CONTRASTIVE[case]
    pm, nm = kw.get("pos_margin", 0.0), kw.get("neg_margin", 1.0)
    reduction, nonzero = kw.get("reduction", "mean"), kw.get("average_nonzero", True)
    e, y = _batch(20, 3, repeats=True)
    e.requires_grad_()

    def traced(x: torch.Tensor, labels: torch.Tensor = y) -> torch.Tensor:
        return M._all_pair_contrastive_traced(F.normalize(x, dim=1), labels, pm, nm, reduction, nonzero)

    def composed(x: torch.Tensor) -> torch.Tensor:
        return M._contrastive_composed(F.normalize(x, dim=1), y, pm, nm, nonzero, None, reduction, x.dtype)

    out, ref = traced(e), composed(e)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    w = torch.linspace(0.5, 2.0, 20, dtype=torch.float64) if out.ndim else torch.tensor(1.0, dtype=torch.float64)
    (grad,) = torch.autograd.grad((out * w).sum(), e)
    (grad_ref,) = torch.autograd.grad((ref * w).sum(), e)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-12)
    assert grad[0].abs().sum() > 0  # the identical pair (0, 1) has no gradient, its other pairs do
    # gradcheck away from the identical rows (finite differences move them apart)
    e2, y2 = _batch(12, 5)
    assert torch.autograd.gradcheck(lambda x: traced(x, y2), (e2.requires_grad_(),))


TRIPLET: dict[str, dict[str, Any]] = {
    "mean": {},
    "mean_all_triplets": {"average_nonzero": False, "margin": 0.5},
    "sum": {"reduction": "sum", "margin": 0.1},
    "none": {"reduction": "none", "margin": 0.3},
    "zero_margin": {"margin": 0.0},
}


@pytest.mark.parametrize("case", sorted(TRIPLET))
def test_triplet_margin_compiles_in_one_graph_and_equals_eager(case: str) -> None:
    kw = TRIPLET[case]

    def fn(e: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return LF.triplet_margin(e, y, validate=False, **kw)

    # eager CPU: the gathered [N, P, N] terms
    _compiled_equals_eager(fn, [_batch(24, 24, True), _batch(40, 40)])


@pytest.mark.parametrize("margin", [0.0, 0.2, 0.7, -0.1])
def test_sorted_triplets_equal_the_gathered_terms(margin: float) -> None:
    e, y = _batch(30, 7, repeats=True)
    e.requires_grad_()
    d = M._unit_distances(F.normalize(e, dim=1))
    per_anchor, active, n_valid = M._sorted_triplets(d, y, margin)
    losses, ref, ref_valid = M._all_triplets(d, y, margin)
    torch.testing.assert_close(per_anchor, ref, rtol=1e-12, atol=1e-12)
    assert int(active) == int((losses > 0).sum()) and int(n_valid) == int(ref_valid)
    w = torch.linspace(0.5, 2.0, 30, dtype=torch.float64)
    (grad,) = torch.autograd.grad((per_anchor * w).sum(), e, retain_graph=True)
    (grad_ref,) = torch.autograd.grad((ref * w).sum(), e)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-12)
    assert grad.abs().sum() > 0


SUPCON: dict[str, Any] = {
    "supcon": lambda e, y: LF.supcon(e, y, validate=False),
    "supcon_all_anchors": lambda e, y: LF.supcon(e, y, average_over="all_anchors", temperature=0.3, validate=False),
    "supcon_none": lambda e, y: LF.supcon(e, y, reduction="none", validate=False),
    "infonce_labels": lambda e, y: LF.infonce(e, e.flip(0), labels=y, validate=False),
}


@pytest.mark.parametrize("name", sorted(SUPCON))
def test_label_sums_under_compile_equal_eager(name: str) -> None:
    """The per-class positive sums of the InfoNCE family under compile (each class's sum in the
    row of its first key) against eager's per-class index_add: classes of 1 (no positive), 2, 5."""
    fn = SUPCON[name]
    batches = []
    for n in (24, 40):
        e, _ = _batch(n, n + 1)
        y = torch.tensor([7, 3, 3, 9, 9, 9, 9, 9] + [10 + i % (n // 4) for i in range(n - 8)])
        batches.append((e, y[torch.randperm(n, generator=torch.Generator().manual_seed(n))]))
    _compiled_equals_eager(fn, batches)
