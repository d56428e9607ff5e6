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
without copying its matrix and without a pandas clip table (pipeline/sampling/stream_stage.py): the clip
tables are checked batch by batch into a memory-mapped Arrow copy (a temporary `.sample-*` folder beside
--out), the manifests are written from it 64K rows at a time; the same nc (every order), random, farthest,
full, margin and generator_balanced manifests (the orders read per-row arrays, never the matrix), no kcenter
(a ConfigError when it is `sample.method`), NC1 on a bounded row sample.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

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
from pipeline.sampling.budget import merge_picks, pool_seed
from pipeline.sampling.diagnostics import stage_header
from pipeline.sampling.methods import METHODS
from pipeline.sampling.orders import MarginParams, NCOrderParams
from pipeline.sampling.pools import Pool, pool_positions
from pipeline.schema import CLIP_COLUMNS, LABELS, SchemaError, read_clip_tables, write_clips

log = logging.getLogger("pipeline.sample")

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
    they line up; the clip ids stay Arrow strings (~20 bytes an id), the scores and threshold when embed wrote
    them."""
    from pipeline.embstore import read_embeddings
    from pipeline.sampling.clipstore import release_arrow

    emb_path, ids_path = directory / "emb.npy", directory / "ids.parquet"
    try:
        emb = read_embeddings(directory)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{exc}: run `python -m pipeline embed {teacher}` first") from exc
    if not ids_path.exists():
        raise FileNotFoundError(f"{ids_path} does not exist: run `python -m pipeline embed {teacher}` first")
    columns = pq.read_schema(ids_path).names
    if "clip_id" not in columns:
        raise SchemaError(f"{ids_path}: no clip_id column (columns: {columns})")
    table = pq.read_table(ids_path, columns=["clip_id"] + (["score"] if "score" in columns else []))
    ids = table.column("clip_id").cast(pa.string())
    if emb.ndim != 2 or len(ids) != emb.shape[0]:
        raise StageError(f"teacher {teacher}: {emb_path} has shape {emb.shape} but {ids_path} has {len(ids)} ids: "
                         f"misaligned embeddings; re-run the embed stage")
    scores = (table.column("score").to_numpy().astype(np.float64) if "score" in columns else None)
    release_arrow()                     # the Parquet reader's buffers
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


def _finish(manifests: dict[str, pd.DataFrame], fill: dict, diag: dict[str, Any], dev_frames: list[pd.DataFrame],
            budgets: dict[str, int], merged_sizes: dict[str, int], pools: list[Pool], pool_sizes: list, quotas: list,
            p: SampleParams) -> tuple[dict[str, pd.DataFrame], dict]:
    """Add the dev manifest and the merged/budget diagnostics."""
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
    return ({method or 'dev': manifest}, diagnostics). In memory: `main` takes pipeline/sampling/stream_stage.py
    instead when a pool has more than `stream_above_rows` train rows."""
    from pipeline.sampling import budget as bd
    from pipeline.sampling import counts, mean_distances, nc1, nc_rank
    from pipeline.sampling import methods as mt

    positions = [pool_positions(pool, clips) for pool in pools]
    is_train = (clips["split"] == "train").to_numpy()
    pool_rows = [clips.take(pos).reset_index(drop=True) for pos in positions]
    train_parts = [rows[(rows["split"] == "train").to_numpy()] for rows in pool_rows]
    merged = pd.concat([t[["clip_id", "label"]] for t in train_parts]).drop_duplicates("clip_id")
    budgets = bd.class_budgets(merged["label"].astype(str), LABELS, p.ratio, p.class_ratio)
    pool_sizes = [{c: int((t["label"] == c).sum()) for c in LABELS} for t in train_parts]
    quotas = bd.split_budget(budgets, pool_sizes)
    train_idx = [np.flatnonzero(is_train[pos]) for pos in positions]          # rows of each pool's matrix
    cols = mt.ClipColumns.of_frame(clips)
    train_pos = [pos[t] for pos, t in zip(positions, train_idx)]
    inputs = mt.prepare_inputs(p, pools, cols, train_pos, train_idx, budgets)
    methods = mt.runnable(p.method, inputs.skipped, log)
    picks: dict[str, list[pd.DataFrame]] = {m: [] for m in methods}
    candidates: dict[str, list[pd.DataFrame]] = {m: [] for m in methods if m != "full"}
    dev_frames, diag = [], stage_header(p, seed, inputs)
    for i, pool in enumerate(progress(pools, desc="sample pools", total=len(pools), unit="pool")):
        pseed = pool_seed(seed, i)
        rows = pool_rows[i]
        train_rows = train_parts[i].reset_index(drop=True)
        dev_frames.append(_manifest_rows(rows[(rows["split"] == "dev").to_numpy()], pool.teacher, "dev", None, None))
        if not len(train_rows):
            raise StageError(f"teacher {pool.teacher}: no train-split rows in its pool")
        emb = pool.embeddings[train_idx[i]]
        labels = train_rows["label"].astype(str).to_numpy()
        try:
            ranking = nc_rank(emb, labels, n_clusters=p.n_clusters, seed=pseed, normalize=p.normalize,
                              max_points_per_centroid=p.max_points_per_centroid, kmeans_iters=p.kmeans_iters)
        except ValueError as exc:
            raise StageError(f"teacher {pool.teacher}: {exc}") from exc
        pool_diag: dict[str, Any] = {
            "n_rows": int(len(rows)), "n_train": int(len(train_rows)), "dim": int(emb.shape[1]),
            "nc1": _finite(nc1(emb, labels, normalize=p.normalize)),
            "class_mean_distance": mean_distances(ranking.means),
            "before": counts(train_rows), "after": {},
        }
        pool_p = replace(p, class_ratio=bd.quota_ratios(quotas[i], pool_sizes[i]))
        pool_in = mt.pool_inputs(inputs, i, cols, train_pos[i])
        everything = _manifest_rows(train_rows, pool.teacher, "", ranking.distance, ranking.cluster)
        for method in methods:
            idx, key = mt.pick_pool(method, emb, labels, pool_p, pseed, ranking, quotas[i], pool_in)
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
        union = merge_picks(picks[m])
        if m == "full":
            manifests[m] = union.drop(columns=[bd.KEY, bd.POOL])
        else:
            manifests[m], fill[m] = bd.fill_to_budget(union, pd.concat(candidates[m], ignore_index=True), budgets)
    merged_sizes = {c: int((merged["label"] == c).sum()) for c in LABELS}
    return _finish(manifests, fill, diag, dev_frames, budgets, merged_sizes, pools, pool_sizes, quotas, p)


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
        pools = [load_pool(t, args.embeddings / t) for t in teachers]
        sizes = sample_to(args, pools, p, seed)
        stats.add("clips", sum(len(pl.embeddings) for pl in pools))
        stats.add("pools", len(pools))
        for name, n in sizes.items():       # kcenter is skipped on streamed pools
            stats.add(name, n)
    log.info("train.parquet = %s.parquet (%d clips)", p.method, sizes[p.method])
    return 0


def sample_to(args: Any, pools: list[Pool], p: SampleParams, seed: int) -> dict[str, int]:
    """Sample the pools into args.out and args.diagnostics, streamed (stream_stage.py, the clip tables in a
    memory-mapped Arrow copy under a temporary folder beside args.out) when a pool has more than
    `stream_above_rows` train rows, else in memory; returns the rows of every manifest written. The pools are
    consumed: on the streamed path their `ids` are set to None once their store rows are known (at 10M clips the
    Arrow ids are the largest thing held), so a caller must load them again to reuse them."""
    from pipeline.sampling import stream_stage
    from pipeline.sampling.clipstore import ClipStore, release_arrow

    with tempfile.TemporaryDirectory(prefix=".sample-", dir=args.out.resolve().parent) as work:
        store = ClipStore.open(args.clips, Path(work))
        positions = [stream_stage.pool_positions(store, pl.teacher, pl.ids) for pl in pools]
        if stream_stage.needed(store, positions, p.stream_above_rows):
            for pl in pools:            # their positions stand for the ids from here on (~20 bytes a clip)
                pl.ids = None
            release_arrow()
            diag = stream_stage.run(pools, store, positions, p, seed, args.out)
            write_json_atomic(diag, args.diagnostics)
            return {**{m: diag["merged"][m]["n"] for m in diag["merged"]}, "dev": diag["dev"]["n"]}
    clips = read_clip_tables(args.clips, stage="sample")
    manifests, diag = run(pools, clips, p, seed)
    write_outputs(manifests, diag, p.method, args.out, args.diagnostics)
    return {m: len(df) for m, df in manifests.items()}
