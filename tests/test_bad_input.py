"""Every row of docs/bad-input.md, run through the command line as a user would.

Each case sets up its bad input in a fresh folder, runs a stage script in-process with
``CliRunner`` and checks the one ``Error:`` line (exit code 2) or, for hostile ids, that
they are kept as data. A test also checks that the table and these cases match.
"""

import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import evaluate_model
import hyperparameter_tuning
import model_training
import split_data
from rectune.data.build import SourceSpec, build_dataset
from rectune.data.feedback import FeedbackConfig
from rectune.data.splits import SplitConfig
from rectune.data.store import read_ids
from rectune.training import TrainingConfig, train_model

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"
SECRET = "pa55word"
FAST_ALS = "parameters:\n  factors: {type: categorical, choices: [8]}\n  iterations: 2\n"


@dataclass
class Case:
    row: str  # the first cell of the row in docs/bad-input.md
    script: Callable
    args: Callable[[Path], list[str]]  # builds the bad input in a folder; returns argv
    message: str
    env: dict[str, str] | None = None  # set for the command


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def ratings(folder: Path, header: str = "user_id,item_id,rating,timestamp") -> Path:
    rows = [f"u{u},i{(u * 7 + j) % 40},4,{1000 + u * 10 + j}" for u in range(30) for j in range(8)]
    return write(folder / "ratings.csv", "\n".join([header, *rows]) + "\n")


def list_ids(folder: Path) -> Path:
    path = folder / "lists.parquet"
    pd.DataFrame({"user_id": [[1, 2], [3]], "item_id": [1, 2]}).to_parquet(path)
    return path


def tune_args(folder: Path, *extra: str) -> list[str]:
    write(folder / "fast.yaml", FAST_ALS)
    return [
        "--no-progress",
        "--search-space",
        str(folder / "fast.yaml"),
        "--output",
        str(folder / "models" / "best_hyperparameters.json"),
        "--storage",
        f"sqlite:///{folder / 'optuna.db'}",
        "--data-dir",
        str(folder / "data"),
        *extra,
    ]


def corrupt_output(text: str) -> Callable[[Path], list[str]]:
    def args(folder: Path) -> list[str]:
        write(folder / "models" / "best_hyperparameters.json", text)
        return ["--model", "als", "--n-trials", "1", *tune_args(folder)]

    return args


def study_for_another(option: list[str]) -> Callable[[Path], list[str]]:
    def args(folder: Path) -> list[str]:
        first = tune_args(folder, "--model", "als", "--n-trials", "1", "--study-name", "s")
        assert CliRunner().invoke(hyperparameter_tuning.main, first).exit_code == 0
        return [*tune_args(folder, "--n-trials", "1", "--study-name", "s"), *option]

    return args


def model_folder(folder: Path, seed: int = 42) -> Path:
    """A small ALS model trained on the synthetic dataset split with ``seed``."""
    data_dir = folder / "data"
    build_dataset(SourceSpec(), FeedbackConfig(), SplitConfig(seed=seed), data_dir=data_dir)
    result = train_model(
        TrainingConfig(
            model="als",
            overrides={"factors": 8, "iterations": 2},
            data_dir=data_dir,
            models_dir=folder / "models",
            experiment_name="bad-input",
        )
    )
    return result.model_dir


def evaluate_args(folder: Path, model_dir: Path, *extra: str) -> list[str]:
    return [
        "--model-dir",
        str(model_dir),
        "--data-dir",
        str(folder / "data"),
        "--models-dir",
        str(folder / "models"),
        "--experiment-name",
        "bad-input",
        "--n-bootstrap",
        "10",
        *extra,
    ]


def model_from_another_split(folder: Path) -> list[str]:
    model_dir = model_folder(folder / "elsewhere", seed=7)
    build_dataset(SourceSpec(), FeedbackConfig(), SplitConfig(), data_dir=folder / "data")
    return evaluate_args(folder, model_dir)


def corrupt_model_file(content: Callable[[Path], bytes]) -> Callable[[Path], list[str]]:
    def args(folder: Path) -> list[str]:
        model_dir = model_folder(folder)
        (model_dir / "model.npz").write_bytes(content(model_dir / "model.npz"))
        return evaluate_args(folder, model_dir)

    return args


def with_pickled_factors(path: Path) -> bytes:
    """The model file with its user factors replaced by an object (pickled) array."""
    buffer = io.BytesIO()
    with np.load(path) as stored:
        arrays = dict(stored)
    arrays["user_factors"] = np.array([{"__reduce__": "os.system"}], dtype=object)
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def search_space_file(text: str) -> Callable[[Path], list[str]]:
    """Arguments tuning ALS with a search space file ``s.yaml`` holding ``text``."""
    return lambda folder: ["--model", "als", "--search-space", str(write(folder / "s.yaml", text))]


def read_only(folder: Path) -> Path:
    """A folder where nothing can be created (the tests may run as root, whom file
    modes do not stop, so it is a path under a regular file)."""
    return write(folder / "a-file", "") / "models"


def hyperparameters_file(text: str) -> Callable[[Path], list[str]]:
    def args(folder: Path) -> list[str]:
        build_dataset(SourceSpec(), FeedbackConfig(), SplitConfig(), data_dir=folder / "data")
        path = write(folder / "best.json", text)
        return [
            "--model",
            "als",
            "--hyperparameters",
            str(path),
            "--data-dir",
            str(folder / "data"),
            "--models-dir",
            str(folder / "models"),
        ]

    return args


def offline(folder: Path) -> list[str]:
    return ["--dataset", "movielens-100k", "--data-dir", str(folder / "data")]


CASES = [
    # Data stage
    Case(
        "Input file without the id columns",
        split_data.main,
        lambda f: ["--input", str(ratings(f, "user,movie,stars,ts")), "--data-dir", str(f)],
        "columns 'user_id', 'item_id' not found; the file has columns: 'user', 'movie'",
    ),
    Case(
        "Empty input file",
        split_data.main,
        lambda f: ["--input", str(write(f / "empty.csv", "")), "--data-dir", str(f)],
        "input file is empty",
    ),
    Case(
        "Input file with a header and no rows",
        split_data.main,
        lambda f: ["--input", str(write(f / "h.csv", "user_id,item_id\n")), "--data-dir", str(f)],
        "has no rows",
    ),
    Case(
        "Input file that does not exist",
        split_data.main,
        lambda f: ["--input", str(f / "nowhere.csv"), "--data-dir", str(f)],
        "input file not found",
    ),
    Case(
        "Input that is a folder",
        split_data.main,
        lambda f: ["--input", str(f), "--data-dir", str(f / "data")],
        "is a folder; give the ratings file in it",
    ),
    Case(
        "Parquet file that is not Parquet",
        split_data.main,
        lambda f: ["--input", str(write(f / "x.parquet", "a,b\n1,2\n")), "--data-dir", str(f)],
        "x.parquet",
    ),
    Case(
        "Unknown dataset name",
        split_data.main,
        lambda f: ["--dataset", "movielens-5m", "--data-dir", str(f)],
        "'movielens-5m' is not one of",
    ),
    Case(
        "Fraction out of range",
        split_data.main,
        lambda f: ["--test-fraction", "1.5", "--data-dir", str(f)],
        "1.5 is not in the range 0<x<1",
    ),
    Case(
        "Temporal split without timestamps",
        split_data.main,
        lambda f: [
            "--input",
            str(write(f / "r.csv", "user_id,item_id,rating\nu1,i1,5\n")),
            "--strategy",
            "temporal",
            "--data-dir",
            str(f),
        ],
        "the temporal split needs timestamps",
    ),
    Case(
        "Rating threshold that is not a number",
        split_data.main,
        lambda f: ["--min-rating", "four", "--data-dir", str(f)],
        "'four' is neither a number nor 'none'",
    ),
    Case(
        "Filters that leave nothing",
        split_data.main,
        lambda f: [
            "--input",
            str(ratings(f)),
            "--min-user-interactions",
            "1000",
            "--data-dir",
            str(f),
        ],
        "no interactions left",
    ),
    Case(
        "Separator that is empty",
        split_data.main,
        lambda f: ["--input", str(ratings(f)), "--sep", "", "--data-dir", str(f)],
        "--sep '' is no separator",
    ),
    Case(
        "Ids that are lists",
        split_data.main,
        lambda f: ["--input", str(list_ids(f)), "--data-dir", str(f)],
        "user_id must hold plain ids (numbers or strings), not lists or records",
    ),
    Case(
        "Negative ratings as matrix values",
        split_data.main,
        lambda f: [
            "--input",
            str(write(f / "r.csv", "user_id,item_id,rating\n1,1,1\n1,2,-1\n2,1,5\n")),
            "--data-dir",
            str(f),
        ],
        "1 rating(s) are zero or negative, and the matrix values are the ratings",
    ),
    Case(
        "Download that fails (offline)",
        split_data.main,
        offline,
        "could not download movielens-100k from http://127.0.0.1:9/ml-100k.zip",
    ),
    # Tuning stage
    Case(
        "Unknown model",
        hyperparameter_tuning.main,
        lambda f: ["--model", "svd"],
        "'svd' is not one of 'als', 'bpr'",
    ),
    Case(
        "Search space with a parameter the model does not take",
        hyperparameter_tuning.main,
        search_space_file("parameters:\n  learning_rate: 0.1\n"),
        "parameter 'learning_rate': ALS does not take this parameter",
    ),
    Case(
        "Search space with a weighting ALS does not know",
        hyperparameter_tuning.main,
        search_space_file("parameters:\n  weighting: {type: categorical, choices: [log]}\n"),
        "parameter 'weighting': must be one of stored, binary, bm25, tfidf, got 'log'",
    ),
    Case(
        "Search space that is neither a file nor a shipped name",
        hyperparameter_tuning.main,
        lambda f: ["--model", "als", "--search-space", str(f / "gird")],
        "(or name a shipped one: default, grid)",
    ),
    Case(
        "Search space with YAML aliases",
        hyperparameter_tuning.main,
        # 300 bytes that expand to 9**7 values when the aliases are followed
        search_space_file(
            "parameters:\n  factors:\n    type: categorical\n"
            "    choices: &a [1,1,1,1,1,1,1,1,1]\n"
            + "".join(
                f"  x{i}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(6)
            )
        ),
        "uses YAML aliases (*name); write each value out",
    ),
    Case(
        "Search space that is a folder",
        hyperparameter_tuning.main,
        lambda f: ["--model", "als", "--search-space", str(f)],
        "is a folder; give a YAML file",
    ),
    Case(
        "Search space with true as a count",
        hyperparameter_tuning.main,
        search_space_file("parameters:\n  factors: true\n"),
        "parameter 'factors': must be int >= 1, got True",
    ),
    Case(
        "Search space that is not YAML",
        hyperparameter_tuning.main,
        search_space_file("parameters: [factors: {\n"),
        "s.yaml",
    ),
    Case(
        "Zero or negative K",
        hyperparameter_tuning.main,
        lambda f: ["--model", "als", "--k", "0"],
        "0 is not in the range x>=1",
    ),
    Case(
        "K longer than the catalogue",
        hyperparameter_tuning.main,
        lambda f: tune_args(f, "--model", "als", "--k", "100000"),
        "--k 100000 is longer than the catalogue (",
    ),
    Case(
        "Repair of a study that does not exist",
        hyperparameter_tuning.main,
        lambda f: tune_args(f, "--model", "als", "--repair", "--study-name", "nope"),
        "no study 'nope' in",
    ),
    Case(
        "Trials at once that are not a count",
        hyperparameter_tuning.main,
        lambda f: ["--model", "als", "--n-jobs", "0"],
        "'0' is neither a positive whole number nor 'auto'",
    ),
    Case(
        "Corrupt best_hyperparameters.json",
        hyperparameter_tuning.main,
        corrupt_output("not json at all"),
        "best_hyperparameters.json is not valid JSON",
    ),
    Case(
        "Truncated best_hyperparameters.json",
        hyperparameter_tuning.main,
        corrupt_output('{"als": {"factors": 6'),
        "best_hyperparameters.json is not valid JSON",
    ),
    Case(
        "Unreachable storage URL",
        hyperparameter_tuning.main,
        lambda f: tune_args(
            f, "--model", "als", "--storage", f"postgresql://tuner:{SECRET}@127.0.0.1:1/optuna"
        ),
        "cannot open Optuna storage postgresql://tuner:***@127.0.0.1:1/optuna",
    ),
    Case(
        "Storage URL with a password that holds a raw @",
        hyperparameter_tuning.main,
        lambda f: tune_args(
            f, "--model", "als", "--storage", f"postgresql://tuner:{SECRET}@x@127.0.0.1/optuna"
        ),
        "postgresql://tuner:***@127.0.0.1/optuna: the password holds a raw '@'",
    ),
    Case(
        "Storage URL missing a slash",
        hyperparameter_tuning.main,
        lambda f: tune_args(f, "--model", "als", "--storage", "postgresql:/oops"),
        "--storage postgresql:/oops is neither a URL (postgresql://...) nor a journal file path",
    ),
    Case(
        "Tracking server that does not answer",
        hyperparameter_tuning.main,
        lambda f: tune_args(f, "--model", "als"),
        "cannot reach the MLflow tracking server http://tuner:***@127.0.0.1:1 (",
        env={"MLFLOW_TRACKING_URI": f"http://tuner:{SECRET}@127.0.0.1:1"},
    ),
    Case(
        "Tracking URI of a kind MLflow does not know",
        hyperparameter_tuning.main,
        lambda f: tune_args(f, "--model", "als"),
        "cannot use MLflow tracking store foo://x: Model registry functionality is unavailable",
        env={"MLFLOW_TRACKING_URI": "foo://x"},
    ),
    Case(
        "Storage that is the MLflow database",
        hyperparameter_tuning.main,
        lambda f: tune_args(f, "--model", "als", "--storage", os.environ["MLFLOW_TRACKING_URI"]),
        "is the MLflow tracking database",
    ),
    Case(
        "SQLite database given as a journal file",
        hyperparameter_tuning.main,
        lambda f: tune_args(
            f, "--model", "als", "--storage", str(write(f / "old.db", b"SQLite format 3\x00" * 8))
        ),
        "is a SQLite database, not an Optuna journal file; give it as a URL: sqlite:///",
    ),
    Case(
        "File that is not an Optuna journal",
        hyperparameter_tuning.main,
        lambda f: tune_args(f, "--model", "als", "--storage", str(write(f / "notes.txt", "hi\n"))),
        "is not an Optuna journal file (Expecting value",
    ),
    Case(
        "Study created for another model",
        hyperparameter_tuning.main,
        study_for_another(["--model", "bpr"]),
        "was created with model='als', not 'bpr'",
    ),
    Case(
        "Study created for another metric",
        hyperparameter_tuning.main,
        study_for_another(["--model", "als", "--metric", "recall"]),
        "was created with objectives=['precision@10'], not ['recall@10']",
    ),
    # Training stage
    Case(
        "Corrupt --hyperparameters file",
        model_training.main,
        hyperparameters_file('{"als": {"factors": '),
        "best.json is not valid JSON",
    ),
    Case(
        "Hyperparameter the model does not take",
        model_training.main,
        hyperparameters_file('{"als": {"learning_rate": 0.1}}'),
        "learning_rate",
    ),
    Case(
        "Tracking server that does not answer, before the fit",
        model_training.main,
        hyperparameters_file('{"als": {"factors": 8, "iterations": 500}}'),
        "cannot reach the MLflow tracking server http://127.0.0.1:1 (",
        env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"},
    ),
    Case(
        "Model folder that cannot be written",
        model_training.main,
        lambda f: [*hyperparameters_file('{"als": {"factors": 8}}')(f)[:-1], str(read_only(f))],
        "cannot write the model to",
    ),
    # Evaluation stage
    Case(
        "Model from another dataset or split",
        evaluate_model.main,
        model_from_another_split,
        "fingerprint",
    ),
    Case(
        "Corrupt model file",
        evaluate_model.main,
        corrupt_model_file(lambda path: b"PK\x03\x04 truncated"),
        "model.npz is not a saved model: it is not a complete NumPy archive",
    ),
    Case(
        "Model file of random bytes",
        evaluate_model.main,
        corrupt_model_file(lambda path: bytes(range(256)) * 2),
        "model.npz is not a saved model: it is neither a NumPy archive nor free of pickled",
    ),
    Case(
        "Model file with pickled objects",
        evaluate_model.main,
        corrupt_model_file(with_pickled_factors),
        "model.npz is not a saved model: it is neither a NumPy archive nor free of pickled",
    ),
    Case(
        "Zero or negative K in evaluation",
        evaluate_model.main,
        lambda f: ["--model-dir", str(f), "--k", "-5"],
        "needs one or more positive integers",
    ),
]


@pytest.fixture
def folder(tmp_path, monkeypatch, mlflow_uri):
    monkeypatch.chdir(tmp_path)
    # A mirror that refuses connections: downloads fail at once, online or not.
    monkeypatch.setenv("RECTUNE_MOVIELENS_URL", "http://127.0.0.1:9")
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[case.row for case in CASES])
def test_bad_input_gets_one_error_line(case, folder, monkeypatch):
    for name, value in (case.env or {}).items():
        monkeypatch.setenv(name, value)
    args = case.args(folder)
    result = CliRunner().invoke(case.script, args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert case.message in result.output
    assert SECRET not in result.output
    assert "Traceback" not in result.output


def test_hostile_ids_are_kept_as_data(tmp_path):
    hostile = [
        "../../etc/passwd",
        "__import__('os').system('touch pwned')",
        "'; DROP TABLE users; --",
        "=cmd|' /C calc'!A0",
    ]
    rows = [f'"{u}",i{j},4' for u in (h.replace('"', '""') for h in hostile) for j in range(8)]
    rows += [f"u{u},i{j},4" for u in range(20) for j in range(8)]
    path = write(tmp_path / "ids.csv", "user_id,item_id,rating\n" + "\n".join(rows) + "\n")
    result = CliRunner().invoke(
        split_data.main,
        ["--input", str(path), "--dataset-name", "hostile", "--data-dir", str(tmp_path / "d")],
    )
    assert result.exit_code == 0, result.output
    users = [str(u) for u in read_ids(tmp_path / "d" / "processed" / "hostile", "user")]
    assert set(hostile) <= set(users)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert all(p.parts[0] in ("d", "ids.csv") for p in written)


def test_the_table_and_the_cases_match():
    rows = re.findall(r"^\| ([^|]+?) \|", DOC.read_text(), flags=re.MULTILINE)
    documented = [row for row in rows if row not in ("Input", "---")]
    assert sorted(documented) == sorted(
        [case.row for case in CASES] + ["Ids that look like code, SQL or paths"]
    )
