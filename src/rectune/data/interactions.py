"""Interactions: reading local files into the canonical columns, and validating them.

The flow is ``read_interactions`` (a local CSV/TSV/Parquet file) or one of the built-in
sources (:mod:`rectune.data.synthetic`, :mod:`rectune.data.movielens`), each giving a frame with the
canonical columns of :class:`Columns`; then :func:`validate_interactions`; then
:func:`rectune.data.feedback.to_implicit_feedback`, which filters, merges duplicates,
weights and indexes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rectune.errors import DataError, excerpt

_DELIMITED_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
_PARQUET_SUFFIXES = {".parquet", ".pq"}


class Columns:
    """Canonical column names of an interactions frame."""

    User = "user_id"
    Item = "item_id"
    Rating = "rating"
    Timestamp = "timestamp"


@dataclass(frozen=True)
class ColumnMapping:
    """Which columns of an input file hold users, items, ratings and timestamps.

    ``rating`` and ``timestamp`` of ``None`` mean "use the column of the default name if
    the file has one, else go without"; a name given explicitly must exist.
    """

    user: str = Columns.User
    item: str = Columns.Item
    rating: str | None = None
    timestamp: str | None = None


@dataclass(frozen=True)
class Interactions:
    """Indexed implicit feedback, one entry per distinct (user, item) pair.

    Entries are sorted by user index, then item index. ``user_ids[u]`` is the original id
    of user index ``u`` (likewise items); ids are sorted in their natural order.

    Attributes
    ----------
    users, items : numpy.ndarray of int32, shape (n,)
    values : numpy.ndarray of float32, shape (n,)
        Matrix values, as chosen by :attr:`FeedbackConfig.weighting`.
    timestamps : numpy.ndarray of int64, shape (n,), or None
        Latest timestamp of each pair, when the source has timestamps.
    user_ids, item_ids : numpy.ndarray
    stats : dict
        Counts before and after each step, for the manifest.
    """

    users: np.ndarray
    items: np.ndarray
    values: np.ndarray
    timestamps: np.ndarray | None
    user_ids: np.ndarray
    item_ids: np.ndarray
    stats: dict

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.users)


def read_interactions(
    path: str | Path, columns: ColumnMapping = ColumnMapping(), sep: str | None = None
) -> pd.DataFrame:
    """Read a local interactions file into a frame with the canonical columns.

    The format follows the extension (``.csv``, ``.tsv``/``.tab``, ``.parquet``/``.pq``)
    unless ``sep`` is given, which forces a delimited text file with a header row.

    Raises
    ------
    DataError
        When the file is missing, empty, unreadable or lacks a named column.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"input {path} is a folder; give the ratings file in it")
    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"input file is empty: {path}")
    frame = _read_table(path, sep)
    if frame.empty:
        raise DataError(f"input file has no rows: {path}")
    return select_columns(frame, columns, source=str(path))


def _read_table(path: Path, sep: str | None) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if sep is not None and (not sep or (sep.isspace() and sep not in ("\t", " "))):
        raise DataError(f"--sep {sep!r} is no separator; give one such as ',' or '::'")
    try:
        if sep is None and suffix in _PARQUET_SUFFIXES:
            return pd.read_parquet(path)
        if sep is None:
            if suffix not in _DELIMITED_SEPARATORS:
                raise DataError(
                    f"cannot tell the format of {path} from its extension {suffix!r}: use "
                    "a .csv, .tsv or .parquet file, or give the separator with --sep"
                )
            sep = _DELIMITED_SEPARATORS[suffix]
        # Multi-character separators (MovieLens' '::') need the python engine.
        engine = "c" if len(sep) == 1 else "python"
        # Only empty fields are missing: an id such as "NA" or "null" is data.
        return pd.read_csv(path, sep=sep, engine=engine, keep_default_na=False, na_values=[""])
    except DataError:
        raise
    except pd.errors.EmptyDataError as err:
        raise DataError(f"input file is empty: {path}") from err
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"cannot read {path}: {reason}") from err


def used_columns(available: list[str], columns: ColumnMapping) -> dict[str, str]:
    """The file column behind each canonical column: the mapping's names, and the
    optional rating and timestamp columns found under their default names."""
    wanted = {Columns.User: columns.user, Columns.Item: columns.item}
    for canonical, given in (
        (Columns.Rating, columns.rating),
        (Columns.Timestamp, columns.timestamp),
    ):
        if given is not None:
            wanted[canonical] = given
        elif canonical in available:
            wanted[canonical] = canonical
    return wanted


def select_columns(frame: pd.DataFrame, columns: ColumnMapping, source: str) -> pd.DataFrame:
    """Pick and rename the mapped columns; name any missing column and list what exists."""
    wanted = used_columns(list(frame.columns), columns)
    missing = [name for name in wanted.values() if name not in frame.columns]
    if missing:
        options = {
            Columns.User: "--user-col",
            Columns.Item: "--item-col",
            Columns.Rating: "--rating-col",
            Columns.Timestamp: "--timestamp-col",
        }
        hints = [options[c] for c, name in wanted.items() if name in missing]
        raise DataError(
            f"{source}: column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)} not found; the file has columns: "
            f"{', '.join(repr(str(c)) for c in frame.columns)} (set {', '.join(hints)})"
        )
    return frame[list(wanted.values())].rename(columns={v: k for k, v in wanted.items()})


def validate_interactions(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check ids and values and normalise their dtypes.

    Ids must be present in every row; integral float ids (pandas reads an int column with
    gaps as float) become int64. Ratings must be numeric. Timestamps may be numbers (Unix
    seconds) or date strings (converted to Unix seconds).

    Raises
    ------
    DataError
        Naming the column, the first offending row (1-based, as in the data rows) and value.
    """
    if frame.empty:
        raise DataError(f"{source}: no interactions")
    frame = frame.reset_index(drop=True)
    out = {}
    for column in (Columns.User, Columns.Item):
        ids = frame[column]
        missing = ids.isna()
        if missing.any():
            raise DataError(
                f"{source}: {int(missing.sum())} row(s) have a missing {column} "
                f"(first at data row {int(np.flatnonzero(missing)[0]) + 1})"
            )
        # Parquet list and struct columns arrive as objects; numbers and strings never do
        # in pandas 3, so large inputs skip the look.
        nested = (
            ids.map(lambda v: isinstance(v, list | tuple | dict | set | np.ndarray))
            if ids.dtype == object
            else pd.Series(False, index=ids.index)
        )
        if nested.any():
            row = int(np.flatnonzero(nested)[0])
            raise DataError(
                f"{source}: {column} must hold plain ids (numbers or strings), not lists "
                f"or records (first at data row {row + 1}: {excerpt(ids.iloc[row])})"
            )
        out[column] = _normalise_ids(ids)
    if Columns.Rating in frame:
        out[Columns.Rating] = _numeric_column(frame[Columns.Rating], Columns.Rating, source)
    if Columns.Timestamp in frame:
        out[Columns.Timestamp] = _timestamp_column(frame[Columns.Timestamp], source)
    # copy=False keeps one block per column: stacking 20M-row columns into one block
    # costs more than the checks.
    return pd.DataFrame(out, copy=False)


def _normalise_ids(ids: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(ids) and np.all(np.mod(ids.to_numpy(), 1) == 0):
        return ids.astype(np.int64)
    if pd.api.types.is_integer_dtype(ids):
        return ids.astype(np.int64)
    return ids.astype(str)


def _numeric_column(values: pd.Series, name: str, source: str) -> pd.Series:
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna() | ~np.isfinite(numeric.astype(float))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: column {name!r} must be numeric; {int(bad.sum())} row(s) are not "
            f"(first at data row {row + 1}: {values.iloc[row]!r})"
        )
    return numeric.astype(np.float64)


def _timestamp_column(values: pd.Series, source: str) -> pd.Series:
    numeric = pd.to_numeric(values, errors="coerce")
    if not numeric.isna().any():
        return numeric.astype(np.int64)
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: column {Columns.Timestamp!r} must hold Unix times or dates; "
            f"{int(bad.sum())} row(s) do not (first at data row {row + 1}: "
            f"{values.iloc[row]!r})"
        )
    # pandas 3 picks the datetime resolution per input, so divide by a Timedelta.
    epoch = pd.Timestamp(0, tz="UTC")
    return ((parsed - epoch) // pd.Timedelta(seconds=1)).astype(np.int64)
