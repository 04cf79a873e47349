"""Atomic, deterministic file writing, content hashing and file locks.

Every file rectune writes goes through here: a temporary file in the destination folder
is renamed over the target, so a crash never leaves a half-written result, and sparse
matrices are written byte-for-byte reproducibly (``numpy.savez`` stamps each zip member
with the current time, so it is not).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from rectune.failpoints import failpoint


def lock_path(path: Path) -> Path:
    """The lock file that guards ``path``: ``path.lock`` beside it."""
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path.lock`` (across processes of one machine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path(path), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_key(name: str) -> int:
    """A signed 64-bit key for an advisory lock named ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def connection_errors() -> tuple[type[Exception], ...]:
    """The database driver's errors, through SQLAlchemy, that mean a database could not
    be reached, as opposed to bad input (SQLAlchemy is imported on first use)."""
    import sqlalchemy

    return (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)


@contextlib.contextmanager
def database_lock(engine: Any, url: str, name: str) -> Iterator[None]:
    """Hold a lock named ``name`` across every process using the database of ``engine``
    (a SQLAlchemy engine for ``url``).

    PostgreSQL: a session advisory lock; MySQL: ``GET_LOCK``; a SQLite file: an
    exclusive ``flock`` on a file beside it (its processes share one machine).
    """
    import sqlalchemy

    dialect = engine.dialect.name
    if dialect == "sqlite":
        database = engine.url.database
        if database and database != ":memory:":
            with file_lock(Path(database)):
                yield
        else:
            yield  # an in-memory database lives in this process only
        return
    if dialect not in ("postgresql", "mysql", "mariadb"):
        yield
        return
    with engine.connect() as connection:
        if dialect == "postgresql":
            key = _lock_key(name)
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            release = sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key}
        else:
            lock_name = f"rectune-{_lock_key(name):x}"[:64]
            connection.execute(sqlalchemy.text("SELECT GET_LOCK(:name, -1)"), {"name": lock_name})
            release = sqlalchemy.text("SELECT RELEASE_LOCK(:name)"), {"name": lock_name}
        try:
            yield
        finally:
            # Closing the connection would release it too; say so explicitly.
            with contextlib.suppress(*connection_errors()):
                connection.execute(*release)


# A fixed timestamp for zip members: the earliest a zip file can record.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def writable_folder(folder: str | os.PathLike[str]) -> str | None:
    """``None`` when files can be created in ``folder`` (made if missing), else why not.

    Stages ask before their work, so that a read-only folder is refused at once rather
    than after a fit.
    """
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".rectune-probe-"):
            pass
    except OSError as err:
        return err.strerror or str(err)
    return None


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which would race with
# threads creating files if done on every write.
_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it over ``target`` on success.

    Nothing is left behind when the body raises.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _sweep_leftovers(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o666 & ~_UMASK)  # mkstemp makes 0600; finished files follow the umask
    try:
        yield tmp
        failpoint("before_rename")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


#: A temporary file of an atomic write this old was left by a killed process: a write
#: that is still going on has just made its own.
LEFTOVER_SECONDS = 3600.0


def _sweep_leftovers(target: Path) -> None:
    """Remove ``.NAME.*.tmp`` files beside ``target`` that killed writers left."""
    now = time.time()
    for leftover in target.parent.glob(f".{glob_escape(target.name)}.*.tmp"):
        with contextlib.suppress(OSError):  # another process swept it first
            if now - leftover.stat().st_mtime > LEFTOVER_SECONDS:
                leftover.unlink()


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (fsync'd before the rename)."""
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``target`` atomically."""
    write_bytes_atomic(target, text.encode("utf-8"))


def write_json_atomic(target: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented, key-sorted JSON to ``target`` atomically."""
    write_text_atomic(target, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def csr_fingerprint(matrix: sp.csr_matrix) -> str:
    """SHA-256 of a CSR matrix's shape, structure and values.

    Two matrices have the same fingerprint exactly when they hold the same entries in the
    same canonical (sorted-index) layout with the same dtype.
    """
    digest = hashlib.sha256()
    digest.update(repr((matrix.shape, str(matrix.dtype))).encode())
    for array in (matrix.indptr, matrix.indices, matrix.data):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def arrays_to_npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Serialise named arrays in ``numpy.savez`` layout, deterministically.

    The result loads with :func:`numpy.load` (``allow_pickle=False``) and is
    byte-identical for identical arrays: members are written in the given order with a
    fixed timestamp and compression level.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
            archive.writestr(info, member.getvalue(), compresslevel=6)
    return buffer.getvalue()


def csr_to_npz_bytes(matrix: sp.csr_matrix) -> bytes:
    """A CSR matrix in ``scipy.sparse.save_npz`` layout (loads with ``load_npz``)."""
    return arrays_to_npz_bytes(
        {
            "indices": matrix.indices,
            "indptr": matrix.indptr,
            "format": np.array("csr"),
            "shape": np.array(matrix.shape),
            "data": matrix.data,
        }
    )


def write_csr_atomic(target: str | os.PathLike[str], matrix: sp.csr_matrix) -> None:
    """Write a CSR matrix to ``target`` (``.npz``) atomically and reproducibly."""
    write_bytes_atomic(target, csr_to_npz_bytes(matrix))


_VERSION_SUFFIX = ".v"


@contextlib.contextmanager
def staged_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty folder that replaces ``target``, in one step, when the body succeeds.

    ``target`` is a symbolic link to a version folder beside it (``.NAME.<id>.v``).
    The body writes a new version; one atomic rename of a new link over ``target`` then
    turns readers from the old version to the new, so a process killed at any moment
    leaves ``target`` whole, old or new (two renames of folders left a moment with
    neither). On failure the new version is removed and ``target`` is left as it was.
    Versions no link points to (the one replaced, those of killed writers) are removed
    after, under a lock on ``target``, so that two writers do not remove each other's.
    A ``target`` that is a plain folder (from an earlier rectune) becomes a version first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target):
        relink_staged(target)
        version = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.", suffix=_VERSION_SUFFIX, dir=target.parent)
        )
        version.chmod(0o777 & ~_UMASK)
        try:
            yield version
        except BaseException:
            shutil.rmtree(version, ignore_errors=True)
            raise
        if target.is_dir() and not target.is_symlink():
            os.replace(target, _new_version_name(target))  # a kill here: see relink_staged
        link = target.with_name(f".{target.name}.{os.getpid()}.link")
        link.unlink(missing_ok=True)
        os.symlink(version.name, link)
        failpoint("before_link")
        os.replace(link, target)
        for old in _versions(target):
            if old != version:
                shutil.rmtree(old, ignore_errors=True)


def relink_staged(target: str | os.PathLike[str]) -> Path:
    """``target``; if a process was killed while turning a plain folder into a version
    (the one moment :func:`staged_directory` leaves no ``target``), link it again."""
    target = Path(target)
    if not target.exists() and not target.is_symlink():
        versions = sorted(_versions(target), key=lambda p: p.stat().st_mtime)
        if versions:
            with contextlib.suppress(FileExistsError):
                os.symlink(versions[-1].name, target)
    return target


def _versions(target: Path) -> list[Path]:
    return [
        p
        for p in target.parent.glob(f".{glob_escape(target.name)}.*{_VERSION_SUFFIX}")
        if p.is_dir() and not p.is_symlink()
    ]


def _new_version_name(target: Path) -> Path:
    made = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.", suffix=_VERSION_SUFFIX, dir=target.parent)
    )
    made.rmdir()
    return made
