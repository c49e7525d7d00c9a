"""Pieces PESG and PDSCA share: parameter groups with the loss's ``a``, ``b``, the reference
points of the epoch-level regulariser, hyper-parameter checks and the dual ascent on ``alpha``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["MinMaxAUCOptimizer"]


def check_number(value: Any, name: str, low: float = 0.0, high: float = math.inf, *, low_open: bool = False,
                 high_open: bool = False) -> float:
    """A real number in the interval (``ValueError`` naming ``name`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) and high != math.inf or math.isnan(v):
        raise ValueError(f"{name} must be a finite number, got {v}")
    if v < low or (low_open and v == low) or v > high or (high_open and v == high):
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name} must lie in {lo}{low}, {high}{hi}, got {v}")
    return v


class MinMaxAUCOptimizer(torch.optim.Optimizer):
    """Base of the AUC-M optimisers: the model's parameters plus the loss's ``a``, ``b`` descend
    (with the epoch-level proximal term ``epoch_decay · (v − v_ref)``), ``alpha`` ascends.

    Every parameter keeps, in the optimiser state (so ``state_dict`` holds it): ``ref``, the
    reference point ``v_ref`` of the proximal term (the parameter's value when the optimiser
    is built, as the papers' Algorithm 1: ``v_ref = v_0``), and ``acc``, the sum of its
    iterates since the last :meth:`update_regularizer`. Each group counts its steps
    (``steps``, and ``epoch_steps`` since the last :meth:`update_regularizer`).
    """

    loss_fn: nn.Module | None

    def __init__(self, params: Iterable[Any], loss_fn: nn.Module | None, defaults: dict[str, Any],
                 need_loss: bool = False) -> None:
        self.loss_fn = loss_fn
        self._a: Tensor | None = None
        self._b: Tensor | None = None
        self._alpha: Tensor | None = None
        if loss_fn is None:
            if need_loss:
                raise ValueError(f"{type(self).__name__} needs loss_fn= (the loss module holding a, b, alpha)")
        else:
            for name in ("a", "b", "alpha"):
                if not isinstance(getattr(loss_fn, name, None), Tensor):
                    raise TypeError(f"loss_fn must hold the learnable a, b, alpha of an AUC-M loss (e.g. la.create('aucm'));"
                                    f" {type(loss_fn).__name__} has no tensor {name!r}")
            if not isinstance(getattr(loss_fn, "margin", None), (int, float)):
                raise TypeError(f"loss_fn must have a numeric margin (the AUC-M margin), got {type(loss_fn).__name__}")
            self._a, self._b, self._alpha = (_tensor(loss_fn, n) for n in ("a", "b", "alpha"))
        groups = _as_groups(params)
        if self._alpha is not None:  # alpha ascends: never in the primal update
            for g in groups:
                g["params"] = [p for p in g["params"] if p is not self._alpha]
            present = {id(p) for g in groups for p in g["params"]}
            missing = [t for t in (self._a, self._b) if t is not None and id(t) not in present]
            if not groups:
                groups = [{"params": []}]
            groups[0]["params"] = list(groups[0]["params"]) + missing
        groups = [g for g in groups if g["params"]]
        if not groups:
            raise ValueError(f"{type(self).__name__} got no parameters to optimise")
        super().__init__(groups, {**defaults, "steps": 0, "epoch_steps": 0})
        for group in self.param_groups:
            if group["epoch_decay"] > 0:
                for p in group["params"]:
                    self._init_reference(p)

    # ------------------------------------------------------------------ reference points
    def _init_reference(self, p: Tensor) -> dict[str, Any]:
        state: dict[str, Any] = self.state[p]
        if "ref" not in state:
            state["ref"] = p.detach().clone()
            state["acc"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def _descent_direction(self, p: Tensor, group: dict[str, Any]) -> Tensor:
        """``clip(∇) + epoch_decay (p − ref) + weight_decay p`` (LibAUC's order of terms)."""
        grad = p.grad
        assert grad is not None
        clip = group["clip_value"]
        d: Tensor = grad.clamp(-clip, clip) if clip is not None else grad.clone()
        if group["epoch_decay"] > 0:
            ref: Tensor = self._init_reference(p)["ref"]
            d = d + group["epoch_decay"] * (p - ref)
        out: Tensor = d + group["weight_decay"] * p
        return out

    def _accumulate(self, p: Tensor, group: dict[str, Any]) -> None:
        if group["epoch_decay"] > 0:
            self._init_reference(p)["acc"].add_(p)

    def _momentum_descent(self, p: Tensor, d: Tensor, lr: float, momentum: float) -> None:
        """``p ← p − lr·m`` with ``m ← (1 − momentum)·m + momentum·d`` (LibAUC's convention: the
        new direction weighted by ``momentum``; the buffer starts at the first ``d``); plain
        ``p ← p − lr·d`` when ``momentum`` is 0."""
        if momentum != 0:
            state = self.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.detach().clone()
            else:
                buf.mul_(1.0 - momentum).add_(d, alpha=momentum)
            d = buf
        p.sub_(lr * d)

    def _count(self) -> None:
        for group in self.param_groups:
            group["steps"] += 1
            group["epoch_steps"] += 1

    # ------------------------------------------------------------------ dual ascent
    def _dual_lr(self) -> float:
        for group in self.param_groups:
            if any(p is self._a for p in group["params"]):
                return float(group["lr"])
        return float(self.param_groups[0]["lr"])

    def _ascend_alpha(self) -> None:
        """``alpha ← clip(alpha + lr (2(m + b − a) − 2 alpha), 0, 999)`` (LibAUC's PESG/PDSCA):
        the gradient of the v2 objective in alpha with the class means replaced by ``a``,
        ``b`` (after their update in this step)."""
        if self.loss_fn is None or self._alpha is None or self._a is None or self._b is None:
            return
        m = float(getattr(self.loss_fn, "margin"))  # noqa: B009 - checked numeric in __init__
        lr = self._dual_lr()
        alpha = self._alpha
        step = 2.0 * (m + self._b.detach() - self._a.detach()) - 2.0 * alpha.detach()
        alpha.copy_(torch.clamp(alpha.detach() + lr * step.to(alpha.dtype), 0.0, 999.0))

    # ------------------------------------------------------------------ schedules
    @staticmethod
    def _factor(value: Any, name: str) -> float | None:
        return None if value is None else check_number(value, name, 0.0, low_open=True)

    def update_lr(self, decay_factor: float | None = None) -> None:
        """Divide every group's learning rate by ``decay_factor`` (None: unchanged)."""
        factor = self._factor(decay_factor, "decay_factor")
        if factor is not None:
            for group in self.param_groups:
                group["lr"] = group["lr"] / factor

    def update_regularizer(self, decay_factor: float | None = None) -> None:
        """The epoch-level step: divide the learning rate by ``decay_factor`` (None: keep it) and
        move each reference point to the average of the iterates since the last call
        (``v_ref ← acc / epoch_steps``; unchanged when no step was taken), then restart the
        average."""
        self.update_lr(decay_factor)
        self._reset_references()

    def _reset_references(self) -> None:
        for group in self.param_groups:
            count = group["epoch_steps"]
            for p in group["params"]:
                state = self.state.get(p)
                if not state or "acc" not in state:
                    continue
                if count > 0:
                    state["ref"].copy_(state["acc"] / count)
                state["acc"].zero_()
            group["epoch_steps"] = 0

    @property
    def optim_step(self) -> int:
        """The number of optimisation steps taken."""
        return int(self.param_groups[0]["steps"])


def _tensor(module: nn.Module, name: str) -> Tensor:
    value = getattr(module, name)
    assert isinstance(value, Tensor)
    return value


def _as_groups(params: Iterable[Any]) -> list[dict[str, Any]]:
    if isinstance(params, Tensor):
        raise TypeError("params must be an iterable of tensors or of parameter-group dicts, got a single tensor")
    items = list(params)
    if items and all(isinstance(x, dict) for x in items):
        return [{**g, "params": list(g["params"]) if not isinstance(g["params"], Tensor) else [g["params"]]}
                for g in items]
    if any(isinstance(x, dict) for x in items):
        raise TypeError("params must be all tensors or all parameter-group dicts")
    return [{"params": items}]
