"""DiffSSD (Bhagtani et al., 2024): speech from diffusion-based TTS / voice cloning, with LJSpeech
and LibriSpeech as its bona fide side.

Licence: DiffSSD CC BY-NC-ND 4.0 (non-commercial, no derivatives); LJSpeech public domain;
LibriSpeech CC BY 4.0. URL: https://huggingface.co/datasets/purdueviperlab/diffssd
Layout: <root>/train_val_test_splits.csv (columns filename, method_name, category, source, set,
target; target 0 = real, 1 = synthetic; set train/val/test) and <root>/generated_speech/<method>/...
`filename` is relative to <root>. Real rows name `real_speech/librispeech/<subset>/<spk>/<chapter>/
<file>.flac` or `real_speech/ljspeech/...` (method_name librispeech/ljspeech, category and source
`real`; the audio is not shipped). A real file is taken from <root>/<filename> when it is there,
else from `librispeech_root` (the LibriSpeech folder) / `ljspeech_root` (LJSpeech-1.1; wavs/) plus
the rest of the path; real rows with neither are left out (logged). The method is the system.
test becomes `eval:diffssd`; train and val are not speaker-disjoint (LJSpeech is one speaker in all
three) so by default they get prepare's speaker split (`official_split: true` keeps them as
train/dev, and prepare then refuses the crossing speakers).
Speakers: `LJ`, the LibriSpeech speaker (file `<spk>-<chapter>-<utt>`); generated speech takes the
LibriSpeech speaker in its file name when there is one, `LJ` when its path names ljspeech, else its method.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

from pipeline.corpora.common import AdapterResult, finish, make_clip_id, normalise_label, reject
from pipeline.corpora.sources import first_existing, join_inside, require_dir, source_row

CORPUS = "diffssd"
SPLITS = "train_val_test_splits.csv"
REQUIRED = ("filename", "method_name", "set", "target")
TARGETS = {"0": "bonafide", "1": "spoof", "real": "bonafide", "fake": "spoof", "synthetic": "spoof"}
REAL = re.compile(r"(?:real_speech/)?(ljspeech|librispeech)/(.+)", re.IGNORECASE)
LIBRI_ID = re.compile(r"(\d+)-\d+-\d+")
log = logging.getLogger(__name__)


def speaker_of(rel: str, method: str) -> str:
    """The speaker of a DiffSSD row (see the module docstring)."""
    found = LIBRI_ID.search(Path(rel).stem)
    if found:
        return found.group(1)
    return "LJ" if "ljspeech" in rel.lower() else (method or "unknown")


def real_path(root: Path, rel: str, corpus: str, rest: str, bona_root: Path | None) -> Path | None:
    """Where a real row's audio is: under root as listed, else under its corpus root; None if neither."""
    if (root / rel).is_file():
        return root / rel
    if bona_root is None:
        return None
    base = Path(bona_root)
    if corpus == "ljspeech" and (base / "wavs").is_dir() and not rest.startswith("wavs/"):
        base = base / "wavs"
    return join_inside(base, rest)


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
            clip_id = make_clip_id(CORPUS, str(Path(rel).with_suffix(""))) if rel else None
            if not rel or label is None or rec["set"] not in sets:
                why = ("empty filename" if not rel else f"unknown target {rec['target']!r}" if label is None
                       else f"unknown set {rec['set']!r}")
                rejects.append(reject(CORPUS, f"{why} ({SPLITS} line {line_no})", clip_id, root / rel))
                continue
            real = REAL.fullmatch(rel) if label == "bonafide" else None
            try:
                path = join_inside(root, rel)
                if real:
                    corpus = real.group(1).lower()
                    path = real_path(root, rel, corpus, real.group(2), bona_roots[corpus])
            except ValueError as exc:
                rejects.append(reject(CORPUS, f"{exc} ({SPLITS} line {line_no})", clip_id))
                continue
            if path is None:
                left_out[corpus] += 1
                continue
            method = (rec["method_name"] or "").strip()
            rows.append(source_row(CORPUS, clip_id, path, speaker_of(rel, method), label, method, sets[rec["set"]]))
    for name, n in left_out.items():
        if n:
            log.warning("%s: %d real %s rows left out: not under the root and no %s_root given", CORPUS, n, name, name)
    return finish(rows, rejects, CORPUS)
