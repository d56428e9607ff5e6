"""Shared pieces of the corpus adapters: the adapter result, id making, label words, fix + validate.

Clip ids: `<corpus>_<file id>` with path separators as `_`; Unicode word characters, `.` and `-`
are kept. When cleaning had to replace anything else (spaces, punctuation), or when two different
files of a corpus clean to the same id (`x.wav` + `x.flac`, `a b.wav` + `a_b.wav`), a short hash of
the file's path relative to the corpus root is appended, so no good file is lost to a collision.
A file listed twice is a true duplicate (reject reason `duplicate row`); files that resolve outside
the corpus root (`../x.wav`, a protocol id with `../`, a symlink out of the root) are rejected.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pandas as pd

from pipeline.logs import StageError, log_some
from pipeline.schema import SOURCE_COLUMNS, fix_clips, validate_sources

log = logging.getLogger(__name__)
T = TypeVar("T")

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


CORPUS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class CorpusError(StageError):
    """A corpus that cannot be read at all: wrong root, missing/empty metadata, a bad option or name."""


def check_corpus_name(name: str) -> str:
    """Return `name` when it is a safe corpus name (a folder under --audio-dir and a clip-id prefix)."""
    if not isinstance(name, str) or not CORPUS_NAME.fullmatch(name):
        raise CorpusError(f"corpus name {name!r} is not allowed: use 1-64 ASCII letters, digits, '_' or '-', "
                          "starting with a letter or digit (it names the folder data/clips/<corpus>/)")
    return name


def path_hash(text: str) -> str:
    """Eight hex digits of sha256(text): the suffix that keeps cleaned or colliding ids apart."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def make_clip_id(corpus: str, file_id: str) -> str:
    """A stable clip id: corpus + the corpus' own file id (see the module docstring).

    Ids made only of word characters, `.`, `-` and `/` come out as before (`/` -> `_`); anything
    else replaced gets a hash of `file_id` appended, so `日本語` and `中文` or `a b` and `a_b` differ.
    """
    file_id = unicodedata.normalize("NFC", file_id)
    cleaned = re.sub(r"[^\w.-]+", "_", file_id).strip("_")
    if cleaned != re.sub(r"/+", "_", file_id) or not cleaned:
        cleaned = f"{cleaned}_{path_hash(file_id)}".lstrip("_")
    return f"{corpus}_{cleaned}"


def file_id_of(file_name: str) -> str:
    """A file name without its audio suffix (the file id of a CSV row); `..` and the like stay as given."""
    path = Path(file_name)
    return str(path.with_suffix("")) if path.suffix else file_name


def resolve_inside(root: Path, path: str | Path) -> Path | None:
    """The real path of `path` when it lies inside the real `root` (symlinks followed), else None."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return Path(real) if real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep) else None


def read_csv_rows(table: Path, required: tuple[str, ...], corpus: str):
    """Yield (line number, row) of a CSV (UTF-8 with or without BOM); CorpusError for a bad header, a file that is
    not UTF-8 or a field over the csv module's limit (each naming the line), or a header with no row under it."""
    with table.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        with csv_errors(table, corpus, lambda: reader.line_num + 1):
            fieldnames = reader.fieldnames
        if fieldnames is None:
            raise CorpusError(f"{corpus}: {table} is empty; expected a header line with columns {','.join(required)}")
        have = [(f or "").strip() for f in fieldnames]
        missing = [c for c in required if c not in have]
        if missing:
            raise CorpusError(f"{corpus}: {table} lacks columns {missing}; expected {','.join(required)} "
                              f"(header has {have})")
        reader.fieldnames = have
        n = 0
        with csv_errors(table, corpus, lambda: reader.line_num + 1):
            for line_no, rec in enumerate(reader, start=2):
                n += 1
                yield line_no, {k: (v or "") for k, v in rec.items() if k is not None}
        if n == 0:
            raise CorpusError(f"{corpus}: {table} has a header but no rows: list one file per line under "
                              f"{','.join(have)}")


@contextmanager
def csv_errors(table: Path, corpus: str, line: Callable[[], int]) -> Iterator[None]:
    """Turn a metadata file's decoding or csv errors into a CorpusError naming the file, the line and the cause."""
    try:
        yield
    except UnicodeDecodeError:
        raise CorpusError(f"{corpus}: {table} is not UTF-8 ({not_utf8(table)}): save it as UTF-8 (e.g. `iconv -f "
                          "latin1 -t utf-8`)") from None
    except csv.Error as exc:
        raise CorpusError(f"{corpus}: {table} line {line()}: {exc} (a field that long is no file name or label: "
                          "a broken quote?)") from None


def not_utf8(path: Path) -> str:
    """Where a text file first stops being UTF-8: `line N, byte 0xXX` (the decoder reads ahead, so it cannot say)."""
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"line {line_no}, byte 0x{raw[exc.start]:02x}"
    return "a multi-byte character cut at the end"


def normalise_label(word: str) -> str | None:
    """The ASVspoof word for a corpus' label, or None when it is not one we know."""
    return LABEL_WORDS.get(str(word).strip().lower())


def reject(corpus: str, reason: str, clip_id: str | None = None, path: str | Path | None = None) -> dict:
    """A rejects-table row from an adapter."""
    return {"clip_id": clip_id, "path": None if path is None else str(path), "corpus": corpus,
            "stage": "prepare", "reason": reason}


def key_records(text: str, parse: Callable[[str], T], corpus: str, rejects: list[dict], kind: str,
                file_name: str | None = None) -> Iterator[tuple[str, T]]:
    """(where the line is, record) of every non-blank line of a key or protocol file that `parse` reads.

    A line that `parse` refuses (ValueError) becomes a reject `malformed <kind> <where>: <reason>`; `where`
    (`<file_name>:<n>`, or `line <n>` without a file name) names the line in the adapter's later rejects too.
    """
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{file_name}:{line_no}" if file_name else f"line {line_no}"
        try:
            rec = parse(line)
        except ValueError as exc:
            rejects.append(reject(corpus, f"malformed {kind} {where}: {exc}"))
            continue
        yield where, rec


def known_label(word: str, corpus: str, rejects: list[dict], where: str, clip_id: str, path: Path) -> str | None:
    """normalise_label(word), or None after a reject `unknown label <word> (<where>)` for the clip."""
    label = normalise_label(word)
    if label is None:
        rejects.append(reject(corpus, f"unknown label {word!r} ({where})", clip_id, path))
    return label


def finish(rows: list[dict], rejects: list[dict], corpus: str, root: Path | None = None) -> AdapterResult:
    """Reject files outside `root`, missing files and duplicate rows; keep colliding ids apart; validate.

    Adapters pass their corpus `root`: without it the outside-the-root check is skipped and
    collision hashes use the path as given.
    """
    check_corpus_name(corpus)
    df = pd.DataFrame(rows, columns=list(SOURCE_COLUMNS))
    keep, real, missing = [], [], []
    for row in df.itertuples(index=False):
        inside = resolve_inside(root, row.source_path) if root is not None else Path(os.path.realpath(row.source_path))
        ok = inside is not None and inside.is_file()
        if inside is None:
            rejects.append(reject(corpus, f"outside the corpus root {root}: {row.source_path} resolves to "
                                          f"{os.path.realpath(row.source_path)}", row.clip_id, row.source_path))
        elif not ok:
            reason = "missing file" if not inside.exists() else "not a regular file (a folder, FIFO or device)"
            missing.append((str(row.source_path), reason))
            rejects.append(reject(corpus, reason, row.clip_id, row.source_path))
        keep.append(ok)
        real.append(str(inside))
    log_some(log, missing, corpus)
    df = df.assign(_real=real)[pd.Series(keep, index=df.index, dtype=bool)].reset_index(drop=True)
    df = _drop_duplicate_rows(df, rejects, corpus)
    df = _separate_collisions(df, corpus, root)
    df, dropped = fix_clips(df.drop(columns="_real")) if len(df) else (df.drop(columns="_real"), df.assign(reason=[]))
    for _, row in dropped.iterrows():
        rejects.append(reject(corpus, row["reason"], row["clip_id"], row["source_path"]))
    if rejects:
        log.warning("%s: %d source rows skipped", corpus, len(rejects))
    return AdapterResult(validate_sources(df, corpus), rejects)


def _drop_duplicate_rows(df: pd.DataFrame, rejects: list[dict], corpus: str) -> pd.DataFrame:
    """A file listed again (the same real file) is a true duplicate: keep the first row."""
    dup = df.duplicated("_real", keep="first")
    for row in df[dup].itertuples(index=False):
        rejects.append(reject(corpus, "duplicate row: the same file is listed again", row.clip_id, row.source_path))
    return df[~dup].reset_index(drop=True)


def _separate_collisions(df: pd.DataFrame, corpus: str, root: Path | None) -> pd.DataFrame:
    """Different files that cleaned to one id each get a hash of their path relative to the root."""
    clash = df["clip_id"].duplicated(keep=False)
    if not clash.any():
        return df
    df = df.copy()
    for i in df.index[clash]:
        path = df.at[i, "source_path"]
        rel = os.path.relpath(path, root) if root is not None else path
        new = f"{df.at[i, 'clip_id']}_{path_hash(Path(rel).as_posix())}"
        log.info("%s: clip id %s is shared by several files; %s becomes %s", corpus, df.at[i, "clip_id"], rel, new)
        df.at[i, "clip_id"] = new
    return df
