"""The ``rectune`` console command: its subcommands are the stage scripts' commands, and
the options every stage shares (--version, --models-dir, --reports-dir, --k)."""

import logging
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

import evaluate_model
import hyperparameter_tuning
import model_training
import split_data
from rectune import __version__
from rectune.commands import COMMANDS, group, main
from rectune.commands import evaluate as evaluate_command
from rectune.commands import serve as serve_command
from rectune.commands import train as train_command
from rectune.commands import tune as tune_command
from rectune.tuning.storage import make_storage

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {
    "split": split_data,
    "tune": hyperparameter_tuning,
    "train": model_training,
    "evaluate": evaluate_model,
}


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch):
    """The tune command configures the rectune logger and Optuna's verbosity."""
    monkeypatch.delenv("RECTUNE_DATA_DIR", raising=False)
    logger = logging.getLogger("rectune")
    handlers, level, verbosity = list(logger.handlers), logger.level, optuna.logging.get_verbosity()
    yield
    logger.handlers[:], logger.level = handlers, level
    optuna.logging.set_verbosity(verbosity)


class Stop(Exception):
    """Raised by a stubbed stage function with the config it was handed."""

    def __init__(self, config):
        super().__init__()
        self.config = config


def handed(module, function, args, monkeypatch):
    """The config that ``rectune ARGS`` hands ``module.function`` (stubbed)."""

    def stub(config, **_):
        raise Stop(config)

    monkeypatch.setattr(module, function, stub)
    result = CliRunner().invoke(group, args)
    assert isinstance(result.exception, Stop), result.output
    return result.exception.config


def test_help_lists_the_six_subcommands():
    result = CliRunner().invoke(group, ["--help"])
    assert result.exit_code == 0
    listed = result.output.split("Commands:")[1].split()
    for name in ("split", "tune", "train", "evaluate", "report", "serve"):
        assert name in listed
    assert list(COMMANDS) == ["split", "tune", "train", "evaluate", "report", "serve"]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_subcommand_has_help_and_the_version(name):
    result = CliRunner().invoke(group, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: rectune {name} [OPTIONS]")
    assert "--version" in result.output
    version = CliRunner().invoke(group, [name, "--version"])
    assert (version.exit_code, version.output) == (0, f"rectune {__version__}\n")


def test_the_group_and_every_script_print_the_version():
    for command in (group, *(module.main for module in SCRIPTS.values())):
        result = CliRunner().invoke(command, ["--version"])
        assert (result.exit_code, result.output) == (0, f"rectune {__version__}\n")


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_the_scripts_run_the_groups_commands(name):
    ctx = group.make_context("rectune", [name])
    assert group.get_command(ctx, name) is SCRIPTS[name].main


def test_an_unknown_subcommand_is_a_usage_error():
    result = CliRunner().invoke(group, ["fit"])
    assert result.exit_code == 2 and "No such command 'fit'" in result.output


def test_the_console_script_entry_resolves_and_sets_openblas_first():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attribute = scripts["rectune"].partition(":")
    assert (module, attribute) == ("rectune.commands", "main") and callable(main)
    # A fresh interpreter: importing the entry module sets OPENBLAS_NUM_THREADS before numpy.
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    code = (
        "import os, sys, rectune.commands as c\n"
        "print('numpy' in sys.modules, os.environ['OPENBLAS_NUM_THREADS'])\n"
        "c.main(['--version'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT / "src")},
        check=True,
    ).stdout
    assert out.splitlines() == ["False 1", f"rectune {__version__}"]


def test_requirements_split_runtime_from_the_test_tools():
    runtime = (ROOT / "requirements.txt").read_text().lower()
    dev = (ROOT / "requirements-dev.txt").read_text().lower().splitlines()
    for tool in ("pytest", "pytest-timeout", "hypothesis", "ruff"):
        assert f"{tool}==" not in runtime
        assert any(line.startswith(f"{tool}==") for line in dev), tool
    assert "-r requirements.txt" in dev
    assert "-r " not in runtime  # pyproject's dependencies read this file


# --------------------------------------------------------------------------- --k


def test_evaluate_takes_a_list_of_ks(monkeypatch):
    args = ["evaluate", "--model", "als", "--k", "20,5,10,5"]
    config = handed(evaluate_command, "run_evaluation", args, monkeypatch)
    assert config.ks == (5, 10, 20)


@pytest.mark.parametrize("stage", ["tune", "train"])
def test_tune_and_train_take_one_k_in_the_list_syntax(stage, monkeypatch):
    module, function = {
        "tune": (tune_command, "run_tuning"),
        "train": (train_command, "train_model"),
    }[stage]
    config = handed(module, function, [stage, "--model", "als", "--k", "20,"], monkeypatch)
    assert config.k == 20
    result = CliRunner().invoke(group, [stage, "--model", "als", "--k", "5,10"])
    assert result.exit_code == 2
    assert "'5,10': this stage scores one K" in result.output
    assert "--k 5,10,20" in result.output and result.output.count("\n") == 1


# --------------------------------------------------------------------------- dirs


def test_tune_writes_into_models_dir_and_reports_dir(tmp_path, monkeypatch):
    args = ["tune", "--model", "als", "--models-dir", str(tmp_path / "m")]
    config = handed(tune_command, "run_tuning", args, monkeypatch)
    assert config.output == tmp_path / "m" / "best_hyperparameters.json"
    assert config.resolved_reports_dir == tmp_path / "m" / "reports"
    config = handed(
        tune_command, "run_tuning", [*args, "--reports-dir", str(tmp_path / "r")], monkeypatch
    )
    assert config.resolved_reports_dir == tmp_path / "r"


def test_tune_keeps_output_and_its_reports_beside_it(tmp_path, monkeypatch):
    args = ["tune", "--model", "als", "--output", str(tmp_path / "o" / "best.json")]
    config = handed(tune_command, "run_tuning", args, monkeypatch)
    assert config.output == tmp_path / "o" / "best.json"
    assert config.resolved_reports_dir == tmp_path / "o" / "reports"


def test_evaluate_reports_dir(tmp_path, monkeypatch):
    args = ["evaluate", "--model", "als", "--models-dir", str(tmp_path)]
    config = handed(evaluate_command, "run_evaluation", args, monkeypatch)
    assert config.model_dir == tmp_path / "als" and config.reports_dir == tmp_path / "reports"
    config = handed(
        evaluate_command,
        "run_evaluation",
        [*args, "--reports-dir", str(tmp_path / "r")],
        monkeypatch,
    )
    assert config.reports_dir == tmp_path / "r"


# --------------------------------------------------------------------------- serve


def test_serve_runs_mlflow_with_this_pythons_bin_first_on_path(monkeypatch):
    calls = []

    def call(command, env):
        calls.append((command, env))
        return 3

    monkeypatch.setattr(serve_command.subprocess, "call", call)
    result = CliRunner().invoke(group, ["serve", "--model", "bpr", "--port", "5005"])
    assert result.exit_code == 3
    ((command, env),) = calls
    assert command[:5] == [sys.executable, "-m", "mlflow", "models", "serve"]
    assert command[5:] == [
        "-m",
        "models:/rectune-bpr@champion",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        "5005",
    ]
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    CliRunner().invoke(group, ["serve", "--model-uri", "runs:/abc/recommender"])
    assert calls[-1][0][6] == "runs:/abc/recommender"


# --------------------------------------------------------------------------- report


def small_study(storage, name):
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(lambda t: t.suggest_float("alpha", 0, 1) - t.suggest_int("factors", 1, 4), 6)
    return study


def test_report_rerenders_a_studys_page_from_its_storage(tmp_path):
    journal = tmp_path / "models" / "optuna.journal"
    journal.parent.mkdir()
    storage = make_storage(str(journal))
    small_study(storage, "one")
    result = CliRunner().invoke(group, ["report", "--models-dir", str(tmp_path / "models")])
    assert result.exit_code == 0, result.output
    page = tmp_path / "models" / "reports" / "one.html"
    assert result.output == f"Report: {page}\n"
    assert "Study one" in page.read_text()

    small_study(storage, "two")
    args = ["report", "--storage", str(journal), "--reports-dir", str(tmp_path / "r")]
    result = CliRunner().invoke(group, args)
    assert result.exit_code == 2 and "holds 2 studies; name one with --study-name: one, two" in (
        result.output
    )
    result = CliRunner().invoke(group, [*args, "--study-name", "two"])
    assert result.exit_code == 0 and (tmp_path / "r" / "two.html").exists()


def test_report_without_a_storage_is_one_error_line(tmp_path):
    result = CliRunner().invoke(group, ["report", "--models-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert (
        result.output.startswith("Error: no Optuna storage at ") and result.output.count("\n") == 1
    )
