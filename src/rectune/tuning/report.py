"""The study report: plots, parameter importances and the trial table of a study.

A study's plots are each logged on their own as a small HTML file that loads plotly.js
from its CDN (so it needs internet to render); the study report inlines plotly.js once
(~4.8 MB) and works offline.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import html
import importlib
import json
import re
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import optuna

from rectune._html import html_page, html_table
from rectune._io import write_json_atomic, write_text_atomic
from rectune.tuning.attributes import ERROR, REUSED_FROM

#: Imported by the report on first use: about 1.7 s of a fresh process (scikit-learn
#: for fANOVA, plotly through Optuna's plots).
_REPORT_MODULES = ("optuna.importance", "optuna.visualization")


def import_behind() -> threading.Thread:
    """Import what a study report needs in a background thread, so that those seconds
    overlap the study's first fit instead of following its last."""

    def load() -> None:
        for name in _REPORT_MODULES:
            with contextlib.suppress(ImportError):  # the report says what is missing
                importlib.import_module(name)

    thread = threading.Thread(target=load, name="rectune-report-imports", daemon=True)
    thread.start()
    return thread


def _objective_names(study: optuna.Study) -> list[str]:
    attrs = study.user_attrs.get("rectune", {})
    names = attrs.get("objectives") or []
    return (
        names
        if len(names) == len(study.directions)
        else [f"objective {i}" for i in range(len(study.directions))]
    )


def _complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def study_figures(study: optuna.Study) -> tuple[dict[str, Any], dict[str, str]]:
    """The study's plotly figures, and for each plot that could not be drawn, why."""
    vis = optuna.visualization
    names = _objective_names(study)
    multi = len(names) > 1
    target = (
        {"target": (lambda t: t.values[0]), "target_name": names[0]}
        if multi
        else {"target_name": names[0]}
    )
    builders = {
        "optimization_history": lambda: vis.plot_optimization_history(study, **target),
        "param_importances": lambda: vis.plot_param_importances(study, **target),
        "parallel_coordinate": lambda: vis.plot_parallel_coordinate(study, **target),
        "slice": lambda: vis.plot_slice(study, **target),
        "contour": lambda: vis.plot_contour(study, **target),
    }
    if multi:
        builders["pareto_front"] = lambda: vis.plot_pareto_front(study, target_names=names)
    else:
        builders["intermediate_values"] = lambda: vis.plot_intermediate_values(study)
    figures, skipped = {}, {}
    for name, build in builders.items():
        if len(_complete(study)) < (2 if name in ("param_importances", "contour") else 1):
            skipped[name] = "needs more complete trials"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                figures[name] = build()
        except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as err:
            skipped[name] = f"{type(err).__name__}: {err}"
    return figures, skipped


#: Trees of the fANOVA forest. Optuna's default, 64, costs 0.6 s on a 50-trial study;
#: with 16 the importances of rectune's spaces move by about as much between seeds
#: (standard deviation 0.02 against 0.015) at a third of the cost.
FANOVA_TREES = 16


def importances(study: optuna.Study, seed: int = 42) -> dict[str, Any]:
    """fANOVA and PED-ANOVA importance of each parameter for the first objective."""
    # Imported here (or behind the first fit, by import_behind): scikit-learn with it
    # costs about a second of a fresh process.
    from optuna.importance import (
        FanovaImportanceEvaluator,
        PedAnovaImportanceEvaluator,
        get_param_importances,
    )

    target = (lambda t: t.values[0]) if len(study.directions) > 1 else None
    out: dict[str, Any] = {}
    evaluators = {
        "fanova": FanovaImportanceEvaluator(n_trees=FANOVA_TREES, seed=seed),
        "ped_anova": PedAnovaImportanceEvaluator(),
    }
    for name, evaluator in evaluators.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = get_param_importances(study, evaluator=evaluator, target=target)
            out[name] = {param: round(float(v), 6) for param, v in values.items()}
        except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as err:
            out[name] = {"error": f"{type(err).__name__}: {err}"}
    return out


def _trial_rows(study: optuna.Study) -> list[list[Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        values = ", ".join(f"{v:.4f}" for v in t.values) if t.values else ""
        duration = f"{t.duration.total_seconds():.2f}" if t.duration else ""
        note = (
            f"reused trial {t.user_attrs['reused_from']}"
            if REUSED_FROM in t.user_attrs
            else t.user_attrs.get(ERROR, "")
        )
        params = ", ".join(f"{k}={v}" for k, v in t.params.items())
        rows.append([t.number, t.state.name, values, params, duration, note])
    return rows


def _plot_divs(figures: dict[str, Any]) -> dict[str, str]:
    """Each figure as an HTML ``<div>`` that draws it once plotly.js is loaded."""
    return {
        name: figure.to_html(full_html=False, include_plotlyjs=False)
        for name, figure in figures.items()
    }


def _plotly_inline() -> str:
    """plotly.js itself, for a page that must work offline."""
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


@functools.cache
def _plotly_from_cdn() -> str:
    """The tag plotly writes to load plotly.js from its CDN, with the hash of the copy
    it bundles (subresource integrity). plotly hashes those 4.8 MB for every figure it
    writes this way; here they are hashed once."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    digest = base64.b64encode(hashlib.sha256(get_plotlyjs().encode()).digest()).decode()
    url = f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"
    return (
        f'<script charset="utf-8" src="{url}" integrity="sha256-{digest}" '
        'crossorigin="anonymous"></script>'
    )


def render_report(
    study: optuna.Study,
    summary: dict[str, Any],
    divs: dict[str, str],
    skipped: dict[str, str],
    importance: dict[str, Any],
) -> str:
    """One self-contained HTML page: summary, best parameters, trials, importances, and
    the plots (``divs``: each figure's ``<div>``, with plotly.js inlined once)."""
    plots = [_plotly_inline()] if divs else []
    for name, div in divs.items():
        plots.append(f"<h3>{html.escape(name.replace('_', ' '))}</h3>{div}")
    for name, reason in skipped.items():
        plots.append(f"<p><em>{html.escape(name)}: not drawn ({html.escape(reason)})</em></p>")
    params = summary.get("best_params") or {}
    importance_rows = [
        [method, ", ".join(f"{k}={v}" for k, v in values.items())]
        for method, values in importance.items()
    ]
    summary_rows = [
        [key, json.dumps(value) if isinstance(value, dict | list) else value]
        for key, value in summary.items()
        if key != "best_params"
    ]
    trial_header = ["trial", "state", "values", "parameters", "seconds", "note"]
    return html_page(
        f"rectune study {study.study_name}",
        f"""<h1>Study {html.escape(study.study_name)}</h1>
<h2>Summary</h2>{html_table(summary_rows, ["", ""])}
<h2>Best parameters</h2>{html_table([[k, v] for k, v in params.items()], ["parameter", "value"])}
<h2>Parameter importance</h2>{html_table(importance_rows, ["method", "importance"])}
<h2>Trials</h2>{html_table(_trial_rows(study), trial_header)}
<h2>Plots</h2>{"".join(plots)}""",
    )


def write_study_reports(
    study: optuna.Study,
    summary: dict[str, Any],
    reports_dir: Path,
    tracker: Any,
    parent_run_id: str,
    seed: int = 42,
) -> Path:
    """Log the plots, importances and report to the parent run; return the report path.

    The report is also written to ``reports_dir/<study name>.html``.
    """
    figures, skipped = study_figures(study)
    importance = importances(study, seed=seed)
    divs = _plot_divs(figures)  # one conversion serves the report and the plot files
    report = render_report(study, summary, divs, skipped, importance)
    safe_name = re.sub(r"[^A-Za-z0-9._@-]+", "_", study.study_name).strip("._") or "study"
    report_path = Path(reports_dir) / f"{safe_name}.html"
    write_text_atomic(report_path, report)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, div in divs.items():
            path = folder / f"{name}.html"
            page = html_page(name.replace("_", " "), _plotly_from_cdn() + div)
            path.write_text(page, encoding="utf-8")
            tracker.log_artifact(parent_run_id, path, "plots")
        write_json_atomic(folder / "importance.json", importance)
        tracker.log_artifact(parent_run_id, folder / "importance.json")
        write_json_atomic(folder / "summary.json", summary)
        tracker.log_artifact(parent_run_id, folder / "summary.json")
    tracker.log_artifact(parent_run_id, report_path, "report")
    return report_path


# --------------------------------------------------------------------------- evaluation
