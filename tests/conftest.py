"""Shared fixtures: a small interactions table, a processed synthetic dataset, a CLI runner."""

import os

# implicit warns about multi-threaded OpenBLAS; set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result

import split_data
from rectune.data.build import SourceSpec, build_dataset
from rectune.data.feedback import FeedbackConfig
from rectune.data.splits import SplitConfig
from rectune.data.store import load_dataset


@pytest.fixture
def run_split(tmp_path: Path):
    """Run ``split_data.py`` in-process with ``--data-dir`` set to a temporary folder."""

    def run(*args: str, data_dir: Path | None = None) -> Result:
        target = data_dir or tmp_path / "data"
        return CliRunner().invoke(split_data.main, [*args, "--data-dir", str(target)])

    return run


@pytest.fixture
def small_frame() -> pd.DataFrame:
    """Ten users with 2-11 interactions each, ratings 1-5 and distinct timestamps."""
    rows = []
    timestamp = 1_000
    for user in range(10):
        for item in range(user + 2):
            rows.append(
                (f"u{user}", 100 + (item * 7 + user) % 23, 1 + (item + user) % 5, timestamp)
            )
            timestamp += 1
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """The default synthetic dataset (MovieLens-100k shaped), split once per session."""
    data_dir = tmp_path_factory.mktemp("data")
    build_dataset(SourceSpec(), FeedbackConfig(), SplitConfig(), data_dir=data_dir)
    return load_dataset("synthetic", data_dir=data_dir)


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory):
    """One SQLite MLflow store for the session (creating one costs seconds)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    yield uri
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture(autouse=True)
def _outside_mlflow_run(monkeypatch):
    """Tests run as if not under `mlflow run`, even when they are."""
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
