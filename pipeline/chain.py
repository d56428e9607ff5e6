"""The preprocessing chain: what prepare does to a source file's audio, recorded with every trained model.

Why: a detector meets at scoring time exactly the audio it was trained on only when raw inputs go
through the same steps as the training clips (no train/serve skew). prepare applies `apply_chain` to
every source file; train and pretrain record the chain (`Chain.to_dict()`) in the model's config.json
and checkpoint (key `chain`); `python -m pipeline score` applies the recorded chain to raw inputs.

The chain, in order (each step is pipeline.audio's):
0. (prepare, score) only the first `read_limit_s()` seconds of a source file are decoded;
1. mono mix-down (read_audio) and polyphase resampling to `sample_rate`;
2. (`min_duration_s` given, as in prepare) check_audio: empty, too short, non-finite, silent, constant or DC-only
   audio is an AudioError;
3. `lowpass_hz`: zero-phase FFT low-pass, skipped when the wave has no content above the cut-off beyond what
   16-bit rounding puts there (has_power_above: a clip this chain made);
4. a float peak above full scale normalised to 0.99;
5. the 16-bit round trip of the written FLAC: round(x * 32768) / 32768, what reading the clip gives back;
6. `vad_trim` (leading/trailing silence cut, both classes alike) and `max_duration_s` (the first seconds kept),
   repeated until neither changes the wave (a cut can leave a pause at the end, which the trim then removes).
Idempotent: apply_chain(apply_chain(x)) == apply_chain(x), sample for sample. Steps 5-6 are slices of 16-bit
values and step 3 leaves a clip of this chain alone, so a prepared clip scored as a raw file (`score` without
`--prepared`) or prepared again is the same clip. Recorded chains of version 1 (steps 1, 2, trim, cap,
low-pass, peak, 16-bit with the 32767 scale) are applied in this version's order.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import signal

from pipeline.audio import check_audio, lowpass, resample, to_pcm16, vad_trim
from pipeline.params import ConfigError, Section, check_known_keys, mapping, number

__all__ = ["CHAIN_PARAMS", "Chain", "apply_chain", "chain_from_params", "has_power_above", "trim_and_cap"]

log = logging.getLogger(__name__)

# The prepare params keys that are chain steps (audio.sample_rate is the chain's rate).
CHAIN_PARAMS = ("vad_trim", "max_duration_s", "lowpass_hz")
READ_MARGIN_S = 1.0  # decoded beyond what the chain keeps: the resampler's and the low-pass's edges
LSB = 1.0 / 32768.0  # one step of the 16-bit clips
GUARD_HZ = 150.0  # has_power_above looks above cutoff + this (the low-pass's own taper width)
HF_MARGIN = 4.0  # has_power_above: content counts when its density is over 4x (6 dB) that of 16-bit rounding


@dataclass(frozen=True)
class Chain(Section):
    """prepare's audio steps; `Chain.resample_only(sr)` for a model that recorded none.

    Made from params only by `chain_from_params` (the `prepare` keys CHAIN_PARAMS + audio.sample_rate) and
    from a model's record only by `from_dict`, both through Section.from_params (checked, errors naming the key).
    """

    NAME: ClassVar[str] = "prepare"
    SHARED: ClassVar[tuple[str, ...]] = ("sample_rate",)
    VERSION: ClassVar[int] = 2  # 2: low-pass before trim, 16-bit at the 32768 scale, trim on the frame grid

    sample_rate: int
    vad_trim: bool = False
    max_duration_s: float | None = 10.0
    lowpass_hz: float | None = None

    def check(self) -> None:
        where = self.where
        number(f"{where}.sample_rate", self.sample_rate, low=1, integer=True)
        if not isinstance(self.vad_trim, bool):
            raise ConfigError(f"params {where}.vad_trim: expected true or false, got {self.vad_trim!r}")
        number(f"{where}.max_duration_s", self.max_duration_s, low=0, low_open=True, allow_none=True)
        number(f"{where}.lowpass_hz", self.lowpass_hz, low=0, high=self.sample_rate / 2, low_open=True,
               allow_none=True)

    @classmethod
    def resample_only(cls, sample_rate: int) -> Chain:
        """Only resampling: what score applies for a model without a recorded chain."""
        return cls.from_params({"vad_trim": False, "max_duration_s": None, "lowpass_hz": None}, where="chain",
                               sample_rate=int(sample_rate))

    def read_limit_s(self, kept_s: float | None = None) -> float | None:
        """Seconds decoded from the start of a raw file (pipeline.audio.read_audio's bound; None = all of it).

        What the chain keeps (`max_duration_s`, else `kept_s`: the seconds a scorer uses), twice that with
        `vad_trim` (room for the silence the trim removes), plus READ_MARGIN_S. A file longer than this is
        prepared from its first seconds alone; memory and time no longer grow with its length.
        """
        keep = self.max_duration_s if self.max_duration_s is not None else kept_s
        if keep is None:
            return None
        return float(keep) * (2 if self.vad_trim else 1) + READ_MARGIN_S

    def to_dict(self) -> dict[str, Any]:
        """The JSON form recorded in a model's config (`chain` key)."""
        return {"version": self.VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "chain") -> Chain:
        """Parse a recorded chain; unknown keys or another version are a clear error."""
        d = mapping(where, d)
        check_known_keys(where, d, ["version", "sample_rate", *CHAIN_PARAMS])
        version = d.pop("version", cls.VERSION)
        if version not in (1, cls.VERSION):
            raise ConfigError(f"{where}: chain version {version!r} is not {cls.VERSION} (or 1)")
        if version == 1:
            log.warning("%s: a version 1 chain (a model trained before chain version 2) is applied as version 2: "
                        "clips may differ by a 16-bit step and trim points by up to 20 ms", where)
        if "sample_rate" not in d:
            raise ConfigError(f"{where}: a recorded chain needs its sample_rate")
        return cls.from_params(d, where=where, sample_rate=d.pop("sample_rate"))


def chain_from_params(params: dict[str, Any], sample_rate: int) -> Chain:
    """The chain that prepare applies under these params: the `prepare` keys CHAIN_PARAMS + audio.sample_rate.

    The one place a Chain is made from params (prepare's PrepareParams.chain() too); the other `prepare` keys
    are prepare's to check.
    """
    return Chain.from_part(params.get("prepare"), sample_rate=int(sample_rate))


def apply_chain(wave: np.ndarray, sr_in: int, chain: Chain, *, min_duration_s: float | None = None) -> np.ndarray:
    """A mono float wave at `sr_in` -> float32 at `chain.sample_rate` on the 16-bit grid, as prepare makes a clip
    (steps above). AudioError (from step 2, only with `min_duration_s`) for audio prepare would reject."""
    sr = chain.sample_rate
    wave = resample(np.asarray(wave, dtype=np.float32).reshape(-1), int(sr_in), sr)
    if min_duration_s is not None:
        check_audio(wave, sr, min_duration_s)
    if chain.lowpass_hz and has_power_above(wave, sr, chain.lowpass_hz):
        wave = lowpass(wave, sr, chain.lowpass_hz)
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak > 1.0:  # float files can exceed full scale: normalise rather than clip
        wave = wave / peak * 0.99
    wave = to_pcm16(wave).astype(np.float32) / np.float32(32768.0)
    return trim_and_cap(wave, chain)


def has_power_above(wave: np.ndarray, sample_rate: int, cutoff_hz: float) -> bool:
    """Whether `wave` has content above `cutoff_hz` (+ GUARD_HZ) beyond what rounding to 16 bits puts there.

    The mean Welch density (Blackman-Harris windows, so that in-band content does not leak across the guard band)
    above the cut-off, against HF_MARGIN x the density of 16-bit rounding noise (white, LSB**2 / 12). A clip that
    was low-passed and stored in 16 bits sits near 1x, so the low-pass leaves it alone (the chain is idempotent);
    broadband content above the cut-off is caught down to about -90 dBFS. Welch's windows do not wrap around, so a
    clip cut out of a longer band-limited wave still counts as band-limited.
    """
    if len(wave) < 2:
        return False
    freqs, psd = signal.welch(np.asarray(wave, dtype=np.float64), fs=sample_rate, window="blackmanharris",
                              nperseg=min(1024, len(wave)))
    band = freqs > cutoff_hz + GUARD_HZ
    rounding = 2.0 * (LSB**2 / 12.0) / sample_rate  # one-sided density of white noise of variance LSB**2 / 12
    return bool(band.any()) and float(np.mean(psd[band])) > HF_MARGIN * rounding


def trim_and_cap(wave: np.ndarray, chain: Chain) -> np.ndarray:
    """`vad_trim` then the `max_duration_s` cap, repeated until neither changes the wave (at most three rounds:
    the trim alone is idempotent, and only a cut that leaves a pause at the end asks for one more)."""
    sr = chain.sample_rate
    while True:
        out = vad_trim(wave, sr) if chain.vad_trim else wave
        if chain.max_duration_s is not None:
            out = out[: int(chain.max_duration_s * sr)]
        if len(out) == len(wave):  # both steps only slice from the start: same length = same wave
            return out
        wave = out
