"""The ``binary`` task: an imbalanced one-vs-rest problem built offline, trained with one
logit, evaluated by test AUROC and average precision (the AUC-maximisation protocol of
LibAUC: Yuan et al. 2021, "Large-scale Robust Deep AUC Maximization", ICCV).

Recipe fields (defaults in brackets):

- ``data``: ``{"name": "mnist1d"|"digits", <loader options>, "positive_class": 0,
  "positive_fraction": null, "seed": <run seed>}``. Class ``positive_class`` is the
  positive class, all other classes the negative one. ``positive_fraction`` (in (0, 1))
  subsamples the TRAINING split to that fraction of positives: every negative is kept and
  ``round(f / (1 - f) · n_neg)`` positives are drawn at random (with ``seed``, the run seed
  by default, so each seed sees another subset); where too few positives exist, negatives
  are dropped instead. ``null`` keeps the natural fraction (≈ 10 % for a one-vs-rest split
  of ten balanced classes). The TEST split is never subsampled: it keeps its natural
  fraction (≈ 10 % positives), which leaves AUROC unchanged and sets AP's chance level.
  Loader options are those of :mod:`lossatlas.data.datasets` (``num_samples`` for
  MNIST-1D [5,000], ``test_fraction`` for digits, ...).
- ``model``: ``{"name": "cnn1d"|"mlp", <options>}`` [cnn1d for MNIST-1D, mlp otherwise]
  with ONE output, the logit ``z``.
- ``loss``: ``{"id": <registry id>, <options>}`` [bce]. A ``multilabel`` loss (``bce``,
  ``sigmoid_focal``) gets ``(z[N, 1], y float[N, 1])``; a ``binary`` loss (``aucm``,
  ``compositional_auc``, ``ap_soap``, ...) gets the SCORES ``(sigmoid(z)[N], y int64[N])``
  as LibAUC's examples feed them, plus ``index=`` (the rows' positions in the training
  set) when its call takes one; ``data_len`` (the training set's size) is filled in.
  A loss's own parameters (AUC-M's ``a``, ``b``, ``alpha``) are trained with the model.
- ``sampler``: ``null`` (uniform shuffling), ``{"name": "dual", "sampling_rate": r}``
  (:class:`lossatlas.samplers.DualSampler`: every batch holds ``max(1, int(r · B))``
  positives, the rare class oversampled; LibAUC's sampler for its AUC recipes) or
  ``{"id": <registry id of a sampler>, <options>}``; ``labels`` (0/1), ``batch_size``,
  ``seed`` and ``num_epochs`` are filled in when the sampler takes them.
- ``optimizer``: see :mod:`lossatlas.bench.training` [adam 1e-3]; ``"pesg"`` and
  ``"pdsca"`` are the AUC optimisers of :mod:`lossatlas.optim`, given the loss.
- ``decay_epochs``: fractions of the run [0.5, 0.75] (LibAUC's trainer recipes): at the
  start of each such epoch the learning rate is divided by 10 (``decay_factor``), and an
  optimiser with ``update_regularizer`` (PESG, PDSCA) also restarts its epoch-level
  reference point there. There is no other schedule.
- ``epochs`` [20], ``batch_size`` [128], ``grad_clip`` [null]. Every method takes the same
  number of steps: an epoch is ``ceil(n_train / batch_size)`` batches, drawn from the
  sampler's stream when there is one.

Metrics: ``auroc`` and ``ap`` (average precision) of ``sigmoid(z)`` on the test split
(:func:`lossatlas.metrics.auroc` / :func:`~lossatlas.metrics.average_precision`, the
values of scikit-learn's ``roc_auc_score`` / ``average_precision_score``), ``n_train``,
``n_train_pos``, ``n_test``, ``n_test_pos``, ``n_skipped_batches`` (batches without a
positive or a negative, skipped for the ``binary`` losses, which need both),
``n_repeats_dropped`` (for the losses with per-sample state, which update a row once per
call, a row drawn twice into one batch, as DualSampler does when it cycles through fewer
positives than a batch holds, is kept once; LibAUC leaves such repeats undefined), timings,
``final_train_loss``; ``curves`` (per epoch: ``epoch``, ``train_loss`` — the epoch's mean —
and ``test_auroc`` of the model at the end of the epoch); ``group`` (the task: data, positive class and fraction) and
``label`` (the recipe's ``label``, else its name) for the report's per-task tables.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ...data import datasets as ds
from ..models import MODELS, build_model
from ..training import build_optimizer, decay_learning_rate, seed_everything, validate_optimizer
from ._common import check_entry, check_kwargs, check_top_fields, create, positive_int, predict

__all__ = ["validate", "run", "binary_subsample", "build_data", "group_label"]

log = logging.getLogger(__name__)

_TOP_FIELDS = {"name", "description", "task", "seeds", "label", "data", "model", "loss", "sampler", "optimizer",
               "decay_epochs", "decay_factor", "epochs", "batch_size", "grad_clip"}
_INJECTED = {"reduction", "validate", "data_len", "labels", "batch_size", "seed", "num_epochs"}
_DATA_FIELDS = {"name", "positive_class", "positive_fraction", "seed"}
_NEED = "; the binary task needs a binary loss (scores[N], target) or a multilabel one (logits[N, 1], target[N, 1])"


def _fraction(value: Any, field: str, closed: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (0 <= value <= 1 if closed else 0 < value < 1)
    if not ok:
        raise ValueError(f"'{field}' must be a number in {'[0, 1]' if closed else '(0, 1)'}, got {value!r}")
    return float(value)


def _check_sampler(spec: Any) -> dict[str, Any] | None:
    """``null``, ``{"name": "dual", <DualSampler options>}`` or ``{"id": <registry sampler>, ...}``."""
    if isinstance(spec, dict) and "name" in spec and "id" not in spec:
        if spec["name"] != "dual":
            raise ValueError(f"sampler.name must be 'dual' (lossatlas.samplers.DualSampler), or give a registry 'id'; got {spec['name']!r}")
        from ...samplers import DualSampler

        check_kwargs(DualSampler.__init__, {k: v for k, v in spec.items() if k != "name"}, "sampler", skip=("labels", "batch_size", "seed"))
        return dict(spec)
    return check_entry(spec, "sampler", ("sampler",), _INJECTED, open_ended=True)


def _build_sampler(spec: dict[str, Any] | None, y: np.ndarray, batch_size: int, seed: int, epochs: int) -> Any:
    if spec is None:
        return None
    if spec.get("name") == "dual":
        from ...samplers import DualSampler

        return DualSampler(y, batch_size, seed=seed, **{k: v for k, v in spec.items() if k != "name"})
    return create(spec, set(), {"labels": y, "batch_size": batch_size, "seed": seed, "num_epochs": epochs})


def validate(recipe: dict[str, Any]) -> dict[str, Any]:
    """Check a binary recipe and fill in its defaults (see the module docstring)."""
    r = check_top_fields(recipe, _TOP_FIELDS, "a binary")
    data = dict(r.get("data") or {"name": "mnist1d"})
    name = data.get("name")
    if name not in ("mnist1d", "digits"):
        raise ValueError(f"data.name must be 'mnist1d' or 'digits' for the binary task, got {name!r}")
    loader_kwargs = {k: v for k, v in data.items() if k not in _DATA_FIELDS}
    check_kwargs(ds.DATASETS[name], loader_kwargs, "data")
    if name == "mnist1d":
        data.setdefault("num_samples", 5000)
    data.setdefault("positive_class", 0)
    pc = data["positive_class"]
    if isinstance(pc, bool) or not isinstance(pc, int) or not 0 <= pc < 10:
        raise ValueError(f"data.positive_class must be a class id in [0, 10), got {pc!r}")
    data.setdefault("positive_fraction", None)
    if data["positive_fraction"] is not None:
        data["positive_fraction"] = _fraction(data["positive_fraction"], "data.positive_fraction")
    if "seed" in data and (isinstance(data["seed"], bool) or not isinstance(data["seed"], int)):
        raise ValueError(f"data.seed must be an int (default: the run's seed), got {data['seed']!r}")
    r["data"] = data

    model = r.get("model") or {"name": "cnn1d" if name == "mnist1d" else "mlp"}
    if not isinstance(model, dict) or model.get("name") not in MODELS:
        raise ValueError(f"model.name must be one of {MODELS}, got {model!r}")
    r["model"] = model
    r["loss"] = check_entry(r.get("loss") or {"id": "bce"}, "loss", ("binary", "multilabel"), _INJECTED, _NEED, open_ended=True)
    r["sampler"] = _check_sampler(r.get("sampler"))
    r["optimizer"] = validate_optimizer(r.get("optimizer") or {"name": "adam", "lr": 1e-3})
    decay = r.get("decay_epochs", [0.5, 0.75])
    if not isinstance(decay, list) or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f < 1 for f in decay) or decay != sorted(set(decay)):
        raise ValueError(f"'decay_epochs' must be increasing fractions of the run in (0, 1), e.g. [0.5, 0.75], got {decay!r}")
    r["decay_epochs"] = decay
    factor = r.get("decay_factor", 10)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor < 1:
        raise ValueError(f"'decay_factor' must be a number >= 1 (the learning rate is divided by it), got {factor!r}")
    r["decay_factor"] = factor
    r["epochs"] = positive_int(r.get("epochs", 20), "epochs")
    r["batch_size"] = positive_int(r.get("batch_size", 128), "batch_size")
    if r["batch_size"] < 2:
        raise ValueError("'batch_size' must be at least 2")
    clip = r.get("grad_clip")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or clip <= 0):
        raise ValueError(f"'grad_clip' must be null or a positive number, got {clip!r}")
    r["grad_clip"] = clip
    label = r.get("label", r.get("name"))
    if label is not None and not isinstance(label, str):
        raise ValueError(f"'label' must be a string (the method's name in the per-task tables), got {label!r}")
    if "label" in r:
        r["label"] = label
    return r


def binary_subsample(y: np.ndarray, positive_fraction: float | None, seed: int) -> np.ndarray:
    """Sorted indices of a subset of the 0/1 labels ``y`` whose positive fraction is
    ``positive_fraction`` (every negative kept and positives drawn, or, when there are too
    few positives, every positive kept and negatives drawn); all indices for ``None``."""
    y = np.asarray(y)
    if positive_fraction is None:
        return np.arange(y.size)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    rng = np.random.default_rng(seed)
    f = positive_fraction
    want_pos = int(round(f / (1 - f) * neg.size))
    if want_pos <= pos.size:
        pos = rng.choice(pos, size=max(1, want_pos), replace=False)
    else:
        neg = rng.choice(neg, size=max(1, int(round((1 - f) / f * pos.size))), replace=False)
    return np.sort(np.concatenate([pos, neg]))


def build_data(data: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` of a validated ``data`` field: 0/1 labels
    (1 = ``positive_class``), the training split subsampled to ``positive_fraction`` with
    ``data["seed"]`` (else ``seed``), the test split whole."""
    full = ds.load_dataset(data["name"], **{k: v for k, v in data.items() if k not in _DATA_FIELDS})
    pc = data["positive_class"]
    y_all = (full.y_train == pc).astype(np.int64)
    keep = binary_subsample(y_all, data["positive_fraction"], data.get("seed", seed))
    y_tr, y_te = y_all[keep], (full.y_test == pc).astype(np.int64)
    for split, y in (("training", y_tr), ("test", y_te)):
        if int(y.sum()) in (0, y.size):
            raise ValueError(f"data: positive_class {pc} leaves the {split} split without {'positives' if y.sum() == 0 else 'negatives'} ({int(y.sum())} of {y.size})")
    return full.x_train[keep], y_tr, full.x_test, y_te


def group_label(data: dict[str, Any]) -> str:
    """The task's name in the report: data set, positive class and training positive fraction."""
    f = data.get("positive_fraction")
    frac = "natural" if f is None else f"{100 * f:g}%"
    return f"{data['name']} {data['positive_class']}-vs-rest {frac}"


def _stream(sampler: Any, n: int, bs: int, gen: torch.Generator) -> Iterator[list[int] | torch.Tensor]:
    """Batches of indices in [0, n), without end: uniform shuffling (one permutation per
    pass), or the sampler's epochs (``set_epoch(k)`` before the k-th) cut into batches of
    ``bs`` (a batch sampler's batches are kept)."""
    k = 0
    while True:
        if sampler is None:
            perm = torch.randperm(n, generator=gen)
            yield from (perm[i : i + bs] for i in range(0, n, bs))
        else:
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(k)
            order = list(iter(sampler))
            if not order:
                raise ValueError("the sampler yielded no indices")
            chunks = order if isinstance(order[0], (list, tuple)) else [order[i : i + bs] for i in range(0, len(order), bs)]
            yield from ([int(i) for i in c] for c in chunks)
        k += 1


def _first_copies(idx: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``idx`` without its repeated entries (the first copy of each kept, order kept) and how
    many were dropped."""
    _, first = np.unique(idx.numpy(), return_index=True)
    if first.size == idx.numel():
        return idx, 0
    return idx[torch.as_tensor(np.sort(first))], int(idx.numel() - first.size)


def run(recipe: dict[str, Any], seed: int, device: torch.device, progress: Callable[..., None] | None = None) -> dict[str, Any]:
    """Train and evaluate one (recipe, seed); returns the metrics dict of the task interface."""
    r = validate(recipe)
    prev = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        gen = seed_everything(seed, deterministic=device.type == "cpu")
        return _train_eval(r, seed, device, gen, progress)
    finally:  # leave the process's determinism setting as it was
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])


def _scores_metrics(scores: np.ndarray, target: np.ndarray) -> dict[str, float]:
    from ...metrics.ranking import auroc, average_precision

    return {"auroc": float(auroc(scores, target)), "ap": float(average_precision(scores, target))}


def _train_eval(r: dict[str, Any], seed: int, device: torch.device, gen: torch.Generator, progress: Callable[..., None] | None) -> dict[str, Any]:
    from ... import registry

    t0 = time.perf_counter()
    spec = r["data"]
    x_tr, y_tr, x_te, y_te = build_data(spec, seed)
    n, n_pos = int(y_tr.size), int(y_tr.sum())
    data_time = time.perf_counter() - t0

    xt = torch.as_tensor(x_tr, device=device)
    yt = torch.as_tensor(y_tr, device=device)
    epochs, bs = r["epochs"], r["batch_size"]
    model = build_model(r["model"], x_tr.shape[1:], 1).to(device)
    criterion = create(r["loss"], set(), {"data_len": n}).to(device)
    entry = registry.info(r["loss"]["id"])
    kind = entry.kind
    # per-sample state indexed by dataset position: the losses that take data_len (or name index)
    takes_index = "data_len" in entry.parameters or "index" in inspect.signature(criterion.forward).parameters
    sampler = _build_sampler(r["sampler"], y_tr, bs, seed, epochs)
    steps_per_epoch = math.ceil(n / bs)
    optimizer = build_optimizer(model.parameters(), r["optimizer"], loss=criterion)
    decay_at = sorted({max(1, int(round(f * epochs))) for f in r["decay_epochs"]})

    stream = _stream(sampler, n, bs, gen)
    t1 = time.perf_counter()
    running, seen, skipped, repeats = 0.0, 0, 0, 0
    x_test = torch.as_tensor(x_te, device=device)
    curves: dict[str, list[float | None]] = {"epoch": [], "train_loss": [], "test_auroc": []}
    eval_time = 0.0
    for epoch in range(epochs):
        model.train()
        criterion.train()
        for _ in range(decay_at.count(epoch)):
            decay_learning_rate(optimizer, r["decay_factor"])
        running, seen = 0.0, 0
        for _ in range(steps_per_epoch):
            b = next(stream)
            idx = torch.as_tensor(b, dtype=torch.long)
            if takes_index:  # a row's state is updated once per call: keep its first copy
                idx, dropped = _first_copies(idx)
                repeats += dropped
            idx = idx.to(device)
            if idx.numel() < 2:
                continue
            yb = yt[idx]
            if kind == "binary":
                npos = int(yb.sum())
                if npos == 0 or npos == idx.numel():
                    skipped += 1
                    continue
            logits = model(xt[idx])
            if kind == "binary":
                scores = torch.sigmoid(logits.reshape(-1))
                loss = criterion(scores, yb, index=idx) if takes_index else criterion(scores, yb)
            else:
                loss = criterion(logits.reshape(-1, 1), yb.to(logits.dtype).reshape(-1, 1))
            if loss.dim() > 0:
                loss = loss.mean()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss became non-finite in epoch {epoch} (lower optimizer.lr or add grad_clip)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if r["grad_clip"]:
                nn.utils.clip_grad_norm_(model.parameters(), r["grad_clip"])
            optimizer.step()
            running += value * idx.numel()
            seen += idx.numel()
        te = time.perf_counter()
        epoch_scores = torch.sigmoid(predict(model, x_test).reshape(-1).double()).numpy()
        curves["epoch"].append(epoch + 1)
        curves["train_loss"].append(running / seen if seen else None)  # the epoch's mean (running restarts per epoch)
        curves["test_auroc"].append(_scores_metrics(epoch_scores, y_te)["auroc"] if np.isfinite(epoch_scores).all() else None)
        eval_time += time.perf_counter() - te
        if progress is not None:
            progress(epoch + 1, epochs, f"loss {running / max(seen, 1):.4f}")
    train_time = time.perf_counter() - t1 - eval_time

    t2 = time.perf_counter()
    z = predict(model, x_test).reshape(-1)
    test_scores = torch.sigmoid(z.double()).numpy()
    if not np.isfinite(test_scores).all():
        raise FloatingPointError("test scores are non-finite (the model diverged)")
    out: dict[str, Any] = _scores_metrics(test_scores, y_te)
    out.update(
        n_train=n,
        n_train_pos=n_pos,
        n_test=int(y_te.size),
        n_test_pos=int(y_te.sum()),
        n_skipped_batches=skipped,
        n_repeats_dropped=repeats,
        data_time_s=data_time,
        train_time_s=train_time,
        eval_time_s=time.perf_counter() - t2 + eval_time,
        final_train_loss=running / max(seen, 1),
        curves=curves,
        group=group_label(spec),
        label=r.get("label", r["name"]),
        primary_metric="auroc",
    )
    log.info("binary %s %s seed %d: AUROC %.4f AP %.4f", out["group"], out["label"], seed, out["auroc"], out["ap"])
    return out
