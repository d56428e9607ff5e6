"""Festival TTS from Debian packages without root: `apt-get download` + `dpkg-deb -x` into one tree,
then the extracted `usr/bin/festival` runs with `--libdir/--datadir` pointing into that tree and
LD_LIBRARY_PATH at its libraries. Shared libraries the host lacks (libestools, libpulse, ...) are
found with `ldd` and fetched the same way (LIB_PACKAGES).

Only the voices of FESTIVAL_VOICES may be used. Reserved for independent evaluation and never fetched
here (pipeline.demo.reserved): flite and its voices, festvox-kallpc16k/8k, festvox-us-slt-hts (and festvox-ru
is left out for its 179 MB). One festival process per voice synthesises a batch of texts; a text festival
fails on is skipped.
Writes only under its work dir.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import unicodedata
from pathlib import Path

import numpy as np

from pipeline.audio import read_audio
from pipeline.demo.apt import Apt, licence_from_copyright, read_copyright
from pipeline.demo.common import FetchError
from pipeline.demo.reserved import check_packages

log = logging.getLogger("pipeline.fetch_demo")

FESTIVAL_CORE = ("festival", "libestools2.5")
# festival voice -> (its Debian packages, the transcript languages it reads). The Finnish diphone voices
# also read Italian/Spanish text (close spelling-to-sound rules), the Catalan HTS voice also Spanish.
FESTIVAL_VOICES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ked_diphone": (("festvox-kdlpc16k", "festlex-cmu", "festlex-poslex"), ("en",)),
    "lp_diphone": (("festvox-italp16k", "festlex-ifd"), ("it",)),
    "pc_diphone": (("festvox-itapc16k", "festlex-ifd"), ("it",)),
    "upc_ca_ona_hts": (("festvox-ca-ona-hts", "festival-ca"), ("ca", "es")),
    "suo_fi_lj_diphone": (("festvox-suopuhe-lj", "festvox-suopuhe-common"), ("fi", "it")),
    "hy_fi_mv_diphone": (("festvox-suopuhe-mv", "festvox-suopuhe-common"), ("fi", "es")),
}
# shared library -> the bookworm package that ships it (fetched only when the host lacks the library)
LIB_PACKAGES = {
    "libestools.so.2.5": "libestools2.5", "libestbase.so.2.5": "libestools2.5",
    "libpulse-simple.so.0": "libpulse0", "libpulse.so.0": "libpulse0", "libasyncns.so.0": "libasyncns0",
    "libsndfile.so.1": "libsndfile1", "libFLAC.so.12": "libflac12", "libvorbis.so.0": "libvorbis0a",
    "libvorbisenc.so.2": "libvorbisenc2", "libopus.so.0": "libopus0", "libogg.so.0": "libogg0",
    "libmpg123.so.0": "libmpg123-0", "libmp3lame.so.0": "libmp3lame0",
}


def festival_packages(voices: tuple[str, ...]) -> list[str]:
    """The Debian packages festival and `voices` need (a clear error for an unknown or reserved voice)."""
    unknown = [v for v in voices if v not in FESTIVAL_VOICES]
    if unknown:
        raise FetchError(f"festival voices {unknown} are not allowed here; allowed: {sorted(FESTIVAL_VOICES)}")
    pkgs = sorted({*FESTIVAL_CORE, *(p for v in voices for p in FESTIVAL_VOICES[v][0])})
    check_packages(pkgs)
    return pkgs


def scheme_text(text: str) -> str:
    """`text` as a Scheme string body festival reads (Latin-1; other characters folded, quotes dropped)."""
    out = []
    for ch in unicodedata.normalize("NFC", text):
        try:
            ch.encode("latin-1")
        except UnicodeEncodeError:
            ch = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode() or " "
        out.append(ch)
    return " ".join(re.sub(r'["\\]', " ", "".join(out)).split())


def festival_script(voice: str, jobs: list[tuple[str, Path]]) -> str:
    """A festival batch script: select `voice`, then say each text into its wav (a failing text is skipped)."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", voice):
        raise FetchError(f"bad festival voice name {voice!r}")
    lines = [f"(voice_{voice})",
             "(define (hs_say txt out) (let ((utt (Utterance Text txt))) (utt.synth utt) "
             "(utt.save.wave utt out 'riff)))"]
    for text, out in jobs:
        if '"' in str(out) or "\\" in str(out):
            raise FetchError(f"festival output path {out} has a quote or backslash")
        lines.append(f'(unwind-protect (hs_say "{scheme_text(text)}" "{out}") nil)')
    return "\n".join(lines) + "\n"


class Festival:
    """The festival of an unpacked Debian tree; `versions` and `licences` name the festival and voice packages."""

    def __init__(self, apt: Apt, voices: tuple[str, ...]) -> None:
        self.apt, self.voices = apt, voices
        self.tree = apt.workdir / "festival-tree"
        self.versions: dict[str, str] = {}
        self.licences: dict[str, str] = {}
        self.copyrights: dict[str, str] = {}
        self.runtime: dict[str, str] = {}  # host libraries fetched only because this host lacks them
        self._unpack(festival_packages(voices))
        for _ in range(4):  # libraries of libraries: a few rounds at most
            missing = self._missing_libs()
            if not missing:
                break
            unknown = sorted(lib for lib in missing if lib not in LIB_PACKAGES)
            if unknown:
                raise FetchError(f"festival needs shared libraries this host lacks and no known package gives: "
                                 f"{unknown}; set fetch_demo.festival_voices: [] to skip Festival")
            self._unpack(sorted({LIB_PACKAGES[lib] for lib in missing} - set(self.versions) - set(self.runtime)),
                         runtime=True)
        else:
            raise FetchError(f"festival still lacks shared libraries {sorted(self._missing_libs())}")
        self.binary = self.tree / "usr" / "bin" / "festival"
        self.libdir = self.tree / "usr" / "share" / "festival"

    def _unpack(self, packages: list[str], runtime: bool = False) -> None:
        """Download and unpack `packages` into the tree; `runtime` ones (host libraries) stay out of SOURCES."""
        if not packages:
            return
        log.info("apt-get download %s%s", " ".join(packages), " (libraries this host lacks)" if runtime else "")
        for pkg, deb in sorted(self.apt.download(packages).items()):
            self.apt.extract(deb, into=self.tree)
            if runtime:  # which ones depends on the host, not on the audio: SOURCES must not vary with it
                self.runtime[pkg] = self.apt.version(deb)
                continue
            self.versions[pkg] = self.apt.version(deb)
            text = read_copyright(self.tree, pkg)
            self.copyrights[pkg] = text
            self.licences[pkg] = licence_from_copyright(text)

    def _env(self) -> dict[str, str]:
        dirs = sorted(str(d) for d in (self.tree / "usr" / "lib").glob("*-linux-gnu*") if d.is_dir())
        dirs += [f"{d}/pulseaudio" for d in dirs]
        return {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(dirs + [os.environ.get("LD_LIBRARY_PATH", "")])}

    def _missing_libs(self) -> set[str]:
        binary = self.tree / "usr" / "bin" / "festival"
        if not binary.exists():
            raise FetchError("the festival package has no usr/bin/festival")
        res = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=self._env(), check=False)
        return set(re.findall(r"^\s*(\S+) => not found", res.stdout, flags=re.M))

    def synthesize_batch(self, texts: list[str], voice: str, outdir: Path) -> list[tuple[np.ndarray, int] | None]:
        """Waveforms of `texts` in `voice` (None where festival made nothing), one festival process."""
        outdir.mkdir(parents=True, exist_ok=True)
        jobs = [(text, outdir / f"{voice}_{k:05d}.wav") for k, text in enumerate(texts)]
        script = outdir / f"{voice}.scm"
        script.write_bytes(festival_script(voice, jobs).encode("latin-1"))
        cmd = [str(self.binary), "--libdir", str(self.libdir), "--datadir", str(self.libdir), "-b", str(script)]
        res = subprocess.run(cmd, capture_output=True, text=True, env=self._env(), check=False, timeout=1800)
        if res.returncode != 0:
            raise FetchError(f"festival voice {voice} failed (rc {res.returncode}): {res.stderr.strip()[-500:]}")
        out: list[tuple[np.ndarray, int] | None] = []
        for _, path in jobs:
            out.append(read_audio(path) if path.exists() and path.stat().st_size > 44 else None)
            path.unlink(missing_ok=True)
        return out
