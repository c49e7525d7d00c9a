"""Susceptibility to noisy labels (catalogue rows B11 / J8).

Forouzesh, Sedghi & Thiran (2023), "Leveraging Unlabeled Data to Track Memorization",
ICLR 2023, arXiv:2212.04461; official code: mahf93/tracking-memorization ``experiments.py``.
(The catalogue brief attributes the metric to "Jiang et al."; the susceptibility metric
for memorisation of noisy labels from unlabeled data is Forouzesh et al.'s.)

What is measured
----------------
Take a held-out set of *unlabeled* samples and give them uniformly random labels once:
``S̃``. At a training step (the paper: once per epoch), copy the network, take **one**
optimiser step on a mini-batch of ``S̃`` and measure how much the loss on that mini-batch
dropped; then throw the copy away, so training is unaffected:

.. math:: \\zeta(t) = \\frac{1}{t}\\sum_{\\tau=1}^{t}\\Big[\\tilde\\Phi\\big(w(\\tau)\\big) - \\tilde\\Phi\\big(\\tilde w(\\tau+1)\\big)\\Big]

with ``Φ̃`` the loss on the random-label batch, ``w(τ)`` the weights at epoch τ and
``w̃(τ+1)`` the weights after the extra step on ``S̃``. A network that can fit random
labels quickly (high ζ) is memorising the noisy part of its training set; low ζ together
with high training accuracy selects models that generalise (the paper's recipe).

This module implements exactly that as:

* :func:`susceptibility_probe` — the one-step probe, as in the official code: the model
  (parameters *and* buffers, e.g. BatchNorm statistics), the optimiser state and the RNG
  state are restored afterwards; the step uses the training optimiser (same learning
  rate, momentum, weight decay); the model is in train mode during the probe, as in the
  official code. It returns ``(loss_before, loss_after)``.
* :class:`Susceptibility` — a :class:`torchmetrics.Metric` that accumulates
  ``loss_before − loss_after`` and returns the running mean ``ζ(t)``; under DDP the sums
  and counts are added over processes, so ζ is the mean over all probes of all ranks.
* :func:`random_labels` — the seeded uniform labels for ``S̃`` (draw them once and keep
  them fixed for the whole run).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

__all__ = ["Susceptibility", "susceptibility_probe", "random_labels"]


def random_labels(num_samples: int, num_classes: int, seed: int = 0) -> Tensor:
    """Uniform random labels int64 [num_samples] for the probe set ``S̃`` (seeded, numpy RNG).

    Example:
        >>> from lossatlas.metrics.susceptibility import random_labels
        >>> random_labels(5, 3, seed=0).tolist() == random_labels(5, 3, seed=0).tolist()
        True
    """
    for name, v in (("num_samples", num_samples), ("num_classes", num_classes)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if name == "num_samples" else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'num_samples' else 'positive'} int, got {v!r}")
    rng = np.random.default_rng(int(seed))
    return torch.from_numpy(rng.integers(0, int(num_classes), size=int(num_samples)).astype(np.int64))


def _devices(model: nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


def susceptibility_probe(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: Tensor,
    random_targets: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
) -> tuple[float, float]:
    """One-step probe on a random-label batch; returns ``(Φ̃(w), Φ̃(w̃))`` and leaves no trace.

    ``model(inputs)`` must give the outputs ``loss_fn`` takes with ``random_targets``
    (logits [B, C] and int64 [B] for the default cross-entropy). Model parameters and
    buffers, optimiser state and RNG state are restored before returning.

    Example:
        >>> import torch
        >>> from lossatlas.metrics.susceptibility import susceptibility_probe
        >>> net = torch.nn.Linear(4, 3); opt = torch.optim.SGD(net.parameters(), lr=0.5)
        >>> before, after = susceptibility_probe(net, opt, torch.randn(8, 4), torch.randint(0, 3, (8,)))
        >>> after < before
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if not isinstance(inputs, Tensor) or not isinstance(random_targets, Tensor):
        raise TypeError("inputs and random_targets must be tensors")
    if inputs.shape[0] != random_targets.shape[0] or inputs.shape[0] == 0:
        raise ValueError(
            f"inputs and random_targets must hold the same non-zero number of samples, got {inputs.shape[0]} and {random_targets.shape[0]}"
        )
    saved_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
    saved_opt = copy.deepcopy(optimizer.state_dict())
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=_devices(model)):
            model.train()
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs), random_targets)
            before = float(loss.detach())
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                after = float(loss_fn(model(inputs), random_targets))
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_opt)
        optimizer.zero_grad(set_to_none=True)
        model.train(was_training)
    return before, after


class Susceptibility(Metric):
    """Running susceptibility ``ζ(t)``: the mean drop of the random-label loss after one step.

    Call :meth:`probe` (or :meth:`update` with two losses you measured yourself) once per
    epoch, then :meth:`compute`. NaN before the first update. See the module docstring for
    the definition (Forouzesh, Sedghi & Thiran, 2023).

    Example:
        >>> import torch
        >>> from lossatlas.metrics.susceptibility import Susceptibility
        >>> zeta = Susceptibility()
        >>> zeta.update(2.0, 1.5); zeta.update(2.0, 1.0)
        >>> float(zeta.compute())
        0.75
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    total: Tensor
    count: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, loss_before: float | Tensor, loss_after: float | Tensor) -> None:
        """Add one probe: the losses on the random-label batch before and after the step."""
        b = torch.as_tensor(loss_before, dtype=torch.float64).detach().to(self.total.device)
        a = torch.as_tensor(loss_after, dtype=torch.float64).detach().to(self.total.device)
        if b.numel() != 1 or a.numel() != 1:
            raise ValueError("loss_before and loss_after must be scalars (mean losses on the probe batch)")
        if not bool(torch.isfinite(b)) or not bool(torch.isfinite(a)):
            raise ValueError("loss_before and loss_after must be finite")
        self.total += (b - a).reshape(())
        self.count += 1

    def probe(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        inputs: Tensor,
        random_targets: Tensor,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    ) -> float:
        """Run :func:`susceptibility_probe` and add it; returns this probe's loss drop."""
        before, after = susceptibility_probe(model, optimizer, inputs, random_targets, loss_fn)
        self.update(before, after)
        return before - after

    def compute(self) -> Tensor:
        if int(self.count) == 0:
            return torch.tensor(float("nan"), dtype=torch.float64)
        return self.total / self.count
