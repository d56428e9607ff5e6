"""CodecFake (Wu et al., Interspeech 2024): VCTK re-synthesised by neural audio codecs.

Licence: CC BY 4.0 (VCTK: CC BY 4.0). URL: https://huggingface.co/datasets/rogertseng/CodecFake_wavs
and https://github.com/roger-tseng/CodecFake (loaders: https://github.com/roger-tseng/CodecDetect).
Layout: the flat folder the official preprocessing makes, <root>/<codec>+<speaker>_<utt>.wav (genuine
VCTK as codec `genuine`), or the per-codec folders of the release, <root>/<codec>/<speaker>_<utt>.wav.
The codec is the system; a fake's parent is its VCTK utterance (`genuine+p225_001` -> `p225_001`).
The official split is by speaker (CodecDetect): dev p226, p229; eval p227, p228 (-> `eval:codecfake_wu`);
train the rest (`official_split: false` leaves the split to prepare).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.corpora.common import AdapterResult, finish, make_clip_id, reject
from pipeline.corpora.sources import as_set, audio_files, require_dir, source_row

CORPUS = "codecfake_wu"
GENUINE = "genuine"
DEV_SPEAKERS = ("p226", "p229")
EVAL_SPEAKERS = ("p227", "p228")


def parse_name(path: Path, root: Path) -> tuple[str, str] | None:
    """(codec, VCTK utterance) of a CodecFake file, from `<codec>+<utt>` or `<codec>/<utt>`; else None."""
    if "+" in path.stem:
        codec, utt = path.stem.split("+", 1)
        return (codec, utt) if codec and utt else None
    return (path.parent.name, path.stem) if path.parent != root else None


def speaker_split(speaker: str) -> str:
    """The CodecDetect split of a VCTK speaker."""
    if speaker in DEV_SPEAKERS:
        return "dev"
    return f"eval:{CORPUS}" if speaker in EVAL_SPEAKERS else "train"


def load_codecfake_wu(root: Path, codecs: list[str] | None = None, official_split: bool = True) -> AdapterResult:
    """Read CodecFake's files (flat `<codec>+<utt>.wav` or per-codec folders) into source rows."""
    root = require_dir(Path(root), CORPUS, "root")
    files = audio_files(root, recursive=True)
    if not files:
        raise FileNotFoundError(f"{CORPUS}: no audio under {root} (expected <codec>+<speaker>_<utt>.wav)")
    keep = as_set(codecs)
    rows, rejects = [], []
    for path in files:
        parsed = parse_name(path, root)
        if parsed is None or "_" not in parsed[1]:
            rejects.append(reject(CORPUS, "cannot tell codec and VCTK utterance from the name "
                                  "(expected <codec>+<speaker>_<utt>.wav)", path=path))
            continue
        codec, utt = parsed
        bona = codec == GENUINE
        if keep is not None and not bona and codec not in keep:
            continue
        speaker = utt.split("_", 1)[0]
        split = speaker_split(speaker) if official_split else None
        parent = make_clip_id(CORPUS, utt)
        clip_id = parent if bona else make_clip_id(CORPUS, f"{utt}__{codec}")
        rows.append(source_row(CORPUS, clip_id, path, speaker, "bonafide" if bona else "spoof", codec, split,
                               None if bona else parent))
    return finish(rows, rejects, CORPUS)
