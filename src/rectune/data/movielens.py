"""MovieLens releases from GroupLens: download once, verify, cache under ``data/raw/``.

Lookup order for a release such as ``movielens-100k``:

1. the extracted folder ``data/raw/ml-100k/`` holding the ratings file: used as is;
2. the archive ``data/raw/ml-100k.zip``: checksum verified, ratings file extracted;
3. otherwise the archive is downloaded from GroupLens with a progress bar, verified
   against its published MD5 and kept, so the next run needs no network.

Archives are checked against the MD5 pinned here, or, for releases without one
(``movielens-32m``), against GroupLens' published ``.md5`` file. An archive placed by
hand while offline, with no pinned MD5, is used unverified and the manifest says so.

Set ``RECTUNE_MOVIELENS_URL`` to use a mirror with the same file names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from rectune._io import atomic_path
from rectune.data.interactions import Columns
from rectune.errors import DataError, DownloadError

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens"
BASE_URL_ENV = "RECTUNE_MOVIELENS_URL"
_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class MovieLensRelease:
    """One MovieLens release and where its ratings live inside the archive."""

    name: str
    folder: str
    ratings_file: str
    sep: str
    has_header: bool
    #: GroupLens' published MD5 of the archive; ``None`` means fetch ``<url>.md5``.
    md5: str | None

    @property
    def archive_name(self) -> str:
        return f"{self.folder}.zip"

    def url(self, base_url: str | None = None) -> str:
        base = base_url or os.environ.get(BASE_URL_ENV) or GROUPLENS_URL
        return f"{base.rstrip('/')}/{self.archive_name}"


RELEASES: dict[str, MovieLensRelease] = {
    release.name: release
    for release in (
        MovieLensRelease(
            "movielens-100k", "ml-100k", "u.data", "\t", False, "0e33842e24a9c977be4e0107933c0723"
        ),
        MovieLensRelease(
            "movielens-1m", "ml-1m", "ratings.dat", "::", False, "c4d9eecfca2ab87c1945afe126590906"
        ),
        MovieLensRelease(
            "movielens-20m", "ml-20m", "ratings.csv", ",", True, "cd245b17a1ae2cc31bb14903e1204af3"
        ),
        MovieLensRelease(
            "movielens-25m", "ml-25m", "ratings.csv", ",", True, "6b51fb2759a8657d3bfcbfc42b592ada"
        ),
        MovieLensRelease("movielens-32m", "ml-32m", "ratings.csv", ",", True, None),
    )
}


def ratings_path(release: MovieLensRelease, raw_dir: Path) -> Path:
    """Where the extracted ratings file of ``release`` lives under ``raw_dir``."""
    return Path(raw_dir) / release.folder / release.ratings_file


@dataclass(frozen=True)
class Fetched:
    """A ratings file on disk and how its archive was checked.

    ``verification`` is ``pinned-md5`` or ``published-md5`` (checked), ``unverified``
    (an archive placed by hand while the published MD5 was unreachable) or
    ``extracted`` (the ratings file was already extracted; its SHA-256 is recorded).
    """

    path: Path
    verification: str


def fetch(release: MovieLensRelease, raw_dir: Path) -> Fetched:
    """Make sure the ratings file of ``release`` is on disk.

    Raises
    ------
    DownloadError
        When the archive cannot be downloaded (naming the URL and where to put the file
        by hand) or fails its checksum.
    """
    raw_dir = Path(raw_dir)
    target = ratings_path(release, raw_dir)
    if target.is_file():
        return Fetched(target, "extracted")
    archive = raw_dir / release.archive_name
    if not archive.is_file():
        verification = _download(release, archive)
    else:
        verification = _verify(release, archive, downloaded=False)
    _extract(release, archive, target)
    return Fetched(target, verification)


def read_ratings(release: MovieLensRelease, path: Path) -> pd.DataFrame:
    """Read a release's ratings file into the canonical columns."""
    names = [Columns.User, Columns.Item, Columns.Rating, Columns.Timestamp]
    try:
        return pd.read_csv(
            path,
            sep=release.sep,
            header=0 if release.has_header else None,
            names=names,
            engine="c" if len(release.sep) == 1 else "python",
            encoding="latin-1",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise DataError(f"cannot read {path}: {err}") from err


def _download(release: MovieLensRelease, archive: Path) -> str:
    url = release.url()
    archive.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(archive) as partial:
            with (
                urllib.request.urlopen(url, timeout=_TIMEOUT_SECONDS) as response,
                open(partial, "wb") as out,
            ):
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=f"downloading {release.archive_name}",
                ) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
            verification = _verify(release, partial, downloaded=True)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", None) or err
        raise DownloadError(
            f"could not download {release.name} from {url} ({reason}); without internet "
            f"access, download that file elsewhere and place it at {archive}"
        ) from err
    return verification


def _verify(release: MovieLensRelease, archive: Path, downloaded: bool) -> str:
    """Check ``archive``'s MD5; return how it was checked (see :class:`Fetched`)."""
    if release.md5 is not None:
        expected, verification = release.md5, "pinned-md5"
    else:
        try:
            expected, verification = _published_md5(release), "published-md5"
        except DownloadError:
            if downloaded:  # we just reached the server; its checksum must be there too
                raise
            return "unverified"  # placed by hand, and we are offline
    actual = _md5(archive)
    if actual == expected:
        return verification
    fix = (
        "the download was corrupted; run the command again"
        if downloaded
        else f"delete {archive} and run again to download it afresh"
    )
    raise DownloadError(
        f"checksum mismatch for {release.archive_name}: MD5 {actual}, expected {expected}; {fix}"
    )


def _published_md5(release: MovieLensRelease) -> str:
    url = release.url() + ".md5"
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_SECONDS) as response:
            text = response.read().decode("ascii", "replace")
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise DownloadError(
            f"could not fetch the published checksum of {release.name} from {url} "
            f"({getattr(err, 'reason', None) or err})"
        ) from err
    return text.split()[0].strip().lower()


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _extract(release: MovieLensRelease, archive: Path, target: Path) -> None:
    member = f"{release.folder}/{release.ratings_file}"
    try:
        with (
            zipfile.ZipFile(archive) as zipped,
            zipped.open(member) as source,
            atomic_path(target) as tmp,
            open(tmp, "wb") as out,
        ):
            shutil.copyfileobj(source, out, 1 << 20)
    except (zipfile.BadZipFile, KeyError) as err:
        raise DownloadError(
            f"{archive} is not a valid {release.name} archive ({err}); delete it and run again"
        ) from err
