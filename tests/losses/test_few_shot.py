"""F8: proto-triplet and ICNN losses (few-shot): the official formulas, limits, gradients, bad input."""

from __future__ import annotations

import math

import pytest
import torch

import lossatlas as la
from helpers import gradcheck_loss

G = torch.Generator().manual_seed(8)


def _dist(a, b):  # the official nearest_neighbors distance
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(2).add(1e-6).sqrt()


def _official_proto_triplet(q, y, protos, margin=0.5):
    # maumruiz/FSL-Loss proto_triplet_loss, per query: its own prototype's distance, the nearest other one's
    d = _dist(q, protos)
    out = []
    for i in range(q.shape[0]):
        pos = d[i, y[i]]
        neg = min(d[i, j] for j in range(protos.shape[0]) if j != y[i])
        out.append(torch.clamp(pos - neg + margin, min=0))
    return torch.stack(out).mean()


def _official_icnn_score(x, y, k=4, ipc=None):
    # modified_score of maumruiz/FSL-Loss written as loops over the samples
    n, eps = x.shape[0], 1e-7
    k = n - 2 if k + 2 >= n else k
    ipc = k + 1 if ipc is None else ipc
    d = _dist(x, x)
    sc_terms, dc_terms, sc_rows, dc_rows, gam = [], [], 0, 0, 0.0
    rows = []
    for i in range(n):
        order = torch.argsort(d[i])[1:ipc + 1]  # drop the sample itself
        dist, same = d[i, order], (y[order] == y[i])
        diff_d = [dist[j] for j in range(ipc) if not same[j]]
        nn_dc = min(diff_d) if diff_d else math.inf
        nd = dist[:k] / (nn_dc + eps) if diff_d else torch.zeros_like(dist[:k])
        nd = nd / max(1.0, float(nd.max()))
        rows.append((dist[:k], same[:k], nd))
        gam += float(same[:k].sum()) / k
    dc_max = max([float(r[0][~r[1]].max()) for r in rows if (~r[1]).any()] + [0.0])
    any_dc = any(bool((~r[1]).any()) for r in rows)
    for dist, same, nd in rows:
        c_sc, c_dc = int(same.sum()), int((~same).sum())
        sc_terms.append((nd * same).sum() / (c_sc + eps))
        dc_terms.append((dist * ~same).sum() / (dc_max + eps) / (c_dc + eps))
        sc_rows += c_sc > 0
        dc_rows += c_dc > 0
    sc_lamb = 1 - torch.stack(sc_terms).sum() / (sc_rows + eps)
    dc_lamb = torch.stack(dc_terms).sum() / (dc_rows + eps)
    dc_lamb = abs(dc_lamb + (0 if any_dc else -1))
    gamma = gam / n if k + 2 < n else 1.0
    return ((sc_lamb + dc_lamb) / 2 + gamma) / 2


@pytest.mark.parametrize("margin", [0.5, 2.0])
def test_proto_triplet_is_the_official_loss(margin):
    q = torch.randn(12, 5, generator=G, dtype=torch.float64)
    y = torch.arange(12) % 4
    protos = torch.randn(4, 5, generator=G, dtype=torch.float64)
    got = la.functional.proto_triplet(q, y, prototypes=protos, margin=margin)
    torch.testing.assert_close(got, _official_proto_triplet(q, y, protos, margin), rtol=1e-12, atol=1e-12)
    # prototype labels in another order: the same prototypes
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(la.functional.proto_triplet(q, y, prototypes=protos[perm], prototype_labels=perm,
                                                           margin=margin), got)
    # default prototypes: the class means of the batch
    means = torch.stack([q[y == c].mean(0) for c in range(4)])
    torch.testing.assert_close(la.functional.proto_triplet(q, y, margin=margin),
                               la.functional.proto_triplet(q, y, prototypes=means, margin=margin))


def test_proto_triplet_limits():
    protos = torch.tensor([[0.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    q = torch.tensor([[0.2, 0.0], [2.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    # each query 0.2 / 1.0 from its prototype, 2.8 / 2.0 from the other: relu(d+ - d- + m)
    none = la.functional.proto_triplet(q, y, prototypes=protos, margin=1.5, reduction="none")
    want = torch.clamp(torch.tensor([math.sqrt(0.04 + 1e-6) - math.sqrt(7.84 + 1e-6),
                                     math.sqrt(1 + 1e-6) - math.sqrt(4 + 1e-6)], dtype=torch.float64) + 1.5, min=0)
    torch.testing.assert_close(none, want)
    assert none[0] == 0 and none[1] > 0
    # one class only: no negative prototype, no loss
    assert float(la.functional.proto_triplet(q, torch.tensor([0, 0]), prototypes=protos[:1])) == 0.0


@pytest.mark.parametrize(("k", "neighbors"), [(4, None), (2, 6), (3, 2), (20, None)])
def test_icnn_is_the_official_modified_score(k, neighbors):
    x = torch.randn(15, 4, generator=G, dtype=torch.float64)
    y = torch.arange(15) % 3
    got = la.functional.icnn_score(x, y, k, neighbors)
    want = _official_icnn_score(x, y, k, neighbors)
    torch.testing.assert_close(got, torch.as_tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(la.functional.icnn(x, y, k=k, neighbors=neighbors), -torch.log(got))


def test_icnn_separated_tight_classes_score_one_and_mixed_ones_less():
    centres = torch.tensor([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0]], dtype=torch.float64)
    y = torch.arange(15) % 3
    tight = centres[y] + 0.01 * torch.randn(15, 2, generator=G, dtype=torch.float64)
    loss_tight = la.functional.icnn(tight, y, k=4)
    assert 0 <= float(loss_tight) < 1e-3
    mixed = torch.randn(15, 2, generator=G, dtype=torch.float64)
    assert float(la.functional.icnn(mixed, y, k=4)) > 0.1
    none = la.functional.icnn(mixed, y, reduction="none")
    assert none.shape == (1,)
    assert la.functional.icnn(mixed[:0], y[:0], reduction="none").shape == (0,)


def test_gradcheck_and_modules():
    x = torch.randn(9, 3, generator=G, dtype=torch.float64)
    y = torch.arange(9) % 3
    protos = torch.randn(3, 3, generator=G, dtype=torch.float64)
    gradcheck_loss(lambda a, b: la.functional.proto_triplet(a, y, prototypes=b, margin=3.0), x, protos)
    gradcheck_loss(lambda a: la.functional.icnn(a, y, k=3), x)
    torch.testing.assert_close(la.create("icnn", k=3)(x, y), la.functional.icnn(x, y, k=3))
    torch.testing.assert_close(la.create("proto_triplet", margin=3.0)(x, y, prototypes=protos),
                               la.functional.proto_triplet(x, y, prototypes=protos, margin=3.0))


def test_bad_input_names_the_argument():
    x = torch.randn(6, 3, generator=G, dtype=torch.float64)
    y = torch.arange(6) % 3
    with pytest.raises(ValueError, match="prototypes"):
        la.functional.proto_triplet(x, y, prototypes=torch.randn(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="prototype_labels"):
        la.functional.proto_triplet(x, y, prototypes=torch.randn(3, 3, dtype=torch.float64), prototype_labels=y)
    with pytest.raises(ValueError, match="prototype"):
        la.functional.proto_triplet(x, y, prototypes=torch.randn(2, 3, dtype=torch.float64))  # class 2 has none
    with pytest.raises(ValueError, match="prototypes"):
        la.functional.proto_triplet(x, y, prototype_labels=y[:3])
    with pytest.raises(ValueError, match="margin"):
        la.create("proto_triplet", margin=-1.0)
    with pytest.raises(ValueError, match="3 embeddings"):
        la.functional.icnn(x[:2], y[:2])
    with pytest.raises(ValueError, match="k"):
        la.functional.icnn(x, y, k=0)
    with pytest.raises(TypeError, match="neighbors"):
        la.create("icnn", neighbors=2.5)
    with pytest.raises(ValueError, match="labels"):
        la.functional.icnn(x, y[:4])
