"""MLAAD + M-AILABS on a fixture in their exact layouts (`|`-separated meta.csv per model folder)."""

import pytest

from pipeline import prepare
from pipeline.corpora import load_mlaad
from tests.conftest import make_wave, write_wave

HEADER = ("path|original_file|language|is_original_language|duration|training_data|model_name|architecture|"
          "transcript|reference_speaker")
SPEAKERS = {"elizabeth_klett": ("en_UK", "female", "jane_eyre"), "elliot_miller": ("en_US", "male", "poisoned_pen"),
            "judy_bieber": ("en_US", "female", "emerald_city"), "mary_ann": ("en_US", "female", "northandsouth")}


def _original(speaker, n):
    locale, gender, book = SPEAKERS[speaker]
    return f"{locale}/by_book/{gender}/{speaker}/{book}/wavs/{book}_01_f{n:06d}.wav"


def _corpus(tmp_path, per_speaker=2):
    root, mroot = tmp_path / "MLAADv5", tmp_path / "M-AILABS"
    models = {("en", "tts_models_en_ljspeech_vits"): "tts_models/en/ljspeech/vits",
              ("de", "facebook_mms-tts-deu"): "facebook/mms-tts-deu"}
    seed = 0
    for (lang, folder), model in models.items():
        lines = [HEADER]
        for speaker in SPEAKERS:
            for n in range(per_speaker):
                original = _original(speaker, n)
                name = original.rsplit("/", 1)[1]
                rel = f"fake/{lang}/{folder}/{name}"
                write_wave(root / rel, make_wave(0.4, seed=seed))
                write_wave(mroot / original, make_wave(0.4, f0=150, seed=seed))
                seed += 1
                lines.append(f'./{rel}|{original}|{lang}|False|0.4|multi|{model}|vits|"Hello," she said|x')
        (root / f"fake/{lang}/{folder}/meta.csv").write_text("\n".join(lines) + "\n")
    return root, mroot


def test_mlaad_keeps_original_file_as_parent_and_speaker(tmp_path):
    root, mroot = _corpus(tmp_path)
    res = load_mlaad(root, mailabs_root=mroot)
    assert res.rejects == []
    src = res.sources
    fakes, bona = src[src["label"] == "spoof"], src[src["label"] == "bonafide"]
    assert len(fakes) == 16 and len(bona) == 8  # bonafide: parents -> each M-AILABS utterance once
    assert set(fakes["parent_id"]) == set(bona["clip_id"])
    by_id = bona.set_index("clip_id")["speaker"]
    assert (fakes["speaker"] == fakes["parent_id"].map(by_id)).all()
    assert set(fakes["system"]) == {"tts_models/en/ljspeech/vits", "facebook/mms-tts-deu"}
    assert src["split"].isna().all() and set(src["corpus"]) == {"mlaad"}
    klett = "mlaad_mailabs_en_UK_by_book_female_elizabeth_klett_jane_eyre_wavs_jane_eyre_01_f000000"
    assert klett in set(bona["clip_id"])
    de_only = load_mlaad(root, languages=["de"])
    assert len(de_only.sources) == 8 and de_only.sources["parent_id"].notna().all()


def test_mlaad_protocol_keeps_listed_fakes_and_makes_eval_set(tmp_path):
    root, _ = _corpus(tmp_path, per_speaker=1)
    proto = tmp_path / "protocol"
    proto.mkdir()
    fake = "fake/en/tts_models_en_ljspeech_vits"
    (proto / "train.csv").write_text(f"path,model_name\n{fake}/jane_eyre_01_f000000.wav,m\n")
    (proto / "dev.csv").write_text(f"path,model_name\n{fake}/poisoned_pen_01_f000000.wav,m\n")
    (proto / "eval.csv").write_text(f"path,model_name\n{fake}/emerald_city_01_f000000.wav,m\n")
    res = load_mlaad(root, protocol=proto)
    assert len(res.sources) == 3
    splits = dict(zip(res.sources["clip_id"].str.rsplit("_", n=3).str[-3], res.sources["split"].fillna("-")))
    assert splits == {"eyre": "-", "pen": "-", "city": "eval:mlaad"}
    (proto / "dev.csv").unlink()
    with pytest.raises(FileNotFoundError, match="dev.csv"):
        load_mlaad(root, protocol=proto)


def test_mlaad_bad_rows_and_wrong_layouts(tmp_path):
    root, mroot = _corpus(tmp_path, per_speaker=1)
    meta = root / "fake/en/tts_models_en_ljspeech_vits/meta.csv"
    meta.write_text(meta.read_text() + "|en_US/x.wav|en|False|1|m||vits|t|x\n./fake/en/gone.wav||en|F|1|d|m|a|t|x\n"
                    "../../outside.wav||en|F|1|d|m|a|t|x\n./fake/en/m/y.wav|../../../etc/z.wav|en|F|1|d|m|a|t|x\n")
    write_wave(root / "fake/en/m/y.wav", make_wave(0.3))
    res = load_mlaad(root, mailabs_root=mroot)
    reasons = [r["reason"] for r in res.rejects]
    assert any("empty path or model_name" in r for r in reasons) and "missing file" in reasons
    assert sum("leaves" in r for r in reasons) == 2  # a fake path and an original_file outside their roots
    assert len(res.rejects) == 4
    with pytest.raises(FileNotFoundError, match="fake folder"):
        load_mlaad(tmp_path / "M-AILABS")
    with pytest.raises(FileNotFoundError, match="mailabs_root"):
        load_mlaad(root, mailabs_root=tmp_path / "nowhere")
    meta.write_text("path,original_file,model_name\nx.wav,y.wav,m\n")  # commas: not MLAAD's format
    with pytest.raises(ValueError, match="missing columns"):
        load_mlaad(root)


def test_prepare_splits_mlaad_by_mailabs_speaker_and_keeps_parent_id(tmp_path):
    root, mroot = _corpus(tmp_path)
    p = prepare.PrepareParams(corpora=({"name": "mlaad", "root": str(root), "mailabs_root": str(mroot)},),
                              min_duration_s=0.1, dev_fraction=0.25, test_fraction=0.25, seed=3)
    clips, rejects, _ = prepare.run(p, tmp_path / "clips")
    assert len(rejects) == 0 and len(clips) == 24
    split_of = clips.set_index("clip_id")["split"]
    fakes = clips[clips["label"] == "spoof"]
    assert (fakes["split"] == fakes["parent_id"].map(split_of)).all()
    assert clips[clips["label"] == "bonafide"]["parent_id"].isna().all()
    assert clips.groupby("speaker")["split"].nunique().max() == 1
