"""The embedded demo corpus built by `fetch_demo` (data/raw/demo/).

Bona fide speech from Debian packages (asterisk-core-sounds-*-wav, klettres-data, codec2-examples;
CC-BY-SA / GPL, see data/raw/demo/SOURCES) and offline TTS attacks (piper, espeak-ng) made from
their transcripts. metadata.csv: file,speaker,label,system,paradigm,language,text,source.
The corpus has no official split: bona fide clips get a speaker-disjoint split in prepare, and the
TTS attacks form the unseen-attack evaluation set `eval:tts`.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.corpora.common import (
    AdapterResult,
    CorpusError,
    file_id_of,
    finish,
    make_clip_id,
    normalise_label,
    read_csv_rows,
    reject,
)

CORPUS = "demo"
REQUIRED = ("file", "speaker", "label", "system", "paradigm")


def load_demo(root: Path) -> AdapterResult:
    """Read data/raw/demo/metadata.csv into source rows."""
    root = Path(root)
    meta = root / "metadata.csv"
    if not meta.is_file():
        raise CorpusError(f"{meta} not found: run `python -m pipeline fetch_demo` (or `dvc repro fetch_demo`)")
    rows, rejects = [], []
    for line_no, rec in read_csv_rows(meta, REQUIRED, CORPUS):
        file_id = file_id_of(rec["file"])
        clip_id = make_clip_id(CORPUS, file_id)
        label = normalise_label(rec["label"])
        if label is None or not rec["speaker"]:
            why = f"unknown label {rec['label']!r}" if label is None else "empty speaker"
            rejects.append(reject(CORPUS, f"{why} (metadata.csv line {line_no})", clip_id, root / rec["file"]))
            continue
        paradigm = "bonafide" if label == "bonafide" else (rec["paradigm"] or "tts")
        rows.append({
            "clip_id": clip_id, "source_path": str(root / rec["file"]), "corpus": CORPUS,
            "speaker": rec["speaker"], "label": label,
            "system": "-" if label == "bonafide" else rec["system"], "paradigm": paradigm,
            "split": None if label == "bonafide" else "eval:tts",
        })
    return finish(rows, rejects, CORPUS, root)
