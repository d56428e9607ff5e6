"""Command `score`: bona fide scores of audio files, folders or a clip table with a trained detector.

    python -m pipeline score --model data/models/detector INPUT... --out scores.txt

Reads the detector checkpoint and the inputs; writes `clip_id score` lines (higher = bona fide) to
--out (atomically; `-` = stdout). Each INPUT is
- an audio file: clip_id = the path as given;
- a folder: every file under it (recursively) with an audio extension (AUDIO_EXTENSIONS), sorted;
  clip_id = the file's path; files with other extensions are skipped (counted in the log);
- a clip-table Parquet (`.parquet`, the schema of pipeline/schema.py): clip_id and path from the table.
Each clip is scored on its first `--eval-s` seconds (tiled when shorter), as `evaluate` does.

Bad inputs: a path that does not exist, or a file named on the command line that is not audio
soundfile can read, is an error before anything is scored (exit code 2, the message names the
file). A file found in a folder or listed in a clip table that cannot be decoded or is unusable
(empty, silent, not finite) is reported on stderr as `reject <clip_id>: <reason>` and skipped; the
command goes on and exits 0 (1 when nothing at all could be scored).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd
import soundfile as sf

from pipeline.logs import setup_logging

log = logging.getLogger("pipeline.score")

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64")
INPUT_COLUMNS = ["clip_id", "path", "corpus", "label"]


class InputError(ValueError):
    """An input that cannot be scored at all (missing path, a named file that is not audio)."""


def _audio_row(path: Path, shown: str) -> dict[str, str]:
    # label is a placeholder: score_clips wants one, and the scores do not depend on it.
    return {"clip_id": shown, "path": str(path), "corpus": "input", "label": "bonafide"}


def collect_inputs(inputs: list[str]) -> pd.DataFrame:
    """The rows to score (clip_id, path, corpus, label) from files, folders and clip tables, in input order."""
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
            frames.append(table[INPUT_COLUMNS].astype(str))
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
        device="cpu") -> tuple[list[str], list[dict]]:
    """Score the rows; return (`clip_id score` lines in row order, rejects)."""
    from pipeline.clipdata import score_clips

    result = score_clips(model, rows, batch_size, sample_rate, seconds, device=device, stage="score")
    lines = [f"{cid} {score:.6f}" for cid, score in zip(result.clip_ids, result.scores)]
    return lines, result.rejects


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline score",
                                     description="score audio files, folders or a clip table with a trained detector")
    parser.add_argument("--model", required=True, help="detector directory (model.pt) or checkpoint file")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio file, folder or clip-table .parquet")
    parser.add_argument("--out", required=True, help="output file of `clip_id score` lines ('-' = stdout)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-s", type=float, default=None,
                        help="seconds scored per clip (default: the model's eval_s, else 4.0)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        rows = collect_inputs(args.inputs)
    except (InputError, FileNotFoundError, ValueError) as exc:
        print(f"score: error: {exc}", file=sys.stderr)
        return 2
    if rows.empty:
        print("score: error: no audio files found in the inputs", file=sys.stderr)
        return 1

    from pipeline.models import CheckpointError, load_checkpoint
    from pipeline.torch_env import configure_torch, resolve_device

    configure_torch(args.threads, 0)
    device = resolve_device(args.device)
    try:
        model, config = load_checkpoint(args.model, device=device)
    except CheckpointError as exc:
        print(f"score: error: {exc}", file=sys.stderr)
        return 2
    lines, rejects = run(model, rows, batch_size=args.batch_size, sample_rate=int(config["sample_rate"]),
                         seconds=args.eval_s or float(config.get("eval_s", 4.0)), device=device)
    for r in rejects:
        print(f"reject {r['clip_id']}: {r['reason']}", file=sys.stderr)
    if not lines:
        print(f"score: error: none of the {len(rows)} inputs could be scored", file=sys.stderr)
        return 1
    text = "\n".join(lines) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        from pipeline.io import write_text_atomic

        write_text_atomic(text, args.out)
    log.info("scored %d clips (%d rejected) -> %s", len(lines), len(rejects), args.out)
    return 0
