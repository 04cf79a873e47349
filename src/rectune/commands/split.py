"""The data stage: load interactions, make implicit feedback, split, save CSR matrices.

``rectune split`` and ``src/split_data.py`` run this command.

Examples
--------
    python src/split_data.py                                  # synthetic, offline
    python src/split_data.py --dataset movielens-100k         # downloads once
    python src/split_data.py --input ratings.csv --strategy temporal
"""

from pathlib import Path
from typing import Any

import click

from rectune.cli import (
    COMMAND_SETTINGS,
    InputError,
    RectuneCommand,
    data_dir_option,
    seed_option,
    version_option,
    warn,
)
from rectune.data.build import DATASETS, SYNTHETIC, SourceSpec, build_dataset
from rectune.data.feedback import WEIGHTINGS, FeedbackConfig
from rectune.data.interactions import ColumnMapping, Columns
from rectune.data.splits import STRATEGIES, SplitConfig
from rectune.data.synthetic import SyntheticConfig

_FRACTION = click.FloatRange(0, 1, min_open=True, max_open=True)
_DEFAULT_SYNTHETIC = SyntheticConfig()
_DEFAULT_FEEDBACK = FeedbackConfig()
_DEFAULT_SPLIT = SplitConfig()
#: ``--min-rating none``: keep every rating, whatever the source's default.
NO_MIN_RATING = "none"


class MinRating(click.ParamType):
    """A rating threshold, or ``none`` for no threshold at all."""

    name = "FLOAT|none"

    def convert(self, value, param, ctx):
        if isinstance(value, float) or value == NO_MIN_RATING:
            return value
        try:
            return float(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number nor {NO_MIN_RATING!r}", param, ctx)


@click.command(cls=RectuneCommand, context_settings=COMMAND_SETTINGS)
@click.option(
    "--dataset",
    type=click.Choice(DATASETS),
    default=SYNTHETIC,
    show_default=True,
    help="Built-in source: the offline synthetic data or a MovieLens release "
    "(downloaded to DATA_DIR/raw once, MD5-checked).",
)
@click.option(
    "--input",
    "input_path",
    type=click.Path(path_type=Path),
    help="A local CSV, TSV or Parquet file of interactions instead of --dataset.",
)
@click.option(
    "--sep", help="Field separator of --input, overriding its extension (e.g. '::' or ';')."
)
@click.option("--user-col", default=Columns.User, show_default=True, help="User id column.")
@click.option("--item-col", default=Columns.Item, show_default=True, help="Item id column.")
@click.option("--rating-col", help=f"Rating column [default: {Columns.Rating!r} if present].")
@click.option(
    "--timestamp-col",
    help=f"Timestamp column, Unix seconds or dates [default: {Columns.Timestamp!r} if present].",
)
@click.option(
    "--dataset-name",
    help="Output folder name under DATA_DIR/processed "
    "[default: the dataset, or the input file's stem].",
)
@click.option(
    "--n-users",
    type=click.IntRange(min=1),
    default=_DEFAULT_SYNTHETIC.n_users,
    show_default=True,
    help="Synthetic: number of users.",
)
@click.option(
    "--n-items",
    type=click.IntRange(min=1),
    default=_DEFAULT_SYNTHETIC.n_items,
    show_default=True,
    help="Synthetic: number of items.",
)
@click.option(
    "--n-interactions",
    type=click.IntRange(min=1),
    default=_DEFAULT_SYNTHETIC.n_interactions,
    show_default=True,
    help="Synthetic: number of (distinct) interactions.",
)
@click.option(
    "--min-rating",
    type=MinRating(),
    help="Keep interactions rated at least this; 'none' keeps every rating "
    "[default: 4 for MovieLens, none otherwise].",
)
@click.option(
    "--weighting",
    type=click.Choice(WEIGHTINGS),
    default=_DEFAULT_FEEDBACK.weighting,
    show_default=True,
    help="Matrix values: 1 per pair, the pair's highest rating, or its count; auto: the "
    "rating where the source has ratings, else 1 (ALS tunes how it uses them).",
)
@click.option(
    "--min-user-interactions",
    type=click.IntRange(min=1),
    default=_DEFAULT_FEEDBACK.min_user_interactions,
    show_default=True,
    help="Drop users with fewer distinct items (k-core).",
)
@click.option(
    "--min-item-interactions",
    type=click.IntRange(min=1),
    default=_DEFAULT_FEEDBACK.min_item_interactions,
    show_default=True,
    help="Drop items with fewer distinct users (k-core).",
)
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default=_DEFAULT_SPLIT.strategy,
    show_default=True,
    help="Per-user hold-out: random, most recent share, or the single latest.",
)
@click.option(
    "--test-fraction",
    type=_FRACTION,
    default=_DEFAULT_SPLIT.test_fraction,
    show_default=True,
    help="Share of each user's interactions held out for test.",
)
@click.option(
    "--validation-fraction",
    type=_FRACTION,
    default=_DEFAULT_SPLIT.validation_fraction,
    show_default=True,
    help="Share of each user's remaining train interactions held out for "
    "validation (the tune split).",
)
@click.option(
    "--min-split-interactions",
    type=click.IntRange(min=2),
    default=_DEFAULT_SPLIT.min_interactions,
    show_default=True,
    help="Users with fewer interactions are not split; they stay in train only.",
)
@seed_option("Seed of the synthetic data and of the split: same seed, same matrices.")
@data_dir_option
@version_option
@click.pass_context
def main(
    ctx: click.Context,
    dataset: str,
    input_path: Path | None,
    sep: str | None,
    user_col: str,
    item_col: str,
    rating_col: str | None,
    timestamp_col: str | None,
    dataset_name: str | None,
    n_users: int,
    n_items: int,
    n_interactions: int,
    min_rating: float | str | None,
    weighting: str,
    min_user_interactions: int,
    min_item_interactions: int,
    strategy: str,
    test_fraction: float,
    validation_fraction: float,
    min_split_interactions: int,
    seed: int,
    data_dir: Path,
) -> None:
    """Split interactions into train/test and train_val/validation CSR matrices.

    Writes DATA_DIR/processed/NAME/ with train.npz, test.npz, train_val.npz,
    validation.npz (users x items, float32), user_ids.csv, item_ids.csv and
    manifest.json. The same inputs and --seed give byte-identical matrices.
    """
    is_synthetic = _check_source_options(ctx, input_path, dataset)
    spec = SourceSpec(
        dataset=dataset,
        input_path=input_path,
        columns=ColumnMapping(user_col, item_col, rating_col, timestamp_col),
        sep=sep,
        synthetic=SyntheticConfig(
            n_users=n_users, n_items=n_items, n_interactions=n_interactions, seed=seed
        )
        if is_synthetic
        else SyntheticConfig(),
    )
    feedback = _feedback_config(min_rating, weighting, min_user_interactions, min_item_interactions)
    split = SplitConfig(
        strategy=strategy,
        test_fraction=test_fraction,
        validation_fraction=validation_fraction,
        min_interactions=min_split_interactions,
        seed=seed,
    )
    manifest = build_dataset(
        spec,
        feedback,
        split,
        name=dataset_name,
        data_dir=data_dir,
        source_min_rating=min_rating != NO_MIN_RATING,
    )
    _warn_about(manifest)
    _print_summary(manifest, data_dir)


def _check_source_options(ctx: click.Context, input_path: Path | None, dataset: str) -> bool:
    """Refuse options that contradict the chosen source; return whether it is synthetic."""

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT

    if input_path is not None and given("dataset"):
        raise InputError("give either --dataset or --input, not both")
    is_synthetic = input_path is None and dataset == SYNTHETIC
    shape_options = [f"--{n.replace('_', '-')}" for n in ("n_users", "n_items", "n_interactions")]
    if not is_synthetic and any(given(o[2:].replace("-", "_")) for o in shape_options):
        raise InputError(f"{', '.join(shape_options)} apply to --dataset {SYNTHETIC} only")
    return is_synthetic


def _feedback_config(
    min_rating: float | str | None,
    weighting: str,
    min_user_interactions: int,
    min_item_interactions: int,
) -> FeedbackConfig:
    """The feedback options as a config; ``none`` and no --min-rating both become
    ``None`` here (``build_dataset``'s ``source_min_rating`` tells them apart)."""
    return FeedbackConfig(
        min_rating=None if min_rating == NO_MIN_RATING else min_rating,
        weighting=weighting,
        min_user_interactions=min_user_interactions,
        min_item_interactions=min_item_interactions,
    )


def _warn_about(manifest: dict[str, Any]) -> None:
    """Warn about an unverified download and about empty held-out splits."""
    if manifest["source"].get("verification") == "unverified":
        warn(
            f"{manifest['source']['name']} was used without a checksum check: no MD5 is "
            "pinned for it and the published one could not be fetched (offline?)"
        )
    for split, users in (("test", "users_in_test"), ("validation", "users_in_validation")):
        if manifest["counts"][users] == 0:
            warn(f"the {split} split is empty: no user has enough interactions to hold out")


def _print_summary(manifest: dict[str, Any], data_dir: Path) -> None:
    """Print where the dataset went, its sizes and its fingerprint."""
    counts, nnz = manifest["counts"], manifest["nnz"]
    out = Path(data_dir) / "processed" / manifest["name"]
    click.echo(f"Wrote {out}")
    click.echo(
        f"  users {counts['users']:,}  items {counts['items']:,}  "
        f"interactions {counts['interactions']:,}"
    )
    click.echo("  " + "  ".join(f"{name} {value:,}" for name, value in nnz.items()))
    click.echo(
        f"  users in test {counts['users_in_test']:,}  "
        f"in validation {counts['users_in_validation']:,}"
    )
    click.echo(f"  fingerprint {manifest['fingerprint'][:16]}")
