"""Shared pieces of the corpus adapters: the adapter result, id making, label words, fix + validate."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.schema import SOURCE_COLUMNS, fix_clips, validate_sources

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".au", ".raw", ".sln")

# Label words seen in the corpora we read, mapped to the ASVspoof words the clip table allows.
LABEL_WORDS = {"bonafide": "bonafide", "bona-fide": "bonafide", "bona_fide": "bonafide", "spoof": "spoof"}


@dataclass
class AdapterResult:
    """What an adapter returns: its source rows and the rows it could not use (with reasons)."""

    sources: pd.DataFrame
    rejects: list[dict] = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        return len(self.rejects)


def make_clip_id(corpus: str, file_id: str) -> str:
    """A stable clip id: corpus + the corpus' own file id, reduced to [A-Za-z0-9_.-]."""
    return f"{corpus}_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", file_id).strip("_")


def normalise_label(word: str) -> str | None:
    """The ASVspoof word for a corpus' label, or None when it is not one we know."""
    return LABEL_WORDS.get(str(word).strip().lower())


def reject(corpus: str, reason: str, clip_id: str | None = None, path: str | Path | None = None) -> dict:
    """A rejects-table row from an adapter."""
    return {"clip_id": clip_id, "path": None if path is None else str(path), "corpus": corpus,
            "stage": "prepare", "reason": reason}


def finish(rows: list[dict], rejects: list[dict], corpus: str) -> AdapterResult:
    """Drop missing files and duplicate ids (as rejects), validate, and return the adapter result."""
    df = pd.DataFrame(rows, columns=list(SOURCE_COLUMNS))
    exists = df["source_path"].map(lambda p: Path(p).is_file()) if len(df) else pd.Series(dtype=bool)
    for _, row in df[~exists].iterrows():
        log.warning("%s: missing file %s", corpus, row["source_path"])
        rejects.append(reject(corpus, "missing file", row["clip_id"], row["source_path"]))
    df, dropped = fix_clips(df[exists].reset_index(drop=True)) if len(df) else (df, df.assign(reason=[]))
    for _, row in dropped.iterrows():
        rejects.append(reject(corpus, row["reason"], row["clip_id"], row["source_path"]))
    if rejects:
        log.warning("%s: %d source rows skipped", corpus, len(rejects))
    return AdapterResult(validate_sources(df, corpus), rejects)
