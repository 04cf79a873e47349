"""DistinctSampler: a finite space's combinations are proposed once, nearest first."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from rectune.tuning.attributes import INTERRUPTED
from rectune.tuning.samplers import FAILURES_TO_GIVE_UP, DistinctSampler, make_sampler
from rectune.tuning.search_space import parse_search_space
from rectune.tuning.sharing import GridSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

# factors x iterations: 3 x 3 combinations, both ordered.
SPACE = parse_search_space(
    "als",
    {
        "parameters": {
            "factors": {"type": "categorical", "choices": [8, 16, 32]},
            "iterations": {"type": "categorical", "choices": [10, 20, 50]},
        }
    },
)


class Always(optuna.samplers.BaseSampler):
    """Proposes the same values every time (what a converged TPE does on a grid)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.values[param_name]


def study_with(*tried: tuple[int, int, TrialState], seed: int = 0) -> optuna.Study:
    """A study whose sampler always proposes factors 8, iterations 10, holding ``tried``
    trials as (factors, iterations, state)."""
    sampler = DistinctSampler(Always({"factors": 8, "iterations": 10}), SPACE, seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for factors, iterations, state in tried:
        study.add_trial(
            create_trial(
                params={"factors": factors, "iterations": iterations},
                distributions=SPACE.distributions,
                state=state,
                value=0.1 if state == TrialState.COMPLETE else None,
                intermediate_values={5: 0.01} if state == TrialState.PRUNED else None,
            )
        )
    return study


def next_params(study: optuna.Study) -> tuple[int, int]:
    params = SPACE.suggest(study.ask())
    return params["factors"], params["iterations"]


def test_an_untried_proposal_stands():
    assert next_params(study_with()) == (8, 10)


def test_a_tried_proposal_becomes_the_nearest_untried_combination():
    done = TrialState.COMPLETE
    # One parameter changed beats two; one step along the choices beats two.
    assert next_params(study_with((8, 10, done), (16, 10, done))) == (8, 20)
    assert next_params(study_with((8, 10, done), (8, 20, done))) == (16, 10)
    # Two steps along either parameter: a tie, for the seed to break.
    assert next_params(study_with((8, 10, done), (8, 20, done), (16, 10, done))) in {
        (8, 50),
        (32, 10),
    }
    tried = [(f, i, done) for f in (8, 16, 32) for i in (10, 20, 50) if (f, i) != (32, 50)]
    assert next_params(study_with(*tried)) == (32, 50)  # the only one left, two changes


def test_equally_near_combinations_are_chosen_by_the_seed():
    picks = {next_params(study_with((8, 10, TrialState.COMPLETE), seed=s)) for s in range(20)}
    assert picks == {(8, 20), (16, 10)}
    again = [next_params(study_with((8, 10, TrialState.COMPLETE), seed=3)) for _ in range(3)]
    assert len(set(again)) == 1


def test_running_and_pruned_trials_count_as_tried_and_one_failure_does_not():
    assert next_params(study_with((8, 10, TrialState.RUNNING))) != (8, 10)
    assert next_params(study_with((8, 10, TrialState.PRUNED))) != (8, 10)
    assert next_params(study_with((8, 10, TrialState.FAIL))) == (8, 10)  # tried once more


def test_a_queued_retry_counts_as_tried():
    study = study_with()
    trial = study.ask()  # sampled at its first suggestion, after a retry was queued
    study.add_trial(
        create_trial(
            params={"factors": 8, "iterations": 10},
            distributions=SPACE.distributions,
            state=TrialState.WAITING,
        )
    )
    params = SPACE.suggest(trial)
    assert (params["factors"], params["iterations"]) != (8, 10)


def test_a_combination_that_failed_twice_is_not_proposed_again():
    failure = (8, 10, TrialState.FAIL)
    assert next_params(study_with(*[failure] * (FAILURES_TO_GIVE_UP - 1))) == (8, 10)
    given_up = study_with(*[failure] * FAILURES_TO_GIVE_UP)
    assert next_params(given_up) in {(8, 20), (16, 10)}  # the nearest others
    # Failures of other combinations do not add up.
    apart = [(8, 10, TrialState.FAIL), (8, 20, TrialState.FAIL)]
    assert next_params(study_with(*apart)) == (8, 10)


def test_trials_the_user_stopped_do_not_count_as_failures():
    study = study_with()
    for _ in range(FAILURES_TO_GIVE_UP):
        study.add_trial(
            create_trial(
                params={"factors": 8, "iterations": 10},
                distributions=SPACE.distributions,
                state=TrialState.FAIL,
                user_attrs={"error": INTERRUPTED},
            )
        )
    assert next_params(study) == (8, 10)


def test_once_every_combination_is_tried_the_proposal_stands():
    tried = [(f, i, TrialState.COMPLETE) for f in (8, 16, 32) for i in (10, 20, 50)]
    assert next_params(study_with(*tried)) == (8, 10)


def test_an_enqueued_trial_keeps_its_parameters():
    study = study_with((8, 20, TrialState.COMPLETE))
    study.enqueue_trial({"factors": 8, "iterations": 20})
    assert next_params(study) == (8, 20)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("name", ["tpe", "random", "qmc", "nsga2"])
def test_a_seeded_study_tries_every_combination_once_then_repeats(name):
    def run() -> list[tuple[int, int]]:
        study = optuna.create_study(direction="maximize", sampler=make_sampler(name, 7, SPACE))
        seen = []

        def objective(trial):
            params = SPACE.suggest(trial)
            seen.append((params["factors"], params["iterations"]))
            return params["factors"] / 32 - abs(params["iterations"] - 20) / 50

        study.optimize(objective, n_trials=12)
        return seen

    seen = run()
    assert len(set(seen[:9])) == 9  # all 9 combinations in the first 9 trials
    assert run() == seen  # same seed, same trials


def test_continuous_spaces_and_the_grid_sampler_are_left_alone():
    continuous = parse_search_space(
        "als",
        {"parameters": {"regularization": {"type": "float", "low": 0.01, "high": 1, "log": True}}},
    )
    sampler = make_sampler("tpe", 0, continuous)
    study = optuna.create_study(sampler=sampler)
    trial = study.ask()
    assert sampler.infer_relative_search_space(study, trial._cached_frozen_trial) == {}
    assert isinstance(make_sampler("grid", 0, SPACE), GridSampler)
