"""Synthetic demo voices (the tiny profile, CI): formant-filtered glottal pulses, no apt and no TTS.

Several bona fide speakers (f0 and vocal-tract length drawn per speaker) plus two synthetic spoof
systems: `synth_buzz` (a perfectly periodic source, a crude TTS) and `synth_vocoded` (a noisy-phase
STFT resynthesis, a crude vocoder). Writes 16-bit wav clips at SYNTHETIC_RATE into the build.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import signal

from pipeline.audio import write_audio
from pipeline.demo.common import FORMAT_VERSION, UNSEEN_SPLIT, Build, SourceInfo
from pipeline.logs import progress

SYNTHETIC_RATE = 16000
# (F1, F2, F3) of a few vowels, Hz (adult male averages); speakers scale them by a vocal-tract factor.
VOWELS = {"a": (730, 1090, 2440), "i": (270, 2290, 3010), "u": (300, 870, 2240), "e": (530, 1840, 2480),
          "o": (570, 840, 2410)}
CONSONANTS = "bdgkmnpstl"
SYNTHETIC_SYSTEMS = ("synth_buzz", "synth_vocoded")


def _resonator(x: np.ndarray, freq: float, bw: float, sr: int) -> np.ndarray:
    r = np.exp(-np.pi * bw / sr)
    a = [1.0, -2.0 * r * np.cos(2 * np.pi * freq / sr), r * r]
    return signal.lfilter([1.0 - r], a, x)


def synth_utterance(rng: np.random.Generator, sr: int, duration_s: float, f0: float, tract: float,
                    style: str = "natural") -> tuple[np.ndarray, str]:
    """A speech-like utterance: glottal pulses through per-syllable formant filters, with syllable envelopes.

    `style`: `natural` (jitter, shimmer, breath noise, f0 declination), `buzz` (perfectly periodic
    sawtooth source, flat f0, no breath: a crude TTS), `vocoded` (natural source re-synthesised from
    10 ms frames with noisy phase and stepped formants: a crude vocoder).
    """
    lead, trail = rng.uniform(0.1, 0.25), rng.uniform(0.1, 0.25)
    n_voice = max(int((duration_s - lead - trail) * sr), int(0.3 * sr))
    syl_s = rng.uniform(0.16, 0.24)
    n_syl = max(1, int(n_voice / (syl_s * sr)))
    syl_len = n_voice // n_syl
    n_voice = syl_len * n_syl
    t = np.arange(n_voice) / sr
    # f0 contour: declination plus a slow wobble, per-period jitter in the natural style
    contour = f0 * (1.08 - 0.16 * t / max(t[-1], 1e-3)) * (1 + 0.04 * np.sin(2 * np.pi * rng.uniform(1, 3) * t))
    if style == "buzz":
        contour = np.full_like(t, f0)
    phase = np.cumsum(contour / sr)
    if style == "buzz":
        source = 2.0 * (phase % 1.0) - 1.0  # sawtooth
    else:
        jitter = 1 + 0.01 * rng.standard_normal(int(phase[-1]) + 2)
        cyc = np.floor(phase).astype(int)
        frac = phase % 1.0
        # Rosenberg-like glottal pulse: opening 40%, closing 16% of the period
        pulse = np.where(frac < 0.4, 0.5 * (1 - np.cos(np.pi * frac / 0.4)),
                         np.where(frac < 0.56, np.cos(np.pi * (frac - 0.4) / 0.32), 0.0))
        source = np.diff(pulse, prepend=0.0) * jitter[cyc] * sr / 100.0
        source += 0.02 * rng.standard_normal(n_voice)  # breath
    vowels = list(VOWELS)
    out = np.zeros(n_voice)
    text = []
    for s in range(n_syl):
        v = vowels[rng.integers(len(vowels))]
        c = CONSONANTS[rng.integers(len(CONSONANTS))]
        text.append(c + v)
        sl = slice(s * syl_len, (s + 1) * syl_len)
        seg = source[sl]
        y = np.zeros_like(seg)
        bws = (80, 110, 160) if style != "vocoded" else (200, 260, 320)
        for fmt, bw in zip(VOWELS[v], bws):
            y += _resonator(seg, fmt * tract, bw, sr)
        # consonant burst at the syllable onset
        burst = int(0.03 * sr)
        y[:burst] += 0.3 * rng.standard_normal(burst) * np.linspace(1, 0, burst)
        env = np.sin(np.pi * np.linspace(0, 1, len(seg))) ** 0.6
        out[sl] = y * env
    if style == "vocoded":
        _, _, spec = signal.stft(out, fs=sr, nperseg=int(0.02 * sr), noverlap=int(0.01 * sr))
        mag = np.abs(spec)
        noisy_phase = np.angle(spec) + rng.uniform(-1.2, 1.2, size=spec.shape)
        _, out = signal.istft(mag * np.exp(1j * noisy_phase), fs=sr, nperseg=int(0.02 * sr),
                              noverlap=int(0.01 * sr))
        out = out[:n_voice]
    out = out / (np.max(np.abs(out)) + 1e-9) * rng.uniform(0.3, 0.6)
    wave = np.concatenate([np.zeros(int(lead * sr)), out, np.zeros(int(trail * sr))])
    wave += 1e-4 * rng.standard_normal(len(wave))  # room noise floor, so silence is not digital zero
    return wave.astype(np.float32), " ".join(text)


def make_synthetic(build: Build, n_speakers: int, clips_per_speaker: int, spoof_clips: int, min_s: float,
                   max_s: float, rng: np.random.Generator) -> None:
    """`n_speakers` bona fide speakers and `spoof_clips` clips of two spoof systems, each clip `min_s`-`max_s` s."""
    source = "synthetic"
    build.sources[source] = SourceInfo(source, f"hardset fetch_demo format {FORMAT_VERSION}", "CC0-1.0 (generated)",
                                       "generated in code (fetch_demo.synthetic: true)")
    speakers = []
    for s in range(n_speakers):
        female = s % 2 == 1
        f0 = rng.uniform(180, 240) if female else rng.uniform(95, 140)
        tract = rng.uniform(1.1, 1.25) if female else rng.uniform(0.9, 1.05)
        spk = f"synth_spk{s:02d}"
        speakers.append((spk, f0, tract))
        build.sources[source].speakers[spk] = f"synthetic {'female' if female else 'male'} f0={f0:.0f} Hz " \
                                              f"tract={tract:.2f}"
    items = [("bonafide", spk, f0, tract, "natural") for spk, f0, tract in speakers
             for _ in range(clips_per_speaker)]
    for k in range(spoof_clips):
        system = SYNTHETIC_SYSTEMS[k % len(SYNTHETIC_SYSTEMS)]
        spk, f0, tract = speakers[k % len(speakers)] if speakers else ("synth_spk00", 120.0, 1.0)
        items.append(("spoof", system, f0, tract, system.removeprefix("synth_")))
    counters: dict[str, int] = {}
    for label, who, f0, tract, style in progress(items, desc="fetch_demo synthetic"):
        dur = rng.uniform(min_s, max_s)
        wave, text = synth_utterance(rng, SYNTHETIC_RATE, dur, f0, tract, style)
        k = counters[who] = counters.get(who, -1) + 1
        rel = Path("audio") / source / who / f"{who}_{k:03d}.wav"
        write_audio(build.root / rel, wave, SYNTHETIC_RATE)
        if label == "bonafide":
            build.add(str(rel), who, "bonafide", "-", "bonafide", "syn", text, source)
        else:
            build.add(str(rel), who, "spoof", who, "tts", "syn", text, source, split=UNSEEN_SPLIT)
