"""Stage embed@T: teacher T's embedding of every clip of its pool (train, dev and test splits).

Reads the clip tables and their audio, the teacher data/teachers/<T>/model.pt, and params
`teachers.<T>` (its pool and arch), `embed`, `audio`, `runtime`, `seed`.
Writes data/embeddings/<T>/: emb.npy (float16, N x D; emb-*.npy row shards past `max_rows_per_file`),
ids.parquet (clip_id, in emb row order, and score: the teacher's bona fide score of the clip from the same
forward pass, logit[bonafide] - logit[spoof]; null for the resemblyzer embedder alone), rejects.parquet (clips
that could not be read, with the reason) and info.json (dims, layers, rate, and `score_threshold`: the
teacher's dev EER threshold from data/teachers/<T>/metrics.json, 0 when it has none, which the sample stage's
margin method measures the scores against).

Each clip is the first `eval_s` seconds (tiled when shorter), run through the teacher in eval mode.
The vector is the teacher's penultimate layer (the input of its classifier, where neural collapse
is measured), or the time-frequency-pooled outputs of several `layers` concatenated or averaged
(`aggregate`), optionally with resemblyzer's speaker embedding (`embedder`).

Streaming and resuming: batches of rows -> vectors, grouped into shards of `shard_batches`
batches written atomically to <out>/.partial/; memory is one shard. Each result in a shard is
keyed by clip_id + the sha256 of its audio, so a re-run with the same teacher and params embeds
only the clips that are new or changed (another teacher or params discards the shards; a damaged
shard is logged, dropped and redone); the final files are assembled in pool order from the shards
and written atomically, then .partial/ is removed. The out is `persist: true` in dvc.yaml so that
DVC does not delete the shards of an interrupted run.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from pipeline.detector.batches import check_pool, iter_batches, load_batch, select_pool
from pipeline.detector.inference import embed_batch
from pipeline.embstore import write_embeddings
from pipeline.io import atomic_path, write_json_atomic, write_parquet_atomic
from pipeline.logs import StageError, progress, stage_timer
from pipeline.models import SCORE_RULE, Detector, check_config, load_checkpoint
from pipeline.params import (
    PRECISIONS,
    ConfigError,
    Section,
    as_list,
    number,
    one_of,
    section,
    stage_parser,
    start_stage,
    teacher_params,
)
from pipeline.resume import ResumeDir, digest, tree_hash
from pipeline.runtime.cpu_isa import kernel_paths
from pipeline.runtime.devices import setup_torch
from pipeline.runtime.engine import EngineConfig, iter_shards
from pipeline.schema import make_rejects, read_clip_tables, write_rejects

log = logging.getLogger("pipeline.embed")

AGGREGATES = ("concat", "mean")
EMBEDDERS = ("teacher", "resemblyzer", "teacher+resemblyzer")
PARTIAL = ".partial"


@dataclass(frozen=True)
class EmbedParams(Section):
    """The `embed` params section."""

    NAME: ClassVar[str] = "embed"

    batch_size: int = 64
    eval_s: float = 4.0
    layers: list[str] = field(default_factory=lambda: ["penultimate"])
    aggregate: str = "concat"             # concat | mean (mean needs layers of one size)
    embedder: str = "teacher"             # teacher | resemblyzer | teacher+resemblyzer
    resemblyzer_weights: str | None = None  # a VoiceEncoder .pt; null = the one shipped in the package
    shard_batches: int = 16
    max_reject_fraction: float = 0.2
    max_rows_per_file: int = 4_000_000   # more rows: emb-00000.npy, ... of this many rows each (pipeline/embstore.py)
    precision: str = "fp32"               # fp32 | bf16 | fp16: autocast of the teacher (GPU speed; fp32 bit-stable)

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        return {**kw, "layers": as_list("embed.layers", kw.get("layers", ["penultimate"]))}

    def check(self) -> None:
        one_of("embed.aggregate", self.aggregate, AGGREGATES)
        one_of("embed.embedder", self.embedder, EMBEDDERS)
        one_of("embed.precision", self.precision, PRECISIONS)
        if not self.layers:
            raise ConfigError("params embed.layers: must name at least one layer (e.g. [penultimate])")
        for key in ("batch_size", "shard_batches", "max_rows_per_file"):
            number(f"embed.{key}", getattr(self, key), low=1, integer=True)
        number("embed.eval_s", self.eval_s, low=0, low_open=True)
        number("embed.max_reject_fraction", self.max_reject_fraction, low=0, high=1)


def check_layers(model: Detector, layers: list[str], aggregate: str) -> int:
    """The embedding size for `layers` aggregated by `aggregate` (a clear error for unknown layers)."""
    dims = model.layer_dims()
    unknown = [name for name in layers if name not in dims]
    if unknown:
        raise ValueError(f"layers {unknown} not in the {model.arch} teacher; it has {list(dims)}")
    sizes = [dims[name] for name in layers]
    if aggregate == "mean":
        if len(set(sizes)) != 1:
            raise ValueError(f"aggregate 'mean' needs layers of one size, got {dict(zip(layers, sizes))}: "
                             "use aggregate 'concat'")
        return sizes[0]
    return sum(sizes)


class ResemblyzerEmbedder:
    """resemblyzer's VoiceEncoder (GE2E speaker encoder, 256-D, L2-normalised), from a local weights file."""

    dim = 256

    def __init__(self, weights: str | None, device: torch.device) -> None:
        from resemblyzer import VoiceEncoder  # optional embedder: imported only when used

        self.encoder = VoiceEncoder(device=device, verbose=False, weights_fpath=weights)
        self.encoder.eval()

    def __call__(self, waves: torch.Tensor) -> np.ndarray:
        from resemblyzer import preprocess_wav

        out = []
        for wave in waves.cpu().numpy():
            trimmed = preprocess_wav(wave.astype(np.float32))
            # Trimming silence can leave nothing of a quiet or very short clip: fall back to the whole clip.
            out.append(self.encoder.embed_utterance(trimmed if trimmed.size >= 1600 else wave))
        return np.stack(out).astype(np.float32)


def fingerprint(checkpoint: Path, p: EmbedParams, sample_rate: int) -> str:
    """Hash of what every vector depends on besides its clip: the teacher weights, the params and the CPU
    kernel pin (pipeline/runtime/cpu_isa.py: other kernels round differently).

    The clips themselves are keyed one by one (clip_id + sha256, see `clip_keys`), so a grown or
    changed pool reuses the vectors of the clips that did not change.
    """
    teacher = tree_hash(checkpoint) if Path(checkpoint).exists() else ""  # absent for resemblyzer alone
    settings = {k: v for k, v in asdict(p).items() if k not in ("shard_batches", "max_reject_fraction")}
    return digest({"teacher": teacher, "params": settings, "sample_rate": sample_rate, "cpu": kernel_paths()})


def clip_keys(pool: pd.DataFrame) -> list[str]:
    """One key per row: the clip id and the sha256 of its audio (a changed file is embedded again)."""
    return [f"{cid}\t{sha}" for cid, sha in zip(pool["clip_id"].astype(str), pool["sha256"].astype(str))]


def _write_shard(path: Path, emb: np.ndarray, scores: np.ndarray, ids: list[str], keys: list[str],
                 rejects: list[dict]) -> None:
    """A shard: the vectors, scores and ids of the rows that loaded, the keys of all its rows, its rejects."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, emb=emb, scores=np.asarray(scores, dtype=np.float64), ids=np.asarray(ids, dtype=str),
                 keys=np.asarray(keys, dtype=str), rejects=np.asarray(json.dumps(rejects)))


def _read_shard(path: Path, dim: int) -> dict[str, tuple[np.ndarray, float] | dict]:
    """key -> (vector, score) of a clip that loaded, or its reject row; raises on a damaged or foreign shard
    (a shard written before the scores were kept lacks them: KeyError, so it is redone)."""
    with np.load(path, allow_pickle=False) as z:
        emb, ids, keys = z["emb"], [str(x) for x in z["ids"]], [str(x) for x in z["keys"]]
        scores = z["scores"]
        rejects = json.loads(str(z["rejects"]))
    if emb.shape != (len(ids), dim) or scores.shape != (len(ids),):
        raise ValueError(f"emb {emb.shape} / scores {scores.shape} do not fit {len(ids)} ids of dim {dim}")
    by_id = {k.split("\t", 1)[0]: k for k in keys}
    out: dict[str, tuple[np.ndarray, float] | dict] = {by_id[i]: (emb[n], float(scores[n])) for n, i in enumerate(ids)}
    out.update({by_id[str(r["clip_id"])]: r for r in rejects})
    if len(out) != len(keys):
        raise ValueError(f"{len(keys)} rows but {len(out)} results")
    return out


def load_shards(partial: Path, dim: int) -> tuple[dict[str, tuple[np.ndarray, float] | dict], int]:
    """Every result in the shards of `partial` (key -> (vector, score) or reject), and the next free shard number.

    A shard that cannot be read (a truncated .npz after a crash or a full disk: BadZipFile, EOF, a
    missing array) is logged, deleted and its clips embedded again.
    """
    done: dict[str, tuple[np.ndarray, float] | dict] = {}
    shards = sorted(partial.glob("shard_*.npz"))
    for shard in shards:
        try:
            done.update(_read_shard(shard, dim))
        except (zipfile.BadZipFile, OSError, EOFError, KeyError, ValueError, TypeError) as exc:
            log.warning("embed: dropping damaged shard %s (%s: %s); its clips are embedded again", shard.name,
                        type(exc).__name__, exc)
            shard.unlink()
    numbers = [int(s.stem.split("_")[1]) for s in shards if s.stem.split("_")[1].isdigit()]
    return done, max(numbers, default=-1) + 1


def vectors_and_scores(out: np.ndarray | tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(float16 vectors, float64 scores) of a vectorizer's output; a vectorizer without scores gives NaN."""
    vectors, scores = out if isinstance(out, tuple) else (out, np.full(len(out), np.nan))
    return vectors.astype(np.float16), np.asarray(scores, dtype=np.float64)


def batch_vectors(rows: pd.DataFrame, vectorize: Callable[[torch.Tensor], Any], sample_rate: int,
                  eval_s: float, dim: int, device: torch.device
                  ) -> tuple[np.ndarray, np.ndarray, list[str], list[dict]]:
    """One batch of clip-table rows -> (float16 vectors and scores of the clips that loaded, their ids, rejects)."""
    batch = load_batch(rows, sample_rate, int(round(eval_s * sample_rate)), stage="embed")
    if not batch.clip_ids:
        return np.zeros((0, dim), np.float16), np.zeros(0), [], batch.rejects
    return (*vectors_and_scores(vectorize(batch.waves.to(device))), batch.clip_ids, batch.rejects)


def batch_function(checkpoint: Path, arch: str | None, p: EmbedParams, device: torch.device,
                   sample_rate: int) -> Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray, list[str], list[dict]]]:
    """Load the teacher and embedder in an engine worker (a Ray actor) and return its batch function."""
    model = None
    if p.embedder != "resemblyzer":
        model, _ = load_checkpoint(checkpoint, device=device, expected_arch=arch)
    vectorize, dim = build_vectorizer(model, p, device, with_scores=True)
    return functools.partial(batch_vectors, vectorize=vectorize, sample_rate=sample_rate, eval_s=p.eval_s, dim=dim,
                   device=device)


def _run_on_engine(todo: pd.DataFrame, todo_keys: list[str], partial: Path, first: int, p: EmbedParams, dim: int,
                   engine: EngineConfig, actor_factory: Callable) -> None:
    """Compute the rows still to do on `engine` (ray), written as shards the local loop would write."""
    key_of = dict(zip(todo["clip_id"].astype(str), todo_keys))
    for k, results in iter_shards(None, todo, batch_size=p.batch_size, cfg=engine, actor_factory=actor_factory,
                                  shard_batches=p.shard_batches, desc="embed"):
        embs = [e for e, _, _, _ in results if len(e)]
        scores = [s for _, s, _, _ in results]
        ids = [i for _, _, b_ids, _ in results for i in b_ids]
        rejects = [r for _, _, _, rej in results for r in rej]
        _write_shard(partial / f"shard_{first + k:05d}.npz",
                     np.concatenate(embs) if embs else np.zeros((0, dim), np.float16),
                     np.concatenate(scores) if scores else np.zeros(0), ids,
                     [key_of[c] for c in ids + [str(r["clip_id"]) for r in rejects]], rejects)


def run(pool: pd.DataFrame, vectorize: Callable[[torch.Tensor], Any], dim: int, p: EmbedParams,
        sample_rate: int, out_dir: str | Path, fp: str, device: torch.device,
        info: dict[str, Any] | None = None, engine: EngineConfig | None = None,
        actor_factory: Callable | None = None) -> dict[str, Any]:
    """Embed every row of `pool` in shards (resuming from <out>/.partial), then assemble the final files.

    With a ray `engine`, the missing shards are computed by actors built with `actor_factory` (batch_function).
    `vectorize` returns the vectors, or (vectors, scores) (build_vectorizer(..., with_scores=True)).
    """
    out_dir = Path(out_dir)
    partial = out_dir / PARTIAL
    ResumeDir(partial, fp, "state.json", foreign_ok=True)  # another teacher or params: shards discarded
    keys = clip_keys(pool)
    done, first = load_shards(partial, dim)
    todo = pool[[k not in done for k in keys]]
    todo_keys = [k for k in keys if k not in done]
    rows_per_shard = p.batch_size * p.shard_batches
    n_shards = -(-len(todo) // rows_per_shard)
    t0 = time.perf_counter()
    if engine is not None and engine.engine == "ray":
        if actor_factory is None:
            raise ValueError("embed: the ray engine needs an actor_factory (embed.batch_function)")
        _run_on_engine(todo, todo_keys, partial, first, p, dim, engine, actor_factory)
        done, _ = load_shards(partial, dim)
        n_shards = 0
    for k in progress(range(n_shards), desc="embed shards", total=n_shards, unit="shard"):
        rows = todo.iloc[k * rows_per_shard:(k + 1) * rows_per_shard]
        embs, scores, ids, rejects = [], [], [], []
        for _, batch in iter_batches(rows, p.batch_size, sample_rate, p.eval_s, stage="embed"):
            rejects += batch.rejects
            if batch.clip_ids:
                vectors, batch_scores = vectors_and_scores(vectorize(batch.waves.to(device)))
                embs.append(vectors)
                scores.append(batch_scores)
                ids += batch.clip_ids
        shard = partial / f"shard_{first + k:05d}.npz"
        _write_shard(shard, np.concatenate(embs) if embs else np.zeros((0, dim), np.float16),
                     np.concatenate(scores) if scores else np.zeros(0), ids,
                     todo_keys[k * rows_per_shard:(k + 1) * rows_per_shard], rejects)
        done.update(_read_shard(shard, dim))
    seconds = time.perf_counter() - t0
    results = [(k.split("\t", 1)[0], done[k]) for k in keys]
    return _assemble(partial, results, dim, p, out_dir, seconds, len(todo), info or {})


def _assemble(partial: Path, results: list[tuple[str, tuple[np.ndarray, float] | dict]], dim: int, p: EmbedParams,
              out_dir: Path, seconds: float, computed: int, info: dict[str, Any]) -> dict[str, Any]:
    """The final files from the per-clip (id, (vector, score) or reject) results in pool order, then .partial/
    removed."""
    ids = [cid for cid, r in results if not isinstance(r, dict)]
    rejects = [r for _, r in results if isinstance(r, dict)]
    loaded = [r for _, r in results if not isinstance(r, dict)]
    emb = np.stack([v for v, _ in loaded]) if ids else np.zeros((0, dim), np.float16)
    scores = np.array([s for _, s in loaded], dtype=np.float64)
    n_pool = len(results)
    write_rejects(make_rejects(rejects), out_dir / "rejects.parquet")
    if n_pool and len(rejects) / n_pool > p.max_reject_fraction:
        raise StageError(f"embed: {len(rejects)} of {n_pool} clips unreadable (> {p.max_reject_fraction:.0%}); "
                           f"see {out_dir / 'rejects.parquet'}")
    write_embeddings(emb.astype(np.float16), out_dir, p.max_rows_per_file)  # emb.npy, or emb-*.npy past the limit
    write_parquet_atomic(pa.table({"clip_id": pa.array(ids, pa.string()),
                                   "score": pa.array(scores, pa.float64(), from_pandas=True)}), out_dir / "ids.parquet")
    summary = {**info, "n": len(ids), "dim": dim, "rejected": len(rejects), "layers": p.layers,
               "aggregate": p.aggregate, "embedder": p.embedder, "eval_s": p.eval_s, "batch_size": p.batch_size}
    write_json_atomic(summary, out_dir / "info.json")  # a DVC output: nothing that differs between runs
    shutil.rmtree(partial)
    rate = round(computed / seconds, 2) if computed and seconds > 0 else None
    log.info("embed: %d clips embedded in %.1f s (%s clips/s), %d reused from shards", computed, seconds, rate,
             len(results) - computed)
    return {**summary, "computed_clips": computed, "seconds": round(seconds, 3), "clips_per_s": rate}


def build_vectorizer(model: Detector | None, p: EmbedParams, device: torch.device,
                     with_scores: bool = False) -> tuple[Callable[[torch.Tensor], Any], int]:
    """The batch -> vectors function of the chosen embedder, and its size; with `with_scores` the function
    returns (vectors, the teacher's bona fide scores: NaN for the resemblyzer embedder alone)."""
    parts: list[tuple[Callable[[torch.Tensor], Any], int]] = []
    scored = with_scores and p.embedder != "resemblyzer"
    if p.embedder in ("teacher", "teacher+resemblyzer"):
        if model is None:
            raise ValueError("embedder 'teacher' needs a teacher model")
        dim = check_layers(model, p.layers, p.aggregate)
        parts.append((lambda w: embed_batch(model, w, p.layers, p.aggregate, p.precision, scores=scored), dim))
    if p.embedder in ("resemblyzer", "teacher+resemblyzer"):
        enc = ResemblyzerEmbedder(p.resemblyzer_weights, device)
        parts.append((enc, enc.dim))
    if len(parts) == 1:
        fn, dim = parts[0]
        return (lambda w: vectors_and_scores(fn(w))) if with_scores else fn, dim
    teacher, speaker = parts[0][0], parts[1][0]

    def both(w: torch.Tensor) -> Any:
        vectors, scores = teacher(w) if scored else (teacher(w), None)
        joined = np.concatenate([vectors, speaker(w)], axis=1)
        return (joined, scores) if with_scores else joined

    return both, sum(d for _, d in parts)


def score_threshold(teacher_dir: Path) -> tuple[float, str]:
    """The teacher's decision threshold for its scores: its dev EER threshold (metrics.json `dev_threshold`,
    written by pretrain), else 0 (the margin rule's natural boundary), and where it came from."""
    path = teacher_dir / "metrics.json"
    try:
        value = json.loads(path.read_text()).get("dev_threshold") if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        value = None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
        return float(value), "dev_threshold"
    return 0.0, "none (0)"


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("embed", "Embed every clip of a teacher's pool with the teacher.")
    parser.add_argument("teacher", help="teacher name, a key of params `teachers:`")
    parser.add_argument("--clips", nargs="+", required=True, help="clip tables (clips.parquet, recon/*.parquet)")
    parser.add_argument("--teacher-dir", required=True,
                        help="the teacher's directory (model.pt), e.g. data/teachers/<T>")
    parser.add_argument("--out", required=True, help="output directory, e.g. data/embeddings/<T>")
    args, params, common = start_stage(parser, argv)
    teacher = teacher_params(params, args.teacher)
    check_pool(teacher.pool, f"{teacher.where}.pool")
    check_config(teacher.model_config(common.sample_rate), teacher.where)
    device = setup_torch(common)
    p = EmbedParams.from_params(section(params, "embed"))
    sample_rate = common.sample_rate
    checkpoint = Path(args.teacher_dir) / "model.pt"
    model = None
    if p.embedder != "resemblyzer":
        model, _ = load_checkpoint(checkpoint, device=device, expected_arch=teacher.arch)
    pool = select_pool(read_clip_tables(args.clips, stage="embed"), teacher.pool)
    if pool.empty:
        raise StageError(f"teacher {args.teacher}: its pool ({teacher.where}.pool) selects no clips of {args.clips}")
    vectorize, dim = build_vectorizer(model, p, device, with_scores=True)
    fp = fingerprint(checkpoint, p, sample_rate)
    threshold, source = score_threshold(Path(args.teacher_dir))
    with stage_timer(log, f"embed {args.teacher}") as stats:
        engine = EngineConfig.from_runtime(common.runtime, device)
        factory = functools.partial(batch_function, checkpoint, teacher.arch, p, device, sample_rate)
        info = {"teacher": args.teacher, "score_threshold": threshold, "score_threshold_source": source,
                "score_rule": SCORE_RULE}
        summary = run(pool, vectorize, dim, p, sample_rate, args.out, fp, device, info=info, engine=engine,
                      actor_factory=factory)
        stats.add("clips", summary["computed_clips"])
        stats.add("rejected", summary["rejected"])
    log.info("embed %s: %d x %d -> %s", args.teacher, summary["n"], dim, args.out)
    return 0
