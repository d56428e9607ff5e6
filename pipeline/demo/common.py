"""What every demo source shares: the build record, its SOURCES entries, FetchError, file helpers.

Writes only inside the build directory (atomically, through pipeline.io).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.io import atomic_path, write_text_atomic

FORMAT_VERSION = 3  # bump when the output layout changes, so an old marker no longer matches
UNSEEN_SPLIT = "eval:unseen_tts"  # the split of attack systems held out of training


class FetchError(RuntimeError):
    """A source cannot be fetched (no apt-get/dpkg-deb, no package lists, no such package)."""



@dataclass
class SourceInfo:
    """One line group of SOURCES: where a source came from and under which licence."""

    package: str
    version: str
    licence: str
    origin: str
    speakers: dict[str, str] = field(default_factory=dict)  # speaker id -> who/what it is
    clips: int = 0

    def render(self) -> str:
        lines = [f"package: {self.package}", f"version: {self.version}", f"licence: {self.licence}",
                 f"origin: {self.origin}", f"clips: {self.clips}"]
        lines += [f"speaker: {spk} = {desc}" for spk, desc in sorted(self.speakers.items())]
        return "\n".join(lines) + "\n"


@dataclass
class Build:
    """What a build collected: metadata rows and source records (all paths relative to the build dir)."""

    root: Path
    rows: list[dict[str, str]] = field(default_factory=list)
    sources: dict[str, SourceInfo] = field(default_factory=dict)

    def add(self, file: str, speaker: str, label: str, system: str, paradigm: str, language: str, text: str,
            source: str, split: str = "", parent: str = "") -> None:
        """One metadata row; `split` empty = prepare's speaker-disjoint split, `parent` = the bona fide file
        whose transcript a TTS clip re-speaks (its provenance)."""
        self.rows.append({"file": file, "speaker": speaker, "label": label, "system": system,
                          "paradigm": paradigm, "language": language, "text": text, "source": source,
                          "split": split, "parent": parent})
        if source in self.sources:
            self.sources[source].clips += 1



def spread(total: int, parts: int) -> list[int]:
    """Split `total` as evenly as possible over `parts`."""
    if parts <= 0:
        return []
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def pick(items: list, n: int, rng: np.random.Generator) -> list:
    """n items drawn without replacement, in their original order (all of them when n >= len)."""
    if n >= len(items):
        return list(items)
    idx = np.sort(rng.choice(len(items), size=n, replace=False))
    return [items[i] for i in idx]


def copy_atomic(src: Path, dst: Path) -> None:
    """Copy a file into the build (temp name, then rename)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def keep_copyright(build: Build, pkg: str, text: str) -> None:
    """Store a package's copyright file under licenses/ (CC-BY-SA asks for the licence text)."""
    if text:
        write_text_atomic(text, build.root / "licenses" / f"{pkg}.copyright")
