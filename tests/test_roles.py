"""A channel never makes a spoof row: reconstruct, prepare, augmentation and evaluation conditions honour roles."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline import evaluate, prepare, reconstruct
from pipeline.detector.augment import require_channels
from pipeline.params import ConfigError, roles_from_params
from pipeline.resynth import plan
from tests.conftest import make_wave, tiny_clip_table, write_wave

SR = 16000


def test_reconstruct_keeps_only_spoof_systems_and_honours_a_flip(caplog):
    systems = ["encodec_6kbps", "encodec_1.5kbps", "mp3_16kbps", "codec2_1300"]
    assert plan.spoof_systems(systems, {}, "codec") == ["encodec_6kbps", "encodec_1.5kbps"]
    assert "mp3_16kbps has role channel" in caplog.text
    flipped = {"encodec_6kbps": "channel", "mp3_16kbps": "spoof"}
    assert plan.spoof_systems(systems, flipped, "codec") == ["encodec_1.5kbps", "mp3_16kbps"]


def test_a_codec_paradigm_of_channels_only_makes_no_spoof_row(tmp_path):
    clips = tiny_clip_table(tmp_path / "clips", n_speakers=2, clips_per_speaker=1, with_spoof=False)
    p = reconstruct.ReconstructParams.from_params({"codec": {"systems": ["mp3_16kbps", "codec2_1300"]}},
                                                  paradigm="codec")
    with pytest.raises(ConfigError, match="no system with role spoof"):
        reconstruct.run(clips, p, None, tmp_path / "recon", SR, 0, "cpu")
    p = reconstruct.ReconstructParams.from_params({"codec": {"systems": ["mp3_16kbps"]}}, paradigm="codec")
    table, _ = reconstruct.run(clips, p, None, tmp_path / "recon", SR, 0, "cpu", roles={"mp3_16kbps": "spoof"})
    assert set(table["system"]) == {"mp3_16kbps"} and (table["label"] == "spoof").all()


def test_prepare_rejects_a_corpus_spoof_row_whose_system_is_a_channel(tmp_path):
    for name in ("a", "b", "c"):
        write_wave(tmp_path / f"{name}.wav", make_wave(0.6, seed=ord(name)))
    (tmp_path / "labels.csv").write_text("file,speaker,label,system\na.wav,s1,bonafide,\nb.wav,s1,spoof,mp3_16kbps\n"
                                         "c.wav,s2,spoof,my_tts\n")
    sources = pd.DataFrame({"clip_id": ["x_a", "x_b", "x_c"], "source_path": ["a", "b", "c"], "corpus": "x",
                            "label": ["bonafide", "spoof", "spoof"], "system": ["-", "mp3_16kbps", "my_tts"]})
    kept, rejects = prepare.channel_rejects(sources, {})
    assert list(kept["clip_id"]) == ["x_a", "x_c"] and "role channel" in rejects[0]["reason"]
    kept, rejects = prepare.channel_rejects(sources, {"mp3_16kbps": "spoof"})
    assert len(kept) == 3 and not rejects


def test_roles_params_accept_spoof_or_channel_only():
    assert roles_from_params({"roles": {"encodec_6kbps": "channel"}}) == {"encodec_6kbps": "channel"}
    assert roles_from_params({}) == {}
    with pytest.raises(ConfigError, match="roles.encodec_6kbps"):
        roles_from_params({"roles": {"encodec_6kbps": "fake"}})


def test_augmentation_and_conditions_take_channels_only():
    require_channels("train.augment.codec_systems", ("mp3_16kbps", "g711_mulaw"), {})
    with pytest.raises(ConfigError, match="mp3_16kbps has role spoof"):
        require_channels("train.augment.codec_systems", ("mp3_16kbps",), {"mp3_16kbps": "spoof"})
    with pytest.raises(ConfigError, match="not a channel system"):
        evaluate.EvaluateParams.from_params({"conditions": ["encodec_6kbps"]})
    assert evaluate.EvaluateParams.from_params({"conditions": ["gsm_fr"]}).conditions == ("gsm_fr",)
