"""Which internal computation path a loss takes, and a way to force one (for tests).

A loss has at most two paths, both plain PyTorch: ``"plain"`` (composed torch operators,
the path for CUDA and ``torch.compile``) and ``"fused"`` (a hand-written
``torch.autograd.Function`` that saves passes on large CPU inputs). They give the same
values and gradients; which one runs is a speed decision made from the input's size, and
:func:`force_path` overrides it so that the conformance tests can compare the two on
every input.

>>> import torch, lossatlas as la
>>> from lossatlas._paths import force_path
>>> with force_path("fused"):
...     fused = la.functional.focal(torch.randn(4, 3, requires_grad=True), torch.tensor([0, 1, 2, 0]))
>>> fused.ndim
0
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

import torch

__all__ = ["PATHS", "force_path", "take_fused", "compiling", "backward_keeps_graph"]

PATHS: tuple[str, ...] = ("plain", "fused")
_FORCED: ContextVar[str | None] = ContextVar("lossatlas_forced_path", default=None)


def compiling() -> bool:
    """True while ``torch.compile`` (dynamo) traces the caller."""
    return bool(torch.compiler.is_compiling())


_KEEP_GRAPH = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)


def backward_keeps_graph() -> bool | None:
    """Inside a backward: whether it keeps its graph (``retain_graph=True``), so that a saved
    buffer must stay as it is; ``None`` where this torch cannot say (a private query of the
    autograd engine, present in torch 2.13 and 2.14)."""
    return None if _KEEP_GRAPH is None else bool(_KEEP_GRAPH())


@contextmanager
def force_path(path: Literal["plain", "fused"] | None) -> Iterator[None]:
    """Run every loss inside the block on ``path`` (``None`` restores the size-based choice).

    The fused path still needs a gradient to be worth anything, but it is taken whenever it
    is forced, except while ``torch.compile`` traces (compiled code always takes ``"plain"``).
    """
    if path is not None and path not in PATHS:
        raise ValueError(f"path must be one of {PATHS} or None, got {path!r}")
    token = _FORCED.set(path)
    try:
        yield
    finally:
        _FORCED.reset(token)


def take_fused(x: torch.Tensor, min_numel: int, cpu_only: bool = True) -> bool:
    """Whether a loss with a fused path should take it for input ``x``.

    Forced paths win; otherwise: a tensor (on the CPU, with ``cpu_only``) that needs a
    gradient (with grad mode on) and has at least ``min_numel`` elements, and nothing is
    being traced by ``torch.compile`` (it fuses the plain path itself).
    """
    if compiling() or x.numel() == 0:
        return False
    forced = _FORCED.get()
    if forced is not None:
        return forced == "fused"
    return (
        (x.device.type == "cpu" or not cpu_only)
        and x.requires_grad
        and torch.is_grad_enabled()
        and x.numel() >= max(min_numel, 1)
    )
