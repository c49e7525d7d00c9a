"""Issue 22: one positive-mask InfoNCE kernel (:mod:`lossatlas.functional._infonce`) behind
SupCon, NT-Xent, InfoNCE / CLIP (one-way, symmetric, SimCLR's 2N form) and multi-positive
InfoNCE. The kernel is checked against a loop over anchors written from its definition, its
two evaluations (the logit-matrix form and the factorised / blockwise forms) against each
other, and every preset's tiled form against its dense form in float64 at 1e-10 (values and
gradients)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

import lossatlas as la
import lossatlas.functional as LF
from lossatlas.functional._infonce import label_weights, nce, nce_blocks, nce_matrix

D64 = torch.float64


def _loop_reference(z: Tensor, w: Tensor, d: Tensor, each: bool) -> Tensor:
    """The definition, one anchor and one key at a time (``d`` a multiplicity matrix)."""
    out = []
    for i in range(z.shape[0]):
        den = [(float(d[i, j]), z[i, j]) for j in range(z.shape[1]) if d[i, j] > 0]
        lse = torch.logsumexp(torch.stack([zz + math.log(m) for m, zz in den]), 0) if den else z.new_tensor(-math.inf)
        pos = [(float(w[i, j]), z[i, j]) for j in range(z.shape[1]) if w[i, j] > 0]
        if each:
            terms = [m * torch.nn.functional.softplus(lse - zz) for m, zz in pos]
        else:
            total = sum(m for m, _ in pos)
            terms = [m * (lse - zz) / total for m, zz in pos]
        out.append(torch.stack(terms).sum() if terms else z.new_zeros(()))
    return torch.stack(out)


def _batch(n: int = 10, d: int = 5, classes: int = 3, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=D64), torch.randint(0, classes, (n,), generator=g)


@pytest.mark.parametrize("each", [False, True])
def test_matrix_kernel_matches_the_definition_with_weights_and_multiplicities(each: bool) -> None:
    g = torch.Generator().manual_seed(3)
    z = torch.randn(6, 8, generator=g, dtype=D64) * 3
    w = (torch.rand(6, 8, generator=g, dtype=D64) < 0.4) * torch.randint(1, 3, (6, 8), generator=g).to(D64)
    d = torch.randint(0, 3, (6, 8), generator=g).to(D64)
    if not each:
        d = torch.where(w > 0, torch.clamp_min(d, 1.0), d)  # the positives are in the denominator
    else:
        d = torch.where(w > 0, 0.0, d)  # the denominator holds the negatives only
    d[0] = 0.0  # an anchor without a denominator
    w[1] = 0.0  # an anchor without a positive
    got, counts = nce_matrix(z, w, d, each=each)
    torch.testing.assert_close(got, _loop_reference(z, w, d, each), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(counts[:, 0], w.sum(1))


@pytest.mark.parametrize("each", [False, True])
def test_kernel_gradcheck_dense_and_tiled_with_a_learnable_scale(each: bool) -> None:
    q, y = _batch(7, 4, 3, seed=1)
    k, yk = _batch(9, 4, 3, seed=2)
    s = torch.tensor(2.5, dtype=D64)
    ins = [t.clone().requires_grad_() for t in (q, k, s)]
    for tiled in (False, True):
        def fn(a: Tensor, b: Tensor, sc: Tensor, tiled: bool = tiled) -> Tensor:
            out, _ = nce_blocks(a, b, sc, label_weights(y, yk, None, each=each), each=each, tiled=tiled, block_size=3)
            return out
        assert torch.autograd.gradcheck(fn, ins)
    d = torch.ones(7, 9, dtype=torch.bool)
    z = (q @ k.T).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: nce_matrix(t, y[:, None] == yk[None, :], d, each=each)[0], (z,))


@pytest.mark.parametrize("each", [False, True])
def test_blockwise_kernel_equals_the_matrix_form_at_1e_10(each: bool) -> None:
    q, y = _batch(23, 6, 4, seed=4)
    own = torch.arange(23)
    ref_q = q.clone().requires_grad_()
    ref, ref_counts = nce_blocks(ref_q, ref_q, 4.0, label_weights(y, y, own, each=each), each=each, tiled=False)
    ref.sum().backward()
    for bs in (1, 5, 23):
        x = q.clone().requires_grad_()
        got, counts = nce_blocks(x, x, 4.0, label_weights(y, y, own, each=each), each=each, tiled=True, block_size=bs)
        got.sum().backward()
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(x.grad, ref_q.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(counts, ref_counts)


@pytest.mark.parametrize("tiled", [False, True])
def test_factorised_form_equals_the_matrix_form(tiled: bool) -> None:
    """``each=False`` through the log-sum-exp and per-class sums is the logit-matrix kernel."""
    q, y = _batch(17, 5, 4, seed=6)
    own = torch.arange(17)
    x1, x2 = q.clone().requires_grad_(), q.clone().requires_grad_()
    got, counts, _ = nce(x1, x1, 3.0, y, y, self_cols=own, tiled=tiled, block_size=4)
    w, d = label_weights(y, y, own)(0, 17)
    assert d is not None
    ref, ref_counts = nce_matrix((x2 @ x2.T) * 3.0, w, d)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(counts, ref_counts)
    got.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-10, atol=1e-12)


def _value_and_grads(fn: Callable[..., Tensor], *xs: Tensor, **kw: Any) -> tuple[Tensor, ...]:
    ins = [x.clone().requires_grad_() for x in xs]
    out = fn(*ins, **kw)
    grads = torch.autograd.grad(out.sum(), ins)
    return (out.detach(), *grads)


def _multi_hot(y: Tensor) -> Tensor:
    """Multi-hot labels [N, 4] made from integer ones (a row-wise function: shards agree)."""
    return torch.stack([y % 2 == 0, y % 3 == 0, y >= 2, y == 5], dim=1)


PRESETS: list[tuple[str, Callable[..., Tensor], dict[str, Any]]] = [
    ("supcon", lambda e, y, **kw: LF.supcon(e, y, temperature=0.2, **kw), {}),
    ("supcon_all_anchors", lambda e, y, **kw: LF.supcon(e, y, average_over="all_anchors", **kw), {}),
    ("supcon_two_views", lambda e, y, **kw: LF.supcon(e[:8], e[8:16], **kw), {}),
    ("ntxent", lambda e, y, **kw: LF.ntxent(e, y, temperature=0.3, **kw), {}),
    ("ntxent_two_views", lambda e, y, **kw: LF.ntxent(e[:8], e[8:16], temperature=0.5, **kw), {}),
    ("clip", lambda e, y, **kw: LF.infonce(e[:9], e[9:18], temperature=0.1, **kw), {}),
    ("clip_one_way", lambda e, y, **kw: LF.infonce(e[:9], e[9:18], symmetric=False, **kw), {}),
    ("simclr_2n", lambda e, y, **kw: LF.infonce(e[:9], e[9:18], intra_view_negatives=True, **kw), {}),
    ("supcon_multi_label", lambda e, y, **kw: LF.supcon(e, _multi_hot(y), temperature=0.2, **kw), {}),
    ("supcon_multi_label_all", lambda e, y, **kw: LF.supcon(e, _multi_hot(y), average_over="all_anchors",
                                                            base_temperature=0.1, **kw), {}),
    ("multi_positive", lambda e, y, **kw: LF.infonce(e[:9], e[9:18], labels=y[:9], **kw), {}),
    ("multi_positive_2n", lambda e, y, **kw: LF.infonce(e[:9], e[9:18], labels=y[:9], intra_view_negatives=True,
                                                        symmetric=False, **kw), {}),
]


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name,fn,kw", PRESETS, ids=[p[0] for p in PRESETS])
def test_every_preset_tiled_equals_dense_in_float64(name: str, fn: Callable[..., Tensor], kw: dict[str, Any],
                                                    reduction: str) -> None:
    e, y = _batch(19, 6, 4, seed=8)
    dense = _value_and_grads(lambda x: fn(x, y, tiled=False, reduction=reduction, **kw), e)
    for bs in (1, 4):
        tiled = _value_and_grads(lambda x: fn(x, y, tiled=True, block_size=bs, reduction=reduction, **kw), e)
        for got, want in zip(tiled, dense):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=f"{name} block {bs}")


def test_tiled_supcon_equals_dense_at_n_2048_float64() -> None:
    e, y = _batch(2048, 16, 40, seed=9)
    dense = _value_and_grads(lambda x: LF.supcon(x, y, tiled=False), e)
    tiled = _value_and_grads(lambda x: LF.supcon(x, y, tiled=True, block_size=300), e)
    for got, want in zip(tiled, dense):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13)


def test_presets_are_settings_of_one_family() -> None:
    """SimCLR's 2N InfoNCE is SupCon on the two views at τ_b = τ, and NT-Xent on two views with
    one positive per anchor (each=True) is the same number (one positive: both forms agree)."""
    g = torch.Generator().manual_seed(10)
    a, b = torch.randn(6, 4, generator=g, dtype=D64), torch.randn(6, 4, generator=g, dtype=D64)
    simclr = LF.infonce(a, b, temperature=0.5, intra_view_negatives=True)
    torch.testing.assert_close(LF.supcon(a, b, temperature=0.5, base_temperature=0.5), simclr, rtol=1e-12, atol=0)
    torch.testing.assert_close(LF.ntxent(a, b, temperature=0.5), simclr, rtol=1e-12, atol=0)
    # multi-positive InfoNCE with distinct labels is CLIP
    torch.testing.assert_close(LF.infonce(a, b, labels=torch.arange(6)), LF.infonce(a, b), rtol=1e-12, atol=0)


def test_kernel_rejects_multi_hot_labels_in_the_per_positive_form() -> None:
    q = torch.randn(3, 2, dtype=D64)
    with pytest.raises(ValueError, match="integer labels"):
        nce(q, q, 1.0, torch.ones(3, 2, dtype=D64), torch.ones(3, 2, dtype=D64), each=True)


def test_distributed_or_tiled_ntxent_rejects_a_miners_indices() -> None:
    e, y = _batch(6, 3, 2)
    idx = (torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    with pytest.raises(ValueError, match="indices"):
        LF.ntxent(e, y, indices=idx, tiled=True)


def test_single_anchor_batch_is_zero_with_a_zero_gradient() -> None:
    for fn in (LF.supcon, LF.ntxent):
        for tiled in (False, True):
            x = torch.randn(1, 3, dtype=D64, requires_grad=True)
            out = fn(x, torch.tensor([0]), tiled=tiled)
            out.backward()
            assert out.item() == 0.0
            assert x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))


# ------------------------------------------------------------------ multi-label SupCon (Jaccard-weighted positives)
def _multi_label_supcon_from_the_definition(e: Tensor, y: Tensor, tau: float, tau_b: float) -> Tensor:
    """Per anchor ``−(τ/τ_b) Σ_{j≠i} J_ij log p_ij / Σ_{j≠i} J_ij`` (0 without a positive),
    ``J`` the Jaccard index of the label sets, ``p`` the softmax over every k ≠ i."""
    u = torch.nn.functional.normalize(e, dim=1)
    yf = y.to(e.dtype)
    out = []
    for i in range(e.shape[0]):
        others = [j for j in range(e.shape[0]) if j != i]
        s = torch.stack([u[i] @ u[j] / tau for j in others])
        log_p = s - torch.logsumexp(s, 0)
        inter = torch.stack([(yf[i] * yf[j]).sum() for j in others])
        union = torch.stack([((yf[i] + yf[j]) > 0).sum().to(e.dtype) for j in others])
        jac = torch.where(union > 0, inter / union.clamp_min(1.0), 0.0)
        out.append(-(tau / tau_b) * (jac * log_p).sum() / jac.sum() if jac.sum() > 0 else e.new_zeros(()))
    return torch.stack(out)


def test_multi_label_supcon_matches_its_definition_at_non_default_temperatures() -> None:
    e, y = _batch(11, 5, 6, seed=12)
    mh = _multi_hot(y)
    mh[3] = False  # a sample without labels: no positive, loss 0
    ref = _multi_label_supcon_from_the_definition(e, mh, 0.2, 0.05)
    for tiled in (False, True):
        got = LF.supcon(e, mh, temperature=0.2, base_temperature=0.05, reduction="none", tiled=tiled, block_size=4)
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
        has = ref != 0
        torch.testing.assert_close(LF.supcon(e, mh.long(), temperature=0.2, base_temperature=0.05, tiled=tiled),
                                   ref.sum() / has.sum(), rtol=1e-10, atol=0)
        torch.testing.assert_close(LF.supcon(e, mh, temperature=0.2, base_temperature=0.05, tiled=tiled,
                                             average_over="all_anchors"), ref.mean(), rtol=1e-10, atol=0)


def test_multi_label_supcon_with_one_hot_labels_is_supcon() -> None:
    e, y = _batch(12, 4, 3, seed=13)
    one_hot = torch.nn.functional.one_hot(y, 3)
    for kw in ({}, {"average_over": "all_anchors", "temperature": 0.3}, {"reduction": "none"}):
        torch.testing.assert_close(LF.supcon(e, one_hot, **kw), LF.supcon(e, y, **kw), rtol=1e-12, atol=1e-14)
    # SupContrast's [bsz, n_views, D] layout: labels [bsz, C] tiled over the views
    f = e.reshape(6, 2, 4)
    torch.testing.assert_close(LF.supcon(f, one_hot[:6]), LF.supcon(f, y[:6]), rtol=1e-12, atol=1e-14)
    # the module takes them too
    torch.testing.assert_close(la.create("supcon", temperature=0.2)(e, one_hot.bool()),
                               LF.supcon(e, y, temperature=0.2), rtol=1e-12, atol=1e-14)


def test_multi_label_supcon_gradcheck_dense_and_tiled() -> None:
    e, y = _batch(7, 3, 6, seed=14)
    mh = _multi_hot(y)
    x = e.clone().requires_grad_()
    for tiled in (False, True):
        assert torch.autograd.gradcheck(lambda t, tiled=tiled: LF.supcon(t, mh, temperature=0.5, tiled=tiled,
                                                                         block_size=3), (x,))


def test_multi_label_supcon_bad_input_names_the_argument() -> None:
    e, y = _batch(6, 3, 6)
    mh = _multi_hot(y)
    with pytest.raises(ValueError, match="labels"):
        LF.supcon(e, mh.long() * 2)  # not 0/1
    with pytest.raises(ValueError, match="labels"):
        LF.supcon(e, mh[:5])  # one row short
    with pytest.raises(ValueError, match="labels"):
        LF.supcon(e, mh, indices=(torch.tensor([0]), torch.tensor([1]), torch.tensor([2])))
    with pytest.raises(ValueError, match="labels"):
        LF.supcon(e.reshape(3, 2, 3), mh)  # features [bsz, n_views, D] take labels [bsz, C]
    with pytest.raises(ValueError, match=r"labels.bool\(\)"):
        LF.supcon(e, mh.double())  # a float [N, C] reads as a second view
