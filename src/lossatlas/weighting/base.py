"""The weighting interface: how re-weighting composes with any loss.

A *weighting* maps ``(per-sample losses, targets, epoch/step)`` to per-sample weights.
Losses are computed with ``reduction="none"`` and reduced with :func:`apply`::

    crit = la.create("ldam", class_counts=counts, reduction="none")
    drw = la.create("drw", class_counts=counts, start_epoch=160)
    drw.set_epoch(epoch)
    loss = la.weighting.apply(crit(logits, y), drw, y)     # = LDAM-DRW

Class-level weightings (effective number, DRW, class difficulty) also give their [C]
vector, which any loss with a ``weight=`` argument accepts directly; the two routes give
the same value (torch's weighted mean ``Σ w_{y_i} l_i / Σ w_{y_i}``).
"""

from __future__ import annotations

from torch import Tensor, nn

from .._validation import check_class_target, check_reduction, check_tensor
from ..functional._common import reduce_loss

__all__ = ["Weighting", "ClassWeighting", "apply"]


class Weighting(nn.Module):
    """Base class: ``sample_weights(losses, target)`` returns detached weights [N]."""

    def sample_weights(self, losses: Tensor, target: Tensor | None = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Tell an epoch-dependent weighting the current epoch (no-op by default)."""


class ClassWeighting(Weighting):
    """A weighting that gives each class one weight; ``obj()`` returns the vector [C]."""

    def class_weights(self) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self) -> Tensor:
        return self.class_weights()

    def sample_weights(self, losses: Tensor, target: Tensor | None = None) -> Tensor:
        if target is None:
            raise ValueError(f"{type(self).__name__} needs the targets to look up class weights: pass target=")
        check_tensor(losses, "losses")
        w = self.class_weights()
        fake_logits = losses.new_empty((target.shape[0] if target.dim() else 0, w.numel()))
        check_class_target(target, fake_logits, validate=True)
        return w.to(device=losses.device, dtype=losses.dtype)[target]


def apply(losses: Tensor, weighting: Weighting, target: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Reduce per-sample ``losses`` [N] with the weights of ``weighting``.

    ``"mean"`` is ``Σ w_i l_i / Σ w_i`` (torch's weighted mean); ``"sum"`` is ``Σ w_i l_i``;
    ``"none"`` returns ``w_i l_i``. Weights are detached: they re-weight, they are not trained.
    """
    check_reduction(reduction)
    check_tensor(losses, "losses")
    if losses.dim() != 1:
        raise ValueError(f"losses must be per-sample [N] (use reduction='none' on the loss), got shape {tuple(losses.shape)}")
    w = weighting.sample_weights(losses.detach(), target).detach()
    return reduce_loss(losses, reduction, w.to(losses.dtype))
