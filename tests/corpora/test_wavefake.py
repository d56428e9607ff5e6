"""WaveFake (+ LJSpeech-1.1 and JSUT bona fide roots) on a fixture with the real folder and file names."""

import pytest

from pipeline.corpora import load_wavefake
from tests.conftest import make_wave, write_wave

FAKES = ["ljspeech_melgan/LJ001-0001_gen.wav", "ljspeech_melgan/LJ001-0002_gen.wav",
         "ljspeech_hifiGAN/LJ001-0001_generated.wav", "ljspeech_waveglow/LJ001-0001.wav",
         "jsut_parallel_wavegan/BASIC5000_0001_gen.wav",
         "common_voices_prompts_from_conformer_fastspeech2_pwg_ljspeech/common_voice_en_19_gen.wav"]


def _corpus(tmp_path):
    root = tmp_path / "WaveFake"
    for i, rel in enumerate(FAKES):
        write_wave(root / "generated_audio" / rel, make_wave(0.3, seed=i))
    lj, jsut = tmp_path / "LJSpeech-1.1", tmp_path / "jsut_ver1.1"
    for i, name in enumerate(("LJ001-0001", "LJ001-0002")):
        write_wave(lj / "wavs" / f"{name}.wav", make_wave(0.3, f0=140, seed=i))
    (lj / "metadata.csv").write_text("LJ001-0001|Printing|Printing\n")
    write_wave(jsut / "basic5000/wav/BASIC5000_0001.wav", make_wave(0.3, f0=220))
    return root, lj, jsut


def test_wavefake_links_each_vocoded_file_to_its_real_utterance(tmp_path):
    root, lj, jsut = _corpus(tmp_path)
    res = load_wavefake(root, ljspeech_root=lj, jsut_root=jsut)
    assert res.rejects == []
    src = res.sources.set_index("clip_id")
    parent = "wavefake_ljspeech_LJ001-0001"
    for clip in ("wavefake_ljspeech_melgan_LJ001-0001", "wavefake_ljspeech_hifiGAN_LJ001-0001",
                 "wavefake_ljspeech_waveglow_LJ001-0001"):
        assert src.loc[clip, "parent_id"] == parent and src.loc[clip, "speaker"] == "LJ"
    assert src.loc["wavefake_ljspeech_hifiGAN_LJ001-0001", "system"] == "ljspeech_hifiGAN"
    assert src.loc["wavefake_jsut_parallel_wavegan_BASIC5000_0001", "parent_id"] == "wavefake_jsut_BASIC5000_0001"
    assert src.loc["wavefake_jsut_BASIC5000_0001", "speaker"] == "jsut"
    tts = src[src["system"].str.startswith("common_voices")]
    assert len(tts) == 1 and tts["parent_id"].isna().all()  # TTS of other texts: no parent
    assert set(src.loc[src["label"] == "bonafide"].index) == {parent, "wavefake_ljspeech_LJ001-0002",
                                                              "wavefake_jsut_BASIC5000_0001"}
    assert src["split"].isna().all()


def test_wavefake_systems_filter_and_eval_systems(tmp_path):
    root, lj, _ = _corpus(tmp_path)
    res = load_wavefake(root / "generated_audio", ljspeech_root=lj, systems=["ljspeech_melgan", "ljspeech_waveglow"],
                        eval_systems=["ljspeech_waveglow"])
    spoof = res.sources[res.sources["label"] == "spoof"]
    assert sorted(spoof["system"]) == ["ljspeech_melgan", "ljspeech_melgan", "ljspeech_waveglow"]
    assert spoof.set_index("system")["split"].fillna("-").to_dict() == {"ljspeech_melgan": "-",
                                                                        "ljspeech_waveglow": "eval:wavefake"}
    with pytest.raises(ValueError, match="ljspeech_wavenet"):
        load_wavefake(root, eval_systems=["ljspeech_wavenet"])


def test_wavefake_unknown_folder_is_a_reject_and_wrong_roots_are_errors(tmp_path):
    root, lj, _ = _corpus(tmp_path)
    write_wave(root / "generated_audio/vctk_melgan/p225_001_gen.wav", make_wave(0.3))
    res = load_wavefake(root)
    assert [r["reason"] for r in res.rejects] == ["unknown WaveFake folder 'vctk_melgan' (not ljspeech_*/jsut_*)"]
    with pytest.raises(FileNotFoundError, match="no <corpus>_<vocoder> folders"):
        load_wavefake(lj)
    with pytest.raises(FileNotFoundError, match="jsut_root"):
        load_wavefake(root, jsut_root=tmp_path / "nowhere")
    (lj / "wavs/LJ001-0001.wav").unlink()
    (lj / "wavs/LJ001-0002.wav").unlink()
    with pytest.raises(FileNotFoundError, match="no audio in ljspeech_root"):
        load_wavefake(root, ljspeech_root=lj)
