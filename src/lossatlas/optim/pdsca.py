"""PDSCA: the primal-dual stochastic compositional adaptive method for compositional AUC (H2)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from ._common import MinMaxAUCOptimizer, check_number

__all__ = ["PDSCA"]


class PDSCA(MinMaxAUCOptimizer):
    r"""Primal-dual stochastic compositional adaptive method (PDSCA; Yuan, Guo, Chawla, Yang
    2022, "Compositional Training for End-to-End Deep AUC Maximization"), the optimiser of
    :class:`lossatlas.losses.CompositionalAUCLoss`.

    The loss alternates cross-entropy calls and AUC-M calls; each :meth:`step` follows the
    objective of the loss's last call (its ``last_phase``; for a loss without one, as in
    LibAUC: ``'auc'`` when ``alpha.grad`` is not None, else ``'ce'``). With
    :math:`d = \mathrm{clip}(\nabla) + \lambda_0(\mathbf v - \mathbf v_{\mathrm{ref}})
    + \lambda \mathbf v`:

    * cross-entropy step (the inner step :math:`\mathbf w - \eta_0 \nabla L_{\mathrm{CE}}`,
      then a moving average of the weights): :math:`\mathbf w \leftarrow \mathbf w - \eta_0 d`,
      :math:`\mathbf u \leftarrow (1-\beta_1)\mathbf u + \beta_1 \mathbf w` (the first
      :math:`\mathbf u` is :math:`\mathbf w`), :math:`\mathbf w \leftarrow \mathbf u`; the
      loss's ``a``, ``b`` do not take part;
    * AUC step (outer primal-dual step): :math:`\mathbf z \leftarrow (1-\beta_2)\mathbf z +
      \beta_2 d` (the first :math:`\mathbf z` is :math:`d`), :math:`\mathbf v \leftarrow
      \mathbf v - \eta\,\mathbf z`, then :math:`\alpha \leftarrow \Pi_{[0, 999]}[\alpha +
      \eta(2(m + b - a) - 2\alpha)]`.

    :math:`\eta` = ``lr``, :math:`\eta_0` = ``lr0`` (None: ``lr``), :math:`\lambda_0` =
    ``epoch_decay``, :math:`\lambda` = ``weight_decay``. :meth:`update_regularizer` (once per
    stage) decays the rates and moves the reference points to the average of the stage's
    iterates. This follows LibAUC's ``libauc/optimizers/pdsca.py`` (v2.0.1), whose defaults
    are used (``lr=0.1``, ``beta1=0.99``, ``beta2=0.999``, ``clip_value=1.0``,
    ``weight_decay=1e-5``, ``epoch_decay=2e-3``); β weighs the *new* value as there
    (:math:`\beta = 0` turns the average off). Differences from LibAUC: the reference points
    start at the parameters' initial values (the paper's :math:`\mathbf v_{\mathrm{ref}} =
    \mathbf v_0`; LibAUC draws them from N(0, 0.01²)), they and the running sums are in the
    optimiser state (``state_dict``), the phase is read from the loss (robust to
    ``zero_grad(set_to_none=False)``), nothing is printed and every group's rates decay.

    Args:
        params: the model's parameters (tensors or parameter-group dicts); the loss's ``a``,
            ``b`` are added, ``alpha`` removed (it ascends).
        loss_fn: the compositional AUC loss (holding ``a``, ``b``, ``alpha``, ``margin``).
        lr: η ≥ 0, the outer (AUC and dual) learning rate.
        lr0: η₀ ≥ 0, the inner (cross-entropy) learning rate; None: ``lr``.
        beta1: β₁ in [0, 1], the weight averaging of the cross-entropy steps.
        beta2: β₂ in [0, 1], the gradient averaging of the AUC steps.
        clip_value: bound of the elementwise gradient clipping (None: no clipping).
        weight_decay: λ ≥ 0. epoch_decay: λ₀ ≥ 0 (0: no reference points are kept).

    Example:
        >>> import torch, lossatlas as la
        >>> model, crit = torch.nn.Linear(3, 1), la.create("compositional_auc")
        >>> opt = la.optim.PDSCA(model.parameters(), loss_fn=crit, lr=0.1)
        >>> x, y = torch.randn(8, 3), torch.tensor([1, 0, 0, 1, 0, 0, 0, 0])
        >>> for _ in range(2):
        ...     opt.zero_grad(); crit(torch.sigmoid(model(x)).squeeze(1), y).backward(); opt.step()
        >>> crit.last_phase, opt.optim_step
        ('auc', 2)
    """

    def __init__(
        self,
        params: Iterable[Any],
        loss_fn: nn.Module,
        lr: float = 0.1,
        *,
        lr0: float | None = None,
        beta1: float = 0.99,
        beta2: float = 0.999,
        clip_value: float | None = 1.0,
        weight_decay: float = 1e-5,
        epoch_decay: float = 2e-3,
    ) -> None:
        lr = check_number(lr, "lr")
        defaults = {
            "lr": lr,
            "lr0": lr if lr0 is None else check_number(lr0, "lr0"),
            "beta1": check_number(beta1, "beta1", 0.0, 1.0),
            "beta2": check_number(beta2, "beta2", 0.0, 1.0),
            "clip_value": None if clip_value is None else check_number(clip_value, "clip_value", low_open=True),
            "weight_decay": check_number(weight_decay, "weight_decay"),
            "epoch_decay": check_number(epoch_decay, "epoch_decay"),
        }
        super().__init__(params, loss_fn, defaults, need_loss=True)

    def _phase(self) -> str:
        phase = getattr(self.loss_fn, "last_phase", None)
        if phase in ("ce", "auc"):
            return str(phase)
        return "auc" if self._alpha is not None and self._alpha.grad is not None else "ce"

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One PDSCA step of the phase of the loss's last call; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        phase = self._phase()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or (phase == "ce" and (p is self._a or p is self._b)):
                    continue
                d = self._descent_direction(p, group)
                if phase == "ce":
                    self._inner(p, d, group)
                else:
                    self._outer(p, d, group)
                self._accumulate(p, group)
        if phase == "auc":
            self._ascend_alpha()
        self._count()
        return loss

    def _inner(self, p: Tensor, d: Tensor, group: dict[str, Any]) -> None:
        p.sub_(group["lr0"] * d)
        beta1 = group["beta1"]
        if beta1 != 0:
            state = self.state[p]
            buf = state.get("weight_buffer")
            if buf is None:
                state["weight_buffer"] = p.detach().clone()
            else:
                buf.mul_(1.0 - beta1).add_(p, alpha=beta1)
                p.copy_(buf)

    def _outer(self, p: Tensor, d: Tensor, group: dict[str, Any]) -> None:
        self._momentum_descent(p, d, group["lr"], group["beta2"])

    def update_lr(self, decay_factor: float | None = None, decay_factor0: float | None = None) -> None:
        """Divide ``lr`` by ``decay_factor`` and ``lr0`` by ``decay_factor0`` (None: unchanged)."""
        super().update_lr(decay_factor)
        factor0 = self._factor(decay_factor0, "decay_factor0")
        if factor0 is not None:
            for group in self.param_groups:
                group["lr0"] = group["lr0"] / factor0

    def update_regularizer(self, decay_factor: float | None = None, decay_factor0: float | None = None) -> None:
        """Decay the rates as :meth:`update_lr`, then move each reference point to the average
        of the iterates since the last call and restart the average."""
        self.update_lr(decay_factor, decay_factor0)
        self._reset_references()
