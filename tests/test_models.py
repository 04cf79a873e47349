"""The model factory, fitting callbacks, save/load, and ALS against popularity."""

import numpy as np
import pytest

from rectune import models
from rectune.baselines import popularity_factors
from rectune.errors import ModelError
from rectune.metrics import evaluate
from rectune.models import (
    DEFAULT_HYPERPARAMETERS,
    build_model,
    fit_model,
    load_model,
    resolve_device,
    save_model,
    validate_hyperparameters,
)

FAST = {"als": {"factors": 16, "iterations": 4}, "bpr": {"factors": 16, "iterations": 5}}


def test_defaults_fill_missing_hyperparameters_and_types_are_coerced():
    params = validate_hyperparameters("als", {"factors": 64.0, "regularization": 1})
    assert params == {**DEFAULT_HYPERPARAMETERS["als"], "factors": 64, "regularization": 1.0}
    assert isinstance(params["factors"], int) and isinstance(params["regularization"], float)
    model = build_model("bpr", {"learning_rate": 0.05}, device="cpu", seed=5)
    assert (model.factors, model.learning_rate, model.iterations) == (100, 0.05, 100)
    assert model.random_state == 5 and model.num_threads == 1  # BPR: deterministic default
    assert build_model("als", device="cpu").num_threads == 0


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        (
            "als",
            {"learning_rate": 0.1},
            "unknown ALS hyperparameter 'learning_rate'; allowed: "
            "factors, regularization, alpha, iterations",
        ),
        ("bpr", {"alpha": 1, "beta": 2}, "unknown BPR hyperparameters 'alpha', 'beta'"),
        ("als", {"factors": 0}, "'factors' must be int >= 1, got 0"),
        ("als", {"factors": 2.5}, "'factors' must be int >= 1, got 2.5"),
        ("als", {"alpha": 0}, "'alpha' must be float > 0, got 0"),
        ("bpr", {"learning_rate": "fast"}, "'learning_rate' must be float > 0, got 'fast'"),
        ("als", {"regularization": float("nan")}, "'regularization' must be float >= 0"),
        ("als", {"use_cg": 1}, "'use_cg' must be true or false, got 1"),
        ("knn", {}, "unknown model 'knn'; choose one of als, bpr"),
    ],
)
def test_bad_hyperparameters_get_a_clear_error(name, params, message):
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_model(name, params, device="cpu")


def test_device_resolution(monkeypatch):
    monkeypatch.setattr(models, "cuda_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ModelError, match="device 'cuda' was asked for, but implicit reports"):
        resolve_device("cuda")
    with pytest.raises(ModelError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    monkeypatch.setattr(models, "cuda_available", lambda: True)
    assert resolve_device("auto") == "cuda"


@pytest.mark.skipif(models.cuda_available(), reason="a real GPU builds the model")
@pytest.mark.parametrize("name", ["als", "bpr"])
def test_cuda_construction_errors_are_model_errors(monkeypatch, name):
    # Pretend CUDA is there: implicit's GPU classes accept our arguments (no TypeError)
    # and then refuse for lack of a GPU runtime, which must surface as one clear error.
    monkeypatch.setattr(models, "cuda_available", lambda: True)
    with pytest.raises(ModelError, match=f"cannot build {name.upper()} on CUDA: "):
        build_model(
            name, {"factors": 8, "use_cg": True} if name == "als" else {"factors": 8}, device="auto"
        )


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_callback_sees_every_iteration_and_can_stop_the_fit(synthetic_dataset, name):
    seen = []
    fit_model(
        build_model(name, FAST[name], device="cpu"),
        synthetic_dataset.train_val,
        callback=seen.append,
    )
    assert seen == list(range(1, FAST[name]["iterations"] + 1))

    class Stop(Exception):
        pass

    def stop_at_two(iteration):
        if iteration == 2:
            raise Stop

    with pytest.raises(Stop):
        fit_model(
            build_model(name, FAST[name], device="cpu"),
            synthetic_dataset.train_val,
            callback=stop_at_two,
        )


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_same_seed_same_factors(synthetic_dataset, name):
    def fit(seed):
        model = build_model(name, FAST[name], device="cpu", seed=seed)
        return fit_model(model, synthetic_dataset.train_val).item_factors

    assert np.array_equal(fit(1), fit(1))
    assert not np.array_equal(fit(1), fit(2))


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_save_and_load_round_trip_without_pickle(synthetic_dataset, tmp_path, name):
    model = fit_model(
        build_model(name, FAST[name], device="cpu", seed=3), synthetic_dataset.train_val
    )
    path = save_model(model, tmp_path / name)
    assert path.name == f"{name}.npz" and list(tmp_path.iterdir()) == [path]
    again = save_model(model, tmp_path / "again.npz")
    assert again.read_bytes() == path.read_bytes()  # byte-reproducible, like the data
    with np.load(path, allow_pickle=False) as stored:
        assert str(stored["model_name"]) == name
    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert np.array_equal(loaded.user_factors, model.user_factors)
    assert np.array_equal(loaded.item_factors, model.item_factors)
    assert loaded.factors == model.factors and loaded.iterations == model.iterations
    before = evaluate(model, synthetic_dataset.train_val, synthetic_dataset.validation, 10)
    after = evaluate(loaded, synthetic_dataset.train_val, synthetic_dataset.validation, 10)
    assert np.array_equal(before.recommended, after.recommended)


def test_load_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(ModelError, match="model file not found"):
        load_model(tmp_path / "nope.npz")
    np.savez(tmp_path / "other.npz", weights=np.ones(3))
    with pytest.raises(ModelError, match="not a rectune-saved ALS or BPR model"):
        load_model(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="is not a saved model"):
        load_model(tmp_path / "junk.npz")


def test_als_clearly_beats_popularity_on_the_synthetic_data(synthetic_dataset):
    ds = synthetic_dataset
    user_factors, item_factors = popularity_factors(ds.train)
    popularity = evaluate(
        None, ds.train, ds.test, 10, user_factors=user_factors, item_factors=item_factors
    ).means["precision"]
    model = fit_model(
        build_model("als", {"factors": 32, "regularization": 1.0}, device="cpu", seed=42), ds.train
    )
    als = evaluate(model, ds.train, ds.test, 10).means["precision"]
    assert popularity > 0.1  # popularity is a real baseline here, not a strawman
    assert als > 1.5 * popularity, (als, popularity)


def test_popularity_factors_rank_by_training_counts():
    import scipy.sparse as sp

    train = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 1, 0, 1], [0, 1, 0, 1]], np.float32))
    users, items = popularity_factors(train)
    assert (users @ items.T).tolist() == [[1, 3, 0, 2]] * 3
