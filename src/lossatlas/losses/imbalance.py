"""Long-tailed classification losses (catalogue rows A1, A2, A4, A6, A7, A8).

Class re-weighting (A3 effective number, A5 DRW) lives in :mod:`lossatlas.weighting` and
composes with every loss here through ``weight=`` or ``reduction="none"``.
"""

from __future__ import annotations

from torch import Tensor

from .. import functional as LF
from .._docs import fill_doc
from ..registry import Paper, register
from ._base import FunctionalLoss

__all__ = [
    "CrossEntropyLoss",
    "FocalLoss",
    "SigmoidFocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "BalancedSoftmaxLoss",
    "VSLoss",
    "GumbelLoss",
]

FOCAL_PAPER = Paper("T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollár", "Focal Loss for Dense Object Detection", "ICCV", 2017, "1708.02002")
LDAM_PAPER = Paper("K. Cao, C. Wei, A. Gaidon, N. Arechiga, T. Ma", "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss", "NeurIPS", 2019, "1906.07413")
LA_PAPER = Paper("A. K. Menon, S. Jayasumana, A. S. Rawat, H. Jain, A. Veit, S. Kumar", "Long-tail learning via logit adjustment", "ICLR", 2021, "2007.07314")
BS_PAPER = Paper("J. Ren, C. Yu, S. Sheng, X. Ma, H. Zhao, S. Yi, H. Li", "Balanced Meta-Softmax for Long-Tailed Visual Recognition", "NeurIPS", 2020, "2007.10740")
VS_PAPER = Paper("G. R. Kini, O. Paraskevas, S. Oymak, C. Thrampoulidis", "Label-Imbalanced and Group-Sensitive Classification under Overparameterization", "NeurIPS", 2021, "2103.01550")
GOL_PAPER = Paper("K. P. Alexandridis, J. Deng, A. Nguyen, S. Luo", "Long-tailed Instance Segmentation using Gumbel "
                  "Optimized Loss", "ECCV", 2022, "2207.10936")
LS_PAPER = Paper("C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens, Z. Wojna", "Rethinking the Inception Architecture for Computer Vision", "CVPR", 2016, "1512.00567")


#: The layouts every softmax loss of this family takes beside [N, C], as ``F.cross_entropy``.
_KD_SHAPES = """\
Also ``[N, C, d1, ..., dk]`` logits with ``[N, d1, ..., dk]`` targets (a loss per position:
segmentation, tokens; ``reduction='none'`` returns ``[N, d1, ..., dk]``, ``'mean'``
averages every position) and an unbatched ``[C]`` with a 0-dim target, as ``F.cross_entropy``."""


def _prior_tail(create_args: str, soft: bool = True) -> str:
    """The shapes line and runnable example the class-count losses share, for their
    ``{shapes_example}`` docstring line (``la.create(create_args)``); ``soft``: the loss also
    takes probability targets."""
    soft_text = " or class probabilities [N, C] (soft labels, e.g. mixup; the adjusted logits' cross-entropy)" if soft else ""
    return f"""\
Shapes: ``logits`` [N, C]; ``target`` int64 [N]{soft_text}.
{_KD_SHAPES}

Example:
    >>> import torch, lossatlas as la
    >>> crit = la.create({create_args})
    >>> crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 2])).ndim
    0
"""


@register(
    "cross_entropy",
    aliases=("ce", "softmax_ce"),
    family="imbalance",
    kind="classification",
    catalogue="A1",
    formula="l_i = -Σ_j t_ij log softmax(z_i)_j, t = (1-ε)·onehot(y) + ε/C; weighted mean Σ w_{y_i} l_i / Σ w_{y_i}",
    paper=LS_PAPER,
    code="torch.nn.functional.cross_entropy",
)
@fill_doc(kd_shapes=_KD_SHAPES)
class CrossEntropyLoss(FunctionalLoss, function=LF.cross_entropy):
    r"""Cross-entropy with class weights and label smoothing, exactly as ``torch.nn.CrossEntropyLoss``.

    .. math:: \ell_i = -\sum_j t_{ij}\,\log \operatorname{softmax}(z_i)_j,\qquad
              t_i = (1-\varepsilon)\,e_{y_i} + \varepsilon / C

    The baseline every other classification loss is compared with. Label smoothing is from
    Szegedy et al. (2016), "Rethinking the Inception Architecture for Computer Vision".
    Differences from torch (docs/differences.md lists them all): a ``"mean"`` over an empty
    or all-ignored batch is 0 (with a gradient), not NaN; bad values (NaN/+inf logits, an
    out-of-range target) raise ``ValueError``. A ``-inf`` logit is a masked class; with label
    smoothing, whose target gives it ε/C, the loss is +inf as in torch (gradient finite).

    {args}

    Shapes: ``logits`` [N, C]; ``target`` int64 [N] or class probabilities [N, C] (in every
    layout, probability targets have the logits' shape).
    {kd_shapes}

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("cross_entropy", label_smoothing=0.1)
        >>> crit(torch.randn(8, 5), torch.randint(0, 5, (8,))).shape
        torch.Size([])
        >>> seg = la.create("cross_entropy", reduction="none")  # [N, C, H, W] -> [N, H, W]
        >>> seg(torch.randn(2, 5, 4, 4), torch.randint(0, 5, (2, 4, 4))).shape
        torch.Size([2, 4, 4])
    """


@register(
    "focal",
    aliases=("focal_loss", "softmax_focal"),
    family="imbalance",
    kind="classification",
    catalogue="A2",
    formula="l_i = -α_{y_i} (1 - p_{i,y_i})^γ log p_{i,y_i},  p = softmax(z)",
    paper=FOCAL_PAPER,
    code="kaidic/LDAM-DRW losses.py::FocalLoss (softmax form); facebookresearch/Detectron (sigmoid form)",
)
@fill_doc(kd_shapes=_KD_SHAPES)
class FocalLoss(FunctionalLoss, function=LF.focal):
    r"""Softmax focal loss (Lin et al., 2017, "Focal Loss for Dense Object Detection").

    .. math:: \ell_i = -\alpha_{y_i}\,(1 - p_{i,y_i})^{\gamma}\,\log p_{i,y_i},\qquad p_i = \operatorname{softmax}(z_i)

    Down-weights well-classified examples. γ = 0 is cross-entropy. Default γ = 2 is the
    paper's; the gradient flows through the modulating factor, as in the paper and
    kaidic/LDAM-DRW's ``FocalLoss`` (parity case ``cls_focal``).

    {args}

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].
    {kd_shapes}

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("focal", gamma=2.0)
        >>> float(crit(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]))) > 0
        True
    """


@register(
    "sigmoid_focal",
    aliases=("sigmoid_focal_loss",),
    family="imbalance",
    kind="multilabel",
    catalogue="A2",
    formula="l_ic = α_t (1 - p_t)^γ BCE(z_ic, y_ic),  p_t = σ(z)·y + (1-σ(z))(1-y),  α_t = α y + (1-α)(1-y)",
    paper=FOCAL_PAPER,
    code="pytorch/vision torchvision/ops/focal_loss.py::sigmoid_focal_loss",
)
class SigmoidFocalLoss(FunctionalLoss, function=LF.sigmoid_focal):
    r"""Sigmoid focal loss for binary / multi-label targets (Lin et al., 2017).

    .. math:: \ell_{ic} = \alpha_t\,(1-p_t)^{\gamma}\,\mathrm{BCE}(z_{ic}, y_{ic}),\quad
              p_t = \sigma(z)\,y + (1-\sigma(z))(1-y),\quad \alpha_t = \alpha y + (1-\alpha)(1-y)

    Same values and gradients as ``torchvision.ops.sigmoid_focal_loss`` (parity case
    ``ml_sigmoid_focal``). ``alpha=None`` (or negative) disables the α balance.
    Elementwise, so any shape works as in torchvision ([N, C], [N], [N, C, H, W], ...):
    ``reduction="mean"`` averages over all elements; ``"none"`` returns the input's shape.
    An optional call argument ``mask`` (broadcastable to the logits' shape, 1 = annotated)
    leaves unannotated labels out; ``"mean"`` is then over the counted elements.

    Shapes: ``logits`` [N, C] (or any shape); ``target`` float multi-hot (or soft) in [0, 1],
    the logits' shape.

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("sigmoid_focal")
        >>> crit(torch.randn(4, 3), torch.ones(4, 3)).ndim
        0
    """


@register(
    "ldam",
    aliases=("ldam_loss",),
    family="imbalance",
    kind="classification",
    catalogue="A4",
    formula="l_i = CE(s·(z_i - m_{y_i} e_{y_i}), y_i),  m_j = max_margin · n_j^{-1/4} / max_k n_k^{-1/4}",
    paper=LDAM_PAPER,
    code="kaidic/LDAM-DRW losses.py::LDAMLoss",
    notes="scale=30 assumes cosine logits in [-1, 1]: use lossatlas.heads.NormedLinear as the classifier (a plain "
          "nn.Linear head can diverge to NaN; validate=True warns once on logits with |z| > 1.01). "
          "LDAM-DRW = this loss + the 'drw' weighting: drw.attach(crit) keeps the loss's weight live across set_epoch "
          "(or compose with reduction='none' and la.weighting.apply); weight=drw() is a snapshot of one epoch.",
)
@fill_doc(shapes_example=_prior_tail('"ldam", class_counts=[500, 50, 5]', soft=False))
class LDAMLoss(FunctionalLoss, function=LF.ldam):
    r"""Label-distribution-aware margin loss (Cao et al., 2019, "Learning Imbalanced Datasets
    with Label-Distribution-Aware Margin Loss").

    .. math:: \ell_i = \mathrm{CE}\big(s\,(z_i - m_{y_i} e_{y_i}),\ y_i\big),\qquad
              m_j = \texttt{max\_margin}\cdot \frac{n_j^{-1/4}}{\max_k n_k^{-1/4}}

    Rare classes get larger margins. Defaults ``max_margin=0.5``, ``scale=30`` are those of
    kaidic/LDAM-DRW (parity cases ``cls_ldam``, ``cls_ldam_drw``). The logits are used as
    given, and ``scale=30`` assumes they are cosine similarities in [-1, 1], the output of
    the official code's normalised classifier: make :class:`lossatlas.heads.NormedLinear`
    the model's last layer. On a plain ``nn.Linear`` head the scaled logits grow without
    bound and training can diverge to NaN; with ``validate=True`` and ``scale > 1`` the
    loss warns once per process when it sees ``max |z| > 1.01`` (for plain logits use
    ``scale=1``). With zero margins and ``scale=1`` this is cross-entropy.

    {args}

    {shapes_example}
    """


@register(
    "logit_adjusted",
    aliases=("logit_adjustment", "la_loss", "logit_adjusted_loss"),
    family="imbalance",
    kind="classification",
    catalogue="A6",
    formula="l_i = CE(z_i + τ log π, y_i),  π_j = n_j / Σ_k n_k;  post-hoc: argmax_j (z_j - τ log π_j)",
    paper=LA_PAPER,
    code="google-research/google-research logit_adjustment/main.py",
    notes="τ=1 equals balanced_softmax (log π and log n differ by a per-row constant). Post-hoc form: lossatlas.functional.posthoc_logit_adjustment.",
)
@fill_doc(shapes_example=_prior_tail('"logit_adjusted", class_counts=[500, 50, 5], tau=1.0'))
class LogitAdjustedLoss(FunctionalLoss, function=LF.logit_adjusted):
    r"""Logit-adjusted softmax cross-entropy (Menon et al., 2021, "Long-tail learning via
    logit adjustment").

    .. math:: \ell_i = \mathrm{CE}(z_i + \tau \log \pi,\ y_i),\qquad \pi_j = n_j / \textstyle\sum_k n_k

    At test time predict with the raw logits (the adjustment is training-only). The post-hoc
    variant trains with plain CE and predicts ``argmax(z − τ log π)``: see :meth:`adjust`
    and :func:`lossatlas.functional.posthoc_logit_adjustment`. Default τ = 1 (paper). The
    official TF code adds 1e-12 inside the log; that is omitted (< 1e-8 relative).

    {args}

    {shapes_example}
    """

    tau: float
    class_counts: Tensor

    def adjust(self, logits: Tensor) -> Tensor:
        """Post-hoc adjusted logits ``z − τ log π`` for prediction."""
        return LF.posthoc_logit_adjustment(logits, self.class_counts, tau=self.tau)


@register(
    "balanced_softmax",
    aliases=("balanced_softmax_loss", "bayias"),
    family="imbalance",
    kind="classification",
    catalogue="A7",
    formula="l_i = CE(z_i + log n, y_i)",
    paper=BS_PAPER,
    code="jiawei-ren/BalancedMetaSoftmax loss/BalancedSoftmaxLoss.py",
    notes="Same loss as logit_adjusted with τ=1 and as UniMix's Bayias compensation.",
)
@fill_doc(shapes_example=_prior_tail('"balanced_softmax", class_counts=[500, 50, 5]'))
class BalancedSoftmaxLoss(FunctionalLoss, function=LF.balanced_softmax):
    r"""Balanced softmax (Ren et al., 2020, "Balanced Meta-Softmax for Long-Tailed Visual
    Recognition"); also the Bayias compensation of UniMix.

    .. math:: \ell_i = \mathrm{CE}(z_i + \log n,\ y_i)

    No hyper-parameter. Identical to :class:`LogitAdjustedLoss` with τ = 1 (log n and log π
    differ by a constant per row). Uniform counts give cross-entropy. Parity case
    ``cls_balanced_softmax``.

    {args}

    {shapes_example}
    """


@register(
    "vs",
    aliases=("vs_loss", "vector_scaling"),
    family="imbalance",
    kind="classification",
    catalogue="A8",
    formula="l_i = CE(z_i / Δ + ι, y_i),  Δ_j = (n_max / n_j)^γ,  ι_j = τ log π_j",
    paper=VS_PAPER,
    code="orparask/VS-Loss loss.py::VSLoss",
)
@fill_doc(shapes_example=_prior_tail('"vs", class_counts=[500, 50, 5], gamma=0.2, tau=1.2'))
class VSLoss(FunctionalLoss, function=LF.vs):
    r"""Vector-scaling loss (Kini et al., 2021, "Label-Imbalanced and Group-Sensitive
    Classification under Overparameterization").

    .. math:: \ell_i = \mathrm{CE}(z_i \odot \Delta^{-1} + \iota,\ y_i),\qquad
              \Delta_j = (n_{\max}/n_j)^{\gamma},\quad \iota_j = \tau \log \pi_j

    A multiplicative (CDT-like) and an additive (logit-adjustment) correction together.
    Rare classes' logits are divided by Δ_j ≥ 1, i.e. multiplied by the paper's
    ``(n_j/n_max)^γ``. γ = τ = 0 is cross-entropy. Defaults γ = 0.3, τ = 1 are
    orparask/VS-Loss's class defaults (parity case ``cls_vs``).

    {args}

    {shapes_example}
    """


@register(
    "gumbel",
    aliases=("gol", "gumbel_optimised_loss", "gumbel_optimized_loss", "gumbel_cross_entropy"),
    family="imbalance",
    kind="classification",
    catalogue="A12",
    formula="l_i = Σ_j BCE(G(clamp(z_ij)), 1[j = y_i]),  G(z) = exp(-exp(-z)) (Gumbel CDF), clamp to [-4, 10]",
    paper=GOL_PAPER,
    code="kostas1515/GOL mmdet/models/losses/droploss.py",
)
class GumbelLoss(FunctionalLoss, function=LF.gumbel):
    r"""Gumbel optimised loss, GOL (Alexandridis, Deng, Nguyen, Luo, 2022, "Long-tailed
    Instance Segmentation using Gumbel Optimized Loss", ECCV).

    .. math:: \ell_i = \sum_{j=1}^{C} \mathrm{BCE}\big(G(\tilde z_{ij}),\ \mathbb 1[j = y_i]\big)
              = e^{-\tilde z_{i y_i}} - \sum_{j \ne y_i} \log\big(1 - e^{-e^{-\tilde z_{ij}}}\big),
              \qquad G(z) = e^{-e^{-z}},\ \tilde z = \mathrm{clamp}(z, -4, 10)

    Each class gets an independent probability from the Gumbel CDF (the activation of a
    Gumbel-distributed latent, asymmetric where the sigmoid is symmetric) instead of a softmax:
    rare classes, whose scores sit in the Gumbel tail, are penalised less for low scores. The
    loss is summed over classes and averaged over samples, as the official
    ``droploss.py`` (``use_classif='gumbel'``: ``sum(BCE) / n_i``); its clamp of the logits to
    [-4, 10] (no gradient outside) is the default (``clamp_min=None, clamp_max=None`` removes
    it; the target term ``e^{-z}`` then overflows for ``z ≪ 0``). The official detector's
    DropLoss / normalised-mask weighting and the background column are detection parts, not
    this loss. Predict with the Gumbel probabilities ``exp(−e^{−z})`` (same argmax as ``z``).

    {args}

    Shapes: ``logits`` [N, C]; ``target`` int64 [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("gumbel")
        >>> round(float(crit(torch.zeros(1, 2), torch.tensor([0]))), 4)  # e^0 − log(1 − e^{−1})
        1.4587
    """
