"""Demo corpus v3: the wideband sources, speaker merges and caps, CereVoice, the attack speaker rule, the
reserved-source guard. Fake package trees made here (no apt, no network); fake engines where the engine is
not the point.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline import fetch_demo as fd
from pipeline.demo import apt, attacks, debian, festival, fillets, packs, reserved, tts, tuxpaint
from pipeline.demo.common import Build, Clip, FetchError, select_clips
from pipeline.demo.speakers import GROUPS, MERGES, speaker_id
from pipeline.params import ConfigError
from tests.conftest import make_wave, write_wave
from tests.test_fetch_demo import FakeApt

OGG = {"subtype": "VORBIS"}


def _ogg(path: Path, seconds: float = 1.2, sr: int = 44100, seed: int = 0) -> Path:
    return write_wave(path, make_wave(seconds, sr, seed=seed), sr, **OGG)


def _copyright(root: Path, pkg: str, licence: str = "GPL-2") -> None:
    (root / "usr/share/doc" / pkg).mkdir(parents=True, exist_ok=True)
    (root / "usr/share/doc" / pkg / "copyright").write_text(f"Files: *\nCopyright: x\nLicense: {licence}\n")


def tuxpaint_tree(root: Path) -> Path:
    base = root / tuxpaint.TUXPAINT
    stamps = base / "usr/share/tuxpaint/stamps/symbols/coins"
    for lang, seed in (("fr", 1), ("be", 2), ("ml", 3)):
        _ogg(stamps / f"penny_desc_{lang}.ogg", seed=seed)
    _ogg(stamps / "penny_desc.ogg", seed=4)  # no language: unknown voice, left out
    _ogg(stamps / "dime_desc_da.ogg.ogg", seed=5)  # the package's one misnamed file
    (stamps / "penny.txt").write_text("A US one cent piece.\nfr.utf8=Une pièce  d'un cent.\n"
                                      "be.utf8=Адзін цэнт.\nca@valencia.utf8=x\n", encoding="utf-8")
    (stamps / "dime.txt").write_text("A dime.\nda.utf8=En dime.\n")
    letters = base / "usr/share/tuxpaint/stamps/symbols/letters"
    _ogg(letters / "A_filled_en_GB.ogg", seed=6)
    (letters / "A_outline_en_GB.ogg").write_bytes((letters / "A_filled_en_GB.ogg").read_bytes())  # same recording
    _copyright(base, tuxpaint.TUXPAINT)
    return base


def fillets_trees(root: Path) -> dict[str, Path]:
    scripts = root / fillets.FILLETS_SCRIPTS
    lua = scripts / fillets.GAME_DIR / "script/airplane/dialogs_cs.lua"
    lua.parent.mkdir(parents=True)
    lua.write_text('dialogId("let-m-a", "font_small", "What ship?")\ndialogStr("Co je to za \\"lod\\"?")\n\n'
                   'dialogId("let-v-b", "font_big", "A wreck.")\ndialogStr("Vrak.")\n'
                   'dialogId("let-x-c", "font_viking1", "Hey.")\n', encoding="utf-8")
    _copyright(scripts, fillets.FILLETS_SCRIPTS)
    audio = root / "fillets-ng-data-cs"
    sound = audio / fillets.GAME_DIR / "sound/airplane/cs"
    for k, line in enumerate(("let-m-a", "let-v-b", "let-x-c", "let-unknown")):
        _ogg(sound / f"{line}.ogg", sr=22050, seed=10 + k)
    _copyright(audio, "fillets-ng-data-cs")
    return {fillets.FILLETS_SCRIPTS: scripts, "fillets-ng-data-cs": audio}


def test_tuxpaint_descriptions_take_their_translation_and_letters_are_kept_once(tmp_path):
    FakeApt.trees = {tuxpaint.TUXPAINT: tuxpaint_tree(tmp_path / "pkgs")}
    build = Build(root=tmp_path / "b")
    clips = tuxpaint.list_tuxpaint(build, FakeApt(tmp_path), Path("/fake/tuxpaint-stamps-default_1.0_all.deb"),
                                   ("fr", "be", "da", "en_GB"))
    got = sorted((Path(c.rel).name, c.speaker, c.language, c.text) for c in clips)
    assert got == [("A_filled_en_GB.ogg", "tuxpaint_en_GB", "en_GB", "A"),
                   ("dime_desc_da.ogg.ogg", "kde_da", "da", "En dime."),  # merged: the Danish KDE voice
                   ("penny_desc_be.ogg", "buraya_ru_be", "be", "Адзін цэнт."),
                   ("penny_desc_fr.ogg", "tuxpaint_fr", "fr", "Une pièce d'un cent.")]
    assert "Jacques Chion" in build.sources[tuxpaint.TUXPAINT].speakers["tuxpaint_fr"]
    assert build.sources[tuxpaint.TUXPAINT].speakers["buraya_ru_be"] == GROUPS["buraya_ru_be"]
    assert tuxpaint.stamp_texts(tmp_path / "missing.txt") == {}


def test_fillets_lines_get_the_small_fish_or_the_cast_and_unknown_lines_are_left_out(tmp_path):
    FakeApt.trees = fillets_trees(tmp_path / "pkgs")
    debs = {p: Path(f"/fake/{p}_1.0_all.deb") for p in FakeApt.trees}
    build = Build(root=tmp_path / "b")
    clips = fillets.list_fillets(build, FakeApt(tmp_path), debs, ("cs",))
    got = sorted((Path(c.rel).name, c.speaker, c.text) for c in clips)
    assert got == [("let-m-a.ogg", "fillets_cs_small", 'Co je to za "lod"?'),
                   ("let-v-b.ogg", "fillets_cs_cast", "Vrak."),
                   ("let-x-c.ogg", "fillets_cs_cast", "Hey.")]  # no dialogStr: the English reference
    assert "fillets-ng-data" in build.sources["fillets-ng-data-cs"].origin
    assert fillets.fillets_speaker("cs", "") is None and fillets.fillets_speaker("nl", "none") is None


def test_asterisk_g722_prompts_are_decoded_to_16_khz_wav(tmp_path):
    g722 = pytest.importorskip("G722")
    pkg, tpkg = debian.ASTERISK_AUDIO.format(lang="fr"), debian.ASTERISK_TEXT.format(lang="fr")
    voice = tmp_path / "pkgs" / pkg / "usr/share/asterisk/sounds/fr_CA_f_June"
    voice.mkdir(parents=True)
    wave = make_wave(1.5, 16000, seed=3)
    coded = g722.G722(16000, 64000).encode(np.round(wave * 32767).astype(np.int16))
    (voice / "p1.g722").write_bytes(coded)
    (voice / "p2.g722").write_bytes(coded[:4000])
    _copyright(tmp_path / "pkgs" / pkg, pkg, "CC-BY-SA-3.0")
    (tmp_path / "pkgs" / tpkg / "usr/share/doc" / tpkg).mkdir(parents=True)
    (tmp_path / "pkgs" / tpkg / "usr/share/doc" / tpkg / "core-sounds-fr.txt").write_text(
        "p1: Bonjour tout le monde\np2: Au revoir\np3: absent\n")
    FakeApt.trees = {pkg: tmp_path / "pkgs" / pkg, tpkg: tmp_path / "pkgs" / tpkg}
    fake = FakeApt(tmp_path)
    debs = fake.download([pkg, tpkg])
    texts = debian.read_transcripts(fake, debs, ["fr", "xx"])
    build = Build(root=tmp_path / "b")
    clips = debian.list_asterisk(build, fake, debs, ("fr",), texts)
    assert [(c.rel, c.speaker, c.text) for c in clips] == [
        (f"audio/{pkg}/p1.wav", "asterisk_june", "Bonjour tout le monde"), (f"audio/{pkg}/p2.wav", "asterisk_june",
                                                                              "Au revoir")]
    assert [c.probe() for c in clips] == [1.5, 0.5]  # 8000 bytes a second
    clips[0].write(build.root / clips[0].rel)
    out, sr = sf.read(str(build.root / clips[0].rel))
    assert sr == 16000 and len(out) == len(wave) and np.abs(out).max() > 0.1


def test_ktuberling_nn_is_cerevoice_spoof_not_bona_fide_and_klettres_nn_is_skipped(tmp_path):
    kt = tmp_path / "pkgs/ktuberling-data"
    sounds = kt / "usr/share/ktuberling/sounds"
    _ogg(sounds / "en" / "ear-ring.ogg", seed=1)
    _ogg(sounds / "da" / "ball.ogg", seed=2)
    _ogg(sounds / "sr@latin" / "oko.ogg", seed=3)
    for k, word in enumerate(("ball", "hat", "sun")):
        _ogg(sounds / "nn" / f"{word}.ogg", sr=48000, seed=20 + k)
    _copyright(kt, "ktuberling-data", "GPL-2+")
    kl = tmp_path / "pkgs/klettres-data/usr/share/klettres"
    for voice in ("fr", "nn"):
        _ogg(kl / voice / "alpha" / "a.ogg", seed=5)
        (kl / voice / "sounds.xml").write_text(f'<sound name="bra" file="{voice}/alpha/a.ogg" />'
                                               f'<sound name="BRA" file="{voice}/alpha/a.ogg" />')  # one file, 2 names
    FakeApt.trees = {"ktuberling-data": kt, "klettres-data": tmp_path / "pkgs/klettres-data"}
    fake = FakeApt(tmp_path)
    build = Build(root=tmp_path / "b")
    deb = Path("/fake/ktuberling-data_1.0_all.deb")
    clips = packs.list_ktuberling(build, fake, deb)
    assert sorted((c.speaker, c.text) for c in clips) == [("kde_da", ""), ("kde_en", "ear ring"),
                                                          ("ktuberling_sr", "")]  # keys spoken in Danish: no text
    kl_clips = debian.list_klettres(build, fake, Path("/fake/klettres-data_1.0_all.deb"), ("fr", "nn"))
    assert [(c.speaker, c.text) for c in kl_clips] == [("klettres_fr", "BRA")]  # nn (TTS) left out, the file once
    assert "klettres_nn" not in build.sources["klettres-data"].speakers
    assert packs.add_cerevoice(build, fake, deb, 2, 0.6, 8.0, np.random.default_rng(0)) == 2
    rows = build.rows
    assert {(r["speaker"], r["system"], r["label"], r["paradigm"], r["split"], r["parent"], r["language"])
            for r in rows} == {("cerevoice_hulda", "cerevoice_hulda", "spoof", "tts", "eval:unseen_tts", "", "nn")}
    assert "CereVoice" in build.sources["ktuberling-data"].speakers["cerevoice_hulda"]
    assert all((build.root / r["file"]).exists() for r in rows)


def _clip(rel: str, speaker: str, text: str, seconds: float) -> Clip:
    return Clip(rel, speaker, "en", text, "src", probe=lambda: seconds, write=lambda dst: None)


def test_selection_caps_each_speaker_prefers_transcripts_and_keeps_the_bounds():
    clips = [_clip(f"a/{k:02d}", "a", "words" if k < 5 else "", 1.0) for k in range(12)]
    clips += [_clip("a/long", "a", "long", 9.0), _clip("b/0", "b", "", 2.0), _clip("b/1", "b", "", 0.2)]
    chosen = select_clips(clips, 6, 0.6, 8.0, np.random.default_rng(1))
    by = {s: [c for c in chosen if c.speaker == s] for s in ("a", "b")}
    assert len(by["a"]) == 6 and sum(bool(c.text) for c in by["a"]) == 5  # every transcribed clip, then one more
    assert [c.rel for c in by["b"]] == ["b/0"]  # 0.2 s is out of bounds
    assert [c.rel for c in chosen] == sorted(c.rel for c in chosen)
    assert chosen == select_clips(list(reversed(clips)), 6, 0.6, 8.0, np.random.default_rng(1))


def test_speaker_merges_name_one_group_each():
    assert speaker_id("ktuberling_ru") == speaker_id("tuxpaint_be") == "buraya_ru_be"
    assert speaker_id("klettres_fr") == "klettres_fr"
    assert set(MERGES.values()) <= set(GROUPS)


def test_the_reserved_sources_are_refused_by_package_and_by_module(tmp_path, monkeypatch):
    for name in ("flite", "libflite1", "festvox-kallpc16k", "festvox-kallpc8k", "festvox-us-slt-hts", "open-jtalk",
                 "openjtalk", "alsa-utils", "pocketsphinx-en-us", "python3-pysptk", "python3-nnmnkwii"):
        assert reserved.reserved_package(name), name
        with pytest.raises(FetchError, match="reserved"):
            reserved.check_packages(["ktuberling-data", name])
    # every package the demo can fetch passes: its sources, festival's voices and libraries
    every = fd._packages(fd.FetchDemoParams(festival_voices=tuple(festival.FESTIVAL_VOICES)))[0]
    every += festival.festival_packages(tuple(festival.FESTIVAL_VOICES)) + list(festival.LIB_PACKAGES.values())
    reserved.check_packages(every)
    with pytest.raises(FetchError, match="not allowed"):
        festival.festival_packages(("kal_diphone",))
    assert reserved.loaded_reserved_modules(["numpy", "pyopenjtalk.core", "pysptk"]) == ["pyopenjtalk", "pysptk"]
    with pytest.raises(FetchError, match="pyannote"):
        reserved.check_modules(["pyannote.audio"])
    reserved.check_modules()  # nothing reserved in this test process
    monkeypatch.setattr(apt.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    calls = []
    monkeypatch.setattr(apt.Apt, "_run", lambda self, args, cwd=None: calls.append(args))
    with pytest.raises(FetchError, match="reserved"):
        apt.Apt(tmp_path).download(["festival", "flite"])
    assert calls == []  # refused before apt-get runs


def test_eval_only_attacks_speak_as_themselves_and_conversions_keep_their_speaker(tmp_path):
    sources = [tts.TextSource(f"a/{k}.wav", f"spk{k % 2}", "en", f"some words {k}") for k in range(6)]

    def synth(batch, voice):
        return [(0.3 * np.sin(np.arange(16000) * 0.05).astype(np.float32), 16000) for _ in batch]

    build = Build(root=tmp_path)
    rng = np.random.default_rng(0)
    train = tts.AttackSystem("kokoro_jf_alpha", "kokoro", {"en": "jf_alpha:en-us"}, 2)
    unseen = tts.AttackSystem("piper_joe", "piper", {"en": "joe"}, 2, "eval:unseen_tts")
    vc = tts.AttackSystem("world_vc_hifigan", "world_vc", {"en": "world"}, 2, "eval:unseen_tts", converts=True,
                          speakers=frozenset({"spk1"}))
    for spec in (train, unseen, vc):
        assert tts.make_attacks(build, spec, synth, sources, 0.5, 2.0, rng, "x") == 2
    rows = {r["system"]: [] for r in build.rows}
    for r in build.rows:
        rows[r["system"]].append(r)
    parent_speaker = {s.file: s.speaker for s in sources}
    assert all(r["speaker"] == parent_speaker[r["parent"]] for r in rows["kokoro_jf_alpha"])
    assert {r["speaker"] for r in rows["piper_joe"]} == {"piper_joe"}  # its own voice, no real speaker's id
    assert {(r["speaker"], r["paradigm"]) for r in rows["world_vc_hifigan"]} == {("spk1", "vc")}
    assert all(parent_speaker[r["parent"]] == "spk1" for r in rows["world_vc_hifigan"])


def test_v3_params_are_checked():
    with pytest.raises(ConfigError, match="unknown Kokoro voices"):
        fd.FetchDemoParams.from_params({"kokoro_voices": ["af_heart"]})
    with pytest.raises(ConfigError, match="both training and held-out"):
        fd.FetchDemoParams.from_params({"kokoro_voices": ["jf_alpha"], "kokoro_unseen_voices": ["jf_alpha"],
                                        "kokoro_unseen_voice_clips": 2})
    with pytest.raises(ConfigError, match="festival_voices"):
        fd.FetchDemoParams.from_params({"festival_voices": ["kal_diphone"]})
    with pytest.raises(ConfigError, match="max_clips_per_speaker"):
        fd.FetchDemoParams.from_params({"max_clips_per_speaker": 0})
    plan = fd.FetchDemoParams.from_params({"vc_clips": 7}, seed=3).attack_plan(threads=2)
    assert (plan.vc_clips, plan.seed, plan.threads) == (7, 3, 2)
    assert {f.name for f in dataclasses.fields(attacks.AttackPlan)} - {"threads"} <= \
        {f.name for f in dataclasses.fields(fd.FetchDemoParams)}
