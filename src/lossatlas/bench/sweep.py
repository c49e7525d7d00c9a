"""Hyper-parameter sweeps: a grid or a random search over recipe fields, run into the store.

A sweep takes recipes of a suite (``--method``; all of them by default) and varies fields
named by dotted paths into the recipe (``loss.gamma``, ``loss.tau``, ``optimizer.lr``,
``weighting.beta``, ``epochs``)::

    lossatlas bench sweep lt --method vs --param loss.gamma=0,0.1,0.2 --param loss.tau=0.5,1,1.2

Each setting is a recipe of the suite ``<suite>-sweep`` named ``vs[gamma=0.1,tau=1]``; the
recipe as the suite writes it (its published default) is run beside them under its own name.
Runs go through the ordinary runner into the same SQLite store, keyed by recipe hash and seed,
so a rerun of the same command repeats nothing and resumes what a killed one left; a wider
grid adds only the new settings. Random search (``--trials N``) draws N settings with a
seeded generator (``--sweep-seed``), the same ones on every rerun, from lists of values or
from ``uniform(a,b)``, ``loguniform(a,b)``, ``int(a,b)`` ranges.

The store's ``sweep_points`` table records, per sweep suite, which recipe is which method's
default and which setting each point is; :func:`lossatlas.bench.report.sweep_section` shows
the best setting per method beside the default. The best setting is chosen on the test split
the leaderboard reports, so its score is an optimistic estimate: confirm it on fresh seeds.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .recipes import Recipe, Suite, validate_recipe

__all__ = ["Param", "SweepPoint", "parse_param", "sweep_settings", "plan_sweep", "write_sweep_suite", "sweep_suite_name"]

_RANGE = re.compile(r"^(uniform|loguniform|int)\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)$")


@dataclass(frozen=True)
class Param:
    """One swept field: ``path`` (dotted) and either ``values`` (a list: a grid axis, or a
    set to draw from) or ``dist`` (``("uniform" | "loguniform" | "int", low, high)``)."""

    path: str
    values: tuple[Any, ...] | None = None
    dist: tuple[str, float, float] | None = None


@dataclass(frozen=True)
class SweepPoint:
    """One recipe of a sweep: the ``method`` (base recipe name) it varies, the ``params`` set
    (``{}`` and ``is_default`` for the base recipe as written) and the validated ``recipe``."""

    method: str
    params: dict[str, Any]
    is_default: bool
    recipe: Recipe


def _value(text: str) -> Any:
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare word: a string value (e.g. a schedule name)


def parse_param(text: str) -> Param:
    """``PATH=V1,V2,...`` (values parsed as JSON, bare words as strings) or
    ``PATH=uniform(a,b)`` / ``loguniform(a,b)`` / ``int(a,b)`` (random search only)."""
    path, sep, rest = text.partition("=")
    path = path.strip()
    if not sep or not path or not rest.strip():
        raise ValueError(f"--param must be PATH=V1,V2,... or PATH=uniform(a,b), e.g. loss.gamma=0,0.1,0.2; got {text!r}")
    if not all(part.isidentifier() for part in path.split(".")):
        raise ValueError(f"--param {text!r}: {path!r} is not a dotted recipe path such as loss.gamma or optimizer.lr")
    m = _RANGE.match(rest.strip())
    if m:
        kind = m.group(1)
        try:
            lo, hi = float(m.group(2)), float(m.group(3))
        except ValueError:
            raise ValueError(f"--param {text!r}: the bounds of {kind}(a,b) must be numbers") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi) or (kind == "loguniform" and lo <= 0):
            raise ValueError(f"--param {text!r}: {kind}(a,b) needs finite a < b" + (" and a > 0" if kind == "loguniform" else ""))
        return Param(path, dist=(kind, lo, hi))
    values = tuple(_value(v) for v in rest.split(","))
    if any(v == "" for v in values):
        raise ValueError(f"--param {text!r}: an empty value in the list")
    return Param(path, values=tuple(_dedupe(values)))


def _dedupe(values: Sequence[Any]) -> list[Any]:
    seen: set[str] = set()
    out = []
    for v in values:
        key = json.dumps(v, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


def _round(x: float) -> float:
    return float(f"{x:.3g}")


def sweep_settings(params: Sequence[Param], trials: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """The settings of a sweep: the full grid of the ``values`` lists (``trials=None``), or
    ``trials`` random draws (seeded by ``seed``: the same on every call), continuous ranges
    rounded to 3 significant digits. Duplicates are dropped; the order is stable."""
    if not params:
        raise ValueError("a sweep needs at least one --param")
    paths = [p.path for p in params]
    if len(set(paths)) != len(paths):
        raise ValueError(f"--param paths must be distinct, got {paths}")
    if trials is None:
        ranged = [p.path for p in params if p.values is None]
        if ranged:
            raise ValueError(f"{ranged} give ranges, which only a random search draws from: add --trials N, or list values (PATH=V1,V2)")
        grid = [dict(zip(paths, combo)) for combo in itertools.product(*(p.values or () for p in params))]
        return _unique(grid)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"--trials must be a positive int, got {trials!r}")
    rng = random.Random(seed)
    out = []
    for _ in range(trials):
        point: dict[str, Any] = {}
        for p in params:
            if p.values is not None:
                point[p.path] = p.values[rng.randrange(len(p.values))]
                continue
            assert p.dist is not None
            kind, lo, hi = p.dist
            if kind == "int":
                point[p.path] = rng.randint(math.ceil(lo), math.floor(hi))
            elif kind == "loguniform":
                point[p.path] = _round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
            else:
                point[p.path] = _round(rng.uniform(lo, hi))
        out.append(point)
    return _unique(out)


def _unique(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for p in points:
        key = json.dumps(p, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


_MISSING = object()


def _get(config: dict[str, Any], path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _set(config: dict[str, Any], path: str, value: Any, method: str) -> dict[str, Any]:
    out = copy.deepcopy(config)
    node = out
    parts = path.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ValueError(f"recipe {method!r} has no {where!r} object to set {path!r} in (it is {child!r}); sweep another --method or path")
        node = child
    node[parts[-1]] = value
    return out


def _same(a: Any, b: Any) -> bool:
    if a is _MISSING or b is _MISSING:
        return False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _point_name(method: str, params: dict[str, Any]) -> str:
    leaves = [p.rsplit(".", 1)[-1] for p in params]
    keys = [leaf if leaves.count(leaf) == 1 else path for leaf, path in zip(leaves, params)]
    return f"{method}[" + ",".join(f"{k}={_label(v)}" for k, v in zip(keys, params.values())) + "]"


def sweep_suite_name(suite: str) -> str:
    """The suite a sweep of ``suite`` stores its runs under."""
    return f"{suite}-sweep"


def plan_sweep(suite: Suite, params: Sequence[Param], methods: Sequence[str] | None = None, trials: int | None = None, seed: int = 0,
               name: str | None = None) -> tuple[str, list[SweepPoint]]:
    """The sweep suite's name and its points: for each chosen recipe of ``suite`` its default
    (the recipe as written) and one recipe per setting (a setting equal to the default is the
    default). ``ValueError`` for an unknown method or a path a recipe lacks."""
    sweep_name = name or sweep_suite_name(suite.name)
    known = [r.name for r in suite.recipes]
    chosen = list(suite.recipes) if not methods else []
    for m in methods or ():
        match = [r for r in suite.recipes if r.name == m]
        if not match:
            raise ValueError(f"suite {suite.name!r} has no recipe {m!r}; its recipes are {known}")
        chosen += match
    settings = sweep_settings(params, trials, seed)
    points: list[SweepPoint] = []
    for base in chosen:
        cfg = {k: v for k, v in base.config.items() if k != "description"}
        points.append(SweepPoint(base.name, {}, True, validate_recipe(cfg, sweep_name)))
        for setting in settings:
            if all(_same(_get(cfg, path), v) for path, v in setting.items()):
                continue  # the default itself
            point = cfg
            for path, v in setting.items():
                point = _set(point, path, v, base.name)
            point = {**point, "name": _point_name(base.name, setting)}
            try:
                recipe = validate_recipe(point, sweep_name)
            except ValueError as exc:
                raise ValueError(f"sweep setting {setting} of {base.name!r}: {exc}") from None
            points.append(SweepPoint(base.name, dict(setting), False, recipe))
    return sweep_name, points


def write_sweep_suite(sweep_name: str, points: Sequence[SweepPoint], folder: str | os.PathLike[str]) -> str:
    """Write the points as a suite file (runner processes load it) under ``folder``; returns its path.

    The recipes are complete (paths absolute), so loading the file gives the same hashes."""
    os.makedirs(folder, exist_ok=True)
    blob = json.dumps(sorted(p.recipe.hash for p in points))
    tag = hashlib.sha256(blob.encode()).hexdigest()[:8]
    path = os.path.join(os.fspath(folder), f"{sweep_name}-{tag}.json")
    data = {"name": sweep_name, "description": f"sweep of {sorted({p.method for p in points})}", "recipes": [p.recipe.config for p in points]}
    tmp = path + f".{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return path
