"""ImbSAM: class-aware sharpness-aware minimisation (catalogue row A14).

Y. Zhou, Y. Qu, X. Xu, H. T. Shen, "ImbSAM: A Closer Look at Sharpness-Aware Minimization in
Class-Imbalanced Recognition", ICCV 2023; official code cool-xuan/Imbalanced_SAM.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ._common import check_number

__all__ = ["ImbSAM", "tail_classes"]

_CODE = "cool-xuan/Imbalanced_SAM"


def tail_classes(class_counts: Sequence[float] | Tensor, eta: float = 20) -> Tensor:
    """The tail classes of ImbSAM: those with fewer than ``eta`` training samples
    (``scripts/train.py``: ``torch.where(samples_per_cls < eta)``, ``--eta 20``)."""
    counts = torch.as_tensor(class_counts, dtype=torch.float64)
    if counts.dim() != 1 or counts.numel() == 0 or not bool((counts >= 0).all()):
        raise ValueError("class_counts must be a non-empty 1-D sequence of non-negative counts")
    check_number(eta, "eta", low=0.0)
    return torch.nonzero(counts < eta).flatten()


class ImbSAM:
    r"""Imbalanced SAM (Zhou, Qu, Xu, Shen, 2023, "ImbSAM: A Closer Look at Sharpness-Aware
    Minimization in Class-Imbalanced Recognition", ICCV): sharpness-aware minimisation of the tail-class
    loss only, plain descent on the head-class loss.

    With the batch loss split by class, :math:`L = L_{head} + L_{tail}` (each a sum over its
    samples divided by the batch size N), one step is

    .. math:: \epsilon = \rho\,\frac{\nabla L_{tail}(w)}{\lVert \nabla L_{tail}(w)\rVert_2 + 10^{-16}},\qquad
              g = \nabla L_{head}(w) + \nabla L_{tail}(w + \epsilon)

    then ``optimizer.step()`` with the gradient ``g`` at ``w`` (the wrapped optimiser keeps its
    momentum, weight decay and schedule). The tail classes are those with fewer than ``eta``
    training samples. Defaults from the official ``scripts/train.py``: ``rho=0.05``, ``eta=20``;
    the step follows ``imbsam.py`` (``first_step`` / ``second_step`` / ``third_step``) and
    ``utils/trainval.py::forbackward``. A batch without tail samples is a plain step on the head
    loss (no perturbation); the norm is taken over every parameter that receives a gradient.

    Call :meth:`step` with a closure that runs the model and returns the **per-sample** losses
    [N] (``reduction="none"``), and the batch's targets; it is evaluated twice.

    Example:
        >>> import torch, lossatlas as la
        >>> model = torch.nn.Linear(4, 3); crit = la.create("cross_entropy", reduction="none")
        >>> opt = la.optim.ImbSAM(torch.optim.SGD(model.parameters(), lr=0.1), model.parameters(),
        ...                       class_counts=[500, 100, 5])
        >>> x, y = torch.randn(8, 4), torch.tensor([0, 0, 0, 1, 1, 2, 2, 0])
        >>> float(opt.step(lambda: crit(model(x), y), y)) > 0
        True
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        params: Iterable[nn.Parameter],
        *,
        class_counts: Sequence[float] | Tensor | None = None,
        tail: Sequence[int] | Tensor | None = None,
        rho: float = 0.05,
        eta: float = 20,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("params has no parameter that requires a gradient")
        self.rho = check_number(rho, "rho", low=0.0)
        self.eta = check_number(eta, "eta", low=0.0)
        if (class_counts is None) == (tail is None):
            raise ValueError("pass exactly one of class_counts (tail = classes with < eta samples) or tail (class ids)")
        if class_counts is not None:
            self.tail = tail_classes(class_counts, self.eta)
        else:
            self.tail = torch.as_tensor(tail, dtype=torch.long).flatten()

    def _grads(self, loss: Tensor, retain: bool = False) -> list[Tensor]:
        grads = torch.autograd.grad(loss, self.params, retain_graph=retain, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]

    def step(self, closure: Callable[[], Tensor], target: Tensor) -> Tensor:
        """One ImbSAM step; returns ``L_head(w) + L_tail(w + ε)`` (detached), as the official code."""
        losses = closure()
        if not isinstance(losses, Tensor) or losses.dim() != 1:
            raise ValueError("closure must return the per-sample losses [N] (reduction='none')")
        if not isinstance(target, Tensor) or target.shape != losses.shape:
            raise ValueError(f"target must be the batch's class indices [N] = [{losses.shape[0]}]")
        n = losses.shape[0]
        is_tail = torch.isin(target, self.tail.to(target.device))
        head = losses[~is_tail].sum() / n
        tail = losses[is_tail].sum() / n
        g_head = self._grads(head, retain=True)
        if not bool(is_tail.any()) or self.rho == 0.0:
            g_tail = self._grads(tail) if bool(is_tail.any()) else [torch.zeros_like(p) for p in self.params]
            grads, total = [a + b for a, b in zip(g_head, g_tail)], head + tail
        else:
            g_tail = self._grads(tail)
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in g_tail])) + 1e-16
            eps = [g * (self.rho / norm) for g in g_tail]
            with torch.no_grad():
                for p, e in zip(self.params, eps):
                    p.add_(e)
            try:
                tail_perturbed = closure()[is_tail].sum() / n
                g_sharp = self._grads(tail_perturbed)
            finally:
                with torch.no_grad():
                    for p, e in zip(self.params, eps):
                        p.sub_(e)
            grads, total = [a + b for a, b in zip(g_head, g_sharp)], head + tail_perturbed
        for p, g in zip(self.params, grads):
            p.grad = g.detach()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total.detach()

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimiser's state and ImbSAM's settings."""
        return {"optimizer": self.optimizer.state_dict(), "rho": self.rho, "eta": self.eta, "tail": self.tail.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.rho, self.eta, self.tail = float(state["rho"]), float(state["eta"]), torch.as_tensor(state["tail"])

    def __repr__(self) -> str:
        return f"ImbSAM(rho={self.rho}, eta={self.eta}, tail={self.tail.tolist()}, optimizer={type(self.optimizer).__name__})"
