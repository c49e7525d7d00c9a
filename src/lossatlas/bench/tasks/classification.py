"""The ``classification`` task: train a classifier under a long-tail and/or label-noise
protocol and evaluate it on the (balanced, clean) test split.

Recipe fields (defaults in brackets; see :mod:`lossatlas.bench.recipes` for an example):

- ``data``: ``{"name": "mnist1d"|"digits"|"cifar"|"npz", <loader options>, "longtail": {...},
  "noise": {...}}`` [mnist1d, 5,000 samples]. Loader options are those of
  :mod:`lossatlas.data.datasets` (``num_samples`` for MNIST-1D, ``path`` for cifar/npz, ...).
  ``longtail``: ``{"imbalance_ratio": 100, "profile": "exp"|"step", "seed": <run seed>}``
  subsamples the training split (:func:`lossatlas.data.longtail.make_longtail`); ``noise``:
  ``{"type": "symmetric"|"pair_flip"|"asymmetric_cifar10"|"cifar100_superclass"|
  "instance_dependent", "rate": 0.4, "seed": <run seed>}`` corrupts the training labels
  (:mod:`lossatlas.data.noise`), after the long-tail subset. The test split is never touched.
- ``model``: ``{"name": "cnn1d"|"mlp"|"resnet32", <options>}`` [cnn1d for MNIST-1D, resnet32
  for cifar, mlp otherwise].
- ``loss``: ``{"id": <registry id>, <options>}`` [cross_entropy]; ``class_counts`` (training
  labels as the loss sees them) and ``num_classes`` are filled in when the loss takes them.
- ``weighting``: ``null`` or ``{"id": <registry id>, <options>, "start_fraction": f}``;
  composed with the loss by :func:`lossatlas.weighting.apply`; ``start_fraction`` sets an
  epoch-switched weighting's ``start_epoch = round(f · epochs)`` (DRW: 160/200 = 0.8).
- ``sampler``: ``null`` (uniform shuffling) or ``{"id": <registry id of a sampler>, <options>}``.
- ``optimizer``, ``schedule``: see :mod:`lossatlas.bench.training` [sgd 0.1, constant].
- ``epochs`` [30], ``batch_size`` [128], ``grad_clip`` [null: gradient-norm clipping].
- ``stage2``: ``null`` or ``{"id": <registry id of kind two_stage: crt, tau_norm, lws,
  weight_balancing>, <options>, "loss": {...}, "weighting": {...}}``: after the ``epochs`` of
  stage 1, decoupled stage 2 (:func:`lossatlas.two_stage.fit_stage_two`) on the model's linear
  classifier ``fc``, with the method's own schedule, sampler and cap, minimising its ``loss``
  (default: the recipe's ``loss``) composed with its ``weighting`` (default: none).

Metrics come from :func:`lossatlas.metrics.evaluate` on the test logits, with the training
class counts for the many/medium/few-shot splits; plus ``per_class_accuracy``,
``reliability`` and ``class_counts`` for the report, ``curves`` (per epoch: ``epoch``,
``train_loss`` — the mean training loss over the epoch's samples — and
``test_balanced_accuracy``, of the model at the end of that epoch; stage 1's epochs when
there is a ``stage2``), and ``train_time_s``,
``eval_time_s`` (the final evaluation and the per-epoch test passes), ``n_train``,
``noise_rate_realised``.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable, Collection
from typing import Any

import numpy as np
import torch
from torch import nn

from ...data import datasets as ds
from ...data.longtail import make_longtail
from ..models import MODELS, build_model
from ..training import build_optimizer, build_schedule, seed_everything, validate_optimizer, validate_schedule
from ._common import check_entry, check_kwargs, check_top_fields, create, positive_int, predict

__all__ = ["validate", "run", "check_data"]

log = logging.getLogger(__name__)

_TOP_FIELDS = {"name", "description", "task", "seeds", "data", "model", "loss", "weighting", "sampler", "optimizer", "schedule", "epochs", "batch_size", "grad_clip", "stage2"}
_NOISE_TYPES = ("symmetric", "pair_flip", "asymmetric_cifar10", "cifar100_superclass", "instance_dependent")
_INJECTED = {"class_counts", "num_classes", "reduction", "validate", "labels", "seed", "num_epochs"}


def _check_entry(spec: Any, field: str, kinds: tuple[str, ...], extra: Collection[str] = frozenset()) -> dict[str, Any] | None:
    return check_entry(spec, field, kinds, _INJECTED, extra=extra, open_ended=True)


def validate(recipe: dict[str, Any]) -> dict[str, Any]:
    """Check a classification recipe and fill in its defaults (see the module docstring)."""
    r = check_top_fields(recipe, _TOP_FIELDS, "a classification")
    data = dict(r.get("data") or {"name": "mnist1d"})
    name = data.get("name")
    if name not in ds.DATASETS:
        raise ValueError(f"data.name must be one of {sorted(ds.DATASETS)}, got {name!r}")
    loader_kwargs = {k: v for k, v in data.items() if k not in ("name", "longtail", "noise")}
    check_kwargs(ds.DATASETS[name], loader_kwargs, "data", open_ended=True)
    if name in ("cifar", "npz") and "path" not in loader_kwargs:
        raise ValueError(f"data.path is required for data.name={name!r} (the {'folder of CIFAR pickle files' if name == 'cifar' else '.npz file'})")
    if name == "mnist1d":
        data.setdefault("num_samples", 5000)
    lt = data.get("longtail")
    if lt is not None:
        if not isinstance(lt, dict) or "imbalance_ratio" not in lt:
            raise ValueError(f"data.longtail must be an object with 'imbalance_ratio' (e.g. 100), got {lt!r}")
        lt = {"profile": "exp", **lt}
        if set(lt) - {"imbalance_ratio", "profile", "seed"}:
            raise ValueError(f"data.longtail has unknown fields {sorted(set(lt) - {'imbalance_ratio', 'profile', 'seed'})}")
        if lt["profile"] not in ("exp", "step"):
            raise ValueError(f"data.longtail.profile must be 'exp' or 'step', got {lt['profile']!r}")
        ratio = lt["imbalance_ratio"]
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio < 1:
            raise ValueError(f"data.longtail.imbalance_ratio must be a number >= 1, got {ratio!r}")
        data["longtail"] = lt
    noise = data.get("noise")
    if noise is not None:
        if not isinstance(noise, dict) or noise.get("type") not in _NOISE_TYPES or "rate" not in noise:
            raise ValueError(f"data.noise must be an object with 'type' in {_NOISE_TYPES} and 'rate' in [0, 1), got {noise!r}")
        if set(noise) - {"type", "rate", "seed"}:
            raise ValueError(f"data.noise has unknown fields {sorted(set(noise) - {'type', 'rate', 'seed'})}")
        rate = noise["rate"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"data.noise.rate must be a number in [0, 1), got {rate!r}")
    r["data"] = data

    model = r.get("model") or {"name": {"mnist1d": "cnn1d", "cifar": "resnet32"}.get(name, "mlp")}
    if not isinstance(model, dict) or model.get("name") not in MODELS:
        raise ValueError(f"model.name must be one of {MODELS}, got {model!r}")
    r["model"] = model
    r["loss"] = _check_entry(r.get("loss") or {"id": "cross_entropy"}, "loss", ("classification",))
    r["weighting"] = _check_entry(r.get("weighting"), "weighting", ("weighting",), {"start_fraction"})
    if r["weighting"] is not None and "start_fraction" in r["weighting"]:
        f = r["weighting"]["start_fraction"]
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f <= 1:
            raise ValueError(f"weighting.start_fraction must be in [0, 1] (DRW: 0.8), got {f!r}")
    r["sampler"] = _check_entry(r.get("sampler"), "sampler", ("sampler",))
    r["optimizer"] = validate_optimizer(r.get("optimizer"))
    r["schedule"] = validate_schedule(r.get("schedule"))
    r["epochs"] = positive_int(r.get("epochs", 30), "epochs")
    r["batch_size"] = positive_int(r.get("batch_size", 128), "batch_size")
    clip = r.get("grad_clip")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or clip <= 0):
        raise ValueError(f"'grad_clip' must be null or a positive number, got {clip!r}")
    r["grad_clip"] = clip
    stage2 = r.get("stage2")
    if stage2 is not None:
        stage2 = _check_entry(stage2, "stage2", ("two_stage",), {"loss", "weighting"})
        assert stage2 is not None
        if r["model"].get("classifier", "linear") != "linear":
            raise ValueError("stage2 re-balances a linear classifier: it needs model.classifier 'linear'")
        if "loss" in stage2:
            stage2["loss"] = _check_entry(stage2["loss"], "stage2.loss", ("classification",))
        if "weighting" in stage2:
            stage2["weighting"] = _check_entry(stage2["weighting"], "stage2.weighting", ("weighting",))
    r["stage2"] = stage2
    return r


def check_data(recipe: dict[str, Any]) -> None:
    """Read a user's ``.npz`` once and check every array (:func:`lossatlas.data.datasets.load_npz`);
    a ``ValueError`` names the file, the array and the problem. Other data sets pass."""
    data = recipe.get("data") or {}
    if data.get("name") == "npz":
        ds.load_npz(**{k: v for k, v in data.items() if k not in ("name", "longtail", "noise")})


def _diverged(what: str, epoch: int) -> str:
    return f"{what} became non-finite in epoch {epoch} (lower optimizer.lr or add grad_clip)"


def _apply_noise(spec: dict[str, Any], y: np.ndarray, x: np.ndarray, num_classes: int, seed: int) -> Any:
    from ...data import noise as noise_mod  # the noise team's protocols

    fn = getattr(noise_mod, spec["type"])
    params = inspect.signature(fn).parameters
    kw: dict[str, Any] = {"seed": seed}
    if "num_classes" in params:
        kw["num_classes"] = num_classes
    if spec["type"] == "instance_dependent":
        return fn(x.reshape(x.shape[0], -1), y, spec["rate"], **kw)
    return fn(y, spec["rate"], **kw)


def _stage_two(spec: dict[str, Any], model: nn.Module, criterion: Any, x: torch.Tensor, y: torch.Tensor,
               counts: list[int], C: int, bs: int, seed: int, apply_weighting: Callable[..., Any]) -> tuple[float, int]:
    """Decoupled stage 2 on ``model.fc`` (the recipe's ``stage2``); returns its running loss and count."""
    from ...two_stage import fit_stage_two

    device = x.device
    method = create({k: v for k, v in spec.items() if k not in ("loss", "weighting")}, set(), {})
    available = {"class_counts": counts, "num_classes": C, "reduction": "none"}
    crit = criterion if spec.get("loss") is None else create(spec["loss"], set(), available).to(device)
    weighting = None
    if spec.get("weighting") is not None:
        weighting = create(spec["weighting"], set(), {"class_counts": counts, "num_classes": C}).to(device)
    totals = [0.0, 0]

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        losses = crit(logits, target)
        loss: torch.Tensor = apply_weighting(losses, weighting, target) if weighting is not None else losses.mean()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(_diverged("stage-2 training loss", 0))
        totals[0] += value * target.numel()
        totals[1] += int(target.numel())
        return loss

    fit_stage_two(method, model, x, y, loss_fn, classifier="fc", batch_size=bs, seed=seed)
    return float(totals[0]), int(totals[1])


def run(recipe: dict[str, Any], seed: int, device: torch.device, progress: Callable[..., None] | None = None) -> dict[str, Any]:
    """Train and evaluate one (recipe, seed); returns the metrics dict of the task interface."""
    from ... import metrics as M
    from ...weighting import apply as apply_weighting

    r = validate(recipe)
    prev = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        gen = seed_everything(seed, deterministic=device.type == "cpu")
        return _train_eval(r, seed, device, gen, progress, M, apply_weighting)
    finally:  # leave the process's determinism setting as it was
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])


def _train_eval(r: dict[str, Any], seed: int, device: torch.device, gen: torch.Generator, progress: Callable[..., None] | None, M: Any, apply_weighting: Callable[..., Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    data_spec = r["data"]
    data = ds.load_dataset(data_spec["name"], **{k: v for k, v in data_spec.items() if k not in ("name", "longtail", "noise")})
    C = data.num_classes
    x_tr, y_tr = data.x_train, data.y_train
    if data_spec.get("longtail"):
        lt = data_spec["longtail"]
        idx = make_longtail(y_tr, lt["imbalance_ratio"], lt["profile"], seed=lt.get("seed", seed), num_classes=C)
        x_tr, y_tr = x_tr[idx], y_tr[idx]
    noise_rate = 0.0
    if data_spec.get("noise"):
        nz = data_spec["noise"]
        noisy = _apply_noise(nz, y_tr, x_tr, C, nz.get("seed", seed))
        noise_rate = float(np.mean(noisy.flipped)) if len(y_tr) else 0.0
        y_tr = np.asarray(noisy.labels, dtype=np.int64)
    counts = np.bincount(y_tr, minlength=C)
    data_time = time.perf_counter() - t0

    xt = torch.as_tensor(x_tr, device=device)
    yt = torch.as_tensor(y_tr, device=device)
    epochs, bs = r["epochs"], r["batch_size"]
    model = build_model(r["model"], x_tr.shape[1:], C).to(device)
    available = {"class_counts": counts.tolist(), "num_classes": C, "reduction": "none"}
    criterion = create(r["loss"], set(), available).to(device)
    weighting = None
    if r["weighting"] is not None:
        wspec = dict(r["weighting"])
        if "start_fraction" in wspec:
            wspec["start_epoch"] = int(round(wspec.pop("start_fraction") * epochs))
        weighting = create(wspec, set(), {"class_counts": counts.tolist(), "num_classes": C}).to(device)
    sampler = None
    if r["sampler"] is not None:
        sampler = create(r["sampler"], set(), {"labels": y_tr, "seed": seed, "num_epochs": epochs})
    n = len(y_tr)
    steps_per_epoch = max(1, (len(sampler) if sampler is not None and hasattr(sampler, "__len__") else n) // bs + (1 if n % bs >= 2 else 0))
    optimizer = build_optimizer(model.parameters(), r["optimizer"])
    scheduler = build_schedule(optimizer, r["schedule"], epochs, steps_per_epoch)

    x_test = torch.as_tensor(data.x_test, device=device)
    target = torch.as_tensor(data.y_test)
    curves: dict[str, list[float]] = {"epoch": [], "train_loss": [], "test_balanced_accuracy": []}
    eval_time = 0.0

    t1 = time.perf_counter()
    step = 0
    total_steps = epochs * steps_per_epoch
    for epoch in range(epochs):
        model.train()
        if weighting is not None:
            weighting.set_epoch(epoch)
        if sampler is not None:
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            order = list(iter(sampler))
            chunks = order if order and isinstance(order[0], (list, tuple)) else [order[i : i + bs] for i in range(0, len(order), bs)]
            batches = [torch.as_tensor(b, dtype=torch.long, device=device) for b in chunks]
        else:
            perm = torch.randperm(n, generator=gen).to(device)
            batches = [perm[i : i + bs] for i in range(0, n, bs)]
        running, seen = 0.0, 0
        for b in batches:
            if b.numel() < 2:
                continue
            if step >= total_steps:
                break
            logits = model(xt[b])
            try:
                losses = criterion(logits, yt[b])
            except ValueError:  # a diverged model: say so, not "logits contains NaN" (checked on this path only)
                if not bool(torch.isfinite(logits.detach()).all()):
                    raise FloatingPointError(_diverged("model outputs", epoch)) from None
                raise
            loss = apply_weighting(losses, weighting, yt[b]) if weighting is not None else losses.mean()
            value = float(loss.detach())  # the one host read per step: the running loss and its check
            if not math.isfinite(value):
                raise FloatingPointError(_diverged("training loss", epoch))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if r["grad_clip"]:
                nn.utils.clip_grad_norm_(model.parameters(), r["grad_clip"])
            optimizer.step()
            scheduler.step()
            step += 1
            running += value * b.numel()
            seen += b.numel()
        te = time.perf_counter()
        bal = float(np.nanmean(M.per_class_accuracy(predict(model, x_test), target, C)))
        eval_time += time.perf_counter() - te
        curves["epoch"].append(epoch + 1)
        curves["train_loss"].append(running / max(seen, 1))
        curves["test_balanced_accuracy"].append(bal)
        if progress is not None:
            progress(epoch + 1, epochs, f"loss {running / max(seen, 1):.3f}, test bal. acc {bal:.3f}")
    if r["stage2"] is not None:
        run2, seen2 = _stage_two(r["stage2"], model, criterion, xt, yt, counts.tolist(), C, bs, seed, apply_weighting)
        if seen2:  # the final training loss is stage 2's when it trains (tau_norm does not)
            running, seen = run2, seen2
    train_time = time.perf_counter() - t1 - eval_time

    t2 = time.perf_counter()
    logits = predict(model, x_test)
    out: dict[str, Any] = {k: float(v) for k, v in M.evaluate(logits, target, train_class_counts=counts.tolist(), num_classes=C).items()}
    out["per_class_accuracy"] = [float(a) for a in M.per_class_accuracy(logits, target, C)]
    out["reliability"] = M.reliability_diagram(logits, target, n_bins=15)
    out["class_counts"] = counts.tolist()
    out["curves"] = curves
    out.update(
        n_train=int(n),
        n_test=int(len(target)),
        noise_rate_realised=noise_rate,
        data_time_s=data_time,
        train_time_s=train_time,
        eval_time_s=time.perf_counter() - t2 + eval_time,
        final_train_loss=running / max(seen, 1),
    )
    return out
