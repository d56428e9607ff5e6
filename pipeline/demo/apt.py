"""Debian packages without root: `apt-get download` + `dpkg-deb -x` into a work dir; licences from copyright files.

Runs apt-get/dpkg-deb as subprocesses (argument lists, no shell); writes only under its work dir
(the .debs, their unpacked trees and, when the system package lists are stale, a private lists dir).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import shutil
import subprocess
from pathlib import Path

from pipeline.demo.common import Build, FetchError, keep_copyright
from pipeline.demo.reserved import check_packages

log = logging.getLogger("pipeline.fetch_demo")

def _missing_tools_message(tool: str) -> str:
    return (f"fetch_demo needs `{tool}` to fetch the demo corpus from Debian packages (no root needed), "
            "but it is not on PATH. Either install apt and dpkg (Debian/Ubuntu: they are part of the base "
            "system), or set `fetch_demo.synthetic: true` in params.yaml to build a synthetic demo corpus, "
            "or point `prepare.corpora` at your own corpus (e.g. `- {name: folder, root: /data/my_corpus}`) "
            "and skip this stage.")


class Apt:
    """`apt-get download` + `dpkg-deb -x` into a work dir, as an ordinary user."""

    def __init__(self, workdir: Path) -> None:
        for tool in ("apt-get", "dpkg-deb"):
            if shutil.which(tool) is None:
                raise FetchError(_missing_tools_message(tool))
        self.workdir = Path(workdir)
        self.debs = self.workdir / "debs"
        self.debs.mkdir(parents=True, exist_ok=True)
        self.extra: list[str] = []  # apt options for a private package-list dir, after our own update
        self._updated = False
        self._unpacked: set[tuple[Path, Path]] = set()  # (deb, dir) already unpacked: a second extract is free

    def _run(self, args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)

    def _private_update(self) -> str | None:
        """`apt-get update` into a private lists dir (works without root); None when it worked."""
        state = self.workdir / "apt-state"
        (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        self.extra = ["-o", f"Dir::State::Lists={state / 'lists'}", "-o", f"Dir::Cache={state / 'cache'}",
                      "-o", "Debug::NoLocking=1"]
        res = self._run(["apt-get", *self.extra, "update"])
        self._updated = True
        return None if res.returncode == 0 else (res.stderr or res.stdout).strip()[-800:]

    def download(self, packages: list[str]) -> dict[str, Path]:
        """Download .debs of `packages` (one apt-get call); return package -> .deb path.

        A reserved package (pipeline.demo.reserved) is a FetchError before anything is downloaded.
        """
        check_packages(packages)
        res = self._run(["apt-get", *self.extra, "download", *packages], cwd=self.debs)
        if res.returncode != 0 and not self._updated:
            log.warning("apt-get download failed (%s); trying `apt-get update` once (private lists dir)",
                        (res.stderr or res.stdout).strip().splitlines()[-1:] or "no output")
            err = self._private_update()
            if err is not None:
                raise FetchError(
                    "apt-get download failed and `apt-get update` failed too, so the package lists cannot be "
                    f"refreshed: {err}\nRun `sudo apt-get update` (or check network/proxy settings), or set "
                    "`fetch_demo.synthetic: true` in params.yaml, or point `prepare.corpora` at your own corpus.")
            res = self._run(["apt-get", *self.extra, "download", *packages], cwd=self.debs)
        if res.returncode != 0:
            raise FetchError(f"`apt-get download {' '.join(packages)}` failed:\n{(res.stderr or res.stdout).strip()}"
                             "\nCheck that these are Debian/Ubuntu package names available to apt "
                             "(`apt-cache policy <pkg>`), or set `fetch_demo.synthetic: true`.")
        found = {}
        for pkg in packages:
            hits = sorted(self.debs.glob(f"{pkg}_*.deb"))
            if not hits:
                raise FetchError(f"apt-get download reported success but no {pkg}_*.deb in {self.debs}")
            found[pkg] = hits[-1]
        return found

    def extract(self, deb: Path, into: Path | None = None) -> Path:
        """Unpack a .deb (no maintainer scripts run) into its own dir (or `into`, shared); return that dir."""
        dest = into if into is not None else self.workdir / "x" / deb.name.split("_")[0]
        if (deb, dest) in self._unpacked:
            return dest
        dest.mkdir(parents=True, exist_ok=True)
        res = self._run(["dpkg-deb", "-x", str(deb), str(dest)])
        if res.returncode != 0:
            raise FetchError(f"dpkg-deb -x {deb.name} failed: {res.stderr.strip()}")
        self._unpacked.add((deb, dest))
        return dest

    def version(self, deb: Path) -> str:
        """The Version field of a .deb."""
        res = self._run(["dpkg-deb", "-f", str(deb), "Version"])
        if res.returncode != 0:
            raise FetchError(f"dpkg-deb -f {deb.name} Version failed: {res.stderr.strip()}")
        return res.stdout.strip()


def licence_from_copyright(text: str, hint: str | None = None) -> str:
    """The `License:` of the DEP-5 paragraph whose `Files:` matches `hint` (else `Files: *`)."""
    best, star = None, None
    for para in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:\s*(.+(?:\n\s+\S.*)*)", para, flags=re.M)
        lic = re.search(r"^License:\s*(\S.*)$", para, flags=re.M)
        if not files or not lic:
            continue
        globs = files.group(1).split()
        if "*" in globs and star is None:
            star = lic.group(1).strip()
        if hint and best is None and any(g != "*" and fnmatch.fnmatch(hint, g) for g in globs):
            best = lic.group(1).strip()
    return best or star or licence_from_text(text)


# free-text licence grants seen in the demo's packages (copyright files that are not DEP-5): regex -> name
LICENCE_PHRASES = (
    (r"GNU Lesser General Public License", "LGPL"),
    (r"GNU (Library )?General Public License", "GPL"),
    (r"Permission is hereby granted, free of charge, to use and distribute", "permissive (Festvox/CMU, MIT-like)"),
    (r"Redistribution and use,? (in source and binary forms, )?with or without modification", "BSD-style"),
    (r"Creative Commons", "Creative Commons"),
)


def licence_from_text(text: str) -> str:
    """The first licence grant of a free-text copyright file (upstream's comes before the packaging's)."""
    flat = " ".join(text.split())
    hits = [(m.start(), name) for pattern, name in LICENCE_PHRASES
            if (m := re.search(pattern, flat, flags=re.I)) is not None]
    if not hits:
        return "unknown (see licenses/)"
    start, name = min(hits)
    if name in ("GPL", "LGPL"):
        grant = flat[start: start + 300]
        version = re.search(r"version (\d(?:\.\d)?)", grant)
        later = re.search(r"any later version", grant, flags=re.I)
        name = f"{name}-{version.group(1)}{'+' if later else ''}" if version else name
    return f"{name} (from the copyright text; see licenses/)"


def read_copyright(pkg_dir: Path, pkg: str) -> str:
    """The copyright file of `pkg` in an unpacked package tree ('' when it has none)."""
    path = pkg_dir / "usr" / "share" / "doc" / pkg / "copyright"
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def unpack_licensed(build: Build, apt: Apt, deb: Path, pkg: str) -> tuple[Path, str]:
    """Unpack a package and keep its copyright file in the build; (unpacked root, copyright text)."""
    root = apt.extract(deb)
    text = read_copyright(root, pkg)
    keep_copyright(build, pkg, text)
    return root, text
