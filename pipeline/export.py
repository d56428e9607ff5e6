"""Stage and command `export`: a curated subset in the formats detectors are trained with, and a model folder
with its complete card, for hand-off.

    python -m pipeline export --manifest data/manifests/train.parquet --dev data/manifests/dev.parquet \\
        --eval data/clips.parquet data/recon/*.parquet --format asvspoof|lhotse|hf --out DIR [--link hard]
    python -m pipeline export --model data/models/detector --metrics reports/metrics.json --out DIR
    python -m pipeline export --from-params --manifest ... --dev ... --eval ... --model ... --metrics ... --out exports

Reads clip tables (the manifest = the train partition, `--dev` = dev, `--eval` = eval: each keeps only the rows of
its own splits, train / dev / test + eval:*, as train and evaluate use them) and the audio they point to; or a
model folder and evaluate's metrics.json. Writes `--out`, whole and atomically (built beside it, then swapped in):
- a data export (`--format`): the format's layout (pipeline/handoff/{asvspoof,lhotse_set,hf}.py), clip_map.csv
  (file_id <-> clip_id, partition, split, label, system, speaker, parent and its file id) and EXPORT.json (what
  was exported: inputs with sha256, counts, link mode). Files are named by a stable FILE_ID made from the clip id
  (pipeline/handoff/files.py), never by the parent's name. Audio is hard-linked (`--link hard`, the default;
  copied where the file system refuses), symlinked or copied; a hard link shares the clip's bytes: edit a copy;
- a model export (`--model`): model.pt (linked like audio), the train metrics, evaluate's metrics.json as
  test_metrics.json, config.json and MODEL_CARD.md with the card's `test` block filled from that metrics.json
  (evaluate cannot write into train's folder: DVC outs do not overlap);
- `--from-params`, the DVC stage: the formats of params `export.formats` into OUT/<format>/ and, with
  `export.model: true`, the model into OUT/model/; with nothing to export, only EXPORT.json saying so.
Refused (exit 2, nothing written): an output inside data/ (relative paths resolve from the repository root),
over a file, over a non-empty folder that is not an earlier export, or holding any input.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from pipeline.handoff.files import (
    LINKS,
    MAP_NAME,
    MARKER,
    ExportError,
    check_out,
    link_file,
    partition_table,
    write_map,
)
from pipeline.io import atomic_dir, write_json_atomic
from pipeline.logs import stage_timer
from pipeline.params import ConfigError, Section, all_of, as_list, flag, load_params, one_of, section, stage_parser
from pipeline.schema import SchemaError, groups_of, read_clips

log = logging.getLogger("pipeline.export")

FORMATS = ("asvspoof", "lhotse", "hf")
MODEL_FILES = ("model.pt", "config.json", "metrics.json")


@dataclass(frozen=True)
class ExportParams(Section):
    """params `export`: the formats the DVC stage keeps in sync with the manifests (none by default), how audio
    is placed, and whether the detector is exported with its complete card."""

    NAME: ClassVar[str] = "export"
    formats: tuple[str, ...] = ()
    link: str = "hard"           # hard | symlink | copy
    model: bool = False          # also OUT/model/: the detector folder with test EERs in its card

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        return {**kw, "formats": tuple(as_list("export.formats", kw.get("formats")))}

    def check(self) -> None:
        all_of("export.formats", list(self.formats), FORMATS)
        if len(set(self.formats)) < len(self.formats):
            raise ConfigError(f"params export.formats: a format is listed twice: {list(self.formats)}")
        one_of("export.link", self.link, LINKS)
        flag("export.model", self.model)


def read_tables(manifest: str | None, dev: str | None, evals: list[str]) -> dict[str, pd.DataFrame]:
    """The partitions' clip tables (each validated by pipeline/schema.py; eval tables concatenated)."""
    def read(path: str) -> pd.DataFrame:
        return read_clips(path, stage="export", groups=groups_of(path))

    tables = {"train": read(manifest) if manifest else None, "dev": read(dev) if dev else None}
    if evals:
        tables["eval"] = pd.concat([read(p) for p in evals], ignore_index=True)
    return tables


def write_format(table: pd.DataFrame, fmt: str, out: Path, link: str) -> dict[str, Any]:
    """Write one format's layout of `table` into the (new, empty) folder `out`; return its counts."""
    from pipeline.handoff import asvspoof, hf, lhotse_set

    out.mkdir(parents=True, exist_ok=True)
    if fmt == "asvspoof":
        counts = asvspoof.write_asvspoof(table, out, link)
    elif fmt == "lhotse":
        counts = lhotse_set.write_lhotse(table, out, link)
    else:
        counts = hf.write_hf(table, out, int(table["sample_rate"].mode().iloc[0]))
    write_map(table, out / MAP_NAME)
    return counts


def _inputs(paths: list[str | None]) -> dict[str, dict[str, str]]:
    from pipeline.handoff.card import file_sha256

    return {p: {"sha256": file_sha256(p)} for p in paths if p}


def export_model(model_dir: str | Path, metrics: str | Path | None, out: Path, link: str) -> dict[str, Any]:
    """Copy a model folder into the (new, empty) folder `out` with its card's test block filled from `metrics`
    (evaluate's metrics.json; None: the card keeps `not evaluated yet`); return what was written."""
    from pipeline.handoff.card import test_facts, write_card

    model_dir = Path(model_dir)
    config_file = model_dir / "config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    if "card" not in config:
        raise ExportError(f"--model {model_dir}: no model card in its config.json (a model folder written before "
                          "cards, or not a model folder): re-run the stage that wrote it")
    out.mkdir(parents=True, exist_ok=True)
    link_file(model_dir / "model.pt", out / "model.pt", link)
    if (model_dir / "metrics.json").is_file():
        shutil.copyfile(model_dir / "metrics.json", out / "metrics.json")
    if metrics is not None:
        config["card"]["test"] = test_facts(json.loads(Path(metrics).read_text()), metrics)
        shutil.copyfile(metrics, out / "test_metrics.json")
    write_json_atomic(config, out / "config.json")
    write_card(out, config)
    return {"model": str(model_dir), "test": config["card"]["test"].get("status")}


def run(args: Any, formats: tuple[str, ...], with_model: bool, link: str, bundle: bool) -> dict[str, Any]:
    """Build the export into a temp folder beside --out and swap it in; return EXPORT.json's content.

    `bundle` (the stage): every format in OUT/<format>/ and the model in OUT/model/; else OUT is the one format's
    folder or the model's."""
    tables = read_tables(args.manifest, args.dev, args.eval or []) if formats else {}
    table = partition_table(tables) if formats else None
    audio = table["path"].astype(str).tolist() if table is not None else []
    model_files = [str(Path(args.model) / f) for f in MODEL_FILES] if with_model else []
    tables_in = [p for p in [args.manifest, args.dev, *(args.eval or [])] if p] if formats else []
    model_in = [p for p in [*model_files[:1], args.metrics] if p] if with_model else []
    out = check_out(args.out, [*tables_in, *audio, *model_files, *([args.metrics] if args.metrics else [])])
    summary: dict[str, Any] = {"hardset_export": 1, "formats": list(formats), "model": with_model, "link": link,
                               "inputs": _inputs([*tables_in, *model_in])}
    with stage_timer(log, "export") as stats, atomic_dir(out) as tmp:
        for fmt in formats:
            summary[fmt] = write_format(table, fmt, tmp / fmt if bundle else tmp, link)
        if table is not None:
            summary["clips"] = {f"{part}_{label}": int(n)
                                for (part, label), n in table.groupby(["partition", "label"]).size().items()}
            stats.add("clips", len(table) * len(formats))
        if with_model:
            summary["model_export"] = export_model(args.model, args.metrics, tmp / "model" if bundle else tmp, link)
        if not formats and not with_model:
            summary["note"] = "nothing exported: params export.formats is [] and export.model false"
        write_json_atomic(summary, tmp / MARKER)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("export", "curated subsets in asvspoof / lhotse / hf formats; a model folder with its card")
    parser.add_argument("--manifest", help="the train partition's clip table (e.g. data/manifests/train.parquet)")
    parser.add_argument("--dev", help="the dev partition's clip table (e.g. data/manifests/dev.parquet)")
    parser.add_argument("--eval", nargs="+", help="clip tables whose test / eval:* rows are the eval partition")
    parser.add_argument("--format", choices=FORMATS, help="the data format (not with --from-params)")
    parser.add_argument("--link", choices=LINKS, default=None, help="audio and model.pt: hard (default), symlink, copy")
    parser.add_argument("--model", help="a model folder (train, pretrain or import_model output) to hand off")
    parser.add_argument("--metrics", help="evaluate's metrics.json for the model card's test EERs")
    parser.add_argument("--from-params", action="store_true", help="the DVC stage: params export.formats/link/model")
    parser.add_argument("--out", required=True, help="the export folder (never inside data/)")
    args = parser.parse_args(argv)
    from pipeline.logs import setup_logging

    setup_logging()
    try:
        if args.from_params:
            if args.format or args.link:
                raise ExportError("--from-params takes the formats and the link mode from params export")
            p = ExportParams.from_params(section(load_params(args.params), "export"))
            formats, with_model, link, bundle = p.formats, p.model, p.link, True
        else:
            formats, with_model, link, bundle = _command_mode(args)
        summary = run(args, formats, with_model, link, bundle)
    except (ExportError, SchemaError, FileNotFoundError) as exc:
        print(f"export: error: {exc}", file=sys.stderr)
        return 2
    log.info("export -> %s: formats %s, model %s", args.out, summary["formats"] or "none", summary["model"])
    return 0


def _command_mode(args: Any) -> tuple[tuple[str, ...], bool, str, bool]:
    """(formats, with_model, link, bundle) of a command line without --from-params; ExportError when unclear."""
    if bool(args.format) == bool(args.model):
        raise ExportError("give --format (with --manifest / --dev / --eval) or --model, one of the two")
    if args.format and not (args.manifest or args.dev or args.eval):
        raise ExportError("--format needs a table: --manifest, --dev or --eval")
    if args.metrics and not args.model:
        raise ExportError("--metrics completes a model card: give --model")
    return ((args.format,) if args.format else ()), bool(args.model), args.link or "hard", False
