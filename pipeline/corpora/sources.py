"""Small pieces the newer corpus adapters share: a source row, root/protocol checks, file listing.

Generic only (no corpus knowledge): each adapter module keeps its own layout and parsing.
A corpus fake that the corpus made from a real utterance (a vocoded, codec-resynthesised or
TTS-of-its-text copy) names that utterance's clip id as `parent_id`, and carries its speaker, so
that prepare's speaker-disjoint split keeps a fake with its parent.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.corpora.common import AUDIO_EXTENSIONS


def source_row(corpus: str, clip_id: str, path: Path | str, speaker: str, label: str, system: str = "-",
               split: str | None = None, parent_id: str | None = None) -> dict:
    """One adapter row: bona fide rows get system `-`, paradigm `bonafide` and no parent."""
    bona = label == "bonafide"
    return {"clip_id": clip_id, "source_path": str(path), "corpus": corpus, "speaker": speaker or "unknown",
            "label": label, "system": "-" if bona else (system or "unknown"),
            "paradigm": "bonafide" if bona else "corpus", "split": split,
            "parent_id": None if bona else parent_id}


def require_dir(path: Path, corpus: str, what: str) -> Path:
    """`path` when it is a folder; else FileNotFoundError saying what was expected there."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{corpus}: {what} {path} is not a folder (wrong root?)")
    return path


def first_existing(candidates: list[Path], corpus: str, what: str) -> Path:
    """The first of `candidates` that exists; else FileNotFoundError listing where it was looked for."""
    for path in candidates:
        if path.exists():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(f"{corpus}: {what} not found (looked for {tried})")


def join_inside(base: Path, rel: str) -> Path:
    """base / rel for a path a corpus file names; ValueError when it is absolute or climbs out (`..`)."""
    path = Path(os.path.normpath(Path(base) / rel))
    if Path(rel).is_absolute() or not path.is_relative_to(os.path.normpath(base)):
        raise ValueError(f"path {rel!r} leaves {base}")
    return path


def audio_files(folder: Path, recursive: bool = False) -> list[Path]:
    """Audio files in `folder` (any known extension, case-insensitive), sorted for stable row order."""
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in Path(folder).glob(pattern) if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def as_set(values: str | list | tuple | None) -> set[str] | None:
    """A params filter (one value or a list; null = no filter) as a set of strings."""
    if values is None:
        return None
    return {str(values)} if isinstance(values, str) else {str(v) for v in values}
