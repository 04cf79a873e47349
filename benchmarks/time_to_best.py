"""Benchmark: time and fits until each sampler finds a trial within 1% of the best.

1. **Exhaustive pass.** Every combination of the seed plan's grid (``--model``,
   ``--search-space grid``) is fitted once, to its largest ``iterations`` choice, on
   the default synthetic data's tune split; through the fit callback, Precision@10 on
   validation is recorded at every iteration count a trial could stop or be scored at
   (its ``iterations`` choices and pruning checkpoints), with the fit and evaluation
   seconds up to there. implicit iterates deterministically, so these are the values
   separate fits would give. The best value over the whole grid is the optimum.
2. **Replay.** For each sampler (tpe, random, grid, gp, qmc), with the median pruner and
   without, and for 5 seeds, an Optuna study runs rectune's own samplers, pruner and
   iteration sharing against that table: a trial's cost is the recorded fit and
   evaluation seconds up to where it finished or was pruned, plus the sampler's own
   time, measured. The study stops at the first trial within 1% of the optimum. This
   is a tabular benchmark (as in HPOBench): the seconds are those the fits took in
   step 1, and the medians over seeds are what the table reports.
3. **Sampled users (--eval-users).** The exhaustive pass also scores every combination
   on seeded samples of validation users; the table shows how often the best
   combination by the sample is the best by all users, and what the sampled pick
   loses.

    python benchmarks/time_to_best.py                  # ALS grid, about a minute
    python benchmarks/time_to_best.py --model bpr      # BPR grid, a few minutes
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import importlib.util
import itertools
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
import optuna

from _common import CONTEXT, json_option, machine, print_table, split_synthetic, write_json
from rectune.evaluation.evaluator import Evaluator
from rectune.evaluation.ranking import sample_users
from rectune.models import build_model, fit_model
from rectune.tuning import sharing
from rectune.tuning.checkpoints import checkpoint_iterations
from rectune.tuning.pruners import make_pruner
from rectune.tuning.samplers import make_sampler
from rectune.tuning.search_space import load_search_space
from rectune.tuning.trial import find_completed

SAMPLERS = ("tpe", "random", "grid", "gp", "qmc")
CHECKPOINTS = 5


@dataclass
class Curve:
    """One combination's values and cumulative seconds at each recorded iteration."""

    value: dict[int, float] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)
    sampled: dict[tuple[int, int], dict[int, float]] = field(default_factory=dict)


def exhaustive(model, space, train, validation, seed, sample_sizes, sample_seeds):
    """Fit every non-iteration combination once; record the curve of each."""
    grid = space.grid()
    choices = sorted(grid.pop("iterations"))
    steps = set(choices)
    for v in choices:
        steps |= checkpoint_iterations(v, CHECKPOINTS)
    evaluator = Evaluator(train, validation, 10)
    samples = {
        (n, s): Evaluator(train, validation, 10, users=sample_users(validation, n, s))
        for n in sample_sizes
        for s in sample_seeds
    }
    names = sorted(grid)
    table = {}
    for combo in itertools.product(*(grid[n] for n in names)):
        params = {**space.fixed, **dict(zip(names, combo, strict=True))}
        fitted = build_model(model, {**params, "iterations": max(choices)}, device="cpu", seed=seed)
        curve = Curve()
        clock = {"start": time.perf_counter(), "paused": 0.0}

        def callback(done, fitted=fitted, curve=curve, clock=clock):
            if done not in steps:
                return
            pause = time.perf_counter()
            fit_so_far = pause - clock["start"] - clock["paused"]
            started = time.perf_counter()
            curve.value[done] = evaluator(fitted).means["precision"]
            eval_seconds = time.perf_counter() - started
            curve.seconds[done] = fit_so_far + eval_seconds  # one evaluation per step
            if done in choices:
                for key, sample in samples.items():
                    curve.sampled.setdefault(key, {})[done] = sample(fitted).means["precision"]
            clock["paused"] += time.perf_counter() - pause

        fit_model(fitted, train, callback=callback)
        table[tuple(sorted(params.items()))] = curve
        click.echo(f"  fitted {params}", err=True)
    return table, choices


def replay(space, table, choices, optimum, sampler_name, pruning, seed, max_trials):
    """One study against the table: fits and seconds until within 1% of the optimum."""
    sampler = make_sampler(sampler_name, seed, space)
    pruner = make_pruner("median" if pruning else "none", max(choices))
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    spent = {"fits": 0, "seconds": 0.0}
    target = 0.99 * optimum
    found = {"at": None}

    def objective(trial):
        params = space.suggest(trial)
        trial.set_user_attr("params", params)
        v = int(params["iterations"])
        curve = table[tuple(sorted({k: x for k, x in params.items() if k != "iterations"}.items()))]
        trials = study.get_trials(deepcopy=False)
        previous = find_completed(trials, params, exclude=trial.number)
        if previous is not None:
            return previous.value  # rectune reuses it: no fit
        spent["fits"] += 1
        shared = sharing.pending_iterations(trials, params, choices, None)
        reached = v
        try:
            for step in sorted(checkpoint_iterations(v, CHECKPOINTS)):
                reached = step
                trial.report(curve.value[step], step)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            value = curve.value[v]
        finally:
            spent["seconds"] += curve.seconds[reached]
            for w in shared:
                if w <= reached:
                    study.add_trial(
                        optuna.trial.create_trial(
                            params={
                                n: (w if n == "iterations" else params[n]) for n in trial.params
                            },
                            distributions=trial.distributions,
                            value=curve.value[w],
                            user_attrs={"params": {**params, "iterations": w}},
                            system_attrs=(
                                sampler.system_attrs({**params, "iterations": w})
                                if isinstance(sampler, sharing.GridSampler)
                                else None
                            ),
                        )
                    )
                    if curve.value[w] >= target and found["at"] is None:
                        found["at"] = dict(spent)
        if value >= target and found["at"] is None:
            found["at"] = dict(spent)
        return value

    def stop_when_found(study, _trial):
        if found["at"] is not None:
            study.stop()

    started = time.perf_counter()
    study.optimize(objective, n_trials=max_trials, callbacks=[stop_when_found])
    machinery = time.perf_counter() - started
    if found["at"] is None:
        return None
    return found["at"]["fits"], found["at"]["seconds"] + machinery


@click.command(context_settings=CONTEXT)
@click.option("--model", type=click.Choice(["als", "bpr"]), default="als", show_default=True)
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True)
@click.option(
    "--max-trials",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="A replay that has not found the optimum by then counts as not found.",
)
@json_option
def main(model: str, seeds: int, max_trials: int, json_out: Path | None) -> None:
    """Fits and seconds each sampler needs to come within 1% of the grid's optimum."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_search_space(model, "grid")  # the seed plan's grid, enumerable
    matrices = split_synthetic("ml-100k")
    train, validation = matrices["train_val"], matrices["validation"]
    sample_sizes, sample_seeds = (100, 300), range(5)
    started = time.perf_counter()
    table, choices = exhaustive(model, space, train, validation, 42, sample_sizes, sample_seeds)
    exhaustive_s = time.perf_counter() - started
    points = {(key, v): curve.value[v] for key, curve in table.items() for v in choices}
    best_point = max(points, key=points.get)
    optimum = points[best_point]
    rows = []
    for sampler_name in SAMPLERS:
        if sampler_name == "gp" and importlib.util.find_spec("torch") is None:
            rows.append({"sampler": "gp", "pruning": "-", "note": "skipped: needs torch"})
            continue
        for pruning in (False, True):
            results = [
                replay(space, table, choices, optimum, sampler_name, pruning, seed, max_trials)
                for seed in range(1, seeds + 1)
            ]
            found = [r for r in results if r is not None]
            rows.append(
                {
                    "sampler": sampler_name,
                    "pruning": "median" if pruning else "none",
                    "found": f"{len(found)}/{seeds}",
                    "median_fits": statistics.median(f for f, _ in found) if found else None,
                    "median_seconds": (
                        round(statistics.median(s for _, s in found), 2) if found else None
                    ),
                    "note": "",
                }
            )
    print_table(
        rows,
        f"{model.upper()} grid of {len(points)} combinations ({len(table)} fits of "
        f"{max(choices)} iterations, {exhaustive_s:.0f} s); optimum P@10 {optimum:.4f} at "
        f"{dict(best_point[0])} x {best_point[1]} iterations; medians over {seeds} seeds",
    )
    agreement = []
    for n in sample_sizes:
        picks = []
        for s in sample_seeds:
            sampled = {(key, v): table[key].sampled[(n, s)][v] for key, v in points}
            picks.append(max(sampled, key=sampled.get))
        agreement.append(
            {
                "eval_users": n,
                "of_users": int((np.diff(validation.indptr) > 0).sum()),
                "same_best": f"{sum(p == best_point for p in picks)}/{len(picks)}",
                "mean_loss_of_pick": round(float(np.mean([optimum - points[p] for p in picks])), 4),
                "worst_pick_within": f"{100 * max(1 - points[p] / optimum for p in picks):.1f}%",
            }
        )
    print_table(agreement, "Best combination by a sample of validation users vs by all of them")
    click.echo(machine())
    write_json(
        json_out,
        {
            "model": model,
            "optimum": optimum,
            "exhaustive_seconds": round(exhaustive_s, 1),
            "samplers": rows,
            "eval_users": agreement,
        },
    )


if __name__ == "__main__":
    main()
