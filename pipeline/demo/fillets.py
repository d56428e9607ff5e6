"""Fish Fillets NG dialogue (fillets-ng-data-<lang>): acted, transcribed speech of a two-voice cast per dub.

Audio: `usr/share/games/fillets-ng/sound/<level>/<lang>/<id>.ogg` of fillets-ng-data-<lang> (cs: 22/44 kHz,
wideband; nl: band-limited to about 5 kHz). Texts: `script/<level>/dialogs_<lang>.lua` of fillets-ng-data,
entries `dialogId("<id>", "<font>", "<english>")` followed by `dialogStr("<translation>")`; the font names
the character. Speakers (pipeline.demo.speakers): `fillets_<lang>_small` (the small fish, font_small) and
`fillets_<lang>_cast` (the big fish and every minor character, who share actors). A line whose id has no
dialogue entry or no font (an unknown speaker) is left out.
Reads the unpacked package trees; returns `Clip`s (ogg copied as it is when chosen).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from pipeline.demo.apt import Apt, licence_from_copyright, unpack_licensed
from pipeline.demo.common import Build, Clip, SourceInfo, copier
from pipeline.demo.debian import duration

log = logging.getLogger("pipeline.fetch_demo")

FILLETS_SCRIPTS = "fillets-ng-data"
FILLETS_AUDIO = "fillets-ng-data-{lang}"
GAME_DIR = Path("usr/share/games/fillets-ng")
DIALOG = re.compile(r'dialogId\("([^"]+)",\s*"?([^",)]*)"?,\s*"((?:[^"\\]|\\.)*)"\)\s*'
                    r'(?:dialogStr\("((?:[^"\\]|\\.)*)"\))?')


def parse_dialogs(text: str) -> dict[str, tuple[str, str]]:
    """{line id: (font, text)} of a dialogs_<lang>.lua (the translation, else the English reference)."""
    out = {}
    for m in DIALOG.finditer(text):
        said = m.group(4) if m.group(4) is not None else m.group(3)
        out[m.group(1)] = (m.group(2).strip(), " ".join(re.sub(r"\\(.)", r"\1", said).split()))
    return out


def fillets_speaker(lang: str, font: str) -> str | None:
    """`font_small` -> fillets_<lang>_small, any other font -> fillets_<lang>_cast, no font -> None."""
    if not font or font == "none":
        return None
    return f"fillets_{lang}_{'small' if font == 'font_small' else 'cast'}"


def list_fillets(build: Build, apt: Apt, debs: dict[str, Path], languages: tuple[str, ...]) -> list[Clip]:
    """The dialogue lines of each dub in `languages` whose speaker and text the scripts give."""
    scripts, scripts_copyright = unpack_licensed(build, apt, debs[FILLETS_SCRIPTS], FILLETS_SCRIPTS)
    clips = []
    for lang in languages:
        pkg = FILLETS_AUDIO.format(lang=lang)
        root, copyright_text = unpack_licensed(build, apt, debs[pkg], pkg)
        info = SourceInfo(pkg, apt.version(debs[pkg]), licence_from_copyright(copyright_text or scripts_copyright),
                          f"Debian (apt-get download); texts from {FILLETS_SCRIPTS} "
                          f"{apt.version(debs[FILLETS_SCRIPTS])} script/*/dialogs_{lang}.lua")
        build.sources[pkg] = info
        dialogs: dict[str, tuple[str, str]] = {}
        for lua in sorted((scripts / GAME_DIR / "script").glob(f"*/dialogs_{lang}.lua")):
            dialogs.update(parse_dialogs(lua.read_text(encoding="utf-8", errors="replace")))
        skipped, before = 0, len(clips)
        for ogg in sorted((root / GAME_DIR / "sound").glob(f"*/{lang}/*.ogg")):
            font, text = dialogs.get(ogg.stem, ("", ""))
            speaker = fillets_speaker(lang, font)
            if speaker is None:
                skipped += 1
                continue
            who = "the small fish" if speaker.endswith("_small") else "the big fish and the minor characters"
            info.speakers[speaker] = f"Fish Fillets {lang} dub: {who}"
            clips.append(Clip(str(Path("audio") / pkg / ogg.relative_to(root / GAME_DIR / "sound")), speaker, lang,
                              text, pkg, probe=lambda p=ogg: duration(p), write=copier(ogg)))
        log.info("%s %s: %d lines with a speaker (%d without)", pkg, info.version, len(clips) - before, skipped)
    return clips
