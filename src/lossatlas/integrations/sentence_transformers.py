r"""lossatlas contrastive and metric-learning losses as sentence-transformers losses.

A sentence-transformers loss is an ``nn.Module`` built from the model, ``loss = L(model)``,
and called by ``SentenceTransformerTrainer`` (and ``model.fit``) as ``loss(sentence_features,
labels)``: one tokenised feature dict per text column of the dataset, and the dataset's
``label`` column (or ``None``). :class:`SentenceTransformerLoss` embeds each column with the
model (``model(features)["sentence_embedding"]``) and gives the embeddings to a lossatlas loss:

- a *pair* loss (``infonce``, ``siglip``, ``decoupled_contrastive``, ``debiased_contrastive``,
  ``hard_negative_contrastive``, ``barlow_twins``, ...): two columns, (anchor, positive);
  row i of one is the positive of row i of the other, the other rows are the negatives;
- an *embedding* loss (``supcon``, ``ntxent``, ``triplet_margin``, ``multi_similarity``,
  ``arcface``, ...): one column with integer labels (ST's (sentence, label) datasets), or
  several columns that are views of the same samples (anchor, positive, ...): the columns are
  stacked view-major, ``cat([e_1, ..., e_V])``, and sample i's label (``labels[i]``, or i when
  the dataset has no label column) is repeated for each view. For ``supcon`` / ``ntxent``
  this is SupContrast's ``[bsz, n_views, D]`` form; with two columns and no labels
  ``ntxent`` is SimCLR's two-view NT-Xent.

sentence-transformers' ``MultipleNegativesRankingLoss`` (MNRL) with cosine similarity and
scale s is ``infonce`` with ``temperature = 1/s`` and ``symmetric=False`` (its
``directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction"`` form is
``symmetric=True``):

.. math:: \ell_i = -\log \frac{\exp(s\,\cos(a_i, p_i))}{\sum_j \exp(s\,\cos(a_i, p_j))}

so ``SentenceTransformerLoss(model, "infonce", temperature=0.05, symmetric=False)`` gives
MNRL's value and gradients on the same batch (tested), and with ``mini_batch_size=`` those of
``CachedMultipleNegativesRankingLoss``: GradCache (Gao et al. 2021, "Scaling Deep Contrastive
Learning Batch Size under Memory Limited Setup"), which embeds in mini-batches without a
graph, caches the loss's gradient with respect to the embeddings and re-embeds each
mini-batch with a graph during ``backward`` (same RNG state, so dropout is replayed). MNRL's
extra hard-negative columns (triplets) have no lossatlas pair-loss counterpart: a pair loss
with three columns is an error, not a silent drop.

:func:`retrieval_evaluator` is a sentence-transformers evaluator that reports
:func:`lossatlas.metrics.retrieval_metrics` (Recall@k, R-precision, MAP@R) of the model's
embeddings; the Trainer logs its results as ``eval_<name>_recall@1`` etc.

Usage (``pip install 'lossatlas[st]'``; tested with sentence-transformers 6.3)::

    from sentence_transformers import SentenceTransformerTrainer
    from lossatlas.integrations.sentence_transformers import SentenceTransformerLoss, retrieval_evaluator

    loss = SentenceTransformerLoss(model, "infonce", temperature=0.05, symmetric=False)  # = MNRL
    trainer = SentenceTransformerTrainer(model=model, train_dataset=pairs, loss=loss,
                                         evaluator=retrieval_evaluator(texts, labels, name="dev"))

This module does not import ``sentence_transformers`` until :func:`retrieval_evaluator` is
called: the loss needs only a model that maps a feature dict to ``{"sentence_embedding": ...}``.

>>> import torch
>>> from lossatlas.integrations.sentence_transformers import SentenceTransformerLoss
>>> class Table(torch.nn.Module):  # a stand-in model: sentence k is row k of a table
...     def __init__(self): super().__init__(); self.w = torch.nn.Parameter(torch.randn(6, 4))
...     def forward(self, f): return {"sentence_embedding": self.w[f["input_ids"][:, 0]]}
>>> loss = SentenceTransformerLoss(Table(), "infonce", temperature=0.05, symmetric=False)
>>> loss([{"input_ids": torch.tensor([[0], [1], [2]])}, {"input_ids": torch.tensor([[3], [4], [5]])}], None).ndim
0
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..losses import Loss
from ..registry import Entry, create, info

__all__ = ["SentenceTransformerLoss", "retrieval_evaluator"]

_KINDS = ("pair", "embedding")


def _entry(loss: Loss) -> Entry:
    loss_id = getattr(type(loss), "registry_id", None)
    if not isinstance(loss_id, str):
        raise TypeError(f"loss must be a registered lossatlas loss, got {type(loss).__name__}")
    entry = info(loss_id)
    if entry.kind not in _KINDS:
        raise TypeError(
            f"loss {entry.id!r} is a {entry.kind} loss; a sentence-transformers loss needs a pair loss "
            f"(infonce, siglip, ...: two columns) or an embedding loss (supcon, triplet_margin, ...: embeddings and labels)"
        )
    return entry


def _batch_size(features: dict[str, Any]) -> int:
    for key in ("input_ids", "attention_mask"):
        value = features.get(key)
        if isinstance(value, Tensor) and value.dim() > 0:
            return int(value.shape[0])
    for value in features.values():
        if isinstance(value, Tensor) and value.dim() > 0:
            return int(value.shape[0])
    raise ValueError(f"sentence_features hold no batched tensor (keys: {list(features)}); cannot split them into mini-batches")


def _slice(features: dict[str, Any], begin: int, end: int, n: int) -> dict[str, Any]:
    """Rows ``begin:end`` of every batched tensor of a feature dict; other entries as they are."""
    return {k: v[begin:end] if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == n else v for k, v in features.items()}


class _RngState:
    """The CPU and CUDA RNG states at creation, restored (in a forked RNG) inside ``with``."""

    def __init__(self, features: dict[str, Any]) -> None:
        self.devices = sorted({v.device.index or 0 for v in features.values() if isinstance(v, Tensor) and v.is_cuda})
        self.cpu = torch.get_rng_state()
        self.cuda = [torch.cuda.get_rng_state(d) for d in self.devices]
        self._fork: Any = None

    def __enter__(self) -> None:
        self._fork = torch.random.fork_rng(devices=self.devices)
        self._fork.__enter__()
        torch.set_rng_state(self.cpu)
        for d, state in zip(self.devices, self.cuda):
            torch.cuda.set_rng_state(state, d)

    def __exit__(self, *exc: Any) -> None:
        self._fork.__exit__(*exc)
        self._fork = None


class SentenceTransformerLoss(nn.Module):
    """A lossatlas pair or embedding loss as a sentence-transformers loss.

    Args:
        model: the ``SentenceTransformer`` (any module mapping a feature dict to a dict with
            ``"sentence_embedding"`` [B, D] works).
        loss: a loss id (built with ``lossatlas.create(loss, **kwargs)``) or a lossatlas loss
            module of kind ``pair`` or ``embedding`` (then no ``kwargs``). Default ``"infonce"``.
        mini_batch_size: embed in mini-batches of this many rows with GradCache (the memory of
            ``CachedMultipleNegativesRankingLoss``: one mini-batch's activations at a time; the
            same loss and gradients). ``None`` (default): one forward per column, with a graph.
        **kwargs: the loss's hyper-parameters, with a loss id.

    ``forward(sentence_features, labels)`` returns the loss (a 0-dim tensor);
    :meth:`compute_loss_from_embeddings` takes the columns' embeddings directly. The loss
    module is a sub-module (``self.loss``), so its parameters (a learnable temperature,
    ArcFace's class centres) are trained with the model by ``SentenceTransformerTrainer``.

    Raises ``TypeError`` for a loss that is neither a pair nor an embedding loss,
    ``ValueError`` for a column count the loss cannot take (a pair loss needs exactly two
    columns; an embedding loss with one column needs ``labels``).
    """

    def __init__(self, model: nn.Module, loss: str | Loss = "infonce", *, mini_batch_size: int | None = None, **kwargs: Any) -> None:
        super().__init__()
        if isinstance(loss, str):
            module = create(loss, **kwargs)
        elif isinstance(loss, Loss):
            if kwargs:
                raise TypeError(f"hyper-parameters {sorted(kwargs)} are for a loss id; a loss module already has them")
            module = loss
        else:
            raise TypeError(f"loss must be a lossatlas loss id or loss module, got {type(loss).__name__}")
        if mini_batch_size is not None and (isinstance(mini_batch_size, bool) or not isinstance(mini_batch_size, int) or mini_batch_size < 1):
            raise ValueError(f"mini_batch_size must be a positive int or None, got {mini_batch_size!r}")
        self.entry = _entry(module)
        self.model = model
        self.loss = module
        self.mini_batch_size = mini_batch_size
        self._kwargs = dict(kwargs)

    def extra_repr(self) -> str:
        return f"loss={self.entry.id!r}, mini_batch_size={self.mini_batch_size}"

    # ------------------------------------------------------------------ the loss on embeddings
    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor], labels: Tensor | None) -> Tensor:
        """The loss on the columns' embeddings (one [B, D] tensor per column) and ``labels``."""
        embeddings = list(embeddings)
        if not embeddings:
            raise ValueError("sentence_features is empty: the dataset has no text column")
        if self.entry.kind == "pair":
            if len(embeddings) != 2:
                raise ValueError(
                    f"{self.entry.id!r} is a pair loss: it needs exactly two text columns (anchor, positive), got {len(embeddings)}"
                    + ("; hard-negative columns (MNRL's triplets) have no lossatlas pair-loss counterpart" if len(embeddings) > 2 else "")
                )
            out: Tensor = self.loss(embeddings[0], embeddings[1])
            return out
        if labels is not None and (not isinstance(labels, Tensor) or labels.is_floating_point() or labels.dtype == torch.bool):
            got = f"{labels.dtype} tensor" if isinstance(labels, Tensor) else type(labels).__name__
            raise TypeError(
                f"labels (the dataset's 'label' column) must be integer class labels for {self.entry.id!r}, got a {got}; "
                "a float score column belongs to a regression loss, not to an embedding loss"
            )
        if len(embeddings) == 1:
            if labels is None:
                raise ValueError(
                    f"{self.entry.id!r} with one text column needs integer class labels: add a 'label' column to the dataset "
                    "(or give two columns, views of the same samples)"
                )
            out = self.loss(embeddings[0], labels)
            return out
        n = embeddings[0].shape[0]
        for j, e in enumerate(embeddings):
            if e.shape[0] != n:
                raise ValueError(f"text column {j} has {e.shape[0]} rows, column 0 has {n}")
        y = torch.arange(n, device=embeddings[0].device) if labels is None else labels
        out = self.loss(torch.cat(embeddings), y.repeat(len(embeddings)) if isinstance(y, Tensor) else y)
        return out

    # ------------------------------------------------------------------ sentence-transformers API
    def forward(self, sentence_features: Iterable[dict[str, Any]], labels: Tensor | None = None) -> Tensor:
        features = list(sentence_features)
        if self.mini_batch_size is not None:
            return self._forward_cached(features, labels)
        embeddings = [self.model(f)["sentence_embedding"] for f in features]
        return self.compute_loss_from_embeddings(embeddings, labels)

    def _forward_cached(self, features: list[dict[str, Any]], labels: Tensor | None) -> Tensor:
        assert self.mini_batch_size is not None
        grad = torch.is_grad_enabled()
        sizes = [_batch_size(f) for f in features]
        ranges = [[(b, min(b + self.mini_batch_size, n)) for b in range(0, n, self.mini_batch_size)] for n in sizes]
        # 1. embeddings without a graph, remembering each mini-batch's RNG state
        reps: list[Tensor] = []
        states: list[list[_RngState]] = []
        for f, n, rs in zip(features, sizes, ranges):
            parts, column_states = [], []
            for b, e in rs:
                mb = _slice(f, b, e, n)
                if grad:
                    column_states.append(_RngState(mb))
                with torch.no_grad():
                    parts.append(self.model(mb)["sentence_embedding"])
            reps.append(torch.cat(parts).detach())
            states.append(column_states)
        if not grad:
            return self.compute_loss_from_embeddings(reps, labels)
        # 2. the loss on the cached embeddings, differentiated to them (and to the loss's own parameters)
        leaves = [r.requires_grad_() for r in reps]
        params = [p for p in self.loss.parameters() if p.requires_grad]
        loss = self.compute_loss_from_embeddings(leaves, labels)
        if loss.dim() != 0:
            raise ValueError(f"the loss must be a scalar for GradCache, got shape {tuple(loss.shape)}; use reduction='mean' or 'sum'")
        grads = torch.autograd.grad(loss, [*leaves, *params], allow_unused=True)
        cache, param_grads = grads[: len(leaves)], grads[len(leaves):]
        out = loss.detach().requires_grad_()

        # 3. during backward: re-embed each mini-batch with a graph and push grad_output · dL/de through it
        def backward_hook(grad_output: Tensor) -> None:
            with torch.enable_grad():
                for f, n, rs, column_states, g in zip(features, sizes, ranges, states, cache):
                    if g is None:  # a column the loss did not read
                        continue
                    for (b, e), state in zip(rs, column_states):
                        with state:
                            emb = self.model(_slice(f, b, e, n))["sentence_embedding"]
                        torch.autograd.backward(emb, (g[b:e] * grad_output).to(emb.dtype))
            for p, pg in zip(params, param_grads):
                if pg is not None:
                    step = pg * grad_output
                    p.grad = step if p.grad is None else p.grad + step

        out.register_hook(backward_hook)
        return out

    def get_config_dict(self) -> dict[str, Any]:
        """The configuration sentence-transformers writes into the model card."""
        return {"loss": self.entry.id, **self._kwargs, "mini_batch_size": self.mini_batch_size}

    @property
    def citation(self) -> str | None:
        """A BibTeX entry of the loss's paper (sentence-transformers' model card collects them)."""
        paper = self.entry.paper
        if paper is None:
            return None
        fields = [f"    title = {{{paper.title}}}", f"    author = {{{paper.authors}}}", f"    booktitle = {{{paper.venue}}}",
                  f"    year = {{{paper.year}}}"]
        if paper.arxiv:
            fields.append(f"    eprint = {{{paper.arxiv}}}")
        return "@inproceedings{" + self.entry.id + ",\n" + ",\n".join(fields) + "\n}"


# ---------------------------------------------------------------------- evaluator
@functools.cache
def _evaluator_class() -> type:
    base: Any
    try:  # sentence-transformers >= 6
        base = importlib.import_module("sentence_transformers.base.evaluation").BaseEvaluator
    except ImportError:  # pragma: no cover - 3.x - 5.x
        base = importlib.import_module("sentence_transformers.evaluation").SentenceEvaluator

    from ..metrics.retrieval import retrieval_metrics

    class RetrievalEvaluator(base):  # type: ignore[misc]
        """lossatlas retrieval metrics of a SentenceTransformer's embeddings (leave-one-out)."""

        def __init__(self, sentences: Sequence[str], labels: Any, ks: Sequence[int], metric: str, name: str,
                     batch_size: int) -> None:
            super().__init__()
            self.sentences = list(sentences)
            self.labels = torch.as_tensor(labels)
            self.ks = tuple(ks)
            self.metric = metric
            self.name = name
            self.batch_size = batch_size
            self.primary_metric = "map@r"
            self.greater_is_better = True

        def __call__(self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
            emb = torch.as_tensor(model.encode(self.sentences, batch_size=self.batch_size, convert_to_tensor=True)).detach().cpu().float()
            metrics: dict[str, float] = self.prefix_name_to_metrics(retrieval_metrics(emb, self.labels, ks=self.ks, metric=self.metric), self.name)
            if hasattr(model, "model_card_data"):
                self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
            return metrics

        def get_config_dict(self) -> dict[str, Any]:
            return {"ks": list(self.ks), "metric": self.metric}

    return RetrievalEvaluator


def retrieval_evaluator(
    sentences: Sequence[str],
    labels: Any,
    *,
    ks: Sequence[int] = (1, 2, 4, 8),
    metric: str = "cosine",
    name: str = "",
    batch_size: int = 32,
) -> Any:
    """A sentence-transformers evaluator reporting :func:`lossatlas.metrics.retrieval_metrics`.

    Embeds ``sentences`` with the model being trained and computes, leave-one-out over them
    with integer ``labels`` [N] (same label = relevant), Recall@k for k in ``ks``, R-precision
    and MAP@R (Musgrave et al. 2020). Returns ``{"<name>_recall@1": ..., "<name>_map@r": ...}``
    (no prefix when ``name`` is empty); its ``primary_metric`` is MAP@R. Pass it as
    ``SentenceTransformerTrainer(evaluator=...)``: the Trainer logs the results
    (``eval_<name>_map@r``), or call it, ``evaluator(model)``. Needs sentence-transformers
    and torchmetrics (``pip install 'lossatlas[st]'``).
    """
    sentences = list(sentences)
    if not sentences or not all(isinstance(s, str) for s in sentences):
        raise TypeError("sentences must be a non-empty sequence of str")
    y = torch.as_tensor(labels)
    if y.dim() != 1 or y.shape[0] != len(sentences) or y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"labels must be {len(sentences)} integer labels (one per sentence), got shape {tuple(y.shape)} {y.dtype}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    return _evaluator_class()(sentences, y, ks, metric, name, batch_size)
