"""Neural-collapse measures NC1-NC4 on penultimate features and classifier weights (catalogue J6).

Papyan, Han & Donoho (2020), "Prevalence of neural collapse during the terminal phase of
deep learning training" (PNAS; arXiv:2008.08186). With class means ``mu_c`` of the features
``h`` [N, D], the global mean ``mu_G = mean_c mu_c`` (the mean of class means, as in the
authors' notebook; it is robust to class imbalance) and ``M = [mu_c - mu_G]`` [C, D]:

- **NC1** (within-class variability collapse): ``tr(Sigma_W Sigma_B^+) / C`` with
  ``Sigma_W = 1/N sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T`` and
  ``Sigma_B = 1/C M^T M``; ``Sigma_B^+`` keeps its top ``min(C - 1, D)`` eigen-directions.
- **NC2** (convergence to a simplex ETF): equinorm ``std_c ||M_c|| / mean_c ||M_c||``
  and equiangularity ``mean_{c != c'} |cos(M_c, M_c') + 1/(C - 1)|``, for the centred
  means (``_features``) and the classifier rows ``W_c`` (``_weights``).
- **NC3** (self-duality): ``|| W / ||W||_F - M / ||M||_F ||_F^2``.
- **NC4** (nearest-class-centre behaviour): the fraction of samples whose classifier
  prediction differs from the nearest class mean (Euclidean) prediction.

All go to 0 under neural collapse. Classes with no sample are left out (``C`` counts the
classes present). Sums are kept in float64: per-class ``count`` [C], ``feat_sum`` [C, D]
and the second moment ``sq_sum`` [D, D] (summed across processes), so NC1-NC3 need no
second pass (``feature_dim`` D is needed up front to size them); NC4 needs the class means first, so features and predictions are stored
(concatenated across processes) when a prediction is available.

>>> import torch
>>> from lossatlas.metrics import NeuralCollapse
>>> w = torch.tensor([[1., 0], [-0.5, 0.866], [-0.5, -0.866]])   # a simplex ETF
>>> m = NeuralCollapse(num_classes=3, classifier_weight=w)
>>> m.update(torch.cat([w, w]), torch.tensor([0, 1, 2, 0, 1, 2]))
>>> {k: round(float(v), 3) for k, v in m.compute().items()}["nc3"]
0.0
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from .._validation import check_float
from ._common import Tensor, as_tensor, check_positive_int

__all__ = ["NeuralCollapse"]


def _equinorm(v: Tensor) -> Tensor:
    norms: Tensor = v.norm(dim=1)  # Tensor.norm's return is unannotated in torch
    return norms.std() / norms.mean()


def _equiangular(v: Tensor) -> Tensor:
    c = v.shape[0]
    u = torch.nn.functional.normalize(v, dim=1)
    g = u @ u.T + 1.0 / (c - 1)
    off = ~torch.eye(c, dtype=torch.bool, device=v.device)
    return g[off].abs().mean()


class NeuralCollapse(Metric):
    """NC1, NC2 (equinorm, equiangularity), NC3 and NC4 of Papyan et al. (2020).

    Args:
        num_classes: C.
        feature_dim: D; inferred from ``classifier_weight`` when that is given.
        classifier_weight: the last layer's weight [C, D] (enables the ``_weights`` NC2
            entries and NC3, and NC4 when ``update`` is given no logits).
        classifier_bias: its bias [C] (used only to predict for NC4).

    ``update(features, target, logits=None)``: penultimate features [N, D], int64 targets
    [N], and optionally the model's logits [N, C] (their argmax is the classifier
    prediction for NC4).

    ``compute()`` returns a dict of float64 scalars: ``nc1``, ``nc2_equinorm_features``,
    ``nc2_equiangular_features``, and when available ``nc2_equinorm_weights``,
    ``nc2_equiangular_weights``, ``nc3``, ``nc4``.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    count: Tensor
    feat_sum: Tensor
    sq_sum: Tensor
    # list states: a list of update() batches; after a distributed sync inside compute() torchmetrics
    # has concatenated them into one tensor (dim_zero_cat accepts both)
    features: list[Tensor]
    preds: list[Tensor]

    def __init__(
        self,
        num_classes: int,
        feature_dim: int | None = None,
        classifier_weight: Any = None,
        classifier_bias: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = check_positive_int(num_classes, "num_classes", low=2)
        self.weight: Tensor | None = None
        self.bias: Tensor | None = None
        if classifier_weight is not None:
            w = check_float(as_tensor(classifier_weight, "classifier_weight"), "classifier_weight")
            if w.dim() != 2 or w.shape[0] != self.num_classes:
                raise ValueError(f"classifier_weight must have shape [C={self.num_classes}, D], got {tuple(w.shape)}")
            self.weight = w.to(torch.float64)
        if classifier_bias is not None:
            b = check_float(as_tensor(classifier_bias, "classifier_bias"), "classifier_bias")
            if b.shape != (self.num_classes,):
                raise ValueError(f"classifier_bias must have shape [{self.num_classes}], got {tuple(b.shape)}")
            self.bias = b.to(torch.float64)
        if feature_dim is None:
            if self.weight is None:
                raise ValueError("pass feature_dim (D of the features) or classifier_weight [C, D]")
            feature_dim = int(self.weight.shape[1])
        self.dim = check_positive_int(feature_dim, "feature_dim")
        if self.weight is not None and self.weight.shape[1] != self.dim:
            raise ValueError(f"classifier_weight has D={self.weight.shape[1]} but feature_dim={self.dim}")
        C, D = self.num_classes, self.dim
        self.add_state("count", default=torch.zeros(C, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("feat_sum", default=torch.zeros(C, D, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sq_sum", default=torch.zeros(D, D, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("features", default=[], dist_reduce_fx="cat")
        self.add_state("preds", default=[], dist_reduce_fx="cat")

    def update(self, features: Tensor, target: Tensor, logits: Tensor | None = None) -> None:
        h = check_float(as_tensor(features, "features"), "features")
        y = as_tensor(target, "target")
        if h.dim() != 2:
            raise ValueError(f"features must have shape [N, D], got {tuple(h.shape)}")
        if y.dim() != 1 or y.shape[0] != h.shape[0] or y.is_floating_point():
            raise ValueError(f"target must be integer labels of shape [{h.shape[0]}], got {tuple(y.shape)} {y.dtype}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(f"target values must be in [0, {self.num_classes})")
        if h.numel() and not bool(torch.isfinite(h).all()):
            raise ValueError("features contains NaN or Inf")
        if h.shape[1] != self.dim:
            raise ValueError(f"features have dimension {h.shape[1]} but feature_dim is {self.dim}")
        dev = self.count.device
        h64, y = h.to(dev, torch.float64), y.to(dev).long()
        self.count += torch.bincount(y, minlength=self.num_classes).to(torch.float64)
        self.feat_sum.index_add_(0, y, h64)
        self.sq_sum += h64.T @ h64
        if logits is not None:
            z = as_tensor(logits, "logits")
            if z.shape != (h.shape[0], self.num_classes):
                raise ValueError(f"logits must have shape [{h.shape[0]}, {self.num_classes}], got {tuple(z.shape)}")
            pred = z.argmax(dim=1)
        elif self.weight is not None:
            z = h64 @ self.weight.to(dev).T
            pred = (z if self.bias is None else z + self.bias.to(dev)).argmax(dim=1)
        else:
            return
        self.features.append(h.to(dev))
        self.preds.append(pred.to(dev))

    def compute(self) -> dict[str, Tensor]:
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        present = self.count > 0
        c = int(present.sum())
        if c < 2:
            return {"nc1": nan, "nc2_equinorm_features": nan, "nc2_equiangular_features": nan}
        n = self.count.sum()
        counts = self.count[present]
        means = self.feat_sum[present] / counts[:, None]  # [c, D]
        centred = means - means.mean(dim=0)
        sigma_w = (self.sq_sum - (means * counts[:, None]).T @ means) / n
        sigma_b = centred.T @ centred / c
        evals, evecs = torch.linalg.eigh(sigma_b)
        rank = min(c - 1, sigma_b.shape[0])
        keep = evecs[:, -rank:]
        inv_b = keep @ torch.diag(1.0 / evals[-rank:]) @ keep.T
        out = {
            "nc1": torch.trace(sigma_w @ inv_b) / c,
            "nc2_equinorm_features": _equinorm(centred),
            "nc2_equiangular_features": _equiangular(centred),
        }
        if self.weight is not None:
            w = self.weight.to(centred.device)[present]
            out["nc2_equinorm_weights"] = _equinorm(w)
            out["nc2_equiangular_weights"] = _equiangular(w)
            out["nc3"] = ((w / w.norm() - centred / centred.norm()) ** 2).sum()
        if (isinstance(self.preds, Tensor) and self.preds.numel()) or (isinstance(self.preds, list) and self.preds):
            feats = dim_zero_cat(self.features).to(torch.float64)
            preds = dim_zero_cat(self.preds)
            all_means = torch.full((self.num_classes, self.dim), float("inf"), dtype=torch.float64, device=feats.device)
            all_means[present] = means.to(feats.device)
            dist = torch.cdist(feats, torch.where(present[:, None], all_means, 0.0))
            dist[:, ~present] = float("inf")
            ncc = dist.argmin(dim=1)
            out["nc4"] = (ncc != preds).to(torch.float64).mean()
        return out
