"""The evaluation report: the summary's tables as JSON, Markdown and HTML."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from rectune._html import html_page, html_table
from rectune._io import write_json_atomic, write_text_atomic


def _interval(stats: dict[str, float]) -> str:
    if "low" not in stats:
        return f"{stats['mean']:.4f}"
    return f"{stats['mean']:.4f} [{stats['low']:.4f}, {stats['high']:.4f}]"


def _p_value(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _difference(stats: dict[str, float]) -> str:
    return (
        f"{stats['difference']:+.4f} [{stats['low']:+.4f}, {stats['high']:+.4f}], "
        f"{_p_value(stats['p_value'])}"
    )


def evaluation_tables(summary: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The evaluation's tables as (title, header, rows): one per K, then comparisons."""
    systems = summary["systems"]
    metrics = summary["metrics"]
    level = round(100 * summary["bootstrap"]["confidence"])
    tables = []
    for k in summary["ks"]:
        names = [name for name in metrics[systems[0]] if name.endswith(f"@{k}")]
        rows = [
            [name.split("@")[0], *(_interval(metrics[system][name]) for system in systems)]
            for name in names
        ]
        tables.append((f"K = {k}: mean [{level}% interval]", ["metric", *systems], rows))
    comparisons = summary["comparisons"]
    if comparisons:
        baselines = list(comparisons)
        names = list(comparisons[baselines[0]])
        rows = [[name, *(_difference(comparisons[b][name]) for b in baselines)] for name in names]
        tables.append(
            (
                f"Model minus baseline [{level}% paired interval], paired t-test",
                ["metric", *(f"vs {b}" for b in baselines)],
                rows,
            )
        )
    return tables


def _evaluation_intro(summary: dict[str, Any]) -> str:
    model, data, boot = summary["model"], summary["dataset"], summary["bootstrap"]
    return (
        f"{model['name'].upper()} from {model['source']} (parameters: "
        f"{model.get('params_origin') or 'unknown'}) on the {data['split']} split of "
        f"{data['name']} ({data['excluded']} items excluded): {data['users_evaluated']} users "
        f"with held-out items, {data['items']} items. Intervals are percentile bootstrap "
        f"intervals over users ({boot['resamples']} resamples, seed {boot['seed']})."
    )


def render_evaluation_markdown(summary: dict[str, Any]) -> str:
    """The evaluation as Markdown: an introduction and the tables."""
    parts = [f"# Evaluation of {summary['model']['name'].upper()}", "", _evaluation_intro(summary)]
    for title, header, rows in evaluation_tables(summary):
        parts += ["", f"## {title}", "", "| " + " | ".join(header) + " |"]
        parts.append("|" + "---|" * len(header))
        parts += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(parts) + "\n"


def render_evaluation_html(summary: dict[str, Any]) -> str:
    """The evaluation as a standalone HTML page."""
    title = f"Evaluation of {summary['model']['name'].upper()}"
    body = [f"<h1>{html.escape(title)}</h1><p>{html.escape(_evaluation_intro(summary))}</p>"]
    for table_title, header, rows in evaluation_tables(summary):
        body.append(f"<h2>{html.escape(table_title)}</h2>{html_table(rows, header)}")
    return html_page(f"rectune {title.lower()}", "\n".join(body))


def write_evaluation_reports(summary: dict[str, Any], reports_dir: Path, stem: str) -> list[Path]:
    """Write ``stem.json``, ``stem.md`` and ``stem.html`` to ``reports_dir``; return them."""
    reports_dir = Path(reports_dir)
    paths = [reports_dir / f"{stem}.{ext}" for ext in ("json", "md", "html")]
    write_json_atomic(paths[0], summary)
    write_text_atomic(paths[1], render_evaluation_markdown(summary))
    write_text_atomic(paths[2], render_evaluation_html(summary))
    return paths
