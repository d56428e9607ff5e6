"""WaveFake (Frank & Schönherr, NeurIPS 2021 datasets track): LJSpeech and JSUT re-synthesised by
vocoders, with the LJSpeech-1.1 / JSUT corpora as its bona fide side.

Licence: WaveFake as its Zenodo record states (CC BY-SA 4.0, not verified here); LJSpeech public
domain; JSUT audio for research / personal use only (non-commercial; not verified here).
URL: https://zenodo.org/record/5642694 and https://github.com/RUB-SysSec/WaveFake
Layout: <root>[/generated_audio]/<corpus>_<vocoder>/ (ljspeech_melgan, ljspeech_melgan_large,
ljspeech_full_band_melgan, ljspeech_multi_band_melgan, ljspeech_parallel_wavegan, ljspeech_hifiGAN,
ljspeech_waveglow, jsut_multi_band_melgan, jsut_parallel_wavegan) with files named after the real
utterance: `LJ001-0001_gen.wav`, `LJ001-0001_generated.wav` (hifiGAN) or the bare id (waveglow),
`BASIC5000_0001_gen.wav` (JSUT); plus the TTS folder
`common_voices_prompts_from_conformer_fastspeech2_pwg_ljspeech` (LJ voice, Common Voice texts: no
parent). The label is the folder; the folder name is the system (it names vocoder and training
corpus); the utterance id links a vocoded fake to its real parent. Bona fide: `ljspeech_root`
(LJSpeech-1.1, wavs/*.wav) and `jsut_root` (jsut_ver1.1, <subset>/wav/*.wav), given separately.
WaveFake has no official split: each corpus is one speaker, so prepare's speaker split puts a
corpus whole into one split; `eval_systems` holds folders out as `eval:wavefake` (the paper's
train-on-one-vocoder, test-on-the-others protocol).
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.corpora.common import AdapterResult, finish, make_clip_id, reject
from pipeline.corpora.sources import as_set, audio_files, require_dir, source_row

CORPUS = "wavefake"
SOURCES = {"ljspeech": "LJ", "jsut": "jsut"}  # folder prefix -> speaker (each corpus is one speaker)
TTS_FOLDER = "common_voices_prompts_from_conformer_fastspeech2_pwg_ljspeech"
UTTERANCE = {"ljspeech": re.compile(r"LJ\d{3}-\d{4}"), "jsut": re.compile(r"[A-Z0-9]+_\d{4}")}
SUFFIXES = ("_generated", "_gen")


def utterance_id(stem: str) -> str:
    """The real utterance id of a WaveFake file stem (drops `_gen` / `_generated`)."""
    for suffix in SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def folder_source(name: str) -> str | None:
    """`ljspeech` or `jsut` for a WaveFake folder (the TTS folder speaks with the LJ voice), else None."""
    if name == TTS_FOLDER:
        return "ljspeech"
    return next((s for s in SOURCES if name.startswith(s + "_")), None)


def bona_fide_files(source: str, root: Path) -> list[Path]:
    """The real utterances of LJSpeech-1.1 (wavs/) or JSUT (<subset>/wav/)."""
    if source == "ljspeech":
        return audio_files(root / "wavs" if (root / "wavs").is_dir() else root)
    return sorted(p for p in root.glob("*/wav/*.wav") if p.is_file()) or audio_files(root)


def load_wavefake(root: Path, ljspeech_root: Path | None = None, jsut_root: Path | None = None,
                  systems: list[str] | None = None, eval_systems: list[str] | None = None) -> AdapterResult:
    """Read WaveFake's vocoder folders (and the bona fide roots given) into source rows."""
    root = require_dir(Path(root), CORPUS, "root")
    base = root / "generated_audio" if (root / "generated_audio").is_dir() else root
    keep, held_out = as_set(systems), as_set(eval_systems) or set()
    folders = sorted(d for d in base.iterdir() if d.is_dir() and (keep is None or d.name in keep))
    if not any(folder_source(d.name) for d in folders):
        raise FileNotFoundError(f"{CORPUS}: no <corpus>_<vocoder> folders (ljspeech_melgan, ...) in {base}")
    unknown = ((keep or set()) | held_out) - {d.name for d in base.iterdir() if d.is_dir()}
    if unknown:
        raise ValueError(f"{CORPUS}: systems {sorted(unknown)} not found in {base}")
    rows, rejects = [], []
    for folder in folders:
        source = folder_source(folder.name)
        if source is None:
            rejects.append(reject(CORPUS, f"unknown WaveFake folder {folder.name!r} (not ljspeech_*/jsut_*)",
                                  path=folder))
            continue
        split = f"eval:{CORPUS}" if folder.name in held_out else None
        for path in audio_files(folder):
            utt = utterance_id(path.stem)
            has_parent = folder.name != TTS_FOLDER and UTTERANCE[source].fullmatch(utt) is not None
            parent = make_clip_id(CORPUS, f"{source}_{utt}") if has_parent else None
            rows.append(source_row(CORPUS, make_clip_id(CORPUS, f"{folder.name}_{utt}"), path, SOURCES[source],
                                   "spoof", folder.name, split, parent))
    for source, bona_root in (("ljspeech", ljspeech_root), ("jsut", jsut_root)):
        if bona_root is None:
            continue
        bona_root = require_dir(Path(bona_root), CORPUS, f"{source}_root")
        files = bona_fide_files(source, bona_root)
        if not files:
            raise FileNotFoundError(f"{CORPUS}: no audio in {source}_root {bona_root}")
        rows += [source_row(CORPUS, make_clip_id(CORPUS, f"{source}_{p.stem}"), p, SOURCES[source], "bonafide")
                 for p in files]
    return finish(rows, rejects, CORPUS)
