"""Audio I/O and measurements with soundfile: read mono float32, resample, write 16-bit FLAC.

Also the measured clip properties of the schema (duration, bandwidth, silences, RMS, noise floor, spectral tilt);
pipeline.matching builds the shortcut guards (a fake matched to its parent) on them. read_audio checks a file first.
"""

from __future__ import annotations

import hashlib
import os
import stat
from contextlib import nullcontext
from fractions import Fraction
from io import BytesIO
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
import soundfile as sf
from scipy import signal

from pipeline.io import write_bytes_atomic

SILENCE_DBFS = -45.0  # frame level below which a frame counts as silence
FRAME_S = 0.02
SILENT_PEAK = 10 ** (-60 / 20)  # check_audio: a peak (around the mean) below -60 dBFS is silence
NO_POWER = 1e-20  # bandwidth_hz: a Welch density at or below this is numerical zero (float64 rounding)
WAV_SAMPLE_FORMATS = (1, 3, 6, 7, 0xFFFE)  # PCM, float, A-law, mu-law, extensible: one block align per frame


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty, silent or not finite."""


MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4000, 384000  # a header rate outside this is damaged (a "1 Hz" WAV), not audio
BLOCK_SAMPLES = 1 << 20  # samples (frames x channels) decoded per read: memory stays bounded whatever a header says
FLAC_TOTAL = slice(21, 26)  # STREAMINFO's 36-bit sample count: the low 4 bits of byte 21, then bytes 22-25


class Header(NamedTuple):
    """What read_audio takes from a file's own header: the frames it declares (None: unknown or not exact) and the
    bytes to read in place of the header's (offset -> bytes) so that libsndfile decodes the data to its true end."""

    declared: int | None = None
    overlay: dict[int, bytes] = {}


def audio_header(path: str | Path) -> Header:
    """The declared length of a FLAC (STREAMINFO) or sized PCM WAV (data chunk size / block align).

    libsndfile stops where a header says the data ends and silently shortens a file holding less, so the header is
    read here: a FLAC is always decoded as if streamed (its sample count read as 0, the overlay), to its last frame;
    a WAV whose data chunk is followed by more data than chunks (a size written too small by a recorder that was
    stopped) gets the data size of the bytes really there. Streaming writers' 0 or 0xFFFFFFFF sizes, RF64 and block
    codecs (GSM 6.10, ADPCM: a block align spans many frames) declare nothing; neither do other formats.
    """
    with open(path, "rb") as fh:
        head = fh.read(26)
        if head[:4] == b"fLaC" and len(head) == 26 and head[4] & 0x7F == 0:  # STREAMINFO is the first block
            total = int.from_bytes(head[FLAC_TOTAL], "big") & ((1 << 36) - 1)
            return Header(total or None, {21: bytes([head[21] & 0xF0]), 22: bytes(4)} if total else {})
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return Header()
        fh.seek(12)
        return _wav_header(fh, os.fstat(fh.fileno()).st_size)


def _wav_header(fh: BinaryIO, file_size: int) -> Header:
    block_align = None
    while True:
        chunk = fh.read(8)
        if len(chunk) < 8:
            return Header()
        cid, size = chunk[:4], int.from_bytes(chunk[4:], "little")
        if cid == b"fmt ":
            fmt = fh.read(size + (size & 1))
            block_align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else None
            if int.from_bytes(fmt[:2], "little") not in WAV_SAMPLE_FORMATS:
                return Header()
        elif cid == b"data":
            if not block_align or size in (0, 0xFFFFFFFF):
                return Header()
            start, end = fh.tell(), fh.tell() + size + (size & 1)
            if end >= file_size or _chunks_to_end(fh, end, file_size):
                return Header(size // block_align)
            true = (file_size - start) // block_align
            return Header(true, {start - 4: (true * block_align).to_bytes(4, "little")})
        else:
            fh.seek(size + (size & 1), 1)


def _chunks_to_end(fh: BinaryIO, offset: int, file_size: int) -> bool:
    """Whether the bytes from `offset` to the end of a RIFF file are whole chunks (LIST, id3 ...), not audio."""
    fh.seek(offset)
    while offset < file_size:
        chunk = fh.read(8)
        if len(chunk) < 8 or not all(32 <= c < 127 for c in chunk[:4]):
            return False
        size = int.from_bytes(chunk[4:], "little")
        offset += 8 + size + (size & 1)
        fh.seek(offset)
    return offset <= file_size + 1


class _Overlaid:
    """A file read with some of its bytes replaced (Header.overlay): libsndfile's view of a corrected header."""

    def __init__(self, path: str | Path, overlay: dict[int, bytes]) -> None:
        self.fh, self.overlay = open(path, "rb"), overlay

    def read(self, n: int = -1) -> bytes:
        pos, data = self.fh.tell(), self.fh.read(n)
        for at, patch in self.overlay.items():
            lo, hi = max(at, pos), min(at + len(patch), pos + len(data))
            if lo < hi:
                data = data[: lo - pos] + patch[lo - at: hi - at] + data[hi - pos:]
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.fh.seek(offset, whence)

    def tell(self) -> int:
        return self.fh.tell()

    def __enter__(self) -> _Overlaid:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


class _ForwardReader(sf.SoundFile):
    """A SoundFile read front to back in blocks, never seeking: soundfile seeks after each read of a seekable file,
    which libsndfile 1.2 fails at the end of a streamed FLAC (no sample count in its header: `Internal psf_fseek()
    failed`), and a non-seekable format (GSM 6.10 in WAV) refuses a read of all frames at once."""

    def seekable(self) -> bool:
        return False


def check_source(path: str | Path) -> None:
    """AudioError unless `path` is a regular file this process may read: a missing file, a FIFO or device (reading
    one blocks or never ends: /dev/zero), a folder or an unreadable file, each named in words."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioError(f"missing file {path}") from None
    except OSError as exc:
        raise AudioError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device"
        raise AudioError(f"not a regular file: {path} is {kind}")
    if not os.access(path, os.R_OK):
        raise AudioError(f"cannot read {path}: permission denied")


def read_audio(path: str | Path, sample_rate: int | None = None,
               max_duration_s: float | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file as mono float32 in [-1, 1], resampled to `sample_rate` when given.

    Decoded in blocks mixed to mono at once: memory holds the mono result and one block, whatever frames x channels
    a header declares. `max_duration_s` (prepare and score pass Chain.read_limit_s()): only the first seconds are
    decoded. AudioError, each in words: not a regular readable file (check_source), a header rate outside
    MIN_SAMPLE_RATE-MAX_SAMPLE_RATE (before anything is decoded), fewer frames than the header declares (a cut-off
    copy; both counts named), channels that cancel in the mono mix-down. Data beyond a header's count is read
    (audio_header).
    """
    check_source(path)
    try:
        header = audio_header(path)
        with (_Overlaid(path, header.overlay) if header.overlay else nullcontext(str(path))) as source, \
                _ForwardReader(source) as fh:
            sr = fh.samplerate
            if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
                raise AudioError(f"implausible sample rate {sr} Hz in the header of {path} (a damaged header: "
                                 f"audio is {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz)")
            limit = None if max_duration_s is None else max(1, int(np.ceil(max_duration_s * sr)))
            wave = _read_mono(fh, limit, path)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
        raise AudioError(f"unreadable audio {path}: {exc}") from exc
    declared = header.declared
    expected = declared if declared is None or limit is None else min(declared, limit)
    if expected is not None and len(wave) < expected:
        raise AudioError(f"truncated audio {path}: the header declares {declared} frames, the file holds {len(wave)}")
    if sample_rate is not None and sr != sample_rate:
        wave, sr = resample(wave, sr, sample_rate), sample_rate
    return wave.astype(np.float32, copy=False), int(sr)


def _read_mono(fh: sf.SoundFile, limit: int | None, path: str | Path) -> np.ndarray:
    """Up to `limit` frames (None: all) of an open file, mixed to mono float32 block by block; AudioError when the
    channels cancel (x and -x: the mix is silent where a channel is not)."""
    per_block, parts, n, loudest = max(1, BLOCK_SAMPLES // max(1, fh.channels)), [], 0, 0.0
    while limit is None or n < limit:
        want = per_block if limit is None else min(per_block, limit - n)
        block = fh.read(want, dtype="float32", always_2d=True)
        parts.append(block.mean(axis=1))
        loudest = max(loudest, float(np.max(np.abs(block), initial=0.0)))
        n += len(block)
        if len(block) < want:
            break
    wave = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if fh.channels > 1 and loudest >= SILENT_PEAK and np.max(np.abs(wave), initial=0.0) < SILENT_PEAK:
        raise AudioError(f"the {fh.channels} channels of {path} cancel in the mono mix-down (out of phase: the mix is "
                         f"silent, a channel peaks at {20 * np.log10(loudest):.1f} dBFS); keep one channel, e.g. "
                         "`sox in.wav out.wav remix 1`")
    return wave


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
    """Write mono 16-bit FLAC/WAV atomically; return the sha256 of the int16 samples written.

    Encoded in memory, then written as bytes (the same bytes): a full disk is an OSError naming the file and its
    cause (`No space left on device`), where libsndfile writing the file itself said only `System error.`."""
    pcm = to_pcm16(np.asarray(wave, dtype=np.float32).reshape(-1))
    path = Path(path)
    fmt = {".flac": "FLAC", ".wav": "WAV"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"write_audio writes .flac or .wav, not {path.suffix!r}")
    encoded = BytesIO()
    sf.write(encoded, pcm, sample_rate, subtype="PCM_16", format=fmt)
    write_bytes_atomic(encoded.getvalue(), path)
    return hashlib.sha256(pcm.tobytes()).hexdigest()


def rms_dbfs(wave: np.ndarray) -> float:
    """RMS level in dBFS (floored at -120)."""
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if wave.size else 0.0
    return max(20.0 * np.log10(rms + 1e-12), -120.0)


def frame_db(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Level in dB of each FRAME_S frame (the silence, speech and noise-floor measures read it)."""
    n = max(1, int(FRAME_S * sample_rate))
    frames = wave[: len(wave) // n * n].reshape(-1, n) if len(wave) >= n else wave.reshape(1, -1)
    return 10.0 * np.log10(np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-12)


def leading_silence_s(wave: np.ndarray, sample_rate: int, threshold_dbfs: float = SILENCE_DBFS) -> float:
    """Seconds before the first frame louder than `threshold_dbfs` (and louder than peak-40 dB)."""
    db = frame_db(wave, sample_rate)
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
    return float(max(np.percentile(frame_db(wave, sample_rate), 10), -120.0)) if wave.size else -120.0


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
    db = frame_db(wave, sample_rate)
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


def read_pcm16(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit file's samples as int16 (first channel) -> (pcm, sample_rate).

    sha256(pcm.tobytes()) equals what write_audio returned for the file.
    """
    check_source(path)
    try:
        pcm, sr = sf.read(str(path), dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"unreadable audio {path}: {exc}") from exc
    return np.ascontiguousarray(pcm[:, 0]), int(sr)
