"""Read params.yaml once, at a stage's edge; nothing below `main` opens it.

A stage opens with `args, params, common = start_stage(parser, argv)` (arguments, logging, the params file and
`common`: seed, audio.sample_rate and runtime, parsed once for every stage), then
`XParams.from_params(section(params, "x"))`. Every section and every nested block (a chain, augment, a teacher,
init, ...) is a frozen dataclass deriving `Section`: one constructor, `from_params(block, where=..., **extra)`,
that refuses unknown keys, then converts and checks values. A bad key or value is a `ConfigError` naming the
key's full path (`params train.augment.codec_prob: ...`), which `python -m pipeline` prints as one
`error: ...` line (exit code 2) before any work is done.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TypeVar

import yaml

from pipeline.io import ParamsLoader, StrictYAMLError
from pipeline.logs import StageError, setup_logging

DEFAULT_PARAMS = "params.yaml"
TEACHER_KEYS = ("pool", "checkpoint")  # the keys of a `teachers.<T>` entry that are not model config
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
ENGINES = ("local", "ray")  # runtime.engine (pipeline.runtime.engine)
PRECISIONS = ("fp32", "bf16", "fp16")  # inference autocast (pipeline.runtime.devices.inference_precision)
WHERE = "_where"  # the instance attribute that keeps a parsed block's path in params.yaml (Section.where)
# A params key that dvc.yaml's foreach puts into stage commands and paths (teachers): no shell or path characters,
# no `.` (DVC reads `teachers.<key>` as a params path).
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

S = TypeVar("S", bound="Section")


class ConfigError(StageError):
    """A params key or value that cannot work: raised at a stage's start, printed as one line."""


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The whole params file as a dict (a clear error when it is missing, not YAML, not a mapping, or has a key
    twice or aliases that expand too far)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: run from the repository root or pass --params")
    try:
        data = yaml.load(path.read_text(), Loader=ParamsLoader) or {}  # strict: see pipeline.io.ParamsLoader
    except StrictYAMLError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a params file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level")
    return data


def section(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    """One section of params, or a clear error naming the missing section."""
    if name not in params or params[name] is None:
        raise ConfigError(f"params has no {name!r} section")
    return mapping(name, params[name])


def stage_parser(stage: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser with the shared `--params` option."""
    parser = argparse.ArgumentParser(prog=f"python -m pipeline {stage}", description=description)
    parser.add_argument("--params", default=DEFAULT_PARAMS, help="params file (default: params.yaml)")
    return parser


# ----------------------------------------------------------------------------- value checks


def check_known_keys(name: str, given: Iterable[str], known: Iterable[str]) -> None:
    """Raise ConfigError naming the unknown keys of a params block: a typo must not be silently ignored."""
    known = list(known)
    unknown = sorted(set(given) - set(known), key=str)
    if unknown:
        raise ConfigError(f"params {name}: unknown keys {unknown}; known: {sorted(known)}")


def mapping(name: str, value: Any) -> dict[str, Any]:
    """A params block as a dict (None = empty); anything else is a ConfigError."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"params {name}: expected a mapping of keys, got {type(value).__name__} {value!r}")
    return dict(value)


def as_list(name: str, value: Any) -> list:
    """A params list (None = empty); a bare string or number is a ConfigError, not a list of characters."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"params {name}: expected a list, got {type(value).__name__} {value!r} "
                          f"(write [{value}])")
    return list(value)


def number(name: str, value: Any, low: float | None = None, high: float | None = None, integer: bool = False,
           low_open: bool = False, allow_none: bool = False) -> Any:
    """Check a numeric param against [low, high] (low excluded when `low_open`); return it unchanged."""
    if value is None and allow_none:
        return value
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ConfigError(f"params {name}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(f"params {name}: must be {'>' if low_open else '>='} {_bound(low)}, got {value!r}")
    if high is not None and value > high:
        raise ConfigError(f"params {name}: must be <= {_bound(high)}, got {value!r}")
    return value


def _bound(x: float) -> str:
    """A bound in a message: an integer in full (a seed's 4294967295), a float short (0.5)."""
    return str(x) if isinstance(x, int) else f"{x:g}"


SEED_MAX = 2**32 - 1  # numpy's seed range (np.random.seed refuses more; default_rng refuses negative seeds)


def seed_value(name: str, value: Any, allow_none: bool = False) -> Any:
    """Check a seed param: an integer in [0, SEED_MAX] (a negative seed crashes numpy's generators mid-stage)."""
    return number(name, value, low=0, high=SEED_MAX, integer=True, allow_none=allow_none)


def flag(name: str, value: Any) -> bool:
    """Check a params value is a YAML boolean (1, "yes" or "true" are not); return it."""
    if not isinstance(value, bool):
        raise ConfigError(f"params {name}: expected true or false, got {value!r}")
    return value


def one_of(name: str, value: Any, known: Iterable[Any]) -> Any:
    """Check a param is one of `known`; return it."""
    known = list(known)
    if value not in known:
        raise ConfigError(f"params {name}: unknown value {value!r}; known: {known}")
    return value


def all_of(name: str, values: Iterable[Any], known: Iterable[Any]) -> list:
    """Check each value of a list param is one of `known`; return the list."""
    values, known = as_list(name, values), list(known)
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ConfigError(f"params {name}: unknown names {unknown}; known: {known}")
    return values


# ----------------------------------------------------------------------------- sections


class Section:
    """Base of every params dataclass: one constructor, `from_params(block, where=..., **extra)`.

    `NAME` is the block's path in params.yaml; a block that sits in several places (augment in train and
    pretrain, a teacher) is given its path as `where`, and `self.where` names it in messages. `extra`
    fills fields (or init-only values) that do not come from the block (seed, sample_rate, a stage
    argument); they are not accepted as block keys. Subclasses override `convert` (e.g. lists -> tuples)
    and `check` (value checks raising ConfigError). `from_part` parses the keys of another stage's section
    that a class names (the chain of `prepare`, the init of `train`): that stage checks the rest.
    """

    NAME: ClassVar[str] = ""
    SHARED: ClassVar[tuple[str, ...]] = ()  # fields filled from the shared params (seed, ...), never section keys
    OPEN_KEYS: ClassVar[bool] = False  # True: keys beyond the fields go to `convert` (a teacher's model keys)

    @classmethod
    def from_params(cls: type[S], sec: Mapping[str, Any] | None, *, where: str | None = None, **extra: Any) -> S:
        """Parse a block: unknown keys, then values, are a ConfigError naming the key's full path."""
        where = where or cls.NAME
        kw = mapping(where, sec)
        if not cls.OPEN_KEYS:
            check_known_keys(where, kw, cls.known_keys(extra))
        obj = cls(**cls.convert({**kw, **extra}))
        object.__setattr__(obj, WHERE, where)  # not a field: asdict() and equality ignore it
        obj.check()
        return obj

    @classmethod
    def from_part(cls: type[S], sec: Mapping[str, Any] | None, *, where: str | None = None, **extra: Any) -> S:
        """Parse only the keys of `sec` that this class names (a view of a section another stage owns)."""
        names = set(cls.known_keys(extra))
        kw = mapping(where or cls.NAME, sec)
        return cls.from_params({k: v for k, v in kw.items() if k in names}, where=where, **extra)

    @property
    def where(self) -> str:
        """The block's path in params.yaml (NAME unless it was parsed from another place)."""
        return getattr(self, WHERE, self.NAME)

    @classmethod
    def known_keys(cls, extra: Mapping[str, Any]) -> list[str]:
        """The keys the section may have (default: the fields not in SHARED nor given in `extra`)."""
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        return [f.name for f in fields if f.init and f.name not in extra and f.name not in cls.SHARED]

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        """Turn YAML values (and `extra`) into constructor arguments (default: unchanged)."""
        return kw

    def check(self) -> None:
        """Raise ConfigError for a value that cannot work (default: nothing to check)."""


@dataclasses.dataclass(frozen=True)
class Runtime(Section):
    """params `runtime`: torch device (`auto` = CUDA when present), CPU threads (0 = library default), engine
    (`local`, or `ray`: per-clip stages on Ray Data, see pipeline/runtime/engine.py), Ray actors and local Ray CPUs."""

    NAME: ClassVar[str] = "runtime"
    device: str = "auto"
    threads: int = 2
    engine: str = "local"
    concurrency: int = 1       # Ray actors per stage
    ray_num_cpus: int | None = None  # CPUs of a local Ray instance (null: all); ignored with RAY_ADDRESS

    def check(self) -> None:
        if not isinstance(self.device, str) or not DEVICE.match(self.device):
            raise ConfigError(f"params runtime.device: expected auto, cpu, cuda or cuda:<n>, got {self.device!r}")
        number("runtime.threads", self.threads, low=0, integer=True)
        one_of("runtime.engine", self.engine, ENGINES)
        number("runtime.concurrency", self.concurrency, low=1, integer=True)
        number("runtime.ray_num_cpus", self.ray_num_cpus, low=1, integer=True, allow_none=True)


@dataclasses.dataclass(frozen=True)
class Audio(Section):
    """params `audio`: the sample rate of every clip on disk."""

    NAME: ClassVar[str] = "audio"
    sample_rate: int | None = None

    def check(self) -> None:
        number("audio.sample_rate", self.sample_rate, low=0, integer=True, low_open=True, allow_none=True)


@dataclasses.dataclass(frozen=True)
class Match(Section):
    """params `match`: how a fake is matched to its parent (pipeline.matching.match_to_parent), in reconstruct and in
    prepare (the fakes of `prepare.match_fakes` corpora). `gate`: `parent` fills a fake's non-speech regions with
    its parent's audio there (TTS: the parent's silences and pause noise), `none` leaves them as generated."""

    NAME: ClassVar[str] = "match"
    gate: str = "parent"
    hang_s: float = 0.1         # speech mask widened by this on each side
    fade_s: float = 0.01        # crossfade between speech and non-speech

    def check(self) -> None:
        one_of("match.gate", self.gate, ("parent", "none"))  # = pipeline.matching.GATES
        number("match.hang_s", self.hang_s, low=0, high=1)
        number("match.fade_s", self.fade_s, low=0, high=0.1)


ROLE_NAMES = ("spoof", "channel")  # = pipeline.schema.ROLES


def roles_from_params(params: Mapping[str, Any]) -> dict[str, str]:
    """params `roles`: {system: spoof | channel}, the user's flips of the default roles (pipeline.schema.system_role).

    E.g. `roles: {encodec_6kbps: channel}` takes the ASVspoof 5 view of a neural codec: reconstruct then makes no
    spoof rows of it. A role other than spoof or channel is a ConfigError."""
    roles = mapping("roles", params.get("roles"))
    for system, role in roles.items():
        if not isinstance(system, str) or not system:
            raise ConfigError(f"params roles: expected system names as keys, got {system!r}")
        one_of(f"roles.{system}", role, ROLE_NAMES)
    return dict(roles)


@dataclasses.dataclass(frozen=True)
class Common:
    """What every stage shares: `seed`, `audio.sample_rate` and `runtime`, parsed once."""

    seed: int = 0
    audio: Audio = Audio()
    runtime: Runtime = Runtime()

    @property
    def sample_rate(self) -> int:
        """audio.sample_rate (a ConfigError when the stage needs it and params lacks it)."""
        if self.audio.sample_rate is None:
            raise ConfigError("params audio.sample_rate is missing")
        return int(self.audio.sample_rate)


class StageStart(NamedTuple):
    """What a stage's main starts from: its arguments, the whole params dict and the shared params."""

    args: argparse.Namespace
    params: dict[str, Any]
    common: Common


def start_stage(parser: argparse.ArgumentParser, argv: list[str] | None) -> StageStart:
    """The opening of every stage's main: parse the arguments, set up logging, load params, parse the shared ones."""
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params(args.params)
    return StageStart(args, params, common_params(params))


def common_params(params: Mapping[str, Any]) -> Common:
    """Parse the shared top-level params (seed, audio, runtime) of the whole params dict."""
    seed = seed_value("seed", params.get("seed", 0))
    return Common(seed=int(seed), audio=Audio.from_params(params.get("audio")),
                  runtime=Runtime.from_params(params.get("runtime")))


def stage_seed(name: str, value: Any, common: Common) -> int:
    """A stage's own seed (`train.seed`, `sample.seed`, `evaluate.seed`): the value when set, else the global
    `seed`, so a params file without it keeps today's outputs. dvc.yaml tracks only the stage's section, so
    params.yaml sets these explicitly (`dvc exp run -S train.seed=N` re-runs train and what follows only)."""
    if value is None:
        return common.seed
    return int(seed_value(name, value))


def teacher_names(params: Mapping[str, Any]) -> list[str]:
    """The keys of params `teachers:`, each checked against KEY_NAME: dvc.yaml's `foreach: ${teachers}` puts them
    into shell commands and output paths, so `t1; touch pwned` or `../x` is a ConfigError, never a command."""
    names = list(section(params, "teachers"))
    for name in names:
        if not isinstance(name, str) or not KEY_NAME.fullmatch(name):
            raise ConfigError(f"params teachers: teacher name {name!r} is not allowed: use 1-64 ASCII letters, "
                              "digits, '_' or '-', starting with a letter or digit (it names a DVC stage and "
                              "the folders data/teachers/<name>/)")
    return names


@dataclasses.dataclass(frozen=True)
class TeacherParams(Section):
    """params `teachers.<T>`: the teacher's `pool` filters, an optional `checkpoint` to adopt, and its model keys.

    Every key but TEACHER_KEYS is model config (`arch`, `frontend`, `width`, ...), kept in `model` in the order
    given; checked here: `arch`, `checkpoint` and that `pool` is a mapping. The model keys are checked by
    pipeline.models.check_config and the pool filters by pipeline.detector.batches.check_pool.
    """

    NAME: ClassVar[str] = "teachers"
    OPEN_KEYS: ClassVar[bool] = True
    name: str
    model: dict[str, Any]
    pool: dict[str, Any] = dataclasses.field(default_factory=dict)
    checkpoint: str | None = None

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        model = {k: v for k, v in kw.items() if k not in (*TEACHER_KEYS, "name")}
        return {"name": kw["name"], "model": model, "pool": kw.get("pool") or {}, "checkpoint": kw.get("checkpoint")}

    def check(self) -> None:
        if "arch" not in self.model:
            raise ConfigError(f"params {self.where}: needs an `arch` (one of pipeline.models.ARCHITECTURES)")
        mapping(f"{self.where}.pool", self.pool)
        if self.checkpoint is not None and not isinstance(self.checkpoint, str):
            raise ConfigError(f"params {self.where}.checkpoint: expected a path or null, got {self.checkpoint!r}")

    @property
    def arch(self) -> str:
        """The teacher's architecture (a key of pipeline.models.ARCHITECTURES)."""
        return self.model["arch"]

    def model_config(self, sample_rate: int) -> dict[str, Any]:
        """The config for pipeline.models.build_model: the model keys plus the sample rate."""
        return {**self.model, "sample_rate": int(sample_rate)}


def teacher_params(params: Mapping[str, Any], name: str) -> TeacherParams:
    """One teacher of params `teachers:`, parsed, or a ConfigError (an unknown name, no arch, a bad pool)."""
    teachers = section(params, "teachers")
    teacher_names(params)
    if name not in teachers:
        raise ConfigError(f"teacher {name!r} is not in params `teachers:`; known: {sorted(teachers)}")
    return TeacherParams.from_params(teachers[name], where=f"teachers.{name}", name=name)


def merge_params(base: Mapping[str, Any], overrides: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """`overrides` merged onto `base`: mappings merge key by key, other values replace; a key `base` lacks
    is a ConfigError (a profile such as params.tiny.yaml must not invent keys)."""
    out = dict(base)
    for key, value in overrides.items():
        if key not in base:
            raise ConfigError(f"params override {path}{key}: not a key of the base params; known: {sorted(base)}")
        if isinstance(value, Mapping) and isinstance(base[key], Mapping) and base[key]:
            out[key] = merge_params(base[key], value, f"{path}{key}.")
        else:
            out[key] = value
    return out
