"""Export format `lhotse`: a RecordingSet and a SupervisionSet per partition, made and checked by lhotse itself.

Writes, under the export folder:
    flac/<FILE_ID>.flac
    hardset_recordings_{train,dev,eval}.jsonl.gz, hardset_supervisions_{train,dev,eval}.jsonl.gz
(lhotse's recipe naming, `<prefix>_<manifest>_<part>.jsonl.gz`). One recording and one supervision per clip,
both with id FILE_ID; the supervision spans the whole clip and carries the speaker, and in `custom` the clip's
label, system, paradigm, parent_id (and parent_file_id), split, sampler, corpus and clip_id. Audio paths are
relative to the export folder (`flac/<FILE_ID>.flac`), so the folder can move: load with
`RecordingSet.from_file(...).with_path_prefix(<export folder>)`. Each pair is checked by
`lhotse.qa.validate_recordings_and_supervisions` before it is written. lhotse writes the jsonl; it is gzipped
here with a fixed header time, so the same export has the same bytes.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pandas as pd

from pipeline.handoff.files import place_all

PREFIX = "hardset"
CUSTOM = ("label", "system", "paradigm", "parent_id", "parent_file_id", "split", "sampler", "corpus", "clip_id")


def _value(v: object) -> object:
    return None if v is None or (isinstance(v, float) and v != v) else v


def lhotse_sets(rows: pd.DataFrame, out: Path):
    """(RecordingSet, SupervisionSet) of one partition's rows, audio already under `out`/flac/."""
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    recordings, supervisions = [], []
    for r in rows.itertuples(index=False):
        rec = Recording.from_file(out / "flac" / f"{r.file_id}.flac", recording_id=r.file_id, relative_path_depth=2)
        recordings.append(rec)
        supervisions.append(SupervisionSegment(
            id=r.file_id, recording_id=r.file_id, start=0.0, duration=rec.duration, channel=0, speaker=str(r.speaker),
            custom={name: _value(getattr(r, name)) for name in CUSTOM}))
    return RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)


def write_gz(manifest, path: Path) -> None:
    """lhotse's jsonl of `manifest`, gzipped at `path` with header time 0 (byte-stable)."""
    plain = path.with_suffix("")  # x.jsonl.gz -> x.jsonl
    manifest.to_file(plain)
    with open(plain, "rb") as src, open(path, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as dst:
        shutil.copyfileobj(src, dst)
    plain.unlink()


def write_lhotse(table: pd.DataFrame, out: Path, link: str) -> dict[str, object]:
    """Write the audio and the validated manifests of every partition in `table`; return counts."""
    from lhotse.qa import validate_recordings_and_supervisions

    placed = place_all(table, {p: out / "flac" for p in table["partition"].unique()}, link)
    counts = {}
    for part, rows in table.groupby("partition", sort=False):
        recordings, supervisions = lhotse_sets(rows, out)
        validate_recordings_and_supervisions(recordings, supervisions)
        write_gz(recordings, out / f"{PREFIX}_recordings_{part}.jsonl.gz")
        write_gz(supervisions, out / f"{PREFIX}_supervisions_{part}.jsonl.gz")
        counts[part] = len(recordings)
    return {"recordings": counts, "audio": placed}
