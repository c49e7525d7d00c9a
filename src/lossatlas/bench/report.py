"""Reports from the results store: Markdown, one self-contained HTML file, ``leaderboard.csv``.

For each suite the report says what was run (the resolved recipes, data, model, epochs,
optimiser, seeds, hardware, versions, wall time per run), then ranks the methods: mean ±
standard deviation over seeds with ``n`` and a 95 % Student-t confidence interval, and the
methods that a paired t-test across seeds cannot tell from the best flagged as ties
(:mod:`lossatlas.bench.stats`); accuracy, many / medium / few-shot accuracy (classes with
> 100, 20–100, < 20 training samples: :mod:`lossatlas.metrics`), ECE and macro-F1. Figures:
per-epoch training curves (training loss, test balanced accuracy), per-class accuracy
against training class size, reliability diagrams, and test balanced accuracy against the
noise rate where a suite runs one method at several noise rates. A suite whose runs name
their ``group`` (the ``binary`` task: one group per data set and positive fraction) is shown
as method × task tables of each metric and one ranked table per task, ranks and ties counted
within a task.

One unit everywhere: every score in [0, 1] (accuracies, F1, ECE, AUROC, AP, recall@k,
MAP@R, ...) is shown and written in percent, in the tables and in ``leaderboard.csv``, whose
columns say so (``balanced_accuracy_pct_mean``); times are in seconds (``_s``).

The Markdown and the HTML are rendered from one list of blocks, so that the HTML shows
formatted text (no Markdown syntax). Figures are drawn with matplotlib's Agg backend as SVG:
the HTML embeds them as ``data:`` URIs (no external file), the Markdown links the SVG files
written next to it.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import __version__
from .stats import TEST_NAME, paired_ties, summarize
from .store import ResultsStore

__all__ = ["leaderboard", "write_report", "LEADERBOARD_METRICS", "is_percent", "ALPHA", "sweep_tables", "sweep_section"]

#: Metrics shown in the leaderboard (key in the task's output, column title).
LEADERBOARD_METRICS = (
    ("balanced_accuracy", "bal. acc"),
    ("accuracy", "acc"),
    ("many_shot_accuracy", "many"),
    ("medium_shot_accuracy", "medium"),
    ("few_shot_accuracy", "few"),
    ("ece", "ECE"),
    ("macro_f1", "macro-F1"),
)
_CSV_EXTRA = ("worst_class_accuracy", "train_time_s")
#: Level of the paired test that flags ties with the best method.
ALPHA = 0.05

#: the recipe's composable pieces, described in the tables (a column only where some recipe sets it)
_PIECES = ("loss", "weighting", "sampler", "miner", "regularizer", "stage2")
#: recipe fields that are not part of what is compared (the method's name and prose, its seed count)
_NOT_SETUP = ("name", "description", "seeds", "label")

_PERCENT_NAMES = {"macro_f1", "ece", "mce", "classwise_ece", "auroc", "ap", "average_precision", "r_precision", "noise_rate_realised"}


def is_percent(key: str) -> bool:
    """Whether a task output is a fraction in [0, 1] that the report shows in percent."""
    base = key[5:] if key.startswith("seen_") else key
    return "accuracy" in base or base in _PERCENT_NAMES or base.startswith(("recall@", "map@", "precision@"))


def _unit_key(key: str) -> str:
    """The name of a metric in leaderboard.csv: ``_pct`` appended to a percent metric."""
    return f"{key}_pct" if is_percent(key) else key


def _is_score(key: str) -> bool:
    """Whether a task output is a metric to show or rank by (not a timing, a count or the training loss)."""
    return not (key.endswith("_time_s") or key.startswith("n_") or key == "final_train_loss")


def _compact(spec: Any) -> str:
    """A recipe piece in one line: ``id(k=v, ...)`` for a dict with an ``id`` or ``name``."""
    if spec is None or spec == {}:
        return ""
    if not isinstance(spec, dict):
        return json.dumps(spec) if isinstance(spec, list) else str(spec)
    label = str(spec.get("id") or spec.get("name") or "")
    opts = ", ".join(f"{k}={_compact(v) if isinstance(v, dict) else v}" for k, v in spec.items() if k not in ("id", "name"))
    return f"{label}({opts})" if opts else label


def _describe(recipe: dict[str, Any]) -> dict[str, str]:
    return {k: _compact(recipe.get(k)) for k in _PIECES}


def _rank_metric(runs: list[dict[str, Any]]) -> str:
    """Balanced accuracy when the task reports it; else the task's ``primary_metric`` (a
    string in its output); else its first metric."""
    if any("balanced_accuracy" in (r["metrics"] or {}) for r in runs):
        return "balanced_accuracy"
    for r in runs:
        primary = (r.get("extra") or {}).get("primary_metric")
        if isinstance(primary, str):
            return primary
    for r in runs:
        scores: list[str] = sorted(k for k in (r["metrics"] or {}) if _is_score(k))
        if scores:
            return scores[0]
    return "balanced_accuracy"


# ----------------------------------------------------------------------------- aggregation


def leaderboard(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate finished runs into one entry per (suite, method), ranked within each suite
    (and within each ``group`` a task reports, e.g. the binary task's data set and positive
    fraction) by the rank metric's mean (best first).

    Each entry holds, per metric ``k`` (in the task's own unit, fractions as fractions):
    ``k_mean``, ``k_std``, ``k_ci_low``, ``k_ci_high`` (NaN where undefined), ``k_n``;
    ``seeds`` (n of the rank metric) and ``seed_list``; ``vs_best`` (``best``, ``tie``,
    ``below``, ``above`` or ``untested``) and ``vs_best_p``: the paired test against the
    rank-1 entry of its suite and group on the rank metric; ``wall_time_s_mean``."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["suite"], r["method"])].append(r)
    out = []
    for (suite, method), runs in groups.items():
        e: dict[str, Any] = {"suite": suite, "method": method}
        keys = [k for k, _ in LEADERBOARD_METRICS] + list(_CSV_EXTRA)
        keys += sorted({k for r in runs for k in (r["metrics"] or {})} - set(keys))
        for key in keys:
            s = summarize([(r["metrics"] or {}).get(key) for r in runs])
            e[f"{key}_mean"], e[f"{key}_std"], e[f"{key}_ci_low"], e[f"{key}_ci_high"], e[f"{key}_n"] = s.mean, s.std, s.ci_low, s.ci_high, s.n
        e["wall_time_s_mean"] = summarize([r.get("wall_time_s") for r in runs]).mean
        e.update(_describe(runs[-1]["recipe"]))
        extra = runs[-1].get("extra") or {}
        e["group"] = str(extra.get("group") or "")
        e["label"] = str(extra.get("label") or method)
        e["version"] = runs[-1]["version"]
        e["torch_version"] = runs[-1].get("torch_version") or ""
        e["device"] = runs[-1].get("device") or ""
        e["rank_by"] = _rank_metric(runs)
        e["seeds"] = e.get(f"{e['rank_by']}_n", len(runs))
        e["seed_list"] = " ".join(str(s) for s in sorted({int(r["seed"]) for r in runs}))
        e["_per_seed"] = {int(r["seed"]): (r["metrics"] or {}).get(e["rank_by"]) for r in runs}
        out.append(e)

    def order(e: dict[str, Any]) -> tuple[str, str, float]:
        v = e.get(f"{e['rank_by']}_mean", float("nan"))
        return e["suite"], e["group"], -(v if math.isfinite(v) else -1e300)

    out.sort(key=order)
    rank: dict[tuple[str, str], int] = defaultdict(int)
    for e in out:
        rank[(e["suite"], e["group"])] += 1
        e["rank"] = rank[(e["suite"], e["group"])]
    by_group: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in out:
        by_group[(e["suite"], e["group"])].append(e)
    for members in by_group.values():
        best = members[0]["method"]
        result = paired_ties({m["method"]: m["_per_seed"] for m in members}, best, alpha=ALPHA)
        for m in members:
            m["vs_best"], m["vs_best_p"] = result[m["method"]].status, result[m["method"]].p
    for e in out:
        del e["_per_seed"]
    return out


# ----------------------------------------------------------------------------- formatting


def _num(value: float, key: str) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value * 100:.1f}" if is_percent(key) else f"{value:.3f}"


def _mean_sd(e: dict[str, Any], key: str) -> str:
    """``mean ± sd`` in the metric's unit; the mean alone for a single seed, ``–`` for none."""
    mean, std = e.get(f"{key}_mean", float("nan")), e.get(f"{key}_std", float("nan"))
    if not math.isfinite(mean):
        return "–"
    return f"{_num(mean, key)} ± {_num(std, key)}" if math.isfinite(std) else _num(mean, key)


def _interval(e: dict[str, Any], key: str) -> str:
    n = e.get(f"{key}_n", 0)
    if n == 1:
        return "single seed, no interval"
    lo, hi = e.get(f"{key}_ci_low", float("nan")), e.get(f"{key}_ci_high", float("nan"))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "–"
    return f"[{_num(lo, key)}, {_num(hi, key)}]"


def _vs_best(e: dict[str, Any]) -> str:
    status, p = e.get("vs_best"), e.get("vs_best_p", float("nan"))
    if status == "best":
        return "best"
    if status == "untested":
        return "not tested"
    ptxt = f"p = {p:.2g}" if p >= 0.001 else "p < 0.001"
    return {"tie": f"**tie** ({ptxt})", "below": f"below ({ptxt})", "above": f"above ({ptxt})"}.get(str(status), "–")


def _title(key: str, title: str | None = None) -> str:
    return f"{title or key} (%)" if is_percent(key) else (title or key)


def _columns(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Leaderboard columns: the classification metrics, or (other tasks) their own metrics."""
    if any(e["rank_by"] == "balanced_accuracy" for e in entries):
        return list(LEADERBOARD_METRICS)
    keys = sorted({k[:-5] for e in entries for k in e if k.endswith("_mean") and _is_score(k[:-5]) and k != "wall_time_s_mean"})
    first = entries[0]["rank_by"] if entries else None
    keys = ([first] if first in keys else []) + [k for k in keys if k != first and any(math.isfinite(e.get(f"{k}_mean", float("nan"))) for e in entries)]
    return [(k, k) for k in keys[:9]]


# ----------------------------------------------------------------------------- the document


@dataclass
class _Doc:
    """Blocks rendered both as Markdown and as HTML: ``(kind, payload)``."""

    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def items(self, items: list[str]) -> None:
        self.blocks.append(("ul", items))

    def table(self, head: list[str], body: list[list[str]], caption: str = "", numeric: bool = True) -> None:
        """``numeric``: right-align the columns whose cells are numbers."""
        self.blocks.append(("table", (head, body, caption, numeric)))

    def figure(self, title: str, name: str, svg: bytes, caption: str) -> None:
        self.blocks.append(("figure", (title, name, svg, caption)))

    def code(self, summary: str, text: str, lang: str = "json") -> None:
        self.blocks.append(("code", (summary, text, lang)))

    def details(self, summary: str, inner: _Doc) -> None:
        self.blocks.append(("details", (summary, inner)))


_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*")


def _inline_html(text: str) -> str:
    """Markdown inline markup (``code`` spans, **bold**) as HTML, the rest escaped."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos : m.start()]))
        if m.group(1) is not None:
            out.append(f"<code>{html.escape(m.group(1))}</code>")
        else:
            out.append(f"<strong>{_inline_html(m.group(2))}</strong>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


_NUMERIC = re.compile(r"^\**\[?-?\d[\d.,]*(\s*±\s*\d[\d.]*)?(,\s*-?\d[\d.]*\])?\**$")


def _is_number(text: str) -> bool:
    """A number, ``mean ± sd`` or ``[low, high]`` (bold allowed)."""
    return bool(_NUMERIC.match(text.strip()))


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|") if text else " "


def _to_markdown(doc: _Doc) -> list[str]:
    md: list[str] = []
    for kind, payload in doc.blocks:
        if kind == "h":
            level, text = payload
            md += ["#" * level + " " + text, ""]
        elif kind == "p":
            md += [payload, ""]
        elif kind == "ul":
            md += [f"- {item}" for item in payload] + [""]
        elif kind == "table":
            head, body, caption, _ = payload
            if caption:
                md += [caption, ""]
            md += ["| " + " | ".join(_md_cell(h) for h in head) + " |", "|" + "|".join("---" for _ in head) + "|"]
            md += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in body]
            md.append("")
        elif kind == "figure":
            title, name, _, caption = payload
            md += [f"![{title}](figures/{name})", "", f"*{caption}*" if caption else "", ""]
        elif kind == "code":
            summary, text, lang = payload
            md += [f"**{summary}**", "", f"```{lang}", text, "```", ""]
        elif kind == "details":
            summary, inner = payload
            md += [f"**{summary}**", ""] + _to_markdown(inner)
    return md


def _to_html(doc: _Doc) -> list[str]:
    parts: list[str] = []
    for kind, payload in doc.blocks:
        if kind == "h":
            level, text = payload
            parts.append(f"<h{level}>{_inline_html(text)}</h{level}>")
        elif kind == "p":
            parts.append(f"<p>{_inline_html(payload)}</p>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in payload) + "</ul>")
        elif kind == "table":
            head, body, caption, numeric = payload
            cap = f"<p class='caption'>{_inline_html(caption)}</p>" if caption else ""
            # a column is numeric when every cell of it is a number (or a dash)
            num_col = [numeric and all(_is_number(row[i]) or row[i] in ("–", "") for row in body if i < len(row))
                       and any(_is_number(row[i]) for row in body if i < len(row)) for i in range(len(head))]
            num_cls = [" class='num'" if n else "" for n in num_col]
            rows = ["<tr>" + "".join(f"<th scope='col'{num_cls[i]}>{_inline_html(h)}</th>" for i, h in enumerate(head)) + "</tr>"]
            for row in body:
                cells = []
                for i, c in enumerate(row):
                    cells.append(f"<td{num_cls[i] if i < len(num_cls) else ''}>{_inline_html(c)}</td>")
                rows.append("<tr>" + "".join(cells) + "</tr>")
            table_cls = "" if numeric else " class='setup'"
            parts.append(f"{cap}<div class='table-wrap'><table{table_cls}><thead>{rows[0]}</thead><tbody>{''.join(rows[1:])}</tbody></table></div>")
        elif kind == "figure":
            title, _, svg, caption = payload
            uri = "data:image/svg+xml;base64," + base64.b64encode(svg).decode()
            cap = f"<figcaption>{_inline_html(caption)}</figcaption>" if caption else ""
            parts.append(f"<figure><img alt='{html.escape(title)}' src='{uri}'>{cap}</figure>")
        elif kind == "code":
            summary, text, _ = payload
            parts.append(f"<details><summary>{_inline_html(summary)}</summary><pre><code>{html.escape(text)}</code></pre></details>")
        elif kind == "details":
            summary, inner = payload
            parts.append(f"<details><summary>{_inline_html(summary)}</summary>" + "\n".join(_to_html(inner)) + "</details>")
    return parts


_CSS = """
:root{--fg:#1d232b;--muted:#5b6572;--line:#d9dee4;--zebra:#f6f8fa;--accent:#2458a6}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);
 line-height:1.55;margin:0 auto;padding:2rem 2.2rem 4rem;max-width:1360px;font-size:15px}
h1{font-size:1.9rem;margin:0 0 .6rem;letter-spacing:-.01em}
h2{font-size:1.45rem;margin:2.6rem 0 .8rem;padding-bottom:.3rem;border-bottom:2px solid var(--line)}
h3{font-size:1.12rem;margin:1.9rem 0 .6rem}
h4{font-size:1rem;margin:1.2rem 0 .4rem}
p,li{max-width:80ch}
code{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:.88em;
 background:#eef1f4;padding:.08em .35em;border-radius:4px}
pre{background:#f4f6f8;border:1px solid var(--line);border-radius:6px;padding:.8rem 1rem;overflow-x:auto;font-size:12.5px;line-height:1.45}
pre code{background:none;padding:0}
.table-wrap{overflow-x:auto;margin:.6rem 0 1.2rem}
table{border-collapse:collapse;font-size:13.5px;font-variant-numeric:tabular-nums}
p.caption{color:var(--muted);margin:.2rem 0 .3rem;font-size:13px;max-width:110ch}
th,td{border-bottom:1px solid var(--line);padding:.32rem .7rem;text-align:left;vertical-align:top}
th.num{text-align:right}
th{background:#eef2f7;font-weight:600;border-bottom:2px solid #c4ccd6;white-space:nowrap}
td.num{text-align:right;white-space:nowrap}
td{white-space:nowrap}
table.setup td{white-space:normal}
tbody tr:nth-child(even){background:var(--zebra)}
tbody tr:hover{background:#eaf1fb}
figure{margin:1rem 0 1.8rem}
figure img{max-width:100%;height:auto;display:block}
figcaption{color:var(--muted);font-size:13px;margin-top:.4rem;max-width:90ch}
details{margin:.4rem 0;border:1px solid var(--line);border-radius:6px;padding:.3rem .8rem}
details[open]{padding-bottom:.6rem}
summary{cursor:pointer;font-weight:500}
.meta{color:var(--muted)}
"""


# ----------------------------------------------------------------------------- figures


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> bytes:
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "lossatlas"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buf.getvalue()


def _colors(n: int) -> list[Any]:
    plt = _plt()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _legend_right(fig: Any, ax: Any) -> None:
    """The legend outside the axes, right of the data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8, frameon=False)


def _curve_title(key: str) -> str:
    if key == "train_loss":
        return "training loss"
    return key.replace("_", " ") + (" (%)" if is_percent(key[5:] if key.startswith("test_") else key) else "")


def _curves_figure(suite_rows: dict[str, list[dict[str, Any]]], order: list[str]) -> bytes | None:
    """One panel per recorded curve (the training loss first), one line per method: the mean
    over seeds, a band of ± sd with several seeds."""
    have = [m for m in order if any(r.get("curves") and r["curves"].get("epoch") for r in suite_rows[m])]
    if not have:
        return None
    keys: list[str] = []
    for m in have:
        for r in suite_rows[m]:
            keys += [k for k in (r.get("curves") or {}) if k != "epoch" and k not in keys]
    keys.sort(key=lambda k: (k != "train_loss", k))
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys) + 0.3, 3.6), squeeze=False)
    positive = {k: True for k in keys}
    for method, color in zip(have, _colors(len(have))):
        runs = [r["curves"] for r in suite_rows[method] if r.get("curves") and r["curves"].get("epoch")]
        length = min(len(c["epoch"]) for c in runs)
        epochs = np.array(runs[0]["epoch"][:length], dtype=float)
        for ax, key in zip(axes.flat, keys):
            scale = 100.0 if _curve_title(key).endswith("(%)") else 1.0
            ys = np.array([[np.nan if v is None else v for v in c.get(key, [])[:length]] for c in runs if len(c.get(key, [])) >= length], dtype=float) * scale
            if ys.size == 0:
                continue
            positive[key] &= bool(np.all(ys[np.isfinite(ys)] > 0))
            mean = np.nanmean(ys, axis=0)
            ax.plot(epochs, mean, color=color, lw=1.6, label=method)
            if ys.shape[0] > 1:
                sd = np.nanstd(ys, axis=0, ddof=1)
                ax.fill_between(epochs, mean - sd, mean + sd, color=color, alpha=0.15, lw=0)
    for ax, key in zip(axes.flat, keys):
        title = _curve_title(key)
        if key == "train_loss" and positive[key]:
            ax.set_yscale("log")
            title += " (log scale)"
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        ax.set_title(title.split(" (")[0], fontsize=10)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend_right(fig, list(axes.flat)[-1])
    fig.tight_layout()
    data = _svg(fig)
    plt.close(fig)
    return data


def _per_class_figure(suite_rows: dict[str, list[dict[str, Any]]], order: list[str]) -> bytes | None:
    have = [m for m in order if any(r.get("per_class_accuracy") and r.get("class_counts") for r in suite_rows[m])]
    counts = {c for m in have for r in suite_rows[m] if r.get("class_counts") for c in r["class_counts"]}
    if not have or len(counts) < 2:  # balanced training classes: no class size to plot against
        return None
    plt = _plt()
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(8.5, 4.0))
    for method, color in zip(have, _colors(len(have))):
        runs = [r for r in suite_rows[method] if r.get("per_class_accuracy") and r.get("class_counts")]
        acc = np.nanmean(np.array([[np.nan if a is None else a for a in r["per_class_accuracy"]] for r in runs], dtype=float), axis=0)
        cnt = np.mean(np.array([r["class_counts"] for r in runs], dtype=float), axis=0)
        idx = np.argsort(-cnt)
        ax.plot(np.maximum(cnt[idx], 1), acc[idx] * 100, marker="o", ms=3, lw=1.3, color=color, label=method)
    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    if lo < 20:
        ax.axvspan(lo, min(20, hi), color="0.5", alpha=0.07, lw=0)
    for edge in (20, 100):
        if lo < edge < hi:
            ax.axvline(edge, color="0.5", lw=0.7, ls=":")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training samples of the class (log scale; dotted: few < 20, many > 100)")
    ax.set_ylabel("test accuracy of the class (%)")
    ax.grid(alpha=0.3)
    _legend_right(fig, ax)
    fig.tight_layout()
    data = _svg(fig)
    plt.close(fig)
    return data


def _reliability_figure(suite_rows: dict[str, list[dict[str, Any]]], order: list[str]) -> bytes | None:
    methods = [m for m in order if any(r.get("reliability") and r["reliability"].get("count") for r in suite_rows[m])]
    if not methods:
        return None
    plt = _plt()
    cols = min(4, len(methods))
    rows_n = math.ceil(len(methods) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(2.7 * cols, 2.75 * rows_n), squeeze=False)
    for ax, method in zip(axes.flat, methods):
        runs = [r["reliability"] for r in suite_rows[method] if r.get("reliability") and r["reliability"].get("count")]
        lower = np.array(runs[0]["bin_lower"], dtype=float)
        upper = np.array(runs[0]["bin_upper"], dtype=float)
        count = np.zeros_like(lower)
        acc_sum = np.zeros_like(lower)
        conf_sum = np.zeros_like(lower)
        for rel in runs:  # pool the seeds' bins (same edges): count-weighted means
            c = np.array(rel["count"], dtype=float)
            count += c
            acc_sum += c * np.nan_to_num(np.array([np.nan if a is None else a for a in rel["accuracy"]], dtype=float))
            conf_sum += c * np.nan_to_num(np.array([np.nan if a is None else a for a in rel["confidence"]], dtype=float))
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = np.where(count > 0, acc_sum / count, 0.0)
            conf = np.where(count > 0, conf_sum / count, np.nan)
        ece = float(np.nansum(count * np.abs(np.nan_to_num(conf) - acc)) / max(count.sum(), 1.0))
        ax.bar(lower * 100, acc * 100, width=(upper - lower) * 100, align="edge", color="#8fb3de", edgecolor="#2458a6", linewidth=0.4)
        ax.plot([0, 100], [0, 100], color="0.3", ls="--", lw=0.8)
        ax.plot(conf[count > 0] * 100, acc[count > 0] * 100, ".", color="#c0392b", ms=4)
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 100)
        ax.set_title(f"{method} (ECE {ece * 100:.1f} %)", fontsize=8.5)
        ax.set_xlabel("confidence (%)", fontsize=8)
        ax.set_ylabel("accuracy (%)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    fig.tight_layout()
    data = _svg(fig)
    plt.close(fig)
    return data


def _noise_lines(suite_rows: dict[str, list[dict[str, Any]]], key: str) -> dict[str, dict[str, list[tuple[float, float, float, float]]]]:
    """``{noise type: {method description: [(rate, mean, ci_low, ci_high), ...]}}`` for lines
    of at least two noise rates (recipes equal but for the noise; a noise-free one is rate 0
    of every noise type)."""
    points: dict[str, list[tuple[str | None, float, list[dict[str, Any]]]]] = defaultdict(list)
    labels: dict[str, str] = {}
    for runs in suite_rows.values():
        recipe = runs[-1]["recipe"]
        data = dict(recipe.get("data") or {})
        noise = data.pop("noise", None)
        rest = {k: v for k, v in recipe.items() if k not in _NOT_SETUP and k != "data"}
        ident = json.dumps({**rest, "data": data}, sort_keys=True)
        labels[ident] = " + ".join(p for p in (_describe(recipe)[k] for k in _PIECES) if p) or "–"
        points[ident].append((noise.get("type") if isinstance(noise, dict) else None, float(noise.get("rate", 0.0)) if isinstance(noise, dict) else 0.0, runs))
    out: dict[str, dict[str, list[tuple[float, float, float, float]]]] = defaultdict(dict)
    for ident, pts in points.items():
        types = sorted({t for t, _, _ in pts if t is not None})
        for t in types:
            line = []
            for typ, rate, runs in pts:
                if typ in (t, None):
                    s = summarize([(r["metrics"] or {}).get(key) for r in runs])
                    if s.n:
                        line.append((rate, s.mean, s.ci_low, s.ci_high))
            if len({p[0] for p in line}) >= 2:
                label = labels[ident]
                while label in out[t]:
                    label += "'"
                out[t][label] = sorted(line)
    return {t: lines for t, lines in out.items() if lines}


def _noise_figure(lines: dict[str, dict[str, list[tuple[float, float, float, float]]]], key: str) -> bytes:
    plt = _plt()
    types = sorted(lines)
    fig, axes = plt.subplots(1, len(types), figsize=(5.2 * len(types) + 2.0, 3.8), squeeze=False)
    for ax, t in zip(axes.flat, types):
        n_lines = len(lines[t])
        for i, ((label, pts), color) in enumerate(zip(sorted(lines[t].items()), _colors(n_lines))):
            rates = np.array([p[0] for p in pts]) * 100
            span = float(np.ptp(rates)) or 1.0
            x = rates + (i - (n_lines - 1) / 2) * 0.012 * span  # dodged a little so that the bars do not cover each other
            y = np.array([p[1] for p in pts]) * 100
            lo = np.array([p[2] for p in pts]) * 100
            hi = np.array([p[3] for p in pts]) * 100
            ax.plot(x, y, marker="o", ms=4, lw=1.5, color=color, label=label)
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                ax.errorbar(x[ok], y[ok], yerr=[y[ok] - lo[ok], hi[ok] - y[ok]], fmt="none", ecolor=color, elinewidth=0.9, capsize=2.5)
        ax.set_title(f"{t.replace('_', ' ')} noise", fontsize=10)
        ax.set_xlabel("noise rate (%)")
        ax.set_ylabel(f"test {key.replace('_', ' ')} (%)")
        ax.grid(alpha=0.3)
    _legend_right(fig, list(axes.flat)[-1])
    fig.tight_layout()
    data = _svg(fig)
    plt.close(fig)
    return data


# ----------------------------------------------------------------------------- what was run


_DATA_NAMES = {"mnist1d": "MNIST-1D (generated offline)", "digits": "scikit-learn digits (bundled)", "cifar": "CIFAR (pickles)", "npz": "own .npz file"}


def _data_parts(data: dict[str, Any]) -> dict[str, str]:
    """Each field of a ``data`` spec described in words (the noise and long tail spelled out)."""
    parts: dict[str, str] = {"name": _DATA_NAMES.get(str(data.get("name")), str(data.get("name")))}
    for k, v in data.items():
        if k == "name":
            continue
        if k == "num_samples" and isinstance(v, int):
            parts[k] = f"{v:,} samples generated"
        elif k == "positive_fraction":
            parts[k] = "natural positive fraction" if v is None else f"training positives {100 * v:g} %"
        elif k == "longtail" and isinstance(v, dict):
            parts[k] = f"long tail: {v.get('profile', 'exp')} profile, imbalance ratio {v.get('imbalance_ratio')}"
        elif k == "noise" and isinstance(v, dict):
            parts[k] = f"label noise: {str(v.get('type')).replace('_', ' ')}, rate {100 * float(v.get('rate', 0)):g} %"
        else:
            parts[k] = f"{k} {_compact(v)}"
    return parts


def _describe_data(data: Any, only: Sequence[str] | None = None, noise_note: bool = True) -> str:
    """``data`` in words; ``only``: just these fields (a missing one said as such)."""
    if not isinstance(data, dict):
        return str(data)
    parts = _data_parts(data)
    if only is not None:
        out = [parts[k] if k in parts else ("no label noise" if k == "noise" else f"no {k}") for k in only]
        return "; ".join(out)
    text = list(parts.values())
    if noise_note and "noise" not in data and "positive_fraction" not in data:
        text.append("no label noise")
    return "; ".join(text)


_FIELD_TITLES = {"task": "task", "data": "data", "model": "model", "optimizer": "optimiser", "schedule": "schedule",
                 "epochs": "epochs", "batch_size": "batch size", "grad_clip": "gradient clipping"}


def _varying(recipes: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Recipe fields (beyond the pieces) equal in every recipe, and those that differ, in the
    order task, data, model, epochs, batch size, optimiser, schedule, then the task's own."""
    keys: list[str] = [k for k in _FIELD_TITLES if any(k in r for r in recipes)]
    for r in recipes:
        keys += [k for k in sorted(r) if k not in keys and k not in _NOT_SETUP and k not in _PIECES]
    same: list[str] = []
    differ: list[str] = []
    for k in keys:
        vals = {json.dumps(r.get(k), sort_keys=True) for r in recipes}
        (same if len(vals) == 1 else differ).append(k)
    return same, differ


def _data_split(recipes: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """The ``data`` fields common to all recipes, and the names of those that differ."""
    datas: list[dict[str, Any]] = [r["data"] if isinstance(r.get("data"), dict) else {} for r in recipes]
    keys: list[str] = []
    for d in datas:
        keys += [k for k in d if k not in keys]
    common = {k: datas[0][k] for k in keys if all(k in d and d[k] == datas[0][k] for d in datas)}
    return common, [k for k in keys if k not in common]


def _differ_columns(recipes: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """(title, field, data sub-fields or None) of the recipe fields that differ between methods."""
    _, differ = _varying(recipes)
    cols: list[tuple[str, str, list[str] | None]] = []
    for k in differ:
        if k == "data":
            _, sub = _data_split(recipes)
            cols.append(("data: " + ", ".join("noise" if s == "noise" else s.replace("_", " ") for s in sub), k, sub))
        else:
            cols.append((_FIELD_TITLES.get(k, k), k, None))
    return cols


def _differ_cell(recipe: dict[str, Any], key: str, sub: Any) -> str:
    if key == "data" and sub is not None:
        return _describe_data(recipe.get("data") or {}, only=sub)
    return _field_text(key, recipe.get(key))


def _field_text(key: str, value: Any) -> str:
    if key == "data":
        return _describe_data(value)
    return _compact(value) if value is not None else "none"


def _setup_table(rows: list[dict[str, Any]], by_method: dict[str, list[dict[str, Any]]], order: list[str]) -> list[list[str]]:
    recipes = [by_method[m][-1]["recipe"] for m in order]
    same, differ = _varying(recipes)
    body: list[list[str]] = []
    for k in same:
        body.append([_FIELD_TITLES.get(k, k), _field_text(k, recipes[0].get(k))])
        if k == "task":
            body.append(["methods", f"{len(order)}: " + ", ".join(f"`{m}`" for m in order)])
    if "data" in differ:
        common, _ = _data_split(recipes)
        body.insert(2 if same[:1] == ["task"] else 0, ["data (common)", _describe_data(common, noise_note=False) if common else "–"])
    if differ:
        body.append(["differs by recipe", ", ".join(t for t, _, _ in _differ_columns(recipes)) + " (columns of the leaderboard)"])
    measured = []
    for key, what in (("n_train", "training samples"), ("n_test", "test samples")):
        vals = [r["metrics"][key] for r in rows if (r["metrics"] or {}).get(key) is not None]
        if vals:
            lo, hi = int(min(vals)), int(max(vals))
            measured.append(f"{lo:,} {what}" if lo == hi else f"{lo:,}–{hi:,} {what}")
    noise = [r["metrics"]["noise_rate_realised"] for r in rows if (r["metrics"] or {}).get("noise_rate_realised")]
    if noise:
        measured.append(f"realised label-noise rate {100 * min(noise):.1f}–{100 * max(noise):.1f} %")
    if measured:
        body.append(["data, as run", "; ".join(measured)])
    seeds = sorted({int(r["seed"]) for r in rows})
    per = sorted({len(by_method[m]) for m in order})
    body.append(["seeds", f"{', '.join(map(str, seeds))} ({' to '.join(map(str, per)) if len(per) > 1 else per[0]} per method; a seed fixes the data subset, the noise and the initialisation)"])
    devices = sorted({str(r.get("device") or "?") for r in rows})
    hw: list[dict[str, Any]] = [r["hardware"] for r in rows if r.get("hardware")]
    hw_text = []
    for h in sorted({json.dumps(h, sort_keys=True) for h in hw}):
        d = json.loads(h)
        text = f"{d.get('cpu', '?')}, {d.get('cpu_count', '?')} logical cores, {d.get('torch_threads', '?')} torch thread(s)"
        if d.get("gpu"):
            text += f"; GPU {d['gpu']} ({d.get('gpu_memory_gib', '?')} GiB, CUDA {d.get('cuda', '?')})"
        hw_text.append(text)
    missing = len(rows) - len(hw)
    text = f"device {', '.join(devices)}"
    if hw_text:
        text += "; " + " | ".join(hw_text)
    if missing:
        text += f"; hardware not recorded for {missing} of {len(rows)} runs (stored by an older lossatlas)"
    body.append(["hardware", text])
    envs = sorted({f"{d.get('platform', '?')}, Python {d.get('python', '?')}, numpy {d.get('numpy', '?')}" for d in hw})
    versions = f"torch {', '.join(sorted({str(r.get('torch_version') or '?') for r in rows}))}; lossatlas {', '.join(sorted({str(r.get('version') or '?') for r in rows}))}"
    if envs:
        versions += "; " + " | ".join(envs)
    body.append(["versions", versions])
    walls = [float(r["wall_time_s"]) for r in rows if r.get("wall_time_s") is not None]
    if walls:
        body.append(["wall time per run", f"mean {np.mean(walls):.1f} s, min {min(walls):.1f} s, max {max(walls):.1f} s; {sum(walls):.0f} s over {len(walls)} runs (each run below)"])
    finished = [r["finished_at"] for r in rows if r.get("finished_at")]
    if finished:
        fmt = "%Y-%m-%d %H:%M UTC"
        body.append(["finished", f"{time.strftime(fmt, time.gmtime(min(finished)))} to {time.strftime(fmt, time.gmtime(max(finished)))}"])
    return body


def _leaderboard_table(entries: list[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]) -> tuple[list[str], list[list[str]]]:
    cols = _columns(entries)
    rank_key = entries[0]["rank_by"]
    pieces = ["loss"] + [k for k in _PIECES[1:] if any(e.get(k) for e in entries)]
    differ = _differ_columns([runs[e["method"]][-1]["recipe"] for e in entries])
    # intervals and the test need two seeds: when no method has them, no columns of "single seed"
    spread = any(e.get(f"{rank_key}_n", 0) >= 2 for e in entries)
    head = ["#", "method", "n"]
    for key, title in cols:
        head.append(_title(key, title))
        if key == rank_key and spread:
            head += [f"95 % CI{' (%)' if is_percent(key) else ''}", "vs #1 (paired t)"]
    head += ["wall s/run"] + pieces + [t for t, _, _ in differ]
    body = []
    for e in entries:
        cells = [str(e["rank"]), e["method"], str(e["seeds"])]
        for key, _ in cols:
            cells.append(_mean_sd(e, key))
            if key == rank_key and spread:
                cells += [_interval(e, key), _vs_best(e)]
        wall = e.get("wall_time_s_mean", float("nan"))
        cells.append(f"{wall:.1f}" if math.isfinite(wall) else "–")
        cells += [e.get(k) or "–" for k in pieces]
        recipe = runs[e["method"]][-1]["recipe"]
        cells += [_differ_cell(recipe, k, sub) for _, k, sub in differ]
        body.append(cells)
    return head, body


def _caption(entries: list[dict[str, Any]], rank_key: str) -> str:
    text = f"Ranked by `{rank_key}`; mean ± sd over `n` seeds."
    single = all(e.get(f"{rank_key}_n", 0) < 2 for e in entries)
    if not single and any(e.get("vs_best") == "untested" for e in entries):
        text += " Not tested: fewer than 2 seeds shared with #1."
    if single:
        text += (" Every method ran a single seed: single seed, no interval, and no test of ties "
                 "(`lossatlas bench run SUITE --seeds 3` adds seeds 1 and 2 to the same store).")
    return text


def _grouped_tables(entries: list[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]) -> list[tuple[str, list[str], list[list[str]], str]]:
    """(title, head, body) tables of a suite whose entries have groups: per metric, methods
    (rows, by mean rank over the tasks) × tasks (columns, in the suite's order), the best
    mean of each column in bold; then one ranked table per task."""
    group_of = {e["method"]: e["group"] for e in entries}
    group_order: list[str] = []
    for method in runs:  # the store's order: the suite's recipe order
        if method in group_of and group_of[method] not in group_order:
            group_order.append(group_of[method])
    labels: list[str] = []
    for e in entries:
        if e["label"] not in labels:
            labels.append(e["label"])
    mean_rank = {lab: float(np.mean([e["rank"] for e in entries if e["label"] == lab])) for lab in labels}
    labels.sort(key=lambda lab: mean_rank[lab])
    cell = {(e["label"], e["group"]): e for e in entries}
    tables = []
    for key, title in _columns(entries):
        best = {}
        for g in group_order:
            vals = [cell[(lab, g)].get(f"{key}_mean", float("nan")) for lab in labels if (lab, g) in cell]
            vals = [v for v in vals if math.isfinite(v)]
            best[g] = max(vals) if vals else float("nan")
        head = ["method", "mean rank"] + group_order
        body = []
        for lab in labels:
            row = [lab, f"{mean_rank[lab]:.1f}"]
            for g in group_order:
                found = cell.get((lab, g))
                if found is None:
                    row.append("–")
                    continue
                m = found.get(f"{key}_mean", float("nan"))
                text = _mean_sd(found, key)
                row.append(f"**{text}**" if math.isfinite(m) and m == best[g] else text)
            body.append(row)
        unit = " in %" if is_percent(key) else ""
        tables.append((f"{title}{unit} by method and task (mean ± sd over seeds, the value alone for a single seed; best in bold; mean rank by {entries[0]['rank_by']})", head, body, ""))
    for g in group_order:
        sub = [e for e in entries if e["group"] == g]
        head, body = _leaderboard_table(sub, runs)
        head = head[:1] + ["method"] + head[2:] + ["optimiser"]
        body = [row[:1] + [e["label"]] + row[2:] + [_compact(runs[e["method"]][-1]["recipe"].get("optimizer")) or "–"] for row, e in zip(body, sub)]
        tables.append((f"Task {g}", head, body, _caption(sub, sub[0]["rank_by"])))
    return tables


def _runs_table(rows: list[dict[str, Any]], order: list[str], rank_key: str) -> tuple[list[str], list[list[str]]]:
    head = ["#", "method", "seed", _title(rank_key), "wall time (s)", "training (s)", "epochs", "device", "torch", "lossatlas", "finished (UTC)"]
    body: list[list[str]] = []
    pos = {m: i for i, m in enumerate(order)}
    for r in sorted(rows, key=lambda r: (pos.get(r["method"], 1 << 30), r["seed"])):
        m = r["metrics"] or {}
        v = m.get(rank_key)
        t = m.get("train_time_s")
        curves = r.get("curves") or {}
        body.append([
            str(len(body) + 1), r["method"], str(r["seed"]), _num(float(v), rank_key) if isinstance(v, (int, float)) else "–",
            f"{r['wall_time_s']:.1f}" if r.get("wall_time_s") is not None else "–",
            f"{t:.1f}" if isinstance(t, (int, float)) else "–",
            str(len(curves.get("epoch", []))) if curves else str((r.get("recipe") or {}).get("epochs", "–")),
            str(r.get("device") or "–"), str(r.get("torch_version") or "–"), str(r.get("version") or "–"),
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["finished_at"])) if r.get("finished_at") else "–",
        ])
    return head, body


def _stats(values: list[float | None]) -> tuple[float, float]:
    """Mean and sample std (NaN for a single value) of the finite ``values``."""
    s = summarize(values)
    return s.mean, s.std


def _fmt(mean: float, std: float, pct: bool) -> str:
    """``mean ± std`` (percent: ×100, one decimal; else three), the mean alone without a std."""
    if not math.isfinite(mean):
        return "–"
    k, d = (100.0, 1) if pct else (1.0, 3)
    return f"{mean * k:.{d}f} ± {std * k:.{d}f}" if math.isfinite(std) else f"{mean * k:.{d}f}"


# ----------------------------------------------------------------------------- sweeps


def _setting(params: dict[str, Any]) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in params.items()) or "–"


def _recipe_setting(recipe: dict[str, Any], paths: list[str]) -> str:
    """The values of ``paths`` (dotted) in a stored recipe; a missing one is the class's own default."""
    vals: dict[str, Any] = {}
    for path in paths:
        node: Any = recipe
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        vals[path] = "(its default)" if node is None else node
    return _setting(vals)


def _sweep_value(mean: float, std: float, n: int, pct: bool) -> str:
    """mean ± std, or the mean alone from one seed (no spread to show)."""
    return _fmt(mean, std, pct) if n > 1 else _fmt(mean, std, pct).split(" ± ")[0]


def _cell(mean: float, std: float, n: int, pct: bool) -> str:
    return f"{_sweep_value(mean, std, n, pct)} (n={n})"


def sweep_tables(rows: list[dict[str, Any]], points: list[dict[str, Any]], full: bool = False) -> list[str]:
    """Markdown for the sweeps recorded in the store (``points``: :meth:`ResultsStore.sweep_points`)
    over the finished ``rows``: per sweep one table, each method's best setting beside its
    default (the recipe as its suite writes it: the published setting), by the suite's rank
    metric, mean ± std over seeds; with ``full`` also every setting of each method, best first."""
    by_key = defaultdict(list)
    for r in rows:
        by_key[(r["suite"], r["recipe_hash"])].append(r)
    out: list[str] = []
    for sweep in sorted({p["sweep"] for p in points}):
        methods: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for p in points:
            if p["sweep"] == sweep:
                methods[p["method"]].append(p)
        done = [r for p in points if p["sweep"] == sweep for r in by_key[(sweep, p["recipe_hash"])]]
        if not done:
            continue
        metric = _rank_metric(done)
        pct = is_percent(metric)
        unit = "%" if pct else ""
        head = ["method", "default setting", f"default {metric}", "best setting", f"best {metric}", f"best − default{' (points)' if pct else ''}", "settings done"]
        table = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        details: list[str] = []
        for method in sorted(methods):
            scored = []
            for p in methods[method]:
                runs = by_key[(sweep, p["recipe_hash"])]
                if not runs:
                    continue
                mean, std = _stats([(r["metrics"] or {}).get(metric) for r in runs])
                if math.isfinite(mean):
                    scored.append((mean, std, len(runs), p, runs))
            if not scored:
                continue
            paths = list(dict.fromkeys(k for p in methods[method] for k in p["params"]))
            default = next((x for x in scored if x[3]["is_default"]), None)

            scored.sort(key=lambda x: -x[0])
            best = scored[0]
            k = 100.0 if pct else 1.0
            best_setting = _recipe_setting(best[4][-1]["recipe"], paths) + " (the default)" if best[3]["is_default"] else _setting(best[3]["params"])
            best_cell = _cell(best[0], best[1], best[2], pct)
            if default is None:
                table.append(f"| {method} | – | not run | {best_setting} | {best_cell} | – | {len(scored)} |")
            else:
                diff = (best[0] - default[0]) * k
                table.append(f"| {method} | {_recipe_setting(default[4][-1]['recipe'], paths)} | {_cell(default[0], default[1], default[2], pct)} | "
                             f"{best_setting} | {best_cell} | {diff:+.{1 if pct else 3}f} | {len(scored)} |")
            if full:
                details += [f"#### `{sweep}`: {method}, every setting (best first)", "", f"| setting | {metric}{' (%)' if pct else ''} | seeds | − default |", "|---|---|---|---|"]
                for x in scored:
                    name = _recipe_setting(x[4][-1]["recipe"], paths) + " (default)" if x[3]["is_default"] else _setting(x[3]["params"])
                    delta = f"{(x[0] - default[0]) * k:+.{1 if pct else 3}f}" if default is not None else "–"
                    details.append(f"| {name} | {_sweep_value(x[0], x[1], x[2], pct)} | {x[2]} | {delta} |")
                details.append("")
        out += [f"### Sweep `{sweep}`", "",
                f"Best setting per method beside its default (the recipe as its suite writes it), by {metric}{' in ' + unit if unit else ''}, mean ± std over seeds (n: seeds; one seed shows no spread). "
                "The best is chosen on the same test split it is scored on, so its number is optimistic: confirm it on fresh seeds.", ""]
        out += table + [""] + details
    return out


def _markdown_into(doc: _Doc, lines: list[str]) -> None:
    """Markdown lines of headings, paragraphs and pipe tables as blocks of ``doc``."""
    table: list[list[str]] = []

    def cells(line: str) -> list[str]:
        return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]

    for line in lines + [""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                table.append(cells(line))
            continue
        if table:
            doc.table(table[0], table[1:])
            table = []
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            doc.h(level, line[level:].strip())
        elif line.strip():
            doc.p(line)


def sweep_section(store: ResultsStore, rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The report's sweep section (Markdown lines, HTML parts); empty when no sweep was run."""
    md = sweep_tables(rows, store.sweep_points())
    if not md:
        return [], []
    doc = _Doc()
    doc.h(2, "Sweeps")
    _markdown_into(doc, md)
    return _to_markdown(doc), _to_html(doc)


# ----------------------------------------------------------------------------- writing


def _csv_columns() -> list[str]:
    cols = ["suite", "group", "method", "label", "rank", "rank_by", "seeds", "seed_list", "vs_best", "vs_best_p"]
    for k, _ in LEADERBOARD_METRICS:
        cols += [f"{_unit_key(k)}_{s}" for s in ("mean", "std", "ci_low", "ci_high")]
    cols += [f"{_unit_key(k)}_{s}" for k in _CSV_EXTRA for s in ("mean", "std")]
    return cols + ["wall_time_s_mean"] + list(_PIECES) + ["version", "torch_version", "device"]


#: leaderboard.csv's leading columns (scores in percent: ``<metric>_pct_mean`` and so on).
_CSV_COLUMNS = _csv_columns()
_STAT_SUFFIXES = ("_mean", "_std", "_ci_low", "_ci_high")


def _csv_row(e: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in e.items():
        name, scale = k, 1.0
        for suffix in _STAT_SUFFIXES:
            if k.endswith(suffix) and k != "wall_time_s_mean":
                base = k[: -len(suffix)]
                name = f"{_unit_key(base)}{suffix}"
                scale = 100.0 if is_percent(base) else 1.0
                break
        if isinstance(v, float):
            out[name] = "" if not math.isfinite(v) else f"{v * scale:.10g}"
        else:
            out[name] = v
    return out


def write_report(db: str | os.PathLike[str], out_dir: str | os.PathLike[str], suites: Sequence[str] | None = None) -> dict[str, str]:
    """Write ``report.md``, ``report.html`` (self-contained) and ``leaderboard.csv`` into
    ``out_dir`` from the finished runs in ``db``. Returns the paths written."""
    dbp = os.fspath(db)
    if not os.path.exists(dbp):
        raise FileNotFoundError(f"results database {dbp!r} does not exist: run `lossatlas bench run` first or pass --db")
    with ResultsStore(dbp) as store:
        rows = store.results()
        pending = store.counts()
        points = store.sweep_points()
    if suites:
        rows = [r for r in rows if r["suite"] in suites]
    if not rows:
        raise ValueError(f"{dbp} holds no finished runs{' for suites ' + ', '.join(suites) if suites else ''}; run `lossatlas bench run` first")
    out = os.fspath(out_dir)
    fig_dir = os.path.join(out, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    board = leaderboard(rows)

    csv_path = os.path.join(out, "leaderboard.csv")
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        csv_rows = [_csv_row(e) for e in board]
        extra_cols = sorted({k for r in csv_rows for k in r if k.endswith(_STAT_SUFFIXES) and not k.endswith("_n")} - set(_CSV_COLUMNS))
        w = csv.DictWriter(f, fieldnames=_CSV_COLUMNS + extra_cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(csv_rows)

    by_suite: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_suite[r["suite"]][r["method"]].append(r)
    doc = _Doc()
    doc.h(1, "lossatlas benchmark report")
    doc.p(f"Written by lossatlas {__version__} from `{dbp}`: {len(rows)} finished runs "
          f"({pending['pending']} pending, {pending['running']} running, {pending['failed']} failed).")
    doc.items([
        "**Units.** Every score in [0, 1] — accuracies, macro-F1, ECE, AUROC, AP, recall@k, MAP@R — is in percent (%), here and in "
        "`leaderboard.csv` (columns `<metric>_pct_mean`, `_pct_std`, `_pct_ci_low`, `_pct_ci_high`); times are in seconds.",
        "**Spread.** mean ± sample standard deviation over seeds, `n` the number of seeds; the 95 % confidence interval of the mean is "
        "Student-t based, mean ± t(0.975, n − 1) · sd / √n. A method run on one seed shows its value alone and \"single seed, no interval\".",
        f"**Ties.** Each method is compared with the best (#1) on the rank metric by a {TEST_NAME} (seeds paired: a seed fixes the "
        f"data subset, the noise and the initialisation), at α = {ALPHA}; p ≥ {ALPHA} is flagged **tie**: not distinguishable from the "
        "best with these seeds (no correction for the number of methods; a tie is not a proof of equality).",
        "**Ranking.** Classification suites are ranked by test balanced accuracy, other tasks by their primary metric. "
        "Many / medium / few: accuracy on the classes with > 100, 20–100 and < 20 training samples (– when a split is empty). "
        "Suites of several tasks (the binary task's data set × positive fraction) rank the methods within each task.",
    ])
    for suite in sorted(by_suite):
        entries = [e for e in board if e["suite"] == suite]
        runs = by_suite[suite]
        order = [e["method"] for e in entries]
        suite_rows = [r for m in order for r in runs[m]]
        rank_key = entries[0]["rank_by"]
        doc.h(2, f"Suite `{suite}`")
        doc.h(3, "What was run")
        doc.table(["", "setting"], _setup_table(suite_rows, runs, order), numeric=False)
        if any(e["group"] for e in entries):
            for title, head, body, caption in _grouped_tables(entries, runs):
                doc.h(3, title)
                doc.table(head, body, caption=caption)
        else:
            doc.h(3, "Leaderboard")
            head, body = _leaderboard_table(entries, runs)
            doc.table(head, body, caption=_caption(entries, rank_key))
        figures = []
        curves = _curves_figure(runs, order)
        if curves is not None:
            figures.append(("curves", "Training curves", curves, "Per epoch, mean over seeds (band: ± sd when there are several): the training loss "
                            "(each method's own loss, so its level is not comparable across methods) and the test score of the model at the end of the epoch."))
        per_class = _per_class_figure(runs, order)
        if per_class is not None:
            figures.append(("per_class", "Per-class accuracy against class size", per_class, "Test accuracy of each class (mean over seeds) "
                            "against its number of training samples."))
        lines = _noise_lines(runs, rank_key)
        if lines:
            figures.append(("noise_rate", "Accuracy against noise rate", _noise_figure(lines, rank_key),
                            f"Test {rank_key.replace('_', ' ')} of each method at each label-noise rate run (mean over seeds, bars: 95 % interval)."))
        reliability = _reliability_figure(runs, order)
        if reliability is not None:
            figures.append(("reliability", "Reliability diagrams", reliability, "Test-set confidence bins (seeds pooled): the bars are each bin's "
                            "accuracy, the dots its mean confidence; a calibrated model lies on the diagonal."))
        for kind, title, svg, caption in figures:
            name = f"{suite}_{kind}.svg"
            with open(os.path.join(fig_dir, name), "wb") as f:
                f.write(svg)
            doc.h(3, title)
            doc.figure(title, name, svg, caption)
        doc.h(3, "Runs")
        inner = _Doc()
        head, body = _runs_table(suite_rows, order, rank_key)
        inner.table(head, body)
        doc.details(f"Each run of `{suite}` ({len(suite_rows)}): seed, score, wall time, device, versions", inner)
        doc.h(3, "Resolved recipes")
        doc.p("Each recipe as it ran: the suite's defaults merged with the recipe and every default filled in (its hash identifies it in the store).")
        recipes = _Doc()
        for m in order:
            r = runs[m][-1]
            recipes.code(f"`{m}` (recipe {r['recipe_hash']})", json.dumps(r["recipe"], indent=2, sort_keys=True))
        doc.details(f"The {len(order)} resolved recipes of `{suite}`", recipes)

    sweeps = sweep_tables(rows, points)
    if sweeps:
        doc.h(2, "Sweeps")
        _markdown_into(doc, sweeps)

    md_path = os.path.join(out, "report.md")
    html_path = os.path.join(out, "report.html")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write("\n".join(_to_markdown(doc)).rstrip("\n") + "\n")
    page = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>lossatlas benchmark report</title>",
        f"<style>{_CSS}</style></head><body>",
        *_to_html(doc),
        "</body></html>",
    ]
    with open(html_path, "w", encoding="utf-8") as f:
        f.write("\n".join(page) + "\n")
    return {"markdown": md_path, "html": html_path, "csv": csv_path}
