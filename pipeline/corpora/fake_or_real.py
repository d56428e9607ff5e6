"""Fake-or-Real (FoR, Reimao & Tzerpos, 2019): real speech and speech from TTS systems, in four versions.

Licence: not verified here (see the authors' release terms). URL: https://bil.eecs.yorku.ca/datasets/
Layout: <root>/<version>/{training,validation,testing}/{real,fake}/ with version for-original,
for-norm, for-2seconds or for-rerecorded (the Kaggle mirror nests them: for-norm/for-norm/,
for-2sec/for-2seconds/, for-original/for-original/, for-rerec/for-rerecorded/; both are found, and a
root that is itself one version folder works too). Audio is wav and mp3; a file that does not decode
becomes a rejects row when prepare reads it. The versions hold the same utterances processed
differently, so only `versions` (default for-norm) are read. training -> train, validation -> dev,
testing -> `eval:fake_or_real_<version>` (e.g. eval:fake_or_real_norm). FoR gives no speaker ids and
no per-file TTS system: speaker is `<version>_<partition>` (a partition shares no speaker label with
another, so the speaker check holds trivially) and the system `for_unknown`.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.corpora.common import AdapterResult, finish, make_clip_id
from pipeline.corpora.sources import audio_files, require_dir, source_row

CORPUS = "fake_or_real"
VERSIONS = {"for-original": "for-original", "for-norm": "for-norm", "for-2seconds": "for-2sec",
            "for-rerecorded": "for-rerec"}  # version -> the Kaggle mirror's outer folder
PARTITIONS = {"training": "train", "validation": "dev", "testing": None}
CLASSES = {"real": "bonafide", "fake": "spoof"}


def version_dir(root: Path, version: str) -> Path:
    """The folder holding <partition>/<class>/ of a FoR version, in either layout."""
    for candidate in (root, root / version, root / VERSIONS[version] / version):
        if candidate.name == version and any((candidate / part).is_dir() for part in PARTITIONS):
            return candidate
    raise FileNotFoundError(f"{CORPUS}: version {version} not found in {root} "
                            f"(looked for {version}/ and {VERSIONS[version]}/{version}/)")


def load_fake_or_real(root: Path, versions: list[str] | tuple[str, ...] = ("for-norm",),
                      partitions: list[str] | tuple[str, ...] = tuple(PARTITIONS)) -> AdapterResult:
    """Read the chosen FoR versions and partitions into source rows (label from the folder)."""
    root = require_dir(Path(root), CORPUS, "root")
    versions = [versions] if isinstance(versions, str) else list(versions)
    rows = []
    for version in versions:
        if version not in VERSIONS:
            raise ValueError(f"{CORPUS}: unknown version {version!r}; known: {sorted(VERSIONS)}")
        base = version_dir(root, version)
        short = version.removeprefix("for-")
        for part in partitions:
            if part not in PARTITIONS:
                raise ValueError(f"{CORPUS}: unknown partition {part!r}; known: {list(PARTITIONS)}")
            require_dir(base / part, CORPUS, f"{version} partition")
            split = PARTITIONS[part] or f"eval:{CORPUS}_{short}"
            for cls, label in CLASSES.items():
                for path in audio_files(require_dir(base / part / cls, CORPUS, f"{version}/{part} class")):
                    clip_id = make_clip_id(CORPUS, f"{short}_{part}_{cls}_{path.stem}")
                    rows.append(source_row(CORPUS, clip_id, path, f"{short}_{part}", label, "for_unknown", split))
    return finish(rows, [], CORPUS)
