"""Optimisers of the min-max AUC objectives (catalogue row H2): :class:`PESG` for AUC-M and
:class:`PDSCA` for compositional AUC, as ``torch.optim.Optimizer`` subclasses whose whole
state (momentum buffers, reference points of the epoch-level regulariser, step counters) is in
``state_dict``.

>>> import torch, lossatlas as la
>>> crit = la.create("aucm")
>>> opt = la.optim.PESG(torch.nn.Linear(2, 1).parameters(), loss_fn=crit)
>>> len(opt.param_groups[0]["params"])  # the model's weight and bias, the loss's a and b
4
"""

from __future__ import annotations

from .pdsca import PDSCA
from .pesg import PESG

__all__ = ["PESG", "PDSCA"]
