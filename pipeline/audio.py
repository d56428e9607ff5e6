"""Audio I/O and measurements with soundfile: read mono float32, resample, write 16-bit FLAC.

Also the measured clip properties of the schema (duration, bandwidth, leading silence, RMS)
and the shortcut guards of DESIGN.md that make a reconstruction differ from its parent only
by generator artefacts (same length, same RMS, same bandwidth).
"""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from pipeline.io import atomic_path

SILENCE_DBFS = -45.0  # frame level below which a frame counts as silence
FRAME_S = 0.02


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty, silent or not finite."""


def wav_declared_frames(path: str | Path) -> int | None:
    """Frames a RIFF/WAVE header declares (data chunk size / block align); None when not a sized WAV.

    libsndfile silently shortens a truncated WAV to the bytes present, so the header is read here.
    Streaming writers leave the size 0 or 0xFFFFFFFF: those are unknown (None), as is RF64.
    """
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            chunk = fh.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if cid == b"fmt ":
                fmt = fh.read(size + (size & 1))
                block_align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else None
            elif cid == b"data":
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                fh.seek(size + (size & 1), 1)


def read_audio(path: str | Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file as mono float32 in [-1, 1], resampled to `sample_rate` when given.

    A file that holds fewer frames than its header declares (a cut-off copy or download) is an
    AudioError naming both counts, never a silently shorter clip.
    """
    try:
        with sf.SoundFile(str(path)) as fh:
            # FLAC's STREAMINFO count is exact; compressed formats' counts (MP3) can be estimates
            declared = fh.frames if fh.format == "FLAC" else None
            wave = fh.read(dtype="float32", always_2d=True)
            sr = fh.samplerate
        if fh.format == "WAV":
            declared = wav_declared_frames(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"unreadable audio {path}: {exc}") from exc
    if declared is not None and len(wave) < declared:
        raise AudioError(f"truncated audio {path}: the header declares {declared} frames, the file holds {len(wave)}")
    wave = wave.mean(axis=1)
    if sample_rate is not None and sr != sample_rate:
        wave, sr = resample(wave, sr, sample_rate), sample_rate
    return wave.astype(np.float32, copy=False), int(sr)


def check_audio(wave: np.ndarray, sample_rate: int, min_duration_s: float = 0.1) -> None:
    """Raise AudioError for empty, too short, non-finite or silent audio."""
    if wave.size == 0:
        raise AudioError("empty audio (0 samples)")
    if not np.isfinite(wave).all():
        raise AudioError("audio has NaN or infinite samples")
    if wave.size / sample_rate < min_duration_s:
        raise AudioError(f"audio shorter than {min_duration_s} s ({wave.size / sample_rate:.3f} s)")
    if np.max(np.abs(wave)) < 10 ** (-60 / 20):
        raise AudioError("silent audio (peak below -60 dBFS)")


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (anti-aliased), exact for rational rate ratios."""
    if sr_in == sr_out:
        return wave.astype(np.float32, copy=False)
    ratio = Fraction(sr_out, sr_in).limit_denominator(1000)
    out = signal.resample_poly(wave.astype(np.float64), ratio.numerator, ratio.denominator)
    return out.astype(np.float32)


def to_pcm16(wave: np.ndarray) -> np.ndarray:
    """Clip to [-1, 1) and quantise to int16, as written on disk."""
    return np.clip(np.round(wave * 32767.0), -32768, 32767).astype(np.int16)


def write_audio(path: str | Path, wave: np.ndarray, sample_rate: int) -> str:
    """Write mono 16-bit FLAC/WAV atomically; return the sha256 of the int16 samples written."""
    pcm = to_pcm16(np.asarray(wave, dtype=np.float32).reshape(-1))
    path = Path(path)
    fmt = {".flac": "FLAC", ".wav": "WAV"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"write_audio writes .flac or .wav, not {path.suffix!r}")
    with atomic_path(path) as tmp:
        sf.write(str(tmp), pcm, sample_rate, subtype="PCM_16", format=fmt)
    return hashlib.sha256(pcm.tobytes()).hexdigest()


def rms_dbfs(wave: np.ndarray) -> float:
    """RMS level in dBFS (floored at -120)."""
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if wave.size else 0.0
    return max(20.0 * np.log10(rms + 1e-12), -120.0)


def _frame_db(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    n = max(1, int(FRAME_S * sample_rate))
    frames = wave[: len(wave) // n * n].reshape(-1, n) if len(wave) >= n else wave.reshape(1, -1)
    return 10.0 * np.log10(np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-12)


def leading_silence_s(wave: np.ndarray, sample_rate: int, threshold_dbfs: float = SILENCE_DBFS) -> float:
    """Seconds before the first frame louder than `threshold_dbfs` (and louder than peak-40 dB)."""
    db = _frame_db(wave, sample_rate)
    thr = max(threshold_dbfs, db.max() - 40.0)
    loud = np.nonzero(db > thr)[0]
    n = max(1, int(FRAME_S * sample_rate))
    return float(loud[0] * n / sample_rate) if loud.size else float(len(wave) / sample_rate)


def trailing_silence_s(wave: np.ndarray, sample_rate: int, threshold_dbfs: float = SILENCE_DBFS) -> float:
    """Seconds after the last loud frame."""
    return leading_silence_s(wave[::-1].copy(), sample_rate, threshold_dbfs)


def bandwidth_hz(wave: np.ndarray, sample_rate: int, floor_db: float = -50.0) -> float:
    """Highest frequency whose long-term power is within `floor_db` of the spectral peak.

    Measured from the Welch spectrum so that an 8 kHz corpus upsampled to 16 kHz reports
    about 4 kHz, not the container's Nyquist.
    """
    nper = min(1024, len(wave))
    freqs, psd = signal.welch(wave.astype(np.float64), fs=sample_rate, nperseg=nper)
    db = 10.0 * np.log10(psd + 1e-20)
    above = np.nonzero(db > db.max() + floor_db)[0]
    return float(freqs[above[-1]]) if above.size else 0.0


def measure(wave: np.ndarray, sample_rate: int) -> dict[str, float]:
    """The measured clip-table columns of a waveform."""
    return {
        "duration_s": float(len(wave) / sample_rate),
        "sample_rate": int(sample_rate),
        "bandwidth_hz": bandwidth_hz(wave, sample_rate),
        "leading_silence_s": leading_silence_s(wave, sample_rate),
        "rms_dbfs": rms_dbfs(wave),
    }


def vad_trim(wave: np.ndarray, sample_rate: int, pad_s: float = 0.05) -> np.ndarray:
    """Cut leading and trailing silence (keeping `pad_s`); applied to both classes alike."""
    lead = max(0.0, leading_silence_s(wave, sample_rate) - pad_s)
    trail = max(0.0, trailing_silence_s(wave, sample_rate) - pad_s)
    start, stop = int(lead * sample_rate), len(wave) - int(trail * sample_rate)
    return wave[start:stop] if stop - start > int(0.1 * sample_rate) else wave


def lowpass(wave: np.ndarray, sample_rate: int, cutoff_hz: float, taper_hz: float = 150.0) -> np.ndarray:
    """Zero-phase FFT low-pass with a short cosine taper ending at `cutoff_hz`.

    Brick-wall rather than Butterworth so that the fake's measured bandwidth (-50 dB point)
    lands on the parent's: a gentle slope would leave a bandwidth shortcut.
    """
    nyq = sample_rate / 2.0
    if cutoff_hz <= 0 or cutoff_hz >= 0.98 * nyq or wave.size == 0:
        return wave.astype(np.float32, copy=False)
    spec = np.fft.rfft(wave.astype(np.float64))
    freqs = np.fft.rfftfreq(len(wave), 1.0 / sample_rate)
    lo = max(cutoff_hz - taper_hz, 0.0)
    gain = np.clip((cutoff_hz - freqs) / max(cutoff_hz - lo, 1e-9), 0.0, 1.0)
    gain = 0.5 - 0.5 * np.cos(np.pi * gain)
    return np.fft.irfft(spec * gain, n=len(wave)).astype(np.float32)


def match_length(wave: np.ndarray, n_samples: int) -> np.ndarray:
    """Trim or zero-pad to exactly `n_samples`."""
    if len(wave) >= n_samples:
        return wave[:n_samples]
    return np.pad(wave, (0, n_samples - len(wave)))


def apply_shortcut_guards(fake: np.ndarray, parent: np.ndarray, sample_rate: int,
                          parent_bandwidth_hz: float | None = None) -> np.ndarray:
    """Give a reconstruction its parent's length, bandwidth and RMS (DESIGN.md shortcut guards)."""
    out = match_length(np.nan_to_num(fake.astype(np.float32)), len(parent))
    bw = bandwidth_hz(parent, sample_rate) if parent_bandwidth_hz is None else parent_bandwidth_hz
    out = lowpass(out, sample_rate, bw)
    target, have = rms_dbfs(parent), rms_dbfs(out)
    if have > -120.0:
        out = out * np.float32(10 ** ((target - have) / 20.0))
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 0.999:  # matching RMS must not clip: scale down rather than distort
        out = out * np.float32(0.999 / peak)
    return out.astype(np.float32)


def read_pcm16(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit file's samples as int16 (first channel) -> (pcm, sample_rate).

    sha256(pcm.tobytes()) equals what write_audio returned for the file.
    """
    try:
        pcm, sr = sf.read(str(path), dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"unreadable audio {path}: {exc}") from exc
    return np.ascontiguousarray(pcm[:, 0]), int(sr)
