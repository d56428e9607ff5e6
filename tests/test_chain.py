"""The preprocessing chain: prepare and score apply the same one, so a raw file scores as its prepared clip."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
import yaml

from pipeline import prepare, score
from pipeline.chain import Chain, apply_chain, chain_from_params
from pipeline.corpora import ADAPTERS
from pipeline.models import build_model, save_checkpoint
from pipeline.params import ConfigError
from pipeline.schema import read_clips
from tests.conftest import make_wave, write_wave

RAW_SR = 22050
HEADER = "file,speaker,label,system,paradigm,language,text,source\n"


def _raw_corpus(root):
    """Three speakers' raw 22.05 kHz files, each with 0.6 s of leading silence and a loud, wide-band tail."""
    lines = []
    for s in range(3):
        rng = np.random.default_rng(s)
        speech = make_wave(1.2, RAW_SR, f0=110 + 25 * s, seed=s) + 0.05 * rng.standard_normal(int(1.2 * RAW_SR))
        wave = np.concatenate([np.zeros(int(0.6 * RAW_SR), np.float32), speech.astype(np.float32)])
        write_wave(root / f"s{s}.wav", wave, RAW_SR)
        lines.append(f"s{s}.wav,spk{s},{'bonafide' if s else 'spoof'},{'-' if s else 'tts_x'},"
                     f"{'bonafide' if s else 'tts'},en,hi,test")
    (root / "metadata.csv").write_text(HEADER + "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(tmp dir, clips table, params) after prepare with vad_trim and a 4 kHz low-pass on the raw corpus."""
    tmp = tmp_path_factory.mktemp("chain")
    _raw_corpus(tmp / "raw")
    params = {"seed": 1, "audio": {"sample_rate": 16000},
              "prepare": {"corpora": [{"name": "demo", "root": str(tmp / "raw")}], "vad_trim": True,
                          "lowpass_hz": 4000, "max_duration_s": 1.5, "max_reject_fraction": 0.5}}
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    rc = prepare.main(["--params", str(tmp / "params.yaml"), "--clips", str(tmp / "clips.parquet"),
                       "--rejects", str(tmp / "rejects.parquet"), "--audio-dir", str(tmp / "clips"),
                       "--metrics", str(tmp / "prepare.json")])
    assert rc == 0
    return tmp, read_clips(tmp / "clips.parquet"), params


def _detector(path, chain: Chain | None):
    """A tiny detector in `path`/model (score refuses an --out inside a model folder, issue 27 case 5)."""
    torch.manual_seed(0)
    model = build_model({"arch": "resnet", "width": 4, "embedding_dim": 8, "sample_rate": 16000}).eval()
    save_checkpoint(model, {"chain": chain.to_dict()} if chain else {}, path / "model" / "model.pt")
    return path / "model"


def _score(model_dir, out, *inputs) -> dict[str, float]:
    assert score.main(["--model", str(model_dir), "--out", str(out), "--eval-s", "1.5", "--threads", "1",
                       *map(str, inputs)]) == 0
    return score.read_scores(out)


def test_a_raw_file_scores_as_its_prepared_clip(prepared, tmp_path):
    tmp, clips, params = prepared
    chain = chain_from_params(params, 16000)
    assert chain == Chain(16000, vad_trim=True, max_duration_s=1.5, lowpass_hz=4000)
    model = _detector(tmp_path, chain)
    raw = _score(model, tmp_path / "raw.tsv", tmp / "raw")
    clip = _score(model, tmp_path / "clips.tsv", tmp / "clips.parquet")
    assert len(clip) == 3
    for row in clips.itertuples():
        assert raw[row.source] == pytest.approx(clip[row.clip_id], abs=1e-6)
    # the chain matters: the same weights without a recorded chain (resampling only) score the raw files otherwise
    (tmp_path / "plain").mkdir()
    plain = _score(_detector(tmp_path / "plain", None), tmp_path / "plain.tsv", tmp / "raw")
    assert all(abs(plain[r.source] - clip[r.clip_id]) > 1e-4 for r in clips.itertuples())


def test_the_chain_gives_the_prepared_clip_sample_for_sample(prepared):
    tmp, clips, params = prepared
    import soundfile as sf

    chain = chain_from_params(params, 16000)
    for row in clips.itertuples():
        raw, sr = sf.read(row.source, dtype="float32")
        assert sr == RAW_SR
        clip, clip_sr = sf.read(row.path, dtype="float32")
        assert clip_sr == 16000
        np.testing.assert_array_equal(apply_chain(raw, sr, chain), clip)
        assert len(clip) < len(raw) * 16000 / RAW_SR - 0.4 * 16000  # the leading silence was trimmed


def test_every_clip_row_keeps_its_source_file(prepared):
    tmp, clips, _ = prepared
    assert sorted(clips["source"]) == sorted(str(tmp / "raw" / f"s{s}.wav") for s in range(3))


def test_every_adapter_returns_through_the_checked_finish():
    """finish() validates non-null `source_path` of every source row: prepare copies it into `source`."""
    for name, adapter in ADAPTERS.items():
        assert "return finish(" in inspect.getsource(inspect.getmodule(adapter)), name


def test_a_model_without_a_chain_is_resampled_only_and_says_so(prepared, tmp_path, capsys):
    tmp, _, _ = prepared
    model = _detector(tmp_path, None)
    capsys.readouterr()
    raw = _score(model, tmp_path / "raw.tsv", tmp / "raw" / "s1.wav")
    err = capsys.readouterr().err
    assert "records no preprocessing chain" in err and "only resampled to 16000 Hz" in err
    assert np.isfinite(list(raw.values())).all()


def test_prepared_flag_skips_the_chain_for_files(prepared, tmp_path):
    tmp, clips, params = prepared
    model = _detector(tmp_path, chain_from_params(params, 16000))
    row = clips.iloc[0]
    by_table = _score(model, tmp_path / "t.tsv", tmp / "clips.parquet")[row["clip_id"]]
    assert score.main(["--model", str(model), "--out", str(tmp_path / "f.tsv"), "--eval-s", "1.5", "--threads", "1",
                       "--prepared", row["path"]]) == 0
    assert score.read_scores(tmp_path / "f.tsv")[row["path"]] == pytest.approx(by_table, abs=1e-6)


def test_chain_params_defaults_match_prepare_and_bad_chains_are_clear_errors():
    p = prepare.PrepareParams.from_params({"corpora": [{"name": "demo", "root": "x"}]}, sample_rate=16000, seed=0)
    assert p.chain() == chain_from_params({"prepare": {"corpora": []}}, 16000)
    assert Chain.from_dict(p.chain().to_dict()) == p.chain()
    with pytest.raises(ConfigError, match="unknown keys"):
        Chain.from_dict({**p.chain().to_dict(), "denoise": True})
    with pytest.raises(ConfigError, match="version"):
        Chain.from_dict({**p.chain().to_dict(), "version": 99})
    with pytest.raises(ConfigError, match=r"params prepare.lowpass_hz: must be <= 8000"):
        chain_from_params({"prepare": {"lowpass_hz": 9000}}, 16000)
    with pytest.raises(ConfigError, match=r"params chain.vad_trim: expected true or false"):
        Chain.from_dict({"sample_rate": 16000, "vad_trim": "yes"})
    with pytest.raises(ConfigError, match="sample_rate"):
        Chain.from_dict({"vad_trim": True})


def test_a_recorded_chain_of_another_rate_is_exit_2(prepared, tmp_path, capsys):
    tmp, _, _ = prepared
    model = _detector(tmp_path, Chain(22050))
    rc = score.main(["--model", str(model), "--out", str(tmp_path / "x.tsv"), str(tmp / "raw" / "s1.wav")])
    assert rc == 2 and "22050 Hz" in capsys.readouterr().err and not (tmp_path / "x.tsv").exists()
