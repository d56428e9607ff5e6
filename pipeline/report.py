"""Stage `report`: reports/index.html, a static page that opens with no network.

Reads: the clip tables and rejects (data/), reports/{metrics.json, eer.csv, plots/det.csv, scores/*.txt,
sampling.json, reconstruction/*.json, audit.json, hardness.csv}, data/teachers/*/metrics.json,
data/embeddings/<T>/, data/manifests/ and, for the sweep and the data-efficiency view, `dvc exp show --json`,
`dvc status` and `git rev-parse HEAD` of the repository and the committed reports/sweep_runs.csv (or
sweep.csv). Writes: reports/index.html (atomically).

Sections: the summary (which method and ratio, with the sweep's paired intervals; this run's EER, minDCF,
actDCF, Cllr; the generators), data counts and rejects, reconstruction quality, teachers, sampling (NC
diagnostics and PCA maps of each pool), detector tables per eval set and attack system with DET curves and score
histograms (read from the evaluate stage's files, never recomputed), generator hardness (one row per spoof
system), the shortcut audit, and EER against sampling ratio (the sweep of one commit; every run labelled by
commit). Images are inline PNG data URIs, the
CSS is inline, and the page has no script and no external address. A missing input makes its section
say "not available" instead of failing the stage.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.io import write_text_atomic
from pipeline.logs import stage_timer
from pipeline.params import mapping, stage_parser, start_stage
from pipeline.reporting import detector_section, efficiency, hardness_section, html, inputs, sampling_section, sections
from pipeline.reporting import sweep as sweeps
from pipeline.reporting.experiments import ExperimentRuns, load_experiments
from pipeline.reporting.sections import ReportParams
from pipeline.reporting.summary import summary_section

log = logging.getLogger("pipeline.report")


@dataclass(frozen=True)
class ReportInputs:
    """Where the report reads from (paths as given on the command line)."""

    reports: Path
    clips: tuple[Path, ...]
    rejects: Path | None
    embeddings: Path
    manifests: Path
    teachers: Path
    repo: Path = Path(".")
    fits: tuple[Path, ...] = ()


def parse_params(sec: dict[str, Any] | None, seed: int) -> ReportParams:
    """The `report` section (all keys optional) as ReportParams; unknown keys and bad values are a ConfigError."""
    return ReportParams.from_params(mapping("report", sec))


def _guarded(title: str, anchor: str, build: Callable[[], html.Section]) -> html.Section:
    """Build a section; an unexpected error becomes a red message in that section (and a logged error)."""
    try:
        return build()
    except Exception as exc:  # noqa: BLE001 - one broken input must not hide the rest of the report
        log.exception("report section %r failed", title)
        return html.Section(anchor, title).add(html.p(f"this section failed: {type(exc).__name__}: {exc}", "warn"))


def run(src: ReportInputs, p: ReportParams, seed: int = 0) -> tuple[str, dict[str, int]]:
    """Build the HTML page from the inputs; returns (html, counts for the log line)."""
    clips, missing_tables = inputs.load_clips(list(src.clips))
    rejects = inputs.load_rejects(src.rejects)
    errors: list[str] = []
    metrics = _soft(lambda: inputs.read_json(src.reports / "metrics.json"), None, errors)
    eer = _soft(lambda: inputs.load_eer_table(src.reports / "eer.csv"), None, errors)
    det = _soft(lambda: inputs.load_det(src.reports / "plots" / "det.csv"), None, errors)
    scores = _soft(lambda: inputs.load_scores(src.reports / "scores"), {}, errors)
    audit_json = _soft(lambda: inputs.read_json(src.reports / "audit.json"), None, errors)
    hardness_csv = _soft(lambda: inputs.load_hardness(src.reports / "hardness.csv"), None, errors)
    exps: ExperimentRuns | None = None
    stale = None
    if p.experiments:
        metrics_file = _relative(src.reports / "metrics.json", src.repo)
        exps = load_experiments(src.repo, metrics_file, timeout_s=p.experiments_timeout_s)
        if exps.freshness is not None and exps.freshness.state in ("stale", "unverified"):
            stale = (f"`dvc status` says {metrics_file} is older than its inputs ({exps.freshness.detail})"
                     if exps.freshness.state == "stale" else
                     f"the inputs of {metrics_file} are absent here ({exps.freshness.detail}): these are the "
                     "committed numbers, not re-run")
    sweep = _soft(lambda: sweeps.load_sweep(exps.runs if exps is not None else None, src.reports), None, errors)
    head = sweeps.head_commit(src.repo, sweep.commit if sweep is not None else "")
    if eer is not None:
        set_names = list(dict.fromkeys(eer["set"]))
    else:
        set_names = list((metrics or {}).get("eer") or {}) if isinstance(metrics, dict) else []
    recon = _soft(lambda: inputs.load_reconstruction(src.reports / "reconstruction"), None, errors)
    audit_table: list[pd.DataFrame | None] = [None]
    generators: list[list[str]] = [[]]

    def audit() -> html.Section:
        sec, audit_table[0] = sections.audit_section(audit_json)
        return sec

    def hardness() -> html.Section:
        sec, generators[0] = hardness_section.hardness_section(eer, recon, audit_json, hardness_csv, metrics)
        return sec

    body = [
        _guarded("Data", "data", lambda: sections.data_section(clips, missing_tables, rejects)),
        _guarded("Reconstruction quality", "reconstruction", lambda: sections.reconstruction_section(
            recon, inputs.load_fits(list(src.fits)))),
        _guarded("Teachers", "teachers", lambda: sections.teachers_section(inputs.load_teachers(src.teachers))),
        _guarded("Sampling", "sampling", lambda: sampling_section.sampling_section(
            inputs.read_json(src.reports / "sampling.json"), src.embeddings, inputs.load_manifest(src.manifests),
            clips, p, seed)),
        _guarded("Detector", "detector",
                 lambda: detector_section.detector_section(eer, det, metrics, stale, scores, clips)),
        _guarded("Generator hardness", "hardness", hardness),
        _guarded("Shortcut audit", "audit", audit),
        _guarded("Data efficiency (DVC experiments)", "experiments",
                 lambda: efficiency.experiments_section(exps, sweep, head)),
    ]
    summary = _guarded("Summary", "summary", lambda: summary_section(
        set_names, audit_table[0], exps, stale, metrics if isinstance(metrics, dict) else None, sweep, head, eer,
        generators[0]))
    for err in errors:
        summary.add(html.p(f"unreadable input: {err}", "warn"))
    page = html.page("hardset report", "hard training sets for audio deepfake detection: which method and ratio, "
                     "how sure, how hard each generator is", [summary, *body])
    counts = {"clips": 0 if clips is None else len(clips), "score_sets": len(scores),
              "experiments": 0 if exps is None or exps.runs is None else len(exps.runs),
              "images": page.count("<img "), "kbytes": len(page) // 1024}
    return page, counts


def _soft(load: Callable[[], Any], default: Any, errors: list[str]) -> Any:
    """Run a loader; a malformed file becomes an error line in the summary (and the log) and `default`."""
    try:
        return load()
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        log.error("report input unreadable: %s", exc)
        errors.append(f"{type(exc).__name__}: {exc}")
        return default


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("report", "reports/index.html: a static, offline report of the whole pipeline")
    parser.add_argument("--reports", type=Path, default=Path("reports"), help="folder of the evaluate outputs")
    parser.add_argument("--clips", type=Path, nargs="+", default=[Path("data/clips.parquet")],
                        help="clip tables (clips.parquet, data/recon/*.parquet); missing ones are left out")
    parser.add_argument("--rejects", type=Path, default=None, help="data/rejects.parquet")
    parser.add_argument("--embeddings", type=Path, default=Path("data/embeddings"))
    parser.add_argument("--manifests", type=Path, default=Path("data/manifests"))
    parser.add_argument("--teachers", type=Path, default=Path("data/teachers"))
    parser.add_argument("--fits", type=Path, nargs="*", default=[],
                        help="the fit stages' metrics/fit_*.json (what was fitted on this corpus, and how long)")
    parser.add_argument("--repo", type=Path, default=Path("."), help="repository root for `dvc exp show`")
    parser.add_argument("--out", type=Path, default=Path("reports/index.html"))
    args, params, common = start_stage(parser, argv)
    p = parse_params(params.get("report"), common.seed)
    src = ReportInputs(reports=args.reports, clips=tuple(args.clips), rejects=args.rejects,
                       embeddings=args.embeddings, manifests=args.manifests, teachers=args.teachers, repo=args.repo,
                       fits=tuple(args.fits))
    with stage_timer(log, "report") as stats:
        page, counts = run(src, p, seed=common.seed)
        write_text_atomic(page, args.out)
        # mkstemp creates 0600 files; the page is meant to be opened and served by others too
        os.chmod(args.out, 0o644)
        for k, v in counts.items():
            stats.add(k, v)
    log.info("wrote %s", args.out)
    return 0
