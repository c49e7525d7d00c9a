"""H4: DualSampler (LibAUC's sampler with a controlled number of positives per batch).

Expected values are written here from LibAUC's definitions (libauc/sampler/sampler.py):
``num_pos = max(1, int(sampling_rate * batch_size))``, ``num_neg = batch_size - num_pos``
and ``num_batches = max(P // num_pos, M // num_neg)`` (here with the positives' count
rounded up, so that every positive is drawn in every epoch: the documented difference).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lossatlas.samplers import DualSampler


def _labels(n: int, num_pos: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    y = torch.zeros(n, dtype=torch.long)
    y[torch.randperm(n, generator=g)[:num_pos]] = 1
    return y


def _batches(s: DualSampler) -> list[list[int]]:
    idx = list(s)
    assert len(idx) == len(s) and len(idx) % s.batch_size == 0
    return [idx[k : k + s.batch_size] for k in range(0, len(idx), s.batch_size)]


def _libauc_num_pos(rate: float, batch_size: int) -> int:
    n = int(rate * batch_size)
    return 1 if n == 0 else n


CASES = [  # (N, positives, batch_size, sampling_rate)
    (200, 2, 16, 0.5),
    (200, 10, 16, 0.25),
    (101, 7, 10, 0.1),
    (64, 30, 8, 0.3),   # positives plentiful: their count sets the epoch length
    (50, 1, 5, 0.01),   # int(0.05) = 0 -> LibAUC's floor of 1 positive
    (37, 36, 4, 0.5),   # a single negative, cycled
]


@pytest.mark.parametrize(("n", "p", "bs", "rate"), CASES)
def test_every_batch_has_the_requested_positives_and_every_positive_is_drawn(n, p, bs, rate):
    y = _labels(n, p)
    s = DualSampler(y, batch_size=bs, sampling_rate=rate)
    num_pos = _libauc_num_pos(rate, bs)
    num_neg = bs - num_pos
    expected_batches = max(math.ceil(p / num_pos), (n - p) // num_neg, 1)
    assert s.num_pos == num_pos and s.num_batches == expected_batches
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = _batches(s)
        assert len(batches) == expected_batches
        positives = set(torch.nonzero(y).flatten().tolist())
        seen = set()
        for b in batches:
            labels = y[b]
            # the requested ratio up to LibAUC's rounding: exactly num_pos positives, first
            assert int(labels.sum()) == num_pos and labels[:num_pos].tolist() == [1] * num_pos
            assert abs(num_pos / bs - rate) <= 1 / bs or num_pos == 1
            seen |= {i for i in b if int(y[i]) == 1}
        assert seen == positives, f"epoch {epoch}: positives never drawn: {sorted(positives - seen)}"


def test_each_class_is_drawn_once_before_any_is_drawn_twice():
    y = _labels(90, 7)
    s = DualSampler(y, batch_size=6, sampling_rate=0.5)
    flat = torch.tensor(_batches(s))
    pos = flat[:, : s.num_pos].flatten()
    neg = flat[:, s.num_pos :].flatten()
    # cycling: consecutive blocks of P positives (M negatives) are permutations of the class
    for draws, members in ((pos, torch.nonzero(y).flatten()), (neg, torch.nonzero(y == 0).flatten())):
        k = members.numel()
        for start in range(0, draws.numel() - k + 1, k):
            assert sorted(draws[start : start + k].tolist()) == sorted(members.tolist())
    # every negative drawn (M // num_neg batches cover them once, up to the remainder)
    assert len(set(neg.tolist())) == min(83, neg.numel())


def test_multilabel_with_a_chosen_label():
    g = torch.Generator().manual_seed(3)
    y = (torch.rand(120, 4, generator=g) < torch.tensor([0.5, 0.05, 0.2, 0.9])).long()
    for column in range(4):
        s = DualSampler(y, batch_size=10, sampling_rate=0.2, label=column)
        for b in _batches(s):
            assert int(y[b, column].sum()) == 2
        assert set(torch.nonzero(y[:, column]).flatten().tolist()) <= set(list(s))


def test_num_pos_overrides_sampling_rate():
    y = _labels(100, 10)
    s = DualSampler(y, batch_size=8, sampling_rate=0.5, num_pos=3)
    assert s.num_pos == 3 and s.num_neg == 5
    assert all(int(y[b].sum()) == 3 for b in _batches(s))


def test_with_a_dataloader_each_loaded_batch_is_one_of_its_batches():
    y = _labels(60, 4)
    ds = TensorDataset(torch.arange(60), y)
    s = DualSampler(y, batch_size=8, sampling_rate=0.25)
    loaded = list(DataLoader(ds, batch_size=8, sampler=s))
    assert [b[0].tolist() for b in loaded] == _batches(s)
    assert all(int(t.sum()) == 2 for _, t in loaded)


def test_shuffle_false_draws_in_index_order():
    y = torch.tensor([0, 1, 0, 0, 1, 0, 0, 0, 1, 0])
    s = DualSampler(y, batch_size=4, sampling_rate=0.5, shuffle=False)
    # positives 1, 4, 8 cycled in order; negatives 0, 2, 3, 5, 6, 7, 9 likewise; 7 // 2 = 3 batches
    assert _batches(s) == [[1, 4, 0, 2], [8, 1, 3, 5], [4, 8, 6, 7]]


def test_deterministic_by_seed_and_epoch():
    y = _labels(150, 9)
    a, b = DualSampler(y, 12, 0.25, seed=5), DualSampler(y, 12, 0.25, seed=5)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) != first
    a.set_epoch(0)
    assert list(a) == first  # the draw depends on (seed, epoch) only, not on past iterations
    assert list(DualSampler(y, 12, 0.25, seed=6)) != first


@pytest.mark.parametrize("replicas", [2, 3, 4])
def test_replicas_partition_the_epoch(replicas):
    y = _labels(130, 6)
    ranks = [DualSampler(y, 8, 0.25, seed=1, num_replicas=replicas, rank=r) for r in range(replicas)]
    for s in ranks:
        s.set_epoch(2)
    glob = ranks[0].global_batches()
    assert all(torch.equal(s.global_batches(), glob) for s in ranks)  # one draw, the same on every rank
    assert glob.shape[0] % replicas == 0 and glob.shape[0] >= ranks[0].num_batches
    per_rank = [_batches(s) for s in ranks]
    assert len({len(b) for b in per_rank}) == 1  # equal lengths: no rank waits for another
    # rank r has global batches r, r + R, ...: together they are the epoch, each batch once
    interleaved = [per_rank[k % replicas][k // replicas] for k in range(glob.shape[0])]
    assert interleaved == glob.tolist()
    for b in (b for rank in per_rank for b in rank):
        assert int(y[b].sum()) == 2
    drawn = {i for rank in per_rank for b in rank for i in b}
    assert set(torch.nonzero(y).flatten().tolist()) <= drawn


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"sampling_rate": 0.0}, ValueError, "sampling_rate"),
    ({"sampling_rate": 1.0}, ValueError, "sampling_rate"),
    ({"sampling_rate": -0.2}, ValueError, "sampling_rate"),
    ({"sampling_rate": True}, ValueError, "sampling_rate"),
    ({"sampling_rate": "0.5"}, ValueError, "sampling_rate"),
    ({"batch_size": 1}, ValueError, "batch_size"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": 4.0}, ValueError, "batch_size"),
    ({"num_pos": 0}, ValueError, "num_pos"),
    ({"num_pos": 8}, ValueError, "num_pos"),
    ({"label": 0}, ValueError, "label"),
    ({"shuffle": 1}, TypeError, "shuffle"),
    ({"seed": -1}, ValueError, "seed"),
    ({"num_replicas": 2, "rank": 2}, ValueError, "rank"),
])
def test_bad_arguments(kwargs, error, match):
    args = {"labels": _labels(40, 5), "batch_size": 8, **kwargs}
    with pytest.raises(error, match=match):
        DualSampler(**args)


@pytest.mark.parametrize(("labels", "kwargs", "match"), [
    ([0, 1, 2, 1, 0], {}, "0/1"),
    ([0, 0, 0, 0], {}, "no positive"),
    ([1, 1, 1], {}, "no negative"),
    ([], {}, "empty"),
    ([[0, 1], [1, 0], [1, 1]], {}, "label=<column>"),
    ([[0, 1], [1, 0], [1, 1]], {"label": 2}, "label"),
    ([[0, 1], [1, 0], [2, 1]], {"label": 0}, "0/1"),
    ([[[0]], [[1]]], {}, "shape"),
    ([0.0, 1.0, 0.5], {}, "0/1"),
])
def test_bad_labels(labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DualSampler(labels, batch_size=2, **kwargs)
