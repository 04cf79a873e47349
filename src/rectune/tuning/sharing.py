"""Iteration sharing: one fit serves every ``iterations`` value of a search space.

ALS and BPR in implicit iterate deterministically for a fixed ``random_state`` (BPR
with one thread): after ``w`` iterations of a fit asked for ``v > w``, the factors are
bit for bit those of a fit asked for ``w`` (``tests/test_tuning.py`` checks this for
both). So a trial whose ``iterations`` is ``v`` evaluates its model, through the fit
callback, at every smaller ``iterations`` choice ``w`` of the search space, and records
each as a completed trial of its own, with the values a separate fit would have given:
its parameters with ``iterations = w``, its metrics, and ``fit_seconds`` up to ``w``.
Such a trial carries the user attribute ``shared_fit_of`` (the trial that fitted it)
and gets its own MLflow child run, tagged ``shared_fit_of_trial``. It reports no
intermediate values (the fit's curve is its parent's, and counting it again would weigh
one fit several times in the pruner's comparisons), and by default it comes on top of
``--n-trials`` (``--count-shared`` counts it). A combination that was pruned is recorded
too when a longer fit passes its iteration count: its exact value is known then.

The grid sampler here visits the largest iteration count first, so on the default ALS
grid (4 x 4 x 4) 16 fits complete all 64 combinations. Sharing needs ``iterations`` to
be a categorical parameter (a fixed, small set of values); it is off otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna

from rectune.tuning.search_space import SearchSpace
from rectune.tuning.storage import SHARED_FIT_OF

ITERATIONS = "iterations"
#: Trials whose value is known, or on its way (WAITING: a retry, queued). A PRUNED
#: trial's is not: a longer fit that passes its iteration count records the exact value.
_KNOWN = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.RUNNING,
    optuna.trial.TrialState.WAITING,
)


def iteration_choices(space: SearchSpace) -> tuple[int, ...] | None:
    """The search space's ``iterations`` values, ascending, when it lists them."""
    distribution = space.distributions.get(ITERATIONS)
    if not isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return None
    return tuple(sorted(int(choice) for choice in distribution.choices))


def pending_iterations(
    trials: Sequence[optuna.trial.FrozenTrial],
    params: Mapping[str, Any],
    choices: Sequence[int],
    room: int | None,
) -> list[int]:
    """The ``iterations`` choices below ``params``'s whose value none of a study's
    ``trials`` knows yet (pruned ones included: a pruned combination is completed).

    At most ``room`` of them (the slots left in the study, when shared trials count
    towards its size; ``None``: no limit), the largest first, so a study of fixed size
    is not overfilled.
    """
    own = int(params[ITERATIONS])
    wanted = [w for w in choices if w < own]
    if not wanted:
        return []
    known = {
        int(p[ITERATIONS])
        for t in trials
        if t.state in _KNOWN
        and (p := t.user_attrs.get("params", t.params)).keys() == params.keys()
        and ITERATIONS in p
        and all(p[key] == value for key, value in params.items() if key != ITERATIONS)
    }
    pending = sorted((w for w in wanted if w not in known), reverse=True)
    return pending if room is None else pending[: max(room, 0)]


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, visiting the largest ``iterations`` first.

    Optuna's own gives trial ``n`` grid point ``n`` while ``n`` is below the grid size,
    which assumes every trial of the study came from it; trials recorded by iteration
    sharing take numbers too, so this one always draws among the unvisited points (at
    random, by its seed), and among those with the largest iteration count.
    :meth:`system_attrs` marks a recorded trial's point as visited.
    """

    def __init__(self, search_space: dict[str, list[Any]], seed: int | None = None) -> None:
        super().__init__(search_space, seed=seed)
        # Optuna keeps the grid as tuples in sorted parameter-name order.
        self._iterations_index = (
            self._param_names.index(ITERATIONS) if ITERATIONS in self._param_names else None
        )

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if "grid_id" in trial.system_attrs or "fixed_params" in trial.system_attrs:
            return  # a retried or enqueued trial keeps its point
        targets = self._get_unvisited_grid_ids(study) or list(range(len(self._all_grids)))
        if self._iterations_index is not None:
            largest = max(self._all_grids[i][self._iterations_index] for i in targets)
            targets = [i for i in targets if self._all_grids[i][self._iterations_index] == largest]
        grid_id = int(self._rng.rng.choice(targets))
        study._storage.set_trial_system_attr(trial._trial_id, "search_space", self._search_space)
        study._storage.set_trial_system_attr(trial._trial_id, "grid_id", grid_id)

    def system_attrs(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """What marks ``params``'s grid point visited, for a trial added by hand."""
        point = tuple(params[name] for name in self._param_names)
        return {"search_space": self._search_space, "grid_id": self._all_grids.index(point)}


__all__ = [
    "ITERATIONS",
    "SHARED_FIT_OF",
    "GridSampler",
    "iteration_choices",
    "pending_iterations",
]
