"""Optuna samplers by name, made to propose each parameter combination once.

On a finite search space (every parameter categorical or stepped, like the shipped
grids) Optuna's samplers propose combinations the study already holds: TPE does it more
and more as it narrows on the best region (13 of 50 trials on the default ALS grid).
rectune does not refit such a combination (the trial reuses the earlier values), but the
trial still takes one of the study's slots and teaches the search nothing.
:class:`DistinctSampler` turns those proposals into the nearest combination the study
has not tried yet, so a 50-trial study tries 50 combinations where the grid has them.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from rectune.errors import ConfigError
from rectune.tuning import sharing
from rectune.tuning.attributes import same_value
from rectune.tuning.search_space import SearchSpace

#: Larger grids are left to the inner sampler alone (duplicates there are rare, and a
#: table of every combination would cost more than it saves).
MAX_COMBINATIONS = 100_000
#: Trials that already stand for their combination (WAITING: a retry, queued).
_TRIED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
#: Failures after which a combination counts as tried. The first may have been passing
#: (memory another process held, a lost connection), and the combination gets another
#: trial; after the second it is left alone, or a grid point that always fails (a factor
#: count the GPU cannot hold) would be proposed again and again near the best ones, and
#: use up the study. Failures count per combination of the searched parameters, whatever
#: the fixed ones or the device were (a study resumed on another device keeps them).
FAILURES_TO_GIVE_UP = 2

from rectune.tuning.attributes import ERROR, INTERRUPTED, PARAMS


def make_sampler(name: str, seed: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The Optuna sampler called ``name``, seeded; all but ``grid`` (which visits each
    point once by itself) wrapped in :class:`DistinctSampler`."""
    if name == "grid":
        return sharing.GridSampler(space.grid(), seed=seed)
    return DistinctSampler(_optuna_sampler(name, seed), space, seed=seed)


def _optuna_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "cmaes":
        if importlib.util.find_spec("cmaes") is None:
            raise ConfigError("the cmaes sampler needs the 'cmaes' package: pip install cmaes")
        # Its per-trial warning about categorical parameters becomes one note instead.
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        if importlib.util.find_spec("torch") is None:
            raise ConfigError(
                "the gp sampler needs PyTorch, which is not installed (it is several GB); "
                "install the CPU build with `pip install torch --index-url "
                "https://download.pytorch.org/whl/cpu`, or pick another --sampler"
            )
        return optuna.samplers.GPSampler(seed=seed)
    raise ConfigError(f"unknown sampler {name!r}")


class DistinctSampler(optuna.samplers.BaseSampler):
    """Wraps a sampler so that a trial never gets a combination the study already tried.

    On a finite space of at most :data:`MAX_COMBINATIONS` combinations, the inner
    sampler proposes the whole combination when the trial starts (its relative
    parameters, then each remaining one as it would have sampled it on its own). If a
    COMPLETE, PRUNED or RUNNING trial already has it, the trial gets instead the nearest
    combination none has: fewest parameters changed, then the smallest steps along
    ordered (numeric) choices, ties broken at random by ``seed``. Once every
    combination is tried, the inner sampler's proposal stands (rectune then reuses the
    earlier trial's values). On other spaces the wrapper changes nothing.

    Parameters
    ----------
    inner : optuna.samplers.BaseSampler
        The sampler that proposes.
    space : SearchSpace
        The space the trials suggest from (its distributions, in order).
    seed : int, optional
        Seeds the choice among equally near combinations.
    """

    def __init__(
        self, inner: optuna.samplers.BaseSampler, space: SearchSpace, seed: int | None = None
    ) -> None:
        self.inner = inner
        self._distributions = dict(space.distributions)
        self._rng = np.random.RandomState(seed)
        self._grid = _finite_grid(space)
        if self._grid is None:
            return
        self._names = list(self._grid)
        self._shape = tuple(len(values) for values in self._grid.values())
        # Every combination as choice indices, and each choice's rank among the ordered
        # choices of its parameter (0 throughout for unordered ones).
        self._points = np.array(
            list(itertools.product(*(range(n) for n in self._shape))), dtype=np.int32
        ).reshape(-1, len(self._shape))
        ranks = [_ranks(values) for values in self._grid.values()]
        self._ranks = np.stack(
            [np.asarray(r, dtype=np.int32)[self._points[:, j]] for j, r in enumerate(ranks)],
            axis=1,
        )

    # Optuna's hooks pass through to the inner sampler.
    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
        self._rng.seed()

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if self._grid is None:
            return self.inner.infer_relative_search_space(study, trial)
        return dict(self._distributions)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if self._grid is None:
            return self.inner.sample_relative(study, trial, search_space)
        if trial.system_attrs.get("fixed_params"):
            return {}  # an enqueued or retried trial keeps its parameters
        inner_space = self.inner.infer_relative_search_space(study, trial)
        proposal = dict(self.inner.sample_relative(study, trial, inner_space))
        for name, distribution in self._distributions.items():
            if name not in proposal:
                proposal[name] = self.inner.sample_independent(study, trial, name, distribution)
        tried = self._tried(study.get_trials(deepcopy=False), exclude=trial.number)
        point = self._point(proposal)
        if point is None or not tried[np.ravel_multi_index(point, self._shape)]:
            return proposal
        nearest = self._nearest_untried(point, tried)
        if nearest is None:
            return proposal
        return {
            name: self._grid[name][index] for name, index in zip(self._names, nearest, strict=True)
        }

    def _point(self, params: dict[str, Any]) -> tuple[int, ...] | None:
        """``params``'s choice indices, or ``None`` if a value lies off the grid."""
        point = []
        for name in self._names:
            if name not in params:
                return None
            index = _index(self._grid[name], params[name])
            if index is None:
                return None
            point.append(index)
        return tuple(point)

    def _tried(self, trials: list[FrozenTrial], exclude: int) -> np.ndarray:
        """A flag per combination: does a trial stand for it already (or have
        :data:`FAILURES_TO_GIVE_UP` trials failed on it, not stopped by the user)."""
        tried = np.zeros(math.prod(self._shape), dtype=bool)
        failures = np.zeros(tried.shape, dtype=np.int64)
        for trial in trials:
            counted = trial.state in _TRIED or trial.state == TrialState.FAIL
            if not counted or trial.number == exclude:
                continue
            point = self._point(trial.user_attrs.get(PARAMS, trial.params))
            if point is None:
                continue
            index = np.ravel_multi_index(point, self._shape)
            if trial.state != TrialState.FAIL:
                tried[index] = True
            elif trial.user_attrs.get(ERROR) != INTERRUPTED:
                # (A trial the user stopped says nothing of its combination.)
                failures[index] += 1
        return tried | (failures >= FAILURES_TO_GIVE_UP)

    def _nearest_untried(self, point: tuple[int, ...], tried: np.ndarray) -> tuple[int, ...] | None:
        if tried.all():
            return None
        changed = (self._points != np.asarray(point)).sum(axis=1)
        own_ranks = self._ranks[np.ravel_multi_index(point, self._shape)]
        steps = np.abs(self._ranks - own_ranks).sum(axis=1)
        # Fewest parameters changed first, then fewest steps; tried ones never.
        distance = changed.astype(np.int64) * (int(steps.max()) + 1) + steps
        distance[tried] = np.iinfo(np.int64).max
        candidates = np.flatnonzero(distance == distance.min())
        return tuple(int(i) for i in self._points[self._rng.choice(candidates)])


def _finite_grid(space: SearchSpace) -> dict[str, list[Any]] | None:
    """Every value of every parameter, when the space is finite and small enough."""
    if not space.distributions:
        return None
    try:
        grid = space.grid()
    except ConfigError:  # a continuous parameter
        return None
    if math.prod(len(values) for values in grid.values()) > MAX_COMBINATIONS:
        return None
    return grid


def _ranks(values: list[Any]) -> list[int]:
    """Each value's position among the sorted values, or 0 for all when unordered."""
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return [0] * len(values)
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0] * len(values)
    for rank, index in enumerate(order):
        ranks[index] = rank
    return ranks


def _index(values: list[Any], value: Any) -> int | None:
    """The position of ``value`` among a parameter's values (floats compared closely)."""
    for index, candidate in enumerate(values):
        if candidate == value and isinstance(candidate, bool) == isinstance(value, bool):
            return index
    for index, candidate in enumerate(values):
        if same_value(candidate, value):
            return index
    return None
