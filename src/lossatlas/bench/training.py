"""Training helpers shared by the benchmark's tasks: seeding, optimisers, LR schedules.

Task plug-ins (``bench/tasks/*.py``) use these so every task reads the ``optimizer`` and
``schedule`` recipe fields the same way.

``optimizer``: ``{"name": "sgd"|"adam"|"adamw", "lr", "momentum", "weight_decay", "nesterov"}``,
or ``{"name": "pesg"|"pdsca", <options>}``: the AUC optimisers of :mod:`lossatlas.optim`
(options checked against their signature, their own defaults otherwise), given the loss.
``schedule``: ``{"name": "constant"|"cosine"|"step"|"onecycle", "warmup_epochs": 0,
"milestones": [fractions of the run, e.g. 0.8, 0.9], "gamma": 0.1, "pct_start": 0.3}``;
the schedule is stepped once per optimisation step, so it scales with the recipe's length.
"""

from __future__ import annotations

import inspect
import math
import os
import random
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

__all__ = ["seed_everything", "validate_optimizer", "validate_schedule", "build_optimizer", "build_schedule", "decay_learning_rate"]

_OPT_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": False},
    "adam": {"lr": 1e-3, "weight_decay": 0.0},
    "adamw": {"lr": 1e-3, "weight_decay": 1e-2},
}
#: optimisers of lossatlas.optim that take the loss (its learnable a, b, alpha and, for the
#: min-max ones, which of them to ascend on); their defaults are their own
_LOSS_OPTIMIZERS = {"pesg": "PESG", "pdsca": "PDSCA"}
_SCHED_DEFAULTS: dict[str, dict[str, Any]] = {
    "constant": {"warmup_epochs": 0},
    "cosine": {"warmup_epochs": 0},
    "step": {"warmup_epochs": 0, "milestones": [0.8, 0.9], "gamma": 0.1},
    "onecycle": {"pct_start": 0.3},
}


def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed python, numpy and torch; on CPU ask torch for deterministic kernels.

    Returns a CPU ``torch.Generator`` seeded with ``seed`` for the task's own shuffling.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _with_defaults(spec: Any, table: dict[str, dict[str, Any]], field: str, default: str) -> dict[str, Any]:
    """``spec`` (None = ``{"name": default}``) checked against the ``table`` entry of its name, defaults filled in."""
    spec = {"name": default} if spec is None else spec
    if not isinstance(spec, dict) or spec.get("name") not in table:
        raise ValueError(f"'{field}' must be an object with name one of {sorted(table)}, got {spec!r}")
    defaults = table[spec["name"]]
    unknown = set(spec) - set(defaults) - {"name"}
    if unknown:
        raise ValueError(f"'{field}' has unknown fields {sorted(unknown)}; allowed: {sorted(defaults)}")
    return {**defaults, **spec}


def _loss_optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    from .. import optim

    cls: type[torch.optim.Optimizer] | None = getattr(optim, _LOSS_OPTIMIZERS[name], None)
    if cls is None:  # pragma: no cover - only while lossatlas.optim is being written
        raise ValueError(f"optimizer {name!r}: lossatlas.optim.{_LOSS_OPTIMIZERS[name]} is not available in this version")
    return cls


def validate_optimizer(spec: Any) -> dict[str, Any]:
    """Fill the optimiser's defaults; ``ValueError`` naming the bad field."""
    if isinstance(spec, dict) and spec.get("name") in _LOSS_OPTIMIZERS:
        try:
            cls = _loss_optimizer_class(spec["name"])
        except ImportError:  # pragma: no cover - only while lossatlas.optim is being written
            raise ValueError(f"optimizer {spec['name']!r} needs lossatlas.optim, which this version lacks") from None
        params = inspect.signature(cls.__init__).parameters
        allowed = set(params) - {"self", "params", "loss", "loss_fn"}
        unknown = set(spec) - allowed - {"name"}
        if unknown:
            raise ValueError(f"'optimizer' has unknown fields {sorted(unknown)}; {cls.__name__} takes {sorted(allowed)}")
        lr = spec.get("lr", 0.1)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0:
            raise ValueError(f"optimizer.lr must be a positive number, got {lr!r}")
        return dict(spec)
    out = _with_defaults(spec, _OPT_DEFAULTS, "optimizer", "sgd")
    for k in ("lr", "weight_decay", "momentum"):
        if k in out and (isinstance(out[k], bool) or not isinstance(out[k], (int, float)) or out[k] < 0 or (k == "lr" and out[k] == 0)):
            raise ValueError(f"optimizer.{k} must be a {'positive' if k == 'lr' else 'non-negative'} number, got {out[k]!r}")
    return out


def validate_schedule(spec: Any) -> dict[str, Any]:
    """Fill the schedule's defaults; ``ValueError`` naming the bad field."""
    out = _with_defaults(spec, _SCHED_DEFAULTS, "schedule", "constant")
    w = out.get("warmup_epochs", 0)
    if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
        raise ValueError(f"schedule.warmup_epochs must be a non-negative number, got {w!r}")
    if "milestones" in out:
        m = out["milestones"]
        if not isinstance(m, list) or not all(isinstance(x, (int, float)) and 0 < x < 1 for x in m) or m != sorted(m):
            raise ValueError(f"schedule.milestones must be increasing fractions of the run in (0, 1), e.g. [0.8, 0.9], got {m!r}")
    if "pct_start" in out and not (isinstance(out["pct_start"], (int, float)) and 0 < out["pct_start"] < 1):
        raise ValueError(f"schedule.pct_start must be in (0, 1), got {out['pct_start']!r}")
    return out


def build_optimizer(params: Iterable[torch.nn.Parameter], spec: dict[str, Any], loss: torch.nn.Module | None = None) -> torch.optim.Optimizer:
    """The optimiser of a validated ``optimizer`` spec over ``params`` and the parameters of
    ``loss`` (a loss with learnable parameters, e.g. AUC-M's a, b, alpha; ``pesg`` / ``pdsca``
    receive the loss itself)."""
    kw = {k: v for k, v in spec.items() if k != "name"}
    params = list(params)
    if spec["name"] in _LOSS_OPTIMIZERS:
        if loss is None:
            raise ValueError(f"optimizer {spec['name']!r} needs the loss (build_optimizer(..., loss=criterion))")
        cls: Callable[..., torch.optim.Optimizer] = _loss_optimizer_class(spec["name"])
        taken = inspect.signature(cls).parameters
        kw["loss" if "loss" in taken else "loss_fn"] = loss
        return cls(params, **kw)
    if loss is not None:
        params += [p for p in loss.parameters() if p.requires_grad]
    optimizers: dict[str, Callable[..., torch.optim.Optimizer]] = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    return optimizers[spec["name"]](params, **kw)


def decay_learning_rate(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Divide every group's learning rate by ``factor``; an optimiser with
    ``update_regularizer(decay_factor=...)`` (PESG, PDSCA: LibAUC's stage restart, which also
    moves the epoch-level reference point) is asked to do it itself."""
    update = getattr(optimizer, "update_regularizer", None)
    if callable(update):
        update(decay_factor=factor)
        return
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] / factor


def build_schedule(optimizer: torch.optim.Optimizer, spec: dict[str, Any], epochs: int, steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step LR scheduler for a validated ``schedule`` spec over ``epochs × steps_per_epoch`` steps."""
    total = max(1, epochs * steps_per_epoch)
    if spec["name"] == "onecycle":
        max_lr = [g["lr"] for g in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, pct_start=spec["pct_start"])
    warm = int(round(spec.get("warmup_epochs", 0) * steps_per_epoch))
    name = spec["name"]
    milestones = [int(round(f * total)) for f in spec.get("milestones", [])]
    gamma: float = spec.get("gamma", 0.1)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if name == "cosine":
            t = (step - warm) / max(1, total - warm)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
        if name == "step":
            return gamma ** sum(step >= m for m in milestones)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
