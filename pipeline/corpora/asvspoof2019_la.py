"""ASVspoof 2019 logical access (LA): bona fide VCTK speech and 19 TTS/VC attacks (A01-A19).

Licence: ODC-By 1.0. URL: https://datashare.ed.ac.uk/handle/10283/3336
Layout: <root>/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt
and <root>/ASVspoof2019_LA_{train,dev,eval}/flac/<FILE>.flac. Protocol lines:
`SPEAKER FILE - SYSTEM KEY` (SYSTEM `-` for bona fide). The official train and dev partitions
(speaker-disjoint) become train and dev; eval becomes `eval:asvspoof2019_la`.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.corpora.common import AdapterResult, CorpusError, finish, key_records, known_label, make_clip_id

CORPUS = "asvspoof2019_la"
PROTOCOLS = {
    "train": ("ASVspoof2019.LA.cm.train.trn.txt", "ASVspoof2019_LA_train", "train"),
    "dev": ("ASVspoof2019.LA.cm.dev.trl.txt", "ASVspoof2019_LA_dev", "dev"),
    "eval": ("ASVspoof2019.LA.cm.eval.trl.txt", "ASVspoof2019_LA_eval", f"eval:{CORPUS}"),
}


def parse_protocol_line(line: str) -> tuple[str, str, str, str]:
    """(speaker, file, system, key) of one CM protocol line; ValueError when malformed."""
    parts = line.split()
    if len(parts) != 5:
        raise ValueError(f"expected 5 fields `SPEAKER FILE - SYSTEM KEY`, got {len(parts)}")
    speaker, file_id, _, system, key = parts
    if "/" in file_id or "\\" in file_id or file_id in (".", ".."):
        raise ValueError(f"file id {file_id!r} is not a plain file name")
    return speaker, file_id, system, key


def load_asvspoof2019_la(root: Path, partitions: tuple[str, ...] = ("train", "dev", "eval")) -> AdapterResult:
    """Read the CM protocols of the chosen partitions into source rows."""
    root = Path(root)
    if isinstance(partitions, str):
        partitions = (partitions,)
    unknown = [p for p in partitions if p not in PROTOCOLS]
    if unknown:
        raise CorpusError(f"{CORPUS}: unknown partitions {unknown}; known: {list(PROTOCOLS)} (the official "
                          "eval partition is `eval`; prepare makes its own test split)")
    rows, rejects = [], []
    for part in partitions:
        proto_name, audio_dir, split = PROTOCOLS[part]
        proto = root / "ASVspoof2019_LA_cm_protocols" / proto_name
        if not proto.is_file():
            raise CorpusError(f"{CORPUS}: protocol {proto} not found: root must be the LA folder holding "
                              f"ASVspoof2019_LA_cm_protocols/ and ASVspoof2019_LA_{{train,dev,eval}}/flac/")
        text = proto.read_text(encoding="utf-8-sig", errors="replace")
        lines = key_records(text, parse_protocol_line, CORPUS, rejects, "protocol line", proto.name)
        for where, (speaker, file_id, system, key) in lines:
            clip_id = make_clip_id(CORPUS, file_id)
            path = root / audio_dir / "flac" / f"{file_id}.flac"
            label = known_label(key, CORPUS, rejects, where, clip_id, path)
            if label is None:
                continue
            rows.append({
                "clip_id": clip_id, "source_path": str(path), "corpus": CORPUS, "speaker": speaker,
                "label": label, "system": "-" if label == "bonafide" else system,
                "paradigm": "bonafide" if label == "bonafide" else "corpus", "split": split,
            })
    return finish(rows, rejects, CORPUS, root)
