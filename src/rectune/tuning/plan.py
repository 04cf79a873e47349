"""What a tuning run is asked to do: objectives, options and their checks.

:class:`TuningConfig` holds the options as given (the CLI maps its options onto it);
:func:`resolve_plan` turns them, once, into the :class:`TuningPlan` the study runs by."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna

from rectune.config import BEST_PARAMETERS_FILE, DATA_DIR, MODELS_DIR, default_reports_dir
from rectune.errors import ConfigError
from rectune.evaluation.metrics import USER_METRICS
from rectune.models import (
    DEFAULT_HYPERPARAMETERS,
    check_model_name,
    resolve_device,
)
from rectune.tuning import sharing
from rectune.tuning.attributes import FIT_SECONDS
from rectune.tuning.checkpoints import (
    DEFAULT_CHECKPOINTS,
    DEFAULT_PATIENCE,
)
from rectune.tuning.heartbeats import DEFAULT_HEARTBEAT
from rectune.tuning.pruners import DEFAULT_PRUNER, PRUNERS
from rectune.tuning.search_space import SearchSpace
from rectune.urls import redact_url

SAMPLERS = ("tpe", "random", "grid", "cmaes", "gp", "qmc", "nsga2")


TUNING_METRICS = ("precision", "recall", "ndcg", "map")


#: Objectives may also use these; ``fit_seconds`` is minimised, the rest maximised.
OBJECTIVE_METRICS = (*USER_METRICS, "coverage")


#: The default Optuna storage, beside ``--output``; earlier versions kept a SQLite file.
DEFAULT_JOURNAL = "optuna.journal"


LEGACY_DATABASE = "optuna.db"


#: Trials run at once by default, where nothing keeps a study to one at a time.
PARALLEL_TRIALS = 2


_OBJECTIVE = re.compile(r"^(?P<metric>[a-z_]+)@(?P<k>[1-9][0-9]*)$")


@dataclass(frozen=True)
class Objective:
    """One thing to optimise: ``metric@k`` on validation (maximise) or fit seconds."""

    metric: str
    k: int | None = None

    @property
    def name(self) -> str:
        return self.metric if self.k is None else f"{self.metric}@{self.k}"

    @property
    def direction(self) -> str:
        return "minimize" if self.metric == FIT_SECONDS else "maximize"


def parse_objectives(text: str) -> tuple[Objective, ...]:
    """Parse ``precision@10,coverage@10`` (or ``fit_seconds``) into objectives."""
    objectives = []
    for part in (p.strip() for p in text.split(",")):
        if part == FIT_SECONDS:
            objectives.append(Objective(FIT_SECONDS))
            continue
        match = _OBJECTIVE.match(part)
        if not match or match["metric"] not in OBJECTIVE_METRICS:
            raise ConfigError(
                f"objective {part!r} is not METRIC@K or {FIT_SECONDS}; metrics: "
                f"{', '.join(OBJECTIVE_METRICS)}"
            )
        objectives.append(Objective(match["metric"], int(match["k"])))
    if len({o.name for o in objectives}) != len(objectives):
        raise ConfigError(f"objectives repeat: {text}")
    if objectives[0].k is None:
        raise ConfigError(
            f"the first objective must be a metric@K (it drives pruning and picks the "
            f"trial written out), not {FIT_SECONDS}: e.g. precision@10,{FIT_SECONDS}"
        )
    return tuple(objectives)


@dataclass(frozen=True)
class TuningConfig:
    """Everything one tuning invocation needs; the CLI maps its options onto this.

    ``n_trials`` is the size of the study, not of this invocation: workers (and re-runs
    after a crash) run trials until the study holds ``n_trials`` finished (complete or
    pruned) ones. ``None`` runs until ``timeout``. Trials recorded from another trial's
    fit (iteration sharing) come on top, unless ``count_shared``.
    """

    model: str
    dataset: str = "synthetic"
    n_trials: int | None = 50
    timeout: float | None = None
    k: int = 10
    metric: str = "precision"
    objectives: tuple[Objective, ...] = ()
    sampler: str | None = None
    pruner: str = DEFAULT_PRUNER
    search_space: str | Path | None = None  # a file, or a shipped space's name
    study_name: str | None = None
    storage: str | None = None
    n_jobs: int | Literal["auto"] = "auto"
    seed: int = 42
    device: str = "auto"
    cv_folds: int = 1
    warm_start: bool = False
    output: Path = MODELS_DIR / BEST_PARAMETERS_FILE
    #: Where the study report goes; ``None``: ``reports/`` beside ``output``.
    reports_dir: Path | None = None
    experiment_name: str | None = None
    data_dir: Path = DATA_DIR
    checkpoints: int = DEFAULT_CHECKPOINTS
    patience: int = DEFAULT_PATIENCE
    show_progress: bool = True
    heartbeat: int = DEFAULT_HEARTBEAT
    share_iterations: bool = True
    count_shared: bool = False
    eval_users: int | None = None

    def __post_init__(self) -> None:
        check_model_name(self.model)
        if self.n_trials is not None and self.n_trials < 1:
            raise ConfigError(f"n_trials must be at least 1, got {self.n_trials}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"timeout must be positive, got {self.timeout}")
        if self.k < 1:
            raise ConfigError(f"k must be a positive integer, got {self.k}")
        if self.metric not in TUNING_METRICS:
            raise ConfigError(
                f"unknown metric {self.metric!r}; choose one of {', '.join(TUNING_METRICS)}"
            )
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise ConfigError(
                f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}"
            )
        if self.pruner not in PRUNERS:
            raise ConfigError(f"unknown pruner {self.pruner!r}; choose one of {', '.join(PRUNERS)}")
        if self.n_jobs != "auto" and (not isinstance(self.n_jobs, int) or self.n_jobs < 1):
            raise ConfigError(f"n_jobs must be 'auto' or at least 1, got {self.n_jobs!r}")
        if self.cv_folds < 1:
            raise ConfigError(f"cv_folds must be at least 1, got {self.cv_folds}")
        if self.checkpoints < 1:
            raise ConfigError(f"checkpoints must be at least 1, got {self.checkpoints}")
        if self.patience < 0:
            raise ConfigError(f"patience must be 0 (off) or more, got {self.patience}")
        if self.heartbeat < 1:
            raise ConfigError(f"heartbeat must be at least 1 second, got {self.heartbeat}")
        if self.eval_users is not None and self.eval_users < 1:
            raise ConfigError(f"eval_users must be at least 1, got {self.eval_users}")

    @property
    def resolved_objectives(self) -> tuple[Objective, ...]:
        return self.objectives or (Objective(self.metric, self.k),)

    @property
    def multi_objective(self) -> bool:
        return len(self.resolved_objectives) > 1

    @property
    def resolved_sampler(self) -> str:
        return self.sampler or ("nsga2" if self.multi_objective else "tpe")

    @property
    def resolved_study_name(self) -> str:
        dataset = Path(self.dataset).name  # a folder path gives its last part
        return self.study_name or f"{self.model}-{dataset}-" + "-".join(
            o.name.replace("@", "_at_") for o in self.resolved_objectives
        )

    @property
    def shown_storage(self) -> str:
        """The storage as logs and messages show it: any password redacted."""
        return redact_url(self.storage or default_storage(self.output))

    @property
    def resolved_reports_dir(self) -> Path:
        """``reports_dir``, or ``reports/`` beside ``output`` when it is not given."""
        return Path(self.reports_dir or default_reports_dir(Path(self.output).parent))


def default_storage(output: Path) -> str:
    """The storage when ``--storage`` is not given: the journal file ``optuna.journal``
    beside ``output`` (or, where only the SQLite ``optuna.db`` of earlier versions is
    there, that one, so its studies resume)."""
    folder = Path(output).resolve().parent
    journal, database = folder / DEFAULT_JOURNAL, folder / LEGACY_DATABASE
    if not journal.exists() and database.exists():
        return f"sqlite:///{database}"  # resume studies made before journal files
    return str(journal)


def resolve(config: TuningConfig, space: SearchSpace | None = None) -> TuningConfig:
    """``config`` with what depends on the machine resolved once, at the entry: the
    storage (:func:`default_storage` unless given) and, given the search space, the
    trials run at once (:func:`parallel_trials`). What runs after reads these fields;
    nothing looks at the filesystem for them again."""
    changes: dict[str, Any] = {"storage": config.storage or default_storage(config.output)}
    if space is not None:
        changes["n_jobs"] = parallel_trials(config, space)
    return dataclasses.replace(config, **changes)


def max_iterations(space: SearchSpace) -> int:
    """The largest ``iterations`` a trial of ``space`` fits (the budget, unsearched)."""
    if "iterations" in space.fixed:
        return int(space.fixed["iterations"])
    distribution = space.distributions.get("iterations")
    if distribution is None:
        return int(DEFAULT_HYPERPARAMETERS[space.model]["iterations"])
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return int(max(distribution.choices))
    return int(distribution.high)


def parallel_trials(config: TuningConfig, space: SearchSpace) -> int:
    """Trials run at once: ``config.n_jobs``, or for ``auto`` :data:`PARALLEL_TRIALS`,
    except where iteration sharing applies (it records trials from a fit while the fit
    runs, which needs one trial at a time) or the models fit on the one GPU."""
    if config.n_jobs != "auto":
        return config.n_jobs
    if config.share_iterations and sharing.iteration_choices(space):
        return 1
    if resolve_device(config.device) == "cuda":
        return 1
    return PARALLEL_TRIALS
