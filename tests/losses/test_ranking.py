"""H3 / D5 stateful X-risk losses: SOAP, SOPA, SOPA-s, SOTA-s, multi-label AP / pAUC, SONG /
K-SONG, listwise CE.

* float64 references written here from LibAUC 2.0.1's code (libauc/losses/auc.py,
  ranking.py): naive, per-call, with LibAUC's plain ``u`` tables (no log space), run over
  several calls that revisit samples, at non-default hyper-parameters; module, function and
  state compared with them;
* identities: with γ = 1 the estimators are the exact gradients of the batch objectives the
  papers write (AP surrogate, KL-DRO, nested KL-DRO, SONG's NDCG surrogate, listwise CE),
  checked against those objectives written here; large temperatures give the plain pairwise
  mean; β = 1 CVaR is the plain mean;
* gradients at fixed state against float64 finite differences, and ``gradcheck`` where the
  weights are piecewise constant (SOPA);
* bad input: each error names the argument.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

import lossatlas as la
import lossatlas.functional as LF

DT = torch.float64


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------
def _binary_steps(data_len: int = 30, steps: int = 4, batch: int = 12, seed: int = 0, frac: float = 0.35,
                  ) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Batches (scores in (0, 1), target, index) of a fixed dataset: distinct indices per batch,
    revisited across batches, a positive and a negative in each."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(data_len, generator=g) < frac).long()
    labels[0], labels[1] = 1, 0
    out = []
    for _ in range(steps):
        while True:
            idx = torch.randperm(data_len, generator=g)[:batch]
            y = labels[idx]
            if 0 < int(y.sum()) < batch:
                break
        z = torch.randn(batch, generator=g, dtype=DT) * 1.5 + y
        out.append((torch.sigmoid(z), y, idx))
    return out


def _multilabel_steps(data_len: int = 30, labels: int = 3, steps: int = 4, batch: int = 12, seed: int = 1,
                      ) -> list[tuple[Tensor, Tensor, Tensor]]:
    g = torch.Generator().manual_seed(seed)
    table = (torch.rand(data_len, labels, generator=g) < 0.4).long()
    out = []
    for _ in range(steps):
        while True:
            idx = torch.randperm(data_len, generator=g)[:batch]
            y = table[idx]
            if bool(((y.sum(0) > 0) & (y.sum(0) < batch)).all()):
                break
        z = torch.randn(batch, labels, generator=g, dtype=DT) + y
        out.append((torch.sigmoid(z), y, idx))
    return out


def _ranking_steps(num_queries: int = 6, pairs_per_query: int = 4, num_pos: int = 2, num_neg: int = 5, batch: int = 4,
                   steps: int = 4, seed: int = 2) -> tuple[int, list[dict[str, Tensor]]]:
    """Ranking batches: ``batch`` distinct queries, ``num_pos`` of each query's relevant pairs
    (pair p belongs to query p % num_queries), ``num_neg`` negatives; pair ids revisited."""
    g = torch.Generator().manual_seed(seed)
    data_len = num_queries * pairs_per_query
    rating_of = torch.randint(1, 5, (data_len,), generator=g)
    npi = torch.full((num_queries,), pairs_per_query)
    out = []
    for _ in range(steps):
        queries = torch.randperm(num_queries, generator=g)[:batch]
        index = torch.stack([q + num_queries * torch.randperm(pairs_per_query, generator=g)[:num_pos] for q in queries])
        rating = rating_of[index]
        ideal = torch.stack([((2.0 ** rating_of[q::num_queries].double().sort(descending=True).values - 1)
                              / torch.log2(torch.arange(2, pairs_per_query + 2, dtype=DT))).sum() for q in queries])
        out.append({"scores": torch.randn(batch, num_pos + num_neg, generator=g, dtype=DT), "rating": rating,
                    "index": index, "query_index": queries, "num_pos_items": npi[queries], "ideal_dcg": ideal})
    return data_len, out


# --------------------------------------------------------------------------------------
# float64 references from LibAUC 2.0.1's code (plain u tables, boolean indexing, loops)
# --------------------------------------------------------------------------------------
def _sur(name: str, m: float, t: Tensor) -> Tensor:
    if name == "squared_hinge":
        return torch.relu(m - t) ** 2
    if name == "squared":
        return (m - t) ** 2
    if name == "hinge":
        return torch.relu(m - t)
    assert name == "logistic"
    return torch.log(1 + torch.exp(-m * t))


class RefSOAP:
    """libauc AveragePrecisionLoss.forward (and one label of meanAveragePrecisionLoss)."""

    def __init__(self, data_len: int, gamma: float = 0.9, margin: float = 1.0, surrogate: str = "squared_hinge",
                 top_k: int = -1) -> None:
        self.u_all = torch.zeros(data_len, dtype=DT)
        self.u_pos = torch.zeros(data_len, dtype=DT)
        self.g, self.m, self.sur, self.top_k = gamma, margin, surrogate, top_k

    def __call__(self, s: Tensor, y: Tensor, index: Tensor) -> Tensor:
        p = y == 1
        ip = index[p]
        L = _sur(self.sur, self.m, s[p][:, None] - s[None, :])
        self.u_all[ip] = (1 - self.g) * self.u_all[ip] + self.g * L.detach().mean(1)
        self.u_pos[ip] = (1 - self.g) * self.u_pos[ip] + self.g * (L.detach() * p).mean(1)
        w = (self.u_pos[ip][:, None] - self.u_all[ip][:, None] * p) / self.u_all[ip][:, None] ** 2
        if self.top_k > -1:
            w = w * torch.sigmoid(self.top_k - L.detach().sum(0, keepdim=True))
        return (w.detach() * L).mean()


class RefCVaR:
    """libauc pAUC_CVaR_Loss.forward (auto=True)."""

    def __init__(self, data_len: int, margin: float = 1.0, beta: float = 0.2, eta: float = 0.1,
                 surrogate: str = "squared_hinge") -> None:
        self.u = torch.zeros(data_len, dtype=DT)
        self.m, self.beta, self.eta, self.sur = margin, beta, eta, surrogate

    def __call__(self, s: Tensor, y: Tensor, index: Tensor) -> Tensor:
        p, n = y == 1, y == 0
        ip = index[p]
        L = _sur(self.sur, self.m, s[p][:, None] - s[n][None, :])
        w = (L.detach() > self.u[ip][:, None]).to(DT)
        self.u[ip] = self.u[ip] - self.eta * (1 - w.sum(1) / (self.beta * n.sum().double()))
        return (w * L).mean() / self.beta


class RefDRO:
    """libauc pAUC_DRO_Loss.forward."""

    def __init__(self, data_len: int, gamma: float = 0.9, margin: float = 1.0, temperature: float = 1.0,
                 surrogate: str = "squared_hinge") -> None:
        self.u = torch.zeros(data_len, dtype=DT)
        self.g, self.m, self.lam, self.sur = gamma, margin, temperature, surrogate

    def __call__(self, s: Tensor, y: Tensor, index: Tensor) -> Tensor:
        p, n = y == 1, y == 0
        ip = index[p]
        L = _sur(self.sur, self.m, s[p][:, None] - s[n][None, :])
        e = torch.exp(L.detach() / self.lam)
        self.u[ip] = (1 - self.g) * self.u[ip] + self.g * e.mean(1)
        return (e / self.u[ip][:, None] * L).mean()


class RefTPAUC:
    """libauc tpAUC_KL_Loss.forward; ``u`` may be swapped per label (MultiLabelpAUCLoss), ``w`` is the object's."""

    def __init__(self, data_len: int, gamma: float = 0.9, gamma_outer: float = 0.9, margin: float = 1.0,
                 temperature: float = 1.0, temperature_pos: float = 1.0, surrogate: str = "squared_hinge") -> None:
        self.u = torch.zeros(data_len, dtype=DT)
        self.w = torch.zeros((), dtype=DT)
        self.g0, self.g1, self.m, self.lam, self.tau, self.sur = gamma, gamma_outer, margin, temperature, temperature_pos, surrogate

    def __call__(self, s: Tensor, y: Tensor, index: Tensor) -> Tensor:
        p, n = y == 1, y == 0
        ip = index[p]
        L = _sur(self.sur, self.m, s[p][:, None] - s[n][None, :])
        e = torch.exp(L.detach() / self.lam)
        self.u[ip] = (1 - self.g0) * self.u[ip] + self.g0 * e.mean(1)
        self.w = (1 - self.g1) * self.w + self.g1 * (self.u[ip] ** (self.lam / self.tau)).mean()
        v = self.u[ip][:, None] ** (self.lam / self.tau - 1) * e / self.w
        return (v * L).mean()


class RefMultiLabel:
    """libauc meanAveragePrecisionLoss / MultiLabelpAUCLoss: one binary reference per label
    (own u), MultiLabelpAUCLoss('2w') sharing one tpAUC object's w across labels."""

    def __init__(self, make: Callable[[], Any], labels: int, shared: bool = False) -> None:
        self.shared = make() if shared else None
        self.per = [make() for _ in range(labels)]

    def __call__(self, s: Tensor, y: Tensor, index: Tensor) -> Tensor:
        total = torch.zeros((), dtype=DT)
        for k, ref in enumerate(self.per):
            if self.shared is not None:  # LibAUC swaps u in and out of one loss object
                self.shared.u = ref.u
                total = total + self.shared(s[:, k], y[:, k], index)
                ref.u = self.shared.u
            else:
                total = total + ref(s[:, k], y[:, k], index)
        return total / len(self.per)


class RefNDCG:
    """libauc NDCGLoss.forward (float64)."""

    def __init__(self, data_len: int, num_queries: int, num_items: int, num_pos: int, gamma: float = 0.9,
                 gamma_lambda: float = 0.9, eta: float = 0.01, margin: float = 1.0, top_k: int = -1,
                 top_k_version: str = "theo", tau_1: float = 0.01, tau_2: float = 1e-4, sigmoid_alpha: float = 2.0,
                 surrogate: str = "squared_hinge") -> None:
        self.u = torch.zeros(data_len, dtype=DT)
        self.lam = torch.zeros(num_queries, dtype=DT)
        self.sq = torch.zeros(num_queries, dtype=DT)
        self.__dict__.update(n=num_items, P=num_pos, g0=gamma, g1=gamma_lambda, eta=eta, m=margin, k=top_k,
                             ver=top_k_version, t1=tau_1, t2=tau_2, a=sigmoid_alpha, sur=surrogate)

    def __call__(self, scores: Tensor, rating: Tensor, index: Tensor, query_index: Tensor, num_pos_items: Tensor,
                 ideal_dcg: Tensor) -> Tensor:
        B, P, n = scores.shape[0], self.P, self.n
        pos = scores[:, :P]
        g = torch.stack([torch.stack([_sur(self.sur, self.m, pos[b, i] - scores[b]).mean() for i in range(P)])
                         for b in range(B)])
        G = 2.0 ** rating.double() - 1
        ids = index.reshape(-1)
        u = (1 - self.g0) * self.u[ids] + self.g0 * g.detach().reshape(-1)
        self.u[ids] = u
        gu = u.reshape(B, P)
        nab = G * n / (torch.log2(1 + n * gu) ** 2 * (1 + n * gu) * math.log(2))
        npi, idcg = num_pos_items.double(), ideal_dcg.double()
        if self.k <= 0:
            return (npi * (nab * g).mean(1) / idcg).mean()
        lam = self.lam[query_index].clone()
        diffs = scores.detach() - lam[:, None]
        grad_lam = self.k / n + self.t2 * lam - torch.sigmoid(diffs / self.t1).mean(1)
        self.lam[query_index] = lam - self.eta * grad_lam
        psi = torch.sigmoid(diffs[:, :P] * self.a)
        nab = nab * psi
        if self.ver == "prac":
            return (npi * (nab * g).mean(1) / idcg).mean()
        d_psi = psi * (1 - psi)
        f = -G / torch.log2(1 + n * gu)
        temp = torch.sigmoid(diffs / self.t1) * (1 - torch.sigmoid(diffs / self.t1)) / self.t1
        self.sq[query_index] = self.g1 * (self.t2 + temp.mean(1)) + (1 - self.g1) * self.sq[query_index]
        h = (temp * scores).mean(1) / self.sq[query_index]
        return (npi * (nab * g + d_psi * f * (pos - h[:, None])).mean(1) / idcg).mean()


class RefListwise:
    """libauc ListwiseCELoss.forward."""

    def __init__(self, data_len: int, num_pos: int, gamma: float = 0.9, eps: float = 1e-10) -> None:
        self.u = torch.zeros(data_len, dtype=DT)
        self.P, self.g, self.eps = num_pos, gamma, eps

    def __call__(self, scores: Tensor, index: Tensor) -> Tensor:
        B, P = scores.shape[0], self.P
        total = torch.zeros((), dtype=DT)
        c = max(float((scores[b, P:] - scores[b, i]).detach().max()) for b in range(B) for i in range(P))
        for b in range(B):
            for i in range(P):
                d = scores[b, P:] - scores[b, i]
                e = torch.exp(d.detach() - c)
                pid = int(index[b, i])
                self.u[pid] = (1 - self.g) * self.u[pid] + self.g * e.mean()
                total = total + (d * e / (self.u[pid] + self.eps)).sum()
        return total / B


# --------------------------------------------------------------------------------------
# module and function against the references over several calls
# --------------------------------------------------------------------------------------
BINARY_CASES: list[tuple[str, dict[str, Any], Callable[..., Any]]] = [
    ("ap_soap", {}, RefSOAP),
    ("ap_soap", {"gamma": 0.3, "margin": 0.6, "surrogate": "hinge"}, RefSOAP),
    ("ap_soap", {"gamma": 1.0, "margin": 2.0, "surrogate": "logistic"}, RefSOAP),
    ("ap_soap", {"gamma": 0.5, "margin": 0.8, "surrogate": "squared"}, RefSOAP),
    ("pauc_cvar", {}, RefCVaR),
    ("pauc_cvar", {"beta": 0.5, "eta": 1.0, "margin": 0.7, "surrogate": "logistic"}, RefCVaR),
    ("pauc_cvar", {"beta": 0.1, "eta": 0.01, "surrogate": "hinge"}, RefCVaR),
    ("pauc_dro", {}, RefDRO),
    ("pauc_dro", {"gamma": 0.5, "temperature": 0.3, "margin": 0.5, "surrogate": "logistic"}, RefDRO),
    ("pauc_dro", {"gamma": 1.0, "temperature": 5.0, "surrogate": "squared"}, RefDRO),
    ("tpauc_kl", {}, RefTPAUC),
    ("tpauc_kl", {"gamma": 0.5, "gamma_outer": 0.7, "temperature": 2.0, "temperature_pos": 0.5, "margin": 0.8}, RefTPAUC),
    ("tpauc_kl", {"temperature": 0.5, "temperature_pos": 3.0, "surrogate": "hinge"}, RefTPAUC),
]


def _state_of(crit: Any) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in crit.state_tensors().items()}


@pytest.mark.parametrize(("loss_id", "kw", "ref_cls"), BINARY_CASES,
                         ids=[f"{i}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for i, kw, _ in BINARY_CASES])
def test_binary_losses_follow_libauc_over_calls(loss_id: str, kw: dict[str, Any], ref_cls: Callable[..., Any]) -> None:
    data_len = 30
    crit = la.create(loss_id, data_len=data_len, **kw).double()
    fn_state = {k: v.clone() for k, v in crit.functional_kwargs().items() if isinstance(v, Tensor)}
    hparams = {k: v for k, v in crit.functional_kwargs().items() if not isinstance(v, Tensor)}
    ref = ref_cls(data_len, **kw)
    for s, y, idx in _binary_steps(data_len):
        s1, s2, s3 = (s.clone().requires_grad_() for _ in range(3))
        out, want = crit(s1, y, index=idx), ref(s2, y, idx)
        out_fn = getattr(LF, loss_id)(s3, y, index=idx, **fn_state, **hparams)
        torch.testing.assert_close(out, want, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(out_fn, out, rtol=0, atol=0)
        g1, g2, g3 = (torch.autograd.grad(o, x)[0] for o, x in ((out, s1), (want, s2), (out_fn, s3)))
        torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(g3, g1, rtol=0, atol=0)
        state = _state_of(crit)
        if loss_id == "ap_soap":
            torch.testing.assert_close(state["u_all"], ref.u_all, rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(state["u_pos"], ref.u_pos, rtol=1e-12, atol=1e-14)
        elif loss_id == "pauc_cvar":
            torch.testing.assert_close(state["threshold"], ref.u, rtol=1e-12, atol=1e-14)
        else:  # log u, -inf where LibAUC's u is still 0
            torch.testing.assert_close(state["log_u"].exp(), ref.u, rtol=1e-12, atol=0)
            if loss_id == "tpauc_kl":
                torch.testing.assert_close(state["log_w"].exp(), ref.w, rtol=1e-12, atol=0)
        for k, v in fn_state.items():
            torch.testing.assert_close(v, state[k], rtol=0, atol=0)


ML_CASES: list[tuple[str, dict[str, Any]]] = [
    ("multilabel_ap", {}),
    ("multilabel_ap", {"top_k": 3, "gamma": 0.4, "margin": 0.7}),
    ("multilabel_ap", {"top_k": 0, "surrogate": "logistic"}),
    ("multilabel_pauc", {}),
    ("multilabel_pauc", {"mode": "1w", "temperature": 0.4, "gamma": 0.6, "surrogate": "hinge"}),
    ("multilabel_pauc", {"mode": "2w"}),
    ("multilabel_pauc", {"mode": "2w", "gamma": 0.5, "gamma_outer": 0.3, "temperature": 2.0, "temperature_pos": 0.7}),
]


def _ml_ref(loss_id: str, kw: dict[str, Any], data_len: int, labels: int) -> RefMultiLabel:
    kw = dict(kw)
    if loss_id == "multilabel_ap":
        return RefMultiLabel(lambda: RefSOAP(data_len, **kw), labels)
    if kw.pop("mode", "1w") == "1w":
        kw.pop("gamma_outer", None)
        kw.pop("temperature_pos", None)
        return RefMultiLabel(lambda: RefDRO(data_len, **kw), labels)
    return RefMultiLabel(lambda: RefTPAUC(data_len, **kw), labels, shared=True)


@pytest.mark.parametrize(("loss_id", "kw"), ML_CASES, ids=[f"{i}-{kw}" for i, kw in ML_CASES])
def test_multilabel_losses_follow_libauc_over_calls(loss_id: str, kw: dict[str, Any]) -> None:
    data_len, labels = 30, 3
    crit = la.create(loss_id, data_len=data_len, num_labels=labels, **kw).double()
    ref = _ml_ref(loss_id, kw, data_len, labels)
    for s, y, idx in _multilabel_steps(data_len, labels):
        s1, s2 = s.clone().requires_grad_(), s.clone().requires_grad_()
        out, want = crit(s1, y, index=idx), ref(s2, y, idx)
        torch.testing.assert_close(out, want, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(torch.autograd.grad(out, s1)[0], torch.autograd.grad(want, s2)[0], rtol=1e-9, atol=1e-12)
        for k, r in enumerate(ref.per):
            if loss_id == "multilabel_ap":
                torch.testing.assert_close(crit.u_all.value[:, k], r.u_all, rtol=1e-12, atol=1e-14)
                torch.testing.assert_close(crit.u_pos.value[:, k], r.u_pos, rtol=1e-12, atol=1e-14)
            else:
                torch.testing.assert_close(crit.log_u.value[:, k].exp(), r.u, rtol=1e-12, atol=0)
        if ref.shared is not None:
            torch.testing.assert_close(crit.log_w.exp(), ref.shared.w, rtol=1e-12, atol=0)


def test_multilabel_ap_is_the_mean_of_per_label_ap_soap() -> None:
    data_len, labels = 30, 3
    crit = la.create("multilabel_ap", data_len=data_len, num_labels=labels, gamma=0.6).double()
    singles = [la.create("ap_soap", data_len=data_len, gamma=0.6).double() for _ in range(labels)]
    for s, y, idx in _multilabel_steps(data_len, labels):
        want = sum(singles[k](s[:, k], y[:, k], index=idx) for k in range(labels)) / labels
        torch.testing.assert_close(crit(s, y, index=idx), want, rtol=1e-12, atol=1e-15)


NDCG_CASES: list[dict[str, Any]] = [
    {},
    {"gamma": 0.5, "margin": 0.5, "surrogate": "logistic"},
    {"top_k": 3},
    {"top_k": 2, "top_k_version": "prac", "sigmoid_alpha": 1.0},
    {"top_k": 4, "gamma_lambda": 0.3, "eta": 0.5, "tau_1": 0.1, "tau_2": 0.01},
]


@pytest.mark.parametrize("kw", NDCG_CASES, ids=[str(k) for k in NDCG_CASES])
def test_ndcg_follows_libauc_over_calls(kw: dict[str, Any]) -> None:
    num_queries, num_items, num_pos = 6, 40, 2
    data_len, steps = _ranking_steps(num_queries, num_pos=num_pos)
    crit = la.create("ndcg", data_len=data_len, num_queries=num_queries, num_items=num_items, num_pos=num_pos, **kw).double()
    ref = RefNDCG(data_len, num_queries, num_items, num_pos, **kw)
    for b in steps:
        s1, s2 = b["scores"].clone().requires_grad_(), b["scores"].clone().requires_grad_()
        call = {k: b[k] for k in ("index", "query_index", "num_pos_items", "ideal_dcg")}
        out = crit(s1, b["rating"], **call)
        want = ref(s2, b["rating"], **call)
        torch.testing.assert_close(out, want, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(torch.autograd.grad(out, s1)[0], torch.autograd.grad(want, s2)[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(crit.u.value, ref.u, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(crit.lambda_q.value, ref.lam, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(crit.s_q.value, ref.sq, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kw", [{}, {"top_k": 2}, {"top_k": 2, "top_k_version": "prac"}])
def test_ndcg_function_without_state_is_a_first_visit(kw: dict[str, Any]) -> None:
    # the function's missing u, λ_q, s_q are the module's fresh (zero) state; the item counts may
    # be given as floats (mutation seed 27: K-SONG's s_q and a float num_pos_items)
    data_len, steps = _ranking_steps()
    b = steps[0]
    crit = la.create("ndcg", data_len=data_len, num_queries=6, num_items=40, num_pos=2, **kw).double()
    call = {k: b[k] for k in ("index", "query_index", "num_pos_items", "ideal_dcg")}
    s1, s2 = b["scores"].clone().requires_grad_(), b["scores"].clone().requires_grad_()
    ref = crit(s1, b["rating"], **call)
    out = LF.ndcg(s2, b["rating"], num_pos_items=b["num_pos_items"], ideal_dcg=b["ideal_dcg"], num_items=40, num_pos=2, **kw)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(torch.autograd.grad(out, s2)[0], torch.autograd.grad(ref, s1)[0], rtol=1e-12, atol=1e-15)
    as_float = LF.ndcg(b["scores"], b["rating"], num_pos_items=b["num_pos_items"].double(), ideal_dcg=b["ideal_dcg"],
                       num_items=40, num_pos=2, **kw)
    torch.testing.assert_close(as_float, out.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("kw", [{}, {"gamma": 0.3}, {"gamma": 1.0, "eps": 1e-3}])
def test_listwise_ce_follows_libauc_over_calls(kw: dict[str, Any]) -> None:
    data_len, steps = _ranking_steps(num_pos=3, num_neg=4)
    crit = la.create("listwise_ce", data_len=data_len, num_pos=3, **kw).double()
    ref = RefListwise(data_len, 3, **kw)
    for b in steps:
        s1, s2 = b["scores"].clone().requires_grad_(), b["scores"].clone().requires_grad_()
        out, want = crit(s1, index=b["index"]), ref(s2, b["index"])
        torch.testing.assert_close(out, want, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(torch.autograd.grad(out, s1)[0], torch.autograd.grad(want, s2)[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(crit.u.value, ref.u, rtol=1e-12, atol=1e-15)


def test_ranking_accepts_libauc_full_width_rating_and_index() -> None:
    # LibAUC's batch['rating'] / ['user_item_id'] are [B, num_pos + num_neg]; the first columns are read
    data_len, steps = _ranking_steps()
    b = steps[0]
    wide = lambda t: torch.cat([t, torch.zeros(t.shape[0], 5, dtype=t.dtype)], 1)  # noqa: E731
    a = la.create("ndcg", data_len=data_len, num_queries=6, num_items=40, num_pos=2).double()
    c = la.create("ndcg", data_len=data_len, num_queries=6, num_items=40, num_pos=2).double()
    kw = {"num_pos_items": b["num_pos_items"], "ideal_dcg": b["ideal_dcg"]}
    torch.testing.assert_close(a(b["scores"], b["rating"], index=b["index"], **kw),
                               c(b["scores"], wide(b["rating"]), index=wide(b["index"]), **kw), rtol=0, atol=0)


# --------------------------------------------------------------------------------------
# identities: γ = 1 estimators are the gradients of the batch objectives
# --------------------------------------------------------------------------------------
def _batch(seed: int = 3, n: int = 10) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % 3 == 0).long()
    return torch.sigmoid(torch.randn(n, generator=g, dtype=DT) + y), y


def _grad(fn: Callable[[Tensor], Tensor], s: Tensor) -> tuple[Tensor, Tensor]:
    x = s.clone().requires_grad_()
    out = fn(x)
    return out.detach(), torch.autograd.grad(out, x)[0]


def test_soap_gamma_one_is_the_gradient_of_the_batch_ap_surrogate() -> None:
    # P(s) = -(1/n+) Σ_{y_i=1} Σ_j y_j ℓ(m, s_i - s_j) / Σ_j ℓ(m, s_i - s_j) (Qi et al. 2021, eq. 3)
    s, y = _batch()
    p = y == 1

    def ap_surrogate(x: Tensor) -> Tensor:
        L = torch.relu(1.0 - (x[p][:, None] - x[None, :])) ** 2
        return -((L * p).sum(1) / L.sum(1)).mean()

    value, grad = _grad(lambda x: LF.ap_soap(x, y, gamma=1.0), s)
    assert abs(float(value)) < 1e-15  # u = this batch's means: the weighted sum is 0 by construction
    torch.testing.assert_close(grad, _grad(ap_surrogate, s)[1], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("temperature", [0.3, 1.0, 4.0])
def test_pauc_dro_gamma_one_is_the_gradient_of_the_kl_dro_objective(temperature: float) -> None:
    # F(s) = (1/n+) Σ_i λ log (1/n-) Σ_j exp(ℓ_ij / λ) (Zhu et al. 2022, SOPA-s)
    s, y = _batch()
    p, n = y == 1, y == 0

    def kl_dro(x: Tensor) -> Tensor:
        L = torch.relu(1.0 - (x[p][:, None] - x[n][None, :])) ** 2
        return (temperature * (torch.logsumexp(L / temperature, 1) - math.log(int(n.sum())))).mean()

    got = _grad(lambda x: LF.pauc_dro(x, y, gamma=1.0, temperature=temperature), s)[1]
    torch.testing.assert_close(got, _grad(kl_dro, s)[1], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(("temperature", "temperature_pos"), [(1.0, 1.0), (0.5, 2.0), (3.0, 0.7)])
def test_tpauc_gamma_one_is_the_gradient_of_the_nested_kl_dro_objective(temperature: float, temperature_pos: float) -> None:
    # F(s) = λ' log (1/n+) Σ_i ((1/n-) Σ_j exp(ℓ_ij / λ))^{λ/λ'} (Zhu et al. 2022, SOTA-s)
    s, y = _batch()
    p, n = y == 1, y == 0

    def nested(x: Tensor) -> Tensor:
        L = torch.relu(1.0 - (x[p][:, None] - x[n][None, :])) ** 2
        inner = torch.exp(L / temperature).mean(1)
        return temperature_pos * torch.log((inner ** (temperature / temperature_pos)).mean())

    got = _grad(lambda x: LF.tpauc_kl(x, y, gamma=1.0, gamma_outer=1.0, temperature=temperature,
                                      temperature_pos=temperature_pos), s)[1]
    torch.testing.assert_close(got, _grad(nested, s)[1], rtol=1e-10, atol=1e-13)


def test_pauc_dro_large_temperature_is_the_plain_pairwise_mean() -> None:
    s, y = _batch()
    p, n = y == 1, y == 0
    plain = lambda x: (torch.relu(1.0 - (x[p][:, None] - x[n][None, :])) ** 2).mean()  # noqa: E731
    v_plain, g_plain = _grad(plain, s)
    v, g = _grad(lambda x: LF.pauc_dro(x, y, gamma=1.0, temperature=1e7), s)
    torch.testing.assert_close(v, v_plain, rtol=1e-6, atol=0)
    torch.testing.assert_close(g, g_plain, rtol=1e-6, atol=1e-12)
    # small λ: the hardest negative of each positive (the max over j) takes the weight
    hard = lambda x: (torch.relu(1.0 - (x[p][:, None] - x[n][None, :])) ** 2).max(1).values.mean()  # noqa: E731
    torch.testing.assert_close(_grad(lambda x: LF.pauc_dro(x, y, gamma=1.0, temperature=1e-4), s)[1], _grad(hard, s)[1],
                               rtol=1e-6, atol=1e-9)


def test_pauc_cvar_beta_one_first_call_is_the_plain_pairwise_mean() -> None:
    s, y = _batch()
    p, n = y == 1, y == 0
    plain = lambda x: (torch.relu(1.0 - (x[p][:, None] - x[n][None, :])) ** 2).mean()  # noqa: E731
    v, g = _grad(lambda x: LF.pauc_cvar(x, y, beta=1.0), s)
    v0, g0 = _grad(plain, s)
    torch.testing.assert_close(v, v0, rtol=1e-14, atol=0)
    torch.testing.assert_close(g, g0, rtol=1e-14, atol=0)


def test_pauc_cvar_keeps_the_pairs_above_the_threshold() -> None:
    # thresholds s_i set by hand: only pairs with ℓ_ij > s_i count, divided by β n-; s_i steps by η(1 - count/(β n-))
    s, y = _batch()
    p, n = y == 1, y == 0
    L = torch.relu(1.0 - (s[p][:, None] - s[n][None, :])) ** 2
    thr = torch.zeros(10, dtype=DT)
    thr[p] = L.median(1).values  # about half of each positive's pairs above it
    state = thr.clone()
    out = LF.pauc_cvar(s, y, index=torch.arange(10), threshold=state, beta=0.5, eta=0.2)
    keep = (L > thr[p][:, None]).double()
    torch.testing.assert_close(out, (keep * L).sum(1).mean() / (0.5 * int(n.sum())), rtol=1e-14, atol=0)
    torch.testing.assert_close(state[p], thr[p] - 0.2 * (1 - keep.sum(1) / (0.5 * int(n.sum()))), rtol=1e-14, atol=0)
    torch.testing.assert_close(state[n], thr[n], rtol=0, atol=0)  # negatives' entries are not touched


def _song_data(seed: int = 4) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    B, P, M = 3, 2, 4
    return {"scores": torch.randn(B, P + M, generator=g, dtype=DT), "rating": torch.randint(0, 4, (B, P), generator=g),
            "num_pos_items": torch.tensor([2, 5, 3]), "ideal_dcg": torch.tensor([3.1, 9.0, 4.5], dtype=DT)}


def test_song_gamma_one_is_the_gradient_of_the_ndcg_surrogate() -> None:
    # Qiu et al. 2022, eq. (3): -(1/B) Σ_q (N+_q / IDCG_q) (1/P) Σ_i (2^{r_qi} - 1) / log2(1 + N g_qi),
    # g_qi = (1/(P+M)) Σ_j max(m - (s_qi - s_qj), 0)^2: SONG's estimator with u = g (γ = 1) is its gradient
    d = _song_data()
    N = 30

    def surrogate(x: Tensor) -> Tensor:
        total = torch.zeros((), dtype=DT)
        for q in range(x.shape[0]):
            for i in range(2):
                g = (torch.relu(1.0 - (x[q, i] - x[q])) ** 2).mean()
                gain = 2.0 ** float(d["rating"][q, i]) - 1
                total = total - float(d["num_pos_items"][q]) / float(d["ideal_dcg"][q]) * gain / torch.log2(1 + N * g) / 2
        return total / x.shape[0]

    got = _grad(lambda x: LF.ndcg(x, d["rating"], num_pos_items=d["num_pos_items"], ideal_dcg=d["ideal_dcg"],
                                  num_items=N, num_pos=2, gamma=1.0), d["scores"])[1]
    torch.testing.assert_close(got, _grad(surrogate, d["scores"])[1], rtol=1e-10, atol=1e-13)


def test_listwise_ce_gamma_one_is_the_gradient_of_the_listwise_cross_entropy() -> None:
    # with u = this batch's mean of e (γ = 1, ε → 0), Σ_j d_j e_j / u = M Σ_j softmax(d)_j d_j, the gradient of
    # M log Σ_j exp(s_qj - s_qi) over the negatives j: the listwise CE log(Σ_j e^{s_qj} / e^{s_qi}) up to the constant M
    d = _song_data()
    M = 4
    lce = lambda x: M * torch.logsumexp(x[:, 2:].unsqueeze(1) - x[:, :2].unsqueeze(2), 2).sum() / x.shape[0]  # noqa: E731
    got = _grad(lambda x: LF.listwise_ce(x, num_pos=2, gamma=1.0, eps=1e-300), d["scores"])[1]
    torch.testing.assert_close(got, _grad(lce, d["scores"])[1], rtol=1e-10, atol=1e-13)


def test_soap_first_visit_is_zero_with_a_gradient() -> None:
    s, y = _batch()
    crit = la.create("ap_soap", data_len=10).double()
    x = s.clone().requires_grad_()
    out = crit(x, y, index=torch.arange(10))
    assert abs(float(out.detach())) < 1e-15
    assert float(torch.autograd.grad(out, x)[0].abs().sum()) > 1e-3


# --------------------------------------------------------------------------------------
# gradients at fixed state: finite differences (float64) and gradcheck
# --------------------------------------------------------------------------------------
def _finite_difference(fn: Callable[[Tensor], Tensor], x: Tensor, eps: float = 1e-6) -> Tensor:
    out = torch.zeros_like(x)
    flat = out.view(-1)
    for k in range(x.numel()):
        hi, lo = x.clone(), x.clone()
        hi.view(-1)[k] += eps
        lo.view(-1)[k] -= eps
        flat[k] = (fn(hi) - fn(lo)) / (2 * eps)
    return out


def _warm(crit: Any, steps: list[tuple[Tensor, Tensor, Tensor]]) -> None:
    for s, y, idx in steps:
        crit(s, y, index=idx)


@pytest.mark.parametrize("loss_id", ["ap_soap", "pauc_dro", "tpauc_kl"])
def test_gradient_at_fixed_state_is_the_derivative_of_the_frozen_objective(loss_id: str) -> None:
    # After warming the state, call once more; with the state the call wrote (u_i, w fixed), the
    # estimator is the derivative of the objective linearised at that state (Qi et al. 2021 eq. 6;
    # Zhu et al. 2022 Alg. SOPA-s / SOTA-s):
    #   SOAP:   Φ(x) = (1/n+) Σ_i [u_pos_i f_all_i(x) / u_all_i² - f_pos_i(x) / u_all_i]
    #   DRO:    Φ(x) = (1/n+) Σ_i λ f_i(x) / u_i,                f_i = (1/n-) Σ_j exp(ℓ_ij(x)/λ)
    #   SOTA-s: Φ(x) = (1/n+) Σ_i λ u_i^{λ/λ'-1} f_i(x) / w
    steps = _binary_steps()
    crit = la.create(loss_id, data_len=30, **({"temperature": 0.7} if loss_id != "ap_soap" else {})).double()
    _warm(crit, steps[:3])
    s, y, idx = steps[3]
    x = s.clone().requires_grad_()
    grad = torch.autograd.grad(crit(x, y, index=idx), x)[0]
    p, n = y == 1, y == 0
    ip = idx[p]
    if loss_id == "ap_soap":
        ua, up = crit.u_all.value[ip], crit.u_pos.value[ip]

        def phi(z: Tensor) -> Tensor:
            L = torch.relu(1.0 - (z[p][:, None] - z[None, :])) ** 2
            return (up * L.mean(1) / ua ** 2 - (L * p).mean(1) / ua).mean()
    else:
        u = crit.log_u.value[ip].exp()
        scale = u ** (0.7 / 1.0 - 1) / crit.log_w.exp() if loss_id == "tpauc_kl" else 1 / u

        def phi(z: Tensor) -> Tensor:
            L = torch.relu(1.0 - (z[p][:, None] - z[n][None, :])) ** 2
            return (0.7 * torch.exp(L / 0.7).mean(1) * scale).mean()

    torch.testing.assert_close(grad, _finite_difference(phi, s.detach()), rtol=1e-6, atol=1e-8)


def test_pauc_cvar_gradcheck_at_fixed_state() -> None:
    steps = _binary_steps()
    crit = la.create("pauc_cvar", data_len=30, beta=0.4).double()
    _warm(crit, steps[:3])
    s, y, idx = steps[3]
    frozen = crit.threshold.value.clone()

    def fn(x: Tensor) -> Tensor:  # a fresh copy of the state each time: every evaluation sees the same thresholds
        return LF.pauc_cvar(x, y, index=idx, threshold=frozen.clone(), beta=0.4)

    assert torch.autograd.gradcheck(fn, (s.clone().requires_grad_(),), eps=1e-7, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("loss_id", ["ndcg", "listwise_ce"])
def test_ranking_gradient_at_fixed_state(loss_id: str) -> None:
    # SONG: Φ(x) = (1/B) Σ_q (N+_q/IDCG_q) mean_i ∇f(u_qi) g_qi(x) with u the state the call wrote;
    # listwise: Φ(x) = (1/B) Σ_{q,i} Σ_j d_qij(x) e_qij / (u_qi + ε), e from the call's batch (fixed)
    data_len, steps = _ranking_steps()
    kw = {"num_items": 40} if loss_id == "ndcg" else {}
    crit = la.create(loss_id, data_len=data_len, **({"num_queries": 6} if loss_id == "ndcg" else {}), num_pos=2, **kw).double()
    call = lambda b: ({k: b[k] for k in ("index", "num_pos_items", "ideal_dcg")} if loss_id == "ndcg"  # noqa: E731
                      else {"index": b["index"]})
    ins = lambda b: [b["rating"]] if loss_id == "ndcg" else []  # noqa: E731
    for b in steps[:3]:
        crit(b["scores"], *ins(b), **call(b))
    b = steps[3]
    x = b["scores"].clone().requires_grad_()
    grad = torch.autograd.grad(crit(x, *ins(b), **call(b)), x)[0]
    u = crit.u.value[b["index"].reshape(-1)].reshape(-1, 2)
    if loss_id == "ndcg":
        G = 2.0 ** b["rating"].double() - 1
        w = G * 40 / (torch.log2(1 + 40 * u) ** 2 * (1 + 40 * u) * math.log(2))
        c = b["num_pos_items"].double() / b["ideal_dcg"]

        def phi(z: Tensor) -> Tensor:
            g = (torch.relu(1.0 - (z[:, :2].unsqueeze(2) - z.unsqueeze(1))) ** 2).mean(2)
            return (c * (w * g).mean(1)).mean()
    else:
        d0 = b["scores"][:, 2:].unsqueeze(1) - b["scores"][:, :2].unsqueeze(2)
        e = torch.exp(d0 - d0.max())

        def phi(z: Tensor) -> Tensor:
            d = z[:, 2:].unsqueeze(1) - z[:, :2].unsqueeze(2)
            return (d * e / (u.unsqueeze(2) + 1e-10)).sum() / z.shape[0]

    torch.testing.assert_close(grad, _finite_difference(phi, b["scores"]), rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------------------
# state: copies, second calls, reset, extremes
# --------------------------------------------------------------------------------------
STATEFUL_IDS = ["ap_soap", "pauc_cvar", "pauc_dro", "tpauc_kl"]


@pytest.mark.parametrize("loss_id", STATEFUL_IDS)
def test_functional_kwargs_are_copies_and_reset_restarts(loss_id: str) -> None:
    steps = _binary_steps()
    crit = la.create(loss_id, data_len=30).double()
    fresh = la.create(loss_id, data_len=30).double()
    s, y, idx = steps[0]
    first = crit(s, y, index=idx)
    before = _state_of(crit)
    kw = crit.functional_kwargs()
    getattr(LF, loss_id)(s, y, index=idx, **kw)
    for k, v in _state_of(crit).items():
        assert torch.equal(v, before[k])  # the function updated the copies, not the module
    second = crit(*steps[1][:2], index=steps[1][2])
    assert not torch.equal(second, fresh(*steps[1][:2], index=steps[1][2]))  # the state of the first call acts
    crit.reset()
    assert torch.equal(crit(s, y, index=idx), first)


def test_threshold_steps_act_on_the_next_call() -> None:
    # η moves SOPA's thresholds and K-SONG's λ_q after this call reads them: the next call shows it
    steps = _binary_steps()
    a, b = (la.create("pauc_cvar", data_len=30, eta=e).double() for e in (0.1, 0.05))
    for s, y, idx in steps[:1]:
        assert torch.equal(a(s, y, index=idx), b(s, y, index=idx))
    outs = [(a(s, y, index=idx), b(s, y, index=idx)) for s, y, idx in steps[1:]]
    assert any(not torch.equal(x, z) for x, z in outs)
    data_len, rsteps = _ranking_steps()
    c, d = (la.create("ndcg", data_len=data_len, num_queries=6, num_items=40, num_pos=2, top_k=2, eta=e).double()
            for e in (0.01, 0.5))
    call = lambda bt: {k: bt[k] for k in ("index", "query_index", "num_pos_items", "ideal_dcg")}  # noqa: E731
    assert torch.equal(c(rsteps[0]["scores"], rsteps[0]["rating"], **call(rsteps[0])),
                       d(rsteps[0]["scores"], rsteps[0]["rating"], **call(rsteps[0])))
    # the same batch again: its queries' λ_q moved by different steps
    assert not torch.equal(c(rsteps[0]["scores"], rsteps[0]["rating"], **call(rsteps[0])),
                           d(rsteps[0]["scores"], rsteps[0]["rating"], **call(rsteps[0])))


@pytest.mark.parametrize("loss_id", ["pauc_dro", "tpauc_kl", "multilabel_pauc"])
def test_dro_states_do_not_overflow(loss_id: str) -> None:
    # ℓ/λ = 4e8/0.01: LibAUC's exp(ℓ/λ) is inf (and its weights NaN); the log-space state stays finite
    multi = loss_id.startswith("multilabel")
    crit = la.create(loss_id, data_len=8, temperature=0.01, **({"num_labels": 2} if multi else {}))
    s = torch.tensor([1e4, -1e4, 3.0, -2.0, 0.5, 7.0])
    y = torch.tensor([1, 0, 1, 0, 0, 1])
    if multi:
        s, y = torch.stack([s, s.flip(0)], 1), torch.stack([y, 1 - y], 1)
    x = s.clone().requires_grad_()
    out = crit(x, y, index=torch.arange(6))
    g = torch.autograd.grad(out, x)[0]
    assert torch.isfinite(out) and torch.isfinite(g).all()
    assert torch.isfinite(crit.log_u.value[:6].reshape(6, -1)[y.reshape(6, -1) == 1]).all()


def test_none_reductions() -> None:
    s, y = _batch()
    for loss_id in STATEFUL_IDS:
        fn = getattr(LF, loss_id)
        none, mean, total = (fn(s, y, reduction=r) for r in ("none", "mean", "sum"))
        assert none.shape == (10,) and bool((none[y == 0] == 0).all())
        torch.testing.assert_close(total, none.sum(), rtol=1e-14, atol=0)
        torch.testing.assert_close(mean, none.sum() / int(y.sum()), rtol=1e-14, atol=1e-300)
    s2, y2, _ = _multilabel_steps()[0]
    for loss_id in ("multilabel_ap", "multilabel_pauc"):
        fn = getattr(LF, loss_id)
        none, mean = fn(s2, y2, reduction="none"), fn(s2, y2)
        assert none.shape == s2.shape and bool((none[y2 == 0] == 0).all())
        torch.testing.assert_close(mean, (none.sum(0) / y2.sum(0)).mean(), rtol=1e-14, atol=1e-300)


# --------------------------------------------------------------------------------------
# bad input: each error names the argument
# --------------------------------------------------------------------------------------
def _binary_crit(loss_id: str = "pauc_dro") -> Any:
    return la.create(loss_id, data_len=10)


S4 = torch.tensor([0.9, 0.2, 0.6, 0.4])
Y4 = torch.tensor([1, 0, 1, 0])
I4 = torch.arange(4)


@pytest.mark.parametrize("loss_id", STATEFUL_IDS)
def test_binary_bad_input(loss_id: str) -> None:
    crit = _binary_crit(loss_id)
    with pytest.raises(ValueError, match="scores must have shape"):
        crit(torch.rand(4, 2), Y4, index=I4)
    with pytest.raises(ValueError, match="target must have the shape"):
        crit(S4, Y4[:3], index=I4)
    with pytest.raises(ValueError, match=r"target must hold labels in \{0, 1\}"):
        crit(S4, torch.tensor([1, 0, 2, 0]), index=I4)
    with pytest.raises(ValueError, match=r"index must lie in \[0, data_len=10\)"):
        crit(S4, Y4, index=torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ValueError, match=r"index must lie in \[0, data_len=10\)"):
        crit(S4, Y4, index=torch.tensor([-1, 1, 2, 3]))
    with pytest.raises(ValueError, match="index holds a dataset index twice"):
        crit(S4, Y4, index=torch.tensor([0, 1, 2, 2]))
    with pytest.raises(ValueError, match="index must have shape"):
        crit(S4, Y4, index=torch.arange(5))
    with pytest.raises(TypeError, match="index must be an integer tensor"):
        crit(S4, Y4, index=I4.double())
    with pytest.raises(ValueError, match="call it with index="):
        crit(S4, Y4)
    with pytest.raises(ValueError, match="target has no positive sample"):
        crit(S4, torch.zeros(4, dtype=torch.long), index=I4)
    with pytest.raises(ValueError, match="scores contains NaN"):
        crit(torch.tensor([0.9, float("nan"), 0.6, 0.4]), Y4, index=I4)
    with pytest.raises(TypeError, match="scores must be a floating-point tensor"):
        crit(Y4, Y4, index=I4)
    if loss_id != "ap_soap":  # SOAP compares positives with every sample: an all-positive batch is fine
        with pytest.raises(ValueError, match="target has no negative sample"):
            crit(S4, torch.ones(4, dtype=torch.long), index=I4)
    # nothing was written by the refused calls
    assert all(bool((v == v.flatten()[-1]).all()) for v in crit.state_tensors().values())
    if loss_id == "ap_soap":
        assert torch.isfinite(crit(S4, torch.ones(4, dtype=torch.long), index=I4))


def test_state_misuse() -> None:
    with pytest.raises(ValueError, match="index= needs the per-sample state"):
        LF.ap_soap(S4, Y4, index=I4)
    with pytest.raises(ValueError, match="missing u_pos"):
        LF.ap_soap(S4, Y4, index=I4, u_all=torch.zeros(10))
    with pytest.raises(ValueError, match=r"u_pos must have shape \[data_len\]"):
        LF.ap_soap(S4, Y4, index=I4, u_all=torch.zeros(10), u_pos=torch.zeros(10, 2))
    with pytest.raises(ValueError, match="same length"):
        LF.ap_soap(S4, Y4, index=I4, u_all=torch.zeros(10), u_pos=torch.zeros(11))
    with pytest.raises(TypeError, match="log_u must be a floating-point tensor"):
        LF.pauc_dro(S4, Y4, index=I4, log_u=torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="log_w must be a floating-point tensor with one element"):
        LF.tpauc_kl(S4, Y4, index=I4, log_u=torch.zeros(10), log_w=torch.zeros(2))
    with pytest.raises(TypeError, match="keeps its state"):
        la.create("pauc_dro", data_len=10)(S4, Y4, index=I4, log_u=torch.zeros(10))
    with pytest.raises(ValueError, match="data_len must be a positive int"):
        la.create("ap_soap", data_len=0)
    with pytest.raises(ValueError, match=r"gamma must be in \(0, 1\]"):
        la.create("ap_soap", data_len=4, gamma=0.0)
    with pytest.raises(ValueError, match="surrogate must be one of"):
        la.create("pauc_dro", data_len=4, surrogate="barrier_hinge")
    with pytest.raises(ValueError, match="mode must be '1w'"):
        la.create("multilabel_pauc", data_len=4, num_labels=2, mode="SOPA")


def test_multilabel_bad_input() -> None:
    crit = la.create("multilabel_ap", data_len=10, num_labels=2)
    s = torch.rand(4, 2)
    y = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]])
    with pytest.raises(ValueError, match=r"scores must have shape \[N, num_labels=2\]"):
        crit(torch.rand(4, 3), torch.zeros(4, 3, dtype=torch.long), index=I4)
    with pytest.raises(ValueError, match=r"target has no positive sample in this batch \(label 1\)"):
        crit(s, torch.tensor([[1, 0], [0, 0], [1, 0], [0, 0]]), index=I4)
    with pytest.raises(ValueError, match=r"target must hold labels in \{0, 1\}"):
        crit(s, y * 3, index=I4)
    pauc = la.create("multilabel_pauc", data_len=10, num_labels=2)
    with pytest.raises(ValueError, match=r"target has no negative sample in this batch \(label 0\)"):
        pauc(s, torch.tensor([[1, 0], [1, 1], [1, 1], [1, 0]]), index=I4)
    assert torch.isfinite(crit(s, y.bool(), index=I4)) and torch.isfinite(pauc(s, y.float(), index=I4))


def test_ranking_bad_input() -> None:
    data_len, steps = _ranking_steps()
    b = steps[0]
    crit = la.create("ndcg", data_len=data_len, num_queries=6, num_items=40, num_pos=2, top_k=2)
    kw = {"index": b["index"], "query_index": b["query_index"], "num_pos_items": b["num_pos_items"],
          "ideal_dcg": b["ideal_dcg"]}
    s, r = b["scores"].float(), b["rating"]
    with pytest.raises(ValueError, match="scores must have shape"):
        crit(s[:, :1], r, **kw)
    with pytest.raises(ValueError, match="rating must have shape"):
        crit(s, r[:, :1], **kw)
    with pytest.raises(ValueError, match="rating must be >= 0"):
        crit(s, -r, **kw)
    with pytest.raises(ValueError, match="index must have shape"):
        crit(s, r, **{**kw, "index": b["index"][:, :1]})
    with pytest.raises(ValueError, match=r"index must lie in \[0, data_len=24\)"):
        crit(s, r, **{**kw, "index": b["index"] + 24})
    with pytest.raises(ValueError, match="index holds a dataset index twice"):
        crit(s, r, **{**kw, "index": torch.zeros_like(b["index"])})
    with pytest.raises(ValueError, match=r"query_index must lie in \[0, num_queries=6\)"):
        crit(s, r, **{**kw, "query_index": b["query_index"] + 6})
    with pytest.raises(ValueError, match="call it with query_index="):
        crit(s, r, **{k: v for k, v in kw.items() if k != "query_index"})
    with pytest.raises(ValueError, match="ideal_dcg must be finite and > 0"):
        crit(s, r, **{**kw, "ideal_dcg": torch.zeros(4)})
    with pytest.raises(ValueError, match=r"num_pos_items must have shape \[B=4\]"):
        crit(s, r, **{**kw, "num_pos_items": torch.ones(3)})
    lw = la.create("listwise_ce", data_len=data_len, num_pos=2)
    with pytest.raises(ValueError, match="at least one negative"):
        lw(s[:, :2], index=b["index"])
    with pytest.raises(ValueError, match=r"index must lie in \[0, data_len=24\)"):
        lw(s, index=b["index"] + 100)
