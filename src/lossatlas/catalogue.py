"""Every row of the project's catalogue of methods, and where each one lives in the library.

A catalogue row (``"A4"``, ``"G9"``, …) is either **registered**, an id whose registry entry
names the row in its ``catalogue`` field (``la.info("ldam").catalogue == "A4"``), or it is
listed here, written by hand:

* :data:`NOTES`: rows that are not a registered id, with where they live (a module, a
  function, a class) or why they are not a loss: infrastructure (noise protocols, tiling,
  distributed gathering), metrics, a wrapper of another library, a "see row X" cross-reference;
* :data:`PENDING`: rows not implemented yet, with the issue that tracks them. A row leaves
  this table when its id is registered (tests/test_catalogue.py fails while it is in both).

``lossatlas list --catalogue`` prints :func:`rows`; ``tests/test_catalogue.py`` checks that
every row of the catalogue (``CATALOGUE.md``) is registered or listed here.

>>> from lossatlas.catalogue import rows
>>> [r.status for r in rows() if r.row == "A4"]
['registered']
>>> [r.status for r in rows() if r.row == "B10"]
['note']
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["NOTES", "PENDING", "ROW_CODE", "CatalogueRow", "rows", "row_key"]

#: A catalogue row's code: a section letter A–K and a number (``A4``, ``G16``).
ROW_CODE = re.compile(r"^[A-K][1-9][0-9]?$")

#: Rows that are not a registered id: where each lives, or why it is not a loss. Written by hand.
NOTES: dict[str, str] = {
    "A13": "SMOTE and variants: lossatlas.data.smote_resample, a wrapper of imbalanced-learn (not rewritten, "
           "as the catalogue asks); a data transform, not a loss",
    "A14": "ImbSAM, class-aware sharpness-aware minimisation: lossatlas.optim.ImbSAM, a wrapper around any "
           "torch.optim optimiser (SAM on the tail-class loss only); an optimiser, not a loss",
    "B10": "label-noise protocols (symmetric, pair-flip / asymmetric, instance-dependent): lossatlas.data.noise; "
           "they corrupt labels, they are not losses",
    "B11": "susceptibility to noisy labels: lossatlas.metrics.susceptibility (a metric, same as J8)",
    "C6": "alpha-loss: see B7 (registered as alpha_loss)",
    "E3": "class-difficulty weights (CDB-W): see A9 (registered as class_difficulty)",
    "G9": "memory-efficient large batches: tiled losses (lossatlas.distributed.tiled; tiled= of the pair losses) "
          "and GradCache (lossatlas.distributed.cache); the same losses, computed without the N x N matrix",
    "G10": "in-batch negatives across processes: lossatlas.distributed.gather (all-gather with gradients; "
           "distributed= of the pair losses)",
    "G11": "registered as the retrieval family's negatives ids: the corpus miners hard_negatives, "
           "positive_aware_negatives, ance, simans and random_negatives (over lossatlas.negatives.CorpusIndex: exact "
           "top-k in torch, or faiss with the faiss extra), GISTEmbed's selector gistembed, and NGAME's "
           "mini-batching ngame (a batch sampler over balanced clusters of the current embeddings)",
    "I4": "distributed samplers: every registered sampler takes num_replicas= / rank= "
          "(torch DistributedSampler semantics); lossatlas.samplers",
    "J1": "top-1 / top-k, balanced accuracy, macro-F1, Cohen's kappa, confusion matrix: lossatlas.metrics.evaluate "
          "(torchmetrics)",
    "J2": "many / medium / few-shot and worst-class accuracy: lossatlas.metrics.ShotAccuracy, "
          "lossatlas.metrics.per_class_accuracy",
    "J3": "ECE, MCE, classwise ECE, reliability diagram: lossatlas.metrics.calibration",
    "J4": "AUROC / AP, macro and per class: lossatlas.metrics.ranking (and torchmetrics in metrics.evaluate)",
    "J5": "average-k set-valued accuracy: lossatlas.metrics.AverageKAccuracy (lossatlas.metrics.setvalued)",
    "J6": "neural collapse NC1-NC4: lossatlas.metrics.NeuralCollapse",
    "J7": "Recall@k, MAP@R: lossatlas.metrics.retrieval; linear-probe accuracy: lossatlas.metrics.probe",
    "J8": "susceptibility: lossatlas.metrics.susceptibility (see B11)",
    # rows registered in part: the text says what of the row is still missing
    "F11": "SCoRe's facility-location and log-determinant objectives are registered (score_facility_location, "
           "score_logdet); its graph-cut objective is not: the official GC.py takes the log of a ratio of cosine sums, "
           "undefined (NaN) where a sum is not positive (issue 23)",
    "K1": "Hinton's KD, decoupled KD and dual-head KD are registered (kd, dkd, dual_head_kd); BD-KD (online KD with "
          "sample-wise forward / reverse KL weights guided by the teacher's and student's entropies, Amara et al. 2022) is "
          "not implemented: it has no official code and its weighting rule was not in the material available here "
          "(issue 23)",
}

#: Rows not implemented yet: {row: what is missing and where it is tracked}. Remove a row when
#: its id is registered or its note is written.
PENDING: dict[str, str] = {}


def row_key(row: str) -> tuple[str, int]:
    """Sort key of a row code: section letter, then the number (``A9`` before ``A10``)."""
    if not ROW_CODE.match(row):
        raise ValueError(f"row must be a catalogue row code such as 'A4' or 'G16', got {row!r}")
    return row[0], int(row[1:])


@dataclass(frozen=True)
class CatalogueRow:
    """One catalogue row: ``status`` is ``"registered"`` (``ids`` names them), ``"note"`` or
    ``"pending"`` (``text`` says where it lives or what is missing)."""

    row: str
    status: str
    ids: tuple[str, ...] = ()
    text: str = ""


def rows() -> list[CatalogueRow]:
    """Every row the library knows of, sorted by code: its registered ids, else its note or pending line.

    A row both registered and noted (a cross-reference row later registered) is reported as
    registered, with the note kept as its text.
    """
    from .registry import list_entries

    ids: dict[str, list[str]] = {}
    for entry in list_entries():
        ids.setdefault(entry.catalogue, []).append(entry.id)
    out = []
    for row in sorted(set(ids) | set(NOTES) | set(PENDING), key=row_key):
        if row in ids:
            out.append(CatalogueRow(row, "registered", tuple(sorted(ids[row])), NOTES.get(row, "")))
        elif row in NOTES:
            out.append(CatalogueRow(row, "note", (), NOTES[row]))
        else:
            out.append(CatalogueRow(row, "pending", (), PENDING[row]))
    return out
