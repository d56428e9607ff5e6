"""Tux Paint's spoken stamp descriptions (tuxpaint-stamps-default): wideband read speech with transcripts.

- `stamps/**/<stem>_desc_<lang>.ogg` (44.1 kHz; a few ca and nl clips are 8 kHz): one volunteer per language
  (changelog credits below); the text is the `<lang>.utf8=` line of `<stem>.txt` (the description's translation,
  which the recording reads). Unsuffixed `_desc.ogg` (unknown voice) and `_desc_ml` (6 clips) are left out.
- `stamps/**/<x>_en_GB.ogg`: British English letters and digits (John Arundel); `_filled` and `_outline`
  stamps share one recording, kept once (sha256); the text is the letter or digit.
Reads the unpacked package tree; returns `Clip`s (ogg copied as it is when chosen).
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

from pipeline.demo.apt import Apt, licence_from_copyright, unpack_licensed
from pipeline.demo.common import Build, Clip, SourceInfo, copier
from pipeline.demo.debian import duration
from pipeline.demo.speakers import describe

log = logging.getLogger("pipeline.fetch_demo")

TUXPAINT = "tuxpaint-stamps-default"
LETTERS = "en_GB"  # the letters-and-digits voice, listed among the languages
# Descriptive sounds per language, as the changelog credits them (None: not credited by name).
CREDITS = {"be": "Kseniya Buraya", "bg": "Krasimir Petkov", "ca": None, "da": "Joe Dalton", "el": "Kiriaki Serafeim",
           "es": "Estefanía Ortiz", "fr": "Jacques Chion / PaulK (two voices)", "lt": "Andrius Jurkus", "nl": None,
           "ro": "Tabbytha", "ru": "Edwin Veber", LETTERS: "John Arundel"}
DESC = re.compile(r"(.*)_desc(?:_([A-Za-z@_]+))?$")


def stamp_texts(txt: Path) -> dict[str, str]:
    """{language: description} of a stamp's .txt (first line English; `<lang>.utf8=<text>` lines)."""
    lines = txt.read_text(encoding="utf-8", errors="replace").splitlines() if txt.is_file() else []
    out = {"en": lines[0].strip()} if lines else {}
    for line in lines[1:]:
        key, sep, text = line.partition("=")
        if sep and key.endswith(".utf8"):
            out[key.removesuffix(".utf8")] = " ".join(text.split())
    return out


def list_tuxpaint(build: Build, apt: Apt, deb: Path, languages: tuple[str, ...]) -> list[Clip]:
    """The spoken descriptions in `languages` (and the en_GB letters when `en_GB` is among them)."""
    root, copyright_text = unpack_licensed(build, apt, deb, TUXPAINT)
    info = SourceInfo(TUXPAINT, apt.version(deb), licence_from_copyright(copyright_text), "Debian (apt-get download)")
    build.sources[TUXPAINT] = info
    base = root / "usr" / "share" / "tuxpaint" / "stamps"
    clips: list[Clip] = []
    for ogg in sorted(base.rglob("*_desc*.ogg")):
        m = DESC.match(ogg.name.split(".")[0])  # one file is named x_desc_da.ogg.ogg
        lang = m.group(2) if m else None
        if lang is None or lang not in languages or lang == LETTERS:
            continue
        text = stamp_texts(ogg.with_name(f"{m.group(1)}.txt")).get(lang, "")
        clips.append(_clip(info, ogg, base, lang, text))
    if LETTERS in languages:
        seen: set[str] = set()
        for ogg in sorted(base.rglob(f"*_{LETTERS}.ogg")):
            sha = hashlib.sha256(ogg.read_bytes()).hexdigest()
            if sha not in seen:
                seen.add(sha)
                letter = re.sub(r"_(filled|outline)$", "", ogg.name.removesuffix(f"_{LETTERS}.ogg"))
                clips.append(_clip(info, ogg, base, LETTERS, letter))
    log.info("%s %s: %d clips of %d voices", TUXPAINT, info.version, len(clips), len(info.speakers))
    return clips


def _clip(info: SourceInfo, ogg: Path, base: Path, lang: str, text: str) -> Clip:
    credit = CREDITS.get(lang)
    kind = "letters and digits" if lang == LETTERS else "stamp descriptions"
    speaker, desc = describe(f"tuxpaint_{lang}", f"Tux Paint {lang} {kind} ("
                             f"{f'changelog: {credit}' if credit else 'one voice assumed, not credited by name'})")
    info.speakers[speaker] = desc
    return Clip(str(Path("audio") / TUXPAINT / ogg.relative_to(base)), speaker, lang, text, TUXPAINT,
                probe=lambda: duration(ogg), write=copier(ogg))
