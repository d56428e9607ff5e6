"""Stage `train`: train the final (small) detector on the sampled manifest, early-stopped on dev EER.

Reads data/manifests/train.parquet (the manifest `sample.method` chose) and data/manifests/dev.parquet,
and the audio they point to. Writes data/models/detector/: model.pt (the best checkpoint, with the
resolved params inside), config.json (the same resolved params), metrics.json (dev EER, epochs,
steps, seconds) and dvclive/ (per-epoch curves).

Objectives (`train.objective`, formulas in pipeline/losses.py):
- `ce` / `bce` / `racl`: one stage, the whole net trained end to end; dev EER from the logits.
- `supcon`: two stages, as in Sudan et al. 2026. Stage 1 trains the encoder with SupCon (+ the
  warm-started negative queue) on the penultimate embedding; its dev EER is measured with a
  nearest-class-mean score, cos(z, mean_bonafide) - cos(z, mean_spoof), the means taken over the
  epoch's training embeddings. Stage 2 freezes the encoder (eval mode, so batch-norm statistics are
  frozen too) and trains the linear classifier with CE for `supcon.head_epochs`.

Batches are class-balanced (drawn with replacement), `steps_per_epoch` of them per epoch, so a run's
cost is bounded by epochs x steps_per_epoch x batch_size crops whatever the manifest size.
`exclude_paradigms` drops those spoof paradigms from the manifest: `dvc exp run -S
'train.exclude_paradigms=[codec]'` is a leave-one-paradigm-out run (evaluate marks P as unseen).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from pipeline.clipdata import ClipDataset, balanced_sampler, iter_batches
from pipeline.io import write_json_atomic
from pipeline.logs import progress, setup_logging, stage_timer
from pipeline.losses import LOSS_KEYS, CrossEntropyLoss, build_loss
from pipeline.metrics import compute_eer
from pipeline.models import bonafide_score, build_model, check_config, save_checkpoint
from pipeline.params import (
    ConfigError,
    Section,
    all_of,
    as_list,
    check_known_keys,
    common_params,
    load_params,
    mapping,
    number,
    one_of,
    section,
    stage_parser,
)
from pipeline.schema import MANIFEST_COLUMNS, PARADIGMS, read_clips
from pipeline.torch_env import setup_torch

log = logging.getLogger("pipeline.train")

OBJECTIVES = ("ce", "bce", "supcon", "racl")


@dataclass(frozen=True)
class TrainParams(Section):
    """The `train` section of params.yaml."""

    NAME: ClassVar[str] = "train"

    arch: str = "resnet"
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

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        kw["exclude_paradigms"] = tuple(as_list("train.exclude_paradigms", kw.get("exclude_paradigms")))
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
        all_of("train.exclude_paradigms", list(self.exclude_paradigms), [x for x in PARADIGMS if x != "bonafide"])
        for key in ("supcon", "racl"):
            check_known_keys(f"train.{key}", getattr(self, key), LOSS_KEYS[key])
        if self.objective == "supcon" and int(self.supcon.get("head_epochs", 3)) <= 0:
            raise ConfigError("params train.supcon.head_epochs: must be positive (stage 2 trains the classifier)")
        repeated = sorted(set(self.model) & {"arch", "width", "embedding_dim", "frontend", "sample_rate"})
        if repeated:
            raise ConfigError(f"params train.model: {repeated} are set by train.<key> (or audio), not in train.model")
        check_config(self.model_config(16000), "train.model")

    def model_config(self, sample_rate: int) -> dict[str, Any]:
        """The config dict for pipeline.models.build_model."""
        return {**self.model, "arch": self.arch, "width": self.width, "embedding_dim": self.embedding_dim,
                "frontend": self.frontend, "sample_rate": int(sample_rate)}


@dataclass
class TrainState:
    """What the loop passes around: model, optimiser, loss and the running best."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss: torch.nn.Module
    best_eer: float = float("inf")
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] | None = None
    steps: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


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
            raise ValueError(f"training manifest has no {label} rows (after exclude_paradigms): nothing to learn")
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


def load_dev(dev: pd.DataFrame, sample_rate: int, seconds: float) -> tuple[torch.Tensor, np.ndarray]:
    """Dev waves (first `seconds`, tiled) and labels, loaded once; unreadable clips are skipped with a warning."""
    waves, labels = [], []
    for _, batch in iter_batches(dev, 64, sample_rate, seconds, stage="train"):
        for r in batch.rejects:
            log.warning("dev clip %s skipped: %s", r["clip_id"], r["reason"])
        waves.append(batch.waves)
        labels.append(batch.labels)
    return torch.cat(waves), np.concatenate(labels)


@torch.no_grad()
def _embed_and_score(model: torch.nn.Module, waves: torch.Tensor, device: torch.device,
                     batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    scores, embs = [], []
    for i in range(0, len(waves), batch_size):
        logits, feats = model.forward_with_features(waves[i:i + batch_size].to(device))
        scores.append(bonafide_score(logits).float().cpu())
        embs.append(F.normalize(feats["penultimate"].float(), dim=1).cpu())
    return torch.cat(scores).numpy(), torch.cat(embs).numpy()


def dev_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """EER of dev scores (labels: 1 = bona fide)."""
    return compute_eer(scores[labels == 1], scores[labels == 0])[0]


def _batches(ds: ClipDataset, p: TrainParams, seed: int, epoch: int) -> DataLoader:
    ds.set_epoch(epoch)
    sampler = balanced_sampler(ds.labels, num_samples=p.steps_per_epoch * p.batch_size, seed=seed + 1000 * epoch)
    return DataLoader(ds, batch_size=p.batch_size, sampler=sampler, num_workers=0, drop_last=True)


def _train_epoch(state: TrainState, loader: DataLoader, objective: str, device: torch.device,
                 desc: str) -> tuple[float, dict[str, np.ndarray] | None]:
    """One epoch; returns the mean loss and (supcon) the per-class means of the penultimate embeddings.

    The means are {"normed": [2, D] mean of L2-normalised embeddings, "raw": [2, D] mean of raw ones},
    row 0 = spoof, row 1 = bona fide.
    """
    model, opt, loss_fn = state.model, state.optimizer, state.loss
    model.train()
    loss_fn.train()
    total, n, sums, counts = 0.0, 0, None, np.zeros(2)
    for wave, y in progress(loader, desc=desc, unit="batch"):
        wave, y = wave.to(device), y.to(device)
        logits, feats = model.forward_with_features(wave)
        if objective == "supcon":
            pen = feats["penultimate"]
            loss = loss_fn(pen, y)
            raw = pen.detach().float().cpu().numpy()
            z = raw / (np.linalg.norm(raw, axis=1, keepdims=True) + 1e-12)
            yb = y.cpu().numpy()
            if sums is None:
                sums = {"normed": np.zeros((2, z.shape[1])), "raw": np.zeros((2, z.shape[1]))}
            for c in (0, 1):
                sums["normed"][c] += z[yb == c].sum(0)
                sums["raw"][c] += raw[yb == c].sum(0)
                counts[c] += (yb == c).sum()
        elif objective == "racl":
            loss = loss_fn({**feats, "logits": logits}, y)
        else:
            loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach())
        n += 1
        state.steps += 1
    means = None if sums is None else {k: v / np.maximum(counts, 1)[:, None] for k, v in sums.items()}
    return total / max(n, 1), means


def ncm_scores(embs: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Nearest-class-mean score of normalised embeddings: cos(z, mean_bonafide) - cos(z, mean_spoof)."""
    unit = means / (np.linalg.norm(means, axis=1, keepdims=True) + 1e-12)
    return embs @ unit[1] - embs @ unit[0]


def init_head_from_means(classifier: torch.nn.Linear, raw_means: np.ndarray, normed_means: np.ndarray) -> None:
    """Warm-start the linear head at the class-mean direction, so stage 2 starts from the NCM solution.

    score(p) = logit_b - logit_s = a * d . (p - c), with d the difference of the unit class means,
    c the midpoint of the raw class means and a set so that the class means score +-2.
    """
    unit = normed_means / (np.linalg.norm(normed_means, axis=1, keepdims=True) + 1e-12)
    d = unit[1] - unit[0]
    c = (raw_means[1] + raw_means[0]) / 2
    gap = float(d @ (raw_means[1] - raw_means[0]))
    a = 4.0 / gap if gap > 1e-8 else 1.0
    w = torch.as_tensor(a * d / 2, dtype=classifier.weight.dtype)
    b = float(a * (d @ c) / 2)
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.weight[1] = w.to(classifier.weight.device)
        classifier.weight[0] = -w.to(classifier.weight.device)
        classifier.bias.copy_(torch.tensor([b, -b], dtype=classifier.bias.dtype))


def _head_epoch(state: TrainState, loader: DataLoader, device: torch.device, desc: str) -> float:
    """One epoch of the linear head on the frozen encoder (encoder in eval mode, no encoder gradients)."""
    model, opt, loss_fn = state.model, state.optimizer, state.loss
    model.eval()
    total, n = 0.0, 0
    for wave, y in progress(loader, desc=desc, unit="batch"):
        with torch.no_grad():
            pen = model.forward_with_features(wave.to(device))[1]["penultimate"]
        loss = loss_fn(model.classifier(pen), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach())
        n += 1
        state.steps += 1
    return total / max(n, 1)


def _track_best(state: TrainState, eer: float, epoch: int, save: Any) -> bool:
    """Keep the best state (and write it through `save`) when dev EER improves; True when it did."""
    if eer < state.best_eer:
        state.best_eer, state.best_epoch = eer, epoch
        state.best_state = copy.deepcopy(state.model.state_dict())
        if save is not None:
            save(state.model)
        return True
    return False


def run(train_rows: pd.DataFrame, dev_rows: pd.DataFrame, p: TrainParams, *, sample_rate: int, seed: int,
        device: torch.device, save=None, live=None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train a detector; return (the best model, summary). `save(model)` writes a checkpoint at each improvement."""
    t0 = time.perf_counter()
    model = build_model(p.model_config(sample_rate)).to(device)
    dev_waves, dev_labels = load_dev(dev_rows, sample_rate, p.eval_s)
    if (dev_labels == 1).sum() == 0 or (dev_labels == 0).sum() == 0:
        raise ValueError("dev set needs bona fide and spoof clips for an EER")
    ds = ClipDataset(train_rows, sample_rate, p.crop_s, train=True, seed=seed)
    two_stage = p.objective == "supcon"
    loss = build_loss(p.objective, {"supcon": p.supcon, "racl": p.racl}).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    state = TrainState(model=model, optimizer=opt, loss=loss)
    epoch, stale, best_means = 0, 0, None
    for epoch in range(p.epochs):
        train_loss, means = _train_epoch(state, _batches(ds, p, seed, epoch), p.objective, device, f"train {epoch}")
        scores, embs = _embed_and_score(model, dev_waves, device, 2 * p.batch_size)
        if two_stage:  # the head is untrained: score by the nearest class mean of the training embeddings
            scores = ncm_scores(embs, means["normed"])
        eer = dev_eer(scores, dev_labels)
        improved = _track_best(state, eer, epoch, None if two_stage else save)
        if two_stage and improved:
            best_means = means
        stale = 0 if improved else stale + 1
        _log_epoch(state, live, {"train/loss": train_loss, "dev/eer": eer}, epoch)
        if stale >= p.patience:
            log.info("early stop after epoch %d: dev EER has not improved for %d epochs", epoch, p.patience)
            break
    epochs_run = epoch + 1
    encoder_eer = state.best_eer
    if two_stage:
        epochs_run += _train_head(state, ds, dev_waves, dev_labels, p, seed, device, save, live, best_means,
                                  first_epoch=epochs_run)
    model.load_state_dict(state.best_state)
    summary = {"dev_eer": float(state.best_eer), "best_epoch": int(state.best_epoch), "epochs": int(epochs_run),
               "steps": int(state.steps), "seconds": round(time.perf_counter() - t0, 2),
               "n_train": int(len(train_rows)), "n_dev": int(len(dev_labels)), "objective": p.objective}
    if two_stage:
        summary["dev_eer_encoder_ncm"] = float(encoder_eer)
    return model.eval(), summary


def _train_head(state: TrainState, ds: ClipDataset, dev_waves: torch.Tensor, dev_labels: np.ndarray,
                p: TrainParams, seed: int, device: torch.device, save, live, means: dict[str, np.ndarray],
                first_epoch: int) -> int:
    """SupCon stage 2: restore the best encoder, freeze it, train the linear head with CE; return epochs run."""
    model = state.model
    model.load_state_dict(state.best_state)
    init_head_from_means(model.classifier, means["raw"], means["normed"])
    for param in model.parameters():
        param.requires_grad_(False)
    for param in model.classifier.parameters():
        param.requires_grad_(True)
    head_lr = float(p.supcon.get("head_lr", 10 * p.lr))
    state.optimizer = torch.optim.AdamW(model.classifier.parameters(), lr=head_lr, weight_decay=p.weight_decay)
    state.loss = CrossEntropyLoss()
    state.best_eer, state.best_epoch, stale = float("inf"), -1, 0
    head_epochs = int(p.supcon.get("head_epochs", 3))
    for k in range(head_epochs):
        epoch = first_epoch + k
        train_loss = _head_epoch(state, _batches(ds, p, seed, epoch), device, f"head {k}")
        scores, _ = _embed_and_score(model, dev_waves, device, 2 * p.batch_size)
        eer = dev_eer(scores, dev_labels)
        stale = 0 if _track_best(state, eer, epoch, save) else stale + 1
        _log_epoch(state, live, {"head/loss": train_loss, "dev/eer": eer}, epoch)
        if stale >= p.patience:
            break
    for param in model.parameters():
        param.requires_grad_(True)
    return k + 1


def _log_epoch(state: TrainState, live, metrics: dict[str, float], epoch: int) -> None:
    extra = getattr(state.loss, "terms", {}) or {}
    row = {**metrics, **{k: float(v) for k, v in extra.items()}, "epoch": epoch, "steps": state.steps}
    state.history.append(row)
    log.info("epoch %d: %s", epoch, " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                              for k, v in row.items()))
    if live is not None:
        for k, v in metrics.items():
            live.log_metric(k, float(v))
        for k, v in extra.items():
            live.log_metric(k, float(v))
        live.next_step()


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("train", "train the detector on a manifest, early-stopped on dev EER")
    parser.add_argument("--manifest", required=True, help="training manifest (clip table + manifest columns)")
    parser.add_argument("--dev", required=True, help="dev clip table (early stopping)")
    parser.add_argument("--out", required=True, help="output directory (model.pt, config.json, metrics.json)")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params(args.params)
    common = common_params(params)
    p = TrainParams.from_params(section(params, "train"))
    seed, sample_rate = common.seed, common.sample_rate
    device = setup_torch(common)

    manifest = read_clips(args.manifest, stage="train", groups=_groups_of(args.manifest))
    train_rows = select_training_rows(manifest, p.exclude_paradigms)
    dev = read_clips(args.dev, stage="train", groups=_groups_of(args.dev))
    # A held-out paradigm must not steer early stopping either.
    dev = dev[~((dev["label"] == "spoof") & dev["paradigm"].isin(list(p.exclude_paradigms))).to_numpy()]
    dev_rows = select_dev_rows(dev, p.dev_max_clips, seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    resolved = {"train": {**asdict(p), "exclude_paradigms": list(p.exclude_paradigms)}, "seed": seed,
                "sample_rate": sample_rate, "manifest": str(args.manifest),
                "train_paradigms": sorted(train_rows.loc[train_rows["label"] == "spoof", "paradigm"].unique()),
                "train_systems": sorted(train_rows.loc[train_rows["label"] == "spoof", "system"].unique())}

    def save(model: torch.nn.Module) -> None:
        save_checkpoint(model, resolved, out / "model.pt")

    live = _open_live(out / "dvclive")
    if live is not None:
        live.log_params({"objective": p.objective, "arch": p.arch, "width": p.width, "n_train": len(train_rows)})
    with stage_timer(log, "train", unit_key="steps") as stats:
        model, summary = run(train_rows, dev_rows, p, sample_rate=sample_rate, seed=seed, device=device,
                             save=save, live=live)
        stats.add("steps", summary["steps"])
        stats.add("epochs", summary["epochs"])
    if live is not None:
        live.end()
    save(model)  # the best state again: also covers a run whose first epoch was already the best
    write_json_atomic({**resolved, "model": dict(model.config)}, out / "config.json")
    write_json_atomic(summary, out / "metrics.json")
    log.info("dev EER %.2f%% (best epoch %d of %d)", 100 * summary["dev_eer"], summary["best_epoch"],
             summary["epochs"])
    return 0


def _groups_of(path: str | Path) -> tuple[str, ...]:
    """("manifest",) when the Parquet file has the manifest columns, else ()."""
    names = set(pq.read_schema(path).names) if Path(path).exists() else set()
    return ("manifest",) if set(MANIFEST_COLUMNS) <= names else ()


def _open_live(path: Path):
    """A dvclive logger that writes only under `path` (no dvc.yaml edits, no experiment commits)."""
    try:
        from dvclive import Live
    except ImportError:  # dvclive is a dependency, but training must not need it
        log.warning("dvclive not installed: no training curves")
        return None
    return Live(dir=str(path), dvcyaml=False, save_dvc_exp=False)
