"""nn.Module losses, one module per family; importing registers them.

Every public name of every family module (its ``__all__``) is re-exported here, so
``lossatlas.losses.LDAMLoss`` is ``lossatlas.losses.imbalance.LDAMLoss``. Adding a family
module means adding it to the import lists below.
"""

from __future__ import annotations

from . import (
    auc,
    calibration,
    distillation,
    few_shot,
    hashing,
    imbalance,
    metric,
    mixup_metric,
    multilabel,
    noise,
    non_negative,
    ranking,
    regression_contrastive,
    single_positive,
    ssl,
    subclass_contrastive,
    submodular,
)
from ._base import FunctionalLoss, Loss
from .auc import *  # noqa: F403
from .calibration import *  # noqa: F403
from .distillation import *  # noqa: F403
from .few_shot import *  # noqa: F403
from .hashing import *  # noqa: F403
from .imbalance import *  # noqa: F403
from .metric import *  # noqa: F403
from .mixup_metric import *  # noqa: F403
from .multilabel import *  # noqa: F403
from .noise import *  # noqa: F403
from .non_negative import *  # noqa: F403
from .ranking import *  # noqa: F403
from .regression_contrastive import *  # noqa: F403
from .single_positive import *  # noqa: F403
from .ssl import *  # noqa: F403
from .subclass_contrastive import *  # noqa: F403
from .submodular import *  # noqa: F403

__all__: list[str] = ["Loss", "FunctionalLoss"]
__all__ += imbalance.__all__
__all__ += noise.__all__
__all__ += calibration.__all__
__all__ += multilabel.__all__
__all__ += metric.__all__
__all__ += ssl.__all__
__all__ += auc.__all__
__all__ += ranking.__all__
__all__ += distillation.__all__
__all__ += single_positive.__all__
__all__ += non_negative.__all__
__all__ += regression_contrastive.__all__
__all__ += hashing.__all__
__all__ += subclass_contrastive.__all__
__all__ += mixup_metric.__all__
__all__ += few_shot.__all__
__all__ += submodular.__all__
