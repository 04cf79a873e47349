"""Benchmark: the same tuning trial on the GPU against the CPU.

Fits ALS (64 factors, 15 iterations) on the tune split of synthetic data of the chosen
shape, on the CPU and, when implicit sees a CUDA device, on the GPU; scores both with
rectune's evaluator, and reports fit and evaluation seconds, the speed-up and whether
the two models' Precision@10 agree (they are not bit-equal: the GPU solver differs).
With no CUDA device it says so plainly and exits 0.

    python benchmarks/gpu.py --device cuda
    python benchmarks/gpu.py --device cuda --shape ml-20m
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pathlib import Path

import click
import implicit.gpu

from _common import (
    CONTEXT,
    SHAPES,
    json_option,
    machine,
    print_table,
    split_synthetic,
    timed,
    write_json,
)
from rectune.evaluation.evaluator import Evaluator
from rectune.models import build_model, cuda_available, fit_model

PARAMS = {"factors": 64, "iterations": 15}


@click.command(context_settings=CONTEXT)
@click.option(
    "--device",
    type=click.Choice(["cuda"]),
    default="cuda",
    show_default=True,
    help="The accelerator to compare with the CPU.",
)
@click.option("--shape", type=click.Choice(list(SHAPES)), default="ml-100k", show_default=True)
@json_option
def main(device: str, shape: str, json_out: Path | None) -> None:
    """One ALS trial (fit + evaluation) on the GPU against the CPU."""
    if not cuda_available():
        click.echo(
            "No GPU: implicit reports no CUDA device here (implicit.gpu.HAS_CUDA is "
            f"{implicit.gpu.HAS_CUDA}), so there is nothing to compare. Run this on a "
            "machine with an NVIDIA GPU and implicit's CUDA build."
        )
        write_json(json_out, {"device": device, "gpu": None, "reason": "no CUDA device"})
        return
    matrices = split_synthetic(shape)
    train, validation = matrices["train_val"], matrices["validation"]
    evaluator = Evaluator(train, validation, 10)
    rows = []
    for name in ("cpu", device):
        model = build_model("als", PARAMS, device=name, seed=42)
        _, fit_s = timed(lambda model=model: fit_model(model, train))
        result, eval_s = timed(lambda model=model: evaluator(model))
        rows.append(
            {
                "device": name,
                "fit_s": round(fit_s, 3),
                "eval_s": round(eval_s, 3),
                "precision@10": round(result.means["precision"], 4),
            }
        )
    rows[1]["fit_speedup"] = round(rows[0]["fit_s"] / rows[1]["fit_s"], 1)
    rows[0]["fit_speedup"] = 1.0
    print_table(rows, f"ALS {PARAMS} on {shape}")
    click.echo(machine())
    write_json(json_out, {"shape": shape, "rows": rows})


if __name__ == "__main__":
    main()
