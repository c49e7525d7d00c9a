"""Recipes and suites: plain JSON config files, validated with clear errors.

A **recipe** names one of each: data × model × loss × weighting × sampler × optimiser ×
schedule × epochs × seeds (plus the ``task``, ``"classification"`` by default)::

    {"name": "ldam_drw", "task": "classification",
     "data": {"name": "mnist1d", "num_samples": 35000,
              "longtail": {"imbalance_ratio": 100, "profile": "exp"}},
     "model": {"name": "cnn1d"},
     "loss": {"id": "ldam", "max_margin": 0.5, "scale": 30},
     "weighting": {"id": "drw", "start_fraction": 0.8},
     "sampler": null,
     "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
     "schedule": {"name": "onecycle"},
     "epochs": 30, "batch_size": 128, "seeds": 3}

A **suite** is a JSON file ``{"name", "description", "defaults": {...}, "recipes": [...]}``;
each recipe is ``defaults`` deep-merged with the recipe's own fields (a ``null`` in the
recipe removes a default). Built-in suites live in ``lossatlas/bench/suites/<name>.json``;
a path to a suite file or to a single-recipe file works the same way.

Each recipe's identity is the SHA-256 of its canonical JSON after validation (defaults
filled in, ``seeds`` and ``description`` left out, the suite name included), so changing
any setting makes a new recipe, and rerunning an unchanged one finds its finished runs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from typing import Any

from .tasks import validate_task_recipe

__all__ = ["Recipe", "Suite", "builtin_suites", "load_suite", "validate_recipe", "recipe_hash", "deep_merge", "resolve_data_path"]

_NOT_HASHED = ("seeds", "description")


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: ``config`` (JSON-able dict), its ``hash``, the ``suite`` it belongs to."""

    suite: str
    name: str
    config: dict[str, Any]
    hash: str

    @property
    def seeds(self) -> int:
        return int(self.config.get("seeds", 1))


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    recipes: tuple[Recipe, ...]


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override`` recursively; an override value ``None`` deletes the key
    when the base holds a dict there (so ``"weighting": null`` switches a default off)."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def recipe_hash(config: dict[str, Any], suite: str) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of ``config`` within ``suite``."""
    ident = {k: v for k, v in config.items() if k not in _NOT_HASHED}
    ident["suite"] = suite
    blob = json.dumps(ident, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def validate_recipe(config: dict[str, Any], suite: str = "custom") -> Recipe:
    """Check the common fields, run the task's own validation, and hash the result."""
    if not isinstance(config, dict):
        raise ValueError(f"a recipe must be a JSON object, got {type(config).__name__}")
    cfg = dict(config)
    name = cfg.get("name")
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise ValueError(f"recipe field 'name' must be a non-empty string without spaces (it names the method in the leaderboard), got {name!r}")
    where = f"recipe {name!r}"
    cfg.setdefault("task", "classification")
    seeds = cfg.setdefault("seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"{where}: 'seeds' must be a positive int (number of seeds 0..N-1), got {seeds!r}")
    try:
        cfg = validate_task_recipe(cfg)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    try:
        json.dumps(cfg, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: not plain JSON ({exc})") from None
    return Recipe(suite=suite, name=name, config=cfg, hash=recipe_hash(cfg, suite))


def resolve_data_path(config: dict[str, Any], base_dir: str) -> dict[str, Any]:
    """``config`` with a relative ``data.path`` (``~`` expanded) made absolute against
    ``base_dir``, the folder of the recipe file that names it (not the working directory);
    an absolute path is kept. The absolute path is part of the recipe's identity."""
    data = config.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("path"), str):
        return config
    path = os.path.expanduser(data["path"])
    if not os.path.isabs(path):
        path = os.path.normpath(os.path.join(base_dir, path))
    return {**config, "data": {**data, "path": path}}


def builtin_suites() -> list[str]:
    """Names of the suites shipped in ``lossatlas/bench/suites``."""
    folder = resources.files("lossatlas.bench") / "suites"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def _read_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def load_suite(name_or_path: str) -> Suite:
    """Load a built-in suite by name (``quick``, ``lt``, ``noise``, ...) or a suite / recipe JSON file.

    A file holding a single recipe (an object with a ``name`` and no ``recipes``) becomes a
    one-recipe suite named after the file. A relative ``data.path`` in a file is resolved
    against the file's folder (:func:`resolve_data_path`).
    """
    if os.path.isfile(name_or_path):
        with open(name_or_path, encoding="utf-8") as f:
            data = _read_json(f.read(), name_or_path)
        default_name = os.path.splitext(os.path.basename(name_or_path))[0]
        source = name_or_path
    elif name_or_path in builtin_suites():
        text = (resources.files("lossatlas.bench") / "suites" / f"{name_or_path}.json").read_text(encoding="utf-8")
        data = _read_json(text, f"suite {name_or_path}")
        default_name = name_or_path
        source = f"built-in suite {name_or_path!r}"
    else:
        raise ValueError(f"{name_or_path!r} is neither a built-in suite ({', '.join(builtin_suites())}) nor a recipe/suite JSON file")
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object (a suite with 'recipes', or one recipe)")
    if "recipes" not in data:
        data = {"name": default_name, "recipes": [data]}
    unknown = set(data) - {"name", "description", "defaults", "recipes"}
    if unknown:
        raise ValueError(f"{source}: unknown suite fields {sorted(unknown)}; a suite has name, description, defaults, recipes")
    suite_name = data.get("name", default_name)
    if not isinstance(suite_name, str) or not suite_name:
        raise ValueError(f"{source}: 'name' must be a non-empty string")
    defaults = data.get("defaults", {})
    recipes = data["recipes"]
    if not isinstance(defaults, dict):
        raise ValueError(f"{source}: 'defaults' must be an object")
    if not isinstance(recipes, list) or not recipes:
        raise ValueError(f"{source}: 'recipes' must be a non-empty list of recipe objects")
    out: list[Recipe] = []
    base_dir = os.path.dirname(os.path.abspath(name_or_path)) if os.path.isfile(name_or_path) else None
    for i, r in enumerate(recipes):
        if not isinstance(r, dict):
            raise ValueError(f"{source}: recipes[{i}] must be an object, got {type(r).__name__}")
        merged = deep_merge(defaults, r)
        merged = {k: v for k, v in merged.items() if v is not None or k in ("weighting", "sampler")}
        if base_dir is not None:
            merged = resolve_data_path(merged, base_dir)
        try:
            out.append(validate_recipe(merged, suite_name))
        except ValueError as exc:
            raise ValueError(f"{source}: recipes[{i}]: {exc}") from None
    names = [r.name for r in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{source}: recipe names must be unique within a suite, repeated: {dup}")
    return Suite(suite_name, str(data.get("description", "")), tuple(out))
