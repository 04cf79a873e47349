"""The data stage: interactions in, reproducible user x item splits out.

Read a source (a file, MovieLens or the synthetic data) into :class:`Interactions`,
validate it and turn it into implicit feedback (:func:`to_implicit_feedback`), split it
(:func:`split_interactions`) and save the split folders with their manifest
(:func:`save_dataset`, read back by :func:`load_dataset`); :func:`build_dataset` does
all of it for one source."""

from rectune.data import movielens, synthetic
from rectune.data.build import (
    DATASETS,
    MOVIELENS_MIN_RATING,
    SYNTHETIC,
    LoadedSource,
    SourceSpec,
    build_dataset,
    load_or_build,
    load_source,
)
from rectune.data.feedback import WEIGHTINGS, FeedbackConfig, Weighting, to_implicit_feedback
from rectune.data.interactions import (
    ColumnMapping,
    Columns,
    Interactions,
    read_interactions,
    select_columns,
    used_columns,
    validate_interactions,
)
from rectune.data.movielens import RELEASES, MovieLensRelease
from rectune.data.splits import (
    SPLIT_NAMES,
    STRATEGIES,
    SplitConfig,
    Strategy,
    holdout_mask,
    per_user_folds,
    split_interactions,
)
from rectune.data.store import (
    ID_FILES,
    MANIFEST,
    MODE_SPLITS,
    SplitDataset,
    dataset_fingerprint,
    dataset_path,
    load_dataset,
    read_ids,
    save_dataset,
)
from rectune.data.synthetic import SyntheticConfig, generate_interactions

__all__ = [
    "DATASETS",
    "ID_FILES",
    "MANIFEST",
    "MODE_SPLITS",
    "MOVIELENS_MIN_RATING",
    "RELEASES",
    "SPLIT_NAMES",
    "STRATEGIES",
    "SYNTHETIC",
    "WEIGHTINGS",
    "ColumnMapping",
    "Columns",
    "FeedbackConfig",
    "Interactions",
    "LoadedSource",
    "MovieLensRelease",
    "SourceSpec",
    "SplitConfig",
    "SplitDataset",
    "Strategy",
    "SyntheticConfig",
    "Weighting",
    "build_dataset",
    "dataset_fingerprint",
    "dataset_path",
    "generate_interactions",
    "holdout_mask",
    "load_dataset",
    "load_or_build",
    "load_source",
    "movielens",
    "per_user_folds",
    "read_ids",
    "read_interactions",
    "save_dataset",
    "select_columns",
    "split_interactions",
    "synthetic",
    "to_implicit_feedback",
    "used_columns",
    "validate_interactions",
]
