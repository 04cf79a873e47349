"""Each option is declared once: the stage scripts' click options are the source of truth.

MLproject's entry points must pass every parameter to the option of its name, with the
MLproject type that corresponds to the option's click type and a default that gives the
script what the option's own default gives it; where an entry point deliberately passes
something else, it is in :data:`DIFFERENT_DEFAULTS` with the reason. The config dataclasses
the scripts fill must not default differently from the options either, except where
:data:`LIBRARY_DIFFERENCES` says why.

How an MLproject default is compared with a click default: ``mlflow run`` substitutes the
default, as a string, into the command, so the test converts that string with the option's
click type, as the script would, and compares it with the option's default converted the
same way. Paths are compared resolved: the entry points run in the project's root, so
MLproject's ``data`` is the scripts' ``<project>/data``. A click default that is computed
(``--data-dir`` reads ``$RECTUNE_DATA_DIR``) is taken with that variable unset. MLproject
cannot express "no value" (``None``): a parameter without a default is required, and an
empty default passes ``""``, not ``None``; so an option defaulting to ``None`` (or
required) that an entry point passes needs an entry in :data:`DIFFERENT_DEFAULTS`.
"""

import dataclasses
import inspect
import logging
import re
import shlex
from pathlib import Path
from typing import Any

import click
import optuna
import pytest
import yaml
from click.testing import CliRunner

# The scripts run these modules' commands (tests/test_commands.py checks the identity);
# the stage functions a test stubs are looked up in these modules.
from rectune.commands import evaluate as evaluate_model
from rectune.commands import split as split_data
from rectune.commands import train as model_training
from rectune.commands import tune as hyperparameter_tuning
from rectune.training import DEFAULT_HYPERPARAMETERS_FILE

ROOT = Path(__file__).resolve().parents[1]
MLPROJECT = yaml.safe_load((ROOT / "MLproject").read_text())
ENTRY_POINTS = MLPROJECT["entry_points"]
SCRIPTS = {
    "src/split_data.py": split_data,
    "src/hyperparameter_tuning.py": hyperparameter_tuning,
    "src/model_training.py": model_training,
    "src/evaluate_model.py": evaluate_model,
}

#: The option's flag value (``--hyperparameters`` alone: the tuned file in the default
#: ``--models-dir``) instead of its default.
FLAG_VALUE = object()

#: (entry point or ``*`` for all, script, option name) -> (the value the script gets from
#: MLproject's default instead of the option's default, why). Every entry must be used.
DIFFERENT_DEFAULTS: dict[tuple[str, str, str], tuple[Any, str]] = {
    ("*", "src/hyperparameter_tuning.py", "model"): (
        "als",
        "--model is required; MLproject gives it a default so that `mlflow run .` runs without -P",
    ),
    ("*", "src/model_training.py", "model"): ("als", "--model is required (as above)"),
    ("*", "src/hyperparameter_tuning.py", "study_name"): (
        "",
        "None (the study named after model, dataset and objectives) cannot be written in "
        "MLproject; an empty name means the same",
    ),
    ("*", "src/hyperparameter_tuning.py", "storage"): (
        "",
        "None (the journal file beside --output) cannot be written in MLproject; an empty "
        "storage means the same",
    ),
    ("*", "src/evaluate_model.py", "model"): (
        "als",
        "the script takes one of --model, --model-dir and --run-id (none by default); the "
        "entry points evaluate the model that the train stage saved",
    ),
    ("*", "src/evaluate_model.py", "dataset"): (
        "synthetic",
        "the option's default (None) is the dataset the model was trained on, which "
        "MLproject cannot express; it names the dataset its train stage defaults to",
    ),
    ("tune", "src/hyperparameter_tuning.py", "sampler"): (
        "tpe",
        "the option's default (None) is tpe for one objective (the entry point has no "
        "--objectives), which MLproject cannot express; see test_sampler_none_is_tpe",
    ),
    ("tune", "src/hyperparameter_tuning.py", "search_space"): (
        "default",
        "the option's default (None) is the shipped search space that the name 'default' "
        "names, which MLproject cannot express; see test_search_space_none_is_default",
    ),
    ("train", "src/model_training.py", "hyperparameters"): (
        FLAG_VALUE,
        "the train entry point uses the tuned parameters (the option's flag value, "
        "--hyperparameters alone), not rectune's defaults (the option's default, None)",
    ),
}

#: (entry point, parameter) -> why it feeds an option of another name.
RENAMED = {
    ("main", "eval_k"): "evaluate_model.py's --k (a list of lengths); the main entry "
    "point's k is the single length that tuning and training score",
}

#: MLproject parameter type for each click type (MLflow's types are string, float, path
#: and uri; it passes any other, such as int, on unchecked, so int documents whole numbers).
#: click.Path options are ``string``, not ``path``: MLflow requires a ``path`` to exist
#: (DATA_DIR and the tuned parameters' file do not on a fresh clone) and makes it absolute.
MLPROJECT_TYPES = {
    click.types.IntParamType: "int",
    click.types.FloatParamType: "float",
    click.types.StringParamType: "string",
    click.Choice: "string",
    click.Path: "string",
}


def mlproject_type(param_type: click.ParamType) -> str:
    """The MLproject type for a click type; a custom ParamType reads its value from a
    string (``--n-jobs N|auto``), so it is a ``string``."""
    if isinstance(param_type, click.types.BoolParamType):
        raise AssertionError("a boolean flag takes no value: put --flag/--no-flag in the command")
    for click_type, name in MLPROJECT_TYPES.items():
        if isinstance(param_type, click_type):
            return name
    assert type(param_type).__module__ != "click.types", f"unmapped click type {param_type!r}"
    return "string"


def find_option(command: click.Command, flag: str) -> click.Option:
    for param in command.params:
        if isinstance(param, click.Option) and flag in (*param.opts, *param.secondary_opts):
            return param
    raise AssertionError(f"{command.name}: no option {flag}")


def stages(entry: str) -> list[tuple[str, list[str]]]:
    """The entry point's command as (script, arguments) per ``&&``-chained stage."""
    result = []
    for part in ENTRY_POINTS[entry]["command"].split("&&"):
        python, script, *args = shlex.split(part)
        assert python == "python" and script in SCRIPTS, part
        result.append((script, args))
    return result


def mapped_options(entry: str) -> list[tuple[str, str, click.Option]]:
    """(parameter, script, option) for every ``--option {parameter}`` of the command."""
    mapped = []
    for script, args in stages(entry):
        command = SCRIPTS[script].main
        for i, token in enumerate(args):
            if not token.startswith("--"):
                continue
            option = find_option(command, token)
            value = args[i + 1] if i + 1 < len(args) else ""
            if match := re.fullmatch(r"\{(\w+)\}", value):
                mapped.append((match[1], script, option))
    return mapped


MAPPED = [(entry, *m) for entry in ENTRY_POINTS for m in mapped_options(entry)]
IDS = [f"{entry}:{param}->{Path(script).stem}" for entry, param, script, _ in MAPPED]


def resolved(value: Any) -> Any:
    """Paths resolved from the project's root, where the entry points run."""
    return (ROOT / value).resolve() if isinstance(value, Path) else value


def cli_value(option: click.Option, text: str) -> Any:
    """``text`` on the command line as the script's option holds it."""
    return resolved(option.type_cast_value(click.Context(click.Command("mlproject")), text))


def cli_default(script: str, option: click.Option) -> Any:
    """What the script holds when the option is not given (``None`` for a required one):
    the command parsed without arguments, required options left missing."""
    ctx = SCRIPTS[script].main.make_context(script, [], resilient_parsing=True)
    return resolved(ctx.params[option.name])


def different_default(entry: str, script: str, name: str) -> tuple[Any, str] | None:
    return DIFFERENT_DEFAULTS.get((entry, script, name)) or DIFFERENT_DEFAULTS.get(
        ("*", script, name)
    )


def test_every_parameter_is_used_and_every_placeholder_declared():
    for entry, spec in ENTRY_POINTS.items():
        used = set(re.findall(r"\{(\w+)\}", spec["command"]))
        assert not used - set(spec["parameters"]), f"{entry}: undeclared placeholders"
        assert not set(spec["parameters"]) - used, f"{entry}: parameters the command ignores"


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_each_command_parses_with_its_defaults(entry):
    """The command as ``mlflow run`` substitutes the defaults (quoted like MLflow) is
    valid for each script: every option exists and every value converts."""
    params = {
        name: shlex.quote(str(spec["default"]))
        for name, spec in ENTRY_POINTS[entry]["parameters"].items()
    }
    command = ENTRY_POINTS[entry]["command"].format(**params)
    for part in command.split("&&"):
        _, script, *args = shlex.split(part)
        SCRIPTS[script].main.make_context(script, args)


@pytest.mark.parametrize("entry, param, script, option", MAPPED, ids=IDS)
def test_parameter_names_the_option_it_feeds(entry, param, script, option):
    if (entry, param) in RENAMED:
        return
    flag = "--" + param.replace("_", "-")
    assert flag in option.opts, f"{entry}: {param} feeds {script} {option.opts[0]}"


def test_renamed_parameters_are_still_renamed():
    fed = {(entry, param) for entry, param, _, option in MAPPED}
    assert set(RENAMED) <= fed


@pytest.mark.parametrize("entry, param, script, option", MAPPED, ids=IDS)
def test_parameter_type_corresponds_to_the_option_type(entry, param, script, option):
    declared = ENTRY_POINTS[entry]["parameters"][param]["type"]
    assert declared == mlproject_type(option.type), f"{entry}: {param} feeds {option.type!r}"


@pytest.mark.parametrize("entry, param, script, option", MAPPED, ids=IDS)
def test_parameter_default_is_the_option_default(entry, param, script, option, monkeypatch):
    monkeypatch.delenv("RECTUNE_DATA_DIR", raising=False)
    given = cli_value(option, str(ENTRY_POINTS[entry]["parameters"][param]["default"]))
    default = cli_default(script, option)
    if deliberate := different_default(entry, script, option.name):
        expected, why = deliberate
        if expected is FLAG_VALUE:
            expected = DEFAULT_HYPERPARAMETERS_FILE  # what the flag stands for by default
        assert given == expected, f"{entry}: {param} is allowed to differ ({why}), as {expected}"
        assert given != default, f"{entry}: {param} now agrees; drop it from DIFFERENT_DEFAULTS"
    else:
        assert default is not None, (
            f"{script} {option.opts[0]} has no default but MLproject's {entry} passes "
            f"{given!r}: add it to DIFFERENT_DEFAULTS with the reason"
        )
        assert given == default, (
            f"MLproject {entry}: {param} defaults to {given!r}, "
            f"{script} {option.opts[0]} to {default!r}"
        )


def test_every_allowed_difference_is_used():
    used = {
        key
        for entry, _, script, option in MAPPED
        for key in ((entry, script, option.name), ("*", script, option.name))
        if key in DIFFERENT_DEFAULTS
    }
    assert used == set(DIFFERENT_DEFAULTS)


def test_sampler_none_is_tpe():
    config = hyperparameter_tuning.TuningConfig(model="als")
    assert config.sampler is None and config.resolved_sampler == "tpe"


def test_search_space_none_is_default():
    from rectune.tuning.search_space import space_path  # the one test that needs it

    for model in ("als", "bpr"):
        assert space_path(model, None) == space_path(model, "default")


def test_an_empty_study_name_and_storage_mean_the_defaults(tmp_path):
    from rectune.tuning import TuningConfig, resolve

    output = tmp_path / "best.json"
    given = resolve(TuningConfig(model="als", study_name="", storage="", output=output))
    default = resolve(TuningConfig(model="als", output=output))
    assert (
        given.resolved_study_name == default.resolved_study_name == "als-synthetic-precision_at_10"
    )
    assert given.storage == default.storage == str(tmp_path / "optuna.journal")


# The library's config dataclasses: the scripts fill every field from an option, so the
# dataclasses' defaults never reach a CLI user; but one that differs from the option's is a
# second, disagreeing declaration (a library user gets another default). Each script runs
# with its defaults and its stage function stubbed, and what it hands over is compared,
# field by field, with the dataclasses' defaults.

#: (script, "Class.field") -> why the CLI passes a value other than the library's default.
LIBRARY_DIFFERENCES = {
    ("src/model_training.py", "TrainingConfig.show_progress"): "the CLI shows progress bars "
    "on a terminal (--progress); the library is quiet unless asked",
    ("src/evaluate_model.py", "EvaluationConfig.show_progress"): "as for training",
}


class Handed(Exception):
    """Raised by a stubbed stage function with what the script handed it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.given, self.keywords = args, kwargs


def handed(module: Any, function: str, args: list[str], monkeypatch) -> Handed:
    """Run ``module.main`` with ``args``; ``module.function`` stops it with its arguments."""

    def stub(*args: Any, **kwargs: Any) -> None:
        raise Handed(*args, **kwargs)

    monkeypatch.delenv("RECTUNE_DATA_DIR", raising=False)
    monkeypatch.setattr(module, function, stub)
    result = CliRunner().invoke(module.main, args)
    assert isinstance(result.exception, Handed), result.output
    return result.exception


def differing(given: Any, library: Any) -> dict[str, str]:
    """``Class.field`` -> how ``given`` differs from ``library``, for each field that does."""
    return {
        f"{type(library).__name__}.{field.name}": f"the CLI passes "
        f"{getattr(given, field.name)!r}, the library defaults to {getattr(library, field.name)!r}"
        for field in dataclasses.fields(library)
        if getattr(given, field.name) != getattr(library, field.name)
    }


def assert_only_allowed(script: str, found: dict[str, str]) -> None:
    allowed = {name for owner, name in LIBRARY_DIFFERENCES if owner == script}
    unexpected = [f"{name}: {how}" for name, how in found.items() if name not in allowed]
    assert not unexpected, "\n".join(unexpected)
    assert allowed <= set(found), "these agree now; drop them from LIBRARY_DIFFERENCES"


def test_split_defaults_are_the_library_defaults(monkeypatch):
    signature = inspect.signature(split_data.build_dataset)
    got = handed(split_data, "build_dataset", [], monkeypatch)
    library = split_data.SourceSpec(), split_data.FeedbackConfig(), split_data.SplitConfig()
    found: dict[str, str] = {}
    for given, default in zip(got.given, library, strict=True):
        found |= differing(given, default)
    for name, value in got.keywords.items():
        if value != signature.parameters[name].default:
            found[f"build_dataset({name})"] = (
                f"the CLI passes {value!r}, the library defaults to "
                f"{signature.parameters[name].default!r}"
            )
    assert_only_allowed("src/split_data.py", found)


@pytest.fixture
def restore_tuning_logs():
    """hyperparameter_tuning.main configures the rectune logger and Optuna's verbosity."""
    logger = logging.getLogger("rectune")
    handlers, level, verbosity = list(logger.handlers), logger.level, optuna.logging.get_verbosity()
    yield
    logger.handlers[:], logger.level = handlers, level
    optuna.logging.set_verbosity(verbosity)


@pytest.mark.usefixtures("restore_tuning_logs")
def test_tuning_defaults_are_the_library_defaults(monkeypatch):
    (config,) = handed(hyperparameter_tuning, "run_tuning", ["--model", "als"], monkeypatch).given
    library = hyperparameter_tuning.TuningConfig(model="als")
    assert_only_allowed("src/hyperparameter_tuning.py", differing(config, library))


def test_training_defaults_are_the_library_defaults(monkeypatch):
    (config,) = handed(model_training, "train_model", ["--model", "als"], monkeypatch).given
    library = model_training.TrainingConfig(model="als")
    assert_only_allowed("src/model_training.py", differing(config, library))


def test_evaluation_defaults_are_the_library_defaults(monkeypatch):
    (config,) = handed(evaluate_model, "run_evaluation", ["--model", "als"], monkeypatch).given
    library = evaluate_model.EvaluationConfig(model_dir=config.model_dir)
    assert_only_allowed("src/evaluate_model.py", differing(config, library))
