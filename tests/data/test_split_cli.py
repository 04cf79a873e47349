"""split_data.py as a user runs it: outputs, manifest, reproducibility and bad input."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

import split_data
from rectune import __version__
from rectune._io import csr_fingerprint
from rectune.data.store import load_dataset

ROOT = Path(__file__).resolve().parents[2]
SPLITS = ("train", "test", "train_val", "validation")
SMALL = ("--n-users", "60", "--n-items", "80", "--n-interactions", "1500")


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_default_run_writes_every_file(run_split, tmp_path):
    result = run_split(*SMALL)
    assert result.exit_code == 0, result.output
    out = tmp_path / "data" / "processed" / "synthetic"
    assert f"Wrote {out}" in result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}.npz" for s in SPLITS] + ["user_ids.csv", "item_ids.csv", "manifest.json"]
    )
    shapes = {sp.load_npz(out / f"{s}.npz").shape for s in SPLITS}
    assert shapes == {(60, 80)}
    users = pd.read_csv(out / "user_ids.csv")
    assert users.columns.tolist() == ["user_index", "user_id"]
    assert users["user_id"].tolist() == list(range(1, 61))
    # The folder is a link to its one version (swapped in one step); nothing else is left.
    processed = tmp_path / "data" / "processed"
    assert out.is_symlink() and (processed / os.readlink(out)).is_dir()
    assert sorted(p.name for p in processed.iterdir()) == sorted(
        ["synthetic", "synthetic.lock", os.readlink(out)]
    )


def test_manifest_records_source_options_counts_and_fingerprints(run_split, tmp_path):
    frame = pd.DataFrame(
        {
            "u": [1, 1, 1, 2, 2, 2, 3],
            "i": [5, 6, 7, 5, 6, 8, 5],
            "stars": [5, 4, 1, 5, 5, 5, 2],
            "when": range(7),
        }
    )
    path = tmp_path / "ratings.csv"
    frame.to_csv(path, index=False)
    result = run_split(
        "--input",
        str(path),
        "--user-col",
        "u",
        "--item-col",
        "i",
        "--rating-col",
        "stars",
        "--timestamp-col",
        "when",
        "--min-rating",
        "4",
        "--strategy",
        "leave-last-out",
        "--seed",
        "9",
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "data" / "processed" / "ratings"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "ratings"
    assert manifest["source"]["kind"] == "file"
    assert manifest["source"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["source"]["columns"] == {
        "user": "u",
        "item": "i",
        "rating": "stars",
        "timestamp": "when",
    }
    # Every column was named, so none was detected; ratings are kept as values (auto).
    assert manifest["source"]["columns_used"] == {
        "user_id": "u",
        "item_id": "i",
        "rating": "stars",
        "timestamp": "when",
    }
    assert manifest["source"]["columns_detected"] == []
    assert manifest["options"]["feedback"]["weighting"] == "rating"
    assert manifest["options"]["feedback"]["min_rating"] == 4.0
    assert manifest["options"]["split"]["strategy"] == "leave-last-out"
    assert manifest["seed"] == 9 and manifest["rectune_version"] == __version__
    # Ratings >= 4 leave users 1: {5, 6}, 2: {5, 6, 8}; user 3 has none.
    assert manifest["counts"]["users"] == 2 and manifest["counts"]["interactions"] == 5
    assert manifest["counts"]["interactions_read"] == 7
    # Test takes each user's latest; user 1 is left with one item, too few to carve a
    # validation item from, so only user 2 gives one.
    assert manifest["nnz"] == {"train": 3, "test": 2, "train_val": 2, "validation": 1}
    for name in SPLITS:
        matrix = sp.load_npz(out / f"{name}.npz")
        assert manifest["matrix_fingerprints"][name] == csr_fingerprint(matrix)
    # The latest interaction of each user is held out: times 1 (item 6) and 5 (item 8).
    test = sp.load_npz(out / "test.npz").tocoo()
    assert sorted(zip(test.row.tolist(), test.col.tolist(), strict=True)) == [(0, 1), (1, 2)]
    loaded = load_dataset("ratings", data_dir=tmp_path / "data")
    assert loaded.fingerprint == manifest["fingerprint"]
    assert loaded.user_ids.tolist() == [1, 2] and loaded.item_ids.tolist() == [5, 6, 8]


def test_same_seed_gives_byte_identical_matrices(run_split, tmp_path):
    for folder, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        result = run_split(*SMALL, "--seed", seed, data_dir=tmp_path / folder)
        assert result.exit_code == 0, result.output
    a, b, c = (files_of(tmp_path / f / "processed" / "synthetic") for f in "abc")
    for name in [f"{s}.npz" for s in SPLITS] + ["user_ids.csv", "item_ids.csv"]:
        assert a[name] == b[name], name
    assert a["test.npz"] != c["test.npz"]
    manifest_a = json.loads(a["manifest.json"])
    manifest_b = json.loads(b["manifest.json"])
    assert manifest_a["fingerprint"] == manifest_b["fingerprint"]


def test_weighting_and_string_ids_from_a_tsv(run_split, tmp_path):
    path = tmp_path / "plays.tsv"
    pd.DataFrame(
        {"user_id": ["ann", "ann", "ann", "bob", "bob"], "item_id": ["x", "x", "y", "x", "z"]}
    ).to_csv(path, sep="\t", index=False)
    result = run_split("--input", str(path), "--weighting", "count", "--dataset-name", "plays")
    assert result.exit_code == 0, result.output
    ds = load_dataset("plays", data_dir=tmp_path / "data")
    assert ds.user_ids.tolist() == ["ann", "bob"] and ds.item_ids.tolist() == ["x", "y", "z"]
    full = (ds.train + ds.test).toarray()
    assert full.tolist() == [[2, 1, 0], [1, 0, 1]]


def test_ids_spelled_like_missing_values_are_kept(run_split, tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text("user_id,item_id\nNA,null\nNA,x\nNaN,null\nNaN,x\n")
    result = run_split("--input", str(path))
    assert result.exit_code == 0, result.output
    ds = load_dataset("codes", data_dir=tmp_path / "data")
    assert ds.user_ids.tolist() == ["NA", "NaN"] and ds.item_ids.tolist() == ["null", "x"]


def test_detected_columns_and_auto_weighting_are_recorded(run_split, tmp_path):
    path = tmp_path / "stars.csv"
    path.write_text("user_id,item_id,rating\na,x,5\na,y,2\nb,x,3\nb,z,4\n")
    assert run_split("--input", str(path)).exit_code == 0
    manifest = json.loads((tmp_path / "data" / "processed" / "stars" / "manifest.json").read_text())
    assert manifest["source"]["columns_detected"] == ["rating"]  # found by its default name
    assert manifest["source"]["columns_used"] == {
        "user_id": "user_id",
        "item_id": "item_id",
        "rating": "rating",
    }
    assert manifest["options"]["feedback"]["weighting"] == "rating"
    ds = load_dataset("stars", data_dir=tmp_path / "data")
    assert (ds.train + ds.test).toarray().tolist() == [[5, 2, 0], [3, 0, 4]]
    # Without a rating column, auto stores 1s.
    path.write_text("user_id,item_id\na,x\na,y\nb,x\nb,z\n")
    result = run_split("--input", str(path), "--dataset-name", "plain")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "data" / "processed" / "plain" / "manifest.json").read_text())
    assert manifest["options"]["feedback"]["weighting"] == "binary"
    assert manifest["source"]["columns_detected"] == []


def test_min_rating_takes_a_number_or_none(run_split):
    result = run_split("--min-rating", "lots")
    assert result.exit_code == 2
    assert "'lots' is neither a number nor 'none'" in result.output


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


GOOD_CSV = "user_id,item_id,rating,timestamp\n1,1,5,1\n1,2,4,2\n2,1,3,3\n2,2,5,4\n"

BAD_INPUTS = {
    "missing file": (
        lambda p: ["--input", str(p / "nope.csv")],
        "input file not found: .*nope.csv",
    ),
    "empty file": (
        lambda p: ["--input", write(p, "empty.csv", "")],
        "input file is empty: .*empty.csv",
    ),
    "header only": (
        lambda p: ["--input", write(p, "h.csv", "user_id,item_id\n")],
        "input file has no rows",
    ),
    "misnamed column": (
        lambda p: ["--input", write(p, "c.csv", "user,item_id\n1,2\n")],
        "column 'user_id' not found; the file has columns: 'user', 'item_id' \\(set --user-col\\)",
    ),
    "missing named column": (
        lambda p: ["--input", write(p, "g.csv", GOOD_CSV), "--timestamp-col", "ts"],
        "column 'ts' not found.*--timestamp-col",
    ),
    "non-numeric rating": (
        lambda p: ["--input", write(p, "r.csv", GOOD_CSV + "3,1,great,5\n")],
        "column 'rating' must be numeric.*data row 5: 'great'",
    ),
    "missing user id": (
        lambda p: ["--input", write(p, "m.csv", GOOD_CSV + ",1,5,5\n")],
        "row.* have a missing user_id \\(first at data row 5\\)",
    ),
    "everything filtered": (
        lambda p: ["--input", write(p, "f.csv", GOOD_CSV), "--min-rating", "6"],
        "no interactions left after filtering \\(min_rating=6.0",
    ),
    "test fraction 0": (
        lambda p: ["--test-fraction", "0"],
        "Invalid value for '--test-fraction': 0.0 is not in the range 0<x<1",
    ),
    "test fraction 1.5": (
        lambda p: ["--test-fraction", "1.5"],
        "'--test-fraction': 1.5 is not in the range 0<x<1",
    ),
    "validation fraction 1": (
        lambda p: ["--validation-fraction", "1"],
        "'--validation-fraction': 1.0 is not in the range 0<x<1",
    ),
    "negative fraction": (
        lambda p: ["--validation-fraction", "-0.2"],
        "'--validation-fraction': -0.2 is not in the range",
    ),
    "temporal without timestamps": (
        lambda p: [
            "--input",
            write(p, "n.csv", "user_id,item_id\n1,1\n1,2\n"),
            "--strategy",
            "temporal",
        ],
        "the temporal split needs timestamps",
    ),
    "min rating without ratings": (
        lambda p: [
            "--input",
            write(p, "nr.csv", "user_id,item_id\n1,1\n1,2\n"),
            "--min-rating",
            "3",
        ],
        "--min-rating needs a rating column",
    ),
    "unknown dataset": (
        lambda p: ["--dataset", "netflix"],
        "Invalid value for '--dataset': 'netflix' is not one of",
    ),
    "dataset and input": (
        lambda p: ["--dataset", "synthetic", "--input", write(p, "b.csv", GOOD_CSV)],
        "give either --dataset or --input, not both",
    ),
    "synthetic options with a file": (
        lambda p: ["--input", write(p, "s.csv", GOOD_CSV), "--n-users", "5"],
        "--n-users, --n-items, --n-interactions apply to --dataset synthetic only",
    ),
    "synthetic options with movielens": (
        lambda p: ["--dataset", "movielens-100k", "--n-items", "5"],
        "apply to --dataset synthetic only",
    ),
    "unknown format": (
        lambda p: ["--input", write(p, "x.xlsx", "a")],
        "cannot tell the format of .*x.xlsx",
    ),
    "nobody to test": (
        lambda p: ["--input", write(p, "one.csv", "user_id,item_id\n1,1\n2,1\n")],
        "no user has the 2 interactions needed to hold any out",
    ),
    "bad dataset name": (
        lambda p: ["--input", write(p, "ok.csv", GOOD_CSV), "--dataset-name", "../escape"],
        "dataset name '../escape' must be a plain folder name",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_one_line_exit_2_and_writes_nothing(run_split, tmp_path, case):
    make_args, message = BAD_INPUTS[case]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    args = make_args(inputs)
    result = run_split(*args, *([] if "--input" in args else SMALL))
    line = one_line_error(result)
    assert re.search(message, line), line
    processed = tmp_path / "data" / "processed"
    assert not processed.exists() or not any(processed.iterdir())


def test_failed_run_leaves_the_earlier_dataset_intact(run_split, tmp_path):
    good = write(tmp_path, "good.csv", GOOD_CSV)
    assert run_split("--input", good, "--dataset-name", "mine").exit_code == 0
    out = tmp_path / "data" / "processed" / "mine"
    before = files_of(out)
    bad = write(tmp_path, "bad.csv", GOOD_CSV + "9,9,oops,9\n")
    one_line_error(run_split("--input", bad, "--dataset-name", "mine"))
    assert files_of(out) == before
    # Still the one version it was; the failed run left none of its own.
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(
        ["mine", "mine.lock", os.readlink(out)]
    )


def test_an_empty_validation_split_is_warned_about(run_split, tmp_path):
    # Two interactions per user: one goes to test, one stays in train, none to validation.
    path = write(tmp_path, "pairs.csv", "user_id,item_id\n1,1\n1,2\n2,1\n2,2\n")
    result = CliRunner().invoke(
        split_data.main, ["--input", path, "--data-dir", str(tmp_path / "data")]
    )
    assert result.exit_code == 0, result.output
    assert "Warning: the validation split is empty" in result.stderr
    assert "Warning: the test split" not in result.stderr


def test_help_lists_the_options():
    result = subprocess.run(
        [sys.executable, "src/split_data.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for option in (
        "--dataset",
        "--input",
        "--sep",
        "--user-col",
        "--min-rating",
        "--weighting",
        "--strategy",
        "--test-fraction",
        "--validation-fraction",
        "--seed",
        "movielens-100k",
        "--n-interactions",
    ):
        assert option in result.stdout


def test_script_runs_as_a_subprocess_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "src/split_data.py", *SMALL, "--data-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "OpenBLAS" not in result.stderr and "Warning" not in result.stderr
    bad = subprocess.run(
        [
            sys.executable,
            "src/split_data.py",
            "--input",
            "missing.csv",
            "--data-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "Error: input file not found: missing.csv"


def test_a_split_killed_as_it_turns_the_folders_link_leaves_the_old_split_whole(tmp_path):
    """SIGKILL at the ``before_link`` failpoint: the new version is written in full and
    the link not yet turned. The folder still reads as the earlier split, and the next
    run replaces it and clears what the killed one left."""

    def split(seed: int, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "src/split_data.py",
                *SMALL,
                "--seed",
                str(seed),
                "--data-dir",
                str(tmp_path),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1", **env},
        )

    assert split(1).returncode == 0
    before = load_dataset("synthetic", data_dir=tmp_path).fingerprint
    killed = split(2, RECTUNE_FAILPOINT="before_link:1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    folder = tmp_path / "processed" / "synthetic"
    assert load_dataset("synthetic", data_dir=tmp_path).fingerprint == before
    assert len(list(folder.parent.glob(".synthetic.*.v"))) == 2  # the old and the killed
    assert split(2).returncode == 0
    after = load_dataset("synthetic", data_dir=tmp_path).fingerprint
    assert after != before
    assert len(list(folder.parent.glob(".synthetic.*.v"))) == 1
