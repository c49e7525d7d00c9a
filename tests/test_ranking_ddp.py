"""Issue 19: the stateful X-risk losses under torch.distributed. Two gloo processes with
uneven shards (one of them, at one step, without a positive) must, at every step of a
sequence that revisits samples,

* return the loss of the concatenated batch (the single-process value),
* hold the same state tables as one process fed the concatenated batches,
* give their own inputs the single-process gradient's slice.

Convention (lossatlas.distributed.gather): every process gathers the global batch
(``gather_batch``), updates the state with it and computes the whole loss;
``"mean"``/``"sum"`` are :func:`~lossatlas.distributed.replicated_loss` (the gradient reaching a
process's rows is the single-process gradient), ``"none"`` returns the process's own rows.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import lossatlas as la
from gloo import run_gloo, shard

WORLD = 2
DT = torch.float64
BIN_SIZES = (7, 5)  # rows per rank (binary / multi-label)
RANK_SIZES = (3, 2)  # queries per rank (ranking)
STEPS = 3
DATA_LEN, LABELS = 40, 3
QUERIES, PAIRS, NUM_POS, NUM_NEG = 8, 4, 2, 3

CASES: list[tuple[str, dict[str, Any]]] = [
    ("ap_soap", {}),
    ("pauc_cvar", {"beta": 0.5}),
    ("pauc_dro", {"temperature": 0.5}),
    ("tpauc_kl", {"temperature_pos": 0.5}),
    ("multilabel_ap", {"top_k": 2}),
    ("multilabel_pauc", {}),
    ("multilabel_pauc", {"mode": "2w"}),
    ("ndcg", {}),
    ("ndcg", {"top_k": 2}),
    ("listwise_ce", {}),
]


def _sizes(loss_id: str) -> dict[str, int]:
    if loss_id == "ndcg":
        return {"data_len": QUERIES * PAIRS, "num_queries": QUERIES, "num_items": 30, "num_pos": NUM_POS}
    if loss_id == "listwise_ce":
        return {"data_len": QUERIES * PAIRS, "num_pos": NUM_POS}
    return {"data_len": DATA_LEN, **({"num_labels": LABELS} if loss_id.startswith("multilabel") else {})}


def _steps(loss_id: str) -> list[tuple[list[torch.Tensor], dict[str, torch.Tensor]]]:
    """Global batches (inputs, call keywords), concatenated in rank order."""
    g = torch.Generator().manual_seed(5)
    out = []
    if loss_id in ("ndcg", "listwise_ce"):
        for _ in range(STEPS):
            b = sum(RANK_SIZES)
            q = torch.randperm(QUERIES, generator=g)[:b]
            index = torch.stack([qq + QUERIES * torch.randperm(PAIRS, generator=g)[:NUM_POS] for qq in q])
            scores = torch.randn(b, NUM_POS + NUM_NEG, generator=g, dtype=DT)
            call = {"index": index}
            inputs = [scores]
            if loss_id == "ndcg":
                inputs.append(torch.randint(1, 5, (b, NUM_POS), generator=g))
                call.update(query_index=q, num_pos_items=torch.full((b,), PAIRS),
                            ideal_dcg=torch.rand(b, generator=g, dtype=DT) * 5 + 5)
            out.append((inputs, call))
        return out
    multi = loss_id.startswith("multilabel")
    table = (torch.rand(DATA_LEN, LABELS, generator=g) < 0.4).long() if multi else (torch.arange(DATA_LEN) % 3 == 0).long()
    n = sum(BIN_SIZES)
    for t in range(STEPS):
        while True:
            idx = torch.randperm(DATA_LEN, generator=g)[:n]
            if t == 1 and not multi:  # rank 1's shard without a positive: the global batch has them
                neg = idx[table[idx] == 0]
                pos = idx[table[idx] == 1]
                if len(neg) >= BIN_SIZES[1] and len(pos) > 0:
                    idx = torch.cat([idx[~torch.isin(idx, neg[:BIN_SIZES[1]])], neg[:BIN_SIZES[1]]])
            y = table[idx]
            counts = y.reshape(n, -1).sum(0)
            if bool(((counts > 0) & (counts < n)).all()):
                break
        z = torch.randn(*y.shape, generator=g, dtype=DT) + y
        out.append(([torch.sigmoid(z), y], {"index": idx}))
    return out


def _slices(loss_id: str) -> list[slice]:
    sizes = RANK_SIZES if loss_id in ("ndcg", "listwise_ce") else BIN_SIZES
    return [shard(r, sizes) for r in range(WORLD)]


#: cases run with every row on rank 0 and an empty shard on rank 1
EMPTY_SHARD_CASES: list[tuple[str, dict[str, Any]]] = [("ap_soap", {}), ("listwise_ce", {})]


def _all_on_rank_0(loss_id: str) -> list[slice]:
    n = sum(RANK_SIZES if loss_id in ("ndcg", "listwise_ce") else BIN_SIZES)
    return [slice(0, n), slice(n, n)]


def _run(loss_id: str, kw: dict[str, Any], part: slice | None) -> list[dict[str, torch.Tensor]]:
    """Each step: value and input gradient of "mean", the "none" rows and the gradient of their
    sum, the state after the step; on ``part`` of every global batch (None: all of it)."""
    mean = la.create(loss_id, **_sizes(loss_id), **kw).double()
    none = la.create(loss_id, **_sizes(loss_id), reduction="none", **kw).double()
    results = []
    for inputs, call in _steps(loss_id):
        sl = part or slice(None)
        local = [t[sl] for t in inputs]
        local_call = {k: v[sl] for k, v in call.items()}
        x = local[0].clone().requires_grad_()
        loss = mean(x, *local[1:], **local_call)
        (grad,) = torch.autograd.grad(loss, x)
        x2 = local[0].clone().requires_grad_()
        rows = none(x2, *local[1:], **local_call)
        (grad_none,) = torch.autograd.grad(rows.sum(), x2)
        state = {k: v.detach().clone() for k, v in mean.state_dict().items()}
        results.append({"loss": loss.detach(), "grad": grad, "none": rows.detach(), "grad_none": grad_none, **state})
    return results


def _worker(rank: int) -> list[list[dict[str, torch.Tensor]]]:
    out = [_run(loss_id, kw, _slices(loss_id)[rank]) for loss_id, kw in CASES]
    return out + [_run(loss_id, kw, _all_on_rank_0(loss_id)[rank]) for loss_id, kw in EMPTY_SHARD_CASES]


@pytest.fixture(scope="module")
def gathered(tmp_path_factory: pytest.TempPathFactory) -> list[list[list[dict[str, torch.Tensor]]]]:
    return run_gloo(_worker, tmp_path_factory.mktemp("ranking_ddp"), WORLD)


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{i}-{kw}" for i, kw in CASES])
def test_two_processes_equal_one_process_on_the_concatenated_batch(
    gathered: list[list[list[dict[str, torch.Tensor]]]], case: int
) -> None:
    loss_id, kw = CASES[case]
    ref = _run(loss_id, kw, None)
    slices = _slices(loss_id)
    for t, want in enumerate(ref):
        label = f"{loss_id} {kw} step {t}"
        for r in range(WORLD):
            got = gathered[r][case][t]
            torch.testing.assert_close(got["loss"], want["loss"], rtol=1e-12, atol=1e-15, msg=label)
            torch.testing.assert_close(got["grad"], want["grad"][slices[r]], rtol=1e-10, atol=1e-14, msg=label)
            torch.testing.assert_close(got["none"], want["none"][slices[r]], rtol=1e-12, atol=1e-15, msg=label)
            torch.testing.assert_close(got["grad_none"], want["grad_none"][slices[r]], rtol=1e-10, atol=1e-14, msg=label)
            for key in want:
                if key not in ("loss", "grad", "none", "grad_none"):  # every state table, on both ranks
                    torch.testing.assert_close(got[key], want[key], rtol=1e-12, atol=1e-15, msg=f"{label} {key}")


def test_a_local_shard_without_a_positive_is_allowed(gathered: list[list[list[dict[str, torch.Tensor]]]]) -> None:
    # step 1 of the binary cases gives rank 1 only negatives: the check is on the global batch
    _, call = _steps("ap_soap")[1]
    y = _steps("ap_soap")[1][0][1]
    assert int(y[_slices("ap_soap")[1]].sum()) == 0 and int(y.sum()) > 0
    assert torch.isfinite(gathered[1][0][1]["loss"])
    assert call["index"].shape == (sum(BIN_SIZES),)


@pytest.mark.parametrize("case", range(len(EMPTY_SHARD_CASES)), ids=[i for i, _ in EMPTY_SHARD_CASES])
def test_an_empty_shard(gathered: list[list[list[dict[str, torch.Tensor]]]], case: int) -> None:
    # rank 1 brings no rows: both ranks still return the global loss, rank 0's rows get the whole gradient
    loss_id, kw = EMPTY_SHARD_CASES[case]
    ref = _run(loss_id, kw, None)
    for t, want in enumerate(ref):
        for r in range(WORLD):
            got = gathered[r][len(CASES) + case][t]
            torch.testing.assert_close(got["loss"], want["loss"], rtol=1e-12, atol=1e-15)
            torch.testing.assert_close(got["grad"], want["grad"][_all_on_rank_0(loss_id)[r]], rtol=1e-10, atol=1e-14)
            assert got["none"].shape[0] == (want["none"].shape[0] if r == 0 else 0)
