"""Benchmark: rectune's evaluator against implicit's ranking_metrics_at_k.

Fits one ALS model (64 factors, 15 iterations) on synthetic data of the chosen shape,
then evaluates the test split with both: users per second, peak memory above the
process's memory before the call, and evaluation time as a fraction of the fit. It
checks that the metrics defined alike (MAP@K, nDCG@K) agree and exits non-zero if not.
rectune computes all seven metrics in the one pass, implicit four. Both get the same
threads (numpy's BLAS runs single-threaded under OPENBLAS_NUM_THREADS=1, so rectune
spreads its blocks over threads itself).

    python benchmarks/evaluator.py                      # MovieLens-100k shape, seconds
    python benchmarks/evaluator.py --shape ml-20m       # 138k users x 27k items, ~8 min
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import math
from pathlib import Path

import click
from implicit.evaluation import ranking_metrics_at_k

from _common import (
    CONTEXT,
    SHAPES,
    json_option,
    machine,
    peak_memory,
    print_table,
    split_synthetic,
    timed,
    write_json,
)
from rectune.evaluation.evaluator import evaluate
from rectune.evaluation.metrics import METRICS
from rectune.models import build_model, fit_model


@click.command(context_settings=CONTEXT)
@click.option(
    "--shape",
    type=click.Choice(list(SHAPES)),
    default="ml-100k",
    show_default=True,
    help="Synthetic data shaped like this MovieLens release.",
)
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Threads for both evaluators and the fit (0: all cores).",
)
@json_option
def main(shape: str, k: int, threads: int, json_out: Path | None) -> None:
    """Time rectune.evaluation.metrics.evaluate against implicit.evaluation.ranking_metrics_at_k."""
    matrices, generate_s = timed(lambda: split_synthetic(shape))
    train, test = matrices["train"], matrices["test"]
    model = build_model("als", {"factors": 64, "iterations": 15}, device="cpu", num_threads=threads)
    _, fit_s = timed(lambda: fit_model(model, train))
    with peak_memory() as ours_memory:
        ours, ours_s = timed(lambda: evaluate(model, train, test, k, num_threads=threads))
    with peak_memory() as theirs_memory:
        theirs, theirs_s = timed(
            lambda: ranking_metrics_at_k(
                model, train, test, K=k, show_progress=False, num_threads=threads
            )
        )
    # Scores are float32 and the two evaluators multiply with different kernels, so an
    # exact near-tie can round either way (on the ML-20M shape a couple of users out of
    # 138,493 had two items swapped). Agreement is therefore relative, at 1e-6.
    agree = {
        name: math.isclose(ours.means[name], theirs[name], rel_tol=1e-6) for name in ("map", "ndcg")
    }
    rows = [
        {
            "evaluator": name,
            "metrics": metrics,
            "seconds": round(seconds, 3),
            "users_per_s": round(ours.n_users / seconds),
            "peak_mib": round(memory["peak_mib"], 1),
            "eval_over_fit": round(seconds / fit_s, 3),
        }
        for name, metrics, seconds, memory in (
            ("rectune", len(METRICS), ours_s, ours_memory),
            ("implicit", 4, theirs_s, theirs_memory),
        )
    ]
    print_table(
        rows,
        f"{shape}: {ours.n_users:,} users evaluated, {test.shape[1]:,} items, K={k}, "
        f"{threads or os.cpu_count()} threads; ALS fit {fit_s:.2f} s "
        f"(data generated in {generate_s:.0f} s)",
    )
    click.echo(
        f"rectune is {theirs_s / ours_s:.2f}x implicit's speed; MAP and nDCG agree: "
        f"{all(agree.values())}"
    )
    click.echo(machine())
    write_json(
        json_out,
        {
            "shape": shape,
            "users_evaluated": ours.n_users,
            "items": int(test.shape[1]),
            "fit_s": round(fit_s, 2),
            "rows": rows,
            "speedup_vs_implicit": round(theirs_s / ours_s, 2),
            "map_ndcg_agree": agree,
        },
    )
    if not all(agree.values()):
        raise SystemExit("MAP/nDCG disagree with implicit")


if __name__ == "__main__":
    main()
