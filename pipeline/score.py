r"""Command `score`: bona fide scores of audio files, folders or a clip table with a trained detector.

    python -m pipeline score --model data/models/detector INPUT... --out scores.tsv

Reads the detector checkpoint and the inputs; writes one score per clip to --out (atomically; `-` =
stdout). The score is the one rule of every model, trained, fine-tuned or imported (pipeline.models.
bonafide_score): logit[bonafide] - logit[spoof], the log-odds of bona fide; higher = more bona fide. Formats
(--format):
- `tsv` (default): a header line `clip_id<TAB>score`, then one tab-separated line per clip. When an input
  is a labelled clip table, the header adds `label<TAB>system` and each line the clip's label and system
  (empty for the rows of audio files and folders, which carry none). `--threshold dev` adds a `decision`
  column (`bonafide` when score > t, else `spoof`, the side of t compute_eer counts) with t the dev-EER
  threshold that train stored in the model folder (config `dev.threshold`); `--threshold X` uses X. A
  backslash, tab, newline or carriage return inside a field is written as `\\`, `\t`, `\n`, `\r`,
  so any path stays one parseable field (`read_scores` undoes it);
- `asvspoof`: `clip_id score` lines separated by one space, no header (the ASVspoof score-file
  layout); a clip id with whitespace is refused before anything is scored. No label, system or decision.
(Only this command's output; evaluate's reports/scores/*.txt keep their own `clip_id score` layout.)
Each INPUT is
- an audio file: clip_id = the path as given;
- a folder: every file under it (recursively) with an audio extension (AUDIO_EXTENSIONS), sorted;
  clip_id = the file's path; files with other extensions are skipped (counted in the log);
- a clip-table Parquet (`.parquet`, the schema of pipeline/schema.py): clip_id and path from the table.
Each clip is scored on its first `--eval-s` seconds (tiled when shorter), as `evaluate` does.

Preprocessing (no train/serve skew): audio files and folders are raw inputs: each goes through the
preprocessing chain recorded in the model directory (`chain` in its config: prepare's resample, low-pass,
16-bit storage, VAD trim and length cap, pipeline/chain.py), so a raw file scores exactly as its
prepared clip does. Clip-table rows are prepared clips (prepare or reconstruct wrote them through that
chain) and are read as they are, never processed twice. The per-row column `prepared` (False for
files and folders, True for clip-table rows; `--prepared` makes every input True) decides. A model
that records no chain (an imported or older model directory) gets resampling only, and the log says so.

Bad arguments (exit code 2, nothing scored or written): --eval-s, --batch-size or --threads not
positive; --out that is a folder, one of the inputs, a file inside an input folder that would be
scored, the model checkpoint, or an audio file (existing or by extension): a score file never
replaces audio.

Bad inputs: a path that does not exist, or a file named on the command line that is not audio
soundfile can read, is an error before anything is scored (exit code 2, the message names the
file). A file found in a folder or listed in a clip table that cannot be decoded or is unusable
(empty, silent, not finite) is reported on stderr as `reject <clip_id>: <reason>` and skipped; the
command goes on and exits 0 (1 when nothing at all could be scored).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import soundfile as sf

from pipeline.detector.score_checks import (
    AUDIO_EXTENSIONS,
    InputError,
    check_out,
    check_scores,
    eval_s_bound,
    print_rejects,
)
from pipeline.detector.scorefile import (
    FORMATS,
    TSV_HEADER,
    escape_field,
    format_scores,
    read_score_table,
    read_scores,
    unescape_field,
)
from pipeline.io import atomic_path
from pipeline.logs import StageError, os_error_line, setup_logging
from pipeline.params import PRECISIONS

log = logging.getLogger("pipeline.score")

# the score-file format lives in pipeline/detector/scorefile.py; these names stay importable from here
__all__ = ["AUDIO_EXTENSIONS", "FORMATS", "TSV_HEADER", "InputError", "check_out", "collect_inputs", "escape_field",
           "format_scores", "main", "read_score_table", "read_scores", "run", "unescape_field"]

INPUT_COLUMNS = ["clip_id", "path", "corpus", "label", "system", "prepared", "labelled"]
LABELLED_COLUMNS = ("label", "system")   # written beside the score for the rows of a labelled clip table


def _audio_row(path: Path, shown: str) -> dict[str, str | bool]:
    # label is a placeholder (labelled False): score_clips wants one, and the scores do not depend on it.
    return {"clip_id": shown, "path": str(path), "corpus": "input", "label": "bonafide", "system": "",
            "prepared": False, "labelled": False}


def collect_inputs(inputs: list[str]) -> pd.DataFrame:
    """The rows to score (INPUT_COLUMNS) from files, folders and clip tables, in order; only table rows are labelled."""
    from pipeline.schema import read_clips

    frames, skipped = [], 0
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise InputError(f"{item}: no such file or folder")
        if path.is_dir():
            files = sorted(f for f in path.rglob("*") if f.is_file())
            audio = [f for f in files if f.suffix.lower() in AUDIO_EXTENSIONS]
            skipped += len(files) - len(audio)
            frames.append(pd.DataFrame([_audio_row(f, str(f)) for f in audio], columns=INPUT_COLUMNS))
        elif path.suffix.lower() == ".parquet":
            table = read_clips(path, stage="score")
            frames.append(table[INPUT_COLUMNS[:-2]].astype(str).assign(prepared=True, labelled=True))
        else:
            try:
                sf.info(str(path))
            except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
                raise InputError(f"{item}: not an audio file that soundfile can read ({exc}); "
                                 f"audio extensions: {' '.join(AUDIO_EXTENSIONS)}") from exc
            frames.append(pd.DataFrame([_audio_row(path, item)], columns=INPUT_COLUMNS))
    if skipped:
        log.info("skipped %d non-audio files in folders (extensions other than %s)", skipped,
                 " ".join(AUDIO_EXTENSIONS))
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=INPUT_COLUMNS)
    return rows.drop_duplicates("clip_id").reset_index(drop=True)


def run(model, rows: pd.DataFrame, *, batch_size: int, sample_rate: int, seconds: float,
        device="cpu", fmt: str = "tsv", chain=None, engine: Any = None,
        model_path: str | Path | None = None, precision: str = "fp32",
        threshold: float | None = None) -> tuple[list[str], list[dict]]:
    """Score the rows (`chain` on those not `prepared`); return (score-file lines, header first for tsv; rejects).
    A NaN or infinite score is an InputError (check_scores): nothing is written.

    With a ray `engine` (pipeline.runtime.engine.EngineConfig) the batches are scored by actors that each load the
    detector from `model_path`; the lines come back in row order, as the local loop writes them. tsv lines carry
    the label and system of labelled rows, and a decision at `threshold` when one is given.
    """
    if engine is not None and engine.engine == "ray":
        from functools import partial

        from pipeline.runtime.engine import map_batch_results

        if model_path is None:
            raise ValueError("score on ray needs the model path (each actor loads the detector)")
        factory = partial(score_batch_function, str(model_path), str(device), sample_rate, seconds, chain, precision)
        results = map_batch_results(None, rows, batch_size=batch_size, cfg=engine, actor_factory=factory, desc="score")
        ids = [i for r_ids, _, _ in results for i in r_ids]
        scores = [x for _, r_scores, _ in results for x in r_scores]
        check_scores(ids, scores)
        return (format_scores(ids, scores, fmt, score_columns(rows, ids, scores, threshold)),
                [r for _, _, rej in results for r in rej])
    from pipeline.detector.inference import score_clips

    result = score_clips(model, rows, batch_size, sample_rate, seconds, device=device, stage="score", chain=chain,
                         precision=precision)
    check_scores(result.clip_ids, result.scores)
    columns = score_columns(rows, result.clip_ids, result.scores, threshold)
    return format_scores(result.clip_ids, result.scores, fmt, columns), result.rejects


def decide(scores, threshold: float) -> list[str]:
    """`bonafide` where score > threshold, else `spoof`: the sides pipeline.metrics.compute_eer counts."""
    return ["bonafide" if float(s) > threshold else "spoof" for s in scores]


def score_columns(rows: pd.DataFrame, clip_ids: list[str], scores, threshold: float | None) -> dict[str, list[str]]:
    """The tsv columns after the score, per scored clip: label and system when any row is labelled (empty for
    unlabelled rows), and the decision at `threshold` when one is given."""
    columns: dict[str, list[str]] = {}
    if rows["labelled"].astype(bool).any():
        by_id = rows.set_index("clip_id")
        labelled = by_id["labelled"].astype(bool)
        for name in LABELLED_COLUMNS:
            columns[name] = [str(by_id.at[c, name]) if labelled.at[c] else "" for c in clip_ids]
    if threshold is not None:
        columns["decision"] = decide(scores, threshold)
    return columns


def _engine(name: str, concurrency: int, device: Any, threads: int = 0) -> Any:
    """The engine config for `--engine` (None for local: the plain loop, ray never imported)."""
    if name == "local":
        return None
    from pipeline.runtime.engine import EngineConfig

    return EngineConfig(engine=name, concurrency=concurrency, num_gpus=1.0 if str(device).startswith("cuda") else 0.0,
                        threads=threads)  # actors score on --threads, as the local loop does


ScoreBatch = Callable[[pd.DataFrame], tuple[list[str], list[float], list[dict]]]


def score_batch_function(model_path: str, device: str, sample_rate: int, seconds: float, chain: Any,
                         precision: str = "fp32") -> ScoreBatch:
    """Load the detector once in an engine worker (a Ray actor); return its batch -> (ids, scores, rejects)."""
    from pipeline.detector.inference import score_clips
    from pipeline.models import load_checkpoint

    model, _ = load_checkpoint(model_path, device=device)

    def score_batch(rows: pd.DataFrame) -> tuple[list[str], list[float], list[dict]]:
        r = score_clips(model, rows, len(rows), sample_rate, seconds, device=device, stage="score", chain=chain,
                        precision=precision)
        return r.clip_ids, [float(x) for x in r.scores], r.rejects

    return score_batch


def _positive(kind: type) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def model_chain(config: dict, model: str, n_raw: int = 0):
    """The pipeline.chain.Chain recorded in a model's config; resampling only (logged) when it records none."""
    from pipeline.chain import Chain

    sample_rate = int(config["sample_rate"])
    recorded = config.get("chain")
    if recorded is None:
        if n_raw:
            log.info("model %s records no preprocessing chain (imported or older model): the %d raw inputs are "
                     "only resampled to %d Hz (no trim, no low-pass)", model, n_raw, sample_rate)
        return Chain.resample_only(sample_rate)
    chain = Chain.from_dict(recorded, where=f"{model}: chain")
    if chain.sample_rate != sample_rate:
        raise ValueError(f"{model}: the recorded chain's rate {chain.sample_rate} Hz is not the model's "
                         f"{sample_rate} Hz")
    if n_raw:
        log.info("applying the model's preprocessing chain to %d raw inputs: %s", n_raw, chain.to_dict())
    return chain


def threshold_arg(text: str) -> str | float:
    """`--threshold`: `dev` (the model's stored dev-EER threshold) or a finite number."""
    if text == "dev":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither `dev` nor a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def model_threshold(choice: str | float | None, config: dict, model: str) -> float | None:
    """The decision threshold of `--threshold`: a number as given, or `dev` = the dev-EER threshold that train
    stored in the model folder (config `dev.threshold`); ValueError when the model records none."""
    if choice is None or not isinstance(choice, str):
        return choice
    stored = (config.get("dev") or {}).get("threshold")
    if stored is None:
        raise ValueError(f"--threshold dev: model {model} records no dev threshold (an imported model, or one "
                         "trained before this version): give a number, e.g. --threshold 0 (the model's own "
                         "decision, p(bonafide) = 0.5)")
    log.info("decision threshold %.6f: the model's dev-EER threshold (dev EER %.2f%%)", float(stored),
             100 * float(config["dev"].get("eer", float("nan"))))
    return float(stored)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline score",
                                     description="score audio files, folders or a clip table with a trained detector")
    parser.add_argument("--model", required=True, help="detector directory (model.pt) or checkpoint file")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio file, folder or clip-table .parquet")
    parser.add_argument("--out", required=True, help="score file to write ('-' = stdout); never an input or audio")
    parser.add_argument("--format", choices=FORMATS, default="tsv",
                        help="tsv: header + tab-separated escaped fields (default); asvspoof: `clip_id score` lines")
    parser.add_argument("--batch-size", type=_positive(int), default=16)
    parser.add_argument("--eval-s", type=_positive(float), default=None,
                        help="seconds scored per clip (default: the model's eval_s, else 4.0)")
    parser.add_argument("--prepared", action="store_true",
                        help="the audio files and folders are prepared clips: do not apply the model's chain")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--threads", type=_positive(int), default=2, help="torch CPU threads")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="autocast of the detector: bf16/fp16 for GPU speed; fp32 (default) is bit-stable")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="ray: score the batches on Ray Data actors (RAY_ADDRESS, else a local instance)")
    parser.add_argument("--concurrency", type=_positive(int), default=2, help="engine ray: actors")
    parser.add_argument("--threshold", type=threshold_arg, default=None, metavar="dev|X",
                        help="tsv: add a decision column (bonafide when score > t); t = the model's dev-EER "
                             "threshold (dev) or the number X")
    return parser


def _inputs(args: argparse.Namespace) -> pd.DataFrame:
    """The rows to score, after every check of the arguments that needs no model (InputError, OSError)."""
    rows = collect_inputs(args.inputs)
    if args.prepared:
        rows["prepared"] = True
    check_out(args.out, args.inputs, rows, args.model)
    if args.format == "asvspoof":
        spaced = rows["clip_id"][rows["clip_id"].str.contains(r"\s", regex=True)]
        if len(spaced):
            raise InputError(f"clip id {spaced.iloc[0]!r} has whitespace, which --format asvspoof cannot "
                             "write; use --format tsv")
        if args.threshold is not None:
            raise InputError("--threshold writes a decision column, which --format asvspoof has not; use "
                             "--format tsv")
    return rows


def _error(exc: Exception) -> int:
    """Print a one-line `score: error:` for a bad argument, input or model (exit code 2)."""
    line = os_error_line(exc) if isinstance(exc, OSError) else str(exc)
    if line is None:
        raise exc
    print(f"score: error: {line}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging()
    try:
        rows = _inputs(args)
    except (StageError, FileNotFoundError, ValueError, OSError) as exc:
        return _error(exc)
    if rows.empty:
        print("score: error: no audio files found in the inputs", file=sys.stderr)
        return 1

    from pipeline.models import DEFAULT_EVAL_S, load_checkpoint
    from pipeline.runtime.devices import configure_torch, resolve_device

    configure_torch(args.threads, 0)
    device = resolve_device(args.device)
    try:
        model, config = load_checkpoint(args.model, device=device)
        chain = model_chain(config, args.model, n_raw=int((~rows["prepared"].astype(bool)).sum()))
        threshold = model_threshold(args.threshold, config, args.model)
        seconds = eval_s_bound(args.eval_s, chain) if args.eval_s else float(config.get("eval_s", DEFAULT_EVAL_S))
    except ValueError as exc:  # CheckpointError, InputError
        return _error(exc)
    try:
        lines, rejects = run(model, rows, batch_size=args.batch_size, sample_rate=int(config["sample_rate"]),
                             seconds=seconds, device=device, fmt=args.format, chain=chain,
                             engine=_engine(args.engine, args.concurrency, device, args.threads),
                             model_path=args.model, precision=args.precision, threshold=threshold)
    except InputError as exc:  # non-finite scores
        print(f"score: error: {exc}", file=sys.stderr)
        return 1
    print_rejects(rejects)
    if len(lines) <= (args.format == "tsv"):
        print(f"score: error: none of the {len(rows)} inputs could be scored", file=sys.stderr)
        return 1
    text = "\n".join(lines) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        try:
            with atomic_path(args.out) as tmp:  # utf-8 whatever the locale; file names may hold any character
                tmp.write_text(text, encoding="utf-8", errors="surrogateescape")
        except OSError as exc:  # a disk that filled up during the run
            return _error(exc)
    log.info("scored %d clips (%d rejected) -> %s", len(lines) - (args.format == "tsv"), len(rejects), args.out)
    return 0
