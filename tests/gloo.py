"""The harness of the distributed tests: real ``torch.distributed`` gloo processes on this machine.

:func:`run_gloo` spawns ``world`` processes, initialises a gloo group among them on a free
local port, runs ``worker(rank)`` in each (one thread per process) and returns what every
rank's worker returned, in rank order (passed back through ``torch.save`` files in
``folder``). ``worker`` must be a module-level function (it is pickled by reference).
:func:`ddp_accumulate` is the DDP step of those workers: micro-batches accumulated under
``no_sync``, synchronised on the last; :func:`shard` and :func:`encoder` give a rank's rows
and the model those steps train.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["free_port", "run_gloo", "ddp_accumulate", "shard", "encoder"]


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _entry(rank: int, worker: Callable[[int], Any], port: int, world: int, path: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        torch.set_num_threads(1)
        torch.save(worker(rank), f"{path}.{rank}")
    finally:
        dist.destroy_process_group()


def run_gloo(worker: Callable[[int], Any], folder: Path, world: int = 2) -> list[Any]:
    """``[worker(rank) for rank in range(world)]``, each run in its own process of one gloo group."""
    path = str(folder / "out")
    spawn: Any = getattr(mp, "spawn")  # torch.multiprocessing re-exports spawn without annotations
    spawn(_entry, args=(worker, free_port(), world, path), nprocs=world, join=True)
    return [torch.load(f"{path}.{r}", weights_only=False) for r in range(world)]


def ddp_accumulate(module: torch.nn.Module, loss_of: Callable[[torch.nn.Module, int], torch.Tensor], micro: int
                   ) -> list[torch.Tensor]:
    """Wrap ``module`` in ``DistributedDataParallel`` and backpropagate ``world_size ·
    loss_of(ddp, m)`` for the micro-batches ``m < micro``, all but the last under
    ``no_sync`` (gradient accumulation); returns the parameters' (averaged) gradients. The
    world size undoes DDP's average, so a loss of the global batch gets its own gradient."""
    ddp = torch.nn.parallel.DistributedDataParallel(module)
    world = dist.get_world_size()
    for m in range(micro):
        if m < micro - 1:
            with ddp.no_sync():
                (loss_of(ddp, m) * world).backward()
        else:
            (loss_of(ddp, m) * world).backward()
    return [p.grad.detach().clone() for p in module.parameters() if p.grad is not None]


def shard(rank: int, sizes: Sequence[int]) -> slice:
    """The rows of ``rank`` in the concatenation of shards of ``sizes`` (rank order)."""
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def encoder(d_in: int, d: int) -> torch.nn.Module:
    """A small float64 MLP ``d_in → 6 → d``, the same weights at every call (seeded)."""
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(d_in, 6), torch.nn.Tanh(), torch.nn.Linear(6, d)).double()
