"""The weighting interface: how re-weighting composes with any loss.

A *weighting* maps ``(per-sample losses, targets, epoch/step)`` to per-sample weights.
Losses are computed with ``reduction="none"`` and reduced with :func:`apply`::

    crit = la.create("ldam", class_counts=counts, reduction="none")
    drw = la.create("drw", class_counts=counts, start_epoch=160)
    drw.set_epoch(epoch)
    loss = la.weighting.apply(crit(logits, y), drw, y)     # = LDAM-DRW

Class-level weightings (effective number, DRW, class difficulty) also drive a loss's own
``weight=`` argument; the two routes give the same value (torch's weighted mean
``Σ w_{y_i} l_i / Σ w_{y_i}``). ``weighting()`` is the vector [C] *now*: a loss built with
``weight=drw()`` keeps that copy and never sees a later ``set_epoch``. To have the loss follow
the weighting, attach it::

    crit = la.create("ldam", class_counts=counts)
    drw.attach(crit)                      # crit.weight is drw() at every call, whatever the epoch
    loss = crit(logits, y)                # = LDAM-DRW

Passing the object itself (``weight=drw``) is a ``TypeError`` that says so.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from .._validation import check_class_indices, check_reduction, check_tensor, compiling
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

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        # numpy asks this when the object is passed where a weight vector is expected
        # (``weight=drw``): say how to get a live weight instead of a bare conversion error
        raise TypeError(
            f"a {type(self).__name__} is not a weight tensor: build the loss without weight= and call "
            f"weighting.attach(loss) (the loss then reads weighting() at every call, so set_epoch takes effect), "
            f"or reduce with lossatlas.weighting.apply(loss(..., reduction='none'), weighting, target); "
            f"weight=weighting() would be a copy of today's weights"
        )

    def attach(self, loss: nn.Module, name: str = "weight") -> RemovableHandle:
        """Make ``loss`` use these class weights as its ``name`` argument (``weight`` by default)
        at every call, so that :meth:`set_epoch` (or any other change of the weights) reaches it.

        A forward pre-hook on ``loss`` sets its ``name`` buffer to ``self()`` (a fresh tensor,
        on the buffer's device and dtype; never an in-place write, so a graph built by an
        earlier call stays valid) before each call. A loss built without class weights gets
        the buffer. ``loss.weight`` therefore shows the weights of the loss's last call (or of
        the attachment). Returns the hook's handle: ``handle.remove()`` detaches (the loss keeps the
        last weights). One weighting per argument: attaching a second is a ``ValueError``.

        Example:
            >>> import torch, lossatlas as la
            >>> drw = la.create("drw", class_counts=[500, 50, 5], start_epoch=1)
            >>> crit = la.create("ldam", class_counts=[500, 50, 5])
            >>> _ = drw.attach(crit)
            >>> z, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 2])
            >>> before = crit(z, y); drw.set_epoch(1); bool(crit(z, y) != before)
            True
        """
        if not isinstance(loss, nn.Module):
            raise TypeError(f"loss must be an nn.Module (a lossatlas loss), got {type(loss).__name__}")
        if not isinstance(name, str) or not hasattr(loss, name):
            raise ValueError(f"{type(loss).__name__} has no class-weight argument {name!r} to attach to")
        for hook in loss._forward_pre_hooks.values():
            if isinstance(hook, _FollowClassWeights) and hook.name == name:
                raise ValueError(
                    f"{type(loss).__name__}.{name} already follows a {type(hook.weighting).__name__}; "
                    "remove its handle first"
                )
        current = getattr(loss, name)
        w = self.class_weights().detach()
        if current is None:
            if name not in loss._buffers:
                delattr(loss, name)  # a plain None attribute: the loss was built without weights
                loss.register_buffer(name, None)
            setattr(loss, name, w.to(torch.float64, copy=True))
        elif not isinstance(current, Tensor):
            raise TypeError(f"{type(loss).__name__}.{name} is a {type(current).__name__}, not a weight tensor")
        elif current.shape != w.shape:
            raise ValueError(
                f"{type(loss).__name__}.{name} has shape {tuple(current.shape)} but {type(self).__name__} "
                f"gives {w.numel()} class weights"
            )
        hook = _FollowClassWeights(self, name)
        hook(loss, ())
        return loss.register_forward_pre_hook(hook)

    def sample_weights(self, losses: Tensor, target: Tensor | None = None) -> Tensor:
        if target is None:
            raise ValueError(f"{type(self).__name__} needs the targets to look up class weights: pass target=")
        check_tensor(losses, "losses")
        w = self.class_weights()
        # checked against the class weights themselves, so a message names what the user passed
        target = check_class_indices(target, "target", "class weights are looked up by class index")
        if target.dim() != 1:
            raise ValueError(f"target must have shape [N] (one class index per loss), got {tuple(target.shape)}")
        num_classes = w.numel()
        if target.numel() and not compiling():
            lo, hi = (int(v) for v in torch.aminmax(target))
            if lo < 0 or hi >= num_classes:
                bad = target[(target < 0) | (target >= num_classes)][:5].tolist()
                raise ValueError(f"target values must be in [0, {num_classes}) ({type(self).__name__} has {num_classes} class "
                                 f"weights); found {bad}")
        return w.to(device=losses.device, dtype=losses.dtype)[target.to(losses.device)]


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


class _FollowClassWeights:
    """Forward pre-hook: set ``module.<name>`` to the weighting's current class weights."""

    def __init__(self, weighting: ClassWeighting, name: str) -> None:
        self.weighting = weighting
        self.name = name

    def __call__(self, module: nn.Module, args: Any) -> None:
        buf = getattr(module, self.name)
        w = self.weighting.class_weights().detach()
        setattr(module, self.name, w.to(device=buf.device, dtype=buf.dtype, copy=True))
