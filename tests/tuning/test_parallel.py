"""Parallel trials in trial order: rectune.tuning.parallel."""

import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from rectune.tuning.parallel import InTrialOrder, in_trial_order, optimize_in_order


def quiet_study(seed=0, **kwargs):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), **kwargs
    )


def slow_first(trial):
    """A value that needs the parameter; early trials take longest, so later ones end
    first and must wait to be told."""
    x = trial.suggest_float("x", -1, 1)
    time.sleep(0.06 if trial.number % 3 == 0 else 0.0)
    return -(x**2)


def test_trials_are_told_in_trial_order_and_proposed_from_those_before():
    study = quiet_study()
    seen_when_asked = {}

    def prepare(trial):
        trial.suggest_float("x", -1, 1)
        seen_when_asked[trial.number] = {
            t.number: t.state for t in study.get_trials(deepcopy=False) if t.number < trial.number
        }

    optimize_in_order(study, slow_first, n_jobs=3, n_trials=9, prepare=prepare)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 9
    completed = [t.datetime_complete for t in trials]
    assert completed == sorted(completed)
    # Trial n is asked once n - 3 is told: the two before it are always still running.
    for n in range(9):
        assert seen_when_asked[n] == {
            m: TrialState.COMPLETE if m <= n - 3 else TrialState.RUNNING for m in range(n)
        }


def test_the_same_seed_gives_the_same_study_whatever_the_timing():
    def jittery(trial):
        x = trial.suggest_float("x", -1, 1)
        y = trial.suggest_int("y", 0, 5)
        time.sleep((hash((x, threading.get_ident())) % 5) / 200)
        return -(x**2) - (y - 2) ** 2

    def table(study):
        return [(t.params, t.value) for t in study.trials]

    runs = []
    for _ in range(2):
        study = quiet_study(seed=3)
        optimize_in_order(
            study,
            jittery,
            n_jobs=2,
            n_trials=14,
            prepare=lambda t: (t.suggest_float("x", -1, 1), t.suggest_int("y", 0, 5)),
        )
        runs.append(table(study))
    assert runs[0] == runs[1]
    assert len({str(p) for p, _ in runs[0]}) == 14


def test_trials_do_run_at_once():
    running, most = [], []
    lock = threading.Lock()

    def objective(trial):
        with lock:
            running.append(trial.number)
            most.append(len(running))
        time.sleep(0.05)
        with lock:
            running.remove(trial.number)
        return 0.0

    optimize_in_order(quiet_study(), objective, n_jobs=3, n_trials=6)
    assert max(most) == 3


def test_the_pruner_sees_only_trials_told_before_the_trial_was_asked():
    seen = []

    class Recording(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            seen.append((trial.number, sorted(t.number for t in study.get_trials(deepcopy=False))))
            return False

    study = quiet_study(pruner=InTrialOrder(Recording(), 2))

    def objective(trial):
        trial.report(1.0, step=1)
        trial.should_prune()
        time.sleep(0.02 if trial.number % 2 else 0.0)
        return 1.0

    optimize_in_order(study, objective, n_jobs=2, n_trials=6)
    assert seen == [(n, list(range(n - 1))) for n in range(6)]


def test_in_trial_order_leaves_hyperband_and_sequential_studies_alone():
    median = optuna.pruners.MedianPruner()
    assert in_trial_order(median, 1) is median
    hyperband = optuna.pruners.HyperbandPruner()
    assert in_trial_order(hyperband, 4) is hyperband
    wrapped = in_trial_order(median, 3)
    assert isinstance(wrapped, InTrialOrder) and wrapped.pruner is median and wrapped.lag == 3


def test_caught_failures_and_pruned_trials_are_told_and_the_loop_goes_on():
    def objective(trial):
        if trial.number == 1:
            raise ValueError("bad fit")
        if trial.number == 2:
            trial.report(0.5, step=3)
            raise optuna.TrialPruned()
        return float(trial.number)

    study = quiet_study()
    optimize_in_order(study, objective, n_jobs=2, n_trials=4, catch=(ValueError,))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "PRUNED", "COMPLETE"]
    assert study.trials[2].value == 0.5  # a pruned trial's value is its last report


def test_an_uncaught_error_is_raised_once_the_trials_running_beside_it_end():
    def objective(trial):
        if trial.number == 0:
            time.sleep(0.05)
            raise RuntimeError("broken setup")
        time.sleep(0.2)
        return 1.0

    study = quiet_study()
    cancel = threading.Event()
    with pytest.raises(RuntimeError, match="broken setup"):
        optimize_in_order(study, objective, n_jobs=2, n_trials=5, cancel=cancel)
    assert not cancel.is_set()
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]


def test_ctrl_c_cancels_the_running_trials():
    cancel = threading.Event()

    def objective(trial):
        if trial.number == 0:
            time.sleep(0.05)
            raise KeyboardInterrupt
        # The trial running beside it stops once cancel is set, as a fit does.
        for _ in range(200):
            if cancel.is_set():
                raise KeyboardInterrupt
            time.sleep(0.01)
        return 1.0

    study = quiet_study()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        optimize_in_order(study, objective, n_jobs=2, n_trials=5, cancel=cancel)
    assert time.monotonic() - started < 1.5  # not the 2 s the other trial would take
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]


def test_a_set_cancel_left_from_an_earlier_call_is_cleared():
    cancel = threading.Event()
    cancel.set()
    study = quiet_study()
    optimize_in_order(
        study, lambda t: 0.0 if cancel.is_set() else 1.0, n_jobs=2, n_trials=2, cancel=cancel
    )
    assert [t.value for t in study.trials] == [1.0, 1.0]


def test_study_stop_in_a_callback_or_objective_stops_asking():
    study = quiet_study()

    def objective(trial):
        if trial.number == 3:
            trial.study.stop()
        return 0.0

    optimize_in_order(study, objective, n_jobs=2, n_trials=20)
    # Trial 4 was already running when 3 stopped the study; nothing after it started.
    assert len(study.trials) == 5

    other = quiet_study()
    optimize_in_order(
        other,
        lambda trial: 0.0,
        n_jobs=2,
        n_trials=20,
        callbacks=[lambda s, t: s.stop() if t.number == 1 else None],
    )
    assert len(other.trials) == 3


def test_the_timeout_stops_asking_and_lets_running_trials_end():
    study = quiet_study()

    def objective(trial):
        time.sleep(0.1)
        return 0.0

    optimize_in_order(study, objective, n_jobs=2, timeout=0.15)
    assert 2 <= len(study.trials) <= 4
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_a_value_optuna_refuses_fails_the_trial_as_in_optimize():
    study = quiet_study()
    with pytest.warns(UserWarning, match="nan"):
        optimize_in_order(study, lambda trial: float("nan"), n_jobs=2, n_trials=2)
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]


def test_ctrl_c_keeps_a_trial_that_ended_while_it_waited_to_be_told():
    def objective(trial):
        if trial.number == 0:
            time.sleep(0.1)
            raise KeyboardInterrupt
        return 1.0  # ends at once, and waits for trial 0 to be told

    study = quiet_study()
    with pytest.raises(KeyboardInterrupt):
        optimize_in_order(study, objective, n_jobs=2, n_trials=4)
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
