"""Single-positive multi-label losses (catalogue row D4), as pure functions.

In single-positive multi-label learning each training image has one observed positive label
and every other label is unobserved (Cole et al., 2021). The target is the observed matrix
[N, C]: 1 for an observed positive, 0 for an unobserved label (values in between act linearly).
``"none"`` returns the elementwise losses [N, C]; ``"mean"`` averages all N·C of them (the
official code's ``sum(loss / (N·C))``), ``"sum"`` adds them.

Each public loss function is the one definition of its method; the module twins in
:mod:`lossatlas.losses.single_positive` carry the full documentation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._spec import Param, as_bool, fresh, loss_function, positive, unit_interval
from .._validation import check_float, check_number, check_same_device, check_tensor, compiling
from ._common import reduce_loss
from ._fused import pointwise_loss
from .multilabel import MULTILABEL, MULTILABEL_IGNORE, _prepare_multilabel

__all__ = ["assume_negative", "entropy_maximization", "role", "binary_entropy_with_logits"]

COLE = "elijahcole/single-positive-multi-label"
ZHOU = "Correr-Zhou/SPML-AckTheUnknown main.py"


def binary_entropy_with_logits(z: Tensor) -> Tensor:
    """``H(σ(z)) = −σ(z) log σ(z) − σ(−z) log σ(−z)`` elementwise, from log-sigmoids (finite
    and exact at large |z|, where ``H → 0``)."""
    return -(torch.sigmoid(z) * F.logsigmoid(z) + torch.sigmoid(-z) * F.logsigmoid(-z))


@loss_function(inputs=MULTILABEL, params={
    "weighted": Param("weight the assumed negatives by γ = 1/(C − 1) (WAN) instead of 1 (AN)", as_bool,
                      f"{COLE} losses.py loss_an (False); loss_wan is True"),
    "label_smoothing": Param("label smoothing ε in [0, 1] of both terms (AN-LS): the positive's target is 1 − ε, "
                             "an assumed negative's ε", unit_interval, f"{COLE} losses.py loss_an (0); AN-LS uses ls_coef"),
    "ignore_index": MULTILABEL_IGNORE,
})
def assume_negative(
    logits: Tensor,
    target: Tensor,
    *,
    weighted: bool = False,
    label_smoothing: float = 0.0,
    ignore_index: float | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Assume-negative BCE (AN, WAN, AN-LS); see :class:`lossatlas.losses.AssumeNegativeLoss`."""
    z, y, m, out_dtype = _prepare_multilabel(logits, target, validate, None, ignore_index)
    if weighted and z.shape[-1] < 2:
        raise ValueError(f"weighted=True needs at least 2 labels (γ = 1/(C − 1)), got logits {tuple(z.shape)}")
    gamma = 1.0 / (z.shape[-1] - 1) if weighted else 1.0
    if m is None and reduction != "none" and z.numel():  # nothing masked: BCE's own reduction (the mean over every element)
        return fresh(_assume_negative(z, y, gamma, label_smoothing, reduction).to(out_dtype))
    return reduce_loss(_assume_negative(z, y, gamma, label_smoothing), reduction, m, out_dtype)


def _assume_negative(z: Tensor, y: Tensor, gamma: float, eps: float, reduction: str = "none") -> Tensor:
    """``y [(1 − ε) s⁺ + ε s⁻] + γ (1 − y) [(1 − ε) s⁻ + ε s⁺]`` with ``s⁺ = −log σ(z)``,
    ``s⁻ = −log(1 − σ(z))``, as ONE ``binary_cross_entropy_with_logits`` (one kernel forward and
    backward): linear in ``s⁺`` and ``s⁻``, it is ``A s⁺ + B s⁻ = w [t s⁺ + (1 − t) s⁻]`` with
    ``A = y (1 − ε) + γ (1 − y) ε``, ``w = A + B = γ + (1 − γ) y > 0`` and ``t = A / w``; for γ = 1
    (AN, AN-LS) ``w = 1`` and ``t`` is the smoothed target."""
    if gamma == 1.0:
        t = y if eps == 0.0 else y * (1.0 - 2.0 * eps) + eps
        return F.binary_cross_entropy_with_logits(z, t, reduction=reduction)
    w = y * (1.0 - gamma) + gamma
    a = y * (1.0 - eps - gamma * eps) + gamma * eps
    return F.binary_cross_entropy_with_logits(z, a / w, weight=w, reduction=reduction)


def _alpha(value: object, name: str) -> float:
    return check_number(value, name, low=0.0)


@loss_function(inputs=MULTILABEL, params={
    "alpha": Param("weight α ≥ 0 of the entropy of the unobserved labels", _alpha,
                   f"{ZHOU}: alpha = 0.2 for the default data set (pascal; coco and nuswide 0.1, cub 0.01)"),
    "ignore_index": MULTILABEL_IGNORE,
})
def entropy_maximization(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.2,
    ignore_index: float | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """Entropy-maximisation loss ``y·(−log σ(z)) − (1 − y)·α H(σ(z))``; see
    :class:`lossatlas.losses.EntropyMaximizationLoss`."""
    z, y, m, out_dtype = _prepare_multilabel(logits, target, validate, None, ignore_index)
    losses = pointwise_loss(z, lambda x: _entropy_maximization_terms(x, y, alpha), y, traced=True)
    if losses is None:
        losses = y * -F.logsigmoid(z) - (1.0 - y) * (alpha * binary_entropy_with_logits(z))
    return reduce_loss(losses, reduction, m, out_dtype)


def _entropy_maximization_terms(z: Tensor, y: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """``(ℓ, dℓ/dz)`` elementwise: ``ℓ = −y log σ(z) − α (1 − y) H``, ``H = −(σ(z) log σ(z) + σ(−z) log σ(−z))``,
    ``dℓ/dz = −y σ(−z) + α (1 − y) z σ(z) σ(−z)`` (``dH/dz = −z σ(z) σ(−z)``).

    From ``r = σ(−|z|)`` and ``log(1 + e^{−|z|}) = −log1p(−r)`` (a sigmoid and a log1p, where the
    definition's two log-sigmoids cost an exponential and a logarithm each and its sigmoids two
    more): ``−log σ(z) = (|z| − z)/2 + log(1 + e^{−|z|})``, ``H = |z| r + log(1 + e^{−|z|})`` (sums of
    nonnegative terms: exact far out on either side) and ``σ(z) σ(−z) = r (1 − r)``; ``σ(−z)`` is one
    more sigmoid. Every buffer but the outputs is reused in place."""
    a = z.abs()
    r = torch.neg(a).sigmoid_()  # σ(−|z|) ∈ (0, 1/2]
    nl = torch.neg(r).log1p_()  # log σ(|z|) = −log(1 + e^{−|z|})
    # α (1 − y) in one pass; traced, a scalar keyword argument cannot be symbolic (inductor fails on it)
    u = torch.rsub(y, 1.0).mul_(alpha) if compiling() else torch.rsub(y, alpha, alpha=alpha)
    slope = torch.addcmul(r, r, r, value=-1.0).mul_(z).mul_(u)  # α (1 − y) z σ(z) σ(−z)
    slope.addcmul_(y, torch.neg(z).sigmoid_(), value=-1.0)
    h = r.mul_(a).sub_(nl)  # H
    pos = a.sub_(z).mul_(0.5).sub_(nl)  # −log σ(z)
    loss = h.mul_(u).neg_().addcmul_(y, pos)
    return loss, slope


def _role_rows(label_logits: Tensor, index: Tensor | None, z: Tensor, validate: bool) -> Tensor:
    """The estimator's logits of the batch's rows [N, C], in the compute dtype of ``z``."""
    est = check_float(label_logits, "label_logits")
    if est.dim() != 2 or est.shape[1] != z.shape[1]:
        raise ValueError(f"label_logits must have shape [num_samples, C] with C = {z.shape[1]} (the logits' classes), "
                         f"got {tuple(est.shape)}")
    check_same_device("label_logits", est, "logits", z)
    if index is None:
        if est.shape[0] != z.shape[0]:
            raise ValueError(f"label_logits without index= must be the batch's own rows [N, C] = {tuple(z.shape)}, "
                             f"got {tuple(est.shape)}")
        return est.to(z.dtype)
    check_tensor(index, "index")
    if index.dtype.is_floating_point or index.dtype == torch.bool or index.is_complex():
        raise TypeError(f"index must hold integer dataset indices (torch.long), got dtype {index.dtype}")
    if index.shape != (z.shape[0],):
        raise ValueError(f"index must have shape [N] = [{z.shape[0]}] (one dataset index per row), got {tuple(index.shape)}")
    if validate and not compiling() and index.numel():
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= est.shape[0]:
            raise ValueError(f"index values must be in [0, num_samples={est.shape[0]}) (the rows of label_logits); "
                             f"found {lo}..{hi}")
    return est[index.to(est.device)].to(z.dtype)


def _role(z: Tensor, u: Tensor, y: Tensor, expected_num_pos: float) -> Tensor:
    """ROLE's elementwise losses [N, C] with the batch regulariser added to every entry (math only).

    ``z``: the classifier's logits, ``u``: the label estimator's logits of the same rows, ``y``:
    the observed matrix. Each model is fitted to the other's detached output and to the
    observed positives; the regulariser pulls both expected label counts to ``k``.
    """
    nll_z, nll_not_z = -F.logsigmoid(z), -F.logsigmoid(-z)
    nll_u, nll_not_u = -F.logsigmoid(u), -F.logsigmoid(-u)
    p, e = torch.sigmoid(z), torch.sigmoid(u)
    p_d, e_d = p.detach(), e.detach()
    observed = y * (nll_z + nll_u)
    cross = e_d * nll_z + (1.0 - e_d) * nll_not_z + p_d * nll_u + (1.0 - p_d) * nll_not_u
    losses = 0.5 * (observed + cross)
    if z.shape[0] == 0:
        return losses
    k, c = expected_num_pos, z.shape[1]
    reg = ((p.sum(1).mean() - k) ** 2 + (e.sum(1).mean() - k) ** 2) / (2.0 * c * c)
    return losses + reg


@loss_function(inputs=MULTILABEL, call=("index", "label_logits"), params={
    "expected_num_pos": Param("expected number k > 0 of positive labels per sample, the target of the regulariser "
                              "(Σ_c of the batch's mean predictions)", positive,
                              f"{COLE} train.py expected_num_pos['pascal'] = 1.5 (the default data set; coco 2.5, "
                              "nuswide 1.9, cub 31.4)"),
})
def role(
    logits: Tensor,
    target: Tensor,
    *,
    index: Tensor | None = None,
    label_logits: Tensor | None = None,
    expected_num_pos: float = 1.5,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """ROLE, regularised online label estimation, for one batch; see :class:`lossatlas.losses.ROLELoss`.

    ``label_logits`` [M, C] are the label estimator's logits (the learned table the module keeps
    as a parameter) and ``index`` int64 [N] the batch's rows in it; without ``index`` they are
    the batch's own rows [N, C]; without ``label_logits`` every estimate is ½ (logit 0).
    """
    z, y, _, out_dtype = _prepare_multilabel(logits, target, validate)
    if label_logits is None:
        if index is not None:
            raise ValueError("index= needs label_logits= (the table of label estimates it indexes)")
        u = torch.zeros_like(z)
    else:
        u = _role_rows(label_logits, index, z, validate)
    return reduce_loss(_role(z, u, y, expected_num_pos), reduction, None, out_dtype)
