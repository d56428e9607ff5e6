"""What every resynthesis backend shares: the Resynthesizer base, alignment, seeds, quality measures.

Reads and writes no files. A Resynthesizer maps a batch
of mono float32 waves at one sample rate to a batch of reconstructions at the same rate;
`keys` (the parent clip ids) seed any per-clip randomness, and each clip goes through the backend
alone, so that a clip's output does not depend on the batch it landed in (bit for bit).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from scipy import signal

from pipeline.audio import resample
from pipeline.resynth.melspec import logmel_np

MAX_LAG_S = 0.1  # codec delays (MP3 ~70 ms at 16 kHz) are compensated up to this


class Resynthesizer:
    """Base class: `__call__(waves, keys)` -> reconstructions (same rate, about the same length)."""

    system: str = ""
    sample_rate: int = 16000
    align: bool = False  # cross-correlate and remove a constant delay (codecs with encoder delay)
    precision: str = "fp32"  # fp32 | bf16 | fp16: autocast of the neural network calls (reconstruct.precision)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The `precision` autocast for a network call; signal processing (mels, STFTs, DSP) stays outside it."""
        from pipeline.runtime.devices import inference_precision

        return inference_precision(getattr(self, "device", "cpu"), self.precision)

    def __call__(self, waves: Sequence[np.ndarray], keys: Sequence[str] | None = None) -> list[np.ndarray]:
        """Resynthesise a batch clip by clip (an output never depends on its batch), each to its input's length."""
        keys = [str(i) for i in range(len(waves))] if keys is None else list(keys)
        if len(keys) != len(waves):
            raise ValueError(f"{len(waves)} waves but {len(keys)} keys")
        for w in waves:
            if w.ndim != 1 or w.size == 0:
                raise ValueError(f"{self.system}: expected non-empty mono waves, got shape {w.shape}")
        # One clip per backend call: zero-padding to the longest clip, per-item normalisation over the
        # padded length (EnCodec), reflect padding at the batch's end and batch-size-dependent kernels
        # would otherwise make a clip's output depend on the clips that share its batch.
        outs = [self.process([np.ascontiguousarray(w, dtype=np.float32)], [k])[0] for w, k in zip(waves, keys)]
        result = []
        for w, y in zip(waves, outs):
            y = np.asarray(y, dtype=np.float32).reshape(-1)
            if self.align:
                y = align_to(y, w, int(MAX_LAG_S * self.sample_rate))
            result.append(fit_length(y, len(w)))
        return result

    def process(self, waves: list[np.ndarray], keys: list[str]) -> list[np.ndarray]:  # pragma: no cover
        """Backend work: a list of waves -> a list of reconstructions (any length near the input's)."""
        raise NotImplementedError


def fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad to n samples."""
    return wave[:n] if len(wave) >= n else np.pad(wave, (0, n - len(wave)))


def align_to(fake: np.ndarray, ref: np.ndarray, max_lag: int) -> np.ndarray:
    """Shift `fake` by the lag (|lag| <= max_lag) that maximises its cross-correlation with `ref`."""
    n = min(len(fake), len(ref))
    if n < 16 or max_lag <= 0:
        return fake
    corr = signal.correlate(fake[: n + max_lag].astype(np.float64), ref[:n].astype(np.float64), mode="full",
                            method="fft")
    zero = n - 1
    lo, hi = max(0, zero - max_lag), min(len(corr), zero + max_lag + 1)
    lag = int(np.argmax(corr[lo:hi])) + lo - zero
    if lag > 0:
        return fake[lag:]
    if lag < 0:
        return np.concatenate([np.zeros(-lag, dtype=fake.dtype), fake])
    return fake


def key_hash(seed: int, key: str) -> int:
    """A 64-bit hash of the params seed and a key (a clip id, `parent:system`): stable across runs and batches."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little")


def clip_seed(seed: int, key: str) -> int:
    """A 63-bit seed (for torch/numpy generators) from the params seed and a clip key."""
    return key_hash(seed, key) & ((1 << 63) - 1)


def unit_draw(seed: int, key: str) -> float:
    """A uniform draw in [0, 1) from the params seed and a key (reconstruct's per-parent plan)."""
    return key_hash(seed, key) / 2.0 ** 64


def torch_generator(seed: int, key: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator seeded for one clip."""
    gen = torch.Generator(device=device)
    gen.manual_seed(clip_seed(seed, key))
    return gen


def resample_all(waves: Sequence[np.ndarray], sr_in: int, sr_out: int) -> list[np.ndarray]:
    """Resample each wave (polyphase, anti-aliased)."""
    return [resample(w, sr_in, sr_out) for w in waves]


def pad_batch(waves: Sequence[np.ndarray], multiple: int = 1) -> tuple[torch.Tensor, list[int]]:
    """Zero-pad waves to one length (rounded up to `multiple`) -> ([B, T] tensor, original lengths)."""
    lengths = [len(w) for w in waves]
    n = max(lengths)
    n = -(-n // multiple) * multiple
    batch = np.zeros((len(waves), n), dtype=np.float32)
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    return torch.from_numpy(batch), lengths


def logmel_distance(ref: np.ndarray, est: np.ndarray, sample_rate: int, top_db: float = 80.0) -> float:
    """Mean absolute log-mel difference in dB (80 bands, 25/10 ms), both floored at ref's peak - top_db.

    The floor keeps bands that are empty in both (or below audibility) from dominating the mean.
    """
    n = min(len(ref), len(est))
    to_db = 20.0 / np.log(10.0)  # LogMel gives ln(magnitude)
    a, b = logmel_np(ref[:n], sample_rate) * to_db, logmel_np(est[:n], sample_rate) * to_db
    floor = float(a.max()) - top_db
    return float(np.mean(np.abs(np.maximum(a, floor) - np.maximum(b, floor))))


def snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    """Waveform SNR of `est` against `ref` in dB (clamped to [-60, 120])."""
    n = min(len(ref), len(est))
    r, e = ref[:n].astype(np.float64), est[:n].astype(np.float64)
    num, den = float(np.sum(r * r)), float(np.sum((r - e) ** 2))
    if den <= 0:
        return 120.0
    return float(np.clip(10.0 * np.log10(max(num, 1e-20) / den), -60.0, 120.0))


def noise_reference_distance(ref: np.ndarray, sample_rate: int, seed: int = 0) -> float:
    """Log-mel distance of RMS-matched white noise to `ref`: the 'pure noise' end of the scale."""
    rng = np.random.default_rng(seed)
    rms = float(np.sqrt(np.mean(np.square(ref, dtype=np.float64)))) + 1e-9
    noise = (rng.standard_normal(len(ref)) * rms).astype(np.float32)
    return logmel_distance(ref, noise, sample_rate)
