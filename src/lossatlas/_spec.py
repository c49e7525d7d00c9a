"""One definition per loss: a hyper-parameter's name, default, check and doc line, written once.

A public loss function is the definition. Its signature holds each argument's name and
default (the only place they are written); :func:`loss_function` attaches a
:class:`FunctionSpec` to it that gives, for each hyper-parameter, the check that validates
it and the doc line that explains it (and where its default comes from). From that one
definition:

* the function validates its hyper-parameters on every call (the defaults once, when it is
  defined), then runs its body;
* :class:`lossatlas.losses.FunctionalLoss` builds the module: the same signature for
  ``__init__`` (so ``la.create`` and ``inspect.signature`` see it), the same checks once at
  construction, tensors kept as buffers, and a ``forward`` that calls the same body;
* the registry reads the defaults and their sources, and the docs read the doc lines.

>>> import torch
>>> from lossatlas._spec import Param, loss_function, nonnegative
>>> @loss_function(inputs=("x",), params={"p": Param("the power", nonnegative, "made up")})
... def power_sum(x: torch.Tensor, *, p: float = 2.0) -> torch.Tensor:
...     return x.abs().pow(p).sum()
>>> float(power_sum(torch.tensor([1.0, 2.0])))
5.0
>>> power_sum(torch.ones(2), p=-1.0)
Traceback (most recent call last):
    ...
ValueError: p must be >= 0.0, got -1.0
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor

from ._opaque import routed
from ._validation import as_class_counts, as_class_weight, check_number, check_reduction

__all__ = [
    "Param",
    "FunctionSpec",
    "loss_function",
    "spec_of",
    "fresh",
    "mean_divisor",
    "safe_ratio",
    "COMMON",
    "any_number",
    "nonnegative",
    "positive",
    "unit_interval",
    "as_bool",
    "as_int",
    "class_counts_param",
    "weight_param",
]

F = TypeVar("F", bound=Callable[..., Tensor])
Check = Callable[[Any, str], Any]


def _accept(value: Any, name: str) -> Any:
    return value


def any_number(value: Any, name: str) -> float:
    """A finite real number."""
    return check_number(value, name)


def nonnegative(value: Any, name: str) -> float:
    """A finite real number ≥ 0."""
    return check_number(value, name, low=0.0)


def positive(value: Any, name: str) -> float:
    """A finite real number > 0."""
    return check_number(value, name, low=0.0, low_open=True)


def unit_interval(value: Any, name: str) -> float:
    """A real number in [0, 1]."""
    return check_number(value, name, low=0.0, high=1.0)


def as_bool(value: Any, name: str) -> bool:
    """``True`` or ``False`` (numbers and strings are refused: they hide typos)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def as_int(value: Any, name: str) -> int:
    """A Python ``int`` (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return value


def _reduction(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of 'mean', 'sum', 'none', got {type(value).__name__}")
    return check_reduction(value)


def class_counts_param(value: Any, name: str) -> Tensor:
    """Training samples per class: positive numbers, as a float64 CPU tensor [C]."""
    return as_class_counts(value, name)


def weight_param(value: Any, name: str) -> Tensor | None:
    """Optional per-class weights [C], finite and non-negative."""
    return as_class_weight(value, name)


@dataclass(frozen=True)
class Param:
    """A hyper-parameter's doc line, check and the source of its default (name and default
    are the function signature's)."""

    doc: str
    check: Check = _accept
    source: str | None = None


#: Arguments every loss of a kind shares, documented and checked once.
COMMON: dict[str, Param] = {
    "reduction": Param("``'mean'`` | ``'sum'`` | ``'none'`` (per-sample losses), torch semantics", _reduction, "torch"),
    "validate": Param("check the tensors' values (NaN/Inf, target range); costs a host read on CUDA", as_bool),
    "ignore_index": Param("target value whose rows are skipped (they leave the mean's denominator)", as_int, "torch (-100)"),
    "weight": Param("optional per-class weights [C]; ``'mean'`` is then ``Σ w_{y_i} ℓ_i / Σ w_{y_i}``", weight_param),
    "class_counts": Param("training samples per class [C] (positive; e.g. ``la.data.class_counts(labels)``)",
                          class_counts_param),
}


#: Hyper-parameters with one value per class: given together, their lengths must agree.
PER_CLASS = ("class_counts", "weight", "alpha")


def fresh(out: Tensor) -> Tensor:
    """``out``, copied if it is a view of other storage: a loss never aliases internal buffers,
    so ``loss *= 2`` (what the Hugging Face Trainer does) and a backward after it work."""
    return out.clone() if out._base is not None else out


def mean_divisor(total: Tensor) -> Tensor:
    """The divisor of a ``"mean"`` over a total weight: ``total``, or 1 where it is 0 (nothing
    counted; the numerator is then 0 too). Not a floor at ``tiny``: that would scale the
    numerator's gradient by 1/tiny, which overflows under a loss weight and meets the zero
    weights as inf · 0 = NaN. (A Python 1 keeps ``total``'s dtype: an integer count stays one.)"""
    return torch.where(total > 0, total, 1)


def safe_ratio(num: Tensor, den: Tensor) -> Tensor:
    """``num / den``, and 0 with a zero gradient where ``den = 0`` (a ratio that is undefined
    there, e.g. a normaliser or a confusion-matrix rate of an absent class)."""
    return torch.where(den > 0, num / mean_divisor(den), torch.zeros_like(num))


@dataclass(frozen=True)
class FunctionSpec:
    """What :func:`loss_function` knows about a loss function."""

    function: Callable[..., Tensor]
    inputs: tuple[str, ...]
    call: tuple[str, ...]
    params: Mapping[str, Param]
    signature: inspect.Signature = field(repr=False)

    @property
    def hparams(self) -> tuple[str, ...]:
        """The hyper-parameters: every argument that is neither an input nor a call keyword."""
        return tuple(n for n in self.signature.parameters if n not in self.inputs and n not in self.call)

    @property
    def defaults(self) -> dict[str, Any]:
        return {n: p.default for n, p in self.signature.parameters.items()
                if n in self.hparams and p.default is not inspect.Parameter.empty}

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(n for n in self.hparams if self.signature.parameters[n].default is inspect.Parameter.empty)

    @property
    def sources(self) -> dict[str, str]:
        return {n: p.source for n, p in self.params.items() if p.source and n in self.hparams}

    def check(self, name: str, value: Any) -> Any:
        """Validate (and normalise) one hyper-parameter, with messages naming ``name``."""
        param = self.params.get(name)
        if param is None or value is None and name not in ("reduction", "validate"):
            return value
        return param.check(value, name)

    def check_all(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check every hyper-parameter, then that the per-class ones agree in length."""
        out = {n: self.check(n, v) if n in self.params else v for n, v in values.items()}
        sized = [(n, v) for n, v in out.items() if n in PER_CLASS and isinstance(v, Tensor) and v.dim() == 1]
        for (name, value), (first, ref) in zip(sized[1:], sized):
            if value.numel() != ref.numel():
                raise ValueError(f"{name} has {value.numel()} entries but {first} has {ref.numel()}; they must match")
        return out

    def args_doc(self) -> str:
        """An ``Args:`` block from the doc lines (for docstrings)."""
        lines = ["Args:"]
        for name in self.hparams:
            param = self.params.get(name)
            if param is None:
                continue
            default = self.signature.parameters[name].default
            tail = "" if default is inspect.Parameter.empty else f" Default ``{default!r}``"
            if param.source and default is not inspect.Parameter.empty:
                tail += f" ({param.source})"
            lines.append(f"    {name}: {param.doc}.{tail}")
        return "\n".join(lines)


def spec_of(function: Callable[..., Any]) -> FunctionSpec:
    """The :class:`FunctionSpec` of a function decorated with :func:`loss_function`."""
    spec = getattr(function, "spec", None)
    if not isinstance(spec, FunctionSpec):
        raise TypeError(f"{getattr(function, '__qualname__', function)!r} is not a lossatlas loss function")
    return spec


def loss_function(
    *,
    inputs: tuple[str, ...],
    call: tuple[str, ...] = (),
    params: Mapping[str, Param] | None = None,
    compile_opaque: bool = False,
    opaque_min_numel: int | None = None,
) -> Callable[[F], F]:
    """Decorator that makes a loss function the one definition of its method.

    ``inputs`` names the tensors a call passes positionally (``("logits", "target")``),
    ``call`` the keywords that belong to a call rather than to the loss (a ``mask``, sample
    ``index``); every other argument is a hyper-parameter and needs a :class:`Param` in
    ``params`` or in :data:`COMMON`. The decorated function checks the hyper-parameters it is
    given (its defaults were checked here, once), calls the body and returns a fresh tensor;
    ``function.unchecked`` is the body, which modules call with values checked at
    construction.

    ``compile_opaque=True`` (a loss whose traced form inductor compiles slower than its eager
    kernels on CPU, measured in ``benchmarks/perf.py``): under ``torch.compile`` on CPU, large
    calls run the body's eager code as one opaque custom operator (:mod:`lossatlas._opaque`):
    from ``opaque_min_numel`` elements of the first input (default
    :data:`lossatlas._opaque.OPAQUE_MIN_NUMEL`; a loss whose cost grows faster than its input,
    e.g. over all pairs of a batch, sets its own).
    """

    def decorate(body: F) -> F:
        sig = inspect.signature(body)
        names = tuple(sig.parameters)
        missing_inputs = [n for n in inputs + call if n not in sig.parameters]
        if missing_inputs:
            raise TypeError(f"{body.__qualname__}: no argument(s) {missing_inputs}")
        merged: dict[str, Param] = {}
        for n in names:
            if n in inputs or n in call:
                continue
            p = (params or {}).get(n, COMMON.get(n))
            if p is None:
                raise TypeError(f"{body.__qualname__}: hyper-parameter {n!r} has no Param (check and doc line)")
            merged[n] = p
        unknown = set(params or {}) - set(merged)
        if unknown:
            raise TypeError(f"{body.__qualname__}: Params for unknown arguments {sorted(unknown)}")
        reduction = sig.parameters.get("reduction")
        run = routed(f"{body.__module__}.{body.__qualname__}", body, call,
                     None if reduction is None else reduction.default, compile_opaque, opaque_min_numel)
        spec = FunctionSpec(run, inputs, call, merged, sig)
        for n, default in spec.defaults.items():  # the defaults must pass their own checks
            spec.check(n, default)
        positional = names  # a positional argument is matched by name (e.g. class_counts)
        n_positional = len([p for p in sig.parameters.values()
                            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])

        @functools.wraps(run)
        def checked(*args: Any, **kwargs: Any) -> Tensor:
            if len(args) > n_positional:
                raise TypeError(f"{body.__name__}() takes {n_positional} positional arguments but {len(args)} were given")
            args_list = list(args)
            for i in range(len(inputs), len(args_list)):
                args_list[i] = spec.check(positional[i], args_list[i])
            for k, v in kwargs.items():
                if k in merged:
                    kwargs[k] = spec.check(k, v)
            return fresh(run(*args_list, **kwargs))

        checked.spec = spec  # type: ignore[attr-defined]
        checked.unchecked = run  # type: ignore[attr-defined]
        if checked.__doc__ and "{args}" in checked.__doc__:
            checked.__doc__ = fill_args(checked.__doc__, spec)
        return checked  # type: ignore[return-value]

    return decorate


def fill_args(doc: str, spec: FunctionSpec) -> str:
    """Replace a line holding only ``{args}`` with the spec's ``Args:`` block, same indent."""
    out: list[str] = []
    for line in doc.split("\n"):
        if line.strip() == "{args}":
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + row if row else row for row in spec.args_doc().split("\n"))
        else:
            out.append(line)
    return "\n".join(out)

