"""Export format `asvspoof`: the ASVspoof 2019 LA layout, which the authors' loaders read unmodified.

Writes, under the export folder:
    ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.train.trn.txt, ...dev.trl.txt, ...eval.trl.txt
    ASVspoof2019_LA_{train,dev,eval}/flac/<FILE_ID>.flac
Protocol lines are `SPEAKER FILE_ID - SYSTEM LABEL` (one space, SYSTEM `-` for bona fide, LABEL bonafide |
spoof), in the tables' row order. These are the paths clovaai/aasist's main.py builds from `database_path`
(its data_utils.genSpoof_list splits each line on single spaces and reads `<base_dir>/flac/<FILE_ID>.flac`),
the paths SSL_Anti-spoofing builds from `--database_path` (its `--protocols_path` wants the folder named
`ASVspoof_LA_cm_protocols`), and what this project's own asvspoof2019_la adapter reads. Speakers and systems
are written with `protocol_token` (no whitespace); clip_map.csv keeps the originals.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.handoff.files import place_all, protocol_token

PROTOCOL_DIR = "ASVspoof2019_LA_cm_protocols"
PROTOCOLS = {"train": "ASVspoof2019.LA.cm.train.trn.txt", "dev": "ASVspoof2019.LA.cm.dev.trl.txt",
             "eval": "ASVspoof2019.LA.cm.eval.trl.txt"}
AUDIO_DIRS = {"train": "ASVspoof2019_LA_train", "dev": "ASVspoof2019_LA_dev", "eval": "ASVspoof2019_LA_eval"}


def protocol_lines(rows: pd.DataFrame) -> list[str]:
    """`SPEAKER FILE_ID - SYSTEM LABEL` per row."""
    return [f"{protocol_token(r.speaker)} {r.file_id} - {'-' if r.label == 'bonafide' else protocol_token(r.system)} "
            f"{r.label}" for r in rows.itertuples(index=False)]


def write_asvspoof(table: pd.DataFrame, out: Path, link: str) -> dict[str, object]:
    """Write the protocols and the flac trees of every partition in `table`; return counts."""
    placed = place_all(table, {p: out / AUDIO_DIRS[p] / "flac" for p in AUDIO_DIRS}, link)
    (out / PROTOCOL_DIR).mkdir(parents=True, exist_ok=True)
    lines = {}
    for part, rows in table.groupby("partition", sort=False):
        text = "\n".join(protocol_lines(rows)) + "\n"
        (out / PROTOCOL_DIR / PROTOCOLS[part]).write_text(text, encoding="ascii")
        lines[part] = len(rows)
    return {"protocol_lines": lines, "audio": placed}
