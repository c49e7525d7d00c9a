"""Input handling shared by the metric modules (private: not exported)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._validation import as_count_vector, check_class_indices, check_logits, check_same_device

Tensor = torch.Tensor


def as_tensor(x: Any, name: str) -> Tensor:
    """A tensor view of ``x`` (numpy arrays and lists are converted, tensors are detached)."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, (np.ndarray, list, tuple)):
        return torch.as_tensor(np.asarray(x))
    raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")


def check_scores_target(preds: Any, target: Any, num_classes: int | None = None, name: str = "preds") -> tuple[Tensor, Tensor]:
    """Validate a classification pair: float scores [N, C] (logits or probabilities) and int64
    class indices [N] in [0, C)."""
    preds = check_logits(as_tensor(preds, name), name=name)
    # checked here rather than by check_class_target, whose messages call the scores "logits"
    target = check_class_indices(as_tensor(target, "target"), "target", "metrics take class indices [N]")
    if target.dim() != 1 or target.shape[0] != preds.shape[0]:
        raise ValueError(f"target must have shape [N] = [{preds.shape[0]}] to match {name} {tuple(preds.shape)}, got {tuple(target.shape)}")
    check_same_device(name, preds, "target", target)
    if target.numel():
        lo, hi = (int(v) for v in torch.aminmax(target))
        if lo < 0 or hi >= preds.shape[1]:
            bad = target[(target < 0) | (target >= preds.shape[1])][:5].tolist()
            raise ValueError(f"target values must be in [0, {preds.shape[1]}) for {name} with {preds.shape[1]} class columns; found {bad}")
    if num_classes is not None and preds.shape[1] != num_classes:
        raise ValueError(
            f"{name} have {preds.shape[1]} class columns but num_classes={num_classes}; they must match"
        )
    return preds, target.long()


#: What a metric may be told its scores are (``input=``): ``"auto"`` detects it.
INPUT_KINDS = ("auto", "logits", "probs")


def check_input_kind(input: Any) -> str:
    """``input`` as given, checked to be one of ``"auto"``, ``"logits"``, ``"probs"``."""
    if not isinstance(input, str) or input not in INPUT_KINDS:
        raise ValueError(f"input must be 'auto', 'logits' or 'probs', got {input!r}")
    return input


def _row_sum_tolerance(dtype: torch.dtype) -> float:
    # A softmax rounded to ``dtype`` sums to 1 within a few ulps (each value's rounding error is
    # relative to it, and the values sum to 1); 1e-3 also admits probabilities printed to 4 decimals.
    return max(1e-3, 8 * torch.finfo(dtype).eps)


def _probability_problem(x64: Tensor, dtype: torch.dtype, name: str) -> str | None:
    """Why the rows of ``x64`` [N, C] (N > 0) are not probability vectors, or None if they are."""
    lo, hi = float(x64.min()), float(x64.max())
    if lo < 0 or hi > 1:
        return f"{name} has values outside [0, 1] (min {lo:.4g}, max {hi:.4g})"
    err = (x64.sum(dim=1) - 1).abs()
    worst = int(err.argmax())
    if float(err[worst]) > _row_sum_tolerance(dtype):
        return f"the rows of {name} do not sum to 1 (row {worst} sums to {float(x64[worst].sum()):.6g})"
    return None


def infer_input(preds: Any) -> str:
    """``"probs"`` or ``"logits"``: what ``input="auto"`` assumes the scores ``preds`` [N, C] are.

    Probabilities when every value lies in [0, 1] and every row sums to 1 (within
    ``max(1e-3, 8 eps)`` of the dtype), logits otherwise (torchmetrics checks the range only;
    the row sums also tell a row of sigmoid outputs or small raw scores from a distribution).
    An empty batch gives ``"logits"`` (nothing to tell them apart; both give the same result).

    >>> import torch
    >>> infer_input(torch.tensor([[0.2, 0.8]])), infer_input(torch.tensor([[0.2, 0.7]])), infer_input(torch.tensor([[2., -1.]]))
    ('probs', 'logits', 'logits')
    """
    x = check_logits(as_tensor(preds, "preds"), name="preds")
    if x.shape[0] == 0:
        return "logits"
    return "logits" if _probability_problem(x.to(torch.float64), x.dtype, "preds") else "probs"


def to_probs(preds: Tensor, input: str = "auto", name: str = "preds") -> tuple[Tensor, str | None]:
    """Class probabilities [N, C] in float64 from scores that are logits or probabilities.

    ``input="logits"``: a softmax; ``"probs"``: the values as given, after checking that they
    are probability rows (``ValueError`` naming ``name`` otherwise); ``"auto"``: probabilities
    when :func:`infer_input` says so, else a softmax. Returns the probabilities and the kind
    assumed (``None`` for an empty batch under ``"auto"``: nothing was assumed).
    """
    x = preds.to(torch.float64)
    if input == "logits":
        return torch.softmax(x, dim=1), "logits"
    if x.shape[0] == 0:
        return x, (None if input == "auto" else input)
    problem = _probability_problem(x, preds.dtype, name)
    if input == "probs":
        if problem is not None:
            raise ValueError(f"input='probs' but {problem}; pass input='logits' (or 'auto') for raw scores")
        return x, "probs"
    return (torch.softmax(x, dim=1), "logits") if problem else (x, "probs")


class InputKind:
    """Mixin of the metrics that take scores: ``input=`` and the kind they assumed.

    ``input_kind`` is ``None`` before the first non-empty batch, then ``"logits"`` or
    ``"probs"``. Under ``input="auto"`` every batch must look the same as the first (a
    ``ValueError`` otherwise: mixed inputs are a bug, or a batch of logits that happen to be a
    distribution; pass ``input=`` explicitly); ``reset()`` forgets it.
    """

    input: str
    input_kind: str | None

    @staticmethod
    def _check_kwargs(kwargs: dict[str, Any]) -> None:
        """Call before ``Metric.__init__(**kwargs)``: name the replacement of ``from_logits``."""
        if "from_logits" in kwargs:
            raise TypeError(
                f"from_logits was replaced by input='auto' | 'logits' | 'probs' (got from_logits={kwargs['from_logits']!r})"
            )

    def _init_input(self, input: Any) -> None:
        self.input = check_input_kind(input)
        self.input_kind = None

    def _probs(self, preds: Tensor) -> Tensor:
        probs, kind = to_probs(preds, self.input)
        if kind is not None:
            if self.input == "auto" and self.input_kind is not None and kind != self.input_kind:
                raise ValueError(
                    f"input='auto': earlier batches of preds looked like {self.input_kind}, this one like {kind}; "
                    "pass input='logits' or input='probs' to say which they are"
                )
            self.input_kind = kind
        return probs


def check_positive_int(value: Any, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def as_counts(counts: Any, name: str = "train_class_counts") -> Tensor:
    """Non-negative finite per-class counts as a float64 CPU tensor [C] (zero is allowed)."""
    c = as_count_vector(counts, name, (list, tuple, np.ndarray))
    if not bool(torch.isfinite(c).all()) or bool((c < 0).any()):
        raise ValueError(f"{name} must be finite and >= 0 for every class")
    return c
