import json

import numpy as np
import pytest

from pipeline.io import atomic_path, write_json_atomic, write_npy_atomic, write_torch_atomic


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


def test_two_saves_of_the_same_model_give_the_same_bytes(tmp_path):
    import torch

    from pipeline.models import build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model({"arch": "lcnn", "width": 4, "embedding_dim": 8, "n_bins": 32})
    a = save_checkpoint(model, {"teacher": "t"}, tmp_path / "a" / "model.pt")
    b = save_checkpoint(model, {"teacher": "t"}, tmp_path / "b" / "model.pt")
    assert a.read_bytes() == b.read_bytes()
    write_torch_atomic(model.state_dict(), tmp_path / "x.pt")
    write_torch_atomic(model.state_dict(), tmp_path / "y.pt")
    assert (tmp_path / "x.pt").read_bytes() == (tmp_path / "y.pt").read_bytes()
    assert torch.load(tmp_path / "x.pt", weights_only=True).keys() == model.state_dict().keys()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "x.pt", "y.pt"]  # no temp files left
