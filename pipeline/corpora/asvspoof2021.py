"""ASVspoof 2021 LA and DF evaluation sets (keys with codec, transmission and trim conditions).

Licence: ODC-By 1.0. URL: https://www.asvspoof.org/index2021.html (audio on Zenodo; keys at
https://www.asvspoof.org/asvspoof2021/LA-keys-full.tar.gz and DF-keys-full.tar.gz).
Layout: <root>/keys/CM/trial_metadata.txt and <root>/flac/<FILE>.flac (the audio tarball's
ASVspoof2021_<TRACK>_eval folder). Key lines:
LA: `SPEAKER FILE CODEC TRANSMISSION ATTACK KEY TRIM PHASE`
DF: `SPEAKER FILE CODEC SOURCE ATTACK KEY TRIM PHASE VOCODER ...` (extra columns ignored).
The clip-table schema has no codec/trim columns: the adapter filters on them (params `codecs`,
`trim`, `phases`), and every kept clip goes to the eval set `eval:asvspoof2021_<track>`.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.corpora.common import AdapterResult, CorpusError, finish, key_records, known_label, make_clip_id

TRACKS = ("LA", "DF")


def parse_key_line(line: str) -> dict[str, str]:
    """The fields of one 2021 CM key line; ValueError when malformed."""
    parts = line.split()
    if len(parts) < 8:
        raise ValueError(f"expected at least 8 fields, got {len(parts)}")
    speaker, file_id, codec, channel, attack, key, trim, phase = parts[:8]
    if "/" in file_id or "\\" in file_id or file_id in (".", ".."):
        raise ValueError(f"file id {file_id!r} is not a plain file name")
    return {"speaker": speaker, "file": file_id, "codec": codec, "channel": channel, "attack": attack,
            "key": key, "trim": trim, "phase": phase}


def load_asvspoof2021(root: Path, track: str = "LA", codecs: tuple[str, ...] | None = None, trim: str = "any",
                      phases: tuple[str, ...] = ("progress", "eval", "hidden_track")) -> AdapterResult:
    """Read the 2021 LA or DF keys into source rows, filtered by codec, trim and phase."""
    root = Path(root)
    if str(track).upper() not in TRACKS:  # `la` is taken for `LA`: the case carries no meaning here
        raise CorpusError(f"asvspoof2021: track must be one of {TRACKS}, not {track!r}")
    track = str(track).upper()
    corpus = f"asvspoof2021_{track.lower()}"
    keys = root / "keys" / "CM" / "trial_metadata.txt"
    if not keys.is_file():
        raise CorpusError(f"{corpus}: key file {keys} not found: root must hold keys/CM/trial_metadata.txt "
                          f"(from {track}-keys-full.tar.gz) and flac/ (the ASVspoof2021_{track}_eval audio)")
    if trim not in ("any", "trim", "notrim"):
        raise CorpusError(f"{corpus}: trim must be any, trim or notrim, not {trim!r}")
    if isinstance(codecs, str) or isinstance(phases, str):
        raise CorpusError(f"{corpus}: codecs and phases are lists (e.g. codecs: [none, alaw]), not strings")
    rows, rejects = [], []
    text = keys.read_text(encoding="utf-8-sig", errors="replace")
    for where, rec in key_records(text, parse_key_line, corpus, rejects, "key"):
        if (codecs and rec["codec"] not in codecs) or (trim != "any" and rec["trim"] != trim) \
                or rec["phase"] not in phases:
            continue
        clip_id = make_clip_id(corpus, rec["file"])
        path = root / "flac" / f"{rec['file']}.flac"
        label = known_label(rec["key"], corpus, rejects, where, clip_id, path)
        if label is None:
            continue
        rows.append({
            "clip_id": clip_id, "source_path": str(path), "corpus": corpus, "speaker": rec["speaker"],
            "label": label, "system": "-" if label == "bonafide" else rec["attack"],
            "paradigm": "bonafide" if label == "bonafide" else "corpus", "split": f"eval:{corpus}",
        })
    return finish(rows, rejects, corpus, root)
