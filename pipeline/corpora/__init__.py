"""Corpus adapters: one module per corpus, each `load_<corpus>(root, ...) -> AdapterResult`.

An adapter only reads its corpus and returns source rows (plus the rows it skipped, with reasons);
`prepare` reads the audio, normalises it and writes the clip table.
"""

from pipeline.corpora.asvspoof5 import load_asvspoof5
from pipeline.corpora.asvspoof2019_la import load_asvspoof2019_la
from pipeline.corpora.asvspoof2021 import load_asvspoof2021
from pipeline.corpora.codecfake_wu import load_codecfake_wu
from pipeline.corpora.codecfake_xie import load_codecfake_xie
from pipeline.corpora.common import AdapterResult
from pipeline.corpora.demo import load_demo
from pipeline.corpora.diffssd import load_diffssd
from pipeline.corpora.fake_or_real import load_fake_or_real
from pipeline.corpora.folder import load_folder
from pipeline.corpora.itw import load_itw
from pipeline.corpora.mlaad import load_mlaad
from pipeline.corpora.wavefake import load_wavefake

# params `prepare.corpora[].name` -> adapter; extra keys of the entry are passed as keyword arguments.
ADAPTERS = {
    "demo": load_demo,
    "asvspoof2019_la": load_asvspoof2019_la,
    "asvspoof2021": load_asvspoof2021,
    "itw": load_itw,
    "folder": load_folder,
    "asvspoof5": load_asvspoof5,
    "mlaad": load_mlaad,
    "wavefake": load_wavefake,
    "codecfake_xie": load_codecfake_xie,
    "codecfake_wu": load_codecfake_wu,
    "diffssd": load_diffssd,
    "fake_or_real": load_fake_or_real,
}

__all__ = ["ADAPTERS", "AdapterResult", "load_asvspoof2019_la", "load_asvspoof2021", "load_demo", "load_folder",
           "load_itw"]
__all__ += ["load_asvspoof5", "load_codecfake_wu", "load_codecfake_xie", "load_diffssd", "load_fake_or_real",
            "load_mlaad", "load_wavefake"]
