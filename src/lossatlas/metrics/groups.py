"""Per-group and worst-group accuracy (catalogue row E4's metric).

Worst-group accuracy is the evaluation of group DRO (Sagawa et al., 2020) and of the data
balancing baselines (Idrissi et al., 2022): the test accuracy of the group (e.g. the
(class, spurious attribute) pair) on which the model is worst. Groups with no test sample are
left out; with none left the result is NaN.

>>> import torch
>>> from lossatlas.metrics import GroupAccuracy
>>> m = GroupAccuracy(num_groups=2)
>>> m.update(torch.tensor([[2., 0], [0, 2.], [2., 0]]), torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]))
>>> {k: round(float(v), 2) for k, v in m.compute().items() if k != "per_group_accuracy"}
{'worst_group_accuracy': 0.0, 'mean_group_accuracy': 0.5, 'average_accuracy': 0.67}
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric

from .._validation import check_class_indices
from ._common import Tensor, as_tensor, check_positive_int, check_scores_target

__all__ = ["GroupAccuracy", "worst_group_accuracy"]


class GroupAccuracy(Metric):
    """Top-1 accuracy per group, its minimum (worst-group accuracy) and its mean.

    States (summed across processes): ``correct[G]`` and ``total[G]``. ``update(preds, target,
    group)`` takes scores [N, C] (argmax is the prediction) or predicted labels [N], int64
    targets [N] and int64 group ids [N] in ``[0, num_groups)``. ``compute()`` returns
    ``per_group_accuracy`` [G] (NaN for a group with no test sample), ``worst_group_accuracy``
    (min over groups with samples), ``mean_group_accuracy`` (their unweighted mean) and
    ``average_accuracy`` (over all samples, as Sagawa et al.'s "average accuracy"; Idrissi et al.
    report it too).

    Args:
        num_groups: G.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    correct: Tensor
    total: Tensor

    def __init__(self, num_groups: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_groups = check_positive_int(num_groups, "num_groups")
        self.add_state("correct", default=torch.zeros(self.num_groups, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros(self.num_groups, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor, group: Tensor) -> None:
        preds = as_tensor(preds, "preds")
        if preds.dim() == 2:
            scores, target = check_scores_target(preds, target)
            labels = scores.argmax(dim=1)
        else:
            target = check_class_indices(as_tensor(target, "target"), "target")
            if preds.dim() != 1 or preds.shape != target.shape:
                raise ValueError(f"preds must be scores [N, C] or labels [N] matching target {tuple(target.shape)}, "
                                 f"got {tuple(preds.shape)}")
            labels = preds
        g = check_class_indices(as_tensor(group, "group"), "group", "group ids are integers")
        if g.shape != target.shape:
            raise ValueError(f"group must have shape [N] = {list(target.shape)} (one group id per sample), got {list(g.shape)}")
        if g.numel() and (int(g.min()) < 0 or int(g.max()) >= self.num_groups):
            raise ValueError(f"group values must be in [0, {self.num_groups}) (num_groups={self.num_groups}); "
                             f"found values in [{int(g.min())}, {int(g.max())}]")
        g = g.to(self.total.device)
        hit = labels.to(g.device).long() == target.to(g.device)
        self.total += torch.bincount(g, minlength=self.num_groups)
        self.correct += torch.bincount(g[hit], minlength=self.num_groups)

    def compute(self) -> dict[str, Tensor]:
        total = self.total.to(torch.float64)
        acc = torch.where(total > 0, self.correct.to(torch.float64) / total.clamp_min(1), float("nan"))
        present = total > 0
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        any_present = bool(present.any())
        return {
            "per_group_accuracy": acc,
            "worst_group_accuracy": acc[present].min() if any_present else nan,
            "mean_group_accuracy": acc[present].mean() if any_present else nan,
            "average_accuracy": self.correct.sum().to(torch.float64) / total.sum() if any_present else nan,
        }


def worst_group_accuracy(preds: Any, target: Any, group: Any, num_groups: int | None = None) -> float:
    """The lowest per-group top-1 accuracy, over the groups present (NaN if none).

    >>> import torch
    >>> worst_group_accuracy(torch.tensor([[2., 0], [0, 2.], [2., 0]]), torch.tensor([0, 1, 1]), torch.tensor([0, 1, 1]))
    0.5
    """
    g = as_tensor(group, "group")
    if num_groups is None:
        num_groups = int(g.max()) + 1 if g.numel() else 1
    m = GroupAccuracy(num_groups=num_groups)
    m.update(as_tensor(preds, "preds").cpu(), as_tensor(target, "target").cpu(), g.cpu())
    return float(m.compute()["worst_group_accuracy"])
