"""What the benchmark scripts share: the machine line, peak memory, tables, JSON, data.

Every script prints a table and can write its figures as JSON. Figures compare
quantities measured in the same run; absolute seconds vary with the machine and load.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rectune.data.feedback import FeedbackConfig, to_implicit_feedback
from rectune.data.interactions import validate_interactions
from rectune.data.splits import SplitConfig, split_interactions
from rectune.data.synthetic import SyntheticConfig, generate_interactions

#: Synthetic data shaped like these MovieLens releases.
SHAPES = {
    "ml-100k": SyntheticConfig(),
    "ml-20m": SyntheticConfig(n_users=138_493, n_items=26_744, n_interactions=20_000_263),
}
CONTEXT = {"help_option_names": ["-h", "--help"]}


def machine() -> str:
    """CPU model, cores, memory and Python, as one line."""
    model = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB, Python "
        f"{platform.python_version()}, OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}"
    )


def rss_mib() -> float:
    """This process's resident memory now, MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def max_rss_mib() -> float:
    """This process's peak resident memory so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def peak_memory(interval: float = 0.002) -> Iterator[dict[str, float]]:
    """Sample resident memory while the block runs; yields a dict that gets
    ``peak_mib`` (above the memory at the start) when the block ends."""
    figures: dict[str, float] = {}
    start = rss_mib()
    peak = start
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(interval):
            peak = max(peak, rss_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield figures
    finally:
        done.set()
        sampler.join()
        figures["peak_mib"] = max(peak, rss_mib()) - start


def timed(func: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = func()
    return value, time.perf_counter() - start


def split_synthetic(shape: str, seed: int = 42) -> dict[str, Any]:
    """The tune and final splits of a synthetic dataset of ``shape``."""
    config = SHAPES[shape]
    if seed != config.seed:
        config = SyntheticConfig(**{**config.__dict__, "seed": seed})
    frame = generate_interactions(config)
    interactions = to_implicit_feedback(validate_interactions(frame, shape), FeedbackConfig())
    return split_interactions(interactions, SplitConfig(seed=seed))


def print_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> None:
    """Rows of equal keys as an aligned text table."""
    if title:
        click.echo(title)
    if not rows:
        return
    columns = list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return "" if value is None else str(value)


def write_json(path: Path | None, figures: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps({**figures, "machine": machine()}, indent=2) + "\n")
        click.echo(f"Wrote {path}")


json_option = click.option(
    "--json-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the figures here as JSON.",
)
