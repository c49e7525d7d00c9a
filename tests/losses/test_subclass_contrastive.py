"""G13: subclass-balancing contrastive learning (SBCL): the official loss, identities, gradients, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
from helpers import gradcheck_loss

G = torch.Generator().manual_seed(13)


def _official_rank_loss(features, labels, cluster, class_tau, tau=0.1, tau_b=0.07, gamma=0.25):
    """JackHck/SBCL SimCLR/loss.py SupConLoss_rank as a loop over anchors: features [bsz, 2, D] (unit rows),
    global cluster ids; row v·bsz + i is sample i's view v."""
    bsz, views, _ = features.shape
    x = torch.cat(torch.unbind(features, 1))
    y, c = labels.repeat(views), cluster.repeat(views)
    sample = torch.arange(bsz).repeat(views)
    n = x.shape[0]
    losses = []
    for i in range(n):
        s = x[i] @ x.T
        others = [k for k in range(n) if k != i]
        den1 = torch.logsumexp(s[others] / tau, 0)
        pos1 = [p for p in others if c[p] == c[i]]
        t1 = torch.stack([s[p] / tau - den1 for p in pos1]).mean()
        ti = class_tau[y[i]]
        views_i = [k for k in others if sample[k] == sample[i]]
        den2 = torch.logsumexp(s[views_i + [k for k in others if c[k] != c[i]]] / ti, 0)
        pos2 = views_i + [p for p in others if y[p] == y[i] and c[p] != c[i]]
        t2 = torch.stack([s[p] / ti - den2 for p in pos2]).mean()
        losses.append(-(tau / tau_b) * t1 - gamma * t2)
    return torch.stack(losses).mean()


def _views(bsz=8, d=5):
    f = F.normalize(torch.randn(bsz, 2, d, generator=G, dtype=torch.float64), dim=2)
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 1, 2])[:bsz]
    within = torch.tensor([0, 1, 0, 2, 1, 0, 1, 0])[:bsz]  # class 0: 3 subclasses, class 1: 2, class 2: 1
    return f, labels, within


@pytest.mark.parametrize(("tau", "tau_b", "gamma"), [(0.1, 0.07, 0.25), (0.5, 0.2, 1.5)])
def test_sbcl_is_the_official_ranking_loss(tau, tau_b, gamma):
    f, labels, within = _views()
    global_ids = within + torch.tensor([0, 3, 5])[labels]  # the official cluster ids are offset per class
    class_tau = torch.tensor([0.08, 0.12, tau], dtype=torch.float64)
    want = _official_rank_loss(f, labels, global_ids, class_tau, tau, tau_b, gamma)
    got = la.functional.sbcl(f, labels, subclass=within, class_temperature=class_tau, temperature=tau,
                             base_temperature=tau_b, gamma=gamma)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # global ids or ids within each class: the same subclasses
    torch.testing.assert_close(la.functional.sbcl(f, labels, subclass=global_ids, class_temperature=class_tau,
                                                  temperature=tau, base_temperature=tau_b, gamma=gamma), got)


def test_sbcl_without_subclasses_or_class_term_is_supcon():
    e = torch.randn(10, 4, generator=G, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 3])
    # one subclass per class, no views: the class term has no positives, the subclass term is SupCon (all anchors)
    supcon = la.functional.supcon(e, y, temperature=0.1, base_temperature=0.07, average_over="all_anchors", reduction="none")
    torch.testing.assert_close(la.functional.sbcl(e, y, reduction="none"), supcon)
    # γ = 0: SupCon over the (class, subclass) pairs
    sub = torch.tensor([0, 1, 0, 0, 1, 0, 0, 1, 0, 1])
    pairs = y * 2 + sub
    torch.testing.assert_close(la.functional.sbcl(e, y, subclass=sub, gamma=0.0, temperature=0.3, reduction="none"),
                               la.functional.supcon(e, pairs, temperature=0.3, base_temperature=0.07,
                                                    average_over="all_anchors", reduction="none"))


def test_sbcl_class_term_closed_form_and_invariances():
    # three unit rows: 0 and 1 in class 0 (subclasses 0, 1), 2 in class 1; class term of anchor 0 alone:
    # positives {1}, denominator {1, 2}: -log(e^{s01/t} / (e^{s01/t} + e^{s02/t}))
    e = F.normalize(torch.randn(3, 4, generator=G, dtype=torch.float64), dim=1)
    y, sub = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0])
    t = 0.4
    none = la.functional.sbcl(e, y, subclass=sub, temperature=t, gamma=1.0, reduction="none")
    s = e @ e.T
    term2 = -torch.log_softmax(torch.stack([s[0, 1], s[0, 2]]) / t, 0)[0]
    torch.testing.assert_close(none[0], term2)  # anchor 0 has no other row of its subclass: no subclass term
    # the embeddings' scale does not matter (cosine similarities); a per-class temperature equal to τ is no change
    torch.testing.assert_close(la.functional.sbcl(3.0 * e, y, subclass=sub, reduction="none", temperature=t, gamma=1.0), none)
    torch.testing.assert_close(la.functional.sbcl(e, y, subclass=sub, class_temperature=torch.full((2,), t),
                                                  temperature=t, gamma=1.0, reduction="none"), none)
    hot = la.functional.sbcl(e, y, subclass=sub, class_temperature=torch.tensor([0.1, t]), temperature=t, gamma=1.0,
                             reduction="none")
    assert not torch.allclose(hot[0], none[0]) and torch.allclose(hot[2], none[2])


def test_sbcl_subclass_counts_are_the_officials():
    # n_c // max(min n, 10), at least 1
    assert la.functional.sbcl_subclass_counts([500, 100, 20, 5]) == [50, 10, 2, 1]
    assert la.functional.sbcl_subclass_counts([5000, 2000, 700, 50]) == [100, 40, 14, 1]
    assert la.functional.sbcl_subclass_counts(torch.tensor([30, 12])) == [2, 1]
    with pytest.raises(ValueError, match="class_counts"):
        la.functional.sbcl_subclass_counts([10, 0])


def test_sbcl_gradcheck_and_module():
    f, labels, within = _views(bsz=5, d=3)
    tau = torch.tensor([0.2, 0.3, 0.25], dtype=torch.float64)
    gradcheck_loss(lambda x: la.functional.sbcl(x, labels, subclass=within, class_temperature=tau, gamma=0.7), f)
    crit = la.create("sbcl", temperature=0.2)
    torch.testing.assert_close(crit(f, labels, subclass=within),
                               la.functional.sbcl(f, labels, subclass=within, temperature=0.2))
    none = la.create("sbcl", reduction="none")(f, labels, subclass=within)
    assert none.shape == (10,) and math.isfinite(float(none.detach().sum()))


def test_sbcl_bad_input_names_the_argument():
    f, labels, within = _views()
    with pytest.raises(ValueError, match="subclass"):
        la.functional.sbcl(f, labels, subclass=within[:5])
    with pytest.raises(TypeError, match="subclass"):
        la.functional.sbcl(f, labels, subclass=within.double())
    with pytest.raises(TypeError, match="labels"):
        la.functional.sbcl(f, labels.double())
    with pytest.raises(ValueError, match="class_temperature"):
        la.functional.sbcl(f, labels, class_temperature=torch.tensor([0.1, -0.1, 0.1]))
    with pytest.raises(ValueError, match="class_temperature"):
        la.functional.sbcl(f, labels, class_temperature=torch.tensor([0.1, 0.1]))
    with pytest.raises(TypeError, match="class_temperature"):
        la.functional.sbcl(f, labels, class_temperature=[0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="temperature"):
        la.create("sbcl", temperature=0.0)
    with pytest.raises(ValueError, match="gamma"):
        la.functional.sbcl(f, labels, gamma=-1.0)
    with pytest.raises(ValueError, match="embeddings"):
        la.functional.sbcl(torch.randn(8), labels)


def test_sbcl_subclasses_recover_planted_clusters_of_head_classes():
    g = torch.Generator().manual_seed(5)
    directions = F.normalize(torch.randn(5, 8, generator=g, dtype=torch.float64), dim=1)
    planted = torch.arange(40) % 4  # class 0: 40 samples around 4 directions; class 1: 10 around the fifth
    head = directions[planted] + 0.05 * torch.randn(40, 8, generator=g, dtype=torch.float64)
    tail = directions[4] + 0.05 * torch.randn(10, 8, generator=g, dtype=torch.float64)
    features, labels = torch.cat([head, tail]), torch.cat([torch.zeros(40, dtype=torch.long), torch.ones(10, dtype=torch.long)])
    sub = la.functional.sbcl_subclasses(features, labels)
    assert la.functional.sbcl_subclass_counts([40, 10]) == [4, 1]
    assert bool((sub[40:] == 0).all())
    ids = sub[:40]
    for p in range(4):  # each planted cluster is one subclass, and the four are distinct
        assert ids[planted == p].unique().numel() == 1
    assert ids.unique().numel() == 4
    torch.testing.assert_close(la.functional.sbcl_subclasses(features, labels, seed=0), sub)  # seeded
    # the labels feed the loss directly
    assert torch.isfinite(la.functional.sbcl(features, labels, subclass=sub))


def test_sbcl_class_temperature_is_the_officials():
    import numpy as np
    g = torch.Generator().manual_seed(6)
    counts = [60, 30, 12, 12, 11]
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    features = F.normalize(torch.randn(labels.numel(), 6, generator=g, dtype=torch.float64), dim=1) * (1 + labels[:, None])
    tau = 0.1
    density = np.array([float((features[labels == c] - features[labels == c].mean(0)).norm(dim=1).mean())
                        / np.log(n + 10) for c, n in enumerate(counts)])
    density = density.clip(np.percentile(density, 10), np.percentile(density, 90))
    want = tau * density / density.mean()
    for c, k in enumerate(la.functional.sbcl_subclass_counts(counts)):
        if k == 1:
            want[c] = tau
    got = la.functional.sbcl_class_temperature(features, labels, tau)
    torch.testing.assert_close(got, torch.from_numpy(want), rtol=1e-12, atol=1e-14)
    assert got[2] == tau and got[0] != tau  # 12 samples: one subclass; 60: six
