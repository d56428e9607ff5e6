"""Match a fake to its parent: the one step that makes them differ only by the generator (DESIGN.md's shortcut guards).

`match_to_parent` gives a fake its parent's band, level, length (where the generator keeps it), leading and trailing
silence, and, with the parent gate, the parent's own non-speech audio, so that no generator noise or digital silence
in pauses tells the class. reconstruct (copy-syntheses) and prepare (the TTS and corpus fakes that name a parent)
both call it and record `match_record` in the clip table's `matched` column. Pure functions on waves (numpy); the
measures are pipeline.audio's.
"""

from __future__ import annotations

import numpy as np

from pipeline.audio import FRAME_S, SILENCE_DBFS, bandwidth_hz, frame_db, lowpass, match_length, rms_dbfs

GATES = ("parent", "none")  # what fills a fake's non-speech regions: its parent's audio there, or nothing changed


def speech_mask(wave: np.ndarray, sample_rate: int, hang_s: float = 0.1, fade_s: float = 0.01) -> np.ndarray:
    """A per-sample weight in [0, 1]: 1 in speech, 0 in non-speech, raised-cosine ramps of `fade_s` between.

    Speech frames are the 20 ms frames above the silence threshold of `leading_silence_s` (-45 dBFS or peak - 40 dB),
    widened by `hang_s` on each side so that soft onsets and word endings count as speech.
    """
    n = max(1, int(FRAME_S * sample_rate))
    db = frame_db(wave, sample_rate)
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


def match_quiet_frames(fake: np.ndarray, parent: np.ndarray, sample_rate: int,
                       max_boost_db: float = 12.0) -> np.ndarray:
    """`fake` with each of its parent's quiet 20 ms frames brought to the parent's level there (same-length fakes).

    The parent gate leaves the generator's output in the `hang_s` margins around speech, where a codec's pre-echo or
    a vocoder's hiss would move the fake's measured silences and noise floor (the audit caught EnCodec at 3% EER on
    them). Frames the parent has below the silence threshold get the parent's frame level (a cut, or a boost of at most
    `max_boost_db`); the gain is interpolated in dB between frame centres, so no step is added.
    """
    n = max(1, int(FRAME_S * sample_rate))
    if len(fake) != len(parent) or len(fake) < 2 * n:
        return fake
    p_db = frame_db(parent, sample_rate)
    quiet = p_db <= max(SILENCE_DBFS, float(p_db.max()) - 40.0)
    centres = np.arange(len(p_db)) * n + n / 2.0
    out = np.asarray(fake, dtype=np.float64)
    for _ in range(2):  # the interpolation leaves part of a step at speech edges: a second pass takes most of it
        gain_db = np.where(quiet, np.clip(p_db - frame_db(out, sample_rate), -120.0, max_boost_db), 0.0)
        out = out * 10.0 ** (np.interp(np.arange(len(out)), centres, gain_db) / 20.0)
    return out.astype(np.float32)


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
    mask: `hang_s` around loud frames, `fade_s` crossfades) are the parent's own audio, and the parent's quiet frames
    within those margins get the parent's level (match_quiet_frames), so leading and trailing silence and the noise
    floor are the parent's and no generator noise remains there. Otherwise (TTS: the length
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
    if same_length and gate == "parent":
        out = match_quiet_frames(out, parent.astype(np.float32), sample_rate)
    target, have = rms_dbfs(parent), rms_dbfs(out)
    if have > -120.0:
        out = out * np.float32(10 ** ((target - have) / 20.0))
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 0.999:  # matching the level must not clip: scale down rather than distort
        out = out * np.float32(0.999 / peak)
    return out.astype(np.float32), match_record(gate, same_length)
