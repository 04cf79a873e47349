"""The data stage: from a source to a processed dataset folder.

Sources are the built-in ``synthetic`` generator, the MovieLens releases and local
files. :func:`build_dataset` loads one, validates it, turns it into implicit feedback,
splits it and saves the matrices with their manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from rectune._io import sha256_file
from rectune.config import DATA_DIR, processed_dir, raw_dir
from rectune.data import movielens, synthetic
from rectune.data.feedback import FeedbackConfig, to_implicit_feedback
from rectune.data.interactions import (
    ColumnMapping,
    Columns,
    read_interactions,
    used_columns,
    validate_interactions,
)
from rectune.data.splits import SplitConfig, split_interactions
from rectune.data.store import SplitDataset, load_dataset, save_dataset
from rectune.data.synthetic import SyntheticConfig
from rectune.errors import ConfigError, DatasetNotFoundError

SYNTHETIC = "synthetic"
#: ``--dataset`` choices; a local file is given with ``--input`` instead.
DATASETS: tuple[str, ...] = (SYNTHETIC, *movielens.RELEASES)
#: MovieLens ratings are 0.5-5 stars; 4 and up is the usual "liked it" threshold.
MOVIELENS_MIN_RATING = 4.0


@dataclass(frozen=True)
class SourceSpec:
    """Where the interactions come from: ``dataset`` or a local ``input_path``."""

    dataset: str = SYNTHETIC
    input_path: Path | None = None
    columns: ColumnMapping = field(default_factory=ColumnMapping)
    sep: str | None = None
    synthetic: synthetic.SyntheticConfig = field(default_factory=synthetic.SyntheticConfig)

    def __post_init__(self) -> None:
        if self.input_path is None and self.dataset not in DATASETS:
            raise ConfigError(
                f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}, "
                "or give a local file with --input"
            )

    @property
    def default_name(self) -> str:
        return Path(self.input_path).stem if self.input_path is not None else self.dataset

    @property
    def default_min_rating(self) -> float | None:
        return MOVIELENS_MIN_RATING if self.dataset in movielens.RELEASES else None


@dataclass(frozen=True)
class LoadedSource:
    frame: pd.DataFrame
    description: dict[str, Any]


def load_source(spec: SourceSpec, data_dir: Path = DATA_DIR) -> LoadedSource:
    """Load the raw interactions of ``spec`` with a description for the manifest."""
    if spec.input_path is not None:
        path = Path(spec.input_path)
        frame = read_interactions(path, spec.columns, spec.sep)
        used = used_columns(list(frame.columns), spec.columns)
        return LoadedSource(
            frame,
            {
                "kind": "file",
                "path": str(path.resolve()),
                "sha256": sha256_file(path),
                "columns": asdict(spec.columns),
                # Which file column each one came from; auto-detected: found by its
                # default name, without --rating-col / --timestamp-col.
                "columns_used": used,
                "columns_detected": [
                    canonical
                    for canonical, option in (
                        (Columns.Rating, spec.columns.rating),
                        (Columns.Timestamp, spec.columns.timestamp),
                    )
                    if option is None and canonical in used
                ],
                "sep": spec.sep,
            },
        )
    if spec.dataset == SYNTHETIC:
        frame = synthetic.generate_interactions(spec.synthetic)
        return LoadedSource(
            frame,
            {
                "kind": "synthetic",
                "generator": synthetic.describe(spec.synthetic),
                "sha256": synthetic.frame_sha256(frame),
            },
        )
    release = movielens.RELEASES[spec.dataset]
    fetched = movielens.fetch(release, raw_dir(data_dir))
    path = fetched.path
    frame = movielens.read_ratings(release, path)
    return LoadedSource(
        frame,
        {
            "kind": "movielens",
            "name": release.name,
            "url": release.url(),
            "path": str(path.resolve()),
            "sha256": sha256_file(path),
            "verification": fetched.verification,
        },
    )


def build_dataset(
    spec: SourceSpec,
    feedback: FeedbackConfig,
    split: SplitConfig,
    *,
    name: str | None = None,
    data_dir: Path = DATA_DIR,
    source_min_rating: bool = True,
) -> dict[str, Any]:
    """Run the whole data stage and return the written manifest.

    ``feedback.min_rating`` of ``None`` takes the source's default (4 for MovieLens,
    none otherwise) unless ``source_min_rating`` is false (``--min-rating none``: keep
    every rating). The output folder is ``data_dir/processed/<name>``, ``name``
    defaulting to the dataset name or the input file's stem.
    """
    name = name or spec.default_name
    if not name or Path(name).name != name or name.startswith("."):
        raise ConfigError(f"dataset name {name!r} must be a plain folder name")
    if source_min_rating and feedback.min_rating is None and spec.default_min_rating is not None:
        feedback = replace(feedback, min_rating=spec.default_min_rating)
    loaded = load_source(spec, data_dir)
    source = loaded.description
    source_label = str(spec.input_path or spec.dataset)
    frame = validate_interactions(loaded.frame, source_label)
    feedback = feedback.resolved(Columns.Rating in frame)  # the manifest says what was used
    # The frames are done with: at 20M interactions they are a third of the peak.
    del loaded
    interactions = to_implicit_feedback(frame, feedback, source_label)
    del frame
    matrices = split_interactions(interactions, split)
    manifest = {
        "name": name,
        "source": source,
        "options": {"feedback": asdict(feedback), "split": asdict(split)},
        "seed": split.seed,
        "counts": {
            **interactions.stats,
            "users_in_test": int((matrices["test"].getnnz(axis=1) > 0).sum()),
            "users_in_validation": int((matrices["validation"].getnnz(axis=1) > 0).sum()),
        },
    }
    return save_dataset(
        processed_dir(data_dir) / name,
        matrices,
        interactions.user_ids,
        interactions.item_ids,
        manifest,
    )


def load_or_build(dataset: str, data_dir: Path, seed: int) -> SplitDataset:
    """Load the processed ``dataset``; build it first where it is the default synthetic
    one and missing (so the pipeline runs offline with no split step).

    Raises
    ------
    DatasetNotFoundError
        When any other dataset has not been split yet.
    """
    try:
        return load_dataset(dataset, data_dir=data_dir)
    except DatasetNotFoundError:
        if dataset != SYNTHETIC:
            raise
    build_dataset(
        SourceSpec(synthetic=SyntheticConfig(seed=seed)),
        FeedbackConfig(),
        SplitConfig(seed=seed),
        data_dir=data_dir,
    )
    return load_dataset(dataset, data_dir=data_dir)
