"""Issue 22: SupCon across processes. Two gloo ranks with uneven shards must give the loss of
the concatenated batch and its exact gradient, dense and tiled, under DDP with gradient
accumulation over micro-batches (``no_sync``), and in the cached (GradCache) form. The other
settings of the InfoNCE family (NT-Xent, CLIP one-way and symmetric) are checked the same way
(``_family``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.distributed as dist

import lossatlas as la
import lossatlas.functional as LF
from gloo import ddp_accumulate, encoder, run_gloo, shard
from lossatlas.distributed import cached_backward

WORLD = 2
SIZES = (7, 5)  # uneven shards of one micro-batch
D_IN, D = 5, 4
MICRO = 2  # micro-batches accumulated per step
# (kwargs) of every SupCon setting checked; labels shared across the shards
SETTINGS: list[dict[str, Any]] = [
    {"temperature": 0.1},
    {"temperature": 0.2, "base_temperature": 0.07, "average_over": "all_anchors"},
    {"temperature": 0.1, "reduction": "sum"},
]


def _family() -> list[tuple[str, Callable[..., torch.Tensor]]]:
    """(name, fn(a, b, y, **kw)) of the other settings of the InfoNCE family; kw carries tiled / distributed."""
    return [
        ("ntxent", lambda a, b, y, **kw: LF.ntxent(a, y, temperature=0.2, **kw)),
        ("ntxent_sum", lambda a, b, y, **kw: LF.ntxent(a, y, reduction="sum", **kw)),
        ("clip", lambda a, b, y, **kw: LF.infonce(a, b, temperature=0.1, **kw)),
        ("clip_one_way", lambda a, b, y, **kw: LF.infonce(a, b, symmetric=False, **kw)),
        ("supcon_multi_label", lambda a, b, y, **kw: LF.supcon(a, _multi_hot(y), temperature=0.2, **kw)),
        ("supcon_multi_label_all", lambda a, b, y, **kw: LF.supcon(a, _multi_hot(y), average_over="all_anchors",
                                                                   reduction="sum", **kw)),
    ]


def _multi_hot(y: torch.Tensor) -> torch.Tensor:
    """Multi-hot labels [N, 3] made row by row from integer ones (shards agree with the whole)."""
    return torch.stack([y % 2 == 0, y % 3 == 0, y >= 2], dim=1)


def _family_run(fn: Callable[..., torch.Tensor], a: torch.Tensor, b: torch.Tensor, y: torch.Tensor,
                **kw: Any) -> list[torch.Tensor]:
    """The loss and its gradients in a and b."""
    a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
    loss = fn(a, b, y, **kw)
    ga, gb = torch.autograd.grad(loss, [a, b], allow_unused=True)
    return [loss.detach(), torch.zeros_like(a) if ga is None else ga, torch.zeros_like(b) if gb is None else gb]


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    n = sum(SIZES)
    e = torch.randn(n, D, generator=g, dtype=torch.float64)
    x = torch.randn(MICRO, n, D_IN, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (MICRO, n), generator=g)
    y[0, 11] = 9  # an anchor whose class is on no other row (no positive)
    return e, x, y


def _encoder() -> torch.nn.Module:
    return encoder(D_IN, D)


def _shard(rank: int) -> slice:
    return shard(rank, SIZES)


def _worker(rank: int) -> dict[str, Any]:
    e, x, y = _data()
    sl = _shard(rank)
    out: dict[str, Any] = {"loss": [], "grad": []}
    # 1. the function on leaf embeddings, dense and tiled
    for kw in SETTINGS:
        for tiled in (False, True):
            el = e[sl].clone().requires_grad_()
            loss = LF.supcon(el, y[0, sl], distributed=True, tiled=tiled, block_size=3, **kw)
            loss.backward()
            out["loss"].append(loss.detach())
            out["grad"].append(el.grad)
    # 1b. the other settings of the family, on a second view b = e + noise
    b = e + 0.5 * x[1, :, :D]
    out["family"] = {f"{name} tiled={tiled}": _family_run(fn, e[sl], b[sl], y[0, sl], distributed=True,
                                                          tiled=tiled, block_size=3)
                     for name, fn in _family() for tiled in (False, True)}
    # 2. DDP, two micro-batches accumulated with no_sync, the module's tiled form
    crit = la.create("supcon", temperature=0.1, tiled=True, block_size=4, distributed=True)
    out["ddp"] = ddp_accumulate(_encoder(), lambda ddp, m: crit(ddp(x[m, sl]), y[m, sl]), MICRO)
    # 3. the cached (GradCache) form: chunks of 3 rows, then the parameter gradients summed over ranks
    enc = _encoder()
    fn = la.create("supcon", temperature=0.1, tiled=True, block_size=2, distributed=True)
    for m in range(MICRO):
        out.setdefault("cached_loss", []).append(
            cached_backward(lambda z, m=m: fn(z, y[m, sl]), enc, [x[m, sl]], chunk_size=3))
    grads = [p.grad.detach().clone() for p in enc.parameters()]
    for t in grads:
        dist.all_reduce(t)
    out["cached"] = grads
    return out


@pytest.fixture(scope="module")
def gathered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return run_gloo(_worker, tmp_path_factory.mktemp("dist_supcon"), WORLD)


def test_distributed_supcon_equals_single_process(gathered: list[dict[str, Any]]) -> None:
    e, _, y = _data()
    i = 0
    for kw in SETTINGS:
        for tiled in (False, True):
            ref_e = e.clone().requires_grad_()
            ref = LF.supcon(ref_e, y[0], tiled=False, **kw)
            ref.backward()
            label = f"{kw} tiled={tiled}"
            for r in range(WORLD):
                torch.testing.assert_close(gathered[r]["loss"][i], ref.detach(), rtol=1e-10, atol=1e-12, msg=label)
            grad = torch.cat([gathered[r]["grad"][i] for r in range(WORLD)])
            torch.testing.assert_close(grad, ref_e.grad, rtol=1e-9, atol=1e-12, msg=label)
            i += 1


@pytest.mark.parametrize("name", [c[0] for c in _family()])
@pytest.mark.parametrize("tiled", [False, True])
def test_distributed_family_equals_the_concatenated_batch(gathered: list[dict[str, Any]], name: str,
                                                          tiled: bool) -> None:
    e, x, y = _data()
    b = e + 0.5 * x[1, :, :D]
    loss, ga, gb = _family_run(dict(_family())[name], e, b, y[0], tiled=False)
    key = f"{name} tiled={tiled}"
    for r in range(WORLD):
        torch.testing.assert_close(gathered[r]["family"][key][0], loss, rtol=1e-10, atol=1e-12, msg=key)
    for i, want in ((1, ga), (2, gb)):
        got = torch.cat([gathered[r]["family"][key][i] for r in range(WORLD)])
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12, msg=key)


def _single_process_accumulated() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    _, x, y = _data()
    enc = _encoder()
    losses = []
    for m in range(MICRO):
        loss = LF.supcon(enc(x[m]), y[m], temperature=0.1, tiled=False)
        loss.backward()
        losses.append(loss.detach())
    return [p.grad.detach().clone() for p in enc.parameters()], losses


def test_ddp_no_sync_accumulation_equals_single_process(gathered: list[dict[str, Any]]) -> None:
    ref, _ = _single_process_accumulated()
    for r in range(WORLD):
        for got, want in zip(gathered[r]["ddp"], ref):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_cached_distributed_equals_single_process(gathered: list[dict[str, Any]]) -> None:
    ref, losses = _single_process_accumulated()
    for r in range(WORLD):
        for got, want in zip(gathered[r]["cached"], ref):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
        for got, want in zip(gathered[r]["cached_loss"], losses):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_without_a_process_group_distributed_is_single_process() -> None:
    e, _, y = _data()
    torch.testing.assert_close(LF.supcon(e, y[0], distributed=True), LF.supcon(e, y[0]))
    torch.testing.assert_close(LF.supcon(e, y[0], distributed=True, tiled=True), LF.supcon(e, y[0]))
