"""Codec round trips: encode a real clip, decode it back (CodecFake-style hard fakes).

Systems (names carry the setting):
- `encodec_<kbps>kbps`: EnCodec (the `encodec` package) at a target bandwidth. The model comes from
  the generator directory that fit_codec wrote: its config.json says `source: fitted` (a small
  EncodecModel from the package's SEANet encoder/decoder and residual vector quantizer, weights in
  model.pt), `source: pretrained` (`path`: a local encodec_24khz state dict, or a directory holding
  the package's `encodec_24khz-d7cc33bc.th`) or `source: hub` (encodec_model_24khz(pretrained=True),
  which downloads: for users, never used by tests or the demo).
- `codec2_<mode>`: Codec2 (pycodec2) at 8 kHz, mode 3200/2400/1600/1400/1300/1200/700.
- `mp3_<kbps>kbps`: MPEG layer III, constant bit rate, through soundfile (libsndfile + LAME).
- `opus_<kbps>kbps`: Opus in Ogg through soundfile (libsndfile's VBR target).
Reads the generator directory; writes only `save_codec` (called by fit_codec).
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from pipeline.io import write_json_atomic, write_torch_atomic
from pipeline.resynth.common import Resynthesizer, pad_batch, resample_all

log = logging.getLogger(__name__)

SYSTEMS = ("encodec_6kbps", "encodec_1.5kbps", "codec2_1300", "mp3_8kbps", "opus_6kbps")
SETTING_KEYS = ("systems",)  # the keys of params reconstruct.codec that this backend reads
ENCODEC_24K_FILE = "encodec_24khz-d7cc33bc.th"
CODEC2_MODES = (3200, 2400, 1600, 1400, 1300, 1200, 700)
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)

# Small EnCodec for fit_codec: 16 kHz, hop 320 (50 frames/s), 10-bit codebooks = 0.5 kbps per quantizer.
SMALL_ENCODEC: dict[str, Any] = {
    "sample_rate": 16000, "bandwidths": [1.5, 3.0, 6.0], "n_filters": 8, "dimension": 64,
    "ratios": [8, 5, 4, 2], "lstm": 0, "bins": 1024, "normalize": True,
    "kmeans_iters": 5,  # the package's default (50) costs minutes on CPU at the first training step
}


# ----------------------------------------------------------------------------- EnCodec models


def make_encodec(config: dict) -> torch.nn.Module:
    """A (small) EncodecModel built from the package's SEANet encoder/decoder and RVQ classes."""
    from encodec.model import EncodecModel
    from encodec.modules import SEANetDecoder, SEANetEncoder
    from encodec.quantization import ResidualVectorQuantizer

    c = {**SMALL_ENCODEC, **config}
    kw = dict(channels=1, dimension=int(c["dimension"]), n_filters=int(c["n_filters"]), ratios=list(c["ratios"]),
              norm="weight_norm", causal=False, lstm=int(c["lstm"]))
    encoder, decoder = SEANetEncoder(**kw), SEANetDecoder(**kw)
    frame_rate = math.ceil(int(c["sample_rate"]) / int(np.prod(c["ratios"])))
    bw_per_q = math.log2(int(c["bins"])) * frame_rate / 1000.0
    n_q = max(1, math.ceil(max(c["bandwidths"]) / bw_per_q - 1e-9))
    quantizer = ResidualVectorQuantizer(dimension=int(c["dimension"]), n_q=n_q, bins=int(c["bins"]),
                                        kmeans_iters=int(c["kmeans_iters"]))
    return EncodecModel(encoder, decoder, quantizer, [float(b) for b in c["bandwidths"]], int(c["sample_rate"]), 1,
                        normalize=bool(c["normalize"]), segment=None, name="hardset_small")


def save_codec(model: torch.nn.Module, config: dict, out_dir: str | Path, extra: dict | None = None) -> None:
    """Write model.pt (state_dict) and config.json (source: fitted) atomically into out_dir."""
    out_dir = Path(out_dir)
    write_torch_atomic(model.state_dict(), out_dir / "model.pt")
    write_json_atomic({"source": "fitted", "model": {**SMALL_ENCODEC, **config}, **(extra or {})},
                      out_dir / "config.json")


def load_codec(generator_dir: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The EncodecModel that a generator directory describes (fitted, local pretrained, or hub)."""
    from encodec.model import EncodecModel

    generator_dir = Path(generator_dir)
    cfg_path = generator_dir / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{cfg_path} not found: run fit_codec first (or pass its output as --generator)")
    info = json.loads(cfg_path.read_text())
    source = info.get("source")
    if source == "fitted":
        model = make_encodec(info["model"])
        model.load_state_dict(torch.load(generator_dir / "model.pt", map_location="cpu", weights_only=True))
    elif source == "pretrained":
        path = Path(info["path"])
        if path.is_dir():
            path = path / ENCODEC_24K_FILE
        if not path.exists():
            raise FileNotFoundError(f"EnCodec checkpoint {path} not found (fit_codec.pretrained)")
        model = EncodecModel.encodec_model_24khz(pretrained=False)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    elif source == "hub":  # downloads from dl.fbaipublicfiles.com unless torch.hub's cache has it
        model = EncodecModel.encodec_model_24khz(pretrained=True)
    else:
        raise ValueError(f"{cfg_path}: unknown source {source!r} (fitted | pretrained | hub)")
    return model.eval().to(device), info


class Encodec(Resynthesizer):
    """EnCodec round trip at one target bandwidth (batched, zero-padded)."""

    def __init__(self, system: str, sample_rate: int, model: torch.nn.Module, bandwidth: float,
                 device: torch.device) -> None:
        self.system, self.sample_rate, self.device = system, sample_rate, device
        if bandwidth not in model.target_bandwidths:
            raise ValueError(f"{system}: the EnCodec model has bandwidths {model.target_bandwidths} kbps, "
                             f"not {bandwidth}")
        model.set_target_bandwidth(bandwidth)
        self.model = model

    def process(self, waves: list[np.ndarray], keys: list[str]) -> list[np.ndarray]:
        sr = self.model.sample_rate
        hop = int(np.prod(self.model.encoder.ratios))
        batch, lengths = pad_batch(resample_all(waves, self.sample_rate, sr), multiple=hop)
        with torch.inference_mode(), self.autocast():
            out = self.model(batch.unsqueeze(1).to(self.device))[:, 0].float().cpu().numpy()
        return resample_all([out[i, :n] for i, n in enumerate(lengths)], sr, self.sample_rate)


# ----------------------------------------------------------------------------- classical codecs


class Codec2(Resynthesizer):
    """Codec2 at 8 kHz, each clip decoded in a freshly forked process.

    Why the fork: the codec2 library's decoder draws its synthesis phases from a process-global random
    generator (`codec2_rand`, whose seed is a static variable no API resets), so in one process a
    clip's decoded audio would depend on every clip decoded before it: on batch order, on resume and
    on which other systems ran. A fork starts from the library's initial state (this process never
    decodes), so a clip's output depends only on the clip.
    """

    def __init__(self, system: str, sample_rate: int, mode: int) -> None:
        if mode not in CODEC2_MODES:
            raise ValueError(f"{system}: Codec2 mode {mode} not in {CODEC2_MODES}")
        self.system, self.sample_rate, self.mode = system, sample_rate, mode
        self.align = True

    def process(self, waves: list[np.ndarray], keys: list[str]) -> list[np.ndarray]:
        outs = [_in_fresh_process(_codec2_roundtrip, w, self.mode) for w in resample_all(waves, self.sample_rate, 8000)]
        return resample_all(outs, 8000, self.sample_rate)


def _codec2_roundtrip(wave_8k: np.ndarray, mode: int) -> np.ndarray:
    import pycodec2

    codec = pycodec2.Codec2(mode)
    n = codec.samples_per_frame()
    pcm = np.clip(np.round(wave_8k * 32767.0), -32768, 32767).astype(np.int16)
    pcm = np.pad(pcm, (0, -len(pcm) % n))
    frames = [codec.decode(codec.encode(pcm[i: i + n])) for i in range(0, len(pcm), n)]
    return np.concatenate(frames).astype(np.float32) / 32768.0


def _in_fresh_process(fn: Any, *args: Any) -> np.ndarray:
    """fn(*args) -> ndarray, computed in a forked child (so C libraries start from this process's state)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: compute, send the array as .npy bytes, exit without running parent cleanup
        code = 0
        try:
            os.close(read_fd)
            buf = io.BytesIO()
            np.save(buf, np.asarray(fn(*args)), allow_pickle=False)
            data = buf.getvalue()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as text
            data, code = f"{type(exc).__name__}: {exc}".encode(), 1
        with os.fdopen(write_fd, "wb") as out:
            out.write(data)
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"codec subprocess failed: {data.decode(errors='replace') or status}")
    return np.load(io.BytesIO(data), allow_pickle=False)


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
    """MP3 or Opus round trip through an in-memory file (libsndfile)."""

    def __init__(self, system: str, sample_rate: int, kind: str, kbps: float) -> None:
        self.system, self.sample_rate, self.kind, self.kbps = system, sample_rate, kind, kbps
        self.align = True  # MP3's encoder delay (~1100 samples at 16 kHz) is not removed by the decoder
        if kind == "mp3":
            self.rate = _nearest_rate(sample_rate, MP3_RATES)
            self.kwargs = dict(format="MP3", subtype="MPEG_LAYER_III", bitrate_mode="CONSTANT",
                               compression_level=mp3_compression_level(kbps, self.rate))
        elif kind == "opus":
            self.rate = _nearest_rate(sample_rate, OPUS_RATES)
            self.kwargs = dict(format="OGG", subtype="OPUS", compression_level=opus_compression_level(kbps))
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


# ----------------------------------------------------------------------------- entry point

_NAME = re.compile(r"^(encodec|mp3|opus)_(\d+(?:\.\d+)?)kbps$|^codec2_(\d+)$")


def systems(cfg: dict) -> list[str]:
    """The codec systems named in the config (default: SYSTEMS); a name of no known form is a ValueError."""
    names = list(cfg.get("systems") or SYSTEMS)
    unknown = [s for s in names if not _NAME.match(str(s))]
    if unknown:
        raise ValueError(f"unknown codec systems {unknown}: expected encodec_<kbps>kbps, codec2_<mode>, "
                         f"mp3_<kbps>kbps or opus_<kbps>kbps (e.g. {list(SYSTEMS)})")
    return names


def build(system: str, cfg: dict, device: torch.device | str = "cpu") -> Resynthesizer:
    """A codec Resynthesizer; `cfg["generator"]` is fit_codec's output directory (EnCodec only)."""
    device = torch.device(device)
    sr = int(cfg.get("sample_rate", 16000))
    m = _NAME.match(system)
    if not m:
        raise ValueError(f"unknown codec system {system!r}: expected encodec_<kbps>kbps, codec2_<mode>, "
                         "mp3_<kbps>kbps or opus_<kbps>kbps")
    if m.group(3):
        return Codec2(system, sr, int(m.group(3)))
    kind, kbps = m.group(1), float(m.group(2))
    if kind == "encodec":
        if not cfg.get("generator"):
            raise ValueError(f"{system}: no EnCodec generator directory given (fit_codec's output)")
        model, _ = load_codec(cfg["generator"], device)
        return Encodec(system, sr, model, kbps, device)
    return SoundfileCodec(system, sr, kind, kbps)
