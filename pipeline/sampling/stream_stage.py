"""The sample stage past memory: every pool sampled streamed, the manifests written from Arrow in chunks.

Reads the pools' memory-mapped embeddings and the ClipStore (clipstore.py) that the sample stage opened over
its clip tables; writes the manifests (data/manifests/{nc,random,full,farthest,margin,generator_balanced,train,
dev}.parquet) and returns the diagnostics that pipeline/sample.py writes to reports/sampling.json. The stage takes
this path when a pool has more train rows than `sample.stream_above_rows`, and gives the in-memory path's
manifests (tested): the same picks (stream_pool.py; the orders of orders.py through methods.pick on the same
per-row distances and clusters, every sample.nc.order), the same merge and budget top-up (budget.py) over clip
rows instead of id strings, the same columns and values; kcenter is not run (stream_pool.SKIPPED). What it holds
per clip: the store's codes (14 bytes), each pool's clip rows (4 bytes), the orders' columns (system and parent:
6 bytes), the per-row NC arrays of the pool being sampled (~30 bytes) and the slim frames of the picks and
top-up candidates (~28 bytes a row; `full`: every train row, 20 bytes), never a pandas clip table.
"""

from __future__ import annotations

import functools
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.io import atomic_path
from pipeline.logs import StageError, progress
from pipeline.params import ConfigError
from pipeline.runtime.memory import return_freed_memory
from pipeline.sampling import budget as bd
from pipeline.sampling import methods as mt
from pipeline.sampling import stream_pool as sp
from pipeline.sampling.clipstore import ClipStore
from pipeline.sampling.diagnostics import stage_header
from pipeline.sampling.nc import scan_threads
from pipeline.schema import LABELS

log = logging.getLogger("pipeline.sampling.stream_stage")


def pool_positions(store: ClipStore, teacher: str, ids: Any) -> np.ndarray:
    """The store rows of a pool's clips, in embedding row order (clear errors for unknown or repeated ids)."""
    pos = store.positions(ids, f"teacher {teacher}")
    uniq, first = np.unique(pos, return_index=True)
    if len(uniq) != len(pos):
        dup = ids[int(np.setdiff1d(np.arange(len(pos)), first)[0])]
        dup = dup.as_py() if hasattr(dup, "as_py") else dup
        raise ValueError(f"teacher {teacher}: ids.parquet repeats clip_id {dup!r}")
    return pos


def needed(store: ClipStore, positions: list[np.ndarray], above_rows: int | None) -> bool:
    """True when a pool has more train rows than `above_rows` (None: never)."""
    train = store.split_is("train")
    return above_rows is not None and max((int(train[pos].sum()) for pos in positions), default=0) > above_rows


def run(pools: list[Any], store: ClipStore, positions: list[np.ndarray], p: Any, seed: int,
        out_dir: Path) -> dict[str, Any]:
    """Sample every pool streamed (stream_pool.sample_pool), write the manifests into `out_dir` (train.parquet:
    a copy of `p.method`'s), and return the diagnostics. `pools` carry teacher and embeddings (sample.Pool)."""
    if p.method in sp.SKIPPED:
        raise ConfigError(f"params sample.method: {p.method} cannot run on a pool above sample.stream_above_rows "
                          f"({p.stream_above_rows} train rows): {sp.SKIPPED[p.method]}; use one of "
                          f"{[m for m in mt.METHODS if m not in sp.SKIPPED]}")
    log.info("a pool has more than sample.stream_above_rows=%d train rows: streamed sampling over the memory-mapped "
             "embeddings; skipped: %s", p.stream_above_rows, ", ".join(f"{m} ({why})" for m, why in sp.SKIPPED.items()))
    if p.index != "flat":
        log.warning("streamed nc is the exact (flat) scan: sample.index=%s is not used", p.index)
    return_freed_memory()
    codes, train_mask = store.label_codes(), store.split_is("train")
    train_pos = [pos[train_mask[pos]] for pos in positions]
    merged = np.unique(np.concatenate(train_pos))
    budgets = bd.class_budgets(pd.Series(pd.Categorical.from_codes(codes[merged], LABELS)), LABELS, p.ratio,
                               p.class_ratio)
    merged_sizes = {c: int((codes[merged] == k).sum()) for k, c in enumerate(LABELS)}
    pool_sizes = [{c: int((codes[tp] == k).sum()) for k, c in enumerate(LABELS)} for tp in train_pos]
    quotas = bd.split_budget(budgets, pool_sizes)
    train_idx = [np.flatnonzero(train_mask[pos]) for pos in positions]
    cols = mt.ClipColumns(fake=codes == sp.SPOOF, system=store.categorical("system"),
                          parent=store.value_codes("parent_id"))
    inputs = mt.prepare_inputs(p, pools, cols, train_pos, train_idx, budgets)
    del merged, train_idx
    methods = mt.runnable(p.method, {**sp.SKIPPED, **inputs.skipped}, log)
    diag = stage_header(p, seed, inputs)
    diag["stream"] = {"above_rows": p.stream_above_rows, "index": "flat", "skipped": dict(sp.SKIPPED),
                      "diagnostics_rows_limit": p.stream_diagnostics_rows}
    picks, candidates = _sample_pools(pools, store, positions, codes, p, seed, quotas, budgets, diag,
                                      (methods, inputs, cols))
    del cols, inputs, train_pos
    out_dir.mkdir(parents=True, exist_ok=True)
    fill, merged_counts, sizes = {}, {}, {}
    # the manifests are written on scan_threads threads (Arrow's take and Parquet writer release the GIL) while
    # this thread merges the next method; at most that many are in hand at once (each method's slim frames go once
    # its manifest is written), so the peak holds two methods' rows, not all of them
    workers = scan_threads(None)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="manifest") as writers:
        jobs: dict[str, Any] = {}
        for m in methods:
            _wait_below(jobs, workers, sizes)
            union = bd.merge_picks(picks.pop(m))
            if m == "full":
                slim = union.drop(columns=[bd.POOL])
            else:
                slim, fill[m] = bd.fill_to_budget(union, pd.concat(candidates.pop(m), ignore_index=True), budgets)
            del union
            pos = slim["clip_id"].to_numpy(np.int64)
            merged_counts[m] = store.counts(pos)
            jobs[m] = writers.submit(store.write_manifest, out_dir / f"{m}.parquet", pos, {
                "teacher": slim["teacher"].array, "distance": slim["distance"].to_numpy(np.float64),
                "cluster": slim["cluster"].to_numpy(np.int32), "sampler": m}, stage=f"sample {m}")
            del slim, pos
        _wait_below(jobs, 1, sizes)
        dev_pos, dev_teacher = _dev_rows(pools, positions, store.split_is("dev"))
        sizes["dev"] = store.write_manifest(out_dir / "dev.parquet", dev_pos, {
            "teacher": dev_teacher, "distance": np.full(len(dev_pos), np.nan),
            "cluster": np.full(len(dev_pos), -1, dtype=np.int32), "sampler": "dev"}, stage="sample dev")
        log.info("dev.parquet: %d clips", sizes["dev"])
    with atomic_path(out_dir / "train.parquet") as tmp:
        shutil.copyfile(out_dir / f"{p.method}.parquet", tmp)
    diag["budget"] = {**bd.budget_diagnostics(budgets, merged_sizes, [pl.teacher for pl in pools], pool_sizes,
                                              quotas), "fill": fill}
    diag["merged"] = merged_counts
    diag["dev"] = store.counts(dev_pos)
    diag["train"] = {"method": p.method, "n": sizes[p.method]}
    return diag


def _wait_below(jobs: dict[str, Any], limit: int, sizes: dict[str, int]) -> None:
    """Wait for the oldest manifest writes until fewer than `limit` are running; their row counts into `sizes`."""
    while len(jobs) >= limit:
        name = next(iter(jobs))
        sizes[name] = jobs.pop(name).result()
        log.info("%s.parquet: %d clips", name, sizes[name])


def _sample_pools(pools: list[Any], store: ClipStore, positions: list[np.ndarray], codes: np.ndarray, p: Any,
                  seed: int, quotas: list, budgets: dict, diag: dict, run_with: tuple) -> tuple[dict, dict]:
    """Every pool's slim picks and top-up candidates per method; each pool's diagnostics into `diag`.
    `run_with`: (the methods run, methods.MethodInputs, methods.ClipColumns)."""
    methods, inputs, cols = run_with
    train_mask = store.split_is("train")
    picks: dict[str, list[pd.DataFrame]] = {m: [] for m in methods}
    candidates: dict[str, list[pd.DataFrame]] = {m: [] for m in methods if m != "full"}
    for i, pool in enumerate(progress(pools, desc="sample pools (streamed)", total=len(pools), unit="pool")):
        pos = positions[i]
        train = np.flatnonzero(train_mask[pos])
        if not len(train):
            raise StageError(f"teacher {pool.teacher}: no train-split rows in its pool")
        pool_codes, pseed = codes[pos[train]], bd.pool_seed(seed, i)
        pool_in = mt.pool_inputs(inputs, i, cols, pos[train])
        code_quota = {LABELS.index(c): n for c, n in quotas[i].items()}
        ordered = {m: functools.partial(_ordered_pick, m, labels=pool_codes, quota=code_quota, pool_in=pool_in, p=p,
                                        seed=pseed) for m in methods if mt.ordered(m, p)}
        try:
            res = sp.sample_pool(pool.embeddings, train, pos[train], pool_codes, store, p, teacher=pool.teacher,
                                 pool=i, seed=pseed, quota=quotas[i], budgets=budgets, ordered=ordered,
                                 teachers=[pl.teacher for pl in pools], top_up=len(pools) > 1)
        except ValueError as exc:
            raise StageError(f"teacher {pool.teacher}: {exc}") from exc
        for m in methods:
            picks[m].append(res.picks[m])
            if m in candidates:
                candidates[m].append(res.candidates[m])
        after = {m: store.counts(res.picks[m]["clip_id"].to_numpy(np.int64)) for m in methods}
        diag["pools"][pool.teacher] = {"n_rows": int(len(pos)), "n_train": int(len(train)), **res.diag, "after": after}
        log.info("pool %s: %d train rows (streamed) -> nc %d (%s)", pool.teacher, len(train), after["nc"]["n"],
                 after["nc"]["label"])
    return picks, candidates


def _ordered_pick(method: str, distance: np.ndarray, cluster: np.ndarray | None, *, labels: np.ndarray, quota: dict,
                  pool_in: Any, p: Any, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """methods.pick on a streamed pool's label codes (stream_pool.sample_pool's `ordered` functions)."""
    return mt.pick(method, distance, cluster, labels, quota, sp.SPOOF, pool_in, p, seed)


def _dev_rows(pools: list[Any], positions: list[np.ndarray], dev_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The dev manifest's rows: every pool's dev clips in pool order, a clip once (its first pool's teacher)."""
    pos = np.concatenate([p[dev_mask[p]] for p in positions])
    teacher = np.concatenate([np.full(int(dev_mask[p].sum()), pl.teacher, dtype=object)
                              for pl, p in zip(pools, positions)])
    _, first = np.unique(pos, return_index=True)
    keep = np.sort(first)
    return pos[keep], teacher[keep]
