"""The preprocessing chain: what prepare does to a source file's audio, recorded with every trained model.

Why: a detector meets at scoring time exactly the audio it was trained on only when raw inputs go
through the same steps as the training clips (no train/serve skew). prepare applies `apply_chain` to
every source file; train and pretrain record the chain (`Chain.to_dict()`) in the model's config.json
and checkpoint (key `chain`); `python -m pipeline score` applies the recorded chain to raw inputs.

The chain, in order (each step is pipeline.audio's):
1. mono mix-down (read_audio) and polyphase resampling to `sample_rate`;
2. (`min_duration_s` given, as in prepare) check_audio: empty, too short, non-finite or silent is an AudioError;
3. `vad_trim`: leading/trailing silence cut (both classes alike);
4. `max_duration_s`: the first seconds kept;
5. `lowpass_hz`: zero-phase FFT low-pass;
6. a float peak above full scale normalised to 0.99;
7. (`quantise`) the 16-bit round trip of the written FLAC: pcm16 / 32768, what reading the clip gives back.
Step 7 makes a raw file and its prepared clip bit-identical model inputs; prepare skips it because
write_audio quantises.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from pipeline.audio import check_audio, lowpass, resample, to_pcm16, vad_trim
from pipeline.params import ConfigError, Section, check_known_keys, mapping, number

__all__ = ["CHAIN_PARAMS", "Chain", "apply_chain", "chain_from_params"]

# The prepare params keys that are chain steps (audio.sample_rate is the chain's rate).
CHAIN_PARAMS = ("vad_trim", "max_duration_s", "lowpass_hz")


@dataclass(frozen=True)
class Chain(Section):
    """prepare's audio steps; `Chain.resample_only(sr)` for a model that recorded none.

    Made from params only by `chain_from_params` (the `prepare` keys CHAIN_PARAMS + audio.sample_rate) and
    from a model's record only by `from_dict`, both through Section.from_params (checked, errors naming the key).
    """

    NAME: ClassVar[str] = "prepare"
    SHARED: ClassVar[tuple[str, ...]] = ("sample_rate",)
    VERSION: ClassVar[int] = 1

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

    def to_dict(self) -> dict[str, Any]:
        """The JSON form recorded in a model's config (`chain` key)."""
        return {"version": self.VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "chain") -> Chain:
        """Parse a recorded chain; unknown keys or another version are a clear error."""
        d = mapping(where, d)
        check_known_keys(where, d, ["version", "sample_rate", *CHAIN_PARAMS])
        if d.pop("version", cls.VERSION) != cls.VERSION:
            raise ConfigError(f"{where}: chain version {d.get('version')!r} is not {cls.VERSION}")
        if "sample_rate" not in d:
            raise ConfigError(f"{where}: a recorded chain needs its sample_rate")
        return cls.from_params(d, where=where, sample_rate=d.pop("sample_rate"))


def chain_from_params(params: dict[str, Any], sample_rate: int) -> Chain:
    """The chain that prepare applies under these params: the `prepare` keys CHAIN_PARAMS + audio.sample_rate.

    The one place a Chain is made from params (prepare's PrepareParams.chain() too); the other `prepare` keys
    are prepare's to check.
    """
    return Chain.from_part(params.get("prepare"), sample_rate=int(sample_rate))


def apply_chain(wave: np.ndarray, sr_in: int, chain: Chain, *, min_duration_s: float | None = None,
                quantise: bool = True) -> np.ndarray:
    """A mono float wave at `sr_in` -> float32 at `chain.sample_rate`, as prepare makes a clip (steps above).

    AudioError (from step 2, only with `min_duration_s`) for audio prepare would reject.
    """
    sr = chain.sample_rate
    wave = resample(np.asarray(wave, dtype=np.float32).reshape(-1), int(sr_in), sr)
    if min_duration_s is not None:
        check_audio(wave, sr, min_duration_s)
    if chain.vad_trim:
        wave = vad_trim(wave, sr)
    if chain.max_duration_s is not None:
        wave = wave[: int(chain.max_duration_s * sr)]
    if chain.lowpass_hz:
        wave = lowpass(wave, sr, chain.lowpass_hz)
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak > 1.0:  # float files can exceed full scale: normalise rather than clip
        wave = wave / peak * 0.99
    if quantise:
        return to_pcm16(wave).astype(np.float32) / np.float32(32768.0)
    return wave
