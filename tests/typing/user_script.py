"""A user's training step, type-checked by CI with ``mypy --strict`` (no ``type: ignore``).

It is also run by tests/test_public_api.py, so what it does must work, not only type-check.
"""

from __future__ import annotations

import torch
from torch import Tensor

import lossatlas as la


def train_step(logits: Tensor, target: Tensor, embeddings: Tensor, labels: Tensor) -> float:
    counts = [50, 20, 5]
    crit = la.create("ldam", class_counts=counts)
    loss: Tensor = crit(logits, target)
    loss = loss + la.functional.focal(logits, target, gamma=2.0)
    loss = loss + la.functional.logit_adjusted(logits, target, counts, tau=1.0)

    drw = la.create("drw", class_counts=counts, start_epoch=1)
    drw.set_epoch(2)
    weights: Tensor = drw()
    per_sample: Tensor = la.create("cross_entropy", reduction="none")(logits, target)
    loss = loss + la.weighting.apply(per_sample, drw, target)
    loss = loss + la.functional.cross_entropy(logits, target, weight=weights)

    pairs = la.miners.MultiSimilarityMiner(epsilon=0.1)(embeddings, labels)
    loss = loss + la.functional.multi_similarity(embeddings, labels, indices=pairs)

    sampler = la.create("class_balanced_sampler", labels=target.tolist())
    first: list[int] = list(iter(sampler))[:2]
    assert len(first) == 2
    sampler2 = la.samplers.SquareRootSampler(target.tolist())
    assert len(sampler2) == target.numel()

    # retrieval negatives: a miner over a corpus index, and NGAME's batches of whole clusters
    index = la.negatives.CorpusIndex(lambda x: x, embeddings.detach())
    miner = la.create("ance", num=2, depth=4, refresh_every=5)
    negatives: Tensor = miner.mine(index, embeddings.detach()[:3], torch.arange(3))
    assert negatives.shape == (3, 2)
    refreshed: bool = miner.step(index)
    assert not refreshed
    ngame = la.create("ngame", embeddings=embeddings.detach(), batch_size=4, cluster_size=2)
    ngame.set_epoch(1)
    batches: list[list[int]] = list(ngame)
    assert sorted(i for b in batches for i in b) == list(range(embeddings.shape[0]))

    acc = la.metrics.ShotAccuracy(num_classes=3, train_class_counts=counts)
    acc.update(logits.detach(), target)
    shots: dict[str, Tensor] = acc.compute()
    assert "balanced_accuracy" in shots

    loss.backward()
    return float(loss.detach())


if __name__ == "__main__":
    g = torch.Generator().manual_seed(0)
    z = torch.randn(12, 3, generator=g, requires_grad=True)
    y = torch.arange(12) % 3
    e = torch.randn(12, 8, generator=g, requires_grad=True)
    print(train_step(z, y, e, y))
