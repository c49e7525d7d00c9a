"""SMOTE and its variants on feature vectors (catalogue row A13), wrapped from imbalanced-learn.

Nothing is re-implemented: :func:`smote_resample` calls ``imblearn.over_sampling`` and converts
tensors / arrays in and out. imbalanced-learn is an optional extra
(``pip install lossatlas[smote]``), imported only when :func:`smote_resample` runs.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import torch

__all__ = ["smote_resample", "SMOTE_METHODS"]

#: method name -> imblearn.over_sampling class name.
SMOTE_METHODS: dict[str, str] = {
    "smote": "SMOTE",
    "borderline": "BorderlineSMOTE",
    "svm": "SVMSMOTE",
    "kmeans": "KMeansSMOTE",
    "adasyn": "ADASYN",
    "random": "RandomOverSampler",
}


def _imblearn_over_sampling() -> Any:
    try:
        return importlib.import_module("imblearn.over_sampling")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "lossatlas.data.smote needs imbalanced-learn: pip install 'lossatlas[smote]' (or imbalanced-learn)"
        ) from exc


def smote_resample(
    features: Any,
    labels: Any,
    method: str = "smote",
    sampling_strategy: Any = "auto",
    k_neighbors: int | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """Over-sample minority classes with SMOTE (Chawla et al., 2002) or a variant.

    Args:
        features: [N, D] float tensor or array (e.g. frozen penultimate-layer features).
        labels: [N] int class ids.
        method: ``"smote"`` (Chawla 2002), ``"borderline"`` (Han 2005), ``"svm"`` (Nguyen
            2011), ``"kmeans"`` (Douzas 2018), ``"adasyn"`` (He 2008) or ``"random"``
            (duplication) — the ``imblearn.over_sampling`` class of that name.
        sampling_strategy: as imbalanced-learn (``"auto"`` = every class up to the largest).
        k_neighbors: neighbours for interpolation (imbalanced-learn's default 5 when None;
            ``n_neighbors`` for ADASYN).
        seed: ``random_state``.
        **kwargs: passed to the imbalanced-learn class.

    Returns ``(features, labels)`` resampled: the originals first, then the synthetic ones
    (imbalanced-learn's order), as torch tensors when the input features were a tensor
    (same dtype and device), else numpy arrays.

    Example:
        >>> import numpy as np; from lossatlas.data import smote_resample
        >>> X, y = smote_resample(np.random.default_rng(0).normal(size=(26, 2)), [0] * 20 + [1] * 6, seed=0)
        >>> np.bincount(y).tolist()
        [20, 20]
    """
    if not isinstance(method, str) or method.lower() not in SMOTE_METHODS:
        raise ValueError(f"method must be one of {sorted(SMOTE_METHODS)}, got {method!r}")
    as_torch = isinstance(features, torch.Tensor)
    X = features.detach().cpu().numpy() if as_torch else np.asarray(features)
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if X.ndim != 2:
        raise ValueError(f"features must have shape [N, D], got {X.shape}")
    if not np.issubdtype(X.dtype, np.floating):
        raise TypeError(f"features must be floating point, got dtype {X.dtype}; cast with .float()")
    if y.ndim != 1 or y.shape[0] != X.shape[0] or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be int class ids of shape [N] = [{X.shape[0]}], got dtype {y.dtype}, shape {y.shape}")
    cls = getattr(_imblearn_over_sampling(), SMOTE_METHODS[method.lower()])
    params: dict[str, Any] = {"sampling_strategy": sampling_strategy, "random_state": seed, **kwargs}
    if k_neighbors is not None:
        params["n_neighbors" if method.lower() == "adasyn" else "k_neighbors"] = int(k_neighbors)
    X_res, y_res = cls(**params).fit_resample(X, y)
    if as_torch:
        return (
            torch.as_tensor(np.asarray(X_res), dtype=features.dtype, device=features.device),
            torch.as_tensor(np.asarray(y_res), dtype=torch.long, device=features.device),
        )
    return np.asarray(X_res), np.asarray(y_res)
