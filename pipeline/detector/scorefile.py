r"""The score file of the `score` command: tsv (header, escaped tab-separated fields) or asvspoof lines.

Pure text: no torch, no file writes (the command writes atomically); `read_scores` / `read_score_table` read a
tsv back, `is_score_file` tells a file the command may replace from any other. A backslash, tab, newline or
carriage return inside a field is written as `\\`, `\t`, `\n`, `\r`, and a leading `= + - @` as `\=` ... (a
lone `-`, the system of a bona fide clip, stays `-`), so any path stays one parseable field and a spreadsheet
runs no formula.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

FORMATS = ("tsv", "asvspoof")
TSV_HEADER = "clip_id\tscore"
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r", "=": "=", "+": "+", "-": "-", "@": "@"}


def escape_field(text: str) -> str:
    """A TSV field: backslash, tab, newline and carriage return as two-character escapes, and a leading
    `= + - @` as `\\=` ... so that a spreadsheet never runs the field as a formula (CSV injection)."""
    out = "".join(_ESCAPES.get(ch, ch) for ch in text)
    return "\\" + out if out.startswith(("=", "+", "-", "@")) and out != "-" else out


def unescape_field(text: str) -> str:
    """Undo escape_field (a lone or unknown escape is a ValueError)."""
    return re.sub(r"\\(.?)", lambda m: _unescape(m.group(1), text), text)


def _unescape(ch: str, text: str) -> str:
    if ch not in _UNESCAPES:
        raise ValueError(f"bad escape \\{ch} in score-file field {text!r}")
    return _UNESCAPES[ch]


def format_scores(clip_ids: list[str], scores, fmt: str = "tsv", columns: dict[str, list[str]] | None = None
                  ) -> list[str]:
    """Score-file lines: tsv (header + escaped, tab-separated, `columns` after the score) or asvspoof
    (`clip_id score`, no other column)."""
    if fmt == "asvspoof":
        return [f"{cid} {s:.6f}" for cid, s in zip(clip_ids, scores)]
    columns = columns or {}
    header = "\t".join([TSV_HEADER, *columns])
    extra = [["\t" + escape_field(columns[name][i]) for name in columns] for i in range(len(clip_ids))]
    return [header] + [f"{escape_field(cid)}\t{s:.6f}" + "".join(extra[i])
                       for i, (cid, s) in enumerate(zip(clip_ids, scores))]


def read_scores(path: str | Path) -> dict[str, float]:
    """{clip_id: score} of a tsv score file written by this command (escapes undone)."""
    table = read_score_table(path)
    return dict(zip(table["clip_id"], table["score"].astype(float)))


def read_score_table(path: str | Path) -> pd.DataFrame:
    """Every column of a tsv score file written by this command (clip_id, score, then label, system,
    decision when written), escapes undone; score as float."""
    lines = Path(path).read_text(encoding="utf-8", errors="surrogateescape").split("\n")
    if not lines or not (lines[0] + "\t").startswith(TSV_HEADER + "\t"):
        raise ValueError(f"{path}: not a score file of this command (first line {TSV_HEADER!r}... expected)")
    header = lines[0].split("\t")
    rows = []
    for line_no, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise ValueError(f"{path}: line {line_no} has {len(fields)} tab-separated fields, expected {len(header)}")
        rows.append([unescape_field(f) for f in fields])
    return pd.DataFrame(rows, columns=header).astype({"score": float})


SNIFF_BYTES = 1 << 16  # is_score_file reads this much of an existing file


def is_score_file(path: str | Path) -> bool:
    """Whether an existing file is one this command writes, so that replacing it loses nothing else: empty, a tsv
    score file (first line `clip_id<TAB>score...`) or `clip_id score` lines (asvspoof; the score a number)."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    lines = head.decode("utf-8", errors="surrogateescape").split("\n")
    if len(head) == SNIFF_BYTES:
        lines = lines[:-1]  # the last line may be cut in the middle
    if not head or (lines[0] + "\t").startswith(TSV_HEADER + "\t"):
        return True
    return any(lines) and all(_asvspoof_line(line) for line in lines if line)


def _asvspoof_line(line: str) -> bool:
    parts = line.split(" ")
    if len(parts) != 2 or not parts[0]:
        return False
    try:
        float(parts[1])
    except ValueError:
        return False
    return True
