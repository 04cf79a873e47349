"""Benchmark: rectune's evaluator against implicit's ranking_metrics_at_k.

Fits one ALS model (64 factors, 15 iterations) on synthetic data of the chosen shape, then
evaluates the test split with both, checks that the metrics defined alike (MAP@K, nDCG@K)
agree, and prints users per second and evaluation time as a fraction of the fit. Ratios
come from one run on one machine; absolute seconds vary with the machine and its load.

    python benchmarks/evaluator.py                      # MovieLens-100k shape
    python benchmarks/evaluator.py --shape ml-20m       # 138k users x 27k items, 20M
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json
import math
import platform
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from implicit.evaluation import ranking_metrics_at_k

from rectune.data import FeedbackConfig, to_implicit_feedback, validate_interactions
from rectune.metrics import evaluate
from rectune.models import build_model, fit_model
from rectune.splits import SplitConfig, split_interactions
from rectune.synthetic import SyntheticConfig, generate_interactions

SHAPES = {
    "ml-100k": SyntheticConfig(),
    "ml-20m": SyntheticConfig(n_users=138_493, n_items=26_744, n_interactions=20_000_263),
}


def timed(func):
    start = time.perf_counter()
    value = func()
    return value, time.perf_counter() - start


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option(
    "--json-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the figures here as JSON.",
)
def main(shape: str, k: int, threads: int, json_out: Path | None) -> None:
    """Time rectune.metrics.evaluate against implicit.evaluation.ranking_metrics_at_k."""
    config = SHAPES[shape]
    frame, t_generate = timed(lambda: generate_interactions(config))
    interactions = to_implicit_feedback(validate_interactions(frame, shape), FeedbackConfig())
    matrices = split_interactions(interactions, SplitConfig())
    train, test = matrices["train"], matrices["test"]
    model = build_model("als", {"factors": 64, "iterations": 15}, device="cpu", num_threads=threads)
    _, t_fit = timed(lambda: fit_model(model, train))
    ours, t_ours = timed(lambda: evaluate(model, train, test, k, num_threads=threads))
    theirs, t_theirs = timed(
        lambda: ranking_metrics_at_k(
            model, train, test, K=k, show_progress=False, num_threads=threads
        )
    )
    # Scores are float32 and the two evaluators multiply with different kernels, so an
    # exact near-tie can round either way: on the ML-20M shape 2 of 138,493 users had two
    # items swapped, moving MAP@10 by 2e-9. Agreement is therefore relative, at 1e-6.
    agree = all(
        math.isclose(ours.means[name], theirs[name], rel_tol=1e-6) for name in ("map", "ndcg")
    )
    figures = {
        "shape": shape,
        "users_evaluated": ours.n_users,
        "items": test.shape[1],
        "train_nnz": int(train.nnz),
        "k": k,
        "threads": threads or os.cpu_count(),
        "generate_s": round(t_generate, 2),
        "fit_s": round(t_fit, 2),
        "rectune_eval_s": round(t_ours, 3),
        "implicit_eval_s": round(t_theirs, 3),
        "rectune_users_per_s": round(ours.n_users / t_ours),
        "implicit_users_per_s": round(ours.n_users / t_theirs),
        "speedup_vs_implicit": round(t_theirs / t_ours, 2),
        "rectune_eval_over_fit": round(t_ours / t_fit, 3),
        "implicit_eval_over_fit": round(t_theirs / t_fit, 3),
        "metrics_computed": {"rectune": 7, "implicit": 4},
        "map_ndcg_agree": agree,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
    }
    width = max(map(len, figures))
    for key, value in figures.items():
        click.echo(f"{key:<{width}}  {value}")
    if json_out:
        json_out.write_text(json.dumps(figures, indent=2) + "\n")
    if not agree:
        raise SystemExit("MAP/nDCG disagree with implicit")


if __name__ == "__main__":
    main()
