"""What the `score` command refuses, before scoring and before writing (issue 27): an --out that could destroy
data (a folder, an input, the model or any file in a model folder, audio, an existing file that is not a score
file, an unwritable place), an --eval-s outside its bounds, NaN or infinite scores; and how rejects are shown
(the first few, then a count by reason). Reads existing files to tell a score file; writes nothing.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.detector.scorefile import is_score_file
from pipeline.io import check_writable
from pipeline.logs import StageError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64")
MIN_EVAL_S, MAX_EVAL_S = 0.1, 60.0  # --eval-s bounds (MAX_EVAL_S: for a model whose chain records no length cap)
SHOWN_REJECTS = 10  # reject lines printed before the rest are counted


class InputError(StageError):
    """An input or argument that cannot be scored or written at all (missing path, a named file that is not audio,
    an --out that would destroy data, non-finite scores)."""


def check_out(out: str, inputs: list[str], rows: pd.DataFrame, model: str) -> None:
    """Raise InputError when writing --out could destroy data: a folder, an input, the model or a file in a model
    folder, audio, or any existing file that is not a score file; an OSError when --out cannot be written."""
    if out == "-":
        return
    path = Path(out)
    if path.parent.exists() and not path.parent.is_dir():
        raise InputError(f"--out {out}: {path.parent} is not a folder")
    if path.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name (e.g. {path / 'scores.tsv'})")
    target = path.resolve()
    model_file = Path(model) / "model.pt" if Path(model).is_dir() else Path(model)
    protected = {Path(p).resolve(): p for p in [*inputs, *rows["path"].astype(str)]}
    protected.setdefault(model_file.resolve(), str(model_file))
    if target in protected:
        raise InputError(f"--out {out} is an input or the model ({protected[target]}): refusing to overwrite it "
                         "with scores")
    folder = next((f for f in [model_file.resolve().parent, *target.parents] if (f / "model.pt").is_file()), None)
    if folder is not None and folder in target.parents:
        raise InputError(f"--out {out} is inside the model folder {folder}: refusing to write scores among the "
                         "model's own files (config.json, metrics.json, ...); write them elsewhere")
    if path.suffix.lower() in AUDIO_EXTENSIONS + (".parquet", ".pt"):
        raise InputError(f"--out {out} has an audio/data extension ({path.suffix}): refusing to write scores "
                         f"there; use e.g. scores.tsv")
    if path.is_file() and not is_score_file(path):
        raise InputError(f"--out {out} exists and is not a score file (its first line is neither `clip_id<TAB>score` "
                         "nor `<clip_id> <score>`): refusing to overwrite it; give a new file name")
    check_writable(path)


def eval_s_bound(seconds: float, chain: Any) -> float:
    """`--eval-s`, checked: at least MIN_EVAL_S, at most the model's clip length cap (its chain's max_duration_s,
    prepare.max_duration_s: a longer window only tiles the clip) or, for a model without a cap, MAX_EVAL_S."""
    high = chain.max_duration_s if chain.max_duration_s is not None else MAX_EVAL_S
    if not MIN_EVAL_S <= seconds <= high:
        where = ("the model's clips are at most prepare.max_duration_s long" if chain.max_duration_s is not None
                 else "the bound of a model without a recorded length cap")
        raise InputError(f"--eval-s {seconds:g}: must be between {MIN_EVAL_S:g} and {high:g} s ({where}; each clip "
                         "is scored on its first eval-s seconds, tiled when shorter)")
    return seconds


def check_scores(clip_ids: list[str], scores: Any) -> None:
    """InputError when a score is NaN or infinite (a model whose output overflowed): such a file cannot be used."""
    bad = [c for c, x in zip(clip_ids, scores) if not math.isfinite(float(x))]
    if bad:
        raise InputError(f"{len(bad)} of {len(clip_ids)} scores are not finite (first: {bad[0]}): the model's output "
                         "is not a number; nothing written")


def print_rejects(rejects: list[dict], shown: int = SHOWN_REJECTS) -> None:
    """`reject <clip_id>: <reason>` on stderr for the first `shown`, then one line counting the rest by reason."""
    for r in rejects[:shown]:
        print(f"reject {r['clip_id']}: {r['reason']}", file=sys.stderr)
    if len(rejects) > shown:
        reasons = pd.Series([r["reason"] for r in rejects[shown:]]).str.replace(r"\S*/\S*", "<path>", regex=True)
        counts = "; ".join(f"{n} x {reason}" for reason, n in reasons.value_counts().head(3).items())
        print(f"reject: ... and {len(rejects) - shown} more ({counts})", file=sys.stderr)
