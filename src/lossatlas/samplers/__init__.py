"""Samplers: which samples form a batch (class-balanced family, CDB-S, P×K).

Every sampler takes the training labels, is deterministic given ``seed`` and the epoch
(:meth:`set_epoch`, as ``torch.utils.data.DistributedSampler``), and shards itself over
``num_replicas`` processes: each rank gets a disjoint share of one global, seeded draw.
Only torch and numpy are needed.

Every public name of every family module (its ``__all__``) is re-exported here; new
modules are discovered automatically.
"""

from __future__ import annotations

from .._discovery import export_family_modules

__all__: list[str] = export_family_modules(__name__, __path__, globals())
