"""The memory bank (issue 22): its buffers, XBM against pytorch-metric-learning's
CrossBatchMemory, the MoCo queue mode, and filling from keys gathered over two gloo processes."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
from gloo import run_gloo
from lossatlas import distances as D
from lossatlas import miners as M
from lossatlas import reducers as R
from lossatlas.memory import MemoryBank, MemoryLoss, remove_self_comparisons


# ----------------------------------------------------------------------------- the bank
def test_bank_ring_buffer_order_and_counts() -> None:
    bank = MemoryBank(5, 2)
    assert bank.filled == 0 and bank.contents()[0].shape == (0, 2)
    s1 = bank.enqueue(torch.full((3, 2), 1.0), torch.tensor([1, 2, 3]))
    s2 = bank.enqueue(torch.full((4, 2), 2.0), torch.tensor([4, 5, 6, 7]))
    assert s1.tolist() == [0, 1, 2] and s2.tolist() == [3, 4, 0, 1]
    emb, y = bank.contents()
    assert bank.filled == 5 and y.tolist() == [6, 7, 3, 4, 5]
    assert emb[:, 0].tolist() == [2.0, 2.0, 1.0, 2.0, 2.0]
    assert int(bank.ptr) == 2
    with pytest.raises(ValueError, match="memory of size 5"):
        bank.enqueue(torch.zeros(6, 2), torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="keys"):
        bank.enqueue(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        bank.enqueue(torch.zeros(2, 2), torch.zeros(3, dtype=torch.long))
    bank.reset()
    assert bank.filled == 0 and int(bank.ptr) == 0


def test_bank_state_is_in_buffers() -> None:
    bank = MemoryBank(6, 3)
    bank.enqueue(torch.randn(4, 3), torch.tensor([0, 1, 2, 3]))
    assert {n for n, _ in bank.named_buffers()} == {"embeddings", "labels", "ptr", "count", "next_id"}
    buf = io.BytesIO()
    torch.save(bank.state_dict(), buf)
    buf.seek(0)
    other = MemoryBank(6, 3)
    other.load_state_dict(torch.load(buf))
    for (n, a), (_, b) in zip(bank.named_buffers(), other.named_buffers()):
        assert torch.equal(a, b), n
    other.enqueue(torch.randn(3, 3), torch.tensor([4, 5, 6]))  # the restored pointer continues
    assert other.contents()[1].tolist() == [6, 1, 2, 3, 4, 5]
    wide = MemoryLoss(la.create("supcon"), 6, 3).double()
    assert wide.bank.embeddings.dtype == torch.float64 and wide.bank.labels.dtype == torch.long


def test_remove_self_comparisons() -> None:
    slots = torch.tensor([4, 5])
    a, p, n = remove_self_comparisons((torch.tensor([0, 0, 1]), torch.tensor([4, 2, 2]), torch.tensor([1, 1, 1])), slots)
    assert (a.tolist(), p.tolist(), n.tolist()) == ([0, 1], [2, 2], [1, 1])


def test_wrapper_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mode"):
        MemoryLoss(la.create("supcon"), 8, 2, mode="fifo")
    with pytest.raises(TypeError, match="miner"):
        MemoryLoss(la.create("supcon"), 8, 2, miner="hard")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keys"):
        MemoryLoss(la.create("supcon"), 8, 2, mode="queue")(torch.randn(2, 2))
    with pytest.raises(ValueError, match="labels"):
        MemoryLoss(la.create("supcon"), 8, 2)(torch.randn(2, 2))


# ----------------------------------------------------------------------------- XBM vs PML
pml = pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning import distances as pd  # noqa: E402
from pytorch_metric_learning import losses as pl  # noqa: E402
from pytorch_metric_learning import miners as pm  # noqa: E402
from pytorch_metric_learning import reducers as pr  # noqa: E402

XBM_CASES: list[tuple[str, str, dict[str, Any], Any, dict[str, Any], Any]] = [
    # (name, our id, our kwargs, PML loss, PML kwargs, (our miner, PML miner) or None)
    ("triplet", "triplet_margin", dict(margin=0.2), pl.TripletMarginLoss, dict(margin=0.2), None),
    ("triplet_mined", "triplet_margin", dict(margin=0.2), pl.TripletMarginLoss, dict(margin=0.2),
     (lambda: M.TripletMarginMiner(0.2, "semihard"), lambda: pm.TripletMarginMiner(margin=0.2, type_of_triplets="semihard"))),
    ("contrastive", "contrastive", dict(pos_margin=0.1, neg_margin=1.0), pl.ContrastiveLoss, dict(pos_margin=0.1, neg_margin=1.0), None),
    ("multi_similarity", "multi_similarity", dict(), pl.MultiSimilarityLoss, dict(), None),
    ("multi_similarity_mined", "multi_similarity", dict(), pl.MultiSimilarityLoss, dict(),
     (lambda: M.MultiSimilarityMiner(0.1), lambda: pm.MultiSimilarityMiner(epsilon=0.1))),
    ("supcon", "supcon", dict(temperature=0.1, base_temperature=0.1), pl.SupConLoss, dict(temperature=0.1), None),
    ("ntxent", "ntxent", dict(temperature=0.1), pl.NTXentLoss, dict(temperature=0.1), None),
]


def _steps_equal_pml(ours: Any, theirs: Any, *, seed: int, steps: int, n: int, d: int, classes: int,
                     every_step_has_a_gradient: bool = False) -> None:
    """``steps`` random float64 batches ([n, d], labels < classes) through our memory loss and
    PML's CrossBatchMemory: equal losses, and equal batch gradients wherever PML's loss has a
    graph (at every step if ``every_step_has_a_gradient``; ours may then not leave one unset)."""
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        e = torch.randn(n, d, generator=g, dtype=torch.float64)
        y = torch.randint(0, classes, (n,), generator=g)
        e1, e2 = e.clone().requires_grad_(), e.clone().requires_grad_()
        a, b = ours(e1, y), theirs(e2, y)
        torch.testing.assert_close(a, b.to(a.dtype), rtol=1e-7, atol=1e-10, msg=f"step {step}")
        assert b.requires_grad or not every_step_has_a_gradient, f"step {step}"
        if b.requires_grad:
            a.backward()
            b.backward()
            assert e1.grad is not None or not every_step_has_a_gradient, f"step {step}"
            g1 = e1.grad if e1.grad is not None else torch.zeros_like(e)
            assert e2.grad is not None
            torch.testing.assert_close(g1, e2.grad, rtol=1e-6, atol=1e-9, msg=f"grad step {step}")


@pytest.mark.parametrize("case", XBM_CASES, ids=[c[0] for c in XBM_CASES])
def test_xbm_matches_pml_cross_batch_memory(case: Any) -> None:
    """Four batches through a memory of 20 (it fills and wraps): loss and batch gradient equal PML's."""
    _, our_id, our_kw, pml_cls, pml_kw, miners = case
    ours = MemoryLoss(la.create(our_id, **our_kw), 20, 5, miner=None if miners is None else miners[0]()).double()
    theirs = pl.CrossBatchMemory(pml_cls(**pml_kw), 5, memory_size=20, miner=None if miners is None else miners[1]())
    _steps_equal_pml(ours, theirs, seed=21, steps=4, n=8, d=5, classes=3)
    torch.testing.assert_close(ours.bank.embeddings, theirs.embedding_memory.to(torch.float64))
    assert torch.equal(ours.bank.labels, theirs.label_memory)


def test_xbm_with_distance_and_reducer_matches_pml() -> None:
    """distance × miner × reducer × memory bank, one composed configuration."""
    ours = MemoryLoss(la.create("contrastive", pos_margin=0.9, neg_margin=0.2), 24, 4,
                      miner=M.MultiSimilarityMiner(0.2, distance=D.CosineSimilarity()),
                      distance=D.CosineSimilarity(), reducer=R.MeanReducer()).double()
    theirs = pl.CrossBatchMemory(pl.ContrastiveLoss(pos_margin=0.9, neg_margin=0.2, distance=pd.CosineSimilarity(),
                                                    reducer=pr.MeanReducer()), 4, memory_size=24,
                                 miner=pm.MultiSimilarityMiner(epsilon=0.2, distance=pd.CosineSimilarity()))
    _steps_equal_pml(ours, theirs, seed=4, steps=3, n=10, d=4, classes=4, every_step_has_a_gradient=True)


# ----------------------------------------------------------------------------- the queue mode
def test_queue_mode_is_moco_infonce_over_keys_and_queue() -> None:
    """labels=None: each query's positive is its key; the other keys and the queue are the
    negatives: -log e^{q·k+/τ} / Σ_{k ∈ keys ∪ queue} e^{q·k/τ}; the keys are enqueued after."""
    crit = MemoryLoss(la.create("ntxent", temperature=0.2), 12, 4, mode="queue").double()
    g = torch.Generator().manual_seed(3)
    queue = torch.empty(0, 4, dtype=torch.float64)
    for step in range(3):
        q = torch.randn(4, 4, generator=g, dtype=torch.float64)
        k = torch.randn(4, 4, generator=g, dtype=torch.float64)
        got = crit(q, keys=k)
        ref = F.normalize(torch.cat([k, queue]), dim=1)
        logits = F.normalize(q, dim=1) @ ref.T / 0.2
        expect = F.cross_entropy(logits, torch.arange(4))
        torch.testing.assert_close(got, expect, msg=f"step {step}")
        queue = torch.cat([queue, k])
    assert crit.bank.filled == 12


def test_queue_mode_passes_the_queue_to_mochi() -> None:
    mochi = la.create("mochi", num_hard=4, num_mix=2, num_query_mix=1).double()
    crit = MemoryLoss(mochi, 16, 4, mode="queue").double()
    g = torch.Generator().manual_seed(2)
    first_q, first_k = torch.randn(4, 4, generator=g, dtype=torch.float64), torch.randn(4, 4, generator=g, dtype=torch.float64)
    crit(first_q, keys=first_k)
    q, k = torch.randn(4, 4, generator=g, dtype=torch.float64), torch.randn(4, 4, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    got = crit(q, keys=k)
    torch.manual_seed(0)
    expect = mochi(q, k, queue=first_k)
    torch.testing.assert_close(got, expect)


# ----------------------------------------------------------------------------- two gloo processes
WORLD = 2
SIZES = (5, 3)


def _global_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(9)
    n = sum(SIZES)
    return [(torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)) for _ in range(4)]


def _worker(rank: int) -> list[dict[str, Any]]:
    sl = slice(sum(SIZES[:rank]), sum(SIZES[: rank + 1]))
    xbm = MemoryLoss(la.create("supcon", temperature=0.1), 20, 4, gather=True).double()
    queue = MemoryLoss(la.create("supcon", temperature=0.1), 20, 4, mode="queue", gather=True).double()
    out = []
    for e, y in _global_batches():
        x = e[sl].clone().requires_grad_()
        loss = xbm(x, y[sl])
        loss.backward()
        qloss = queue(e[sl], keys=e[sl].flip(1))
        out.append({"loss": loss.detach(), "grad": x.grad, "qloss": qloss.detach(),
                    "bank": {k: v.clone() for k, v in xbm.bank.state_dict().items()},
                    "qbank": {k: v.clone() for k, v in queue.bank.state_dict().items()}})
    return out


def test_bank_filled_from_gathered_keys_equals_the_single_process_bank(tmp_path: Any) -> None:
    per_rank = run_gloo(_worker, tmp_path, WORLD)
    single = MemoryLoss(la.create("supcon", temperature=0.1), 20, 4).double()
    qsingle = MemoryLoss(la.create("supcon", temperature=0.1), 20, 4, mode="queue").double()
    for step, (e, y) in enumerate(_global_batches()):
        single.bank.enqueue(e, y)  # the bank one process holds after the global batch
        qsingle(e, keys=e.flip(1))
        for rank in range(WORLD):
            got = per_rank[rank][step]
            for k, v in single.bank.state_dict().items():
                assert torch.equal(got["bank"][k], v), (step, rank, k)
            for k, v in qsingle.bank.state_dict().items():
                assert torch.equal(got["qbank"][k], v), (step, rank, "queue", k)
            # each rank's loss is the XBM loss of its own rows against that global memory
            sl = slice(sum(SIZES[:rank]), sum(SIZES[: rank + 1]))
            slots = torch.arange(step * 8, step * 8 + 8)[sl] % 20
            mem, mem_y = single.bank.contents()
            eq = y[sl].unsqueeze(1) == mem_y.unsqueeze(0)
            a1, p = torch.nonzero(eq, as_tuple=True)
            a2, n = torch.nonzero(~eq, as_tuple=True)
            idx = remove_self_comparisons((a1, p, a2, n), slots)
            x = e[sl].clone().requires_grad_()
            ref = la.functional.supcon(x, y[sl], temperature=0.1, indices=idx, ref_emb=mem, ref_labels=mem_y)
            ref.backward()
            torch.testing.assert_close(got["loss"], ref.detach(), msg=f"step {step} rank {rank}")
            torch.testing.assert_close(got["grad"], x.grad, msg=f"grad step {step} rank {rank}")
