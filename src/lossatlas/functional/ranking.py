"""Stochastic AP, partial-AUC and NDCG objectives with per-sample state (catalogue rows H3, D5): filled in by issue 19."""

from __future__ import annotations

__all__: list[str] = []
