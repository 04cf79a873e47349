"""A saved model folder, and top-K recommendations from it by original ids.

:mod:`rectune.training` writes ``models/<model>/``::

    model.npz        implicit's own format, no pickle (rectune.models.save_model)
    model.json       parameters and their origin, seed, mode, dataset and its
                     fingerprint, metrics, the MLflow run that logged it
    user_ids.csv     index -> original id maps of the dataset
    item_ids.csv
    train_items.npz  the interactions the model was fitted on (binary CSR), so that
                     recommendations leave out what a user already has

:class:`Recommender` serves such a folder without the dataset. The MLflow pyfunc model
(:mod:`rectune.tracking.pyfunc`) wraps it, so both recommend exactly the same items, and
both rank exactly as the evaluator does (:func:`rectune.evaluation.ranking.rank_items`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rectune._io import relink_staged, staged_directory, write_csr_atomic, write_json_atomic
from rectune.data.store import ID_FILES, read_ids
from rectune.errors import ModelError
from rectune.evaluation.ranking import factor_scorer, rank_items, users_per_block
from rectune.models import load_factors, save_model

MODEL_FILE = "model.npz"
METADATA_FILE = "model.json"
TRAIN_ITEMS_FILE = "train_items.npz"
FOLDER_FILES = (MODEL_FILE, METADATA_FILE, *ID_FILES.values(), TRAIN_ITEMS_FILE)

#: Columns of :meth:`Recommender.recommend`'s result, one row per recommended item.
RECOMMENDATION_COLUMNS = ("user_id", "rank", "item_id", "score", "fallback")


def write_model_folder(
    target: Path,
    model: Any,
    fitted_on: sp.csr_matrix,
    ids_from: Path,
    metadata: Mapping[str, Any],
) -> None:
    """Write a model folder atomically: in full to a staging folder, then swapped in.

    Parameters
    ----------
    target : pathlib.Path
        The folder, e.g. ``models/als``; an existing one is replaced only on success.
    model : implicit model
        Fitted ALS or BPR (GPU models are saved as CPU models).
    fitted_on : scipy.sparse.csr_matrix
        The user x item matrix it was fitted on.
    ids_from : pathlib.Path
        The processed dataset folder whose id maps are copied.
    metadata : mapping
        Written as ``model.json``.
    """
    seen = sp.csr_matrix(fitted_on, copy=True)
    seen.eliminate_zeros()
    seen.sort_indices()
    seen.data = np.ones_like(seen.data, dtype=np.float32)
    with staged_directory(target) as staging:
        save_model(model, staging / MODEL_FILE)
        write_csr_atomic(staging / TRAIN_ITEMS_FILE, seen)
        for name in ID_FILES.values():
            shutil.copyfile(Path(ids_from) / name, staging / name)
        write_json_atomic(staging / METADATA_FILE, dict(metadata))


def read_metadata(model_dir: str | Path) -> dict[str, Any]:
    """The ``model.json`` of a model folder.

    Raises
    ------
    ModelError
        When the folder holds no saved model or its metadata is not readable JSON.
    """
    model_dir = relink_staged(model_dir)
    metadata_file = model_dir / METADATA_FILE
    if not metadata_file.is_file():
        raise ModelError(
            f"no saved model at {model_dir} ({METADATA_FILE} is missing); train one with "
            "`python src/model_training.py --model als --mode final --hyperparameters`"
        )
    try:
        metadata = json.loads(metadata_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{metadata_file} is not readable JSON: {err}") from err
    if not isinstance(metadata, dict) or "model" not in metadata:
        raise ModelError(f"{metadata_file} is not rectune model metadata")
    return metadata


@dataclass(frozen=True)
class Recommender:
    """A fitted model with its id maps and training items, ready to recommend.

    Attributes
    ----------
    user_factors, item_factors : numpy.ndarray
        Scores are ``user_factors @ item_factors.T``.
    user_ids, item_ids : numpy.ndarray
        Original id of each row / column index.
    train_items : scipy.sparse.csr_matrix
        Items each user was trained on; never recommended back to them.
    metadata : dict
        ``model.json``; ``metadata["k"]`` is the default list length.
    path : pathlib.Path, optional
        The folder it was loaded from.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    train_items: sp.csr_matrix
    metadata: dict[str, Any]
    path: Path | None = None

    @classmethod
    def load(cls, model_dir: str | Path) -> Recommender:
        """Load a folder written by :func:`write_model_folder`.

        Raises
        ------
        ModelError
            When a file is missing or the parts do not fit together.
        """
        model_dir = Path(model_dir)
        metadata = read_metadata(model_dir)
        missing = [name for name in FOLDER_FILES if not (model_dir / name).is_file()]
        if missing:
            raise ModelError(f"model folder {model_dir} is incomplete: missing {missing}")
        try:
            user_factors, item_factors = load_factors(model_dir / MODEL_FILE)
            train_items = sp.load_npz(model_dir / TRAIN_ITEMS_FILE).tocsr()
            user_ids, item_ids = read_ids(model_dir, "user"), read_ids(model_dir, "item")
        except (OSError, ValueError, KeyError) as err:
            raise ModelError(f"model folder {model_dir} is corrupt: {err}") from err
        shape = (len(user_factors), len(item_factors))
        if train_items.shape != shape or (len(user_ids), len(item_ids)) != shape:
            raise ModelError(
                f"model folder {model_dir} is inconsistent: factors {shape}, training "
                f"items {train_items.shape}, id maps {(len(user_ids), len(item_ids))}"
            )
        return cls(
            user_factors=user_factors,
            item_factors=item_factors,
            user_ids=user_ids,
            item_ids=item_ids,
            train_items=train_items,
            metadata=metadata,
            path=model_dir,
        )

    @property
    def default_k(self) -> int:
        return int(self.metadata.get("k", 10))

    @cached_property
    def _user_index(self) -> dict[str, int]:
        # Keyed by the id's text, so 196 and "196" find the same user.
        return {str(user): index for index, user in enumerate(self.user_ids)}

    @cached_property
    def _scorer(self):
        return factor_scorer(self.user_factors, self.item_factors)

    @cached_property
    def item_counts(self) -> np.ndarray:
        """Each item's number of training users."""
        return np.bincount(self.train_items.indices, minlength=self.train_items.shape[1])

    @cached_property
    def popular_items(self) -> np.ndarray:
        """Item indices by number of training users, most first (ties: lower index)."""
        counts = self.item_counts
        return np.lexsort((np.arange(len(counts)), -counts))

    def user_indices(self, user_ids: Iterable[Any]) -> np.ndarray:
        """Row index of each user id, -1 for ids not seen in training."""
        return np.array([self._user_index.get(str(user), -1) for user in user_ids], dtype=np.int64)

    def recommend(self, user_ids: Iterable[Any], k: int | None = None) -> pd.DataFrame:
        """The top-``k`` items of each user, best first, leaving out their training items.

        Users seen in training are ranked by the model's scores, with ties going to the
        lower item index exactly as in evaluation. A user id not seen in training (cold
        start) gets the ``k`` most popular training items, marked ``fallback``, each
        scored by its number of training users (a number, so the rows serialise to
        valid JSON; not comparable with the model's scores).

        Parameters
        ----------
        user_ids : iterable
            Original user ids; each gets ``k`` rows, in the order given (repeats
            included).
        k : int, optional
            List length; by default the ``k`` the model was trained and scored with.

        Returns
        -------
        pandas.DataFrame
            Columns ``user_id``, ``rank`` (1-based), ``item_id``, ``score`` and
            ``fallback`` (True on a cold-start user's popular items); a user with fewer
            than ``k`` unseen items gets fewer rows.
        """
        k = self.default_k if k is None else k
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ModelError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        requested = list(user_ids)
        indices = self.user_indices(requested)
        items = np.full((len(requested), k), -1, dtype=np.int64)
        scores = np.full((len(requested), k), np.nan, dtype=np.float32)

        known = np.flatnonzero(indices >= 0)
        block_size = users_per_block(len(self.item_ids))
        for start in range(0, len(known), block_size):
            rows = known[start : start + block_size]
            items[rows], scores[rows] = rank_items(self._scorer, indices[rows], self.train_items, k)
        cold = np.flatnonzero(indices < 0)
        fallback = self.popular_items[:k]
        items[cold, : len(fallback)] = fallback
        scores[cold, : len(fallback)] = self.item_counts[fallback]

        row, rank = np.nonzero(items >= 0)
        return pd.DataFrame(
            {
                "user_id": pd.Series(requested, dtype=_id_dtype(requested)).to_numpy()[row],
                "rank": (rank + 1).astype(np.int64),
                "item_id": self.item_ids[items[row, rank]],
                "score": scores[row, rank].astype(np.float64),
                "fallback": indices[row] < 0,
            },
            columns=list(RECOMMENDATION_COLUMNS),
        )


def _id_dtype(ids: list[Any]) -> Any:
    """int64 for integer ids (as the id maps store them), else object: ids echo as given."""
    if ids and all(isinstance(i, int | np.integer) and not isinstance(i, bool) for i in ids):
        return np.int64
    return object
