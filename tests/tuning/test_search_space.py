"""YAML search spaces: every kind of parameter, the shipped grids, and rejected files."""

import optuna
import pytest

from rectune.errors import ConfigError
from rectune.tuning.search_space import load_search_space, parse_search_space


def write(tmp_path, text: str, name: str = "space.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_grids_match_the_documented_defaults():
    # The seed plan's grids, by name.
    als = load_search_space("als", "grid")
    assert als.grid() == {
        "factors": [32, 64, 128, 256],
        "regularization": [0.01, 0.1, 1.0, 10.0],
        "iterations": [10, 20, 50, 100],
    }
    assert "alpha" not in als.distributions and als.fixed == {"weighting": "binary"}
    bpr = load_search_space("bpr", "grid")
    assert bpr.grid() == {
        "factors": [32, 64, 128, 256],
        "learning_rate": [0.001, 0.01, 0.1],
        "regularization": [0.001, 0.01, 0.1],
        "iterations": [50, 100, 200],
    }
    assert bpr.fixed == {}


def test_default_spaces_search_wide_ranges_with_iterations_as_the_budget():
    als = load_search_space("als")
    assert load_search_space("als", "default").fingerprint == als.fingerprint
    assert als.fixed == {"iterations": 30}
    d = als.distributions
    assert (d["factors"].low, d["factors"].high, d["factors"].log) == (16, 256, True)
    assert (d["regularization"].low, d["regularization"].high) == (0.01, 1000.0)
    assert (d["alpha"].low, d["alpha"].high, d["alpha"].log) == (0.1, 100.0, True)
    assert d["weighting"].choices == ("stored", "binary", "bm25")
    bpr = load_search_space("bpr")
    assert bpr.fixed == {"iterations": 100}
    assert set(bpr.distributions) == {"factors", "learning_rate", "regularization"}


def test_a_file_named_like_a_shipped_space_is_read_as_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "parameters:\n  factors: {type: categorical, choices: [8]}\n", "grid")
    assert load_search_space("als", "grid").source == "grid"


def test_a_string_hyperparameter_takes_categorical_choices_only(tmp_path):
    space = load_search_space(
        "als",
        write(tmp_path, "parameters:\n  weighting: {type: categorical, choices: [bm25, binary]}\n"),
    )
    assert space.distributions["weighting"].choices == ("bm25", "binary")
    with pytest.raises(ConfigError, match="'weighting': must be one of stored, binary"):
        load_search_space("als", write(tmp_path, "parameters:\n  weighting: log\n"))
    with pytest.raises(ConfigError, match="takes one of stored, binary, bm25, tfidf; use type"):
        load_search_space(
            "als", write(tmp_path, "parameters:\n  weighting: {type: int, low: 1, high: 2}\n")
        )


def test_every_kind_of_parameter(tmp_path):
    space = load_search_space(
        "als",
        write(
            tmp_path,
            """
parameters:
  factors: {type: int, low: 16, high: 64, step: 16}
  regularization: {type: float, low: 0.001, high: 10.0, log: true}
  alpha: {type: float, low: 1.0, high: 2.0, step: 0.5}
  iterations: 12
  use_cg: {type: fixed, value: false}
""",
        ),
    )
    assert space.fixed == {"iterations": 12, "use_cg": False}
    assert space.distributions["factors"] == optuna.distributions.IntDistribution(16, 64, step=16)
    assert space.distributions["regularization"].log
    with pytest.raises(ConfigError, match="parameter 'regularization' is continuous"):
        space.grid()
    del space.distributions["regularization"]  # without it, the rest enumerate
    assert space.grid() == {"factors": [16, 32, 48, 64], "alpha": [1.0, 1.5, 2.0]}
    space = load_search_space("als", tmp_path / "space.yaml")
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    params = space.suggest(trial)
    assert params["iterations"] == 12 and params["use_cg"] is False
    assert params["factors"] in (16, 32, 48, 64) and 0.001 <= params["regularization"] <= 10
    assert space.contains(
        {"factors": 32, "alpha": 1.5, "regularization": 20.0, "iterations": 12}
    ) == {"factors": 32, "alpha": 1.5}


def test_fingerprint_ignores_layout_but_not_values():
    a = parse_search_space(
        "als", {"parameters": {"factors": {"type": "categorical", "choices": [8, 16]}}}
    )
    b = parse_search_space(
        "als",
        {"model": "als", "parameters": {"factors": {"choices": [8, 16], "type": "categorical"}}},
    )
    c = parse_search_space(
        "als", {"parameters": {"factors": {"type": "categorical", "choices": [8, 32]}}}
    )
    assert a.fingerprint == b.fingerprint != c.fingerprint


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "parameters:\n  learning_rate: {type: float, low: 0.1, high: 1}",
            "parameter 'learning_rate': ALS does not take this parameter; it takes factors, "
            "regularization, alpha, iterations",
        ),
        (
            "parameters:\n  factors: {type: normal, low: 1, high: 3}",
            "parameter 'factors': unknown type 'normal'; use one of categorical, int, float, fixed",
        ),
        (
            "parameters:\n  regularization: {type: float, low: 1.0, high: 0.1}",
            r"parameter 'regularization': low \(1.0\) must be less than high \(0.1\)",
        ),
        (
            "parameters:\n  factors: {type: int, low: 8, high: 8}",
            r"low \(8\) must be less than high \(8\)",
        ),
        ("parameters:\n  factors: {type: int, low: 8}", "type int needs high"),
        (
            "parameters:\n  factors: {type: categorical, choices: []}",
            "'choices' must be a non-empty list",
        ),
        (
            "parameters:\n  factors: {type: categorical, choices: [8, 0]}",
            "parameter 'factors': must be int >= 1, got 0",
        ),
        (
            "parameters:\n  regularization: {type: float, low: 0, high: 1, log: true}",
            "a log range needs low > 0",
        ),
        (
            "parameters:\n  factors: {type: int, low: 8, high: 64, stride: 8}",
            "unknown key\\(s\\) stride for type int",
        ),
        (
            "parameters:\n  alpha: {type: float, low: 1, high: 5, step: -1}",
            "'step' must be a positive number",
        ),
        ("parameters:\n  factors: {type: int, low: 8.5, high: 64}", "must be int >= 1, got 8.5"),
        ("model: bpr\nparameters:\n  factors: 8", "written for model 'bpr', but tuning 'als'"),
        ("parameters: {}", "'parameters' is empty"),
        ("factors: [8, 16]", "expected a mapping with a 'parameters' mapping"),
        ("parameters:\n  factors: [8, 16", "is not valid YAML"),
        ("parameters:\n  use_cg: {type: fixed}", "a fixed parameter needs 'value'"),
        (
            "parameters:\n  iterations: {type: float, low: 1, high: 5}",
            "parameter 'iterations': takes whole numbers; use type int or categorical",
        ),
        (
            "parameters:\n  factors: {type: int, low: 8, high: 64, step: 1.5}",
            "an int 'step' must be a whole number, got 1.5",
        ),
        (
            "parameters:\n  alpha: {type: float, low: 1.0, high: 2.0, step: 0.3}",
            r"'step' \(0.3\) must divide high - low \(1\)",
        ),
    ],
)
def test_invalid_spaces_are_rejected_naming_file_parameter_and_reason(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as err:
        load_search_space("als", path)
    assert str(err.value).startswith(f"search space {path}")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"search space file not found: .*nope.yaml"):
        load_search_space("als", tmp_path / "nope.yaml")
