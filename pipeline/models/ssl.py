"""Self-supervised (SSL) front ends through `transformers`: wav2vec 2.0 / XLS-R, WavLM, HuBERT + a back end.

Config keys (arch `ssl`):
- `ssl_path`: a local directory (offline) or a hub name (where the network is available) that
  `AutoModel.from_pretrained` loads (Wav2Vec2Model, WavLMModel, HubertModel, ...);
- `ssl_layer`: "weighted" (a learned softmax-weighted sum of all hidden states, the CNN-projection
  output included, as in SUPERB) or an integer index into the hidden states (0 = before the transformer);
- `ssl_freeze`: true keeps the SSL weights fixed (and the SSL model in eval mode, no dropout);
  false fine-tunes them with the back end;
- `backend`: "linear" (time-mean pooling -> Linear(hidden, embedding_dim) -> ReLU -> Linear(., 2)) or
  "aasist" (Linear(hidden, 128) on every frame -> a [B, 1, 128, frames] map -> AASIST's residual
  encoder and graph attention back end, as in Tak et al., Odyssey 2022, "Automatic speaker verification
  spoofing and deepfake detection using wav2vec 2.0 and data augmentation").
A checkpoint stores the SSL model's own config (`ssl_config`) beside the weights, so it loads without
`ssl_path` (the architecture is rebuilt from the config, then the saved weights are loaded).
Features: "ssl" (the selected/weighted hidden state, time-mean pooled), "hidden<k>" (each hidden
state pooled, for multi-layer teacher embeddings) and "penultimate" (the back end's readout).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.aasist import ResBlock, build_graph, graph_forward
from pipeline.models.base import Detector, resolve_config

SSL_BACKENDS = ("linear", "aasist")
SSL_DEFAULTS: dict[str, Any] = {
    "frontend": "ssl",
    "sample_rate": 16000,
    "ssl_path": None,
    "ssl_config": None,         # filled in from the loaded model: makes checkpoints self-contained
    "ssl_layer": "weighted",
    "ssl_freeze": True,
    "ssl_normalize": False,     # per-clip zero mean / unit variance first (the feature extractors' do_normalize)
    "backend": "linear",
    "embedding_dim": 128,       # linear back end; the aasist back end's readout is 5 * gat_dims[1]
    "dropout": 0.1,
    "graph_bins": 128,          # aasist back end: frame projection size (the map's "frequency" axis)
    "filts": [[1, 32], [32, 32], [32, 64], [64, 64]],
    "pools": [2, 2, 1, 1],      # time pooling per residual block (SSL frames are 20 ms: few to spare)
    "gat_dims": [64, 32],
    "pool_ratios": [0.5, 0.5, 0.5, 0.5],
    "temperatures": [2.0, 2.0, 100.0, 100.0],
}


def load_ssl(config: dict[str, Any]) -> nn.Module:
    """The transformers SSL model: rebuilt from `ssl_config` when present (a checkpoint), else from_pretrained."""
    from transformers import AutoConfig, AutoModel  # optional dependency: imported only for arch `ssl`

    if config.get("ssl_config"):
        cfg = dict(config["ssl_config"])
        return AutoModel.from_config(AutoConfig.for_model(cfg.pop("model_type"), **cfg))
    if not config.get("ssl_path"):
        raise ValueError("arch 'ssl' needs `ssl_path`: a local model directory or a hub name")
    return AutoModel.from_pretrained(str(config["ssl_path"]))


class GraphBackend(nn.Module):
    """AASIST's encoder and graph attention over SSL frames projected to `graph_bins` values."""

    def __init__(self, hidden: int, c: dict[str, Any]) -> None:
        super().__init__()
        bins, filts = int(c["graph_bins"]), c["filts"]
        self.proj = nn.Linear(hidden, bins)
        self.first_bn = nn.BatchNorm2d(1)
        self.encoder = nn.Sequential(*[ResBlock(int(a), int(b), first=k == 0, pool=int(p))
                                       for k, ((a, b), p) in enumerate(zip(filts, c["pools"]))])
        build_graph(self, int(filts[-1][-1]), bins // 3, c["gat_dims"], c["pool_ratios"], c["temperatures"])

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = self.proj(frames).transpose(1, 2).unsqueeze(1)          # [B, 1, bins, frames]
        x = F.selu(self.first_bn(F.max_pool2d(x, (3, 3))))
        return graph_forward(self, self.encoder(x))


class SSLDetector(Detector):
    """An SSL speech model (transformers) as the front end of a linear or AASIST-style back end."""

    arch = "ssl"
    defaults: dict[str, Any] = SSL_DEFAULTS

    def __init__(self, config: dict[str, Any]) -> None:
        nn.Module.__init__(self)
        c = resolve_config(type(self), config)
        if c["backend"] not in SSL_BACKENDS:
            raise ValueError(f"ssl: backend must be one of {SSL_BACKENDS}, not {c['backend']!r}")
        self.ssl = load_ssl(c)
        c["frontend"] = "ssl"
        c["ssl_config"] = self.ssl.config.to_dict()
        n_states, hidden = int(self.ssl.config.num_hidden_layers) + 1, int(self.ssl.config.hidden_size)
        layer = c["ssl_layer"]
        if layer != "weighted" and not (isinstance(layer, int) and -n_states <= layer < n_states):
            raise ValueError(f"ssl: ssl_layer must be 'weighted' or an index of the {n_states} hidden states, "
                             f"not {layer!r}")
        if layer == "weighted":
            self.layer_weights = nn.Parameter(torch.zeros(n_states))
        if c["ssl_freeze"]:
            self.ssl.requires_grad_(False)
        if c["backend"] == "linear":
            self.embed = nn.Sequential(nn.Linear(hidden, int(c["embedding_dim"])), nn.ReLU())
            self.dropout = nn.Dropout(float(c["dropout"]))
            self.classifier = nn.Linear(int(c["embedding_dim"]), 2)
        else:
            self.backend = GraphBackend(hidden, c)
            c["embedding_dim"] = 5 * int(c["gat_dims"][1])
        self.config = c
        self.layer_names = [f"hidden{k}" for k in range(n_states)] + ["ssl"]
        self._dims = {name: hidden for name in self.layer_names}

    def train(self, mode: bool = True) -> SSLDetector:
        super().train(mode)
        if self.config["ssl_freeze"]:
            self.ssl.eval()  # a frozen SSL model stays deterministic (no dropout, no feature masking)
        return self

    def layer_dims(self) -> dict[str, int]:
        return {**self._dims, "penultimate": self.embedding_dim}

    def forward_with_features(self, wave: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if wave.dim() != 2:
            raise ValueError(f"ssl expects a waveform batch [B, T], got shape {tuple(wave.shape)}")
        wave = wave.float()
        if self.config["ssl_normalize"]:
            wave = (wave - wave.mean(dim=1, keepdim=True)) / torch.sqrt(wave.var(dim=1, keepdim=True) + 1e-7)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config["ssl_freeze"]):
            states = self.ssl(wave, output_hidden_states=True).hidden_states
        if self.config["ssl_layer"] == "weighted":
            w = torch.softmax(self.layer_weights, dim=0)
            frames = sum(w[k] * h for k, h in enumerate(states))
        else:
            frames = states[int(self.config["ssl_layer"])]
        feats = {f"hidden{k}": h.mean(dim=1) for k, h in enumerate(states)}
        feats["ssl"] = frames.mean(dim=1)
        if self.config["backend"] == "linear":
            pen = self.embed(feats["ssl"])
            feats["penultimate"] = pen
            return self.classifier(self.dropout(pen)), feats
        logits, graph_feats = self.backend(frames)
        feats["penultimate"] = graph_feats["penultimate"]
        return logits, feats
