"""Tests for the embed stage: shapes, id alignment, determinism, resume, layers, resemblyzer, clear errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline import embed
from pipeline.audio import to_pcm16
from pipeline.embed import EmbedParams, build_vectorizer, check_layers, fingerprint
from pipeline.logs import StageError
from pipeline.models import CheckpointError, build_model, save_checkpoint
from pipeline.params import ConfigError, TeacherParams
from pipeline.schema import read_rejects, write_clips
from tests.conftest import make_wave, tiny_clip_table, write_wave

TEACHER = {"arch": "resnet", "frontend": "logmel", "width": 4, "embedding_dim": 8, "n_bins": 32,
           "pool": {"paradigms": ["bonafide", "vocoder"]}, "checkpoint": None}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return tiny_clip_table(tmp_path_factory.mktemp("audio"), n_speakers=4, clips_per_speaker=3, seconds=0.5)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(TeacherParams.from_params(TEACHER, name="t").model_config(16000)).eval()
    path = save_checkpoint(model, None, tmp_path_factory.mktemp("teacher") / "model.pt")
    return model, path


def _run(clips, teacher, out, **kw):
    model, path = teacher
    p = EmbedParams(**{"batch_size": 4, "eval_s": 0.5, "shard_batches": 2, **kw})
    vec, dim = build_vectorizer(model, p, CPU, with_scores=True)
    return embed.run(clips, vec, dim, p, 16000, out, fingerprint(path, p, 16000), CPU)


def test_embeddings_have_the_shape_dtype_and_row_order_of_the_ids(tmp_path, clips, teacher):
    s = _run(clips, teacher, tmp_path)
    emb = np.load(tmp_path / "emb.npy")
    ids = pd.read_parquet(tmp_path / "ids.parquet")
    assert emb.dtype == np.float16 and emb.shape == (len(clips), 8) == (s["n"], s["dim"])
    assert list(ids.columns) == ["clip_id", "score"] and ids["clip_id"].tolist() == clips["clip_id"].tolist()
    assert not (tmp_path / ".partial").exists()
    # Row i is the teacher's penultimate vector of clip i, and its score the teacher's bona fide score.
    model, _ = teacher
    wave = torch.from_numpy(np.tile(embed.iter_batches(clips.iloc[[5]], 1, 16000, 0.5).__next__()[1].waves.numpy(),
                                    (1, 1)))
    with torch.no_grad():
        logits, feats = model.forward_with_features(wave)
        ref = feats["penultimate"].numpy()[0]
    assert np.allclose(emb[5].astype(np.float32), ref, atol=2e-2 * max(1.0, np.abs(ref).max()))
    assert ids["score"].iloc[5] == pytest.approx(float(logits[0, 1] - logits[0, 0]), rel=1e-5, abs=1e-6)
    assert ids["score"].notna().all() and ids["score"].nunique() > 1
    info = json.loads((tmp_path / "info.json").read_text())
    assert s["clips_per_s"] > 0 and info["rejected"] == 0
    assert not {"seconds", "clips_per_s", "computed_clips"} & set(info)  # timing is logged, not in the DVC output


def test_embeddings_are_deterministic(tmp_path, clips, teacher):
    _run(clips, teacher, tmp_path / "a")
    _run(clips, teacher, tmp_path / "b", batch_size=4, shard_batches=1)
    assert np.array_equal(np.load(tmp_path / "a/emb.npy"), np.load(tmp_path / "b/emb.npy"))


def test_an_interrupted_run_resumes_and_skips_the_shards_done(tmp_path, clips, teacher, monkeypatch):
    _run(clips, teacher, tmp_path / "ref")
    _interrupt_in_second_shard(clips, teacher, tmp_path / "out", monkeypatch)
    assert sorted(p.name for p in (tmp_path / "out/.partial").glob("shard_*")) == ["shard_00000.npz"]
    assert not (tmp_path / "out/emb.npy").exists()
    s = _run(clips, teacher, tmp_path / "out")
    assert s["computed_clips"] == len(clips) - 8  # the first shard (2 batches of 4) was skipped
    assert np.array_equal(np.load(tmp_path / "ref/emb.npy"), np.load(tmp_path / "out/emb.npy"))
    assert pd.read_parquet(tmp_path / "out/ids.parquet").equals(pd.read_parquet(tmp_path / "ref/ids.parquet"))


def test_shards_of_other_params_are_discarded(tmp_path, clips, teacher):
    part = tmp_path / ".partial"
    part.mkdir()
    (part / "state.json").write_text(json.dumps({"fingerprint": "old"}))
    np.savez(part / "shard_00000.npz", emb=np.zeros((1, 3), np.float16), ids=np.array(["x"]),
             rejects=np.asarray("[]"))
    s = _run(clips, teacher, tmp_path)
    assert s["computed_clips"] == len(clips) and s["n"] == len(clips)


def test_multi_layer_aggregation(tmp_path, clips, teacher):
    s = _run(clips, teacher, tmp_path / "c", layers=["layer2", "layer3", "penultimate"], aggregate="concat")
    assert np.load(tmp_path / "c/emb.npy").shape == (len(clips), 8 + 16 + 8) and s["dim"] == 32
    model, _ = teacher
    assert check_layers(model, ["layer2", "penultimate"], "mean") == 8
    with pytest.raises(ValueError, match="one size"):
        check_layers(model, ["layer3", "penultimate"], "mean")
    with pytest.raises(ValueError, match=r"layers \['layer9'\] not in the resnet teacher"):
        check_layers(model, ["layer9"], "concat")


def test_unreadable_clips_become_rejects_and_too_many_fail(tmp_path, clips, teacher):
    bad = clips.copy()
    bad.loc[2, "path"] = str(tmp_path / "gone.flac")
    s = _run(bad, teacher, tmp_path / "one")
    assert s["n"] == len(clips) - 1 and s["rejected"] == 1
    assert bad.loc[2, "clip_id"] not in pd.read_parquet(tmp_path / "one/ids.parquet")["clip_id"].tolist()
    assert read_rejects(tmp_path / "one/rejects.parquet")["clip_id"].tolist() == [bad.loc[2, "clip_id"]]
    bad.loc[:10, "path"] = str(tmp_path / "gone.flac")
    with pytest.raises(StageError, match="unreadable"):
        _run(bad, teacher, tmp_path / "many")


def test_resemblyzer_embedder_from_a_local_weights_file(tmp_path, clips):
    from resemblyzer import VoiceEncoder

    torch.manual_seed(0)
    enc = VoiceEncoder(device="cpu", verbose=False)
    weights = tmp_path / "voice_encoder.pt"
    torch.save({"model_state": enc.state_dict()}, weights)
    p = EmbedParams(batch_size=4, eval_s=0.5, embedder="resemblyzer", resemblyzer_weights=str(weights))
    vec, dim = build_vectorizer(None, p, CPU)
    out = embed.run(clips.iloc[:4], vec, dim, p, 16000, tmp_path / "r", "fp", CPU)
    emb = np.load(tmp_path / "r/emb.npy").astype(np.float32)
    assert out["dim"] == 256 and emb.shape == (4, 256)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-2)
    # no teacher, no score: the margin sampler cannot use this pool (the column is null)
    vec, _ = build_vectorizer(None, p, CPU, with_scores=True)
    embed.run(clips.iloc[:4], vec, dim, p, 16000, tmp_path / "s", "fp", CPU)
    assert pd.read_parquet(tmp_path / "s/ids.parquet")["score"].isna().all()


def test_bad_params_are_clear_errors():
    with pytest.raises(ValueError, match="params embed: unknown keys"):
        EmbedParams.from_params({"batch": 3})
    with pytest.raises(ValueError, match="aggregate"):
        EmbedParams.from_params({"aggregate": "max"})
    with pytest.raises(ValueError, match="embedder"):
        EmbedParams.from_params({"embedder": "wav2vec"})
    with pytest.raises(ConfigError, match="embed.precision"):
        EmbedParams.from_params({"precision": "fp8"})
    with pytest.raises(ConfigError, match="embed.layers: expected a list, got str 'penultimate'"):
        EmbedParams.from_params({"layers": "penultimate"})


def test_main_embeds_the_pool_and_refuses_a_teacher_of_another_architecture(tmp_path, clips, teacher, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_clips(clips, tmp_path / "clips.parquet")
    params = {"seed": 1, "audio": {"sample_rate": 16000}, "runtime": {"device": "cpu", "threads": 1},
              "teachers": {"t1": TEACHER, "t2": {**TEACHER, "arch": "convnext"}},
              "embed": {"batch_size": 4, "eval_s": 0.5}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    tdir = str(teacher[1].parent)
    assert embed.main(["t1", "--clips", "clips.parquet", "--teacher-dir", tdir, "--out", "emb/t1"]) == 0
    ids = pd.read_parquet(tmp_path / "emb/t1/ids.parquet")["clip_id"]
    assert len(ids) == len(clips)  # the pool: all splits of bonafide + vocoder
    info = json.loads((tmp_path / "emb/t1/info.json").read_text())
    assert info["score_threshold"] == 0.0 and info["score_threshold_source"] == "none (0)"   # no metrics.json
    (teacher[1].parent / "metrics.json").write_text(json.dumps({"dev_eer": 0.1, "dev_threshold": -0.25}))
    assert embed.score_threshold(teacher[1].parent) == (-0.25, "dev_threshold")
    (teacher[1].parent / "metrics.json").write_text("{not json")
    assert embed.score_threshold(teacher[1].parent) == (0.0, "none (0)")
    (teacher[1].parent / "metrics.json").unlink()
    with pytest.raises(CheckpointError, match="'resnet' model, but architecture 'convnext'"):
        embed.main(["t2", "--clips", "clips.parquet", "--teacher-dir", tdir, "--out", "emb/t2"])


def _interrupt_in_second_shard(clips, teacher, out, monkeypatch) -> None:
    calls = {"n": 0}
    real = embed.embed_batch

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:  # in the second shard (2 batches per shard)
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(embed, "embed_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        _run(clips, teacher, out)
    monkeypatch.setattr(embed, "embed_batch", real)
    assert sorted(p.name for p in (out / ".partial").glob("shard_*")) == ["shard_00000.npz"]


def test_a_clip_changed_after_an_interruption_is_embedded_again(tmp_path, clips, teacher, monkeypatch):
    import shutil

    local = clips.copy()
    for i, row in local.iterrows():  # a private copy of the audio: this test rewrites one file
        local.at[i, "path"] = str(shutil.copy(row["path"], tmp_path / f"{row['clip_id']}.flac"))
    before = _emb_of(local, teacher, tmp_path / "old")
    _interrupt_in_second_shard(local, teacher, tmp_path / "out", monkeypatch)
    changed = local.copy()
    wave = make_wave(0.5, 16000, f0=300.0, seed=42)
    write_wave(Path(changed.at[1, "path"]), wave, 16000)  # row 1 is in the finished first shard
    changed.at[1, "sha256"] = hashlib.sha256(to_pcm16(wave).tobytes()).hexdigest()
    s = _run(changed, teacher, tmp_path / "out")
    assert s["computed_clips"] == len(local) - 8 + 1  # the rest of shard 1 is reused, the changed clip is not
    _run(changed, teacher, tmp_path / "clean")
    assert np.array_equal(np.load(tmp_path / "out/emb.npy"), np.load(tmp_path / "clean/emb.npy"))
    assert not np.array_equal(np.load(tmp_path / "out/emb.npy")[1], before[1])


def _emb_of(clips, teacher, out) -> np.ndarray:
    _run(clips, teacher, out)
    return np.load(out / "emb.npy")


def test_a_damaged_shard_is_dropped_logged_and_redone(tmp_path, clips, teacher, monkeypatch, caplog):
    _run(clips, teacher, tmp_path / "ref")
    _interrupt_in_second_shard(clips, teacher, tmp_path / "out", monkeypatch)
    shard = tmp_path / "out/.partial/shard_00000.npz"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # truncated: np.load gives BadZipFile
    with caplog.at_level("WARNING"):
        s = _run(clips, teacher, tmp_path / "out")
    assert any("damaged shard shard_00000.npz" in r.getMessage() and "BadZipFile" in r.getMessage()
               for r in caplog.records)
    assert s["computed_clips"] == len(clips)
    assert np.array_equal(np.load(tmp_path / "ref/emb.npy"), np.load(tmp_path / "out/emb.npy"))


def test_fingerprint_follows_the_cpu_kernel_pin(teacher, monkeypatch):
    """Vectors made under other torch CPU kernels differ in their last bits: partial shards are not reused."""
    _, path = teacher
    p = EmbedParams()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    pinned = fingerprint(path, p, 16000)
    assert fingerprint(path, p, 16000) == pinned
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    assert fingerprint(path, p, 16000) != pinned
