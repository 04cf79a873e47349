"""Benchmark: how much of a busy neighbour's CPU time an ALS fit loses.

A tuning study makes its MLflow writes in a background thread while the next model
fits, and implicit's ALS uses every core, so the two share the cores. ``overhead.py``
reports the study's overhead with none and with all of the writer's CPU time during the
fits taken out of them; this script measures the share a fit does lose. A burner thread
that keeps a core busy for ``--duty`` of every 20 ms (pure Python holding the GIL, like
the writer's SQLAlchemy work) runs beside a fit as long as the study's average one;
fits alone and beside the burner take turns. The burner's CPU clock is read as the fit
starts and ends (the CPU time it got, less than ``duty`` of the fit when the fit's
threads crowd it out), and the medians give

    lost_share = (fit beside the burner - fit alone) / burner CPU time during that fit

the wall time the fit lost per second of CPU the burner spent meanwhile. It is not
bounded by 1 (once it came out at 1.04): the fit's threads wait for each other at the
end of every pass over the users. Needs a thread CPU clock
(``time.pthread_getcpuclockid``, Linux).

    python benchmarks/contention.py
    python benchmarks/contention.py --duty 0.05 --duty 0.2 --repeats 25
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import statistics
import threading
import time
from pathlib import Path

import click

from _common import CONTEXT, json_option, machine, print_table, split_synthetic, write_json
from rectune.cli import seed_option
from rectune.models import build_model, fit_model

#: A fit about as long as the average fit of overhead.py's study (0.4 s on 2 cores).
PARAMS = {"factors": 64, "iterations": 50}
#: The burner's cycle: busy for ``duty`` of it, asleep for the rest.
CYCLE_S = 0.02


def burn(ready, stop, duty: float) -> None:
    """Keep a core busy for ``duty`` of every cycle until ``stop`` is set."""
    ready.set()
    while not stop.is_set():
        busy_until = time.perf_counter() + CYCLE_S * duty
        while time.perf_counter() < busy_until:
            pass
        time.sleep(CYCLE_S * (1 - duty))


def fit_seconds(train, seed: int) -> float:
    model = build_model("als", PARAMS, seed=seed)
    start = time.perf_counter()
    fit_model(model, train)
    return time.perf_counter() - start


def fit_beside_burner(train, seed: int, duty: float) -> tuple[float, float]:
    """One fit's wall time with a burner thread running, and the burner's CPU time
    during it."""
    ready, stop = threading.Event(), threading.Event()
    burner = threading.Thread(target=burn, args=(ready, stop, duty), daemon=True)
    burner.start()
    ready.wait()
    clock = time.pthread_getcpuclockid(burner.ident)
    try:
        before = time.clock_gettime(clock)
        seconds = fit_seconds(train, seed)
        return seconds, time.clock_gettime(clock) - before
    finally:
        stop.set()
        burner.join()


@click.command(context_settings=CONTEXT)
@click.option(
    "--duty",
    type=click.FloatRange(0.01, 0.9),
    multiple=True,
    default=(0.1, 0.3),
    show_default=True,
    help="Share of a core the burner keeps busy; repeat to try several.",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=3),
    default=15,
    show_default=True,
    help="Fits alone and beside the burner, taking turns; the medians are the figures.",
)
@seed_option("Seeds the data and the model.")
@json_option
def main(duty: tuple[float, ...], repeats: int, seed: int, json_out: Path | None) -> None:
    """The share of a busy neighbour's CPU time that an ALS fit loses."""
    train = split_synthetic("ml-100k", seed)["train_val"]
    fit_seconds(train, seed)  # warm-up
    rows = []
    for share in duty:
        alone, beside, burned = [], [], []
        for _ in range(repeats):  # taking turns, so slow spells fall on both
            alone.append(fit_seconds(train, seed))
            seconds, cpu = fit_beside_burner(train, seed, share)
            beside.append(seconds)
            burned.append(cpu)
        alone_s, beside_s = statistics.median(alone), statistics.median(beside)
        burner_s = statistics.median(burned)
        rows.append(
            {
                "duty": share,
                "fit_alone_s": round(alone_s, 4),
                "fit_beside_s": round(beside_s, 4),
                "burner_cpu_s": round(burner_s, 4),
                "slowdown": round(beside_s / alone_s, 3),
                "lost_share": round((beside_s - alone_s) / burner_s, 2),
            }
        )
    print_table(rows, f"ALS {PARAMS} on the default synthetic data, medians of {repeats}")
    click.echo(machine())
    write_json(json_out, {"rows": rows})


if __name__ == "__main__":
    main()
