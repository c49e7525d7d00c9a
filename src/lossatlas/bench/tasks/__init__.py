"""Benchmark task plug-ins.

A *task* turns one recipe and one seed into metrics. Each task is a module
``lossatlas.bench.tasks.<name>`` (the recipe's ``"task"`` field names it) that exposes::

    def run(recipe: dict, seed: int, device: torch.device, progress=None) -> dict

``recipe`` is the validated recipe (a plain JSON-able dict); ``seed`` the run's seed;
``device`` where to train; ``progress`` is ``None`` or a callable
``progress(done: int, total: int, message: str = "")`` that the runner turns into a
progress bar (call it once per epoch or step; it must be cheap).

``run`` returns a flat dict of JSON-able metrics (``str -> float | int``), plus optional
keys the report knows how to draw:

- ``per_class_accuracy``: list[float] [C] (test accuracy of each class);
- ``class_counts``: list[int] [C] (training samples per class, as seen by the loss);
- ``reliability``: dict from :func:`lossatlas.metrics.reliability_diagram`.

Anything else that is not a number is stored but ignored by the leaderboard. The runner
adds timings, the library version, the recipe hash and the seed; a task never writes to
the results store itself.

A task module may also expose ``validate(recipe: dict) -> dict``: it checks the
task-specific fields (raise ``ValueError`` naming the field and the fix) and returns the
recipe with defaults filled in. The runner calls it before hashing, so defaults are part
of the recipe's identity. Without it the recipe is used as written.

A task module may also expose ``check_data(recipe: dict) -> None``: it reads and checks the
recipe's data once (a user's file: its arrays, dtypes, labels) and raises ``ValueError``
naming the problem. The runner calls it once per distinct data set before it stores or
trains anything, so a bad file stops the suite with one message and no failed runs.

Adding a task never edits a shared file: drop ``tasks/<name>.py`` in this folder.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any, Protocol

import torch

__all__ = ["Task", "Progress", "available_tasks", "get_task", "validate_task_recipe", "check_task_data"]

#: ``progress(done, total, message="")``, called by tasks to report progress.
Progress = Callable[..., None]


class Task(Protocol):
    """What a task module provides (``validate`` is optional)."""

    def run(self, recipe: dict[str, Any], seed: int, device: torch.device, progress: Progress | None = None) -> dict[str, Any]: ...


def available_tasks() -> list[str]:
    """Names of the task modules in this package (``classification``, ...)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get_task(name: str) -> ModuleType:
    """Import and return the task module ``name``; ``ValueError`` if there is none."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"recipe field 'task' must be a task name such as 'classification', got {name!r}")
    if name not in available_tasks():
        raise ValueError(f"unknown task {name!r}: available tasks are {available_tasks()}; add src/lossatlas/bench/tasks/{name}.py to define it")
    module = importlib.import_module(f"{__name__}.{name}")
    if not callable(getattr(module, "run", None)):
        raise ValueError(f"task module {module.__name__} has no run(recipe, seed, device, progress=None) function")
    return module


def validate_task_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """Run the task's own ``validate`` (when it has one) and return the completed recipe."""
    module = get_task(recipe.get("task", "classification"))
    validate = getattr(module, "validate", None)
    return dict(validate(dict(recipe))) if callable(validate) else dict(recipe)


def check_task_data(recipes: Iterable[dict[str, Any]]) -> None:
    """Call each recipe's task ``check_data`` (when it has one) once per distinct
    ``(task, data)`` pair: the data are read and checked before anything is trained."""
    seen: set[str] = set()
    for recipe in recipes:
        key = json.dumps([recipe.get("task", "classification"), recipe.get("data")], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        check = getattr(get_task(recipe.get("task", "classification")), "check_data", None)
        if callable(check):
            check(recipe)
