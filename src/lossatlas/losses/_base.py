"""Base classes of every lossatlas loss module.

:class:`Loss` is the common base (``reduction``, ``validate``, per-class weight buffers) and
the type :func:`lossatlas.create` returns for a loss. :class:`FunctionalLoss` is the module
of a loss whose definition is a function decorated with :func:`lossatlas._spec.loss_function`:
its constructor has the function's signature and checks, and its ``forward`` calls the
same function body, so module and function cannot drift apart::

    class FocalLoss(FunctionalLoss, function=LF.focal):
        '''docstring (formula, paper, ...), with a line {args} for the Args block'''
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .._spec import FunctionSpec, fill_args, fresh, spec_of
from .._validation import as_class_weight, check_reduction

__all__ = ["Loss", "FunctionalLoss"]


class Loss(nn.Module):
    """A loss module: hyper-parameters as attributes, prior-derived constants as buffers.

    ``reduction`` is ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-sample losses) with
    torch semantics; ``validate=False`` skips the checks that read tensor values (NaN/Inf,
    target range), which synchronise a CUDA device with the host. Calling a loss returns a
    fresh tensor (never a view of internal storage).
    """

    registry_id: ClassVar[str]
    __call__: Callable[..., Tensor]

    def __init__(self, reduction: str = "mean", validate: bool = True) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.validate = bool(validate)

    def extra_repr(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self._hparams().items()]
        parts.append(f"reduction={self.reduction!r}")
        return ", ".join(parts)

    def _hparams(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def _buffer(values: Tensor) -> Tensor:
        # Constants derived from class counts are kept in float64 and cast per call, so a
        # float64 call reproduces the reference exactly and a float32 one loses nothing.
        return values.detach().to(torch.float64).clone()

    def functional_kwargs(self) -> dict[str, Any]:
        """The keywords that make the registered function equal this module:
        ``la.info(id).function(*inputs, **crit.functional_kwargs())`` is ``crit(*inputs)``.

        By default every argument of the function that this module has as an attribute (a
        hyper-parameter, buffer or parameter of the same name)."""
        function = getattr(self, "function", None) or _registered_function(self)
        names = inspect.signature(function).parameters
        return {n: getattr(self, n) for n in names if hasattr(self, n) and not n.startswith("_")}

    def _register_class_weight(self, weight: Any, name: str = "weight") -> None:
        """Register optional per-class weights [C] as the float64 buffer ``name`` (None when absent)."""
        w = as_class_weight(weight, name)
        self.register_buffer(name, None if w is None else self._buffer(w))


def _registered_function(module: nn.Module) -> Callable[..., Any]:
    from ..registry import info

    function = info(getattr(type(module), "registry_id", type(module).__name__)).function
    if function is None:
        raise TypeError(f"{type(module).__name__} has no registered function")
    return function


class FunctionalLoss(Loss):
    """The module twin of a :func:`~lossatlas._spec.loss_function`: ``class X(FunctionalLoss,
    function=f)``.

    The constructor takes the function's hyper-parameters (same names, defaults and checks,
    run once here); tensor-valued ones become float64 buffers (``state_dict``, ``.to()``),
    the rest attributes. ``forward(*inputs, **call_keywords)`` calls the function's body with
    them. A subclass may override :meth:`setup` to derive more buffers.
    """

    spec: ClassVar[FunctionSpec]
    function: ClassVar[Callable[..., Tensor]]
    _hparam_names: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls, function: Callable[..., Tensor] | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if function is None:
            return
        spec = spec_of(function)
        cls.spec = spec
        cls.function = staticmethod(function)
        cls._hparam_names = spec.hparams
        params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        for name in spec.hparams:
            p = spec.signature.parameters[name]
            kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if p.default is inspect.Parameter.empty else inspect.Parameter.KEYWORD_ONLY
            params.append(p.replace(kind=kind))
        params.sort(key=lambda p: p.kind)  # required first (positional), then keyword-only

        def __init__(self: FunctionalLoss, *args: Any, **kwargs: Any) -> None:
            FunctionalLoss._construct(self, *args, **kwargs)

        __init__.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        __init__.__doc__ = f"Build the loss; arguments as :func:`{function.__module__}.{function.__name__}`."
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        setattr(cls, "__init__", __init__)  # noqa: B010 - a generated constructor with the function's signature
        if cls.__doc__ and "{args}" in cls.__doc__:
            cls.__doc__ = fill_args(cls.__doc__, spec)

    def _construct(self, *args: Any, **kwargs: Any) -> None:
        sig = inspect.signature(type(self).__init__)
        try:
            bound = sig.bind(self, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{type(self).__name__}: {exc}") from None
        bound.apply_defaults()
        values = {n: v for n, v in bound.arguments.items() if n != "self"}
        values = self.spec.check_all(values)
        Loss.__init__(self, values.pop("reduction", "mean"), values.pop("validate", True))
        self._tensor_hparams: tuple[str, ...] = tuple(n for n, v in values.items() if isinstance(v, Tensor))
        for name, value in values.items():
            if isinstance(value, Tensor):
                self.register_buffer(name, self._buffer(value) if value.is_floating_point() else value.detach().clone())
            else:
                setattr(self, name, value)
        self.setup()

    def setup(self) -> None:
        """Derive more buffers from the hyper-parameters (none by default)."""

    def hparams(self) -> dict[str, Any]:
        """The hyper-parameters as the function takes them (buffers included)."""
        return {name: getattr(self, name) for name in self._hparam_names}

    def functional_kwargs(self) -> dict[str, Any]:
        return self.hparams()

    def _hparams(self) -> dict[str, Any]:
        shown = {}
        for name in self._hparam_names:
            if name in ("reduction", "validate"):
                continue
            value = getattr(self, name)
            shown[name] = (f"tensor[{value.numel()}]" if isinstance(value, Tensor) else value)
        return shown

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" if isinstance(v, str) and v.startswith("tensor[") else f"{k}={v!r}"
                         for k, v in {**self._hparams(), "reduction": self.reduction}.items())

    def forward(self, *inputs: Any, **call: Any) -> Tensor:
        return fresh(self.spec.function(*inputs, **self.hparams(), **call))

