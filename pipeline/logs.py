"""Stage logging: one logger format, a progress bar helper and a per-stage summary line."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def setup_logging(level: int = logging.INFO) -> None:
    """Configure the root logger once (stage mains call this)."""
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "clip") -> Iterable[T]:
    """A tqdm progress bar on stderr when it is a terminal (logs and CI get the closing log line instead)."""
    return tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr, mininterval=1.0,
                disable=None, dynamic_ncols=True, leave=False)


class StageStats:
    """Counts that a stage reports in its closing log line."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


@contextmanager
def stage_timer(log: logging.Logger, stage: str, unit_key: str = "clips") -> Iterator[StageStats]:
    """Log `<stage>: k=v ... in S s (R clips/s)` when the block ends."""
    stats = StageStats()
    t0 = time.perf_counter()
    yield stats
    dt = time.perf_counter() - t0
    n = stats.counts.get(unit_key, 0)
    rate = f", {n / dt:.1f} {unit_key}/s" if n and dt > 0 else ""
    counts = " ".join(f"{k}={v}" for k, v in stats.counts.items())
    log.info("%s done: %s in %.1f s%s", stage, counts, dt, rate)
