"""Peer implementations the performance suite compares lossatlas with.

Each entry maps a lossatlas registry id to the kwargs that make our loss compute the same
quantity as the peer, and to one or more peers. A peer is either an installed library
(torchvision, timm, open_clip, lightly, pytorch-metric-learning; all optional) or, where the
paper's own code is not pip-installable, the paper's formula written in plain eager PyTorch
and labelled ``ref:`` (it is the formula, not the authors' code). Every comparison also
checks that both sides give the same loss value on the same inputs (column "match").

A peer builder gets ``(inputs, ours)`` — the input dict and our constructed module, so that
proxy-based losses can copy our class weights into the peer — and returns a zero-argument
callable producing the peer's scalar loss on ``inputs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

Builder = Callable[[dict, Any], Callable[[], torch.Tensor]]


@dataclass
class Peer:
    name: str
    build: Builder
    library: str  # import name whose absence skips the peer ("" = torch only)


@dataclass
class Spec:
    id: str
    kwargs: dict = field(default_factory=dict)
    peers: list[Peer] = field(default_factory=list)
    max_n: int | None = None  # embedding losses whose peer cannot take the largest N
    note: str = ""


def _lib(name: str) -> bool:
    try:
        __import__(name)
        return True
    except Exception:  # noqa: BLE001 - any import failure means "peer not available"
        return False


# ----------------------------------------------------------------- reference formulas
# The constants come from the module's own hyper-parameters (``crit.functional_kwargs()``:
# class_counts, max_margin, tau, ...), recomputed here with the library's public helpers.
def _ref_ldam(inp: dict, ours: Any) -> Callable[[], torch.Tensor]:
    # Cao et al. (2019) as the official code states it: a one-hot matrix selects m_y.
    import lossatlas as la

    z, y = inp["logits"], inp["target"]
    kw = ours.functional_kwargs()
    m = la.functional.ldam_margins(kw["class_counts"], kw["max_margin"]).to(z.device, z.dtype)
    s = kw["scale"]

    def f() -> torch.Tensor:
        onehot = F.one_hot(y, z.shape[1]).to(z.dtype)
        return F.cross_entropy(s * (z - onehot * m), y)

    return f


def _ref_bias(kind: str) -> Builder:
    """``CE(z + b)`` with ``b = τ log π`` (``kind="la"``) or ``log n`` (``kind="bs"``)."""
    def build(inp: dict, ours: Any) -> Callable[[], torch.Tensor]:
        import lossatlas as la

        z, y = inp["logits"], inp["target"]
        kw = ours.functional_kwargs()
        counts = torch.as_tensor(kw["class_counts"], dtype=torch.float64)
        b = kw["tau"] * la.functional.log_prior(counts) if kind == "la" else torch.log(counts)
        b = b.to(z.device, z.dtype)
        return lambda: F.cross_entropy(z + b, y)

    return build


def _ref_vs(inp: dict, ours: Any) -> Callable[[], torch.Tensor]:
    import lossatlas as la

    z, y = inp["logits"], inp["target"]
    kw = ours.functional_kwargs()
    d, io = la.functional.vs_parameters(kw["class_counts"], kw["gamma"], kw["tau"])
    d, io = d.to(z.device, z.dtype), io.to(z.device, z.dtype)
    return lambda: F.cross_entropy(z / d + io, y)


def _ref_focal(inp: dict, ours: Any) -> Callable[[], torch.Tensor]:
    # Lin et al. (2017), softmax form: (1 − p_t)^γ · CE, p_t = exp(−CE).
    z, y, g = inp["logits"], inp["target"], ours.functional_kwargs()["gamma"]

    def f() -> torch.Tensor:
        ce = F.cross_entropy(z, y, reduction="none")
        return ((1 - torch.exp(-ce)) ** g * ce).mean()

    return f


def _torch_ce(inp: dict, ours: Any) -> Callable[[], torch.Tensor]:
    return lambda: F.cross_entropy(inp["logits"], inp["target"])


def _torch_bce(inp: dict, ours: Any) -> Callable[[], torch.Tensor]:
    return lambda: F.binary_cross_entropy_with_logits(inp["logits"], inp["target"])


# ----------------------------------------------------------------------- libraries
def _tv_sigmoid_focal(inp: dict, ours: Any) -> Callable[[], torch.Tensor]:
    from torchvision.ops import sigmoid_focal_loss

    return lambda: sigmoid_focal_loss(inp["logits"], inp["target"], alpha=0.25, gamma=2.0, reduction="mean")


def _timm(name: str, **kw: Any) -> Builder:
    def build(inp: dict, ours: Any) -> Callable[[], torch.Tensor]:
        import timm.loss

        crit = getattr(timm.loss, name)(**kw)
        return lambda: crit(inp["logits"], inp["target"])

    return build


def _normed(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


def _oc_clip(inp: dict, ours: Any) -> Callable[[], torch.Tensor]:
    from open_clip.loss import ClipLoss

    crit = ClipLoss()
    # open_clip models normalise features before the loss; logit_scale = 1 / temperature.
    return lambda: crit(_normed(inp["a"]), _normed(inp["b"]), 1.0 / 0.07)


def _oc_siglip(inp: dict, ours: Any) -> Callable[[], torch.Tensor]:
    from open_clip.loss import SigLipLoss

    crit = SigLipLoss()
    return lambda: crit(_normed(inp["a"]), _normed(inp["b"]), 10.0, -10.0)


def _lightly(name: str, **kw: Any) -> Builder:
    def build(inp: dict, ours: Any) -> Callable[[], torch.Tensor]:
        import lightly.loss

        crit = getattr(lightly.loss, name)(**kw)
        return lambda: crit(inp["a"], inp["b"])

    return build


def _pml(name: str, proxy: bool = False, **kw: Any) -> Builder:
    def build(inp: dict, ours: Any) -> Callable[[], torch.Tensor]:
        import pytorch_metric_learning.losses as L

        if proxy:
            crit = getattr(L, name)(num_classes=ours.weight.shape[0], embedding_size=ours.weight.shape[1], **kw)
            with torch.no_grad():
                crit.W.copy_(ours.weight.detach().t())
            crit.to(inp["emb"].device)
        else:
            crit = getattr(L, name)(**kw)
        return lambda: crit(inp["emb"], inp["labels"])

    return build


SPECS: list[Spec] = [
    # classification: logits [N, C], integer target
    Spec("cross_entropy", peers=[Peer("torch F.cross_entropy", _torch_ce, "")]),
    Spec("focal", {"gamma": 2.0}, peers=[Peer("ref: (1-p_t)^γ·CE eager", _ref_focal, "")],
         note="no pip-installable softmax focal peer; reference formula"),
    Spec("ldam", {}, peers=[Peer("ref: LDAM one-hot formula", _ref_ldam, "")],
         note="kaidic/LDAM-DRW is not pip-installable; its formula in eager torch"),
    Spec("logit_adjusted", {}, peers=[Peer("ref: CE(z + τ log π)", _ref_bias("la"), "")]),
    Spec("balanced_softmax", {}, peers=[Peer("ref: CE(z + log n)", _ref_bias("bs"), "")]),
    Spec("vs", {}, peers=[Peer("ref: CE(z / Δ + ι)", _ref_vs, "")]),
    Spec("poly1", {"epsilon": 1.0}, peers=[Peer("timm PolyCrossEntropy", _timm("PolyCrossEntropy", epsilon=1.0), "timm")]),
    Spec("asymmetric_single_label", {}, peers=[
        Peer("timm AsymmetricLossSingleLabel", _timm("AsymmetricLossSingleLabel", gamma_pos=0.0, gamma_neg=4.0, eps=0.1), "timm")]),
    # multilabel: logits [N, C], multi-hot target
    Spec("sigmoid_focal", {"alpha": 0.25, "gamma": 2.0}, peers=[Peer("torchvision sigmoid_focal_loss", _tv_sigmoid_focal, "torchvision")]),
    Spec("asymmetric", {}, peers=[Peer("timm AsymmetricLossMultiLabel", _timm(
        "AsymmetricLossMultiLabel", gamma_neg=4.0, gamma_pos=1.0, clip=0.05, eps=1e-8,
        disable_torch_grad_focal_loss=True, reduction="sum"), "timm")]),
    Spec("bce", {}, peers=[Peer("torch F.binary_cross_entropy_with_logits", _torch_bce, "")]),
    # pair: (a, b)
    Spec("infonce", {"temperature": 0.07}, peers=[Peer("open_clip ClipLoss", _oc_clip, "open_clip")]),
    Spec("siglip", {"scale": 10.0, "bias": -10.0}, peers=[Peer("open_clip SigLipLoss", _oc_siglip, "open_clip")]),
    Spec("decoupled_contrastive", {"temperature": 0.1}, peers=[Peer("lightly DCLLoss", _lightly("DCLLoss", temperature=0.1), "lightly")]),
    Spec("barlow_twins", {"lambd": 0.005}, peers=[Peer("lightly BarlowTwinsLoss", _lightly("BarlowTwinsLoss", lambda_param=0.005), "lightly")]),
    # embedding: (embeddings [N, D], labels [N])
    Spec("ntxent", {"temperature": 0.07}, max_n=256,
         note="PML NTXentLoss needs ~0.8 GB at N=256 (it grows as N^4 in pairs × pairs): N ≤ 256", peers=[Peer("PML NTXentLoss", _pml("NTXentLoss", temperature=0.07), "pytorch_metric_learning")]),
    Spec("supcon", {"temperature": 0.07}, peers=[Peer("PML SupConLoss", _pml("SupConLoss", temperature=0.07), "pytorch_metric_learning")]),
    Spec("contrastive", {}, peers=[Peer("PML ContrastiveLoss", _pml("ContrastiveLoss", pos_margin=0.0, neg_margin=1.0), "pytorch_metric_learning")]),
    Spec("triplet_margin", {"margin": 0.2}, max_n=1024,
         peers=[Peer("PML TripletMarginLoss", _pml("TripletMarginLoss", margin=0.2), "pytorch_metric_learning")],
         note="N ≤ 1024: PML enumerates every triplet as int64 index lists (~N²·P of them, P = positives per "
              "anchor); lossatlas builds [N, P, N] terms"),
    Spec("multi_similarity", {}, peers=[Peer("PML MultiSimilarityLoss", _pml("MultiSimilarityLoss", alpha=2.0, beta=50.0, base=0.5), "pytorch_metric_learning")]),
    Spec("threshold_consistent_margin", {}, max_n=256, note="PML needs ~0.7 GB at N=256 and grows fast with N: N ≤ 256",
         peers=[Peer("PML ThresholdConsistentMarginLoss", _pml("ThresholdConsistentMarginLoss"), "pytorch_metric_learning")]),
    Spec("arcface", {"margin": math.radians(28.6), "scale": 64.0}, peers=[Peer("PML ArcFaceLoss", _pml("ArcFaceLoss", proxy=True, margin=28.6, scale=64), "pytorch_metric_learning")]),
    Spec("cosface", {"margin": 0.35, "scale": 64.0}, peers=[Peer("PML CosFaceLoss", _pml("CosFaceLoss", proxy=True, margin=0.35, scale=64), "pytorch_metric_learning")]),
    Spec("normalized_softmax", {"temperature": 0.05}, peers=[Peer("PML NormalizedSoftmaxLoss", _pml("NormalizedSoftmaxLoss", proxy=True, temperature=0.05), "pytorch_metric_learning")]),
]


def available(peer: Peer) -> bool:
    return not peer.library or _lib(peer.library)
