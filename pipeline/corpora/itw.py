"""In-the-Wild (Müller et al., Interspeech 2022): real and deepfake speech of public figures.

Licence: Apache-2.0 (per the release page). URL: https://deepfake-total.com/in_the_wild
Layout: <root>/meta.csv with columns `file,speaker,label` (labels `bona-fide` / `spoof`) and the
wav files beside it. The whole corpus is an out-of-domain evaluation set: `eval:itw`.
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

CORPUS = "itw"


def load_itw(root: Path) -> AdapterResult:
    """Read In-the-Wild's meta.csv into source rows."""
    root = Path(root)
    meta = root / "meta.csv"
    if not meta.is_file():
        raise CorpusError(f"{CORPUS}: {meta} not found (root must be the release_in_the_wild folder holding "
                          "meta.csv and the wavs)")
    rows, rejects = [], []
    for line_no, rec in read_csv_rows(meta, ("file", "speaker", "label"), CORPUS):
        file_name = rec["file"].strip()
        clip_id = make_clip_id(CORPUS, file_id_of(file_name))
        label = normalise_label(rec["label"])
        if not file_name or label is None:
            why = "empty file name" if not file_name else f"unknown label {rec['label']!r}"
            rejects.append(reject(CORPUS, f"{why} (meta.csv line {line_no})", clip_id, root / file_name))
            continue
        rows.append({
            "clip_id": clip_id, "source_path": str(root / file_name), "corpus": CORPUS,
            "speaker": rec["speaker"] or "unknown", "label": label,
            "system": "-" if label == "bonafide" else "itw_unknown",
            "paradigm": "bonafide" if label == "bonafide" else "corpus", "split": f"eval:{CORPUS}",
        })
    return finish(rows, rejects, CORPUS, root)
