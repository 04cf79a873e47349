"""The output file, ``models/best_hyperparameters.json``, and its provenance.

One file holds every model's best parameters (``{"als": {...}, "bpr": {...}}``); a
tuning run replaces its model's entry only. Beside it, ``*.provenance.json`` says which
study, trial and data each entry came from."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from rectune._io import file_lock, lock_path, write_json_atomic
from rectune.errors import ConfigError, DataError
from rectune.failpoints import failpoint
from rectune.tuning.attributes import BEST_ITERATION, ITERATIONS

log = logging.getLogger(__name__)


def delivered_params(user_attrs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters as the model it stands for: with early stopping, its best
    iteration count in place of the budget it was sampled with."""
    best = user_attrs.get(BEST_ITERATION)
    return params if best is None else {**params, ITERATIONS: int(best)}


def check_writable(output: Path) -> None:
    """Refuse an --output that cannot be written, before any trial runs."""
    output = Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path(output), "a"):
            pass
    except OSError as err:
        raise ConfigError(f"cannot write --output {output}: {err.strerror or err}") from err


def read_best_hyperparameters(path: Path) -> dict[str, dict[str, Any]]:
    """The output file as a dict (empty if it does not exist yet).

    Raises
    ------
    ConfigError
        When the file is not valid JSON of the shape ``{"als": {...}, "bpr": {...}}``.
    """
    path = Path(path)
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); fix or delete it") from err
    if not isinstance(document, dict) or not all(isinstance(v, dict) for v in document.values()):
        raise ConfigError(
            f"{path} must map model names to parameter objects, like "
            '{"als": {"factors": 64}}; fix or delete it'
        )
    return document


def provenance_path(output: Path) -> Path:
    """Provenance sits beside the output: ``best_hyperparameters.provenance.json``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.provenance.json")


def write_best_hyperparameters(
    output: Path, model: str, params: dict[str, Any], provenance: dict[str, Any]
) -> None:
    """Replace ``model``'s entry in the output file, keeping every other model's entry.

    The read-modify-write runs under a file lock and each file is replaced atomically,
    so two tuning processes finishing together both keep their entries. The provenance
    is written first and names the parameters it is for (``params``): a process killed
    between the two writes leaves provenance that readers see does not match (see
    :func:`matching_provenance`), never parameters credited to another study.
    """
    output = Path(output)
    with file_lock(output):
        document = read_best_hyperparameters(output)
        prov_file = provenance_path(output)
        try:
            prov = json.loads(prov_file.read_text()) if prov_file.exists() else {}
        except (OSError, json.JSONDecodeError):
            prov = {}
        prov[model] = {**provenance, "params": params}
        write_json_atomic(prov_file, prov)
        failpoint("provenance_written")
        document[model] = params
        write_json_atomic(output, document)


def matching_provenance(output: Path, model: str) -> dict[str, Any]:
    """``model``'s provenance beside ``output``, if it is for the parameters there.

    Empty when there is none, or when it names other parameters: a tuning process was
    killed after writing the provenance and before the parameters. (Entries of earlier
    releases name none, and are taken as they are.)
    """
    prov_file = provenance_path(Path(output))
    try:
        entry = json.loads(prov_file.read_text()).get(model)
        params = read_best_hyperparameters(Path(output)).get(model)
    except (OSError, ValueError, AttributeError, DataError, ConfigError):
        return {}
    if not isinstance(entry, dict):
        return {}
    if "params" in entry and entry["params"] != params:
        log.warning(
            "%s: the provenance of %s is for other parameters (a tuning run was stopped "
            "while writing); it is not used",
            prov_file,
            model,
        )
        return {}
    return entry


def jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}
