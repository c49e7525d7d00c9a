"""Use lossatlas from training frameworks.

Each submodule is imported explicitly, and none imports its framework: ``import lossatlas``
(and ``import lossatlas.integrations``) stays free of ``transformers``, ``lightning`` and ``sentence_transformers``.

- :mod:`lossatlas.integrations.huggingface`: :func:`~lossatlas.integrations.huggingface.compute_loss_func`
  turns a lossatlas classification loss into ``transformers.Trainer(compute_loss_func=...)``,
  gradient accumulation included (``pip install 'lossatlas[hf]'``).
- :mod:`lossatlas.integrations.lightning`: :func:`~lossatlas.integrations.lightning.loggable`
  turns a metric result (``lossatlas.metrics``: dicts with vector entries) into the scalars
  ``LightningModule.log_dict`` accepts (``pip install 'lossatlas[lightning]'``).
- :mod:`lossatlas.integrations.sentence_transformers`:
  :class:`~lossatlas.integrations.sentence_transformers.SentenceTransformerLoss` makes a
  lossatlas pair or embedding loss a sentence-transformers loss (``infonce`` with
  ``temperature=1/scale, symmetric=False`` is ``MultipleNegativesRankingLoss``; with
  ``mini_batch_size`` its cached variant), and
  :func:`~lossatlas.integrations.sentence_transformers.retrieval_evaluator` logs lossatlas
  retrieval metrics during training (``pip install 'lossatlas[st]'``).
"""

from __future__ import annotations

__all__: list[str] = []
