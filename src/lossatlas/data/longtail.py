"""Long-tail protocol: per-class counts and the subset that realises them.

The de-facto CIFAR-LT protocol (Cao et al. 2019, kaidic/LDAM-DRW ``imbalance_cifar.py``):
class ``j`` of ``C`` keeps

- ``"exp"`` (exponential profile): ``int(n_max · ρ^(−j/(C−1)))`` samples;
- ``"step"`` profile: ``n_max`` for the first ``C // 2`` classes, ``int(n_max / ρ)`` for the rest;

where ``ρ = n_max / n_min`` is the imbalance ratio. The subset inside each class is drawn
with a fixed numpy seed; only the training split is made long-tailed, the test set stays
balanced.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["longtail_counts", "make_longtail"]

_PROFILES = ("exp", "step")


def _check_ratio(imbalance_ratio: float) -> float:
    if isinstance(imbalance_ratio, bool) or not isinstance(imbalance_ratio, (int, float, np.integer, np.floating)):
        raise TypeError(f"imbalance_ratio must be a number >= 1 (e.g. 100), got {type(imbalance_ratio).__name__}")
    rho = float(imbalance_ratio)
    if not np.isfinite(rho) or rho < 1.0:
        raise ValueError(f"imbalance_ratio must be a finite number >= 1 (n_max / n_min, e.g. 100), got {imbalance_ratio!r}")
    return rho


def longtail_counts(n_max: int, num_classes: int, imbalance_ratio: float, profile: str = "exp") -> list[int]:
    """Samples kept per class under the long-tail protocol (class 0 is the head).

    Args:
        n_max: samples of the largest class (an int >= 1).
        num_classes: number of classes ``C`` (>= 1).
        imbalance_ratio: ``ρ = n_max / n_min`` (>= 1; 1 gives a balanced set).
        profile: ``"exp"`` (``int(n_max·ρ^(−j/(C−1)))``) or ``"step"`` (half the classes at
            ``n_max``, the other half at ``int(n_max/ρ)``).

    Example:
        >>> from lossatlas.data.longtail import longtail_counts
        >>> longtail_counts(5000, 10, 100)
        [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    """
    for name, value in (("n_max", n_max), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    rho = _check_ratio(imbalance_ratio)
    if profile not in _PROFILES:
        raise ValueError(f"profile must be one of {_PROFILES}, got {profile!r}")
    n_max, num_classes = int(n_max), int(num_classes)
    if num_classes == 1:
        return [n_max]
    if profile == "exp":
        # n_max * rho**(-j/(C-1)), computed as in the reference (float power, then int()).
        return [int(n_max * (1.0 / rho) ** (j / (num_classes - 1.0))) for j in range(num_classes)]
    half = num_classes // 2
    return [n_max] * half + [int(n_max / rho)] * (num_classes - half)


def make_longtail(
    labels: Any,
    imbalance_ratio: float,
    profile: str = "exp",
    seed: int = 0,
    *,
    n_max: int | None = None,
    num_classes: int | None = None,
) -> np.ndarray:
    """Indices of a long-tailed subset of ``labels`` (sorted, int64).

    Class ``j`` keeps ``longtail_counts(n_max, C, imbalance_ratio, profile)[j]`` samples,
    drawn without replacement with ``np.random.default_rng(seed)``. ``n_max`` defaults to
    the size of the smallest class, so that every class can supply its count exactly (for
    the usual balanced source sets this is the per-class size); ``num_classes`` defaults to
    ``max(labels) + 1``.

    Raises ``ValueError`` if a class has fewer samples than its count (lower ``n_max``).

    Example:
        >>> import numpy as np
        >>> from lossatlas.data.longtail import make_longtail
        >>> idx = make_longtail(np.repeat(np.arange(3), 100), imbalance_ratio=10)
        >>> np.bincount(np.repeat(np.arange(3), 100)[idx]).tolist()
        [100, 31, 10]
    """
    y = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D array of integer class ids, got dtype {y.dtype}, shape {y.shape}")
    if y.size == 0:
        raise ValueError("labels is empty: nothing to subsample")
    if int(y.min()) < 0:
        raise ValueError("labels must be non-negative class ids")
    if num_classes is None:
        num_classes = int(y.max()) + 1
    elif int(y.max()) >= num_classes:
        raise ValueError(f"labels contain class {int(y.max())} but num_classes={num_classes}")
    available = np.bincount(y, minlength=num_classes)
    if n_max is None:
        n_max = int(available.min())
        if n_max < 1:
            raise ValueError(f"class {int(available.argmin())} has no samples; pass n_max= and num_classes= for the classes present")
    counts = longtail_counts(n_max, num_classes, imbalance_ratio, profile)
    rng = np.random.default_rng(seed)
    keep = []
    for j, n_j in enumerate(counts):
        idx_j = np.flatnonzero(y == j)
        if n_j > idx_j.size:
            raise ValueError(f"class {j} has {idx_j.size} samples but the profile asks for {n_j}; lower n_max (now {n_max})")
        keep.append(rng.choice(idx_j, size=n_j, replace=False))
    return np.sort(np.concatenate(keep)).astype(np.int64)
