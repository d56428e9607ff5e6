"""DiffSSD (Bhagtani et al., 2024): speech from diffusion-based TTS / voice cloning, with LJSpeech
and LibriSpeech as its bona fide side.

Licence: DiffSSD CC BY-NC-SA 4.0 (non-commercial, see its LICENSE.txt); LJSpeech public domain;
LibriSpeech CC BY 4.0. URL: https://huggingface.co/datasets/purdueviperlab/diffssd
Layout: <root>/train_val_test_splits.csv (columns filename, method_name, category, source, set,
target; target 0 = real, 1 = synthetic; set train/val/test) and <root>/generated_speech/<method>/...
`filename` is relative to <root> for the generated speech; real rows name `ljspeech/<id>.wav` and
`librispeech/<subset>/<spk>/<chapter>/<file>`, found under `ljspeech_root` (LJSpeech-1.1, wavs/) and
`librispeech_root` (the LibriSpeech folder); real rows of a root not given are left out (logged).
The method is the system. test becomes `eval:diffssd`; train and val are not speaker-disjoint (LJSpeech
is one speaker in all three) so by default they get prepare's speaker split (`official_split: true`
keeps them as train/dev, and prepare then refuses the crossing speakers).
Speakers: `LJ`, the LibriSpeech speaker, and for generated speech `LJ` when its `source` names
LJSpeech, the LibriSpeech speaker in its file name when there is one, else its method.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

from pipeline.corpora.common import AdapterResult, finish, make_clip_id, normalise_label, reject
from pipeline.corpora.sources import first_existing, require_dir, source_row

CORPUS = "diffssd"
SPLITS = "train_val_test_splits.csv"
REQUIRED = ("filename", "method_name", "set", "target")
TARGETS = {"0": "bonafide", "1": "spoof", "real": "bonafide", "fake": "spoof", "synthetic": "spoof"}
LIBRI_ID = re.compile(r"(\d+)-\d+-\d+")
log = logging.getLogger(__name__)


def speaker_of(rel: str, source: str, method: str) -> str:
    """The speaker of a DiffSSD row (see the module docstring)."""
    first = rel.split("/", 1)[0].lower()
    if first == "ljspeech" or "ljspeech" in source.lower():
        return "LJ"
    found = LIBRI_ID.search(Path(rel).stem)
    return found.group(1) if found else (method or "unknown")


def load_diffssd(root: Path, ljspeech_root: Path | None = None, librispeech_root: Path | None = None,
                 official_split: bool = False) -> AdapterResult:
    """Read DiffSSD's split manifest into source rows."""
    root = require_dir(Path(root), CORPUS, "root")
    manifest = first_existing([root / SPLITS], CORPUS, "split manifest")
    bona_roots = {"ljspeech": ljspeech_root, "librispeech": librispeech_root}
    sets = {"train": "train" if official_split else None, "val": "dev" if official_split else None,
            "test": f"eval:{CORPUS}"}
    rows, rejects, left_out = [], [], dict.fromkeys(bona_roots, 0)
    with manifest.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{manifest}: missing columns {missing}")
        for line_no, rec in enumerate(reader, start=2):
            rel = (rec["filename"] or "").strip().removeprefix("./")
            label = TARGETS.get((rec["target"] or "").strip().lower()) or normalise_label(rec["target"] or "")
            where = f"{SPLITS} line {line_no}"
            clip_id = make_clip_id(CORPUS, str(Path(rel).with_suffix(""))) if rel else None
            first, _, rest = rel.partition("/")
            if not rel or label is None or rec["set"] not in sets:
                why = ("empty filename" if not rel else f"unknown target {rec['target']!r}" if label is None
                       else f"unknown set {rec['set']!r}")
                rejects.append(reject(CORPUS, f"{why} ({where})", clip_id, root / rel))
                continue
            if first.lower() in bona_roots:
                bona_root = bona_roots[first.lower()]
                if bona_root is None:
                    left_out[first.lower()] += 1
                    continue
                base = Path(bona_root)
                if first.lower() == "ljspeech" and (base / "wavs").is_dir():
                    base = base / "wavs"
                path = base / rest
            else:
                path = root / rel
            method = (rec["method_name"] or "").strip()
            rows.append(source_row(CORPUS, clip_id, path, speaker_of(rel, rec.get("source") or "", method), label,
                                   method, sets[rec["set"]]))
    for name, n in left_out.items():
        if n:
            log.warning("%s: %d real rows under %s/ left out: %s_root not given", CORPUS, n, name, name)
    return finish(rows, rejects, CORPUS)
