"""Optimisers of the min-max AUC objectives (catalogue row H2): :class:`PESG` for AUC-M and
:class:`PDSCA` for compositional AUC, as ``torch.optim.Optimizer`` subclasses whose whole
state (momentum buffers, reference points of the epoch-level regulariser, step counters) is in
``state_dict``; and :class:`ImbSAM` (row A14), class-aware sharpness-aware minimisation around
any ``torch.optim`` optimiser.

>>> import torch, lossatlas as la
>>> crit = la.create("aucm")
>>> opt = la.optim.PESG(torch.nn.Linear(2, 1).parameters(), loss_fn=crit)
>>> len(opt.param_groups[0]["params"])  # the model's weight and bias, the loss's a and b
4
"""

from __future__ import annotations

from .imbsam import ImbSAM, tail_classes
from .pdsca import PDSCA
from .pesg import PESG

__all__ = ["PESG", "PDSCA", "ImbSAM", "tail_classes"]
