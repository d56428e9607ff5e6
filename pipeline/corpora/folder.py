"""A user's own corpus: a folder of audio files plus a CSV of labels.

Layout: <root>/<csv> (default labels.csv) with columns `file,speaker,label` and optional
`system,split` (file relative to root; label bonafide/spoof; split train/dev/test/eval:<set>, or
empty for a speaker-disjoint split made by prepare). Named by params `name` (default: folder).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.corpora.common import (
    AdapterResult,
    CorpusError,
    check_corpus_name,
    file_id_of,
    finish,
    make_clip_id,
    normalise_label,
    read_csv_rows,
    reject,
)
from pipeline.schema import split_ok


def load_folder(root: Path, csv_name: str = "labels.csv", corpus: str = "folder") -> AdapterResult:
    """Read a folder + CSV corpus into source rows."""
    root = Path(root)
    check_corpus_name(corpus)
    table = root / csv_name
    if not table.is_file():
        raise CorpusError(f"{corpus}: {table} not found (a CSV with columns file,speaker,label[,system,split])")
    rows, rejects = [], []
    for line_no, rec in read_csv_rows(table, ("file", "speaker", "label"), corpus):
        file_name = (rec.get("file") or "").strip()
        clip_id = make_clip_id(corpus, file_id_of(file_name))
        label = normalise_label(rec.get("label") or "")
        split = (rec.get("split") or "").strip() or None
        problem = ("empty file name" if not file_name else
                   f"unknown label {rec.get('label')!r}" if label is None else
                   f"unknown split {split!r}" if split is not None and not split_ok(split) else None)
        if problem:
            rejects.append(reject(corpus, f"{problem} ({csv_name} line {line_no})", clip_id, root / file_name))
            continue
        system = (rec.get("system") or "").strip()
        rows.append({
            "clip_id": clip_id, "source_path": str(root / file_name), "corpus": corpus,
            "speaker": (rec.get("speaker") or "").strip() or "unknown", "label": label,
            "system": "-" if label == "bonafide" else (system or "unknown"),
            "paradigm": "bonafide" if label == "bonafide" else "corpus", "split": split,
        })
    return finish(rows, rejects, corpus, root)
