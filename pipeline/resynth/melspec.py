"""Log-mel spectrograms shared by the resynthesis backends (no file I/O).

`LogMel(HIFIGAN_MEL)` is the mel that HiFi-GAN V1 was trained on (22.05 kHz, 1024-point FFT,
hop 256, 80 Slaney mel bands 0-8 kHz, natural log of the magnitude clamped at 1e-5): the
diffusion model works in this space so that HiFi-GAN can vocode what it produces.
`QUALITY_MEL` is a 16 kHz-friendly mel (25 ms window, 10 ms hop) used by the quality table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchaudio


@dataclass(frozen=True)
class MelConfig:
    """Parameters of a log-mel front end."""

    sample_rate: int
    n_fft: int
    hop: int
    win: int
    n_mels: int
    fmin: float
    fmax: float
    log_floor: float = 1e-5


HIFIGAN_MEL = MelConfig(sample_rate=22050, n_fft=1024, hop=256, win=1024, n_mels=80, fmin=0.0, fmax=8000.0)


def quality_mel(sample_rate: int) -> MelConfig:
    """A 25 ms / 10 ms, 80-band log-mel at `sample_rate` for distance measurements."""
    win = int(round(0.025 * sample_rate))
    n_fft = 1 << (win - 1).bit_length()
    return MelConfig(sample_rate=sample_rate, n_fft=n_fft, hop=int(round(0.01 * sample_rate)), win=win,
                     n_mels=80, fmin=0.0, fmax=sample_rate / 2.0)


def mel_basis(cfg: MelConfig) -> torch.Tensor:
    """Slaney-normalised mel filterbank [n_mels, n_fft // 2 + 1] (the librosa default HiFi-GAN used)."""
    fb = torchaudio.functional.melscale_fbanks(cfg.n_fft // 2 + 1, cfg.fmin, cfg.fmax, cfg.n_mels, cfg.sample_rate,
                                               norm="slaney", mel_scale="slaney")
    return fb.T.contiguous()


class LogMel(torch.nn.Module):
    """wave [B, T] -> log-mel [B, n_mels, T // hop] (HiFi-GAN framing: reflect pad, no centring)."""

    def __init__(self, cfg: MelConfig = HIFIGAN_MEL) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("basis", mel_basis(cfg), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.win), persistent=False)

    def magnitude(self, wave: torch.Tensor) -> torch.Tensor:
        """Linear STFT magnitude [B, F, frames]."""
        c = self.cfg
        pad = (c.n_fft - c.hop) // 2
        x = torch.nn.functional.pad(wave.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(x, c.n_fft, hop_length=c.hop, win_length=c.win, window=self.window, center=False,
                          return_complex=True)
        return torch.sqrt(spec.real.square() + spec.imag.square() + 1e-9)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        mel = torch.matmul(self.basis, self.magnitude(wave))
        return torch.log(torch.clamp(mel, min=self.cfg.log_floor))


def logmel_np(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Quality log-mel [n_mels, frames] of a mono numpy wave."""
    cfg = quality_mel(sample_rate)
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).reshape(1, -1)
    if x.shape[1] < cfg.n_fft:
        x = torch.nn.functional.pad(x, (0, cfg.n_fft - x.shape[1]))
    with torch.inference_mode():
        return LogMel(cfg)(x)[0].numpy()
