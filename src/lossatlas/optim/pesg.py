"""PESG: the proximal epoch stochastic gradient method for AUC-M (catalogue row H2)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from ._common import MinMaxAUCOptimizer, check_number

__all__ = ["PESG"]


class PESG(MinMaxAUCOptimizer):
    r"""Proximal epoch stochastic gradient (PESG; Yuan, Yan, Sonka, Yang 2021, "Large-scale
    Robust Deep AUC Maximization: A New Surrogate Loss and Empirical Studies on Medical Image
    Classification", Algorithm 1), the optimiser of :class:`lossatlas.losses.AUCMLoss`.

    The primal variables ``v = (w, a, b)`` (the model's parameters and the loss's ``a``,
    ``b``) descend and the dual ``alpha`` ascends:

    .. math::
        d_t &= \mathrm{clip}\big(\nabla_{\mathbf v} F(\mathbf v_t, \alpha_t; z_t)\big)
              + \lambda_0(\mathbf v_t - \mathbf v_{\mathrm{ref}}) + \lambda\,\mathbf v_t \\
        \mathbf v_{t+1} &= \mathbf v_t - \eta\, d_t \qquad\text{(or } \eta\,\mathrm{buf}_t
              \text{ with momentum, or an Adam step)}\\
        \alpha_{t+1} &= \Pi_{[0, 999]}\big[\alpha_t + \eta\,\big(2(m + b_{t+1} - a_{t+1})
              - 2\alpha_t\big)\big]

    :math:`\lambda_0` = ``epoch_decay`` (the epoch-level proximal regulariser around the
    reference point :math:`\mathbf v_{\mathrm{ref}}`), :math:`\lambda` = ``weight_decay``,
    clip = elementwise clipping of the gradient to ``[-clip_value, clip_value]``. Once per
    stage (e.g. epoch) call :meth:`update_regularizer` (``decay_factor`` divides the learning
    rate): :math:`\mathbf v_{\mathrm{ref}}` becomes the average of the stage's iterates, as
    in the paper. :meth:`update_lr` only decays the learning rate.

    This follows LibAUC's ``libauc/optimizers/pesg.py`` (v2.0.1), whose defaults are used
    (``lr=0.1``, ``clip_value=1.0``, ``weight_decay=1e-5``, ``epoch_decay=2e-3``,
    ``momentum=0.9``; Adam's ``betas=(0.9, 0.999)``, ``eps=1e-8``), including two of its
    conventions that differ from ``torch.optim.SGD``:

    * momentum is ``buf ← (1 − momentum)·buf + momentum·d`` (the first ``buf`` is ``d``):
      ``momentum`` weighs the *new* direction (0 turns the buffer off);
    * the dual step uses the closed form ``2(m + b − a) − 2α`` (the expected gradient of the
      ``v2`` objective in ``α`` with the class means estimated by ``a``, ``b``; for ``v1``
      it is that gradient divided by ``p(1 − p)``) rather than ``alpha.grad``; it is taken
      when ``alpha.grad`` is not None.

    Differences from LibAUC: the reference point starts at the parameters' initial values
    (the paper's :math:`\mathbf v_{\mathrm{ref}} = \mathbf v_0`; LibAUC draws it from
    N(0, 0.01²)), it and the running sum live in the optimiser state (``state_dict``
    round-trips them per parameter, with the step counters in the parameter groups), no
    progress is printed, ``update_lr`` / ``update_regularizer`` decay every group's rate,
    and ``a``, ``b`` gradients are not all-reduced under ``torch.distributed``: lossatlas's
    AUC-M losses compute the loss of the gathered global batch, so every process already
    holds the same ``a``, ``b``, ``alpha`` gradients.

    Args:
        params: the model's parameters (an iterable of tensors or of parameter-group dicts).
            The loss's ``a`` and ``b`` are added to the first group if absent; its ``alpha``
            is removed (it ascends).
        loss_fn: the AUC-M loss module (:class:`lossatlas.losses.AUCMLoss`,
            :class:`~lossatlas.losses.MultiLabelAUCMLoss`, ...) holding ``a``, ``b``,
            ``alpha`` and ``margin``; None: a plain proximal SGD on ``params``.
        lr: learning rate η ≥ 0 (also the dual step size).
        mode: ``'sgd'`` (with LibAUC's momentum) or ``'adam'``.
        clip_value: bound of the elementwise gradient clipping (None: no clipping).
        weight_decay: λ ≥ 0, the L2 penalty.
        epoch_decay: λ₀ ≥ 0, the proximal term's weight (0: no reference points are kept).
        momentum: in [0, 1], LibAUC's convention above (``'sgd'`` mode).
        betas, eps, amsgrad: Adam's (``'adam'`` mode).

    Example:
        >>> import torch, lossatlas as la
        >>> model, crit = torch.nn.Linear(3, 1), la.create("aucm")
        >>> opt = la.optim.PESG(model.parameters(), loss_fn=crit, lr=0.1)
        >>> x, y = torch.randn(8, 3), torch.tensor([1, 0, 0, 1, 0, 0, 0, 0])
        >>> crit(torch.sigmoid(model(x)).squeeze(1), y).backward(); opt.step()
        >>> opt.optim_step, float(crit.alpha.detach()) > 0
        (1, True)
    """

    def __init__(
        self,
        params: Iterable[Any],
        loss_fn: nn.Module | None = None,
        lr: float = 0.1,
        *,
        mode: str = "sgd",
        clip_value: float | None = 1.0,
        weight_decay: float = 1e-5,
        epoch_decay: float = 2e-3,
        momentum: float = 0.9,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        amsgrad: bool = False,
    ) -> None:
        if mode not in ("sgd", "adam"):
            raise ValueError(f"mode must be 'sgd' or 'adam', got {mode!r}")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        if not isinstance(amsgrad, bool):
            raise TypeError(f"amsgrad must be True or False, got {amsgrad!r}")
        defaults = {
            "lr": check_number(lr, "lr"),
            "mode": mode,
            "clip_value": None if clip_value is None else check_number(clip_value, "clip_value", low_open=True),
            "weight_decay": check_number(weight_decay, "weight_decay"),
            "epoch_decay": check_number(epoch_decay, "epoch_decay"),
            "momentum": check_number(momentum, "momentum", 0.0, 1.0),
            "betas": (check_number(betas[0], "betas[0]", 0.0, 1.0, high_open=True),
                      check_number(betas[1], "betas[1]", 0.0, 1.0, high_open=True)),
            "eps": check_number(eps, "eps"),
            "amsgrad": amsgrad,
        }
        super().__init__(params, loss_fn, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One PESG step (primal descent, then dual ascent); returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = self._descent_direction(p, group)
                if group["mode"] == "sgd":
                    self._sgd(p, d, group)
                else:
                    self._adam(p, d, group)
                self._accumulate(p, group)
        if self._alpha is not None and self._alpha.grad is not None:
            self._ascend_alpha()
        self._count()
        return loss

    def _sgd(self, p: Tensor, d: Tensor, group: dict[str, Any]) -> None:
        self._momentum_descent(p, d, group["lr"], group["momentum"])

    def _adam(self, p: Tensor, d: Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if "exp_avg" not in state:
            state["adam_step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        beta1, beta2 = group["betas"]
        state["adam_step"] += 1
        t = state["adam_step"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.mul_(beta1).add_(d, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(d, d, value=1 - beta2)
        second = exp_avg_sq
        if group["amsgrad"]:
            torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            second = state["max_exp_avg_sq"]
        denom = (second.sqrt() / math.sqrt(1 - beta2 ** t)).add_(group["eps"])
        p.addcdiv_(exp_avg, denom, value=-group["lr"] / (1 - beta1 ** t))
