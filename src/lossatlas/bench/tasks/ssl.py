"""The ``ssl`` task: self-supervised contrastive pre-training on MNIST-1D, evaluated by a
linear probe and by retrieval (Recall@k) on the frozen representation.

Each step draws a batch of training signals (labels unused), makes two augmented views of
each (random time scaling, circular shift, amplitude scaling, additive Gaussian noise —
the nuisances MNIST-1D itself is generated with), embeds both with the encoder and applies a ``pair``-kind
loss (:mod:`lossatlas.losses.ssl`: InfoNCE, SigLIP, DCL, debiased, HCL, MoCHi,
Barlow Twins, W-MSE). The representation evaluated is the encoder's backbone
(``model.features``, before the projection head), as in SimCLR.

Recipe fields (defaults in brackets):

- ``data``: ``{"name": "mnist1d", "num_samples": 5000}``.
- ``model``: ``{"name": "cnn1d"|"mlp", <options>, "embedding_size": 64}`` [cnn1d]; the
  model's head is the projection to the loss's embedding.
- ``loss``: ``{"id": <registry id of a pair-kind loss>, <options>}`` [infonce].
- ``augment``: ``{"shift": 10, "scale": 0.3, "amplitude": 0.2, "noise": 0.3}``: time scaling
  by a factor uniform in [1 - scale, 1 + scale], circular shifts uniform in [-shift, shift]
  samples, amplitude factors uniform in [1 - amplitude, 1 + amplitude], Gaussian noise std
  (MNIST-1D signals have unit variance). Weaker views (shift 4, scale 0.2, noise 0.1) let
  the encoder match views by low-level detail: after 10 epochs its probe was no better
  than the untrained encoder's.
- ``batch_size`` [256]; ``epochs`` [10], 0 evaluates the untrained (random) encoder; one
  epoch = ``n_train // batch_size`` steps.
- ``chunk_size`` [null]: when set, each step uses
  :func:`lossatlas.distributed.cached_backward` (GradCache) with that many samples per
  encoder call: same gradients, encoder memory of one chunk.
- ``probe``: ``{"max_iter": 200, "weight_decay": 1e-4}``:
  :func:`lossatlas.metrics.fit_linear_probe` (logistic regression on standardised frozen
  features, full-batch L-BFGS).
- ``optimizer``, ``schedule``: see :mod:`lossatlas.bench.training` [adam 1e-3, cosine].

Metrics: ``probe_accuracy`` (test split), ``recall@1``, ``recall@2``, ``recall@4``,
``recall@8``, ``map@r`` (:func:`lossatlas.metrics.retrieval_metrics` on the test split,
leave-one-out, cosine), ``train_time_s``, ``final_train_loss``, ``n_train``; plus
``per_class_accuracy`` of the probe and, when it trains, ``curves`` (per epoch: ``epoch``,
``train_loss``, the epoch's mean).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch

from ... import registry
from ...data import datasets as ds
from ..models import build_model
from ..training import build_optimizer, build_schedule, seed_everything, validate_optimizer, validate_schedule
from ._common import (
    check_entry,
    check_kwargs,
    check_top_fields,
    embedding_model,
    mnist1d_data,
    positive_int,
    predict,
    with_defaults,
)

__all__ = ["validate", "run", "augment"]

log = logging.getLogger(__name__)

_TOP_FIELDS = {"name", "description", "task", "seeds", "data", "model", "loss", "augment", "batch_size", "epochs",
               "chunk_size", "probe", "optimizer", "schedule"}
_INJECTED = {"reduction", "validate", "distributed"}
_AUGMENT = {"shift": 10, "scale": 0.3, "amplitude": 0.2, "noise": 0.3}
_PROBE = {"max_iter": 200, "weight_decay": 1e-4}


def _non_negative(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"'{field}' must be a non-negative number, got {value!r}")
    return float(value)


def validate(recipe: dict[str, Any]) -> dict[str, Any]:
    """Check an ssl recipe and fill in its defaults (see the module docstring)."""
    r = check_top_fields(recipe, _TOP_FIELDS, "an ssl")
    data = mnist1d_data(r.get("data"), "ssl", {"num_samples": 5000})
    check_kwargs(ds.load_mnist1d, {k: v for k, v in data.items() if k != "name"}, "data")
    r["data"] = data
    r["model"] = embedding_model(r.get("model"), "ssl")
    need = "; the ssl task needs a pair loss (a[N, D], b[N, D])"
    r["loss"] = check_entry(r.get("loss") or {"id": "infonce"}, "loss", ("pair",), _INJECTED, need)
    aug = with_defaults(r.get("augment"), _AUGMENT, "augment")
    aug["shift"] = int(_non_negative(aug["shift"], "augment.shift"))
    aug["scale"] = _non_negative(aug["scale"], "augment.scale")
    if aug["scale"] >= 1:
        raise ValueError(f"augment.scale must be < 1 (amplitude factors in [1 - scale, 1 + scale]), got {aug['scale']}")
    aug["amplitude"] = _non_negative(aug["amplitude"], "augment.amplitude")
    if aug["amplitude"] >= 1:
        raise ValueError(f"augment.amplitude must be < 1, got {aug['amplitude']}")
    aug["noise"] = _non_negative(aug["noise"], "augment.noise")
    r["augment"] = aug
    r["batch_size"] = positive_int(r.get("batch_size", 256), "batch_size")
    epochs = r.get("epochs", 10)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"'epochs' must be a non-negative int (0 = evaluate the untrained encoder), got {epochs!r}")
    r["epochs"] = epochs
    chunk = r.get("chunk_size")
    r["chunk_size"] = None if chunk is None else positive_int(chunk, "chunk_size")
    probe = with_defaults(r.get("probe"), _PROBE, "probe")
    probe["max_iter"] = positive_int(probe["max_iter"], "probe.max_iter")
    probe["weight_decay"] = _non_negative(probe["weight_decay"], "probe.weight_decay")
    r["probe"] = probe
    r["optimizer"] = validate_optimizer(r.get("optimizer") or {"name": "adam", "lr": 1e-3})
    r["schedule"] = validate_schedule(r.get("schedule") or {"name": "cosine"})
    return r


def augment(x: torch.Tensor, shift: int, scale: float, noise: float, generator: torch.Generator | None = None,
            amplitude: float = 0.0) -> torch.Tensor:
    """One random view of each signal of ``x`` [N, L]: time scaling about the centre (factor
    uniform in [1 - scale, 1 + scale], linear interpolation, edge values held), circular
    shift, amplitude scaling (factor in [1 - amplitude, 1 + amplitude]), Gaussian noise."""
    n, length = x.shape
    dev = x.device
    if scale > 0:
        factor = (1 + scale * (2 * torch.rand((n, 1), generator=generator, dtype=torch.float64) - 1)).to(dev)
        centre = (length - 1) / 2
        pos = (centre + (torch.arange(length, device=dev, dtype=torch.float64)[None, :] - centre) / factor).clamp(0, length - 1)
        lo = pos.floor().long().clamp(max=length - 2)
        w = (pos - lo).to(x.dtype)
        x = x.gather(1, lo) * (1 - w) + x.gather(1, lo + 1) * w
    if shift > 0:
        s = torch.randint(-shift, shift + 1, (n, 1), generator=generator).to(dev)
        idx = (torch.arange(length, device=dev)[None, :] - s) % length
        x = x.gather(1, idx)
    if amplitude > 0:
        x = x * (1 + amplitude * (2 * torch.rand((n, 1), generator=generator) - 1)).to(dev, x.dtype)
    if noise > 0:
        x = x + noise * torch.randn(x.shape, generator=generator).to(dev, x.dtype)
    return x


def run(recipe: dict[str, Any], seed: int, device: torch.device, progress: Callable[..., None] | None = None) -> dict[str, Any]:
    """Pre-train with the recipe's pair loss, then probe and retrieve on the frozen features."""
    from ... import metrics as M
    from ...distributed import cached_backward

    r = validate(recipe)
    gen = seed_everything(seed, deterministic=device.type == "cpu")
    data = ds.load_mnist1d(**{k: v for k, v in r["data"].items() if k != "name"})
    x_tr = torch.as_tensor(data.x_train, dtype=torch.float32)
    x_te = torch.as_tensor(data.x_test, dtype=torch.float32)
    y_tr, y_te = torch.as_tensor(data.y_train), torch.as_tensor(data.y_test)

    emb = r["model"]["embedding_size"]
    model = build_model({k: v for k, v in r["model"].items() if k != "embedding_size"}, x_tr.shape[1:], emb).to(device)
    aug, bs, epochs = r["augment"], r["batch_size"], r["epochs"]
    n = x_tr.shape[0]
    steps = max(1, n // bs)
    t0 = time.perf_counter()
    last = float("nan")
    curves: dict[str, list[float]] = {"epoch": [], "train_loss": []}
    if epochs > 0:
        criterion = registry.create(r["loss"]["id"], **{k: v for k, v in r["loss"].items() if k != "id"}).to(device)
        optimizer = build_optimizer(list(model.parameters()) + list(criterion.parameters()), r["optimizer"])
        scheduler = build_schedule(optimizer, r["schedule"], epochs, steps)
        xd = x_tr.to(device)
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(n, generator=gen)
            running = 0.0
            for s in range(steps):
                xb = xd[perm[s * bs : (s + 1) * bs].to(device)]
                va = augment(xb, aug["shift"], aug["scale"], aug["noise"], gen, aug["amplitude"])
                vb = augment(xb, aug["shift"], aug["scale"], aug["noise"], gen, aug["amplitude"])
                optimizer.zero_grad(set_to_none=True)
                if r["chunk_size"] is None:
                    loss = criterion(model(va), model(vb))
                    loss.backward()
                else:
                    loss = cached_backward(criterion, model, [va, vb], chunk_size=r["chunk_size"])
                optimizer.step()
                scheduler.step()
                running += float(loss.detach())
            last = running / steps
            curves["epoch"].append(epoch + 1)
            curves["train_loss"].append(last)
            if progress is not None:
                progress(epoch + 1, epochs, f"loss {last:.4f}")
    train_time = time.perf_counter() - t0

    f_tr, f_te = predict(model, x_tr.to(device), features=True), predict(model, x_te.to(device), features=True)
    w, b, mu, sd = M.fit_linear_probe(f_tr, y_tr, data.num_classes, r["probe"]["weight_decay"], r["probe"]["max_iter"])
    logits = ((f_te.double() - mu) / sd) @ w.T + b
    out: dict[str, Any] = {"probe_accuracy": float((logits.argmax(1) == y_te).float().mean())}
    out.update(M.retrieval_metrics(f_te, y_te))
    out["per_class_accuracy"] = M.per_class_accuracy(logits, y_te, data.num_classes)
    out.update({"train_time_s": train_time, "final_train_loss": last, "n_train": int(n)})
    if curves["epoch"]:
        out["curves"] = curves
    log.info("ssl %s seed %d: probe %.3f recall@1 %.3f", r["loss"]["id"] if epochs else "untrained", seed,
             out["probe_accuracy"], out["recall@1"])
    out["primary_metric"] = "probe_accuracy"  # the report ranks by it
    return out
