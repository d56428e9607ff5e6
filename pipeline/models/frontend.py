"""Spectral front ends computed in torch: log-mel and LFCC, from a waveform batch [B, T] to [B, 1, F, frames].

Both are torch ops (STFT, torchaudio filterbanks, DCT), so they run on the model's device with the net.
LFCC follows the ASVspoof 2019 baseline: linear-frequency triangular filters, log, DCT.
The output is normalised per utterance. `norm: utterance` (the default) takes one mean and one standard
deviation over the whole spectrogram: it removes the gain but keeps the spectral shape (band limits,
spectral tilt) in which some generator artefacts live. `norm: bin` normalises each frequency bin over
time (cepstral mean and variance normalisation): it also removes the stationary channel and the
speaker's long-term spectrum, which a detector trained on few speakers otherwise learns as "bona fide".
"""

from __future__ import annotations

from typing import Any

import torch
import torchaudio.functional as F
from torch import nn

FRONTENDS = ("logmel", "lfcc")
NORMS = ("utterance", "bin")

FRONTEND_DEFAULTS: dict[str, Any] = {
    "frontend": "logmel",
    "sample_rate": 16000,
    "n_bins": 64,       # mel bands (logmel) or cepstral coefficients (lfcc)
    "n_filters": 70,    # linear filters before the DCT (lfcc only)
    "win_ms": 25.0,
    "hop_ms": 10.0,
    "norm": "utterance",  # utterance | bin (per-frequency mean/variance over time)
}


class Frontend(nn.Module):
    """Waveform [B, T] float32 -> normalised log spectrum [B, 1, n_bins, frames] (frames = 1 + T // hop).

    The STFT is framed by hand (zero-pad n_fft // 2 on both sides, unfold, rfft): torch.stft's
    centred reflect padding and the complex abs() cost more than the FFT itself on CPU. The frame
    count is the same as torch.stft's with center=True. Filterbanks and the DCT are non-persistent
    buffers: they follow from the config, so checkpoints hold only learned weights.
    """

    def __init__(self, kind: str = "logmel", sample_rate: int = 16000, n_bins: int = 64, n_filters: int = 70,
                 win_ms: float = 25.0, hop_ms: float = 10.0, norm: str = "utterance") -> None:
        super().__init__()
        if kind not in FRONTENDS:
            raise ValueError(f"unknown frontend {kind!r}; known: {list(FRONTENDS)}")
        if norm not in NORMS:
            raise ValueError(f"unknown frontend norm {norm!r}; known: {list(NORMS)}")
        self.kind = kind
        self.norm = norm
        self.win = int(round(sample_rate * win_ms / 1000.0))
        self.hop = int(round(sample_rate * hop_ms / 1000.0))
        self.n_fft = 1 << (self.win - 1).bit_length()  # next power of two >= the window
        self.n_bins = n_bins
        n_freqs = self.n_fft // 2 + 1
        left = (self.n_fft - self.win) // 2  # the window centred in the FFT frame, as torch.stft does
        window = nn.functional.pad(torch.hann_window(self.win), (left, self.n_fft - self.win - left))
        self.register_buffer("window", window, persistent=False)
        if kind == "logmel":
            fb = F.melscale_fbanks(n_freqs, f_min=20.0, f_max=sample_rate / 2.0, n_mels=n_bins,
                                   sample_rate=sample_rate, norm=None, mel_scale="htk")
            self.register_buffer("fb", fb.contiguous(), persistent=False)            # [n_freqs, n_bins]
            self.register_buffer("dct", torch.zeros(0), persistent=False)
        else:
            if n_bins > n_filters:
                raise ValueError(f"lfcc: n_bins ({n_bins}) must not exceed n_filters ({n_filters})")
            fb = F.linear_fbanks(n_freqs, f_min=0.0, f_max=sample_rate / 2.0, n_filter=n_filters,
                                 sample_rate=sample_rate)
            self.register_buffer("fb", fb.contiguous(), persistent=False)            # [n_freqs, n_filters]
            self.register_buffer("dct", F.create_dct(n_bins, n_filters, norm="ortho"),
                                 persistent=False)                                   # [n_filters, n_bins]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() != 2:
            raise ValueError(f"frontend expects a waveform batch [B, T], got shape {tuple(wave.shape)}")
        pad = self.n_fft // 2
        frames = nn.functional.pad(wave.float(), (pad, pad)).unfold(-1, self.n_fft, self.hop)  # [B, frames, n_fft]
        spec = torch.fft.rfft(frames * self.window, dim=-1)                                 # [B, frames, n_freqs]
        power = spec.real.square() + spec.imag.square()  # (4x faster than abs()**2 on CPU)
        feats = torch.log(torch.matmul(power, self.fb) + 1e-6)                             # [B, frames, filters]
        if self.kind == "lfcc":
            feats = torch.matmul(feats, self.dct)
        feats = feats.transpose(1, 2)                                                       # [B, bins, frames]
        dims = (1, 2) if self.norm == "utterance" else (2,)
        mean = feats.mean(dim=dims, keepdim=True)
        std = feats.std(dim=dims, keepdim=True)
        return ((feats - mean) / (std + 1e-5)).unsqueeze(1)


def build_frontend(config: dict[str, Any]) -> Frontend:
    """A Frontend from a model config (missing keys take FRONTEND_DEFAULTS)."""
    c = {**FRONTEND_DEFAULTS, **{k: v for k, v in config.items() if k in FRONTEND_DEFAULTS}}
    return Frontend(kind=c["frontend"], sample_rate=int(c["sample_rate"]), n_bins=int(c["n_bins"]),
                    n_filters=int(c["n_filters"]), win_ms=float(c["win_ms"]), hop_ms=float(c["hop_ms"]),
                    norm=str(c["norm"]))
