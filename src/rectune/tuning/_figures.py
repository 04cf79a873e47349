"""The study report's figures, as plain plotly ``{"data", "layout"}`` dicts.

They are drawn by the vendored plotly.js *basic* bundle, so they use its trace types
only (scatter and bar; a test checks every figure). Instead of Optuna's figures:

* ``param_pairs`` replaces Optuna's contour plot: a scatter of the trials for each pair
  of parameters, coloured by the objective. A contour interpolates a 100x100 grid from
  50 points (most of it guessed, and a trace type outside the bundle); the points are
  what the study knows.
* There is no parallel-coordinates plot: MLflow's UI draws one from the trial runs
  (select them, then Compare), and the bundle has no ``parcoords`` trace.
* Axes are logarithmic where the search space is: a log distribution, or categorical
  numbers spaced geometrically (``[0.01, 0.1, 1, 10]`` of the grid spaces, which
  Optuna draws on a linear axis).
* Trials that were not fits of their own (recorded from another trial's fit, reused
  values) and pruned trials (at the value they were stopped at) have their own marker,
  legend entry and hover note.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial

from rectune.tuning._report_text import KIND_LABELS, fmt_value, trial_kind, trial_note

#: Marker of each kind of trial the figures draw.
KIND_MARKERS: dict[str, dict[str, Any]] = {
    "complete": {"symbol": "circle", "color": "#1f77b4", "size": 8},
    "shared": {"symbol": "diamond", "color": "#ff7f0e", "size": 9},
    "reused": {"symbol": "circle-open", "color": "#2ca02c", "size": 11, "line": {"width": 2}},
    "pruned": {"symbol": "x", "color": "#8c8c8c", "size": 7},
}
BEST_MARKER = {
    "symbol": "star",
    "color": "#d62728",
    "size": 16,
    "line": {"color": "#000", "width": 1},
}
_MARGIN = {"l": 70, "r": 30, "t": 90, "b": 60}
#: Legends run along the top, under the title: the plots keep the page's width and the
#: pairs' colour bar its side.
_LEGEND = {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"}
#: Pairs drawn at most (8 parameters); a larger space shows its first parameters' pairs.
MAX_PAIRS = 28


def plotted_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Trials with a value to draw: complete ones and pruned ones (their last value)."""
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if trial_kind(t) in KIND_MARKERS and t.values and all(map(math.isfinite, t.values))
    ]


def log_axis(distribution: BaseDistribution) -> bool:
    """Whether a parameter reads best on a log axis: a log distribution, or categorical
    positive numbers more evenly spaced by ratio than by difference."""
    if isinstance(distribution, FloatDistribution | IntDistribution):
        return distribution.log
    if not isinstance(distribution, CategoricalDistribution) or not _numeric(distribution):
        return False
    values = np.array(sorted(set(distribution.choices)), dtype=float)
    if len(values) < 2 or values[0] <= 0:
        return False
    if len(values) == 2:
        return values[1] / values[0] >= 10

    def spread(gaps: np.ndarray) -> float:  # coefficient of variation of the gaps
        return float(np.std(gaps) / np.mean(gaps))

    return values[-1] / values[0] >= 4 and spread(np.diff(np.log(values))) < spread(np.diff(values))


def _decades(distribution: BaseDistribution) -> float:
    if isinstance(distribution, CategoricalDistribution):
        low, high = min(distribution.choices), max(distribution.choices)
    else:
        low, high = distribution.low, distribution.high  # type: ignore[attr-defined]
    return math.log10(high / low)


def _numeric(distribution: CategoricalDistribution) -> bool:
    return all(isinstance(c, int | float) and not isinstance(c, bool) for c in distribution.choices)


def _axis(name: str, distribution: BaseDistribution) -> dict[str, Any]:
    axis: dict[str, Any] = {"title": {"text": name + (" (log)" if log_axis(distribution) else "")}}
    if log_axis(distribution):
        # Labels at 1, 2 and 5 of each decade over a short range; over a long one the
        # 2s and 5s crowd the powers of ten, so those alone.
        axis.update(type="log", dtick="D2" if _decades(distribution) <= 2.5 else 1)
    elif isinstance(distribution, CategoricalDistribution) and not _numeric(distribution):
        axis.update(type="category", categoryorder="array")
        axis["categoryarray"] = [str(c) for c in distribution.choices]
    return axis


def _coordinate(value: Any, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, CategoricalDistribution) and not _numeric(distribution):
        return str(value)
    return value


def _hover(trial: FrozenTrial, target: str) -> str:
    kind = trial_kind(trial)
    lines = [f"trial {trial.number} ({KIND_LABELS[kind]})", f"{target} = {trial.values[0]:.4f}"]
    lines += [f"{k} = {fmt_value(v)}" for k, v in trial.params.items()]
    note = trial_note(trial)
    return "<br>".join(lines + ([note] if note else []))


def _grid(n: int, cols: int, gap: tuple[float, float]) -> list[tuple[list[float], list[float]]]:
    """The x and y domains of ``n`` subplots, ``cols`` to a row, from the top left."""
    rows = math.ceil(n / cols)
    width = (1 - gap[0] * (cols - 1)) / cols
    height = (1 - gap[1] * (rows - 1)) / rows
    domains = []
    for k in range(n):
        x0 = (k % cols) * (width + gap[0])
        y1 = 1 - (k // cols) * (height + gap[1])
        domains.append(
            ([round(x0, 4), round(x0 + width, 4)], [round(y1 - height, 4), round(y1, 4)])
        )
    return domains


def _suffix(k: int) -> str:
    return "" if k == 0 else str(k + 1)


def _kind_traces(
    trials: list[FrozenTrial],
    x: Any,
    y: Any,
    target: str,
    *,
    subplot: int = 0,
    best: int | None = None,
    color_by_value: bool = False,
) -> list[dict[str, Any]]:
    """One marker trace per kind of trial (so the legend names the kinds), plus a star
    on the best trial; ``x`` and ``y`` map a trial to its coordinates."""
    axes = {"xaxis": f"x{_suffix(subplot)}", "yaxis": f"y{_suffix(subplot)}"}

    def trace(name: str, group: str, members: list[FrozenTrial], marker: dict) -> dict:
        return {
            "type": "scatter",
            "mode": "markers",
            "name": name,
            "legendgroup": group,
            "showlegend": subplot == 0,
            "x": [x(t) for t in members],
            "y": [y(t) for t in members],
            "marker": marker,
            "hovertext": [_hover(t, target) for t in members],
            "hoverinfo": "text",
            **axes,
        }

    traces = []
    for kind, marker in KIND_MARKERS.items():
        members = [t for t in trials if trial_kind(t) == kind]
        if members:
            if color_by_value and kind != "pruned":
                marker = {**marker, "color": [t.values[0] for t in members]}
                marker["coloraxis"] = "coloraxis"
            traces.append(trace(KIND_LABELS[kind], kind, members, marker))
    chosen = [t for t in trials if t.number == best]
    if chosen:
        traces.append(trace(f"best (trial {best})", "best", chosen, BEST_MARKER))
    return traces


def _place(layout: dict, k: int, domains: tuple, xaxis: dict, yaxis: dict) -> None:
    """Put subplot ``k``'s axes into ``layout`` at its ``domains`` (x, y)."""
    key = _suffix(k)
    layout[f"xaxis{key}"] = {**xaxis, "domain": domains[0], "anchor": f"y{key}"}
    layout[f"yaxis{key}"] = {**yaxis, "domain": domains[1], "anchor": f"x{key}"}


def _layout(title: str, **more: Any) -> dict[str, Any]:
    return {
        "title": {"text": title},
        "margin": _MARGIN,
        "hovermode": "closest",
        "legend": _LEGEND,
        **more,
    }


def history(study: optuna.Study, target: str, best: int | None) -> dict[str, Any]:
    """Each trial's value by trial number, with the best value so far as a step line."""
    trials = plotted_trials(study)
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1
    steps, so_far = [], None
    for t in sorted(trials, key=lambda t: t.number):
        if trial_kind(t) != "pruned" and (so_far is None or sign * t.values[0] > sign * so_far):
            so_far = t.values[0]
        if so_far is not None:
            steps.append((t.number, so_far))
    line = {
        "type": "scatter",
        "mode": "lines",
        "name": "best so far",
        "line": {"shape": "hv", "color": "#d62728", "width": 2},
        "x": [n for n, _ in steps],
        "y": [v for _, v in steps],
        "hoverinfo": "skip",
    }
    points = _kind_traces(trials, lambda t: t.number, lambda t: t.values[0], target, best=best)
    return {
        "data": [line, *points],
        "layout": _layout(
            "Optimization history",
            xaxis={"title": {"text": "trial"}},
            yaxis={"title": {"text": target}},
        ),
    }


def intermediate(study: optuna.Study, target: str, best: int | None) -> dict[str, Any] | None:
    """One line per trial through the values it reported to the pruner; ``None`` when
    no trial reported any."""
    style = {
        "complete": {"color": "rgba(31,119,180,0.55)", "width": 1.5},
        "pruned": {"color": "rgba(140,140,140,0.7)", "width": 1, "dash": "dot"},
    }
    traces, shown = [], set()
    for t in study.get_trials(deepcopy=False):
        steps = sorted(s for s, v in t.intermediate_values.items() if math.isfinite(v))
        kind = "pruned" if trial_kind(t) == "pruned" else "complete"
        if not steps or trial_kind(t) not in KIND_MARKERS:
            continue
        is_best = t.number == best
        group = "best" if is_best else kind
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": f"best (trial {best})" if is_best else KIND_LABELS[kind],
                "legendgroup": group,
                "showlegend": group not in shown,
                "x": steps,
                "y": [t.intermediate_values[s] for s in steps],
                "line": {"color": "#d62728", "width": 3} if is_best else style[kind],
                "marker": {"size": 4},
                "hovertext": f"trial {t.number}" + (f" ({trial_note(t)})" if trial_note(t) else ""),
                "hoverinfo": "text+x+y",
            }
        )
        shown.add(group)
    if not traces:
        return None
    return {
        "data": traces,
        "layout": _layout(
            "Intermediate values (one line per trial)",
            xaxis={"title": {"text": "iteration"}},
            yaxis={"title": {"text": target}},
        ),
    }


def searched(study: optuna.Study) -> dict[str, BaseDistribution]:
    """The searched parameters of the study's trials, in the order trials suggest them."""
    space: dict[str, BaseDistribution] = {}
    for trial in plotted_trials(study):
        for name, distribution in trial.distributions.items():
            space.setdefault(name, distribution)
    return space


def slices(study: optuna.Study, target: str, best: int | None) -> dict[str, Any] | None:
    """The objective against each parameter, a subplot per parameter; ``None`` when no
    parameter is searched (a one-point space)."""
    space, trials = searched(study), plotted_trials(study)
    if not space:
        return None
    cols = min(len(space), 4)
    data: list[dict[str, Any]] = []
    layout = _layout("Objective by parameter", height=320 * math.ceil(len(space) / cols) + 80)
    for k, ((name, distribution), domains) in enumerate(
        zip(space.items(), _grid(len(space), cols, (0.05, 0.2)), strict=True)
    ):
        members = [t for t in trials if name in t.params]
        data += _kind_traces(
            members,
            lambda t, n=name, d=distribution: _coordinate(t.params[n], d),
            lambda t: t.values[0],
            target,
            subplot=k,
            best=best,
        )
        yaxis = {"title": {"text": target}} if k % cols == 0 else {}
        _place(
            layout, k, domains, _axis(name, distribution), {**yaxis, "matches": "y"} if k else yaxis
        )
    return {"data": data, "layout": layout}


def pairs(study: optuna.Study, target: str, best: int | None) -> dict[str, Any] | None:
    """A scatter of the trials per pair of parameters, coloured by the objective;
    ``None`` for a space of one parameter."""
    space, trials = searched(study), plotted_trials(study)
    names = list(space)
    combos = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]][:MAX_PAIRS]
    if not combos:
        return None
    cols = min(len(combos), 3)
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    data: list[dict[str, Any]] = []
    layout = _layout(
        f"Parameter pairs, coloured by {target}",
        height=340 * math.ceil(len(combos) / cols) + 80,
        coloraxis={
            "colorscale": "Viridis",
            "reversescale": not maximize,  # yellow is the better end either way
            "colorbar": {"title": {"text": target}},
        },
    )
    for k, ((a, b), domains) in enumerate(
        zip(combos, _grid(len(combos), cols, (0.09, 0.14)), strict=True)
    ):
        members = [t for t in trials if a in t.params and b in t.params]
        data += _kind_traces(
            members,
            lambda t, n=a: _coordinate(t.params[n], space[n]),
            lambda t, n=b: _coordinate(t.params[n], space[n]),
            target,
            subplot=k,
            best=best,
            color_by_value=True,
        )
        _place(layout, k, domains, _axis(a, space[a]), _axis(b, space[b]))
    return {"data": data, "layout": layout}


def importance_bars(importance: dict[str, Any], names: dict[str, str]) -> dict[str, Any] | None:
    """Each method's importances as horizontal bars, side by side per parameter;
    ``None`` when no method produced any."""
    methods = {m: v for m, v in importance.items() if v and "error" not in v}
    if not methods:
        return None
    first = next(iter(methods.values()))
    params = sorted(first, key=lambda p: first[p])  # plotly draws the first bar lowest
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "name": names.get(method, method),
            "y": params,
            "x": [values.get(p, 0.0) for p in params],
            "hovertemplate": "%{y}: %{x:.3f}<extra>" + names.get(method, method) + "</extra>",
        }
        for method, values in methods.items()
    ]
    return {
        "data": data,
        "layout": _layout(
            "Parameter importance",
            barmode="group",
            height=120 + 60 * len(params),
            xaxis={"title": {"text": "importance (each method's sum to 1)"}, "rangemode": "tozero"},
            yaxis={"automargin": True},
        ),
    }


def pareto(study: optuna.Study, targets: list[str], best: int | None) -> dict[str, Any]:
    """The first two objectives of the complete trials, the Pareto front marked."""
    front = {t.number for t in study.best_trials}
    trials = [t for t in plotted_trials(study) if trial_kind(t) != "pruned"]
    data = []
    for on_front, name, color in (
        (False, "dominated", "#9ecae1"),
        (True, "Pareto front", "#1f77b4"),
    ):
        members = [t for t in trials if (t.number in front) == on_front]
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": name,
                "x": [t.values[0] for t in members],
                "y": [t.values[1] for t in members],
                "marker": {"color": color, "size": 9},
                "hovertext": [_hover(t, targets[0]) for t in members],
                "hoverinfo": "text",
            }
        )
    chosen = [t for t in trials if t.number == best]
    if chosen:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": f"written out (trial {best})",
                "x": [chosen[0].values[0]],
                "y": [chosen[0].values[1]],
                "marker": BEST_MARKER,
                "hoverinfo": "skip",
            }
        )
    return {
        "data": data,
        "layout": _layout(
            "Pareto front",
            xaxis={"title": {"text": targets[0]}},
            yaxis={"title": {"text": targets[1]}},
        ),
    }
