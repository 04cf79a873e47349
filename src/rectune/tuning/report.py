"""The study report: a page that says what the study found, with its plots, parameter
importances and trial table.

The report (``reports_dir/<study>.html``, logged to the parent run as
``report/<study>.html``) opens with the study in sentences and a small table: counts
by kind of trial, the best trial against the runner-up and the model's defaults, and
where the objective is measured. Then come the plots (:mod:`rectune.tuning._figures`),
the importances with what each method means, and every trial.

One HTML page, plotly.js inlined once: MLflow's UI shows an HTML artifact as a
``blob:`` URL in a sandboxed iframe, where a relative ``<script src>`` cannot load and
a CDN needs internet, so each HTML artifact would have to carry plotly.js itself. The
report is therefore the only one; the figures are also logged on their own as
``plots/<name>.json`` (plotly's figure JSON: ``plotly.io.read_json(path).show()``),
data that reads anywhere offline. plotly.js is the vendored *basic* bundle
(:data:`rectune._html.PLOTLY_BUNDLE`, 1.2 MB), so a 50-trial report is about 1.3 MB.
"""

from __future__ import annotations

import contextlib
import html
import importlib
import re
import tempfile
import threading
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import optuna

from rectune._html import figure_json, html_page, html_table, plot_div, plotly_script
from rectune._io import write_json_atomic, write_text_atomic
from rectune.tuning import _figures as figs
from rectune.tuning import _report_text as text
from rectune.tuning.attributes import STUDY_ATTR
from rectune.tuning.storage import objective_names

#: Imported by the report on first use: about a second of a fresh process (scikit-learn
#: for fANOVA).
_REPORT_MODULES = ("optuna.importance",)

#: What each plot shows, in a line under its title.
_CAPTIONS = {
    "optimization_history": "Each trial's objective by trial number; the line is the best so far.",
    "slice": "The objective against each parameter (log axes where the search space is log).",
    "param_pairs": "Each point is a trial, coloured by its objective (yellow is better).",
    "intermediate_values": (
        "The objective at each checkpoint a trial was scored at; pruned trials stop where "
        "the pruner stopped them."
    ),
    "pareto_front": "The first two objectives; no trial on the front beats another on both.",
    "param_importances": "",
}

_STYLE = """
p.lead { font-size: 16px; line-height: 1.5; max-width: 60em; }
.caption { color: #555; margin: 0; }
.plot { width: 100%; }
tr.best { background: #fff3cd; font-weight: 600; }
tr.pruned, tr.failed, tr.surplus { color: #888; }
tr.shared td:nth-child(2) { color: #c05a00; }
tr.reused td:nth-child(2) { color: #2a7f2a; }
nav a { margin-right: 1em; }
"""


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
    names = objective_names(study)
    return (
        names
        if len(names) == len(study.directions)
        else [f"objective {i}" for i in range(len(study.directions))]
    )


def _best_number(study: optuna.Study, summary: dict[str, Any] | None = None) -> int | None:
    if summary and summary.get("best_trial") is not None:
        return summary["best_trial"]
    if len(study.directions) > 1 or not figs.plotted_trials(study):
        return None
    with contextlib.suppress(ValueError):  # only pruned trials
        return study.best_trial.number
    return None


def study_figures(
    study: optuna.Study,
    importance: dict[str, Any] | None = None,
    best: int | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The study's figures (plotly ``{"data", "layout"}`` dicts), and for each plot that
    could not be drawn, why. ``importance`` (:func:`importances`) adds their bar chart;
    ``best`` (a trial number) is starred."""
    names = _objective_names(study)
    target = names[0]
    best = _best_number(study) if best is None else best
    builders = {
        "optimization_history": lambda: figs.history(study, target, best),
        "slice": lambda: figs.slices(study, target, best),
        "param_pairs": lambda: figs.pairs(study, target, best),
    }
    if len(names) > 1:
        builders["pareto_front"] = lambda: figs.pareto(study, names, best)
    else:
        builders["intermediate_values"] = lambda: figs.intermediate(study, target, best)
    if importance is not None:
        builders["param_importances"] = lambda: figs.importance_bars(importance, text.METHOD_NAMES)
    figures, skipped = {}, {}
    if not figs.plotted_trials(study):
        return {}, dict.fromkeys(builders, "no trial has a value yet")
    for name, build in builders.items():
        figure = build()
        if figure is None:
            skipped[name] = {
                "slice": "no parameter is searched",
                "param_pairs": "needs two searched parameters",
                "intermediate_values": "no trial reported intermediate values",
                "param_importances": "no importance method ran",
            }[name]
        else:
            figures[name] = figure
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


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _study_span(study: optuna.Study) -> timedelta | None:
    trials = study.get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return max(ends) - min(starts) if starts and ends else None


def _summary_rows(
    study: optuna.Study, summary: dict[str, Any], counts: text.StudyCounts, best: Any
) -> list[list[Any]]:
    names = _objective_names(study)
    directions = [d.name.lower() for d in study.directions]
    attrs = study.user_attrs.get(STUDY_ATTR, {})
    folds = attrs.get("cv_folds") or 1
    split = f"mean of {folds} folds of train" if folds > 1 else "validation"
    span = _study_span(study)
    wall = summary.get("wall_seconds")
    times = [f"study {_duration(span.total_seconds())}" if span else ""]
    times.append(f"this run {_duration(wall)}" if wall is not None else "")
    model = str(summary.get("model") or attrs.get("model", "")).upper()
    dataset = summary.get("dataset")
    rows = [
        ["study", study.study_name],
        ["model", f"{model} on {dataset}" if dataset else model],
        [
            "objective",
            ", ".join(f"{n} ({d})" for n, d in zip(names, directions, strict=True))
            + f", on {split}",
        ],
        ["trials", counts.sentence()],
        [
            "best",
            "none yet"
            if best is None
            else ", ".join(f"{n} = {v:.4f}" for n, v in zip(names, best.values, strict=True))
            + f" (trial {best.number})",
        ],
        ["time", ", ".join(t for t in times if t)],
    ]
    # A summary read back from a storage (``rectune report``) lacks the run's options.
    if summary.get("sampler"):
        rows.append(["sampler, pruner", f"{summary['sampler']}, {summary.get('pruner')}"])
    if summary.get("parent_run_id"):
        rows.append(["MLflow parent run", summary["parent_run_id"]])
    return rows


def _trial_table(study: optuna.Study, best: int | None, default: int | None) -> str:
    names = _objective_names(study)
    space = list(figs.searched(study)) or sorted({p for t in study.trials for p in t.params})
    rows, classes = [], []
    for t in study.get_trials(deepcopy=False):
        kind = text.trial_kind(t)
        values = [f"{v:.4f}" for v in t.values] if t.values else [""] * len(names)
        note = text.trial_note(t)
        if t.number == default:
            note = "; ".join(filter(None, ["the model's defaults", note]))
        duration = f"{t.duration.total_seconds():.2f}" if t.duration else ""
        label = ("best, " if t.number == best else "") + text.KIND_LABELS[kind]
        params = [text.fmt_value(t.params[p]) if p in t.params else "" for p in space]
        rows.append([t.number, label, *values, *params, duration, note])
        classes.append("best" if t.number == best else kind)
    header = ["trial", "kind", *names, *space, "seconds", "note"]
    return html_table(rows, header, classes)


def render_report(
    study: optuna.Study,
    summary: dict[str, Any],
    figures: dict[str, dict[str, Any]],
    skipped: dict[str, str],
    importance: dict[str, Any],
) -> str:
    """One self-contained HTML page: what the study found in sentences, the plots
    (``figures``, drawn by plotly.js inlined once), importances, parameters, trials."""
    esc = html.escape
    names = _objective_names(study)
    counts = text.StudyCounts.of(study.get_trials(deepcopy=False))
    number = _best_number(study, summary)
    best = study.get_trials(deepcopy=False)[number] if number is not None else None
    default, _, _ = text.default_trial(study, summary.get("model"))
    lead = [f"Study {study.study_name} ran {counts.sentence()}."]
    if best is not None and best.values:
        lead += text.comparison_sentences(study, best, names[0], summary.get("model"))
    else:
        lead.append("No trial completed, so there is no best trial yet.")
    lead.append(text.split_line(study, names[0]))

    def plot(name: str) -> str:
        title = name.replace("_", " ")
        caption = _CAPTIONS.get(name, "")
        return (
            f'<h3 id="{esc(name)}">{esc(title[:1].upper() + title[1:])}</h3>'
            + (f'<p class="caption">{esc(caption)}</p>' if caption else "")
            + plot_div(name, figures[name])
        )

    shown = [n for n in figures if n != "param_importances"]
    nav = " ".join(f'<a href="#{esc(n)}">{esc(n.replace("_", " "))}</a>' for n in shown)
    missing = "".join(
        f"<p><em>{esc(n.replace('_', ' '))}: not drawn ({esc(why)})</em></p>"
        for n, why in skipped.items()
    )
    methods = [m for m in ("fanova", "ped_anova") if m in importance]
    first = importance.get("fanova", {})
    importance_rows = [
        [p, *(text.fmt_value(importance[m].get(p, "")) for m in methods)]
        for p in sorted(figs.searched(study), key=lambda p: -float(first.get(p, 0) or 0))
    ]
    params = summary.get("best_params") or {}
    bars = "param_importances" in figures
    body = f"""<h1>Study {esc(study.study_name)}</h1>
{"".join(f'<p class="lead">{esc(s)}</p>' for s in lead[:1])}
<p class="lead">{esc(" ".join(lead[1:]))}</p>
{html_table(_summary_rows(study, summary, counts, best), None)}
<h2>Plots</h2><nav>{nav}</nav>
{plotly_script() if figures else ""}
{"".join(plot(n) for n in shown)}{missing}
<h2>Parameter importance</h2>
{"".join(f"<p>{esc(s)}</p>" for s in text.importance_sentences(importance, counts.complete))}
{plot_div("param_importances", figures["param_importances"]) if bars else ""}
{html_table(importance_rows, ["parameter", *(text.METHOD_NAMES[m] for m in methods)])}
<h2>Best parameters</h2>
<p>As written to the output file (fixed parameters and the best iteration included).</p>
{html_table([[k, v] for k, v in params.items()], ["parameter", "value"])}
<h2>Trials</h2>
<p>{esc(_KINDS_LINE)}</p>
{_trial_table(study, number, default.number if default else None)}"""
    return html_page(f"rectune study {study.study_name}", body, style=_STYLE)


_KINDS_LINE = (
    "Kinds: complete, a fit of its own; recorded from another trial's fit, iteration "
    "sharing scored a longer fit at this trial's iteration count; reused, the same "
    "parameters as an earlier trial, its values copied; pruned, stopped early by the "
    "pruner and shown at the last value it reported."
)


def write_study_reports(
    study: optuna.Study,
    summary: dict[str, Any],
    reports_dir: Path,
    tracker: Any,
    parent_run_id: str,
    seed: int = 42,
) -> Path:
    """Log the report, the figures' JSON and the importances to the parent run; return
    the report's path.

    The report is also written to ``reports_dir/<study name>.html``.
    """
    importance = importances(study, seed=seed)
    figures, skipped = study_figures(study, importance, _best_number(study, summary))
    report = render_report(study, summary, figures, skipped, importance)
    safe_name = re.sub(r"[^A-Za-z0-9._@-]+", "_", study.study_name).strip("._") or "study"
    report_path = Path(reports_dir) / f"{safe_name}.html"
    write_text_atomic(report_path, report)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, figure in figures.items():
            path = folder / f"{name}.json"
            path.write_text(figure_json(figure), encoding="utf-8")
            tracker.log_artifact(parent_run_id, path, "plots")
        write_json_atomic(folder / "importance.json", importance)
        tracker.log_artifact(parent_run_id, folder / "importance.json")
        write_json_atomic(folder / "summary.json", summary)
        tracker.log_artifact(parent_run_id, folder / "summary.json")
    tracker.log_artifact(parent_run_id, report_path, "report")
    return report_path
