r"""Classifier heads that losses assume: the normalised (cosine) linear layer of LDAM, and a
linear / cosine head fused with its loss for huge class counts (:class:`ChunkedLinearLoss`).

LDAM (Cao et al., 2019) multiplies margin-shifted logits by ``scale = 30``. Its official code
(kaidic/LDAM-DRW, ``models/resnet_cifar.py::NormedLinear``) feeds it the output of a
*normalised* linear layer, cosine similarities in ``[-1, 1]``, so the scaled logits stay in
``[-30, 30]``. With a plain ``nn.Linear`` the logits are unbounded: ``30 · z`` grows as the
weights grow and training can diverge to NaN. :class:`NormedLinear` is that layer, and
:func:`lossatlas.functional.ldam` (with ``validate=True``) warns once when it sees logits
that cannot be cosines with ``scale > 1``.

>>> import torch, lossatlas as la
>>> head = la.heads.NormedLinear(16, 3)
>>> bool(head(torch.randn(4, 16)).abs().max() <= 1)
True
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._spec import spec_of
from ._validation import check_float
from .functional.chunked import chunked_linear_cross_entropy, resolve_hparams

__all__ = ["NormedLinear", "ChunkedLinearLoss"]


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class NormedLinear(nn.Module):
    r"""Normalised ("cosine") linear classifier: the cosine of each feature vector with each
    class weight vector.

    .. math:: z_{ij} = \frac{\langle x_i, w_j\rangle}{\lVert x_i\rVert\,\lVert w_j\rVert} \in [-1, 1]

    The classifier of LDAM-DRW (Cao et al., 2019, "Learning Imbalanced Datasets with
    Label-Distribution-Aware Margin Loss"): kaidic/LDAM-DRW ``models/resnet_cifar.py``
    ``NormedLinear``, used with ``LDAMLoss(scale=30)``, which turns the cosines into logits
    in ``[-30, 30]``. Put it as the model's last layer when training with ``ldam``; at test
    time predict with its argmax as with any classifier.

    Args:
        in_features: D, the feature dimension.
        out_features: C, the number of classes.
        eps: the norm floor of ``F.normalize`` (a zero feature vector gives zero logits).
            Default 1e-12, ``F.normalize``'s, which the official code uses.

    Parameters: ``weight`` [C, D] (``nn.Linear``'s layout, so ``la.two_stage`` helpers apply;
    the official code stores the transpose [D, C] and normalises its columns: load its
    ``weight`` as ``weight.T``). Initialisation as the official code: uniform in [-1, 1],
    each class vector rescaled to unit norm. No bias (a bias would break the [-1, 1] bound).

    Shapes: input [N, D] (or [..., D]); output [N, C] (or [..., C]), in the input's dtype.

    Example:
        >>> import torch, lossatlas as la
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), la.heads.NormedLinear(16, 3))
        >>> la.create("ldam", class_counts=[50, 10, 2])(model(torch.randn(4, 8)), torch.tensor([0, 1, 2, 0])).ndim
        0
    """

    weight: Tensor

    def __init__(self, in_features: int, out_features: int, *, eps: float = 1e-12,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(f"eps must be a positive float, got {eps!r}")
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in [-1, 1], then each class vector (row) rescaled to unit norm (kaidic/LDAM-DRW)."""
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0)
            self.weight.div_(self.weight.norm(dim=1, keepdim=True).clamp_min(torch.finfo(self.weight.dtype).tiny))

    def forward(self, input: Tensor) -> Tensor:
        check_float(input, "input")
        if input.dim() < 1 or input.shape[-1] != self.in_features:
            raise ValueError(f"input must have shape [..., in_features] = [..., {self.in_features}], got {tuple(input.shape)}")
        return F.linear(F.normalize(input, dim=-1, eps=self.eps), F.normalize(self.weight, dim=1, eps=self.eps))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


_CHUNKED = spec_of(chunked_linear_cross_entropy)


class ChunkedLinearLoss(nn.Module):
    r"""A classification head [C, D] and its loss in one module, computed ``chunk_size`` classes
    at a time: never N × C logits (:func:`lossatlas.functional.chunked_linear_cross_entropy`).

    ``head(features, target)`` equals ``la.functional.<loss>(F.linear(features, weight, bias),
    target, ...)`` for ``loss`` in ``"cross_entropy"`` (with ``label_smoothing``),
    ``"logit_adjusted"``, ``"balanced_softmax"``, and ``la.functional.<loss>(features, target,
    weight, ...)`` for the cosine losses ``"arcface"``, ``"cosface"``, ``"sface"``, in value
    and gradients, with O(N · chunk_size) extra memory instead of O(N · C). Formulas, papers
    (ArcFace: Deng et al. 2019; CosFace: Wang et al. 2018; SFace: Zhong et al. 2021; logit
    adjustment: Menon et al. 2021; balanced softmax: Ren et al. 2020; class-parallel sharding
    after Partial FC, An et al. 2021) and the sources of the defaults: the function's docstring.

    Args:
        in_features: D, the feature dimension.
        out_features: C, the number of classes (this process's slice with ``class_parallel``).
        bias: a learned bias [C]; ``None`` (default): one for the linear losses, none for the
            cosine losses (their logits are scaled cosines; ``True`` is then an error).
        process_group: the ``torch.distributed`` group of ``class_parallel`` (default: world).

    The other keywords (``loss``, ``chunk_size``, ``label_smoothing``, ``class_counts``,
    ``tau``, ``margin``, ``scale``, ``k``, ``a``, ``b``, ``ignore_index``, ``reduction``,
    ``validate``, ``class_parallel``) are the function's, checked at construction by its spec
    and by the loss function's own checks; ``None`` takes the loss function's default (e.g.
    ArcFace's margin 0.5 rad and scale 64).

    Parameters: ``weight`` [C, D] and ``bias`` [C] (``nn.Linear``'s names, layout and
    initialisation, so a ``state_dict`` loads into ``nn.Linear(D, C)`` and back).

    Shapes: ``forward(features [N, D], target int64 [N])`` → a scalar (or [N] with
    ``reduction="none"``). ``logits(features)`` [N, C] is the dense head, for evaluation
    on small batches.

    Example:
        >>> import torch, lossatlas as la
        >>> head = la.heads.ChunkedLinearLoss(16, 100_000, loss="arcface", chunk_size=8192)
        >>> head(torch.randn(4, 16), torch.tensor([0, 5, 99_999, 7])).ndim
        0
    """

    weight: Tensor
    bias: Tensor | None

    def __init__(self, in_features: int, out_features: int, *, bias: bool | None = None,
                 loss: str = "cross_entropy", chunk_size: int = 4096, label_smoothing: float = 0.0,
                 class_counts: Any = None, tau: float | None = None, margin: float | None = None,
                 scale: float | None = None, k: float | None = None, a: float | None = None,
                 b: float | None = None, ignore_index: int = -100, reduction: str = "mean",
                 validate: bool = True, class_parallel: bool = False, process_group: Any = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        hp = _CHUNKED.check_all({
            "loss": loss, "chunk_size": chunk_size, "label_smoothing": label_smoothing, "class_counts": class_counts,
            "tau": tau, "margin": margin, "scale": scale, "k": k, "a": a, "b": b, "ignore_index": ignore_index,
            "reduction": reduction, "validate": validate, "class_parallel": class_parallel,
        })
        resolve_hparams(hp["loss"], {n: hp[n] for n in ("tau", "margin", "scale", "k", "a", "b", "label_smoothing")})
        cosine = hp["loss"] in ("arcface", "cosface", "sface")
        if bias is None:
            bias = not cosine
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be True, False or None, got {type(bias).__name__}")
        if bias and cosine:
            raise ValueError(f"bias must be False or None for loss={hp['loss']!r}: its logits are scaled cosines")
        counts = hp.pop("class_counts")
        if counts is not None:
            self.register_buffer("class_counts", counts, persistent=False)  # state_dict: nn.Linear's keys only
        else:
            self.class_counts: Tensor | None = None
        self.hparams = hp
        self.process_group = process_group
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features, device=device, dtype=dtype))
        if bias:
            self.bias = nn.Parameter(torch.empty(self.out_features, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s initialisation: Kaiming-uniform weight, bias uniform in ±1/√D."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def functional_kwargs(self) -> dict[str, Any]:
        """Keywords that make ``chunked_linear_cross_entropy(features, weight, target, **kw)``
        equal this module's call."""
        return {**self.hparams, "bias": self.bias, "class_counts": self.class_counts,
                "process_group": self.process_group}

    def forward(self, features: Tensor, target: Tensor) -> Tensor:
        return chunked_linear_cross_entropy(features, self.weight, target, **self.functional_kwargs())

    def logits(self, features: Tensor) -> Tensor:
        """The dense head: ``F.linear`` (or the cosines, for the cosine losses) [N, C]."""
        if self.hparams["loss"] in ("arcface", "cosface", "sface"):
            return F.linear(F.normalize(features, dim=-1), F.normalize(self.weight, dim=1))
        return F.linear(features, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"loss={self.hparams['loss']!r}, chunk_size={self.hparams['chunk_size']}")
