"""Progress bars: a tuning study's finished trials, a fit's iterations, users scored by
an evaluation, and the phases of a stage that have no bar of their own.

Every bar shows on a terminal only, so that logs and pipes get no bar updates; within
:func:`lines_above_bars`, log lines and warnings print above a bar, not through it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TextIO

import optuna
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

if TYPE_CHECKING:  # rectune.tuning imports this module
    from rectune.tuning.storage import StudyProgress


class StudyBar:
    """A tqdm bar of the study's finished trials (complete or pruned) and its best value.

    It counts every finished trial of the study: those recorded from a shared fit and
    those of other workers too. Optuna's own bar counts the trials of one ``optimize``
    call, so it stopped at 32 of 50 when 18 of the trials came from shared fits.

    Parameters
    ----------
    target : int, optional
        The finished trials the study is run to; ``None`` (a time limit only) counts up.
    objective : str
        The name shown beside the best value.
    direction : {"maximize", "minimize"}, optional
        The objective's direction; ``None`` (several objectives) shows no best value.
    enabled : bool
        Whether to show the bar at all; when enabled, it is shown on a terminal only.
    """

    def __init__(
        self, target: int | None, objective: str, direction: str | None, enabled: bool
    ) -> None:
        self.objective = objective
        self.direction = direction
        self.target = target
        self.enabled = enabled
        #: Finished trials shown, and the best value as shown beside them.
        self.finished = 0
        self.best = ""
        self._best_key: tuple[float, int] | None = None
        self._started = False
        self._lock = threading.Lock()  # parallel trials update it from their threads
        self._bar = tqdm(
            total=target, unit="trial", disable=None if enabled else True, dynamic_ncols=True
        )

    def update(self, trials: Sequence[optuna.trial.FrozenTrial], progress: StudyProgress) -> None:
        """Show the state of the study whose trials are ``trials`` (``progress`` counted
        from them)."""
        finished = progress.finished
        best = self._best(trials)
        with self._lock:
            if not self._started:
                # A resumed study's earlier trials are where the bar starts, not speed.
                self._started = True
                self._bar.initial = self._bar.n = self._bar.last_print_n = finished
            # Parallel trials may report an older read of the study after a newer one:
            # neither the count nor the best goes back.
            self.finished = max(self.finished, finished)
            if best is not None and (self._best_key is None or best[0] > self._best_key):
                self._best_key, trial = best
                self.best = f"best {self.objective} {trial.values[0]:.4f} (trial {trial.number})"
            self._bar.n = self.finished
            self._bar.set_postfix_str(self.best, refresh=False)
            self._bar.refresh()

    def _best(
        self, trials: Sequence[optuna.trial.FrozenTrial]
    ) -> tuple[tuple[float, int], optuna.trial.FrozenTrial] | None:
        """The best complete trial, with the key it is the best by (larger is better)."""
        if self.direction is None:
            return None
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            return None
        sign = 1 if self.direction == "maximize" else -1
        # The earliest of equal values, as Optuna's best_trial picks it.
        best = max(complete, key=lambda t: (sign * t.values[0], -t.number))
        return (sign * best.values[0], -best.number), best

    def close(self) -> None:
        self._bar.close()


def fit_progress(enabled: bool) -> bool:
    """Whether to pass ``show_progress=True`` to implicit's fit: its bar of iterations
    writes to stderr whatever that is, so only when stderr is a terminal."""
    return enabled and sys.stderr.isatty()


@contextlib.contextmanager
def iteration_bar(total: int, label: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A bar of a fit's ``total`` iterations, labelled ``label`` (implicit's own bar has
    no label); yields the ``callback`` of :func:`rectune.models.fit_model`, which gets the
    1-based count of iterations done."""
    with tqdm(
        total=total, desc=label, unit="iteration", disable=None if enabled else True, leave=False
    ) as bar:

        def advance(done: int) -> None:
            bar.update(done - bar.n)

        yield advance


def phase(label: str, enabled: bool) -> None:
    """Say on a terminal what a stage does next, where no bar shows it (opening the
    tracking store, logging a model): one line on stderr, ``label`` followed by "...".
    """
    if enabled and sys.stderr.isatty():
        tqdm.write(f"{label}...", file=sys.stderr)


@contextlib.contextmanager
def scoring_bar(total: int, label: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A bar of ``total`` users scored, labelled ``label``; yields the ``progress``
    callback of :class:`rectune.evaluation.metrics.Evaluator` (called from its scoring threads)."""
    lock = threading.Lock()
    with tqdm(
        total=total, desc=label, unit="user", disable=None if enabled else True, leave=False
    ) as bar:

        def advance(users: int) -> None:
            with lock:
                bar.update(users)

        yield advance


@contextlib.contextmanager
def lines_above_bars(loggers: Sequence[logging.Logger], enabled: bool) -> Iterator[None]:
    """Within the block, print the console lines of ``loggers`` and Python warnings
    above any progress bar (through ``tqdm.write``) instead of through it.

    Only when bars are ``enabled`` and stderr is a terminal, where a bar shows; elsewhere
    lines go their usual way, and ``warnings.catch_warnings(record=True)`` (pytest's
    capture) still records the warnings. Warnings are redirected by replacing
    ``warnings.showwarning`` for the process until the block ends: a ``catch_warnings``
    of another thread that outlasts the block would put the replacement back (a CLI
    process ends after the block). A warning shown into a file of its own
    (``warnings.showwarning(..., file=f)``) still goes there. Pass no logger whose
    handler writes through a stream of its own (MLflow's): tqdm would not replace that
    handler but add a second one, and every line would print twice.
    """
    if not (enabled and sys.stderr.isatty()):
        yield
        return
    show = warnings.showwarning

    def show_above(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if file is not None:
            show(message, category, filename, lineno, file, line)
            return
        text = warnings.formatwarning(message, category, filename, lineno, line)
        tqdm.write(text.rstrip("\n"), file=sys.stderr)

    warnings.showwarning = show_above
    try:
        with logging_redirect_tqdm(loggers=list(loggers)):
            yield
    finally:
        warnings.showwarning = show
