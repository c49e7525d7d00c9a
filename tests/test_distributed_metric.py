"""Issue 22: the pair, triplet and multi-similarity losses across processes. Two gloo ranks with
uneven shards must give the loss of the concatenated batch and its exact gradient (dense and
tiled, every reduction, with the MS miner and with batch-hard / semi-hard / margin / MS miners
mining across processes), under DDP with gradient accumulation over micro-batches (``no_sync``),
in the cached (GradCache) form, and for a cross-batch memory filled from gathered keys.

The references are one process on the concatenated batch, through the dense forms."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

import lossatlas as la
import lossatlas.functional as LF
from gloo import ddp_accumulate, encoder, run_gloo, shard
from lossatlas.distances import CosineSimilarity
from lossatlas.distributed import cached_backward
from lossatlas.memory import MemoryLoss
from lossatlas.miners import BatchHardMiner, BatchSemiHardMiner, Miner, MultiSimilarityMiner, TripletMarginMiner
from lossatlas.reducers import MeanReducer

WORLD = 2
SIZES = (7, 5)  # uneven shards of one micro-batch
N = sum(SIZES)
D_IN, D = 5, 4
MICRO = 2  # micro-batches accumulated per optimiser step
STEPS = 3  # batches through a memory of 20 rows: it fills and wraps around
RTOL, ATOL = 1e-10, 1e-12  # float64

# (id, kwargs) of the losses on leaf embeddings, each dense and tiled (block_size=3)
CASES: list[tuple[str, dict[str, Any]]] = [
    ("contrastive", {}),
    ("contrastive", {"pos_margin": 0.3, "neg_margin": 0.8}),
    ("contrastive", {"pos_margin": 0.3, "neg_margin": 0.8, "average_nonzero": False}),
    ("contrastive", {"reduction": "sum"}),
    ("contrastive", {"neg_margin": 0.8, "reduction": "none"}),
    ("triplet_margin", {"margin": 0.3}),
    ("triplet_margin", {"margin": 0.3, "average_nonzero": False}),
    ("triplet_margin", {"reduction": "sum"}),
    ("triplet_margin", {"reduction": "none"}),
    ("multi_similarity", {}),
    ("multi_similarity", {"miner_epsilon": 0.1}),
    ("multi_similarity", {"beta": 10.0, "miner_epsilon": 0.3, "reduction": "sum"}),
    ("multi_similarity", {"reduction": "none"}),
]


# (id, kwargs) on shards of N and 0 rows; "mined": with a distributed batch-hard miner's indices
EMPTY_SHARD: list[tuple[str, dict[str, Any]]] = [
    ("contrastive", {"pos_margin": 0.3, "neg_margin": 0.8}),
    ("triplet_margin", {"margin": 0.3}),
    ("triplet_margin", {"margin": 0.3, "mined": True}),
    ("multi_similarity", {"miner_epsilon": 0.1}),
]


def _miner(name: str, distributed: bool) -> Miner:
    """The miners of MINED, one process's (``distributed=False``) or mining across processes."""
    miners: dict[str, Callable[[], Miner]] = {
        "hard_blocks": lambda: BatchHardMiner(block_size=3, distributed=distributed),
        "hard": lambda: BatchHardMiner(distributed=distributed),
        "semihard_blocks": lambda: BatchSemiHardMiner(block_size=2, distributed=distributed),
        "semihard_band": lambda: BatchSemiHardMiner(margin=0.5, distributed=distributed),
        "margin_semihard": lambda: TripletMarginMiner(margin=0.3, type_of_triplets="semihard", distributed=distributed),
        "ms": lambda: MultiSimilarityMiner(0.1, distributed=distributed),
        "ms_euclidean": lambda: MultiSimilarityMiner(0.2, distance="euclidean", distributed=distributed),
    }
    return miners[name]()


# (id, kwargs, miner): a loss given a miner's indices; each dense and tiled
MINED: list[tuple[str, dict[str, Any], str]] = [
    ("triplet_margin", {"margin": 0.3}, "hard_blocks"),
    ("triplet_margin", {"margin": 0.3}, "hard"),
    ("triplet_margin", {}, "semihard_blocks"),
    ("triplet_margin", {"average_nonzero": False}, "semihard_band"),
    ("triplet_margin", {"margin": 0.3}, "margin_semihard"),
    ("triplet_margin", {"margin": 0.3}, "ms"),  # a pair tuple: the triplets sharing an anchor
    ("contrastive", {"pos_margin": 0.3, "neg_margin": 0.8}, "ms"),
    ("contrastive", {}, "hard_blocks"),  # a triplet tuple: its (a, p) and (a, n) pairs
    ("contrastive", {"neg_margin": 0.8, "reduction": "sum"}, "ms_euclidean"),
    ("multi_similarity", {}, "ms"),
    ("multi_similarity", {"reduction": "none"}, "semihard_blocks"),
]

# (id, kwargs, miner or None) trained under DDP and in the cached form
TRAINED: list[tuple[str, dict[str, Any], str | None]] = [
    ("contrastive", {"pos_margin": 0.3, "neg_margin": 0.8}, None),
    ("triplet_margin", {"margin": 0.3}, None),
    ("multi_similarity", {"miner_epsilon": 0.1}, None),
    ("triplet_margin", {"margin": 0.3}, "hard_blocks"),
]


def _xbm(case: int, distributed: bool) -> MemoryLoss:
    """Cross-batch memories (size 20) of the metric losses; ``distributed``: gathered, global loss."""
    kw: dict[str, Any] = {"gather": True, "distributed": True} if distributed else {}
    if case == 0:
        return MemoryLoss(la.create("contrastive", pos_margin=0.2, neg_margin=0.9), 20, D,
                          miner=MultiSimilarityMiner(0.1), **kw).double()
    if case == 1:
        return MemoryLoss(la.create("triplet_margin", margin=0.3), 20, D, miner=BatchHardMiner(), **kw).double()
    if case == 2:
        return MemoryLoss(la.create("multi_similarity"), 20, D, **kw).double()
    if case == 3:  # per-row losses: each process returns its rows'
        return MemoryLoss(la.create("contrastive", reduction="none"), 20, D, **kw).double()
    # the README's composition: cosine contrastive, an MS miner on cosine similarities, a mean reducer
    return MemoryLoss(la.create("contrastive", pos_margin=0.9, neg_margin=0.2), 20, D,
                      miner=MultiSimilarityMiner(0.1, distance=CosineSimilarity()), distance=CosineSimilarity(),
                      reducer=MeanReducer(), **kw).double()


XBM_CASES = 5


def _queue(distributed: bool) -> MemoryLoss:
    kw: dict[str, Any] = {"gather": True, "distributed": True} if distributed else {}
    return MemoryLoss(la.create("supcon", temperature=0.1), 20, D, mode="queue", **kw).double()


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embeddings [N, D] and labels [N] of the leaf cases (classes shared across the shards, a
    class of one row, a row of rank 1 identical to one of rank 0); encoder inputs
    [MICRO, N, D_IN]; labels [MICRO + STEPS, N] of the micro-batches, then of the memory
    batches (:func:`_memory_batches`)."""
    g = torch.Generator().manual_seed(0)
    e = torch.randn(N, D, generator=g, dtype=torch.float64)
    e[9] = e[2]  # identical rows on two processes: distance exactly 0, the same distances to every row
    y = torch.tensor([0, 1, 2, 0, 3, 1, 2, 0, 9, 1, 3, 2])
    x = torch.randn(MICRO, N, D_IN, generator=g, dtype=torch.float64)
    return e, y, x, torch.randint(0, 4, (MICRO + STEPS, N), generator=g)


def _encoder() -> torch.nn.Module:
    return encoder(D_IN, D)


def _shard(rank: int) -> slice:
    return shard(rank, SIZES)


def _fn(id_: str) -> Callable[..., torch.Tensor]:
    fn: Callable[..., torch.Tensor] = getattr(LF, id_)
    return fn


def _leaf(fn: Callable[[torch.Tensor], torch.Tensor], e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss (a [n] loss of "none" is summed for backward) and the gradient of ``e``."""
    el = e.clone().requires_grad_()
    loss = fn(el)
    loss.sum().backward()
    assert el.grad is not None
    return loss.detach(), el.grad


def _step_grads(enc: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in enc.parameters()]


def _worker(rank: int) -> dict[str, Any]:
    e, y, x, ym = _data()
    sl = _shard(rank)
    out: dict[str, Any] = {"leaf": [], "mined": [], "ddp": [], "cached": [], "xbm": []}
    # 1. the functions on leaf embeddings, dense and tiled
    for id_, kw in CASES:
        for tiled in (False, True):
            out["leaf"].append(_leaf(lambda z: _fn(id_)(z, y[sl], distributed=True, tiled=tiled, block_size=3, **kw),
                                     e[sl]))
    # 2. miners mining across processes, their indices into the concatenated batch
    for id_, kw, name in MINED:
        idx = _miner(name, True)(e[sl], y[sl])
        for tiled in (False, True):
            res = _leaf(lambda z: _fn(id_)(z, y[sl], indices=idx, distributed=True, tiled=tiled, block_size=3, **kw),
                        e[sl])
            out["mined"].append((idx, *res))
    # 3. DDP, MICRO micro-batches accumulated with no_sync; 4. the cached (GradCache) form
    for id_, kw, name in TRAINED:
        crit = la.create(id_, tiled=True, block_size=4, distributed=True, **kw)
        miner = None if name is None else _miner(name, True)

        def loss_fn(z: torch.Tensor, m: int, crit: Any = crit, miner: Miner | None = miner) -> torch.Tensor:
            idx = None if miner is None else miner(z, ym[m, sl])
            out_: torch.Tensor = crit(z, ym[m, sl], idx)
            return out_

        out["ddp"].append(ddp_accumulate(_encoder(), lambda ddp, m, f=loss_fn: f(ddp(x[m, sl]), m), MICRO))
        enc = _encoder()
        losses = [cached_backward(lambda z, m=m: loss_fn(z, m), enc, [x[m, sl]], chunk_size=3) for m in range(MICRO)]
        grads = _step_grads(enc)
        for t in grads:
            dist.all_reduce(t)  # the parameters' gradient: every process's chunks
        out["cached"].append((losses, grads))
    # 5. cross-batch memories filled from gathered keys, returning the loss of the global batch
    for case in range(XBM_CASES):
        xbm = _xbm(case, True)
        steps = []
        for s in range(STEPS):
            steps.append(_leaf(lambda z: xbm(z, ym[MICRO + s, sl]), _memory_batches()[s, sl]))
        out["xbm"].append(steps)
    # a MoCo queue of instance ids (the keys: a fixed transform of the queries), SupCon over it
    queue = _queue(True)
    out["queue"] = [_leaf(lambda z: queue(z, keys=_memory_batches()[s, sl].flip(1)), _memory_batches()[s, sl])
                    for s in range(STEPS)]
    # DDP with a memory and no_sync accumulation
    xbm = _xbm(0, True)
    out["xbm_ddp"] = ddp_accumulate(_encoder(), lambda ddp, m: xbm(ddp(x[m, sl]), ym[m, sl]), MICRO)
    # 6. an empty shard: rank 1 has no rows, rank 0 the whole batch
    rows = slice(0, N) if rank == 0 else slice(N, N)
    for id_, kw in EMPTY_SHARD:
        kw = dict(kw)
        idx = BatchHardMiner(block_size=3, distributed=True)(e[rows], y[rows]) if kw.pop("mined", False) else None
        out.setdefault("empty", []).append(
            _leaf(lambda z: _fn(id_)(z, y[rows], indices=idx, distributed=True, tiled=True, block_size=3, **kw),
                  e[rows]))
    # 7. bad input inside a group: anchors of another process
    other = torch.tensor([SIZES[0] if rank == 0 else 0])
    try:
        LF.triplet_margin(e[sl], y[sl], indices=(other, other, other), distributed=True)
    except ValueError as exc:
        out["error"] = str(exc)
    return out


def _memory_batches() -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return torch.randn(STEPS, N, D, generator=g, dtype=torch.float64)


@pytest.fixture(scope="module")
def gathered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    folder: Path = tmp_path_factory.mktemp("dist_metric")
    return run_gloo(_worker, folder, WORLD)


def _assert_global(per_rank: list[tuple[torch.Tensor, torch.Tensor]], ref: torch.Tensor, ref_grad: torch.Tensor,
                   none: bool, msg: str) -> None:
    """Every rank returns the reference loss (``none``: its rows of it), and the ranks'
    gradients, concatenated, are the reference gradient."""
    if none:
        torch.testing.assert_close(torch.cat([p[0] for p in per_rank]), ref, rtol=RTOL, atol=ATOL, msg=msg)
    else:
        for loss, _ in per_rank:
            torch.testing.assert_close(loss, ref, rtol=RTOL, atol=ATOL, msg=msg)
    torch.testing.assert_close(torch.cat([p[1] for p in per_rank]), ref_grad, rtol=RTOL, atol=ATOL, msg=msg)


def test_losses_across_processes_equal_the_concatenated_batch(gathered: list[dict[str, Any]]) -> None:
    e, y, _, _ = _data()
    i = 0
    for id_, kw in CASES:
        ref, ref_grad = _leaf(lambda z: _fn(id_)(z, y, tiled=False, **kw), e)
        for tiled in (False, True):
            _assert_global([g["leaf"][i] for g in gathered], ref, ref_grad, kw.get("reduction") == "none",
                           f"{id_} {kw} tiled={tiled}")
            i += 1


def test_miners_across_processes_mine_the_concatenated_batch(gathered: list[dict[str, Any]]) -> None:
    e, y, _, _ = _data()
    i = 0
    for id_, kw, name in MINED:
        idx = _miner(name, False)(e, y)
        ref, ref_grad = _leaf(lambda z: _fn(id_)(z, y, indices=idx, tiled=False, **kw), e)
        for tiled in (False, True):
            per_rank = [g["mined"][i] for g in gathered]
            msg = f"{id_} {kw} {name} tiled={tiled}"
            assert len(idx[0]) > 0, msg
            for k, want in enumerate(idx):  # the same tuples, anchors split by owner
                assert torch.equal(torch.cat([p[0][k] for p in per_rank]), want), (msg, k)
            _assert_global([p[1:] for p in per_rank], ref, ref_grad, kw.get("reduction") == "none", msg)
            i += 1


def _single_process_step(id_: str, kw: dict[str, Any], name: str | None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One process, the concatenated micro-batches, the dense loss: gradients accumulated, losses."""
    _, _, x, ym = _data()
    enc = _encoder()
    crit = la.create(id_, **kw)
    losses = []
    for m in range(MICRO):
        z = enc(x[m])
        loss = crit(z, ym[m], None if name is None else _miner(name, False)(z, ym[m]))
        loss.backward()
        losses.append(loss.detach())
    return _step_grads(enc), losses


def test_ddp_no_sync_accumulation_and_cached_form_equal_single_process(gathered: list[dict[str, Any]]) -> None:
    for i, (id_, kw, name) in enumerate(TRAINED):
        ref, losses = _single_process_step(id_, kw, name)
        for r in range(WORLD):
            msg = f"{id_} {kw} {name} rank {r}"
            for got, want in zip(gathered[r]["ddp"][i], ref):
                torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL, msg=f"DDP {msg}")
            cached_losses, cached_grads = gathered[r]["cached"][i]
            for got, want in zip(cached_grads, ref):
                torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL, msg=f"cached {msg}")
            for got, want in zip(cached_losses, losses):
                torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL, msg=f"cached loss {msg}")


def test_memory_filled_from_gathered_keys_gives_the_single_process_loss(gathered: list[dict[str, Any]]) -> None:
    _, _, _, ym = _data()
    batches = _memory_batches()
    for case in range(XBM_CASES):
        single = _xbm(case, False)
        for s in range(STEPS):
            ref, ref_grad = _leaf(lambda z: single(z, ym[MICRO + s]), batches[s])
            _assert_global([g["xbm"][case][s] for g in gathered], ref, ref_grad, case == 3, f"memory {case} step {s}")


def test_queue_of_gathered_keys_gives_the_single_process_loss(gathered: list[dict[str, Any]]) -> None:
    batches = _memory_batches()
    single = _queue(False)
    for s in range(STEPS):
        ref, ref_grad = _leaf(lambda z: single(z, keys=batches[s].flip(1)), batches[s])
        _assert_global([g["queue"][s] for g in gathered], ref, ref_grad, False, f"queue step {s}")


def test_ddp_with_a_memory_equals_single_process(gathered: list[dict[str, Any]]) -> None:
    _, _, x, ym = _data()
    enc = _encoder()
    xbm = _xbm(0, False)
    for m in range(MICRO):
        xbm(enc(x[m]), ym[m]).backward()
    for r in range(WORLD):
        for got, want in zip(gathered[r]["xbm_ddp"], _step_grads(enc)):
            torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL, msg=f"rank {r}")


def test_an_empty_shard_is_a_process_without_anchors(gathered: list[dict[str, Any]]) -> None:
    e, y, _, _ = _data()
    for i, (id_, kw) in enumerate(EMPTY_SHARD):
        kw = dict(kw)
        idx = BatchHardMiner()(e, y) if kw.pop("mined", False) else None
        ref, ref_grad = _leaf(lambda z: _fn(id_)(z, y, indices=idx, tiled=False, **kw), e)
        _assert_global([g["empty"][i] for g in gathered], ref, ref_grad, False, f"{id_} {kw} empty shard")
        assert gathered[1]["empty"][i][1].shape == (0, D)


def test_anchors_of_another_process_are_a_clear_error(gathered: list[dict[str, Any]]) -> None:
    for r in range(WORLD):
        msg = gathered[r].get("error", "")
        assert "distributed=True" in msg and "indices[0]" in msg and "this process's rows" in msg, msg


# ----------------------------------------------------------------------------- one process
@pytest.mark.parametrize("id_", ["contrastive", "triplet_margin", "multi_similarity"])
def test_without_a_process_group_distributed_is_one_process(id_: str) -> None:
    e, y, _, _ = _data()
    for tiled in (False, True):
        torch.testing.assert_close(_fn(id_)(e, y, distributed=True, tiled=tiled), _fn(id_)(e, y), rtol=RTOL, atol=ATOL)
    idx = BatchHardMiner(distributed=True)(e, y)
    for k, want in enumerate(BatchHardMiner()(e, y)):
        assert torch.equal(idx[k], want)


def test_distributed_bad_arguments_name_the_argument() -> None:
    e, y, _, _ = _data()
    for id_ in ("contrastive", "triplet_margin", "multi_similarity", "supcon"):
        with pytest.raises(ValueError, match="^distributed=True has no composed form"):
            _fn(id_)(e, y, distributed=True, ref_emb=e, ref_labels=y)
        with pytest.raises(TypeError, match="^distributed must be True or False"):
            la.create(id_, distributed=1)
    with pytest.raises(ValueError, match="^distributed=True mines with the miner's own distances"):
        BatchHardMiner(distance=CosineSimilarity(), distributed=True)
    with pytest.raises(TypeError, match="^distributed must be True or False"):
        BatchSemiHardMiner(distributed="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^distributed=True needs gather=True"):
        MemoryLoss(la.create("contrastive"), 8, D, distributed=True)
    with pytest.raises(ValueError, match="^loss was built with distributed=True"):
        MemoryLoss(la.create("contrastive", distributed=True), 8, D, gather=True)
    with pytest.raises(TypeError, match="^distributed must be True or False"):
        MemoryLoss(la.create("contrastive"), 8, D, gather=True, distributed=1)  # type: ignore[arg-type]
