"""MovieLens sources without the internet: cached folders, archives, a local mirror."""

import dataclasses
import functools
import hashlib
import http.server
import json
import socket
import threading
import zipfile
from pathlib import Path

import pytest
import scipy.sparse as sp

from rectune.data import movielens
from rectune.data.movielens import BASE_URL_ENV, RELEASES

# user, item, rating, timestamp: user 1 likes items 10, 11, 12; user 2 likes 10, 13.
U_DATA = (
    "1\t10\t5\t100\n1\t11\t4\t101\n1\t12\t5\t102\n1\t14\t2\t103\n2\t10\t4\t104\n"
    "2\t13\t5\t105\n2\t11\t1\t106\n"
)
RATINGS_CSV = (
    "userId,movieId,rating,timestamp\n1,10,5.0,100\n1,11,4.5,101\n2,10,4.0,102\n"
    "2,12,3.0,103\n2,13,4.0,104\n"
)


def make_archive(folder: Path, release: str, member: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{release}.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{release}/{member}", text)
        archive.writestr(f"{release}/README", "fake release for tests")
    return path


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def trust(monkeypatch, name: str, md5: str | None) -> None:
    monkeypatch.setitem(RELEASES, name, dataclasses.replace(RELEASES[name], md5=md5))


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/movielens"  # nothing listens there now


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """Serve a folder over HTTP on localhost and point RECTUNE_MOVIELENS_URL at it."""
    root = tmp_path / "mirror"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(BASE_URL_ENV, f"http://127.0.0.1:{server.server_address[1]}")
    yield root
    server.shutdown()
    server.server_close()


def manifest_of(tmp_path: Path, name: str) -> dict:
    return json.loads((tmp_path / "data" / "processed" / name / "manifest.json").read_text())


def test_extracted_folder_is_used_without_network(run_split, tmp_path, monkeypatch):
    monkeypatch.setenv(BASE_URL_ENV, closed_port_url())
    folder = tmp_path / "data" / "raw" / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "u.data").write_text(U_DATA)
    result = run_split("--dataset", "movielens-100k")
    assert result.exit_code == 0, result.output
    manifest = manifest_of(tmp_path, "movielens-100k")
    assert manifest["source"]["kind"] == "movielens"
    assert manifest["source"]["sha256"] == hashlib.sha256(U_DATA.encode()).hexdigest()
    # MovieLens keeps ratings of 4 and up by default: 5 of the 7 ratings.
    assert manifest["options"]["feedback"]["min_rating"] == 4.0
    assert manifest["counts"]["interactions"] == 5
    result = run_split("--dataset", "movielens-100k", "--min-rating", "0", "--dataset-name", "all")
    assert result.exit_code == 0 and manifest_of(tmp_path, "all")["counts"]["interactions"] == 7
    # `none` switches the filter off by name; the matrices keep the ratings (auto).
    result = run_split("--dataset", "movielens-100k", "--min-rating", "none", "--dataset-name", "n")
    assert result.exit_code == 0, result.output
    manifest = manifest_of(tmp_path, "n")
    assert manifest["options"]["feedback"]["min_rating"] is None
    assert manifest["options"]["feedback"]["weighting"] == "rating"
    assert manifest["counts"]["interactions"] == 7
    folder = tmp_path / "data" / "processed" / "n"
    values = [v for f in ("train.npz", "test.npz") for v in sp.load_npz(folder / f).data]
    assert sorted(values) == [1.0, 2.0, 4.0, 4.0, 5.0, 5.0, 5.0]


def test_archive_in_raw_is_verified_and_extracted(run_split, tmp_path, monkeypatch):
    monkeypatch.setenv(BASE_URL_ENV, closed_port_url())
    archive = make_archive(tmp_path / "data" / "raw", "ml-100k", "u.data", U_DATA)
    trust(monkeypatch, "movielens-100k", md5_of(archive))
    result = run_split("--dataset", "movielens-100k")
    assert result.exit_code == 0, result.output
    assert manifest_of(tmp_path, "movielens-100k")["source"]["verification"] == "pinned-md5"
    assert (tmp_path / "data" / "raw" / "ml-100k" / "u.data").read_text() == U_DATA


def test_archive_with_the_wrong_checksum_is_refused(run_split, tmp_path, monkeypatch):
    monkeypatch.setenv(BASE_URL_ENV, closed_port_url())
    archive = make_archive(tmp_path / "data" / "raw", "ml-100k", "u.data", U_DATA)
    result = run_split("--dataset", "movielens-100k")  # the real MD5 cannot match
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"Error: checksum mismatch for ml-100k.zip: MD5 {md5_of(archive)}, expected "
        f"{RELEASES['movielens-100k'].md5}; delete {archive} and run again to download it "
        "afresh"
    )
    assert not (tmp_path / "data" / "processed").exists()


def test_download_from_a_mirror_then_reuse_the_cache(run_split, tmp_path, monkeypatch, mirror):
    served = make_archive(mirror, "ml-100k", "u.data", U_DATA)
    trust(monkeypatch, "movielens-100k", md5_of(served))
    result = run_split("--dataset", "movielens-100k")
    assert result.exit_code == 0, result.output
    raw = tmp_path / "data" / "raw"
    assert (raw / "ml-100k.zip").read_bytes() == served.read_bytes()
    assert (raw / "ml-100k" / "u.data").read_text() == U_DATA
    assert sorted(p.name for p in raw.iterdir()) == ["ml-100k", "ml-100k.zip"]  # no temp files
    served.unlink()  # the mirror no longer has it: the cache must serve
    assert run_split("--dataset", "movielens-100k").exit_code == 0


def test_published_md5_is_fetched_when_none_is_pinned(run_split, tmp_path, mirror):
    served = make_archive(mirror, "ml-32m", "ratings.csv", RATINGS_CSV)
    (mirror / "ml-32m.zip.md5").write_text(f"{md5_of(served)}  ml-32m.zip\n")
    result = run_split("--dataset", "movielens-32m", "--min-split-interactions", "2")
    assert result.exit_code == 0, result.output
    assert manifest_of(tmp_path, "movielens-32m")["source"]["verification"] == "published-md5"
    # ratings >= 4: user 1 {10, 11}, user 2 {10, 13}
    assert manifest_of(tmp_path, "movielens-32m")["counts"]["interactions"] == 4
    (mirror / "ml-32m.zip.md5").write_text("0" * 32 + "  ml-32m.zip\n")
    (tmp_path / "data" / "raw" / "ml-32m.zip").unlink()
    (tmp_path / "data" / "raw" / "ml-32m" / "ratings.csv").unlink()
    result = run_split("--dataset", "movielens-32m")
    assert result.exit_code == 2
    assert "checksum mismatch for ml-32m.zip" in result.output
    assert "the download was corrupted" in result.output
    assert not (tmp_path / "data" / "raw" / "ml-32m.zip").exists()  # bad download not kept


def test_hand_placed_archive_without_pinned_md5_is_used_offline_with_a_warning(
    run_split, tmp_path, monkeypatch
):
    monkeypatch.setenv(BASE_URL_ENV, closed_port_url())  # the published .md5 is unreachable
    make_archive(tmp_path / "data" / "raw", "ml-32m", "ratings.csv", RATINGS_CSV)
    result = run_split("--dataset", "movielens-32m")
    assert result.exit_code == 0, result.output
    assert "Warning: movielens-32m was used without a checksum check" in result.stderr
    assert manifest_of(tmp_path, "movielens-32m")["source"]["verification"] == "unverified"


def test_offline_error_names_the_url_and_where_to_put_the_file(run_split, tmp_path, monkeypatch):
    base = closed_port_url()
    monkeypatch.setenv(BASE_URL_ENV, base)
    result = run_split("--dataset", "movielens-1m")
    assert result.exit_code == 2
    archive = tmp_path / "data" / "raw" / "ml-1m.zip"
    line = result.output.strip()
    assert line.startswith(f"Error: could not download movielens-1m from {base}/ml-1m.zip (")
    assert line.endswith(f"download that file elsewhere and place it at {archive}")
    assert len(result.output.strip().splitlines()) == 1
    assert not archive.exists() and not (tmp_path / "data" / "processed").exists()


def test_every_release_has_a_grouplens_url():
    assert set(RELEASES) == {
        "movielens-100k",
        "movielens-1m",
        "movielens-20m",
        "movielens-25m",
        "movielens-32m",
    }
    for release in RELEASES.values():
        assert (
            release.url(movielens.GROUPLENS_URL)
            == f"https://files.grouplens.org/datasets/movielens/{release.folder}.zip"
        )
