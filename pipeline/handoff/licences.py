"""The licences of the data a model or an exported subset was made from: one table per corpus adapter.

Reads nothing but, for the demo corpus, its own record (data/raw/demo/SOURCES and metadata.csv, written by
fetch_demo), found beside the clips' `source` files; writes nothing. A reconstruction (hardset's own
copy-synthesis) carries its parent's `source`, so it counts under its parent's licence: it is a derivative of
that clip (a no-derivatives licence forbids passing it on). The table repeats what each adapter's docstring and
the README say; tests/handoff/test_licences.py checks that every adapter has an entry.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd

# corpus column value -> (licence, where it is stated, non-commercial)
LICENCES: dict[str, tuple[str, str, bool]] = {
    "asvspoof2019_la": ("ODC-By 1.0", "https://datashare.ed.ac.uk/handle/10283/3336", False),
    "asvspoof2021_la": ("ODC-By 1.0", "https://www.asvspoof.org/index2021.html", False),
    "asvspoof2021_df": ("ODC-By 1.0", "https://www.asvspoof.org/index2021.html", False),
    "asvspoof5": ("the release's LICENSE.txt (not verified here)", "https://zenodo.org/records/14498691", False),
    "itw": ("Apache-2.0 (per its release page)", "https://deepfake-total.com/in_the_wild", False),
    "mlaad": ("MLAAD CC BY-NC 4.0 (non-commercial academic research only); M-AILABS its own licence",
              "https://deepfake-total.com/mlaad", True),
    "wavefake": ("WaveFake CC BY-SA 4.0 (not verified here); LJSpeech public domain; JSUT research / personal use "
                 "only (non-commercial)", "https://zenodo.org/record/5642694", True),
    "codecfake_xie": ("CC BY-NC-ND 4.0 (non-commercial, no derivatives)", "https://github.com/xieyuankun/Codecfake",
                      True),
    "codecfake_wu": ("CC BY 4.0 (VCTK CC BY 4.0)", "https://huggingface.co/datasets/rogertseng/CodecFake_wavs", False),
    "diffssd": ("DiffSSD CC BY-NC-ND 4.0 (non-commercial, no derivatives); LJSpeech public domain; LibriSpeech "
                "CC BY 4.0", "https://huggingface.co/datasets/purdueviperlab/diffssd", True),
    "fake_or_real": ("the authors' terms (York University; not verified here)", "https://bil.eecs.yorku.ca/datasets/",
                     False),
}
NON_COMMERCIAL = re.compile(r"\bNC\b|\bBY-NC|non-commercial|noncommercial", re.I)
UNKNOWN = "not known to hardset (your own corpus, e.g. a `folder` one): state its licence"
DEMO = "demo"


def data_licences(clips: pd.DataFrame) -> list[dict]:
    """Per corpus of `clips` (sorted): {corpus, clips, licence, url, non_commercial}; the demo corpus is listed
    per source package of its SOURCES record ({corpus: "demo/<package>", ...}) when that record is found."""
    out = []
    for corpus, rows in sorted(clips.groupby("corpus", sort=True), key=lambda kv: str(kv[0])):
        if corpus == DEMO and (per_source := demo_licences(rows["source"].astype(str).tolist())):
            out += per_source
            continue
        licence, url, non_commercial = LICENCES.get(str(corpus), (UNKNOWN, "", False))
        out.append({"corpus": str(corpus), "clips": int(len(rows)), "licence": licence, "url": url,
                    "non_commercial": non_commercial})
    return out


def find_demo_root(sources: list[str]) -> Path | None:
    """The demo corpus folder (holding SOURCES and metadata.csv) above the first source file, or None."""
    for source in sources[:1]:
        for folder in Path(source).parents:
            if (folder / "SOURCES").is_file() and (folder / "metadata.csv").is_file():
                return folder
    return None


def read_sources_record(path: Path) -> dict[str, str]:
    """{package: licence} of a fetch_demo SOURCES file (blocks of `key: value` lines)."""
    out, package = {}, None
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(": ")
        if key == "package":
            package = value.strip()
        elif key == "licence" and package is not None:
            out[package] = value.strip()
    return out


def demo_licences(sources: list[str]) -> list[dict]:
    """The demo rows' licences per source package (SOURCES), counted from metadata.csv; [] when not found."""
    root = find_demo_root(sources)
    if root is None:
        return []
    licences = read_sources_record(root / "SOURCES")
    with open(root / "metadata.csv", encoding="utf-8", newline="") as fh:
        package_of = {str(root / r["file"]): r.get("source", "") for r in csv.DictReader(fh)}
    counts: dict[str, int] = {}
    for source in sources:
        package = package_of.get(source, "")
        counts[package] = counts.get(package, 0) + 1
    out = []
    for package, n in sorted(counts.items()):
        licence = licences.get(package, f"see {root / 'SOURCES'}")
        out.append({"corpus": f"{DEMO}/{package or 'unknown'}", "clips": n, "licence": licence,
                    "url": str(root / "SOURCES"), "non_commercial": bool(NON_COMMERCIAL.search(licence))})
    return out
