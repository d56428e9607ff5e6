"""Stage logging: one logger format, progress on long loops, a per-stage summary line, and the one-line errors.

`progress` shows a tqdm bar when stderr is a terminal; when it is not (a log file: DVC, CI, a cluster job), it
logs a line `<desc>: done/total (pct%), rate unit/s, ETA` every PROGRESS_INTERVAL_S seconds or every
PROGRESS_STEP of the total, whichever comes first (never more often than PROGRESS_MIN_GAP_S), and a closing line.

`StageError` (and its kind ConfigError, CheckpointError, CorpusError, ...) is what `python -m pipeline` prints as
one `error: ...` line with exit code 2; `os_error_line` names the file and the cause of an OSError that is the
machine's, not the code's (a full disk, a read-only or unwritable folder, a missing file); `log_some` logs the
first few of many alike warnings and then a count, never ten thousand lines.
"""

from __future__ import annotations

import errno
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")

# OSErrors of the machine (disk, permissions, paths), reported as one line naming the file and the cause
MACHINE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT,
                  errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EIO}
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}  # after one of these no later write can succeed: stop
SHOWN = 5  # log_some: warnings logged one by one before the rest are counted


class StageError(ValueError):
    """Inputs a stage or command cannot work with (an empty pool, one class, a damaged checkpoint, an unwritable
    output): raised before the work where it can be known then; printed as one line, exit code 2."""


def os_error_line(exc: OSError) -> str | None:
    """`<file>: <cause>` of a machine OSError (MACHINE_ERRNOS), or the message of a FileNotFoundError raised with one
    (`clip table X does not exist: run the stage that writes it first`), for a one-line error; None for any other."""
    if isinstance(exc, FileNotFoundError) and exc.errno is None:
        return str(exc)
    if exc.errno not in MACHINE_ERRNOS:
        return None
    cause = exc.strerror or errno.errorcode.get(exc.errno, str(exc.errno))
    where = exc.filename if exc.filename is not None else "(file not named by the system)"
    return f"{where}: {cause}" + (f" (and {exc.filename2})" if exc.filename2 else "")


def log_some(log: logging.Logger, items: list[tuple[str, str]], what: str, shown: int = SHOWN) -> None:
    """Log the first `shown` (subject, reason) pairs as warnings `<what>: <subject>: <reason>`, then one warning
    counting the rest by reason (10,000 missing files: 5 lines and a count, not 10,000 lines)."""
    for subject, reason in items[:shown]:
        log.warning("%s: %s: %s", what, subject, reason)
    rest = items[shown:]
    if rest:
        kinds = Counter(reason[:80] for _, reason in rest).most_common(3)
        log.warning("%s: ... and %d more (%s)", what, len(rest), "; ".join(f"{n} x {k}" for k, n in kinds))



def setup_logging(level: int = logging.INFO) -> None:
    """Configure the root logger once (stage mains call this)."""
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


PROGRESS_INTERVAL_S = 10.0   # a line at least this often ...
PROGRESS_STEP = 0.05         # ... and at every further 5% of the total ...
PROGRESS_MIN_GAP_S = 5.0     # ... but not more often than this (a loop shorter than this stays silent)
_progress_log = logging.getLogger("pipeline.progress")


def progress(items: Iterable[T] | None, desc: str, total: int | None = None, unit: str = "clip") -> Any:
    """Iterate `items` with progress: a tqdm bar on a terminal, else periodic log lines (`LogProgress`).

    Both support `update(n)` and `close()` for work advanced by hand (`items` None, `total` given).
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if sys.stderr.isatty():
        return tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr, mininterval=1.0,
                    dynamic_ncols=True, leave=False)
    return LogProgress(items, desc, total, unit)


def plural(noun: str, n: int = 2) -> str:
    """`noun` for n == 1, else its English plural (clips, batches): counts in log lines and the report read right."""
    if n == 1:
        return noun
    return noun + ("es" if noun.endswith(("s", "sh", "ch", "x")) else "s")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class LogProgress:
    """Progress as log lines for a stream that is not a terminal: done/total, percent, rate and ETA."""

    def __init__(self, items: Iterable[T] | None, desc: str, total: int | None = None, unit: str = "clip",
                 log: logging.Logger | None = None) -> None:
        self.items, self.desc, self.total, self.unit = items, desc, total, unit
        self.log = log or _progress_log
        self.n = 0
        self.t0 = self.last_t = time.perf_counter()
        self.last_n = 0
        self.lines = 0
        self.closed = False

    def __iter__(self) -> Iterator[T]:
        try:
            for item in self.items or ():
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def update(self, n: int = 1) -> None:
        """Count n more items done; log a line when the interval or the next step of the total is reached."""
        self.n += n
        now = time.perf_counter()
        gap = now - self.last_t
        stepped = bool(self.total) and (self.n - self.last_n) >= PROGRESS_STEP * self.total
        if gap >= PROGRESS_INTERVAL_S or (stepped and gap >= PROGRESS_MIN_GAP_S):
            self._line(now)

    def _line(self, now: float, final: bool = False) -> None:
        elapsed = now - self.t0
        rate = self.n / elapsed if elapsed > 0 else 0.0
        done = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        tail = f"in {_duration(elapsed)}" if final else (
            f"ETA {_duration((self.total - self.n) / rate)}" if self.total and rate > 0 else "ETA unknown")
        self.log.info("%s: %s %s, %.1f %s/s, %s", self.desc, done, plural(self.unit), rate, self.unit, tail)
        self.last_t, self.last_n = now, self.n
        self.lines += 1

    def close(self) -> None:
        """Log the closing line (only after a periodic one: a short loop stays silent)."""
        if not self.closed:
            self.closed = True
            if self.lines:
                self._line(time.perf_counter(), final=True)


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
