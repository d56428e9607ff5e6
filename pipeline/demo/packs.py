"""More Debian speech: the asterisk-prompt-* voice packs and ktuberling-data (and the TTS hidden in it).

- `asterisk-prompt-<lang>-<who>[-wav]` (asterisk-prompt-es-co, -fr-armelle, -it-menardi-wav): one voice
  per pack (8 kHz telephone .gsm prompts, decoded to 16-bit wav, or .wav), speaker `asterisk_<lang>_<who>`.
  The packs ship no transcripts: a prompt's text is that of the same prompt name in
  `asterisk-core-sounds-<lang>` (the standard wording; a pack may word a prompt slightly differently);
- `ktuberling-data`: single words recorded by volunteers, one folder per language, one speaker per folder
  (`ktuberling_<lang>`, the sr@latin-like variants of a language being one recording set; merges in
  pipeline.demo.speakers); identical audio in several folders is kept once (sha256). The file name is the
  word's English key (`pizzeria_olive`), spoken in the folder's language, so only the English folder has a
  transcript. The `nn` folder is not human: KDE's sounds/nn/README.md says it was generated with the
  commercial CereVoice Cloud TTS (voice Hulda-CereWave); `add_cerevoice` makes it the spoof system
  `cerevoice_hulda` (eval:unseen_tts), with no parent: no bona fide clip says the same Nynorsk word.
Reads the unpacked package trees (through an `Apt`); returns `Clip`s, writes the CereVoice clips it keeps.
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
from pipeline.demo.common import UNSEEN_SPLIT, Build, Clip, FetchError, SourceInfo, copier, copy_atomic, pick
from pipeline.demo.debian import duration
from pipeline.demo.speakers import describe

log = logging.getLogger("pipeline.fetch_demo")

KTUBERLING = "ktuberling-data"
PACK_AUDIO = (".wav", ".gsm")
KTUBERLING_AUDIO = (".ogg", ".wav", ".opus")
KTUBERLING_TTS = {"nn": ("cerevoice_hulda", "CereVoice Hulda-CereWave (commercial neural TTS, CereVoice Cloud), "
                                            "pre-rendered Nynorsk words of ktuberling's nn folder")}
TEXT_LANGUAGES = ("en",)  # ktuberling folders whose file names are the words spoken


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


def list_asterisk_packs(build: Build, apt: Apt, debs: dict[str, Path], packs: tuple[str, ...],
                        transcripts: dict[str, dict[str, str]]) -> list[Clip]:
    """The prompts of each asterisk-prompt-* pack (GSM decoded to wav when chosen)."""
    clips = []
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
        for path in _prompts(voice):
            key = path.relative_to(voice).with_suffix("").as_posix()
            if key.startswith("silence/"):
                continue
            if path.suffix == ".gsm":  # headerless GSM 6.10: libsndfile reads it only with a frame count
                rel, write = Path("audio") / pkg / f"{key}.wav", lambda dst, p=path: write_audio(dst, *decode_gsm(p))
            else:
                rel, write = Path("audio") / pkg / f"{key}{path.suffix}", copier(path)
            clips.append(Clip(str(rel), speaker, lang, texts.get(key, ""), pkg, probe=lambda p=path: duration(p),
                              write=write))
    return clips


def ktuberling_speaker(folder: str) -> str:
    """`sr@latin` -> `ktuberling_sr` (a language's script variants are one recording set)."""
    return "ktuberling_" + re.sub(r"[^a-z0-9]+", "_", folder.split("@")[0].lower()).strip("_")


def word_of(path: Path) -> str:
    """The word key of a ktuberling file name (`boucle-d-oreille.wav` -> `boucle d oreille`)."""
    return " ".join(re.split(r"[_\-\s]+", path.stem)).strip()


def _ktuberling_files(base: Path) -> dict[str, list[Path]]:
    """{folder: its audio files}, a recording already seen in an earlier folder (or twice in one) left out."""
    seen: set[str] = set()
    out: dict[str, list[Path]] = {}
    for folder in sorted(d for d in base.iterdir() if d.is_dir()):
        for path in sorted(p for p in folder.iterdir() if p.suffix in KTUBERLING_AUDIO and p.is_file()):
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            if sha not in seen:
                seen.add(sha)
                out.setdefault(folder.name, []).append(path)
    return out


def _ktuberling(build: Build, apt: Apt, deb: Path) -> tuple[dict[str, list[Path]], SourceInfo]:
    """ktuberling-data unpacked (once) and registered in SOURCES: ({folder: audio files}, its SOURCES entry)."""
    root, copyright_text = unpack_licensed(build, apt, deb, KTUBERLING)
    if KTUBERLING not in build.sources:
        build.sources[KTUBERLING] = SourceInfo(KTUBERLING, apt.version(deb), licence_from_copyright(copyright_text),
                                               "Debian (apt-get download)")
    base = root / "usr" / "share" / "ktuberling" / "sounds"
    if not base.is_dir():
        raise FetchError(f"{KTUBERLING}: no usr/share/ktuberling/sounds/ in the package")
    return _ktuberling_files(base), build.sources[KTUBERLING]


def list_ktuberling(build: Build, apt: Apt, deb: Path) -> list[Clip]:
    """The human word recordings of every folder but the TTS ones (KTUBERLING_TTS)."""
    files, info = _ktuberling(build, apt, deb)
    clips = []
    for folder, paths in files.items():
        lang = folder.split("@")[0]
        if lang in KTUBERLING_TTS:
            continue
        speaker, desc = describe(ktuberling_speaker(folder),
                                 f"KTuberling {lang} voice (single words; one volunteer per language assumed)")
        info.speakers[speaker] = desc
        for path in paths:
            clips.append(Clip(str(Path("audio") / KTUBERLING / folder / path.name), speaker, lang,
                              word_of(path) if lang in TEXT_LANGUAGES else "", KTUBERLING,
                              probe=lambda p=path: duration(p), write=copier(path)))
    return clips


def add_cerevoice(build: Build, apt: Apt, deb: Path, n_clips: int, min_s: float, max_s: float,
                  rng: np.random.Generator) -> int:
    """Copy up to `n_clips` of ktuberling's TTS words (`min_s`-`max_s` s) as unseen spoof rows; -> clips kept."""
    files, info = _ktuberling(build, apt, deb)
    kept = 0
    for folder, (system, desc) in KTUBERLING_TTS.items():
        cands = [p for p in files.get(folder, []) if min_s <= duration(p) <= max_s]
        chosen = pick(cands, n_clips, rng)
        if chosen:
            info.speakers[system] = (f"{desc}: spoof system {system} ({UNSEEN_SPLIT}), no parent (no bona fide "
                                     "clip says the same word)")
        for path in chosen:
            rel = Path("audio") / KTUBERLING / folder / path.name
            copy_atomic(path, build.root / rel)
            build.add(str(rel), system, "spoof", system, "tts", folder, "", KTUBERLING, split=UNSEEN_SPLIT)
            kept += 1
    return kept
