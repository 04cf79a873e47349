"""Trial runs ended from what Optuna recorded (a killed worker's, repaired by the next)."""

import optuna
import pytest

from rectune.tuning.runs import _finish_run_from_trial

State = optuna.trial.TrialState


class Recorded:
    """A stand-in for the tracker that keeps what a run was given."""

    def __init__(self):
        self.logged, self.ended = {}, None

    def log(self, run_id, **fields):
        self.logged = fields

    def end_run(self, run_id, status):
        self.ended = status


def finished(state, **fields):
    return optuna.trial.create_trial(state=state, params={}, distributions={}, **fields)


def test_a_repaired_pruned_run_gets_the_objective_at_the_last_value_its_pruner_saw():
    tracker = Recorded()
    trial = finished(State.PRUNED, intermediate_values={3: 0.10, 9: 0.11, 6: 0.12})
    _finish_run_from_trial(tracker, "run", trial, "precision@10")
    # The last step's value (9), not the largest or the last inserted, named for its split.
    assert tracker.logged["metrics"] == {"val_precision_at_10": pytest.approx(0.11)}
    assert tracker.logged["tags"]["pruned"] == "true" and tracker.ended == "FINISHED"


def test_a_repaired_complete_run_gets_its_metrics_named_for_the_validation_split():
    tracker = Recorded()
    metrics = {"precision@10": 0.2, "recall@10": 0.1, "fit_seconds": 1.5}
    trial = finished(State.COMPLETE, value=0.2, user_attrs={"metrics": metrics})
    _finish_run_from_trial(tracker, "run", trial, "precision@10")
    assert tracker.logged["metrics"] == {
        "val_precision_at_10": 0.2,
        "val_recall_at_10": 0.1,
        "fit_seconds": 1.5,  # a timing measures no split
    }


def test_a_pruned_trial_that_reported_nothing_logs_no_objective():
    tracker = Recorded()
    _finish_run_from_trial(tracker, "run", finished(State.PRUNED), "precision@10")
    assert tracker.logged["metrics"] == {}
