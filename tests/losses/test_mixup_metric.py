"""F9: Metrix (mixup for deep metric learning): the official mixed contrastive loss, identities, gradients, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
from helpers import gradcheck_loss

G = torch.Generator().manual_seed(9)


def _official(a, x, lam, neg_margin=0.5):
    # billpsomas/Metrix_ICLR22: LpDistance (normalised rows) of each anchor to its mix, loss_posneg_mixup's
    # λ relu(d) and (1 - λ) relu(0.5 - d), each reduced by AvgNonZeroReducer, summed
    d = torch.cdist(F.normalize(a, dim=1), F.normalize(x, dim=1)).diagonal()
    pos, neg = lam * torch.relu(d), (1 - lam) * torch.relu(neg_margin - d)

    def avg_nonzero(v):
        nz = v[v > 0]
        return nz.mean() if nz.numel() else v.sum() * 0

    return avg_nonzero(pos) + avg_nonzero(neg)


def _pairs(m=12, d=6):
    a = torch.randn(m, d, generator=G, dtype=torch.float64)
    p = a + 0.3 * torch.randn(m, d, generator=G, dtype=torch.float64)
    n = torch.randn(m, d, generator=G, dtype=torch.float64)
    return a, p, n


@pytest.mark.parametrize("lam", [0.5, 0.13, 0.91])
def test_metrix_is_the_official_mixed_contrastive_loss(lam):
    a, p, n = _pairs()
    x = la.functional.mixup_embeddings(p, n, lam)
    torch.testing.assert_close(x, lam * p + (1 - lam) * n)
    got = la.functional.metrix(a, x, lam=lam)
    torch.testing.assert_close(got, _official(a, x, lam), rtol=1e-12, atol=1e-12)
    # one weight per pair, and the other margins
    lams = torch.rand(12, generator=G, dtype=torch.float64)
    x2 = la.functional.mixup_embeddings(p, n, lams)
    d = torch.linalg.vector_norm(F.normalize(a, dim=1) - F.normalize(x2, dim=1), dim=1)
    want = lams * torch.relu(d - 0.1) + (1 - lams) * torch.relu(0.8 - d)
    torch.testing.assert_close(la.functional.metrix(a, x2, lam=lams, pos_margin=0.1, neg_margin=0.8, reduction="none"), want)
    plain = (lams * torch.relu(d - 0.1)).mean() + ((1 - lams) * torch.relu(0.8 - d)).mean()
    torch.testing.assert_close(la.functional.metrix(a, x2, lam=lams, pos_margin=0.1, neg_margin=0.8,
                                                    average_nonzero=False), plain)


def test_metrix_at_lambda_one_and_zero_is_the_contrastive_loss_of_the_pairs():
    a, p, n = _pairs(m=6)
    m = a.shape[0]
    emb = torch.cat([a, p])
    labels = torch.cat([torch.arange(m), torch.arange(m)])
    k, mk = torch.arange(m), torch.arange(m) + m
    none = torch.empty(0, dtype=torch.long)
    as_pos = la.functional.contrastive(emb, labels, pos_margin=0.0, neg_margin=0.5, indices=(k, mk, none, none))
    torch.testing.assert_close(la.functional.metrix(a, p, lam=1.0), as_pos)
    as_neg = la.functional.contrastive(emb, labels, pos_margin=0.0, neg_margin=1.3, indices=(none, none, k, mk))
    torch.testing.assert_close(la.functional.metrix(a, p, lam=0.0, neg_margin=1.3), as_neg)


def test_metrix_gradcheck_module_and_invariance():
    a, p, n = _pairs(m=5, d=4)
    lams = torch.tensor([0.2, 0.5, 0.7, 0.9, 0.4], dtype=torch.float64)
    x = la.functional.mixup_embeddings(p, n, lams)
    gradcheck_loss(lambda u, v: la.functional.metrix(u, v, lam=lams, neg_margin=1.2, reduction="sum"), a, x)
    crit = la.create("metrix", neg_margin=1.2)
    torch.testing.assert_close(crit(a, x, lam=lams), la.functional.metrix(a, x, lam=lams, neg_margin=1.2))
    torch.testing.assert_close(crit(2.5 * a, 0.1 * x, lam=lams), crit(a, x, lam=lams))  # distances of unit rows
    assert float(crit(a[:0], x[:0], lam=lams[:0]).detach()) == 0.0


def test_metrix_bad_input_names_the_argument():
    a, p, n = _pairs(m=4)
    with pytest.raises(ValueError, match="lam"):
        la.functional.metrix(a, p, lam=1.5)
    with pytest.raises(ValueError, match="lam"):
        la.functional.metrix(a, p, lam=torch.tensor([0.5, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="lam"):
        la.functional.metrix(a, p, lam=torch.tensor([0.5, -0.1, 0.2, 0.3], dtype=torch.float64))
    with pytest.raises(ValueError, match="mixed"):
        la.functional.metrix(a, p[:, :3])
    with pytest.raises(TypeError, match="anchors"):
        la.functional.metrix(a.long(), p)
    with pytest.raises(ValueError, match="neg_margin"):
        la.create("metrix", neg_margin=-0.5)
    bad = p.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="mixed"):
        la.functional.metrix(a, bad)
