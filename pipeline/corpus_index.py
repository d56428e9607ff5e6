"""corpus_index: a content index of every `prepare.corpora` root, the file `prepare` depends on.

Reads params `prepare.corpora` (each entry's `name` and `root`) and the files under each root;
writes data/corpus_index.json. Corpus roots such as /data/ASVspoof2019/LA live outside the
repository, so DVC cannot see an edited labels.csv or a file added under a root. This stage runs on
every `dvc repro` (`always_changed` in dvc.yaml) and lists, per root: the number of files, their
bytes, a digest of every (path, size, sha256) and the sha256 of each metadata file (CSV, protocol,
key lists) by name. It rewrites the index only when that content changes: a changed corpus re-runs
prepare, an unchanged one re-runs nothing.

The index holds content hashes, not mtimes, so a `touch`, a copy or a fresh checkout of the same
corpus re-runs nothing. Hashing a large corpus on every run would be slow, so each file's sha256 is
cached by (size, mtime, inode) in --cache (default data/.corpus_index.cache.json; not a DVC output):
a re-run reads only new or changed files. A root that does not exist is recorded as missing; prepare
then reports it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pipeline.io import write_text_atomic
from pipeline.logs import log_some, progress, stage_timer
from pipeline.params import ConfigError, Section, stage_parser, start_stage, teacher_names

log = logging.getLogger("pipeline.corpus_index")

FORMAT = 1
METADATA_SUFFIXES = (".csv", ".tsv", ".txt", ".lst", ".scp", ".json", ".yaml", ".yml", ".xml")
MAX_METADATA_LISTED = 200  # the digest covers every file; this only keeps the index readable
CHUNK = 1 << 20


@dataclass(frozen=True)
class CorpusRoots(Section):
    """The `prepare.corpora` entries this stage indexes (`CorpusRoots.from_part(prepare section)`): a list is all
    it asks; prepare checks each entry (a bad one is indexed as `invalid`, for prepare to report)."""

    NAME: ClassVar[str] = "prepare"
    corpora: tuple[Any, ...] = ()

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        corpora = kw.get("corpora") or []
        if not isinstance(corpora, list):
            raise ConfigError(f"params prepare.corpora must be a list of {{name, root}} entries, "
                              f"not {type(corpora).__name__}")
        return {"corpora": tuple(corpora)}


def file_sha256(path: str) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def list_files(root: Path, skip: set[str]) -> list[str]:
    """Every file under `root` (relative POSIX paths, sorted); symlinked folders are not entered."""
    out = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in files:
            full = os.path.join(folder, name)
            if os.path.realpath(full) not in skip:
                out.append(Path(os.path.relpath(full, root)).as_posix())
    return sorted(out)


def special_kind(mode: int) -> str | None:
    """What a stat mode is when it is not a regular file (None for a regular file): only those are indexed."""
    if stat.S_ISREG(mode):
        return None
    return ("folder" if stat.S_ISDIR(mode) else "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode)
            else "device")


def index_root(root: Path, cache: dict[str, dict], seen: dict[str, dict], skip: set[str]) -> dict[str, Any]:
    """The index entry of one root: files, bytes, digest and metadata hashes (cache read and filled).

    Only regular files are read: a FIFO would block the stage and a link to a device (/dev/zero) never ends, so
    they are listed by kind (`special`) and left unread; a file that cannot be read (permissions) is listed
    under `unreadable` with the cause, and prepare rejects it. Both enter the digest, so a fix re-runs prepare.
    """
    if not root.is_dir():
        return {"exists": False}
    digest, total, metadata, special, unreadable = hashlib.sha256(), 0, {}, {}, {}
    files = list_files(root, skip)
    for rel in progress(files, f"corpus_index {root}", unit="file"):
        full = os.path.join(root, rel)
        try:
            st = os.stat(full)
        except OSError:  # a broken symlink: listed, so that fixing it changes the index
            digest.update(f"{rel}\t-1\tbroken\n".encode("utf-8", "surrogateescape"))
            continue
        if (kind := special_kind(st.st_mode)) is not None:
            special[rel] = kind
            digest.update(f"{rel}\t-1\t{kind}\n".encode("utf-8", "surrogateescape"))
            continue
        key = os.path.realpath(full)
        stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}
        hit = cache.get(key)
        try:
            sha = hit["sha256"] if hit and all(hit.get(k) == v for k, v in stamp.items()) else file_sha256(full)
        except OSError as exc:
            unreadable[rel] = exc.strerror or type(exc).__name__
            digest.update(f"{rel}\t{st.st_size}\tunreadable\n".encode("utf-8", "surrogateescape"))
            continue
        seen[key] = {**stamp, "sha256": sha}
        total += st.st_size
        digest.update(f"{rel}\t{st.st_size}\t{sha}\n".encode("utf-8", "surrogateescape"))
        if rel.lower().endswith(METADATA_SUFFIXES) and len(metadata) < MAX_METADATA_LISTED:
            metadata[rel] = sha
    problems = [(f"{root}/{r}", f"not a regular file ({k}): not read") for r, k in special.items()]
    log_some(log, problems + [(f"{root}/{r}", f"unreadable: {why}") for r, why in unreadable.items()],
             "corpus_index")
    return {"exists": True, "files": len(files) - len(special) - len(unreadable), "bytes": total,
            "digest": digest.hexdigest(), "metadata": metadata,
            **({"special": special} if special else {}), **({"unreadable": unreadable} if unreadable else {})}


def run(corpora: Sequence[Any], cache: dict[str, dict], skip: set[str] = frozenset()) -> tuple[dict, dict]:
    """(the index of every configured root, the refreshed hash cache)."""
    seen: dict[str, dict] = {}
    entries = []
    for k, entry in enumerate(corpora):
        if not isinstance(entry, dict) or entry.get("root") is None:
            entries.append({"entry": k, "invalid": True})  # prepare reports the bad entry
            continue
        root = Path(str(entry["root"]))
        entries.append({"entry": k, "name": entry.get("name"), "root": str(entry["root"]),
                        **index_root(root, cache, seen, set(skip))})
    return {"format": FORMAT, "corpora": entries}, seen


def write_if_changed(text: str, path: Path) -> bool:
    """Write `text` atomically unless the file already holds it; return whether it was written."""
    if path.is_file() and path.read_bytes() == text.encode("utf-8"):
        return False
    write_text_atomic(text, path)
    return True


def _read_cache(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no cache yet, or a damaged one: hash everything again
        return {}
    return data if isinstance(data, dict) else {}


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("corpus_index", __doc__.splitlines()[0])
    parser.add_argument("--out", default="data/corpus_index.json")
    parser.add_argument("--cache", default="data/.corpus_index.cache.json", help="sha256 cache (not a DVC output)")
    args, params, _ = start_stage(parser, argv)
    # This stage runs first on every `dvc repro`: refuse a teacher name that dvc.yaml would put into the commands
    # and output paths of pretrain@/embed@ before DVC clears their outs or runs them.
    if params.get("teachers") is not None:
        teacher_names(params)
    corpora = CorpusRoots.from_part(params.get("prepare")).corpora
    out, cache_path = Path(args.out), Path(args.cache)
    skip = {os.path.realpath(out), os.path.realpath(cache_path)}
    with stage_timer(log, "corpus_index") as stats:
        index, cache = run(corpora, _read_cache(cache_path), skip)
        stats.add("files", sum(e.get("files", 0) for e in index["corpora"]))
    text = json.dumps(index, indent=1, sort_keys=True, ensure_ascii=True) + "\n"
    changed = write_if_changed(text, out)
    write_if_changed(json.dumps(cache, sort_keys=True) + "\n", cache_path)
    for e in index["corpora"]:
        if e.get("exists") is False:
            log.warning("corpus root %s (entry %d) does not exist", e["root"], e["entry"])
    log.info("corpus_index: %d roots, %s", len(index["corpora"]),
             f"changed -> {out}" if changed else f"unchanged, {out} left as it was")
    return 0


if __name__ == "__main__":
    sys.exit(main())
