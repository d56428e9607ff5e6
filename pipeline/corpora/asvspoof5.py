"""ASVspoof 5 (2024), track 1: bona fide MLS (LibriVox) speech and TTS/VC attacks A01-A32, with codecs.

Licence: the release's LICENSE.txt (not verified here). URL: https://zenodo.org/records/14498691
Layout: <root>/flac_T/, flac_D/, flac_E_eval/ (16 kHz FLAC) and the protocols, in <root>/ or
<root>/ASVspoof5_protocols/: ASVspoof5.train.tsv, ASVspoof5.dev.track_1.tsv, ASVspoof5.eval.track_1.tsv.
Despite the name these are single-space separated with NO header line, 10 columns:
`SPEAKER_ID FLAC_FILE_NAME SPEAKER_GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP`,
e.g. `D_4461 D_0000000169 F - - - AC1 A14 spoof -`. Every line is a trial: none is skipped as a header
(a known loader bug drops the first one). Train and dev (speaker-disjoint) stay train and dev; eval
becomes `eval:asvspoof5`. Filters: `attacks` (A**) and `attack_tags` (AC*) drop the spoof rows not
listed (bona fide rows stay); `codecs` keeps rows whose CODEC is listed: C01-C11, `-` for uncoded,
or a codec name (opus_wb, ...) looked up in ASVspoof5.codec.config.csv (columns ID, CODEC,
CODEC_Q, Bitrate(kbps); one row per quality; ids written C1-C11 there, C01-C11 in the protocols).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from pipeline.corpora.common import AdapterResult, finish, key_records, known_label, make_clip_id
from pipeline.corpora.sources import as_set, first_existing, require_dir, source_row

CORPUS = "asvspoof5"
PARTS = {
    "train": ("ASVspoof5.train.tsv", ("flac_T",), "train"),
    "dev": ("ASVspoof5.dev.track_1.tsv", ("flac_D",), "dev"),
    "eval": ("ASVspoof5.eval.track_1.tsv", ("flac_E_eval", "flac_E"), f"eval:{CORPUS}"),
}
FIELDS = ("speaker", "file", "gender", "codec", "codec_q", "codec_seed", "attack_tag", "attack", "key", "tmp")
CODEC_CONFIG = "ASVspoof5.codec.config.csv"
UNCODED = {"-", "none", "uncoded"}


def parse_protocol_line(line: str) -> dict[str, str]:
    """The 10 fields of one track-1 protocol line; ValueError when it is not a trial line."""
    parts = line.split()
    if len(parts) != len(FIELDS):
        raise ValueError(f"expected {len(FIELDS)} space-separated fields, got {len(parts)}")
    rec = dict(zip(FIELDS, parts))
    if "/" in rec["file"] or "\\" in rec["file"] or rec["file"].startswith("."):
        raise ValueError(f"file name {rec['file']!r} is not a bare ASVspoof 5 file id")
    if rec["key"].upper() == "KEY":
        raise ValueError("a header line (ASVspoof 5 protocols have none)")
    return rec


def codec_id(value: str) -> str | None:
    """The protocol spelling (C01-C11) of a codec id written C5 or C05; None when it is not one."""
    match = re.fullmatch(r"[Cc](\d{1,2})", value.strip())
    return f"C{int(match.group(1)):02d}" if match else None


def read_codec_config(path: Path) -> dict[str, str]:
    """codec name -> codec id (C01...) from ASVspoof5.codec.config.csv (columns ID and CODEC)."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = {c.strip().lower(): c for c in reader.fieldnames or []}
        if "id" not in cols or "codec" not in cols:
            raise ValueError(f"{path}: expected columns ID and CODEC, got {reader.fieldnames}")
        names = {}
        for rec in reader:
            cid, name = codec_id(rec[cols["id"]] or ""), (rec[cols["codec"]] or "").strip()
            if cid and name:
                names.setdefault(name.lower(), cid)
        return names


def codec_ids(codecs: set[str] | None, proto_dirs: list[Path]) -> set[str] | None:
    """The CODEC column values a `codecs` filter keeps (ids as given, names via the codec config)."""
    if codecs is None:
        return None
    keep, names = set(), None
    for c in codecs:
        if c.lower() in UNCODED:
            keep.add("-")
        elif codec_id(c):
            keep.add(codec_id(c))
        else:
            if names is None:
                config = first_existing([d / CODEC_CONFIG for d in proto_dirs], CORPUS,
                                        f"{CODEC_CONFIG} (needed for the codec name {c!r})")
                names = read_codec_config(config)
            if c.lower() not in names:
                raise ValueError(f"{CORPUS}: unknown codec {c!r}; known: C01-C11, '-', {sorted(names)}")
            keep.add(names[c.lower()])
    return keep


def load_asvspoof5(root: Path, partitions: tuple[str, ...] = ("train", "dev", "eval"),
                   attacks: list[str] | None = None, attack_tags: list[str] | None = None,
                   codecs: list[str] | None = None) -> AdapterResult:
    """Read the track-1 protocols of the chosen partitions into source rows, filtered."""
    root = require_dir(Path(root), CORPUS, "root")
    proto_dirs = [root / "ASVspoof5_protocols", root]
    keep_attacks, keep_tags = as_set(attacks), as_set(attack_tags)
    keep_codecs = codec_ids(as_set(codecs), proto_dirs)
    rows, rejects = [], []
    for part in partitions:
        if part not in PARTS:
            raise ValueError(f"{CORPUS}: unknown partition {part!r}; known: {sorted(PARTS)}")
        name, audio_dirs, split = PARTS[part]
        proto = first_existing([d / name for d in proto_dirs], CORPUS, f"protocol {name}")
        audio = first_existing([root / d for d in audio_dirs], CORPUS, f"{part} audio folder")
        text = proto.read_text(encoding="utf-8-sig")
        for where, rec in key_records(text, parse_protocol_line, CORPUS, rejects, "protocol line", proto.name):
            clip_id = make_clip_id(CORPUS, rec["file"])
            path = audio / f"{rec['file']}.flac"
            label = known_label(rec["key"], CORPUS, rejects, where, clip_id, path)
            if label is None:
                continue
            spoof = label == "spoof"
            if (spoof and keep_attacks is not None and rec["attack"] not in keep_attacks) \
                    or (spoof and keep_tags is not None and rec["attack_tag"] not in keep_tags) \
                    or (keep_codecs is not None and rec["codec"] not in keep_codecs):
                continue
            rows.append(source_row(CORPUS, clip_id, path, rec["speaker"], label, rec["attack"], split))
    return finish(rows, rejects, CORPUS)
