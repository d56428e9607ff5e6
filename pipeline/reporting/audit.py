"""The shortcut audit of DESIGN.md: how well a trivial classifier separates the classes from
(duration_s, leading_silence_s, bandwidth_hz, rms_dbfs) alone.

A detector could score well by learning these instead of generator artefacts. Two small models
(a standardised logistic regression and a shallow gradient-boosted tree, scikit-learn) are scored
out of fold with a speaker-disjoint split (groups = corpus + speaker; a reconstruction shares its
parent's speaker, so a real clip and its fakes always fall in the same fold). The EER of the
out-of-fold bona fide probabilities is computed with `pipeline.metrics.compute_eer`. An EER near
50% means the features carry no class information (healthy); far below means a shortcut.

Pure: takes a clip table, returns tables; reads and writes no file.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.metrics import compute_eer
from pipeline.params import Section, number

log = logging.getLogger(__name__)

FEATURES = ("duration_s", "leading_silence_s", "bandwidth_hz", "rms_dbfs")
MODELS = ("logreg", "gbt")


@dataclass(frozen=True)
class AuditParams(Section):
    """Audit settings (from the `report` params section)."""

    NAME: ClassVar[str] = "report.audit"
    SHARED: ClassVar[tuple[str, ...]] = ("seed",)
    folds: int = 5
    max_clips: int = 20000
    warn_eer: float = 0.35
    min_per_class: int = 4
    seed: int = 0

    def check(self) -> None:
        number("report.audit.folds", self.folds, low=2, integer=True)
        number("report.audit.max_clips", self.max_clips, low=1, integer=True)
        number("report.audit.warn_eer", self.warn_eer, low=0, high=1)
        number("report.audit.min_per_class", self.min_per_class, low=1, integer=True)


def _model(name: str, seed: int):
    if name == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    if name == "gbt":
        return GradientBoostingClassifier(n_estimators=60, max_depth=2, learning_rate=0.1, random_state=seed)
    raise KeyError(f"unknown audit model {name!r}; known: {MODELS}")


def _folds(y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> tuple[list, str]:
    """Speaker-disjoint stratified folds; plain stratified folds when there are too few speakers."""
    n_groups = len(np.unique(groups))
    min_class = int(np.bincount(y, minlength=2).min())
    k = min(n_folds, n_groups, min_class)
    if k >= 2:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        folds = list(splitter.split(np.zeros(len(y)), y, groups))
        if all(len(np.unique(y[tr])) == 2 for tr, _ in folds):
            return folds, f"{k}-fold, speaker-disjoint"
    k = min(n_folds, min_class)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y)), f"{k}-fold, stratified (too few speakers to split by speaker)"


def audit_eer(clips: pd.DataFrame, model: str, params: AuditParams) -> tuple[float, str]:
    """Out-of-fold EER of one trivial classifier on the shortcut features; returns (eer, folding used)."""
    x = clips[list(FEATURES)].to_numpy(dtype=np.float64)
    y = (clips["label"] == "bonafide").to_numpy().astype(int)
    groups = (clips["corpus"].astype(str) + "/" + clips["speaker"].astype(str)).to_numpy()
    folds, how = _folds(y, groups, params.folds, params.seed)
    oof = np.zeros(len(y))
    for train, test in folds:
        est = _model(model, params.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on constant features
            est.fit(x[train], y[train])
        oof[test] = est.predict_proba(x[test])[:, 1]
    eer, _ = compute_eer(oof[y == 1], oof[y == 0])
    return eer, how


def run_audit(clips: pd.DataFrame, sets: dict[str, pd.Index] | None, params: AuditParams) -> pd.DataFrame:
    """Audit EERs per clip subset ("all" plus each named eval set): one row per (subset, model).

    `sets` maps a name to the clip_ids of that subset; None audits the whole table as "all".
    Columns: set, model, n_bonafide, n_spoof, eer, folds, status ("ok" / "warning" / "skipped: why").
    """
    missing = [f for f in FEATURES if f not in clips.columns]
    if missing:
        raise ValueError(f"shortcut audit: clip table lacks {missing}")
    subsets: dict[str, pd.DataFrame] = {}
    if sets:
        ids = pd.Index(sorted(set().union(*[set(v) for v in sets.values()])))
        subsets["all"] = clips[clips["clip_id"].isin(ids)]
        if len(sets) > 1:
            for name, v in sets.items():
                subsets[name] = clips[clips["clip_id"].isin(v)]
    else:
        subsets["all"] = clips
    rng = np.random.default_rng(params.seed)
    rows = []
    for name, sub in subsets.items():
        sub = sub.dropna(subset=list(FEATURES)).reset_index(drop=True)
        if len(sub) > params.max_clips:
            sub = sub.iloc[np.sort(rng.choice(len(sub), params.max_clips, replace=False))].reset_index(drop=True)
        nb, ns = int((sub["label"] == "bonafide").sum()), int((sub["label"] == "spoof").sum())
        for model in MODELS:
            row = {"set": name, "model": model, "n_bonafide": nb, "n_spoof": ns, "eer": np.nan, "folds": ""}
            if min(nb, ns) < params.min_per_class:
                row["status"] = f"skipped: fewer than {params.min_per_class} clips of a class"
            else:
                row["eer"], row["folds"] = audit_eer(sub, model, params)
                row["status"] = "warning" if row["eer"] < params.warn_eer else "ok"
                if row["status"] == "warning":
                    log.warning("SHORTCUT AUDIT: %s separates %s from (%s) alone with EER %.1f%% (< %.0f%%): "
                                "the classes differ in trivial clip properties", model, name, ", ".join(FEATURES),
                                100 * row["eer"], 100 * params.warn_eer)
            rows.append(row)
    return pd.DataFrame(rows, columns=["set", "model", "n_bonafide", "n_spoof", "eer", "folds", "status"])
