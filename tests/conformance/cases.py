"""Inputs and constructor arguments for any registered loss, built from its registry entry.

Nothing here names a loss id: a loss's kind (``classification``, ``multilabel``,
``embedding``, ``pair``, ``binary``, ``ranking``) gives its inputs (a classification loss's
further inputs by their names: ``adv_logits``, ``mixed_logits``, ``mixed_target``), and its required constructor
arguments are filled by name (``class_counts``, ``num_classes``, ``embedding_size``,
``num_samples``, ``data_len``, ``num_labels``, ``num_pos``, ``num_items``, ``num_queries``). A
new id gets every conformance test by being registered.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

import lossatlas as la
from lossatlas._spec import spec_of
from lossatlas.registry import Entry

LOSS_KINDS = ("classification", "multilabel", "embedding", "pair", "regulariser", "binary", "ranking", "distillation",
              "regression_embedding")
C, N, D = 4, 8, 6
P, M = 2, 4  # ranking: relevant then negative columns per query
COUNTS = [40.0, 20.0, 10.0, 5.0]


def loss_entries() -> list[Entry]:
    return [e for e in la.list() if e.kind in LOSS_KINDS]


def loss_ids() -> list[str]:
    return [e.id for e in loss_entries()]


def constructor_kwargs(entry: Entry) -> dict[str, Any]:
    fill = {"class_counts": COUNTS, "num_classes": C, "embedding_size": D, "num_samples": N, "data_len": 2 * N, "num_labels": C,
            "num_pos": P, "num_items": 50, "num_queries": N}
    missing = [n for n in entry.required if n not in fill]
    if missing:
        raise AssertionError(f"{entry.id}: the conformance suite cannot fill required argument(s) {missing}")
    return {n: fill[n] for n in entry.required}


def forward_parameters(entry: Entry) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(entry.cls.forward).parameters)


@dataclass
class Case:
    """One batch for a loss: positional ``inputs`` (float ones get gradients) and call keywords."""

    inputs: list[Tensor]
    call: dict[str, Any] = field(default_factory=dict)

    def floats(self) -> list[Tensor]:
        return [t for t in self.inputs if t.is_floating_point()]

    def clone(self, dtype: torch.dtype | None = None, grad: bool = True) -> Case:
        out = []
        for t in self.inputs:
            if t.is_floating_point() and not _is_target(t, self):
                t = t.detach().to(dtype or t.dtype).clone().requires_grad_(grad)
            elif t.is_floating_point():
                t = t.detach().to(dtype or t.dtype).clone()
            out.append(t)
        return Case(out, dict(self.call), self.target_index)

    target_index: int | None = None


def _is_target(t: Tensor, case: Case) -> bool:
    return case.target_index is not None and t is case.inputs[case.target_index]


def make_case(entry: Entry, n: int = N, dtype: torch.dtype = torch.float64, seed: int = 0, scale: float = 2.0) -> Case:
    g = torch.Generator().manual_seed(seed)
    if entry.kind == "classification":
        logits = torch.randn(n, C, generator=g, dtype=torch.float64) * scale
        target = torch.arange(n) % C
        extra = [_companion(name, logits, target, g) for name in spec_of(entry.function).inputs[2:]]
        case = Case([logits.to(dtype), target, *[t.to(dtype) for t in extra]])
    elif entry.kind == "multilabel":
        logits = torch.randn(n, C, generator=g, dtype=torch.float64) * scale
        target = (torch.rand(n, C, generator=g) < 0.4).to(dtype)
        case = Case([logits.to(dtype), target], target_index=1)
    elif entry.kind == "embedding":
        emb = torch.randn(n, D, generator=g, dtype=torch.float64)
        labels = torch.arange(n) % max(n // 2, 1)  # every class twice: positives exist
        case = Case([emb.to(dtype), labels])
    elif entry.kind == "pair":
        a = torch.randn(n, D, generator=g, dtype=torch.float64)
        b = a + 0.3 * torch.randn(n, D, generator=g, dtype=torch.float64)
        case = Case([a.to(dtype), b.to(dtype)])
    elif entry.kind == "binary":
        scores = torch.rand(n, generator=g, dtype=torch.float64) * 0.98 + 0.01  # scores in (0, 1)
        target = (torch.arange(n) % 3 == 0).long()  # positives and negatives both present
        case = Case([scores.to(dtype), target])
    elif entry.kind == "distillation":
        student = torch.randn(n, C, generator=g, dtype=torch.float64) * scale
        teacher = torch.randn(n, C, generator=g, dtype=torch.float64) * scale
        case = Case([student.to(dtype), teacher.to(dtype), torch.arange(n) % C])
    elif entry.kind == "regression_embedding":
        feats = torch.randn(n, D, generator=g, dtype=torch.float64)
        y = (torch.arange(n) % max(n // 2, 1)).to(torch.float64) * 1.5  # every target twice: positives exist
        flip = torch.where(torch.arange(n) % 2 == 0, 0.25, -0.25).to(torch.float64)
        preds = torch.full((n,), 3.0, dtype=torch.float64) + flip  # collapsed predictions: negatives exist
        case = Case([feats.to(dtype), y.to(dtype), preds.to(dtype)], target_index=1)
    elif entry.kind == "ranking":
        return _ranking_case(entry, n, dtype, g, scale)
    else:
        raise AssertionError(f"{entry.id}: no input builder for kind {entry.kind!r}")
    if "num_samples" in entry.required or "data_len" in entry.required:
        case.call["index"] = torch.arange(n)
    return case.clone(dtype)


def _companion(name: str, logits: Tensor, target: Tensor, g: torch.Generator) -> Tensor:
    """A classification loss's inputs after (logits, target), by name: the logits of another view of
    the batch (``adv_logits``, ``mixed_logits``: the logits moved a little) [n, C], or mixup's soft
    targets (``mixed_target``: λ on the row's class and 1 − λ on the next one, λ in (0.2, 0.8)) [n, C]."""
    n, c = logits.shape
    if name.endswith("_logits"):
        return logits + 0.5 * torch.randn(n, c, generator=g, dtype=torch.float64)
    if name == "mixed_target":
        lam = 0.2 + 0.6 * torch.rand(n, 1, generator=g, dtype=torch.float64)
        eye = torch.eye(c, dtype=torch.float64)
        return lam * eye[target] + (1 - lam) * eye[(target + 1) % c]
    raise AssertionError(f"no input builder for the classification input {name!r}")


def _ranking_case(entry: Entry, n: int, dtype: torch.dtype, g: torch.Generator, scale: float) -> Case:
    """Queries [n, P + M] (P relevant columns first), and the call keywords the loss's function
    names: pair ids [n, P] (distinct, < data_len = 2N), query ids, relevance grades [n, P] for
    a ``rating`` input, each query's number of relevant items and ideal DCG."""
    spec = spec_of(entry.function)
    scores = torch.randn(n, P + M, generator=g, dtype=torch.float64) * scale / 2
    rating = torch.randint(1, 5, (n, P), generator=g)
    inputs = [scores.to(dtype)] + ([rating] if "rating" in spec.inputs else [])
    npi = torch.full((n,), P + 1)
    # ideal DCG of P + 1 relevant items: the batch's grades, sorted, and one more of grade 1
    gains = torch.cat([2.0 ** rating.double() - 1, torch.ones(n, 1, dtype=torch.float64)], 1).sort(1, descending=True).values
    idcg = (gains / torch.log2(torch.arange(2, P + 3, dtype=torch.float64))).sum(1)
    given = {"index": torch.arange(n * P).reshape(n, P), "query_index": torch.arange(n),
             "num_pos_items": npi, "ideal_dcg": idcg}
    return Case(inputs, {k: v for k, v in given.items() if k in spec.call}).clone(dtype)


def create(entry: Entry, **kwargs: Any) -> torch.nn.Module:
    torch.manual_seed(0)  # heads with learned class centres start from the same draw
    obj = la.create(entry.id, **{**constructor_kwargs(entry), **kwargs})
    assert isinstance(obj, torch.nn.Module)
    return obj


def accepts(entry: Entry, name: str) -> bool:
    return name in entry.parameters


def call(crit: Any, case: Case) -> Tensor:
    torch.manual_seed(1234)  # losses that draw (MoCHi's mixing, Partial FC's sampling) draw the same
    out = crit(*case.inputs, **case.call)
    assert isinstance(out, Tensor)
    return out


def leaves_of(crit: Any, case: Case) -> list[Tensor]:
    """The tensors :func:`value_and_grads` differentiates: the inputs, then the parameters."""
    return [t for t in case.inputs if t.requires_grad] + [p for p in getattr(crit, "parameters", lambda: [])() if p.requires_grad]


def value_and_grads(crit: Any, case: Case, reduce: bool = True) -> tuple[Tensor, list[Tensor | None]]:
    out = call(crit, case)
    total = out.sum() if reduce else out
    leaves = leaves_of(crit, case)
    grads = torch.autograd.grad(total, leaves, allow_unused=True) if total.requires_grad else [None] * len(leaves)
    return out.detach(), list(grads)
