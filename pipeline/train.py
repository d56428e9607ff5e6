"""Stage `train`: train the final (small) detector on the sampled manifest, early-stopped on dev EER.

Reads data/manifests/train.parquet (the manifest `sample.method` chose) and data/manifests/dev.parquet,
and the audio they point to. Writes data/models/detector/: model.pt (the best checkpoint, with the
resolved params inside), config.json (the same resolved params), metrics.json (dev EER, epochs,
steps; the run time is logged, not written, so a re-run gives the same bytes) and dvclive/ (per-epoch curves).

Objectives (`train.objective`, formulas in pipeline/detector/losses.py):
- `ce` / `bce` / `racl`: one stage, the whole net trained end to end; dev EER from the logits.
- `supcon`: two stages, as in Sudan et al. 2026. Stage 1 trains the encoder with SupCon (+ the
  warm-started negative queue) on the penultimate embedding; its dev EER is measured with a
  nearest-class-mean score, cos(z, mean_bonafide) - cos(z, mean_spoof), the means taken over the
  epoch's training embeddings. Stage 2 freezes the encoder (eval mode, so batch-norm statistics are
  frozen too) and trains the linear classifier with CE for `supcon.head_epochs`.

The epoch loop, best state, early stopping, dvclive and checkpoints are pipeline/detector/loop.py's; this
module supplies the per-batch step and the dev evaluation of each phase (dev scoring: pipeline/detector/inference.py).
Batches are class-balanced (drawn with replacement), `steps_per_epoch` of them per epoch, so a run's
cost is bounded by epochs x steps_per_epoch x batch_size crops whatever the manifest size.
`exclude_paradigms` drops those spoof paradigms from the manifest: `dvc exp run -S
'train.exclude_paradigms=[codec]'` is a leave-one-paradigm-out run (evaluate marks P as unseen).
`init: DIR` fine-tunes a pretrained detector (an import_model or train output) instead of training from
scratch; `init_mode` all | backend (the front part frozen). Rules: pipeline/detector/finetune.py.
"""

from __future__ import annotations

import logging
from dataclasses import InitVar, asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from pipeline.chain import chain_from_params
from pipeline.detector.augment import AugmentParams, make_augmenter, require_channels
from pipeline.detector.batches import ClipDataset, PairedSampler, balanced_sampler, parent_indices
from pipeline.detector.class_means import ClassMeans, init_head_from_means, ncm_scores
from pipeline.detector.finetune import InitParams, load_init
from pipeline.detector.inference import load_waves, score_waves
from pipeline.detector.loop import EpochResult, Phase, RunState, fit, live_log
from pipeline.detector.losses import CrossEntropyLoss, RACLParams, SupConParams, build_loss
from pipeline.handoff.card import build_card, data_facts, init_facts, write_card
from pipeline.handoff.licences import data_licences
from pipeline.io import StagedDir, write_json_atomic
from pipeline.logs import StageError, log_some, stage_timer
from pipeline.metrics import compute_eer
from pipeline.models import DEFAULT_EVAL_S, build_model, check_config, checkpointer
from pipeline.params import (
    ConfigError,
    Section,
    all_of,
    as_list,
    flag,
    mapping,
    number,
    one_of,
    roles_from_params,
    section,
    seed_value,
    stage_parser,
    stage_seed,
    start_stage,
)
from pipeline.runtime.devices import setup_torch
from pipeline.schema import PARADIGMS, groups_of, read_clips

log = logging.getLogger("pipeline.train")

OBJECTIVES = ("ce", "bce", "supcon", "racl")


@dataclass(frozen=True)
class TrainParams(Section):
    """The `train` section of params.yaml."""

    NAME: ClassVar[str] = "train"

    arch: str | None = "resnet"   # null only with init: follow the init model's architecture
    width: int = 8
    embedding_dim: int = 64
    frontend: str = "logmel"
    objective: str = "ce"
    epochs: int = 8
    steps_per_epoch: int = 40
    batch_size: int = 32
    crop_s: float = 2.0
    eval_s: float = 4.0
    lr: float = 0.001
    weight_decay: float = 0.0001
    patience: int = 3
    dev_max_clips: int = 400
    exclude_paradigms: tuple[str, ...] = ()
    model: dict[str, Any] = field(default_factory=dict)
    supcon: dict[str, Any] = field(default_factory=dict)
    racl: dict[str, Any] = field(default_factory=dict)
    augment: AugmentParams = field(default_factory=AugmentParams)  # training crops only (pipeline/detector/augment.py)
    seed: int | None = None   # null = the global seed
    init: str | None = None   # a model dir to start from (null = from scratch); pipeline/detector/finetune.py
    init_mode: str = "all"    # all | backend (front part frozen)
    pair_batches: bool = False  # batches hold clips with their parent / fakes (detector.batches.PairedSampler)
    sample_rate: InitVar[int | None] = None  # audio.sample_rate: checks the model config and augment's codecs

    def __post_init__(self, sample_rate: int | None) -> None:
        object.__setattr__(self, "_sample_rate", sample_rate)

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        kw["exclude_paradigms"] = tuple(as_list("train.exclude_paradigms", kw.get("exclude_paradigms")))
        kw["augment"] = AugmentParams.from_params(kw.get("augment"), where="train.augment",
                                                  sample_rate=kw.get("sample_rate"))
        for key in ("model", "supcon", "racl"):
            kw[key] = mapping(f"train.{key}", kw.get(key))
        return kw

    def check(self) -> None:
        """Values, the model keys and the loss blocks' keys (a typo must not go silently)."""
        one_of("train.objective", self.objective, OBJECTIVES)
        for name in ("epochs", "steps_per_epoch", "patience"):
            number(f"train.{name}", getattr(self, name), low=1, integer=True)
        if number("train.batch_size", self.batch_size, integer=True) < 2:
            raise ConfigError("params train.batch_size: must be at least 2 (batch norm, contrastive pairs)")
        for name in ("crop_s", "eval_s", "lr"):
            number(f"train.{name}", getattr(self, name), low=0, low_open=True)
        number("train.weight_decay", self.weight_decay, low=0)
        number("train.dev_max_clips", self.dev_max_clips, low=1, integer=True)
        seed_value("train.seed", self.seed, allow_none=True)
        InitParams.from_params({"init": self.init, "init_mode": self.init_mode}, where="train")
        flag("train.pair_batches", self.pair_batches)
        if self.pair_batches and self.batch_size % 2:
            raise ConfigError(f"params train.batch_size: paired batches need an even size, got {self.batch_size}")
        all_of("train.exclude_paradigms", list(self.exclude_paradigms), [x for x in PARADIGMS if x != "bonafide"])
        SupConParams.from_params(self.supcon)   # the loss blocks are kept as given (recorded with the model)
        RACLParams.from_params(self.racl)
        if self.objective == "supcon" and int(self.supcon.get("head_epochs", 3)) <= 0:
            raise ConfigError("params train.supcon.head_epochs: must be positive (stage 2 trains the classifier)")
        repeated = sorted(set(self.model) & {"arch", "width", "embedding_dim", "frontend", "sample_rate"})
        if repeated:
            raise ConfigError(f"params train.model: {repeated} are set by train.<key> (or audio), not in train.model")
        if self.arch is None and self.init is None:
            raise ConfigError("params train.arch: null (follow the init model) needs train.init")
        if self.init is None:  # with init the model config is the init model's (checked when it loads)
            check_config(self.model_config(self._sample_rate or 16000), "train.model")

    def model_config(self, sample_rate: int) -> dict[str, Any]:
        """The config dict for pipeline.models.build_model."""
        return {**self.model, "arch": self.arch, "width": self.width, "embedding_dim": self.embedding_dim,
                "frontend": self.frontend, "sample_rate": int(sample_rate)}


def select_training_rows(manifest: pd.DataFrame, exclude_paradigms: tuple[str, ...]) -> pd.DataFrame:
    """Manifest rows used for training: split train, minus spoofs of the excluded paradigms."""
    rows = manifest[manifest["split"] == "train"]
    if len(rows) < len(manifest):
        log.info("manifest: %d of %d rows have split train; the rest is not trained on", len(rows), len(manifest))
    if exclude_paradigms:
        drop = (rows["label"] == "spoof") & rows["paradigm"].isin(list(exclude_paradigms))
        log.info("leave-out: dropping %d spoof rows of paradigms %s", int(drop.sum()), list(exclude_paradigms))
        rows = rows[~drop.to_numpy()]
    counts = rows["label"].value_counts()
    for label in ("bonafide", "spoof"):
        if counts.get(label, 0) == 0:
            raise StageError(f"training manifest has no {label} rows (after exclude_paradigms): nothing to learn")
    return rows.reset_index(drop=True)


def select_dev_rows(dev: pd.DataFrame, max_clips: int, seed: int) -> pd.DataFrame:
    """A fixed, class-stratified subset of at most `max_clips` dev rows (the same every epoch)."""
    if max_clips <= 0 or len(dev) <= max_clips:
        return dev.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    parts = []
    for _, group in dev.groupby("label", sort=True):
        k = max(1, round(max_clips * len(group) / len(dev)))
        parts.append(group.iloc[np.sort(rng.choice(len(group), size=min(k, len(group)), replace=False))])
    return pd.concat(parts).reset_index(drop=True)


def dev_eer(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(EER, threshold) of dev scores (labels: 1 = bona fide): the threshold is what `score --threshold dev` uses."""
    return compute_eer(scores[labels == 1], scores[labels == 0])


def _batches(ds: ClipDataset, p: TrainParams, seed: int, epoch: int, parents: np.ndarray | None = None) -> DataLoader:
    ds.set_epoch(epoch)
    n = p.steps_per_epoch * p.batch_size
    sampler = (balanced_sampler(ds.labels, num_samples=n, seed=seed + 1000 * epoch) if parents is None else
               PairedSampler(ds.labels, parents, n, p.batch_size, seed=seed + 1000 * epoch))
    return DataLoader(ds, batch_size=p.batch_size, sampler=sampler, num_workers=0, drop_last=True)


class ObjectiveStep:
    """train's per-batch step: batch -> loss for `objective`; supcon also keeps the epoch's class means.

    `class_means` (pipeline.detector.class_means.ClassMeans) collects the penultimate embeddings of the epoch's batches;
    `reset()` starts a new epoch.
    """

    def __init__(self, model: torch.nn.Module, loss: torch.nn.Module, objective: str, device: torch.device) -> None:
        self.model, self.loss, self.objective, self.device = model, loss, objective, device
        self.class_means = ClassMeans()

    def reset(self) -> None:
        self.class_means = ClassMeans()

    def __call__(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        wave, y = batch[0].to(self.device), batch[1].to(self.device)
        logits, feats = self.model.forward_with_features(wave)
        if self.objective == "supcon":
            pen = feats["penultimate"]
            loss = self.loss(pen, y)
            self.class_means.add(pen.detach().float().cpu().numpy(), y.cpu().numpy())
            return loss
        if self.objective == "racl":
            return self.loss({**feats, "logits": logits}, y)
        return self.loss(logits, y)


def run(train_rows: pd.DataFrame, dev_rows: pd.DataFrame, p: TrainParams, *, sample_rate: int, seed: int,
        device: torch.device, save=None, live=None,
        model: torch.nn.Module | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train a detector; return (the best model, summary). `save(model)` writes a checkpoint at each improvement.

    `model`: the student to start from (train.init, pipeline.detector.finetune.load_init); None = built from scratch.
    """
    model = (build_model(p.model_config(sample_rate)) if model is None else model).to(device)
    _, dev_waves, dev_labels, rejects = load_waves(dev_rows, sample_rate, p.eval_s, stage="train")
    log_some(log, [(r["clip_id"], r["reason"]) for r in rejects], "dev clip skipped")
    if (dev_labels == 1).sum() == 0 or (dev_labels == 0).sum() == 0:
        raise StageError("dev set needs bona fide and spoof clips for an EER")
    ds = ClipDataset(train_rows, sample_rate, p.crop_s, train=True, seed=seed,
                     augment=make_augmenter(p.augment, sample_rate))
    parents = parent_indices(train_rows) if p.pair_batches else None
    if parents is not None:
        log.info("paired batches: %d (parent, fake) pairs in the manifest", int(((parents >= 0)).sum()))
    two_stage = p.objective == "supcon"
    loss = build_loss(p.objective, {"supcon": p.supcon, "racl": p.racl}).to(device)
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=p.lr, weight_decay=p.weight_decay)
    state = RunState(model=model, optimizer=opt)
    step = ObjectiveStep(model, loss, p.objective, device)
    means_at: dict[int, dict[str, np.ndarray]] = {}

    def batches(epoch: int) -> DataLoader:
        step.reset()
        loss.train()
        return _batches(ds, p, seed, epoch, parents)

    def evaluate(epoch: int, losses: list[float]) -> EpochResult:
        scores, embs = score_waves(model, dev_waves, 2 * p.batch_size, device, embeddings=two_stage)
        if two_stage:  # the head is untrained: score by the nearest class mean of the training embeddings
            means_at[epoch] = step.class_means.means()
            scores = ncm_scores(embs, means_at[epoch]["normed"])
        eer, threshold = dev_eer(scores, dev_labels)
        return _epoch_result(state, loss, {"train/loss": _mean(losses), "dev/eer": eer}, epoch, threshold)

    fit(state, Phase("train", p.epochs, batches, step, evaluate, patience=p.patience,
                     checkpoint=None if two_stage else save), live)
    encoder_eer = state.best_key
    if two_stage:
        fit(state, _head_phase(state, ds, dev_waves, dev_labels, p, seed, device, save, means_at[state.best_epoch]),
            live)
        for param in model.parameters():
            param.requires_grad_(True)
    best = next(r for r in state.history if r["epoch"] == state.best_epoch)
    summary = {"dev_eer": float(state.best_key), "dev_threshold": float(best["dev_threshold"]),
               "best_epoch": int(state.best_epoch), "epochs": int(state.epoch),
               "steps": int(state.step),
               "n_train": int(len(train_rows)), "n_dev": int(len(dev_labels)), "objective": p.objective}
    if two_stage:
        summary["dev_eer_encoder_ncm"] = float(encoder_eer)
    return model.eval(), summary


def _head_phase(state: RunState, ds: ClipDataset, dev_waves: torch.Tensor, dev_labels: np.ndarray, p: TrainParams,
                seed: int, device: torch.device, save, means: dict[str, np.ndarray]) -> Phase:
    """SupCon stage 2 on the best encoder (already loaded): freeze it, warm-start the head, train it with CE."""
    model = state.model
    init_head_from_means(model.classifier, means["raw"], means["normed"])
    for param in model.parameters():
        param.requires_grad_(False)
    for param in model.classifier.parameters():
        param.requires_grad_(True)
    head_lr = float(p.supcon.get("head_lr", 10 * p.lr))
    state.optimizer = torch.optim.AdamW(model.classifier.parameters(), lr=head_lr, weight_decay=p.weight_decay)
    loss = CrossEntropyLoss()

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            pen = model.forward_with_features(batch[0].to(device))[1]["penultimate"]
        return loss(model.classifier(pen), batch[1].to(device))

    def evaluate(epoch: int, losses: list[float]) -> EpochResult:
        scores, _ = score_waves(model, dev_waves, 2 * p.batch_size, device)
        eer, threshold = dev_eer(scores, dev_labels)
        return _epoch_result(state, loss, {"head/loss": _mean(losses), "dev/eer": eer}, epoch, threshold)

    return Phase("head", int(p.supcon.get("head_epochs", 3)), lambda epoch: _batches(ds, p, seed, epoch), step,
                 evaluate, patience=p.patience, train_mode=False, checkpoint=save)


def _epoch_result(state: RunState, loss: torch.nn.Module, metrics: dict[str, float], epoch: int,
                  threshold: float) -> EpochResult:
    """Dev EER as the key; the metrics plus the loss's last named terms are logged; the history row keeps the
    dev-EER threshold (the best epoch's goes to the model folder)."""
    extra = {k: float(v) for k, v in (getattr(loss, "terms", {}) or {}).items()}
    return EpochResult(metrics["dev/eer"], {**{k: float(v) for k, v in metrics.items()}, **extra},
                       {**metrics, **extra, "epoch": epoch, "steps": state.step, "dev_threshold": float(threshold)})


def _mean(losses: list[float]) -> float:
    """Mean of the step losses, summed in step order."""
    total = 0.0
    for x in losses:
        total += x
    return total / max(len(losses), 1)


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("train", "train the detector on a manifest, early-stopped on dev EER")
    parser.add_argument("--manifest", required=True, help="training manifest (clip table + manifest columns)")
    parser.add_argument("--dev", required=True, help="dev clip table (early stopping)")
    parser.add_argument("--out", required=True, help="output directory (model.pt, config.json, metrics.json)")
    args, params, common = start_stage(parser, argv)
    sample_rate = common.sample_rate
    p = TrainParams.from_params(section(params, "train"), sample_rate=sample_rate)
    if p.augment.enabled and p.augment.codec_prob > 0:
        require_channels("train.augment.codec_systems", p.augment.codec_systems, roles_from_params(params))
    seed = stage_seed("train.seed", p.seed, common)
    device = setup_torch(replace(common, seed=seed))

    manifest = read_clips(args.manifest, stage="train", groups=groups_of(args.manifest))
    train_rows = select_training_rows(manifest, p.exclude_paradigms)
    dev = read_clips(args.dev, stage="train", groups=groups_of(args.dev))
    # A held-out paradigm must not steer early stopping either.
    dev = dev[~((dev["label"] == "spoof") & dev["paradigm"].isin(list(p.exclude_paradigms))).to_numpy()]
    dev_rows = select_dev_rows(dev, p.dev_max_clips, seed)
    chain = chain_from_params(params, sample_rate).to_dict()  # what `score` applies to raw inputs
    start, carried = None, {}
    if p.init is not None:  # config errors (a bad init dir, another arch) before anything is written
        start, carried = load_init(p.init, p.init_mode, p.arch, sample_rate, chain)
    staged = StagedDir(args.out, marker="model.pt")  # swapped in at the end: a failed run leaves the old model whole
    out = staged.path
    # the effective seed is recorded once, top level (train.seed null or equal: the same config as before);
    # init keys only when an init is given (from scratch: the same config as before)
    train_cfg = {k: v for k, v in asdict(p).items() if k != "seed" and (p.init or k not in ("init", "init_mode"))}
    resolved = {"train": {**train_cfg, "exclude_paradigms": list(p.exclude_paradigms)}, "seed": seed,
                "sample_rate": sample_rate, "manifest": str(args.manifest),
                "train_paradigms": sorted(train_rows.loc[train_rows["label"] == "spoof", "paradigm"].unique()),
                "train_systems": sorted(train_rows.loc[train_rows["label"] == "spoof", "system"].unique()),
                "chain": chain, **carried}

    save = checkpointer(out / "model.pt", resolved)
    live_params = {"objective": p.objective, "arch": p.arch if start is None else start.arch,
                   "width": p.width, "n_train": len(train_rows)}
    with live_log(out / "dvclive", live_params) as live, stage_timer(log, "train", unit_key="steps") as stats:
        model, summary = run(train_rows, dev_rows, p, sample_rate=sample_rate, seed=seed, device=device,
                             save=save, live=live, model=start)
        stats.add("steps", summary["steps"])
        stats.add("epochs", summary["epochs"])
    # the best state again (also covers a run whose first epoch was already the best), now with its dev threshold
    resolved["dev"] = {"eer": summary["dev_eer"], "threshold": summary["dev_threshold"], "n_clips": summary["n_dev"]}
    save(model)
    used = pd.concat([train_rows, dev_rows], ignore_index=True)
    card = build_card("fine-tuned detector" if p.init else "detector", Path(args.out).name, model,
                      data=data_facts(used, {"manifest": args.manifest, "dev": args.dev}),
                      params={"train": resolved["train"], "seed": seed}, preprocessing=chain,
                      licences=data_licences(used), init=init_facts(carried.get("init")),
                      eval_s=float(resolved.get("eval_s", DEFAULT_EVAL_S)))
    config = {**resolved, "model": dict(model.config), "card": card}
    write_json_atomic(config, out / "config.json")
    write_card(out, config)
    write_json_atomic(summary, out / "metrics.json")
    staged.commit()
    log.info("dev EER %.2f%% (best epoch %d of %d)", 100 * summary["dev_eer"], summary["best_epoch"],
             summary["epochs"])
    return 0

