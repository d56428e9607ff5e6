"""Dispatch `python -m pipeline <stage> [args]` to `pipeline.<stage>.main(argv)`.

Only the named module is imported, so cheap stages never pay for torch or faiss.
"""

from __future__ import annotations

import importlib
import os
import sys

# OpenMP spin-waiting makes torch 10x slower when another process holds the cores (measured on the
# shared 2-core machines); it must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Pin torch's CPU code paths (ATen, oneDNN, MKL) to an AVX2-level path so that outputs do not depend on the
# machine's ISA (pipeline/runtime/cpu_isa.py); HARDSET_CPU_ISA=native opts out. Also before torch is imported.
from pipeline.runtime.cpu_isa import pin_cpu_isa  # noqa: E402  (torch-free)

try:
    CPU_PIN = pin_cpu_isa(os.environ)
    CPU_PIN_ERROR = ""
except ValueError as _exc:
    CPU_PIN, CPU_PIN_ERROR = {}, str(_exc)

STAGES = (
    "fetch_demo",
    "corpus_index",
    "prepare",
    "fit_codec",
    "fit_diffusion",
    "reconstruct",
    "pretrain",
    "embed",
    "sample",
    "init_model",
    "train",
    "evaluate",
    "audit",
    "report",
    "export",
)
COMMANDS = ("score", "import_model")

USAGE = """usage: python -m pipeline <stage> [options]

stages (in dvc.yaml order):
  fetch_demo     build data/raw/demo/ (Debian speech packages + offline TTS attacks)
  corpus_index   content index of the prepare.corpora roots (makes external corpora DVC dependencies)
  prepare        corpus adapters -> data/clips.parquet, data/rejects.parquet
  fit_codec      train a small EnCodec where no pretrained checkpoint is given
  fit_diffusion  train a mel UNet (diffusers) where no pretrained model is given
  reconstruct    copy-synthesis of bona fide clips through one paradigm's generators
  pretrain       train one teacher detector on its pool
  embed          penultimate embeddings of a teacher's pool
  sample         neural-collapse class-mean sampling (+ baselines) -> manifests
  init_model     record train.init's model dir (path + sha256) so that DVC re-runs train when it changes
  train          train the detector on the chosen manifest
  evaluate       EER per eval set and channel condition, score files, DET plots
  audit          shortcut audit (nuisance-only EER per set) and generator hardness for a reference model
  report         reports/index.html (static, offline)
  export         curated subsets as ASVspoof 2019 LA / lhotse / Hugging Face datasets; a model folder with its card

commands:
  score          score audio files, folders or a clip table with a trained detector
  import_model   turn an external checkpoint (official AASIST / AASIST-L) into a model directory

Run `python -m pipeline <stage> --help` for a stage's options.
Environment: HARDSET_CPU_ISA=avx2 (default: torch's x86 CPU kernels pinned to one path, so outputs do not
depend on the machine's ISA) or native (the machine's fastest kernels; see pipeline/runtime/cpu_isa.py).
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in STAGES + COMMANDS:
        print(f"unknown stage {name!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    if CPU_PIN_ERROR:
        print(f"error: {CPU_PIN_ERROR}", file=sys.stderr)
        return 2
    from pipeline.logs import StageError, os_error_line

    module = importlib.import_module(f"pipeline.{name}")
    try:
        return int(module.main(rest) or 0)
    except StageError as exc:  # a params typo, an impossible value or input (ConfigError, ...): one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, an unwritable folder: the file and the cause, one line
        line = os_error_line(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
