"""Resuming work across runs: fingerprints of what an output depends on, and directories that keep them.

One helper for the three stages that pick up where an interrupted or earlier run stopped:
reconstruct (a directory per system of FLACs), embed (`.partial/` shards) and fetch_demo (its
`.completed` marker). The rule is the same everywhere: an output is reused only when the
fingerprint of everything that shaped it (settings, code, model weights, the input's content) is
the one recorded beside it; anything else is discarded and redone.

A `ResumeDir` holds a JSON marker `{"fingerprint": ..., "entries": {name: key}}`: the fingerprint
covers the whole directory (a change wipes it); `entries` record, per file, the key of the input
it was made from (e.g. the parent clip's sha256), so that one changed input redoes one file.
Writes only the marker (atomically) and deletes only inside directories that carry a marker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.io import write_json_atomic

log = logging.getLogger("pipeline.resume")


def digest(obj: Any) -> str:
    """sha256 of a JSON-able object (keys sorted, so dict order does not matter)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def tree_hash(path: str | Path | None) -> str:
    """sha256 over the files under `path` (names and bytes); '' when no path is given."""
    if not path:
        return ""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def files_hash(files: Iterable[Path]) -> str:
    """sha256 over the names and bytes of `files` in the order given (e.g. the code that shapes an output)."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def read_marker(path: str | Path) -> dict | None:
    """A JSON marker as a dict; None when it is missing, unreadable or not a JSON object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class ResumeDir:
    """A directory whose files are valid for one fingerprint, with a per-file input key (see the module doc)."""

    def __init__(self, path: str | Path, fingerprint: Any, marker: str = ".fingerprint.json",
                 foreign_ok: bool = False) -> None:
        """Open `path`: keep its files when the marker's fingerprint is `fingerprint`, else wipe it.

        A non-empty directory without a marker was not made here: it is an error unless
        `foreign_ok` (a directory the caller owns outright, e.g. a private `.partial/`).
        """
        self.path = Path(path)
        self.marker = self.path / marker
        self.fingerprint = fingerprint
        self.entries: dict[str, str] = {}
        if self.path.exists():
            old = read_marker(self.marker)
            files = [f for f in self.path.iterdir() if f != self.marker]
            if files and not self.marker.exists() and not foreign_ok:
                raise RuntimeError(f"{self.path} has files that this stage did not write (no {marker}): "
                                   "refusing to overwrite them; choose another output directory or empty it")
            if old is not None and old.get("fingerprint") == fingerprint:
                self.entries = {str(k): str(v) for k, v in (old.get("entries") or {}).items()}
            elif files or self.marker.exists():
                log.info("%s: made for other settings, inputs or code: discarding its %d files", self.path, len(files))
                shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._write()

    def _write(self) -> None:
        write_json_atomic({"fingerprint": self.fingerprint, "entries": dict(sorted(self.entries.items()))},
                          self.marker)

    def valid(self, name: str, key: str) -> bool:
        """True when `name` was recorded as made from input `key` (the caller still checks the file itself)."""
        return self.entries.get(name) == key

    def record(self, items: Mapping[str, str]) -> None:
        """Record files as made from their input keys (call after the files are written)."""
        if items:
            self.entries.update({str(k): str(v) for k, v in items.items()})
            self._write()

    def forget(self, names: Iterable[str]) -> None:
        """Drop the records of files that were removed or found damaged."""
        names = [n for n in names if n in self.entries]
        for name in names:
            del self.entries[name]
        if names:
            self._write()
