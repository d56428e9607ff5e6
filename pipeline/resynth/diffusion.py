"""Diffusion reconstruction (SDEdit-style, after Cheng et al. 2026): noise a real clip's mel, denoise it back.

A diffusers UNet2DModel works on the normalised HiFi-GAN log-mel ([1, 80, frames] images). For a
strength s in (0, 1]: x0 = normalised log-mel of the clip; x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps
at t ~= s * T (the forward process of the DDPM schedule); then K deterministic DDIM steps (eta 0)
back to t = 0; the de-normalised mel is vocoded with HiFi-GAN. System names: `diffusion_s<s>`.

The model directory (fit_diffusion's output, or any `diffusion.model` path) holds `unet/`
(UNet2DModel.save_pretrained), `scheduler/` (DDPMScheduler config) and `hardset.json` (mel
normalisation); a bare UNet2DModel directory also loads, with the default schedule and stats.
Reads the model directory and the HiFi-GAN weights; writes only `save_diffusion` (fit_diffusion).
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.io import write_json_atomic
from pipeline.resynth.common import Resynthesizer, torch_generator
from pipeline.resynth.melspec import HIFIGAN_MEL
from pipeline.resynth.vocoder import HifiGan, load_hifigan

log = logging.getLogger(__name__)

# Small enough for >= 1x real time with 10 DDIM steps + HiFi-GAN on one CPU thread (160k parameters).
# The keys of params reconstruct.diffusion that this backend reads.
SETTING_KEYS = ("strengths", "ddim_steps", "hifigan_checkpoint", "hifigan_config", "hifigan_jit")
UNET_DEFAULTS: dict[str, Any] = {"block_out_channels": [8, 16, 32], "layers_per_block": 1}
SCHEDULER_DEFAULTS: dict[str, Any] = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
                                      "clip_sample": False, "prediction_type": "epsilon"}
MEL_STATS_DEFAULT = {"mel_mean": -5.0, "mel_std": 2.5}  # HiFi-GAN log-mel of speech, roughly
BUCKET_FRAMES = 16  # a clip's mel is padded to a multiple of this, decided by the clip alone


def make_unet(config: dict | None = None) -> torch.nn.Module:
    """A small UNet2DModel for [1, 80, frames] log-mel images (frames a multiple of 2**(levels-1))."""
    from diffusers import UNet2DModel

    c = {**UNET_DEFAULTS, **(config or {})}
    channels = [int(ch) for ch in c["block_out_channels"]]
    return UNet2DModel(sample_size=(HIFIGAN_MEL.n_mels, 64), in_channels=1, out_channels=1,
                       block_out_channels=tuple(channels), layers_per_block=int(c["layers_per_block"]),
                       down_block_types=("DownBlock2D",) * len(channels), up_block_types=("UpBlock2D",) * len(channels),
                       norm_num_groups=math.gcd(8, *channels))


def make_scheduler(config: dict | None = None) -> Any:
    """The training (DDPM) noise schedule."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**{**SCHEDULER_DEFAULTS, **(config or {})})


def save_diffusion(unet: torch.nn.Module, scheduler: Any, stats: dict, out_dir: str | Path) -> None:
    """Write unet/, scheduler/ and hardset.json into out_dir (the caller makes the directory swap atomic)."""
    out_dir = Path(out_dir)
    unet.save_pretrained(out_dir / "unet")
    scheduler.save_pretrained(out_dir / "scheduler")
    write_json_atomic({"mel": "hifigan_v1_22k_80", **stats}, out_dir / "hardset.json")
    write_json_atomic({"source": "fitted"}, out_dir / "config.json")


def load_diffusion(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict, dict]:
    """(UNet2DModel, scheduler config, mel stats) from a model directory (from_pretrained, local files only)."""
    from diffusers import DDPMScheduler, UNet2DModel

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"diffusion model {path} not found: run fit_diffusion or set fit_diffusion.model")
    record = path / "config.json"
    if record.exists() and json.loads(record.read_text()).get("source") == "pretrained":
        path = Path(json.loads(record.read_text())["path"])  # fit_diffusion recorded a pretrained model
        if not path.exists():
            raise FileNotFoundError(f"diffusion model {path} (fit_diffusion.model) not found")
    unet_dir = path / "unet" if (path / "unet").is_dir() else path
    unet = UNet2DModel.from_pretrained(unet_dir, local_files_only=True, low_cpu_mem_usage=False).eval().to(device)
    if unet.config.in_channels != 1:
        raise ValueError(f"{unet_dir}: expected a 1-channel mel UNet, got in_channels={unet.config.in_channels}")
    sched_dir = path / "scheduler"
    sched = DDPMScheduler.from_pretrained(sched_dir).config if sched_dir.is_dir() else make_scheduler().config
    stats_path = path / "hardset.json"
    stats = {**MEL_STATS_DEFAULT, **(json.loads(stats_path.read_text()) if stats_path.exists() else {})}
    return unet, dict(sched), stats


def ddim_timesteps(scheduler: Any, strength: float, steps: int) -> list[int]:
    """K = `steps` DDIM timesteps [K*r, ..., 2r, r] with stride r ~= strength * T / K (the last step lands on t=0).

    The scheduler's num_inference_steps is set so that its own stride (T // n) is r.
    """
    total = int(scheduler.config.num_train_timesteps)
    n = max(1, total // max(1, round(strength * total / steps)))
    scheduler.set_timesteps(n)
    stride = total // n
    ts = sorted({min(stride * k, total - 1) for k in range(steps, 0, -1)}, reverse=True)
    scheduler.timesteps = torch.tensor(ts, dtype=torch.long)
    return ts


class DiffusionRecon(Resynthesizer):
    """Noise the clip's mel to `strength`, denoise in `steps` DDIM steps, vocode with HiFi-GAN."""

    def __init__(self, system: str, sample_rate: int, unet: torch.nn.Module, scheduler_config: dict, stats: dict,
                 vocoder: HifiGan, strength: float, steps: int, seed: int, device: torch.device) -> None:
        from diffusers import DDIMScheduler

        if not 0.0 < strength <= 1.0:
            raise ValueError(f"{system}: strength must be in (0, 1], got {strength}")
        self.system, self.sample_rate, self.device = system, sample_rate, device
        self.unet, self.vocoder, self.seed = unet, vocoder, seed
        self.mean, self.std = float(stats["mel_mean"]), float(stats["mel_std"])
        self.scheduler = DDIMScheduler.from_config({**scheduler_config, "clip_sample": False})
        self.timesteps = ddim_timesteps(self.scheduler, strength, steps)
        self.strength = self.timesteps[0] / int(self.scheduler.config.num_train_timesteps)
        levels = len(unet.config.block_out_channels) - 1
        self.multiple = math.lcm(BUCKET_FRAMES, 2 ** levels)

    @property
    def precision(self) -> str:  # type: ignore[override]
        """One precision for the UNet and its HiFi-GAN vocoder (reconstruct.precision sets it)."""
        return self.vocoder.precision

    @precision.setter
    def precision(self, value: str) -> None:
        self.vocoder.precision = value

    def denoise(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """SDEdit: forward-noise x0 [B, 1, M, F] to the first timestep, then DDIM back to t=0."""
        sched = self.scheduler
        first = torch.full((x0.shape[0],), self.timesteps[0], dtype=torch.long)
        x = sched.add_noise(x0, noise, first)
        for t in self.timesteps:
            with self.autocast():
                eps = self.unet(x, t).sample
            x = sched.step(eps.float(), t, x, eta=0.0).prev_sample
        return x

    def process(self, waves: list[np.ndarray], keys: list[str]) -> list[np.ndarray]:
        mels, lengths = self.vocoder.mel_of(waves)
        frames = [n // HIFIGAN_MEL.hop for n in lengths]
        floor = (math.log(HIFIGAN_MEL.log_floor) - self.mean) / self.std
        out = mels.clone()
        # Group clips by their own bucketed length: a clip's padding and noise never depend on its batch.
        buckets: dict[int, list[int]] = {}
        for i, f in enumerate(frames):
            buckets.setdefault(-(-max(f, 1) // self.multiple) * self.multiple, []).append(i)
        with torch.inference_mode():
            for width, idx in buckets.items():
                x0 = torch.full((len(idx), 1, HIFIGAN_MEL.n_mels, width), floor, device=self.device)
                noise = torch.empty_like(x0)
                for j, i in enumerate(idx):
                    n = min(frames[i], width)
                    x0[j, 0, :, :n] = (mels[i, :, :n] - self.mean) / self.std
                    gen = torch_generator(self.seed, keys[i])
                    noise[j] = torch.randn(x0.shape[1:], generator=gen).to(self.device)
                x = self.denoise(x0, noise) * self.std + self.mean
                for j, i in enumerate(idx):
                    n = min(frames[i], width, out.shape[2])
                    out[i, :, :n] = x[j, 0, :, :n]
        return self.vocoder.vocode(out, lengths)


_NAME = re.compile(r"^diffusion_s(\d*\.?\d+)$")


def system_name(strength: float) -> str:
    """diffusion_s<strength> (e.g. diffusion_s0.3)."""
    return f"diffusion_s{float(strength):g}"


def systems(cfg: dict) -> list[str]:
    """One system per strength in the config (each in (0, 1]; anything else is a ValueError)."""
    strengths = list(cfg.get("strengths") or [0.3, 0.5])
    bad = [s for s in strengths if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s <= 1]
    if bad:
        raise ValueError(f"diffusion strengths must be numbers in (0, 1], got {bad}")
    return [system_name(s) for s in strengths]


def build(system: str, cfg: dict, device: torch.device | str = "cpu") -> Resynthesizer:
    """A diffusion Resynthesizer; `cfg["generator"]` is the model directory, `ddim_steps` the K of DDIM."""
    device = torch.device(device)
    m = _NAME.match(system)
    if not m:
        raise ValueError(f"unknown diffusion system {system!r}: expected diffusion_s<strength>")
    if not cfg.get("generator"):
        raise ValueError(f"{system}: no diffusion model directory given (fit_diffusion's output)")
    sr = int(cfg.get("sample_rate", 16000))
    unet, sched, stats = load_diffusion(cfg["generator"], device)
    generator = load_hifigan(cfg.get("hifigan_checkpoint"), cfg.get("hifigan_config"), device=device)
    vocoder = HifiGan("hifigan_universal", sr, generator, device, jit=bool(cfg.get("hifigan_jit", False)))
    return DiffusionRecon(system, sr, unet, sched, stats, vocoder, float(m.group(1)), int(cfg.get("ddim_steps", 10)),
                          int(cfg.get("seed", 0)), device)
