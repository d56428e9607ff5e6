"""Corpus adapters: one module per corpus, each `load_<corpus>(root, ...) -> AdapterResult`.

An adapter only reads its corpus and returns source rows (plus the rows it skipped, with reasons);
`prepare` reads the audio, normalises it and writes the clip table.
"""

from pipeline.corpora.asvspoof2019_la import load_asvspoof2019_la
from pipeline.corpora.asvspoof2021 import load_asvspoof2021
from pipeline.corpora.common import AdapterResult
from pipeline.corpora.demo import load_demo
from pipeline.corpora.folder import load_folder
from pipeline.corpora.itw import load_itw

# params `prepare.corpora[].name` -> adapter; extra keys of the entry are passed as keyword arguments.
ADAPTERS = {
    "demo": load_demo,
    "asvspoof2019_la": load_asvspoof2019_la,
    "asvspoof2021": load_asvspoof2021,
    "itw": load_itw,
    "folder": load_folder,
}

__all__ = ["ADAPTERS", "AdapterResult", "load_asvspoof2019_la", "load_asvspoof2021", "load_demo", "load_folder",
           "load_itw"]
