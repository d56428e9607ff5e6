"""What every export shares: the partition table with stable file ids, audio placement, the map file and the
guard on the output folder.

Reads the clip tables' audio (to link, copy or, for a file that is not FLAC, transcode it); writes only inside the
export folder it is given (the caller builds it in a temp folder and swaps it in, pipeline/io.py `atomic_dir`).

File ids: `<clip_id with every character outside [A-Za-z0-9_-] as _, at most 80 of them>_<the first 8 hex of
sha256(clip_id)>`, a function of the clip id alone, so an id is the same in every export. A reconstruction keeps
its own clip id (`<parent>__<system>`), never its parent's file name, so the fakes of one parent never collide
with it or with each other (the manifest's own paths repeat a parent's file name in every per-system folder).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import logging
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import soundfile as sf

log = logging.getLogger("pipeline.handoff.files")

PARTITIONS = ("train", "dev", "eval")
LINKS = ("hard", "symlink", "copy")
MARKER = "EXPORT.json"       # written last into every export folder; only such a folder may be replaced
MAP_NAME = "clip_map.csv"
MAP_COLUMNS = ["file_id", "clip_id", "partition", "split", "label", "system", "speaker", "corpus", "paradigm",
               "parent_id", "parent_file_id", "sampler", "path"]
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_TOKEN = re.compile(r"[^A-Za-z0-9_.-]")


class ExportError(ValueError):
    """An export that cannot be made as asked (an unsafe output folder, clashing inputs, an unreadable file)."""


def file_id(clip_id: str) -> str:
    """The stable, file-system-safe id of a clip (see the module docstring)."""
    digest = hashlib.sha256(clip_id.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{_UNSAFE.sub('_', clip_id)[:80]}_{digest}"


def protocol_token(text: str) -> str:
    """A field of a space-separated protocol line: ASCII letters, digits, `_ . -` (others as `_`); `-` if empty."""
    return _TOKEN.sub("_", str(text)) or "-"


def partition_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One table of every partition's rows (column `partition`, `file_id`, `parent_file_id`), in partition order.

    Each partition keeps only the rows of its own splits (train: `train`; dev: `dev`; eval: `test` and `eval:*`),
    as train and evaluate use them; the rest is logged as dropped. A clip in two partitions is an ExportError.
    """
    keep = {"train": lambda s: s == "train", "dev": lambda s: s == "dev",
            "eval": lambda s: s == "test" or s.startswith("eval:")}
    frames = []
    for part in PARTITIONS:
        rows = tables.get(part)
        if rows is None or rows.empty:
            continue
        mine = rows["split"].astype(str).map(keep[part]).to_numpy(dtype=bool)
        if not mine.all():
            log.info("%s: %d of %d rows have another split and are left out", part, int((~mine).sum()), len(rows))
        if not mine.any():
            log.warning("%s: the table has no rows of this partition's splits: the partition is empty", part)
            continue
        frames.append(rows[mine].drop_duplicates("clip_id").assign(partition=part))
    if not frames:
        raise ExportError("nothing to export: the tables have no rows of their partitions' splits")
    table = pd.concat(frames, ignore_index=True)
    twice = table["clip_id"][table["clip_id"].duplicated()]
    if len(twice):
        raise ExportError(f"clip {twice.iloc[0]!r} is in two partitions: give each table its own clips")
    if "sampler" not in table.columns:
        table["sampler"] = None
    table["file_id"] = table["clip_id"].map(file_id)
    table["parent_file_id"] = [file_id(p) if isinstance(p, str) else None for p in table["parent_id"]]
    folded = table["file_id"].str.casefold()
    if folded.duplicated().any():  # 32 bits of sha256 on top of the clip id: never seen, but never silent
        raise ExportError(f"file id {table['file_id'][folded.duplicated()].iloc[0]!r} repeats")
    return table


def link_file(src: str | Path, dst: Path, link: str) -> str:
    """Put `src` at `dst` by `link` (hard, symlink or copy); return how. A hard link across file systems (or where
    links are not allowed) falls back to a copy; a symlink points at the absolute path."""
    if link == "hard":
        try:
            os.link(src, dst)
            return "hard"
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise
    elif link == "symlink":
        os.symlink(os.path.abspath(src), dst)
        return "symlink"
    shutil.copyfile(src, dst)
    return "copy"


def place_audio(src: str | Path, dst: Path, link: str) -> str:
    """Put the clip `src` at `dst` (a .flac path) by `link` (`link_file`); a source that is not FLAC is transcoded
    to 16-bit FLAC instead, samples unchanged. Returns how it was placed (hard, symlink, copy or transcoded)."""
    src = Path(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix.lower() != ".flac":
        wave, sr = sf.read(str(src), dtype="int16", always_2d=False)
        sf.write(str(dst), wave, sr, format="FLAC", subtype="PCM_16")
        return "transcoded"
    return link_file(src, dst, link)


def place_all(table: pd.DataFrame, folder_of: dict[str, Path], link: str) -> dict[str, int]:
    """Place every clip's audio at `folder_of[partition] / <file_id>.flac`; return counts per placement."""
    from pipeline.logs import progress

    counts: dict[str, int] = {}
    for row in progress(table.itertuples(index=False), total=len(table), desc="export audio", unit="clip"):
        try:
            how = place_audio(row.path, folder_of[row.partition] / f"{row.file_id}.flac", link)
        except (OSError, sf.LibsndfileError, RuntimeError) as exc:
            raise ExportError(f"clip {row.clip_id}: cannot place {row.path}: {exc}") from exc
        counts[how] = counts.get(how, 0) + 1
    if counts.get("copy") and link == "hard":
        log.info("%d files copied: hard links are not possible there (another file system)", counts["copy"])
    return counts


def write_map(table: pd.DataFrame, path: Path) -> None:
    """clip_map.csv: file_id <-> clip_id with partition, split, label, system, speaker, parent (and its file id)."""
    out = table.reindex(columns=MAP_COLUMNS)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        out.to_csv(fh, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")


def check_out(out: str | Path, inputs: list[str | Path], data_dir: str | Path = "data") -> Path:
    """The export folder, when writing it cannot destroy anything; else ExportError.

    Refused: a folder inside `data_dir` (DVC's outputs; relative paths resolve from the repository root, the
    working directory), a file, a non-empty folder that is not an earlier export (no EXPORT.json), and a folder
    holding any input (a table, an audio file, the model): the export replaces the whole folder.
    """
    out = Path(out)
    target, data = out.resolve(), Path(data_dir).resolve()
    if target == data or data in target.parents:
        raise ExportError(f"--out {out} is inside {data_dir}/, which holds DVC's outputs: export elsewhere "
                          "(e.g. exports/)")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ExportError(f"--out {out} is a non-empty folder that is not an export (no {MARKER}): refusing to "
                          "replace it")
    for item in inputs:
        path = Path(item).resolve()
        if path == target or target in path.parents:
            raise ExportError(f"--out {out} holds an input ({item}): refusing to replace it")
    return out
