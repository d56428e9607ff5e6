"""Export lhotse: manifests that lhotse validates and loads, with the clip's fields in `custom`."""

from __future__ import annotations

import gzip

import numpy as np
import soundfile as sf

from pipeline import export


def test_the_lhotse_export_validates_and_loads_as_cuts_from_anywhere(handoff_tables, tmp_path, monkeypatch):
    from lhotse import CutSet, RecordingSet, SupervisionSet
    from lhotse.qa import validate_recordings_and_supervisions

    out = tmp_path / "lhotse"
    assert export.main(["--manifest", str(handoff_tables["train"]), "--dev", str(handoff_tables["dev"]),
                        "--format", "lhotse", "--out", str(out)]) == 0
    monkeypatch.chdir(tmp_path.parent)  # paths are relative to the export folder: with_path_prefix finds them
    recordings = RecordingSet.from_file(out / "hardset_recordings_train.jsonl.gz").with_path_prefix(out)
    supervisions = SupervisionSet.from_file(out / "hardset_supervisions_train.jsonl.gz")
    validate_recordings_and_supervisions(recordings, supervisions, read_data=True)
    assert len(recordings) == len(supervisions) == 12 and not (out / "hardset_recordings_eval.jsonl.gz").exists()
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    fake = next(c for c in cuts if c.supervisions[0].custom["label"] == "spoof")
    custom = fake.supervisions[0].custom
    assert set(custom) == {"label", "system", "paradigm", "parent_id", "parent_file_id", "split", "sampler",
                           "corpus", "clip_id"}
    assert custom["sampler"] == "nc" and custom["parent_id"] and custom["split"] == "train"
    assert custom["parent_file_id"] in {c.recording_id for c in cuts}
    wave, _ = sf.read(str(out / "flac" / f"{fake.recording_id}.flac"), dtype="float32")
    assert np.allclose(fake.load_audio()[0], wave)
    assert gzip.open(out / "hardset_supervisions_dev.jsonl.gz").read().count(b"\n") == 6


def test_the_lhotse_export_has_the_same_bytes_twice(handoff_tables, tmp_path):
    for name in ("a", "b"):
        assert export.main(["--manifest", str(handoff_tables["train"]), "--format", "lhotse", "--link", "copy",
                            "--out", str(tmp_path / name)]) == 0
    for name in ("hardset_recordings_train.jsonl.gz", "hardset_supervisions_train.jsonl.gz", "clip_map.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
