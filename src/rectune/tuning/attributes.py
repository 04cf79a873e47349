"""The vocabulary of a study: the attribute keys rectune stores with studies and trials,
and the one rule for when two trials have the same parameters.

Optuna keeps user attributes per study and per trial; these are rectune's. A trial's
``params`` attribute holds its full parameters, fixed ones included (Optuna's
``trial.params`` holds only the sampled ones), so trials of a resumed study whose fixed
values changed are compared correctly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# --- study user attributes
#: Key in the study's user attributes describing what the study optimises.
STUDY_ATTR = "rectune"
#: Study user attribute mapping a tracking store (and experiment) to the parent run.
PARENT_RUNS_ATTR = "mlflow_parent_runs"
#: Study user attribute (and tag of its parent runs) naming the study uniquely.
STUDY_UID_ATTR = "rectune_study_uid"

# --- trial user attributes
#: The trial's full parameters, fixed ones included.
PARAMS = "params"
#: Every metric the trial was scored by (mean over folds), with fit and eval seconds.
METRICS = "metrics"
#: The id of the trial's MLflow child run.
RUN_ID = "mlflow_run_id"
#: The number of the earlier trial whose values a trial reused (same parameters).
REUSED_FROM = "reused_from"
#: Set on a trial created after the study already had all its trials.
SURPLUS = "surplus"
#: Why the trial failed.
ERROR = "error"
#: The ``error`` of a trial the user stopped (Ctrl-C): no fault of its parameters.
INTERRUPTED = "interrupted"
#: A trial recorded from another trial's fit (iteration sharing): that trial's number.
SHARED_FIT_OF = "shared_fit_of"
#: A trial fitted to an iteration budget (``iterations`` not searched): its best
#: checkpoint's count, the ``iterations`` it stands for.
BEST_ITERATION = "best_iteration"

# --- trial system attributes
#: A journal file's running trial: its last heartbeat (Unix time).
HEARTBEAT_ATTR = "rectune:heartbeat"

# --- parameter and metric names
ITERATIONS = "iterations"
FIT_SECONDS = "fit_seconds"

#: Relative tolerance within which two float parameter values are the same value.
SAME_VALUE_REL_TOL = 1e-9


def same_value(a: Any, b: Any) -> bool:
    """Whether two parameter values are the same: equal (a bool never equals a number),
    or floats within :data:`SAME_VALUE_REL_TOL` of each other (a value read back from a
    storage or a file may differ in its last bits)."""
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if a == b:
        return True
    return (
        isinstance(a, float)
        and isinstance(b, float)
        and math.isclose(a, b, rel_tol=SAME_VALUE_REL_TOL)
    )


def same_params(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two trials' parameters are the same: the same names, each the same value."""
    return a.keys() == b.keys() and all(same_value(a[key], b[key]) for key in a)
