"""Retrieval negatives (catalogue row G11): which corpus items a dense retriever trains against.

A dense retriever is trained with InfoNCE over (query, positive document, negatives); which
negatives it sees decides most of what it learns. This module holds the pieces, each a plain
torch function over embeddings and corpus ids, composable with any pair loss:

* :func:`topk_search`: exact top-k of a corpus index by inner product, in blocks (memory
  O(Q·(k + block)), no FAISS), the positives excluded;
* :class:`CorpusIndex`: the corpus embeddings of an encoder, re-encoded every
  ``refresh_every`` steps, from which negatives are mined: ANCE's periodically refreshed ANN
  negatives (Xiong et al., 2021), plain top-k hard negatives, SimANS's ambiguous negatives
  (Zhou et al., 2022) or random ones, after false-negative filtering relative to the
  positive's score;
* :func:`false_negative_keep`: that filter (a margin below, or a fraction of, the
  positive's score: NV-Retriever's TopK-MarginPos / TopK-PercPos, Moreira et al., 2024);
* :func:`simans_probabilities`: SimANS's sampling distribution
  ``p_i ∝ exp(−a (s(q, d_i) − s(q, d⁺) − b)²)`` over the top-k candidates;
* :func:`gist_mask` and :func:`gist_infonce`: GISTEmbed's guided in-batch selection
  (Solatorio, 2024): a guide model's similarities drop the in-batch negatives it scores above
  the positive.

Papers: L. Xiong, C. Xiong, Y. Li, K.-F. Tang, J. Liu, P. Bennett, J. Ahmed, A. Overwijk
(2021), "Approximate Nearest Neighbor Negative Contrastive Learning for Dense Text Retrieval",
ICLR (ANCE: negatives sampled from the top 200 of the current checkpoint's index, refreshed
during training); K. Zhou, Y. Gong, X. Liu, W. X. Zhao, Y. Shen, A. Dong, J. Lu, R. Majumder,
J.-R. Wen, N. Duan, W. Chen (2022), "SimANS: Simple Ambiguous Negatives Sampling for Dense Text
Retrieval", EMNLP (industry track), arXiv:2210.11773 (the distribution above; the official
README's snippet uses b = 0); A. V. Solatorio (2024), "GISTEmbed: Guided In-sample Selection
of Training Negatives for Text Embedding Fine-tuning", arXiv:2402.16829 (temperature 0.01 in
sentence-transformers' ``GISTEmbedLoss``); G. de Souza P. Moreira, R. Osmulski, M. Xu, R. Ak,
B. Schifferer, E. Oldridge (2024), "NV-Retriever: Improving text embedding models with
effective hard-negative mining", arXiv:2407.15831 (TopK-PercPos with 95 %).

>>> import torch
>>> from lossatlas.negatives import topk_search
>>> corpus = torch.eye(4)
>>> scores, ids = topk_search(torch.tensor([[1.0, 0.5, 0.0, 0.0]]), corpus, 2, exclude=torch.tensor([[0]]))
>>> ids.tolist()
[[1, 2]]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Sampler

from ._validation import check_float, check_int, check_number, check_same_device, check_tensor
from .registry import Paper, register

__all__ = [
    "topk_search",
    "false_negative_keep",
    "simans_probabilities",
    "sample_rows",
    "gist_mask",
    "gist_infonce",
    "CorpusIndex",
    "STRATEGIES",
    "NegativeMiner",
    "HardNegatives",
    "ANCENegatives",
    "SimANSNegatives",
    "RandomNegatives",
    "PositiveAwareNegatives",
    "GISTSelector",
    "balanced_clusters",
    "NGAMEBatchSampler",
]

#: the mining strategies of :meth:`CorpusIndex.mine`
STRATEGIES = ("hard", "ance", "simans", "random")


def _check_matrix(x: Tensor, name: str, dim: int | None = None) -> Tensor:
    check_float(x, name)
    if x.dim() != 2 or (dim is not None and x.shape[1] != dim):
        want = "[n, D]" if dim is None else f"[n, {dim}]"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    return x


def _check_ids(x: Tensor | None, name: str, rows: int, device: torch.device) -> Tensor | None:
    if x is None:
        return None
    check_tensor(x, name)
    if x.dtype.is_floating_point or x.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of corpus ids, got {x.dtype}")
    if x.dim() == 1:
        x = x.unsqueeze(1)
    if x.dim() != 2 or x.shape[0] != rows:
        raise ValueError(f"{name} must have shape [Q] or [Q, P] with Q = {rows}, got {tuple(x.shape)}")
    return x.to(device=device, dtype=torch.long)


@torch.no_grad()
def topk_search(queries: Tensor, corpus: Tensor, k: int, *, exclude: Tensor | None = None,
                block_size: int = 8192) -> tuple[Tensor, Tensor]:
    """Exact top-``k`` corpus rows by inner product ``q · c`` for every query.

    The corpus is scanned in blocks of ``block_size`` rows and the running top-k is merged
    with each block's, so memory is O(Q·(k + block_size)) whatever the corpus size; the result
    equals ``(queries @ corpus.T).topk(k)`` (ties broken towards the smaller id). ``exclude``
    [Q] or [Q, P] (ids, −1 for padding) removes ids per query (its positives). Normalise the
    rows first for cosine similarity.

    Returns ``(scores [Q, k], ids [Q, k])``, best first; ``k`` is capped at the corpus size
    and slots with nothing left to return have id −1 and score −inf.
    """
    _check_matrix(queries, "queries")
    _check_matrix(corpus, "corpus", queries.shape[1])
    check_same_device("queries", queries, "corpus", corpus)
    k = min(check_int(k, "k"), corpus.shape[0])
    block_size = check_int(block_size, "block_size")
    ex = _check_ids(exclude, "exclude", queries.shape[0], queries.device)
    nq = queries.shape[0]
    q = queries.to(corpus.dtype)
    best_s = torch.full((nq, 0), -math.inf, dtype=q.dtype, device=q.device)
    best_i = torch.full((nq, 0), -1, dtype=torch.long, device=q.device)
    for start in range(0, corpus.shape[0], block_size):
        block = corpus[start : start + block_size]
        s = q @ block.T
        ids = torch.arange(start, start + block.shape[0], device=q.device)
        if ex is not None:
            hit = (ex.unsqueeze(2) == ids.view(1, 1, -1)).any(1)
            s = s.masked_fill(hit, -math.inf)
        cat_s = torch.cat([best_s, s], 1)
        cat_i = torch.cat([best_i, ids.expand(nq, -1)], 1)
        # stable: equal scores keep the earlier (smaller) id first
        order = torch.sort(cat_s, dim=1, descending=True, stable=True).indices[:, :k]
        best_s, best_i = cat_s.gather(1, order), cat_i.gather(1, order)
    best_i = best_i.masked_fill(torch.isneginf(best_s), -1)
    return best_s, best_i


def false_negative_keep(neg_scores: Tensor, pos_scores: Tensor, *, margin: float | None = None,
                        ratio: float | None = None) -> Tensor:
    """Which candidates survive false-negative filtering relative to the positive's score.

    ``margin``: keep ``s_n < s_p − margin`` (NV-Retriever's TopK-MarginPos; margin 0 drops
    candidates scored at or above the positive); ``ratio``: keep ``s_n < ratio · s_p``
    (TopK-PercPos; the paper uses 0.95). Both may be given (both must hold); neither keeps
    every candidate. ``neg_scores`` [Q, K], ``pos_scores`` [Q] → bool [Q, K].

    >>> import torch
    >>> false_negative_keep(torch.tensor([[0.9, 0.7, 0.2]]), torch.tensor([0.8]), ratio=0.95).tolist()
    [[False, True, True]]
    """
    check_float(neg_scores, "neg_scores")
    check_float(pos_scores, "pos_scores")
    if neg_scores.dim() != 2 or pos_scores.shape != (neg_scores.shape[0],):
        raise ValueError(f"neg_scores must be [Q, K] and pos_scores [Q], got {tuple(neg_scores.shape)} and {tuple(pos_scores.shape)}")
    keep = torch.isfinite(neg_scores)
    p = pos_scores.unsqueeze(1)
    if margin is not None:
        keep &= neg_scores < p - check_number(margin, "margin")
    if ratio is not None:
        keep &= neg_scores < check_number(ratio, "ratio", low=0.0) * p
    return keep


def simans_probabilities(neg_scores: Tensor, pos_scores: Tensor, *, a: float = 1.0, b: float = 0.0,
                         valid: Tensor | None = None) -> Tensor:
    """SimANS's sampling distribution over each query's candidate negatives:
    ``p_i ∝ exp(−a (s(q, d_i) − s(q, d⁺) − b)²)`` (Zhou et al., 2022, Eq. 3), normalised over
    the ``valid`` candidates (all finite scores by default); a row without a valid candidate
    is all zeros. Negatives scored near ``s(q, d⁺) + b`` are the likeliest: neither the
    easy ones far below the positive nor the likely false negatives far above it.

    ``a`` > 0 sharpens the distribution; ``b`` shifts its peak (the official README's form has
    b = 0; both are tuned per dataset in the paper).

    >>> import torch
    >>> p = simans_probabilities(torch.tensor([[0.9, 0.5, 0.1]]), torch.tensor([0.5]), a=10.0)
    >>> int(p.argmax()), round(float(p.sum()), 6)
    (1, 1.0)
    """
    check_float(neg_scores, "neg_scores")
    check_float(pos_scores, "pos_scores")
    if neg_scores.dim() != 2 or pos_scores.shape != (neg_scores.shape[0],):
        raise ValueError(f"neg_scores must be [Q, K] and pos_scores [Q], got {tuple(neg_scores.shape)} and {tuple(pos_scores.shape)}")
    a = check_number(a, "a", low=0.0, low_open=True)
    b = check_number(b, "b")
    ok = torch.isfinite(neg_scores) if valid is None else valid & torch.isfinite(neg_scores)
    logit = -a * (neg_scores - pos_scores.unsqueeze(1) - b) ** 2
    logit = logit.masked_fill(~ok, -math.inf)
    p = torch.softmax(logit, dim=1)
    return torch.where(ok.any(1, keepdim=True), p, torch.zeros_like(p)).nan_to_num(0.0)


def sample_rows(weights: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
    """Draw ``num`` distinct column positions per row with probability ∝ ``weights`` [Q, K]
    (sequentially without replacement, ``torch.multinomial``); a row with fewer than ``num``
    positive weights returns them all and pads with −1."""
    check_float(weights, "weights")
    num = check_int(num, "num")
    q, k = weights.shape
    out = torch.full((q, num), -1, dtype=torch.long, device=weights.device)
    if k == 0 or q == 0:
        return out
    w = weights.clamp_min(0)
    avail = (w > 0).sum(1)
    full = avail >= num
    take = min(num, k)
    if bool(full.any()):
        out[full, :take] = torch.multinomial(w[full], take, replacement=False, generator=generator)
    for r in torch.nonzero(~full).flatten().tolist():  # rows short of candidates: all of them
        pos = torch.nonzero(w[r] > 0).flatten()
        out[r, : pos.numel()] = pos
    return out


def gist_mask(guide_queries: Tensor, guide_docs: Tensor, positives: Tensor | None = None, *,
              margin: float = 0.0, margin_strategy: str = "absolute") -> Tensor:
    """GISTEmbed's guided selection: the in-batch candidates a guide model scores above the
    positive, to be dropped from the negatives (likely false negatives).

    With guide cosine similarities ``g_ij = cos(G(q_i), G(d_j))`` and the positive
    ``g_i⁺ = g_{i, positives[i]}`` (``positives=None``: document i), candidate j ≠ positive is
    dropped when ``g_ij > g_i⁺ − margin`` (``"absolute"``) or ``g_ij > g_i⁺ · (1 − margin)``
    (``"relative"``), sentence-transformers' ``GISTEmbedLoss`` strategies (margin 0 in the
    paper). Returns bool [N, M], True = drop.

    >>> import torch
    >>> g = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    >>> gist_mask(g[:1], g, torch.tensor([1])).tolist()  # doc 0 (g = 1) beats the positive (0.6)
    [[True, False, False]]
    """
    _check_matrix(guide_queries, "guide_queries")
    _check_matrix(guide_docs, "guide_docs", guide_queries.shape[1])
    if margin_strategy not in ("absolute", "relative"):
        raise ValueError(f"margin_strategy must be 'absolute' or 'relative', got {margin_strategy!r}")
    margin = check_number(margin, "margin")
    n = guide_queries.shape[0]
    pos = torch.arange(n, device=guide_queries.device) if positives is None else positives.to(guide_queries.device).long()
    if pos.shape != (n,):
        raise ValueError(f"positives must have shape [N] = [{n}], got {tuple(pos.shape)}")
    with torch.no_grad():
        g = F.normalize(guide_queries, dim=1) @ F.normalize(guide_docs.to(guide_queries.dtype), dim=1).T
        gp = g.gather(1, pos.unsqueeze(1))
        bound = gp - margin if margin_strategy == "absolute" else gp * (1.0 - margin)
        drop = g > bound
        drop.scatter_(1, pos.unsqueeze(1), False)
    return drop


def gist_infonce(queries: Tensor, docs: Tensor, guide_queries: Tensor, guide_docs: Tensor, *,
                 temperature: float = 0.01, margin: float = 0.0, margin_strategy: str = "absolute",
                 reduction: str = "mean") -> Tensor:
    """GISTEmbed loss (Solatorio, 2024): InfoNCE of query i against its document i (cosine
    similarities over ``temperature``, 0.01 as sentence-transformers' ``GISTEmbedLoss``). Row
    i's denominator holds every document, every other query and every other positive
    document (the query–document, query–query and positive–positive blocks of
    ``GISTEmbedLoss`` with its defaults), except the entries whose guide similarity exceeds
    the guide's positive score ``g_i⁺`` (less ``margin``, or times ``1 − margin``), which are
    likely false negatives (:func:`gist_mask`). ``docs`` [N, D] (the positives) or
    [N + H, D] (the positives first, then H hard negatives shared by the batch). Unlike
    ``GISTEmbedLoss`` the self-pairs of the query–query and positive–positive blocks are
    always dropped (it keeps them when the guide scores a positive exactly 1).

    >>> import torch
    >>> q, d = torch.randn(4, 8), torch.randn(4, 8)
    >>> gist_infonce(q, d, q, d).ndim
    0
    """
    _check_matrix(queries, "queries")
    _check_matrix(docs, "docs", queries.shape[1])
    temperature = check_number(temperature, "temperature", low=0.0, low_open=True)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    n = queries.shape[0]
    if docs.shape[0] < n:
        raise ValueError(f"docs must hold at least the N = {n} positives, got {docs.shape[0]} rows")
    if guide_queries.shape[0] != n or guide_docs.shape[0] != docs.shape[0]:
        raise ValueError("guide_queries / guide_docs must have the rows of queries / docs")
    q, d = F.normalize(queries, dim=1), F.normalize(docs, dim=1)
    qd = (q @ d.T) / temperature
    qq = (q @ q.T) / temperature
    drop_qd = gist_mask(guide_queries, guide_docs, None, margin=margin, margin_strategy=margin_strategy)
    gq = F.normalize(guide_queries, dim=1)
    gp = F.normalize(guide_docs[:n].to(gq.dtype), dim=1)
    bound = (gq * gp).sum(1, keepdim=True)  # the guide's positive score g_i+
    bound = bound - margin if margin_strategy == "absolute" else bound * (1.0 - margin)
    drop_qq = (gq @ gq.T) > bound
    drop_qq.fill_diagonal_(True)  # a query is not its own negative
    pp = (d[:n] @ d[:n].T) / temperature
    drop_pp = (gp @ gp.T) > bound
    drop_pp.fill_diagonal_(True)  # (positive i, positive i) is the positive pair itself
    logits = torch.cat([qd.masked_fill(drop_qd, -math.inf), qq.masked_fill(drop_qq, -math.inf),
                        pp.masked_fill(drop_pp, -math.inf)], 1)
    per = torch.logsumexp(logits, 1) - qd.diagonal()
    if reduction == "none":
        return per
    return per.sum() if reduction == "sum" else per.mean()


class CorpusIndex:
    """A corpus index for mining negatives, refreshed with the current encoder (ANCE).

    Args:
        encode: maps a batch of corpus inputs [b, ...] to embeddings [b, D] (run under
            ``torch.no_grad``, in eval mode if it is a module, restored afterwards).
        corpus: the corpus inputs [C, ...] (any tensor ``encode`` takes).
        refresh_every: re-encode the corpus every this many :meth:`step` calls (ANCE refreshes
            its index asynchronously during training; ``None``: only on :meth:`refresh`).
        batch_size: corpus rows encoded at once.
        normalize: L2-normalise the corpus and query embeddings (cosine scores).
        backend: ``"torch"`` (exact, :func:`topk_search`) or ``"faiss"`` (the optional extra
            ``lossatlas[faiss]``: a flat inner-product index, exact as well, or an IVF index
            when ``nlist`` is given) for the top-k searches of :meth:`search` and :meth:`mine`.
        nlist: the number of inverted lists of a ``faiss.IndexIVFFlat`` (trained on the
            corpus embeddings at each refresh; approximate); ``None``: ``faiss.IndexFlatIP``.
        nprobe: the lists an IVF search visits (faiss's default is 1).

    The state (embeddings, step and refresh counts) round-trips through
    :meth:`state_dict` / :meth:`load_state_dict`, so a resumed run mines from the index
    its checkpoint had (a faiss index is rebuilt from the embeddings).

    ``mine(query_emb, positives, num, strategy=...)`` returns corpus ids [Q, num] (−1 where a
    query has fewer candidates):

    * ``"hard"``: the ``num`` top-scored non-positive ids (static hard negatives);
    * ``"ance"``: ``num`` drawn uniformly from the top ``depth`` (ANCE: 200);
    * ``"simans"``: ``num`` drawn from the top ``depth`` with :func:`simans_probabilities`;
    * ``"random"``: ``num`` drawn uniformly from the whole corpus, positives excluded;

    each after :func:`false_negative_keep` with ``margin`` / ``ratio`` when given.

    >>> import torch
    >>> idx = CorpusIndex(lambda x: x, torch.eye(5), refresh_every=10)
    >>> idx.mine(torch.tensor([[1.0, 0.9, 0.8, 0.0, 0.0]]), torch.tensor([0]), 2, strategy="hard").tolist()
    [[1, 2]]
    """

    def __init__(self, encode: Callable[[Tensor], Tensor], corpus: Tensor, *, refresh_every: int | None = None,
                 batch_size: int = 1024, normalize: bool = True, backend: str = "torch", nlist: int | None = None,
                 nprobe: int = 1) -> None:
        if backend not in ("torch", "faiss"):
            raise ValueError(f"backend must be 'torch' or 'faiss', got {backend!r}")
        if backend == "faiss":
            _faiss()  # fail now, naming the extra, rather than at the first search
        if nlist is not None and backend != "faiss":
            raise ValueError("nlist= (an IVF index) needs backend='faiss'")
        self.backend = backend
        self.nlist = None if nlist is None else check_int(nlist, "nlist")
        self.nprobe = check_int(nprobe, "nprobe")
        self._faiss_index: Any = None
        if not callable(encode):
            raise TypeError(f"encode must be callable, got {type(encode).__name__}")
        check_tensor(corpus, "corpus")
        if corpus.dim() < 1 or corpus.shape[0] < 1:
            raise ValueError(f"corpus must hold at least one row, got shape {tuple(corpus.shape)}")
        self.encode = encode
        self.corpus = corpus
        self.refresh_every = None if refresh_every is None else check_int(refresh_every, "refresh_every")
        self.batch_size = check_int(batch_size, "batch_size")
        self.normalize = bool(normalize)
        self.steps = 0
        self.refreshes = 0
        self.embeddings = self._encode_all()

    def _encode_all(self) -> Tensor:
        module = self.encode if isinstance(self.encode, torch.nn.Module) else None
        was_training = module.training if module is not None else False
        if module is not None:
            module.eval()
        try:
            with torch.no_grad():
                parts = [self.encode(self.corpus[i : i + self.batch_size]) for i in range(0, self.corpus.shape[0], self.batch_size)]
        finally:
            if module is not None:
                module.train(was_training)
        emb = torch.cat(parts).detach()
        _check_matrix(emb, "encode(corpus)")
        return F.normalize(emb, dim=1) if self.normalize else emb

    def refresh(self) -> None:
        """Re-encode the corpus with the encoder as it is now."""
        self.embeddings = self._encode_all()
        self._faiss_index = None
        self.refreshes += 1

    def state_dict(self) -> dict[str, Any]:
        """The index's state: its embeddings and its step and refresh counts."""
        return {"embeddings": self.embeddings.clone(), "steps": self.steps, "refreshes": self.refreshes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s state (embeddings of this corpus's size)."""
        emb = state["embeddings"]
        _check_matrix(emb, "state['embeddings']")
        if emb.shape[0] != self.corpus.shape[0]:
            raise ValueError(f"state['embeddings'] has {emb.shape[0]} rows, the corpus {self.corpus.shape[0]}")
        self.embeddings = emb.detach().clone().to(self.embeddings.device)
        self.steps, self.refreshes = int(state["steps"]), int(state["refreshes"])
        self._faiss_index = None

    @torch.no_grad()
    def search(self, query_emb: Tensor, k: int, *, exclude: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Top-``k`` corpus ids by score (inner product of the, normalised if ``normalize``,
        embeddings) with the ``exclude`` ids [Q] or [Q, P] left out, as :func:`topk_search`:
        ``(scores [Q, k], ids [Q, k])``, −1 / −inf where fewer than ``k`` remain. With
        ``backend="faiss"`` the search runs in faiss (float32, CPU) and the result comes back
        on the embeddings' device and dtype."""
        _check_matrix(query_emb, "query_emb", self.embeddings.shape[1])
        k = check_int(k, "k")
        q = query_emb.detach().to(self.embeddings.device, self.embeddings.dtype)
        return self._search(F.normalize(q, dim=1) if self.normalize else q, k, exclude)

    def _search(self, q: Tensor, k: int, exclude: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.backend == "torch":
            return topk_search(q, self.embeddings, k, exclude=exclude)
        ex = _check_ids(exclude, "exclude", q.shape[0], torch.device("cpu"))
        extra = 0 if ex is None else ex.shape[1]
        size = self.embeddings.shape[0]
        want = min(k + extra, size)
        scores_np, ids_np = self._faiss().search(q.float().cpu().contiguous().numpy(), want)
        scores = torch.from_numpy(scores_np).to(self.embeddings.dtype)
        ids = torch.from_numpy(ids_np).long()
        bad = ids < 0
        if ex is not None:
            bad |= (ids.unsqueeze(2) == ex.unsqueeze(1)).any(2) & (ids >= 0)
        # keep the first k survivors of each row, best first
        rank = torch.where(bad, want, torch.arange(want).expand_as(ids))
        order = rank.sort(dim=1).values[:, : min(k, size)]
        kept = order < want
        order = order.clamp_max(max(want - 1, 0))
        out_s = torch.where(kept, scores.gather(1, order), -math.inf)
        out_i = torch.where(kept, ids.gather(1, order), -1)
        if out_i.shape[1] < min(k, size):  # fewer columns than asked: pad
            pad = min(k, size) - out_i.shape[1]
            out_s = torch.cat([out_s, out_s.new_full((q.shape[0], pad), -math.inf)], 1)
            out_i = torch.cat([out_i, out_i.new_full((q.shape[0], pad), -1)], 1)
        return out_s.to(self.embeddings.device), out_i.to(self.embeddings.device)

    def _faiss(self) -> Any:
        if self._faiss_index is None:
            faiss = _faiss()
            emb = self.embeddings.detach().float().cpu().contiguous().numpy()
            d = emb.shape[1]
            if self.nlist is None:
                index = faiss.IndexFlatIP(d)
            else:
                if self.nlist > emb.shape[0]:
                    raise ValueError(f"nlist must be at most the corpus size {emb.shape[0]}, got {self.nlist}")
                index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, self.nlist, faiss.METRIC_INNER_PRODUCT)
                index.train(emb)
                index.nprobe = self.nprobe
            index.add(emb)
            self._faiss_index = index
        return self._faiss_index

    def step(self) -> bool:
        """Count a training step; re-encode when ``refresh_every`` steps have passed. Returns
        whether it refreshed."""
        self.steps += 1
        if self.refresh_every is not None and self.steps % self.refresh_every == 0:
            self.refresh()
            return True
        return False

    @torch.no_grad()
    def _positive_scores(self, q: Tensor, pos: Tensor, needed: bool) -> Tensor:
        """s(q, d⁺) of each query's first positive id (−1 pads skipped). Where the strategy or
        the false-negative filter measures negatives against it, every query must have one."""
        valid = pos >= 0
        has = valid.any(1)
        if needed and not bool(has.all()):
            row = int((~has).nonzero()[0, 0])
            raise ValueError(f"positives: query {row} has no positive id (only -1 pads); SimANS and the "
                             "false-negative filter (margin, ratio) measure each negative against its query's positive")
        if pos.shape[1] == 0:
            return q.new_zeros(q.shape[0])
        first = pos.gather(1, valid.to(torch.uint8).argmax(1, keepdim=True)).squeeze(1).clamp_min(0)
        return (q * self.embeddings[first]).sum(-1)

    def mine(self, query_emb: Tensor, positives: Tensor, num: int, *, strategy: str = "hard", depth: int = 200,
             margin: float | None = None, ratio: float | None = None, a: float = 1.0, b: float = 0.0,
             generator: torch.Generator | None = None) -> Tensor:
        """Negative corpus ids [Q, num] for each query (see the class docstring)."""
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        _check_matrix(query_emb, "query_emb", self.embeddings.shape[1])
        num = check_int(num, "num")
        pos = _check_ids(positives, "positives", query_emb.shape[0], self.embeddings.device)
        assert pos is not None
        q = query_emb.detach().to(self.embeddings.device, self.embeddings.dtype)
        q = F.normalize(q, dim=1) if self.normalize else q
        pos_scores = self._positive_scores(q, pos, strategy == "simans" or margin is not None or ratio is not None)
        if strategy == "random":
            scores = q @ self.embeddings.T
            is_pos = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, pos.clamp_min(0), pos >= 0)
            keep = ~is_pos & false_negative_keep(scores, pos_scores, margin=margin, ratio=ratio)
            return sample_rows(keep.to(q.dtype), num, generator)
        k = num if strategy == "hard" else max(check_int(depth, "depth"), num)
        if margin is not None or ratio is not None:
            k = self.embeddings.shape[0]  # filter first, then take the top: search the whole ranking
        scores, ids = self._search(q, k, pos)
        keep = false_negative_keep(scores, pos_scores, margin=margin, ratio=ratio) & (ids >= 0)
        if strategy == "hard":
            rank = torch.where(keep, torch.arange(keep.shape[1], device=keep.device), keep.shape[1])
            first = rank.sort(1).values[:, :num]
            out = torch.where(first < keep.shape[1], ids.gather(1, first.clamp_max(keep.shape[1] - 1)), -1)
            return _pad(out, num)
        if margin is not None or ratio is not None:  # back to the top `depth` of the survivors
            rank = torch.where(keep, keep.cumsum(1), depth + 1)
            keep &= rank <= depth
        w = keep.to(q.dtype) if strategy == "ance" else simans_probabilities(scores, pos_scores, a=a, b=b, valid=keep)
        col = sample_rows(w, num, generator)
        return torch.where(col >= 0, ids.gather(1, col.clamp_min(0)), -1)


# --------------------------------------------------------------------------- registered pieces

ANCE_PAPER = Paper("L. Xiong, C. Xiong, Y. Li, K.-F. Tang, J. Liu, P. Bennett, J. Ahmed, A. Overwijk",
                   "Approximate Nearest Neighbor Negative Contrastive Learning for Dense Text Retrieval", "ICLR", 2021,
                   "2007.00808")
SIMANS_PAPER = Paper("K. Zhou, Y. Gong, X. Liu, W. X. Zhao, Y. Shen, A. Dong, J. Lu, R. Majumder, J.-R. Wen, N. Duan, "
                     "W. Chen", "SimANS: Simple Ambiguous Negatives Sampling for Dense Text Retrieval",
                     "EMNLP (industry track)", 2022, "2210.11773")
NV_PAPER = Paper("G. de Souza P. Moreira, R. Osmulski, M. Xu, R. Ak, B. Schifferer, E. Oldridge",
                 "NV-Retriever: Improving text embedding models with effective hard-negative mining", "arXiv preprint",
                 2024, "2407.15831")
GIST_PAPER = Paper("A. V. Solatorio",
                   "GISTEmbed: Guided In-sample Selection of Training Negatives for Text Embedding Fine-tuning",
                   "arXiv preprint", 2024, "2402.16829")
_ANCE = "microsoft/ANCE commands/run_train.sh"
_SIMANS = "microsoft/SimXNS SimANS/wiki/co_training_wiki_train.py"
_LIB = "lossatlas (no paper sets it)"


class NegativeMiner:
    """Base of the registered corpus miners (registry kind ``"negatives"``, catalogue G11).

    A miner holds its hyper-parameters and a seeded ``torch.Generator``; it mines from a
    :class:`CorpusIndex` it is given, so one index (one corpus encoding) serves several
    miners. ``mine(index, query_emb, positives)`` returns corpus ids [Q, num] (−1 where a query
    has fewer candidates); ``step(index)`` counts a training step and re-encodes the index
    every ``refresh_every`` steps (ANCE's periodic refresh). The generator's state and the
    step count round-trip through :meth:`state_dict`, so a resumed run draws what an
    uninterrupted one would.

    >>> import torch
    >>> from lossatlas.negatives import CorpusIndex, HardNegatives
    >>> miner = HardNegatives(2)
    >>> idx = CorpusIndex(lambda x: x, torch.eye(5))
    >>> miner.mine(idx, torch.tensor([[1.0, 0.9, 0.8, 0.0, 0.0]]), torch.tensor([0])).tolist()
    [[1, 2]]
    """

    strategy: ClassVar[str] = "hard"
    num: int
    depth: int
    margin: float | None
    ratio: float | None
    refresh_every: int | None
    seed: int
    a: float = 1.0
    b: float = 0.0

    def _setup(self, num: int, *, depth: int = 200, margin: float | None = None, ratio: float | None = None,
               refresh_every: int | None = None, seed: int = 0) -> None:
        self.num = check_int(num, "num")
        self.depth = check_int(depth, "depth")
        self.margin = None if margin is None else check_number(margin, "margin")
        self.ratio = None if ratio is None else check_number(ratio, "ratio", low=0.0)
        self.refresh_every = None if refresh_every is None else check_int(refresh_every, "refresh_every")
        self.seed = check_int(seed, "seed", low=0)
        self.steps = 0
        self._generator: torch.Generator | None = None
        self._pending_state: Tensor | None = None

    def generator(self, device: torch.device | str = "cpu") -> torch.Generator:
        """The miner's generator on ``device`` (seeded with ``seed``; moving it to another
        device restarts it from the seed)."""
        device = torch.device(device)
        if self._generator is None or self._generator.device.type != device.type:
            self._generator = torch.Generator(device).manual_seed(self.seed)
            if self._pending_state is not None and device.type == "cpu":
                self._generator.set_state(self._pending_state)
            self._pending_state = None
        return self._generator

    @torch.no_grad()
    def mine(self, index: CorpusIndex, query_emb: Tensor, positives: Tensor) -> Tensor:
        """Negative corpus ids [Q, num] for queries ``query_emb`` [Q, D] whose positive ids are
        ``positives`` [Q] or [Q, P] (−1 pads), from ``index`` as it is now."""
        if not isinstance(index, CorpusIndex):
            raise TypeError(f"index must be a lossatlas.negatives.CorpusIndex, got {type(index).__name__}")
        gen = self.generator(index.embeddings.device)
        return index.mine(query_emb, positives, self.num, strategy=self.strategy, depth=self.depth, margin=self.margin,
                          ratio=self.ratio, a=self.a, b=self.b, generator=gen)

    def step(self, index: CorpusIndex) -> bool:
        """Count a training step; re-encode ``index`` when ``refresh_every`` steps have passed
        (never when it is None). Returns whether it refreshed."""
        self.steps += 1
        if self.refresh_every is not None and self.steps % self.refresh_every == 0:
            index.refresh()
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        """Step count and generator state (CPU generators; a CUDA one restarts from ``seed``)."""
        gen = self._generator
        state = gen.get_state() if gen is not None and gen.device.type == "cpu" else self._pending_state
        return {"steps": self.steps, "generator": None if state is None else state.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s state."""
        self.steps = int(state["steps"])
        self._generator = None
        self._pending_state = None if state["generator"] is None else state["generator"].clone()

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={getattr(self, k)!r}" for k in ("num", "depth", "a", "b", "margin", "ratio",
                                                               "refresh_every", "seed") if k in _init_names(self))
        return f"{type(self).__name__}({params})"


def _init_names(obj: object) -> set[str]:
    import inspect

    return set(inspect.signature(type(obj)).parameters)


@register(
    "hard_negatives",
    aliases=("topk_negatives", "static_hard_negatives"),
    family="retrieval",
    kind="negatives",
    catalogue="G11",
    formula="negatives(q) = the num top-scored corpus ids s(q, d) = <q, d>, positives excluded",
    paper=NV_PAPER,
    code="NVIDIA NV-Retriever (paper's naive top-k baseline; no official code)",
    defaults_source={
        "margin": "None: no false-negative filter (NV-Retriever's naive top-k)",
        "ratio": "None: no false-negative filter (NV-Retriever's naive top-k)",
        "refresh_every": "None: static negatives, mined once from a fixed index",
    },
)
class HardNegatives(NegativeMiner):
    """Static top-k hard negatives: the ``num`` corpus items the index scores highest for each
    query, its positives excluded (the "naive top-k" mining that NV-Retriever, Moreira et al.,
    2024, "NV-Retriever: Improving text embedding models with effective hard-negative mining",
    compares its positive-aware filters against; DPR and RocketQA mine such negatives once,
    before training).

    .. math:: \\mathcal N(q) = \\operatorname{top}_{num}\\{\\langle q, d\\rangle : d \\notin P(q)\\}

    Args:
        num: negatives per query.
        margin / ratio: optional false-negative filter (:func:`false_negative_keep`);
            None, the naive top-k.
        refresh_every: re-encode the index every this many :meth:`step` calls (None: never).

    Deterministic: no randomness, the same index gives the same ids (ties go to the smaller id).

    Example:
        >>> import torch
        >>> from lossatlas.negatives import CorpusIndex, HardNegatives
        >>> idx = CorpusIndex(lambda x: x, torch.eye(5))
        >>> HardNegatives(2).mine(idx, torch.tensor([[1.0, 0.9, 0.8, 0.0, 0.0]]), torch.tensor([0])).tolist()
        [[1, 2]]
    """

    strategy: ClassVar[str] = "hard"

    def __init__(self, num: int, margin: float | None = None, ratio: float | None = None,
                 refresh_every: int | None = None) -> None:
        self._setup(num, margin=margin, ratio=ratio, refresh_every=refresh_every)


@register(
    "positive_aware_negatives",
    aliases=("topk_percpos", "nv_retriever_negatives"),
    family="retrieval",
    kind="negatives",
    catalogue="G11",
    formula="top num of {d : s(q, d) < ratio · s(q, d+)} (TopK-PercPos; margin: s(q, d) < s(q, d+) − margin)",
    paper=NV_PAPER,
    code="NVIDIA NV-Retriever (the paper's positive-aware mining; no official code)",
    defaults_source={
        "ratio": "NV-Retriever (Moreira et al., 2024) TopK-PercPos with 95 % of the positive's score, their best",
        "margin": "None: TopK-MarginPos off (NV-Retriever's best method is TopK-PercPos)",
        "refresh_every": "None: NV-Retriever mines once with a teacher model, before training",
    },
)
class PositiveAwareNegatives(NegativeMiner):
    """Positive-aware hard negatives (NV-Retriever, Moreira et al., 2024, "NV-Retriever:
    Improving text embedding models with effective hard-negative mining"): the top-scored
    corpus items after dropping those scored close to the positive, which are likely
    unlabelled positives (false negatives).

    .. math:: \\mathcal N(q) = \\operatorname{top}_{num}\\{d \\notin P(q) : s(q, d) < \\text{ratio}\\cdot s(q, d^+)\\}

    ``ratio`` is TopK-PercPos (95 % in the paper), ``margin`` TopK-MarginPos
    (``s(q, d) < s(q, d⁺) − margin``); both may be given. The positive's score is that of the
    first positive id of each row.

    Example:
        >>> import torch
        >>> from lossatlas.negatives import CorpusIndex, PositiveAwareNegatives
        >>> idx = CorpusIndex(lambda x: x, torch.eye(4), normalize=False)
        >>> q = torch.tensor([[0.8, 0.9, 0.7, 0.1]])  # doc 1 beats the positive 0: a likely false negative
        >>> PositiveAwareNegatives(2).mine(idx, q, torch.tensor([0])).tolist()
        [[2, 3]]
    """

    strategy: ClassVar[str] = "hard"

    def __init__(self, num: int, ratio: float | None = 0.95, margin: float | None = None,
                 refresh_every: int | None = None) -> None:
        self._setup(num, margin=margin, ratio=ratio, refresh_every=refresh_every)


@register(
    "ance",
    aliases=("ance_negatives",),
    family="retrieval",
    kind="negatives",
    catalogue="G11",
    formula="negatives(q) ~ Uniform(top depth of the index re-encoded every refresh_every steps), positives excluded",
    paper=ANCE_PAPER,
    code="microsoft/ANCE drivers/run_ann_data_gen.py",
    defaults_source={
        "num": f"{_ANCE} run_ann_data_gen.py --negative_sample 20",
        "depth": f"{_ANCE} run_ann_data_gen.py --topk_training 200 (the paper's top 200)",
        "refresh_every": f"{_ANCE} run_ann.py --save_steps 10000: new ANN negatives from each saved checkpoint",
        "margin": "None: ANCE applies no false-negative filter",
        "ratio": "None: ANCE applies no false-negative filter",
        "seed": _LIB,
    },
)
class ANCENegatives(NegativeMiner):
    """ANCE negatives (Xiong et al., 2021, "Approximate Nearest Neighbor Negative Contrastive
    Learning for Dense Text Retrieval", ICLR): ``num`` negatives drawn uniformly from the top
    ``depth`` of the corpus index of the *current* model, the index being re-encoded every
    ``refresh_every`` training steps (:meth:`step`; ANCE refreshes it asynchronously from each
    saved checkpoint).

    .. math:: \\mathcal N(q) \\sim \\mathrm{Uniform}\\big(\\operatorname{top}_{depth}\\{\\langle f_t(q), f_{t'}(d)\\rangle : d \\notin P(q)\\}\\big),\\quad t' = \\lfloor t / \\text{refresh\\_every}\\rfloor\\,\\text{refresh\\_every}

    Defaults from the official scripts: 20 negatives of the top 200, refreshed every 10,000
    steps. Draws without replacement, seeded by ``seed`` (the generator's state is in
    :meth:`state_dict`).

    Example:
        >>> import torch
        >>> from lossatlas.negatives import ANCENegatives, CorpusIndex
        >>> idx = CorpusIndex(lambda x: x, torch.eye(6))
        >>> ids = ANCENegatives(num=2, depth=3).mine(idx, torch.tensor([[1.0, 0.9, 0.8, 0.7, 0.0, 0.0]]), torch.tensor([0]))
        >>> sorted(ids[0].tolist()) in ([1, 2], [1, 3], [2, 3])
        True
    """

    strategy: ClassVar[str] = "ance"

    def __init__(self, num: int = 20, depth: int = 200, refresh_every: int | None = 10000, margin: float | None = None,
                 ratio: float | None = None, seed: int = 0) -> None:
        self._setup(num, depth=depth, margin=margin, ratio=ratio, refresh_every=refresh_every, seed=seed)


@register(
    "simans",
    aliases=("simans_negatives", "ambiguous_negatives"),
    family="retrieval",
    kind="negatives",
    catalogue="G11",
    formula="p_i ∝ exp(−a (s(q, d_i) − s(q, d+) − b)²) over the top depth candidates d_i",
    paper=SIMANS_PAPER,
    code="microsoft/SimXNS SimANS/",
    defaults_source={
        "num": f"{_SIMANS} --number_neg default 20",
        "depth": "ANCE's top 200 candidates (SimANS samples from the retriever's top-k list)",
        "a": f"{_SIMANS} --a default 0.5",
        "b": f"{_SIMANS} --b default 0 (train_NQ_AR2.sh sets 1.0)",
        "refresh_every": "microsoft/SimXNS SimANS/train_NQ_AR2.sh Iteration_step=2000 (negatives re-mined)",
        "margin": "None: SimANS's distribution itself down-weights likely false negatives",
        "ratio": "None: SimANS's distribution itself down-weights likely false negatives",
        "seed": _LIB,
    },
)
class SimANSNegatives(NegativeMiner):
    """SimANS ambiguous negatives (Zhou et al., 2022, "SimANS: Simple Ambiguous Negatives
    Sampling for Dense Text Retrieval", EMNLP industry track): ``num`` negatives drawn from the
    top ``depth`` candidates with

    .. math:: p_i \\propto \\exp\\big(-a\\,(s(q, d_i) - s(q, d^+) - b)^2\\big)

    (:func:`simans_probabilities`), which favours candidates scored near the positive (plus
    ``b``): neither easy negatives far below it nor likely false negatives far above it.
    Defaults from the official training script's arguments (a = 0.5, b = 0, 20 negatives);
    the index is re-encoded every ``refresh_every`` :meth:`step` calls (2,000 in the NQ
    script). Seeded by ``seed``.

    Example:
        >>> import torch
        >>> from lossatlas.negatives import CorpusIndex, SimANSNegatives
        >>> idx = CorpusIndex(lambda x: x, torch.eye(6), normalize=False)
        >>> q = torch.tensor([[0.5, 0.9, 0.5, 0.1, -0.8, 0.3]])  # positive 0 scores 0.5, so does doc 2
        >>> SimANSNegatives(num=1, depth=5, a=1e4).mine(idx, q, torch.tensor([0])).tolist()
        [[2]]
    """

    strategy: ClassVar[str] = "simans"

    def __init__(self, num: int = 20, depth: int = 200, a: float = 0.5, b: float = 0.0,
                 refresh_every: int | None = 2000, margin: float | None = None, ratio: float | None = None,
                 seed: int = 0) -> None:
        self._setup(num, depth=depth, margin=margin, ratio=ratio, refresh_every=refresh_every, seed=seed)
        self.a = check_number(a, "a", low=0.0, low_open=True)
        self.b = check_number(b, "b")


@register(
    "random_negatives",
    aliases=("uniform_negatives",),
    family="retrieval",
    kind="negatives",
    catalogue="G11",
    formula="negatives(q) ~ Uniform(corpus minus the positives of q)",
    paper=ANCE_PAPER,
    code="microsoft/ANCE (the random-negative baseline of the paper)",
    defaults_source={"seed": _LIB},
)
class RandomNegatives(NegativeMiner):
    """Random negatives: ``num`` corpus items drawn uniformly without replacement, the query's
    positives excluded — the easy-negative baseline that ANCE (Xiong et al., 2021) contrasts
    its ANN negatives with. Seeded by ``seed``.

    Example:
        >>> import torch
        >>> from lossatlas.negatives import CorpusIndex, RandomNegatives
        >>> idx = CorpusIndex(lambda x: x, torch.eye(4))
        >>> ids = RandomNegatives(3).mine(idx, torch.ones(1, 4), torch.tensor([2]))
        >>> sorted(ids[0].tolist())
        [0, 1, 3]
    """

    strategy: ClassVar[str] = "random"

    def __init__(self, num: int, seed: int = 0) -> None:
        self._setup(num, seed=seed)


@register(
    "gistembed",
    aliases=("gist", "gist_selector"),
    family="retrieval",
    kind="negatives",
    catalogue="G11",
    formula="drop in-batch candidate j of query i when g(q_i, d_j) > g(q_i, d_i+) − margin (g: the guide's cosine)",
    paper=GIST_PAPER,
    code="sentence-transformers losses/GISTEmbedLoss.py",
    defaults_source={
        "margin": "sentence-transformers GISTEmbedLoss(margin=0.0); the paper's rule",
        "margin_strategy": "sentence-transformers GISTEmbedLoss(margin_strategy='absolute')",
        "temperature": "sentence-transformers GISTEmbedLoss(temperature=0.01)",
    },
)
class GISTSelector:
    """GISTEmbed's guided selection of in-batch negatives (Solatorio, 2024, "GISTEmbed: Guided
    In-sample Selection of Training Negatives for Text Embedding Fine-tuning"): a guide model's
    cosine similarities ``g`` drop the in-batch candidates it scores above the positive, which
    are likely false negatives:

    .. math:: \\text{drop}_{ij} = g(q_i, d_j) > g(q_i, d_i^+) - \\text{margin}\\quad(\\text{relative: } > g(q_i, d_i^+)(1 - \\text{margin}))

    :meth:`mask` returns that bool [N, M] mask (:func:`gist_mask`); :meth:`loss` the GISTEmbed
    loss, InfoNCE over the kept candidates at ``temperature`` (:func:`gist_infonce`). The
    defaults are sentence-transformers' ``GISTEmbedLoss``'s. Deterministic; no state.

    Example:
        >>> import torch
        >>> from lossatlas.negatives import GISTSelector
        >>> g = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
        >>> GISTSelector().mask(g[:1], g, torch.tensor([1])).tolist()
        [[True, False, False]]
    """

    def __init__(self, margin: float = 0.0, margin_strategy: str = "absolute", temperature: float = 0.01) -> None:
        if margin_strategy not in ("absolute", "relative"):
            raise ValueError(f"margin_strategy must be 'absolute' or 'relative', got {margin_strategy!r}")
        self.margin = check_number(margin, "margin")
        self.margin_strategy = margin_strategy
        self.temperature = check_number(temperature, "temperature", low=0.0, low_open=True)

    def mask(self, guide_queries: Tensor, guide_docs: Tensor, positives: Tensor | None = None) -> Tensor:
        """Bool [N, M], True = drop candidate j of query i (see :func:`gist_mask`)."""
        return gist_mask(guide_queries, guide_docs, positives, margin=self.margin, margin_strategy=self.margin_strategy)

    def loss(self, queries: Tensor, docs: Tensor, guide_queries: Tensor, guide_docs: Tensor, *,
             reduction: str = "mean") -> Tensor:
        """The GISTEmbed loss of a batch (see :func:`gist_infonce`)."""
        return gist_infonce(queries, docs, guide_queries, guide_docs, temperature=self.temperature, margin=self.margin,
                            margin_strategy=self.margin_strategy, reduction=reduction)

    def __repr__(self) -> str:
        return (f"GISTSelector(margin={self.margin!r}, margin_strategy={self.margin_strategy!r}, "
                f"temperature={self.temperature!r})")


# --------------------------------------------------------------------------- NGAME mini-batching

NGAME_PAPER = Paper("K. Dahiya, N. Gupta, D. Saini, A. Soni, Y. Wang, K. Dave, J. Jiao, K. Gururaj, P. Dey, A. Singh, "
                    "D. Hada, V. Jain, B. Paliwal, A. Mittal, S. Mehta, R. Ramjee, S. Agarwal, P. Kar, M. Varma",
                    "NGAME: Negative Mining-aware Mini-batching for Extreme Classification", "WSDM", 2023, "2207.04452")
_NGAME_CFG = "Extreme-classification/ngame ngame/configs/NGAME/LF-AmazonTitles-131K.json (siamese)"


@torch.no_grad()
def balanced_clusters(embeddings: Tensor, cluster_size: int, *, generator: torch.Generator | None = None,
                      iters: int = 10) -> list[Tensor]:
    """Split the rows of ``embeddings`` [N, D] into clusters of at most ``cluster_size`` rows by
    recursive balanced 2-means on cosine similarity (NGAME's clustering, done in its official
    code by xclib's ``cluster_balance`` with ``b_kmeans_dense``).

    Each split seeds two centroids with two distinct random rows, then alternates: rank the rows
    by ``cos(x, c₀) − cos(x, c₁)``, give the first ⌈n/2⌉ to c₀ and the rest to c₁, and move each
    centroid to its half's normalised mean (``iters`` rounds at most, stopping when nothing
    moves). The splits go on for ``L = 2^⌈log₂(N / cluster_size)⌉`` leaves, so every cluster
    holds ⌊N/L⌋ or ⌈N/L⌉ rows. Returns a list of int64 index tensors (on the embeddings'
    device) that partition ``range(N)``.

    >>> import torch
    >>> x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> sorted(sorted(c.tolist()) for c in balanced_clusters(x, 2, generator=torch.Generator().manual_seed(0)))
    [[0, 1], [2, 3]]
    """
    _check_matrix(embeddings, "embeddings")
    cluster_size = check_int(cluster_size, "cluster_size")
    iters = check_int(iters, "iters")
    x = F.normalize(embeddings.detach(), dim=1)
    n = x.shape[0]
    levels = max(0, math.ceil(math.log2(n / cluster_size))) if n > cluster_size else 0
    clusters = [torch.arange(n, device=x.device)]
    for _ in range(levels):
        nxt: list[Tensor] = []
        for idx in clusters:
            if idx.numel() < 2:
                nxt.append(idx)
                continue
            nxt.extend(_split_in_two(x[idx], idx, generator, iters))
        clusters = nxt
    return clusters


def _split_in_two(x: Tensor, idx: Tensor, generator: torch.Generator | None, iters: int) -> list[Tensor]:
    n = x.shape[0]
    half = (n + 1) // 2
    pick = torch.randperm(n, generator=generator)[:2].to(x.device)
    c = x[pick]
    first = None
    for _ in range(iters):
        diff = x @ (c[0] - c[1])
        order = torch.sort(diff, descending=True, stable=True).indices
        new = order[:half]
        if first is not None and torch.equal(torch.sort(new).values, torch.sort(first).values):
            break
        first = new
        second = order[half:]
        c = F.normalize(torch.stack([x[first].mean(0), x[second].mean(0)]), dim=1)
    assert first is not None
    mask = torch.zeros(n, dtype=torch.bool, device=x.device)
    mask[first] = True
    return [idx[mask], idx[~mask]]


@register(
    "ngame",
    aliases=("ngame_sampler", "ngame_batch_sampler"),
    family="retrieval",
    kind="negatives",
    catalogue="G11",
    formula="batches = consecutive runs of a random order of balanced clusters of the current embeddings "
            "(cluster size C · 2^(#doubling epochs passed)), so in-batch negatives are hard",
    paper=NGAME_PAPER,
    code="Extreme-classification/ngame ngame/libs/shortlist.py (ClusteringIndex), libs/dataset.py",
    defaults_source={
        "cluster_size": f"{_NGAME_CFG}: sampling_init_cluster_size 1",
        "doubling_epochs": f"{_NGAME_CFG}: sampling_curr_epochs [10, 20, 25, 50, 75, 100, 125, 150, 200]",
        "drop_last": "torch DataLoader(drop_last=False): every item once per epoch",
        "seed": "0; the epoch's order is seeded with seed + epoch, as DistributedSampler",
        "num_replicas": "None = world size of the initialised process group, else 1",
        "rank": "None = rank in the initialised process group, else 0",
    },
)
class NGAMEBatchSampler(Sampler[list[int]]):
    """NGAME's negative-mining-aware mini-batches (Dahiya et al., 2023, "NGAME: Negative
    Mining-aware Mini-batching for Extreme Classification", WSDM): the training items are
    clustered by their current embeddings into balanced clusters of size ``C`` and each
    mini-batch is made of whole clusters, so the other items of a batch — its in-batch
    negatives — are near neighbours, hard negatives, at no search cost.

    .. math:: \\mathcal B_t = \\bigcup_{j \\in S_t} \\mathcal C_j,\\qquad |\\mathcal C_j| \\approx C_e = C \\cdot 2^{|\\{d \\in \\text{doubling\\_epochs} : d \\le e\\}|}

    Every epoch the clusters (of :func:`balanced_clusters`) are put in a random order seeded by
    ``seed + epoch``, concatenated, and cut into batches of ``batch_size``; when the cluster
    size divides ``batch_size`` every batch is ``batch_size / C_e`` whole clusters. Every item
    appears exactly once per epoch (the last batch may be short unless ``drop_last``). The
    curriculum follows the official code: clusters of size 1 (random batches) at first, the
    size doubling at each of ``doubling_epochs``. Call :meth:`update` with fresh embeddings
    when the encoder has moved (the official code re-encodes every 5 epochs); the clustering is
    seeded by ``seed`` and the number of updates, so a run is reproducible. Distributed: the
    epoch's batch list is the same on every rank (padded with its first batches to a multiple
    of ``num_replicas``) and rank r keeps batches r, r + R, …

    Use it as ``DataLoader(dataset, batch_sampler=NGAMEBatchSampler(emb, 256, cluster_size=16))``.

    Example:
        >>> import torch
        >>> from lossatlas.negatives import NGAMEBatchSampler
        >>> emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
        >>> sampler = NGAMEBatchSampler(emb, batch_size=2, cluster_size=2)
        >>> sorted(sorted(b) for b in sampler)
        [[0, 2], [1, 3]]
    """

    def __init__(self, embeddings: Tensor, batch_size: int, cluster_size: int = 1,
                 doubling_epochs: tuple[int, ...] = (10, 20, 25, 50, 75, 100, 125, 150, 200), drop_last: bool = False,
                 seed: int = 0, num_replicas: int | None = None, rank: int | None = None) -> None:
        from .samplers._base import resolve_replicas

        self.batch_size = check_int(batch_size, "batch_size")
        self.cluster_size = check_int(cluster_size, "cluster_size")
        if isinstance(doubling_epochs, (str, bytes)) or not all(isinstance(e, int) and not isinstance(e, bool) and e >= 0
                                                               for e in doubling_epochs):
            raise ValueError(f"doubling_epochs must be a sequence of non-negative epoch numbers, got {doubling_epochs!r}")
        self.doubling_epochs = tuple(doubling_epochs)
        self.drop_last = bool(drop_last)
        self.seed = check_int(seed, "seed", low=0)
        self.num_replicas, self.rank = resolve_replicas(num_replicas, rank)
        self.epoch = 0
        self.updates = 0
        self.embeddings = self._check(embeddings)
        self._cache: tuple[int, int, list[Tensor]] | None = None

    @staticmethod
    def _check(embeddings: Tensor) -> Tensor:
        _check_matrix(embeddings, "embeddings")
        if embeddings.shape[0] < 1:
            raise ValueError("embeddings must hold at least one row")
        return embeddings.detach()

    def update(self, embeddings: Tensor) -> None:
        """Re-cluster from ``embeddings`` [N, D] of the same N items (the encoder's current ones)."""
        emb = self._check(embeddings)
        if emb.shape[0] != self.embeddings.shape[0]:
            raise ValueError(f"embeddings must have the N = {self.embeddings.shape[0]} rows of the dataset, got {emb.shape[0]}")
        self.embeddings = emb
        self.updates += 1
        self._cache = None

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch (the order's seed is ``seed + epoch``; the cluster-size curriculum), as ``DistributedSampler``."""
        self.epoch = check_int(epoch, "epoch", low=0)

    def current_cluster_size(self) -> int:
        """The epoch's cluster size: ``cluster_size · 2^(doubling epochs ≤ epoch)``, at most N."""
        doublings = sum(1 for e in self.doubling_epochs if e <= self.epoch)
        return int(min(self.cluster_size << doublings, self.embeddings.shape[0]))

    def clusters(self) -> list[Tensor]:
        """The clusters the epoch's batches are made of (CPU int64 index tensors)."""
        size = self.current_cluster_size()
        if self._cache is None or self._cache[:2] != (self.updates, size):
            if size == 1:
                parts = [t.view(1) for t in torch.arange(self.embeddings.shape[0])]
            else:
                gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.updates)
                parts = [c.cpu() for c in balanced_clusters(self.embeddings, size, generator=gen)]
            self._cache = (self.updates, size, parts)
        return self._cache[2]

    def global_batches(self) -> list[list[int]]:
        """All of the epoch's batches (every rank's), identical on every rank."""
        parts = self.clusters()
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.cat([parts[int(j)] for j in torch.randperm(len(parts), generator=g)]).tolist()
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.num_replicas > 1 and batches:
            total = math.ceil(len(batches) / self.num_replicas) * self.num_replicas
            batches += batches[: total - len(batches)]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.global_batches()[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        n = self.embeddings.shape[0]
        count = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        return math.ceil(count / self.num_replicas)

    def state_dict(self) -> dict[str, Any]:
        """Embeddings, epoch and update count: a resumed run batches as an uninterrupted one."""
        return {"embeddings": self.embeddings.clone(), "epoch": self.epoch, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s state."""
        emb = self._check(state["embeddings"])
        if emb.shape[0] != self.embeddings.shape[0]:
            raise ValueError(f"state['embeddings'] has {emb.shape[0]} rows, the dataset {self.embeddings.shape[0]}")
        self.embeddings = emb.clone()
        self.epoch, self.updates = int(state["epoch"]), int(state["updates"])
        self._cache = None

    def __repr__(self) -> str:
        return (f"NGAMEBatchSampler(batch_size={self.batch_size}, cluster_size={self.cluster_size}, "
                f"doubling_epochs={self.doubling_epochs}, drop_last={self.drop_last}, seed={self.seed}, "
                f"num_replicas={self.num_replicas}, rank={self.rank}, epoch={self.epoch})")


def _pad(x: Tensor, num: int) -> Tensor:
    if x.shape[1] >= num:
        return x[:, :num]
    return torch.cat([x, x.new_full((x.shape[0], num - x.shape[1]), -1)], 1)


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("backend='faiss' needs the faiss extra: pip install 'lossatlas[faiss]' (faiss-cpu)") from exc
    return faiss
