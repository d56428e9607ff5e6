"""The embedded demo corpus built by `fetch_demo` (data/raw/demo/).

Bona fide speech from Debian packages (asterisk prompts, Tux Paint, Fish Fillets, klettres, ktuberling,
0 A.D., Warzone 2100, codec2; see data/raw/demo/SOURCES) and offline attacks made from their transcripts
(TTS) or their audio (voice conversion, paradigm `vc`).
metadata.csv: file,speaker,label,system,paradigm,language,text,source,split,parent.

The corpus has no official split. A row with an empty `split` gets prepare's speaker-disjoint split
(bona fide clips and the training TTS attacks, which take their source clip's speaker, so an attack
lands in its source speaker's split); `eval:<set>` rows (the unseen attacks, `eval:unseen_tts`) are
evaluation-only. `parent` (the bona fide file an attack re-speaks or converts) becomes that clip's parent_id.
A metadata.csv of format 2 (no split column) keeps its old rule: every spoof row is `eval:tts`.
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
from pipeline.schema import split_ok

CORPUS = "demo"
REQUIRED = ("file", "speaker", "label", "system", "paradigm")
LEGACY_SPOOF_SPLIT = "eval:tts"


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
        split = _split(rec, label)
        why = ("empty speaker" if not rec["speaker"] else f"unknown label {rec['label']!r}" if label is None
               else f"split {split!r} is not empty or eval:<set>" if split is False else None)
        if why:
            rejects.append(reject(CORPUS, f"{why} (metadata.csv line {line_no})", clip_id, root / rec["file"]))
            continue
        paradigm = "bonafide" if label == "bonafide" else (rec["paradigm"] or "tts")
        parent = rec.get("parent", "").strip()
        rows.append({
            "clip_id": clip_id, "source_path": str(root / rec["file"]), "corpus": CORPUS,
            "speaker": rec["speaker"], "label": label,
            "system": "-" if label == "bonafide" else rec["system"], "paradigm": paradigm,
            "split": split, "parent_id": make_clip_id(CORPUS, file_id_of(parent)) if parent else None,
        })
    return finish(rows, rejects, CORPUS, root)


def _split(rec: dict[str, str], label: str | None) -> str | None | bool:
    """The row's split: None (prepare assigns one), `eval:<set>`, or False when the value is not allowed.

    train/dev/test are not accepted from metadata.csv: prepare's speaker-disjoint split must decide them.
    """
    if "split" not in rec:  # format 2: every attack was an unseen evaluation attack
        return None if label == "bonafide" else LEGACY_SPOOF_SPLIT
    split = rec["split"].strip()
    if not split:
        return None
    return split if split.startswith("eval:") and split_ok(split) else False
