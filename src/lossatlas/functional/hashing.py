"""Deep hashing with one cosine loss, OrthoHash (catalogue row F10), as a pure function.

The continuous codes ``v`` [N, K] (K bits before the sign) are compared by cosine with a fixed
codebook of ±1 class codes [C, K]; the loss is CosFace's on those cosines, plus an optional
quantisation term pulling ``v`` towards ``sign(v)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._spec import Param, loss_function, nonnegative, positive
from .._validation import (
    check_class_indices,
    check_finite,
    check_float,
    check_reduction,
    check_same_device,
    compiling,
)
from ._common import compute_dtype, reduce_loss

__all__ = ["orthohash", "bernoulli_codebook"]

ORTHOHASH = "kamwoh/orthohash main.py"


def bernoulli_codebook(num_classes: int, num_bits: int, seed: int = 0) -> Tensor:
    """A ±1 codebook [num_classes, num_bits], each bit +1 or −1 with probability ½ (the official
    default, ``--codebook-method B``), drawn from its own generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((num_classes, num_bits), 0.5, dtype=torch.float64), generator=g) * 2.0 - 1.0


def _check(embeddings: Any, labels: Any, codebook: Any, reduction: str, validate: bool) -> tuple[Tensor, Tensor, Tensor]:
    check_reduction(reduction)
    v = check_float(embeddings, "embeddings")
    if v.dim() != 2:
        raise ValueError(f"embeddings must have shape [N, K] (one continuous code per row), got {tuple(v.shape)}")
    c = check_float(codebook, "codebook")
    if c.dim() != 2 or c.shape[1] != v.shape[1]:
        raise ValueError(f"codebook must have shape [num_classes, K] = [C, {v.shape[1]}], got {tuple(c.shape)}")
    check_same_device("embeddings", v, "codebook", c)
    check_finite(v, "embeddings", validate, codebook=c)
    y = check_class_indices(labels, "labels", "OrthoHash takes class indices")
    if y.shape != (v.shape[0],):
        raise ValueError(f"labels must have shape [N] = [{v.shape[0]}] (one class per code), got {tuple(y.shape)}")
    check_same_device("embeddings", v, "labels", y)
    if validate and not compiling() and y.numel():
        lo, hi = (int(t) for t in torch.aminmax(y))
        if lo < 0 or hi >= c.shape[0]:
            raise ValueError(f"labels values must be in [0, {c.shape[0]}) (the codebook has {c.shape[0]} class codes); "
                             f"found values in [{lo}, {hi}]")
    return v, y, c


@loss_function(inputs=("embeddings", "labels", "codebook"), params={
    "scale": Param("s > 0, the scale of the cosine logits", positive, f"{ORTHOHASH} --scale default 8"),
    "margin": Param("m ≥ 0 subtracted from the target cosine (CosFace's margin)", nonnegative,
                    f"{ORTHOHASH} --margin default 0.2 (--margin-type cos)"),
    "quantization": Param("weight ≥ 0 of the quantisation term 1 − cos(v, sign(v)) (sign detached)", nonnegative,
                          f"{ORTHOHASH} --quan default 0.0 (--quan-type cs)"),
})
def orthohash(
    embeddings: Tensor,
    labels: Tensor,
    codebook: Tensor,
    *,
    scale: float = 8.0,
    margin: float = 0.2,
    quantization: float = 0.0,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """OrthoHash ``CE(s(cos(v, c_j) − m·1[j = y])) + λ_q (1 − cos(v, sign v))``; see
    :class:`lossatlas.losses.OrthoHashLoss`."""
    v, y, c = _check(embeddings, labels, codebook, reduction, validate)
    out_dtype = v.dtype
    dt = torch.promote_types(compute_dtype(v), compute_dtype(c))
    v, c = v.to(dt), c.to(dt)
    cos = F.normalize(v, dim=1) @ F.normalize(c, dim=1).T
    logits = scale * cos.scatter_add(1, y.unsqueeze(1), torch.full_like(cos[:, :1], -margin))
    losses = F.cross_entropy(logits, y, reduction="none")
    if quantization != 0.0:
        losses = losses + quantization * (1.0 - F.cosine_similarity(v, v.detach().sign(), dim=1))
    return reduce_loss(losses, reduction, None, out_dtype)
