"""MLAAD (Multi-Language Audio Anti-Spoofing Dataset): TTS fakes in many languages, with M-AILABS
as the bona fide side.

Licence: MLAAD CC BY-NC 4.0 (non-commercial academic research only); M-AILABS: its own licence.
URL: https://deepfake-total.com/mlaad and https://github.com/imdatceleste/m-ailabs-dataset
Layout: <root>/fake/<lang>/<model_folder>/*.wav with one `meta.csv` per model folder, `|`-separated
with a header `path|original_file|language|is_original_language|duration|training_data|model_name|
architecture|transcript` (later versions add columns; transcripts may hold quotes: read unquoted).
`path` is relative to <root> (`./fake/en/<model>/x.wav`); `original_file` is the M-AILABS utterance
whose text was spoken, relative to the M-AILABS root: `<locale>/by_book/<gender>/<speaker>/<book>/
wavs/<id>.wav` (gender `mix` has no speaker folder). The fake keeps that utterance as `parent_id` and its
M-AILABS speaker, so prepare's speaker-disjoint split (MLAAD has none) keeps fakes with their parents.
`mailabs_root` adds the bona fide side: the parents of the kept fakes (`bonafide: parents`) or every
M-AILABS utterance (`bonafide: all`). `protocol`: a folder with the source-tracing protocol
`train.csv`/`dev.csv`/`eval.csv` (`path,model_name`): only listed fakes are kept and eval.csv ones
become `eval:mlaad`; its train/dev lists share M-AILABS speakers, so those get the speaker split.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from pipeline.corpora.common import AdapterResult, finish, make_clip_id, reject
from pipeline.corpora.sources import as_set, audio_files, first_existing, join_inside, require_dir, source_row

CORPUS = "mlaad"
REQUIRED = ("path", "original_file", "model_name")
PROTOCOL_PARTS = {"train.csv": None, "dev.csv": None, "eval.csv": f"eval:{CORPUS}"}
log = logging.getLogger(__name__)


def mailabs_speaker(rel: str) -> str:
    """The M-AILABS speaker of a path `<locale>/by_book/<gender>/<speaker>/...` (`mix_<book>` for mix)."""
    parts = rel.replace("\\", "/").strip("/").split("/")
    if len(parts) >= 4 and parts[1] == "by_book":
        return f"mix_{parts[3]}" if parts[2] == "mix" else parts[3]
    return "unknown"


def mailabs_clip_id(rel: str) -> str:
    """The clip id of an M-AILABS utterance, from its path relative to the M-AILABS root."""
    return make_clip_id(CORPUS, "mailabs/" + str(Path(rel.replace("\\", "/").strip("/")).with_suffix("")))


def read_protocol(folder: Path) -> dict[str, str | None]:
    """Source-tracing protocol: fake path (relative to root) -> split (None, or eval:mlaad)."""
    listed: dict[str, str | None] = {}
    for name, split in PROTOCOL_PARTS.items():
        path = first_existing([folder / name], CORPUS, f"protocol {name}")
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if "path" not in (reader.fieldnames or []):
                raise ValueError(f"{path}: expected columns path,model_name, got {reader.fieldnames}")
            for rec in reader:
                listed[(rec["path"] or "").strip().removeprefix("./")] = split
    return listed


def read_meta(meta: Path, root: Path, corpus_rows: list, rejects: list, listed: dict | None,
              models: set | None) -> list[str]:
    """Rows of one meta.csv (appended to corpus_rows); returns the original_file of each kept fake."""
    parents = []
    with meta.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter="|", quoting=csv.QUOTE_NONE)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{meta}: missing columns {missing} (expected `|`-separated {'|'.join(REQUIRED)}|...)")
        for line_no, rec in enumerate(reader, start=2):
            rel = (rec.get("path") or "").strip().removeprefix("./")
            model = (rec.get("model_name") or "").strip()
            if not rel or not model:
                rejects.append(reject(CORPUS, f"empty path or model_name ({meta}:{line_no})"))
                continue
            try:
                path = join_inside(root, rel) if "/" in rel else join_inside(meta.parent, rel)
            except ValueError as exc:
                rejects.append(reject(CORPUS, f"{exc} ({meta}:{line_no})"))
                continue
            rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else rel
            if (listed is not None and rel not in listed) or (models is not None and model not in models):
                continue
            original = (rec.get("original_file") or "").strip()
            corpus_rows.append(source_row(
                CORPUS, make_clip_id(CORPUS, str(Path(rel).with_suffix(""))), path, mailabs_speaker(original),
                "spoof", model, None if listed is None else listed[rel],
                mailabs_clip_id(original) if original else None))
            if original:
                parents.append(original)
    return parents


def load_mlaad(root: Path, mailabs_root: Path | None = None, bonafide: str = "parents",
               languages: list[str] | None = None, models: list[str] | None = None,
               protocol: Path | None = None) -> AdapterResult:
    """Read MLAAD's meta.csv files (and the M-AILABS bona fide side) into source rows."""
    root = Path(root)
    fake = require_dir(root / "fake", CORPUS, "fake folder (root must hold fake/<lang>/<model>/meta.csv)")
    if bonafide not in ("parents", "all"):
        raise ValueError(f"{CORPUS}: bonafide must be parents or all, not {bonafide!r}")
    keep_langs, keep_models = as_set(languages), as_set(models)
    listed = read_protocol(Path(protocol)) if protocol is not None else None
    metas = sorted(p for p in fake.glob("*/*/meta.csv") if keep_langs is None or p.parent.parent.name in keep_langs)
    if not metas:
        raise FileNotFoundError(f"{CORPUS}: no {fake}/<lang>/<model>/meta.csv found (languages: {languages})")
    rows, rejects, parents = [], [], []
    for meta in metas:
        parents += read_meta(meta, root, rows, rejects, listed, keep_models)
    if mailabs_root is not None:
        mroot = require_dir(Path(mailabs_root), CORPUS, "mailabs_root")
        if bonafide == "all":
            rels = [p.relative_to(mroot).as_posix() for p in audio_files(mroot, recursive=True)
                    if "by_book" in p.parts]
        else:
            rels = sorted(set(parents))
        for rel in rels:
            try:
                path = join_inside(mroot, rel)
            except ValueError as exc:
                rejects.append(reject(CORPUS, f"original_file: {exc}", mailabs_clip_id(rel)))
                continue
            rows.append(source_row(CORPUS, mailabs_clip_id(rel), path, mailabs_speaker(rel), "bonafide"))
    else:
        log.info("%s: no mailabs_root given: fakes only (their parent_id names M-AILABS clips not loaded)", CORPUS)
    return finish(rows, rejects, CORPUS)
