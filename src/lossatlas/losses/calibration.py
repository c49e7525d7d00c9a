"""Calibration-minded classification losses (catalogue rows C1–C5).

Poly-1, the encouraging loss, squentropy, the two different "Z-losses" (de Brébisson &
Vincent's spherical Z-loss and the PaLM / T5X log-Z² penalty, kept apart on purpose), and
AnyLoss (confusion-matrix metrics as losses).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .. import functional as LF
from .._docs import fill_doc
from .._spec import spec_of
from .._validation import check_number
from ..registry import Paper, register
from ._base import FunctionalLoss, Loss

__all__ = ["CALSLoss", "Poly1Loss", "EncouragingLoss", "SquentropyLoss", "SphericalZLoss", "LogZSquaredLoss", "AnyLoss",
           "CorrectnessAwareLoss", "RankMixupMRLLoss", "RankMixupMNDCGLoss"]

POLY_PAPER = Paper(
    "Z. Leng, M. Tan, C. Liu, E. D. Cubuk, X. Shi, S. Cheng, D. Anguelov",
    "PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions", "ICLR", 2022, "2204.12511",
)
ENCOURAGING_PAPER = Paper(
    "G. Zhao, W. Yang, X. Ren, L. Li, Y. Wu, X. Sun",
    "Well-classified Examples are Underestimated in Classification with Deep Neural Networks", "AAAI", 2022, "2110.06537",
)
SQUENTROPY_PAPER = Paper(
    "L. Hui, M. Belkin, S. Wright", "Cut your Losses with Squentropy", "ICML", 2023, "2302.03952",
)
ZLOSS_PAPER = Paper(
    "A. de Brébisson, P. Vincent",
    "The Z-loss: a shift and scale invariant classification loss belonging to the Spherical Family", "arXiv", 2016, "1604.08859",
)
PALM_PAPER = Paper(
    "A. Chowdhery et al.", "PaLM: Scaling Language Modeling with Pathways", "JMLR", 2023, "2204.02311",
)
ANYLOSS_PAPER = Paper(
    "D. Han, N. Moniz, N. V. Chawla",
    "AnyLoss: Transforming Classification Metrics into Loss Functions", "KDD", 2024, "2405.14745",
)


@register(
    "poly1",
    aliases=("poly_1", "polyloss", "poly1_loss"),
    family="calibration",
    kind="classification",
    catalogue="C1",
    formula="l_i = CE(z_i, y_i) + ε (1 - p_{i,y_i})",
    paper=POLY_PAPER,
    code="paper's listing (TensorFlow); no official PyTorch code",
)
class Poly1Loss(FunctionalLoss, function=LF.poly1):
    r"""Poly-1 loss (Leng et al., 2022, "PolyLoss: A Polynomial Expansion Perspective of
    Classification Loss Functions").

    .. math:: \ell_i = -\log p_{i,y_i} + \varepsilon\,(1 - p_{i,y_i})

    Cross-entropy is ``Σ_k (1 − p_t)^k / k``; Poly-1 perturbs the leading polynomial
    coefficient by ε. ε = 0 is exactly cross-entropy; ε = −1 removes the first term. With
    ``label_smoothing`` the CE is smoothed and ``p_t = Σ_j t_j p_j`` (the paper's listing).
    Default ε = 1 is the paper's. ``weight`` multiplies each sample's loss by ``w_{y_i}`` and
    ``"mean"`` is ``Σ w_{y_i} l_i / Σ w_{y_i}`` (``F.cross_entropy``'s weighted mean; with label
    smoothing torch instead weights each smoothing term by its own class, which is not done here).

    {args}

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("poly1", epsilon=1.0)
        >>> round(crit(torch.zeros(2, 2), torch.tensor([0, 1])).item(), 4)  # log 2 + 0.5
        1.1931
    """


@register(
    "encouraging",
    aliases=("encouraging_loss", "el"),
    family="calibration",
    kind="classification",
    catalogue="C2",
    formula="l_i = -log p_y + b(p_y),  b(p) = log max(1 - p, 1e-5) for p ≤ log_end, else (p - log_end)/(log_end - 1) + log(1 - log_end)",
    paper=ENCOURAGING_PAPER,
    code="lancopku/well-classified-examples-are-underestimated EncouragingLoss.py::EncouragingLoss",
)
class EncouragingLoss(FunctionalLoss, function=LF.encouraging):
    r"""Encouraging loss (Zhao et al., 2022, "Well-classified Examples are Underestimated in
    Classification with Deep Neural Networks").

    .. math:: \ell_i = -\log p_{y} + b(p_{y}),\qquad
              b(p) = \begin{cases}\log\max(1-p,\,10^{-5}) & p \le \text{log\_end}\\
              \frac{p - \text{log\_end}}{\text{log\_end} - 1} + \log(1-\text{log\_end}) & p > \text{log\_end}\end{cases}

    CE plus a bonus ``log(1 − p)`` that rewards (keeps the gradient of) well-classified
    examples; above ``log_end`` the bonus continues linearly (its tangent) to stay bounded
    ("conservative bonus"). ``log_end=1`` is the pure log bonus. The 1e-5 clamp and default
    ``log_end=0.75`` are the official code's (parity case ``cls_encouraging``).

    {args}

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("encouraging", log_end=0.75)
        >>> crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 0])).ndim
        0
    """


@register(
    "squentropy",
    aliases=("squentropy_loss", "sqen"),
    family="calibration",
    kind="classification",
    catalogue="C3",
    formula="l_i = CE(z_i, y_i) + (1/(C-1)) Σ_{j≠y_i} z_ij²",
    paper=SQUENTROPY_PAPER,
    code="Like-Hui/Squentropy_vision svhn.py (loss_type 'sqen'); Like-Hui/Squentropy-for-classification",
)
class SquentropyLoss(FunctionalLoss, function=LF.squentropy):
    r"""Squentropy (Hui, Belkin & Wright, 2023, "Cut your Losses with Squentropy").

    .. math:: \ell_i = -\log p_{i,y_i} + \frac{1}{C-1}\sum_{j\ne y_i} z_{ij}^2

    Cross-entropy plus the average square loss of the *wrong-class* logits (pulls them to
    zero), which the paper reports improves calibration. No hyper-parameter: the published
    script multiplies the square term by an undefined ``args.resquare``; the paper's weight
    is 1 (parity case ``cls_squentropy``). Needs C ≥ 2.

    {args}

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("squentropy")
        >>> round(crit(torch.zeros(2, 4), torch.tensor([0, 3])).item(), 4)  # log 4
        1.3863
    """


@register(
    "spherical_z_loss",
    aliases=("z_loss_spherical", "brebisson_z_loss"),
    family="calibration",
    kind="classification",
    catalogue="C4",
    formula="l_i = (1/a) softplus(a (b - (z_iy - μ_i)/σ_i)),  μ, σ = mean, population std of z_i over classes",
    paper=ZLOSS_PAPER,
    code="pascal20100/factored_output_layer example/timing_example.py (z_loss)",
    notes="Not the PaLM/T5X 'z_loss' (c·log(Z)² added to CE): that one is 'log_z_squared'.",
)
class SphericalZLoss(FunctionalLoss, function=LF.spherical_z_loss):
    r"""Z-loss of the spherical family (de Brébisson & Vincent, 2016, "The Z-loss: a shift and
    scale invariant classification loss belonging to the Spherical Family").

    .. math:: \ell_i = \frac{1}{a}\operatorname{softplus}\!\Big(a\big(b - \tfrac{z_{iy} - \mu_i}{\sigma_i + \epsilon}\big)\Big),
              \quad \mu_i = \tfrac1C\sum_j z_{ij},\ \sigma_i^2 = \tfrac1C\sum_j (z_{ij}-\mu_i)^2

    The target output is standardised over the classes, so the loss is invariant to adding
    a constant to, or multiplying by a positive constant, all logits of a row (rank-like),
    and it only needs Σz, Σz² and z_y (the spherical family: training cost independent of
    C with the authors' factored output layer). **This is not the LLM "z-loss"**: PaLM's
    ``1e-4·log(Z)²`` penalty is :class:`LogZSquaredLoss` (id ``log_z_squared``).
    The paper tunes (a, b) per task; the defaults a = 1, b = 0, ε = 1e-12 are the authors'
    example code. Needs C ≥ 2.

    {args}

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("spherical_z_loss", a=1.0, b=0.0)
        >>> crit(torch.randn(4, 6), torch.tensor([0, 1, 2, 5])).ndim
        0
    """


@register(
    "log_z_squared",
    aliases=("palm_z_loss", "ce_log_z_squared", "t5x_z_loss"),
    family="calibration",
    kind="classification",
    catalogue="C4",
    formula="l_i = CE(z_i, y_i) + c · (log Σ_j exp z_ij)²",
    paper=PALM_PAPER,
    code="google-research/t5x t5x/losses.py::cross_entropy_with_logits (z_loss)",
    notes="The bare penalty (log Z)² is lossatlas.functional.log_z_regulariser. Not de Brébisson's Z-loss ('spherical_z_loss').",
)
class LogZSquaredLoss(FunctionalLoss, function=LF.log_z_squared):
    r"""Cross-entropy plus the log-Z² auxiliary loss of large language models (PaLM, Chowdhery
    et al., 2022/2023; T5X's ``z_loss``; ST-MoE's router z-loss has the same form).

    .. math:: \ell_i = -\log p_{i,y_i} + c\,\big(\log Z_i\big)^2,\qquad Z_i = \sum_j e^{z_{ij}}

    The penalty pulls the softmax normaliser towards 1 (log Z → 0), which keeps logits from
    drifting and stabilises low-precision training. It is registered as a *loss* (CE +
    penalty) because that is how PaLM and T5X use it (``loss = CE + 1e-4·log(Z)²`` per token);
    the penalty alone, to add to any other loss, is
    ``lossatlas.functional.log_z_regulariser(logits)`` (no coefficient). **It is not** de
    Brébisson & Vincent's Z-loss, a different, spherical-family loss (``spherical_z_loss``).
    Default ``coefficient=1e-4`` is PaLM's and T5X's. ``coefficient=0`` is cross-entropy.

    {args}

    Shapes: ``logits`` [N, C] (flatten tokens into N); ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("log_z_squared", coefficient=1e-4)
        >>> crit(torch.randn(4, 10), torch.tensor([0, 1, 2, 9])).ndim
        0
    """


@register(
    "anyloss",
    aliases=("any_loss",),
    family="calibration",
    kind="classification",
    catalogue="C5",
    formula="l = 1 - metric(TN, FP, FN, TP),  TP = Σ y ŷ, ...,  ŷ = 1/(1 + exp(-L (p - 0.5))),  L = 73",
    paper=ANYLOSS_PAPER,
    code="doheonhan/anyloss 'AnyLoss - Code.ipynb'",
    notes="Batch-level: one loss per batch (the macro mean over classes); 'none' gives it to every sample [N], "
          "'sum' is N times it; per-class losses [K]: lossatlas.functional.anyloss_per_class.",
)
class AnyLoss(FunctionalLoss, function=LF.anyloss):
    r"""AnyLoss: confusion-matrix metrics as losses (Han, Moniz & Chawla, 2024, "AnyLoss:
    Transforming Classification Metrics into Loss Functions").

    .. math:: \hat y = A(p) = \frac{1}{1 + e^{-L(p - 0.5)}},\quad
              TP = \textstyle\sum y\hat y,\ FN = \sum y(1-\hat y),\ FP = \sum (1-y)\hat y,\
              TN = \sum (1-y)(1-\hat y),\qquad \ell = 1 - \mathrm{metric}(TP, FN, FP, TN)

    The amplifier A (L = 73, the official code's) pushes probabilities towards 0/1 so the
    soft confusion matrix approaches the hard one while staying differentiable; any metric
    of the four cells becomes a loss. ``metric``: ``"accuracy"`` (TP+TN)/N, ``"f_beta"``
    (1+β²)TP / ((1+β²)TP + β²FN + FP), ``"gmean"`` √(TPR·TNR), ``"balanced_accuracy"``
    (TPR+TNR)/2 — the four the paper and its code define.

    **Binary** (as in the paper): ``logits`` [N] or [N, 1], p = σ(z), 0/1 ``target`` [N].
    The official SLP code applies A to σ(z) as here (its Keras MLP applies A to a linear
    output; use a sigmoid output to match the paper). **Multi-class** (lossatlas extension):
    ``logits`` [N, C], p = softmax(z), one-vs-rest confusion matrix per class; the loss is
    the macro average over classes (:func:`lossatlas.functional.anyloss_per_class` returns
    the per-class losses [C]). Undefined ratios (e.g. TPR of a class absent from the batch)
    are taken as 0, not NaN. :func:`lossatlas.functional.soft_confusion_matrix` returns the
    soft matrices.

    **Reduction:** the loss is a statistic of the whole batch (use batches large enough to
    contain both outcomes) and has no per-sample decomposition. ``"mean"`` returns it;
    ``"none"`` gives the same batch loss to each of the N samples ([N], so that per-sample
    code composes: the mean of ``"none"`` is ``"mean"``); ``"sum"`` is N times it. An empty
    batch has loss 0 (with a zero gradient), as every lossatlas loss.

    {args}

    Shapes: ``logits`` [N] or [N, 1] (binary) with 0/1 ``target`` [N]; or ``logits`` [N, C]
    with int64 ``target`` [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("anyloss", metric="f_beta", beta=1.0)
        >>> crit(torch.tensor([4.0, -4.0, 3.0, -2.0]), torch.tensor([1, 0, 1, 0])).item() < 0.01
        True
    """


CALS_PAPER = Paper("B. Liu, J. Rony, A. Galdran, J. Dolz, I. Ben Ayed",
                   "Class Adaptive Network Calibration", "CVPR", 2023, "2211.15088")
_CALS = spec_of(LF.cals)
_CALS_CFG = "by-liu/CALS configs/lag/aug_lagrangian_class.yaml"


@register(
    "cals",
    aliases=("class_adaptive_label_smoothing", "cals_alm"),
    family="calibration",
    kind="classification",
    catalogue="C7",
    formula="l_i = CE(z_i, y_i) + Σ_j P_PHR((max_k z_ik - z_ij - m)/m; λ_j, ρ); λ_j <- mean_i P'(h_ij) per epoch "
            "(validation set), ρ <- min(ρ_max, γρ) when the validation penalty does not fall below τ·previous",
    paper=CALS_PAPER,
    code="by-liu/CALS calibrate/lagrangian/aug_lagrangian_class.py, penalty.py",
    function=LF.cals,
    defaults_source={
        **_CALS.sources,
        "lambd_min": f"{_CALS_CFG} (lambd_min: 1e-6; also the multipliers' start)",
        "lambd_max": f"{_CALS_CFG} (lambd_max: 1e6)",
        "rho_max": "by-liu/CALS aug_lagrangian_class.py AugLagrangianClass(rho_max=10)",
        "gamma": f"{_CALS_CFG} (gamma: 1.2)",
        "tao": f"{_CALS_CFG} (tao: 0.9)",
    },
)
@fill_doc(args="\n".join([
    "Args:",
    "    num_classes: number of classes C (the size of the multipliers' buffer).",
    *_CALS.args_doc().split("\n")[1:],
    "    lambd_min: lower clip of the multipliers, and their start. Default ``1e-6`` (official config).",
    "    lambd_max: upper clip of the multipliers. Default ``1e6`` (official config).",
    "    rho_max: largest penalty parameter ρ. Default ``10`` (AugLagrangianClass).",
    "    gamma: growth factor of ρ. Default ``1.2`` (official config).",
    "    tao: ρ grows when the validation penalty exceeds ``tao`` times the previous one. Default ``0.9``.",
]))
class CALSLoss(Loss):
    r"""Class-adaptive label smoothing, CALS (Liu, Rony, Galdran, Dolz, Ben Ayed, 2023, "Class
    Adaptive Network Calibration", CVPR): cross-entropy with one penalty multiplier per class,
    learnt by an augmented Lagrangian method.

    .. math:: \ell_i = \mathrm{CE}(z_i, y_i) + \sum_j P\big(h_{ij};\ \lambda_j, \rho\big),\qquad
              h_{ij} = \frac{\max_k z_{ik} - z_{ij} - m}{m}

    .. math:: P(h; \lambda, \rho) = \begin{cases} \frac{(\lambda + \rho h)^2 - \lambda^2}{2\rho} & \lambda + \rho h \ge 0 \\
              -\frac{\lambda^2}{2\rho} & \text{otherwise} \end{cases}\qquad
              \lambda_j \leftarrow \mathrm{clip}\Big(\frac1{|V|}\sum_{i \in V} \mathrm{clip}(P'(h_{ij}), \lambda_{\min}, \lambda_{\max})\Big)

    The constraints ``h ≤ 0`` ask each logit to stay within ``m`` of the row's largest (the
    margin-based label smoothing of MbLS), with a weight ``λ_j`` per class instead of one
    global weight. The multipliers are **state** (the buffer ``multipliers`` [C], starting at
    λ_min = 1e-6): after each epoch, call :meth:`accumulate` on every validation batch's logits,
    then :meth:`update_multipliers` (the official trainer's ``update_lambd`` / ``set_lambd``, with
    the PHR derivative ``P' = max(λ + ρh, 0)``). The penalty parameter ``rho`` (start 1) grows
    by ``gamma`` up to ``rho_max`` when :meth:`update_rho` is given a validation penalty
    (:meth:`penalty`) above ``tao`` times the previous one; the official configuration calls it
    every 10 epochs (``rho_step: 10``). Defaults from the official
    ``configs/lag/aug_lagrangian_class.yaml`` (PHR penalty, margin 20, normalised constraints).
    :func:`lossatlas.functional.cals` computes the loss at given multipliers.

    {args}

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("cals", num_classes=3)
        >>> crit.accumulate(torch.randn(8, 3) * 40); crit.update_multipliers().shape
        torch.Size([3])
    """

    multipliers: Tensor
    _grad_sum: Tensor

    def __init__(
        self,
        num_classes: int,
        margin: float = 20.0,
        rho: float = 1.0,
        normalize: bool = True,
        lambd_min: float = 1e-6,
        lambd_max: float = 1e6,
        rho_max: float = 10.0,
        gamma: float = 1.2,
        tao: float = 0.9,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        checked = _CALS.check_all({"margin": margin, "rho": rho, "normalize": normalize, "ignore_index": ignore_index,
                                   "reduction": reduction, "validate": validate})
        super().__init__(checked["reduction"], checked["validate"])
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.margin: float = checked["margin"]
        self.rho: float = checked["rho"]
        self.normalize: bool = checked["normalize"]
        self.ignore_index: int = checked["ignore_index"]
        self.lambd_min = check_number(lambd_min, "lambd_min", low=0.0)
        self.lambd_max = check_number(lambd_max, "lambd_max", low=self.lambd_min)
        self.rho_max = check_number(rho_max, "rho_max", low=self.rho)
        self.gamma = check_number(gamma, "gamma", low=1.0)
        self.tao = check_number(tao, "tao", low=0.0, high=1.0)
        self.register_buffer("multipliers", torch.full((num_classes,), self.lambd_min, dtype=torch.float64))
        self.register_buffer("_grad_sum", torch.zeros(num_classes, dtype=torch.float64), persistent=False)
        self._count = 0
        self.previous_penalty: float | None = None

    def _hparams(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "margin": self.margin, "rho": self.rho, "normalize": self.normalize}

    def functional_kwargs(self) -> dict[str, Any]:
        """The keywords of :func:`lossatlas.functional.cals` that equal this module now."""
        return {"multipliers": self.multipliers.clone(), "margin": self.margin, "rho": self.rho,
                "normalize": self.normalize, "ignore_index": self.ignore_index, "reduction": self.reduction,
                "validate": self.validate}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return LF.cals(logits, target, **self.functional_kwargs())

    @torch.no_grad()
    def accumulate(self, logits: Tensor) -> None:
        """Add a validation batch's logits [N, C] to the running mean of ``clip(P'(h_ij))``."""
        z = logits.detach().to(torch.float64)
        if z.dim() != 2 or z.shape[1] != self.num_classes:
            raise ValueError(f"logits must have shape [N, {self.num_classes}], got {tuple(logits.shape)}")
        h = LF.cals_constraints(z, self.margin, self.normalize)
        _, grad = LF.cals_penalty(h, self.multipliers.to(z.device), self.rho)
        self._grad_sum = self._grad_sum.to(z.device) + grad.clamp(self.lambd_min, self.lambd_max).sum(dim=0)
        self._count += z.shape[0]

    @torch.no_grad()
    def update_multipliers(self) -> Tensor:
        """Set ``λ_j`` to the accumulated mean (clipped to [λ_min, λ_max]), reset the sums, return λ."""
        if self._count == 0:
            raise RuntimeError("update_multipliers() before accumulate(): pass the validation logits first")
        mean = self._grad_sum / self._count
        self.multipliers.copy_(mean.clamp(self.lambd_min, self.lambd_max).to(self.multipliers.device))
        self._grad_sum = torch.zeros_like(self._grad_sum)
        self._count = 0
        return self.multipliers.clone()

    @torch.no_grad()
    def penalty(self, logits: Tensor) -> float:
        """The mean over samples of ``Σ_j P(h_ij)`` at the current state (the validation penalty)."""
        z = logits.detach().to(torch.float64)
        value, _ = LF.cals_penalty(LF.cals_constraints(z, self.margin, self.normalize), self.multipliers.to(z.device),
                                   self.rho)
        return float(value.sum(dim=1).mean())

    def update_rho(self, val_penalty: float) -> float:
        """ρ ← min(ρ_max, γρ) when the validation penalty is positive and above ``tao`` times the
        previous positive one (``update_rho_by_val``); returns ρ."""
        val = check_number(val_penalty, "val_penalty")
        prev = self.previous_penalty
        if prev is not None and prev > 0 and val > 0 and val > self.tao * prev:
            self.rho = min(self.rho_max, self.rho * self.gamma)
        self.previous_penalty = val
        return self.rho


CA_PAPER = Paper(
    "Y. Liu, L. Wang, Y. Zou, J. Zou, L. Zheng",
    "Optimizing Calibration by Gaining Aware of Prediction Correctness", "arXiv", 2024, "2404.13016",
)
RANKMIXUP_PAPER = Paper(
    "J. Noh, H. Park, J. Lee, B. Ham",
    "RankMixup: Ranking-Based Mixup Training for Network Calibration", "ICCV", 2023, "2308.11990",
)


@register(
    "correctness_aware",
    aliases=("ca_loss", "correctness_aware_loss"),
    family="calibration",
    kind="classification",
    catalogue="C8",
    formula="l_i = w_i (max_k p_ik - 1[argmax_k z_ik = y_i])²,  p = softmax(z);  w balances correct and wrong rows",
    paper=CA_PAPER,
    code="liuyvchi/Correctness-aware-calibration",
)
class CorrectnessAwareLoss(FunctionalLoss, function=LF.correctness_aware):
    r"""Correctness-aware (CA) loss (Liu, Wang, Zou, Zou, Zheng, 2024, "Optimizing Calibration by
    Gaining Aware of Prediction Correctness"): the objective of a post-hoc calibrator, which asks
    for high confidence on correctly predicted samples and low confidence on wrong ones.

    .. math:: \ell_i = w_i\,\big(\max_k p_{ik} - c_i\big)^2,\qquad
              c_i = \mathbb{1}[\hat y_i = y_i],\ \hat y_i = \mathrm{argmax}_k\, z_{ik},\quad p_i = \mathrm{softmax}(z_i)

    ``logits`` are the calibrated logits (e.g. the classifier's logits divided by a temperature
    the calibrator predicts); the calibrator is accuracy-preserving, so the correctness ``c`` is
    read from their argmax, as the official code reads it from the classifier's. Unlike
    cross-entropy, a narrowly wrong sample is pushed to low confidence rather than towards its
    true class. With ``balance=True`` (the official code's weights, 1 − accuracy on correct rows
    and accuracy on wrong rows) the correct and the wrong rows of the batch weigh the same:
    ``'mean'`` is ``½ (mean over correct rows + mean over wrong rows)``, or the plain mean when the
    batch has only one kind; ``'none'`` gives ``w_i ℓ_i`` with the weights normalised to mean 1, so
    ``'mean'`` is its mean. The paper's other ingredient, feeding the calibrator transformed copies
    of each sample (rotation, greyscale, colour jitter), is the calibrator's input, not the loss.

    {args}

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("correctness_aware")
        >>> round(float(crit(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0]))), 4)
        0.395
    """


_MIXUP_USAGE = """\
Shapes: ``logits`` [N, C] (the raw samples); ``target`` int64 [N]; ``mixed_logits`` [N, C] or
[N, M, C] (row i: the logits of the M mixes of sample i, ``λ x_i + (1 − λ) x_π(i)``);
``mixed_target`` of the same shape (their soft labels ``λ onehot(y_i) + (1 − λ) onehot(y_π(i))``).
The official model returns the mixes as [M·N, C] (mix-major): pass
``mixed.view(M, N, C).transpose(0, 1)``.
"""


@register(
    "rankmixup_mrl",
    aliases=("mrl", "rankmixup"),
    family="calibration",
    kind="classification",
    catalogue="C9",
    formula="l_i = CE(z_i, y_i) + α mean_m 1[t̃_im not one-hot] [max_k z̃_imk - max_k z_ik + m]_+",
    paper=RANKMIXUP_PAPER,
    code="cvlab-yonsei/RankMixup",
)
@fill_doc(usage=_MIXUP_USAGE)
class RankMixupMRLLoss(FunctionalLoss, function=LF.rankmixup_mrl):
    r"""RankMixup's mixup-based ranking loss, MRL (Noh, Park, Lee, Ham, 2023, "RankMixup:
    Ranking-Based Mixup Training for Network Calibration", ICCV): cross-entropy on the raw samples,
    plus a margin ranking term asking that a mixup-augmented sample be scored lower than the raw
    sample it was mixed from (instead of supervising the mix with the mixture of labels).

    .. math:: \ell_i = \mathrm{CE}(z_i, y_i) + \frac{\alpha}{M} \sum_{m=1}^{M} \mathbb{1}_{im}\,
              \big[s(\tilde z_{im}) - s(z_i) + m\big]_+

    ``s`` is the largest logit (``score='logit'``, the official code; margin 2 for CIFAR, 1 for
    Tiny-ImageNet) or the largest softmax probability (``score='confidence'``, the paper's wording
    and the official code's alternative; the margin is then a probability gap). ``𝟙_im`` leaves out
    the mixes whose soft label is one-hot (two samples of one class, or λ ∈ {0, 1}), as the official
    ``self_mixup_mask``. Difference from the official code: its mask multiplies the [N, 1] hinge
    terms as a [N] row vector (an N x N broadcast: the mean of the mask times the mean of the hinges);
    here each mix's mask multiplies its own hinge term; both agree when no mix is masked
    (tests/losses/test_calibration.py). The mixes and their labels are inputs: draw them in the
    training loop (the official code mixes the input images with λ ~ Beta(2, 2) on CIFAR, one mix
    per sample for MRL).

    {args}

    {usage}

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("rankmixup_mrl", margin=1.0)
        >>> z, y = torch.tensor([[3.0, 0.0]]), torch.tensor([0])
        >>> round(float(crit(z, y, torch.tensor([[2.5, 0.0]]), torch.tensor([[0.6, 0.4]])) - la.functional.cross_entropy(z, y)), 4)
        0.05
    """


@register(
    "rankmixup_mndcg",
    aliases=("mndcg", "m_ndcg"),
    family="calibration",
    kind="classification",
    catalogue="C9",
    formula="l_i = CE(z_i, y_i) + α (1 - M-NDCG_i),  M-NDCG: DCG of (raw, mixed) confidences over IDCG of (1, λ's)",
    paper=RANKMIXUP_PAPER,
    code="cvlab-yonsei/RankMixup",
)
@fill_doc(usage=_MIXUP_USAGE)
class RankMixupMNDCGLoss(FunctionalLoss, function=LF.rankmixup_mndcg):
    r"""RankMixup's M-NDCG loss (Noh, Park, Lee, Ham, 2023, "RankMixup: Ranking-Based Mixup
    Training for Network Calibration", ICCV): the confidences of a raw sample and of its M mixes
    should be ordered as their mixing coefficients, scored with a normalised DCG.

    .. math:: \ell_i = \mathrm{CE}(z_i, y_i) + \alpha\,(1 - \mathrm{NDCG}_i),\qquad
              \mathrm{DCG}_i = \sum_{k=1}^{M+1} \frac{c_{ik}}{\log_2(k + 1)},\quad
              \mathrm{IDCG}_i = \sum_{k=1}^{M+1} \frac{\lambda_{ik}}{\log_2(k + 1)}

    Position 1 is the raw sample (confidence ``max_k p_ik``, coefficient 1), then the mixes in
    descending order of their coefficient ``λ_im = max_k t̃_imk`` (a stable sort, so equal
    coefficients keep their input order) with confidences ``max_k softmax(z̃_im)_k``.
    ``NDCG = DCG / IDCG`` where that is below 1, else ``IDCG / DCG`` (the official code's rule, so
    1 is the best value either way). The official configuration uses 3 mixes per sample and
    α = 0.1.

    {args}

    {usage}

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("rankmixup_mndcg")
        >>> z, y = torch.zeros(1, 2), torch.tensor([0])
        >>> round(float(crit(z, y, torch.zeros(1, 2), torch.tensor([[0.5, 0.5]])) - la.functional.cross_entropy(z, y)), 4)
        0.038
    """
