"""The ``metric`` task: train an embedding on some classes with a metric-learning loss and
evaluate retrieval on classes the model never saw (the zero-shot retrieval protocol of
deep metric learning: CUB / Cars / SOP train on the first half of the classes and test on
the second).

Recipe fields (defaults in brackets):

- ``data``: ``{"name": "mnist1d", "num_samples": 10000, "train_classes": [0..6],
  "test_classes": [7, 8, 9]}``. Training uses the training split of ``train_classes``;
  retrieval is evaluated on ALL samples (both splits) of ``test_classes``, leave-one-out
  (each sample queries all the others). ``seen_recall@1`` / ``seen_map@r`` are measured on
  the test split of the training classes.
- ``model``: ``{"name": "cnn1d"|"mlp", <options>, "embedding_size": 64}`` [cnn1d]; the
  model's head outputs the embedding.
- ``loss``: ``{"id": <registry id of an embedding-kind loss>, <options>}`` [multi_similarity];
  ``num_classes`` (the number of training classes) and ``embedding_size`` are filled in
  for classifier-style losses, whose class weights are trained with the model.
- ``regularizer``: ``null`` or ``{"id": <embedding loss>, <options>, "weight": 1.0}``, added
  to the loss (e.g. ``threshold_consistent_margin``).
- ``miner``: ``null`` or ``{"name": "batch_hard"|"semi_hard"|"triplet_margin"|
  "multi_similarity", <options>}`` (:mod:`lossatlas.miners`), passed as ``indices=``.
- ``sampler``: ``{"p": 7, "k": 16}``: :class:`lossatlas.samplers.PKBatchSampler`, P classes ×
  K samples per batch; ``steps_per_epoch`` [40] batches an epoch.
- ``optimizer``, ``schedule``: see :mod:`lossatlas.bench.training` [adam 1e-3, cosine].
- ``epochs`` [15].

Metrics: ``recall@1``, ``recall@2``, ``recall@4``, ``recall@8``, ``r_precision``, ``map@r``
(:func:`lossatlas.metrics.retrieval_metrics`, cosine similarity), the seen-class versions,
``train_time_s``, ``n_train``, ``n_query``, ``final_train_loss`` and ``curves`` (per
epoch: ``epoch``, ``train_loss``, the epoch's mean).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

import numpy as np
import torch

from ...data import datasets as ds
from ..models import build_model
from ..training import build_optimizer, build_schedule, seed_everything, validate_optimizer, validate_schedule
from ._common import (
    check_entry,
    check_kwargs,
    check_top_fields,
    create,
    embedding_model,
    mnist1d_data,
    positive_int,
    predict,
    with_defaults,
)

__all__ = ["validate", "run", "MINERS"]

log = logging.getLogger(__name__)

_TOP_FIELDS = {"name", "description", "task", "seeds", "data", "model", "loss", "regularizer", "miner", "sampler",
               "optimizer", "schedule", "epochs", "steps_per_epoch"}
_INJECTED = {"num_classes", "embedding_size", "reduction", "validate"}
MINERS = {"batch_hard": "BatchHardMiner", "semi_hard": "BatchSemiHardMiner", "triplet_margin": "TripletMarginMiner",
          "multi_similarity": "MultiSimilarityMiner"}


def _check_loss(spec: Any, field: str, extra: Collection[str] = frozenset()) -> dict[str, Any] | None:
    return check_entry(spec, field, ("embedding",), _INJECTED, "; the metric task needs an embedding loss", extra)


def _class_list(value: Any, field: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 10 for c in value):
        raise ValueError(f"data.{field} must be a non-empty list of MNIST-1D class ids in [0, 10), got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"data.{field} has repeated classes: {value!r}")
    return sorted(value)


def validate(recipe: dict[str, Any]) -> dict[str, Any]:
    """Check a metric recipe and fill in its defaults (see the module docstring)."""
    r = check_top_fields(recipe, _TOP_FIELDS, "a metric")
    data = mnist1d_data(r.get("data"), "metric", {"num_samples": 10000, "train_classes": list(range(7)), "test_classes": [7, 8, 9]})
    data["train_classes"] = _class_list(data["train_classes"], "train_classes")
    data["test_classes"] = _class_list(data["test_classes"], "test_classes")
    if set(data["train_classes"]) & set(data["test_classes"]):
        raise ValueError("data.train_classes and data.test_classes must be disjoint (retrieval is on unseen classes)")
    check_kwargs(ds.load_mnist1d, {k: v for k, v in data.items() if k not in ("name", "train_classes", "test_classes")}, "data")
    r["data"] = data
    r["model"] = embedding_model(r.get("model"), "metric")
    r["loss"] = _check_loss(r.get("loss") or {"id": "multi_similarity"}, "loss")
    reg = _check_loss(r.get("regularizer"), "regularizer", {"weight"})
    if reg is not None:
        reg = {"weight": 1.0, **reg}
        if isinstance(reg["weight"], bool) or not isinstance(reg["weight"], (int, float)) or reg["weight"] < 0:
            raise ValueError(f"regularizer.weight must be a non-negative number, got {reg['weight']!r}")
    r["regularizer"] = reg
    miner = r.get("miner")
    if miner is not None:
        if not isinstance(miner, dict) or miner.get("name") not in MINERS:
            raise ValueError(f"'miner' must be null or an object with name one of {sorted(MINERS)}, got {miner!r}")
        from ... import miners as miners_mod

        check_kwargs(getattr(miners_mod, MINERS[miner["name"]]).__init__, {k: v for k, v in miner.items() if k != "name"}, "miner")
    r["miner"] = miner
    sampler = with_defaults(r.get("sampler"), {"p": min(7, len(data["train_classes"])), "k": 16}, "sampler")
    positive_int(sampler["p"], "sampler.p")
    positive_int(sampler["k"], "sampler.k")
    if sampler["p"] > len(data["train_classes"]):
        raise ValueError(f"sampler.p = {sampler['p']} exceeds the {len(data['train_classes'])} training classes")
    r["sampler"] = sampler
    r["optimizer"] = validate_optimizer(r.get("optimizer") or {"name": "adam", "lr": 1e-3})
    r["schedule"] = validate_schedule(r.get("schedule") or {"name": "cosine"})
    r["epochs"] = positive_int(r.get("epochs", 15), "epochs")
    r["steps_per_epoch"] = positive_int(r.get("steps_per_epoch", 40), "steps_per_epoch")
    return r


def run(recipe: dict[str, Any], seed: int, device: torch.device, progress: Callable[..., None] | None = None) -> dict[str, Any]:
    """Train an embedding on the training classes and evaluate retrieval on the unseen ones."""
    from ... import metrics as M
    from ... import miners as miners_mod
    from ...samplers import PKBatchSampler

    r = validate(recipe)
    seed_everything(seed, deterministic=device.type == "cpu")
    d = r["data"]
    data = ds.load_mnist1d(**{k: v for k, v in d.items() if k not in ("name", "train_classes", "test_classes")})
    train_classes, test_classes = d["train_classes"], d["test_classes"]
    remap = np.full(data.num_classes, -1, dtype=np.int64)
    remap[train_classes] = np.arange(len(train_classes))
    tr = np.isin(data.y_train, train_classes)
    x_tr, y_tr = data.x_train[tr], remap[data.y_train[tr]]
    x_all = np.concatenate([data.x_train, data.x_test])
    y_all = np.concatenate([data.y_train, data.y_test])
    unseen = np.isin(y_all, test_classes)
    seen_te = np.isin(data.y_test, train_classes)

    emb_size = r["model"]["embedding_size"]
    model = build_model({k: v for k, v in r["model"].items() if k != "embedding_size"}, x_tr.shape[1:], emb_size).to(device)
    available = {"num_classes": len(train_classes), "embedding_size": emb_size}
    criterion = create(r["loss"], set(), available).to(device)
    reg = None if r["regularizer"] is None else create(r["regularizer"], {"weight"}, available).to(device)
    miner = None
    if r["miner"] is not None:
        miner = getattr(miners_mod, MINERS[r["miner"]["name"]])(**{k: v for k, v in r["miner"].items() if k != "name"})
    params = list(model.parameters()) + list(criterion.parameters()) + ([] if reg is None else list(reg.parameters()))
    optimizer = build_optimizer(params, r["optimizer"])
    epochs, steps = r["epochs"], r["steps_per_epoch"]
    scheduler = build_schedule(optimizer, r["schedule"], epochs, steps)
    sampler = PKBatchSampler(y_tr, p=r["sampler"]["p"], k=r["sampler"]["k"], num_batches=steps, seed=seed)
    xt = torch.as_tensor(x_tr, device=device)
    yt = torch.as_tensor(y_tr, device=device)
    pair_loss = "indices" in inspect.signature(criterion.forward).parameters

    t0 = time.perf_counter()
    last = float("nan")
    curves: dict[str, list[float]] = {"epoch": [], "train_loss": []}
    for epoch in range(epochs):
        model.train()
        sampler.set_epoch(epoch)
        running, seen = 0.0, 0
        for batch in sampler:
            b = torch.as_tensor(batch, dtype=torch.long, device=device)
            emb, labels = model(xt[b]), yt[b]
            kwargs = {"indices": miner(emb, labels)} if miner is not None and pair_loss else {}
            loss = criterion(emb, labels, **kwargs)
            if reg is not None:
                loss = loss + r["regularizer"]["weight"] * reg(emb, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += float(loss.detach())
            seen += 1
        last = running / max(1, seen)
        curves["epoch"].append(epoch + 1)
        curves["train_loss"].append(last)
        if progress is not None:
            progress(epoch + 1, epochs, f"loss {last:.4f}")
    train_time = time.perf_counter() - t0

    q = predict(model, torch.as_tensor(x_all[unseen], device=device))
    out: dict[str, Any] = dict(M.retrieval_metrics(q, torch.as_tensor(y_all[unseen])))
    s = predict(model, torch.as_tensor(data.x_test[seen_te], device=device))
    seen_metrics = M.retrieval_metrics(s, torch.as_tensor(data.y_test[seen_te]), ks=(1,))
    out["seen_recall@1"] = seen_metrics["recall@1"]
    out["seen_map@r"] = seen_metrics["map@r"]
    out.update({"train_time_s": train_time, "n_train": int(len(y_tr)), "n_query": int(unseen.sum()), "final_train_loss": last, "curves": curves})
    out["primary_metric"] = "map@r"  # the report ranks by it (Musgrave et al. 2020's headline metric)
    log.info("metric %s seed %d: recall@1 %.3f map@r %.3f", r["loss"]["id"], seed, out["recall@1"], out["map@r"])
    return out
