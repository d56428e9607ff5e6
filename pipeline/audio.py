"""Audio I/O and measurements with soundfile: read mono float32, resample, write 16-bit FLAC.

Also the measured clip properties of the schema (duration, bandwidth, silences, RMS, noise floor, spectral tilt)
and `match_to_parent`, the one step that makes a fake differ from its parent only by the generator (DESIGN.md's
shortcut guards: band, level, length where the generator keeps it, silences, no generator noise in non-speech).
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
SILENT_PEAK = 10 ** (-60 / 20)  # check_audio: a peak (around the mean) below -60 dBFS is silence
NO_POWER = 1e-20  # bandwidth_hz: a Welch density at or below this is numerical zero (float64 rounding)
WAV_SAMPLE_FORMATS = (1, 3, 6, 7, 0xFFFE)  # PCM, float, A-law, mu-law, extensible: one block align per frame


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty, silent or not finite."""


def wav_declared_frames(path: str | Path) -> int | None:
    """Frames a RIFF/WAVE header declares (data chunk size / block align); None when not a sized PCM WAV.

    libsndfile silently shortens a truncated WAV to the bytes present, so the header is read here.
    Streaming writers leave the size 0 or 0xFFFFFFFF: those are unknown (None), as is RF64, and so are
    block codecs (GSM 6.10, ADPCM), whose block align spans many frames.
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
                if int.from_bytes(fmt[:2], "little") not in WAV_SAMPLE_FORMATS:
                    return None
            elif cid == b"data":
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                fh.seek(size + (size & 1), 1)


BLOCK_SAMPLES = 1 << 20  # samples (frames x channels) decoded per read: memory stays bounded whatever a header says
UNKNOWN_FRAMES = 1 << 62  # libsndfile's frame count for a FLAC whose header gives none (a streamed FLAC)


class _ForwardReader(sf.SoundFile):
    """A SoundFile read front to back in blocks, never seeking: soundfile seeks after each read of a seekable file,
    which libsndfile 1.2 fails at the end of a streamed FLAC (no sample count in its header: `Internal psf_fseek()
    failed`), and a non-seekable format (GSM 6.10 in WAV) refuses a read of all frames at once."""

    def seekable(self) -> bool:
        return False


def read_audio(path: str | Path, sample_rate: int | None = None,
               max_duration_s: float | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file as mono float32 in [-1, 1], resampled to `sample_rate` when given.

    Decoded in blocks mixed to mono at once: memory holds the mono result and one block, whatever frames x channels
    a header declares. `max_duration_s` (prepare and score pass Chain.read_limit_s()): only the first seconds are
    decoded. A file holding fewer frames than its header declares (a cut-off copy) is an AudioError naming both.
    """
    try:
        with _ForwardReader(str(path)) as fh:
            sr, fmt = fh.samplerate, fh.format
            limit = None if max_duration_s is None else max(1, int(np.ceil(max_duration_s * sr)))
            # FLAC's STREAMINFO count is exact (or absent: streamed); compressed formats' counts (MP3) can be estimates
            declared = fh.frames if fmt == "FLAC" and fh.frames < UNKNOWN_FRAMES else None
            wave = _read_mono(fh, limit)
        declared = wav_declared_frames(path) if fmt == "WAV" else declared
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"unreadable audio {path}: {exc}") from exc
    expected = declared if declared is None or limit is None else min(declared, limit)
    if expected is not None and len(wave) < expected:
        raise AudioError(f"truncated audio {path}: the header declares {declared} frames, the file holds {len(wave)}")
    if sample_rate is not None and sr != sample_rate:
        wave, sr = resample(wave, sr, sample_rate), sample_rate
    return wave.astype(np.float32, copy=False), int(sr)


def _read_mono(fh: sf.SoundFile, limit: int | None) -> np.ndarray:
    """Up to `limit` frames (None: all) of an open file, mixed to mono float32 block by block."""
    per_block, parts, n = max(1, BLOCK_SAMPLES // max(1, fh.channels)), [], 0
    while limit is None or n < limit:
        want = per_block if limit is None else min(per_block, limit - n)
        block = fh.read(want, dtype="float32", always_2d=True)
        parts.append(block.mean(axis=1))
        n += len(block)
        if len(block) < want:
            break
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def check_audio(wave: np.ndarray, sample_rate: int, min_duration_s: float = 0.1) -> None:
    """Raise AudioError for empty, too short, non-finite, silent, constant or DC-only audio (silence is judged
    around the mean too: a DC offset with nothing above -60 dBFS on it carries no signal, whatever its peak)."""
    if wave.size == 0:
        raise AudioError("empty audio (0 samples)")
    if not np.isfinite(wave).all():
        raise AudioError("audio has NaN or infinite samples")
    if wave.size / sample_rate < min_duration_s:
        raise AudioError(f"audio shorter than {min_duration_s} s ({wave.size / sample_rate:.3f} s)")
    if np.max(np.abs(wave)) < SILENT_PEAK:
        raise AudioError("silent audio (peak below -60 dBFS)")
    if np.min(wave) == np.max(wave):
        raise AudioError(f"constant audio (every sample is {float(wave[0]):.6g}): no signal")
    if np.max(np.abs(wave - np.mean(wave, dtype=np.float64))) < SILENT_PEAK:
        raise AudioError(f"DC offset only (mean {float(np.mean(wave, dtype=np.float64)):.4g}; peak around it "
                         "below -60 dBFS): no signal")


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (anti-aliased), exact for rational rate ratios."""
    if sr_in == sr_out:
        return wave.astype(np.float32, copy=False)
    ratio = Fraction(sr_out, sr_in).limit_denominator(1000)
    out = signal.resample_poly(wave.astype(np.float64), ratio.numerator, ratio.denominator)
    return out.astype(np.float32)


def to_pcm16(wave: np.ndarray) -> np.ndarray:
    """Quantise to int16 as written on disk: round(x * 32768), clipped, the scale reading uses (pcm / 32768), so a
    clip read back and written again keeps its samples (with 32767 each round trip shrank loud samples a step)."""
    return np.clip(np.round(np.asarray(wave, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int16)


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
    The 0 Hz bin is left out: a DC offset is no bandwidth, and a wave with no other power (a constant) has 0 Hz,
    not the Nyquist frequency that the flat floor of rounding noise gave."""
    nper = min(1024, len(wave))
    freqs, psd = signal.welch(wave.astype(np.float64), fs=sample_rate, nperseg=nper)
    freqs, psd = freqs[1:], psd[1:]
    if not psd.size or psd.max() <= NO_POWER:
        return 0.0
    db = 10.0 * np.log10(psd + 1e-20)
    above = np.nonzero(db > db.max() + floor_db)[0]
    return float(freqs[above[-1]]) if above.size else 0.0


def noise_floor_dbfs(wave: np.ndarray, sample_rate: int) -> float:
    """The level of the quietest tenth of 20 ms frames in dBFS (floored at -120): the clip's noise floor.

    A generator that leaves digital silence in pauses, or adds its own hiss there, moves this number.
    """
    return float(max(np.percentile(_frame_db(wave, sample_rate), 10), -120.0)) if wave.size else -120.0


TILT_BAND_HZ = (100.0, 4000.0)  # the band every clip has, telephone speech included


def spectral_tilt_db(wave: np.ndarray, sample_rate: int) -> float:
    """Slope of the long-term spectrum in dB per octave over TILT_BAND_HZ (Welch, least squares).

    Measured where every clip has signal, so that a clip's band limit (its own column, bandwidth_hz) and the
    quantisation floor above it do not decide the slope.
    """
    if wave.size < 64:
        return 0.0
    freqs, psd = signal.welch(wave.astype(np.float64), fs=sample_rate, nperseg=min(1024, len(wave)))
    keep = (freqs >= TILT_BAND_HZ[0]) & (freqs <= min(TILT_BAND_HZ[1], 0.45 * sample_rate))
    if keep.sum() < 2:
        return 0.0
    slope = np.polyfit(np.log2(freqs[keep]), 10.0 * np.log10(psd[keep] + 1e-20), 1)[0]
    return float(slope)


def measure(wave: np.ndarray, sample_rate: int) -> dict[str, float]:
    """The measured clip-table columns of a waveform (the shortcut audit's nuisance features among them)."""
    return {
        "duration_s": float(len(wave) / sample_rate),
        "sample_rate": int(sample_rate),
        "bandwidth_hz": bandwidth_hz(wave, sample_rate),
        "leading_silence_s": leading_silence_s(wave, sample_rate),
        "trailing_silence_s": trailing_silence_s(wave, sample_rate),
        "rms_dbfs": rms_dbfs(wave),
        "noise_floor_dbfs": noise_floor_dbfs(wave, sample_rate),
        "spectral_tilt_db": spectral_tilt_db(wave, sample_rate),
    }


def vad_trim(wave: np.ndarray, sample_rate: int, pad_s: float = 0.05) -> np.ndarray:
    """Cut leading and trailing silence, keeping `pad_s` (rounded up to whole 20 ms frames); both classes alike.

    Loud frames as in `leading_silence_s`. The cuts fall on the wave's 20 ms frame grid, so the kept frames are the
    input's and trimming the result again changes nothing (pipeline.chain relies on it). Without a loud frame, or
    when 0.1 s or less would be kept, the wave is returned as it is."""
    n = max(1, int(FRAME_S * sample_rate))
    if len(wave) < n:
        return wave
    db = _frame_db(wave, sample_rate)
    loud = np.nonzero(db > max(SILENCE_DBFS, db.max() - 40.0))[0]
    if not loud.size:
        return wave
    pad = int(np.ceil(pad_s / FRAME_S - 1e-9))
    start = max(0, int(loud[0]) - pad) * n
    end = int(loud[-1]) + 1 + pad
    stop = len(wave) if end >= len(db) else end * n  # the tail after the last whole frame stays with the last one
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


GATES = ("parent", "none")  # what fills a fake's non-speech regions: its parent's audio there, or nothing changed


def speech_mask(wave: np.ndarray, sample_rate: int, hang_s: float = 0.1, fade_s: float = 0.01) -> np.ndarray:
    """A per-sample weight in [0, 1]: 1 in speech, 0 in non-speech, raised-cosine ramps of `fade_s` between.

    Speech frames are the 20 ms frames above the silence threshold of `leading_silence_s` (-45 dBFS or peak - 40 dB),
    widened by `hang_s` on each side so that soft onsets and word endings count as speech.
    """
    n = max(1, int(FRAME_S * sample_rate))
    db = _frame_db(wave, sample_rate)
    loud = db > max(SILENCE_DBFS, float(db.max()) - 40.0)
    hang = int(round(hang_s / FRAME_S))
    if hang and loud.any():
        loud = np.convolve(loud.astype(np.int32), np.ones(2 * hang + 1, dtype=np.int32), mode="same") > 0
    mask = np.repeat(loud.astype(np.float64), n)[: len(wave)]
    mask = np.pad(mask, (0, len(wave) - len(mask)), mode="edge") if len(mask) < len(wave) else mask
    ramp = max(1, int(fade_s * sample_rate))
    if ramp > 1 and len(mask) > ramp:
        window = np.hanning(2 * ramp + 1)
        mask = np.convolve(mask, window / window.sum(), mode="same")
    return np.clip(mask, 0.0, 1.0)


def _speech_span(mask: np.ndarray) -> tuple[int, int]:
    """First and one-past-last sample whose mask weight is above one half ((0, 0) when none)."""
    idx = np.nonzero(mask > 0.5)[0]
    return (int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, 0)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _noise_bed(parent: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    """n samples of the parent's own non-speech audio (its pauses, tiled), for a fake's pauses; zeros when none."""
    quiet = parent[mask < 0.5]
    if quiet.size < 16 or n <= 0:
        return np.zeros(max(n, 0), dtype=np.float64)
    return np.tile(quiet.astype(np.float64), -(-n // quiet.size))[:n]


def match_band(wave: np.ndarray, bandwidth: float, sample_rate: int, max_steps: int = 16) -> np.ndarray:
    """`wave` low-passed so that its measured bandwidth (bandwidth_hz) is `bandwidth`, as far as its content allows.

    A low-pass at cutoff c measures about 6 Welch bins below c (the 150 Hz taper and the window's leakage), so a
    fake cut at its parent's measured band would measure lower than the parent, every time: a band shortcut made
    by the matching itself. The cutoff therefore starts at `bandwidth` and rises a bin at a time until the fake
    measures at least `bandwidth` (or the cutoff reaches Nyquist: the generator made less band than the parent).
    """
    nyq, step = sample_rate / 2.0, sample_rate / 1024.0
    cutoff = float(bandwidth)
    out = lowpass(wave, sample_rate, cutoff)
    for _ in range(max_steps):
        if bandwidth_hz(out, sample_rate) >= bandwidth or cutoff >= 0.98 * nyq:
            break
        cutoff += step
        out = lowpass(wave, sample_rate, cutoff)
    return out


def match_record(gate: str, same_length: bool) -> str:
    """What match_to_parent matches under these settings: the clip table's `matched` value."""
    done = (["length"] if same_length else []) + ["band", "level"]
    if gate == "parent":
        done += ["silence", "gate:parent" if same_length else "gate:noise"]
    return ",".join(done)


def _speech_gain(fake: np.ndarray, f_mask: np.ndarray, parent: np.ndarray, p_mask: np.ndarray) -> float:
    """The factor that brings the fake's speech (mask > 0.5) to the level of the parent's speech (1 when silent)."""
    a, b = _rms(fake[f_mask > 0.5]), _rms(parent[p_mask > 0.5])
    return b / a if a > 0 and b > 0 else 1.0


def _splice_tts(fake: np.ndarray, parent: np.ndarray, p_mask: np.ndarray, sample_rate: int, gate: str,
                margin: int) -> np.ndarray:
    """A TTS fake's speech (its loud frames, `margin` samples either side) at the parent's speech level; with the
    parent gate: between the parent's own leading and trailing silence, the parent's pause noise added under it."""
    f0, f1 = _speech_span(speech_mask(fake, sample_rate, 0.0, 0.0))
    core = fake[max(0, f0 - margin): min(len(fake), f1 + margin)] if f1 > f0 else fake
    core = core * _speech_gain(core, speech_mask(core, sample_rate, 0.0, 0.0), parent, p_mask)
    if gate != "parent":
        return core
    p0, p1 = _speech_span(speech_mask(parent, sample_rate, 0.0, 0.0))
    core = core + _noise_bed(parent, p_mask, len(core))  # room noise lies under a recording's speech too
    return np.concatenate([parent[: max(0, p0 - margin)], core, parent[min(len(parent), p1 + margin):]])


def match_to_parent(fake: np.ndarray, parent: np.ndarray, sample_rate: int, *,
                    parent_bandwidth_hz: float | None = None, gate: str = "parent", same_length: bool = True,
                    hang_s: float = 0.1, fade_s: float = 0.01) -> tuple[np.ndarray, str]:
    """Make a fake differ from its parent only by the generator: band, level, silences, non-speech; -> (wave, matched).

    The one matching step of every fake with a parent (reconstruct's copy-syntheses, the demo's TTS, corpus fakes
    that name a parent). `same_length` (a reconstruction): the fake is cut or padded to the parent's length, its
    speech scaled to the parent's speech level, and with `gate="parent"` its non-speech regions (the parent's speech
    mask: `hang_s` around loud frames, `fade_s` crossfades) are the parent's own audio, so leading and trailing
    silence and the noise floor are the parent's and no generator noise remains there. Otherwise (TTS: the length
    is the generator's): the fake's speech (its loud frames) at the parent's speech level, and with the parent gate
    the parent's own leading and trailing silence around it and the parent's pause noise (its non-speech, tiled)
    under it, so that the TTS's digital silence in pauses cannot give it away. Always: the whole is low-passed so
    that it measures the parent's band (`parent_bandwidth_hz`, else measured; match_band) and scaled to the parent's
    RMS (peak below full scale).
    `matched` lists what was matched, e.g. "length,band,level,silence,gate:parent" (recorded per clip-table row).
    """
    if gate not in GATES:
        raise ValueError(f"match gate {gate!r} unknown; known: {list(GATES)}")
    fake = np.nan_to_num(np.asarray(fake, dtype=np.float64).reshape(-1))
    parent = np.asarray(parent, dtype=np.float64).reshape(-1)
    p_mask = speech_mask(parent, sample_rate, hang_s, fade_s)
    if same_length:
        fake = match_length(fake, len(parent))
        fake = fake * _speech_gain(fake, p_mask, parent, p_mask)
        if gate == "parent":
            fake = p_mask * fake + (1.0 - p_mask) * parent
    else:
        fake = _splice_tts(fake, parent, p_mask, sample_rate, gate, margin=int(fade_s * sample_rate))
    bw = bandwidth_hz(parent.astype(np.float32), sample_rate) if parent_bandwidth_hz is None else parent_bandwidth_hz
    out = match_band(fake.astype(np.float32), bw, sample_rate)
    target, have = rms_dbfs(parent), rms_dbfs(out)
    if have > -120.0:
        out = out * np.float32(10 ** ((target - have) / 20.0))
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 0.999:  # matching the level must not clip: scale down rather than distort
        out = out * np.float32(0.999 / peak)
    return out.astype(np.float32), match_record(gate, same_length)


def read_pcm16(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit file's samples as int16 (first channel) -> (pcm, sample_rate).

    sha256(pcm.tobytes()) equals what write_audio returned for the file.
    """
    try:
        pcm, sr = sf.read(str(path), dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"unreadable audio {path}: {exc}") from exc
    return np.ascontiguousarray(pcm[:, 0]), int(sr)
