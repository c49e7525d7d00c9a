"""Recipe checks and helpers shared by the task plug-ins (private: not a task)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection
from typing import Any, cast

import torch
from torch import nn

from ... import registry


def positive_int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'{field}' must be a positive int, got {value!r}")
    return value


def check_top_fields(recipe: dict[str, Any], allowed: Collection[str], what: str) -> dict[str, Any]:
    """A copy of ``recipe`` after checking it has only ``allowed`` fields (``what``: "a metric", ...)."""
    r = dict(recipe)
    unknown = set(r) - set(allowed)
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}; {what} recipe has {sorted(allowed)}")
    return r


def with_defaults(spec: dict[str, Any] | None, defaults: dict[str, Any], field: str) -> dict[str, Any]:
    """``defaults`` updated with ``spec`` (None = none), which may only hold their keys."""
    out = {**defaults, **(spec or {})}
    unknown = set(out) - set(defaults)
    if unknown:
        raise ValueError(f"'{field}' has unknown fields {sorted(unknown)}; allowed: {sorted(defaults)}")
    return out


def mnist1d_data(spec: dict[str, Any] | None, task: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` field of a task that only runs on MNIST-1D, ``defaults`` filled in."""
    data = {"name": "mnist1d", **defaults, **(spec or {})}
    if data["name"] != "mnist1d":
        raise ValueError(f"data.name must be 'mnist1d' for the {task} task, got {data['name']!r}")
    return data


def embedding_model(spec: dict[str, Any] | None, task: str) -> dict[str, Any]:
    """The ``model`` field of an embedding task: cnn1d (default) or mlp, with a positive ``embedding_size`` [64]."""
    model = {"name": "cnn1d", "embedding_size": 64, **(spec or {})}
    if model["name"] not in ("cnn1d", "mlp"):
        raise ValueError(f"model.name must be 'cnn1d' or 'mlp' for the {task} task, got {model['name']!r}")
    positive_int(model["embedding_size"], "model.embedding_size")
    return model


def check_kwargs(
    fn: Callable[..., Any], kwargs: dict[str, Any], field: str, skip: Collection[str] = (), open_ended: bool = False
) -> None:
    """``ValueError`` naming the options of ``kwargs`` that ``fn`` does not take (``skip`` excluded
    from the allowed ones); with ``open_ended`` a ``fn`` that takes ``**kwargs`` accepts any."""
    params = inspect.signature(fn).parameters
    if open_ended and any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    allowed = set(params) - {"self"} - set(skip)
    unknown = set(kwargs) - allowed
    if unknown:
        raise ValueError(f"'{field}' has unknown options {sorted(unknown)}; allowed: {sorted(allowed)}")


def check_entry(
    spec: Any,
    field: str,
    kinds: tuple[str, ...],
    injected: Collection[str],
    need: str | None = None,
    extra: Collection[str] = (),
    open_ended: bool = False,
) -> dict[str, Any] | None:
    """Check a ``{"id": <registry id>, <options>}`` field (None passes): the id exists, is one of
    ``kinds`` (else the error ends with ``need``) and its class takes the options (``extra``
    keys aside; ``injected`` ones are filled in by the task). Returns it with the canonical id."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("id"), str):
        raise ValueError(f"'{field}' must be an object with a registry 'id' (see `lossatlas list`), got {spec!r}")
    try:
        entry = registry.info(spec["id"])
    except (KeyError, ValueError) as exc:
        raise ValueError(f"'{field}': {exc}") from None
    if entry.kind not in kinds:
        tail = f", expected one of {kinds}" if need is None else need
        raise ValueError(f"'{field}': {spec['id']!r} is a {entry.kind} entry{tail}")
    kwargs = {k: v for k, v in spec.items() if k not in {"id", *extra}}
    cls: type[object] = entry.cls  # type[object]: its unbound __init__ may be read (on a plain `type` mypy flags it)
    check_kwargs(cls.__init__, kwargs, field, injected, open_ended)
    return {**spec, "id": entry.id}


def create(spec: dict[str, Any], extra: Collection[str], available: dict[str, Any]) -> Any:
    """The registry object of a checked spec; ``available`` values fill the parameters it takes and leaves out."""
    entry = registry.info(spec["id"])
    kwargs = {k: v for k, v in spec.items() if k not in {"id", *extra}}
    params = entry.parameters
    for k, v in available.items():
        if k in params and k not in kwargs:
            kwargs[k] = v
    return registry.create(entry.id, **kwargs)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch: int = 2048, features: bool = False) -> torch.Tensor:
    """The model's outputs (its ``features`` backbone's, when asked and present) on ``x``, in eval
    mode and batches, as float32 on the CPU."""
    model.eval()
    # model.features is present by the hasattr; nn.Module.__getattr__ would type it Tensor | Module
    fn = cast(Callable[[torch.Tensor], torch.Tensor], model.features) if features and hasattr(model, "features") else model
    return torch.cat([fn(x[i : i + batch]) for i in range(0, x.shape[0], batch)]).float().cpu()
