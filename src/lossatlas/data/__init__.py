"""Data utilities: class counts, long-tail and label-noise protocols, datasets.

Every submodule's ``__all__`` is re-exported here; they import optional
dependencies (mnist1d, scikit-learn, imbalanced-learn) lazily, inside functions, so that
``import lossatlas`` needs only torch and numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__: list[str] = ["class_counts"]


def class_counts(labels: Any, num_classes: int | None = None) -> torch.Tensor:
    """Number of samples per class, as an int64 tensor [C].

    ``labels`` is a 1-D int tensor / array / list; ``num_classes`` defaults to ``max + 1``.

    Example:
        >>> import lossatlas as la
        >>> la.data.class_counts([0, 0, 2], num_classes=3).tolist()
        [2, 0, 1]
    """
    y = labels.detach().cpu() if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))
    if y.dtype.is_floating_point or y.dim() != 1:
        raise ValueError(f"labels must be a 1-D sequence of integer class ids, got dtype {y.dtype}, shape {tuple(y.shape)}")
    if y.numel() and int(y.min()) < 0:
        raise ValueError("labels must be non-negative class ids")
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.numel() else 0
    if y.numel() and int(y.max()) >= num_classes:
        raise ValueError(f"labels contain class {int(y.max())} but num_classes={num_classes}")
    return torch.bincount(y.long(), minlength=num_classes)


from . import datasets, longtail, noise, smote  # noqa: E402
from .datasets import *  # noqa: E402,F403
from .longtail import *  # noqa: E402,F403
from .noise import *  # noqa: E402,F403
from .smote import *  # noqa: E402,F403

__all__ += datasets.__all__
__all__ += longtail.__all__
__all__ += noise.__all__
__all__ += smote.__all__
