"""Reports from the results store: Markdown, one self-contained HTML file, ``leaderboard.csv``.

For each suite: the leaderboard (mean ± std over seeds, ranked by balanced accuracy, with
accuracy, many/medium/few-shot accuracy, ECE and macro-F1), per-class accuracy against
training class size, and reliability diagrams. A suite whose runs name their ``group``
(the ``binary`` task: one group per data set and positive fraction) is shown as method ×
task tables of each metric and one ranked table per task, ranks counted within a task. Figures are drawn with matplotlib's Agg
backend; the HTML embeds them as base64 PNG (no external files), the Markdown links the
PNG files written next to it.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import os
from collections import defaultdict
from typing import Any

import numpy as np

from .. import __version__
from .store import ResultsStore

__all__ = ["leaderboard", "write_report", "LEADERBOARD_METRICS", "sweep_tables", "sweep_section"]

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


def _stats(values: list[float | None]) -> tuple[float, float]:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


#: the recipe's composable pieces, described in the tables (a column only where some recipe sets it)
_PIECES = ("loss", "weighting", "sampler", "miner", "regularizer", "stage2")


def _describe(recipe: dict[str, Any]) -> dict[str, str]:
    def entry(spec: Any) -> str:
        if not spec:
            return ""
        if not isinstance(spec, dict):
            return str(spec)
        # registry pieces have an "id"; task-specific ones (the metric task's P x K sampler,
        # a miner) may only have a "name" or just options
        label = str(spec.get("id") or spec.get("name") or "")
        opts = ", ".join(f"{k}={v}" for k, v in spec.items() if k not in ("id", "name"))
        return f"{label}({opts})" if opts else label

    return {k: entry(recipe.get(k)) for k in _PIECES}


def _is_score(key: str) -> bool:
    """Whether a task output is a metric to show or rank by (not a timing, a count or the training loss)."""
    return not any(s in key for s in ("_time_s", "n_", "final_train_loss"))


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


def _columns(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Leaderboard columns: the classification metrics, or (other tasks) their own metrics."""
    if any(e["rank_by"] == "balanced_accuracy" for e in entries):
        return list(LEADERBOARD_METRICS)
    keys = sorted({k[:-5] for e in entries for k in e if k.endswith("_mean") and _is_score(k)})
    first = entries[0]["rank_by"] if entries else None
    keys = ([first] if first in keys else []) + [k for k in keys if k != first and any(math.isfinite(e.get(f"{k}_mean", float("nan"))) for e in entries)]
    return [(k, k) for k in keys[:9]]


def leaderboard(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate finished runs into one entry per (suite, method), ranked within each suite
    (and within each ``group`` a task reports, e.g. the binary task's data set and positive
    fraction) by the rank metric's mean (best first)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["suite"], r["method"])].append(r)
    out = []
    for (suite, method), runs in groups.items():
        e: dict[str, Any] = {"suite": suite, "method": method, "seeds": len(runs)}
        keys = [k for k, _ in LEADERBOARD_METRICS] + list(_CSV_EXTRA)
        keys += sorted({k for r in runs for k in (r["metrics"] or {})} - set(keys))
        for key in keys:
            e[f"{key}_mean"], e[f"{key}_std"] = _stats([(r["metrics"] or {}).get(key) for r in runs])
        e.update(_describe(runs[-1]["recipe"]))
        extra = runs[-1].get("extra") or {}
        e["group"] = str(extra.get("group") or "")
        e["label"] = str(extra.get("label") or method)
        e["version"] = runs[-1]["version"]
        e["rank_by"] = _rank_metric(runs)
        out.append(e)

    def order(e: dict[str, Any]) -> tuple[str, str, float]:
        v = e.get(f"{e['rank_by']}_mean", float("nan"))
        return e["suite"], e["group"], -(v if math.isfinite(v) else -1e300)

    out.sort(key=order)
    rank: dict[tuple[str, str], int] = defaultdict(int)
    for e in out:
        rank[(e["suite"], e["group"])] += 1
        e["rank"] = rank[(e["suite"], e["group"])]
    return out


def _describe_optimizer(recipe: dict[str, Any]) -> str:
    spec = recipe.get("optimizer")
    if not isinstance(spec, dict):
        return ""
    opts = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name")
    return f"{spec.get('name', '')}({opts})" if opts else str(spec.get("name", ""))


def _grouped_tables(entries: list[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]) -> list[tuple[str, list[str], list[list[str]]]]:
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
    cols = _columns(entries)
    tables = []
    for key, title in cols:
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
                text = _fmt(m, found.get(f"{key}_std", float("nan")), pct=False)
                row.append(f"**{text}**" if math.isfinite(m) and m == best[g] else text)
            body.append(row)
        tables.append((f"{title} by method and task (mean ± std over seeds; best in bold; mean rank by {entries[0]['rank_by']})", head, body))
    for g in group_order:
        sub = [e for e in entries if e["group"] == g]
        head, body = _table(sub)
        head = head[:1] + ["method"] + head[2:] + ["optimizer"]
        body = [row[:1] + [e["label"]] + row[2:] + [_describe_optimizer(runs[e["method"]][-1]["recipe"]) or "–"] for row, e in zip(body, sub)]
        tables.append((f"Task {g}", head, body))
    return tables


def _fmt(mean: float, std: float, pct: bool) -> str:
    if not math.isfinite(mean):
        return "–"
    k = 100.0 if pct else 1.0
    return f"{mean * k:.1f} ± {std * k:.1f}" if pct else f"{mean:.3f} ± {std:.3f}"


def _table(entries: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    cols = _columns(entries)
    pieces = ["loss"] + [k for k in _PIECES[1:] if any(e.get(k) for e in entries)]
    head = ["#", "method", "seeds"] + [t for _, t in cols] + pieces
    body = []
    for e in entries:
        cells = [str(e["rank"]), e["method"], str(e["seeds"])]
        for key, _ in cols:
            pct = cols is not None and (key, _) in LEADERBOARD_METRICS and key != "ece"
            cells.append(_fmt(e.get(f"{key}_mean", float("nan")), e.get(f"{key}_std", float("nan")), pct=pct))
        cells += [e.get(k) or "–" for k in pieces]
        body.append(cells)
    return head, body


def _html_cell(text: str) -> str:
    """A table cell; Markdown's **bold** becomes <b>."""
    if text.startswith("**") and text.endswith("**") and len(text) > 4:
        return f"<td><b>{html.escape(text[2:-2])}</b></td>"
    return f"<td>{html.escape(text)}</td>"


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _per_class_figure(suite_rows: dict[str, list[dict[str, Any]]], order: list[str]) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for method in order:
        runs = [r for r in suite_rows[method] if r.get("per_class_accuracy") and r.get("class_counts")]
        if not runs:
            continue
        acc = np.nanmean(np.array([[np.nan if a is None else a for a in r["per_class_accuracy"]] for r in runs], dtype=float), axis=0)
        cnt = np.mean(np.array([r["class_counts"] for r in runs], dtype=float), axis=0)
        idx = np.argsort(-cnt)
        ax.plot(np.maximum(cnt[idx], 1), acc[idx] * 100, marker="o", ms=3, label=method)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ax.set_xlabel("training samples of the class (log)")
    ax.set_ylabel("test accuracy of the class (%)")
    ax.set_title("per-class accuracy against class size (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    data = _png(fig)
    plt.close(fig)
    return data


def _reliability_figure(suite_rows: dict[str, list[dict[str, Any]]], order: list[str]) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    methods = [m for m in order if any(r.get("reliability") and r["reliability"].get("count") for r in suite_rows[m])]
    if not methods:
        return None
    cols = min(4, len(methods))
    rows_n = math.ceil(len(methods) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.0 * cols, 3.0 * rows_n), squeeze=False)
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
        width = upper - lower
        ax.bar(lower, acc, width=width, align="edge", edgecolor="k", linewidth=0.4, label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
        ax.plot(conf[count > 0], acc[count > 0], "r.", ms=4, label="(confidence, accuracy)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("confidence", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    fig.suptitle("reliability diagrams (test set, seeds pooled)", fontsize=10)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


_CSV_COLUMNS = ["suite", "group", "method", "label", "rank", "seeds"] + [f"{k}_{s}" for k, _ in LEADERBOARD_METRICS for s in ("mean", "std")] + [f"{k}_{s}" for k in _CSV_EXTRA for s in ("mean", "std")] + list(_PIECES) + ["version"]


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


def _cell(mean: float, std: float, n: int, pct: bool) -> str:
    return f"{_fmt(mean, std, pct)} (n={n})"


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
        pct = metric in dict(LEADERBOARD_METRICS) and metric != "ece"
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
                    details.append(f"| {name} | {_fmt(x[0], x[1], pct)} | {x[2]} | {delta} |")
                details.append("")
        out += [f"### Sweep `{sweep}`", "",
                f"Best setting per method beside its default (the recipe as its suite writes it), by {metric}{' in ' + unit if unit else ''}, mean ± std over seeds. "
                "The best is chosen on the same test split it is scored on, so its number is optimistic: confirm it on fresh seeds.", ""]
        out += table + [""] + details
    return out


def sweep_section(store: ResultsStore, rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The report's sweep section (Markdown lines, HTML parts); empty when no sweep was run."""
    md = sweep_tables(rows, store.sweep_points())
    if not md:
        return [], []
    md = ["## Sweeps", ""] + md
    parts = ["<h2>Sweeps</h2>"]
    table: list[str] = []
    for line in md[2:] + [""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                table.append(line)
            continue
        if table:
            cells = [[c.strip() for c in t.strip("|").split(" | ")] for t in table]
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in cells[0]) + "</tr>"
                         + "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in cells[1:]) + "</table>")
            table = []
        if line.startswith("### "):
            parts.append(f"<h3>{html.escape(line[4:].replace('`', ''))}</h3>")
        elif line:
            parts.append(f"<p>{html.escape(line)}</p>")
    return md, parts


def write_report(db: str | os.PathLike[str], out_dir: str | os.PathLike[str], suites: list[str] | None = None) -> dict[str, str]:
    """Write ``report.md``, ``report.html`` (self-contained) and ``leaderboard.csv`` into
    ``out_dir`` from the finished runs in ``db``. Returns the paths written."""
    dbp = os.fspath(db)
    if not os.path.exists(dbp):
        raise FileNotFoundError(f"results database {dbp!r} does not exist: run `lossatlas bench run` first or pass --db")
    with ResultsStore(dbp) as store:
        rows = store.results()
        pending = store.counts()
        sweep_md, sweep_html = sweep_section(store, rows if not suites else [r for r in rows if r["suite"] in suites])
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
        extra_cols = sorted({k for e in board for k in e if k.endswith(("_mean", "_std"))} - set(_CSV_COLUMNS))
        w = csv.DictWriter(f, fieldnames=_CSV_COLUMNS + ["rank_by"] + extra_cols, extrasaction="ignore")
        w.writeheader()
        for e in board:
            w.writerow({k: ("" if isinstance(v, float) and not math.isfinite(v) else (f"{v:.6g}" if isinstance(v, float) else v) ) for k, v in e.items()})

    by_suite: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_suite[r["suite"]][r["method"]].append(r)
    md = ["# lossatlas benchmark report", "", f"lossatlas {__version__}; {len(rows)} finished runs from `{dbp}`"
          f" ({pending['pending']} pending, {pending['running']} running, {pending['failed']} failed).", "",
          "Classification suites are ranked by balanced accuracy (other tasks by their primary metric); mean ± std over seeds; accuracies in %, ECE in [0, 1]. "
          "Many/medium/few: classes with > 100, 20–100, < 20 training samples (– when a split is empty). "
          "Suites of several tasks (the binary task's data set × positive fraction) rank the methods within each task; AUROC and AP in [0, 1].", ""]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>lossatlas benchmark report</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}td:nth-child(2),th:nth-child(2),td:nth-last-child(-n+2){text-align:left}"
        "tr:nth-child(even){background:#f6f6f6}img{max-width:100%}</style></head><body>",
        f"<h1>lossatlas benchmark report</h1><p>{html.escape(md[2])}</p><p>{html.escape(md[4])}</p>",
    ]
    for suite in sorted(by_suite):
        entries = [e for e in board if e["suite"] == suite]
        order = [e["method"] for e in entries]
        md += [f"## Suite `{suite}`", ""]
        parts.append(f"<h2>Suite <code>{html.escape(suite)}</code></h2>")
        if any(e["group"] for e in entries):
            tables = _grouped_tables(entries, by_suite[suite])
        else:
            tables = [("", *_table(entries))]
        for title, head, body in tables:
            if title:
                md += [f"### {title}", ""]
                parts.append(f"<h3>{html.escape(title)}</h3>")
            md += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
            md += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
            md.append("")
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
            parts += ["<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in body]
            parts.append("</table>")
        for kind, fn in (("per_class", _per_class_figure), ("reliability", _reliability_figure)):
            png = fn(by_suite[suite], order)
            if png is None:
                continue
            name = f"{suite}_{kind}.png"
            with open(os.path.join(fig_dir, name), "wb") as f:
                f.write(png)
            title = "Per-class accuracy against class size" if kind == "per_class" else "Reliability diagrams"
            md += [f"### {title}", "", f"![{title}](figures/{name})", ""]
            parts.append(f"<h3>{title}</h3><img alt='{html.escape(title)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    md += sweep_md
    parts += sweep_html
    parts.append("</body></html>")
    md_path = os.path.join(out, "report.md")
    html_path = os.path.join(out, "report.html")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")
    with open(html_path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return {"markdown": md_path, "html": html_path, "csv": csv_path}
