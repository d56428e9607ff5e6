"""Tests for pipeline.detector.batches: pool selection, crops, the dataset, balanced sampling and batch streams."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.audio import AudioError
from pipeline.detector.batches import (
    ClipDataset,
    balanced_sampler,
    check_pool,
    class_weights,
    crop_or_tile,
    iter_batches,
    label_indices,
    load_batch,
    select_pool,
)
from pipeline.params import ConfigError
from tests.conftest import tiny_clip_table


def _table() -> pd.DataFrame:
    rows = [
        ("a", "demo", "bonafide", "-", "bonafide", "train"),
        ("b", "demo", "spoof", "hifigan_universal", "vocoder", "train"),
        ("c", "demo", "spoof", "encodec_6kbps", "codec", "dev"),
        ("d", "other", "bonafide", "-", "bonafide", "test"),
        ("e", "demo", "spoof", "piper_joe", "tts", "eval:tts"),
        ("f", "demo", "bonafide", "-", "bonafide", "eval:tts"),
    ]
    return pd.DataFrame(rows, columns=["clip_id", "corpus", "label", "system", "paradigm", "split"])


def test_select_pool_without_filters_keeps_train_dev_test_only():
    assert select_pool(_table(), None)["clip_id"].tolist() == ["a", "b", "c", "d"]


def test_select_pool_filters_corpora_and_paradigms():
    pool = select_pool(_table(), {"corpora": ["demo"], "paradigms": ["bonafide", "codec"]})
    assert pool["clip_id"].tolist() == ["a", "c"]


def test_select_pool_systems_filter_keeps_bonafide():
    assert select_pool(_table(), {"systems": ["hifigan_universal"]})["clip_id"].tolist() == ["a", "b", "d"]


def test_select_pool_rejects_unknown_keys_and_eval_splits():
    with pytest.raises(ConfigError, match=r"pool: unknown keys \['paradigm'\]"):
        select_pool(_table(), {"paradigm": ["codec"]})
    with pytest.raises(ConfigError, match="never eval"):
        select_pool(_table(), {"splits": ["eval:tts"]})
    with pytest.raises(ConfigError, match=r"teachers.T.pool.paradigms: unknown names \['codecs'\]"):
        check_pool({"paradigms": ["bonafide", "codecs"]}, "teachers.T.pool")
    with pytest.raises(ConfigError, match="teachers.T.pool.corpora: expected a list"):
        check_pool({"corpora": 3}, "teachers.T.pool")


def test_crop_or_tile_takes_the_start_and_tiles_short_waves():
    wave = np.arange(10, dtype=np.float32)
    assert crop_or_tile(wave, 4).tolist() == [0, 1, 2, 3]
    assert crop_or_tile(wave[:3], 7).tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_crop_or_tile_random_crop_is_seeded_and_in_range():
    wave = np.arange(100, dtype=np.float32)
    a = crop_or_tile(wave, 10, np.random.default_rng(1))
    b = crop_or_tile(wave, 10, np.random.default_rng(1))
    assert np.array_equal(a, b) and len(a) == 10
    assert np.array_equal(a, np.arange(a[0], a[0] + 10))
    starts = {crop_or_tile(wave, 10, np.random.default_rng(s))[0] for s in range(20)}
    assert len(starts) > 5


def test_crop_or_tile_bad_inputs():
    with pytest.raises(AudioError, match="empty"):
        crop_or_tile(np.zeros(0, np.float32), 4)
    with pytest.raises(ValueError, match="positive"):
        crop_or_tile(np.ones(4, np.float32), 0)


def test_label_indices_and_a_bad_label():
    assert label_indices(["spoof", "bonafide"]).tolist() == [0, 1]
    with pytest.raises(ValueError, match="unknown label 'fake'"):
        label_indices(["fake"])


def test_dataset_gives_fixed_length_waves_reproducible_per_epoch(tmp_path):
    clips = tiny_clip_table(tmp_path, n_speakers=1, clips_per_speaker=2, seconds=1.0)
    ds = ClipDataset(clips, 16000, seconds=0.5, train=True, seed=3)
    w0, y0 = ds[0]
    assert w0.shape == (8000,) and w0.dtype == torch.float32 and y0 == 1
    assert torch.equal(ds[0][0], w0)
    ds.set_epoch(1)
    assert not torch.equal(ds[0][0], w0)
    ev = ClipDataset(clips, 16000, seconds=2.0, train=False)
    w, _ = ev[1]
    assert w.shape == (32000,) and torch.equal(w[:16000], w[16000:])  # tiled
    assert ev[1][1] == 0


def test_dataset_names_the_clip_that_cannot_be_read(tmp_path):
    clips = tiny_clip_table(tmp_path, n_speakers=1, clips_per_speaker=1)
    clips.loc[0, "path"] = str(tmp_path / "missing.flac")
    with pytest.raises(AudioError, match="tiny_s0_c0"):
        ClipDataset(clips, 16000, 0.5, train=False)[0]


def test_balanced_sampler_draws_both_classes_equally():
    labels = np.array([1] * 10 + [0] * 90)
    drawn = labels[list(balanced_sampler(labels, num_samples=4000, seed=0))]
    assert abs(drawn.mean() - 0.5) < 0.05
    assert list(balanced_sampler(labels, seed=5)) == list(balanced_sampler(labels, seed=5))


def test_class_weights_upweight_the_minority():
    w = class_weights(pd.Series(["bonafide"] + ["spoof"] * 3))
    assert w[1] == pytest.approx(3 * w[0]) and float(w.mean()) == pytest.approx(4 / 3, rel=0.3)


def test_load_batch_turns_unreadable_clips_into_rejects(tmp_path):
    clips = tiny_clip_table(tmp_path, n_speakers=1, clips_per_speaker=2)
    clips.loc[1, "path"] = str(tmp_path / "missing.flac")
    batch = load_batch(clips, 16000, 4000, stage="embed")
    assert batch.waves.shape == (3, 4000) and len(batch.clip_ids) == 3
    assert clips.loc[1, "clip_id"] not in batch.clip_ids
    assert batch.rejects[0]["clip_id"] == clips.loc[1, "clip_id"] and batch.rejects[0]["stage"] == "embed"


def test_iter_batches_streams_in_row_order_from_a_start(tmp_path):
    clips = tiny_clip_table(tmp_path, n_speakers=1, clips_per_speaker=3)
    got = [(b, batch.clip_ids) for b, batch in iter_batches(clips, 4, 16000, 0.25)]
    assert [b for b, _ in got] == [0, 1]
    assert sum((ids for _, ids in got), []) == clips["clip_id"].tolist()
    assert [b for b, _ in iter_batches(clips, 4, 16000, 0.25, start=1)] == [1]
    with pytest.raises(ValueError, match="batch_size"):
        next(iter_batches(clips, 0, 16000, 0.25))
