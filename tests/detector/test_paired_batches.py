"""Parent-paired batches: a bona fide clip and its fakes land in the same, class-balanced batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.detector.batches import PairedSampler, label_indices, parent_indices


def _table() -> pd.DataFrame:
    rows = []
    for p in range(6):
        rows.append({"clip_id": f"b{p}", "label": "bonafide", "parent_id": None})
        for k in range(p % 3):  # 0, 1 or 2 fakes per parent
            rows.append({"clip_id": f"b{p}__f{k}", "label": "spoof", "parent_id": f"b{p}"})
    rows.append({"clip_id": "orphan", "label": "spoof", "parent_id": "not_in_the_manifest"})
    rows.append({"clip_id": "tts", "label": "spoof", "parent_id": None})
    return pd.DataFrame(rows)


def test_parent_indices_point_inside_the_table_only():
    t = _table()
    idx = parent_indices(t)
    assert idx[t.index[t["clip_id"] == "b1__f0"][0]] == t.index[t["clip_id"] == "b1"][0]
    assert idx[t.index[t["clip_id"] == "orphan"][0]] == -1 and (idx[t["label"] == "bonafide"] == -1).all()


def test_batches_are_balanced_and_pair_clips_with_their_parent_or_fake():
    t = _table()
    labels, parents = label_indices(t["label"]), parent_indices(t)
    sampler = PairedSampler(labels, parents, num_samples=64, batch_size=8, seed=3)
    assert sampler.pairs_found() == 6 and len(sampler) == 64
    idx = list(sampler)
    assert len(idx) == 64
    for b in range(0, 64, 8):
        assert labels[idx[b:b + 8]].sum() == 4  # as many bona fide as spoof
    pairs = list(zip(idx[0::2], idx[1::2]))
    assert all(labels[a] != labels[b] for a, b in pairs)
    related = [parents[a] == b or parents[b] == a for a, b in pairs]
    # an anchor with a partner in the table gets it: every fake with its parent, bona fide with one of its fakes
    with_partner = [a for a, _ in pairs if parents[a] >= 0 or a in set(parents[parents >= 0])]
    assert sum(related) >= len(with_partner) > 0


def test_the_sampler_is_deterministic_and_draws_new_batches_each_pass():
    t = _table()
    labels, parents = label_indices(t["label"]), parent_indices(t)
    a = PairedSampler(labels, parents, 32, 8, seed=1)
    b = PairedSampler(labels, parents, 32, 8, seed=1)
    first = list(a)
    assert first == list(b) and list(a) != first


def test_odd_batches_or_one_class_are_value_errors():
    labels = np.array([0, 1, 1])
    with pytest.raises(ValueError, match="even batch size"):
        PairedSampler(labels, np.full(3, -1), 8, 3)
    with pytest.raises(ValueError, match="both classes"):
        PairedSampler(np.array([1, 1]), np.full(2, -1), 8, 2)
