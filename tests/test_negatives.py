"""Retrieval negatives (catalogue row G11): exact top-k, false-negative filtering, SimANS,
GISTEmbed's guided selection and the refreshed corpus index (ANCE)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lossatlas import negatives as N


def _data(q: int = 6, c: int = 50, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(q, d, generator=g, dtype=torch.float64), torch.randn(c, d, generator=g, dtype=torch.float64)


def test_topk_search_in_blocks_equals_the_dense_topk() -> None:
    q, c = _data()
    for block in (7, 50, 1000):
        s, i = N.topk_search(q, c, 9, block_size=block)
        ref = (q @ c.T).topk(9, dim=1)
        torch.testing.assert_close(s, ref.values)
        assert torch.equal(i, ref.indices)
    ex = torch.tensor([[0, 3], [1, -1], [2, 2], [5, 6], [7, 8], [9, -1]])
    s, i = N.topk_search(q, c, 5, exclude=ex, block_size=11)
    dense = (q @ c.T)
    for r in range(6):
        banned = {int(x) for x in ex[r] if x >= 0}
        order = [j for j in dense[r].argsort(descending=True).tolist() if j not in banned][:5]
        assert i[r].tolist() == order
    s, i = N.topk_search(q[:1], c[:3], 10, exclude=torch.tensor([1]))
    assert i.shape == (1, 3) and i[0, -1].item() == -1 and math.isinf(s[0, -1].item())


def test_false_negative_filter_closed_forms() -> None:
    neg = torch.tensor([[0.9, 0.75, 0.7, 0.1]])
    pos = torch.tensor([0.8])
    assert N.false_negative_keep(neg, pos, margin=0.05).tolist() == [[False, False, True, True]]
    assert N.false_negative_keep(neg, pos, ratio=0.95).tolist() == [[False, True, True, True]]  # 0.76
    assert N.false_negative_keep(neg, pos, margin=0.0, ratio=0.9).tolist() == [[False, False, True, True]]
    assert N.false_negative_keep(neg, pos).all()
    with pytest.raises(ValueError, match="pos_scores"):
        N.false_negative_keep(neg, torch.tensor([0.8, 0.1]))


def test_simans_distribution_is_the_papers() -> None:
    neg = torch.tensor([[0.9, 0.6, 0.5, 0.1, -math.inf]], dtype=torch.float64)
    pos = torch.tensor([0.55], dtype=torch.float64)
    a, b = 4.0, 0.1
    w = [math.exp(-a * (float(s) - 0.55 - b) ** 2) for s in neg[0, :4]]
    expect = torch.tensor([[x / sum(w) for x in w] + [0.0]], dtype=torch.float64)
    torch.testing.assert_close(N.simans_probabilities(neg, pos, a=a, b=b), expect)
    # the peak is the candidate nearest s+ + b; valid= masks candidates out
    p = N.simans_probabilities(neg, pos, a=50.0, b=0.1, valid=torch.tensor([[True, False, True, True, True]]))
    assert p[0, 1] == 0 and p.argmax().item() == 2  # 0.5 is 0.15 from s+ + b = 0.65, 0.9 is 0.25
    assert N.simans_probabilities(neg, pos, valid=torch.zeros(1, 5, dtype=torch.bool)).sum() == 0
    with pytest.raises(ValueError, match="a"):
        N.simans_probabilities(neg, pos, a=0.0)


def test_sample_rows_draws_distinct_columns_with_the_given_probabilities() -> None:
    g = torch.Generator().manual_seed(1)
    w = torch.tensor([[0.5, 0.3, 0.2, 0.0]]).expand(20000, 4).contiguous()
    first = N.sample_rows(w, 1, g)[:, 0]
    freq = torch.bincount(first, minlength=4).double() / 20000
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.3, 0.2, 0.0], dtype=torch.float64), atol=0.015, rtol=0)
    two = N.sample_rows(w[:100], 2, g)
    assert (two[:, 0] != two[:, 1]).all() and (two != 3).all()
    short = N.sample_rows(torch.tensor([[0.0, 1.0, 0.0]]), 2, g)
    assert short.tolist() == [[1, -1]]


def test_gist_mask_and_loss_closed_form() -> None:
    g = torch.Generator().manual_seed(2)
    q, d = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(7, 4, generator=g, dtype=torch.float64)
    gq, gd = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(7, 3, generator=g, dtype=torch.float64)
    cos = F.normalize(gq, dim=1) @ F.normalize(gd, dim=1).T
    for strategy, margin in (("absolute", 0.0), ("absolute", 0.1), ("relative", 0.2)):
        drop = N.gist_mask(gq, gd, None, margin=margin, margin_strategy=strategy)
        for i in range(5):
            bound = cos[i, i] - margin if strategy == "absolute" else cos[i, i] * (1 - margin)
            for j in range(7):
                assert bool(drop[i, j]) == (j != i and bool(cos[i, j] > bound)), (strategy, i, j)
    # the loss: a brute-force row-by-row softmax over the kept candidates
    t = 0.05
    got = N.gist_infonce(q, d, gq, gd, temperature=t, margin=0.05, reduction="none")
    uq, ud = F.normalize(q, dim=1), F.normalize(d, dim=1)
    ngq, ngd = F.normalize(gq, dim=1), F.normalize(gd, dim=1)
    for i in range(5):
        gpos = float(ngq[i] @ ngd[i])
        terms = [float(uq[i] @ ud[j]) / t for j in range(7) if j == i or float(ngq[i] @ ngd[j]) <= gpos - 0.05]
        terms += [float(uq[i] @ uq[j]) / t for j in range(5) if j != i and float(ngq[i] @ ngq[j]) <= gpos - 0.05]
        terms += [float(ud[i] @ ud[j]) / t for j in range(5) if j != i and float(ngd[i] @ ngd[j]) <= gpos - 0.05]
        expect = torch.logsumexp(torch.tensor(terms, dtype=torch.float64), 0) - float(uq[i] @ ud[i]) / t
        assert got[i].item() == pytest.approx(expect.item(), rel=1e-9)
    qq = q.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: N.gist_infonce(x, d, gq, gd, temperature=0.5), (qq,))


def test_gist_without_a_guide_veto_is_infonce_over_all_blocks() -> None:
    q, d = _data(4, 4, 3, seed=5)
    # a guide that ranks every positive first (identical guide rows per pair, orthogonal across pairs)
    guide = torch.eye(4, dtype=torch.float64)
    got = N.gist_infonce(q, d, guide, guide, temperature=0.1)
    uq, ud = F.normalize(q, dim=1), F.normalize(d, dim=1)
    off = ~torch.eye(4, dtype=torch.bool)
    logits = torch.cat([uq @ ud.T, (uq @ uq.T).masked_fill(~off, -math.inf), (ud @ ud.T).masked_fill(~off, -math.inf)], 1) / 0.1
    torch.testing.assert_close(got, F.cross_entropy(logits, torch.arange(4)))


class _Encoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(6, 4, bias=False).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.lin(x)
        return out


def test_corpus_index_refreshes_every_n_steps_and_restores_train_mode() -> None:
    enc = _Encoder()
    corpus = torch.randn(30, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    idx = N.CorpusIndex(enc, corpus, refresh_every=3, batch_size=7)
    assert enc.training
    torch.testing.assert_close(idx.embeddings, F.normalize(enc(corpus), dim=1).detach())
    before = idx.embeddings.clone()
    with torch.no_grad():
        enc.lin.weight.add_(1.0)
    assert [idx.step() for _ in range(3)] == [False, False, True]
    assert idx.refreshes == 1 and not torch.allclose(idx.embeddings, before)
    torch.testing.assert_close(idx.embeddings, F.normalize(enc(corpus), dim=1).detach())


def test_corpus_index_strategies() -> None:
    q, c = _data(5, 60, 8, seed=4)
    idx = N.CorpusIndex(lambda x: x, c)
    pos = torch.tensor([0, 1, 2, 3, 4])
    uq, uc = F.normalize(q, dim=1), F.normalize(c, dim=1)
    scores = uq @ uc.T
    g = torch.Generator().manual_seed(0)
    hard = idx.mine(q, pos, 4, strategy="hard")
    for r in range(5):
        ranked = [j for j in scores[r].argsort(descending=True).tolist() if j != r]
        assert hard[r].tolist() == ranked[:4]
        top10 = set(ranked[:10])
        assert set(idx.mine(q[r:r + 1], pos[r:r + 1], 4, strategy="ance", depth=10, generator=g)[0].tolist()) <= top10
        assert set(idx.mine(q[r:r + 1], pos[r:r + 1], 4, strategy="simans", depth=10, generator=g)[0].tolist()) <= top10
    rnd = idx.mine(q, pos, 20, strategy="random", generator=g)
    assert (rnd != pos.unsqueeze(1)).all() and all(len(set(r)) == 20 for r in rnd.tolist())
    # false-negative filtering: nothing scored at or above 90 % of the positive comes back
    for strategy in ("hard", "ance", "simans", "random"):
        out = idx.mine(q, pos, 3, strategy=strategy, ratio=0.9, depth=15, generator=g)
        for r in range(5):
            ids = [j for j in out[r].tolist() if j >= 0]
            assert all(float(scores[r, j]) < 0.9 * float(scores[r, r]) for j in ids), strategy
    filtered_hard = idx.mine(q, pos, 3, strategy="hard", margin=0.0)
    for r in range(5):
        ranked = [j for j in scores[r].argsort(descending=True).tolist() if j != r and scores[r, j] < scores[r, r]]
        assert filtered_hard[r].tolist() == ranked[:3]


def test_corpus_index_bad_inputs() -> None:
    idx = N.CorpusIndex(lambda x: x, torch.eye(4))
    with pytest.raises(ValueError, match="strategy"):
        idx.mine(torch.randn(2, 4), torch.tensor([0, 1]), 1, strategy="bm25")
    with pytest.raises(ValueError, match="query_emb"):
        idx.mine(torch.randn(2, 3), torch.tensor([0, 1]), 1)
    with pytest.raises(ValueError, match="positives"):
        idx.mine(torch.randn(2, 4), torch.tensor([0, 1, 2]), 1)
    with pytest.raises(TypeError, match="encode"):
        N.CorpusIndex("model", torch.eye(4))  # type: ignore[arg-type]


# --- the registered miners (kind "negatives") -----------------------------------------------------

def _repeat_index(scores: list[float]) -> tuple[N.CorpusIndex, torch.Tensor]:
    """A corpus of unit vectors e_0..e_{C-1}: with normalize=False, query e·scores scores item j by scores[j]."""
    c = len(scores)
    return N.CorpusIndex(lambda x: x, torch.eye(c, dtype=torch.float64), normalize=False), torch.tensor([scores], dtype=torch.float64)


def test_ance_draws_uniformly_from_the_top_depth_only() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    idx, q = _repeat_index(scores)
    n = 6000
    ids = N.ANCENegatives(num=1, depth=4).mine(idx, q.expand(n, -1), torch.zeros(n, dtype=torch.long))
    assert set(ids.flatten().tolist()) == {1, 2, 3, 4}  # the top 4 after the positive 0
    freq = torch.bincount(ids.flatten(), minlength=10)[1:5].double() / n
    assert (freq - 0.25).abs().max() < 0.03  # 4.5 standard deviations of a 1/4 frequency over 6000 draws


def test_simans_draws_follow_the_papers_distribution() -> None:
    scores = [0.6, 0.9, 0.75, 0.65, 0.5, 0.2, 0.0]  # the positive (id 0) scores 0.6
    a, b = 8.0, 0.1
    idx, q = _repeat_index(scores)
    n = 8000
    ids = N.SimANSNegatives(num=1, depth=6, a=a, b=b).mine(idx, q.expand(n, -1), torch.zeros(n, dtype=torch.long))
    w = [math.exp(-a * (s - 0.6 - b) ** 2) for s in scores[1:]]
    expect = torch.tensor([x / sum(w) for x in w], dtype=torch.float64)
    freq = torch.bincount(ids.flatten(), minlength=7)[1:].double() / n
    assert (freq - expect).abs().max() < 0.02, (freq, expect)
    assert int(freq.argmax()) + 1 == 3  # 0.65 is nearest to s+ + b = 0.7


def test_positive_aware_negatives_are_the_brute_force_topk_percpos() -> None:
    q, c = _data(6, 80, 8, seed=7)
    idx = N.CorpusIndex(lambda x: x, c)
    pos = torch.arange(6)
    s = F.normalize(q, dim=1) @ F.normalize(c, dim=1).T
    for ratio, margin in ((0.95, None), (0.7, None), (None, 0.05), (0.9, 0.02)):
        out = N.PositiveAwareNegatives(5, ratio=ratio, margin=margin).mine(idx, q, pos)
        for r in range(6):
            sp = float(s[r, r])
            ok = [j for j in s[r].argsort(descending=True).tolist() if j != r
                  and (ratio is None or float(s[r, j]) < ratio * sp) and (margin is None or float(s[r, j]) < sp - margin)]
            assert out[r].tolist() == (ok + [-1] * 5)[:5]
    # the default (TopK-PercPos 95 %) differs from the naive top-k on a query whose near-duplicates beat the positive
    naive = N.HardNegatives(5).mine(idx, q, pos)
    assert not torch.equal(naive, N.PositiveAwareNegatives(5, ratio=0.5).mine(idx, q, pos))


def test_a_resumed_run_mines_what_an_uninterrupted_one_does() -> None:
    torch.manual_seed(0)

    def run(stop: int | None, state: dict | None = None) -> tuple[list[torch.Tensor], dict]:
        enc = torch.nn.Linear(6, 6, bias=False).double()
        with torch.no_grad():
            enc.weight.copy_(torch.eye(6, dtype=torch.float64))
        corpus = torch.randn(40, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        idx = N.CorpusIndex(enc, corpus)
        miner = N.SimANSNegatives(num=3, depth=12, refresh_every=2, seed=4)
        q = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        start = 0
        if state is not None:
            idx.load_state_dict(state["index"])
            miner.load_state_dict(state["miner"])
            enc.load_state_dict(state["enc"])
            start = state["t"]
        out = []
        for t in range(start, 6):
            if stop is not None and t == stop:
                return out, {"index": idx.state_dict(), "miner": miner.state_dict(), "enc": enc.state_dict(), "t": t}
            out.append(miner.mine(idx, q, torch.tensor([0, 1, 2, 3])))
            with torch.no_grad():  # a training step moves the encoder
                enc.weight.add_(0.3 * torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(t)))
            miner.step(idx)
        return out, {}

    full, _ = run(None)
    first, state = run(3)
    rest, _ = run(None, state)
    assert len(first) == 3 and len(rest) == 3
    assert all(torch.equal(a, b) for a, b in zip(full, first + rest))
    assert any(not torch.equal(full[0], x) for x in full[2:])  # the refreshed index mines other negatives


# --- FAISS backend (the faiss extra) --------------------------------------------------------------

def _faiss_or_skip() -> None:
    pytest.importorskip("faiss", reason="faiss-cpu is the optional extra lossatlas[faiss] (installed by .ci/run's [test])")


def test_faiss_exact_search_equals_the_torch_topk() -> None:
    _faiss_or_skip()
    g = torch.Generator().manual_seed(11)
    c, q = torch.randn(500, 16, generator=g), torch.randn(9, 16, generator=g)
    ref = N.CorpusIndex(lambda x: x, c)
    fa = N.CorpusIndex(lambda x: x, c, backend="faiss")
    ex = torch.randint(0, 500, (9, 4), generator=g)
    ex[0, 1:] = -1
    for k, exclude in ((10, None), (25, ex), (500, ex), (600, None)):
        s_t, i_t = ref.search(q, k, exclude=exclude)
        s_f, i_f = fa.search(q, k, exclude=exclude)
        assert torch.equal(i_t, i_f), k
        torch.testing.assert_close(s_f, s_t, rtol=0, atol=1e-5)
    for miner in (N.HardNegatives(7), N.PositiveAwareNegatives(7), N.ANCENegatives(7, depth=30)):
        assert torch.equal(miner.mine(ref, q, ex), type(miner)(**_kw(miner)).mine(fa, q, ex)), miner
    # float64 embeddings are searched in float32 by faiss; the result comes back in the index's dtype
    f64 = N.CorpusIndex(lambda x: x, c.double(), backend="faiss")
    s64, i64 = f64.search(q.double(), 5)
    assert s64.dtype == torch.float64 and torch.equal(i64, ref.search(q, 5)[1])


def _kw(miner: N.NegativeMiner) -> dict:
    import inspect

    return {n: getattr(miner, n) for n in inspect.signature(type(miner)).parameters}


def test_faiss_ivf_with_every_list_probed_is_exact_and_refresh_rebuilds() -> None:
    _faiss_or_skip()
    g = torch.Generator().manual_seed(12)
    c, q = torch.randn(400, 8, generator=g), torch.randn(5, 8, generator=g)
    ref = N.CorpusIndex(lambda x: x, c)
    ivf = N.CorpusIndex(lambda x: x, c, backend="faiss", nlist=4, nprobe=4)
    assert torch.equal(ivf.search(q, 20)[1], ref.search(q, 20)[1])
    scale = {"s": 1.0}
    moving = N.CorpusIndex(lambda x: x * torch.linspace(1, 3, 8) ** scale["s"], c, backend="faiss")
    before = moving.search(q, 10)[1]
    scale["s"] = 4.0
    moving.refresh()
    after = moving.search(q, 10)[1]
    rescaled = N.CorpusIndex(lambda x: x * torch.linspace(1, 3, 8) ** 4.0, c)
    assert torch.equal(after, rescaled.search(q, 10)[1]) and not torch.equal(before, after)


def test_faiss_backend_bad_arguments() -> None:
    with pytest.raises(ValueError, match="backend"):
        N.CorpusIndex(lambda x: x, torch.eye(4), backend="annoy")
    with pytest.raises(ValueError, match="nlist"):
        N.CorpusIndex(lambda x: x, torch.eye(4), nlist=2)
    _faiss_or_skip()
    with pytest.raises(ValueError, match="nlist"):
        N.CorpusIndex(lambda x: x, torch.eye(4), backend="faiss", nlist=9).search(torch.ones(1, 4), 2)


# --- NGAME mini-batching ----------------------------------------------------------------------------

def _blobs(n_blobs: int = 8, per: int = 16, d: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Well-separated directions: blob b's items are near a random unit vector."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(n_blobs, d, generator=g), dim=1)
    x = centres.repeat_interleave(per, 0) + 0.05 * torch.randn(n_blobs * per, d, generator=g)
    return x, torch.arange(n_blobs).repeat_interleave(per)


def test_balanced_clusters_partition_with_balanced_sizes_and_recover_blobs() -> None:
    x, blob = _blobs()
    g = torch.Generator().manual_seed(1)
    for size, leaves in ((16, 8), (10, 16), (128, 1), (200, 1), (1, 128)):
        parts = N.balanced_clusters(x, size, generator=g)
        assert len(parts) == leaves
        assert sorted(torch.cat(parts).tolist()) == list(range(128))
        assert {p.numel() for p in parts} <= {128 // leaves, -(-128 // leaves)} and max(p.numel() for p in parts) <= max(size, 1)
    # clusters of the blob size recover the blobs (the tight blobs are the balanced 2-means optimum)
    parts = N.balanced_clusters(x, 16, generator=g)
    assert all(blob[p].unique().numel() == 1 for p in parts)
    odd = N.balanced_clusters(torch.randn(37, 4, generator=g), 5, generator=g)  # 37 rows, 8 leaves: sizes 4 and 5
    assert len(odd) == 8 and {p.numel() for p in odd} <= {4, 5} and sorted(torch.cat(odd).tolist()) == list(range(37))


def test_ngame_batches_are_whole_clusters_every_item_once_and_seeded() -> None:
    x, blob = _blobs()
    s = N.NGAMEBatchSampler(x, batch_size=32, cluster_size=16, doubling_epochs=())
    clusters = {frozenset(c.tolist()) for c in s.clusters()}
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s) == 4 and all(len(b) == 32 for b in batches)
        assert sorted(i for b in batches for i in b) == list(range(128))  # every item once per epoch
        for b in batches:  # each batch is two whole clusters (here: two blobs)
            inside = [c for c in clusters if c <= set(b)]
            assert len(inside) == 2 and set().union(*inside) == set(b)
            assert blob[b].unique().numel() == 2
    s.set_epoch(0)
    again = N.NGAMEBatchSampler(x, batch_size=32, cluster_size=16, doubling_epochs=())
    assert list(again) == list(s)  # the same seed and epoch: the same batches
    s.set_epoch(1)
    assert list(s) != list(again)  # another epoch: another order
    other = N.NGAMEBatchSampler(x, batch_size=32, cluster_size=16, doubling_epochs=(), seed=3)
    assert list(other) != list(again)


def test_ngame_in_batch_negatives_are_harder_than_random_batches() -> None:
    # the point of NGAME: the mean in-batch similarity of non-matching items is higher than with random batches
    x, _ = _blobs(16, 8, seed=2)
    u = F.normalize(x, dim=1)

    def mean_sim(batches: list[list[int]]) -> float:
        vals = []
        for b in batches:
            s = u[b] @ u[b].T
            vals.append((s.sum() - s.diagonal().sum()) / (len(b) * (len(b) - 1)))
        return float(torch.stack(vals).mean())

    ngame = mean_sim(list(N.NGAMEBatchSampler(x, 16, cluster_size=8, doubling_epochs=())))
    random = mean_sim(list(N.NGAMEBatchSampler(x, 16, cluster_size=1, doubling_epochs=())))
    assert ngame > random + 0.3, (ngame, random)


def test_ngame_curriculum_update_drop_last_replicas_and_dataloader() -> None:
    x, _ = _blobs()
    s = N.NGAMEBatchSampler(x, batch_size=32, doubling_epochs=(2, 4, 4))
    assert [(s.set_epoch(e), s.current_cluster_size())[1] for e in range(6)] == [1, 1, 2, 2, 8, 8]
    s.set_epoch(5)
    assert all(len(c) == 8 for c in s.clusters())
    before = [c.tolist() for c in s.clusters()]
    s.update(-x.flip(0))  # other embeddings: other clusters
    assert [c.tolist() for c in s.clusters()] != before
    with pytest.raises(ValueError, match="embeddings"):
        s.update(x[:5])
    short = N.NGAMEBatchSampler(x[:100], batch_size=32, cluster_size=4, doubling_epochs=(), drop_last=True)
    assert len(list(short)) == len(short) == 3 and all(len(b) == 32 for b in short)
    keep = N.NGAMEBatchSampler(x[:100], batch_size=32, cluster_size=4, doubling_epochs=())
    assert [len(b) for b in keep] == [32, 32, 32, 4]
    ranks = [list(N.NGAMEBatchSampler(x[:100], 32, cluster_size=4, doubling_epochs=(), num_replicas=3, rank=r)) for r in range(3)]
    assert [len(r) for r in ranks] == [2, 2, 2]
    assert sorted(i for r in ranks for b in r[:] for i in b if True)[:100] != []  # every rank got batches
    assert set(i for r in ranks for b in r for i in b) == set(range(100))  # together they cover the epoch
    ds = torch.utils.data.TensorDataset(x, torch.arange(128))
    loader = torch.utils.data.DataLoader(ds, batch_sampler=N.NGAMEBatchSampler(x, 32, cluster_size=16, doubling_epochs=()))
    seen = torch.cat([idx for _, idx in loader])
    assert sorted(seen.tolist()) == list(range(128))


def test_faiss_backend_without_faiss_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "faiss", None)  # what an environment without faiss-cpu imports
    with pytest.raises(ImportError, match=r"lossatlas\[faiss\]"):
        N.CorpusIndex(lambda x: x, torch.eye(4), backend="faiss")
    assert N.CorpusIndex(lambda x: x, torch.eye(4)).search(torch.ones(1, 4), 2)[1].shape == (1, 2)  # torch needs none


def test_the_positive_score_is_the_first_positive_id_not_a_pad() -> None:
    # corpus = identity rows, so s(q, d_j) = q_j: the filter's threshold is the positive's own score
    idx = N.CorpusIndex(lambda x: x, torch.eye(6, dtype=torch.float64), normalize=False)
    q = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.8, 0.2]], dtype=torch.float64)
    padded = idx.mine(q, torch.tensor([[-1, 4]]), 6, ratio=1.0)  # s⁺ = 0.8: keeps 0.5, 0.3, 0.2, 0.1
    assert torch.equal(padded, idx.mine(q, torch.tensor([[4]]), 6, ratio=1.0))
    assert padded[0].tolist() == [2, 3, 5, 0, -1, -1]
    # item 0's score (0.1) as the threshold, the old behaviour, would keep no candidate at all
    assert idx.mine(q, torch.tensor([[-1, 0]]), 6, ratio=1.0)[0].tolist() == [-1] * 6


@pytest.mark.parametrize("kw", [{"ratio": 0.95}, {"margin": 0.0}, {"strategy": "simans"}])
def test_a_query_without_positive_is_refused_where_its_score_is_needed(kw: dict[str, object]) -> None:
    idx = N.CorpusIndex(lambda x: x, torch.eye(6, dtype=torch.float64), normalize=False)
    q = torch.rand(2, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="positives: query 1 has no positive id"):
        idx.mine(q, torch.tensor([[2, -1], [-1, -1]]), 2, **kw)  # type: ignore[arg-type]
    # hard / ANCE / random negatives need no positive score: the row just excludes nothing
    assert idx.mine(q, torch.tensor([[2, -1], [-1, -1]]), 2).shape == (2, 2)
