"""Sharded embeddings through the stages: embed writes emb-*.npy past max_rows_per_file, sample reads them
memory-mapped and picks exactly what it picks from one emb.npy."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import sample
from pipeline.embstore import read_embeddings, write_embeddings
from tests.test_embed import _run, clips, teacher  # noqa: F401  (module fixtures)
from tests.test_sample import setup_stage


def test_embed_writes_row_shards_past_the_limit_and_the_same_rows(tmp_path, clips, teacher):  # noqa: F811
    _run(clips, teacher, tmp_path / "one")
    _run(clips, teacher, tmp_path / "many", max_rows_per_file=5)
    files = sorted(f.name for f in (tmp_path / "many").glob("emb*.npy"))
    assert files == [f"emb-{k:05d}.npy" for k in range(-(-len(clips) // 5))]
    single = np.load(tmp_path / "one" / "emb.npy")
    np.testing.assert_array_equal(read_embeddings(tmp_path / "many")[np.arange(len(clips))], single)


def test_sample_picks_the_same_clips_from_shards_as_from_one_file(tmp_path):
    _, _, argv = setup_stage(tmp_path)
    assert sample.main(argv) == 0
    ref = {m: pd.read_parquet(tmp_path / "manifests" / f"{m}.parquet") for m in sample.METHODS}
    for name in ("t_vocoder", "t_codec"):
        d = tmp_path / "embeddings" / name
        write_embeddings(np.load(d / "emb.npy"), d, max_rows_per_file=50)
        assert not (d / "emb.npy").exists() and len(list(d.glob("emb-*.npy"))) > 2
    argv[argv.index("--out") + 1] = str(tmp_path / "sharded")
    assert sample.main(argv) == 0
    for m in sample.METHODS:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "sharded" / f"{m}.parquet"), ref[m])


def test_embed_shards_computed_through_the_engine_equal_the_local_loop(tmp_path, clips, teacher):  # noqa: F811
    import functools

    from pipeline import embed
    from pipeline.runtime import engine

    _run(clips, teacher, tmp_path / "loop")
    p = embed.EmbedParams(batch_size=4, eval_s=0.5, shard_batches=2)
    partial = tmp_path / "engine" / embed.PARTIAL
    partial.mkdir(parents=True)
    keys = embed.clip_keys(clips)
    factory = functools.partial(embed.batch_function, teacher[1], "resnet", p, embed.torch.device("cpu"), 16000)
    embed._run_on_engine(clips, keys, partial, 0, p, 8, engine.LOCAL, factory)
    done, _ = embed.load_shards(partial, 8)
    assert set(done) == set(keys)
    results = [(k.split("\t", 1)[0], done[k]) for k in keys]
    embed._assemble(partial, results, 8, p, tmp_path / "engine", 1.0, len(clips), {})
    for name in ("emb.npy", "ids.parquet"):
        assert (tmp_path / "engine" / name).read_bytes() == (tmp_path / "loop" / name).read_bytes()
