"""Voice sets of two games, each a zip inside a large .deb read in place (pipeline.demo.debarchive).

- `warzone2100-data`: `usr/share/games/warzone2100/base.wz`, members `audio/<folder>/**.ogg` of the voice folders
  (11 kHz English): the narrator (tutorial, extra, memressp: one person, pipeline.demo.speakers), the countdown
  voice and the VTOL radio voice. No transcripts (the file names are codes).
- `0ad-data` (a 1.4 GB download): `usr/share/games/0ad/mods/public/public.zip`, members
  `audio/voice/<civ>/civ/civ_{male,female}_*.ogg`: a male and a female civilian voice per civilisation, acting in
  its ancient language (44.1/48 kHz). No transcripts (the file names give the intent, not the words).
The voices are read into memory at listing time (a few MB), so no package is unpacked; returns `Clip`s
(ogg bytes written as they are when chosen).
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from pathlib import Path

import soundfile as sf

from pipeline.demo.apt import Apt, licence_from_copyright
from pipeline.demo.common import Build, Clip, SourceInfo, keep_copyright
from pipeline.demo.debarchive import member_file
from pipeline.demo.speakers import describe
from pipeline.io import write_bytes_atomic

log = logging.getLogger("pipeline.fetch_demo")

WARZONE, ZEROAD = "warzone2100-data", "0ad-data"
WARZONE_ZIP = "usr/share/games/warzone2100/base.wz"
WARZONE_VOICES = {"tutorial": "the narrator", "extra": "the narrator", "memressp": "the narrator",
                  "countdown": "the countdown voice", "vtoltalk": "the VTOL radio voice"}
ZEROAD_ZIP = "usr/share/games/0ad/mods/public/public.zip"
ZEROAD_MEMBER = re.compile(r"audio/voice/([a-z]+)/civ/civ_(male|female)_[^/]+\.ogg")
# 0 A.D. civilisation -> ISO 639 code of the language its voices act in
ZEROAD_LANGUAGES = {"greek": "grc", "latin": "la", "napatan": "xmr", "persian": "peo"}


def zip_members(deb: Path, zip_path: str, keep: re.Pattern[str], workdir: Path) -> dict[str, bytes]:
    """{member: bytes} of the members of the zip `zip_path` inside `deb` whose names fully match `keep`."""
    with member_file(deb, zip_path, workdir) as fh, zipfile.ZipFile(fh) as zf:
        return {name: zf.read(name) for name in sorted(zf.namelist()) if keep.fullmatch(name)}


def package_copyright(build: Build, deb: Path, pkg: str, workdir: Path) -> str:
    """A package's copyright file, read in place and kept under licenses/."""
    with member_file(deb, f"usr/share/doc/{pkg}/copyright", workdir) as fh:
        text = fh.read().decode("utf-8", errors="replace")
    keep_copyright(build, pkg, text)
    return text


def _ogg_seconds(data: bytes) -> float:
    try:
        return float(sf.info(io.BytesIO(data)).duration)
    except (sf.LibsndfileError, RuntimeError):
        return -1.0


def _clip(pkg: str, member: str, data: bytes, speaker: str, language: str) -> Clip:
    return Clip(str(Path("audio") / pkg / member), speaker, language, "", pkg, probe=lambda: _ogg_seconds(data),
                write=lambda dst: write_bytes_atomic(data, dst))


def list_warzone(build: Build, apt: Apt, deb: Path) -> list[Clip]:
    """The voice clips of Warzone 2100's base.wz (three speakers)."""
    work = apt.workdir / "x" / WARZONE
    info = SourceInfo(WARZONE, apt.version(deb), licence_from_copyright(package_copyright(build, deb, WARZONE, work)),
                      f"Debian (apt-get download); {WARZONE_ZIP} read in place")
    build.sources[WARZONE] = info
    folders = "|".join(WARZONE_VOICES)
    clips = []
    for member, data in zip_members(deb, WARZONE_ZIP, re.compile(rf"audio/({folders})/.+\.ogg"), work).items():
        folder = member.split("/")[1]
        speaker, desc = describe(f"warzone_{folder}", f"Warzone 2100: {WARZONE_VOICES[folder]}")
        info.speakers[speaker] = desc
        clips.append(_clip(WARZONE, member, data, speaker, "en"))
    log.info("%s %s: %d voice clips of %d speakers", WARZONE, info.version, len(clips), len(info.speakers))
    return clips


def list_zeroad(build: Build, apt: Apt, deb: Path) -> list[Clip]:
    """The civilian voices of 0 A.D. (one male and one female voice per civilisation)."""
    work = apt.workdir / "x" / ZEROAD
    info = SourceInfo(ZEROAD, apt.version(deb), licence_from_copyright(package_copyright(build, deb, ZEROAD, work)),
                      f"Debian (apt-get download); {ZEROAD_ZIP} read in place, not unpacked")
    build.sources[ZEROAD] = info
    clips = []
    for member, data in zip_members(deb, ZEROAD_ZIP, ZEROAD_MEMBER, work).items():
        m = ZEROAD_MEMBER.fullmatch(member)
        assert m is not None
        civ, sex = m.groups()
        speaker = f"0ad_{civ}_{sex}"
        info.speakers[speaker] = f"0 A.D. {civ} {sex} civilian voice (acting in {ZEROAD_LANGUAGES.get(civ, civ)})"
        clips.append(_clip(ZEROAD, member, data, speaker, ZEROAD_LANGUAGES.get(civ, civ)))
    log.info("%s %s: %d voice clips of %d speakers", ZEROAD, info.version, len(clips), len(info.speakers))
    return clips
