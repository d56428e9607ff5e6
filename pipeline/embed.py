"""Stage embed@T: teacher T's embedding of every clip of its pool (train, dev and test splits).

Reads the clip tables and their audio, the teacher data/teachers/<T>/model.pt, and params
`teachers.<T>` (its pool and arch), `embed`, `audio`, `runtime`, `seed`.
Writes data/embeddings/<T>/: emb.npy (float16, N x D), ids.parquet (clip_id, in emb row order),
rejects.parquet (clips that could not be read, with the reason) and info.json (dims, layers, rate).

Each clip is the first `eval_s` seconds (tiled when shorter), run through the teacher in eval mode.
The vector is the teacher's penultimate layer (the input of its classifier, where neural collapse
is measured), or the time-frequency-pooled outputs of several `layers` concatenated or averaged
(`aggregate`), optionally with resemblyzer's speaker embedding (`embedder`).

Streaming and resuming: batches of rows -> vectors, grouped into shards of `shard_batches`
batches written atomically to <out>/.partial/; memory is one shard. A re-run with the same pool,
teacher and params skips the shards already there (another fingerprint discards them); the final
files are assembled from the shards and written atomically, then .partial/ is removed. The out is
`persist: true` in dvc.yaml so that DVC does not delete the shards of an interrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from pipeline.clipdata import iter_batches, select_pool
from pipeline.io import atomic_path, write_json_atomic, write_npy_atomic, write_parquet_atomic
from pipeline.logs import progress, setup_logging, stage_timer
from pipeline.models import Detector, load_checkpoint
from pipeline.params import check_known_keys, load_params, section, stage_parser, teacher_params
from pipeline.resume import ResumeDir
from pipeline.schema import make_rejects, read_clip_tables, write_rejects
from pipeline.scoring import embed_batch
from pipeline.torch_env import setup_torch

log = logging.getLogger("embed")

AGGREGATES = ("concat", "mean")
EMBEDDERS = ("teacher", "resemblyzer", "teacher+resemblyzer")
PARTIAL = ".partial"


@dataclass(frozen=True)
class EmbedParams:
    """The `embed` params section."""

    batch_size: int = 64
    eval_s: float = 4.0
    layers: list[str] = field(default_factory=lambda: ["penultimate"])
    aggregate: str = "concat"             # concat | mean (mean needs layers of one size)
    embedder: str = "teacher"             # teacher | resemblyzer | teacher+resemblyzer
    resemblyzer_weights: str | None = None  # a VoiceEncoder .pt; null = the one shipped in the package
    shard_batches: int = 16
    max_reject_fraction: float = 0.2

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmbedParams:
        check_known_keys("embed", d, (f.name for f in fields(cls)))
        p = cls(**{**d, "layers": list(d.get("layers", ["penultimate"]))})
        if p.aggregate not in AGGREGATES:
            raise ValueError(f"embed.aggregate must be one of {AGGREGATES}, not {p.aggregate!r}")
        if p.embedder not in EMBEDDERS:
            raise ValueError(f"embed.embedder must be one of {EMBEDDERS}, not {p.embedder!r}")
        if not p.layers or p.batch_size < 1 or p.shard_batches < 1 or p.eval_s <= 0:
            raise ValueError("embed: layers must be non-empty; batch_size, shard_batches and eval_s positive")
        return p


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


def fingerprint(ids: list[str], checkpoint: Path, p: EmbedParams, sample_rate: int) -> str:
    """Hash of what the shards depend on: the clip ids in order, the teacher weights and the params."""
    h = hashlib.sha256()
    h.update("\n".join(ids).encode())
    if Path(checkpoint).exists():  # absent for the resemblyzer-only embedder
        h.update(Path(checkpoint).read_bytes())
    h.update(json.dumps({**asdict(p), "sample_rate": sample_rate}, sort_keys=True).encode())
    return h.hexdigest()


def _write_shard(path: Path, emb: np.ndarray, ids: list[str], rejects: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, emb=emb, ids=np.asarray(ids, dtype=str), rejects=np.asarray(json.dumps(rejects)))


def _read_shard(path: Path) -> tuple[np.ndarray, list[str], list[dict]]:
    with np.load(path, allow_pickle=False) as z:
        return z["emb"], [str(x) for x in z["ids"]], json.loads(str(z["rejects"]))


def run(pool: pd.DataFrame, vectorize: Callable[[torch.Tensor], np.ndarray], dim: int, p: EmbedParams,
        sample_rate: int, out_dir: str | Path, fp: str, device: torch.device,
        info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Embed every row of `pool` in shards (resuming from <out>/.partial), then assemble the final files."""
    out_dir = Path(out_dir)
    partial = out_dir / PARTIAL
    ResumeDir(partial, fp, "state.json", foreign_ok=True)  # other clips, teacher or params: shards discarded
    n_batches = -(-len(pool) // p.batch_size)
    n_shards = -(-n_batches // p.shard_batches)
    rows_per_shard = p.batch_size * p.shard_batches
    t0, computed = time.perf_counter(), 0
    for k in progress(range(n_shards), desc="embed shards", total=n_shards, unit="shard"):
        shard = partial / f"shard_{k:05d}.npz"
        if shard.exists():
            continue
        rows = pool.iloc[k * rows_per_shard:(k + 1) * rows_per_shard]
        embs, ids, rejects = [], [], []
        for _, batch in iter_batches(rows, p.batch_size, sample_rate, p.eval_s, stage="embed"):
            rejects += batch.rejects
            if batch.clip_ids:
                embs.append(vectorize(batch.waves.to(device)).astype(np.float16))
                ids += batch.clip_ids
        _write_shard(shard, np.concatenate(embs) if embs else np.zeros((0, dim), np.float16), ids, rejects)
        computed += len(rows)
    seconds = time.perf_counter() - t0
    return _assemble(partial, n_shards, dim, len(pool), p, out_dir, seconds, computed, info or {})


def _assemble(partial: Path, n_shards: int, dim: int, n_pool: int, p: EmbedParams, out_dir: Path, seconds: float,
              computed: int, info: dict[str, Any]) -> dict[str, Any]:
    embs, ids, rejects = [], [], []
    for k in range(n_shards):
        e, i, r = _read_shard(partial / f"shard_{k:05d}.npz")
        embs.append(e)
        ids += i
        rejects += r
    emb = np.concatenate(embs) if embs else np.zeros((0, dim), np.float16)
    if emb.shape != (len(ids), dim):
        raise RuntimeError(f"shards in {partial} do not fit: emb {emb.shape}, {len(ids)} ids, dim {dim}")
    write_rejects(make_rejects(rejects), out_dir / "rejects.parquet")
    if n_pool and len(rejects) / n_pool > p.max_reject_fraction:
        raise RuntimeError(f"embed: {len(rejects)} of {n_pool} clips unreadable (> {p.max_reject_fraction:.0%}); "
                           f"see {out_dir / 'rejects.parquet'}")
    write_npy_atomic(emb.astype(np.float16), out_dir / "emb.npy")
    write_parquet_atomic(pa.table({"clip_id": pa.array(ids, pa.string())}), out_dir / "ids.parquet")
    summary = {**info, "n": len(ids), "dim": dim, "rejected": len(rejects), "layers": p.layers,
               "aggregate": p.aggregate, "embedder": p.embedder, "eval_s": p.eval_s, "batch_size": p.batch_size,
               "computed_clips": computed, "seconds": round(seconds, 3),
               "clips_per_s": round(computed / seconds, 2) if computed and seconds > 0 else None}
    write_json_atomic(summary, out_dir / "info.json")
    shutil.rmtree(partial)
    return summary


def build_vectorizer(model: Detector | None, p: EmbedParams,
                     device: torch.device) -> tuple[Callable[[torch.Tensor], np.ndarray], int]:
    """The batch -> vectors function of the chosen embedder, and its size."""
    parts: list[tuple[Callable[[torch.Tensor], np.ndarray], int]] = []
    if p.embedder in ("teacher", "teacher+resemblyzer"):
        if model is None:
            raise ValueError("embedder 'teacher' needs a teacher model")
        dim = check_layers(model, p.layers, p.aggregate)
        parts.append((lambda w: embed_batch(model, w, p.layers, p.aggregate), dim))
    if p.embedder in ("resemblyzer", "teacher+resemblyzer"):
        enc = ResemblyzerEmbedder(p.resemblyzer_weights, device)
        parts.append((enc, enc.dim))
    if len(parts) == 1:
        return parts[0]
    return (lambda w: np.concatenate([f(w) for f, _ in parts], axis=1)), sum(d for _, d in parts)


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("embed", "Embed every clip of a teacher's pool with the teacher.")
    parser.add_argument("teacher", help="teacher name, a key of params `teachers:`")
    parser.add_argument("--clips", nargs="+", required=True, help="clip tables (clips.parquet, recon/*.parquet)")
    parser.add_argument("--teacher-dir", required=True,
                        help="the teacher's directory (model.pt), e.g. data/teachers/<T>")
    parser.add_argument("--out", required=True, help="output directory, e.g. data/embeddings/<T>")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params(args.params)
    teacher = teacher_params(params, args.teacher)
    device = setup_torch(params)
    p = EmbedParams.from_dict(section(params, "embed"))
    sample_rate = int(section(params, "audio")["sample_rate"])
    checkpoint = Path(args.teacher_dir) / "model.pt"
    model = None
    if p.embedder != "resemblyzer":
        model, _ = load_checkpoint(checkpoint, device=device, expected_arch=teacher.get("arch"))
    pool = select_pool(read_clip_tables(args.clips, stage="embed"), teacher.get("pool"))
    vectorize, dim = build_vectorizer(model, p, device)
    fp = fingerprint(pool["clip_id"].tolist(), checkpoint, p, sample_rate)
    with stage_timer(log, f"embed {args.teacher}") as stats:
        summary = run(pool, vectorize, dim, p, sample_rate, args.out, fp, device, info={"teacher": args.teacher})
        stats.add("clips", summary["computed_clips"])
        stats.add("rejected", summary["rejected"])
    log.info("embed %s: %d x %d -> %s", args.teacher, summary["n"], dim, args.out)
    return 0
