"""Input handling shared by the metric modules (private: not exported)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._validation import as_count_vector, check_class_target, check_logits

Tensor = torch.Tensor


def as_tensor(x: Any, name: str) -> Tensor:
    """A tensor view of ``x`` (numpy arrays and lists are converted, tensors are detached)."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, (np.ndarray, list, tuple)):
        return torch.as_tensor(np.asarray(x))
    raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")


def check_scores_target(logits: Any, target: Any, num_classes: int | None = None) -> tuple[Tensor, Tensor]:
    """Validate a classification pair: float scores [N, C] and int64 class indices [N] in [0, C)."""
    logits = check_logits(as_tensor(logits, "logits"))
    target = check_class_target(as_tensor(target, "target"), logits)
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(
            f"logits have {logits.shape[1]} class columns but num_classes={num_classes}; they must match"
        )
    return logits, target.long()


def softmax64(logits: Tensor, from_logits: bool = True) -> Tensor:
    """Class probabilities in float64 (a softmax of ``logits``, or ``logits`` as given)."""
    x = logits.to(torch.float64)
    if not from_logits:
        if x.numel() and bool(((x < 0) | (x > 1)).any()):
            raise ValueError("probabilities must lie in [0, 1]; pass from_logits=True for raw scores")
        return x
    return torch.softmax(x, dim=1)


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
