"""The shared resume helper (pipeline.resume) and the atomic-directory helper (pipeline.io.atomic_dir)."""

from __future__ import annotations

import json

import pytest

from pipeline.io import atomic_dir
from pipeline.resume import ResumeDir, digest, files_hash, read_marker, tree_hash
from pipeline.resynth.common import clip_seed, key_hash, unit_draw


def test_resume_dir_keeps_files_and_entries_for_the_same_fingerprint(tmp_path):
    d = ResumeDir(tmp_path / "sys", {"iters": 4})
    (d.path / "a.flac").write_bytes(b"x")
    d.record({"a.flac": "sha-a"})
    again = ResumeDir(tmp_path / "sys", {"iters": 4})
    assert (again.path / "a.flac").exists()
    assert again.valid("a.flac", "sha-a") and not again.valid("a.flac", "sha-other")
    again.forget(["a.flac"])
    assert not ResumeDir(tmp_path / "sys", {"iters": 4}).valid("a.flac", "sha-a")


def test_resume_dir_wipes_files_made_for_another_fingerprint(tmp_path):
    d = ResumeDir(tmp_path / "sys", {"iters": 4})
    (d.path / "a.flac").write_bytes(b"x")
    d.record({"a.flac": "k"})
    other = ResumeDir(tmp_path / "sys", {"iters": 8})
    assert list(other.path.iterdir()) == [other.marker] and other.entries == {}
    assert json.loads(other.marker.read_text()) == {"fingerprint": {"iters": 8}, "entries": {}}


def test_resume_dir_refuses_a_directory_it_did_not_make_unless_told(tmp_path):
    foreign = tmp_path / "f"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep")
    with pytest.raises(RuntimeError, match="refusing"):
        ResumeDir(foreign, "fp")
    assert (foreign / "mine.txt").read_text() == "keep"
    ResumeDir(foreign, "fp", foreign_ok=True)  # a private scratch dir: wiped
    assert not (foreign / "mine.txt").exists()


def test_a_damaged_marker_discards_the_directory(tmp_path):
    d = ResumeDir(tmp_path / "sys", "fp")
    (d.path / "a.flac").write_bytes(b"x")
    d.marker.write_text("{not json")
    assert read_marker(d.marker) is None
    ResumeDir(tmp_path / "sys", "fp")
    assert not (tmp_path / "sys" / "a.flac").exists()


def test_hashes_cover_names_and_bytes(tmp_path):
    (tmp_path / "a").write_bytes(b"1")
    h1, f1 = tree_hash(tmp_path), files_hash([tmp_path / "a"])
    (tmp_path / "a").write_bytes(b"2")
    assert tree_hash(tmp_path) != h1 and files_hash([tmp_path / "a"]) != f1
    assert tree_hash(None) == "" and digest({"b": 1, "a": 2}) == digest({"a": 2, "b": 1})


def test_clip_seed_and_plan_draw_are_one_hash():
    k = key_hash(3, "clip_1")
    assert clip_seed(3, "clip_1") == k & ((1 << 63) - 1)
    assert unit_draw(3, "clip_1") == k / 2.0 ** 64 and 0.0 <= unit_draw(3, "clip_1") < 1.0


def test_atomic_dir_keeps_the_old_directory_when_the_block_fails(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "f").write_text("v1")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "f").write_text("half")
        raise RuntimeError("killed")
    assert (out / "f").read_text() == "v1" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with atomic_dir(out) as tmp:
        (tmp / "g").write_text("v2")
    assert sorted(p.name for p in out.iterdir()) == ["g"]


def test_atomic_dir_removes_temp_dirs_left_by_a_killed_run(tmp_path):
    (tmp_path / ".out.build-abc").mkdir()
    (tmp_path / ".out.old-def").mkdir()
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "f").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
