"""The CPU code-path pin (pipeline/runtime/cpu_isa.py, applied by pipeline/__main__.py before torch is imported).

Unit tests pass the machine and /proc/cpuinfo text, so they run anywhere; the subprocess tests that train a tiny
net under different inherited ISA settings need an x86 Linux machine with AVX2 + FMA and skip elsewhere.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.runtime.cpu_isa import ATEN_VAR, PIN_VAR, PINS, cpu_flags, pin_cpu_isa

ROOT = Path(__file__).resolve().parents[2]
AVX2_CPU = "processor\t: 0\nflags\t\t: fpu sse2 avx fma avx2 avx512f\n"
OLD_CPU = "processor\t: 0\nflags\t\t: fpu sse2 sse4_2 avx\n"
LIB_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")
flags = cpu_flags() if platform.machine().lower() in ("x86_64", "amd64") else None
needs_avx2 = pytest.mark.skipif(not flags or not {"avx2", "fma"} <= flags,
                                reason="needs an x86 Linux machine with AVX2 + FMA (/proc/cpuinfo)")


def test_default_pin_sets_all_three_libraries_and_overrides_inherited_values():
    env = {ATEN_VAR: "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "PATH": "/bin"}
    pinned = pin_cpu_isa(env, machine="x86_64", cpuinfo=AVX2_CPU)
    assert pinned == PINS["avx2"] == {ATEN_VAR: "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"}
    assert env == {**pinned, PIN_VAR: "avx2", "PATH": "/bin"}


def test_native_opt_out_leaves_the_callers_values_alone():
    env = {PIN_VAR: "native", ATEN_VAR: "avx512", "MKL_CBWR": "AUTO"}
    assert pin_cpu_isa(env, machine="x86_64", cpuinfo=AVX2_CPU) == {}
    assert env == {PIN_VAR: "native", ATEN_VAR: "avx512", "MKL_CBWR": "AUTO"}
    assert pin_cpu_isa({PIN_VAR: " AVX2 "}, machine="AMD64", cpuinfo=AVX2_CPU) == PINS["avx2"]  # case, spaces


def test_no_aten_pin_without_avx2_and_fma_or_unreadable_flags():
    for cpuinfo in (OLD_CPU, "processor\t: 0\n"):  # no AVX2 / no flags line: forcing avx2 would crash
        env: dict[str, str] = {}
        pinned = pin_cpu_isa(env, machine="x86_64", cpuinfo=cpuinfo)
        assert pinned == {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"} and ATEN_VAR not in env
    assert cpu_flags(OLD_CPU) == {"fpu", "sse2", "sse4_2", "avx"} and cpu_flags("model name: x") is None


def test_non_x86_machines_are_not_pinned():
    for machine in ("aarch64", "arm64", "ppc64le"):
        env: dict[str, str] = {}
        assert pin_cpu_isa(env, machine=machine, cpuinfo=AVX2_CPU) == {} and env == {PIN_VAR: "avx2"}


def test_unknown_pin_is_an_error_and_sets_nothing():
    env = {PIN_VAR: "avx512"}
    with pytest.raises(ValueError, match="HARDSET_CPU_ISA='avx512'.*native"):
        pin_cpu_isa(env, machine="x86_64", cpuinfo=AVX2_CPU)
    assert env == {PIN_VAR: "avx512"}
    proc = subprocess.run([sys.executable, "-m", "pipeline", "fit_codec", "--clips", "x", "--out", "y"], cwd=ROOT,
                          env={**_clean_env(), PIN_VAR: "avx512"}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "error: HARDSET_CPU_ISA='avx512'" in proc.stderr and "Traceback" not in proc.stderr


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (*LIB_VARS, PIN_VAR, "OMP_WAIT_POLICY")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _entry_env(**extra: str) -> dict[str, str]:
    """The environment that `python -m pipeline` leaves before any stage runs, started from the given one."""
    code = "import json, os; import pipeline.__main__; print(json.dumps(dict(os.environ)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_clean_env(**extra), capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return json.loads(out)


def test_entry_sets_defaults_but_keeps_a_users_explicit_values():
    user = _entry_env(HARDSET_CPU_ISA="native", ATEN_CPU_CAPABILITY="default", OMP_WAIT_POLICY="ACTIVE")
    assert (user[PIN_VAR], user[ATEN_VAR], user["OMP_WAIT_POLICY"]) == ("native", "default", "ACTIVE")
    assert "MKL_CBWR" not in user and "ONEDNN_MAX_CPU_ISA" not in user
    default = _entry_env()
    assert default[PIN_VAR] == "avx2" and default["OMP_WAIT_POLICY"] == "PASSIVE"
    if flags and {"avx2", "fma"} <= flags:
        assert {k: default[k] for k in LIB_VARS} == PINS["avx2"]


# A few Adam steps of a tiny conv + norm + LSTM + linear net: the op mix of fit_codec / fit_diffusion
# (oneDNN convolutions and LSTM, ATen pointwise/norm kernels, MKL GEMM). Prints the weights' hash.
TRAIN = """
import pipeline.__main__  # what `python -m pipeline` runs first: the CPU pin, before torch is imported
import hashlib, torch
torch.set_num_threads(1)
torch.manual_seed(0)
conv = torch.nn.Sequential(torch.nn.Conv1d(1, 8, 7, padding=3), torch.nn.GroupNorm(2, 8), torch.nn.SiLU(),
                           torch.nn.Conv1d(8, 8, 4, stride=2), torch.nn.ELU())
lstm, head = torch.nn.LSTM(8, 8), torch.nn.Linear(8, 1)
params = [*conv.parameters(), *lstm.parameters(), *head.parameters()]
opt = torch.optim.Adam(params, lr=1e-2)
for _ in range(4):
    x = torch.randn(4, 1, 400)
    h = conv(x).permute(2, 0, 1)
    y = head(torch.softmax(lstm(h)[0], dim=-1)).squeeze(-1)
    loss = (y - x[:, 0, :y.shape[0]].T).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in params)).hexdigest()
print(digest, torch.backends.cpu.get_cpu_capability())
"""


def _train(**extra: str) -> tuple[str, str]:
    out = subprocess.run([sys.executable, "-c", TRAIN], cwd=ROOT, env=_clean_env(**extra), capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    return out[0], out[1]


@needs_avx2
def test_pinned_training_is_byte_identical_whatever_isa_the_parent_environment_forces():
    pinned = [_train(),
              _train(ATEN_CPU_CAPABILITY="avx512", ONEDNN_MAX_CPU_ISA="AVX512_CORE", MKL_CBWR="AUTO"),
              _train(ATEN_CPU_CAPABILITY="default", ONEDNN_MAX_CPU_ISA="SSE41")]
    assert all(run == pinned[0] for run in pinned) and pinned[0][1] == "AVX2"
    # control: without the pin, the same inherited setting does change the bytes (so the check is not vacuous)
    native = _train(HARDSET_CPU_ISA="native", ATEN_CPU_CAPABILITY="default", ONEDNN_MAX_CPU_ISA="SSE41")
    assert native[1] == "DEFAULT" and native[0] != pinned[0][0]


def test_the_ray_engine_forwards_every_pinned_variable():
    from pipeline.runtime.engine import FORWARDED_ENV

    assert {PIN_VAR, "OMP_WAIT_POLICY", *(k for pin in PINS.values() for k in pin)} == set(FORWARDED_ENV)


@needs_avx2
def test_the_test_session_runs_pinned_like_a_stage():
    import torch

    if os.environ.get(PIN_VAR) != "native":  # conftest imports pipeline.__main__ before torch
        assert torch.backends.cpu.get_cpu_capability() == "AVX2" and os.environ["MKL_CBWR"] == "COMPATIBLE"
