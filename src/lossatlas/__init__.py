"""lossatlas: loss functions, samplers, re-weighting and metrics for hard data.

>>> import torch, lossatlas as la
>>> crit = la.create("ldam", class_counts=[500, 50, 5])
>>> crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 2])).ndim
0
"""

from __future__ import annotations

from . import data, functional, losses, samplers, weighting
from .registry import Entry, Paper, create, families, info, list_entries

__version__ = "0.1.0"

list = list_entries  # noqa: A001 - the documented public name is lossatlas.list

__all__ = ["create", "list", "info", "families", "functional", "losses", "weighting", "data", "Entry", "Paper", "__version__"]
