"""Command `import_model`: an external detector checkpoint -> a hardset model directory.

    python -m pipeline import_model --arch aasist --checkpoint AASIST.pth --out data/models/aasist

Reads a torch state dict in the official layout of the architecture (clovaai/aasist's
`models/weights/AASIST.pth` / `AASIST-L.pth`: a plain state dict; a `{"state_dict": ...}` or
`{"model": ...}` wrapper and a DataParallel `module.` prefix are accepted too).
Writes DIR/model.pt (the project's checkpoint format, pipeline.models.save_checkpoint),
DIR/config.json (the model config, the source file and its sha256, the preprocessing the weights
expect, the model card's facts) and DIR/MODEL_CARD.md, so that `python -m pipeline score --model DIR`
and `teachers.<T>.checkpoint: DIR` accept it.

The weights must fit the architecture exactly (strict: same keys, same shapes); otherwise nothing is
written and the command exits 2 with one line naming the missing / unexpected keys or the shape
mismatches. A file that is not a readable torch state dict, or weights holding NaN or infinity, are the same
kind of error. DIR must be new or empty: a folder holding files is refused (a trained model's metrics.json and
dvclive/ would stay beside the imported weights), unless `--force`, which replaces a model folder whole and
atomically (the old folder stays until the new one is complete; a folder without model.pt is never replaced).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

from pipeline.logs import StageError

IMPORTABLE = ("aasist", "aasist-l")
# What the official weights were trained on (their config's nb_samp; data_utils crops/tiles to it).
PREPROCESSING = {
    "aasist": {"sample_rate": 16000, "n_samples": 64600, "eval_s": 4.0375,
               "crop": "first 64600 samples, tiled when shorter (the authors' eval padding)",
               "normalisation": "none (raw waveform as read)", "channels": "mono"},
}
PREPROCESSING["aasist-l"] = PREPROCESSING["aasist"]
# Where the official weights come from and what they were trained on (the model card's licences).
UPSTREAM = {"weights": ("clovaai/aasist weights", "MIT", "https://github.com/clovaai/aasist"),
            "data": ("asvspoof2019_la", "the authors' training data: ASVspoof 2019 LA train")}
SHOWN = 5  # key names listed in an error before "... and N more"


class ImportError_(StageError):
    """A checkpoint that cannot become a model of the requested architecture."""


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return shown + (f" ... and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """The tensors of a checkpoint file (weights only: no pickled code runs); a clear error otherwise."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ImportError_(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImportError_(f"{path}: not a readable torch checkpoint ({first})") from exc
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ImportError_(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def check_state_dict(expected: dict[str, Any], given: dict[str, Any], arch: str) -> None:
    """Raise ImportError_ naming missing keys, unexpected keys or shape mismatches (strict match)."""
    missing = [k for k in expected if k not in given]
    extra = [k for k in given if k not in expected]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_names(missing)}")
    if extra:
        problems.append(f"{len(extra)} unexpected keys: {_names(extra)}")
    shapes = [f"{k} {tuple(given[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in given and tuple(given[k].shape) != tuple(v.shape)]
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (file vs {arch}): {_names(shapes)}")
    if problems:
        raise ImportError_(f"weights do not fit {arch!r}: " + "; ".join(problems))


def check_out(out_dir: str | Path, force: bool) -> None:
    """ImportError_ for an --out that holds files, unless `force` (which replaces a model folder whole)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ImportError_(f"--out {out} exists and is not a folder")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if held and not force:
        raise ImportError_(f"--out {out} is not empty (it holds {', '.join(held[:4])}{' ...' if len(held) > 4 else ''})"
                           ": give a new or empty folder, or --force to replace the whole model folder")


def run(arch: str, checkpoint: str | Path, out_dir: str | Path, force: bool = False) -> dict[str, Any]:
    """Check and convert `checkpoint` into `out_dir` (model.pt + config.json); return config.json's content.

    A non-empty `out_dir` is refused unless `force`; then it is replaced whole (atomically: the old folder stays
    until the new one is complete), and only when it is a model folder (it holds model.pt)."""
    from pipeline.handoff.card import build_card, write_card
    from pipeline.io import atomic_dir, write_json_atomic
    from pipeline.models import SCORE_RULE, build_model, check_finite, save_checkpoint

    if arch not in IMPORTABLE:
        raise ImportError_(f"cannot import architecture {arch!r}; importable: {list(IMPORTABLE)}")
    check_out(out_dir, force)
    state = read_state_dict(checkpoint)
    check_finite(state, str(checkpoint))
    model = build_model({"arch": arch})
    check_state_dict(model.state_dict(), state, arch)
    model.load_state_dict(state, strict=True)
    model.eval()
    pre = PREPROCESSING[arch]
    source = {"checkpoint": str(checkpoint), "sha256": hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()}
    config = {"model": model.config, "source": source, "preprocessing": pre, "imported": True,
              "score": f"{SCORE_RULE} (higher = bona fide), the rule of every hardset model; the authors' score "
                       "files hold logit[bonafide] alone",
              "parameters": sum(p.numel() for p in model.parameters())}
    config["card"] = build_card(
        "imported", arch, model, data=None, params={"arch": arch, "checkpoint": source}, preprocessing=pre,
        licences=upstream_licences(), eval_s=pre["eval_s"],
        limits=("Weights trained by their authors on ASVspoof 2019 LA train (VCTK studio speech, the 2019 TTS/VC "
                "attacks); hardset checked that they load exactly (keys and shapes), not how they were trained.",))
    with atomic_dir(out_dir, marker="model.pt") as tmp:  # the whole model folder, or the previous one untouched
        save_checkpoint(model, {"eval_s": pre["eval_s"], "source": source, "preprocessing": pre}, tmp / "model.pt")
        write_json_atomic(config, tmp / "config.json")
        write_card(tmp, config)
    return config


def upstream_licences() -> list[dict[str, Any]]:
    """The card's licences of an imported checkpoint: the weights' own and the data they were trained on."""
    from pipeline.handoff.licences import LICENCES

    name, licence, url = UPSTREAM["weights"]
    corpus, what = UPSTREAM["data"]
    data_licence, data_url, non_commercial = LICENCES[corpus]
    return [{"corpus": name, "clips": "", "licence": licence, "url": url, "non_commercial": False},
            {"corpus": f"{corpus} ({what})", "clips": "", "licence": data_licence, "url": data_url,
             "non_commercial": non_commercial}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline import_model",
                                     description="turn an external detector checkpoint into a model directory")
    parser.add_argument("--arch", required=True, choices=IMPORTABLE)
    parser.add_argument("--checkpoint", required=True, help="the external weights file (e.g. AASIST.pth)")
    parser.add_argument("--out", required=True, help="the model directory to write (model.pt, config.json): new or "
                                                      "empty")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing model folder --out whole (atomically; a folder without model.pt "
                             "is never replaced)")
    args = parser.parse_args(argv)
    try:
        config = run(args.arch, args.checkpoint, args.out, force=args.force)
    except (StageError, FileExistsError) as exc:
        print(f"import_model: error: {exc}", file=sys.stderr)
        return 2
    print(f"import_model: {args.arch} ({config['parameters']} parameters) -> {args.out}")
    return 0
