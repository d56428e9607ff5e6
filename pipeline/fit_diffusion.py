"""Stage fit_diffusion: train a small mel-spectrogram diffusion UNet on the bona fide train clips.

Reads data/clips.parquet (label bonafide, split train) and the clip audio; writes --out
(data/generators/diffusion/): unet/ (diffusers UNet2DModel.save_pretrained), scheduler/ (the
DDPM schedule), hardset.json (log-mel mean/std), config.json (source), metrics.json.
With `fit_diffusion.model` set to a local UNet2DModel directory nothing is trained: config.json
records `{"source": "pretrained", "path": ...}` and reconstruct loads it with from_pretrained.

Training: the HiFi-GAN V1 log-mel (pipeline.resynth.melspec.HIFIGAN_MEL) of every clip, normalised by
its global mean/std, random crops of `segment_frames`; the standard DDPM objective (predict the
noise eps added at a uniformly drawn t: MSE(eps_theta(x_t, t), eps)) under a cosine schedule.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from pipeline.io import atomic_dir, write_json_atomic
from pipeline.logs import progress
from pipeline.params import Section, check_known_keys, mapping, number
from pipeline.resynth.common import check_fit_values, fit_stage_main, read_waves, resample_all
from pipeline.resynth.diffusion import UNET_DEFAULTS, make_scheduler, make_unet, save_diffusion
from pipeline.resynth.melspec import HIFIGAN_MEL, LogMel

log = logging.getLogger("pipeline.fit_diffusion")


@dataclass(frozen=True)
class FitDiffusionParams(Section):
    """The fit_diffusion section of params.yaml."""

    NAME: ClassVar[str] = "fit_diffusion"

    model: str | None = None
    steps: int = 300
    batch_size: int = 8
    segment_frames: int = 64
    lr: float = 2e-4
    max_clips: int | None = None
    unet: dict = field(default_factory=dict)  # overrides of UNET_DEFAULTS (block_out_channels, layers_per_block)

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        return {**kw, "unet": mapping("fit_diffusion.unet", kw.get("unet"))}

    def check(self) -> None:
        check_fit_values(self)
        number("fit_diffusion.segment_frames", self.segment_frames, low=1, integer=True)
        check_known_keys("fit_diffusion.unet", self.unet, UNET_DEFAULTS)


def clip_mels(waves: list[np.ndarray], sample_rate: int) -> list[torch.Tensor]:
    """HiFi-GAN log-mels [80, frames] of waves at `sample_rate`."""
    mel = LogMel(HIFIGAN_MEL)
    out = []
    with torch.inference_mode():
        for w in resample_all(waves, sample_rate, HIFIGAN_MEL.sample_rate):
            w = np.pad(w, (0, max(0, HIFIGAN_MEL.n_fft - len(w))))
            out.append(mel(torch.from_numpy(w).unsqueeze(0))[0].clone())
    return out


def mel_crops(mels: list[torch.Tensor], n: int, frames: int, floor: float, rng: np.random.Generator) -> torch.Tensor:
    """n random crops [n, 1, 80, frames] (short mels padded with `floor`)."""
    out = torch.full((n, 1, HIFIGAN_MEL.n_mels, frames), floor)
    for k, i in enumerate(rng.integers(0, len(mels), size=n)):
        m = mels[i]
        if m.shape[1] > frames:
            start = int(rng.integers(0, m.shape[1] - frames + 1))
            out[k, 0] = m[:, start: start + frames]
        else:
            out[k, 0, :, : m.shape[1]] = m
    return out


def train_diffusion(mels: list[torch.Tensor], p: FitDiffusionParams, rng: np.random.Generator,
                    device: torch.device) -> tuple[torch.nn.Module, object, dict, float]:
    """DDPM training on normalised mel crops -> (unet, scheduler, mel stats, final loss EMA)."""
    allv = torch.cat([m.reshape(-1) for m in mels])
    stats = {"mel_mean": float(allv.mean()), "mel_std": float(allv.std().clamp(min=1e-3))}
    norm = [(m - stats["mel_mean"]) / stats["mel_std"] for m in mels]
    floor = (float(np.log(HIFIGAN_MEL.log_floor)) - stats["mel_mean"]) / stats["mel_std"]
    unet = make_unet({**UNET_DEFAULTS, **p.unet}).to(device).train()
    levels = len(unet.config.block_out_channels) - 1
    frames = -(-p.segment_frames // 2 ** levels) * 2 ** levels
    scheduler = make_scheduler()
    opt = torch.optim.AdamW(unet.parameters(), lr=p.lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
    total_t = int(scheduler.config.num_train_timesteps)
    ema = None
    for _ in progress(range(p.steps), desc="fit_diffusion", unit="step"):
        x0 = mel_crops(norm, p.batch_size, frames, floor, rng).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, total_t, (x0.shape[0],), generator=gen).to(device)
        pred = unet(scheduler.add_noise(x0, noise, t), t).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema = float(loss.detach()) if ema is None else 0.9 * ema + 0.1 * float(loss.detach())
    return unet.eval(), scheduler, stats, float(ema if ema is not None else float("nan"))


def run(clips, out: Path, p: FitDiffusionParams, sample_rate: int, seed: int, device: torch.device) -> dict:
    """Train (or record the pretrained model) and write out/; returns the metrics written."""
    with atomic_dir(out) as tmp:
        if p.model:
            path = Path(p.model)
            if not path.exists():
                raise FileNotFoundError(f"fit_diffusion.model: {path} does not exist (a UNet2DModel directory)")
            write_json_atomic({"source": "pretrained", "path": str(path)}, tmp / "config.json")
            log.info("fit_diffusion: using %s, nothing trained", path)
            return {"trained": False, "source": "pretrained", "path": str(path)}
        train = clips[(clips["label"] == "bonafide") & (clips["split"] == "train")]
        if train.empty:
            raise ValueError("fit_diffusion: no bona fide train clips to train on")
        rng = np.random.default_rng(seed)
        waves, _ = read_waves(train, sample_rate, p.max_clips, rng)
        if not waves:
            raise ValueError("fit_diffusion: none of the bona fide train clips could be read")
        t0 = time.perf_counter()
        mels = clip_mels(waves, sample_rate)
        unet, scheduler, stats, loss = train_diffusion(mels, p, rng, device)
        save_diffusion(unet.cpu(), scheduler, stats, tmp)
        # metrics.json is part of the DVC output: no timing in it, or every re-run would change the output hash
        log.info("fit_diffusion: %d steps on %d clips in %.1f s", p.steps, len(waves), time.perf_counter() - t0)
        metrics = {"trained": True, "steps": p.steps, "clips": len(waves), "loss/eps_mse": loss, **stats}
        write_json_atomic(metrics, tmp / "metrics.json")
        return metrics


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m pipeline fit_diffusion --clips ... --out ..."""
    return fit_stage_main(
        argv, "fit_diffusion", "train a mel diffusion UNet on bona fide train clips",
        FitDiffusionParams, run, "data/generators/diffusion")
