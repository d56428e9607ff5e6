"""corpus_index: a changed corpus changes the index, an unchanged one leaves it byte-identical and untouched."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import corpus_index
from pipeline.params import ConfigError
from tests.conftest import make_wave, write_wave

REPO = Path(__file__).resolve().parents[1]


def _corpus(root: Path) -> Path:
    for k in range(3):
        write_wave(root / f"a{k}.wav", make_wave(0.3, seed=k))
    (root / "labels.csv").write_text("file,speaker,label\na0.wav,s1,bonafide\na1.wav,s2,spoof\na2.wav,s3,bonafide\n")
    return root


def _params(tmp_path: Path, *roots: Path) -> Path:
    path = tmp_path / "params.yaml"
    corpora = [{"name": "folder", "root": str(r), "corpus": f"c{k}"} for k, r in enumerate(roots)]
    path.write_text(yaml.safe_dump({"prepare": {"corpora": corpora}}))
    return path


def _index(tmp_path: Path, params: Path) -> bytes:
    out = tmp_path / "out/corpus_index.json"
    assert corpus_index.main(["--params", str(params), "--out", str(out), "--cache", str(tmp_path / "cache.json")]) == 0
    return out.read_bytes()


def test_an_unchanged_corpus_leaves_the_index_byte_identical_and_untouched(tmp_path):
    params = _params(tmp_path, _corpus(tmp_path / "corpus"))
    first = _index(tmp_path, params)
    out = tmp_path / "out/corpus_index.json"
    stamp = out.stat().st_mtime_ns
    os.utime(tmp_path / "corpus/a1.wav")  # a touch (same content) is no change either
    assert _index(tmp_path, params) == first and out.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("change", ["edit labels.csv", "add a file", "replace audio", "remove a file"])
def test_a_changed_corpus_changes_the_index(tmp_path, change):
    root = _corpus(tmp_path / "corpus")
    params = _params(tmp_path, root)
    first = _index(tmp_path, params)
    if change == "edit labels.csv":
        labels = root / "labels.csv"
        labels.write_text(labels.read_text().replace("a1.wav,s2,spoof", "a1.wav,s2,bonafide"))
    elif change == "add a file":
        write_wave(root / "sub/new.wav", make_wave(0.3, seed=9))
    elif change == "replace audio":  # same size, same mtime: only the content hash can tell
        st = (root / "a0.wav").stat()
        write_wave(root / "a0.wav", make_wave(0.3, seed=7))
        os.utime(root / "a0.wav", ns=(st.st_atime_ns, st.st_mtime_ns))
        (tmp_path / "cache.json").unlink()  # the inode may be reused: a cold cache must still see it
    else:
        (root / "a2.wav").unlink()
    assert _index(tmp_path, params) != first


def test_index_lists_roots_metadata_hashes_and_missing_roots(tmp_path):
    root = _corpus(tmp_path / "corpus")
    entries = [{"name": "folder", "root": str(root)}, {"name": "itw", "root": str(tmp_path / "no")}, "not a mapping"]
    index, cache = corpus_index.run(entries, {})
    ok, missing, bad = index["corpora"]
    assert ok["files"] == 4 and ok["exists"] and list(ok["metadata"]) == ["labels.csv"]
    assert ok["metadata"]["labels.csv"] == corpus_index.file_sha256(str(root / "labels.csv"))
    assert missing == {"entry": 1, "name": "itw", "root": str(tmp_path / "no"), "exists": False}
    assert bad == {"entry": 2, "invalid": True}
    assert len(cache) == 4


def test_the_hash_cache_spares_rereading_unchanged_files(tmp_path, monkeypatch):
    params = _params(tmp_path, _corpus(tmp_path / "corpus"))
    first = _index(tmp_path, params)
    calls = []
    real = corpus_index.file_sha256
    monkeypatch.setattr(corpus_index, "file_sha256", lambda p: calls.append(p) or real(p))
    assert _index(tmp_path, params) == first and calls == []
    (tmp_path / "cache.json").write_text("{broken")
    assert _index(tmp_path, params) == first and len(calls) == 4


def test_corpora_that_are_not_a_list_are_a_clear_error(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"prepare": {"corpora": "data/raw/demo"}}))
    with pytest.raises(ConfigError, match="params prepare.corpora must be a list"):
        corpus_index.main(["--params", str(params), "--out", str(tmp_path / "i.json")])
    assert not (tmp_path / "i.json").exists()


@pytest.mark.slow
def test_dvc_reruns_prepare_only_when_the_corpus_changed(tmp_path):
    """The real corpus_index stage of dvc.yaml in a scratch DVC project, with a stand-in prepare."""
    work = tmp_path / "repo"
    (work / "data/raw/demo").mkdir(parents=True)
    (work / "data/raw/demo/x.txt").write_text("demo")
    shutil.copytree(REPO / "pipeline", work / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    root = _corpus(tmp_path / "external")
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    fake_prepare = {"cmd": "cp data/corpus_index.json prepared.json",
                    "deps": ["data/corpus_index.json"], "outs": ["prepared.json"]}
    (work / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"corpus_index": stages["corpus_index"],
                                                              "prepare": fake_prepare}}))
    _params(work, root)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "PYTHONPATH": str(work)}

    def repro() -> list[str]:
        res = subprocess.run(["dvc", "repro"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        return sorted(set(s for s in ("corpus_index", "prepare") if f"Running stage '{s}'" in res.stdout))

    assert subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=work, env=env).returncode == 0
    assert repro() == ["corpus_index", "prepare"]
    assert repro() == ["corpus_index"]                      # unchanged corpus: prepare is not re-run
    labels = root / "labels.csv"
    labels.write_text(labels.read_text() + "a0.wav,s9,spoof\n")
    assert repro() == ["corpus_index", "prepare"]           # edited labels.csv: prepare re-runs
    write_wave(root / "more.wav", make_wave(0.3, seed=5))
    assert repro() == ["corpus_index", "prepare"]           # a file added under the root
    assert repro() == ["corpus_index"]
