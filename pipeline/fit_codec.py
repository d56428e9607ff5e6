"""Stage fit_codec: train a small EnCodec on the bona fide train clips, or record a pretrained one.

Reads data/clips.parquet (label bonafide, split train) and the clip audio; writes --out
(data/generators/codec/): config.json always; model.pt (state_dict) and metrics.json when it trains.
With `fit_codec.pretrained` set (a local encodec_24khz checkpoint path, or `hub` for
EncodecModel.encodec_model_24khz(pretrained=True), which downloads) nothing is trained: config.json
records the source and reconstruct loads from it.

Model: the encodec package's SEANetEncoder/SEANetDecoder and ResidualVectorQuantizer at
audio.sample_rate (hop 320 at 16 kHz, 0.5 kbps per codebook), one of `bandwidths` drawn per step
(quantizer dropout, as EnCodec trains). Loss = pipeline.resynth.losses.CodecLoss (multi-resolution STFT
+ `mel_weight` * log-mel L1) + `commit_weight` * the quantizer's commitment penalty; the codebooks follow
the package's EMA/k-means updates. The steps run on the one training loop (pipeline.resynth.fitting.fit_steps:
Adam, gradient norm clipped to 10); this module supplies the batch, the step and the logged loss terms.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from pipeline.io import atomic_dir, write_json_atomic
from pipeline.params import mapping, number, section, start_stage
from pipeline.resynth.codec import SMALL_ENCODEC, make_encodec, save_codec
from pipeline.resynth.fitting import (
    FitParams,
    check_like_defaults,
    fit_parser,
    fit_steps,
    random_segments,
    run_fit,
    training_waves,
)
from pipeline.resynth.losses import CodecLoss

log = logging.getLogger("pipeline.fit_codec")

STAGE = "fit_codec"
MAX_GRAD_NORM = 10.0


@dataclass(frozen=True)
class FitCodecParams(FitParams):
    """The fit_codec section of params.yaml."""

    NAME: ClassVar[str] = STAGE

    pretrained: str | None = None
    segment_s: float = 1.0
    mel_weight: float = 1.0
    commit_weight: float = 1.0
    model: dict = field(default_factory=dict)  # overrides of SMALL_ENCODEC (n_filters, dimension, bandwidths, ...)

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        return {**kw, "model": mapping("fit_codec.model", kw.get("model"))}

    def check(self) -> None:
        super().check()
        number("fit_codec.segment_s", self.segment_s, low=0, low_open=True)
        for key in ("mel_weight", "commit_weight"):
            number(f"fit_codec.{key}", getattr(self, key), low=0)
        overridable = {k: v for k, v in SMALL_ENCODEC.items() if k != "sample_rate"}
        check_like_defaults("fit_codec.model", self.model, overridable)


def codec_forward(model: torch.nn.Module, x: torch.Tensor, bandwidth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-mode round trip of [B, T] audio (loudness-normalised) -> (normalised output, commitment penalty)."""
    x = x.unsqueeze(1)
    scale = x.pow(2).mean(dim=2, keepdim=True).sqrt() + 1e-5 if model.normalize else torch.ones_like(x[:, :, :1])
    emb = model.encoder(x / scale)
    q = model.quantizer(emb, model.frame_rate, bandwidth)
    y = model.decoder(q.quantized)[:, 0, : x.shape[-1]]
    return y, q.penalty


def train_codec(waves: list[np.ndarray], sample_rate: int, p: FitCodecParams, rng: np.random.Generator,
                device: torch.device) -> tuple[torch.nn.Module, dict, dict]:
    """Train the small EnCodec for p.steps steps -> (model in eval mode, model config, final loss terms)."""
    config = {**SMALL_ENCODEC, **p.model, "sample_rate": sample_rate}
    model = make_encodec(config).to(device).train()
    loss_fn = CodecLoss(sample_rate, p.mel_weight).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=p.lr, betas=(0.5, 0.9))
    seg = int(p.segment_s * sample_rate)
    bandwidths = [float(b) for b in config["bandwidths"]]
    history: dict[str, float] = {}

    def batch() -> tuple[torch.Tensor, float]:
        """One step's draws, in this order: the segments, then the bandwidth."""
        x = torch.from_numpy(random_segments(waves, p.batch_size, seg, rng)).to(device)
        return x, bandwidths[int(rng.integers(len(bandwidths)))]

    def step(b: tuple[torch.Tensor, float]) -> torch.Tensor:
        x, bw = b
        y, penalty = codec_forward(model, x, bw)
        scale = x.pow(2).mean(dim=1, keepdim=True).sqrt() + 1e-5 if model.normalize else 1.0
        terms = loss_fn(y, x / scale)
        loss = terms["total"] + p.commit_weight * penalty
        terms["vq/commit"] = penalty
        # Exponential moving average of each term for the log (the last batch alone is noisy).
        for k, v in terms.items():
            history[k] = 0.9 * history.get(k, float(v.detach())) + 0.1 * float(v.detach())
        return loss

    fit_steps(STAGE, model, opt, p.steps, batch, step, lambda: dict(history), MAX_GRAD_NORM)
    return model.eval(), config, history


def run(clips, out: Path, p: FitCodecParams, sample_rate: int, seed: int, device: torch.device) -> dict:
    """Train (or record the pretrained source) and write out/; returns the metrics written."""
    with atomic_dir(out) as tmp:
        if p.pretrained:
            source = {"source": "hub"} if str(p.pretrained) == "hub" else _pretrained_source(p.pretrained)
            write_json_atomic(source, tmp / "config.json")
            log.info("fit_codec: using %s, nothing trained", source)
            return {"trained": False, **source}
        rng = np.random.default_rng(seed)
        waves = training_waves(clips, STAGE, sample_rate, p.max_clips, rng)
        t0 = time.perf_counter()
        model, config, losses = train_codec(waves, sample_rate, p, rng, device)
        # metrics.json is part of the DVC output: no timing in it, or every re-run would change the output hash
        log.info("fit_codec: %d steps on %d clips in %.1f s", p.steps, len(waves), time.perf_counter() - t0)
        metrics = {"trained": True, "steps": p.steps, "clips": len(waves),
                   **{f"loss/{k}": v for k, v in losses.items()}}
        save_codec(model.cpu(), config, tmp, extra={"trained_on": "bonafide train clips", "steps": p.steps})
        write_json_atomic(metrics, tmp / "metrics.json")
        return metrics


def _pretrained_source(path: str) -> dict:
    resolved = Path(path)
    if not resolved.exists():
        raise FileNotFoundError(f"fit_codec.pretrained: {path} does not exist (a checkpoint file or directory, "
                                "or 'hub')")
    return {"source": "pretrained", "path": str(resolved)}


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m pipeline fit_codec --clips ... --out ..."""
    parser = fit_parser(STAGE, "train a small EnCodec on bona fide train clips (or record a pretrained one)",
                        "data/generators/codec")
    args, params, common = start_stage(parser, argv)
    run_fit(STAGE, run, FitCodecParams.from_params(section(params, STAGE)), args.clips, args.out, common,
            args.metrics)
    return 0
