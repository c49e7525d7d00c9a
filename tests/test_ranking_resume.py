"""Issue 19: a run of a stateful X-risk loss interrupted after k steps and restored from
``state_dict`` (model, loss, optimiser) reaches bit-identical losses to the uninterrupted run.

float64, a small model, SGD with momentum (optimiser state too), per-sample moving averages
that every step revisits. LibAUC keeps these averages in plain tensors outside
``state_dict``: a resumed run restarts them; the last test shows that such a restart changes
the trajectory, so the equality here is not vacuous.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import lossatlas as la

DT = torch.float64
DATA_LEN, D, STEPS, K = 24, 5, 7, 3
LABELS = 3
QUERIES, PAIRS, NUM_POS, NUM_NEG = 6, 4, 2, 3


def _binary_data(multilabel: bool) -> tuple[Tensor, Tensor, list[Tensor]]:
    g = torch.Generator().manual_seed(11)
    x = torch.randn(DATA_LEN, D, generator=g, dtype=DT)
    if multilabel:
        y = (torch.rand(DATA_LEN, LABELS, generator=g) < 0.4).long()
        y[:2] = torch.tensor([[1, 1, 1], [0, 0, 0]])
    else:
        y = (torch.rand(DATA_LEN, generator=g) < 0.35).long()
        y[:2] = torch.tensor([1, 0])
    batches = []
    for _ in range(STEPS):
        rest = torch.randperm(DATA_LEN - 2, generator=g)[:8] + 2
        batches.append(torch.cat([torch.tensor([0, 1]), rest]))  # rows 0, 1: a positive and a negative everywhere
    return x, y, batches


def _ranking_data() -> tuple[Tensor, list[dict[str, Tensor]]]:
    g = torch.Generator().manual_seed(12)
    items = torch.randn(50, D, generator=g, dtype=DT)
    item_of_pair = torch.randperm(50, generator=g)[:QUERIES * PAIRS]  # pair p = (query p % QUERIES, item_of_pair[p])
    rating = torch.randint(1, 5, (QUERIES * PAIRS,), generator=g)
    batches = []
    for _ in range(STEPS):
        q = torch.randperm(QUERIES, generator=g)[:3]
        index = torch.stack([qq + QUERIES * torch.randperm(PAIRS, generator=g)[:NUM_POS] for qq in q])
        neg = torch.randint(0, 50, (3, NUM_NEG), generator=g)
        batches.append({"items": torch.cat([item_of_pair[index], neg], 1), "rating": rating[index], "index": index,
                        "query_index": q, "num_pos_items": torch.full((3,), PAIRS),
                        "ideal_dcg": torch.full((3,), 10.0, dtype=DT)})
    return items, batches


def _case(loss_id: str, kw: dict[str, Any]) -> tuple[Callable[[], nn.Module], Callable[[], Any],
                                                      Callable[[nn.Module, Any, int], Tensor]]:
    """(model factory, loss factory, step loss)."""
    if loss_id in ("ndcg", "listwise_ce"):
        items, rb = _ranking_data()
        sizes = {"data_len": QUERIES * PAIRS, "num_pos": NUM_POS}
        if loss_id == "ndcg":
            sizes.update(num_queries=QUERIES, num_items=50)

        def rank_step(model: nn.Module, crit: Any, t: int) -> Tensor:
            b = rb[t]
            scores = model(items[b["items"]]).squeeze(-1)
            if loss_id == "ndcg":
                return crit(scores, b["rating"], index=b["index"], query_index=b["query_index"],
                            num_pos_items=b["num_pos_items"], ideal_dcg=b["ideal_dcg"])
            return crit(scores, index=b["index"])

        return lambda: nn.Linear(D, 1).double(), lambda: la.create(loss_id, **sizes, **kw).double(), rank_step
    multilabel = loss_id.startswith("multilabel")
    x, y, bb = _binary_data(multilabel)
    sizes = {"data_len": DATA_LEN, **({"num_labels": LABELS} if multilabel else {})}

    def step(model: nn.Module, crit: Any, t: int) -> Tensor:
        idx = bb[t]
        out = torch.sigmoid(model(x[idx]))
        return crit(out if multilabel else out.squeeze(1), y[idx], index=idx)

    return lambda: nn.Linear(D, LABELS if multilabel else 1).double(), lambda: la.create(loss_id, **sizes, **kw).double(), step


CASES: list[tuple[str, dict[str, Any]]] = [
    ("ap_soap", {}),
    ("pauc_cvar", {"beta": 0.5}),
    ("pauc_dro", {}),
    ("tpauc_kl", {"temperature_pos": 0.5}),
    ("multilabel_ap", {"top_k": 2}),
    ("multilabel_pauc", {"mode": "2w"}),
    ("ndcg", {"top_k": 2}),
    ("listwise_ce", {}),
]


def _train(model: nn.Module, crit: Any, opt: torch.optim.Optimizer, step: Callable[[nn.Module, Any, int], Tensor],
           steps: range) -> list[Tensor]:
    losses = []
    for t in steps:
        opt.zero_grad()
        loss = step(model, crit, t)
        loss.backward()
        opt.step()
        losses.append(loss.detach().clone())
    return losses


def _fresh(make_model: Callable[[], nn.Module], make_loss: Callable[[], Any], seed: int
           ) -> tuple[nn.Module, Any, torch.optim.Optimizer]:
    """A new model (initialised under ``seed``), loss and SGD optimiser."""
    torch.manual_seed(seed)
    model, crit = make_model(), make_loss()
    return model, crit, torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)


def _save(*objs: Any) -> bytes:
    buf = io.BytesIO()
    torch.save([o.state_dict() for o in objs], buf)
    return buf.getvalue()


@pytest.mark.parametrize(("loss_id", "kw"), CASES, ids=[c[0] for c in CASES])
def test_resumed_run_is_bit_identical(loss_id: str, kw: dict[str, Any]) -> None:
    make_model, make_loss, step = _case(loss_id, kw)
    model, full_crit, opt = _fresh(make_model, make_loss, 0)
    full = _train(model, full_crit, opt, step, range(STEPS))

    model, crit, opt = _fresh(make_model, make_loss, 0)
    first = _train(model, crit, opt, step, range(K))
    blob = _save(model, crit, opt)

    # fresh objects, another initialisation: everything must come from the checkpoint
    model2, crit2, opt2 = _fresh(make_model, make_loss, 1)
    for obj, state in zip((model2, crit2, opt2), torch.load(io.BytesIO(blob), weights_only=True)):
        obj.load_state_dict(state)
    rest = _train(model2, crit2, opt2, step, range(K, STEPS))
    for t, (a, b) in enumerate(zip(full, first + rest)):
        assert torch.equal(a, b), f"{loss_id} step {t}: {a.item()!r} != {b.item()!r}"
    for name, value in full_crit.state_dict().items():
        assert torch.equal(value, crit2.state_dict()[name]), name


@pytest.mark.parametrize(("loss_id", "kw"), CASES, ids=[c[0] for c in CASES])
def test_restarting_the_state_changes_the_trajectory(loss_id: str, kw: dict[str, Any]) -> None:
    # what LibAUC's resumed run does (its u tables are not in state_dict): model and optimiser restored, loss fresh
    make_model, make_loss, step = _case(loss_id, kw)
    model, crit, opt = _fresh(make_model, make_loss, 0)
    full = _train(model, crit, opt, step, range(STEPS))
    model, crit, opt = _fresh(make_model, make_loss, 0)
    _train(model, crit, opt, step, range(K))
    restarted = _train(model, make_loss(), opt, step, range(K, STEPS))
    assert any(not torch.equal(a, b) for a, b in zip(full[K:], restarted))
