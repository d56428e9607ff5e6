"""Codecfake (Xie et al., 2024): VCTK and AISHELL-3 speech re-synthesised by neural codecs, plus
codec-based audio language model (ALM) fakes.

Licence: CC BY-NC-ND 4.0 (non-commercial). URL: https://github.com/xieyuankun/Codecfake (audio on
Zenodo, records 11171708, 11171720, 11171724, 11169872, 11169781, 11125029).
Layout: <root>/label/<part>.txt and <root>/train/, <root>/dev/, <root>/test/<cond>/ (cond C1-C7 codec
tests, A1-A3 ALM tests; <root>/<cond>/ is accepted too). Label lines: `filename real|fake codec_index`,
whitespace-separated, e.g. `SSB13650058.wav real 0`, `F01_SSB13650058.wav fake 1`. A fake `Fnn_<id>`
is codec nn's re-synthesis of the real `<id>` of the same part: `<id>` is its parent, and its speaker
is the VCTK (`p225`) or AISHELL-3 (`SSB1365`) speaker in the id. train and dev stay train and dev
(`official_split: false` gives them prepare's speaker-disjoint split instead, should their speakers
cross); each test condition becomes its own eval set `eval:codecfake_xie_<cond>` (the paper reports
one EER per condition). System: `F<nn>` from the codec index (train/dev) or the condition name.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

from pipeline.corpora.common import AdapterResult, finish, key_records, make_clip_id, normalise_label, reject
from pipeline.corpora.sources import first_existing, join_inside, require_dir, source_row

CORPUS = "codecfake_xie"
CONDITIONS = ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "A1", "A2", "A3")
PARTS = ("train", "dev", *CONDITIONS)
WORDS = {"real": "bonafide", "fake": "spoof"}
FAKE_PREFIX = re.compile(r"F(\d+)_(.+)")
SPEAKER = re.compile(r"(p\d{3}|s\d+|SSB\d{4})")


def speaker_of(stem: str) -> str:
    """VCTK (`p225_001`) or AISHELL-3 (`SSB13650058` -> `SSB1365`) speaker of a Codecfake file stem."""
    match = FAKE_PREFIX.fullmatch(stem)
    found = SPEAKER.match(match.group(2) if match else stem)
    return found.group(1) if found else "unknown"


def parse_label_line(line: str) -> tuple[str, str, str]:
    """(file name, label word, codec index) of one label line; ValueError when malformed."""
    parts = line.split()
    if len(parts) not in (2, 3):
        raise ValueError(f"expected `filename real|fake codec_index`, got {len(parts)} fields")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else "-"


def _label_line(line: str, audio: Path) -> tuple[str, str, str]:
    """A label line whose file stays inside the part's audio folder (ValueError otherwise)."""
    name, word, index = parse_label_line(line)
    join_inside(audio, name)
    return name, word, index


def load_codecfake_xie(root: Path, partitions: list[str] | None = None, official_split: bool = True) -> AdapterResult:
    """Read the label files of the chosen parts (default: every part whose label file exists)."""
    root = require_dir(Path(root), CORPUS, "root")
    labels = require_dir(root / "label", CORPUS, "label folder")
    parts = list(partitions) if partitions is not None else [p for p in PARTS if (labels / f"{p}.txt").is_file()]
    if not parts:
        raise FileNotFoundError(f"{CORPUS}: no label/<part>.txt for any of {PARTS} in {labels}")
    rows, rejects = [], []
    for part in parts:
        if part not in PARTS:
            raise ValueError(f"{CORPUS}: unknown partition {part!r}; known: {PARTS}")
        proto = first_existing([labels / f"{part}.txt"], CORPUS, f"label file for {part}")
        if part in ("train", "dev"):
            audio, split = root / part, part if official_split else None
        else:
            audio = first_existing([root / "test" / part, root / part], CORPUS, f"audio folder of {part}")
            split = f"eval:{CORPUS}_{part.lower()}"
        lines = key_records(proto.read_text(encoding="utf-8-sig"), partial(_label_line, audio=audio), CORPUS,
                            rejects, "label line", proto.name)
        for where, (name, word, index) in lines:
            stem = Path(name).stem
            clip_id = make_clip_id(CORPUS, f"{part}_{stem}")
            label = WORDS.get(word.lower()) or normalise_label(word)
            if label is None:
                rejects.append(reject(CORPUS, f"unknown label {word!r} ({where})", clip_id, audio / name))
                continue
            fake = FAKE_PREFIX.fullmatch(stem)
            parent = make_clip_id(CORPUS, f"{part}_{fake.group(2)}") if fake else None
            system = part if part in CONDITIONS else (f"F{int(index):02d}" if index.isdigit() else "unknown")
            rows.append(source_row(CORPUS, clip_id, audio / name, speaker_of(stem), label, system, split, parent))
    return finish(rows, rejects, CORPUS)
