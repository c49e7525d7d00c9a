"""Metrics for hard data, built on ``torchmetrics`` (an optional dependency: ``pip install lossatlas[bench]``).

torchmetrics provides what it has (accuracy, top-k, macro-F1, Cohen's kappa, confusion
matrix, AUROC, average precision, ECE); the rest are :class:`torchmetrics.Metric`
subclasses here, so they accumulate over batches and sync across processes: shot split and
worst-class accuracy, MCE / classwise ECE / reliability diagram, average-k set-valued
accuracy, neural collapse NC1-NC4, retrieval Recall@k and MAP@R.
:func:`evaluate` returns all of them as one flat dict. :mod:`.ranking` adds LibAUC's evaluation
metrics for binary and multi-label scores (functions and Metric classes, in float64): AUROC, AP,
one- and two-way partial AUROC and NDCG@k.

Every public name of every module (its ``__all__``) is re-exported here. ``import lossatlas``
imports this package on first use of ``lossatlas.metrics`` (it needs the extra).
"""

from __future__ import annotations

try:
    import torchmetrics  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "lossatlas.metrics needs torchmetrics: pip install 'lossatlas[bench]' (or pip install torchmetrics)"
    ) from exc

from . import calibration, classification, groups, neural_collapse, probe, ranking, retrieval, setvalued, summary, susceptibility
from .calibration import *  # noqa: F403
from .classification import *  # noqa: F403
from .groups import *  # noqa: F403
from .neural_collapse import *  # noqa: F403
from .probe import *  # noqa: F403
from .ranking import *  # noqa: F403
from .retrieval import *  # noqa: F403
from .setvalued import *  # noqa: F403
from .summary import *  # noqa: F403
from .susceptibility import *  # noqa: F403

__all__: list[str] = []
__all__ += calibration.__all__
__all__ += classification.__all__
__all__ += groups.__all__
__all__ += neural_collapse.__all__
__all__ += probe.__all__
__all__ += ranking.__all__
__all__ += retrieval.__all__
__all__ += setvalued.__all__
__all__ += summary.__all__
__all__ += susceptibility.__all__

