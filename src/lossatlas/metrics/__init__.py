"""Metrics for hard data, built on ``torchmetrics`` (an optional dependency: ``pip install lossatlas[bench]``).

torchmetrics provides what it has (accuracy, top-k, macro-F1, Cohen's kappa, confusion
matrix, AUROC, average precision, ECE); the rest are :class:`torchmetrics.Metric`
subclasses here, so they accumulate over batches and sync across processes: shot split and
worst-class accuracy, MCE / classwise ECE / reliability diagram, average-k set-valued
accuracy, neural collapse NC1-NC4, retrieval Recall@k and MAP@R.
:func:`evaluate` returns all of them as one flat dict.

Every public name of every module (its ``__all__``) is re-exported here; new modules are
discovered automatically. ``import lossatlas`` does not import this package.
"""

from __future__ import annotations

try:
    import torchmetrics  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "lossatlas.metrics needs torchmetrics: pip install 'lossatlas[bench]' (or pip install torchmetrics)"
    ) from exc

from .._discovery import export_family_modules

__all__: list[str] = export_family_modules(__name__, __path__, globals())
