"""Conformance of every registered ``negatives`` id (catalogue G11), from the registry.

Nothing here names an id. A ``negatives`` entry follows one of three protocols, each checked
for all of its ids: a corpus miner (:class:`lossatlas.negatives.NegativeMiner`: ``mine(index,
query_emb, positives)`` and ``step(index)``), GISTEmbed's in-batch selector (``mask`` and
``loss``), or a batch sampler over item embeddings (NGAME). A new id that follows none of
them fails :func:`test_every_negatives_id_follows_a_checked_protocol`.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch.utils.data import Sampler

import lossatlas as la
from lossatlas.negatives import CorpusIndex, GISTSelector, NegativeMiner

ENTRIES = la.list(kind="negatives")
MINERS = sorted(e.id for e in ENTRIES if issubclass(e.cls, NegativeMiner))
SELECTORS = sorted(e.id for e in ENTRIES if issubclass(e.cls, GISTSelector))
SAMPLERS = sorted(e.id for e in ENTRIES if issubclass(e.cls, Sampler))
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
C, D, Q, NUM = 60, 8, 5, 4


def test_every_negatives_id_follows_a_checked_protocol() -> None:
    assert len(ENTRIES) >= 6
    assert {e.catalogue for e in ENTRIES} == {"G11"}
    unchecked = sorted({e.id for e in ENTRIES} - set(MINERS) - set(SELECTORS) - set(SAMPLERS))
    assert not unchecked, f"negatives ids without conformance checks: {unchecked}"


def _miner(id_: str, **kw: Any) -> NegativeMiner:
    entry = la.info(id_)
    args: dict[str, Any] = {"num": NUM}
    if "depth" in entry.parameters:
        args["depth"] = 20
    args.update(kw)
    return la.create(id_, **args)  # type: ignore[return-value]


def _index(device: str = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0) -> CorpusIndex:
    g = torch.Generator().manual_seed(seed)
    corpus = torch.randn(C, D, generator=g, dtype=torch.float64).to(device, dtype)
    return CorpusIndex(lambda x: x, corpus)


def _queries(device: str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    q = torch.randn(Q, D, generator=g, dtype=torch.float64).to(device, dtype)
    pos = torch.tensor([[0, 7], [1, -1], [2, 3], [10, 11], [4, -1]], device=device)
    return q, pos


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("id_", MINERS)
def test_mined_ids_are_distinct_non_positive_corpus_ids(id_: str, device: str) -> None:
    index = _index(device)
    q, pos = _queries(device)
    ids = _miner(id_).mine(index, q, pos)
    assert ids.shape == (Q, NUM) and ids.dtype == torch.long and ids.device.type == device
    for row, p in zip(ids.tolist(), pos.tolist()):
        real = [i for i in row if i >= 0]
        assert len(real) == NUM, f"{id_}: a {C}-item corpus has {NUM} negatives for every query"
        assert len(set(real)) == len(real) and all(0 <= i < C for i in real)
        assert not set(real) & set(p), f"{id_}: a positive was mined as a negative"


@pytest.mark.parametrize("id_", MINERS)
def test_deterministic_under_a_seed_and_the_seed_matters(id_: str) -> None:
    index = _index()
    q, pos = _queries()
    a, b = _miner(id_), _miner(id_)
    first = [a.mine(index, q, pos) for _ in range(3)]
    assert all(torch.equal(x, b.mine(index, q, pos)) for x in first)
    if "seed" in la.info(id_).parameters:  # a sampling miner: another seed draws other negatives
        other = _miner(id_, seed=1)
        assert any(not torch.equal(x, other.mine(index, q, pos)) for x in first)
        assert any(not torch.equal(first[0], x) for x in first[1:]), f"{id_}: every call drew the same ids"
    else:  # a deterministic one: every call is the same
        assert all(torch.equal(first[0], x) for x in first[1:])


@pytest.mark.parametrize("id_", MINERS)
def test_state_dict_round_trip_resumes_the_draws(id_: str) -> None:
    index = _index()
    q, pos = _queries()
    a = _miner(id_)
    a.mine(index, q, pos)
    a.step(index)
    state = copy.deepcopy(a.state_dict())
    expected = a.mine(index, q, pos)
    b = _miner(id_)
    b.load_state_dict(state)
    assert b.steps == 1
    assert torch.equal(b.mine(index, q, pos), expected)
    # the index's own state: embeddings and counters
    other = _index(seed=5)
    other.load_state_dict(copy.deepcopy(index.state_dict()))
    assert torch.equal(other.embeddings, index.embeddings) and other.steps == index.steps
    assert torch.equal(_miner(id_).mine(other, q, pos), _miner(id_).mine(index, q, pos))


@pytest.mark.parametrize("id_", MINERS)
def test_step_refreshes_the_index_every_refresh_every_steps(id_: str) -> None:
    calls = []

    def encode(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return x * (1 + len(calls))

    index = CorpusIndex(encode, torch.randn(C, D))
    if "refresh_every" not in la.info(id_).parameters:
        miner = _miner(id_)
        assert [miner.step(index) for _ in range(5)] == [False] * 5 and index.refreshes == 0
        return
    miner = _miner(id_, refresh_every=3)
    assert [miner.step(index) for _ in range(7)] == [False, False, True, False, False, True, False]
    assert index.refreshes == 2 and len(calls) == 3
    never = _miner(id_, refresh_every=None)
    assert not any(never.step(index) for _ in range(5)) and index.refreshes == 2


@pytest.mark.parametrize("id_", MINERS)
def test_dtypes_give_the_same_negatives(id_: str) -> None:
    q, pos = _queries()
    ref = _miner(id_).mine(_index(dtype=torch.float64), q.double(), pos)
    for dt in (torch.float32, torch.float64):
        # float32 queries against a float64 index and the reverse: cast to the index's dtype
        assert torch.equal(_miner(id_).mine(_index(dtype=torch.float64), q.to(dt), pos), ref)
    low = _miner(id_).mine(_index(dtype=torch.float32), q, pos)
    assert low.shape == ref.shape and low.dtype == torch.long
    if "seed" not in la.info(id_).parameters:  # deterministic: float32 scores rank these items alike
        assert torch.equal(low, ref)


@pytest.mark.parametrize("id_", MINERS)
def test_bad_input_names_the_argument(id_: str) -> None:
    index = _index()
    q, pos = _queries()
    miner = _miner(id_)
    with pytest.raises(ValueError, match="query_emb"):
        miner.mine(index, q[:, :3], pos)
    with pytest.raises(TypeError, match="query_emb"):
        miner.mine(index, q.long(), pos)
    with pytest.raises(ValueError, match="positives"):
        miner.mine(index, q, pos[:2])
    with pytest.raises(TypeError, match="positives"):
        miner.mine(index, q, pos.float())
    with pytest.raises(TypeError, match="index"):
        miner.mine(index.embeddings, q, pos)  # type: ignore[arg-type]
    entry = la.info(id_)
    for name in ("num", "depth", "refresh_every"):
        if name in entry.parameters:
            with pytest.raises(ValueError, match=name):
                _miner(id_, **{name: 0})
    if "seed" in entry.parameters:
        with pytest.raises(ValueError, match="seed"):
            _miner(id_, seed=-1)
    assert type(miner).__name__ in repr(miner)


@pytest.mark.parametrize("id_", SELECTORS)
def test_selector_mask_loss_dtypes_and_bad_input(id_: str) -> None:
    sel = la.create(id_)
    g = torch.Generator().manual_seed(0)
    q, d = torch.randn(6, D, generator=g, dtype=torch.float64), torch.randn(6, D, generator=g, dtype=torch.float64)
    gq, gd = q + 0.1 * torch.randn(6, D, generator=g, dtype=torch.float64), d.clone()
    m = sel.mask(gq, gd)
    assert m.shape == (6, 6) and m.dtype == torch.bool and not m.diagonal().any()
    assert torch.equal(sel.mask(gq.float(), gd.float()), m)
    assert torch.equal(sel.mask(gq, gd), m)  # deterministic, no state
    loss = sel.loss(q.requires_grad_(), d, gq, gd)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
    assert sel.loss(q.detach().float(), d.float(), gq.float(), gd.float()).dtype == torch.float32
    with pytest.raises(ValueError, match="guide_docs"):
        sel.mask(gq, gd[:, :3])
    with pytest.raises(TypeError, match="guide_queries"):
        sel.mask(gq.long(), gd)
    with pytest.raises(ValueError, match="margin_strategy"):
        la.create(id_, margin_strategy="percent")
    with pytest.raises(ValueError, match="temperature"):
        la.create(id_, temperature=0.0)


def _sampler(id_: str, emb: torch.Tensor, **kw: Any) -> Any:
    args: dict[str, Any] = {"embeddings": emb, "batch_size": 8, "cluster_size": 4, "doubling_epochs": ()}
    args.update(kw)
    return la.create(id_, **args)


def _emb(n: int = 40, device: str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(10, D, generator=g, dtype=torch.float64)
    return (centres.repeat_interleave(4, 0)[:n] + 0.01 * torch.randn(n, D, generator=g, dtype=torch.float64)).to(device, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("id_", SAMPLERS)
def test_sampler_every_item_once_deterministic_and_seeded(id_: str, device: str) -> None:
    emb = _emb(device=device)
    s = _sampler(id_, emb)
    batches = list(s)
    assert len(batches) == len(s) and all(isinstance(i, int) for b in batches for i in b)
    assert sorted(i for b in batches for i in b) == list(range(40))
    assert list(_sampler(id_, emb)) == batches
    s.set_epoch(1)
    assert list(s) != batches
    assert list(_sampler(id_, emb, seed=7)) != batches


@pytest.mark.parametrize("id_", SAMPLERS)
def test_sampler_state_dict_round_trip_and_dtypes(id_: str) -> None:
    a = _sampler(id_, _emb())
    a.update(_emb() + 0.5)
    a.set_epoch(3)
    b = _sampler(id_, _emb(dtype=torch.float64) * 2.0)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert list(b) == list(a) and b.epoch == 3
    # float64 embeddings of the same items give the same batches as float32 ones (clear clusters)
    assert list(_sampler(id_, _emb(dtype=torch.float64))) == list(_sampler(id_, _emb()))


@pytest.mark.parametrize("id_", SAMPLERS)
def test_sampler_bad_input_names_the_argument(id_: str) -> None:
    emb = _emb()
    for kw, name in (({"batch_size": 0}, "batch_size"), ({"cluster_size": 0}, "cluster_size"), ({"seed": -1}, "seed"),
                     ({"doubling_epochs": (-1,)}, "doubling_epochs"), ({"num_replicas": 2, "rank": 2}, "rank")):
        with pytest.raises(ValueError, match=name):
            _sampler(id_, emb, **kw)
    with pytest.raises(ValueError, match="embeddings"):
        _sampler(id_, emb[0])
    with pytest.raises(TypeError, match="embeddings"):
        _sampler(id_, emb.long())
    with pytest.raises(ValueError, match="embeddings"):
        _sampler(id_, emb).update(emb[:3])
    with pytest.raises(ValueError, match="epoch"):
        _sampler(id_, emb).set_epoch(-1)
