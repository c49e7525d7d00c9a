"""Auto-discovery of family modules, so adding a family never edits a shared file."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, MutableMapping
from typing import Any


def export_family_modules(package: str, path: Iterable[str], namespace: MutableMapping[str, Any]) -> list[str]:
    """Import every non-private submodule of ``package`` and copy its ``__all__`` into ``namespace``.

    Returns the exported names. Two modules exporting the same name is an error.
    """
    exported: list[str] = []
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        namespace[info.name] = module
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if name in namespace and namespace[name] is not value:
                raise ImportError(f"{package}: {name!r} is exported by two family modules")
            namespace[name] = value
            exported.append(name)
    return exported
