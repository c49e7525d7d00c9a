"""K1: Hinton's KD and decoupled KD: paper identities, mdistiller's formulas, limits, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
from helpers import gradcheck_loss
from lossatlas.functional.distillation import decoupled_kl, soft_kl

G = torch.Generator().manual_seed(23)


def _batch(n: int = 7, c: int = 5, scale: float = 2.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    s = torch.randn(n, c, generator=G, dtype=torch.float64) * scale
    t = torch.randn(n, c, generator=G, dtype=torch.float64) * scale
    return s, t, torch.randint(0, c, (n,), generator=G)


def _reference_kd_term(s, t, temperature):
    # mdistiller's kd_loss written out: KL with probabilities, summed over classes, per sample, times T²
    p_t = torch.softmax(t / temperature, 1)
    return (p_t * (p_t.log() - torch.log_softmax(s / temperature, 1))).sum(1) * temperature**2


def _reference_dkd_terms(s, t, y, temperature):
    # DKD as the paper writes it: binary (p_y, 1 - p_y) from summed probabilities, and the non-target
    # distribution from a softmax with the target column pushed down by 1000 (mdistiller's masking)
    gt = F.one_hot(y, s.shape[1]).to(s.dtype)
    ps, pt = torch.softmax(s / temperature, 1), torch.softmax(t / temperature, 1)
    bs = torch.stack([(ps * gt).sum(1), (ps * (1 - gt)).sum(1)], 1)
    bt = torch.stack([(pt * gt).sum(1), (pt * (1 - gt)).sum(1)], 1)
    tckd = (bt * (bt.log() - bs.log())).sum(1)
    qt = torch.softmax(t / temperature - 1000.0 * gt, 1)
    log_qs = torch.log_softmax(s / temperature - 1000.0 * gt, 1)
    nckd = torch.where(qt > 0, qt * (qt.log() - log_qs), torch.zeros_like(qt)).sum(1)
    return tckd, nckd


@pytest.mark.parametrize("temperature", [1.0, 4.0, 0.5])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.9, 1.0])
def test_kd_is_the_weighted_sum_of_cross_entropy_and_t2_kl(temperature, alpha):
    s, t, y = _batch()
    got = la.functional.kd(s, t, y, temperature=temperature, alpha=alpha, reduction="none")
    want = (1 - alpha) * F.cross_entropy(s, y, reduction="none") + alpha * _reference_kd_term(s, t, temperature)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    mean = la.functional.kd(s, t, y, temperature=temperature, alpha=alpha)
    torch.testing.assert_close(mean, want.mean(), rtol=1e-12, atol=1e-12)


def test_kd_alpha_zero_is_cross_entropy_and_identical_models_leave_only_it():
    s, t, y = _batch()
    torch.testing.assert_close(la.functional.kd(s, t, y, alpha=0.0), F.cross_entropy(s, y))
    # the student equal to the teacher: the KL term is 0 at every temperature
    torch.testing.assert_close(la.functional.kd(s, s.clone(), y, alpha=0.9, temperature=3.0), 0.1 * F.cross_entropy(s, y))
    # the KL term is non-negative and the same for logits shifted per row (softmax invariance)
    term = soft_kl(s, t, 2.0)
    assert bool((term >= 0).all())
    torch.testing.assert_close(soft_kl(s + 5.0, t - 3.0, 2.0), term)


def test_kd_high_temperature_limit_is_logit_matching():
    # Hinton et al. §2.1: for T large against the logits and zero-mean logits, T² KL -> Σ_j (s_j - t_j)² / (2C)
    s, t, y = _batch(c=6, scale=1.0)
    s, t = s - s.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    got = la.functional.kd(s, t, y, alpha=1.0, temperature=1e3, reduction="none")
    torch.testing.assert_close(got, (s - t).square().mean(1) / 2, rtol=2e-3, atol=0)


def test_kd_soft_target_gradient_is_scaled_by_t_not_t_squared():
    # ∂(T² KL)/∂s = T (softmax(s/T) - softmax(t/T)): the T² factor leaves a T (the paper's 1/T² compensation)
    s, t, y = _batch()
    s.requires_grad_(True)
    T = 3.0
    la.functional.kd(s, t, y, alpha=1.0, temperature=T, reduction="sum").backward()
    torch.testing.assert_close(s.grad, T * (torch.softmax(s.detach() / T, 1) - torch.softmax(t / T, 1)))


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dkd_parts_match_the_paper_and_decompose_kd(temperature):
    s, t, y = _batch(c=6)
    tckd, nckd = decoupled_kl(s, t, y, temperature)
    ref_t, ref_n = _reference_dkd_terms(s, t, y, temperature)
    torch.testing.assert_close(tckd, ref_t, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(nckd, ref_n, rtol=1e-10, atol=1e-12)
    # Zhao et al. eq. (4): KD = TCKD + (1 - p^T_t) NCKD
    p_ty = torch.softmax(t / temperature, 1).gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(soft_kl(s, t, temperature), tckd + (1 - p_ty) * nckd, rtol=1e-10, atol=1e-12)


def test_dkd_is_ce_plus_weighted_parts_and_warmup_ramps():
    s, t, y = _batch(c=6)
    a, b, T, c = 0.7, 3.0, 2.0, 0.5
    tckd, nckd = _reference_dkd_terms(s, t, y, T)
    kd_part = T**2 * (a * tckd + b * nckd)
    ce = F.cross_entropy(s, y, reduction="none")
    kw = {"alpha": a, "beta": b, "temperature": T, "ce_weight": c, "reduction": "none"}
    torch.testing.assert_close(la.functional.dkd(s, t, y, **kw), c * ce + kd_part, rtol=1e-10, atol=1e-12)
    # mdistiller's warm-up: min(epoch / warmup, 1) on the distillation term only
    torch.testing.assert_close(la.functional.dkd(s, t, y, epoch=5, warmup=20, **kw), c * ce + 0.25 * kd_part)
    torch.testing.assert_close(la.functional.dkd(s, t, y, epoch=0, **kw), c * ce)
    torch.testing.assert_close(la.functional.dkd(s, t, y, epoch=50, **kw), c * ce + kd_part)
    crit = la.create("dkd", **kw)
    torch.testing.assert_close(crit(s, t, y, epoch=10), la.functional.dkd(s, t, y, epoch=10, **kw))


def test_dkd_with_two_classes_has_no_non_target_part_and_equal_models_give_ce():
    s, t, y = _batch(c=2)
    _, nckd = decoupled_kl(s, t, y, 4.0)
    assert torch.equal(nckd, torch.zeros_like(nckd))
    s, _, y = _batch(c=5)
    torch.testing.assert_close(la.functional.dkd(s, s.clone(), y), F.cross_entropy(s, y))


def test_a_class_the_teacher_masks_drops_out_and_stays_finite():
    s, t, y = _batch(c=5)
    t[:, 4] = float("-inf")
    y = y.clamp_max(3)
    s.requires_grad_(True)
    for fn in (la.functional.kd, la.functional.dkd):
        out = fn(s, t, y)
        (g,) = torch.autograd.grad(out, s)
        assert math.isfinite(out.item()) and bool(torch.isfinite(g).all())
    # the masked column adds nothing to the KL: the sum over the 4 other columns
    log_q = torch.log_softmax(s.detach() / 2.0, 1)[:, :4]
    p = torch.softmax(t[:, :4] / 2.0, 1)
    torch.testing.assert_close(soft_kl(s.detach(), t, 2.0), (p * (p.log() - log_q)).sum(1))


@pytest.mark.parametrize("fn", [la.functional.kd, la.functional.dkd])
def test_gradcheck_student_and_teacher(fn):
    s, t, y = _batch(n=4, c=4)
    gradcheck_loss(fn, s, t, y, temperature=2.0)


def test_bad_input_names_the_argument():
    s, t, y = _batch()
    with pytest.raises(ValueError, match="teacher_logits"):
        la.functional.kd(s, t[:, :3], y)
    with pytest.raises(TypeError, match="student_logits"):
        la.functional.kd(s.long(), t, y)
    with pytest.raises(TypeError, match="target"):
        la.functional.kd(s, t, y.double())
    with pytest.raises(ValueError, match="target"):
        la.functional.kd(s, t, y + 10)
    with pytest.raises(ValueError, match="temperature"):
        la.functional.kd(s, t, y, temperature=0.0)
    with pytest.raises(ValueError, match="alpha"):
        la.create("kd", alpha=1.5)
    with pytest.raises(ValueError, match="beta"):
        la.functional.dkd(s, t, y, beta=-1.0)
    with pytest.raises(ValueError, match="epoch"):
        la.functional.dkd(s, t, y, epoch=-1)
    with pytest.raises(ValueError, match="2 classes"):
        la.functional.dkd(s[:, :1], t[:, :1], torch.zeros(7, dtype=torch.long))
    bad = t.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="teacher_logits"):
        la.functional.dkd(s, bad, y)


# --- dual-head KD (Yang et al. 2024) ----------------------------------------------------------------

def _official_binary_kl_norm(a, t, temperature, eps=1e-8):
    # penghui-yang/DHKD distiller_zoo/BinaryKLNorm.py written out: KLDivLoss(log d, ½) + KLDivLoss(log(1 - d), ½)
    # elementwise, d = clamp(σ((a - t)/T)), summed over classes and divided by N, times T²
    d = torch.sigmoid((a - t) / temperature).clamp(eps, 1 - eps)
    half = torch.full_like(d, 0.5)
    kl = half * (half.log() - d.log()) + half * (half.log() - (1 - d).log())
    return temperature**2 * kl.sum() / a.shape[0]


@pytest.mark.parametrize(("temperature", "alpha", "ce_weight"), [(2.0, 1.0, 1.0), (4.0, 0.1, 0.5), (0.7, 2.5, 0.0)])
def test_dual_head_kd_is_official_ce_on_head_0_plus_binary_kl_norm_on_head_1(temperature, alpha, ce_weight):
    s, t, y = _batch(n=6, c=5)
    a = torch.randn(6, 5, generator=G, dtype=torch.float64) * 3
    got = la.functional.dual_head_kd(s, t, y, aux_logits=a, temperature=temperature, alpha=alpha, ce_weight=ce_weight)
    want = ce_weight * F.cross_entropy(s, y) + alpha * _official_binary_kl_norm(a, t, temperature)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # without aux_logits both terms are on the one head (the paper's single-head combination)
    single = la.functional.dual_head_kd(s, t, y, temperature=temperature, alpha=alpha, ce_weight=ce_weight)
    torch.testing.assert_close(single, ce_weight * F.cross_entropy(s, y) + alpha * _official_binary_kl_norm(s, t, temperature))


def test_binary_kl_norm_is_t2_log_cosh_and_its_limits():
    d = torch.tensor([[-30.0, -2.0, -1e-3, 0.0, 0.5, 7.0, 40.0]], dtype=torch.float64)
    zero = torch.zeros_like(d)
    for temperature in (0.5, 2.0, 5.0):
        got = la.functional.distillation.binary_kl_norm(d, zero, temperature)
        torch.testing.assert_close(got, torch.log(torch.cosh(d / (2 * temperature))).sum(1), rtol=1e-12, atol=1e-15)
    # small differences: Δ²/(8T²) per class, so T² times it tends to Δ²/8 as T grows (logit matching)
    small = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64)
    t_big = 1e3
    got = t_big**2 * la.functional.distillation.binary_kl_norm(small, torch.zeros_like(small), t_big)
    torch.testing.assert_close(got, (small**2 / 8).sum(1), rtol=1e-6, atol=0.0)
    # large differences: |Δ|/(2T) - log 2 per class (linear, where the official clamp caps it)
    big = torch.tensor([[60.0]], dtype=torch.float64)
    torch.testing.assert_close(la.functional.distillation.binary_kl_norm(big, torch.zeros_like(big), 2.0),
                               torch.tensor([15.0 - math.log(2.0)], dtype=torch.float64))


def test_dual_head_kd_is_not_shift_invariant_and_vanishes_at_the_teacher():
    s, t, y = _batch(n=5, c=4)
    at_teacher = la.functional.dual_head_kd(s, t, y, aux_logits=t.clone(), alpha=3.0)
    torch.testing.assert_close(at_teacher, F.cross_entropy(s, y))
    # softmax KD cannot tell a shifted teacher apart; the logit-level term can
    shifted = t + 2.0
    assert torch.allclose(la.functional.kd(s, t, y), la.functional.kd(s, shifted, y))
    assert la.functional.dual_head_kd(s, shifted, y, aux_logits=t) > at_teacher + 0.1


def test_dual_head_kd_gradients_split_between_the_heads():
    s, t, y = _batch(n=5, c=4)
    s.requires_grad_(True)
    a = torch.randn(5, 4, generator=G, dtype=torch.float64, requires_grad=True)
    temperature, alpha, gamma = 3.0, 0.7, 1.3
    loss = la.functional.dual_head_kd(s, t, y, aux_logits=a, temperature=temperature, alpha=alpha, ce_weight=gamma)
    gs, ga = torch.autograd.grad(loss, [s, a])
    # the original head sees the cross-entropy only, the auxiliary head the logit-level term only
    torch.testing.assert_close(gs, gamma * (torch.softmax(s, 1) - F.one_hot(y, 4)) / 5)
    torch.testing.assert_close(ga, alpha * temperature / 2 * torch.tanh((a - t) / (2 * temperature)) / 5)


def test_dual_head_kd_module_gradcheck_and_bad_input():
    s, t, y = _batch(n=4, c=3)
    a = torch.randn(4, 3, generator=G, dtype=torch.float64)
    crit = la.create("dhkd", temperature=1.5, alpha=0.4)
    assert torch.autograd.gradcheck(lambda s_, t_, a_: crit(s_, t_, y, aux_logits=a_),
                                    [x.clone().requires_grad_() for x in (s, t, a)])
    torch.testing.assert_close(crit(s, t, y, aux_logits=a), la.functional.dual_head_kd(s, t, y, aux_logits=a,
                                                                                        temperature=1.5, alpha=0.4))
    with pytest.raises(ValueError, match="aux_logits"):
        crit(s, t, y, aux_logits=a[:, :2])
    with pytest.raises(TypeError, match="aux_logits"):
        crit(s, t, y, aux_logits=a.tolist())
    bad = a.clone()
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="aux_logits"):
        crit(s, t, y, aux_logits=bad)
    masked = t.clone()
    masked[0, 2] = float("-inf")
    with pytest.raises(ValueError, match="teacher_logits"):
        crit(s, masked, y, aux_logits=a)
    with pytest.raises(ValueError, match="temperature"):
        la.create("dual_head_kd", temperature=0.0)
    with pytest.raises(ValueError, match="alpha"):
        la.functional.dual_head_kd(s, t, y, alpha=-1.0)
    with pytest.raises(ValueError, match="ce_weight"):
        la.functional.dual_head_kd(s, t, y, ce_weight=-0.5)
