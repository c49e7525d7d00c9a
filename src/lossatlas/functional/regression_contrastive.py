"""ConR, the contrastive regulariser for deep imbalanced regression (catalogue row G14).

Inputs of the ``regression_embedding`` kind: ``(features[N, D], target float[N], preds float[N])``,
the features of every view of the batch (concatenated), their continuous regression targets
and the model's predictions for them (used only to choose negatives; no gradient reaches them).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._spec import Param, loss_function, nonnegative, positive
from .._validation import check_finite, check_float, check_reduction, check_same_device
from ._common import compute_dtype, reduce_loss

__all__ = ["conr"]

REGRESSION_EMBEDDING = ("features", "target", "preds")
CONR = "BorealisAI/ConR agedb-dir"


def _check(features: Any, target: Any, preds: Any, reduction: str, validate: bool) -> tuple[Tensor, Tensor, Tensor]:
    check_reduction(reduction)
    z = check_float(features, "features")
    if z.dim() != 2:
        raise ValueError(f"features must have shape [N, D] (one embedding per row), got {tuple(z.shape)}")
    n = z.shape[0]
    y = check_float(target, "target")
    p = check_float(preds, "preds")
    for name, t in (("target", y), ("preds", p)):
        if t.shape != (n,) and t.shape != (n, 1):
            raise ValueError(f"{name} must have shape [N] = [{n}] (one value per row of features), got {tuple(t.shape)}")
        check_same_device("features", z, name, t)
    check_finite(z, "features", validate, target=y, preds=p)
    return z, y.reshape(n), p.reshape(n)


@loss_function(inputs=REGRESSION_EMBEDDING, params={
    "window": Param("ω > 0: samples whose targets differ by at most ω are positives; a negative has a target farther "
                    "than ω but a prediction within ω", positive, f"{CONR}/train.py -w default 1"),
    "temperature": Param("τ > 0 of the similarities z_i·z_j / τ", positive,
                         f"{CONR}/loss.py ConR: t = 0.07 (set inside; train.py's -t 0.2 is overwritten)"),
    "eta": Param("e ≥ 0 of the pushing weight S_ik = exp(e |y_i − y_k|)", nonnegative, f"{CONR}/train.py -e default 0.01"),
})
def conr(
    features: Tensor,
    target: Tensor,
    preds: Tensor,
    *,
    window: float = 1.0,
    temperature: float = 0.07,
    eta: float = 0.01,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """ConR; see :class:`lossatlas.losses.ConRLoss`."""
    z, y, p = _check(features, target, preds, reduction, validate)
    out_dtype = z.dtype
    ct = compute_dtype(z)
    z = F.normalize(z.to(ct), dim=1)
    y, p = y.detach().to(ct), p.detach().to(ct)
    n = z.shape[0]
    if n == 0:
        return reduce_loss(z.sum(1), reduction, None, out_dtype)
    label_dist = (y[:, None] - y[None, :]).abs()
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    close_label = label_dist <= window
    pos = close_label & ~eye
    neg = ~close_label & ((p[:, None] - p[None, :]).abs() <= window)
    logits = z @ z.T / temperature
    neg_inf = torch.full_like(logits, float("-inf"))
    # log of the denominator: Σ_{p∈P_i} e^{s_ip} + Σ_{k∈N_i} e^{e|y_i − y_k|} e^{s_ik}
    log_den = torch.logsumexp(torch.cat([torch.where(pos, logits, neg_inf),
                                         torch.where(neg, logits + eta * label_dist, neg_inf)], 1), dim=1)
    n_pos = pos.sum(1)
    has = (n_pos > 0) & neg.any(1)  # no positive or no negative: 0 (as the official no-negative rule)
    safe_den = torch.where(has, log_den, torch.zeros_like(log_den))
    terms = torch.where(pos & has[:, None], safe_den[:, None] - logits, torch.zeros_like(logits))
    losses = terms.sum(1) / n_pos.clamp_min(1).to(ct)
    return reduce_loss(losses, reduction, None, out_dtype)
