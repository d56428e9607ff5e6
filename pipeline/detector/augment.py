"""Training-time data augmentation on raw waveforms: RawBoost-style noise, codec round trips, gain.

Why: a detector trained on clean crops learns "generator artefacts = fake, clean speech = real" and
meets unseen channels at test time. Augmentation applies to both classes alike (it never changes a
label), so it cannot teach a class shortcut; it only makes channel variation uninformative.

The three RawBoost algorithms follow Tak et al., ICASSP 2022 ("RawBoost: a raw data boosting and
augmentation method applied to automatic speaker verification anti-spoofing"), as used by
SSL_Anti-spoofing; this is our own implementation of the formulas below:

- LnL (linear and non-linear convolutive noise):
      y[n] = sum_{j=1..J} g_j (h_j * x^j)[n],   g_1 = 1, g_j = 10^(-b_j / 20) for j > 1,
  h_j a random multi-band FIR filter (sum of `n_bands` band-pass FIRs with random centre in
  [min_f, max_f] and bandwidth in [min_bw, max_bw], odd order in [min_coeff, max_coeff]),
  b_j ~ U(min_bias_db, max_bias_db); y is rescaled to the peak of x.
- ISD (impulsive signal-dependent additive noise): a random P% (P ~ U(0, max_percent)) of the
  samples get y[n] = x[n] + g_sd * x[n] * z_n, z_n ~ U(-1, 1).
- SSI (stationary signal-independent additive noise): white noise shaped by a random multi-band FIR
  filter (as in LnL) and added at an SNR ~ U(min_snr_db, max_snr_db) to the clip.

Codec augmentation runs a crop through one of the channels of `pipeline.resynth.channel` (MP3, Opus, Codec2,
G.711, GSM, G.726: systems whose role is `channel`, the same ones evaluate.conditions applies) and back; gain
scales by U(min_db, max_db) dB.

Every draw comes from the generator passed in (the dataset seeds it from seed, epoch and clip
index), so augmentation is reproducible and independent of batching and worker count.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy import signal

from pipeline.params import ConfigError, Section, check_known_keys, mapping, number

RAWBOOST_ALGOS = ("lnl", "isd", "ssi")

RAWBOOST_DEFAULTS: dict[str, Any] = {
    "n_bands": 5, "min_f": 20.0, "max_f": 8000.0, "min_bw": 100.0, "max_bw": 1000.0,
    "min_coeff": 10, "max_coeff": 100, "order": 5, "min_bias_db": 5.0, "max_bias_db": 20.0,
    "max_percent": 10.0, "g_sd": 2.0, "min_snr_db": 10.0, "max_snr_db": 40.0,
}


LIST_KEYS = ("rawboost_algos", "codec_systems", "gain_db")  # YAML lists, held as tuples


@dataclass(frozen=True)
class AugmentParams(Section):
    """The `augment` block of `train` / `pretrain` (off unless `enabled`), parsed with
    `from_params(block, where="train.augment", sample_rate=...)`: the codec systems are checked at
    audio.sample_rate (an init-only value, not part of the recorded params)."""

    NAME: ClassVar[str] = "augment"
    enabled: bool = False
    rawboost_prob: float = 0.5
    rawboost_algos: tuple[str, ...] = RAWBOOST_ALGOS
    rawboost: dict[str, Any] = field(default_factory=dict)
    codec_prob: float = 0.0
    codec_systems: tuple[str, ...] = ("mp3_16kbps", "opus_8kbps", "codec2_1300")
    gain_prob: float = 0.0
    gain_db: tuple[float, float] = (-6.0, 6.0)
    sample_rate: InitVar[int | None] = None

    def __post_init__(self, sample_rate: int | None) -> None:
        object.__setattr__(self, "_sample_rate", sample_rate)

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        # a bare string stays a string here, for check() to refuse by name (tuple() would split it into letters)
        lists = {k: tuple(kw[k]) for k in LIST_KEYS if k in kw and not isinstance(kw[k], str)}
        return {**kw, **lists, "rawboost": {} if kw.get("rawboost") is None else kw["rawboost"]}

    def check(self) -> None:
        """Unknown keys, algorithms or codec systems and bad ranges are a ConfigError naming the key."""
        name = self.where
        check_known_keys(f"{name}.rawboost", mapping(f"{name}.rawboost", self.rawboost), RAWBOOST_DEFAULTS)
        for key in LIST_KEYS:
            if isinstance(getattr(self, key), str):
                raise ConfigError(f"params {name}.{key}: expected a list, got the string {getattr(self, key)!r}")
        bad = sorted(set(self.rawboost_algos) - set(RAWBOOST_ALGOS))
        if bad:
            raise ConfigError(f"params {name}.rawboost_algos: unknown {bad}; known: {list(RAWBOOST_ALGOS)}")
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"params {name}.enabled: expected true or false, got {self.enabled!r}")
        for key in ("rawboost_prob", "codec_prob", "gain_prob"):
            if not 0.0 <= number(f"{name}.{key}", getattr(self, key)) <= 1.0:
                raise ConfigError(f"params {name}.{key}: a probability in [0, 1], got {getattr(self, key)}")
        if len(self.gain_db) != 2 or self.gain_db[0] > self.gain_db[1]:
            raise ConfigError(f"params {name}.gain_db: expected [min_db, max_db], got {list(self.gain_db)}")
        if self.codec_prob > 0:
            self._check_codecs()

    def _check_codecs(self) -> None:
        """Every codec system is a channel (pipeline.resynth.channel) that builds at the clips' rate."""
        from pipeline.resynth.channel import SYSTEMS, build, is_channel_name

        rate = getattr(self, "_sample_rate", None)
        for system in self.codec_systems:
            if not is_channel_name(system):
                raise ConfigError(f"params {self.where}.codec_systems: {system} is not a channel that runs without a "
                                  f"trained generator; use one of {list(SYSTEMS)}")
            try:
                build(system, 16000 if rate is None else int(rate))
            except (KeyError, ValueError) as exc:
                raise ConfigError(f"params {self.where}.codec_systems: {system}: {exc}") from None


def require_channels(where: str, systems: tuple[str, ...] | list[str], roles: dict[str, str] | None) -> None:
    """ConfigError unless every system has role channel (params `roles`): augmentation and evaluation conditions
    apply a system to bona fide and spoof clips alike, which only a label-keeping channel may be."""
    from pipeline.schema import system_role

    for name in systems:
        if system_role(name, roles) != "channel":
            raise ConfigError(f"params {where}: {name} has role spoof (params roles): it is applied to bona fide and "
                              "spoof clips alike, so it must be a channel")


def random_multiband_fir(rng: np.random.Generator, sample_rate: int, cfg: dict[str, Any]) -> np.ndarray:
    """A random FIR filter: the sum of `n_bands` band-pass filters with random centres and bandwidths."""
    nyq = sample_rate / 2.0
    taps = int(rng.integers(int(cfg["min_coeff"]), int(cfg["max_coeff"]) + 1)) | 1  # odd length
    h = np.zeros(taps)
    for _ in range(int(cfg["n_bands"])):
        fc = rng.uniform(float(cfg["min_f"]), min(float(cfg["max_f"]), nyq * 0.98))
        bw = rng.uniform(float(cfg["min_bw"]), float(cfg["max_bw"]))
        lo = float(np.clip(fc - bw / 2, 1.0, nyq - 2.0))
        hi = float(np.clip(fc + bw / 2, lo + 1.0, nyq - 1.0))
        h += signal.firwin(taps, [lo, hi], pass_zero=False, fs=sample_rate, window="hamming")
    return h


def _peak_normalise(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    peak, ref_peak = float(np.max(np.abs(y))), float(np.max(np.abs(ref)))
    return y * (ref_peak / peak) if peak > 0 else y


def lnl_convolutive(x: np.ndarray, rng: np.random.Generator, sample_rate: int, cfg: dict[str, Any]) -> np.ndarray:
    """RawBoost LnL: a sum of randomly filtered powers of x (linear + non-linear convolutive noise)."""
    y = np.zeros_like(x, dtype=np.float64)
    for j in range(1, int(cfg["order"]) + 1):
        gain = 1.0 if j == 1 else 10.0 ** (-rng.uniform(float(cfg["min_bias_db"]), float(cfg["max_bias_db"])) / 20)
        h = random_multiband_fir(rng, sample_rate, cfg)
        y += gain * signal.lfilter(h, [1.0], np.power(x, j, dtype=np.float64))
    return _peak_normalise(y, x)


def isd_impulsive(x: np.ndarray, rng: np.random.Generator, cfg: dict[str, Any]) -> np.ndarray:
    """RawBoost ISD: signal-dependent impulses on a random P% of the samples."""
    y = x.astype(np.float64, copy=True)
    n = int(round(x.size * rng.uniform(0.0, float(cfg["max_percent"])) / 100.0))
    if n == 0:
        return y
    idx = rng.choice(x.size, size=n, replace=False)
    y[idx] += float(cfg["g_sd"]) * y[idx] * rng.uniform(-1.0, 1.0, size=n)
    return y


def ssi_additive(x: np.ndarray, rng: np.random.Generator, sample_rate: int, cfg: dict[str, Any]) -> np.ndarray:
    """RawBoost SSI: coloured stationary noise added at a random SNR."""
    noise = signal.lfilter(random_multiband_fir(rng, sample_rate, cfg), [1.0], rng.standard_normal(x.size))
    snr_db = rng.uniform(float(cfg["min_snr_db"]), float(cfg["max_snr_db"]))
    p_sig, p_noise = float(np.mean(np.square(x, dtype=np.float64))), float(np.mean(np.square(noise)))
    if p_sig <= 0 or p_noise <= 0:
        return x.astype(np.float64)
    return x + noise * np.sqrt(p_sig / (p_noise * 10.0 ** (snr_db / 10.0)))


def rawboost(x: np.ndarray, algo: str, rng: np.random.Generator, sample_rate: int,
             cfg: dict[str, Any] | None = None) -> np.ndarray:
    """One RawBoost algorithm (`lnl`, `isd` or `ssi`) on a mono wave (defaults: the paper's settings)."""
    cfg = {**RAWBOOST_DEFAULTS, **(cfg or {})}
    x = np.asarray(x, dtype=np.float64)
    if algo == "lnl":
        return lnl_convolutive(x, rng, sample_rate, cfg)
    if algo == "isd":
        return isd_impulsive(x, rng, cfg)
    if algo == "ssi":
        return ssi_additive(x, rng, sample_rate, cfg)
    raise ValueError(f"unknown RawBoost algorithm {algo!r}; known: {list(RAWBOOST_ALGOS)}")


class Augmenter:
    """Applies the `augment` params to one training crop: RawBoost, then a codec round trip, then gain."""

    def __init__(self, params: AugmentParams, sample_rate: int) -> None:
        self.params, self.sample_rate = params, int(sample_rate)
        self._codecs: dict[str, Any] = {}

    def _codec(self, system: str) -> Any:
        if system not in self._codecs:
            from pipeline.resynth.channel import build

            self._codecs[system] = build(system, self.sample_rate)
        return self._codecs[system]

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The augmented crop (float32, same length); the input itself when augmentation is off."""
        p = self.params
        if not p.enabled:
            return wave
        x = np.asarray(wave, dtype=np.float64)
        if p.rawboost_algos and rng.random() < p.rawboost_prob:
            algo = p.rawboost_algos[int(rng.integers(len(p.rawboost_algos)))]
            x = rawboost(x, algo, rng, self.sample_rate, p.rawboost)
        if p.codec_systems and rng.random() < p.codec_prob:
            system = p.codec_systems[int(rng.integers(len(p.codec_systems)))]
            x = self._codec(system)([x.astype(np.float32)])[0].astype(np.float64)
        if rng.random() < p.gain_prob:
            x = x * 10.0 ** (rng.uniform(*p.gain_db) / 20.0)
        return np.clip(x, -1.0, 1.0).astype(np.float32)


def make_augmenter(params: AugmentParams | dict[str, Any] | None, sample_rate: int,
                   name: str = "augment") -> Augmenter | None:
    """The Augmenter for a ClipDataset, or None when augmentation is off (the crops are then untouched)."""
    if not isinstance(params, AugmentParams):
        params = AugmentParams.from_params(params, where=name, sample_rate=sample_rate)
    return Augmenter(params, sample_rate) if params.enabled else None
