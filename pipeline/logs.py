"""Stage logging: one logger format, a progress bar helper, a per-stage summary line, and the one-line errors.

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
from typing import TypeVar

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
