"""Checkpoint plans, early stopping and what the pruner is shown; the pruners."""

import optuna
import pytest

from rectune.tuning.checkpoints import CheckpointPlan, Curve, best_of_folds
from rectune.tuning.pruners import RungPruner, make_pruner, warmup_iterations


def test_plans_by_how_the_space_treats_iterations():
    budget = CheckpointPlan.make("budget", 30, checkpoints=10, patience=3)
    assert budget.steps == (3, 6, 9, 12, 15, 18, 21, 24, 27, 30)
    assert budget.best_of and budget.patience == 3
    # Scored where every other trial is scored: at the choices up to its own.
    choices = CheckpointPlan.make("choices", 50, choices=(10, 20, 50, 100), patience=3)
    assert choices.steps == (10, 20, 50) and not choices.best_of and choices.patience == 0
    own = CheckpointPlan.make("own", 8, checkpoints=4)
    assert own.steps == (2, 4, 6, 8) and not own.best_of


def feed(curve, values):
    for step, value in values.items():
        curve.add(step, value, {"precision@10": value})


def test_a_budget_curve_shows_the_best_so_far_and_stops_after_its_patience():
    curve = Curve(CheckpointPlan.make("budget", 60, checkpoints=6, patience=2))
    feed(curve, {10: 0.10, 20: 0.30, 30: 0.25})
    assert [curve.reported(s) for s in (10, 20, 30)] == [0.10, 0.30, 0.30]
    assert not curve.should_stop()  # one checkpoint without a new best
    feed(curve, {40: 0.29})
    assert curve.should_stop() and curve.best_step == 20
    assert curve.skipped_steps() == [50, 60]


def test_ties_go_to_the_earliest_count_and_patience_zero_never_stops():
    curve = Curve(CheckpointPlan.make("budget", 40, checkpoints=4, patience=0))
    feed(curve, {10: 0.2, 20: 0.2, 30: 0.1, 40: 0.1})
    assert curve.best_step == 10 and not curve.should_stop()


def test_other_plans_show_the_value_at_each_step_and_never_stop():
    curve = Curve(CheckpointPlan.make("own", 20, checkpoints=2))
    feed(curve, {10: 0.3, 20: 0.1})
    assert curve.reported(20) == 0.1 and not curve.should_stop()


def test_folds_agree_on_the_count_with_the_best_mean():
    plan = CheckpointPlan.make("budget", 30, checkpoints=3)
    first, second = Curve(plan), Curve(plan)
    feed(first, {10: 0.30, 20: 0.20, 30: 0.10})
    feed(second, {10: 0.00, 20: 0.20})  # stopped where the first fold did not matter
    assert best_of_folds([first, second]) == 20  # means 0.15 and 0.20 at 10 and 20
    with pytest.raises(ValueError, match="share no checkpoint"):
        best_of_folds([first, Curve(plan)])


@pytest.mark.parametrize(
    ("name", "kind"), [("median", "MedianPruner"), ("percentile", "PercentilePruner")]
)
def test_optunas_pruners_wait_for_a_third_of_the_iterations_and_ten_trials(name, kind):
    pruner = make_pruner(name, 30)
    assert type(pruner).__name__ == kind
    assert warmup_iterations(30) == 10
    assert (pruner._n_warmup_steps, pruner._n_startup_trials, pruner._n_min_trials) == (10, 10, 5)


def finished(study, values, steps=(3, 12, 15), state=optuna.trial.TrialState.COMPLETE):
    for value in values:
        trial = study.ask()
        for step in steps:
            trial.report(value, step)
        if state == optuna.trial.TrialState.COMPLETE:
            study.tell(trial, value)
        else:
            study.tell(trial, state=state)


def test_the_rung_pruner_decides_once_against_every_finished_trial():
    study = optuna.create_study(direction="maximize", pruner=make_pruner("rung", 30))
    assert isinstance(study.pruner, RungPruner) and study.pruner.warmup == 10
    finished(study, [v / 100 for v in range(4, 14)])  # 10 complete: 0.04 .. 0.13
    early = study.ask()
    early.report(0.0, 3)
    assert not early.should_prune()  # within the warm-up
    # Pruned trials count: with four more at 0.00 .. 0.03 scored at 12, the 25th
    # percentile there is 0.0325, not 0.0625 (what the complete trials alone give).
    finished(study, [0.0, 0.01, 0.02, 0.03], steps=(12,), state=optuna.trial.TrialState.PRUNED)
    low, middle = study.ask(), study.ask()
    low.report(0.03, 12)
    middle.report(0.05, 12)
    assert low.should_prune() and not middle.should_prune()
    middle.report(0.0, 15)
    assert not middle.should_prune()  # decided at its rung (12) already


def test_the_rung_pruner_waits_for_ten_complete_trials_and_five_at_the_step():
    study = optuna.create_study(direction="maximize", pruner=make_pruner("rung", 30))
    finished(study, [0.1] * 9)
    trial = study.ask()
    trial.report(0.0, 12)
    assert not trial.should_prune()  # 9 complete trials
    finished(study, [0.1])
    assert trial.should_prune()
    other = study.ask()
    other.report(0.0, 18)  # a count no other trial was scored at
    assert not other.should_prune()
    with pytest.raises(ValueError, match="unknown pruner"):
        make_pruner("asha", 10)
    with pytest.raises(ValueError, match="quantile"):
        RungPruner(10, quantile=1.0)
