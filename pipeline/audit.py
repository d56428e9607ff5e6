"""Stage `audit`: the shortcut audit as a number and a gate, and how hard each generator is for a reference detector.

Reads the clip tables (data/clips.parquet + data/recon/*.parquet); for the hardness view also the audio and a
reference model (`audit.reference`: any model dir, e.g. an imported AASIST) or, without one, every teacher under
--teachers. Writes, under --out (reports/):
- audit.json (a DVC metrics file): per audited set its nuisance-only EER (`eer`: the lower of the two classifiers
  on all features), `eer_no_duration` (the same without duration, which fixed-length crops hide from a detector),
  the feature that separates the classes best on its own and that feature's EER; `warnings` (sets below
  `audit.min_eer`); `hardness`: per spoof system, the reference (or each teacher's) EER on the test clips;
  `by_system`: the same audit per spoof system (the test bona fide against that system's test and attack-only
  eval clips: a generator that is easy for the wrong reason) and `system_warnings`.
- audit.csv: one row per (set or `system:<system>`, classifier or single feature); hardness.csv: one row per
  (model, system).

The audit (DESIGN.md, "Labels and shortcut guards"): a detector could separate the classes by trivial clip
properties instead of generator artefacts. Two small models, a standardised logistic regression and a shallow
gradient-boosted tree (scikit-learn), see only the nuisance features FEATURES (measured per clip by prepare and
reconstruct, pipeline.audio.measure) and are scored out of fold, speaker-disjoint (groups = corpus + speaker: a
fake shares its parent's speaker, so a real clip and its fakes fall in the same fold); the EER of the out-of-fold
bona fide probabilities is pipeline.metrics.compute_eer's. Near 50% is healthy; below `audit.min_eer` the stage
logs a loud warning naming the set and the feature. Sets: per split (train, test) and spoof paradigm (bona fide
of the split against that paradigm's fakes), and per attack-only eval split (against the test bona fide), so
the training data's shortcuts show as well as the evaluation's.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipeline.io import atomic_path, csv_safe, write_json_atomic
from pipeline.logs import progress, setup_logging, stage_timer
from pipeline.metrics import compute_eer
from pipeline.params import ConfigError, Section, common_params, load_params, number, section, stage_parser

log = logging.getLogger("pipeline.audit")

FEATURES = ("duration_s", "leading_silence_s", "trailing_silence_s", "bandwidth_hz", "rms_dbfs", "noise_floor_dbfs",
            "spectral_tilt_db")
MODELS = ("logreg", "gbt")
SYSTEM_PREFIX = "system:"   # audit.csv rows of the per-system audit


@dataclass(frozen=True)
class AuditParams(Section):
    """The `audit` section of params.yaml."""

    NAME: ClassVar[str] = "audit"
    SHARED: ClassVar[tuple[str, ...]] = ("seed",)
    folds: int = 5
    max_clips: int = 20000      # clips per audited set (a seeded subset above this)
    min_eer: float = 0.35       # a set whose nuisance-only EER is below this is a loud warning
    min_per_class: int = 4      # sets with fewer clips of a class are skipped
    reference: str | None = None  # a model dir whose per-system test EER shows generator hardness (else: teachers)
    batch_size: int = 32
    eval_s: float = 4.0
    seed: int = 0

    def check(self) -> None:
        number("audit.folds", self.folds, low=2, integer=True)
        number("audit.max_clips", self.max_clips, low=1, integer=True)
        number("audit.min_eer", self.min_eer, low=0, high=1)
        number("audit.min_per_class", self.min_per_class, low=1, integer=True)
        number("audit.batch_size", self.batch_size, low=1, integer=True)
        number("audit.eval_s", self.eval_s, low=0, low_open=True)
        if self.reference is not None and not isinstance(self.reference, str):
            raise ConfigError(f"params audit.reference: expected a model directory or null, got {self.reference!r}")


# ----------------------------------------------------------------------------- sets


def audit_sets(clips: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{name: rows}: `<split>/<paradigm>` for train and test, and `eval:<name>` for each attack-only eval split."""
    bona = clips["label"] == "bonafide"
    split = clips["split"].astype(str)
    out = {}
    for name in ("train", "test"):
        spoof = clips[~bona & (split == name)]
        for paradigm in sorted(spoof["paradigm"].unique()):
            out[f"{name}/{paradigm}"] = pd.concat([clips[bona & (split == name)], spoof[spoof["paradigm"] == paradigm]])
    for name in sorted({s for s in split if s.startswith("eval:")}):
        rows = clips[split == name]
        if (rows["label"] == "bonafide").any():
            continue  # a corpus eval set with its own bona fide: audited as it is given, not ours to match
        out[name] = pd.concat([clips[bona & (split == "test")], rows])
    return {k: v.reset_index(drop=True) for k, v in out.items()}


# ----------------------------------------------------------------------------- classifiers


def _model(name: str, seed: int):
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    if name == "gbt":
        return GradientBoostingClassifier(n_estimators=60, max_depth=2, learning_rate=0.1, random_state=seed)
    raise KeyError(f"unknown audit model {name!r}; known: {MODELS}")


def folds(y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> tuple[list, str]:
    """Speaker-disjoint stratified folds; plain stratified folds when there are too few speakers."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    n_groups = len(np.unique(groups))
    min_class = int(np.bincount(y, minlength=2).min())
    k = min(n_folds, n_groups, min_class)
    if k >= 2:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        out = list(splitter.split(np.zeros(len(y)), y, groups))
        if all(len(np.unique(y[tr])) == 2 for tr, _ in out):
            return out, f"{k}-fold, speaker-disjoint"
    k = min(n_folds, min_class)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y)), f"{k}-fold, stratified (too few speakers to split by speaker)"


def oof_eer(x: np.ndarray, y: np.ndarray, split: list, model: str, seed: int) -> float:
    """EER of a classifier's out-of-fold bona fide probabilities (y: 1 = bona fide)."""
    oof = np.zeros(len(y))
    for train, test in split:
        est = _model(model, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on constant features
            est.fit(x[train], y[train])
        oof[test] = est.predict_proba(x[test])[:, 1]
    return float(compute_eer(oof[y == 1], oof[y == 0])[0])


def feature_eer(values: np.ndarray, y: np.ndarray) -> float:
    """EER of one feature used as a score in the direction that separates best (0.5 = no information)."""
    eer = float(compute_eer(values[y == 1], values[y == 0])[0])
    return min(eer, 1.0 - eer) if np.isfinite(eer) else 0.5


def audit_one(rows: pd.DataFrame, p: AuditParams) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The audit of one set -> (summary, table rows); a set with too few clips of a class is skipped."""
    nb, ns = int((rows["label"] == "bonafide").sum()), int((rows["label"] == "spoof").sum())
    summary: dict[str, Any] = {"n_bonafide": nb, "n_spoof": ns}
    if min(nb, ns) < p.min_per_class:
        return {**summary, "status": f"skipped: fewer than {p.min_per_class} clips of a class"}, []
    x = rows[list(FEATURES)].to_numpy(dtype=np.float64)
    y = (rows["label"] == "bonafide").to_numpy().astype(int)
    groups = (rows["corpus"].astype(str) + "/" + rows["speaker"].astype(str)).to_numpy()
    split, how = folds(y, groups, p.folds, p.seed)
    table = []
    for model in MODELS:
        summary[f"eer_{model}"] = oof_eer(x, y, split, model, p.seed)
        table.append({"kind": "classifier", "name": model, "eer": summary[f"eer_{model}"]})
    keep = [i for i, f in enumerate(FEATURES) if f != "duration_s"]
    summary["eer_no_duration"] = min(oof_eer(x[:, keep], y, split, m, p.seed) for m in MODELS)
    table.append({"kind": "classifier", "name": "best, without duration", "eer": summary["eer_no_duration"]})
    single = {f: feature_eer(x[:, i], y) for i, f in enumerate(FEATURES)}
    table += [{"kind": "feature", "name": f, "eer": e} for f, e in single.items()]
    worst = min(single, key=lambda f: (single[f], f))
    summary.update(eer=min(summary["eer_logreg"], summary["eer_gbt"]), folds=how, worst_feature=worst,
                   worst_feature_eer=single[worst])
    summary["status"] = "warning" if summary["eer"] < p.min_eer else "ok"
    return summary, table


def run_audit(clips: pd.DataFrame, p: AuditParams) -> tuple[dict[str, Any], pd.DataFrame]:
    """Audit every set of `audit_sets` -> ({set: summary}, table of every (set, classifier/feature) EER)."""
    _check_features(clips)
    return _audit_all(audit_sets(clips), p, "audit sets")


def system_sets(clips: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{system: rows}: the test bona fide against one spoof system's clips of the test split and of the attack-only
    eval splits (the clips the detector's per-system EERs and the hardness view score)."""
    split = clips["split"].astype(str)
    bona = clips["label"] == "bonafide"
    own_bona = {s for s in split[bona] if s.startswith("eval:")}
    spoof = clips[~bona & ((split == "test") | (split.str.startswith("eval:") & ~split.isin(own_bona)))]
    test_bona = clips[bona & (split == "test")]
    return {str(system): pd.concat([test_bona, g]).reset_index(drop=True)
            for system, g in spoof.groupby("system", sort=True)}


def run_system_audit(clips: pd.DataFrame, p: AuditParams) -> tuple[dict[str, Any], pd.DataFrame]:
    """The audit of every spoof system against the test bona fide (`system_sets`): is a generator easy for the wrong
    reason? -> ({system: summary}, table rows with set `system:<system>`)."""
    _check_features(clips)
    summaries, table = _audit_all(system_sets(clips), p, "audit systems")
    return summaries, table.assign(set=SYSTEM_PREFIX + table["set"].astype(str))



def _check_features(clips: pd.DataFrame) -> None:
    missing = [f for f in FEATURES if f not in clips.columns]
    if missing:
        raise ValueError(f"shortcut audit: clip table lacks {missing}")


def _audit_all(sets: dict[str, pd.DataFrame], p: AuditParams, desc: str) -> tuple[dict[str, Any], pd.DataFrame]:
    rng = np.random.default_rng(p.seed)
    summaries, rows = {}, []
    for name, sub in progress(list(sets.items()), desc, unit="set"):
        if len(sub) > p.max_clips:
            sub = sub.iloc[np.sort(rng.choice(len(sub), p.max_clips, replace=False))].reset_index(drop=True)
        summary, table = audit_one(sub, p)
        summaries[name] = summary
        rows += [{"set": name, **r} for r in table]
        if summary.get("status") == "warning":
            log.warning("SHORTCUT AUDIT: %s is separated from its bona fide by nuisance features alone (EER %.1f%% < "
                        "audit.min_eer %.0f%%); on its own, %s gives EER %.1f%%", name, 100 * summary["eer"],
                        100 * p.min_eer, summary["worst_feature"], 100 * summary["worst_feature_eer"])
    return summaries, pd.DataFrame(rows, columns=["set", "kind", "name", "eer"])


# ----------------------------------------------------------------------------- generator hardness


def hardness(clips: pd.DataFrame, scores: pd.Series, model_name: str) -> pd.DataFrame:
    """Per spoof system: EER of `scores` (clip_id -> score) for the test bona fide against that system's test or
    attack-only eval clips; rows (model, system, paradigm, n_spoof, eer)."""
    split = clips["split"].astype(str)
    bona = clips[(clips["label"] == "bonafide") & (split == "test")]
    spoof = clips[(clips["label"] == "spoof") & ((split == "test") | split.str.startswith("eval:"))]
    b = bona["clip_id"].map(scores).dropna().to_numpy(float)
    rows = []
    for system, g in spoof.groupby("system", sort=True):
        s = g["clip_id"].map(scores).dropna().to_numpy(float)
        if len(b) and len(s):
            rows.append({"model": model_name, "system": str(system),
                         "paradigm": ",".join(sorted(g["paradigm"].astype(str).unique())), "n_spoof": len(s),
                         "eer": float(compute_eer(b, s)[0])})
    return pd.DataFrame(rows, columns=["model", "system", "paradigm", "n_spoof", "eer"])


def reference_models(p: AuditParams, teachers_dir: Path | None) -> dict[str, Path]:
    """{name: model dir}: `audit.reference` when set, else every teacher under `teachers_dir` that has a model."""
    if p.reference:
        return {f"reference:{Path(p.reference).name}": Path(p.reference)}
    if teachers_dir is None or not teachers_dir.is_dir():
        return {}
    return {f"teacher:{d.name}": d for d in sorted(teachers_dir.iterdir()) if (d / "model.pt").is_file()}


def score_hardness(clips: pd.DataFrame, models: dict[str, Path], p: AuditParams, sample_rate: int,
                   device: Any) -> pd.DataFrame:
    """hardness() of every model over the test and attack-only eval clips (each clip scored once per model)."""
    from pipeline.detector.inference import score_clips
    from pipeline.models import load_checkpoint

    split = clips["split"].astype(str)
    rows = clips[((clips["label"] == "bonafide") & (split == "test"))
                 | ((clips["label"] == "spoof") & ((split == "test") | split.str.startswith("eval:")))]
    frames = []
    for name, path in models.items():
        model, _ = load_checkpoint(path, device=device)
        result = score_clips(model, rows, p.batch_size, sample_rate, p.eval_s, device=device, stage="audit")
        frames.append(hardness(clips, pd.Series(result.scores, index=result.clip_ids, dtype=float), name))
        log.info("hardness: %s scored %d clips (%d rejected)", name, len(result.clip_ids), len(result.rejects))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["model", "system", "paradigm", "n_spoof", "eer"])


def write_outputs(summaries: dict[str, Any], table: pd.DataFrame, hard: pd.DataFrame, p: AuditParams,
                  out: Path, by_system: tuple[dict[str, Any], pd.DataFrame] | None = None) -> None:
    """audit.csv, hardness.csv and, last, audit.json under `out` (`by_system`: run_system_audit's result)."""
    systems, system_table = by_system if by_system is not None else ({}, table.iloc[:0])
    table = pd.concat([table, system_table], ignore_index=True)
    for name, df in (("audit.csv", table), ("hardness.csv", hard)):
        with atomic_path(out / name) as tmp:
            csv_safe(df).to_csv(tmp, index=False, float_format="%.6f")
    warned = sorted(k for k, v in summaries.items() if v.get("status") == "warning")
    by_model: dict[str, dict[str, float]] = {}
    for r in hard.itertuples():
        by_model.setdefault(str(r.model), {})[str(r.system)] = float(r.eer)
    write_json_atomic({"audit": summaries, "min_eer": p.min_eer, "features": list(FEATURES), "warnings": warned,
                       "hardness": by_model, "by_system": systems,
                       "system_warnings": sorted(k for k, v in systems.items() if v.get("status") == "warning")},
                      out / "audit.json")


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("audit", "shortcut audit (nuisance-only EER per set) and generator hardness")
    parser.add_argument("--clips", nargs="+", required=True, help="clip tables (clips.parquet, data/recon/*.parquet)")
    parser.add_argument("--teachers", default=None, help="teachers directory (hardness without audit.reference)")
    parser.add_argument("--out", required=True, help="reports directory")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params(args.params)
    common = common_params(params)
    p = AuditParams.from_params(section(params, "audit"), seed=common.seed)
    from pipeline.schema import read_clip_tables

    clips = read_clip_tables([c for c in args.clips if Path(c).exists()] or args.clips, stage="audit")
    with stage_timer(log, "audit") as stats:
        summaries, table = run_audit(clips, p)
        by_system = run_system_audit(clips, p)
        models = reference_models(p, Path(args.teachers) if args.teachers else None)
        hard = pd.DataFrame(columns=["model", "system", "paradigm", "n_spoof", "eer"])
        if models:
            from pipeline.runtime.devices import setup_torch

            hard = score_hardness(clips, models, p, common.sample_rate, setup_torch(common))
        stats.add("sets", len(summaries))
        stats.add("systems", len(by_system[0]))
        stats.add("clips", len(clips))
    write_outputs(summaries, table, hard, p, Path(args.out), by_system)
    for name, s in summaries.items():
        if "eer" in s:
            log.info("audit %-22s EER %5.1f%% (no duration %5.1f%%), best single feature %s %5.1f%%", name,
                     100 * s["eer"], 100 * s["eer_no_duration"], s["worst_feature"], 100 * s["worst_feature_eer"])
    return 0
