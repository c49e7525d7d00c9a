"""ABSGD: attentional-biased SGD (catalogue row E1), as a per-sample weighting.

The weights are a softmax of the per-sample losses at temperature λ, divided by a
moving average ``u`` of ``mean exp(ℓ/λ)`` instead of the current batch's sum; the moving
average is this module's state (a buffer, kept in log space so that large ``ℓ/λ`` never
overflows).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._validation import check_finite, check_float, check_number
from ..registry import Paper, register
from .base import Weighting

__all__ = ["ABSGD", "absgd_weights"]

ABSGD_PAPER = Paper(
    "Q. Qi, Y. Xu, R. Jin, W. Yin, T. Yang",
    "Attentional-Biased Stochastic Gradient Descent",
    "TMLR",
    2022,
    "2012.06951",
)

#: The reference switches to plain averaging (weights 1/B, no state update) from this λ on.
UNIFORM_LAMBDA = 200.0


def _check_losses(losses: Tensor) -> Tensor:
    check_float(losses, "losses")
    if losses.dim() != 1:
        raise ValueError(
            f"losses must be per-sample losses [B] (compute the loss with reduction='none'), got shape {tuple(losses.shape)}"
        )
    return losses


def absgd_weights(
    losses: Tensor,
    lam: float = 1.0,
    log_u: Tensor | float | None = None,
    gamma: float = 0.1,
    alpha: float = 1.0,
) -> tuple[Tensor, Tensor]:
    r"""One ABSGD step as a pure function: ``(weights [B], new log u)``.

    .. math:: u' = (1-\gamma)\,u + \gamma\,\alpha\,\tfrac1B\textstyle\sum_i e^{\ell_i/\lambda},\qquad
              w_i = \frac{e^{\ell_i/\lambda}}{u'\,B}

    ``log_u`` is the log of the previous moving average (``None`` means ``u = 0``, the
    reference's start). Computed in log space (float32 for half inputs), detached. For
    ``lam >= 200`` the reference's plain averaging is used: ``w_i = 1/B`` and ``u`` is
    unchanged. See :class:`ABSGD`.
    """
    _check_losses(losses)
    lam = check_number(lam, "lam", low=0.0, low_open=True)
    gamma = check_number(gamma, "gamma", low=0.0, high=1.0, low_open=True)
    alpha = check_number(alpha, "alpha", low=0.0, low_open=True)
    dtype = torch.float32 if losses.dtype in (torch.float16, torch.bfloat16) else losses.dtype
    x = losses.detach().to(dtype)
    if log_u is None:
        prev = torch.full((), -math.inf, dtype=dtype, device=x.device)
    else:
        prev = torch.as_tensor(log_u, dtype=dtype, device=x.device)
    b = x.numel()
    if lam >= UNIFORM_LAMBDA or b == 0:
        return torch.full_like(x, 1.0 / max(b, 1)).to(losses.dtype), prev
    s = x / lam
    # log mean exp(s) + log(γα), combined with log((1-γ) u) without leaving log space.
    new_term = torch.logsumexp(s, 0) - math.log(b) + math.log(gamma * alpha)
    if gamma < 1.0:
        log_u_new = torch.logaddexp(prev + math.log1p(-gamma), new_term)
    else:
        log_u_new = new_term
    w = torch.exp(s - log_u_new - math.log(b))
    return w.to(losses.dtype), log_u_new


@register(
    "absgd",
    aliases=("attentional_biased_sgd", "absgd_weights"),
    family="weighting",
    kind="weighting",
    catalogue="E1",
    formula="u ← (1-γ)u + γ·α·mean_i exp(ℓ_i/λ);  w_i = exp(ℓ_i/λ) / (u·B)  (u starts at 0; λ ≥ 200 → w_i = 1/B)",
    paper=ABSGD_PAPER,
    code="qiqi-helloworld/ABSGD mylosses.py::ROBSGD / ABSGD",
    function=absgd_weights,
    defaults_source={
        "lam": "ABSGD train.py --lamda default 1 (second stage); --init_lamda 10 in the first stage",
        "gamma": "ABSGD train.py --drogamma default 0.1",
        "alpha": "ABSGD loss class default abAlpha=1 (train.py passes 0.5, which scales every weight by 2)",
        "start_epoch": "0 = ABSGD from the first epoch; the paper's two-stage recipe switches at the first LR decay (epoch 160 of 200 on CIFAR-LT)",
        "warmup_lam": "200 = the reference's 'plain averaging' threshold, i.e. plain SGD in the first stage",
    },
    notes="Use la.weighting.apply(losses, absgd, reduction='sum') to reproduce the reference's sum(w·ℓ); "
    "reduction='mean' renormalises the weights per batch (a per-batch softmax).",
)
class ABSGD(Weighting):
    r"""Attentional-biased SGD weights (Qi, Xu, Jin, Yin, Yang, 2022, "Attentional-Biased
    Stochastic Gradient Descent", TMLR; arXiv 2012.06951, first version 2020).

    .. math:: u_t = (1-\gamma)\,u_{t-1} + \gamma\,\alpha\,\frac1B\sum_{i=1}^B e^{\ell_i/\lambda},
              \qquad w_i = \frac{e^{\ell_i/\lambda}}{u_t\,B}

    Each call ``absgd(losses)`` takes the per-sample losses [B] of one mini-batch (any loss
    with ``reduction="none"``), updates the moving-average normaliser ``u`` and returns the
    detached weights [B]. The weighted objective is ``Σ_i w_i ℓ_i``: train with
    ``la.weighting.apply(losses, absgd, reduction="sum")`` (``"mean"`` divides by
    ``Σ w_i`` instead, i.e. a per-batch softmax without the moving average). λ > 0 is the
    temperature of the robust (DRO) objective: small λ concentrates the weight on
    high-loss samples; λ → ∞ gives uniform weights.

    Quirks of the reference (qiqi-helloworld/ABSGD), reproduced on purpose:

    * ``u`` starts at 0 and is **not** bias-corrected, so after the first call the weights
      sum to ``1/γ`` (10 with γ = 0.1), then decay towards a sum of about 1;
    * ``lam >= 200`` means plain averaging: ``w_i = 1/B`` exactly, and ``u`` is not updated;
    * ``alpha`` (the reference's ``abAlpha``) multiplies the averaged term, so every weight
      scales by ``1/α`` in the steady state.

    ``u`` is kept as ``log u`` in the buffer ``log_u`` (``-inf`` = the reference's 0), so a
    loss of 1e4 at λ = 1 stays finite; :attr:`u` returns ``exp(log_u)``. The buffer is
    saved in ``state_dict`` and moves with ``.to()``.

    Two-stage recipe (the paper's long-tail protocol): train plain SGD first, then switch
    ABSGD on, e.g. at the first learning-rate decay. ``start_epoch`` and ``warmup_lam``
    express it: before ``start_epoch`` (set with :meth:`set_epoch`) λ is ``warmup_lam``
    (default 200, i.e. uniform weights; the reference's ``--init_lamda 10`` is the
    alternative); from ``start_epoch`` on it is ``lam``.

    Defaults: λ = 1, γ = 0.1 (the reference's ``train.py``), α = 1 (its loss class).
    Shapes: ``losses`` float [B] → weights [B] (same dtype; half inputs computed in float32).

    Example:
        >>> import torch, lossatlas as la
        >>> absgd = la.create("absgd", lam=1.0, gamma=0.1)
        >>> round(float(absgd(torch.tensor([0.1, 0.5, 2.0])).sum()), 4)  # 1/γ after step 0
        10.0
    """

    log_u: Tensor  # buffers
    epoch: Tensor

    def __init__(
        self,
        lam: float = 1.0,
        gamma: float = 0.1,
        alpha: float = 1.0,
        start_epoch: int = 0,
        warmup_lam: float = UNIFORM_LAMBDA,
    ) -> None:
        super().__init__()
        self.lam = check_number(lam, "lam", low=0.0, low_open=True)
        self.gamma = check_number(gamma, "gamma", low=0.0, high=1.0, low_open=True)
        self.alpha = check_number(alpha, "alpha", low=0.0, low_open=True)
        self.warmup_lam = check_number(warmup_lam, "warmup_lam", low=0.0, low_open=True)
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise ValueError(f"start_epoch must be a non-negative int, got {start_epoch!r}")
        self.start_epoch = start_epoch
        self.register_buffer("log_u", torch.full((), -math.inf, dtype=torch.float64))
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))

    @property
    def u(self) -> Tensor:
        """The moving-average normaliser ``u`` (0 before the first ABSGD step)."""
        return self.log_u.exp()

    @property
    def current_lam(self) -> float:
        """λ in use at the current epoch (``warmup_lam`` before ``start_epoch``)."""
        return self.lam if int(self.epoch) >= self.start_epoch else self.warmup_lam

    def set_epoch(self, epoch: int) -> None:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self.epoch.fill_(epoch)

    def reset(self) -> None:
        """Forget the moving average (``u = 0``)."""
        self.log_u.fill_(-math.inf)

    def forward(self, losses: Tensor) -> Tensor:
        _check_losses(losses)
        check_finite(losses, "losses", True)
        w, log_u = absgd_weights(losses, self.current_lam, self.log_u, self.gamma, self.alpha)
        with torch.no_grad():
            self.log_u.copy_(log_u.to(self.log_u.dtype))
        return w.detach()

    def sample_weights(self, losses: Tensor, target: Tensor | None = None) -> Tensor:
        weights: Tensor = self(losses)  # nn.Module.__call__ is untyped
        return weights

    def extra_repr(self) -> str:
        return f"lam={self.lam}, gamma={self.gamma}, alpha={self.alpha}, start_epoch={self.start_epoch}"
