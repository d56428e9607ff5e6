"""Which fakes reconstruct makes, and what shapes each one (pure functions, no I/O).

`spoof_systems`: the systems that make fakes at all (a channel keeps the label and makes none).
`check_parent_audio`: whether the parents' audio is there at all (the only file look-up here: os.stat).
`plan_jobs`: which parent goes through which system, decided per parent from (seed, parent_id) alone, so
a grown corpus keeps every earlier decision. `system_settings` and `parent_key`: what a system's files and
one fake depend on besides the code, the parts of reconstruct's resume fingerprint (pipeline.resume).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from pipeline.logs import StageError, log_some
from pipeline.resynth.common import unit_draw
from pipeline.schema import system_role

log = logging.getLogger("pipeline.reconstruct")

PLAN_KEYS = ("systems_per_parent", "parent_fraction")  # change who is reconstructed, not how
LIST_KEYS = ("systems", "strengths")  # which systems run, not what one system makes


def spoof_systems(systems: list[str], roles: dict[str, str] | None, paradigm: str) -> list[str]:
    """The systems whose role is spoof: a channel (mp3, opus, codec2, telephone codecs by default, or a system that
    params `roles` flips to channel) keeps the label, so it never makes a spoof row; each one left out is logged."""
    keep = [s for s in systems if system_role(s, roles) == "spoof"]
    for s in sorted(set(systems) - set(keep)):
        log.warning("reconstruct %s: %s has role channel (it keeps the label), so it makes no spoof rows; channels "
                    "belong in train.augment.codec_systems and evaluate.conditions", paradigm, s)
    return keep


def plan_jobs(parents: pd.DataFrame, systems: list[str], seed: int, systems_per_parent: int | None = None,
              parent_fraction: float = 1.0) -> pd.DataFrame:
    """(parent row, system) jobs, decided per parent from (seed, parent_id): stable when the corpus grows."""
    if not systems:
        raise ValueError("reconstruct: no systems configured")
    if not 0.0 < parent_fraction <= 1.0:
        raise ValueError(f"reconstruct: parent_fraction must be in (0, 1], got {parent_fraction}")
    k = len(systems) if systems_per_parent is None else int(systems_per_parent)
    if not 1 <= k <= len(systems):
        raise ValueError(f"reconstruct: systems_per_parent must be in 1..{len(systems)}, got {systems_per_parent}")
    jobs = []
    for row in parents.to_dict("records"):
        pid = row["clip_id"]
        if unit_draw(seed, f"keep:{pid}") >= parent_fraction:
            continue
        ranked = sorted(systems, key=lambda s: unit_draw(seed, f"{pid}:{s}"))
        jobs += [{**row, "system": s} for s in ranked[:k]]
    cols = list(parents.columns) + ([] if "system" in parents.columns else ["system"])
    return pd.DataFrame(jobs, columns=cols) if jobs else pd.DataFrame(columns=cols)


def system_settings(system: str, settings: dict, systems: list[str]) -> dict:
    """The settings that shape `system`'s files: the paradigm's shared keys plus its own.

    A key whose first word names a system (`griffinlim_iters`, `hifigan_jit`, `world_frame_period_ms`)
    belongs to that system alone, so changing it redoes only that system; the plan keys and the
    system lists (`systems`, `strengths`) decide which files exist, not what is in them.
    """
    prefixes = {s.split("_")[0] for s in systems}
    own = system.split("_")[0]
    return {k: v for k, v in sorted(settings.items())
            if k not in PLAN_KEYS + LIST_KEYS and (k.split("_")[0] not in prefixes or k.split("_")[0] == own)}


def parent_key(job: dict) -> str:
    """What a fake is made from, besides the settings: its parent's audio (sha256) and measured bandwidth."""
    return f"{job['sha256']}:{float(job['bandwidth_hz'])!r}"


def check_parent_audio(parents: pd.DataFrame, paradigm: str, max_reject_fraction: float) -> None:
    """Before any generator runs: StageError when more than `max_reject_fraction` of the parents' audio files are
    missing (a data/clips that does not belong to data/clips.parquet), naming the count, the first file and the
    fix; fewer are logged (a few lines and a count) and become rejects of their jobs."""
    gone = [(cid, path) for cid, path in zip(parents["clip_id"], parents["path"]) if not Path(path).is_file()]
    if len(parents) and len(gone) / len(parents) > max_reject_fraction:
        raise StageError(f"reconstruct {paradigm}: the audio of {len(gone)} of {len(parents)} parent clips is missing "
                         f"(first: {gone[0][1]}): data/clips does not match the clip table; run prepare again "
                         "(`dvc repro prepare`, or `dvc checkout data/clips`)")
    log_some(log, [(cid, "missing file") for cid, _ in gone], f"reconstruct {paradigm}: parent")
