"""Benchmark: how much of a tuning study's wall time is model fitting and evaluation.

Runs a 50-trial ALS study (the default search space, TPE, the default pruner, early
stopping, MLflow logging on) on the default synthetic data, as
``hyperparameter_tuning.py --model als`` would, and divides its wall time by the time
spent inside implicit's fits and rectune's evaluations. The rest is Optuna, MLflow,
reports and rectune's own bookkeeping; the target is a ratio of at most 1.10.
``loop_over_fit_eval`` leaves out the per-study set-up and reports (the trial loop
alone).

The fits of a study run between evaluations, Optuna's and MLflow's work and other
fits, and can run slower there than back to back (caches, background threads, a
neighbour on a shared machine). So after the study every fit and evaluation is done
again, in the same order, in a plain loop (the same models to the iterations they
reached, evaluated by the same evaluators at the same points; no Optuna, no MLflow, no
reports), and ``wall_over_bare`` divides the study's wall time by that loop's: what
rectune's study costs against the hand-written loop doing the same work.

One cause of that slowdown is measured in the same run: MLflow's writes are made by a
background thread (``mlflow-writer``), and the CPU it spends while a fit or an
evaluation runs (``writer_in_fit_eval_s``) is taken from implicit's threads, which use
every core, so the fit slows down. ``contention.py`` measures the share of that CPU
time a fit loses: 0.5 to 1 on 2 cores (not bounded by 1: the fit's threads wait for
each other at the end of every pass over the users). So the fits and evaluations alone
would have taken about ``fit_s + eval_s`` less that share of ``writer_in_fit_eval_s``:
the overhead lies near ``wall_over_fit_eval`` (the share 0) and ``wall_over_alone``
(wall time over the fit and evaluation time less all the writer's CPU time in them: the
share 1), figures from one run, free of the noise between runs that the plain loop
suffers. They hold for ``--n-jobs 1``: with parallel trials the fit and evaluation
times add up over threads, and ``other_s``, ``overhead_ms_per_trial`` and the ratios to
them are left out. They need a thread CPU clock (``time.pthread_getcpuclockid``,
Linux); without one the writer reads 0 s.

Shared machines are noisy (the same fits vary by 10% from one minute to the next), so
each study runs ``--repeats`` times, settings taking turns, and the medians are the
figures.

The data is split and the MLflow store created before the timed study, as they are
after a user's first run; the one-off cost of a fresh MLflow store is printed apart.

With ``--compare-threads`` the same study also runs with ``--n-jobs 2`` (two trials at
once, one core each) to show which finishes a study sooner on this machine.

    python benchmarks/overhead.py
    python benchmarks/overhead.py --compare-threads --repeats 3 --json-out overhead.json
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import copy
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from _common import CONTEXT, json_option, machine, print_table, timed, write_json
from rectune import tracking
from rectune.cli import seed_option
from rectune.data.build import SourceSpec, build_dataset
from rectune.data.feedback import FeedbackConfig
from rectune.data.splits import SplitConfig
from rectune.data.synthetic import SyntheticConfig
from rectune.models import fit_model
from rectune.tuning import fitting, study
from rectune.tuning import report as reports
from rectune.tuning.plan import TuningConfig
from rectune.tuning.study import run_tuning

#: Figures left out with parallel trials: the fit and evaluation times add up over
#: threads, so what is left of the wall time is no figure (it goes negative), nor are
#: ratios to them (and the writer's time would count once per overlapping fit).
SERIAL_ONLY = (
    "other_s",
    "overhead_ms_per_trial",
    "loop_over_fit_eval",
    "wall_over_fit_eval",
    "wall_over_alone",
)


@dataclass
class FitRecord:
    """One fit of the study, and the evaluations made during it and after it."""

    unfitted: Any  # a copy of the model before fitting
    train: Any
    reached: int = 0  # the iterations it reached (a pruned fit stops early)
    #: (iterations done, evaluator, keyword arguments) for each evaluation in its callback.
    during: list = field(default_factory=list)
    #: (evaluator, keyword arguments) for each evaluation of the fitted model.
    after: list = field(default_factory=list)


class WriterClock:
    """CPU seconds spent so far by the tracker's background writer (``mlflow-writer``).

    Its clock is found on its first write (before that it has spent nothing worth
    counting), and read only while the study runs, so while the thread lives.
    """

    def __init__(self) -> None:
        self.clock: int | None = None

    def attach(self) -> None:
        """Called on the writer thread: watch its CPU clock from now on."""
        if self.clock is None and hasattr(time, "pthread_getcpuclockid"):
            self.clock = time.pthread_getcpuclockid(threading.get_ident())

    def now(self) -> float:
        return 0.0 if self.clock is None else time.clock_gettime(self.clock)


class Stopwatch:
    """Seconds inside implicit's fits (their callbacks left out) and inside evaluations
    (wherever made: pruning checkpoints, shared iteration counts, the trial's result),
    summed over threads; the MLflow writer's CPU seconds meanwhile; and the record of
    each fit, to do them again."""

    def __init__(self) -> None:
        self.fit = self.evaluate = self.reports = self.trials = 0.0
        self.writer = WriterClock()
        self.writer_cpu = self.writer_in_fit_eval = 0.0
        self.fits: list[FitRecord] = []
        self._lock = threading.Lock()
        self._thread = threading.local()  # each trial thread's fit in progress and last fit
        self._replaying = False

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + seconds)

    def timed_fit(self, model, train, callback=None):
        in_callback = writer_in_callback = 0.0
        record = FitRecord(copy.deepcopy(model), train)
        with self._lock:
            self.fits.append(record)
        self._thread.fit = record

        def timed_callback(done: int) -> None:
            nonlocal in_callback, writer_in_callback
            record.reached = done
            start, writer_start = time.perf_counter(), self.writer.now()
            try:
                callback(done)
            finally:
                in_callback += time.perf_counter() - start
                writer_in_callback += self.writer.now() - writer_start

        start, writer_start = time.perf_counter(), self.writer.now()
        try:
            return fit_model(model, train, callback=timed_callback if callback else None)
        finally:
            self.add("fit", time.perf_counter() - start - in_callback)
            # Like the fit's time, its callbacks left out (evaluations count their own).
            writer = self.writer.now() - writer_start - writer_in_callback
            self.add("writer_in_fit_eval", writer)
            record.reached = record.reached or model.iterations
            self._thread.fit, self._thread.last = None, record

    def record_evaluation(self, evaluator, kwargs: dict) -> None:
        current = getattr(self._thread, "fit", None)
        if current is not None:
            current.during.append((current.reached, evaluator, kwargs))
        elif getattr(self._thread, "last", None) is not None:
            self._thread.last.after.append((evaluator, kwargs))

    def bare_loop(self) -> float:
        """Seconds to do every fit and evaluation of the study again, in the same order,
        in a plain loop: the same models fitted to the iterations they reached, evaluated
        by the same evaluators at the same points, with no Optuna, MLflow or reports."""
        self._replaying = True
        started = time.perf_counter()
        for record in self.fits:
            model = copy.deepcopy(record.unfitted)
            model.iterations = record.reached
            checkpoints: dict[int, list] = {}
            for done, evaluator, kwargs in record.during:
                checkpoints.setdefault(done, []).append((evaluator, kwargs))

            def callback(done: int, model=model, checkpoints=checkpoints) -> None:
                for evaluator, kwargs in checkpoints.get(done, ()):
                    evaluator(model, **kwargs)

            fit_model(model, record.train, callback=callback if checkpoints else None)
            for evaluator, kwargs in record.after:
                evaluator(model, **kwargs)
        self._replaying = False
        return time.perf_counter() - started

    def evaluator_class(self):
        watch = self

        class TimedEvaluator(fitting.Evaluator):
            def __call__(self, model=None, **kwargs):
                if watch._replaying:
                    return super().__call__(model, **kwargs)
                watch.record_evaluation(self, kwargs)
                start, writer_start = time.perf_counter(), watch.writer.now()
                try:
                    return super().__call__(model, **kwargs)
                finally:
                    watch.add("evaluate", time.perf_counter() - start)
                    watch.add("writer_in_fit_eval", watch.writer.now() - writer_start)

        return TimedEvaluator


def run_study(folder: Path, n_trials: int, seed: int, n_jobs: int, name: str) -> dict:
    """One study under a stopwatch; its wall time and where it went."""
    watch = Stopwatch()
    original_evaluator = fitting.Evaluator
    original_reports = reports.write_study_reports

    def timed_reports(*args, **kwargs):
        value, seconds = timed(lambda: original_reports(*args, **kwargs))
        watch.add("reports", seconds)
        return value

    original_attempt = tracking.Tracker._attempt

    def watched_attempt(tracker, write):
        if threading.current_thread().name != "mlflow-writer":
            return original_attempt(tracker, write)
        watch.writer.attach()
        try:
            return original_attempt(tracker, write)
        finally:
            watch.writer_cpu = watch.writer.now()  # the thread's CPU time so far

    original_optimize = study.optimize

    def timed_optimize(*args, **kwargs):
        value, seconds = timed(lambda: original_optimize(*args, **kwargs))
        watch.add("trials", seconds)
        return value

    fitting.Evaluator = watch.evaluator_class()
    reports.write_study_reports = timed_reports
    study.optimize = timed_optimize
    tracking.Tracker._attempt = watched_attempt
    try:
        config = TuningConfig(
            model="als",
            n_trials=n_trials,
            seed=seed,
            n_jobs=n_jobs,
            data_dir=folder / "data",
            output=folder / "models" / "best_hyperparameters.json",
            study_name=name,
            experiment_name="overhead",
            show_progress=False,
        )
        result, wall = timed(lambda: run_tuning(config, fit=watch.timed_fit))
    finally:
        fitting.Evaluator = original_evaluator
        reports.write_study_reports = original_reports
        study.optimize = original_optimize
        tracking.Tracker._attempt = original_attempt
    pure = watch.fit + watch.evaluate
    alone = pure - watch.writer_in_fit_eval
    bare = watch.bare_loop()
    counts = result.counts
    row = {
        "n_jobs": n_jobs,
        "trials": counts["study_finished"],
        "fits": counts["fits"],
        "shared": counts["shared"],
        "pruned": counts["pruned"],
        "wall_s": round(wall, 2),
        "fit_s": round(watch.fit, 2),
        "eval_s": round(watch.evaluate, 2),
        "trial_loop_s": round(watch.trials, 2),
        "reports_s": round(watch.reports, 2),
        "writer_cpu_s": round(watch.writer_cpu, 2),
        "writer_in_fit_eval_s": round(watch.writer_in_fit_eval, 2),
        "bare_loop_s": round(bare, 2),
        "other_s": round(wall - pure - watch.reports, 2),
        # Everything but fitting and evaluating, spread over the trials: a figure that,
        # unlike the ratios, does not shrink when trials fit more.
        "overhead_ms_per_trial": round((wall - pure) / counts["study_finished"] * 1000, 1),
        "loop_over_fit_eval": round(watch.trials / pure, 3),
        "wall_over_fit_eval": round(wall / pure, 3),
        "wall_over_alone": round(wall / alone, 3),
        "wall_over_bare": round(wall / bare, 3),
        "best_precision@10": round(result.best_values["precision@10"], 4),
    }
    if n_jobs > 1:
        row.update(dict.fromkeys(SERIAL_ONLY))
    return row


@click.command(context_settings=CONTEXT)
@click.option("--n-trials", type=click.IntRange(min=1), default=50, show_default=True)
@seed_option("Seeds the data, the sampler and the models.")
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Run each study this many times (each in a new study); the medians are the figures.",
)
@click.option(
    "--compare-threads",
    is_flag=True,
    help="Also run the study with --n-jobs 2 (parallel trials, one core each).",
)
@json_option
def main(
    n_trials: int, seed: int, repeats: int, compare_threads: bool, json_out: Path | None
) -> None:
    """Wall time of a tuning study over the time spent fitting and evaluating."""
    settings = [1, 2] if compare_threads else [1]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="rectune-overhead-") as tmp:
        folder = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
        os.chdir(folder)  # artifacts land in the temporary folder's mlruns/
        build_dataset(
            SourceSpec(synthetic=SyntheticConfig(seed=seed)),
            FeedbackConfig(),
            SplitConfig(seed=seed),
            data_dir=folder / "data",
        )
        _, first_use = timed(lambda: run_study(folder, 1, seed, 1, "warm-up"))
        # Repeats take turns, so slow spells of a noisy machine fall on every setting.
        for run in range(1, repeats + 1):
            for n_jobs in settings:
                name = f"n_jobs-{n_jobs}-run-{run}"
                rows.append({"run": run, **run_study(folder, n_trials, seed, n_jobs, name)})
    medians = [median_row([r for r in rows if r["n_jobs"] == n]) for n in settings]
    print_table(rows, f"ALS study of {n_trials} trials on the default synthetic data")
    print_table(medians, f"Medians over {repeats} run(s)")
    click.echo(f"A fresh MLflow store's first 1-trial study took {first_use:.1f} s (once).")
    click.echo(machine())
    write_json(
        json_out,
        {"studies": rows, "medians": medians, "fresh_store_first_study_s": round(first_use, 2)},
    )


def median_row(rows: list[dict]) -> dict:
    """Each figure's median over repeated runs of one setting."""
    return {
        key: (
            rows[0][key]
            if key == "n_jobs" or rows[0][key] is None
            else statistics.median(r[key] for r in rows)
        )
        for key in rows[0]
        if key != "run"
    }


if __name__ == "__main__":
    main()
