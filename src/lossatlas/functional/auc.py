"""AUC and ranking objectives (catalogue rows H1-H3, D5, G12): filled in by issue 19."""

from __future__ import annotations

__all__: list[str] = []
