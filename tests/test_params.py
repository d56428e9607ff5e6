"""Params: one stage opening (common_params + Section.from_params); every section and nested block checked.

Each case sets one key of the repository's params.yaml to a typo or an impossible value and expects a
ConfigError naming it, raised by the parsing every stage does at its start; `python -m pipeline <stage>`
prints it as one `error: ...` line with exit code 2.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from pipeline import __main__ as cli
from pipeline import (
    audit,
    embed,
    evaluate,
    fetch_demo,
    fit_codec,
    fit_diffusion,
    prepare,
    pretrain,
    reconstruct,
    report,
    sample,
    train,
)
from pipeline.detector.batches import check_pool
from pipeline.models import check_config
from pipeline.params import (
    ConfigError,
    Match,
    Runtime,
    common_params,
    load_params,
    merge_params,
    roles_from_params,
    section,
    teacher_params,
)
from pipeline.runtime.devices import resolve_device, setup_torch

ROOT = Path(__file__).resolve().parents[1]
BASE = load_params(ROOT / "params.yaml")
TINY = merge_params(BASE, load_params(ROOT / "params.tiny.yaml"))


def parse_all(params: dict[str, Any]) -> None:
    """Everything the stages parse at their start, for every stage, teacher and paradigm."""
    common = common_params(params)
    fetch_demo.FetchDemoParams.from_params(section(params, "fetch_demo"), seed=common.seed)
    prepare.PrepareParams.from_params(section(params, "prepare"), sample_rate=common.sample_rate, seed=common.seed)
    fit_codec.FitCodecParams.from_params(section(params, "fit_codec"))
    fit_diffusion.FitDiffusionParams.from_params(section(params, "fit_diffusion"))
    for paradigm in ("vocoder", "codec", "diffusion"):
        reconstruct.ReconstructParams.from_params(section(params, "reconstruct"), paradigm=paradigm)
    for name in section(params, "teachers"):
        teacher = teacher_params(params, name)
        check_pool(teacher.pool, f"{teacher.where}.pool")
        check_config(teacher.model_config(common.sample_rate), teacher.where)
    pretrain.PretrainParams.from_params(section(params, "pretrain"), sample_rate=common.sample_rate)
    embed.EmbedParams.from_params(section(params, "embed"))
    sample.SampleParams.from_params(section(params, "sample"))
    train.TrainParams.from_params(section(params, "train"), sample_rate=common.sample_rate)
    evaluate.EvaluateParams.from_params(section(params, "evaluate"))
    audit.AuditParams.from_params(section(params, "audit"), seed=common.seed)
    Match.from_params(params.get("match"))
    roles_from_params(params)
    report.parse_params(params.get("report"), common.seed)


def with_value(params: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of params with the key at `dotted` (a.b.c) set to `value`."""
    out = copy.deepcopy(params)
    *parents, last = dotted.split(".")
    node = out
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return out


def test_both_profiles_parse_and_the_tiny_profile_only_overrides_existing_keys():
    parse_all(BASE)
    parse_all(TINY)

    def tree(d: dict, prefix: str = "") -> set[str]:
        keys = set()
        for k, v in d.items():
            keys.add(prefix + k)
            if isinstance(v, dict):
                keys |= tree(v, f"{prefix}{k}.")
        return keys

    assert tree(TINY) == tree(BASE)  # merging added no key, so the key trees stay equal
    assert TINY["fetch_demo"]["synthetic"] is True and BASE["fetch_demo"]["synthetic"] is False
    assert TINY["train"]["supcon"]["temperature"] == BASE["train"]["supcon"]["temperature"]  # merged, not replaced
    assert TINY["train"]["supcon"]["queue_size"] == 32


def test_merge_params_merges_mappings_replaces_values_and_refuses_new_keys():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 2, "c": {}}
    assert merge_params(base, {"a": {"y": [3]}, "c": {"k": 1}}) == {"a": {"x": 1, "y": [3]}, "b": 2, "c": {"k": 1}}
    with pytest.raises(ConfigError, match=r"params override a.z: not a key of the base params; known: \['x', 'y'\]"):
        merge_params(base, {"a": {"z": 1}})


CASES = [
    # reconstruct: top-level and per-paradigm keys, system names, values
    ("reconstruct.vocoder.parent_fractoin", 1.0, r"reconstruct.vocoder: unknown keys \['parent_fractoin'\]"),
    ("reconstruct.system", ["world"], r"params reconstruct: unknown keys \['system'\]; known: \[.*'vocoder'"),
    ("reconstruct.batchsize", 8, r"params reconstruct: unknown keys \['batchsize'\]"),
    ("reconstruct.diffusion.strenghts", [0.5], r"reconstruct.diffusion: unknown keys \['strenghts'\]"),
    ("reconstruct.codec.systems", ["encodec_6kbps", "mp4_3kbps"], r"unknown codec systems \['mp4_3kbps'\]"),
    ("reconstruct.vocoder.systems", ["world", "wavenet"], r"unknown vocoder systems \['wavenet'\]"),
    ("reconstruct.diffusion.strengths", [0.5, 2.0], r"reconstruct.diffusion: diffusion strengths .* \[2.0\]"),
    ("reconstruct.batch_size", 0, r"reconstruct.batch_size: must be >= 1, got 0"),
    ("reconstruct.vocoder.parent_fraction", 0, r"reconstruct.vocoder.parent_fraction: must be > 0"),
    ("reconstruct.codec.systems_per_parent", 9, r"reconstruct.codec.systems_per_parent: must be <= 3"),
    ("reconstruct.vocoder.griffinlim_iters", 0, r"reconstruct.vocoder.griffinlim_iters: must be >= 1"),
    ("reconstruct.splits", "train", r"reconstruct.splits: expected a list, got str 'train'"),
    ("reconstruct.splits", ["train", "tset"], r"reconstruct.splits: expected train/dev/test"),
    # teachers: model keys, pool filters
    ("teachers.resnet_vocoder.widht", 16, r"teachers.resnet_vocoder \(resnet\): unknown keys \['widht'\]"),
    ("teachers.convnext_codec.strides", [2, 2], r"teachers.convnext_codec \(convnext\): unknown keys \['strides'\]"),
    ("teachers.resnet_vocoder.arch", "resnett", r"teachers.resnet_vocoder.arch: unknown architecture 'resnett'"),
    ("teachers.resnet_vocoder.pool.paradigm", ["codec"], r"teachers.resnet_vocoder.pool: unknown keys \['paradigm'\]"),
    ("teachers.resnet_vocoder.pool.paradigms", ["vocoders"], r"pool.paradigms: unknown names \['vocoders'\]"),
    ("teachers.resnet_vocoder.pool.splits", ["eval:tts"], r"pool.splits: .*never eval"),
    # train: model, loss blocks, names, values
    ("train.model", {"blokcs": [1, 1]}, r"train.model \(resnet\): unknown keys \['blokcs'\]"),
    ("train.model", {"width": 4}, r"train.model: \['width'\] are set by train.<key>"),
    ("train.supcon.temprature", 0.1, r"train.supcon: unknown keys \['temprature'\]; known: \["),
    ("train.racl.wieght", 0.1, r"train.racl: unknown keys \['wieght'\]"),
    ("train.exclude_paradigms", ["codecs"],
     r"train.exclude_paradigms: unknown names \['codecs'\]; known: \['diffusion', 'codec', 'vocoder', 'tts', "
     r"'vc', 'corpus'\]"),
    ("train.exclude_paradigms", "codec", r"train.exclude_paradigms: expected a list, got str 'codec'"),
    ("train.objective", "hinge", r"train.objective: unknown value 'hinge'; known: \['ce'"),
    ("train.lr", -1, r"train.lr: must be > 0, got -1"),
    ("train.eval_s", -2.0, r"train.eval_s: must be > 0"),
    ("train.epochs", "8", r"train.epochs: expected an integer, got '8'"),
    # nested blocks: augment, init, a teacher's checkpoint and pool, prepare's chain
    ("train.augment.codec_prob", 1.5, r"params train.augment.codec_prob: a probability in \[0, 1\]"),
    ("train.augment.codec_systems", "mp3_16kbps", r"params train.augment.codec_systems: expected a list"),
    ("pretrain.augment.rawboost_algos", ["boost"], r"params pretrain.augment.rawboost_algos: unknown \['boost'\]"),
    ("pretrain.augment.rawboost", {"snr": 3}, r"params pretrain.augment.rawboost: unknown keys \['snr'\]"),
    ("train.init_mode", "head", r"params train.init_mode: unknown value 'head'"),
    ("train.supcon.temperature", 0, r"params train.supcon.temperature: must be > 0"),
    ("train.supcon.similarity", "dot", r"params train.supcon.similarity: unknown value 'dot'"),
    ("train.racl.layers", "layer2", r"params train.racl.layers: expected a list"),
    ("train.init", "", r"params train.init: a model directory path or null"),
    ("teachers.resnet_vocoder.checkpoint", 3, r"params teachers.resnet_vocoder.checkpoint: expected a path or null"),
    ("teachers.resnet_vocoder.pool", [1], r"params teachers.resnet_vocoder.pool: expected a mapping"),
    ("prepare.vad_trim", "yes", r"params prepare.vad_trim: expected true or false"),
    # the other stages
    ("pretrain.lr", -1, r"pretrain.lr: must be > 0"),
    ("pretrain.crop_s", -1.0, r"pretrain.crop_s: must be > 0"),
    ("pretrain.epoch", 3, r"params pretrain: unknown keys \['epoch'\]"),
    ("fit_codec.lr", -1, r"fit_codec.lr: must be > 0"),
    ("fit_codec.model.n_filterz", 4, r"fit_codec.model: unknown keys \['n_filterz'\]"),
    ("fit_diffusion.unet.layers", 2, r"fit_diffusion.unet: unknown keys \['layers'\]"),
    ("fit_diffusion.steps", 0, r"fit_diffusion.steps: must be >= 1"),
    ("audio.sample_rate", 0, r"audio.sample_rate: must be > 0, got 0"),
    ("audio.samplerate", 16000, r"params audio: unknown keys \['samplerate'\]"),
    ("prepare.max_duration_s", 0, r"prepare.max_duration_s: must be > 0.3, got 0"),
    ("prepare.min_duration_s", -1.0, r"prepare.min_duration_s: must be >= 0, got -1.0"),
    ("prepare.lowpass_hz", -5, r"prepare.lowpass_hz: must be > 0, got -5"),
    ("prepare.lowpass_hz", 9000, r"prepare.lowpass_hz: must be <= 8000"),
    ("prepare.dev_fraction", 0.9, r"dev_fraction \+ test_fraction must be < 1"),
    ("prepare.corpora", "demo", r"prepare.corpora: expected a list, got str 'demo'"),
    ("prepare.corpora", [{"name": "demo", "root": "x", "parttions": ["train"]}],
     r"prepare.corpora\[0\] \(demo\): unknown keys \['parttions'\]"),
    ("prepare.corpora", [{"name": "asvspoof", "root": "x"}], r"prepare.corpora\[0\].name: unknown value 'asvspoof'"),
    ("prepare.corpora", [{"name": "demo"}], r"prepare.corpora\[0\] \(demo\): needs a root"),
    ("prepare.workers", 0, r"prepare.workers: must be >= 1"),
    ("fetch_demo.max_duration_s", 0, r"need 0 < min_duration_s < max_duration_s"),
    ("fetch_demo.min_duration_s", -1.0, r"need 0 < min_duration_s < max_duration_s"),
    ("fetch_demo.languages", "en", r"fetch_demo.languages: expected a list, got str 'en'"),
    ("fetch_demo.clips_per_lang", 3, r"params fetch_demo: unknown keys \['clips_per_lang'\]"),
    ("embed.batch_size", 0, r"embed.batch_size: must be >= 1"),
    ("embed.layers", "penultimate", r"embed.layers: expected a list"),
    ("embed.aggregate", "max", r"embed.aggregate: unknown value 'max'"),
    ("sample.ratio", 0, r"sample.ratio must be in \(0, 1\]"),
    ("sample.methd", "nc", r"params sample: unknown keys \['methd'\]"),
    ("evaluate.batch_size", 0, r"evaluate.batch_size: must be >= 1"),
    ("evaluate.sets", "test", r"evaluate.sets: expected a list"),
    ("report.pca_pionts", 3, r"params report: unknown keys \['pca_pionts'\]"),
    ("audit.folds", 1, r"audit.folds: must be >= 2"),
    ("audit.min_eer", 2, r"audit.min_eer: must be <= 1"),
    ("match.gate", "zero", r"match.gate: unknown value 'zero'"),
    ("roles.encodec_6kbps", "fake", r"roles.encodec_6kbps: unknown value 'fake'"),
    ("evaluate.conditions", ["encodec_6kbps"], r"evaluate.conditions: 'encodec_6kbps' is not a channel"),
    ("train.pair_batches", 1, r"train.pair_batches: expected true or false"),
    ("prepare.match_fakes", "demo", r"prepare.match_fakes: expected a list"),
    ("runtime.device", "tpu", r"runtime.device: expected auto, cpu, cuda or cuda:<n>, got 'tpu'"),
    ("runtime.threads", -1, r"runtime.threads: must be >= 0"),
    ("runtime.thread", 2, r"params runtime: unknown keys \['thread'\]"),
    ("runtime.engine", "spark", r"runtime.engine: unknown value 'spark'; known: \['local', 'ray'\]"),
    ("runtime.concurrency", 0, r"runtime.concurrency"),
    ("seed", "abc", r"params seed: expected an integer, got 'abc'"),
]


@pytest.mark.parametrize("dotted, value, match", CASES, ids=[f"{c[0]}={c[1]!r}"[:60] for c in CASES])
def test_a_bad_key_or_value_is_a_config_error_naming_it(dotted, value, match):
    with pytest.raises(ConfigError, match=match):
        parse_all(with_value(BASE, dotted, value))


def test_a_missing_section_or_file_or_bad_yaml_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="params has no 'train' section"):
        section({"seed": 1}, "train")
    with pytest.raises(ConfigError, match="params train: expected a mapping of keys, got list"):
        section({"train": [1]}, "train")
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("train: {epochs: 2\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_params(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match=r"teacher 'T9' is not in params `teachers:`; known: \['convnext_codec'"):
        teacher_params(BASE, "T9")
    with pytest.raises(ConfigError, match="params audio.sample_rate is missing"):
        _ = common_params({"seed": 1}).sample_rate


def test_common_params_parse_seed_audio_and_runtime_once():
    common = common_params(BASE)
    assert (common.seed, common.sample_rate, common.runtime) == (1234, 16000, Runtime("auto", 2, "local", 2, None))
    assert common_params({}).runtime == Runtime()  # the demo's threads (2) when runtime is absent
    assert setup_torch(common_params({"seed": 3, "runtime": {"device": "cpu", "threads": 1}})).type == "cpu"
    assert torch.get_num_threads() == 1


def test_cuda_without_a_gpu_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ConfigError, match=r"device 'cuda' asked for, but no such CUDA GPU is available"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def _params_file(tmp_path: Path, dotted: str, value: Any) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(with_value(BASE, dotted, value)))
    return str(path)


@pytest.mark.parametrize("argv, dotted, value, message", [
    (["prepare"], "prepare.lowpass_hz", -5, "error: params prepare.lowpass_hz: must be > 0, got -5"),
    (["reconstruct", "vocoder", "--clips", "c", "--out", "o", "--audio-dir", "a", "--quality", "q"],
     "reconstruct.vocoder.parent_fractoin", 1.0, "error: params reconstruct.vocoder: unknown keys ['parent_fractoin']"),
    (["train", "--manifest", "m", "--dev", "d", "--out", "o"], "train.exclude_paradigms", ["codecs"],
     "error: params train.exclude_paradigms: unknown names ['codecs']; known: ['diffusion', 'codec', 'vocoder', "
     "'tts', 'vc', 'corpus']"),
    (["pretrain", "resnet_vocoder", "--clips", "c", "--out", "o"], "teachers.resnet_vocoder.widht", 16,
     "error: params teachers.resnet_vocoder (resnet): unknown keys ['widht']"),
    (["sample", "--clips", "c", "--embeddings", "e", "--out", "o", "--diagnostics", "d"], "runtime.thread", 2,
     "error: params runtime: unknown keys ['thread']"),
])
def test_python_m_pipeline_prints_one_error_line_and_exits_2(tmp_path, capsys, argv, dotted, value, message):
    assert cli.main([*argv, "--params", _params_file(tmp_path, dotted, value)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(message) and "Traceback" not in "\n".join(err)


def test_runtime_device_cuda_without_a_gpu_fails_the_stage_at_start(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["train", "--manifest", "missing.parquet", "--dev", "d", "--out", str(tmp_path / "o")]
    assert cli.main([*argv, "--params", _params_file(tmp_path, "runtime.device", "cuda")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: device 'cuda' asked for")
    assert not (tmp_path / "o").exists()


def test_the_real_command_line_gives_one_line_and_exit_code_2(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "pipeline", "prepare", "--params",
                          _params_file(tmp_path, "audio.sample_rate", 0)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and out.stderr == "error: params audio.sample_rate: must be > 0, got 0\n"


def test_augment_checks_its_codecs_at_the_audio_sample_rate():
    block = {"augment": {"enabled": True, "codec_prob": 0.5, "codec_systems": ["mp3_96kbps"]}}
    train.TrainParams.from_params(block, sample_rate=16000)  # 8-160 kbps at 16 kHz
    with pytest.raises(ConfigError, match=r"params train.augment.codec_systems: mp3_96kbps: MP3 at 8000 Hz"):
        train.TrainParams.from_params(block, sample_rate=8000)  # 8-64 kbps at 8 kHz


def test_the_stages_that_read_another_stages_section_parse_only_their_keys():
    from pipeline.chain import Chain, chain_from_params
    from pipeline.corpus_index import CorpusRoots
    from pipeline.detector.finetune import InitParams

    assert chain_from_params(BASE, 16000) == Chain(16000, vad_trim=True, max_duration_s=10.0, lowpass_hz=None)
    assert InitParams.from_part(BASE["train"]) == InitParams(None, "all")
    assert CorpusRoots.from_part(BASE["prepare"]).corpora == ({"name": "demo", "root": "data/raw/demo"},)
