"""Pin torch's CPU code paths so that a stage's output does not depend on which x86 machine runs it.

Same machine + same seed is byte-identical anyway. Across machines, torch's libraries pick their kernels
from the CPU they find, and each path rounds differently (training then amplifies the last bits):
- ATen's vectorised kernels (ATEN_CPU_CAPABILITY: default | avx2 | avx512): softmax, GRU cells, norms, ...;
- oneDNN's convolutions and LSTM (ONEDNN_MAX_CPU_ISA: the highest ISA its JIT may use);
- MKL's GEMM / LAPACK (MKL_CBWR, conditional numerical reproducibility). Its AVX2 branch is honoured on Intel
  CPUs only (MKL falls back to AUTO on AMD), so the pin is COMPATIBLE, the one branch every x86 vendor runs.
Each library reads its variable once, on first use: `pin_cpu_isa(os.environ)` must run before torch is
imported, so pipeline/__main__.py calls it first thing, and every child process (Ray workers) inherits it.

HARDSET_CPU_ISA selects the pin: `avx2` (default: AVX2 + FMA, every x86-64 CPU since about 2015) or `native`
(the opt-out: the variables are left as the caller set them, e.g. for GEMM-heavy SSL models, where MKL's
COMPATIBLE path costs about 2.3x). With the pin on, inherited values of the three variables are overridden:
a stray ATEN_CPU_CAPABILITY in a shell or an image would otherwise silently defeat it.
Not pinned: ARM and other non-x86 machines (the variables are x86-only; their outputs differ from x86 anyway);
ATen's level where the CPU lacks AVX2 + FMA or its flags cannot be read (forcing avx2 there would crash with an
illegal instruction), so such machines keep their own ATen path and match only each other.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, MutableMapping
from pathlib import Path

PIN_VAR = "HARDSET_CPU_ISA"
DEFAULT_PIN = "avx2"
NATIVE = "native"
ATEN_VAR = "ATEN_CPU_CAPABILITY"
# The library variables each pin sets; ATen's entry only where the CPU is known to run it.
PINS: dict[str, dict[str, str]] = {
    "avx2": {ATEN_VAR: "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"},
}
X86 = {"x86_64", "amd64", "x64"}


def cpu_flags(cpuinfo: str | None = None) -> set[str] | None:
    """The CPU feature flags of /proc/cpuinfo (or of the given text); None where there is no such file."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        if not path.is_file():
            return None
        cpuinfo = path.read_text(errors="replace")
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return None


def pin_cpu_isa(environ: MutableMapping[str, str], machine: str | None = None,
                cpuinfo: str | None = None) -> dict[str, str]:
    """Apply HARDSET_CPU_ISA (default avx2) to `environ`; returns the variables set ({} when not pinned).

    `machine` and `cpuinfo` default to this machine's (tests pass others). ValueError on an unknown pin.
    """
    choice = environ.setdefault(PIN_VAR, DEFAULT_PIN).strip().lower()
    if choice == NATIVE:
        return {}
    if choice not in PINS:
        raise ValueError(f"{PIN_VAR}={environ[PIN_VAR]!r}: expected one of {sorted([*PINS, NATIVE])}")
    if (machine or platform.machine()).lower() not in X86:
        return {}
    pinned = dict(PINS[choice])
    flags = cpu_flags(cpuinfo)
    if flags is None or not {"avx2", "fma"} <= flags:
        del pinned[ATEN_VAR]
    environ.update(pinned)
    return pinned


def kernel_paths(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The CPU kernel settings a process runs with (the pin and the three library variables, '' when unset):
    part of a resumable stage's fingerprint, so files made under another kernel path are not reused."""
    env = os.environ if environ is None else environ
    return {var: env.get(var, "") for var in (PIN_VAR, *PINS[DEFAULT_PIN])}
