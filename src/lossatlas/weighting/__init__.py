"""Weightings: map (per-sample losses, targets, epoch) to weights; they compose with any loss.

Every public name of every module (its ``__all__``) is re-exported here, so
``lossatlas.weighting.DRW`` is ``lossatlas.weighting.class_balanced.DRW``.
"""

from __future__ import annotations

from . import absgd, base, class_balanced, class_difficulty, group_dro, loss_based
from .absgd import *  # noqa: F403
from .base import *  # noqa: F403
from .class_balanced import *  # noqa: F403
from .class_difficulty import *  # noqa: F403
from .group_dro import *  # noqa: F403
from .loss_based import *  # noqa: F403

__all__: list[str] = []
__all__ += base.__all__
__all__ += class_balanced.__all__
__all__ += class_difficulty.__all__
__all__ += absgd.__all__
__all__ += loss_based.__all__
__all__ += group_dro.__all__
