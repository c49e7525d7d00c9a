r"""A lossatlas classification loss as the Hugging Face ``Trainer``'s ``compute_loss_func``.

``transformers.Trainer(compute_loss_func=f)`` calls ``f(outputs, labels,
num_items_in_batch=...)`` once per micro-batch: ``outputs`` is the model's output
(``outputs["logits"]``), ``labels`` the batch's labels (``-100`` marks a label to ignore),
and ``num_items_in_batch`` the number of labels other than ``-100`` in the *whole*
accumulated batch (all ``gradient_accumulation_steps`` micro-batches; summed across
processes when ``average_tokens_across_devices``). Because ``compute_loss_func`` is set, the
Trainer takes the returned loss as already scaled for gradient accumulation and does not
divide it by the number of steps. :func:`compute_loss_func` follows transformers' own
``fixed_cross_entropy`` (``transformers/loss/loss_utils.py``): with ``num_items_in_batch``
the loss is the micro-batch's *sum* of per-sample losses divided by ``num_items_in_batch``,

.. math:: L_b = \frac{1}{N_{\text{items}}} \sum_{i \in b,\ y_i \ne -100} \ell(z_i, y_i),
          \qquad \sum_b L_b = \frac{1}{N_{\text{items}}} \sum_{i,\ y_i \ne -100} \ell(z_i, y_i),

so the accumulated gradient is the gradient of the mean over the accumulated batch,
whatever the number of ignored labels in each micro-batch; without it (evaluation, or a
Trainer that does not count), the loss's own mean over the batch's kept labels.

Needs ``transformers >= 4.47`` (and ``accelerate``, which the Trainer needs): 4.46 passes
``num_items_in_batch`` only to models that take loss keyword arguments, so with a model that
does not (BERT) it gave ``None`` here and each micro-batch's mean was accumulated instead
(checked against 4.46.3, 4.47.1, 4.48.3, 4.49.0, 4.50.3, 4.51.3 and 5.25.0).

Usage (``pip install 'lossatlas[hf]'``)::

    from transformers import Trainer, TrainingArguments
    from lossatlas.integrations.huggingface import compute_loss_func

    trainer = Trainer(model=model, args=TrainingArguments(..., gradient_accumulation_steps=4),
                      train_dataset=train, compute_loss_func=compute_loss_func("ldam", class_counts=counts))

This module does not import ``transformers``: any mapping with ``"logits"`` (``ModelOutput``
is one), a tuple whose first element is the logits, or the logits tensor itself is accepted.

>>> import torch
>>> from lossatlas.integrations.huggingface import compute_loss_func
>>> f = compute_loss_func("focal", gamma=2.0)
>>> logits, labels = torch.randn(4, 3), torch.tensor([0, 2, -100, 1])
>>> bool(torch.allclose(f({"logits": logits}, labels, num_items_in_batch=6) * 6, f({"logits": logits}, labels) * 3))
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from ..losses import Loss
from ..registry import Entry, create, info

__all__ = ["compute_loss_func", "TrainerLoss"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


class TrainerLoss:
    """The callable :func:`compute_loss_func` returns: ``(outputs, labels, num_items_in_batch=None) -> loss``.

    Attributes:
        loss: the lossatlas loss module (its hyper-parameters and buffers are used; its own
            ``reduction`` is not: the call picks ``"sum"`` or ``"mean"``, see below).
        ignore_index: labels equal to it are dropped before the loss is computed (``None``: none is).
        logits_key: where the logits are in a mapping output.

    A call takes the logits [..., C] from ``outputs`` and the integer ``labels`` [...] (the
    same leading shape: sequence classification [N, C] / [N], token classification
    [N, T, C] / [N, T]), flattens both to [M, C] / [M], drops the rows whose label is
    ``ignore_index``, and returns a 0-dim tensor in the logits' dtype (float16/bfloat16
    logits are upcast to float32 first, as transformers' own losses do):

    - ``num_items_in_batch`` given (the Trainer's count of labels other than -100 over the
      accumulated batch): the sum of the per-sample losses divided by it (a count of 0,
      every label ignored, gives 0 rather than transformers' 0/0 = NaN);
    - ``num_items_in_batch`` None: the loss's mean over the kept rows.

    With per-class ``weight`` the "mean" is torch's weighted mean ``Σ w_i ℓ_i / Σ w_i``, but
    the Trainer counts labels, not weights: with ``num_items_in_batch`` the loss is
    ``Σ w_i ℓ_i / N_items``, i.e. the weighted mean times the mean weight of the accumulated
    batch (the same direction, another scale). Losses that are not a sum of per-sample terms
    (``anyloss``: a batch statistic) weight each micro-batch by its share of the items.
    """

    def __init__(self, loss: Loss, ignore_index: int | None = -100, logits_key: str = "logits") -> None:
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be a lossatlas Loss module or a loss id, got {type(loss).__name__}")
        entry = _classification_entry(loss)
        if entry.function is None:  # pragma: no cover - every classification loss has a function
            raise TypeError(f"loss {entry.id!r} has no registered function")
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}")
        if not isinstance(logits_key, str):
            raise TypeError(f"logits_key must be a str, got {type(logits_key).__name__}")
        self.loss = loss
        self.ignore_index = ignore_index
        self.logits_key = logits_key
        self._function: Callable[..., Tensor] = entry.function

    def __repr__(self) -> str:
        return f"TrainerLoss({self.loss!r}, ignore_index={self.ignore_index!r})"

    def _logits(self, outputs: Any) -> Tensor:
        if isinstance(outputs, Tensor):
            logits = outputs
        elif isinstance(outputs, Mapping):
            if self.logits_key not in outputs:
                raise ValueError(f"outputs has no {self.logits_key!r} (keys: {list(outputs)}); pass logits_key=")
            logits = outputs[self.logits_key]
        elif isinstance(outputs, (tuple, list)) and outputs:
            logits = outputs[0]
        else:
            raise TypeError(f"outputs must be a model output with logits, a tuple or a tensor, got {type(outputs).__name__}")
        if not isinstance(logits, Tensor):
            raise TypeError(f"outputs' logits must be a tensor, got {type(logits).__name__}")
        return logits

    def __call__(self, outputs: Any, labels: Tensor | None, num_items_in_batch: Tensor | float | None = None) -> Tensor:
        logits = self._logits(outputs)
        if labels is None:
            raise ValueError("labels is None: the Trainer passes the batch's 'labels'; the dataset needs a 'labels' column")
        if not isinstance(labels, Tensor):
            raise TypeError(f"labels must be a tensor, got {type(labels).__name__}")
        if logits.dim() < 2:
            raise ValueError(f"logits must be [..., C], got shape {tuple(logits.shape)}")
        if labels.shape != logits.shape[:-1]:
            raise ValueError(f"labels shape {tuple(labels.shape)} does not match logits {tuple(logits.shape)} (labels [...] for logits [..., C])")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f"labels must be integer class indices, got {labels.dtype}")
        num_classes = logits.shape[-1]
        z = logits.reshape(-1, num_classes)
        y = labels.reshape(-1).to(device=z.device, dtype=torch.long)
        if z.dtype in _LOW_PRECISION:
            z = z.float()
        if self.ignore_index is not None:
            keep = y != self.ignore_index
            z, y = z[keep], y[keep]
        self._move_loss(z.device)
        kwargs = self.loss.functional_kwargs()
        if num_items_in_batch is None:
            return self._function(z, y, **{**kwargs, "reduction": "mean"})
        total = self._function(z, y, **{**kwargs, "reduction": "sum"})
        if isinstance(num_items_in_batch, Tensor):
            count = num_items_in_batch.to(device=total.device, dtype=total.dtype)
        elif isinstance(num_items_in_batch, (int, float)) and not isinstance(num_items_in_batch, bool):
            count = torch.tensor(float(num_items_in_batch), device=total.device, dtype=total.dtype)
        else:
            raise TypeError(f"num_items_in_batch must be a tensor, a number or None, got {type(num_items_in_batch).__name__}")
        return total / count.clamp_min(1)

    def _move_loss(self, device: torch.device) -> None:
        for t in (*self.loss.parameters(), *self.loss.buffers()):
            if t.device != device:
                self.loss.to(device)
                return


def _classification_entry(loss: Loss) -> Entry:
    loss_id = getattr(type(loss), "registry_id", None)
    if not isinstance(loss_id, str):
        raise TypeError(f"{type(loss).__name__} is not a registered lossatlas loss")
    entry = info(loss_id)
    if entry.kind != "classification":
        raise TypeError(
            f"compute_loss_func needs a classification loss (logits [N, C], int64 labels [N]); "
            f"{entry.id!r} is a {entry.kind} loss"
        )
    return entry


def compute_loss_func(loss: str | Loss, /, *, ignore_index: int | None = -100, logits_key: str = "logits", **kwargs: Any) -> TrainerLoss:
    """A lossatlas classification loss as ``transformers.Trainer(compute_loss_func=...)``.

    Args:
        loss: a loss id (``"ldam"``; built with ``lossatlas.create(loss, **kwargs)``) or a
            lossatlas classification loss module (then no ``kwargs``).
        ignore_index: the label to ignore (default -100, what the Trainer and transformers'
            models use; the Trainer's ``num_items_in_batch`` counts labels other than -100).
        logits_key: where the logits are in the model's output mapping (default ``"logits"``).
        **kwargs: the loss's hyper-parameters, with a loss id.

    Returns:
        A :class:`TrainerLoss`: ``f(outputs, labels, num_items_in_batch=None)`` returns the
        micro-batch's summed loss divided by ``num_items_in_batch`` (so gradient accumulation
        gives the mean over the accumulated batch, as transformers' own losses do), or the
        loss's mean when ``num_items_in_batch`` is None.

    Raises ``TypeError`` for a loss that is not a classification loss (embedding, pair,
    multilabel) and ``ValueError`` for an unknown id.

    >>> import torch
    >>> f = compute_loss_func("cross_entropy")
    >>> logits, labels = torch.randn(4, 3), torch.tensor([0, 2, -100, 1])
    >>> bool(torch.allclose(f((logits,), labels), torch.nn.functional.cross_entropy(logits, labels)))
    True
    """
    if isinstance(loss, str):
        module = create(loss, **kwargs)
    elif isinstance(loss, Loss):
        if kwargs:
            raise TypeError(f"hyper-parameters {sorted(kwargs)} are for a loss id; a loss module already has them")
        module = loss
    else:
        raise TypeError(f"loss must be a loss id (str) or a lossatlas Loss module, got {type(loss).__name__}")
    return TrainerLoss(module, ignore_index=ignore_index, logits_key=logits_key)
