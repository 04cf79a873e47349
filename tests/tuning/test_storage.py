"""Heartbeats from the moment a trial runs, and trials that never beat going stale."""

import os
import time

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

from rectune import tuning


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_silent_trial_is_stale_once_watched_for_the_grace_period():
    clock = Clock()
    silent = tuning.SilentTrials(3, clock)
    assert silent.stale(1, [7]) == []
    clock.now += 3  # not yet *more* than the grace period
    assert silent.stale(1, [7, 8]) == []
    clock.now += 0.5
    assert silent.stale(1, [7, 8]) == [7]  # 8 was first seen 0.5 s ago
    clock.now += 3
    assert silent.stale(1, [7, 8]) == [7, 8]


def test_a_trial_that_beats_is_forgotten_and_watched_afresh_if_silent_again():
    clock = Clock()
    silent = tuning.SilentTrials(3, clock)
    silent.stale(1, [7])
    clock.now += 2
    assert silent.stale(1, []) == []  # it beat (or finished)
    clock.now += 2
    assert silent.stale(1, [7]) == []  # 4 s after it was first seen, but watched afresh
    clock.now += 3.5
    assert silent.stale(1, [7]) == [7]


def test_silent_trials_are_watched_per_study():
    clock = Clock()
    silent = tuning.SilentTrials(3, clock)
    silent.stale(1, [7])
    clock.now += 2
    assert silent.stale(2, [8]) == []  # another study's look does not reset study 1's
    clock.now += 2
    assert silent.stale(1, [7]) == [7]
    assert silent.stale(2, [8]) == []


@pytest.fixture
def journal(tmp_path):
    return tuning.make_storage(str(tmp_path / "optuna.journal"), heartbeat=1)


def beat_of(storage, trial_id):
    return storage.get_trial(trial_id).system_attrs.get(tuning.HEARTBEAT_ATTR)


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
    monkeypatch.setattr(journal, "_silent", tuning.SilentTrials(3, clock))
    study = optuna.create_study(storage=journal, study_name="s")
    # Created by a worker that died before its first heartbeat (a plain journal storage
    # records none).
    plain = JournalStorage(JournalFileBackend(str(journal.path)))
    lost = optuna.load_study(study_name="s", storage=plain).ask()
    live = study.ask()
    tuning.fail_stale_trials(study)
    clock.now += 3.5
    journal.record_heartbeat(live._trial_id)
    tuning.fail_stale_trials(study)

    states = {t._trial_id: t.state.name for t in journal.get_all_trials(study._study_id)}
    assert states[lost._trial_id] == "FAIL"
    assert states[live._trial_id] == "RUNNING"
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == lost.number]
    assert [t.state.name for t in retry] == ["WAITING"]  # queued once more


def _journal_with_trials(path, n=3):
    storage = tuning.make_storage(str(path), heartbeat=1)
    study = optuna.create_study(storage=storage, study_name="s")
    for i in range(n):
        study.enqueue_trial({"x": float(i)})
        study.optimize(lambda t: t.suggest_float("x", 0, 9), n_trials=1)
    return [t.value for t in study.trials]


def _values(path):
    storage = tuning.make_storage(str(path), heartbeat=1)
    return [t.value for t in optuna.load_study(study_name="s", storage=storage).trials]


def test_a_torn_last_journal_record_is_cut_and_the_study_goes_on(tmp_path, caplog):
    path = tmp_path / "optuna.journal"
    values = _journal_with_trials(path)
    with open(path, "ab") as handle:
        handle.write(b'{"op_code":5,"worker_id":"dead-1","trial_id":2,"ke')  # killed here
    assert _values(path) == values
    assert "cut a torn last record (50 bytes)" in caplog.text
    assert path.read_bytes().endswith(b"}\n")
    # Appends go on from a whole line: a later process reads every record.
    storage = tuning.make_storage(str(path), heartbeat=1)
    optuna.load_study(study_name="s", storage=storage).optimize(lambda t: 7.0, n_trials=1)
    assert _values(path) == [*values, 7.0]


def test_a_record_appended_to_a_torn_one_is_mended(tmp_path, caplog):
    path = tmp_path / "optuna.journal"
    values = _journal_with_trials(path)
    lines = path.read_bytes().split(b"\n")
    # A torn record, and a later process's whole record appended to it on the same line.
    lines[-2] = b'{"op_code":5,"worker_id":"dead-1","tr' + lines[-2]
    path.write_bytes(b"\n".join(lines))
    assert _values(path) == values
    assert "mended 1 record(s)" in caplog.text


def test_a_lock_left_by_a_killed_process_is_removed_at_once(tmp_path, caplog):
    path = tmp_path / "optuna.journal"
    values = _journal_with_trials(path, n=1)
    lock = tmp_path / "optuna.journal.lock"
    lock.symlink_to(path)
    old = time.time() - 60
    os.utime(lock, (old, old), follow_symlinks=False)
    started = time.monotonic()
    storage = tuning.make_storage(str(path), heartbeat=1)
    optuna.load_study(study_name="s", storage=storage).optimize(lambda t: 1.0, n_trials=1)
    assert time.monotonic() - started < 5  # Optuna alone waits 30 s for it
    assert "removed the lock" in caplog.text and "by a killed process" in caplog.text
    assert _values(path) == [*values, 1.0]
