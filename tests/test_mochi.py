"""MoCHi (Kalantidis et al. 2020, catalogue G7): MoCo's queue-only negatives, no key gradient,
hard negatives ranked by similarity, and the two synthetic sets, checked against a float64
reference written here from the paper's definitions (Sec. 4.1 and 4.2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lossatlas as la
import lossatlas.functional as LF

from helpers import gradcheck_loss

T = 0.2


def _data(n=6, d=5, k=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    b = a + 0.6 * torch.randn(n, d, generator=g, dtype=torch.float64)
    queue = torch.randn(k, d, generator=g, dtype=torch.float64)
    return a, b, queue


def _mix(n, num_hard, s, s2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {
        "mix_index": torch.randint(num_hard, (n, s, 2), generator=g),
        "mix_alpha": torch.rand(n, s, generator=g, dtype=torch.float64),
        "query_mix_index": torch.randint(num_hard, (n, s2), generator=g),
        "query_mix_beta": 0.5 * torch.rand(n, s2, generator=g, dtype=torch.float64),
    }


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def _reference(a, b, negatives_of, temperature, num_hard, mix_index, mix_alpha, query_mix_index, query_mix_beta):
    """Per-query losses, one query at a time, from the definitions.

    ``negatives_of(i)`` [M, D] are query i's negatives (unit rows, constants). Its hard
    negatives are the ``num_hard`` most similar, most similar first (a Python sort, not topk).
    """
    q = _unit(a)
    k = _unit(b).detach()
    losses = []
    for i in range(a.shape[0]):
        negs = negatives_of(i)
        sims = [float(q[i].detach() @ negs[j]) for j in range(len(negs))]
        hard = sorted(range(len(negs)), key=lambda j: -sims[j])[:num_hard]
        logits = [q[i] @ k[i]] + [q[i] @ negs[j] for j in range(len(negs))]
        for (r1, r2), al in zip(mix_index[i].tolist(), mix_alpha[i].tolist()):
            h = _unit(al * negs[hard[r1]] + (1 - al) * negs[hard[r2]]).detach()
            logits.append(q[i] @ h)
        for r, be in zip(query_mix_index[i].tolist(), query_mix_beta[i].tolist()):
            h = _unit(be * q[i].detach() + (1 - be) * negs[hard[r]]).detach()
            logits.append(q[i] @ h)
        z = torch.stack(logits) / temperature
        losses.append(torch.log(torch.exp(z).sum()) - z[0])
    return torch.stack(losses)


# ----------------------------------------------------------------------------- values, gradients
@pytest.mark.parametrize("tiled", [False, True])
def test_value_and_query_gradient_match_float64_reference(tiled):
    a, b, queue = _data()
    num_hard, s, s2 = 4, 5, 3
    mix = _mix(len(a), num_hard, s, s2)
    x = a.clone().requires_grad_()
    got = LF.mochi(x, b, temperature=T, num_hard=num_hard, num_mix=s, num_query_mix=s2, queue=queue,
                   tiled=tiled, block_size=4, reduction="none", **mix)
    w = torch.linspace(0.5, 1.5, len(a), dtype=torch.float64)
    (grad,) = torch.autograd.grad((got * w).sum(), x)

    xr = a.clone().requires_grad_()
    qn = _unit(queue)
    ref = _reference(xr, b, lambda i: qn, T, num_hard, **mix)
    (grad_ref,) = torch.autograd.grad((ref * w).sum(), xr)
    torch.testing.assert_close(got.detach(), ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-12)
    # reductions and the module agree with the per-query values
    crit = la.create("mochi", temperature=T, num_hard=num_hard, num_mix=s, num_query_mix=s2, tiled=tiled, block_size=4)
    torch.testing.assert_close(crit(a, b, queue, **mix), ref.detach().mean(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(LF.mochi(a, b, temperature=T, num_hard=num_hard, num_mix=s, num_query_mix=s2, queue=queue,
                                        reduction="sum", **mix), ref.detach().sum(), rtol=1e-12, atol=1e-12)


def test_gradcheck_query_with_deterministic_pair_mixing():
    # h = normalize(α n_r1 + (1-α) n_r2) does not move with q, so finite differences apply
    a, b, queue = _data(n=5, d=3, k=7, seed=3)
    mix = _mix(5, 4, 6, 0)
    gradcheck_loss(lambda x: LF.mochi(x, b, num_hard=4, num_mix=6, num_query_mix=0, queue=queue,
                                      mix_index=mix["mix_index"], mix_alpha=mix["mix_alpha"]), a)


def test_without_queue_the_other_batch_keys_are_the_queue():
    a, b, _ = _data(n=7)
    num_hard, s, s2 = 3, 4, 2
    mix = _mix(7, num_hard, s, s2, seed=4)
    kn = _unit(b)
    ref = _reference(a, b, lambda i: torch.cat([kn[:i], kn[i + 1:]]), T, num_hard, **mix)
    for tiled in (False, True):
        got = LF.mochi(a, b, temperature=T, num_hard=num_hard, num_mix=s, num_query_mix=s2, tiled=tiled, block_size=3,
                       reduction="none", **mix)
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- the paper's structure
def test_in_batch_keys_are_not_negatives():
    a, b, queue = _data(n=6)
    kw = {"temperature": T, "num_hard": 4, "num_mix": 5, "num_query_mix": 3, "queue": queue, "reduction": "none"}
    base = LF.mochi(a, b, generator=torch.Generator().manual_seed(0), **kw)
    # move every key but the first onto query 0 (the hardest possible negatives, were they negatives)
    b2 = b.clone()
    b2[1:] = a[0] + 1e-3 * torch.randn(5, 5, dtype=torch.float64)
    moved = LF.mochi(a, b2, generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(moved[0], base[0], rtol=1e-14, atol=1e-14)
    # a key only enters its own query's loss (as the positive)
    assert not torch.allclose(moved[1:], base[1:])


def test_key_and_queue_get_no_gradient_and_the_query_does():
    a, b, queue = _data()
    x, y, qu = a.clone().requires_grad_(), b.clone().requires_grad_(), queue.clone().requires_grad_()
    loss = LF.mochi(x, y, num_hard=4, num_mix=5, num_query_mix=3, queue=qu, generator=torch.Generator().manual_seed(0))
    gx, gy = torch.autograd.grad(loss, [x, y])  # b stays in the graph: asking for its gradient is allowed
    assert torch.equal(gy, torch.zeros_like(b))
    assert gx.abs().sum() > 0
    loss2 = LF.mochi(x, y, num_hard=4, num_mix=5, num_query_mix=3, queue=qu, generator=torch.Generator().manual_seed(0))
    loss2.backward()
    assert torch.equal(y.grad, torch.zeros_like(b)) and qu.grad is None
    # without a queue (batch keys as the queue) the key still gets nothing
    y.grad = None
    LF.mochi(x, y, num_hard=3, num_mix=4, num_query_mix=2, generator=torch.Generator().manual_seed(0)).backward()
    assert torch.equal(y.grad, torch.zeros_like(b))


def test_hard_negatives_are_the_top_num_hard_queue_rows_by_similarity():
    a, b, queue = _data(n=5, k=9, seed=7)
    n, num_hard = 5, 4
    qn = _unit(queue)
    sims = (_unit(a) @ qn.T).numpy()
    order = np.argsort(-sims, axis=1)  # rank 0 = most similar
    plain = LF.mochi(a, b, temperature=T, num_mix=0, num_query_mix=0, queue=queue, reduction="none")
    for r in range(num_hard):
        ranks = torch.full((n, 1, 2), r, dtype=torch.long)
        # α irrelevant when both ranks agree: the synthetic point is the rank-r negative itself
        got = LF.mochi(a, b, temperature=T, num_hard=num_hard, num_mix=1, num_query_mix=0, queue=queue, reduction="none",
                       mix_index=ranks, mix_alpha=torch.rand(n, 1, dtype=torch.float64))
        extra = torch.tensor(sims[np.arange(n), order[:, r]], dtype=torch.float64) / T
        pos = (_unit(a) * _unit(b)).sum(1) / T
        expected = torch.log(torch.exp(plain + pos) + torch.exp(extra)) - pos
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        # β = 0: the query mix is the rank-r negative too
        got_q = LF.mochi(a, b, temperature=T, num_hard=num_hard, num_mix=0, num_query_mix=1, queue=queue, reduction="none",
                         query_mix_index=ranks[..., 0], query_mix_beta=torch.zeros(n, 1, dtype=torch.float64))
        torch.testing.assert_close(got_q, expected, rtol=1e-12, atol=1e-12)
    # ranks index the num_hard hardest only (and num_hard is capped by the queue length)
    with pytest.raises(ValueError, match=r"mix_index.*\[0, 4\)"):
        LF.mochi(a, b, num_hard=num_hard, num_mix=1, num_query_mix=0, queue=queue,
                 mix_index=torch.full((n, 1, 2), num_hard, dtype=torch.long))
    with pytest.raises(ValueError, match=r"query_mix_index.*\[0, 9\)"):
        LF.mochi(a, b, num_hard=50, num_mix=0, num_query_mix=1, queue=queue,
                 query_mix_index=torch.full((n, 1), 9, dtype=torch.long))


def test_random_draws_follow_the_documented_order():
    # ranks (with replacement), α ~ U(0, 1), query ranks, β ~ U(0, 0.5), from one generator
    a, b, queue = _data()
    n, h, s, s2 = len(a), 4, 5, 3
    g = torch.Generator().manual_seed(11)
    explicit = {"mix_index": torch.randint(h, (n, s, 2), generator=g),
                "mix_alpha": torch.rand((n, s), generator=g, dtype=torch.float64),
                "query_mix_index": torch.randint(h, (n, s2), generator=g),
                "query_mix_beta": 0.5 * torch.rand((n, s2), generator=g, dtype=torch.float64)}
    kw = {"num_hard": h, "num_mix": s, "num_query_mix": s2, "queue": queue, "reduction": "none"}
    drawn = LF.mochi(a, b, generator=torch.Generator().manual_seed(11), **kw)
    torch.testing.assert_close(drawn, LF.mochi(a, b, **explicit, **kw), rtol=0, atol=0)
    ref = _reference(a, b, lambda i: _unit(queue), 0.2, h, **explicit)
    torch.testing.assert_close(drawn, ref, rtol=1e-12, atol=1e-12)


def test_one_seed_gives_one_mixing_in_every_precision():
    a, b, queue = _data()
    kw = {"num_hard": 4, "num_mix": 5, "num_query_mix": 3, "reduction": "none"}
    ref = LF.mochi(a, b, queue=queue, generator=torch.Generator().manual_seed(2), **kw)
    low = LF.mochi(a.float(), b.float(), queue=queue.float(), generator=torch.Generator().manual_seed(2), **kw)
    torch.testing.assert_close(low.double(), ref, rtol=1e-5, atol=1e-5)


def test_query_mix_weight_is_uniform_on_zero_to_half():
    # one query direction q = e1, one negative n at 2 rad: each query's h' = normalize(βq + (1-β)n)
    # is recovered from its loss, and β from q·h' (monotone in β)
    n_rows, theta = 4000, 2.0
    a = torch.zeros(n_rows, 2, dtype=torch.float64)
    a[:, 0] = 1.0
    nvec = torch.tensor([[math.cos(theta), math.sin(theta)]], dtype=torch.float64)
    loss = LF.mochi(a, a, temperature=1.0, num_hard=1, num_mix=0, num_query_mix=1, queue=nvec, reduction="none",
                    generator=torch.Generator().manual_seed(0))
    c = torch.log(torch.exp(loss + 1.0) - math.e - math.exp(math.cos(theta))).numpy()
    grid = np.linspace(0.0, 1.0, 200001)
    f = (grid + (1 - grid) * math.cos(theta)) / np.hypot(grid + (1 - grid) * math.cos(theta), (1 - grid) * math.sin(theta))
    assert np.all(np.diff(f) > 0)
    beta = np.interp(c, f, grid)
    assert beta.min() >= -1e-6 and beta.max() <= 0.5 + 1e-6
    assert beta.min() < 0.01 and beta.max() > 0.49
    assert abs(beta.mean() - 0.25) < 0.01 and abs((beta > 0.25).mean() - 0.5) < 0.03


def test_synthetic_negatives_raise_the_loss_and_edge_cases():
    a, b, queue = _data()
    plain = LF.mochi(a, b, num_mix=0, num_query_mix=0, queue=queue, reduction="none")
    mixed = LF.mochi(a, b, num_hard=4, num_mix=6, num_query_mix=2, queue=queue, reduction="none",
                     generator=torch.Generator().manual_seed(0))
    assert torch.all(mixed > plain)
    # an empty queue: no negative at all, the loss is 0 (and mixing has nothing to mix)
    x = a.clone().requires_grad_()
    empty = LF.mochi(x, b, num_hard=4, num_mix=3, num_query_mix=2, queue=queue[:0])
    assert float(empty.detach()) == pytest.approx(0.0, abs=1e-12)
    empty.backward()
    assert torch.isfinite(x.grad).all()
    # a single pair without a queue: no negative either
    assert float(LF.mochi(a[:1], b[:1])) == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name,shape", [
    ("mix_index", (6, 5)), ("mix_index", (6, 4, 2)), ("mix_index", (5, 5, 2)), ("mix_index", (6, 5, 3)),
    ("mix_alpha", (6, 4)), ("mix_alpha", (6, 5, 1)),
    ("query_mix_index", (6, 2)), ("query_mix_index", (6, 3, 1)),
    ("query_mix_beta", (7, 3)), ("query_mix_beta", (3,)),
])
def test_bad_keyword_shape_raises_naming_it(name, shape):
    a, b, queue = _data()
    kw = _mix(6, 4, 5, 3)
    kw[name] = torch.zeros(shape, dtype=kw[name].dtype)
    with pytest.raises(ValueError, match=f"^{name} must have shape"):
        LF.mochi(a, b, num_hard=4, num_mix=5, num_query_mix=3, queue=queue, **kw)
    with pytest.raises(ValueError, match=f"^{name} must have shape"):
        la.create("mochi", num_hard=4, num_mix=5, num_query_mix=3)(a, b, queue, **kw)


def test_bad_keyword_types_and_values_raise_naming_them():
    a, b, queue = _data()
    call = lambda **over: LF.mochi(a, b, num_hard=4, num_mix=5, num_query_mix=3, queue=queue, **{**_mix(6, 4, 5, 3), **over})
    with pytest.raises(TypeError, match="^mix_index must hold integer"):
        call(mix_index=torch.zeros(6, 5, 2))
    with pytest.raises(TypeError, match="^query_mix_index must hold integer"):
        call(query_mix_index=torch.zeros(6, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="^mix_alpha must be a floating-point"):
        call(mix_alpha=torch.zeros(6, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="^query_mix_beta must be a torch.Tensor"):
        call(query_mix_beta=[[0.1] * 3] * 6)
    with pytest.raises(ValueError, match=r"^mix_index holds ranks.*\[0, 4\)"):
        call(mix_index=torch.full((6, 5, 2), -1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^mix_alpha must lie in \[0, 1\]"):
        call(mix_alpha=torch.full((6, 5), 1.5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^query_mix_beta must lie in \[0, 1\]"):
        call(query_mix_beta=torch.full((6, 3), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="^queue must have shape"):
        LF.mochi(a, b, queue=torch.randn(3, 2))
    with pytest.raises(ValueError, match="^queue contains NaN"):
        LF.mochi(a, b, queue=torch.full((3, 5), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="^num_mix must be a non-negative int"):
        la.create("mochi", num_mix=-1)


def test_registry_entry_documents_the_defaults():
    e = la.info("mochi")
    assert e.defaults["temperature"] == 0.2 and "MoCo v2" in e.defaults_source["temperature"]
    assert (e.defaults["num_hard"], e.defaults["num_mix"], e.defaults["num_query_mix"]) == (1024, 1024, 256)
    for name in ("num_hard", "num_mix", "num_query_mix"):
        assert name in e.defaults_source
