"""Reading one file of a .deb in place (pipeline.demo.debarchive) and the game voices read that way.

The .debs are built here: an ar archive with a data.tar.xz of several xz blocks (`xz --block-size`), as dpkg
builds them, or a data.tar.gz for the streamed fallback.
"""

from __future__ import annotations

import gzip
import io
import lzma
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.demo import debarchive, gamevoices
from pipeline.demo.common import Build, FetchError, select_clips
from tests.conftest import make_wave, write_wave

needs_xz = pytest.mark.skipif(shutil.which("xz") is None, reason="needs the xz tool to build multi-block xz")


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    return out


def make_deb(path: Path, files: dict[str, bytes], kind: str = "blocks") -> Path:
    """A .deb whose data member holds `files`: `blocks` (multi-block xz), `single` (one xz block) or `gz`."""
    tar = _tar(files)
    if kind == "blocks":
        data = subprocess.run(["xz", "--format=xz", "--block-size=4KiB", "-T1", "-c"], input=tar,
                              capture_output=True, check=True).stdout
        name = "data.tar.xz"
    elif kind == "single":
        data, name = lzma.compress(tar, format=lzma.FORMAT_XZ), "data.tar.xz"
    else:
        data, name = gzip.compress(tar, mtime=0), "data.tar.gz"
    control = gzip.compress(_tar({"control": b"Package: fake\nVersion: 1.0\nArchitecture: all\n"}), mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_ar([("debian-binary", b"2.0\n"), ("control.tar.gz", control), (name, data)]))
    return path


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _ogg(tmp: Path, seconds: float, seed: int) -> bytes:
    return write_wave(tmp / f"{seed}.ogg", make_wave(seconds, 22050, seed=seed), 22050, subtype="VORBIS").read_bytes()


@needs_xz
def test_a_member_is_read_in_place_block_by_block_and_equals_the_streamed_copy(tmp_path):
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, 60_000, dtype=np.uint8).tobytes()  # several 4 KiB xz blocks
    files = {"usr/share/doc/x/copyright": b"License: GPL-2+\n", "usr/share/x/big.bin": big, "usr/share/x/z": b"z"}
    deb = make_deb(tmp_path / "x_1.0_all.deb", files)
    offset, size, name = debarchive.ar_member(deb)
    raw = debarchive.XZBlocks(deb, offset, size)
    assert name == "data.tar.xz" and len(raw.blocks) > 5
    raw.close()
    with debarchive.member_file(deb, "usr/share/x/big.bin", tmp_path / "w") as fh:
        fh.seek(30_000)
        assert fh.read(100) == big[30_000:30_100]
        fh.seek(-10, io.SEEK_END)
        assert fh.read() == big[-10:]
    assert not (tmp_path / "w").exists()  # read in place: nothing copied
    for kind in ("gz", "single"):  # no random access: streamed out of dpkg-deb --fsys-tarfile, same bytes
        other = make_deb(tmp_path / kind / "x_1.0_all.deb", files, kind)
        if shutil.which("dpkg-deb") is None:
            pytest.skip("needs dpkg-deb for the streamed fallback")
        with debarchive.member_file(other, "./usr/share/x/big.bin", tmp_path / kind / "w") as fh:
            assert fh.read() == big
    with pytest.raises(FetchError, match="no file usr/share/x/nope"):
        with debarchive.member_file(deb, "usr/share/x/nope", tmp_path / "w"):
            pass
    (tmp_path / "bad.deb").write_bytes(b"not an ar archive")
    with pytest.raises(FetchError, match="not a Debian package"):
        debarchive.ar_member(tmp_path / "bad.deb")


class DebApt:
    """An Apt stand-in for sources read in place: `version` and a work dir (nothing to download or unpack)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def version(self, deb: Path) -> str:
        return "1.0"


@needs_xz
def test_game_voices_are_listed_per_speaker_from_the_zips_inside_the_debs(tmp_path):
    oggs = {k: _ogg(tmp_path / "ogg", 1.0 + 0.1 * k, k) for k in range(6)}
    wz = _zip({"audio/tutorial/tut1.ogg": oggs[0], "audio/memressp/detect/pcv1.ogg": oggs[1],
               "audio/countdown/5min.ogg": oggs[2], "audio/sfx/boom.ogg": oggs[3], "texpages/x.png": b"png"})
    zero = _zip({"audio/voice/greek/civ/civ_female_attack_1.ogg": oggs[4],
                 "audio/voice/latin/civ/civ_male_gather_2.ogg": oggs[5], "audio/voice/greek/soldier/x.ogg": oggs[0]})
    copyright_text = b"Files: *\nCopyright: x\nLicense: CC-BY-SA-3.0\n"
    warzone = make_deb(tmp_path / "warzone2100-data_1.0_all.deb", {gamevoices.WARZONE_ZIP: wz,
                       "usr/share/doc/warzone2100-data/copyright": b"Files: *\nLicense: GPL-2+\n"})
    zeroad = make_deb(tmp_path / "0ad-data_1.0_all.deb", {"usr/share/doc/0ad-data/copyright": copyright_text,
                                                         gamevoices.ZEROAD_ZIP: zero})
    build = Build(root=tmp_path / "build")
    clips = gamevoices.list_warzone(build, DebApt(tmp_path / "w"), warzone)
    clips += gamevoices.list_zeroad(build, DebApt(tmp_path / "w"), zeroad)
    got = {(c.rel.split("/", 2)[2], c.speaker, c.language, c.text) for c in clips}
    assert got == {("audio/tutorial/tut1.ogg", "warzone_narrator", "en", ""),  # one narrator, two folders
                   ("audio/memressp/detect/pcv1.ogg", "warzone_narrator", "en", ""),
                   ("audio/countdown/5min.ogg", "warzone_countdown", "en", ""),
                   ("audio/voice/greek/civ/civ_female_attack_1.ogg", "0ad_greek_female", "grc", ""),
                   ("audio/voice/latin/civ/civ_male_gather_2.ogg", "0ad_latin_male", "la", "")}
    assert build.sources["0ad-data"].licence == "CC-BY-SA-3.0"
    assert build.sources["warzone2100-data"].licence == "GPL-2+"
    assert (build.root / "licenses" / "0ad-data.copyright").read_bytes() == copyright_text
    chosen = select_clips(clips, 5, 0.6, 8.0, np.random.default_rng(0))
    for clip in chosen:
        clip.write(build.root / clip.rel)
    assert (build.root / "audio/0ad-data/audio/voice/latin/civ/civ_male_gather_2.ogg").read_bytes() == oggs[5]
    assert abs(clips[0].probe() - 1.0) < 0.35
