"""Processed datasets on disk: split matrices, id maps and the manifest.

A dataset named ``NAME`` lives in ``data/processed/NAME/``::

    train.npz  test.npz  train_val.npz  validation.npz   user x item CSR, float32
    user_ids.csv  item_ids.csv                            index -> original id
    manifest.json                                         source, options, counts, hashes

The folder is written in full to a staging folder first and then swapped into place, so
a reader never sees a half-written dataset and a failed run leaves the old one intact.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rectune import __version__
from rectune._io import (
    csr_fingerprint,
    csr_to_npz_bytes,
    relink_staged,
    staged_directory,
    write_bytes_atomic,
    write_json_atomic,
)
from rectune.config import DATA_DIR, processed_dir
from rectune.data.splits import SPLIT_NAMES
from rectune.errors import DataError, DatasetNotFoundError

MANIFEST = "manifest.json"
ID_FILES = {"user": "user_ids.csv", "item": "item_ids.csv"}
#: For each training mode: the split a model is fitted on, and the split it is scored on.
MODE_SPLITS = {"final": ("train", "test"), "tune": ("train_val", "validation")}


@dataclass(frozen=True)
class SplitDataset:
    """A processed dataset loaded from disk.

    Attributes
    ----------
    name : str
    path : pathlib.Path
    matrices : dict of str to scipy.sparse.csr_matrix
        ``train``, ``test``, ``train_val`` and ``validation``, all (n_users, n_items).
    user_ids, item_ids : numpy.ndarray
        Original id of each row / column index.
    manifest : dict
    """

    name: str
    path: Path
    matrices: dict[str, sp.csr_matrix]
    user_ids: np.ndarray
    item_ids: np.ndarray
    manifest: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        """Identifies the exact matrices and id maps; models record it to match data."""
        return self.manifest["fingerprint"]

    @property
    def train(self) -> sp.csr_matrix:
        return self.matrices["train"]

    @property
    def test(self) -> sp.csr_matrix:
        return self.matrices["test"]

    @property
    def train_val(self) -> sp.csr_matrix:
        return self.matrices["train_val"]

    @property
    def validation(self) -> sp.csr_matrix:
        return self.matrices["validation"]


def dataset_fingerprint(matrix_fingerprints: dict[str, str], id_hashes: dict[str, str]) -> str:
    """One hash over every split matrix and both id maps."""
    digest = hashlib.sha256()
    for key in sorted(matrix_fingerprints):
        digest.update(f"{key}={matrix_fingerprints[key]};".encode())
    for key in sorted(id_hashes):
        digest.update(f"{key}_ids={id_hashes[key]};".encode())
    return digest.hexdigest()


def _ids_csv(ids: np.ndarray, kind: str) -> bytes:
    frame = pd.DataFrame({f"{kind}_index": np.arange(len(ids)), f"{kind}_id": ids})
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")


def read_ids(folder: Path, kind: str) -> np.ndarray:
    """The original ids of ``kind`` ("user" or "item") from an id map in ``folder``.

    Ids are data: an id spelled "NA" or "null" stays that string.
    """
    return pd.read_csv(Path(folder) / ID_FILES[kind], keep_default_na=False)[
        f"{kind}_id"
    ].to_numpy()


def save_dataset(
    target: Path,
    matrices: dict[str, sp.csr_matrix],
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    manifest: dict[str, Any],
) -> dict[str, Any]:
    """Write a processed dataset folder atomically; return the completed manifest.

    ``manifest`` holds what the caller knows (source, options, counts); this adds the
    shape, nnz and fingerprint of each matrix, the id-map hashes, the dataset
    fingerprint, the rectune version and the creation time.
    """
    shapes = {matrix.shape for matrix in matrices.values()}
    if len(shapes) != 1 or set(matrices) != set(SPLIT_NAMES):
        raise ValueError(f"expected {SPLIT_NAMES} of one shape, got {sorted(matrices)} {shapes}")
    # Compressing the four matrices (deflate, for byte-identical files) is most of the
    # write at scale; zlib and hashlib release the GIL, so threads share it out.
    workers = min(len(SPLIT_NAMES), len(os.sched_getaffinity(0)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        hashed = pool.map(lambda name: csr_fingerprint(matrices[name]), SPLIT_NAMES)
        packed = pool.map(lambda name: csr_to_npz_bytes(matrices[name]), SPLIT_NAMES)
        fingerprints = dict(zip(SPLIT_NAMES, hashed, strict=True))
        payloads = dict(zip(SPLIT_NAMES, packed, strict=True))
    id_bytes = {"user": _ids_csv(user_ids, "user"), "item": _ids_csv(item_ids, "item")}
    id_hashes = {kind: hashlib.sha256(data).hexdigest() for kind, data in id_bytes.items()}
    manifest = {
        **manifest,
        "shape": list(next(iter(shapes))),
        "nnz": {name: int(matrices[name].nnz) for name in SPLIT_NAMES},
        "matrix_fingerprints": fingerprints,
        "id_map_sha256": id_hashes,
        "fingerprint": dataset_fingerprint(fingerprints, id_hashes),
        "files": {
            **{name: f"{name}.npz" for name in SPLIT_NAMES},
            **{f"{kind}_ids": ID_FILES[kind] for kind in ID_FILES},
        },
        "rectune_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with staged_directory(target) as staging:
        for name in SPLIT_NAMES:
            write_bytes_atomic(staging / f"{name}.npz", payloads[name])
        for kind, data in id_bytes.items():
            (staging / ID_FILES[kind]).write_bytes(data)
        write_json_atomic(staging / MANIFEST, manifest)
    return manifest


def dataset_path(name_or_path: str | Path, data_dir: Path = DATA_DIR) -> Path:
    """A dataset's folder: an existing folder path as given, else ``processed/NAME``."""
    candidate = Path(name_or_path)
    if (candidate / MANIFEST).is_file():
        return candidate
    return processed_dir(data_dir) / str(name_or_path)


def load_dataset(name_or_path: str | Path, data_dir: Path = DATA_DIR) -> SplitDataset:
    """Load a processed dataset by name (under ``data_dir``) or by folder path.

    Raises
    ------
    DatasetNotFoundError
        When it has not been made yet; the message gives the command that makes it.
    DataError
        When its files are incomplete or do not match the manifest.
    """
    path = relink_staged(dataset_path(name_or_path, data_dir))
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        raise DatasetNotFoundError(
            f"no processed dataset {str(name_or_path)!r} at {path}; make it with "
            f"`python src/split_data.py --dataset {name_or_path}` "
            "(or --input FILE --dataset-name NAME for a local file)"
        )
    try:
        manifest = json.loads(manifest_file.read_text())
        matrices = {name: sp.load_npz(path / f"{name}.npz").tocsr() for name in SPLIT_NAMES}
        user_ids, item_ids = read_ids(path, "user"), read_ids(path, "item")
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"processed dataset at {path} is incomplete or corrupt: {err}") from err
    for name, matrix in matrices.items():
        if csr_fingerprint(matrix) != manifest["matrix_fingerprints"][name]:
            raise DataError(
                f"{path / (name + '.npz')} does not match its manifest fingerprint; "
                "re-run split_data.py to rebuild the dataset"
            )
    return SplitDataset(
        name=path.name,
        path=path,
        matrices=matrices,
        user_ids=user_ids,
        item_ids=item_ids,
        manifest=manifest,
    )
