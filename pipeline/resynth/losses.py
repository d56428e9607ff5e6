"""Training objectives of the generators the pipeline fits (the detector's are pipeline.detector.losses).

`CodecLoss` (fit_codec): multi-resolution STFT (spectral convergence + log-magnitude L1 at FFT sizes
256/512/1024, hop n/4) + `mel_weight` * log-mel L1 (pipeline.resynth.melspec.quality_mel), returned as named
terms. fit_diffusion's objective is the plain DDPM noise MSE (torch.nn.functional.mse_loss).
"""

from __future__ import annotations

import torch

from pipeline.resynth.melspec import LogMel, quality_mel

STFT_SIZES = (256, 512, 1024)


class CodecLoss(torch.nn.Module):
    """Multi-resolution STFT + log-mel reconstruction loss (returns named terms)."""

    def __init__(self, sample_rate: int, mel_weight: float) -> None:
        super().__init__()
        self.mel = LogMel(quality_mel(sample_rate))
        self.mel_weight = mel_weight
        for n in STFT_SIZES:
            self.register_buffer(f"win{n}", torch.hann_window(n), persistent=False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        sc, mag = pred.new_zeros(()), pred.new_zeros(())
        for n in STFT_SIZES:
            win = getattr(self, f"win{n}")
            p = torch.stft(pred, n, n // 4, window=win, return_complex=True).abs() + 1e-7
            t = torch.stft(target, n, n // 4, window=win, return_complex=True).abs() + 1e-7
            sc = sc + torch.linalg.norm(t - p) / torch.linalg.norm(t)
            mag = mag + torch.mean(torch.abs(torch.log(t) - torch.log(p)))
        mel = torch.mean(torch.abs(self.mel(pred) - self.mel(target)))
        k = len(STFT_SIZES)
        return {"stft/sc": sc / k, "stft/mag": mag / k, "mel/l1": mel,
                "total": sc / k + mag / k + self.mel_weight * mel}
