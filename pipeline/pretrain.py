"""Stage pretrain@T: train teacher detector T on its own pool (or adopt a given checkpoint).

Reads the clip tables (data/clips.parquet + data/recon/*.parquet) and the audio they point to,
params `teachers.<T>` (arch, frontend, pool, checkpoint, optional model keys such as width),
`pretrain`, `audio`, `runtime` and `seed`.
Writes data/teachers/<T>/: model.pt (the best dev-EER epoch), config.json (model config, pool,
training params, counts), metrics.json ({"dev_eer": ..., "history": ..., ...}; no timings) and dvclive/
(per-epoch train/loss, dev/loss, dev/eer; dvcyaml=False, so DVC sees only this stage's outs).

The teacher is trained on the pool's train split with class-balanced sampling (or a class-weighted
loss: bona fide is the minority), random crops of `crop_s` seconds; the dev split (first `eval_s`
seconds, tiled when short) gives the dev EER used for the best checkpoint and early stopping.
The loop (best epoch, early stopping, dvclive) is pipeline/detector/loop.py's; this module supplies the
step and the dev evaluation (pipeline/detector/inference.py). With `checkpoint: <path>` in the teacher's params
nothing is trained: the checkpoint is checked against the teacher's architecture and front end,
copied, and evaluated on the dev split.
These teachers are the neural-collapse paper's "pretrained models trained on distinct data sets"
(Yousif et al. 2024): one per pool, each embedding its own pool for the sample stage.
"""

from __future__ import annotations

import logging
import math
from dataclasses import InitVar, asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, RandomSampler

from pipeline.chain import chain_from_params
from pipeline.detector.augment import AugmentParams, make_augmenter, require_channels
from pipeline.detector.batches import (
    ClipDataset,
    PairedSampler,
    balanced_sampler,
    check_pool,
    class_weights,
    label_indices,
    parent_indices,
    select_pool,
)
from pipeline.detector.inference import score_clips
from pipeline.detector.loop import EpochResult, Phase, RunState, fit, live_log
from pipeline.handoff.card import build_card, data_facts, init_facts, write_card
from pipeline.handoff.licences import data_licences
from pipeline.io import StagedDir, write_json_atomic
from pipeline.logs import StageError, stage_timer
from pipeline.metrics import compute_eer
from pipeline.models import Detector, build_model, check_config, load_checkpoint, save_checkpoint
from pipeline.params import (
    ConfigError,
    Section,
    TeacherParams,
    flag,
    number,
    one_of,
    roles_from_params,
    section,
    stage_parser,
    start_stage,
    teacher_params,
)
from pipeline.runtime.devices import setup_torch
from pipeline.schema import read_clip_tables

log = logging.getLogger("pipeline.pretrain")

BALANCE_MODES = ("sampler", "weight", "none")


@dataclass(frozen=True)
class PretrainParams(Section):
    """The `pretrain` params section."""

    NAME: ClassVar[str] = "pretrain"

    epochs: int = 6
    batch_size: int = 32
    crop_s: float = 4.0
    eval_s: float = 4.0
    lr: float = 1e-3
    weight_decay: float = 1e-4
    balance: str = "sampler"            # sampler | weight | none
    patience: int = 3                   # epochs without a better dev EER before stopping (0 = never stop)
    max_steps_per_epoch: int | None = None
    eval_batch_size: int = 64
    num_workers: int = 0
    live: bool = True                   # dvclive log under <out>/dvclive
    augment: AugmentParams = field(default_factory=AugmentParams)  # training crops only (pipeline/detector/augment.py)
    pair_batches: bool = False          # batches hold clips with their parent / fakes (detector.batches.PairedSampler)
    sample_rate: InitVar[int | None] = None  # audio.sample_rate: augment's codecs are checked at it

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        return {**kw, "augment": AugmentParams.from_params(kw.get("augment"), where="pretrain.augment",
                                                           sample_rate=kw.get("sample_rate"))}

    def check(self) -> None:
        one_of("pretrain.balance", self.balance, BALANCE_MODES)
        for key in ("epochs", "batch_size", "eval_batch_size"):
            number(f"pretrain.{key}", getattr(self, key), low=1, integer=True)
        for key in ("crop_s", "eval_s", "lr"):
            number(f"pretrain.{key}", getattr(self, key), low=0, low_open=True)
        number("pretrain.weight_decay", self.weight_decay, low=0)
        number("pretrain.patience", self.patience, low=0, integer=True)
        number("pretrain.num_workers", self.num_workers, low=0, integer=True)
        number("pretrain.max_steps_per_epoch", self.max_steps_per_epoch, low=1, integer=True, allow_none=True)
        flag("pretrain.pair_batches", self.pair_batches)
        flag("pretrain.live", self.live)
        if self.pair_batches and self.batch_size % 2:
            raise ConfigError(f"params pretrain.batch_size: paired batches need an even size, got {self.batch_size}")


def split_pool(pool: pd.DataFrame, name: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, dev) rows of teacher `name`'s pool; a one-line StageError when train lacks a class (an empty pool,
    a corpus of one class)."""
    train = pool[pool["split"] == "train"].reset_index(drop=True)
    dev = pool[pool["split"] == "dev"].reset_index(drop=True)
    missing = [c for c in ("bonafide", "spoof") if not (train["label"] == c).any()]
    if missing:
        raise StageError(f"teacher {name}: the pool's train split has no {' or '.join(missing)} clips ({len(pool)} "
                         f"clips in the pool, {len(train)} in train): check teachers.{name}.pool and the corpus labels")
    return train, dev


def dev_eer(model: Detector, dev: pd.DataFrame, p: PretrainParams, sample_rate: int,
            device: torch.device) -> dict[str, float | None]:
    """Dev EER, threshold and loss (None when the dev split lacks a class)."""
    if dev.empty:
        return {"dev_eer": None, "dev_threshold": None, "dev_loss": None}
    s = score_clips(model, dev, p.eval_batch_size, sample_rate, p.eval_s, device, stage="pretrain")
    bona, spoof = s.scores[s.labels == 1], s.scores[s.labels == 0]
    if not len(bona) or not len(spoof):
        return {"dev_eer": None, "dev_threshold": None, "dev_loss": _finite(s.loss)}
    eer, thr = compute_eer(bona, spoof)
    return {"dev_eer": eer, "dev_threshold": thr, "dev_loss": _finite(s.loss)}


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _loader(train: pd.DataFrame, p: PretrainParams, sample_rate: int, seed: int) -> tuple[ClipDataset, DataLoader]:
    augment = make_augmenter(p.augment, sample_rate)
    ds = ClipDataset(train, sample_rate, p.crop_s, train=True, seed=seed, augment=augment)
    n = len(ds)
    if p.max_steps_per_epoch:
        n = min(n, p.max_steps_per_epoch * p.batch_size)
    gen = torch.Generator().manual_seed(seed)
    if p.pair_batches:
        sampler = PairedSampler(ds.labels, parent_indices(train), n, p.batch_size, seed=seed)
    elif p.balance == "sampler":
        sampler = balanced_sampler(ds.labels, num_samples=n, seed=seed)
    else:
        sampler = RandomSampler(ds, replacement=False, num_samples=n, generator=gen)
    # Full batches only (batch norm cannot train on a last batch of one), unless one batch is all there is.
    loader = DataLoader(ds, batch_size=p.batch_size, sampler=sampler, num_workers=p.num_workers,
                        drop_last=n > p.batch_size)
    return ds, loader


def train_teacher(model: Detector, train: pd.DataFrame, dev: pd.DataFrame, p: PretrainParams, sample_rate: int,
                  seed: int, device: torch.device, live: Any = None) -> tuple[Detector, dict[str, Any]]:
    """Train on `train`, keep the best dev-EER epoch; return (best model, metrics)."""
    model = model.to(device)
    ds, loader = _loader(train, p, sample_rate, seed)
    weight = class_weights(ds.labels).to(device) if p.balance == "weight" else None
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    total = max(1, p.epochs * len(loader))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=p.lr, total_steps=total, pct_start=0.1)
    state = RunState(model=model, optimizer=opt, scheduler=sched)

    def batches(epoch: int) -> DataLoader:
        ds.set_epoch(epoch)
        return loader

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        wave, y = batch[0].to(device), batch[1].to(device)
        return torch.nn.functional.cross_entropy(model(wave), y, weight=weight)

    def evaluate(epoch: int, losses: list[float]) -> EpochResult:
        dev_m = dev_eer(model, dev, p, sample_rate, device)
        train_loss = float(np.mean(losses))
        # Best = lowest dev EER, then lowest dev loss; with no usable dev split, lowest train loss.
        key = (dev_m["dev_eer"] if dev_m["dev_eer"] is not None else math.inf,
               dev_m["dev_loss"] if dev_m["dev_loss"] is not None else train_loss)
        return EpochResult(key, {"train/loss": train_loss, "dev/loss": dev_m["dev_loss"], "dev/eer": dev_m["dev_eer"]},
                           {"epoch": epoch + 1, "train_loss": train_loss, **dev_m})

    fit(state, Phase("pretrain", p.epochs, batches, step, evaluate, patience=p.patience), live)
    model.eval()
    history = state.history
    best = history[state.best_epoch]
    # The first steps include allocator warm-up: the median step time is logged (not written: a DVC output
    # must give the same bytes on every re-run).
    if state.step_times:
        log.info("median step %.3f s (batch %d x %.1f s crops)", float(np.median(state.step_times)), p.batch_size,
                 p.crop_s)
    metrics = {
        "dev_eer": best["dev_eer"], "dev_threshold": best["dev_threshold"], "dev_loss": best["dev_loss"],
        "best_epoch": state.best_epoch + 1, "epochs_run": len(history), "steps": state.step,
        "first_epoch_loss": history[0]["train_loss"], "final_epoch_loss": history[-1]["train_loss"],
        "batch_size": p.batch_size,
        "crop_s": p.crop_s, "history": history,
    }
    return model, metrics


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _counts(train: pd.DataFrame, dev: pd.DataFrame) -> dict[str, int]:
    return {"n_train": len(train), "n_dev": len(dev),
            "n_train_bonafide": int((label_indices(train["label"]) == 1).sum()),
            "n_train_spoof": int((label_indices(train["label"]) == 0).sum())}


def adopt_checkpoint(path: str | Path, teacher: TeacherParams) -> Detector:
    """Load a given teacher checkpoint, checking its architecture and front end against the params."""
    model, config = load_checkpoint(path, expected_arch=teacher.arch)
    want = teacher.model.get("frontend")
    if want is not None and config.get("frontend") != want:
        raise StageError(f"checkpoint {path} uses front end {config.get('frontend')!r}, but the teacher's params "
                         f"say {want!r}: fix `frontend` or `checkpoint`")
    return model


def run(name: str, clips: pd.DataFrame, teacher: TeacherParams, p: PretrainParams, sample_rate: int, seed: int,
        out_dir: str | Path, device: torch.device, chain: dict[str, Any] | None = None,
        inputs: list[str] | None = None) -> dict[str, Any]:
    """Train (or adopt) teacher `name` on its pool of `clips`; write model.pt, config.json, metrics.json and the
    model card (MODEL_CARD.md; `inputs`: the clip-table files, recorded with their sha256).

    `chain` (pipeline.chain.Chain.to_dict(), prepare's preprocessing) is recorded for a trained teacher;
    an adopted checkpoint keeps the chain it records, if any (its training audio is not ours).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pool = select_pool(clips, teacher.pool)
    train, dev = split_pool(pool, name)
    log.info("teacher %s: pool %d clips (train %d, dev %d)", name, len(pool), len(train), len(dev))
    if teacher.checkpoint:
        model = adopt_checkpoint(teacher.checkpoint, teacher).to(device)
        chain = load_checkpoint(teacher.checkpoint)[1].get("chain")
        metrics = {"source": "checkpoint", "checkpoint": str(teacher.checkpoint),
                   **dev_eer(model, dev, p, sample_rate, device)}
    else:
        model = build_model(teacher.model_config(sample_rate))
        with live_log(out_dir / "dvclive", {"teacher": name, **model.config, **asdict(p)}, enabled=p.live) as live:
            model, metrics = train_teacher(model, train, dev, p, sample_rate, seed, device, live)
        metrics = {"source": "trained", **metrics}
    metrics.update(_counts(train, dev))   # no run time here: it is logged, and would change the output every run
    recorded = {"chain": chain} if chain is not None else {}
    dev_facts = {"eer": metrics["dev_eer"], "threshold": metrics["dev_threshold"], "n_clips": len(dev)}
    save_checkpoint(model, {"teacher": name, **recorded, "dev": dev_facts}, out_dir / "model.pt")
    config = {"teacher": name, "model": model.config, "pool": teacher.pool, "checkpoint": teacher.checkpoint,
              "pretrain": asdict(p), "seed": seed, **recorded, "dev": dev_facts}
    used = pd.concat([train, dev], ignore_index=True)
    adopted = init_facts({"dir": str(_model_dir(teacher.checkpoint)), "mode": "adopted as it is"}
                         if teacher.checkpoint else None)
    config["card"] = build_card(
        "adopted teacher" if teacher.checkpoint else "teacher", name, model, init=adopted,
        data=data_facts(used, {f"clip table {i + 1}": path for i, path in enumerate(inputs or [])}),
        params={"teachers": {name: {"pool": teacher.pool, **teacher.model}}, "pretrain": asdict(p), "seed": seed},
        preprocessing=chain, licences=data_licences(used), eval_s=p.eval_s,
        limits=("A teacher embeds its own pool for the sample stage; it was trained and evaluated on that pool "
                "only.",))
    write_json_atomic(config, out_dir / "config.json")
    write_card(out_dir, config)
    write_json_atomic(metrics, out_dir / "metrics.json")
    return metrics


def _model_dir(checkpoint: str | Path) -> Path:
    """The folder of a checkpoint given as a folder or as its model.pt."""
    path = Path(checkpoint)
    return path if path.is_dir() else path.parent


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pretrain", "Train one teacher detector on its pool (or adopt its checkpoint).")
    parser.add_argument("teacher", help="teacher name, a key of params `teachers:`")
    parser.add_argument("--clips", nargs="+", required=True, help="clip tables (clips.parquet, recon/*.parquet)")
    parser.add_argument("--out", required=True, help="output directory, e.g. data/teachers/<T>")
    args, params, common = start_stage(parser, argv)
    seed, sample_rate = common.seed, common.sample_rate
    teacher = teacher_params(params, args.teacher)
    check_pool(teacher.pool, f"{teacher.where}.pool")
    check_config(teacher.model_config(sample_rate), teacher.where)
    p = PretrainParams.from_params(section(params, "pretrain"), sample_rate=sample_rate)
    if p.augment.enabled and p.augment.codec_prob > 0:
        require_channels("pretrain.augment.codec_systems", p.augment.codec_systems, roles_from_params(params))
    device = setup_torch(common)
    clips = read_clip_tables(args.clips, stage="pretrain")
    staged = StagedDir(args.out, marker="model.pt")  # swapped in at the end: a failed run leaves the old teacher
    with stage_timer(log, f"pretrain {args.teacher}") as stats:
        metrics = run(args.teacher, clips, teacher, p, sample_rate, seed, staged.path, device,
                      chain=chain_from_params(params, sample_rate).to_dict(), inputs=args.clips)
        stats.add("clips", int(metrics.get("steps", 0)) * p.batch_size)  # training examples seen
        stats.add("epochs", int(metrics.get("epochs_run", 0)))
    staged.commit()
    log.info("teacher %s: dev EER %s", args.teacher, _fmt(metrics["dev_eer"]))
    return 0
