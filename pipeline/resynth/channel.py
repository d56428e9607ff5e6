"""Transmission and compression channels: round trips that keep the label (role `channel`).

A channel is applied to bona fide and spoof clips alike (training augmentation, evaluation conditions), as
ASVspoof 2021 LA/DF and ASVspoof 5 apply codecs and transmission to both classes; it never makes a spoof row
(pipeline.schema.system_role). Systems, names carrying the setting:
- `mp3_<kbps>kbps`: MPEG layer III, constant bit rate, through soundfile (libsndfile + LAME);
- `opus_<kbps>kbps`: Opus in Ogg through soundfile (libsndfile's VBR target);
- `codec2_<mode>`: Codec2 (pycodec2) at 8 kHz, mode 3200/2400/1600/1400/1300/1200/700;
- telephone codecs at 8 kHz through libsndfile's WAV subtypes: `g711_mulaw` and `g711_alaw` (G.711, 64 kbit/s),
  `gsm_fr` (GSM 06.10 full rate, 13 kbit/s), `g726_32` (G.721/G.726 ADPCM, 32 kbit/s);
- `g722`: wideband telephony, G.722 sub-band ADPCM at 64 kbit/s and 16 kHz (7 kHz audio band), through the
  public-domain G722 wheel (the codec of the demo's asterisk prompts).
AMR and Speex have no offline encoder on PyPI or in Debian's Python packages here, so they are not offered.
Every round trip is deterministic for a clip (Codec2's random phases included, see Codec2), reads and writes no
file, and returns a wave at the input's rate and length (encoder delay removed by cross-correlation).
"""

from __future__ import annotations

import atexit
import io
import os
import re
import struct
import subprocess
import sys
import threading
from typing import Any

import numpy as np
import soundfile as sf

from pipeline.resynth.common import Resynthesizer, resample_all

SYSTEMS = ("mp3_16kbps", "opus_8kbps", "codec2_1300", "g711_mulaw", "g711_alaw", "gsm_fr", "g726_32", "g722")
FAMILIES = ("mp3", "opus", "codec2", "g711", "gsm", "g726", "g722")  # pipeline.schema.CHANNEL_FAMILIES mirrors this
CODEC2_MODES = (3200, 2400, 1600, 1400, 1300, 1200, 700)
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
TELEPHONE = {"g711_mulaw": "ULAW", "g711_alaw": "ALAW", "gsm_fr": "GSM610", "g726_32": "G721_32"}
TELEPHONE_RATE = 8000
G722_RATE, G722_BITRATE = 16000, 64000

NAME = re.compile(r"^(mp3|opus)_(\d+(?:\.\d+)?)kbps$|^codec2_(\d+)$|^(g711_mulaw|g711_alaw|gsm_fr|g726_32)$|^(g722)$")


def is_channel_name(system: str) -> bool:
    """True when `system` is a name this module builds."""
    return bool(NAME.match(str(system)))


# ----------------------------------------------------------------------------- Codec2


_CODEC2_HELPER = r"""
import os, struct, sys
import numpy as np

def roundtrip(mode, pcm):
    import pycodec2
    codec = pycodec2.Codec2(mode)
    n = codec.samples_per_frame()
    pcm = np.pad(pcm, (0, -len(pcm) % n))
    return np.concatenate([codec.decode(codec.encode(pcm[i:i + n])) for i in range(0, len(pcm), n)]).astype(np.int16)

import pycodec2  # loaded once; it never decodes in this process, so every fork starts from its initial state
inp, out = sys.stdin.buffer, sys.stdout.buffer
while True:
    head = inp.read(8)
    if len(head) < 8:
        break
    mode, n = struct.unpack("<ii", head)
    pcm = np.frombuffer(inp.read(2 * n), dtype=np.int16)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            data, code = roundtrip(mode, pcm).tobytes(), 0
        except BaseException as exc:
            data, code = f"{type(exc).__name__}: {exc}".encode(), 1
        with os.fdopen(w, "wb") as fh:
            fh.write(struct.pack("<ii", code, len(data)) + data)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        reply = fh.read()
    os.waitpid(pid, 0)
    out.write(reply)
    out.flush()
"""


class _Codec2Helper:
    """A small Python process (numpy + pycodec2, no torch) started once; it forks a child per clip.

    Why: the codec2 library draws its synthesis phases from a process-global generator that no API resets, so
    decoding in one long-lived process would make a clip's output depend on every clip decoded before it. A
    fork of a process that never decoded starts from the library's initial state. Forking this small helper
    costs about a millisecond, where forking the torch-sized stage process cost 80-140 ms a clip.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
            self.proc = subprocess.Popen([sys.executable, "-c", _CODEC2_HELPER], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, env=env)
        return self.proc

    def roundtrip(self, mode: int, pcm: np.ndarray) -> np.ndarray:
        """Encode and decode int16 8 kHz samples in a fresh fork of the helper -> int16 samples."""
        with self.lock:
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(struct.pack("<ii", int(mode), len(pcm)) + pcm.astype("<i2").tobytes())
                proc.stdin.flush()
                head = proc.stdout.read(8)
                code, n = struct.unpack("<ii", head)
                data = proc.stdout.read(n)
            except (BrokenPipeError, struct.error) as exc:
                self.close()
                raise RuntimeError(f"codec2 helper process failed: {exc}") from exc
        if code != 0:
            raise RuntimeError(f"codec2 round trip failed: {data.decode(errors='replace')}")
        return np.frombuffer(data, dtype="<i2").astype(np.int16)

    def close(self) -> None:
        """Stop the helper (it exits at end of input)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()


_HELPER = _Codec2Helper()
atexit.register(_HELPER.close)


class Codec2(Resynthesizer):
    """Codec2 at 8 kHz through the helper process: a clip's output depends on the clip alone."""

    def __init__(self, system: str, sample_rate: int, mode: int) -> None:
        if mode not in CODEC2_MODES:
            raise ValueError(f"{system}: Codec2 mode {mode} not in {CODEC2_MODES}")
        self.system, self.sample_rate, self.mode = system, sample_rate, mode
        self.align = True

    def process(self, waves: list[np.ndarray], keys: list[str]) -> list[np.ndarray]:
        outs = []
        for w in resample_all(waves, self.sample_rate, TELEPHONE_RATE):
            pcm = np.clip(np.round(w * 32767.0), -32768, 32767).astype(np.int16)
            outs.append(_HELPER.roundtrip(self.mode, pcm).astype(np.float32) / 32768.0)
        return resample_all(outs, TELEPHONE_RATE, self.sample_rate)


# ----------------------------------------------------------------------------- libsndfile codecs


def _nearest_rate(sr: int, rates: tuple[int, ...]) -> int:
    above = [r for r in rates if r >= sr]
    return min(above) if above else max(rates)


def mp3_compression_level(kbps: float, sample_rate: int) -> float:
    """libsndfile's compression level for a LAME constant bit rate (0 = max rate, 1 = min rate).

    libsndfile maps the level linearly onto the MPEG version's bit-rate range: 32-320 kbps
    (MPEG-1, >= 32 kHz), 8-160 (MPEG-2, 16-24 kHz), 8-64 (MPEG-2.5, <= 12 kHz); LAME then picks
    the nearest legal rate.
    """
    lo, hi = (32.0, 320.0) if sample_rate >= 32000 else (8.0, 160.0) if sample_rate >= 16000 else (8.0, 64.0)
    if not lo <= kbps <= hi:
        raise ValueError(f"MP3 at {sample_rate} Hz supports {lo:g}-{hi:g} kbps, not {kbps:g}")
    return float(min(0.999, max(0.0, (hi - kbps) / (hi - lo))))


def opus_compression_level(kbps: float) -> float:
    """libsndfile's Opus compression level for a target bit rate: level = 1 - (kbps - 6) / 250."""
    if not 6.0 <= kbps <= 256.0:
        raise ValueError(f"Opus through libsndfile supports 6-256 kbps, not {kbps:g}")
    return float(1.0 - (kbps - 6.0) / 250.0)


class SoundfileCodec(Resynthesizer):
    """A round trip through an in-memory file (libsndfile): MP3, Opus or a telephone WAV codec."""

    def __init__(self, system: str, sample_rate: int, kind: str, kbps: float | None = None) -> None:
        self.system, self.sample_rate, self.kind, self.kbps = system, sample_rate, kind, kbps
        self.align = True  # MP3's encoder delay (~1100 samples at 16 kHz) is not removed by the decoder
        if kind == "mp3":
            self.rate = _nearest_rate(sample_rate, MP3_RATES)
            self.kwargs = dict(format="MP3", subtype="MPEG_LAYER_III", bitrate_mode="CONSTANT",
                               compression_level=mp3_compression_level(float(kbps or 0), self.rate))
        elif kind == "opus":
            self.rate = _nearest_rate(sample_rate, OPUS_RATES)
            self.kwargs = dict(format="OGG", subtype="OPUS", compression_level=opus_compression_level(float(kbps or 0)))
        elif kind in TELEPHONE:
            self.rate = TELEPHONE_RATE  # the telephone band: 8 kHz, whatever the clip rate
            self.kwargs = dict(format="WAV", subtype=TELEPHONE[kind])
        else:
            raise ValueError(f"unknown soundfile codec {kind!r}")

    def roundtrip(self, wave: np.ndarray) -> tuple[np.ndarray, int]:
        """Encode and decode one wave at the codec rate -> (decoded, encoded bytes)."""
        buf = io.BytesIO()
        sf.write(buf, np.clip(wave, -1.0, 1.0), self.rate, **self.kwargs)
        size = buf.tell()
        buf.seek(0)
        decoded, _ = sf.read(buf, dtype="float32", always_2d=True)
        return decoded.mean(axis=1), size

    def process(self, waves: list[np.ndarray], keys: list[str]) -> list[np.ndarray]:
        outs = [self.roundtrip(w)[0] for w in resample_all(waves, self.sample_rate, self.rate)]
        return resample_all(outs, self.rate, self.sample_rate)


class G722Codec(Resynthesizer):
    """G.722 at 64 kbit/s: 16 kHz sub-band ADPCM (a fresh encoder and decoder per clip: no state between clips)."""

    def __init__(self, system: str, sample_rate: int) -> None:
        self.system, self.sample_rate = system, sample_rate
        self.align = True  # the QMF filter bank delays the decoded signal by a few samples

    def process(self, waves: list[np.ndarray], keys: list[str]) -> list[np.ndarray]:
        try:
            import G722 as g722
        except ImportError as exc:
            raise RuntimeError("the g722 channel needs the G722 wheel: pip install G722==1.2.8") from exc
        outs = []
        for w in resample_all(waves, self.sample_rate, G722_RATE):
            pcm = np.clip(np.round(w * 32767.0), -32768, 32767).astype(np.int16)
            coded = g722.G722(G722_RATE, G722_BITRATE).encode(pcm)
            outs.append(np.asarray(g722.G722(G722_RATE, G722_BITRATE).decode(coded), dtype=np.float32) / 32768.0)
        return resample_all(outs, G722_RATE, self.sample_rate)


# ----------------------------------------------------------------------------- entry points


def systems(names: Any = None) -> list[str]:
    """Channel system names (default: SYSTEMS); a name of no known form is a ValueError."""
    names = list(names or SYSTEMS)
    unknown = [s for s in names if not is_channel_name(s)]
    if unknown:
        raise ValueError(f"unknown channel systems {unknown}: expected mp3_<kbps>kbps, opus_<kbps>kbps, "
                         f"codec2_<mode>, g711_mulaw, g711_alaw, gsm_fr, g726_32 or g722 (e.g. {list(SYSTEMS)})")
    return names


def build(system: str, sample_rate: int = 16000) -> Resynthesizer:
    """The round trip of one channel system at `sample_rate` (a ValueError for an unknown name or setting)."""
    m = NAME.match(str(system))
    if not m:
        systems([system])
    assert m is not None
    if m.group(3):
        return Codec2(system, sample_rate, int(m.group(3)))
    if m.group(4):
        return SoundfileCodec(system, sample_rate, m.group(4))
    if m.group(5):
        return G722Codec(system, sample_rate)
    return SoundfileCodec(system, sample_rate, m.group(1), float(m.group(2)))
