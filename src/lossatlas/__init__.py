"""lossatlas: loss functions, samplers, re-weighting and metrics for hard data.

>>> import torch, lossatlas as la
>>> crit = la.create("ldam", class_counts=[500, 50, 5])
>>> crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 2])).ndim
0
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import (
    data,
    distances,
    distributed,
    functional,
    heads,
    losses,
    memory,
    miners,
    negatives,
    optim,
    reducers,
    samplers,
    two_stage,
    weighting,
)
from ._opaque import traced_kernels
from .losses import FunctionalLoss, Loss
from .registry import Entry, Paper, create, families, info, list_entries

if TYPE_CHECKING:  # imported on first use: it needs the optional torchmetrics
    from . import metrics

__version__ = "0.1.0"

list = list_entries  # noqa: A001 - the documented public name is lossatlas.list

__all__ = [
    "create", "list", "info", "families", "Entry", "Paper", "Loss", "FunctionalLoss",
    "functional", "losses", "heads", "weighting", "samplers", "miners", "distances", "reducers", "memory", "negatives",
    "two_stage", "traced_kernels",
    "distributed", "data", "metrics", "optim",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # lossatlas.metrics is an attribute of the package like the others, but it is imported
    # only when first used, because it needs the optional torchmetrics ('lossatlas[bench]').
    if name == "metrics":
        return importlib.import_module(".metrics", __name__)
    raise AttributeError(f"module 'lossatlas' has no attribute {name!r}")
