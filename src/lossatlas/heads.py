r"""Classifier heads that losses assume: the normalised (cosine) linear layer of LDAM.

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

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._validation import check_float

__all__ = ["NormedLinear"]


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
