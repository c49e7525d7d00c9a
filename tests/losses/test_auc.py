"""AUC objectives (issue 19: H1 pairwise_auc, G12 mw, H2 aucm / compositional_auc, D5 multilabel_aucm).

Expected values are computed here independently: explicit loops over the (positive, negative)
pairs written from LibAUC's definitions (libauc/losses/surrogate.py, auc.py), and closed forms
in the class means and variances. Parity with LibAUC's own outputs is tests/test_parity.py.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

import lossatlas as la
import lossatlas.functional as LF
from helpers import gradcheck_loss

F64 = torch.float64


def _batch(n: int = 12, n_pos: int = 4, seed: int = 0, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    target = torch.zeros(n, dtype=torch.long)
    target[torch.randperm(n, generator=g)[:n_pos]] = 1
    scores = torch.sigmoid(torch.randn(n, generator=g, dtype=torch.float64) * 1.5 + target)
    return scores.to(dtype).requires_grad_(), target


def _surrogate_ref(t: float, name: str, m: float, s: float) -> float:
    """LibAUC's libauc/losses/surrogate.py, one pair at a time (exponential: e^{-st})."""
    if name == "squared_hinge":
        return max(m - t, 0.0) ** 2
    if name == "squared":
        return (m - t) ** 2
    if name == "hinge":
        return max(m - t, 0.0)
    if name == "logistic":
        return math.log(1.0 + math.exp(-s * t))
    if name == "exponential":
        return math.exp(-s * t)
    return max(-s * (m + t) + m, max(m - t, s * (t - m)))  # barrier_hinge, hparam = (m, s)


def _pairs_ref(scores: torch.Tensor, target: torch.Tensor, name: str, m: float, s: float) -> float:
    vals = scores.tolist()
    pos = [v for v, y in zip(vals, target.tolist()) if y == 1]
    neg = [v for v, y in zip(vals, target.tolist()) if y == 0]
    return sum(_surrogate_ref(p - q, name, m, s) for p in pos for q in neg) / (len(pos) * len(neg))


SURROGATES = ["squared_hinge", "squared", "hinge", "logistic", "exponential", "barrier_hinge"]


# ----------------------------------------------------------------------------- H1 pairwise_auc
@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize(("margin", "scale"), [(1.0, 1.0), (0.3, 2.5)])
def test_pairwise_auc_is_the_mean_over_pairs(surrogate, margin, scale):
    scores, target = _batch()
    out = LF.pairwise_auc(scores, target, surrogate=surrogate, margin=margin, scale=scale)
    assert out.dtype == torch.float64 and out.dim() == 0
    assert float(out.detach()) == pytest.approx(_pairs_ref(scores.detach(), target, surrogate, margin, scale), rel=1e-12)


@pytest.mark.parametrize("surrogate", SURROGATES)
def test_pairwise_auc_gradient_is_the_pair_sums(surrogate):
    # d/ds_k of mean_ij ℓ(s_i - s_j): Σ_j ℓ'(s_k - s_j) / (P M) at a positive k, −Σ_i ℓ'(s_i - s_k) / (P M) at a negative
    scores, target = _batch(seed=3)
    m, s = 0.4, 1.7
    (grad,) = torch.autograd.grad(LF.pairwise_auc(scores, target, surrogate=surrogate, margin=m, scale=s), scores)
    h = 1e-6
    dl = {  # ℓ'(t) by central differences of the scalar reference (kinks avoided: |m - t| > 1e-3 here)
        (i, j): (_surrogate_ref(t + h, surrogate, m, s) - _surrogate_ref(t - h, surrogate, m, s)) / (2 * h)
        for i, j, t in [(i, j, float(scores.detach()[i] - scores.detach()[j])) for i in range(12) for j in range(12)]
    }
    pos = [i for i in range(12) if target[i] == 1]
    neg = [j for j in range(12) if target[j] == 0]
    expected = torch.zeros(12, dtype=F64)
    for i in pos:
        for j in neg:
            expected[i] += dl[(i, j)] / (len(pos) * len(neg))
            expected[j] -= dl[(i, j)] / (len(pos) * len(neg))
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-8)


def test_squared_surrogate_is_a_closed_form_of_class_means_and_variances():
    # mean_ij (m - s_i + s_j)² = (m - μ₊ + μ₋)² + σ₊² + σ₋² (population variances)
    scores, target = _batch(n=20, n_pos=7, seed=5)
    s = scores.detach()
    pos, neg = s[target == 1], s[target == 0]
    m = 0.8
    closed = (m - pos.mean() + neg.mean()) ** 2 + pos.var(unbiased=False) + neg.var(unbiased=False)
    torch.testing.assert_close(LF.pairwise_auc(s, target, surrogate="squared", margin=m), closed, rtol=1e-12, atol=0)


def test_exponential_surrogate_factorises():
    # mean_ij e^{-c(s_i - s_j)} = mean_i e^{-c s_i} · mean_j e^{c s_j}
    scores, target = _batch(n=15, n_pos=5, seed=8)
    s, c = scores.detach(), 1.3
    closed = torch.exp(-c * s[target == 1]).mean() * torch.exp(c * s[target == 0]).mean()
    torch.testing.assert_close(LF.pairwise_auc(s, target, surrogate="exponential", scale=c), closed, rtol=1e-12, atol=0)


@pytest.mark.parametrize("surrogate", ["hinge", "squared_hinge"])
def test_perfect_separation_with_margin_zero_is_zero(surrogate):
    scores = torch.tensor([0.9, 0.1, 0.8, 0.3, 0.2], dtype=F64, requires_grad=True)
    target = torch.tensor([1, 0, 1, 0, 0])
    out = LF.pairwise_auc(scores, target, surrogate=surrogate, margin=0.0)
    (g,) = torch.autograd.grad(out, scores)
    assert float(out) == 0.0 and bool((g == 0).all())
    # one inverted pair (0.3 above 0.25) is the only term
    flipped = torch.tensor([0.9, 0.1, 0.25, 0.3, 0.2], dtype=F64)
    expected = (0.05 if surrogate == "hinge" else 0.05 ** 2) / 6
    assert float(LF.pairwise_auc(flipped, target, surrogate=surrogate, margin=0.0)) == pytest.approx(expected, rel=1e-9)


def test_logistic_is_softplus_and_finite_at_extreme_scores():
    scores, target = _batch(n=10, n_pos=3, seed=2)
    s = scores.detach()
    diff = s[target == 1][:, None] - s[target == 0][None, :]
    torch.testing.assert_close(LF.pairwise_auc(s, target, scale=3.0), torch.nn.functional.softplus(-3.0 * diff).mean(),
                               rtol=1e-12, atol=1e-14)
    big = torch.tensor([1e4, -1e4, -1e4, 1e4], dtype=torch.float32, requires_grad=True)
    y = torch.tensor([0, 1, 0, 1])
    out = LF.pairwise_auc(big, y)  # log(1 + e^{2e4}) computed literally (as LibAUC) overflows; softplus does not
    out.backward()
    # pairs (positive - negative): -2e4, 0, 0, 2e4 -> (2e4 + 2 log 2 + 0) / 4
    assert float(out) == pytest.approx((2e4 + 2 * math.log(2.0)) / 4, rel=1e-6) and torch.isfinite(big.grad).all()


def test_reductions_are_over_the_positive_rows():
    scores, target = _batch(seed=4)
    s = scores.detach()
    none = LF.pairwise_auc(s, target, reduction="none")
    neg = s[target == 0]
    for i in range(12):
        expected = torch.nn.functional.softplus(-(s[i] - neg)).mean() if target[i] == 1 else torch.tensor(0.0, dtype=F64)
        torch.testing.assert_close(none[i], expected)
    torch.testing.assert_close(LF.pairwise_auc(s, target, reduction="sum"), none.sum())
    torch.testing.assert_close(LF.pairwise_auc(s, target), none.sum() / 4)


def test_module_and_function_agree_and_scores_may_be_n_by_1():
    scores, target = _batch()
    crit = la.create("pairwise_auc", surrogate="barrier_hinge", margin=0.5, scale=2.0)
    torch.testing.assert_close(crit(scores, target), LF.pairwise_auc(scores, target, **crit.functional_kwargs()))
    torch.testing.assert_close(crit(scores[:, None], target[:, None]), crit(scores, target))
    # float and bool targets are the same labels
    torch.testing.assert_close(crit(scores, target.double()), crit(scores, target.bool()))


@pytest.mark.parametrize("surrogate", SURROGATES)
def test_pairwise_gradcheck(surrogate):
    scores, target = _batch(n=8, n_pos=3, seed=6)
    gradcheck_loss(lambda s: LF.pairwise_auc(s, target, surrogate=surrogate, margin=0.45, scale=1.5), scores.detach())


# ----------------------------------------------------------------------------- G12 mw
def test_mw_is_bce_on_every_positive_negative_difference():
    scores, target = _batch(seed=9)
    s = scores.detach()
    pos, neg = s[target == 1], s[target == 0]
    bce = torch.nn.functional.binary_cross_entropy(torch.sigmoid(2.0 * (pos[:, None] - neg[None, :])),
                                                   torch.ones(len(pos), len(neg), dtype=F64))
    torch.testing.assert_close(LF.mw(s, target, scale=2.0), bce)
    torch.testing.assert_close(LF.mw(s, target), LF.pairwise_auc(s, target, surrogate="logistic"))


def test_mw_on_a_query_document_matrix_compares_every_pair_of_the_batch():
    g = torch.Generator().manual_seed(1)
    sim = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    rel = torch.zeros(4, 5, dtype=torch.long)
    rel[0, 0] = rel[1, 1] = rel[2, 2] = rel[3, 3] = rel[0, 4] = 1
    out = LF.mw(sim, rel)
    flat = sim.detach().flatten().tolist()
    labels = rel.flatten().tolist()
    ref = [math.log1p(math.exp(-(p - q))) for p, yp in zip(flat, labels) if yp for q, yq in zip(flat, labels) if not yq]
    assert float(out) == pytest.approx(sum(ref) / len(ref), rel=1e-12)
    assert LF.mw(sim, rel, reduction="none").shape == (4, 5)
    gradcheck_loss(lambda s: LF.mw(s, rel), sim.detach())
    with pytest.raises(ValueError, match="target must have the shape of scores"):
        LF.mw(sim, rel[:, :4])


@pytest.mark.parametrize("shape", [(6,), (2, 3)], ids=["vector", "query_document"])
def test_mw_without_a_positive_names_mw(shape):
    # both input layouts say which loss needs a positive and a negative (mutation seed 27)
    with pytest.raises(ValueError, match=r"^mw needs at least one positive and one negative"):
        LF.mw(torch.randn(shape, dtype=F64), torch.zeros(shape, dtype=torch.long))


def test_inputs_on_another_device_are_named():
    # a "meta" tensor stands in for a second device on a CPU-only machine (mutation seed 27):
    # the error names scores and the argument that is elsewhere (target, or a / b / alpha)
    s, y = torch.rand(6, dtype=F64), torch.tensor([1, 0, 1, 0, 0, 1])
    with pytest.raises(ValueError, match=r"^scores is on cpu but target is on meta; move them to the same device$"):
        LF.aucm(s, y.to("meta"))
    for name in ("a", "b", "alpha"):
        with pytest.raises(ValueError, match=rf"^scores is on cpu but {name} is on meta; move them to the same device$"):
            LF.aucm(s, y, **{name: torch.zeros((), dtype=F64, device="meta")})


# ----------------------------------------------------------------------------- H2 aucm
def _aucm_v1_ref(s, y, a, b, alpha, m, p):
    """LibAUC AUCMLoss v1, written from its docstring/code: every mean over all N rows."""
    pos, neg = (y == 1).double(), (y == 0).double()
    return ((1 - p) * ((s - a) ** 2 * pos).mean() + p * ((s - b) ** 2 * neg).mean()
            + 2 * alpha * (p * (1 - p) * m + (p * s * neg - (1 - p) * s * pos).mean()) - p * (1 - p) * alpha ** 2)


def _aucm_v2_ref(s, y, a, b, alpha, m):
    """The documented v2 (LibAUC's MultiLabelAUCMLoss v2): means over the positives / negatives."""
    sp, sn = s[y == 1], s[y == 0]
    return ((sp - a) ** 2).mean() + ((sn - b) ** 2).mean() + 2 * alpha * (m + sn.mean() - sp.mean()) - alpha ** 2


def _params(a=0.6, b=0.3, alpha=0.25):
    return {k: torch.tensor([v], dtype=F64, requires_grad=True) for k, v in (("a", a), ("b", b), ("alpha", alpha))}


@pytest.mark.parametrize("imratio", [None, 0.2])
def test_aucm_v1_is_libaucs_formula(imratio):
    scores, target = _batch(seed=11)
    pr = _params()
    out = LF.aucm(scores, target, **pr, margin=0.7, imratio=imratio)
    p = 4 / 12 if imratio is None else imratio
    ref_in = {k: v.detach().clone().requires_grad_() for k, v in pr.items()}
    s_ref = scores.detach().clone().requires_grad_()
    ref = _aucm_v1_ref(s_ref, target, ref_in["a"], ref_in["b"], ref_in["alpha"], 0.7, p)
    torch.testing.assert_close(out, ref.reshape(()), rtol=1e-12, atol=1e-14)
    got = torch.autograd.grad(out, [scores, *pr.values()])
    want = torch.autograd.grad(ref.sum(), [s_ref, *ref_in.values()])
    for g1, g2 in zip(got, want):
        torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-14)


def test_aucm_v2_is_the_documented_formula_not_libaucs_misplaced_parenthesis():
    scores, target = _batch(seed=12)
    pr = _params()
    s = scores.detach()
    out = LF.aucm(s, target, **pr, version="v2")
    ref = _aucm_v2_ref(s, target, pr["a"], pr["b"], pr["alpha"], 1.0)
    torch.testing.assert_close(out, ref.reshape(()).detach(), rtol=1e-12, atol=1e-14)
    # LibAUC AUCMLoss v2: self.mean(s*neg - self.mean(s*pos)) = sum_neg(s)/N - mean_pos(s): a different number
    pos, neg = (target == 1).double(), (target == 0).double()
    buggy_inner = (s * neg - (s * pos).sum() / pos.sum())
    buggy = (((s - pr["a"]) ** 2 * pos).sum() / pos.sum() + ((s - pr["b"]) ** 2 * neg).sum() / neg.sum()
             + 2 * pr["alpha"] * (1.0 + buggy_inner.sum() / torch.count_nonzero(buggy_inner)) - pr["alpha"] ** 2)
    assert abs(float(out) - float(buggy)) > 1e-3


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_aucm_at_the_optimal_a_b_alpha_is_the_variance_form(version):
    # min over a, b and max over α of v2: σ₊² + σ₋² + (m − μ₊ + μ₋)² (unconstrained α* = m − μ₊ + μ₋);
    # v1 with the batch prior p is p(1−p) times it. There every parameter's gradient is 0.
    scores, target = _batch(n=16, n_pos=5, seed=13)
    s = scores.detach()
    sp, sn = s[target == 1], s[target == 0]
    m = 0.9
    pr = _params(float(sp.mean()), float(sn.mean()), float(m - sp.mean() + sn.mean()))
    closed = sp.var(unbiased=False) + sn.var(unbiased=False) + (m - sp.mean() + sn.mean()) ** 2
    if version == "v1":
        closed = closed * (5 / 16) * (11 / 16)
    out = LF.aucm(s, target, **pr, margin=m, version=version)
    torch.testing.assert_close(out, closed, rtol=1e-12, atol=1e-14)
    for g in torch.autograd.grad(out, list(pr.values())):
        assert float(g.abs().max()) < 1e-12


def test_aucm_none_spreads_the_loss_over_the_rows():
    scores, target = _batch(seed=14)
    for version in ("v1", "v2"):
        none = LF.aucm(scores, target, **_params(), version=version, reduction="none")
        assert none.shape == (12,)
        torch.testing.assert_close(none.mean(), LF.aucm(scores, target, **_params(), version=version))
        torch.testing.assert_close(LF.aucm(scores, target, **_params(), version=version, reduction="sum"), none.sum())


def test_aucm_module_parameters_and_function_defaults():
    crit = la.create("aucm", margin=0.5)
    assert [n for n, _ in crit.named_parameters()] == ["a", "b", "alpha"]
    assert all(p.shape == (1,) and float(p) == 0.0 for p in crit.parameters())
    scores, target = _batch(seed=15)
    # la.functional.aucm without a, b, alpha is at LibAUC's initial 0
    torch.testing.assert_close(crit(scores, target), LF.aucm(scores, target, margin=0.5))
    with torch.no_grad():
        crit.a.fill_(0.4)
    torch.testing.assert_close(crit.double()(scores, target), LF.aucm(scores, target, **crit.functional_kwargs()))
    fresh = la.create("aucm", margin=0.5).double()
    fresh.load_state_dict(crit.state_dict())
    torch.testing.assert_close(fresh(scores, target), crit(scores, target))


def test_aucm_v1_needs_no_positive_v2_does():
    s = torch.tensor([0.2, 0.4, 0.6])
    y = torch.zeros(3, dtype=torch.long)
    assert float(LF.aucm(s, y, **_params())) == 0.0  # p = 0: every term vanishes (LibAUC v1)
    with pytest.raises(ValueError, match=r"aucm \(version 'v2'.*positive and one negative.*0 positive"):
        LF.aucm(s, y, **_params(), version="v2")
    with pytest.raises(ValueError, match="one negative"):
        LF.aucm(s, torch.ones(3, dtype=torch.long), version="v2")
    out = LF.aucm(s.requires_grad_(), y, **_params(), version="v2", validate=False)  # finite, no NaN
    assert torch.isfinite(out)


def test_aucm_gradcheck_with_parameters():
    scores, target = _batch(n=8, n_pos=3, seed=16)
    for version in ("v1", "v2"):
        pr = {k: v.detach() for k, v in _params().items()}
        assert torch.autograd.gradcheck(
            lambda s, a, b, al: LF.aucm(s, target, a=a, b=b, alpha=al, margin=0.8, version=version),
            [scores.detach().requires_grad_(), *(v.clone().requires_grad_() for v in pr.values())])


# ----------------------------------------------------------------------------- H2 compositional_auc
def test_compositional_alternates_k_ce_calls_and_k_auc_calls():
    crit = la.create("compositional_auc", k=2, margin=0.6).double()
    with torch.no_grad():
        crit.a.fill_(0.5)
        crit.alpha.fill_(0.1)
    phases = []
    for step in range(6):
        scores, target = _batch(seed=20 + step)
        assert crit.phase == ("ce" if step % 4 < 2 else "auc")
        out = crit(scores, target)
        phases.append(crit.last_phase)
        if phases[-1] == "ce":
            expected = torch.nn.functional.binary_cross_entropy(scores, target.double())
        else:
            expected = _aucm_v1_ref(scores, target, crit.a, crit.b, crit.alpha, 0.6, 4 / 12).reshape(())
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-14)
    assert phases == ["ce", "ce", "auc", "auc", "ce", "ce"] and crit.step == 6


def test_compositional_call_counter_is_in_the_state_dict():
    crit = la.create("compositional_auc").double()
    scores, target = _batch(seed=30)
    crit(scores, target)
    buf = io.BytesIO()
    torch.save(crit.state_dict(), buf)
    buf.seek(0)
    resumed = la.create("compositional_auc").double()
    resumed.load_state_dict(torch.load(buf))
    assert resumed.step == 1 and resumed.phase == "auc"
    torch.testing.assert_close(resumed(scores, target), crit(scores, target))
    resumed.reset()
    assert resumed.phase == "ce" and resumed.last_phase is None


def test_compositional_function_at_step_equals_the_module_call():
    crit = la.create("compositional_auc", k=1).double()
    for step in range(4):
        scores, target = _batch(seed=40 + step)
        kw = crit.functional_kwargs()
        assert kw["step"] == step % 2
        torch.testing.assert_close(LF.compositional_auc(scores, target, **kw), crit(scores, target))


@pytest.mark.parametrize(("name", "other"), [("margin", 0.5), ("k", 2), ("imratio", 0.3), ("version", "v2")])
def test_compositional_hyperparameters_act_on_the_auc_calls(name, other):
    scores, target = _batch(seed=50)
    base = {"a": torch.tensor([0.5], dtype=F64), "b": torch.tensor([0.3], dtype=F64),
            "alpha": torch.tensor([0.2], dtype=F64), "step": 1}
    if name == "k":  # k = 1: call 1 is an AUC call; k = 2: a cross-entropy call
        v1 = LF.compositional_auc(scores, target, **base)
        v2 = LF.compositional_auc(scores, target, **base, k=other)
        torch.testing.assert_close(v2, torch.nn.functional.binary_cross_entropy(scores, target.double()))
    else:
        v1 = LF.compositional_auc(scores, target, **base)
        v2 = LF.compositional_auc(scores, target, **base, **{name: other})
        auc_kwargs = {k: v for k, v in base.items() if k != "step"}
        torch.testing.assert_close(v2, LF.aucm(scores, target, **auc_kwargs, **{name: other}))
    assert abs(float(v1) - float(v2)) > 1e-6


def test_compositional_scores_must_be_probabilities_and_may_be_0_or_1():
    target = torch.tensor([1, 0, 1, 0])
    with pytest.raises(ValueError, match=r"scores must be probabilities in \[0, 1\]"):
        LF.compositional_auc(torch.tensor([0.2, 1.5, 0.3, 0.1]), target)
    s = torch.tensor([1.0, 0.0, 0.0, 1.0], requires_grad=True)  # two certain mistakes: BCE's log is clamped at -100
    out = LF.compositional_auc(s, target)
    out.backward()
    assert float(out) == pytest.approx(50.0) and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("step", [0, 1])
def test_compositional_gradcheck_in_each_phase(step):
    scores, target = _batch(n=8, n_pos=3, seed=60)
    pr = {k: v.detach() for k, v in _params().items()}
    gradcheck_loss(lambda s: LF.compositional_auc(s, target, **pr, step=step), scores.detach())


# ----------------------------------------------------------------------------- D5 multilabel_aucm
def _multilabel_batch(n=16, labels=3, seed=70):
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(n, labels, generator=g) < 0.35).long()
    target[0] = 1
    target[1] = 0  # every label has a positive and a negative
    return torch.rand(n, labels, generator=g, dtype=torch.float64).requires_grad_(), target


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("margin", [1.0, 0.4])
def test_multilabel_aucm_is_the_mean_of_each_labels_aucm(version, margin):
    scores, target = _multilabel_batch()
    a, b, alpha = (torch.tensor(v, dtype=F64) for v in ([0.5, 0.6, 0.4], [0.3, 0.2, 0.35], [0.1, 0.3, 0.2]))
    out = LF.multilabel_aucm(scores, target, 3, a=a, b=b, alpha=alpha, margin=margin, version=version)
    s = scores.detach()
    per = []
    for j in range(3):
        if version == "v1":  # margin acts in v1 too (LibAUC's multi-label v1 drops it; equal at margin 1)
            p = float(target[:, j].double().mean())
            per.append(_aucm_v1_ref(s[:, j], target[:, j], a[j], b[j], alpha[j], margin, p))
        else:
            per.append(_aucm_v2_ref(s[:, j], target[:, j], a[j], b[j], alpha[j], margin))
    torch.testing.assert_close(out, torch.stack(per).mean(), rtol=1e-12, atol=1e-14)
    none = LF.multilabel_aucm(scores, target, 3, a=a, b=b, alpha=alpha, margin=margin, version=version,
                              reduction="none")
    assert none.shape == (16, 3)
    torch.testing.assert_close(none.mean(), out)


def test_multilabel_aucm_priors_per_label():
    scores, target = _multilabel_batch(seed=71)
    pr = [0.1, 0.5, 0.3]
    out = LF.multilabel_aucm(scores, target, 3, imratio=pr)
    s = scores.detach()
    zero = torch.tensor(0.0, dtype=F64)
    ref = torch.stack([_aucm_v1_ref(s[:, j], target[:, j], zero, zero, zero, 1.0, pr[j]) for j in range(3)]).mean()
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="one prior per label"):
        LF.multilabel_aucm(scores, target, 3, imratio=[0.1, 0.2])


def test_multilabel_aucm_module_parameters_have_one_entry_per_label():
    crit = la.create("multilabel_aucm", num_labels=3)
    assert crit.a.shape == crit.b.shape == crit.alpha.shape == (3,)
    assert set(crit.state_dict()) == {"a", "b", "alpha"}
    scores, target = _multilabel_batch(seed=72)
    out = crit.double()(scores, target)
    out.backward()
    assert crit.a.grad.shape == (3,)
    with pytest.raises(ValueError, match=r"scores must have shape \[N, num_labels=3\]"):
        crit(scores[:, :2], target[:, :2])


def test_multilabel_aucm_v2_names_the_label_without_positives():
    scores, target = _multilabel_batch(seed=73)
    target[:, 1] = 0
    LF.multilabel_aucm(scores, target, 3)  # v1: fine
    with pytest.raises(ValueError, match=r"label column\(s\) \[1\]"):
        LF.multilabel_aucm(scores, target, 3, version="v2")


def test_multilabel_aucm_gradcheck():
    scores, target = _multilabel_batch(n=8, seed=74)
    a = torch.tensor([0.5, 0.6, 0.4], dtype=F64, requires_grad=True)
    for version in ("v1", "v2"):
        assert torch.autograd.gradcheck(
            lambda s, a_: LF.multilabel_aucm(s, target, 3, a=a_, b=a_ * 0.5, alpha=a_ * 0.3, version=version),
            [scores.detach().requires_grad_(), a])


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("loss_id", ["pairwise_auc", "mw", "aucm", "compositional_auc"])
def test_bad_binary_input_is_refused_naming_the_argument(loss_id):
    crit = la.create(loss_id)
    s = torch.tensor([0.2, 0.7, 0.4, 0.9])
    y = torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="scores must have shape"):
        crit(s.view(1, 2, 2), y)
    with pytest.raises(ValueError, match="target must have the shape of scores"):
        crit(s, y[:3])
    with pytest.raises(ValueError, match=r"target must hold 0/1 labels .* got values \[2\]"):
        crit(s, torch.tensor([0, 2, 0, 1]))
    with pytest.raises(ValueError, match="scores contains NaN"):
        crit(torch.tensor([0.2, float("nan"), 0.4, 0.9]), y)
    with pytest.raises(TypeError, match="scores must be a floating-point tensor"):
        crit(torch.tensor([0, 1, 0, 1]), y)
    with pytest.raises(TypeError, match="scores must be a torch.Tensor"):
        crit([0.2, 0.7], y)


@pytest.mark.parametrize("loss_id", ["pairwise_auc", "mw"])
def test_pairwise_losses_need_a_positive_and_a_negative(loss_id):
    crit = la.create(loss_id)
    s = torch.tensor([0.2, 0.7, 0.4], requires_grad=True)
    with pytest.raises(ValueError, match=rf"{loss_id} needs at least one positive and one negative.*0 positive"):
        crit(s, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="3 positive"):
        crit(s, torch.ones(3, dtype=torch.long))
    # without the checks such a batch has no pair: 0 with a zero gradient (and an empty batch is 0)
    out = la.create(loss_id, validate=False)(s, torch.zeros(3, dtype=torch.long))
    out.backward()
    assert float(out) == 0.0 and bool((s.grad == 0).all())
    assert float(crit(torch.zeros(0), torch.zeros(0, dtype=torch.long))) == 0.0


@pytest.mark.parametrize(("loss_id", "kwargs", "match"), [
    ("pairwise_auc", {"surrogate": "sigmoid"}, "surrogate must be one of"),
    ("pairwise_auc", {"scale": 0.0}, "scale must be > 0"),
    ("mw", {"scale": -1.0}, "scale must be > 0"),
    ("aucm", {"version": "v3"}, "version must be 'v1'"),
    ("aucm", {"imratio": 1.0}, r"imratio must lie in \(0, 1\)"),
    ("aucm", {"imratio": 0.2, "version": "v2"}, "version 'v2' has none"),
    ("aucm", {"margin": float("inf")}, "margin must be finite"),
    ("compositional_auc", {"k": 0}, "k must be a positive int"),
    ("compositional_auc", {"k": 1.5}, "k must be an int"),
    ("multilabel_aucm", {"num_labels": 0}, "num_labels must be a positive int"),
    ("multilabel_aucm", {"num_labels": 2, "imratio": [0.2, 1.2]}, r"imratio\[1\] must lie in \(0, 1\)"),
])
def test_bad_hyperparameters(loss_id, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        crit = la.create(loss_id, **kwargs)
        crit(torch.rand(6, 2) if loss_id == "multilabel_aucm" else torch.rand(6),
             torch.tensor([[1, 0], [0, 1]] * 3) if loss_id == "multilabel_aucm" else torch.tensor([1, 0] * 3))


def test_parameters_of_the_wrong_shape_are_refused():
    s, y = torch.rand(4), torch.tensor([1, 0, 1, 0])
    with pytest.raises(ValueError, match="a must hold one value"):
        LF.aucm(s, y, a=torch.zeros(2))
    with pytest.raises(ValueError, match=r"alpha must have shape \[num_labels=3\]"):
        LF.multilabel_aucm(torch.rand(4, 3), torch.ones(4, 3), 3, alpha=torch.zeros(2))


def test_loss_module_copies_keep_their_parameters():
    crit = la.create("aucm")
    with torch.no_grad():
        crit.alpha.fill_(0.3)
    clone = copy.deepcopy(crit)
    assert float(clone.alpha) == pytest.approx(0.3) and clone.alpha is not crit.alpha


def test_functional_module_doctests():
    import doctest

    import lossatlas.functional.auc as mod

    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
