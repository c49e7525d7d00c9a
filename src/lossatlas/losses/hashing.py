"""Deep hashing with one cosine loss, OrthoHash (catalogue row F10)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .. import functional as LF
from .._spec import fresh, spec_of
from .._validation import check_int
from ..registry import Paper, register
from ._base import Loss

__all__ = ["OrthoHashLoss"]

ORTHOHASH_PAPER = Paper("J. T. Hoe, K. W. Ng, T. Zhang, C. S. Chan, Y.-Z. Song, T. Xiang",
                        "One Loss for All: Deep Hashing with a Single Cosine Similarity based Learning Objective",
                        "NeurIPS", 2021, "2109.14449")
_SPEC = spec_of(LF.orthohash)


@register(
    "orthohash",
    aliases=("one_loss_hashing", "orthohash_loss"),
    family="metric",
    kind="embedding",
    catalogue="F10",
    formula="l_i = CE(s·(cos(v_i, c_j) − m·1[j = y_i]), y_i) + λ_q (1 − cos(v_i, sign v_i)),  c ∈ {±1}^{C×K} fixed",
    paper=ORTHOHASH_PAPER,
    code="kamwoh/orthohash functions/loss/orthohash.py (OrthoHashLoss), scripts/train_hashing.py (codebook)",
    function=LF.orthohash,
    defaults_source={"seed": "lossatlas: the codebook's own generator (the official code draws it from the run's seed)"},
)
class OrthoHashLoss(Loss):
    r"""OrthoHash, deep hashing with a single cosine-similarity objective (Hoe, Ng, Zhang, Chan,
    Song & Xiang, NeurIPS 2021, "One Loss for All").

    .. math:: \ell_i = -\log\frac{e^{s(\cos(v_i, c_{y_i}) - m)}}{e^{s(\cos(v_i, c_{y_i}) - m)}
              + \sum_{j\ne y_i} e^{s\cos(v_i, c_j)}} + \lambda_q\,\big(1 - \cos(v_i, \operatorname{sign} v_i)\big)

    Each class owns a fixed binary code ``c_j ∈ {±1}^K`` (the buffer ``codebook``, each bit ±1
    with probability ½ as the official default ``--codebook-method B``; near-orthogonal for large
    K); maximising the cosine between a sample's continuous code ``v`` and its class code is, for
    the signed code, minimising their Hamming distance (``cos(sign v, c) = 1 − 2 d_H / K``), so
    one CosFace-style loss does the classification, the Hamming-distance retrieval and, largely,
    the quantisation. Defaults s = 8, m = 0.2 and λ_q = 0 are the official ``main.py``'s
    (single-label data sets; its multi-label variants are not taken). The codebook is drawn from
    a generator seeded with ``seed`` (``seed`` is this library's: the official code uses the run's
    seed); pass your own ±1 codebook to :func:`lossatlas.functional.orthohash`.

    {args}

    Shapes: ``embeddings`` [N, K] (continuous codes, K = ``embedding_size`` bits); ``labels``
    int64 [N] in [0, C).

    Example:
        >>> import torch, lossatlas as la
        >>> crit = la.create("orthohash", num_classes=10, embedding_size=64)
        >>> crit(torch.randn(8, 64), torch.randint(0, 10, (8,))).ndim
        0
    """

    codebook: Tensor

    def __init__(self, num_classes: int, embedding_size: int, scale: float = 8.0, margin: float = 0.2,
                 quantization: float = 0.0, seed: int = 0, reduction: str = "mean", validate: bool = True) -> None:
        values = _SPEC.check_all({"scale": scale, "margin": margin, "quantization": quantization,
                                  "reduction": reduction, "validate": validate})
        super().__init__(values.pop("reduction"), values.pop("validate"))
        self.num_classes = check_int(num_classes, "num_classes")
        self.embedding_size = check_int(embedding_size, "embedding_size")
        self.seed = check_int(seed, "seed", low=0)
        self.scale, self.margin, self.quantization = values["scale"], values["margin"], values["quantization"]
        self.register_buffer("codebook", LF.bernoulli_codebook(self.num_classes, self.embedding_size, self.seed))

    def functional_kwargs(self) -> dict[str, Any]:
        return {"codebook": self.codebook, "scale": self.scale, "margin": self.margin,
                "quantization": self.quantization, "reduction": self.reduction, "validate": self.validate}

    def _hparams(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "embedding_size": self.embedding_size, "scale": self.scale,
                "margin": self.margin, "quantization": self.quantization, "seed": self.seed}

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return fresh(LF.orthohash(embeddings, labels, self.codebook, scale=self.scale, margin=self.margin,
                                  quantization=self.quantization, reduction=self.reduction, validate=self.validate))


def _args_block() -> str:
    rows = _SPEC.args_doc().split("\n")[1:]
    lines = ["Args:", "    num_classes: C, the number of class codes.",
             "    embedding_size: K, the number of bits (the width of the continuous codes).", *rows,
             "    seed: seed of the codebook's generator. Default ``0``."]
    return "\n".join(lines)


def _fill(doc: str) -> str:
    out: list[str] = []
    for line in doc.split("\n"):
        if line.strip() == "{args}":
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + row for row in _args_block().split("\n"))
        else:
            out.append(line)
    return "\n".join(out)


OrthoHashLoss.__doc__ = _fill(OrthoHashLoss.__doc__ or "")
