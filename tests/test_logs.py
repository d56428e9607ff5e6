"""Progress where no terminal is attached: periodic log lines with done/total, rate and ETA."""

from __future__ import annotations

import io
import logging

import pytest

from pipeline import logs


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch) -> _Clock:
    c = _Clock()
    monkeypatch.setattr(logs.time, "perf_counter", c)
    return c


def test_progress_logs_lines_when_stderr_is_not_a_terminal(monkeypatch, caplog, clock):
    monkeypatch.setattr(logs.sys, "stderr", io.StringIO())        # a log file: no tty
    caplog.set_level(logging.INFO, logger="pipeline.progress")
    seen = []
    bar = logs.progress(range(200), "evaluate: scoring", unit="clip")
    assert isinstance(bar, logs.LogProgress) and bar.total == 200   # the total comes from len()
    for i in bar:
        clock.t += 1.0                                             # one clip a second
        seen.append(i)
    assert seen == list(range(200))
    lines = [r.getMessage() for r in caplog.records]
    # every 10 s (5% of 200 = 10 clips = 10 s here), then a closing line
    assert lines[0] == "evaluate: scoring: 10/200 (5%) clips, 1.0 clip/s, ETA 3m10s"
    assert lines[1].startswith("evaluate: scoring: 20/200 (10%) clips")
    assert len(lines) == 20 + 1 and lines[-1] == "evaluate: scoring: 200/200 (100%) clips, 1.0 clip/s, in 3m20s"


def test_progress_by_hand_and_the_interval_rule(monkeypatch, caplog, clock):
    monkeypatch.setattr(logs.sys, "stderr", io.StringIO())
    caplog.set_level(logging.INFO, logger="pipeline.progress")
    bar = logs.progress(None, "fit_codec epoch 0", total=10_000, unit="batch")
    for _ in range(30):                                            # 30 steps of 4 s: under 5% each time
        clock.t += 4.0
        bar.update(1)
    bar.close()
    bar.close()                                                    # closing twice logs once
    lines = [r.getMessage() for r in caplog.records]
    # a line whenever 10 s have passed (every third step), plural "batches", an ETA from the rate
    assert len(lines) == 10 + 1
    assert lines[0] == "fit_codec epoch 0: 3/10000 (0%) batches, 0.2 batch/s, ETA 11h06m"
    assert lines[-1].endswith("in 2m00s")


def test_a_short_loop_stays_silent_and_a_terminal_gets_a_bar(monkeypatch, caplog, clock):
    monkeypatch.setattr(logs.sys, "stderr", io.StringIO())
    caplog.set_level(logging.INFO, logger="pipeline.progress")
    for _ in logs.progress(range(100), "quick"):
        clock.t += 0.01                                            # 1 s in all: under the 5 s minimum gap
    assert caplog.records == []
    tty = io.StringIO()
    tty.isatty = lambda: True
    monkeypatch.setattr(logs.sys, "stderr", tty)
    assert not isinstance(logs.progress(range(3), "bar"), logs.LogProgress)


def test_unknown_total_logs_counts_without_eta(monkeypatch, caplog, clock):
    monkeypatch.setattr(logs.sys, "stderr", io.StringIO())
    caplog.set_level(logging.INFO, logger="pipeline.progress")
    for _ in logs.progress((i for i in range(12)), "shards", unit="shard"):
        clock.t += 1.0
    assert [r.getMessage() for r in caplog.records][0] == "shards: 10 shards, 1.0 shard/s, ETA unknown"


def test_plural():
    assert [logs.plural(w) for w in ("clip", "batch", "set", "corpus")] == ["clips", "batches", "sets", "corpuses"]
    assert logs.plural("corpus", 1) == "corpus"
