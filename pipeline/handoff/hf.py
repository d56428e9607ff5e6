"""Export format `hf`: a Hugging Face `datasets` DatasetDict (train / dev / eval), saved with save_to_disk.

Writes the export folder that `datasets.load_from_disk(<folder>)` reads: dataset_dict.json and one folder per
partition (Arrow shards, dataset_info.json, state.json). Columns: `audio` (feature Audio at the clips' sample
rate, the FLAC bytes stored inside the dataset, so the folder is self-contained and can move), `label`
(ClassLabel ["spoof", "bonafide"]: 0 = spoof, 1 = bonafide, the project's label index), and file_id, clip_id,
speaker, system, paradigm, parent_id, parent_file_id, split, sampler, corpus (strings; parent_id and sampler
null where the table has none) and duration_s.
Decoding: `datasets` 4+ decodes Audio through torchcodec (which needs FFmpeg); without it read the bytes:
`ds.cast_column("audio", Audio(decode=False))[i]["audio"]["bytes"]` -> soundfile.read(io.BytesIO(...)).
The Arrow table is built here in the Audio feature's own storage type (bytes + path), which needs no
torchcodec, and the dataset's fingerprint is the sha256 of its content, so the same export has the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from pipeline.schema import LABEL_INDEX

STRINGS = ("file_id", "clip_id", "speaker", "system", "paradigm", "parent_id", "parent_file_id", "split", "sampler",
           "corpus")
CLASS_NAMES = sorted(LABEL_INDEX, key=LABEL_INDEX.get)  # ["spoof", "bonafide"]: ClassLabel index = LABEL_INDEX


def _strings(values: pd.Series) -> list[str | None]:
    return [None if v is None or (isinstance(v, float) and v != v) else str(v) for v in values]


def partition_dataset(rows: pd.DataFrame, sample_rate: int):
    """A datasets.Dataset of one partition's rows (audio bytes read from the rows' paths)."""
    import datasets
    import pyarrow as pa

    features = datasets.Features({"audio": datasets.Audio(sampling_rate=sample_rate),
                                  "label": datasets.ClassLabel(names=CLASS_NAMES),
                                  **{name: datasets.Value("string") for name in STRINGS},
                                  "duration_s": datasets.Value("float64")})
    # the file's own bytes; `path` names the format (by its extension) for the decoder
    audio = [{"bytes": Path(p).read_bytes(), "path": f"{fid}{Path(p).suffix.lower()}"}
             for p, fid in zip(rows["path"], rows["file_id"])]
    columns = {"audio": pa.array(audio, type=features["audio"]()),
               "label": pa.array([LABEL_INDEX[x] for x in rows["label"]], type=pa.int64()),
               **{name: pa.array(_strings(rows[name]), type=pa.string()) for name in STRINGS},
               "duration_s": pa.array(rows["duration_s"].astype(float).tolist(), type=pa.float64())}
    table = pa.table(columns)
    digest = hashlib.sha256(json.dumps(table.drop(["audio"]).to_pylist(), sort_keys=True).encode())
    for item in audio:
        digest.update(item["bytes"])
    info = datasets.DatasetInfo(description="hardset export (python -m pipeline export --format hf)",
                                features=features)
    return datasets.Dataset(table, info=info, fingerprint=digest.hexdigest()[:16])


def write_hf(table: pd.DataFrame, out: Path, sample_rate: int) -> dict[str, object]:
    """Save the DatasetDict of every partition in `table` into `out`; return row counts."""
    import datasets

    parts = {part: partition_dataset(rows, sample_rate) for part, rows in table.groupby("partition", sort=False)}
    datasets.DatasetDict(parts).save_to_disk(str(out))
    return {"rows": {part: len(ds) for part, ds in parts.items()}}
