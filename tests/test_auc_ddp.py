"""Pairwise AUC, MW, AUC-M, multi-label AUC-M and compositional AUC under torch.distributed
(issue 19).

Their pairs and batch means (the positive fraction p, the class means of v2, BCE's mean) are means over
the global batch: with 2 gloo processes and uneven shards (one without positives), every
process returns the single-process loss of the concatenated batch and the single-process
gradients of a, b, alpha, and its own scores get their slice of the single-process gradient.
``reduction='none'`` returns this process's rows of the single-process terms.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import lossatlas as la
from gloo import run_gloo, shard

WORLD = 2
SIZES = (7, 5)  # uneven shards; the second holds no positive
TARGET = torch.tensor([1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0])
ML_TARGET = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0], [0, 1], [1, 0], [0, 0],
                          [0, 0], [0, 1], [0, 0], [0, 0], [0, 0]])

# (id, kwargs, calls): calls > 1 runs a sequence on one object (compositional: CE, AUC, CE)
CASES: list[tuple[str, dict[str, Any], int]] = [
    ("pairwise_auc", {}, 1),
    ("pairwise_auc", {"surrogate": "squared_hinge", "reduction": "none"}, 1),
    ("mw", {"reduction": "sum"}, 1),
    ("aucm", {}, 1),
    ("aucm", {"version": "v2", "margin": 0.7}, 1),
    ("aucm", {"imratio": 0.2}, 1),
    ("aucm", {"reduction": "sum"}, 1),
    ("aucm", {"reduction": "none"}, 1),
    ("multilabel_aucm", {"num_labels": 2}, 1),
    ("multilabel_aucm", {"num_labels": 2, "version": "v2"}, 1),
    ("compositional_auc", {"k": 1}, 3),
    ("compositional_auc", {"k": 1, "version": "v2", "reduction": "none"}, 2),
]


def _inputs(id_: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if id_ == "multilabel_aucm":
        return torch.rand(12, 2, generator=g, dtype=torch.float64), ML_TARGET
    return torch.rand(12, generator=g, dtype=torch.float64), TARGET


def _crit(id_: str, kw: dict[str, Any]) -> torch.nn.Module:
    crit = la.create(id_, **kw).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in crit.parameters():
            p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float64) * 0.5)
    return crit


def _run(id_: str, kw: dict[str, Any], calls: int, rows: slice) -> list[dict[str, torch.Tensor]]:
    crit = _crit(id_, kw)
    scores, target = _inputs(id_)
    out = []
    for call in range(calls):
        s = (scores[rows] * (1.0 - 0.1 * call)).clone().requires_grad_()
        crit.zero_grad()
        loss = crit(s, target[rows])
        loss.sum().backward()
        res = {"loss": loss.detach(), "grad_scores": s.grad}
        for name, p in crit.named_parameters():
            res[f"grad_{name}"] = torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
        out.append(res)
    return out


def _worker(rank: int) -> list[list[dict[str, torch.Tensor]]]:
    return [_run(id_, kw, calls, shard(rank, SIZES)) for id_, kw, calls in CASES]


@pytest.fixture(scope="module")
def gathered(tmp_path_factory: pytest.TempPathFactory) -> list[list[list[dict[str, torch.Tensor]]]]:
    return run_gloo(_worker, tmp_path_factory.mktemp("auc_ddp"), WORLD)


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_two_processes_equal_one_process_on_the_concatenated_batch(gathered, case: int) -> None:
    id_, kw, calls = CASES[case]
    ref = _run(id_, kw, calls, slice(None))
    for call in range(calls):
        per_rank = [gathered[r][case][call] for r in range(WORLD)]
        label = f"{id_} {kw} call {call}"
        if kw.get("reduction") == "none":  # each process: its rows of the single-process terms
            for r in range(WORLD):
                torch.testing.assert_close(per_rank[r]["loss"], ref[call]["loss"][shard(r, SIZES)],
                                           rtol=1e-12, atol=1e-14, msg=label)
        else:
            for r in range(WORLD):
                torch.testing.assert_close(per_rank[r]["loss"], ref[call]["loss"], rtol=1e-12, atol=1e-14, msg=label)
        torch.testing.assert_close(torch.cat([p["grad_scores"] for p in per_rank]), ref[call]["grad_scores"],
                                   rtol=1e-12, atol=1e-14, msg=label)
        for key in (k for k in ref[call] if k.startswith("grad_") and k != "grad_scores"):
            if kw.get("reduction") == "none":  # the local terms' share: the processes' sum is the whole gradient
                torch.testing.assert_close(sum(p[key] for p in per_rank), ref[call][key], rtol=1e-12, atol=1e-14,
                                           msg=f"{label} {key}")
            else:  # every process holds the whole gradient of a, b, alpha
                for r in range(WORLD):
                    torch.testing.assert_close(per_rank[r][key], ref[call][key], rtol=1e-12, atol=1e-14,
                                               msg=f"{label} {key}")


def test_the_batch_statistics_are_global_not_local() -> None:
    # the second shard alone has no positive: its local v1 loss would use p = 0 (and v2 would refuse it)
    scores, target = _inputs("aucm")
    crit = _crit("aucm", {})
    local = crit(scores[7:], target[7:])
    whole = crit(scores, target)
    assert float(local) == 0.0 and float(whole) != 0.0
    with pytest.raises(ValueError, match="version 'v2'"):
        _crit("aucm", {"version": "v2"})(scores[7:], target[7:])
