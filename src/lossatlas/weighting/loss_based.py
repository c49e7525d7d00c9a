"""Dynamic loss-based sample re-weighting (catalogue row E2), Sow et al., ICLR 2025.

Each mini-batch's per-sample losses are min-max normalised to [-δ, δ], passed through a
strategy function f that says which losses matter, and turned into weights by a softmax
at temperature r. The strategies are the paper's: **LinUpper** (down-weight low losses,
cap high ones), **Quadratic** (favour medium losses) and **Extremes** (favour both ends).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._validation import check_finite, check_float, check_number
from ..registry import Paper, register
from .base import Weighting

__all__ = ["LossBasedReweighting", "loss_based_weights", "normalise_losses", "STRATEGIES"]

LOSS_REWEIGHT_PAPER = Paper(
    "D. Sow, H. Woisetschläger, S. Bulusu, S. Wang, H.-A. Jacobsen, Y. Liang",
    "Dynamic Loss-Based Sample Reweighting for Improved Large Language Model Pretraining",
    "ICLR",
    2025,
    "2502.06733",
)


def _linupper(x: Tensor, delta: float) -> Tensor:
    return torch.clamp(x + delta, max=delta)


def _quadratic(x: Tensor, delta: float) -> Tensor:
    return 1.0 - x.square() / delta**2


def _extremes(x: Tensor, delta: float) -> Tensor:
    return x.abs()


#: strategy name -> f(normalised loss, δ). The official code calls Quadratic "mid".
STRATEGIES: dict[str, Callable[[Tensor, float], Tensor]] = {
    "linupper": _linupper,
    "quadratic": _quadratic,
    "extremes": _extremes,
}
_STRATEGY_ALIASES = {"mid": "quadratic", "lin_upper": "linupper"}


def _strategy(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"strategy must be a str, one of {sorted(STRATEGIES)}, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    key = _STRATEGY_ALIASES.get(key, key)
    if key not in STRATEGIES:
        raise ValueError(f"strategy must be one of {sorted(STRATEGIES)} (or 'mid' = 'quadratic'), got {name!r}")
    return key


def normalise_losses(losses: Tensor, delta: float = 1.0) -> Tensor:
    r"""Min-max map of a batch's losses onto [-δ, δ]: ``δ (2ℓ - ℓ_max - ℓ_min) / max(ℓ_max - ℓ_min, 1e-6)``.

    The 1e-6 floor is the reference's; a batch of equal losses maps to 0.
    """
    if losses.numel() == 0:
        return losses
    lmin, lmax = losses.min(), losses.max()
    span = torch.clamp(lmax - lmin, min=1e-6)
    return delta * (2.0 * losses - lmax - lmin) / span


def loss_based_weights(
    losses: Tensor,
    strategy: str = "linupper",
    r: float = 1.0,
    delta: float = 1.0,
) -> Tensor:
    r"""Weights ``w_i = B · softmax_i(f(ĥ_i) / r)``, ``ĥ = normalise_losses(ℓ, δ)``; mean 1, detached.

    ``f`` is the strategy: ``linupper`` ``min(x + δ, δ)``, ``quadratic`` ``1 - x²/δ²``,
    ``extremes`` ``|x|``. See :class:`LossBasedReweighting`.
    """
    check_float(losses, "losses")
    if losses.dim() != 1:
        raise ValueError(f"losses must be per-sample losses [B] (use reduction='none'), got shape {tuple(losses.shape)}")
    key = _strategy(strategy)
    r = check_number(r, "r", low=0.0, low_open=True)
    delta = check_number(delta, "delta", low=0.0, low_open=True)
    dtype = torch.float32 if losses.dtype in (torch.float16, torch.bfloat16) else losses.dtype
    x = losses.detach().to(dtype)
    b = x.numel()
    if b == 0:
        return losses.detach().clone()
    f = STRATEGIES[key](normalise_losses(x, delta), delta)
    w = torch.softmax(f / r, dim=0) * b
    return w.to(losses.dtype)


@register(
    "loss_based",
    aliases=("loss_based_reweighting", "dynamic_loss_reweighting", "linupper"),
    family="weighting",
    kind="weighting",
    catalogue="E2",
    formula="x_i = δ(2ℓ_i − ℓ_max − ℓ_min)/(ℓ_max − ℓ_min);  w_i = B·softmax_i(f(x_i)/r);  "
    "f = min(x+δ, δ) (LinUpper) | 1 − x²/δ² (Quadratic) | |x| (Extremes)",
    paper=LOSS_REWEIGHT_PAPER,
    code="sowmaster/Sample-Level-Loss-Reweighting-ICLR-2025 src/trainer.py (h_func, f_func_*, g_func)",
    function=loss_based_weights,
    defaults_source={
        "strategy": "LinUpper, the paper's best strategy",
        "r": "official code kl_reg default 1.0 (the KL-regularisation strength / softmax temperature)",
        "delta": "official code δ = 1",
        "burnout_steps": "official code burnout_steps default 1000 (uniform weights first)",
    },
)
class LossBasedReweighting(Weighting):
    r"""Dynamic loss-based sample re-weighting (Sow, Woisetschläger, Bulusu, Wang, Jacobsen,
    Liang, 2025, "Dynamic Loss-Based Sample Reweighting for Improved Large Language Model
    Pretraining", ICLR).

    .. math:: x_i = \delta\,\frac{2\ell_i - \ell_{\max} - \ell_{\min}}{\max(\ell_{\max}-\ell_{\min}, 10^{-6})}
              \in[-\delta,\delta],\qquad
              w_i = B\,\frac{e^{f(x_i)/r}}{\sum_j e^{f(x_j)/r}}

    The closed form of a KL-regularised weight update (strength r) on the batch's
    normalised losses. Strategies (``strategy=``), named as in the paper:

    * ``"linupper"`` — :math:`f(x) = \min(x+\delta, \delta)`: weight rises with the loss
      up to the batch's mid-range loss, then stays flat, so easy (redundant) samples are
      down-weighted while the weight of outliers stays bounded (the paper's best);
    * ``"quadratic"`` — :math:`f(x) = 1 - x^2/\delta^2`: favours medium losses (the
      official code's ``"mid"``, accepted as an alias);
    * ``"extremes"`` — :math:`f(x) = |x|`: favours both the lowest and highest losses.

    The weights have mean 1 over the batch, so ``la.weighting.apply(losses, w)`` with
    ``"mean"`` (``Σ w ℓ / Σ w``) and ``"sum"`` / B coincide, as the reference's objective.
    The first ``burnout_steps`` calls return uniform weights (the reference's warm-up;
    the step counter is a buffer). r → ∞ gives uniform weights; r → 0 puts all the weight
    on the strategy's maximisers. Losses are normalised per call: under data parallelism,
    call it on the all-gathered losses (as the reference does) and keep your rank's slice.

    Defaults (official code): LinUpper, r = 1, δ = 1, 1000 burn-out steps.
    Shapes: ``losses`` float [B] → weights [B].

    Example:
        >>> import torch, lossatlas as la
        >>> rw = la.create("loss_based", strategy="linupper", burnout_steps=0)
        >>> round(rw(torch.tensor([0.1, 1.0, 2.0, 4.0])).mean().item(), 5)
        1.0
    """

    step: Tensor  # buffer

    def __init__(
        self,
        strategy: str = "linupper",
        r: float = 1.0,
        delta: float = 1.0,
        burnout_steps: int = 1000,
    ) -> None:
        super().__init__()
        self.strategy = _strategy(strategy)
        self.r = check_number(r, "r", low=0.0, low_open=True)
        self.delta = check_number(delta, "delta", low=0.0, low_open=True)
        if isinstance(burnout_steps, bool) or not isinstance(burnout_steps, int) or burnout_steps < 0:
            raise ValueError(f"burnout_steps must be a non-negative int, got {burnout_steps!r}")
        self.burnout_steps = burnout_steps
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def forward(self, losses: Tensor) -> Tensor:
        check_float(losses, "losses")
        check_finite(losses, "losses", True)
        in_burnout = int(self.step) < self.burnout_steps
        self.step += 1
        if in_burnout:
            if losses.dim() != 1:
                raise ValueError(f"losses must be per-sample losses [B] (use reduction='none'), got shape {tuple(losses.shape)}")
            return torch.ones_like(losses.detach())
        return loss_based_weights(losses, self.strategy, self.r, self.delta).detach()

    def sample_weights(self, losses: Tensor, target: Tensor | None = None) -> Tensor:
        weights: Tensor = self(losses)  # nn.Module.__call__ is untyped
        return weights

    def extra_repr(self) -> str:
        return f"strategy={self.strategy!r}, r={self.r}, delta={self.delta}, burnout_steps={self.burnout_steps}"
