"""The study's progress bar: finished trials of the whole study and the best value."""

import io
import sys
import threading
import time
import warnings
from typing import ClassVar

import optuna
import pytest

from rectune import progress
from rectune.progress import StudyBar, fit_progress, scoring_bar
from rectune.tuning.storage import StudyProgress

State = optuna.trial.TrialState


def trial(number, state, value=None):
    frozen = optuna.trial.create_trial(state=state, value=value, params={}, distributions={})
    frozen.number = number
    return frozen


def show(bar, trials):
    bar.update(trials, StudyProgress.of_trials(trials))


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
    show(bar, TRIALS)
    assert (bar.finished, bar.target, bar.best) == (4, 10, postfix)
    bar.close()


def test_never_goes_back():
    bar = StudyBar(None, "precision@10", "maximize", enabled=False)
    show(bar, TRIALS)
    show(bar, TRIALS[:1])  # an older read of the study
    assert (bar.finished, bar.best) == (4, "best precision@10 0.3000 (trial 2)")
    bar.close()


def test_a_resumed_study_starts_where_it_was():
    bar = StudyBar(10, "precision@10", "maximize", enabled=False)
    show(bar, TRIALS)  # the first read: 4 trials finished before this run
    assert (bar._bar.initial, bar._bar.n) == (4, 4)  # not 4 trials done at once
    bar.close()


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_implicit_shows_its_fit_bar_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not fit_progress(True)
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert fit_progress(True)
    assert not fit_progress(False)


class RacyBar:
    """A stand-in for tqdm whose update is not atomic, as tqdm's is not."""

    made: ClassVar[list] = []

    def __init__(self, **options):
        self.options, self.n = options, 0
        RacyBar.made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, users):
        seen = self.n
        time.sleep(0)  # let another thread in between the read and the write
        self.n = seen + users


def test_scoring_bar_counts_every_user_from_many_threads(monkeypatch):
    monkeypatch.setattr(progress, "tqdm", RacyBar)
    with scoring_bar(4000, "scoring model", enabled=True) as advance:
        workers = [
            threading.Thread(target=lambda: [advance(1) for _ in range(1000)]) for _ in range(4)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    bar = RacyBar.made[-1]
    assert bar.n == 4000
    assert bar.options == {
        "total": 4000,
        "desc": "scoring model",
        "unit": "user",
        "disable": None,  # tqdm's own test: shown on a terminal only
        "leave": False,
    }


class WrittenLines:
    """A stand-in for tqdm that records what ``tqdm.write`` prints."""

    lines: ClassVar[list] = []

    @classmethod
    def write(cls, text, file=None):
        cls.lines.append((text, file))


def test_warnings_print_above_the_bar_and_are_restored_after(monkeypatch):
    monkeypatch.setattr(progress, "tqdm", WrittenLines)
    WrittenLines.lines = []
    shown_elsewhere = []

    def show_before(message, category, filename, lineno, file=None, line=None):
        shown_elsewhere.append((str(message), file))

    monkeypatch.setattr(warnings, "showwarning", show_before)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    own_file = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with progress.lines_above_bars([], enabled=True):
            warnings.warn("the grid has a duplicate value", UserWarning, stacklevel=1)
            warnings.showwarning("to its own file", UserWarning, "x.py", 3, file=own_file)
        assert warnings.showwarning is show_before
        warnings.warn("after the block", UserWarning, stacklevel=1)
    ((text, file),) = WrittenLines.lines
    assert "test_progress.py:" in text
    assert "UserWarning: the grid has a duplicate value" in text
    assert not text.endswith("\n")  # tqdm.write adds the line's end
    assert file is sys.stderr
    assert shown_elsewhere == [("to its own file", own_file), ("after the block", None)]


@pytest.mark.parametrize(("enabled", "terminal"), [(False, True), (True, False)])
def test_warnings_are_left_alone_without_a_bar(monkeypatch, enabled, terminal):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    with warnings.catch_warnings(record=True) as recorded:  # as pytest's capture does
        warnings.simplefilter("always")
        with progress.lines_above_bars([], enabled=enabled):
            warnings.warn("recorded", UserWarning, stacklevel=1)
    assert [str(w.message) for w in recorded] == ["recorded"]


def test_a_fit_shows_a_labelled_bar_of_its_iterations_on_a_terminal(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress.iteration_bar(12, "fitting als", enabled=True) as advance:
        advance(1)
        assert "fitting als:" in terminal.getvalue() and "/12 [" in terminal.getvalue()
    monkeypatch.setattr(progress, "tqdm", RacyBar)
    with progress.iteration_bar(12, "fitting als", enabled=True) as advance:
        for done in range(1, 13):
            advance(done)  # fit_model's callback: the count of iterations done
    assert RacyBar.made[-1].n == 12
    assert RacyBar.made[-1].options["disable"] is None  # shown on a terminal only


def test_phases_without_a_bar_are_named_on_a_terminal_only(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    progress.phase("saving the model and logging it to MLflow", enabled=True)
    assert sys.stderr.getvalue() == "saving the model and logging it to MLflow...\n"
    for stream, enabled in ((Terminal(), False), (io.StringIO(), True)):
        monkeypatch.setattr(sys, "stderr", stream)
        progress.phase("logging", enabled=enabled)
        assert stream.getvalue() == ""
