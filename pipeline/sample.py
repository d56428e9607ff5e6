"""Stage `sample`: neural-collapse class-mean sampling (+ baselines) over every teacher's pool -> manifests.

Reads: the clip tables (`--clips`: data/clips.parquet + data/recon/*.parquet) and, for every teacher in
params `teachers`, data/embeddings/<T>/emb.npy (float16, N x D) + ids.parquet (clip_id, row order).
Writes (`--out`, data/manifests/): one manifest per sampler,
{nc,random,full,kcenter,farthest,margin,generator_balanced}.parquet (clip-table columns + teacher, distance,
cluster, sampler), train.parquet = a copy of the one named by
`sample.method`, dev.parquet = the dev split of the merged pools (sampler 'dev'); and `--diagnostics`
(reports/sampling.json): per pool NC1, distances between class means, counts per label, paradigm,
system and speaker before and after sampling.

Equal budgets (pipeline/sampling/budget.py): at a given ratio every method keeps the same number of clips
per class, budget_c = round(ratio_c x distinct train clips of class c over the merged pools), split over the
pools in proportion to their train clips of c; each sampler keeps its pool's quota from the pool's TRAIN
rows, the picks are merged (a clip picked by several pools keeps its row with the smallest distance; ties:
the earlier teacher in params order), and the union is topped up (or trimmed) to exactly the budget in the
method's own order. `full` keeps every train clip. reports/sampling.json `budget` has the counts.
`distance` is the L2 distance to the clip's class mean in its teacher's (normalised) embedding space for
every sampler, so the manifests compare directly; `cluster` is the fake class's k-means cluster (null for
bona fide). `sample.seed` (null = the global seed) seeds k-means, random, k-center and the stratified draw.

Beyond the most typical (pipeline/sampling/orders.py, methods.py): `sample.nc.order` (nearest: the paper;
farthest; stratified: equal shares of every distance quantile) sets the order of the nc manifest; `margin`
keeps the clips the teachers are least sure of (embed's per-clip scores against each teacher's dev EER
threshold, averaged over the pools holding the clip), mixed with `sample.margin.typical_share` NC-nearest
ones; `generator_balanced` spreads the fake budget evenly over generator systems and parents. Without teacher
scores (old embeddings, the resemblyzer embedder) margin is skipped (an error when it is `sample.method`).

Large pools: when a pool has more train rows than `sample.stream_above_rows`, every pool is sampled
without copying its matrix (pipeline/sampling/stream_pool.py): the same nc, random, farthest and full
manifests, margin and generator_balanced too (the orders read per-row arrays, never the matrix), no kcenter
(a ConfigError when it is `sample.method`), NC1 on a bounded row sample.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipeline.io import atomic_path, write_json_atomic
from pipeline.logs import StageError, progress, stage_timer
from pipeline.params import (
    ConfigError,
    Section,
    all_of,
    flag,
    mapping,
    number,
    one_of,
    section,
    seed_value,
    stage_parser,
    stage_seed,
    start_stage,
    teacher_names,
)
from pipeline.sampling.orders import MarginParams, NCOrderParams
from pipeline.sampling.pools import Pool, pool_positions
from pipeline.schema import CLIP_COLUMNS, LABELS, SchemaError, read_clip_tables, write_clips

log = logging.getLogger("pipeline.sample")

METHODS = ("nc", "random", "full", "kcenter", "farthest", "margin", "generator_balanced")


@dataclass(frozen=True)
class SampleParams(Section):
    """The `sample:` section of params.yaml."""

    NAME: ClassVar[str] = "sample"

    method: str = "nc"
    ratio: float = 0.25
    class_ratio: dict = field(default_factory=dict)
    n_clusters: int = 8
    normalize: bool = True
    index: str = "flat"
    ivf_nlist: int = 256
    ivf_nprobe: int = 16
    max_points_per_centroid: int = 256
    kmeans_iters: int = 20
    seed: int | None = None   # null = the global seed
    stream_above_rows: int | None = 1_000_000   # a pool with more train rows: streamed (sampling/stream_pool.py)
    stream_diagnostics_rows: int = 100_000      # streamed: NC1 on a seeded sample of at most this many rows
    nc: NCOrderParams = field(default_factory=NCOrderParams)      # sample.nc: order (nearest|farthest|stratified)
    margin: MarginParams = field(default_factory=MarginParams)    # sample.margin: typical_share, teachers

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        blocks = {"class_ratio": lambda v: mapping("sample.class_ratio", v), "nc": NCOrderParams.from_params,
                  "margin": MarginParams.from_params}
        return {k: (blocks[k](v) if k in blocks else v) for k, v in kw.items()}

    def check(self) -> None:
        """Refuse bad values with a clear error."""
        from pipeline.sampling import check_ratio

        one_of("sample.method", self.method, METHODS)
        one_of("sample.index", self.index, ("flat", "ivf"))
        try:
            check_ratio(self.ratio, "params sample.ratio")
            for k, v in self.class_ratio.items():
                check_ratio(v, f"params sample.class_ratio[{k!r}]")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        all_of("sample.class_ratio", list(self.class_ratio), LABELS)
        flag("sample.normalize", self.normalize)
        number("sample.n_clusters", self.n_clusters, low=0, integer=True)
        for key in ("ivf_nlist", "ivf_nprobe", "max_points_per_centroid", "kmeans_iters"):
            number(f"sample.{key}", getattr(self, key), low=1, integer=True)
        seed_value("sample.seed", self.seed, allow_none=True)
        number("sample.stream_above_rows", self.stream_above_rows, low=0, integer=True, allow_none=True)
        number("sample.stream_diagnostics_rows", self.stream_diagnostics_rows, low=2, integer=True)


def load_pool(teacher: str, directory: Path) -> Pool:
    """Read data/embeddings/<T>/{emb.npy or emb-*.npy, ids.parquet, info.json} (memory-mapped), checking that
    they line up; the scores and threshold when embed wrote them."""
    from pipeline.embstore import read_embeddings

    emb_path, ids_path = directory / "emb.npy", directory / "ids.parquet"
    try:
        emb = read_embeddings(directory)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{exc}: run `python -m pipeline embed {teacher}` first") from exc
    if not ids_path.exists():
        raise FileNotFoundError(f"{ids_path} does not exist: run `python -m pipeline embed {teacher}` first")
    ids_df = pd.read_parquet(ids_path)
    if "clip_id" not in ids_df.columns:
        raise SchemaError(f"{ids_path}: no clip_id column (columns: {list(ids_df.columns)})")
    ids = ids_df["clip_id"].astype(str).to_numpy()
    if emb.ndim != 2 or len(ids) != emb.shape[0]:
        raise StageError(f"teacher {teacher}: {emb_path} has shape {emb.shape} but {ids_path} has {len(ids)} ids: "
                         f"misaligned embeddings; re-run the embed stage")
    scores = ids_df["score"].to_numpy(np.float64) if "score" in ids_df.columns else None
    info = json.loads((directory / "info.json").read_text()) if (directory / "info.json").is_file() else {}
    return Pool(teacher=teacher, ids=ids, embeddings=emb,
                scores=None if scores is None or np.isnan(scores).all() else scores,
                threshold=float(info.get("score_threshold") or 0.0),
                threshold_source=str(info.get("score_threshold_source", "none (0)")))


def _manifest_rows(rows: pd.DataFrame, teacher: str | np.ndarray, sampler: str, distance: np.ndarray | None,
                   cluster: np.ndarray | None) -> pd.DataFrame:
    out = rows[list(CLIP_COLUMNS)].copy()
    out["teacher"] = teacher
    out["distance"] = np.nan if distance is None else distance
    out["cluster"] = pd.array([None] * len(out) if cluster is None else [None if c < 0 else int(c) for c in cluster],
                              dtype="Int32")
    out["sampler"] = sampler
    return out


def _finite(x: float) -> float | None:
    """JSON has no inf/NaN: a non-finite diagnostic becomes null."""
    return float(x) if np.isfinite(x) else None


def _methods(p: SampleParams, skipped: dict[str, str]) -> tuple[str, ...]:
    """The methods run (METHODS less the skipped ones; `sample.method` skipped is a ConfigError)."""
    if p.method in skipped:
        raise ConfigError(f"params sample.method: {p.method} cannot run: {skipped[p.method]}")
    for m, why in skipped.items():
        log.warning("sample: no %s manifest: %s", m, why)
    return tuple(m for m in METHODS if m not in skipped)


def _pool_seed(seed: int, i: int) -> int:
    # one seed per pool: with the params seed alone, random/kcenter would pick the same n-th bona fide
    # clips in every pool (pools share their bona fide rows), and the merge would shrink to one pool's picks
    return int(np.random.SeedSequence([seed, i]).generate_state(1)[0])


def _header(p: SampleParams, seed: int, inputs) -> dict[str, Any]:
    return {"seed": seed, "method": p.method, "ratio": p.ratio, "class_ratio": p.class_ratio,
            "n_clusters": p.n_clusters, "normalize": p.normalize, "index": p.index, "pools": {},
            "methods": {**inputs.diag, "skipped": dict(inputs.skipped)}}


def _finish(manifests: dict[str, pd.DataFrame], fill: dict, diag: dict[str, Any], dev_frames: list[pd.DataFrame],
            budgets: dict[str, int], merged_sizes: dict[str, int], pools: list[Pool], pool_sizes: list, quotas: list,
            p: SampleParams) -> tuple[dict[str, pd.DataFrame], dict]:
    """Add the dev manifest and the merged/budget diagnostics (both paths)."""
    from pipeline.sampling import budget as bd
    from pipeline.sampling import counts

    dev = pd.concat(dev_frames, ignore_index=True).drop_duplicates("clip_id", keep="first").reset_index(drop=True)
    diag["budget"] = {**bd.budget_diagnostics(budgets, merged_sizes, [pl.teacher for pl in pools], pool_sizes,
                                              quotas), "fill": fill}
    diag["merged"] = {m: counts(manifests[m]) for m in METHODS if m in manifests}
    diag["dev"] = counts(dev)
    diag["train"] = {"method": p.method, "n": int(len(manifests[p.method]))}
    manifests["dev"] = dev
    return manifests, diag


def run(pools: list[Pool], clips: pd.DataFrame, p: SampleParams, seed: int) -> tuple[dict[str, pd.DataFrame], dict]:
    """Sample every pool with every method at equal per-class budgets (pipeline/sampling/budget.py);
    return ({method or 'dev': manifest}, diagnostics). Past `stream_above_rows` train rows in a pool: streamed."""
    from pipeline.sampling import budget as bd
    from pipeline.sampling import counts, mean_distances, nc1, nc_rank
    from pipeline.sampling import methods as mt

    positions = [pool_positions(pool, clips) for pool in pools]
    is_train = (clips["split"] == "train").to_numpy()
    n_train = [int(is_train[pos].sum()) for pos in positions]
    if p.stream_above_rows is not None and max(n_train, default=0) > p.stream_above_rows:
        return _run_streamed(pools, clips, p, seed, positions)
    pool_rows = [clips.take(pos).reset_index(drop=True) for pos in positions]
    train_parts = [rows[(rows["split"] == "train").to_numpy()] for rows in pool_rows]
    merged = pd.concat([t[["clip_id", "label"]] for t in train_parts]).drop_duplicates("clip_id")
    budgets = bd.class_budgets(merged["label"].astype(str), LABELS, p.ratio, p.class_ratio)
    pool_sizes = [{c: int((t["label"] == c).sum()) for c in LABELS} for t in train_parts]
    quotas = bd.split_budget(budgets, pool_sizes)
    train_idx = [np.flatnonzero(is_train[pos]) for pos in positions]          # rows of each pool's matrix
    inputs = mt.prepare_inputs(p, pools, clips, [pos[t] for pos, t in zip(positions, train_idx)], train_idx, budgets)
    methods = _methods(p, inputs.skipped)
    picks: dict[str, list[pd.DataFrame]] = {m: [] for m in methods}
    candidates: dict[str, list[pd.DataFrame]] = {m: [] for m in methods if m != "full"}
    dev_frames, diag = [], _header(p, seed, inputs)
    for i, pool in enumerate(progress(pools, desc="sample pools", total=len(pools), unit="pool")):
        pool_seed = _pool_seed(seed, i)
        rows = pool_rows[i]
        train_rows = train_parts[i].reset_index(drop=True)
        dev_frames.append(_manifest_rows(rows[(rows["split"] == "dev").to_numpy()], pool.teacher, "dev", None, None))
        if not len(train_rows):
            raise StageError(f"teacher {pool.teacher}: no train-split rows in its pool")
        emb = pool.embeddings[train_idx[i]]
        labels = train_rows["label"].astype(str).to_numpy()
        try:
            ranking = nc_rank(emb, labels, n_clusters=p.n_clusters, seed=pool_seed, normalize=p.normalize,
                              max_points_per_centroid=p.max_points_per_centroid, kmeans_iters=p.kmeans_iters)
        except ValueError as exc:
            raise StageError(f"teacher {pool.teacher}: {exc}") from exc
        pool_diag: dict[str, Any] = {
            "n_rows": int(len(rows)), "n_train": int(len(train_rows)), "dim": int(emb.shape[1]),
            "nc1": _finite(nc1(emb, labels, normalize=p.normalize)),
            "class_mean_distance": mean_distances(ranking.means),
            "before": counts(train_rows), "after": {},
        }
        pq = replace(p, class_ratio=bd.quota_ratios(quotas[i], pool_sizes[i]))
        pool_in = mt.pool_inputs(inputs, i, clips, positions[i][train_idx[i]])
        everything = _manifest_rows(train_rows, pool.teacher, "", ranking.distance, ranking.cluster)
        for method in methods:
            idx, key = mt.pick_pool(method, emb, labels, pq, pool_seed, ranking, quotas[i], pool_in)
            if method != "full":   # a class whose quota in this pool is 0 (a budget below the number of pools)
                idx = idx[np.array([quotas[i][lab] > 0 for lab in labels[idx]], dtype=bool)]
                candidates[method].append(everything.assign(sampler=method, **{bd.KEY: key, bd.POOL: i}))
            picked = everything.iloc[idx].assign(sampler=method, **{bd.KEY: key[idx], bd.POOL: i})
            picks[method].append(picked)
            pool_diag["after"][method] = counts(picked)
            if method == "nc":    # NC1 needs both classes (a pool's quota of a class may be 0)
                pool_diag["nc1_selected"] = (_finite(nc1(emb[idx], labels[idx], normalize=p.normalize))
                                             if len(set(labels[idx])) == len(LABELS) else None)
        log.info("pool %s: %d train rows (%s) -> nc %d (%s)", pool.teacher, len(train_rows),
                 pool_diag["before"]["label"], pool_diag["after"]["nc"]["n"], pool_diag["after"]["nc"]["label"])
        diag["pools"][pool.teacher] = pool_diag
    manifests, fill = {}, {}
    for m in methods:
        union = bd.merge_picks(picks[m])
        if m == "full":
            manifests[m] = union.drop(columns=[bd.KEY, bd.POOL])
        else:
            manifests[m], fill[m] = bd.fill_to_budget(union, pd.concat(candidates[m], ignore_index=True), budgets)
    merged_sizes = {c: int((merged["label"] == c).sum()) for c in LABELS}
    return _finish(manifests, fill, diag, dev_frames, budgets, merged_sizes, pools, pool_sizes, quotas, p)


def _run_streamed(pools: list[Pool], clips: pd.DataFrame, p: SampleParams, seed: int,
                  positions: list[np.ndarray]) -> tuple[dict[str, pd.DataFrame], dict]:
    """`run` without any pool's matrix in memory (pipeline/sampling/stream_pool.py): nc, random, farthest, full,
    margin and generator_balanced give the manifests of the in-memory path; kcenter is skipped; NC1 comes from a
    bounded row sample."""
    from pipeline.sampling import budget as bd
    from pipeline.sampling import counts
    from pipeline.sampling import methods as mt
    from pipeline.sampling import stream_pool as sp

    if p.method in sp.SKIPPED:
        raise ConfigError(f"params sample.method: {p.method} cannot run on a pool above sample.stream_above_rows "
                          f"({p.stream_above_rows} train rows): {sp.SKIPPED[p.method]}; use one of "
                          f"{[m for m in METHODS if m not in sp.SKIPPED]}")
    if p.index != "flat":
        log.warning("streamed nc is the exact (flat) scan: sample.index=%s is not used", p.index)
    split = clips["split"].to_numpy()
    codes = sp.label_codes(clips)
    train_idx = [np.flatnonzero(split[pos] == "train") for pos in positions]
    train_pos = [pos[t] for pos, t in zip(positions, train_idx)]
    merged = np.unique(np.concatenate(train_pos))
    budgets = bd.class_budgets(pd.Series(pd.Categorical.from_codes(codes[merged], LABELS)), LABELS, p.ratio,
                               p.class_ratio)
    pool_sizes = [{c: int((codes[tp] == k).sum()) for k, c in enumerate(LABELS)} for tp in train_pos]
    quotas = bd.split_budget(budgets, pool_sizes)
    inputs = mt.prepare_inputs(p, pools, clips, train_pos, train_idx, budgets)
    methods = _methods(p, {**sp.SKIPPED, **inputs.skipped})
    log.info("a pool has more than sample.stream_above_rows=%d train rows: streamed sampling over the memory-mapped "
             "embeddings", p.stream_above_rows)
    picks: dict[str, list[pd.DataFrame]] = {m: [] for m in methods}
    candidates: dict[str, list[pd.DataFrame]] = {m: [] for m in methods if m != "full"}
    diag, dev_frames = _header(p, seed, inputs), []
    diag["stream"] = {"above_rows": p.stream_above_rows, "index": "flat", "skipped": dict(sp.SKIPPED),
                      "diagnostics_rows_limit": p.stream_diagnostics_rows}
    for i, pool in enumerate(progress(pools, desc="sample pools (streamed)", total=len(pools), unit="pool")):
        pos, train = positions[i], train_idx[i]
        dev_frames.append(_manifest_rows(clips.take(pos[split[pos] == "dev"]), pool.teacher, "dev", None, None))
        if not len(train):
            raise StageError(f"teacher {pool.teacher}: no train-split rows in its pool")
        pool_in, pool_codes = mt.pool_inputs(inputs, i, clips, train_pos[i]), codes[train_pos[i]]
        code_quota = {LABELS.index(c): n for c, n in quotas[i].items()}
        ordered = {m: functools.partial(_ordered_pick, m, labels=pool_codes, quota=code_quota, pool_in=pool_in, p=p,
                                        seed=_pool_seed(seed, i)) for m in methods if mt.ordered(m, p)}
        try:
            res = sp.sample_pool(pool.embeddings, train, train_pos[i], pool_codes, clips, p, teacher=pool.teacher,
                                 pool=i, seed=_pool_seed(seed, i), quota=quotas[i], budgets=budgets, ordered=ordered)
        except ValueError as exc:
            raise StageError(f"teacher {pool.teacher}: {exc}") from exc
        for m in methods:
            picks[m].append(res.picks[m])
            if m in candidates:
                candidates[m].append(res.candidates[m])
        after = {m: counts(clips.take(res.picks[m][sp.POS].to_numpy())) for m in methods}
        diag["pools"][pool.teacher] = {"n_rows": int(len(pos)), "n_train": int(len(train)), **res.diag, "after": after}
        log.info("pool %s: %d train rows (streamed) -> nc %d (%s)", pool.teacher, len(train), after["nc"]["n"],
                 after["nc"]["label"])
    manifests, fill = {}, {}
    for m in methods:             # pop: each method's slim frames go once its manifest is built
        union = bd.merge_picks(picks.pop(m))
        if m == "full":
            slim = union.drop(columns=[bd.KEY, bd.POOL])
        else:
            slim, fill[m] = bd.fill_to_budget(union, pd.concat(candidates.pop(m), ignore_index=True), budgets)
        manifests[m] = _manifest_rows(clips.take(slim[sp.POS].to_numpy()).reset_index(drop=True),
                                      slim["teacher"].to_numpy(), m, slim["distance"].to_numpy(),
                                      slim["cluster"].to_numpy())
    merged_sizes = {c: int((codes[merged] == k).sum()) for k, c in enumerate(LABELS)}
    return _finish(manifests, fill, diag, dev_frames, budgets, merged_sizes, pools, pool_sizes, quotas, p)


def _ordered_pick(method: str, distance: np.ndarray, cluster: np.ndarray | None, *, labels: np.ndarray, quota: dict,
                  pool_in, p: SampleParams, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """methods.pick on a streamed pool's label codes (stream_pool.sample_pool's `ordered` functions)."""
    from pipeline.sampling import methods as mt

    return mt.pick(method, distance, cluster, labels, quota, LABELS.index("spoof"), pool_in, p, seed)


def write_outputs(manifests: dict[str, pd.DataFrame], diag: dict, method: str, out_dir: Path,
                  diagnostics: Path) -> None:
    """Write every manifest, train.parquet (a copy of `method`'s), dev.parquet and the diagnostics JSON."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, df in manifests.items():
        write_clips(df, out_dir / f"{name}.parquet", stage=f"sample {name}", groups=("manifest",))
    with atomic_path(out_dir / "train.parquet") as tmp:
        shutil.copyfile(out_dir / f"{method}.parquet", tmp)
    write_json_atomic(diag, diagnostics)


def main(argv: list[str] | None = None) -> int:
    """`python -m pipeline sample --clips ... --embeddings DIR --out DIR --diagnostics FILE`."""
    parser = stage_parser("sample", __doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="+", required=True, help="clip tables (clips.parquet, recon/*.parquet)")
    parser.add_argument("--embeddings", required=True, type=Path, help="data/embeddings (one folder per teacher)")
    parser.add_argument("--out", required=True, type=Path, help="manifest folder (data/manifests)")
    parser.add_argument("--diagnostics", required=True, type=Path, help="NC diagnostics JSON (reports/sampling.json)")
    args, params, common = start_stage(parser, argv)
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    p = SampleParams.from_params(section(params, "sample"))
    teachers = teacher_names(params)
    seed = stage_seed("sample.seed", p.seed, common)
    import faiss

    faiss.omp_set_num_threads(common.runtime.threads or 2)  # 0 would let faiss take every core
    with stage_timer(log, "sample") as stats:
        clips = read_clip_tables(args.clips, stage="sample")
        pools = [load_pool(t, args.embeddings / t) for t in teachers]
        manifests, diag = run(pools, clips, p, seed)
        write_outputs(manifests, diag, p.method, args.out, args.diagnostics)
        stats.add("clips", sum(len(pl.ids) for pl in pools))
        stats.add("pools", len(pools))
        for m in METHODS:
            if m in manifests:       # kcenter is skipped on streamed pools
                stats.add(m, len(manifests[m]))
        stats.add("dev", len(manifests["dev"]))
    log.info("train.parquet = %s.parquet (%d clips)", p.method, len(manifests[p.method]))
    return 0
