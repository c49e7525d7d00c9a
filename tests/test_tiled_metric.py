"""Issue 22: exact tiled forms of the label-aware metric losses (SupCon, NT-Xent,
multi-similarity, contrastive, triplet) and blockwise batch-hard / semi-hard mining.

Every tiled form is compared in float64 with the dense form of the same function (values
and gradients of the embeddings); block sizes are chosen so that blocks do not divide N."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import lossatlas as la
import lossatlas.functional as LF
from lossatlas.distributed.blocks import row_blocks
from lossatlas.miners import BatchHardMiner, BatchSemiHardMiner


def _batch(n: int, d: int, classes: int, seed: int = 0, repeats: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=g)
    if repeats:  # identical rows (distance exactly 0), of the same and of different labels
        e[3] = e[0]
        e[5] = 2.5 * e[1]  # the same unit row
        y[3] = y[0]
    return e, y


def _value_and_grad(fn: Any, e: torch.Tensor, y: torch.Tensor, **kw: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x = e.clone().requires_grad_()
    out = fn(x, y, **kw)
    w = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    (out * w).sum().backward()
    assert x.grad is not None
    return out.detach(), x.grad


def _assert_same(fn: Any, e: torch.Tensor, y: torch.Tensor, rtol: float = 1e-10, **kw: Any) -> None:
    dense = _value_and_grad(fn, e, y, tiled=False, **kw)
    tiled = _value_and_grad(fn, e, y, tiled=True, **kw)
    torch.testing.assert_close(tiled[0], dense[0], rtol=rtol, atol=1e-12)
    torch.testing.assert_close(tiled[1], dense[1], rtol=rtol, atol=1e-12)


REDUCTIONS = ("mean", "sum", "none")


def test_tiled_supcon_equals_dense_at_n_2048_float64() -> None:
    e, y = _batch(2048, 32, 100)
    for average_over in ("anchors_with_positives", "all_anchors"):
        for reduction in REDUCTIONS:
            _assert_same(LF.supcon, e, y, temperature=0.1, base_temperature=0.07, average_over=average_over,
                         reduction=reduction, block_size=300)
    # the default block size (a single block here) gives the same loss
    _assert_same(LF.supcon, e, y)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_tiled_supcon_edge_batches(reduction: str) -> None:
    e, y = _batch(13, 5, 4, repeats=True)
    y[7] = 99  # an anchor without positives
    _assert_same(LF.supcon, e, y, reduction=reduction, block_size=4)
    _assert_same(LF.supcon, e[:1], y[:1], reduction=reduction)  # one row: no pair at all
    _assert_same(LF.supcon, e, torch.zeros_like(y), reduction=reduction, block_size=5)  # no negative pair
    _assert_same(LF.supcon, e, torch.arange(13), reduction=reduction, block_size=5)  # no positive pair
    # the two-view and [bsz, n_views, D] call forms
    a, b = e[:6], e[6:12]
    dense = LF.supcon(a, b, tiled=False, reduction=reduction)
    torch.testing.assert_close(LF.supcon(a, b, tiled=True, block_size=5, reduction=reduction), dense)
    f = torch.stack([a, b], 1)
    torch.testing.assert_close(LF.supcon(f, y[:6], tiled=True, block_size=5, reduction=reduction),
                               LF.supcon(f, y[:6], tiled=False, reduction=reduction))


def test_tiled_supcon_gradcheck_and_auto_and_module() -> None:
    e, y = _batch(9, 4, 3)
    x = e.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: LF.supcon(t, y, tiled=True, block_size=4), (x,))
    # 'auto' tiles above 4M entries: same value either way; the module forwards the switch
    crit = la.create("supcon", tiled=True, block_size=2)
    torch.testing.assert_close(crit(e, y), LF.supcon(e, y, tiled=False))
    assert la.create("supcon").tiled == "auto" if hasattr(la.create("supcon"), "tiled") else True


def test_tiled_supcon_rejects_indices() -> None:
    e, y = _batch(8, 4, 3)
    idx = BatchHardMiner()(e, y)
    with pytest.raises(ValueError, match="indices"):
        LF.supcon(e, y, indices=idx, tiled=True)
    LF.supcon(e, y, indices=idx, tiled="auto")  # small: the dense form takes the miner's pairs


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("repeats", [False, True])
def test_tiled_ntxent_equals_dense(reduction: str, repeats: bool) -> None:
    e, y = _batch(61, 6, 7, repeats=repeats)
    _assert_same(LF.ntxent, e, y, temperature=0.2, reduction=reduction, block_size=8)
    a, b = e[:20], e[20:40]  # SimCLR's two views
    torch.testing.assert_close(LF.ntxent(a, b, tiled=True, block_size=7, reduction=reduction),
                               LF.ntxent(a, b, tiled=False, reduction=reduction))
    _assert_same(LF.ntxent, e[:5], torch.zeros(5, dtype=torch.long), reduction=reduction, block_size=2)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("miner_epsilon", [None, 0.1])
def test_tiled_multi_similarity_equals_dense(reduction: str, miner_epsilon: float | None) -> None:
    e, y = _batch(57, 6, 5, repeats=True)
    _assert_same(LF.multi_similarity, e, y, beta=10.0, miner_epsilon=miner_epsilon, reduction=reduction, block_size=9)
    _assert_same(LF.multi_similarity, e[:6], torch.zeros(6, dtype=torch.long), miner_epsilon=miner_epsilon,
                 reduction=reduction, block_size=4)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("average_nonzero", [True, False])
@pytest.mark.parametrize("repeats", [False, True])
def test_tiled_contrastive_equals_dense(reduction: str, average_nonzero: bool, repeats: bool) -> None:
    e, y = _batch(53, 5, 6, repeats=repeats)
    kw = {"pos_margin": 0.1, "neg_margin": 1.2, "average_nonzero": average_nonzero, "reduction": reduction}
    _assert_same(LF.contrastive, e, y, block_size=7, **kw)
    # a miner's pairs: the pair-list form
    for miner in (BatchHardMiner(), BatchSemiHardMiner()):
        idx = miner(e, y)
        _assert_same(LF.contrastive, e, y, indices=idx, **kw)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("average_nonzero", [True, False])
@pytest.mark.parametrize("repeats", [False, True])
def test_tiled_triplet_equals_dense(reduction: str, average_nonzero: bool, repeats: bool) -> None:
    e, y = _batch(47, 5, 5, repeats=repeats)
    kw = {"margin": 0.3, "average_nonzero": average_nonzero, "reduction": reduction}
    _assert_same(LF.triplet_margin, e, y, block_size=6, **kw)
    for miner in (BatchHardMiner(), BatchSemiHardMiner(), BatchSemiHardMiner(margin=0.2)):
        _assert_same(LF.triplet_margin, e, y, indices=miner(e, y), **kw)


@pytest.mark.parametrize("miner_cls", [BatchHardMiner, BatchSemiHardMiner])
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_blockwise_mining_equals_dense_mining(miner_cls: Any, distance: str) -> None:
    e, y = _batch(71, 6, 6, seed=3)
    y[10] = 50  # an anchor without positives is skipped
    dense = miner_cls(distance=distance)(e, y)
    for bs in (1, 8, 100):
        blocks = miner_cls(distance=distance, block_size=bs)(e, y)
        assert len(blocks) == len(dense)
        for got, want in zip(blocks, dense):
            assert torch.equal(got, want)
    # the mined triplets in the tiled (pair-list) triplet loss: the dense pipeline's value and gradient
    idx = miner_cls(distance=distance, block_size=8)(e, y)
    _assert_same(LF.triplet_margin, e, y, indices=idx, margin=0.2)


def test_tiled_gradcheck_of_every_row_block_loss() -> None:
    e, y = _batch(10, 3, 3)
    x = e.clone().requires_grad_()
    for fn, kw in ((LF.ntxent, {}), (LF.multi_similarity, {"miner_epsilon": 0.1}), (LF.contrastive, {"neg_margin": 1.5}),
                   (LF.triplet_margin, {"margin": 0.5})):
        assert torch.autograd.gradcheck(lambda t, fn=fn, kw=kw: fn(t, y, tiled=True, block_size=3, **kw), (x,))


def test_row_blocks_rejects_a_bad_block_size_and_handles_no_rows() -> None:
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="block_size"):
        row_blocks(lambda r0, r1, x: x[r0:r1].sum(1), 4, 0, x)
    out = row_blocks(lambda r0, r1, x: x[r0:r1].sum(1), 0, 3, x[:0])
    assert out.shape == (0,)


def test_tiled_rejects_bad_switches() -> None:
    e, y = _batch(6, 3, 2)
    with pytest.raises(ValueError, match="tiled"):
        LF.triplet_margin(e, y, tiled="yes")
    with pytest.raises(ValueError, match="block_size"):
        LF.contrastive(e, y, tiled=True, block_size=0)
    with pytest.raises(ValueError, match="indices"):
        LF.multi_similarity(e, y, tiled=True, indices=BatchHardMiner()(e, y))
    with pytest.raises(ValueError, match="indices"):
        LF.ntxent(e, y, tiled=True, indices=BatchHardMiner()(e, y))


@pytest.mark.parametrize("name", ["supcon", "ntxent", "multi_similarity", "contrastive", "triplet_margin"])
def test_cached_representation_form_equals_the_full_batch_gradient(name: str) -> None:
    """GradCache (:func:`lossatlas.distributed.cached_backward`) with a tiled label-aware loss:
    the encoder's parameter gradients are those of the dense loss on the whole batch."""
    from lossatlas.distributed import cached_backward

    g = torch.Generator().manual_seed(4)
    x = torch.randn(23, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (23,), generator=g)
    kw: dict[str, Any] = {"miner_epsilon": 0.1} if name == "multi_similarity" else {}
    fn = getattr(LF, name)

    def encoder() -> torch.nn.Module:
        torch.manual_seed(2)
        return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4)).double()

    ref_enc = encoder()
    ref = fn(ref_enc(x), y, tiled=False, **kw)
    ref.backward()
    enc = encoder()
    loss = cached_backward(lambda e: fn(e, y, tiled=True, block_size=5, **kw), enc, [x], chunk_size=6)
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-10, atol=1e-12)
    for got, want in zip(enc.parameters(), ref_enc.parameters()):
        assert got.grad is not None and want.grad is not None
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-9, atol=1e-12)
