"""Params files that parse but cannot mean what they say (issue 27, cases 10, 11, 22, 23): a YAML boolean where a
number belongs (and a number where a boolean belongs), a key given twice, aliases that expand without bound (a
"billion laughs" file), a negative seed. Each is a ConfigError naming the key or line at the stage's start,
printed as one line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from pipeline import __main__ as cli
from pipeline.params import SEED_MAX, ConfigError, load_params
from pipeline.resynth.fitting import like_default
from tests.test_params import BASE, parse_all, with_value

# Keys whose value was taken as a number when it was `true` (true == 1 in Python), or as a flag when it was `1`.
BOOL_AS_NUMBER = [
    ("fetch_demo.min_duration_s", r"fetch_demo.min_duration_s: expected a number, got True"),
    ("fetch_demo.max_duration_s", r"fetch_demo.max_duration_s: expected a number, got True"),
    ("fit_codec.model.n_filters", r"fit_codec.model.n_filters: expected an integer, got True"),
    ("fit_codec.model.dimension", r"fit_codec.model.dimension: expected an integer, got True"),
    ("fit_codec.model.bandwidths", r"fit_codec.model.bandwidths: expected a list, got bool True"),
    ("fit_diffusion.unet.layers_per_block", r"fit_diffusion.unet.layers_per_block: expected an integer, got True"),
    ("sample.ratio", r"sample.ratio must be a number in \(0, 1\], got True"),
    ("sample.class_ratio", r"sample.class_ratio: expected a mapping"),
    ("train.epochs", r"train.epochs: expected an integer, got True"),
    ("seed", r"params seed: expected an integer, got True"),
]
NUMBER_AS_BOOL = ["fetch_demo.synthetic", "fetch_demo.codec2_examples", "pretrain.live", "sample.normalize",
                  "report.pca_normalize", "report.experiments"]


@pytest.mark.parametrize("dotted, match", BOOL_AS_NUMBER, ids=[c[0] for c in BOOL_AS_NUMBER])
def test_a_yaml_boolean_where_a_number_belongs_is_a_config_error(dotted, match):
    with pytest.raises(ConfigError, match=match):
        parse_all(with_value(BASE, dotted, True))


@pytest.mark.parametrize("dotted", NUMBER_AS_BOOL)
def test_a_number_where_a_boolean_belongs_is_a_config_error(dotted):
    with pytest.raises(ConfigError, match=rf"{dotted}: expected true or false, got 1"):
        parse_all(with_value(BASE, dotted, 1))


def test_a_string_ratio_is_not_read_as_a_number():
    with pytest.raises(ConfigError, match=r"sample.class_ratio\['spoof'\] must be a number in \(0, 1\], got '0.5'"):
        parse_all(with_value(BASE, "sample.class_ratio", {"spoof": "0.5"}))


def test_model_overrides_are_checked_like_their_defaults():
    assert like_default("m.ratios", [8, 5], [8, 5, 4, 2]) == [8, 5]
    assert like_default("m.lstm", 0, 0) == 0 and like_default("m.normalize", False, True) is False
    with pytest.raises(ConfigError, match=r"m.ratios\[1\]: must be >= 1, got 0"):
        like_default("m.ratios", [8, 0], [8, 5, 4, 2])
    with pytest.raises(ConfigError, match=r"m.bandwidths\[0\]: must be > 0, got -1.5"):
        like_default("m.bandwidths", [-1.5], [1.5, 3.0])
    parse_all(with_value(BASE, "fit_codec.model", {"n_filters": 4, "bandwidths": [3.0], "normalize": False}))


@pytest.mark.parametrize("dotted", ["seed", "train.seed", "sample.seed", "evaluate.seed"])
def test_a_negative_or_huge_seed_is_a_config_error(dotted):
    with pytest.raises(ConfigError, match=rf"params {dotted}: must be >= 0, got -1"):
        parse_all(with_value(BASE, dotted, -1))
    with pytest.raises(ConfigError, match=rf"params {dotted}: must be <= {SEED_MAX}"):
        parse_all(with_value(BASE, dotted, SEED_MAX + 1))
    parse_all(with_value(BASE, dotted, SEED_MAX))


def test_a_negative_seed_stops_fetch_demo_with_one_line_before_any_work(tmp_path, capsys):
    """Before: numpy's default_rng(-1) raised a ValueError traceback inside fetch_demo."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_value(BASE, "seed", -1)))
    code = cli.main(["fetch_demo", "--out", str(tmp_path / "demo"), "--params", str(tmp_path / "params.yaml")])
    assert code == 2 and capsys.readouterr().err == "error: params seed: must be >= 0, got -1\n"
    assert not (tmp_path / "demo").exists()


def test_a_key_given_twice_is_a_config_error_naming_both_lines(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\ntrain:\n  epochs: 3\n  lr: 0.001\n  epochs: 30\n")
    with pytest.raises(ConfigError, match=r"line 5: key 'epochs' is given twice in one mapping \(first on line 3\)"):
        load_params(path)
    path.write_text("train: {epochs: 3}\nseed: 1\ntrain: {epochs: 30}\n")
    with pytest.raises(ConfigError, match=r"line 3: key 'train' is given twice .*first on line 1"):
        load_params(path)
    path.write_text("train: {epochs: 3, epochs: 4}\n")
    with pytest.raises(ConfigError, match="key 'epochs' is given twice"):
        load_params(path)


def test_the_same_key_in_two_mappings_is_fine(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train: {seed: 1}\nsample: {seed: 1}\nseed: 1\n")
    assert load_params(path) == {"train": {"seed": 1}, "sample": {"seed": 1}, "seed": 1}


def test_an_alias_bomb_is_refused_at_once_without_expanding(tmp_path):
    """Nine levels of nine aliases: 9**9 (387 million) leaves once expanded. Before: loaded without a word, and a
    stage that walked the values (json of a config, a copy) ran out of memory. Now counted on the node graph."""
    lines = ["a0: &a0 [lol]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = tmp_path / "params.yaml"
    path.write_text("\n".join(lines) + "\nseed: 1\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"params.yaml: its anchors and aliases expand to 926,177,118 values "
                                          r"\(at most 100,000 allowed\)"):
        load_params(path)
    assert time.perf_counter() - start < 1.0


def test_anchors_aliases_and_merge_keys_within_bounds_are_read(tmp_path):
    """yaml.safe_dump writes an anchor for a block used twice (a shared pool); `<<: *base` merges keys."""
    pool = {"paradigms": ["bonafide", "vocoder"]}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"teachers": {"t1": {"arch": "resnet", "pool": pool},
                                                 "t2": {"arch": "convnext", "pool": pool}}}))
    assert "&id001" in path.read_text()
    assert load_params(path)["teachers"]["t2"]["pool"] == pool
    path.write_text("base: &b {epochs: 3, lr: 0.1}\ntrain:\n  <<: *b\n  lr: 0.2\n")
    assert load_params(path)["train"] == {"epochs": 3, "lr": 0.2}


def test_a_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\nloop: &a [1, *a]\n")
    with pytest.raises(ConfigError, match=r"line 2: an alias inside its own anchor"):
        load_params(path)


def test_the_repository_params_files_use_neither():
    root = Path(__file__).resolve().parents[1]
    assert load_params(root / "params.yaml")["seed"] == 1234 and load_params(root / "params.tiny.yaml")


def test_a_duplicate_key_stops_a_stage_with_one_line(tmp_path, capsys):
    text = (Path(__file__).resolve().parents[1] / "params.yaml").read_text() + "\nseed: 7\n"
    (tmp_path / "params.yaml").write_text(text)
    argv = ["train", "--manifest", "m", "--dev", "d", "--out", str(tmp_path / "o"), "--params",
            str(tmp_path / "params.yaml")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "key 'seed' is given twice in one mapping (first on line 3)" in err
