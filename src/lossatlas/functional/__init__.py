"""Pure-function twins of every lossatlas loss, one module per family.

Every public name of every family module (its ``__all__``) is re-exported here, so
``lossatlas.functional.ldam`` is ``lossatlas.functional.imbalance.ldam``. New family
modules are discovered automatically.
"""

from __future__ import annotations

from .._discovery import export_family_modules

__all__: list[str] = export_family_modules(__name__, __path__, globals())
