"""Tiled contrastive losses (G9): same values and gradients as the dense form, memory linear in N."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import lossatlas as la
import lossatlas.functional as LF
from lossatlas.distributed import block_rows, pairwise_logsumexp, pairwise_softplus_sum

RTOL = 1e-10


def _rel_close(x: torch.Tensor, y: torch.Tensor, rtol: float = RTOL) -> None:
    scale = max(float(y.abs().max()), 1e-300)
    err = float((x - y).abs().max())
    assert err <= rtol * scale, f"max abs err {err:.3e} > {rtol:.0e} * {scale:.3e}"


def _inputs(n: int = 23, d: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    b = a + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return a, b


# (function, kwargs with tensors that get gradients)
CASES = [
    ("infonce_sym", LF.infonce, {"temperature": 0.1}),
    ("infonce_oneway", LF.infonce, {"temperature": 0.1, "symmetric": False}),
    ("infonce_simclr", LF.infonce, {"temperature": 0.2, "intra_view_negatives": True}),
    ("infonce_simclr_oneway", LF.infonce, {"temperature": 0.2, "intra_view_negatives": True, "symmetric": False}),
    ("infonce_learnable_t", LF.infonce, {"temperature": "param:0.07"}),
    ("infonce_labels", LF.infonce, {"temperature": 0.1, "labels": torch.arange(23) % 5}),
    ("supcon_intra_labels", LF.infonce, {"temperature": 0.1, "labels": torch.arange(23) % 4, "intra_view_negatives": True}),
    ("siglip", LF.siglip, {"scale": 10.0, "bias": -10.0}),
    ("mochi_queue", LF.mochi, {"num_hard": 6, "num_mix": 5, "num_query_mix": 3, "queue": "queue", "generator": "gen"}),
    ("siglip_learnable", LF.siglip, {"scale": "param:5.0", "bias": "param:-3.0"}),
    ("decoupled", LF.decoupled_contrastive, {"temperature": 0.1}),
    ("decoupled_oneway", LF.decoupled_contrastive, {"temperature": 0.1, "symmetric": False}),
    ("decoupled_weighted", LF.decoupled_contrastive, {"temperature": 0.1, "weighted": True}),
    ("debiased", LF.debiased_contrastive, {"temperature": 0.5, "tau_plus": 0.1}),
    ("hcl", LF.hard_negative_contrastive, {"temperature": 0.5, "tau_plus": 0.1, "beta": 1.0}),
    ("hcl_beta_half", LF.hard_negative_contrastive, {"temperature": 0.3, "tau_plus": 0.05, "beta": 0.5}),
]


def _kw(kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[torch.Tensor]]:
    out: dict[str, Any] = {}
    params: list[torch.Tensor] = []
    for k, v in kwargs.items():
        if v == "queue":
            out[k] = torch.randn(9, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
        elif v == "gen":
            out[k] = torch.Generator().manual_seed(3)
        elif isinstance(v, str) and v.startswith("param:"):
            p = torch.tensor(float(v[6:]), dtype=torch.float64, requires_grad=True)
            out[k] = p
            params.append(p)
        else:
            out[k] = v
    return out, params


@pytest.mark.parametrize("name,fn,kwargs", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_tiled_equals_dense(name: str, fn: Callable[..., torch.Tensor], kwargs: dict[str, Any], reduction: str) -> None:
    a, b = _inputs()
    results = []
    for tiled in (False, True):
        kw, params = _kw(kwargs)
        x, y = a.clone().requires_grad_(), b.clone().requires_grad_()
        out = fn(x, y, tiled=tiled, block_size=5, reduction=reduction, **kw)
        weights = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
        grads = torch.autograd.grad((out * weights).sum(), [x, y, *params])
        results.append((out.detach(), *grads))
    for dense, tiled in zip(*results):
        _rel_close(tiled, dense)


@pytest.mark.parametrize("block", [1, 4, 64])
def test_pairwise_logsumexp_matches_dense(block: int) -> None:
    g = torch.Generator().manual_seed(1)
    q = torch.randn(19, 4, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(13, 4, generator=g, dtype=torch.float64, requires_grad=True)
    s = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    excl = torch.randint(0, 13, (19, 3), generator=g)
    res = []
    for tiled in (False, True):
        lr, lc = pairwise_logsumexp(q, k, s, exclude=excl, rows=True, cols=True, tiled=tiled, block_size=block)
        assert lr is not None and lc is not None
        loss = (lr * torch.arange(19.0, dtype=torch.float64)).sum() + lc.square().sum()
        res.append((lr, lc, *torch.autograd.grad(loss, [q, k, s])))
    for d, t in zip(*res):
        _rel_close(t.detach(), d.detach())


def test_tiled_functions_gradcheck() -> None:
    g = torch.Generator().manual_seed(2)
    q = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    s = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-0.4, dtype=torch.float64, requires_grad=True)
    excl = torch.tensor([[0], [1], [2], [3], [4], [0], [1]])

    def both(q: torch.Tensor, k: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        lr, lc = pairwise_logsumexp(q, k, s, exclude=excl, rows=True, cols=True, tiled=True, block_size=3)
        assert lr is not None and lc is not None
        return lr.sum() + 2 * lc.sum()

    def softplus(q: torch.Tensor, k: torch.Tensor, s: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return pairwise_softplus_sum(q, k, s, bias, tiled=True, block_size=2).sin().sum()

    assert torch.autograd.gradcheck(both, (q, k, s))
    assert torch.autograd.gradcheck(softplus, (q, k, s, bias))


def test_fully_excluded_row_is_minus_inf_with_zero_grad() -> None:
    q = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    excl = torch.tensor([[0, 1], [0, 0], [1, 1]])
    lr, _ = pairwise_logsumexp(q, k, 1.0, exclude=excl, tiled=True, block_size=2)
    assert lr is not None
    assert lr[0] == float("-inf") and torch.isfinite(lr[1:]).all()
    lr[1:].sum().backward()
    assert q.grad is not None and k.grad is not None
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
    assert torch.all(q.grad[0] == 0)


def test_auto_tiles_large_and_not_small() -> None:
    from lossatlas.functional.ssl import _use_tiles

    assert _use_tiles("auto", 4096, 4096) and not _use_tiles("auto", 64, 64)
    assert block_rows(1 << 20, None) >= 1 and block_rows(10, 3) == 3


class _LargestAllocation(TorchDispatchMode):
    """Largest tensor produced by any aten op (what an N x N similarity matrix would be)."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # torch leaves TorchDispatchMode.__init__ unannotated
        self.largest = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def _largest(n: int, tiled: bool, fn: Callable[..., torch.Tensor] = LF.infonce, **kw: Any) -> int:
    a, b = torch.randn(n, 16, requires_grad=True), torch.randn(n, 16, requires_grad=True)
    with _LargestAllocation() as mode:
        fn(a, b, tiled=tiled, block_size=16, **kw).backward()
    largest: int = mode.largest
    return largest


@pytest.mark.parametrize("fn,kw", [(LF.infonce, {}), (LF.siglip, {}), (LF.hard_negative_contrastive, {}),
                                   (LF.mochi, {"num_hard": 8, "num_mix": 4, "num_query_mix": 2})],
                         ids=["infonce", "siglip", "hcl", "mochi"])
def test_tiled_memory_is_linear_in_n(fn: Callable[..., torch.Tensor], kw: dict[str, int]) -> None:
    n1, n2 = 256, 512
    dense = _largest(n1, False, fn, **kw)
    assert dense >= n1 * n1  # the detector does see the dense matrix
    small, big = _largest(n1, True, fn, **kw), _largest(n2, True, fn, **kw)
    # MoCHi also holds its N·(s + s')·D synthetic negatives (linear in N, not tiled)
    synthetic = n2 * (kw.get("num_mix", 0) + kw.get("num_query_mix", 0)) * 16
    assert big < n2 * n2 // 8 + synthetic, f"tiled form allocated {big} elements at N={n2}"
    assert big <= 2.2 * small, f"largest allocation grew from {small} to {big} when N doubled"


def test_module_tiled_option_equals_dense() -> None:
    a, b = _inputs(17, 5, seed=3)
    for id_ in ("infonce", "siglip", "decoupled_contrastive", "debiased_contrastive", "hard_negative_contrastive"):
        dense = la.create(id_, tiled=False).double()(a, b)
        tiled = la.create(id_, tiled=True, block_size=4).double()(a, b)
        _rel_close(tiled.detach(), dense.detach())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_column_lse_far_below_the_matrix_maximum_stays_exact(dtype: torch.dtype) -> None:
    # column 0 lies ~800 (log space) below the others: the single-exp column pass would
    # underflow there, the tiled form must notice and recompute it exactly
    g = torch.Generator().manual_seed(4)
    u = torch.ones(6, dtype=torch.float64) / 6 ** 0.5
    q = (u + 0.05 * torch.randn(40, 6, generator=g, dtype=torch.float64)).to(dtype).requires_grad_()
    k = (u + 0.05 * torch.randn(30, 6, generator=g, dtype=torch.float64))
    k[0] = -40 * u
    k = k.to(dtype).requires_grad_()
    res = []
    for tiled in (False, True):
        lr, lc = pairwise_logsumexp(q, k, 20.0, rows=True, cols=True, tiled=tiled, block_size=7)
        assert lr is not None and lc is not None
        res.append((lr, lc, *torch.autograd.grad(lr.sum() + lc.sum(), [q, k])))
    for d, t in zip(*res):
        _rel_close(t.detach(), d.detach(), rtol=RTOL if dtype == torch.float64 else 1e-5)
