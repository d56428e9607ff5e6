"""prepare: corpus adapters -> normalised audio + the clip table.

Reads the corpora named in params `prepare.corpora`; writes data/clips/<corpus>/<clip_id>.flac
(mono, 16-bit, `audio.sample_rate`), data/clips.parquet (DESIGN.md schema), data/rejects.parquet
(every source row that could not be used, with its reason) and metrics/prepare.json.
Corpora without an official split get a speaker-disjoint train/dev/test split, deterministic by seed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.audio import AudioError, check_audio, lowpass, measure, read_audio, vad_trim, write_audio
from pipeline.corpora import ADAPTERS
from pipeline.engine import EngineConfig, map_batch_results
from pipeline.io import write_json_atomic
from pipeline.logs import progress, setup_logging, stage_timer
from pipeline.params import check_known_keys, load_params, section, stage_parser
from pipeline.schema import (
    CLIP_COLUMNS,
    check_split_speakers,
    make_rejects,
    write_clips,
    write_rejects,
)

log = logging.getLogger("pipeline.prepare")
BATCH = 32


@dataclass(frozen=True)
class PrepareParams:
    """The `prepare` section of params (plus audio.sample_rate and seed)."""

    corpora: tuple[dict, ...]
    sample_rate: int = 16000
    dev_fraction: float = 0.2
    test_fraction: float = 0.2
    min_duration_s: float = 0.3
    max_duration_s: float = 10.0
    vad_trim: bool = False
    lowpass_hz: float | None = None
    max_reject_fraction: float = 0.2
    workers: int = 1
    seed: int = 0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> PrepareParams:
        p = dict(section(params, "prepare"))
        corpora = tuple(p.pop("corpora", None) or ())
        if not corpora:
            raise ValueError("params prepare.corpora is empty: name at least one corpus (e.g. {name: demo, root: ...})")
        check_known_keys("prepare", p, cls.__dataclass_fields__)
        return cls(corpora=corpora, sample_rate=int(section(params, "audio")["sample_rate"]),
                   seed=int(params.get("seed", 0)), **p)


class TooManyRejects(RuntimeError):
    """More than `max_reject_fraction` of the source rows were rejected."""


def load_sources(corpora: tuple[dict, ...]) -> tuple[pd.DataFrame, list[dict]]:
    """Run each configured adapter; return all source rows and the adapters' rejects."""
    frames, rejects = [], []
    for entry in corpora:
        entry = dict(entry)
        name = entry.pop("name", None)
        if name not in ADAPTERS:
            raise ValueError(f"unknown corpus {name!r} in prepare.corpora; known: {sorted(ADAPTERS)}")
        root = entry.pop("root", None)
        if root is None:
            raise ValueError(f"prepare.corpora entry {name!r} needs a root")
        result = ADAPTERS[name](Path(root), **entry)
        log.info("corpus %s: %d source rows, %d skipped", name, len(result.sources), result.n_skipped)
        frames.append(result.sources)
        rejects += result.rejects
    sources = pd.concat(frames, ignore_index=True)
    dup = sources["clip_id"].duplicated(keep="first")
    for _, row in sources[dup].iterrows():
        rejects.append({"clip_id": row["clip_id"], "path": row["source_path"], "corpus": row["corpus"],
                        "stage": "prepare", "reason": "duplicate clip_id across corpora"})
    return sources[~dup].reset_index(drop=True), rejects


def assign_splits(sources: pd.DataFrame, dev_fraction: float, test_fraction: float,
                  rng: np.random.Generator) -> pd.DataFrame:
    """Fill missing splits speaker-disjointly, per corpus, aiming at the clip fractions given."""
    if not 0 <= dev_fraction < 1 or not 0 <= test_fraction < 1 or dev_fraction + test_fraction >= 1:
        raise ValueError("prepare: dev_fraction and test_fraction must be in [0, 1) and sum below 1")
    out = sources.copy()
    todo = out["split"].isna()
    for corpus in sorted(out.loc[todo, "corpus"].unique()):
        rows = todo & (out["corpus"] == corpus)
        counts = out[rows].groupby("speaker").size().sort_index()
        shuffled = counts.iloc[rng.permutation(len(counts))]
        # Largest speakers first (ties in seeded order), each to the split furthest below its target
        # clip count: a few big speakers (the demo's asterisk voices) cannot swamp one split.
        order = shuffled.sort_values(ascending=False, kind="stable")
        total = counts.sum()
        targets = {"test": test_fraction * total, "dev": dev_fraction * total,
                   "train": (1 - dev_fraction - test_fraction) * total}
        filled = dict.fromkeys(targets, 0)
        assigned = {}
        for spk, n in order.items():
            split = max(targets, key=lambda s: (targets[s] - filled[s], s == "train"))
            assigned[spk] = split
            filled[split] += n
        out.loc[rows, "split"] = out.loc[rows, "speaker"].map(assigned)
    return out


def process_batch(rows: pd.DataFrame, audio_dir: str, sample_rate: int, min_duration_s: float,
                  max_duration_s: float, trim: bool, lowpass_hz: float | None = None) -> tuple[list[dict], list[dict]]:
    """Read, normalise, write and measure a batch of source rows; return (clip rows, rejects)."""
    clips, rejects = [], []
    for row in rows.itertuples(index=False):
        try:
            wave, _ = read_audio(row.source_path, sample_rate)
            check_audio(wave, sample_rate, min_duration_s)
            if trim:
                wave = vad_trim(wave, sample_rate)
            wave = wave[: int(max_duration_s * sample_rate)]
            if lowpass_hz:
                wave = lowpass(wave, sample_rate, lowpass_hz)
            peak = float(np.max(np.abs(wave)))
            if peak > 1.0:  # float files can exceed full scale: normalise rather than clip
                wave = wave / peak * 0.99
            out = Path(audio_dir) / row.corpus / f"{row.clip_id}.flac"
            sha = write_audio(out, wave, sample_rate)
        except (AudioError, OSError, ValueError) as exc:
            rejects.append({"clip_id": row.clip_id, "path": row.source_path, "corpus": row.corpus,
                            "stage": "prepare", "reason": str(exc)})
            continue
        clips.append({
            "clip_id": row.clip_id, "path": str(out), "corpus": row.corpus, "speaker": row.speaker,
            "label": row.label, "system": row.system, "paradigm": row.paradigm, "parent_id": None,
            "split": row.split, **measure(wave, sample_rate), "sha256": sha,
        })
    return clips, rejects


def run(p: PrepareParams, audio_dir: Path,
        engine: EngineConfig | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Adapters -> splits -> normalised audio; return (clips, rejects, metrics).

    The batches run on `engine` (params `runtime.engine`) when it is ray, else locally (`workers` processes).
    """
    sources, rejects = load_sources(p.corpora)
    n_adapter_rejects = len(rejects)
    sources = assign_splits(sources, p.dev_fraction, p.test_fraction, np.random.default_rng(p.seed))
    batches = [sources.iloc[i:i + BATCH] for i in range(0, len(sources), BATCH)]
    work: Callable = _batch_worker(str(audio_dir), p)
    clip_rows: list[dict] = []
    with stage_timer(log, "prepare") as stats:
        if engine is not None and engine.engine == "ray":
            for clips, rej in map_batch_results(work, sources, batch_size=BATCH, cfg=engine, desc="prepare"):
                clip_rows += clips
                rejects += rej
        elif p.workers > 1:
            with ProcessPoolExecutor(p.workers) as pool:
                results = pool.map(work, batches)
                for clips, rej in progress(results, "prepare", total=len(batches), unit="batch"):
                    clip_rows += clips
                    rejects += rej
        else:
            for batch in progress(batches, "prepare", total=len(batches), unit="batch"):
                clips, rej = work(batch)
                clip_rows += clips
                rejects += rej
        stats.add("clips", len(clip_rows))
        stats.add("rejects", len(rejects))
    n_in = len(sources) + n_adapter_rejects
    rejects_df = make_rejects(rejects)
    clips = pd.DataFrame(clip_rows, columns=list(CLIP_COLUMNS)).sort_values("clip_id").reset_index(drop=True)
    fraction = len(rejects_df) / max(1, n_in)
    metrics = {
        "clips": len(clips), "rejects": len(rejects_df), "source_rows": int(n_in),
        "reject_fraction": round(fraction, 4),
        "by_split": clips.groupby("split").size().to_dict(), "by_label": clips.groupby("label").size().to_dict(),
        "speakers": int(clips.groupby(["corpus", "speaker"]).ngroups) if len(clips) else 0,
        "hours": round(float(clips["duration_s"].sum()) / 3600, 4),
    }
    return clips, rejects_df, metrics


def _batch_worker(audio_dir: str, p: PrepareParams) -> Callable:
    from functools import partial

    return partial(process_batch, audio_dir=audio_dir, sample_rate=p.sample_rate, min_duration_s=p.min_duration_s,
                   max_duration_s=p.max_duration_s, trim=p.vad_trim, lowpass_hz=p.lowpass_hz)


def summarise_rejects(rejects: pd.DataFrame, limit: int = 10) -> str:
    """A short text of the commonest reject reasons (for the failure message)."""
    reasons = rejects["reason"].str.replace(r"\S*/\S*", "<path>", regex=True).value_counts().head(limit)
    return "\n".join(f"  {n:6d}  {reason}" for reason, n in reasons.items())


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("prepare", __doc__.splitlines()[0])
    parser.add_argument("--clips", default="data/clips.parquet")
    parser.add_argument("--rejects", default="data/rejects.parquet")
    parser.add_argument("--audio-dir", default="data/clips")
    parser.add_argument("--metrics", default="metrics/prepare.json")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params(args.params)
    p = PrepareParams.from_params(params)
    clips, rejects, metrics = run(p, Path(args.audio_dir), engine=EngineConfig.from_params(params, device="cpu"))
    # Rejects are written even when the stage fails, so the reasons can be read.
    write_rejects(rejects, args.rejects)
    if metrics["reject_fraction"] > p.max_reject_fraction or clips.empty:
        print(f"prepare failed: {len(rejects)} of {metrics['source_rows']} source rows rejected "
              f"({metrics['reject_fraction']:.1%} > max_reject_fraction {p.max_reject_fraction:.1%}); "
              f"see {args.rejects}. Commonest reasons:\n{summarise_rejects(rejects)}", file=sys.stderr)
        return 1
    check_split_speakers(clips, stage="prepare")
    write_clips(clips, args.clips, stage="prepare")
    write_json_atomic(metrics, args.metrics)
    log.info("prepare wrote %d clips (%s), %d rejects", len(clips), metrics["by_split"], len(rejects))
    return 0


if __name__ == "__main__":
    sys.exit(main())
