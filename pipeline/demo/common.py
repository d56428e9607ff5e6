"""What every demo source shares: the build record, its SOURCES entries, FetchError, the bona fide clips a
source offers and their per-speaker selection, file helpers.

Writes only inside the build directory (atomically, through pipeline.io).
"""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.io import atomic_path, write_text_atomic

FORMAT_VERSION = 4  # bump when the output layout changes, so an old marker no longer matches
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


@dataclass(frozen=True)
class Clip:
    """A bona fide recording a source offers: its path in the build, who says what, and how to get it.

    `probe` returns its duration in seconds (-1 when unreadable) and `write` puts its audio at a path; both
    are called only for the clips the per-speaker selection looks at, so listing a large package stays cheap.
    """

    rel: str
    speaker: str
    language: str
    text: str
    source: str
    probe: Callable[[], float] = field(compare=False, repr=False)
    write: Callable[[Path], None] = field(compare=False, repr=False)


def select_clips(clips: list[Clip], per_speaker: int, min_s: float, max_s: float,
                 rng: np.random.Generator) -> list[Clip]:
    """Up to `per_speaker` clips of `min_s`-`max_s` s per speaker, drawn with `rng`; clips with a transcript
    first (the attacks re-speak transcripts), the others only to fill a speaker's quota. Sorted by path.

    Each speaker draws from its own generator (one seed from `rng`, then the speaker's name), so a change in
    one speaker's clips does not change what the others give.
    """
    by_speaker: dict[str, list[Clip]] = {}
    for clip in sorted(clips, key=lambda c: c.rel):
        by_speaker.setdefault(clip.speaker, []).append(clip)
    chosen = []
    for speaker, speaker_rng in speaker_rngs(sorted(by_speaker), rng):
        items = by_speaker[speaker]
        order = speaker_rng.permutation(len(items))
        ranked = [items[i] for i in order if items[i].text] + [items[i] for i in order if not items[i].text]
        kept = 0
        for clip in ranked:
            if kept >= per_speaker:
                break
            if min_s <= clip.probe() <= max_s:
                chosen.append(clip)
                kept += 1
    return sorted(chosen, key=lambda c: c.rel)


def speaker_rngs(speakers: list[str], rng: np.random.Generator) -> list[tuple[str, np.random.Generator]]:
    """One generator per speaker, from one draw of `rng` and the speaker's name (stable when others change)."""
    base = int(rng.integers(2**63))
    return [(spk, np.random.default_rng([base, zlib.crc32(spk.encode())])) for spk in speakers]


def add_clips(build: Build, clips: list[Clip]) -> None:
    """Write the chosen bona fide clips into the build and record their metadata rows."""
    for clip in clips:
        clip.write(build.root / clip.rel)
        build.add(clip.rel, clip.speaker, "bonafide", "-", "bonafide", clip.language, clip.text, clip.source)


def copier(src: Path) -> Callable[[Path], None]:
    """A Clip writer that copies `src` as it is (the original format: prepare reads ogg, opus, wav)."""
    return lambda dst: copy_atomic(src, dst)
