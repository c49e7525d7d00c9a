"""ArcFace, UNPG and Partial FC against their official code's definitions.

References are written here from scratch in float64 from the official code's definitions:
- insightface recognition/arcface_torch (configs ``margin_list = (1.0, 0.5, 0.0)``,
  ``CombinedMarginLoss(64, …)``; ``PartialFC_V2`` + ``DistCrossEntropy``): cosines clamped to
  [−1, 1], target ``cos(acos(c) + m)`` set under ``no_grad`` (identity in backward), target
  probability clamped at 1e-30 before the log (value only; backward ``(softmax − onehot)/N``);
- Jung-Jun-Uk/UNPG recognition/models (ArcFace head ``cos(acos(c) + m)`` for every θ,
  ``box_and_whisker_algorithm``, negative pairs i < j appended as columns to every row).
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch

import lossatlas as la
import lossatlas.functional as LF
from helpers import gradcheck_loss

CAP = -math.log(1e-30)
DT = torch.float64


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


def _adversarial_batch(n=12, d=6, c=7, seed=0, flip=(0, 3)):
    """Random embeddings / centres where the rows in ``flip`` point (almost) opposite their
    class centre, so θ_y + 0.5 > π there; one of them is also close to another centre,
    which pushes its cross-entropy past −log 1e-30 at scale 64."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(c, d, generator=g, dtype=DT)
    y = torch.randint(0, c, (n,), generator=g)
    e = torch.randn(n, d, generator=g, dtype=DT)
    for i in flip:
        e[i] = -_unit(w)[y[i]] + 0.05 * torch.randn(d, generator=g, dtype=DT)
    other = int((y[flip[0]] + 1) % c)
    e[flip[0]] = -_unit(w)[y[flip[0]]] + 0.9 * _unit(w)[other]
    return e, y, w


def _target_angles(e, y, w):
    return torch.acos((_unit(e) @ _unit(w).T).gather(1, y[:, None]).squeeze(1).clamp(-1, 1))


def _reduce(per: torch.Tensor, reduction: str) -> torch.Tensor:
    return {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]


# ===================================================================== 1. ArcFace defaults
def _arcface_ref(e, y, w, m, s):
    """CE(s·z, y), z = cos with the target cos(θ + m) (θ ≤ π − m here, so no fallback)."""
    cos = _unit(e) @ _unit(w).T
    theta = torch.acos(cos.gather(1, y[:, None]).clamp(-1, 1))
    z = cos.scatter(1, y[:, None], torch.cos(theta + m))
    return torch.mean(torch.logsumexp(s * z, dim=1) - s * z.gather(1, y[:, None]).squeeze(1))


def test_arcface_module_and_function_share_insightface_defaults():
    crit = la.create("arcface", num_classes=5, embedding_size=4)
    assert crit.margin == 0.5 and crit.scale == 64.0
    sig = inspect.signature(LF.arcface).parameters
    assert sig["margin"].default == 0.5 and sig["scale"].default == 64.0
    entry = la.info("arcface")
    assert entry.defaults["margin"] == 0.5 and entry.defaults["scale"] == 64.0
    assert "insightface" in entry.defaults_source["margin"] and "0.5" in entry.defaults_source["margin"]
    assert "insightface" in entry.defaults_source["scale"]


def test_arcface_default_loss_is_insightface_m_half_s_64():
    g = torch.Generator().manual_seed(3)
    e, y = torch.randn(10, 4, generator=g, dtype=DT), torch.randint(0, 5, (10,), generator=g)
    crit = la.create("arcface", num_classes=5, embedding_size=4).double()
    w = crit.weight.detach()
    assert bool((_target_angles(e, y, w) <= math.pi - 0.5).all())
    ref = _arcface_ref(e, y, w, 0.5, 64.0)
    torch.testing.assert_close(crit(e, y), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(LF.arcface(e, y, w), ref, rtol=1e-12, atol=1e-12)
    # PML's 28.6° (the old module default) is a different loss
    assert abs(float(_arcface_ref(e, y, w, math.radians(28.6), 64.0)) - float(ref)) > 1e-6


# ===================================================================== 2. UNPG
def _unpg_ref(e, y, w, m=0.5, s=64.0, wisk=1.5, reduction="mean"):
    """Jung-Jun-Uk/UNPG's ArcFace head + box_and_whisker_algorithm + UNPG head, in float64."""
    u, wn = _unit(e), _unit(w)
    cos = u @ wn.T
    n = e.shape[0]
    rows = torch.arange(n)
    logits = cos.clone()
    logits[rows, y] = torch.cos(torch.acos(cos[rows, y]) + m)  # every θ, no threshold / easy margin
    sims = u @ u.T
    sn = torch.stack([sims[i, j] for i in range(n) for j in range(i + 1, n) if y[i] != y[j]])
    x = torch.sort(sn).values
    q1, q3 = x[int(0.25 * len(x))], x[int(0.75 * len(x))]
    iqr = q3 - q1
    kept = x[(x >= q1 - wisk * iqr) & (x <= q3 + wisk * iqr)]
    full = torch.cat([logits, kept.unsqueeze(0).expand(n, -1)], dim=1)
    per = -torch.log_softmax(s * full, dim=1)[rows, y]
    return _reduce(per, reduction), len(x), len(kept)


def test_unpg_defaults_are_the_official_configs():
    crit = la.create("unpg", num_classes=5, embedding_size=4)
    assert (crit.margin, crit.scale, crit.whisker, crit.margin_type) == (0.5, 64.0, 1.5, "arcface")
    sig = inspect.signature(LF.unpg).parameters
    assert (sig["margin"].default, sig["scale"].default, sig["whisker"].default) == (0.5, 64.0, 1.5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_unpg_matches_official_definition_past_pi_minus_m(reduction):
    # D = 32: random cosines concentrate near 0, so a near-duplicate different-label pair
    # (cos ≈ 1) is an outlier negative pair that the filter drops
    e, y, w = _adversarial_batch(d=32, seed=1)
    j = int(torch.nonzero(y != y[5])[-1])  # not one of the flipped rows 0, 3
    assert j not in (0, 3)
    e[j] = e[5] + 1e-3
    assert bool((_target_angles(e, y, w) + 0.5 > math.pi).any())
    ref_e, ref_w = e.clone().requires_grad_(), w.clone().requires_grad_()
    ref, n_neg, n_kept = _unpg_ref(ref_e, y, ref_w, reduction=reduction)
    assert n_kept < n_neg  # the box-and-whisker filter is in play
    ours_e, ours_w = e.clone().requires_grad_(), w.clone().requires_grad_()
    ours = LF.unpg(ours_e, y, ours_w, reduction=reduction)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    g_ref = torch.autograd.grad(ref.sum(), [ref_e, ref_w])
    g_ours = torch.autograd.grad(ours.sum(), [ours_e, ours_w])
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    # the module with its defaults is the same loss
    crit = la.create("unpg", num_classes=w.shape[0], embedding_size=w.shape[1], reduction=reduction).double()
    crit.weight.data.copy_(w)
    torch.testing.assert_close(crit(e, y), ref.detach(), rtol=1e-10, atol=1e-10)


def test_unpg_gradcheck_past_pi_minus_m():
    e, y, w = _adversarial_batch(n=8, d=4, c=5, seed=2, flip=(0, 2))
    e[0] = e[0] + 0.3 * torch.randn(4, generator=torch.Generator().manual_seed(9), dtype=DT)  # keep |cos| < 1
    assert bool((_target_angles(e, y, w) + 0.5 > math.pi).any())
    gradcheck_loss(lambda x, ww: LF.unpg(x, y, ww, scale=4.0), e, w)


# ===================================================================== 3. Partial FC
def _pfc_ref(e, y, w, index, m=0.5, s=64.0, margin_type="arcface", reduction="mean"):
    """insightface PartialFC_V2 + CombinedMarginLoss + DistCrossEntropy (one process), float64.

    Returns the loss and the analytic gradients w.r.t. ``e`` and the full ``w``:
    ∂L/∂cos = s·(softmax − onehot)·r (r = 1/N for "mean", 1 otherwise, summed for "none"),
    zero where the raw cosine left [−1, 1]; then through the two L2 normalisations.
    """
    n = e.shape[0]
    rows = torch.arange(n)
    local = torch.tensor([index.tolist().index(int(v)) for v in y])
    ne, nw = e.norm(dim=1, keepdim=True), w[index].norm(dim=1, keepdim=True)
    u, wn = e / ne, w[index] / nw
    raw = u @ wn.T
    cos = raw.clamp(-1.0, 1.0)
    z = cos.clone()
    ct = cos[rows, local]
    if margin_type == "arcface":
        z[rows, local] = torch.cos(torch.acos(ct) + m)
    elif margin_type == "cosface":
        z[rows, local] = ct - m
    logits = s * z
    logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    per = torch.minimum(-logp[rows, local], torch.full((n,), CAP, dtype=DT))  # −log max(p, 1e-30)
    onehot = torch.zeros_like(z)
    onehot[rows, local] = 1.0
    r = 1.0 / n if reduction == "mean" else 1.0
    g_cos = s * (logp.exp() - onehot) * r * ((raw >= -1) & (raw <= 1))
    g_u, g_wn = g_cos @ wn, g_cos.T @ u
    g_e = (g_u - u * (u * g_u).sum(1, keepdim=True)) / ne
    g_wsub = (g_wn - wn * (wn * g_wn).sum(1, keepdim=True)) / nw
    g_w = torch.zeros_like(w)
    g_w[index] = g_wsub
    return _reduce(per, reduction), g_e, g_w, per


def _ours_with_grads(fn, e, w):
    ee, ww = e.clone().requires_grad_(), w.clone().requires_grad_()
    out = fn(ee, ww)
    g_e, g_w = torch.autograd.grad(out.sum(), [ee, ww])
    return out.detach(), g_e, g_w


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("margin_type", ["arcface", "cosface", "normface"])
def test_partial_fc_matches_insightface_value_and_straight_through_gradient(margin_type, reduction):
    e, y, w = _adversarial_batch(seed=0)
    index = torch.arange(w.shape[0])
    ref, g_e, g_w, per = _pfc_ref(e, y, w, index, margin_type=margin_type, reduction=reduction)
    if margin_type == "arcface":
        assert bool((_target_angles(e, y, w) + 0.5 > math.pi).any())  # cos(θ + m) past π − m
    assert bool((per == CAP).any())  # one loss is capped at −log 1e-30
    out, ge, gw = _ours_with_grads(
        lambda x, ww: LF.partial_fc(x, y, ww, sample_rate=1.0, margin_type=margin_type, reduction=reduction), e, w)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ge, g_e, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(gw, g_w, rtol=1e-8, atol=1e-10)


def test_partial_fc_module_defaults_match_insightface_reference():
    e, y, w = _adversarial_batch(seed=4)
    crit = la.create("partial_fc", num_classes=w.shape[0], embedding_size=w.shape[1], sample_rate=1.0).double()
    assert (crit.margin, crit.scale, crit.margin_type) == (0.5, 64.0, "arcface")
    crit.weight.data.copy_(w)
    ee = e.clone().requires_grad_()
    out = crit(ee, y)
    out.backward()
    ref, g_e, g_w, _ = _pfc_ref(e, y, w, torch.arange(w.shape[0]))
    torch.testing.assert_close(out.detach(), ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ee.grad, g_e, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(crit.weight.grad, g_w, rtol=1e-8, atol=1e-10)


def test_partial_fc_clamps_cosines_to_unit_interval():
    # an embedding parallel to its centre: the raw cosine may round above 1; clamped it is 1
    g = torch.Generator().manual_seed(5)
    w = torch.randn(4, 3, generator=g, dtype=DT)
    e = torch.cat([w[1:2] * 3.0, torch.randn(3, 3, generator=g, dtype=DT)])
    y = torch.tensor([1, 0, 2, 3])
    ref, g_e, g_w, _ = _pfc_ref(e, y, w, torch.arange(4), s=8.0, reduction="none")
    out, ge, gw = _ours_with_grads(
        lambda x, ww: LF.partial_fc(x, y, ww, sample_rate=1.0, scale=8.0, reduction="none"), e, w)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    assert torch.isfinite(ge).all() and torch.isfinite(gw).all()
    torch.testing.assert_close(ge, g_e, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(gw, g_w, rtol=1e-8, atol=1e-10)


def test_partial_fc_index_keyword_uses_exactly_those_centres():
    e, y, w = _adversarial_batch(n=10, c=40, seed=6)
    index = torch.unique(torch.cat([y, torch.tensor([2, 11, 37])]))
    ref, g_e, g_w, _ = _pfc_ref(e, y, w, index)
    # sample_rate and the generator are ignored: no random draw
    fn = lambda x, ww: LF.partial_fc(x, y, ww, sample_rate=0.01, index=index, generator=torch.Generator())
    out, ge, gw = _ours_with_grads(fn, e, w)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ge, g_e, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(gw, g_w, rtol=1e-8, atol=1e-10)
    touched = torch.nonzero(gw.abs().sum(1) > 0).flatten()
    assert torch.equal(touched, index)
    # the module takes it as a call keyword
    crit = la.create("partial_fc", num_classes=40, embedding_size=w.shape[1], sample_rate=0.01, seed=0).double()
    crit.weight.data.copy_(w)
    torch.testing.assert_close(crit(e, y, index=index), ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(crit(e, y, index=index.to(torch.int32)), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("bad,match", [
    (torch.tensor([5, 1, 2, 3, 4, 6]), "sorted"),            # not ascending
    (torch.tensor([0, 1, 1, 2, 3, 4, 5, 6]), "sorted"),      # repeats
    (torch.tensor([0, 1, 2]), "include every class"),        # a label is missing
    (torch.arange(0, 12), r"\[0, 10\)"),                     # beyond num_classes
    (torch.tensor([-1, 0, 1, 2, 3, 4, 5, 6]), r"\[0, 10\)"),  # negative id
    (torch.arange(8).reshape(2, 4), "1-D"),                  # not [S]
    (torch.zeros(0, dtype=torch.long), "non-empty"),         # empty
])
def test_partial_fc_bad_index_raises_value_error_naming_index(bad, match):
    g = torch.Generator().manual_seed(7)
    e = torch.randn(6, 4, generator=g, dtype=DT)
    y = torch.tensor([0, 1, 2, 3, 4, 6])
    w = torch.randn(10, 4, generator=g, dtype=DT)
    with pytest.raises(ValueError, match="index") as info:
        LF.partial_fc(e, y, w, index=bad)
    assert info.match(match)
    crit = la.create("partial_fc", num_classes=10, embedding_size=4)
    with pytest.raises(ValueError, match="index"):
        crit(e.float(), y, index=bad)


def test_partial_fc_index_of_wrong_type_raises_type_error_naming_index():
    e, y = torch.randn(3, 4), torch.tensor([0, 1, 2])
    w = torch.randn(5, 4)
    with pytest.raises(TypeError, match="index"):
        LF.partial_fc(e, y, w, index=torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="index"):
        LF.partial_fc(e, y, w, index=[0, 1, 2])


def test_unpg_filter_mask_equals_box_and_whisker_on_every_length():
    from lossatlas.functional.metric import _whisker_mask

    g = torch.Generator().manual_seed(8)
    for length in range(1, 41):
        values = torch.randn(length + 7, generator=g, dtype=DT)
        values[:3] = torch.tensor([5.0, -4.0, 0.1], dtype=DT)  # outliers and a repeat
        values[3] = 0.1
        valid = torch.ones_like(values, dtype=torch.bool)
        valid[torch.randperm(values.numel(), generator=g)[:7]] = False
        valid[0] = length > 3  # the outlier is sometimes among the valid values
        for wisk in (0.0, 1.5):
            kept = values[_whisker_mask(values, valid, wisk)].sort().values
            torch.testing.assert_close(kept, LF.box_and_whisker_filter(values[valid], wisk), rtol=0, atol=0)


def test_unpg_compiles_to_one_graph():
    e, y, w = _adversarial_batch(d=8, seed=3)
    crit = la.create("unpg", num_classes=w.shape[0], embedding_size=8, validate=False).double()
    crit.weight.data.copy_(w)
    torch._dynamo.reset()
    compiled = torch.compile(crit, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(e, y), _unpg_ref(e, y, w)[0], rtol=1e-10, atol=1e-10)
