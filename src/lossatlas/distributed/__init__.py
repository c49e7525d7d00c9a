"""Contrastive learning at scale: tiled losses, cached representations, all-gather with grad.

* :mod:`.tiled`: row/column log-sum-exp and SigLIP sums of ``scale * q k^T`` computed in
  blocks with a custom backward (memory linear in the batch; same values and gradients).
* :mod:`.cache`: :func:`cached_backward`, the GradCache three-pass step.
* :mod:`.gather`: :func:`all_gather_with_grad` and the global-reduction convention used by
  every contrastive loss with ``distributed=True``.
"""

from __future__ import annotations

from .cache import cached_backward
from .gather import all_gather_with_grad, global_reduce, is_distributed, rank, replicated_loss, world_size
from .tiled import block_rows, pairwise_logsumexp, pairwise_softplus_sum

__all__ = [
    "cached_backward",
    "all_gather_with_grad",
    "global_reduce",
    "replicated_loss",
    "is_distributed",
    "world_size",
    "rank",
    "pairwise_logsumexp",
    "pairwise_softplus_sum",
    "block_rows",
]
