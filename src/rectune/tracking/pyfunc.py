"""The MLflow pyfunc model of a saved recommender, and logging and registering it."""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from rectune.errors import ConfigError
from rectune.tracking._store import quiet_mlflow
from rectune.tracking._tags import PYFUNC_NAME
from rectune.urls import redact_text

if TYPE_CHECKING:
    from rectune.recommender import Recommender

#: The rectune package, which travels with every pyfunc model.
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: The models-from-code entry file (:mod:`rectune.tracking.pyfunc_model`), relative to
#: the package: MLflow is handed the one in the model's own copy of the package.
_ENTRY_FILE = Path(__file__).resolve().with_name("pyfunc_model.py").relative_to(_PACKAGE_DIR)


class RecommenderModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc form of :class:`rectune.recommender.Recommender`.

    ``predict`` takes a DataFrame with a ``user_id`` column and returns each user's top-K
    items as rows ``user_id, rank, item_id, score, fallback``; ``params={"k": 20}`` sets
    K. Users not seen in training get the most popular items, with ``fallback`` true and
    their number of training users as the score.
    """

    def load_context(self, context: Any) -> None:
        from rectune.recommender import Recommender

        self.recommender = Recommender.load(context.artifacts["model_dir"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if "user_id" not in model_input.columns:
            raise ValueError("the input needs a user_id column")
        users = model_input["user_id"].tolist()
        k = (params or {}).get("k")
        return self.recommender.recommend(users, None if k is None else int(k))


class ModelLogging:
    """The model part of :class:`rectune.tracking.Tracker`: pyfunc models and the
    registry."""

    client: MlflowClient

    def log_recommender(
        self, run_id: str, model_dir: Path, example_users: list[Any], k: int
    ) -> str:
        """Log a model folder to ``run_id`` as an MLflow pyfunc model; return its URI.

        The pyfunc model carries the folder and the ``rectune`` package itself, so it
        loads anywhere the pinned requirements are installed. Its signature takes a
        ``user_id`` column and returns ``user_id, rank, item_id, score`` rows, with a
        ``k`` parameter (default: the ``k`` the model was scored with).
        """
        from rectune.recommender import Recommender

        signature = _signature(Recommender.load(model_dir), k)
        example = pd.DataFrame({"user_id": example_users})
        # The package travels with the model (without byte-code caches).
        with tempfile.TemporaryDirectory() as tmp:
            package_dir = Path(tmp) / "rectune"
            shutil.copytree(
                _PACKAGE_DIR,
                package_dir,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
            # mlflow's log_model logs into the active run; make it ours for the call only.
            with (
                quiet_mlflow(),
                mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None),
            ):
                info = mlflow.pyfunc.log_model(
                    name=PYFUNC_NAME,
                    python_model=str(package_dir / _ENTRY_FILE),
                    artifacts={"model_dir": str(model_dir)},
                    code_paths=[str(package_dir)],
                    signature=signature,
                    input_example=example,
                    pip_requirements=_pyfunc_requirements(),
                )
        return info.model_uri

    def register(self, model_uri: str, name: str, alias: str | None) -> int:
        """Register ``model_uri`` as a new version of model ``name``; point ``alias`` at it.

        Returns the new version number.
        """
        try:
            # register_model prints its own "Successfully registered" lines to stderr.
            with quiet_mlflow(), contextlib.redirect_stderr(io.StringIO()):
                registered = mlflow.register_model(model_uri, name)
            if alias:
                self.client.set_registered_model_alias(name, alias, registered.version)
        except MlflowException as err:
            raise ConfigError(
                f"cannot register the model as {name!r}: {redact_text(str(err).splitlines()[0])}"
            ) from err
        return int(registered.version)


def _signature(recommender: Recommender, k: int) -> ModelSignature:
    """``user_id`` in; ``user_id, rank, item_id, score`` out; ``k`` (default ``k``)."""
    return ModelSignature(
        inputs=Schema([ColSpec(_id_type(recommender.user_ids), "user_id")]),
        outputs=Schema(
            [
                ColSpec(_id_type(recommender.user_ids), "user_id"),
                ColSpec("long", "rank"),
                ColSpec(_id_type(recommender.item_ids), "item_id"),
                ColSpec("double", "score"),
                ColSpec("boolean", "fallback"),
            ]
        ),
        params=ParamSchema([ParamSpec("k", "long", k)]),
    )


def _id_type(ids: Any) -> str:
    """The signature type of an id map: long for integer ids, else string."""
    return "long" if pd.api.types.is_integer_dtype(ids.dtype) else "string"


def _pyfunc_requirements() -> list[str]:
    """The pinned packages the pyfunc model imports (MLflow adds itself)."""
    return [f"{name}=={version(name)}" for name in ("implicit", "numpy", "scipy", "pandas")]
