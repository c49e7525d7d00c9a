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
