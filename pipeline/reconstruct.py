"""Stage reconstruct@<paradigm>: copy-synthesis of bona fide clips into hard fakes.

Reads data/clips.parquet (label bonafide, split in reconstruct.splits), the clip audio and the
generator (--generator: fit_codec / fit_diffusion output, or the vocoder module for `vocoder`).
Writes --audio-dir/<system>/<parent>.flac (16-bit, audio.sample_rate), --out (clip table: label spoof,
paradigm, system, parent_id, the parent's split; written last) and --quality (per-system quality:
n, log-mel distance [dB] and SNR [dB] to the parent, rtf = compute s / audio s, and the rejects).

Which parent goes through which system is decided per parent from (seed, parent_id) alone:
`parent_fraction` of the parents (1.0 = all) each get `systems_per_parent` of the paradigm's
systems (null = all). Every fake passes the shortcut guards (parent's length, bandwidth, RMS).
Resumable (pipeline.resume): a system directory carries a fingerprint of what shapes its files
(that system's own settings, the generator, the code, the CPU kernel pin, rate, seed) and a record per FLAC of the
parent it was made from (sha256 and bandwidth); a FLAC is reused only when both match and it has
the parent's length. A changed parent redoes its fakes, a changed system setting that system.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipeline.audio import AudioError, check_audio, measure, read_audio, read_pcm16, to_pcm16, write_audio
from pipeline.io import write_json_atomic
from pipeline.logs import StageError, stage_timer
from pipeline.matching import match_record, match_to_parent
from pipeline.params import (
    PRECISIONS,
    ConfigError,
    Match,
    Section,
    as_list,
    number,
    one_of,
    roles_from_params,
    section,
    stage_parser,
    start_stage,
)
from pipeline.resume import ResumeDir, files_hash, tree_hash
from pipeline.resynth.plan import (
    PLAN_KEYS,
    check_parent_audio,
    parent_key,
    plan_jobs,
    spoof_systems,
    system_settings,
)
from pipeline.resynth.quality import quality_table, summarise
from pipeline.runtime.cpu_isa import kernel_paths
from pipeline.runtime.engine import LOCAL, EngineConfig, map_batch_results
from pipeline.schema import read_clips, split_ok, write_clips

log = logging.getLogger("pipeline.reconstruct")

MARKER = ".fingerprint.json"  # a system directory's ResumeDir marker


@dataclass(frozen=True)
class ReconstructParams(Section):
    """The reconstruct section of params.yaml, resolved for one paradigm (every paradigm's block is checked)."""

    NAME: ClassVar[str] = "reconstruct"
    paradigm: str
    splits: tuple[str, ...] = ("train", "dev", "test")
    batch_size: int = 8
    max_reject_fraction: float = 0.2
    precision: str = "fp32"     # fp32 | bf16 | fp16: autocast of the torch generators (GPU speed)
    settings: dict = field(default_factory=dict)  # the paradigm's own sub-section

    @classmethod
    def known_keys(cls, extra: dict[str, Any]) -> list[str]:
        from pipeline.resynth import PARADIGMS

        return ["splits", "batch_size", "max_reject_fraction", "precision", *PARADIGMS]

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        from pipeline.resynth import PARADIGMS, check_settings

        blocks = {name: check_settings(name, kw.pop(name, None), plan_keys=PLAN_KEYS) for name in PARADIGMS}
        if kw["paradigm"] not in blocks:
            raise ConfigError(f"unknown paradigm {kw['paradigm']!r}; known: {list(PARADIGMS)}")
        if "splits" in kw:
            kw["splits"] = tuple(as_list("reconstruct.splits", kw["splits"]))
        return {**kw, "settings": blocks[kw["paradigm"]]}

    def check(self) -> None:
        if not self.splits or not all(isinstance(s, str) and split_ok(s) for s in self.splits):
            raise ConfigError(f"params reconstruct.splits: expected train/dev/test/eval:<set>, got {list(self.splits)}")
        number("reconstruct.batch_size", self.batch_size, low=1, integer=True)
        number("reconstruct.max_reject_fraction", self.max_reject_fraction, low=0, high=1)
        one_of("reconstruct.precision", self.precision, PRECISIONS)

    @property
    def systems_per_parent(self) -> int | None:
        """How many of the systems each chosen parent goes through (None = all)."""
        value = self.settings.get("systems_per_parent")
        return None if value is None else int(value)

    @property
    def parent_fraction(self) -> float:
        """The share of parents reconstructed at all."""
        return float(self.settings.get("parent_fraction", 1.0))


@dataclass
class BatchResult:
    """What one batch produced: clip-table rows, rejects, per-clip quality, compute seconds."""

    rows: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    quality: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    audio_s: float = 0.0


# ----------------------------------------------------------------------------- files


def safe_name(clip_id: str) -> str:
    """A file name for a clip id (path separators and odd characters replaced)."""
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", clip_id)


def fake_path(audio_dir: Path, system: str, parent_id: str) -> Path:
    """Where a reconstruction's FLAC lives."""
    return audio_dir / safe_name(system) / f"{safe_name(parent_id)}.flac"


def code_hash() -> str:
    """sha256 of the code that shapes a reconstruction (backends, mel, audio, matching): a fix invalidates old files."""
    root = Path(__file__).parent
    return files_hash(sorted((root / "resynth").glob("*.py")) + [root / "audio.py", root / "matching.py"])


def prepare_system_dir(system_dir: Path, fingerprint: dict) -> ResumeDir:
    """Open a system's directory for resuming: its files are kept only when made with `fingerprint`."""
    return ResumeDir(system_dir, fingerprint, MARKER)


def prune(audio_dir: Path, keep: set[Path]) -> int:
    """Delete FLACs that the current plan does not name, in system directories this stage made.

    Only directories with a marker (written by prepare_system_dir) are touched, so
    pointing --audio-dir at a directory with other content never deletes that content.
    """
    removed = 0
    if not audio_dir.exists():
        return 0
    keep_dirs = {p.parent for p in keep}
    for sub in sorted(audio_dir.iterdir()):
        if not (sub.is_dir() and (sub / MARKER).exists()):
            continue
        for f in sub.glob("*.flac"):
            if f not in keep:
                f.unlink()
                removed += 1
        if sub not in keep_dirs and not any(sub.glob("*.flac")):
            shutil.rmtree(sub)
    return removed


# ----------------------------------------------------------------------------- per batch


def _fake_row(job: dict, paradigm: str, path: Path, pcm: np.ndarray, sample_rate: int, matched: str) -> dict:
    wave = pcm.astype(np.float32) / 32768.0  # what read_audio returns for this file
    return {
        "clip_id": f"{job['clip_id']}__{job['system']}", "path": str(path), "corpus": job["corpus"],
        "speaker": job["speaker"], "label": "spoof", "system": job["system"], "paradigm": paradigm,
        "parent_id": job["clip_id"], "split": job["split"], **measure(wave, sample_rate),
        "sha256": hashlib.sha256(pcm.tobytes()).hexdigest(), "source": job["source"], "matched": matched,
    }


def _quality(job: dict, parent: np.ndarray, fake: np.ndarray, sample_rate: int) -> dict:
    from pipeline.resynth.common import logmel_distance, noise_reference_distance, snr_db

    return {"system": job["system"], "logmel_distance": logmel_distance(parent, fake, sample_rate),
            "snr_db": snr_db(parent, fake),
            "noise_distance": noise_reference_distance(parent, sample_rate, seed=len(parent))}


def _reject(job: dict, reason: str) -> dict:
    return {"clip_id": f"{job['clip_id']}__{job['system']}", "parent_id": job["clip_id"], "path": job["path"],
            "corpus": job["corpus"], "system": job["system"], "reason": reason}


def reuse_batch(jobs: pd.DataFrame, paradigm: str, audio_dir: Path, sample_rate: int, match: Match) -> BatchResult:
    """Rows for jobs whose FLAC already exists (read back: sha256 and measures of the file itself)."""
    out = BatchResult()
    for job in jobs.to_dict("records"):
        path = fake_path(audio_dir, job["system"], job["clip_id"])
        try:
            pcm, _ = read_pcm16(path)
            parent, _ = read_audio(job["path"], sample_rate)
        except AudioError as exc:
            out.rejects.append(_reject(job, str(exc)))
            continue
        out.rows.append(_fake_row(job, paradigm, path, pcm, sample_rate, match_record(match.gate, True)))
        out.quality.append(_quality(job, parent, pcm.astype(np.float32) / 32768.0, sample_rate))
    return out


def reconstruct_batch(jobs: pd.DataFrame, resynth: Any, paradigm: str, audio_dir: Path,
                      sample_rate: int, match: Match | None = None) -> BatchResult:
    """Read the parents, resynthesise, match each fake to its parent (band, level, length, silences, non-speech
    gate: pipeline.matching.match_to_parent), write FLACs -> rows, rejects, quality."""
    match = match or Match()
    out = BatchResult()
    ready, waves = [], []
    for job in jobs.to_dict("records"):
        try:
            wave, _ = read_audio(job["path"], sample_rate)
            check_audio(wave, sample_rate)
        except AudioError as exc:
            out.rejects.append(_reject(job, f"parent: {exc}"))
            continue
        ready.append(job)
        waves.append(wave)
    if not ready:
        return out
    t0 = time.perf_counter()
    try:
        fakes: list[np.ndarray | Exception] = list(resynth(waves, [j["clip_id"] for j in ready]))
    except Exception as exc:  # noqa: BLE001 - isolate the clip that breaks the batch
        log.warning("%s: batch failed (%s); retrying clip by clip", resynth.system, exc)
        fakes = []
        for job, wave in zip(ready, waves):
            try:
                fakes.append(resynth([wave], [job["clip_id"]])[0])
            except Exception as one:  # noqa: BLE001
                fakes.append(one)
    out.seconds = time.perf_counter() - t0
    out.audio_s = sum(len(w) for w in waves) / sample_rate
    for job, parent, fake in zip(ready, waves, fakes):
        if isinstance(fake, Exception):
            out.rejects.append(_reject(job, f"{type(fake).__name__}: {fake}"))
            continue
        try:
            if not np.isfinite(fake).all():
                raise AudioError("reconstruction has NaN or infinite samples")
            guarded, matched = match_to_parent(
                fake, parent, sample_rate, parent_bandwidth_hz=float(job["bandwidth_hz"]), gate=match.gate,
                hang_s=match.hang_s, fade_s=match.fade_s)
            check_audio(guarded, sample_rate)
        except AudioError as exc:
            out.rejects.append(_reject(job, f"output: {exc}"))
            continue
        path = fake_path(audio_dir, job["system"], job["clip_id"])
        pcm = to_pcm16(guarded)
        write_audio(path, guarded, sample_rate)
        out.rows.append(_fake_row(job, paradigm, path, pcm, sample_rate, matched))
        out.quality.append(_quality(job, parent, pcm.astype(np.float32) / 32768.0, sample_rate))
    return out


def is_done(path: Path, n_samples: int, sample_rate: int) -> bool:
    """A reusable output: a readable FLAC at the stage rate with the parent's length."""
    if not path.exists():
        return False
    try:
        pcm, sr = read_pcm16(path)
    except AudioError:
        return False
    return sr == sample_rate and len(pcm) == n_samples


# ----------------------------------------------------------------------------- the stage


def batch_function(paradigm: str, system: str, cfg: dict, device: Any, audio_dir: Path,
                   sample_rate: int, precision: str = "fp32", match: Match | None = None,
                   ) -> Callable[[pd.DataFrame], BatchResult]:
    """Build one system's generator (once per engine worker) and return its batch -> BatchResult function."""
    from pipeline import resynth as backends

    resynth = backends.build(paradigm, system, cfg, device)
    resynth.precision = precision  # autocast of its network calls (Resynthesizer.autocast); DSP stays fp32
    return partial(reconstruct_batch, resynth=resynth, paradigm=paradigm, audio_dir=audio_dir, sample_rate=sample_rate,
                   match=match)


def run(clips: pd.DataFrame, p: ReconstructParams, generator: str | None, audio_dir: Path, sample_rate: int,
        seed: int, device: Any, engine: EngineConfig | None = None, match: Match | None = None,
        roles: dict[str, str] | None = None) -> tuple[pd.DataFrame, dict]:
    """Reconstruct every planned (parent, system) -> (clip table of fakes, quality summary).

    The batches run on `engine` (params `runtime.engine`; local by default), in the same order either way.
    Only spoof-role systems run (`roles`); every fake is matched to its parent under `match` (params `match`).
    """
    match = match or Match()
    from pipeline import resynth as backends

    parents = clips[(clips["label"] == "bonafide") & clips["split"].isin(list(p.splits))]
    parents = parents.sort_values("clip_id").reset_index(drop=True)
    cfg = {**p.settings, "sample_rate": sample_rate, "seed": seed, "generator": generator}
    systems = spoof_systems(backends.list_systems(p.paradigm, cfg), roles, p.paradigm)
    if not systems:
        raise ConfigError(f"params reconstruct.{p.paradigm}.systems: no system with role spoof (see params roles)")
    check_parent_audio(parents, p.paradigm, p.max_reject_fraction)  # before any generator is built
    jobs = plan_jobs(parents, systems, seed, p.systems_per_parent, p.parent_fraction)
    log.info("reconstruct %s: %d parents, %d jobs over %s", p.paradigm, len(parents), len(jobs), systems)
    fingerprint_base = {"paradigm": p.paradigm, "sample_rate": sample_rate, "seed": seed, "precision": p.precision,
                        "generator": tree_hash(generator), "code": code_hash(), "cpu": kernel_paths(),
                        "match": dataclasses.asdict(match)}
    known = systems + backends.list_systems(p.paradigm, {})
    results: dict[str, BatchResult] = {}
    dirs: dict[str, ResumeDir] = {}
    for system in systems:
        todo = jobs[jobs["system"] == system].sort_values(["duration_s", "clip_id"])
        rdir = dirs[system] = prepare_system_dir(audio_dir / safe_name(system), {
            **fingerprint_base, "system": system, "settings": system_settings(system, p.settings, known)})
        keys = {j["clip_id"]: parent_key(j) for j in todo.to_dict("records")}
        done = np.array([rdir.valid(fake_path(audio_dir, system, j["clip_id"]).name, keys[j["clip_id"]])
                         and is_done(fake_path(audio_dir, system, j["clip_id"]),
                                     int(round(j["duration_s"] * sample_rate)), sample_rate)
                         for j in todo.to_dict("records")], dtype=bool)
        res = reuse_batch(todo[done], p.paradigm, audio_dir, sample_rate, match) if done.any() else BatchResult()
        new = todo[~done]
        if len(new):
            names = {cid: fake_path(audio_dir, system, cid).name for cid in new["clip_id"]}
            rdir.forget(names.values())  # about to be rewritten: a kill mid-write must not leave a stale record
            make = partial(batch_function, p.paradigm, system, cfg, device, audio_dir, sample_rate, p.precision, match)
            for b in map_batch_results(None, new, batch_size=p.batch_size, cfg=engine or LOCAL, actor_factory=make,
                                       desc=f"{p.paradigm}/{system}"):
                rdir.record({names[r["parent_id"]]: keys[r["parent_id"]] for r in b.rows})
                res.rows += b.rows
                res.rejects += b.rejects
                res.quality += b.quality
                res.seconds += b.seconds
                res.audio_s += b.audio_s
        log.info("%s: %d reused, %d new, %d rejected", system, int(done.sum()), len(new), len(res.rejects))
        results[system] = res
    rows = [r for res in results.values() for r in res.rows]
    table = pd.DataFrame(rows)
    keep = {Path(r["path"]) for r in rows}
    removed = prune(audio_dir, keep)
    if removed:
        log.info("pruned %d stale files from %s", removed, audio_dir)
    for rdir in dirs.values():
        rdir.compact()
    summary = summarise(p.paradigm, results, len(jobs), len(parents))
    if len(jobs) and summary["n_rejected"] / len(jobs) > p.max_reject_fraction:
        raise StageError(f"reconstruct {p.paradigm}: {summary['n_rejected']} of {len(jobs)} jobs rejected "
                           f"(> {p.max_reject_fraction:.0%}); first: {summary['rejects'][0]}")
    return table, summary


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m pipeline reconstruct <paradigm> (paths as in dvc.yaml)."""
    parser = stage_parser("reconstruct", "copy-synthesis of bona fide clips through one paradigm's generators")
    parser.add_argument("paradigm", help="vocoder | codec | diffusion")
    parser.add_argument("--clips", required=True, help="clip table (data/clips.parquet)")
    parser.add_argument("--generator", default=None, help="generator path (fit_* output; the module for vocoder)")
    parser.add_argument("--out", required=True, help="clip table of the fakes (data/recon/<paradigm>.parquet)")
    parser.add_argument("--audio-dir", required=True, help="audio directory (data/recon/<paradigm>)")
    parser.add_argument("--quality", required=True, help="quality JSON (reports/reconstruction/<paradigm>.json)")
    args, params, common = start_stage(parser, argv)
    from pipeline.resynth import PARADIGMS

    if args.paradigm not in PARADIGMS:
        parser.error(f"unknown paradigm {args.paradigm!r}; known: {list(PARADIGMS)}")
    p = ReconstructParams.from_params(section(params, "reconstruct"), paradigm=args.paradigm)
    match, roles = Match.from_params(params.get("match")), roles_from_params(params)  # checked before any work
    from pipeline.runtime.devices import setup_torch

    seed = common.seed
    device = setup_torch(common)
    clips = read_clips(args.clips, stage=f"reconstruct {args.paradigm}")
    generator = args.generator  # for vocoder: the module itself, hashed into the fingerprint
    with stage_timer(log, f"reconstruct {args.paradigm}") as stats:
        table, summary = run(clips, p, generator, Path(args.audio_dir), common.sample_rate, seed, device,
                             engine=EngineConfig.from_runtime(common.runtime, device),
                             match=match, roles=roles)
        stats.add("clips", len(table))
        stats.add("rejected", summary["n_rejected"])
    log.info("quality of %s reconstructions:\n%s", args.paradigm, quality_table(summary))
    write_json_atomic(summary, args.quality)
    if table.empty:
        from pipeline.schema import empty_clips

        table = empty_clips()
    write_clips(table, args.out, stage=f"reconstruct {args.paradigm}")
    return 0
