"""DiffSSD on a fixture: train_val_test_splits.csv + generated_speech/, LJSpeech and LibriSpeech roots."""

import pytest

from pipeline.corpora import load_diffssd
from tests.conftest import make_wave, write_wave

# Real rows as the published manifest writes them (real_speech/<corpus>/..., category and source `real`).
ROWS = [("generated_speech/gradtts/ljspeech/gradtts_0001.wav", "gradtts", "tts", "open_source", "train", "1"),
        ("generated_speech/unitspeech/84-121123-0000_unitspeech.wav", "unitspeech", "vc", "open_source", "val", "1"),
        ("generated_speech/playht/playht_0003.wav", "playht", "tts", "commercial", "test", "1"),
        ("real_speech/ljspeech/LJ001-0001.wav", "ljspeech", "real", "real", "train", "0"),
        ("real_speech/librispeech/dev-clean/84/121123/84-121123-0001.flac", "librispeech", "real", "real", "test", "0")]


def _corpus(tmp_path, extra=()):
    root, lj, libri = tmp_path / "diffssd", tmp_path / "LJSpeech-1.1", tmp_path / "LibriSpeech"
    lines = ["filename,method_name,category,source,set,target"]
    for i, row in enumerate(list(ROWS) + list(extra)):
        lines.append(",".join(row))
        parts = row[0].split("/", 2)
        target = {"ljspeech": lj / "wavs", "librispeech": libri}.get(parts[1])
        write_wave(target / parts[2] if target else root / row[0], make_wave(0.3, seed=i))
    root.mkdir(parents=True, exist_ok=True)
    (root / "train_val_test_splits.csv").write_text("\n".join(lines) + "\n")
    return root, lj, libri


def test_diffssd_reads_manifest_with_real_roots_and_keeps_test_as_eval(tmp_path):
    root, lj, libri = _corpus(tmp_path)
    res = load_diffssd(root, ljspeech_root=lj, librispeech_root=libri)
    assert res.rejects == []
    src = res.sources.set_index("clip_id")
    assert src.loc["diffssd_real_speech_ljspeech_LJ001-0001", "source_path"] == str(lj / "wavs/LJ001-0001.wav")
    real = src.loc["diffssd_real_speech_librispeech_dev-clean_84_121123_84-121123-0001"]
    assert (real["label"], real["speaker"], real["split"]) == ("bonafide", "84", "eval:diffssd")
    fake = src.loc["diffssd_generated_speech_unitspeech_84-121123-0000_unitspeech"]
    assert (fake["label"], fake["system"], fake["speaker"]) == ("spoof", "unitspeech", "84")
    assert src.loc["diffssd_generated_speech_gradtts_ljspeech_gradtts_0001", "speaker"] == "LJ"
    assert src.loc["diffssd_generated_speech_playht_playht_0003", "speaker"] == "playht"
    assert src.loc["diffssd_generated_speech_playht_playht_0003", "split"] == "eval:diffssd"
    assert src["split"].fillna("-").value_counts().to_dict() == {"-": 3, "eval:diffssd": 2}
    official = load_diffssd(root, ljspeech_root=lj, librispeech_root=libri, official_split=True).sources
    assert sorted(official["split"]) == ["dev", "eval:diffssd", "eval:diffssd", "train", "train"]


def test_diffssd_leaves_out_real_rows_without_root_and_rejects_bad_rows(tmp_path):
    extra = [("generated_speech/x/a.wav", "x", "c", "s", "holdout", "1"),
             ("generated_speech/x/b.wav", "x", "c", "s", "test", "2")]
    escaping = ["../outside.wav,x,c,s,test,1"]
    root, lj, _ = _corpus(tmp_path, extra)
    manifest = root / "train_val_test_splits.csv"
    manifest.write_text(manifest.read_text() + "\n".join(escaping) + "\n")
    res = load_diffssd(root)
    assert set(res.sources["label"]) == {"spoof"} and len(res.sources) == 3
    (root / "real_speech/ljspeech").mkdir(parents=True)
    (lj / "wavs/LJ001-0001.wav").rename(root / "real_speech/ljspeech/LJ001-0001.wav")  # as the manifest says
    assert len(load_diffssd(root).sources) == 4
    reasons = sorted(r["reason"] for r in res.rejects)
    assert reasons == ["path '../outside.wav' leaves " + str(root) + " (train_val_test_splits.csv line 9)",
                       "unknown set 'holdout' (train_val_test_splits.csv line 7)",
                       "unknown target '2' (train_val_test_splits.csv line 8)"]
    with pytest.raises(FileNotFoundError, match="split manifest"):
        load_diffssd(tmp_path / "LibriSpeech")
