"""Streamed NC selection equals nc_select on data that fits memory; the sharded embedding store reads back."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.embstore import ShardedEmbeddings, read_embeddings, write_embeddings
from pipeline.sampling import nc_select
from pipeline.sampling.streaming import stream_nc_select


def _data(n: int = 3000, d: int = 16, seed: int = 0, dtype=np.float16):
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n) < 0.3, "bonafide", "spoof")
    centres = rng.standard_normal((6, d)) * 2
    mode = np.where(labels == "bonafide", 0, 1 + rng.integers(0, 5, n))
    return (centres[mode] + rng.standard_normal((n, d))).astype(dtype), labels


@pytest.mark.parametrize("n_clusters", [0, 4])
@pytest.mark.parametrize("normalize", [True, False])
def test_streamed_selection_equals_nc_select_for_any_shard_layout(n_clusters, normalize):
    emb, labels = _data()
    expected = nc_select(emb, labels, 0.2, n_clusters=n_clusters, seed=7, normalize=normalize, chunk_rows=512,
                         class_ratio={"bonafide": 0.5})
    for cuts in ([], [1000, 2000], [7, 513, 2999]):
        shards = np.split(emb, cuts)
        got = stream_nc_select(shards, labels, 0.2, n_clusters=n_clusters, seed=7, normalize=normalize,
                               chunk_rows=512, class_ratio={"bonafide": 0.5})
        np.testing.assert_array_equal(got, expected)


def test_ties_go_to_the_lower_row_as_in_nc_select():
    emb = np.ones((50, 4), dtype=np.float32)          # every row at distance 0 from its class mean
    labels = np.array(["bonafide", "spoof"] * 25)
    got = stream_nc_select([emb[:20], emb[20:]], labels, 0.2, n_clusters=0, seed=0, chunk_rows=8)
    np.testing.assert_array_equal(got, nc_select(emb, labels, 0.2, n_clusters=0, seed=0))
    assert got.tolist() == list(range(10))                # bona fide 0, 2, .., 8 and spoof 1, 3, .., 9


def test_integer_labels_and_a_sharded_store(tmp_path):
    emb, labels = _data(1200)
    ints = (labels == "bonafide").astype(np.int64)
    write_embeddings(emb, tmp_path, max_rows_per_file=500)
    store = read_embeddings(tmp_path)
    assert isinstance(store, ShardedEmbeddings) and store.shape == emb.shape
    got = stream_nc_select(store, ints, 0.1, n_clusters=3, seed=1, chunk_rows=256)
    np.testing.assert_array_equal(got, nc_select(emb, ints, 0.1, n_clusters=3, seed=1, chunk_rows=256))


def test_bad_inputs_are_clear_errors():
    emb, labels = _data(100)
    with pytest.raises(ValueError, match="misaligned"):
        stream_nc_select([emb], labels[:-1], 0.1, n_clusters=0, seed=0)
    with pytest.raises(ValueError, match="no rows"):
        stream_nc_select([emb], np.full(100, "spoof"), 0.1, n_clusters=0, seed=0)
    with pytest.raises(ValueError, match="not among"):
        stream_nc_select([emb], np.where(labels == "spoof", "fake", labels), 0.1, n_clusters=0, seed=0)
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        stream_nc_select([emb], labels, 1.5, n_clusters=0, seed=0)
    with pytest.raises(ValueError, match="different widths"):
        stream_nc_select([emb, emb[:, :3]], np.concatenate([labels, labels]), 0.1, n_clusters=0, seed=0)
    bad = emb.copy()
    bad[42, 0] = np.nan
    with pytest.raises(ValueError, match="row 42"):
        stream_nc_select([bad[:30], bad[30:]], labels, 0.1, n_clusters=0, seed=0, chunk_rows=16)


def test_a_small_matrix_stays_one_emb_npy_byte_for_byte(tmp_path):
    emb, _ = _data(100)
    write_embeddings(emb, tmp_path / "a", max_rows_per_file=100)
    np.save(tmp_path / "ref.npy", emb)
    assert (tmp_path / "a" / "emb.npy").read_bytes() == (tmp_path / "ref.npy").read_bytes()
    assert not list((tmp_path / "a").glob("emb-*.npy"))
    assert isinstance(read_embeddings(tmp_path / "a"), np.memmap)


def test_shards_replace_a_single_file_and_back(tmp_path):
    emb, _ = _data(250)
    write_embeddings(emb, tmp_path, max_rows_per_file=100)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["emb-00000.npy", "emb-00001.npy", "emb-00002.npy"]
    store = read_embeddings(tmp_path)
    rows = np.array([249, 0, 150, 99, 100, 5])
    np.testing.assert_array_equal(store[rows], emb[rows])
    np.testing.assert_array_equal(store[emb[:, 0] > 0], emb[emb[:, 0] > 0])
    np.testing.assert_array_equal(store[10:220], emb[10:220])
    np.testing.assert_array_equal(np.concatenate([b for _, b in store.blocks(64)]), emb)
    write_embeddings(emb[:50], tmp_path, max_rows_per_file=100)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["emb.npy"]


def test_a_broken_store_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="emb.npy"):
        read_embeddings(tmp_path)
    emb, _ = _data(30)
    np.save(tmp_path / "emb-00001.npy", emb)
    with pytest.raises(ValueError, match="numbered"):
        read_embeddings(tmp_path)
    np.save(tmp_path / "emb.npy", emb)
    with pytest.raises(ValueError, match="both"):
        read_embeddings(tmp_path)
    with pytest.raises(ValueError, match="max_rows_per_file"):
        write_embeddings(emb, tmp_path / "x", max_rows_per_file=0)


@pytest.mark.parametrize("n_clusters", [0, 4])
def test_a_row_subset_selects_as_nc_select_on_the_copied_rows(n_clusters):
    from pipeline.sampling import nc_rank
    from pipeline.sampling.streaming import stream_nc

    emb, labels = _data()
    rows = np.flatnonzero(np.random.default_rng(3).random(len(emb)) < 0.6)      # e.g. a pool's train rows
    sub = emb[rows]
    expected = nc_select(sub, labels[rows], 0.2, n_clusters=n_clusters, seed=7, chunk_rows=256)
    ranking = nc_rank(sub, labels[rows], n_clusters=n_clusters, seed=7, chunk_rows=256)
    for shards in ([emb], np.split(emb, [700, 1900])):
        got = stream_nc(shards, labels[rows], 0.2, n_clusters=n_clusters, seed=7, chunk_rows=256, rows=rows,
                        keep_distances=True)
        np.testing.assert_array_equal(got.indices, expected)
        np.testing.assert_array_equal(got.distance, ranking.distance[expected])     # the kept rows' distances
        np.testing.assert_array_equal(got.row_distance(np.arange(len(rows))), ranking.distance)
        if n_clusters:
            np.testing.assert_array_equal(got.cluster, ranking.cluster)
        for c in ("bonafide", "spoof"):
            np.testing.assert_array_equal(got.means[c], ranking.means[c])
        np.testing.assert_array_equal(stream_nc_select(shards, labels[rows], 0.2, n_clusters=n_clusters, seed=7,
                                                       chunk_rows=256, rows=rows), expected)


def test_a_bad_row_subset_is_a_clear_error():
    from pipeline.sampling.streaming import stream_nc

    emb, labels = _data(100)
    for rows in ([3, 2, 5], [0, 0, 1], [-1, 4], [5, 100]):
        with pytest.raises(ValueError, match="ascending distinct indices"):
            stream_nc_select([emb], labels[:len(rows)], 0.5, n_clusters=0, seed=0, rows=rows)
    with pytest.raises(ValueError, match="misaligned"):
        stream_nc_select([emb], labels, 0.5, n_clusters=0, seed=0, rows=[1, 2, 3])
    with pytest.raises(ValueError, match="keep_distances"):
        stream_nc([emb], labels, 0.5, n_clusters=0, seed=0).row_distance(np.arange(3))


def test_streamed_and_in_memory_picks_are_identical_at_the_largest_size_a_test_affords(tmp_path):
    """40k x 256 float16 (the kernel's torch path, many 64K blocks across shard edges), 25% kept, 8 clusters."""
    emb, labels = _data(40_000, 256, seed=3)
    write_embeddings(emb, tmp_path, max_rows_per_file=15_000)
    kw = dict(n_clusters=8, seed=11, chunk_rows=8192)
    expected = nc_select(emb, labels, 0.25, **kw)
    np.testing.assert_array_equal(stream_nc_select(read_embeddings(tmp_path), labels, 0.25, **kw), expected)
    assert len(expected) == sum(int(np.floor(0.25 * (labels == c).sum() + 0.5)) for c in ("bonafide", "spoof"))
