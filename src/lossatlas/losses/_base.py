"""Base class of every lossatlas loss module."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._validation import as_class_weight, check_reduction


class Loss(nn.Module):
    """A loss module: hyper-parameters as attributes, prior-derived constants as buffers.

    Subclasses implement ``forward`` by calling their functional twin. ``reduction`` is
    ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-sample losses) with torch semantics;
    ``validate=False`` skips the checks that read tensor values (NaN/Inf, target range),
    which synchronise a CUDA device with the host.
    """

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
    def _buffer(values: torch.Tensor) -> torch.Tensor:
        # Constants derived from class counts are kept in float64 and cast per call, so a
        # float64 call reproduces the reference exactly and a float32 one loses nothing.
        return values.detach().to(torch.float64).clone()

    def _register_class_weight(self, weight: Any, name: str = "weight") -> None:
        """Register optional per-class weights [C] as the float64 buffer ``name`` (None when absent)."""
        w = as_class_weight(weight, name)
        self.register_buffer(name, None if w is None else self._buffer(w))
