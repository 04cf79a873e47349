"""Atomic folder replacement: rectune._io.staged_directory."""

import os
import time

import pytest

from rectune import _io
from rectune._io import relink_staged, staged_directory


def write(target, text):
    with staged_directory(target) as folder:
        (folder / "a.txt").write_text(text)
        (folder / "b.txt").write_text(text.upper())


def versions(target):
    return sorted(p.name for p in target.parent.glob(f".{target.name}.*.v"))


def test_the_folder_is_a_link_to_its_one_version(tmp_path):
    target = tmp_path / "models" / "als"
    write(target, "first")
    assert target.is_symlink() and versions(target) == [os.readlink(target)]
    assert (target / "a.txt").read_text() == "first"
    write(target, "second")
    assert (target / "b.txt").read_text() == "SECOND"
    assert versions(target) == [os.readlink(target)]  # the replaced version is gone


def test_a_failed_write_leaves_the_old_folder_as_it_was(tmp_path):
    target = tmp_path / "als"
    write(target, "first")
    before = versions(target)
    with pytest.raises(RuntimeError), staged_directory(target) as folder:
        (folder / "a.txt").write_text("half")
        raise RuntimeError("killed mid-way")
    assert (target / "a.txt").read_text() == "first" and versions(target) == before


def test_a_kill_at_the_swap_leaves_the_old_folder_whole(tmp_path, monkeypatch):
    target = tmp_path / "als"
    write(target, "first")

    def killed(source, destination):
        raise KeyboardInterrupt  # as the process dying at the last rename

    monkeypatch.setattr(_io.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write(target, "second")
    monkeypatch.undo()
    assert (target / "a.txt").read_text() == "first"
    write(target, "third")  # the next write clears what the killed one left
    assert (target / "a.txt").read_text() == "third" and len(versions(target)) == 1


def test_a_plain_folder_of_an_earlier_release_is_replaced(tmp_path):
    target = tmp_path / "synthetic"
    target.mkdir()
    (target / "old.txt").write_text("old")
    write(target, "new")
    assert target.is_symlink() and sorted(p.name for p in target.iterdir()) == ["a.txt", "b.txt"]
    assert len(versions(target)) == 1


def test_a_kill_while_a_plain_folder_became_a_version_is_mended_by_the_next_reader(tmp_path):
    target = tmp_path / "synthetic"
    # What that moment leaves: the folder moved to a version, no link yet.
    version = tmp_path / ".synthetic.x1.v"
    version.mkdir()
    (version / "a.txt").write_text("kept")
    assert not target.exists()
    assert (relink_staged(target) / "a.txt").read_text() == "kept"
    assert target.is_symlink()


def test_temporary_files_a_killed_writer_left_are_swept_by_the_next_write(tmp_path):
    target = tmp_path / "best.json"
    old = tmp_path / ".best.json.abc123.tmp"  # a killed writer's, an hour and more ago
    old.write_text("{half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    recent = tmp_path / ".best.json.def456.tmp"  # a live writer's, just made
    recent.write_text("{")
    other = tmp_path / ".other.json.aaa.tmp"
    other.write_text("{")
    os.utime(other, (time.time() - 7200, time.time() - 7200))
    _io.write_text_atomic(target, "{}")
    assert target.read_text() == "{}"
    assert not old.exists() and recent.exists() and other.exists()
