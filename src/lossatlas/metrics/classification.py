"""Per-class accuracy, the many / medium / few-shot split and worst-class accuracy (catalogue J2).

The shot split follows Liu et al. (2019), "Large-Scale Long-Tailed Recognition in an Open
World" (OLTR): a class is *many-shot* with more than 100 training samples, *few-shot* with
fewer than 20, and *medium-shot* otherwise (20-100 inclusive). A split's accuracy is the
mean of the per-class accuracies of its classes (as in OLTR's ``shot_acc``), which equals
the sample-level accuracy on a class-balanced test set. Classes that have no test sample
are left out of every mean; a split with no class left is NaN.

>>> import torch
>>> from lossatlas.metrics import ShotAccuracy
>>> m = ShotAccuracy(num_classes=3, train_class_counts=[500, 50, 5])
>>> m.update(torch.tensor([[3., 0, 0], [0, 3., 0], [3., 0, 0]]), torch.tensor([0, 1, 2]))
>>> {k: round(float(v), 2) for k, v in m.compute().items() if k.endswith("shot_accuracy")}
{'many_shot_accuracy': 1.0, 'medium_shot_accuracy': 1.0, 'few_shot_accuracy': 0.0}
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric

from ._common import Tensor, as_counts, as_tensor, check_positive_int, check_scores_target

__all__ = ["ShotAccuracy", "shot_groups", "per_class_accuracy"]

#: Default thresholds (OLTR, Liu et al. 2019): many > 100 training samples, few < 20.
MANY_THRESHOLD = 100
FEW_THRESHOLD = 20


def shot_groups(
    train_class_counts: Any, many_threshold: float = MANY_THRESHOLD, few_threshold: float = FEW_THRESHOLD
) -> dict[str, Tensor]:
    """Boolean class masks ``{"many", "medium", "few"}`` from the training counts.

    many: ``count > many_threshold``; few: ``count < few_threshold``; medium: the rest
    (``few_threshold <= count <= many_threshold``). Defaults 100 / 20 from OLTR (Liu et al. 2019).

    >>> {k: v.tolist() for k, v in shot_groups([101, 100, 20, 19]).items()}
    {'many': [True, False, False, False], 'medium': [False, True, True, False], 'few': [False, False, False, True]}
    """
    counts = as_counts(train_class_counts)
    if few_threshold > many_threshold:
        raise ValueError(
            f"few_threshold ({few_threshold}) must be <= many_threshold ({many_threshold})"
        )
    many = counts > many_threshold
    few = counts < few_threshold
    return {"many": many, "medium": ~(many | few), "few": few}


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values[mask]`` ignoring NaN; NaN when nothing is left."""
    v = values[mask]
    v = v[~torch.isnan(v)]
    return v.mean() if v.numel() else torch.tensor(float("nan"), dtype=values.dtype)


class ShotAccuracy(Metric):
    """Per-class accuracy, worst-class accuracy and the many / medium / few-shot split.

    States (summed across processes): ``correct[C]`` and ``total[C]``, the per-class
    counts of correct top-1 predictions and of test samples.

    ``compute()`` returns a dict: ``per_class_accuracy`` [C] (NaN for a class with no test
    sample), ``balanced_accuracy`` (mean over classes with test samples),
    ``worst_class_accuracy`` (min over the same classes), and, when ``train_class_counts``
    was given, ``many_shot_accuracy``, ``medium_shot_accuracy``, ``few_shot_accuracy``
    (means of per-class accuracies within each split; NaN for an empty split).

    Args:
        num_classes: C.
        train_class_counts: training samples per class [C] (zero allowed; it is few-shot).
        many_threshold: a class is many-shot with count > this (default 100, OLTR).
        few_threshold: a class is few-shot with count < this (default 20, OLTR).

    ``update(preds, target)`` takes scores [N, C] (argmax is the prediction: logits or
    probabilities alike) or predicted labels [N], and int64 targets [N].
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    correct: Tensor
    total: Tensor

    def __init__(
        self,
        num_classes: int,
        train_class_counts: Any = None,
        many_threshold: float = MANY_THRESHOLD,
        few_threshold: float = FEW_THRESHOLD,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.groups: dict[str, Tensor] | None = None
        if train_class_counts is not None:
            self.groups = shot_groups(train_class_counts, many_threshold, few_threshold)
            if self.groups["many"].numel() != self.num_classes:
                raise ValueError(
                    f"train_class_counts has {self.groups['many'].numel()} entries but num_classes={num_classes}"
                )
        self.add_state("correct", default=torch.zeros(self.num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros(self.num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        preds = as_tensor(preds, "preds")
        if preds.dim() == 2:
            scores, target = check_scores_target(preds, target, self.num_classes)
            preds = scores.argmax(dim=1)
        else:
            target = as_tensor(target, "target")
            if preds.shape != target.shape or preds.dim() != 1:
                raise ValueError(
                    f"preds must be scores [N, C] or labels [N] matching target {tuple(target.shape)}, "
                    f"got {tuple(preds.shape)}"
                )
            target = target.long()
            if target.numel() and (int(target.min()) < 0 or int(target.max()) >= self.num_classes):
                raise ValueError(f"target values must be in [0, {self.num_classes})")
        target = target.to(self.total.device)
        hit = preds.to(target.device).long() == target
        self.total += torch.bincount(target, minlength=self.num_classes)
        self.correct += torch.bincount(target[hit], minlength=self.num_classes)

    def compute(self) -> dict[str, Tensor]:
        total = self.total.to(torch.float64)
        acc = torch.where(total > 0, self.correct.to(torch.float64) / total.clamp_min(1), float("nan"))
        present = total > 0
        out: dict[str, Tensor] = {
            "per_class_accuracy": acc,
            "balanced_accuracy": _masked_mean(acc, present),
            "worst_class_accuracy": acc[present].min() if bool(present.any()) else torch.tensor(float("nan")),
        }
        if self.groups is not None:
            for name, mask in self.groups.items():
                out[f"{name}_shot_accuracy"] = _masked_mean(acc, mask.to(acc.device))
        return out


def per_class_accuracy(preds: Any, target: Any, num_classes: int | None = None) -> list[float]:
    """Top-1 accuracy of each class, as a list of C floats (NaN for a class with no test sample).

    The prediction is the argmax of ``preds`` [N, C]: logits or probabilities alike.

    >>> import torch
    >>> per_class_accuracy(torch.tensor([[2., 0], [2., 0], [0, 2.]]), torch.tensor([0, 1, 1]), 2)
    [1.0, 0.5]
    """
    preds, target = check_scores_target(preds, target, num_classes)
    m = ShotAccuracy(num_classes=preds.shape[1])
    m.update(preds.cpu(), target.cpu())
    return [float(v) for v in m.compute()["per_class_accuracy"]]
