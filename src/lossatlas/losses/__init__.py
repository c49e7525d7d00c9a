"""nn.Module losses, one module per family; importing registers them.

Every public name of every family module (its ``__all__``) is re-exported here, so
``lossatlas.losses.LDAMLoss`` is ``lossatlas.losses.imbalance.LDAMLoss``. New family
modules are discovered automatically.
"""

from __future__ import annotations

from .._discovery import export_family_modules

__all__: list[str] = export_family_modules(__name__, __path__, globals())
