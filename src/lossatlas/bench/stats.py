"""The statistics of the benchmark report: a t-based confidence interval of a mean over seeds,
and ties with the best method by a paired t-test across seeds.

- :func:`summarize`: ``n``, mean, sample standard deviation (``ddof=1``) and the two-sided
  Student-t interval ``mean ± t_{1-α/2, n-1} · sd / √n`` (95 % by default). With one value
  there is no spread and no interval (``std`` and the bounds are NaN; the report says
  "single seed, no interval").
- :func:`paired_ties`: each method against the best one on the seeds both ran (a seed
  fixes the data split, the long-tail subset and the label noise, so the pairs share their
  data); a two-sided paired t-test (``scipy.stats.ttest_rel``) at level ``alpha``; a method
  whose p-value is at least ``alpha`` is a *tie* (not distinguishable from the best). No
  correction for testing several methods is made, and "tie" is not a proof of equality:
  with 3 seeds only large, consistent gaps are told apart.

scipy (the ``bench`` extra) computes the t quantiles and the test.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["Summary", "Comparison", "summarize", "paired_ties", "TEST_NAME"]

#: How the report names the test.
TEST_NAME = "two-sided paired t-test across seeds"


@dataclass(frozen=True)
class Summary:
    """``n`` finite values: their mean, sample std (NaN for n < 2) and t interval (NaN for n < 2)."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    level: float = 0.95

    @property
    def has_interval(self) -> bool:
        return self.n >= 2 and math.isfinite(self.ci_low)


@dataclass(frozen=True)
class Comparison:
    """One method against the best: ``status`` is ``"best"``, ``"tie"``, ``"below"``,
    ``"above"`` (higher on the shared seeds; only when the two ran different seeds) or
    ``"untested"`` (fewer than 2 shared seeds); ``p`` the test's p-value (NaN when untested),
    ``n_pairs`` the number of shared seeds, ``mean_diff`` the mean of (best − method)."""

    status: str
    p: float
    n_pairs: int
    mean_diff: float


def _finite(values: Iterable[float | None]) -> np.ndarray:
    return np.array([float(v) for v in values if v is not None and math.isfinite(float(v))], dtype=float)


def summarize(values: Iterable[float | None], level: float = 0.95) -> Summary:
    """Mean, sample std and the two-sided t interval at ``level`` of the finite ``values``
    (``None`` and NaN dropped)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    v = _finite(values)
    n = int(v.size)
    if n == 0:
        nan = float("nan")
        return Summary(0, nan, nan, nan, nan, level)
    mean = float(v.mean())
    if n == 1:
        nan = float("nan")
        return Summary(1, mean, nan, nan, nan, level)
    from scipy import stats

    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half, level)


def paired_ties(per_seed: Mapping[str, Mapping[int, float | None]], best: str, alpha: float = 0.05) -> dict[str, Comparison]:
    """Compare every method of ``per_seed`` (``{method: {seed: value}}``, higher is better)
    with ``best`` on their shared seeds by a two-sided paired t-test; ``p >= alpha`` is a tie.

    Identical values on every shared seed are a tie (p = 1); a constant non-zero difference
    is not (p = 0: the t statistic is infinite)."""
    if best not in per_seed:
        raise ValueError(f"best method {best!r} is not among the methods {sorted(per_seed)}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    from scipy import stats

    def clean(d: Mapping[int, float | None]) -> dict[int, float]:
        return {int(s): float(v) for s, v in d.items() if v is not None and math.isfinite(float(v))}

    ref = clean(per_seed[best])
    out: dict[str, Comparison] = {best: Comparison("best", float("nan"), len(ref), 0.0)}
    for method, values in per_seed.items():
        if method == best:
            continue
        mine = clean(values)
        seeds = sorted(set(ref) & set(mine))
        a = np.array([ref[s] for s in seeds])
        b = np.array([mine[s] for s in seeds])
        diff = float(np.mean(a - b)) if seeds else float("nan")
        if len(seeds) < 2:
            out[method] = Comparison("untested", float("nan"), len(seeds), diff)
            continue
        d = a - b
        if np.all(d == d[0]):  # no spread in the differences: scipy's t is 0/0 or ±inf
            p = 1.0 if d[0] == 0 else 0.0
        else:
            p = float(stats.ttest_rel(a, b).pvalue)
        status = "tie" if p >= alpha else ("below" if diff > 0 else "above")
        out[method] = Comparison(status, p, len(seeds), diff)
    return out
