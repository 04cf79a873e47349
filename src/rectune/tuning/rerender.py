"""A tuning study's HTML report written again from its Optuna storage, without MLflow
(``rectune report``): after more workers joined a study, or for one whose run was
killed before it wrote its report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from rectune.config import best_parameters_path, default_reports_dir
from rectune.errors import ConfigError
from rectune.tuning.attributes import PARAMS, STUDY_ATTR
from rectune.tuning.best_params import delivered_params, jsonable
from rectune.tuning.plan import default_storage
from rectune.tuning.report import write_study_reports
from rectune.tuning.storage import is_url, make_storage
from rectune.urls import redact_url


def rerender_report(
    study_name: str | None,
    *,
    storage: str | None,
    models_dir: Path,
    reports_dir: Path | None = None,
    seed: int = 42,
) -> Path:
    """Write the report of study ``study_name`` in ``storage`` (default: the journal in
    ``models_dir``; the study: the storage's only one) to ``reports_dir`` (default:
    ``models_dir/reports``); return its path."""
    url = storage or default_storage(best_parameters_path(models_dir))
    if not is_url(url) and not Path(url).is_file():
        raise ConfigError(f"no Optuna storage at {url} (give --storage as the study was run with)")
    opened = make_storage(url)
    names = sorted(s.study_name for s in opened.get_all_studies())
    if study_name is None and len(names) != 1:
        raise ConfigError(
            f"{redact_url(url)} holds {len(names)} studies; name one with --study-name: "
            + (", ".join(names) or "none")
        )
    name = study_name or names[0]
    if name not in names:
        raise ConfigError(
            f"no study {name!r} in {redact_url(url)}; it holds: {', '.join(names) or 'none'}"
        )
    study = optuna.load_study(study_name=name, storage=opened)
    summary = study_summary(study)
    summary["storage"] = redact_url(url)
    return write_study_reports(
        study,
        summary,
        reports_dir or default_reports_dir(models_dir),
        _Untracked(),
        parent_run_id="",
        seed=seed,
    )


class _Untracked:
    """A tracker for :func:`write_study_reports` that logs nothing (the page only)."""

    def log_artifact(self, *args: Any, **kwargs: Any) -> None:
        pass


def study_summary(study: optuna.Study) -> dict[str, Any]:
    """The report's summary of a study read back from its storage: what it was made for,
    its trials by state, its best trial (one objective)."""
    described = study.user_attrs.get(STUDY_ATTR, {})
    trials = study.get_trials(deepcopy=False)
    states = {state.name.lower(): 0 for state in optuna.trial.TrialState}
    for trial in trials:
        states[trial.state.name.lower()] += 1
    summary: dict[str, Any] = {
        "study": study.study_name,
        "model": described.get("model"),
        "objectives": described.get("objectives"),
        "counts": {state: count for state, count in states.items() if count},
        "best_trial": None,
        "best_values": None,
        "best_params": None,
    }
    if len(study.directions) == 1 and states.get("complete"):
        best = study.best_trial
        names = described.get("objectives") or ["value"]
        sampled = best.user_attrs.get(PARAMS, best.params)
        summary["best_trial"] = best.number
        summary["best_values"] = dict(zip(names, best.values, strict=False))
        summary["best_params"] = jsonable(delivered_params(best.user_attrs, sampled))
    return summary
