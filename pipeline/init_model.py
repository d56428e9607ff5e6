"""Stage `init_model`: record train.init's model dir (path + sha256 of its files) for DVC.

DVC cannot make a dependency conditional on a params value, so dvc.yaml runs this stage every time
(always_changed): it writes `data/models/init.json`, the init dir's path and the sha256 of its
model.pt and config.json ({"init": null} without one), rewritten only when that changes. train
depends on the file, so train re-runs exactly when the init model's content changes, not only when
its path does. A train.init that is no model dir is a one-line config error (exit 2).
What train does with the init: pipeline/detector/finetune.py.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from pipeline.detector.finetune import InitParams, init_digest
from pipeline.io import write_text_atomic
from pipeline.params import ConfigError, stage_parser, start_stage

log = logging.getLogger("pipeline.init_model")


def stamp(init_dir: str | None) -> dict[str, Any]:
    """The content of init.json: the init dir and its files' sha256 (ConfigError when it is no model dir)."""
    if init_dir is None:
        return {"init": None}
    if not (Path(init_dir) / "model.pt").is_file():
        raise ConfigError(f"params train.init: {init_dir} has no model.pt (an import_model or train output dir)")
    return {"init": str(init_dir), "sha256": init_digest(init_dir)}


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("init_model", "record train.init's identity (path + sha256) for DVC")
    parser.add_argument("--out", default="data/models/init.json")
    args, params, _ = start_stage(parser, argv)
    init = InitParams.from_part(params.get("train")).init
    text = json.dumps(stamp(init), indent=1, sort_keys=True) + "\n"
    out = Path(args.out)
    if out.is_file() and out.read_bytes() == text.encode("utf-8"):
        log.info("init_model: unchanged, %s left as it was", out)
        return 0
    write_text_atomic(text, out)
    log.info("init_model: %s -> %s", init or "no init (train from scratch)", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
