"""Neural codec round trips: encode a real clip, decode it back (CodecFake-style hard fakes, role `spoof`).

The codec paradigm holds neural codecs, whose output is a generator's (CodecFake labels neural-codec
resynthesis spoof). Classical codecs (MP3, Opus, Codec2, telephone codecs) are channels that keep the label
(pipeline.resynth.channel); a channel name listed here is built through that module, and reconstruct makes
rows only for the systems whose role (pipeline.schema.system_role, params `roles`) is spoof.
Systems (names carry the setting):
- `encodec_<kbps>kbps`: EnCodec (the `encodec` package) at a target bandwidth. The model comes from
  the generator directory that fit_codec wrote: its config.json says `source: fitted` (a small
  EncodecModel from the package's SEANet encoder/decoder and residual vector quantizer, weights in
  model.pt), `source: pretrained` (`path`: a local encodec_24khz state dict, or a directory holding
  the package's `encodec_24khz-d7cc33bc.th`) or `source: hub` (encodec_model_24khz(pretrained=True),
  which downloads: for users, never used by tests or the demo).
- any pipeline.resynth.channel name (mp3_16kbps, codec2_1300, g711_mulaw, ...), for a user who flips one to spoof.
Reads the generator directory; writes only `save_codec` (called by fit_codec).
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.io import write_json_atomic, write_torch_atomic
from pipeline.resynth import channel
from pipeline.resynth.common import Resynthesizer, pad_batch, resample_all

log = logging.getLogger(__name__)

SYSTEMS = ("encodec_6kbps", "encodec_3kbps", "encodec_1.5kbps")
SETTING_KEYS = ("systems",)  # the keys of params reconstruct.codec that this backend reads
ENCODEC_24K_FILE = "encodec_24khz-d7cc33bc.th"

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


# ----------------------------------------------------------------------------- entry point

_NAME = re.compile(r"^encodec_(\d+(?:\.\d+)?)kbps$")


def systems(cfg: dict) -> list[str]:
    """The codec systems named in the config (default: SYSTEMS); a name of no known form is a ValueError."""
    names = list(cfg.get("systems") or SYSTEMS)
    unknown = [s for s in names if not (_NAME.match(str(s)) or channel.is_channel_name(s))]
    if unknown:
        raise ValueError(f"unknown codec systems {unknown}: expected encodec_<kbps>kbps (e.g. {list(SYSTEMS)}) or a "
                         f"channel name ({list(channel.SYSTEMS)})")
    return names


def build(system: str, cfg: dict, device: torch.device | str = "cpu") -> Resynthesizer:
    """A codec Resynthesizer; `cfg["generator"]` is fit_codec's output directory (EnCodec only)."""
    device = torch.device(device)
    sr = int(cfg.get("sample_rate", 16000))
    if channel.is_channel_name(system):
        return channel.build(system, sr)
    m = _NAME.match(system)
    if not m:
        raise ValueError(f"unknown codec system {system!r}: expected encodec_<kbps>kbps or a channel name")
    if not cfg.get("generator"):
        raise ValueError(f"{system}: no EnCodec generator directory given (fit_codec's output)")
    model, _ = load_codec(cfg["generator"], device)
    return Encodec(system, sr, model, float(m.group(1)), device)
