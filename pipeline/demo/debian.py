"""Which clips of the Debian speech packages the demo corpus offers, and who speaks them.

- `asterisk-core-sounds-<lang>-g722` (wideband G.722 prompts, decoded to 16 kHz wav with the G722 wheel) with
  the transcripts of `asterisk-core-sounds-<lang>`: one voice per language pack, named by its sound directory;
- `klettres-data` (44.1 kHz ogg letters/syllables): one voice per language directory (`nn` left out: its
  sounds.xml names CereVoice TTS files, which the package does not ship);
- `codec2-examples` (8 kHz test speech): one talker per named file, long files cut into segments.
The list functions read the unpacked package trees (through an `Apt`) and return `Clip`s; only the clips the
per-speaker selection (pipeline.demo.common.select_clips) picks are written into the build.
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
from pipeline.demo.common import Build, Clip, FetchError, SourceInfo, copier
from pipeline.demo.speakers import describe

log = logging.getLogger("pipeline.fetch_demo")

ASTERISK_AUDIO = "asterisk-core-sounds-{lang}-g722"
ASTERISK_TEXT = "asterisk-core-sounds-{lang}"
KLETTRES = "klettres-data"
CODEC2 = "codec2-examples"
G722_RATE, G722_BYTES_PER_S = 16000, 8000  # G.722 at 64 kbit/s: 16 kHz audio, 8000 bytes a second
KLETTRES_TTS = ("nn",)  # voice dirs whose sounds are text-to-speech, not recordings

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


def decode_g722(path: Path) -> np.ndarray:
    """A headerless 64 kbit/s G.722 file (asterisk's .g722) as float32 samples at 16 kHz (a fresh decoder each)."""
    try:
        import G722
    except ImportError as exc:
        raise FetchError("the asterisk G.722 prompts need the G722 wheel: pip install G722==1.2.8") from exc
    pcm = np.asarray(G722.G722(G722_RATE, 64000).decode(path.read_bytes()), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


def read_transcripts(apt: Apt, debs: dict[str, Path], languages: list[str]) -> dict[str, dict[str, str]]:
    """{lang: {prompt name: text}} from the core-sounds-<lang>.txt of each `asterisk-core-sounds-<lang>` given."""
    transcripts: dict[str, dict[str, str]] = {}
    for lang in languages:
        pkg = ASTERISK_TEXT.format(lang=lang)
        if pkg not in debs:
            continue
        root = apt.extract(debs[pkg])
        txt = next(iter(sorted((root / "usr" / "share" / "doc" / pkg).glob("core-sounds-*.txt*"))), None)
        if txt is None:
            raise FetchError(f"{pkg} has no core-sounds-{lang}.txt transcript in usr/share/doc/{pkg}/")
        raw = gzip.decompress(txt.read_bytes()) if txt.suffix == ".gz" else txt.read_bytes()
        transcripts[lang] = parse_transcripts(raw.decode("utf-8-sig", errors="replace"))
    return transcripts


def list_asterisk(build: Build, apt: Apt, debs: dict[str, Path], languages: tuple[str, ...],
                  transcripts: dict[str, dict[str, str]]) -> list[Clip]:
    """The G.722 prompts with a transcript of each language pack (written as 16 kHz wav when chosen)."""
    clips = []
    for lang in languages:
        pkg = ASTERISK_AUDIO.format(lang=lang)
        root, copyright_text = unpack_licensed(build, apt, debs[pkg], pkg)
        sounds = root / "usr" / "share" / "asterisk" / "sounds"
        voice_dirs = sorted(d for d in sounds.iterdir() if d.is_dir()) if sounds.exists() else []
        if not voice_dirs:
            raise FetchError(f"{pkg}: no voice directory under usr/share/asterisk/sounds/")
        voice = voice_dirs[0]
        speaker, desc = _asterisk_speaker(voice.name)
        build.sources[pkg] = SourceInfo(pkg, apt.version(debs[pkg]),
                                        licence_from_copyright(copyright_text, hint=f"{lang}-prompt"),
                                        "Debian (apt-get download); G.722 decoded to 16 kHz wav", {speaker: desc})
        found = 0
        for key, txt in sorted(transcripts.get(lang, {}).items()):
            path = voice / f"{key}.g722"
            if key.startswith("silence/") or not path.is_file():
                continue
            found += 1
            clips.append(Clip(str(Path("audio") / pkg / f"{key}.wav"), speaker, lang, txt, pkg,
                              probe=lambda p=path: p.stat().st_size / G722_BYTES_PER_S,
                              write=lambda dst, p=path: write_audio(dst, decode_g722(p), G722_RATE)))
        log.info("%s %s: %d prompts with a transcript (speaker %s)", pkg, build.sources[pkg].version, found, speaker)
    return clips


def list_klettres(build: Build, apt: Apt, deb: Path, voices: tuple[str, ...]) -> list[Clip]:
    """The ogg letters/syllables of the voice dirs `voices` (text: the letter or syllable of sounds.xml)."""
    root, copyright_text = unpack_licensed(build, apt, deb, KLETTRES)
    info = SourceInfo(KLETTRES, apt.version(deb), licence_from_copyright(copyright_text, hint="sounds/x.ogg"),
                      "Debian (apt-get download)")
    build.sources[KLETTRES] = info
    base = root / "usr" / "share" / "klettres"
    have = sorted(d.name for d in base.iterdir() if (d / "sounds.xml").exists()) if base.is_dir() else []
    missing = sorted(set(voices) - set(have))
    if missing:
        log.warning("klettres-data has no voice dirs %s (have: %s)", missing, have)
    clips = []
    for voice in (v for v in voices if v in have and v not in KLETTRES_TTS):
        xml = (base / voice / "sounds.xml").read_text(encoding="utf-8", errors="replace")
        speaker, desc = describe(f"klettres_{voice}", f"KLettres {voice} voice (letters and syllables)")
        info.speakers[speaker] = desc
        seen: set[str] = set()  # a file listed under two names (lt has one) is one clip, with its first name
        for name, file in sorted(set(re.findall(r'<sound\s+name="([^"]*)"\s+file="([^"]*)"', xml))):
            path = base / file
            # keep only the voice's own recordings (some sounds.xml point into another language's dir)
            if file.split("/")[0] == voice and path.is_file() and file not in seen:
                seen.add(file)
                clips.append(Clip(str(Path("audio") / KLETTRES / file), speaker, voice, name, KLETTRES,
                                  probe=lambda p=path: duration(p), write=copier(path)))
    return clips


def list_codec2(build: Build, apt: Apt, deb: Path, segments_per_file: int, min_s: float, max_s: float) -> list[Clip]:
    """The named codec2-examples talkers as wav clips (files over `max_s` cut into `segments_per_file` segments)."""
    root, copyright_text = unpack_licensed(build, apt, deb, CODEC2)
    info = SourceInfo(CODEC2, apt.version(deb), licence_from_copyright(copyright_text, hint="wav/x.wav"),
                      "Debian (apt-get download)")
    build.sources[CODEC2] = info
    base = root / "usr" / "share" / "codec2"
    seg_s = min(max_s, max(min_s, 4.0))
    clips = []
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
        if len(wave) <= max_s * sr:
            segments = [wave]
        else:
            n = int(seg_s * sr)
            segments = [wave[i: i + n] for i in range(0, len(wave) - n + 1, n)][:segments_per_file]
        speaker = f"codec2_{name}"
        info.speakers[speaker] = f"talker of codec2 example {file}"
        for k, seg in enumerate(segments):
            stem = Path(file).stem if len(segments) == 1 else f"{Path(file).stem}_{k}"
            clips.append(Clip(str(Path("audio") / CODEC2 / f"{stem}.wav"), speaker, "en", "", CODEC2,
                              probe=lambda w=seg, r=sr: len(w) / r,
                              write=lambda dst, w=seg, r=sr: write_audio(dst, w, r)))
    return clips
