"""Group DRO (catalogue row E4): online worst-group weights, as a per-sample weighting.

Sagawa et al. (2020) minimise the worst expected loss over groups (for example the (class,
spurious attribute) pairs of Waterbirds or CelebA) with a stochastic mirror-ascent step on the
group distribution ``q`` at every mini-batch. Here ``q`` is this module's state (a buffer, kept
as ``log q`` so that a group's weight never underflows to an unrecoverable 0), and each call
turns the batch's per-sample losses and group ids into per-sample weights, so that group DRO
composes with any loss through :func:`lossatlas.weighting.apply`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .._validation import as_class_counts, check_class_indices, check_finite, check_float, check_number
from ..registry import Paper, register
from .base import Weighting

__all__ = ["GroupDRO", "group_dro_weights"]

GROUP_DRO_PAPER = Paper(
    "S. Sagawa, P. W. Koh, T. B. Hashimoto, P. Liang",
    "Distributionally Robust Neural Networks for Group Shifts: On the Importance of Regularization for "
    "Worst-Case Generalization", "ICLR", 2020, "1911.08731",
)


def _check_batch(losses: Any, group: Any, num_groups: int) -> tuple[Tensor, Tensor]:
    losses = check_float(losses, "losses")
    if losses.dim() != 1:
        raise ValueError(f"losses must be per-sample losses [N] (compute the loss with reduction='none'), "
                         f"got shape {tuple(losses.shape)}")
    if group is None:
        raise ValueError("group DRO needs each sample's group id: pass the group ids [N] as target")
    g = check_class_indices(group, "group", "group ids are integers in [0, num_groups)")
    if g.shape != losses.shape:
        raise ValueError(f"group must have shape [N] = {list(losses.shape)} (one group id per loss), got {list(g.shape)}")
    if g.numel():
        lo, hi = (int(v) for v in torch.aminmax(g))
        if lo < 0 or hi >= num_groups:
            raise ValueError(f"group values must be in [0, {num_groups}) (group_counts has {num_groups} entries); "
                             f"found values in [{lo}, {hi}]")
    return losses, g.to(losses.device)


def _adjustment(value: Any, name: str, num_groups: int) -> Tensor:
    """C as a float64 vector [G] (a number is the same C for every group), each ≥ 0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.full((num_groups,), check_number(value, name, low=0.0), dtype=torch.float64)
    try:
        c = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number or one number per group, got {type(value).__name__}") from exc
    if c.dim() != 1 or c.numel() != num_groups:
        raise ValueError(f"{name} must be a number or have one entry per group ({num_groups}), got shape {tuple(c.shape)}")
    if not bool(torch.isfinite(c).all()) or bool((c < 0).any()):
        raise ValueError(f"{name} must be finite and >= 0, got {c.tolist()}")
    return c


def group_dro_weights(
    losses: Tensor,
    group: Tensor,
    group_counts: Any,
    log_q: Tensor | None = None,
    step_size: float = 0.01,
    adjustment: Any = 0.0,
) -> tuple[Tensor, Tensor]:
    r"""One group-DRO step as a pure function: ``(weights [N], new log q [G])``.

    .. math:: \bar\ell_g = \operatorname{mean}_{i:\,g_i = g}\ell_i,\qquad
              q_g \leftarrow \frac{q_g\,e^{\eta(\bar\ell_g + C_g/\sqrt{n_g})}}{\sum_h q_h\,e^{\eta(\bar\ell_h + C_h/\sqrt{n_h})}},
              \qquad w_i = \frac{q_{g_i}}{|\{j: g_j = g_i\}|}

    so that ``Σ_i w_i ℓ_i = Σ_g q_g ℓ̄_g``, the robust loss (with the *updated* q, as the
    reference). A group absent from the batch has ``ℓ̄_g = 0`` (the reference's convention) and
    is moved only by its adjustment. ``log_q`` ``None`` is the uniform start. Detached; computed in
    float64 (the reference's step runs on ``loss.data``). See :class:`GroupDRO`.
    """
    counts = as_class_counts(group_counts, "group_counts")
    num_groups = counts.numel()
    losses, g = _check_batch(losses, group, num_groups)
    eta = check_number(step_size, "step_size", low=0.0)
    c = _adjustment(adjustment, "adjustment", num_groups)
    dev = losses.device
    prev = (torch.full((num_groups,), -math.log(num_groups), dtype=torch.float64, device=dev) if log_q is None
            else log_q.detach().to(device=dev, dtype=torch.float64))
    x = losses.detach().to(torch.float64)
    in_batch = torch.bincount(g, minlength=num_groups).to(torch.float64)
    sums = torch.zeros(num_groups, dtype=torch.float64, device=dev).index_add_(0, g, x)
    group_loss = sums / in_batch.clamp_min(1.0)
    adjusted = group_loss + c.to(dev) / counts.to(dev).sqrt()
    new_log_q = torch.log_softmax(prev + eta * adjusted, dim=0)
    w = (new_log_q.exp() / in_batch.clamp_min(1.0))[g]
    return w.to(losses.dtype), new_log_q


@register(
    "group_dro",
    aliases=("gdro", "group_dro_weights", "groupdro"),
    family="weighting",
    kind="weighting",
    catalogue="E4",
    formula="q_g ← q_g exp(η(mean_{g_i=g} ℓ_i + C/√n_g)), normalised;  w_i = q_{g_i} / #batch(g_i);  "
            "Σ w_i ℓ_i = Σ_g q_g ℓ̄_g",
    paper=GROUP_DRO_PAPER,
    code="kohpangwei/group_DRO loss.py::LossComputer.compute_robust_loss (defaults in run_expt.py)",
    function=group_dro_weights,
    defaults_source={
        "step_size": "kohpangwei/group_DRO run_expt.py --robust_step_size default 0.01",
        "adjustment": "kohpangwei/group_DRO run_expt.py --generalization_adjustment default '0.0' "
                      "(the paper tunes C over {0, 1, 2, 3, 4, 5})",
    },
    notes="Use la.weighting.apply(losses, gdro, group, reduction='sum') for the reference's robust loss "
          "Σ_g q_g ℓ̄_g; 'mean' divides by the weight of the groups present in the batch.",
)
class GroupDRO(Weighting):
    r"""Group DRO weights (Sagawa, Koh, Hashimoto & Liang, ICLR 2020, "Distributionally Robust
    Neural Networks for Group Shifts").

    .. math:: \min_\theta \max_{q\in\Delta_G} \sum_g q_g\,\mathbb E_{(x,y)\sim P_g}[\ell(\theta; x, y)],
              \qquad q_g \leftarrow q_g\,e^{\eta(\bar\ell_g + C/\sqrt{n_g})}\ \text{(normalised)}

    Each call ``gdro(losses, group)`` takes the per-sample losses [N] of one mini-batch (any loss
    with ``reduction="none"``) and their group ids [N], makes the paper's exponentiated-gradient
    step on the group weights ``q`` (Algorithm 1, step size ``η``) with the group adjustments
    ``C/√n_g`` (§3.3, ``n_g`` the training samples of group g), and returns detached weights
    ``w_i = q_{g_i} / (number of batch samples in g_i)``. Then
    ``la.weighting.apply(losses, gdro, group, reduction="sum")`` is the robust loss
    ``Σ_g q_g ℓ̄_g`` with the updated ``q``, as the official ``LossComputer``. Groups missing
    from a batch have mean loss 0 there (the reference's convention).

    Defaults: ``η = 0.01`` and ``C = 0`` (the official ``run_expt.py``; the paper tunes C).
    ``adjustment`` is a number or one number per group. Two differences from the reference, on
    purpose: the official code applies the adjustments only when every one is > 0 and then adds
    them in place to the group losses it returns (so its loss *value* includes ``Σ q_g C/√n_g``;
    the gradient is the same); here any ``C ≥ 0`` acts and the value is the paper's. ``q`` is
    kept as ``log q`` (buffer ``log_q``, float64), the same update without underflow; it is in
    ``state_dict``. :attr:`q` returns the weights. Worst-group accuracy is
    :class:`lossatlas.metrics.GroupAccuracy`.

    Args:
        group_counts: training samples per group [G] (positive), for ``C/√n_g``; its length is G.
        step_size: η ≥ 0, the step of the exponentiated-gradient ascent on ``q``.
        adjustment: C ≥ 0 (a number or [G]), the generalisation adjustment.

    Example:
        >>> import torch, lossatlas as la
        >>> gdro = la.create("group_dro", group_counts=[100, 10], step_size=0.5)
        >>> w = gdro(torch.tensor([1.0, 1.0, 3.0]), torch.tensor([0, 0, 1]))
        >>> [round(float(v), 4) for v in gdro.q]  # the high-loss group gains weight
        [0.2689, 0.7311]
    """

    log_q: Tensor
    group_counts: Tensor

    def __init__(self, group_counts: Any, step_size: float = 0.01, adjustment: Any = 0.0) -> None:
        super().__init__()
        counts = as_class_counts(group_counts, "group_counts")
        self.step_size = check_number(step_size, "step_size", low=0.0)
        self.register_buffer("group_counts", counts.clone())
        self.register_buffer("adjustment", _adjustment(adjustment, "adjustment", counts.numel()))
        self.register_buffer("log_q", torch.full((counts.numel(),), -math.log(counts.numel()), dtype=torch.float64))

    @property
    def num_groups(self) -> int:
        return int(self.group_counts.numel())

    @property
    def q(self) -> Tensor:
        """The current group weights ``q`` [G] (a distribution; uniform before the first step)."""
        return self.log_q.exp()

    def reset(self) -> None:
        """Back to uniform group weights."""
        with torch.no_grad():
            self.log_q.fill_(-math.log(self.num_groups))

    def forward(self, losses: Tensor, group: Tensor) -> Tensor:
        losses, g = _check_batch(losses, group, self.num_groups)
        check_finite(losses, "losses", True)
        w, log_q = group_dro_weights(losses, g, self.group_counts, self.log_q, self.step_size, self.adjustment)
        with torch.no_grad():
            self.log_q.copy_(log_q.to(self.log_q))
        return w.detach()

    def sample_weights(self, losses: Tensor, target: Tensor | None = None) -> Tensor:
        """Weights for :func:`lossatlas.weighting.apply`; ``target`` is the group ids."""
        weights: Tensor = self(losses, target)
        return weights

    def extra_repr(self) -> str:
        return f"num_groups={self.num_groups}, step_size={self.step_size}"
