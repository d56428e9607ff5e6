"""Read params.yaml once, at a stage's edge; nothing below `main` opens it.

Each stage reads only its own section (plus the shared `seed` and `audio` sections)
and turns it into a frozen dataclass or plain keyword arguments.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PARAMS = "params.yaml"


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The whole params file as a dict (a clear error when it is missing or not a mapping)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run from the repository root or pass --params")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a YAML mapping at the top level")
    return data


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """One section of params, or a clear error naming the missing section."""
    if name not in params or params[name] is None:
        raise KeyError(f"params has no {name!r} section")
    return params[name]


def stage_parser(stage: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser with the shared `--params` option."""
    parser = argparse.ArgumentParser(prog=f"python -m pipeline {stage}", description=description)
    parser.add_argument("--params", default=DEFAULT_PARAMS, help="params file (default: params.yaml)")
    return parser


def teacher_params(params: dict[str, Any], name: str) -> dict[str, Any]:
    """One teacher of params `teachers:` (arch, frontend, pool, checkpoint, ...), or a clear error."""
    teachers = section(params, "teachers")
    if name not in teachers:
        raise KeyError(f"teacher {name!r} is not in params `teachers:` ({sorted(teachers)})")
    return dict(teachers[name])


def check_known_keys(name: str, given: Iterable[str], known: Iterable[str]) -> None:
    """Raise ValueError naming the unknown keys of a params section: a typo must not be silently ignored."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"params {name}: unknown keys {unknown}; known: {sorted(known)}")
