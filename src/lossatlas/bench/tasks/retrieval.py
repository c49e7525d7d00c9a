"""The ``retrieval`` task: train a dense retriever with InfoNCE and one negative-mining
strategy of :mod:`lossatlas.negatives` (catalogue row G11), report Recall@k and MRR.

Data, built offline from scikit-learn's bundled digits (1,797 8×8 images): the corpus is
every image; a query is a corrupted view of one image (random shift by up to ``shift``
pixels, pixels dropped with probability ``dropout``, Gaussian noise ``noise``) whose only
relevant document is that image. Same-class digits are the hard negatives; near-identical
digits are the false negatives a miner can hit. The images of ``test_fraction`` of the corpus
are held out as test queries (fixed views drawn from the seed) and retrieve over the whole
corpus; training queries are fresh views of the others each epoch.

Recipe fields (defaults in brackets):

- ``data``: ``{"name": "digits", "shift": 1, "dropout": 0.1, "noise": 0.1, "test_fraction": 0.3}``;
- ``model``: ``{"hidden": 256, "embedding_size": 64}``: one MLP encodes queries and documents;
- ``negatives``: ``{"strategy": "none"|"random"|"hard"|"ance"|"simans", "num": 4, "depth": 50,
  "refresh_every": null, "margin": null, "ratio": null, "a": 1.0, "b": 0.0}`` ["none":
  in-batch negatives only]: :meth:`lossatlas.negatives.CorpusIndex.mine`'s arguments;
  ``refresh_every`` (steps) re-encodes the corpus with the current encoder (ANCE), ``null``
  mines from the index of the untrained encoder (static negatives);
- ``guide``: ``null`` or ``{"name": "pixels", "margin": 0.0}``: GISTEmbed's guided selection
  with the raw-pixel cosine as the guide model (:func:`lossatlas.negatives.gist_mask`);
- ``batching``: ``{"name": "random"|"ngame", "cluster_size": 8, "refresh_every": 5,
  "doubling_epochs": []}`` ["random": a shuffled order cut into batches]; ``"ngame"`` builds the
  batches of each epoch from whole clusters of the training documents' current embeddings
  (:class:`lossatlas.negatives.NGAMEBatchSampler`), re-clustered every ``refresh_every``
  epochs, so the in-batch negatives are hard (NGAME, Dahiya et al., 2023);
- ``temperature`` [0.05], ``batch_size`` [64], ``epochs`` [20], ``optimizer`` [adam 1e-3],
  ``schedule`` [cosine].

The loss is NT-Xent with a reference set (``la.functional.ntxent(queries, doc_ids,
ref_emb=cat(positives, mined), ref_labels=their doc ids)``): each query's positive is its
document, every other document of the batch and every mined one is a negative (a mined id
that is another query's positive is that query's document). Metrics: ``recall@1``,
``recall@5``, ``recall@10``, ``mrr`` (primary), ``train_time_s``, ``refreshes``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ... import functional as LF
from ...negatives import STRATEGIES, CorpusIndex, NGAMEBatchSampler, gist_mask
from ..training import build_optimizer, build_schedule, seed_everything, validate_optimizer, validate_schedule
from ._common import check_top_fields, positive_int, with_defaults

__all__ = ["validate", "run", "load_corpus", "corrupt"]

log = logging.getLogger(__name__)

_TOP_FIELDS = {"name", "description", "task", "seeds", "data", "model", "negatives", "guide", "batching",
               "temperature", "batch_size", "epochs", "optimizer", "schedule"}
_DATA = {"name": "digits", "shift": 1, "dropout": 0.1, "noise": 0.1, "test_fraction": 0.3}
_MODEL = {"hidden": 256, "embedding_size": 64}
_NEG = {"strategy": "none", "num": 4, "depth": 50, "refresh_every": None, "margin": None, "ratio": None,
        "a": 1.0, "b": 0.0}
_GUIDE = {"name": "pixels", "margin": 0.0}
_BATCHING = {"name": "random", "cluster_size": 8, "refresh_every": 5, "doubling_epochs": []}


def _number(value: Any, field: str, low: float = 0.0, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or (high is not None and value >= high):
        bound = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise ValueError(f"'{field}' must be a number {bound}, got {value!r}")
    return float(value)


def validate(recipe: dict[str, Any]) -> dict[str, Any]:
    """Check a retrieval recipe and fill in its defaults (see the module docstring)."""
    r = check_top_fields(recipe, _TOP_FIELDS, "a retrieval")
    data = with_defaults(r.get("data"), _DATA, "data")
    if data["name"] != "digits":
        raise ValueError(f"data.name must be 'digits' for the retrieval task, got {data['name']!r}")
    data["shift"] = int(_number(data["shift"], "data.shift", 0, 4))
    data["dropout"] = _number(data["dropout"], "data.dropout", 0, 1)
    data["noise"] = _number(data["noise"], "data.noise")
    data["test_fraction"] = _number(data["test_fraction"], "data.test_fraction", 0.01, 1)
    r["data"] = data
    model = with_defaults(r.get("model"), _MODEL, "model")
    model["hidden"] = positive_int(model["hidden"], "model.hidden")
    model["embedding_size"] = positive_int(model["embedding_size"], "model.embedding_size")
    r["model"] = model
    neg = with_defaults(r.get("negatives"), _NEG, "negatives")
    if neg["strategy"] not in ("none", *STRATEGIES):
        raise ValueError(f"negatives.strategy must be one of {('none', *STRATEGIES)}, got {neg['strategy']!r}")
    neg["num"] = positive_int(neg["num"], "negatives.num")
    neg["depth"] = positive_int(neg["depth"], "negatives.depth")
    if neg["refresh_every"] is not None:
        neg["refresh_every"] = positive_int(neg["refresh_every"], "negatives.refresh_every")
    for key in ("margin", "ratio"):
        if neg[key] is not None:
            neg[key] = _number(neg[key], f"negatives.{key}", -1.0)
    neg["a"] = _number(neg["a"], "negatives.a", 1e-12)
    neg["b"] = _number(neg["b"], "negatives.b", -2.0)
    r["negatives"] = neg
    if r.get("guide") is not None:
        guide = with_defaults(r["guide"], _GUIDE, "guide")
        if guide["name"] != "pixels":
            raise ValueError(f"guide.name must be 'pixels' (the raw-pixel cosine), got {guide['name']!r}")
        guide["margin"] = _number(guide["margin"], "guide.margin", -1.0)
        r["guide"] = guide
    else:
        r["guide"] = None
    bat = with_defaults(r.get("batching"), _BATCHING, "batching")
    if bat["name"] not in ("random", "ngame"):
        raise ValueError(f"batching.name must be 'random' or 'ngame', got {bat['name']!r}")
    bat["cluster_size"] = positive_int(bat["cluster_size"], "batching.cluster_size")
    bat["refresh_every"] = positive_int(bat["refresh_every"], "batching.refresh_every")
    if not isinstance(bat["doubling_epochs"], list):
        raise ValueError(f"batching.doubling_epochs must be a list of epochs, got {bat['doubling_epochs']!r}")
    bat["doubling_epochs"] = [positive_int(e, "batching.doubling_epochs") for e in bat["doubling_epochs"]]
    r["batching"] = bat
    r["temperature"] = _number(r.get("temperature", 0.05), "temperature", 1e-6)
    r["batch_size"] = positive_int(r.get("batch_size", 64), "batch_size")
    epochs = r.get("epochs", 20)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"'epochs' must be a non-negative int (0 = evaluate the untrained encoder), got {epochs!r}")
    r["epochs"] = epochs
    r["optimizer"] = validate_optimizer(r.get("optimizer") or {"name": "adam", "lr": 1e-3})
    r["schedule"] = validate_schedule(r.get("schedule") or {"name": "cosine"})
    return r


def load_corpus() -> torch.Tensor:
    """scikit-learn's bundled digits as a float32 corpus [1797, 64] in [0, 1] (no download)."""
    from sklearn.datasets import load_digits

    return torch.as_tensor(load_digits().data, dtype=torch.float32) / 16.0


def corrupt(x: torch.Tensor, shift: int, dropout: float, noise: float, generator: torch.Generator) -> torch.Tensor:
    """One corrupted view of each 8×8 image of ``x`` [n, 64]: a random shift of up to ``shift``
    pixels per axis (zeros shifted in), pixels dropped with probability ``dropout``, and
    Gaussian noise of standard deviation ``noise``."""
    n = x.shape[0]
    img = x.view(n, 8, 8)
    if shift > 0:
        padded = F.pad(img, (shift, shift, shift, shift))
        dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
        rows = (dy.view(n, 1) + torch.arange(8).view(1, 8)).view(n, 8, 1).expand(n, 8, 8)
        cols = (dx.view(n, 1) + torch.arange(8).view(1, 8)).view(n, 1, 8).expand(n, 8, 8)
        img = padded[torch.arange(n).view(n, 1, 1), rows, cols]
    out = img.reshape(n, 64)
    if dropout > 0:
        out = out * (torch.rand(out.shape, generator=generator) >= dropout)
    if noise > 0:
        out = out + noise * torch.randn(out.shape, generator=generator)
    return out


def _encoder(hidden: int, emb: int) -> nn.Module:
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, emb))


@torch.no_grad()
def _embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's embeddings of ``x`` (eval mode, no gradient; train mode restored)."""
    was = model.training
    model.eval()
    out: torch.Tensor = model(x)
    model.train(was)
    return out


@torch.no_grad()
def _evaluate(model: nn.Module, corpus: torch.Tensor, queries: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    model.eval()
    d = F.normalize(model(corpus), dim=1)
    q = F.normalize(model(queries), dim=1)
    s = q @ d.T
    rank = (s > s.gather(1, targets.view(-1, 1))).sum(1) + 1  # 1 = the positive is first
    out = {f"recall@{k}": float((rank <= k).double().mean()) for k in (1, 5, 10)}
    out["mrr"] = float((1.0 / rank.double()).mean())
    model.train()
    return out


def run(recipe: dict[str, Any], seed: int, device: torch.device, progress: Callable[..., None] | None = None) -> dict[str, Any]:
    """Train the retriever with the recipe's negatives and evaluate on the held-out queries."""
    r = validate(recipe)
    gen = seed_everything(seed, deterministic=device.type == "cpu")
    corpus = load_corpus()
    n = corpus.shape[0]
    perm = torch.randperm(n, generator=gen)
    n_test = max(1, int(round(r["data"]["test_fraction"] * n)))
    test_ids, train_ids = perm[:n_test], perm[n_test:]
    dcfg = r["data"]
    test_q = corrupt(corpus[test_ids], dcfg["shift"], dcfg["dropout"], dcfg["noise"], gen)
    model = _encoder(r["model"]["hidden"], r["model"]["embedding_size"]).to(device)
    corpus_d = corpus.to(device)
    neg, guide = r["negatives"], r["guide"]
    bs, epochs = r["batch_size"], r["epochs"]
    steps = max(1, train_ids.numel() // bs)
    index = None
    bat = r["batching"]
    sampler = None
    if bat["name"] == "ngame":
        sampler = NGAMEBatchSampler(_embed(model, corpus_d[train_ids.to(device)]), bs, cluster_size=bat["cluster_size"],
                                    doubling_epochs=tuple(bat["doubling_epochs"]), drop_last=True, seed=seed)
    if neg["strategy"] != "none":
        index = CorpusIndex(model, corpus_d, refresh_every=neg["refresh_every"], batch_size=2048)
    t0 = time.perf_counter()
    last = float("nan")
    if epochs > 0:
        optimizer = build_optimizer(model.parameters(), r["optimizer"])
        scheduler = build_schedule(optimizer, r["schedule"], epochs, steps)
        for epoch in range(epochs):
            if sampler is not None:
                if epoch > 0 and epoch % bat["refresh_every"] == 0:
                    sampler.update(_embed(model, corpus_d[train_ids.to(device)]))
                sampler.set_epoch(epoch)
                batches = [train_ids[torch.tensor(b)] for b in sampler]
            else:
                order = train_ids[torch.randperm(train_ids.numel(), generator=gen)]
                batches = [order[s * bs : (s + 1) * bs] for s in range(steps)]
            running = 0.0
            for ids in batches:
                xq = corrupt(corpus[ids], dcfg["shift"], dcfg["dropout"], dcfg["noise"], gen).to(device)
                q = model(xq)
                ref_ids = ids.to(device)
                if index is not None:
                    mined = index.mine(q, ref_ids, neg["num"], strategy=neg["strategy"], depth=neg["depth"],
                                       margin=neg["margin"], ratio=neg["ratio"], a=neg["a"], b=neg["b"], generator=gen)
                    mined = mined[mined >= 0]
                    ref_ids = torch.cat([ref_ids, mined.to(device)])
                ref = model(corpus_d[ref_ids])
                indices = None
                if guide is not None:
                    drop = gist_mask(xq, corpus_d[ref_ids], torch.arange(ids.numel(), device=device),
                                     margin=guide["margin"])
                    same = ref_ids.view(1, -1) == ids.to(device).view(-1, 1)
                    a1, p = torch.nonzero(same, as_tuple=True)
                    a2, nn_ = torch.nonzero(~same & ~drop, as_tuple=True)
                    indices = (a1, p, a2, nn_)
                loss = LF.ntxent(q, ids.to(device), ref_emb=ref, ref_labels=ref_ids, indices=indices,
                                 temperature=r["temperature"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                if index is not None:
                    index.step()
                running += float(loss.detach())
            last = running / max(1, len(batches))
            if progress is not None:
                progress(epoch + 1, epochs, f"loss {last:.4f}")
    train_time = time.perf_counter() - t0
    out: dict[str, Any] = dict(_evaluate(model, corpus_d, test_q.to(device), test_ids.to(device)))
    out.update({"train_time_s": train_time, "final_train_loss": last, "n_train_queries": int(train_ids.numel()),
                "n_test_queries": int(n_test), "corpus_size": int(n),
                "refreshes": int(index.refreshes) if index is not None else 0})
    log.info("retrieval %s seed %d: mrr %.3f recall@1 %.3f", neg["strategy"], seed, out["mrr"], out["recall@1"])
    out["primary_metric"] = "mrr"
    return out
