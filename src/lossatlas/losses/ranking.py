"""Stochastic AP, partial-AUC and NDCG objectives with per-sample state (catalogue rows H3, D5).

LibAUC's X-risk losses whose inner expectation over the training set is tracked, for each
training sample, by a moving average indexed by the sample's dataset index. Each module keeps
that state in buffers (:class:`~lossatlas.losses._state.PerSampleState`): it is in
``state_dict`` (a run resumed from a checkpoint follows the same trajectory), moves with
``.to(device)`` and follows ``.double()``; :meth:`reset` starts it again. The functions in
:mod:`lossatlas.functional.ranking` are the definitions; a module passes its state to them,
and ``functional_kwargs()`` returns copies of it (``la.functional.<id>(*inputs,
**crit.functional_kwargs(), index=...)`` equals ``crit(*inputs, index=...)`` and leaves the
module unchanged).

**Distributed.** Under ``torch.distributed`` (an initialised process group of more than one
process) every call gathers the batch of all processes (:func:`~lossatlas.losses._state.gather_batch`)
and updates the state with the global batch, so every process holds the same table and returns
the loss of the concatenated batch; ``"mean"``/``"sum"`` follow
:func:`lossatlas.distributed.replicated_loss` (the gradient that reaches a process's own rows
is the single-process gradient of that loss), ``"none"`` returns this process's rows. As with
every lossatlas loss under DDP, multiply by the world size if DDP's gradient averaging should
give the global loss's gradient.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from .. import functional as LF
from .._docs import fill_doc
from .._spec import FunctionSpec, fresh, spec_of
from ..registry import Paper, register
from ._base import Loss
from ._state import PerSampleState

__all__ = [
    "APSoapLoss",
    "PAUCCVaRLoss",
    "PAUCDROLoss",
    "TPAUCKLLoss",
    "MultiLabelAPLoss",
    "MultiLabelPAUCLoss",
    "NDCGLoss",
    "ListwiseCELoss",
]

SOAP_PAPER = Paper(
    authors="Qi, Luo, Xu, Ji & Yang",
    title="Stochastic Optimization of Areas Under Precision-Recall Curves with Provable Convergence",
    venue="NeurIPS",
    year=2021,
    arxiv="2104.08736",
)
DRO_PAPER = Paper(
    authors="Zhu, Li, Wang, Wu & Yang",
    title="When AUC meets DRO: Optimizing Partial AUC for Deep Learning with Non-Convex Convergence Guarantee",
    venue="ICML",
    year=2022,
    arxiv="2203.00176",
)
SONG_PAPER = Paper(
    authors="Qiu, Hu, Zhong, Zhang & Yang",
    title="Large-scale Stochastic Optimization of NDCG Surrogates for Deep Learning with Provable Convergence",
    venue="ICML",
    year=2022,
    arxiv="2202.12183",
)
LIBAUC_PAPER = Paper(
    authors="Yuan, Zhu, Qiu, Li, Wang & Yang",
    title="LibAUC: A Deep Learning Library for X-Risk Optimization",
    venue="KDD",
    year=2023,
    arxiv="2306.03065",
)
AUC_CODE = "Optimization-AI/LibAUC libauc/losses/auc.py"
RANKING_CODE = "Optimization-AI/LibAUC libauc/losses/ranking.py"

_SIZE_DOCS = {
    "data_len": "number of training samples (``index`` runs over ``[0, data_len)``; LibAUC ``data_len``)",
    "num_labels": "number of labels (columns of ``scores``)",
    "num_queries": "number of queries (users; ``query_index`` runs over ``[0, num_queries)``; LibAUC ``num_user``)",
}
_PAIR_SIZE = "number of relevant (query, item) pairs (``index`` runs over ``[0, data_len)``; LibAUC ``N``)"


class _StatefulLoss(Loss):
    """A loss whose function takes per-sample state as keywords: the module holds the state.

    ``class X(_StatefulLoss, function=LF.f, sizes=("data_len",))``: the constructor takes the
    ``sizes`` (positive ints that shape the state), then the function's hyper-parameters
    (same names, defaults and checks); :meth:`_build_state` registers the state and
    :meth:`state_tensors` names it as the function's keywords.
    """

    spec: ClassVar[FunctionSpec]
    function: ClassVar[Callable[..., Tensor]]
    sizes: ClassVar[tuple[str, ...]]
    size_docs: ClassVar[dict[str, str]] = {}
    _hparam_names: ClassVar[tuple[str, ...]]
    data_len: int

    def __init_subclass__(cls, function: Callable[..., Tensor] | None = None, sizes: tuple[str, ...] = (),
                          **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if function is None:
            return
        spec = spec_of(function)
        cls.spec, cls.sizes, cls._hparam_names = spec, sizes, spec.hparams
        cls.function = staticmethod(function)
        positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
        params = [inspect.Parameter("self", positional)]
        params += [inspect.Parameter(n, positional, annotation=int) for n in sizes]
        hparams = [spec.signature.parameters[n] for n in spec.hparams]
        params += [p.replace(kind=positional) for p in hparams if p.default is inspect.Parameter.empty]
        params += [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in hparams if p.default is not inspect.Parameter.empty]

        def __init__(self: _StatefulLoss, *args: Any, **kw: Any) -> None:
            _StatefulLoss._construct(self, *args, **kw)

        __init__.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        __init__.__doc__ = f"Build the loss; arguments as :func:`{function.__module__}.{function.__name__}`."
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        setattr(cls, "__init__", __init__)  # noqa: B010 - a generated constructor with the function's signature
        if cls.__doc__ and "{args}" in cls.__doc__:
            lines = ["Args:"] + [f"    {n}: {cls.size_docs.get(n, _SIZE_DOCS.get(n, n))}." for n in sizes]
            lines += spec.args_doc().split("\n")[1:]
            block = "\n".join(lines)
            out: list[str] = []
            for line in cls.__doc__.split("\n"):
                if line.strip() == "{args}":
                    indent = line[: len(line) - len(line.lstrip())]
                    out.extend(indent + row for row in block.split("\n"))
                else:
                    out.append(line)
            cls.__doc__ = "\n".join(out)

    def _construct(self, *args: Any, **kwargs: Any) -> None:
        sig = inspect.signature(type(self).__init__)
        try:
            bound = sig.bind(self, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{type(self).__name__}: {exc}") from None
        bound.apply_defaults()
        values = {n: v for n, v in bound.arguments.items() if n != "self"}
        sizes = {n: values.pop(n) for n in self.sizes}
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        values = self.spec.check_all(values)
        Loss.__init__(self, values.pop("reduction"), values.pop("validate"))
        for name, value in {**sizes, **values}.items():
            setattr(self, name, value)
        self._build_state()

    def _build_state(self) -> None:
        raise NotImplementedError

    def state_tensors(self) -> dict[str, Tensor]:
        """The state, as the function's keywords (the module's own tensors, updated in place by a call)."""
        raise NotImplementedError

    def hparams(self) -> dict[str, Any]:
        """The hyper-parameters as the function takes them."""
        return {name: getattr(self, name) for name in self._hparam_names}

    def functional_kwargs(self) -> dict[str, Any]:
        """The hyper-parameters and a *copy* of the state: the function then gives this module's
        next result (with the same call keywords) and leaves the module unchanged."""
        return {**self.hparams(), **{n: t.clone() for n, t in self.state_tensors().items()}}

    def reset(self) -> None:
        """Every sample back to its first visit."""
        for module in self.modules():
            if isinstance(module, PerSampleState):
                module.reset()
        for name, buf in self.named_buffers(recurse=False):
            with torch.no_grad():
                buf.fill_(-math.inf if name.startswith("log_") else 0.0)

    def _hparams(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in (*self.sizes, *self._hparam_names) if n not in ("reduction", "validate")}

    def forward(self, *inputs: Any, **call: Any) -> Tensor:
        clash = sorted(set(call) & set(self.state_tensors()))
        if clash:
            raise TypeError(f"{type(self).__name__} keeps its state ({', '.join(clash)}); pass only the call keywords")
        return fresh(self.spec.function(*inputs, **self.hparams(), **self.state_tensors(), **call))


def _table(data_len: int, shape: tuple[int, ...] = (), init: float = 0.0) -> PerSampleState:
    return PerSampleState(data_len, shape, init)


_AUC_CALL = """Call: ``crit(scores, target, index=index)`` with ``scores`` float [N] (or [N, 1]),
    probabilities in (0, 1) (``torch.sigmoid(model(x))``; no sigmoid is applied inside), ``target``
    0/1 [N] (int64, bool or float) and ``index`` int64 [N], the distinct dataset indices of
    *all* the batch's rows (the state is read and written at the positive rows)."""


# --------------------------------------------------------------------------------------
# H3: SOAP
# --------------------------------------------------------------------------------------
@register(
    "ap_soap",
    aliases=("soap", "ap_loss"),
    family="auc",
    kind="binary",
    catalogue="H3",
    formula="u_i^all ← (1-γ)u_i^all + γ mean_j ℓ_ij, u_i^pos ← (1-γ)u_i^pos + γ mean_j y_j ℓ_ij; "
            "L = mean_{i:y_i=1} mean_j [(u_i^pos - u_i^all y_j)/(u_i^all)^2]_sg ℓ(m, s_i - s_j)",
    paper=SOAP_PAPER,
    code=f"{AUC_CODE}::AveragePrecisionLoss",
)
@fill_doc(call=_AUC_CALL)
class APSoapLoss(_StatefulLoss, function=LF.ap_soap, sizes=("data_len",)):
    r"""SOAP, the stochastic average-precision loss (Qi, Luo, Xu, Ji & Yang, 2021, "Stochastic
    Optimization of Areas Under Precision-Recall Curves with Provable Convergence").

    AP's surrogate ``P(w) = −(1/n₊) Σ_{y_i=1} f_pos(i) / f_all(i)`` with
    ``f_all(i) = E_j ℓ(m, s_i − s_j)`` and ``f_pos(i) = E_j y_j ℓ(m, s_i − s_j)`` over the
    training set. Each positive keeps moving averages of the two inner means, updated at its
    dataset index *before* they are used (as LibAUC does):

    .. math:: u^{all}_i \leftarrow (1-\gamma)u^{all}_i + \gamma\,\tfrac1N\textstyle\sum_j \ell_{ij},\qquad
              u^{pos}_i \leftarrow (1-\gamma)u^{pos}_i + \gamma\,\tfrac1N\textstyle\sum_j y_j\ell_{ij}

    .. math:: L = \frac{1}{n_+}\sum_{y_i=1}\frac1N\sum_{j}
              \Big[\frac{u^{pos}_i - u^{all}_i\,y_j}{(u^{all}_i)^2}\Big]_{\text{sg}}\,\ell(m, s_i - s_j)

    (j runs over every batch row, i itself included; ``sg`` = stop-gradient), whose gradient
    is SOAP's estimate of ∇P. The value is not P itself: on a sample's first visit
    (γ-scaled estimates of the batch) it is 0 up to rounding, with a non-zero gradient.
    ``ℓ(m, t) = max(m − t, 0)²`` by default. Defaults are LibAUC 2.0.1's
    ``AveragePrecisionLoss`` (γ = 0.9, m = 1, squared hinge). ``"mean"`` is over the positive
    anchors (LibAUC's mean of the n₊ × N matrix), ``"sum"`` their sum, ``"none"`` the
    per-row values [N] (0 at negative rows). A batch needs a positive (ValueError otherwise).

    **State:** ``u_all``, ``u_pos`` (:class:`PerSampleState` [data_len], 0 initially).

    {args}

    {call}

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("ap_soap", data_len=100)
        >>> crit(torch.sigmoid(torch.randn(6)), torch.tensor([1, 0, 0, 1, 0, 0]), index=torch.arange(6)).ndim
        0
    """

    u_all: PerSampleState
    u_pos: PerSampleState

    def _build_state(self) -> None:
        self.u_all = _table(self.data_len)
        self.u_pos = _table(self.data_len)

    def state_tensors(self) -> dict[str, Tensor]:
        return {"u_all": self.u_all.value, "u_pos": self.u_pos.value}


# --------------------------------------------------------------------------------------
# H3: SOPA, SOPA-s, SOTA-s
# --------------------------------------------------------------------------------------
@register(
    "pauc_cvar",
    aliases=("sopa",),
    family="auc",
    kind="binary",
    catalogue="H3",
    formula="w_ij = 1[ℓ_ij > s_i] (s before the update); s_i ← s_i - η(1 - Σ_j w_ij/(β n_-)); "
            "L = mean_{i:y_i=1} Σ_{j:y_j=0} w_ij ℓ(m, s_i - s_j) / (β n_-)",
    paper=DRO_PAPER,
    code=f"{AUC_CODE}::pAUC_CVaR_Loss",
)
@fill_doc(call=_AUC_CALL)
class PAUCCVaRLoss(_StatefulLoss, function=LF.pauc_cvar, sizes=("data_len",)):
    r"""SOPA, one-way partial AUC (FPR ≤ β) through CVaR (Zhu, Li, Wang, Wu & Yang, 2022, "When
    AUC meets DRO: Optimizing Partial AUC for Deep Learning with Non-Convex Convergence
    Guarantee").

    The objective ``(1/n₊) Σ_i [s_i + (1/(β n₋)) Σ_j (ℓ(m, s_i − s_j) − s_i)₊]`` keeps a
    threshold s_i per positive, moved by a gradient step on it; the pairs above the threshold
    (read *before* the step, as LibAUC does) are the hardest negatives, the top β fraction:

    .. math:: w_{ij} = \mathbb 1[\ell_{ij} > s_i],\qquad
              s_i \leftarrow s_i - \eta\Big(1 - \frac{\sum_j w_{ij}}{\beta\,n_-}\Big),\qquad
              L = \frac1{n_+}\sum_{y_i=1}\frac{1}{\beta\,n_-}\sum_{y_j=0} w_{ij}\,\ell(m, s_i - s_j)

    Defaults are LibAUC 2.0.1's ``pAUC_CVaR_Loss`` (m = 1, β = 0.2, η = 0.1, squared
    hinge); its ``pos_len`` is unused by its code and not taken here, and n₋ is the batch's
    negative count (its ``auto=True``). ``"mean"`` is over the positive anchors, ``"sum"``
    their sum, ``"none"`` per row [N] (0 at negative rows). A batch needs a positive and a
    negative (ValueError otherwise).

    **State:** ``threshold`` (:class:`PerSampleState` [data_len], 0 initially; LibAUC ``u_pos``).

    {args}

    {call}

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("pauc_cvar", data_len=100, beta=0.3)
        >>> crit(torch.sigmoid(torch.randn(6)), torch.tensor([1, 0, 0, 1, 0, 0]), index=torch.arange(6)).ndim
        0
    """

    threshold: PerSampleState

    def _build_state(self) -> None:
        self.threshold = _table(self.data_len)

    def state_tensors(self) -> dict[str, Tensor]:
        return {"threshold": self.threshold.value}


@register(
    "pauc_dro",
    aliases=("sopa_s",),
    family="auc",
    kind="binary",
    catalogue="H3",
    formula="u_i ← (1-γ)u_i + γ mean_{j:y_j=0} e^{ℓ_ij/λ}; L = mean_{i:y_i=1} mean_{j:y_j=0} [e^{ℓ_ij/λ}/u_i]_sg ℓ(m, s_i - s_j)",
    paper=DRO_PAPER,
    code=f"{AUC_CODE}::pAUC_DRO_Loss",
)
@fill_doc(call=_AUC_CALL)
class PAUCDROLoss(_StatefulLoss, function=LF.pauc_dro, sizes=("data_len",)):
    r"""SOPA-s, one-way partial AUC through KL-DRO (Zhu, Li, Wang, Wu & Yang, 2022, "When AUC
    meets DRO: Optimizing Partial AUC for Deep Learning with Non-Convex Convergence
    Guarantee").

    The objective ``(1/n₊) Σ_i λ log E_{j∈S₋} exp(ℓ(m, s_i − s_j)/λ)`` (the worst case over
    negative distributions KL-close to uniform) is optimised with a moving average u_i of
    each positive's inner mean, written before it is used:

    .. math:: u_i \leftarrow (1-\gamma)\,u_i + \gamma\,\frac1{n_-}\sum_{y_j=0} e^{\ell_{ij}/\lambda},\qquad
              L = \frac1{n_+}\sum_{y_i=1}\frac1{n_-}\sum_{y_j=0}\Big[\frac{e^{\ell_{ij}/\lambda}}{u_i}\Big]_{\text{sg}}
              \ell(m, s_i - s_j)

    Large λ weighs all negatives alike (the pairwise AUC surrogate); small λ the hardest
    ones. The state is kept as ``log u`` (``log_u``, −inf before the first visit) and the
    weights computed as ``exp(ℓ/λ − log u)``: the same values as LibAUC's ``exp(ℓ/λ) / u``
    without its overflow of ``exp`` for ℓ/λ > 88 (float32) or > 709 (float64). Defaults are
    LibAUC 2.0.1's ``pAUC_DRO_Loss`` (γ = 0.9, m = 1, λ = 1, squared hinge). ``"mean"`` is
    over the positive anchors, ``"sum"`` their sum, ``"none"`` per row [N] (0 at negative
    rows). A batch needs a positive and a negative (ValueError otherwise).

    **State:** ``log_u`` (:class:`PerSampleState` [data_len], −inf initially).

    {args}

    {call}

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("pauc_dro", data_len=100, temperature=0.5)
        >>> crit(torch.sigmoid(torch.randn(6)), torch.tensor([1, 0, 0, 1, 0, 0]), index=torch.arange(6)).ndim
        0
    """

    log_u: PerSampleState

    def _build_state(self) -> None:
        self.log_u = _table(self.data_len, init=-math.inf)

    def state_tensors(self) -> dict[str, Tensor]:
        return {"log_u": self.log_u.value}


@register(
    "tpauc_kl",
    aliases=("sota_s",),
    family="auc",
    kind="binary",
    catalogue="H3",
    formula="u_i ← (1-γ)u_i + γ mean_{j:y_j=0} e^{ℓ_ij/λ}; w ← (1-γ')w + γ' mean_{i:y_i=1} u_i^{λ/λ'}; "
            "L = mean_{i,j} [u_i^{λ/λ'-1} e^{ℓ_ij/λ}/w]_sg ℓ(m, s_i - s_j)",
    paper=DRO_PAPER,
    code=f"{AUC_CODE}::tpAUC_KL_Loss",
)
@fill_doc(call=_AUC_CALL)
class TPAUCKLLoss(_StatefulLoss, function=LF.tpauc_kl, sizes=("data_len",)):
    r"""SOTA-s, two-way partial AUC through nested KL-DRO (Zhu, Li, Wang, Wu & Yang, 2022, "When
    AUC meets DRO: Optimizing Partial AUC for Deep Learning with Non-Convex Convergence
    Guarantee").

    The objective ``λ' log E_{i∈S₊} (E_{j∈S₋} exp(ℓ(m, s_i − s_j)/λ))^{λ/λ'}`` weighs the
    hardest negatives (temperature λ) *and* the hardest positives (temperature λ'): it
    targets the region of low FPR and high TPR. Two moving averages, written before use:

    .. math:: u_i \leftarrow (1-\gamma)u_i + \gamma\,\frac1{n_-}\sum_{y_j=0} e^{\ell_{ij}/\lambda},\qquad
              w \leftarrow (1-\gamma')\,w + \gamma'\,\frac1{n_+}\sum_{y_i=1} u_i^{\lambda/\lambda'}

    .. math:: L = \frac1{n_+}\sum_{y_i=1}\frac1{n_-}\sum_{y_j=0}
              \Big[\frac{u_i^{\lambda/\lambda'-1}\,e^{\ell_{ij}/\lambda}}{w}\Big]_{\text{sg}}\ell(m, s_i - s_j)

    u_i per positive (``log_u``), w one scalar for the dataset (``log_w``), both kept as
    logarithms (−inf before the first visit; LibAUC stores u and w and overflows where
    ``exp(ℓ/λ)`` does). Defaults are LibAUC 2.0.1's ``tpAUC_KL_Loss`` (λ = λ' = 1,
    γ = γ' = 0.9, m = 1, squared hinge); LibAUC's ``gammas=(γ, γ')`` is ``gamma``,
    ``gamma_outer`` here, its ``Lambda`` ``temperature`` and its ``tau`` ``temperature_pos``.
    Reductions as :class:`PAUCDROLoss`. A batch needs a positive and a negative.

    **State:** ``log_u`` (:class:`PerSampleState` [data_len]) and the buffer ``log_w`` (0-dim).

    {args}

    {call}

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("tpauc_kl", data_len=100)
        >>> crit(torch.sigmoid(torch.randn(6)), torch.tensor([1, 0, 0, 1, 0, 0]), index=torch.arange(6)).ndim
        0
    """

    log_u: PerSampleState
    log_w: Tensor

    def _build_state(self) -> None:
        self.log_u = _table(self.data_len, init=-math.inf)
        self.register_buffer("log_w", torch.tensor(-math.inf))

    def state_tensors(self) -> dict[str, Tensor]:
        return {"log_u": self.log_u.value, "log_w": self.log_w}


# --------------------------------------------------------------------------------------
# D5: multi-label AP and partial AUC
# --------------------------------------------------------------------------------------
_ML_CALL = """Call: ``crit(scores, target, index=index)`` with ``scores`` float [N, num_labels],
    probabilities in (0, 1) (no sigmoid inside), ``target`` 0/1 [N, num_labels] and ``index``
    int64 [N], the distinct dataset indices of the batch's rows (each label's state is read
    and written at its positive rows)."""


@register(
    "multilabel_ap",
    aliases=("map_loss", "mean_ap"),
    family="auc",
    kind="multilabel",
    catalogue="D5",
    formula="mean over labels of ap_soap on each label's column (own u_all, u_pos per label); "
            "top_k > -1: weights times σ(k - Σ_{i:y_i=1} ℓ_ij)",
    paper=LIBAUC_PAPER,
    code=f"{AUC_CODE}::meanAveragePrecisionLoss",
)
@fill_doc(call=_ML_CALL)
class MultiLabelAPLoss(_StatefulLoss, function=LF.multilabel_ap, sizes=("data_len", "num_labels")):
    r"""Multi-label SOAP, mean average precision (mAP; Yuan, Zhu, Qiu, Li, Wang & Yang, 2023,
    "LibAUC: A Deep Learning Library for X-Risk Optimization"; SOAP by Qi et al., 2021).

    :class:`APSoapLoss` on each label's column, with that label's own moving averages
    ``u_all[:, l]``, ``u_pos[:, l]``, averaged over the labels:

    .. math:: L = \frac1{L}\sum_{l}\frac1{n_+^l}\sum_{y_{il}=1}\frac1N\sum_j
              \Big[\frac{u^{pos}_{il} - u^{all}_{il}\,y_{jl}}{(u^{all}_{il})^2}\,\sigma_{jl}\Big]_{\text{sg}}
              \ell(m, s_{il} - s_{jl})

    where ``σ_jl = 1`` for plain mAP (``top_k = -1``) and, for mAP@k, LibAUC's column
    selector ``σ(k − Σ_{y_il=1} ℓ_ijl)`` (active for ``top_k > -1`` as LibAUC's code tests;
    its docstring says > 0). Defaults are LibAUC 2.0.1's ``meanAveragePrecisionLoss``
    (m = 1, γ = 0.9, top_k = -1, squared hinge). ``"mean"`` is the mean over labels of each
    label's mean over its positive anchors; ``"sum"`` the sum over every (row, label) anchor;
    ``"none"`` [N, num_labels] (0 where the target is 0). Every label needs a positive in the
    batch (ValueError otherwise, as LibAUC asserts). LibAUC's ``task_id`` (a subset of labels
    per call) is not taken.

    **State:** ``u_all``, ``u_pos`` (:class:`PerSampleState` [data_len, num_labels], 0 initially).

    {args}

    {call}

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("multilabel_ap", data_len=100, num_labels=3)
        >>> crit(torch.sigmoid(torch.randn(4, 3)), torch.eye(4, 3, dtype=torch.long) + torch.eye(4, 3).flip(0).long(),
        ...      index=torch.arange(4)).ndim
        0
    """

    num_labels: int
    u_all: PerSampleState
    u_pos: PerSampleState

    def _build_state(self) -> None:
        self.u_all = _table(self.data_len, (self.num_labels,))
        self.u_pos = _table(self.data_len, (self.num_labels,))

    def state_tensors(self) -> dict[str, Tensor]:
        return {"u_all": self.u_all.value, "u_pos": self.u_pos.value}


@register(
    "multilabel_pauc",
    aliases=("mpauc",),
    family="auc",
    kind="multilabel",
    catalogue="D5",
    formula="mean over labels of pauc_dro ('1w') or tpauc_kl ('2w') on each label's column (own u per label)",
    paper=LIBAUC_PAPER,
    code=f"{AUC_CODE}::MultiLabelpAUCLoss",
)
@fill_doc(call=_ML_CALL)
class MultiLabelPAUCLoss(_StatefulLoss, function=LF.multilabel_pauc, sizes=("data_len", "num_labels")):
    r"""Multi-label partial AUC (Yuan, Zhu, Qiu, Li, Wang & Yang, 2023, "LibAUC: A Deep Learning
    Library for X-Risk Optimization"; SOPA-s / SOTA-s by Zhu et al., 2022).

    ``mode='1w'``: :class:`PAUCDROLoss` (one-way pAUC) on each label's column;
    ``mode='2w'``: :class:`TPAUCKLLoss` (two-way pAUC). Each label has its own per-positive
    ``log u`` (``log_u[:, l]``); the results are averaged over the labels:
    ``L = (1/L) Σ_l L_l``. In ``'2w'`` mode the outer estimate w is **one scalar shared by the
    labels** and updated label after label (label 0 first), as LibAUC's
    ``MultiLabelpAUCLoss`` does (it reuses one ``tpAUC_KL_Loss`` and swaps only its ``u_pos``).
    ``gamma_outer`` and ``temperature_pos`` act in ``'2w'`` mode only. Defaults are LibAUC
    2.0.1's (mode '1w', then the binary losses' defaults). Reductions as
    :class:`MultiLabelAPLoss`. Every label needs a positive and a negative in the batch.

    **State:** ``log_u`` (:class:`PerSampleState` [data_len, num_labels], −inf initially) and
    the buffer ``log_w`` (0-dim, used in ``'2w'`` mode).

    {args}

    {call}

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("multilabel_pauc", data_len=100, num_labels=3, mode="2w")
        >>> crit(torch.sigmoid(torch.randn(4, 3)), torch.eye(4, 3, dtype=torch.long) + torch.eye(4, 3).flip(0).long(),
        ...      index=torch.arange(4)).ndim
        0
    """

    num_labels: int
    log_u: PerSampleState
    log_w: Tensor

    def _build_state(self) -> None:
        self.log_u = _table(self.data_len, (self.num_labels,), init=-math.inf)
        self.register_buffer("log_w", torch.tensor(-math.inf))

    def state_tensors(self) -> dict[str, Tensor]:
        return {"log_u": self.log_u.value, "log_w": self.log_w}


# --------------------------------------------------------------------------------------
# H3: SONG / K-SONG and the listwise cross-entropy
# --------------------------------------------------------------------------------------
@register(
    "ndcg",
    aliases=("song", "k_song", "ndcg_loss"),
    family="auc",
    kind="ranking",
    catalogue="H3",
    formula="g_qi = mean_j ℓ(m, s_qi - s_qj); u_qi ← (1-γ)u_qi + γ g_qi; "
            "L = mean_q N_q/IDCG_q · mean_i [(2^{r_qi}-1) N/(ln2 (1+N u_qi) log2²(1+N u_qi))]_sg g_qi (SONG)",
    paper=SONG_PAPER,
    code=f"{RANKING_CODE}::NDCGLoss",
)
class NDCGLoss(_StatefulLoss, function=LF.ndcg, sizes=("data_len", "num_queries")):
    r"""SONG and K-SONG, stochastic NDCG and top-K NDCG surrogates (Qiu, Hu, Zhong, Zhang & Yang,
    2022, "Large-scale Stochastic Optimization of NDCG Surrogates for Deep Learning with Provable
    Convergence").

    NDCG's rank of a relevant item i of query q, ``r_qi = Σ_j 1[s_qj ≥ s_qi]``, is replaced by
    ``N · g_qi`` with ``g_qi = E_j ℓ(m, s_qi − s_qj)`` over the catalogue's N items (squared
    hinge by default); SONG minimises ``−(1/|S|) Σ_{(q,i)} f(g_qi)`` with
    ``f(g) = (2^{r} − 1) / (Z_q log₂(1 + N g))`` and tracks g by a moving average u per
    relevant pair, written before it is used:

    .. math:: u_{qi} \leftarrow (1-\gamma)\,u_{qi} + \gamma\,\frac1{P+M}\sum_{j} \ell(m, s_{qi} - s_{qj}),\qquad
              L = \frac1B\sum_q \frac{N^+_q}{\mathrm{IDCG}_q}\,\frac1P\sum_{i\le P}
              \Big[\frac{(2^{r_{qi}}-1)\,N}{\ln 2\,(1 + N u_{qi})\,\log_2^2(1 + N u_{qi})}\Big]_{\text{sg}} g_{qi}

    (j runs over all P + M sampled columns, i itself included; N⁺_q = ``num_pos_items``, the
    query's number of relevant items; IDCG_q = ``ideal_dcg``). K-SONG (``top_k = K > 0``) also
    keeps a threshold λ_q per query, the smoothed K-th largest score, moved by a gradient step
    on ``(K/N)λ + (τ₂/2)λ² + mean_j τ₁ log(1 + e^{(s_qj − λ)/τ₁})``, weighs each term by
    ``ψ(s_qi − λ_q) = σ(α (s_qi − λ_q))`` (λ_q before this call's step, as LibAUC's code) and,
    with ``top_k_version='theo'``, adds the implicit-gradient term
    ``ψ'(·) f(u) (s_qi − mean_j(σ'_j s_qj)/s_q)``, s_q a moving average of λ's Hessian
    (γ_λ = ``gamma_lambda``); ``'prac'`` leaves it out. Raw scores (no sigmoid). Defaults
    are LibAUC 2.0.1's ``NDCGLoss`` code (γ = γ_λ = 0.9, η = 0.01, m = 1, top_k = -1,
    'theo', τ₁ = 0.01, τ₂ = 1e-4, α = 2; its docstring says α = 1 and top_k = 1e-10).
    ``"mean"`` is the mean over the batch's queries, ``"none"`` per query [B]. LibAUC sizes
    λ_q and s_q ``num_user + 1``; here they have ``num_queries`` entries and ``query_index``
    is checked against it.

    **State:** ``u`` (:class:`PerSampleState` [data_len], 0 initially), ``lambda_q`` and ``s_q``
    ([num_queries], 0 initially; K-SONG only).

    {args}

    Call: ``crit(scores, rating, index=..., num_pos_items=..., ideal_dcg=..., query_index=...)``
    with ``scores`` float [B, num_pos + num_neg] (each query's ``num_pos`` sampled relevant
    items first, then its sampled negatives), ``rating`` [B, num_pos] the relevance grades
    r ≥ 0 of the relevant columns ([B, num_pos + num_neg] is accepted and its first columns
    read, as LibAUC's ``batch['rating']``), ``index`` int64 [B, num_pos] the ids in
    ``[0, data_len)`` of those (query, item) pairs (LibAUC ``user_item_id``),
    ``num_pos_items`` [B] and ``ideal_dcg`` float [B] > 0 per query, and ``query_index``
    int64 [B] in ``[0, num_queries)`` (LibAUC ``user_id``; needed when ``top_k > 0``).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("ndcg", data_len=50, num_queries=10, num_items=100, num_pos=2)
        >>> crit(torch.randn(3, 6), torch.tensor([[1, 3], [2, 2], [4, 1]]), index=torch.tensor([[0, 1], [2, 3], [4, 5]]),
        ...      num_pos_items=torch.tensor([2, 3, 2]), ideal_dcg=torch.tensor([8.9, 4.9, 15.6])).ndim
        0
    """

    num_queries: int
    u: PerSampleState
    lambda_q: PerSampleState
    s_q: PerSampleState
    size_docs: ClassVar[dict[str, str]] = {"data_len": _PAIR_SIZE}

    def _build_state(self) -> None:
        self.u = _table(self.data_len)
        self.lambda_q = _table(self.num_queries)
        self.s_q = _table(self.num_queries)

    def state_tensors(self) -> dict[str, Tensor]:
        return {"u": self.u.value, "lambda_q": self.lambda_q.value, "s_q": self.s_q.value}


@register(
    "listwise_ce",
    aliases=("listwise_cross_entropy",),
    family="auc",
    kind="ranking",
    catalogue="H3",
    formula="d_qij = s_qj - s_qi (j negative); e = exp(d - max d); u_qi ← (1-γ)u_qi + γ mean_j e_qij; "
            "L = (1/B) Σ_{q,i,j} d_qij [e_qij/(u_qi + ε)]_sg",
    paper=SONG_PAPER,
    code=f"{RANKING_CODE}::ListwiseCELoss",
)
class ListwiseCELoss(_StatefulLoss, function=LF.listwise_ce, sizes=("data_len",)):
    r"""Stochastic listwise cross-entropy (LibAUC's ``ListwiseCELoss``; Qiu, Hu, Zhong, Zhang &
    Yang, 2022, "Large-scale Stochastic Optimization of NDCG Surrogates for Deep Learning with
    Provable Convergence", the ListNet-style baseline optimised with the same compositional
    estimator).

    The listwise cross-entropy ``−log(e^{s_qi} / Σ_j e^{s_qj}) = log Σ_j e^{s_qj − s_qi}``
    of each relevant item, with the inner mean over the catalogue tracked per relevant pair by
    a moving average (written before use):

    .. math:: d_{qij} = s_{qj} - s_{qi},\quad e_{qij} = e^{d_{qij} - c},\quad
              u_{qi} \leftarrow (1-\gamma)u_{qi} + \gamma\,\frac1M\sum_{j} e_{qij},\quad
              L = \frac1B\sum_{q}\sum_{i\le P}\sum_{j} d_{qij}\Big[\frac{e_{qij}}{u_{qi} + \varepsilon}\Big]_{\text{sg}}

    over the M sampled negative columns j, with ``c = max d`` over the whole batch. As in
    LibAUC, the shift c is the current batch's and is not undone, so the stored u mixes the
    shifts of different calls (the state is not shift-invariant). LibAUC's
    ``ListwiseCELoss`` has no default γ; 0.9 (its ``NDCGLoss``'s) is used; ε = 1e-10 is its
    default. Raw scores. ``"mean"`` is LibAUC's sum over the batch divided by the number of
    queries B, ``"none"`` per query [B].

    **State:** ``u`` (:class:`PerSampleState` [data_len], 0 initially).

    {args}

    Call: ``crit(scores, index=index)`` with ``scores`` float [B, num_pos + num_neg] (relevant
    columns first, at least one negative) and ``index`` int64 [B, num_pos] the ids in
    ``[0, data_len)`` of the relevant (query, item) pairs ([B, num_pos + num_neg] is accepted
    and its first columns read, as LibAUC's ``batch['user_item_id']``).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("listwise_ce", data_len=50, num_pos=2)
        >>> crit(torch.randn(3, 6), index=torch.tensor([[0, 1], [2, 3], [4, 5]])).ndim
        0
    """

    u: PerSampleState
    size_docs: ClassVar[dict[str, str]] = {"data_len": _PAIR_SIZE}

    def _build_state(self) -> None:
        self.u = _table(self.data_len)

    def state_tensors(self) -> dict[str, Tensor]:
        return {"u": self.u.value}
