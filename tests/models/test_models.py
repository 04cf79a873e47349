"""The model factory, fitting callbacks, save/load, and ALS against popularity."""

import numpy as np
import pytest
import scipy.sparse as sp

from rectune import models
from rectune.errors import ModelError
from rectune.evaluation.baselines import popularity_factors
from rectune.evaluation.evaluator import evaluate
from rectune.evaluation.ranking import factors_of
from rectune.models import (
    DEFAULT_HYPERPARAMETERS,
    build_model,
    factory,
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
            "factors, regularization, alpha, iterations, weighting",
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
    # Patched where resolve_device looks it up: the module defining both, not the face.
    monkeypatch.setattr(factory, "cuda_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ModelError, match="device 'cuda' was asked for, but implicit reports"):
        resolve_device("cuda")
    with pytest.raises(ModelError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    monkeypatch.setattr(factory, "cuda_available", lambda: True)
    assert resolve_device("auto") == "cuda"


@pytest.mark.skipif(models.cuda_available(), reason="a real GPU builds the model")
@pytest.mark.parametrize("name", ["als", "bpr"])
def test_cuda_construction_errors_are_model_errors(monkeypatch, name):
    # Pretend CUDA is there: implicit's GPU classes accept our arguments (no TypeError)
    # and then refuse for lack of a GPU runtime, which must surface as one clear error.
    monkeypatch.setattr(factory, "cuda_available", lambda: True)
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


def test_als_weighting_is_applied_to_the_training_values():
    from rectune.models import Adjustments

    ratings = sp.csr_matrix(np.array([[5.0, 0.0, 1.0], [0.0, 3.0, 4.0]], dtype=np.float32))
    assert Adjustments("stored").training_matrix(ratings) is ratings
    binary = Adjustments("binary").training_matrix(ratings)
    assert binary.toarray().tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]
    assert ratings.data.tolist() == [5.0, 1.0, 3.0, 4.0]  # the caller's matrix is kept
    from implicit.nearest_neighbours import bm25_weight

    bm25 = Adjustments("bm25").training_matrix(ratings)
    expected = bm25_weight(ratings, K1=100, B=0.8).toarray()
    assert bm25.dtype == np.float32 and np.allclose(bm25.toarray(), expected)


def test_weighting_changes_the_fit_only_through_the_values(synthetic_dataset):
    train = synthetic_dataset.train
    ones = train.copy()
    ones.data[:] = 1.0
    binary = fit_model(build_model("als", {**FAST["als"], "weighting": "binary"}, seed=3), train)
    plain = fit_model(build_model("als", FAST["als"], seed=3), ones)
    assert np.array_equal(binary.item_factors, plain.item_factors)


def test_bpr_popularity_correction_adds_beta_log_count_to_the_item_bias(synthetic_dataset):
    train = synthetic_dataset.train
    params = {**FAST["bpr"], "iterations": 3}
    raw = fit_model(build_model("bpr", {**params, "popularity_correction": 0.0}, seed=2), train)
    seen = {}
    corrected = build_model("bpr", {**params, "popularity_correction": 0.5}, seed=2)

    def callback(done):
        if done == 3:  # scored mid-fit as it will be after: the correction included
            seen["items"] = factors_of(corrected)[1].copy()

    fit_model(corrected, train, callback=callback)
    counts = np.bincount(train.indices, minlength=train.shape[1])
    shift = corrected.item_factors[:, -1] - raw.item_factors[:, -1]
    assert np.allclose(shift, 0.5 * np.log(np.maximum(counts, 1)), atol=1e-5)
    assert np.array_equal(corrected.item_factors[:, :-1], raw.item_factors[:, :-1])
    assert np.array_equal(seen["items"], corrected.item_factors)
    assert corrected.pending_item_bias is None


def test_the_corrected_bias_is_saved_with_the_model(synthetic_dataset, tmp_path):
    model = fit_model(build_model("bpr", FAST["bpr"], seed=1), synthetic_dataset.train)
    loaded = load_model(save_model(model, tmp_path / "bpr"))
    assert np.array_equal(loaded.item_factors, model.item_factors)
    assert DEFAULT_HYPERPARAMETERS["bpr"]["popularity_correction"] == 1.0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"weighting": "log"}, "'weighting' must be one of stored, binary, bm25, tfidf"),
        ({"weighting": 1}, "'weighting' must be one of"),
    ],
)
def test_bad_weighting_is_refused(params, message):
    with pytest.raises(ModelError, match=message):
        build_model("als", params, device="cpu")


def test_correction_must_not_be_negative():
    with pytest.raises(ModelError, match="'popularity_correction' must be float >= 0"):
        build_model("bpr", {"popularity_correction": -1}, device="cpu")


def test_the_face_exports_every_name_it_lists_and_the_old_module_had():
    # The names `from rectune.models import X` gave when models was one module.
    before = {
        "DEFAULT_HYPERPARAMETERS", "DEVICES", "HYPERPARAMETERS", "MODEL_NAMES", "Adjustments",
        "Device", "Hyperparameter", "IterationCallback", "ModelName", "build_model",
        "check_model_name", "cuda_available", "fit_model", "load_factors", "load_model",
        "model_name_of", "resolve_device", "save_model", "to_cpu", "validate_hyperparameters",
    }  # fmt: skip
    assert set(models.__all__) == before
    assert all(hasattr(models, name) for name in models.__all__)
