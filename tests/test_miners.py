"""Miners (F1, F2): agreement with pytorch-metric-learning, the mining rules, and the loss interface."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import lossatlas as la
from lossatlas.miners import BatchHardMiner, BatchSemiHardMiner, MultiSimilarityMiner, TripletMarginMiner


def _batch(n: int = 24, d: int = 8, c: int = 5, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, c, (n,), generator=g)


def _set(t: Sequence[Tensor]) -> set[tuple[int, ...]]:
    return set(zip(*[x.tolist() for x in t]))


@pytest.fixture(scope="module")
def pml_miners() -> Any:
    module: Any = pytest.importorskip("pytorch_metric_learning.miners")  # no type information: Any
    return module


@pytest.mark.parametrize("seed", [0, 1])
def test_batch_hard_matches_pml(pml_miners: Any, seed: int) -> None:
    e, y = _batch(seed=seed)
    assert _set(BatchHardMiner()(e, y)) == _set(pml_miners.BatchHardMiner()(e, y))


@pytest.mark.parametrize("kind", ["all", "hard", "semihard", "easy"])
def test_triplet_margin_miner_matches_pml(pml_miners: Any, kind: str) -> None:
    e, y = _batch(n=16, seed=2)
    ours = TripletMarginMiner(margin=0.2, type_of_triplets=kind)(e, y)
    assert len(ours) == 3 and ours[0].numel() > 0
    assert _set(ours) == _set(pml_miners.TripletMarginMiner(margin=0.2, type_of_triplets=kind)(e, y))


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_multi_similarity_miner_matches_pml(pml_miners: Any, eps: float) -> None:
    e, y = _batch(seed=3)
    ours = MultiSimilarityMiner(epsilon=eps)(e, y)
    ref = pml_miners.MultiSimilarityMiner(epsilon=eps)(e, y)
    assert _set(ours[:2]) == _set(ref[:2]) and _set(ours[2:]) == _set(ref[2:])


def test_batch_hard_rule() -> None:
    e, y = _batch(n=12, c=3, seed=4)
    a, p, n = BatchHardMiner()(e, y)
    d = torch.cdist(F.normalize(e), F.normalize(e))
    for i, j, k in zip(a.tolist(), p.tolist(), n.tolist()):
        same = (y == y[i]) & (torch.arange(12) != i)
        assert y[j] == y[i] and j != i and y[k] != y[i]
        assert d[i, j] == d[i][same].max() and d[i, k] == d[i][y != y[i]].min()
    # cosine distance picks the same hardest pairs on unit vectors (monotone transform)
    assert _set(BatchHardMiner(distance="cosine")(e, y)) == _set((a, p, n))


def test_semi_hard_rule_and_fallback() -> None:
    e, y = _batch(n=12, c=3, seed=5)
    a, p, n = BatchSemiHardMiner()(e, y)
    d = torch.cdist(F.normalize(e), F.normalize(e))
    pos = (y[:, None] == y[None]) & ~torch.eye(12, dtype=torch.bool)
    assert a.numel() == int(pos.sum())  # one triplet per positive pair
    for i, j, k in zip(a.tolist(), p.tolist(), n.tolist()):
        negs = d[i][y != y[i]]
        farther = negs[negs > d[i, j]]
        expected = farther.min() if farther.numel() else negs.max()
        assert d[i, k] == expected
    # with a margin band the chosen negative is inside it whenever one exists
    a, p, n = BatchSemiHardMiner(margin=0.1)(e, y)
    for i, j, k in zip(a.tolist(), p.tolist(), n.tolist()):
        negs = d[i][y != y[i]]
        if bool(((negs > d[i, j]) & (negs < d[i, j] + 0.1)).any()):
            assert d[i, j] < d[i, k] < d[i, j] + 0.1


def test_miners_run_without_gradient_and_handle_degenerate_batches() -> None:
    e, y = _batch(n=8, c=2)
    e.requires_grad_()
    for miner in (BatchHardMiner(), BatchSemiHardMiner(), TripletMarginMiner(), MultiSimilarityMiner()):
        out = miner(e, y)
        assert all(t.dtype == torch.long and not t.requires_grad for t in out)
        # no positive pair (all labels distinct) and one class (no negative): nothing to mine
        for labels in (torch.arange(8), torch.zeros(8, dtype=torch.long)):
            assert all(t.numel() == 0 for t in miner(e, labels)), type(miner).__name__
        assert all(t.numel() == 0 for t in miner(e[:0], y[:0]))


@pytest.mark.parametrize("id_", ["contrastive", "triplet_margin", "multi_similarity", "supcon", "ntxent", "threshold_consistent_margin"])
def test_every_pair_loss_accepts_triplet_and_pair_tuples(id_: str) -> None:
    e, y = _batch(n=12, c=3, seed=6)
    crit = la.create(id_)
    for miner in (BatchHardMiner(), MultiSimilarityMiner(0.1), TripletMarginMiner(0.2, "semihard")):
        idx = miner(e, y)
        er = e.clone().requires_grad_()
        out = crit(er, y, indices=idx)
        (g,) = torch.autograd.grad(out, er)
        assert torch.isfinite(out) and torch.isfinite(g).all()
    # empty mined tuples: loss 0 with a zero gradient
    empty = MultiSimilarityMiner()(e, torch.arange(12))
    er = e.clone().requires_grad_()
    out = crit(er, y, indices=empty)
    assert out.item() == 0.0
    (g,) = torch.autograd.grad(out, er, allow_unused=True)
    assert g is None or torch.count_nonzero(g) == 0


def test_mined_pairs_restrict_the_loss() -> None:
    e, y = _batch(n=12, c=3, seed=7)
    a, p, n = BatchHardMiner()(e, y)
    # the triplet tuple as pairs: (a, p) positives and (a, n) negatives
    c1 = la.create("contrastive")(e, y, indices=(a, p, n))
    c2 = la.create("contrastive")(e, y, indices=(a, p, a, n))
    torch.testing.assert_close(c1, c2)
    # the pair tuple as triplets: every (a, p) with every (a, n) of the same anchor
    t1 = la.create("triplet_margin")(e, y, indices=(a, p, a, n))
    t2 = la.create("triplet_margin")(e, y, indices=(a, p, n))
    torch.testing.assert_close(t1, t2)
    full = la.create("triplet_margin", average_nonzero=False, reduction="sum")(e, y)
    mined = la.create("triplet_margin", average_nonzero=False, reduction="sum")(e, y, indices=(a, p, n))
    assert mined.item() <= full.item()


def test_bad_miner_arguments() -> None:
    with pytest.raises(ValueError, match="distance"):
        BatchHardMiner(distance="manhattan")
    with pytest.raises(ValueError, match="type_of_triplets"):
        TripletMarginMiner(type_of_triplets="medium")
    with pytest.raises(ValueError, match="epsilon"):
        MultiSimilarityMiner(epsilon=-1.0)
    with pytest.raises(ValueError, match="margin"):
        BatchSemiHardMiner(margin=0.0)
    with pytest.raises(TypeError, match="labels"):
        BatchHardMiner()(torch.randn(4, 2), torch.rand(4))


def test_module_doctests() -> None:
    import doctest

    import lossatlas.miners

    result = doctest.testmod(lossatlas.miners, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0
