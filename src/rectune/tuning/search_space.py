"""YAML search spaces and their Optuna distributions.

A search space file names a model (optional) and its parameters::

    model: als
    parameters:
      factors: {type: categorical, choices: [32, 64, 128, 256]}
      regularization: {type: float, low: 0.001, high: 10.0, log: true}
      iterations: {type: int, low: 10, high: 100, step: 10}
      use_cg: true                      # fixed in every trial

Every file is checked before any training: the parameter must be one the model takes,
each value must be valid for it (:mod:`rectune.models`), and ranges must be sound.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import optuna
import yaml

from rectune.errors import EXCERPT_CHARS, ConfigError, ModelError, excerpt
from rectune.models import HYPERPARAMETERS, check_model_name

_KINDS = ("categorical", "int", "float", "fixed")


@dataclass(frozen=True)
class SearchSpace:
    """Parameters to sample (Optuna distributions) and parameters held fixed.

    Attributes
    ----------
    model : str
    distributions : dict of str to optuna.distributions.BaseDistribution
    fixed : dict
    source : str
        Where the space came from (file path or ``default``), for messages and logs.
    text : str
        The YAML text, logged as an artifact.
    """

    model: str
    distributions: dict[str, optuna.distributions.BaseDistribution]
    fixed: dict[str, Any]
    source: str
    text: str

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample every parameter for ``trial``; return them with the fixed ones."""
        params = dict(self.fixed)
        for name, d in self.distributions.items():
            if isinstance(d, optuna.distributions.CategoricalDistribution):
                params[name] = trial.suggest_categorical(name, d.choices)
            elif isinstance(d, optuna.distributions.IntDistribution):
                params[name] = trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
            else:
                params[name] = trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
        return params

    def grid(self) -> dict[str, list[Any]]:
        """Every value of every parameter, for Optuna's GridSampler.

        Raises
        ------
        ConfigError
            When a parameter is continuous, so the grid would be infinite.
        """
        grid = {}
        for name, distribution in self.distributions.items():
            if isinstance(distribution, optuna.distributions.CategoricalDistribution):
                grid[name] = list(distribution.choices)
            elif (
                isinstance(distribution, optuna.distributions.IntDistribution)
                and not distribution.log
            ):
                grid[name] = list(range(distribution.low, distribution.high + 1, distribution.step))
            elif (
                isinstance(distribution, optuna.distributions.FloatDistribution)
                and distribution.step is not None
            ):
                count = round((distribution.high - distribution.low) / distribution.step)
                grid[name] = [distribution.low + i * distribution.step for i in range(count + 1)]
            else:
                raise ConfigError(
                    f"search space {self.source}: parameter {name!r} is continuous, so the "
                    "grid sampler cannot enumerate it; give it choices or a step"
                )
        return grid

    def contains(self, params: dict[str, Any]) -> dict[str, Any]:
        """The subset of ``params`` that lies inside this space's distributions."""
        return {
            name: value
            for name, value in params.items()
            if name in self.distributions and _within(self.distributions[name], value)
        }

    @property
    def fingerprint(self) -> str:
        """Hash of the distributions and fixed values (not of comments or layout)."""
        described = repr(
            sorted(
                [
                    (n, optuna.distributions.distribution_to_json(d))
                    for n, d in self.distributions.items()
                ]
                + [(n, repr(v)) for n, v in self.fixed.items()]
            )
        )
        return hashlib.sha256(described.encode()).hexdigest()[:16]


def _within(distribution: optuna.distributions.BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return value in distribution.choices
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if not distribution.low <= value <= distribution.high:
        return False
    step = distribution.step
    if isinstance(distribution, optuna.distributions.IntDistribution):
        return float(value).is_integer() and (value - distribution.low) % step == 0
    return step is None or math.isclose(
        round((value - distribution.low) / step) * step, value - distribution.low
    )


#: Search spaces shipped with rectune, by the name ``--search-space`` takes:
#: The largest search space file read.
MAX_SPACE_BYTES = 1 << 20
#: ``default`` (``MODEL.yaml``) and ``grid``, the seed plan's grid (``MODEL-grid.yaml``).
SHIPPED_SPACES = {"default": "{model}.yaml", "grid": "{model}-grid.yaml"}


def default_space_path(model: str, name: str = "default") -> Path:
    """The search space shipped with rectune for ``model`` under ``name``."""
    check_model_name(model)
    file = SHIPPED_SPACES[name].format(model=model)
    return Path(str(resources.files("rectune") / "search_spaces" / file))


def space_path(model: str, path_or_name: str | Path | None) -> Path:
    """The file ``--search-space`` names: a shipped space by name (``default``,
    ``grid``) unless a file of that name exists, else the path itself."""
    if path_or_name is None:
        return default_space_path(model)
    path = Path(path_or_name)
    if str(path_or_name) in SHIPPED_SPACES and not path.is_file():
        return default_space_path(model, str(path_or_name))
    return path


def load_search_space(model: str, path: str | Path | None = None) -> SearchSpace:
    """Load and check a search space: a file, a shipped one by name (see
    :func:`space_path`), or ``None`` for the default of ``model``.

    Raises
    ------
    ConfigError
        Naming the file, the parameter and the reason, for any problem.
    """
    check_model_name(model)
    path = space_path(model, path)
    source = str(path)
    if path.is_dir():
        raise ConfigError(f"search space {path} is a folder; give a YAML file")
    if not path.is_file():
        raise ConfigError(
            f"search space file not found: {path} (or name a shipped one: "
            f"{', '.join(SHIPPED_SPACES)})"
        )
    if path.stat().st_size > MAX_SPACE_BYTES:
        raise ConfigError(
            f"search space {source} is {path.stat().st_size:,} bytes; a search space is a "
            f"few lines (at most {MAX_SPACE_BYTES:,} bytes)"
        )
    text = path.read_text()
    try:
        # Aliases first: a few hundred bytes of nested ones expand to gigabytes.
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, yaml.SafeLoader)):
            raise ConfigError(
                f"search space {source} uses YAML aliases (*name); write each value out"
            )
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(
            f"search space {source} is not valid YAML: {str(err).splitlines()[0]}"
        ) from err
    return parse_search_space(model, document, source=source, text=text)


def parse_search_space(
    model: str, document: Any, *, source: str = "<search space>", text: str = ""
) -> SearchSpace:
    """Build a :class:`SearchSpace` from a parsed YAML document."""

    def fail(reason: str, name: str | None = None) -> ConfigError:
        where = f"search space {source}" + (f": parameter {excerpt(name)}" if name else "")
        if len(reason) > 4 * EXCERPT_CHARS:  # a reason quoting a long value
            reason = f"{reason[: 4 * EXCERPT_CHARS]}... (cut)"
        return ConfigError(f"{where}: {reason}")

    if not isinstance(document, dict) or not isinstance(document.get("parameters"), dict):
        raise fail("expected a mapping with a 'parameters' mapping")
    unknown_keys = set(document) - {"model", "parameters"}
    if unknown_keys:
        raise fail(
            f"unknown top-level key(s) {', '.join(sorted(map(str, unknown_keys)))}; "
            "expected 'model' and 'parameters'"
        )
    if document.get("model", model) != model:
        raise fail(f"written for model {excerpt(document['model'])}, but tuning {model!r}")
    if not document["parameters"]:
        raise fail("'parameters' is empty")
    spec = HYPERPARAMETERS[model]
    distributions: dict[str, optuna.distributions.BaseDistribution] = {}
    fixed: dict[str, Any] = {}
    for name, entry in document["parameters"].items():
        if name not in spec:
            raise fail(
                f"{model.upper()} does not take this parameter; it takes {', '.join(spec)}", name
            )
        check = spec[name]

        def valid(value: Any, name: str = name, check=check) -> Any:
            try:
                return check.coerce(name, value)
            except ModelError as err:
                raise fail(str(err).replace(f"hyperparameter {name!r} ", ""), name) from err

        if not isinstance(entry, dict):
            fixed[name] = valid(entry)
            continue
        kind = entry.get("type")
        if kind not in _KINDS:
            raise fail(f"unknown type {excerpt(kind)}; use one of {', '.join(_KINDS)}", name)
        allowed = {
            "categorical": {"type", "choices"},
            "fixed": {"type", "value"},
            "int": {"type", "low", "high", "log", "step"},
            "float": {"type", "low", "high", "log", "step"},
        }[kind]
        extra = set(entry) - allowed
        if extra:
            raise fail(f"unknown key(s) {', '.join(sorted(map(str, extra)))} for type {kind}", name)
        if kind == "fixed":
            if "value" not in entry:
                raise fail("a fixed parameter needs 'value'", name)
            fixed[name] = valid(entry["value"])
        elif kind == "categorical":
            choices = entry.get("choices")
            if not isinstance(choices, list) or not choices:
                raise fail("'choices' must be a non-empty list", name)
            choices = [valid(choice) for choice in choices]
            if len(set(choices)) != len(choices):
                raise fail(f"'choices' has duplicates: {choices}", name)
            distributions[name] = optuna.distributions.CategoricalDistribution(choices)
        else:
            distributions[name] = _range_distribution(kind, entry, valid, fail, name, check)
    return SearchSpace(
        model=model, distributions=distributions, fixed=fixed, source=source, text=text
    )


def _range_distribution(kind, entry, valid, fail, name, check):
    missing = [key for key in ("low", "high") if key not in entry]
    if missing:
        raise fail(f"type {kind} needs {' and '.join(missing)}", name)
    if kind == "float" and check.kind is int:
        raise fail("takes whole numbers; use type int or categorical", name)
    if check.kind in (str, bool):
        raise fail(f"takes {check.describe()}; use type categorical", name)
    low, high = valid(entry["low"]), valid(entry["high"])
    if kind == "int" and (not isinstance(entry["low"], int) or not isinstance(entry["high"], int)):
        raise fail("int bounds must be whole numbers", name)
    if not low < high:
        raise fail(f"low ({low}) must be less than high ({high})", name)
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise fail(f"'log' must be true or false, got {excerpt(log)}", name)
    step = entry.get("step")
    if log and step is not None:
        raise fail("'log' and 'step' cannot be combined", name)
    if log and low <= 0:
        raise fail(f"a log range needs low > 0, got {low}", name)
    if step is not None and (
        isinstance(step, bool)
        or not isinstance(step, int | float)
        or step <= 0
        or not math.isfinite(step)
    ):
        raise fail(f"'step' must be a positive number, got {excerpt(step)}", name)
    if kind == "int":
        if step is not None and not float(step).is_integer():
            raise fail(f"an int 'step' must be a whole number, got {step}", name)
        return optuna.distributions.IntDistribution(low, high, log=log, step=int(step or 1))
    if step is not None:
        count = (high - low) / step
        if not math.isclose(count, round(count), rel_tol=1e-9, abs_tol=1e-9):
            raise fail(f"'step' ({step}) must divide high - low ({high - low:g})", name)
    return optuna.distributions.FloatDistribution(low, high, log=log, step=step)
