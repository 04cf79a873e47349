"""Fitting one trial: its model fitted on each fold, scored at its checkpoints (and at
the counts iteration sharing records), reported to the pruner, stopped early."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from rectune.data.splits import per_user_folds
from rectune.data.store import SplitDataset
from rectune.evaluation.evaluator import Evaluator
from rectune.evaluation.ranking import sample_users
from rectune.models import DEFAULT_HYPERPARAMETERS, build_model
from rectune.tracking import Tracker
from rectune.tuning import sharing
from rectune.tuning.attributes import BEST_ITERATION, FIT_SECONDS, METRICS
from rectune.tuning.checkpoints import CheckpointPlan, Curve, best_of_folds, mean_of_folds
from rectune.tuning.plan import Objective, TuningConfig
from rectune.tuning.search_space import SearchSpace
from rectune.tuning.sharing import IterationSharing, SharedTrial
from rectune.tuning.trial_run import TrialRun, trial_metrics


class StopFit(Exception):
    """Raised by a fit's callback to end the fit early (early stopping)."""


@dataclass
class FitRecord:
    """What one fit of a trial measured: its scores at checkpoints, its metrics, and
    those at shared counts."""

    curve: Curve
    metrics: dict[str, float] = field(default_factory=dict)
    fit_seconds: float = 0.0
    eval_seconds: float = 0.0
    #: Metrics (with fit and eval seconds) at each shared iteration count reached.
    shared: dict[int, dict[str, float]] = field(default_factory=dict)
    #: What the pruner was shown at each checkpoint (first fold).
    reported: dict[int, float] = field(default_factory=dict)


class FoldScorer:
    """The folds a study's trials fit on, and one evaluator per fold for the whole study:
    the data is prepared once and the score buffers are reused by every trial.

    ``cv_folds > 1`` gives per-user folds of ``train``; otherwise the one fold is
    (``train_val``, ``validation``).
    """

    def __init__(
        self,
        config: TuningConfig,
        dataset: SplitDataset,
        objectives: tuple[Objective, ...],
        eval_threads: int,
    ) -> None:
        if config.cv_folds > 1:
            self.folds = per_user_folds(dataset.train, config.cv_folds, config.seed)
        else:
            self.folds = [(dataset.train_val, dataset.validation)]
        #: Every K scored; one evaluation at the largest gives them all.
        self.ks = sorted({o.k for o in objectives if o.k is not None} | {config.k})
        self.evaluators = [
            Evaluator(
                train,
                held_out,
                max(self.ks),
                users=(
                    sample_users(held_out, config.eval_users, config.seed)
                    if config.eval_users
                    else None
                ),
                num_threads=eval_threads,
            )
            for train, held_out in self.folds
        ]

    def metrics(self, fold: int, model: Any) -> dict[str, float]:
        """Every metric at every K asked for, from one evaluation at the largest K."""
        result = self.evaluators[fold](model)
        return {name: value for k in self.ks for name, value in result.at(k).named().items()}


class TrialFitter:
    """Fits trials: builds each fold's model, scores it on the way, stops it early.

    One per study worker; :meth:`fit_trial` fits one trial and logs its result to the
    trial's MLflow run.
    """

    def __init__(
        self,
        config: TuningConfig,
        space: SearchSpace,
        objectives: tuple[Objective, ...],
        scorer: FoldScorer,
        sharing: IterationSharing,
        tracker: Tracker,
        *,
        fit: Callable[..., Any],
        device: str,
        num_threads: int | None,
        cancelled: threading.Event,
    ) -> None:
        self.config = config
        self.space = space
        self.objectives = objectives
        self.scorer = scorer
        self.sharing = sharing
        self.tracker = tracker
        self.fit = fit
        self.device = device
        self.num_threads = num_threads
        self.cancelled = cancelled

    def fit_trial(
        self,
        trial: optuna.Trial,
        params: dict[str, Any],
        run: TrialRun,
        trials: list[optuna.trial.FrozenTrial],
    ) -> float | tuple[float, ...]:
        """Fit ``trial`` on every fold and complete its ``run`` with the result; return
        its objective values (raises :class:`optuna.TrialPruned` when pruned, its
        result logged)."""
        plan = self._plan(params)
        shared = self.sharing.pending(trials, params)
        fits: list[FitRecord] = []
        recorded: list[SharedTrial] = []
        try:
            for fold, (train, _) in enumerate(self.scorer.folds):
                fits.append(FitRecord(Curve(plan)))
                self._fit_fold(trial, fold, train, params, plan, shared, fits, recorded)
        except optuna.TrialPruned:
            reported = fits[0].reported if fits else {}
            last = reported[max(reported)] if reported else None
            run.log_pruned(self.objectives[0].name, self._history(fits), last)
            raise
        finally:
            # What the fit recorded on its way stands, however the fit ended.
            self.sharing.complete(trial, recorded)
        metrics = self._log_result(trial, params, plan, fits, run)
        values = tuple(metrics[o.name] for o in self.objectives)
        return values if self.config.multi_objective else values[0]

    def _fit_fold(
        self,
        trial: optuna.Trial,
        fold: int,
        train: Any,
        params: dict[str, Any],
        plan: CheckpointPlan,
        shared: list[int],
        fits: list[FitRecord],
        recorded: list[SharedTrial],
    ) -> None:
        """Fit fold ``fold`` (its record is ``fits[fold]``), scored on the way."""
        config = self.config
        model = build_model(
            config.model, params, device=self.device, seed=config.seed, num_threads=self.num_threads
        )
        record = fits[fold]
        callback = self._fit_callback(
            trial, model, fold, params, plan, shared, fits, recorded.append
        )
        with contextlib.suppress(StopFit):  # stopped early: the curve says where
            self.fit(model, train, callback=callback)
        record.fit_seconds = callback.fit_seconds()
        if fold == 0 and record.curve.skipped_steps():
            self._report_skipped(trial, record)
        if not plan.best_of:
            # The score at the end: the last checkpoint's when it was the end.
            end = record.curve.metrics.get(plan.iterations)
            if end is None:
                started = time.perf_counter()
                end = self.scorer.metrics(fold, model)
                record.eval_seconds += time.perf_counter() - started
            record.metrics = {k: v for k, v in end.items() if k != FIT_SECONDS}

    def _log_result(
        self,
        trial: optuna.Trial,
        params: dict[str, Any],
        plan: CheckpointPlan,
        fits: list[FitRecord],
        run: TrialRun,
    ) -> dict[str, float]:
        """The trial's metrics (mean over folds), stored with the trial and logged to its
        run, which ends FINISHED; with early stopping, at its best checkpoint."""
        tags = {}
        if plan.best_of:
            # Early stopping: the trial stands for its best checkpoint's iteration count.
            best = best_of_folds([f.curve for f in fits])
            for f in fits:
                f.metrics = {k: v for k, v in f.curve.metrics[best].items() if k != FIT_SECONDS}
            trial.set_user_attr(BEST_ITERATION, best)
            params = {**params, sharing.ITERATIONS: best}
            tags["stopped_at_iteration"] = fits[0].curve.last_step
        if self.config.cv_folds > 1:
            for fold, f in enumerate(fits):
                self.tracker.log(
                    run.run_id,
                    metrics={
                        f"{name}_by_fold": value for name, value in trial_metrics(f.metrics).items()
                    },
                    step=fold,
                )
        metrics = mean_of_folds([f.metrics for f in fits])
        metrics[FIT_SECONDS] = sum(f.fit_seconds for f in fits)
        metrics["eval_seconds"] = sum(f.eval_seconds for f in fits)
        trial.set_user_attr(METRICS, metrics)
        run.complete(params, metrics, tags=tags, history=self._history(fits))
        return metrics

    def _plan(self, params: dict[str, Any]) -> CheckpointPlan:
        """Where this trial's fit is scored (see :mod:`rectune.tuning.checkpoints`)."""
        iterations = int(
            params.get("iterations", DEFAULT_HYPERPARAMETERS[self.config.model]["iterations"])
        )
        if sharing.ITERATIONS not in self.space.distributions:
            kind = "budget"
        elif self.sharing.choices is not None:
            kind = "choices"
        else:
            kind = "own"
        return CheckpointPlan.make(
            kind,
            iterations,
            checkpoints=self.config.checkpoints,
            choices=self.sharing.choices or (),
            patience=self.config.patience,
        )

    def _report_skipped(self, trial: optuna.Trial, record: FitRecord) -> None:
        """Show the pruner a fit that stopped early at the checkpoints it skipped, with
        its best (so later trials are compared with it there too)."""
        if self.config.multi_objective:
            return
        best = record.curve.values[record.curve.best_step]
        for step in record.curve.skipped_steps():
            record.reported[step] = best
            trial.report(best, step=step)

    def _history(self, fits: list[FitRecord]) -> dict[str, dict[int, float]]:
        """The intermediate values reported to the pruner, as an MLflow metric history
        (logged with the trial's result: one call instead of one per checkpoint)."""
        if not fits or not fits[0].reported:
            return {}
        return {self.objectives[0].name: fits[0].reported}

    def _fit_callback(self, trial, model, fold, params, plan, shared, fits, recorded):
        """Called after every iteration: scores the model at the plan's checkpoints and
        at the shared iteration counts; reports to the pruner (first fold, one
        objective); records each shared count as a trial once the last fold reaches it;
        stops a budget fit early (first fold by its patience, later ones where the
        first stopped); keeps fit time apart."""
        report = fold == 0 and not self.config.multi_objective
        last_fold = fold == len(self.scorer.folds) - 1
        record = fits[fold]
        # Later folds of a budget fit go as far as the first did, to compare at its counts.
        stop_at = fits[0].curve.last_step if fold > 0 and plan.best_of else None
        marks = set(plan.steps) if (report or plan.best_of) else set()
        if stop_at is not None:
            marks = {m for m in marks if m <= stop_at}
        shared = set(shared)
        objective = self.objectives[0]
        started = time.perf_counter()
        paused = 0.0

        def callback(done: int) -> None:
            nonlocal paused
            if self.cancelled.is_set():
                raise KeyboardInterrupt  # the trial is stopped, as by Ctrl-C
            if done not in marks and done not in shared:
                return
            pause = time.perf_counter()
            fit_so_far = pause - started - paused
            metrics = self.scorer.metrics(fold, model)
            if done in shared:
                record.shared[done] = {**metrics, FIT_SECONDS: fit_so_far}
            if done in marks:
                value = metrics[objective.name]
                record.curve.add(done, value, {**metrics, FIT_SECONDS: fit_so_far})
                if report:
                    shown = record.curve.reported(done)
                    record.reported[done] = shown  # logged to MLflow with the trial's result
                    trial.report(shown, step=done)
            if done in shared:
                record.shared[done]["eval_seconds"] = time.perf_counter() - pause
                if last_fold:
                    shared_trial = self.sharing.record(trial, params, fits, done)
                    if shared_trial is not None:
                        recorded(shared_trial)
            spent = time.perf_counter() - pause
            paused += spent
            if done not in shared:
                record.eval_seconds += spent
            if report and done in marks and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at iteration {done} with {shown:.4f}")
            if (fold == 0 and record.curve.should_stop()) or (
                stop_at is not None and done >= stop_at
            ):
                raise StopFit

        callback.fit_seconds = lambda: time.perf_counter() - started - paused
        return callback
