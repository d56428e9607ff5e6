"""prepare: corpus adapters -> normalised audio + the clip table.

Reads the corpora named in params `prepare.corpora`; writes data/clips/<corpus>/<clip_id>.flac
(mono, 16-bit, `audio.sample_rate`), data/clips.parquet (DESIGN.md schema), data/rejects.parquet
(every source row that could not be used, with its reason) and metrics/prepare.json.
Corpora without an official split get a speaker-disjoint train/dev/test split, deterministic by seed.
Every file goes through pipeline.chain.apply_chain (resample, low-pass, 16 bits, VAD trim, length cap): the one
chain that train/pretrain record with the model and `score` applies to raw inputs. Each clip row's
`source` is the file it was made from.
"""

from __future__ import annotations

import csv
import inspect
import logging
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipeline.audio import AudioError, measure, read_audio, write_audio
from pipeline.chain import CHAIN_PARAMS, Chain, apply_chain, chain_from_params
from pipeline.corpora import ADAPTERS
from pipeline.corpora.common import CorpusError, check_corpus_name
from pipeline.io import atomic_dir, check_writable, write_json_atomic
from pipeline.logs import DISK_ERRNOS, progress, stage_timer
from pipeline.matching import match_to_parent
from pipeline.params import (
    ConfigError,
    Match,
    Section,
    as_list,
    check_known_keys,
    mapping,
    number,
    one_of,
    roles_from_params,
    section,
    stage_parser,
    start_stage,
)
from pipeline.runtime.engine import EngineConfig, map_batch_results
from pipeline.schema import (
    CLIP_COLUMNS,
    check_split_speakers,
    make_rejects,
    system_role,
    write_clips,
    write_rejects,
)

log = logging.getLogger("pipeline.prepare")
BATCH = 32


@dataclass(frozen=True)
class PrepareParams(Section):
    """The `prepare` section of params (plus audio.sample_rate and seed)."""

    NAME: ClassVar[str] = "prepare"
    SHARED: ClassVar[tuple[str, ...]] = ("sample_rate", "seed")

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
    match_fakes: tuple[str, ...] = ()  # corpora whose fakes with a parent are matched to it (params `match`)
    seed: int = 0

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        corpora = as_list("prepare.corpora", kw.get("corpora"))
        if not corpora:
            raise ConfigError("params prepare.corpora is empty: name at least one corpus "
                              "(e.g. {name: demo, root: ...})")
        kw["match_fakes"] = tuple(as_list("prepare.match_fakes", kw.get("match_fakes")))
        return {**kw, "corpora": tuple(mapping(f"prepare.corpora[{i}]", c) for i, c in enumerate(corpora))}

    def check(self) -> None:
        for i, entry in enumerate(self.corpora):
            where = f"prepare.corpora[{i}]"
            name = one_of(f"{where}.name", entry.get("name"), ADAPTERS)
            if not isinstance(entry.get("root"), str):
                raise ConfigError(f"params {where} ({name}): needs a root path, got {entry.get('root')!r}")
            options = [k for k in inspect.signature(ADAPTERS[name]).parameters if k != "root"]
            check_known_keys(f"{where} ({name})", entry, ["name", "root", *options])
        for key in ("dev_fraction", "test_fraction"):
            number(f"prepare.{key}", getattr(self, key), low=0, high=1)
        if self.dev_fraction + self.test_fraction >= 1:
            raise ConfigError("params prepare: dev_fraction + test_fraction must be < 1 (train needs clips)")
        number("prepare.min_duration_s", self.min_duration_s, low=0)
        number("prepare.max_duration_s", self.max_duration_s, low=self.min_duration_s, low_open=True)
        number("prepare.lowpass_hz", self.lowpass_hz, low=0, high=self.sample_rate / 2, low_open=True, allow_none=True)
        number("prepare.max_reject_fraction", self.max_reject_fraction, low=0, high=1)
        self.chain()  # the chain's own checks
        number("prepare.workers", self.workers, low=1, integer=True)
        for name in self.match_fakes:
            if not isinstance(name, str) or not name:
                raise ConfigError(f"params prepare.match_fakes: expected corpus names, got {name!r}")

    def chain(self) -> Chain:
        """The preprocessing chain these params apply (recorded with every model trained on the clips)."""
        return chain_from_params({"prepare": {k: getattr(self, k) for k in CHAIN_PARAMS}}, self.sample_rate)


class TooManyRejects(RuntimeError):
    """More than `max_reject_fraction` of the source rows were rejected (or none kept): nothing is replaced."""


def load_sources(corpora: tuple[dict, ...]) -> tuple[pd.DataFrame, list[dict]]:
    """Run each configured adapter; return all source rows and the adapters' rejects.

    CorpusError when two entries make the same corpus (they would share data/clips/<corpus>/).
    A clip id made by two corpora is a `clip_id collision` reject when the files differ and a
    `duplicate row` reject when it is the same file listed twice.
    """
    frames, rejects, made_by = [], [], {}
    for k, entry in enumerate(corpora):
        entry = dict(entry)
        name = entry.pop("name", None)
        if name not in ADAPTERS:
            raise CorpusError(f"unknown corpus {name!r} in prepare.corpora; known: {sorted(ADAPTERS)}")
        root = entry.pop("root", None)
        if root is None:
            raise CorpusError(f"prepare.corpora entry {name!r} needs a root")
        try:
            result = ADAPTERS[name](Path(root), **entry)
        except (UnicodeDecodeError, csv.Error) as exc:  # an adapter's own metadata reader (read_csv_rows names lines)
            raise CorpusError(f"{name}: a metadata file under {root} cannot be read: {exc}") from None
        for corpus in sorted(set(result.sources["corpus"])):
            check_corpus_name(corpus)
            if corpus in made_by:
                raise CorpusError(f"prepare.corpora entries {made_by[corpus]} and {k} both make corpus {corpus!r}; "
                                  "give each its own name (e.g. `corpus: my_corpus` for a folder)")
            made_by[corpus] = k
        log.info("corpus %s: %d source rows, %d skipped", name, len(result.sources), result.n_skipped)
        frames.append(result.sources)
        rejects += result.rejects
    sources = pd.concat(frames, ignore_index=True)
    # a clip id names a file under data/clips/<corpus>/: an adapter must not make one with a path in it
    unsafe = sources["clip_id"].str.contains(r"[/\\\x00]") | sources["clip_id"].isin(["", ".", ".."])
    for _, row in sources[unsafe].iterrows():
        rejects.append({"clip_id": row["clip_id"], "path": row["source_path"], "corpus": row["corpus"],
                        "stage": "prepare", "reason": "clip_id with a path separator (adapter bug)"})
    sources = sources[~unsafe].reset_index(drop=True)
    first = sources.drop_duplicates("clip_id").set_index("clip_id")
    dup = sources["clip_id"].duplicated(keep="first")
    for _, row in sources[dup].iterrows():
        other = first.loc[row["clip_id"]]
        same = os.path.realpath(other["source_path"]) == os.path.realpath(row["source_path"])
        reason = (f"duplicate row: the same file is already listed by corpus {other['corpus']}" if same else
                  f"clip_id collision across corpora: corpus {other['corpus']} made the same id from "
                  f"{other['source_path']}")
        rejects.append({"clip_id": row["clip_id"], "path": row["source_path"], "corpus": row["corpus"],
                        "stage": "prepare", "reason": reason})
    return sources[~dup].reset_index(drop=True), rejects


def assign_splits(sources: pd.DataFrame, dev_fraction: float, test_fraction: float,
                  rng: np.random.Generator) -> pd.DataFrame:
    """Fill missing splits speaker-disjointly, per corpus, aiming at the clip fractions given.

    A speaker who also has evaluation-only rows (`eval:<set>`) in the corpus goes to test: an evaluation attack
    that keeps a real speaker's id (the demo's voice conversions of bona fide clips) must not meet that person
    in training. Those speakers are placed first and count towards test's share.
    """
    if not 0 <= dev_fraction < 1 or not 0 <= test_fraction < 1 or dev_fraction + test_fraction >= 1:
        raise ValueError("prepare: dev_fraction and test_fraction must be in [0, 1) and sum below 1")
    out = sources.copy()
    todo = out["split"].isna()
    for corpus in sorted(out.loc[todo, "corpus"].unique()):
        rows = todo & (out["corpus"] == corpus)
        evaluated = ~todo & (out["corpus"] == corpus) & out["split"].astype(str).str.startswith("eval:")
        claimed = set(out.loc[evaluated, "speaker"])
        counts = out[rows].groupby("speaker").size().sort_index()
        shuffled = counts.iloc[rng.permutation(len(counts))]
        # Largest speakers first (ties in seeded order), each to the split furthest below its target
        # clip count: a few big speakers (the demo's asterisk voices) cannot swamp one split.
        order = shuffled.sort_values(ascending=False, kind="stable")
        order = order.iloc[np.argsort(~order.index.isin(claimed), kind="stable")]
        total = counts.sum()
        targets = {"test": test_fraction * total, "dev": dev_fraction * total,
                   "train": (1 - dev_fraction - test_fraction) * total}
        filled = dict.fromkeys(targets, 0)
        assigned = {}
        for spk, n in order.items():
            split = "test" if spk in claimed else max(targets, key=lambda s: (targets[s] - filled[s], s == "train"))
            assigned[spk] = split
            filled[split] += n
        out.loc[rows, "split"] = out.loc[rows, "speaker"].map(assigned)
    return out


def process_batch(rows: pd.DataFrame, audio_dir: str, chain: Chain,
                  min_duration_s: float) -> tuple[list[dict], list[dict]]:
    """Read, normalise (pipeline.chain.apply_chain), write and measure a batch of source rows -> (clip rows, rejects);
    each clip row's `source` is the file it was made from. A full or read-only disk stops the stage (DISK_ERRNOS)."""
    sample_rate = chain.sample_rate
    clips, rejects = [], []
    for row in rows.itertuples(index=False):
        try:
            raw, sr = read_audio(row.source_path, max_duration_s=chain.read_limit_s())  # a long file: its start
            wave = apply_chain(raw, sr, chain, min_duration_s=min_duration_s)  # on the 16-bit grid write_audio keeps
            out = Path(audio_dir) / row.corpus / f"{row.clip_id}.flac"
            sha = write_audio(out, wave, sample_rate)
        except (AudioError, OSError, ValueError) as exc:
            if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
                raise  # every later clip would fail too: the stage stops, naming the file
            rejects.append({"clip_id": row.clip_id, "path": row.source_path, "corpus": row.corpus,
                            "stage": "prepare", "reason": str(exc)})
            continue
        clips.append({
            "clip_id": row.clip_id, "path": str(out), "corpus": row.corpus, "speaker": row.speaker,
            "label": row.label, "system": row.system, "paradigm": row.paradigm,
            "parent_id": _parent_id(row),
            "split": row.split, **measure(wave, sample_rate), "sha256": sha, "source": str(row.source_path),
            "matched": None,
        })
    return clips, rejects


def match_batch(rows: pd.DataFrame, sample_rate: int, match: Match) -> tuple[list[dict], list[dict]]:
    """Match prepared fakes to their prepared parents (`parent_path` column), rewrite them -> (clip rows, rejects).

    The TTS and corpus-fake side of pipeline.matching.match_to_parent (reconstruct is the other): the generator's
    length is kept; band, level, silences and the noise in pauses become the parent's.
    """
    clips, rejects = [], []
    for row in rows.to_dict("records"):
        parent_path = row.pop("parent_path")
        try:
            fake, _ = read_audio(row["path"], sample_rate)
            parent, _ = read_audio(parent_path, sample_rate)
            wave, matched = match_to_parent(fake, parent, sample_rate, gate=match.gate, same_length=False,
                                            hang_s=match.hang_s, fade_s=match.fade_s)
            sha = write_audio(row["path"], wave, sample_rate)
        except (AudioError, OSError, ValueError) as exc:
            rejects.append({"clip_id": row["clip_id"], "path": row["source"], "corpus": row["corpus"],
                            "stage": "prepare", "reason": f"matching to parent {row['parent_id']}: {exc}"})
            continue
        clips.append({**row, **measure(wave, sample_rate), "sha256": sha, "matched": matched})
    return clips, rejects


def match_corpus_fakes(clip_rows: list[dict], corpora: tuple[str, ...], sample_rate: int,
                       match: Match) -> tuple[list[dict], list[dict]]:
    """Match the fakes of `corpora` that name a parent to it; a fake whose parent was not kept is a reject."""
    paths = {r["clip_id"]: r["path"] for r in clip_rows if r["label"] == "bonafide"}
    todo = [r["label"] == "spoof" and r["corpus"] in corpora and bool(r["parent_id"]) for r in clip_rows]
    keep = [r for r, t in zip(clip_rows, todo) if not t]
    rejects = []
    pending = []
    for r in (r for r, t in zip(clip_rows, todo) if t):
        if r["parent_id"] in paths:
            pending.append({**r, "parent_path": paths[r["parent_id"]]})
        else:
            rejects.append({"clip_id": r["clip_id"], "path": r["source"], "corpus": r["corpus"], "stage": "prepare",
                            "reason": f"parent {r['parent_id']} was not kept: the fake cannot be matched to it"})
    batches = [pd.DataFrame(pending[i:i + BATCH]) for i in range(0, len(pending), BATCH)]
    for batch in progress(batches, "prepare: match fakes", total=len(batches), unit="batch"):
        clips, rej = match_batch(batch, sample_rate, match)
        keep += clips
        rejects += rej
    return keep, rejects


def channel_rejects(sources: pd.DataFrame, roles: dict[str, str] | None) -> tuple[pd.DataFrame, list[dict]]:
    """Spoof rows whose system is a channel (its role, pipeline.schema.system_role) are rejects: a channel keeps
    the label, so an MP3 or telephone round trip listed as a fake contradicts the labels of the other rows."""
    bad = (sources["label"] == "spoof") & sources["system"].map(lambda s: system_role(s, roles) == "channel")
    rejects = [{"clip_id": r["clip_id"], "path": r["source_path"], "corpus": r["corpus"], "stage": "prepare",
                "reason": f"system {r['system']} has role channel (it keeps the label): not a spoof"}
               for r in sources[bad].to_dict("records")]
    return sources[~bad].reset_index(drop=True), rejects


def run(p: PrepareParams, audio_dir: Path, engine: EngineConfig | None = None, match: Match | None = None,
        roles: dict[str, str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Adapters -> splits -> normalised audio -> fakes matched to parents; return (clips, rejects, metrics).

    The batches run on `engine` (params `runtime.engine`) when it is ray, else locally (`workers` processes).
    """
    sources, rejects = load_sources(p.corpora)
    if sources.empty and not rejects:
        raise CorpusError(f"the corpora of prepare.corpora list no files ({[c.get('root') for c in p.corpora]})")
    sources, channel_rows = channel_rejects(sources, roles)
    rejects += channel_rows
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
        if p.match_fakes:
            clip_rows, rej = match_corpus_fakes(clip_rows, p.match_fakes, p.sample_rate, match or Match())
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


def _parent_id(row: Any) -> str | None:
    """The parent clip id an adapter gave (a corpus fake's real source), or None."""
    parent = getattr(row, "parent_id", None)
    return parent if isinstance(parent, str) and parent else None


def _batch_worker(audio_dir: str, p: PrepareParams) -> Callable:
    from functools import partial

    return partial(process_batch, audio_dir=audio_dir, chain=p.chain(), min_duration_s=p.min_duration_s)


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
    args, params, common = start_stage(parser, argv)
    p = PrepareParams.from_params(section(params, "prepare"), sample_rate=common.sample_rate, seed=common.seed)
    audio_dir = Path(args.audio_dir)
    for out in (args.clips, args.rejects, args.metrics, audio_dir):
        check_writable(out)  # an unwritable output fails now, not after every clip is made
    made_parent = not audio_dir.parent.exists()
    try:
        # The audio is written into a temp folder that replaces audio_dir only when the stage succeeds, so a
        # failed or killed run leaves the previous clips and table together (the table follows the swap).
        with atomic_dir(audio_dir) as tmp:
            clips, rejects, metrics = run(p, tmp, engine=EngineConfig.from_runtime(common.runtime, device="cpu"),
                                          match=Match.from_params(params.get("match")), roles=roles_from_params(params))
            write_rejects(rejects, args.rejects)  # written even when the stage fails, so the reasons can be read
            if metrics["reject_fraction"] > p.max_reject_fraction or clips.empty:
                raise TooManyRejects(metrics["reject_fraction"])
            check_split_speakers(clips, stage="prepare")
            clips["path"] = [str(audio_dir / Path(x).relative_to(tmp)) for x in clips["path"]]
    except CorpusError as exc:  # a wrong root, an empty or malformed metadata file, a bad adapter option
        print(f"prepare: error: {exc}", file=sys.stderr)
        if made_parent and not any(audio_dir.parent.iterdir()):
            audio_dir.parent.rmdir()  # a config error writes nothing, not even the empty output folder
        return 2
    except TooManyRejects:
        print(f"prepare failed: {len(rejects)} of {metrics['source_rows']} source rows rejected "
              f"({metrics['reject_fraction']:.1%} > max_reject_fraction {p.max_reject_fraction:.1%}); "
              f"see {args.rejects}. Commonest reasons:\n{summarise_rejects(rejects)}", file=sys.stderr)
        return 1
    write_clips(clips, args.clips, stage="prepare")
    write_json_atomic(metrics, args.metrics)
    log.info("prepare wrote %d clips (%s), %d rejects", len(clips), metrics["by_split"], len(rejects))
    return 0


if __name__ == "__main__":
    sys.exit(main())
