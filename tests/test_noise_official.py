"""ALDR and NCE+MAE against their official code's definitions (float64 references written here).

ALDR: Optimization-AI/ICML2023_LDR, loss.py::ALDRLoss_V1 as experiment.py builds it
(threshold=margin=0.1, Lambda=temperature=10, alpha=2, N=num_samples, softplus not passed,
so the class default False runs). NCE+MAE: HanxunH/Active-Passive-Losses, loss.py::NCEandMAE
= NormalizedCrossEntropy(scale=alpha) + MeanAbsoluteError(scale=beta), MAE = 1 - p_y.
"""

from __future__ import annotations

import math

import pytest
import torch

import lossatlas as la
import lossatlas.functional as LF


def _batch(n: int, c: int, seed: int, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(n, c, generator=g, dtype=torch.float64)
    z[0, 0] = -4.0 * scale  # negative logits: where softplus and |z| normalisation differ most
    return z, torch.randint(0, c, (n,), generator=g)


# ----------------------------------------------------------------------------- ALDR
class _ALDRReference:
    """ALDRLoss_V1's forward, from its definition, in float64 (no lossatlas code).

    z' = f(z) / (||f(z)||_1 / C), f = softplus or identity; q = l1-normalise(softmax(z'/λ_old) + 1e-5);
    λ = Λ - Λ·Σ_j q_j log(C q_j) / (α log C), stored at ids *before* use (detached);
    l_i = λ_i log mean_j exp((m·1[j≠y] + z'_j - z'_y)/λ_i) - α log C/(2Λ)·(λ_i - Λ)²; mean over i.
    """

    def __init__(self, n: int, margin: float = 0.1, lam: float = 10.0, alpha: float = 2.0, softplus: bool = False):
        self.state = torch.full((n,), lam, dtype=torch.float64)
        self.margin, self.lam_ref, self.alpha, self.softplus = margin, lam, alpha, softplus

    def __call__(self, z: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        c = z.shape[1]
        f = torch.log1p(torch.exp(z)) if self.softplus else z
        zn = f / (f.abs().sum(1, keepdim=True) / c)
        lam_old = self.state[ids].unsqueeze(1)
        e = torch.exp(zn.detach() / lam_old - (zn.detach() / lam_old).max(1, keepdim=True).values)
        q = e / e.sum(1, keepdim=True) + 1e-5
        q = q / q.sum(1, keepdim=True)
        kl = (q * torch.log(c * q)).sum(1)
        lam = self.lam_ref - self.lam_ref * kl / (self.alpha * math.log(c))
        self.state[ids] = lam  # updated before it is used
        lam = self.state[ids]
        onehot = torch.nn.functional.one_hot(y, c).double()
        d = self.margin * (1 - onehot) + zn - (zn * onehot).sum(1, keepdim=True)
        per = lam * torch.log(torch.exp(d / lam.unsqueeze(1)).mean(1))
        per = per - self.alpha * math.log(c) / (2 * self.lam_ref) * (lam - self.lam_ref) ** 2
        return per.mean()


def _aldr_steps():
    # three batches; indices overlap across steps so the stored λ is read back
    return [(*_batch(9, 6, seed=s), torch.tensor(ix)) for s, ix in
            enumerate([[0, 1, 2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10, 11, 12], [12, 0, 4, 8, 13, 14, 15, 16, 17]])]


def test_aldr_default_is_official_no_softplus():
    """The default (softplus not passed) equals ALDRLoss_V1 as experiment.py runs it: no softplus."""
    crit = la.create("aldr", num_samples=20).double()  # margin 0.1, Λ 10, α 2 are the defaults too
    assert crit.softplus is False
    ref = _ALDRReference(20, margin=0.1, lam=10.0, alpha=2.0, softplus=False)
    for z, y, ids in _aldr_steps():
        a = z.clone().requires_grad_()
        b = z.clone().requires_grad_()
        got, want = crit(a, y, index=ids), ref(b, y, ids)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(torch.autograd.grad(got, a)[0], torch.autograd.grad(want, b)[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(crit.sample_temperature, ref.state, rtol=1e-12, atol=1e-12)


def test_aldr_default_differs_from_softplus_variant():
    """On these logits the softplus form gives another value: the default is not it."""
    z, y, ids = _aldr_steps()[0]
    ours = la.create("aldr", num_samples=20).double()(z, y, index=ids)
    softplus_ref = _ALDRReference(20, softplus=True)(z, y, ids)
    assert not torch.allclose(ours, softplus_ref, rtol=1e-3)
    torch.testing.assert_close(la.create("aldr", num_samples=20, softplus=True).double()(z, y, index=ids), softplus_ref,
                               rtol=1e-10, atol=1e-12)


def test_aldr_functional_default_is_no_softplus():
    z, y, ids = _aldr_steps()[0]
    prev = torch.full((z.shape[0],), 10.0, dtype=torch.float64)
    torch.testing.assert_close(LF.aldr(z, y, prev), _ALDRReference(20)(z, y, ids), rtol=1e-10, atol=1e-12)


def test_aldr_registry_records_the_official_default():
    e = la.info("aldr")
    assert e.defaults["softplus"] is False
    assert "experiment.py" in e.defaults_source["softplus"]


# ----------------------------------------------------------------------------- NCE+MAE
def _nce_mae_closed_form(z: torch.Tensor, y: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """α·log p_y / Σ_j log p_j + β·(1 − p_y), per sample, float64."""
    logp = z - torch.logsumexp(z, 1, keepdim=True)
    logp_y = logp[torch.arange(len(y)), y]
    return alpha * logp_y / logp.sum(1) + beta * (1.0 - torch.exp(logp_y))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nce_mae_module_is_alpha_nce_plus_beta_mae(reduction):
    z, y = _batch(11, 7, seed=3)
    per = _nce_mae_closed_form(z, y, alpha=10.0, beta=0.5)
    want = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    torch.testing.assert_close(la.create("nce_mae", alpha=10.0, beta=0.5, reduction=reduction)(z, y), want,
                               rtol=1e-12, atol=1e-12)


def test_nce_mae_registered_function_is_nce_plus_mae_not_rce():
    """The registry's functional twin of nce_mae computes NCE + MAE (it used to be
    active_passive, whose default passive loss is RCE)."""
    z, y = _batch(11, 7, seed=4)
    want = _nce_mae_closed_form(z, y, alpha=2.0, beta=0.25).mean()
    fn = la.info("nce_mae").function
    torch.testing.assert_close(fn(z, y, alpha=2.0, beta=0.25), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(LF.nce_mae(z, y, alpha=2.0, beta=0.25, reduction="none"),
                               _nce_mae_closed_form(z, y, alpha=2.0, beta=0.25), rtol=1e-12, atol=1e-12)
    nce_rce = LF.active_passive(z, y, active="nce", passive="rce", alpha=2.0, beta=0.25)
    assert not torch.allclose(fn(z, y, alpha=2.0, beta=0.25), nce_rce)


def test_nce_rce_registered_function_matches_module():
    z, y = _batch(11, 7, seed=5)
    fn = la.info("nce_rce").function
    torch.testing.assert_close(fn(z, y, alpha=10.0, beta=0.1), la.create("nce_rce", alpha=10.0, beta=0.1)(z, y))
