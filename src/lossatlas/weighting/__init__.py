"""Weightings: map (per-sample losses, targets, epoch) to weights; they compose with any loss.

Every public name of every family module (its ``__all__``) is re-exported here, so
``lossatlas.weighting.DRW`` is ``lossatlas.weighting.class_balanced.DRW``. New family
modules are discovered automatically.
"""

from __future__ import annotations

from .._discovery import export_family_modules

__all__: list[str] = export_family_modules(__name__, __path__, globals())
