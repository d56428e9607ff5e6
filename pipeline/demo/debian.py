"""Which clips of the Debian speech packages go into the demo corpus, and who speaks them.

- `asterisk-core-sounds-<lang>-wav` (8 kHz telephone prompts) with the transcripts of
  `asterisk-core-sounds-<lang>`: one voice per language pack, named by its sound directory;
- `klettres-data` (44.1 kHz ogg letters/syllables): one voice per language directory;
- `codec2-examples` (8 kHz test speech): one talker per named file, long files cut into segments.
Reads the unpacked package trees (through an `Apt`); writes the chosen clips into the build.
"""

from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.audio import read_audio, write_audio
from pipeline.demo.apt import Apt, licence_from_copyright, unpack_licensed
from pipeline.demo.common import Build, FetchError, SourceInfo, copy_atomic, pick, spread

log = logging.getLogger("pipeline.fetch_demo")

ASTERISK_WAV = "asterisk-core-sounds-{lang}-wav"
ASTERISK_TEXT = "asterisk-core-sounds-{lang}"
KLETTRES = "klettres-data"
CODEC2 = "codec2-examples"

# codec2-examples files that are plain speech of one named talker (file -> speaker). Left out:
# m2400/f2400 (codec2 2400 bit/s output, i.e. already coded), all.wav (a compilation), off-air HF radio
# recordings (ve9qrp, vk2tpm_004, wia), modem and sine test signals.
CODEC2_VOICES = {
    "wav/hts1a.wav": "hts1", "wav/hts2a.wav": "hts2", "wav/mmt1.wav": "mmt1", "wav/morig.wav": "morig",
    "wav/forig.wav": "forig", "wav/big_dog.wav": "big_dog", "wav/cross.wav": "cross",
    "raw/kristoff.raw": "kristoff", "wav/vk5qi.wav": "vk5qi", "wav/david4.wav": "david",
}
CODEC2_RAW_RATE = 8000  # codec2's .raw files are headerless 16-bit mono at 8 kHz



def parse_transcripts(text: str) -> dict[str, str]:
    """core-sounds-<lang>.txt -> {prompt name: text}.

    Comments and blanks are dropped, and so are annotations that are not speech (`[ascending tones]`,
    `<beep>`, `(3 seconds of silence)`); a prompt left with no words is dropped.
    """
    out = {}
    for line in text.splitlines():
        line = line.strip().lstrip("\ufeff")
        if not line or line.startswith(";") or ":" not in line:
            continue
        key, _, txt = line.partition(":")
        txt = re.sub(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)", " ", txt)
        key, txt = key.strip(), " ".join(txt.split())
        if not key or sum(ch.isalpha() for ch in txt) < 2:
            continue
        out[key] = txt
    return out


def duration(path: Path, raw_rate: int | None = None) -> float:
    """Seconds of an audio file (-1 when unreadable); headerless 16-bit when `raw_rate` is given."""
    if raw_rate is not None:
        return path.stat().st_size / 2 / raw_rate
    try:
        return float(sf.info(str(path)).duration)
    except (sf.LibsndfileError, RuntimeError):
        return -1.0


def _asterisk_speaker(voice_dir: str) -> tuple[str, str]:
    """`en_US_f_Allison` -> (`asterisk_allison`, description)."""
    parts = voice_dir.split("_")
    name = parts[-1] if parts else voice_dir
    sex = {"f": "female", "m": "male"}.get(parts[2] if len(parts) > 3 else "", "?")
    return f"asterisk_{re.sub(r'[^a-z0-9]+', '', name.lower())}", f"{name} ({sex}, voice dir {voice_dir})"


def fetch_asterisk(build: Build, apt: Apt, debs: dict[str, Path], languages: tuple[str, ...],
                   text_languages: list[str], clips_per_language: int, min_s: float, max_s: float,
                   rng: np.random.Generator) -> dict[str, dict[str, str]]:
    """Copy `clips_per_language` prompts of `min_s`-`max_s` s per language; return {lang: transcripts} for TTS."""
    transcripts: dict[str, dict[str, str]] = {}
    for lang in text_languages:
        pkg = ASTERISK_TEXT.format(lang=lang)
        if pkg not in debs:
            continue
        root = apt.extract(debs[pkg])
        txt = next(iter(sorted((root / "usr" / "share" / "doc" / pkg).glob("core-sounds-*.txt*"))), None)
        if txt is None:
            raise FetchError(f"{pkg} has no core-sounds-{lang}.txt transcript in usr/share/doc/{pkg}/")
        raw = gzip.decompress(txt.read_bytes()) if txt.suffix == ".gz" else txt.read_bytes()
        transcripts[lang] = parse_transcripts(raw.decode("utf-8-sig", errors="replace"))
    for lang in languages:
        pkg = ASTERISK_WAV.format(lang=lang)
        root, copyright_text = unpack_licensed(build, apt, debs[pkg], pkg)
        sounds = root / "usr" / "share" / "asterisk" / "sounds"
        voice_dirs = sorted(d for d in sounds.iterdir() if d.is_dir()) if sounds.exists() else []
        if not voice_dirs:
            raise FetchError(f"{pkg}: no voice directory under usr/share/asterisk/sounds/")
        voice = voice_dirs[0]
        speaker, desc = _asterisk_speaker(voice.name)
        build.sources[pkg] = SourceInfo(pkg, apt.version(debs[pkg]),
                                        licence_from_copyright(copyright_text, hint=f"{lang}-prompt"),
                                        "Debian (apt-get download)", {speaker: desc})
        texts = transcripts.get(lang, {})
        cands = []
        for key, txt in sorted(texts.items()):
            wav = voice / f"{key}.wav"
            if key.startswith("silence/") or not wav.exists():
                continue
            if min_s <= duration(wav) <= max_s:
                cands.append((key, txt, wav))
        chosen = pick(cands, clips_per_language, rng)
        for key, txt, wav in chosen:
            rel = Path("audio") / pkg / f"{key}.wav"
            copy_atomic(wav, build.root / rel)
            build.add(str(rel), speaker, "bonafide", "-", "bonafide", lang, txt, pkg)
        log.info("%s %s: %d of %d prompts in %.1f-%.1f s (speaker %s)", pkg, build.sources[pkg].version,
                 len(chosen), len(cands), min_s, max_s, speaker)
    return transcripts


def fetch_klettres(build: Build, apt: Apt, deb: Path, voices: tuple[str, ...], n_clips: int, min_s: float,
                   max_s: float, rng: np.random.Generator) -> None:
    """Copy `n_clips` ogg letters/syllables of `min_s`-`max_s` s spread over the voice dirs `voices`."""
    root, copyright_text = unpack_licensed(build, apt, deb, KLETTRES)
    info = SourceInfo(KLETTRES, apt.version(deb), licence_from_copyright(copyright_text, hint="sounds/x.ogg"),
                      "Debian (apt-get download)")
    build.sources[KLETTRES] = info
    base = root / "usr" / "share" / "klettres"
    wanted = voices
    voices = tuple(v for v in wanted if (base / v / "sounds.xml").exists())
    missing = sorted(set(wanted) - set(voices))
    if missing:
        log.warning("klettres-data has no voice dirs %s (have: %s)", missing,
                    sorted(d.name for d in base.iterdir() if (d / "sounds.xml").exists()))
    per_voice = spread(n_clips, len(voices))
    for voice, n in zip(voices, per_voice):
        xml = (base / voice / "sounds.xml").read_text(encoding="utf-8", errors="replace")
        cands = []
        for name, file in sorted(set(re.findall(r'<sound\s+name="([^"]*)"\s+file="([^"]*)"', xml))):
            path = base / file
            # keep only the voice's own recordings (some sounds.xml point into another language's dir)
            if file.split("/")[0] == voice and path.exists() and \
                    min_s <= duration(path) <= max_s:
                cands.append((file, name, path))
        cands.sort()
        chosen = pick(cands, n, rng)
        speaker = f"klettres_{voice}"
        if chosen:
            info.speakers[speaker] = f"KLettres {voice} voice (letters and syllables)"
        for file, name, path in chosen:
            rel = Path("audio") / KLETTRES / file
            copy_atomic(path, build.root / rel)
            build.add(str(rel), speaker, "bonafide", "-", "bonafide", voice, name, KLETTRES)
        log.info("%s %s: %d of %d clips in %.1f-%.1f s", KLETTRES, voice, len(chosen), len(cands),
                 min_s, max_s)


def fetch_codec2(build: Build, apt: Apt, deb: Path, segments_per_file: int, min_s: float, max_s: float) -> None:
    """Write the named codec2-examples talkers as wav (files over `max_s` cut into `segments_per_file` segments)."""
    root, copyright_text = unpack_licensed(build, apt, deb, CODEC2)
    info = SourceInfo(CODEC2, apt.version(deb), licence_from_copyright(copyright_text, hint="wav/x.wav"),
                      "Debian (apt-get download)")
    build.sources[CODEC2] = info
    base = root / "usr" / "share" / "codec2"
    seg_s = min(max_s, max(min_s, 4.0))
    for file, name in CODEC2_VOICES.items():
        path = base / file
        if not path.exists():
            log.warning("codec2-examples: %s not in this version, skipped", file)
            continue
        if path.suffix == ".raw":
            wave = np.frombuffer(path.read_bytes()[: path.stat().st_size // 2 * 2], dtype="<i2")
            wave, sr = wave.astype(np.float32) / 32768.0, CODEC2_RAW_RATE
        else:
            wave, sr = read_audio(path)
        dur = len(wave) / sr
        if dur < min_s:
            continue
        if dur <= max_s:
            segments = [wave]
        else:
            n = int(seg_s * sr)
            segments = [wave[i: i + n] for i in range(0, len(wave) - n + 1, n)][:segments_per_file]
        speaker = f"codec2_{name}"
        info.speakers[speaker] = f"talker of codec2 example {file}"
        for k, seg in enumerate(segments):
            stem = Path(file).stem if len(segments) == 1 else f"{Path(file).stem}_{k}"
            rel = Path("audio") / CODEC2 / f"{stem}.wav"
            write_audio(build.root / rel, seg, sr)
            build.add(str(rel), speaker, "bonafide", "-", "bonafide", "en", "", CODEC2)
    log.info("%s %s: %d clips of %d talkers", CODEC2, info.version, info.clips, len(info.speakers))
