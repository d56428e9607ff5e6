"""Stage `evaluate`: EER of the trained detector on every evaluation set, the ASVspoof way.

Reads the detector (data/models/detector/model.pt) and the clip tables (data/clips.parquet +
data/recon/*.parquet) with the audio they point to. Writes, under --out (reports/):
- metrics.json: {"eer": {set: eer, ..., "pooled": eer}, "eer_by_system": {system: eer},
  "n_clips": {set: n}, "paradigm_seen": {paradigm: bool}, "eer_ci": {set: {lo, hi}}, "ci": {level,
  bootstrap, seed}, "n_rejected": n}; EERs are fractions;
- eer.csv: set,condition,system,paradigm,n_bonafide,n_spoof,eer,threshold,eer_lo,eer_hi: one row per (set,
  condition) (system and paradigm "all") and one per (set, condition, spoof system): every EER the report shows,
  which reads it and recomputes none;
- scores/<set>.txt: `clip_id score` per line (higher = bona fide), one file per set; scores/<set>.<condition>.txt
  under each evaluation condition;
- plots/det.csv (set,far,frr: the DET points the report draws, and `dvc plots` shows), plots/det.png
  (drawn by pipeline.reporting.detplot, the report's plotter too), plots/score_hist.png.

Eval sets (`evaluate.sets`, each clip scored once, EER by pipeline.metrics.compute_eer), named for what
they are ("trained" = the systems/paradigms of the detector's training manifest, from its config.json):
- `seen_attacks`: bona fide test clips + the test-split spoofs of systems the detector trained on;
- `unseen_attacks`: bona fide test + the spoofs of every attack-only `eval:<name>` split (no bona fide of
  its own, e.g. the demo's `eval:tts`: piper and espeak-ng) whose system was not trained on;
- `paradigm`: per spoof paradigm P of the test split, bona fide test vs the test spoofs of P, named
  `paradigm_<P>` when P was in training and `leave_out_<P>` ONLY when it was not (a true
  leave-one-paradigm-out run, `train.exclude_paradigms=[P]`); `paradigm_seen[P]` says which
  (`leave_out` in `evaluate.sets` is the same kind);
- `corpus`: every `eval:<name>` split with bona fide rows of its own becomes a set `<name>`;
- `test` (legacy: all test-split spoofs) or any eval split name (e.g. `tts`, `itw`) picks that set alone;
- `dev` (not in the default sets): every dev-split clip, the held-out speakers of the training distribution,
  for choices made on dev (scripts/sweep.sh EVAL_SETS); it is left out of `pooled` and of eer_by_system.
`pooled` is the EER over the union of all the other sets' clips. A set with no bona fide or no spoof
clips is skipped with a warning. Per-system EERs are taken against the bona fide clips of the set the
system appears in (paradigm sets repeat the test systems and are not counted twice).

Confidence intervals: every row's EER (a set's and each of its systems') gets a 95% percentile-bootstrap interval
over its clips (pipeline.metrics.bootstrap_eer_ci, `evaluate.bootstrap` resamples, seed `evaluate.seed`, null = the
global seed): eer.csv columns eer_lo, eer_hi, metrics.json `eer_ci.<set>.{lo,hi}`. A system with fewer than
`evaluate.min_system_clips` spoof clips keeps its row; metrics.json records the minimum, and the report greys such
rows and leaves them out of its rankings.

ASVspoof 5's metrics (pipeline.metrics: Pspoof 0.05, Cmiss 1, Cfa 10): eer.csv columns min_dcf, act_dcf (at the
Bayes threshold, the raw logit margin taken as an LLR: meaningful for calibrated scores only) and cllr (bits) on
every row; metrics.json `min_dcf.<set>`, `act_dcf.<set>`, `cllr.<set>` and the cost model under `dcf`.

Conditions (`evaluate.conditions`, channel systems of pipeline.resynth.channel: MP3, Opus, Codec2, G.711, GSM,
G.726): every eval clip, bona fide and spoof alike, is scored again after the channel's round trip (deterministic
per clip), as ASVspoof 2021 LA/DF and ASVspoof 5 code both classes. eer.csv rows carry their `condition` (`clean`
for the clips as they are); metrics.json adds `eer_condition.<condition>.<set>`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipeline.detector.augment import require_channels
from pipeline.io import atomic_path, csv_safe, write_json_atomic, write_text_atomic
from pipeline.logs import StageError, log_some, stage_timer
from pipeline.metrics import DCF_COSTS, act_dcf, bootstrap_eer_ci, cllr, compute_eer, min_dcf
from pipeline.params import (
    PRECISIONS,
    ConfigError,
    Section,
    as_list,
    number,
    one_of,
    roles_from_params,
    section,
    seed_value,
    stage_parser,
    stage_seed,
    start_stage,
)
from pipeline.reporting.detplot import write_plots
from pipeline.resynth.channel import SYSTEMS as CHANNEL_SYSTEMS
from pipeline.resynth.channel import is_channel_name
from pipeline.schema import check_name, read_clip_tables

log = logging.getLogger("pipeline.evaluate")

CLEAN = "clean"  # the condition of the clips as they are
SET_KINDS = ("seen_attacks", "unseen_attacks", "paradigm", "leave_out", "corpus", "test", "dev")
DEV = "dev"
LEAVE_OUT_PREFIX = "leave_out_"
PARADIGM_PREFIX = "paradigm_"


@dataclass(frozen=True)
class EvaluateParams(Section):
    """The `evaluate` section of params.yaml."""

    NAME: ClassVar[str] = "evaluate"

    batch_size: int = 64
    eval_s: float = 4.0
    sets: tuple[str, ...] = ("seen_attacks", "unseen_attacks", "paradigm", "corpus")
    max_reject_fraction: float = 0.05
    bootstrap: int = 1000       # resamples of the per-set EER CI (0 = no CI)
    seed: int | None = None     # bootstrap seed; null = the global seed
    precision: str = "fp32"     # fp32 | bf16 | fp16: autocast of the detector (GPU speed; fp32 bit-stable)
    conditions: tuple[str, ...] = ()  # channels applied to every eval clip, both classes (pipeline.resynth.channel)
    min_system_clips: int = 20  # per-system rows with fewer spoof clips: greyed and unranked in the report

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        if "sets" in kw:
            kw["sets"] = tuple(as_list("evaluate.sets", kw["sets"]))
        if "conditions" in kw:
            kw["conditions"] = tuple(as_list("evaluate.conditions", kw["conditions"]))
        return kw

    def check(self) -> None:
        number("evaluate.batch_size", self.batch_size, low=1, integer=True)
        number("evaluate.eval_s", self.eval_s, low=0, low_open=True)
        number("evaluate.max_reject_fraction", self.max_reject_fraction, low=0, high=1)
        number("evaluate.bootstrap", self.bootstrap, low=0, integer=True)
        number("evaluate.min_system_clips", self.min_system_clips, low=1, integer=True)
        seed_value("evaluate.seed", self.seed, allow_none=True)
        one_of("evaluate.precision", self.precision, PRECISIONS)
        for name in self.conditions:
            if not is_channel_name(name) or name == CLEAN:
                raise ConfigError(f"params evaluate.conditions: {name!r} is not a channel system a clip can go through "
                                  f"offline (e.g. {list(CHANNEL_SYSTEMS)})")
        for name in self.sets:
            if not isinstance(name, str) or not name:
                raise ConfigError(f"params evaluate.sets: expected set names ({list(SET_KINDS)} or an eval split "
                                  f"name), got {name!r}")


def _eval_split_names(clips: pd.DataFrame) -> list[str]:
    splits = clips["split"].astype(str)
    return sorted({s[len("eval:"):] for s in splits if s.startswith("eval:")})


def build_eval_sets(clips: pd.DataFrame, sets: tuple[str, ...],
                    trained: dict[str, Any] | None = None) -> dict[str, pd.DataFrame]:
    """The evaluation sets {name: clip rows} that `sets` asks for (sets lacking a class are skipped).

    `trained`: the detector's config (`train_systems`, `train_paradigms`); without it every test-split
    system and paradigm counts as seen.
    """
    trained = trained or {}
    systems = set(trained["train_systems"]) if trained.get("train_systems") is not None else None
    paradigms = set(trained["train_paradigms"]) if trained.get("train_paradigms") is not None else None
    bona = clips["label"] == "bonafide"
    spoof = ~bona
    split = clips["split"].astype(str)
    bona_test = clips[bona & (split == "test")]
    test_spoof = clips[spoof & (split == "test")]
    eval_names = _eval_split_names(clips)
    own_bona = {name for name in eval_names if (bona & (split == f"eval:{name}")).any()}
    out: dict[str, pd.DataFrame] = {}

    def corpus_set(name: str) -> pd.DataFrame:
        own = clips[bona & (split == f"eval:{name}")]
        return pd.concat([own if len(own) else bona_test, clips[spoof & (split == f"eval:{name}")]])

    for kind in sets:
        if kind == "seen_attacks":
            known = pd.Series(True, index=test_spoof.index)
            if systems is not None:
                known &= test_spoof["system"].isin(systems)
            if paradigms is not None:
                known &= test_spoof["paradigm"].isin(paradigms)
            out[kind] = pd.concat([bona_test, test_spoof[known]])
        elif kind == "unseen_attacks":
            attack_only = split.isin([f"eval:{n}" for n in eval_names if n not in own_bona])
            eval_spoof = clips[spoof & attack_only]
            unseen = eval_spoof if systems is None else eval_spoof[~eval_spoof["system"].isin(systems)]
            out[kind] = pd.concat([bona_test, unseen])
        elif kind == "test":
            out["test"] = pd.concat([bona_test, test_spoof])
        elif kind == DEV:
            out[DEV] = clips[split == DEV]
        elif kind in ("paradigm", "leave_out"):
            for paradigm in sorted(test_spoof["paradigm"].unique()):
                unseen = paradigms is not None and paradigm not in paradigms
                name = f"{LEAVE_OUT_PREFIX if unseen else PARADIGM_PREFIX}{paradigm}"
                out[name] = pd.concat([bona_test, test_spoof[test_spoof["paradigm"] == paradigm]])
        elif kind == "corpus":
            for name in sorted(own_bona):
                if name not in SET_KINDS:
                    out[name] = corpus_set(name)
        elif kind in eval_names:
            out[kind] = corpus_set(kind)
        else:
            log.warning("eval set %r: no split eval:%s in the clip tables (known kinds %s); skipped",
                        kind, kind, list(SET_KINDS))
    kept = {}
    for name, rows in out.items():
        counts = rows["label"].value_counts()
        if counts.get("bonafide", 0) == 0 or counts.get("spoof", 0) == 0:
            log.warning("eval set %r skipped: %d bona fide and %d spoof clips (needs both)", name,
                        counts.get("bonafide", 0), counts.get("spoof", 0))
            continue
        kept[name] = rows.drop_duplicates("clip_id").reset_index(drop=True)
    return kept


EER_COLUMNS = ["set", "condition", "system", "paradigm", "n_bonafide", "n_spoof", "eer", "threshold", "eer_lo",
               "eer_hi", "min_dcf", "act_dcf", "cllr"]
SCORE_METRICS = ("min_dcf", "act_dcf", "cllr")   # metrics.json groups, one value per set
SET_PREFIXES = (LEAVE_OUT_PREFIX, PARADIGM_PREFIX)


def _eer_row(set_name: str, system: str, paradigm: str, bona: np.ndarray, spoof: np.ndarray,
             n_boot: int = 0, seed: int = 0) -> dict[str, Any]:
    """One eer.csv row: EER, its threshold, with n_boot > 0 the 95% bootstrap CI over the clips (eer_lo, eer_hi;
    else NaN), minDCF, actDCF and Cllr."""
    eer, thr = compute_eer(bona, spoof)
    lo, hi = bootstrap_eer_ci(bona, spoof, n_boot=n_boot, seed=seed) if n_boot > 0 else (np.nan, np.nan)
    return {"set": set_name, "condition": CLEAN, "system": system, "paradigm": paradigm, "n_bonafide": int(bona.size),
            "n_spoof": int(spoof.size), "eer": float(eer), "threshold": float(thr), "eer_lo": lo, "eer_hi": hi,
            "min_dcf": min_dcf(bona, spoof)[0], "act_dcf": act_dcf(bona, spoof)[0], "cllr": cllr(bona, spoof)}


def run(sets: dict[str, pd.DataFrame], scores: pd.Series, seen_paradigms: list[str] | None = None,
        n_boot: int = 0, seed: int = 0) -> tuple[dict[str, Any], pd.DataFrame, dict[str, pd.DataFrame]]:
    """EERs of scored sets: (metrics dict, eer table, {set: DataFrame clip_id, score, label, system}).

    `scores` maps clip_id -> score; clips without a score (rejected) are dropped from their sets. With
    n_boot > 0, every row's EER (sets, pooled and systems) gets a bootstrap CI over its clips (metrics `eer_ci`).
    """
    rows, scored, eer, by_system, n_clips, ci = [], {}, {}, {}, {}, {}
    for name, clips in sets.items():
        df = clips[["clip_id", "label", "system", "paradigm"]].assign(score=clips["clip_id"].map(scores))
        df = df[df["score"].notna()].reset_index(drop=True)
        is_bona = (df["label"] == "bonafide").to_numpy()
        if is_bona.all() or not is_bona.any():
            log.warning("eval set %r skipped after rejects: one class has no scored clip", name)
            continue
        bona_scores = df.loc[is_bona, "score"].to_numpy(float)
        row = _eer_row(name, "all", "all", bona_scores, df.loc[~is_bona, "score"].to_numpy(float), n_boot, seed)
        rows.append(row)
        ci[name] = row
        eer[name], n_clips[name], scored[name] = row["eer"], len(df), df
        for system, group in df[~is_bona].groupby("system", sort=True):
            paradigm = ",".join(sorted(group["paradigm"].astype(str).unique()))
            srow = _eer_row(name, str(system), paradigm, bona_scores, group["score"].to_numpy(float), n_boot, seed)
            rows.append(srow)
            if not name.startswith(SET_PREFIXES) and name != DEV:
                key = str(system) if system not in by_system else f"{name}:{system}"
                by_system[key] = srow["eer"]
    if not scored:
        raise StageError("no evaluation set has both bona fide and spoof scored clips: nothing to evaluate")
    pooled = pd.concat([v for k, v in scored.items() if k != DEV] or list(scored.values())).drop_duplicates("clip_id")
    is_bona = (pooled["label"] == "bonafide").to_numpy()
    prow = _eer_row("pooled", "all", "all", pooled.loc[is_bona, "score"].to_numpy(float),
                    pooled.loc[~is_bona, "score"].to_numpy(float), n_boot, seed)
    rows.append(prow)
    ci["pooled"] = prow
    eer["pooled"], n_clips["pooled"] = prow["eer"], len(pooled)
    metrics: dict[str, Any] = {"eer": eer, "eer_by_system": by_system, "n_clips": n_clips}
    for key in SCORE_METRICS:
        metrics[key] = {k: float(r[key]) for k, r in ci.items()}
    metrics["dcf"] = {"p_spoof": DCF_COSTS.p_spoof, "c_miss": DCF_COSTS.c_miss, "c_fa": DCF_COSTS.c_fa,
                      "act_threshold": DCF_COSTS.bayes_threshold}
    if n_boot > 0:
        metrics["eer_ci"] = {k: {"lo": r["eer_lo"], "hi": r["eer_hi"]} for k, r in ci.items()}
        metrics["ci"] = {"level": 0.95, "bootstrap": int(n_boot), "seed": int(seed)}
    by_paradigm = [n.removeprefix(pre) for n in scored for pre in SET_PREFIXES if n.startswith(pre)]
    if by_paradigm:
        metrics["paradigm_seen"] = {p: (None if seen_paradigms is None else p in seen_paradigms)
                                    for p in by_paradigm}
    table = pd.DataFrame(rows, columns=EER_COLUMNS)
    return metrics, table, scored


def run_conditions(sets: dict[str, pd.DataFrame], scores: dict[str, pd.Series],
                   seen_paradigms: list[str] | None = None, n_boot: int = 0, seed: int = 0,
                   ) -> tuple[dict[str, Any], pd.DataFrame, dict[str, dict[str, pd.DataFrame]]]:
    """`run` under every condition: scores {condition: clip_id -> score}, `clean` first and required.

    metrics: the clean run's (its `eer.<set>` keys unchanged) plus `eer_condition.<condition>.<set>`; the table
    stacks every condition's rows (column `condition`); scored: {condition: {set: scored clips}}.
    """
    metrics, table, scored = run(sets, scores[CLEAN], seen_paradigms, n_boot, seed)
    tables, all_scored = [table], {CLEAN: scored}
    by_condition = {}
    for condition, cond_scores in scores.items():
        if condition == CLEAN:
            continue
        m, t, sc = run(sets, cond_scores, seen_paradigms, n_boot, seed)
        tables.append(t.assign(condition=condition))
        by_condition[condition] = m["eer"]
        all_scored[condition] = sc
    if by_condition:
        metrics["eer_condition"] = by_condition
    return metrics, pd.concat(tables, ignore_index=True)[EER_COLUMNS], all_scored


def write_scores(scored: dict[str, pd.DataFrame], out_dir: Path, condition: str = CLEAN) -> None:
    """reports/scores/<set>.txt (clean) or <set>.<condition>.txt: `clip_id score` lines (a set name is a file
    name: checked, never a path)."""
    for name, df in scored.items():
        check_name("eval set", name)
        lines = [f"{cid} {score:.6f}" for cid, score in zip(df["clip_id"], df["score"])]
        suffix = "" if condition == CLEAN else f".{check_name('condition', condition)}"
        write_text_atomic("\n".join(lines) + "\n", out_dir / f"{name}{suffix}.txt")


def write_outputs(metrics: dict[str, Any], table: pd.DataFrame, scored: dict[str, pd.DataFrame], out: Path,
                  conditions: dict[str, dict[str, pd.DataFrame]] | None = None) -> None:
    """Every file of the stage under `out`: scores/, eer.csv, plots/ (clean) and, last, metrics.json."""
    write_scores(scored, out / "scores")
    for condition, cond_scored in (conditions or {}).items():
        if condition != CLEAN:
            write_scores(cond_scored, out / "scores", condition)
    with atomic_path(out / "eer.csv") as tmp:
        csv_safe(table).to_csv(tmp, index=False, float_format="%.6f")
    write_plots(scored, metrics["eer"], out / "plots")
    write_json_atomic(metrics, out / "metrics.json")


def condition_transform(condition: str, sample_rate: int):
    """(wave, clip_id) -> the wave through channel `condition` (deterministic per clip; None for clean)."""
    if condition == CLEAN:
        return None
    from pipeline.resynth import channel

    resynth = channel.build(condition, sample_rate)
    return lambda wave, clip_id: resynth([wave], [clip_id])[0]


def score_sets(model, sets: dict[str, pd.DataFrame], p: EvaluateParams, sample_rate: int,
               device, condition: str = CLEAN) -> tuple[pd.Series, list[dict[str, Any]]]:
    """Score every clip of the sets once under `condition`: (clip_id -> score, rejects); too many rejects: an error."""
    from pipeline.detector.inference import score_clips

    unique = pd.concat(sets.values()).drop_duplicates("clip_id").reset_index(drop=True)
    result = score_clips(model, unique, p.batch_size, sample_rate, p.eval_s, device=device,
                         stage="evaluate" if condition == CLEAN else f"evaluate {condition}", precision=p.precision,
                         transform=condition_transform(condition, sample_rate))
    n_bad = len(result.rejects)
    log_some(log, [(r["clip_id"], r["reason"]) for r in result.rejects], "clip not scored")
    if unique.shape[0] and n_bad / unique.shape[0] > p.max_reject_fraction:
        raise StageError(f"{n_bad} of {len(unique)} eval clips could not be read "
                         f"(more than evaluate.max_reject_fraction={p.max_reject_fraction})")
    bad = ~np.isfinite(result.scores)
    if bad.any():  # the model, not the sets: they would be dropped as unscored and the EER blamed on the sets
        raise StageError(f"the detector gave {int(bad.sum())} of {bad.size} eval clips a NaN or infinite score (first: "
                         f"{result.clip_ids[int(np.argmax(bad))]}, evaluate.precision {p.precision}): its output is "
                         "not a number")
    return pd.Series(result.scores, index=result.clip_ids, dtype=float), result.rejects


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("evaluate", "EER per eval set, score files, DET plots")
    parser.add_argument("--model", required=True, help="detector directory (model.pt)")
    parser.add_argument("--clips", nargs="+", required=True, help="clip tables (clips.parquet, data/recon/*.parquet)")
    parser.add_argument("--out", required=True, help="reports directory")
    args, params, common = start_stage(parser, argv)
    p = EvaluateParams.from_params(section(params, "evaluate"))
    require_channels("evaluate.conditions", p.conditions, roles_from_params(params))
    sample_rate = common.sample_rate

    from pipeline.models import load_checkpoint
    from pipeline.runtime.devices import setup_torch

    device = setup_torch(common)
    model, config = load_checkpoint(args.model, device=device)
    if int(config.get("sample_rate", sample_rate)) != sample_rate:
        raise StageError(f"detector was trained at {config['sample_rate']} Hz but audio.sample_rate is {sample_rate}")
    present = [path for path in args.clips if Path(path).exists()]
    if len(present) < len(args.clips):  # a missing table is an error only when none is there
        log.warning("clip tables not found, evaluating without them: %s", sorted(set(args.clips) - set(present)))
    clips = read_clip_tables(present or args.clips, stage="evaluate")
    out = Path(args.out)
    with stage_timer(log, "evaluate") as stats:
        sets = build_eval_sets(clips, p.sets, config)
        if not sets:
            raise StageError(f"no evaluation set could be built from {args.clips} with sets {list(p.sets)}")
        scores, rejects = {}, []
        for condition in (CLEAN, *p.conditions):
            scores[condition], rej = score_sets(model, sets, p, sample_rate, device, condition)
            rejects += rej
        metrics, table, scored = run_conditions(sets, scores, config.get("train_paradigms"), p.bootstrap,
                                                stage_seed("evaluate.seed", p.seed, common))
        metrics["n_rejected"] = len(rejects)
        metrics["min_system_clips"] = p.min_system_clips
        stats.add("clips", int(sum(len(s) for s in scores.values())))
        stats.add("sets", len(scored[CLEAN]))
    write_outputs(metrics, table, scored[CLEAN], out, scored)
    for name, value in metrics["eer"].items():
        log.info("EER %-24s %6.2f%%  (%d clips)", name, 100 * value, metrics["n_clips"][name])
    return 0
