"""G14: ConR: the paper's equation, the official function's selection of pairs, limits, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lossatlas as la

G = torch.Generator().manual_seed(14)


def _batch(n: int = 8, d: int = 5):
    feats = torch.randn(n, d, generator=G, dtype=torch.float64)
    y = torch.tensor([20.0, 20.5, 21.8, 40.0, 40.9, 60.0, 61.5, 20.2], dtype=torch.float64)[:n]
    preds = torch.tensor([30.0, 30.4, 29.5, 30.2, 45.0, 30.9, 45.5, 29.9], dtype=torch.float64)[:n]
    return feats, y, preds


def _paper_conr(feats, y, preds, w, t, e):
    # the paper's eq. written with loops: positives |y_i - y_j| <= w (j != i); negatives |y_i - y_k| > w and
    # |p_i - p_k| <= w, pushed by exp(e |y_i - y_k|); an anchor without positives or negatives adds 0
    z = F.normalize(feats, dim=1)
    n = len(y)
    out = []
    for i in range(n):
        P = [j for j in range(n) if j != i and abs(y[i] - y[j]) <= w]
        Nk = [k for k in range(n) if abs(y[i] - y[k]) > w and abs(preds[i] - preds[k]) <= w]
        if not P or not Nk:
            out.append(0.0)
            continue
        s = lambda j: math.exp(float(z[i] @ z[j]) / t)  # noqa: E731
        den = sum(s(p) for p in P) + sum(math.exp(e * abs(float(y[i] - y[k]))) * s(k) for k in Nk)
        out.append(-sum(math.log(s(j) / den) for j in P) / len(P))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize(("w", "t", "e"), [(1.0, 0.07, 0.01), (2.0, 0.5, 0.3)])
def test_conr_is_the_papers_equation(w, t, e):
    feats, y, preds = _batch()
    got = la.functional.conr(feats, y, preds, window=w, temperature=t, eta=e, reduction="none")
    torch.testing.assert_close(got, _paper_conr(feats, y, preds, w, t, e), rtol=1e-10, atol=1e-12)
    if w == 1.0:
        assert got[5].item() == 0.0  # y = 60: no other target within 1 -> no positive -> 0


def test_conr_against_the_official_function_up_to_its_denominator():
    # the official function adds exp(0) = 1 to the denominator for every non-positive entry of the row (the
    # anchor included): with those N - |P_i| ones added, the paper's form gives the official value
    feats, y, preds = _batch()
    z = F.normalize(feats, dim=1)
    t, w, e = 0.07, 1.0, 0.01
    l_dist = (y[:, None] - y[None, :]).abs()
    pos_i = (l_dist <= w) & ~torch.eye(8, dtype=torch.bool)
    neg_i = (l_dist > w) & ((preds[:, None] - preds[None, :]).abs() <= w)
    prod = z @ z.T / t
    pos, neg = prod * pos_i, prod * neg_i
    neg_exp = (torch.exp(l_dist * e) * torch.exp(neg) * neg_i).sum(1)
    official = (-torch.log(torch.exp(pos) / (torch.exp(pos).sum(1) + neg_exp)[:, None]) * pos_i).sum(1) / pos_i.sum(1)
    official = official * neg_i.any(1)
    ones = (~pos_i).sum(1).to(torch.float64)
    lse_paper = torch.log((torch.exp(prod) * pos_i).sum(1) + neg_exp)
    lse_official = torch.log((torch.exp(prod) * pos_i).sum(1) + ones + neg_exp)
    ours = la.functional.conr(feats, y, preds, reduction="none")
    keep = pos_i.any(1)  # the official value is NaN (0 / 0) without a positive
    shifted = ours + (lse_official - lse_paper) * neg_i.any(1)
    torch.testing.assert_close(shifted[keep], official[keep], rtol=1e-10, atol=1e-12)


def test_conr_identities():
    feats, y, preds = _batch()
    # no negatives (every prediction far from every other): 0 with a zero gradient
    far = torch.arange(8, dtype=torch.float64) * 10
    f = feats.clone().requires_grad_(True)
    out = la.functional.conr(f, y, far)
    out.backward()
    assert out.item() == 0.0 and bool((f.grad == 0).all())
    # e = 0 and negatives far in feature space: the loss tends to the positives' own cross-entropy,
    # log |P_i| when the positives coincide with the anchor
    base = F.normalize(torch.randn(3, 5, generator=G, dtype=torch.float64), dim=1)
    feats2 = torch.cat([base[0].repeat(3, 1), -base[0].repeat(2, 1)])
    y2 = torch.tensor([1.0, 1.0, 1.0, 9.0, 9.0], dtype=torch.float64)
    out = la.functional.conr(feats2, y2, torch.zeros(5, dtype=torch.float64), eta=0.0, reduction="none")
    torch.testing.assert_close(out[:3], torch.full((3,), math.log(2), dtype=torch.float64), rtol=1e-9, atol=1e-9)
    # no gradient reaches the predictions or the targets (they only select pairs)
    p = preds.clone().requires_grad_(True)
    f = feats.clone().requires_grad_(True)
    la.functional.conr(f, y, p).backward()
    assert p.grad is None and f.grad is not None


def test_conr_gradcheck_and_bad_input():
    feats, y, preds = _batch()
    assert torch.autograd.gradcheck(lambda x: la.functional.conr(x, y, preds, reduction="none"),
                                    [feats.requires_grad_(True)])
    with pytest.raises(ValueError, match="target must have shape"):
        la.functional.conr(feats, y[:3], preds)
    with pytest.raises(TypeError, match="target"):
        la.functional.conr(feats, y.long(), preds)
    with pytest.raises(ValueError, match="features must have shape"):
        la.functional.conr(feats[0], y, preds)
    with pytest.raises(ValueError, match="window"):
        la.create("conr", window=0.0)
    bad = preds.clone()
    bad[0] = float("nan")
    with pytest.raises(ValueError, match="preds"):
        la.functional.conr(feats.detach(), y, bad)
