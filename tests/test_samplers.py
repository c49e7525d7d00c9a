"""Samplers (I1–I4): realised class frequencies, determinism, distributed shares."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import lossatlas as la
from lossatlas.samplers import (
    ClassBalancedSampler,
    ClassDifficultySampler,
    PKBatchSampler,
    ProgressivelyBalancedSampler,
    SquareRootSampler,
)

# 4 classes, long tail 60 / 25 / 10 / 3
LABELS = np.repeat(np.arange(4), [60, 25, 10, 3])
COUNTS = np.bincount(LABELS)


def class_freq(indices, labels=LABELS):
    return np.bincount(labels[np.asarray(list(indices), dtype=np.int64)], minlength=labels.max() + 1)


def assert_exact_allocation(freq, probs, total):
    expected = np.asarray(probs, dtype=np.float64) * total
    assert freq.sum() == total
    assert (freq >= np.floor(expected - 1e-9)).all() and (freq <= np.ceil(expected + 1e-9)).all(), (freq, expected)


@pytest.mark.parametrize("epoch", [0, 1, 5])
def test_class_balanced_exact_counts_per_epoch(epoch):
    s = ClassBalancedSampler(LABELS, num_samples=400, seed=3)
    s.set_epoch(epoch)
    assert_exact_allocation(class_freq(s), [0.25] * 4, 400)
    assert len(s) == 400


def test_square_root_exact_counts_and_probabilities():
    s = SquareRootSampler(LABELS, seed=1)
    p = np.sqrt(COUNTS) / np.sqrt(COUNTS).sum()
    np.testing.assert_allclose(s.class_probabilities().numpy(), p, rtol=1e-12)
    assert_exact_allocation(class_freq(s), p, len(LABELS))


def test_progressive_interpolates_instance_to_class_balanced():
    s = ProgressivelyBalancedSampler(LABELS, num_epochs=4, seed=0)
    # epoch 0 is instance-balanced: with num_samples = N each sample exactly once
    assert sorted(s) == list(range(len(LABELS)))
    s.set_epoch(2)
    p = 0.5 * COUNTS / COUNTS.sum() + 0.5 * 0.25
    np.testing.assert_allclose(s.class_probabilities().numpy(), p, rtol=1e-12)
    assert_exact_allocation(class_freq(s), p, len(LABELS))
    s.set_epoch(9)  # clamped at T: class-balanced
    np.testing.assert_allclose(s.class_probabilities().numpy(), [0.25] * 4)


def test_class_balanced_chi_square_over_epochs():
    s = ClassBalancedSampler(LABELS, num_samples=98, seed=0, num_replicas=2, rank=1)
    freq = np.zeros(4)
    for e in range(20):  # one rank's share is balanced in distribution, not exactly
        s.set_epoch(e)
        freq += class_freq(s)
    expected = freq.sum() / 4
    stat = ((freq - expected) ** 2 / expected).sum()
    assert stat < 16.27  # chi-square, 3 degrees of freedom, p = 0.001


def test_within_class_cycling_coverage():
    s = ClassBalancedSampler(LABELS, num_samples=400, seed=0)
    idx = list(s)
    c = Counter(idx)
    tail = np.flatnonzero(LABELS == 3)
    tail_counts = [c[i] for i in tail]  # 100 draws over 3 samples: 33 or 34 each
    assert max(tail_counts) - min(tail_counts) <= 1
    head = [i for i in idx if LABELS[i] == 0]
    assert len(head) == 100 and len(set(head)) == 60  # every head sample once before any repeats
    assert max(Counter(head).values()) - min(Counter(head).values()) <= 1


@pytest.mark.parametrize("cls", [ClassBalancedSampler, SquareRootSampler, ClassDifficultySampler])
def test_determinism_by_seed_and_epoch(cls):
    a, b = cls(LABELS, seed=7), cls(LABELS, seed=7)
    assert list(a) == list(b)
    assert list(a) == list(a)  # iterating again gives the same epoch
    a.set_epoch(1)
    assert list(a) != list(b)
    assert list(cls(LABELS, seed=8)) != list(b)


@pytest.mark.parametrize("num_samples,replicas", [(98, 3), (100, 4), (7, 5)])
def test_distributed_shares_are_disjoint_and_cover_the_global_draw(num_samples, replicas):
    ranks = [ClassBalancedSampler(LABELS, num_samples=num_samples, seed=2, num_replicas=replicas, rank=r) for r in range(replicas)]
    for s in ranks:
        s.set_epoch(3)
    per_rank = [list(s) for s in ranks]
    total = math.ceil(num_samples / replicas) * replicas
    assert all(len(p) == len(s) == total // replicas for p, s in zip(per_rank, ranks))
    glob = ranks[0].global_indices().tolist()
    assert all(s.global_indices().tolist() == glob for s in ranks[1:])  # every rank agrees
    # rank r owns positions r, r+R, ...: the shares partition the global draw
    interleaved = [per_rank[r][i] for i in range(total // replicas) for r in range(replicas)]
    assert interleaved == glob
    assert_exact_allocation(class_freq(glob), [0.25] * 4, total)


def test_dataloader_integration():
    ds = TensorDataset(torch.arange(len(LABELS)), torch.as_tensor(LABELS))
    s = ClassBalancedSampler(LABELS, num_samples=64, seed=0)
    seen = torch.cat([y for _, y in DataLoader(ds, batch_size=16, sampler=s)])
    assert seen.numel() == 64 and torch.bincount(seen).tolist() == [16, 16, 16, 16]


def test_class_difficulty_sampler():
    s = ClassDifficultySampler(LABELS, tau=1.0, seed=0)
    np.testing.assert_allclose(s.class_probabilities().numpy(), COUNTS / COUNTS.sum())
    acc = [0.9, 0.7, 0.4, 1.0]
    s.update(acc)
    d = 1 - np.array(acc)
    np.testing.assert_allclose(s.class_probabilities().numpy(), d / d.sum(), rtol=1e-12)
    freq = class_freq(s)
    assert_exact_allocation(freq, d / d.sum(), len(LABELS))
    assert freq[3] == 0  # a perfectly classified class is not drawn
    dyn = ClassDifficultySampler(LABELS)
    dyn.update(acc)
    w = la.weighting.class_difficulty_weights(acc, "dynamic").numpy()
    np.testing.assert_allclose(dyn.class_probabilities().numpy(), w / w.sum(), rtol=1e-12)
    with pytest.raises(ValueError, match="4 classes"):
        s.update([0.5, 0.5])


# -------------------------------------------------------------------------- P x K

PK_LABELS = np.repeat(np.arange(6), [12, 9, 7, 5, 4, 2])


def test_pk_batches_have_p_classes_times_k_samples():
    s = PKBatchSampler(PK_LABELS, p=3, k=4, num_batches=20, seed=0)
    assert len(s) == 20 and s.batch_size == 12
    class_visits = Counter()
    for batch in s:
        assert len(batch) == 12
        ys = PK_LABELS[batch]
        blocks = [ys[i : i + 4] for i in range(0, 12, 4)]
        assert all((b == b[0]).all() for b in blocks)
        classes = [int(b[0]) for b in blocks]
        assert len(set(classes)) == 3
        class_visits.update(classes)
        for c, i in zip(classes, range(0, 12, 4)):
            if (PK_LABELS == c).sum() >= 4:  # distinct samples when the class has K of them
                assert len(set(batch[i : i + 4])) == 4
    assert max(class_visits.values()) - min(class_visits.values()) <= 2  # classes visited evenly


def test_pk_determinism_and_epochs():
    a, b = PKBatchSampler(PK_LABELS, 2, 2, seed=1), PKBatchSampler(PK_LABELS, 2, 2, seed=1)
    assert list(a) == list(b) and len(a) == len(PK_LABELS) // 4
    b.set_epoch(1)
    assert list(a) != list(b)


def test_pk_distributed_ranks_get_disjoint_batches():
    ranks = [PKBatchSampler(PK_LABELS, 2, 3, num_batches=7, seed=4, num_replicas=3, rank=r) for r in range(3)]
    glob = ranks[0].global_batches()
    assert len(glob) == 9
    per_rank = [list(s) for s in ranks]
    assert all(len(p) == 3 for p in per_rank)
    assert [per_rank[r][i] for i in range(3) for r in range(3)] == glob


def test_pk_dataloader_and_errors():
    ds = TensorDataset(torch.as_tensor(PK_LABELS))
    batches = list(DataLoader(ds, batch_sampler=PKBatchSampler(PK_LABELS, 2, 2, num_batches=3)))
    assert len(batches) == 3 and all(b[0].numel() == 4 for b in batches)
    with pytest.raises(ValueError, match="lower p"):
        PKBatchSampler(PK_LABELS, p=7, k=2)
    with pytest.raises(ValueError, match="k must be"):
        PKBatchSampler(PK_LABELS, p=2, k=0)


# ------------------------------------------------------------------ shared checks


def test_bad_inputs():
    with pytest.raises(TypeError, match="integer class ids"):
        ClassBalancedSampler([0.5, 1.0])
    with pytest.raises(ValueError, match="non-negative"):
        ClassBalancedSampler([0, -1])
    with pytest.raises(ValueError, match="empty"):
        ClassBalancedSampler([])
    with pytest.raises(ValueError, match="rank"):
        ClassBalancedSampler(LABELS, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_samples"):
        ClassBalancedSampler(LABELS, num_samples=0)
    with pytest.raises(ValueError, match="epoch"):
        ClassBalancedSampler(LABELS).set_epoch(-1)
    with pytest.raises(ValueError, match="num_epochs"):
        ProgressivelyBalancedSampler(LABELS, num_epochs=0)


def test_missing_class_ids_and_single_class():
    labels = np.array([0, 0, 2, 2, 2, 2])  # class 1 absent
    freq = class_freq(ClassBalancedSampler(labels, num_samples=10), labels)
    assert freq.tolist() == [5, 0, 5]
    assert sorted(ClassBalancedSampler([3, 3, 3])) == [0, 1, 2]


def test_registered_with_kind_sampler():
    ids = {e.id for e in la.list(kind="sampler")}
    assert {"class_balanced_sampler", "square_root_sampler", "progressively_balanced_sampler",
            "class_difficulty_sampler", "pk_sampler"} <= ids
    s = la.create("pk_sampler", labels=PK_LABELS, p=2, k=2)
    assert isinstance(s, PKBatchSampler)
