"""AUC objectives (catalogue rows H1, H2, D5, G12): pairwise surrogates, the MW loss, AUC-M,
compositional AUC and multi-label AUC-M.

The binary losses take ``scores`` [N] (probabilities in (0, 1): ``torch.sigmoid`` of the
model's output, as LibAUC feeds them; no sigmoid is applied inside) and ``target`` [N] of 0/1
labels (int64, bool or float). AUC-M and compositional AUC hold the learnable ``a``, ``b``
(class score means) and ``alpha`` (the dual variable) as ``nn.Parameter``; train them with
:class:`lossatlas.optim.PESG` / :class:`lossatlas.optim.PDSCA`, which take the loss module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .. import functional as LF
from .._docs import fill_doc
from .._spec import FunctionSpec, fill_args, fresh, spec_of
from ..functional.auc import LIBAUC, compositional_phase
from ..registry import Paper, register
from ._base import FunctionalLoss, Loss

__all__ = ["PairwiseAUCLoss", "MWLoss", "AUCMLoss", "CompositionalAUCLoss", "MultiLabelAUCMLoss"]

LIBAUC_PAPER = Paper("Z. Yuan, D. Zhu, Z.-H. Qiu, G. Li, X. Wang, T. Yang",
                     "LibAUC: A Deep Learning Library for X-Risk Optimization", "KDD", 2023, "2306.03065")
AUCM_PAPER = Paper("Z. Yuan, Y. Yan, M. Sonka, T. Yang", "Large-scale Robust Deep AUC Maximization: A New Surrogate "
                   "Loss and Empirical Studies on Medical Image Classification", "ICCV", 2021, "2012.03173")
COMPOSITIONAL_PAPER = Paper("Z. Yuan, Z. Guo, N. Chawla, T. Yang", "Compositional Training for End-to-End Deep AUC "
                            "Maximization", "ICLR", 2022)
MW_PAPER = Paper("N. Sheikholeslami, E. Hosseini, P. Bechard, S. Daruru, S. Rajeswar",
                 "Optimizing What Matters: AUC-Driven Learning for Robust Neural Retrieval", "arXiv", 2025, "2510.00137")


# ----------------------------------------------------------------------------- H1 / G12
@register(
    "pairwise_auc",
    aliases=("pairwise_auc_loss", "auc_pairwise"),
    family="auc",
    kind="binary",
    catalogue="H1",
    formula="L = 1/(n+ n-) Σ_{y_i=1} Σ_{y_j=0} ℓ(s_i - s_j); ℓ = squared_hinge max(m-t,0)², squared (m-t)², "
            "hinge max(m-t,0), logistic log(1+e^{-st}), exponential e^{-st}, barrier_hinge",
    paper=LIBAUC_PAPER,
    code=f"{LIBAUC}::PairwiseAUCLoss; libauc/losses/surrogate.py",
    notes="Default surrogate 'logistic' (LibAUC's code; its docstring says squared_hinge). barrier_hinge reads "
          "margin and scale (LibAUC hparam=(margin, scale)). 'exponential' is not in LibAUC.",
)
class PairwiseAUCLoss(FunctionalLoss, function=LF.pairwise_auc):
    r"""Pairwise AUC surrogate loss: the mean surrogate of the 0/1 loss over every
    (positive, negative) pair of the batch.

    .. math:: L = \frac{1}{n_+ n_-}\sum_{i:\,y_i=1}\ \sum_{j:\,y_j=0} \ell(s_i - s_j)

    One minus the AUC is the same mean of :math:`\mathbb 1[s_i - s_j \le 0]`; ``ℓ`` replaces
    it with ``'squared_hinge'`` :math:`\max(m-t,0)^2`, ``'squared'`` :math:`(m-t)^2`,
    ``'hinge'`` :math:`\max(m-t,0)`, ``'logistic'`` :math:`\log(1+e^{-st})` (the
    Mann-Whitney / RankNet form, :class:`MWLoss`), ``'exponential'`` :math:`e^{-st}`
    (RankBoost's; not in LibAUC) or ``'barrier_hinge'``
    :math:`\max(-s(m+t)+m,\ \max(m-t,\ s(t-m)))` (Charoenphakdee et al. 2019). As in
    LibAUC's ``PairwiseAUCLoss`` (Yuan et al. 2023, "LibAUC: A Deep Learning Library for
    X-Risk Optimization"), with LibAUC's ``surr_loss`` named ``surrogate`` and its single
    ``hparam`` split into ``margin`` and ``scale``. Defaults are LibAUC's code
    (``surr_loss='logistic'``, ``hparam=1.0``; its docstring says ``'squared_hinge'``).

    A batch needs a positive and a negative (``ValueError`` otherwise; with
    ``validate=False`` such a batch gives 0 with a zero gradient); an empty batch gives 0.
    ``reduction='none'`` returns, per row, the mean surrogate of a positive row against the
    batch's negatives (0 at negative rows); ``'mean'`` averages it over the positive rows,
    which is the mean over all pairs, and ``'sum'`` sums it. The pairs are computed densely
    (N x N), so the loss compiles without graph breaks. Under ``torch.distributed`` the pairs
    are those of the global batch (every process's batch, gathered): every process returns
    the loss of the concatenated batch and its scores get their slice of its gradient.

    {args}

    Shapes: ``scores`` [N] (or [N, 1]) of probabilities (``torch.sigmoid`` of the model's
    output; no sigmoid inside), ``target`` [N] of 0/1 labels. ``'none'``: [N].

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("pairwise_auc", surrogate="squared_hinge", margin=1.0)
        >>> round(float(crit(torch.tensor([0.9, 0.2, 0.4]), torch.tensor([1, 0, 0]))), 4)  # (0.3² + 0.5²) / 2
        0.17
    """


@register(
    "mw",
    aliases=("mw_loss", "mann_whitney"),
    family="auc",
    kind="binary",
    catalogue="G12",
    formula="L = 1/(n+ n-) Σ_{y_i=1} Σ_{y_j=0} -log σ(s·(s_i - s_j))  (BCE on score differences)",
    paper=MW_PAPER,
    code=None,
    notes="pairwise_auc with surrogate='logistic'; a [Q, D] (query, document) score matrix is one batch of Q·D scored "
          "pairs, compared globally (N² memory in the number of scored pairs).",
)
class MWLoss(FunctionalLoss, function=LF.mw):
    r"""MW loss (Sheikholeslami et al. 2025, "Optimizing What Matters: AUC-Driven Learning for
    Robust Neural Retrieval"): binary cross-entropy on the score differences of every
    (relevant, irrelevant) pair, which maximises a smooth Mann-Whitney U statistic (the AUC).

    .. math:: L = \frac{1}{n_+ n_-}\sum_{i:\,y_i=1}\ \sum_{j:\,y_j=0}
              -\log\sigma\big(s\,(s_i - s_j)\big) = \mathrm{mean}_{ij}\ \log(1 + e^{-s(s_i - s_j)})

    It upper-bounds the area over the ROC curve; unlike InfoNCE it compares the scores of
    different queries too, so the scores become comparable across queries. For a retriever
    pass the (query, document) scores with their relevance labels, either flat ([N], [N]) or
    as a [Q, D] score matrix with a [Q, D] 0/1 relevance matrix (in-batch negatives:
    ``torch.eye(Q)``); every positive is compared with every negative of the batch. The
    computation is the shared pairwise piece of :class:`PairwiseAUCLoss` (``surrogate=
    'logistic'``), dense over the scored pairs: memory grows with their number squared.
    ``scale`` = 1 is the paper's BCE on the plain difference; for cosine similarities a
    scale like a contrastive loss's 1/τ is usual. No official code was available to us: the
    definition is the paper's abstract and its Figure 2 (BCE on positive − negative score
    differences).

    A batch needs a relevant and an irrelevant pair (``ValueError`` otherwise; 0 with a zero
    gradient with ``validate=False``). ``reduction='none'`` returns, per scored pair, its
    mean term against the negatives (0 at negatives) in the input's shape; ``'mean'``
    averages over the positives (= the mean over all pairs). Under ``torch.distributed``
    the pairs are those of the global batch, as :class:`PairwiseAUCLoss`.

    {args}

    Shapes: ``scores`` [N] or [Q, D] (raw scores or similarities), ``target`` of the same
    shape with 0/1 relevance labels.

    Example:
        >>> import torch, lossatlas as la
        >>> sim = torch.tensor([[0.9, 0.1], [0.3, 0.8]])
        >>> round(float(la.create("mw")(sim, torch.eye(2))), 4)
        0.4215
    """


# ----------------------------------------------------------------------------- H2 / D5
class _MinMaxAUCLoss(Loss):
    """An AUC-M-type loss with learnable ``a``, ``b``, ``alpha`` (``nn.Parameter``, 0 at the
    start as in LibAUC): ``class X(_MinMaxAUCLoss, function=f)``. The hyper-parameters are
    ``f``'s (checked by its spec, once, at construction); ``forward`` calls ``f``'s body with
    the parameters, and :meth:`functional_kwargs` gives the keywords that make
    ``f(scores, target, **kw)`` this module's call."""

    spec: ClassVar[FunctionSpec]
    function: ClassVar[Callable[..., Tensor]]
    a: nn.Parameter
    b: nn.Parameter
    alpha: nn.Parameter
    margin: float

    def __init_subclass__(cls, function: Callable[..., Tensor] | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if function is None:
            return
        cls.spec = spec_of(function)
        cls.function = staticmethod(function)
        if cls.__doc__ and "{args}" in cls.__doc__:
            cls.__doc__ = fill_args(cls.__doc__, cls.spec)

    def _setup(self, values: dict[str, Any], shape: tuple[int, ...]) -> None:
        values = self.spec.check_all(values)
        Loss.__init__(self, values.pop("reduction"), values.pop("validate"))
        for name, value in values.items():
            setattr(self, name, value)
        self.a = nn.Parameter(torch.zeros(shape))
        self.b = nn.Parameter(torch.zeros(shape))
        self.alpha = nn.Parameter(torch.zeros(shape))

    def hparams(self) -> dict[str, Any]:
        """The hyper-parameters as the function takes them (``reduction`` and ``validate`` included)."""
        return {name: getattr(self, name) for name in self.spec.hparams}

    def functional_kwargs(self) -> dict[str, Any]:
        """``a``, ``b``, ``alpha`` (this module's parameters) and the hyper-parameters."""
        return {"a": self.a, "b": self.b, "alpha": self.alpha, **self.hparams()}

    def _hparams(self) -> dict[str, Any]:
        return {k: v for k, v in self.hparams().items() if k not in ("reduction", "validate")}

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        return fresh(self.spec.function(scores, target, **self.functional_kwargs()))


_AUCM = spec_of(LF.aucm).defaults
_COMP = spec_of(LF.compositional_auc).defaults
_MLAUCM = spec_of(LF.multilabel_aucm).defaults

_AUCM_FORMULA = r"""
    .. math::
        \min_{\mathbf w, a, b}\ \max_{\alpha \ge 0}\ \mathbb E\big[(1-p)(s-a)^2\,\mathbb 1[y=1]
        + p\,(s-b)^2\,\mathbb 1[y=0]
        + 2\alpha\big(p(1-p)m + p\,s\,\mathbb 1[y=0] - (1-p)\,s\,\mathbb 1[y=1]\big)
        - p(1-p)\alpha^2\big]

    (``version='v1'``, the paper's; ``p`` the class prior, ``s`` the score) or, without the
    prior (``version='v2'``),

    .. math::
        \mathbb E_{+}[(s-a)^2] + \mathbb E_{-}[(s-b)^2]
        + 2\alpha\big(m + \mathbb E_{-}[s] - \mathbb E_{+}[s]\big) - \alpha^2 ."""


@register(
    "aucm",
    aliases=("aucm_loss", "auc_margin", "auc_m"),
    family="auc",
    kind="binary",
    catalogue="H2",
    formula="v1: mean_N[(1-p)(s-a)²y + p(s-b)²(1-y) + 2α(p(1-p)m + p s(1-y) - (1-p)s y)] - p(1-p)α²;  "
            "v2: mean_+(s-a)² + mean_-(s-b)² + 2α(m + mean_- s - mean_+ s) - α²",
    paper=AUCM_PAPER,
    code=f"{LIBAUC}::AUCMLoss (v2 as MultiLabelAUCMLoss computes it)",
    notes="learnable a, b, alpha (nn.Parameter); train with lossatlas.optim.PESG(model.parameters(), loss_fn=crit), "
          "which ascends on alpha. v2 is the documented formula (LibAUC's AUCMLoss v2 misplaces a parenthesis).",
)
@fill_doc(aucm_formula=_AUCM_FORMULA)
class AUCMLoss(_MinMaxAUCLoss, function=LF.aucm):
    r"""AUC-M: the min-max AUC margin loss (Yuan, Yan, Sonka, Yang 2021, "Large-scale Robust
    Deep AUC Maximization: A New Surrogate Loss and Empirical Studies on Medical Image
    Classification").

    {aucm_formula}

    ``a`` and ``b`` track the mean score of the positives and of the negatives and ``alpha``
    is the dual variable of the margin constraint; at the optimal ``a``, ``b``, ``alpha`` the
    objective is the variances of both classes' scores plus the squared hinge
    :math:`(m - (\mathbb E_+ s - \mathbb E_- s))_+^2` of the mean difference (times
    :math:`p(1-p)` in ``v1``). The three are ``nn.Parameter`` (0 at the start, as LibAUC);
    the model and ``a``, ``b`` descend and ``alpha`` ascends: use
    :class:`lossatlas.optim.PESG` (the paper's optimiser), which takes this module.

    Every expectation is a batch mean. ``imratio=None`` uses the batch's positive fraction
    as ``p`` (LibAUC's ``forward(auto=True)``, which also overrides a given imratio; here a
    number is a fixed prior). ``v2`` needs a positive and a negative in every batch
    (``ValueError``; LibAUC's note recommends its ``DualSampler`` for ``v2``), ``v1`` does
    not. ``version='v2'`` is the documented formula, as LibAUC's ``MultiLabelAUCMLoss``
    computes it: LibAUC's ``AUCMLoss(version='v2')`` misplaces a parenthesis and uses
    ``sum_neg(s)/N - mean_pos(s)`` in place of ``mean_neg(s) - mean_pos(s)``. Defaults are
    LibAUC's code (``margin=1.0``, ``version='v1'``).

    ``reduction='none'`` returns the per-sample terms whose mean is the loss (the constant
    terms spread over the rows; ``'sum'`` is N times the loss). Under ``torch.distributed``
    the batch means are those of the global batch (every process's batch, gathered): every
    process returns the loss of the concatenated batch and the gradients of ``a``, ``b``,
    ``alpha``, and its own scores get their slice of that loss's gradient (tested with 2
    gloo processes).

    {args}

    Shapes: ``scores`` [N] (or [N, 1]) of probabilities, ``target`` [N] of 0/1 labels;
    ``a``, ``b``, ``alpha`` [1]. ``la.functional.aucm(scores, target, a=, b=, alpha=, ...)``
    is the function (None = 0).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("aucm", margin=1.0)
        >>> crit(torch.sigmoid(torch.randn(8)), torch.tensor([1, 0, 0, 1, 0, 0, 0, 0])).ndim
        0
    """

    def __init__(self, margin: float = _AUCM["margin"], imratio: float | None = _AUCM["imratio"],
                 version: str = _AUCM["version"], reduction: str = _AUCM["reduction"],
                 validate: bool = _AUCM["validate"]) -> None:
        self._setup({"margin": margin, "imratio": imratio, "version": version, "reduction": reduction,
                     "validate": validate}, (1,))


@register(
    "compositional_auc",
    aliases=("compositional_auc_loss", "cauc"),
    family="auc",
    kind="binary",
    catalogue="H2",
    formula="call t: BCE(s, y) if t mod 2k < k, else AUC-M(s, y; a, b, α)  (the objective L_AUC(w - η ∇L_CE(w)) "
            "with PDSCA)",
    paper=COMPOSITIONAL_PAPER,
    code=f"{LIBAUC}::CompositionalAUCLoss",
    notes="the call counter is module state (state_dict); train with lossatlas.optim.PDSCA(model.parameters(), "
          "loss_fn=crit), whose CE steps are the inner gradient steps.",
)
class CompositionalAUCLoss(_MinMaxAUCLoss, function=LF.compositional_auc):
    r"""Compositional AUC loss (Yuan, Guo, Chawla, Yang 2022, "Compositional Training for
    End-to-End Deep AUC Maximization"): the AUC-M objective at the point reached by inner
    gradient steps on cross-entropy,

    .. math:: \min_{\mathbf v}\ \max_{\alpha}\ L_{\mathrm{AUC}}\big(\mathbf w - \eta_0 \nabla
              L_{\mathrm{CE}}(\mathbf w), a, b, \alpha\big),

    trained with :class:`lossatlas.optim.PDSCA`. As LibAUC's ``CompositionalAUCLoss`` the
    module alternates its objective: calls ``t = 0, 1, ...`` with ``t mod 2k < k`` return the
    mean binary cross-entropy of the scores (PDSCA then takes an inner step), the others the
    AUC-M loss of :class:`AUCMLoss` (same ``a``, ``b``, ``alpha``, ``margin``, ``imratio``,
    ``version``; PDSCA then takes the outer primal-dual step). ``k=1``: CE, AUC, CE, AUC, ...

    The call counter :attr:`step` is in ``state_dict`` (a resumed run continues the
    schedule); :attr:`phase` names the next call's objective and :attr:`last_phase` the last
    one's (PDSCA reads it). ``la.functional.compositional_auc(..., step=t)`` computes call
    ``t``. Scores must be probabilities in [0, 1] (the CE steps need them). ``'v2'`` is the
    documented formula (LibAUC's v2 misplaces the parenthesis of the negatives' mean, as its
    ``AUCMLoss`` v2). Defaults are LibAUC's code (``margin=1.0``, ``k=1``,
    ``version='v1'``). Under ``torch.distributed`` both objectives are means over the
    global batch, as :class:`AUCMLoss`.

    {args}

    Shapes: ``scores`` [N] (or [N, 1]) of probabilities, ``target`` [N] of 0/1 labels.

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("compositional_auc", k=1)
        >>> crit(torch.sigmoid(torch.randn(8)), torch.tensor([1, 0, 0, 1, 0, 0, 0, 0])).ndim, crit.last_phase
        (0, 'ce')
    """

    k: int

    def __init__(self, margin: float = _COMP["margin"], k: int = _COMP["k"], imratio: float | None = _COMP["imratio"],
                 version: str = _COMP["version"], reduction: str = _COMP["reduction"],
                 validate: bool = _COMP["validate"]) -> None:
        self._setup({"margin": margin, "k": k, "imratio": imratio, "version": version, "reduction": reduction,
                     "validate": validate}, (1,))
        self.step = 0

    @property
    def phase(self) -> str:
        """The objective of the next call: ``'ce'`` (cross-entropy) or ``'auc'`` (AUC-M)."""
        return compositional_phase(self.step, self.k)

    @property
    def last_phase(self) -> str | None:
        """The objective of the last call (None before the first)."""
        return None if self.step == 0 else compositional_phase(self.step - 1, self.k)

    def functional_kwargs(self) -> dict[str, Any]:
        """``a``, ``b``, ``alpha``, the next call's ``step`` (mod 2k: the schedule's period) and
        the hyper-parameters."""
        return {**super().functional_kwargs(), "step": self.step % (2 * self.k)}

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        out = super().forward(scores, target)
        self.step += 1
        return out

    def reset(self) -> None:
        """Restart the schedule (the next call is a cross-entropy call)."""
        self.step = 0

    def get_extra_state(self) -> dict[str, int]:
        return {"step": self.step}

    def set_extra_state(self, state: Any) -> None:
        self.step = int(state["step"])

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "step": self.step}


@register(
    "multilabel_aucm",
    aliases=("multilabel_aucm_loss", "mauc_m", "maucm"),
    family="auc",
    kind="multilabel",
    catalogue="D5",
    formula="(1/L) Σ_l AUC-M(s[:, l], y[:, l]; a_l, b_l, α_l)  (v1 with each label's prior p_l, or v2)",
    paper=LIBAUC_PAPER,
    code=f"{LIBAUC}::MultiLabelAUCMLoss (mAUCMLoss)",
    notes="a, b, alpha are nn.Parameters of shape [num_labels] (LibAUC keeps plain tensors outside state_dict). "
          "v1 uses margin (LibAUC's v1 drops it, i.e. uses 1: equal at the default margin=1).",
)
class MultiLabelAUCMLoss(_MinMaxAUCLoss, function=LF.multilabel_aucm):
    r"""Multi-label AUC-M (LibAUC's ``MultiLabelAUCMLoss``; Yuan et al. 2023, "LibAUC: A Deep
    Learning Library for X-Risk Optimization"): the :class:`AUCMLoss` of each label column
    with its own ``a[l]``, ``b[l]``, ``alpha[l]``, averaged over the labels (a macro-AUC
    surrogate).

    .. math:: L = \frac{1}{L}\sum_{l=1}^{L} \mathrm{AUCM}\big(s_{:,l},\ y_{:,l};\ a_l, b_l, \alpha_l\big)

    ``version='v1'`` uses each label's prior ``p_l`` (``imratio``: one number, one per label,
    or None for each label's batch positive fraction) and does not need every label to have
    positives in the batch; ``'v2'`` needs a positive and a negative in every label column
    (``ValueError``). Difference from LibAUC: its v1 drops ``margin`` (uses 1); here ``margin``
    acts in both versions, as in :class:`AUCMLoss` (the two agree at the default 1.0). The
    parameters are ``nn.Parameter`` [num_labels] (in ``state_dict``; LibAUC keeps plain
    tensors outside it); :class:`lossatlas.optim.PESG` trains them. Defaults are LibAUC's code
    (``margin=1.0``, ``version='v1'``; ``num_labels`` is required here, LibAUC's 10 is its
    datasets'). ``reduction='none'`` returns the [N, L] per-sample terms (their mean is the
    loss). Under ``torch.distributed`` the batch means are global, as :class:`AUCMLoss`.

    {args}

    Shapes: ``scores`` [N, L] of probabilities, ``target`` [N, L] multi-hot 0/1.

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("multilabel_aucm", num_labels=3)
        >>> crit(torch.rand(6, 3), (torch.arange(18).view(6, 3) % 4 == 0).long()).ndim
        0
    """

    num_labels: int

    def __init__(self, num_labels: int, margin: float = _MLAUCM["margin"],
                 imratio: float | Sequence[float] | None = _MLAUCM["imratio"], version: str = _MLAUCM["version"],
                 reduction: str = _MLAUCM["reduction"], validate: bool = _MLAUCM["validate"]) -> None:
        self._setup({"num_labels": num_labels, "margin": margin, "imratio": imratio, "version": version,
                     "reduction": reduction, "validate": validate}, (num_labels,))
