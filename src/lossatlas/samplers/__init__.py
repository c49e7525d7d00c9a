"""Samplers: which samples form a batch (class-balanced family, CDB-S, P×K, DualSampler).

Every sampler takes the training labels, is deterministic given ``seed`` and the epoch
(:meth:`set_epoch`, as ``torch.utils.data.DistributedSampler``), and shards itself over
``num_replicas`` processes: each rank gets a disjoint share of one global, seeded draw.
Only torch and numpy are needed. Every public name of every module is re-exported here.
"""

from __future__ import annotations

from . import class_balanced, class_difficulty, dual, pk, subsample
from .class_balanced import *  # noqa: F403
from .class_difficulty import *  # noqa: F403
from .dual import *  # noqa: F403
from .pk import *  # noqa: F403
from .subsample import *  # noqa: F403

__all__: list[str] = []
__all__ += class_balanced.__all__
__all__ += class_difficulty.__all__
__all__ += dual.__all__
__all__ += pk.__all__
__all__ += subsample.__all__
