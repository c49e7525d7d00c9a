"""Distances: the pairwise-comparison piece of the embedding losses and miners (issue 22).

A distance maps ``query [N, D]`` and ``ref [M, D]`` (``ref=None``: the query itself) to a
matrix ``[N, M]``. Similarities (:class:`CosineSimilarity`, :class:`DotProductSimilarity`)
are *inverted* (larger is closer); :class:`LpDistance` is not (smaller is closer). Losses use
:meth:`Distance.margin` so that one formula serves both orientations, as in
pytorch-metric-learning's distances (whose semantics these follow: rows are L2-normalised
first unless ``normalize_embeddings=False``, and ``power`` raises every entry).

Every embedding loss of :mod:`lossatlas.functional.metric` with a ``distance=`` call keyword
accepts one of these; ``None`` keeps the loss's paper default (Euclidean on unit rows for the
contrastive and triplet losses, cosine for multi-similarity, SupCon and NT-Xent).

>>> import torch
>>> from lossatlas.distances import CosineSimilarity, LpDistance
>>> x = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
>>> CosineSimilarity()(x).diagonal().tolist()
[1.0, 1.0]
>>> round(LpDistance(normalize_embeddings=False)(x)[0, 1].item(), 4)
3.6056
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validation import check_float, check_number, check_same_device

__all__ = ["Distance", "LpDistance", "CosineSimilarity", "DotProductSimilarity"]


class Distance:
    """Base class. ``distance(query [N, D], ref [M, D] | None) -> [N, M]``.

    Args:
        normalize_embeddings: L2-normalise (``p``-normalise for :class:`LpDistance`) the rows
            before comparing them (pytorch-metric-learning's default, True).
        p: the norm's order (normalisation, and the Lp distance).
        power: every entry is raised to this power (1: unchanged).
    """

    #: True for similarities (larger is closer)
    is_inverted: bool = False

    def __init__(self, normalize_embeddings: bool = True, p: float = 2.0, power: float = 1.0) -> None:
        if not isinstance(normalize_embeddings, bool):
            raise TypeError(f"normalize_embeddings must be a bool, got {type(normalize_embeddings).__name__}")
        self.normalize_embeddings = normalize_embeddings
        self.p = check_number(p, "p", low=0.0, low_open=True)
        self.power = check_number(power, "power")

    def __call__(self, query: Tensor, ref: Tensor | None = None) -> Tensor:
        check_float(query, "query")
        if query.dim() != 2:
            raise ValueError(f"query must have shape [N, D], got {tuple(query.shape)}")
        if ref is not None:
            check_float(ref, "ref")
            if ref.dim() != 2 or ref.shape[1] != query.shape[1]:
                raise ValueError(f"ref must have shape [M, D] with D = {query.shape[1]}, got {tuple(ref.shape)}")
            check_same_device("query", query, "ref", ref)
        q = self.maybe_normalize(query)
        r = q if ref is None else self.maybe_normalize(ref)
        mat = self.compute_mat(q, r, ref is None)
        return mat if self.power == 1 else mat**self.power

    def maybe_normalize(self, x: Tensor) -> Tensor:
        """The rows of ``x``, ``p``-normalised when ``normalize_embeddings``."""
        return F.normalize(x, p=self.p, dim=1) if self.normalize_embeddings else x

    def compute_mat(self, query: Tensor, ref: Tensor, same: bool) -> Tensor:
        """The matrix of the (already normalised) rows; ``same``: ``ref`` is ``query``."""
        raise NotImplementedError

    def margin(self, x: Tensor | float, y: Tensor | float) -> Tensor:
        """How far ``x`` is beyond ``y`` in the 'farther' direction: ``x − y`` for a distance,
        ``y − x`` for a similarity."""
        out = (y - x) if self.is_inverted else (x - y)
        assert isinstance(out, Tensor)
        return out

    def dissimilarity(self, mat: Tensor) -> Tensor:
        """``mat`` oriented so that smaller is closer (a similarity is negated)."""
        return -mat if self.is_inverted else mat

    def __repr__(self) -> str:
        return f"{type(self).__name__}(normalize_embeddings={self.normalize_embeddings}, p={self.p}, power={self.power})"


class LpDistance(Distance):
    """``‖q_i − r_j‖_p`` (on normalised rows by default: pytorch-metric-learning's default
    distance, ``LpDistance()``).

    On unit rows of one batch with ``p = 2`` (the metric losses' default) it is the losses'
    own distance, ``sqrt(2 − 2 u_i·u_j)`` with exact zeros for identical rows and a zero
    gradient there; otherwise ``torch.cdist`` (as pytorch-metric-learning), whose gradient at
    a zero distance is 0 too.

    >>> import torch
    >>> round(LpDistance()(torch.eye(2))[0, 1].item(), 6)  # sqrt(2)
    1.414214
    """

    is_inverted = False

    def compute_mat(self, query: Tensor, ref: Tensor, same: bool) -> Tensor:
        if same and self.p == 2 and self.normalize_embeddings:
            from .functional.metric import _unit_distances

            return _unit_distances(query)
        return torch.cdist(query, ref, p=self.p)


class DotProductSimilarity(Distance):
    """``q_i · r_j`` (on normalised rows unless ``normalize_embeddings=False``, as
    pytorch-metric-learning's ``DotProductSimilarity``, whose default normalises).

    >>> import torch
    >>> DotProductSimilarity(normalize_embeddings=False)(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0]])).item()
    11.0
    """

    is_inverted = True

    def compute_mat(self, query: Tensor, ref: Tensor, same: bool) -> Tensor:
        return query @ ref.T


class CosineSimilarity(DotProductSimilarity):
    """``cos(q_i, r_j)``: the dot product of the L2-normalised rows (always normalised).

    >>> import torch
    >>> round(CosineSimilarity()(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])).item(), 6)  # 1 / sqrt(2)
    0.707107
    """

    def __init__(self, power: float = 1.0) -> None:
        super().__init__(normalize_embeddings=True, p=2.0, power=power)
