"""Export hf: a DatasetDict that load_from_disk reads, with the right counts, labels and the clips' audio."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from pipeline import export
from pipeline.schema import read_clips


def test_the_hf_export_loads_from_disk_with_the_right_counts_and_audio(handoff_tables, tmp_path):
    import datasets

    out = tmp_path / "hf"
    assert export.main(["--manifest", str(handoff_tables["train"]), "--dev", str(handoff_tables["dev"]), "--eval",
                        str(handoff_tables["eval"]), "--format", "hf", "--out", str(out)]) == 0
    ds = datasets.load_from_disk(str(out))
    assert {k: len(v) for k, v in ds.items()} == {"train": 12, "dev": 6, "eval": 6}
    train = ds["train"]
    assert train.features["label"].names == ["spoof", "bonafide"]
    assert isinstance(train.features["audio"], datasets.Audio) and train.features["audio"].sampling_rate == 16000
    assert sorted(train["label"]) == [0] * 8 + [1] * 4 and set(train["sampler"]) == {"nc"}
    assert set(ds["eval"]["split"]) == {"test"} and set(ds["eval"]["sampler"]) == {None}
    raw = train.cast_column("audio", datasets.Audio(decode=False))  # decoding needs torchcodec + FFmpeg
    clips = read_clips(handoff_tables["train"], groups=("manifest",)).set_index("clip_id")
    for i in (0, 5, 11):
        row = raw[i]
        wave, sr = sf.read(io.BytesIO(row["audio"]["bytes"]), dtype="int16")
        assert sr == 16000 and np.array_equal(wave, sf.read(clips.at[row["clip_id"], "path"], dtype="int16")[0])
        assert row["label"] == (1 if clips.at[row["clip_id"], "label"] == "bonafide" else 0)


def test_the_hf_export_has_the_same_bytes_twice(handoff_tables, tmp_path):
    for name in ("a", "b"):
        assert export.main(["--manifest", str(handoff_tables["train"]), "--format", "hf",
                            "--out", str(tmp_path / name)]) == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
