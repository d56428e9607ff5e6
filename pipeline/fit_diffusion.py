"""Stage fit_diffusion: train a small mel-spectrogram diffusion UNet on the bona fide train clips.

Reads data/clips.parquet (label bonafide, split train) and the clip audio; writes --out
(data/generators/diffusion/): unet/ (diffusers UNet2DModel.save_pretrained), scheduler/ (the
DDPM schedule), hardset.json (log-mel mean/std), config.json (source), metrics.json.
With `fit_diffusion.model` set to a local UNet2DModel directory nothing is trained: config.json
records `{"source": "pretrained", "path": ...}` and reconstruct loads it with from_pretrained.

Training: the HiFi-GAN V1 log-mel (pipeline.resynth.melspec.HIFIGAN_MEL) of every clip, normalised by
its global mean/std, random crops of `segment_frames`; the standard DDPM objective (predict the
noise eps added at a uniformly drawn t: MSE(eps_theta(x_t, t), eps)) under a cosine schedule, on the one
training loop (pipeline.resynth.fitting.fit_steps: AdamW, gradient norm clipped to 1); this module supplies the
batch, the step and the logged loss.
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
from pipeline.params import mapping, number, section, start_stage
from pipeline.resynth.common import resample_all
from pipeline.resynth.diffusion import UNET_DEFAULTS, make_scheduler, make_unet, save_diffusion
from pipeline.resynth.fitting import FitParams, check_like_defaults, fit_parser, fit_steps, run_fit, training_waves
from pipeline.resynth.melspec import HIFIGAN_MEL, LogMel

log = logging.getLogger("pipeline.fit_diffusion")

STAGE = "fit_diffusion"
MAX_GRAD_NORM = 1.0


@dataclass(frozen=True)
class FitDiffusionParams(FitParams):
    """The fit_diffusion section of params.yaml."""

    NAME: ClassVar[str] = STAGE

    lr: float = 2e-4
    model: str | None = None
    segment_frames: int = 64
    unet: dict = field(default_factory=dict)  # overrides of UNET_DEFAULTS (block_out_channels, layers_per_block)

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        return {**kw, "unet": mapping("fit_diffusion.unet", kw.get("unet"))}

    def check(self) -> None:
        super().check()
        number("fit_diffusion.segment_frames", self.segment_frames, low=1, integer=True)
        check_like_defaults("fit_diffusion.unet", self.unet, UNET_DEFAULTS)


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
    ema: dict[str, float] = {}

    def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step's draws, in this order: the mel crops, then the noise, then the timesteps."""
        x0 = mel_crops(norm, p.batch_size, frames, floor, rng).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, total_t, (x0.shape[0],), generator=gen).to(device)
        return x0, noise, t

    def step(b: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x0, noise, t = b
        pred = unet(scheduler.add_noise(x0, noise, t), t).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        value = float(loss.detach())  # exponential moving average for the log (the last batch alone is noisy)
        ema["eps_mse"] = value if not ema else 0.9 * ema["eps_mse"] + 0.1 * value
        return loss

    fit_steps(STAGE, unet, opt, p.steps, batch, step, lambda: dict(ema), MAX_GRAD_NORM)
    return unet.eval(), scheduler, stats, float(ema.get("eps_mse", float("nan")))


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
        rng = np.random.default_rng(seed)
        waves = training_waves(clips, STAGE, sample_rate, p.max_clips, rng)
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
    parser = fit_parser(STAGE, "train a mel diffusion UNet on bona fide train clips", "data/generators/diffusion")
    args, params, common = start_stage(parser, argv)
    run_fit(STAGE, run, FitDiffusionParams.from_params(section(params, STAGE)), args.clips, args.out, common,
            args.metrics)
    return 0
