"""More Debian speech for the demo corpus: the asterisk-prompt-* voice packs and ktuberling-data.

- `asterisk-prompt-<lang>-<who>[-wav]` (asterisk-prompt-es-co, -fr-armelle, -it-menardi-wav): one voice
  per pack (8 kHz .gsm prompts, decoded to 16-bit wav, or .wav), speaker `asterisk_<lang>_<who>`. The
  packs ship no transcripts: a prompt's text is that of the same prompt name in
  `asterisk-core-sounds-<lang>` (the standard wording; a pack may word a prompt slightly differently);
- `ktuberling-data`: single words recorded by volunteers, one folder per language, assumed one speaker
  per folder (`ktuberling_<lang>`); identical audio in several folders (the sr* variants) is kept
  once (sha256). Text = the word of the file name.
Reads the unpacked package trees (through an `Apt`); writes the chosen clips into the build.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.audio import write_audio
from pipeline.demo.apt import Apt, licence_from_copyright, unpack_licensed
from pipeline.demo.common import Build, FetchError, SourceInfo, copy_atomic, pick
from pipeline.demo.debian import duration

log = logging.getLogger("pipeline.fetch_demo")

KTUBERLING = "ktuberling-data"
PACK_AUDIO = (".wav", ".gsm")
KTUBERLING_AUDIO = (".ogg", ".wav", ".opus")


def pack_identity(pkg: str) -> tuple[str, str]:
    """`asterisk-prompt-it-menardi-wav` -> (`it`, `asterisk_it_menardi`): transcript language and speaker."""
    stem = pkg.removeprefix("asterisk-prompt-").removesuffix("-wav")
    parts = [p for p in stem.split("-") if p]
    if not pkg.startswith("asterisk-prompt-") or not parts:
        raise FetchError(f"{pkg!r} is not an asterisk-prompt-<lang>-<voice> package name")
    return parts[0], "asterisk_" + "_".join(re.sub(r"[^a-z0-9]+", "", p.lower()) for p in parts)


def pack_language(pkg: str) -> str:
    """The transcript language of an asterisk-prompt-* pack."""
    return pack_identity(pkg)[0]


def decode_gsm(path: Path) -> tuple[np.ndarray, int]:
    """A headerless .gsm prompt (GSM 6.10, 8 kHz) as float32 samples: prepare's reader cannot open it."""
    try:
        with sf.SoundFile(str(path)) as fh:
            wave, sr = fh.read(frames=fh.frames, dtype="float32"), fh.samplerate
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise FetchError(f"cannot decode {path.name}: {exc}") from exc
    return (wave if wave.ndim == 1 else wave.mean(axis=1)), sr


def _prompts(voice: Path) -> list[Path]:
    """The prompt files under a voice dir (symlinks left out: they point at files listed anyway)."""
    return sorted(p for p in voice.rglob("*") if p.suffix in PACK_AUDIO and p.is_file() and not p.is_symlink())


def fetch_asterisk_packs(build: Build, apt: Apt, debs: dict[str, Path], packs: tuple[str, ...], n_clips: int,
                         transcripts: dict[str, dict[str, str]], min_s: float, max_s: float,
                         rng: np.random.Generator) -> None:
    """Copy `n_clips` prompts of `min_s`-`max_s` s from each asterisk-prompt-* pack."""
    for pkg in packs:
        lang, speaker = pack_identity(pkg)
        root, copyright_text = unpack_licensed(build, apt, debs[pkg], pkg)
        sounds = root / "usr" / "share" / "asterisk" / "sounds"
        # the voice dir is the real dir with the most prompts (digits/<lang> and the like are symlinks into it)
        voice_dirs = [d for d in sorted(sounds.iterdir()) if d.is_dir() and not d.is_symlink()] \
            if sounds.exists() else []
        counts = {d: len(_prompts(d)) for d in voice_dirs}
        if not counts or max(counts.values()) == 0:
            raise FetchError(f"{pkg}: no voice directory with prompts under usr/share/asterisk/sounds/")
        voice = max(voice_dirs, key=lambda d: counts[d])
        build.sources[pkg] = SourceInfo(pkg, apt.version(debs[pkg]), licence_from_copyright(copyright_text),
                                        "Debian (apt-get download)",
                                        {speaker: f"{pkg} voice (dir {voice.name}), {lang} prompts"})
        texts = transcripts.get(lang, {})
        cands = []
        for path in _prompts(voice):
            key = path.relative_to(voice).with_suffix("").as_posix()
            if key.startswith("silence/") or not min_s <= duration(path) <= max_s:
                continue
            cands.append((key, texts.get(key, ""), path))
        chosen = pick(cands, n_clips, rng)
        for key, txt, path in chosen:
            if path.suffix == ".gsm":  # headerless GSM 6.10: libsndfile reads it only with a frame count
                rel = Path("audio") / pkg / f"{key}.wav"
                write_audio(build.root / rel, *decode_gsm(path))
            else:
                rel = Path("audio") / pkg / f"{key}{path.suffix}"
                copy_atomic(path, build.root / rel)
            build.add(str(rel), speaker, "bonafide", "-", "bonafide", lang, txt, pkg)
        log.info("%s %s: %d of %d prompts in %.1f-%.1f s (speaker %s, %d with a transcript)", pkg,
                 build.sources[pkg].version, len(chosen), len(cands), min_s, max_s, speaker,
                 sum(bool(c[1]) for c in chosen))


def ktuberling_speaker(folder: str) -> str:
    """`sr@latin` -> `ktuberling_sr_latin`."""
    return "ktuberling_" + re.sub(r"[^a-z0-9]+", "_", folder.lower()).strip("_")


def word_of(path: Path) -> str:
    """The word a ktuberling file speaks, from its name (`boucle-d-oreille.wav` -> `boucle d oreille`)."""
    return " ".join(re.split(r"[_\-\s]+", path.stem)).strip()


def fetch_ktuberling(build: Build, apt: Apt, deb: Path, clips_per_speaker: int, min_s: float, max_s: float,
                     rng: np.random.Generator) -> None:
    """Copy up to `clips_per_speaker` words of `min_s`-`max_s` s per language folder (identical audio once)."""
    root, copyright_text = unpack_licensed(build, apt, deb, KTUBERLING)
    info = SourceInfo(KTUBERLING, apt.version(deb), licence_from_copyright(copyright_text),
                      "Debian (apt-get download)")
    build.sources[KTUBERLING] = info
    base = root / "usr" / "share" / "ktuberling" / "sounds"
    if not base.is_dir():
        raise FetchError(f"{KTUBERLING}: no usr/share/ktuberling/sounds/ in the package")
    seen: set[str] = set()
    dropped = 0
    for folder in sorted(d for d in base.iterdir() if d.is_dir()):
        cands = []
        for path in sorted(p for p in folder.iterdir() if p.suffix in KTUBERLING_AUDIO and p.is_file()):
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            if sha in seen:  # the same recording in another folder (sr, sr@latin, ...) or twice in one
                dropped += 1
                continue
            seen.add(sha)
            if min_s <= duration(path) <= max_s and word_of(path):
                cands.append(path)
        chosen = pick(cands, clips_per_speaker, rng)
        if not chosen:
            continue
        speaker, lang = ktuberling_speaker(folder.name), folder.name.split("@")[0]
        info.speakers[speaker] = f"KTuberling {folder.name} voice (single words; one volunteer per language assumed)"
        for path in chosen:
            rel = Path("audio") / KTUBERLING / folder.name / path.name
            copy_atomic(path, build.root / rel)
            build.add(str(rel), speaker, "bonafide", "-", "bonafide", lang, word_of(path), KTUBERLING)
    log.info("%s %s: %d clips of %d speakers (%d duplicate recordings dropped)", KTUBERLING, info.version,
             info.clips, len(info.speakers), dropped)
