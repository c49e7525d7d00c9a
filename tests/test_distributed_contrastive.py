"""G10: in-batch negatives across processes. Two gloo ranks with uneven shards must return
the loss of the concatenated batch and the gradient of that loss for their own rows, in the
dense and in the tiled form."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import lossatlas as la
from gloo import run_gloo, shard

WORLD = 2
SIZES = (7, 5)  # uneven shards
D = 6

# (id, kwargs) — every loss that takes distributed=True
CASES: list[tuple[str, dict[str, Any]]] = [
    ("infonce", {"temperature": 0.1}),
    ("infonce", {"temperature": 0.1, "symmetric": False}),
    ("infonce", {"temperature": 0.2, "intra_view_negatives": True}),
    ("infonce", {"learnable": True}),
    ("infonce", {"temperature": 0.1, "labels": True}),
    ("infonce", {"temperature": 0.1, "labels": True, "intra_view_negatives": True}),
    ("siglip", {"learnable": True}),
    ("decoupled_contrastive", {}),
    ("decoupled_contrastive", {"weighted": True}),
    ("debiased_contrastive", {}),
    ("hard_negative_contrastive", {}),
    ("barlow_twins", {}),
]


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(sum(SIZES), D, generator=g, dtype=torch.float64)
    return a, a + 0.6 * torch.randn(sum(SIZES), D, generator=g, dtype=torch.float64)


LABELS = torch.tensor([0, 1, 2, 0, 3, 1, 2, 0, 4, 1, 3, 2])  # classes shared across the shards


def _split(kw: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    kw = dict(kw)
    return kw, bool(kw.pop("labels", False))


def _run(crit: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
    loss = crit(a, b) if labels is None else crit(a, b, labels)
    loss.backward()
    out = {"loss": loss.detach(), "grad_a": a.grad, "grad_b": b.grad}
    for name, p in crit.named_parameters():
        assert p.grad is not None
        out[f"grad_{name}"] = p.grad.detach().clone()
    return out


def _worker(rank: int) -> list[dict[str, torch.Tensor]]:
    a, b = _data()
    sl = shard(rank, SIZES)
    results = []
    for id_, kw in CASES:
        kw, use_labels = _split(kw)
        for tiled in ((False, True) if id_ != "barlow_twins" else (None,)):
            extra = {} if tiled is None else {"tiled": tiled, "block_size": 3}
            crit = la.create(id_, distributed=True, **kw, **extra).double()
            results.append(_run(crit, a[sl], b[sl], LABELS[sl] if use_labels else None))
    return results


@pytest.fixture(scope="module")
def gathered(tmp_path_factory: pytest.TempPathFactory) -> list[list[dict[str, torch.Tensor]]]:
    return run_gloo(_worker, tmp_path_factory.mktemp("dist"), WORLD)


def test_distributed_loss_and_gradients_equal_single_process(gathered: list[list[dict[str, torch.Tensor]]]) -> None:
    a, b = _data()
    i = 0
    for id_, kw in CASES:
        kw, use_labels = _split(kw)
        for tiled in ((False, True) if id_ != "barlow_twins" else (None,)):
            ref = _run(la.create(id_, **kw).double(), a, b, LABELS if use_labels else None)
            per_rank = [gathered[r][i] for r in range(WORLD)]
            label = f"{id_} {kw} tiled={tiled}"
            for r in range(WORLD):
                torch.testing.assert_close(per_rank[r]["loss"], ref["loss"], rtol=1e-10, atol=1e-12, msg=label)
            torch.testing.assert_close(torch.cat([p["grad_a"] for p in per_rank]), ref["grad_a"], rtol=1e-9, atol=1e-12, msg=label)
            torch.testing.assert_close(torch.cat([p["grad_b"] for p in per_rank]), ref["grad_b"], rtol=1e-9, atol=1e-12, msg=label)
            # a learnable temperature / scale sees the local terms on each rank: their sum is the gradient
            for key in (k for k in ref if k.startswith("grad_logit")):
                torch.testing.assert_close(sum(p[key] for p in per_rank), ref[key], rtol=1e-9, atol=1e-12, msg=label)
            i += 1


def test_not_initialised_means_single_process() -> None:
    from lossatlas.distributed import all_gather_with_grad, world_size

    x = torch.randn(3, 2)
    y, off = all_gather_with_grad(x)
    assert y is x and off == 0 and world_size() == 1
    a, b = _data()
    torch.testing.assert_close(la.create("infonce", distributed=True).double()(a, b), la.create("infonce").double()(a, b))
