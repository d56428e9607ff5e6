import json

import numpy as np
import pytest

from pipeline.io import atomic_path, write_json_atomic, write_npy_atomic


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_the_old_file_until_replaced(tmp_path):
    target = tmp_path / "m.json"
    write_json_atomic({"a": 1}, target)
    with pytest.raises(ValueError):
        write_json_atomic({"a": float("nan")}, target)  # NaN is refused, old file kept
    assert json.loads(target.read_text()) == {"a": 1}


def test_write_npy_atomic_roundtrips(tmp_path):
    arr = np.arange(6, dtype=np.float16).reshape(2, 3)
    write_npy_atomic(arr, tmp_path / "e.npy")
    assert np.array_equal(np.load(tmp_path / "e.npy"), arr)
