"""Set-valued classification: top-k (fixed size) and average-k (adaptive size) accuracy (catalogue J5).

Lorieul, Joly, Shasha et al. (2021), "Classification Under Ambiguity: When Is Average-K
Better Than Top-K?" (arXiv:2112.08851):

- **top-K** (fixed size): every sample gets the K most probable classes,
  ``S(x) = topK(p(x))``; accuracy ``P[y in S(x)]``.
- **average-K** (adaptive size): one global threshold ``lambda`` on the probabilities,
  ``S(x) = {c : p_c(x) >= lambda}``, with ``lambda`` chosen so that the average set size
  is K. Empirically ``lambda`` is the (N K)-th largest of the N x C probabilities (equal to
  the ``1 - K / C`` quantile used in the authors' code, up to interpolation), so the sets
  hold exactly N K labels in total when there are no ties. Ambiguous samples get bigger
  sets, easy ones smaller; average-K accuracy is >= top-K accuracy at equal average size
  whenever the model is calibrated.

``threshold`` may also be given (fitted on a validation set with :meth:`AverageKAccuracy.fit_threshold`
on that set), in which case the realised average set size is reported.

>>> import torch
>>> from lossatlas.metrics import AverageKAccuracy
>>> m = AverageKAccuracy(k=1, input="probs")
>>> probs = torch.tensor([[0.55, 0.45, 0.], [1., 0., 0.], [0.34, 0.33, 0.33]])
>>> m.update(probs, torch.tensor([1, 0, 2]))
>>> {k: round(float(v), 2) for k, v in m.compute().items()}
{'top_k_accuracy': 0.33, 'average_k_accuracy': 0.67, 'threshold': 0.45, 'average_set_size': 1.0}
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from ._common import InputKind, Tensor, check_positive_int, check_scores_target

__all__ = ["AverageKAccuracy"]


class AverageKAccuracy(InputKind, Metric):
    """Top-k and average-k set-valued accuracy (Lorieul et al. 2021).

    States (concatenated across processes): the class probabilities [N, C] and targets [N]
    (average-k needs the whole test set to place its threshold).

    Args:
        k: the (average) set size K.
        threshold: a fixed probability threshold; ``None`` (default) fits it on the data so
            that the average set size is K.
        input: what the scores given to ``update`` are: ``"auto"`` (default: probabilities
            when every value is in [0, 1] and every row sums to 1, logits otherwise; the
            metric's ``input_kind`` says which it assumed), ``"logits"`` (a softmax is
            applied) or ``"probs"`` (checked: a ``ValueError`` if they are not probability rows).

    ``compute()`` returns ``top_k_accuracy``, ``average_k_accuracy``, ``threshold`` and
    ``average_set_size``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    # list states: a list of update() batches; after a distributed sync inside compute() torchmetrics
    # has concatenated them into one tensor (dim_zero_cat accepts both)
    probs: list[Tensor]
    target: list[Tensor]

    def __init__(self, k: int = 2, threshold: float | None = None, input: str = "auto", **kwargs: Any) -> None:
        self._check_kwargs(kwargs)
        super().__init__(**kwargs)
        self.k = check_positive_int(k, "k")
        if threshold is not None and not (0.0 <= float(threshold) <= 1.0):
            raise ValueError(f"threshold must be a probability in [0, 1], got {threshold}")
        self.threshold = None if threshold is None else float(threshold)
        self._init_input(input)
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def reset(self) -> None:
        super().reset()
        self.input_kind = None

    def update(self, preds: Tensor, target: Tensor) -> None:
        preds, target = check_scores_target(preds, target)
        if self.k > preds.shape[1]:
            raise ValueError(f"k={self.k} is larger than the number of classes {preds.shape[1]}")
        self.probs.append(self._probs(preds))
        self.target.append(target)

    @staticmethod
    def fit_threshold(probs: Tensor, k: int) -> float:
        """The (N k)-th largest probability of ``probs`` [N, C]: sets ``p >= lambda`` average k labels."""
        flat = probs.flatten()
        n = min(int(probs.shape[0]) * k, flat.numel())
        if n == 0:
            return float("nan")
        return float(torch.topk(flat, n).values[-1])

    def compute(self) -> dict[str, Tensor]:
        probs, target = dim_zero_cat(self.probs), dim_zero_cat(self.target)
        if probs.numel() == 0:
            nan = torch.tensor(float("nan"), dtype=torch.float64)
            return {"top_k_accuracy": nan, "average_k_accuracy": nan, "threshold": nan, "average_set_size": nan}
        probs = probs.to(torch.float64)
        true_p = probs.gather(1, target[:, None]).squeeze(1)
        # fixed size: y is in the top-k when fewer than k classes score strictly higher
        # (a tie with the k-th class counts as a hit)
        top_k = ((probs > true_p[:, None]).sum(dim=1) < self.k).to(torch.float64).mean()
        lam = self.fit_threshold(probs, self.k) if self.threshold is None else self.threshold
        in_set = probs >= lam
        return {
            "top_k_accuracy": top_k,
            "average_k_accuracy": (true_p >= lam).to(torch.float64).mean(),
            "threshold": torch.tensor(lam, dtype=torch.float64),
            "average_set_size": in_set.sum(dim=1).to(torch.float64).mean(),
        }
