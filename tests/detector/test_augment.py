"""Training augmentation: RawBoost algorithms, codec round trips, gain; reproducible and label-free."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from pipeline import train
from pipeline.__main__ import main
from pipeline.detector.augment import (
    RAWBOOST_DEFAULTS,
    Augmenter,
    AugmentParams,
    make_augmenter,
    random_multiband_fir,
    rawboost,
)
from pipeline.detector.batches import ClipDataset, crop_or_tile, load_wave
from tests.conftest import tiny_clip_table

SR = 16000


def _speechlike(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    env = 0.5 * (1 + np.sin(2 * np.pi * 3 * t))
    return (0.3 * env * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_multiband_fir_passes_its_bands_only() -> None:
    cfg = {**RAWBOOST_DEFAULTS, "n_bands": 1, "min_f": 2000.0, "max_f": 2000.0, "min_bw": 400.0, "max_bw": 400.0,
           "min_coeff": 201, "max_coeff": 201}
    h = random_multiband_fir(np.random.default_rng(0), SR, cfg)
    freqs, resp = np.fft.rfftfreq(4096, 1 / SR), np.abs(np.fft.rfft(h, 4096))
    assert resp[np.argmin(np.abs(freqs - 2000))] > 0.8
    assert resp[np.argmin(np.abs(freqs - 500))] < 0.05 and resp[np.argmin(np.abs(freqs - 6000))] < 0.05


@pytest.mark.parametrize("algo", ["lnl", "isd", "ssi"])
def test_rawboost_changes_the_wave_but_keeps_length_and_is_seeded(algo: str) -> None:
    x = _speechlike()
    a = rawboost(x, algo, np.random.default_rng(3), SR)
    b = rawboost(x, algo, np.random.default_rng(3), SR)
    c = rawboost(x, algo, np.random.default_rng(4), SR)
    assert a.shape == x.shape and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, x) and not np.allclose(a, c)


def test_ssi_snr_within_range() -> None:
    x = _speechlike().astype(np.float64)
    cfg = {"min_snr_db": 20.0, "max_snr_db": 20.0}
    y = rawboost(x, "ssi", np.random.default_rng(0), SR, cfg)
    snr = 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2))
    assert snr == pytest.approx(20.0, abs=0.01)


def test_isd_touches_at_most_max_percent_of_samples() -> None:
    x = _speechlike().astype(np.float64)
    y = rawboost(x, "isd", np.random.default_rng(0), SR, {"max_percent": 5.0})
    assert 0 < np.count_nonzero(y != x) <= 0.05 * x.size


def test_lnl_keeps_the_peak() -> None:
    x = _speechlike()
    y = rawboost(x, "lnl", np.random.default_rng(0), SR)
    assert np.max(np.abs(y)) == pytest.approx(np.max(np.abs(x)), rel=1e-6)


def test_augmenter_off_is_identity_and_on_is_reproducible() -> None:
    x = _speechlike()
    off = Augmenter(AugmentParams(), SR)
    assert off(x, np.random.default_rng(0)) is x
    params = AugmentParams.from_params({"enabled": True, "rawboost_prob": 1.0, "codec_prob": 1.0,
                                        "codec_systems": ["mp3_16kbps", "codec2_1300"], "gain_prob": 1.0})
    aug = Augmenter(params, SR)
    a, b = aug(x, np.random.default_rng(7)), aug(x, np.random.default_rng(7))
    assert a.dtype == np.float32 and a.shape == x.shape and np.abs(a).max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, x, atol=1e-3)


def test_codec_augmentation_alone_is_a_real_round_trip() -> None:
    x = _speechlike()
    params = AugmentParams.from_params({"enabled": True, "rawboost_prob": 0.0, "codec_prob": 1.0,
                                        "codec_systems": ["codec2_1300"]})
    y = Augmenter(params, SR)(x, np.random.default_rng(0))
    # Codec2 is an 8 kHz codec: nothing survives above 4 kHz
    spec_y = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    freqs = np.fft.rfftfreq(y.size, 1 / SR)
    assert spec_y[freqs > 4500].max() < 0.05 * spec_y.max()
    assert np.corrcoef(x, y)[0, 1] < 0.999


@pytest.mark.parametrize("bad, match", [
    ({"enabeld": True}, "unknown keys"),
    ({"rawboost_algos": ["lnl", "boost"]}, "unknown"),
    ({"rawboost": {"snr": 3}}, "rawboost: unknown keys"),
    ({"codec_prob": 1.5}, "probability"),
    ({"gain_db": [6, -6]}, "gain_db"),
    ({"codec_prob": 0.5, "codec_systems": ["mp4_16kbps"]}, "not a channel"),
    ({"codec_prob": 0.5, "codec_systems": ["encodec_6kbps"]}, "trained generator"),
    ({"codec_prob": 0.5, "codec_systems": ["codec2_999"]}, "Codec2 mode"),
    ({"codec_systems": "mp3_16kbps"}, "expected a list"),
])
def test_bad_augment_params_are_clear_errors(bad: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AugmentParams.from_params(bad)


# ----------------------------------------------------------------------------- wiring: training crops


def _crops(ds, epoch: int = 0) -> list:
    ds.set_epoch(epoch)
    return [ds[i] for i in range(len(ds))]


@pytest.fixture
def train_clips(tmp_path):
    return tiny_clip_table(tmp_path, n_speakers=2, clips_per_speaker=2, seconds=1.0)


ON = {"enabled": True, "rawboost_prob": 1.0, "gain_prob": 1.0, "gain_db": [-3.0, 3.0]}


def test_augmentation_off_gives_the_crops_of_before(train_clips) -> None:
    assert make_augmenter({}, SR) is None and make_augmenter({"enabled": False, "gain_prob": 1.0}, SR) is None
    off = ClipDataset(train_clips, SR, 0.5, train=True, seed=5, augment=make_augmenter(AugmentParams(), SR))
    for epoch in (0, 1):
        for i, (wave, label) in enumerate(_crops(off, epoch)):
            # the crop as it was made before augmentation existed: rng (seed, epoch, index)
            before = crop_or_tile(load_wave(train_clips["path"][i], SR), 8000, np.random.default_rng([5, epoch, i]))
            assert torch.equal(wave, torch.from_numpy(before)) and label == off.labels[i]


def test_train_batches_are_byte_identical_with_augmentation_off(train_clips) -> None:
    p_off = train.TrainParams.from_params({"batch_size": 4, "steps_per_epoch": 2, "crop_s": 0.5,
                                           "augment": {"enabled": False, "rawboost_prob": 1.0}})
    p_none = train.TrainParams.from_params({"batch_size": 4, "steps_per_epoch": 2, "crop_s": 0.5})
    a = ClipDataset(train_clips, SR, 0.5, train=True, seed=1)
    b = ClipDataset(train_clips, SR, 0.5, train=True, seed=1, augment=make_augmenter(p_off.augment, SR))
    for epoch in (0, 1):
        for (wa, ya), (wb, yb) in zip(train._batches(a, p_none, 1, epoch), train._batches(b, p_off, 1, epoch)):
            assert wa.numpy().tobytes() == wb.numpy().tobytes() and torch.equal(ya, yb)


def test_augmentation_on_is_seeded_differs_from_off_and_keeps_labels(train_clips) -> None:
    def dataset(seed: int, augment: bool) -> ClipDataset:
        return ClipDataset(train_clips, SR, 0.5, train=True, seed=seed,
                           augment=make_augmenter(ON, SR) if augment else None)

    on, again, off = _crops(dataset(2, True)), _crops(dataset(2, True)), _crops(dataset(2, False))
    assert all(torch.equal(x[0], y[0]) for x, y in zip(on, again))          # reproducible for a seed
    assert all(not torch.equal(x[0], y[0]) for x, y in zip(on, off))       # every crop augmented
    assert [x[1] for x in on] == [y[1] for y in off]                        # labels unchanged
    assert all(x[0].shape == y[0].shape and x[0].dtype == torch.float32 for x, y in zip(on, off))
    other_seed, next_epoch = _crops(dataset(3, True)), _crops(dataset(2, True), epoch=1)
    assert any(not torch.equal(x[0], y[0]) for x, y in zip(on, other_seed))
    assert any(not torch.equal(x[0], y[0]) for x, y in zip(on, next_epoch))
    with pytest.raises(ValueError, match="training crops only"):
        ClipDataset(train_clips, SR, 0.5, train=False, augment=make_augmenter(ON, SR))


@pytest.mark.parametrize("stage", ["train", "pretrain"])
def test_a_bad_augment_key_is_a_one_line_config_error(tmp_path, capsys, stage: str) -> None:
    params = {"seed": 0, "audio": {"sample_rate": SR}, "runtime": {"device": "cpu", "threads": 1},
              "teachers": {"t": {"arch": "resnet"}}, stage: {"augment": {"enabled": True, "rawbost_prob": 0.5}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    args = (["train", "--manifest", "m.parquet", "--dev", "d.parquet", "--out", str(tmp_path / "o")]
            if stage == "train" else ["pretrain", "t", "--clips", "c.parquet", "--out", str(tmp_path / "o")])
    capsys.readouterr()
    assert main([*args, "--params", str(tmp_path / "params.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"error: params {stage}.augment: unknown keys ['rawbost_prob']")
    assert not (tmp_path / "o").exists()
