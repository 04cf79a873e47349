"""The study report's plots render offline, in headless Chromium (needs Debian's
chromium; fails, not skips, without it)."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from report_studies import fifty_trial_study, summary_of

from chromium_helpers import png_pixels, screenshot
from rectune._html import plotly_script
from rectune.tuning import importances, render_report, study_figures
from rectune.tuning._figures import BEST_MARKER, KIND_MARKERS

#: Down to the importance bars: the plots, not the trial table below them.
SIZE = (1200, 3300)


def hex_rgb(color: str) -> np.ndarray:
    return np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])


def pixels_near(pixels: np.ndarray, color: str, tolerance: int = 12) -> int:
    """How many pixels lie within ``tolerance`` of ``color`` on every channel."""
    near = np.abs(pixels[..., :3].astype(int) - hex_rgb(color)).max(axis=-1) <= tolerance
    return int(near.sum())


def drawn(pixels: np.ndarray) -> dict[str, int]:
    """Pixels of what only plots draw: the markers of each kind of trial, the best
    trial's star, and Viridis's ends (the pairs' colour bar). (Pruned trials' grey is
    also the table's.)"""
    counts = {
        kind: pixels_near(pixels, marker["color"])
        for kind, marker in KIND_MARKERS.items()
        if kind != "pruned"
    }
    counts["best"] = pixels_near(pixels, BEST_MARKER["color"])
    counts["viridis yellow"] = pixels_near(pixels, "#fde725", 20)
    counts["viridis purple"] = pixels_near(pixels, "#440154", 20)
    return counts


def bands(changed: np.ndarray, gap: int = 50) -> list[tuple[int, int]]:
    """The runs of ``changed`` rows (first, last), runs less than ``gap`` apart joined."""
    rows = np.flatnonzero(changed)
    if not len(rows):
        return []
    breaks = np.flatnonzero(np.diff(rows) > gap)
    starts, ends = np.r_[rows[0], rows[breaks + 1]], np.r_[rows[breaks], rows[-1]]
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


@pytest.mark.slow  # two browsers and two PNGs decoded in Python: about 10 s on 2 cores
def test_the_report_draws_its_plots_offline_and_is_blank_without_plotly_js(tmp_path):
    study = fifty_trial_study()
    importance = importances(study)
    figures, skipped = study_figures(study, importance, best=study.best_trial.number)
    page = render_report(study, summary_of(study), figures, skipped, importance)
    blank = page.replace(plotly_script(), "")  # the negative control: no plotly.js
    assert len(blank) < len(page) - 1_000_000
    paths = {}
    for name, html in (("report", page), ("blank", blank)):
        paths[name] = tmp_path / f"{name}.html"
        paths[name].write_text(html)
    with ThreadPoolExecutor(2) as pool:  # two browsers at once: most of their time is startup
        shot = {n: tmp_path / f"{n}.png" for n in paths}
        list(pool.map(lambda n: screenshot(paths[n].as_uri(), shot[n], SIZE), paths))
    shots = {name: png_pixels(png) for name, png in shot.items()}
    plots, control = drawn(shots["report"]), drawn(shots["blank"])
    # A few dozen pixels make one marker; the plots draw dozens of markers of each kind.
    enough = {"complete": 2000, "shared": 100, "reused": 100, "best": 500}
    enough |= {"viridis yellow": 100, "viridis purple": 100}
    for what, least in enough.items():
        assert plots[what] >= least, f"{what}: {plots[what]} pixels (control {control[what]})"
        assert control[what] < 50, f"{what} drawn without plotly.js: {control[what]}"
    # The page's text is the same with and without plotly.js (the plots' boxes have
    # their heights before it runs), so the rows that differ are the plots: one tall,
    # busy band per figure.
    changed = (shots["report"] != shots["blank"]).any(axis=(1, 2))
    found = bands(changed)
    assert len(found) == len(figures), found
    for first, last in found:
        band = shots["report"][first : last + 1, :, :3]
        inked = (band < 235).any(axis=-1).mean()
        assert last - first > 250 and inked > 0.02, (first, last, inked)
