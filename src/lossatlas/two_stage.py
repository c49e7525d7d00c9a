"""Two-stage (decoupled) long-tail training: catalogue rows A10 and A11.

Stage 1 learns the representation with ordinary (instance-balanced) sampling; stage 2
re-balances only the classifier. Kang et al. (2020) give three stage-2 options, and
Alshammari et al. (2022) a fourth:

* **cRT** — re-initialise the linear classifier and re-train it on frozen features with a
  class-balanced sampler: :func:`freeze_except` / :func:`crt_parameters` +
  :class:`lossatlas.samplers.ClassBalancedSampler`;
* **τ-normalised classifier** — no training: ``w_j ← w_j / ‖w_j‖^τ`` (:class:`TauNormalizedClassifier`);
* **LWS** — learn one scale per class on top of the frozen classifier (:class:`LWSClassifier`);
* **weight balancing** — stage 1 with a large weight decay, stage 2 re-trains the classifier
  with a class-balanced loss under a per-class norm cap, projected after every step
  (:class:`MaxNorm`).

Recipe (cRT)::

    from lossatlas.two_stage import crt_parameters
    params = crt_parameters(model, model.fc)   # freezes the rest, re-inits fc
    opt = torch.optim.SGD(params, lr=0.2, momentum=0.9)
    loader = DataLoader(train_set, batch_size=512, sampler=la.samplers.ClassBalancedSampler(labels))
    model.eval(); model.fc.train()        # keep the backbone's BatchNorm statistics frozen
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor, nn

from ._validation import check_float, check_number
from .registry import Paper, register
from .samplers.class_balanced import KANG_PAPER

__all__ = [
    "freeze_except",
    "crt_parameters",
    "tau_normalize",
    "TauNormalizedClassifier",
    "LWSClassifier",
    "per_class_norms",
    "max_norm_",
    "MaxNorm",
    "StageTwo",
    "CRT",
    "TauNorm",
    "LWS",
    "WeightBalancing",
    "fit_stage_two",
]

WB_PAPER = Paper(
    "S. Alshammari, Y.-X. Wang, D. Ramanan, S. Kong",
    "Long-Tailed Recognition via Weight Balancing",
    "CVPR",
    2022,
    "2203.14197",
)


def _check_linear(layer: Any, name: str) -> nn.Linear:
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"{name} must be a torch.nn.Linear classifier layer, got {type(layer).__name__}")
    return layer


def _check_weight(weight: Any, name: str = "weight") -> Tensor:
    w = check_float(weight, name)
    if w.dim() != 2:
        raise ValueError(f"{name} must be a classifier weight [C, D] (nn.Linear layout), got shape {tuple(w.shape)}")
    return w


def freeze_except(model: nn.Module, *keep: nn.Module) -> list[nn.Parameter]:
    """Set ``requires_grad=False`` on every parameter of ``model`` not in a ``keep`` module.

    Returns the parameters left trainable (those of ``keep``), ready for an optimiser.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for m in keep:
        if not isinstance(m, nn.Module):
            raise TypeError(f"modules to keep trainable must be torch.nn.Module, got {type(m).__name__}")
    kept = {id(p) for m in keep for p in m.parameters()}
    trainable: list[nn.Parameter] = []
    for p in model.parameters():
        p.requires_grad_(id(p) in kept)
        if id(p) in kept:
            trainable.append(p)
    return trainable


def crt_parameters(model: nn.Module, classifier: nn.Module, reinit: bool = True) -> list[nn.Parameter]:
    """classifier Re-Training (cRT, Kang et al. 2020): freeze ``model`` except ``classifier``,
    re-initialise the classifier (``reset_parameters()``, when ``reinit``), return its parameters.

    Train them with class-balanced sampling (Kang: 10 epochs); keep the frozen backbone in
    ``eval()`` mode so its BatchNorm statistics do not move.
    """
    params = freeze_except(model, classifier)
    if not params:
        raise ValueError("classifier has no parameters inside model; pass the model's classifier layer")
    if reinit:
        resettable = [m for m in classifier.modules() if hasattr(m, "reset_parameters")]
        if not resettable:
            raise ValueError(f"{type(classifier).__name__} has no reset_parameters(); pass reinit=False")
        for m in resettable:
            # present by the hasattr above; nn.Module.__getattr__ would type it Tensor | Module
            reset = cast(Callable[[], object], m.reset_parameters)
            reset()
    return params


def tau_normalize(weight: Tensor, tau: float = 1.0) -> Tensor:
    r"""``w_j / ‖w_j‖_2^τ`` row by row (τ = 0: unchanged; τ = 1: unit rows). Differentiable."""
    _check_weight(weight)
    tau = check_number(tau, "tau", low=0.0)
    norms: Tensor = weight.norm(dim=1, keepdim=True)  # Tensor.norm's return is unannotated in torch
    norms = norms.clamp_min(torch.finfo(weight.dtype).tiny)
    return weight / norms.pow(tau)


class TauNormalizedClassifier(nn.Module):
    r"""τ-normalised classifier (Kang et al., 2020, "Decoupling Representation and Classifier
    for Long-Tailed Recognition", ICLR).

    .. math:: \tilde w_j = \frac{w_j}{\lVert w_j\rVert_2^{\tau}},\qquad z_j = \tilde w_j^\top x

    A post-hoc, training-free stage 2: the classifier trained with instance-balanced
    sampling has larger norms for head classes; dividing by a power of the norm re-balances
    the decision boundaries. τ = 0 is the original classifier (without bias), τ = 1 a
    cosine-like classifier; Kang et al. pick τ ∈ [0, 2] on a validation set (their
    ``tau_norm.py`` scans ``linspace(0, 2, 21)``). Following that script the bias is
    dropped by default (``keep_bias=True`` keeps it unchanged). The weight is a buffer
    (not trained). Input ``x`` [N, D] → logits [N, C].

    Example:
        >>> import torch; from lossatlas.two_stage import TauNormalizedClassifier
        >>> clf = TauNormalizedClassifier.from_linear(torch.nn.Linear(4, 3), tau=1.0)
        >>> clf.normalized_weight().norm(dim=1).allclose(torch.ones(3))
        True
    """

    weight: Tensor  # buffers
    bias: Tensor | None

    def __init__(self, weight: Tensor, bias: Tensor | None = None, tau: float = 1.0) -> None:
        super().__init__()
        _check_weight(weight)
        self.tau = check_number(tau, "tau", low=0.0)
        self.register_buffer("weight", weight.detach().clone())
        if bias is not None:
            check_float(bias, "bias")
            if bias.shape != (weight.shape[0],):
                raise ValueError(f"bias must have shape [C] = [{weight.shape[0]}], got {tuple(bias.shape)}")
            bias = bias.detach().clone()
        self.register_buffer("bias", bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear, tau: float = 1.0, keep_bias: bool = False) -> TauNormalizedClassifier:
        """Build it from a trained ``nn.Linear`` classifier (bias dropped unless ``keep_bias``)."""
        _check_linear(linear, "linear")
        bias = linear.bias if (keep_bias and linear.bias is not None) else None
        return cls(linear.weight, bias, tau)

    def normalized_weight(self) -> Tensor:
        return tau_normalize(self.weight, self.tau)

    def forward(self, x: Tensor) -> Tensor:
        check_float(x, "x")
        w = self.normalized_weight().to(x.dtype)
        out = x @ w.t()
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)
        return out

    def extra_repr(self) -> str:
        return f"num_classes={self.weight.shape[0]}, in_features={self.weight.shape[1]}, tau={self.tau}"


class LWSClassifier(nn.Module):
    r"""Learnable weight scaling, LWS (Kang et al., 2020, "Decoupling Representation and
    Classifier for Long-Tailed Recognition", ICLR).

    .. math:: z_j = f_j\,(w_j^\top x + b_j),\qquad f_j \text{ learnt},\ w, b \text{ frozen}

    Stage 2 keeps the stage-1 classifier and learns one scale per class (initialised to 1)
    with class-balanced sampling. As in the official ``DotProduct_Classifier`` for LWS, the
    scale multiplies the whole logit (bias included) and the wrapped linear layer is frozen.
    Only ``scales`` is trainable. Input ``x`` [N, D] → logits [N, C].

    Example:
        >>> import torch; from lossatlas.two_stage import LWSClassifier
        >>> lws = LWSClassifier(torch.nn.Linear(4, 3))
        >>> [n for n, p in lws.named_parameters() if p.requires_grad]
        ['scales']
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.fc = _check_linear(linear, "linear")
        for p in self.fc.parameters():
            p.requires_grad_(False)
        self.scales = nn.Parameter(torch.ones(linear.out_features, dtype=linear.weight.dtype, device=linear.weight.device))

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.fc(x)  # nn.Module.__call__ is untyped
        return logits * self.scales


def per_class_norms(weight: Tensor | nn.Linear, p: float = 2.0) -> Tensor:
    """‖w_j‖_p of each class row of a classifier weight [C, D] (or an ``nn.Linear``), detached."""
    w = weight.weight if isinstance(weight, nn.Linear) else weight
    _check_weight(w)
    norms: Tensor = torch.linalg.vector_norm(w.detach(), ord=p, dim=1)  # torch.linalg's functions are unannotated
    return norms


def max_norm_(weight: Tensor, max_norm: float | Tensor, p: float = 2.0) -> Tensor:
    """In place, project each row onto the ball ‖w_j‖_p ≤ max_norm (scalar or per-class [C]).

    Rows already inside are unchanged. Returns ``weight``.
    """
    _check_weight(weight)
    cap = torch.as_tensor(max_norm, dtype=weight.dtype, device=weight.device)
    if cap.dim() > 1 or (cap.dim() == 1 and cap.numel() != weight.shape[0]):
        raise ValueError(f"max_norm must be a number or a per-class tensor [C] = [{weight.shape[0]}], got shape {tuple(cap.shape)}")
    if bool((cap < 0).any()):
        raise ValueError("max_norm must be non-negative")
    with torch.no_grad():
        norms = torch.linalg.vector_norm(weight, ord=p, dim=1)
        scale = torch.where(norms > cap, cap / norms.clamp_min(torch.finfo(weight.dtype).tiny), torch.ones_like(norms))
        weight.mul_(scale.unsqueeze(1))
    return weight


class MaxNorm:
    r"""Per-class norm cap for weight balancing (Alshammari, Wang, Ramanan, Kong, 2022,
    "Long-Tailed Recognition via Weight Balancing", CVPR), applied by projected gradient
    descent: call it after every ``optimizer.step()``.

    .. math:: w_j \leftarrow w_j \cdot \min\!\Big(1, \frac{\delta}{\lVert w_j\rVert_2}\Big),\qquad
              \delta = \min_j \lVert w_j^{(0)}\rVert + \text{thresh}\,(\max_j \lVert w_j^{(0)}\rVert - \min_j \lVert w_j^{(0)}\rVert)

    As in the official ``MaxNorm_via_PGD``, the cap δ is set once, from the classifier's
    norms when the constraint is first applied (or :meth:`calibrate`); ``thresh`` = 0.1 is
    the official default for stage 2. ``max_norm=`` sets an absolute cap instead (a number
    or a per-class tensor [C]). The bias is not constrained (the reference gives 1-D
    parameters an infinite cap). Stage 1 of weight balancing is plain CE with a large weight
    decay (e.g. 5e-3 on CIFAR-LT); stage 2 re-trains the classifier with a class-balanced loss
    (e.g. ``la.create("cross_entropy", weight=la.create("effective_number", ...)())``) and
    this projection.

    Example:
        >>> import torch; from lossatlas.two_stage import MaxNorm, per_class_norms
        >>> fc = torch.nn.Linear(4, 3); cap = MaxNorm(max_norm=0.1); cap(fc)
        >>> bool((per_class_norms(fc) <= 0.1 + 1e-6).all())
        True
    """

    def __init__(self, thresh: float = 0.1, max_norm: float | Tensor | None = None, p: float = 2.0) -> None:
        self.thresh = check_number(thresh, "thresh", low=0.0)
        self.p = check_number(p, "p", low=1.0)
        self.cap: Tensor | None = None if max_norm is None else torch.as_tensor(max_norm, dtype=torch.float64)

    def calibrate(self, weight: Tensor | nn.Linear) -> Tensor:
        """Set the cap from the current norms: ``min + thresh·(max − min)``."""
        norms = per_class_norms(weight, self.p)
        self.cap = (norms.min() + self.thresh * (norms.max() - norms.min())).double()
        return self.cap

    def __call__(self, weight: Tensor | nn.Linear) -> None:
        w = weight.weight if isinstance(weight, nn.Linear) else weight
        if self.cap is None:
            self.calibrate(w)
        assert self.cap is not None
        max_norm_(w.data if isinstance(w, nn.Parameter) else w, self.cap, self.p)

    def __repr__(self) -> str:
        return f"MaxNorm(thresh={self.thresh}, cap={None if self.cap is None else self.cap.tolist()}, p={self.p})"


# --- stage-2 methods as registered ids (kind "two_stage") ---------------------------------------

_KANG_CODE = "facebookresearch/classifier-balancing"
_WB_CODE = "ShadeAlsha/LTR-weight-balancing"


def _locate(model: Any, classifier: Any) -> tuple[nn.Module, str, nn.Linear]:
    """The parent module, attribute name and ``nn.Linear`` at the dotted path ``classifier``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(classifier, str) or not classifier:
        raise TypeError(f"classifier must be the attribute path of the model's classifier layer (e.g. 'fc'), got {classifier!r}")
    parent_path, _, name = classifier.rpartition(".")
    try:
        parent = model.get_submodule(parent_path) if parent_path else model
        layer = parent.get_submodule(name)
    except AttributeError:
        names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ValueError(f"classifier={classifier!r} is not a submodule of the model; its nn.Linear layers are "
                         f"{names or 'none'}") from None
    return parent, name, _check_linear(layer, f"the classifier layer model.{classifier}")


class StageTwo:
    """Stage 2 of decoupled long-tail training (catalogue rows A10, A11): what happens to a model
    trained with instance-balanced sampling (stage 1) so that its classifier is re-balanced.

    ``method.apply(model, "fc")`` freezes every parameter of ``model``, replaces its classifier
    layer ``model.fc`` (a dotted path; an ``nn.Linear``) in place by the method's stage-2 head,
    and returns the parameters stage 2 trains (none for a post-hoc method). Then train them for
    ``epochs`` epochs with SGD (``lr``, momentum 0.9, ``weight_decay``, cosine schedule), drawing
    batches with the registered sampler ``sampler`` (``None``: uniform), keep the frozen
    backbone in ``eval()`` mode, and call ``method.after_step()`` after every optimiser step.
    ``lossatlas bench`` runs this from a recipe's ``"stage2"`` field.
    """

    #: Registry id of the sampler of stage 2 (``None``: uniform shuffling).
    sampler: str | None = None
    epochs: int = 0
    lr: float = 0.0
    weight_decay: float = 0.0
    registry_id: str

    def __init__(self) -> None:
        self.head: nn.Module | None = None

    def make_head(self, layer: nn.Linear) -> nn.Module:
        """The stage-2 head that replaces ``layer`` (may be ``layer`` itself, changed in place)."""
        raise NotImplementedError

    def apply(self, model: nn.Module, classifier: str = "fc") -> list[nn.Parameter]:
        """Freeze ``model``, put the stage-2 head at ``model.<classifier>``, return what stage 2 trains."""
        parent, name, layer = _locate(model, classifier)
        for p in model.parameters():
            p.requires_grad_(False)
        head = self.make_head(layer)
        setattr(parent, name, head)
        self.head = head
        return [p for p in head.parameters() if p.requires_grad]

    def after_step(self) -> None:
        """Called after every optimiser step of stage 2 (a projection for weight balancing)."""
        if self.head is None:
            raise RuntimeError(f"{type(self).__name__}.after_step() before apply(model, classifier)")

    def _check_schedule(self, epochs: Any, lr: Any, weight_decay: Any) -> None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
        self.epochs = epochs
        self.lr = check_number(lr, "lr", low=0.0, low_open=True)
        self.weight_decay = check_number(weight_decay, "weight_decay", low=0.0)

    def _check_sampler(self, sampler: Any) -> str | None:
        if sampler is None:
            return None
        from .registry import info

        if not isinstance(sampler, str) or info(sampler).kind != "sampler":
            raise ValueError(f"sampler must be a registered sampler id (lossatlas list --family samplers) or None, "
                             f"got {sampler!r}")
        return info(sampler).id

    def __repr__(self) -> str:
        keys = [k for k in ("tau", "keep_bias", "reinit", "thresh", "p", "sampler", "epochs", "lr", "weight_decay")
                if k in vars(self) or k in type(self).__dict__]
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in keys)})"


@register(
    "crt",
    aliases=("classifier_retraining", "classifier_re_training"),
    family="imbalance",
    kind="two_stage",
    catalogue="A10",
    formula="stage 2: re-initialise the linear classifier, train it alone on frozen features with class-balanced sampling",
    paper=KANG_PAPER,
    code=_KANG_CODE,
    defaults_source={
        "reinit": f"{_KANG_CODE} config/ImageNet_LT/cls_crt.yaml (classifier stage1_weights: false: a new classifier)",
        "sampler": f"{_KANG_CODE} config/ImageNet_LT/cls_crt.yaml sampler: ClassAwareSampler",
        "epochs": f"{_KANG_CODE} config/ImageNet_LT/cls_crt.yaml num_epochs: 10",
        "lr": f"{_KANG_CODE} config/ImageNet_LT/cls_crt.yaml classifier optim_params lr: 0.2 (coslr: true)",
        "weight_decay": f"{_KANG_CODE} config/ImageNet_LT/cls_crt.yaml classifier optim_params weight_decay: 0.0005",
    },
)
class CRT(StageTwo):
    r"""classifier Re-Training, cRT (Kang, Xie, Rohrbach, Yan, Gordo, Feng, Kalantidis, 2020,
    "Decoupling Representation and Classifier for Long-Tailed Recognition", ICLR).

    Stage 2 keeps the representation of stage 1 (instance-balanced sampling), re-initialises
    the linear classifier and trains it alone with class-balanced sampling:

    .. math:: \min_{W, b}\ \mathbb{E}_{j \sim U(C),\ x \sim P(x \mid j)}\ \mathrm{CE}(W f(x) + b,\ j),
              \qquad f \text{ frozen}

    Defaults from the official ``config/ImageNet_LT/cls_crt.yaml``: a new classifier
    (``reinit=True``), ``ClassAwareSampler`` (``sampler="class_balanced_sampler"``), 10 epochs,
    SGD lr 0.2 (momentum 0.9, cosine schedule), weight decay 5e-4. ``apply`` returns the
    classifier's weight and bias; see :class:`StageTwo` for the protocol.

    Example:
        >>> import torch, lossatlas as la
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> [p.shape for p in la.create("crt").apply(model, "2")]
        [torch.Size([3, 8]), torch.Size([3])]
    """

    def __init__(self, reinit: bool = True, sampler: str | None = "class_balanced_sampler", epochs: int = 10,
                 lr: float = 0.2, weight_decay: float = 5e-4) -> None:
        super().__init__()
        if not isinstance(reinit, bool):
            raise TypeError(f"reinit must be a bool, got {type(reinit).__name__}")
        self.reinit = reinit
        self.sampler = self._check_sampler(sampler)
        self._check_schedule(epochs, lr, weight_decay)

    def make_head(self, layer: nn.Linear) -> nn.Module:
        if self.reinit:
            layer.reset_parameters()
        for p in layer.parameters():
            p.requires_grad_(True)
        return layer


@register(
    "tau_norm",
    aliases=("tau_normalization", "tau_normalized_classifier"),
    family="imbalance",
    kind="two_stage",
    catalogue="A10",
    formula="stage 2, post hoc: w_j <- w_j / ||w_j||^tau (bias dropped); nothing is trained",
    paper=KANG_PAPER,
    code=_KANG_CODE,
    defaults_source={
        "tau": "lossatlas: tau = 1 (unit-norm rows); Kang et al. pick tau in [0, 2] on a validation set "
               f"({_KANG_CODE} tau_norm.py scans linspace(0, 2, 21))",
        "keep_bias": f"{_KANG_CODE} tau_norm.py: the normalised classifier has no bias",
    },
)
class TauNorm(StageTwo):
    r"""τ-normalised classifier (Kang et al., 2020, "Decoupling Representation and Classifier
    for Long-Tailed Recognition", ICLR): a post-hoc stage 2, nothing is trained.

    .. math:: \tilde w_j = \frac{w_j}{\lVert w_j\rVert_2^{\tau}},\qquad z_j = \tilde w_j^\top f(x)

    ``apply`` replaces the classifier by a :class:`TauNormalizedClassifier` (weights as buffers)
    and returns no parameter (``epochs = 0``). τ = 0 is the classifier without its bias, τ = 1
    unit-norm rows; Kang et al. choose τ ∈ [0, 2] on a validation set (their ``tau_norm.py``
    scans ``linspace(0, 2, 21)``); the default τ = 1 is lossatlas's. The bias is dropped as in
    that script (``keep_bias=True`` keeps it).

    Example:
        >>> import torch, lossatlas as la
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> la.create("tau_norm", tau=1.0).apply(model, "2"), type(model[2]).__name__
        ([], 'TauNormalizedClassifier')
    """

    def __init__(self, tau: float = 1.0, keep_bias: bool = False) -> None:
        super().__init__()
        self.tau = check_number(tau, "tau", low=0.0)
        if not isinstance(keep_bias, bool):
            raise TypeError(f"keep_bias must be a bool, got {type(keep_bias).__name__}")
        self.keep_bias = keep_bias

    def make_head(self, layer: nn.Linear) -> nn.Module:
        return TauNormalizedClassifier.from_linear(layer, tau=self.tau, keep_bias=self.keep_bias)


@register(
    "lws",
    aliases=("learnable_weight_scaling",),
    family="imbalance",
    kind="two_stage",
    catalogue="A10",
    formula="stage 2: z_j = f_j (w_j^T x + b_j), one learnt scale f_j per class (init 1), w and b frozen",
    paper=KANG_PAPER,
    code=_KANG_CODE,
    defaults_source={
        "sampler": f"{_KANG_CODE} config/ImageNet_LT/cls_lws.yaml sampler: ClassAwareSampler",
        "epochs": f"{_KANG_CODE} config/ImageNet_LT/cls_lws.yaml num_epochs: 5",
        "lr": f"{_KANG_CODE} config/ImageNet_LT/cls_lws.yaml classifier optim_params lr: 0.2 (coslr: true)",
        "weight_decay": f"{_KANG_CODE} config/ImageNet_LT/cls_lws.yaml classifier optim_params weight_decay: 0.0005",
    },
)
class LWS(StageTwo):
    r"""Learnable weight scaling, LWS (Kang et al., 2020, "Decoupling Representation and
    Classifier for Long-Tailed Recognition", ICLR).

    .. math:: z_j = f_j\,(w_j^\top f(x) + b_j),\qquad f_j \text{ learnt (init 1)},\ w, b \text{ frozen}

    ``apply`` wraps the classifier in a :class:`LWSClassifier` and returns its scales. Defaults
    from the official ``config/ImageNet_LT/cls_lws.yaml``: ``ClassAwareSampler``, 5 epochs, SGD
    lr 0.2 (cosine), weight decay 5e-4.

    Example:
        >>> import torch, lossatlas as la
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> [p.shape for p in la.create("lws").apply(model, "2")]
        [torch.Size([3])]
    """

    def __init__(self, sampler: str | None = "class_balanced_sampler", epochs: int = 5, lr: float = 0.2,
                 weight_decay: float = 5e-4) -> None:
        super().__init__()
        self.sampler = self._check_sampler(sampler)
        self._check_schedule(epochs, lr, weight_decay)

    def make_head(self, layer: nn.Linear) -> nn.Module:
        return LWSClassifier(layer)


@register(
    "weight_balancing",
    aliases=("maxnorm", "max_norm", "wb"),
    family="imbalance",
    kind="two_stage",
    catalogue="A11",
    formula="stage 2: train the classifier with a class-balanced loss, weight decay and the per-class norm cap "
            "||w_j|| <= min + thresh (max - min) of the stage-1 norms (projected after each step)",
    paper=WB_PAPER,
    code=_WB_CODE,
    defaults_source={
        "thresh": f"{_WB_CODE} demo notebook: MaxNorm_via_PGD(thresh=0.1)",
        "p": f"{_WB_CODE} MaxNorm_via_PGD(LpNorm=2)",
        "sampler": f"{_WB_CODE} demo notebook: stage 2 keeps the instance-balanced loader (a class-balanced loss instead)",
        "epochs": f"{_WB_CODE} demo notebook: total_epoch_num = 10",
        "lr": f"{_WB_CODE} demo notebook: base_lr = 0.01",
        "weight_decay": f"{_WB_CODE} demo notebook: weight_decay = 0.1 in stage 2",
    },
)
class WeightBalancing(StageTwo):
    r"""Weight balancing, stage 2: MaxNorm with weight decay (Alshammari, Wang, Ramanan, Kong,
    2022, "Long-Tailed Recognition via Weight Balancing", CVPR).

    Stage 1 trains the whole network with CE and a large weight decay (5e-3 in the paper's
    CIFAR-LT runs); stage 2 fine-tunes the classifier (not re-initialised) with a class-balanced
    loss (the demo: class-balanced focal, β = 0.9999, γ = 2), weight decay 0.1 and the per-class
    norm cap, projected after every step (:class:`MaxNorm`):

    .. math:: w_j \leftarrow w_j \cdot \min\!\Big(1, \frac{\delta}{\lVert w_j\rVert_p}\Big),\qquad
              \delta = \min_j \lVert w^{(1)}_j\rVert + \text{thresh}\,(\max_j \lVert w^{(1)}_j\rVert
              - \min_j \lVert w^{(1)}_j\rVert)

    with δ set from the stage-1 norms when ``apply`` is called (as the official
    ``setPerLayerThresh`` before fine-tuning). The loss is the recipe's (compose
    ``la.create("focal")`` with ``la.create("effective_number", ...)``); this object holds the
    cap and the schedule: 10 epochs, SGD lr 0.01, weight decay 0.1, uniform sampling.

    Example:
        >>> import torch, lossatlas as la
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> wb = la.create("weight_balancing"); params = wb.apply(model, "2"); wb.after_step()
        >>> bool((la.two_stage.per_class_norms(model[2]) <= wb.max_norm.cap + 1e-6).all())
        True
    """

    def __init__(self, thresh: float = 0.1, p: float = 2.0, sampler: str | None = None, epochs: int = 10,
                 lr: float = 0.01, weight_decay: float = 0.1) -> None:
        super().__init__()
        self.max_norm = MaxNorm(thresh=thresh, p=p)
        self.thresh, self.p = self.max_norm.thresh, self.max_norm.p
        self.sampler = self._check_sampler(sampler)
        self._check_schedule(epochs, lr, weight_decay)

    def make_head(self, layer: nn.Linear) -> nn.Module:
        self.max_norm = MaxNorm(thresh=self.thresh, p=self.p)
        self.max_norm.calibrate(layer)
        for p in layer.parameters():
            p.requires_grad_(True)
        return layer

    def after_step(self) -> None:
        super().after_step()
        assert isinstance(self.head, nn.Linear)
        self.max_norm(self.head)


def fit_stage_two(
    method: StageTwo,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    *,
    classifier: str = "fc",
    batch_size: int = 128,
    momentum: float = 0.9,
    seed: int = 0,
    after_step: Callable[[], None] | None = None,
) -> nn.Module:
    """Run stage 2 of ``method`` on ``model`` (trained by stage 1) with the training set ``x``, ``y``.

    ``method.apply(model, classifier)``, then, if it returns parameters, ``method.epochs`` epochs
    of SGD (``method.lr``, ``momentum``, ``method.weight_decay``, cosine schedule to 0 as in the
    official configs) over batches of ``batch_size`` drawn by ``method.sampler`` (a registered
    sampler, seeded by ``seed``) or uniformly, minimising ``loss_fn(model(x_b), y_b)`` (a scalar),
    with the model in ``eval()`` mode (frozen BatchNorm statistics) and ``method.after_step()``
    after every step. Returns ``model`` (changed in place).
    """
    from .registry import create

    if not isinstance(method, StageTwo):
        raise TypeError(f"method must be a stage-2 method (la.create('crt'), ...), got {type(method).__name__}")
    check_float(x, "x")
    if not isinstance(y, Tensor) or y.dtype != torch.long or y.shape != (x.shape[0],):
        raise ValueError(f"y must be int64 labels [N] = [{x.shape[0]}] matching x")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    params = method.apply(model, classifier)
    model.eval()
    if not params:
        return model
    n = x.shape[0]
    opt = torch.optim.SGD(params, lr=method.lr, momentum=momentum, weight_decay=method.weight_decay)
    steps = method.epochs * max(1, -(-n // batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=0.0)
    gen = torch.Generator().manual_seed(seed)
    sampler: Any = None if method.sampler is None else create(method.sampler, labels=y.cpu(), seed=seed)
    for epoch in range(method.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)  # the registered samplers all have it
            order = torch.as_tensor(list(iter(sampler)), dtype=torch.long)
        else:
            order = torch.randperm(n, generator=gen)
        for i in range(0, len(order), batch_size):
            b = order[i : i + batch_size].to(x.device)
            loss = loss_fn(model(x[b]), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            method.after_step()
            if after_step is not None:
                after_step()
    return model


#: The papers behind this module, by catalogue row.
PAPERS = {"A10": KANG_PAPER, "A11": WB_PAPER}
