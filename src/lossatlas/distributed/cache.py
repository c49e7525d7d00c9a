"""Cached-representation backward (GradCache, Gao et al. 2021; catalogue row G9).

A contrastive loss couples every sample of the batch, so plain chunking of the encoder is not
possible: the loss needs all embeddings at once. GradCache splits the step in three:

1. embed the batch in chunks **without** a graph (saving each chunk's RNG state);
2. compute the loss on the detached embeddings and backpropagate it to them only, which
   gives the *cached* gradient ``dL/de`` of every embedding;
3. re-embed each chunk **with** a graph (same RNG state, so dropout is identical) and
   backpropagate ``<e_chunk, dL/de_chunk>``.

The parameter gradients are exactly those of ``loss_fn(encoder(x))`` on the whole batch,
while the encoder's activations are held for one chunk at a time. Combined with a tiled
loss (``tiled=True``) neither the encoder nor the loss grows quadratically with the batch.
Caveat shared with the original: layers with batch statistics (BatchNorm) see chunks, not
the whole batch, and update their running statistics twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["cached_backward"]


def _devices(x: Tensor) -> list[int]:
    return [x.device.index or 0] if x.is_cuda else []


def cached_backward(
    loss_fn: Callable[..., Tensor],
    encoders: Callable[[Tensor], Tensor] | Sequence[Callable[[Tensor], Tensor]],
    inputs: Sequence[Tensor],
    chunk_size: int,
    *,
    preserve_rng_state: bool = True,
) -> Tensor:
    """Run ``loss_fn(*[enc(x) for enc, x in zip(encoders, inputs)])`` and its backward in chunks.

    Args:
        loss_fn: maps the full-batch embeddings (one tensor per input) to a scalar loss, e.g.
            ``lossatlas.create("infonce", tiled=True)``.
        encoders: one callable per input, or one callable shared by all inputs.
        inputs: batch-first tensors (e.g. the two augmented views).
        chunk_size: samples per encoder call (> 0).
        preserve_rng_state: replay each chunk's RNG state in the second pass (dropout).

    Returns the loss, detached. Gradients are *accumulated* into the encoders' parameters
    (and into the parameters of ``loss_fn``, e.g. a learnable temperature), as
    ``loss.backward()`` would.

    Example:
        >>> import torch, lossatlas as la
        >>> from lossatlas.distributed import cached_backward
        >>> enc = torch.nn.Linear(8, 4)
        >>> loss = cached_backward(la.create("infonce"), enc, [torch.randn(16, 8), torch.randn(16, 8)], chunk_size=4)
        >>> enc.weight.grad.shape
        torch.Size([4, 8])
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if isinstance(inputs, Tensor) or not isinstance(inputs, Sequence) or not inputs:
        raise TypeError("inputs must be a non-empty sequence of tensors, e.g. [view_a, view_b]")
    if callable(encoders) and not isinstance(encoders, (list, tuple)):
        encs = [encoders] * len(inputs)
    else:
        encs = list(encoders)
        if len(encs) != len(inputs):
            raise ValueError(f"encoders has {len(encs)} entries but inputs has {len(inputs)}; pass one encoder per input or a single shared one")
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"inputs[{i}] must be a torch.Tensor, got {type(x).__name__}")

    # 1. embeddings without graph, remembering the RNG state of every chunk.
    states: list[list[Any]] = []
    embeddings: list[Tensor] = []
    for enc, x in zip(encs, inputs):
        chunk_states, parts = [], []
        for chunk in x.split(chunk_size):
            if preserve_rng_state:
                chunk_states.append((torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in _devices(chunk)]))
            with torch.no_grad():
                parts.append(enc(chunk))
        states.append(chunk_states)
        embeddings.append(torch.cat(parts).detach().requires_grad_())

    # 2. the loss on the cached embeddings; its backward stops at them (and at loss_fn's own
    #    parameters, which receive their gradient here).
    loss = loss_fn(*embeddings)
    if loss.dim() != 0:
        raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}; use reduction='mean' or 'sum'")
    loss.backward()
    grads = [e.grad if e.grad is not None else torch.zeros_like(e) for e in embeddings]

    # 3. re-embed chunk by chunk with graph and push the cached gradient through.
    for enc, x, g, chunk_states in zip(encs, inputs, grads, states):
        for j, (chunk, g_chunk) in enumerate(zip(x.split(chunk_size), g.split(chunk_size))):
            if preserve_rng_state:
                cpu_state, cuda_states = chunk_states[j]
                with torch.random.fork_rng(devices=_devices(chunk)):
                    torch.set_rng_state(cpu_state)
                    for d, st in zip(_devices(chunk), cuda_states):
                        torch.cuda.set_rng_state(st, d)
                    e = enc(chunk)
            else:
                e = enc(chunk)
            if e.requires_grad:
                e.backward(g_chunk.to(e.dtype))
    return loss.detach()
