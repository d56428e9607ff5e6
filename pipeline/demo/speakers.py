"""Who speaks in the demo's Debian packages: folder speaker ids merged where one person recorded several.

The sources name a voice by folder (`ktuberling_ru`, `tuxpaint_be`, ...). Where the credits or a speaker
encoder say two folders are one person, they become one speaker id, so that prepare's speaker-disjoint split
cannot put the same voice in train and test. A merge only makes a group coarser, which is safe for the split;
the risk is the other way round (one person in two ids), so pairs that are only probably one person are merged
too. Evidence (demo v3 research notes: credits, KDE's svn log, the resemblyzer GE2E centroid cosine, whose
cross-source mean is 0.70):
- Kseniya Buraya recorded ktuberling ru (with Pavel Shashkin) and Tux Paint's Belarusian descriptions (0.91);
- the Danish KDE voice (Erik Kjaer Pedersen, klettres AUTHORS) is in klettres da, ktuberling da (with children)
  and, by the encoder, Tux Paint da (0.86 / 0.78);
- klettres and ktuberling nds, uk and en: 0.88, 0.86, 0.85 (same-language KDE pairs by known different
  people sit at 0.65-0.72);
- Warzone 2100's narrator speaks the tutorial, extra and memressp folders (0.94 / 0.89);
- Fish Fillets: the big fish and the minor characters share actors (0.85-0.92), so a dub has two groups,
  the small fish and the rest of the cast;
- asterisk en and es core sounds are both Allison Smith (voice dirs en_US_f_Allison, es_MX_f_Allison).
Reads and writes nothing.
"""

from __future__ import annotations

MERGES = {
    "ktuberling_ru": "buraya_ru_be", "tuxpaint_be": "buraya_ru_be",
    "ktuberling_da": "kde_da", "klettres_da": "kde_da", "tuxpaint_da": "kde_da",
    "ktuberling_nds": "kde_nds", "klettres_nds": "kde_nds",
    "ktuberling_uk": "kde_uk", "klettres_uk": "kde_uk",
    "ktuberling_en": "kde_en", "klettres_en": "kde_en",
    "warzone_tutorial": "warzone_narrator", "warzone_extra": "warzone_narrator",
    "warzone_memressp": "warzone_narrator",
}
GROUPS = {
    "buraya_ru_be": "Kseniya Buraya (ktuberling ru, with Pavel Shashkin; Tux Paint be)",
    "kde_da": "the Danish KDE voice, Erik Kjaer Pedersen (klettres da, ktuberling da with children, Tux Paint da)",
    "kde_nds": "one Low German voice (klettres nds, ktuberling nds)",
    "kde_uk": "one Ukrainian voice (klettres uk, ktuberling uk)",
    "kde_en": "one English voice (klettres en, ktuberling en)",
    "warzone_narrator": "the Warzone 2100 narrator (tutorial, extra and memressp folders)",
}


def speaker_id(folder_id: str) -> str:
    """The demo's speaker id of a source folder's voice (merged where one person recorded several folders)."""
    return MERGES.get(folder_id, folder_id)


def describe(folder_id: str, description: str) -> tuple[str, str]:
    """(speaker id, SOURCES description) of a folder's voice: a merged group says who it is and where from."""
    speaker = speaker_id(folder_id)
    return speaker, GROUPS.get(speaker, description)
