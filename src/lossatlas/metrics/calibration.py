"""Calibration: binned ECE / MCE, the reliability diagram, and classwise ECE (catalogue J3).

Binning convention (shared with ``torchmetrics.classification.MulticlassCalibrationError``):
``n_bins`` equal-width bins on [0, 1], 15 by default (torchmetrics' default; Guo et al. 2017
also use 15). Bin ``b`` holds confidences in ``[b/n, (b+1)/n)``; a confidence of exactly 1.0
goes to the last bin (torchmetrics gives it a 17th, separate bin - the only difference,
and it only matters for saturated predictions).

- ECE (Naeini et al. 2015; Guo et al. 2017, "On Calibration of Modern Neural Networks"):
  ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|`` on the top-1 confidence.
- MCE: ``max_b |acc(B_b) - conf(B_b)|`` over non-empty bins.
- Classwise ECE (Kull et al. 2019, "Beyond temperature scaling: Obtaining well-calibrated
  multiclass probabilities with Dirichlet calibration"):
  ``1/C sum_c sum_b |B_cb|/N * |mean_{i in B_cb} 1[y_i = c] - mean_{i in B_cb} p_ic|``,
  the bins ``B_cb`` taken on the probability of class ``c`` of every sample.

The states are per-bin sums, so batch accumulation is exact and sync across processes is a sum.

Scores may be logits or probabilities: ``input="auto"`` (the default) takes them as
probabilities when every value is in [0, 1] and every row sums to 1, as logits (softmax)
otherwise, and the metric's ``input_kind`` says which it assumed; ``input="logits"`` or
``"probs"`` says it explicitly (``"probs"`` on values that are not probability rows is a
``ValueError``). The ECE of probabilities equals the ECE of the logits that produced them.

>>> import torch
>>> from lossatlas.metrics import reliability_diagram
>>> d = reliability_diagram(torch.tensor([[4., 0.], [0., 4.]]), torch.tensor([0, 0]), n_bins=10)
>>> sum(d["count"]), d["bin_lower"][9], round(d["accuracy"][9], 2), d["input"]
(2, 0.9, 0.5, 'logits')
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric

from ._common import InputKind, Tensor, check_positive_int, check_scores_target, infer_input

__all__ = ["BinnedCalibration", "ClasswiseECE", "reliability_diagram", "infer_input"]

#: torchmetrics' default number of bins (and Guo et al. 2017's).
DEFAULT_BINS = 15


def _bin_index(values: Tensor, n_bins: int) -> Tensor:
    """Equal-width bin of each value in [0, 1]: [b/n, (b+1)/n), with 1.0 in the last bin."""
    edges = torch.linspace(0, 1, n_bins + 1, dtype=values.dtype, device=values.device)
    return (torch.bucketize(values, edges, right=True) - 1).clamp(0, n_bins - 1)


class BinnedCalibration(InputKind, Metric):
    """Top-1 confidence binned into ``n_bins`` equal-width bins: ECE, MCE and reliability data.

    States (summed across processes): per-bin ``count``, ``conf_sum`` (sum of top-1
    probabilities) and ``acc_sum`` (number of correct top-1 predictions), float64.

    ``update(preds, target)``: scores [N, C], logits or probabilities (``input``:
    ``"auto"`` by default, see the module doc; ``input_kind`` is what was assumed), and int64
    targets [N].

    ``compute()`` returns ``ece``, ``mce`` and the diagram: ``bin_lower``, ``bin_upper``,
    ``confidence`` and ``accuracy`` (per-bin means, NaN for an empty bin) and ``count``.
    Default ``n_bins=15`` is torchmetrics' (and Guo et al. 2017's).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    count: Tensor
    conf_sum: Tensor
    acc_sum: Tensor

    def __init__(self, n_bins: int = DEFAULT_BINS, input: str = "auto", **kwargs: Any) -> None:
        self._check_kwargs(kwargs)
        super().__init__(**kwargs)
        self.n_bins = check_positive_int(n_bins, "n_bins")
        self._init_input(input)
        for name in ("count", "conf_sum", "acc_sum"):
            self.add_state(name, default=torch.zeros(self.n_bins, dtype=torch.float64), dist_reduce_fx="sum")

    def reset(self) -> None:
        super().reset()
        self.input_kind = None

    def update(self, preds: Tensor, target: Tensor) -> None:
        preds, target = check_scores_target(preds, target)
        probs = self._probs(preds).to(self.count.device)
        conf, pred = probs.max(dim=1)
        hit = (pred == target.to(pred.device)).to(torch.float64)
        idx = _bin_index(conf, self.n_bins)
        self.count += torch.bincount(idx, minlength=self.n_bins).to(torch.float64)
        self.conf_sum += torch.bincount(idx, weights=conf, minlength=self.n_bins)
        self.acc_sum += torch.bincount(idx, weights=hit, minlength=self.n_bins)

    def compute(self) -> dict[str, Tensor]:
        n = self.count.sum()
        nonempty = self.count > 0
        conf = torch.where(nonempty, self.conf_sum / self.count.clamp_min(1), float("nan"))
        acc = torch.where(nonempty, self.acc_sum / self.count.clamp_min(1), float("nan"))
        gap = (self.acc_sum - self.conf_sum).abs()
        edges = torch.linspace(0, 1, self.n_bins + 1, dtype=torch.float64)
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        return {
            "ece": gap.sum() / n if n > 0 else nan,
            "mce": (gap[nonempty] / self.count[nonempty]).max() if bool(nonempty.any()) else nan,
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "confidence": conf,
            "accuracy": acc,
            "count": self.count,
        }


class ClasswiseECE(InputKind, Metric):
    """Classwise ECE (Kull et al. 2019): the ECE of every class's probability, averaged over classes.

    For class c, the probabilities ``p_ic`` of all samples are binned into ``n_bins``
    equal-width bins; ``ece_c = sum_b |sum_{i in B_cb} (1[y_i = c] - p_ic)| / N``, and the
    metric is ``mean_c ece_c``. States (summed across processes): per class and bin
    ``count``, ``prob_sum`` and ``label_sum`` [C, n_bins], float64.

    ``update(preds, target)``: scores [N, C], logits or probabilities (``input``, as for
    :class:`BinnedCalibration`), and int64 targets [N]. ``compute()`` returns a dict with
    ``classwise_ece`` and ``per_class_ece`` [C].
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    count: Tensor
    prob_sum: Tensor
    label_sum: Tensor

    def __init__(self, num_classes: int, n_bins: int = DEFAULT_BINS, input: str = "auto", **kwargs: Any) -> None:
        self._check_kwargs(kwargs)
        super().__init__(**kwargs)
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.n_bins = check_positive_int(n_bins, "n_bins")
        self._init_input(input)
        shape = (self.num_classes, self.n_bins)
        for name in ("count", "prob_sum", "label_sum"):
            self.add_state(name, default=torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")

    def reset(self) -> None:
        super().reset()
        self.input_kind = None

    def update(self, preds: Tensor, target: Tensor) -> None:
        preds, target = check_scores_target(preds, target, self.num_classes)
        probs = self._probs(preds).to(self.count.device)
        C, B = self.num_classes, self.n_bins
        onehot = torch.nn.functional.one_hot(target.to(probs.device), C).to(torch.float64)
        # flat index (class, bin) so one bincount fills the whole [C, B] table
        flat = (_bin_index(probs, B) + torch.arange(C, device=probs.device) * B).flatten()
        self.count += torch.bincount(flat, minlength=C * B).view(C, B).to(torch.float64)
        self.prob_sum += torch.bincount(flat, weights=probs.flatten(), minlength=C * B).view(C, B)
        self.label_sum += torch.bincount(flat, weights=onehot.flatten(), minlength=C * B).view(C, B)

    def compute(self) -> dict[str, Tensor]:
        n = self.count[0].sum()
        if n == 0:
            nan = torch.tensor(float("nan"), dtype=torch.float64)
            return {"classwise_ece": nan, "per_class_ece": torch.full((self.num_classes,), float("nan"), dtype=torch.float64)}
        per_class = (self.label_sum - self.prob_sum).abs().sum(dim=1) / n
        return {"classwise_ece": per_class.mean(), "per_class_ece": per_class}


def reliability_diagram(preds: Any, target: Any, n_bins: int = DEFAULT_BINS, input: str = "auto") -> dict[str, Any]:
    """Reliability-diagram data for the top-1 confidence, as plain lists.

    Returns ``bin_lower``, ``bin_upper`` (the equal-width bin edges), ``confidence`` and
    ``accuracy`` (per-bin means; NaN for an empty bin), ``count`` (ints), the scalar ``ece``
    and ``mce``, and ``input``: ``"logits"`` or ``"probs"``, what ``preds`` [N, C] were taken
    to be (``input="auto"`` detects it, see the module doc; ``None`` for an empty ``preds``).
    """
    m = BinnedCalibration(n_bins=n_bins, input=input)
    preds, target = check_scores_target(preds, target)
    m.update(preds.cpu(), target.cpu())
    r = m.compute()
    out: dict[str, Any] = {k: [float(v) for v in r[k]] for k in ("bin_lower", "bin_upper", "confidence", "accuracy")}
    out["count"] = [int(v) for v in r["count"]]
    out["ece"] = float(r["ece"])
    out["mce"] = float(r["mce"])
    out["input"] = m.input_kind
    return out
