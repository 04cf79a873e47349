"""The stages as Python functions, for notebooks: ``rectune.split``, ``rectune.tune``,
``rectune.train``, ``rectune.evaluate`` and ``rectune.report``.

Each takes keyword arguments named like its command's options (``--n-trials`` is
``n_trials``), runs the same stage function as the command and returns its result object
instead of printing. They are quiet by default: no progress bars (``progress=True`` shows
them), and Optuna's, MLflow's and alembic's INFO log lines are held back for the call
(their logging levels are restored after it). Runs are tracked where MLflow points
(``MLFLOW_TRACKING_URI`` or :func:`mlflow.set_tracking_uri`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rectune.config import (
    MODELS_DIR,
    best_parameters_path,
    default_data_dir,
    default_reports_dir,
    parse_ks,
)
from rectune.errors import ConfigError

if TYPE_CHECKING:
    from rectune.evaluation.stage import EvaluationResult
    from rectune.training import TrainingResult
    from rectune.tuning.results import TuningResult

__all__ = ["evaluate", "report", "split", "train", "tune"]

#: Loggers whose INFO lines a quiet call holds back (MLflow's store creation, its
#: migrations).
_CHATTY = ("mlflow", "alembic")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Optuna at WARNING (or quieter, if the caller asked), MLflow's and alembic's loggers
    at WARNING; every level restored afterwards."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    levels = {name: logging.getLogger(name).level for name in _CHATTY}
    optuna.logging.set_verbosity(max(verbosity, optuna.logging.WARNING))
    for name in _CHATTY:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _data_dir(data_dir: str | Path | None) -> Path:
    """``data_dir``, else the ``--data-dir`` default (``$RECTUNE_DATA_DIR`` or ``data/``)."""
    return Path(data_dir) if data_dir else default_data_dir()


def _ks(k: int | str | Sequence[int]) -> tuple[int, ...]:
    """``10``, ``"5,10,20"`` or ``[5, 10, 20]`` -> distinct list lengths, ascending."""
    text = str(k) if isinstance(k, int | str) else ",".join(map(str, k))
    try:
        return parse_ks(text)
    except ConfigError as err:
        raise ConfigError(f"k {k!r}: {err}") from None


def _one_k(k: int | str | Sequence[int], instead: str) -> int:
    ks = _ks(k)
    if len(ks) > 1:
        raise ConfigError(f"k {k!r}: this stage scores one K: {instead}")
    return ks[0]


def split(
    dataset: str = "synthetic",
    *,
    input: str | Path | None = None,
    sep: str | None = None,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    dataset_name: str | None = None,
    n_users: int | None = None,
    n_items: int | None = None,
    n_interactions: int | None = None,
    min_rating: float | str | None = None,
    weighting: str | None = None,
    min_user_interactions: int | None = None,
    min_item_interactions: int | None = None,
    strategy: str | None = None,
    test_fraction: float | None = None,
    validation_fraction: float | None = None,
    min_split_interactions: int | None = None,
    seed: int = 42,
    data_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Split interactions into ``train``/``test`` and ``train_val``/``validation``, as
    ``rectune split`` (``src/split_data.py``) does.

    Parameters
    ----------
    dataset : str
        A built-in source (``synthetic``, ``movielens-100k``, ...); ignored with ``input``.
    input : str or Path, optional
        A local CSV, TSV or Parquet file of interactions instead of ``dataset``.
    sep, user_col, item_col, rating_col, timestamp_col : str, optional
        How to read ``input`` (``--sep``, ``--user-col``, ...).
    dataset_name : str, optional
        The folder under ``DATA_DIR/processed`` [default: the dataset or file stem].
    n_users, n_items, n_interactions : int, optional
        The synthetic data's shape (``dataset="synthetic"`` only).
    min_rating : float or "none", optional
        Keep interactions rated at least this; ``"none"`` keeps every rating.
    weighting, min_user_interactions, min_item_interactions : optional
        The implicit feedback (``--weighting``, the k-core thresholds).
    strategy, test_fraction, validation_fraction, min_split_interactions : optional
        The split (``--strategy``, ...). Anything left ``None`` takes the option's default.
    seed : int
        Seed of the synthetic data and the split.
    data_dir : str or Path, optional
        Root of ``raw/`` and ``processed/`` [default: ``$RECTUNE_DATA_DIR`` or ``data/``].

    Returns
    -------
    dict
        The written ``manifest.json``: ``name``, ``counts``, ``nnz``, ``fingerprint``, ...
        Load the split with :func:`rectune.data.load_dataset`.

    Raises
    ------
    RectuneError
        For a bad option or input (as the command's ``Error:`` line).
    """
    from rectune.data.build import SYNTHETIC, SourceSpec, build_dataset
    from rectune.data.feedback import FeedbackConfig
    from rectune.data.interactions import ColumnMapping
    from rectune.data.splits import SplitConfig
    from rectune.data.synthetic import SyntheticConfig

    def given(**values: Any) -> dict[str, Any]:
        return {name: value for name, value in values.items() if value is not None}

    columns = ColumnMapping(
        **given(user=user_col, item=item_col, rating=rating_col, timestamp=timestamp_col)
    )
    shape = given(n_users=n_users, n_items=n_items, n_interactions=n_interactions)
    if shape and (input is not None or dataset != SYNTHETIC):
        raise ConfigError(f"n_users, n_items and n_interactions apply to {SYNTHETIC} only")
    spec = SourceSpec(
        dataset=dataset,
        input_path=Path(input) if input is not None else None,
        columns=columns,
        sep=sep,
        synthetic=SyntheticConfig(**shape, seed=seed)
        if input is None and dataset == SYNTHETIC
        else SyntheticConfig(),
    )
    feedback = FeedbackConfig(
        **given(
            min_rating=None if min_rating == "none" else min_rating,
            weighting=weighting,
            min_user_interactions=min_user_interactions,
            min_item_interactions=min_item_interactions,
        )
    )
    split_config = SplitConfig(
        **given(
            strategy=strategy,
            test_fraction=test_fraction,
            validation_fraction=validation_fraction,
            min_interactions=min_split_interactions,
        ),
        seed=seed,
    )
    return build_dataset(
        spec,
        feedback,
        split_config,
        name=dataset_name,
        data_dir=_data_dir(data_dir),
        source_min_rating=min_rating != "none",
    )


def tune(
    model: str,
    *,
    dataset: str = "synthetic",
    n_trials: int | None = 50,
    k: int | str | Sequence[int] = 10,
    metric: str = "precision",
    objectives: str | Sequence[str] | None = None,
    models_dir: str | Path | None = None,
    output: str | Path | None = None,
    reports_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    seed: int = 42,
    progress: bool = False,
    **options: Any,
) -> TuningResult:
    """Tune ``model``'s hyperparameters in an Optuna study, as ``rectune tune``
    (``src/hyperparameter_tuning.py``) does: each trial fits on ``train_val`` and is
    scored by ``metric@k`` on ``validation``, logged as a child run of one MLflow parent.

    Parameters
    ----------
    model : {"als", "bpr"}
    dataset : str
        A processed dataset's name or folder (``synthetic`` is made if missing).
    n_trials : int or None
        The study's size; a study that holds as many finished trials runs none.
    k : int, or a one-element list
        The objective's list length (one K, as ``--k``; ``objectives`` takes several).
    metric : {"precision", "recall", "ndcg", "map"}
    objectives : str or sequence of str, optional
        Several objectives, e.g. ``"precision@10,coverage@10"``.
    models_dir : str or Path, optional
        Where ``best_hyperparameters.json``, the default Optuna journal and
        ``reports/`` go [default: ``models/``].
    output, reports_dir : str or Path, optional
        The best parameters' file and the report's folder, where they differ from
        ``models_dir``'s.
    data_dir : str or Path, optional
        As for :func:`split`.
    seed : int
        Seed of the sampler and the models.
    progress : bool
        Show the study's progress bar.
    **options
        Any other option of ``rectune tune`` by its Python name: ``sampler``, ``pruner``,
        ``search_space``, ``study_name``, ``storage``, ``timeout``, ``n_jobs``, ``device``,
        ``cv_folds``, ``checkpoints``, ``patience``, ``share_iterations``,
        ``count_shared``, ``eval_users``, ``warm_start``, ``heartbeat``,
        ``experiment_name``.

    Returns
    -------
    TuningResult
        ``best_params``, ``best_values`` (``{"precision@10": ...}``), ``best_trial_number``,
        ``counts``, ``study`` (the Optuna study), ``parent_run_id``, ``report_path``, ...
    """
    from rectune.tuning.plan import TuningConfig, parse_objectives
    from rectune.tuning.study import run_tuning

    if isinstance(objectives, str):
        objectives = parse_objectives(objectives)
    elif objectives:
        objectives = parse_objectives(",".join(objectives))
    config = TuningConfig(
        model=model,
        dataset=dataset,
        n_trials=n_trials,
        k=_one_k(k, "optimise several with objectives='precision@5,precision@10'"),
        metric=metric,
        objectives=tuple(objectives or ()),
        output=Path(output) if output else best_parameters_path(Path(models_dir or MODELS_DIR)),
        reports_dir=Path(reports_dir) if reports_dir else None,
        data_dir=_data_dir(data_dir),
        seed=seed,
        show_progress=progress,
        **options,
    )
    with _quiet():
        return run_tuning(config)


def train(
    model: str,
    *,
    hyperparameters: bool | str | Path | None = None,
    param: Mapping[str, Any] | Sequence[str] | None = None,
    mode: str = "final",
    dataset: str = "synthetic",
    k: int | str | Sequence[int] = 10,
    models_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    seed: int = 42,
    progress: bool = False,
    **options: Any,
) -> TrainingResult:
    """Train ``model`` and save it to ``MODELS_DIR/MODEL/``, as ``rectune train``
    (``src/model_training.py``) does, logged to an MLflow run.

    Parameters
    ----------
    model : {"als", "bpr"}
    hyperparameters : bool, str or Path, optional
        ``True``: this model's entry of ``MODELS_DIR/best_hyperparameters.json`` (the
        file :func:`tune` writes there); a path: that file's; ``None``: rectune's defaults.
    param : mapping or sequence of "NAME=VALUE", optional
        Overrides of single hyperparameters (``--param``); they win over the file.
    mode : {"final", "tune"}
        ``final`` fits on ``train`` and scores ``test``; ``tune`` fits on ``train_val``.
    dataset : str
    k : int, or a one-element list
        The list length scored (one K; :func:`evaluate` scores several).
    models_dir, data_dir : str or Path, optional
        As for the command's ``--models-dir`` and ``--data-dir``.
    seed : int
    progress : bool
        Show the fit's iterations.
    **options
        ``repeats``, ``device``, ``experiment_name``, ``register``, ``alias``,
        ``final_epochs_from``.

    Returns
    -------
    TrainingResult
        ``params``, ``metrics`` (``{"precision@10": ...}``), ``model_dir``, ``run_id``,
        ``model_uri``, ``registered_version``, ...
    """
    from rectune.training import TrainingConfig, parse_overrides, train_model

    if hyperparameters is True:  # the file tune(models_dir=...) writes
        hyperparameters = best_parameters_path(Path(models_dir or MODELS_DIR))
    elif hyperparameters is False:
        hyperparameters = None
    if param is None:
        overrides: dict[str, Any] = {}
    elif isinstance(param, Mapping):
        overrides = dict(param)
    else:
        overrides = parse_overrides([param] if isinstance(param, str) else list(param))
    config = TrainingConfig(
        model=model,
        mode=mode,
        dataset=dataset,
        k=_one_k(k, "evaluate scores several"),
        hyperparameters=Path(hyperparameters) if hyperparameters else None,
        overrides=overrides,
        models_dir=Path(models_dir or MODELS_DIR),
        data_dir=_data_dir(data_dir),
        seed=seed,
        show_progress=progress,
        **options,
    )
    with _quiet():
        return train_model(config)


def evaluate(
    model: str | None = None,
    *,
    model_dir: str | Path | None = None,
    run_id: str | None = None,
    dataset: str | None = None,
    k: int | str | Sequence[int] = (5, 10, 20),
    models_dir: str | Path | None = None,
    reports_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    seed: int = 42,
    progress: bool = False,
    **options: Any,
) -> EvaluationResult:
    """Score a saved model on its held-out split against the popular and random
    baselines, as ``rectune evaluate`` (``src/evaluate_model.py``) does.

    Parameters
    ----------
    model : {"als", "bpr"}, optional
        The model saved in ``MODELS_DIR/MODEL/``; or give ``model_dir`` or ``run_id``.
    model_dir : str or Path, optional
    run_id : str, optional
        An MLflow training run whose logged model is evaluated.
    dataset : str, optional
        [default: the dataset the model was trained on]
    k : int, str or sequence of int
        List lengths to score: ``10``, ``"5,10,20"`` or ``[5, 10, 20]``.
    models_dir, reports_dir, data_dir : str or Path, optional
        As for the command (reports default to ``MODELS_DIR/reports``).
    seed : int
    progress : bool
    **options
        ``defaults_baseline``, ``n_bootstrap``, ``confidence``, ``device``,
        ``experiment_name``.

    Returns
    -------
    EvaluationResult
        ``summary`` (``summary["metrics"]["model"]["precision@10"]["mean"]``, with
        ``low``/``high``), ``report_paths``, ``run_id``, ...
    """
    from rectune.evaluation.stage import EvaluationConfig, run_evaluation

    chosen = [given for given in (model, model_dir, run_id) if given is not None]
    if len(chosen) != 1:
        raise ConfigError("give exactly one of model, model_dir and run_id")
    models = Path(models_dir or MODELS_DIR)
    config = EvaluationConfig(
        model_dir=models / model if model else (Path(model_dir) if model_dir else None),
        run_id=run_id,
        dataset=dataset,
        ks=_ks(k),
        reports_dir=Path(reports_dir) if reports_dir else default_reports_dir(models),
        data_dir=_data_dir(data_dir),
        seed=seed,
        show_progress=progress,
        **options,
    )
    with _quiet():
        return run_evaluation(config)


def report(
    study_name: str | None = None,
    *,
    storage: str | None = None,
    models_dir: str | Path | None = None,
    reports_dir: str | Path | None = None,
    seed: int = 42,
) -> Path:
    """Re-render a tuning study's HTML report from its Optuna storage (``rectune
    report``), without MLflow: e.g. after more workers joined, or for a study whose run
    was killed before its report.

    Parameters
    ----------
    study_name : str, optional
        [default: the storage's only study]
    storage : str, optional
        A journal file path or database URL [default: ``MODELS_DIR/optuna.journal``].
    models_dir : str or Path, optional
        [default: ``models/``]
    reports_dir : str or Path, optional
        [default: ``MODELS_DIR/reports``]
    seed : int
        Seed of the parameter importances.

    Returns
    -------
    Path
        The report written, ``REPORTS_DIR/<study name>.html``.
    """
    from rectune.tuning.rerender import rerender_report

    with _quiet():
        return rerender_report(
            study_name,
            storage=storage,
            models_dir=Path(models_dir or MODELS_DIR),
            reports_dir=Path(reports_dir) if reports_dir else None,
            seed=seed,
        )
