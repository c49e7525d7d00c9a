"""Log lossatlas metric results from a Lightning module.

``LightningModule.log`` / ``log_dict`` take scalars only (a number or a one-element tensor),
while :mod:`lossatlas.metrics` results are dicts that mix scalars and vectors:
``ShotAccuracy().compute()`` has ``per_class_accuracy`` [C], ``BinnedCalibration`` the
reliability diagram's per-bin vectors, ``ClasswiseECE`` ``per_class_ece`` [C].
:func:`loggable` splits such a result into named scalars: ``per_class_accuracy`` [C] becomes
``per_class_accuracy/0`` ... ``per_class_accuracy/{C-1}``.

Usage (``pip install 'lossatlas[lightning]'``)::

    from lossatlas.integrations.lightning import loggable

    class Model(lightning.LightningModule):
        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.shots.update(self(x), y)                # lossatlas.metrics.ShotAccuracy

        def on_validation_epoch_end(self):
            self.log_dict(loggable(self.shots.compute(), prefix="val/"))
            self.shots.reset()

This module imports neither ``lightning`` nor ``torchmetrics``: it only converts values.

>>> import torch
>>> from lossatlas.integrations.lightning import loggable
>>> loggable({"per_class_accuracy": torch.tensor([1.0, 0.5, float("nan")]), "balanced_accuracy": 0.75}, prefix="val/")
{'val/per_class_accuracy/0': tensor(1.), 'val/per_class_accuracy/1': tensor(0.5000), 'val/per_class_accuracy/2': tensor(nan), 'val/balanced_accuracy': tensor(0.7500)}
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["loggable"]


def loggable(result: Any, prefix: str = "") -> dict[str, Tensor]:
    """Flatten a metric result into ``{name: float32 0-dim tensor}`` for ``LightningModule.log_dict``.

    Args:
        result: a mapping of names to values (what ``lossatlas.metrics`` ``compute()`` and
            :func:`lossatlas.metrics.evaluate` return; nested mappings allowed), or a single
            value (then ``prefix`` is its name). A value is a tensor, a number (bool, int,
            float, NumPy scalar), a NumPy array, or a list/tuple of numbers.
        prefix: prepended verbatim to every top-level key (``"val/"``, ``"val_"``: the
            convention of torchmetrics' ``MetricCollection(prefix=...)``).

    Returns:
        A new dict, in the result's order. A 0-dim value keeps its name; an element of a
        vector (any tensor with dims) is named ``name/i`` (``name/i/j`` for a matrix, e.g. a
        confusion matrix); a nested mapping's keys are joined with ``/``. Every value is a
        fresh float32 0-dim tensor on the device of the input tensor (CPU for numbers), so
        that later ``reset()``/``update()`` of the metric cannot change what was logged.

    NaN is kept, not dropped: ``per_class_accuracy/k`` of a class without test samples is
    NaN, and so is a ``few_shot_accuracy`` over an empty split; Lightning logs NaN as is
    (a logger that cannot store NaN, or a checkpoint monitoring such a key, should not be
    given that key). Strings and ``None`` (metadata, e.g. :func:`reliability_diagram`'s
    ``"input"``) are left out. Raises ``ValueError`` for a single value without a
    ``prefix`` or for two values flattened to the same name, ``TypeError`` for a value of
    another type (a complex tensor, an object).
    """
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
    out: dict[str, Tensor] = {}
    if isinstance(result, Mapping):
        for key, value in result.items():
            _flatten(prefix + str(key), value, out)
    else:
        if not prefix:
            raise ValueError("a single value needs a name: pass prefix= (e.g. loggable(value, prefix='val/zeta'))")
        _flatten(prefix, result, out)
    return out


def _child(name: str, part: str) -> str:
    return name + part if not name or name.endswith("/") else f"{name}/{part}"


def _add(name: str, value: Tensor, out: dict[str, Tensor]) -> None:
    if name in out:
        raise ValueError(f"two values of the result are both named {name!r}")
    out[name] = value


def _flatten(name: str, value: Any, out: dict[str, Tensor]) -> None:
    if value is None or isinstance(value, str):
        return
    if isinstance(value, Mapping):
        for key, sub in value.items():
            _flatten(_child(name, str(key)), sub, out)
        return
    if isinstance(value, Tensor):
        tensor = value.detach()
    elif isinstance(value, (bool, np.bool_, Real)):
        tensor = torch.tensor(float(value))
    elif isinstance(value, (np.ndarray, list, tuple)):
        try:
            tensor = torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name!r}: a list, tuple or array must hold numbers ({exc})") from None
    else:
        raise TypeError(f"{name!r}: cannot log a {type(value).__name__} (a tensor, a number or a mapping of them)")
    if tensor.is_complex():
        raise TypeError(f"{name!r}: cannot log a complex tensor")
    tensor = tensor.to(torch.float32, copy=True)
    if tensor.dim() == 0:
        _add(name, tensor, out)
        return
    for index in np.ndindex(*tensor.shape):
        _add(_child(name, "/".join(map(str, index))), tensor[index].clone(), out)
