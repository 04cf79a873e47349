"""The study's progress bar: finished trials of the whole study and the best value."""

import optuna
import pytest

from rectune.progress import StudyBar

State = optuna.trial.TrialState


def trial(number, state, value=None):
    frozen = optuna.trial.create_trial(state=state, value=value, params={}, distributions={})
    frozen.number = number
    return frozen


TRIALS = [
    trial(0, State.COMPLETE, 0.20),
    trial(1, State.PRUNED, 0.05),
    trial(2, State.COMPLETE, 0.30),
    trial(3, State.COMPLETE, 0.30),
    trial(4, State.RUNNING),
    trial(5, State.FAIL),
]


@pytest.mark.parametrize(
    "direction, postfix",
    [
        ("maximize", "best precision@10 0.3000 (trial 2)"),  # the first of equal bests
        ("minimize", "best precision@10 0.2000 (trial 0)"),
        (None, ""),  # several objectives: no single best
    ],
)
def test_counts_complete_and_pruned_trials_and_shows_the_best(direction, postfix):
    bar = StudyBar(10, "precision@10", direction, enabled=False)
    bar.update(TRIALS)
    assert (bar.finished, bar.target, bar.best) == (4, 10, postfix)
    bar.close()


def test_never_goes_back():
    bar = StudyBar(None, "precision@10", "maximize", enabled=False)
    bar.update(TRIALS)
    bar.update(TRIALS[:1])  # an older read of the study
    assert bar.finished == 4
    bar.close()
