"""Heartbeats from the moment a trial runs, and trials that never beat going stale."""

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

from rectune import studies


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_silent_trial_is_stale_once_watched_for_the_grace_period():
    clock = Clock()
    silent = studies.SilentTrials(3, clock)
    assert silent.stale(1, [7]) == []
    clock.now += 3  # not yet *more* than the grace period
    assert silent.stale(1, [7, 8]) == []
    clock.now += 0.5
    assert silent.stale(1, [7, 8]) == [7]  # 8 was first seen 0.5 s ago
    clock.now += 3
    assert silent.stale(1, [7, 8]) == [7, 8]


def test_a_trial_that_beats_is_forgotten_and_watched_afresh_if_silent_again():
    clock = Clock()
    silent = studies.SilentTrials(3, clock)
    silent.stale(1, [7])
    clock.now += 2
    assert silent.stale(1, []) == []  # it beat (or finished)
    clock.now += 2
    assert silent.stale(1, [7]) == []  # 4 s after it was first seen, but watched afresh
    clock.now += 3.5
    assert silent.stale(1, [7]) == [7]


def test_silent_trials_are_watched_per_study():
    clock = Clock()
    silent = studies.SilentTrials(3, clock)
    silent.stale(1, [7])
    clock.now += 2
    assert silent.stale(2, [8]) == []  # another study's look does not reset study 1's
    clock.now += 2
    assert silent.stale(1, [7]) == [7]
    assert silent.stale(2, [8]) == []


@pytest.fixture
def journal(tmp_path):
    return studies.make_storage(str(tmp_path / "optuna.journal"), heartbeat=1)


def beat_of(storage, trial_id):
    return storage.get_trial(trial_id).system_attrs.get(studies.HEARTBEAT_ATTR)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_journal_trial_beats_from_its_creation_and_when_taken_from_the_queue(journal):
    study = optuna.create_study(storage=journal, study_name="s")
    asked = study.ask()
    assert beat_of(journal, asked._trial_id) is not None  # before any heartbeat thread

    study.enqueue_trial({"x": 1})
    waiting = study.trials[-1]
    assert waiting.state.name == "WAITING" and beat_of(journal, waiting._trial_id) is None
    taken = study.ask()
    assert taken._trial_id == waiting._trial_id
    assert beat_of(journal, taken._trial_id) is not None


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_journal_trial_that_never_beat_fails_after_the_grace_period(journal, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(journal, "_silent", studies.SilentTrials(3, clock))
    study = optuna.create_study(storage=journal, study_name="s")
    # Created by a worker that died before its first heartbeat (a plain journal storage
    # records none).
    plain = JournalStorage(JournalFileBackend(str(journal.path)))
    lost = optuna.load_study(study_name="s", storage=plain).ask()
    live = study.ask()
    studies.fail_stale_trials(study)
    clock.now += 3.5
    journal.record_heartbeat(live._trial_id)
    studies.fail_stale_trials(study)

    states = {t._trial_id: t.state.name for t in journal.get_all_trials(study._study_id)}
    assert states[lost._trial_id] == "FAIL"
    assert states[live._trial_id] == "RUNNING"
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == lost.number]
    assert [t.state.name for t in retry] == ["WAITING"]  # queued once more
