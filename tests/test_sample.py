"""Tests of the sample stage: manifests per method, train/dev, merge of pools, diagnostics, bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import sample
from pipeline.sampling.budget import merge_picks
from pipeline.schema import MANIFEST_COLUMNS, read_clips, write_clips


@pytest.fixture(autouse=True)
def _one_faiss_thread():
    import faiss

    faiss.omp_set_num_threads(1)


def clip_rows(n_speakers: int = 10, per_speaker: int = 6) -> pd.DataFrame:
    """A valid clip table (no audio needed here): bona fide + vocoder/codec reconstructions, speaker splits."""
    rows = []
    splits = ["train"] * 6 + ["dev"] * 2 + ["test"] * 2
    for s in range(n_speakers):
        for c in range(per_speaker):
            parent = f"demo_s{s}_c{c}"
            for system, paradigm in (("-", "bonafide"), ("hifigan", "vocoder"), ("world", "vocoder"),
                                     ("encodec", "codec")):
                rows.append({
                    "clip_id": parent if system == "-" else f"{parent}__{system}", "path": f"data/x/{parent}.flac",
                    "corpus": "demo", "speaker": f"spk{s}", "label": "bonafide" if system == "-" else "spoof",
                    "system": system, "paradigm": paradigm, "parent_id": None if system == "-" else parent,
                    "split": splits[s % len(splits)], "duration_s": 1.0, "sample_rate": 16000,
                    "bandwidth_hz": 8000.0, "leading_silence_s": 0.0, "trailing_silence_s": 0.0, "rms_dbfs": -20.0,
                    "noise_floor_dbfs": -60.0, "spectral_tilt_db": -6.0, "sha256": "0" * 64,
                    "source": f"raw/{parent}.wav", "matched": None,
                })
    return pd.DataFrame(rows)


def write_pool(root, teacher: str, clips: pd.DataFrame, paradigms, d: int = 12, seed: int = 0,
               scores: bool = True, threshold: float = 0.0):
    """emb.npy + ids.parquet (+ the teacher's scores: confident, sure of the class) + info.json for the pool of
    `teacher` (rows of the given paradigms), class-separated."""
    pool = clips[clips["paradigm"].isin(paradigms)]
    rng = np.random.default_rng(seed)
    emb = rng.normal(0, 1, (len(pool), d))
    emb[:, 0] += np.where(pool["label"] == "bonafide", 4.0, -4.0)
    emb[:, 1] += pool["system"].map({"-": 0, "hifigan": 3, "world": -3, "encodec": 6}).to_numpy()
    out = root / teacher
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "emb.npy", emb.astype(np.float16))
    ids = pd.DataFrame({"clip_id": pool["clip_id"].to_numpy()})
    if scores:
        ids["score"] = threshold + np.where(pool["label"] == "bonafide", 5.0, -5.0) + rng.normal(0, 1, len(pool))
    ids.to_parquet(out / "ids.parquet")
    (out / "info.json").write_text(json.dumps({"score_threshold": threshold, "score_threshold_source": "test"}))
    return pool


def setup_stage(tmp_path, method: str = "nc", ratio: float = 0.5):
    clips = clip_rows()
    clips_path = tmp_path / "clips.parquet"
    write_clips(clips, clips_path)
    emb_dir = tmp_path / "embeddings"
    write_pool(emb_dir, "t_vocoder", clips, ["bonafide", "vocoder"], seed=1)
    write_pool(emb_dir, "t_codec", clips, ["bonafide", "codec"], seed=2)
    params = {
        "seed": 3, "runtime": {"threads": 1},
        "teachers": {"t_vocoder": {"arch": "resnet", "pool": {"paradigms": ["bonafide", "vocoder"]}},
                     "t_codec": {"arch": "convnext", "pool": {"paradigms": ["bonafide", "codec"]}}},
        "sample": {"method": method, "ratio": ratio, "class_ratio": {}, "n_clusters": 2, "normalize": True,
                   "index": "flat", "ivf_nlist": 4, "ivf_nprobe": 2, "max_points_per_centroid": 64,
                   "kmeans_iters": 5},
    }
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    argv = ["--params", str(params_path), "--clips", str(clips_path), "--embeddings", str(emb_dir),
            "--out", str(tmp_path / "manifests"), "--diagnostics", str(tmp_path / "sampling.json")]
    return clips, params, argv


def test_stage_writes_every_manifest_train_dev_and_diagnostics(tmp_path):
    clips, _, argv = setup_stage(tmp_path)
    assert sample.main(argv) == 0
    out = tmp_path / "manifests"
    manifests = {m: read_clips(out / f"{m}.parquet", groups=("manifest",)) for m in (*sample.METHODS, "train", "dev")}
    for m in sample.METHODS:
        df = manifests[m]
        assert set(MANIFEST_COLUMNS) <= set(df.columns)
        assert (df["sampler"] == m).all() and (df["split"] == "train").all()
        assert df["clip_id"].is_unique
        assert df["teacher"].isin(["t_vocoder", "t_codec"]).all()
        assert df["cluster"].isna().eq(df["label"] == "bonafide").all()
    pd.testing.assert_frame_equal(manifests["train"], manifests["nc"])
    train = clips[clips["split"] == "train"]
    # full = every train clip of the union of the pools (bona fide shared by both pools appears once)
    assert set(manifests["full"]["clip_id"]) == set(train["clip_id"])
    # equal budgets at ratio 0.5 over the merged train set: 36 distinct bona fide -> 18, 108 spoof -> 54, split
    # over the pools by pool size (bona fide 9 + 9, spoof 36 + 18), union topped up to exactly the budget
    nc = manifests["nc"]
    assert (nc["system"] == "hifigan").sum() + (nc["system"] == "world").sum() == 36
    assert (nc["system"] == "encodec").sum() == 18
    for m in ("nc", "random", "kcenter", "farthest", "margin", "generator_balanced"):
        assert manifests[m]["label"].value_counts().to_dict() == {"bonafide": 18, "spoof": 54}, m
    # generator_balanced: 54 fakes over 3 systems, 18 each (hifigan + world from one pool, encodec the other)
    assert manifests["generator_balanced"]["system"].value_counts().to_dict() == {"-": 18, "hifigan": 18,
                                                                                  "world": 18, "encodec": 18}
    dev = manifests["dev"]
    assert (dev["split"] == "dev").all() and (dev["sampler"] == "dev").all()
    assert set(dev["clip_id"]) == set(clips.loc[clips["split"] == "dev", "clip_id"])
    assert (dev.loc[dev["label"] == "bonafide", "teacher"] == "t_vocoder").all()   # the first pool containing it
    diag = json.loads((tmp_path / "sampling.json").read_text())
    assert set(diag["pools"]) == {"t_vocoder", "t_codec"}
    pool = diag["pools"]["t_vocoder"]
    assert pool["before"]["label"] == {"bonafide": 36, "spoof": 72}
    assert pool["after"]["nc"]["label"] == {"bonafide": 9, "spoof": 36}    # the pool's quotas
    assert pool["after"]["nc"]["system"] == {"-": 9, "hifigan": 18, "world": 18}   # k-means keeps both systems
    budget = diag["budget"]
    assert budget["per_class"] == {"bonafide": 18, "spoof": 54}
    assert budget["train_clips"] == {"bonafide": 36, "spoof": 108}
    assert budget["pools"]["t_codec"]["quota"] == {"bonafide": 9, "spoof": 18}
    for m in ("nc", "random", "kcenter", "farthest", "margin", "generator_balanced"):
        assert diag["merged"][m]["label"] == budget["per_class"], m
        fill = budget["fill"][m]["bonafide"]
        assert fill["picked"] + fill["added"] - fill["trimmed"] == 18
    assert set(pool["before"]) == {"n", "label", "paradigm", "system", "speaker"}
    assert pool["nc1"] > 0 and "bonafide|spoof" in pool["class_mean_distance"]
    assert diag["merged"]["full"]["n"] == len(train)


def test_a_clip_picked_by_several_pools_keeps_its_smallest_distance_row():
    a = pd.DataFrame({"clip_id": ["x", "y"], "distance": [0.5, 0.1], "teacher": ["A", "A"]})
    b = pd.DataFrame({"clip_id": ["x", "z"], "distance": [0.2, 0.3], "teacher": ["B", "B"]})
    merged = merge_picks([a, b])
    assert merged["clip_id"].tolist() == ["y", "x", "z"]
    assert merged.set_index("clip_id").loc["x", "teacher"] == "B"


def test_same_seed_gives_the_same_manifests(tmp_path):
    _, _, argv = setup_stage(tmp_path / "a")
    _, _, argv2 = setup_stage(tmp_path / "b")
    assert sample.main(argv) == 0 and sample.main(argv2) == 0
    for m in (*sample.METHODS, "train", "dev"):
        a = pd.read_parquet(tmp_path / "a" / "manifests" / f"{m}.parquet")
        b = pd.read_parquet(tmp_path / "b" / "manifests" / f"{m}.parquet")
        pd.testing.assert_frame_equal(a, b)
    assert (tmp_path / "a" / "sampling.json").read_text() == (tmp_path / "b" / "sampling.json").read_text()


def test_sample_method_picks_the_train_manifest(tmp_path):
    _, _, argv = setup_stage(tmp_path, method="random")
    assert sample.main(argv) == 0
    train = pd.read_parquet(tmp_path / "manifests" / "train.parquet")
    assert (train["sampler"] == "random").all()


def test_ids_not_in_the_clip_tables_give_a_clear_error(tmp_path):
    _, _, argv = setup_stage(tmp_path)
    ids_path = tmp_path / "embeddings" / "t_codec" / "ids.parquet"
    ids = pd.read_parquet(ids_path)
    ids.loc[3, "clip_id"] = "ghost_clip"
    ids.to_parquet(ids_path)
    with pytest.raises(ValueError, match="t_codec: 1 embedded ids are not in the clip tables.*ghost_clip"):
        sample.main(argv)


def test_misaligned_embeddings_and_ids_give_a_clear_error(tmp_path):
    _, _, argv = setup_stage(tmp_path)
    ids_path = tmp_path / "embeddings" / "t_vocoder" / "ids.parquet"
    pd.read_parquet(ids_path).iloc[:-1].to_parquet(ids_path)
    with pytest.raises(ValueError, match="t_vocoder.*misaligned"):
        sample.main(argv)


@pytest.mark.parametrize("streamed", [False, True])
def test_nan_embeddings_in_a_pool_give_a_clear_error(tmp_path, streamed):
    clips, params, argv = setup_stage(tmp_path)
    path = tmp_path / "embeddings" / "t_codec" / "emb.npy"
    emb = np.load(path)
    emb[0, 0] = np.nan
    np.save(path, emb)
    if streamed:
        argv = _stream(params, argv, tmp_path, "streamed", stream_above_rows=10)
    with pytest.raises(ValueError, match="t_codec.*NaN"):
        sample.main(argv)
    assert not (tmp_path / "streamed").exists()


@pytest.mark.parametrize("streamed", [False, True])
def test_a_pool_without_fakes_in_train_gives_a_clear_error(tmp_path, streamed):
    clips, params, argv = setup_stage(tmp_path)
    write_pool(tmp_path / "embeddings", "t_codec", clips, ["bonafide"])
    if streamed:
        argv = _stream(params, argv, tmp_path, "streamed", stream_above_rows=10)
    with pytest.raises(ValueError, match="t_codec: class 'spoof' has no rows"):
        sample.main(argv)


def test_missing_embeddings_name_the_embed_stage(tmp_path):
    _, _, argv = setup_stage(tmp_path)
    (tmp_path / "embeddings" / "t_codec" / "emb.npy").unlink()
    with pytest.raises(FileNotFoundError, match="pipeline embed t_codec"):
        sample.main(argv)


@pytest.mark.parametrize("bad, match", [
    ({"ratio": 0}, r"sample.ratio must be in \(0, 1\]"),
    ({"ratio": 1.2}, r"sample.ratio must be in \(0, 1\]"),
    ({"method": "best"}, r"sample.method: unknown value 'best'; known: \['nc'"),
    ({"class_ratio": {"spoof": 0}}, r"class_ratio\['spoof'\]"),
    ({"class_ratio": {"fake": 0.5}}, r"sample.class_ratio: unknown names \['fake'\]; known: \['bonafide', 'spoof'\]"),
    ({"class_ratio": 0.5}, "sample.class_ratio: expected a mapping"),
    ({"n_clusters": -1}, "sample.n_clusters: must be >= 0"),
    ({"typo_key": 1}, "unknown keys"),
    ({"stream_above_rows": -1}, "sample.stream_above_rows: must be >= 0"),
    ({"stream_above_rows": 1.5}, "sample.stream_above_rows: expected an integer"),
    ({"stream_diagnostics_rows": 1}, "sample.stream_diagnostics_rows: must be >= 2"),
    ({"nc": {"order": "middle"}}, r"sample.nc.order: unknown value 'middle'; known: \['nearest', 'farthest', "),
    ({"nc": {"orders": "x"}}, r"params sample.nc: unknown keys \['orders'\]"),
    ({"margin": {"typical_share": -0.1}}, "sample.margin.typical_share: must be >= 0"),
    ({"margin": "half"}, "sample.margin: expected a mapping"),
])
def test_bad_sample_params_give_a_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        sample.SampleParams.from_params({"method": "nc", "ratio": 0.5, **bad})


def test_a_budget_smaller_than_the_number_of_pools_is_still_exact(tmp_path):
    _, _, argv = setup_stage(tmp_path, ratio=0.02)       # 36 bona fide -> 1 clip, 108 spoofs -> 2, over 2 pools
    assert sample.main(argv) == 0
    diag = json.loads((tmp_path / "sampling.json").read_text())
    assert diag["budget"]["per_class"] == {"bonafide": 1, "spoof": 2}
    assert diag["budget"]["pools"]["t_codec"]["quota"]["bonafide"] == 0
    for m in ("nc", "random", "kcenter", "farthest", "margin", "generator_balanced"):
        df = pd.read_parquet(tmp_path / "manifests" / f"{m}.parquet")
        assert df["label"].value_counts().to_dict() == {"bonafide": 1, "spoof": 2}, m


def _stream(params, argv, tmp_path, out: str, **sample_params):
    """Re-write params.yaml with `sample_params` and point --out/--diagnostics at `out`."""
    params["sample"].update(sample_params)
    path = tmp_path / f"params_{out}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    argv = list(argv)
    argv[argv.index("--params") + 1] = str(path)
    argv[argv.index("--out") + 1] = str(tmp_path / out)
    argv[argv.index("--diagnostics") + 1] = str(tmp_path / f"{out}.json")
    return argv


def _shard(tmp_path, rows: int = 50):
    from pipeline.embstore import write_embeddings

    for name in ("t_vocoder", "t_codec"):
        d = tmp_path / "embeddings" / name
        write_embeddings(np.load(d / "emb.npy"), d, max_rows_per_file=rows)


STREAMED = ("nc", "random", "farthest", "full", "margin", "generator_balanced", "dev", "train")


@pytest.mark.parametrize("ratio", [0.5, 0.4, 0.02])
def test_streamed_pools_give_the_in_memory_manifests(tmp_path, ratio):
    # 0.5 and 0.4: the pools' bona fide picks overlap, so the union is topped up; at 0.4 each pool's top-up
    # candidates are cut to 2 x budget (28 of its 36 bona fide rows); 0.02: a class quota of 0 in a pool
    _, params, argv = setup_stage(tmp_path, ratio=ratio)
    _shard(tmp_path)
    assert sample.main(_stream(params, argv, tmp_path, "memory")) == 0
    assert sample.main(_stream(params, argv, tmp_path, "streamed", stream_above_rows=10)) == 0
    for m in STREAMED:      # same rows, same order, same distances and clusters
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "streamed" / f"{m}.parquet"),
                                      pd.read_parquet(tmp_path / "memory" / f"{m}.parquet"))
    assert not (tmp_path / "streamed" / "kcenter.parquet").exists()
    mem, st = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("memory", "streamed"))
    mem["budget"]["fill"].pop("kcenter")
    assert st["budget"] == mem["budget"]
    if ratio == 0.4:
        assert st["budget"]["per_class"]["bonafide"] * 2 < st["budget"]["pools"]["t_codec"]["train_clips"]["bonafide"]
        assert st["budget"]["fill"]["random"]["bonafide"]["added"] > 0
    assert "kcenter" not in st["merged"] and st["stream"]["skipped"].keys() == {"kcenter"}
    pool = st["pools"]["t_vocoder"]
    assert pool["streamed"] and pool["diagnostics_rows"] == pool["n_train"] == 108    # below the limit: every row
    assert pool["nc1"] == pytest.approx(mem["pools"]["t_vocoder"]["nc1"], rel=1e-9)
    assert pool["class_mean_distance"] == mem["pools"]["t_vocoder"]["class_mean_distance"]
    assert pool["before"] == mem["pools"]["t_vocoder"]["before"]
    assert pool["after"]["nc"] == mem["pools"]["t_vocoder"]["after"]["nc"]


@pytest.mark.parametrize("ratio", [0.5, 0.02])
def test_one_streamed_pool_keeps_no_top_up_candidates_and_gives_the_in_memory_manifests(tmp_path, ratio, monkeypatch):
    # one pool: its picks are exactly the budget, so the streamed stage keeps no top-up candidates (memory) and
    # fill_to_budget adds and trims nothing; the manifests are still the in-memory path's
    from pipeline.sampling import budget as bd

    _, params, argv = setup_stage(tmp_path, ratio=ratio)
    params["teachers"].pop("t_codec")
    _shard(tmp_path)
    assert sample.main(_stream(params, argv, tmp_path, "memory")) == 0
    seen = []
    real = bd.fill_to_budget
    monkeypatch.setattr(bd, "fill_to_budget", lambda picked, cand, budgets: seen.append(len(cand)) or
                        real(picked, cand, budgets))
    assert sample.main(_stream(params, argv, tmp_path, "streamed", stream_above_rows=10)) == 0
    assert seen and set(seen) == {0}
    for m in STREAMED:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "streamed" / f"{m}.parquet"),
                                      pd.read_parquet(tmp_path / "memory" / f"{m}.parquet"))
    st = json.loads((tmp_path / "streamed.json").read_text())
    assert all(v["added"] == v["trimmed"] == 0 for fill in st["budget"]["fill"].values() for v in fill.values())


def test_streamed_pools_never_read_more_than_a_block_of_rows(tmp_path, monkeypatch):
    from pipeline.embstore import ShardedEmbeddings
    from pipeline.sampling import stream_pool

    _, params, argv = setup_stage(tmp_path)
    _shard(tmp_path, rows=30)
    small = dict(max_points_per_centroid=8, stream_diagnostics_rows=20)     # k-means sample 2 x 8 rows
    assert sample.main(_stream(params, argv, tmp_path, "memory", **small)) == 0
    limit = 20
    read = ShardedEmbeddings.__getitem__
    seen = []

    def bounded(self, rows):
        out = read(self, rows)
        if len(out) > limit:
            raise AssertionError(f"read {len(out)} rows at once")
        seen.append(len(out))
        return out

    monkeypatch.setattr(ShardedEmbeddings, "__getitem__", bounded)
    monkeypatch.setattr(stream_pool, "CHUNK_ROWS", 16)
    with pytest.raises(AssertionError, match="read 108 rows"):       # the in-memory path copies the train rows
        sample.main(_stream(params, argv, tmp_path, "memory2"))
    assert sample.main(_stream(params, argv, tmp_path, "streamed", stream_above_rows=10)) == 0
    assert seen and max(seen) <= limit
    mem = pd.read_parquet(tmp_path / "memory" / "nc.parquet")
    st = pd.read_parquet(tmp_path / "streamed" / "nc.parquet")
    # blocks of 16 rows instead of 65536 sum the class means in another order: distances agree to float32
    # rounding, the picks (and their order) are the same on this well separated pool
    assert st["clip_id"].tolist() == mem["clip_id"].tolist()
    np.testing.assert_allclose(st["distance"], mem["distance"], rtol=1e-5)
    diag = json.loads((tmp_path / "streamed.json").read_text())
    pool = diag["pools"]["t_vocoder"]
    assert pool["diagnostics_rows"] == 20 and pool["diagnostics_selected_rows"] == 20 and pool["n_train"] == 108
    assert pool["nc1"] > 0 and pool["nc1_selected"] > 0


def test_kcenter_on_a_streamed_pool_is_a_one_line_error(tmp_path, capsys):
    from pipeline.__main__ import main

    _, params, argv = setup_stage(tmp_path, method="kcenter")
    assert main(["sample", *_stream(params, argv, tmp_path, "streamed", stream_above_rows=100)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: params sample.method: kcenter cannot run on a pool above "
                              "sample.stream_above_rows (100 train rows)")
    assert not (tmp_path / "streamed").exists()
    # below the threshold (108 train rows per pool at most) kcenter still runs in memory
    assert main(["sample", *_stream(params, argv, tmp_path, "memory", stream_above_rows=108)]) == 0
    assert (tmp_path / "memory" / "kcenter.parquet").exists()


def _plant_scores(tmp_path, teacher: str, scores: dict[str, float]) -> None:
    path = tmp_path / "embeddings" / teacher / "ids.parquet"
    ids = pd.read_parquet(path)
    ids["score"] = [scores.get(c, s) for c, s in zip(ids["clip_id"], ids["score"])]
    ids.to_parquet(path)


def test_margin_keeps_the_clips_the_teachers_are_least_sure_of(tmp_path):
    clips, params, argv = setup_stage(tmp_path, ratio=0.2)          # 36 bona fide train clips -> 7 kept
    write_pool(tmp_path / "embeddings", "t_codec", clips, ["bonafide", "codec"], seed=2, threshold=-2.0)
    train_bona = clips[(clips["split"] == "train") & (clips["label"] == "bonafide")]["clip_id"].tolist()
    at_threshold, disputed = train_bona[:4], train_bona[10:12]
    _plant_scores(tmp_path, "t_vocoder", {**{c: 0.0 for c in at_threshold}, **{c: 4.0 for c in disputed}})
    _plant_scores(tmp_path, "t_codec", {**{c: -2.0 for c in at_threshold}, **{c: -6.0 for c in disputed}})
    argv = _stream(params, argv, tmp_path, "out", margin={"typical_share": 0.0})
    assert sample.main(argv) == 0
    margin = pd.read_parquet(tmp_path / "out" / "margin.parquet")
    bona = margin.loc[margin["label"] == "bonafide", "clip_id"].tolist()
    # at the threshold in both pools, or sure of opposite classes (the scaled margins average to ~0)
    assert len(bona) == 7 and set(at_threshold + disputed) <= set(bona)
    nc = pd.read_parquet(tmp_path / "out" / "nc.parquet")
    assert not set(at_threshold + disputed) <= set(nc["clip_id"])
    diag = json.loads((tmp_path / "out.json").read_text())["methods"]
    assert diag["margin"]["teachers"]["t_codec"] == {"threshold": -2.0, "threshold_source": "test"}
    assert diag["margin"]["typical_share"] == 0.0 and diag["skipped"] == {}


def test_nc_order_sets_the_nc_manifest_at_the_same_budget(tmp_path):
    _, params, argv = setup_stage(tmp_path, ratio=0.25)
    dist = {}
    for order in ("nearest", "farthest", "stratified"):
        assert sample.main(_stream(params, argv, tmp_path, order, nc={"order": order, "strata": 3})) == 0
        nc = pd.read_parquet(tmp_path / order / "nc.parquet")
        assert nc["label"].value_counts().to_dict() == {"bonafide": 9, "spoof": 27}, order
        dist[order] = nc.groupby("label")["distance"].mean()
        assert json.loads((tmp_path / f"{order}.json").read_text())["methods"]["nc_order"]["order"] == order
    assert (dist["nearest"] < dist["stratified"]).all() and (dist["stratified"] < dist["farthest"]).all()
    near = pd.read_parquet(tmp_path / "nearest" / "nc.parquet")
    assert (near["sampler"] == "nc").all() and near["cluster"].notna().sum() == 27


@pytest.mark.parametrize("order", ["farthest", "stratified"])
def test_streamed_pools_give_the_in_memory_nc_orders(tmp_path, order):
    _, params, argv = setup_stage(tmp_path, ratio=0.4)
    _shard(tmp_path)
    assert sample.main(_stream(params, argv, tmp_path, "memory", nc={"order": order})) == 0
    assert sample.main(_stream(params, argv, tmp_path, "streamed", stream_above_rows=10)) == 0
    for m in ("nc", "margin", "generator_balanced", "train"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "streamed" / f"{m}.parquet"),
                                      pd.read_parquet(tmp_path / "memory" / f"{m}.parquet"))


def test_without_teacher_scores_margin_is_skipped_and_as_the_method_a_one_line_error(tmp_path, capsys):
    from pipeline.__main__ import main

    clips, params, argv = setup_stage(tmp_path)
    for name, paradigms in (("t_vocoder", ["bonafide", "vocoder"]), ("t_codec", ["bonafide", "codec"])):
        write_pool(tmp_path / "embeddings", name, clips, paradigms, seed=1, scores=False)
    assert sample.main(argv) == 0
    assert not (tmp_path / "manifests" / "margin.parquet").exists()
    assert (tmp_path / "manifests" / "generator_balanced.parquet").exists()
    assert "no teacher scores" in json.loads((tmp_path / "sampling.json").read_text())["methods"]["skipped"]["margin"]
    assert main(["sample", *_stream(params, argv, tmp_path, "m", method="margin")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "error: params sample.method: margin cannot run: no teacher scores")
    assert main(["sample", *_stream(params, argv, tmp_path, "n", method="nc", margin={"teachers": ["t_codec"]})]) == 2
    assert "sample.margin.teachers: ['t_codec'] have no scores" in capsys.readouterr().err
    assert main(["sample", *_stream(params, argv, tmp_path, "u", margin={"teachers": ["nope"]})]) == 2
    assert "params sample.margin.teachers: unknown names ['nope']" in capsys.readouterr().err
