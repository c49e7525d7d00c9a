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
from .registry import Paper
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


#: The papers behind this module, by catalogue row.
PAPERS = {"A10": KANG_PAPER, "A11": WB_PAPER}
