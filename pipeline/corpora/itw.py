"""In-the-Wild (Müller et al., Interspeech 2022): real and deepfake speech of public figures.

Licence: Apache-2.0 (per the release page). URL: https://deepfake-total.com/in_the_wild
Layout: <root>/meta.csv with columns `file,speaker,label` (labels `bona-fide` / `spoof`) and the
wav files beside it. The whole corpus is an out-of-domain evaluation set: `eval:itw`.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.corpora.common import AdapterResult, finish, make_clip_id, normalise_label, reject

CORPUS = "itw"


def load_itw(root: Path) -> AdapterResult:
    """Read In-the-Wild's meta.csv into source rows."""
    root = Path(root)
    meta = root / "meta.csv"
    if not meta.exists():
        raise FileNotFoundError(f"{CORPUS}: {meta} not found")
    rows, rejects = [], []
    with meta.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"file", "speaker", "label"} <= set(reader.fieldnames or []):
            raise ValueError(f"{meta}: expected columns file,speaker,label, got {reader.fieldnames}")
        for line_no, rec in enumerate(reader, start=2):
            clip_id = make_clip_id(CORPUS, str(Path(rec["file"]).with_suffix("")) if rec["file"] else "")
            label = normalise_label(rec["label"])
            if not rec["file"] or label is None:
                why = "empty file name" if not rec["file"] else f"unknown label {rec['label']!r}"
                rejects.append(reject(CORPUS, f"{why} (meta.csv line {line_no})", clip_id, root / (rec["file"] or "")))
                continue
            rows.append({
                "clip_id": clip_id, "source_path": str(root / rec["file"]), "corpus": CORPUS,
                "speaker": rec["speaker"] or "unknown", "label": label,
                "system": "-" if label == "bonafide" else "itw_unknown",
                "paradigm": "bonafide" if label == "bonafide" else "corpus", "split": f"eval:{CORPUS}",
            })
    return finish(rows, rejects, CORPUS)
