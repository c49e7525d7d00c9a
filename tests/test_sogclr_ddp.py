"""G16 under torch.distributed: two gloo ranks with uneven shards, over a sequence of calls
that revisit samples, must return the loss of the concatenated batch, the gradient of that
loss for their own rows, and hold the per-sample state tables of one process that saw the
concatenated batches (dense and tiled)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
from gloo import run_gloo, shard

WORLD = 2
SIZES = (7, 5)  # uneven shards
D = 6
DATA_LEN = 30
IDS = ["sogclr", "isogclr", "sogclr_bimodal", "isogclr_bimodal"]
CASES: list[tuple[str, dict[str, Any]]] = [
    *[(i, {"tiled": tiled, "block_size": 3}) for i in IDS for tiled in (False, True)],
    ("sogclr", {"reduction": "none"}),
    ("isogclr_bimodal", {"reduction": "sum", "gamma": 0.5}),
]


def _steps(id_: str) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Three global batches (a, b, index) whose indices overlap from one call to the next."""
    g = torch.Generator().manual_seed(0)
    n = sum(SIZES)
    out = []
    for index in (torch.arange(n), torch.randperm(DATA_LEN, generator=g)[:n], torch.arange(n) + 9):
        a = torch.randn(n, D, generator=g, dtype=torch.float64)
        b = a + 0.6 * torch.randn(n, D, generator=g, dtype=torch.float64)
        if id_.endswith("bimodal"):
            a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
        out.append((a, b, index))
    return out


def _run(crit: Any, a: torch.Tensor, b: torch.Tensor, index: torch.Tensor) -> dict[str, Any]:
    a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
    loss = crit(a, b, index=index)
    loss.sum().backward()
    return {"loss": loss.detach(), "grad_a": a.grad, "grad_b": b.grad,
            "state": {k: v.clone() for k, v in crit.state().items()}}


def _worker(rank: int) -> list[list[dict[str, Any]]]:
    sl = shard(rank, SIZES)
    results = []
    for id_, kw in CASES:
        crit = la.create(id_, data_len=DATA_LEN, **kw).double()
        results.append([_run(crit, a[sl], b[sl], index[sl]) for a, b, index in _steps(id_)])
    return results


@pytest.fixture(scope="module")
def gathered(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    return run_gloo(_worker, tmp_path_factory.mktemp("dist"), WORLD)


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{i}-{kw}" for i, kw in CASES])
def test_two_processes_equal_one_process_on_the_concatenated_batch(gathered: list[Any], case: int) -> None:
    id_, kw = CASES[case]
    crit = la.create(id_, data_len=DATA_LEN, **kw).double()
    for step, (a, b, index) in enumerate(_steps(id_)):
        ref = _run(crit, a, b, index)
        per_rank = [gathered[r][case][step] for r in range(WORLD)]
        label = f"{id_} {kw} step {step}"
        if kw.get("reduction") == "none":  # per anchor: each rank returns its own rows
            torch.testing.assert_close(torch.cat([p["loss"] for p in per_rank]), ref["loss"], rtol=1e-10, atol=1e-12,
                                       msg=label)
        else:
            for p in per_rank:
                torch.testing.assert_close(p["loss"], ref["loss"], rtol=1e-10, atol=1e-12, msg=label)
        for key in ("grad_a", "grad_b"):
            torch.testing.assert_close(torch.cat([p[key] for p in per_rank]), ref[key], rtol=1e-9, atol=1e-12,
                                       msg=f"{label} {key}")
        for name, table in ref["state"].items():
            assert bool((table != table[0]).any()) or step == 0 or name.startswith("max")
            for r, p in enumerate(per_rank):  # the same table on every rank, the single process's
                torch.testing.assert_close(p["state"][name], table, rtol=1e-12, atol=1e-300,
                                           msg=f"{label} rank {r} {name}")
